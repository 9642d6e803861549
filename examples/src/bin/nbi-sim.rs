//! A Matrix or eMatrix NBI simulator serving the deterministic demo
//! inventory (any size) over HTTP until Ctrl-C / SIGTERM. The wire contract
//! is `docs/nbi.md`.
//!
//! ```text
//! cargo run -p im-examples --bin nbi-sim -- --system matrix --listen 127.0.0.1:8090
//! cargo run -p im-examples --bin nbi-sim -- --system matrix --ports 2000000
//! curl 'http://127.0.0.1:8090/nbi/ports?offset=0&limit=5'
//! ```
//!
//! `--advance-every SECS` moves to a new snapshot periodically (with the
//! `--added/--changed/--removed` shares), for trying incremental runs.

use clap::{Parser, ValueEnum};
use im_examples::init_logging;
use im_soap::config::LogFormat;
use im_sync::nbi::{NbiSim, SimConfig, System};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Which system to simulate.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum SystemArg {
    /// Matrix (ADSL/VDSL).
    Matrix,
    /// eMatrix (FTTH).
    Ematrix,
}

/// Command-line options.
#[derive(Debug, Parser)]
#[command(name = "nbi-sim", version, about = "Matrix / eMatrix NBI simulator")]
struct Args {
    /// The system to simulate.
    #[arg(long, value_enum, default_value = "matrix")]
    system: SystemArg,
    /// Grow the demo inventory to at least this many DSLAM ports (default:
    /// exactly the demo inventory, 20,480 ports).
    #[arg(long)]
    ports: Option<u64>,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Charset of the pages (utf-8, iso-8859-1, gbk, …).
    #[arg(long, default_value = "utf-8")]
    charset: String,
    /// Suffix appended to display names (to exercise charsets).
    #[arg(long, default_value = "")]
    name_suffix: String,
    /// Largest page served.
    #[arg(long, default_value_t = 50_000)]
    max_limit: u64,
    /// Advance to a new snapshot every this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    advance_every: u64,
    /// Share of rows added per advance.
    #[arg(long, default_value_t = 0.001)]
    added: f64,
    /// Share of rows changed per advance.
    #[arg(long, default_value_t = 0.01)]
    changed: f64,
    /// Share of rows removed per advance.
    #[arg(long, default_value_t = 0.001)]
    removed: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(LogFormat::Text, "info");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nbi-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let system = match args.system {
        SystemArg::Matrix => System::Matrix,
        SystemArg::Ematrix => System::Ematrix,
    };
    let mut config = SimConfig::new(system);
    if let Some(p) = args.ports {
        config = config.with_ports(p);
    }
    config.listen = args.listen;
    config.charset = args.charset.clone();
    config.name_suffix = args.name_suffix.clone();
    config.max_limit = args.max_limit;
    let sim = match NbiSim::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nbi-sim: cannot start on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let cur = sim.current();
    println!(
        "{system} NBI simulator on {} ({} DSLAM ports in the spec), snapshot {} watermark {}",
        sim.base_url(),
        sim.spec().port_count(),
        cur.snapshot,
        cur.watermark
    );
    let shutdown = im_soap::server::shutdown_signal();
    tokio::pin!(shutdown);
    if args.advance_every > 0 {
        let mut tick = tokio::time::interval(Duration::from_secs(args.advance_every));
        tick.tick().await;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {
                    let s = sim.advance(args.added, args.changed, args.removed);
                    println!(
                        "advanced to {} / {}: {} added, {} changed, {} removed",
                        s.snapshot, s.watermark, s.added, s.changed, s.removed
                    );
                }
            }
        }
    } else {
        shutdown.await;
    }
    println!("stopping ({} requests served)", sim.requests());
    sim.stop().await;
    ExitCode::SUCCESS
}
