//! # im-sync
//!
//! IM's links to the systems around its inventory:
//!
//! - [`nbi`]: the Matrix (ADSL) and eMatrix (FTTH) northbound interface —
//!   the paged XML wire format, a client, and simulators of both systems.
//! - [`sync`]: the sync driver (a full or incremental run from any NBI
//!   source into the core) and the scheduler.
//! - [`am`]: delivery of the activation outbox to AM — the command wire
//!   format, the delivery worker, and an AM simulator.
//!
//! The domain (what a row or a command means, what a delivery changes) lives
//! in `im-core`; this crate moves bytes and schedules work.

pub mod am;
pub mod nbi;
pub mod sync;
