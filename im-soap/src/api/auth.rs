//! Authentication of the operators' API: bearer sessions and HTTP Basic.
//!
//! - Sessions: `POST /session` with Basic credentials gives a random token
//!   (32 bytes from the operating system's CSPRNG, hex). Only its BLAKE3
//!   hash is kept, in memory, with an expiry; a lookup hashes the presented
//!   token, so no token is ever compared byte by byte. Logout drops it.
//! - Basic on every call: the first call checks the password through
//!   `Im::login` (one login-log row); later calls within the cache time
//!   compare a keyed BLAKE3 tag of the credentials (random per-process key;
//!   the password is never kept) in constant time instead of running
//!   Argon2 again. The cache is dropped whenever an account changes through
//!   the API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest Basic credential accepted (decoded).
const MAX_BASIC: usize = 2048;

/// An opened session.
#[derive(Debug, Clone)]
struct Session {
    account: String,
    expires: Instant,
}

/// Bearer sessions, by token hash.
pub(crate) struct Sessions {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<[u8; 32], Session>>,
}

/// A new session's token (never stored).
pub(crate) struct NewToken(pub(crate) String);

impl Sessions {
    pub(crate) fn new(ttl: Duration, max: usize) -> Sessions {
        Sessions {
            ttl,
            max: max.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The time-to-live of a session.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Opens a session for `account`; `None` when the random source fails
    /// or too many sessions are open.
    pub(crate) fn open(&self, account: &str) -> Option<NewToken> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).ok()?;
        let token = hex(&raw);
        let now = Instant::now();
        let mut map = self.map.lock().ok()?;
        if map.len() >= self.max {
            map.retain(|_, s| s.expires > now);
            if map.len() >= self.max {
                return None;
            }
        }
        map.insert(
            hash(&token),
            Session {
                account: account.to_string(),
                expires: now + self.ttl,
            },
        );
        Some(NewToken(token))
    }

    /// The account of a live session.
    pub(crate) fn account(&self, token: &str) -> Option<String> {
        let key = hash(token);
        let mut map = self.map.lock().ok()?;
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.account.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Closes a session; returns its account.
    pub(crate) fn close(&self, token: &str) -> Option<String> {
        self.map
            .lock()
            .ok()?
            .remove(&hash(token))
            .map(|s| s.account)
    }

    /// Closes every session of `account` (disabled, roles changed).
    pub(crate) fn close_all_of(&self, account: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, s| !s.account.eq_ignore_ascii_case(account));
        }
    }
}

fn hash(token: &str) -> [u8; 32] {
    blake3::hash(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(D[usize::from(b >> 4)]));
        s.push(char::from(D[usize::from(b & 15)]));
    }
    s
}

struct Verified {
    tag: blake3::Hash,
    account: String,
    expires: Instant,
}

/// Recently verified Basic credentials, by lower-cased login.
pub(crate) struct BasicCache {
    key: [u8; 32],
    ttl: Duration,
    map: Mutex<HashMap<String, Verified>>,
}

impl BasicCache {
    pub(crate) fn new(ttl: Duration) -> BasicCache {
        let mut key = [0u8; 32];
        // Without a random key, nothing is cached (every call checks).
        let ttl = if getrandom::fill(&mut key).is_ok() {
            ttl
        } else {
            Duration::ZERO
        };
        BasicCache {
            key,
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn tag(&self, login: &str, password: &str) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&(login.len() as u64).to_le_bytes());
        h.update(login.as_bytes());
        h.update(password.as_bytes());
        h.finalize()
    }

    /// The account, when these credentials were verified recently.
    pub(crate) fn lookup(&self, login: &str, password: &str) -> Option<String> {
        if self.ttl.is_zero() {
            return None;
        }
        let key = login.to_lowercase();
        let tag = self.tag(&key, password);
        let map = self.map.lock().ok()?;
        let v = map.get(&key)?;
        // `blake3::Hash` compares in constant time.
        (v.expires > Instant::now() && v.tag == tag).then(|| v.account.clone())
    }

    /// Remembers verified credentials.
    pub(crate) fn insert(&self, login: &str, password: &str, account: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let key = login.to_lowercase();
        let tag = self.tag(&key, password);
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= 4096 {
                let now = Instant::now();
                map.retain(|_, v| v.expires > now);
                if map.len() >= 4096 {
                    map.clear();
                }
            }
            map.insert(
                key,
                Verified {
                    tag,
                    account: account.to_string(),
                    expires: Instant::now() + self.ttl,
                },
            );
        }
    }

    /// Forgets everything (an account changed).
    pub(crate) fn clear(&self) {
        if let Ok(mut map) = self.map.lock() {
            map.clear();
        }
    }
}

/// Credentials presented in an `Authorization` header.
#[derive(PartialEq, Eq)]
pub(crate) enum Presented {
    /// `Basic` login and password.
    Basic(String, String),
    /// `Bearer` token.
    Bearer(String),
    /// None, or a scheme or encoding not understood.
    None,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Basic(l, _) => write!(f, "Basic({l:?}, <redacted>)"),
            Presented::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Presented::None => f.write_str("None"),
        }
    }
}

/// Reads an `Authorization` header value.
pub(crate) fn presented(header: Option<&str>) -> Presented {
    let Some(h) = header.map(str::trim) else {
        return Presented::None;
    };
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() && rest.len() <= 256 {
        return Presented::Bearer(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic")
        && let Some(bytes) = base64_decode(rest)
        && bytes.len() <= MAX_BASIC
        && let Ok(text) = String::from_utf8(bytes)
        && let Some((l, p)) = text.split_once(':')
    {
        return Presented::Basic(l.to_string(), p.to_string());
    }
    Presented::None
}

/// Decodes standard base64 (with or without padding); `None` when malformed.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let s = s.trim().trim_end_matches('=').as_bytes();
    if s.len() > MAX_BASIC * 2 || s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(
            base64_decode("YWRtaW46czNjcmV0").as_deref(),
            Some(&b"admin:s3cret"[..])
        );
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode("YWI=").as_deref(), Some(&b"ab"[..]));
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
        assert_eq!(base64_decode("Y"), None);
        assert_eq!(base64_decode("Y!=="), None);
    }

    #[test]
    fn headers() {
        assert_eq!(
            presented(Some("Basic YWRtaW46czNjcmV0")),
            Presented::Basic("admin".into(), "s3cret".into())
        );
        assert_eq!(
            presented(Some("bearer abc")),
            Presented::Bearer("abc".into())
        );
        assert_eq!(presented(Some("Basic !!!")), Presented::None);
        assert_eq!(presented(Some("Digest x")), Presented::None);
        assert_eq!(presented(None), Presented::None);
        assert!(!format!("{:?}", presented(Some("Basic YWRtaW46czNjcmV0"))).contains("s3cret"));
    }

    #[test]
    fn sessions_open_look_up_and_close() {
        let s = Sessions::new(Duration::from_secs(60), 2);
        let t = s.open("ops1").expect("token");
        assert_eq!(t.0.len(), 64);
        assert_eq!(s.account(&t.0).as_deref(), Some("ops1"));
        assert_eq!(s.account("nope"), None);
        let _second = s.open("ops2").expect("token");
        assert!(s.open("ops3").is_none(), "bounded");
        assert_eq!(s.close(&t.0).as_deref(), Some("ops1"));
        assert_eq!(s.account(&t.0), None);
        let expired = Sessions::new(Duration::ZERO, 4);
        let t = expired.open("x").expect("token");
        assert_eq!(expired.account(&t.0), None);
    }

    #[test]
    fn basic_cache() {
        let c = BasicCache::new(Duration::from_secs(60));
        assert_eq!(c.lookup("Admin", "pw"), None);
        c.insert("Admin", "pw", "admin");
        assert_eq!(c.lookup("admin", "pw").as_deref(), Some("admin"));
        assert_eq!(c.lookup("admin", "other"), None);
        c.clear();
        assert_eq!(c.lookup("admin", "pw"), None);
    }
}
