//! The NBI client against the Matrix and eMatrix simulators, over real HTTP
//! on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use im_core::demo::{DemoSpec, inventory};
use im_core::model::Inventory;
use im_core::retry::RetryPolicy;
use im_sync::nbi::{
    Entity, Fault, FaultKind, MemorySource, NbiClient, NbiClientConfig, NbiError, NbiSim, Page,
    PageError, PageHeader, Row, RowError, RowKey, Run, SimConfig, Source, System, Tombstone,
    write_page,
};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

fn fast_retry(retries: u32) -> RetryPolicy {
    RetryPolicy {
        retries,
        initial_interval: Duration::from_millis(10),
        multiplier: 2.0,
        max_interval: Duration::from_millis(50),
        jitter: 0.0,
    }
}

async fn sim(system: System) -> NbiSim {
    NbiSim::start(SimConfig::new(system)).await.unwrap()
}

fn client(sim: &NbiSim) -> NbiClient {
    let mut c = NbiClientConfig::new(sim.system(), sim.base_url());
    c.retry = fast_retry(3);
    c.timeout = Duration::from_secs(20);
    NbiClient::new(c).unwrap()
}

fn expected(inv: &Inventory, system: System, entity: Entity) -> Vec<Row> {
    im_sync::nbi::demo_rows::inventory_rows(inv, system, entity)
}

#[derive(Debug, Default)]
struct Read {
    rows: Vec<Row>,
    tombstones: Vec<Tombstone>,
    rejects: Vec<RowError>,
    pages: Vec<PageHeader>,
}

async fn read_entity<S: Source>(run: &mut Run<'_, S>, entity: Entity) -> Result<Read, NbiError> {
    let mut out = Read::default();
    run.read_entity(entity, |p: Page| {
        out.rows.extend(p.rows);
        out.tombstones.extend(p.tombstones);
        out.rejects.extend(p.rejects);
        out.pages.push(p.header);
        Ok::<_, NbiError>(())
    })
    .await?;
    Ok(out)
}

async fn full_read<S: Source>(src: &S, limit: u32) -> BTreeMap<Entity, Read> {
    let mut run = Run::full(src, limit);
    let mut all = BTreeMap::new();
    for &e in src.system().entities() {
        all.insert(e, read_entity(&mut run, e).await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_read_equals_the_demo_inventory() {
    let inv = inventory(&DemoSpec::default());
    for system in System::ALL {
        let sim = sim(system).await;
        let c = client(&sim);
        let all = full_read(&c, 1000).await;
        for &e in system.entities() {
            let got = &all[&e];
            assert_eq!(got.rows, expected(&inv, system, e), "{system} {e}");
            assert!(got.rejects.is_empty() && got.tombstones.is_empty());
            // One snapshot and one watermark across the whole run.
            assert!(got.pages.iter().all(|h| h.snapshot == "S000001"));
            assert!(got.pages.iter().all(|h| h.watermark == "W000001"));
        }
        // Entities of the other system are refused before any request.
        let other = if system == System::Matrix {
            Entity::Onts
        } else {
            Entity::Ports
        };
        let mut run = Run::full(&c, 10);
        assert!(matches!(
            run.next_page(other).await,
            Err(NbiError::Config(_))
        ));
        sim.stop().await;
    }
    // The run reads every entity of a system, in order.
    let sim = sim(System::Ematrix).await;
    let c = client(&sim);
    let mut run = Run::full(&c, 5000);
    let mut order = Vec::new();
    run.read_all(|p: Page| {
        if order.last() != Some(&p.header.entity) {
            order.push(p.header.entity);
        }
        Ok::<_, NbiError>(())
    })
    .await
    .unwrap();
    // No ONTs in the default demo inventory: no page of them.
    assert_eq!(
        order,
        [
            Entity::Sectors,
            Entity::Zones,
            Entity::Cities,
            Entity::Olts,
            Entity::PonPorts,
            Entity::Compounds,
            Entity::Vlans
        ]
    );
    assert_eq!(run.count(Entity::Vlans).rows, 12_000);
    assert_eq!(run.count(Entity::Vlans).pages, 3);
    assert_eq!(run.watermark(), Some("W000001"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_with_small_limits() {
    let mut cfg = SimConfig::new(System::Matrix);
    cfg.max_limit = 100;
    let sim = NbiSim::start(cfg).await.unwrap();
    let c = client(&sim);
    let inv = inventory(&DemoSpec::default());
    let mut run = Run::full(&c, 7);
    let zones = read_entity(&mut run, Entity::Zones).await.unwrap();
    assert_eq!(zones.rows, expected(&inv, System::Matrix, Entity::Zones));
    let offsets: Vec<u64> = zones.pages.iter().map(|h| h.offset).collect();
    assert_eq!(offsets, [0, 7]);
    assert!(zones.pages.iter().all(|h| h.total == 10 && h.limit == 7));
    let dslams = read_entity(&mut run, Entity::Dslams).await.unwrap();
    assert_eq!(dslams.rows, expected(&inv, System::Matrix, Entity::Dslams));
    assert_eq!(dslams.pages.len(), 6); // 40 rows, 7 a page
    // A limit above the server's cap gets pages of the cap.
    let mut run = Run::full(&c, 1000);
    let ports = read_entity(&mut run, Entity::Ports).await.unwrap();
    assert_eq!(ports.rows, expected(&inv, System::Matrix, Entity::Ports));
    assert_eq!(ports.pages.len(), 205);
    assert!(ports.pages.iter().all(|h| h.limit == 100));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_stays_pinned_across_pages() {
    let sim = sim(System::Matrix).await;
    let c = client(&sim);
    let inv = inventory(&DemoSpec::default());
    let mut run = Run::full(&c, 2000);
    let first = run.next_page(Entity::Ports).await.unwrap().unwrap();
    assert_eq!(first.header.snapshot, "S000001");
    // The source moves on mid-run; the run keeps reading its snapshot.
    let next = sim.advance(0.05, 0.05, 0.05);
    assert_eq!(
        (next.snapshot.as_str(), next.watermark.as_str()),
        ("S000002", "W000002")
    );
    assert!(next.added > 0 && next.changed > 0 && next.removed > 0);
    let mut rows = first.rows;
    while let Some(p) = run.next_page(Entity::Ports).await.unwrap() {
        assert_eq!(p.header.snapshot, "S000001");
        rows.extend(p.rows);
    }
    assert_eq!(rows, expected(&inv, System::Matrix, Entity::Ports));
    assert_eq!(run.watermark(), Some("W000001"));
    // A new run sees the new snapshot.
    let mut run = Run::full(&c, 5000);
    let now = read_entity(&mut run, Entity::Ports).await.unwrap();
    assert_eq!(run.snapshot(), Some("S000002"));
    assert_eq!(now.rows.len() as u64, 20_480 + next.added - next.removed);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_snapshot_ends_the_run_and_a_restart_succeeds() {
    let sim = sim(System::Matrix).await;
    let c = client(&sim);
    let mut run = Run::full(&c, 5000);
    read_entity(&mut run, Entity::Sectors).await.unwrap();
    assert!(run.next_page(Entity::Ports).await.unwrap().is_some());
    let fresh = sim.expire_snapshots();
    let err = run.next_page(Entity::Ports).await.unwrap_err();
    match &err {
        NbiError::SnapshotExpired { snapshot } => {
            assert_eq!(snapshot.as_deref(), Some("S000001"));
        }
        other => panic!("expected SnapshotExpired, got {other:?}"),
    }
    assert!(!err.is_retryable());
    // The restart reads everything under the new snapshot.
    let all = full_read(&c, 5000).await;
    assert_eq!(all[&Entity::Ports].rows.len(), 20_480);
    assert!(
        all.values()
            .flat_map(|r| &r.pages)
            .all(|h| h.snapshot == fresh.snapshot)
    );
    assert_eq!(fresh.watermark, "W000001");
    // An injected 410 on the last page behaves the same.
    sim.inject(
        Fault::new(FaultKind::Gone)
            .entity(Entity::Ports)
            .on_last_page(),
    );
    let mut run = Run::full(&c, 5000);
    let err = read_entity(&mut run, Entity::Ports).await.unwrap_err();
    assert!(matches!(err, NbiError::SnapshotExpired { .. }), "{err:?}");
    assert_eq!(run.count(Entity::Ports).pages, 4);
    let all = full_read(&c, 5000).await;
    assert_eq!(all[&Entity::Ports].rows.len(), 20_480);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_succeed() {
    let sim = sim(System::Ematrix).await;
    let c = client(&sim);
    sim.inject(
        Fault::new(FaultKind::Status(500))
            .times(2)
            .entity(Entity::Vlans)
            .at_offset(5000),
    );
    sim.inject(Fault::new(FaultKind::Status(503)).entity(Entity::Sectors));
    let before = sim.requests();
    let all = full_read(&c, 5000).await;
    assert_eq!(all[&Entity::Vlans].rows.len(), 12_000);
    assert_eq!(all[&Entity::Sectors].rows.len(), 2);
    assert_eq!(sim.pending_faults(), 0);
    // 7 entities: 1+1+1+1+1+1+1 pages... vlans has 3, onts 1 (empty):
    // sectors zones cities olts ponports compounds onts = 7, vlans 3, + 3 retries.
    assert_eq!(sim.requests() - before, 7 + 3 + 3);
    // Retries run out: the last error comes back.
    sim.inject(Fault::new(FaultKind::Status(500)).times(10));
    let mut run = Run::full(&c, 5000);
    let err = run.next_page(Entity::Sectors).await.unwrap_err();
    assert!(
        matches!(err, NbiError::Http { status, .. } if status == 500),
        "{err:?}"
    );
    assert_eq!(sim.pending_faults(), 1); // 4 attempts used of 10
    sim.clear_faults();
    // A 4xx other than 410 is final: one request, no retry.
    sim.inject(Fault::new(FaultKind::Status(404)).times(5));
    let before = sim.requests();
    let mut run = Run::full(&c, 5000);
    let err = run.next_page(Entity::Sectors).await.unwrap_err();
    assert!(
        matches!(err, NbiError::Http { status, .. } if status == 404),
        "{err:?}"
    );
    assert_eq!(sim.requests() - before, 1);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_body_or_a_slow_answer_is_retried() {
    let sim = sim(System::Matrix).await;
    let mut cfg = NbiClientConfig::new(System::Matrix, sim.base_url());
    cfg.retry = fast_retry(3);
    cfg.timeout = Duration::from_millis(1500);
    let c = NbiClient::new(cfg).unwrap();
    sim.inject(
        Fault::new(FaultKind::DropMidBody)
            .entity(Entity::Ports)
            .at_offset(10_000),
    );
    sim.inject(Fault::new(FaultKind::Delay(Duration::from_secs(3))).entity(Entity::Dslams));
    let before = sim.requests();
    let all = full_read(&c, 5000).await;
    let inv = inventory(&DemoSpec::default());
    assert_eq!(
        all[&Entity::Ports].rows,
        expected(&inv, System::Matrix, Entity::Ports)
    );
    assert_eq!(
        all[&Entity::Dslams].rows,
        expected(&inv, System::Matrix, Entity::Dslams)
    );
    assert_eq!(sim.pending_faults(), 0);
    // 5 one-page entities + 5 port pages + 2 retries.
    assert_eq!(sim.requests() - before, 5 + 5 + 2);
    // A short delay within the time-out is just slow.
    sim.inject(Fault::new(FaultKind::Delay(Duration::from_millis(100))));
    let mut run = Run::full(&c, 5000);
    assert!(run.next_page(Entity::Sectors).await.unwrap().is_some());
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_xml_is_a_page_error() {
    let sim = sim(System::Matrix).await;
    let c = client(&sim);
    sim.inject(
        Fault::new(FaultKind::Malformed)
            .entity(Entity::Ports)
            .at_offset(5000),
    );
    let mut run = Run::full(&c, 5000);
    let before = sim.requests();
    let err = read_entity(&mut run, Entity::Ports).await.unwrap_err();
    match &err {
        NbiError::Page {
            entity,
            offset,
            error,
        } => {
            assert_eq!((*entity, *offset), (Entity::Ports, 5000));
            assert!(matches!(error, PageError::Xml(_)), "{error:?}");
        }
        other => panic!("expected a page error, got {other:?}"),
    }
    // Not retried.
    assert_eq!(sim.requests() - before, 2);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_reported_as_rejects() {
    let sim = sim(System::Matrix).await;
    let c = client(&sim);
    sim.inject(
        Fault::new(FaultKind::BadRows(3))
            .entity(Entity::Ports)
            .at_offset(5000),
    );
    sim.inject(Fault::new(FaultKind::BadRows(1)).entity(Entity::Zones));
    let all = full_read(&c, 5000).await;
    let ports = &all[&Entity::Ports];
    assert_eq!(ports.rows.len(), 20_480 - 3);
    let r: Vec<(u64, &str)> = ports
        .rejects
        .iter()
        .map(|e| (e.position, e.reason.as_str()))
        .collect();
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(
        r.iter().map(|x| x.0).collect::<Vec<_>>(),
        [5000, 5001, 5002]
    );
    assert!(r[0].1.contains("dslam is missing"), "{r:?}");
    assert!(r[1].1.contains("BROKEN"), "{r:?}");
    assert!(r[2].1.contains("missing"), "{r:?}");
    assert_eq!(ports.rejects[1].key.as_deref(), Some("EX03-D2/0/7/9"));
    assert!(ports.rejects.iter().all(|e| e.line > 1));
    let zones = &all[&Entity::Zones];
    assert_eq!((zones.rows.len(), zones.rejects.len()), (9, 1));
    assert!(zones.rejects[0].reason.contains("code is missing"));
    sim.stop().await;
}

fn by_key(read: &Read) -> HashMap<RowKey, Row> {
    read.rows.iter().map(|r| (r.key(), r.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_after_advance_returns_exactly_the_changes() {
    for system in System::ALL {
        let sim = sim(system).await;
        let c = client(&sim);
        let before = full_read(&c, 5000).await;
        let w1 = sim.current().watermark;
        let info = sim.advance(0.01, 0.02, 0.01);
        let after = full_read(&c, 5000).await;
        let mut inc = Run::incremental(&c, 300, w1.clone());
        let mut changes = BTreeMap::new();
        for &e in system.entities() {
            changes.insert(e, read_entity(&mut inc, e).await.unwrap());
        }
        assert_eq!(inc.watermark(), Some(info.watermark.as_str()));
        assert_eq!(inc.since(), Some(w1.as_str()));
        let (mut added, mut changed, mut removed) = (0u64, 0u64, 0u64);
        for &e in system.entities() {
            let old = by_key(&before[&e]);
            let new = by_key(&after[&e]);
            let mut want_rows: Vec<Row> = after[&e]
                .rows
                .iter()
                .filter(|r| old.get(&r.key()) != Some(*r))
                .cloned()
                .collect();
            let mut want_gone: Vec<RowKey> = before[&e]
                .rows
                .iter()
                .map(Row::key)
                .filter(|k| !new.contains_key(k))
                .collect();
            added += want_rows
                .iter()
                .filter(|r| !old.contains_key(&r.key()))
                .count() as u64;
            changed += want_rows
                .iter()
                .filter(|r| old.contains_key(&r.key()))
                .count() as u64;
            removed += want_gone.len() as u64;
            let got = &changes[&e];
            let mut got_rows = got.rows.clone();
            let mut got_gone: Vec<RowKey> = got.tombstones.iter().map(|t| t.key.clone()).collect();
            assert!(got.tombstones.iter().all(|t| t.entity == e));
            for v in [&mut want_rows, &mut got_rows] {
                v.sort_by_key(Row::key);
            }
            want_gone.sort();
            got_gone.sort();
            assert_eq!(got_rows, want_rows, "{system} {e}");
            assert_eq!(got_gone, want_gone, "{system} {e}");
            assert!(got.rejects.is_empty());
        }
        assert_eq!(
            (added, changed, removed),
            (info.added, info.changed, info.removed)
        );
        assert!(added > 0 && changed > 0 && removed > 0, "{system} {info:?}");
        if system == System::Matrix {
            // 1 % of 20,480 ports.
            assert_eq!((info.added, info.removed), (205, 205));
            assert_eq!(info.changed, 410);
        }
        // Nothing changed since the current watermark.
        let mut inc = Run::incremental(&c, 300, info.watermark.clone());
        for &e in system.entities() {
            let r = read_entity(&mut inc, e).await.unwrap();
            assert!(r.rows.is_empty() && r.tombstones.is_empty(), "{e}");
        }
        // An unknown watermark is a client error (not retried).
        let mut inc = Run::incremental(&c, 300, "W999999");
        assert!(matches!(
            inc.next_page(system.entities()[0]).await,
            Err(NbiError::Http { status, .. }) if status == 400
        ));
        sim.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charsets_other_than_utf8_are_decoded() {
    let inv = inventory(&DemoSpec::default());
    for (charset, suffix) in [
        ("ISO-8859-1", " – Café"),
        ("gbk", " 开罗 é"),
        ("gb2312", " 亚历山大 مصر"),
    ] {
        let mut cfg = SimConfig::new(System::Matrix);
        cfg.charset = charset.into();
        cfg.name_suffix = suffix.into();
        let sim = NbiSim::start(cfg).await.unwrap();
        let c = client(&sim);
        let all = full_read(&c, 5000).await;
        let mut want = expected(&inv, System::Matrix, Entity::Exchanges);
        for r in &mut want {
            if let Row::Exchange(x) = r {
                x.name.push_str(suffix);
            }
        }
        assert_eq!(all[&Entity::Exchanges].rows, want, "{charset}");
        let Row::Sector(s) = &all[&Entity::Sectors].rows[1] else {
            panic!("not a sector")
        };
        assert_eq!(s.name, format!("Alexandria{suffix}"));
        sim.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_export_is_another_source() {
    // Export the eMatrix pages to files, then read them back through the
    // same Run as over HTTP.
    let sim = sim(System::Ematrix).await;
    let c = client(&sim);
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::full(&c, 4000);
    let mut n = 0;
    for &e in System::Ematrix.entities() {
        while let Some(p) = run.next_page(e).await.unwrap() {
            let keys: Vec<RowKey> = p.tombstones.iter().map(|t| t.key.clone()).collect();
            let bytes = write_page(&p.header, "gbk", &p.rows, &keys).unwrap();
            std::fs::write(dir.path().join(format!("{n:04}-{e}.xml")), bytes).unwrap();
            n += 1;
        }
    }
    // ONTs have no page in the export (their listing is empty): a run
    // cannot read them from it.
    let files = MemorySource::from_dir(System::Ematrix, dir.path()).unwrap();
    let mut r = Run::full(&files, 4000);
    assert!(matches!(
        r.next_page(Entity::Onts).await,
        Err(NbiError::Source(_))
    ));
    // Add the empty ONT page and read it all back.
    let h = PageHeader {
        system: System::Ematrix,
        entity: Entity::Onts,
        snapshot: run.snapshot().unwrap().to_string(),
        offset: 0,
        limit: 4000,
        total: 0,
        watermark: run.watermark().unwrap().to_string(),
    };
    std::fs::write(
        dir.path().join("onts.xml"),
        write_page(&h, "utf-8", &[], &[]).unwrap(),
    )
    .unwrap();
    let files = MemorySource::from_dir(System::Ematrix, dir.path()).unwrap();
    let from_files = full_read(&files, 4000).await;
    let over_http = full_read(&c, 4000).await;
    for &e in System::Ematrix.entities() {
        assert_eq!(from_files[&e].rows, over_http[&e].rows, "{e}");
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_run_pages_through_200k_ports() {
    let sim = NbiSim::start(SimConfig::new(System::Matrix).with_ports(200_000))
        .await
        .unwrap();
    let c = client(&sim);
    let expect = sim.spec().port_count();
    assert!(expect >= 200_000);
    let started = Instant::now();
    let mut run = Run::full(&c, 5000);
    let mut rows = 0u64;
    let mut pages = 0u64;
    let mut last_key = None;
    while let Some(p) = run.next_page(Entity::Ports).await.unwrap() {
        rows += p.rows.len() as u64;
        pages += 1;
        last_key = p.rows.last().map(Row::key);
        // Pages are handed over and dropped: nothing accumulates.
    }
    let took = started.elapsed();
    eprintln!("{rows} ports in {pages} pages over HTTP in {took:?}");
    assert_eq!(rows, expect);
    assert_eq!(pages, expect.div_ceil(5000));
    assert_eq!(
        last_key.unwrap().to_string(),
        format!("EX{}-D4/0/8/63", sim.spec().exchanges)
    );
    assert!(took < Duration::from_secs(120), "{took:?}");
    sim.stop().await;
}
