//! The AM wire format, in one place (`inventory-sync-and-am.md` §4): the
//! command document IM posts and the ack AM answers, both UTF-8 XML.
//!
//! ```xml
//! <command id="CMD-WS20261204000001-1" type="ACTIVATE" service="ADSL"
//!          taskNo="WS20261204000001" flowId="17808971600060235">
//!   <param name="UserName">155800085@tedata.net.eg</param>
//! </command>
//! <ack id="CMD-WS20261204000001-1" status="OK" code="0" desc="accepted"/>
//! ```
//!
//! Writers escape every value; readers are tolerant (an XML declaration in
//! any charset encoding_rs knows, a byte-order mark, namespaces, element,
//! attribute and status names in any case, the element anywhere in the
//! document) but refuse DTDs and bound their input.

use im_core::lifecycle::DueCommand;
use im_core::model::{CommandType, ServiceType};

/// Largest document the readers accept, in bytes.
pub const MAX_DOCUMENT: usize = 1024 * 1024;

/// A document that is not a readable command or ack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

/// An activation command as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// `CMD-<taskNo>-<n>`, with `-rN` after a redo.
    pub id: String,
    /// `ACTIVATE`, `MODIFY` or `DEACTIVATE`.
    pub kind: CommandType,
    /// The service type (`ADSL`, `FTTH`, `IPTV`, …).
    pub service: ServiceType,
    /// The task's number.
    pub task_no: String,
    /// The work order's flowId.
    pub flow_id: String,
    /// The parameters, in order.
    pub params: Vec<(String, String)>,
}

impl Command {
    /// The command for an outbox entry.
    pub fn from_due(c: &DueCommand) -> Command {
        Command {
            id: c.id.clone(),
            kind: c.kind,
            service: c.service_type,
            task_no: c.task_no.clone(),
            flow_id: c.flow_id.clone(),
            params: c.params.clone(),
        }
    }

    /// A parameter's value (first of that name).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// AM's verdict on a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckStatus {
    /// Accepted.
    Ok,
    /// Seen before under this id (accepted earlier).
    Duplicate,
    /// Refused; not to be retried.
    Rejected,
}

impl AckStatus {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            AckStatus::Ok => "OK",
            AckStatus::Duplicate => "DUPLICATE",
            AckStatus::Rejected => "REJECTED",
        }
    }

    /// Reads a status in any case, ignoring surrounding spaces.
    pub fn parse(s: &str) -> Option<AckStatus> {
        let s = s.trim();
        [AckStatus::Ok, AckStatus::Duplicate, AckStatus::Rejected]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

/// AM's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The command id it answers (empty when AM left it out).
    pub id: String,
    /// The verdict.
    pub status: AckStatus,
    /// AM's code (free text).
    pub code: String,
    /// AM's description (free text).
    pub desc: String,
}

/// Appends `s` escaped for an attribute value or element text. Characters
/// XML 1.0 cannot carry become U+FFFD; tab, line feed and carriage return
/// are written as references so that attribute values keep them.
pub fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

fn attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    push_escaped(out, value);
    out.push('"');
}

/// Writes a command document (UTF-8, with an XML declaration).
///
/// ```
/// use im_sync::am::wire::{Command, read_command, write_command};
/// use im_core::model::{CommandType, ServiceType};
/// let c = Command {
///     id: "CMD-WS20261204000001-1".into(), kind: CommandType::Activate,
///     service: ServiceType::Adsl, task_no: "WS20261204000001".into(),
///     flow_id: "F<1>&\"2\"".into(),
///     params: vec![("UserName".into(), "أحمد@x".into())],
/// };
/// let xml = write_command(&c);
/// assert!(xml.contains("flowId=\"F&lt;1&gt;&amp;&quot;2&quot;\""));
/// assert_eq!(read_command(xml.as_bytes()).unwrap(), c);
/// ```
pub fn write_command(c: &Command) -> String {
    let mut out = String::with_capacity(256 + c.params.len() * 48);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<command");
    attr(&mut out, "id", &c.id);
    attr(&mut out, "type", c.kind.as_str());
    attr(&mut out, "service", c.service.as_str());
    attr(&mut out, "taskNo", &c.task_no);
    attr(&mut out, "flowId", &c.flow_id);
    out.push('>');
    for (name, value) in &c.params {
        out.push_str("\n  <param");
        attr(&mut out, "name", name);
        out.push('>');
        push_escaped(&mut out, value);
        out.push_str("</param>");
    }
    out.push_str("\n</command>\n");
    out
}

/// Writes an ack document (UTF-8, with an XML declaration).
///
/// ```
/// use im_sync::am::wire::{Ack, AckStatus, read_ack, write_ack};
/// let a = Ack { id: "CMD-1".into(), status: AckStatus::Duplicate, code: "0".into(), desc: "seen".into() };
/// assert_eq!(read_ack(write_ack(&a).as_bytes()).unwrap(), a);
/// ```
pub fn write_ack(a: &Ack) -> String {
    let mut out = String::with_capacity(128 + a.desc.len());
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ack");
    attr(&mut out, "id", &a.id);
    attr(&mut out, "status", a.status.as_str());
    attr(&mut out, "code", &a.code);
    attr(&mut out, "desc", &a.desc);
    out.push_str("/>\n");
    out
}

/// Decodes a document: UTF-8 (a byte-order mark is skipped), or the charset
/// its XML declaration names.
fn decode(bytes: &[u8]) -> Result<String, WireError> {
    if bytes.len() > MAX_DOCUMENT {
        return Err(WireError(format!(
            "document of {} bytes is over the limit of {MAX_DOCUMENT}",
            bytes.len()
        )));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Some(label) = declared_encoding(bytes)
        && let Some(enc) = encoding_rs::Encoding::for_label(label.as_bytes())
        && enc != encoding_rs::UTF_8
    {
        let (text, _, bad) = enc.decode(bytes);
        if bad {
            return Err(WireError(format!("document is not valid {}", enc.name())));
        }
        return Ok(text.into_owned());
    }
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|e| WireError(format!("document is not UTF-8: {e}")))
}

/// The `encoding` of an XML declaration at the start of `bytes`.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = bytes.get(..bytes.len().min(200))?;
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &rest[1..];
    let close = rest.find(quote)?;
    Some(rest[..close].trim().to_string())
}

fn parse<'a>(text: &'a str) -> Result<roxmltree::Document<'a>, WireError> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 10_000,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(text, opts)
        .map_err(|e| WireError(format!("not well-formed XML: {e}")))
}

fn find_element<'a, 'i>(
    doc: &'a roxmltree::Document<'i>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    doc.descendants()
        .find(|n| n.is_element() && n.tag_name().name().eq_ignore_ascii_case(name))
}

fn attribute<'a>(n: &roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.attributes()
        .find(|a| a.name().eq_ignore_ascii_case(name))
        .map(|a| a.value())
}

/// Reads AM's ack, tolerantly (see the module documentation).
///
/// ```
/// use im_sync::am::wire::{AckStatus, read_ack};
/// let a = read_ack(b"<?xml version='1.0'?><r:Resp xmlns:r='urn:x'><r:ACK ID='c1' Status=' ok '/></r:Resp>").unwrap();
/// assert_eq!((a.id.as_str(), a.status), ("c1", AckStatus::Ok));
/// assert!(read_ack(b"<ack id='c1' status='MAYBE'/>").is_err());
/// ```
pub fn read_ack(bytes: &[u8]) -> Result<Ack, WireError> {
    let text = decode(bytes)?;
    let doc = parse(&text)?;
    let node = find_element(&doc, "ack").ok_or_else(|| WireError("no <ack> element".into()))?;
    let raw = attribute(&node, "status").unwrap_or("");
    let status = AckStatus::parse(raw).ok_or_else(|| {
        WireError(format!(
            "ack status {raw:?} is not OK, DUPLICATE or REJECTED"
        ))
    })?;
    Ok(Ack {
        id: attribute(&node, "id").unwrap_or("").trim().to_string(),
        status,
        code: attribute(&node, "code").unwrap_or("").to_string(),
        desc: attribute(&node, "desc").unwrap_or("").to_string(),
    })
}

/// Reads a command document (what AM, or the simulator, receives).
pub fn read_command(bytes: &[u8]) -> Result<Command, WireError> {
    let text = decode(bytes)?;
    let doc = parse(&text)?;
    let node =
        find_element(&doc, "command").ok_or_else(|| WireError("no <command> element".into()))?;
    let need = |name: &str| {
        attribute(&node, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| WireError(format!("command without {name}")))
    };
    let id = need("id")?.to_string();
    let kind_raw = need("type")?;
    let kind = CommandType::parse(kind_raw)
        .ok_or_else(|| WireError(format!("unknown command type {kind_raw:?}")))?;
    let service_raw = need("service")?;
    let service = ServiceType::parse(service_raw)
        .ok_or_else(|| WireError(format!("unknown service {service_raw:?}")))?;
    let params = node
        .children()
        .filter(|n| n.is_element() && n.tag_name().name().eq_ignore_ascii_case("param"))
        .map(|p| {
            let name = attribute(&p, "name").unwrap_or("").to_string();
            let value: String = p
                .children()
                .filter(|c| c.is_text())
                .filter_map(|c| c.text())
                .collect();
            (name, value)
        })
        .collect();
    Ok(Command {
        id,
        kind,
        service,
        task_no: attribute(&node, "taskNo").unwrap_or("").to_string(),
        flow_id: attribute(&node, "flowId").unwrap_or("").to_string(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Command {
        Command {
            id: "CMD-WS20261204000001-1-r2".into(),
            kind: CommandType::Deactivate,
            service: ServiceType::DomainEmail,
            task_no: "WS20261204000001".into(),
            flow_id: "17808971600060235".into(),
            params: vec![
                ("UserName".into(), "u1@x".into()),
                (
                    "domainName".into(),
                    "a&b <c> \"d\" 'e'\ttab\nline é 工".into(),
                ),
                ("empty".into(), String::new()),
            ],
        }
    }

    #[test]
    fn command_round_trips_with_awkward_values() {
        let c = sample();
        let xml = write_command(&c);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
        assert!(xml.contains("service=\"Domain/Email\""));
        assert_eq!(read_command(xml.as_bytes()).expect("readable"), c);
    }

    #[test]
    fn control_characters_are_replaced() {
        let mut s = String::new();
        push_escaped(&mut s, "a\u{1}b\u{FFFF}");
        assert_eq!(s, "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn ack_reader_is_tolerant() {
        let a = read_ack(b"\xEF\xBB\xBF<ACK id=\" c-1 \" status=\"duplicate\"/>").expect("ack");
        assert_eq!(a.id, "c-1");
        assert_eq!(a.status, AckStatus::Duplicate);
        assert_eq!(a.code, "");
        // A declared legacy charset is decoded.
        let latin = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><ack id=\"c\" status=\"REJECTED\" desc=\"caf\xE9\"/>";
        let a = read_ack(latin).expect("latin-1 ack");
        assert_eq!(a.desc, "café");
        assert_eq!(a.status, AckStatus::Rejected);
    }

    #[test]
    fn ack_reader_refuses_what_it_cannot_trust() {
        assert!(read_ack(b"").is_err());
        assert!(read_ack(b"<ok/>").is_err());
        assert!(read_ack(b"<ack id='x'/>").is_err());
        assert!(read_ack(b"<!DOCTYPE a [<!ENTITY e 'x'>]><ack id='x' status='OK'/>").is_err());
        assert!(read_ack(&vec![b' '; MAX_DOCUMENT + 1]).is_err());
        assert!(read_ack(b"\xFF\xFE<ack/>").is_err());
    }

    #[test]
    fn command_reader_needs_the_identifying_attributes() {
        assert!(read_command(b"<command type='ACTIVATE' service='ADSL'/>").is_err());
        assert!(read_command(b"<command id='c' type='START' service='ADSL'/>").is_err());
        assert!(read_command(b"<command id='c' type='ACTIVATE' service='DSL'/>").is_err());
        let c = read_command(b"<command id='c' type='modify' service='ip-phone'/>").expect("ok");
        assert_eq!(c.kind, CommandType::Modify);
        assert_eq!(c.service, ServiceType::IpPhone);
    }
}
