//! Small XML helpers shared by every wire format of this crate: escaping
//! (with every non-ASCII character as a numeric character reference), CDATA
//! wrapping with `]]>` splitting, and the structural limits checked after a
//! parse (depth, attributes per element, attribute length).

use roxmltree::Node;

/// Limits on one XML document, checked during and after parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// Deepest element nesting allowed (the root is depth 1).
    pub max_depth: usize,
    /// Most nodes (elements, text, comments, …) roxmltree may create.
    pub max_nodes: u32,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
    /// Longest attribute value, in bytes.
    pub max_attribute_len: usize,
}

/// Why a document broke one of its [`XmlLimits`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Nesting deeper than allowed.
    #[error("element nesting deeper than {0}")]
    Depth(usize),
    /// Too many nodes.
    #[error("more than {0} XML nodes")]
    Nodes(u32),
    /// Too many attributes on one element.
    #[error("more than {0} attributes on one element")]
    Attributes(usize),
    /// An attribute value too long.
    #[error("an attribute value longer than {0} bytes")]
    AttributeLen(usize),
    /// Too many namespace declarations in the document.
    #[error("more than {0} namespace declarations")]
    Namespaces(usize),
}

/// Parses `text` with DTDs refused (roxmltree's default, kept on purpose)
/// and the node limit of `limits`, then checks depth and attributes.
///
/// Depth, attributes per element and namespace declarations (at most
/// `max_attributes` in the whole document) are first checked by a linear
/// scan of the text ([`prescan`]): roxmltree's time grows with the square
/// of the attributes of one element and with the cube of nested namespace
/// declarations, so a request of a few hundred KiB within the node limit
/// could otherwise hold a core for minutes.
pub(crate) fn parse_limited<'a>(
    text: &'a str,
    limits: &XmlLimits,
) -> Result<roxmltree::Document<'a>, ParseFailure> {
    prescan(text, limits).map_err(ParseFailure::Limit)?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_nodes,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = match roxmltree::Document::parse_with_options(text, options) {
        Ok(doc) => doc,
        Err(roxmltree::Error::DtdDetected) => return Err(ParseFailure::Dtd),
        Err(roxmltree::Error::NodesLimitReached) => {
            return Err(ParseFailure::Limit(LimitError::Nodes(limits.max_nodes)));
        }
        Err(e) => return Err(ParseFailure::Syntax(e.to_string())),
    };
    check_shape(doc.root_element(), limits).map_err(ParseFailure::Limit)?;
    Ok(doc)
}

/// Why a document could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseFailure {
    /// A document type declaration was present.
    Dtd,
    /// Over one of the limits.
    Limit(LimitError),
    /// Not well-formed XML (roxmltree's message, with a position).
    Syntax(String),
}

/// One linear pass over the markup of `text`: element depth, attributes
/// (namespace declarations included) per element, and namespace
/// declarations in the document, against `limits`. Well-formed text within
/// the limits always passes (it counts what the checks after the parse
/// count, or less); at anything it does not understand (a DTD, a broken
/// tag) it stops and leaves the verdict to the parser.
fn prescan(text: &str, limits: &XmlLimits) -> Result<(), LimitError> {
    let b = text.as_bytes();
    let find = |from: usize, pat: &[u8]| -> Option<usize> {
        b.get(from..)?
            .windows(pat.len())
            .position(|w| w == pat)
            .map(|p| from + p)
    };
    let mut depth = 0usize;
    let mut namespaces = 0usize;
    let mut i = 0;
    while let Some(lt) = b.get(i..).and_then(|r| r.iter().position(|&c| c == b'<')) {
        i += lt;
        let rest = &b[i..];
        let skip_to = |pat: &[u8]| find(i, pat).map(|p| p + pat.len());
        let next = if rest.starts_with(b"<!--") {
            skip_to(b"-->")
        } else if rest.starts_with(b"<![CDATA[") {
            skip_to(b"]]>")
        } else if rest.starts_with(b"<?") {
            skip_to(b"?>")
        } else if rest.starts_with(b"<!") {
            None
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            skip_to(b">")
        } else {
            // A start tag: its name, then attributes up to `>` or `/>`.
            let mut j = i + 1;
            while j < b.len() && !matches!(b[j], b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>') {
                j += 1;
            }
            let mut attrs = 0usize;
            let mut end = None;
            loop {
                while j < b.len() && matches!(b[j], b' ' | b'\t' | b'\r' | b'\n') {
                    j += 1;
                }
                match b.get(j) {
                    Some(b'>') => {
                        depth += 1;
                        end = Some((j + 1, depth));
                        break;
                    }
                    Some(b'/') => {
                        end = Some((j + 1, depth + 1));
                        break;
                    }
                    None => break,
                    Some(_) => {}
                }
                let name_start = j;
                while j < b.len()
                    && !matches!(b[j], b'=' | b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/')
                {
                    j += 1;
                }
                let name = &b[name_start..j];
                while j < b.len() && matches!(b[j], b' ' | b'\t' | b'\r' | b'\n') {
                    j += 1;
                }
                if b.get(j) != Some(&b'=') {
                    break;
                }
                j += 1;
                while j < b.len() && matches!(b[j], b' ' | b'\t' | b'\r' | b'\n') {
                    j += 1;
                }
                let Some(&quote) = b.get(j).filter(|q| matches!(q, b'"' | b'\'')) else {
                    break;
                };
                let Some(close) = b[j + 1..].iter().position(|&c| c == quote) else {
                    break;
                };
                j += close + 2;
                attrs += 1;
                if attrs > limits.max_attributes {
                    return Err(LimitError::Attributes(limits.max_attributes));
                }
                if name == b"xmlns" || name.starts_with(b"xmlns:") {
                    namespaces += 1;
                    if namespaces > limits.max_attributes {
                        return Err(LimitError::Namespaces(limits.max_attributes));
                    }
                }
            }
            match end {
                Some((next, d)) => {
                    if d > limits.max_depth {
                        return Err(LimitError::Depth(limits.max_depth));
                    }
                    Some(next)
                }
                None => None,
            }
        };
        match next {
            Some(n) => i = n,
            None => return Ok(()),
        }
    }
    Ok(())
}

/// Walks the element tree iteratively (no recursion: hostile depth cannot
/// overflow the stack) and checks depth and attributes.
fn check_shape(root: Node<'_, '_>, limits: &XmlLimits) -> Result<(), LimitError> {
    let mut stack = vec![(root, 1usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth > limits.max_depth {
            return Err(LimitError::Depth(limits.max_depth));
        }
        let attrs = node.attributes();
        if attrs.len() + node.namespaces().len() > limits.max_attributes {
            return Err(LimitError::Attributes(limits.max_attributes));
        }
        if attrs
            .clone()
            .any(|a| a.value().len() > limits.max_attribute_len)
        {
            return Err(LimitError::AttributeLen(limits.max_attribute_len));
        }
        for child in node.children().filter(Node::is_element) {
            stack.push((child, depth + 1));
        }
    }
    Ok(())
}

/// The concatenated text children of `node` (CDATA sections, escaped text
/// and character references all end up here, decoded).
pub(crate) fn text_of(node: Node<'_, '_>) -> String {
    let mut out = String::new();
    for child in node.children().filter(Node::is_text) {
        if let Some(t) = child.text() {
            out.push_str(t);
        }
    }
    out
}

/// The first child element of `node`.
pub(crate) fn first_element<'a, 'i>(node: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    node.children().find(Node::is_element)
}

/// Whether `c` may appear in an XML 1.0 document.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn push_ncr(out: &mut String, c: char) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(out, "&#{};", u32::from(c));
}

/// Appends `s` as XML character data: `&`, `<`, `>` escaped, CR as a
/// reference (a reader would turn a raw CR into LF), every non-ASCII
/// character written as a decimal numeric character reference (one per
/// code point), characters XML forbids written as U+FFFD.
pub(crate) fn push_text_ascii(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c if !is_xml_char(c) => push_ncr(out, '\u{FFFD}'),
            c if c.is_ascii() => out.push(c),
            c => push_ncr(out, c),
        }
    }
}

/// Appends `s` as a double-quoted attribute value: `&`, `<`, `"` and
/// white-space controls escaped, non-ASCII as numeric character references.
/// `>` is left as is (legal in attribute values).
pub(crate) fn push_attr_ascii(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if !is_xml_char(c) => push_ncr(out, '\u{FFFD}'),
            c if c.is_ascii() => out.push(c),
            c => push_ncr(out, c),
        }
    }
}

/// Appends `s` as XML character data keeping non-ASCII characters as they
/// are (for documents that are encoded afterwards): `&`, `<`, `>` escaped,
/// CR as a reference. Returns `false` if `s` holds a character XML 1.0
/// cannot carry.
pub(crate) fn push_text_raw(out: &mut String, s: &str) -> bool {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c if !is_xml_char(c) => return false,
            c => out.push(c),
        }
    }
    true
}

/// Like [`push_attr_ascii`] but keeping non-ASCII characters as they are.
/// Returns `false` if `s` holds a character XML 1.0 cannot carry.
pub(crate) fn push_attr_raw(out: &mut String, s: &str) -> bool {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if !is_xml_char(c) => return false,
            c => out.push(c),
        }
    }
    true
}

/// Appends `s` as one or more CDATA sections: every `]]>` in `s` is split
/// as `]]]]><![CDATA[>`, so the concatenated sections read back as `s`.
pub(crate) fn push_cdata(out: &mut String, s: &str) {
    out.push_str("<![CDATA[");
    let mut rest = s;
    while let Some(i) = rest.find("]]>") {
        out.push_str(&rest[..i + 2]);
        out.push_str("]]><![CDATA[");
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    out.push_str("]]>");
}

/// Whether `name` is usable as an XML element name (ASCII letters, digits,
/// `_`, `-`, `.`, not starting with a digit, `-` or `.`, not `xml…`).
pub(crate) fn is_simple_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("xml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> XmlLimits {
        XmlLimits {
            max_depth: 4,
            max_nodes: 50,
            max_attributes: 3,
            max_attribute_len: 10,
        }
    }

    #[test]
    fn text_is_ascii_with_ncrs_per_code_point() {
        let mut s = String::new();
        push_text_ascii(&mut s, "a<b>&c م 开 😀 \u{1}");
        assert_eq!(s, "a&lt;b&gt;&amp;c &#1605; &#24320; &#128512; &#65533;");
        assert!(s.is_ascii());
    }

    /// Regression (found by the form round-trip property): a CR written
    /// raw came back as LF, so a value with a CR did not survive the
    /// client → server trip, nor an echoed flowId the server → client one.
    #[test]
    fn carriage_returns_survive_a_parse() {
        for push in [
            push_text_ascii as fn(&mut String, &str),
            |o: &mut String, s: &str| {
                assert!(push_text_raw(o, s));
            },
        ] {
            let mut s = String::from("<x>");
            push(&mut s, "a\rb\r\nc");
            s.push_str("</x>");
            let doc = roxmltree::Document::parse(&s).expect("well-formed");
            assert_eq!(text_of(doc.root_element()), "a\rb\r\nc", "{s}");
        }
    }

    #[test]
    fn attr_escapes_quotes_and_keeps_gt() {
        let mut s = String::new();
        push_attr_ascii(&mut s, "x\"]]>\n");
        assert_eq!(s, "x&quot;]]>&#10;");
    }

    #[test]
    fn raw_writers_refuse_forbidden_chars() {
        let mut s = String::new();
        assert!(!push_text_raw(&mut s, "a\u{0}"));
        assert!(!push_attr_raw(&mut s, "\u{FFFE}"));
        let mut s = String::new();
        assert!(push_text_raw(&mut s, "开 & م"));
        assert_eq!(s, "开 &amp; م");
    }

    #[test]
    fn cdata_splits_every_terminator() {
        for input in ["", "plain", "]]>", "a]]>b]]>c", "]]]]>>", "]]"] {
            let mut s = String::new();
            push_cdata(&mut s, input);
            let doc = format!("<x>{s}</x>");
            let parsed = roxmltree::Document::parse(&doc).expect("well-formed");
            assert_eq!(text_of(parsed.root_element()), input, "{doc}");
        }
    }

    #[test]
    fn limits_are_enforced() {
        let l = limits();
        assert!(parse_limited("<a><b><c><d/></c></b></a>", &l).is_ok());
        assert_eq!(
            parse_limited("<a><b><c><d><e/></d></c></b></a>", &l).err(),
            Some(ParseFailure::Limit(LimitError::Depth(4)))
        );
        assert_eq!(
            parse_limited(r#"<a x="1" y="2" z="3" w="4"/>"#, &l).err(),
            Some(ParseFailure::Limit(LimitError::Attributes(3)))
        );
        assert_eq!(
            parse_limited(r#"<a x="12345678901"/>"#, &l).err(),
            Some(ParseFailure::Limit(LimitError::AttributeLen(10)))
        );
        let many = format!("<a>{}</a>", "<b/>".repeat(60));
        assert_eq!(
            parse_limited(&many, &l).err(),
            Some(ParseFailure::Limit(LimitError::Nodes(50)))
        );
        assert_eq!(
            parse_limited("<!DOCTYPE a []><a/>", &l).err(),
            Some(ParseFailure::Dtd)
        );
        assert!(matches!(
            parse_limited("<a>", &l).err(),
            Some(ParseFailure::Syntax(_))
        ));
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let l = XmlLimits {
            max_depth: 32,
            max_nodes: 1_000_000,
            max_attributes: 8,
            max_attribute_len: 100,
        };
        let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        assert_eq!(
            parse_limited(&deep, &l).err(),
            Some(ParseFailure::Limit(LimitError::Depth(32)))
        );
    }

    #[test]
    fn prescan_counts_what_the_checks_count() {
        let l = limits();
        // Markup the scan must see through without counting.
        for ok in [
            "<?xml version='1.0'?><!-- <a b='1' c='2' d='3' e='4'> --><a x='>' y=\"/>\"><b/></a>",
            "<a><![CDATA[<b><c><d><e><f>]]></a>",
            "<a\n x = '1'\ty=\"2\" />",
        ] {
            assert!(parse_limited(ok, &l).is_ok(), "{ok}");
        }
        assert_eq!(
            prescan("<a><b><c><d/></c></b></a>", &l),
            Ok(()),
            "a self-closing element at the deepest level allowed"
        );
        assert_eq!(
            prescan("<a><b><c><d><e/></d></c></b></a>", &l),
            Err(LimitError::Depth(4))
        );
        assert_eq!(
            prescan("<a><b/><b/><b/><b/><b/></a>", &l),
            Ok(()),
            "end tags and self-closing tags keep the depth"
        );
        let ns = "<a xmlns:p='1'><b xmlns:q='2'/><b xmlns:r='3'/><b xmlns:s='4'/></a>";
        assert_eq!(
            parse_limited(ns, &l).err(),
            Some(ParseFailure::Limit(LimitError::Namespaces(3)))
        );
        // Broken or DTD-bearing text is left to the parser.
        assert!(matches!(
            parse_limited("<a x='1", &l).err(),
            Some(ParseFailure::Syntax(_))
        ));
        assert_eq!(
            parse_limited("<!DOCTYPE a [<!ENTITY e 'x'>]><a/>", &l).err(),
            Some(ParseFailure::Dtd)
        );
    }

    /// Regression: roxmltree's time grows with the cube of nested
    /// namespace declarations and the square of one element's attributes
    /// (found by fuzzing the request path: a 90 KiB envelope of 4,000
    /// nested declarations took 21 s, a 1 MiB element of 100,000 attributes
    /// 14 s, in a release build). Both are now refused in linear time.
    #[test]
    fn hostile_namespaces_and_attributes_are_refused_quickly() {
        let l = crate::Limits::default().form;
        let nested: String = (0..20_000)
            .map(|i| format!("<p xmlns:n{i}=\"u\">"))
            .collect::<String>()
            + &"</p>".repeat(20_000);
        let wide = format!(
            "<p{}/>",
            (0..100_000)
                .map(|i| format!(" a{i}=\"1\""))
                .collect::<String>()
        );
        let siblings = format!(
            "<form>{}</form>",
            (0..20_000)
                .map(|i| format!("<p xmlns:n{i}=\"u\"/>"))
                .collect::<String>()
        );
        for doc in [nested, wide, siblings] {
            let t0 = std::time::Instant::now();
            assert!(matches!(
                parse_limited(&doc, &l),
                Err(ParseFailure::Limit(_))
            ));
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(2),
                "{:?}",
                t0.elapsed()
            );
        }
    }

    #[test]
    fn simple_names() {
        assert!(is_simple_name("ExchangeID"));
        assert!(is_simple_name("ont_sn"));
        assert!(!is_simple_name("ONT SN"));
        assert!(!is_simple_name("1abc"));
        assert!(!is_simple_name(""));
        assert!(!is_simple_name("xmlns"));
    }
}
