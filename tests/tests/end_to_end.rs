//! OM → IM end to end, in one process: the typed OM client (gb2312 on the
//! wire) against the SOAP server over loopback, on a SQLite file with the
//! demo inventory. A subscriber's whole life: FTTH and IPTV installed in one
//! call, queried, modified, deleted; what OM sees and what IM stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use im_core::model::{CoverType, OperType, ServiceType};
use im_core::{ErrorCode, Im};
use im_soap::{ClientConfig, OmClient, Server, ServerConfig, WorkItem, WorkOrder};
use std::net::SocketAddr;

const ARABIC_NAME: &str = "\u{623}\u{62d}\u{645}\u{62f} \u{62d}\u{633}\u{646} 开罗";

async fn server(dir: &std::path::Path) -> (String, Im, tokio::sync::oneshot::Sender<()>) {
    let cfg = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        database: dir.join("im.db"),
        ..ServerConfig::default()
    };
    let im = Im::open(cfg.core_config()).unwrap();
    im_core::demo::install_if_empty(&im).unwrap();
    let server = Server::bind(cfg, im.clone()).await.unwrap();
    let url = server.url();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async {
        let _ = rx.await;
    }));
    (url, im, tx)
}

fn order(flow: &str) -> WorkOrder {
    WorkOrder::new(
        im_core::demo::DEMO_OM_USER,
        im_core::demo::DEMO_OM_PASSWORD,
        flow,
        "19603",
    )
}

fn item(op: OperType, service: ServiceType) -> WorkItem {
    WorkItem::new(
        op,
        Some(CoverType::Ftth),
        Some(service),
        "life@tedata.net.eg",
    )
}

fn query(flow: &str) -> WorkOrder {
    order(flow).item(WorkItem::new(
        OperType::Query,
        None,
        None,
        "life@tedata.net.eg",
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribers_life_from_install_to_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (url, im, stop) = server(dir.path()).await;
    let client = OmClient::new(ClientConfig::new(&url)).unwrap();

    // FTTH and its IPTV in one call; the Arabic name travels as numeric
    // references inside a gb2312 message.
    let install = order("LIFE-1")
        .item(
            item(OperType::Install, ServiceType::Ftth)
                .field("AccountNumber", "70001")
                .field("CustomerName", ARABIC_NAME)
                .field("Mobile", "01099998888")
                .field("Password", "ppp-life")
                .attr("CompoundId", "CP03")
                .attr("ONTSN", "485754431A2B3C4D")
                .attr("Speed", "100M"),
        )
        .item(
            item(OperType::Install, ServiceType::Iptv)
                .attr("IPTVContent", "GOLD")
                .attr("IPTVPassword", "iptv-life"),
        );
    let o = client.send(&install).await.unwrap();
    assert_eq!(o.error_code, ErrorCode::Success, "{o:?}");
    assert_eq!(o.items.len(), 2);
    assert_eq!(o.items[0].ont_sn, "HWTC1A2B3C4D");
    assert_eq!(o.items[0].vlan, "100");
    assert_eq!(o.items[1].vlan, "3000");
    let task = o.task_no.clone().unwrap();
    assert!(task.starts_with("WS") && task.len() >= 16, "{task}");

    // Query: both services, the name back as the same Unicode.
    let q = client.send(&query("LIFE-Q1")).await.unwrap();
    assert_eq!(q.error_code, ErrorCode::Success, "{q:?}");
    let services = &q.items[0].services;
    assert_eq!(services.len(), 2, "{services:?}");
    assert!(
        services
            .iter()
            .all(|s| s.state == "ACTIVE" && s.customer_name == ARABIC_NAME)
    );
    assert!(
        services
            .iter()
            .all(|s| s.ont_sn == "HWTC1A2B3C4D" && s.compound == "CP03")
    );

    // Modify the speed; a resend of the same call is a duplicate.
    let modify =
        order("LIFE-2").item(item(OperType::Modify, ServiceType::Ftth).attr("Speed", "200M"));
    assert!(client.send(&modify).await.unwrap().is_success());
    let again = client.send(&modify).await.unwrap();
    assert_eq!(again.error_code, ErrorCode::DuplicateFlowId);
    assert_eq!(
        again.duplicate_content,
        Some(im_core::DuplicateContent::Same)
    );
    let q = client.send(&query("LIFE-Q2")).await.unwrap();
    let ftth = q.items[0]
        .services
        .iter()
        .find(|s| s.service_type == "FTTH")
        .unwrap();
    assert_eq!(ftth.speed, "204800");

    // Delete the broadband: its IPTV goes with it, the ONT is freed.
    let delete = order("LIFE-3").item(item(OperType::Delete, ServiceType::Ftth));
    assert!(client.send(&delete).await.unwrap().is_success());
    let q = client.send(&query("LIFE-Q3")).await.unwrap();
    assert!(
        q.items[0].services.iter().all(|s| s.state == "INACTIVE"),
        "{q:?}"
    );

    // What IM stored: 4 tasks' worth of commands in order, no secrets.
    stop.send(()).unwrap();
    im.close();
    let db = rusqlite::Connection::open(dir.path().join("im.db")).unwrap();
    let mut st = db
        .prepare("SELECT c.type, c.service_type, c.params FROM command c ORDER BY c.id")
        .unwrap();
    let cmds: Vec<(String, String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let kinds: Vec<(&str, &str)> = cmds
        .iter()
        .map(|(k, s, _)| (k.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("ACTIVATE", "FTTH"),
            ("ACTIVATE", "IPTV"),
            ("MODIFY", "FTTH"),
            ("DEACTIVATE", "IPTV"),
            ("DEACTIVATE", "FTTH")
        ]
    );
    for (_, _, params) in &cmds {
        assert!(
            !params.contains("ppp-life") && !params.contains("iptv-life"),
            "{params}"
        );
    }
    let ont_holder: Option<i64> = db
        .query_row(
            "SELECT service_id FROM ont WHERE serial = 'HWTC1A2B3C4D'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ont_holder, None, "the ONT is free after the Delete");
    let mut raw = std::fs::read(dir.path().join("im.db")).unwrap();
    raw.extend(std::fs::read(dir.path().join("im.db-wal")).unwrap_or_default());
    for secret in ["ppp-life", "iptv-life", "01099998888"] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} readable in the database file"
        );
    }
}
