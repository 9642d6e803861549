//! Inventory reconciliation (`inventory-sync-and-am.md` §3): the rules by
//! which a run of a source system (Matrix, eMatrix) changes IM's copy of the
//! inventory. The wire (HTTP, XML, paging) lives in `im-sync`; this module
//! takes typed rows page by page and owns every rule:
//!
//! - **Diff, not reload**: each row is compared with the stored one by its
//!   natural key; only added, changed, restored and removed rows become
//!   changes. Unchanged rows are not rewritten.
//! - **Soft removal**: a row missing from a full snapshot (or tombstoned by
//!   an incremental listing) gets `removed = 1`; nothing is deleted.
//! - **Usage is protected**: a sync never writes `port.service_id` or
//!   `ont.service_id`. When it removes, or reports `FAULTY`, a port or ONT
//!   that an `ACTIVE` service holds, the resource stays held, the service is
//!   flagged (`conflict = 1`, `conflict_reason`) and the run reports the
//!   conflict. A held port reported `OCCUPIED` is normal. An ONT that OM
//!   registered (`origin = 'OM'`) and the source does not list is left alone
//!   until [`SyncConfig::ont_grace`] has passed since its registration.
//! - **Guards**: rejected rows (missing key, unknown parent, bad value) are
//!   counted and reported; more than [`SyncConfig::max_bad_share`] of them,
//!   or a full snapshot removing more than [`SyncConfig::max_removal_share`]
//!   of the system's live rows, aborts the run unless it is forced.
//! - **Atomic**: the diff is computed on a read connection of its own, outside
//!   the writer, so intake keeps flowing; the changes are then applied by the
//!   single writer in one transaction (whose size grows with the diff, not with
//!   the inventory) together with the resource operation log, the conflict
//!   flags and the run's end. A run that fails leaves the inventory as it was
//!   and is recorded `FAILED` (or `ABORTED` by a guard).
//! - **One at a time**: a run holds its system's lease (`sync_lock`, claimed
//!   in a write transaction, so across processes too) from
//!   [`Im::begin_sync`] to its end; an expired lease (a crashed process) may
//!   be taken over, and its run is then recorded `FAILED`.
//!
//! Memory: a session keeps the changes (the diff), one bit per stored row id
//! seen (for the removal pass of a full run), 64-bit hashes of the keys it
//! adds, and the keys of the parents it has seen; never the snapshot.
//!
//! ```no_run
//! use im_core::sync::{SyncKind, SyncOptions, SyncSystem};
//! use im_core::model::{Inventory, Sector, Domain};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let im = im_core::Im::open(im_core::CoreConfig::new("im.db"))?;
//! let mut run = im.begin_sync(SyncOptions::new(SyncSystem::Matrix, SyncKind::Full))?;
//! run.set_source_version("S000001", "W000001");
//! let mut page = Inventory::default();
//! page.sectors.push(Sector { domain: Domain::Adsl, code: "CAIRO".into(), name: "Cairo".into() });
//! run.page(&page, &[], &[])?;
//! let report = run.finish();
//! println!("{:?}: +{} ~{} -{}", report.status, report.counts.added, report.counts.changed, report.counts.removed);
//! # Ok(()) }
//! ```

use crate::model::{
    City, Compound, Domain, Dslam, Exchange, Inventory, Olt, Ont, PonPort, PonPortRef, Port, Vlan,
    Zone,
};
use crate::store::{
    Holder, IdCache, ResourceLogWrite, RunEnd, StoreError, StoredRow, SyncRead, WriteConn,
};
use crate::{CoreError, Im};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod journal;
pub(crate) use journal::Sliced;

/// The source systems IM mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncSystem {
    /// Matrix: ADSL map, exchanges, DSLAMs, ports.
    Matrix,
    /// eMatrix: FTTH map, OLTs, PON ports, compounds, ONTs, VLANs.
    Ematrix,
}

impl SyncSystem {
    /// `matrix` or `ematrix`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SyncSystem::Matrix => "matrix",
            SyncSystem::Ematrix => "ematrix",
        }
    }

    /// Reads `matrix` or `ematrix` (ASCII case ignored).
    pub fn parse(s: &str) -> Option<SyncSystem> {
        [SyncSystem::Matrix, SyncSystem::Ematrix]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The map of its sectors, zones and cities.
    pub const fn domain(self) -> Domain {
        match self {
            SyncSystem::Matrix => Domain::Adsl,
            SyncSystem::Ematrix => Domain::Ftth,
        }
    }

    /// The resources it owns, parents first.
    pub const fn resources(self) -> &'static [Resource] {
        match self {
            SyncSystem::Matrix => &[
                Resource::Sector,
                Resource::Zone,
                Resource::City,
                Resource::Exchange,
                Resource::Dslam,
                Resource::Port,
            ],
            SyncSystem::Ematrix => &[
                Resource::Sector,
                Resource::Zone,
                Resource::City,
                Resource::Olt,
                Resource::PonPort,
                Resource::Compound,
                Resource::Ont,
                Resource::Vlan,
            ],
        }
    }
}

impl fmt::Display for SyncSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Full (every row of a snapshot) or incremental (rows changed since a watermark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncKind {
    /// Every row; rows not listed are removed.
    Full,
    /// Changed rows and tombstones since the last good run's watermark.
    Incremental,
}

impl SyncKind {
    /// `FULL` or `INCREMENTAL`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SyncKind::Full => "FULL",
            SyncKind::Incremental => "INCREMENTAL",
        }
    }
}

/// How a run ended (or that it is still running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// In progress (or its process died; its lease then expires).
    Running,
    /// Applied.
    Succeeded,
    /// Failed (source, storage); nothing applied.
    Failed,
    /// Stopped by a guard; nothing applied.
    Aborted,
}

impl RunStatus {
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `ABORTED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Succeeded => "SUCCEEDED",
            RunStatus::Failed => "FAILED",
            RunStatus::Aborted => "ABORTED",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Aborted,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// An inventory resource type (a table), as the resource log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// Sector.
    Sector,
    /// Zone.
    Zone,
    /// City.
    City,
    /// Exchange (POP).
    Exchange,
    /// DSLAM.
    Dslam,
    /// DSLAM port.
    Port,
    /// OLT.
    Olt,
    /// PON port.
    PonPort,
    /// Compound.
    Compound,
    /// ONT.
    Ont,
    /// VLAN.
    Vlan,
}

impl Resource {
    /// The resource type as logged: `sector`, `zone`, `city`, `exchange`,
    /// `dslam`, `port`, `olt`, `ponport`, `compound`, `ont`, `vlan`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Resource::Sector => "sector",
            Resource::Zone => "zone",
            Resource::City => "city",
            Resource::Exchange => "exchange",
            Resource::Dslam => "dslam",
            Resource::Port => "port",
            Resource::Olt => "olt",
            Resource::PonPort => "ponport",
            Resource::Compound => "compound",
            Resource::Ont => "ont",
            Resource::Vlan => "vlan",
        }
    }

    /// The names of a row's values: the natural key first
    /// ([`Resource::key_len`] of them), then the source-owned fields.
    /// References name the referenced row by its natural key.
    pub const fn fields(self) -> &'static [&'static str] {
        match self {
            Resource::Sector => &["domain", "code", "name"],
            Resource::Zone => &["domain", "code", "name", "sector"],
            Resource::City => &["domain", "code", "name", "zone"],
            Resource::Exchange => &["code", "name", "city", "popid", "area_code"],
            Resource::Dslam => &["name", "exchange", "ip", "model", "technology"],
            Resource::Port => &["dslam", "frame", "slot", "port", "state"],
            Resource::Olt => &["name", "exchange", "ip", "model"],
            Resource::PonPort => &["olt", "frame", "slot", "port", "max_onts", "state"],
            Resource::Compound => &["code", "name", "exchange", "zone", "ponports"],
            Resource::Ont => &["serial", "pon", "ont_id", "model", "state", "origin"],
            Resource::Vlan => &["olt", "vlan_id", "purpose", "state"],
        }
    }

    /// How many of [`Resource::fields`] make the natural key.
    pub const fn key_len(self) -> usize {
        match self {
            Resource::Sector | Resource::Zone | Resource::City | Resource::Vlan => 2,
            Resource::Port | Resource::PonPort => 4,
            _ => 1,
        }
    }

    /// Whether rows are per map (`domain` is the first key value).
    pub const fn has_domain(self) -> bool {
        matches!(self, Resource::Sector | Resource::Zone | Resource::City)
    }

    /// Whether services hold rows of this type (ports, ONTs).
    pub const fn is_held(self) -> bool {
        matches!(self, Resource::Port | Resource::Ont)
    }

    fn name_field(self) -> Option<usize> {
        match self {
            Resource::Sector | Resource::Zone | Resource::City => Some(2),
            Resource::Exchange | Resource::Compound => Some(1),
            Resource::Dslam | Resource::Olt => Some(0),
            _ => None,
        }
    }

    pub(crate) fn is_parent(self) -> bool {
        !matches!(self, Resource::Port | Resource::Ont | Resource::Vlan)
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One value of a row (see [`Resource::fields`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Val {
    /// No value.
    Null,
    /// A whole number.
    Int(i64),
    /// Text (shared: repeated values such as states and parent keys are
    /// stored once per run).
    Text(Arc<str>),
}

impl Val {
    /// The text, if this is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Val::Text(t) => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Null => Ok(()),
            Val::Int(n) => write!(f, "{n}"),
            Val::Text(t) => f.write_str(t),
        }
    }
}

/// A row as a sync compares it: its type and its values in
/// [`Resource::fields`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The row's type.
    pub resource: Resource,
    /// Key values, then field values.
    pub vals: Box<[Val]>,
}

impl Record {
    /// The natural key values.
    pub fn key(&self) -> &[Val] {
        &self.vals[..self.resource.key_len().min(self.vals.len())]
    }

    /// The natural key as text: `ADSL:CAIRO`, `EX01`, `EX01-D1/0/2/17`,
    /// `OLT01/0/1/3`, `OLT01/100`, a serial.
    pub fn code(&self) -> String {
        key_text(self.resource, self.key())
    }

    /// The display name (the code for resources without one).
    pub fn name(&self) -> String {
        match self.resource.name_field() {
            Some(i) => self.vals.get(i).map(|v| v.to_string()).unwrap_or_default(),
            None => self.code(),
        }
    }

    /// The rows this one refers to: `(field index, parent type, parent key)`.
    /// A compound refers to each of its PON ports.
    pub fn refs(&self) -> Vec<(usize, Resource, Box<[Val]>)> {
        let v = &self.vals;
        let t = |i: usize| v.get(i).cloned().unwrap_or(Val::Null);
        let domain = |d: Domain| Val::Text(Arc::from(d.as_str()));
        match self.resource {
            Resource::Sector => vec![],
            Resource::Zone => vec![(3, Resource::Sector, Box::new([t(0), t(3)]))],
            Resource::City => vec![(3, Resource::Zone, Box::new([t(0), t(3)]))],
            Resource::Exchange => vec![(2, Resource::City, Box::new([domain(Domain::Adsl), t(2)]))],
            Resource::Dslam => vec![(1, Resource::Exchange, Box::new([t(1)]))],
            Resource::Port => vec![(0, Resource::Dslam, Box::new([t(0)]))],
            Resource::Olt => vec![(1, Resource::Exchange, Box::new([t(1)]))],
            Resource::PonPort => vec![(0, Resource::Olt, Box::new([t(0)]))],
            Resource::Compound => {
                let mut out: Vec<(usize, Resource, Box<[Val]>)> = vec![
                    (2, Resource::Exchange, Box::new([t(2)])),
                    (3, Resource::Zone, Box::new([domain(Domain::Ftth), t(3)])),
                ];
                if let Some(list) = v.get(4).and_then(Val::as_text) {
                    for p in list.split_whitespace() {
                        out.push((4, Resource::PonPort, pon_key(p)));
                    }
                }
                out
            }
            Resource::Ont => match v.get(1).and_then(Val::as_text) {
                Some(p) => vec![(1, Resource::PonPort, pon_key(p))],
                None => vec![],
            },
            Resource::Vlan => vec![(0, Resource::Olt, Box::new([t(0)]))],
        }
    }
}

/// The key values of a PON port from `OLT/frame/slot/port` (an unreadable
/// reference gives a key that matches nothing).
fn pon_key(s: &str) -> Box<[Val]> {
    match PonPortRef::parse(s) {
        Some(p) => Box::new([
            Val::Text(Arc::from(p.olt.as_str())),
            Val::Int(i64::from(p.frame)),
            Val::Int(i64::from(p.slot)),
            Val::Int(i64::from(p.port)),
        ]),
        None => Box::new([Val::Text(Arc::from(s)), Val::Null, Val::Null, Val::Null]),
    }
}

fn key_text(resource: Resource, key: &[Val]) -> String {
    use std::fmt::Write;
    let sep = if resource.has_domain() { ':' } else { '/' };
    let mut out = String::with_capacity(24);
    for (i, v) in key.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        let _ = write!(out, "{v}");
    }
    out
}

/// The natural key of a row a source reports removed (a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKey {
    /// Sector: map + code.
    Sector(Domain, String),
    /// Zone: map + code.
    Zone(Domain, String),
    /// City: map + code.
    City(Domain, String),
    /// Exchange code.
    Exchange(String),
    /// DSLAM name.
    Dslam(String),
    /// Port: DSLAM, frame, slot, port.
    Port(String, u32, u32, u32),
    /// OLT name.
    Olt(String),
    /// PON port.
    PonPort(PonPortRef),
    /// Compound code.
    Compound(String),
    /// ONT serial.
    Ont(String),
    /// VLAN: OLT name + VLAN id.
    Vlan(String, u16),
}

impl SourceKey {
    fn record_key(&self) -> (Resource, Box<[Val]>) {
        let t = |s: &str| Val::Text(Arc::from(s));
        let n = |x: u32| Val::Int(i64::from(x));
        match self {
            SourceKey::Sector(d, c) => (Resource::Sector, Box::new([t(d.as_str()), t(c)])),
            SourceKey::Zone(d, c) => (Resource::Zone, Box::new([t(d.as_str()), t(c)])),
            SourceKey::City(d, c) => (Resource::City, Box::new([t(d.as_str()), t(c)])),
            SourceKey::Exchange(c) => (Resource::Exchange, Box::new([t(c)])),
            SourceKey::Dslam(c) => (Resource::Dslam, Box::new([t(c)])),
            SourceKey::Port(d, f, s, p) => (Resource::Port, Box::new([t(d), n(*f), n(*s), n(*p)])),
            SourceKey::Olt(c) => (Resource::Olt, Box::new([t(c)])),
            SourceKey::PonPort(p) => (
                Resource::PonPort,
                Box::new([t(&p.olt), n(p.frame), n(p.slot), n(p.port)]),
            ),
            SourceKey::Compound(c) => (Resource::Compound, Box::new([t(c)])),
            SourceKey::Ont(c) => (Resource::Ont, Box::new([t(c)])),
            SourceKey::Vlan(o, id) => (Resource::Vlan, Box::new([t(o), n(u32::from(*id))])),
        }
    }
}

/// A row the run did not take, with the reason (for the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    /// The element or resource type (`port`, `ont`, …).
    pub element: String,
    /// The natural key as far as known.
    pub key: Option<String>,
    /// Why.
    pub reason: String,
}

/// A resource conflict a run found: a held resource the source removed or
/// reported faulty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The service flagged.
    pub service_id: i64,
    /// Its user name.
    pub user_name: String,
    /// Its service type.
    pub service_type: String,
    /// `port` or `ont`.
    pub resource: Resource,
    /// The resource's code (`EX01-D1/0/1/3`, an ONT serial).
    pub code: String,
    /// The reason stored on the service.
    pub reason: String,
}

/// What a run changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// Rows added.
    pub added: u64,
    /// Rows changed (restored rows included).
    pub changed: u64,
    /// Rows soft-removed.
    pub removed: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// Resource conflicts flagged.
    pub conflicts: u64,
}

/// Thresholds and timings of sync runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    /// Share of rejected rows (of all row elements read) above which a run
    /// aborts unless forced. Default 0.01 (1%).
    pub max_bad_share: f64,
    /// Share of the system's live rows a full run may remove before it
    /// aborts unless forced. Default 0.10 (10%).
    pub max_removal_share: f64,
    /// How long an ONT registered by OM may stay unlisted by the source
    /// before a full run removes it. Default 7 days.
    pub ont_grace: Duration,
    /// Lease of a run on its system; renewed while pages arrive, taken over
    /// by another run once expired. Default 10 minutes.
    pub lease: Duration,
    /// Rejected rows kept for the report (all are counted). Default 100.
    pub max_reported_rejects: usize,
    /// Changes applied per write transaction when a run's diff is larger
    /// than this (and the inventory is not empty): the run is journaled,
    /// then applied in slices of this many changes with OM calls served in
    /// between. Default 256.
    pub apply_slice: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            max_bad_share: 0.01,
            max_removal_share: 0.10,
            ont_grace: Duration::from_secs(7 * 24 * 3600),
            lease: Duration::from_secs(600),
            max_reported_rejects: 100,
            apply_slice: 256,
        }
    }
}

/// What [`Im::begin_sync`] starts.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOptions {
    /// Which system.
    pub system: SyncSystem,
    /// Full or incremental.
    pub kind: SyncKind,
    /// Override the guards.
    pub force: bool,
    /// For an incremental run: the watermark it reads from (recorded).
    pub since: Option<String>,
    /// Thresholds.
    pub config: SyncConfig,
}

impl SyncOptions {
    /// Defaults (not forced, [`SyncConfig::default`]).
    pub fn new(system: SyncSystem, kind: SyncKind) -> SyncOptions {
        SyncOptions {
            system,
            kind,
            force: false,
            since: None,
            config: SyncConfig::default(),
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncReport {
    /// The run's id in the run log (`sync_run`).
    pub run_id: i64,
    /// Which system.
    pub system: SyncSystem,
    /// Full or incremental.
    pub kind: SyncKind,
    /// How it ended.
    pub status: RunStatus,
    /// The source snapshot read.
    pub snapshot: Option<String>,
    /// The watermark kept for the next incremental run (when succeeded).
    pub watermark: Option<String>,
    /// What it changed (or would have changed, when not applied).
    pub counts: SyncCounts,
    /// Row elements read (rows, tombstones, rejects).
    pub elements: u64,
    /// Some rejected rows (at most [`SyncConfig::max_reported_rejects`]).
    pub rejects: Vec<RejectedRow>,
    /// The conflicts flagged.
    pub conflicts: Vec<Conflict>,
    /// Why it failed or aborted.
    pub error: Option<String>,
    /// From begin to end.
    pub duration: Duration,
    /// Time the writer spent applying (intake waits this long at most).
    pub apply_time: Duration,
}

/// A run as the run log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRunRec {
    /// Run id.
    pub id: i64,
    /// `matrix` / `ematrix`.
    pub system: String,
    /// `FULL` / `INCREMENTAL`.
    pub kind: String,
    /// Snapshot read.
    pub snapshot: Option<String>,
    /// Watermark of the run.
    pub watermark: Option<String>,
    /// `since` of an incremental run.
    pub since: Option<String>,
    /// Start (RFC 3339 UTC).
    pub started: String,
    /// End.
    pub ended: Option<String>,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `ABORTED`.
    pub status: String,
    /// Whether the guards were overridden.
    pub forced: bool,
    /// Counts.
    pub counts: SyncCounts,
    /// Why it failed or aborted.
    pub error: Option<String>,
}

/// Why a run could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Another run of the system holds the lease.
    #[error("a {system} sync is already running ({holder})")]
    Busy {
        /// The system.
        system: SyncSystem,
        /// Who holds the lease.
        holder: String,
    },
    /// The run lost its lease (it ran longer than the lease without
    /// renewing it, and another run took it over).
    #[error("the run lost its lease on {0}")]
    LeaseLost(SyncSystem),
    /// The session was already finished.
    #[error("the run is finished")]
    Finished,
    /// The core failed (storage, closed).
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl From<StoreError> for SyncError {
    fn from(e: StoreError) -> SyncError {
        SyncError::Core(CoreError::Storage(e))
    }
}

/// One bit per row id.
#[derive(Default)]
struct Bitset(Vec<u64>);

impl Bitset {
    /// Sets the bit; returns whether it was set before.
    fn set(&mut self, id: i64) -> bool {
        let Ok(i) = usize::try_from(id) else {
            return false;
        };
        let (w, b) = (i / 64, i % 64);
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        let was = self.0[w] & (1 << b) != 0;
        self.0[w] |= 1 << b;
        was
    }

    fn get(&self, id: i64) -> bool {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.0.get(i / 64).map(|w| w & (1 << (i % 64)) != 0))
            .unwrap_or(false)
    }
}

/// A change the writer applies.
#[derive(Debug)]
pub(crate) enum Change {
    /// A row to insert, packed in the session's [`Packed`] (at this offset).
    Insert(usize),
    Update(Box<Update>),
    Remove(Box<Remove>),
}

#[derive(Debug)]
pub(crate) struct Update {
    id: i64,
    old: Box<[Val]>,
    new: Record,
    restore: bool,
}

#[derive(Debug)]
pub(crate) struct Remove {
    resource: Resource,
    id: i64,
    old: Box<[Val]>,
}

const ALL_RESOURCES: [Resource; 11] = [
    Resource::Sector,
    Resource::Zone,
    Resource::City,
    Resource::Exchange,
    Resource::Dslam,
    Resource::Port,
    Resource::Olt,
    Resource::PonPort,
    Resource::Compound,
    Resource::Ont,
    Resource::Vlan,
];

/// Rows to insert, packed into bytes: a first load's diff is the whole
/// inventory, so it is kept compact (repeated short texts once, in a table).
#[derive(Debug, Default)]
pub(crate) struct Packed {
    bytes: Vec<u8>,
    dict: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
}

const PACK_NULL: u8 = 0;
const PACK_INT: u8 = 1;
const PACK_DICT: u8 = 2;
const PACK_TEXT: u8 = 3;

impl Packed {
    fn put_var(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.bytes.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.bytes.push(n as u8);
    }

    fn var(&self, at: &mut usize) -> u64 {
        let mut n = 0u64;
        let mut shift = 0;
        while let Some(&b) = self.bytes.get(*at) {
            *at += 1;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        n
    }

    /// Appends a row; returns its offset.
    fn push(&mut self, rec: &Record) -> usize {
        let at = self.bytes.len();
        self.bytes.push(rec.resource as u8);
        self.put_var(rec.vals.len() as u64);
        for v in rec.vals.iter() {
            match v {
                Val::Null => self.bytes.push(PACK_NULL),
                Val::Int(n) => {
                    self.bytes.push(PACK_INT);
                    self.put_var(((*n << 1) ^ (*n >> 63)) as u64);
                }
                Val::Text(t) => {
                    let idx = match self.index.get(t) {
                        Some(&i) => Some(i),
                        None if t.len() <= 64 && self.dict.len() < 1 << 16 => {
                            let i = self.dict.len() as u32;
                            self.dict.push(Arc::clone(t));
                            self.index.insert(Arc::clone(t), i);
                            Some(i)
                        }
                        None => None,
                    };
                    match idx {
                        Some(i) => {
                            self.bytes.push(PACK_DICT);
                            self.put_var(u64::from(i));
                        }
                        None => {
                            self.bytes.push(PACK_TEXT);
                            self.put_var(t.len() as u64);
                            self.bytes.extend_from_slice(t.as_bytes());
                        }
                    }
                }
            }
        }
        at
    }

    /// The row at an offset.
    fn get(&self, mut at: usize) -> Record {
        let resource = ALL_RESOURCES[usize::from(self.bytes[at]) % ALL_RESOURCES.len()];
        at += 1;
        let n = self.var(&mut at) as usize;
        let mut vals = Vec::with_capacity(n);
        for _ in 0..n {
            let tag = self.bytes.get(at).copied().unwrap_or(PACK_NULL);
            at += 1;
            vals.push(match tag {
                PACK_INT => {
                    let z = self.var(&mut at);
                    Val::Int(((z >> 1) as i64) ^ -((z & 1) as i64))
                }
                PACK_DICT => {
                    let i = self.var(&mut at) as usize;
                    self.dict
                        .get(i)
                        .map_or(Val::Null, |t| Val::Text(Arc::clone(t)))
                }
                PACK_TEXT => {
                    let len = self.var(&mut at) as usize;
                    let b = self.bytes.get(at..at + len).unwrap_or_default();
                    at += len;
                    Val::Text(Arc::from(String::from_utf8_lossy(b)))
                }
                _ => Val::Null,
            });
        }
        Record {
            resource,
            vals: vals.into_boxed_slice(),
        }
    }
}

/// Everything the writer needs to apply a run.
#[derive(Debug)]
pub(crate) struct Plan {
    run_id: i64,
    system: SyncSystem,
    holder: String,
    snapshot: Option<String>,
    watermark: Option<String>,
    rejected: u64,
    changes: Vec<Change>,
    packed: Packed,
}

/// What applying a plan did.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    counts: SyncCounts,
    conflicts: Vec<Conflict>,
}

impl Applied {
    /// Adds a slice's changes (rejected rows are counted once, by the run).
    fn merge(&mut self, other: Applied) {
        self.counts.added += other.counts.added;
        self.counts.changed += other.counts.changed;
        self.counts.removed += other.counts.removed;
        self.counts.conflicts += other.counts.conflicts;
        self.conflicts.extend(other.conflicts);
    }
}

/// Sync work for the writer thread.
pub(crate) enum WriterOp {
    Begin {
        system: SyncSystem,
        kind: SyncKind,
        since: Option<String>,
        forced: bool,
        holder: String,
        lease: Duration,
    },
    Renew {
        system: SyncSystem,
        holder: String,
        lease: Duration,
    },
    Apply(Box<Plan>),
    /// Journal rows `first_seq..` of an undecided run.
    Journal {
        system: SyncSystem,
        holder: String,
        lease: Duration,
        run_id: i64,
        first_seq: u64,
        bodies: Vec<Vec<u8>>,
    },
    /// Decides a journaled run (all its rows written, lease still held).
    Decide(Box<crate::store::JournalHead>, Duration),
    /// Applies the next slice of a decided run.
    Slice {
        run_id: i64,
        limit: usize,
    },
    /// The decided runs of a system not yet fully applied.
    Pending {
        system: SyncSystem,
    },
    End {
        system: SyncSystem,
        holder: String,
        run_id: i64,
        status: RunStatus,
        snapshot: Option<String>,
        counts: SyncCounts,
        error: String,
    },
}

/// The writer's answer to a [`WriterOp`].
pub(crate) enum WriterReply {
    Begun(i64),
    Held(String),
    Renewed(bool),
    Applied(Applied),
    Journaled,
    Sliced(Sliced),
    Pending(Vec<i64>),
    Ended,
}

/// Now, in Unix milliseconds (the unit of `sync_lock.expires`).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))
        .unwrap_or(0)
}

/// The lease's expiry, in Unix milliseconds like [`unix_now`].
fn lease_expiry(now: i64, lease: std::time::Duration) -> i64 {
    now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2))
}

fn rfc3339(t: SystemTime) -> String {
    let t: time::OffsetDateTime = t.into();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Runs one sync operation on the writer's connection, each in its own
/// transaction. Called by the writer thread only.
pub(crate) fn run_writer_op<W: WriteConn>(
    conn: &mut W,
    op: WriterOp,
) -> Result<WriterReply, StoreError> {
    let at = rfc3339(SystemTime::now());
    match op {
        WriterOp::Begin {
            system,
            kind,
            since,
            forced,
            holder,
            lease,
        } => in_tx(conn, |c| {
            let now = unix_now();
            if let Some(other) =
                c.sync_claim(system.as_str(), &holder, now, lease_expiry(now, lease), &at)?
            {
                return Ok(WriterReply::Held(other));
            }
            let id = c.sync_run_start(
                system.as_str(),
                kind.as_str(),
                since.as_deref(),
                forced,
                &holder,
                &at,
            )?;
            Ok(WriterReply::Begun(id))
        }),
        WriterOp::Renew {
            system,
            holder,
            lease,
        } => in_tx(conn, |c| {
            let exp = lease_expiry(unix_now(), lease);
            Ok(WriterReply::Renewed(c.sync_renew(
                system.as_str(),
                &holder,
                exp,
            )?))
        }),
        WriterOp::End {
            system,
            holder,
            run_id,
            status,
            snapshot,
            counts,
            error,
        } => in_tx(conn, |c| {
            c.sync_run_end(&RunEnd {
                run_id,
                status: status.as_str(),
                snapshot: snapshot.as_deref(),
                watermark: None,
                counts,
                error: Some(&error),
                ended: &at,
            })?;
            c.sync_release(system.as_str(), &holder)?;
            c.journal_drop_undecided()?;
            Ok(WriterReply::Ended)
        }),
        WriterOp::Journal {
            system,
            holder,
            lease,
            run_id,
            first_seq,
            bodies,
        } => in_tx(conn, |c| {
            if !c.sync_renew(system.as_str(), &holder, lease_expiry(unix_now(), lease))? {
                return Err(StoreError::Data(
                    "the run's lease was taken over by another run".into(),
                ));
            }
            c.journal_put(run_id, first_seq, &bodies)?;
            Ok(WriterReply::Journaled)
        }),
        WriterOp::Decide(head, lease) => in_tx(conn, |c| {
            if !c.sync_renew(&head.system, &head.holder, lease_expiry(unix_now(), lease))? {
                return Err(StoreError::Data(
                    "the run's lease was taken over by another run".into(),
                ));
            }
            let have = c.journal_len(head.run_id)?;
            if have != head.changes {
                return Err(StoreError::Data(format!(
                    "the run's journal holds {have} of its {} changes",
                    head.changes
                )));
            }
            c.journal_decide(&head)?;
            Ok(WriterReply::Journaled)
        }),
        WriterOp::Slice { run_id, limit } => in_tx(conn, |c| {
            journal::apply_slice(c, run_id, limit, &at).map(WriterReply::Sliced)
        }),
        WriterOp::Pending { system } => Ok(WriterReply::Pending(
            conn.journal_heads(Some(system.as_str()))?
                .into_iter()
                .map(|h| h.run_id)
                .collect(),
        )),
        WriterOp::Apply(plan) => {
            let applied = in_tx(conn, |c| {
                // A run whose lease was taken over (it stalled past its
                // expiry) must not apply: the run that took over owns the
                // inventory now.
                let held = c.sync_renew(
                    plan.system.as_str(),
                    &plan.holder,
                    lease_expiry(unix_now(), std::time::Duration::from_secs(600)),
                )?;
                if !held {
                    return Err(StoreError::Data(
                        "the run's lease was taken over by another run".into(),
                    ));
                }
                apply(c, &plan, &at).map(WriterReply::Applied)
            });
            match applied {
                Ok(r) => Ok(r),
                Err(e) => {
                    let msg = format!("apply failed: {e}");
                    tracing::error!(system = %plan.system, run = plan.run_id, error = %e, "sync apply failed; nothing of it was stored");
                    let rec = in_tx(conn, |c| {
                        c.sync_run_end(&RunEnd {
                            run_id: plan.run_id,
                            status: RunStatus::Failed.as_str(),
                            snapshot: plan.snapshot.as_deref(),
                            watermark: None,
                            counts: SyncCounts {
                                rejected: plan.rejected,
                                ..SyncCounts::default()
                            },
                            error: Some(&msg),
                            ended: &at,
                        })?;
                        c.sync_release(plan.system.as_str(), &plan.holder)?;
                        Ok(WriterReply::Ended)
                    });
                    if let Err(e2) = rec {
                        tracing::error!(error = %e2, "could not record the failed sync run");
                    }
                    Err(e)
                }
            }
        }
    }
}

/// Finishes every decided run that a crash interrupted and drops the
/// journal rows of runs that were never decided. Called by the writer
/// thread before it serves anything.
pub(crate) fn recover<W: WriteConn>(conn: &mut W) {
    let heads = match conn.journal_heads(None) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the sync apply journal");
            return;
        }
    };
    for head in heads {
        let t = Instant::now();
        loop {
            let at = rfc3339(SystemTime::now());
            match in_tx(conn, |c| {
                journal::apply_slice(c, head.run_id, journal::RECOVERY_SLICE, &at)
            }) {
                Ok(s) if s.done => {
                    tracing::info!(system = %head.system, run = head.run_id, took_ms = t.elapsed().as_millis() as u64, "finished a sync run that was interrupted after it was decided");
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(system = %head.system, run = head.run_id, error = %e, "cannot finish an interrupted sync run; the next run of the system retries");
                    break;
                }
            }
        }
    }
    if let Err(e) = in_tx(conn, |c| c.journal_drop_undecided()) {
        tracing::error!(error = %e, "cannot drop the journal of undecided sync runs");
    }
}

fn in_tx<W: WriteConn, T>(
    conn: &mut W,
    f: impl FnOnce(&mut W) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.begin()?;
    match f(conn) {
        Ok(v) => {
            conn.commit().inspect_err(|_| conn.rollback())?;
            Ok(v)
        }
        Err(e) => {
            conn.rollback();
            Err(e)
        }
    }
}

pub(crate) fn json_of(resource: Resource, vals: &[Val], idx: &[usize]) -> String {
    let names = resource.fields();
    // Keys in sorted order, as a `serde_json::Map` writes them.
    let mut fields: Vec<(&str, &Val)> = idx
        .iter()
        .filter_map(|&i| Some((*names.get(i)?, vals.get(i)?)))
        .collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    fields.dedup_by(|a, b| a.0 == b.0);
    let mut out = String::with_capacity(16 + 24 * fields.len());
    out.push('{');
    for (n, (name, v)) in fields.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        json_str(&mut out, name);
        out.push(':');
        match v {
            Val::Null => out.push_str("null"),
            Val::Int(x) => {
                use std::fmt::Write;
                let _ = write!(out, "{x}");
            }
            Val::Text(t) => json_str(&mut out, t),
        }
    }
    out.push('}');
    out
}

fn json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

fn state_of(resource: Resource, vals: &[Val]) -> Option<&str> {
    let i = resource.fields().iter().position(|f| *f == "state")?;
    vals.get(i).and_then(Val::as_text)
}

/// Applies a whole plan inside the writer's open transaction and ends the
/// run.
fn apply<W: WriteConn>(conn: &mut W, plan: &Plan, at: &str) -> Result<Applied, StoreError> {
    let mut out = Applied::default();
    out.counts.rejected = plan.rejected;
    apply_changes(
        conn,
        plan.run_id,
        plan.system,
        &plan.changes,
        &plan.packed,
        at,
        &mut out,
    )?;
    conn.sync_run_end(&RunEnd {
        run_id: plan.run_id,
        status: RunStatus::Succeeded.as_str(),
        snapshot: plan.snapshot.as_deref(),
        watermark: plan.watermark.as_deref(),
        counts: out.counts,
        error: None,
        ended: at,
    })?;
    conn.sync_release(plan.system.as_str(), &plan.holder)?;
    Ok(out)
}

/// Applies changes of run `run_id` inside the writer's open transaction,
/// adding what they did to `out`.
fn apply_changes<W: WriteConn>(
    conn: &mut W,
    run_id: i64,
    system: SyncSystem,
    changes: &[Change],
    packed: &Packed,
    at: &str,
    out: &mut Applied,
) -> Result<(), StoreError> {
    let actor = format!("sync:{system}:{run_id}");
    let mut ids = IdCache::default();
    let flag = |conn: &mut W,
                out: &mut Applied,
                resource: Resource,
                id: i64,
                code: &str,
                what: &str|
     -> Result<(), StoreError> {
        let Some(Holder {
            service_id,
            user_name,
            service_type,
            active,
        }) = conn.sync_holder(resource, id)?
        else {
            return Ok(());
        };
        if !active {
            return Ok(());
        }
        let reason = format!("{resource} {code} {what} by {system} (run {run_id})");
        conn.sync_flag_conflict(service_id, &reason, at)?;
        out.counts.conflicts += 1;
        out.conflicts.push(Conflict {
            service_id,
            user_name,
            service_type,
            resource,
            code: code.to_string(),
            reason,
        });
        Ok(())
    };
    for change in changes {
        match change {
            Change::Insert(off) => {
                let rec = &packed.get(*off);
                conn.sync_insert(rec, &mut ids, at)?;
                let all: Vec<usize> = (0..rec.vals.len()).collect();
                conn.log_resource(&ResourceLogWrite {
                    at,
                    actor: &actor,
                    ip: "",
                    resource_type: rec.resource.as_str(),
                    code: &rec.code(),
                    name: &rec.name(),
                    operation: "ADD",
                    old_values: None,
                    new_values: Some(&json_of(rec.resource, &rec.vals, &all)),
                })?;
                out.counts.added += 1;
            }
            Change::Update(u) => {
                let Update {
                    id,
                    old,
                    new,
                    restore,
                } = &**u;
                let k = new.resource.key_len();
                let changed: Vec<usize> = (k..new.vals.len())
                    .filter(|&i| old.get(i) != new.vals.get(i))
                    .collect();
                conn.sync_update(*id, new, &changed, *restore, &mut ids, at)?;
                let (mut o, mut n) = (
                    serde_json::from_str::<serde_json::Value>(&json_of(
                        new.resource,
                        old,
                        &changed,
                    ))
                    .unwrap_or_default(),
                    serde_json::from_str::<serde_json::Value>(&json_of(
                        new.resource,
                        &new.vals,
                        &changed,
                    ))
                    .unwrap_or_default(),
                );
                if *restore {
                    if let Some(m) = o.as_object_mut() {
                        m.insert("removed".into(), 1.into());
                    }
                    if let Some(m) = n.as_object_mut() {
                        m.insert("removed".into(), 0.into());
                    }
                }
                let code = new.code();
                conn.log_resource(&ResourceLogWrite {
                    at,
                    actor: &actor,
                    ip: "",
                    resource_type: new.resource.as_str(),
                    code: &code,
                    name: &new.name(),
                    operation: "MODIFY",
                    old_values: Some(&o.to_string()),
                    new_values: Some(&n.to_string()),
                })?;
                out.counts.changed += 1;
                if new.resource.is_held()
                    && state_of(new.resource, &new.vals) == Some("FAULTY")
                    && (state_of(new.resource, old) != Some("FAULTY") || *restore)
                {
                    flag(conn, out, new.resource, *id, &code, "reported FAULTY")?;
                }
            }
            Change::Remove(r) => {
                let Remove { resource, id, old } = &**r;
                conn.sync_remove(*resource, *id, at)?;
                let rec = Record {
                    resource: *resource,
                    vals: old.clone(),
                };
                let code = rec.code();
                conn.log_resource(&ResourceLogWrite {
                    at,
                    actor: &actor,
                    ip: "",
                    resource_type: resource.as_str(),
                    code: &code,
                    name: &rec.name(),
                    operation: "REMOVE",
                    old_values: Some(r#"{"removed":0}"#),
                    new_values: Some(r#"{"removed":1}"#),
                })?;
                out.counts.removed += 1;
                if resource.is_held() {
                    flag(conn, out, *resource, *id, &code, "removed")?;
                }
            }
        }
    }
    Ok(())
}

/// Shares repeated short texts (states, parent keys) within a run.
#[derive(Default)]
struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn get(&mut self, s: &str) -> Val {
        if let Some(a) = self.0.get(s) {
            return Val::Text(Arc::clone(a));
        }
        let a: Arc<str> = Arc::from(s);
        if self.0.len() < 100_000 {
            self.0.insert(Arc::clone(&a));
        }
        Val::Text(a)
    }
}

fn norm(resource: Resource, key: &[Val]) -> (Resource, String) {
    let mut s = String::with_capacity(24);
    norm_into(&mut s, key);
    (resource, s)
}

fn norm_into(s: &mut String, key: &[Val]) {
    for v in key {
        match v {
            Val::Null => {}
            Val::Int(n) => {
                use std::fmt::Write;
                let _ = write!(s, "{n}");
            }
            Val::Text(t) if t.is_ascii() => s.extend(t.chars().map(|c| c.to_ascii_lowercase())),
            Val::Text(t) => s.push_str(&t.to_lowercase()),
        }
        s.push('\u{1f}');
    }
}

fn key_hash(resource: Resource, key: &[Val]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    norm(resource, key).hash(&mut h);
    h.finish()
}

/// A sync run in progress: takes the source's pages one at a time, diffs
/// them against the stored inventory on its own read connection, and at
/// [`SyncSession::finish`] has the writer apply the whole diff in one
/// transaction.
///
/// Its methods block (database reads, the writer's answer): call them from
/// a blocking thread (e.g. `tokio::task::spawn_blocking`), not on an async
/// runtime's thread. Dropping an unfinished session records the run
/// `FAILED` and releases the lease.
pub struct SyncSession {
    im: Im,
    reader: Box<dyn SyncRead>,
    run_id: i64,
    opts: SyncOptions,
    holder: String,
    snapshot: Option<String>,
    watermark: Option<String>,
    changes: Vec<Change>,
    packed: Packed,
    seen: HashMap<Resource, Bitset>,
    added_keys: HashSet<u64>,
    parents: HashSet<(Resource, String)>,
    scratch: String,
    interner: Interner,
    elements: u64,
    rejected: u64,
    rejects: Vec<RejectedRow>,
    live_before: u64,
    /// Whether the system had no live row when the run began (its first
    /// load may hold intake for its whole apply).
    empty_before: bool,
    started: Instant,
    renewed: Instant,
    finished: bool,
}

impl std::fmt::Debug for SyncSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncSession")
            .field("run_id", &self.run_id)
            .field("system", &self.opts.system)
            .field("kind", &self.opts.kind)
            .field("changes", &self.changes.len())
            .finish()
    }
}

impl Im {
    /// Starts a sync run of `opts.system`: claims the system's lease (else
    /// [`SyncError::Busy`]), records the run `RUNNING` and opens a read
    /// connection for the diff. Blocking (see [`SyncSession`]).
    pub fn begin_sync(&self, opts: SyncOptions) -> Result<SyncSession, SyncError> {
        let mut token = [0u8; 8];
        let _ = getrandom::fill(&mut token);
        let holder = format!(
            "pid {} token {:016x}",
            std::process::id(),
            u64::from_le_bytes(token)
        );
        self.finish_decided_runs(opts.system, opts.config.apply_slice)?;
        let mut reader = self.sync_reader()?;
        let d = opts.system.domain();
        let empty_before = match opts.system.resources().first() {
            Some(&r) => reader.sync_live_count(r, r.has_domain().then_some(d))? == 0,
            None => true,
        };
        let mut live_before = 0;
        if opts.kind == SyncKind::Full {
            for &r in opts.system.resources() {
                live_before += reader.sync_live_count(r, r.has_domain().then_some(d))?;
            }
        }
        let reply = self.sync_op(WriterOp::Begin {
            system: opts.system,
            kind: opts.kind,
            since: opts.since.clone(),
            forced: opts.force,
            holder: holder.clone(),
            lease: opts.config.lease,
        })?;
        let run_id = match reply {
            WriterReply::Begun(id) => id,
            WriterReply::Held(other) => {
                return Err(SyncError::Busy {
                    system: opts.system,
                    holder: other,
                });
            }
            _ => return Err(CoreError::Invalid("unexpected writer reply".into()).into()),
        };
        tracing::info!(system = %opts.system, kind = opts.kind.as_str(), run = run_id, "sync run started");
        Ok(SyncSession {
            im: self.clone(),
            reader,
            run_id,
            opts,
            holder,
            snapshot: None,
            watermark: None,
            changes: Vec::new(),
            packed: Packed::default(),
            seen: HashMap::new(),
            added_keys: HashSet::new(),
            parents: HashSet::new(),
            scratch: String::new(),
            interner: Interner::default(),
            elements: 0,
            rejected: 0,
            rejects: Vec::new(),
            live_before,
            empty_before,
            started: Instant::now(),
            renewed: Instant::now(),
            finished: false,
        })
    }

    /// Finishes the decided runs of `system` that a crash or a storage
    /// failure interrupted (slice by slice, OM calls served in between).
    fn finish_decided_runs(&self, system: SyncSystem, slice: usize) -> Result<(), SyncError> {
        let WriterReply::Pending(runs) = self.sync_op(WriterOp::Pending { system })? else {
            return Err(CoreError::Invalid("unexpected writer reply".into()).into());
        };
        for run_id in runs {
            tracing::info!(system = %system, run = run_id, "finishing an interrupted sync run");
            loop {
                match self.sync_op(WriterOp::Slice {
                    run_id,
                    limit: slice.max(1),
                })? {
                    WriterReply::Sliced(s) if s.done => break,
                    WriterReply::Sliced(_) => {}
                    _ => return Err(CoreError::Invalid("unexpected writer reply".into()).into()),
                }
            }
        }
        Ok(())
    }

    /// The watermark of the last `SUCCEEDED` run of `system` (what the next
    /// incremental run passes as `since`), if any.
    pub fn last_sync_watermark(&self, system: SyncSystem) -> Result<Option<String>, CoreError> {
        Ok(self.sync_reader()?.last_sync_watermark(system.as_str())?)
    }

    /// The run log, newest first: up to `limit` runs (of one system, or all).
    pub fn sync_runs(
        &self,
        system: Option<SyncSystem>,
        limit: usize,
    ) -> Result<Vec<SyncRunRec>, CoreError> {
        Ok(self
            .sync_reader()?
            .sync_runs(system.map(SyncSystem::as_str), limit)?)
    }
}

impl SyncSession {
    /// The run's id in the run log.
    pub fn run_id(&self) -> i64 {
        self.run_id
    }

    /// The options the run was started with.
    pub fn options(&self) -> &SyncOptions {
        &self.opts
    }

    /// Records the source snapshot and watermark the run reads (once the
    /// first page named them); the watermark is kept when the run succeeds.
    pub fn set_source_version(&mut self, snapshot: &str, watermark: &str) {
        self.snapshot = Some(snapshot.to_string());
        self.watermark = Some(watermark.to_string());
    }

    /// Changes found so far (the diff's size).
    pub fn pending_changes(&self) -> usize {
        self.changes.len()
    }

    /// Diffs one page: its rows (parents before children, as in
    /// [`Inventory`]), its tombstones and the rows the wire layer rejected.
    /// Renews the lease when due.
    pub fn page(
        &mut self,
        rows: &Inventory,
        tombstones: &[SourceKey],
        rejects: &[RejectedRow],
    ) -> Result<(), SyncError> {
        if self.finished {
            return Err(SyncError::Finished);
        }
        self.renew_if_due()?;
        for r in rejects {
            self.elements += 1;
            self.protect_rejected(r)?;
            self.reject(r.clone());
        }
        let domain = |d: Domain| Val::Text(Arc::from(d.as_str()));
        for s in &rows.sectors {
            let v = [domain(s.domain), text(&s.code), text(&s.name)];
            self.row(Resource::Sector, Box::new(v))?;
        }
        for z in &rows.zones {
            let Zone {
                domain: d,
                code,
                name,
                sector,
            } = z;
            let v = [
                domain(*d),
                text(code),
                text(name),
                self.interner.get(sector),
            ];
            self.row(Resource::Zone, Box::new(v))?;
        }
        for c in &rows.cities {
            let City {
                domain: d,
                code,
                name,
                zone,
            } = c;
            let v = [domain(*d), text(code), text(name), self.interner.get(zone)];
            self.row(Resource::City, Box::new(v))?;
        }
        for e in &rows.exchanges {
            let Exchange {
                code,
                name,
                city,
                popid,
                area_code,
            } = e;
            let v = [
                text(code),
                text(name),
                self.interner.get(city),
                text(popid),
                text(area_code),
            ];
            self.row(Resource::Exchange, Box::new(v))?;
        }
        for d in &rows.dslams {
            let Dslam {
                name,
                exchange,
                ip,
                model,
                technology,
            } = d;
            let v = [
                text(name),
                self.interner.get(exchange),
                text(ip),
                self.interner.get(model),
                self.interner.get(technology.as_str()),
            ];
            self.row(Resource::Dslam, Box::new(v))?;
        }
        for p in &rows.ports {
            let Port {
                dslam,
                frame,
                slot,
                port,
                state,
            } = p;
            let v = [
                self.interner.get(dslam),
                int(*frame),
                int(*slot),
                int(*port),
                self.interner.get(state.as_str()),
            ];
            self.row(Resource::Port, Box::new(v))?;
        }
        for o in &rows.olts {
            let Olt {
                name,
                exchange,
                ip,
                model,
            } = o;
            let v = [
                text(name),
                self.interner.get(exchange),
                text(ip),
                self.interner.get(model),
            ];
            self.row(Resource::Olt, Box::new(v))?;
        }
        for p in &rows.pon_ports {
            let PonPort {
                at,
                max_onts,
                state,
            } = p;
            let v = [
                self.interner.get(&at.olt),
                int(at.frame),
                int(at.slot),
                int(at.port),
                int(*max_onts),
                self.interner.get(state.as_str()),
            ];
            self.row(Resource::PonPort, Box::new(v))?;
        }
        for c in &rows.compounds {
            let Compound {
                code,
                name,
                exchange,
                zone,
                pon_ports,
            } = c;
            let mut pons: Vec<String> = pon_ports.iter().map(|p| p.to_string()).collect();
            pons.sort();
            pons.dedup();
            let v = [
                text(code),
                text(name),
                self.interner.get(exchange),
                self.interner.get(zone),
                text(&pons.join(" ")),
            ];
            self.row(Resource::Compound, Box::new(v))?;
        }
        for o in &rows.onts {
            let Ont {
                serial,
                at,
                ont_id,
                model,
                state,
            } = o;
            let v = [
                text(serial),
                self.interner.get(&at.to_string()),
                int(*ont_id),
                self.interner.get(model),
                self.interner.get(state.as_str()),
                self.interner.get("SOURCE"),
            ];
            self.row(Resource::Ont, Box::new(v))?;
        }
        for vl in &rows.vlans {
            let Vlan {
                olt,
                id,
                purpose,
                state,
            } = vl;
            let v = [
                self.interner.get(olt),
                int(u32::from(*id)),
                self.interner.get(purpose.as_str()),
                self.interner.get(state.as_str()),
            ];
            self.row(Resource::Vlan, Box::new(v))?;
        }
        for t in tombstones {
            self.elements += 1;
            let (resource, key) = t.record_key();
            self.tombstone(resource, &key)?;
        }
        Ok(())
    }

    /// A rejected row whose key could be read is not a removal: its stored
    /// row (if any) counts as seen, so a full run leaves it as it is.
    fn protect_rejected(&mut self, r: &RejectedRow) -> Result<(), SyncError> {
        let Some(key) = r.key.as_deref() else {
            return Ok(());
        };
        let Some(resource) = [
            Resource::Sector,
            Resource::Zone,
            Resource::City,
            Resource::Exchange,
            Resource::Dslam,
            Resource::Port,
            Resource::Olt,
            Resource::PonPort,
            Resource::Compound,
            Resource::Ont,
            Resource::Vlan,
        ]
        .into_iter()
        .find(|x| x.as_str().eq_ignore_ascii_case(&r.element)) else {
            return Ok(());
        };
        let vals: Option<Vec<Val>> = if resource.has_domain() {
            key.split_once(':').map(|(d, c)| vec![text(d), text(c)])
        } else if resource.key_len() == 1 {
            Some(vec![text(key)])
        } else {
            let mut parts: Vec<&str> = key.rsplitn(resource.key_len(), '/').collect();
            parts.reverse();
            let nums: Option<Vec<Val>> = parts
                .iter()
                .skip(1)
                .map(|p| p.parse::<i64>().ok().map(Val::Int))
                .collect();
            match (parts.first(), nums) {
                (Some(first), Some(n)) if parts.len() == resource.key_len() => {
                    Some(std::iter::once(text(first)).chain(n).collect())
                }
                _ => None,
            }
        };
        if let Some(vals) = vals
            && let Some(row) = self.reader.sync_lookup(resource, &vals)?
        {
            self.seen.entry(resource).or_default().set(row.id);
        }
        Ok(())
    }

    fn reject(&mut self, r: RejectedRow) {
        self.rejected += 1;
        if self.rejects.len() < self.opts.config.max_reported_rejects {
            self.rejects.push(r);
        }
    }

    fn reject_rec(&mut self, resource: Resource, vals: &[Val], reason: String) {
        let key = key_text(resource, &vals[..resource.key_len().min(vals.len())]);
        self.reject(RejectedRow {
            element: resource.as_str().to_string(),
            key: Some(key),
            reason,
        });
    }

    fn served(&self, resource: Resource, vals: &[Val]) -> bool {
        let system = self.opts.system;
        system.resources().contains(&resource)
            && (!resource.has_domain()
                || vals.first().and_then(Val::as_text) == Some(system.domain().as_str()))
    }

    fn parent_known(&mut self, resource: Resource, key: &[Val]) -> Result<bool, SyncError> {
        let mut k = (resource, std::mem::take(&mut self.scratch));
        k.1.clear();
        norm_into(&mut k.1, key);
        if self.parents.contains(&k) {
            self.scratch = k.1;
            return Ok(true);
        }
        let live = self
            .reader
            .sync_lookup(resource, key)?
            .is_some_and(|r| !r.removed);
        if live {
            self.parents.insert(k);
        }
        Ok(live)
    }

    fn row(&mut self, resource: Resource, vals: Box<[Val]>) -> Result<(), SyncError> {
        self.elements += 1;
        if !self.served(resource, &vals) {
            let reason = format!("not a row of {}", self.opts.system);
            self.reject_rec(resource, &vals, reason);
            return Ok(());
        }
        let rec = Record { resource, vals };
        for (_, parent, key) in rec.refs() {
            if !self.parent_known(parent, &key)? {
                let reason = format!("unknown {parent} {}", key_text(parent, &key));
                self.reject_rec(resource, &rec.vals, reason);
                return Ok(());
            }
        }
        let k = resource.key_len();
        let stored = self.reader.sync_lookup(resource, rec.key())?;
        match stored {
            None => {
                if !self.added_keys.insert(key_hash(resource, rec.key())) {
                    self.reject_rec(resource, &rec.vals, "listed twice".into());
                    return Ok(());
                }
                if resource == Resource::Ont && !self.ont_place_free(&rec, None)? {
                    return Ok(());
                }
                if resource.is_parent() {
                    self.parents.insert(norm(resource, rec.key()));
                }
                let off = self.packed.push(&rec);
                self.changes.push(Change::Insert(off));
            }
            Some(StoredRow { id, removed, vals }) => {
                if self.seen.entry(resource).or_default().set(id) {
                    self.reject_rec(resource, &rec.vals, "listed twice".into());
                    return Ok(());
                }
                let same = vals.get(k..) == rec.vals.get(k..);
                if same && !removed {
                    return Ok(());
                }
                if resource == Resource::Ont {
                    let moved = removed || vals.get(1..3) != rec.vals.get(1..3);
                    if moved && !self.ont_place_free(&rec, Some(id))? {
                        return Ok(());
                    }
                }
                if resource.is_parent() {
                    self.parents.insert(norm(resource, rec.key()));
                }
                self.changes.push(Change::Update(Box::new(Update {
                    id,
                    old: vals.into_boxed_slice(),
                    new: rec,
                    restore: removed,
                })));
            }
        }
        Ok(())
    }

    /// Whether an ONT's place (PON port, ONT id) is free for it; rejects
    /// the row otherwise.
    fn ont_place_free(&mut self, rec: &Record, own: Option<i64>) -> Result<bool, SyncError> {
        let pon = rec.vals.get(1).and_then(Val::as_text).unwrap_or_default();
        let ont_id = match rec.vals.get(2) {
            Some(Val::Int(n)) => *n,
            _ => -1,
        };
        let key = pon_key(pon);
        match self.reader.sync_ont_at(&key, ont_id)? {
            Some((id, serial)) if Some(id) != own => {
                self.reject_rec(
                    Resource::Ont,
                    &rec.vals,
                    format!("ONT id {ont_id} of {pon} is taken by {serial}"),
                );
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    fn tombstone(&mut self, resource: Resource, key: &[Val]) -> Result<(), SyncError> {
        if !self.served(resource, key) {
            let reason = format!("not a row of {}", self.opts.system);
            self.reject_rec(resource, key, reason);
            return Ok(());
        }
        let Some(StoredRow { id, removed, vals }) = self.reader.sync_lookup(resource, key)? else {
            return Ok(());
        };
        if self.seen.entry(resource).or_default().set(id) || removed {
            return Ok(());
        }
        self.remove(resource, id, vals)
    }

    fn remove(&mut self, resource: Resource, id: i64, vals: Vec<Val>) -> Result<(), SyncError> {
        if resource == Resource::Ont && vals.get(5).and_then(Val::as_text) == Some("OM") {
            let cutoff = SystemTime::now()
                .checked_sub(self.opts.config.ont_grace)
                .unwrap_or(UNIX_EPOCH);
            let created = self.reader.sync_ont_created(id)?.unwrap_or_default();
            if created.as_str() > rfc3339(cutoff).as_str() {
                return Ok(());
            }
        }
        self.changes.push(Change::Remove(Box::new(Remove {
            resource,
            id,
            old: vals.into_boxed_slice(),
        })));
        Ok(())
    }

    fn renew_if_due(&mut self) -> Result<(), SyncError> {
        if self.renewed.elapsed() < self.opts.config.lease / 3 {
            return Ok(());
        }
        let r = self.im.sync_op(WriterOp::Renew {
            system: self.opts.system,
            holder: self.holder.clone(),
            lease: self.opts.config.lease,
        })?;
        match r {
            WriterReply::Renewed(true) => {
                self.renewed = Instant::now();
                Ok(())
            }
            _ => Err(SyncError::LeaseLost(self.opts.system)),
        }
    }

    fn report(&self, status: RunStatus, counts: SyncCounts, error: Option<String>) -> SyncReport {
        SyncReport {
            run_id: self.run_id,
            system: self.opts.system,
            kind: self.opts.kind,
            status,
            snapshot: self.snapshot.clone(),
            watermark: self.watermark.clone(),
            counts,
            elements: self.elements,
            rejects: self.rejects.clone(),
            conflicts: Vec::new(),
            error,
            duration: self.started.elapsed(),
            apply_time: Duration::ZERO,
        }
    }

    /// What the diff would change so far (before the removal pass).
    fn planned(&self) -> SyncCounts {
        let mut c = SyncCounts {
            rejected: self.rejected,
            ..SyncCounts::default()
        };
        for ch in &self.changes {
            match ch {
                Change::Insert(_) => c.added += 1,
                Change::Update(_) => c.changed += 1,
                Change::Remove(_) => c.removed += 1,
            }
        }
        c
    }

    fn end(&mut self, status: RunStatus, counts: SyncCounts, error: &str) -> SyncReport {
        self.finished = true;
        let r = self.im.sync_op(WriterOp::End {
            system: self.opts.system,
            holder: self.holder.clone(),
            run_id: self.run_id,
            status,
            snapshot: self.snapshot.clone(),
            counts,
            error: error.to_string(),
        });
        if let Err(e) = r {
            tracing::error!(run = self.run_id, error = %e, "could not record the end of a sync run");
        }
        tracing::warn!(system = %self.opts.system, run = self.run_id, status = status.as_str(), error, "sync run not applied");
        let mut rep = self.report(status, counts, Some(error.to_string()));
        rep.watermark = None;
        rep
    }

    /// Ends the run as `FAILED` (the source failed): nothing is applied.
    pub fn fail(mut self, error: &str) -> SyncReport {
        let counts = self.planned();
        self.end(RunStatus::Failed, counts, error)
    }

    /// Ends the run: the removal pass of a full run (stored live rows of the
    /// system that the snapshot did not list), the guards, and the apply of
    /// the diff by the writer. A diff of at most [`SyncConfig::apply_slice`]
    /// changes, or the first load of an empty inventory, is applied in one
    /// transaction; a larger one is journaled, decided, then applied in
    /// slices with OM calls served in between (see `sync/journal.rs`). The
    /// report says how it ended; nothing is applied unless its status is
    /// `SUCCEEDED` (or, after a storage failure between slices, the run is
    /// decided and is finished when the database is next opened).
    pub fn finish(mut self) -> SyncReport {
        if self.finished {
            return self.report(RunStatus::Failed, SyncCounts::default(), None);
        }
        if let Err(e) = self.removal_pass() {
            let counts = self.planned();
            return self.end(RunStatus::Failed, counts, &format!("removal pass: {e}"));
        }
        let counts = self.planned();
        let cfg = &self.opts.config;
        let bad_limit = cfg.max_bad_share * self.elements as f64;
        if !self.opts.force && self.rejected > 0 && self.rejected as f64 > bad_limit {
            let msg = format!(
                "{} of {} rows rejected ({:.2}%), over the {:.2}% limit (force to override)",
                self.rejected,
                self.elements,
                100.0 * self.rejected as f64 / self.elements.max(1) as f64,
                100.0 * cfg.max_bad_share
            );
            return self.end(RunStatus::Aborted, counts, &msg);
        }
        let removal_limit = cfg.max_removal_share * self.live_before as f64;
        if !self.opts.force
            && self.opts.kind == SyncKind::Full
            && counts.removed > 0
            && counts.removed as f64 > removal_limit
        {
            let msg = format!(
                "the snapshot would remove {} of {} rows ({:.2}%), over the {:.2}% limit (force to override)",
                counts.removed,
                self.live_before,
                100.0 * counts.removed as f64 / self.live_before.max(1) as f64,
                100.0 * cfg.max_removal_share
            );
            return self.end(RunStatus::Aborted, counts, &msg);
        }
        let slice = self.opts.config.apply_slice.max(1);
        if !self.empty_before && self.changes.len() > slice {
            return self.finish_in_slices(counts, slice);
        }
        self.finished = true;
        let plan = Plan {
            run_id: self.run_id,
            system: self.opts.system,
            holder: self.holder.clone(),
            snapshot: self.snapshot.clone(),
            watermark: self.watermark.clone(),
            rejected: self.rejected,
            changes: std::mem::take(&mut self.changes),
            packed: std::mem::take(&mut self.packed),
        };
        let t = Instant::now();
        let r = self.im.sync_op(WriterOp::Apply(Box::new(plan)));
        let apply_time = t.elapsed();
        let mut rep = match r {
            Ok(WriterReply::Applied(a)) => {
                let mut rep = self.report(RunStatus::Succeeded, a.counts, None);
                rep.conflicts = a.conflicts;
                tracing::info!(system = %self.opts.system, run = self.run_id, added = a.counts.added, changed = a.counts.changed, removed = a.counts.removed, rejected = a.counts.rejected, conflicts = a.counts.conflicts, "sync run applied");
                rep
            }
            Ok(_) => self.report(
                RunStatus::Failed,
                counts,
                Some("unexpected writer reply".into()),
            ),
            Err(e) => {
                let mut rep = self.report(RunStatus::Failed, counts, Some(e.to_string()));
                rep.watermark = None;
                rep
            }
        };
        rep.apply_time = apply_time;
        rep
    }

    /// Journals the diff, decides the run, and applies it slice by slice.
    fn finish_in_slices(mut self, planned: SyncCounts, slice: usize) -> SyncReport {
        let t = Instant::now();
        let changes = std::mem::take(&mut self.changes);
        let packed = std::mem::take(&mut self.packed);
        let total = changes.len() as u64;
        let chunk = slice.saturating_mul(8).max(1);
        for (n, part) in changes.chunks(chunk).enumerate() {
            let bodies: Vec<Vec<u8>> = part.iter().map(|c| journal::encode(c, &packed)).collect();
            let r = self.im.sync_op(WriterOp::Journal {
                system: self.opts.system,
                holder: self.holder.clone(),
                lease: self.opts.config.lease,
                run_id: self.run_id,
                first_seq: (n * chunk) as u64,
                bodies,
            });
            if let Err(e) = r {
                return self.end(RunStatus::Failed, planned, &format!("apply failed: {e}"));
            }
        }
        drop(changes);
        drop(packed);
        let head = crate::store::JournalHead {
            run_id: self.run_id,
            system: self.opts.system.as_str().to_string(),
            holder: self.holder.clone(),
            snapshot: self.snapshot.clone(),
            watermark: self.watermark.clone(),
            rejected: self.rejected,
            changes: total,
            decided: rfc3339(SystemTime::now()),
        };
        if let Err(e) = self
            .im
            .sync_op(WriterOp::Decide(Box::new(head), self.opts.config.lease))
        {
            return self.end(RunStatus::Failed, planned, &format!("apply failed: {e}"));
        }
        // Decided: from here the run is applied in full, by this session or,
        // after a failure, by whoever opens the database next.
        self.finished = true;
        let mut applied = Applied {
            counts: SyncCounts {
                rejected: self.rejected,
                ..SyncCounts::default()
            },
            ..Applied::default()
        };
        let mut failures = 0;
        loop {
            match self.im.sync_op(WriterOp::Slice {
                run_id: self.run_id,
                limit: slice,
            }) {
                Ok(WriterReply::Sliced(s)) => {
                    applied.merge(s.applied);
                    if s.done {
                        break;
                    }
                }
                Ok(_) => failures = 3,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(system = %self.opts.system, run = self.run_id, error = %e, "a slice of a decided sync run failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if failures >= 3 {
                let mut rep = self.report(
                    RunStatus::Failed,
                    applied.counts,
                    Some(
                        "apply interrupted by a storage failure: the run is decided and its \
                         remaining changes are applied when the database is next opened or \
                         the next run of this system begins"
                            .into(),
                    ),
                );
                rep.watermark = None;
                rep.apply_time = t.elapsed();
                return rep;
            }
        }
        tracing::info!(system = %self.opts.system, run = self.run_id, added = applied.counts.added, changed = applied.counts.changed, removed = applied.counts.removed, rejected = applied.counts.rejected, conflicts = applied.counts.conflicts, slices = total.div_ceil(slice as u64), "sync run applied");
        let mut rep = self.report(RunStatus::Succeeded, applied.counts, None);
        rep.conflicts = applied.conflicts;
        rep.apply_time = t.elapsed();
        rep
    }

    fn removal_pass(&mut self) -> Result<(), SyncError> {
        if self.opts.kind != SyncKind::Full {
            return Ok(());
        }
        let d = self.opts.system.domain();
        for &r in self.opts.system.resources() {
            let mut missing = Vec::new();
            let seen = self.seen.remove(&r).unwrap_or_default();
            self.reader
                .sync_live_ids(r, r.has_domain().then_some(d), &mut |id| {
                    if !seen.get(id) {
                        missing.push(id);
                    }
                })?;
            self.seen.insert(r, seen);
            for id in missing {
                if let Some(row) = self.reader.sync_by_id(r, id)? {
                    self.remove(r, id, row.vals)?;
                }
            }
        }
        Ok(())
    }
}

impl Drop for SyncSession {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            self.im.sync_op_nowait(WriterOp::End {
                system: self.opts.system,
                holder: self.holder.clone(),
                run_id: self.run_id,
                status: RunStatus::Failed,
                snapshot: self.snapshot.clone(),
                counts: SyncCounts::default(),
                error: "abandoned".into(),
            });
        }
    }
}

fn text(s: &str) -> Val {
    Val::Text(Arc::from(s))
}

fn int(n: u32) -> Val {
    Val::Int(i64::from(n))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bitset_and_keys() {
        let mut b = Bitset::default();
        assert!(!b.set(5));
        assert!(b.set(5));
        assert!(b.get(5) && !b.get(6) && !b.get(100_000));
        let rec = Record {
            resource: Resource::Port,
            vals: Box::new([text("EX01-D1"), int(0), int(2), int(17), text("AVAILABLE")]),
        };
        assert_eq!(rec.code(), "EX01-D1/0/2/17");
        assert_eq!(rec.name(), "EX01-D1/0/2/17");
        assert_eq!(rec.refs()[0].1, Resource::Dslam);
        let z = Record {
            resource: Resource::Zone,
            vals: Box::new([text("FTTH"), text("Z01"), text("Zone 1"), text("S1")]),
        };
        assert_eq!(
            (z.code(), z.name()),
            ("FTTH:Z01".to_string(), "Zone 1".to_string())
        );
        assert_eq!(
            json_of(Resource::Port, &rec.vals, &[4]),
            r#"{"state":"AVAILABLE"}"#
        );
        let mut p = Packed::default();
        let odd = Record {
            resource: Resource::Ont,
            vals: Box::new([
                text(&"S".repeat(100)),
                text("OLT01/0/1/3"),
                Val::Int(-7),
                Val::Null,
                text("é\"q\n"),
                Val::Int(i64::MAX),
            ]),
        };
        let (a, b) = (p.push(&rec), p.push(&odd));
        assert_eq!((p.get(a), p.get(b)), (rec.clone(), odd.clone()));
        let all: Vec<usize> = (0..odd.vals.len()).collect();
        let mut m = serde_json::Map::new();
        for (i, n) in Resource::Ont.fields().iter().enumerate() {
            let v = match &odd.vals[i] {
                Val::Null => serde_json::Value::Null,
                Val::Int(n) => (*n).into(),
                Val::Text(t) => t.as_ref().into(),
            };
            m.insert((*n).to_string(), v);
        }
        assert_eq!(
            json_of(Resource::Ont, &odd.vals, &all),
            serde_json::Value::Object(m).to_string()
        );
    }
}
