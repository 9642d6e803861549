//! Byte-level tests of the server over real loopback HTTP: charsets,
//! payload shapes, every code, the response format, WSDL, HTTP statuses,
//! health, metrics, limits on time and connections, and shutdown.

mod common;

use common::*;
use im_core::{DuplicateContent, ErrorCode, Outcome};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn assert_ascii_utf8_answer(r: &HttpResponse) {
    assert_eq!(r.header("content-type"), Some("text/xml; charset=UTF-8"));
    assert!(r.body.is_ascii(), "response bytes must be plain ASCII");
    assert!(
        r.body
            .starts_with(br#"<?xml version="1.0" encoding="UTF-8"?>"#)
    );
}

fn query(addr: std::net::SocketAddr, flow: &str, user: &str) -> Outcome {
    call(addr, &form(flow, &query_item(user)))
}

#[test]
fn fixtures_in_every_charset_and_shape_are_stored_as_the_right_unicode() {
    let s = shared();
    let cases = [
        (
            "install_adsl_gb2312.xml",
            "text/xml; charset=gb2312",
            "fx-gb2312@tedata.net.eg",
            "أحمد حسن 开罗工单",
        ),
        (
            "install_adsl_gbk.xml",
            "text/xml; charset=GBK",
            "fx-gbk@tedata.net.eg",
            "أحمد حسن 朱镕基",
        ),
        (
            "install_adsl_gb18030.xml",
            "text/xml; charset=GB18030",
            "fx-gb18030@tedata.net.eg",
            "أحمد حسن 开罗",
        ),
        (
            "install_adsl_utf8.xml",
            "text/xml; charset=utf-8",
            "fx-utf8@tedata.net.eg",
            "أحمد حسن 开罗 😀",
        ),
        (
            "install_escaped_payload.xml",
            "text/xml; charset=gb2312",
            "fx-escaped@tedata.net.eg",
            "أحمد حسن 工单",
        ),
        (
            "install_split_cdata.xml",
            "text/xml; charset=gb2312",
            "fx-split@tedata.net.eg",
            "Split ]]> Name 工单",
        ),
        (
            "install_attr_shapes.xml",
            "text/xml; charset=gb2312",
            "fx-shapes@tedata.net.eg",
            "Shapes",
        ),
    ];
    for (i, (file, ct, user, name)) in cases.into_iter().enumerate() {
        let bytes = fixture(file);
        let r = post(s.addr, Some(ct), &bytes);
        assert_ascii_utf8_answer(&r);
        let o = r.outcome();
        assert_eq!(o.error_code, ErrorCode::Success, "{file}: {}", o.error_desc);
        assert_eq!(o.return_code(), 0);
        let task = o.task_no.clone().expect("a task number");
        assert!(task.starts_with("WS") && task.len() >= 16, "{task}");
        assert_eq!(o.items.len(), 1);
        assert_eq!(o.items[0].error_code, Some(ErrorCode::Success));
        assert_eq!(o.items[0].state, "ACTIVE");
        assert_eq!(o.items[0].user_name, user);
        assert!(o.items[0].port.starts_with("EX01-D"), "{}", o.items[0].port);

        // The same bytes again: a duplicate of the same content, same task.
        let again = post(s.addr, Some(ct), &bytes).outcome();
        assert_eq!(again.error_code, ErrorCode::DuplicateFlowId, "{file}");
        assert_eq!(again.duplicate_content, Some(DuplicateContent::Same));
        assert_eq!(again.task_no.as_deref(), Some(task.as_str()));

        // Stored as the right Unicode, answered right.
        let q = query(s.addr, &format!("FX-Q-{i}"), user);
        assert_eq!(q.error_code, ErrorCode::Success, "{}", q.error_desc);
        let svc = &q.items[0].services;
        assert_eq!(svc.len(), 1, "{file}");
        assert_eq!(svc[0].customer_name, name, "{file}");
        assert_eq!(svc[0].state, "ACTIVE");
    }
    // The attrList shapes named a port and a speed outside the attrList.
    let q = query(s.addr, "FX-Q-SHAPES", "fx-shapes@tedata.net.eg");
    assert_eq!(q.items[0].services[0].port, "EX01-D2/0/2/7");
    assert_eq!(q.items[0].services[0].speed, "8192");
}

#[test]
fn raw_bytes_of_an_answer_follow_the_contract() {
    let s = shared();
    let user = "raw-bytes@x";
    let r = post(
        s.addr,
        Some("text/xml; charset=utf-8"),
        envelope(&form(
            "RAW-1",
            &adsl_install(
                user,
                "<attr name=\"Speed\">2M</attr><attr name=\"Note\" value=\"a]]>b\"/>",
            ),
        ))
        .as_bytes(),
    );
    assert_ascii_utf8_answer(&r);
    let text = r.text();
    assert!(text.contains("<ns1:EgyptWorkSheetAllResponse xmlns:ns1=\"http://service.ws.family.plugins.inspur.com\"><ns1:out><![CDATA[<result><returnCode>0</returnCode><errorCode>0</errorCode>"), "{text}");
    assert!(text.contains("<flowId>RAW-1</flowId><taskNo>WS"), "{text}");
    assert!(!text.contains("duplicateContent"), "{text}");
    assert!(
        text.contains(&format!(
            "<item seq=\"1\" opertype=\"Install\" serviceType=\"ADSL\" UserName=\"{user}\" errorCode=\"0\" port=\"EX01-D1/0/1/"
        )),
        "{text}"
    );
    // Echoed `]]>` (a UserName of a refused call) is split across sections.
    let r = post(
        s.addr,
        Some("text/xml; charset=utf-8"),
        envelope_raw(
            "&lt;form&gt;&lt;authusername&gt;OM_webservice&lt;/authusername&gt;&lt;authpassword&gt;om-demo-secret&lt;/authpassword&gt;&lt;flowId&gt;RAW-2&lt;/flowId&gt;&lt;popid&gt;19601&lt;/popid&gt;&lt;bussInfo&gt;&lt;bussItem&gt;&lt;opertype&gt;Frobnicate&lt;/opertype&gt;&lt;coverType&gt;ADSL&lt;/coverType&gt;&lt;serviceType&gt;ADSL&lt;/serviceType&gt;&lt;UserName&gt;u]]&amp;gt;v &amp;#1605;&lt;/UserName&gt;&lt;/bussItem&gt;&lt;/bussInfo&gt;&lt;/form&gt;",
        )
        .as_bytes(),
    );
    assert_ascii_utf8_answer(&r);
    let text = r.text();
    assert!(
        text.contains("UserName=\"u]]]]><![CDATA[>v &#1605;\""),
        "{text}"
    );
    let o = r.outcome();
    assert_eq!(o.error_code, ErrorCode::InvalidOpertype);
    assert_eq!(o.items[0].user_name, "u]]>v م");
    assert!(text.contains("<taskNo></taskNo>"), "{text}");
}

#[test]
fn ftth_and_its_iptv_in_one_call() {
    let s = shared();
    let o = post(
        s.addr,
        Some("text/xml; charset=gb2312"),
        &fixture("install_ftth_iptv.xml"),
    )
    .outcome();
    assert_eq!(o.error_code, ErrorCode::Success, "{}", o.error_desc);
    assert_eq!(o.items.len(), 2);
    assert_eq!(o.items[0].ont_sn, "HWTC1A2B3C4D");
    assert_eq!(o.items[0].vlan, "100");
    assert_eq!(o.items[1].service_type, "IPTV");
    assert_eq!(o.items[1].vlan, "3000");
    let q = query(s.addr, "FX-Q-FTTH", "fx-ftth@tedata.net.eg");
    assert_eq!(q.items[0].services.len(), 2);
    assert!(
        q.items[0]
            .services
            .iter()
            .all(|v| v.customer_name == "أحمد حسن")
    );
    let ftth = q.items[0]
        .services
        .iter()
        .find(|v| v.service_type == "FTTH")
        .expect("FTTH service");
    assert_eq!(ftth.compound, "CP01");
    assert_eq!(ftth.olt, "OLT01");
}

#[test]
fn install_modify_delete_query() {
    let s = shared();
    let user = "lifecycle@x";
    let o = call(s.addr, &form("LC-1", &adsl_item(user)));
    assert_eq!(o.error_code, ErrorCode::Success, "{}", o.error_desc);
    let modify = format!(
        "<bussItem><opertype>Modify</opertype><coverType>ADSL</coverType><serviceType>ADSL</serviceType><UserName>{user}</UserName><attrList><attr name=\"Speed\">32M</attr></attrList></bussItem>"
    );
    let o = call(s.addr, &form("LC-2", &modify));
    assert_eq!(o.error_code, ErrorCode::Success, "{}", o.error_desc);
    let q = query(s.addr, "LC-Q1", user);
    assert_eq!(q.items[0].services[0].speed, "32768");
    let delete = format!(
        "<bussItem><opertype>Delete</opertype><coverType>ADSL</coverType><serviceType>ADSL</serviceType><UserName>{user}</UserName></bussItem>"
    );
    let o = call(s.addr, &form("LC-3", &delete));
    assert_eq!(o.error_code, ErrorCode::Success, "{}", o.error_desc);
    assert_eq!(o.items[0].state, "INACTIVE");
    let q = query(s.addr, "LC-Q2", user);
    assert_eq!(q.items[0].services[0].state, "INACTIVE");
    // Query claims no flowId: the same flowId queries again.
    let q = query(s.addr, "LC-Q2", user);
    assert_eq!(q.error_code, ErrorCode::Success);
    // No match is success with no service.
    let q = query(s.addr, "LC-Q3", "nobody@x");
    assert_eq!(q.error_code, ErrorCode::Success);
    assert!(q.items[0].services.is_empty());
}

#[test]
fn every_code_is_reachable() {
    let s = shared();
    let item = |op: &str, cover: &str, user: &str, attrs: &str| {
        format!(
            "<bussItem><opertype>{op}</opertype><coverType>{cover}</coverType><serviceType>{cover}</serviceType><UserName>{user}</UserName><AccountNumber>1</AccountNumber><CustomerName>C</CustomerName><attrList>{attrs}</attrList></bussItem>"
        )
    };
    let cases: Vec<(String, ErrorCode)> = vec![
        (
            form("CODE-0", &adsl_item("code0@x")),
            ErrorCode::Success,
        ),
        (
            "<form><authusername>OM_webservice</authusername><authpassword>om-demo-secret</authpassword><flowId>CODE-1001</flowId><bussInfo>".to_string()
                + &adsl_item("code1001@x")
                + "</bussInfo></form>",
            ErrorCode::MissingField,
        ),
        (
            form("CODE-1002", &adsl_item("code1002@x"))
                .replace("om-demo-secret", "wrong-password"),
            ErrorCode::AuthFailed,
        ),
        (
            form("CODE-0", &adsl_item("code0@x")),
            ErrorCode::DuplicateFlowId,
        ),
        (
            form(
                "CODE-1004",
                &item("Frobnicate", "ADSL", "c1004@x", "<attr name=\"ExchangeID\">EX01</attr><attr name=\"Speed\">1M</attr>"),
            ),
            ErrorCode::InvalidOpertype,
        ),
        (
            form(
                "CODE-1005",
                &item("Install", "DSL2", "c1005@x", "<attr name=\"ExchangeID\">EX01</attr><attr name=\"Speed\">1M</attr>"),
            ),
            ErrorCode::UnsupportedService,
        ),
        (
            form(
                "CODE-1006",
                &item("Install", "ADSL", "c1006@x", "<attr name=\"ExchangeID\">EX01</attr><attr name=\"Speed\">fast</attr>"),
            ),
            ErrorCode::InvalidValue,
        ),
        (
            form(
                "CODE-1007",
                &item("Install", "ADSL", "c1007@x", "<attr name=\"ExchangeID\">EX99</attr><attr name=\"Speed\">1M</attr>"),
            ),
            ErrorCode::UnknownReference,
        ),
        (
            form("CODE-1008", &item("Delete", "ADSL", "never-installed@x", "")),
            ErrorCode::StateConflict,
        ),
        (
            form(
                "CODE-1009",
                &item(
                    "Install",
                    "ADSL",
                    "c1009@x",
                    "<attr name=\"ExchangeID\">EX01</attr><attr name=\"Dslamname\">EX01-D1</attr><attr name=\"FrameNumber\">0</attr><attr name=\"SlotNumber\">1</attr><attr name=\"PortNumber\">9</attr><attr name=\"Speed\">1M</attr>",
                ),
            ),
            ErrorCode::ResourceUnavailable,
        ),
    ];
    for (f, want) in cases {
        let r = post(
            s.addr,
            Some("text/xml; charset=utf-8"),
            envelope(&f).as_bytes(),
        );
        assert_ascii_utf8_answer(&r);
        let o = r.outcome();
        assert_eq!(o.error_code, want, "{f}: {}", o.error_desc);
        assert_eq!(o.return_code(), u8::from(want != ErrorCode::Success));
        assert!(!o.error_desc.is_empty());
        assert!(
            !o.error_desc.contains("om-demo-secret") && !o.error_desc.contains("wrong-password")
        );
        if want.code() <= -1004 && want != ErrorCode::Internal {
            assert_eq!(o.items[0].error_code, Some(want), "{f}");
        }
    }
}

#[test]
fn overload_answers_9999_and_stores_nothing() {
    let server = TestServer::start(|c| {
        c.store.queue_capacity = 1;
        c.store.synchronous = im_core::Synchronous::Full;
    });
    let addr = server.addr;
    let mut refused: Vec<String> = Vec::new();
    for round in 0..20 {
        let handles: Vec<_> = (0..48)
            .map(|i| {
                std::thread::spawn(move || {
                    let flow = format!("OVL-{round}-{i}");
                    let o = call(
                        addr,
                        &form(&flow, &adsl_item(&format!("ovl-{round}-{i}@x"))),
                    );
                    (flow, o)
                })
            })
            .collect();
        for h in handles {
            let (flow, o) = h.join().expect("client thread");
            match o.error_code {
                ErrorCode::Success => {}
                ErrorCode::Internal => refused.push(flow),
                other => panic!("{flow}: unexpected {other}: {}", o.error_desc),
            }
        }
        if !refused.is_empty() {
            break;
        }
    }
    assert!(!refused.is_empty(), "a one-slot queue never overflowed");
    // -9999 guarantees nothing was stored: the same flowId is accepted now.
    let flow = &refused[0];
    let user = flow.to_lowercase() + "@x";
    let o = call(addr, &form(flow, &adsl_item(&user)));
    assert_eq!(o.error_code, ErrorCode::Success, "{}", o.error_desc);
}

#[test]
fn return_element_setting_changes_answer_and_wsdl() {
    let server = TestServer::start(|c| {
        c.response_element = im_soap::ReturnElement::AxisReturn;
    });
    let r = post(
        server.addr,
        Some("text/xml; charset=utf-8"),
        envelope(&form("AXIS-1", &adsl_item("axis@x"))).as_bytes(),
    );
    let text = r.text();
    assert!(
        text.contains("<ns1:EgyptWorkSheetAllReturn><![CDATA[<result>"),
        "{text}"
    );
    assert!(!text.contains("<ns1:out>"));
    assert_eq!(r.outcome().error_code, ErrorCode::Success);
    let w = get(server.addr, "/services/EgyptWorkSheetAll?wsdl", "localhost");
    assert!(w.text().contains("name=\"EgyptWorkSheetAllReturn\""));
    // The default server uses `out`.
    let w = get(shared().addr, "/services/EgyptWorkSheetAll?wsdl", "x");
    assert!(w.text().contains("<xsd:element name=\"out\""));
}

#[test]
fn wsdl_address_from_host_or_public_url() {
    let s = shared();
    for q in ["?wsdl", "?WSDL", "?wsdl=1"] {
        let r = get(
            s.addr,
            &format!("/services/EgyptWorkSheetAll{q}"),
            "im.example:8080",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/xml; charset=UTF-8"));
        let text = r.text();
        assert!(
            text.contains(
                "<soap:address location=\"http://im.example:8080/services/EgyptWorkSheetAll\"/>"
            ),
            "{text}"
        );
        roxmltree::Document::parse(&text).expect("well-formed WSDL");
    }
    let server = TestServer::start(|c| c.public_url = Some("https://om-gw.example.net/im".into()));
    let r = get(server.addr, "/services/EgyptWorkSheetAll?wsdl", "ignored:1");
    assert!(
        r.text()
            .contains("location=\"https://om-gw.example.net/im/services/EgyptWorkSheetAll\"")
    );
}

#[test]
fn http_statuses() {
    let s = shared();
    assert_eq!(get(s.addr, "/nope", "x").status, 404);
    assert_eq!(get(s.addr, "/", "x").status, 404);
    let r = get(s.addr, "/services/EgyptWorkSheetAll", "x");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
    let r = raw(
        s.addr,
        b"PUT /services/EgyptWorkSheetAll HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    let r = raw(
        s.addr,
        b"POST /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    let r = raw(
        s.addr,
        b"DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    // A request head over the limit (64 KiB).
    let mut big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 70_000));
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(raw(s.addr, &big).status, 431);
}

#[test]
fn bodies_over_the_limit_get_413_without_being_read() {
    let s = shared();
    // Declared 2 MiB, 16 bytes sent: answered at once.
    let start = Instant::now();
    let r = raw(
        s.addr,
        b"POST /services/EgyptWorkSheetAll HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 2097152\r\n\r\n<soapenv:Envelo",
    );
    assert_eq!(r.status, 413);
    assert!(start.elapsed() < Duration::from_secs(5));
    // Chunked, no length declared: cut at the limit.
    let mut req = b"POST /services/EgyptWorkSheetAll HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..17 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw(s.addr, &req);
    assert_eq!(r.status, 413);
    // Exactly at the limit is read (and is then just not XML).
    let body = vec![b' '; 1024 * 1024];
    let r = post(s.addr, Some("text/xml"), &body);
    assert_eq!(r.status, 500);
}

#[test]
fn health_and_metrics() {
    let s = shared();
    let r = get(s.addr, "/health", "x");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok\n");
    let o = call(s.addr, &form("MET-1", &adsl_item("metrics@x")));
    assert_eq!(o.error_code, ErrorCode::Success, "{}", o.error_desc);
    let _ = post(s.addr, Some("text/xml"), b"not xml");
    let r = get(s.addr, "/metrics", "x");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    let text = r.text();
    for needle in [
        "im_soap_calls_total{error_code=\"0\",opertype=\"Install\"}",
        "im_soap_faults_total{faultcode=\"Client\"}",
        "im_soap_call_duration_seconds_bucket{le=",
        "im_soap_in_flight_calls",
        "im_writer_queue_depth",
        "im_writer_batch_size_bucket{le=\"1\"}",
        "im_writer_batch_size_bucket{le=\"+Inf\"}",
        "im_writer_batch_size_count",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn keep_alive_connection_serves_many_calls() {
    let s = shared();
    let mut conn = TcpStream::connect(s.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    for i in 0..5 {
        let body = envelope(&form(&format!("KA-{i}"), &adsl_item(&format!("ka-{i}@x"))));
        let req = format!(
            "POST /services/EgyptWorkSheetAll HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(req.as_bytes()).expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        let resp = loop {
            let n = conn.read(&mut buf).expect("read");
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
            if let Some(r) = parse_http(&got)
                && r.header("content-length")
                    .and_then(|l| l.parse::<usize>().ok())
                    == Some(r.body.len())
            {
                break r;
            }
        };
        assert_eq!(resp.outcome().error_code, ErrorCode::Success);
    }
}

#[test]
fn slow_clients_are_cut_off() {
    let server = TestServer::start(|c| {
        c.header_read_timeout = im_soap::config::HumanDuration(Duration::from_millis(400));
        c.body_timeout = im_soap::config::HumanDuration(Duration::from_millis(400));
    });
    // Headers trickled past the time-out: closed without an answer.
    let mut conn = TcpStream::connect(server.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let start = Instant::now();
    conn.write_all(b"POST /services/EgyptWorkSheetAll HTTP/1.1\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_millis(150));
    let _ = conn.write_all(b"Host: x\r\n");
    let mut buf = Vec::new();
    let _ = conn.read_to_end(&mut buf);
    let waited = start.elapsed();
    assert!(
        buf.is_empty() || buf.starts_with(b"HTTP/1.1 408"),
        "{buf:?}"
    );
    assert!(waited >= Duration::from_millis(350), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // A body trickled past the time-out: 408.
    let mut conn = TcpStream::connect(server.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"POST /services/EgyptWorkSheetAll HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n<soapenv:")
        .expect("write");
    let mut buf = Vec::new();
    let _ = conn.read_to_end(&mut buf);
    let r = parse_http(&buf).expect("an answer");
    assert_eq!(r.status, 408);
    // The server still answers.
    let o = call(server.addr, &form("SLOW-OK", &adsl_item("slow-ok@x")));
    assert_eq!(o.error_code, ErrorCode::Success);
}

#[test]
fn past_the_connection_cap_health_is_answered_and_calls_get_503_then_clients_wait() {
    let server = TestServer::start(|c| {
        c.max_connections = 2;
        c.header_read_timeout = im_soap::config::HumanDuration(Duration::from_millis(800));
    });
    let hold = |n: usize| -> Vec<TcpStream> {
        (0..n)
            .map(|_| {
                let mut c = TcpStream::connect(server.addr).expect("connect");
                c.write_all(b"GET /health HTTP/1.1\r\n").expect("write");
                c
            })
            .collect()
    };
    let idle = hold(2);
    std::thread::sleep(Duration::from_millis(100));
    // The cap is reached: a liveness probe on a new connection is still
    // answered at once, and a work order is told to come back (503, which
    // an OM client retries) instead of waiting in the listen backlog.
    let start = Instant::now();
    let r = get(server.addr, "/health", "x");
    assert_eq!(r.status, 200);
    let body = envelope(&form("CAP-1", &adsl_item("cap1@x")));
    let r = post(
        server.addr,
        Some("text/xml; charset=utf-8"),
        body.as_bytes(),
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    // The spare connections taken too, a new client waits until the idle
    // ones are cut by the header time-out.
    let spare = hold(16);
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let o = call(server.addr, &form("CAP-1", &adsl_item("cap1@x")));
    assert!(
        o.is_success(),
        "accepted, not a duplicate: the 503 stored nothing: {o:?}"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    drop((idle, spare));
}

#[test]
fn the_health_listener_answers_probes_whatever_the_service_port_holds() {
    let server = TestServer::start(|c| {
        c.max_connections = 1;
        c.health_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        c.header_read_timeout = im_soap::config::HumanDuration(Duration::from_secs(5));
    });
    let health = server.health.expect("a health listener");
    // The service port's cap and its spare connections all taken.
    let _held: Vec<TcpStream> = (0..17)
        .map(|_| {
            let mut c = TcpStream::connect(server.addr).expect("connect");
            c.write_all(b"GET /health HTTP/1.1\r\n").expect("write");
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    for _ in 0..5 {
        assert_eq!(get(health, "/health", "x").status, 200);
    }
    assert!(
        get(health, "/metrics", "x")
            .text()
            .contains("im_writer_jobs")
    );
    assert_eq!(
        get(health, "/services/EgyptWorkSheetAll?wsdl", "x").status,
        404
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn graceful_shutdown_finishes_in_flight_calls() {
    let mut server = TestServer::start(|_| {});
    let addr = server.addr;
    let body = envelope(&form("SHUT-1", &adsl_item("shutdown@x")));
    let head = format!(
        "POST /services/EgyptWorkSheetAll HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    conn.write_all(head.as_bytes()).expect("write");
    conn.write_all(&body.as_bytes()[..100]).expect("write");
    std::thread::sleep(Duration::from_millis(200));
    server.begin_shutdown();
    std::thread::sleep(Duration::from_millis(200));
    conn.write_all(&body.as_bytes()[100..]).expect("write");
    let mut buf = Vec::new();
    let _ = conn.read_to_end(&mut buf);
    let r = parse_http(&buf).expect("the in-flight call was answered");
    assert_eq!(r.outcome().error_code, ErrorCode::Success);
    let im = server.im.clone();
    server.join();
    // The listener is gone.
    assert!(TcpStream::connect(addr).is_err());
    // The core was closed after the call was stored.
    drop(im);
}

#[test]
fn failed_om_authentications_are_logged_and_limited_per_address_but_never_lock() {
    let server = TestServer::start(|c| {
        c.om_auth.max_failures = 3;
        c.om_auth.window = im_soap::config::HumanDuration(Duration::from_millis(1500));
    });
    let wrong = |flow: &str| {
        call(
            server.addr,
            &form(flow, &adsl_item(&format!("{flow}@x"))).replace("om-demo-secret", "wrong"),
        )
    };
    for i in 0..3 {
        let o = wrong(&format!("LIMIT-W{i}"));
        assert_eq!(o.error_code, ErrorCode::AuthFailed, "{o:?}");
    }
    // Beyond the limit: held back with -9999 (retry), the right password too,
    // and nothing is stored for it.
    let o = wrong("LIMIT-W3");
    assert_eq!(o.error_code, ErrorCode::Internal, "{o:?}");
    assert!(o.error_desc.contains("too many failed"), "{o:?}");
    let o = call(server.addr, &form("LIMIT-OK", &adsl_item("limit-ok@x")));
    assert_eq!(o.error_code, ErrorCode::Internal, "{o:?}");
    // The window ends: the same call (same flowId) goes through — the OM
    // account was never locked.
    std::thread::sleep(Duration::from_millis(1600));
    let o = call(server.addr, &form("LIMIT-OK", &adsl_item("limit-ok@x")));
    assert_eq!(o.error_code, ErrorCode::Success, "{o:?}");
    // The three judged failures are in the login log (written in the
    // background), with the address; the held-back ones are not.
    let db = rusqlite::Connection::open(&server.db).expect("db");
    let mut rows = Vec::new();
    for _ in 0..50 {
        rows = db
            .prepare(
                "SELECT account, ip, outcome, auth_mode FROM login_log WHERE reason LIKE 'OM call%' ORDER BY id",
            )
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .expect("login log");
        if rows.len() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (account, ip, outcome, mode) in &rows {
        assert_eq!(
            (
                account.as_str(),
                ip.as_str(),
                outcome.as_str(),
                mode.as_str()
            ),
            ("OM_webservice", "127.0.0.1", "FAILURE", "LOCAL")
        );
    }
    let failed: i64 = db
        .query_row(
            "SELECT failed_logins FROM account WHERE login = 'OM_webservice'",
            [],
            |r| r.get(0),
        )
        .expect("account");
    assert_eq!(failed, 0, "OM failures never count toward a lockout");
}

#[test]
fn health_says_so_when_the_store_refuses_writes() {
    let server = TestServer::start(|_| {});
    let o = call(server.addr, &form("HEALTH-1", &adsl_item("health1@x")));
    assert!(o.is_success(), "{o:?}");
    assert_eq!(get(server.addr, "/health", "x").status, 200);
    // Storage refuses every batch's bookkeeping write (as a full disk
    // would refuse the commit): the calls get -9999, nothing is stored, and
    // /health turns 503 although reads still work.
    let db = rusqlite::Connection::open(&server.db).expect("db");
    db.execute_batch(
        "CREATE TRIGGER refuse_writes BEFORE UPDATE ON meta \
         BEGIN SELECT RAISE(ABORT, 'injected storage failure'); END",
    )
    .expect("trigger");
    let o = call(server.addr, &form("HEALTH-2", &adsl_item("health2@x")));
    assert_eq!(o.error_code, ErrorCode::Internal, "{o:?}");
    let r = get(server.addr, "/health", "x");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("refuses writes"), "{}", r.text());
    let m = get(server.addr, "/metrics", "x").text();
    assert!(m.contains("im_store_refusing_writes 1"), "{m}");
    // Storage recovers: the next batch commits and /health is 200 again.
    db.execute_batch("DROP TRIGGER refuse_writes")
        .expect("drop");
    let o = call(server.addr, &form("HEALTH-2", &adsl_item("health2@x")));
    assert!(o.is_success(), "the same flowId goes through: {o:?}");
    assert_eq!(get(server.addr, "/health", "x").status, 200);
}
