//! Benchmarks of IM (see `benches/`): run with `cargo bench -p im-benches`.
//!
//! This library holds what the benchmarks share: the work orders they send.

use im_core::{Form, FormItem};

/// An accepted-by-construction Install ADSL work order: unique flowId and
/// UserName from `n`, spread over `exchanges` POPs of the demo inventory,
/// port auto-picked.
pub fn install_adsl(n: u64, exchanges: u32) -> Form {
    let ex = (n % u64::from(exchanges.max(1))) + 1;
    let code = format!("EX{ex:02}");
    let user = format!("bench{n}@tedata.net.eg");
    Form::default()
        .field("authusername", im_core::demo::DEMO_OM_USER)
        .field("authpassword", im_core::demo::DEMO_OM_PASSWORD)
        // OM numbers its flows like this: time-ordered, 17 digits.
        .field("flowId", format!("{}", 17_808_971_600_000_000u64 + n))
        .field("popid", format!("196{ex:02}"))
        .item(
            FormItem::default()
                .field("opertype", "Install")
                .field("coverType", "ADSL")
                .field("serviceType", "ADSL")
                .field("serviceName", "ADSL New Subscriber")
                .field("UserName", user)
                .field("Password", "pppoe-secret")
                .field("AreaCode", "2")
                .field("Serviceno", format!("FBB{n}"))
                .field("CustomerOrderID", format!("2000{n}"))
                .field("AccountNumber", format!("{}", 100_000_000 + n))
                .field("CustomerName", "Ahmed Hassan")
                .field("Mobile", "01001234567")
                .attr("ExchangeID", code)
                .attr("Speed", "16M"),
        )
}
