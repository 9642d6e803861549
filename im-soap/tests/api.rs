//! The operators' API end to end, over loopback against a real SQLite file:
//! an Install through SOAP, then operators with different roles working the
//! task, the service and the inventory through `/api/v1/`, and the three
//! append-only logs holding each step.

mod common;

use common::{TestServer, adsl_install, call, form, raw};
use im_core::login::AuthMode;
use serde_json::{Value, json};
use std::net::SocketAddr;

const ADMIN: (&str, &str) = ("admin1", "admin-pass-1");
const TECH: (&str, &str) = ("tech1", "tech-pass-1");
const VIEWER: (&str, &str) = ("viewer1", "viewer-pass-1");

/// An API answer: status, headers, JSON body (`Null` when empty).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    json: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The stable code of an error answer (and checks the error shape).
    fn code(&self) -> String {
        let e = &self.json["error"];
        assert!(e["message"].is_string(), "error shape: {}", self.json);
        e["code"].as_str().expect("error.code").to_string()
    }
}

fn basic(user: (&str, &str)) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = format!("{}:{}", user.0, user.1).into_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

fn api(
    addr: SocketAddr,
    method: &str,
    target: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut req =
        format!("{method} /api/v1{target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let r = raw(addr, req.as_bytes());
    let json = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
    };
    Answer {
        status: r.status,
        headers: r.headers,
        json,
    }
}

fn setup() -> TestServer {
    setup_with(|_| {})
}

fn setup_with(edit: impl FnOnce(&mut im_soap::ServerConfig)) -> TestServer {
    let server = TestServer::start(edit);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for (user, role) in [
        (ADMIN, "ROLE_ADMIN"),
        (TECH, "ROLE_TECH_L1"),
        (VIEWER, "ROLE_VIEWER"),
    ] {
        rt.block_on(server.im.create_account(
            user.0,
            user.0,
            AuthMode::Local,
            Some(user.1),
            &[role],
        ))
        .expect("account");
    }
    server
}

fn install(server: &TestServer, user: &str, flow: &str) -> String {
    let attrs = "<attr name=\"Speed\">16M</attr><attr name=\"Password\">pppoe-secret-7</attr>\
                 <attr name=\"Mobile\">01001234567</attr><attr name=\"Email\">cust7@mail.example</attr>";
    let outcome = call(server.addr, &form(flow, &adsl_install(user, attrs)));
    assert_eq!(outcome.return_code(), 0, "{outcome:?}");
    outcome.task_no.expect("task number")
}

#[test]
fn operators_work_an_install_end_to_end() {
    let server = setup();
    let addr = server.addr;
    let task_no = install(&server, "api-user-1@demo.example", "API-FLOW-1");
    let (admin, tech, viewer) = (basic(ADMIN), basic(TECH), basic(VIEWER));

    // No credentials, wrong password: 401 with a challenge and the JSON error shape.
    let r = api(addr, "GET", &format!("/tasks/{task_no}"), None, None);
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "UNAUTHENTICATED");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.contains("Basic"))
    );
    let r = api(addr, "GET", "/tasks", Some(&basic((TECH.0, "wrong"))), None);
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "UNAUTHENTICATED");

    // The viewer sees the task, with the protected values masked.
    let r = api(
        addr,
        "GET",
        &format!("/tasks/{task_no}"),
        Some(&viewer),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["flow_id"], "API-FLOW-1");
    assert_eq!(r.json["state"], "RECEIVED");
    let text = r.json.to_string();
    assert!(
        !text.contains("pppoe-secret-7") && !text.contains("01001234567"),
        "{text}"
    );
    assert!(text.contains("******"));
    assert!(!text.contains("om-demo-secret"), "credentials never stored");

    // The service: masked for the viewer, in clear for the administrator.
    let r = api(
        addr,
        "GET",
        "/services?user_name=api-user-1@demo.example",
        Some(&viewer),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let items = r.json["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    let id = items[0]["id"].as_i64().expect("id");
    let held_port = items[0]["port"].as_str().expect("port").to_string();
    assert!(!held_port.is_empty());
    let r = api(addr, "GET", &format!("/services/{id}"), Some(&viewer), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json["password"], "******");
    assert_eq!(r.json["customer"]["mobile"], "******");
    assert_eq!(r.json["customer"]["email"], "******");
    assert_eq!(r.json["history"][0]["task_no"], task_no.as_str());
    let r = api(addr, "GET", &format!("/services/{id}"), Some(&admin), None);
    assert_eq!(r.json["password"], "pppoe-secret-7");
    assert_eq!(r.json["customer"]["mobile"], "01001234567");
    assert_eq!(r.json["customer"]["email"], "cust7@mail.example");
    let r = api(
        addr,
        "GET",
        &format!("/tasks/{task_no}"),
        Some(&admin),
        None,
    );
    assert!(r.json["request"].to_string().contains("pppoe-secret-7"));
    // Other searches find it too.
    let r = api(
        addr,
        "GET",
        &format!("/services?port={held_port}"),
        Some(&viewer),
        None,
    );
    assert_eq!(r.json["items"][0]["id"], id);
    let r = api(
        addr,
        "GET",
        "/services?account_number=A-api-user-1@demo.example",
        Some(&viewer),
        None,
    );
    assert_eq!(r.json["items"][0]["id"], id);

    // The viewer may not change the task.
    let body = r#"{"reason":"customer asked"}"#;
    let r = api(
        addr,
        "POST",
        &format!("/tasks/{task_no}/force-finish"),
        Some(&viewer),
        Some(body),
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "FORBIDDEN");

    // The technician opens a session and force-finishes it with a reason.
    let r = api(addr, "POST", "/session", Some(&tech), None);
    assert_eq!(r.status, 200, "{}", r.json);
    let token = r.json["token"].as_str().expect("token").to_string();
    assert_eq!(token.len(), 64);
    let bearer = format!("Bearer {token}");
    let path = format!("/tasks/{task_no}/force-finish");
    let r = api(addr, "POST", &path, Some(&bearer), Some("{\"reason\": 12"));
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "INVALID_JSON");
    let r = api(
        addr,
        "POST",
        &path,
        Some(&bearer),
        Some(r#"{"reason":"  "}"#),
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.code(), "INVALID_REQUEST");
    let r = api(
        addr,
        "POST",
        &path,
        Some(&bearer),
        Some(r#"{"reason":"activated by hand on site"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["state"], "COMPLETED");
    let r = api(
        addr,
        "POST",
        &path,
        Some(&bearer),
        Some(r#"{"reason":"again"}"#),
    );
    assert_eq!(
        r.status, 409,
        "a completed task cannot be force-finished again"
    );
    let r = api(
        addr,
        "GET",
        &format!("/tasks/{task_no}"),
        Some(&bearer),
        None,
    );
    let last = r.json["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .expect("history");
    assert_eq!(last["action"], "FORCE_FINISH");
    assert_eq!(last["actor"], TECH.0);
    assert_eq!(last["reason"], "activated by hand on site");
    let r = api(addr, "GET", "/tasks?state=COMPLETED", Some(&bearer), None);
    assert!(
        r.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|t| t["task_no"] == task_no.as_str())
    );
    // The technician sees Mobile but not the PPPoE password.
    let r = api(addr, "GET", &format!("/services/{id}"), Some(&bearer), None);
    assert_eq!(r.json["customer"]["mobile"], "01001234567");
    assert_eq!(r.json["password"], "******");
    // Logout ends the session.
    let r = api(addr, "DELETE", "/session", Some(&bearer), None);
    assert_eq!(r.status, 204);
    let r = api(addr, "GET", "/tasks", Some(&bearer), None);
    assert_eq!(r.status, 401);

    // Manual inventory: a free port made faulty, logged with old and new values.
    let r = api(
        addr,
        "GET",
        "/inventory/ports?parent=EX01-D1&state=AVAILABLE&limit=1",
        Some(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let free = r.json["items"][0]["code"]
        .as_str()
        .expect("a free port")
        .to_string();
    assert_ne!(free, held_port);
    let r = api(
        addr,
        "PATCH",
        &format!("/inventory/ports/{free}"),
        Some(&viewer),
        Some(r#"{"state":"FAULTY"}"#),
    );
    assert_eq!(r.status, 403);
    let r = api(
        addr,
        "PATCH",
        &format!("/inventory/ports/{free}"),
        Some(&admin),
        Some(r#"{"state":"FAULTY"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["fields"]["state"], "FAULTY");
    let r = api(
        addr,
        "GET",
        "/logs/resources?type=MODIFY&limit=1",
        Some(&admin),
        None,
    );
    let entry = &r.json["items"][0];
    assert_eq!(entry["code"], free.as_str());
    assert_eq!(entry["actor"], ADMIN.0);
    assert_eq!(entry["ip"], "127.0.0.1");
    assert_eq!(entry["old_values"], json!({"state": "AVAILABLE"}));
    assert_eq!(entry["new_values"], json!({"state": "FAULTY"}));
    // The held port cannot be removed; the summary counts it in service.
    let r = api(
        addr,
        "DELETE",
        &format!("/inventory/ports/{held_port}"),
        Some(&admin),
        None,
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "RESOURCE_HELD");
    let r = api(
        addr,
        "GET",
        "/inventory-summary/exchanges/EX01",
        Some(&viewer),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(r.json["in_service"].as_u64().expect("in_service") >= 1);
    assert!(r.json["faulty"].as_u64().expect("faulty") >= 1);

    // The logs hold each step and refuse edits.
    let r = api(
        addr,
        "GET",
        "/logs/operations?account=tech1&type=MODIFY",
        Some(&admin),
        None,
    );
    let ops = r.json["items"].as_array().expect("items");
    assert!(
        ops.iter()
            .any(|o| o["target"] == task_no.as_str() && o["outcome"] == "SUCCESS"),
        "{}",
        r.json
    );
    let r = api(
        addr,
        "GET",
        "/logs/operations?account=viewer1&type=DENIED",
        Some(&admin),
        None,
    );
    assert!(
        r.json["items"].as_array().expect("items").len() >= 2,
        "{}",
        r.json
    );
    let r = api(
        addr,
        "GET",
        "/logs/operations?type=QUERY&ip=127.0.0.1&from=2000-01-01",
        Some(&admin),
        None,
    );
    assert!(!r.json["items"].as_array().expect("items").is_empty());
    let r = api(
        addr,
        "GET",
        "/logs/operations?account=-",
        Some(&admin),
        None,
    );
    assert!(
        r.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|o| o["outcome"] == "DENIED"),
        "the call without credentials is logged"
    );
    let r = api(
        addr,
        "GET",
        "/logs/logins?account=tech1",
        Some(&admin),
        None,
    );
    let events: Vec<(String, String)> = r.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("").into(),
                e["outcome"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        events.contains(&("LOGOUT".into(), "SUCCESS".into())),
        "{events:?}"
    );
    assert!(
        events.contains(&("LOGIN".into(), "FAILURE".into())),
        "{events:?}"
    );
    assert!(
        events.contains(&("LOGIN".into(), "SUCCESS".into())),
        "{events:?}"
    );
    // HTTP Basic on every call does not log (or hash) a login each time.
    let r = api(
        addr,
        "GET",
        "/logs/logins?account=admin1&type=LOGIN",
        Some(&admin),
        None,
    );
    assert_eq!(
        r.json["items"].as_array().expect("items").len(),
        1,
        "{}",
        r.json
    );
    for log in ["operations", "resources", "logins"] {
        let r = api(addr, "DELETE", &format!("/logs/{log}"), Some(&admin), None);
        assert_eq!(r.status, 405, "{log}");
        assert_eq!(r.code(), "METHOD_NOT_ALLOWED");
        assert_eq!(r.header("allow"), Some("GET"));
        let r = api(
            addr,
            "PUT",
            &format!("/logs/{log}"),
            Some(&admin),
            Some("{}"),
        );
        assert_eq!(r.status, 405, "{log}");
    }
    // The viewer may not read the logs.
    let r = api(addr, "GET", "/logs/operations", Some(&viewer), None);
    assert_eq!(r.status, 403);

    // The database refuses edits of the logs too.
    let db = rusqlite::Connection::open(&server.db).expect("open the database");
    for sql in [
        "UPDATE operation_log SET outcome = 'SUCCESS'",
        "DELETE FROM operation_log",
        "UPDATE resource_log SET actor = 'x'",
        "DELETE FROM resource_log",
        "UPDATE login_log SET outcome = 'SUCCESS'",
        "DELETE FROM login_log",
    ] {
        let e = db.execute(sql, []).expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
}

#[test]
fn paging_bounds_and_bad_input() {
    let server = setup();
    let addr = server.addr;
    let admin = basic(ADMIN);
    for i in 0..4 {
        let r = api(
            addr,
            "GET",
            &format!("/tasks?flow_id=none-{i}"),
            Some(&admin),
            None,
        );
        assert_eq!(r.status, 200);
    }
    // Pages of the operation log: bounded, newest first, linked by cursor.
    let r = api(addr, "GET", "/logs/operations?limit=2", Some(&admin), None);
    let first = r.json["items"].as_array().expect("items").clone();
    assert_eq!(first.len(), 2);
    let cursor = r.json["next_before"].as_i64().expect("a next page");
    assert!(first[0]["id"].as_i64() > first[1]["id"].as_i64());
    let r = api(
        addr,
        "GET",
        &format!("/logs/operations?limit=2&before={cursor}"),
        Some(&admin),
        None,
    );
    let second = r.json["items"].as_array().expect("items");
    assert!(
        second
            .iter()
            .all(|o| o["id"].as_i64().expect("id") < cursor)
    );
    for bad in [
        "limit=0",
        "limit=100000",
        "limit=x",
        "before=y",
        "from=yesterday",
    ] {
        let r = api(
            addr,
            "GET",
            &format!("/logs/operations?{bad}"),
            Some(&admin),
            None,
        );
        assert_eq!(r.status, 422, "{bad}");
        assert_eq!(r.code(), "INVALID_REQUEST");
    }
    let r = api(addr, "GET", "/tasks?colour=red", Some(&admin), None);
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "BAD_REQUEST");
    let r = api(addr, "GET", "/nothing-here", Some(&admin), None);
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "NOT_FOUND");
    let r = api(addr, "GET", "/tasks/WS0000", Some(&admin), None);
    assert_eq!(r.status, 404);
    let r = raw(
        addr,
        b"GET /api/v2/tasks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 404);
    assert!(r.text().contains("\"NOT_FOUND\""), "{}", r.text());
    let r = api(addr, "GET", "/tasks?state=%ZZ", Some(&admin), None);
    assert_eq!(r.status, 400);

    // Bad JSON, too deep JSON, unknown fields, too large bodies.
    let r = api(
        addr,
        "POST",
        "/organisations",
        Some(&admin),
        Some("{not json"),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "INVALID_JSON");
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let r = api(addr, "POST", "/organisations", Some(&admin), Some(&deep));
    assert_eq!(r.status, 400);
    let r = api(
        addr,
        "POST",
        "/organisations",
        Some(&admin),
        Some(r#"{"code":"NOC","colour":"red"}"#),
    );
    assert_eq!(r.status, 400);
    let big = format!("{{\"code\":\"{}\"}}", "x".repeat(100_000));
    let r = api(addr, "POST", "/organisations", Some(&admin), Some(&big));
    assert_eq!(r.status, 413);
    assert_eq!(r.code(), "PAYLOAD_TOO_LARGE");

    // Users, roles, organisations.
    let r = api(
        addr,
        "POST",
        "/organisations",
        Some(&admin),
        Some(r#"{"code":"NOC","name":"Network operations"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.json);
    let r = api(
        addr,
        "POST",
        "/organisations",
        Some(&admin),
        Some(r#"{"code":"noc"}"#),
    );
    assert_eq!(r.status, 409);
    let role = r#"{"code":"ROLE_INV","name":"Inventory clerk","permissions":{"inventory":["read","modify"]},"visible_protected":[]}"#;
    let r = api(addr, "POST", "/roles", Some(&admin), Some(role));
    assert_eq!(r.status, 201, "{}", r.json);
    let r = api(
        addr,
        "POST",
        "/roles",
        Some(&admin),
        Some(r#"{"code":"ROLE_X","permissions":{"moon":["read"]}}"#),
    );
    assert_eq!(r.status, 422);
    let user = r#"{"login":"clerk1","display_name":"Clerk","mode":"LOCAL","password":"clerk-pass","roles":["ROLE_INV"],"organisation":"NOC"}"#;
    let r = api(addr, "POST", "/users", Some(&admin), Some(user));
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(r.json["organisation"], "NOC");
    let r = api(addr, "POST", "/users", Some(&admin), Some(user));
    assert_eq!(r.status, 409);
    let clerk = basic(("clerk1", "clerk-pass"));
    let r = api(addr, "GET", "/me", Some(&clerk), None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json["permissions"]["inventory"],
        json!(["read", "modify"])
    );
    let r = api(addr, "GET", "/tasks", Some(&clerk), None);
    assert_eq!(r.status, 403);
    let r = api(addr, "POST", "/users/clerk1/disable", Some(&admin), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json["enabled"], false);
    let r = api(addr, "GET", "/me", Some(&clerk), None);
    assert_eq!(
        r.status, 401,
        "a disabled account is refused at once, cache or not"
    );
    let r = api(addr, "POST", "/users/clerk1/enable", Some(&admin), None);
    assert_eq!(r.status, 200);
    let r = api(
        addr,
        "POST",
        "/users/clerk1/password",
        Some(&admin),
        Some(r#"{"password":"new-clerk-pass"}"#),
    );
    assert_eq!(r.status, 204);
    let r = api(addr, "GET", "/me", Some(&clerk), None);
    assert_eq!(r.status, 401, "the old password no longer works");
    let r = api(
        addr,
        "GET",
        "/me",
        Some(&basic(("clerk1", "new-clerk-pass"))),
        None,
    );
    assert_eq!(r.status, 200);
    let r = api(
        addr,
        "GET",
        "/logs/operations?account=admin1&type=ADD",
        Some(&admin),
        None,
    );
    let targets: Vec<&str> = r.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|o| o["target"].as_str())
        .collect();
    assert!(
        targets.contains(&"clerk1") && targets.contains(&"ROLE_INV") && targets.contains(&"NOC"),
        "{targets:?}"
    );
    let ops = r.json.to_string();
    assert!(!ops.contains("clerk-pass"), "no password in the logs");
    let r = api(
        addr,
        "POST",
        "/users",
        Some(&admin),
        Some(r#"{"login":"z1","mode":"LOCAL","password":{"p":"leak-me-1"}}"#),
    );
    assert_eq!(r.status, 400);
    assert!(!r.json.to_string().contains("leak-me-1"));
    let r = api(
        addr,
        "POST",
        "/users",
        Some(&admin),
        Some(r#"{"login":"z1","mode":"LOCAL","roles":"leak-me-2"}"#),
    );
    assert_eq!(r.status, 400);
    assert!(!r.json.to_string().contains("leak-me-2"), "{}", r.json);
    let r = api(
        addr,
        "GET",
        "/logs/operations?type=FAILURE",
        Some(&admin),
        None,
    );
    assert!(!r.json.to_string().contains("leak-me"), "{}", r.json);

    // Sync: no source configured in this server.
    let r = api(
        addr,
        "POST",
        "/sync/runs",
        Some(&admin),
        Some(r#"{"system":"matrix"}"#),
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.code(), "SYNC_NOT_CONFIGURED");
    let r = api(addr, "GET", "/sync/runs", Some(&admin), None);
    assert_eq!(r.status, 200);
    let r = api(addr, "GET", "/outbox?state=PENDING", Some(&admin), None);
    assert_eq!(r.status, 200);
    let r = api(addr, "GET", "/outbox?state=LOST", Some(&admin), None);
    assert_eq!(r.status, 422);
}

#[test]
fn sessions_expire_and_basic_may_check_every_call() {
    let server = setup_with(|c| {
        c.api.session_ttl = im_soap::config::HumanDuration(std::time::Duration::from_millis(300));
        c.api.basic_cache_ttl = im_soap::config::HumanDuration(std::time::Duration::ZERO);
    });
    let addr = server.addr;
    let viewer = basic(VIEWER);
    let r = api(addr, "POST", "/session", Some(&viewer), None);
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["expires_in"], 0);
    let bearer = format!("Bearer {}", r.json["token"].as_str().expect("token"));
    let r = api(addr, "GET", "/me", Some(&bearer), None);
    assert_eq!(r.status, 200);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let r = api(addr, "GET", "/me", Some(&bearer), None);
    assert_eq!(r.status, 401, "expired");
    let r = api(addr, "GET", "/me", Some("Bearer not-a-token"), None);
    assert_eq!(r.status, 401);
    let r = api(addr, "POST", "/session", Some(&bearer), None);
    assert_eq!(r.status, 401, "a session is opened with Basic only");
    for _ in 0..3 {
        assert_eq!(api(addr, "GET", "/me", Some(&viewer), None).status, 200);
    }
    let admin = basic(ADMIN);
    let r = api(
        addr,
        "GET",
        "/logs/logins?account=viewer1&type=SUCCESS",
        Some(&admin),
        None,
    );
    assert_eq!(
        r.json["items"].as_array().expect("items").len(),
        4,
        "without the cache every Basic call is a login: {}",
        r.json
    );
}

#[test]
fn a_rejected_activation_is_redriven_from_the_outbox() {
    let server = setup();
    let addr = server.addr;
    let task_no = install(&server, "api-redo@demo.example", "API-FLOW-REDO");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let due = rt.block_on(server.im.due_commands(10)).expect("due");
    let cmd = due
        .iter()
        .find(|c| c.task_no == task_no)
        .expect("its command");
    let ack = im_core::lifecycle::Ack {
        status: "REJECTED".into(),
        code: "E42".into(),
        desc: "port busy".into(),
    };
    let rec = rt
        .block_on(server.im.record_delivery(
            cmd.row_id,
            cmd.redo,
            im_core::lifecycle::Delivery::Rejected(ack),
        ))
        .expect("recorded");
    assert_eq!(rec.task, im_core::model::TaskState::Failed);

    let (tech, viewer) = (basic(TECH), basic(VIEWER));
    let r = api(addr, "GET", "/outbox?state=FAILED", Some(&viewer), None);
    assert_eq!(r.status, 200, "{}", r.json);
    let failed = r.json["items"][0].clone();
    assert_eq!(failed["task_no"], task_no.as_str());
    assert!(
        failed["last_ack"]
            .as_str()
            .is_some_and(|a| a.contains("E42"))
    );
    let id = failed["id"].as_i64().expect("row id");
    let body = r#"{"reason":"port freed on site"}"#;
    let r = api(
        addr,
        "POST",
        &format!("/outbox/{id}/redo"),
        Some(&viewer),
        Some(body),
    );
    assert_eq!(r.status, 403);
    let r = api(
        addr,
        "POST",
        &format!("/outbox/{id}/redo"),
        Some(&tech),
        Some(body),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["state"], "ACTIVATING");
    let r = api(
        addr,
        "POST",
        &format!("/outbox/{id}/redo"),
        Some(&tech),
        Some(body),
    );
    assert_eq!(r.status, 409, "only a failed command is re-driven");
    let r = api(addr, "GET", &format!("/tasks/{task_no}"), Some(&tech), None);
    assert_eq!(r.json["commands"][0]["id"], format!("{}-r1", cmd.id));
    assert_eq!(r.json["commands"][0]["state"], "PENDING");
    let r = api(addr, "POST", "/outbox/999999/redo", Some(&tech), Some(body));
    assert_eq!(r.status, 404);
}

#[test]
fn inventory_changes_by_hand() {
    let server = setup();
    let addr = server.addr;
    let admin = basic(ADMIN);
    let body = r#"{"name":"EX01-D1","frame":9,"slot":9,"port":1}"#;
    let r = api(addr, "POST", "/inventory/ports", Some(&admin), Some(body));
    assert_eq!(r.status, 422, "unknown field name: {}", r.json);
    let body = r#"{"dslam":"EX01-D1","frame":9,"slot":9,"port":1}"#;
    let r = api(addr, "POST", "/inventory/ports", Some(&admin), Some(body));
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(r.json["code"], "EX01-D1/9/9/1");
    assert_eq!(r.json["fields"]["state"], "AVAILABLE");
    let r = api(addr, "POST", "/inventory/ports", Some(&admin), Some(body));
    assert_eq!(r.status, 409);
    let r = api(
        addr,
        "POST",
        "/inventory/ports",
        Some(&admin),
        Some(r#"{"dslam":"NO-SUCH","frame":1,"slot":1,"port":1}"#),
    );
    assert_eq!(r.status, 422, "{}", r.json);
    let r = api(
        addr,
        "DELETE",
        "/inventory/ports/EX01-D1/9/9/1",
        Some(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["removed"], true);
    let r = api(
        addr,
        "DELETE",
        "/inventory/ports/EX01-D1%2F9%2F9%2F1",
        Some(&admin),
        None,
    );
    assert_eq!(r.status, 404, "removed already");
    let r = api(
        addr,
        "GET",
        "/logs/resources?account=admin1",
        Some(&admin),
        None,
    );
    let ops: Vec<&str> = r.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["operation"].as_str())
        .collect();
    assert_eq!(ops, vec!["REMOVE", "ADD"]);
    let removal = &r.json["items"][0];
    assert_eq!(removal["old_values"], json!({"removed": 0}));
    assert_eq!(removal["new_values"], json!({"removed": 1}));
    let added = &r.json["items"][1];
    assert_eq!(added["old_values"], Value::Null);
    assert_eq!(added["new_values"]["dslam"], "EX01-D1");
    let r = api(
        addr,
        "GET",
        "/inventory-summary/olts/NO-SUCH-OLT",
        Some(&admin),
        None,
    );
    assert_eq!(r.status, 404);
    let r = api(
        addr,
        "GET",
        "/inventory/exchanges?search=EX0",
        Some(&admin),
        None,
    );
    assert!(!r.json["items"].as_array().expect("items").is_empty());
}
