//! Runs the AM simulator: `POST /am/commands` acks commands, answers
//! DUPLICATE for a repeated id, and can reject or fail on request;
//! `GET /am/received` lists what it received, per command id. Prints
//! what it received every few seconds and on exit (Ctrl-C or SIGTERM).
//!
//! ```text
//! cargo run -p im-examples --bin am-sim -- --listen 127.0.0.1:9300
//! cargo run -p im-examples --bin am-sim -- --fail-next 20 --reject-id CMD-WS20261204000001-1
//! ```

use clap::Parser;
use im_examples::init_logging;
use im_soap::config::LogFormat;
use im_sync::am::sim::AmSim;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "am-sim",
    version,
    about = "AM simulator for IM's activation commands"
)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9300")]
    listen: SocketAddr,
    /// Answer every command with HTTP 503 (AM down).
    #[arg(long)]
    failing: bool,
    /// Answer the next N commands with HTTP 503.
    #[arg(long, default_value_t = 0)]
    fail_next: u64,
    /// Accept the next N commands but answer HTTP 500 (lost acks).
    #[arg(long, default_value_t = 0)]
    lose_acks: u64,
    /// Reject every command.
    #[arg(long)]
    reject_all: bool,
    /// Reject the command with this id (repeatable).
    #[arg(long)]
    reject_id: Vec<String>,
    /// Delay every answer by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Seconds between progress lines (0: none).
    #[arg(long, default_value_t = 10)]
    report_every: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(LogFormat::Text, "info");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("am-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

fn report(sim: &AmSim) {
    let counts = sim.all_counts();
    let (mut ok, mut dup, mut rej, mut failed) = (0u64, 0u64, 0u64, 0u64);
    for c in counts.values() {
        ok += c.ok;
        dup += c.duplicate;
        rej += c.rejected;
        failed += c.failed;
    }
    println!(
        "am-sim: {} requests, {} ids: {ok} OK, {dup} DUPLICATE, {rej} rejected, {failed} failed (5xx)",
        sim.requests(),
        counts.len()
    );
}

async fn run(args: Args) -> ExitCode {
    let sim = match AmSim::start(args.listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("am-sim: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    sim.set_failing(args.failing);
    sim.fail_next(args.fail_next);
    sim.lose_next_acks(args.lose_acks);
    sim.set_reject_all(args.reject_all);
    for id in &args.reject_id {
        sim.reject_id(id.clone());
    }
    sim.set_delay(Duration::from_millis(args.delay_ms));
    println!("am-sim: AM listening at {}/am/commands", sim.url());
    let every = Duration::from_secs(args.report_every.max(1));
    let shutdown = im_soap::server::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(every) => {
                if args.report_every > 0 {
                    report(&sim);
                }
            }
        }
    }
    report(&sim);
    sim.stop().await;
    ExitCode::SUCCESS
}
