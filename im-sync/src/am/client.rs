//! The AM client: posts one command to `{am}/am/commands` over a pooled
//! keep-alive hyper client, under a time-out, and says what the answer
//! means for delivery. It makes one attempt; retrying is the worker's job.

use super::wire::{self, AckStatus, Command};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use im_core::lifecycle::Ack;
use std::fmt;
use std::time::Duration;

/// The path AM serves commands on.
pub const COMMANDS_PATH: &str = "/am/commands";

/// Settings of an [`AmClient`].
#[derive(Debug, Clone)]
pub struct AmClientConfig {
    /// AM's base URL (`http://host:port`); commands go to `{url}/am/commands`.
    pub url: String,
    /// Time allowed for one attempt (connect, send, answer). Default 10 s.
    pub timeout: Duration,
    /// Time allowed to connect. Default 3 s.
    pub connect_timeout: Duration,
    /// Largest answer read, in bytes. Default 64 KiB.
    pub max_response_bytes: usize,
    /// How long an idle pooled connection is kept. Default 5 s.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept. Default 16.
    pub pool_max_idle: usize,
}

impl AmClientConfig {
    /// Defaults for AM at `url`.
    pub fn new(url: impl Into<String>) -> AmClientConfig {
        AmClientConfig {
            url: url.into(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_response_bytes: 64 * 1024,
            pool_idle_timeout: Duration::from_secs(5),
            pool_max_idle: 16,
        }
    }
}

/// The client settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("AM client configuration: {0}")]
pub struct ConfigError(pub String);

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// AM acked `OK` or `DUPLICATE`.
    Delivered(Ack),
    /// AM acked `REJECTED`, or answered HTTP 4xx (then the ack's status is
    /// `HTTP`, its code the HTTP status, its description the start of the body).
    Rejected(Ack),
    /// No usable answer: HTTP 5xx (or another non-2xx, non-4xx status), a
    /// 2xx without a readable ack for this id, a connection error or a
    /// time-out. Worth retrying with the same id.
    Transient(String),
}

/// A client for AM (cheap to clone; clones share the connection pool).
#[derive(Clone)]
pub struct AmClient {
    http: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    config: AmClientConfig,
}

impl fmt::Debug for AmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmClient").field("uri", &self.uri).finish()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.trim().chars().take(200).collect()
}

impl AmClient {
    /// A client for `config.url` (plain `http://` only). Needs a Tokio
    /// runtime when used, not when built.
    pub fn new(config: AmClientConfig) -> Result<AmClient, ConfigError> {
        let base = config.url.trim().trim_end_matches('/');
        let full = format!("{base}{COMMANDS_PATH}");
        let uri: Uri = full
            .parse()
            .map_err(|e| ConfigError(format!("URL {:?}: {e}", config.url)))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ConfigError(format!(
                "URL {:?}: only http://host[:port] URLs are supported",
                config.url
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(AmClient { http, uri, config })
    }

    /// The URL commands are posted to.
    pub fn url(&self) -> String {
        self.uri.to_string()
    }

    /// Posts one command once and classifies the answer.
    pub async fn send(&self, command: &Command) -> Answer {
        let body = Bytes::from(wire::write_command(command));
        match tokio::time::timeout(self.config.timeout, self.attempt(body, &command.id)).await {
            Ok(a) => a,
            Err(_) => Answer::Transient(format!("no answer within {:?}", self.config.timeout)),
        }
    }

    async fn attempt(&self, body: Bytes, id: &str) -> Answer {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        req.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        );
        let resp = match self.http.request(req).await {
            Ok(r) => r,
            Err(e) => return Answer::Transient(format!("transport: {}", error_chain(&e))),
        };
        let status = resp.status();
        let bytes = match Limited::new(resp.into_body(), self.config.max_response_bytes)
            .collect()
            .await
        {
            Ok(c) => c.to_bytes(),
            Err(e) => return Answer::Transient(format!("reading the answer: {e}")),
        };
        classify(status, &bytes, id)
    }
}

/// What an HTTP answer means for the delivery of command `id`.
pub fn classify(status: StatusCode, body: &[u8], id: &str) -> Answer {
    let ack = wire::read_ack(body);
    if status.is_client_error() {
        // Keep AM's own words when it sent an ack with the refusal.
        return Answer::Rejected(match ack {
            Ok(a) => Ack {
                status: a.status.as_str().to_string(),
                code: if a.code.is_empty() {
                    status.as_u16().to_string()
                } else {
                    a.code
                },
                desc: a.desc,
            },
            Err(_) => Ack {
                status: "HTTP".into(),
                code: status.as_u16().to_string(),
                desc: snippet(body),
            },
        });
    }
    if !status.is_success() {
        return Answer::Transient(format!("HTTP {status}: {}", snippet(body)));
    }
    let a = match ack {
        Ok(a) => a,
        Err(e) => return Answer::Transient(format!("HTTP {status} without a readable ack: {e}")),
    };
    if !a.id.is_empty() && a.id != id {
        return Answer::Transient(format!("ack for {:?}, not for {id:?}", a.id));
    }
    let out = Ack {
        status: a.status.as_str().to_string(),
        code: a.code,
        desc: a.desc,
    };
    match a.status {
        AckStatus::Ok | AckStatus::Duplicate => Answer::Delivered(out),
        AckStatus::Rejected => Answer::Rejected(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_is_checked() {
        assert!(AmClient::new(AmClientConfig::new("https://am:1")).is_err());
        assert!(AmClient::new(AmClientConfig::new("not a url")).is_err());
        let c = AmClient::new(AmClientConfig::new("http://127.0.0.1:9300/")).expect("valid");
        assert_eq!(c.url(), "http://127.0.0.1:9300/am/commands");
    }

    #[test]
    fn answers_are_classified() {
        let ok = b"<ack id='c1' status='OK' code='0' desc='fine'/>";
        assert!(matches!(
            classify(StatusCode::OK, ok, "c1"),
            Answer::Delivered(a) if a.status == "OK" && a.desc == "fine"
        ));
        let dup = b"<ack status='DUPLICATE'/>";
        assert!(matches!(
            classify(StatusCode::OK, dup, "c1"),
            Answer::Delivered(a) if a.status == "DUPLICATE"
        ));
        let rej = b"<ack id='c1' status='REJECTED' code='E7' desc='no port'/>";
        assert!(matches!(
            classify(StatusCode::OK, rej, "c1"),
            Answer::Rejected(a) if a.code == "E7"
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, b"bad command", "c1"),
            Answer::Rejected(a) if a.status == "HTTP" && a.code == "400" && a.desc == "bad command"
        ));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, b"down", "c1"),
            Answer::Transient(_)
        ));
        assert!(matches!(
            classify(StatusCode::OK, b"<html/>", "c1"),
            Answer::Transient(_)
        ));
        assert!(matches!(
            classify(StatusCode::OK, ok, "c2"),
            Answer::Transient(_)
        ));
    }
}
