//! The Matrix/eMatrix northbound interface (NBI): the paged XML wire
//! format ([`wire`], the only module that knows it), the [`Source`] trait
//! with a [`Run`] over it (snapshot pinning, paging, watermark), the HTTP
//! client ([`NbiClient`]), an in-memory / file-export source
//! ([`MemorySource`]), and simulators of both systems ([`NbiSim`]).
//! The contract is `docs/nbi.md`.

pub mod client;
pub mod demo_rows;
pub mod sim;
pub mod source;
pub mod wire;

pub use client::{NbiClient, NbiClientConfig};
pub use sim::{Fault, FaultKind, NbiSim, SimConfig, SnapshotInfo};
pub use source::{EntityCount, MemorySource, NbiError, PageRequest, Run, Source};
pub use wire::{
    Entity, Page, PageError, PageHeader, PageWriter, ParseLimits, Row, RowError, RowKey, System,
    Tombstone, parse_page, write_page,
};
