//! More inventory reconciliation over real HTTP on loopback (the NBI
//! simulators as sources, real SQLite files as the inventory; see
//! `docs/sync.md`): the take-over of a lease left by a run that died, the
//! grace period of ONTs that OM registered, and the scheduler's loop.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use im_core::demo::{DEMO_OM_PASSWORD, DEMO_OM_USER, DemoSpec};
use im_core::retry::RetryPolicy;
use im_core::sync::{
    Resource, RunStatus, SyncConfig, SyncError, SyncKind, SyncOptions, SyncReport, SyncSystem,
};
use im_core::{CoreConfig, Form, FormItem, Im, Synchronous};
use im_sync::nbi::{NbiClient, NbiClientConfig, NbiSim, SimConfig, System};
use im_sync::sync::{ReportFn, RunError, Scheduler, SyncSettings, SystemSchedule, run_sync};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn small_spec() -> DemoSpec {
    DemoSpec {
        exchanges: 2,
        dslams_per_exchange: 2,
        slots: 2,
        ports_per_slot: 32,
        compounds: 2,
        pon_ports_per_olt: 2,
        onts_per_pon: 4,
    }
}

async fn sim(system: System) -> NbiSim {
    let mut c = SimConfig::new(system);
    c.spec = small_spec();
    NbiSim::start(c).await.unwrap()
}

fn client(sim: &NbiSim) -> NbiClient {
    let mut c = NbiClientConfig::new(sim.system(), sim.base_url());
    c.retry = RetryPolicy {
        retries: 1,
        initial_interval: Duration::from_millis(5),
        multiplier: 2.0,
        max_interval: Duration::from_millis(10),
        jitter: 0.0,
    };
    c.timeout = Duration::from_secs(20);
    NbiClient::new(c).unwrap()
}

fn open(dir: &Path) -> Im {
    let mut cfg = CoreConfig::new(dir.join("im.db"));
    cfg.synchronous = Synchronous::Normal;
    Im::open(cfg).unwrap()
}

fn settings(kind: SyncKind, config: SyncConfig) -> SyncSettings {
    let mut s = SyncSettings::new(kind);
    s.page_limit = 50;
    s.config = config;
    s
}

async fn full(im: &Im, sim: &NbiSim, config: SyncConfig) -> SyncReport {
    run_sync(
        im,
        &client(sim),
        &settings(SyncKind::Full, config),
        &mut |_| {},
    )
    .await
    .unwrap()
}

fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("im.db")).unwrap()
}

fn count(dir: &Path, sql: &str) -> i64 {
    db(dir).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn lease(d: Duration) -> SyncConfig {
    SyncConfig {
        lease: d,
        ..SyncConfig::default()
    }
}

fn flow(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{n}")
}

fn om_form(prefix: &str, item: FormItem) -> Form {
    Form::default()
        .field("authusername", DEMO_OM_USER)
        .field("authpassword", DEMO_OM_PASSWORD)
        .field("flowId", flow(prefix))
        .field("popid", "19601")
        .item(item)
}

/// An FTTH Install for compound CP01 at EX01 with ONT `serial`.
fn ftth_install(im: &Im, user: &str, serial: &str) {
    let item = FormItem::default()
        .field("opertype", "Install")
        .field("coverType", "FTTH")
        .field("serviceType", "FTTH")
        .field("UserName", user)
        .field("AccountNumber", format!("ACC-{user}"))
        .field("CustomerName", "Mona")
        .attr("CompoundId", "CP01")
        .attr("ONTSN", serial)
        .attr("Speed", "100M");
    let o = im.submit_blocking(om_form("FI", item));
    assert_eq!(o.return_code(), 0, "{o:?}");
}

/// Whether the Query answer shows `user`'s service in conflict.
fn conflict_of(im: &Im, user: &str) -> bool {
    let item = FormItem::default()
        .field("opertype", "Query")
        .field("UserName", user);
    let o = im.submit_blocking(om_form("Q", item));
    assert_eq!(o.return_code(), 0, "{o:?}");
    o.items[0].services[0].conflict
}

// ------------------------------------------------------------------ leases

/// A run whose process died (its session never ended: no `End` reaches the
/// writer) holds the lease until it expires; then the next run takes it over
/// and the dead run is recorded `FAILED` ("lease expired").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_runs_lease_blocks_until_it_expires_then_is_taken_over() {
    let sim = sim(System::Matrix).await;
    let dir = tempfile::tempdir().unwrap();
    let im = open(dir.path());
    let cfg = lease(Duration::from_secs(2));

    // "Another process" claims the lease, then dies mid-run.
    let dead = open(dir.path());
    let claimed = Instant::now();
    let session = tokio::task::block_in_place(|| {
        let mut o = SyncOptions::new(SyncSystem::Matrix, SyncKind::Full);
        o.config = cfg.clone();
        dead.begin_sync(o)
    })
    .unwrap();
    let dead_run = session.run_id();
    std::mem::forget(session);
    dead.close();
    assert_eq!(count(dir.path(), "SELECT count(*) FROM sync_lock"), 1);

    // Before expiry: refused, through the driver and through the core.
    let r = run_sync(
        &im,
        &client(&sim),
        &settings(SyncKind::Full, cfg.clone()),
        &mut |_| {},
    )
    .await;
    assert!(
        matches!(r, Err(RunError::Sync(SyncError::Busy { .. }))),
        "{r:?}"
    );
    let r = tokio::task::block_in_place(|| {
        let mut o = SyncOptions::new(SyncSystem::Matrix, SyncKind::Full);
        o.config = cfg.clone();
        o.force = true;
        im.begin_sync(o).map(|s| s.run_id())
    });
    assert!(matches!(r, Err(SyncError::Busy { .. })), "{r:?}");
    assert!(
        claimed.elapsed() < Duration::from_secs(1),
        "the checks before expiry were too slow to mean anything"
    );
    let runs = im.sync_runs(Some(SyncSystem::Matrix), 10).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0].id, runs[0].status.as_str()), (dead_run, "RUNNING"));

    // Once expired, the next run takes the lease over and succeeds.
    tokio::time::sleep_until((claimed + Duration::from_millis(2150)).into()).await;
    let rep = full(&im, &sim, cfg.clone()).await;
    assert_eq!(rep.status, RunStatus::Succeeded, "{rep:?}");
    assert!(rep.counts.added > 0, "{rep:?}");
    let runs = im.sync_runs(Some(SyncSystem::Matrix), 10).unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0].id, rep.run_id);
    assert_eq!(runs[0].status, "SUCCEEDED");
    assert_eq!(runs[1].id, dead_run);
    assert_eq!(runs[1].status, "FAILED", "{runs:?}");
    assert!(runs[1].ended.is_some());
    assert!(
        runs[1]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("lease expired"),
        "{runs:?}"
    );
    // The successful run released the lease: nothing is left behind.
    assert_eq!(count(dir.path(), "SELECT count(*) FROM sync_lock"), 0);
    let rep = full(&im, &sim, cfg).await;
    assert_eq!(rep.status, RunStatus::Succeeded, "{rep:?}");
    im.close();
    sim.stop().await;
}

/// `SyncConfig::lease` is a `Duration`: a lease of 800 ms is unexpired
/// 800 ms long, so a second run started at once must be refused, and one
/// started after it expired must go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_second_lease_excludes_a_second_run_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let im = open(dir.path());
    let other = open(dir.path());
    let cfg = lease(Duration::from_millis(800));
    let begin = |im: &Im| {
        let mut o = SyncOptions::new(SyncSystem::Matrix, SyncKind::Full);
        o.config = cfg.clone();
        tokio::task::block_in_place(|| im.begin_sync(o))
    };
    let claimed = Instant::now();
    let first = begin(&im).unwrap();
    let first_run = first.run_id();
    std::mem::forget(first);
    let r = begin(&other).map(|s| s.run_id());
    assert!(
        claimed.elapsed() < Duration::from_millis(400),
        "too slow to test"
    );
    assert!(
        matches!(r, Err(SyncError::Busy { .. })),
        "an 800 ms lease claimed {:?} ago did not exclude another run: {r:?}",
        claimed.elapsed()
    );
    tokio::time::sleep_until((claimed + Duration::from_millis(900)).into()).await;
    let second = begin(&other).unwrap();
    let rep = tokio::task::block_in_place(|| second.fail("test"));
    assert_eq!(rep.status, RunStatus::Failed);
    let runs = im.sync_runs(Some(SyncSystem::Matrix), 10).unwrap();
    let dead = runs.iter().find(|r| r.id == first_run).unwrap();
    assert_eq!(dead.status, "FAILED", "{runs:?}");
    im.close();
    other.close();
}

// ------------------------------------------------------------------ ONT grace

/// An ONT that OM registered and eMatrix does not list is left alone by
/// full runs within the ONT grace period; once the grace period has passed
/// since its registration, a full run removes it (soft), the ONT stays held
/// and its service is flagged (run report and Query).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_om_ont_unlisted_by_ematrix_is_a_conflict_only_after_the_grace_period() {
    let matrix = sim(System::Matrix).await;
    let ematrix = sim(System::Ematrix).await;
    let dir = tempfile::tempdir().unwrap();
    let im = open(dir.path());
    let defaults = SyncConfig::default();
    let r = full(&im, &matrix, defaults.clone()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    let r = full(&im, &ematrix, defaults.clone()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");

    im.set_om_account(DEMO_OM_USER, DEMO_OM_PASSWORD).unwrap();
    let user = "graceful@example.net";
    let serial = "ZZOM0000A001";
    tokio::task::block_in_place(|| ftth_install(&im, user, serial));
    let registered = Instant::now();
    let ont = |d: &Path| -> (String, i64, bool) {
        db(d)
            .query_row(
                "SELECT o.origin, o.removed, o.service_id IS NOT NULL FROM ont o \
                 WHERE o.serial = ?1",
                [serial],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    assert_eq!(ont(dir.path()), ("OM".into(), 0, true));
    assert!(!tokio::task::block_in_place(|| conflict_of(&im, user)));

    // The default grace (7 days): eMatrix does not list it, nothing happens.
    let r = full(&im, &ematrix, defaults).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(
        (r.counts.removed, r.counts.conflicts),
        (0, 0),
        "within the grace: {r:?}"
    );
    assert_eq!(ont(dir.path()), ("OM".into(), 0, true));

    // A grace of 2 s, still within it: nothing happens either.
    let grace = SyncConfig {
        ont_grace: Duration::from_secs(2),
        ..SyncConfig::default()
    };
    let r = full(&im, &ematrix, grace.clone()).await;
    assert!(
        registered.elapsed() < Duration::from_millis(1500),
        "too slow to test the grace"
    );
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!((r.counts.removed, r.counts.conflicts), (0, 0), "{r:?}");
    assert!(r.conflicts.is_empty());
    assert_eq!(ont(dir.path()), ("OM".into(), 0, true));
    assert!(!tokio::task::block_in_place(|| conflict_of(&im, user)));

    // Past the grace: removed (soft), still held, the service flagged.
    tokio::time::sleep_until((registered + Duration::from_millis(2200)).into()).await;
    let r = full(&im, &ematrix, grace.clone()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!((r.counts.removed, r.counts.conflicts), (1, 1), "{r:?}");
    let c = &r.conflicts[0];
    assert_eq!(
        (c.user_name.as_str(), c.resource, c.code.as_str()),
        (user, Resource::Ont, serial)
    );
    assert!(c.reason.contains("removed"), "{c:?}");
    assert_eq!(ont(dir.path()), ("OM".into(), 1, true));
    assert!(tokio::task::block_in_place(|| conflict_of(&im, user)));
    let reason: String = db(dir.path())
        .query_row(
            "SELECT conflict_reason FROM service WHERE user_name = ?1",
            [user],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        reason.contains(serial) && reason.contains("removed"),
        "{reason}"
    );

    // Zero grace: the removed ONT is not removed (nor flagged) again.
    let zero = SyncConfig {
        ont_grace: Duration::ZERO,
        ..SyncConfig::default()
    };
    let r = full(&im, &ematrix, zero).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(
        (r.counts.added, r.counts.changed, r.counts.removed),
        (0, 0, 0),
        "{r:?}"
    );
    assert_eq!(r.counts.conflicts, 0, "{r:?}");
    im.close();
    matrix.stop().await;
    ematrix.stop().await;
}

/// With a zero grace, an OM-registered ONT that the source does not list is
/// flagged by the very next full run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_grace_flags_an_unlisted_om_ont_at_once() {
    let matrix = sim(System::Matrix).await;
    let ematrix = sim(System::Ematrix).await;
    let dir = tempfile::tempdir().unwrap();
    let im = open(dir.path());
    assert_eq!(
        full(&im, &matrix, SyncConfig::default()).await.status,
        RunStatus::Succeeded
    );
    assert_eq!(
        full(&im, &ematrix, SyncConfig::default()).await.status,
        RunStatus::Succeeded
    );
    im.set_om_account(DEMO_OM_USER, DEMO_OM_PASSWORD).unwrap();
    let user = "nograce@example.net";
    let serial = "ZZOM0000A002";
    tokio::task::block_in_place(|| ftth_install(&im, user, serial));
    // Registered in an earlier millisecond than the run's cutoff.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let zero = SyncConfig {
        ont_grace: Duration::ZERO,
        ..SyncConfig::default()
    };
    let r = full(&im, &ematrix, zero).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!((r.counts.removed, r.counts.conflicts), (1, 1), "{r:?}");
    assert_eq!(r.conflicts[0].code, serial);
    assert!(tokio::task::block_in_place(|| conflict_of(&im, user)));
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM ont WHERE origin = 'OM' AND removed = 1 \
             AND service_id IS NOT NULL"
        ),
        1
    );
    im.close();
    matrix.stop().await;
    ematrix.stop().await;
}

// ------------------------------------------------------------------ scheduler

/// A scheduler with a 200 ms full interval makes several full runs, and
/// `stop` returns promptly, after which no run starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_repeats_full_runs_and_stops() {
    let sim = sim(System::Matrix).await;
    let dir = tempfile::tempdir().unwrap();
    let im = open(dir.path());
    let reports = Arc::new(AtomicUsize::new(0));
    let statuses: Arc<Mutex<Vec<Option<RunStatus>>>> = Arc::default();
    let cb: ReportFn = {
        let reports = reports.clone();
        let statuses = statuses.clone();
        Arc::new(move |system: System, r: &Result<SyncReport, RunError>| {
            assert_eq!(system, System::Matrix);
            statuses
                .lock()
                .unwrap()
                .push(r.as_ref().ok().map(|x| x.status));
            reports.fetch_add(1, Ordering::SeqCst);
        })
    };
    let sched = Scheduler::start(
        im.clone(),
        vec![SystemSchedule {
            source: Arc::new(client(&sim)),
            full_every: Some(Duration::from_millis(200)),
            incremental_every: None,
            settings: settings(SyncKind::Full, SyncConfig::default()),
        }],
        Some(cb),
    );

    let started = Instant::now();
    let succeeded = |im: &Im| {
        im.sync_runs(Some(SyncSystem::Matrix), 100)
            .unwrap()
            .iter()
            .filter(|r| r.status == "SUCCEEDED")
            .count()
    };
    while (succeeded(&im) < 2 || reports.load(Ordering::SeqCst) < 2)
        && started.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        succeeded(&im) >= 2 && reports.load(Ordering::SeqCst) >= 2,
        "after {:?}: {} succeeded runs, {} reports",
        started.elapsed(),
        succeeded(&im),
        reports.load(Ordering::SeqCst)
    );

    let t = Instant::now();
    sched.stop().await;
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        t.elapsed()
    );
    let runs_at_stop = im.sync_runs(Some(SyncSystem::Matrix), 100).unwrap().len();
    let reports_at_stop = reports.load(Ordering::SeqCst);

    // Several intervals later: no run started, no report made.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let runs = im.sync_runs(Some(SyncSystem::Matrix), 100).unwrap();
    assert_eq!(
        runs.len(),
        runs_at_stop,
        "a run started after stop: {runs:?}"
    );
    assert_eq!(reports.load(Ordering::SeqCst), reports_at_stop);
    assert!(runs.iter().all(|r| r.kind == "FULL"), "{runs:?}");
    // A run cut short by stop is abandoned (FAILED), never left RUNNING.
    assert!(
        runs.iter()
            .all(|r| r.status == "SUCCEEDED" || r.status == "FAILED"),
        "{runs:?}"
    );
    let st = statuses.lock().unwrap().clone();
    assert!(
        st.iter().all(|s| *s == Some(RunStatus::Succeeded)),
        "{st:?}"
    );
    // The lease is free: a run goes through at once.
    let rep = full(&im, &sim, SyncConfig::default()).await;
    assert_eq!(rep.status, RunStatus::Succeeded, "{rep:?}");
    im.close();
    sim.stop().await;
}
