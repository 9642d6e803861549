-- IM schema, migration 6: constraints that cost the intake path more than
-- they protect, rewritten. Nothing on disk changes.
--
-- 1. The same CHECK constraints, written as OR chains.
--
-- SQLite evaluates `x IN ('A','B','C')` with more than two constants by
-- building a temporary b-tree of the list, once per statement run: three
-- such trees for every accepted work order (task.state, command.type,
-- command.state), a measurable part of the writer's time. `x = 'A' OR
-- x = 'B' OR x = 'C'` accepts and refuses exactly the same values (the
-- columns are NOT NULL) without one.
--
-- 2. No FOREIGN KEY on the holder columns port.service_id and
-- ont.service_id. SQLite runs every UPDATE that changes a foreign-key column
-- with a statement journal (a copy of each page it touches), which cost
-- taking a port 8% of the writer's time. The holder columns keep their
-- UNIQUE indexes (no resource held twice, no service holding two); services
-- are never deleted (a Delete makes them INACTIVE), and only the writer sets
-- a holder, always to the service it has just written or read.
--
-- 3. No index on the generated column port.pickable. Taking or freeing a
-- port rewrote an entry of it (a second scattered page per work order); the
-- writer now walks the unique index (dslam_id, frame, slot, port) from where
-- its last search on the DSLAM ended, and reads `pickable` from the row.
--
-- Neither 1 nor 2 changes anything on disk, so the table definitions are
-- edited in place (the procedure of SQLite's documentation, "Making other
-- kinds of table schema changes"); the migration runner then bumps the
-- schema version so that every connection reloads the schema.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql,
  'CHECK (state IN (''RECEIVED'',''ACTIVATING'',''COMPLETED'',''FAILED'',''CANCELLED''))',
  'CHECK (state = ''RECEIVED'' OR state = ''ACTIVATING'' OR state = ''COMPLETED'' OR state = ''FAILED'' OR state = ''CANCELLED'')')
  WHERE type = 'table' AND name = 'task';
UPDATE sqlite_schema SET sql = replace(replace(sql,
  'CHECK (type IN (''ACTIVATE'',''MODIFY'',''DEACTIVATE''))',
  'CHECK (type = ''ACTIVATE'' OR type = ''MODIFY'' OR type = ''DEACTIVATE'')'),
  'CHECK (state IN (''PENDING'',''DELIVERED'',''FAILED'',''DROPPED''))',
  'CHECK (state = ''PENDING'' OR state = ''DELIVERED'' OR state = ''FAILED'' OR state = ''DROPPED'')')
  WHERE type = 'table' AND name = 'command';
UPDATE sqlite_schema SET sql = replace(sql,
  'CHECK (state IN (''AVAILABLE'',''OCCUPIED'',''FAULTY''))',
  'CHECK (state = ''AVAILABLE'' OR state = ''OCCUPIED'' OR state = ''FAULTY'')')
  WHERE type = 'table' AND name IN ('port', 'pon_port', 'ont', 'vlan');
UPDATE sqlite_schema SET sql = replace(sql,
  'service_id INTEGER REFERENCES service(id),', 'service_id INTEGER,')
  WHERE type = 'table' AND name IN ('port', 'ont');
PRAGMA writable_schema = OFF;

DROP INDEX port_pick;
