//! Delivery of the activation outbox to AM (`inventory-sync-and-am.md` §4).
//!
//! - [`wire`]: the command and ack documents (the only module that knows
//!   the format);
//! - [`client`]: one attempt over a pooled hyper client, classified as
//!   delivered, rejected or worth retrying;
//! - [`worker`]: the Tokio task that drains the outbox with the `am` retry
//!   policy and records every attempt through `im_core::Im`;
//! - [`sim`]: an AM simulator for tests and demonstrations.
//!
//! What a delivery means for commands and tasks is decided by
//! `im_core::lifecycle`; this module only moves bytes and keeps time.

pub mod client;
pub mod sim;
pub mod wire;
pub mod worker;

pub use client::{AmClient, AmClientConfig, Answer};
pub use sim::AmSim;
pub use worker::{DeliveryWorker, WorkerConfig, WorkerStats};
