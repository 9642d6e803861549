//! A load generator for a running IM server: N concurrent keep-alive
//! connections, each sending Install ADSL work orders (unique flowIds and
//! UserNames, ports picked by IM, spread across the demo exchanges) for a
//! duration or a count. Reports throughput and p50/p90/p99 latency; with
//! `--baseline` it measures, in the same run, a trivial hyper handler that
//! returns a fixed SOAP response and prints the ratio; with `--server-pid`
//! it reports the server's resident memory (current and peak) from `/proc`.
//!
//! ```text
//! cargo run --release -p im-examples --bin im-loadgen -- --connections 64 --duration 20 --baseline
//! ```
//!
//! Each Install holds a port: the small demo inventory has about 9,000 free
//! ADSL ports (10 exchanges). For long runs, give the server a bigger demo
//! inventory (`demo_ports` in its configuration) and pass the number of its
//! exchanges with `--exchanges`.

use bytes::Bytes;
use clap::Parser;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use im_core::{ErrorCode, Outcome};
use im_examples::{DEFAULT_URL, DEMO_PASSWORD, DEMO_USER, init_logging, install_adsl};
use im_soap::ReturnElement;
use im_soap::config::LogFormat;
use im_soap::envelope::encoding_for_label;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Command-line options.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "im-loadgen",
    version,
    about = "Load generator for the IM SOAP server"
)]
struct Args {
    /// The service URL.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// Concurrent keep-alive connections.
    #[arg(long, short, default_value_t = 64)]
    connections: usize,
    /// Run for this long (`20`, `20s`, `10m`; ignored when --count is
    /// given). In --overload mode: the length of each of the three phases.
    #[arg(long, short, default_value = "10", value_parser = parse_duration)]
    duration: Duration,
    /// Send exactly this many work orders.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Demo exchanges to spread the Installs over (EX01 … EXnn).
    #[arg(long, default_value_t = 10)]
    exchanges: u32,
    /// Request charset.
    #[arg(long, default_value = "gb2312")]
    charset: String,
    /// OM account login.
    #[arg(long, default_value = DEMO_USER)]
    user: String,
    /// OM account password.
    #[arg(long, env = "IM_OM_PASSWORD", default_value = DEMO_PASSWORD, hide_default_value = true)]
    password: String,
    /// Prefix of flowIds and UserNames (default: from the clock).
    #[arg(long)]
    prefix: Option<String>,
    /// Also measure a trivial hyper handler with a fixed SOAP response.
    #[arg(long)]
    baseline: bool,
    /// Process id of the IM server, to report its memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Probe `/health` at this address (the server's `health_listen`)
    /// instead of the service port, in --soak and --overload.
    #[arg(long)]
    health_addr: Option<SocketAddr>,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Soak: a steady open-loop rate (--rate) for --duration, sampling the
    /// server's memory and file descriptors (--server-pid); per-minute
    /// latency percentiles, the slopes and a verdict.
    #[arg(long, conflicts_with = "overload")]
    soak: bool,
    /// Overload: three open-loop phases of --duration each: --rate, then
    /// --rate × --factor, then --rate again; /health probed throughout.
    #[arg(long)]
    overload: bool,
    /// Calls per second offered in --soak and --overload (open loop: sent
    /// on schedule whether or not earlier calls were answered).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Overload factor of the middle phase of --overload.
    #[arg(long, default_value_t = 4.0)]
    factor: f64,
    /// Most connections open at once in --soak and --overload; calls due
    /// while all are busy wait for one (their wait counts in the latency).
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Time allowed for one call (connect, send, answer) in --soak and
    /// --overload; beyond it the call counts as a time-out.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    call_timeout: Duration,
    /// Calls waiting for a connection beyond which new calls are not sent
    /// (counted as `not sent`): keeps the load generator's memory bounded.
    #[arg(long, default_value_t = 50_000)]
    max_waiting: u64,
    /// In --soak and --overload, each Install is followed this many users
    /// later by the Delete of its service, so that at most about this many
    /// ports are held whatever the length of the run.
    #[arg(long, default_value_t = 4000)]
    delete_lag: u64,
    /// How often --soak samples the server's memory and descriptors.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    sample_every: Duration,
    /// Samples taken in the first part of a soak (warm-up: caches filling)
    /// are left out of the slopes.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    warmup: Duration,
    /// Soak verdict: largest acceptable resident-memory slope, MB/min.
    #[arg(long, default_value_t = 1.0)]
    max_rss_slope: f64,
    /// Soak verdict: largest acceptable open-descriptor slope, per minute.
    #[arg(long, default_value_t = 1.0)]
    max_fd_slope: f64,
    /// Overload verdict: the p99 latency of the last phase must be back to
    /// normal within this time after the overload ends.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    recovery_within: Duration,
    /// The server's SQLite database: after --overload, every call answered
    /// -9999 is looked up in it by flowId (it must not be there).
    #[arg(long)]
    db: Option<std::path::PathBuf>,
}

/// `"20"`, `"20s"`, `"500ms"`, `"10m"`, `"1h"`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    im_soap::config::HumanDuration::parse(s)
        .map(im_soap::config::HumanDuration::get)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("invalid duration {s:?} (use e.g. 20, 20s, 10m)"))
}

/// What one run measured.
#[derive(Debug, Default)]
struct Report {
    elapsed: Duration,
    sent: u64,
    codes: BTreeMap<i32, u64>,
    errors: u64,
    latencies_us: Vec<u32>,
}

impl Report {
    fn accepted(&self) -> u64 {
        self.codes.get(&0).copied().unwrap_or(0)
    }

    fn per_second(&self, n: u64) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            // Counts stay far below 2^52.
            #[allow(clippy::cast_precision_loss)]
            let n = n as f64;
            n / secs
        } else {
            0.0
        }
    }

    fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let len = self.latencies_us.len();
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = ((q * len as f64).ceil() as usize).clamp(1, len);
        f64::from(self.latencies_us[rank - 1]) / 1000.0
    }

    fn print(&self, title: &str) {
        println!("== {title}");
        println!(
            "   sent {}  accepted {}  transport errors {}  in {:.2} s",
            self.sent,
            self.accepted(),
            self.errors,
            self.elapsed.as_secs_f64()
        );
        let codes: Vec<String> = self
            .codes
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        println!("   errorCodes {{{}}}", codes.join(", "));
        println!(
            "   throughput {:.0} calls/s, {:.0} accepted/s",
            self.per_second(self.sent),
            self.per_second(self.accepted())
        );
        println!(
            "   latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            self.percentile_ms(0.50),
            self.percentile_ms(0.90),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0)
        );
    }
}

/// A new HTTP/1.1 connection to `addr` (its driver on a task of its own).
async fn connect(addr: SocketAddr) -> Option<http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

/// The target of a run.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    uri: Uri,
    host: HeaderValue,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(LogFormat::Text, "warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("im-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("im-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn resolve(url: &str) -> Result<Target, String> {
    let uri: Uri = url.parse().map_err(|e| format!("URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("URL {url:?}: only http:// is supported"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("URL {url:?} has no host"))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((authority.host(), port))
        .await
        .map_err(|e| format!("resolving {}: {e}", authority.host()))?
        .next()
        .ok_or_else(|| format!("{} does not resolve", authority.host()))?;
    let host = HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;
    Ok(Target { addr, uri, host })
}

async fn run(args: Args) -> Result<(), String> {
    let target = resolve(&args.url).await?;
    let label = args.charset.trim().to_ascii_lowercase();
    let encoding = encoding_for_label(label.as_bytes())
        .filter(|e| e.output_encoding() == *e)
        .ok_or_else(|| format!("charset {:?} is unknown or cannot be written", args.charset))?;
    let prefix = args.prefix.clone().unwrap_or_else(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("LG{ms}")
    });
    let content_type =
        HeaderValue::from_str(&format!("text/xml; charset={label}")).map_err(|e| e.to_string())?;
    if args.soak || args.overload {
        let plan = OpenPlan {
            encoding,
            label,
            prefix,
            content_type,
        };
        return open_loop(&args, target, plan).await;
    }
    let exchanges = args.exchanges.max(1);
    let user = args.user.clone();
    let password = args.password.clone();
    let lower = prefix.to_lowercase();
    let make = Arc::new(move |i: u64| -> Result<Bytes, String> {
        let exchange = u32::try_from(i % u64::from(exchanges)).unwrap_or(0) + 1;
        let order = install_adsl(
            &format!("{prefix}-{i}"),
            &format!("{lower}-{i}@lg.example"),
            exchange,
            &user,
            &password,
        );
        im_soap::client::encode_request(&order.to_form(), encoding, &label)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    });
    println!(
        "im-loadgen: {} connections, {}, Install ADSL over {} exchanges, {} requests, to {}",
        args.connections,
        args.count.map_or_else(
            || format!("{} s", args.duration.as_secs()),
            |n| format!("{n} work orders")
        ),
        exchanges,
        args.charset,
        args.url
    );
    let im_report = load(&args, &target, content_type.clone(), make.clone(), true).await;
    im_report.print("IM (EgyptWorkSheetAll, end to end)");
    if let Some(pid) = args.server_pid {
        match memory_of(pid) {
            Some((rss, hwm)) => println!(
                "   server memory: resident {:.1} MB, peak resident {:.1} MB",
                kib_to_mb(rss),
                kib_to_mb(hwm)
            ),
            None => println!("   server memory: /proc/{pid}/status not readable"),
        }
    }
    if args.baseline {
        let addr = start_baseline().map_err(|e| format!("baseline server: {e}"))?;
        let baseline_target = Target {
            addr,
            uri: target.uri.clone(),
            host: target.host.clone(),
        };
        let report = load(&args, &baseline_target, content_type, make, false).await;
        report.print("baseline (trivial hyper handler, fixed SOAP response)");
        let base = report.per_second(report.sent);
        if base > 0.0 {
            println!(
                "== ratio: IM accepted/s is {:.1} % of the baseline's calls/s ({:.2}x slower)",
                100.0 * im_report.per_second(im_report.accepted()) / base,
                base / im_report
                    .per_second(im_report.accepted())
                    .max(f64::MIN_POSITIVE)
            );
        }
    }
    Ok(())
}

fn kib_to_mb(kib: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let k = kib as f64;
    k / 1024.0
}

/// Current and peak resident memory (KiB) of a process, from /proc.
fn memory_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

type Maker = Arc<dyn Fn(u64) -> Result<Bytes, String> + Send + Sync>;

/// Runs the load against `target`; `check` reads every answer as a result.
async fn load(
    args: &Args,
    target: &Target,
    content_type: HeaderValue,
    make: Maker,
    check: bool,
) -> Report {
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + args.duration;
    let start = Instant::now();
    let mut workers = Vec::with_capacity(args.connections);
    for _ in 0..args.connections.max(1) {
        let w = Worker {
            target: target.clone(),
            content_type: content_type.clone(),
            make: make.clone(),
            next: next.clone(),
            stop: stop.clone(),
            count: args.count,
            deadline,
            check,
        };
        workers.push(tokio::spawn(w.run()));
    }
    let mut total = Report::default();
    for w in workers {
        if let Ok(r) = w.await {
            total.sent += r.sent;
            total.errors += r.errors;
            for (c, n) in r.codes {
                *total.codes.entry(c).or_insert(0) += n;
            }
            total.latencies_us.extend(r.latencies_us);
        }
    }
    total.elapsed = start.elapsed();
    total.latencies_us.sort_unstable();
    total
}

struct Worker {
    target: Target,
    content_type: HeaderValue,
    make: Maker,
    next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    count: Option<u64>,
    deadline: Instant,
    check: bool,
}

impl Worker {
    async fn connect(&self) -> Option<http1::SendRequest<Full<Bytes>>> {
        connect(self.target.addr).await
    }

    async fn run(self) -> Report {
        let mut report = Report::default();
        let mut sender = None;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            match self.count {
                Some(n) if i >= n => break,
                None if Instant::now() >= self.deadline => break,
                _ => {}
            }
            let body = match (self.make)(i) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("im-loadgen: cannot build request {i}: {e}");
                    self.stop.store(true, Ordering::Relaxed);
                    break;
                }
            };
            if sender.is_none() {
                sender = self.connect().await;
            }
            let Some(s) = sender.as_mut() else {
                report.errors += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let mut req = Request::new(Full::new(body));
            *req.method_mut() = Method::POST;
            *req.uri_mut() = self.target.uri.clone();
            req.headers_mut().insert(HOST, self.target.host.clone());
            req.headers_mut()
                .insert(CONTENT_TYPE, self.content_type.clone());
            req.headers_mut()
                .insert("SOAPAction", HeaderValue::from_static("\"\""));
            let t0 = Instant::now();
            let answer = match s.ready().await {
                Ok(()) => s.send_request(req).await.ok(),
                Err(_) => None,
            };
            let outcome = match answer {
                Some(resp) => read(resp, self.check).await,
                None => None,
            };
            let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
            report.sent += 1;
            match outcome {
                Some(code) => {
                    report.latencies_us.push(us);
                    *report.codes.entry(code).or_insert(0) += 1;
                }
                None => {
                    report.errors += 1;
                    sender = None;
                }
            }
        }
        report
    }
}

/// The errorCode of an answer (`0` for any 200 when not checking).
async fn read(resp: Response<Incoming>, check: bool) -> Option<i32> {
    let status = resp.status();
    let ct = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    if !check {
        return (status.as_u16() == 200).then_some(0);
    }
    match im_soap::result_xml::parse_response(&bytes, ct.as_deref()) {
        Ok(o) => Some(o.error_code.code()),
        Err(_) => Some(-(i32::from(status.as_u16()))),
    }
}

/// Starts the baseline server on its own thread and runtime (like a
/// separate server process): it reads the body and answers a fixed
/// accepted SOAP response.
fn start_baseline() -> Result<SocketAddr, String> {
    let fixed = Bytes::from(im_soap::result_xml::write_response(
        &Outcome {
            error_code: ErrorCode::Success,
            error_desc: "success".into(),
            flow_id: "BASELINE".into(),
            task_no: Some("WS20261204000001".into()),
            items: vec![im_core::ItemResult {
                seq: 1,
                opertype: "Install".into(),
                service_type: "ADSL".into(),
                user_name: "baseline@lg.example".into(),
                error_code: Some(ErrorCode::Success),
                port: "EX01-D1/0/1/0".into(),
                state: "ACTIVE".into(),
                ..im_core::ItemResult::default()
            }],
            duplicate_content: None,
        },
        ReturnElement::Out,
    ));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("baseline".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else {
                    return;
                };
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .keep_alive(true);
                while let Ok((tcp, _)) = listener.accept().await {
                    let _ = tcp.set_nodelay(true);
                    let body = fixed.clone();
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let body = body.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            let mut resp = Response::new(Full::new(body));
                            resp.headers_mut().insert(
                                CONTENT_TYPE,
                                HeaderValue::from_static("text/xml; charset=UTF-8"),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let conn = http.serve_connection(TokioIo::new(tcp), svc);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
            });
        })
        .map_err(|e| e.to_string())?;
    Ok(addr)
}

// ---------------------------------------------------------------------------
// Open-loop modes: --soak and --overload.
//
// Calls are sent on a fixed schedule (call k of a phase at `start + k / rate`)
// whatever happened to earlier calls, each from its own task over a pool of
// keep-alive connections; a call's latency runs from its scheduled time, so
// the time it waited for a free connection counts (no coordinated omission).
// ---------------------------------------------------------------------------

/// What the open-loop modes need from `run`.
struct OpenPlan {
    encoding: &'static encoding_rs::Encoding,
    label: String,
    prefix: String,
    content_type: HeaderValue,
}

/// How one open-loop call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallEnd {
    /// A result document with this errorCode.
    Code(i32),
    /// HTTP 500 with a SOAP Fault.
    Fault,
    /// Another HTTP status (413, 503, …), or a 200 that is not a result.
    Http(u16),
    /// The connection could not be opened.
    Connect,
    /// The connection failed while sending or reading.
    Broken,
    /// No answer within --call-timeout.
    Timeout,
}

/// The counters of one second of scheduled time.
#[derive(Debug, Default, Clone)]
struct Second {
    latencies_us: Vec<u32>,
    codes: BTreeMap<i32, u64>,
    faults: u64,
    http: u64,
    connect: u64,
    broken: u64,
    timeouts: u64,
    not_sent: u64,
    health_us: Vec<u32>,
    health_failed: u64,
    /// `/health` over a connection opened for the probe.
    fresh_us: Vec<u32>,
    fresh_failed: u64,
}

impl Second {
    fn merge(&mut self, o: &Second) {
        self.latencies_us.extend_from_slice(&o.latencies_us);
        for (c, n) in &o.codes {
            *self.codes.entry(*c).or_insert(0) += n;
        }
        self.faults += o.faults;
        self.http += o.http;
        self.connect += o.connect;
        self.broken += o.broken;
        self.timeouts += o.timeouts;
        self.not_sent += o.not_sent;
        self.health_us.extend_from_slice(&o.health_us);
        self.health_failed += o.health_failed;
        self.fresh_us.extend_from_slice(&o.fresh_us);
        self.fresh_failed += o.fresh_failed;
    }

    fn answered(&self) -> u64 {
        self.codes.values().sum::<u64>() + self.faults + self.http
    }

    fn code(&self, c: i32) -> u64 {
        self.codes.get(&c).copied().unwrap_or(0)
    }
}

/// The p-quantile (0..=1) of `v` in milliseconds (sorts `v`).
fn quantile_ms(v: &mut [u32], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let len = v.len();
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((q * len as f64).ceil() as usize).clamp(1, len);
    f64::from(v[rank - 1]) / 1000.0
}

/// The kind of call number `k` of an open-loop run, and its user.
///
/// The first `lag` calls Install users 0..lag; after that calls alternate
/// between the Delete of the oldest user still held and the Install of a
/// new one, so about `lag` ports are held however long the run.
fn call_kind(k: u64, lag: u64) -> (bool, u64) {
    if k < lag {
        return (true, k);
    }
    let j = k - lag;
    if j.is_multiple_of(2) {
        (false, j / 2)
    } else {
        (true, lag + j / 2)
    }
}

/// A Delete of the ADSL service of `user`.
fn delete_adsl(
    flow_id: &str,
    user: &str,
    exchange: u32,
    login: &str,
    password: &str,
) -> im_soap::WorkOrder {
    let (_, popid) = im_examples::demo_exchange(exchange);
    im_soap::WorkOrder::new(login, password, flow_id, popid).item(im_soap::WorkItem::new(
        im_core::model::OperType::Delete,
        Some(im_core::model::CoverType::Adsl),
        Some(im_core::model::ServiceType::Adsl),
        user,
    ))
}

/// A Query of every service of `user`.
fn query_user(flow_id: &str, user: &str, login: &str, password: &str) -> im_soap::WorkOrder {
    im_soap::WorkOrder::new(login, password, flow_id, "19601").item(im_soap::WorkItem::new(
        im_core::model::OperType::Query,
        None,
        None,
        user,
    ))
}

/// Shared state of an open-loop run.
struct Open {
    target: Target,
    /// Where `/health` is probed.
    health_addr: SocketAddr,
    plan: OpenPlan,
    user: String,
    password: String,
    exchanges: u32,
    lag: u64,
    start: Instant,
    call_timeout: Duration,
    permits: Arc<tokio::sync::Semaphore>,
    idle: std::sync::Mutex<Vec<http1::SendRequest<Full<Bytes>>>>,
    waiting: AtomicU64,
    seconds: std::sync::Mutex<Vec<Second>>,
    /// flowId, UserName and whether it was an Install, of every -9999.
    shed: std::sync::Mutex<Vec<(String, String, bool)>>,
}

impl Open {
    fn user_name(&self, u: u64) -> String {
        format!("{}-u{u}@lg.example", self.plan.prefix.to_lowercase())
    }

    fn flow_id(&self, k: u64) -> String {
        format!("{}-{k}", self.plan.prefix)
    }

    fn order(&self, k: u64) -> (im_soap::WorkOrder, bool) {
        let (install, u) = call_kind(k, self.lag);
        let exchange = u32::try_from(u % u64::from(self.exchanges)).unwrap_or(0) + 1;
        let flow = self.flow_id(k);
        let user = self.user_name(u);
        if install {
            (
                install_adsl(&flow, &user, exchange, &self.user, &self.password),
                true,
            )
        } else {
            (
                delete_adsl(&flow, &user, exchange, &self.user, &self.password),
                false,
            )
        }
    }

    fn record(&self, second: usize, f: impl FnOnce(&mut Second)) {
        let mut s = self
            .seconds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.len() <= second {
            s.resize_with(second + 1, Second::default);
        }
        f(&mut s[second]);
    }

    fn second_of(&self, at: Instant) -> usize {
        usize::try_from(at.saturating_duration_since(self.start).as_secs()).unwrap_or(usize::MAX)
    }

    async fn connect(&self) -> Option<http1::SendRequest<Full<Bytes>>> {
        connect(self.target.addr).await
    }

    fn take_idle(&self) -> Option<http1::SendRequest<Full<Bytes>>> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, s: http1::SendRequest<Full<Bytes>>) {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(s);
    }

    /// Sends `body` over a pooled connection; the connection goes back to
    /// the pool only when the call completed.
    async fn send(&self, body: Bytes) -> (CallEnd, Option<Outcome>) {
        let mut sender = match self.take_idle() {
            Some(s) => s,
            None => match self.connect().await {
                Some(s) => s,
                None => return (CallEnd::Connect, None),
            },
        };
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.target.uri.clone();
        req.headers_mut().insert(HOST, self.target.host.clone());
        req.headers_mut()
            .insert(CONTENT_TYPE, self.plan.content_type.clone());
        req.headers_mut()
            .insert("SOAPAction", HeaderValue::from_static("\"\""));
        if sender.ready().await.is_err() {
            return (CallEnd::Broken, None);
        }
        let Ok(resp) = sender.send_request(req).await else {
            return (CallEnd::Broken, None);
        };
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let Ok(collected) = resp.into_body().collect().await else {
            return (CallEnd::Broken, None);
        };
        self.put_idle(sender);
        let bytes = collected.to_bytes();
        match im_soap::result_xml::parse_response(&bytes, ct.as_deref()) {
            Ok(o) => (CallEnd::Code(o.error_code.code()), Some(o)),
            Err(im_soap::result_xml::ReadError::Fault(_)) => (CallEnd::Fault, None),
            Err(_) => (CallEnd::Http(status), None),
        }
    }

    /// One scheduled call: wait for a connection, send, record.
    async fn call(self: Arc<Self>, k: u64, due: Instant) {
        let second = self.second_of(due);
        let permit = self.permits.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let Ok(_permit) = permit else {
            return;
        };
        let (order, install) = self.order(k);
        let body = match im_soap::client::encode_request(
            &order.to_form(),
            self.plan.encoding,
            &self.plan.label,
        ) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                eprintln!("im-loadgen: cannot build call {k}: {e}");
                return;
            }
        };
        let end = match tokio::time::timeout(self.call_timeout, self.send(body)).await {
            Ok((end, _)) => end,
            Err(_) => CallEnd::Timeout,
        };
        let us = u32::try_from(due.elapsed().as_micros()).unwrap_or(u32::MAX);
        if end == CallEnd::Code(ErrorCode::Internal.code()) {
            let user = order
                .items
                .first()
                .map(|i| i.user_name.clone())
                .unwrap_or_default();
            self.shed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((order.flow_id.clone(), user, install));
        }
        self.record(second, |s| match end {
            CallEnd::Code(c) => {
                s.latencies_us.push(us);
                *s.codes.entry(c).or_insert(0) += 1;
            }
            CallEnd::Fault => {
                s.latencies_us.push(us);
                s.faults += 1;
            }
            CallEnd::Http(_) => {
                s.latencies_us.push(us);
                s.http += 1;
            }
            CallEnd::Connect => s.connect += 1,
            CallEnd::Broken => s.broken += 1,
            CallEnd::Timeout => s.timeouts += 1,
        });
    }
}

/// A phase of an open-loop run: a rate for a time.
#[derive(Debug, Clone, Copy)]
struct Phase {
    name: &'static str,
    rate: f64,
    length: Duration,
}

/// Sends the calls of `phases` on schedule; returns when the last call
/// was scheduled (not answered).
async fn dispatch(open: &Arc<Open>, phases: &[Phase], max_waiting: u64) -> u64 {
    let mut k = 0u64;
    let mut phase_start = open.start;
    for p in phases {
        let phase_end = phase_start + p.length;
        let step = Duration::from_secs_f64(1.0 / p.rate.max(0.001));
        let mut due = phase_start;
        while due < phase_end {
            let now = Instant::now();
            if due > now + Duration::from_millis(1) {
                tokio::time::sleep_until(due.into()).await;
            }
            if open.waiting.load(Ordering::Relaxed) >= max_waiting {
                open.record(open.second_of(due), |s| s.not_sent += 1);
            } else {
                open.waiting.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(open.clone().call(k, due));
                k += 1;
            }
            due += step;
        }
        phase_start = phase_end;
    }
    k
}

/// Resident memory (KiB) and open descriptors of a process.
fn rss_and_fds(pid: u32) -> Option<(u64, u64)> {
    let (rss, _) = memory_of(pid)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, u64::try_from(fds).unwrap_or(u64::MAX)))
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Probes `GET /health` every 250 ms until `stop`: over its own keep-alive
/// connection (reopened when it breaks), or with `fresh` over a new
/// connection each time (as a liveness probe does).
async fn probe_health(open: Arc<Open>, stop: Arc<AtomicBool>, fresh: bool) {
    let addr = open.health_addr;
    let Ok(host) = HeaderValue::from_str(&addr.to_string()) else {
        return;
    };
    let uri: Uri = match format!("http://{addr}/health").parse() {
        Ok(u) => u,
        Err(_) => return,
    };
    let mut sender: Option<http1::SendRequest<Full<Bytes>>> = None;
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let second = open.second_of(t0);
        let attempt = async {
            if fresh || sender.as_ref().is_none_or(http1::SendRequest::is_closed) {
                sender = connect(addr).await;
            }
            let s = sender.as_mut()?;
            s.ready().await.ok()?;
            let mut req = Request::new(Full::new(Bytes::new()));
            *req.uri_mut() = uri.clone();
            req.headers_mut().insert(HOST, host.clone());
            let resp = s.send_request(req).await.ok()?;
            let ok = resp.status().as_u16() == 200;
            resp.into_body().collect().await.ok()?;
            Some(ok)
        };
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(5), attempt).await,
            Ok(Some(true))
        );
        let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
        if !ok || fresh {
            sender = None;
        }
        open.record(second, |s| match (fresh, ok) {
            (false, true) => s.health_us.push(us),
            (false, false) => s.health_failed += 1,
            (true, true) => s.fresh_us.push(us),
            (true, false) => s.fresh_failed += 1,
        });
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn open_loop(args: &Args, target: Target, plan: OpenPlan) -> Result<(), String> {
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err("--rate must be a positive number".into());
    }
    let phases: Vec<Phase> = if args.soak {
        vec![Phase {
            name: "soak",
            rate: args.rate,
            length: args.duration,
        }]
    } else {
        vec![
            Phase {
                name: "normal",
                rate: args.rate,
                length: args.duration,
            },
            Phase {
                name: "overload",
                rate: args.rate * args.factor.max(1.0),
                length: args.duration,
            },
            Phase {
                name: "after",
                rate: args.rate,
                length: args.duration,
            },
        ]
    };
    let total: Duration = phases.iter().map(|p| p.length).sum();
    println!(
        "im-loadgen {}: open loop, {} for {} s, up to {} connections, Install/Delete ADSL over {} exchanges ({} ports held at most), {}, to {}",
        if args.soak { "soak" } else { "overload" },
        phases
            .iter()
            .map(|p| format!("{} {:.0}/s", p.name, p.rate))
            .collect::<Vec<_>>()
            .join(", "),
        total.as_secs(),
        args.max_connections,
        args.exchanges.max(1),
        args.delete_lag,
        plan.label,
        args.url
    );
    let open = Arc::new(Open {
        health_addr: args.health_addr.unwrap_or(target.addr),
        target,
        plan,
        user: args.user.clone(),
        password: args.password.clone(),
        exchanges: args.exchanges.max(1),
        lag: args.delete_lag.max(1),
        start: Instant::now() + Duration::from_millis(200),
        call_timeout: args.call_timeout,
        permits: Arc::new(tokio::sync::Semaphore::new(args.max_connections.max(1))),
        idle: std::sync::Mutex::new(Vec::new()),
        waiting: AtomicU64::new(0),
        seconds: std::sync::Mutex::new(Vec::new()),
        shed: std::sync::Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let health = tokio::spawn(probe_health(open.clone(), stop.clone(), false));
    let fresh_health = tokio::spawn(probe_health(open.clone(), stop.clone(), true));
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(f64, u64, u64)>::new()));
    let sampler = args.server_pid.map(|pid| {
        let samples = samples.clone();
        let stop = stop.clone();
        let every = args.sample_every;
        let start = open.start;
        let end = open.start + total;
        tokio::spawn(async move {
            // Samples of the run only (not of the drain after it).
            while !stop.load(Ordering::Relaxed) && Instant::now() <= end {
                if let Some((rss, fds)) = rss_and_fds(pid) {
                    let t = Instant::now()
                        .saturating_duration_since(start)
                        .as_secs_f64();
                    samples
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((t, rss, fds));
                }
                tokio::time::sleep(every).await;
            }
        })
    });
    // Per-minute lines while a soak runs.
    let ticker = args.soak.then(|| {
        let open = open.clone();
        let samples = samples.clone();
        let minutes = total.as_secs().div_ceil(60);
        tokio::spawn(async move {
            println!("   minute  calls/s  accepted/s  -9999  p50 ms  p99 ms  p999 ms  max ms  errors  RSS MB  fds");
            for m in 0..minutes {
                // Report minute m once its last call's time-out has passed.
                let end = open.start + Duration::from_secs((m + 1) * 60) + open.call_timeout;
                tokio::time::sleep_until(end.into()).await;
                let s = minute_of(&open, m);
                let secs = (total.as_secs() - m * 60).min(60);
                print_minute(m, secs, &s, &samples);
            }
        })
    });
    let sent = dispatch(&open, &phases, args.max_waiting).await;
    // Let the last calls finish (or time out).
    let drain = Instant::now() + args.call_timeout + Duration::from_secs(1);
    while open.permits.available_permits() < args.max_connections.max(1)
        || open.waiting.load(Ordering::Relaxed) > 0
    {
        if Instant::now() > drain {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(t) = ticker {
        let _ = t.await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = health.await;
    let _ = fresh_health.await;
    if let Some(s) = sampler {
        let _ = s.await;
    }
    println!("   calls scheduled and sent: {sent}");
    if args.soak {
        soak_report(args, &open, &samples)
    } else {
        overload_report(args, &open, &phases).await
    }
}

fn minute_of(open: &Open, m: u64) -> Second {
    let secs = open
        .seconds
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = Second::default();
    let from = usize::try_from(m * 60).unwrap_or(usize::MAX);
    for s in secs.iter().skip(from).take(60) {
        out.merge(s);
    }
    out
}

fn print_minute(m: u64, secs: u64, s: &Second, samples: &std::sync::Mutex<Vec<(f64, u64, u64)>>) {
    let mut lat = s.latencies_us.clone();
    let last = samples
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .last()
        .copied();
    let (rss, fds) = last.map_or((String::from("-"), String::from("-")), |(_, r, f)| {
        (format!("{:.1}", kib_to_mb(r)), f.to_string())
    });
    #[allow(clippy::cast_precision_loss)]
    let per_s = |n: u64| n as f64 / secs.max(1) as f64;
    println!(
        "   {:>6}  {:>7.0}  {:>10.0}  {:>5}  {:>6.2}  {:>6.2}  {:>7.2}  {:>6.1}  {:>6}  {:>6}  {}",
        m + 1,
        per_s(s.answered()),
        per_s(s.code(0)),
        s.code(ErrorCode::Internal.code()),
        quantile_ms(&mut lat, 0.50),
        quantile_ms(&mut lat, 0.99),
        quantile_ms(&mut lat, 0.999),
        quantile_ms(&mut lat, 1.0),
        s.connect + s.broken + s.timeouts + s.not_sent + s.faults + s.http,
        rss,
        fds
    );
}

fn soak_report(
    args: &Args,
    open: &Open,
    samples: &std::sync::Mutex<Vec<(f64, u64, u64)>>,
) -> Result<(), String> {
    let mut all = Second::default();
    for s in open
        .seconds
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        all.merge(s);
    }
    let codes: Vec<String> = all.codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    println!(
        "== soak: answered {}  errorCodes {{{}}}",
        all.answered(),
        codes.join(", ")
    );
    println!(
        "   faults {}  other HTTP {}  connect errors {}  broken {}  time-outs {}  not sent {}",
        all.faults, all.http, all.connect, all.broken, all.timeouts, all.not_sent
    );
    let mut lat = all.latencies_us.clone();
    println!(
        "   latency ms (from the scheduled time)  p50 {:.2}  p99 {:.2}  p999 {:.2}  max {:.1}",
        quantile_ms(&mut lat, 0.5),
        quantile_ms(&mut lat, 0.99),
        quantile_ms(&mut lat, 0.999),
        quantile_ms(&mut lat, 1.0)
    );
    let samples = samples
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if args.server_pid.is_none() {
        println!("   no --server-pid: memory and descriptors not sampled; no verdict");
        return Ok(());
    }
    let warm = args.warmup.as_secs_f64();
    let used: Vec<&(f64, u64, u64)> = samples.iter().filter(|s| s.0 >= warm).collect();
    #[allow(clippy::cast_precision_loss)]
    let rss_pts: Vec<(f64, f64)> = used.iter().map(|s| (s.0 / 60.0, kib_to_mb(s.1))).collect();
    #[allow(clippy::cast_precision_loss)]
    let fd_pts: Vec<(f64, f64)> = used.iter().map(|s| (s.0 / 60.0, s.2 as f64)).collect();
    let (Some(rss_slope), Some(fd_slope)) = (slope(&rss_pts), slope(&fd_pts)) else {
        return Err("too few samples after the warm-up for a slope".into());
    };
    let (first, last) = (used.first(), used.last());
    if let (Some(f), Some(l)) = (first, last) {
        println!(
            "   server: {} samples after a {:.0} s warm-up; RSS {:.1} → {:.1} MB, fds {} → {} (min {} max {})",
            used.len(),
            warm,
            kib_to_mb(f.1),
            kib_to_mb(l.1),
            f.2,
            l.2,
            used.iter().map(|s| s.2).min().unwrap_or(0),
            used.iter().map(|s| s.2).max().unwrap_or(0)
        );
    }
    let rss_ok = rss_slope <= args.max_rss_slope;
    let fd_ok = fd_slope <= args.max_fd_slope;
    println!(
        "   slopes (least squares): RSS {rss_slope:+.3} MB/min (limit {}), fds {fd_slope:+.3} /min (limit {})",
        args.max_rss_slope, args.max_fd_slope
    );
    let errors = all.connect + all.broken + all.timeouts + all.not_sent + all.faults + all.http;
    let shed = all.code(ErrorCode::Internal.code());
    let verdict = rss_ok && fd_ok && errors == 0 && shed == 0;
    println!(
        "== soak verdict: {} (RSS slope {}, fd slope {}, transport errors {errors}, -9999 {shed})",
        if verdict { "PASS" } else { "FAIL" },
        if rss_ok { "ok" } else { "too steep" },
        if fd_ok { "ok" } else { "too steep" }
    );
    if verdict {
        Ok(())
    } else {
        Err("soak verdict: FAIL".into())
    }
}

async fn overload_report(args: &Args, open: &Arc<Open>, phases: &[Phase]) -> Result<(), String> {
    let secs = open
        .seconds
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let phase_secs = usize::try_from(args.duration.as_secs()).unwrap_or(usize::MAX);
    println!(
        "== overload, per phase ({} s each)",
        args.duration.as_secs()
    );
    println!(
        "   phase      offered/s  answered/s  accepted/s  -9999  other codes  faults  conn errors  time-outs  not sent  p50 ms  p99 ms  max ms  /health p50 / p99 / max ms (failed)  new connection: p50 / p99 / max ms (failed)"
    );
    let mut phase_stats = Vec::new();
    for (i, p) in phases.iter().enumerate() {
        let mut s = Second::default();
        for x in secs.iter().skip(i * phase_secs).take(phase_secs) {
            s.merge(x);
        }
        #[allow(clippy::cast_precision_loss)]
        let per_s = |n: u64| n as f64 / args.duration.as_secs_f64();
        let mut lat = s.latencies_us.clone();
        let mut health = s.health_us.clone();
        let mut fresh = s.fresh_us.clone();
        let shed = s.code(ErrorCode::Internal.code());
        let other: u64 = s
            .codes
            .iter()
            .filter(|(c, _)| **c != 0 && **c != ErrorCode::Internal.code())
            .map(|(_, n)| n)
            .sum();
        println!(
            "   {:<9}  {:>9.0}  {:>10.0}  {:>10.0}  {:>5}  {:>11}  {:>6}  {:>11}  {:>9}  {:>8}  {:>6.1}  {:>6.1}  {:>6.0}  {:.1} / {:.1} / {:.1} ({})  {:.1} / {:.1} / {:.1} ({})",
            p.name,
            p.rate,
            per_s(s.answered()),
            per_s(s.code(0)),
            shed,
            other,
            s.faults + s.http,
            s.connect + s.broken,
            s.timeouts,
            s.not_sent,
            quantile_ms(&mut lat, 0.5),
            quantile_ms(&mut lat, 0.99),
            quantile_ms(&mut lat, 1.0),
            quantile_ms(&mut health, 0.5),
            quantile_ms(&mut health, 0.99),
            quantile_ms(&mut health, 1.0),
            s.health_failed,
            quantile_ms(&mut fresh, 0.5),
            quantile_ms(&mut fresh, 0.99),
            quantile_ms(&mut fresh, 1.0),
            s.fresh_failed
        );
        let codes: Vec<String> = s.codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        println!("   {:<9}  errorCodes {{{}}}", "", codes.join(", "));
        phase_stats.push(s);
    }
    // Recovery: the first second of the last phase from which every
    // second's p99 stays within twice the first phase's p99 (+ 5 ms).
    let mut normal_lat = phase_stats
        .first()
        .map(|s| s.latencies_us.clone())
        .unwrap_or_default();
    let normal_p99 = quantile_ms(&mut normal_lat, 0.99);
    let bound = 2.0 * normal_p99 + 5.0;
    let last: Vec<Second> = secs
        .iter()
        .skip(2 * phase_secs)
        .take(phase_secs)
        .cloned()
        .collect();
    let mut recovered_at = None;
    for (i, _) in last.iter().enumerate() {
        let ok = last[i..].iter().all(|s| {
            let mut l = s.latencies_us.clone();
            quantile_ms(&mut l, 0.99) <= bound
                && s.connect + s.broken + s.timeouts + s.not_sent == 0
                && s.code(ErrorCode::Internal.code()) == 0
        });
        if ok {
            recovered_at = Some(i);
            break;
        }
    }
    let health_failed: u64 = phase_stats.iter().map(|s| s.health_failed).sum();
    let mut overload_health = phase_stats
        .get(1)
        .map(|s| s.health_us.clone())
        .unwrap_or_default();
    let health_p99 = quantile_ms(&mut overload_health, 0.99);
    match recovered_at {
        Some(s) => println!(
            "   recovery: per-second p99 back under {bound:.1} ms (2 × normal p99 + 5 ms) {s} s after the overload ended"
        ),
        None => println!(
            "   recovery: per-second p99 not back under {bound:.1} ms within the last phase"
        ),
    }
    let verified = verify_shed(args, open).await?;
    let recovered = recovered_at.is_some_and(|s| (s as u64) <= args.recovery_within.as_secs());
    let fresh_failed: u64 = phase_stats.iter().map(|s| s.fresh_failed).sum();
    let mut overload_fresh = phase_stats
        .get(1)
        .map(|s| s.fresh_us.clone())
        .unwrap_or_default();
    let fresh_p99 = quantile_ms(&mut overload_fresh, 0.99);
    let responsive = health_failed == 0 && health_p99 < 1000.0;
    let fresh_ok = fresh_failed == 0 && fresh_p99 < 1000.0;
    let verdict = recovered && responsive && fresh_ok && verified;
    println!(
        "== overload verdict: {} (recovered {}, /health responsive {} (p99 {health_p99:.1} ms during overload, {health_failed} failed probes), over new connections {} (p99 {fresh_p99:.1} ms, {fresh_failed} failed), -9999 answers with nothing stored {})",
        if verdict { "PASS" } else { "FAIL" },
        if recovered { "yes" } else { "no" },
        if responsive { "yes" } else { "no" },
        if fresh_ok { "yes" } else { "no" },
        if verified { "yes" } else { "no" }
    );
    if verdict {
        Ok(())
    } else {
        Err("overload verdict: FAIL".into())
    }
}

/// Checks that nothing was stored for calls answered -9999: each shed
/// Install's user has no service (a Query work order), and with --db no
/// task holds the flowId of any shed call.
async fn verify_shed(args: &Args, open: &Arc<Open>) -> Result<bool, String> {
    let shed = open
        .shed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if shed.is_empty() {
        println!("   -9999 answers: none to verify");
        return Ok(true);
    }
    let installs: Vec<&(String, String, bool)> = shed.iter().filter(|s| s.2).collect();
    // A sample is enough to show it; all of them with --db below.
    let step = (installs.len() / 500).max(1);
    let mut queried = 0u64;
    let mut stored = 0u64;
    for (n, (_, user, _)) in installs.iter().step_by(step).enumerate() {
        let order = query_user(
            &format!("{}-q{n}", open.plan.prefix),
            user,
            &open.user,
            &open.password,
        );
        let body =
            im_soap::client::encode_request(&order.to_form(), open.plan.encoding, &open.plan.label)
                .map_err(|e| e.to_string())?;
        match tokio::time::timeout(args.call_timeout, open.send(Bytes::from(body))).await {
            Ok((CallEnd::Code(0), Some(o))) => {
                queried += 1;
                if o.items.iter().any(|i| !i.services.is_empty()) {
                    stored += 1;
                    println!("   -9999 Install of {user}: a service is stored");
                }
            }
            other => return Err(format!("Query of {user} failed: {:?}", other.map(|o| o.0))),
        }
    }
    println!(
        "   -9999 answers: {} ({} Installs); Query of {queried} of those users: {stored} with a stored service",
        shed.len(),
        installs.len()
    );
    let mut ok = stored == 0;
    if let Some(db) = &args.db {
        let conn = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("{}: {e}", db.display()))?;
        let mut stmt = conn
            .prepare("SELECT count(*) FROM task WHERE flow_id = ?1")
            .map_err(|e| e.to_string())?;
        let mut found = 0u64;
        for (flow, _, _) in &shed {
            let n: i64 = stmt
                .query_row([flow], |r| r.get(0))
                .map_err(|e| e.to_string())?;
            if n > 0 {
                found += 1;
            }
        }
        println!(
            "   database {}: {found} of the {} shed flowIds have a task",
            db.display(),
            shed.len()
        );
        ok &= found == 0;
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_then_delete_install_pairs() {
        let kinds: Vec<(bool, u64)> = (0..8).map(|k| call_kind(k, 3)).collect();
        assert_eq!(
            kinds,
            [
                (true, 0),
                (true, 1),
                (true, 2),
                (false, 0),
                (true, 3),
                (false, 1),
                (true, 4),
                (false, 2)
            ]
        );
        // Every user is installed before it is deleted, each exactly once.
        let mut installed = std::collections::HashSet::new();
        let mut deleted = std::collections::HashSet::new();
        for k in 0..10_000 {
            let (install, u) = call_kind(k, 40);
            if install {
                assert!(installed.insert(u));
            } else {
                assert!(installed.contains(&u) && deleted.insert(u));
            }
        }
    }

    #[test]
    fn least_squares_slope() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|x| (f64::from(x), 3.0 * f64::from(x) + 1.0))
            .collect();
        let s = slope(&line).unwrap_or(f64::NAN);
        assert!((s - 3.0).abs() < 1e-9, "{s}");
        assert_eq!(slope(&[(1.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
        let flat: Vec<(f64, f64)> = (0..10).map(|x| (f64::from(x), 5.0)).collect();
        assert_eq!(slope(&flat), Some(0.0));
    }

    #[test]
    fn quantiles() {
        let mut v = vec![5000, 1000, 3000, 2000, 4000];
        assert!((quantile_ms(&mut v, 0.5) - 3.0).abs() < 1e-9);
        assert!((quantile_ms(&mut v, 1.0) - 5.0).abs() < 1e-9);
        assert!((quantile_ms(&mut [], 0.99)).abs() < 1e-9);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
    }
}
