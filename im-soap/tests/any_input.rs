//! The fuzz targets' inputs as properties, so that a regression shows in
//! `cargo test`: any bytes, and well-formed envelopes mutated in the ways
//! attackers and broken clients mutate them, go through the request path up
//! to the core's writer (the same harness as `fuzz/fuzz_targets/
//! soap_request.rs`) and give a Fault, an error code or a call ready to
//! submit — never a panic — within a time bound, with the limits on depth,
//! nodes and attributes holding; and every form the client writes reads
//! back as written in gb2312, GBK, GB18030 and UTF-8.

#[path = "../../fuzz/src/soap.rs"]
mod harness;

use harness::{Answer, CONTENT_TYPES, check_request, test_secrets};
use im_core::secrets::Secrets;
use im_core::{ErrorCode, Field, Form, FormItem};
use im_soap::client::encode_request;
use im_soap::envelope::{decode_body, parse_request};
use im_soap::form_xml::parse_form;
use im_soap::{FaultCode, Limits};
use proptest::prelude::*;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Generous: a debug build on a loaded 2-core machine parses a 1 MiB
/// envelope in well under a second.
const CASE_BOUND: Duration = Duration::from_secs(5);

fn secrets() -> &'static Secrets {
    static S: OnceLock<Secrets> = OnceLock::new();
    S.get_or_init(test_secrets)
}

/// Runs the checked request path with the default limits and the time
/// bound; the answer, or the failure as a test failure.
fn run(body: &[u8], ct: Option<&str>) -> Result<Answer, TestCaseError> {
    let t0 = Instant::now();
    let answer = check_request(body, ct, &Limits::default(), secrets()).map_err(|e| {
        TestCaseError::fail(format!(
            "{e}\ninput ({ct:?}): {:?}",
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        ))
    })?;
    let took = t0.elapsed();
    prop_assert!(took < CASE_BOUND, "{} bytes took {took:?}", body.len());
    Ok(answer)
}

fn fault_code(a: &Answer) -> Option<FaultCode> {
    match a {
        Answer::Fault(f) => Some(f.code),
        _ => None,
    }
}

fn error_code(a: &Answer) -> Option<ErrorCode> {
    match a {
        Answer::Refused(o) => Some(o.error_code),
        Answer::Ready(_) => Some(ErrorCode::Success),
        Answer::Fault(_) => None,
    }
}

// ---- generators -----------------------------------------------------------

fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Any text XML 1.0 can carry, with the characters that matter most to
/// the writers and the charsets: markup, CDATA ends, CR, C1 controls,
/// Arabic, hanzi (GB2312 and GBK-only), the euro sign, private use,
/// astral characters.
fn xml_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => any::<char>().prop_filter("XML char", |c| is_xml_char(*c)),
            4 => prop::sample::select(vec![
                '<', '>', '&', '"', '\'', ']', '\r', '\n', '\t', ' ', 'م', 'أ', '工', '単', '€',
                '\u{85}', '\u{9F}', '\u{3000}', '\u{E5E5}', '\u{FFFD}', '😀', '\u{10FFFF}', 'a', '1',
            ]),
        ],
        0..max,
    )
    .prop_map(|v| {
        let s: String = v.into_iter().collect();
        // One in a few values carries a CDATA terminator.
        if s.len() % 5 == 1 { format!("{s}]]>{s}") } else { s }
    })
}

/// [`xml_text`] without leading or trailing white space (what the
/// contract promises to carry unchanged).
fn value() -> impl Strategy<Value = String> {
    xml_text(24).prop_map(|s| s.trim().to_string())
}

/// A name that is a usable element name.
fn simple_name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_.-]{0,12}".prop_filter("not xml…, not a structure name", |n| {
        !n.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("xml"))
            && !["bussinfo", "attrlist", "bussitem"]
                .contains(&n.replace(['_', '-', '.'], "").to_ascii_lowercase().as_str())
    })
}

/// Any form the client can write.
fn any_form() -> impl Strategy<Value = Form> {
    let item = (
        prop::collection::vec((simple_name(), value()), 0..5),
        prop::collection::vec((value(), value()), 0..4),
    )
        .prop_map(|(fields, attrs)| {
            let mut it = FormItem::default();
            for (n, v) in fields {
                it.fields.push(Field::new(n, v));
            }
            for (n, v) in attrs {
                it.attrs.push(Field::new(n, v));
            }
            it
        });
    (
        prop::collection::vec((simple_name(), value()), 0..5),
        prop::collection::vec(item, 0..3),
    )
        .prop_map(|(fields, items)| {
            let mut f = Form::default();
            for (n, v) in fields {
                f.fields.push(Field::new(n, v));
            }
            f.buss_info_present = true;
            f.items = items;
            f
        })
}

/// A form that passes the static checks as far as the credentials and
/// the flowId, so that mutations reach the item checks.
fn plausible_form() -> impl Strategy<Value = Form> {
    (any_form(), "[A-Za-z0-9_.-]{1,20}", value()).prop_map(|(mut f, flow, name)| {
        let mut head = Form::default()
            .field("authusername", "OM_webservice")
            .field("authpassword", "secret")
            .field("flowId", flow)
            .field("popid", "19601");
        head.fields.append(&mut f.fields);
        head.buss_info_present = true;
        head.items = f.items;
        head.items.push(
            FormItem::default()
                .field("opertype", "Install")
                .field("coverType", "ADSL")
                .field("serviceType", "ADSL")
                .field("UserName", "u1@x")
                .field("CustomerName", name)
                .attr("ExchangeID", "EX01")
                .attr("Speed", "16M"),
        );
        head
    })
}

const CHARSETS: [(&str, &str); 4] = [
    ("gb2312", "text/xml; charset=gb2312"),
    ("GBK", "text/xml; charset=GBK"),
    ("gb18030", "text/xml; charset=gb18030"),
    ("utf-8", "text/xml; charset=utf-8"),
];

fn encoded(form: &Form, charset: usize) -> Result<Vec<u8>, TestCaseError> {
    let (label, _) = CHARSETS[charset % CHARSETS.len()];
    let enc = im_soap::envelope::encoding_for_label(label.as_bytes())
        .ok_or_else(|| TestCaseError::fail(format!("no encoding {label}")))?;
    encode_request(form, enc, label).map_err(|e| TestCaseError::fail(e.to_string()))
}

/// What a mutation does to a well-formed request.
#[derive(Debug, Clone)]
enum Mutation {
    /// Cut the body at this fraction (per mille) of its length.
    Truncate(u16),
    /// Set this byte (position per mille) to this value.
    Flip(u16, u8),
    /// Nest this many elements inside the operation's parameter (envelope).
    NestEnvelope(usize),
    /// Nest this many elements inside the form.
    NestForm(usize),
    /// Put this many attributes on the operation element.
    Attributes(usize),
    /// Put this many attributes on a form element.
    FormAttributes(usize),
    /// Repeat the first bussItem this many times.
    ManyItems(usize),
    /// A DTD before the Envelope (this one).
    Dtd(usize),
    /// A DTD inside the form.
    FormDtd(usize),
    /// Declare this charset label in the XML declaration.
    Declare(String),
    /// Send with this `Content-Type` (index into CONTENT_TYPES).
    ContentType(usize),
    /// Split the CDATA section at this fraction (per mille) of the form.
    SplitCdata(u16),
    /// Carry the form as escaped text instead of CDATA.
    Escape,
}

const DTDS: [&str; 4] = [
    r#"<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>"#,
    r#"<!DOCTYPE x SYSTEM "file:///etc/passwd">"#,
    r#"<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>"#,
    "<!DOCTYPE x>",
];

fn any_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0u16..1000).prop_map(Mutation::Truncate),
        (0u16..1000, any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (1usize..200).prop_map(Mutation::NestEnvelope),
        (1usize..200).prop_map(Mutation::NestForm),
        (1usize..200).prop_map(Mutation::Attributes),
        (1usize..200).prop_map(Mutation::FormAttributes),
        (1usize..3000).prop_map(Mutation::ManyItems),
        (0usize..DTDS.len()).prop_map(Mutation::Dtd),
        (0usize..DTDS.len()).prop_map(Mutation::FormDtd),
        prop::sample::select(vec![
            "gb2312",
            "GBK",
            "utf-8",
            "UTF-16",
            "utf-16le",
            "x-klingon",
            "",
            "ebcdic",
            "iso-2022-kr",
            "replacement",
            "gb18030 ",
            "latin1",
        ])
        .prop_map(|s| Mutation::Declare(s.to_string())),
        (0usize..CONTENT_TYPES.len()).prop_map(Mutation::ContentType),
        (0u16..1000).prop_map(Mutation::SplitCdata),
        Just(Mutation::Escape),
    ]
}

fn at(len: usize, per_mille: u16) -> usize {
    len * usize::from(per_mille) / 1000
}

/// The envelope around `payload` (already escaped or in CDATA), declared
/// as `decl`, in UTF-8.
fn envelope(decl: &str, prolog: &str, op_attrs: &str, param: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="{decl}"?>{prolog}<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ser="http://service.ws.family.plugins.inspur.com"><soapenv:Header/><soapenv:Body><ser:EgyptWorkSheetAll{op_attrs}><ser:in0>{param}</ser:in0></ser:EgyptWorkSheetAll></soapenv:Body></soapenv:Envelope>"#
    )
}

fn cdata(s: &str) -> String {
    format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\r', "&#13;")
}

/// A mutated request and what it must get (when the mutation decides it).
struct Mutated {
    body: Vec<u8>,
    ct: Option<&'static str>,
    expect_fault: bool,
    expect_no_form: bool,
    /// The form must read back as this one.
    same_form: bool,
}

fn mutate(form_xml: &str, m: &Mutation) -> Mutated {
    let plain = |param: String| envelope("utf-8", "", "", &param).into_bytes();
    let mut out = Mutated {
        body: Vec::new(),
        ct: Some("text/xml; charset=utf-8"),
        expect_fault: false,
        expect_no_form: false,
        same_form: false,
    };
    let limits = Limits::default();
    match m {
        Mutation::Truncate(p) => {
            let mut b = plain(cdata(form_xml));
            let cut = at(b.len(), *p);
            b.truncate(cut);
            out.body = b;
            // Any cut of a well-formed envelope before its last byte leaves
            // it unclosed.
            out.expect_fault = true;
        }
        Mutation::Flip(p, v) => {
            let mut b = plain(cdata(form_xml));
            let i = at(b.len(), *p).min(b.len() - 1);
            b[i] = *v;
            out.body = b;
        }
        Mutation::NestEnvelope(n) => {
            let param = format!(
                "{}{}{}",
                "<n>".repeat(*n),
                cdata(form_xml),
                "</n>".repeat(*n)
            );
            out.body = plain(param);
            // Envelope, Body, operation, in0: four levels before the nesting.
            out.expect_fault = n + 4 > limits.envelope.max_depth;
        }
        Mutation::NestForm(n) => {
            let nested = form_xml.replacen(
                "<form>",
                &format!("<form>{}{}", "<n>".repeat(*n), "</n>".repeat(*n)),
                1,
            );
            out.body = plain(cdata(&nested));
            out.expect_no_form = n + 1 > limits.form.max_depth;
        }
        Mutation::Attributes(n) => {
            let attrs: String = (0..*n).map(|i| format!(" a{i}=\"{i}\"")).collect();
            out.body = envelope("utf-8", "", &attrs, &cdata(form_xml)).into_bytes();
            out.expect_fault = *n > limits.envelope.max_attributes;
        }
        Mutation::FormAttributes(n) => {
            let attrs: String = (0..*n).map(|i| format!(" a{i}=\"{i}\"")).collect();
            let f = form_xml.replacen("<form>", &format!("<form{attrs}>"), 1);
            out.body = plain(cdata(&f));
            out.expect_no_form = *n > limits.form.max_attributes;
        }
        Mutation::ManyItems(n) => {
            let item = form_xml
                .find("<bussItem>")
                .and_then(|s| {
                    form_xml[s..]
                        .find("</bussItem>")
                        .map(|e| &form_xml[s..s + e + 11])
                })
                .unwrap_or("<bussItem/>");
            let many = form_xml.replacen(item, &item.repeat(*n), 1);
            out.body = plain(cdata(&many));
        }
        Mutation::Dtd(i) => {
            out.body = envelope("utf-8", DTDS[*i], "", &cdata(form_xml)).into_bytes();
            out.expect_fault = true;
        }
        Mutation::FormDtd(i) => {
            out.body = plain(cdata(&format!("{}{form_xml}", DTDS[*i])));
            out.expect_fault = true;
        }
        Mutation::Declare(label) => {
            out.body = envelope(label, "", "", &cdata(form_xml)).into_bytes();
            out.ct = Some("text/xml");
        }
        Mutation::ContentType(i) => {
            out.body = plain(cdata(form_xml));
            out.ct = CONTENT_TYPES[*i];
        }
        Mutation::SplitCdata(p) => {
            let mut cut = at(form_xml.len(), *p);
            while !form_xml.is_char_boundary(cut) {
                cut -= 1;
            }
            let param = format!("{}{}", cdata(&form_xml[..cut]), cdata(&form_xml[cut..]));
            out.body = plain(param);
            out.same_form = true;
        }
        Mutation::Escape => {
            out.body = plain(escape(form_xml));
            out.same_form = true;
        }
    }
    out
}

/// The form the server reads from `body`, if it reads one.
fn read_form(body: &[u8], ct: Option<&str>) -> Option<Form> {
    let limits = Limits::default();
    let (text, _) = decode_body(body, ct).ok()?;
    let req = parse_request(&text, &limits.envelope).ok()?;
    parse_form(&req.payload, &limits.form).ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_get_a_fault_a_code_or_an_acceptance(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        ct in 0usize..CONTENT_TYPES.len(),
    ) {
        run(&bytes, CONTENT_TYPES[ct])?;
    }

    #[test]
    fn any_text_in_the_parameter_or_the_form(text in xml_text(200), ct in 0usize..CONTENT_TYPES.len()) {
        // Text where the payload goes (escaped), and inside a form.
        let body = envelope("utf-8", "", "", &escape(&text));
        run(body.as_bytes(), CONTENT_TYPES[ct])?;
        let form = format!("<form><flowId>F1</flowId><bussInfo><bussItem>{text}</bussItem></bussInfo></form>");
        let body = envelope("utf-8", "", "", &cdata(&form));
        run(body.as_bytes(), Some("text/xml; charset=utf-8"))?;
    }

    #[test]
    fn mutated_envelopes_get_a_fault_a_code_or_an_acceptance(
        form in plausible_form(),
        mutations in prop::collection::vec(any_mutation(), 1..3),
    ) {
        let form_xml = im_soap::form_xml::write_form(&form).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for m in &mutations {
            let case = mutate(&form_xml, m);
            let answer = run(&case.body, case.ct)?;
            if case.expect_fault {
                prop_assert_eq!(fault_code(&answer), Some(FaultCode::Client), "{:?}: {:?}", m, answer);
            }
            if case.expect_no_form {
                prop_assert_eq!(error_code(&answer), Some(ErrorCode::MissingField), "{:?}: {:?}", m, answer);
            }
            if case.same_form {
                let back = read_form(&case.body, case.ct);
                prop_assert_eq!(back.as_ref(), Some(&form), "{:?}", m);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// encode → decode of every form round-trips for any XML-legal text
    /// without leading or trailing white space, in every request charset
    /// (what the charset cannot carry travels as numeric references).
    #[test]
    fn forms_round_trip_in_every_charset(form in any_form(), charset in 0usize..CHARSETS.len()) {
        let bytes = encoded(&form, charset)?;
        let (label, ct) = CHARSETS[charset];
        // The envelope is ASCII; only the form holds what the charset carries.
        let back = read_form(&bytes, Some(ct));
        prop_assert_eq!(back.as_ref(), Some(&form), "{}", label);
        // Without the Content-Type, the declaration says the same.
        let by_declaration = read_form(&bytes, None);
        prop_assert_eq!(by_declaration.as_ref(), Some(&form), "{} (declaration)", label);
        // And the whole path judges it without failing its checks.
        run(&bytes, Some(ct))?;
    }
}

/// Big hostile inputs, each near the 1 MiB body limit: every one answered
/// (a Fault for the envelope, -1001 for the form) within the time bound.
#[test]
fn big_hostile_inputs_are_answered_within_the_limits() {
    let mib = 1024 * 1024;
    let deep = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
    let form_with = |inner: &str| format!("<form><flowId>F1</flowId>{inner}</form>");
    let cases: Vec<(&str, String, Option<FaultCode>, Option<ErrorCode>)> = vec![
        (
            "envelope nested 100,000 deep",
            envelope("utf-8", "", "", &deep(100_000)),
            Some(FaultCode::Client),
            None,
        ),
        (
            "form nested 100,000 deep",
            envelope("utf-8", "", "", &cdata(&form_with(&deep(100_000)))),
            None,
            Some(ErrorCode::MissingField),
        ),
        (
            "200,000 elements in the envelope",
            envelope("utf-8", "", "", &"<b/>".repeat(200_000)),
            Some(FaultCode::Client),
            None,
        ),
        (
            "200,000 elements in the form",
            envelope("utf-8", "", "", &cdata(&form_with(&"<b/>".repeat(200_000)))),
            None,
            Some(ErrorCode::MissingField),
        ),
        (
            "20,000 attributes on the operation",
            envelope(
                "utf-8",
                "",
                &(0..20_000)
                    .map(|i| format!(" a{i}=\"1\""))
                    .collect::<String>(),
                "",
            ),
            Some(FaultCode::Client),
            None,
        ),
        (
            "a 900 KiB attribute value",
            envelope(
                "utf-8",
                "",
                &format!(" a=\"{}\"", "x".repeat(900 * 1024)),
                "",
            ),
            Some(FaultCode::Client),
            None,
        ),
        (
            "billion laughs",
            envelope("utf-8", DTDS[0], "", ""),
            Some(FaultCode::Client),
            None,
        ),
        (
            "70,000 CDATA sections",
            envelope("utf-8", "", "", &"<![CDATA[<]]>".repeat(70_000)),
            None,
            Some(ErrorCode::MissingField),
        ),
        (
            "200,000 character references",
            envelope("utf-8", "", "", &"&#1605;".repeat(140_000)),
            None,
            Some(ErrorCode::MissingField),
        ),
        (
            "4,000 nested namespace declarations in the form",
            envelope(
                "utf-8",
                "",
                "",
                &cdata(&form_with(&format!(
                    "{}{}",
                    (0..4_000)
                        .map(|i| format!("<p xmlns:n{i}=\"u\">"))
                        .collect::<String>(),
                    "</p>".repeat(4_000)
                ))),
            ),
            None,
            Some(ErrorCode::MissingField),
        ),
        (
            "30,000 namespace declarations in the form",
            envelope(
                "utf-8",
                "",
                "",
                &cdata(&form_with(
                    &(0..30_000)
                        .map(|i| format!("<p xmlns:n{i}=\"u\"/>"))
                        .collect::<String>(),
                )),
            ),
            None,
            Some(ErrorCode::MissingField),
        ),
        (
            "unclosed comment",
            format!(
                "{}<!--{}",
                envelope("utf-8", "", "", ""),
                "-".repeat(mib - 400)
            ),
            Some(FaultCode::Client),
            None,
        ),
        (
            "1 MiB of '<'",
            "<".repeat(mib - 1),
            Some(FaultCode::Client),
            None,
        ),
    ];
    let limits = Limits::default();
    for (name, body, fault, code) in cases {
        assert!(
            body.len() <= limits.body_bytes,
            "{name}: {} bytes",
            body.len()
        );
        let t0 = Instant::now();
        let answer = match check_request(
            body.as_bytes(),
            Some("text/xml; charset=utf-8"),
            &limits,
            secrets(),
        ) {
            Ok(a) => a,
            Err(e) => panic!("{name}: {e}"),
        };
        let took = t0.elapsed();
        assert!(took < CASE_BOUND, "{name}: {took:?}");
        assert_eq!(fault_code(&answer), fault, "{name}: {answer:?}");
        if code.is_some() {
            assert_eq!(error_code(&answer), code, "{name}: {answer:?}");
        }
    }
}
