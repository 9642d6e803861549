//! SQL of inventory sync runs: row lookups by natural key for the diff
//! (on a read connection), and on the writer the applied changes, the run
//! log, the per-system lease and the resource operation log. The rules
//! live in [`crate::sync`]; usage columns (`service_id`) are never written here.

use super::{HasConn, InventoryCache, SqliteReader, SqliteWriter, backend};
use crate::model::Domain;
use crate::store::{
    Holder, IdCache, JournalHead, ResourceLogWrite, RunEnd, StoreError, StoreResult, StoredRow,
    SyncRead, SyncWrite,
};
use crate::sync::{Record, Resource, SyncCounts, SyncRunRec, Val};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, ToSql, params};
use std::sync::{Arc, OnceLock};

impl ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            Val::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

fn val_of(v: ValueRef<'_>) -> Val {
    match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(n) => Val::Int(n),
        ValueRef::Real(f) => Val::Text(Arc::from(f.to_string())),
        ValueRef::Text(t) | ValueRef::Blob(t) => Val::Text(Arc::from(String::from_utf8_lossy(t))),
    }
}

/// How a field maps to a column.
#[derive(Clone, Copy)]
enum Col {
    /// Stored as it is.
    Plain(&'static str),
    /// A reference, stored as the referenced row's id.
    Ref(&'static str),
    /// A compound's PON ports (the `compound_pon` table).
    Pons,
}

pub(super) struct Meta {
    pub(super) table: &'static str,
    /// Selects `id, removed` and the fields in [`Resource::fields`] order,
    /// the row aliased `x`.
    pub(super) select: &'static str,
    key_where: &'static str,
    cols: &'static [Col],
}

use Col::{Plain, Pons, Ref};

pub(super) fn meta(r: Resource) -> Meta {
    match r {
        Resource::Sector => Meta {
            table: "sector",
            select: "SELECT x.id, x.removed, x.domain, x.code, x.name FROM sector x",
            key_where: "x.domain = ?1 AND x.code = ?2",
            cols: &[Plain("domain"), Plain("code"), Plain("name")],
        },
        Resource::Zone => Meta {
            table: "zone",
            select: "SELECT x.id, x.removed, x.domain, x.code, x.name, s.code FROM zone x \
                     JOIN sector s ON s.id = x.sector_id",
            key_where: "x.domain = ?1 AND x.code = ?2",
            cols: &[
                Plain("domain"),
                Plain("code"),
                Plain("name"),
                Ref("sector_id"),
            ],
        },
        Resource::City => Meta {
            table: "city",
            select: "SELECT x.id, x.removed, x.domain, x.code, x.name, z.code FROM city x \
                     JOIN zone z ON z.id = x.zone_id",
            key_where: "x.domain = ?1 AND x.code = ?2",
            cols: &[
                Plain("domain"),
                Plain("code"),
                Plain("name"),
                Ref("zone_id"),
            ],
        },
        Resource::Exchange => Meta {
            table: "exchange",
            select: "SELECT x.id, x.removed, x.code, x.name, c.code, x.popid, x.area_code \
                     FROM exchange x LEFT JOIN city c ON c.id = x.city_id",
            key_where: "x.code = ?1",
            cols: &[
                Plain("code"),
                Plain("name"),
                Ref("city_id"),
                Plain("popid"),
                Plain("area_code"),
            ],
        },
        Resource::Dslam => Meta {
            table: "dslam",
            select: "SELECT x.id, x.removed, x.name, e.code, x.ip, x.model, x.technology \
                     FROM dslam x JOIN exchange e ON e.id = x.exchange_id",
            key_where: "x.name = ?1",
            cols: &[
                Plain("name"),
                Ref("exchange_id"),
                Plain("ip"),
                Plain("model"),
                Plain("technology"),
            ],
        },
        Resource::Port => Meta {
            table: "port",
            select: "SELECT x.id, x.removed, d.name, x.frame, x.slot, x.port, x.state \
                     FROM port x JOIN dslam d ON d.id = x.dslam_id",
            key_where: "d.name = ?1 AND x.frame = ?2 AND x.slot = ?3 AND x.port = ?4",
            cols: &[
                Ref("dslam_id"),
                Plain("frame"),
                Plain("slot"),
                Plain("port"),
                Plain("state"),
            ],
        },
        Resource::Olt => Meta {
            table: "olt",
            select: "SELECT x.id, x.removed, x.name, e.code, x.ip, x.model \
                     FROM olt x JOIN exchange e ON e.id = x.exchange_id",
            key_where: "x.name = ?1",
            cols: &[
                Plain("name"),
                Ref("exchange_id"),
                Plain("ip"),
                Plain("model"),
            ],
        },
        Resource::PonPort => Meta {
            table: "pon_port",
            select: "SELECT x.id, x.removed, o.name, x.frame, x.slot, x.port, x.max_onts, x.state \
                     FROM pon_port x JOIN olt o ON o.id = x.olt_id",
            key_where: "o.name = ?1 AND x.frame = ?2 AND x.slot = ?3 AND x.port = ?4",
            cols: &[
                Ref("olt_id"),
                Plain("frame"),
                Plain("slot"),
                Plain("port"),
                Plain("max_onts"),
                Plain("state"),
            ],
        },
        Resource::Compound => Meta {
            table: "compound",
            select: "SELECT x.id, x.removed, x.code, x.name, e.code, z.code, \
                     coalesce((SELECT group_concat(k, ' ') FROM \
                       (SELECT o.name || '/' || p.frame || '/' || p.slot || '/' || p.port AS k \
                        FROM compound_pon cp JOIN pon_port p ON p.id = cp.pon_port_id \
                        JOIN olt o ON o.id = p.olt_id WHERE cp.compound_id = x.id ORDER BY k)), '') \
                     FROM compound x JOIN exchange e ON e.id = x.exchange_id \
                     LEFT JOIN zone z ON z.id = x.zone_id",
            key_where: "x.code = ?1",
            cols: &[
                Plain("code"),
                Plain("name"),
                Ref("exchange_id"),
                Ref("zone_id"),
                Pons,
            ],
        },
        Resource::Ont => Meta {
            table: "ont",
            select: "SELECT x.id, x.removed, x.serial, \
                     o.name || '/' || p.frame || '/' || p.slot || '/' || p.port, \
                     x.ont_id, x.model, x.state, x.origin \
                     FROM ont x JOIN pon_port p ON p.id = x.pon_port_id JOIN olt o ON o.id = p.olt_id",
            key_where: "x.serial = ?1",
            cols: &[
                Plain("serial"),
                Ref("pon_port_id"),
                Plain("ont_id"),
                Plain("model"),
                Plain("state"),
                Plain("origin"),
            ],
        },
        Resource::Vlan => Meta {
            table: "vlan",
            select: "SELECT x.id, x.removed, o.name, x.vlan_id, x.purpose, x.state \
                     FROM vlan x JOIN olt o ON o.id = x.olt_id",
            key_where: "o.name = ?1 AND x.vlan_id = ?2",
            cols: &[
                Ref("olt_id"),
                Plain("vlan_id"),
                Plain("purpose"),
                Plain("state"),
            ],
        },
    }
}

pub(super) fn read_row(r: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<StoredRow> {
    let mut vals = Vec::with_capacity(n);
    for i in 0..n {
        vals.push(val_of(r.get_ref(i + 2)?));
    }
    Ok(StoredRow {
        id: r.get(0)?,
        removed: r.get::<_, i64>(1)? != 0,
        vals,
    })
}

/// One SQL text per resource, built once (index: `Resource as usize`).
struct SqlSet([OnceLock<String>; 11]);

impl SqlSet {
    const fn new() -> SqlSet {
        SqlSet([const { OnceLock::new() }; 11])
    }

    fn get(&self, resource: Resource, f: impl FnOnce(Meta) -> String) -> &str {
        self.0[resource as usize].get_or_init(|| f(meta(resource)))
    }
}

static LOOKUP_SQL: SqlSet = SqlSet::new();
static BY_ID_SQL: SqlSet = SqlSet::new();
static INSERT_SQL: SqlSet = SqlSet::new();
static ONT_INSERT_SQL: SqlSet = SqlSet::new();

pub(super) fn lookup(
    conn: &Connection,
    resource: Resource,
    key: &[Val],
) -> StoreResult<Option<StoredRow>> {
    let sql = LOOKUP_SQL.get(resource, |m| format!("{} WHERE {}", m.select, m.key_where));
    let n = resource.fields().len();
    conn.prepare_cached(sql)
        .map_err(backend)?
        .query_row(rusqlite::params_from_iter(key.iter()), |r| read_row(r, n))
        .optional()
        .map_err(backend)
}

fn domain_clause(domain: Option<Domain>) -> (&'static str, Option<&'static str>) {
    match domain {
        Some(d) => (" AND domain = ?1", Some(d.as_str())),
        None => ("", None),
    }
}

thread_local! {
    /// Lookups made on this thread, for [`batch_reads`].
    static LOOKUPS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Lookups that share one read transaction.
const READ_BATCH: u32 = 1024;

/// The diff's lookups share a read transaction, [`READ_BATCH`] lookups at
/// a time, instead of each taking and releasing the WAL read lock (two
/// `fcntl` calls per statement). The snapshot is never older than one batch.
fn batch_reads(conn: &Connection) -> StoreResult<()> {
    let n = LOOKUPS.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n
    });
    if !conn.is_autocommit() && n.is_multiple_of(READ_BATCH) {
        conn.execute_batch("COMMIT").map_err(backend)?;
    }
    if conn.is_autocommit() {
        conn.execute_batch("BEGIN").map_err(backend)?;
    }
    Ok(())
}

/// Ends a read transaction [`batch_reads`] left open (a fresh snapshot).
fn end_batch(conn: &Connection) -> StoreResult<()> {
    if !conn.is_autocommit() {
        conn.execute_batch("COMMIT").map_err(backend)?;
    }
    Ok(())
}

impl SyncRead for SqliteReader {
    fn sync_lookup(&mut self, resource: Resource, key: &[Val]) -> StoreResult<Option<StoredRow>> {
        batch_reads(self.conn())?;
        lookup(self.conn(), resource, key)
    }

    fn sync_by_id(&mut self, resource: Resource, id: i64) -> StoreResult<Option<StoredRow>> {
        let sql = BY_ID_SQL.get(resource, |m| format!("{} WHERE x.id = ?1", m.select));
        let n = resource.fields().len();
        self.conn()
            .prepare_cached(sql)
            .map_err(backend)?
            .query_row([id], |r| read_row(r, n))
            .optional()
            .map_err(backend)
    }

    fn sync_live_ids(
        &mut self,
        resource: Resource,
        domain: Option<Domain>,
        each: &mut dyn FnMut(i64),
    ) -> StoreResult<()> {
        end_batch(self.conn())?;
        let (clause, d) = domain_clause(domain);
        let sql = format!(
            "SELECT id FROM {} WHERE removed = 0{clause}",
            meta(resource).table
        );
        let mut st = self.conn().prepare_cached(&sql).map_err(backend)?;
        let mut rows = match d {
            Some(d) => st.query([d]),
            None => st.query([]),
        }
        .map_err(backend)?;
        while let Some(r) = rows.next().map_err(backend)? {
            each(r.get(0).map_err(backend)?);
        }
        Ok(())
    }

    fn sync_live_count(&mut self, resource: Resource, domain: Option<Domain>) -> StoreResult<u64> {
        end_batch(self.conn())?;
        let (clause, d) = domain_clause(domain);
        let sql = format!(
            "SELECT count(*) FROM {} WHERE removed = 0{clause}",
            meta(resource).table
        );
        let mut st = self.conn().prepare_cached(&sql).map_err(backend)?;
        let n: i64 = match d {
            Some(d) => st.query_row([d], |r| r.get(0)),
            None => st.query_row([], |r| r.get(0)),
        }
        .map_err(backend)?;
        Ok(n.max(0) as u64)
    }

    fn sync_ont_at(&mut self, pon: &[Val], ont_id: i64) -> StoreResult<Option<(i64, String)>> {
        let get = |i: usize| pon.get(i).cloned().unwrap_or(Val::Null);
        self.conn()
            .prepare_cached(
                "SELECT t.id, t.serial FROM ont t JOIN pon_port p ON p.id = t.pon_port_id \
                 JOIN olt o ON o.id = p.olt_id \
                 WHERE o.name = ?1 AND p.frame = ?2 AND p.slot = ?3 AND p.port = ?4 AND t.place = ?5",
            )
            .map_err(backend)?
            .query_row(params![get(0), get(1), get(2), get(3), ont_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(backend)
    }

    fn sync_ont_created(&mut self, id: i64) -> StoreResult<Option<String>> {
        self.conn()
            .prepare_cached("SELECT created FROM ont WHERE id = ?1")
            .map_err(backend)?
            .query_row([id], |r| r.get(0))
            .optional()
            .map_err(backend)
    }

    fn last_sync_watermark(&mut self, system: &str) -> StoreResult<Option<String>> {
        self.conn()
            .prepare_cached(
                "SELECT watermark FROM sync_run WHERE system = ?1 AND status = 'SUCCEEDED' \
                 AND watermark IS NOT NULL ORDER BY id DESC LIMIT 1",
            )
            .map_err(backend)?
            .query_row([system], |r| r.get(0))
            .optional()
            .map_err(backend)
    }

    fn sync_runs(&mut self, system: Option<&str>, limit: usize) -> StoreResult<Vec<SyncRunRec>> {
        let mut st = self
            .conn()
            .prepare_cached(
                "SELECT id, system, kind, snapshot, watermark, since, started, ended, status, forced, \
                 added, changed, removed, rejected, conflicts, error FROM sync_run \
                 WHERE ?1 IS NULL OR system = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(backend)?;
        let rows = st
            .query_map(params![system, limit as i64], |r| {
                let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                Ok(SyncRunRec {
                    id: r.get(0)?,
                    system: r.get(1)?,
                    kind: r.get(2)?,
                    snapshot: r.get(3)?,
                    watermark: r.get(4)?,
                    since: r.get(5)?,
                    started: r.get(6)?,
                    ended: r.get(7)?,
                    status: r.get(8)?,
                    forced: r.get::<_, i64>(9)? != 0,
                    counts: SyncCounts {
                        added: n(10)?,
                        changed: n(11)?,
                        removed: n(12)?,
                        rejected: n(13)?,
                        conflicts: n(14)?,
                    },
                    error: r.get(15)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }
}

fn cache_key(resource: Resource, key: &[Val]) -> (Resource, String) {
    let mut s = String::with_capacity(24);
    for v in key {
        match v {
            Val::Null => {}
            Val::Int(n) => {
                use std::fmt::Write;
                let _ = write!(s, "{n}");
            }
            Val::Text(t) if t.is_ascii() => {
                s.extend(t.chars().map(|c| c.to_ascii_lowercase()));
            }
            Val::Text(t) => s.push_str(&t.to_lowercase()),
        }
        s.push('\u{1f}');
    }
    (resource, s)
}

/// The id of a referenced row (removed or not) by natural key.
fn resolve(
    conn: &Connection,
    ids: &mut IdCache,
    resource: Resource,
    key: &[Val],
) -> StoreResult<i64> {
    let k = cache_key(resource, key);
    if let Some(id) = ids.0.get(&k) {
        return Ok(*id);
    }
    let id = lookup(conn, resource, key)?.map(|r| r.id).ok_or_else(|| {
        let parts: Vec<String> = key.iter().map(|v| v.to_string()).collect();
        StoreError::Data(format!("unknown {resource} {}", parts.join("/")))
    })?;
    ids.0.insert(k, id);
    Ok(id)
}

/// The value of field `i` as stored: references resolved to ids.
fn column_value(
    conn: &Connection,
    ids: &mut IdCache,
    rec: &Record,
    refs: &[(usize, Resource, Box<[Val]>)],
    i: usize,
) -> StoreResult<Val> {
    match meta(rec.resource).cols.get(i) {
        Some(Ref(_)) => match refs.iter().find(|(f, _, _)| *f == i) {
            Some((_, parent, key)) => Ok(Val::Int(resolve(conn, ids, *parent, key)?)),
            None => Ok(Val::Null),
        },
        _ => Ok(rec.vals.get(i).cloned().unwrap_or(Val::Null)),
    }
}

fn set_pons(
    conn: &Connection,
    ids: &mut IdCache,
    compound: i64,
    refs: &[(usize, Resource, Box<[Val]>)],
) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM compound_pon WHERE compound_id = ?1")
        .map_err(backend)?
        .execute([compound])
        .map_err(backend)?;
    for (_, parent, key) in refs.iter().filter(|(f, _, _)| *f == 4) {
        let pon = resolve(conn, ids, *parent, key)?;
        conn.prepare_cached(
            "INSERT OR IGNORE INTO compound_pon (compound_id, pon_port_id) VALUES (?1, ?2)",
        )
        .map_err(backend)?
        .execute([compound, pon])
        .map_err(backend)?;
    }
    Ok(())
}

impl SqliteWriter {
    /// Intake caches exchanges and DSLAMs; a sync that changes them drops the
    /// cache, and one that changes ports (which may free some) drops where
    /// intake's searches for free ports start.
    fn sync_touches(&mut self, resource: Resource) {
        match resource {
            Resource::Exchange | Resource::Dslam => self.cache = InventoryCache::default(),
            Resource::Port => self.cache.forget_picks(),
            _ => {}
        }
    }
}

impl SyncWrite for SqliteWriter {
    fn sync_claim(
        &mut self,
        system: &str,
        holder: &str,
        now: i64,
        expires: i64,
        at: &str,
    ) -> StoreResult<Option<String>> {
        let conn = &self.conn;
        let cur: Option<(String, Option<i64>, i64)> = conn
            .prepare_cached("SELECT holder, run_id, expires FROM sync_lock WHERE system = ?1")
            .map_err(backend)?
            .query_row([system], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(backend)?;
        if let Some((other, run, exp)) = cur {
            if exp > now && other != holder {
                return Ok(Some(other));
            }
            if let Some(run) = run {
                conn.prepare_cached(
                    "UPDATE sync_run SET status = 'FAILED', ended = ?2, \
                     error = 'lease expired (the process running it stopped)' \
                     WHERE id = ?1 AND status = 'RUNNING'",
                )
                .map_err(backend)?
                .execute(params![run, at])
                .map_err(backend)?;
            }
        }
        conn.prepare_cached(
            "INSERT INTO sync_lock (system, holder, run_id, expires) VALUES (?1, ?2, NULL, ?3) \
             ON CONFLICT (system) DO UPDATE SET holder = excluded.holder, run_id = NULL, \
             expires = excluded.expires",
        )
        .map_err(backend)?
        .execute(params![system, holder, expires])
        .map_err(backend)?;
        Ok(None)
    }

    fn sync_renew(&mut self, system: &str, holder: &str, expires: i64) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached("UPDATE sync_lock SET expires = ?3 WHERE system = ?1 AND holder = ?2")
            .map_err(backend)?
            .execute(params![system, holder, expires])
            .map_err(backend)?;
        Ok(n == 1)
    }

    fn sync_release(&mut self, system: &str, holder: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached("DELETE FROM sync_lock WHERE system = ?1 AND holder = ?2")
            .map_err(backend)?
            .execute([system, holder])
            .map_err(backend)?;
        Ok(())
    }

    fn sync_run_start(
        &mut self,
        system: &str,
        kind: &str,
        since: Option<&str>,
        forced: bool,
        holder: &str,
        at: &str,
    ) -> StoreResult<i64> {
        let id: i64 = self
            .conn
            .prepare_cached(
                "INSERT INTO sync_run (system, kind, since, started, status, forced) \
                 VALUES (?1, ?2, ?3, ?4, 'RUNNING', ?5) RETURNING id",
            )
            .map_err(backend)?
            .query_row(params![system, kind, since, at, forced], |r| r.get(0))
            .map_err(backend)?;
        self.conn
            .prepare_cached("UPDATE sync_lock SET run_id = ?3 WHERE system = ?1 AND holder = ?2")
            .map_err(backend)?
            .execute(params![system, holder, id])
            .map_err(backend)?;
        Ok(id)
    }

    fn sync_run_end(&mut self, e: &RunEnd<'_>) -> StoreResult<()> {
        let c = e.counts;
        self.conn
            .prepare_cached(
                "UPDATE sync_run SET status = ?2, snapshot = coalesce(?3, snapshot), watermark = ?4, \
                 ended = ?5, added = ?6, changed = ?7, removed = ?8, rejected = ?9, conflicts = ?10, \
                 error = ?11 WHERE id = ?1",
            )
            .map_err(backend)?
            .execute(params![
                e.run_id,
                e.status,
                e.snapshot,
                e.watermark,
                e.ended,
                c.added as i64,
                c.changed as i64,
                c.removed as i64,
                c.rejected as i64,
                c.conflicts as i64,
                e.error
            ])
            .map_err(backend)?;
        // Every run's end is also an operation of the system, in the
        // operation log (same transaction).
        self.conn
            .prepare_cached(
                "INSERT INTO operation_log (at, account, ip, action, area, target, outcome, detail) \
                 SELECT ?2, 'sync:' || system, '', 'IMPORT', 'sync', \
                 system || ' ' || lower(kind) || ' run ' || id, \
                 CASE status WHEN 'SUCCEEDED' THEN 'SUCCESS' ELSE 'FAILURE' END, \
                 status || ': added ' || added || ', changed ' || changed || ', removed ' || removed \
                 || ', rejected ' || rejected || ', conflicts ' || conflicts \
                 || coalesce('; ' || substr(error, 1, 500), '') \
                 FROM sync_run WHERE id = ?1",
            )
            .map_err(backend)?
            .execute(params![e.run_id, e.ended])
            .map_err(backend)?;
        Ok(())
    }

    fn sync_insert(&mut self, rec: &Record, ids: &mut IdCache, at: &str) -> StoreResult<i64> {
        self.sync_touches(rec.resource);
        let m = meta(rec.resource);
        let refs = rec.refs();
        let mut vals = Vec::with_capacity(m.cols.len() + 2);
        for (i, col) in m.cols.iter().enumerate() {
            if matches!(col, Pons) {
                continue;
            }
            vals.push(column_value(&self.conn, ids, rec, &refs, i)?);
        }
        let is_ont = rec.resource == Resource::Ont;
        let at_val = Val::Text(Arc::from(at));
        vals.push(at_val.clone());
        if is_ont {
            vals.push(at_val);
        }
        let set = if is_ont { &ONT_INSERT_SQL } else { &INSERT_SQL };
        let sql = set.get(rec.resource, |m| {
            let mut cols: Vec<&str> = m
                .cols
                .iter()
                .filter_map(|c| match c {
                    Plain(c) | Ref(c) => Some(*c),
                    Pons => None,
                })
                .collect();
            cols.push("updated");
            if is_ont {
                cols.push("created");
            }
            let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            format!(
                "INSERT INTO {} ({}) VALUES ({})",
                m.table,
                cols.join(", "),
                marks.join(", ")
            )
        });
        self.conn
            .prepare_cached(sql)
            .map_err(backend)?
            .execute(rusqlite::params_from_iter(vals.iter()))
            .map_err(backend)?;
        let id = self.conn.last_insert_rowid();
        if rec.resource.is_parent() {
            ids.0.insert(cache_key(rec.resource, rec.key()), id);
        }
        if rec.resource == Resource::Compound {
            set_pons(&self.conn, ids, id, &refs)?;
        }
        Ok(id)
    }

    fn sync_update(
        &mut self,
        id: i64,
        rec: &Record,
        changed: &[usize],
        restore: bool,
        ids: &mut IdCache,
        at: &str,
    ) -> StoreResult<()> {
        self.sync_touches(rec.resource);
        let m = meta(rec.resource);
        let refs = rec.refs();
        for &i in changed {
            let col = match m.cols.get(i) {
                Some(Plain(c) | Ref(c)) => *c,
                Some(Pons) => {
                    set_pons(&self.conn, ids, id, &refs)?;
                    continue;
                }
                None => continue,
            };
            let v = column_value(&self.conn, ids, rec, &refs, i)?;
            let sql = format!(
                "UPDATE {} SET {col} = ?1, updated = ?2 WHERE id = ?3",
                m.table
            );
            self.conn
                .prepare_cached(&sql)
                .map_err(backend)?
                .execute(params![v, at, id])
                .map_err(backend)?;
        }
        if restore {
            let sql = format!(
                "UPDATE {} SET removed = 0, updated = ?1 WHERE id = ?2",
                m.table
            );
            self.conn
                .prepare_cached(&sql)
                .map_err(backend)?
                .execute(params![at, id])
                .map_err(backend)?;
        }
        Ok(())
    }

    fn sync_remove(&mut self, resource: Resource, id: i64, at: &str) -> StoreResult<()> {
        self.sync_touches(resource);
        let sql = format!(
            "UPDATE {} SET removed = 1, updated = ?1 WHERE id = ?2",
            meta(resource).table
        );
        self.conn
            .prepare_cached(&sql)
            .map_err(backend)?
            .execute(params![at, id])
            .map_err(backend)?;
        Ok(())
    }

    fn sync_holder(&mut self, resource: Resource, id: i64) -> StoreResult<Option<Holder>> {
        let table = match resource {
            Resource::Port => "port",
            Resource::Ont => "ont",
            _ => return Ok(None),
        };
        let sql = format!(
            "SELECT s.id, s.user_name, s.service_type, s.state FROM {table} x \
             JOIN service s ON s.id = x.service_id WHERE x.id = ?1"
        );
        self.conn
            .prepare_cached(&sql)
            .map_err(backend)?
            .query_row([id], |r| {
                Ok(Holder {
                    service_id: r.get(0)?,
                    user_name: r.get(1)?,
                    service_type: r.get(2)?,
                    active: r.get::<_, String>(3)? == "ACTIVE",
                })
            })
            .optional()
            .map_err(backend)
    }

    fn sync_flag_conflict(&mut self, service_id: i64, reason: &str, at: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE service SET conflict = 1, conflict_reason = ?2, updated = ?3 WHERE id = ?1",
            )
            .map_err(backend)?
            .execute(params![service_id, reason, at])
            .map_err(backend)?;
        Ok(())
    }

    fn log_resource(&mut self, e: &ResourceLogWrite<'_>) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO resource_log (at, actor, ip, resource_type, code, name, operation, \
                 old_values, new_values) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .map_err(backend)?
            .execute(params![
                e.at,
                e.actor,
                e.ip,
                e.resource_type,
                e.code,
                e.name,
                e.operation,
                e.old_values,
                e.new_values
            ])
            .map_err(backend)?;
        Ok(())
    }

    fn journal_put(&mut self, run_id: i64, first_seq: u64, bodies: &[Vec<u8>]) -> StoreResult<()> {
        let mut st = self
            .conn
            .prepare_cached(
                "INSERT INTO sync_journal_change (run_id, seq, body) VALUES (?1, ?2, ?3)",
            )
            .map_err(backend)?;
        for (i, body) in bodies.iter().enumerate() {
            let seq = i64::try_from(first_seq + i as u64).unwrap_or(i64::MAX);
            st.execute(params![run_id, seq, body]).map_err(backend)?;
        }
        Ok(())
    }

    fn journal_len(&mut self, run_id: i64) -> StoreResult<u64> {
        self.conn
            .prepare_cached("SELECT count(*) FROM sync_journal_change WHERE run_id = ?1")
            .map_err(backend)?
            .query_row([run_id], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(backend)
    }

    fn journal_decide(&mut self, h: &JournalHead) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO sync_journal (run_id, system, holder, snapshot, watermark, rejected, \
                 changes, decided) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(backend)?
            .execute(params![
                h.run_id,
                h.system,
                h.holder,
                h.snapshot,
                h.watermark,
                h.rejected as i64,
                h.changes as i64,
                h.decided
            ])
            .map_err(backend)?;
        Ok(())
    }

    fn journal_heads(&mut self, system: Option<&str>) -> StoreResult<Vec<JournalHead>> {
        self.conn
            .prepare_cached(
                "SELECT run_id, system, holder, snapshot, watermark, rejected, changes, decided \
                 FROM sync_journal WHERE ?1 IS NULL OR system = ?1 ORDER BY run_id",
            )
            .map_err(backend)?
            .query_map([system], |r| {
                Ok(JournalHead {
                    run_id: r.get(0)?,
                    system: r.get(1)?,
                    holder: r.get(2)?,
                    snapshot: r.get(3)?,
                    watermark: r.get(4)?,
                    rejected: r.get::<_, i64>(5)?.max(0) as u64,
                    changes: r.get::<_, i64>(6)?.max(0) as u64,
                    decided: r.get(7)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(backend)
    }

    fn journal_take(&mut self, run_id: i64, limit: usize) -> StoreResult<Vec<Vec<u8>>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, Vec<u8>)> = self
            .conn
            .prepare_cached(
                "SELECT seq, body FROM sync_journal_change WHERE run_id = ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(backend)?
            .query_map(params![run_id, limit], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(backend)?;
        if let Some((last, _)) = rows.last() {
            self.conn
                .prepare_cached("DELETE FROM sync_journal_change WHERE run_id = ?1 AND seq <= ?2")
                .map_err(backend)?
                .execute(params![run_id, last])
                .map_err(backend)?;
        }
        Ok(rows.into_iter().map(|(_, b)| b).collect())
    }

    fn journal_close(&mut self, run_id: i64) -> StoreResult<()> {
        self.conn
            .prepare_cached("DELETE FROM sync_journal WHERE run_id = ?1")
            .map_err(backend)?
            .execute([run_id])
            .map_err(backend)?;
        Ok(())
    }

    fn journal_drop_undecided(&mut self) -> StoreResult<u64> {
        self.conn
            .prepare_cached(
                "DELETE FROM sync_journal_change WHERE run_id NOT IN (SELECT run_id FROM sync_journal) \
                 AND run_id IN (SELECT id FROM sync_run WHERE status <> 'RUNNING')",
            )
            .map_err(backend)?
            .execute([])
            .map(|n| n as u64)
            .map_err(backend)
    }

    fn sync_run_add(&mut self, run_id: i64, c: &SyncCounts) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE sync_run SET added = added + ?2, changed = changed + ?3, \
                 removed = removed + ?4, conflicts = conflicts + ?5 WHERE id = ?1",
            )
            .map_err(backend)?
            .execute(params![
                run_id,
                c.added as i64,
                c.changed as i64,
                c.removed as i64,
                c.conflicts as i64
            ])
            .map_err(backend)?;
        Ok(())
    }

    fn sync_run_counts(&mut self, run_id: i64) -> StoreResult<SyncCounts> {
        self.conn
            .prepare_cached(
                "SELECT added, changed, removed, rejected, conflicts FROM sync_run WHERE id = ?1",
            )
            .map_err(backend)?
            .query_row([run_id], |r| {
                let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                Ok(SyncCounts {
                    added: n(0)?,
                    changed: n(1)?,
                    removed: n(2)?,
                    rejected: n(3)?,
                    conflicts: n(4)?,
                })
            })
            .map_err(backend)
    }
}
