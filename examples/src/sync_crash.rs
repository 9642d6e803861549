//! The sync crash harness: the `im-sync` runner as a separate process,
//! killed with SIGKILL while it reads and while it applies a run from the
//! NBI simulator (`nbi-sim`, a separate process too); after every kill the
//! inventory must be exactly as before the run or exactly the full
//! snapshot, never between, the database must pass `integrity_check`, the
//! dead run must keep its system until its lease expires, and the next run
//! must take the lease over, record the dead run `FAILED` and succeed
//! (`docs/reliability.md`).
//!
//! Two scenarios, each against a reference: the first load of an empty
//! inventory (simulator A), and a resync to a larger snapshot with renamed
//! rows (simulator B: added and changed rows). The reference "after" state
//! is what an uninterrupted run makes from the same "before" state; states
//! are compared through a digest of the Matrix tables by natural key, the
//! resource log's length and the succeeded runs' watermarks.

use crate::crash::Rng;
use crate::process::{Proc, start_listening};
use rusqlite::{Connection, OpenFlags};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How a sync crash run is made.
#[derive(Debug, Clone)]
pub struct SyncCrashOptions {
    /// Seed of the kill points' jitter.
    pub seed: u64,
    /// The `nbi-sim` program.
    pub nbi_sim: PathBuf,
    /// The `im-sync` program.
    pub im_sync: PathBuf,
    /// A working directory (databases are made there).
    pub dir: PathBuf,
    /// DSLAM ports of the first snapshot (the second has twice as many).
    pub ports: u64,
    /// Kills during the apply, per scenario, spread over its measured length
    /// (one more kill lands while the pages are read).
    pub apply_kills: usize,
    /// Lease of a run, in seconds (a dead run holds the system this long).
    pub lease_secs: u64,
}

/// The state of the inventory of a database, by digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Digest of every inventory table by natural key (not the row ids or
    /// the update times), the resource log's length and the succeeded runs.
    pub digest: u64,
    /// Inventory rows in it (both maps).
    pub rows: u64,
}

/// One kill and what it left.
#[derive(Debug, Clone)]
pub struct Kill {
    /// `first load` or `resync`.
    pub scenario: &'static str,
    /// `reading` or `apply+N ms`.
    pub moment: String,
    /// `before` or `after`.
    pub found: &'static str,
}

/// What a sync crash run did and found.
#[derive(Debug, Clone, Default)]
pub struct SyncCrashReport {
    /// The seed.
    pub seed: u64,
    /// Every kill.
    pub kills: Vec<Kill>,
    /// Per scenario: inventory rows after, read time and apply time of the
    /// reference run.
    pub references: Vec<(&'static str, u64, Duration, Duration)>,
    /// Runs refused while a dead run's lease was held.
    pub busy_refusals: u64,
    /// Dead runs recorded `FAILED` after a takeover.
    pub taken_over: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Every broken promise found (empty when the run passed).
    pub failures: Vec<String>,
}

impl SyncCrashReport {
    /// The figures, for the console.
    pub fn summary(&self) -> String {
        let mut s = format!("seed {:#x}: ", self.seed);
        for (name, rows, read, apply) in &self.references {
            s.push_str(&format!(
                "{name}: {rows} rows, read {:.2} s, apply {:.2} s; ",
                read.as_secs_f64(),
                apply.as_secs_f64()
            ));
        }
        let before = self.kills.iter().filter(|k| k.found == "before").count();
        s.push_str(&format!(
            "{} kills ({} left the inventory as before, {} fully after, 0 between): {}; \
             {} runs refused while a dead run held the lease, {} dead runs taken over; {:.1} s",
            self.kills.len(),
            before,
            self.kills.len() - before,
            self.kills
                .iter()
                .map(|k| format!("{} {} → {}", k.scenario, k.moment, k.found))
                .collect::<Vec<_>>()
                .join(", "),
            self.busy_refusals,
            self.taken_over,
            self.elapsed.as_secs_f64()
        ));
        s
    }
}

/// The inventory tables by natural key (parents by their keys, not ids),
/// then the resource log's length and the succeeded runs.
const STATE_QUERIES: [&str; 14] = [
    "SELECT domain, code, name, removed FROM sector ORDER BY domain, code",
    "SELECT z.domain, z.code, z.name, s.code, z.removed FROM zone z \
     JOIN sector s ON s.id = z.sector_id ORDER BY z.domain, z.code",
    "SELECT c.domain, c.code, c.name, z.code, c.removed FROM city c \
     JOIN zone z ON z.id = c.zone_id ORDER BY c.domain, c.code",
    "SELECT e.code, e.name, c.code, e.popid, e.area_code, e.removed FROM exchange e \
     LEFT JOIN city c ON c.id = e.city_id ORDER BY e.code",
    "SELECT d.name, e.code, d.ip, d.model, d.technology, d.removed FROM dslam d \
     JOIN exchange e ON e.id = d.exchange_id ORDER BY d.name",
    "SELECT d.name, p.frame, p.slot, p.port, p.state, p.service_id, p.removed FROM port p \
     JOIN dslam d ON d.id = p.dslam_id ORDER BY d.name, p.frame, p.slot, p.port",
    "SELECT o.name, e.code, o.ip, o.model, o.removed FROM olt o \
     JOIN exchange e ON e.id = o.exchange_id ORDER BY o.name",
    "SELECT o.name, p.frame, p.slot, p.port, p.max_onts, p.state, p.removed FROM pon_port p \
     JOIN olt o ON o.id = p.olt_id ORDER BY o.name, p.frame, p.slot, p.port",
    "SELECT c.code, c.name, e.code, z.domain, z.code, c.removed FROM compound c \
     JOIN exchange e ON e.id = c.exchange_id LEFT JOIN zone z ON z.id = c.zone_id ORDER BY c.code",
    "SELECT c.code, o.name, p.frame, p.slot, p.port FROM compound_pon cp \
     JOIN compound c ON c.id = cp.compound_id JOIN pon_port p ON p.id = cp.pon_port_id \
     JOIN olt o ON o.id = p.olt_id ORDER BY 1, 2, 3, 4, 5",
    "SELECT n.serial, o.name, p.frame, p.slot, p.port, n.ont_id, n.model, n.state, n.origin, \
     n.service_id, n.removed FROM ont n JOIN pon_port p ON p.id = n.pon_port_id \
     JOIN olt o ON o.id = p.olt_id ORDER BY n.serial",
    "SELECT o.name, v.vlan_id, v.purpose, v.state, v.removed FROM vlan v \
     JOIN olt o ON o.id = v.olt_id ORDER BY o.name, v.vlan_id",
    "SELECT count(*) FROM resource_log",
    "SELECT system, count(*), group_concat(watermark) FROM sync_run WHERE status = 'SUCCEEDED' \
     GROUP BY system ORDER BY system",
];

/// The state of the database at `path`, and `integrity_check`'s verdict.
pub fn state(path: &Path) -> rusqlite::Result<(State, String)> {
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    let mut h = DefaultHasher::new();
    let mut count = 0u64;
    for (q, sql) in STATE_QUERIES.iter().enumerate() {
        let mut st = db.prepare(sql)?;
        let n = st.column_count();
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            for i in 0..n {
                format!("{:?}", r.get_ref(i)?).hash(&mut h);
            }
            0xFFu8.hash(&mut h);
            if q < STATE_QUERIES.len() - 2 {
                count += 1;
            }
        }
        sql.hash(&mut h);
    }
    Ok((
        State {
            digest: h.finish(),
            rows: count,
        },
        integrity,
    ))
}

/// Opens the database with IM (which finishes a decided sync run) and
/// closes it again.
fn reopen(path: &Path) -> Result<(), String> {
    let im = im_core::Im::open(im_core::CoreConfig::new(path))
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    im.close();
    Ok(())
}

/// The runs of the log: (id, status, error).
fn runs(path: &Path) -> rusqlite::Result<Vec<(i64, String, String)>> {
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut st = db.prepare("SELECT id, status, coalesce(error, '') FROM sync_run ORDER BY id")?;
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}

/// When the lease of `system` expires (Unix ms), if it is held.
fn lease_expiry(path: &Path, system: &str) -> rusqlite::Result<Option<i64>> {
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut st = db.prepare("SELECT expires FROM sync_lock WHERE system = ?1")?;
    let mut rows = st.query([system])?;
    rows.next()?.map(|r| r.get(0)).transpose()
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Copies a database with its write-ahead log and key file (of a database
/// no process has open).
fn copy_db(from: &Path, to: &Path) -> std::io::Result<()> {
    for ext in ["db", "db-wal", "key"] {
        let (f, t) = (from.with_extension(ext), to.with_extension(ext));
        let _ = std::fs::remove_file(&t);
        if f.exists() {
            std::fs::copy(&f, &t)?;
        }
    }
    let _ = std::fs::remove_file(to.with_extension("db-shm"));
    Ok(())
}

/// A running `nbi-sim`.
struct Sim {
    _proc: Proc,
    system: &'static str,
    url: String,
}

/// Starts `nbi-sim` for `system` with `args`.
fn start_nbi_sim(program: &Path, system: &'static str, args: &[String]) -> Result<Sim, String> {
    let mut cmd = Command::new(program);
    cmd.args(["--system", system, "--listen", "127.0.0.1:0"])
        .args(args);
    let (p, addr) = start_listening(
        "nbi-sim",
        cmd,
        "simulator on",
        "/nbi/sectors?offset=0&limit=1",
    )?;
    Ok(Sim {
        _proc: p,
        system,
        url: format!("http://{addr}"),
    })
}

/// An `im-sync --once` run of the simulator's full snapshot into `db`.
fn sync_proc(opts: &SyncCrashOptions, db: &Path, sim: &Sim) -> Result<Proc, String> {
    let mut cmd = Command::new(&opts.im_sync);
    cmd.arg("--database")
        .arg(db)
        .args([
            "--system", sim.system, "--full", "--once", "--url", &sim.url,
        ])
        .args(["--lease-secs", &opts.lease_secs.to_string()]);
    Proc::spawn("im-sync", cmd).map_err(|e| e.to_string())
}

const APPLYING: &str = "applying the changes";

/// An uninterrupted run: (exit code, time to the apply line, apply time).
fn complete_run(
    opts: &SyncCrashOptions,
    db: &Path,
    sim: &Sim,
) -> Result<(Option<i32>, Duration, Duration, String), String> {
    let t = Instant::now();
    let mut p = sync_proc(opts, db, sim)?;
    let read = p
        .wait_line(Duration::from_secs(300), |l| l.contains(APPLYING))
        .map(|_| t.elapsed());
    let status = p
        .wait_exit(Duration::from_secs(300))
        .ok_or_else(|| format!("im-sync did not end:\n{}", p.tail()))?;
    let total = t.elapsed();
    let read = read.unwrap_or(total);
    Ok((status.code(), read, total.saturating_sub(read), p.tail()))
}

/// Runs both scenarios.
pub fn run(opts: &SyncCrashOptions) -> Result<SyncCrashReport, String> {
    let t0 = Instant::now();
    let mut report = SyncCrashReport {
        seed: opts.seed,
        ..SyncCrashReport::default()
    };
    let mut rng = Rng::new(opts.seed);
    let empty = opts.dir.join("empty.db");
    {
        let im = im_core::Im::open(im_core::CoreConfig::new(&empty))
            .map_err(|e| format!("creating {}: {e}", empty.display()))?;
        im.close();
    }
    let ports = |n: u64| vec!["--ports".to_string(), n.to_string()];
    let sim = start_nbi_sim(&opts.nbi_sim, "matrix", &ports(opts.ports))?;
    let after_a = opts.dir.join("after-a.db");
    scenario(
        opts,
        &mut report,
        &mut rng,
        "first load",
        &empty,
        &after_a,
        &sim,
    )?;
    drop(sim);
    let mut renamed = ports(opts.ports * 2);
    renamed.extend(["--name-suffix".to_string(), " v2".to_string()]);
    let sim = start_nbi_sim(&opts.nbi_sim, "matrix", &renamed)?;
    let after_b = opts.dir.join("after-b.db");
    scenario(
        opts,
        &mut report,
        &mut rng,
        "resync",
        &after_a,
        &after_b,
        &sim,
    )?;
    drop(sim);
    // eMatrix names the exchanges Matrix brought.
    let sim = start_nbi_sim(&opts.nbi_sim, "ematrix", &ports(opts.ports * 2))?;
    let after_c = opts.dir.join("after-c.db");
    scenario(
        opts,
        &mut report,
        &mut rng,
        "eMatrix load",
        &after_b,
        &after_c,
        &sim,
    )?;
    report.elapsed = t0.elapsed();
    Ok(report)
}

/// One scenario: the reference run from `before` into `after`, then runs
/// from `before` killed at several moments, each checked, then a run that
/// completes.
#[allow(clippy::too_many_arguments)]
fn scenario(
    opts: &SyncCrashOptions,
    report: &mut SyncCrashReport,
    rng: &mut Rng,
    name: &'static str,
    before: &Path,
    after: &Path,
    sim: &Sim,
) -> Result<(), String> {
    let db_err = |e: rusqlite::Error| format!("{name}: reading the database: {e}");
    copy_db(before, after).map_err(|e| e.to_string())?;
    let (code, read, apply, tail) = complete_run(opts, after, sim)?;
    if code != Some(0) {
        return Err(format!(
            "{name}: the reference run failed ({code:?}):\n{tail}"
        ));
    }
    let (s_before, _) = state(before).map_err(db_err)?;
    let (s_after, _) = state(after).map_err(db_err)?;
    if s_before == s_after {
        return Err(format!("{name}: the snapshot changes nothing; no test"));
    }
    report.references.push((name, s_after.rows, read, apply));
    let work = opts.dir.join(format!("{}.db", name.replace(' ', "-")));
    copy_db(before, &work).map_err(|e| e.to_string())?;
    // Kill moments: one while the pages are read, then spread over the apply.
    let mut moments: Vec<Option<Duration>> = vec![None];
    for k in 0..opts.apply_kills {
        // Within the first three quarters of the measured time, which also
        // holds the process's exit after the commit.
        let share = 0.75 * (k as f64 + 0.2 + 0.6 * (rng.range(0, 1000) as f64 / 1000.0))
            / opts.apply_kills as f64;
        moments.push(Some(apply.mul_f64(share)));
    }
    let mut dead_runs = Vec::new();
    for moment in moments {
        let started = Instant::now();
        let mut p = sync_proc(opts, &work, sim)?;
        let label = match moment {
            None => {
                // Half-way through the reading (if this run reads much
                // faster than the reference, at the start of its apply).
                let at = read.mul_f64(0.5);
                let early = p.wait_line(at, |l| l.contains(APPLYING)).is_some();
                format!(
                    "{}+{} ms",
                    if early {
                        "apply (reading ended early)"
                    } else {
                        "reading"
                    },
                    started.elapsed().as_millis()
                )
            }
            Some(d) => {
                p.wait_line(Duration::from_secs(300), |l| l.contains(APPLYING))
                    .ok_or_else(|| format!("{name}: no apply line:\n{}", p.tail()))?;
                std::thread::sleep(d);
                format!("apply+{} ms", d.as_millis())
            }
        };
        // A run that ended before the kill must have left the full snapshot.
        let label = match p.exited() {
            Some(s) => format!("{label} (too late: it had ended, {s})"),
            None => label,
        };
        p.sigkill();
        // What the next IM process to open the database (the server, the
        // next run) does first: finish a run that was decided before the
        // kill. The promise is about the inventory from then on.
        reopen(&work)?;
        let (s, integrity) = state(&work).map_err(db_err)?;
        if integrity != "ok" {
            report
                .failures
                .push(format!("{name} {label}: integrity_check: {integrity}"));
        }
        let found = if s == s_before {
            "before"
        } else if s == s_after {
            "after"
        } else {
            report.failures.push(format!(
                "{name} {label}: the inventory is neither as before nor as after \
                 ({} rows; before {}, after {})",
                s.rows, s_before.rows, s_after.rows
            ));
            "between"
        };
        report.kills.push(Kill {
            scenario: name,
            moment: label.clone(),
            found,
        });
        let log = runs(&work).map_err(db_err)?;
        let Some((id, status, _)) = log.last().cloned() else {
            report
                .failures
                .push(format!("{name} {label}: the run is not in the run log"));
            continue;
        };
        match (found, status.as_str()) {
            ("before" | "between", "RUNNING") => {
                dead_runs.push(id);
                // The dead run keeps its system until its lease expires
                // (unless it ran past the lease, which a long apply may).
                let left = lease_expiry(&work, sim.system)
                    .map_err(db_err)?
                    .map_or(0, |e| e - unix_ms());
                if left > 1500 && found == "before" {
                    let (code, _, _, tail) = complete_run(opts, &work, sim)?;
                    if code == Some(2) && tail.contains("already running") {
                        report.busy_refusals += 1;
                    } else {
                        report.failures.push(format!(
                            "{name} {label}: a run started while the dead run's lease was \
                             held ({left} ms left; exit {code:?}):\n{tail}"
                        ));
                        copy_db(before, &work).map_err(|e| e.to_string())?;
                        dead_runs.clear();
                    }
                }
                if let Some(exp) = lease_expiry(&work, sim.system).map_err(db_err)? {
                    let wait = u64::try_from(exp - unix_ms()).unwrap_or(0);
                    std::thread::sleep(Duration::from_millis(wait + 50));
                }
            }
            ("after", "SUCCEEDED") => {
                // Committed just before the kill: start from before again
                // (with its run log).
                copy_db(before, &work).map_err(|e| e.to_string())?;
                dead_runs.clear();
            }
            _ => report.failures.push(format!(
                "{name} {label}: the inventory is {found} and the run is {status}"
            )),
        }
    }
    // A run after the last kill takes the lease over and completes.
    let (code, _, _, tail) = complete_run(opts, &work, sim)?;
    if code != Some(0) {
        report.failures.push(format!(
            "{name}: the run after the kills failed ({code:?}):\n{tail}"
        ));
    }
    let (s, integrity) = state(&work).map_err(db_err)?;
    if s != s_after || integrity != "ok" {
        report.failures.push(format!(
            "{name}: after the kills and a complete run, the inventory differs from \
             the reference ({} rows, {} expected; integrity {integrity})",
            s.rows, s_after.rows
        ));
    }
    for (id, status, error) in runs(&work).map_err(db_err)? {
        if dead_runs.contains(&id) {
            if status == "FAILED" && error.contains("lease expired") {
                report.taken_over += 1;
            } else {
                report.failures.push(format!(
                    "{name}: dead run {id} is recorded {status} ({error})"
                ));
            }
        } else if status == "RUNNING" {
            report
                .failures
                .push(format!("{name}: run {id} is still RUNNING"));
        }
    }
    Ok(())
}
