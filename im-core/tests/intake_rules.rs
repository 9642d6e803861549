//! The judging rules of the OM → IM contract (`om-im-worksheet.md` §3, §4
//! Install, §6), through the public API: the order of checks, tolerant
//! reading of names and enumerations, required fields and value formats, and
//! the inventory checks of ADSL/VDSL and FTTH Installs and their add-ons
//! against the demo inventory.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use im_core::{ErrorCode, Form, FormItem};

// ------------------------------------------------------------------ §6 form level

#[test]
fn form_level_checks_run_in_contract_order() {
    let t = TestIm::new();
    let good_item = || adsl_install("form-level@x");

    // No credentials at all: -1002 even though flowId, popid and items are missing too.
    assert_code(&t.submit(Form::default()), -1002);
    let bare = Form::default()
        .field("flowId", "FL-1")
        .field("popid", "19601")
        .item(good_item());
    assert_code(&t.submit(bare.clone()), -1002);
    // Only one of the two, or an empty password.
    let only_user = bare
        .clone()
        .field("authusername", im_core::demo::DEMO_OM_USER);
    assert_code(&t.submit(only_user.clone()), -1002);
    assert_code(
        &t.submit(only_user.clone().field("authpassword", "   ")),
        -1002,
    );
    // Wrong password, unknown account.
    assert_code(
        &t.submit(only_user.field("authpassword", "not-the-password")),
        -1002,
    );
    let stranger = bare
        .clone()
        .field("authusername", "nobody")
        .field("authpassword", im_core::demo::DEMO_OM_PASSWORD);
    assert_code(&t.submit(stranger), -1002);
    // Wrong credentials come before a missing flowId.
    let no_flow_wrong_pw = Form::default()
        .field("authusername", im_core::demo::DEMO_OM_USER)
        .field("authpassword", "wrong")
        .item(good_item());
    assert_code(&t.submit(no_flow_wrong_pw), -1002);

    // Authenticated, flowId missing or empty: -1001, before popid/bussInfo.
    let creds = || {
        Form::default()
            .field("authusername", im_core::demo::DEMO_OM_USER)
            .field("authpassword", im_core::demo::DEMO_OM_PASSWORD)
    };
    let o = t.submit(creds());
    assert_code(&o, -1001);
    assert!(o.error_desc.contains("flowId"), "{o:?}");
    let o = t.submit(
        creds()
            .field("flowId", "  ")
            .field("popid", "19601")
            .item(good_item()),
    );
    assert_code(&o, -1001);
    assert!(o.error_desc.contains("flowId"), "{o:?}");

    // Malformed flowId: -1006, before popid/bussInfo.
    for bad in ["a b", "flow/1", "flöw", &"x".repeat(65)] {
        let o = t.submit(creds().field("flowId", bad));
        assert_code(&o, -1006);
        assert!(o.error_desc.contains("flowId"), "{bad}: {o:?}");
    }

    // popid missing: -1001 naming it; bussInfo without items: -1001.
    let o = t.submit(creds().field("flowId", "FL-2").item(good_item()));
    assert_code(&o, -1001);
    assert!(o.error_desc.contains("popid"), "{o:?}");
    assert!(o.items.is_empty());
    let o = t.submit(creds().field("flowId", "FL-3").field("popid", "19601"));
    assert_code(&o, -1001);
    assert!(
        o.error_desc.contains("bussItem") || o.error_desc.contains("bussInfo"),
        "{o:?}"
    );
    let mut empty_info = creds().field("flowId", "FL-4").field("popid", "19601");
    empty_info.buss_info_present = true;
    assert_code(&t.submit(empty_info), -1001);

    // None of these refusals stored anything, and the flowIds stay usable.
    assert_eq!(t.count("SELECT count(*) FROM task"), 0);
    // A flowId of exactly 64 allowed characters is fine, and surrounding spaces are trimmed.
    let long_ok = format!("A.b-_{}", "9".repeat(59));
    assert_eq!(long_ok.len(), 64);
    let o = t.submit(form(&long_ok, "19601").item(good_item()));
    assert_ok(&o);
    assert_eq!(o.flow_id, long_ok);
    let o = t.submit(form("  FL-2  ", "19601").item(adsl_install("form-level-2@x")));
    assert_ok(&o);
    assert_eq!(o.flow_id, "FL-2");
}

#[test]
fn duplicate_flow_id_is_judged_before_popid_and_items() {
    let t = TestIm::new();
    let first = t.submit(form("DUP-1", "19601").item(adsl_install("dup-order@x")));
    let task = assert_ok(&first).unwrap();

    // Same flowId, no popid, no items at all.
    let o = t.submit(form("DUP-1", ""));
    assert_code(&o, -1003);
    assert_eq!(o.task_no.as_deref(), Some(task.as_str()));
    // Same flowId, items that would each fail their own checks.
    let bad = form("DUP-1", "19699")
        .item(item("Remove", "ADSL", "ADSL", "x"))
        .item(item("Install", "DSL", "ADSL", ""));
    let o = t.submit(bad);
    assert_code(&o, -1003);
    assert_eq!(o.task_no.as_deref(), Some(task.as_str()));
    assert_eq!(
        o.duplicate_content,
        Some(im_core::DuplicateContent::Different)
    );
    assert_eq!(t.count("SELECT count(*) FROM task"), 1);
}

// ------------------------------------------------------------------ §6 items

#[test]
fn first_failing_item_decides_and_the_others_carry_no_code() {
    let t = TestIm::new();
    let f = form("ITEMS-1", "19601")
        .item(adsl_install("items-a@x"))
        .item(item("Remove", "ADSL", "ADSL", "items-b@x"))
        .item(item("Install", "DSL", "ADSL", "items-c@x"));
    let o = t.submit(f);
    assert_code(&o, -1004);
    assert!(o.error_desc.starts_with("item 2:"), "{o:?}");
    assert!(o.task_no.is_none());
    assert_eq!(o.items.len(), 3);
    let codes: Vec<_> = o.items.iter().map(|i| i.error_code).collect();
    assert_eq!(codes, vec![None, Some(ErrorCode::InvalidOpertype), None]);
    assert_eq!(
        o.items.iter().map(|i| i.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(o.items[0].user_name, "items-a@x");
    assert_eq!(
        o.items[1].opertype, "Remove",
        "an unknown opertype is shown as sent"
    );

    // A stored-data failure of item 1 comes before a static failure of item 2.
    let f = form("ITEMS-2", "19601")
        .item(adsl_install("items-d@x").attr("Dslamname", "EX01-D9"))
        .item(item("Remove", "ADSL", "ADSL", "items-e@x"));
    let o = t.submit(f);
    assert_code(&o, -1007);
    assert!(o.error_desc.starts_with("item 1:"), "{o:?}");
    assert_eq!(o.items[0].error_code, Some(ErrorCode::UnknownReference));
    assert_eq!(o.items[1].error_code, None);

    // A later item failing in the stored-data phase: item 3 of 3.
    let f = form("ITEMS-3", "19601")
        .item(adsl_install("items-f@x"))
        .item(adsl_install("items-g@x"))
        .item(adsl_install("items-f@x"));
    let o = t.submit(f);
    assert_code(&o, -1008);
    assert!(o.error_desc.starts_with("item 3:"), "{o:?}");
    assert_eq!(
        o.items.iter().map(|i| i.error_code).collect::<Vec<_>>(),
        vec![None, None, Some(ErrorCode::StateConflict)]
    );
    assert_eq!(t.count("SELECT count(*) FROM task"), 0);
    assert_eq!(t.count("SELECT count(*) FROM service"), 0);
}

#[test]
fn checks_within_an_item_follow_the_contract_order() {
    let t = TestIm::new();
    t.ok(adsl_install("order-active@x")
        .attr("Dslamname", "EX01-D1")
        .attr("FrameNumber", "0")
        .attr("SlotNumber", "1")
        .attr("PortNumber", "5"));

    // Every fault at once, then remove them one by one: each step shows the next code.
    let base = |op: &str, cover: &str, user: &str, speed: &str, exchange: &str, port: &str| {
        FormItem::default()
            .field("opertype", op)
            .field("coverType", cover)
            .field("serviceType", "ADSL")
            .field("UserName", user)
            .field("AccountNumber", "A1")
            .field("CustomerName", "C")
            .attr("ExchangeID", exchange)
            .attr("Speed", speed)
            .attr("Dslamname", "EX01-D1")
            .attr("FrameNumber", "0")
            .attr("SlotNumber", "1")
            .attr("PortNumber", port)
    };
    assert_code(
        &t.one(base("Remove", "DSL", "", "fast", "EX99", "9")),
        -1004,
    );
    assert_code(
        &t.one(base("Install", "DSL", "", "fast", "EX99", "9")),
        -1005,
    );
    let o = t.one(base("Install", "ADSL", "", "fast", "EX99", "9"));
    assert_code(&o, -1001);
    assert!(o.error_desc.contains("UserName"), "{o:?}");
    let o = t.one(base(
        "Install",
        "ADSL",
        "order-active@x",
        "fast",
        "EX99",
        "9",
    ));
    assert_code(&o, -1006);
    assert!(o.error_desc.contains("Speed"), "{o:?}");
    let o = t.one(base(
        "Install",
        "ADSL",
        "order-active@x",
        "16M",
        "EX99",
        "9",
    ));
    assert_code(&o, -1007);
    assert!(o.error_desc.contains("EX99"), "{o:?}");
    // The service is active (-1008) and the port OCCUPIED (-1009): -1008 first.
    assert_code(
        &t.one(base(
            "Install",
            "ADSL",
            "order-active@x",
            "16M",
            "EX01",
            "9",
        )),
        -1008,
    );
    // A new service on that port: -1009.
    assert_code(
        &t.one(base("Install", "ADSL", "order-new@x", "16M", "EX01", "9")),
        -1009,
    );
    // And a missing field beats a bad format in another field.
    let o = t.one(
        item("Install", "ADSL", "ADSL", "order-new@x")
            .field("CustomerName", "C")
            .attr("ExchangeID", "EX01")
            .attr("Speed", "fast"),
    );
    assert_code(&o, -1001);
    assert!(o.error_desc.contains("AccountNumber"), "{o:?}");
}

#[test]
fn absent_enumerations_are_missing_and_unknown_ones_are_refused() {
    let t = TestIm::new();
    let full = |op: Option<&str>, cover: Option<&str>, service: Option<&str>| {
        let mut it = FormItem::default();
        if let Some(v) = op {
            it = it.field("opertype", v);
        }
        if let Some(v) = cover {
            it = it.field("coverType", v);
        }
        if let Some(v) = service {
            it = it.field("serviceType", v);
        }
        it.field("UserName", "enum@x")
            .field("AccountNumber", "A")
            .field("CustomerName", "C")
            .attr("ExchangeID", "EX01")
            .attr("Speed", "1M")
    };
    for (what, it, expected, named) in [
        (
            "no opertype",
            full(None, Some("ADSL"), Some("ADSL")),
            -1001,
            "opertype",
        ),
        (
            "empty opertype",
            full(Some(" "), Some("ADSL"), Some("ADSL")),
            -1001,
            "opertype",
        ),
        (
            "no coverType",
            full(Some("Install"), None, Some("ADSL")),
            -1001,
            "coverType",
        ),
        (
            "no serviceType",
            full(Some("Install"), Some("ADSL"), None),
            -1001,
            "serviceType",
        ),
        (
            "empty serviceType",
            full(Some("Install"), Some("ADSL"), Some("")),
            -1001,
            "serviceType",
        ),
        (
            "unknown opertype",
            full(Some("Suspend"), Some("ADSL"), Some("ADSL")),
            -1004,
            "Suspend",
        ),
        (
            "unknown coverType",
            full(Some("Install"), Some("DSL"), Some("ADSL")),
            -1005,
            "DSL",
        ),
        (
            "unknown serviceType",
            full(Some("Install"), Some("ADSL"), Some("Fax")),
            -1005,
            "Fax",
        ),
        (
            "IPTV on ADSL",
            full(Some("Install"), Some("ADSL"), Some("IPTV")),
            -1005,
            "IPTV",
        ),
        (
            "IP-Phone on VDSL",
            full(Some("Install"), Some("VDSL"), Some("IP-Phone")),
            -1005,
            "IP-Phone",
        ),
        (
            "FTTH on ADSL",
            full(Some("Install"), Some("ADSL"), Some("FTTH")),
            -1005,
            "FTTH",
        ),
        (
            "ADSL on FTTH",
            full(Some("Install"), Some("FTTH"), Some("ADSL")),
            -1005,
            "ADSL",
        ),
        // An unknown coverType is judged before the missing opertype.
        (
            "no opertype, unknown coverType",
            full(None, Some("DSL"), Some("ADSL")),
            -1005,
            "DSL",
        ),
    ] {
        let o = t.one(it);
        assert_eq!(code(&o), expected, "{what}: {o:?}");
        assert!(o.error_desc.contains(named), "{what}: {o:?}");
    }
    // A Query needs neither coverType nor serviceType.
    assert_ok(&t.one(query_item("enum@x")));
}

#[test]
fn enumerations_are_matched_tolerantly() {
    let t = TestIm::new();
    let o = t.ok(item("INSTALL", "adsl", "Adsl", "tol-adsl@x")
        .field("AccountNumber", "A")
        .field("CustomerName", "C")
        .attr("ExchangeID", "EX01")
        .attr("Speed", "2M"));
    assert_eq!(o.items[0].opertype, "Install");
    assert_eq!(o.items[0].service_type, "ADSL");

    let o = t.ok(item(" install ", "ftth", "ftth", "tol-ftth@x")
        .field("AccountNumber", "A")
        .field("CustomerName", "C")
        .attr("CompoundId", "CP01")
        .attr("ONTSN", "HWTC00000001")
        .attr("Speed", "50M"));
    assert_eq!(o.items[0].service_type, "FTTH");
    let o = t.ok(item("install", "FTTH", "IPPhone", "tol-ftth@x")
        .attr("IPAddress", "10.0.0.1")
        .attr("SIPDomainName", "sip"));
    assert_eq!(o.items[0].service_type, "IP-Phone");
    // ip_phone is the same service: already active.
    assert_code(
        &t.one(
            item("Install", "F-T-T-H", "ip_phone", "tol-ftth@x")
                .attr("IPAddress", "10.0.0.1")
                .attr("SIPDomainName", "sip"),
        ),
        -1008,
    );
    let o = t.ok(item("iNsTaLl", "Ftth", "i p t v", "tol-ftth@x").attr("IPTVContent", "X"));
    assert_eq!(o.items[0].service_type, "IPTV");
    let o = t.ok(item("Install", "ADSL", "domain/EMAIL", "tol-adsl@x").attr("DomainName", "d.com"));
    assert_eq!(o.items[0].service_type, "Domain/Email");
    let o = t.ok(item("Install", "ADSL", "OPTION-PACK", "tol-adsl@x")
        .attr("WANIP", "1.2.3.4")
        .attr("SubnetMask", "255.255.255.0")
        .attr("LANIP", "192.168.0.1"));
    assert_eq!(o.items[0].service_type, "OptionPack");
    let o = t.ok(item("QUERY", "", "", "tol-ftth@x"));
    assert_eq!(o.items[0].services.len(), 3);
}

#[test]
fn field_names_are_matched_tolerantly_in_the_item_or_its_attr_list() {
    let t = TestIm::new();
    // Contract fields spelled differently, some in attrList, some direct.
    let it = FormItem::default()
        .field("OperType", "Install")
        .field("cover_type", "ADSL")
        .field("Service Type", "ADSL")
        .field("user-name", "names@x")
        .field("account_number", "ACC-NAMES")
        .attr("customer name", "Nour")
        .attr("Exchange-ID", "EX01")
        .attr("DSLAM_NAME", "EX01-D2")
        .field("frame number", "0")
        .attr("SLOTNUMBER", "2")
        .attr("port_number", "7")
        .field("SPEED", "4M");
    let o = t.ok(it);
    assert_eq!(o.items[0].port, "EX01-D2/0/2/7");
    let v = t.view("names@x", "ADSL");
    assert_eq!(v.account_number, "ACC-NAMES");
    assert_eq!(v.customer_name, "Nour");
    assert_eq!(v.speed, "4096");

    // ONTSN as `ont_sn`, `ONT SN`; CompoundId direct in the bussItem.
    let o = t.ok(item("Install", "FTTH", "FTTH", "names-f1@x")
        .field("AccountNumber", "A")
        .field("CustomerName", "C")
        .field("compound_id", "CP01")
        .attr("ont_sn", "HWTC0000AAA1")
        .attr("speed", "10M"));
    assert_eq!(o.items[0].ont_sn, "HWTC0000AAA1");
    let o = t.ok(item("Install", "FTTH", "FTTH", "names-f2@x")
        .field("AccountNumber", "A")
        .field("CustomerName", "C")
        .attr("Compound Id", "CP01")
        .field("ONT SN", "HWTC0000AAA2")
        .attr("Speed", "10M"));
    assert_eq!(o.items[0].ont_sn, "HWTC0000AAA2");
}

#[test]
fn error_descriptions_name_fields_in_contract_spelling() {
    let t = TestIm::new();
    for (it, contract, sent) in [
        (
            with_value(adsl_install("spell@x"), "ExchangeID", "EX99"),
            "ExchangeID",
            "exchange_id",
        ),
        (
            with_value(adsl_install("spell@x"), "Speed", "fast"),
            "Speed",
            "s_p_e_e_d",
        ),
        (ftth_install("spell@x", "bad-serial"), "ONTSN", "ont sn"),
        (
            without(&adsl_install("spell@x"), "CustomerName"),
            "CustomerName",
            "customer-name",
        ),
    ] {
        // Rename every occurrence of the field to the sent spelling.
        let rename = |f: &im_core::Field| {
            let mut f = f.clone();
            if im_core::names::same(&f.name, contract) {
                f.name = sent.to_string();
            }
            f
        };
        let it = FormItem {
            fields: it.fields.iter().map(rename).collect(),
            attrs: it.attrs.iter().map(rename).collect(),
        };
        let o = t.one(it);
        assert!(!o.is_success());
        assert!(
            o.error_desc.contains(contract) && !o.error_desc.contains(sent),
            "{contract}/{sent}: {:?}",
            o.error_desc
        );
    }
    // Two values for one field, sent under two spellings: named in the contract's spelling.
    let o = t.one(adsl_install("spell@x").attr("exchange-id", "EX02"));
    assert_code(&o, -1006);
    assert!(o.error_desc.contains("ExchangeID"), "{o:?}");
}

#[test]
fn a_field_given_twice_must_not_disagree() {
    let t = TestIm::new();
    // Two different non-empty values, direct and in attrList: -1006 naming the field.
    let o = t.one(adsl_install("twice@x").field("ExchangeID", "EX02"));
    assert_code(&o, -1006);
    assert!(o.error_desc.contains("ExchangeID"), "{o:?}");
    // Two spellings of one field in attrList.
    let o = t.one(adsl_install("twice@x").attr("speed", "8M"));
    assert_code(&o, -1006);
    assert!(o.error_desc.contains("Speed"), "{o:?}");
    // Same value twice (after trimming) is fine; an empty one beside a value too, either order.
    t.ok(adsl_install("twice-1@x").field("Exchange_ID", " EX01 "));
    t.ok(item("Install", "ADSL", "ADSL", "twice-2@x")
        .field("AccountNumber", "")
        .field("AccountNumber", "A2")
        .field("CustomerName", "C")
        .attr("ExchangeID", "EX01")
        .attr("ExchangeID", "")
        .attr("Speed", "1M"));
    let v = t.view("twice-2@x", "ADSL");
    assert_eq!(v.account_number, "A2");
}

#[test]
fn values_are_trimmed() {
    let t = TestIm::new();
    let o = t.ok(item(" Install ", " ADSL ", " ADSL ", "  trim@x  ")
        .field("AccountNumber", "  ACC-TRIM ")
        .field("CustomerName", "\t Trim Me \n")
        .attr("ExchangeID", "  EX01 ")
        .attr("Dslamname", " EX01-D1 ")
        .attr("FrameNumber", " 0 ")
        .attr("SlotNumber", " 3 ")
        .attr("PortNumber", " 4 ")
        .attr("Speed", " 16M "));
    assert_eq!(o.items[0].user_name, "trim@x");
    assert_eq!(o.items[0].port, "EX01-D1/0/3/4");
    let v = t.view("trim@x", "ADSL");
    assert_eq!(
        (
            v.account_number.as_str(),
            v.customer_name.as_str(),
            v.speed.as_str()
        ),
        ("ACC-TRIM", "Trim Me", "16384")
    );
}

#[test]
fn text_values_are_limited_to_256_characters() {
    let t = TestIm::new();
    let o = t.one(adsl_install("long@x").field("Address", "a".repeat(257)));
    assert_code(&o, -1006);
    assert!(o.error_desc.contains("Address"), "{o:?}");
    let o = t.one(with_value(
        adsl_install("long@x"),
        "CustomerName",
        &"n".repeat(257),
    ));
    assert_code(&o, -1006);
    assert!(o.error_desc.contains("CustomerName"), "{o:?}");
    // 256 characters are fine, counted as characters, not bytes (Arabic: 2 bytes each).
    let arabic: String = "\u{0645}".repeat(256);
    t.ok(with_value(adsl_install("long@x"), "CustomerName", &arabic)
        .field("Address", "a".repeat(256)));
    let v = t.view("long@x", "ADSL");
    assert_eq!(v.customer_name, arabic);
}

#[test]
fn unknown_and_non_applicable_fields_are_ignored_whatever_their_length() {
    let t = TestIm::new();
    // §3: "Unknown fields are kept with the work order but otherwise ignored;
    // so is a non-empty value of a field that does not apply".
    let long = "r".repeat(300);
    t.ok(adsl_install("ignored-long-1@x").field("Remarks", long.as_str()));
    t.ok(adsl_install("ignored-long-2@x").attr("IPTVContent", long.as_str()));
}

// ------------------------------------------------------------------ §3.2 required fields

/// A complete, valid Install item of each service (broadband at EX01/CP01).
fn complete_install(service: &str) -> (FormItem, &'static [&'static str]) {
    match service {
        "ADSL" | "VDSL" => (
            item("Install", service, service, "req@x")
                .field("AccountNumber", "A")
                .field("CustomerName", "C")
                .attr("ExchangeID", "EX01")
                .attr("Speed", "8M"),
            &[
                "UserName",
                "AccountNumber",
                "CustomerName",
                "ExchangeID",
                "Speed",
            ],
        ),
        "FTTH" => (
            item("Install", "FTTH", "FTTH", "req@x")
                .field("AccountNumber", "A")
                .field("CustomerName", "C")
                .attr("CompoundId", "CP01")
                .attr("ONTSN", "HWTC12345678")
                .attr("Speed", "8M"),
            &[
                "UserName",
                "AccountNumber",
                "CustomerName",
                "CompoundId",
                "ONTSN",
                "Speed",
            ],
        ),
        "IPTV" => (iptv_install("req@x"), &["UserName", "IPTVContent"]),
        "IP-Phone" => (
            ipphone_install("req@x"),
            &["UserName", "IPAddress", "SIPDomainName"],
        ),
        "OptionPack" => (
            optionpack_install("ADSL", "req@x"),
            &["UserName", "WANIP", "SubnetMask", "LANIP"],
        ),
        "Domain/Email" => (domain_install("ADSL", "req@x"), &["UserName", "DomainName"]),
        _ => unreachable!(),
    }
}

fn without(it: &FormItem, field: &str) -> FormItem {
    let keep = |f: &&im_core::Field| !im_core::names::same(&f.name, field);
    FormItem {
        fields: it.fields.iter().filter(keep).cloned().collect(),
        attrs: it.attrs.iter().filter(keep).cloned().collect(),
    }
}

fn blanked(it: &FormItem, field: &str) -> FormItem {
    let blank = |f: &im_core::Field| {
        let mut f = f.clone();
        if im_core::names::same(&f.name, field) {
            f.value = "   ".into();
        }
        f
    };
    FormItem {
        fields: it.fields.iter().map(blank).collect(),
        attrs: it.attrs.iter().map(blank).collect(),
    }
}

#[test]
fn every_required_field_of_an_install_is_checked_and_named() {
    let t = TestIm::new();
    for service in [
        "ADSL",
        "VDSL",
        "FTTH",
        "IPTV",
        "IP-Phone",
        "OptionPack",
        "Domain/Email",
    ] {
        let (full, required) = complete_install(service);
        for field in required {
            for (how, it) in [
                ("absent", without(&full, field)),
                ("blank", blanked(&full, field)),
            ] {
                let o = t.one(it);
                assert_eq!(code(&o), -1001, "{service} with {field} {how}: {o:?}");
                assert!(o.error_desc.starts_with("item 1:"), "{o:?}");
                assert!(
                    o.error_desc.contains(field),
                    "{service} with {field} {how}: desc {:?}",
                    o.error_desc
                );
            }
        }
    }
    // The complete broadband items are accepted (add-ons need their broadband: -1008, past -1001).
    t.ok(complete_install("ADSL").0);
    t.ok(complete_install("FTTH").0);
    let (vdsl, _) = complete_install("VDSL");
    t.ok(vdsl);
    for service in ["IPTV", "IP-Phone"] {
        t.ok(complete_install(service).0);
    }
    for service in ["OptionPack", "Domain/Email"] {
        t.ok(complete_install(service).0);
    }
    // Modify, Delete and Query need only the item's identity, not the Install fields.
    t.ok(item("Modify", "ADSL", "ADSL", "req@x"));
    t.ok(item("Delete", "ADSL", "ADSL", "req@x"));
    for op in ["Modify", "Delete"] {
        let o = t.one(item(op, "ADSL", "ADSL", ""));
        assert_code(&o, -1001);
        assert!(o.error_desc.contains("UserName"), "{o:?}");
    }
}

// ------------------------------------------------------------------ §3.2 formats

#[test]
fn speed_is_kbit_per_second_or_a_k_m_g_number() {
    let t = TestIm::new();
    for (i, (given, kbps)) in [
        ("16M", "16384"),
        ("1.5m", "1536"),
        ("512", "512"),
        ("2G", "2097152"),
        ("100k", "100"),
        ("0.5M", "512"),
    ]
    .into_iter()
    .enumerate()
    {
        let user = format!("speed-{i}@x");
        t.ok(item("Install", "ADSL", "ADSL", &user)
            .field("AccountNumber", "A")
            .field("CustomerName", "C")
            .attr("ExchangeID", "EX01")
            .attr("Speed", given));
        assert_eq!(t.view(&user, "ADSL").speed, kbps, "Speed {given}");
    }
    for bad in [
        "fast", "0", "-5", "1.5", "M", "16MB", "1,5M", "0M", "16 Mbps",
    ] {
        let o = t.one(
            item("Install", "ADSL", "ADSL", "speed-bad@x")
                .field("AccountNumber", "A")
                .field("CustomerName", "C")
                .attr("ExchangeID", "EX01")
                .attr("Speed", bad),
        );
        assert_eq!(code(&o), -1006, "Speed {bad}: {o:?}");
        assert!(o.error_desc.contains("Speed"), "{o:?}");
    }
}

#[test]
fn vlan_must_be_1_to_4094() {
    let t = TestIm::new();
    for bad in ["0", "4095", "abc", "-1", "100.5"] {
        let o = t.one(ftth_install("vlan@x", "HWTC0000BEEF").attr("VLAN", bad));
        assert_eq!(code(&o), -1006, "VLAN {bad}: {o:?}");
        assert!(o.error_desc.contains("VLAN"), "{o:?}");
    }
    let o = t.ok(ftth_install("vlan@x", "HWTC0000BEEF").attr("VLAN", "1099"));
    assert_eq!(o.items[0].vlan, "1099");
}

#[test]
fn frame_slot_port_go_together_and_are_non_negative_integers() {
    let t = TestIm::new();
    let with = |f: Option<&str>, s: Option<&str>, p: Option<&str>| {
        let mut it = adsl_install("fsp@x").attr("Dslamname", "EX01-D1");
        for (name, v) in [("FrameNumber", f), ("SlotNumber", s), ("PortNumber", p)] {
            if let Some(v) = v {
                it = it.attr(name, v);
            }
        }
        it
    };
    for (f, s, p, missing) in [
        (Some("0"), None, None, "SlotNumber"),
        (Some("0"), Some("1"), None, "PortNumber"),
        (None, Some("1"), Some("2"), "FrameNumber"),
        (None, None, Some("2"), "FrameNumber"),
        (Some("0"), Some(""), Some("2"), "SlotNumber"),
    ] {
        let o = t.one(with(f, s, p));
        assert_eq!(code(&o), -1001, "{f:?}/{s:?}/{p:?}: {o:?}");
        assert!(o.error_desc.contains(missing), "{missing}: {o:?}");
    }
    for (f, s, p, bad) in [
        ("-1", "1", "2", "FrameNumber"),
        ("0", "x", "2", "SlotNumber"),
        ("0", "1", "2.0", "PortNumber"),
        ("0", "1", "+2", "PortNumber"),
    ] {
        let o = t.one(with(Some(f), Some(s), Some(p)));
        assert_eq!(code(&o), -1006, "{f}/{s}/{p}: {o:?}");
        assert!(o.error_desc.contains(bad), "{bad}: {o:?}");
    }
    // All three empty: auto-pick; all three given: that port.
    assert_eq!(
        t.ok(with(Some(""), Some(" "), Some(""))).items[0].port,
        "EX01-D1/0/1/0"
    );
    assert_eq!(
        t.ok(adsl_install("fsp-2@x")
            .attr("Dslamname", "EX01-D1")
            .attr("FrameNumber", "0")
            .attr("SlotNumber", "1")
            .attr("PortNumber", "1"))
            .items[0]
            .port,
        "EX01-D1/0/1/1"
    );
}

#[test]
fn addresses_masks_serials_area_codes_and_emails_are_checked() {
    let t = TestIm::new();
    let bad: Vec<(&str, FormItem, &str)> = vec![
        (
            "DslamIP",
            adsl_install("fmt@x").attr("DslamIP", "10.1.0"),
            "DslamIP",
        ),
        (
            "DslamIP 256",
            adsl_install("fmt@x").attr("DslamIP", "10.1.0.256"),
            "DslamIP",
        ),
        (
            "WANIP",
            with_value(optionpack_install("ADSL", "fmt@x"), "WANIP", "300.1.1.1"),
            "WANIP",
        ),
        (
            "LANIP",
            with_value(optionpack_install("ADSL", "fmt@x"), "LANIP", "192.168.1"),
            "LANIP",
        ),
        (
            "SubnetMask holes",
            with_value(
                optionpack_install("ADSL", "fmt@x"),
                "SubnetMask",
                "255.0.255.0",
            ),
            "SubnetMask",
        ),
        (
            "SubnetMask not IP",
            with_value(optionpack_install("ADSL", "fmt@x"), "SubnetMask", "/24"),
            "SubnetMask",
        ),
        (
            "IPAddress",
            with_value(ipphone_install("fmt@x"), "IPAddress", "sip.example"),
            "IPAddress",
        ),
        ("ONTSN short", ftth_install("fmt@x", "HWTC1A2B3C4"), "ONTSN"),
        (
            "ONTSN not hex",
            ftth_install("fmt@x", "HWTC1A2B3C4G"),
            "ONTSN",
        ),
        (
            "ONTSN digits in vendor",
            ftth_install("fmt@x", "HW7C1A2B3C4D"),
            "ONTSN",
        ),
        (
            "ONTSN 16 hex, vendor not letters",
            ftth_install("fmt@x", "0000000012345678"),
            "ONTSN",
        ),
        (
            "ONTSN on an add-on",
            iptv_install("fmt@x").attr("ONTSN", "XYZ"),
            "ONTSN",
        ),
        (
            "AreaCode",
            adsl_install("fmt@x").field("AreaCode", "02a"),
            "AreaCode",
        ),
        (
            "Email",
            adsl_install("fmt@x").field("Email", "nobody.example.com"),
            "Email",
        ),
    ];
    for (what, it, named) in bad {
        let o = t.one(it);
        assert_eq!(code(&o), -1006, "{what}: {o:?}");
        assert!(o.error_desc.contains(named), "{what}: {o:?}");
    }

    // The good forms are accepted. ONTSN in its sixteen-hex form is stored in the first form.
    let o = t.ok(ftth_install("fmt-f1@x", "485754431A2B3C4D"));
    assert_eq!(o.items[0].ont_sn, "HWTC1A2B3C4D");
    assert!(t.ont_place("HWTC1A2B3C4D").is_some());
    let o = t.ok(ftth_install("fmt-f2@x", "hwtc00c0ffee"));
    assert_eq!(o.items[0].ont_sn, "HWTC00C0FFEE");
    // The same serial in the other form is the same ONT: held already.
    assert_code(&t.one(ftth_install("fmt-f3@x", "4857544300C0FFEE")), -1009);
    t.ok(adsl_install("fmt-a@x")
        .field("AreaCode", "02")
        .field("Email", "a@b.example")
        .field("Mobile", "01001234567"));
    t.ok(with_value(
        optionpack_install("ADSL", "fmt-a@x"),
        "SubnetMask",
        "255.255.255.255",
    ));
    t.ok(ipphone_install("fmt-f1@x"));
}

#[test]
fn delete_judges_only_user_name_and_service_type() {
    let t = TestIm::new();
    t.ok(adsl_install("del-garbage@x"));
    t.ok(ftth_install("del-garbage-f@x", "HWTC0000DE1E"));
    // Garbage in every other field, applicable or not, and no Install fields at all.
    let garbage = |it: FormItem| {
        it.field("AccountNumber", "")
            .field("AreaCode", "not digits")
            .field("Email", "no-at-sign")
            .attr("ExchangeID", "EX99")
            .attr("Dslamname", "NOWHERE")
            .attr("FrameNumber", "7")
            .attr("DslamIP", "999.1.1.1")
            .attr("Speed", "warp")
            .attr("VLAN", "99999")
            .attr("ONTSN", "junk")
            .attr("CompoundId", "CP99")
            .attr("OLTName", "OLT99")
            .attr("WANIP", "x")
    };
    let o = t.ok(garbage(delete_item("ADSL", "ADSL", "del-garbage@x")));
    assert_eq!(o.items[0].state, "INACTIVE");
    let o = t.ok(garbage(delete_item("FTTH", "FTTH", "del-garbage-f@x")));
    assert_eq!(o.items[0].state, "INACTIVE");
}

#[test]
fn non_applicable_fields_are_ignored_on_install() {
    let t = TestIm::new();
    // OM sends every field; those that do not apply to ADSL may hold anything.
    let o = t.ok(adsl_install("na@x")
        .attr("VLAN", "not-a-vlan")
        .attr("ONTSN", "not-a-serial")
        .attr("CompoundId", "CP99")
        .attr("OLTName", "OLT99")
        .attr("WANIP", "x.y")
        .attr("SubnetMask", "bad")
        .attr("IPAddress", "bad")
        .attr("DomainName", "")
        .field("Colour", "blue"));
    assert_eq!(o.items[0].port, "EX01-D1/0/1/0");
    // And an FTTH Install ignores the DSLAM fields.
    t.ok(ftth_install("na-f@x", "HWTC0000AB01")
        .attr("Dslamname", "NOWHERE")
        .attr("FrameNumber", "1")
        .attr("DslamIP", "bad")
        .attr("ExchangeID", "EX99"));
}

// ------------------------------------------------------------------ §4 ADSL / VDSL

#[test]
fn dsl_references_are_checked_against_the_inventory() {
    let t = TestIm::new();
    let port = |user: &str, dslam: &str, slot: &str, p: &str| {
        adsl_install(user)
            .attr("Dslamname", dslam)
            .attr("FrameNumber", "0")
            .attr("SlotNumber", slot)
            .attr("PortNumber", p)
    };
    // Unknown POP; exchange of another POP; unknown DSLAM; DSLAM of another exchange.
    let o = t.submit(form(&fresh_flow("ref"), "19699").item(adsl_install("ref@x")));
    assert_code(&o, -1007);
    assert!(o.error_desc.contains("19699"), "{o:?}");
    let o = t.submit(form(&fresh_flow("ref"), "19602").item(adsl_install("ref@x")));
    assert_code(&o, -1007);
    assert!(o.error_desc.contains("ExchangeID"), "{o:?}");
    let o = t.one(adsl_install("ref@x").attr("Dslamname", "EX01-D9"));
    assert_code(&o, -1007);
    assert!(o.error_desc.contains("EX01-D9"), "{o:?}");
    assert_code(
        &t.one(adsl_install("ref@x").attr("Dslamname", "EX02-D1")),
        -1007,
    );
    assert_code(
        &t.one(adsl_install("ref@x").attr("DslamIP", "10.2.0.1")),
        -1007,
    );
    assert_code(
        &t.one(adsl_install("ref@x").attr("DslamIP", "10.99.0.1")),
        -1007,
    );
    // Port not in the inventory.
    let o = t.one(port("ref@x", "EX01-D1", "9", "0"));
    assert_code(&o, -1007);
    assert_code(&t.one(port("ref@x", "EX01-D1", "1", "64")), -1007);
    // Technology: ADSL on a VDSL DSLAM and VDSL on an ADSL one.
    assert_code(&t.one(port("ref@x", "EX01-D3", "2", "17")), -1006);
    assert_code(
        &t.one(adsl_install("ref@x").attr("Dslamname", "EX01-D4")),
        -1006,
    );
    let vdsl = |user: &str, dslam: &str| {
        item("Install", "VDSL", "VDSL", user)
            .field("AccountNumber", "A")
            .field("CustomerName", "C")
            .attr("ExchangeID", "EX01")
            .attr("Speed", "50M")
            .attr("Dslamname", dslam)
    };
    assert_code(&t.one(vdsl("ref-v@x", "EX01-D1")), -1006);
    // Source state: OCCUPIED and FAULTY ports.
    let o = t.one(port("ref@x", "EX01-D1", "1", "9"));
    assert_code(&o, -1009);
    assert!(o.error_desc.contains("EX01-D1/0/1/9"), "{o:?}");
    assert_code(&t.one(port("ref@x", "EX01-D1", "4", "59")), -1009);
    assert_code(&t.one(port("ref@x", "EX01-D1", "8", "63")), -1009);
    assert_eq!(t.count("SELECT count(*) FROM service"), 0);

    // Good ones: a named port, DslamIP instead of Dslamname, both agreeing.
    assert_eq!(
        t.ok(port("ref-1@x", "EX01-D1", "8", "62")).items[0].port,
        "EX01-D1/0/8/62"
    );
    let o = t.ok(adsl_install("ref-2@x")
        .attr("DslamIP", "10.1.0.2")
        .attr("FrameNumber", "0")
        .attr("SlotNumber", "1")
        .attr("PortNumber", "5"));
    assert_eq!(o.items[0].port, "EX01-D2/0/1/5");
    assert_eq!(
        t.ok(adsl_install("ref-3@x").attr("DslamIP", "10.1.0.2"))
            .items[0]
            .port,
        "EX01-D2/0/1/0"
    );
    assert_eq!(
        t.ok(port("ref-4@x", "EX01-D2", "1", "6").attr("DslamIP", "10.1.0.2"))
            .items[0]
            .port,
        "EX01-D2/0/1/6"
    );
    // DslamIP and Dslamname naming two DSLAMs.
    let o = t.one(port("ref-5@x", "EX01-D1", "1", "7").attr("DslamIP", "10.1.0.2"));
    assert_code(&o, -1006);
    assert!(o.error_desc.contains("DslamIP"), "{o:?}");
    // DSLAM is another name of the DSLAM; given beside Dslamname it must agree.
    assert_eq!(
        t.ok(adsl_install("ref-6@x").attr("DSLAM", "EX01-D2")).items[0].port,
        "EX01-D2/0/1/1"
    );
    assert_code(
        &t.one(
            adsl_install("ref-7@x")
                .attr("DSLAM", "EX01-D2")
                .attr("Dslamname", "EX01-D1"),
        ),
        -1006,
    );
    // VDSL on a VDSL DSLAM by name.
    assert_eq!(
        t.ok(vdsl("ref-v@x", "EX01-D4")).items[0].port,
        "EX01-D4/0/1/0"
    );
}

#[test]
fn a_port_held_by_another_service_is_unavailable() {
    let t = TestIm::new();
    let on_port = |user: &str| {
        adsl_install(user)
            .attr("Dslamname", "EX01-D1")
            .attr("FrameNumber", "0")
            .attr("SlotNumber", "2")
            .attr("PortNumber", "17")
    };
    t.ok(on_port("holder@x"));
    let o = t.one(on_port("other@x"));
    assert_code(&o, -1009);
    assert!(o.error_desc.contains("EX01-D1/0/2/17"), "{o:?}");
    assert_eq!(
        t.port_holder("EX01-D1", 0, 2, 17),
        Some(("holder@x".into(), "ADSL".into()))
    );
    // A VDSL service of the same user cannot take it either (and cannot, being on an ADSL DSLAM).
    assert_eq!(t.count("SELECT count(*) FROM service"), 1);
}

#[test]
fn auto_pick_takes_the_first_free_port_in_order() {
    let t = TestIm::new();
    // Someone takes EX01-D1/0/1/1 explicitly first.
    t.ok(adsl_install("pick-x@x")
        .attr("Dslamname", "EX01-D1")
        .attr("FrameNumber", "0")
        .attr("SlotNumber", "1")
        .attr("PortNumber", "1"));
    let mut got = Vec::new();
    for i in 0..12 {
        got.push(
            t.ok(adsl_install(&format!("pick-{i}@x"))).items[0]
                .port
                .clone(),
        );
    }
    let expected: Vec<String> = [0, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13]
        .iter()
        .map(|p| format!("EX01-D1/0/1/{p}"))
        .collect();
    assert_eq!(
        got, expected,
        "by (DSLAM, frame, slot, port), skipping held and OCCUPIED ports"
    );
    for (i, label) in expected.iter().enumerate() {
        let p: u32 = label.rsplit('/').next().unwrap().parse().unwrap();
        assert_eq!(
            t.port_holder("EX01-D1", 0, 1, p),
            Some((format!("pick-{i}@x"), "ADSL".into()))
        );
    }
    // Named DSLAM with empty port fields: that DSLAM's first free port.
    assert_eq!(
        t.ok(adsl_install("pick-d2@x").attr("Dslamname", "EX01-D2"))
            .items[0]
            .port,
        "EX01-D2/0/1/0"
    );
    // VDSL at the exchange lands on the first VDSL DSLAM.
    let o = t.ok(item("Install", "VDSL", "VDSL", "pick-v@x")
        .field("AccountNumber", "A")
        .field("CustomerName", "C")
        .attr("ExchangeID", "EX01")
        .attr("Speed", "50M"));
    assert_eq!(o.items[0].port, "EX01-D3/0/1/0");
    // Another exchange picks its own DSLAM.
    let o = t.submit(
        form(&fresh_flow("pick"), "19607").item(
            item("Install", "ADSL", "ADSL", "pick-ex7@x")
                .field("AccountNumber", "A")
                .field("CustomerName", "C")
                .attr("ExchangeID", "EX07")
                .attr("Speed", "1M"),
        ),
    );
    assert_ok(&o);
    assert_eq!(o.items[0].port, "EX07-D1/0/1/0");
}

#[test]
fn install_of_an_active_service_conflicts_and_reinstall_after_delete_works() {
    let t = TestIm::new();
    let first = t.ok(adsl_install("again@x"));
    assert_eq!(first.items[0].state, "ACTIVE");
    let o = t.one(adsl_install("again@x"));
    assert_code(&o, -1008);
    assert!(o.error_desc.contains("again@x"), "{o:?}");
    // The same UserName may have a VDSL service beside it (a service is UserName + serviceType).
    t.ok(item("Install", "VDSL", "VDSL", "again@x")
        .field("AccountNumber", "A")
        .field("CustomerName", "C")
        .attr("ExchangeID", "EX01")
        .attr("Speed", "50M"));
    t.ok(delete_item("ADSL", "ADSL", "again@x"));
    let o = t.ok(adsl_install("again@x"));
    assert_eq!(o.items[0].state, "ACTIVE");
    assert_eq!(
        o.items[0].port, "EX01-D1/0/1/0",
        "the released port is free again"
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM service WHERE user_name = 'again@x' AND service_type = 'ADSL'"
        ),
        1
    );
    assert_eq!(t.view("again@x", "ADSL").state, "ACTIVE");
}

// ------------------------------------------------------------------ §4 FTTH and add-ons

#[test]
fn ftth_references_are_checked_against_the_inventory() {
    let t = TestIm::new();
    let f = |it: FormItem| t.one(it);
    let with_compound = |c: &str| {
        item("Install", "FTTH", "FTTH", "fref@x")
            .field("AccountNumber", "A")
            .field("CustomerName", "C")
            .attr("CompoundId", c)
            .attr("ONTSN", "HWTC0000F001")
            .attr("Speed", "20M")
    };
    let o = f(with_compound("CP02"));
    assert_code(&o, -1007);
    assert!(o.error_desc.contains("CompoundId"), "{o:?}");
    assert_code(&f(with_compound("CP99")), -1007);
    let o = t.submit(form(&fresh_flow("fref"), "19699").item(with_compound("CP01")));
    assert_code(&o, -1007);
    // OLTName: unknown -1007, not serving the compound -1006.
    let o = f(with_compound("CP01").attr("OLTName", "OLT99"));
    assert_code(&o, -1007);
    assert!(o.error_desc.contains("OLT99"), "{o:?}");
    let o = f(with_compound("CP01").attr("OLTName", "OLT02"));
    assert_code(&o, -1006);
    assert!(o.error_desc.contains("OLTName"), "{o:?}");
    // VLAN not on the OLT.
    for missing_vlan in ["50", "1100", "2100", "3100", "4094"] {
        let o = f(with_compound("CP01").attr("VLAN", missing_vlan));
        assert_eq!(code(&o), -1007, "VLAN {missing_vlan}: {o:?}");
        assert!(o.error_desc.contains("VLAN"), "{o:?}");
    }
    assert_eq!(t.count("SELECT count(*) FROM ont"), 0);
    // Good: CP11 is at EX01 too; OLTName OLT01 serves it; default VLAN 100.
    let o = t.ok(with_compound("CP11").attr("OLTName", "OLT01"));
    assert_eq!(o.items[0].vlan, "100");
    assert_eq!(
        t.ont_place("HWTC0000F001"),
        Some(("OLT01/0/1/2".into(), 0, Some("fref@x".into())))
    );
    let v = t.view("fref@x", "FTTH");
    assert_eq!(
        (
            v.olt.as_str(),
            v.compound.as_str(),
            v.ont_sn.as_str(),
            v.vlan.as_str()
        ),
        ("OLT01", "CP11", "HWTC0000F001", "100")
    );
}

#[test]
fn new_onts_are_placed_at_the_lowest_free_id_of_a_serving_pon_port() {
    let t = TestIm::new();
    for i in 0..3 {
        let sn = format!("HWTC0000010{i}");
        let o = t.ok(ftth_install(&format!("place-{i}@x"), &sn));
        assert_eq!(o.items[0].ont_sn, sn);
        assert_eq!(o.items[0].vlan, "100", "the lowest INTERNET VLAN");
        assert_eq!(
            t.ont_place(&sn),
            Some(("OLT01/0/1/0".into(), i, Some(format!("place-{i}@x"))))
        );
    }
    // A VLAN given explicitly is taken as given.
    let o = t.ok(ftth_install("place-v@x", "HWTC00000110").attr("VLAN", "555"));
    assert_eq!(o.items[0].vlan, "555");
    assert_eq!(t.ont_place("HWTC00000110").unwrap().1, 3);
    // Exactly one ONT row per serial, all OM-registered, on PON ports serving CP01.
    assert_eq!(t.count("SELECT count(*) FROM ont WHERE origin = 'OM'"), 4);
    assert_eq!(
        t.count(
            "SELECT count(*) FROM ont t JOIN compound_pon cp ON cp.pon_port_id = t.pon_port_id \
             JOIN compound c ON c.id = cp.compound_id WHERE c.code = 'CP01'"
        ),
        4
    );
}

#[test]
fn an_ont_held_by_another_active_service_is_unavailable() {
    let t = TestIm::new();
    t.ok(ftth_install("ont-a@x", "HWTC0000A0A0"));
    let o = t.one(ftth_install("ont-b@x", "HWTC0000A0A0"));
    assert_code(&o, -1009);
    assert!(o.error_desc.contains("HWTC0000A0A0"), "{o:?}");
    let o = t.one(ftth_install("ont-b@x", "485754430000A0A0"));
    assert_code(&o, -1009);
    assert_eq!(
        t.ont_place("HWTC0000A0A0").unwrap().2.as_deref(),
        Some("ont-a@x")
    );
    // Install of the active FTTH again: -1008.
    assert_code(&t.one(ftth_install("ont-a@x", "HWTC0000A0A1")), -1008);
}

#[test]
fn addons_need_their_active_broadband_and_take_default_vlans() {
    let t = TestIm::new();
    // Without FTTH: -1008.
    let o = t.one(iptv_install("addon@x"));
    assert_code(&o, -1008);
    assert_code(&t.one(ipphone_install("addon@x")), -1008);
    // An ADSL service does not carry an FTTH add-on.
    t.ok(adsl_install("addon@x"));
    assert_code(&t.one(iptv_install("addon@x")), -1008);

    let f = t.ok(ftth_install("addon@x", "HWTC0000ADD0"));
    assert_eq!(f.items[0].vlan, "100");
    let o = t.ok(iptv_install("addon@x"));
    assert_eq!(
        (
            o.items[0].vlan.as_str(),
            o.items[0].ont_sn.as_str(),
            o.items[0].state.as_str()
        ),
        ("3000", "HWTC0000ADD0", "ACTIVE")
    );
    let o = t.ok(ipphone_install("addon@x"));
    assert_eq!(
        (o.items[0].vlan.as_str(), o.items[0].ont_sn.as_str()),
        ("2000", "HWTC0000ADD0")
    );
    // Installing an active add-on again: -1008.
    assert_code(&t.one(iptv_install("addon@x")), -1008);
    // Add-ons hold no ONT of their own.
    assert_eq!(
        t.ont_place("HWTC0000ADD0").unwrap().2.as_deref(),
        Some("addon@x")
    );
    assert_eq!(t.count("SELECT count(*) FROM ont"), 1);

    // A second FTTH customer: ONTSN given with an add-on must be the FTTH's ONT.
    t.ok(ftth_install("addon2@x", "HWTC0000ADD2"));
    let o = t.one(iptv_install("addon2@x").attr("ONTSN", "HWTC0000ADD0"));
    assert_code(&o, -1006);
    assert!(o.error_desc.contains("ONTSN"), "{o:?}");
    assert_code(
        &t.one(iptv_install("addon2@x").attr("ONTSN", "HWTC0000FFFF")),
        -1006,
    );
    // A VLAN given for the add-on must be on the OLT; a valid one is taken as given.
    assert_code(&t.one(iptv_install("addon2@x").attr("VLAN", "50")), -1007);
    // The FTTH's own ONT, even in the sixteen-hex form, is fine.
    let o = t.ok(iptv_install("addon2@x")
        .attr("ONTSN", "485754430000ADD2")
        .attr("VLAN", "3005"));
    assert_eq!(
        (o.items[0].vlan.as_str(), o.items[0].ont_sn.as_str()),
        ("3005", "HWTC0000ADD2")
    );
}

#[test]
fn ftth_and_its_addons_can_travel_in_one_call() {
    let t = TestIm::new();
    let f = form("ONE-CALL", "19601")
        .item(ftth_install("onecall@x", "HWTC00000C01"))
        .item(iptv_install("onecall@x"))
        .item(ipphone_install("onecall@x"));
    let o = t.submit(f);
    assert_ok(&o);
    assert_eq!(o.items.len(), 3);
    assert_eq!(
        o.items.iter().map(|i| i.vlan.as_str()).collect::<Vec<_>>(),
        vec!["100", "3000", "2000"]
    );
    assert!(
        o.items
            .iter()
            .all(|i| i.ont_sn == "HWTC00000C01" && i.error_code == Some(ErrorCode::Success))
    );
    // The add-on before its FTTH in one call does not work: items are applied in order.
    let f = form("ONE-CALL-2", "19601")
        .item(iptv_install("onecall2@x"))
        .item(ftth_install("onecall2@x", "HWTC00000C02"));
    let o = t.submit(f);
    assert_code(&o, -1008);
    assert!(o.error_desc.starts_with("item 1:"), "{o:?}");
}

#[test]
fn option_pack_and_domain_email_ride_on_any_broadband() {
    let t = TestIm::new();
    // Without broadband: -1008.
    assert_code(&t.one(optionpack_install("ADSL", "ride@x")), -1008);
    assert_code(&t.one(domain_install("VDSL", "ride@x")), -1008);
    let adsl = t.ok(adsl_install("ride@x"));
    let o = t.ok(optionpack_install("ADSL", "ride@x"));
    assert_eq!(
        o.items[0].port, adsl.items[0].port,
        "an add-on uses its broadband's port"
    );
    let o = t.ok(domain_install("ADSL", "ride@x"));
    assert_eq!(o.items[0].port, adsl.items[0].port);
    // On FTTH too, and on VDSL.
    t.ok(ftth_install("ride-f@x", "HWTC0000B1DE"));
    let o = t.ok(optionpack_install("FTTH", "ride-f@x"));
    assert_eq!(o.items[0].ont_sn, "HWTC0000B1DE");
    t.ok(item("Install", "VDSL", "VDSL", "ride-v@x")
        .field("AccountNumber", "A")
        .field("CustomerName", "C")
        .attr("ExchangeID", "EX01")
        .attr("Speed", "50M"));
    t.ok(domain_install("VDSL", "ride-v@x"));
    // Only one port is held per broadband service; add-ons hold none.
    assert_eq!(
        t.count("SELECT count(*) FROM port WHERE service_id IS NOT NULL"),
        2
    );
}
