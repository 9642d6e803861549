//! Settings of the core (storage, writer, caches).

use std::path::PathBuf;
use std::time::Duration;

/// SQLite `synchronous` level: how hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Every commit is on disk before it is acknowledged (default).
    #[default]
    Full,
    /// WAL `NORMAL`: a power loss may lose the last commits (not a crash of IM).
    Normal,
    /// No syncing at all; for throw-away databases only.
    Off,
}

impl Synchronous {
    /// The PRAGMA value.
    pub const fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Off => "OFF",
        }
    }
}

/// Settings for [`crate::Im::open`].
///
/// ```
/// let cfg = im_core::CoreConfig::new("data/im.db");
/// assert_eq!(cfg.key_file, std::path::PathBuf::from("data/im.key"));
/// assert_eq!(cfg.synchronous, im_core::Synchronous::Full);
/// ```
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// SQLite database file (created when absent, with its parent directory).
    pub db_path: PathBuf,
    /// Key file for values encrypted at rest; created (mode 0600) when absent.
    /// Default: the database path with the extension `key`.
    pub key_file: PathBuf,
    /// Durability of each commit. Default `Full`.
    pub synchronous: Synchronous,
    /// Work orders that may wait for the writer; beyond it calls get -9999.
    /// Default 8192.
    pub queue_capacity: usize,
    /// Most work orders committed in one transaction. Default 1024.
    pub max_batch: usize,
    /// How long a verified OM credential is trusted without a new hash.
    /// Default 300 s.
    pub credential_cache_ttl: Duration,
    /// How long a call waits for the writer before -9999, counted only
    /// while its request is still queued (once the writer took it, the call
    /// waits for its real outcome). Default 10 s.
    pub queue_timeout: Duration,
    /// Read-only connections for queries and logins. Default 4.
    pub read_connections: usize,
    /// Copy the WAL back into the database file from a background thread
    /// instead of in the commit that fills it. Lowers the tail latency of
    /// calls (no call waits for a checkpoint) but spends time of another
    /// core: measured end to end on 2 cores, p99 17 ms instead of 33 ms at
    /// the same throughput; in the core benchmark, where submitters use the
    /// other core, 10% fewer orders/s. Default `false` (the example server's
    /// default is `true`).
    pub background_checkpoint: bool,
    /// The writer connection's page cache, in MiB: the hot pages of the
    /// inventory and of the appended tables. Most of the process's memory;
    /// a smaller cache costs throughput once the inventory's hot pages do
    /// not fit. Default 48.
    pub writer_cache_mb: u32,
    /// Operator logins: lockout and the AD settings. Default: 5 failures
    /// lock for 15 min; no AD.
    pub login: crate::login::LoginConfig,
}

impl CoreConfig {
    /// Defaults for a database at `db_path`.
    pub fn new(db_path: impl Into<PathBuf>) -> CoreConfig {
        let db_path = db_path.into();
        let key_file = db_path.with_extension("key");
        CoreConfig {
            db_path,
            key_file,
            synchronous: Synchronous::Full,
            queue_capacity: 8192,
            max_batch: 1024,
            credential_cache_ttl: Duration::from_secs(300),
            queue_timeout: Duration::from_secs(10),
            read_connections: 4,
            background_checkpoint: false,
            writer_cache_mb: 48,
            login: crate::login::LoginConfig::default(),
        }
    }
}
