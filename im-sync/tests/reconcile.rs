//! Inventory reconciliation over real HTTP on loopback: the NBI simulators
//! as sources, real SQLite files as the inventory (spec
//! inventory-sync-and-am.md §3).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use im_core::demo::{DEMO_OM_PASSWORD, DEMO_OM_USER, DemoSpec, inventory};
use im_core::retry::RetryPolicy;
use im_core::sync::{RunStatus, SyncError, SyncKind, SyncOptions, SyncReport, SyncSystem};
use im_core::{CoreConfig, Form, FormItem, Im, Synchronous};
use im_sync::nbi::{
    Entity, Fault, FaultKind, NbiClient, NbiClientConfig, NbiSim, SimConfig, System,
};
use im_sync::sync::{Progress, RunError, SyncSettings, run_sync};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Duration;

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

async fn sim(system: System, spec: DemoSpec) -> NbiSim {
    let mut c = SimConfig::new(system);
    c.spec = spec;
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

/// Small pages, and small apply slices: every diff of more than 7 changes
/// after a first load goes through the journal and is applied in slices.
fn settings(kind: SyncKind) -> SyncSettings {
    let mut s = SyncSettings::new(kind);
    s.page_limit = 50;
    s.config.apply_slice = 7;
    s
}

async fn sync(im: &Im, sim: &NbiSim, s: &SyncSettings) -> SyncReport {
    let c = client(sim);
    let mut pages = 0u64;
    let mut cb = |_: &Progress| pages += 1;
    let r = run_sync(im, &c, s, &mut cb).await.unwrap();
    assert!(pages > 0 || r.status != RunStatus::Succeeded || s.kind == SyncKind::Incremental);
    r
}

fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("im.db")).unwrap()
}

fn count(dir: &Path, sql: &str) -> i64 {
    db(dir).query_row(sql, [], |r| r.get(0)).unwrap()
}

const INVENTORY_TABLES: [&str; 12] = [
    "sector",
    "zone",
    "city",
    "exchange",
    "dslam",
    "port",
    "olt",
    "pon_port",
    "compound",
    "compound_pon",
    "ont",
    "vlan",
];

/// A digest of every inventory table (all columns, in key order), of the
/// services and of the resource log.
fn digest(dir: &Path) -> u64 {
    let conn = db(dir);
    let mut h = std::hash::DefaultHasher::new();
    for t in INVENTORY_TABLES.iter().chain(&["service", "resource_log"]) {
        let mut st = conn
            .prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2"))
            .unwrap();
        let n = st.column_count();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for i in 0..n {
                format!("{:?}", r.get_ref(i).unwrap()).hash(&mut h);
            }
        }
    }
    h.finish()
}

fn adsl_rows(spec: &DemoSpec) -> u64 {
    let inv = inventory(spec);
    let d = im_core::model::Domain::Adsl;
    (inv.sectors.iter().filter(|r| r.domain == d).count()
        + inv.zones.iter().filter(|r| r.domain == d).count()
        + inv.cities.iter().filter(|r| r.domain == d).count()
        + inv.exchanges.len()
        + inv.dslams.len()
        + inv.ports.len()) as u64
}

fn ftth_rows(spec: &DemoSpec) -> u64 {
    let inv = inventory(spec);
    let d = im_core::model::Domain::Ftth;
    (inv.sectors.iter().filter(|r| r.domain == d).count()
        + inv.zones.iter().filter(|r| r.domain == d).count()
        + inv.cities.iter().filter(|r| r.domain == d).count()
        + inv.olts.len()
        + inv.pon_ports.len()
        + inv.compounds.len()
        + inv.onts.len()
        + inv.vlans.len()) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_nothing_then_incremental_then_full() {
    let spec = small_spec();
    let sim = sim(System::Matrix, spec.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let im = open(dir.path());

    // First full run into an empty inventory: everything added.
    let r = sync(&im, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(r.counts.added, adsl_rows(&spec));
    assert_eq!(
        (r.counts.changed, r.counts.removed, r.counts.rejected),
        (0, 0, 0)
    );
    assert_eq!(r.snapshot.as_deref(), Some("S000001"));
    assert_eq!(r.watermark.as_deref(), Some("W000001"));
    assert_eq!(
        count(dir.path(), "SELECT count(*) FROM port"),
        spec.port_count() as i64
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM resource_log WHERE operation = 'ADD'"
        ),
        adsl_rows(&spec) as i64
    );
    let expected = inventory(&spec);
    let occupied = expected
        .ports
        .iter()
        .filter(|p| p.state == im_core::model::SourceState::Occupied)
        .count() as i64;
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM port WHERE state = 'OCCUPIED'"
        ),
        occupied
    );

    // Nothing changed: nothing written.
    let log_before = count(dir.path(), "SELECT count(*) FROM resource_log");
    let d0 = digest(dir.path());
    let r = sync(&im, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(
        (r.counts.added, r.counts.changed, r.counts.removed),
        (0, 0, 0)
    );
    assert_eq!(
        count(dir.path(), "SELECT count(*) FROM resource_log"),
        log_before
    );
    assert_eq!(digest(dir.path()), d0, "an unchanged snapshot rewrote rows");

    // The source moves on: an incremental run applies exactly the changes.
    let info = sim.advance(0.03, 0.05, 0.04);
    let r = sync(&im, &sim, &settings(SyncKind::Incremental)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(
        (r.counts.added, r.counts.changed, r.counts.removed),
        (info.added, info.changed, info.removed)
    );
    assert!(info.added > 0 && info.changed > 0 && info.removed > 0);
    assert_eq!(r.watermark.as_deref(), Some(info.watermark.as_str()));
    assert_eq!(
        im.last_sync_watermark(SyncSystem::Matrix).unwrap(),
        Some(info.watermark.clone())
    );
    assert_eq!(
        count(dir.path(), "SELECT count(*) FROM port WHERE removed = 1"),
        info.removed as i64
    );
    // Soft removal: nothing deleted.
    assert_eq!(
        count(dir.path(), "SELECT count(*) FROM port"),
        (spec.port_count() + info.added) as i64
    );
    // The log holds old and new values of the changed field only.
    let (old, new): (String, String) = db(dir.path())
        .query_row(
            "SELECT old_values, new_values FROM resource_log WHERE operation = 'MODIFY' \
             AND resource_type = 'port' AND actor LIKE 'sync:matrix:%' ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        old.starts_with(r#"{"state":""#) && new.starts_with(r#"{"state":""#),
        "{old} {new}"
    );
    assert_ne!(old, new);
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM resource_log WHERE operation = 'REMOVE'"
        ),
        info.removed as i64
    );

    // A full run of the same snapshot finds nothing left to do.
    let d1 = digest(dir.path());
    let r = sync(&im, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(
        (r.counts.added, r.counts.changed, r.counts.removed),
        (0, 0, 0),
        "{r:?}"
    );
    assert_eq!(digest(dir.path()), d1);

    // And a full run of a fresh database reaches the same live inventory.
    let dir2 = tempfile::tempdir().unwrap();
    let im2 = open(dir2.path());
    let r = sync(&im2, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    let live = |d: &Path| -> Vec<(String, i64, i64, i64, String)> {
        let c = db(d);
        let mut st = c
            .prepare(
                "SELECT d.name, p.frame, p.slot, p.port, p.state FROM port p \
                 JOIN dslam d ON d.id = p.dslam_id WHERE p.removed = 0 ORDER BY 1, 2, 3, 4",
            )
            .unwrap();
        st.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    assert_eq!(live(dir.path()), live(dir2.path()));

    let runs = im.sync_runs(Some(SyncSystem::Matrix), 10).unwrap();
    assert_eq!(runs.len(), 4);
    assert!(
        runs.iter()
            .all(|r| r.status == "SUCCEEDED" && r.ended.is_some())
    );
    assert_eq!(runs[1].kind, "INCREMENTAL");
    assert_eq!(runs[1].since.as_deref(), Some("W000001"));
    im.close();
    im2.close();
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_on_the_last_page_changes_nothing() {
    let spec = small_spec();
    let sim = sim(System::Matrix, spec).await;
    let dir = tempfile::tempdir().unwrap();
    let im = open(dir.path());
    assert_eq!(
        sync(&im, &sim, &settings(SyncKind::Full)).await.status,
        RunStatus::Succeeded
    );
    sim.advance(0.05, 0.05, 0.05);
    let before = digest(dir.path());
    sim.inject(
        Fault::new(FaultKind::Status(500))
            .entity(Entity::Ports)
            .on_last_page()
            .times(10),
    );
    let r = sync(&im, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Failed, "{r:?}");
    assert!(r.error.as_deref().unwrap_or("").contains("500"), "{r:?}");
    assert_eq!(
        digest(dir.path()),
        before,
        "a failed run changed the inventory"
    );
    let runs = im.sync_runs(Some(SyncSystem::Matrix), 1).unwrap();
    assert_eq!(runs[0].status, "FAILED");
    assert!(runs[0].error.is_some());
    // The lease was released: the next run goes through.
    sim.clear_faults();
    let r = sync(&im, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_ne!(digest(dir.path()), before);

    // An expired snapshot restarts the run (a new run in the log).
    sim.advance(0.0, 0.02, 0.0);
    sim.inject(Fault::new(FaultKind::Gone).entity(Entity::Ports).times(1));
    let r = sync(&im, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    let runs = im.sync_runs(Some(SyncSystem::Matrix), 2).unwrap();
    assert_eq!(runs[1].status, "FAILED");
    assert!(runs[1].error.as_deref().unwrap_or("").contains("expired"));
    im.close();
    sim.stop().await;
}

fn install(im: &Im, user: &str) {
    let form = Form::default()
        .field("authusername", DEMO_OM_USER)
        .field("authpassword", DEMO_OM_PASSWORD)
        .field("flowId", flow("F", user))
        .field("popid", "19601")
        .item(
            FormItem::default()
                .field("opertype", "Install")
                .field("coverType", "ADSL")
                .field("serviceType", "ADSL")
                .field("UserName", user)
                .field("AccountNumber", format!("ACC-{user}"))
                .field("CustomerName", "Ahmed")
                .attr("ExchangeID", "EX01")
                .attr("Speed", "16M"),
        );
    let o = im.submit_blocking(form);
    assert_eq!(o.return_code(), 0, "{o:?}");
}

fn conflict_of(im: &Im, user: &str) -> bool {
    let form = Form::default()
        .field("authusername", DEMO_OM_USER)
        .field("authpassword", DEMO_OM_PASSWORD)
        .field("flowId", flow("Q", user))
        .field("popid", "19601")
        .item(
            FormItem::default()
                .field("opertype", "Query")
                .field("UserName", user),
        );
    let o = im.submit_blocking(form);
    assert_eq!(o.return_code(), 0, "{o:?}");
    o.items[0].services[0].conflict
}

fn flow(prefix: &str, user: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let user: String = user.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("{prefix}-{user}-{n}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_port_stays_held_and_its_service_is_flagged() {
    let spec = small_spec();
    let sim = sim(System::Matrix, spec).await;
    let dir = tempfile::tempdir().unwrap();
    let im = open(dir.path());
    assert_eq!(
        sync(&im, &sim, &settings(SyncKind::Full)).await.status,
        RunStatus::Succeeded
    );
    im.set_om_account(DEMO_OM_USER, DEMO_OM_PASSWORD).unwrap();
    let user = "held@example.net";
    tokio::task::block_in_place(|| install(&im, user));
    let held = "SELECT p.id, p.state, p.removed FROM port p JOIN service s ON s.id = p.service_id \
                WHERE s.user_name = 'held@example.net'";
    let port = |d: &Path| -> (i64, String, i64) {
        db(d)
            .query_row(held, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
    };
    let (id, state, _) = port(dir.path());
    assert_eq!(state, "AVAILABLE");

    // Every port changes state: the held one becomes OCCUPIED, which is normal.
    sim.advance(0.0, 1.0, 0.0);
    let r = sync(&im, &sim, &settings(SyncKind::Incremental)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(r.counts.conflicts, 0);
    assert_eq!(port(dir.path()), (id, "OCCUPIED".into(), 0));
    assert!(!tokio::task::block_in_place(|| conflict_of(&im, user)));

    // Then FAULTY: still held, the service is flagged and the run reports it.
    sim.advance(0.0, 1.0, 0.0);
    let r = sync(&im, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(r.counts.conflicts, 1, "{r:?}");
    assert_eq!(r.conflicts[0].user_name, user);
    assert_eq!(port(dir.path()), (id, "FAULTY".into(), 0));
    assert!(tokio::task::block_in_place(|| conflict_of(&im, user)));

    // Removed by the source (over the mass-removal share, so forced): the
    // port stays held (soft-removed), the service is flagged again.
    sim.advance(0.0, 0.0, 1.0);
    let r = sync(&im, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Aborted, "{r:?}");
    let mut forced = settings(SyncKind::Full);
    forced.force = true;
    let r = sync(&im, &sim, &forced).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(r.counts.conflicts, 1);
    assert!(r.conflicts[0].reason.contains("removed"), "{r:?}");
    assert_eq!(port(dir.path()), (id, "FAULTY".into(), 1));
    let reason: String = db(dir.path())
        .query_row(
            "SELECT conflict_reason FROM service WHERE user_name = ?1",
            [user],
            |r| r.get(0),
        )
        .unwrap();
    assert!(reason.contains("removed"), "{reason}");
    im.close();
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_abort_unless_forced() {
    let spec = small_spec();
    let sim = sim(System::Matrix, spec.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let im = open(dir.path());
    assert_eq!(
        sync(&im, &sim, &settings(SyncKind::Full)).await.status,
        RunStatus::Succeeded
    );

    // Bad rows over 1%: 5 of ~270 elements.
    sim.advance(0.0, 0.02, 0.0);
    let before = digest(dir.path());
    sim.inject(
        Fault::new(FaultKind::BadRows(5))
            .entity(Entity::Ports)
            .times(1),
    );
    let r = sync(&im, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Aborted, "{r:?}");
    assert_eq!(r.counts.rejected, 5);
    assert!(r.error.as_deref().unwrap_or("").contains("rejected"));
    assert_eq!(r.rejects.len(), 5);
    assert_eq!(digest(dir.path()), before);
    assert_eq!(im.sync_runs(None, 1).unwrap()[0].status, "ABORTED");
    // Forced: the good rows are applied, the bad ones counted.
    sim.inject(
        Fault::new(FaultKind::BadRows(5))
            .entity(Entity::Ports)
            .times(1),
    );
    let mut forced = settings(SyncKind::Full);
    forced.force = true;
    let r = sync(&im, &sim, &forced).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(r.counts.rejected, 5);
    // A rejected row whose key was readable is not a removal; one without
    // a key cannot be matched, so a full run removes it.
    assert!(r.counts.removed <= 3, "{r:?}");

    // A snapshot removing 20% of the rows: aborted, then forced.
    let info = sim.advance(0.0, 0.0, 0.2);
    let before = digest(dir.path());
    let r = sync(&im, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Aborted, "{r:?}");
    assert!(r.error.as_deref().unwrap_or("").contains("remove"));
    assert_eq!(digest(dir.path()), before);
    let r = sync(&im, &sim, &forced).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert!(r.counts.removed + 3 >= info.removed, "{r:?} {info:?}");
    assert!(im.sync_runs(None, 1).unwrap()[0].forced);
    im.close();
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_system_never_overlap() {
    let spec = small_spec();
    let sim = sim(System::Matrix, spec).await;
    let dir = tempfile::tempdir().unwrap();
    let im = open(dir.path());
    let first = tokio::task::block_in_place(|| {
        im.begin_sync(SyncOptions::new(SyncSystem::Matrix, SyncKind::Full))
    })
    .unwrap();
    // Same process: refused.
    let r = run_sync(&im, &client(&sim), &settings(SyncKind::Full), &mut |_| {}).await;
    assert!(
        matches!(r, Err(RunError::Sync(SyncError::Busy { .. }))),
        "{r:?}"
    );
    // Another process (another core on the same file): refused too.
    let other = open(dir.path());
    let r = tokio::task::block_in_place(|| {
        other.begin_sync(SyncOptions::new(SyncSystem::Matrix, SyncKind::Full))
    });
    assert!(matches!(r, Err(SyncError::Busy { .. })), "{r:?}");
    // Another system is free.
    let e = tokio::task::block_in_place(|| {
        other.begin_sync(SyncOptions::new(SyncSystem::Ematrix, SyncKind::Full))
    })
    .unwrap();
    drop(e);
    // Once the first ends, the next run goes through.
    let rep = tokio::task::block_in_place(|| first.fail("test"));
    assert_eq!(rep.status, RunStatus::Failed);
    let r = run_sync(
        &other,
        &client(&sim),
        &settings(SyncKind::Full),
        &mut |_| {},
    )
    .await;
    assert_eq!(r.unwrap().status, RunStatus::Succeeded);

    // Two runs started together: one runs, the other is refused.
    sim.advance(0.0, 0.01, 0.0);
    let c = client(&sim);
    let s = settings(SyncKind::Full);
    let (mut pa, mut pb) = (|_: &Progress| {}, |_: &Progress| {});
    let (a, b) = tokio::join!(
        run_sync(&im, &c, &s, &mut pa),
        run_sync(&other, &c, &s, &mut pb)
    );
    let ok = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Ok(x) if x.status == RunStatus::Succeeded))
        .count();
    let busy = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(RunError::Sync(SyncError::Busy { .. }))))
        .count();
    assert_eq!((ok, busy), (1, 1), "{a:?} {b:?}");
    im.close();
    other.close();
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ematrix_after_matrix() {
    let spec = small_spec();
    let matrix = sim(System::Matrix, spec.clone()).await;
    let ematrix = sim(System::Ematrix, spec.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let im = open(dir.path());

    // Before Matrix, eMatrix rows naming exchanges are rejected: aborted.
    let r = sync(&im, &ematrix, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Aborted, "{r:?}");
    assert!(
        r.rejects
            .iter()
            .any(|x| x.reason.contains("unknown exchange")),
        "{r:?}"
    );
    assert_eq!(count(dir.path(), "SELECT count(*) FROM olt"), 0);

    assert_eq!(
        sync(&im, &matrix, &settings(SyncKind::Full)).await.status,
        RunStatus::Succeeded
    );
    let r = sync(&im, &ematrix, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(r.counts.added, ftth_rows(&spec));
    assert_eq!(r.counts.rejected, 0);
    let inv = inventory(&spec);
    assert_eq!(
        count(dir.path(), "SELECT count(*) FROM ont"),
        inv.onts.len() as i64
    );
    assert_eq!(
        count(dir.path(), "SELECT count(*) FROM compound_pon"),
        inv.compounds
            .iter()
            .map(|c| c.pon_ports.len())
            .sum::<usize>() as i64
    );
    // A Matrix full run does not touch the FTTH map, and vice versa.
    let r = sync(&im, &matrix, &settings(SyncKind::Full)).await;
    assert_eq!(
        (r.counts.added, r.counts.changed, r.counts.removed),
        (0, 0, 0)
    );
    let r = sync(&im, &ematrix, &settings(SyncKind::Full)).await;
    assert_eq!(
        (r.counts.added, r.counts.changed, r.counts.removed),
        (0, 0, 0)
    );

    // ONTs and VLANs move on; an incremental eMatrix run follows.
    let info = ematrix.advance(0.01, 0.05, 0.05);
    let r = sync(&im, &ematrix, &settings(SyncKind::Incremental)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(
        (r.counts.added, r.counts.changed, r.counts.removed),
        (info.added, info.changed, info.removed)
    );
    im.close();
    matrix.stop().await;
    ematrix.stop().await;
}

/// The ADSL inventory and what the resource log says about it, without the
/// timestamps (two databases that ran the same runs compare equal).
fn adsl_state(dir: &Path) -> Vec<String> {
    let conn = db(dir);
    let mut out = Vec::new();
    for sql in [
        "SELECT id, name, exchange_id, removed FROM dslam ORDER BY id",
        "SELECT id, dslam_id, frame, slot, port, state, service_id, removed FROM port ORDER BY id",
        "SELECT actor, resource_type, code, operation, old_values, new_values FROM resource_log ORDER BY id",
        "SELECT id, status, added, changed, removed, rejected, conflicts, snapshot, watermark FROM sync_run ORDER BY id",
    ] {
        let mut st = conn.prepare(sql).unwrap();
        let n = st.column_count();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let cols: Vec<String> = (0..n)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect();
            out.push(cols.join("|"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decided_run_interrupted_between_slices_is_finished_when_the_database_opens() {
    let spec = small_spec();
    let sim = sim(System::Matrix, spec).await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (im_a, im_b) = (open(a.path()), open(b.path()));
    for im in [&im_a, &im_b] {
        let r = sync(im, &sim, &settings(SyncKind::Full)).await;
        assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    }
    sim.advance(0.02, 0.10, 0.03);

    // A: the resync runs to its end, slice by slice.
    let r = sync(&im_a, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    let changes = r.counts.added + r.counts.changed + r.counts.removed;
    assert!(
        changes > 3 * 7,
        "too few changes ({changes}) to need several slices"
    );

    // B: the same run, but every slice fails after the run is decided (a
    // storage failure, injected with a trigger): nothing of it is applied.
    let before = adsl_state(b.path());
    db(b.path())
        .execute_batch(
            "CREATE TRIGGER fail_slices BEFORE DELETE ON sync_journal_change \
             BEGIN SELECT RAISE(ABORT, 'injected storage failure'); END",
        )
        .unwrap();
    let r = sync(&im_b, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Failed, "{r:?}");
    assert!(
        r.error.as_deref().unwrap_or("").contains("decided"),
        "{r:?}"
    );
    let mut now = adsl_state(b.path());
    now.pop(); // the run's own row: RUNNING, not yet ended
    assert_eq!(now, before, "a slice that failed left changes behind");
    assert_eq!(
        count(b.path(), "SELECT count(*) FROM sync_journal"),
        1,
        "the decided run is kept in the journal"
    );

    // The failure is repaired and IM is opened again: the decided run is
    // finished before anything else, exactly as A applied it.
    db(b.path())
        .execute_batch("DROP TRIGGER fail_slices")
        .unwrap();
    im_b.close();
    drop(im_b);
    let im_b = open(b.path());
    assert_eq!(adsl_state(b.path()), adsl_state(a.path()));
    assert_eq!(
        count(b.path(), "SELECT count(*) FROM sync_journal_change")
            + count(b.path(), "SELECT count(*) FROM sync_journal"),
        0
    );
    // Each run's end is an operation of the system in the operation log.
    assert_eq!(
        count(
            b.path(),
            "SELECT count(*) FROM operation_log WHERE account = 'sync:matrix' AND action = 'IMPORT' \
             AND outcome = 'SUCCESS'"
        ),
        2
    );
    // And the system is free for its next run.
    let r = sync(&im_b, &sim, &settings(SyncKind::Full)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(
        (r.counts.added, r.counts.changed, r.counts.removed),
        (0, 0, 0)
    );
}
