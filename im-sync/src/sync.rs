//! The sync driver: runs a full or incremental sync of one system from any
//! [`Source`] into the core, page by page as pages arrive, and a
//! [`Scheduler`] that runs them on full and incremental intervals per system.
//!
//! The rules (diff, soft removal, protected usage, guards, atomic apply,
//! one run per system) live in `im_core::sync`; this module only moves the
//! source's pages into an [`im_core::sync::SyncSession`]: it reads a page,
//! hands it to the session on a blocking thread (the diff reads the
//! database), reports progress, and ends the run. An expired snapshot
//! (HTTP 410) ends the run as failed and starts a new one, at most
//! [`SyncSettings::max_restarts`] times. See `docs/sync.md`.
//!
//! ```no_run
//! use im_sync::nbi::{NbiClient, NbiClientConfig, System};
//! use im_sync::sync::{SyncSettings, run_sync};
//! use im_core::sync::SyncKind;
//! # async fn go(im: im_core::Im) -> Result<(), Box<dyn std::error::Error>> {
//! let client = NbiClient::new(NbiClientConfig::new(System::Matrix, "http://127.0.0.1:8090"))?;
//! let report = run_sync(&im, &client, &SyncSettings::new(SyncKind::Full), &mut |p| {
//!     println!("{}: {}/{}", p.entity, p.entity_offset, p.entity_total);
//! })
//! .await?;
//! println!("{:?} +{} ~{} -{}", report.status, report.counts.added, report.counts.changed, report.counts.removed);
//! # Ok(()) }
//! ```

use crate::nbi::{Entity, NbiError, Page, Row, RowError, RowKey, Run, Source, System, Tombstone};
use im_core::Im;
use im_core::model::Inventory;
use im_core::sync::{
    RejectedRow, SourceKey, SyncConfig, SyncError, SyncKind, SyncOptions, SyncReport, SyncSession,
    SyncSystem,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How a run is made.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncSettings {
    /// Full or incremental.
    pub kind: SyncKind,
    /// Override the guards (bad-row and mass-removal shares).
    pub force: bool,
    /// Rows asked per page. Default 5,000.
    pub page_limit: u32,
    /// New runs started after an expired snapshot (HTTP 410). Default 3.
    pub max_restarts: u32,
    /// The core's thresholds (shares, ONT grace, lease).
    pub config: SyncConfig,
}

impl SyncSettings {
    /// Defaults for a run of `kind`.
    pub fn new(kind: SyncKind) -> SyncSettings {
        SyncSettings {
            kind,
            force: false,
            page_limit: 5000,
            max_restarts: 3,
            config: SyncConfig::default(),
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The system.
    pub system: System,
    /// The entity being read.
    pub entity: Entity,
    /// Row elements of this entity read so far.
    pub entity_offset: u64,
    /// Row elements of this entity in the listing.
    pub entity_total: u64,
    /// Row elements of the run read so far (all entities).
    pub rows: u64,
    /// Runs restarted after an expired snapshot so far.
    pub restarts: u32,
    /// `true` in the last call of a run, once every page is read: the
    /// run is about to be finished (removal pass, guards, the apply in one
    /// transaction).
    pub applying: bool,
}

/// Why a run could not be made at all (a run that started and failed is a
/// [`SyncReport`] with status `FAILED` or `ABORTED`).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The core refused: another run of the system holds the lease
    /// ([`SyncError::Busy`]), or storage failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// An incremental run needs the watermark of a succeeded run.
    #[error("no succeeded {0} run yet: run a full sync first")]
    NoWatermark(System),
    /// A blocking task of the driver failed.
    #[error("sync task: {0}")]
    Task(String),
}

/// The core's name for a wire system.
pub fn core_system(system: System) -> SyncSystem {
    match system {
        System::Matrix => SyncSystem::Matrix,
        System::Ematrix => SyncSystem::Ematrix,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RunError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RunError::Task(e.to_string()))
}

/// Runs one sync of `source`'s system into `im`, calling `progress` after
/// each page. Returns the run's report (status `SUCCEEDED`, `FAILED` or
/// `ABORTED`), or an error when no run could be made (lease held, no
/// watermark for an incremental run, storage).
pub async fn run_sync<S: Source>(
    im: &Im,
    source: &S,
    settings: &SyncSettings,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<SyncReport, RunError> {
    let system = source.system();
    let core = core_system(system);
    let since = match settings.kind {
        SyncKind::Full => None,
        SyncKind::Incremental => {
            let im2 = im.clone();
            let w = blocking(move || im2.last_sync_watermark(core))
                .await?
                .map_err(SyncError::from)?;
            Some(w.ok_or(RunError::NoWatermark(system))?)
        }
    };
    let mut restarts = 0u32;
    loop {
        let mut opts = SyncOptions::new(core, settings.kind);
        opts.force = settings.force;
        opts.since = since.clone();
        opts.config = settings.config.clone();
        let im2 = im.clone();
        let session = blocking(move || im2.begin_sync(opts)).await??;
        let mut run = match &since {
            None => Run::full(source, settings.page_limit),
            Some(w) => Run::incremental(source, settings.page_limit, w.clone()),
        };
        let (session, result, last) =
            read_run(session, &mut run, system, restarts, progress).await?;
        match result {
            Ok(()) => {
                if let Some(p) = last {
                    progress(&Progress {
                        applying: true,
                        ..p
                    });
                }
                return blocking(move || session.finish()).await;
            }
            Err(NbiError::SnapshotExpired { .. }) if restarts < settings.max_restarts => {
                restarts += 1;
                tracing::warn!(%system, restarts, "snapshot expired: starting the run again");
                blocking(move || session.fail("snapshot expired (HTTP 410); run restarted"))
                    .await?;
            }
            Err(e) => {
                let msg = e.to_string();
                return blocking(move || session.fail(&msg)).await;
            }
        }
    }
}

/// Reads every page of the run into the session; gives the session back
/// with the source's error, if any (a session error is returned as such),
/// and the last progress reported.
async fn read_run<S: Source>(
    mut session: SyncSession,
    run: &mut Run<'_, S>,
    system: System,
    restarts: u32,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<(SyncSession, Result<(), NbiError>, Option<Progress>), RunError> {
    let mut rows = 0u64;
    let mut last = None;
    let mut versioned = false;
    for &entity in system.entities() {
        loop {
            let page = match run.next_page(entity).await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => return Ok((session, Err(e), last)),
            };
            if !versioned && let (Some(s), Some(w)) = (run.snapshot(), run.watermark()) {
                session.set_source_version(s, w);
                versioned = true;
            }
            rows += page.elements;
            let p = Progress {
                system,
                entity,
                entity_offset: page.header.offset + page.elements,
                entity_total: page.header.total,
                rows,
                restarts,
                applying: false,
            };
            let (inv, tombs, rejects) = convert(page);
            let (s, r) = blocking(move || {
                let r = session.page(&inv, &tombs, &rejects);
                (session, r)
            })
            .await?;
            session = s;
            if let Err(e) = r {
                let msg = e.to_string();
                blocking(move || session.fail(&msg)).await?;
                return Err(e.into());
            }
            progress(&p);
            last = Some(p);
        }
    }
    if let (Some(s), Some(w)) = (run.snapshot(), run.watermark()) {
        session.set_source_version(s, w);
    }
    Ok((session, Ok(()), last))
}

/// A page's rows as the core takes them.
fn convert(page: Page) -> (Inventory, Vec<SourceKey>, Vec<RejectedRow>) {
    let mut inv = Inventory::default();
    for row in page.rows {
        match row {
            Row::Sector(r) => inv.sectors.push(r),
            Row::Zone(r) => inv.zones.push(r),
            Row::City(r) => inv.cities.push(r),
            Row::Exchange(r) => inv.exchanges.push(r),
            Row::Dslam(r) => inv.dslams.push(r),
            Row::Port(r) => inv.ports.push(r),
            Row::Olt(r) => inv.olts.push(r),
            Row::PonPort(r) => inv.pon_ports.push(r),
            Row::Compound(r) => inv.compounds.push(r),
            Row::Ont(r) => inv.onts.push(r),
            Row::Vlan(r) => inv.vlans.push(r),
        }
    }
    let tombs = page.tombstones.into_iter().map(source_key).collect();
    let rejects = page.rejects.into_iter().map(rejected).collect();
    (inv, tombs, rejects)
}

fn source_key(t: Tombstone) -> SourceKey {
    match t.key {
        RowKey::Sector { domain, code } => SourceKey::Sector(domain, code),
        RowKey::Zone { domain, code } => SourceKey::Zone(domain, code),
        RowKey::City { domain, code } => SourceKey::City(domain, code),
        RowKey::Exchange(c) => SourceKey::Exchange(c),
        RowKey::Dslam(c) => SourceKey::Dslam(c),
        RowKey::Port {
            dslam,
            frame,
            slot,
            port,
        } => SourceKey::Port(dslam, frame, slot, port),
        RowKey::Olt(c) => SourceKey::Olt(c),
        RowKey::PonPort(p) => SourceKey::PonPort(p),
        RowKey::Compound(c) => SourceKey::Compound(c),
        RowKey::Ont(c) => SourceKey::Ont(c),
        RowKey::Vlan { olt, id } => SourceKey::Vlan(olt, id),
    }
}

fn rejected(e: RowError) -> RejectedRow {
    RejectedRow {
        element: e.element,
        key: e.key,
        reason: format!("row {} (line {}): {}", e.position, e.line, e.reason),
    }
}

/// The schedule of one system.
pub struct SystemSchedule<S> {
    /// Where its pages come from.
    pub source: Arc<S>,
    /// Interval of full runs (`None`: only the first run, when there is
    /// no watermark yet, is full).
    pub full_every: Option<Duration>,
    /// Interval of incremental runs (`None`: none).
    pub incremental_every: Option<Duration>,
    /// How runs are made (its `kind` is chosen by the schedule).
    pub settings: SyncSettings,
}

impl<S> std::fmt::Debug for SystemSchedule<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemSchedule")
            .field("full_every", &self.full_every)
            .field("incremental_every", &self.incremental_every)
            .finish()
    }
}

/// Called with each scheduled run's report (or the reason none was made).
pub type ReportFn = Arc<dyn Fn(System, &Result<SyncReport, RunError>) + Send + Sync>;

/// Scheduled sync runs, one task per system; [`Scheduler::stop`] ends them.
#[derive(Debug)]
pub struct Scheduler {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts one task per schedule on the current tokio runtime. Each
    /// starts with a run at once (incremental when a watermark exists and
    /// incremental runs are scheduled, else full), then runs whichever
    /// kind is due next. Runs of one system never overlap (and the core's
    /// lease keeps other processes out).
    pub fn start<S: Source + 'static>(
        im: Im,
        schedules: Vec<SystemSchedule<S>>,
        on_report: Option<ReportFn>,
    ) -> Scheduler {
        let (stop, rx) = watch::channel(false);
        let tasks = schedules
            .into_iter()
            .map(|s| {
                let im = im.clone();
                let rx = rx.clone();
                let cb = on_report.clone();
                tokio::spawn(async move { schedule_loop(im, s, rx, cb).await })
            })
            .collect();
        Scheduler { stop, tasks }
    }

    /// Stops scheduling; a run in progress is abandoned (recorded `FAILED`,
    /// nothing applied) unless it is already applying. Waits for the tasks.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn schedule_loop<S: Source + 'static>(
    im: Im,
    s: SystemSchedule<S>,
    mut stop: watch::Receiver<bool>,
    on_report: Option<ReportFn>,
) {
    let system = s.source.system();
    let now = tokio::time::Instant::now;
    let mut next_full = s.full_every.map(|d| now() + d);
    let mut next_incr = s.incremental_every.map(|d| now() + d);
    let mut first = true;
    loop {
        let kind = if first {
            first = false;
            let im2 = im.clone();
            let has_watermark = blocking(move || im2.last_sync_watermark(core_system(system)))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
                .is_some();
            if has_watermark && s.incremental_every.is_some() {
                SyncKind::Incremental
            } else {
                SyncKind::Full
            }
        } else {
            let (at, kind) = match (next_full, next_incr) {
                (Some(f), Some(i)) if i < f => (i, SyncKind::Incremental),
                (Some(f), _) => (f, SyncKind::Full),
                (None, Some(i)) => (i, SyncKind::Incremental),
                (None, None) => {
                    let _ = stop.changed().await;
                    return;
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = stop.changed() => return,
            }
            kind
        };
        if *stop.borrow() {
            return;
        }
        let mut settings = s.settings.clone();
        settings.kind = kind;
        let mut last = tokio::time::Instant::now();
        let mut progress = |p: &Progress| {
            if last.elapsed() >= Duration::from_secs(10) {
                last = tokio::time::Instant::now();
                tracing::info!(system = %p.system, entity = %p.entity, offset = p.entity_offset, total = p.entity_total, "sync progress");
            }
        };
        let r = tokio::select! {
            r = run_sync(&im, s.source.as_ref(), &settings, &mut progress) => r,
            _ = stop.changed() => return,
        };
        let r = match r {
            Err(RunError::NoWatermark(_)) if kind == SyncKind::Incremental => {
                settings.kind = SyncKind::Full;
                run_sync(&im, s.source.as_ref(), &settings, &mut progress).await
            }
            r => r,
        };
        match &r {
            Ok(rep) => {
                tracing::info!(%system, kind = kind.as_str(), status = rep.status.as_str(), added = rep.counts.added, changed = rep.counts.changed, removed = rep.counts.removed, rejected = rep.counts.rejected, conflicts = rep.counts.conflicts, "scheduled sync run ended")
            }
            Err(e) => {
                tracing::warn!(%system, kind = kind.as_str(), error = %e, "scheduled sync run not made")
            }
        }
        if let Some(cb) = &on_report {
            cb(system, &r);
        }
        match kind {
            SyncKind::Full => {
                next_full = s.full_every.map(|d| now() + d);
                // A full run also brings the inventory up to date.
                next_incr = s.incremental_every.map(|d| now() + d);
            }
            SyncKind::Incremental => next_incr = s.incremental_every.map(|d| now() + d),
        }
    }
}
