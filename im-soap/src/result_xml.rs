//! [`im_core::Outcome`] ↔ the `<result>` document and the response
//! envelope: written by the server, read by the OM client.
//!
//! Written form: UTF-8 declared, plain ASCII bytes (every non-ASCII
//! character as a numeric character reference, per code point), the result
//! document in CDATA inside the return element, a `]]>` split across CDATA
//! sections.

use crate::envelope::{self, SERVICE_NS, SOAP11_NS};
use crate::fault::{Fault, FaultCode};
use crate::xml::{self, ParseFailure, XmlLimits};
use im_core::{DuplicateContent, ErrorCode, ItemResult, Outcome, ServiceView};
use roxmltree::Node;
use serde::{Deserialize, Serialize};

/// The name of the element that carries the result in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ReturnElement {
    /// `out`: the XFire convention of the IM family's services (default).
    #[default]
    #[serde(rename = "out")]
    Out,
    /// `EgyptWorkSheetAllReturn`: Axis 1's `<operation>Return`.
    #[serde(rename = "EgyptWorkSheetAllReturn")]
    AxisReturn,
}

impl ReturnElement {
    /// The element's local name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReturnElement::Out => "out",
            ReturnElement::AxisReturn => "EgyptWorkSheetAllReturn",
        }
    }
}

/// Writes the `<result>` document of an outcome (plain ASCII).
///
/// ```
/// let o = im_core::Outcome::no_form("no form: the payload is empty");
/// let r = im_soap::result_xml::write_result(&o);
/// assert!(r.starts_with("<result><returnCode>1</returnCode><errorCode>-1001</errorCode>"));
/// ```
pub fn write_result(outcome: &Outcome) -> String {
    let mut out = String::with_capacity(512 + 256 * outcome.items.len());
    out.push_str("<result><returnCode>");
    out.push_str(if outcome.return_code() == 0 { "0" } else { "1" });
    out.push_str("</returnCode><errorCode>");
    out.push_str(&outcome.error_code.code().to_string());
    out.push_str("</errorCode><errorDesc>");
    xml::push_text_ascii(&mut out, &outcome.error_desc);
    out.push_str("</errorDesc><flowId>");
    xml::push_text_ascii(&mut out, &outcome.flow_id);
    out.push_str("</flowId><taskNo>");
    xml::push_text_ascii(&mut out, outcome.task_no.as_deref().unwrap_or(""));
    out.push_str("</taskNo>");
    if outcome.error_code == ErrorCode::DuplicateFlowId
        && let Some(d) = outcome.duplicate_content
    {
        out.push_str("<duplicateContent>");
        out.push_str(d.as_str());
        out.push_str("</duplicateContent>");
    }
    out.push_str("<items>");
    for item in &outcome.items {
        write_item(&mut out, item);
    }
    out.push_str("</items></result>");
    out
}

fn push_attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    xml::push_attr_ascii(out, value);
    out.push('"');
}

fn write_item(out: &mut String, item: &ItemResult) {
    out.push_str("<item");
    push_attr(out, "seq", &item.seq.to_string());
    push_attr(out, "opertype", &item.opertype);
    push_attr(out, "serviceType", &item.service_type);
    push_attr(out, "UserName", &item.user_name);
    let code = item.error_code.map(|c| c.code().to_string());
    push_attr(out, "errorCode", code.as_deref().unwrap_or(""));
    push_attr(out, "port", &item.port);
    push_attr(out, "ontSn", &item.ont_sn);
    push_attr(out, "vlan", &item.vlan);
    push_attr(out, "state", &item.state);
    if item.services.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for s in &item.services {
        out.push_str("<service");
        push_attr(out, "UserName", &s.user_name);
        push_attr(out, "serviceType", &s.service_type);
        push_attr(out, "coverType", &s.cover_type);
        push_attr(out, "state", &s.state);
        push_attr(out, "AccountNumber", &s.account_number);
        push_attr(out, "CustomerName", &s.customer_name);
        push_attr(out, "Serviceno", &s.serviceno);
        push_attr(out, "speed", &s.speed);
        push_attr(out, "port", &s.port);
        push_attr(out, "ontSn", &s.ont_sn);
        push_attr(out, "olt", &s.olt);
        push_attr(out, "compound", &s.compound);
        push_attr(out, "vlan", &s.vlan);
        push_attr(out, "conflict", if s.conflict { "true" } else { "false" });
        push_attr(out, "updated", &s.updated);
        out.push_str("/>");
    }
    out.push_str("</item>");
}

/// Writes the whole response envelope (plain ASCII, UTF-8 declared).
pub fn write_response(outcome: &Outcome, element: ReturnElement) -> String {
    let result = write_result(outcome);
    let mut out = String::with_capacity(result.len() + 400);
    out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    out.push_str(r#"<soapenv:Envelope xmlns:soapenv=""#);
    out.push_str(SOAP11_NS);
    out.push_str(r#""><soapenv:Body><ns1:EgyptWorkSheetAllResponse xmlns:ns1=""#);
    out.push_str(SERVICE_NS);
    out.push_str(r#""><ns1:"#);
    out.push_str(element.as_str());
    out.push('>');
    xml::push_cdata(&mut out, &result);
    out.push_str("</ns1:");
    out.push_str(element.as_str());
    out.push_str("></ns1:EgyptWorkSheetAllResponse></soapenv:Body></soapenv:Envelope>");
    out
}

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The server answered with a SOAP Fault.
    #[error("{0}")]
    Fault(Fault),
    /// The response is not a response of this operation.
    #[error("malformed response: {0}")]
    Malformed(String),
}

fn malformed(s: impl Into<String>) -> ReadError {
    ReadError::Malformed(s.into())
}

/// Limits for reading responses (generous: responses of big Queries).
pub const RESPONSE_LIMITS: XmlLimits = XmlLimits {
    max_depth: 32,
    max_nodes: 2_000_000,
    max_attributes: 64,
    max_attribute_len: 64 * 1024,
};

/// Reads a response body (any charset, as the request rules say) into an
/// [`Outcome`], or the [`Fault`] it carries.
pub fn parse_response(bytes: &[u8], content_type: Option<&str>) -> Result<Outcome, ReadError> {
    let (text, _) = envelope::decode_body(bytes, content_type).map_err(|f| malformed(f.string))?;
    let doc = parse(&text, &RESPONSE_LIMITS)?;
    let env = doc.root_element();
    if env.tag_name().name() != "Envelope" {
        return Err(malformed("not a SOAP Envelope"));
    }
    let body = env
        .children()
        .find(|n| n.is_element() && n.tag_name().name() == "Body")
        .ok_or_else(|| malformed("no Body"))?;
    let first = xml::first_element(body).ok_or_else(|| malformed("empty Body"))?;
    if first.tag_name().name() == "Fault" {
        let child_text = |name: &str| {
            first
                .children()
                .find(|n| n.is_element() && n.tag_name().name() == name)
                .map(xml::text_of)
                .unwrap_or_default()
        };
        let code = FaultCode::parse(child_text("faultcode").trim()).unwrap_or(FaultCode::Server);
        return Err(ReadError::Fault(Fault::new(
            code,
            child_text("faultstring"),
        )));
    }
    if first.tag_name().name() != "EgyptWorkSheetAllResponse" {
        return Err(malformed("not an EgyptWorkSheetAllResponse"));
    }
    let ret = xml::first_element(first).ok_or_else(|| malformed("no return element"))?;
    parse_result(&xml::text_of(ret))
}

fn parse<'a>(text: &'a str, limits: &XmlLimits) -> Result<roxmltree::Document<'a>, ReadError> {
    xml::parse_limited(text, limits).map_err(|e| match e {
        ParseFailure::Dtd => malformed("a DTD"),
        ParseFailure::Limit(l) => malformed(l.to_string()),
        ParseFailure::Syntax(s) => malformed(s),
    })
}

/// Reads a `<result>` document into an [`Outcome`].
pub fn parse_result(text: &str) -> Result<Outcome, ReadError> {
    let doc = parse(text.trim(), &RESPONSE_LIMITS)?;
    let root = doc.root_element();
    if root.tag_name().name() != "result" {
        return Err(malformed("the return value is not a <result> document"));
    }
    let child = |name: &str| {
        root.children()
            .find(|n| n.is_element() && n.tag_name().name() == name)
    };
    let text_child = |name: &str| child(name).map(xml::text_of).unwrap_or_default();
    let code_text = text_child("errorCode");
    let error_code =
        parse_code(&code_text)?.ok_or_else(|| malformed("the result has no errorCode"))?;
    let duplicate_content = match text_child("duplicateContent").trim() {
        "SAME" => Some(DuplicateContent::Same),
        "DIFFERENT" => Some(DuplicateContent::Different),
        _ => None,
    };
    let task_no = text_child("taskNo");
    let mut items = Vec::new();
    if let Some(list) = child("items") {
        for node in list
            .children()
            .filter(|n| n.is_element() && n.tag_name().name() == "item")
        {
            items.push(parse_item(node)?);
        }
    }
    Ok(Outcome {
        error_code,
        error_desc: text_child("errorDesc"),
        flow_id: text_child("flowId"),
        task_no: (!task_no.trim().is_empty()).then(|| task_no.trim().to_string()),
        items,
        duplicate_content,
    })
}

fn parse_code(s: &str) -> Result<Option<ErrorCode>, ReadError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let n: i32 = s
        .parse()
        .map_err(|_| malformed(format!("errorCode {s:?} is not a number")))?;
    ErrorCode::from_code(n)
        .map(Some)
        .ok_or_else(|| malformed(format!("errorCode {n} is not a code of the contract")))
}

fn attr(node: Node<'_, '_>, name: &str) -> String {
    node.attribute(name).unwrap_or("").to_string()
}

fn parse_item(node: Node<'_, '_>) -> Result<ItemResult, ReadError> {
    let seq = node
        .attribute("seq")
        .unwrap_or("0")
        .trim()
        .parse()
        .map_err(|_| malformed("item seq is not a number"))?;
    let services = node
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "service")
        .map(|s| ServiceView {
            user_name: attr(s, "UserName"),
            service_type: attr(s, "serviceType"),
            cover_type: attr(s, "coverType"),
            state: attr(s, "state"),
            account_number: attr(s, "AccountNumber"),
            customer_name: attr(s, "CustomerName"),
            serviceno: attr(s, "Serviceno"),
            speed: attr(s, "speed"),
            port: attr(s, "port"),
            ont_sn: attr(s, "ontSn"),
            olt: attr(s, "olt"),
            compound: attr(s, "compound"),
            vlan: attr(s, "vlan"),
            conflict: s.attribute("conflict") == Some("true"),
            updated: attr(s, "updated"),
        })
        .collect();
    Ok(ItemResult {
        seq,
        opertype: attr(node, "opertype"),
        service_type: attr(node, "serviceType"),
        user_name: attr(node, "UserName"),
        error_code: parse_code(node.attribute("errorCode").unwrap_or(""))?,
        port: attr(node, "port"),
        ont_sn: attr(node, "ontSn"),
        vlan: attr(node, "vlan"),
        state: attr(node, "state"),
        services,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Outcome {
        Outcome {
            error_code: ErrorCode::DuplicateFlowId,
            error_desc: "duplicate flowId م \"x\" ]]> <y> & z".into(),
            flow_id: "F1".into(),
            task_no: Some("WS20261204000001".into()),
            items: vec![
                ItemResult {
                    seq: 1,
                    opertype: "Install".into(),
                    service_type: "ADSL".into(),
                    user_name: "u]]>1@x".into(),
                    error_code: Some(ErrorCode::Success),
                    port: "EX01-D1/0/1/5".into(),
                    state: "ACTIVE".into(),
                    ..ItemResult::default()
                },
                ItemResult {
                    seq: 2,
                    opertype: "Query".into(),
                    user_name: "u2".into(),
                    error_code: None,
                    services: vec![ServiceView {
                        user_name: "u2".into(),
                        service_type: "FTTH".into(),
                        customer_name: "أحمد 工单 😀".into(),
                        conflict: true,
                        ..ServiceView::default()
                    }],
                    ..ItemResult::default()
                },
            ],
            duplicate_content: Some(DuplicateContent::Same),
        }
    }

    #[test]
    fn response_is_ascii_and_round_trips() {
        let o = sample();
        for el in [ReturnElement::Out, ReturnElement::AxisReturn] {
            let xml = write_response(&o, el);
            assert!(xml.is_ascii(), "{xml}");
            assert!(xml.contains(&format!("<ns1:{}><![CDATA[<result>", el.as_str())));
            // `]]>` of the echoed UserName attribute is split across sections.
            assert!(xml.contains("u]]]]><![CDATA[>1@x"));
            let back =
                parse_response(xml.as_bytes(), Some("text/xml; charset=UTF-8")).expect("readable");
            assert_eq!(back, o);
        }
    }

    #[test]
    fn duplicate_content_only_on_duplicates_and_empty_codes() {
        let mut o = sample();
        o.error_code = ErrorCode::InvalidValue;
        o.task_no = None;
        let r = write_result(&o);
        assert!(!r.contains("duplicateContent"));
        assert!(r.contains("<taskNo></taskNo>"));
        assert!(r.contains(r#"errorCode="""#));
        let back = parse_result(&r).expect("readable");
        assert_eq!(back.duplicate_content, None);
        assert_eq!(back.task_no, None);
        assert_eq!(back.items[1].error_code, None);
    }

    #[test]
    fn faults_and_garbage_are_read_as_such() {
        let f = Fault::new(FaultCode::Client, "nope");
        match parse_response(f.to_xml().as_bytes(), None) {
            Err(ReadError::Fault(got)) => assert_eq!(got, f),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_response(b"<html/>", None),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            parse_result("<result><errorCode>7</errorCode></result>"),
            Err(ReadError::Malformed(_))
        ));
    }
}
