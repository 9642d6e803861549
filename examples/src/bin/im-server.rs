//! The IM SOAP server: EgyptWorkSheetAll on an embedded SQLite database.
//!
//! ```text
//! cargo run --release -p im-examples --bin im-server [-- --config im.toml]
//! ```
//!
//! Without a configuration file it listens on 127.0.0.1:8080, keeps its
//! database in `./data/im.db` (key file `./data/im.key`) and loads the demo
//! inventory and demo OM account on first start. See `docs/configuration.md`
//! and `docs/operations.md`.

use clap::Parser;
use im_core::demo::{DEMO_OM_PASSWORD, DEMO_OM_USER, DemoSpec};
use im_core::retry::Interface;
use im_core::{ErrorCode, Form, FormItem, Im};
use im_examples::init_logging;
use im_soap::{Server, ServerConfig};
use im_sync::am::{DeliveryWorker, WorkerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
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
    let core_config = config.core_config();
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
    let am_url = config.am_url.clone();
    let am_poll_interval = config.am_poll_interval.0;
    let server = Server::bind(config, im.clone())
        .await
        .map_err(|e| e.to_string())?;
    let url = server.url();
    info!(url = %url, "listening");
    println!("IM is listening on {url}");
    println!(
        "WSDL: {url}?wsdl   health: {}   metrics: {}",
        sibling(&url, "/health"),
        sibling(&url, "/metrics")
    );
    println!("Try a work order (Install ADSL on the demo inventory):\n");
    println!("{}", curl_example(&url));
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
        if let Some(w) = worker {
            let stats = w.stop().await;
            info!(?stats, "AM delivery stopped");
        }
    };
    server.serve(shutdown).await;
    info!("stopped");
    Ok(())
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
