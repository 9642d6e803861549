//! The bad-input suite: requests of every hostile or broken class, each
//! with its expected answer, after which the server still answers a good
//! request.

mod common;

use common::*;
use im_core::ErrorCode;
use im_soap::FaultCode;
use std::time::{Duration, Instant};

/// What a bad request must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// HTTP 500 with this SOAP Fault code.
    Fault(FaultCode),
    /// HTTP 200 with this errorCode.
    Code(ErrorCode),
    /// This HTTP status, no SOAP answer.
    Status(u16),
}

use Expect::*;

const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const UTF8: Option<&str> = Some("text/xml; charset=utf-8");
const GB: Option<&str> = Some("text/xml; charset=gb2312");

fn env_with_body(body: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="{SOAP11}" xmlns:ser="http://service.ws.family.plugins.inspur.com"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
    )
}

fn item_with(attrs: &str, fields: &str) -> String {
    format!(
        "<bussItem><opertype>Install</opertype><coverType>ADSL</coverType><serviceType>ADSL</serviceType><UserName>bad@x</UserName><AccountNumber>1</AccountNumber><CustomerName>C</CustomerName>{fields}<attrList><attr name=\"ExchangeID\">EX01</attr>{attrs}</attrList></bussItem>"
    )
}

fn ftth_item(attrs: &str) -> String {
    format!(
        "<bussItem><opertype>Install</opertype><coverType>FTTH</coverType><serviceType>FTTH</serviceType><UserName>badftth@x</UserName><AccountNumber>1</AccountNumber><CustomerName>C</CustomerName><attrList><attr name=\"CompoundId\">CP01</attr><attr name=\"Speed\">10M</attr>{attrs}</attrList></bussItem>"
    )
}

fn good_form(flow: &str) -> String {
    form(flow, &adsl_item(&format!("{}@x", flow.to_lowercase())))
}

const LAUGHS: &str = r#"<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;"><!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;"><!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;"><!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;"><!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;"><!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;"><!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>"#;

struct Case {
    name: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    expect: Expect,
}

fn case(
    name: &'static str,
    ct: Option<&'static str>,
    body: impl Into<Vec<u8>>,
    expect: Expect,
) -> Case {
    Case {
        name,
        content_type: ct,
        body: body.into(),
        expect,
    }
}

fn cases() -> Vec<Case> {
    let good = envelope(&good_form("BAD-TEMPLATE"));
    let deep = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
    let mut gb_bad = envelope(&good_form("BAD-GB")).into_bytes();
    let at = gb_bad
        .windows(13)
        .position(|w| w == b"Test Customer")
        .expect("name in template");
    gb_bad[at] = 0xBF;
    gb_bad[at + 1] = 0xFF; // not a GBK trail byte
    let mut nul = envelope(&good_form("BAD-NUL")).into_bytes();
    nul.insert(60, 0);
    let mut utf16_odd = vec![0xFF, 0xFE];
    for u in envelope(&good_form("BAD-U16")).encode_utf16() {
        utf16_odd.extend_from_slice(&u.to_le_bytes());
    }
    utf16_odd.push(b'<');
    let many_attrs = format!(
        r#"<soapenv:Envelope xmlns:soapenv="{SOAP11}"><soapenv:Body><EgyptWorkSheetAll {}><in0/></EgyptWorkSheetAll></soapenv:Body></soapenv:Envelope>"#,
        (0..70)
            .map(|i| format!("a{i}=\"1\""))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let form_many_attrs = format!(
        "<form {}><flowId>X</flowId></form>",
        (0..70)
            .map(|i| format!("a{i}=\"1\""))
            .collect::<Vec<_>>()
            .join(" ")
    );
    vec![
        case("not XML", UTF8, "hello, this is not XML", Fault(FaultCode::Client)),
        case("truncated envelope", UTF8, &good.as_bytes()[..good.len() / 2], Fault(FaultCode::Client)),
        case("empty body", UTF8, "", Fault(FaultCode::Client)),
        case("only white space", UTF8, "   \r\n ", Fault(FaultCode::Client)),
        case(
            "wrong envelope namespace",
            UTF8,
            good.replace(SOAP11, "urn:not-soap"),
            Fault(FaultCode::VersionMismatch),
        ),
        case(
            "SOAP 1.2 envelope",
            Some("application/soap+xml; charset=utf-8"),
            good.replace(SOAP11, "http://www.w3.org/2003/05/soap-envelope"),
            Fault(FaultCode::VersionMismatch),
        ),
        case(
            "Envelope in no namespace",
            UTF8,
            "<Envelope><Body><EgyptWorkSheetAll><in0/></EgyptWorkSheetAll></Body></Envelope>",
            Fault(FaultCode::VersionMismatch),
        ),
        case("root is not an Envelope", UTF8, "<form/>", Fault(FaultCode::Client)),
        case(
            "no Body",
            UTF8,
            format!(r#"<soapenv:Envelope xmlns:soapenv="{SOAP11}"><soapenv:Header/></soapenv:Envelope>"#),
            Fault(FaultCode::Client),
        ),
        case("empty Body", UTF8, env_with_body(""), Fault(FaultCode::Client)),
        case(
            "wrong operation",
            UTF8,
            good.replace("EgyptWorkSheetAll>", "DeleteEverything>"),
            Fault(FaultCode::Client),
        ),
        case(
            "operation without a payload child",
            UTF8,
            env_with_body("<ser:EgyptWorkSheetAll/>"),
            Code(ErrorCode::MissingField),
        ),
        case("empty payload", UTF8, envelope_raw(""), Code(ErrorCode::MissingField)),
        case(
            "nil payload",
            UTF8,
            env_with_body(r#"<ser:EgyptWorkSheetAll><in0 xsi:nil="true" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/></ser:EgyptWorkSheetAll>"#),
            Code(ErrorCode::MissingField),
        ),
        case("white-space payload", UTF8, envelope_raw("  \n "), Code(ErrorCode::MissingField)),
        case("payload not XML", UTF8, envelope("hello"), Code(ErrorCode::MissingField)),
        case("payload root not form", UTF8, envelope("<result><x/></result>"), Code(ErrorCode::MissingField)),
        case("payload truncated", UTF8, envelope("<form><flowId>F</flowId>"), Code(ErrorCode::MissingField)),
        case(
            "unsplit ]]> in the payload",
            UTF8,
            envelope_raw("<![CDATA[<form><a>x]]>y</a></form>]]>"),
            Fault(FaultCode::Client),
        ),
        case(
            "XXE in the envelope",
            UTF8,
            format!(r#"<?xml version="1.0"?><!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><soapenv:Envelope xmlns:soapenv="{SOAP11}"><soapenv:Body><EgyptWorkSheetAll><in0>&xxe;</in0></EgyptWorkSheetAll></soapenv:Body></soapenv:Envelope>"#),
            Fault(FaultCode::Client),
        ),
        case(
            "XXE in the form",
            UTF8,
            envelope(r#"<!DOCTYPE form [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><form><flowId>&xxe;</flowId></form>"#),
            Fault(FaultCode::Client),
        ),
        case(
            "billion laughs in the envelope",
            UTF8,
            format!(r#"<?xml version="1.0"?>{LAUGHS}<soapenv:Envelope xmlns:soapenv="{SOAP11}"><soapenv:Body><EgyptWorkSheetAll><in0>&lol9;</in0></EgyptWorkSheetAll></soapenv:Body></soapenv:Envelope>"#),
            Fault(FaultCode::Client),
        ),
        case(
            "billion laughs in the form",
            UTF8,
            envelope(&format!("{LAUGHS}<form><flowId>&lol9;</flowId></form>")),
            Fault(FaultCode::Client),
        ),
        case(
            "10,000-deep nesting in the envelope",
            UTF8,
            env_with_body(&format!("<ser:EgyptWorkSheetAll><in0>{}</in0></ser:EgyptWorkSheetAll>", deep(10_000))),
            Fault(FaultCode::Client),
        ),
        case(
            "10,000-deep nesting in the form",
            UTF8,
            envelope(&format!("<form>{}</form>", deep(10_000))),
            Code(ErrorCode::MissingField),
        ),
        case(
            "too many nodes in the envelope",
            UTF8,
            env_with_body(&format!("<ser:EgyptWorkSheetAll><in0/></ser:EgyptWorkSheetAll>{}", "<x/>".repeat(20_000))),
            Fault(FaultCode::Client),
        ),
        case("too many attributes in the envelope", UTF8, many_attrs, Fault(FaultCode::Client)),
        case(
            "too many attributes in the form",
            UTF8,
            envelope(&form_many_attrs),
            Code(ErrorCode::MissingField),
        ),
        case("2 MiB body", UTF8, vec![b' '; 2 * 1024 * 1024], Status(413)),
        case("invalid gb2312 bytes", GB, gb_bad, Fault(FaultCode::Client)),
        case(
            "unknown charset in Content-Type",
            Some("text/xml; charset=x-klingon"),
            good.clone(),
            Fault(FaultCode::Client),
        ),
        case(
            "unknown charset in the XML declaration",
            None,
            good.replace("encoding=\"UTF-8\"", "encoding=\"x-klingon\""),
            Fault(FaultCode::Client),
        ),
        case("invalid UTF-8", UTF8, b"<a>\xC3\x28</a>".to_vec(), Fault(FaultCode::Client)),
        case("NUL byte in the envelope", UTF8, nul, Fault(FaultCode::Client)),
        case(
            "NUL reference in the form",
            UTF8,
            envelope(&form("BAD-NULREF", &item_with("", "<Address>a&#0;b</Address>"))),
            Code(ErrorCode::MissingField),
        ),
        case("UTF-16 with an odd byte", UTF8, utf16_odd, Fault(FaultCode::Client)),
        case(
            "over-long field",
            UTF8,
            envelope(&form("BAD-LONG", &item_with("<attr name=\"Speed\">1M</attr>", &format!("<Address>{}</Address>", "x".repeat(300))))),
            Code(ErrorCode::InvalidValue),
        ),
        case(
            "bad Speed",
            UTF8,
            envelope(&form("BAD-SPEED", &item_with("<attr name=\"Speed\">fast</attr>", ""))),
            Code(ErrorCode::InvalidValue),
        ),
        case(
            "bad VLAN",
            UTF8,
            envelope(&form("BAD-VLAN", &ftth_item("<attr name=\"ONTSN\">HWTC11112222</attr><attr name=\"VLAN\">5000</attr>"))),
            Code(ErrorCode::InvalidValue),
        ),
        case(
            "bad IP",
            UTF8,
            envelope(&form("BAD-IP", &item_with("<attr name=\"Speed\">1M</attr><attr name=\"DslamIP\">300.1.1.1</attr>", ""))),
            Code(ErrorCode::InvalidValue),
        ),
        case(
            "bad ONT serial",
            UTF8,
            envelope(&form("BAD-ONT", &ftth_item("<attr name=\"ONTSN\">XYZ-123</attr>"))),
            Code(ErrorCode::InvalidValue),
        ),
        case(
            "two values for one field",
            UTF8,
            envelope(&form("BAD-TWO", &item_with("<attr name=\"Speed\">8M</attr>", "<Speed>16M</Speed>"))),
            Code(ErrorCode::InvalidValue),
        ),
        case(
            "malformed flowId",
            UTF8,
            envelope(&form("BAD FLOW !", &adsl_item("badflow@x"))),
            Code(ErrorCode::InvalidValue),
        ),
        case(
            "mustUnderstand header",
            UTF8,
            good.replace(
                "<soapenv:Header/>",
                r#"<soapenv:Header><wsse:Security xmlns:wsse="urn:wsse" soapenv:mustUnderstand="1"/></soapenv:Header>"#,
            ),
            Fault(FaultCode::MustUnderstand),
        ),
    ]
}

#[test]
fn bad_input_suite() {
    let s = shared();
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    for c in &cases {
        let start = Instant::now();
        let r = post(s.addr, c.content_type, &c.body);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(5), "{}: took {took:?}", c.name);
        match c.expect {
            Fault(code) => {
                assert_eq!(r.status, 500, "{}: {}", c.name, r.text());
                assert_eq!(r.header("content-type"), Some("text/xml; charset=UTF-8"));
                assert!(r.body.is_ascii(), "{}", c.name);
                let f = r.fault();
                assert_eq!(f.code, code, "{}: {}", c.name, f.string);
                // Never internal details, never the payload's secrets.
                assert!(!f.string.contains("om-demo-secret"), "{}", c.name);
                assert!(!f.string.contains("/etc/passwd"), "{}", c.name);
            }
            Code(code) => {
                let o = r.outcome();
                assert_eq!(o.error_code, code, "{}: {}", c.name, o.error_desc);
                assert!(!o.error_desc.contains("om-demo-secret"), "{}", c.name);
            }
            Status(status) => assert_eq!(r.status, status, "{}", c.name),
        }
    }
    // Still serving.
    let o = call(s.addr, &good_form("BAD-AFTER"));
    assert_eq!(o.error_code, ErrorCode::Success, "{}", o.error_desc);
    assert_eq!(get(s.addr, "/health", "x").status, 200);
}

#[test]
fn tolerated_variants_are_not_refused() {
    let s = shared();
    let variants = [
        // No Content-Type at all, no declaration: UTF-8.
        (
            None,
            envelope(&good_form("TOL-1")).replace(r#"<?xml version="1.0" encoding="UTF-8"?>"#, ""),
        ),
        // application/soap+xml header on a SOAP 1.1 envelope.
        (Some("application/soap+xml"), envelope(&good_form("TOL-2"))),
        // Operation in another namespace, parameter named arg0, xsi:type.
        (
            UTF8,
            format!(
                r#"<soapenv:Envelope xmlns:soapenv="{SOAP11}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><ns1:EgyptWorkSheetAll xmlns:ns1="urn:other" soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><arg0 xsi:type="soapenc:string" xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"><![CDATA[{}]]></arg0></ns1:EgyptWorkSheetAll></soapenv:Body></soapenv:Envelope>"#,
                good_form("TOL-3")
            ),
        ),
        // A header entry that need not be understood.
        (
            UTF8,
            envelope(&good_form("TOL-4")).replace(
                "<soapenv:Header/>",
                r#"<soapenv:Header><t:Trace xmlns:t="urn:t" soapenv:mustUnderstand="0">1</t:Trace></soapenv:Header>"#,
            ),
        ),
    ];
    for (ct, body) in variants {
        let o = post(s.addr, ct, body.as_bytes()).outcome();
        assert_eq!(o.error_code, ErrorCode::Success, "{ct:?}: {}", o.error_desc);
    }
    // SOAPAction absent or arbitrary.
    let body = envelope(&good_form("TOL-5"));
    let req = format!(
        "POST /services/EgyptWorkSheetAll HTTP/1.1\r\nHost: x\r\nConnection: close\r\nSOAPAction: urn:whatever\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(
        raw(s.addr, req.as_bytes()).outcome().error_code,
        ErrorCode::Success
    );
}
