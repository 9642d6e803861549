//! The operators' JSON API under `/api/v1/`, served on the SOAP server's
//! listener (see `docs/api.md` for every route).
//!
//! Each call is authenticated (a bearer session or HTTP Basic, see
//! `auth.rs`), checked against the caller's permissions for its route
//! ([`im_core::access`] holds them; this module enforces them), run through
//! im-core, and recorded as one row of the operation log — refused calls
//! included. Errors are `{"error":{"code":…,"message":…}}` with a stable
//! code; no stack trace, SQL or internal detail is ever answered. Bodies
//! are bounded in size and JSON nesting; query parameters are validated.

mod auth;
mod routes;
pub mod wire;

use crate::config::ApiSettings;
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use im_core::Im;
use im_core::audit::{OpAction, OpOutcome, Operation};
use im_core::operator::{Actor, OpError};
use im_core::sync::{SyncKind, SyncSystem};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The path prefix of the API.
pub const PREFIX: &str = "/api/v1";

/// Starts inventory sync runs on behalf of the API (`POST /api/v1/sync/runs`).
/// The program that owns the sync sources implements it (im-soap does not
/// depend on im-sync); without one, the route answers 503
/// `SYNC_NOT_CONFIGURED`.
pub trait SyncStarter: Send + Sync + 'static {
    /// Starts a run in the background and says what was started.
    ///
    /// # Errors
    ///
    /// Why it cannot start.
    fn start(
        &self,
        system: SyncSystem,
        kind: SyncKind,
        requested_by: &str,
    ) -> Result<String, SyncRefusal>;
}

/// Why a sync run could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRefusal {
    /// No source of that system is configured (503 `SYNC_NOT_CONFIGURED`).
    NotConfigured,
    /// A run of that system is in progress (409 `SYNC_BUSY`).
    Busy(String),
}

/// The API's state: the core, sessions, the Basic cache, settings.
pub struct Api {
    im: Im,
    settings: ApiSettings,
    sessions: auth::Sessions,
    basic: auth::BasicCache,
    sync: OnceLock<Arc<dyn SyncStarter>>,
    /// Password checks in progress (each may cost an Argon2 hash or a
    /// directory bind); bounded by [`MAX_LOGINS`].
    logins: Arc<std::sync::atomic::AtomicUsize>,
}

/// Most password checks the API runs at once; more callers get 503.
const MAX_LOGINS: usize = 8;

/// A place among the password checks in progress; freed when dropped.
pub(crate) struct LoginSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for LoginSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("settings", &self.settings)
            .finish()
    }
}

/// A failed call: HTTP status, stable code, message.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    allow: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    pub(crate) fn unauthenticated(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    pub(crate) fn forbidden(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!("your roles do not allow {what}"),
        )
    }

    pub(crate) fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route")
    }

    pub(crate) fn method(allow: &'static str) -> ApiError {
        ApiError {
            allow: Some(allow),
            ..ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                format!("allowed: {allow}"),
            )
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    pub(crate) fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST", message)
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> ApiError {
        let status = match &e {
            OpError::NotFound(_) => StatusCode::NOT_FOUND,
            OpError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            OpError::Conflict(_) | OpError::ResourceHeld(_) => StatusCode::CONFLICT,
            OpError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            OpError::Internal(detail) => {
                tracing::error!(error = %detail, "operators' API call failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.code(), e.public_message())
    }
}

/// A successful answer.
pub(crate) struct Reply {
    status: StatusCode,
    body: Option<Bytes>,
    /// The core logged the operation in the change's own transaction.
    logged: bool,
}

impl Reply {
    /// 200 with a JSON body; the API logs the call.
    pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<Reply, ApiError> {
        Ok(Reply {
            status: StatusCode::OK,
            body: Some(to_json(value)?),
            logged: false,
        })
    }

    /// A change the core logged itself.
    pub(crate) fn changed<T: serde::Serialize>(
        status: StatusCode,
        value: &T,
    ) -> Result<Reply, ApiError> {
        Ok(Reply {
            status,
            body: Some(to_json(value)?),
            logged: true,
        })
    }

    /// 204, logged by the API.
    pub(crate) fn empty() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
            logged: false,
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|e| {
        tracing::error!(error = %e, "cannot write a JSON answer");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error",
        )
    })
}

/// One call as the routes see it.
pub(crate) struct Call {
    pub(crate) method: http::Method,
    /// Path segments after `/api/v1`, percent-decoded.
    pub(crate) segments: Vec<String>,
    /// Query parameters, percent-decoded.
    pub(crate) query: Vec<(String, String)>,
    pub(crate) authorization: Option<String>,
    pub(crate) body: Bytes,
    pub(crate) ip: String,
}

/// What the operation log records of a call, filled in as it goes.
pub(crate) struct Record {
    pub(crate) account: String,
    pub(crate) action: OpAction,
    pub(crate) area: String,
    pub(crate) target: String,
    pub(crate) detail: String,
}

impl Api {
    /// The API for `im` with `settings`.
    pub fn new(im: Im, settings: ApiSettings) -> Api {
        Api {
            sessions: auth::Sessions::new(settings.session_ttl.get(), settings.max_sessions),
            basic: auth::BasicCache::new(settings.basic_cache_ttl.get()),
            im,
            settings,
            sync: OnceLock::new(),
            logins: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// A place for one password check, or `None` when too many run.
    pub(crate) fn login_slot(&self) -> Option<LoginSlot> {
        let running = self
            .logins
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let slot = LoginSlot(Arc::clone(&self.logins));
        (running < MAX_LOGINS).then_some(slot)
    }

    /// Sets what starts sync runs (once; later calls are ignored).
    pub fn set_sync_starter(&self, starter: Arc<dyn SyncStarter>) {
        let _ = self.sync.set(starter);
    }

    /// Answers one request under [`PREFIX`] from `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let ip = peer.ip().to_string();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let raw_query = req.uri().query().unwrap_or("").to_string();
        let mut record = Record {
            account: String::new(),
            action: action_of(&method),
            area: String::new(),
            target: target_of(&method, &path, &raw_query),
            detail: String::new(),
        };
        let result = match self.read(req).await {
            Ok((body, authorization)) => match parse_target(&path, &raw_query) {
                Some((segments, query)) => {
                    record.area = segments.first().cloned().unwrap_or_default();
                    let call = Call {
                        method,
                        segments,
                        query,
                        authorization,
                        body,
                        ip: ip.clone(),
                    };
                    routes::route(self, &call, &mut record).await
                }
                None if !path.starts_with(PREFIX) => Err(ApiError::not_found()),
                None => Err(ApiError::bad_request("malformed path or query")),
            },
            Err(e) => Err(e),
        };
        let (outcome, logged, response) = match result {
            Ok(reply) => {
                let r = respond(reply.status, reply.body, None);
                (OpOutcome::Success, reply.logged, r)
            }
            Err(e) => {
                let outcome =
                    if matches!(e.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                        OpOutcome::Denied
                    } else {
                        OpOutcome::Failure
                    };
                if record.detail.is_empty() {
                    record.detail = clip(&format!("{}: {}", e.code, e.message), 300);
                }
                (outcome, false, error_response(&e))
            }
        };
        if !logged {
            let actor = Actor::new(
                if record.account.is_empty() {
                    "-"
                } else {
                    &record.account
                },
                ip,
            );
            let op = Operation {
                action: record.action,
                area: record.area,
                target: record.target,
                outcome,
                detail: record.detail,
            };
            if let Err(e) = self.im.record_operation(&actor, op).await {
                tracing::error!(error = %e, "cannot write the operation log");
            }
        }
        response
    }

    /// Reads the body (bounded) and the `Authorization` header.
    async fn read(&self, req: Request<Incoming>) -> Result<(Bytes, Option<String>), ApiError> {
        let limit = self.settings.body_limit;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the body is over the limit of {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let authorization = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let collect = Limited::new(req.into_body(), limit).collect();
        match tokio::time::timeout(Duration::from_secs(30), collect).await {
            Ok(Ok(c)) => Ok((c.to_bytes(), authorization)),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Ok(Err(_)) => Err(ApiError::bad_request("unreadable body")),
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "TIMEOUT",
                "the body was not received in time",
            )),
        }
    }

    /// The body as JSON of type `T`: 400 for malformed or too deeply nested
    /// JSON, unknown fields or wrong types.
    pub(crate) fn body<T: serde::de::DeserializeOwned>(&self, call: &Call) -> Result<T, ApiError> {
        if json_depth(&call.body) > self.settings.max_json_depth {
            return Err(ApiError::bad_request(format!(
                "the JSON nests deeper than {} levels",
                self.settings.max_json_depth
            )));
        }
        serde_json::from_slice(&call.body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_JSON",
                format!("the body is not the JSON expected: {}", json_error(&e)),
            )
        })
    }
}

/// A short description of a JSON error (its category and position only).
fn json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Eof => "unexpected end",
        serde_json::error::Category::Data => "unexpected field or value",
        serde_json::error::Category::Io => "unreadable",
    };
    if e.classify() == serde_json::error::Category::Data {
        // serde's data messages name the field and the type expected; the
        // values they quote are left out (they may be secrets, and the
        // message goes to the operation log too).
        clip(&redact_quoted(&e.to_string()), 200)
    } else {
        format!("{what} at line {} column {}", e.line(), e.column())
    }
}

/// `s` with the text between double quotes left out (`"…"`).
fn redact_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            if quoted {
                out.push('…');
            }
            out.push(c);
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// The deepest nesting of arrays and objects in a JSON text.
pub(crate) fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// What the operation log names as a call's target by default: the method,
/// the path under the prefix and the query (filters, never secrets).
fn target_of(method: &http::Method, path: &str, query: &str) -> String {
    let p = path.strip_prefix(PREFIX).unwrap_or(path);
    if query.is_empty() {
        clip(&format!("{method} {p}"), 200)
    } else {
        clip(&format!("{method} {p}?{query}"), 200)
    }
}

fn action_of(m: &http::Method) -> OpAction {
    match *m {
        http::Method::GET | http::Method::HEAD => OpAction::Query,
        http::Method::POST => OpAction::Add,
        http::Method::DELETE => OpAction::Delete,
        _ => OpAction::Modify,
    }
}

pub(crate) fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Query parameters as (name, value) pairs.
type Params = Vec<(String, String)>;

/// Splits and percent-decodes the path after [`PREFIX`] and the query.
fn parse_target(path: &str, query: &str) -> Option<(Vec<String>, Params)> {
    let rest = path.strip_prefix(PREFIX)?;
    let mut segments = Vec::new();
    for s in rest.split('/').filter(|s| !s.is_empty()) {
        segments.push(percent_decode(s, false)?);
    }
    if segments.len() > 16 || query.len() > 4096 {
        return None;
    }
    let mut params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.push((percent_decode(k, true)?, percent_decode(v, true)?));
    }
    Some((segments, params))
}

fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.chars().any(char::is_control)).then_some(text)
}

fn respond(
    status: StatusCode,
    body: Option<Bytes>,
    allow: Option<&'static str>,
) -> Response<Full<Bytes>> {
    let has_body = body.is_some();
    let mut resp = Response::new(Full::new(body.unwrap_or_default()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if has_body {
        h.insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    if let Some(allow) = allow {
        h.insert(ALLOW, http::HeaderValue::from_static(allow));
    }
    resp
}

fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    let body = wire::ErrorBody {
        error: wire::ErrorDetail {
            code: e.code.to_string(),
            message: e.message.clone(),
        },
    };
    let bytes = serde_json::to_vec(&body)
        .map(Bytes::from)
        .unwrap_or_else(|_| {
            Bytes::from_static(br#"{"error":{"code":"INTERNAL","message":"internal error"}}"#)
        });
    let mut resp = respond(e.status, Some(bytes), e.allow);
    if e.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            http::HeaderValue::from_static(
                "Basic realm=\"IM\", charset=\"UTF-8\", Bearer realm=\"IM\"",
            ),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_left_out() {
        assert_eq!(
            redact_quoted(r#"invalid type: string "hunter2", expected a sequence at line 1"#),
            r#"invalid type: string "…", expected a sequence at line 1"#
        );
        assert_eq!(
            redact_quoted("unknown field `colour`"),
            "unknown field `colour`"
        );
    }

    #[test]
    fn depth() {
        assert_eq!(json_depth(br#"{"a":[1,{"b":2}]}"#), 3);
        assert_eq!(json_depth(br#"{"a":"[[[[{{{"}"#), 1);
        assert_eq!(json_depth(br#"{"a":"\"[[["}"#), 1);
        assert_eq!(json_depth(b"1"), 0);
    }

    #[test]
    fn targets() {
        let (s, q) = parse_target(
            "/api/v1/inventory/ports/EX01-D1%2F0%2F2%2F17",
            "limit=5&parent=A+B",
        )
        .expect("valid");
        assert_eq!(s, vec!["inventory", "ports", "EX01-D1/0/2/17"]);
        assert_eq!(
            q,
            vec![
                ("limit".into(), "5".into()),
                ("parent".into(), "A B".into())
            ]
        );
        assert!(parse_target("/api/v1/x%zz", "").is_none());
        assert!(parse_target("/api/v1/x%0a", "").is_none());
        assert!(parse_target("/other", "").is_none());
    }
}
