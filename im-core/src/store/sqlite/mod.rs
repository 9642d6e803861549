//! The embedded store: SQLite through rusqlite (bundled), WAL, foreign keys,
//! versioned migrations applied on open, `synchronous=FULL` by default.

pub(crate) mod access;
pub(crate) mod audit;
pub(crate) mod inventory_admin;
mod inventory_load;
mod login;
mod outbox;
pub(crate) mod query;
mod read;
mod sync;
mod write;

use super::{ReadConn, Store, StoreError, StoreResult, WriteConn};
use crate::Synchronous;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The migrations, in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[Migration] = &[
    Migration::sql(include_str!("schema.sql")),
    Migration::sql(include_str!("migrations/002_sync.sql")),
    Migration::sql(include_str!("migrations/003_login.sql")),
    Migration::sql(include_str!("migrations/004_sync_journal.sql")),
    Migration::sql(include_str!("migrations/005_operations.sql")),
    Migration::schema_text(include_str!("migrations/006_hot_path_constraints.sql")),
];

/// One step of the schema's history, applied in one transaction.
struct Migration {
    sql: &'static str,
    /// The step edits table definitions in `sqlite_schema` (only changes
    /// that leave the stored rows valid): the schema version is bumped after
    /// it so that every connection reloads the schema.
    edits_schema_text: bool,
}

impl Migration {
    const fn sql(sql: &'static str) -> Migration {
        Migration {
            sql,
            edits_schema_text: false,
        }
    }

    const fn schema_text(sql: &'static str) -> Migration {
        Migration {
            sql,
            edits_schema_text: true,
        }
    }
}

/// A SQLite database file.
///
/// ```
/// use im_core::store::{Store, ReadConn, sqlite::SqliteStore};
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteStore::open(dir.path().join("im.db"), im_core::Synchronous::Full).unwrap();
/// store.open_reader().unwrap().ping().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    path: PathBuf,
    synchronous: Synchronous,
    background_checkpoint: bool,
    writer_cache_mb: u32,
}

impl SqliteStore {
    /// Opens (creating when absent) and migrates the database at `path`.
    pub fn open(path: impl Into<PathBuf>, synchronous: Synchronous) -> StoreResult<SqliteStore> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("create {}: {e}", dir.display())))?;
        }
        let store = SqliteStore {
            path,
            synchronous,
            background_checkpoint: false,
            writer_cache_mb: 64,
        };
        let mut conn = store.connect(false)?;
        migrate(&mut conn)?;
        Ok(store)
    }

    /// Checkpoints the WAL from a thread of its own instead of in the commit
    /// that fills it: lower tail latency, at the cost of the second core's
    /// time (see `CoreConfig::background_checkpoint`).
    pub fn with_background_checkpoint(mut self, on: bool) -> SqliteStore {
        self.background_checkpoint = on;
        self
    }

    /// Sizes the writer connection's page cache (MiB, at least 2; see
    /// `CoreConfig::writer_cache_mb`).
    pub fn with_writer_cache_mb(mut self, mb: u32) -> SqliteStore {
        self.writer_cache_mb = mb.max(2);
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connect(&self, read_only: bool) -> StoreResult<Connection> {
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(&self.path, flags).map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(backend)?;
        if !read_only {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .map_err(backend)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Backend(format!(
                    "journal_mode is {mode}, not wal"
                )));
            }
        }
        conn.pragma_update(None, "synchronous", self.synchronous.pragma())
            .map_err(backend)?;
        // Plans must not depend on bound values: otherwise SQLite re-prepares
        // a statement (an ORDER BY, a join) each time a parameter changes,
        // which cost the hot ADSL Install a fifth of the writer's time.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(backend)?;
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(backend)?;
        conn.set_prepared_statement_cache_capacity(128);
        Ok(conn)
    }
}

impl Store for SqliteStore {
    type Writer = SqliteWriter;
    type Reader = SqliteReader;

    fn open_writer(&self) -> StoreResult<SqliteWriter> {
        let conn = self.connect(false)?;
        // A bigger page cache keeps the hot indexes of a large inventory in memory.
        conn.pragma_update(None, "cache_size", -i64::from(self.writer_cache_mb) * 1024)
            .map_err(backend)?;
        // Checkpoint every ~20 MB of WAL rather than 4 MB: a page that many
        // batches dirty (ports are scattered over the inventory) is copied
        // back once, and the database file is synced less often (+40%
        // accepted orders/s in the intake benchmark against the default);
        // larger intervals buy little more and lengthen the commit that
        // runs the checkpoint (the p99 latency).
        let bg = self.background_checkpoint;
        conn.pragma_update(None, "wal_autocheckpoint", 5_000)
            .map_err(backend)?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .map_err(backend)?;
        let mut conn = conn;
        // With a checkpointer, its WAL hook replaces the automatic checkpoint.
        let checkpointer = if bg {
            Some(Checkpointer::start(self.connect(false)?, &mut conn)?)
        } else {
            None
        };
        Ok(SqliteWriter {
            conn,
            depth: 0,
            cache: InventoryCache::default(),
            data_version: None,
            _checkpointer: checkpointer,
        })
    }

    fn open_reader(&self) -> StoreResult<SqliteReader> {
        Ok(SqliteReader {
            conn: self.connect(true)?,
        })
    }
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::Backend(format!(
            "database schema version {version} is newer than this IM ({known})"
        )));
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(m.sql).map_err(backend)?;
        if m.edits_schema_text {
            let v: i64 = tx
                .pragma_query_value(None, "schema_version", |r| r.get(0))
                .map_err(backend)?;
            tx.pragma_update(None, "schema_version", v + 1)
                .map_err(backend)?;
            // Parses the edited schema now: a mistake fails here, inside
            // the migration's transaction, and is rolled back.
            tx.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| {
                StoreError::Backend(format!(
                    "migration {} left the schema unreadable: {e}",
                    i + 1
                ))
            })?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

/// Maps a rusqlite error to a [`StoreError`].
pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e
        && f.code == rusqlite::ErrorCode::ConstraintViolation
    {
        return StoreError::Constraint(msg.clone().unwrap_or_else(|| f.to_string()));
    }
    StoreError::Backend(e.to_string())
}

/// A read-only connection.
pub struct SqliteReader {
    conn: Connection,
}

impl ReadConn for SqliteReader {
    fn ping(&mut self) -> StoreResult<()> {
        let ok: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM meta")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(backend)?;
        let _ = ok;
        Ok(())
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// The writer's connection.
pub struct SqliteWriter {
    conn: Connection,
    depth: u32,
    cache: InventoryCache,
    /// `PRAGMA data_version` at the last batch.
    data_version: Option<i64>,
    // Declared last: dropped after `conn`, so its final checkpoint sees
    // every commit.
    _checkpointer: Option<Checkpointer>,
}

/// Copies the WAL back into the database file from a thread and connection
/// of its own, so that no commit has to copy thousands of scattered pages
/// and sync the database file (the long stalls of a large inventory).
///
/// The writer's WAL hook reports the log's length after every commit. Past
/// [`BG_CHECKPOINT_FRAMES`] it wakes the checkpointer, which runs a
/// `PASSIVE` checkpoint (never waiting for, nor blocking, the writer). Such a
/// checkpoint cannot restart the log while commits keep arriving, so past
/// [`TAIL_CHECKPOINT_FRAMES`] the writer copies the short rest itself (a
/// `PASSIVE` checkpoint of its own, right after a commit): the log is then
/// fully copied and the next batch starts it over.
struct Checkpointer {
    shared: std::sync::Arc<CheckpointShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Log length (frames, ~4 KiB each) at which the checkpointer is woken.
const BG_CHECKPOINT_FRAMES: i32 = 4_000;
/// Log length at which the writer copies the rest and the log restarts.
const TAIL_CHECKPOINT_FRAMES: i32 = 24_000;

#[derive(Default)]
struct CheckpointShared {
    /// (checkpoint wanted, stop)
    state: std::sync::Mutex<(bool, bool)>,
    cv: std::sync::Condvar,
}

impl CheckpointShared {
    fn set(&self, f: impl FnOnce(&mut (bool, bool))) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
            self.cv.notify_all();
        }
    }
}

impl Checkpointer {
    /// Starts the thread on `conn` and installs the WAL hook on `writer`.
    fn start(conn: Connection, writer: &mut Connection) -> StoreResult<Checkpointer> {
        let shared = std::sync::Arc::new(CheckpointShared::default());
        let hook = std::sync::Arc::clone(&shared);
        writer
            .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, frames: i32| {
                if frames >= TAIL_CHECKPOINT_FRAMES {
                    // Busy (the checkpointer is copying): try after the next commit.
                    let _ = wal.checkpoint_v2(rusqlite::wal::CheckpointMode::PASSIVE);
                } else if frames >= BG_CHECKPOINT_FRAMES {
                    hook.set(|s| s.0 = true);
                }
                Ok(())
            }))
            .map_err(backend)?;
        let flag = std::sync::Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("im-checkpoint".into())
            .spawn(move || {
                // Copying back can wait; the writer and the calls cannot: this
                // thread yields the cores to them (nice 10; raising one's own
                // nice value needs no privilege).
                if let Err(e) =
                    rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10)
                {
                    tracing::debug!(error = %e, "checkpointer keeps its priority");
                }
                loop {
                    {
                        let Ok(guard) = flag.state.lock() else { return };
                        let Ok(mut guard) = flag.cv.wait_while(guard, |s| !s.0 && !s.1) else {
                            return;
                        };
                        if guard.1 {
                            break;
                        }
                        guard.0 = false;
                    }
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.set(|s| s.1 = true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Hot inventory lookups of the writer. Only the writer changes the
/// inventory (through [`WriteConn::load_inventory`], which clears this, and
/// sync, which drops what it changes); a commit by another connection is
/// seen through `PRAGMA data_version` at the next batch and clears it all.
/// Intake never writes exchanges or DSLAMs, so a savepoint rollback cannot
/// make those stale.
#[derive(Default)]
pub(crate) struct InventoryCache {
    pub(crate) exchanges: std::collections::HashMap<String, Option<super::ExchangeRec>>,
    pub(crate) dslams: std::collections::HashMap<i64, Vec<super::DslamRec>>,
    /// Per DSLAM, a port position (frame, slot, port) before which no port
    /// of the DSLAM can be picked: the search for the first free port starts
    /// there instead of at the DSLAM's first port. Taking a port moves it up
    /// to that port; freeing one moves it down to it; anything else that may
    /// free ports (sync, operators' changes, a rolled-back job) drops it.
    pub(crate) pick_from: std::collections::HashMap<i64, PortPos>,
    /// The DSLAMs whose `pick_from` moved inside the open savepoint, dropped
    /// if it rolls back.
    pub(crate) moved_in_savepoint: Vec<i64>,
}

/// A port's position on its DSLAM: (frame, slot, port).
pub(crate) type PortPos = (i64, i64, i64);

impl InventoryCache {
    /// Forgets where free ports start (every DSLAM's search starts over).
    pub(crate) fn forget_picks(&mut self) {
        self.pick_from.clear();
        self.moved_in_savepoint.clear();
    }
}

impl WriteConn for SqliteWriter {
    fn begin(&mut self) -> StoreResult<()> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(backend)?;
        self.depth = 0;
        self.cache.moved_in_savepoint.clear();
        // Another connection (another process: a sync runner, a repair)
        // committed since the last batch: what the writer cached may be stale.
        let version: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(backend)?;
        if self.data_version != Some(version) {
            self.cache = InventoryCache::default();
            self.data_version = Some(version);
        }
        Ok(())
    }

    fn savepoint(&mut self) -> StoreResult<()> {
        self.conn
            .prepare_cached("SAVEPOINT job")
            .and_then(|mut st| st.execute([]))
            .map_err(backend)?;
        self.depth += 1;
        self.cache.moved_in_savepoint.clear();
        Ok(())
    }

    fn release(&mut self) -> StoreResult<()> {
        self.conn
            .prepare_cached("RELEASE job")
            .and_then(|mut st| st.execute([]))
            .map_err(backend)?;
        self.depth = self.depth.saturating_sub(1);
        self.cache.moved_in_savepoint.clear();
        Ok(())
    }

    fn rollback_to(&mut self) -> StoreResult<()> {
        // Ports the job took are free again: their DSLAMs' searches start over.
        let moved = std::mem::take(&mut self.cache.moved_in_savepoint);
        for d in moved {
            self.cache.pick_from.remove(&d);
        }
        for sql in ["ROLLBACK TO job", "RELEASE job"] {
            self.conn
                .prepare_cached(sql)
                .and_then(|mut st| st.execute([]))
                .map_err(backend)?;
        }
        self.depth = self.depth.saturating_sub(1);
        Ok(())
    }

    fn commit(&mut self) -> StoreResult<()> {
        self.conn.execute_batch("COMMIT").map_err(backend)
    }

    fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.depth = 0;
        self.cache.forget_picks();
    }

    fn forget_picks(&mut self) {
        self.cache.forget_picks();
    }

    fn load_inventory(&mut self, inventory: &crate::model::Inventory, at: &str) -> StoreResult<()> {
        self.cache = InventoryCache::default();
        inventory_load::load(&self.conn, inventory, at)
    }

    fn put_om_account(&mut self, login: &str, password_hash: &str, at: &str) -> StoreResult<()> {
        write::put_om_account(&self.conn, login, password_hash, at)
    }
}

/// Gives the shared read implementation its connection.
pub(crate) trait HasConn {
    fn conn(&self) -> &Connection;
    /// The inventory cache, for the writer only.
    fn cache(&mut self) -> Option<&mut InventoryCache>;
}

impl HasConn for SqliteReader {
    fn conn(&self) -> &Connection {
        &self.conn
    }
    fn cache(&mut self) -> Option<&mut InventoryCache> {
        None
    }
}

impl HasConn for SqliteWriter {
    fn conn(&self) -> &Connection {
        &self.conn
    }
    fn cache(&mut self) -> Option<&mut InventoryCache> {
        Some(&mut self.cache)
    }
}
