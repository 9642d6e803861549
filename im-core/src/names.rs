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
    if name.is_ascii() {
        // The usual case (every contract name is ASCII): byte by byte.
        let mut out = String::with_capacity(name.len());
        out.extend(
            name.bytes()
                .filter(|b| !ignored_ascii(*b))
                .map(|b| char::from(b.to_ascii_lowercase())),
        );
        return out;
    }
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
    if a.is_ascii() && b.is_ascii() {
        // The usual case, without decoding characters: this runs for every
        // field of every call.
        let mut x = a.bytes().filter(|b| !ignored_ascii(*b));
        let mut y = b.bytes().filter(|b| !ignored_ascii(*b));
        loop {
            match (x.next(), y.next()) {
                (None, None) => return true,
                (Some(p), Some(q)) if p.eq_ignore_ascii_case(&q) => continue,
                _ => return false,
            }
        }
    }
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

/// The canonical form of a short ASCII name written into `buf`, without
/// allocating; `None` when the name is not ASCII or longer than `buf`
/// (then use [`canonical`]).
pub(crate) fn canonical_in<'b>(name: &str, buf: &'b mut [u8; 32]) -> Option<&'b str> {
    if name.len() > buf.len() || !name.is_ascii() {
        return None;
    }
    let mut n = 0;
    for b in name.bytes().filter(|b| !ignored_ascii(*b)) {
        buf[n] = b.to_ascii_lowercase();
        n += 1;
    }
    std::str::from_utf8(&buf[..n]).ok()
}

/// The ASCII bytes a name comparison skips: white space (as
/// [`char::is_whitespace`] has it for ASCII), `_` and `-`.
fn ignored_ascii(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' | b'_' | b'-'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ASCII fast paths agree with the general rule on every ASCII byte.
    #[test]
    fn ascii_fast_paths_agree_with_the_char_rule() {
        for b in 0u8..128 {
            let c = char::from(b);
            assert_eq!(
                ignored_ascii(b),
                c.is_whitespace() || c == '_' || c == '-',
                "byte {b}"
            );
        }
        for (a, b, same_name) in [
            ("ONT SN", "ont_sn", true),
            ("Dslam-Name", "DSLAMNAME", true),
            ("a\u{0b}b", "AB", true),
            ("UserName", "User", false),
            ("", " _-", true),
            ("Ünïcode", "ünï_code", true),
            ("Ünïcode", "unicode", false),
        ] {
            assert_eq!(same(a, b), same_name, "{a:?} vs {b:?}");
            assert_eq!(canonical(a) == canonical(b), same_name, "{a:?} vs {b:?}");
            let mut buf = [0u8; 32];
            if let Some(c) = canonical_in(a, &mut buf) {
                assert_eq!(c, canonical(a), "{a:?}");
            }
        }
    }
}
