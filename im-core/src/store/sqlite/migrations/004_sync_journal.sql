-- IM schema, migration 4: the apply journal of sync runs.
--
-- A run whose diff is larger than one apply slice (and that is not the first
-- load of an empty inventory) does not apply in one long write transaction:
-- it first writes its changes here, then commits its head row — the moment
-- the run is decided — and then applies the changes in slices, each slice in
-- its own transaction that also deletes the journal rows it applied, so that
-- OM calls are served between the slices. A run whose head is here is
-- finished by whoever opens the database next (or begins the next run of the
-- system): a crash never leaves the inventory half-applied for longer than
-- it takes to open it again. Change rows without a head belong to a run
-- that never got decided; they are dropped once that run is no longer
-- RUNNING.
CREATE TABLE sync_journal (
  run_id INTEGER PRIMARY KEY REFERENCES sync_run(id),
  system TEXT NOT NULL CHECK (system IN ('matrix','ematrix')),
  holder TEXT NOT NULL,
  snapshot TEXT, watermark TEXT,
  rejected INTEGER NOT NULL DEFAULT 0,
  changes INTEGER NOT NULL,
  decided TEXT NOT NULL) STRICT;
CREATE TABLE sync_journal_change (
  run_id INTEGER NOT NULL REFERENCES sync_run(id),
  seq INTEGER NOT NULL,
  body BLOB NOT NULL,
  PRIMARY KEY (run_id, seq)) STRICT, WITHOUT ROWID;
