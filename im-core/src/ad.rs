//! The directory (Active Directory / LDAP) password check for `AD`
//! accounts: ldap3 over TLS (rustls with the ring provider, always given
//! explicitly), certificate verified against the configured CA, the search
//! filter escaped per RFC 4515 and DN templates per RFC 4514, connection
//! failures retried by the `ad` policy (a wrong password never).
//!
//! ldap3 needs a tokio runtime: each check runs on a small current-thread
//! runtime of its own thread, so the core stays runtime-agnostic.

use crate::login::{AdConfig, AdLookup, DirectoryVerdict};
use crate::retry::RetryPolicy;
use ldap3::{LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::Duration;

/// LDAP result codes that mean "the server cannot serve now" (busy,
/// unavailable): retried like connection failures.
const RC_BUSY: u32 = 51;
const RC_UNAVAILABLE: u32 = 52;
/// Invalid credentials.
const RC_INVALID_CREDENTIALS: u32 = 49;

/// A prepared directory client.
pub(crate) struct AdClient {
    cfg: AdConfig,
    tls: Arc<rustls::ClientConfig>,
    retry: RetryPolicy,
}

/// A failed attempt.
enum Failure {
    /// Worth another attempt (connection, time-out, busy server).
    Transient(String),
    /// Not worth another attempt (certificate, configuration).
    Permanent(String),
}

/// The TLS configuration trusting exactly the CA certificates in `pem`.
///
/// # Errors
///
/// A message when the file holds no certificate or a bad one.
pub(crate) fn tls_config(pem: &[u8]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem) {
        let c = c.map_err(|e| format!("bad PEM: {e}"))?;
        roots
            .add(c)
            .map_err(|e| format!("bad CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no certificate in the CA file".into());
    }
    Ok(provider_builder()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client config builder on the ring provider, given explicitly (never the
/// process default, which panics when an embedder compiles in two providers).
/// The workspace's one crypto provider is ring (two compiled-in providers
/// make rustls's defaults panic); rustls 0.23.48 deprecates
/// `ring::default_provider` only for its lack of post-quantum key exchange.
#[allow(deprecated)]
fn provider_builder()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, String> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))
}

/// The search filter for `user`: `{user}` replaced by the RFC 4515-escaped value.
///
/// For example, `(uid={user})` with the user `*)(uid=*` becomes
/// `(uid=\2a\29\28uid=\2a)`.
pub(crate) fn search_filter(filter: &str, user: &str) -> String {
    filter.replace("{user}", &ldap3::ldap_escape(user))
}

/// The bind name for `user` from a template: a DN (RFC 4514-escaped user)
/// when the template holds `=`, else a UPN (`None` when the user holds a
/// character a UPN's user part must not).
pub(crate) fn template_name(template: &str, user: &str) -> Option<String> {
    if template.contains('=') {
        return Some(template.replace("{user}", &ldap3::dn_escape(user)));
    }
    let bad = |c: char| c.is_control() || "@,=+\\\"<>;#*() ".contains(c);
    if user.chars().any(bad) {
        return None;
    }
    Some(template.replace("{user}", user))
}

fn classify(e: LdapError) -> Failure {
    match e {
        LdapError::Io { source } => {
            let tls = source
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
            if tls {
                Failure::Permanent(format!("TLS: {source}"))
            } else {
                Failure::Transient(format!("I/O: {source}"))
            }
        }
        LdapError::Timeout { .. } => Failure::Transient("timed out".into()),
        LdapError::EndOfStream
        | LdapError::OpSend { .. }
        | LdapError::ResultRecv { .. }
        | LdapError::IdScrubSend { .. }
        | LdapError::MiscSend { .. } => Failure::Transient(format!("connection lost: {e}")),
        LdapError::LdapResult { result } if matches!(result.rc, RC_BUSY | RC_UNAVAILABLE) => {
            Failure::Transient(format!("server busy or unavailable (rc={})", result.rc))
        }
        e => Failure::Permanent(e.to_string()),
    }
}

impl AdClient {
    /// Validates the settings and reads the CA file.
    pub(crate) fn new(cfg: &AdConfig, retry: RetryPolicy) -> Result<AdClient, String> {
        cfg.validate()?;
        let tls = match &cfg.ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("ad.ca_file {}: {e}", path.display()))?;
                tls_config(&pem).map_err(|e| format!("ad.ca_file {}: {e}", path.display()))?
            }
            // Plain LDAP for tests only (validated above): no TLS is used, and
            // nothing would be trusted if it were.
            None => provider_builder()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        Ok(AdClient {
            cfg: cfg.clone(),
            tls: Arc::new(tls),
            retry,
        })
    }

    /// Checks `user`'s password against the directory, retrying connection
    /// failures by the policy. Blocks the calling thread (runs a
    /// current-thread runtime): never call it on a runtime thread.
    pub(crate) fn check_blocking(&self, user: &str, password: &str) -> DirectoryVerdict {
        if password.is_empty() {
            return DirectoryVerdict::Wrong("empty password".into());
        }
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return DirectoryVerdict::Unavailable(format!("no runtime: {e}")),
        };
        rt.block_on(self.check(user, password))
    }

    async fn check(&self, user: &str, password: &str) -> DirectoryVerdict {
        let mut waits = self.retry.intervals();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let limit = self.cfg.connect_timeout + self.cfg.operation_timeout * 4;
            let r = match tokio::time::timeout(limit, self.attempt(user, password)).await {
                Ok(r) => r,
                Err(_) => Err(Failure::Transient("timed out".into())),
            };
            match r {
                Ok(v) => return v,
                Err(Failure::Permanent(m)) => return DirectoryVerdict::Unavailable(m),
                Err(Failure::Transient(m)) => match waits.next() {
                    Some(wait) => {
                        tracing::warn!(attempt = attempts, error = %m, ?wait, "directory attempt failed; retrying");
                        tokio::time::sleep(wait).await;
                    }
                    None => {
                        return DirectoryVerdict::Unavailable(format!(
                            "{m} (after {attempts} attempts)"
                        ));
                    }
                },
            }
        }
    }

    async fn attempt(&self, user: &str, password: &str) -> Result<DirectoryVerdict, Failure> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.cfg.connect_timeout)
            .set_starttls(self.cfg.starttls)
            .set_config(Arc::clone(&self.tls));
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, self.cfg.url.trim())
            .await
            .map_err(classify)?;
        ldap3::drive!(conn);
        let op: Duration = self.cfg.operation_timeout;
        let dn = match &self.cfg.lookup {
            AdLookup::Template(t) => match template_name(t, user) {
                Some(dn) => dn,
                None => {
                    let _ = ldap.unbind().await;
                    return Ok(DirectoryVerdict::Refused(
                        "login holds characters a UPN cannot".into(),
                    ));
                }
            },
            AdLookup::Search {
                bind_dn,
                bind_password,
                base_dn,
                filter,
            } => {
                let r = ldap
                    .with_timeout(op)
                    .simple_bind(bind_dn, bind_password.expose())
                    .await
                    .map_err(classify)?;
                if r.rc != 0 {
                    let _ = ldap.unbind().await;
                    return Err(classify_rc(r.rc, "service account bind"));
                }
                let filter = search_filter(filter, user);
                let (entries, res) = ldap
                    .with_timeout(op)
                    .search(base_dn, Scope::Subtree, &filter, vec!["1.1"])
                    .await
                    .map_err(classify)?
                    .success()
                    .map_err(classify)?;
                let _ = res;
                match entries.len() {
                    1 => {}
                    n => {
                        let _ = ldap.unbind().await;
                        return Ok(DirectoryVerdict::Wrong(if n == 0 {
                            "no directory entry for this login".into()
                        } else {
                            format!("{n} directory entries for this login")
                        }));
                    }
                }
                let Some(entry) = entries.into_iter().next() else {
                    return Ok(DirectoryVerdict::Wrong("no directory entry".into()));
                };
                SearchEntry::construct(entry).dn
            }
        };
        let r = ldap
            .with_timeout(op)
            .simple_bind(&dn, password)
            .await
            .map_err(classify)?;
        let _ = ldap.unbind().await;
        match r.rc {
            0 => Ok(DirectoryVerdict::Accepted),
            RC_INVALID_CREDENTIALS => Ok(DirectoryVerdict::Wrong("wrong password".into())),
            RC_BUSY | RC_UNAVAILABLE => Err(classify_rc(r.rc, "bind")),
            rc => Ok(DirectoryVerdict::Refused(format!(
                "directory refused the bind (rc={rc})"
            ))),
        }
    }
}

fn classify_rc(rc: u32, what: &str) -> Failure {
    if matches!(rc, RC_BUSY | RC_UNAVAILABLE) {
        Failure::Transient(format!("{what}: server busy or unavailable (rc={rc})"))
    } else {
        Failure::Permanent(format!("{what} failed (rc={rc})"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(
            search_filter("(sAMAccountName={user})", "*)(uid=*"),
            "(sAMAccountName=\\2a\\29\\28uid=\\2a)"
        );
        assert_eq!(search_filter("(uid={user})", "alice"), "(uid=alice)");
    }

    #[test]
    fn templates_escape_or_refuse() {
        assert_eq!(
            template_name("uid={user},ou=people,dc=example,dc=com", "Smith, John+").unwrap(),
            "uid=Smith\\2c John\\2b,ou=people,dc=example,dc=com"
        );
        assert_eq!(
            template_name("{user}@corp.example", "alice").unwrap(),
            "alice@corp.example"
        );
        assert!(template_name("{user}@corp.example", "a@b").is_none());
        assert!(template_name("{user}@corp.example", "*").is_none());
    }

    #[test]
    fn ca_file_must_hold_a_certificate() {
        assert!(tls_config(b"not a pem").is_err());
    }
}
