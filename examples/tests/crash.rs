//! Crash safety, short form (`docs/reliability.md`): the example server as
//! a separate process, 32 OM clients, SIGKILL at random moments while work
//! orders (and, with AM, activation commands) are in flight, restarts on
//! the same database; then the database is checked against every answer.
//!
//! The seed is printed; `IM_CRASH_SEED=<seed>` repeats a run. The long form
//! is `im-crash` (`cargo run --release -p im-examples --bin im-crash -- --help`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use im_examples::crash::{CrashOptions, run, seed_from_env};
use im_examples::process::{ServerProcess, start_am_sim};
use std::path::Path;

fn assert_passed(report: &im_examples::crash::CrashReport) {
    println!("{}", report.summary());
    assert!(
        report.passed(),
        "seed {:#x} broke a promise (repeat with IM_CRASH_SEED={}):\n{}\n{}",
        report.seed,
        report.seed,
        report.failures.join("\n"),
        report.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_load_keeps_every_promise() {
    let seed = seed_from_env("IM_CRASH_SEED");
    println!("seed {seed} (IM_CRASH_SEED={seed} repeats this run)");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server =
        ServerProcess::new(env!("CARGO_BIN_EXE_im-server"), dir.path()).expect("a free port");
    let opts = CrashOptions::short(seed);
    let report = run(&opts, &server, None).await.expect("the crash run");
    assert!(report.kills >= 3, "only {} kills landed", report.kills);
    assert!(
        report.recovered + report.retried > 0,
        "no call was ever cut by a kill: the kills tested nothing"
    );
    assert_eq!(report.lost, 0);
    assert_passed(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn am_delivery_killed_mid_delivery_sends_each_command_once_in_effect() {
    let seed = seed_from_env("IM_CRASH_SEED");
    println!("seed {seed} (IM_CRASH_SEED={seed} repeats this run)");
    let dir = tempfile::tempdir().expect("a temporary directory");
    // AM answers a little late, so that commands are in flight at a kill;
    // it also fails 20 commands (HTTP 503, retried) and loses the ack of 20
    // it accepted (HTTP 500: the resend meets DUPLICATE).
    let (_am, am_addr) = start_am_sim(
        Path::new(env!("CARGO_BIN_EXE_am-sim")),
        &["--delay-ms", "5", "--fail-next", "20", "--lose-acks", "20"],
    )
    .expect("am-sim started");
    let server =
        ServerProcess::new(env!("CARGO_BIN_EXE_im-server"), dir.path()).expect("a free port");
    let opts = CrashOptions {
        users_per_client: 6,
        am_url: Some(format!("http://{am_addr}")),
        ..CrashOptions::short(seed)
    };
    let report = run(&opts, &server, Some(am_addr))
        .await
        .expect("the crash run");
    assert!(report.kills >= 3, "only {} kills landed", report.kills);
    assert_eq!(
        report.am_accepted, report.commands,
        "AM accepted {} commands, the outbox holds {}",
        report.am_accepted, report.commands
    );
    assert_passed(&report);
}
