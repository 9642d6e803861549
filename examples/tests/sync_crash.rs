//! Sync crash safety, short form (`docs/reliability.md`): `im-sync` as a
//! separate process, killed with SIGKILL while it reads and at several
//! moments of its apply, on a first load and on a resync; the inventory is
//! always as before the run or fully after it, the dead run holds its
//! system until its lease expires, and the next run takes over and
//! completes. `IM_CRASH_SEED=<seed>` repeats a run; the long form is
//! `im-crash sync --ports 1000000`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use im_examples::crash::seed_from_env;
use im_examples::sync_crash::{SyncCrashOptions, run};

#[test]
fn sync_killed_mid_apply_leaves_the_inventory_before_or_after() {
    let seed = seed_from_env("IM_CRASH_SEED");
    println!("seed {seed} (IM_CRASH_SEED={seed} repeats this run)");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let opts = SyncCrashOptions {
        seed,
        nbi_sim: env!("CARGO_BIN_EXE_nbi-sim").into(),
        im_sync: env!("CARGO_BIN_EXE_im-sync").into(),
        dir: dir.path().to_path_buf(),
        ports: 30_000,
        apply_kills: 3,
        lease_secs: 3,
    };
    let report = run(&opts).expect("the sync crash run");
    println!("{}", report.summary());
    assert!(
        report.failures.is_empty(),
        "seed {seed}: {}\n{}",
        report.failures.join("\n"),
        report.summary()
    );
    assert_eq!(report.kills.len(), 12, "three scenarios of four kills");
    let during_apply_before = report
        .kills
        .iter()
        .filter(|k| k.moment.starts_with("apply") && k.found == "before")
        .count();
    assert!(
        during_apply_before >= 3,
        "only {during_apply_before} kills landed inside an apply: {}",
        report.summary()
    );
    assert!(
        report.busy_refusals >= 2 && report.taken_over >= 1,
        "{}",
        report.summary()
    );
}
