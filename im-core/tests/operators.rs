//! The operators' side of the core on a real SQLite file: roles and their
//! union, masked and clear values, the queries, manual inventory changes
//! with their resource-log rows, task actions, and the operation log.

mod common;

use common::{TestIm, adsl_install, form, ftth_install};
use im_core::access::{Action, Area, MASK};
use im_core::audit::{LogFilter, OpAction, OpOutcome, Operation};
use im_core::lifecycle::OperatorAction;
use im_core::login::AuthMode;
use im_core::model::TaskState;
use im_core::operator::{Actor, OpError, PageRequest};
use im_core::query::{InventoryQuery, ServiceSearch, TaskSearch};
use im_core::sync::Resource;
use std::collections::BTreeMap;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

#[test]
fn built_in_roles_and_their_union() {
    let t = TestIm::new();
    let rt = rt();
    rt.block_on(t.im.create_account(
        "both",
        "",
        AuthMode::Local,
        Some("pw-both"),
        &["ROLE_VIEWER", "ROLE_TECH_L1"],
    ))
    .expect("account");
    rt.block_on(t.im.create_account(
        "view",
        "",
        AuthMode::Local,
        Some("pw-view"),
        &["ROLE_VIEWER"],
    ))
    .expect("account");
    let both = rt
        .block_on(t.im.access("BOTH"))
        .expect("read")
        .expect("enabled");
    assert_eq!(both.account, "both");
    assert!(both.allows(Area::Tasks, Action::Modify));
    assert!(both.allows(Area::Inventory, Action::Read));
    assert!(!both.allows(Area::Users, Action::Read));
    assert!(!both.allows(Area::Logs, Action::Read));
    let view = rt
        .block_on(t.im.access("view"))
        .expect("read")
        .expect("enabled");
    assert!(!view.allows(Area::Tasks, Action::Modify));
    assert!(view.visible.is_empty());
    let roles = rt.block_on(t.im.roles()).expect("roles");
    let admin = roles
        .iter()
        .find(|r| r.code == "ROLE_ADMIN")
        .expect("admin role");
    assert!(
        Area::ALL
            .iter()
            .all(|a| admin.permissions.allows(*a, Action::Read))
    );
    assert!(
        roles
            .iter()
            .any(|r| r.code == "ROLE_OM_INTERFACE" && r.om_interface)
    );
    rt.block_on(t.im.set_enabled("view", false))
        .expect("disable");
    assert_eq!(rt.block_on(t.im.access("view")).expect("read"), None);
    assert_eq!(rt.block_on(t.im.access("nobody")).expect("read"), None);
}

#[test]
fn queries_mask_what_a_role_may_not_see() {
    let t = TestIm::new();
    let rt = rt();
    let o = t.submit(
        form("OPS-1", "19601").item(
            adsl_install("ops-user@x")
                .field("Mobile", "01112223334")
                .field("Email", "ops@x.example"),
        ),
    );
    assert_eq!(o.return_code(), 0, "{o:?}");
    let task_no = o.task_no.expect("task");
    rt.block_on(t.im.create_account("adm", "", AuthMode::Local, Some("pw"), &["ROLE_ADMIN"]))
        .expect("account");
    rt.block_on(t.im.create_account("v", "", AuthMode::Local, Some("pw"), &["ROLE_VIEWER"]))
        .expect("account");
    let admin = rt
        .block_on(t.im.access("adm"))
        .expect("read")
        .expect("access");
    let viewer = rt
        .block_on(t.im.access("v"))
        .expect("read")
        .expect("access");

    let page = rt
        .block_on(t.im.search_services(ServiceSearch {
            account_number: Some("ACC-ops-user@x".into()),
            ..ServiceSearch::default()
        }))
        .expect("search");
    assert_eq!(page.items.len(), 1);
    let row = &page.items[0];
    assert_eq!(row.user_name, "ops-user@x");
    assert!(row.port.starts_with("EX01-D"), "{row:?}");
    let by_port = rt
        .block_on(t.im.search_services(ServiceSearch {
            port: Some(row.port.clone()),
            ..ServiceSearch::default()
        }))
        .expect("search");
    assert_eq!(by_port.items[0].id, row.id);
    let bad = rt.block_on(t.im.search_services(ServiceSearch {
        port: Some("EX01".into()),
        ..ServiceSearch::default()
    }));
    assert!(matches!(bad, Err(OpError::Invalid(_))));

    let seen = rt
        .block_on(t.im.service_detail(row.id, &viewer))
        .expect("detail");
    assert_eq!(seen.password.as_deref(), Some(MASK));
    let c = seen.customer.expect("customer");
    assert_eq!(c.mobile.as_deref(), Some(MASK));
    assert_eq!(c.email.as_deref(), Some(MASK));
    assert_eq!(seen.history.len(), 1);
    assert_eq!(seen.history[0].task_no, task_no);
    assert!(
        seen.resources
            .iter()
            .any(|r| r.kind == "port" && r.code == row.port)
    );
    let clear = rt
        .block_on(t.im.service_detail(row.id, &admin))
        .expect("detail");
    assert_eq!(clear.password.as_deref(), Some("pppoe-secret-1"));
    assert_eq!(
        clear.customer.expect("customer").mobile.as_deref(),
        Some("01112223334")
    );

    let d = rt
        .block_on(t.im.task_detail(&task_no, &viewer))
        .expect("task");
    let text = d.request.to_string();
    assert!(
        !text.contains("pppoe-secret-1") && !text.contains("01112223334"),
        "{text}"
    );
    let d = rt
        .block_on(t.im.task_detail(&task_no, &admin))
        .expect("task");
    assert!(d.request.to_string().contains("pppoe-secret-1"));
    assert!(matches!(
        rt.block_on(t.im.task_detail("WS-none", &admin)),
        Err(OpError::NotFound(_))
    ));

    let tasks = rt
        .block_on(t.im.search_tasks(TaskSearch {
            state: Some(TaskState::Received),
            from: Some("2000-01-01".into()),
            ..TaskSearch::default()
        }))
        .expect("tasks");
    assert!(tasks.items.iter().any(|r| r.task_no == task_no));
    let none = rt
        .block_on(t.im.search_tasks(TaskSearch {
            state: Some(TaskState::Failed),
            ..TaskSearch::default()
        }))
        .expect("tasks");
    assert!(none.items.is_empty());
}

#[test]
fn task_actions_and_the_operation_log() {
    let t = TestIm::new();
    let rt = rt();
    let o = t.submit(form("OPS-2", "19601").item(ftth_install("ftth-ops@x", "HWTC0000AA01")));
    assert_eq!(o.return_code(), 0, "{o:?}");
    let task_no = o.task_no.expect("task");
    let ops = Actor::new("ops1", "10.0.0.9");
    let r = rt.block_on(t.im.task_action(&ops, OperatorAction::Cancel, &task_no, " "));
    assert!(
        matches!(r, Err(OpError::Invalid(_))),
        "a reason is required"
    );
    let r = rt.block_on(t.im.task_action(&ops, OperatorAction::Redo, &task_no, "retry"));
    assert!(
        matches!(r, Err(OpError::Conflict(_))),
        "only a failed task is redone: {r:?}"
    );
    let r = rt.block_on(t.im.task_action(&ops, OperatorAction::Cancel, "WS-none", "x"));
    assert!(matches!(r, Err(OpError::NotFound(_))));
    let s = rt
        .block_on(t.im.task_action(&ops, OperatorAction::Cancel, &task_no, "customer withdrew"))
        .expect("cancel");
    assert_eq!(s, TaskState::Cancelled);
    let outbox = rt
        .block_on(t.im.outbox(
            Some(im_core::model::CommandState::Dropped),
            PageRequest::default(),
        ))
        .expect("outbox");
    assert!(!outbox.items.is_empty());
    assert!(outbox.items.iter().all(|c| c.task_no == task_no));

    rt.block_on(t.im.record_operation(
        &Actor::new("v", "10.0.0.7"),
        Operation {
            action: OpAction::Modify,
            area: "tasks".into(),
            target: task_no.clone(),
            outcome: OpOutcome::Denied,
            detail: "FORBIDDEN".into(),
        },
    ))
    .expect("log");
    let log = rt
        .block_on(t.im.operation_log(LogFilter {
            ip: Some("10.0.0.9".into()),
            ..LogFilter::default()
        }))
        .expect("log");
    assert_eq!(log.items.len(), 1, "{log:?}");
    assert_eq!(log.items[0].account, "ops1");
    assert_eq!(log.items[0].target, task_no);
    assert!(log.items[0].detail.contains("customer withdrew"));
    let denied = rt
        .block_on(t.im.operation_log(LogFilter {
            kind: Some("denied".into()),
            ..LogFilter::default()
        }))
        .expect("log");
    assert_eq!(denied.items.len(), 1);
    assert_eq!(denied.items[0].account, "v");
    let future = rt
        .block_on(t.im.operation_log(LogFilter {
            from: Some("2999-01-01".into()),
            ..LogFilter::default()
        }))
        .expect("log");
    assert!(future.items.is_empty());
    let rw = rusqlite::Connection::open(t.db_path()).expect("open");
    assert!(rw.execute("DELETE FROM operation_log", []).is_err());
    assert!(
        rw.execute("UPDATE operation_log SET account = 'x'", [])
            .is_err()
    );
}

#[test]
fn inventory_by_hand_is_logged_and_guarded() {
    let t = TestIm::new();
    let rt = rt();
    let o = t.submit(form("OPS-3", "19601").item(adsl_install("held@x")));
    assert_eq!(o.return_code(), 0, "{o:?}");
    let adm = Actor::new("adm", "10.1.1.1");
    let mut v = BTreeMap::new();
    v.insert("name".to_string(), serde_json::json!("EX01-D99"));
    v.insert("exchange".to_string(), serde_json::json!("EX01"));
    v.insert("ip".to_string(), serde_json::json!("10.9.9.9"));
    v.insert("model".to_string(), serde_json::json!("MA5600T"));
    v.insert("technology".to_string(), serde_json::json!("adsl"));
    let row = rt
        .block_on(t.im.add_inventory(&adm, Resource::Dslam, v.clone()))
        .expect("add");
    assert_eq!(row.code, "EX01-D99");
    assert_eq!(row.fields["technology"], "ADSL");
    assert!(matches!(
        rt.block_on(t.im.add_inventory(&adm, Resource::Dslam, v)),
        Err(OpError::Conflict(_))
    ));
    let mut change = BTreeMap::new();
    change.insert("ip".to_string(), serde_json::json!("10.9.9.10"));
    rt.block_on(t.im.modify_inventory(&adm, Resource::Dslam, "EX01-D99", change))
        .expect("modify");
    let log = rt
        .block_on(t.im.resource_log(LogFilter {
            account: Some("adm".into()),
            ..LogFilter::default()
        }))
        .expect("log");
    assert_eq!(log.items.len(), 2);
    assert_eq!(log.items[0].operation, "MODIFY");
    assert_eq!(
        log.items[0].old_values.as_deref(),
        Some(r#"{"ip":"10.9.9.9"}"#)
    );
    assert_eq!(
        log.items[0].new_values.as_deref(),
        Some(r#"{"ip":"10.9.9.10"}"#)
    );
    assert_eq!(log.items[0].ip, "10.1.1.1");

    // A DSLAM with a held port, and the port itself, stay.
    let held = t.im.query_services_blocking_port("held@x");
    let r = rt.block_on(t.im.remove_inventory(&adm, Resource::Port, &held));
    assert!(matches!(r, Err(OpError::ResourceHeld(_))), "{r:?}");
    let dslam = held.rsplitn(4, '/').last().expect("dslam").to_string();
    let r = rt.block_on(t.im.remove_inventory(&adm, Resource::Dslam, &dslam));
    assert!(matches!(r, Err(OpError::ResourceHeld(_))), "{r:?}");
    let removed = rt
        .block_on(t.im.remove_inventory(&adm, Resource::Dslam, "EX01-D99"))
        .expect("remove a free DSLAM");
    assert!(removed.removed);

    let listed = rt
        .block_on(t.im.inventory(InventoryQuery {
            resource: Resource::Port,
            parent: Some(dslam.clone()),
            search: None,
            state: Some("available".into()),
            include_removed: false,
            page: PageRequest::new(5, None).expect("page"),
        }))
        .expect("ports");
    assert_eq!(listed.items.len(), 5);
    assert!(listed.next_before.is_some());
    assert!(listed.items.iter().all(|p| p.holder.is_none()));
    let summary = rt.block_on(t.im.exchange_summary("EX01")).expect("summary");
    assert_eq!(summary.in_service, 1);
    assert!(summary.free > 0 && summary.total >= summary.free + summary.in_service);
    let olt = rt.block_on(t.im.olt_summary("OLT01")).expect("olt summary");
    assert_eq!(olt.pon_ports, 16);
    assert_eq!(olt.capacity, 16 * 128);
    assert!(matches!(
        rt.block_on(t.im.olt_summary("OLT-NONE")),
        Err(OpError::NotFound(_))
    ));
}

trait HeldPort {
    fn query_services_blocking_port(&self, user: &str) -> String;
}

impl HeldPort for im_core::Im {
    fn query_services_blocking_port(&self, user: &str) -> String {
        let rt = rt();
        let page = rt
            .block_on(self.search_services(ServiceSearch {
                user_name: Some(user.into()),
                ..ServiceSearch::default()
            }))
            .expect("search");
        page.items[0].port.clone()
    }
}
