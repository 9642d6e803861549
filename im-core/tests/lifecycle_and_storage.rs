//! Services over time and what is stored (`om-im-worksheet.md` §4 Modify,
//! Delete, Query, §4 all-or-nothing, §7 idempotency, §8 secrets;
//! `inventory-sync-and-am.md` §4–§5 tasks and outbox), through the public
//! API with read-only SQL checks of the database where the stored state is
//! the point: group commit, restart, concurrency and protected values.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use im_core::{CoreConfig, DuplicateContent, ErrorCode, Form, FormItem, Im, Outcome};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Barrier};

fn today_utc() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day())
}

/// Splits `WS<yyyymmdd><seq>` into (day, seq), asserting the format.
#[track_caller]
fn task_parts(task_no: &str) -> (String, u64) {
    assert!(task_no.starts_with("WS"), "{task_no}");
    let rest = &task_no[2..];
    assert!(
        rest.len() >= 8 + 6,
        "WS + 8 date digits + at least 6: {task_no}"
    );
    assert!(rest.bytes().all(|b| b.is_ascii_digit()), "{task_no}");
    (rest[..8].to_string(), rest[8..].parse().unwrap())
}

// ------------------------------------------------------------------ Modify

#[test]
fn modify_needs_an_active_service() {
    let t = TestIm::new();
    let o = t.one(item("Modify", "ADSL", "ADSL", "mod-none@x").attr("Speed", "8M"));
    assert_code(&o, -1008);
    assert!(o.error_desc.contains("mod-none@x"), "{o:?}");
    assert_code(
        &t.one(item("Modify", "FTTH", "FTTH", "mod-none@x").attr("Speed", "8M")),
        -1008,
    );
    assert_code(
        &t.one(item("Modify", "FTTH", "IPTV", "mod-none@x").attr("IPTVContent", "X")),
        -1008,
    );
    // With full port fields naming a real port: still -1008.
    let port = item("Modify", "ADSL", "ADSL", "mod-none@x")
        .attr("Dslamname", "EX01-D1")
        .attr("FrameNumber", "0")
        .attr("SlotNumber", "1")
        .attr("PortNumber", "3");
    assert_code(&t.one(port), -1008);
    // Deleted (inactive) services.
    t.ok(adsl_install("mod-gone@x"));
    t.ok(delete_item("ADSL", "ADSL", "mod-gone@x"));
    assert_code(
        &t.one(item("Modify", "ADSL", "ADSL", "mod-gone@x").attr("Speed", "8M")),
        -1008,
    );
    t.ok(ftth_install("mod-gone@x", "HWTC0000E0E1"));
    t.ok(delete_item("FTTH", "FTTH", "mod-gone@x"));
    assert_code(
        &t.one(item("Modify", "FTTH", "FTTH", "mod-gone@x").attr("ONTSN", "HWTC0000E0E2")),
        -1008,
    );
    assert_eq!(t.count("SELECT count(*) FROM task"), 4);
    assert_eq!(t.ont_place("HWTC0000E0E2"), None);
}

#[test]
fn modify_of_a_missing_ftth_with_a_new_ontsn_is_a_state_conflict() {
    let t = TestIm::new();
    // §4: Modify changes an active service, -1008 when there is none. No CompoundId was
    // given, so the only unknown "reference" is the missing service's own compound.
    let o = t.one(item("Modify", "FTTH", "FTTH", "mod-none@x").attr("ONTSN", "HWTC0000E0E0"));
    assert_code(&o, -1008);
    assert_eq!(t.ont_place("HWTC0000E0E0"), None);
}

#[test]
fn modify_moves_a_dsl_service_only_with_full_port_fields() {
    let t = TestIm::new();
    t.ok(adsl_install("mover@x"));
    t.ok(adsl_install("neighbour@x")
        .attr("Dslamname", "EX01-D2")
        .attr("FrameNumber", "0")
        .attr("SlotNumber", "4")
        .attr("PortNumber", "4"));
    let mv = |dslam: &str, slot: &str, port: &str| {
        item("Modify", "ADSL", "ADSL", "mover@x")
            .attr("Dslamname", dslam)
            .attr("FrameNumber", "0")
            .attr("SlotNumber", slot)
            .attr("PortNumber", port)
    };

    // Full port fields: moved; the old port is released and the new one held, in SQL.
    let o = t.ok(mv("EX01-D2", "3", "3"));
    assert_eq!(o.items[0].port, "EX01-D2/0/3/3");
    assert_eq!(t.port_holder("EX01-D1", 0, 1, 0), None);
    assert_eq!(
        t.port_holder("EX01-D2", 0, 3, 3),
        Some(("mover@x".into(), "ADSL".into()))
    );
    assert_eq!(
        t.count("SELECT count(*) FROM port WHERE service_id IS NOT NULL"),
        2
    );

    // Under the Install rules: OCCUPIED, FAULTY, held by another, wrong technology, unknown port.
    assert_code(&t.one(mv("EX01-D2", "3", "9")), -1009);
    assert_code(&t.one(mv("EX01-D2", "8", "63")), -1009);
    assert_code(&t.one(mv("EX01-D2", "4", "4")), -1009);
    assert_code(&t.one(mv("EX01-D3", "1", "1")), -1006);
    assert_code(&t.one(mv("EX01-D2", "9", "1")), -1007);
    assert_code(&t.one(mv("EX02-D1", "1", "1")), -1007);
    assert_eq!(
        t.view("mover@x", "ADSL").port,
        "EX01-D2/0/3/3",
        "refused moves change nothing"
    );

    // Empty port fields keep the port; other fields replace stored ones.
    let o = t.ok(item("Modify", "ADSL", "ADSL", "mover@x")
        .field("CustomerName", "Renamed")
        .attr("Dslamname", "")
        .attr("FrameNumber", "")
        .attr("SlotNumber", "")
        .attr("PortNumber", "")
        .attr("Speed", "8M"));
    assert_eq!(o.items[0].port, "EX01-D2/0/3/3");
    let v = t.view("mover@x", "ADSL");
    assert_eq!(
        (
            v.port.as_str(),
            v.speed.as_str(),
            v.customer_name.as_str(),
            v.state.as_str()
        ),
        ("EX01-D2/0/3/3", "8192", "Renamed", "ACTIVE")
    );
    assert_eq!(v.account_number, "ACC-mover@x", "fields not given are kept");

    // Moving to the port it already holds is fine.
    assert_eq!(t.ok(mv("EX01-D2", "3", "3")).items[0].port, "EX01-D2/0/3/3");

    // The released port can be taken by another service.
    assert_eq!(t.ok(adsl_install("taker@x")).items[0].port, "EX01-D1/0/1/0");
}

#[test]
fn modify_with_port_fields_only_moves_on_the_held_dslam() {
    let t = TestIm::new();
    t.ok(adsl_install("mv-short@x"));
    // §4 Modify: "full port fields ... move the service"; Dslamname is not a required field.
    let o = t.one(
        item("Modify", "ADSL", "ADSL", "mv-short@x")
            .attr("FrameNumber", "0")
            .attr("SlotNumber", "2")
            .attr("PortNumber", "2"),
    );
    assert_ok(&o);
    assert_eq!(o.items[0].port, "EX01-D1/0/2/2");
}

#[test]
fn modify_with_a_new_ontsn_moves_the_ftth_service() {
    let t = TestIm::new();
    t.ok(ftth_install("ftth-mv@x", "HWTC0000AAAA"));
    t.ok(iptv_install("ftth-mv@x"));
    t.ok(ftth_install("ftth-other@x", "HWTC0000CCCC"));
    let o = t.ok(item("Modify", "FTTH", "FTTH", "ftth-mv@x")
        .attr("ONTSN", "HWTC0000BBBB")
        .attr("Speed", "200M"));
    assert_eq!(o.items[0].ont_sn, "HWTC0000BBBB");
    assert_eq!(o.items[0].vlan, "100", "the VLAN is kept");
    assert_eq!(
        t.ont_place("HWTC0000AAAA").unwrap().2,
        None,
        "old ONT released"
    );
    let (pon, id, holder) = t.ont_place("HWTC0000BBBB").unwrap();
    assert_eq!(
        (pon.as_str(), id, holder.as_deref()),
        ("OLT01/0/1/0", 2, Some("ftth-mv@x"))
    );
    let v = t.view("ftth-mv@x", "FTTH");
    assert_eq!(
        (v.ont_sn.as_str(), v.speed.as_str()),
        ("HWTC0000BBBB", "204800")
    );
    assert_eq!(
        t.view("ftth-mv@x", "IPTV").ont_sn,
        "HWTC0000BBBB",
        "the add-on follows its FTTH"
    );
    // The ONT of another active service: -1009; the same ONT again: no move.
    assert_code(
        &t.one(item("Modify", "FTTH", "FTTH", "ftth-mv@x").attr("ONTSN", "HWTC0000CCCC")),
        -1009,
    );
    assert_eq!(
        t.ok(item("Modify", "FTTH", "FTTH", "ftth-mv@x").attr("ONTSN", "hwtc0000bbbb"))
            .items[0]
            .ont_sn,
        "HWTC0000BBBB"
    );
    // The released ONT can be installed by someone else.
    let o = t.ok(ftth_install("ftth-next@x", "HWTC0000AAAA"));
    assert_eq!(o.items[0].ont_sn, "HWTC0000AAAA");
    assert_eq!(
        t.ont_place("HWTC0000AAAA").unwrap().2.as_deref(),
        Some("ftth-next@x")
    );
}

#[test]
fn modify_changes_vlans_and_can_move_an_ftth_service_to_another_compound() {
    let t = TestIm::new();
    t.ok(ftth_install("vl@x", "HWTC0000F1F1"));
    t.ok(iptv_install("vl@x"));
    // FTTH VLAN: must be on the OLT; a valid one replaces the stored one.
    assert_code(
        &t.one(item("Modify", "FTTH", "FTTH", "vl@x").attr("VLAN", "50")),
        -1007,
    );
    assert_code(
        &t.one(item("Modify", "FTTH", "FTTH", "vl@x").attr("VLAN", "5000")),
        -1006,
    );
    assert_eq!(
        t.ok(item("Modify", "FTTH", "FTTH", "vl@x").attr("VLAN", "200"))
            .items[0]
            .vlan,
        "200"
    );
    assert_eq!(t.view("vl@x", "FTTH").vlan, "200");
    // Add-on VLAN likewise.
    assert_code(
        &t.one(item("Modify", "FTTH", "IPTV", "vl@x").attr("VLAN", "50")),
        -1007,
    );
    assert_eq!(
        t.ok(item("Modify", "FTTH", "IPTV", "vl@x").attr("VLAN", "3001"))
            .items[0]
            .vlan,
        "3001"
    );
    assert_eq!(t.view("vl@x", "IPTV").vlan, "3001");
    // Empty VLAN keeps the add-on's VLAN.
    assert_eq!(
        t.ok(item("Modify", "FTTH", "IPTV", "vl@x")
            .attr("VLAN", "")
            .attr("IPTVContent", "SILVER"))
            .items[0]
            .vlan,
        "3001"
    );
    // A new ONTSN with another compound of the POP moves the FTTH there.
    let o = t.ok(item("Modify", "FTTH", "FTTH", "vl@x")
        .attr("ONTSN", "HWTC0000F1F2")
        .attr("CompoundId", "CP11"));
    assert_eq!(o.items[0].ont_sn, "HWTC0000F1F2");
    assert_eq!(
        t.ont_place("HWTC0000F1F2"),
        Some(("OLT01/0/1/2".into(), 0, Some("vl@x".into())))
    );
    assert_eq!(t.ont_place("HWTC0000F1F1").unwrap().2, None);
    assert_eq!(t.view("vl@x", "FTTH").compound, "CP11");
    // A compound of another POP: -1007, nothing moved.
    assert_code(
        &t.one(
            item("Modify", "FTTH", "FTTH", "vl@x")
                .attr("ONTSN", "HWTC0000F1F3")
                .attr("CompoundId", "CP02"),
        ),
        -1007,
    );
    assert_eq!(t.view("vl@x", "FTTH").ont_sn, "HWTC0000F1F2");
    // Once the FTTH is deleted, its add-ons cannot be modified.
    t.ok(delete_item("FTTH", "FTTH", "vl@x"));
    assert_code(
        &t.one(item("Modify", "FTTH", "IPTV", "vl@x").attr("IPTVContent", "GOLD")),
        -1008,
    );
}

#[test]
fn install_creates_or_updates_the_customer() {
    let t = TestIm::new();
    t.ok(with_value(
        adsl_install("cust-1@x"),
        "AccountNumber",
        "ACC-SHARED",
    ));
    assert_eq!(t.view("cust-1@x", "ADSL").customer_name, "Ahmed Hassan");
    t.ok(with_value(
        ftth_install("cust-2@x", "HWTC00C0FFEE"),
        "AccountNumber",
        "ACC-SHARED",
    ));
    // One customer, renamed by the second Install; both services show it.
    assert_eq!(
        t.count("SELECT count(*) FROM customer WHERE account_number = 'ACC-SHARED'"),
        1
    );
    assert_eq!(t.view("cust-1@x", "ADSL").customer_name, "Mona");
    assert_eq!(t.view("cust-2@x", "FTTH").customer_name, "Mona");
    // An add-on without AccountNumber belongs to its broadband's customer.
    t.ok(iptv_install("cust-2@x"));
    assert_eq!(t.view("cust-2@x", "IPTV").account_number, "ACC-SHARED");
}

// ------------------------------------------------------------------ Delete

#[test]
fn delete_frees_resources_and_deactivates_addons() {
    let t = TestIm::new();
    assert_code(&t.one(delete_item("ADSL", "ADSL", "del-none@x")), -1008);

    t.ok(adsl_install("del-a@x"));
    t.ok(optionpack_install("ADSL", "del-a@x"));
    let o = t.ok(delete_item("ADSL", "ADSL", "del-a@x"));
    assert_eq!(
        (o.items[0].state.as_str(), o.items[0].port.as_str()),
        ("INACTIVE", "")
    );
    assert_eq!(t.port_holder("EX01-D1", 0, 1, 0), None);
    assert!(
        t.query("del-a@x").iter().all(|s| s.state == "INACTIVE"),
        "{:?}",
        t.query("del-a@x")
    );
    assert_code(&t.one(delete_item("ADSL", "ADSL", "del-a@x")), -1008);
    assert_code(&t.one(delete_item("ADSL", "OptionPack", "del-a@x")), -1008);
    // Another service takes the freed port.
    assert_eq!(t.ok(adsl_install("del-b@x")).items[0].port, "EX01-D1/0/1/0");

    // FTTH with IPTV and IP-Phone.
    assert_ok(
        &t.submit(
            form("DEL-F", "19601")
                .item(ftth_install("del-f@x", "HWTC0000DE1F"))
                .item(iptv_install("del-f@x"))
                .item(ipphone_install("del-f@x")),
        ),
    );
    // Deleting an add-on alone leaves the rest.
    t.ok(delete_item("FTTH", "IP-Phone", "del-f@x"));
    assert_eq!(t.view("del-f@x", "FTTH").state, "ACTIVE");
    assert_eq!(t.view("del-f@x", "IPTV").state, "ACTIVE");
    t.ok(delete_item("FTTH", "FTTH", "del-f@x"));
    let states: BTreeMap<_, _> = t
        .query("del-f@x")
        .into_iter()
        .map(|s| (s.service_type, s.state))
        .collect();
    assert_eq!(
        states.values().collect::<Vec<_>>(),
        vec!["INACTIVE"; 3],
        "{states:?}"
    );
    assert_eq!(t.ont_place("HWTC0000DE1F").unwrap().2, None);
    assert_code(&t.one(iptv_install("del-f@x")), -1008);
    // Another customer takes the ONT.
    t.ok(ftth_install("del-g@x", "HWTC0000DE1F"));
    assert_eq!(
        t.ont_place("HWTC0000DE1F").unwrap().2.as_deref(),
        Some("del-g@x")
    );
    // Nothing is physically deleted.
    assert_eq!(
        t.count("SELECT count(*) FROM service WHERE user_name = 'del-f@x'"),
        3
    );
}

// ------------------------------------------------------------------ Query

#[test]
fn query_lists_services_changes_nothing_and_claims_no_flow_id() {
    let t = TestIm::new();
    let secret_values = [
        "pw-QUERY-secret-1",
        "0100-QUERY-mobile",
        "query-mail@secret.example",
        "iptv-QUERY-secret",
    ];
    let mut adsl = adsl_install("q@x")
        .field("Mobile", secret_values[1])
        .field("Email", secret_values[2])
        .field("Serviceno", "FBB22341290");
    adsl = with_value(adsl, "Password", secret_values[0]);
    adsl = with_value(adsl, "AccountNumber", "ACC-Q");
    adsl = with_value(
        adsl,
        "CustomerName",
        "\u{0623}\u{062d}\u{0645}\u{062f} Hassan",
    );
    t.ok(adsl);
    t.ok(optionpack_install("ADSL", "q@x"));
    t.ok(domain_install("ADSL", "q@x"));
    t.ok(delete_item("ADSL", "Domain/Email", "q@x"));
    t.ok(ftth_install("q@x", "HWTC0000A1B2"));
    assert_ok(&t.submit(form("Q-FLOW-I", "19601").item(with_value(
        iptv_install("q@x"),
        "IPTVPassword",
        secret_values[3],
    ))));
    let tasks = t.count("SELECT count(*) FROM task");

    // The same flowId as an accepted Install: a Query is not a duplicate, and claims nothing.
    let o = t.submit(form("Q-FLOW-I", "19601").item(query_item("q@x")));
    assert_ok(&o);
    assert_eq!(o.task_no, None);
    let all = &o.items[0].services;
    let by_type: BTreeMap<&str, &im_core::ServiceView> =
        all.iter().map(|s| (s.service_type.as_str(), s)).collect();
    assert_eq!(
        by_type.keys().copied().collect::<Vec<_>>(),
        vec!["ADSL", "Domain/Email", "FTTH", "IPTV", "OptionPack"]
    );
    let adsl = by_type["ADSL"];
    assert_eq!(
        (
            adsl.state.as_str(),
            adsl.cover_type.as_str(),
            adsl.port.as_str(),
            adsl.speed.as_str(),
            adsl.account_number.as_str(),
            adsl.serviceno.as_str()
        ),
        (
            "ACTIVE",
            "ADSL",
            "EX01-D1/0/1/0",
            "16384",
            "ACC-Q",
            "FBB22341290"
        )
    );
    assert_eq!(
        adsl.customer_name,
        "\u{0623}\u{062d}\u{0645}\u{062f} Hassan"
    );
    assert_eq!(by_type["OptionPack"].port, "EX01-D1/0/1/0");
    assert_eq!(by_type["OptionPack"].account_number, "ACC-Q");
    assert_eq!(by_type["Domain/Email"].state, "INACTIVE");
    let ftth = by_type["FTTH"];
    assert_eq!(
        (
            ftth.state.as_str(),
            ftth.ont_sn.as_str(),
            ftth.olt.as_str(),
            ftth.compound.as_str(),
            ftth.vlan.as_str(),
            ftth.speed.as_str()
        ),
        ("ACTIVE", "HWTC0000A1B2", "OLT01", "CP01", "100", "102400")
    );
    assert_eq!(
        (
            by_type["IPTV"].ont_sn.as_str(),
            by_type["IPTV"].vlan.as_str()
        ),
        ("HWTC0000A1B2", "3000")
    );
    assert!(all.iter().all(|s| !s.conflict && !s.updated.is_empty()));

    // Filtered by serviceType; no match is success with no services.
    let o =
        t.submit(form("Q-FLOW-Q", "19601").item(query_item("q@x").field("serviceType", "FTTH")));
    assert_ok(&o);
    assert_eq!(o.items[0].services.len(), 1);
    assert_eq!(o.items[0].services[0].service_type, "FTTH");
    let o = t.submit(form("Q-FLOW-Q", "19601").item(query_item("nobody@x")));
    assert_ok(&o);
    assert_eq!(o.items[0].error_code, Some(ErrorCode::Success));
    assert!(o.items[0].services.is_empty());
    // Several Query items in one call, each answered.
    let o = t.submit(
        form("Q-FLOW-Q", "19601")
            .item(query_item("q@x"))
            .item(query_item("nobody@x")),
    );
    assert_ok(&o);
    assert_eq!(
        o.items.iter().map(|i| i.services.len()).collect::<Vec<_>>(),
        vec![5, 0]
    );

    // No protected value in any answer.
    let text = format!("{o:?}{all:?}");
    for s in secret_values {
        assert!(!text.contains(s), "{s} in a Query answer");
    }
    // Nothing changed, nothing claimed: an Install may now use the flowId.
    assert_eq!(t.count("SELECT count(*) FROM task"), tasks);
    assert_ok(&t.submit(form("Q-FLOW-Q", "19601").item(adsl_install("q2@x"))));
    // A refused Query claims nothing either.
    assert_code(
        &t.submit(form("Q-FLOW-2", "19601").item(query_item("q@x").field("serviceType", "Fax"))),
        -1005,
    );
    assert_ok(&t.submit(form("Q-FLOW-2", "19601").item(adsl_install("q3@x"))));
}

// ------------------------------------------------------------------ all-or-nothing

fn assert_nothing_stored(t: &TestIm) {
    for table in [
        "task",
        "task_item",
        "task_history",
        "command",
        "service",
        "customer",
        "ont",
    ] {
        if t.has_table(table) {
            assert_eq!(
                t.count(&format!("SELECT count(*) FROM {table}")),
                0,
                "rows in {table}"
            );
        }
    }
    assert_eq!(
        t.count("SELECT count(*) FROM port WHERE service_id IS NOT NULL"),
        0
    );
}

#[test]
fn a_call_whose_later_item_fails_stores_nothing() {
    let t = TestIm::new();
    let occupied = adsl_install("aon-2@x")
        .attr("Dslamname", "EX01-D1")
        .attr("FrameNumber", "0")
        .attr("SlotNumber", "1")
        .attr("PortNumber", "9");
    let f = form("AON-1", "19601")
        .item(ftth_install("aon-1@x", "HWTC0000A0A1"))
        .item(iptv_install("aon-1@x"))
        .item(occupied);
    let o = t.submit(f);
    assert_code(&o, -1009);
    assert!(o.error_desc.starts_with("item 3:"), "{o:?}");
    assert!(o.task_no.is_none());
    assert_nothing_stored(&t);
    // A statically bad 2nd item: the same.
    let o = t.submit(
        form("AON-1", "19601")
            .item(adsl_install("aon-1@x"))
            .item(with_value(adsl_install("aon-2@x"), "Speed", "fast")),
    );
    assert_code(&o, -1006);
    assert_nothing_stored(&t);
    // Both refusals left the flowId free: the corrected call is accepted with it.
    let fixed = adsl_install("aon-2@x")
        .attr("Dslamname", "EX01-D1")
        .attr("FrameNumber", "0")
        .attr("SlotNumber", "1")
        .attr("PortNumber", "8");
    let o = t.submit(
        form("AON-1", "19601")
            .item(ftth_install("aon-1@x", "HWTC0000A0A1"))
            .item(iptv_install("aon-1@x"))
            .item(fixed),
    );
    assert_ok(&o);
    assert_eq!(o.items[2].port, "EX01-D1/0/1/8");
    assert_eq!(
        t.ont_place("HWTC0000A0A1").unwrap().1,
        0,
        "the rolled-back ONT left no trace: id 0 again"
    );
    assert_eq!(t.count("SELECT count(*) FROM task"), 1);
    assert_eq!(t.count("SELECT count(*) FROM command"), 3);
}

#[test]
fn an_internal_error_stores_nothing_and_the_retry_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("im.db");
    {
        let im = Im::open(CoreConfig::new(&path)).unwrap();
        im_core::demo::install_if_empty(&im).unwrap();
        im.close();
    }
    // Every call waits longer than the queue time-out of zero: -9999.
    let mut cfg = CoreConfig::new(&path);
    cfg.queue_timeout = std::time::Duration::ZERO;
    let im = Im::open(cfg).unwrap();
    let f = form("RETRY-1", "19601").item(adsl_install("retry@x"));
    let o = im.submit_blocking(f.clone());
    assert_code(&o, -9999);
    assert!(o.error_code.is_retryable());
    im.close();
    // After close, calls answer -9999 too.
    assert_code(&im.submit_blocking(f.clone()), -9999);
    let sql =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let tasks: i64 = sql
        .query_row("SELECT count(*) FROM task", [], |r| r.get(0))
        .unwrap();
    let services: i64 = sql
        .query_row("SELECT count(*) FROM service", [], |r| r.get(0))
        .unwrap();
    assert_eq!((tasks, services), (0, 0));
    drop(sql);
    // OM retries with the same flowId: accepted.
    let im = Im::open(CoreConfig::new(&path)).unwrap();
    assert_ok(&im.submit_blocking(f));
}

// ------------------------------------------------------------------ tasks and outbox

#[test]
fn an_accepted_call_creates_one_numbered_task_with_history_and_items() {
    let t = TestIm::new();
    let before = today_utc();
    let mut last = 0;
    let mut days = HashSet::new();
    for i in 0..4 {
        let o = t.submit(
            form(&format!("TASK-{i}"), "19601")
                .item(adsl_install(&format!("task-{i}@x")))
                .item(query_item("task-0@x")),
        );
        let task = assert_ok(&o).unwrap();
        let (day, seq) = task_parts(&task);
        assert!(seq > last, "task numbers increase: {task} after {last}");
        last = seq;
        days.insert(day);
        let (flow, popid, state): (String, String, String) = t
            .sql()
            .query_row(
                "SELECT flow_id, popid, state FROM task WHERE task_no = ?1",
                [&task],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (flow.as_str(), popid.as_str(), state.as_str()),
            (format!("TASK-{i}").as_str(), "19601", "RECEIVED")
        );
        assert_eq!(t.task_item_count(&task), 2, "the task holds both items");
        assert_eq!(t.task_history(&task), vec!["RECEIVED"], "one history entry");
        // One command for the Install, none for the Query.
        assert_eq!(t.commands(&task).len(), 1);
    }
    let after = today_utc();
    assert!(
        days.iter().all(|d| *d == before || *d == after),
        "{days:?} not today ({before})"
    );
    assert_eq!(t.count("SELECT count(*) FROM task"), 4);
    // Refused calls create no task.
    assert_code(&t.one(item("Install", "ADSL", "ADSL", "task-0@x")), -1001);
    assert_code(
        &t.one(adsl_install("task-8@x").attr("Dslamname", "EX01-D9")),
        -1007,
    );
    assert_eq!(t.count("SELECT count(*) FROM task"), 4);
    let o = t.one(adsl_install("task-9@x"));
    let (_, seq) = task_parts(&assert_ok(&o).unwrap());
    assert!(seq > last);
}

fn sorted_names(c: &Command) -> Vec<&str> {
    let mut v = c.param_names();
    v.sort_unstable();
    v
}

fn sorted(names: &[&'static str]) -> Vec<&'static str> {
    let mut v = names.to_vec();
    v.sort_unstable();
    v
}

#[test]
fn commands_are_queued_per_item_with_the_parameters_of_their_service() {
    let t = TestIm::new();
    let secrets = ["pppoe-CMD-secret", "iptv-CMD-secret"];
    // ADSL with two add-ons.
    let o = t.submit(
        form("CMD-1", "19601")
            .item(with_value(adsl_install("cmd@x"), "Password", secrets[0]))
            .item(optionpack_install("ADSL", "cmd@x"))
            .item(domain_install("ADSL", "cmd@x")),
    );
    let task = assert_ok(&o).unwrap();
    let cmds = t.commands(&task);
    assert_eq!(
        cmds.iter().map(|c| c.cmd_id.clone()).collect::<Vec<_>>(),
        (1..=3)
            .map(|n| format!("CMD-{task}-{n}"))
            .collect::<Vec<_>>()
    );
    assert!(
        cmds.iter()
            .all(|c| c.kind == "ACTIVATE" && c.state == "PENDING"),
        "{cmds:?}"
    );
    assert_eq!(
        cmds.iter()
            .map(|c| c.service_type.as_str())
            .collect::<Vec<_>>(),
        vec!["ADSL", "OptionPack", "Domain/Email"]
    );
    assert_eq!(
        sorted_names(&cmds[0]),
        sorted(&["UserName", "port", "dslamIp", "speed"])
    );
    assert_eq!(
        (
            cmds[0].param("UserName"),
            cmds[0].param("port"),
            cmds[0].param("dslamIp"),
            cmds[0].param("speed")
        ),
        ("cmd@x", "EX01-D1/0/1/0", "10.1.0.1", "16384")
    );
    assert_eq!(
        sorted_names(&cmds[1]),
        sorted(&["UserName", "wanIp", "subnetMask", "lanIp"])
    );
    assert_eq!(
        (
            cmds[1].param("wanIp"),
            cmds[1].param("subnetMask"),
            cmds[1].param("lanIp")
        ),
        ("41.33.0.1", "255.255.255.248", "192.168.1.1")
    );
    assert_eq!(sorted_names(&cmds[2]), sorted(&["UserName", "domainName"]));
    assert_eq!(cmds[2].param("domainName"), "example-shop.com.eg");

    // FTTH with IPTV and IP-Phone.
    let o = t.submit(
        form("CMD-2", "19601")
            .item(ftth_install("cmd-f@x", "HWTC0000C0DE"))
            .item(with_value(
                iptv_install("cmd-f@x"),
                "IPTVPassword",
                secrets[1],
            ))
            .item(ipphone_install("cmd-f@x")),
    );
    let task2 = assert_ok(&o).unwrap();
    let cmds = t.commands(&task2);
    assert_eq!(cmds.len(), 3);
    assert_eq!(
        sorted_names(&cmds[0]),
        sorted(&[
            "UserName", "olt", "ponPort", "ontId", "ontSn", "vlan", "speed"
        ])
    );
    assert_eq!(
        (
            cmds[0].param("olt"),
            cmds[0].param("ontId"),
            cmds[0].param("ontSn"),
            cmds[0].param("vlan"),
            cmds[0].param("speed")
        ),
        ("OLT01", "0", "HWTC0000C0DE", "100", "102400")
    );
    assert!(cmds[0].param("ponPort").ends_with("0/1/0"), "{:?}", cmds[0]);
    assert_eq!(
        sorted_names(&cmds[1]),
        sorted(&["UserName", "ontSn", "vlan", "iptvContent"])
    );
    assert_eq!(
        (
            cmds[1].param("ontSn"),
            cmds[1].param("vlan"),
            cmds[1].param("iptvContent")
        ),
        ("HWTC0000C0DE", "3000", "GOLD")
    );
    assert_eq!(
        sorted_names(&cmds[2]),
        sorted(&[
            "UserName",
            "ontSn",
            "vlan",
            "ipAddress",
            "sipDomain",
            "voiceOfferId"
        ])
    );
    assert_eq!(
        (
            cmds[2].param("vlan"),
            cmds[2].param("ipAddress"),
            cmds[2].param("sipDomain"),
            cmds[2].param("voiceOfferId")
        ),
        ("2000", "10.200.0.7", "sip.example.net", "VO-1")
    );

    // Modify: MODIFY with the new values.
    let o = t.one(item("Modify", "ADSL", "ADSL", "cmd@x").attr("Speed", "8M"));
    let cmds = t.commands(&assert_ok(&o).unwrap());
    assert_eq!(cmds.len(), 1);
    assert_eq!(
        (
            cmds[0].kind.as_str(),
            cmds[0].param("speed"),
            cmds[0].param("port")
        ),
        ("MODIFY", "8192", "EX01-D1/0/1/0")
    );
    assert_eq!(t.view("cmd@x", "ADSL").speed, "8192");

    // Delete of an FTTH with active add-ons: the add-ons' DEACTIVATE first, then the FTTH's.
    let o = t.one(delete_item("FTTH", "FTTH", "cmd-f@x"));
    let task4 = assert_ok(&o).unwrap();
    let cmds = t.commands(&task4);
    assert_eq!(
        cmds.iter()
            .map(|c| (c.kind.as_str(), c.service_type.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("DEACTIVATE", "IPTV"),
            ("DEACTIVATE", "IP-Phone"),
            ("DEACTIVATE", "FTTH")
        ]
    );
    assert_eq!(
        cmds.iter().map(|c| c.cmd_id.clone()).collect::<Vec<_>>(),
        (1..=3)
            .map(|n| format!("CMD-{task4}-{n}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        sorted_names(&cmds[0]),
        sorted(&["UserName", "ontSn", "vlan", "iptvContent"])
    );
    assert_eq!(cmds[0].param("ontSn"), "HWTC0000C0DE");
    assert_eq!(
        sorted_names(&cmds[2]),
        sorted(&[
            "UserName", "olt", "ponPort", "ontId", "ontSn", "vlan", "speed"
        ])
    );
    // Delete of ADSL: DEACTIVATE for each add-on, then the ADSL.
    let o = t.one(delete_item("ADSL", "ADSL", "cmd@x"));
    let cmds = t.commands(&assert_ok(&o).unwrap());
    assert_eq!(
        cmds.iter()
            .map(|c| c.service_type.as_str())
            .collect::<Vec<_>>(),
        vec!["OptionPack", "Domain/Email", "ADSL"]
    );
    assert_eq!(
        sorted_names(&cmds[2]),
        sorted(&["UserName", "port", "dslamIp", "speed"])
    );
    assert_eq!(cmds[2].param("port"), "EX01-D1/0/1/0");

    // No password in any command.
    let all: Vec<String> = t
        .sql()
        .prepare("SELECT params FROM command")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(all.len(), 3 + 3 + 1 + 3 + 3);
    for p in &all {
        for s in secrets.iter().chain(
            [
                "pppoe-secret-1",
                "iptv-secret-1",
                im_core::demo::DEMO_OM_PASSWORD,
            ]
            .iter(),
        ) {
            assert!(!p.contains(s), "{s} in command params {p}");
        }
        assert!(!p.to_lowercase().contains("password"), "{p}");
    }
}

#[test]
fn the_stored_request_has_no_credentials_and_protected_values_encrypted() {
    let t = TestIm::new();
    let protected = [
        ("Password", "pppoe-REQ-secret"),
        ("Mobile", "0100-REQ-777"),
        ("Email", "req-person@REQ.example"),
        ("IPTV_Password", "iptv-REQ-secret"),
    ];
    let mut it = adsl_install("req@x").field("Colour", "teal-REQ-unknown");
    it = with_value(it, "Password", protected[0].1);
    it = it
        .field(protected[1].0, protected[1].1)
        .attr(" E-mail ", protected[2].1)
        .attr(protected[3].0, protected[3].1);
    let o = t.submit(
        form("REQ-1", "19601")
            .item(it)
            .item(delete_item("ADSL", "ADSL", "req-none@x").field("Password", "del-REQ-secret")),
    );
    assert_code(&o, -1008);
    let o = t.submit(
        form("REQ-1", "19601").item(
            adsl_install("req@x")
                .field("Colour", "teal-REQ-unknown")
                .field("Mobile", protected[1].1)
                .attr(" E-mail ", protected[2].1)
                .attr(protected[3].0, protected[3].1),
        ),
    );
    let task = assert_ok(&o).unwrap();
    let request: String = t
        .sql()
        .query_row(
            "SELECT request FROM task WHERE task_no = ?1",
            [&task],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        !request.contains(im_core::demo::DEMO_OM_PASSWORD),
        "{request}"
    );
    assert!(
        !request.to_lowercase().contains("authpassword"),
        "{request}"
    );
    for (_, v) in &protected[1..] {
        assert!(!request.contains(v), "{v} in {request}");
    }
    assert!(!request.contains("pppoe-secret-1"), "{request}");
    // The rest of the work order is kept, unknown fields included; protected values are kept encrypted.
    for kept in ["teal-REQ-unknown", "EX01", "req@x", "ACC-req@x"] {
        assert!(request.contains(kept), "{kept} missing from {request}");
    }
    let secrets = im_core::secrets::Secrets::load_or_create(&t.key_path()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&request).unwrap();
    let mut decrypted = BTreeSet::new();
    let mut walk = vec![&json];
    while let Some(v) = walk.pop() {
        match v {
            serde_json::Value::String(s) if s.starts_with("enc:") => {
                let hex = &s[4..];
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                decrypted.insert(secrets.decrypt(&bytes).unwrap());
            }
            serde_json::Value::Array(a) => walk.extend(a),
            serde_json::Value::Object(m) => walk.extend(m.values()),
            _ => {}
        }
    }
    let expected: BTreeSet<String> = [
        "pppoe-secret-1",
        protected[1].1,
        protected[2].1,
        protected[3].1,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(decrypted, expected);
    // The service's stored fields hold no protected value either.
    let fields: String = t
        .sql()
        .query_row(
            "SELECT fields FROM service WHERE user_name = 'req@x'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    for (_, v) in &protected {
        assert!(!fields.contains(v), "{v} in {fields}");
    }
}

// ------------------------------------------------------------------ idempotency

#[test]
fn a_duplicate_flow_id_answers_the_original_task_and_compares_content() {
    let t = TestIm::new();
    t.im.set_om_account("OM_second", "second-secret").unwrap();
    let original = || {
        item("Install", "ADSL", "ADSL", "idem@x")
            .field("AccountNumber", "ACC-IDEM")
            .field("CustomerName", "Idem")
            .field("svFlag", "")
            .attr("ExchangeID", "EX01")
            .attr("Speed", "16M")
            .attr("Dslamname", "EX01-D1")
    };
    let o = t.submit(form("IDEM-1", "19601").item(original()));
    let task = assert_ok(&o).unwrap();
    let dup = |f: Form| {
        let o = t.submit(f);
        assert_code(&o, -1003);
        assert_eq!(o.task_no.as_deref(), Some(task.as_str()), "{o:?}");
        assert_eq!(o.flow_id, "IDEM-1");
        o.duplicate_content.unwrap()
    };
    assert_eq!(
        dup(form("IDEM-1", "19601").item(original())),
        DuplicateContent::Same
    );
    // Same content, written differently: field order, attrList vs direct, spelling, spaces,
    // empty fields added or dropped, other (valid) credentials.
    let rewritten = FormItem::default()
        .attr("Dslam Name", " EX01-D1 ")
        .field("speed", "16M ")
        .field("exchange_id", "EX01")
        .attr("customer-name", "Idem")
        .attr("ACCOUNTNUMBER", "ACC-IDEM")
        .field("user_name", " idem@x")
        .attr("ServiceType", "ADSL")
        .attr("CoverType", "ADSL")
        .field("OPERTYPE", "Install")
        .field("Address", "");
    assert_eq!(
        dup(form("IDEM-1", " 19601 ").item(rewritten.clone())),
        DuplicateContent::Same
    );
    let other_account = Form::default()
        .field("authpassword", "second-secret")
        .field("flowId", "IDEM-1")
        .field("authusername", "OM_second")
        .field("popid", "19601")
        .item(rewritten);
    assert_eq!(dup(other_account), DuplicateContent::Same);
    // Different content: another value, another popid, another field, another item.
    assert_eq!(
        dup(form("IDEM-1", "19601").item(with_value(original(), "Speed", "8M"))),
        DuplicateContent::Different
    );
    assert_eq!(
        dup(form("IDEM-1", "19602").item(original())),
        DuplicateContent::Different
    );
    assert_eq!(
        dup(form("IDEM-1", "19601").item(original().field("Address", "Street 1"))),
        DuplicateContent::Different
    );
    assert_eq!(
        dup(form("IDEM-1", "19601")
            .item(original())
            .item(query_item("idem@x"))),
        DuplicateContent::Different
    );
    // Nothing of the duplicates was stored.
    assert_eq!(t.count("SELECT count(*) FROM task"), 1);
    assert_eq!(t.count("SELECT count(*) FROM command"), 1);
}

#[test]
fn a_refused_call_does_not_claim_its_flow_id() {
    let t = TestIm::new();
    for (bad, code_) in [
        (adsl_install("claim@x").attr("Dslamname", "EX01-D9"), -1007),
        (with_value(adsl_install("claim@x"), "Speed", "x"), -1006),
        (item("Modify", "ADSL", "ADSL", "claim@x"), -1008),
    ] {
        assert_code(&t.submit(form("CLAIM-1", "19601").item(bad)), code_);
    }
    assert_code(
        &t.submit(form("CLAIM-1", "19699").item(adsl_install("claim@x"))),
        -1007,
    );
    let o = t.submit(form("CLAIM-1", "19601").item(adsl_install("claim@x")));
    assert_ok(&o);
    let o = t.submit(form("CLAIM-1", "19601").item(adsl_install("claim@x")));
    assert_code(&o, -1003);
    assert_eq!(o.duplicate_content, Some(DuplicateContent::Same));
}

#[test]
fn concurrent_calls_with_one_flow_id_accept_exactly_one() {
    let t = TestIm::new();
    t.warm();
    let n = 64;
    let barrier = Arc::new(Barrier::new(n));
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let im = t.im.clone();
                s.spawn(move || {
                    let f = form("RACE-1", "19601").item(adsl_install("race@x"));
                    barrier.wait();
                    im.submit_blocking(f)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: Vec<_> = outcomes.iter().filter(|o| o.is_success()).collect();
    assert_eq!(accepted.len(), 1, "{outcomes:#?}");
    let task = accepted[0].task_no.clone().unwrap();
    for o in outcomes.iter().filter(|o| !o.is_success()) {
        assert_code(o, -1003);
        assert_eq!(o.task_no.as_deref(), Some(task.as_str()));
        assert_eq!(o.duplicate_content, Some(DuplicateContent::Same));
    }
    assert_eq!(t.count("SELECT count(*) FROM task"), 1);
    assert_eq!(t.count("SELECT count(*) FROM service"), 1);
    assert_eq!(
        t.count("SELECT count(*) FROM port WHERE service_id IS NOT NULL"),
        1
    );
}

// ------------------------------------------------------------------ storage

#[test]
fn group_commit_answers_each_call_and_survives_a_restart() {
    let mut t = TestIm::new();
    t.warm();
    let threads = 16;
    let per_thread = 12;
    let barrier = Arc::new(Barrier::new(threads));
    // (flowId, form, expected code)
    let results: Vec<(String, Form, i32, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|th| {
                let barrier = Arc::clone(&barrier);
                let im = t.im.clone();
                s.spawn(move || {
                    barrier.wait();
                    (0..per_thread)
                        .map(|i| {
                            let flow = format!("GC-{th}-{i}");
                            let user = format!("gc-{th}-{i}@x");
                            let (f, expected) = match i % 4 {
                                0 | 2 => (form(&flow, "19601").item(adsl_install(&user)), 0),
                                1 => (
                                    form(&flow, "19601")
                                        .item(adsl_install(&user).attr("Dslamname", "EX09-D1")),
                                    -1007,
                                ),
                                _ => (
                                    form(&flow, "19601")
                                        .item(item("Delete", "ADSL", "ADSL", &user)),
                                    -1008,
                                ),
                            };
                            let o = im.submit_blocking(f.clone());
                            (flow, f, expected, o)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut accepted = BTreeMap::new();
    for (flow, _, expected, o) in &results {
        assert_eq!(code(o), *expected, "{flow}: {o:?}");
        assert_eq!(&o.flow_id, flow);
        if o.is_success() {
            accepted.insert(flow.clone(), o.task_no.clone().unwrap());
        }
    }
    assert_eq!(accepted.len(), threads * per_thread / 2);
    let distinct: HashSet<_> = accepted.values().collect();
    assert_eq!(distinct.len(), accepted.len(), "task numbers are unique");
    let stats = t.im.writer_stats();
    assert_eq!(stats.jobs as usize, threads * per_thread, "{stats:?}");
    assert!(
        stats.batches < stats.jobs,
        "calls were grouped into fewer transactions: {stats:?}"
    );
    assert_eq!(stats.queue_depth, 0);
    assert_eq!(stats.expired, 0);
    let max_before = accepted.values().map(|n| task_parts(n).1).max().unwrap();

    // Restart: every accepted task is there, and duplicates still answer SAME.
    t.reopen();
    assert_eq!(
        t.count("SELECT count(*) FROM task") as usize,
        accepted.len()
    );
    for (flow, f, expected, _) in &results {
        let o = t.submit(f.clone());
        if *expected == 0 {
            assert_code(&o, -1003);
            assert_eq!(o.task_no.as_ref(), accepted.get(flow));
            assert_eq!(o.duplicate_content, Some(DuplicateContent::Same));
        } else {
            assert_code(&o, *expected);
        }
    }
    // New tasks continue the sequence after a restart.
    let o = t.one(adsl_install("gc-after@x"));
    let (_, seq) = task_parts(&assert_ok(&o).unwrap());
    assert!(seq > max_before, "{seq} after {max_before}");
}

#[test]
fn concurrent_installs_never_hold_a_port_or_ont_twice() {
    let t = TestIm::new();
    t.warm();
    let threads = 32;
    let dsl_per_thread = 20;
    let ftth_per_thread = 6;
    let barrier = Arc::new(Barrier::new(threads));
    let outcomes: Vec<(bool, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|th| {
                let barrier = Arc::clone(&barrier);
                let im = t.im.clone();
                s.spawn(move || {
                    barrier.wait();
                    let mut out = Vec::new();
                    for i in 0..dsl_per_thread {
                        let user = format!("cc-{th}-{i}@x");
                        let it = with_value(adsl_install(&user), "ExchangeID", "EX03");
                        out.push((
                            true,
                            im.submit_blocking(form(&format!("CC-D-{th}-{i}"), "19603").item(it)),
                        ));
                        if i < ftth_per_thread {
                            let it = with_value(
                                ftth_install(
                                    &format!("ccf-{th}-{i}@x"),
                                    &format!("HWTC{:04X}{:04X}", th, i),
                                ),
                                "CompoundId",
                                "CP03",
                            );
                            out.push((
                                false,
                                im.submit_blocking(
                                    form(&format!("CC-F-{th}-{i}"), "19603").item(it),
                                ),
                            ));
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for (_, o) in &outcomes {
        assert_ok(o);
    }
    let ports: Vec<_> = outcomes
        .iter()
        .filter(|(d, _)| *d)
        .map(|(_, o)| o.items[0].port.clone())
        .collect();
    let distinct: HashSet<_> = ports.iter().collect();
    assert_eq!(ports.len(), threads * dsl_per_thread);
    assert_eq!(distinct.len(), ports.len(), "no port given twice");
    assert!(
        ports
            .iter()
            .all(|p| p.starts_with("EX03-D1/") || p.starts_with("EX03-D2/")),
        "ADSL DSLAMs only"
    );
    // In SQL: one held port per accepted Install, each held by an active ADSL service of its own.
    assert_eq!(
        t.count("SELECT count(*) FROM port WHERE service_id IS NOT NULL") as usize,
        ports.len()
    );
    assert_eq!(
        t.count("SELECT count(DISTINCT service_id) FROM port WHERE service_id IS NOT NULL")
            as usize,
        ports.len()
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM port p JOIN service s ON s.id = p.service_id \
             WHERE s.state = 'ACTIVE' AND s.service_type = 'ADSL' AND p.state = 'AVAILABLE'"
        ) as usize,
        ports.len()
    );
    // Auto-pick is dense: the held ports are exactly the first free ones in pick order.
    let holes = t.count(
        "SELECT count(*) FROM port p JOIN dslam d ON d.id = p.dslam_id \
         WHERE d.name IN ('EX03-D1', 'EX03-D2') AND p.service_id IS NULL AND p.state = 'AVAILABLE' \
         AND p.frame * 1000000 + p.slot * 1000 + p.port < (SELECT max(q.frame * 1000000 + q.slot * 1000 + q.port) \
             FROM port q WHERE q.dslam_id = p.dslam_id AND q.service_id IS NOT NULL)",
    );
    assert_eq!(holes, 0, "no free port before a held one");
    assert_eq!(t.count("SELECT count(*) FROM port p JOIN dslam d ON d.id = p.dslam_id WHERE d.name = 'EX03-D1' AND p.service_id IS NULL AND p.state = 'AVAILABLE'"), 0, "EX03-D1 is filled before EX03-D2");
    // FTTH: every ONT placed once, ids unique and dense per PON port.
    let n_ftth = threads * ftth_per_thread;
    assert_eq!(
        t.count("SELECT count(*) FROM ont WHERE service_id IS NOT NULL") as usize,
        n_ftth
    );
    assert_eq!(t.count("SELECT count(*) FROM (SELECT pon_port_id, ont_id FROM ont GROUP BY 1, 2 HAVING count(*) > 1)"), 0);
    assert_eq!(t.count("SELECT count(*) FROM (SELECT pon_port_id FROM ont GROUP BY 1 HAVING max(ont_id) + 1 <> count(*))"), 0);
    assert_eq!(
        t.count(
            "SELECT count(*) FROM ont t WHERE t.pon_port_id NOT IN \
             (SELECT cp.pon_port_id FROM compound_pon cp JOIN compound c ON c.id = cp.compound_id WHERE c.code = 'CP03')"
        ),
        0
    );
    assert_eq!(
        t.count("SELECT count(*) FROM task") as usize,
        outcomes.len()
    );
}

#[test]
fn protected_values_never_reach_the_database_file_in_clear() {
    let t = TestIm::new();
    let secrets = [
        "PPPoE-Plain-7f3a91",
        "Mobile-Plain-0109988",
        "mail-plain-5c2e@leak.example",
        "IPTV-Plain-d41d8c",
        "PPPoE-Modified-22bd1e",
        "Mobile-Modified-99001",
    ];
    let visible = "Visible-Customer-Name-4e1f";
    let o = t.submit(
        form("LEAK-1", "19601")
            .item(
                with_value(
                    ftth_install("leak@x", "HWTC0000EEEE"),
                    "CustomerName",
                    visible,
                )
                .field("Password", secrets[0])
                .field("Mobile", secrets[1])
                .field("Email", secrets[2]),
            )
            .item(with_value(
                iptv_install("leak@x"),
                "IPTVPassword",
                secrets[3],
            )),
    );
    assert_ok(&o);
    t.ok(item("Modify", "FTTH", "FTTH", "leak@x")
        .field("Password", secrets[4])
        .field("Mobile", secrets[5])
        .field("AccountNumber", "ACC-leak@x"));
    // A refused call carrying them, and a Delete carrying them.
    assert_code(
        &t.one(
            with_value(adsl_install("leak2@x"), "Speed", "bad")
                .field("Password", secrets[0])
                .field("Email", secrets[2]),
        ),
        -1006,
    );
    t.ok(delete_item("FTTH", "IPTV", "leak@x")
        .attr("IPTVPassword", secrets[3])
        .field("Mobile", secrets[1]));
    // None in any answer.
    let text = format!("{:?}{:?}", t.query("leak@x"), o);
    for s in secrets {
        assert!(!text.contains(s), "{s} in an answer");
    }

    // The stored values are encrypted with the key file's key, and only that key opens them.
    let mobile: Vec<u8> = t
        .sql()
        .query_row(
            "SELECT mobile_enc FROM customer WHERE account_number = 'ACC-leak@x'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let password: Vec<u8> = t
        .sql()
        .query_row(
            "SELECT password_enc FROM service WHERE user_name = 'leak@x' AND service_type = 'FTTH'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let right = im_core::secrets::Secrets::load_or_create(&t.key_path()).unwrap();
    assert_eq!(right.decrypt(&mobile).unwrap(), secrets[5]);
    assert_eq!(right.decrypt(&password).unwrap(), secrets[4]);
    let wrong = im_core::secrets::Secrets::load_or_create(&t.dir.path().join("other.key")).unwrap();
    assert!(wrong.decrypt(&mobile).is_err());
    assert!(wrong.decrypt(&password).is_err());

    // The key file is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(t.key_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }

    // Raw bytes of the database and its WAL after close.
    t.im.close();
    let mut bytes = std::fs::read(t.db_path()).unwrap();
    for ext in ["db-wal", "db-journal"] {
        if let Ok(b) = std::fs::read(t.db_path().with_extension(ext)) {
            bytes.extend(b);
        }
    }
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains(visible), "sanity: the scan sees ordinary values");
    for s in secrets {
        assert!(!contains(s), "{s} is in the database file in clear");
    }
    assert!(
        !contains(im_core::demo::DEMO_OM_PASSWORD),
        "the OM password is stored as a hash only"
    );
}

#[test]
fn later_items_of_a_call_see_the_earlier_ones() {
    let t = TestIm::new();
    let on = |it: FormItem, slot: &str, port: &str| {
        it.attr("Dslamname", "EX01-D1")
            .attr("FrameNumber", "0")
            .attr("SlotNumber", slot)
            .attr("PortNumber", port)
    };
    // Install, move, and a second Install taking the freed port; a Query at the end sees it all.
    let f = form("SEQ-1", "19601")
        .item(adsl_install("seq-a@x"))
        .item(on(item("Modify", "ADSL", "ADSL", "seq-a@x"), "5", "5"))
        .item(adsl_install("seq-b@x"))
        .item(query_item("seq-a@x"));
    let o = t.submit(f);
    assert_ok(&o);
    assert_eq!(
        o.items.iter().map(|i| i.port.as_str()).collect::<Vec<_>>(),
        vec!["EX01-D1/0/1/0", "EX01-D1/0/5/5", "EX01-D1/0/1/0", ""]
    );
    assert_eq!(o.items[3].services.len(), 1);
    assert_eq!(o.items[3].services[0].port, "EX01-D1/0/5/5");
    let cmds = t.commands(o.task_no.as_deref().unwrap());
    assert_eq!(
        cmds.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>(),
        vec!["ACTIVATE", "MODIFY", "ACTIVATE"]
    );
    // Install then Delete in one call; then the add-on deleted before its FTTH: no second DEACTIVATE.
    let f = form("SEQ-2", "19601")
        .item(ftth_install("seq-f@x", "HWTC00005E05"))
        .item(iptv_install("seq-f@x"))
        .item(delete_item("FTTH", "IPTV", "seq-f@x"))
        .item(delete_item("FTTH", "FTTH", "seq-f@x"));
    let o = t.submit(f);
    assert_ok(&o);
    let cmds = t.commands(o.task_no.as_deref().unwrap());
    assert_eq!(
        cmds.iter()
            .map(|c| (c.kind.as_str(), c.service_type.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("ACTIVATE", "FTTH"),
            ("ACTIVATE", "IPTV"),
            ("DEACTIVATE", "IPTV"),
            ("DEACTIVATE", "FTTH")
        ]
    );
    assert!(t.query("seq-f@x").iter().all(|s| s.state == "INACTIVE"));
    assert_eq!(t.ont_place("HWTC00005E05").unwrap().2, None);
    // Two FTTH Installs with one ONT in one call: the second finds it held.
    let f = form("SEQ-3", "19601")
        .item(ftth_install("seq-g@x", "HWTC00005E06"))
        .item(ftth_install("seq-h@x", "HWTC00005E06"));
    let o = t.submit(f);
    assert_code(&o, -1009);
    assert!(o.error_desc.starts_with("item 2:"), "{o:?}");
    assert_eq!(
        t.ont_place("HWTC00005E06"),
        None,
        "nothing of the refused call stays"
    );
}

#[test]
fn concurrent_late_refusals_leave_nothing_behind() {
    let t = TestIm::new();
    t.warm();
    t.ok(ftth_install("pre-f@x", "HWTC0000AAAA"));
    t.ok(adsl_install("pre-a@x"));
    let port = |it: FormItem, slot: &str, p: &str| {
        it.attr("Dslamname", "EX01-D1")
            .attr("FrameNumber", "0")
            .attr("SlotNumber", slot)
            .attr("PortNumber", p)
    };
    let threads = 16;
    let barrier = Arc::new(Barrier::new(threads));
    let results: Vec<(usize, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|th| {
                let barrier = Arc::clone(&barrier);
                let im = t.im.clone();
                s.spawn(move || {
                    barrier.wait();
                    (0..8)
                        .map(|kind| {
                            let user = format!("mix-{th}-{kind}@x");
                            let it = match kind {
                                0 => adsl_install(&user),
                                1 => ftth_install(&user, &format!("HWTC{th:04X}{kind:04X}")),
                                // Refused only after the inventory has been read:
                                2 => ftth_install(&user, "HWTC0000AAAA").field("Mobile", "0100"),
                                3 => port(adsl_install(&user), "2", "9"),
                                4 => iptv_install("pre-f@x").attr("ONTSN", "HWTC0000BBBB"),
                                5 => port(
                                    item("Modify", "ADSL", "ADSL", "pre-a@x").attr("Speed", "1M"),
                                    "3",
                                    "9",
                                ),
                                6 => port(adsl_install(&user).field("Mobile", "0101"), "8", "63"),
                                _ => adsl_install("pre-a@x"),
                            };
                            (
                                kind,
                                im.submit_blocking(
                                    form(&format!("MIX-{th}-{kind}"), "19601").item(it),
                                ),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for (kind, o) in &results {
        let expected = [0, 0, -1009, -1009, -1006, -1009, -1009, -1008][*kind];
        assert_eq!(code(o), expected, "kind {kind}: {o:?}");
    }
    let accepted = threads * 2;
    assert_eq!(t.count("SELECT count(*) FROM task") as usize, 2 + accepted);
    assert_eq!(
        t.count("SELECT count(*) FROM service") as usize,
        2 + accepted
    );
    assert_eq!(
        t.count("SELECT count(*) FROM customer") as usize,
        2 + accepted
    );
    assert_eq!(
        t.count("SELECT count(*) FROM command") as usize,
        2 + accepted
    );
    assert_eq!(t.count("SELECT count(*) FROM ont") as usize, 1 + threads);
    assert_eq!(
        t.count("SELECT count(*) FROM port WHERE service_id IS NOT NULL") as usize,
        1 + threads
    );
    assert_eq!(t.count("SELECT count(*) FROM service WHERE user_name LIKE 'mix-%-2@x' OR user_name LIKE 'mix-%-3@x' OR user_name LIKE 'mix-%-6@x'"), 0);
    let pre = t.view("pre-a@x", "ADSL");
    assert_eq!(
        (pre.port.as_str(), pre.speed.as_str()),
        ("EX01-D1/0/1/0", "16384"),
        "refused Modifies changed nothing"
    );
    assert_eq!(
        t.ont_place("HWTC0000AAAA").unwrap().2.as_deref(),
        Some("pre-f@x")
    );
    assert_eq!(
        t.count("SELECT count(*) FROM service WHERE service_type = 'IPTV'"),
        0
    );
}

#[test]
fn constraints_still_refuse_bad_rows_after_the_schema_edit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("im.db");
    {
        let im = Im::open(CoreConfig::new(&path)).unwrap();
        im_core::demo::install_if_empty(&im).unwrap();
        assert_ok(&im.submit_blocking(form("CHK-1", "19601").item(adsl_install("chk@x"))));
        im.close();
    }
    let sql = rusqlite::Connection::open(&path).unwrap();
    // The lists are written as OR chains now (no temporary b-tree per row).
    let task_sql: String = sql
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'task'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(task_sql.contains("state = 'RECEIVED' OR"), "{task_sql}");
    assert!(!task_sql.contains("IN ('RECEIVED'"), "{task_sql}");
    // The holder columns keep their unique indexes, without a foreign key.
    let port_sql: String = sql
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'port'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(port_sql.contains("service_id INTEGER,"), "{port_sql}");
    let e = sql
        .execute(
            "UPDATE port SET service_id = (SELECT service_id FROM port WHERE service_id IS NOT NULL) \
             WHERE id = (SELECT min(id) FROM port WHERE service_id IS NULL)",
            [],
        )
        .expect_err("a second holder of one service");
    assert!(e.to_string().contains("UNIQUE constraint failed"), "{e}");
    let refused = |stmt: &str| {
        let e = sql.execute(stmt, []).expect_err(stmt);
        assert!(
            e.to_string().contains("CHECK constraint failed"),
            "{stmt}: {e}"
        );
    };
    refused("UPDATE task SET state = 'BOGUS'");
    refused("UPDATE command SET state = 'LOST'");
    refused("UPDATE command SET type = 'REBOOT'");
    refused("UPDATE port SET state = 'MELTED' WHERE id = 1");
    refused("UPDATE vlan SET state = 'available' WHERE id = 1");
    // Every value the lists allowed is still allowed.
    for s in ["RECEIVED", "ACTIVATING", "COMPLETED", "FAILED", "CANCELLED"] {
        sql.execute("UPDATE task SET state = ?1", [s]).expect(s);
    }
    for s in ["PENDING", "DELIVERED", "FAILED", "DROPPED"] {
        sql.execute("UPDATE command SET state = ?1", [s]).expect(s);
    }
    for s in ["AVAILABLE", "OCCUPIED", "FAULTY"] {
        sql.execute("UPDATE port SET state = ?1 WHERE id = 1", [s])
            .expect(s);
    }
    drop(sql);
    // And the database opens again at the same version.
    Im::open(CoreConfig::new(&path)).unwrap().close();
}

/// The port an accepted single-item Install got.
fn port_of(o: &Outcome) -> String {
    assert_ok(o);
    o.items[0].port.clone()
}

#[test]
fn the_first_free_port_is_picked_after_frees_rollbacks_and_outside_changes() {
    let t = TestIm::new();
    let install = |n: &str| {
        t.submit(form(&format!("PICK-{n}"), "19601").item(adsl_install(&format!("pick-{n}@x"))))
    };
    // Port numbers ending in 9 are OCCUPIED in the demo inventory.
    let first: Vec<String> = (0..12).map(|i| port_of(&install(&i.to_string()))).collect();
    let expected: Vec<String> = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12]
        .iter()
        .map(|p| format!("EX01-D1/0/1/{p}"))
        .collect();
    assert_eq!(first, expected);

    // A freed port before the others is the next one picked.
    assert_ok(&t.submit(form("PICK-DEL-3", "19601").item(delete_item("ADSL", "ADSL", "pick-3@x"))));
    assert_eq!(port_of(&install("after-delete")), "EX01-D1/0/1/3");
    assert_eq!(port_of(&install("next")), "EX01-D1/0/1/13");

    // A call whose last item fails takes nothing: the ports its first items
    // had picked are free again, the first of them the next one picked.
    let o = t.submit(
        form("PICK-ROLLBACK", "19601")
            .item(adsl_install("pick-rolled-back-1@x"))
            .item(adsl_install("pick-rolled-back-2@x"))
            .item(item("Modify", "ADSL", "ADSL", "nobody@x").field("Speed", "8M")),
    );
    assert_ne!(o.error_code, ErrorCode::Success, "{o:?}");
    assert_eq!(port_of(&install("after-rollback")), "EX01-D1/0/1/14");

    // Another connection makes an earlier port free (a repair, another
    // process's sync): the writer sees it at its next batch.
    let rw = rusqlite::Connection::open(t.db_path()).unwrap();
    rw.execute(
        "UPDATE port SET state = 'AVAILABLE' WHERE frame = 0 AND slot = 1 AND port = 9 \
         AND dslam_id = (SELECT id FROM dslam WHERE name = 'EX01-D1')",
        [],
    )
    .unwrap();
    drop(rw);
    assert_eq!(port_of(&install("after-outside-change")), "EX01-D1/0/1/9");
    assert_eq!(port_of(&install("last")), "EX01-D1/0/1/15");
}
