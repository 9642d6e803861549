-- IM schema, migration 3: operator logins (spec auth-and-config.md, "Login"
-- and "Login log"). The account columns for lockout (failed_logins,
-- locked_until) and last_login already exist since migration 1.

-- Every login attempt (success or failure with its reason) and logout.
-- Append-only: no API changes or deletes a row, and the triggers refuse it.
-- The account is kept as text (what was typed, or the stored login), so the
-- log stays readable whatever becomes of the account. Never a password.
CREATE TABLE login_log (
  id INTEGER PRIMARY KEY,
  at TEXT NOT NULL,
  account TEXT NOT NULL,
  ip TEXT NOT NULL DEFAULT '',
  event TEXT NOT NULL CHECK (event IN ('LOGIN','LOGOUT')),
  outcome TEXT NOT NULL CHECK (outcome IN ('SUCCESS','FAILURE')),
  reason TEXT NOT NULL DEFAULT '',
  auth_mode TEXT CHECK (auth_mode IS NULL OR auth_mode IN ('LOCAL','AD'))) STRICT;
CREATE INDEX login_log_account ON login_log (account COLLATE NOCASE, id);
CREATE INDEX login_log_at ON login_log (at);
CREATE TRIGGER login_log_no_update BEFORE UPDATE ON login_log
  BEGIN SELECT RAISE(ABORT, 'login_log is append-only'); END;
CREATE TRIGGER login_log_no_delete BEFORE DELETE ON login_log
  BEGIN SELECT RAISE(ABORT, 'login_log is append-only'); END;
