//! The `nbi_page` fuzz target's inputs as properties (same harness,
//! `fuzz/src/nbi.rs`): the NBI page parser never panics on any bytes or on
//! mutated pages, keeps its invariants, and finishes within a time bound;
//! and rows of every entity with any XML-legal text, written by the
//! simulators' writer in any charset it writes, read back as written.

#[path = "../../fuzz/src/nbi.rs"]
mod harness;

use im_core::model::{
    City, Compound, Dslam, Exchange, Olt, Ont, PonPort, PonPortRef, Port, Sector, SourceState,
    Technology, Vlan, VlanPurpose, Zone,
};
use im_sync::nbi::wire::{
    Entity, PageError, PageHeader, ParseLimits, Row, RowKey, System, parse_page, write_page,
};
use proptest::prelude::*;
use std::time::{Duration, Instant};

const CASE_BOUND: Duration = Duration::from_secs(5);

fn check(bytes: &[u8]) -> Result<Result<im_sync::nbi::wire::Page, PageError>, TestCaseError> {
    let t0 = Instant::now();
    let r = harness::check_page(bytes).map_err(|e| {
        TestCaseError::fail(format!(
            "{e}\ninput: {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(2000)])
        ))
    })?;
    let took = t0.elapsed();
    prop_assert!(took < CASE_BOUND, "{} bytes took {took:?}", bytes.len());
    Ok(r)
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Non-empty XML-legal text without leading or trailing white space (the
/// reader trims values and refuses empty ones).
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => any::<char>().prop_filter("XML char", |c| is_xml_char(*c)),
            3 => prop::sample::select(vec![
                '<', '>', '&', '"', '\'', '/', '\r', '\n', '\t', ' ', 'é', 'م', '开', '単', '€',
                '\u{85}', '\u{3000}', '\u{FFFD}', '😀', 'A', '0',
            ]),
        ],
        1..16,
    )
    .prop_map(|v| v.into_iter().collect::<String>().trim().to_string())
    .prop_filter("non-empty", |s| !s.is_empty())
}

/// An OLT name usable in a compound's `ponports` list (no ASCII white
/// space: the list is split on it).
fn olt_name() -> impl Strategy<Value = String> {
    text().prop_map(|s| s.split_ascii_whitespace().collect::<Vec<_>>().join("_"))
}

fn state() -> impl Strategy<Value = SourceState> {
    prop::sample::select(SourceState::ALL.to_vec())
}

fn pon() -> impl Strategy<Value = PonPortRef> {
    (olt_name(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(olt, frame, slot, port)| {
        PonPortRef {
            olt,
            frame,
            slot,
            port,
        }
    })
}

fn ip() -> impl Strategy<Value = String> {
    any::<[u8; 4]>().prop_map(|b| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]))
}

fn row(system: System, entity: Entity) -> BoxedStrategy<Row> {
    let domain = system.domain();
    match entity {
        Entity::Sectors => (text(), text())
            .prop_map(move |(code, name)| Row::Sector(Sector { domain, code, name }))
            .boxed(),
        Entity::Zones => (text(), text(), text())
            .prop_map(move |(code, name, sector)| {
                Row::Zone(Zone {
                    domain,
                    code,
                    name,
                    sector,
                })
            })
            .boxed(),
        Entity::Cities => (text(), text(), text())
            .prop_map(move |(code, name, zone)| {
                Row::City(City {
                    domain,
                    code,
                    name,
                    zone,
                })
            })
            .boxed(),
        Entity::Exchanges => (text(), text(), text(), text(), "[0-9]{1,6}")
            .prop_map(|(code, name, city, popid, area_code)| {
                Row::Exchange(Exchange {
                    code,
                    name,
                    city,
                    popid,
                    area_code,
                })
            })
            .boxed(),
        Entity::Dslams => (
            text(),
            text(),
            ip(),
            text(),
            prop::sample::select(Technology::ALL.to_vec()),
        )
            .prop_map(|(name, exchange, ip, model, technology)| {
                Row::Dslam(Dslam {
                    name,
                    exchange,
                    ip,
                    model,
                    technology,
                })
            })
            .boxed(),
        Entity::Ports => (text(), any::<u32>(), any::<u32>(), any::<u32>(), state())
            .prop_map(|(dslam, frame, slot, port, state)| {
                Row::Port(Port {
                    dslam,
                    frame,
                    slot,
                    port,
                    state,
                })
            })
            .boxed(),
        Entity::Olts => (text(), text(), ip(), text())
            .prop_map(|(name, exchange, ip, model)| {
                Row::Olt(Olt {
                    name,
                    exchange,
                    ip,
                    model,
                })
            })
            .boxed(),
        Entity::PonPorts => (pon(), 1u32.., state())
            .prop_map(|(at, max_onts, state)| {
                Row::PonPort(PonPort {
                    at,
                    max_onts,
                    state,
                })
            })
            .boxed(),
        Entity::Compounds => (
            text(),
            text(),
            text(),
            text(),
            prop::collection::vec(pon(), 0..4),
        )
            .prop_map(|(code, name, exchange, zone, mut pon_ports)| {
                // The reader drops repeated PON ports.
                let mut seen = Vec::new();
                pon_ports.retain(|p| {
                    let new = !seen.contains(p);
                    seen.push(p.clone());
                    new
                });
                Row::Compound(Compound {
                    code,
                    name,
                    exchange,
                    zone,
                    pon_ports,
                })
            })
            .boxed(),
        Entity::Onts => (text(), pon(), any::<u32>(), text(), state())
            .prop_map(|(serial, at, ont_id, model, state)| {
                Row::Ont(Ont {
                    serial,
                    at,
                    ont_id,
                    model,
                    state,
                })
            })
            .boxed(),
        Entity::Vlans => (
            text(),
            1u16..=4094,
            prop::sample::select(VlanPurpose::ALL.to_vec()),
            state(),
        )
            .prop_map(|(olt, id, purpose, state)| {
                Row::Vlan(Vlan {
                    olt,
                    id,
                    purpose,
                    state,
                })
            })
            .boxed(),
    }
}

/// A system, one of its entities, a header, rows and tombstone keys.
fn page() -> impl Strategy<Value = (PageHeader, Vec<Row>, Vec<RowKey>)> {
    let pick = prop::sample::select(
        System::ALL
            .iter()
            .flat_map(|s| s.entities().iter().map(move |e| (*s, *e)))
            .collect::<Vec<_>>(),
    );
    pick.prop_flat_map(|(system, entity)| {
        (
            text(),
            prop::option::of(text()),
            any::<u32>(),
            prop::collection::vec(row(system, entity), 0..6),
            prop::collection::vec(row(system, entity), 0..3),
        )
            .prop_map(move |(snapshot, watermark, offset, rows, gone)| {
                let header = PageHeader {
                    system,
                    entity,
                    snapshot,
                    offset: u64::from(offset),
                    limit: 5000,
                    total: u64::from(offset) + (rows.len() + gone.len()) as u64,
                    watermark: watermark.unwrap_or_default(),
                };
                let keys = gone.iter().map(Row::key).collect();
                (header, rows, keys)
            })
    })
}

/// Charsets the simulators write (`gb2312` is written as GBK).
const CHARSETS: [&str; 6] = [
    "utf-8",
    "gbk",
    "gb2312",
    "gb18030",
    "ISO-8859-1",
    "windows-1256",
];

/// Mutations of a well-formed page.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(u16),
    Flip(u16, u8),
    Insert(u16, &'static str),
    Nest(usize),
    Attributes(usize),
    Declare(&'static str),
}

fn any_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0u16..1000).prop_map(Mutation::Truncate),
        (0u16..1000, any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (
            0u16..1000,
            prop::sample::select(vec![
                "<",
                ">",
                "\"",
                "'",
                "&",
                "&#0;",
                "&#x110000;",
                "&bogus;",
                "<!--",
                "-->",
                "<![CDATA[x]]>",
                "<?pi x?>",
                "<x/>",
                "</nbi>",
                "<nbi>",
                " deleted=\"true\"",
                " deleted=\"maybe\"",
                " code=\"dup\"",
                "<!DOCTYPE nbi [<!ENTITY a 'b'>]>",
                "\u{0}",
                "\u{FEFF}",
                " xmlns:p=\"u\"",
                " p:code=\"x\"",
            ])
        )
            .prop_map(|(p, s)| Mutation::Insert(p, s)),
        (1usize..50).prop_map(Mutation::Nest),
        (1usize..100).prop_map(Mutation::Attributes),
        prop::sample::select(vec![
            "utf-16",
            "UTF-16BE",
            "klingon",
            "gbk",
            "latin1",
            "",
            "replacement",
            "utf-8"
        ])
        .prop_map(Mutation::Declare),
    ]
}

fn at(len: usize, per_mille: u16) -> usize {
    len * usize::from(per_mille) / 1000
}

fn mutate(page: &[u8], m: &Mutation) -> Vec<u8> {
    let mut b = page.to_vec();
    match m {
        Mutation::Truncate(p) => b.truncate(at(b.len(), *p)),
        Mutation::Flip(p, v) => {
            if !b.is_empty() {
                let i = at(b.len(), *p).min(b.len() - 1);
                b[i] = *v;
            }
        }
        Mutation::Insert(p, s) => {
            let i = at(b.len(), *p);
            b.splice(i..i, s.bytes());
        }
        Mutation::Nest(n) => {
            if let Some(i) = b.windows(4).position(|w| w == b"\">\n ") {
                let nest = format!("{}{}", "<r>".repeat(*n), "</r>".repeat(*n));
                b.splice(i + 3..i + 3, nest.into_bytes());
            }
        }
        Mutation::Attributes(n) => {
            if let Some(i) = b.windows(4).position(|w| w == b"/>\n ") {
                let attrs: String = (0..*n).map(|k| format!(" z{k}=\"{k}\"")).collect();
                b.splice(i..i, attrs.into_bytes());
            }
        }
        Mutation::Declare(label) => {
            if let Some(end) = b.windows(2).position(|w| w == b"?>") {
                let decl = format!("<?xml version=\"1.0\" encoding=\"{label}\"");
                b.splice(..end, decl.into_bytes());
            }
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = check(&bytes)?;
    }

    #[test]
    fn any_text_in_a_page_never_panics(body in "(<[a-z]{1,8}( [a-z]{1,6}=\"[^\"<]{0,12}\"){0,6}/?>|</[a-z]{1,8}>|[^<]{0,20}){0,30}") {
        let page = format!(
            "<nbi system=\"matrix\" entity=\"ports\" snapshot=\"S\" offset=\"0\" limit=\"1\" total=\"1\" watermark=\"W\">{body}</nbi>"
        );
        let _ = check(page.as_bytes())?;
    }

    #[test]
    fn mutated_pages_never_panic(
        (header, rows, keys) in page(),
        charset in 0usize..CHARSETS.len(),
        mutations in prop::collection::vec(any_mutation(), 1..4),
    ) {
        let bytes = write_page(&header, CHARSETS[charset], &rows, &keys)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut b = bytes;
        for m in &mutations {
            b = mutate(&b, m);
            let _ = check(&b)?;
        }
    }

    /// Rows written by the simulators' writer read back as written, in
    /// every charset it writes (what the charset cannot carry travels as
    /// numeric references).
    #[test]
    fn written_rows_read_back((header, rows, keys) in page(), charset in 0usize..CHARSETS.len()) {
        let label = CHARSETS[charset];
        let bytes = write_page(&header, label, &rows, &keys)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let page = match check(&bytes)? {
            Ok(p) => p,
            Err(e) => return Err(TestCaseError::fail(format!("{label}: {e}"))),
        };
        prop_assert_eq!(&page.header, &header, "{}", label);
        prop_assert_eq!(&page.rows, &rows, "{}", label);
        let back: Vec<RowKey> = page.tombstones.iter().map(|t| t.key.clone()).collect();
        prop_assert_eq!(&back, &keys, "{}", label);
        prop_assert!(page.rejects.is_empty(), "{}: {:?}", label, page.rejects);
        prop_assert_eq!(page.elements, (rows.len() + keys.len()) as u64);
    }
}

/// Big hostile pages: answered (an error, or rows and rejects) within the
/// time bound.
#[test]
fn big_hostile_pages_are_answered_in_time() {
    let head = "<nbi system=\"matrix\" entity=\"ports\" snapshot=\"S\" offset=\"0\" limit=\"1\" total=\"1\" watermark=\"W\">";
    let mib = 1024 * 1024;
    let cases: Vec<(&str, String)> = vec![
        (
            "nested 100,000 deep",
            format!(
                "{head}{}{}</nbi>",
                "<p>".repeat(100_000),
                "</p>".repeat(100_000)
            ),
        ),
        (
            "100,000 attributes on a row",
            format!(
                "{head}<port{}/></nbi>",
                (0..100_000)
                    .map(|i| format!(" a{i}=\"1\""))
                    .collect::<String>()
            ),
        ),
        (
            "nested namespace declarations",
            format!(
                "{head}{}{}</nbi>",
                (0..10_000)
                    .map(|i| format!("<p xmlns:n{i}=\"u\">"))
                    .collect::<String>(),
                "</p>".repeat(10_000)
            ),
        ),
        (
            "many rows",
            format!(
                "{head}{}</nbi>",
                "<port dslam=\"D\" frame=\"0\" slot=\"0\" port=\"0\" state=\"AVAILABLE\"/>"
                    .repeat(mib / 70)
            ),
        ),
        (
            "billion laughs",
            format!(
                "<!DOCTYPE nbi [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]>{head}</nbi>"
            ),
        ),
    ];
    for (name, page) in cases {
        let t0 = Instant::now();
        let r = harness::check_page(page.as_bytes());
        let took = t0.elapsed();
        assert!(r.is_ok(), "{name}: {r:?}");
        assert!(took < CASE_BOUND * 2, "{name}: {took:?}");
        let _ = parse_page(page.as_bytes(), &ParseLimits::default());
    }
}
