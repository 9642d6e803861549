//! Retry policies: one TOML file per outbound interface.
//!
//! IM talks to five systems that may fail transiently: OM (an OM client's
//! view of IM), Matrix and eMatrix (inventory sync page requests), AM
//! (activation commands) and AD (operator logins). Each has a
//! [`RetryPolicy`]: how many retries, and how long to wait before each one,
//! growing exponentially from an initial interval by a multiplier up to a
//! cap, with random jitter.
//!
//! Policies come from a directory holding one file per [`Interface`]
//! (`om.toml`, `matrix.toml`, `ematrix.toml`, `am.toml`, `ad.toml`). When no
//! directory is configured the documented built-in defaults
//! ([`RetryPolicy::default_for`]) apply; when one is configured, every file
//! must be present and valid ([`RetryPolicies::load_dir`]), and any problem is
//! an error naming the file and the field. Never a silent default.
//!
//! File format (every field required, no other field allowed; durations are
//! integer milliseconds):
//!
//! ```toml
//! retries = 5               # 0..=100 retries after the first attempt
//! initial_interval_ms = 500 # wait before retry 1: 1 ms ..= 1 h
//! multiplier = 2.0          # growth per retry: 1.0 ..= 10.0
//! max_interval_ms = 30000   # cap: >= initial_interval_ms, <= 24 h
//! jitter = 0.2              # each wait is randomised by ±jitter: 0.0 ..= 1.0
//! ```
//!
//! This module only computes the intervals ([`RetryPolicy::intervals`]); it
//! never sleeps. Adapters (sync, blocking or async) sleep between attempts and
//! decide which errors are retryable. The interval computation wraps the
//! `backoff` crate; this is the only module of the project allowed to use it,
//! and no `backoff` type appears in this module's API.

use std::fmt;
use std::iter::FusedIterator;
use std::path::{Path, PathBuf};
use std::time::Duration;

use backoff::backoff::Backoff as _;

/// Most retries a policy may ask for.
pub const MAX_RETRIES: u32 = 100;
/// Longest initial interval a policy may ask for (1 h).
pub const MAX_INITIAL_INTERVAL: Duration = Duration::from_secs(3600);
/// Longest cap a policy may ask for (24 h).
pub const MAX_MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Smallest allowed multiplier.
pub const MIN_MULTIPLIER: f64 = 1.0;
/// Largest allowed multiplier.
pub const MAX_MULTIPLIER: f64 = 10.0;

/// An outbound interface with its own retry policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interface {
    /// OM (the retry behaviour of OM clients calling IM; `om.toml`).
    Om,
    /// Matrix inventory sync, ADSL/VDSL (`matrix.toml`).
    Matrix,
    /// eMatrix inventory sync, FTTH (`ematrix.toml`).
    Ematrix,
    /// AM activation commands (`am.toml`).
    Am,
    /// AD (LDAP) operator authentication (`ad.toml`).
    Ad,
}

impl Interface {
    /// Every interface, in file order.
    pub const ALL: [Interface; 5] = [
        Interface::Om,
        Interface::Matrix,
        Interface::Ematrix,
        Interface::Am,
        Interface::Ad,
    ];

    /// Lower-case name, as used in file names and logs.
    ///
    /// ```
    /// assert_eq!(im_core::retry::Interface::Ematrix.name(), "ematrix");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Interface::Om => "om",
            Interface::Matrix => "matrix",
            Interface::Ematrix => "ematrix",
            Interface::Am => "am",
            Interface::Ad => "ad",
        }
    }

    /// The policy file's name inside the retry directory.
    ///
    /// ```
    /// assert_eq!(im_core::retry::Interface::Om.file_name(), "om.toml");
    /// ```
    pub fn file_name(self) -> String {
        format!("{}.toml", self.name())
    }

    const fn index(self) -> usize {
        match self {
            Interface::Om => 0,
            Interface::Matrix => 1,
            Interface::Ematrix => 2,
            Interface::Am => 3,
            Interface::Ad => 4,
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong reading or validating a retry policy. Every message
/// names the file (or `<inline>` for [`RetryPolicy::from_toml_str`]) and,
/// where there is one, the field.
#[derive(Debug, thiserror::Error)]
pub enum RetryConfigError {
    /// The configured directory does not exist or is not a directory.
    #[error("retry policy directory {}: {problem}", path.display())]
    Directory {
        /// The configured directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A policy file is missing from the configured directory.
    #[error("retry policy {}: file missing (every interface needs its file when a retry directory is configured)", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// A policy file exists but cannot be read.
    #[error("retry policy {}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the policy's shape
    /// (missing, unknown or mistyped field). The message is TOML's own,
    /// with line and column.
    #[error("retry policy {origin}: {}{message}", field_prefix(.field.as_deref()))]
    Syntax {
        /// The file (or `<inline>`).
        origin: String,
        /// The field on the line TOML points at, when it points at one.
        field: Option<String>,
        /// TOML's message, naming the field and its line and column.
        message: String,
    },
    /// A field has a value outside its allowed range.
    #[error("retry policy {origin}: field \"{field}\": {problem}")]
    Invalid {
        /// The file (or `<inline>`).
        origin: String,
        /// The field's name as written in the file.
        field: &'static str,
        /// The rule it breaks.
        problem: String,
    },
}

const INLINE: &str = "<inline>";

fn field_prefix(field: Option<&str>) -> String {
    field
        .map(|f| format!("field \"{f}\": "))
        .unwrap_or_default()
}

/// The field named by serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(f, _)| f.to_string())
}

/// The key of the `key = value` line that a TOML error's span lies on.
fn field_at(text: &str, span: Option<std::ops::Range<usize>>) -> Option<String> {
    let span = span?;
    let spanned = text.get(span.clone())?;
    if spanned.contains('\n') {
        return None; // the whole document, e.g. for a missing field
    }
    let start = text.get(..span.start)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    (!key.is_empty() && key.chars().all(bare)).then(|| key.to_string())
}

/// The on-disk shape of a policy file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    retries: u32,
    initial_interval_ms: u64,
    multiplier: f64,
    max_interval_ms: u64,
    jitter: f64,
}

/// How often and how patiently to retry one interface.
///
/// The wait before retry *k* (1-based) is
/// `min(initial_interval × multiplier^(k−1), max_interval)`, randomised by
/// ±`jitter` (0.2 = ±20 %) and never above `max_interval`.
///
/// ```
/// use im_core::retry::{Interface, RetryPolicy};
/// use std::time::Duration;
/// let p = RetryPolicy::default_for(Interface::Om);
/// assert_eq!(p.retries, 5);
/// let waits: Vec<Duration> = p.intervals().collect();
/// assert_eq!(waits.len(), 5);
/// assert!(waits.iter().all(|w| *w <= p.max_interval));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = try once). Allowed: 0..=100.
    pub retries: u32,
    /// Wait before the first retry. Allowed: > 0 and ≤ 1 h.
    pub initial_interval: Duration,
    /// Factor by which each wait grows. Allowed: 1.0..=10.0.
    pub multiplier: f64,
    /// Cap on any single wait. Allowed: ≥ `initial_interval`, ≤ 24 h.
    pub max_interval: Duration,
    /// Relative randomisation of each wait (0.2 = ±20 %). Allowed: 0.0..=1.0.
    pub jitter: f64,
}

impl RetryPolicy {
    /// The built-in default for an interface, used when no retry directory
    /// is configured:
    ///
    /// | interface | retries | initial | multiplier | cap | jitter |
    /// |---|---|---|---|---|---|
    /// | `om` | 5 | 500 ms | 2.0 | 30 s | 0.2 |
    /// | `matrix` | 3 | 1 s | 2.0 | 60 s | 0.2 |
    /// | `ematrix` | 3 | 1 s | 2.0 | 60 s | 0.2 |
    /// | `am` | 8 | 500 ms | 2.0 | 60 s | 0.2 |
    /// | `ad` | 2 | 200 ms | 2.0 | 2 s | 0.2 |
    ///
    /// ```
    /// use im_core::retry::{Interface, RetryPolicy};
    /// assert_eq!(RetryPolicy::default_for(Interface::Am).retries, 8);
    /// ```
    pub const fn default_for(iface: Interface) -> RetryPolicy {
        let (retries, initial_ms, max_ms) = match iface {
            Interface::Om => (5, 500, 30_000),
            Interface::Matrix | Interface::Ematrix => (3, 1_000, 60_000),
            Interface::Am => (8, 500, 60_000),
            Interface::Ad => (2, 200, 2_000),
        };
        RetryPolicy {
            retries,
            initial_interval: Duration::from_millis(initial_ms),
            multiplier: 2.0,
            max_interval: Duration::from_millis(max_ms),
            jitter: 0.2,
        }
    }

    /// A policy that never retries (`retries = 0`; the other fields are the
    /// OM defaults and unused).
    ///
    /// ```
    /// let p = im_core::retry::RetryPolicy::no_retry();
    /// assert_eq!(p.intervals().count(), 0);
    /// ```
    pub const fn no_retry() -> RetryPolicy {
        let mut p = RetryPolicy::default_for(Interface::Om);
        p.retries = 0;
        p
    }

    /// The waits before retry 1, 2, …, `retries`: exactly `retries` values.
    ///
    /// Each value lies within `[v·(1−jitter), v·(1+jitter)]` of the
    /// un-jittered exponential value `v = min(initial·multiplier^(k−1),
    /// max_interval)` and never exceeds `max_interval`. Fields set directly
    /// to values outside their allowed ranges are clamped into them
    /// (`multiplier` to 1.0..=10.0, `jitter` to 0.0..=1.0), so this never
    /// panics.
    ///
    /// ```
    /// use im_core::retry::RetryPolicy;
    /// use std::time::Duration;
    /// let p = RetryPolicy {
    ///     retries: 4,
    ///     initial_interval: Duration::from_millis(100),
    ///     multiplier: 3.0,
    ///     max_interval: Duration::from_millis(500),
    ///     jitter: 0.0,
    /// };
    /// let ms: Vec<u128> = p.intervals().map(|d| d.as_millis()).collect();
    /// assert_eq!(ms, [100, 300, 500, 500]);
    /// ```
    pub fn intervals(&self) -> RetryIntervals {
        let multiplier = if self.multiplier.is_nan() {
            MIN_MULTIPLIER
        } else {
            self.multiplier.clamp(MIN_MULTIPLIER, MAX_MULTIPLIER)
        };
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let inner = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(self.initial_interval)
            .with_multiplier(multiplier)
            .with_max_interval(self.max_interval)
            .with_randomization_factor(jitter)
            .with_max_elapsed_time(None)
            .build();
        RetryIntervals {
            inner,
            remaining: self.retries,
            jitter,
            max_interval: self.max_interval,
        }
    }

    /// Parses and validates one policy file's text. Errors name the field;
    /// the file is named `<inline>` (use [`RetryPolicies::load_dir`] for
    /// errors naming the real file).
    ///
    /// # Errors
    ///
    /// [`RetryConfigError::Syntax`] for text that is not TOML or has a
    /// missing, unknown or mistyped field (TOML's message, with line and
    /// column); [`RetryConfigError::Invalid`] for a value out of range.
    ///
    /// ```
    /// use im_core::retry::RetryPolicy;
    /// let p = RetryPolicy::from_toml_str(
    ///     "retries = 3\ninitial_interval_ms = 250\nmultiplier = 1.5\n\
    ///      max_interval_ms = 4000\njitter = 0.1\n",
    /// ).unwrap();
    /// assert_eq!(p.initial_interval.as_millis(), 250);
    ///
    /// let err = RetryPolicy::from_toml_str(
    ///     "retries = 3\ninitial_interval_ms = 250\nmultiplier = 0.5\n\
    ///      max_interval_ms = 4000\njitter = 0.1\n",
    /// ).unwrap_err();
    /// assert!(err.to_string().contains("field \"multiplier\": must be >= 1.0"));
    /// ```
    pub fn from_toml_str(text: &str) -> Result<RetryPolicy, RetryConfigError> {
        parse_policy(text, INLINE)
    }

    /// Checks every field against its allowed range (the same rules as for
    /// files), reporting the first field that breaks one.
    ///
    /// # Errors
    ///
    /// [`RetryConfigError::Invalid`] naming the first field out of range.
    ///
    /// ```
    /// use im_core::retry::{Interface, RetryPolicy};
    /// let mut p = RetryPolicy::default_for(Interface::Ad);
    /// assert!(p.validate().is_ok());
    /// p.jitter = 1.5;
    /// assert!(p.validate().unwrap_err().to_string().contains("\"jitter\""));
    /// ```
    pub fn validate(&self) -> Result<(), RetryConfigError> {
        self.check(INLINE)
    }

    fn check(&self, origin: &str) -> Result<(), RetryConfigError> {
        let invalid = |field: &'static str, problem: String| RetryConfigError::Invalid {
            origin: origin.to_string(),
            field,
            problem,
        };
        if self.retries > MAX_RETRIES {
            return Err(invalid(
                "retries",
                format!("must be <= {MAX_RETRIES} (got {})", self.retries),
            ));
        }
        if self.initial_interval.is_zero() {
            return Err(invalid("initial_interval_ms", "must be > 0".to_string()));
        }
        if self.initial_interval > MAX_INITIAL_INTERVAL {
            return Err(invalid(
                "initial_interval_ms",
                format!(
                    "must be <= {} (1 h) (got {})",
                    MAX_INITIAL_INTERVAL.as_millis(),
                    self.initial_interval.as_millis()
                ),
            ));
        }
        if self.multiplier.is_nan() || self.multiplier < MIN_MULTIPLIER {
            return Err(invalid(
                "multiplier",
                format!("must be >= 1.0 (got {})", self.multiplier),
            ));
        }
        if self.multiplier > MAX_MULTIPLIER {
            return Err(invalid(
                "multiplier",
                format!("must be <= 10.0 (got {})", self.multiplier),
            ));
        }
        if self.max_interval < self.initial_interval {
            return Err(invalid(
                "max_interval_ms",
                format!(
                    "must be >= initial_interval_ms ({}) (got {})",
                    self.initial_interval.as_millis(),
                    self.max_interval.as_millis()
                ),
            ));
        }
        if self.max_interval > MAX_MAX_INTERVAL {
            return Err(invalid(
                "max_interval_ms",
                format!(
                    "must be <= {} (24 h) (got {})",
                    MAX_MAX_INTERVAL.as_millis(),
                    self.max_interval.as_millis()
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(invalid(
                "jitter",
                format!("must be between 0.0 and 1.0 (got {})", self.jitter),
            ));
        }
        Ok(())
    }
}

fn parse_policy(text: &str, origin: &str) -> Result<RetryPolicy, RetryConfigError> {
    let file: PolicyFile = toml::from_str(text).map_err(|e| RetryConfigError::Syntax {
        origin: origin.to_string(),
        field: missing_field(e.message()).or_else(|| field_at(text, e.span())),
        message: e.to_string().trim_end().to_string(),
    })?;
    let policy = RetryPolicy {
        retries: file.retries,
        initial_interval: Duration::from_millis(file.initial_interval_ms),
        multiplier: file.multiplier,
        max_interval: Duration::from_millis(file.max_interval_ms),
        jitter: file.jitter,
    };
    policy.check(origin)?;
    Ok(policy)
}

/// The waits of one retry sequence; see [`RetryPolicy::intervals`].
///
/// Yields exactly `retries` values, then `None` forever. It only computes:
/// the caller sleeps.
#[derive(Debug)]
pub struct RetryIntervals {
    inner: backoff::ExponentialBackoff,
    remaining: u32,
    jitter: f64,
    max_interval: Duration,
}

impl RetryIntervals {
    /// Retries still to come.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }
}

fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

impl Iterator for RetryIntervals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // The un-jittered value of this step, as backoff tracks it.
        let base = self.inner.current_interval;
        let low = scale(base, 1.0 - self.jitter);
        let high = scale(base, 1.0 + self.jitter).min(self.max_interval);
        // backoff has no attempt limit, and with max_elapsed_time(None) it
        // always answers; the fallback only guards against a future change.
        let raw = self.inner.next_backoff().unwrap_or(base);
        // backoff's range is inclusive of one extra nanosecond and is not
        // capped after jitter: keep the value in the documented band, the
        // cap winning.
        Some(raw.max(low).min(high))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for RetryIntervals {}
impl FusedIterator for RetryIntervals {}

/// The retry policies of all five interfaces.
///
/// ```
/// use im_core::retry::{Interface, RetryPolicies, RetryPolicy};
/// let p = RetryPolicies::defaults();
/// assert_eq!(p.get(Interface::Ad), &RetryPolicy::default_for(Interface::Ad));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicies {
    by_iface: [RetryPolicy; 5],
}

impl Default for RetryPolicies {
    fn default() -> Self {
        RetryPolicies::defaults()
    }
}

impl RetryPolicies {
    /// The built-in defaults ([`RetryPolicy::default_for`]) for every
    /// interface.
    pub fn defaults() -> RetryPolicies {
        RetryPolicies {
            by_iface: Interface::ALL.map(RetryPolicy::default_for),
        }
    }

    /// Loads `<dir>/om.toml`, `matrix.toml`, `ematrix.toml`, `am.toml` and
    /// `ad.toml`. Every file is required; the first missing or invalid one
    /// is the error, naming the file and the field.
    ///
    /// # Errors
    ///
    /// [`RetryConfigError::Directory`] when `dir` is not a readable
    /// directory, [`RetryConfigError::Missing`] or [`RetryConfigError::Read`]
    /// for a file, and the errors of [`RetryPolicy::from_toml_str`] (naming
    /// the file) for its content.
    ///
    /// ```
    /// use im_core::retry::RetryPolicies;
    /// let err = RetryPolicies::load_dir("/nonexistent/retry".as_ref()).unwrap_err();
    /// assert!(err.to_string().contains("/nonexistent/retry"));
    /// ```
    pub fn load_dir(dir: &Path) -> Result<RetryPolicies, RetryConfigError> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(RetryConfigError::Directory {
                    path: dir.to_path_buf(),
                    problem: "not a directory".to_string(),
                });
            }
            Err(e) => {
                return Err(RetryConfigError::Directory {
                    path: dir.to_path_buf(),
                    problem: e.to_string(),
                });
            }
        }
        let mut policies = RetryPolicies::defaults();
        for iface in Interface::ALL {
            let path = dir.join(iface.file_name());
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(RetryConfigError::Missing { path });
                }
                Err(source) => return Err(RetryConfigError::Read { path, source }),
            };
            let policy = parse_policy(&text, &path.display().to_string())?;
            policies.set(iface, policy);
        }
        Ok(policies)
    }

    /// [`RetryPolicies::load_dir`] when a directory is configured, else the
    /// built-in defaults.
    ///
    /// # Errors
    ///
    /// Those of [`RetryPolicies::load_dir`]; never any without a directory.
    pub fn load(dir: Option<&Path>) -> Result<RetryPolicies, RetryConfigError> {
        match dir {
            Some(d) => RetryPolicies::load_dir(d),
            None => Ok(RetryPolicies::defaults()),
        }
    }

    /// The policy of one interface.
    pub fn get(&self, iface: Interface) -> &RetryPolicy {
        &self.by_iface[iface.index()]
    }

    /// Replaces the policy of one interface (for embedders and tests; the
    /// policy is taken as is, see [`RetryPolicy::validate`]).
    pub fn set(&mut self, iface: Interface, policy: RetryPolicy) {
        self.by_iface[iface.index()] = policy;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "retries = 3\ninitial_interval_ms = 250\nmultiplier = 1.5\n\
                         max_interval_ms = 4000\njitter = 0.1\n";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The un-jittered exponential values, computed independently.
    fn expected(p: &RetryPolicy) -> Vec<Duration> {
        let mut v = Vec::new();
        let mut cur = p.initial_interval.as_secs_f64();
        for _ in 0..p.retries {
            v.push(cur.min(p.max_interval.as_secs_f64()));
            cur *= p.multiplier;
        }
        v.into_iter().map(Duration::from_secs_f64).collect()
    }

    fn assert_in_band(p: &RetryPolicy, got: &[Duration]) {
        let exp = expected(p);
        assert_eq!(got.len(), exp.len());
        // 1 µs slack covers float rounding between the two computations.
        let slack = 1e-6;
        for (k, (g, e)) in got.iter().zip(&exp).enumerate() {
            let g = g.as_secs_f64();
            let e = e.as_secs_f64();
            let lo = e * (1.0 - p.jitter) - slack;
            let hi = e * (1.0 + p.jitter) + slack;
            assert!(
                lo <= g && g <= hi,
                "retry {}: {g} outside [{lo}, {hi}] for {p:?}",
                k + 1
            );
            assert!(
                g <= p.max_interval.as_secs_f64(),
                "retry {}: {g} above cap",
                k + 1
            );
        }
    }

    fn write_all(dir: &Path, policies: &RetryPolicies) {
        for iface in Interface::ALL {
            let p = policies.get(iface);
            let text = format!(
                "retries = {}\ninitial_interval_ms = {}\nmultiplier = {:?}\nmax_interval_ms = {}\njitter = {:?}\n",
                p.retries,
                p.initial_interval.as_millis(),
                p.multiplier,
                p.max_interval.as_millis(),
                p.jitter
            );
            std::fs::write(dir.join(iface.file_name()), text).unwrap();
        }
    }

    #[test]
    fn interface_names() {
        let names: Vec<&str> = Interface::ALL.iter().map(|i| i.name()).collect();
        assert_eq!(names, ["om", "matrix", "ematrix", "am", "ad"]);
        assert_eq!(Interface::Ematrix.file_name(), "ematrix.toml");
        assert_eq!(Interface::Am.to_string(), "am");
    }

    #[test]
    fn documented_defaults() {
        let d = RetryPolicy::default_for;
        let om = d(Interface::Om);
        assert_eq!(
            (
                om.retries,
                om.initial_interval,
                om.multiplier,
                om.max_interval,
                om.jitter
            ),
            (5, ms(500), 2.0, ms(30_000), 0.2)
        );
        for i in [Interface::Matrix, Interface::Ematrix] {
            let p = d(i);
            assert_eq!(
                (
                    p.retries,
                    p.initial_interval,
                    p.multiplier,
                    p.max_interval,
                    p.jitter
                ),
                (3, ms(1000), 2.0, ms(60_000), 0.2)
            );
        }
        let am = d(Interface::Am);
        assert_eq!(
            (
                am.retries,
                am.initial_interval,
                am.multiplier,
                am.max_interval,
                am.jitter
            ),
            (8, ms(500), 2.0, ms(60_000), 0.2)
        );
        let ad = d(Interface::Ad);
        assert_eq!(
            (
                ad.retries,
                ad.initial_interval,
                ad.multiplier,
                ad.max_interval,
                ad.jitter
            ),
            (2, ms(200), 2.0, ms(2000), 0.2)
        );
        for i in Interface::ALL {
            d(i).validate().unwrap();
            assert_eq!(RetryPolicies::defaults().get(i), &d(i));
        }
        assert_eq!(
            RetryPolicies::load(None).unwrap(),
            RetryPolicies::defaults()
        );
    }

    #[test]
    fn no_retry_yields_nothing() {
        let p = RetryPolicy::no_retry();
        assert_eq!(p.retries, 0);
        let mut it = p.intervals();
        assert_eq!(it.len(), 0);
        assert_eq!(it.next(), None);
        p.validate().unwrap();
    }

    #[test]
    fn count_is_exact() {
        for retries in [0, 1, 2, 7, 100] {
            let p = RetryPolicy {
                retries,
                ..RetryPolicy::default_for(Interface::Am)
            };
            let mut it = p.intervals();
            assert_eq!(it.len(), retries as usize);
            assert_eq!(it.by_ref().count(), retries as usize);
            assert_eq!(it.next(), None, "fused after the last retry");
            assert_eq!(it.remaining(), 0);
        }
    }

    #[test]
    fn exact_without_jitter() {
        let p = RetryPolicy {
            retries: 6,
            initial_interval: ms(500),
            multiplier: 2.0,
            max_interval: ms(5000),
            jitter: 0.0,
        };
        let got: Vec<Duration> = p.intervals().collect();
        assert_eq!(
            got,
            [ms(500), ms(1000), ms(2000), ms(4000), ms(5000), ms(5000)]
        );
    }

    #[test]
    fn bounded_with_jitter_and_capped() {
        for iface in Interface::ALL {
            let p = RetryPolicy::default_for(iface);
            for _ in 0..200 {
                let got: Vec<Duration> = p.intervals().collect();
                assert_in_band(&p, &got);
            }
        }
        // Full jitter at the cap never exceeds the cap.
        let p = RetryPolicy {
            retries: 20,
            initial_interval: ms(100),
            multiplier: 10.0,
            max_interval: ms(1000),
            jitter: 1.0,
        };
        for _ in 0..200 {
            let got: Vec<Duration> = p.intervals().collect();
            assert_in_band(&p, &got);
            assert!(got.iter().all(|d| *d <= ms(1000)));
        }
    }

    #[test]
    fn jitter_actually_varies() {
        let p = RetryPolicy {
            retries: 10,
            ..RetryPolicy::default_for(Interface::Am)
        };
        let a: Vec<Duration> = p.intervals().collect();
        let b: Vec<Duration> = (0..20).flat_map(|_| p.intervals()).collect();
        assert!(b.chunks(10).any(|c| c != a.as_slice()));
    }

    #[test]
    fn out_of_range_fields_never_panic() {
        let weird = [
            RetryPolicy {
                retries: 5,
                initial_interval: Duration::ZERO,
                multiplier: f64::NAN,
                max_interval: Duration::ZERO,
                jitter: f64::NAN,
            },
            RetryPolicy {
                retries: 5,
                initial_interval: ms(1000),
                multiplier: -3.0,
                max_interval: ms(10),
                jitter: 7.0,
            },
            RetryPolicy {
                retries: 5,
                initial_interval: Duration::MAX,
                multiplier: f64::INFINITY,
                max_interval: Duration::MAX,
                jitter: -1.0,
            },
        ];
        for p in weird {
            assert!(p.validate().is_err());
            let got: Vec<Duration> = p.intervals().collect();
            assert_eq!(got.len(), 5);
            assert!(got.iter().all(|d| *d <= p.max_interval));
        }
    }

    #[test]
    fn parses_a_valid_file() {
        let p = RetryPolicy::from_toml_str(VALID).unwrap();
        assert_eq!(
            p,
            RetryPolicy {
                retries: 3,
                initial_interval: ms(250),
                multiplier: 1.5,
                max_interval: ms(4000),
                jitter: 0.1,
            }
        );
        // An integer multiplier and jitter are fine.
        let p = RetryPolicy::from_toml_str(
            "retries = 0\ninitial_interval_ms = 1\nmultiplier = 2\nmax_interval_ms = 1\njitter = 0\n",
        )
        .unwrap();
        assert_eq!((p.multiplier, p.jitter), (2.0, 0.0));
    }

    fn replace(field: &str, value: &str) -> String {
        VALID
            .lines()
            .map(|l| {
                if l.split('=').next().map(str::trim) == Some(field) {
                    format!("{field} = {value}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_invalid_field_is_named() {
        let cases = [
            ("retries", "101", "must be <= 100"),
            ("retries", "-1", "expected u32"),
            ("initial_interval_ms", "0", "must be > 0"),
            ("initial_interval_ms", "3600001", "must be <= 3600000"),
            ("multiplier", "0.5", "must be >= 1.0"),
            ("multiplier", "10.5", "must be <= 10.0"),
            ("multiplier", "nan", "must be >= 1.0"),
            ("max_interval_ms", "100", "must be >= initial_interval_ms"),
            ("max_interval_ms", "86400001", "must be <= 86400000"),
            ("jitter", "1.01", "must be between 0.0 and 1.0"),
            ("jitter", "-0.1", "must be between 0.0 and 1.0"),
            ("jitter", "nan", "must be between 0.0 and 1.0"),
            ("jitter", "\"0.2\"", "expected f64"),
            ("retries", "3.5", "expected u32"),
        ];
        for (field, value, problem) in cases {
            let text = replace(field, value);
            let err = RetryPolicy::from_toml_str(&text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("field \"{field}\": ")),
                "{field}={value}: {err}"
            );
            assert!(err.contains(problem), "{field}={value}: {err}");
            assert!(err.starts_with("retry policy <inline>: "), "{err}");
        }
        // In a directory, the message names the file too.
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &RetryPolicies::defaults());
        let am = dir.path().join("am.toml");
        std::fs::write(&am, replace("multiplier", "0.5")).unwrap();
        let err = RetryPolicies::load_dir(dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "retry policy {}: field \"multiplier\": must be >= 1.0 (got 0.5)",
                am.display()
            )
        );
    }

    #[test]
    fn missing_field_is_named_with_position() {
        let text = VALID.replace("jitter = 0.1\n", "");
        let err = RetryPolicy::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("field \"jitter\": "), "{err}");
        assert!(err.contains("missing field `jitter`"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn unknown_field_rejected_with_line() {
        let text = format!("{VALID}max_retries = 4\n");
        let err = RetryPolicy::from_toml_str(&text).unwrap_err();
        assert!(matches!(err, RetryConfigError::Syntax { .. }));
        let msg = err.to_string();
        assert!(msg.contains("field \"max_retries\": "), "{msg}");
        assert!(msg.contains("line 6"), "{msg}");
    }

    #[test]
    fn broken_toml_rejected() {
        let err = RetryPolicy::from_toml_str("retries = = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn missing_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &RetryPolicies::defaults());
        let ematrix = dir.path().join("ematrix.toml");
        std::fs::remove_file(&ematrix).unwrap();
        let err = RetryPolicies::load_dir(dir.path()).unwrap_err();
        assert!(matches!(err, RetryConfigError::Missing { .. }));
        assert!(
            err.to_string().contains(&ematrix.display().to_string()),
            "{err}"
        );
        // A missing directory is an error too, never the defaults.
        let gone = dir.path().join("nope");
        let err = RetryPolicies::load(Some(&gone)).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        // So is a file in place of the directory.
        let err = RetryPolicies::load_dir(&dir.path().join("om.toml")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn loads_custom_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut custom = RetryPolicies::defaults();
        custom.set(
            Interface::Matrix,
            RetryPolicy {
                retries: 10,
                initial_interval: ms(50),
                multiplier: 1.25,
                max_interval: ms(800),
                jitter: 0.5,
            },
        );
        write_all(dir.path(), &custom);
        assert_eq!(RetryPolicies::load_dir(dir.path()).unwrap(), custom);
    }

    #[test]
    fn example_config_dir_holds_the_defaults() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/retry");
        let loaded = RetryPolicies::load_dir(&dir).unwrap();
        assert_eq!(loaded, RetryPolicies::defaults());
    }

    fn valid_policy() -> impl Strategy<Value = RetryPolicy> {
        (
            0u32..=MAX_RETRIES,
            1u64..=3_600_000,
            MIN_MULTIPLIER..=MAX_MULTIPLIER,
            0u64..=86_400_000,
            0.0f64..=1.0,
        )
            .prop_map(|(retries, initial, multiplier, extra, jitter)| {
                let max = (initial + extra).min(86_400_000);
                RetryPolicy {
                    retries,
                    initial_interval: ms(initial),
                    multiplier,
                    max_interval: ms(max),
                    jitter,
                }
            })
    }

    proptest! {
        #[test]
        fn intervals_stay_in_bounds(p in valid_policy()) {
            prop_assert!(p.validate().is_ok());
            let got: Vec<Duration> = p.intervals().collect();
            prop_assert_eq!(got.len(), p.retries as usize);
            assert_in_band(&p, &got);
        }
    }
}
