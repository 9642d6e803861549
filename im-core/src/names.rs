//! Name matching of the contract: field names and enumerated values are
//! compared without regard to case, spaces, `_` or `-`.

/// The canonical spelling used to compare a field name or an enumerated value:
/// lower-case, with spaces (any white space), `_` and `-` removed.
///
/// ```
/// use im_core::names::canonical;
/// assert_eq!(canonical("ONT SN"), "ontsn");
/// assert_eq!(canonical("ont_sn"), "ontsn");
/// assert_eq!(canonical("IP-Phone"), "ipphone");
/// ```
pub fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_whitespace() || c == '_' || c == '-' {
            continue;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Whether two names are the same field (or the same enumerated value).
///
/// ```
/// assert!(im_core::names::same("Dslamname", "DSLAM_NAME"));
/// ```
pub fn same(a: &str, b: &str) -> bool {
    let mut x = a
        .chars()
        .filter(|c| !(c.is_whitespace() || *c == '_' || *c == '-'))
        .flat_map(char::to_lowercase);
    let mut y = b
        .chars()
        .filter(|c| !(c.is_whitespace() || *c == '_' || *c == '-'))
        .flat_map(char::to_lowercase);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p == q => continue,
            _ => return false,
        }
    }
}
