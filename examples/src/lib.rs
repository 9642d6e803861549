//! Shared pieces of the runnable programs (`im-server`, `om-client`,
//! `im-loadgen`, `im-crash`): logging set-up, sample work orders on the
//! demo inventory, child processes ([`process`]) and the crash harnesses
//! ([`crash`], [`sync_crash`]). The programs themselves are thin: parse
//! options, wire the crates together, run.

pub mod crash;
pub mod process;
pub mod sync_crash;

use im_core::model::{CoverType, OperType, ServiceType};
use im_soap::config::LogFormat;
use im_soap::{WorkItem, WorkOrder};
use tracing_subscriber::EnvFilter;

/// The demo OM account's login.
pub const DEMO_USER: &str = im_core::demo::DEMO_OM_USER;
/// The demo OM account's password.
pub const DEMO_PASSWORD: &str = im_core::demo::DEMO_OM_PASSWORD;
/// The default service URL of a local server.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/services/EgyptWorkSheetAll";

/// Installs the global tracing subscriber: `RUST_LOG` when set, else
/// `level`; text or JSON lines on standard error.
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: log files and journals get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging not initialised: {e}");
    }
}

/// The demo exchange number `n` (1-based) as its code and popid
/// (`EX01`/`19601`, `EX100`/`196100`).
pub fn demo_exchange(n: u32) -> (String, String) {
    (format!("EX{n:02}"), format!("196{n:02}"))
}

/// An Install ADSL work order on demo exchange `exchange` (1-based), the
/// port picked by IM.
pub fn install_adsl(
    flow_id: &str,
    user: &str,
    exchange: u32,
    user_login: &str,
    password: &str,
) -> WorkOrder {
    let (code, popid) = demo_exchange(exchange);
    WorkOrder::new(user_login, password, flow_id, popid).item(
        WorkItem::new(
            OperType::Install,
            Some(CoverType::Adsl),
            Some(ServiceType::Adsl),
            user,
        )
        .field("serviceName", "ADSL New Subscriber")
        .field("Password", "pppoe-demo")
        .field("AreaCode", "2")
        .field("Serviceno", "FBB22341290")
        .field("AccountNumber", format!("ACC-{user}"))
        .field("CustomerName", "أحمد حسن 工单")
        .field("Mobile", "01001234567")
        .attr("ExchangeID", code)
        .attr("Speed", "16M"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges() {
        assert_eq!(demo_exchange(1), ("EX01".into(), "19601".into()));
        assert_eq!(demo_exchange(100), ("EX100".into(), "196100".into()));
    }

    #[test]
    fn install_form_carries_the_exchange() {
        let f = install_adsl("F1", "u@x", 3, DEMO_USER, DEMO_PASSWORD).to_form();
        assert_eq!(f.get("popid"), "19603");
        assert_eq!(f.items[0].attrs[0].value, "EX03");
    }
}
