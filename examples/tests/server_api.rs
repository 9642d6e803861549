//! The example server as a separate process serves the operators' API out
//! of the box: an administrator made with `im-admin` before the start logs
//! in with HTTP Basic; without credentials the API answers 401.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A child process killed when dropped (also when the test fails).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
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
    out
}

/// A GET with `Connection: close`; returns the status and the body.
fn get(port: u16, path: &str, auth: Option<&str>) -> (u16, String) {
    send(port, "GET", path, auth, "")
}

/// A request with `Connection: close`; returns the status and the body.
fn send(port: u16, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Starts `nbi-sim` for Matrix (the demo inventory) on a free port.
fn start_nbi_sim() -> (Killed, u16) {
    let nbi_port = free_port();
    let mut nbi = Command::new(env!("CARGO_BIN_EXE_nbi-sim"))
        .args([
            "--system",
            "matrix",
            "--listen",
            &format!("127.0.0.1:{nbi_port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut nbi_lines = BufReader::new(nbi.stdout.take().unwrap()).lines();
    let killed = Killed(nbi);
    assert!(
        nbi_lines
            .next()
            .is_some_and(|l| l.is_ok_and(|l| l.contains("simulator"))),
        "nbi-sim started"
    );
    std::thread::spawn(move || for _ in nbi_lines {});
    (killed, nbi_port)
}

/// Starts `im-server` on `dir/im.db` with `extra` appended to its TOML file;
/// returns once it listens, with the rest of its standard output.
fn start_server(
    dir: &std::path::Path,
    extra: &str,
) -> (
    Killed,
    u16,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let port = free_port();
    let cfg = dir.join("im.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase = \"{}\"\nkey_file = \"{}\"\nlog_level = \"warn\"\n{extra}",
            dir.join("im.db").display(),
            dir.join("im.key").display()
        ),
    )
    .unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_im-server"))
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let killed = Killed(server);
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("IM is listening on") => break,
            Some(Ok(_)) => continue,
            _ => panic!("im-server exited before listening"),
        }
    }
    (killed, port, lines)
}

#[test]
fn the_server_syncs_on_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let (_nbi, nbi_port) = start_nbi_sim();
    let (_server, _port, lines) = start_server(
        dir.path(),
        &format!(
            "[sync]\nmatrix_url = \"http://127.0.0.1:{nbi_port}\"\n\
             matrix_full_every = \"1h\"\nmatrix_incremental_every = \"1s\"\n"
        ),
    );
    std::thread::spawn(move || for _ in lines {});
    // A full run at once (no watermark yet), then incremental ones every
    // second, each recorded in the run log.
    let db = rusqlite::Connection::open(dir.path().join("im.db")).unwrap();
    let mut runs: Vec<(String, String)> = Vec::new();
    for _ in 0..120 {
        runs = db
            .prepare("SELECT kind, status FROM sync_run WHERE system = 'matrix' ORDER BY id")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap_or_default();
        let done = runs.iter().filter(|(_, s)| s == "SUCCEEDED").count();
        if done >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let done: Vec<&(String, String)> = runs.iter().filter(|(_, s)| s == "SUCCEEDED").collect();
    assert!(done.len() >= 3, "three scheduled runs succeeded: {runs:?}");
    assert_eq!(done[0].0, "FULL", "{runs:?}");
    assert!(
        done[1..].iter().all(|(k, _)| k == "INCREMENTAL"),
        "{runs:?}"
    );
}

#[test]
fn the_server_process_serves_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("im.db");
    let key = dir.path().join("im.key");
    let mut admin = Command::new(env!("CARGO_BIN_EXE_im-admin"))
        .arg("--database")
        .arg(&db)
        .arg("--key-file")
        .arg(&key)
        .args(["create-admin", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    admin
        .stdin
        .take()
        .unwrap()
        .write_all(b"first-admin-pw\n")
        .unwrap();
    let out = admin.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A Matrix NBI simulator (the demo inventory) as the API's sync source.
    let (_nbi, nbi_port) = start_nbi_sim();

    let (_server, port, mut lines) = start_server(
        dir.path(),
        &format!("[sync]\nmatrix_url = \"http://127.0.0.1:{nbi_port}\"\n"),
    );
    // The start banner names the API (printed at once after the address).
    let mut names_api = false;
    for line in lines.by_ref().take(60) {
        if line.unwrap().contains("/api/v1") {
            names_api = true;
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});

    let (status, body) = get(port, "/api/v1/me", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"UNAUTHENTICATED\""), "{body}");
    let auth = format!("Basic {}", base64(b"admin:first-admin-pw"));
    let (status, body) = get(port, "/api/v1/me", Some(&auth));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ROLE_ADMIN"), "{body}");
    let (status, body) = get(
        port,
        "/api/v1/inventory-summary/exchanges/EX01",
        Some(&auth),
    );
    assert_eq!(status, 200, "the demo inventory is there: {body}");
    assert!(names_api, "the start banner names the API");

    // A sync run started through the API, against the configured source.
    let (status, body) = send(
        port,
        "POST",
        "/api/v1/sync/runs",
        Some(&auth),
        r#"{"system":"ematrix"}"#,
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("SYNC_NOT_CONFIGURED"), "{body}");
    let (status, body) = send(
        port,
        "POST",
        "/api/v1/sync/runs",
        Some(&auth),
        r#"{"system":"matrix","kind":"FULL"}"#,
    );
    assert_eq!(status, 202, "{body}");
    let mut finished = String::new();
    for _ in 0..240 {
        let (status, body) = get(port, "/api/v1/sync/runs?system=matrix&limit=1", Some(&auth));
        assert_eq!(status, 200, "{body}");
        if body.contains("\"status\":\"") && !body.contains("\"status\":\"RUNNING\"") {
            finished = body;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        finished.contains("\"status\":\"SUCCEEDED\""),
        "the run ended well: {finished}"
    );
}
