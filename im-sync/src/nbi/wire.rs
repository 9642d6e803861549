//! The NBI wire format, in one place: the page document
//! `<nbi system entity snapshot offset limit total watermark>` with its row
//! elements, read into typed rows ([`parse_page`]) and written back
//! ([`PageWriter`], used by the simulators and by file exports).
//!
//! Reading is strict about the page and lenient about rows: a page that is
//! not well-formed XML, declares a DTD, exceeds the [`ParseLimits`], holds
//! bytes invalid for its charset or lacks a header attribute is a
//! [`PageError`]; a row with a missing key or a bad value becomes a
//! [`RowError`] (its position and the reason) and the other rows are kept.
//! A row element with `deleted="true"` is a [`Tombstone`].
//!
//! The charset is taken from a byte-order mark, else from the XML
//! declaration, else UTF-8; every charset that `encoding_rs` knows is
//! decoded.

use encoding_rs::Encoding;
use im_core::model::{
    City, Compound, Domain, Dslam, Exchange, Olt, Ont, PonPort, PonPortRef, Port, Sector,
    SourceState, Technology, Vlan, VlanPurpose, Zone,
};
use im_core::retry::Interface;
use std::borrow::Cow;
use std::fmt;
use std::net::Ipv4Addr;

/// Highest number of ONTs per PON port when a `ponport` row omits `maxOnts`.
pub const DEFAULT_MAX_ONTS: u32 = 128;

/// A source system of the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum System {
    /// Matrix: the ADSL/VDSL inventory (`system="matrix"`).
    Matrix,
    /// eMatrix: the FTTH inventory (`system="ematrix"`).
    Ematrix,
}

impl System {
    /// Both systems.
    pub const ALL: [System; 2] = [System::Matrix, System::Ematrix];

    /// The spelling on the wire (`matrix`, `ematrix`).
    pub const fn as_str(self) -> &'static str {
        match self {
            System::Matrix => "matrix",
            System::Ematrix => "ematrix",
        }
    }

    /// Reads `matrix` or `ematrix` (ASCII case ignored).
    pub fn parse(s: &str) -> Option<System> {
        System::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The map (`domain`) this system's sectors, zones and cities belong to.
    pub const fn domain(self) -> Domain {
        match self {
            System::Matrix => Domain::Adsl,
            System::Ematrix => Domain::Ftth,
        }
    }

    /// The retry-policy interface of this system.
    pub const fn interface(self) -> Interface {
        match self {
            System::Matrix => Interface::Matrix,
            System::Ematrix => Interface::Ematrix,
        }
    }

    /// The entities this system serves, parents before children (the order
    /// a run reads them in).
    pub const fn entities(self) -> &'static [Entity] {
        match self {
            System::Matrix => &[
                Entity::Sectors,
                Entity::Zones,
                Entity::Cities,
                Entity::Exchanges,
                Entity::Dslams,
                Entity::Ports,
            ],
            System::Ematrix => &[
                Entity::Sectors,
                Entity::Zones,
                Entity::Cities,
                Entity::Olts,
                Entity::PonPorts,
                Entity::Compounds,
                Entity::Onts,
                Entity::Vlans,
            ],
        }
    }

    /// Whether this system serves `entity`.
    pub fn serves(self, entity: Entity) -> bool {
        self.entities().contains(&entity)
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entity (a kind of row) of the NBI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// `sectors` / `<sector>`.
    Sectors,
    /// `zones` / `<zone>`.
    Zones,
    /// `cities` / `<city>`.
    Cities,
    /// `exchanges` / `<exchange>` (Matrix).
    Exchanges,
    /// `dslams` / `<dslam>` (Matrix).
    Dslams,
    /// `ports` / `<port>` (Matrix).
    Ports,
    /// `olts` / `<olt>` (eMatrix).
    Olts,
    /// `ponports` / `<ponport>` (eMatrix).
    PonPorts,
    /// `compounds` / `<compound>` (eMatrix).
    Compounds,
    /// `onts` / `<ont>` (eMatrix).
    Onts,
    /// `vlans` / `<vlan>` (eMatrix).
    Vlans,
}

impl Entity {
    /// Every entity.
    pub const ALL: [Entity; 11] = [
        Entity::Sectors,
        Entity::Zones,
        Entity::Cities,
        Entity::Exchanges,
        Entity::Dslams,
        Entity::Ports,
        Entity::Olts,
        Entity::PonPorts,
        Entity::Compounds,
        Entity::Onts,
        Entity::Vlans,
    ];

    /// The URL path segment and `entity` attribute (`ports`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Entity::Sectors => "sectors",
            Entity::Zones => "zones",
            Entity::Cities => "cities",
            Entity::Exchanges => "exchanges",
            Entity::Dslams => "dslams",
            Entity::Ports => "ports",
            Entity::Olts => "olts",
            Entity::PonPorts => "ponports",
            Entity::Compounds => "compounds",
            Entity::Onts => "onts",
            Entity::Vlans => "vlans",
        }
    }

    /// The row element's name (`port`).
    pub const fn element(self) -> &'static str {
        match self {
            Entity::Sectors => "sector",
            Entity::Zones => "zone",
            Entity::Cities => "city",
            Entity::Exchanges => "exchange",
            Entity::Dslams => "dslam",
            Entity::Ports => "port",
            Entity::Olts => "olt",
            Entity::PonPorts => "ponport",
            Entity::Compounds => "compound",
            Entity::Onts => "ont",
            Entity::Vlans => "vlan",
        }
    }

    /// Reads a path segment / `entity` attribute (exact spelling).
    pub fn parse(s: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of a page, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// A sector.
    Sector(Sector),
    /// A zone.
    Zone(Zone),
    /// A city.
    City(City),
    /// An exchange (POP).
    Exchange(Exchange),
    /// A DSLAM.
    Dslam(Dslam),
    /// A DSLAM port.
    Port(Port),
    /// An OLT.
    Olt(Olt),
    /// A PON port.
    PonPort(PonPort),
    /// A compound.
    Compound(Compound),
    /// An ONT.
    Ont(Ont),
    /// A VLAN.
    Vlan(Vlan),
}

impl Row {
    /// The entity of this row.
    pub fn entity(&self) -> Entity {
        match self {
            Row::Sector(_) => Entity::Sectors,
            Row::Zone(_) => Entity::Zones,
            Row::City(_) => Entity::Cities,
            Row::Exchange(_) => Entity::Exchanges,
            Row::Dslam(_) => Entity::Dslams,
            Row::Port(_) => Entity::Ports,
            Row::Olt(_) => Entity::Olts,
            Row::PonPort(_) => Entity::PonPorts,
            Row::Compound(_) => Entity::Compounds,
            Row::Ont(_) => Entity::Onts,
            Row::Vlan(_) => Entity::Vlans,
        }
    }

    /// The natural key of this row.
    pub fn key(&self) -> RowKey {
        match self {
            Row::Sector(r) => RowKey::Sector {
                domain: r.domain,
                code: r.code.clone(),
            },
            Row::Zone(r) => RowKey::Zone {
                domain: r.domain,
                code: r.code.clone(),
            },
            Row::City(r) => RowKey::City {
                domain: r.domain,
                code: r.code.clone(),
            },
            Row::Exchange(r) => RowKey::Exchange(r.code.clone()),
            Row::Dslam(r) => RowKey::Dslam(r.name.clone()),
            Row::Port(r) => RowKey::Port {
                dslam: r.dslam.clone(),
                frame: r.frame,
                slot: r.slot,
                port: r.port,
            },
            Row::Olt(r) => RowKey::Olt(r.name.clone()),
            Row::PonPort(r) => RowKey::PonPort(r.at.clone()),
            Row::Compound(r) => RowKey::Compound(r.code.clone()),
            Row::Ont(r) => RowKey::Ont(r.serial.clone()),
            Row::Vlan(r) => RowKey::Vlan {
                olt: r.olt.clone(),
                id: r.id,
            },
        }
    }
}

/// The natural key of a row (spec §1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowKey {
    /// Sector: domain + code.
    Sector {
        /// The map.
        domain: Domain,
        /// The code.
        code: String,
    },
    /// Zone: domain + code.
    Zone {
        /// The map.
        domain: Domain,
        /// The code.
        code: String,
    },
    /// City: domain + code.
    City {
        /// The map.
        domain: Domain,
        /// The code.
        code: String,
    },
    /// Exchange: code.
    Exchange(String),
    /// DSLAM: name.
    Dslam(String),
    /// Port: DSLAM + frame + slot + port.
    Port {
        /// DSLAM name.
        dslam: String,
        /// Frame.
        frame: u32,
        /// Slot.
        slot: u32,
        /// Port.
        port: u32,
    },
    /// OLT: name.
    Olt(String),
    /// PON port: OLT + frame + slot + port.
    PonPort(PonPortRef),
    /// Compound: code.
    Compound(String),
    /// ONT: serial.
    Ont(String),
    /// VLAN: OLT + VLAN id.
    Vlan {
        /// OLT name.
        olt: String,
        /// VLAN id.
        id: u16,
    },
}

impl RowKey {
    /// The entity whose key this is.
    pub fn entity(&self) -> Entity {
        match self {
            RowKey::Sector { .. } => Entity::Sectors,
            RowKey::Zone { .. } => Entity::Zones,
            RowKey::City { .. } => Entity::Cities,
            RowKey::Exchange(_) => Entity::Exchanges,
            RowKey::Dslam(_) => Entity::Dslams,
            RowKey::Port { .. } => Entity::Ports,
            RowKey::Olt(_) => Entity::Olts,
            RowKey::PonPort(_) => Entity::PonPorts,
            RowKey::Compound(_) => Entity::Compounds,
            RowKey::Ont(_) => Entity::Onts,
            RowKey::Vlan { .. } => Entity::Vlans,
        }
    }
}

/// `ADSL:CAIRO`, `EX01`, `EX01-D1/0/2/17`, `OLT01/0/1/3`, `OLT01/100`.
impl fmt::Display for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowKey::Sector { domain, code }
            | RowKey::Zone { domain, code }
            | RowKey::City { domain, code } => write!(f, "{domain}:{code}"),
            RowKey::Exchange(s)
            | RowKey::Dslam(s)
            | RowKey::Olt(s)
            | RowKey::Compound(s)
            | RowKey::Ont(s) => f.write_str(s),
            RowKey::Port {
                dslam,
                frame,
                slot,
                port,
            } => write!(f, "{dslam}/{frame}/{slot}/{port}"),
            RowKey::PonPort(p) => write!(f, "{p}"),
            RowKey::Vlan { olt, id } => write!(f, "{olt}/{id}"),
        }
    }
}

/// A row the source reports as removed (`deleted="true"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tombstone {
    /// The entity of the removed row.
    pub entity: Entity,
    /// The natural key of the removed row.
    pub key: RowKey,
}

/// A row element that could not be read; the rest of the page is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Position of the element in the entity's listing: the page's `offset`
    /// plus the element's index among the page's row elements.
    pub position: u64,
    /// Line of the element in the page document (from 1).
    pub line: u32,
    /// The element's name.
    pub element: String,
    /// The natural key as far as it could be read (for the report).
    pub key: Option<String>,
    /// Why the row was rejected.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "row {} (line {}, <{}>",
            self.position, self.line, self.element
        )?;
        if let Some(k) = &self.key {
            write!(f, " {k}")?;
        }
        write!(f, "): {}", self.reason)
    }
}

/// The attributes of the `<nbi>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageHeader {
    /// The system that wrote the page.
    pub system: System,
    /// The entity listed.
    pub entity: Entity,
    /// The snapshot the page belongs to.
    pub snapshot: String,
    /// Position of the page's first row element in the listing.
    pub offset: u64,
    /// Page size the source used.
    pub limit: u64,
    /// Row elements in the whole listing (of this snapshot, or of the
    /// changes since the `since` watermark).
    pub total: u64,
    /// The source's change watermark for this snapshot.
    pub watermark: String,
}

/// One page, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The header.
    pub header: PageHeader,
    /// Rows read, in document order.
    pub rows: Vec<Row>,
    /// Rows reported removed, in document order.
    pub tombstones: Vec<Tombstone>,
    /// Rows rejected, in document order.
    pub rejects: Vec<RowError>,
    /// Row elements in the page (rows + tombstones + rejects): how far the
    /// page advances the offset.
    pub elements: u64,
}

/// Why a page as a whole could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// Unknown charset label, or bytes invalid for the charset.
    #[error("charset: {0}")]
    Charset(String),
    /// The document declares a DTD (refused).
    #[error("a DTD is not allowed")]
    Dtd,
    /// Not well-formed XML.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// Over a [`ParseLimits`] bound.
    #[error("over the limit: {0}")]
    Limit(String),
    /// The root element or one of its attributes is missing or wrong.
    #[error("page header: {0}")]
    Header(String),
}

/// Bounds on one page document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Most XML nodes (elements and text). Default 1,000,000 (a page of
    /// 100,000 rows with whitespace between them uses about 200,000).
    pub max_nodes: u32,
    /// Deepest element nesting (the format uses 2). Default 8.
    pub max_depth: u32,
    /// Most attributes on one element. Default 32.
    pub max_attributes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_nodes: 1_000_000,
            max_depth: 8,
            max_attributes: 32,
        }
    }
}

/// The label in the XML declaration's `encoding` pseudo-attribute, if any.
pub fn declared_encoding(bytes: &[u8]) -> Option<&[u8]> {
    let head = &bytes[..bytes.len().min(1024)];
    let head = head.strip_prefix(b"<?xml")?;
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = &head[..end];
    let at = decl.windows(8).position(|w| w == b"encoding")?;
    let rest = decl[at + 8..].trim_ascii_start().strip_prefix(b"=")?;
    let rest = rest.trim_ascii_start();
    let quote = *rest.first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let rest = &rest[1..];
    let close = rest.iter().position(|&b| b == quote)?;
    Some(&rest[..close])
}

/// The encoding for a charset label; `None` for labels `encoding_rs` does
/// not know (and for the WHATWG `replacement` encoding).
pub fn encoding_for_label(label: &[u8]) -> Option<&'static Encoding> {
    Encoding::for_label(label.trim_ascii()).filter(|e| *e != encoding_rs::REPLACEMENT)
}

/// Decodes a page: BOM, else the XML declaration, else UTF-8. Bytes invalid
/// for the charset are an error, never replaced.
pub fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, PageError> {
    let (encoding, body) = match Encoding::for_bom(bytes) {
        Some((enc, bom)) => (enc, &bytes[bom..]),
        None => {
            let enc = match declared_encoding(bytes) {
                Some(label) => encoding_for_label(label).ok_or_else(|| {
                    let shown: String = String::from_utf8_lossy(label).chars().take(40).collect();
                    PageError::Charset(format!("unknown charset {shown:?}"))
                })?,
                None => encoding_rs::UTF_8,
            };
            // A declaration readable as ASCII cannot introduce UTF-16
            // without a byte-order mark; the bytes are ASCII-compatible.
            if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE {
                return Err(PageError::Charset(
                    "UTF-16 declared without a byte-order mark".into(),
                ));
            }
            (enc, bytes)
        }
    };
    encoding
        .decode_without_bom_handling_and_without_replacement(body)
        .ok_or_else(|| PageError::Charset(format!("bytes that are not valid {}", encoding.name())))
}

/// Reads a page (any charset, see [`decode`]) within `limits`.
pub fn parse_page(bytes: &[u8], limits: &ParseLimits) -> Result<Page, PageError> {
    let text = decode(bytes)?;
    parse_page_str(&text, limits)
}

/// Reads a page that is already text (the declaration's charset is ignored).
pub fn parse_page_str(text: &str, limits: &ParseLimits) -> Result<Page, PageError> {
    prescan(text, limits)?;
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_nodes,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, opts).map_err(|e| match e {
        roxmltree::Error::DtdDetected => PageError::Dtd,
        roxmltree::Error::NodesLimitReached => {
            PageError::Limit(format!("more than {} XML nodes", limits.max_nodes))
        }
        other => PageError::Xml(other.to_string()),
    })?;
    check_depth(&doc, limits.max_depth)?;
    let root = doc.root_element();
    if root.tag_name().name() != "nbi" || root.tag_name().namespace().is_some() {
        return Err(PageError::Header(format!(
            "the root element is <{}>, not <nbi>",
            root.tag_name().name()
        )));
    }
    let header = read_header(root)?;
    let domain = header.system.domain();
    let element = header.entity.element();
    let mut page = Page {
        header,
        rows: Vec::new(),
        tombstones: Vec::new(),
        rejects: Vec::new(),
        elements: 0,
    };
    for node in root.children().filter(roxmltree::Node::is_element) {
        let position = page.header.offset.saturating_add(page.elements);
        page.elements += 1;
        let reject = |key: Option<String>, reason: String| RowError {
            position,
            line: doc.text_pos_at(node.range().start).row,
            element: node.tag_name().name().to_string(),
            key,
            reason,
        };
        if node.tag_name().name() != element || node.tag_name().namespace().is_some() {
            page.rejects.push(reject(
                None,
                format!("unexpected element in a page of {}", page.header.entity),
            ));
            continue;
        }
        let attrs = Attrs(node);
        if node.attributes().len() > limits.max_attributes {
            page.rejects.push(reject(
                attrs.key_hint(page.header.entity),
                format!("more than {} attributes", limits.max_attributes),
            ));
            continue;
        }
        if node.children().any(|c| c.is_element()) {
            page.rejects.push(reject(
                attrs.key_hint(page.header.entity),
                "a row element must not contain elements".into(),
            ));
            continue;
        }
        let deleted = match attrs.opt("deleted") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => false,
            Some(v) => {
                page.rejects.push(reject(
                    attrs.key_hint(page.header.entity),
                    format!("deleted={v:?} is neither true nor false"),
                ));
                continue;
            }
        };
        let result = if deleted {
            read_key(page.header.entity, domain, &attrs).map(|key| {
                page.tombstones.push(Tombstone {
                    entity: page.header.entity,
                    key,
                })
            })
        } else {
            read_row(page.header.entity, domain, &attrs).map(|row| page.rows.push(row))
        };
        if let Err(reason) = result {
            page.rejects
                .push(reject(attrs.key_hint(page.header.entity), reason));
        }
    }
    Ok(page)
}

/// One linear pass over the markup before roxmltree sees it: element
/// depth (as [`check_depth`]), at most `8 × max_attributes` attributes on
/// any element (a row with more than `max_attributes` is still read and
/// rejected on its own), and at most `max_attributes` namespace
/// declarations in the page (the format uses none). roxmltree's time grows
/// with the square of one element's attributes and the cube of nested
/// namespace declarations: without this, a page of a few hundred KiB could
/// hold the sync for minutes. At anything it does not understand (a DTD, a
/// broken tag) the scan stops and leaves the verdict to the parser.
fn prescan(text: &str, limits: &ParseLimits) -> Result<(), PageError> {
    let b = text.as_bytes();
    let ws = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let find = |from: usize, pat: &[u8]| -> Option<usize> {
        b.get(from..)?
            .windows(pat.len())
            .position(|w| w == pat)
            .map(|p| from + p + pat.len())
    };
    let max_attrs = limits.max_attributes.saturating_mul(8);
    let max_depth = limits.max_depth as usize;
    let (mut depth, mut namespaces, mut i) = (0usize, 0usize, 0usize);
    while let Some(lt) = b.get(i..).and_then(|r| r.iter().position(|&c| c == b'<')) {
        i += lt;
        let rest = &b[i..];
        let next = if rest.starts_with(b"<!--") {
            find(i, b"-->")
        } else if rest.starts_with(b"<![CDATA[") {
            find(i, b"]]>")
        } else if rest.starts_with(b"<?") {
            find(i, b"?>")
        } else if rest.starts_with(b"<!") {
            None
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            find(i, b">")
        } else {
            let mut j = i + 1;
            while j < b.len() && !ws(b[j]) && !matches!(b[j], b'/' | b'>') {
                j += 1;
            }
            let (mut attrs, mut end) = (0usize, None);
            loop {
                while j < b.len() && ws(b[j]) {
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
                while j < b.len() && !ws(b[j]) && !matches!(b[j], b'=' | b'/' | b'>') {
                    j += 1;
                }
                let name = &b[name_start..j];
                while j < b.len() && ws(b[j]) {
                    j += 1;
                }
                if b.get(j) != Some(&b'=') {
                    break;
                }
                j += 1;
                while j < b.len() && ws(b[j]) {
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
                if attrs > max_attrs {
                    return Err(PageError::Limit(format!(
                        "an element with more than {max_attrs} attributes"
                    )));
                }
                if name == b"xmlns" || name.starts_with(b"xmlns:") {
                    namespaces += 1;
                    if namespaces > limits.max_attributes {
                        return Err(PageError::Limit(format!(
                            "more than {} namespace declarations",
                            limits.max_attributes
                        )));
                    }
                }
            }
            match end {
                Some((_, d)) if d > max_depth => {
                    return Err(PageError::Limit(format!(
                        "elements nested deeper than {max_depth}"
                    )));
                }
                Some((n, _)) => Some(n),
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

/// Fails when elements nest deeper than `max` (each element's ancestor
/// chain is walked at most `max + 2` steps, so hostile nesting costs
/// linear time).
fn check_depth(doc: &roxmltree::Document<'_>, max: u32) -> Result<(), PageError> {
    let bound = max as usize + 1;
    for n in doc.descendants().filter(roxmltree::Node::is_element) {
        // An element at depth d has d + 1 ancestors (itself and the
        // document node included).
        if n.ancestors().take(bound + 1).count() > bound {
            return Err(PageError::Limit(format!(
                "elements nested deeper than {max}"
            )));
        }
    }
    Ok(())
}

fn read_header(root: roxmltree::Node<'_, '_>) -> Result<PageHeader, PageError> {
    let get = |name: &str| {
        root.attribute(name)
            .ok_or_else(|| PageError::Header(format!("attribute {name} is missing")))
    };
    let number = |name: &str| -> Result<u64, PageError> {
        let v = get(name)?;
        v.trim()
            .parse()
            .map_err(|_| PageError::Header(format!("{name}={v:?} is not a whole number")))
    };
    let system = get("system")?;
    let system = System::parse(system)
        .ok_or_else(|| PageError::Header(format!("unknown system {system:?}")))?;
    let entity = get("entity")?;
    let entity = Entity::parse(entity.trim())
        .ok_or_else(|| PageError::Header(format!("unknown entity {entity:?}")))?;
    if !system.serves(entity) {
        return Err(PageError::Header(format!(
            "{system} does not serve {entity}"
        )));
    }
    let snapshot = get("snapshot")?.trim().to_string();
    if snapshot.is_empty() {
        return Err(PageError::Header("the snapshot is empty".into()));
    }
    Ok(PageHeader {
        system,
        entity,
        snapshot,
        offset: number("offset")?,
        limit: number("limit")?,
        total: number("total")?,
        watermark: get("watermark")?.trim().to_string(),
    })
}

/// Typed access to a row element's attributes; every error is a reason.
struct Attrs<'a, 'i>(roxmltree::Node<'a, 'i>);

impl Attrs<'_, '_> {
    fn opt(&self, name: &str) -> Option<&str> {
        self.0.attribute(name)
    }

    /// A required attribute (surrounding spaces dropped), non-empty.
    fn text(&self, name: &str) -> Result<String, String> {
        match self.0.attribute(name) {
            None => Err(format!("attribute {name} is missing")),
            Some(v) if v.trim().is_empty() => Err(format!("attribute {name} is empty")),
            Some(v) => Ok(v.trim().to_string()),
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<T, String> {
        let v = self.text(name)?;
        v.parse()
            .map_err(|_| format!("{name}={v:?} is not a valid number"))
    }

    fn state(&self) -> Result<SourceState, String> {
        let v = self.text("state")?;
        SourceState::parse(&v)
            .ok_or_else(|| format!("state={v:?} is not AVAILABLE, OCCUPIED or FAULTY"))
    }

    fn digits(&self, name: &str) -> Result<String, String> {
        let v = self.text(name)?;
        if v.bytes().all(|b| b.is_ascii_digit()) {
            Ok(v)
        } else {
            Err(format!("{name}={v:?} is not all digits"))
        }
    }

    fn ip(&self) -> Result<String, String> {
        let v = self.text("ip")?;
        v.parse::<Ipv4Addr>()
            .map(|_| v.clone())
            .map_err(|_| format!("ip={v:?} is not an IPv4 address"))
    }

    fn pon(&self) -> Result<PonPortRef, String> {
        Ok(PonPortRef {
            olt: self.text("olt")?,
            frame: self.number("frame")?,
            slot: self.number("slot")?,
            port: self.number("port")?,
        })
    }

    fn vlan_id(&self) -> Result<u16, String> {
        let id: u16 = self.number("id")?;
        if (1..=4094).contains(&id) {
            Ok(id)
        } else {
            Err(format!("VLAN id {id} is outside 1..=4094"))
        }
    }

    /// Whatever key attributes there are, for a reject's report.
    fn key_hint(&self, entity: Entity) -> Option<String> {
        let names: &[&str] = match entity {
            Entity::Sectors
            | Entity::Zones
            | Entity::Cities
            | Entity::Exchanges
            | Entity::Compounds => &["code"],
            Entity::Dslams | Entity::Olts => &["name"],
            Entity::Ports => &["dslam", "frame", "slot", "port"],
            Entity::PonPorts => &["olt", "frame", "slot", "port"],
            Entity::Onts => &["serial"],
            Entity::Vlans => &["olt", "id"],
        };
        let parts: Vec<&str> = names.iter().filter_map(|n| self.opt(n)).collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }
}

fn read_key(entity: Entity, domain: Domain, a: &Attrs<'_, '_>) -> Result<RowKey, String> {
    Ok(match entity {
        Entity::Sectors => RowKey::Sector {
            domain,
            code: a.text("code")?,
        },
        Entity::Zones => RowKey::Zone {
            domain,
            code: a.text("code")?,
        },
        Entity::Cities => RowKey::City {
            domain,
            code: a.text("code")?,
        },
        Entity::Exchanges => RowKey::Exchange(a.text("code")?),
        Entity::Dslams => RowKey::Dslam(a.text("name")?),
        Entity::Ports => RowKey::Port {
            dslam: a.text("dslam")?,
            frame: a.number("frame")?,
            slot: a.number("slot")?,
            port: a.number("port")?,
        },
        Entity::Olts => RowKey::Olt(a.text("name")?),
        Entity::PonPorts => RowKey::PonPort(a.pon()?),
        Entity::Compounds => RowKey::Compound(a.text("code")?),
        Entity::Onts => RowKey::Ont(a.text("serial")?),
        Entity::Vlans => RowKey::Vlan {
            olt: a.text("olt")?,
            id: a.vlan_id()?,
        },
    })
}

fn read_row(entity: Entity, domain: Domain, a: &Attrs<'_, '_>) -> Result<Row, String> {
    Ok(match entity {
        Entity::Sectors => Row::Sector(Sector {
            domain,
            code: a.text("code")?,
            name: a.text("name")?,
        }),
        Entity::Zones => Row::Zone(Zone {
            domain,
            code: a.text("code")?,
            name: a.text("name")?,
            sector: a.text("sector")?,
        }),
        Entity::Cities => Row::City(City {
            domain,
            code: a.text("code")?,
            name: a.text("name")?,
            zone: a.text("zone")?,
        }),
        Entity::Exchanges => Row::Exchange(Exchange {
            code: a.text("code")?,
            name: a.text("name")?,
            city: a.text("city")?,
            popid: a.text("popid")?,
            area_code: a.digits("areaCode")?,
        }),
        Entity::Dslams => {
            let name = a.text("name")?;
            let exchange = a.text("exchange")?;
            let ip = a.ip()?;
            let model = a.text("model")?;
            let tech = a.text("technology")?;
            let technology = Technology::parse(&tech)
                .ok_or_else(|| format!("technology={tech:?} is not ADSL, VDSL or ADSL+VDSL"))?;
            Row::Dslam(Dslam {
                name,
                exchange,
                ip,
                model,
                technology,
            })
        }
        Entity::Ports => Row::Port(Port {
            dslam: a.text("dslam")?,
            frame: a.number("frame")?,
            slot: a.number("slot")?,
            port: a.number("port")?,
            state: a.state()?,
        }),
        Entity::Olts => Row::Olt(Olt {
            name: a.text("name")?,
            exchange: a.text("exchange")?,
            ip: a.ip()?,
            model: a.text("model")?,
        }),
        Entity::PonPorts => {
            let at = a.pon()?;
            let max_onts = match a.opt("maxOnts") {
                None => DEFAULT_MAX_ONTS,
                Some(_) => a.number("maxOnts")?,
            };
            if max_onts == 0 {
                return Err("maxOnts must be at least 1".into());
            }
            Row::PonPort(PonPort {
                at,
                max_onts,
                state: a.state()?,
            })
        }
        Entity::Compounds => {
            let code = a.text("code")?;
            let name = a.text("name")?;
            let exchange = a.text("exchange")?;
            let zone = a.text("zone")?;
            let list = a
                .opt("ponports")
                .ok_or_else(|| "attribute ponports is missing".to_string())?;
            let mut pon_ports = Vec::new();
            for item in list.split_ascii_whitespace() {
                let p = PonPortRef::parse(item)
                    .ok_or_else(|| format!("ponports item {item:?} is not OLT/frame/slot/port"))?;
                if !pon_ports.contains(&p) {
                    pon_ports.push(p);
                }
            }
            Row::Compound(Compound {
                code,
                name,
                exchange,
                zone,
                pon_ports,
            })
        }
        Entity::Onts => {
            let serial = a.text("serial")?;
            let at = a.pon()?;
            let ont_id = a.number("ontId")?;
            let model = a.text("model")?;
            Row::Ont(Ont {
                serial,
                at,
                ont_id,
                model,
                state: a.state()?,
            })
        }
        Entity::Vlans => {
            let olt = a.text("olt")?;
            let id = a.vlan_id()?;
            let p = a.text("purpose")?;
            let purpose = VlanPurpose::parse(&p)
                .ok_or_else(|| format!("purpose={p:?} is not INTERNET, VOICE, IPTV or MGMT"))?;
            Row::Vlan(Vlan {
                olt,
                id,
                purpose,
                state: a.state()?,
            })
        }
    })
}

/// Writes a page document: `new` (header), then `row` / `tombstone` per
/// element, then `finish` (encoded in the charset named at `new`; what the
/// charset cannot carry becomes numeric character references).
#[derive(Debug)]
pub struct PageWriter {
    buf: String,
    encoding: &'static Encoding,
}

impl PageWriter {
    /// Starts a page with `header`, declared and encoded as `charset`
    /// (`utf-8`, `iso-8859-1`, `gbk`, …). Fails on an unknown label or on a
    /// charset that cannot be written (UTF-16).
    pub fn new(header: &PageHeader, charset: &str) -> Result<PageWriter, PageError> {
        let label = charset.trim();
        let encoding = encoding_for_label(label.as_bytes())
            .filter(|e| e.output_encoding() == *e)
            .ok_or_else(|| PageError::Charset(format!("cannot write charset {label:?}")))?;
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(PageError::Charset(format!(
                "{label:?} is not a plain label"
            )));
        }
        let mut buf = String::with_capacity(256);
        buf.push_str("<?xml version=\"1.0\" encoding=\"");
        buf.push_str(label);
        buf.push_str("\"?>\n<nbi");
        let mut w = PageWriter { buf, encoding };
        w.attr("system", header.system.as_str());
        w.attr("entity", header.entity.as_str());
        w.attr("snapshot", &header.snapshot);
        w.attr("offset", &header.offset.to_string());
        w.attr("limit", &header.limit.to_string());
        w.attr("total", &header.total.to_string());
        w.attr("watermark", &header.watermark);
        w.buf.push_str(">\n");
        Ok(w)
    }

    /// Reserves room for about `rows` more row elements.
    pub fn reserve_rows(&mut self, rows: usize) {
        self.buf.reserve(rows.saturating_mul(96));
    }

    fn attr(&mut self, name: &str, value: &str) {
        self.buf.push(' ');
        self.buf.push_str(name);
        self.buf.push_str("=\"");
        escape_attr(&mut self.buf, value);
        self.buf.push('"');
    }

    fn num(&mut self, name: &str, value: impl fmt::Display) {
        use fmt::Write as _;
        let _ = write!(self.buf, " {name}=\"{value}\"");
    }

    fn open(&mut self, entity: Entity) {
        self.buf.push_str("  <");
        self.buf.push_str(entity.element());
    }

    fn close(&mut self) {
        self.buf.push_str("/>\n");
    }

    fn key_attrs(&mut self, key: &RowKey) {
        match key {
            RowKey::Sector { code, .. }
            | RowKey::Zone { code, .. }
            | RowKey::City { code, .. }
            | RowKey::Exchange(code)
            | RowKey::Compound(code) => self.attr("code", code),
            RowKey::Dslam(name) | RowKey::Olt(name) => self.attr("name", name),
            RowKey::Port {
                dslam,
                frame,
                slot,
                port,
            } => {
                self.attr("dslam", dslam);
                self.num("frame", frame);
                self.num("slot", slot);
                self.num("port", port);
            }
            RowKey::PonPort(p) => self.pon(p),
            RowKey::Ont(serial) => self.attr("serial", serial),
            RowKey::Vlan { olt, id } => {
                self.attr("olt", olt);
                self.num("id", id);
            }
        }
    }

    fn pon(&mut self, p: &PonPortRef) {
        self.attr("olt", &p.olt);
        self.num("frame", p.frame);
        self.num("slot", p.slot);
        self.num("port", p.port);
    }

    /// Appends a row element (the domain of map rows is the page's system's;
    /// it is not written).
    pub fn row(&mut self, row: &Row) {
        self.open(row.entity());
        match row {
            Row::Sector(r) => {
                self.attr("code", &r.code);
                self.attr("name", &r.name);
            }
            Row::Zone(r) => {
                self.attr("code", &r.code);
                self.attr("name", &r.name);
                self.attr("sector", &r.sector);
            }
            Row::City(r) => {
                self.attr("code", &r.code);
                self.attr("name", &r.name);
                self.attr("zone", &r.zone);
            }
            Row::Exchange(r) => {
                self.attr("code", &r.code);
                self.attr("name", &r.name);
                self.attr("city", &r.city);
                self.attr("popid", &r.popid);
                self.attr("areaCode", &r.area_code);
            }
            Row::Dslam(r) => {
                self.attr("name", &r.name);
                self.attr("exchange", &r.exchange);
                self.attr("ip", &r.ip);
                self.attr("model", &r.model);
                self.attr("technology", r.technology.as_str());
            }
            Row::Port(r) => {
                self.attr("dslam", &r.dslam);
                self.num("frame", r.frame);
                self.num("slot", r.slot);
                self.num("port", r.port);
                self.attr("state", r.state.as_str());
            }
            Row::Olt(r) => {
                self.attr("name", &r.name);
                self.attr("exchange", &r.exchange);
                self.attr("ip", &r.ip);
                self.attr("model", &r.model);
            }
            Row::PonPort(r) => {
                self.pon(&r.at);
                self.num("maxOnts", r.max_onts);
                self.attr("state", r.state.as_str());
            }
            Row::Compound(r) => {
                self.attr("code", &r.code);
                self.attr("name", &r.name);
                self.attr("exchange", &r.exchange);
                self.attr("zone", &r.zone);
                let list: Vec<String> = r.pon_ports.iter().map(ToString::to_string).collect();
                self.attr("ponports", &list.join(" "));
            }
            Row::Ont(r) => {
                self.attr("serial", &r.serial);
                self.pon(&r.at);
                self.num("ontId", r.ont_id);
                self.attr("model", &r.model);
                self.attr("state", r.state.as_str());
            }
            Row::Vlan(r) => {
                self.attr("olt", &r.olt);
                self.num("id", r.id);
                self.attr("purpose", r.purpose.as_str());
                self.attr("state", r.state.as_str());
            }
        }
        self.close();
    }

    /// Appends a removed row: its key attributes and `deleted="true"`.
    pub fn tombstone(&mut self, key: &RowKey) {
        self.open(key.entity());
        self.key_attrs(key);
        self.buf.push_str(" deleted=\"true\"");
        self.close();
    }

    /// Appends text as it is (for crafting faulty pages).
    pub(crate) fn raw(&mut self, xml: &str) {
        self.buf.push_str(xml);
    }

    /// Closes the page and encodes it.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push_str("</nbi>\n");
        if self.encoding == encoding_rs::UTF_8 {
            return self.buf.into_bytes();
        }
        let (bytes, _, _) = self.encoding.encode(&self.buf);
        bytes.into_owned()
    }
}

/// Escapes an attribute value (quotes, `<`, `&`, and the white space XML
/// would otherwise normalise).
fn escape_attr(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// Writes a whole page in one call.
pub fn write_page(
    header: &PageHeader,
    charset: &str,
    rows: &[Row],
    tombstones: &[RowKey],
) -> Result<Vec<u8>, PageError> {
    let mut w = PageWriter::new(header, charset)?;
    w.reserve_rows(rows.len() + tombstones.len());
    for r in rows {
        w.row(r);
    }
    for t in tombstones {
        w.tombstone(t);
    }
    Ok(w.finish())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use im_core::demo::{DemoSpec, inventory};

    fn header(system: System, entity: Entity, total: u64) -> PageHeader {
        PageHeader {
            system,
            entity,
            snapshot: "S000001".into(),
            offset: 0,
            limit: 5000,
            total,
            watermark: "W000001".into(),
        }
    }

    fn rows_of(system: System, entity: Entity) -> Vec<Row> {
        let inv = inventory(&DemoSpec {
            onts_per_pon: 2,
            exchanges: 2,
            ..DemoSpec::default()
        });
        let d = system.domain();
        match entity {
            Entity::Sectors => inv
                .sectors
                .into_iter()
                .filter(|r| r.domain == d)
                .map(Row::Sector)
                .collect(),
            Entity::Zones => inv
                .zones
                .into_iter()
                .filter(|r| r.domain == d)
                .map(Row::Zone)
                .collect(),
            Entity::Cities => inv
                .cities
                .into_iter()
                .filter(|r| r.domain == d)
                .map(Row::City)
                .collect(),
            Entity::Exchanges => inv.exchanges.into_iter().map(Row::Exchange).collect(),
            Entity::Dslams => inv.dslams.into_iter().map(Row::Dslam).collect(),
            Entity::Ports => inv.ports.into_iter().map(Row::Port).collect(),
            Entity::Olts => inv.olts.into_iter().map(Row::Olt).collect(),
            Entity::PonPorts => inv.pon_ports.into_iter().map(Row::PonPort).collect(),
            Entity::Compounds => inv.compounds.into_iter().map(Row::Compound).collect(),
            Entity::Onts => inv.onts.into_iter().map(Row::Ont).collect(),
            Entity::Vlans => inv.vlans.into_iter().map(Row::Vlan).collect(),
        }
    }

    #[test]
    fn round_trip_every_entity() {
        for system in System::ALL {
            for &entity in system.entities() {
                let rows = rows_of(system, entity);
                assert!(!rows.is_empty(), "{entity}");
                let keys: Vec<RowKey> = rows.iter().take(3).map(Row::key).collect();
                let h = header(system, entity, (rows.len() + keys.len()) as u64);
                let bytes = write_page(&h, "utf-8", &rows, &keys).unwrap();
                let page = parse_page(&bytes, &ParseLimits::default()).unwrap();
                assert_eq!(page.header, h);
                assert_eq!(page.rows, rows, "{entity}");
                assert!(page.rejects.is_empty(), "{:?}", page.rejects);
                let back: Vec<RowKey> = page.tombstones.iter().map(|t| t.key.clone()).collect();
                assert_eq!(back, keys);
                assert!(page.tombstones.iter().all(|t| t.entity == entity));
                assert_eq!(page.elements, (rows.len() + keys.len()) as u64);
            }
        }
    }

    #[test]
    fn special_characters_and_charsets_round_trip() {
        let row = Row::Sector(Sector {
            domain: Domain::Adsl,
            code: "C&<\"'>".into(),
            name: "Qāhira é 开罗 مصر\ttab".into(),
        });
        for charset in ["utf-8", "ISO-8859-1", "gbk", "gb2312", "windows-1256"] {
            let h = header(System::Matrix, Entity::Sectors, 1);
            let bytes = write_page(&h, charset, std::slice::from_ref(&row), &[]).unwrap();
            let page = parse_page(&bytes, &ParseLimits::default()).unwrap();
            assert_eq!(page.rows, std::slice::from_ref(&row), "{charset}");
        }
        // GBK carries Chinese as raw bytes, not references.
        let h = header(System::Matrix, Entity::Sectors, 1);
        let bytes = write_page(&h, "gbk", std::slice::from_ref(&row), &[]).unwrap();
        assert!(bytes.windows(4).any(|w| w == [0xBF, 0xAA, 0xC2, 0xDE]));
        assert!(PageWriter::new(&h, "utf-16").is_err());
        assert!(PageWriter::new(&h, "no-such").is_err());
    }

    #[test]
    fn latin1_declared_bytes_decode() {
        let xml = b"<?xml version='1.0' encoding='ISO-8859-1'?><nbi system='matrix' entity='sectors' snapshot='S' offset='0' limit='10' total='1' watermark='W'><sector code='X' name='Caf\xe9'/></nbi>";
        let page = parse_page(xml, &ParseLimits::default()).unwrap();
        let Row::Sector(s) = &page.rows[0] else {
            panic!("not a sector")
        };
        assert_eq!(s.name, "Café");
        // The same bytes without the declaration are not UTF-8.
        let plain = String::from_utf8_lossy(xml).replace("encoding='ISO-8859-1'", "");
        let mut raw = plain.into_bytes();
        let at = raw.windows(3).position(|w| w == "Caf".as_bytes()).unwrap();
        raw.splice(at + 3..at + 6, [0xE9]);
        assert!(matches!(
            parse_page(&raw, &ParseLimits::default()),
            Err(PageError::Charset(_))
        ));
    }

    #[test]
    fn page_errors_never_panic() {
        let l = ParseLimits::default();
        let cases: Vec<(&[u8], &str)> = vec![
            (b"", "xml"),
            (b"<nbi", "xml"),
            (b"<nbi system='matrix'><port></nbi>", "xml"),
            (b"<?xml version='1.0' encoding='klingon'?><nbi/>", "charset"),
            (b"<!DOCTYPE nbi [<!ENTITY a 'b'>]><nbi/>", "dtd"),
            (b"<other/>", "header"),
            (
                b"<nbi system='matrix' entity='onts' snapshot='S' offset='0' limit='1' total='0' watermark='W'/>",
                "header",
            ),
            (
                b"<nbi system='matrix' entity='ports' snapshot='S' offset='-1' limit='1' total='0' watermark='W'/>",
                "header",
            ),
            (
                b"<nbi system='matrix' entity='ports' offset='0' limit='1' total='0' watermark='W'/>",
                "header",
            ),
            (b"\xff\xfe<\x00", "xml"),
            (b"<a>\xff</a>", "charset"),
        ];
        for (bytes, kind) in cases {
            let err = parse_page(bytes, &l).unwrap_err();
            let ok = match kind {
                "xml" => matches!(err, PageError::Xml(_)),
                "charset" => matches!(err, PageError::Charset(_)),
                "dtd" => matches!(err, PageError::Dtd),
                "header" => matches!(err, PageError::Header(_)),
                _ => false,
            };
            assert!(ok, "{:?} gave {err:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn limits_apply() {
        let mut deep = String::from(
            "<nbi system='matrix' entity='ports' snapshot='S' offset='0' limit='1' total='1' watermark='W'>",
        );
        for _ in 0..20 {
            deep.push_str("<x>");
        }
        for _ in 0..20 {
            deep.push_str("</x>");
        }
        deep.push_str("</nbi>");
        assert!(matches!(
            parse_page(deep.as_bytes(), &ParseLimits::default()),
            Err(PageError::Limit(_))
        ));
        let h = header(System::Matrix, Entity::Ports, 100);
        let rows = rows_of(System::Matrix, Entity::Ports);
        let bytes = write_page(&h, "utf-8", &rows[..100], &[]).unwrap();
        let tight = ParseLimits {
            max_nodes: 50,
            ..ParseLimits::default()
        };
        assert!(matches!(
            parse_page(&bytes, &tight),
            Err(PageError::Limit(_))
        ));
    }

    /// Regression: nested namespace declarations (cubic in roxmltree) and
    /// elements with very many attributes (quadratic) are refused by a
    /// linear scan before the parse; a row over `max_attributes` but under
    /// the scan's bound is still a reject of its own.
    #[test]
    fn hostile_markup_is_refused_quickly() {
        let head = "<nbi system='matrix' entity='ports' snapshot='S' offset='0' limit='1' total='1' watermark='W'>";
        let nested = format!(
            "{head}{}{}</nbi>",
            (0..20_000)
                .map(|i| format!("<p xmlns:n{i}='u'>"))
                .collect::<String>(),
            "</p>".repeat(20_000)
        );
        let wide = format!(
            "{head}<port{}/></nbi>",
            (0..100_000)
                .map(|i| format!(" a{i}='1'"))
                .collect::<String>()
        );
        let siblings = format!(
            "{head}{}</nbi>",
            (0..20_000)
                .map(|i| format!("<port xmlns:n{i}='u'/>"))
                .collect::<String>()
        );
        for page in [nested, wide, siblings] {
            let t0 = std::time::Instant::now();
            assert!(matches!(
                parse_page(page.as_bytes(), &ParseLimits::default()),
                Err(PageError::Limit(_))
            ));
            assert!(t0.elapsed() < std::time::Duration::from_secs(2));
        }
        let row = format!(
            "{head}<port dslam='D' frame='0' slot='0' port='1' state='AVAILABLE'{}/></nbi>",
            (0..40).map(|i| format!(" x{i}='1'")).collect::<String>()
        );
        let page = parse_page(row.as_bytes(), &ParseLimits::default()).unwrap();
        assert_eq!(page.rejects.len(), 1);
        let ok = format!(
            "{head}<!-- <port a='<'> --><![CDATA[<x>]]><port dslam='D>' frame='0' slot='0' port='1' state='AVAILABLE'/></nbi>"
        );
        assert_eq!(
            parse_page(ok.as_bytes(), &ParseLimits::default())
                .unwrap()
                .rows
                .len(),
            1
        );
    }

    #[test]
    fn bad_rows_are_rejected_with_reasons() {
        let xml = r#"<?xml version="1.0"?>
<nbi system="matrix" entity="ports" snapshot="S1" offset="100" limit="10" total="200" watermark="W1">
  <port dslam="EX01-D1" frame="0" slot="1" port="0" state="AVAILABLE"/>
  <port frame="0" slot="1" port="1" state="AVAILABLE"/>
  <port dslam="EX01-D1" frame="0" slot="x" port="2" state="AVAILABLE"/>
  <port dslam="EX01-D1" frame="0" slot="1" port="3" state="BROKEN"/>
  <dslam name="EX01-D9"/>
  <port dslam="EX01-D1" frame="0" slot="1" port="4" deleted="true"/>
  <port dslam="EX01-D1" frame="0" slot="1" deleted="true"/>
  <port dslam="EX01-D1" frame="0" slot="1" port="5" state="OCCUPIED" deleted="maybe"/>
  <port dslam="EX01-D1" frame="0" slot="1" port="6" state="occupied"/>
</nbi>"#;
        let page = parse_page(xml.as_bytes(), &ParseLimits::default()).unwrap();
        assert_eq!(page.elements, 9);
        assert_eq!(page.rows.len(), 2);
        assert_eq!(page.tombstones.len(), 1);
        assert_eq!(
            page.tombstones[0].key.to_string(),
            "EX01-D1/0/1/4",
            "{:?}",
            page.tombstones
        );
        let r: Vec<(u64, u32, &str)> = page
            .rejects
            .iter()
            .map(|e| (e.position, e.line, e.reason.as_str()))
            .collect();
        assert_eq!(r.len(), 6, "{r:?}");
        assert_eq!(r[0].0, 101);
        assert_eq!(r[0].1, 4);
        assert!(r[0].2.contains("dslam is missing"), "{r:?}");
        assert!(r[1].2.contains("slot=\"x\""), "{r:?}");
        assert!(r[2].2.contains("BROKEN"), "{r:?}");
        assert!(r[3].2.contains("unexpected element"), "{r:?}");
        assert!(r[4].2.contains("port is missing"), "{r:?}");
        assert!(r[5].2.contains("maybe"), "{r:?}");
        assert_eq!(page.rejects[2].key.as_deref(), Some("EX01-D1/0/1/3"));
        let Row::Port(p) = &page.rows[1] else {
            panic!("not a port")
        };
        assert_eq!(p.state, SourceState::Occupied);
    }

    #[test]
    fn other_rows_validate_values() {
        let cases = [
            (
                "dslams",
                r#"<dslam name="D" exchange="EX01" ip="10.1.999.1" model="M" technology="ADSL"/>"#,
                "IPv4",
            ),
            (
                "dslams",
                r#"<dslam name="D" exchange="EX01" ip="10.1.0.1" model="M" technology="ISDN"/>"#,
                "technology",
            ),
            (
                "exchanges",
                r#"<exchange code="EX" name="n" city="C01" popid="1" areaCode="2a"/>"#,
                "digits",
            ),
        ];
        for (entity, row, reason) in cases {
            let xml = format!(
                "<nbi system='matrix' entity='{entity}' snapshot='S' offset='0' limit='1' total='1' watermark='W'>{row}</nbi>"
            );
            let page = parse_page(xml.as_bytes(), &ParseLimits::default()).unwrap();
            assert_eq!(page.rejects.len(), 1, "{row}");
            assert!(
                page.rejects[0].reason.contains(reason),
                "{:?}",
                page.rejects
            );
        }
        let ecases = [
            (
                "vlans",
                r#"<vlan olt="O" id="4095" purpose="VOICE" state="AVAILABLE"/>"#,
                "4094",
            ),
            (
                "vlans",
                r#"<vlan olt="O" id="5" purpose="VIDEO" state="AVAILABLE"/>"#,
                "purpose",
            ),
            (
                "compounds",
                r#"<compound code="CP" name="n" exchange="EX01" zone="Z01" ponports="OLT01/0/1/x"/>"#,
                "ponports",
            ),
            (
                "ponports",
                r#"<ponport olt="O" frame="0" slot="1" port="1" maxOnts="0" state="AVAILABLE"/>"#,
                "maxOnts",
            ),
        ];
        for (entity, row, reason) in ecases {
            let xml = format!(
                "<nbi system='ematrix' entity='{entity}' snapshot='S' offset='0' limit='1' total='1' watermark='W'>{row}</nbi>"
            );
            let page = parse_page(xml.as_bytes(), &ParseLimits::default()).unwrap();
            assert_eq!(page.rejects.len(), 1, "{row}");
            assert!(
                page.rejects[0].reason.contains(reason),
                "{:?}",
                page.rejects
            );
        }
        // maxOnts defaults to 128; FTTH domain from the system.
        let xml = "<nbi system='ematrix' entity='ponports' snapshot='S' offset='0' limit='1' total='1' watermark='W'><ponport olt='O' frame='0' slot='1' port='1' state='FAULTY'/></nbi>";
        let page = parse_page(xml.as_bytes(), &ParseLimits::default()).unwrap();
        let Row::PonPort(p) = &page.rows[0] else {
            panic!("not a PON port")
        };
        assert_eq!(p.max_onts, DEFAULT_MAX_ONTS);
        let xml = "<nbi system='ematrix' entity='zones' snapshot='S' offset='0' limit='1' total='1' watermark='W'><zone code='Z1' name='n' sector='S'/></nbi>";
        let page = parse_page(xml.as_bytes(), &ParseLimits::default()).unwrap();
        assert_eq!(page.rows[0].key().to_string(), "FTTH:Z1");
    }

    #[test]
    fn names_and_keys() {
        for e in Entity::ALL {
            assert_eq!(Entity::parse(e.as_str()), Some(e));
        }
        assert_eq!(System::parse("EMatrix"), Some(System::Ematrix));
        assert!(System::Matrix.serves(Entity::Ports));
        assert!(!System::Matrix.serves(Entity::Onts));
        assert_eq!(System::Ematrix.entities().len(), 8);
        assert_eq!(
            declared_encoding(b"<?xml version=\"1.0\" encoding = 'gbk' ?><a/>"),
            Some(&b"gbk"[..])
        );
        assert_eq!(declared_encoding(b"<a/>"), None);
    }
}
