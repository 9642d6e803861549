//! The server's configuration: a TOML file, every setting optional.
//!
//! ```
//! let cfg = im_soap::ServerConfig::from_toml_str(r#"
//! listen = "0.0.0.0:9090"
//! response_element = "EgyptWorkSheetAllReturn"
//! body_limit = 2097152
//! header_read_timeout = "5s"
//! [store]
//! synchronous = "normal"
//! "#).unwrap();
//! assert_eq!(cfg.listen.port(), 9090);
//! assert_eq!(cfg.header_read_timeout.get(), std::time::Duration::from_secs(5));
//! assert_eq!(cfg.key_file(), std::path::PathBuf::from("./data/im.key"));
//! ```

use crate::result_xml::ReturnElement;
use crate::xml::XmlLimits;
use im_core::{CoreConfig, Synchronous};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors of reading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a setting is unknown or invalid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file (or `<string>`).
        path: String,
        /// What is wrong, with line and column.
        message: String,
    },
}

/// A duration written in the TOML file as `"250ms"`, `"10s"`, `"2m"`,
/// `"1h"`, or as a bare integer number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }

    /// Parses `"250ms"`, `"10s"`, `"2m"`, `"1h"` or `"10"` (seconds).
    pub fn parse(s: &str) -> Option<HumanDuration> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().ok()?;
        let d = match unit.trim() {
            "" | "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            _ => return None,
        };
        Some(HumanDuration(d))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Ok(HumanDuration(Duration::from_secs(n))),
            Raw::Text(s) => HumanDuration::parse(&s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} (use e.g. \"500ms\", \"10s\", \"2m\")"
                ))
            }),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Request size and XML shape limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body in bytes (413 beyond).
    pub body_bytes: usize,
    /// Limits on the SOAP envelope (a `Client` Fault beyond).
    pub envelope: XmlLimits,
    /// Limits on the form document (-1001 beyond).
    pub form: XmlLimits,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            body_bytes: 1024 * 1024,
            envelope: XmlLimits {
                max_depth: 16,
                max_nodes: 10_000,
                max_attributes: 64,
                max_attribute_len: 8 * 1024,
            },
            form: XmlLimits {
                max_depth: 32,
                max_nodes: 50_000,
                max_attributes: 64,
                max_attribute_len: 8 * 1024,
            },
        }
    }
}

/// The `[limits]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Deepest element nesting of the envelope. Default 16.
    pub envelope_depth: usize,
    /// Most XML nodes in the envelope. Default 10000.
    pub envelope_nodes: u32,
    /// Deepest element nesting of the form. Default 32.
    pub form_depth: usize,
    /// Most XML nodes in the form. Default 50000.
    pub form_nodes: u32,
    /// Most attributes on one element (both documents). Default 64.
    pub attributes_per_element: usize,
    /// Longest attribute value in bytes (both documents). Default 8192.
    pub attribute_bytes: usize,
    /// Largest request head (request line and headers) in bytes. Default 65536.
    pub header_bytes: usize,
}

impl Default for LimitSettings {
    fn default() -> LimitSettings {
        let d = Limits::default();
        LimitSettings {
            envelope_depth: d.envelope.max_depth,
            envelope_nodes: d.envelope.max_nodes,
            form_depth: d.form.max_depth,
            form_nodes: d.form.max_nodes,
            attributes_per_element: d.envelope.max_attributes,
            attribute_bytes: d.envelope.max_attribute_len,
            header_bytes: 64 * 1024,
        }
    }
}

/// The `[store]` table: settings of the embedded core.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `full` (default), `normal` or `off`.
    pub synchronous: Synchronous,
    /// Work orders that may wait for the writer. Default 8192.
    pub queue_capacity: usize,
    /// Most work orders in one transaction. Default 1024.
    pub max_batch: usize,
    /// How long a queued call waits for the writer before -9999. Default 10 s.
    pub queue_timeout: HumanDuration,
    /// How long a verified OM credential is trusted. Default 300 s.
    pub credential_cache_ttl: HumanDuration,
    /// Read-only connections. Default 4.
    pub read_connections: usize,
    /// Checkpoint the WAL from a background thread. Default `true` for the
    /// server (no call waits for a checkpoint), unlike the core's default.
    pub background_checkpoint: bool,
    /// The writer's page cache in MiB. Default 48.
    pub writer_cache_mb: u32,
}

impl Default for StoreSettings {
    fn default() -> StoreSettings {
        let c = CoreConfig::new("im.db");
        StoreSettings {
            synchronous: c.synchronous,
            queue_capacity: c.queue_capacity,
            max_batch: c.max_batch,
            queue_timeout: HumanDuration(c.queue_timeout),
            credential_cache_ttl: HumanDuration(c.credential_cache_ttl),
            read_connections: c.read_connections,
            background_checkpoint: true,
            writer_cache_mb: c.writer_cache_mb,
        }
    }
}

/// The `[om_auth]` table: the per-address limit on failed OM
/// authentications (-1002) of SOAP calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OmAuthSettings {
    /// Failed authentications an address may have per window before its
    /// calls are answered -9999 until the window ends (0: no limit).
    /// Default 20.
    pub max_failures: u32,
    /// The window. Default 60 s.
    pub window: HumanDuration,
}

impl Default for OmAuthSettings {
    fn default() -> OmAuthSettings {
        OmAuthSettings {
            max_failures: 20,
            window: HumanDuration(Duration::from_secs(60)),
        }
    }
}

/// The `[api]` table: the operators' JSON API under `/api/v1/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Serve the API. Default `true`.
    pub enabled: bool,
    /// How long a session token (`POST /api/v1/session`) stays valid.
    /// Default 30 min.
    pub session_ttl: HumanDuration,
    /// Most open sessions. Default 10000.
    pub max_sessions: usize,
    /// How long verified HTTP Basic credentials are trusted without a new
    /// password check (0 checks every call). Default 60 s.
    pub basic_cache_ttl: HumanDuration,
    /// Largest JSON request body in bytes. Default 65536.
    pub body_limit: usize,
    /// Deepest nesting of arrays and objects in a JSON body. Default 16.
    pub max_json_depth: usize,
}

impl Default for ApiSettings {
    fn default() -> ApiSettings {
        ApiSettings {
            enabled: true,
            session_ttl: HumanDuration(Duration::from_secs(30 * 60)),
            max_sessions: 10_000,
            basic_cache_ttl: HumanDuration(Duration::from_secs(60)),
            body_limit: 64 * 1024,
            max_json_depth: 16,
        }
    }
}

/// The `[login]` table: operator logins (lockout) and, in `[login.ad]`,
/// Active Directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginSettings {
    /// Failed attempts in a row that lock an account (0 never locks). Default 5.
    pub max_failures: u32,
    /// How long a lock lasts. Default 15 min.
    pub lockout: HumanDuration,
    /// The directory for `AD` accounts. Default none.
    pub ad: Option<AdSettings>,
}

impl Default for LoginSettings {
    fn default() -> LoginSettings {
        let d = im_core::login::LoginConfig::default();
        LoginSettings {
            max_failures: d.max_failures,
            lockout: HumanDuration(d.lockout),
            ad: None,
        }
    }
}

/// The `[login.ad]` table. Either `bind_template` (a direct bind) or
/// `bind_dn` + `bind_password` + `base_dn` (search, then bind).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdSettings {
    /// `ldaps://host:636`, or `ldap://host:389` with `starttls`.
    pub url: String,
    /// PEM file of the CA(s) that sign the directory's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Upgrade `ldap://` with StartTLS. Default false.
    #[serde(default)]
    pub starttls: bool,
    /// Allow `ldap://` without TLS (passwords in clear): tests only. Default false.
    #[serde(default)]
    pub insecure_plain_for_tests: bool,
    /// Direct bind template: `{user}@corp.example` or `uid={user},ou=people,dc=example,dc=com`.
    #[serde(default)]
    pub bind_template: Option<String>,
    /// Service account for the search.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// Its password.
    #[serde(default)]
    pub bind_password: Option<String>,
    /// Where users live.
    #[serde(default)]
    pub base_dn: Option<String>,
    /// Search filter. Default `(sAMAccountName={user})`.
    #[serde(default)]
    pub filter: Option<String>,
    /// Time to connect. Default 5 s.
    #[serde(default)]
    pub connect_timeout: Option<HumanDuration>,
    /// Time per LDAP operation. Default 10 s.
    #[serde(default)]
    pub operation_timeout: Option<HumanDuration>,
}

impl fmt::Debug for AdSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdSettings")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("starttls", &self.starttls)
            .field("bind_template", &self.bind_template)
            .field("bind_dn", &self.bind_dn)
            .field(
                "bind_password",
                &self.bind_password.as_ref().map(|_| "<redacted>"),
            )
            .field("base_dn", &self.base_dn)
            .finish()
    }
}

impl AdSettings {
    /// The core's AD settings.
    pub fn ad_config(&self) -> im_core::login::AdConfig {
        use im_core::login::{AdConfig, AdLookup, DEFAULT_AD_FILTER, SecretString};
        let lookup = match &self.bind_template {
            Some(t) => AdLookup::Template(t.clone()),
            None => AdLookup::Search {
                bind_dn: self.bind_dn.clone().unwrap_or_default(),
                bind_password: SecretString::new(self.bind_password.clone().unwrap_or_default()),
                base_dn: self.base_dn.clone().unwrap_or_default(),
                filter: self
                    .filter
                    .clone()
                    .unwrap_or_else(|| DEFAULT_AD_FILTER.into()),
            },
        };
        AdConfig {
            url: self.url.clone(),
            ca_file: self.ca_file.clone(),
            starttls: self.starttls,
            insecure_plain_for_tests: self.insecure_plain_for_tests,
            lookup,
            connect_timeout: self
                .connect_timeout
                .map_or(Duration::from_secs(5), HumanDuration::get),
            operation_timeout: self
                .operation_timeout
                .map_or(Duration::from_secs(10), HumanDuration::get),
        }
    }
}

/// The `[sync]` table: the inventory sources (Matrix, eMatrix), their
/// schedules, and how runs are made. A system with a URL may be synced on
/// an operator's request (`POST /api/v1/sync/runs`); one with an interval
/// too is also synced on schedule by the server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSources {
    /// Base URL of the Matrix NBI. Default none.
    pub matrix_url: Option<String>,
    /// Base URL of the eMatrix NBI. Default none.
    pub ematrix_url: Option<String>,
    /// Interval of scheduled full Matrix runs. Default none.
    pub matrix_full_every: Option<HumanDuration>,
    /// Interval of scheduled incremental Matrix runs. Default none.
    pub matrix_incremental_every: Option<HumanDuration>,
    /// Interval of scheduled full eMatrix runs. Default none.
    pub ematrix_full_every: Option<HumanDuration>,
    /// Interval of scheduled incremental eMatrix runs. Default none.
    pub ematrix_incremental_every: Option<HumanDuration>,
    /// Rows asked per page. Default 5,000.
    pub page_limit: u32,
    /// Share of rejected rows that aborts a run. Default 0.01.
    pub max_bad_share: f64,
    /// Share of live rows a full run may remove before it aborts. Default 0.10.
    pub max_removal_share: f64,
    /// How long an ONT registered by OM may stay unlisted by eMatrix.
    /// Default 7 days.
    pub ont_grace: HumanDuration,
    /// A run's lease on its system. Default 10 minutes.
    pub lease: HumanDuration,
    /// Changes applied per write transaction of a large diff. Default 256.
    pub apply_slice: usize,
}

impl Default for SyncSources {
    fn default() -> SyncSources {
        let core = im_core::sync::SyncConfig::default();
        SyncSources {
            matrix_url: None,
            ematrix_url: None,
            matrix_full_every: None,
            matrix_incremental_every: None,
            ematrix_full_every: None,
            ematrix_incremental_every: None,
            page_limit: 5000,
            max_bad_share: core.max_bad_share,
            max_removal_share: core.max_removal_share,
            ont_grace: HumanDuration(core.ont_grace),
            lease: HumanDuration(core.lease),
            apply_slice: core.apply_slice,
        }
    }
}

impl SyncSources {
    /// The core's thresholds and timings of these settings.
    pub fn core_config(&self) -> im_core::sync::SyncConfig {
        im_core::sync::SyncConfig {
            max_bad_share: self.max_bad_share,
            max_removal_share: self.max_removal_share,
            ont_grace: self.ont_grace.get(),
            lease: self.lease.get(),
            apply_slice: self.apply_slice,
            ..im_core::sync::SyncConfig::default()
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// Everything the SOAP server reads from its TOML file. Every key is
/// optional; see `docs/configuration.md` for each one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on. Default `127.0.0.1:8080`.
    #[serde(deserialize_with = "de_socket_addr")]
    pub listen: SocketAddr,
    /// A second address serving only `/health` and `/metrics`, outside the
    /// connection cap of `listen`: probes stay answered however busy the
    /// service port is. Default none.
    #[serde(deserialize_with = "de_opt_socket_addr")]
    pub health_listen: Option<SocketAddr>,
    /// The URL clients reach the server at (used as the WSDL's address);
    /// default: from each request's `Host` header.
    pub public_url: Option<String>,
    /// `out` (default) or `EgyptWorkSheetAllReturn`.
    pub response_element: ReturnElement,
    /// SQLite database file. Default `./data/im.db`.
    pub database: PathBuf,
    /// Key file for values encrypted at rest. Default: the database path
    /// with the extension `key`.
    pub key_file: Option<PathBuf>,
    /// Directory of retry-policy files (`om.toml`, `am.toml`, …); default:
    /// built-in policies.
    pub retry_policy_dir: Option<PathBuf>,
    /// Load the demo inventory and demo OM account into an empty database.
    /// Default `true`.
    pub demo_data: bool,
    /// Size of the demo inventory in DSLAM ports (grown by adding
    /// exchanges; see `im_core::demo::DemoSpec::with_ports`). Default 20480,
    /// the small hand-testing set.
    pub demo_ports: u64,
    /// Base URL of AM (`http://am.example.net:9000`); when set, the server
    /// delivers the activation outbox to `{am_url}/am/commands`. Default:
    /// none (commands wait in the outbox).
    pub am_url: Option<String>,
    /// How often the outbox is looked at when nothing was due. Default 500 ms.
    pub am_poll_interval: HumanDuration,
    /// Largest request body in bytes. Default 1048576 (1 MiB).
    pub body_limit: usize,
    /// Time allowed to send the request head (also the keep-alive idle
    /// time). Default 10 s.
    pub header_read_timeout: HumanDuration,
    /// Time allowed to send the whole request body. Default 30 s.
    pub body_timeout: HumanDuration,
    /// Most open connections; further clients wait in the listen backlog.
    /// Default 1024.
    pub max_connections: usize,
    /// On shutdown, how long in-flight calls may take to finish. Default 30 s.
    pub drain_timeout: HumanDuration,
    /// `text` (default) or `json`.
    pub log_format: LogFormat,
    /// Log filter (`info`, `warn`, `im_soap=debug,info`, …); `RUST_LOG`
    /// wins when set. Default `info`.
    pub log_level: String,
    /// XML and header limits.
    pub limits: LimitSettings,
    /// Core (storage) settings.
    pub store: StoreSettings,
    /// Operator logins and AD.
    pub login: LoginSettings,
    /// The operators' JSON API.
    pub api: ApiSettings,
    /// The limit on failed OM authentications per address.
    pub om_auth: OmAuthSettings,
    /// Inventory sources, their schedules and how runs are made.
    pub sync: SyncSources,
}

fn de_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid listen address {s:?} (use e.g. \"127.0.0.1:8080\" or \"[::]:8080\")"
        ))
    })
}

fn de_opt_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    de_socket_addr(d).map(Some)
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: default_listen(),
            health_listen: None,
            public_url: None,
            response_element: ReturnElement::Out,
            database: PathBuf::from("./data/im.db"),
            key_file: None,
            retry_policy_dir: None,
            demo_data: true,
            demo_ports: 20_480,
            am_url: None,
            am_poll_interval: HumanDuration(Duration::from_millis(500)),
            body_limit: Limits::default().body_bytes,
            header_read_timeout: HumanDuration(Duration::from_secs(10)),
            body_timeout: HumanDuration(Duration::from_secs(30)),
            max_connections: 1024,
            drain_timeout: HumanDuration(Duration::from_secs(30)),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            limits: LimitSettings::default(),
            store: StoreSettings::default(),
            login: LoginSettings::default(),
            api: ApiSettings::default(),
            om_auth: OmAuthSettings::default(),
            sync: SyncSources::default(),
        }
    }
}

impl ServerConfig {
    /// Parses a configuration from TOML text.
    pub fn from_toml_str(text: &str) -> Result<ServerConfig, ConfigError> {
        Self::parse(text, "<string>")
    }

    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, path: &str) -> Result<ServerConfig, ConfigError> {
        let cfg: ServerConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_string(),
            message,
        })?;
        Ok(cfg)
    }

    /// Checks values that TOML types alone do not bound.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.am_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "am_url {url:?} must start with http:// or https://"
            ));
        }
        if self.am_poll_interval.0.is_zero() {
            return Err("am_poll_interval must be positive".into());
        }
        let positive = [
            ("body_limit", self.body_limit),
            ("max_connections", self.max_connections),
            (
                "demo_ports",
                usize::try_from(self.demo_ports).unwrap_or(usize::MAX),
            ),
            ("limits.envelope_depth", self.limits.envelope_depth),
            ("limits.form_depth", self.limits.form_depth),
            (
                "limits.attributes_per_element",
                self.limits.attributes_per_element,
            ),
            ("limits.attribute_bytes", self.limits.attribute_bytes),
            ("store.queue_capacity", self.store.queue_capacity),
            ("store.max_batch", self.store.max_batch),
            ("store.read_connections", self.store.read_connections),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.limits.envelope_nodes == 0 || self.limits.form_nodes == 0 {
            return Err(
                "limits.envelope_nodes and limits.form_nodes must be greater than 0".into(),
            );
        }
        if self.limits.header_bytes < 8192 {
            return Err("limits.header_bytes must be at least 8192".into());
        }
        for (name, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_timeout", self.body_timeout),
        ] {
            if d.get().is_zero() {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.api.session_ttl.get().is_zero() {
            return Err("api.session_ttl must be greater than 0".into());
        }
        for (name, v) in [
            ("api.max_sessions", self.api.max_sessions),
            ("api.body_limit", self.api.body_limit),
            ("api.max_json_depth", self.api.max_json_depth),
        ] {
            if v == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        let sy = &self.sync;
        for (name, share) in [
            ("sync.max_bad_share", sy.max_bad_share),
            ("sync.max_removal_share", sy.max_removal_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{name} must be between 0 and 1"));
            }
        }
        if sy.page_limit == 0 || sy.apply_slice == 0 || sy.lease.get().is_zero() {
            return Err(
                "sync.page_limit, sync.apply_slice and sync.lease must be greater than 0".into(),
            );
        }
        for (name, every, url) in [
            (
                "sync.matrix_full_every",
                sy.matrix_full_every,
                &sy.matrix_url,
            ),
            (
                "sync.matrix_incremental_every",
                sy.matrix_incremental_every,
                &sy.matrix_url,
            ),
            (
                "sync.ematrix_full_every",
                sy.ematrix_full_every,
                &sy.ematrix_url,
            ),
            (
                "sync.ematrix_incremental_every",
                sy.ematrix_incremental_every,
                &sy.ematrix_url,
            ),
        ] {
            match every {
                Some(d) if d.get() < Duration::from_secs(1) => {
                    return Err(format!("{name} must be at least 1s"));
                }
                Some(_) if url.is_none() => {
                    return Err(format!("{name} is set but the system has no URL"));
                }
                _ => {}
            }
        }
        for (name, url) in [
            ("sync.matrix_url", &self.sync.matrix_url),
            ("sync.ematrix_url", &self.sync.ematrix_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(format!(
                    "{name} {url:?} must start with http:// or https://"
                ));
            }
        }
        if let Some(ad) = &self.login.ad {
            ad.ad_config()
                .validate()
                .map_err(|e| format!("login.{e}"))?;
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "public_url {url:?} must start with http:// or https://"
            ));
        }
        Ok(())
    }

    /// The key file: the configured one, or the database path with the
    /// extension `key`.
    pub fn key_file(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.database.with_extension("key"))
    }

    /// The request limits these settings describe.
    pub fn limits(&self) -> Limits {
        let l = &self.limits;
        Limits {
            body_bytes: self.body_limit,
            envelope: XmlLimits {
                max_depth: l.envelope_depth,
                max_nodes: l.envelope_nodes,
                max_attributes: l.attributes_per_element,
                max_attribute_len: l.attribute_bytes,
            },
            form: XmlLimits {
                max_depth: l.form_depth,
                max_nodes: l.form_nodes,
                max_attributes: l.attributes_per_element,
                max_attribute_len: l.attribute_bytes,
            },
        }
    }

    /// The core's settings these settings describe.
    pub fn core_config(&self) -> CoreConfig {
        let mut c = CoreConfig::new(self.database.clone());
        c.key_file = self.key_file();
        c.synchronous = self.store.synchronous;
        c.queue_capacity = self.store.queue_capacity;
        c.max_batch = self.store.max_batch;
        c.queue_timeout = self.store.queue_timeout.get();
        c.credential_cache_ttl = self.store.credential_cache_ttl.get();
        c.read_connections = self.store.read_connections;
        c.background_checkpoint = self.store.background_checkpoint;
        c.writer_cache_mb = self.store.writer_cache_mb;
        c.login.max_failures = self.login.max_failures;
        c.login.lockout = self.login.lockout.get();
        c.login.ad = self.login.ad.as_ref().map(AdSettings::ad_config);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = ServerConfig::from_toml_str("").expect("empty is fine");
        assert_eq!(c, ServerConfig::default());
        assert_eq!(c.listen, default_listen());
        assert_eq!(c.body_limit, 1024 * 1024);
        assert_eq!(c.response_element, ReturnElement::Out);
        assert_eq!(c.key_file(), PathBuf::from("./data/im.key"));
        assert_eq!(c.limits(), Limits::default());
        let core = c.core_config();
        assert_eq!(core.db_path, PathBuf::from("./data/im.db"));
        assert_eq!(core.synchronous, Synchronous::Full);
    }

    #[test]
    fn every_key() {
        let c = ServerConfig::from_toml_str(
            r#"
            listen = "[::1]:9000"
            public_url = "https://im.example.net"
            response_element = "EgyptWorkSheetAllReturn"
            database = "/var/lib/im/im.db"
            key_file = "/etc/im/im.key"
            retry_policy_dir = "/etc/im/retry"
            demo_data = false
            demo_ports = 100000
            body_limit = 65536
            header_read_timeout = "500ms"
            body_timeout = 20
            max_connections = 64
            drain_timeout = "1m"
            log_format = "json"
            log_level = "warn"
            [limits]
            envelope_depth = 8
            envelope_nodes = 100
            form_depth = 10
            form_nodes = 1000
            attributes_per_element = 16
            attribute_bytes = 1024
            header_bytes = 16384
            [store]
            synchronous = "normal"
            queue_capacity = 10
            max_batch = 5
            queue_timeout = "2s"
            credential_cache_ttl = "1h"
            read_connections = 2
            [login]
            max_failures = 3
            lockout = "30m"
            [login.ad]
            url = "ldaps://ad.example:636"
            ca_file = "/etc/im/ad-ca.pem"
            bind_dn = "cn=svc"
            bind_password = "svc-secret"
            base_dn = "dc=example"
            filter = "(uid={user})"
            connect_timeout = "2s"
            operation_timeout = "3s"
            [api]
            enabled = false
            session_ttl = "8h"
            max_sessions = 5
            basic_cache_ttl = "0s"
            body_limit = 1024
            max_json_depth = 4
            "#,
        )
        .expect("valid");
        assert!(!c.api.enabled);
        assert_eq!(c.api.session_ttl.get(), Duration::from_secs(8 * 3600));
        assert_eq!(c.api.basic_cache_ttl.get(), Duration::ZERO);
        assert_eq!(
            (c.api.max_sessions, c.api.body_limit, c.api.max_json_depth),
            (5, 1024, 4)
        );
        assert!(!format!("{c:?}").contains("svc-secret"));
        assert_eq!(c.response_element, ReturnElement::AxisReturn);
        assert_eq!(c.header_read_timeout.get(), Duration::from_millis(500));
        assert_eq!(c.body_timeout.get(), Duration::from_secs(20));
        assert_eq!(c.drain_timeout.get(), Duration::from_secs(60));
        assert_eq!(c.key_file(), PathBuf::from("/etc/im/im.key"));
        assert_eq!(c.limits().form.max_nodes, 1000);
        assert_eq!(c.log_format, LogFormat::Json);
        let core = c.core_config();
        assert_eq!(core.synchronous, Synchronous::Normal);
        assert_eq!(core.credential_cache_ttl, Duration::from_secs(3600));
        assert_eq!(core.login.max_failures, 3);
        assert_eq!(core.login.lockout, Duration::from_secs(1800));
        let ad = core.login.ad.expect("AD settings");
        assert_eq!(ad.operation_timeout, Duration::from_secs(3));
        assert!(matches!(
            ad.lookup,
            im_core::login::AdLookup::Search { ref filter, .. } if filter == "(uid={user})"
        ));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            ("listne = \"x\"", "listne"),
            ("listen = \"nowhere\"", "listen"),
            ("response_element = \"return\"", "response_element"),
            ("body_timeout = \"10 parsecs\"", "invalid duration"),
            ("body_limit = 0", "body_limit"),
            ("public_url = \"im.example\"", "public_url"),
            ("[store]\nsynchronous = \"sometimes\"", "synchronous"),
            ("[api]\nsession_ttl = \"0s\"", "api.session_ttl"),
            ("[api]\nmax_json_depth = 0", "api.max_json_depth"),
            ("[api]\nsesion_ttl = \"1m\"", "sesion_ttl"),
            ("[login.ad]\nurl = \"ldap://h\"", "login.ad.url"),
            ("[login.ad]\nurl = \"ldaps://h\"", "login.ad.ca_file"),
            ("[sync]\nmatrix_url = \"nbi:9400\"", "sync.matrix_url"),
            (
                "[sync]\nmatrix_full_every = \"1h\"",
                "sync.matrix_full_every",
            ),
            (
                "[sync]\nematrix_url = \"http://e\"\nematrix_incremental_every = \"10ms\"",
                "sync.ematrix_incremental_every",
            ),
            ("[sync]\nmax_removal_share = 1.5", "sync.max_removal_share"),
            ("[sync]\napply_slice = 0", "sync.apply_slice"),
        ] {
            let e = ServerConfig::from_toml_str(text)
                .expect_err(text)
                .to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn the_documented_example_is_valid() {
        let doc = include_str!("../../docs/configuration.md");
        let start = doc.find("```toml\n").expect("an example") + "```toml\n".len();
        let len = doc[start..].find("```").expect("its end");
        let c = ServerConfig::from_toml_str(&doc[start..start + len]).expect("the example parses");
        assert!(c.api.enabled);
        assert!(c.login.ad.is_some());
        assert!(c.sync.matrix_url.is_some());
        assert_eq!(
            c.sync.matrix_incremental_every.map(HumanDuration::get),
            Some(Duration::from_secs(900))
        );
        assert_eq!(c.sync.core_config().apply_slice, 256);
    }

    #[test]
    fn durations() {
        assert_eq!(
            HumanDuration::parse("250ms").map(HumanDuration::get),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            HumanDuration::parse("3").map(HumanDuration::get),
            Some(Duration::from_secs(3))
        );
        assert_eq!(HumanDuration::parse("x"), None);
        assert_eq!(HumanDuration::parse(""), None);
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
    }
}
