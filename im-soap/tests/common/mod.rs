//! Test harness: a real server on 127.0.0.1:0 over a temporary SQLite file
//! with the demo inventory, and a raw HTTP/1.1 client over std TCP so that
//! tests see exact bytes.

#![allow(dead_code)]

use im_core::{Im, Synchronous};
use im_soap::{Server, ServerConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// A server running on a thread (and runtime) of its own.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The core it serves.
    pub im: Im,
    /// The health listener's address, when configured.
    pub health: Option<SocketAddr>,
    /// Its database file.
    pub db: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with default settings changed by `edit`.
    pub fn start(edit: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database: dir.path().join("im.db"),
            ..ServerConfig::default()
        };
        cfg.store.synchronous = Synchronous::Normal;
        edit(&mut cfg);
        let db = cfg.database.clone();
        let im = Im::open(cfg.core_config()).expect("open the core");
        im_core::demo::install_if_empty(&im).expect("demo inventory");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let core = im.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let server = Server::bind(cfg, core).await.expect("bind");
                addr_tx
                    .send((server.local_addr(), server.health_addr()))
                    .expect("report address");
                server
                    .serve(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let (addr, health) = addr_rx.recv().expect("server address");
        TestServer {
            addr,
            health,
            im,
            db,
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// Asks the server to shut down gracefully (returns at once).
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits for the server thread.
    pub fn stop(mut self) {
        self.begin_shutdown();
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }

    /// Waits for the server thread to end (after [`TestServer::begin_shutdown`]).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }

    /// The service URL.
    pub fn url(&self) -> String {
        format!("http://{}/services/EgyptWorkSheetAll", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One server with default settings shared by the tests of a test binary
/// (they use distinct flowIds and UserNames).
pub fn shared() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| TestServer::start(|_| {}))
}

/// A raw HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body read as a SOAP answer.
    pub fn outcome(&self) -> im_core::Outcome {
        assert_eq!(self.status, 200, "{}", self.text());
        im_soap::result_xml::parse_response(&self.body, self.header("content-type"))
            .expect("a readable result")
    }

    /// The Fault code of a Fault answer.
    pub fn fault(&self) -> im_soap::Fault {
        assert_eq!(self.status, 500, "{}", self.text());
        match im_soap::result_xml::parse_response(&self.body, self.header("content-type")) {
            Err(im_soap::result_xml::ReadError::Fault(f)) => f,
            other => panic!("expected a Fault, got {other:?}"),
        }
    }
}

/// Parses the bytes of one HTTP/1.1 response (read until the server closed).
pub fn parse_http(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Writes `request` as is and reads until the server closes.
pub fn raw(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let bytes = raw_bytes(addr, request);
    parse_http(&bytes).unwrap_or_else(|| {
        panic!(
            "not an HTTP response: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// Writes `request` and returns every byte read until the server closed.
pub fn raw_bytes(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    // The server may answer (413) and close before reading everything.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

/// A POST to the service with `Connection: close`.
pub fn post(addr: SocketAddr, content_type: Option<&str>, body: &[u8]) -> HttpResponse {
    raw(addr, &post_bytes(content_type, body))
}

/// The bytes of a POST to the service.
pub fn post_bytes(content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /services/EgyptWorkSheetAll HTTP/1.1\r\nHost: localhost\r\nSOAPAction: \"\"\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A GET with `Connection: close`.
pub fn get(addr: SocketAddr, target: &str, host: &str) -> HttpResponse {
    raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// A SOAP 1.1 envelope around `payload` (placed as is inside `in0`).
pub fn envelope_raw(payload: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ser="http://service.ws.family.plugins.inspur.com"><soapenv:Header/><soapenv:Body><ser:EgyptWorkSheetAll><ser:in0>{payload}</ser:in0></ser:EgyptWorkSheetAll></soapenv:Body></soapenv:Envelope>"#
    )
}

/// A SOAP 1.1 envelope with `form` in CDATA (a `]]>` split across sections).
pub fn envelope(form: &str) -> String {
    envelope_raw(&format!(
        "<![CDATA[{}]]>",
        form.replace("]]>", "]]]]><![CDATA[>")
    ))
}

/// A form with the demo credentials, POP 19601 and `items` (XML).
pub fn form(flow_id: &str, items: &str) -> String {
    format!(
        "<form><authusername>OM_webservice</authusername><authpassword>om-demo-secret</authpassword><flowId>{flow_id}</flowId><popid>19601</popid><bussInfo>{items}</bussInfo></form>"
    )
}

/// An ADSL Install item on EX01 (port picked by IM) with extra attrList XML.
pub fn adsl_install(user: &str, attrs: &str) -> String {
    format!(
        "<bussItem><opertype>Install</opertype><coverType>ADSL</coverType><serviceType>ADSL</serviceType><UserName>{user}</UserName><AccountNumber>A-{user}</AccountNumber><CustomerName>Test Customer</CustomerName><attrList><attr name=\"ExchangeID\">EX01</attr>{attrs}</attrList></bussItem>"
    )
}

/// `adsl_install` with `Speed` 16M.
pub fn adsl_item(user: &str) -> String {
    adsl_install(user, "<attr name=\"Speed\">16M</attr>")
}

/// A Query item for `user`.
pub fn query_item(user: &str) -> String {
    format!(
        "<bussItem><opertype>Query</opertype><coverType></coverType><serviceType></serviceType><UserName>{user}</UserName></bussItem>"
    )
}

/// POSTs `form` in a UTF-8 envelope and reads the result.
pub fn call(addr: SocketAddr, form: &str) -> im_core::Outcome {
    post(
        addr,
        Some("text/xml; charset=utf-8"),
        envelope(form).as_bytes(),
    )
    .outcome()
}

/// A fixture file's bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name]
        .iter()
        .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
