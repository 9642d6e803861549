//! The crash harnesses, runnable at any size (`docs/reliability.md`):
//!
//! ```text
//! # the server killed mid-load (32 clients, 5 kills: the CI short form)
//! cargo run --release -p im-examples --bin im-crash -- server
//! # the long form: more clients, more subscribers, more kills, several rounds
//! cargo run --release -p im-examples --bin im-crash -- server \
//!     --clients 64 --users 100 --kills 20 --rounds 10
//! # the same with AM delivery (am-sim as a separate process)
//! cargo run --release -p im-examples --bin im-crash -- am --rounds 5
//! # a sync killed while it reads and applies (1M ports)
//! cargo run --release -p im-examples --bin im-crash -- sync --ports 1000000 --apply-kills 5
//! ```
//!
//! Each round prints its seed and figures; `--seed` (or `IM_CRASH_SEED`)
//! repeats a round. The programs it starts (`im-server`, `am-sim`,
//! `nbi-sim`, `im-sync`) are taken from its own directory (build them
//! with `cargo build --release -p im-examples --bins`). Exits 1 when a
//! promise was broken.

use clap::{Parser, Subcommand};
use im_examples::crash::{CrashOptions, Rng, parse_seed, run, seed_from_env};
use im_examples::process::{ServerProcess, sibling_program, start_am_sim};
use im_examples::sync_crash::{self, SyncCrashOptions};
use std::process::ExitCode;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "im-crash",
    version,
    about = "IM crash harnesses: SIGKILL the server, the AM delivery or a sync run and check every promise"
)]
struct Args {
    /// Seed of the first round (default: from the clock).
    #[arg(long, env = "IM_CRASH_SEED", global = true)]
    seed: Option<String>,
    /// Rounds, each on a fresh database with the next seed.
    #[arg(long, default_value_t = 1, global = true)]
    rounds: u32,
    /// What to kill.
    #[command(subcommand)]
    what: What,
}

/// The harnesses.
#[derive(Debug, Subcommand)]
enum What {
    /// The server, killed while work orders are in flight.
    Server(Load),
    /// The server with AM delivery (am-sim), killed while commands are in flight.
    Am {
        /// The load.
        #[command(flatten)]
        load: Load,
        /// am-sim's delay of every answer, in ms.
        #[arg(long, default_value_t = 5)]
        am_delay_ms: u64,
        /// Commands am-sim answers HTTP 503 (IM retries them).
        #[arg(long, default_value_t = 20)]
        am_fail_next: u64,
        /// Commands am-sim accepts but answers HTTP 500 (a lost ack).
        #[arg(long, default_value_t = 20)]
        am_lose_acks: u64,
    },
    /// A sync run (im-sync against nbi-sim), killed while it reads and applies.
    Sync {
        /// DSLAM ports of the first snapshot (the second has twice as many).
        #[arg(long, default_value_t = 30_000)]
        ports: u64,
        /// Kills during each apply.
        #[arg(long, default_value_t = 3)]
        apply_kills: usize,
        /// Lease of a run in seconds (a dead run holds its system this long).
        #[arg(long, default_value_t = 3)]
        lease_secs: u64,
    },
}

/// The OM load of the server harnesses.
#[derive(Debug, clap::Args)]
struct Load {
    /// Concurrent OM clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Subscribers per client (each a script of 1 to 5 calls).
    #[arg(long, default_value_t = 10)]
    users: usize,
    /// SIGKILLs per round.
    #[arg(long, default_value_t = 5)]
    kills: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut seed = match args.seed.as_deref().map(parse_seed) {
        Some(Some(s)) => s,
        Some(None) => {
            eprintln!("im-crash: --seed takes a number (decimal or 0x…)");
            return ExitCode::from(2);
        }
        None => seed_from_env("IM_CRASH_SEED"),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("im-crash: {e}");
            return ExitCode::from(2);
        }
    };
    let mut broken = 0u32;
    for round in 1..=args.rounds {
        println!(
            "round {round}/{}: seed {seed} (--seed {seed} repeats it)",
            args.rounds
        );
        let result = match &args.what {
            What::Server(load) => runtime.block_on(server_round(seed, load, None)),
            What::Am {
                load,
                am_delay_ms,
                am_fail_next,
                am_lose_acks,
            } => runtime.block_on(server_round(
                seed,
                load,
                Some([*am_delay_ms, *am_fail_next, *am_lose_acks]),
            )),
            What::Sync {
                ports,
                apply_kills,
                lease_secs,
            } => sync_round(seed, *ports, *apply_kills, *lease_secs),
        };
        match result {
            Ok((summary, failures)) => {
                println!("{summary}");
                if !failures.is_empty() {
                    broken += 1;
                    println!("BROKEN ({} findings):", failures.len());
                    for f in &failures {
                        println!("  {f}");
                    }
                }
            }
            Err(e) => {
                eprintln!("im-crash: round {round}: {e}");
                return ExitCode::from(2);
            }
        }
        seed = Rng::new(seed).next_u64();
    }
    println!("{} rounds, {} broke a promise", args.rounds, broken);
    if broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn server_round(
    seed: u64,
    load: &Load,
    am_faults: Option<[u64; 3]>,
) -> Result<(String, Vec<String>), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let server =
        ServerProcess::new(sibling_program("im-server"), dir.path()).map_err(|e| e.to_string())?;
    let mut opts = CrashOptions {
        clients: load.clients,
        users_per_client: load.users,
        kills: load.kills,
        ..CrashOptions::short(seed)
    };
    let am = match am_faults {
        Some([delay, fail, lose]) => {
            let (delay, fail, lose) = (delay.to_string(), fail.to_string(), lose.to_string());
            let (p, addr) = start_am_sim(
                &sibling_program("am-sim"),
                &[
                    "--delay-ms",
                    &delay,
                    "--fail-next",
                    &fail,
                    "--lose-acks",
                    &lose,
                ],
            )?;
            opts.am_url = Some(format!("http://{addr}"));
            Some((p, addr))
        }
        None => None,
    };
    let report = run(&opts, &server, am.as_ref().map(|(_, a)| *a)).await?;
    let mut failures = report.failures.clone();
    if report.lost > 0 {
        failures.push(format!("{} acknowledged calls lost", report.lost));
    }
    if am.is_some() && report.am_accepted != report.commands {
        failures.push(format!(
            "AM accepted {} commands, the outbox holds {}",
            report.am_accepted, report.commands
        ));
    }
    Ok((report.summary(), failures))
}

fn sync_round(
    seed: u64,
    ports: u64,
    apply_kills: usize,
    lease_secs: u64,
) -> Result<(String, Vec<String>), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let report = sync_crash::run(&SyncCrashOptions {
        seed,
        nbi_sim: sibling_program("nbi-sim"),
        im_sync: sibling_program("im-sync"),
        dir: dir.path().to_path_buf(),
        ports,
        apply_kills,
        lease_secs,
    })?;
    Ok((report.summary(), report.failures))
}
