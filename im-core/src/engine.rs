//! The [`Im`] handle: opens the store, runs the writer, serves submitters.

use crate::model::Inventory;
use crate::{CoreConfig, Form, Outcome};

/// Errors of the core's own operations (not of a work order: those are
/// [`Outcome`]s).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The database could not be opened, migrated or used.
    #[error("storage: {0}")]
    Storage(String),
    /// The key file could not be read or created.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A value given to the core is not acceptable.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The writer has stopped (the handle was closed).
    #[error("the core is closed")]
    Closed,
}

/// Counters of the group-commit writer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Work orders waiting for the writer now.
    pub queue_depth: usize,
    /// Transactions committed.
    pub batches: u64,
    /// Work orders judged by the writer.
    pub jobs: u64,
    /// Batch-size histogram: counts of batches of size ≤ 1, 2, 4, … 1024, more.
    pub batch_size_buckets: [u64; 12],
}

/// The core handle: cheap to clone, `Send + Sync`, usable from async code.
#[derive(Clone)]
pub struct Im {
    _priv: (),
}

impl Im {
    /// Opens (creating and migrating when needed) the database and starts the writer.
    pub fn open(_config: CoreConfig) -> Result<Im, CoreError> {
        unimplemented!()
    }

    /// Judges one call and, when accepted, stores it before answering.
    /// Never blocks the async runtime.
    pub async fn submit(&self, _form: Form) -> Outcome {
        unimplemented!()
    }

    /// [`Im::submit`] for synchronous callers (do not call from async code).
    pub fn submit_blocking(&self, _form: Form) -> Outcome {
        unimplemented!()
    }

    /// Loads inventory rows (upsert by natural key) in one transaction.
    pub fn load_inventory(&self, _inventory: &Inventory) -> Result<(), CoreError> {
        unimplemented!()
    }

    /// Whether the inventory holds no exchange yet.
    pub fn inventory_is_empty(&self) -> Result<bool, CoreError> {
        unimplemented!()
    }

    /// Creates the OM account `login` (LOCAL, with a role that allows the OM
    /// interface) or resets its password; drops cached credentials.
    pub fn set_om_account(&self, _login: &str, _password: &str) -> Result<(), CoreError> {
        unimplemented!()
    }

    /// Checks that the store answers.
    pub fn health(&self) -> Result<(), CoreError> {
        unimplemented!()
    }

    /// Writer counters.
    pub fn writer_stats(&self) -> WriterStats {
        unimplemented!()
    }

    /// Stops accepting calls, lets the writer finish what it holds, closes the store.
    pub fn close(&self) {
        unimplemented!()
    }
}
