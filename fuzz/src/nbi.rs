//! The NBI page parser's checks, shared by the `nbi_page` cargo-fuzz
//! target and the proptest properties in
//! `im-sync/tests/nbi_page_properties.rs`.

use im_sync::nbi::wire::{Page, PageError, ParseLimits, RowKey, parse_page, write_page};

/// Limits the targets try besides the defaults: small enough that inputs
/// of a few KiB reach every bound.
pub const TIGHT: ParseLimits = ParseLimits {
    max_nodes: 64,
    max_depth: 3,
    max_attributes: 6,
};

/// Parses `bytes` under the default and the tight limits and checks what
/// every page read must satisfy:
/// - every row element is counted once (rows + tombstones + rejects);
/// - rows and tombstones are of the header's entity;
/// - rejects come in document order, at positions from the page's offset;
/// - the rows and tombstones read, written back with the simulators'
///   writer, read back the same (reading is a fixed point).
///
/// Returns the page read under the default limits (or its error).
pub fn check_page(bytes: &[u8]) -> Result<Result<Page, PageError>, String> {
    let page = parse_page(bytes, &ParseLimits::default());
    if let Ok(p) = &page {
        check_read(p)?;
    }
    // Under tight limits a page may fail or reject more rows, never panic
    // or break the invariants.
    if let Ok(p) = parse_page(bytes, &TIGHT) {
        check_read(&p)?;
    }
    Ok(page)
}

fn check_read(p: &Page) -> Result<(), String> {
    let n = (p.rows.len() + p.tombstones.len() + p.rejects.len()) as u64;
    if n != p.elements {
        return Err(format!("{} row elements counted as {n}", p.elements));
    }
    let entity = p.header.entity;
    if let Some(r) = p.rows.iter().find(|r| r.entity() != entity) {
        return Err(format!("row {r:?} in a page of {entity}"));
    }
    if let Some(t) = p
        .tombstones
        .iter()
        .find(|t| t.entity != entity || t.key.entity() != entity)
    {
        return Err(format!("tombstone {t:?} in a page of {entity}"));
    }
    let mut last = None;
    for r in &p.rejects {
        if r.position < p.header.offset || last.is_some_and(|l| r.position <= l) || r.line == 0 {
            return Err(format!("reject out of order or place: {r:?}"));
        }
        last = Some(r.position);
    }
    let keys: Vec<RowKey> = p.tombstones.iter().map(|t| t.key.clone()).collect();
    let bytes = write_page(&p.header, "utf-8", &p.rows, &keys)
        .map_err(|e| format!("cannot write back what was read: {e}"))?;
    let back = parse_page(&bytes, &ParseLimits::default())
        .map_err(|e| format!("what was read, written back, does not read: {e}"))?;
    if back.header != p.header || back.rows != p.rows || back.tombstones != p.tombstones {
        return Err(format!(
            "read {p:?}\nwritten back as {}\nread again as {back:?}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    if !back.rejects.is_empty() {
        return Err(format!(
            "rows written back are rejected: {:?}",
            back.rejects
        ));
    }
    Ok(())
}
