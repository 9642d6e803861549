//! An AM simulator: a hyper server on `POST /am/commands` that acks
//! commands, answers `DUPLICATE` for an id it already accepted, rejects on
//! request, fails with HTTP 5xx on request, and counts what it received.
//!
//! Faults (all switchable while it runs):
//! - [`AmSim::set_failing`]: every command gets HTTP 503 (AM down);
//! - [`AmSim::fail_next`]: the next n commands get HTTP 503;
//! - [`AmSim::fail_id`]: the next n requests for one id get HTTP 503;
//! - [`AmSim::lose_next_acks`]: the next n commands are accepted but answered
//!   HTTP 500 (the ack is lost), so a resend meets `DUPLICATE`;
//! - [`AmSim::set_reject_all`] / [`AmSim::reject_id`]: `REJECTED` acks;
//! - [`AmSim::set_http_status`]: every command gets that HTTP status (e.g. 400);
//! - [`AmSim::set_delay`]: every answer comes late (time-outs).
//!
//! `GET /am/received` ([`RECEIVED_PATH`]) reports what was received, one
//! line per command id ([`AmSim::received_text`], read back with
//! [`parse_received`]), so that a test driving the simulator as a separate
//! process can check every command arrived once in effect.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let sim = im_sync::am::sim::AmSim::start("127.0.0.1:0".parse().unwrap()).await?;
//! println!("AM at {}", sim.url());
//! sim.stop().await;
//! # Ok(()) }
//! ```

use super::client::COMMANDS_PATH;
use super::wire::{self, Ack, AckStatus, Command};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info};

/// Path of the simulator's record of what it received (`GET`).
pub const RECEIVED_PATH: &str = "/am/received";

/// What the simulator saw of one command id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdCounts {
    /// Requests carrying this id (whatever the answer).
    pub received: u64,
    /// Answered `OK` (accepted for the first time).
    pub ok: u64,
    /// Answered `DUPLICATE`.
    pub duplicate: u64,
    /// Answered `REJECTED` or an HTTP 4xx.
    pub rejected: u64,
    /// Answered HTTP 5xx without accepting.
    pub failed: u64,
}

#[derive(Default)]
struct Faults {
    failing: bool,
    fail_next: u64,
    fail_ids: HashMap<String, u64>,
    lose_next: u64,
    reject_all: bool,
    reject_ids: HashSet<String>,
    http_status: Option<StatusCode>,
    delay: Duration,
}

#[derive(Default)]
struct SimState {
    faults: Faults,
    counts: HashMap<String, IdCounts>,
    accepted: Vec<Command>,
    requests: u64,
}

type Shared = Arc<Mutex<SimState>>;

fn lock(s: &Shared) -> MutexGuard<'_, SimState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running AM simulator.
#[derive(Debug)]
pub struct AmSim {
    addr: SocketAddr,
    state: Shared,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for SimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimState")
            .field("requests", &self.requests)
            .finish()
    }
}

impl AmSim {
    /// Binds `listen` (port 0 picks a free port) and serves on the current
    /// Tokio runtime.
    pub async fn start(listen: SocketAddr) -> std::io::Result<AmSim> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state: Shared = Arc::default();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, Arc::clone(&state), stop_rx));
        info!(%addr, "AM simulator listening");
        Ok(AmSim {
            addr,
            state,
            stop,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL (`http://addr`) to configure IM with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer every command with HTTP 503 (`true`) or normally (`false`).
    pub fn set_failing(&self, failing: bool) {
        lock(&self.state).faults.failing = failing;
    }

    /// Answer the next `n` commands with HTTP 503.
    pub fn fail_next(&self, n: u64) {
        lock(&self.state).faults.fail_next = n;
    }

    /// Answer the next `n` requests for command `id` with HTTP 503.
    pub fn fail_id(&self, id: impl Into<String>, n: u64) {
        lock(&self.state).faults.fail_ids.insert(id.into(), n);
    }

    /// Accept the next `n` new commands but answer HTTP 500 (a lost ack).
    pub fn lose_next_acks(&self, n: u64) {
        lock(&self.state).faults.lose_next = n;
    }

    /// Reject every command (`true`) or only those configured by id.
    pub fn set_reject_all(&self, reject: bool) {
        lock(&self.state).faults.reject_all = reject;
    }

    /// Reject the command with this id (every time it comes).
    pub fn reject_id(&self, id: impl Into<String>) {
        lock(&self.state).faults.reject_ids.insert(id.into());
    }

    /// Answer every command with this HTTP status and no ack (`None`: normal).
    pub fn set_http_status(&self, status: Option<StatusCode>) {
        lock(&self.state).faults.http_status = status;
    }

    /// Delay every answer by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).faults.delay = delay;
    }

    /// What was seen of one id.
    pub fn counts(&self, id: &str) -> IdCounts {
        lock(&self.state)
            .counts
            .get(id)
            .copied()
            .unwrap_or_default()
    }

    /// What was seen of every id.
    pub fn all_counts(&self) -> HashMap<String, IdCounts> {
        lock(&self.state).counts.clone()
    }

    /// The commands accepted (answered `OK`), in arrival order.
    pub fn accepted(&self) -> Vec<Command> {
        lock(&self.state).accepted.clone()
    }

    /// What was received, one line per command id (sorted by id), its
    /// fields separated by tabs: the id, the [`IdCounts`] (`received ok
    /// duplicate rejected failed`), then, from the first accepted request
    /// (`-` when none was accepted), its type, service, taskNo, flowId and
    /// `UserName` param, and its place among the accepted commands (from 0,
    /// in arrival order). What `GET /am/received` serves.
    pub fn received_text(&self) -> String {
        received_text(&self.state)
    }

    /// Requests on `/am/commands` so far.
    pub fn requests(&self) -> u64 {
        lock(&self.state).requests
    }

    /// Stops accepting and lets open exchanges finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// See [`AmSim::received_text`].
fn received_text(state: &Shared) -> String {
    let st = lock(state);
    let first: HashMap<&str, (usize, &Command)> = st
        .accepted
        .iter()
        .enumerate()
        .rev()
        .map(|(i, c)| (c.id.as_str(), (i, c)))
        .collect();
    let mut ids: Vec<&String> = st.counts.keys().collect();
    ids.sort();
    let mut out = String::new();
    for id in ids {
        let c = st.counts[id];
        let cmd = first.get(id.as_str());
        let field = |f: &dyn Fn(&Command) -> String| {
            cmd.map_or_else(|| "-".to_string(), |(_, c)| clean(&f(c)))
        };
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            clean(id),
            c.received,
            c.ok,
            c.duplicate,
            c.rejected,
            c.failed,
            field(&|c| c.kind.as_str().to_string()),
            field(&|c| c.service.as_str().to_string()),
            field(&|c| c.task_no.clone()),
            field(&|c| c.flow_id.clone()),
            field(&|c| c.param("UserName").unwrap_or("").to_string()),
            cmd.map_or_else(|| "-".to_string(), |(i, _)| i.to_string()),
        ));
    }
    out
}

/// One line of [`AmSim::received_text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The command id.
    pub id: String,
    /// What was seen of it.
    pub counts: IdCounts,
    /// Type, service, taskNo, flowId and `UserName` of the first accepted
    /// request (`None` when it was never accepted).
    pub accepted: Option<[String; 5]>,
    /// Its place among the accepted commands, in arrival order.
    pub accepted_at: Option<u64>,
}

/// Tabs and line breaks would break the line format; they never occur in
/// ids and are replaced by spaces elsewhere.
fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

/// Reads what `GET /am/received` served.
///
/// ```
/// let r = im_sync::am::sim::parse_received("CMD-WS1-1\t2\t1\t1\t0\t0\tACTIVATE\tADSL\tWS1\tF1\tu@x\t0\n").unwrap();
/// assert_eq!((r[0].counts.received, r[0].counts.duplicate), (2, 1));
/// assert_eq!(r[0].accepted.as_ref().unwrap()[4], "u@x");
/// ```
pub fn parse_received(text: &str) -> Result<Vec<Received>, wire::WireError> {
    let bad = |line: &str| wire::WireError(format!("not a received line: {line:?}"));
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 12 {
            return Err(bad(line));
        }
        let n = |i: usize| f[i].parse::<u64>().map_err(|_| bad(line));
        let counts = IdCounts {
            received: n(1)?,
            ok: n(2)?,
            duplicate: n(3)?,
            rejected: n(4)?,
            failed: n(5)?,
        };
        let accepted = (f[6] != "-").then(|| [f[6], f[7], f[8], f[9], f[10]].map(str::to_string));
        let accepted_at = match f[11] {
            "-" => None,
            n => Some(n.parse::<u64>().map_err(|_| bad(line))?),
        };
        out.push(Received {
            id: f[0].to_string(),
            counts,
            accepted,
            accepted_at,
        });
    }
    Ok(out)
}

type Body = Full<Bytes>;

async fn serve(listener: TcpListener, state: Shared, mut stop: watch::Receiver<bool>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            biased;
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() { break; }
                continue;
            }
            r = listener.accept() => r,
        };
        let Ok((tcp, _peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let st = Arc::clone(&state);
        let svc = service_fn(move |req| {
            let st = Arc::clone(&st);
            async move { Ok::<_, Infallible>(handle(&st, req).await) }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(tcp), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "AM simulator connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn ack(id: &str, status: AckStatus, code: &str, desc: &str) -> Response<Body> {
    respond(
        StatusCode::OK,
        "text/xml; charset=utf-8",
        wire::write_ack(&Ack {
            id: id.to_string(),
            status,
            code: code.to_string(),
            desc: desc.to_string(),
        }),
    )
}

async fn handle(state: &Shared, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() == RECEIVED_PATH && req.method() == Method::GET {
        return respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            received_text(state),
        );
    }
    if req.uri().path() != COMMANDS_PATH {
        return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
    }
    if req.method() != Method::POST {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use POST\n".into(),
        );
    }
    let body = match Limited::new(req.into_body(), wire::MAX_DOCUMENT)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return respond(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("unreadable body: {e}\n"),
            );
        }
    };
    let delay = lock(state).faults.delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let command = match wire::read_command(&body) {
        Ok(c) => c,
        Err(e) => {
            lock(state).requests += 1;
            return respond(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n"));
        }
    };
    decide(state, command)
}

/// The simulator's verdict on one command, counted.
fn decide(state: &Shared, command: Command) -> Response<Body> {
    let mut st = lock(state);
    st.requests += 1;
    let id = command.id.clone();
    let seen_ok = st.counts.get(&id).is_some_and(|c| c.ok > 0);
    let SimState {
        faults,
        counts,
        accepted,
        ..
    } = &mut *st;
    let c = counts.entry(id.clone()).or_default();
    c.received += 1;
    let fail_this = faults.fail_ids.get_mut(&id).filter(|n| **n > 0);
    let targeted = fail_this.is_some();
    if let Some(n) = fail_this {
        *n -= 1;
    }
    if targeted || faults.failing || faults.fail_next > 0 {
        if !targeted {
            faults.fail_next = faults.fail_next.saturating_sub(1);
        }
        c.failed += 1;
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "AM unavailable\n".into(),
        );
    }
    if let Some(status) = faults.http_status {
        if status.is_client_error() {
            c.rejected += 1;
        } else if !status.is_success() {
            c.failed += 1;
        }
        return respond(status, "text/plain", format!("forced {status}\n"));
    }
    if faults.reject_all || faults.reject_ids.contains(&id) {
        c.rejected += 1;
        return ack(
            &id,
            AckStatus::Rejected,
            "E-REJECT",
            "rejected by the simulator",
        );
    }
    if seen_ok {
        c.duplicate += 1;
        return ack(&id, AckStatus::Duplicate, "0", "already accepted");
    }
    c.ok += 1;
    accepted.push(command);
    if faults.lose_next > 0 {
        faults.lose_next -= 1;
        return respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "accepted, but the answer was lost\n".into(),
        );
    }
    ack(&id, AckStatus::Ok, "0", "accepted")
}
