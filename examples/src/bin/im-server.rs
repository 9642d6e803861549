//! The IM SOAP server: EgyptWorkSheetAll on an embedded SQLite database.
//!
//! ```text
//! cargo run --release -p im-examples --bin im-server [-- --config im.toml]
//! ```
//!
//! Without a configuration file it listens on 127.0.0.1:8080, keeps its
//! database in `./data/im.db` (key file `./data/im.key`) and loads the demo
//! inventory and demo OM account on first start. It also serves the
//! operators' JSON API under `/api/v1/` (`docs/api.md`); no operator account
//! exists until one is made with `im-admin create-admin`. See
//! `docs/configuration.md` and `docs/operations.md`.

use clap::Parser;
use im_core::demo::{DEMO_OM_PASSWORD, DEMO_OM_USER, DemoSpec};
use im_core::retry::Interface;
use im_core::sync::SyncReport;
use im_core::sync::{SyncKind, SyncSystem};
use im_core::{ErrorCode, Form, FormItem, Im};
use im_examples::init_logging;
use im_soap::api::{SyncRefusal, SyncStarter};
use im_soap::{Server, ServerConfig};
use im_sync::am::{DeliveryWorker, WorkerConfig};
use im_sync::nbi::{NbiClient, NbiClientConfig, System};
use im_sync::sync::{
    Progress, RunError, Scheduler, SyncSettings, SystemSchedule, core_system, run_sync,
};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use tracing::{error, info, warn};

/// mimalloc: the server's memory is allocated on one thread and freed on
/// another (requests, the core's writer); it keeps that fast and the
/// resident size flat.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "im-server",
    version,
    about = "IM: the EgyptWorkSheetAll SOAP server"
)]
struct Args {
    /// TOML configuration file (every setting optional).
    #[arg(long, short, env = "IM_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `listen` (e.g. 0.0.0.0:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Overrides `database`.
    #[arg(long)]
    database: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => match ServerConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("im-server: {e}");
                return ExitCode::from(2);
            }
        },
        None => ServerConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(db) = args.database {
        config.database = db;
    }
    init_logging(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("im-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: ServerConfig) -> Result<(), String> {
    let policies = im_core::retry::RetryPolicies::load(config.retry_policy_dir.as_deref())
        .map_err(|e| e.to_string())?;
    if let Some(dir) = &config.retry_policy_dir {
        info!(dir = %dir.display(), "retry policies loaded");
    }
    info!(
        database = %config.database.display(),
        key_file = %config.key_file().display(),
        synchronous = config.store.synchronous.pragma(),
        "opening the store"
    );
    let mut core_config = config.core_config();
    core_config.login.ad_retry = *policies.get(Interface::Ad);
    let im = tokio::task::spawn_blocking(move || Im::open(core_config))
        .await
        .map_err(|e| format!("opening the store: {e}"))?
        .map_err(|e| format!("opening the store: {e}"))?;
    if config.demo_data {
        let demo_ports = config.demo_ports;
        let core = im.clone();
        let marker = demo_marker(&config.database);
        let installed =
            tokio::task::spawn_blocking(move || install_demo(&core, demo_ports, &marker))
                .await
                .map_err(|e| format!("demo data: {e}"))??;
        if installed {
            info!(
                ports = demo_ports,
                "demo inventory and demo OM account installed"
            );
        }
    }
    if demo_password_in_use(&im).await {
        warn!(
            user = DEMO_OM_USER,
            "the demo OM password is in use: set a real one before production"
        );
    }
    let api_enabled = config.api.enabled;
    let sources = sync_sources(&config, &policies)?;
    let sync_starter = api_sync(&im, &config, &sources);
    let scheduler = sync_scheduler(&im, &config, &sources);
    let am_url = config.am_url.clone();
    let am_poll_interval = config.am_poll_interval.0;
    let server = Server::bind(config, im.clone())
        .await
        .map_err(|e| e.to_string())?;
    if let Some(starter) = sync_starter {
        server.set_sync_starter(starter);
    }
    let url = server.url();
    info!(url = %url, "listening");
    if let Some(addr) = server.health_addr() {
        info!(%addr, "health and metrics also on their own listener");
    }
    println!("IM is listening on {url}");
    println!(
        "WSDL: {url}?wsdl   health: {}   metrics: {}",
        sibling(&url, "/health"),
        sibling(&url, "/metrics")
    );
    println!("Try a work order (Install ADSL on the demo inventory):\n");
    println!("{}", curl_example(&url));
    if api_enabled {
        let api = sibling(&url, im_soap::api::PREFIX);
        println!("\nOperators' API: {api}/… (docs/api.md). Create an administrator first:");
        println!("  cargo run -p im-examples --bin im-admin -- create-admin admin");
        println!("then, for example:  curl -s -u admin {api}/tasks?limit=5");
    }
    // Activation: deliver the outbox to AM when configured. The worker stops
    // first on shutdown, before the server drains and closes the store.
    let worker = match &am_url {
        Some(url) => {
            let mut wc = WorkerConfig::new(url.clone());
            wc.retry = *policies.get(Interface::Am);
            wc.poll_interval = am_poll_interval;
            let w =
                DeliveryWorker::start(im.clone(), wc).map_err(|e| format!("AM delivery: {e}"))?;
            info!(am = %url, "delivering activation commands to AM");
            Some(w)
        }
        None => {
            warn!("am_url is not set: activation commands stay in the outbox");
            None
        }
    };
    let shutdown = async move {
        im_soap::server::shutdown_signal().await;
        if let Some(s) = scheduler {
            s.stop().await;
            info!("scheduled sync stopped");
        }
        if let Some(w) = worker {
            let stats = w.stop().await;
            info!(?stats, "AM delivery stopped");
        }
    };
    server.serve(shutdown).await;
    info!("stopped");
    Ok(())
}

/// Runs started through the operators' API (`POST /api/v1/sync/runs`)
/// against the sources of `[sync]`; at most one at a time per system from
/// this process (the core's lease also keeps other processes' runs apart).
struct ApiSync {
    im: Im,
    clients: Vec<(SyncSystem, NbiClient)>,
    config: im_core::sync::SyncConfig,
    page_limit: u32,
    running: Arc<Mutex<HashSet<SyncSystem>>>,
    runtime: tokio::runtime::Handle,
}

impl SyncStarter for ApiSync {
    fn start(
        &self,
        system: SyncSystem,
        kind: SyncKind,
        requested_by: &str,
    ) -> Result<String, SyncRefusal> {
        let Some(client) = self
            .clients
            .iter()
            .find(|(s, _)| *s == system)
            .map(|(_, c)| c.clone())
        else {
            return Err(SyncRefusal::NotConfigured);
        };
        let claimed = self.running.lock().is_ok_and(|mut r| r.insert(system));
        if !claimed {
            return Err(SyncRefusal::Busy(format!(
                "a {} run is in progress",
                system.as_str()
            )));
        }
        let (im, running, who) = (
            self.im.clone(),
            Arc::clone(&self.running),
            requested_by.to_string(),
        );
        let (config, page_limit) = (self.config.clone(), self.page_limit);
        self.runtime.spawn(async move {
            let settings = SyncSettings {
                config,
                page_limit,
                ..SyncSettings::new(kind)
            };
            match run_sync(&im, &client, &settings, &mut |_: &Progress| {}).await {
                Ok(r) => info!(
                    system = system.as_str(),
                    run = r.run_id,
                    status = r.status.as_str(),
                    requested_by = %who,
                    "sync run started through the API ended"
                ),
                Err(e) => warn!(system = system.as_str(), requested_by = %who, error = %e, "sync run started through the API failed"),
            }
            if let Ok(mut r) = running.lock() {
                r.remove(&system);
            }
        });
        Ok(format!(
            "a {} {} run was started; see GET /api/v1/sync/runs",
            system.as_str(),
            kind.as_str()
        ))
    }
}

/// An NBI client for each system of `[sync]` that has a URL.
fn sync_sources(
    config: &ServerConfig,
    policies: &im_core::retry::RetryPolicies,
) -> Result<Vec<(System, NbiClient)>, String> {
    let mut clients = Vec::new();
    for (system, url) in [
        (System::Matrix, &config.sync.matrix_url),
        (System::Ematrix, &config.sync.ematrix_url),
    ] {
        if let Some(url) = url {
            let mut cc = NbiClientConfig::new(system, url.clone());
            cc.retry = *policies.get(system.interface());
            let client = NbiClient::new(cc).map_err(|e| format!("sync source {url}: {e}"))?;
            info!(system = system.as_str(), url = %url, "sync runs may be started through the API");
            clients.push((system, client));
        }
    }
    Ok(clients)
}

/// The sync starter of `[sync]`, when a source is configured.
fn api_sync(
    im: &Im,
    config: &ServerConfig,
    sources: &[(System, NbiClient)],
) -> Option<Arc<dyn SyncStarter>> {
    if sources.is_empty() {
        return None;
    }
    Some(Arc::new(ApiSync {
        im: im.clone(),
        clients: sources
            .iter()
            .map(|(s, c)| (core_system(*s), c.clone()))
            .collect(),
        config: config.sync.core_config(),
        page_limit: config.sync.page_limit,
        running: Arc::new(Mutex::new(HashSet::new())),
        runtime: tokio::runtime::Handle::current(),
    }))
}

/// Scheduled runs of the systems of `[sync]` that have an interval.
fn sync_scheduler(
    im: &Im,
    config: &ServerConfig,
    sources: &[(System, NbiClient)],
) -> Option<Scheduler> {
    let sy = &config.sync;
    let schedules: Vec<SystemSchedule<NbiClient>> = sources
        .iter()
        .filter_map(|(system, client)| {
            let (full, incremental) = match system {
                System::Matrix => (sy.matrix_full_every, sy.matrix_incremental_every),
                System::Ematrix => (sy.ematrix_full_every, sy.ematrix_incremental_every),
            };
            if full.is_none() && incremental.is_none() {
                return None;
            }
            info!(
                system = system.as_str(),
                full_every = ?full.map(|d| d.to_string()),
                incremental_every = ?incremental.map(|d| d.to_string()),
                "scheduled sync"
            );
            Some(SystemSchedule {
                source: Arc::new(client.clone()),
                full_every: full.map(|d| d.get()),
                incremental_every: incremental.map(|d| d.get()),
                settings: SyncSettings {
                    config: sy.core_config(),
                    page_limit: sy.page_limit,
                    ..SyncSettings::new(SyncKind::Full)
                },
            })
        })
        .collect();
    if schedules.is_empty() {
        return None;
    }
    let report = Arc::new(|system: System, r: &Result<SyncReport, RunError>| match r {
        Ok(r) => info!(
            system = system.as_str(),
            run = r.run_id,
            kind = r.kind.as_str(),
            status = r.status.as_str(),
            added = r.counts.added,
            changed = r.counts.changed,
            removed = r.counts.removed,
            rejected = r.counts.rejected,
            conflicts = r.counts.conflicts,
            error = r.error.as_deref().unwrap_or(""),
            "scheduled sync run ended"
        ),
        Err(e) => warn!(system = system.as_str(), error = %e, "scheduled sync run failed"),
    });
    Some(Scheduler::start(im.clone(), schedules, Some(report)))
}

/// The file that marks a large demo load in progress: `<database>.demo-loading`.
fn demo_marker(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".demo-loading");
    PathBuf::from(name)
}

/// Loads the demo inventory (`ports` DSLAM ports) and the demo OM account
/// into an empty database.
///
/// A large inventory is loaded in parts, one transaction each; `marker`
/// exists from before the first part until after the last, so that a load
/// cut short by a crash is resumed at the next start (the parts are upserts
/// by natural key: loading one again changes nothing).
fn install_demo(im: &Im, ports: u64, marker: &Path) -> Result<bool, String> {
    let small = DemoSpec::default();
    if ports <= small.port_count() {
        return im_core::demo::install_if_empty(im).map_err(|e| format!("demo data: {e}"));
    }
    let resume = marker.exists();
    if !resume && !im.inventory_is_empty().map_err(|e| e.to_string())? {
        return Ok(false);
    }
    let mark = |path: &Path| -> std::io::Result<()> {
        std::fs::File::create(path)?.sync_all()?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    mark(marker).map_err(|e| format!("demo data: {}: {e}", marker.display()))?;
    let spec = DemoSpec::with_ports(ports);
    info!(
        exchanges = spec.exchanges,
        ports = spec.port_count(),
        resume,
        "generating a large demo inventory"
    );
    // An OM account set up before the first start (im-admin) is kept.
    if !im.account_exists(DEMO_OM_USER).map_err(|e| e.to_string())? {
        im.set_om_account(DEMO_OM_USER, DEMO_OM_PASSWORD)
            .map_err(|e| format!("demo data: {e}"))?;
    }
    // In parts, so that the server never holds the whole inventory in memory.
    for part in im_core::demo::inventory_in_parts(&spec, 50_000) {
        im.load_inventory(part)
            .map_err(|e| format!("demo data: {e}"))?;
    }
    std::fs::remove_file(marker).map_err(|e| format!("demo data: {}: {e}", marker.display()))?;
    Ok(true)
}

/// Whether the demo OM credentials are accepted, asked through the public
/// API with a Query (which changes nothing and claims no flowId).
async fn demo_password_in_use(im: &Im) -> bool {
    let form = Form::default()
        .field("authusername", DEMO_OM_USER)
        .field("authpassword", DEMO_OM_PASSWORD)
        .field("flowId", "startup-credential-check")
        .field("popid", "0")
        .item(
            FormItem::default()
                .field("opertype", "Query")
                .field("UserName", "startup-credential-check"),
        );
    let outcome = im.submit(form).await;
    !matches!(
        outcome.error_code,
        ErrorCode::AuthFailed | ErrorCode::Internal
    )
}

fn sibling(service_url: &str, path: &str) -> String {
    let base = service_url
        .strip_suffix(im_soap::wsdl::SERVICE_PATH)
        .unwrap_or(service_url);
    format!("{base}{path}")
}

fn curl_example(url: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        r#"curl -s -H 'Content-Type: text/xml; charset=utf-8' -H 'SOAPAction: ""' --data-binary @- {url} <<'EOF'
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ser="http://service.ws.family.plugins.inspur.com">
 <soapenv:Body><ser:EgyptWorkSheetAll><ser:in0><![CDATA[<form>
  <authusername>{DEMO_OM_USER}</authusername><authpassword>{DEMO_OM_PASSWORD}</authpassword>
  <flowId>CURL-{secs}</flowId><popid>19601</popid>
  <bussInfo><bussItem>
   <opertype>Install</opertype><coverType>ADSL</coverType><serviceType>ADSL</serviceType>
   <UserName>curl-{secs}@demo.example</UserName><AccountNumber>1001</AccountNumber>
   <CustomerName>&#1571;&#1581;&#1605;&#1583; Hassan</CustomerName>
   <attrList><attr name="ExchangeID">EX01</attr><attr name="Speed">16M</attr></attrList>
  </bussItem></bussInfo>
 </form>]]></ser:in0></ser:EgyptWorkSheetAll></soapenv:Body>
</soapenv:Envelope>
EOF"#
    )
}
