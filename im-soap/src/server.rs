//! The hyper 1.x server: `POST /services/EgyptWorkSheetAll`, the WSDL,
//! `/health`, `/metrics` and the operators' API under `/api/` (see
//! [`crate::api`]), with the limits of the contract (body size,
//! header-read and body time-outs, connection cap) and graceful shutdown.

use crate::config::{Limits, ServerConfig};
use crate::envelope::{decode_body, parse_request};
use crate::fault::Fault;
use crate::form_xml::{FormError, parse_form};
use crate::metrics::{FaultLabels, Metrics, StatusLabels, opertype_label};
use crate::result_xml::write_response;
use crate::wsdl::{SERVICE_PATH, service_address, wsdl};
use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use im_core::{Im, Outcome};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, error, info, warn};

/// Errors of starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    health_listener: Option<TcpListener>,
    local_addr: SocketAddr,
    state: Arc<State>,
}

struct State {
    im: Im,
    api: Option<crate::api::Api>,
    config: ServerConfig,
    limits: Limits,
    metrics: Metrics,
    fallback_host: String,
    auth_failures: crate::om_guard::AuthFailures,
}

type Body = Full<Bytes>;

impl Server {
    /// Binds the listen address of `config` (port 0 picks a free port)
    /// for the core `im`.
    pub async fn bind(config: ServerConfig, im: Im) -> Result<Server, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let health_listener = match config.health_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })?,
            ),
            None => None,
        };
        let api = config
            .api
            .enabled
            .then(|| crate::api::Api::new(im.clone(), config.api.clone()));
        let state = State {
            api,
            metrics: Metrics::new(im.clone()),
            limits: config.limits(),
            fallback_host: local_addr.to_string(),
            auth_failures: crate::om_guard::AuthFailures::new(
                config.om_auth.max_failures,
                config.om_auth.window.get(),
            ),
            im,
            config,
        };
        Ok(Server {
            listener,
            health_listener,
            local_addr,
            state: Arc::new(state),
        })
    }

    /// Lets the operators' API start sync runs (`POST /api/v1/sync/runs`);
    /// without it that route answers 503 `SYNC_NOT_CONFIGURED`.
    pub fn set_sync_starter(&self, starter: Arc<dyn crate::api::SyncStarter>) {
        if let Some(api) = &self.state.api {
            api.set_sync_starter(starter);
        }
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the health listener, when `health_listen` is set.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The service URL: the configured public URL, or `http://` + the bound address.
    pub fn url(&self) -> String {
        service_address(
            self.state.config.public_url.as_deref(),
            None,
            &self.state.fallback_host,
        )
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight calls finish (up to the drain time-out) and closes the core.
    pub async fn serve<F>(self, shutdown: F)
    where
        F: Future<Output = ()>,
    {
        let Server {
            listener,
            health_listener,
            state,
            ..
        } = self;
        let (probes_stop, probes_stopped) = tokio::sync::watch::channel(false);
        let probes = health_listener.map(|l| {
            let state = Arc::clone(&state);
            tokio::spawn(serve_probes(l, state, probes_stopped))
        });
        let cfg = &state.config;
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(cfg.header_read_timeout.get())
            .keep_alive(true)
            .max_header_size(cfg.limits.header_bytes)
            .max_buf_size(cfg.limits.header_bytes.max(64 * 1024));
        // Connections past the cap: one request each, and only /health and
        // /metrics are served on them (anything else gets 503 at once), so
        // that a liveness probe on a new connection is answered when IM is
        // busiest and a client learns at once that it is at its limit.
        let mut spare_http = http.clone();
        spare_http.keep_alive(false);
        let connections = Arc::new(Semaphore::new(cfg.max_connections));
        let spare = Arc::new(Semaphore::new(SPARE_CONNECTIONS));
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (permit, over_cap) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                p = connections.clone().acquire_owned() => match p {
                    Ok(p) => (p, false),
                    Err(_) => break,
                },
                p = spare.clone().acquire_owned() => match p {
                    Ok(p) => (p, true),
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                r = listener.accept() => r,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Err(e) = tcp.set_nodelay(true) {
                debug!(%peer, error = %e, "set_nodelay failed");
            }
            let conn_state = state.clone();
            let svc = service_fn(move |req| {
                let state = conn_state.clone();
                async move {
                    Ok::<_, Infallible>(if over_cap {
                        handle_over_cap(&state, req).await
                    } else {
                        handle(&state, req, peer).await
                    })
                }
            });
            let builder = if over_cap { &spare_http } else { &http };
            let conn = builder.serve_connection(TokioIo::new(tcp), svc);
            let fut = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = fut.await {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        let _ = probes_stop.send(true);
        if let Some(p) = probes {
            let _ = p.await;
        }
        info!("shutting down: no new connections, finishing in-flight calls");
        tokio::select! {
            () = graceful.shutdown() => info!("all connections closed"),
            () = tokio::time::sleep(cfg.drain_timeout.get()) => {
                warn!(timeout = %cfg.drain_timeout, "drain time-out reached; closing anyway");
            }
        }
        let im = state.im.clone();
        if tokio::task::spawn_blocking(move || im.close())
            .await
            .is_err()
        {
            error!("closing the store failed");
        } else {
            info!("store closed");
        }
    }
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("Ctrl-C received"),
        () = term => info!("SIGTERM received"),
    }
}

/// Connections of the health listener, at most.
const PROBE_CONNECTIONS: usize = 64;

/// The health listener: `/health` and `/metrics` only (anything else 404),
/// on connections of its own, until `stop` turns true.
async fn serve_probes(
    listener: TcpListener,
    state: Arc<State>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout.get())
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(PROBE_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, _) = tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "health listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let st = Arc::clone(&state);
        let svc = service_fn(move |req: Request<Incoming>| {
            let st = Arc::clone(&st);
            async move {
                let get = req.method() == Method::GET;
                Ok::<_, Infallible>(match req.uri().path() {
                    "/health" if get => health(&st).await,
                    "/metrics" if get => plain(
                        StatusCode::OK,
                        "text/plain; version=0.0.4; charset=utf-8",
                        st.metrics.render(),
                    ),
                    _ => plain(
                        StatusCode::NOT_FOUND,
                        "text/plain; charset=utf-8",
                        "not found\n",
                    ),
                })
            }
        });
        let conn = http.serve_connection(TokioIo::new(tcp), svc);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
}

/// Connections served past the connection cap, at most (see
/// [`handle_over_cap`]).
const SPARE_CONNECTIONS: usize = 16;

/// A request on a connection past the cap: `/health` and `/metrics` as
/// usual, anything else 503 with `Retry-After` (the connection closes).
async fn handle_over_cap(state: &State, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if req.method() == Method::GET && path == "/health" {
        return health(state).await;
    }
    if req.method() == Method::GET && path == "/metrics" {
        return plain(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(),
        );
    }
    debug!(path = %clip(path, 100), "request refused: at the connection limit");
    let mut resp = refused_closing(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is at its connection limit: retry\n".into(),
    );
    resp.headers_mut()
        .insert(RETRY_AFTER, http::HeaderValue::from_static("1"));
    resp
}

async fn handle(state: &State, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path();
    if let Some(api) = &state.api
        && (path == crate::api::PREFIX || path.starts_with("/api/"))
    {
        return api.handle(req, peer).await;
    }
    if path == SERVICE_PATH {
        match *req.method() {
            Method::POST => soap(state, req, peer).await,
            Method::GET if is_wsdl_query(req.uri().query()) => wsdl_response(state, &req),
            _ => refused(
                state,
                StatusCode::METHOD_NOT_ALLOWED,
                Some("GET, POST"),
                "use POST (or GET ?wsdl)\n",
            ),
        }
    } else if path == "/health" {
        if req.method() == Method::GET {
            health(state).await
        } else {
            refused(
                state,
                StatusCode::METHOD_NOT_ALLOWED,
                Some("GET"),
                "use GET\n",
            )
        }
    } else if path == "/metrics" {
        if req.method() == Method::GET {
            plain(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                state.metrics.render(),
            )
        } else {
            refused(
                state,
                StatusCode::METHOD_NOT_ALLOWED,
                Some("GET"),
                "use GET\n",
            )
        }
    } else {
        refused(state, StatusCode::NOT_FOUND, None, "not found\n")
    }
}

fn is_wsdl_query(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|p| {
            let key = p.split('=').next().unwrap_or(p);
            key.eq_ignore_ascii_case("wsdl")
        })
    })
}

fn plain(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    resp
}

fn refused(
    state: &State,
    status: StatusCode,
    allow: Option<&'static str>,
    text: &'static str,
) -> Response<Body> {
    state
        .metrics
        .refused
        .get_or_create(&StatusLabels {
            status: status.as_u16(),
        })
        .inc();
    let mut resp = plain(status, "text/plain; charset=utf-8", text);
    if let Some(allow) = allow {
        resp.headers_mut()
            .insert(ALLOW, http::HeaderValue::from_static(allow));
    }
    resp
}

/// A refusal after which the connection is closed (the body may be unread).
fn refused_closing(state: &State, status: StatusCode, text: String) -> Response<Body> {
    state
        .metrics
        .refused
        .get_or_create(&StatusLabels {
            status: status.as_u16(),
        })
        .inc();
    let mut resp = plain(status, "text/plain; charset=utf-8", text);
    resp.headers_mut()
        .insert(CONNECTION, http::HeaderValue::from_static("close"));
    resp
}

fn xml(status: StatusCode, body: String) -> Response<Body> {
    plain(status, "text/xml; charset=UTF-8", body)
}

fn wsdl_response(state: &State, req: &Request<Incoming>) -> Response<Body> {
    let host = req.headers().get(HOST).and_then(|v| v.to_str().ok());
    let address = service_address(
        state.config.public_url.as_deref(),
        host,
        &state.fallback_host,
    );
    xml(
        StatusCode::OK,
        wsdl(&address, state.config.response_element),
    )
}

async fn health(state: &State) -> Response<Body> {
    let im = state.im.clone();
    match tokio::task::spawn_blocking(move || im.health()).await {
        Ok(Ok(())) => plain(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        Ok(Err(e)) => {
            warn!(error = %e, "health check failed");
            let text = if state.im.writer_stats().failing {
                "store refuses writes\n"
            } else {
                "store unavailable\n"
            };
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                text,
            )
        }
        Err(_) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "store unavailable\n",
        ),
    }
}

/// Decrements the in-flight gauge when a call ends, however it ends.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

enum Answer {
    Result(Outcome),
    Fault(Fault),
}

async fn soap(state: &State, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let start = Instant::now();
    state.metrics.in_flight.inc();
    let _in_flight = InFlight(&state.metrics.in_flight);
    let limit = state.limits.body_bytes;
    if declared_length(&req).is_some_and(|n| n > limit as u64) {
        return too_large(state, limit);
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let collect = Limited::new(req.into_body(), limit).collect();
    let body = match tokio::time::timeout(state.config.body_timeout.get(), collect).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(state, limit);
        }
        Ok(Err(e)) => {
            debug!(error = %e, "reading the request body failed");
            return refused_closing(state, StatusCode::BAD_REQUEST, "unreadable body\n".into());
        }
        Err(_) => {
            warn!(timeout = %state.config.body_timeout, "request body not received in time");
            return refused_closing(
                state,
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time\n".into(),
            );
        }
    };
    match answer(state, &body, content_type.as_deref(), peer).await {
        Answer::Result(outcome) => {
            let opertype = opertype_label(outcome.items.iter().map(|i| i.opertype.as_str()));
            let elapsed = start.elapsed();
            state
                .metrics
                .record_call(&outcome, opertype, elapsed.as_secs_f64());
            log_outcome(&outcome, elapsed);
            xml(
                StatusCode::OK,
                write_response(&outcome, state.config.response_element),
            )
        }
        Answer::Fault(fault) => {
            state
                .metrics
                .faults
                .get_or_create(&FaultLabels {
                    faultcode: fault.code.as_str(),
                })
                .inc();
            info!(faultcode = %fault.code, reason = %fault.string, "request answered with a SOAP Fault");
            xml(StatusCode::INTERNAL_SERVER_ERROR, fault.to_xml())
        }
    }
}

fn too_large(state: &State, limit: usize) -> Response<Body> {
    info!(limit, "request body over the limit");
    refused_closing(
        state,
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body over the limit of {limit} bytes\n"),
    )
}

async fn answer(
    state: &State,
    body: &[u8],
    content_type: Option<&str>,
    peer: SocketAddr,
) -> Answer {
    let form = {
        let text = match decode_body(body, content_type) {
            Ok((text, _)) => text,
            Err(f) => return Answer::Fault(f),
        };
        let request = match parse_request(&text, &state.limits.envelope) {
            Ok(r) => r,
            Err(f) => return Answer::Fault(f),
        };
        if let Some(ns) = &request.foreign_namespace {
            debug!(namespace = %ns, "operation element outside the service namespace");
        }
        match parse_form(&request.payload, &state.limits.form) {
            Ok(form) => form,
            Err(FormError::NoForm(reason)) => return Answer::Result(Outcome::no_form(reason)),
            Err(FormError::Dtd) => {
                return Answer::Fault(Fault::client("a DTD is not allowed in the form"));
            }
        }
    };
    let ip = peer.ip();
    if state.auth_failures.is_limited(ip) {
        debug!(%ip, "call held back: too many failed OM authentications from this address");
        let mut o = Outcome::internal(form.get("flowId").trim());
        o.error_desc = "too many failed authentications from this address: nothing was stored, \
                        retry later with the same flowId"
            .into();
        return Answer::Result(o);
    }
    let user: String = form.get("authusername").chars().take(128).collect();
    let im = state.im.clone();
    // A task of its own: a panic in the core cannot take the connection
    // down, and a client that hangs up does not cancel a submitted order.
    match tokio::spawn(async move { im.submit(form).await }).await {
        Ok(outcome) => {
            if outcome.error_code == im_core::ErrorCode::AuthFailed {
                auth_failed(state, &user, ip);
            }
            Answer::Result(outcome)
        }
        Err(e) => {
            error!(error = %e, "work order handling failed outside the core's answer");
            Answer::Fault(Fault::server())
        }
    }
}

/// Counts a failed OM authentication of `ip` and, within the limit, writes
/// it to the login log (in the background: the answer does not wait).
fn auth_failed(state: &State, user: &str, ip: std::net::IpAddr) {
    if !state.auth_failures.record(ip) {
        return;
    }
    warn!(account = %clip(user, 64), %ip, "OM authentication failed");
    let (im, user, ip) = (state.im.clone(), user.to_string(), ip.to_string());
    tokio::spawn(async move {
        if let Err(e) = im.record_om_auth_failure(&user, &ip).await {
            warn!(error = %e, "cannot write a failed OM authentication to the login log");
        }
    });
}

/// At most `n` characters of `s`, for log fields fed by the client.
fn clip(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn log_outcome(outcome: &Outcome, elapsed: Duration) {
    let flow_id = clip(&outcome.flow_id, 64);
    let task_no = outcome.task_no.as_deref().unwrap_or("");
    let code = outcome.error_code.code();
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    if outcome.is_success() {
        info!(
            flow_id,
            task_no,
            error_code = code,
            items = outcome.items.len(),
            elapsed_us = micros,
            "work order accepted"
        );
    } else {
        info!(
            flow_id,
            task_no,
            error_code = code,
            error_desc = clip(&outcome.error_desc, 300),
            items = outcome.items.len(),
            elapsed_us = micros,
            "work order refused"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsdl_queries() {
        assert!(is_wsdl_query(Some("wsdl")));
        assert!(is_wsdl_query(Some("WSDL")));
        assert!(is_wsdl_query(Some("a=1&wsdl=")));
        assert!(!is_wsdl_query(Some("xsd")));
        assert!(!is_wsdl_query(None));
    }

    #[test]
    fn clipping_respects_char_boundaries() {
        assert_eq!(clip("ممم", 2), "مم");
        assert_eq!(clip("ab", 5), "ab");
    }
}
