//! The NBI client: `GET {base}/nbi/{entity}?offset=&limit=[&snapshot=][&since=]`
//! over a pooled keep-alive hyper client, every request under the system's
//! retry policy (HTTP 5xx, connection errors and time-outs are retried; HTTP
//! 410 is [`NbiError::SnapshotExpired`]; other 4xx are final), each answer
//! capped in size and read with [`super::wire::parse_page`].

use super::source::{NbiError, PageRequest, Source};
use super::wire::{Page, ParseLimits, System, parse_page};
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use im_core::retry::RetryPolicy;
use std::fmt;
use std::time::Duration;
use tracing::{debug, warn};

/// Settings of an [`NbiClient`].
#[derive(Debug, Clone)]
pub struct NbiClientConfig {
    /// The system the base URL belongs to.
    pub system: System,
    /// Base URL, `http://host:port` (a path prefix is kept).
    pub base_url: String,
    /// Time allowed for one request, answer body included. Default 60 s.
    pub timeout: Duration,
    /// Time allowed to connect. Default 5 s.
    pub connect_timeout: Duration,
    /// The retry policy. Default: the system's built-in policy.
    pub retry: RetryPolicy,
    /// Largest page accepted, in bytes. Default 64 MiB.
    pub max_page_bytes: usize,
    /// How long an idle pooled connection is kept (keep it below the
    /// server's keep-alive time). Default 5 s.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host. Default 4.
    pub pool_max_idle_per_host: usize,
    /// Bounds on each page document.
    pub limits: ParseLimits,
}

impl NbiClientConfig {
    /// Defaults for `system` at `base_url`.
    pub fn new(system: System, base_url: impl Into<String>) -> NbiClientConfig {
        NbiClientConfig {
            system,
            base_url: base_url.into(),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default_for(system.interface()),
            max_page_bytes: 64 * 1024 * 1024,
            pool_idle_timeout: Duration::from_secs(5),
            pool_max_idle_per_host: 4,
            limits: ParseLimits::default(),
        }
    }
}

/// The HTTP [`Source`] (cheap to clone; clones share the connection pool).
#[derive(Clone)]
pub struct NbiClient {
    http: Client<HttpConnector, Empty<Bytes>>,
    base: String,
    config: NbiClientConfig,
}

impl fmt::Debug for NbiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NbiClient")
            .field("system", &self.config.system)
            .field("base", &self.base)
            .finish()
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved).
pub(crate) fn encode_query_value(out: &mut String, v: &str) {
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

impl NbiClient {
    /// A client for `config.base_url` (plain `http://` only).
    pub fn new(config: NbiClientConfig) -> Result<NbiClient, NbiError> {
        let base = config.base_url.trim().trim_end_matches('/').to_string();
        let uri: Uri = base
            .parse()
            .map_err(|e| NbiError::Config(format!("URL {:?}: {e}", config.base_url)))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() || uri.query().is_some() {
            return Err(NbiError::Config(format!(
                "URL {:?}: only http://host[:port][/prefix] URLs are supported",
                config.base_url
            )));
        }
        if config.max_page_bytes == 0 || config.timeout.is_zero() {
            return Err(NbiError::Config(
                "max_page_bytes and timeout must be above zero".into(),
            ));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(NbiClient { http, base, config })
    }

    /// The settings of this client.
    pub fn config(&self) -> &NbiClientConfig {
        &self.config
    }

    /// The URL of a page request.
    pub fn url(&self, request: &PageRequest) -> String {
        let mut url = format!(
            "{}/nbi/{}?offset={}&limit={}",
            self.base, request.entity, request.offset, request.limit
        );
        if let Some(s) = &request.snapshot {
            url.push_str("&snapshot=");
            encode_query_value(&mut url, s);
        }
        if let Some(w) = &request.since {
            url.push_str("&since=");
            encode_query_value(&mut url, w);
        }
        url
    }

    /// One page with retries: the system's retry policy on HTTP 5xx,
    /// connection errors, dropped answers and time-outs.
    pub async fn fetch(&self, request: &PageRequest) -> Result<Page, NbiError> {
        let url = self.url(request);
        let uri: Uri = url
            .parse()
            .map_err(|e| NbiError::Config(format!("URL {url:?}: {e}")))?;
        let mut waits = self.config.retry.intervals();
        let mut attempt = 1u32;
        loop {
            let result = self.fetch_once(&uri, &url, request).await;
            match &result {
                Err(e) if e.is_retryable() => {
                    let Some(wait) = waits.next() else {
                        return result;
                    };
                    warn!(
                        system = %self.config.system,
                        url = %url,
                        attempt,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        error = %e,
                        "NBI page request failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt = attempt.saturating_add(1);
                }
                _ => return result,
            }
        }
    }

    /// One attempt: the request and the whole body within the time-out.
    async fn fetch_once(
        &self,
        uri: &Uri,
        url: &str,
        request: &PageRequest,
    ) -> Result<Page, NbiError> {
        let body = match tokio::time::timeout(self.config.timeout, self.get(uri, url)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(NbiError::Transport(format!(
                    "no complete answer within {:?} from {url}",
                    self.config.timeout
                )));
            }
        };
        debug!(url, bytes = body.len(), "NBI page received");
        parse_page(&body, &self.config.limits).map_err(|error| NbiError::Page {
            entity: request.entity,
            offset: request.offset,
            error,
        })
    }

    async fn get(&self, uri: &Uri, url: &str) -> Result<Bytes, NbiError> {
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.method_mut() = Method::GET;
        *req.uri_mut() = uri.clone();
        req.headers_mut().insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("text/xml, application/xml"),
        );
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| NbiError::Transport(error_chain(&e)))?;
        let status = resp.status();
        if status == StatusCode::GONE {
            return Err(NbiError::SnapshotExpired {
                snapshot: snapshot_of(url),
            });
        }
        if status != StatusCode::OK {
            return Err(NbiError::Http {
                status,
                url: url.to_string(),
            });
        }
        let cap = self.config.max_page_bytes;
        let declared = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > cap as u64) {
            return Err(NbiError::TooLarge { limit: cap });
        }
        match Limited::new(resp.into_body(), cap).collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                Err(NbiError::TooLarge { limit: cap })
            }
            Err(e) => Err(NbiError::Transport(format!(
                "reading the answer from {url}: {}",
                error_chain(e.as_ref())
            ))),
        }
    }
}

/// The snapshot named in a request URL (for the error report).
fn snapshot_of(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("snapshot="))
        .map(str::to_owned)
}

impl Source for NbiClient {
    fn system(&self) -> System {
        self.config.system
    }

    async fn fetch_page(&self, request: &PageRequest) -> Result<Page, NbiError> {
        self.fetch(request).await
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::nbi::wire::Entity;

    #[test]
    fn urls_and_configuration() {
        let c = NbiClient::new(NbiClientConfig::new(
            System::Matrix,
            "http://127.0.0.1:9/x/",
        ))
        .unwrap();
        let r = PageRequest {
            entity: Entity::Ports,
            offset: 10,
            limit: 5,
            snapshot: Some("S 1&2".into()),
            since: Some("W9".into()),
        };
        let url = c.url(&r);
        assert_eq!(
            url,
            "http://127.0.0.1:9/x/nbi/ports?offset=10&limit=5&snapshot=S%201%262&since=W9"
        );
        assert_eq!(snapshot_of(&url).as_deref(), Some("S%201%262"));
        assert!(NbiClient::new(NbiClientConfig::new(System::Matrix, "https://h/")).is_err());
        assert!(NbiClient::new(NbiClientConfig::new(System::Matrix, "nope")).is_err());
        assert_eq!(c.config().retry.retries, 3);
    }

    #[test]
    fn retryable_errors() {
        let http = |s: StatusCode| NbiError::Http {
            status: s,
            url: String::new(),
        };
        assert!(http(StatusCode::SERVICE_UNAVAILABLE).is_retryable());
        assert!(!http(StatusCode::NOT_FOUND).is_retryable());
        assert!(NbiError::Transport("x".into()).is_retryable());
        assert!(!NbiError::SnapshotExpired { snapshot: None }.is_retryable());
        assert!(!NbiError::TooLarge { limit: 1 }.is_retryable());
    }
}
