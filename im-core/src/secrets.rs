//! Values protected at rest, and keyed hashes, all from one master key.
//!
//! A [`Secrets`] holds three keys derived from a 32-byte master key with
//! BLAKE3's key derivation, one per purpose, so that no output of one
//! purpose can be mistaken for or help attack another:
//!
//! | purpose | derivation context | used by |
//! |---|---|---|
//! | encryption of stored values | `im-core 2026 value encryption` | [`Secrets::encrypt`], [`Secrets::decrypt`] |
//! | content fingerprints | `im-core 2026 content fingerprint` | [`Secrets::fingerprint`] |
//! | verified-credential cache | `im-core 2026 credential cache` | [`Secrets::credential_tag`] |
//!
//! The master key lives in a key file ([`Secrets::load_or_create`]): 64
//! hexadecimal digits and a newline, mode `0600`, created on first use.
//! Losing the file makes every encrypted value unreadable and every stored
//! fingerprint unmatchable, so back it up with the database (but not in the
//! same place).
//!
//! Encrypted values are `version (1 byte) ‖ nonce (24 bytes) ‖ ciphertext ‖
//! tag (16 bytes)`, XChaCha20-Poly1305 with a unique nonce (a keyed hash
//! of a per-process random prefix and a counter); the version byte is
//! authenticated too.
//!
//! ```
//! use im_core::secrets::Secrets;
//! let s = Secrets::from_key([7; 32]);
//! let blob = s.encrypt("s3cret");
//! assert_eq!(s.decrypt(&blob).unwrap(), "s3cret");
//! assert!(Secrets::from_key([8; 32]).decrypt(&blob).is_err());
//! ```

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Length of the master key in bytes.
pub const KEY_LEN: usize = 32;
/// Format version byte at the start of every encrypted value.
pub const BLOB_VERSION: u8 = 1;
/// Length of the nonce in an encrypted value.
pub const NONCE_LEN: usize = 24;
/// Length of the authentication tag in an encrypted value.
pub const TAG_LEN: usize = 16;
/// Shortest encrypted value (that of the empty string).
pub const MIN_BLOB_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

const CTX_ENCRYPTION: &str = "im-core 2026 value encryption";
const CTX_FINGERPRINT: &str = "im-core 2026 content fingerprint";
const CTX_CREDENTIAL: &str = "im-core 2026 credential cache";
const CTX_NONCE: &str = "im-core 2026 nonce";

/// Longest key file accepted before reading it (64 hex digits plus white
/// space); anything longer is not a key file.
const MAX_KEY_FILE_LEN: u64 = 256;

/// What went wrong with the key file or an encrypted value. No message
/// ever contains key material or a decrypted value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key file (or its directory) could not be read, created or written.
    #[error("key file {}: cannot {op}: {source}", path.display())]
    Io {
        /// The key file (or its directory).
        path: PathBuf,
        /// What was being done (`read`, `create`, `write`, …).
        op: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file exists but does not hold a key; it is never replaced.
    #[error("key file {}: {problem} (the file is left as it is; restore it from a backup, or move it away to create a new key, which makes existing encrypted values unreadable)", path.display())]
    KeyFormat {
        /// The key file.
        path: PathBuf,
        /// What is wrong (lengths and positions only, never content).
        problem: String,
    },
    /// The operating system gave no random bytes for a new key.
    #[error("no random bytes from the operating system: {0}")]
    Random(String),
    /// An encrypted value is shorter than any valid one.
    #[error("encrypted value is truncated: {len} bytes, at least {MIN_BLOB_LEN} needed")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// An encrypted value starts with an unknown format version.
    #[error("encrypted value has unknown format version {0}")]
    UnknownVersion(u8),
    /// Authentication failed: a different key, or damaged data.
    #[error("encrypted value cannot be decrypted: wrong key or damaged data")]
    Decrypt,
    /// The value decrypted but is not UTF-8 text.
    #[error("decrypted value is not UTF-8 text")]
    NotUtf8,
}

/// The keys derived from one master key. Cheap to clone; `Debug` shows no
/// key material.
#[derive(Clone)]
pub struct Secrets {
    encryption: [u8; 32],
    fingerprint: [u8; 32],
    credential: [u8; 32],
    nonce_key: [u8; 32],
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets { <keys redacted> }")
    }
}

impl Secrets {
    /// Derives the purpose keys from a master key (for tests and embedders
    /// that keep the key elsewhere).
    pub fn from_key(key: [u8; KEY_LEN]) -> Secrets {
        Secrets {
            encryption: blake3::derive_key(CTX_ENCRYPTION, &key),
            fingerprint: blake3::derive_key(CTX_FINGERPRINT, &key),
            credential: blake3::derive_key(CTX_CREDENTIAL, &key),
            nonce_key: blake3::derive_key(CTX_NONCE, &key),
        }
    }

    /// Reads the master key from `path`, or creates it there when the file
    /// does not exist.
    ///
    /// Format: 64 hexadecimal digits (either case), surrounding white space
    /// ignored; a new file holds lower-case digits and a newline. A new file
    /// gets 32 bytes from the operating system's random source, is created
    /// exclusively (`create_new`, so a concurrent creator's key is never
    /// overwritten) with mode `0600`, and its parent directory is created
    /// when missing. An existing file that does not hold a key is an error
    /// and is never replaced. An existing file that group or others may
    /// access is used, with a warning in the log.
    ///
    /// # Errors
    ///
    /// [`SecretsError::KeyFormat`] for a file that does not hold a key (it
    /// is left untouched), [`SecretsError::Io`] when the file or its
    /// directory cannot be read or created, [`SecretsError::Random`] when
    /// the operating system gives no random bytes.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("keys/im.key");
    /// let a = im_core::secrets::Secrets::load_or_create(&path).unwrap();
    /// let b = im_core::secrets::Secrets::load_or_create(&path).unwrap();
    /// assert_eq!(b.decrypt(&a.encrypt("x")).unwrap(), "x");
    /// ```
    pub fn load_or_create(path: &Path) -> Result<Secrets, SecretsError> {
        match read_key_file(path)? {
            Some(key) => Ok(Secrets::from_key(key)),
            None => match create_key_file(path)? {
                Some(key) => Ok(Secrets::from_key(key)),
                // Someone else created it between our read and our create.
                None => match read_key_file(path)? {
                    Some(key) => Ok(Secrets::from_key(key)),
                    None => Err(SecretsError::Io {
                        path: path.to_path_buf(),
                        op: "read",
                        source: std::io::ErrorKind::NotFound.into(),
                    }),
                },
            },
        }
    }

    /// Encrypts a value for storage: `1 ‖ nonce ‖ ciphertext+tag`, with a
    /// fresh nonce, so two encryptions of one value differ.
    ///
    /// The nonce is a keyed hash of a random prefix drawn once per process
    /// and a process-wide counter: unique, which is what the cipher needs.
    /// Should the operating system's random source fail, the prefix comes
    /// from the time and the process id. A value beyond the cipher's limit (256 GiB) gives an empty
    /// vector, which [`Secrets::decrypt`] rejects.
    pub fn encrypt(&self, plaintext: &str) -> Vec<u8> {
        let nonce = self.fresh_nonce();
        let cipher = XChaCha20Poly1305::new(&self.encryption.into());
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: &[BLOB_VERSION],
        };
        match cipher.encrypt(&XNonce::from(nonce), payload) {
            Ok(sealed) => {
                let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
                out.push(BLOB_VERSION);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
                out
            }
            Err(_) => {
                tracing::error!(
                    len = plaintext.len(),
                    "value too large to encrypt; storing an unreadable value"
                );
                Vec::new()
            }
        }
    }

    /// Decrypts a value made by [`Secrets::encrypt`] with the same master
    /// key. A different key, a changed byte or a cut value is an error,
    /// never a panic and never a wrong value.
    ///
    /// # Errors
    ///
    /// [`SecretsError::Truncated`] for a value shorter than any valid one,
    /// [`SecretsError::UnknownVersion`] for another format,
    /// [`SecretsError::Decrypt`] when authentication fails (wrong key,
    /// changed or cut data), [`SecretsError::NotUtf8`] for a value that was
    /// not text.
    pub fn decrypt(&self, blob: &[u8]) -> Result<String, SecretsError> {
        let Some((&version, rest)) = blob.split_first() else {
            return Err(SecretsError::Truncated { len: 0 });
        };
        if version != BLOB_VERSION {
            return Err(SecretsError::UnknownVersion(version));
        }
        if blob.len() < MIN_BLOB_LEN {
            return Err(SecretsError::Truncated { len: blob.len() });
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| SecretsError::Truncated { len: blob.len() })?;
        let cipher = XChaCha20Poly1305::new(&self.encryption.into());
        let payload = Payload {
            msg: sealed,
            aad: &[version],
        };
        let plain = cipher
            .decrypt(&XNonce::from(nonce), payload)
            .map_err(|_| SecretsError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| SecretsError::NotUtf8)
    }

    /// A keyed fingerprint of `data` (BLAKE3 keyed hash with the fingerprint
    /// key): equal data gives equal fingerprints under one master key, and a
    /// stored fingerprint reveals nothing about the data without the key.
    ///
    /// ```
    /// let s = im_core::secrets::Secrets::from_key([1; 32]);
    /// assert_eq!(s.fingerprint(b"popid=19601"), s.fingerprint(b"popid=19601"));
    /// assert_ne!(s.fingerprint(b"popid=19601"), s.fingerprint(b"popid=19602"));
    /// ```
    pub fn fingerprint(&self, data: &[u8]) -> [u8; 32] {
        blake3::keyed_hash(&self.fingerprint, data).into()
    }

    /// A keyed tag of a login and password (BLAKE3 keyed hash with the
    /// credential key over `len(login) ‖ login ‖ len(password) ‖ password`,
    /// lengths as 8-byte little-endian), for a cache of recently verified
    /// credentials: the password itself is never kept. Compare tags with
    /// [`tags_equal`].
    ///
    /// ```
    /// let s = im_core::secrets::Secrets::from_key([1; 32]);
    /// assert_ne!(s.credential_tag("ab", "c"), s.credential_tag("a", "bc"));
    /// ```
    pub fn credential_tag(&self, login: &str, password: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.credential);
        for part in [login.as_bytes(), password.as_bytes()] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    fn fresh_nonce(&self) -> [u8; NONCE_LEN] {
        // A keyed hash of (a random 128-bit prefix drawn once per process, a
        // process-wide counter): unique for every encryption without a
        // system call each time (asking the operating system for 24 random
        // bytes per value cost a tenth of the server's request time).
        static PREFIX: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = PREFIX.get_or_init(|| {
            let mut p = [0u8; 16];
            if getrandom::fill(&mut p).is_err() {
                tracing::error!("operating system random source failed; nonces derive from the clock and the process id");
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let mut h = blake3::Hasher::new();
                h.update(&now.to_le_bytes());
                h.update(&std::process::id().to_le_bytes());
                h.finalize_xof().fill(&mut p);
            }
            p
        });
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; NONCE_LEN];
        let mut h = blake3::Hasher::new_keyed(&self.nonce_key);
        h.update(prefix);
        h.update(&count.to_le_bytes());
        h.finalize_xof().fill(&mut nonce);
        nonce
    }
}

/// Compares two tags or fingerprints in constant time.
///
/// ```
/// use im_core::secrets::{tags_equal, Secrets};
/// let s = Secrets::from_key([1; 32]);
/// assert!(tags_equal(&s.credential_tag("u", "p"), &s.credential_tag("u", "p")));
/// ```
pub fn tags_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    // blake3::Hash compares in constant time.
    blake3::Hash::from(*a) == blake3::Hash::from(*b)
}

fn io_err(path: &Path, op: &'static str, source: std::io::Error) -> SecretsError {
    SecretsError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// The key in an existing key file, `None` when there is no file.
fn read_key_file(path: &Path) -> Result<Option<[u8; KEY_LEN]>, SecretsError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "read", e)),
    };
    let meta = file.metadata().map_err(|e| io_err(path, "read", e))?;
    if !meta.is_file() {
        return Err(SecretsError::KeyFormat {
            path: path.to_path_buf(),
            problem: "not a regular file".to_string(),
        });
    }
    warn_if_exposed(path, &meta);
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(SecretsError::KeyFormat {
            path: path.to_path_buf(),
            problem: format!(
                "expected 64 hex digits (a 32-byte key), found a file of {} bytes",
                meta.len()
            ),
        });
    }
    let mut text = Vec::new();
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut text)
        .map_err(|e| io_err(path, "read", e))?;
    parse_key(&text)
        .map(Some)
        .map_err(|problem| SecretsError::KeyFormat {
            path: path.to_path_buf(),
            problem,
        })
}

fn parse_key(text: &[u8]) -> Result<[u8; KEY_LEN], String> {
    let digits = text.trim_ascii();
    if digits.len() != 2 * KEY_LEN {
        return Err(format!(
            "expected 64 hex digits (a 32-byte key), found {} characters",
            digits.len()
        ));
    }
    let mut key = [0u8; KEY_LEN];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let hi = hex_value(pair[0]);
        let lo = hex_value(pair[1]);
        match (hi, lo) {
            (Some(h), Some(l)) => key[i] = (h << 4) | l,
            _ => {
                let at = 2 * i + usize::from(hi.is_some()) + 1;
                return Err(format!(
                    "expected 64 hex digits (a 32-byte key), found a non-hex character at position {at}"
                ));
            }
        }
    }
    Ok(key)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn to_hex(key: &[u8; KEY_LEN]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * KEY_LEN + 1);
    for b in key {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s.push('\n');
    s
}

#[cfg(unix)]
fn warn_if_exposed(path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "key file is accessible by group or others; restrict it with chmod 600"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_exposed(_path: &Path, _meta: &std::fs::Metadata) {}

/// Creates a new key file; `None` when it already exists (a concurrent
/// creator won).
fn create_key_file(path: &Path) -> Result<Option<[u8; KEY_LEN]>, SecretsError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| SecretsError::Io {
            path: dir.to_path_buf(),
            op: "create the directory of",
            source,
        })?;
    }
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| SecretsError::Random(e.to_string()))?;

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(io_err(path, "create", e)),
    };
    let written = file
        .write_all(to_hex(&key).as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        // Leave no half-written key behind: it would be refused next time.
        let _ = std::fs::remove_file(path);
        return Err(io_err(path, "write", e));
    }
    tracing::info!(path = %path.display(), "created a new key file");
    Ok(Some(key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SAMPLES: [&str; 6] = [
        "hello, world",
        "مرحبا بالعالم",
        "你好，世界",
        "",
        "mixed ASCII مصر 开罗 \u{1F600}",
        "a\0b\nc",
    ];

    fn s1() -> Secrets {
        Secrets::from_key([0x11; 32])
    }

    #[test]
    fn round_trip() {
        let s = s1();
        for text in SAMPLES {
            let blob = s.encrypt(text);
            assert_eq!(blob.len(), MIN_BLOB_LEN + text.len());
            assert_eq!(blob[0], BLOB_VERSION);
            assert_eq!(s.decrypt(&blob).unwrap(), text);
            // Same key, other instance.
            assert_eq!(Secrets::from_key([0x11; 32]).decrypt(&blob).unwrap(), text);
        }
        let long = "x".repeat(100_000);
        assert_eq!(s.decrypt(&s.encrypt(&long)).unwrap(), long);
    }

    #[test]
    fn nonces_never_repeat_across_threads() {
        let s = Secrets::from_key([3; 32]);
        let nonces: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        (0..5_000)
                            .map(|_| s.encrypt("x")[1..1 + NONCE_LEN].to_vec())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        assert_eq!(nonces.len(), 40_000);
        let distinct: std::collections::HashSet<&Vec<u8>> = nonces.iter().collect();
        assert_eq!(distinct.len(), nonces.len());
        // And each value still opens.
        assert_eq!(
            s.decrypt(&s.encrypt("pppoe")).ok().as_deref(),
            Some("pppoe")
        );
    }

    #[test]
    fn encryptions_differ() {
        let s = s1();
        let a = s.encrypt("same value");
        let b = s.encrypt("same value");
        assert_ne!(a, b);
        assert_ne!(a[1..1 + NONCE_LEN], b[1..1 + NONCE_LEN]);
        // The plaintext does not appear in the blob.
        let blob = s.encrypt("plainly visible");
        assert!(!blob.windows(7).any(|w| w == b"plainly"));
    }

    #[test]
    fn tampering_detected() {
        let s = s1();
        let blob = s.encrypt("secret value");
        for i in 0..blob.len() {
            for bit in [0x01, 0x80] {
                let mut bad = blob.clone();
                bad[i] ^= bit;
                assert!(s.decrypt(&bad).is_err(), "byte {i} bit {bit:#x}");
            }
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(matches!(s.decrypt(&longer), Err(SecretsError::Decrypt)));
        let mut other_version = blob.clone();
        other_version[0] = 2;
        assert!(matches!(
            s.decrypt(&other_version),
            Err(SecretsError::UnknownVersion(2))
        ));
    }

    #[test]
    fn truncation_detected() {
        let s = s1();
        let blob = s.encrypt("secret value");
        for len in 0..blob.len() {
            let err = s.decrypt(&blob[..len]).unwrap_err();
            if len < MIN_BLOB_LEN {
                assert!(
                    matches!(err, SecretsError::Truncated { .. }),
                    "{len}: {err}"
                );
            } else {
                assert!(matches!(err, SecretsError::Decrypt), "{len}: {err}");
            }
        }
        assert!(s.decrypt(&[]).is_err());
    }

    #[test]
    fn wrong_key_rejected_without_leaking() {
        let blob = s1().encrypt("top secret");
        let err = Secrets::from_key([0x12; 32]).decrypt(&blob).unwrap_err();
        assert!(matches!(err, SecretsError::Decrypt));
        let msg = err.to_string();
        assert!(!msg.contains("top secret"));
        assert!(!msg.contains("1111"));
    }

    #[test]
    fn not_utf8_rejected() {
        let s = s1();
        let cipher = XChaCha20Poly1305::new(&s.encryption.into());
        let nonce = [9u8; NONCE_LEN];
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &[0xff, 0xfe],
                    aad: &[BLOB_VERSION],
                },
            )
            .unwrap();
        let mut blob = vec![BLOB_VERSION];
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        assert!(matches!(s.decrypt(&blob), Err(SecretsError::NotUtf8)));
    }

    #[test]
    fn debug_hides_keys() {
        let key = [0xAB; 32];
        let s = Secrets::from_key(key);
        let dbg = format!("{s:?}");
        assert!(!dbg.to_lowercase().contains("ab, ab") && !dbg.contains("171"));
        for k in [&s.encryption, &s.fingerprint, &s.credential] {
            assert!(!dbg.contains(&format!("{}", k[0])));
            assert!(!dbg.contains(to_hex(k).trim()));
        }
        assert!(!dbg.contains(to_hex(&key).trim()));
    }

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn key_file_created_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/im.key");
        let first = Secrets::load_or_create(&path).unwrap();
        #[cfg(unix)]
        assert_eq!(mode_of(&path), 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert!(text.trim_end().bytes().all(|b| b.is_ascii_hexdigit()));

        let blob = first.encrypt("kept across restarts");
        let second = Secrets::load_or_create(&path).unwrap();
        assert_eq!(second.decrypt(&blob).unwrap(), "kept across restarts");
        assert_eq!(first.fingerprint(b"x"), second.fingerprint(b"x"));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "file unchanged"
        );

        // The file's key is the master key.
        let key = parse_key(text.as_bytes()).unwrap();
        assert_eq!(
            Secrets::from_key(key).credential_tag("u", "p"),
            first.credential_tag("u", "p")
        );

        // Another file gets another key.
        let other = Secrets::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.decrypt(&blob).is_err());
    }

    #[test]
    fn key_file_in_current_dir_form() {
        // A bare file name has an empty parent: nothing to create.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        assert!(Secrets::load_or_create(&path).is_ok());
        assert!(create_key_file(&path).unwrap().is_none());
    }

    #[test]
    fn bad_key_files_rejected_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let good = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let cases: [(&str, Vec<u8>, &str); 5] = [
            (
                "short.key",
                good.as_bytes()[..62].to_vec(),
                "found 62 characters",
            ),
            (
                "long.key",
                format!("{good}00").into_bytes(),
                "found 66 characters",
            ),
            ("empty.key", Vec::new(), "found 0 characters"),
            ("raw.key", vec![0x5a; 32], "found 32 characters"),
            (
                "nonhex.key",
                good.replace("cc", "cg").into_bytes(),
                "non-hex character at position 26",
            ),
        ];
        for (name, content, problem) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, &content).unwrap();
            let err = Secrets::load_or_create(&path).unwrap_err();
            assert!(
                matches!(err, SecretsError::KeyFormat { .. }),
                "{name}: {err}"
            );
            let msg = err.to_string();
            assert!(msg.contains(name), "{msg}");
            assert!(msg.contains(problem), "{msg}");
            assert!(!msg.contains("0011223344"), "{msg}");
            assert_eq!(std::fs::read(&path).unwrap(), content, "{name} replaced");
        }
        let huge = dir.path().join("huge.key");
        std::fs::write(&huge, vec![b'0'; 10_000]).unwrap();
        assert!(matches!(
            Secrets::load_or_create(&huge),
            Err(SecretsError::KeyFormat { .. })
        ));
        // A directory in place of the file.
        let d = dir.path().join("dir.key");
        std::fs::create_dir(&d).unwrap();
        assert!(Secrets::load_or_create(&d).is_err());
        // White space around the digits and upper case are fine.
        let ok = dir.path().join("ok.key");
        std::fs::write(&ok, format!("  {good}\r\n\n")).unwrap();
        let s = Secrets::load_or_create(&ok).unwrap();
        let key = parse_key(good.as_bytes()).unwrap();
        assert_eq!(key[0], 0x00);
        assert_eq!(key[31], 0xff);
        assert_eq!(
            s.fingerprint(b"x"),
            Secrets::from_key(key).fingerprint(b"x")
        );
    }

    #[cfg(unix)]
    #[test]
    fn exposed_key_file_still_loads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("open.key");
        let s = Secrets::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let again = Secrets::load_or_create(&path).unwrap();
        assert_eq!(s.fingerprint(b"x"), again.fingerprint(b"x"));
        assert_eq!(mode_of(&path), 0o644, "permissions are not changed");
    }

    #[test]
    fn fingerprints_keyed_and_separated() {
        let a = Secrets::from_key([1; 32]);
        let b = Secrets::from_key([2; 32]);
        let data = b"popid=19601;ExchangeID=EX01";
        assert_eq!(a.fingerprint(data), a.fingerprint(data));
        assert_ne!(a.fingerprint(data), b.fingerprint(data));
        assert_ne!(a.fingerprint(data), a.fingerprint(b"popid=19602"));
        // Each purpose has its own derived key, and none is the master key.
        let master = [1u8; 32];
        let expect: [u8; 32] =
            blake3::keyed_hash(&blake3::derive_key(CTX_FINGERPRINT, &master), data).into();
        assert_eq!(a.fingerprint(data), expect);
        let with_master: [u8; 32] = blake3::keyed_hash(&master, data).into();
        assert_ne!(a.fingerprint(data), with_master);
        let keys = [a.encryption, a.fingerprint, a.credential, a.nonce_key];
        for (i, x) in keys.iter().enumerate() {
            assert_ne!(x, &master);
            for y in &keys[i + 1..] {
                assert_ne!(x, y);
            }
        }
        // Same bytes under the credential context give another value.
        let mut h = blake3::Hasher::new_keyed(&a.credential);
        h.update(data);
        let cred_ctx: [u8; 32] = h.finalize().into();
        assert_ne!(a.fingerprint(data), cred_ctx);
    }

    #[test]
    fn credential_tags_unambiguous() {
        let s = s1();
        assert_ne!(s.credential_tag("ab", "c"), s.credential_tag("a", "bc"));
        assert_ne!(s.credential_tag("", "abc"), s.credential_tag("abc", ""));
        assert_ne!(s.credential_tag("u", "p1"), s.credential_tag("u", "p2"));
        assert_eq!(s.credential_tag("u", "p"), s1().credential_tag("u", "p"));
        assert_ne!(
            s.credential_tag("u", "p"),
            Secrets::from_key([0x12; 32]).credential_tag("u", "p")
        );
        assert_ne!(s.credential_tag("u", "p"), s.fingerprint(b"up"));
        assert!(tags_equal(
            &s.credential_tag("u", "p"),
            &s.credential_tag("u", "p")
        ));
        assert!(!tags_equal(
            &s.credential_tag("u", "p"),
            &s.credential_tag("u", "q")
        ));
    }

    #[test]
    fn hex_round_trip() {
        let key: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(parse_key(to_hex(&key).as_bytes()).unwrap(), key);
    }
}
