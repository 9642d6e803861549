//! Value formats of the contract (§3.2): pure functions, no I/O.

use std::net::Ipv4Addr;
use std::str::FromStr;

/// Reads a speed: kbit/s as a positive integer, or a positive number with a
/// `K`, `M` or `G` suffix (any case), rounded to whole kbit/s.
///
/// ```
/// use im_core::intake::parse_speed;
/// assert_eq!(parse_speed("16M"), Some(16384));
/// assert_eq!(parse_speed("1.5m"), Some(1536));
/// assert_eq!(parse_speed("512"), Some(512));
/// assert_eq!(parse_speed("0"), None);
/// assert_eq!(parse_speed("fast"), None);
/// ```
pub fn parse_speed(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1.0),
        b'm' | b'M' => (&s[..s.len() - 1], 1024.0),
        b'g' | b'G' => (&s[..s.len() - 1], 1024.0 * 1024.0),
        _ => {
            if !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 12 {
                return None;
            }
            return s.parse::<u64>().ok().filter(|v| *v > 0);
        }
    };
    let num = num.trim_end();
    if num.is_empty()
        || num.len() > 15
        || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || num.bytes().filter(|b| *b == b'.').count() > 1
        || num.starts_with('.')
        || num.ends_with('.')
    {
        return None;
    }
    let v: f64 = num.parse().ok()?;
    let kbps = (v * mult).round();
    if !(1.0..=1e12).contains(&kbps) {
        return None;
    }
    Some(kbps as u64)
}

/// Reads a VLAN id, 1–4094.
pub fn parse_vlan(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|v| (1..=4094).contains(v))
}

/// Reads a non-negative integer (frame, slot, port).
pub fn parse_index(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether `s` is a dotted IPv4 address.
pub fn is_ipv4(s: &str) -> bool {
    Ipv4Addr::from_str(s).is_ok()
}

/// Whether `s` is a dotted IPv4 subnet mask (contiguous ones).
pub fn is_mask(s: &str) -> bool {
    match Ipv4Addr::from_str(s) {
        Ok(a) => {
            let inv = !u32::from(a);
            inv & inv.wrapping_add(1) == 0
        }
        Err(_) => false,
    }
}

/// Reads an ONT serial: four letters and eight hex digits, or sixteen hex
/// digits (the letters as ASCII hex); returns the first form, upper-case.
///
/// ```
/// use im_core::intake::parse_ont_sn;
/// assert_eq!(parse_ont_sn("hwtc1a2b3c4d").as_deref(), Some("HWTC1A2B3C4D"));
/// assert_eq!(parse_ont_sn("485754431A2B3C4D").as_deref(), Some("HWTC1A2B3C4D"));
/// assert_eq!(parse_ont_sn("HWTC1A2B3C4"), None);
/// ```
pub fn parse_ont_sn(s: &str) -> Option<String> {
    let b = s.as_bytes();
    match b.len() {
        12 if b[..4].iter().all(u8::is_ascii_alphabetic)
            && b[4..].iter().all(u8::is_ascii_hexdigit) =>
        {
            Some(s.to_ascii_uppercase())
        }
        16 if b.iter().all(u8::is_ascii_hexdigit) => {
            let mut vendor = String::with_capacity(4);
            for pair in b[..8].chunks(2) {
                let hex = std::str::from_utf8(pair).ok()?;
                let byte = u8::from_str_radix(hex, 16).ok()?;
                if !byte.is_ascii_alphabetic() {
                    return None;
                }
                vendor.push(byte.to_ascii_uppercase() as char);
            }
            Some(format!("{vendor}{}", s[8..].to_ascii_uppercase()))
        }
        _ => None,
    }
}

/// Whether `s` is a well-formed flowId: 1–64 of `[A-Za-z0-9_.-]`.
pub fn is_flow_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Longest text value accepted, in characters.
pub const MAX_TEXT: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds() {
        assert_eq!(parse_speed("2G"), Some(2 * 1024 * 1024));
        assert_eq!(parse_speed("16 M"), Some(16384));
        assert_eq!(parse_speed("100k"), Some(100));
        assert_eq!(parse_speed("0.0001K"), None);
        assert_eq!(parse_speed("-5"), None);
        assert_eq!(parse_speed("1.5"), None);
        assert_eq!(parse_speed("M"), None);
        assert_eq!(parse_speed("1..5M"), None);
        assert_eq!(parse_speed("99999999999999999999"), None);
    }

    #[test]
    fn masks_and_ips() {
        assert!(is_mask("255.255.255.0"));
        assert!(is_mask("255.255.255.255"));
        assert!(!is_mask("255.0.255.0"));
        assert!(is_ipv4("10.1.0.1"));
        assert!(!is_ipv4("10.1.0"));
        assert!(!is_ipv4("10.1.0.256"));
    }

    #[test]
    fn vlans_and_indexes() {
        assert_eq!(parse_vlan("4094"), Some(4094));
        assert_eq!(parse_vlan("0"), None);
        assert_eq!(parse_vlan("4095"), None);
        assert_eq!(parse_index("0"), Some(0));
        assert_eq!(parse_index("-1"), None);
    }

    #[test]
    fn ont_serials() {
        assert_eq!(
            parse_ont_sn("0000000012345678"),
            None,
            "vendor bytes must be letters"
        );
        assert_eq!(parse_ont_sn("HWTC1A2B3C4G"), None);
    }

    #[test]
    fn flow_ids() {
        assert!(is_flow_id("17808971600060235"));
        assert!(is_flow_id("a.b-c_d"));
        assert!(!is_flow_id(""));
        assert!(!is_flow_id("a b"));
        assert!(!is_flow_id(&"x".repeat(65)));
    }
}
