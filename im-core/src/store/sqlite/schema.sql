-- IM schema, migration 1. Natural keys are unique (COLLATE NOCASE where the
-- contract reads them tolerantly); IM-owned usage lives in the holder columns
-- (port.service_id, ont.service_id), each UNIQUE so that no resource is held
-- twice and no service holds two. Removal is a soft flag.

CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;

-- ---------------------------------------------------------------- space
CREATE TABLE sector (
  id INTEGER PRIMARY KEY, domain TEXT NOT NULL CHECK (domain IN ('ADSL','FTTH')),
  code TEXT NOT NULL COLLATE NOCASE, name TEXT NOT NULL,
  removed INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL,
  UNIQUE (domain, code)) STRICT;
CREATE TABLE zone (
  id INTEGER PRIMARY KEY, domain TEXT NOT NULL CHECK (domain IN ('ADSL','FTTH')),
  code TEXT NOT NULL COLLATE NOCASE, name TEXT NOT NULL,
  sector_id INTEGER NOT NULL REFERENCES sector(id),
  removed INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL,
  UNIQUE (domain, code)) STRICT;
CREATE TABLE city (
  id INTEGER PRIMARY KEY, domain TEXT NOT NULL CHECK (domain IN ('ADSL','FTTH')),
  code TEXT NOT NULL COLLATE NOCASE, name TEXT NOT NULL,
  zone_id INTEGER NOT NULL REFERENCES zone(id),
  removed INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL,
  UNIQUE (domain, code)) STRICT;
CREATE TABLE exchange (
  id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE COLLATE NOCASE, name TEXT NOT NULL,
  city_id INTEGER REFERENCES city(id), popid TEXT NOT NULL UNIQUE, area_code TEXT NOT NULL,
  removed INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL) STRICT;

-- ---------------------------------------------------------------- ADSL plant
CREATE TABLE dslam (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE,
  exchange_id INTEGER NOT NULL REFERENCES exchange(id), ip TEXT NOT NULL, model TEXT NOT NULL,
  technology TEXT NOT NULL CHECK (technology IN ('ADSL','VDSL','ADSL+VDSL')),
  removed INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL) STRICT;
CREATE INDEX dslam_exchange ON dslam (exchange_id, name);
CREATE INDEX dslam_ip ON dslam (ip);
CREATE TABLE port (
  id INTEGER PRIMARY KEY, dslam_id INTEGER NOT NULL REFERENCES dslam(id),
  frame INTEGER NOT NULL, slot INTEGER NOT NULL, port INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('AVAILABLE','OCCUPIED','FAULTY')),
  service_id INTEGER REFERENCES service(id),
  removed INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL,
  pickable INTEGER GENERATED ALWAYS AS
    (service_id IS NULL AND state = 'AVAILABLE' AND removed = 0) VIRTUAL,
  UNIQUE (dslam_id, frame, slot, port)) STRICT;
-- one holder per port and one port per service; partial, so free ports cost
-- no index entry and taking a port appends rather than rewrites
CREATE UNIQUE INDEX port_holder ON port (service_id) WHERE service_id IS NOT NULL;
-- the free ports of a DSLAM in pick order: the hot query of ADSL Install
-- Partial indexes whose predicate compares a column with a constant make
-- SQLite re-prepare every statement on the table at each new binding; the
-- indexes here use generated columns instead.
-- The free ports of a DSLAM in pick order: the hot query of ADSL Install.
CREATE INDEX port_pick ON port (dslam_id, pickable, frame, slot, port);

-- ---------------------------------------------------------------- FTTH plant
CREATE TABLE olt (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE,
  exchange_id INTEGER NOT NULL REFERENCES exchange(id), ip TEXT NOT NULL, model TEXT NOT NULL,
  removed INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL) STRICT;
CREATE TABLE pon_port (
  id INTEGER PRIMARY KEY, olt_id INTEGER NOT NULL REFERENCES olt(id),
  frame INTEGER NOT NULL, slot INTEGER NOT NULL, port INTEGER NOT NULL,
  max_onts INTEGER NOT NULL CHECK (max_onts > 0),
  state TEXT NOT NULL CHECK (state IN ('AVAILABLE','OCCUPIED','FAULTY')),
  removed INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL,
  UNIQUE (olt_id, frame, slot, port)) STRICT;
CREATE TABLE compound (
  id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE COLLATE NOCASE, name TEXT NOT NULL,
  exchange_id INTEGER NOT NULL REFERENCES exchange(id), zone_id INTEGER REFERENCES zone(id),
  removed INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL) STRICT;
CREATE TABLE compound_pon (
  compound_id INTEGER NOT NULL REFERENCES compound(id),
  pon_port_id INTEGER NOT NULL REFERENCES pon_port(id),
  PRIMARY KEY (compound_id, pon_port_id)) STRICT, WITHOUT ROWID;
CREATE TABLE ont (
  id INTEGER PRIMARY KEY, serial TEXT NOT NULL UNIQUE,
  pon_port_id INTEGER NOT NULL REFERENCES pon_port(id), ont_id INTEGER NOT NULL CHECK (ont_id >= 0),
  model TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('AVAILABLE','OCCUPIED','FAULTY')),
  origin TEXT NOT NULL CHECK (origin IN ('SOURCE','OM')),
  service_id INTEGER REFERENCES service(id),
  removed INTEGER NOT NULL DEFAULT 0, created TEXT NOT NULL, updated TEXT NOT NULL,
  place INTEGER GENERATED ALWAYS AS (CASE WHEN removed = 0 THEN ont_id END) VIRTUAL) STRICT;
-- one ONT per (PON port, ONT id) among those in place
CREATE UNIQUE INDEX ont_place ON ont (pon_port_id, place);
CREATE UNIQUE INDEX ont_holder ON ont (service_id) WHERE service_id IS NOT NULL;
CREATE TABLE vlan (
  id INTEGER PRIMARY KEY, olt_id INTEGER NOT NULL REFERENCES olt(id),
  vlan_id INTEGER NOT NULL CHECK (vlan_id BETWEEN 1 AND 4094),
  purpose TEXT NOT NULL CHECK (purpose IN ('INTERNET','VOICE','IPTV','MGMT')),
  state TEXT NOT NULL CHECK (state IN ('AVAILABLE','OCCUPIED','FAULTY')),
  removed INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL,
  UNIQUE (olt_id, vlan_id)) STRICT;
CREATE INDEX vlan_purpose ON vlan (olt_id, purpose, vlan_id);

-- ---------------------------------------------------------------- customers and services
CREATE TABLE customer (
  id INTEGER PRIMARY KEY, account_number TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL, segment TEXT NOT NULL DEFAULT '', level TEXT NOT NULL DEFAULT '',
  mobile_enc BLOB, email_enc BLOB, created TEXT NOT NULL, updated TEXT NOT NULL) STRICT;
CREATE TABLE service (
  id INTEGER PRIMARY KEY, user_name TEXT NOT NULL,
  service_type TEXT NOT NULL, cover_type TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('ACTIVE','INACTIVE')),
  customer_id INTEGER REFERENCES customer(id),
  parent_id INTEGER REFERENCES service(id),
  popid TEXT NOT NULL DEFAULT '', exchange_id INTEGER REFERENCES exchange(id),
  olt_id INTEGER REFERENCES olt(id), compound_id INTEGER REFERENCES compound(id),
  vlan INTEGER, speed_kbps INTEGER,
  password_enc BLOB, iptv_password_enc BLOB,
  fields TEXT NOT NULL DEFAULT '{}',
  conflict INTEGER NOT NULL DEFAULT 0, conflict_reason TEXT,
  created TEXT NOT NULL, updated TEXT NOT NULL,
  UNIQUE (user_name, service_type)) STRICT;
CREATE INDEX service_parent ON service (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX service_customer ON service (customer_id);

-- ---------------------------------------------------------------- tasks and outbox
CREATE TABLE task (
  id INTEGER PRIMARY KEY, task_no TEXT NOT NULL UNIQUE, flow_id TEXT NOT NULL UNIQUE,
  fingerprint BLOB NOT NULL, popid TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('RECEIVED','ACTIVATING','COMPLETED','FAILED','CANCELLED')),
  request TEXT NOT NULL, items TEXT NOT NULL, account TEXT NOT NULL,
  created TEXT NOT NULL, updated TEXT NOT NULL) STRICT;
-- A task's creation (RECEIVED, by `account`, at `created`) is the first entry
-- of its history; task_history holds every later transition. Its items are
-- the `items` JSON (per item: seq, opertype, serviceType, UserName, service id,
-- port, ontSn, vlan, state); the services a task changed are also reachable
-- through its commands (command.service_id).
CREATE INDEX task_created ON task (created);
CREATE TABLE task_history (
  id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL REFERENCES task(id),
  at TEXT NOT NULL, from_state TEXT, to_state TEXT NOT NULL,
  action TEXT NOT NULL, actor TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '') STRICT;
CREATE INDEX task_history_task ON task_history (task_id, id);
CREATE TABLE command (
  id INTEGER PRIMARY KEY, cmd_id TEXT NOT NULL,
  task_id INTEGER NOT NULL REFERENCES task(id), seq INTEGER NOT NULL,
  service_id INTEGER NOT NULL REFERENCES service(id),
  type TEXT NOT NULL CHECK (type IN ('ACTIVATE','MODIFY','DEACTIVATE')),
  service_type TEXT NOT NULL, params TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('PENDING','DELIVERED','FAILED','DROPPED')),
  attempts INTEGER NOT NULL DEFAULT 0, redo INTEGER NOT NULL DEFAULT 0,
  next_attempt TEXT, ack_status TEXT, ack_code TEXT, ack_desc TEXT,
  created TEXT NOT NULL, updated TEXT NOT NULL,
  UNIQUE (task_id, seq)) STRICT;
CREATE INDEX command_pending ON command (state, id);
CREATE INDEX command_service ON command (service_id, id);

-- ---------------------------------------------------------------- accounts (extended by the auth model)
CREATE TABLE organisation (
  id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE COLLATE NOCASE, name TEXT NOT NULL) STRICT;
CREATE TABLE role (
  id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE COLLATE NOCASE, name TEXT NOT NULL,
  om_interface INTEGER NOT NULL DEFAULT 0,
  permissions TEXT NOT NULL DEFAULT '{}', visible_protected TEXT NOT NULL DEFAULT '[]') STRICT;
CREATE TABLE account (
  id INTEGER PRIMARY KEY, login TEXT NOT NULL UNIQUE COLLATE NOCASE,
  display_name TEXT NOT NULL DEFAULT '', organisation_id INTEGER REFERENCES organisation(id),
  auth_mode TEXT NOT NULL CHECK (auth_mode IN ('LOCAL','AD')),
  enabled INTEGER NOT NULL DEFAULT 1, password_hash TEXT,
  password_version INTEGER NOT NULL DEFAULT 0,
  failed_logins INTEGER NOT NULL DEFAULT 0, locked_until TEXT, last_login TEXT,
  created TEXT NOT NULL, updated TEXT NOT NULL) STRICT;
CREATE TABLE account_role (
  account_id INTEGER NOT NULL REFERENCES account(id), role_id INTEGER NOT NULL REFERENCES role(id),
  PRIMARY KEY (account_id, role_id)) STRICT, WITHOUT ROWID;

INSERT INTO role (code, name, om_interface, permissions)
  VALUES ('ROLE_OM_INTERFACE', 'OM web-service caller', 1, '{}');
