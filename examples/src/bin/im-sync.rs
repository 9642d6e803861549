//! The sync runner: a full or incremental inventory sync of Matrix or
//! eMatrix into an IM database, once or on a schedule (`docs/sync.md`).
//!
//! ```text
//! cargo run -p im-examples --bin im-sync -- --database data/im.db \
//!     --system matrix --url http://127.0.0.1:8090 --full --once
//! cargo run -p im-examples --bin im-sync -- --database data/im.db \
//!     --system ematrix --url http://127.0.0.1:8091 --incremental \
//!     --incremental-every 300 --full-every 86400
//! ```
//!
//! `--once` runs one sync, prints a progress line every few seconds, one
//! when every page is read and the apply starts, and a summary table at the
//! end, and exits 0 when the run succeeded (1 when it
//! failed or was aborted, 2 when it could not start). Without `--once` it
//! runs scheduled until Ctrl-C / SIGTERM, starting with the chosen kind.

use clap::{ArgGroup, Parser, ValueEnum};
use im_core::retry::RetryPolicies;
use im_core::sync::{SyncConfig, SyncKind, SyncReport};
use im_core::{CoreConfig, Im};
use im_examples::init_logging;
use im_soap::config::LogFormat;
use im_sync::nbi::{NbiClient, NbiClientConfig, System};
use im_sync::sync::{Progress, RunError, Scheduler, SyncSettings, SystemSchedule, run_sync};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which system to sync.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum SystemArg {
    /// Matrix (ADSL/VDSL).
    Matrix,
    /// eMatrix (FTTH).
    Ematrix,
}

/// Command-line options.
#[derive(Debug, Parser)]
#[command(name = "im-sync", version, about = "IM inventory sync runner")]
#[command(group(ArgGroup::new("kind").required(true).args(["full", "incremental"])))]
struct Args {
    /// The IM database (created when absent).
    #[arg(long)]
    database: PathBuf,
    /// The system to sync.
    #[arg(long, value_enum)]
    system: SystemArg,
    /// The system's NBI base URL.
    #[arg(long)]
    url: String,
    /// A full run (every row of a snapshot).
    #[arg(long)]
    full: bool,
    /// An incremental run (changes since the last good run).
    #[arg(long)]
    incremental: bool,
    /// One run, then exit (default: scheduled).
    #[arg(long)]
    once: bool,
    /// Override the bad-row and mass-removal guards.
    #[arg(long)]
    force: bool,
    /// Scheduled: seconds between full runs (0: none after the first).
    #[arg(long, default_value_t = 86_400)]
    full_every: u64,
    /// Scheduled: seconds between incremental runs (0: none).
    #[arg(long, default_value_t = 900)]
    incremental_every: u64,
    /// Rows asked per page.
    #[arg(long, default_value_t = 5000)]
    page_limit: u32,
    /// Share of rejected rows that aborts a run.
    #[arg(long, default_value_t = 0.01)]
    max_bad_share: f64,
    /// Share of live rows a full run may remove before it aborts.
    #[arg(long, default_value_t = 0.10)]
    max_removal_share: f64,
    /// Days an ONT registered by OM may stay unlisted by eMatrix.
    #[arg(long, default_value_t = 7)]
    ont_grace_days: u64,
    /// Changes applied per write transaction when a diff is larger (OM
    /// calls are served between two slices).
    #[arg(long, default_value_t = 256)]
    apply_slice: usize,
    /// Seconds of the run's lease on its system: renewed while pages
    /// arrive; a run whose process died holds the system until it expires.
    #[arg(long, default_value_t = 600)]
    lease_secs: u64,
    /// Directory of retry-policy files (`matrix.toml`, `ematrix.toml`).
    #[arg(long)]
    retry_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(LogFormat::Text, "warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("im-sync: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(args))
}

fn print_summary(r: &SyncReport) {
    let c = &r.counts;
    println!();
    println!("{:<12} {}", "system", r.system);
    println!("{:<12} {}", "kind", r.kind.as_str());
    println!("{:<12} {}", "run", r.run_id);
    println!(
        "{:<12} {}",
        "snapshot",
        r.snapshot.as_deref().unwrap_or("-")
    );
    println!("{:<12} {}", "status", r.status.as_str());
    println!("{:<12} {:>10}", "added", c.added);
    println!("{:<12} {:>10}", "changed", c.changed);
    println!("{:<12} {:>10}", "removed", c.removed);
    println!("{:<12} {:>10}", "rejected", c.rejected);
    println!("{:<12} {:>10}", "conflicts", c.conflicts);
    println!("{:<12} {:>10}", "rows read", r.elements);
    println!("{:<12} {:>9.2}s", "duration", r.duration.as_secs_f64());
    println!("{:<12} {:>9.3}s", "apply", r.apply_time.as_secs_f64());
    if let Some(e) = &r.error {
        println!("{:<12} {e}", "error");
    }
    for x in r.rejects.iter().take(10) {
        println!(
            "rejected     <{}> {}: {}",
            x.element,
            x.key.as_deref().unwrap_or("?"),
            x.reason
        );
    }
    for x in &r.conflicts {
        println!(
            "conflict     {} {} ({} {}): {}",
            x.resource, x.code, x.service_type, x.user_name, x.reason
        );
    }
}

async fn run(args: Args) -> ExitCode {
    let system = match args.system {
        SystemArg::Matrix => System::Matrix,
        SystemArg::Ematrix => System::Ematrix,
    };
    let policies = match RetryPolicies::load(args.retry_dir.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("im-sync: {e}");
            return ExitCode::from(2);
        }
    };
    let mut cc = NbiClientConfig::new(system, args.url.clone());
    cc.retry = *policies.get(system.interface());
    let client = match NbiClient::new(cc) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("im-sync: {e}");
            return ExitCode::from(2);
        }
    };
    let db = args.database.clone();
    let im = match tokio::task::spawn_blocking(move || Im::open(CoreConfig::new(db))).await {
        Ok(Ok(im)) => im,
        Ok(Err(e)) => {
            eprintln!("im-sync: {}: {e}", args.database.display());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("im-sync: {e}");
            return ExitCode::from(2);
        }
    };
    let mut settings = SyncSettings::new(if args.full {
        SyncKind::Full
    } else {
        SyncKind::Incremental
    });
    settings.force = args.force;
    settings.page_limit = args.page_limit;
    settings.config = SyncConfig {
        max_bad_share: args.max_bad_share,
        max_removal_share: args.max_removal_share,
        ont_grace: Duration::from_secs(args.ont_grace_days * 86_400),
        apply_slice: args.apply_slice.max(1),
        lease: Duration::from_secs(args.lease_secs.max(1)),
        ..SyncConfig::default()
    };
    let code = if args.once {
        let mut last = Instant::now();
        let mut progress = |p: &Progress| {
            if p.applying {
                eprintln!(
                    "{}: all pages read ({} rows); applying the changes",
                    p.system, p.rows
                );
            } else if last.elapsed() >= Duration::from_secs(2) {
                last = Instant::now();
                eprintln!(
                    "{} {}: {}/{} ({} rows read{})",
                    p.system,
                    p.entity,
                    p.entity_offset,
                    p.entity_total,
                    p.rows,
                    if p.restarts > 0 {
                        format!(", {} restarts", p.restarts)
                    } else {
                        String::new()
                    }
                );
            }
        };
        match run_sync(&im, &client, &settings, &mut progress).await {
            Ok(r) => {
                print_summary(&r);
                if r.status == im_core::sync::RunStatus::Succeeded {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("im-sync: {e}");
                ExitCode::from(2)
            }
        }
    } else {
        let every = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        let schedule = SystemSchedule {
            source: Arc::new(client),
            full_every: every(args.full_every),
            incremental_every: if args.incremental {
                every(args.incremental_every).or(Some(Duration::from_secs(900)))
            } else {
                every(args.incremental_every)
            },
            settings,
        };
        let report = Arc::new(|_: System, r: &Result<SyncReport, RunError>| match r {
            Ok(r) => print_summary(r),
            Err(e) => eprintln!("im-sync: {e}"),
        });
        println!("im-sync: scheduled {system} runs against {}", args.url);
        let scheduler = Scheduler::start(im.clone(), vec![schedule], Some(report));
        im_soap::server::shutdown_signal().await;
        scheduler.stop().await;
        ExitCode::SUCCESS
    };
    let _ = tokio::task::spawn_blocking(move || im.close()).await;
    code
}
