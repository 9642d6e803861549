//! The request envelope: charset detection and decoding, SOAP 1.1 envelope
//! parsing by the tolerant rules of the contract, and the payload text.
//!
//! Order of charset sources: a byte-order mark, the `Content-Type` charset,
//! the XML declaration's `encoding`, then UTF-8. Labels resolve through
//! encoding_rs (WHATWG), so `gb2312` decodes as GBK.

use crate::fault::{Fault, FaultCode};
use crate::xml::{self, ParseFailure, XmlLimits};
use encoding_rs::Encoding;
use roxmltree::Node;
use std::borrow::Cow;

/// The SOAP 1.1 envelope namespace.
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The SOAP 1.2 envelope namespace (answered with `VersionMismatch`).
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
/// The service namespace of EgyptWorkSheetAll.
pub const SERVICE_NS: &str = "http://service.ws.family.plugins.inspur.com";
/// The operation's local name.
pub const OPERATION: &str = "EgyptWorkSheetAll";
/// The SOAP 1.1 actor URI meaning "the next node" (us).
const ACTOR_NEXT: &str = "http://schemas.xmlsoap.org/soap/actor/next";

/// Where the charset of a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharsetSource {
    /// A byte-order mark.
    Bom,
    /// The `Content-Type` header's `charset` parameter.
    ContentType,
    /// The XML declaration's `encoding`.
    Declaration,
    /// Nothing said: UTF-8.
    Default,
}

/// The `charset` parameter of a `Content-Type` value, unquoted, if any.
///
/// ```
/// use im_soap::envelope::content_type_charset;
/// assert_eq!(content_type_charset("text/xml; charset=\"gb2312\""), Some("gb2312"));
/// assert_eq!(content_type_charset("text/xml"), None);
/// ```
pub fn content_type_charset(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'').trim();
        (!v.is_empty()).then_some(v)
    })
}

/// The `encoding` of an XML declaration at the start of ASCII-compatible
/// bytes (looked for in the first 1 KiB only).
///
/// ```
/// use im_soap::envelope::declared_encoding;
/// assert_eq!(declared_encoding(b"<?xml version='1.0' encoding='GBK'?><a/>"), Some(&b"GBK"[..]));
/// assert_eq!(declared_encoding(b"<a/>"), None);
/// ```
pub fn declared_encoding(bytes: &[u8]) -> Option<&[u8]> {
    let head = &bytes[..bytes.len().min(1024)];
    let head = head.strip_prefix(b"<?xml")?;
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = &head[..end];
    let at = decl.windows(8).position(|w| w == b"encoding")?;
    let rest = &decl[at + 8..];
    let rest = trim_ascii_start(rest).strip_prefix(b"=")?;
    let rest = trim_ascii_start(rest);
    let quote = *rest.first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let rest = &rest[1..];
    let close = rest.iter().position(|&b| b == quote)?;
    Some(&rest[..close])
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// Resolves a charset label; `None` for labels encoding_rs does not know
/// (and for the WHATWG `replacement` encoding, which decodes nothing).
pub fn encoding_for_label(label: &[u8]) -> Option<&'static Encoding> {
    Encoding::for_label(label).filter(|e| *e != encoding_rs::REPLACEMENT)
}

/// Picks the charset of a message: BOM, then `Content-Type`, then the XML
/// declaration, then UTF-8. Returns the encoding, the length of the BOM to
/// skip, and where the choice came from; a label nobody knows is a
/// `Client` Fault.
pub fn detect_charset(
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<(&'static Encoding, usize, CharsetSource), Fault> {
    if let Some((enc, bom_len)) = Encoding::for_bom(bytes) {
        return Ok((enc, bom_len, CharsetSource::Bom));
    }
    if let Some(label) = content_type.and_then(content_type_charset) {
        return encoding_for_label(label.as_bytes())
            .map(|e| (e, 0, CharsetSource::ContentType))
            .ok_or_else(|| unknown_charset(label.as_bytes()));
    }
    if let Some(label) = declared_encoding(bytes) {
        return encoding_for_label(label)
            .map(|e| (e, 0, CharsetSource::Declaration))
            .ok_or_else(|| unknown_charset(label));
    }
    Ok((encoding_rs::UTF_8, 0, CharsetSource::Default))
}

fn unknown_charset(label: &[u8]) -> Fault {
    let shown: String = String::from_utf8_lossy(label).chars().take(40).collect();
    Fault::client(format!("unknown charset {shown:?}"))
}

/// Decodes a message body: charset by [`detect_charset`], bytes invalid for
/// that charset are a `Client` Fault (never silently replaced).
pub fn decode_body<'a>(
    bytes: &'a [u8],
    content_type: Option<&str>,
) -> Result<(Cow<'a, str>, &'static Encoding), Fault> {
    let (enc, bom_len, _) = detect_charset(bytes, content_type)?;
    let body = &bytes[bom_len..];
    match enc.decode_without_bom_handling_and_without_replacement(body) {
        Some(text) => Ok((text, enc)),
        None => Err(Fault::client(format!(
            "the request holds bytes that are not valid {}",
            enc.name()
        ))),
    }
}

/// What a usable SOAP 1.1 envelope of this operation carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The payload: the text of the operation element's first child
    /// (CDATA sections and escaped text concatenated, references decoded);
    /// empty when that child is absent, nil or empty.
    pub payload: String,
    /// The operation element's namespace, when it was not the service's
    /// (worth a log line, not a refusal).
    pub foreign_namespace: Option<String>,
}

/// Parses a decoded envelope by the contract's tolerant rules.
///
/// A `Fault` is returned exactly for what §1 lists: not XML, a DTD, over
/// the limits, not an Envelope, a non-SOAP-1.1 namespace
/// (`VersionMismatch`), a `mustUnderstand` header (`MustUnderstand`), no
/// Body, or an operation other than `EgyptWorkSheetAll`.
pub fn parse_request(text: &str, limits: &XmlLimits) -> Result<Request, Fault> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let doc = match xml::parse_limited(text, limits) {
        Ok(doc) => doc,
        Err(ParseFailure::Dtd) => {
            return Err(Fault::client("a DTD is not allowed in a SOAP message"));
        }
        Err(ParseFailure::Limit(e)) => return Err(Fault::client(format!("envelope: {e}"))),
        Err(ParseFailure::Syntax(e)) => {
            return Err(Fault::client(format!(
                "the request is not well-formed XML: {e}"
            )));
        }
    };
    let env = doc.root_element();
    if env.tag_name().name() != "Envelope" {
        return Err(Fault::client("the request is not a SOAP Envelope"));
    }
    match env.tag_name().namespace() {
        Some(SOAP11_NS) => {}
        Some(SOAP12_NS) => {
            return Err(Fault::new(
                FaultCode::VersionMismatch,
                "SOAP 1.2 is not supported: send a SOAP 1.1 envelope (http://schemas.xmlsoap.org/soap/envelope/)",
            ));
        }
        _ => {
            return Err(Fault::new(
                FaultCode::VersionMismatch,
                "the Envelope is not in the SOAP 1.1 namespace (http://schemas.xmlsoap.org/soap/envelope/)",
            ));
        }
    }
    let mut body = None;
    for child in env.children().filter(Node::is_element) {
        match child.tag_name().name() {
            "Header" if body.is_none() => check_headers(child)?,
            "Body" if body.is_none() => body = Some(child),
            _ => {}
        }
    }
    let Some(body) = body else {
        return Err(Fault::client("the Envelope has no Body"));
    };
    let Some(op) = xml::first_element(body) else {
        return Err(Fault::client("the Body is empty"));
    };
    if op.tag_name().name() != OPERATION {
        let name: String = op.tag_name().name().chars().take(64).collect();
        return Err(Fault::client(format!(
            "operation {name:?} is not supported; this endpoint serves EgyptWorkSheetAll"
        )));
    }
    let foreign_namespace = match op.tag_name().namespace() {
        Some(SERVICE_NS) => None,
        Some(ns) => Some(ns.chars().take(200).collect()),
        None => Some(String::new()),
    };
    let payload = match xml::first_element(op) {
        None => String::new(),
        Some(param) => match multi_ref(body, param) {
            Some(target) => xml::text_of(target),
            None => xml::text_of(param),
        },
    };
    Ok(Request {
        payload,
        foreign_namespace,
    })
}

/// Refuses a header entry that must be understood and is aimed at us.
fn check_headers(header: Node<'_, '_>) -> Result<(), Fault> {
    for entry in header.children().filter(Node::is_element) {
        let must = entry.attributes().any(|a| {
            a.name() == "mustUnderstand"
                && matches!(a.namespace(), None | Some(SOAP11_NS))
                && matches!(a.value().trim(), "1" | "true")
        });
        let actor = entry
            .attributes()
            .find(|a| a.name() == "actor" && matches!(a.namespace(), None | Some(SOAP11_NS)))
            .map(|a| a.value().trim());
        let for_us = matches!(actor, None | Some("") | Some(ACTOR_NEXT));
        if must && for_us {
            let name: String = entry.tag_name().name().chars().take(64).collect();
            return Err(Fault::new(
                FaultCode::MustUnderstand,
                format!("header {name} is marked mustUnderstand and is not understood"),
            ));
        }
    }
    Ok(())
}

/// An Axis rpc/encoded parameter may be `<in0 href="#id0"/>` with its value
/// in a `<multiRef id="id0">` sibling of the operation element.
fn multi_ref<'a, 'i>(body: Node<'a, 'i>, param: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    let id = param.attribute("href")?.strip_prefix('#')?;
    body.children()
        .filter(Node::is_element)
        .find(|n| n.attribute("id") == Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> XmlLimits {
        XmlLimits {
            max_depth: 16,
            max_nodes: 10_000,
            max_attributes: 64,
            max_attribute_len: 8192,
        }
    }

    fn env(body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="gb2312"?><soapenv:Envelope xmlns:soapenv="{SOAP11_NS}" xmlns:ser="{SERVICE_NS}"><soapenv:Header/><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
        )
    }

    fn code_of(r: Result<Request, Fault>) -> FaultCode {
        match r {
            Err(f) => f.code,
            Ok(r) => panic!("expected a fault, got {r:?}"),
        }
    }

    #[test]
    fn charset_order() {
        let gbk_decl = b"<?xml version=\"1.0\" encoding=\"gb2312\"?><a/>";
        let (e, _, s) = detect_charset(gbk_decl, None).expect("known");
        assert_eq!((e, s), (encoding_rs::GBK, CharsetSource::Declaration));
        let (e, _, s) = detect_charset(gbk_decl, Some("text/xml; charset=utf-8")).expect("known");
        assert_eq!((e, s), (encoding_rs::UTF_8, CharsetSource::ContentType));
        let bom = b"\xEF\xBB\xBF<a/>";
        let (e, n, s) = detect_charset(bom, Some("text/xml; charset=gb2312")).expect("known");
        assert_eq!((e, n, s), (encoding_rs::UTF_8, 3, CharsetSource::Bom));
        let (e, _, s) = detect_charset(b"<a/>", None).expect("known");
        assert_eq!((e, s), (encoding_rs::UTF_8, CharsetSource::Default));
        let (e, _, _) = detect_charset(b"<a/>", Some("text/xml; charset=GB18030")).expect("known");
        assert_eq!(e, encoding_rs::GB18030);
        let (e, _, _) = detect_charset(b"<a/>", Some("text/xml;charset=GBK")).expect("known");
        assert_eq!(e, encoding_rs::GBK);
        assert!(detect_charset(b"<a/>", Some("text/xml; charset=klingon")).is_err());
        assert!(detect_charset(b"<?xml version='1.0' encoding='x-none'?><a/>", None).is_err());
        assert!(detect_charset(b"<a/>", Some("text/xml; charset=iso-2022-kr")).is_err());
    }

    #[test]
    fn decoding_gb2312_and_refusing_bad_bytes() {
        let (enc_bytes, _, _) = encoding_rs::GBK.encode("<a>开罗 工单</a>");
        let (text, enc) = decode_body(&enc_bytes, Some("text/xml; charset=gb2312")).expect("ok");
        assert_eq!(enc, encoding_rs::GBK);
        assert_eq!(text, "<a>开罗 工单</a>");
        let bad = b"<a>\xBF\xFF\x81</a>";
        assert!(decode_body(bad, Some("text/xml; charset=gb2312")).is_err());
        assert!(decode_body(b"<a>\xFF</a>", None).is_err());
        let (u16, _, _) = encoding_rs::UTF_16LE.encode("x"); // encode gives UTF-8 for UTF-16
        assert_eq!(&u16[..], b"x");
        let mut le = vec![0xFF, 0xFE];
        for unit in "<a>م</a>".encode_utf16() {
            le.extend_from_slice(&unit.to_le_bytes());
        }
        let (text, _) = decode_body(&le, Some("text/xml; charset=gb2312")).expect("bom wins");
        assert_eq!(text, "<a>م</a>");
    }

    #[test]
    fn payload_shapes() {
        let l = limits();
        let cases = [
            "<ser:EgyptWorkSheetAll><ser:in0><![CDATA[<form/>]]></ser:in0></ser:EgyptWorkSheetAll>",
            "<ser:EgyptWorkSheetAll><in0 xsi:type=\"xsd:string\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">&lt;form/&gt;</in0></ser:EgyptWorkSheetAll>",
            "<EgyptWorkSheetAll><arg0><![CDATA[<fo]]><![CDATA[rm/>]]></arg0></EgyptWorkSheetAll>",
            "<x:EgyptWorkSheetAll xmlns:x=\"urn:other\"><x:xml><![CDATA[<fo]]>rm/&gt;</x:xml></x:EgyptWorkSheetAll>",
            "<ns1:EgyptWorkSheetAll xmlns:ns1=\"urn:x\"><in0 href=\"#id0\"/></ns1:EgyptWorkSheetAll><multiRef id=\"id0\"><![CDATA[<form/>]]></multiRef>",
        ];
        for body in cases {
            let r = parse_request(&env(body), &l).expect(body);
            assert_eq!(r.payload, "<form/>", "{body}");
        }
        let r = parse_request(&env("<ser:EgyptWorkSheetAll/>"), &l).expect("usable");
        assert_eq!(r.payload, "");
        let r = parse_request(
            &env("<ser:EgyptWorkSheetAll><ser:in0/></ser:EgyptWorkSheetAll>"),
            &l,
        )
        .expect("usable");
        assert_eq!(r.payload, "");
        assert_eq!(r.foreign_namespace, None);
    }

    #[test]
    fn faults() {
        let l = limits();
        assert_eq!(code_of(parse_request("not xml", &l)), FaultCode::Client);
        assert_eq!(code_of(parse_request("<a/>", &l)), FaultCode::Client);
        assert_eq!(
            code_of(parse_request(
                r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>"#,
                &l
            )),
            FaultCode::VersionMismatch
        );
        assert_eq!(
            code_of(parse_request("<Envelope><Body/></Envelope>", &l)),
            FaultCode::VersionMismatch
        );
        assert_eq!(
            code_of(parse_request(
                &format!(r#"<s:Envelope xmlns:s="{SOAP11_NS}"/>"#),
                &l
            )),
            FaultCode::Client
        );
        assert_eq!(
            code_of(parse_request(&env("<ser:Other/>"), &l)),
            FaultCode::Client
        );
        let mu = format!(
            r#"<s:Envelope xmlns:s="{SOAP11_NS}"><s:Header><w:Security xmlns:w="urn:w" s:mustUnderstand="1"/></s:Header><s:Body><EgyptWorkSheetAll/></s:Body></s:Envelope>"#
        );
        assert_eq!(code_of(parse_request(&mu, &l)), FaultCode::MustUnderstand);
        let other_actor = mu.replace(
            "s:mustUnderstand=\"1\"",
            "s:mustUnderstand=\"1\" s:actor=\"urn:someone-else\"",
        );
        assert!(parse_request(&other_actor, &l).is_ok());
        let not_must = mu.replace("s:mustUnderstand=\"1\"", "s:mustUnderstand=\"0\"");
        assert!(parse_request(&not_must, &l).is_ok());
        let dtd = format!(
            r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><s:Envelope xmlns:s="{SOAP11_NS}"><s:Body><EgyptWorkSheetAll><in0>&xxe;</in0></EgyptWorkSheetAll></s:Body></s:Envelope>"#
        );
        let f = parse_request(&dtd, &l).expect_err("dtd");
        assert_eq!(f.code, FaultCode::Client);
        assert!(f.string.contains("DTD"));
        let deep = env(&format!(
            "<EgyptWorkSheetAll><in0>{}{}</in0></EgyptWorkSheetAll>",
            "<a>".repeat(10_000),
            "</a>".repeat(10_000)
        ));
        assert_eq!(code_of(parse_request(&deep, &l)), FaultCode::Client);
    }
}
