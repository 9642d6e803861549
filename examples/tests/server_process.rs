//! The example server as a separate process: killed with SIGKILL while work
//! orders are in flight and restarted on the same database, it loses no
//! acknowledged work order and stores none twice; every retry of an
//! acknowledged call gets -1003 SAME with the original task number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use im_core::ErrorCode;
use im_core::model::{CoverType, OperType, ServiceType};
use im_core::retry::RetryPolicy;
use im_examples::process::ServerProcess;
use im_soap::{ClientConfig, OmClient, WorkItem, WorkOrder};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn order(n: u32) -> WorkOrder {
    WorkOrder::new(
        im_core::demo::DEMO_OM_USER,
        im_core::demo::DEMO_OM_PASSWORD,
        format!("CRASH-{n}"),
        "19602",
    )
    .item(
        WorkItem::new(
            OperType::Install,
            Some(CoverType::Adsl),
            Some(ServiceType::Adsl),
            format!("crash{n}@tedata.net.eg"),
        )
        .field("AccountNumber", format!("9{n:06}"))
        .field("CustomerName", "\u{645}\u{62d}\u{645}\u{62f} Ali")
        .field("Password", "pppoe-crash")
        .attr("ExchangeID", "EX02")
        .attr("Speed", "8M"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_no_acknowledged_order() {
    let dir = tempfile::tempdir().unwrap();
    let im = ServerProcess::new(env!("CARGO_BIN_EXE_im-server"), dir.path()).unwrap();
    let url = im.url();
    let mut server = im.start().expect("im-server started");

    let mut cfg = ClientConfig::new(&url);
    cfg.retry = RetryPolicy {
        retries: 0,
        ..RetryPolicy::default_for(im_core::retry::Interface::Om)
    };
    cfg.timeout = Duration::from_secs(10);
    let client = Arc::new(OmClient::new(cfg).unwrap());

    // 16 senders, 300 orders; the server is killed after ~100 answers.
    const N: u32 = 300;
    let answered = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = Vec::new();
    for s in 0..16u32 {
        let (client, answered) = (Arc::clone(&client), Arc::clone(&answered));
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = s;
            while n < N {
                if let Ok(o) = client.send(&order(n)).await {
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if o.error_code == ErrorCode::Success {
                        acked.push((n, o.task_no.clone().unwrap()));
                    }
                }
                n += 16;
            }
            acked
        }));
    }
    while answered.load(std::sync::atomic::Ordering::Relaxed) < 100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.sigkill();
    let mut acked: HashMap<u32, String> = HashMap::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(
        acked.len() >= 90,
        "only {} acknowledged before the kill",
        acked.len()
    );
    assert!(
        (acked.len() as u32) < N,
        "the kill came too late to test anything"
    );

    // Restart on the same database and retry every order with its flowId.
    let mut server = im.start().expect("im-server restarted");
    let mut cfg = ClientConfig::new(&url);
    cfg.retry = RetryPolicy {
        retries: 3,
        initial_interval: Duration::from_millis(50),
        ..RetryPolicy::default_for(im_core::retry::Interface::Om)
    };
    let client = OmClient::new(cfg).unwrap();
    let (mut same, mut fresh) = (0, 0);
    for n in 0..N {
        let o = client.send(&order(n)).await.unwrap();
        match acked.get(&n) {
            Some(task) => {
                assert_eq!(
                    o.error_code,
                    ErrorCode::DuplicateFlowId,
                    "order {n} was acknowledged before the kill: {o:?}"
                );
                assert_eq!(o.task_no.as_ref(), Some(task), "order {n}: another task");
                assert_eq!(o.duplicate_content, Some(im_core::DuplicateContent::Same));
                same += 1;
            }
            None => {
                // Never acknowledged: stored before the kill (answer lost) or not at all.
                assert!(
                    o.error_code == ErrorCode::Success
                        || (o.error_code == ErrorCode::DuplicateFlowId
                            && o.duplicate_content == Some(im_core::DuplicateContent::Same)),
                    "order {n}: {o:?}"
                );
                fresh += 1;
            }
        }
    }
    assert_eq!(same + fresh, N);
    server.sigkill();

    // Exactly one task, one service and one held port per order.
    let db = rusqlite::Connection::open(im.database()).unwrap();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM task WHERE flow_id LIKE 'CRASH-%'"),
        N as i64
    );
    assert_eq!(
        count("SELECT count(*) FROM service WHERE user_name LIKE 'crash%' AND state = 'ACTIVE'"),
        N as i64
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM port p JOIN service s ON s.id = p.service_id WHERE s.user_name LIKE 'crash%'"
        ),
        N as i64
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM command c JOIN task t ON t.id = c.task_id WHERE t.flow_id LIKE 'CRASH-%'"
        ),
        N as i64
    );
}

/// Killed during its first start, while it loads a demo inventory too large
/// for one transaction, the server completes the demo inventory and the
/// demo OM account when it starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_the_demo_load_is_completed_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut im = ServerProcess::new(env!("CARGO_BIN_EXE_im-server"), dir.path()).unwrap();
    im.extra_config = "demo_ports = 150000\n".into();
    let total = im_core::demo::DemoSpec::with_ports(150_000).port_count() as i64;
    // Start it without waiting for /health, and kill it once some parts of
    // the inventory are committed and others are not.
    let cfg = dir.path().join("im.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"{}\"\ndatabase = \"{}\"\nlog_level = \"warn\"\n{}",
            im.addr(),
            im.database().display(),
            im.extra_config
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_im-server"));
    cmd.arg("--config").arg(&cfg);
    let mut first = im_examples::process::Proc::spawn("im-server", cmd).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut seen = 0;
    loop {
        assert!(
            std::time::Instant::now() < deadline && first.exited().is_none(),
            "the demo load ended before it could be interrupted ({seen} ports seen):\n{}",
            first.tail()
        );
        if let Ok(db) = rusqlite::Connection::open_with_flags(
            im.database(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) && let Ok(n) = db.query_row("SELECT count(*) FROM port", [], |r| r.get::<_, i64>(0))
        {
            seen = n;
            if n > 0 {
                assert!(n < total, "the whole inventory came in one step");
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    first.sigkill();
    let _server = im.start().expect("im-server restarted");
    let db = rusqlite::Connection::open(im.database()).unwrap();
    let ports: i64 = db
        .query_row("SELECT count(*) FROM port", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ports, total, "the demo inventory was left incomplete");
    let client = OmClient::new(ClientConfig::new(im.url())).unwrap();
    let o = client.send(&order(1)).await.unwrap();
    assert_eq!(o.error_code, ErrorCode::Success, "{o:?}");
}
