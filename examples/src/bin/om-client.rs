//! An OM client that sends sample work orders to a running IM server:
//! Install ADSL, Install FTTH + IPTV (one call), Query, Modify, Delete, and
//! a duplicate of the first call. Prints each outcome; exits non-zero when
//! an answer is not the expected one.
//!
//! ```text
//! cargo run -p im-examples --bin om-client [-- --url http://127.0.0.1:8080/services/EgyptWorkSheetAll]
//! ```

use clap::Parser;
use im_core::model::{CoverType, OperType, ServiceType};
use im_core::retry::{Interface, RetryPolicies};
use im_core::{ErrorCode, Outcome};
use im_examples::{DEFAULT_URL, DEMO_PASSWORD, DEMO_USER, init_logging, install_adsl};
use im_soap::config::LogFormat;
use im_soap::{ClientConfig, OmClient, WorkItem, WorkOrder};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(name = "om-client", version, about = "Sends sample work orders to IM")]
struct Args {
    /// The service URL.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// OM account login.
    #[arg(long, default_value = DEMO_USER)]
    user: String,
    /// OM account password.
    #[arg(long, env = "IM_OM_PASSWORD", default_value = DEMO_PASSWORD, hide_default_value = true)]
    password: String,
    /// Request charset (gb2312, gbk, gb18030, utf-8).
    #[arg(long, default_value = "gb2312")]
    charset: String,
    /// Directory of retry-policy files (its `om.toml` is used); default:
    /// the built-in `om` policy.
    #[arg(long)]
    retry_dir: Option<PathBuf>,
    /// Time allowed for one attempt, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Prefix of flowIds and UserNames (default: derived from the clock, so
    /// each run uses new ones).
    #[arg(long)]
    prefix: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(LogFormat::Text, "warn");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("om-client: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("om-client: some answers were not the expected ones");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("om-client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print(step: &str, order: &WorkOrder, o: &Outcome) {
    println!(
        "{step:<22} flowId={:<28} returnCode={} errorCode={:<6} taskNo={:<18} {}",
        order.flow_id,
        o.return_code(),
        o.error_code.code(),
        o.task_no.as_deref().unwrap_or("-"),
        o.error_desc
    );
    if let Some(d) = o.duplicate_content {
        println!("{:<22} duplicateContent={}", "", d.as_str());
    }
    for item in &o.items {
        println!(
            "{:<22} item {} {} {} {} errorCode={} port={} ontSn={} vlan={} state={}",
            "",
            item.seq,
            item.opertype,
            item.service_type,
            item.user_name,
            item.error_code
                .map_or(String::new(), |c| c.code().to_string()),
            item.port,
            item.ont_sn,
            item.vlan,
            item.state
        );
        for s in &item.services {
            println!(
                "{:<24} service {} {} state={} customer={} speed={} port={} ontSn={} olt={} vlan={}",
                "",
                s.user_name,
                s.service_type,
                s.state,
                s.customer_name,
                s.speed,
                s.port,
                s.ont_sn,
                s.olt,
                s.vlan
            );
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let mut config = ClientConfig::new(args.url.clone());
    config.charset = args.charset.clone();
    config.timeout = Duration::from_secs(args.timeout.max(1));
    if let Some(dir) = &args.retry_dir {
        let policies = RetryPolicies::load_dir(dir).map_err(|e| e.to_string())?;
        config.retry = *policies.get(Interface::Om);
    }
    let client = OmClient::new(config).map_err(|e| e.to_string())?;
    let prefix = args.prefix.clone().unwrap_or_else(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("OMC{ms}")
    });
    let adsl_user = format!("{}-adsl@demo.example", prefix.to_lowercase());
    let ftth_user = format!("{}-ftth@demo.example", prefix.to_lowercase());
    // A distinct ONT serial per run: eight hex digits from the prefix.
    let serial = format!(
        "HWTC{:08X}",
        prefix
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
    );
    let item = |op: OperType, cover: CoverType, service: ServiceType, user: &str| {
        WorkItem::new(op, Some(cover), Some(service), user)
    };

    let install = install_adsl(
        &format!("{prefix}-1"),
        &adsl_user,
        1,
        &args.user,
        &args.password,
    );
    let ftth = WorkOrder::new(&args.user, &args.password, format!("{prefix}-2"), "19601")
        .item(
            item(
                OperType::Install,
                CoverType::Ftth,
                ServiceType::Ftth,
                &ftth_user,
            )
            .field("AccountNumber", format!("ACC-{ftth_user}"))
            .field("CustomerName", "مريم علي")
            .attr("CompoundId", "CP01")
            .attr("ONTSN", serial.clone())
            .attr("Speed", "100M"),
        )
        .item(
            item(
                OperType::Install,
                CoverType::Ftth,
                ServiceType::Iptv,
                &ftth_user,
            )
            .field("AccountNumber", format!("ACC-{ftth_user}"))
            .field("CustomerName", "مريم علي")
            .attr("IPTVContent", "Premium")
            .attr("IPTVPassword", "tv-demo"),
        );
    let query = WorkOrder::new(&args.user, &args.password, format!("{prefix}-3"), "19601")
        .item(WorkItem::new(OperType::Query, None, None, &adsl_user));
    let modify = WorkOrder::new(&args.user, &args.password, format!("{prefix}-4"), "19601").item(
        item(
            OperType::Modify,
            CoverType::Adsl,
            ServiceType::Adsl,
            &adsl_user,
        )
        .attr("Speed", "32M"),
    );
    let delete =
        WorkOrder::new(&args.user, &args.password, format!("{prefix}-5"), "19601").item(item(
            OperType::Delete,
            CoverType::Adsl,
            ServiceType::Adsl,
            &adsl_user,
        ));

    let steps: [(&str, &WorkOrder, ErrorCode); 6] = [
        ("Install ADSL", &install, ErrorCode::Success),
        ("Install FTTH + IPTV", &ftth, ErrorCode::Success),
        ("Query", &query, ErrorCode::Success),
        ("Modify ADSL speed", &modify, ErrorCode::Success),
        ("Delete ADSL", &delete, ErrorCode::Success),
        ("Duplicate of step 1", &install, ErrorCode::DuplicateFlowId),
    ];
    let mut all_ok = true;
    for (step, order, want) in steps {
        let outcome = client
            .send(order)
            .await
            .map_err(|e| format!("{step}: {e}"))?;
        print(step, order, &outcome);
        if outcome.error_code != want {
            all_ok = false;
            println!("{:<22} expected errorCode {}", "", want.code());
        }
    }
    Ok(all_ok)
}
