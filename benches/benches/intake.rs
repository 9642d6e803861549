//! Accepted Install ADSL work orders per second into a SQLite file with
//! `synchronous=FULL`, through the core API with 64 concurrent submitters,
//! beside two baselines measured in the same run on the same schema and
//! inventory: the same writes with one rusqlite transaction per order (what a
//! naive design gets) and with all orders in one transaction (the limit).
//!
//! Run: `cargo bench -p im-benches --bench intake`. Criterion prints each as
//! elements (orders) per second; the ratios are the point.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use im_benches::install_adsl;
use im_core::demo::{DemoSpec, inventory};
use im_core::secrets::Secrets;
use im_core::{CoreConfig, ErrorCode, Im, Synchronous};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The allocator the example server uses too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SUBMITTERS: u64 = 64;
const PORTS: u64 = 1_500_000;

/// The writer's page cache, for the core and the baselines alike
/// (`IM_BENCH_CACHE_MB`, default: the core's default).
fn cache_mb() -> u32 {
    std::env::var("IM_BENCH_CACHE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CoreConfig::new("x").writer_cache_mb)
}

fn open_core(dir: &std::path::Path, spec: &DemoSpec) -> Im {
    let mut cfg = CoreConfig::new(dir.join("im.db"));
    cfg.synchronous = match std::env::var("IM_BENCH_SYNC").as_deref() {
        Ok("off") => Synchronous::Off,
        Ok("normal") => Synchronous::Normal,
        _ => Synchronous::Full,
    };
    cfg.writer_cache_mb = cache_mb();
    if let Ok(v) = std::env::var("IM_BENCH_BG_CHECKPOINT") {
        cfg.background_checkpoint = v == "1" || v == "true";
    }
    let im = Im::open(cfg).expect("open");
    im.load_inventory(inventory(spec)).expect("inventory");
    im.set_om_account(im_core::demo::DEMO_OM_USER, im_core::demo::DEMO_OM_PASSWORD)
        .expect("account");
    im
}

/// The writes of one accepted Install ADSL, as plain SQL on one connection,
/// with the same payloads the core stores (the request with its protected
/// values encrypted, the content fingerprint, the service's fields), but
/// none of its checks.
/// Per DSLAM, where the search for a free port starts (as the core's writer
/// keeps it): every earlier port is held.
type PickFrom = std::collections::HashMap<i64, (i64, i64, i64)>;

fn raw_install(
    c: &Connection,
    n: u64,
    exchanges: u32,
    secrets: &Secrets,
    pick_from: &mut PickFrom,
) -> rusqlite::Result<()> {
    let form = install_adsl(n, exchanges);
    let request = im_core::intake::stored_request(&form, secrets);
    let fingerprint = im_core::intake::fingerprint(&form, secrets);
    let password = secrets.encrypt("pppoe-secret");
    let mobile = secrets.encrypt("01001234567");
    let fields: std::collections::BTreeMap<String, String> = form.items[0]
        .fields
        .iter()
        .chain(&form.items[0].attrs)
        .filter(|f| !im_core::intake::is_protected(&f.name))
        .map(|f| (im_core::names::canonical(&f.name), f.value.clone()))
        .collect();
    let fields = serde_json::to_string(&fields).unwrap_or_default();
    let ex = (n % u64::from(exchanges)) + 1;
    let popid = form.get("popid").to_string();
    let user = form.items[0]
        .fields
        .iter()
        .find(|f| f.name == "UserName")
        .map(|f| f.value.clone())
        .unwrap_or_default();
    let at = "2026-12-04T00:00:00Z";
    let account = form.items[0]
        .fields
        .iter()
        .find(|f| f.name == "AccountNumber")
        .map(|f| f.value.clone())
        .unwrap_or_default();
    let _ = ex;
    let ex_id: i64 = c
        .prepare_cached("SELECT id FROM exchange WHERE popid = ?1 AND removed = 0")?
        .query_row([&popid], |r| r.get(0))?;
    let dslams: Vec<i64> = c
        .prepare_cached("SELECT id FROM dslam WHERE exchange_id = ?1 AND removed = 0 AND technology IN ('ADSL','ADSL+VDSL') ORDER BY name")?
        .query_map([ex_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut port = None;
    for d in dslams {
        let from = pick_from.get(&d).copied().unwrap_or((-1, -1, -1));
        let found = c
            .prepare_cached("SELECT id, frame, slot, port FROM port WHERE dslam_id = ?1 AND (frame, slot, port) >= (?2, ?3, ?4) AND pickable = 1 ORDER BY frame, slot, port LIMIT 1")?
            .query_row(params![d, from.0, from.1, from.2], |r| {
                Ok((r.get::<_, i64>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
            })
            .optional()?;
        if let Some((id, pos)) = found {
            pick_from.insert(d, pos);
            port = Some(id);
            break;
        }
        pick_from.insert(d, (i64::MAX, i64::MAX, i64::MAX));
    }
    let port = port.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    let _existing: Option<i64> = c
        .prepare_cached("SELECT id FROM service WHERE user_name = ?1 AND service_type = 'ADSL'")?
        .query_row([&user], |r| r.get(0))
        .optional()?;
    // Plain inserts and last_insert_rowid: the cheapest form of these writes
    // (RETURNING and upserts cost SQLite a statement journal per row).
    c.prepare_cached("INSERT INTO customer (account_number, name, mobile_enc, created, updated) VALUES (?1, 'Ahmed Hassan', ?3, ?2, ?2)")?
        .execute(params![account, at, mobile])?;
    let cust = c.last_insert_rowid();
    c.prepare_cached("INSERT INTO service (user_name, service_type, cover_type, state, customer_id, popid, exchange_id, speed_kbps, password_enc, fields, created, updated) VALUES (?1, 'ADSL', 'ADSL', 'ACTIVE', ?2, ?3, ?4, 16384, ?6, ?7, ?5, ?5)")?
        .execute(params![user, cust, popid, ex_id, at, password, fields])?;
    let svc = c.last_insert_rowid();
    c.prepare_cached(
        "UPDATE port SET service_id = ?2, updated = ?3 WHERE id = ?1 AND service_id IS NULL",
    )?
    .execute(params![port, svc, at])?;
    let task_no = format!("WS20261204{n:06}");
    c.prepare_cached("INSERT INTO task (task_no, flow_id, fingerprint, popid, state, request, items, account, created, updated) VALUES (?1, ?2, ?5, ?3, 'RECEIVED', ?6, '[{\"seq\":1,\"opertype\":\"Install\",\"serviceType\":\"ADSL\",\"state\":\"ACTIVE\"}]', 'OM', ?4, ?4)")?
        .execute(params![task_no, form.get("flowId"), popid, at, fingerprint.as_slice(), request])?;
    let task = c.last_insert_rowid();
    c.prepare_cached("INSERT INTO command (cmd_id, task_id, seq, service_id, type, service_type, params, state, created, updated) VALUES (?1, ?2, 1, ?3, 'ACTIVATE', 'ADSL', '[[\"UserName\",\"x\"],[\"port\",\"EX01-D1/0/1/0\"],[\"dslamIp\",\"10.1.0.1\"],[\"speed\",\"16384\"]]', 'PENDING', ?4, ?4)")?
        .execute(params![format!("CMD-{task_no}-1"), task, svc, at])?;
    Ok(())
}

fn raw_conn(path: &std::path::Path) -> Connection {
    let c = Connection::open(path).expect("open raw");
    c.pragma_update(None, "journal_mode", "WAL").expect("wal");
    c.pragma_update(None, "synchronous", "FULL").expect("sync");
    c.pragma_update(None, "foreign_keys", true).expect("fk");
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .expect("qpsg");
    c.pragma_update(None, "cache_size", -i64::from(cache_mb()) * 1024)
        .expect("cache");
    c.pragma_update(None, "wal_autocheckpoint", 10_000)
        .expect("checkpoint");
    c.set_prepared_statement_cache_capacity(64);
    c
}

fn bench(c: &mut Criterion) {
    let spec = DemoSpec::with_ports(PORTS);
    let exchanges = spec.exchanges;
    let dir = tempfile::tempdir().expect("tempdir");

    let mut group = c.benchmark_group("install_adsl");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(10));

    // The core: group commit, 64 concurrent submitters.
    let core_dir = dir.path().join("core");
    let im = open_core(&core_dir, &spec);
    let next = AtomicU64::new(0);
    let bench_start = Instant::now();
    group.bench_function("core_64_submitters", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..SUBMITTERS {
                    let share = iters / SUBMITTERS + u64::from(t < iters % SUBMITTERS);
                    let (im, next) = (&im, &next);
                    s.spawn(move || {
                        for _ in 0..share {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            let o = im.submit_blocking(install_adsl(n, exchanges));
                            assert_eq!(o.error_code, ErrorCode::Success, "{o:?}");
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    let stats = im.writer_stats();
    eprintln!(
        "core: {} orders in {} batches (mean batch {:.1}); writer busy {:.0}% of {:.1} s, {:.1} µs per order",
        stats.jobs,
        stats.batches,
        stats.jobs as f64 / stats.batches.max(1) as f64,
        100.0 * stats.busy.as_secs_f64() / bench_start.elapsed().as_secs_f64(),
        bench_start.elapsed().as_secs_f64(),
        stats.busy.as_secs_f64() * 1e6 / stats.jobs.max(1) as f64,
    );
    im.close();
    drop(im);

    // Baselines on their own copy of the schema and inventory.
    let raw_dir = dir.path().join("raw");
    open_core(&raw_dir, &spec).close();
    let conn = raw_conn(&raw_dir.join("im.db"));
    let secrets = Secrets::from_key([7; 32]);
    let raw_next = AtomicU64::new(0);
    let pick_from = std::cell::RefCell::new(PickFrom::new());
    group.bench_function("baseline_txn_per_order", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let n = raw_next.fetch_add(1, Ordering::Relaxed);
                let tx = conn.unchecked_transaction().expect("begin");
                raw_install(&tx, n, exchanges, &secrets, &mut pick_from.borrow_mut())
                    .expect("install");
                tx.commit().expect("commit");
            }
            start.elapsed()
        })
    });
    group.bench_function("baseline_one_txn_all_orders", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let tx = conn.unchecked_transaction().expect("begin");
            for _ in 0..iters {
                let n = raw_next.fetch_add(1, Ordering::Relaxed);
                raw_install(&tx, n, exchanges, &secrets, &mut pick_from.borrow_mut())
                    .expect("install");
            }
            tx.commit().expect("commit");
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
