-- IM schema, migration 2: inventory sync bookkeeping and the resource
-- operation log.

-- One row per sync run (spec inventory-sync-and-am.md §3): what ran, on which
-- snapshot, how it ended and what it changed.
CREATE TABLE sync_run (
  id INTEGER PRIMARY KEY,
  system TEXT NOT NULL CHECK (system IN ('matrix','ematrix')),
  kind TEXT NOT NULL CHECK (kind IN ('FULL','INCREMENTAL')),
  snapshot TEXT, watermark TEXT, since TEXT,
  started TEXT NOT NULL, ended TEXT,
  status TEXT NOT NULL CHECK (status IN ('RUNNING','SUCCEEDED','FAILED','ABORTED')),
  forced INTEGER NOT NULL DEFAULT 0,
  added INTEGER NOT NULL DEFAULT 0, changed INTEGER NOT NULL DEFAULT 0,
  removed INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0,
  conflicts INTEGER NOT NULL DEFAULT 0,
  error TEXT) STRICT;
CREATE INDEX sync_run_system ON sync_run (system, status, id);

-- The lease that keeps two runs of one system from overlapping, also across
-- processes: claimed in a write transaction when free or expired (`expires`
-- in unix milliseconds), renewed while the run reads, released when it ends.
CREATE TABLE sync_lock (
  system TEXT PRIMARY KEY CHECK (system IN ('matrix','ematrix')),
  holder TEXT NOT NULL, run_id INTEGER, expires INTEGER NOT NULL) STRICT;

-- The resource operation log (spec auth-and-config.md): append-only; every
-- add, modify, removal, import or export of an inventory resource, by whom
-- (an account or `sync:<system>:<run id>`), from which IP, with the old and
-- new values of the changed fields only (JSON objects).
CREATE TABLE resource_log (
  id INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, ip TEXT NOT NULL DEFAULT '',
  resource_type TEXT NOT NULL, code TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',
  operation TEXT NOT NULL CHECK (operation IN ('ADD','MODIFY','REMOVE','IMPORT','EXPORT')),
  old_values TEXT, new_values TEXT) STRICT;
CREATE INDEX resource_log_resource ON resource_log (resource_type, code, id);
CREATE INDEX resource_log_actor ON resource_log (actor, id);
CREATE TRIGGER resource_log_no_update BEFORE UPDATE ON resource_log
  BEGIN SELECT RAISE(ABORT, 'resource_log is append-only'); END;
CREATE TRIGGER resource_log_no_delete BEFORE DELETE ON resource_log
  BEGIN SELECT RAISE(ABORT, 'resource_log is append-only'); END;
