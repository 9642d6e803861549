//! Operator logins (spec auth-and-config.md, "Login"): IM accounts in `LOCAL`
//! mode (Argon2id hash) or `AD` mode (a bind against Active Directory / LDAP
//! over TLS, see the `ad` feature), lockout after repeated failures, the last
//! login time, and the append-only login log.
//!
//! Rules, whatever the mode: the account must exist in IM and be enabled; an
//! empty password is refused before any check; a locked account is refused
//! without checking its password; every attempt (and every logout) is one row
//! of the login log, with the account as text, the IP, the time, the outcome
//! and the reason — never the password. Argon2 runs on the core's read
//! threads and the LDAP exchange on a thread of its own, so
//! [`Im::login`](crate::Im::login) never blocks the runtime it is awaited on.

use crate::retry::{Interface, RetryPolicy};
use crate::store::{StoreError, StoreResult, WriteConn};
use crate::{CoreError, Im, auth};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

/// Longest login kept (longer ones are refused as unknown and logged cut).
pub const MAX_LOGIN_LEN: usize = 128;
/// Longest password checked (longer ones are refused without a check).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Most directory checks running at once (then [`LoginError::Busy`]).
#[cfg(feature = "ad")]
const MAX_DIRECTORY_CHECKS: usize = 32;

/// How an account proves its password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMode {
    /// Against the Argon2id hash in IM's database.
    Local,
    /// Against Active Directory (LDAP bind over TLS).
    Ad,
}

impl AuthMode {
    /// `LOCAL` or `AD`, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMode::Local => "LOCAL",
            AuthMode::Ad => "AD",
        }
    }

    /// Parses `LOCAL` / `AD` (any case).
    ///
    /// ```
    /// use im_core::login::AuthMode;
    /// assert_eq!(AuthMode::parse("ad"), Some(AuthMode::Ad));
    /// assert_eq!(AuthMode::parse("x"), None);
    /// ```
    pub fn parse(s: &str) -> Option<AuthMode> {
        if s.eq_ignore_ascii_case("LOCAL") {
            Some(AuthMode::Local)
        } else if s.eq_ignore_ascii_case("AD") {
            Some(AuthMode::Ad)
        } else {
            None
        }
    }
}

/// Who logged in: the account as stored, its display name and role codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The login as stored in IM (its case, whatever was typed).
    pub account: String,
    /// Display name.
    pub display_name: String,
    /// How the password was checked.
    pub mode: AuthMode,
    /// Role codes (`ROLE_TECH_L1`, …), sorted.
    pub roles: Vec<String>,
}

/// Why a login was refused. Callers should show users one generic message
/// for all of them (the reason is in the login log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The password was empty (refused before any check or bind).
    EmptyPassword,
    /// No IM account of that login (also an AD user with no IM account).
    UnknownAccount,
    /// The IM account is disabled.
    Disabled,
    /// The account is locked after repeated failures.
    Locked,
    /// The password is wrong (or the directory holds no such user).
    WrongPassword,
    /// An AD account, but this IM has no AD settings (or no AD support).
    DirectoryNotConfigured,
    /// The directory refused the bind for another reason than a wrong
    /// password (its result code is in the log).
    DirectoryRefused,
}

impl Refusal {
    /// A short reason, as written in the login log.
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::EmptyPassword => "empty password",
            Refusal::UnknownAccount => "unknown account",
            Refusal::Disabled => "account disabled",
            Refusal::Locked => "account locked",
            Refusal::WrongPassword => "wrong password",
            Refusal::DirectoryNotConfigured => "AD account but no AD configured",
            Refusal::DirectoryRefused => "directory refused the bind",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed login.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The credentials were not accepted (see [`Refusal`]).
    #[error("login refused")]
    Refused(Refusal),
    /// The directory (AD) could not be reached or used after the `ad` retry
    /// policy, or its certificate was not trusted. Nobody is let in.
    #[error("the directory is unavailable; try again later")]
    DirectoryUnavailable,
    /// Too many directory checks in progress; try again.
    #[error("too many logins in progress; try again")]
    Busy,
    /// The core failed (storage, closed).
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl LoginError {
    /// The refusal, when the credentials were refused.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            LoginError::Refused(r) => Some(*r),
            _ => None,
        }
    }
}

/// A value that never appears in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> SecretString {
        SecretString(s.into())
    }

    /// The secret itself (for the bind only).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// How the directory entry to bind as is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdLookup {
    /// Bind as a service account, search `base_dn` (subtree) with `filter`
    /// (`{user}` replaced by the login escaped per RFC 4515), expect exactly
    /// one entry and bind as its DN with the user's password.
    Search {
        /// The service account's DN (or, on AD, its UPN).
        bind_dn: String,
        /// The service account's password.
        bind_password: SecretString,
        /// Where users live, e.g. `ou=people,dc=example,dc=com`.
        base_dn: String,
        /// Default `(sAMAccountName={user})`.
        filter: String,
    },
    /// Bind directly as the template with `{user}` replaced: a DN
    /// (`uid={user},ou=people,dc=example,dc=com`; the user escaped per
    /// RFC 4514) or, without `=`, a UPN (`{user}@corp.example`, what AD
    /// accepts; logins holding `@ , = + \ " < > ; # * ( )` or control
    /// characters are refused).
    Template(String),
}

/// The default search filter.
pub const DEFAULT_AD_FILTER: &str = "(sAMAccountName={user})";

/// Active Directory (LDAP) settings for `AD` accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdConfig {
    /// `ldaps://host:636` (TLS from the start), or `ldap://host:389` with
    /// `starttls` or `insecure_plain_for_tests`.
    pub url: String,
    /// PEM file of the CA(s) that sign the directory's certificate. Required
    /// for TLS: the certificate is always verified against it.
    pub ca_file: Option<PathBuf>,
    /// Upgrade an `ldap://` connection with StartTLS. Default false.
    pub starttls: bool,
    /// Allow `ldap://` without TLS: passwords travel in clear. For tests
    /// only. Default false.
    pub insecure_plain_for_tests: bool,
    /// How the user's entry is found.
    pub lookup: AdLookup,
    /// Time to connect (TCP and TLS). Default 5 s.
    pub connect_timeout: Duration,
    /// Time for each LDAP operation (bind, search). Default 10 s.
    pub operation_timeout: Duration,
}

impl AdConfig {
    /// LDAPS at `url` verified against `ca_file`, with the service-account
    /// search and the default filter.
    pub fn search(
        url: impl Into<String>,
        ca_file: impl Into<PathBuf>,
        bind_dn: impl Into<String>,
        bind_password: impl Into<String>,
        base_dn: impl Into<String>,
    ) -> AdConfig {
        AdConfig {
            url: url.into(),
            ca_file: Some(ca_file.into()),
            starttls: false,
            insecure_plain_for_tests: false,
            lookup: AdLookup::Search {
                bind_dn: bind_dn.into(),
                bind_password: SecretString::new(bind_password),
                base_dn: base_dn.into(),
                filter: DEFAULT_AD_FILTER.into(),
            },
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(10),
        }
    }

    /// LDAPS at `url` verified against `ca_file`, binding with a template
    /// (see [`AdLookup::Template`]).
    pub fn template(
        url: impl Into<String>,
        ca_file: impl Into<PathBuf>,
        template: impl Into<String>,
    ) -> AdConfig {
        AdConfig {
            lookup: AdLookup::Template(template.into()),
            ..AdConfig::search(url, ca_file, "", "", "")
        }
    }

    /// Checks the settings that need no network.
    ///
    /// # Errors
    ///
    /// A message naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        let url = self.url.trim().to_ascii_lowercase();
        if url.starts_with("ldaps://") {
            if self.starttls {
                return Err("ad.starttls: not with an ldaps:// url".into());
            }
        } else if url.starts_with("ldap://") {
            if !self.starttls && !self.insecure_plain_for_tests {
                return Err("ad.url: ldap:// needs starttls (or insecure_plain_for_tests, for tests only); use ldaps://".into());
            }
        } else {
            return Err(format!(
                "ad.url: {:?} is neither ldaps:// nor ldap://",
                self.url
            ));
        }
        let tls = url.starts_with("ldaps://") || self.starttls;
        if tls && self.ca_file.is_none() {
            return Err(
                "ad.ca_file: required for TLS (the directory's certificate is verified against it)"
                    .into(),
            );
        }
        if self.connect_timeout.is_zero() || self.operation_timeout.is_zero() {
            return Err("ad.connect_timeout / ad.operation_timeout: must be > 0".into());
        }
        match &self.lookup {
            AdLookup::Search {
                bind_dn,
                bind_password,
                base_dn,
                filter,
            } => {
                if bind_dn.trim().is_empty() || bind_password.expose().is_empty() {
                    return Err("ad.bind_dn / ad.bind_password: required for the search".into());
                }
                if base_dn.trim().is_empty() {
                    return Err("ad.base_dn: required for the search".into());
                }
                if !filter.contains("{user}") {
                    return Err("ad.filter: must contain {user}".into());
                }
            }
            AdLookup::Template(t) => {
                if !t.contains("{user}") {
                    return Err("ad.bind_template: must contain {user}".into());
                }
            }
        }
        Ok(())
    }
}

/// Login settings (part of [`crate::CoreConfig`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LoginConfig {
    /// Failed attempts in a row that lock an account. Default 5; 0 never locks.
    pub max_failures: u32,
    /// How long a lock lasts. Default 15 min.
    pub lockout: Duration,
    /// The directory for `AD` accounts. Default none (AD accounts refused).
    pub ad: Option<AdConfig>,
    /// Retries on directory connection failures (never on a wrong
    /// password). Default [`RetryPolicy::default_for`]`(Interface::Ad)`.
    pub ad_retry: RetryPolicy,
}

impl Default for LoginConfig {
    fn default() -> LoginConfig {
        LoginConfig {
            max_failures: 5,
            lockout: Duration::from_secs(15 * 60),
            ad: None,
            ad_retry: RetryPolicy::default_for(Interface::Ad),
        }
    }
}

/// An account as login needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAccount {
    /// Row id.
    pub id: i64,
    /// Login as stored.
    pub login: String,
    /// Display name.
    pub display_name: String,
    /// Auth mode.
    pub mode: AuthMode,
    /// Enabled flag.
    pub enabled: bool,
    /// Argon2id PHC string (LOCAL only).
    pub password_hash: Option<String>,
    /// Failed attempts in a row.
    pub failed_logins: u32,
    /// Locked until this time (RFC 3339, UTC, milliseconds).
    pub locked_until: Option<String>,
    /// Time of the last successful login.
    pub last_login: Option<String>,
    /// Role codes, sorted.
    pub roles: Vec<String>,
}

/// A login-log event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginEvent {
    /// A login attempt.
    Login,
    /// A logout.
    Logout,
}

impl LoginEvent {
    /// `LOGIN` or `LOGOUT`, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            LoginEvent::Login => "LOGIN",
            LoginEvent::Logout => "LOGOUT",
        }
    }
}

/// One row of the login log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLogEntry {
    /// Row id (ascending with time).
    pub id: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The account as typed (or as stored, once known).
    pub account: String,
    /// The caller's address.
    pub ip: String,
    /// Login or logout.
    pub event: LoginEvent,
    /// Whether it succeeded.
    pub success: bool,
    /// Why it failed (empty on success).
    pub reason: String,
    /// The account's mode, when the account exists.
    pub auth_mode: Option<AuthMode>,
}

/// A login-log row to append.
#[derive(Debug, Clone)]
pub struct LoginLogWrite<'a> {
    /// When.
    pub at: &'a str,
    /// The account as text.
    pub account: &'a str,
    /// The caller's address.
    pub ip: &'a str,
    /// Login or logout.
    pub event: LoginEvent,
    /// Whether it succeeded.
    pub success: bool,
    /// Why it failed.
    pub reason: &'a str,
    /// The account's mode, when known.
    pub auth_mode: Option<AuthMode>,
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewAccount<'a> {
    /// Login.
    pub login: &'a str,
    /// Display name.
    pub display_name: &'a str,
    /// Mode.
    pub mode: AuthMode,
    /// Argon2id hash (LOCAL only).
    pub password_hash: Option<&'a str>,
    /// Creation time.
    pub at: &'a str,
}

/// Login reads, implemented by every store's connections.
pub trait LoginRead {
    /// The account `login` (case-insensitive) with its roles.
    fn login_account(&mut self, login: &str) -> StoreResult<Option<LoginAccount>>;
    /// The newest `limit` login-log rows, newest first, of one account
    /// (case-insensitive) or of all.
    fn login_log(&mut self, account: Option<&str>, limit: usize)
    -> StoreResult<Vec<LoginLogEntry>>;
}

/// Login writes, implemented by every store's writer.
pub trait LoginWrite: LoginRead {
    /// Inserts an account (enabled); a taken login is a constraint error.
    fn insert_account(&mut self, account: &NewAccount<'_>) -> StoreResult<i64>;
    /// Grants a role by code; `false` when no such role exists.
    fn grant_role(&mut self, account_id: i64, role_code: &str) -> StoreResult<bool>;
    /// Enables or disables; `false` when no such account.
    fn set_account_enabled(&mut self, login: &str, enabled: bool, at: &str) -> StoreResult<bool>;
    /// Replaces the password hash (bumps its version, clears a lock);
    /// `false` when no such account.
    fn set_account_password(&mut self, login: &str, hash: &str, at: &str) -> StoreResult<bool>;
    /// Sets the failure counter and lock, and the last login when given.
    fn set_login_state(
        &mut self,
        account_id: i64,
        failed_logins: u32,
        locked_until: Option<&str>,
        last_login: Option<&str>,
    ) -> StoreResult<()>;
    /// Appends one login-log row.
    fn append_login_log(&mut self, entry: &LoginLogWrite<'_>) -> StoreResult<()>;
}

/// The outcome of one attempt, for the writer.
#[derive(Debug)]
pub(crate) struct Attempt {
    account: String,
    account_id: Option<i64>,
    mode: Option<AuthMode>,
    ip: String,
    at: String,
    success: bool,
    reason: String,
    /// Whether a failure counts toward the lockout.
    counts: bool,
    max_failures: u32,
    lock_until: String,
}

/// A change the writer makes for logins.
#[derive(Debug)]
pub(crate) enum WriterOp {
    Attempt(Attempt),
    Logout {
        account: String,
        ip: String,
        at: String,
    },
    CreateAccount {
        login: String,
        display_name: String,
        mode: AuthMode,
        hash: Option<String>,
        roles: Vec<String>,
        at: String,
    },
    SetEnabled {
        login: String,
        enabled: bool,
        at: String,
    },
    SetPassword {
        login: String,
        hash: String,
        at: String,
    },
}

/// The writer's answer.
#[derive(Debug)]
pub(crate) enum WriterReply {
    /// The attempt is logged; `false` when a success was turned into a
    /// refusal because the account got locked meanwhile.
    Attempt(bool),
    Done,
}

/// Runs one login change in its own transaction.
pub(crate) fn run_writer_op<W: WriteConn>(
    conn: &mut W,
    op: WriterOp,
) -> Result<WriterReply, CoreError> {
    conn.begin()?;
    let r = apply(conn, op);
    match r {
        Ok(v) => match conn.commit() {
            Ok(()) => Ok(v),
            Err(e) => {
                conn.rollback();
                Err(e.into())
            }
        },
        Err(e) => {
            conn.rollback();
            Err(e)
        }
    }
}

fn apply<W: WriteConn>(conn: &mut W, op: WriterOp) -> Result<WriterReply, CoreError> {
    match op {
        WriterOp::Attempt(a) => {
            let mut success = a.success;
            let mut reason = a.reason.clone();
            if let Some(id) = a.account_id
                && let Some(acc) = conn.login_account(&a.account)?
                && acc.id == id
            {
                let locked = acc
                    .locked_until
                    .as_deref()
                    .is_some_and(|u| u > a.at.as_str());
                if success && locked {
                    success = false;
                    reason = Refusal::Locked.as_str().into();
                }
                if success {
                    conn.set_login_state(id, 0, None, Some(&a.at))?;
                } else if a.counts && a.max_failures > 0 {
                    // A lock that has run out starts a fresh count.
                    let expired = acc.locked_until.is_some() && !locked;
                    let before = if expired { 0 } else { acc.failed_logins };
                    let failed = before.saturating_add(1);
                    if failed >= a.max_failures {
                        conn.set_login_state(id, 0, Some(&a.lock_until), None)?;
                        reason = format!("{reason}; account locked until {}", a.lock_until);
                    } else {
                        let keep = if expired {
                            None
                        } else {
                            acc.locked_until.as_deref()
                        };
                        conn.set_login_state(id, failed, keep, None)?;
                    }
                }
            }
            conn.append_login_log(&LoginLogWrite {
                at: &a.at,
                account: &a.account,
                ip: &a.ip,
                event: LoginEvent::Login,
                success,
                reason: &reason,
                auth_mode: a.mode,
            })?;
            Ok(WriterReply::Attempt(success))
        }
        WriterOp::Logout { account, ip, at } => {
            let mode = conn.login_account(&account)?.map(|a| a.mode);
            conn.append_login_log(&LoginLogWrite {
                at: &at,
                account: &account,
                ip: &ip,
                event: LoginEvent::Logout,
                success: true,
                reason: "",
                auth_mode: mode,
            })?;
            Ok(WriterReply::Done)
        }
        WriterOp::CreateAccount {
            login,
            display_name,
            mode,
            hash,
            roles,
            at,
        } => {
            let id = conn
                .insert_account(&NewAccount {
                    login: &login,
                    display_name: &display_name,
                    mode,
                    password_hash: hash.as_deref(),
                    at: &at,
                })
                .map_err(|e| match e {
                    StoreError::Constraint(_) => {
                        CoreError::Invalid(format!("account {login:?} exists already"))
                    }
                    e => e.into(),
                })?;
            for role in &roles {
                if !conn.grant_role(id, role)? {
                    return Err(CoreError::Invalid(format!("no role {role:?}")));
                }
            }
            Ok(WriterReply::Done)
        }
        WriterOp::SetEnabled { login, enabled, at } => {
            if conn.set_account_enabled(&login, enabled, &at)? {
                Ok(WriterReply::Done)
            } else {
                Err(CoreError::Invalid(format!("no account {login:?}")))
            }
        }
        WriterOp::SetPassword { login, hash, at } => {
            match conn.login_account(&login)? {
                None => return Err(CoreError::Invalid(format!("no account {login:?}"))),
                Some(a) if a.mode != AuthMode::Local => {
                    return Err(CoreError::Invalid(format!(
                        "account {login:?} is an AD account: its password lives in AD"
                    )));
                }
                Some(_) => {}
            }
            conn.set_account_password(&login, &hash, &at)?;
            Ok(WriterReply::Done)
        }
    }
}

/// What the core keeps for logins: the settings and the directory client.
pub(crate) struct LoginState {
    config: LoginConfig,
    #[cfg(feature = "ad")]
    ad: Option<Arc<crate::ad::AdClient>>,
    directory_checks: Arc<AtomicUsize>,
}

impl LoginState {
    /// Validates the settings and prepares the directory client (its TLS
    /// configuration, from the CA file).
    pub(crate) fn new(config: &LoginConfig) -> Result<LoginState, CoreError> {
        #[cfg(feature = "ad")]
        let ad = match &config.ad {
            Some(ad) => Some(Arc::new(
                crate::ad::AdClient::new(ad, config.ad_retry).map_err(CoreError::Invalid)?,
            )),
            None => None,
        };
        #[cfg(not(feature = "ad"))]
        if config.ad.is_some() {
            return Err(CoreError::Invalid(
                "AD settings given, but this build of IM has no AD support (cargo feature `ad`)"
                    .into(),
            ));
        }
        Ok(LoginState {
            config: config.clone(),
            #[cfg(feature = "ad")]
            ad,
            directory_checks: Arc::new(AtomicUsize::new(0)),
        })
    }
}

/// What the directory said.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "ad"), allow(dead_code))]
pub(crate) enum DirectoryVerdict {
    /// The bind succeeded.
    Accepted,
    /// Wrong password, or no (or several) entries for the user: `reason`.
    Wrong(String),
    /// Refused for another reason (result code in `reason`).
    Refused(String),
    /// Unreachable or unusable: `reason`.
    Unavailable(String),
    /// No directory configured.
    NotConfigured,
}

fn clip(s: &str, max: usize) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s,
    }
}

fn check_login_text(login: &str) -> Result<String, CoreError> {
    let l = login.trim();
    if l.is_empty() || l.chars().count() > MAX_LOGIN_LEN || l.chars().any(char::is_control) {
        return Err(CoreError::Invalid(format!(
            "a login is 1 to {MAX_LOGIN_LEN} characters, without control characters"
        )));
    }
    Ok(l.to_string())
}

/// A hash to verify against when the account is unknown, so that an
/// unknown login costs the same time as a wrong password.
fn dummy_hash() -> Option<&'static str> {
    static H: OnceLock<Option<String>> = OnceLock::new();
    H.get_or_init(|| auth::hash_password("im-dummy-password-for-timing").ok())
        .as_deref()
}

enum Check {
    Unknown,
    Refused(LoginAccount, Refusal),
    LocalOk(LoginAccount),
    LocalWrong(LoginAccount),
    NeedDirectory(LoginAccount),
}

struct SlotGuard(Arc<AtomicUsize>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Im {
    /// Logs an operator in (spec "Login"): the account must exist in IM and
    /// be enabled; `LOCAL` checks the Argon2id hash, `AD` binds to the
    /// directory. An empty password is refused before any check; a locked
    /// account is refused without a check; failures lock the account after
    /// [`LoginConfig::max_failures`] for [`LoginConfig::lockout`]. Every
    /// attempt is appended to the login log (never the password). Never
    /// blocks the runtime it is awaited on, and needs none.
    ///
    /// # Errors
    ///
    /// [`LoginError::Refused`] with the reason, [`LoginError::DirectoryUnavailable`]
    /// when AD cannot be reached after the `ad` retry policy or its certificate
    /// is not trusted, [`LoginError::Busy`], or [`LoginError::Core`].
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        ip: &str,
    ) -> Result<Principal, LoginError> {
        let state = Arc::clone(self.login_state());
        let typed = clip(login.trim(), MAX_LOGIN_LEN);
        let ip = clip(ip.trim(), 64);
        let too_long = login.trim().chars().count() > MAX_LOGIN_LEN;
        let refuse = |acc: Option<(i64, AuthMode)>, r: Refusal, counts: bool| {
            self.attempt(
                &state.config,
                &typed,
                acc,
                &ip,
                false,
                r.as_str().into(),
                counts,
            )
        };
        if password.is_empty() {
            refuse(None, Refusal::EmptyPassword, false).await?;
            return Err(LoginError::Refused(Refusal::EmptyPassword));
        }
        if too_long || typed.is_empty() {
            refuse(None, Refusal::UnknownAccount, false).await?;
            return Err(LoginError::Refused(Refusal::UnknownAccount));
        }
        let now = crate::lifecycle::stamp(SystemTime::now());
        let (l, pw, long_pw) = (
            typed.clone(),
            password.to_string(),
            password.len() > MAX_PASSWORD_LEN,
        );
        let check = self
            .login_read(move |r| {
                let Some(acc) = r.login_account(&l)? else {
                    if let Some(h) = dummy_hash() {
                        let _ = auth::verify_password(&pw, h);
                    }
                    return Ok(Check::Unknown);
                };
                if !acc.enabled {
                    return Ok(Check::Refused(acc, Refusal::Disabled));
                }
                if acc
                    .locked_until
                    .as_deref()
                    .is_some_and(|u| u > now.as_str())
                {
                    return Ok(Check::Refused(acc, Refusal::Locked));
                }
                Ok(match acc.mode {
                    AuthMode::Ad => Check::NeedDirectory(acc),
                    AuthMode::Local => match &acc.password_hash {
                        Some(h) if !long_pw && auth::verify_password(&pw, h) => Check::LocalOk(acc),
                        _ => Check::LocalWrong(acc),
                    },
                })
            })
            .await
            .map_err(CoreError::from)?;
        let (acc, success, reason, counts) = match check {
            Check::Unknown => {
                refuse(None, Refusal::UnknownAccount, false).await?;
                return Err(LoginError::Refused(Refusal::UnknownAccount));
            }
            Check::Refused(acc, r) => {
                let id = Some((acc.id, acc.mode));
                self.attempt(
                    &state.config,
                    &acc.login,
                    id,
                    &ip,
                    false,
                    r.as_str().into(),
                    false,
                )
                .await?;
                return Err(LoginError::Refused(r));
            }
            Check::LocalOk(acc) => (acc, Ok(()), String::new(), false),
            Check::LocalWrong(acc) => (
                acc,
                Err(LoginError::Refused(Refusal::WrongPassword)),
                Refusal::WrongPassword.as_str().to_string(),
                true,
            ),
            Check::NeedDirectory(acc) => {
                let verdict = self.check_directory(&state, &acc.login, password).await?;
                match verdict {
                    DirectoryVerdict::Accepted => (acc, Ok(()), String::new(), false),
                    DirectoryVerdict::Wrong(why) => (
                        acc,
                        Err(LoginError::Refused(Refusal::WrongPassword)),
                        why,
                        true,
                    ),
                    DirectoryVerdict::Refused(why) => (
                        acc,
                        Err(LoginError::Refused(Refusal::DirectoryRefused)),
                        why,
                        true,
                    ),
                    DirectoryVerdict::NotConfigured => (
                        acc,
                        Err(LoginError::Refused(Refusal::DirectoryNotConfigured)),
                        Refusal::DirectoryNotConfigured.as_str().to_string(),
                        false,
                    ),
                    DirectoryVerdict::Unavailable(why) => (
                        acc,
                        Err(LoginError::DirectoryUnavailable),
                        format!("directory unavailable: {why}"),
                        false,
                    ),
                }
            }
        };
        let logged_in = self
            .attempt(
                &state.config,
                &acc.login,
                Some((acc.id, acc.mode)),
                &ip,
                success.is_ok(),
                reason,
                counts,
            )
            .await?;
        match success {
            Ok(()) if logged_in => {
                tracing::info!(account = %acc.login, ip = %ip, mode = acc.mode.as_str(), "login");
                Ok(Principal {
                    account: acc.login,
                    display_name: acc.display_name,
                    mode: acc.mode,
                    roles: acc.roles,
                })
            }
            Ok(()) => Err(LoginError::Refused(Refusal::Locked)),
            Err(e) => {
                tracing::warn!(account = %acc.login, ip = %ip, error = %e, "login refused");
                Err(e)
            }
        }
    }

    /// Records a SOAP call that the OM credentials check refused (-1002) in
    /// the login log: the `authusername` as given (cut to
    /// [`MAX_LOGIN_LEN`]), the caller's address, `LOCAL` mode. It never
    /// counts toward the account's lockout: a wrong OM configuration must
    /// not become an outage once it is fixed. Callers rate-limit it per
    /// address.
    ///
    /// # Errors
    ///
    /// [`CoreError::Closed`] after [`Im::close`], storage failures.
    pub async fn record_om_auth_failure(&self, account: &str, ip: &str) -> Result<(), CoreError> {
        let account: String = account.chars().take(MAX_LOGIN_LEN).collect();
        let at = crate::lifecycle::stamp(SystemTime::now());
        let op = WriterOp::Attempt(Attempt {
            account,
            account_id: None,
            mode: Some(AuthMode::Local),
            ip: ip.chars().take(64).collect(),
            lock_until: at.clone(),
            at,
            success: false,
            reason: "OM call refused (-1002): wrong credentials, disabled account or no OM right"
                .into(),
            counts: false,
            max_failures: 0,
        });
        self.login_write(op).await.map(|_| ())
    }

    /// Appends one attempt to the login log (through the writer) and keeps
    /// the account's counters; returns whether a success stands.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        config: &LoginConfig,
        account: &str,
        acc: Option<(i64, AuthMode)>,
        ip: &str,
        success: bool,
        reason: String,
        counts: bool,
    ) -> Result<bool, LoginError> {
        let when = SystemTime::now();
        let op = WriterOp::Attempt(Attempt {
            account: account.to_string(),
            account_id: acc.map(|a| a.0),
            mode: acc.map(|a| a.1),
            ip: ip.to_string(),
            at: crate::lifecycle::stamp(when),
            success,
            reason,
            counts,
            max_failures: config.max_failures,
            lock_until: crate::lifecycle::stamp(when + config.lockout),
        });
        match self.login_write(op).await? {
            WriterReply::Attempt(ok) => Ok(ok),
            WriterReply::Done => Ok(success),
        }
    }

    #[cfg(feature = "ad")]
    async fn check_directory(
        &self,
        state: &LoginState,
        user: &str,
        password: &str,
    ) -> Result<DirectoryVerdict, LoginError> {
        let Some(client) = state.ad.as_ref().map(Arc::clone) else {
            return Ok(DirectoryVerdict::NotConfigured);
        };
        let running = state.directory_checks.fetch_add(1, Ordering::AcqRel);
        let _slot = SlotGuard(Arc::clone(&state.directory_checks));
        if running >= MAX_DIRECTORY_CHECKS {
            return Err(LoginError::Busy);
        }
        let (tx, rx) = oneshot::channel();
        let (user, password) = (user.to_string(), password.to_string());
        std::thread::Builder::new()
            .name("im-ad-login".into())
            .spawn(move || {
                let _ = tx.send(client.check_blocking(&user, &password));
            })
            .map_err(|e| CoreError::Invalid(format!("cannot start a directory thread: {e}")))?;
        rx.await
            .map_err(|_| LoginError::Core(CoreError::Invalid("the directory check stopped".into())))
    }

    #[cfg(not(feature = "ad"))]
    async fn check_directory(
        &self,
        state: &LoginState,
        _user: &str,
        _password: &str,
    ) -> Result<DirectoryVerdict, LoginError> {
        let _ = (
            &state.directory_checks,
            SlotGuard(Arc::new(AtomicUsize::new(1))),
        );
        Ok(DirectoryVerdict::NotConfigured)
    }

    /// Logs a logout in the login log.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub async fn logout(&self, account: &str, ip: &str) -> Result<(), CoreError> {
        self.login_write(WriterOp::Logout {
            account: clip(account.trim(), MAX_LOGIN_LEN),
            ip: clip(ip.trim(), 64),
            at: crate::lifecycle::stamp(SystemTime::now()),
        })
        .await
        .map(|_| ())
    }

    /// Creates an account (enabled) with role codes. `LOCAL` needs a
    /// non-empty password (stored as an Argon2id hash); `AD` takes none.
    ///
    /// # Errors
    ///
    /// [`CoreError::Invalid`] for a bad login, a taken login, a missing or
    /// unexpected password, or an unknown role.
    pub async fn create_account(
        &self,
        login: &str,
        display_name: &str,
        mode: AuthMode,
        password: Option<&str>,
        roles: &[&str],
    ) -> Result<(), CoreError> {
        let login = check_login_text(login)?;
        let hash = match (mode, password) {
            (AuthMode::Local, Some(p)) if !p.is_empty() => Some(self.hash_on_reader(p).await?),
            (AuthMode::Local, _) => {
                return Err(CoreError::Invalid(
                    "a LOCAL account needs a non-empty password".into(),
                ));
            }
            (AuthMode::Ad, None) => None,
            (AuthMode::Ad, Some(_)) => {
                return Err(CoreError::Invalid(
                    "an AD account has no password in IM".into(),
                ));
            }
        };
        self.login_write(WriterOp::CreateAccount {
            login,
            display_name: display_name.trim().to_string(),
            mode,
            hash,
            roles: roles.iter().map(|r| r.trim().to_string()).collect(),
            at: crate::lifecycle::stamp(SystemTime::now()),
        })
        .await
        .map(|_| ())
    }

    /// Enables or disables an account (accounts are never deleted).
    ///
    /// # Errors
    ///
    /// [`CoreError::Invalid`] for an unknown account.
    pub async fn set_enabled(&self, login: &str, enabled: bool) -> Result<(), CoreError> {
        self.login_write(WriterOp::SetEnabled {
            login: login.trim().to_string(),
            enabled,
            at: crate::lifecycle::stamp(SystemTime::now()),
        })
        .await
        .map(|_| ())
    }

    /// Sets a `LOCAL` account's password (and clears its lock); drops the
    /// cached OM credentials.
    ///
    /// # Errors
    ///
    /// [`CoreError::Invalid`] for an empty password, an unknown or `AD` account.
    pub async fn set_password(&self, login: &str, password: &str) -> Result<(), CoreError> {
        if password.is_empty() {
            return Err(CoreError::Invalid("empty password".into()));
        }
        let hash = self.hash_on_reader(password).await?;
        let r = self
            .login_write(WriterOp::SetPassword {
                login: login.trim().to_string(),
                hash,
                at: crate::lifecycle::stamp(SystemTime::now()),
            })
            .await
            .map(|_| ());
        self.clear_credential_cache();
        r
    }

    /// The account as login sees it (roles, counters, last login), or `None`.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub async fn login_account(&self, login: &str) -> Result<Option<LoginAccount>, CoreError> {
        let l = login.trim().to_string();
        Ok(self.login_read(move |r| r.login_account(&l)).await?)
    }

    /// The newest `limit` login-log rows, newest first, of one account or all.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub async fn login_log(
        &self,
        account: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LoginLogEntry>, CoreError> {
        let a = account.map(|s| s.trim().to_string());
        Ok(self
            .login_read(move |r| r.login_log(a.as_deref(), limit))
            .await?)
    }

    async fn hash_on_reader(&self, password: &str) -> Result<String, CoreError> {
        let p = password.to_string();
        self.login_read(move |_| Ok(auth::hash_password(&p)))
            .await?
    }

    async fn login_write(&self, op: WriterOp) -> Result<WriterReply, CoreError> {
        let (tx, rx) = oneshot::channel();
        self.send_login_op(op, tx)?;
        rx.await.map_err(|_| CoreError::Closed)?
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_and_drops_controls() {
        assert_eq!(clip("ab\u{0}c\nd", 10), "abcd");
        assert_eq!(clip("ééééé", 3), "ééé");
    }

    #[test]
    fn config_validation() {
        let ok = AdConfig::search("ldaps://h:636", "/ca.pem", "cn=svc", "pw", "dc=x");
        ok.validate().unwrap();
        let mut c = ok.clone();
        c.url = "ldap://h:389".into();
        assert!(c.validate().unwrap_err().contains("starttls"));
        c.starttls = true;
        c.validate().unwrap();
        c.starttls = false;
        c.insecure_plain_for_tests = true;
        c.ca_file = None;
        c.validate().unwrap();
        let mut c = ok.clone();
        c.ca_file = None;
        assert!(c.validate().unwrap_err().contains("ca_file"));
        let c = AdConfig::template("ldaps://h", "/ca.pem", "uid=x,dc=y");
        assert!(c.validate().unwrap_err().contains("{user}"));
        let c = AdConfig::template("http://h", "/ca.pem", "{user}@x");
        assert!(c.validate().is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        let c = AdConfig::search("ldaps://h", "/ca.pem", "cn=svc", "hunter2", "dc=x");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
