-- IM schema, migration 5: the operators' side (spec auth-and-config.md,
-- "Users, roles, organisations" and "Operation log").

-- Every action a user or system takes through the operators' API (add,
-- modify, delete, query, import, export, login, logout), by whom, from
-- which IP, when, on what, and how it ended. Append-only: no API changes or
-- deletes a row, and the triggers refuse it. Names are kept as text.
CREATE TABLE operation_log (
  id INTEGER PRIMARY KEY,
  at TEXT NOT NULL,
  account TEXT NOT NULL,
  ip TEXT NOT NULL DEFAULT '',
  action TEXT NOT NULL CHECK (action IN
    ('ADD','MODIFY','DELETE','QUERY','IMPORT','EXPORT','LOGIN','LOGOUT')),
  area TEXT NOT NULL,
  target TEXT NOT NULL DEFAULT '',
  outcome TEXT NOT NULL CHECK (outcome IN ('SUCCESS','FAILURE','DENIED')),
  detail TEXT NOT NULL DEFAULT '') STRICT;
CREATE INDEX operation_log_account ON operation_log (account COLLATE NOCASE, id);
CREATE INDEX operation_log_at ON operation_log (at);
CREATE TRIGGER operation_log_no_update BEFORE UPDATE ON operation_log
  BEGIN SELECT RAISE(ABORT, 'operation_log is append-only'); END;
CREATE TRIGGER operation_log_no_delete BEFORE DELETE ON operation_log
  BEGIN SELECT RAISE(ABORT, 'operation_log is append-only'); END;

-- Searches of the operators' API.
CREATE INDEX resource_log_at ON resource_log (at);
CREATE INDEX task_state ON task (state, id);
CREATE INDEX customer_name ON customer (name);

-- Built-in roles. Permissions: area -> actions; areas `inventory`,
-- `services`, `tasks`, `sync`, `users`, `logs`; actions `read`, `add`,
-- `modify`, `delete`. `visible_protected`: the protected values shown in
-- clear (`Mobile`, `Email`, `IPTVPassword`, `Password`).
INSERT INTO role (code, name, om_interface, permissions, visible_protected) VALUES
  ('ROLE_ADMIN', 'Administrator', 0,
   '{"inventory":["read","add","modify","delete"],"services":["read","add","modify","delete"],"tasks":["read","add","modify","delete"],"sync":["read","add","modify","delete"],"users":["read","add","modify","delete"],"logs":["read"]}',
   '["Mobile","Email","IPTVPassword","Password"]'),
  ('ROLE_TECH_L1', 'Technician, first line', 0,
   '{"inventory":["read"],"services":["read"],"tasks":["read","modify"],"sync":["read"]}',
   '["Mobile","Email"]'),
  ('ROLE_VIEWER', 'Read-only viewer', 0,
   '{"inventory":["read"],"services":["read"],"tasks":["read"],"sync":["read"]}',
   '[]')
  ON CONFLICT (code) DO UPDATE SET permissions = excluded.permissions,
    visible_protected = excluded.visible_protected
    WHERE role.permissions = '{}';
-- (a ROLE_ADMIN created earlier by im-admin, without permissions, gets them)
