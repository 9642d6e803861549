//! The `<form>` document ↔ [`im_core::Form`]: read by the server, written
//! by the OM client. No business rule lives here: names and values are
//! handed over as written (after XML entity and character-reference
//! decoding); only the structural elements `form`, `bussInfo`, `bussItem`,
//! `attrList` (and an entry's `attr`/`name`/`value`) are located, matched
//! with [`im_core::names::same`].

use crate::xml::{self, LimitError, ParseFailure, XmlLimits};
use im_core::names::same;
use im_core::{Field, Form, FormItem};
use roxmltree::Node;

/// Why a payload gave no form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// No usable form (empty, not XML, root not `form`, over the limits):
    /// answered with -1001 and this reason.
    #[error("{0}")]
    NoForm(String),
    /// The form carries a DTD: answered with a `Client` Fault.
    #[error("a DTD is not allowed in the form")]
    Dtd,
}

/// Parses a payload into a [`Form`].
///
/// Every `attrList` entry shape of the contract is read:
/// `<attr name="N">v</attr>`, `<attr name="N" value="v"/>`,
/// `<attr><name>N</name><value>v</value></attr>`, and a plain `<N>v</N>`.
///
/// ```
/// use im_soap::form_xml::parse_form;
/// let limits = im_soap::Limits::default().form;
/// let f = parse_form(r#"<form><flowId>F1</flowId><bussInfo><bussItem>
///   <UserName>u1</UserName><attrList><attr name="Speed">16M</attr></attrList>
///   </bussItem></bussInfo></form>"#, &limits).unwrap();
/// assert_eq!(f.get("flowId"), "F1");
/// assert_eq!(f.items[0].attrs[0].name, "Speed");
/// ```
pub fn parse_form(payload: &str, limits: &XmlLimits) -> Result<Form, FormError> {
    let text = payload.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}');
    if text.trim().is_empty() {
        return Err(FormError::NoForm("no form: the payload is empty".into()));
    }
    let doc = match xml::parse_limited(text, limits) {
        Ok(doc) => doc,
        Err(ParseFailure::Dtd) => return Err(FormError::Dtd),
        Err(ParseFailure::Limit(e)) => return Err(over_limits(&e)),
        Err(ParseFailure::Syntax(e)) => {
            return Err(FormError::NoForm(format!(
                "no form: the payload is not well-formed XML ({e})"
            )));
        }
    };
    let root = doc.root_element();
    if !same(root.tag_name().name(), "form") {
        let name: String = root.tag_name().name().chars().take(64).collect();
        return Err(FormError::NoForm(format!(
            "no form: the payload's root element is {name:?}, not form"
        )));
    }
    let mut form = Form::default();
    for child in root.children().filter(Node::is_element) {
        let name = child.tag_name().name();
        if same(name, "bussInfo") {
            form.buss_info_present = true;
            for item in child.children().filter(Node::is_element) {
                if same(item.tag_name().name(), "bussItem") {
                    form.items.push(parse_item(item));
                }
            }
        } else {
            form.fields.push(Field::new(name, xml::text_of(child)));
        }
    }
    Ok(form)
}

fn over_limits(e: &LimitError) -> FormError {
    FormError::NoForm(format!("no form: the form is over the limits ({e})"))
}

fn parse_item(item: Node<'_, '_>) -> FormItem {
    let mut out = FormItem::default();
    for child in item.children().filter(Node::is_element) {
        let name = child.tag_name().name();
        if same(name, "attrList") {
            for entry in child.children().filter(Node::is_element) {
                out.attrs.push(parse_attr(entry));
            }
        } else {
            out.fields.push(Field::new(name, xml::text_of(child)));
        }
    }
    out
}

/// One `attrList` entry, whatever its shape.
fn parse_attr(entry: Node<'_, '_>) -> Field {
    let tag = entry.tag_name().name();
    if !same(tag, "attr") {
        return Field::new(tag, xml::text_of(entry));
    }
    let attr_named = |wanted: &str| {
        entry
            .attributes()
            .find(|a| same(a.name(), wanted))
            .map(|a| a.value().to_string())
    };
    let child_named = |wanted: &str| {
        entry
            .children()
            .filter(Node::is_element)
            .find(|n| same(n.tag_name().name(), wanted))
            .map(xml::text_of)
    };
    match attr_named("name").or_else(|| child_named("name")) {
        Some(name) => {
            let value = attr_named("value")
                .or_else(|| child_named("value"))
                .unwrap_or_else(|| xml::text_of(entry));
            Field::new(name, value)
        }
        // An `attr` element without a name is kept as a field named `attr`.
        None => Field::new(tag, xml::text_of(entry)),
    }
}

/// Why a [`Form`] could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// A form-level field name is not a usable XML element name.
    #[error("form field name {0:?} is not a usable XML element name")]
    BadName(String),
    /// A value or name holds a character XML 1.0 cannot carry.
    #[error("field {0:?} holds a character XML cannot carry")]
    BadChar(String),
}

/// Writes a [`Form`] as a `<form>` document (no XML declaration).
/// Non-ASCII characters are kept as they are (the envelope encoder turns
/// those its charset cannot carry into numeric references). An item field
/// whose name is not a usable element name is written as an `attrList`
/// entry `<attr name="…">`.
///
/// ```
/// use im_core::{Form, FormItem};
/// let f = Form::default().field("flowId", "F1")
///     .item(FormItem::default().field("UserName", "u<1>").attr("ONT SN", "HWTC1A2B3C4D"));
/// let xml = im_soap::form_xml::write_form(&f).unwrap();
/// assert_eq!(xml, "<form><flowId>F1</flowId><bussInfo><bussItem><UserName>u&lt;1&gt;</UserName>\
/// <attrList><attr name=\"ONT SN\">HWTC1A2B3C4D</attr></attrList></bussItem></bussInfo></form>");
/// ```
pub fn write_form(form: &Form) -> Result<String, WriteError> {
    let mut out = String::with_capacity(1024);
    out.push_str("<form>");
    for f in &form.fields {
        if !xml::is_simple_name(&f.name) {
            return Err(WriteError::BadName(f.name.clone()));
        }
        push_element(&mut out, &f.name, &f.value)?;
    }
    if form.buss_info_present || !form.items.is_empty() {
        out.push_str("<bussInfo>");
        for item in &form.items {
            out.push_str("<bussItem>");
            let mut attrs: Vec<&Field> = Vec::new();
            for f in &item.fields {
                if xml::is_simple_name(&f.name) {
                    push_element(&mut out, &f.name, &f.value)?;
                } else {
                    attrs.push(f);
                }
            }
            attrs.extend(item.attrs.iter());
            if !attrs.is_empty() {
                out.push_str("<attrList>");
                for f in attrs {
                    out.push_str("<attr name=\"");
                    if !xml::push_attr_raw(&mut out, &f.name) {
                        return Err(WriteError::BadChar(f.name.clone()));
                    }
                    out.push_str("\">");
                    if !xml::push_text_raw(&mut out, &f.value) {
                        return Err(WriteError::BadChar(f.name.clone()));
                    }
                    out.push_str("</attr>");
                }
                out.push_str("</attrList>");
            }
            out.push_str("</bussItem>");
        }
        out.push_str("</bussInfo>");
    }
    out.push_str("</form>");
    Ok(out)
}

fn push_element(out: &mut String, name: &str, value: &str) -> Result<(), WriteError> {
    out.push('<');
    out.push_str(name);
    out.push('>');
    if !xml::push_text_raw(out, value) {
        return Err(WriteError::BadChar(name.to_string()));
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;

    fn limits() -> XmlLimits {
        Limits::default().form
    }

    #[test]
    fn every_attr_shape() {
        let f = parse_form(
            r#"<?xml version="1.0" encoding="gb2312"?>
            <form><bussInfo><bussItem>
              <opertype>Install</opertype>
              <attrList>
                <attr name="ExchangeID">EX01</attr>
                <attr name="Dslamname" value="EX01-D1"/>
                <attr><name>FrameNumber</name><value>0</value></attr>
                <SlotNumber>1</SlotNumber>
                <Attr Name="PortNumber"><![CDATA[5]]></Attr>
                <attr NAME="Speed" Value="16M">ignored text</attr>
                <attr>orphan</attr>
              </attrList>
            </bussItem></bussInfo></form>"#,
            &limits(),
        )
        .expect("form");
        let got: Vec<(&str, &str)> = f.items[0]
            .attrs
            .iter()
            .map(|a| (a.name.as_str(), a.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("ExchangeID", "EX01"),
                ("Dslamname", "EX01-D1"),
                ("FrameNumber", "0"),
                ("SlotNumber", "1"),
                ("PortNumber", "5"),
                ("Speed", "16M"),
                ("attr", "orphan"),
            ]
        );
        assert_eq!(f.items[0].fields[0], Field::new("opertype", "Install"));
    }

    #[test]
    fn ncrs_are_decoded_and_values_kept_as_written() {
        let f = parse_form(
            "<form><authusername> OM </authusername><bussInfo><bussItem><CustomerName>&#1571;&#1581;&#1605;&#1583; Hassan 工单</CustomerName></bussItem></bussInfo></form>",
            &limits(),
        )
        .expect("form");
        assert_eq!(f.fields[0].value, " OM ");
        assert_eq!(f.items[0].fields[0].value, "أحمد Hassan 工单");
    }

    #[test]
    fn structure_names_are_matched_tolerantly() {
        let f = parse_form(
            "<FORM><buss_info><BUSS-ITEM><x>1</x></BUSS-ITEM><other/></buss_info><BussInfo/></FORM>",
            &limits(),
        )
        .expect("form");
        assert!(f.buss_info_present);
        assert_eq!(f.items.len(), 1);
        let f = parse_form("<form><flowId>1</flowId></form>", &limits()).expect("form");
        assert!(!f.buss_info_present);
        assert!(f.items.is_empty());
    }

    #[test]
    fn no_form_cases() {
        for p in [
            "",
            "   ",
            "not xml",
            "<form>",
            "<result/>",
            "<form/><form/>",
        ] {
            assert!(
                matches!(parse_form(p, &limits()), Err(FormError::NoForm(_))),
                "{p:?}"
            );
        }
        let deep = format!("<form>{}{}</form>", "<a>".repeat(100), "</a>".repeat(100));
        assert!(matches!(
            parse_form(&deep, &limits()),
            Err(FormError::NoForm(_))
        ));
        let wide = format!("<form>{}</form>", "<a/>".repeat(60_000));
        assert!(matches!(
            parse_form(&wide, &limits()),
            Err(FormError::NoForm(_))
        ));
        assert_eq!(
            parse_form(
                "<!DOCTYPE form [<!ENTITY a \"x\">]><form>&a;</form>",
                &limits()
            ),
            Err(FormError::Dtd)
        );
    }

    #[test]
    fn write_then_read_round_trips() {
        let form = Form::default()
            .field("authusername", "OM_webservice")
            .field("flowId", "F&1")
            .item(
                FormItem::default()
                    .field("opertype", "Install")
                    .field("CustomerName", "أحمد <x> ]]> 工单")
                    .field("ONT SN", "HWTC1A2B3C4D")
                    .attr("ExchangeID", "EX01"),
            );
        let xml = write_form(&form).expect("writable");
        let back = parse_form(&xml, &limits()).expect("readable");
        assert_eq!(back.fields, form.fields);
        assert_eq!(back.items[0].fields, form.items[0].fields[..2]);
        assert_eq!(
            back.items[0].attrs,
            [
                Field::new("ONT SN", "HWTC1A2B3C4D"),
                Field::new("ExchangeID", "EX01")
            ]
        );
        assert!(write_form(&Form::default().field("a b", "1")).is_err());
        assert!(write_form(&Form::default().field("a", "\u{0}")).is_err());
    }
}
