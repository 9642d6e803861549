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
    /// Run for this many seconds (ignored when --count is given).
    #[arg(long, short, default_value_t = 10)]
    duration: u64,
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
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
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
            || format!("{} s", args.duration),
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
    let deadline = Instant::now() + Duration::from_secs(args.duration.max(1));
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
        let stream = TcpStream::connect(self.target.addr).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Some(sender)
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
