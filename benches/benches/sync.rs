//! A full Matrix sync of a large inventory from the simulator over loopback
//! into an empty database (resource log included), then a second full sync
//! of a snapshot with 1% of the ports changed — beside, in the same run, a
//! plain bulk insert of the same port rows into SQLite in one transaction
//! (the limit). Prints the times, their ratios to the limit, and the
//! process's peak resident memory (the simulator runs in this process too).
//!
//! Run: `cargo bench -p im-benches --bench sync` (1,000,000 ports; set
//! `IM_SYNC_BENCH_PORTS` for another size).

use im_core::demo::{DemoSpec, inventory};
use im_core::sync::{RunStatus, SyncKind};
use im_core::{CoreConfig, Im, Synchronous};
use im_sync::nbi::wire::System;
use im_sync::nbi::{NbiClient, NbiClientConfig, NbiSim, SimConfig};
use im_sync::sync::{SyncSettings, run_sync};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn full_sync(im: &Im, base: &str) -> (Duration, im_core::sync::SyncReport) {
    let client = NbiClient::new(NbiClientConfig::new(System::Matrix, base)).expect("client");
    let settings = SyncSettings::new(SyncKind::Full);
    let t = Instant::now();
    let report = run_sync(im, &client, &settings, &mut |_| {})
        .await
        .expect("sync");
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    (t.elapsed(), report)
}

/// Latencies of the writer-wait probe.
struct Waits(Vec<Duration>);

impl Waits {
    fn max_ms(&self) -> f64 {
        self.0.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }

    fn p99_ms(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort();
        v.get(v.len().saturating_sub(1) * 99 / 100)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

/// One writer round trip (a role that exists: a transaction that changes
/// nothing), timed.
async fn writer_round_trip(im: &Im) -> Duration {
    let t = Instant::now();
    im.ensure_role("ROLE_WRITER_PROBE", "writer probe")
        .await
        .expect("probe");
    t.elapsed()
}

async fn probe_writer(im: &Im, for_: Duration) -> Waits {
    let end = Instant::now() + for_;
    let mut v = Vec::new();
    while Instant::now() < end {
        v.push(writer_round_trip(im).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Waits(v)
}

async fn probe_until(im: Im, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Waits {
    let mut v = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        v.push(writer_round_trip(&im).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Waits(v)
}

/// The limit: the same port rows, inserted in one transaction.
fn bulk_insert(dir: &std::path::Path, spec: &DemoSpec) -> Duration {
    let inv = inventory(spec);
    let c = rusqlite::Connection::open(dir.join("bulk.db")).expect("open");
    c.pragma_update(None, "journal_mode", "WAL").expect("wal");
    c.pragma_update(None, "synchronous", "FULL").expect("sync");
    c.execute_batch(
        "CREATE TABLE port (id INTEGER PRIMARY KEY, dslam TEXT NOT NULL, frame INTEGER NOT NULL, \
         slot INTEGER NOT NULL, port INTEGER NOT NULL, state TEXT NOT NULL, \
         UNIQUE (dslam, frame, slot, port))",
    )
    .expect("schema");
    let t = Instant::now();
    let tx = c.unchecked_transaction().expect("begin");
    {
        let mut st = tx
            .prepare(
                "INSERT INTO port (dslam, frame, slot, port, state) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .expect("prepare");
        for p in &inv.ports {
            st.execute(rusqlite::params![
                p.dslam,
                p.frame,
                p.slot,
                p.port,
                p.state.as_str()
            ])
            .expect("insert");
        }
    }
    tx.commit().expect("commit");
    t.elapsed()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let ports: u64 = std::env::var("IM_SYNC_BENCH_PORTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let spec = DemoSpec::with_ports(ports);
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = NbiSim::start(SimConfig::new(System::Matrix).with_ports(ports))
            .await
            .expect("simulator");
        let mut cfg = CoreConfig::new(dir.path().join("im.db"));
        cfg.synchronous = Synchronous::Full;
        let im = Im::open(cfg).expect("open");

        let (first, r1) = full_sync(&im, &sim.base_url()).await;
        let rss1 = peak_rss_mb();
        sim.advance(0.0, 0.01, 0.0);
        // A writer-wait probe: a no-op write on the writer every 2 ms, as
        // an OM call would queue, first while nothing else runs (the usual
        // wait), then during the resync.
        let idle = probe_writer(&im, Duration::from_secs(2)).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = tokio::spawn(probe_until(im.clone(), std::sync::Arc::clone(&stop)));
        let (second, r2) = full_sync(&im, &sim.base_url()).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let during = probe.await.expect("probe");
        let rss2 = peak_rss_mb();
        im.close();
        sim.stop().await;

        let limit = bulk_insert(dir.path(), &spec);
        println!(
            "sync benchmark: {} ports ({} exchanges), synchronous=FULL",
            spec.port_count(),
            spec.exchanges
        );
        println!(
            "{:<44} {:>9} {:>12} {:>14}",
            "run", "seconds", "x the limit", "peak RSS (MB)"
        );
        println!(
            "{:<44} {:>9.2} {:>12} {:>14}",
            "limit: bulk insert of the ports, one txn",
            limit.as_secs_f64(),
            "1.0",
            "-"
        );
        println!(
            "{:<44} {:>9.2} {:>12.1} {:>14.0}",
            format!("full sync into an empty db (+{} rows)", r1.counts.added),
            first.as_secs_f64(),
            first.as_secs_f64() / limit.as_secs_f64(),
            rss1
        );
        println!(
            "{:<44} {:>9.2} {:>12.1} {:>14.0}",
            format!("full resync, 1% changed ({} rows)", r2.counts.changed),
            second.as_secs_f64(),
            second.as_secs_f64() / limit.as_secs_f64(),
            rss2
        );
        println!(
            "apply: first load {:.0} ms in one transaction, resync {:.0} ms in slices",
            r1.apply_time.as_secs_f64() * 1e3,
            r2.apply_time.as_secs_f64() * 1e3
        );
        println!(
            "writer wait of a probe call every 2 ms: idle max {:.1} ms ({} calls); during the resync max {:.1} ms, p99 {:.1} ms ({} calls): {:.1} ms longer",
            idle.max_ms(),
            idle.0.len(),
            during.max_ms(),
            during.p99_ms(),
            during.0.len(),
            during.max_ms() - idle.max_ms()
        );
    });
}
