//! Authentication of the OM caller: Argon2id password hashes, and a keyed,
//! short-lived cache of verified credentials so that a call does not cost a
//! full hash. The cache holds keyed hashes only (never a password) and is
//! dropped whenever a password changes through this process.

use crate::secrets::{Secrets, tags_equal};
use crate::store::AccountRec;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Hashes a password with Argon2id (OWASP parameters, random salt) into a
/// PHC string.
///
/// ```
/// let h = im_core::auth::hash_password("s3cret").unwrap();
/// assert!(h.starts_with("$argon2id$"));
/// assert!(im_core::auth::verify_password("s3cret", &h));
/// assert!(!im_core::auth::verify_password("wrong", &h));
/// ```
pub fn hash_password(password: &str) -> Result<String, crate::CoreError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| crate::CoreError::Invalid(format!("password hashing failed: {e}")))
}

/// Whether `password` matches a PHC hash (any malformed hash: no).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordVerifier::<str>::verify_password(&Argon2::default(), password.as_bytes(), phc).is_ok()
}

/// Why an OM login was refused (logged, never answered in detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No account of that login.
    UnknownAccount,
    /// The account is disabled.
    Disabled,
    /// Not a LOCAL account, or no role allows the OM interface.
    NotAllowed,
    /// The password does not match.
    WrongPassword,
}

impl Denial {
    /// A short reason for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Denial::UnknownAccount => "unknown account",
            Denial::Disabled => "account disabled",
            Denial::NotAllowed => "account not allowed to call the OM interface",
            Denial::WrongPassword => "wrong password",
        }
    }
}

/// Checks an OM caller against its stored account (runs the full hash).
pub fn check_om_account(account: Option<&AccountRec>, password: &str) -> Result<(), Denial> {
    let a = account.ok_or(Denial::UnknownAccount)?;
    if !a.enabled {
        return Err(Denial::Disabled);
    }
    if a.auth_mode != "LOCAL" || !a.om_interface {
        return Err(Denial::NotAllowed);
    }
    match &a.password_hash {
        Some(h) if verify_password(password, h) => Ok(()),
        _ => Err(Denial::WrongPassword),
    }
}

struct Entry {
    tag: [u8; 32],
    expires: Instant,
    epoch: u64,
}

/// Verified credentials, by lower-cased login, for a limited time.
pub(crate) struct CredentialCache {
    ttl: Duration,
    epoch: AtomicU64,
    map: RwLock<HashMap<String, Entry>>,
}

impl CredentialCache {
    pub(crate) fn new(ttl: Duration) -> CredentialCache {
        CredentialCache {
            ttl,
            epoch: AtomicU64::new(0),
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The epoch to pass to [`CredentialCache::insert`] for a verification
    /// started now (a password change in between makes the insert void).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn hit(&self, secrets: &Secrets, login: &str, password: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let key = login.to_lowercase();
        let tag = secrets.credential_tag(&key, password);
        let epoch = self.epoch();
        let Ok(map) = self.map.read() else {
            return false;
        };
        map.get(&key).is_some_and(|e| {
            e.epoch == epoch && e.expires > Instant::now() && tags_equal(&e.tag, &tag)
        })
    }

    pub(crate) fn insert(&self, secrets: &Secrets, login: &str, password: &str, epoch: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let key = login.to_lowercase();
        let tag = secrets.credential_tag(&key, password);
        if let Ok(mut map) = self.map.write() {
            if epoch != self.epoch() {
                return;
            }
            if map.len() > 1024 {
                let now = Instant::now();
                map.retain(|_, e| e.expires > now);
            }
            map.insert(
                key,
                Entry {
                    tag,
                    expires: Instant::now() + self.ttl,
                    epoch,
                },
            );
        }
    }

    /// Forgets every verified credential (a password changed).
    pub(crate) fn clear(&self) {
        if let Ok(mut map) = self.map.write() {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            map.clear();
        }
    }
}
