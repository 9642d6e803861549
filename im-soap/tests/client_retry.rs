//! The OM client's retries against a scripted test server over loopback:
//! -9999 a few times, dropped connections, plain 5xx, time-outs (retried,
//! always with the same flowId) and -1006, Faults, 413 (never retried).

use im_core::model::{CoverType, OperType, ServiceType};
use im_core::retry::RetryPolicy;
use im_core::{ErrorCode, ItemResult, Outcome};
use im_soap::result_xml::write_response;
use im_soap::{ClientConfig, ClientError, Fault, OmClient, ReturnElement, WorkItem, WorkOrder};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted server does with one request.
#[derive(Debug, Clone)]
enum Act {
    /// Answer with this errorCode.
    Code(ErrorCode),
    /// Close the connection without answering.
    Drop,
    /// Answer with a plain HTTP status (no SOAP body).
    Status(u16),
    /// Answer with a SOAP Fault (HTTP 500).
    Fault,
    /// Never answer.
    Hang,
}

struct Script {
    acts: Vec<Act>,
    /// The flowId of every request received, in order.
    seen: Vec<String>,
}

async fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return Some(buf[end + 4..end + 4 + len].to_vec());
        }
    }
}

fn flow_id_of(body: &[u8]) -> String {
    let limits = im_soap::Limits::default();
    let (text, _) =
        im_soap::envelope::decode_body(body, Some("text/xml; charset=gb2312")).expect("decodable");
    let req = im_soap::envelope::parse_request(&text, &limits.envelope).expect("envelope");
    let form = im_soap::form_xml::parse_form(&req.payload, &limits.form).expect("form");
    form.get("flowId").to_string()
}

fn outcome(code: ErrorCode, flow: &str) -> Outcome {
    Outcome {
        error_code: code,
        error_desc: if code == ErrorCode::Success {
            "success".into()
        } else {
            format!("test answer {code}")
        },
        flow_id: flow.into(),
        task_no: (code == ErrorCode::Success).then(|| "WS20261204000001".into()),
        items: vec![ItemResult {
            seq: 1,
            opertype: "Install".into(),
            service_type: "ADSL".into(),
            user_name: "u@x".into(),
            error_code: Some(code),
            ..ItemResult::default()
        }],
        duplicate_content: None,
    }
}

async fn respond(s: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        500 => "Internal Server Error",
        _ => "Other",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/xml; charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body.as_bytes()).await;
}

async fn serve_conn(mut s: TcpStream, script: Arc<Mutex<Script>>) {
    while let Some(body) = read_request(&mut s).await {
        let flow = flow_id_of(&body);
        let act = {
            let mut sc = script.lock().expect("lock");
            sc.seen.push(flow.clone());
            let i = sc.seen.len() - 1;
            sc.acts
                .get(i)
                .or(sc.acts.last())
                .cloned()
                .unwrap_or(Act::Code(ErrorCode::Success))
        };
        match act {
            Act::Code(code) => {
                respond(
                    &mut s,
                    200,
                    &write_response(&outcome(code, &flow), ReturnElement::Out),
                )
                .await;
            }
            Act::Drop => return,
            Act::Status(st) => respond(&mut s, st, "oops").await,
            Act::Fault => respond(&mut s, 500, &Fault::client("bad request").to_xml()).await,
            Act::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
        }
    }
}

async fn scripted(acts: Vec<Act>) -> (SocketAddr, Arc<Mutex<Script>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let script = Arc::new(Mutex::new(Script {
        acts,
        seen: Vec::new(),
    }));
    let sc = script.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve_conn(s, sc.clone()));
        }
    });
    (addr, script)
}

fn policy(retries: u32) -> RetryPolicy {
    RetryPolicy {
        retries,
        initial_interval: Duration::from_millis(10),
        multiplier: 2.0,
        max_interval: Duration::from_millis(40),
        jitter: 0.0,
    }
}

fn client(addr: SocketAddr, retries: u32) -> OmClient {
    let mut cfg = ClientConfig::new(format!("http://{addr}/services/EgyptWorkSheetAll"));
    cfg.retry = policy(retries);
    cfg.timeout = Duration::from_millis(500);
    OmClient::new(cfg).expect("client")
}

fn order(flow: &str) -> WorkOrder {
    WorkOrder::new("OM_webservice", "om-demo-secret", flow, "19601").item(
        WorkItem::new(
            OperType::Install,
            Some(CoverType::Adsl),
            Some(ServiceType::Adsl),
            "u@x",
        )
        .field("CustomerName", "أحمد 工单")
        .attr("ExchangeID", "EX01"),
    )
}

fn seen(script: &Arc<Mutex<Script>>) -> Vec<String> {
    script.lock().expect("lock").seen.clone()
}

#[tokio::test]
async fn retries_9999_with_the_same_flow_id() {
    let (addr, script) = scripted(vec![
        Act::Code(ErrorCode::Internal),
        Act::Code(ErrorCode::Internal),
        Act::Code(ErrorCode::Success),
    ])
    .await;
    let o = client(addr, 5)
        .send(&order("R-9999"))
        .await
        .expect("outcome");
    assert_eq!(o.error_code, ErrorCode::Success);
    assert_eq!(seen(&script), ["R-9999"; 3]);
}

#[tokio::test]
async fn retries_dropped_connections() {
    let (addr, script) = scripted(vec![Act::Drop, Act::Drop, Act::Code(ErrorCode::Success)]).await;
    let o = client(addr, 5)
        .send(&order("R-DROP"))
        .await
        .expect("outcome");
    assert_eq!(o.error_code, ErrorCode::Success);
    assert_eq!(seen(&script), ["R-DROP"; 3]);
}

#[tokio::test]
async fn retries_plain_5xx_and_time_outs() {
    let (addr, script) = scripted(vec![
        Act::Status(503),
        Act::Status(500),
        Act::Hang,
        Act::Code(ErrorCode::Success),
    ])
    .await;
    let o = client(addr, 5)
        .send(&order("R-5XX"))
        .await
        .expect("outcome");
    assert_eq!(o.error_code, ErrorCode::Success);
    assert_eq!(seen(&script), ["R-5XX"; 4]);
}

#[tokio::test]
async fn never_retries_other_codes_faults_or_4xx() {
    let (addr, script) = scripted(vec![Act::Code(ErrorCode::InvalidValue)]).await;
    let o = client(addr, 5)
        .send(&order("R-1006"))
        .await
        .expect("outcome");
    assert_eq!(o.error_code, ErrorCode::InvalidValue);
    assert_eq!(seen(&script).len(), 1);

    for code in [
        ErrorCode::DuplicateFlowId,
        ErrorCode::AuthFailed,
        ErrorCode::MissingField,
    ] {
        let (addr, script) = scripted(vec![Act::Code(code)]).await;
        let o = client(addr, 5)
            .send(&order("R-CODE"))
            .await
            .expect("outcome");
        assert_eq!(o.error_code, code);
        assert_eq!(seen(&script).len(), 1, "{code}");
    }

    let (addr, script) = scripted(vec![Act::Fault]).await;
    match client(addr, 5).send(&order("R-FAULT")).await {
        Err(ClientError::Fault(f)) => assert_eq!(f.string, "bad request"),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen(&script).len(), 1);

    let (addr, script) = scripted(vec![Act::Status(413)]).await;
    match client(addr, 5).send(&order("R-413")).await {
        Err(ClientError::Http { status }) => assert_eq!(status.as_u16(), 413),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen(&script).len(), 1);
}

#[tokio::test]
async fn gives_up_after_the_policy_s_retries() {
    let (addr, script) = scripted(vec![Act::Code(ErrorCode::Internal)]).await;
    let o = client(addr, 3)
        .send(&order("R-EXHAUST"))
        .await
        .expect("outcome");
    assert_eq!(o.error_code, ErrorCode::Internal);
    assert_eq!(seen(&script), ["R-EXHAUST"; 4]);

    let (addr, script) = scripted(vec![Act::Drop]).await;
    match client(addr, 2).send(&order("R-DROPS")).await {
        Err(e @ ClientError::Transport(_)) => assert!(e.is_retryable()),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen(&script).len(), 3);
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    // A port nobody listens on: bind, note it, close.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let start = Instant::now();
    match client(addr, 2).send(&order("R-REFUSED")).await {
        Err(ClientError::Transport(_)) => {}
        other => panic!("{other:?}"),
    }
    // Two waits of 10 ms and 20 ms were slept.
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[tokio::test]
async fn requests_are_gb2312_with_references_for_arabic() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let captured = Arc::new(Mutex::new(Vec::new()));
    let cap = captured.clone();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n")
                || !buf.ends_with(b"</soapenv:Envelope>")
            {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            cap.lock().expect("lock").extend_from_slice(&buf);
            let body = write_response(&outcome(ErrorCode::Success, "R-GB"), ReturnElement::Out);
            respond(&mut s, 200, &body).await;
        }
    });
    let o = client(addr, 0).send(&order("R-GB")).await.expect("outcome");
    assert_eq!(o.error_code, ErrorCode::Success);
    let raw = captured.lock().expect("lock").clone();
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.contains("content-type: text/xml; charset=gb2312"));
    assert!(text.contains("soapaction: \"\""));
    // Arabic as references, Chinese as GBK bytes (工 = B9 A4).
    assert!(raw.windows(7).any(|w| w == b"&#1571;"));
    assert!(raw.windows(2).any(|w| w == [0xB9, 0xA4]));
    assert!(raw.windows(9).any(|w| w == b"<![CDATA["));
}
