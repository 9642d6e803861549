//! Authentication of the OM caller: Argon2id password hashes, and a keyed,
//! short-lived cache of verified credentials so that a call does not cost a
//! full hash. The cache holds keyed hashes only (never a password) and is
//! dropped whenever a password changes through this process.

use crate::secrets::{Secrets, tags_equal};
use crate::store::AccountRec;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
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

/// What the cache knows of a pair of credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cached {
    /// Verified recently: accept without hashing. `refresh`: the entry is
    /// in the last quarter of its life, so one caller checks the password
    /// again and renews it before it expires (callers never all miss at
    /// once).
    Verified {
        /// Whether to renew the entry.
        refresh: bool,
    },
    /// Refused recently: refuse without hashing.
    Denied,
    /// Not known: verify.
    Unknown,
}

/// How long refused credentials are refused without a new hash.
const DENY_TTL: Duration = Duration::from_secs(60);
/// Most remembered refused credentials (then they are forgotten).
const DENY_MAX: usize = 4096;
/// Most password checks (full hashes) waiting or running at once.
const MAX_VERIFICATIONS: usize = 16;

/// Verified credentials, by lower-cased login, for a limited time; recently
/// refused credentials, by keyed tag; and the count of checks in progress.
/// Holds keyed hashes only, never a password.
pub(crate) struct CredentialCache {
    ttl: Duration,
    epoch: AtomicU64,
    map: RwLock<HashMap<String, Entry>>,
    denied: RwLock<HashMap<[u8; 32], (Instant, u64)>>,
    verifying: Arc<AtomicUsize>,
    flights: Flights,
}

/// A place among the password checks in progress; freed when dropped.
pub(crate) struct VerificationSlot(Arc<AtomicUsize>);

/// Checks in flight, by credential tag: the sender is dropped when the
/// leader is done.
type Flights = Arc<std::sync::Mutex<HashMap<[u8; 32], tokio::sync::watch::Sender<()>>>>;

/// Most distinct credentials checked at once (beyond: each caller alone).
const MAX_FLIGHTS: usize = 1024;

/// A caller's place in the check of one pair of credentials.
pub(crate) enum Flight {
    /// This caller checks; the others wait for it.
    Leader(FlightGuard),
    /// Another caller checks: wait until `changed()` returns (an error,
    /// when the leader is done), then look the cache up again.
    Follower(tokio::sync::watch::Receiver<()>),
    /// No single flight (too many distinct checks at once): check alone.
    Alone,
}

/// Ends a flight when dropped (after the verdict is in the cache).
pub(crate) struct FlightGuard {
    flights: Flights,
    tag: [u8; 32],
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if let Ok(mut f) = self.flights.lock() {
            f.remove(&self.tag);
        }
    }
}

impl Drop for VerificationSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl CredentialCache {
    pub(crate) fn new(ttl: Duration) -> CredentialCache {
        CredentialCache {
            ttl,
            epoch: AtomicU64::new(0),
            map: RwLock::new(HashMap::new()),
            denied: RwLock::new(HashMap::new()),
            verifying: Arc::new(AtomicUsize::new(0)),
            flights: Arc::default(),
        }
    }

    /// The epoch to pass to [`CredentialCache::insert`] for a verification
    /// started now (a password change in between makes the insert void).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// What is known of these credentials.
    pub(crate) fn lookup(&self, secrets: &Secrets, login: &str, password: &str) -> Cached {
        let key = login.to_lowercase();
        let tag = secrets.credential_tag(&key, password);
        let epoch = self.epoch();
        let now = Instant::now();
        if !self.ttl.is_zero()
            && let Ok(map) = self.map.read()
            && let Some(e) = map
                .get(&key)
                .filter(|e| e.epoch == epoch && e.expires > now && tags_equal(&e.tag, &tag))
        {
            return Cached::Verified {
                refresh: e.expires.duration_since(now) < self.ttl / 4,
            };
        }
        if let Ok(denied) = self.denied.read()
            && denied
                .get(&tag)
                .is_some_and(|(until, ep)| *ep == epoch && *until > now)
        {
            return Cached::Denied;
        }
        Cached::Unknown
    }

    /// Remembers verified credentials until the time-to-live passes.
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

    /// Remembers refused credentials for a while.
    pub(crate) fn deny(&self, secrets: &Secrets, login: &str, password: &str, epoch: u64) {
        let tag = secrets.credential_tag(&login.to_lowercase(), password);
        if let Ok(mut denied) = self.denied.write() {
            if denied.len() >= DENY_MAX {
                let now = Instant::now();
                denied.retain(|_, (until, _)| *until > now);
                if denied.len() >= DENY_MAX {
                    denied.clear();
                }
            }
            denied.insert(tag, (Instant::now() + DENY_TTL, epoch));
        }
    }

    /// Joins the check of these credentials: the first caller leads (and
    /// checks); the others follow and wait until the leader's verdict is in
    /// the cache (its [`FlightGuard`] dropped).
    pub(crate) fn join_flight(&self, secrets: &Secrets, login: &str, password: &str) -> Flight {
        let tag = secrets.credential_tag(&login.to_lowercase(), password);
        let Ok(mut flights) = self.flights.lock() else {
            return Flight::Alone;
        };
        if let Some(tx) = flights.get(&tag) {
            return Flight::Follower(tx.subscribe());
        }
        if flights.len() >= MAX_FLIGHTS {
            return Flight::Alone;
        }
        let (tx, _) = tokio::sync::watch::channel(());
        flights.insert(tag, tx);
        Flight::Leader(FlightGuard {
            flights: Arc::clone(&self.flights),
            tag,
        })
    }

    /// A place for one full password check, or `None` when too many run.
    pub(crate) fn verification_slot(&self) -> Option<VerificationSlot> {
        let running = self.verifying.fetch_add(1, Ordering::AcqRel);
        let slot = VerificationSlot(Arc::clone(&self.verifying));
        (running < MAX_VERIFICATIONS).then_some(slot)
    }

    /// Forgets every verified and refused credential (a password changed).
    pub(crate) fn clear(&self) {
        if let Ok(mut map) = self.map.write() {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            map.clear();
        }
        if let Ok(mut denied) = self.denied.write() {
            denied.clear();
        }
    }
}
