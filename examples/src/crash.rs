//! The crash harness: the example server as a separate process, driven by
//! many concurrent OM clients, killed with SIGKILL at random moments while
//! work orders are in flight and restarted on the same database; then the
//! database is opened directly and checked against every answer the
//! clients got (`docs/reliability.md`).
//!
//! The workload is a seeded script per subscriber: an Install (ADSL, or
//! FTTH with an IPTV add-on in the same call), sometimes resent with the
//! same flowId and the same content (must be -1003 `SAME`) or with changed
//! content (-1003 `DIFFERENT`), a Modify of the speed, sometimes resent,
//! and sometimes a Delete. Each call is retried with its flowId until it is
//! answered (-9999, connection errors and time-outs), so every call of the
//! script ends answered; a call that had an attempt without an answer may
//! find itself stored already (-1003 `SAME` with its task).
//!
//! With `am` set, the server delivers the outbox to an AM simulator
//! (`am-sim`, a separate process too) and the kills also land while
//! commands are being delivered; the check then compares what AM received
//! with the outbox.

use crate::process::{Proc, ServerProcess, http_get};
use im_core::model::{CoverType, OperType, ServiceType};
use im_core::{DuplicateContent, ErrorCode};
use im_soap::{ClientConfig, OmClient, WorkItem, WorkOrder};
use rusqlite::{Connection, OpenFlags, params};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A small seeded generator (SplitMix64): the same seed gives the same
/// workload and the same kill points.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi.saturating_sub(lo) + 1)
    }

    /// `true` with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// A seed written in decimal or as `0x` and hex digits.
pub fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    s.strip_prefix("0x")
        .map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
}

/// A seed from the clock, or from the environment variable `var` when set
/// (so that a failing run can be repeated).
pub fn seed_from_env(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| parse_seed(&s))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// How a crash run is made.
#[derive(Debug, Clone)]
pub struct CrashOptions {
    /// Seed of the workload and of the kill points.
    pub seed: u64,
    /// Concurrent OM clients (each with its own connections).
    pub clients: usize,
    /// Subscribers per client (each a script of 1 to 5 calls).
    pub users_per_client: usize,
    /// SIGKILLs of the server while the clients run.
    pub kills: usize,
    /// A call unanswered for this long counts as lost.
    pub call_deadline: Duration,
    /// Base URL of AM (`am-sim`) for the server's delivery worker, if any.
    pub am_url: Option<String>,
}

impl CrashOptions {
    /// The short form: 32 clients, 10 subscribers each, 5 kills.
    pub fn short(seed: u64) -> CrashOptions {
        CrashOptions {
            seed,
            clients: 32,
            users_per_client: 10,
            kills: 5,
            call_deadline: Duration::from_secs(120),
            am_url: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tech {
    Adsl,
    Ftth,
}

/// What a call must be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A new flowId: 0 (or -1003 SAME when an earlier attempt got no answer).
    Fresh,
    /// The call at this index of the same client, resent as it was.
    Same(usize),
    /// The call at this index of the same client, its flowId reused with
    /// other content.
    Different(usize),
}

#[derive(Debug, Clone)]
struct Call {
    order: WorkOrder,
    expect: Expect,
    oper: OperType,
    user: usize,
    /// Commands this call queues for AM when accepted.
    commands: i64,
}

/// The final state a subscriber must be in.
#[derive(Debug, Clone)]
struct UserPlan {
    name: String,
    tech: Tech,
    ont_sn: String,
    /// The port it must hold, when a Modify moved it to a known one.
    port: Option<String>,
    active: bool,
    speed_kbps: i64,
}

const SPEEDS: [(&str, i64); 4] = [("4M", 4096), ("8M", 8192), ("16M", 16384), ("24M", 24576)];

/// The whole workload, made from the seed before anything runs.
#[derive(Debug)]
struct Plan {
    prefix: String,
    users: Vec<UserPlan>,
    clients: Vec<Vec<Call>>,
}

fn item(oper: OperType, tech: Tech, service: ServiceType, user: &str) -> WorkItem {
    let cover = match tech {
        Tech::Adsl => CoverType::Adsl,
        Tech::Ftth => CoverType::Ftth,
    };
    WorkItem::new(oper, Some(cover), Some(service), user)
}

/// Demo exchanges the workload needs: 10 (the small demo set) up to 1,500
/// subscribers, then one per 150 (so that no DSLAM runs out of ports).
pub fn exchanges_for(opts: &CrashOptions) -> u32 {
    let users = (opts.clients * opts.users_per_client) as u64;
    u32::try_from(users.div_ceil(150))
        .unwrap_or(u32::MAX)
        .max(10)
}

fn plan(opts: &CrashOptions) -> Plan {
    let mut rng = Rng::new(opts.seed);
    let exchanges = exchanges_for(opts);
    // Ports handed out to Modifies that move a service, per exchange.
    let mut moved = vec![0u32; exchanges as usize + 1];
    let prefix = format!("CR{:08X}", rng.next_u64() as u32);
    let ont_base = rng.next_u64() as u32 & 0xFF00_0000;
    let (login, password) = (crate::DEMO_USER, crate::DEMO_PASSWORD);
    let mut users = Vec::new();
    let mut clients = Vec::new();
    for c in 0..opts.clients {
        let mut calls: Vec<Call> = Vec::new();
        for u in 0..opts.users_per_client {
            let idx = users.len();
            let name = format!("{}-{c}-{u}@crash.example", prefix.to_ascii_lowercase());
            let tech = if rng.chance(30) {
                Tech::Ftth
            } else {
                Tech::Adsl
            };
            let (speed, kbps) = SPEEDS[rng.range(0, 3) as usize];
            let mut ont_sn = format!("HWTC{:08X}", ont_base | (idx as u32 & 0x007F_FFFF));
            let mut final_port = None;
            let flow = |step: &str| format!("{prefix}-{c}-{u}-{step}");
            let ex_n = rng.range(1, u64::from(exchanges)) as u32;
            // Install: ADSL on the first DSLAM of a demo exchange (IM picks
            // the port), or FTTH on a demo compound with its IPTV add-on in
            // the same call.
            let (popid, install) = match tech {
                Tech::Adsl => {
                    let (code, popid) = crate::demo_exchange(ex_n);
                    let it = item(OperType::Install, tech, ServiceType::Adsl, &name)
                        .attr("Dslamname", format!("{code}-D1"))
                        .attr("ExchangeID", code);
                    (popid, vec![it])
                }
                Tech::Ftth => {
                    let m = rng.range(1, 2 * u64::from(exchanges)) as u32;
                    let (_, popid) = crate::demo_exchange((m - 1) % exchanges + 1);
                    let ftth = item(OperType::Install, tech, ServiceType::Ftth, &name)
                        .attr("CompoundId", format!("CP{m:02}"))
                        .attr("ONTSN", ont_sn.clone());
                    let iptv = item(OperType::Install, tech, ServiceType::Iptv, &name)
                        .attr("IPTVContent", "basic");
                    (popid, vec![ftth, iptv])
                }
            };
            let with_customer = |it: WorkItem, speed: &str| {
                if it.service_type == Some(ServiceType::Iptv) {
                    return it;
                }
                it.field("AccountNumber", format!("{prefix}{c:03}{u:03}"))
                    .field("CustomerName", "\u{645}\u{62d}\u{645}\u{62f} Crash")
                    .field("Password", "pppoe-crash")
                    .attr("Speed", speed)
            };
            let order_of = |flow_id: String, items: Vec<WorkItem>| {
                items
                    .into_iter()
                    .fold(WorkOrder::new(login, password, flow_id, &popid), |o, i| {
                        o.item(i)
                    })
            };
            let install_at = calls.len();
            let n_items = install.len() as i64;
            let install_items: Vec<WorkItem> = install
                .into_iter()
                .map(|i| with_customer(i, speed))
                .collect();
            calls.push(Call {
                order: order_of(flow("i"), install_items.clone()),
                expect: Expect::Fresh,
                oper: OperType::Install,
                user: idx,
                commands: n_items,
            });
            if rng.chance(30) {
                let again = calls[install_at].clone();
                calls.push(Call {
                    expect: Expect::Same(install_at),
                    ..again
                });
            }
            if rng.chance(15) {
                let (other, _) = SPEEDS
                    [(SPEEDS.iter().position(|s| s.0 == speed).unwrap_or(0) + 1) % SPEEDS.len()];
                let changed: Vec<WorkItem> = install_items
                    .iter()
                    .cloned()
                    .map(|mut it| {
                        for a in &mut it.attrs {
                            if a.name == "Speed" {
                                a.value = other.to_string();
                            }
                        }
                        it
                    })
                    .collect();
                calls.push(Call {
                    order: order_of(flow("i"), changed),
                    expect: Expect::Different(install_at),
                    oper: OperType::Install,
                    user: idx,
                    commands: 0,
                });
            }
            let mut final_kbps = kbps;
            if rng.chance(60) {
                let (speed, kbps) = SPEEDS[rng.range(0, 3) as usize];
                final_kbps = kbps;
                let svc = if tech == Tech::Adsl {
                    ServiceType::Adsl
                } else {
                    ServiceType::Ftth
                };
                let mut modify = item(OperType::Modify, tech, svc, &name).attr("Speed", speed);
                // Half the Modifies move the service: the old port or ONT is
                // released and the new one taken in the same transaction.
                if rng.chance(50) && (tech == Tech::Ftth || moved[ex_n as usize] < 432) {
                    match tech {
                        Tech::Adsl => {
                            // A port of the exchange's second ADSL DSLAM (IM
                            // picks on the first) that no other subscriber of
                            // the run asks for (not OCCUPIED: port % 10 != 9).
                            let k = moved[ex_n as usize];
                            moved[ex_n as usize] += 1;
                            let (slot, p) = (1 + k / 54, (k % 54) / 9 * 10 + k % 9);
                            let (code, _) = crate::demo_exchange(ex_n);
                            let dslam = format!("{code}-D2");
                            final_port = Some(format!("{dslam}/0/{slot}/{p}"));
                            modify = modify
                                .attr("Dslamname", dslam)
                                .attr("FrameNumber", "0")
                                .attr("SlotNumber", slot.to_string())
                                .attr("PortNumber", p.to_string());
                        }
                        Tech::Ftth => {
                            ont_sn = format!("HWTC{:08X}", ont_base | 0x0080_0000 | idx as u32);
                            modify = modify.attr("ONTSN", ont_sn.clone());
                        }
                    }
                }
                let at = calls.len();
                calls.push(Call {
                    order: order_of(flow("m"), vec![modify]),
                    expect: Expect::Fresh,
                    oper: OperType::Modify,
                    user: idx,
                    commands: 1,
                });
                if rng.chance(20) {
                    let again = calls[at].clone();
                    calls.push(Call {
                        expect: Expect::Same(at),
                        ..again
                    });
                }
            }
            let delete = rng.chance(40);
            if delete {
                let svc = if tech == Tech::Adsl {
                    ServiceType::Adsl
                } else {
                    ServiceType::Ftth
                };
                calls.push(Call {
                    order: order_of(flow("d"), vec![item(OperType::Delete, tech, svc, &name)]),
                    expect: Expect::Fresh,
                    oper: OperType::Delete,
                    user: idx,
                    // Deleting FTTH deactivates its IPTV add-on too.
                    commands: n_items,
                });
            }
            users.push(UserPlan {
                name,
                tech,
                ont_sn,
                port: final_port,
                active: !delete,
                speed_kbps: final_kbps,
            });
        }
        clients.push(calls);
    }
    Plan {
        prefix,
        users,
        clients,
    }
}

/// What one call ended with.
#[derive(Debug, Clone, Default)]
struct CallResult {
    flow_id: String,
    /// The task it created (or that the earlier call created).
    task_no: Option<String>,
    /// Answered returnCode 0.
    acknowledged: bool,
    /// An attempt got no answer and a retry found it stored (-1003 SAME).
    recovered: bool,
    /// The port the answer reported (ADSL Install/Modify answered 0).
    port: Option<String>,
    /// Stored exactly once, as far as the answers say.
    stored: bool,
}

#[derive(Debug, Default)]
struct Counters {
    attempts: AtomicU64,
    answers: AtomicU64,
    acknowledged: AtomicU64,
    retried: AtomicU64,
    recovered: AtomicU64,
    same: AtomicU64,
    different: AtomicU64,
    internal: AtomicU64,
}

/// What a crash run did and found.
#[derive(Debug, Clone, Default)]
pub struct CrashReport {
    /// The seed (`IM_CRASH_SEED` repeats the run).
    pub seed: u64,
    /// Calls in the workload (each answered in the end).
    pub sent: u64,
    /// HTTP attempts made.
    pub attempts: u64,
    /// Attempts repeated with the same flowId (no answer, or -9999).
    pub retried: u64,
    /// -9999 answers.
    pub internal: u64,
    /// Calls answered returnCode 0.
    pub acknowledged: u64,
    /// Calls whose answer was lost in a kill and whose retry found them
    /// stored (-1003 SAME with their task).
    pub recovered: u64,
    /// Resends answered -1003 SAME.
    pub duplicates_same: u64,
    /// flowIds reused with other content, answered -1003 DIFFERENT.
    pub duplicates_different: u64,
    /// SIGKILLs of the server.
    pub kills: u64,
    /// Acknowledged calls missing from the database, or calls never answered.
    pub lost: u64,
    /// Tasks of the run in the database.
    pub tasks: u64,
    /// Commands of the run in the outbox.
    pub commands: u64,
    /// Requests AM answered DUPLICATE (a command it had already accepted,
    /// resent after a kill or a lost ack), with `am`.
    pub am_repeats: u64,
    /// Requests AM answered HTTP 503 (and IM retried), with `am`.
    pub am_failed: u64,
    /// Distinct command ids AM accepted, with `am`.
    pub am_accepted: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Every broken promise found (empty when the run passed).
    pub failures: Vec<String>,
}

impl CrashReport {
    /// One line per figure, for the console.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "seed {:#x}: {} calls sent, {} attempts ({} retried, {} -9999), {} acknowledged, \
             {} recovered after a lost answer, {} duplicates SAME, {} DIFFERENT, {} kills, \
             lost = {}; database: {} tasks, {} commands",
            self.seed,
            self.sent,
            self.attempts,
            self.retried,
            self.internal,
            self.acknowledged,
            self.recovered,
            self.duplicates_same,
            self.duplicates_different,
            self.kills,
            self.lost,
            self.tasks,
            self.commands,
        );
        if self.am_accepted > 0 {
            s.push_str(&format!(
                "; AM: {} commands accepted, {} repeats answered DUPLICATE, {} HTTP 503 retried",
                self.am_accepted, self.am_repeats, self.am_failed
            ));
        }
        s.push_str(&format!("; {:.1} s", self.elapsed.as_secs_f64()));
        s
    }

    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.lost == 0
    }
}

struct Shared {
    counters: Counters,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, msg: String) {
        if let Ok(mut f) = self.failures.lock()
            && f.len() < 200
        {
            f.push(msg);
        }
    }
}

/// Sends one call until it is answered; judges the answer.
async fn run_call(
    client: &OmClient,
    call: &Call,
    earlier: &[CallResult],
    deadline: Duration,
    shared: &Shared,
) -> CallResult {
    let c = &shared.counters;
    let flow_id = call.order.flow_id.clone();
    let mut res = CallResult {
        flow_id: flow_id.clone(),
        ..CallResult::default()
    };
    let body = match client.encode(&call.order.to_form()) {
        Ok(b) => bytes::Bytes::from(b),
        Err(e) => {
            shared.fail(format!("{flow_id}: cannot encode: {e}"));
            return res;
        }
    };
    let started = Instant::now();
    let mut unanswered = false;
    let mut wait = Duration::from_millis(10);
    let outcome = loop {
        c.attempts.fetch_add(1, Ordering::Relaxed);
        match client.send_once(body.clone()).await {
            Ok(o) if o.error_code.is_retryable() => {
                c.answers.fetch_add(1, Ordering::Relaxed);
                c.internal.fetch_add(1, Ordering::Relaxed);
            }
            Ok(o) => {
                c.answers.fetch_add(1, Ordering::Relaxed);
                break o;
            }
            Err(e) if e.is_retryable() => unanswered = true,
            Err(e) => {
                shared.fail(format!("{flow_id}: not retryable: {e}"));
                return res;
            }
        }
        if started.elapsed() > deadline {
            shared.fail(format!("{flow_id}: no answer within {deadline:?} (lost)"));
            return res;
        }
        c.retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(wait).await;
        wait = (wait * 3 / 2).min(Duration::from_millis(250));
    };
    let dup = outcome.error_code == ErrorCode::DuplicateFlowId;
    match call.expect {
        Expect::Fresh if outcome.error_code == ErrorCode::Success => {
            c.acknowledged.fetch_add(1, Ordering::Relaxed);
            res.acknowledged = true;
            res.stored = true;
            res.task_no = outcome.task_no.clone();
            if call.oper != OperType::Delete
                && let Some(i) = outcome.items.first()
                && !i.port.is_empty()
            {
                res.port = Some(i.port.clone());
            }
            if res.task_no.is_none() {
                shared.fail(format!("{flow_id}: returnCode 0 without a taskNo"));
            }
        }
        Expect::Fresh
            if unanswered && dup && outcome.duplicate_content == Some(DuplicateContent::Same) =>
        {
            c.recovered.fetch_add(1, Ordering::Relaxed);
            res.recovered = true;
            res.stored = true;
            res.task_no = outcome.task_no.clone();
        }
        Expect::Same(i) | Expect::Different(i) if dup => {
            let want = if matches!(call.expect, Expect::Same(_)) {
                c.same.fetch_add(1, Ordering::Relaxed);
                DuplicateContent::Same
            } else {
                c.different.fetch_add(1, Ordering::Relaxed);
                DuplicateContent::Different
            };
            if outcome.duplicate_content != Some(want) {
                shared.fail(format!(
                    "{flow_id}: resend answered duplicateContent {:?}, expected {want:?}",
                    outcome.duplicate_content
                ));
            }
            let first = earlier.get(i).and_then(|r| r.task_no.clone());
            if outcome.task_no != first {
                shared.fail(format!(
                    "{flow_id}: resend answered task {:?}, the call created {first:?}",
                    outcome.task_no
                ));
            }
            res.task_no = outcome.task_no.clone();
        }
        _ => shared.fail(format!(
            "{flow_id}: {:?} answered {} {:?} ({}){}",
            call.expect,
            outcome.error_code,
            outcome.duplicate_content,
            outcome.error_desc,
            if unanswered {
                " after an attempt without an answer"
            } else {
                ""
            }
        )),
    }
    res
}

/// Runs the crash workload against `server` (started here, killed
/// `opts.kills` times, stopped with SIGTERM at the end) and checks the
/// database. With `opts.am_url`, `am_received` is asked at the end for
/// what AM received.
pub async fn run(
    opts: &CrashOptions,
    server: &ServerProcess,
    am: Option<SocketAddr>,
) -> Result<CrashReport, String> {
    let t0 = Instant::now();
    let plan = Arc::new(plan(opts));
    let mut server = server.clone();
    let exchanges = exchanges_for(opts);
    if exchanges > 10 {
        let ports = u64::from(exchanges) * im_core::demo::DemoSpec::default().ports_per_exchange();
        server.extra_config = format!("{}\ndemo_ports = {ports}\n", server.extra_config);
    }
    if let Some(url) = &opts.am_url {
        server.extra_config = format!(
            "{}\nam_url = \"{url}\"\nam_poll_interval = \"20ms\"\n",
            server.extra_config
        );
    }
    let s2 = server.clone();
    let mut proc = tokio::task::spawn_blocking(move || s2.start())
        .await
        .map_err(|e| e.to_string())??;
    let shared = Arc::new(Shared {
        counters: Counters::default(),
        failures: Mutex::new(Vec::new()),
    });
    let mut tasks = Vec::new();
    for c in 0..plan.clients.len() {
        let mut cfg = ClientConfig::new(server.url());
        cfg.timeout = Duration::from_secs(15);
        cfg.connect_timeout = Duration::from_secs(2);
        let client = OmClient::new(cfg).map_err(|e| e.to_string())?;
        let (plan, shared) = (Arc::clone(&plan), Arc::clone(&shared));
        let deadline = opts.call_deadline;
        tasks.push(tokio::spawn(async move {
            let mut results: Vec<CallResult> = Vec::new();
            for call in &plan.clients[c] {
                let r = run_call(&client, call, &results, deadline, &shared).await;
                results.push(r);
            }
            results
        }));
    }
    // The killer: after a random number of answers, SIGKILL, restart. The
    // answers between kills are a third to two thirds of an even share of
    // the calls, so that every kill lands while the clients still run.
    let mut rng = Rng::new(opts.seed ^ 0x5EED_0FC0_FFEE);
    let calls: u64 = plan.clients.iter().map(|c| c.len() as u64).sum();
    let share = (calls / (opts.kills as u64 + 1)).max(3);
    let mut kills = 0u64;
    let answers = |s: &Shared| s.counters.answers.load(Ordering::Relaxed);
    for _ in 0..opts.kills {
        let target = answers(&shared) + rng.range(share / 3, share * 2 / 3);
        while answers(&shared) < target && !tasks.iter().all(|t| t.is_finished()) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Anywhere in the writer's cycle, not just after an answer.
        tokio::time::sleep(Duration::from_micros(rng.range(0, 20_000))).await;
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        proc.sigkill();
        kills += 1;
        let pause = Duration::from_millis(rng.range(0, 50));
        tokio::time::sleep(pause).await;
        let s2 = server.clone();
        proc = tokio::task::spawn_blocking(move || s2.start())
            .await
            .map_err(|e| e.to_string())??;
    }
    let mut results: Vec<Vec<CallResult>> = Vec::new();
    for t in tasks {
        results.push(t.await.map_err(|e| format!("a client task failed: {e}"))?);
    }
    let mut report = CrashReport {
        seed: opts.seed,
        kills,
        ..CrashReport::default()
    };
    if opts.am_url.is_some() {
        wait_delivered(&server.database(), &plan.prefix, &mut proc).await?;
    }
    // A clean stop, then the database as it was left.
    let stopped = tokio::task::spawn_blocking(move || {
        let s = proc.terminate(Duration::from_secs(30));
        (s, proc.tail())
    })
    .await
    .map_err(|e| e.to_string())?;
    if !stopped.0.is_some_and(|s| s.success()) {
        report.failures.push(format!(
            "the server did not stop cleanly on SIGTERM ({:?}):\n{}",
            stopped.0, stopped.1
        ));
    }
    let c = &shared.counters;
    report.sent = plan.clients.iter().map(|c| c.len() as u64).sum();
    report.attempts = c.attempts.load(Ordering::Relaxed);
    report.retried = c.retried.load(Ordering::Relaxed);
    report.internal = c.internal.load(Ordering::Relaxed);
    report.acknowledged = c.acknowledged.load(Ordering::Relaxed);
    report.recovered = c.recovered.load(Ordering::Relaxed);
    report.duplicates_same = c.same.load(Ordering::Relaxed);
    report.duplicates_different = c.different.load(Ordering::Relaxed);
    if let Ok(f) = shared.failures.lock() {
        report.failures.extend(f.iter().cloned());
    }
    let db = server.database();
    let received = match am {
        Some(addr) => Some(am_received(addr)?),
        None => None,
    };
    let plan2 = Arc::clone(&plan);
    let (failures, counts) = tokio::task::spawn_blocking(move || {
        check_database(&db, &plan2, &results, received.as_deref())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("reading the database: {e}"))?;
    report.failures.extend(failures);
    report.lost = counts.lost;
    report.tasks = counts.tasks;
    report.commands = counts.commands;
    report.am_accepted = counts.am_accepted;
    report.am_repeats = counts.am_repeats;
    report.am_failed = counts.am_failed;
    report.elapsed = t0.elapsed();
    Ok(report)
}

/// Waits (restarting nothing) until every command of the run is out of the
/// outbox's `PENDING` state.
async fn wait_delivered(db: &Path, prefix: &str, proc: &mut Proc) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let (db, prefix) = (db.to_path_buf(), format!("{prefix}-%"));
        let pending = tokio::task::spawn_blocking(move || -> rusqlite::Result<i64> {
            let c = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            c.busy_timeout(Duration::from_secs(5))?;
            c.query_row(
                "SELECT count(*) FROM command c JOIN task t ON t.id = c.task_id \
                 WHERE t.flow_id LIKE ?1 AND c.state = 'PENDING'",
                [prefix],
                |r| r.get(0),
            )
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("reading the outbox: {e}"))?;
        if pending == 0 {
            return Ok(());
        }
        if let Some(s) = proc.exited() {
            return Err(format!(
                "the server exited ({s}) with {pending} commands pending:\n{}",
                proc.tail()
            ));
        }
        if Instant::now() > end {
            return Err(format!("{pending} commands still pending after 120 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the AM simulator at `addr` received (`GET /am/received`).
pub fn am_received(addr: SocketAddr) -> Result<Vec<im_sync::am::sim::Received>, String> {
    let (status, body) = http_get(
        addr,
        im_sync::am::sim::RECEIVED_PATH,
        Duration::from_secs(10),
    )
    .map_err(|e| format!("asking AM what it received: {e}"))?;
    if status != 200 {
        return Err(format!(
            "AM answered {status} to {}",
            im_sync::am::sim::RECEIVED_PATH
        ));
    }
    im_sync::am::sim::parse_received(&body).map_err(|e| e.to_string())
}

#[derive(Debug, Default)]
struct DbCounts {
    lost: u64,
    tasks: u64,
    commands: u64,
    am_accepted: u64,
    am_repeats: u64,
    am_failed: u64,
}

fn one<T: rusqlite::types::FromSql>(db: &Connection, sql: &str) -> rusqlite::Result<T> {
    db.query_row(sql, [], |r| r.get(0))
}

fn rows<T>(
    db: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut st = db.prepare(sql)?;
    st.query_map(p, f)?.collect()
}

/// Checks the database against the plan and the answers: every stored call
/// once with the task it was answered, nothing else stored, the
/// subscribers' final state, no resource held twice, one command per item,
/// `integrity_check`; with `am`, what AM received against the outbox.
fn check_database(
    path: &Path,
    plan: &Plan,
    results: &[Vec<CallResult>],
    am: Option<&[im_sync::am::sim::Received]>,
) -> rusqlite::Result<(Vec<String>, DbCounts)> {
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut fail = Vec::new();
    let mut counts = DbCounts::default();
    let integrity: String = one(&db, "PRAGMA integrity_check")?;
    if integrity != "ok" {
        fail.push(format!("PRAGMA integrity_check: {integrity}"));
    }
    let fk = rows(&db, "PRAGMA foreign_key_check", [], |r| {
        r.get::<_, String>(0)
    })?;
    if !fk.is_empty() {
        fail.push(format!(
            "PRAGMA foreign_key_check: {} rows ({fk:?})",
            fk.len()
        ));
    }
    // The holder columns have no foreign key (see migration 006): check them.
    let orphans: i64 = one(
        &db,
        "SELECT (SELECT count(*) FROM port p WHERE p.service_id IS NOT NULL \
           AND NOT EXISTS (SELECT 1 FROM service s WHERE s.id = p.service_id)) \
         + (SELECT count(*) FROM ont o WHERE o.service_id IS NOT NULL \
           AND NOT EXISTS (SELECT 1 FROM service s WHERE s.id = o.service_id))",
    )?;
    if orphans != 0 {
        fail.push(format!("{orphans} ports or ONTs held by no service"));
    }
    let like = format!("{}-%", plan.prefix);
    // Tasks: flowId → (task number, commands by type).
    let tasks: HashMap<String, (String, i64)> = rows(
        &db,
        "SELECT flow_id, task_no, id FROM task WHERE flow_id LIKE ?1",
        [&like],
        |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))),
    )?
    .into_iter()
    .collect();
    counts.tasks = tasks.len() as u64;
    let mut cmds: HashMap<i64, Vec<String>> = HashMap::new();
    for (task, kind) in rows(
        &db,
        "SELECT c.task_id, c.type FROM command c JOIN task t ON t.id = c.task_id \
         WHERE t.flow_id LIKE ?1",
        [&like],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
    )? {
        cmds.entry(task).or_default().push(kind);
        counts.commands += 1;
    }
    let mut expected_tasks = 0usize;
    let mut reported_port: HashMap<usize, Option<String>> = HashMap::new();
    for (calls, results) in plan.clients.iter().zip(results) {
        for (call, r) in calls.iter().zip(results) {
            if call.expect != Expect::Fresh {
                continue;
            }
            expected_tasks += 1;
            if !r.stored {
                counts.lost += 1;
                fail.push(format!("{}: never answered as stored", r.flow_id));
                continue;
            }
            match tasks.get(&r.flow_id) {
                None => {
                    counts.lost += 1;
                    fail.push(format!(
                        "{}: answered {} (task {:?}) but not in the database",
                        r.flow_id,
                        if r.acknowledged { "0" } else { "-1003 SAME" },
                        r.task_no
                    ));
                }
                Some((task_no, id)) => {
                    if r.task_no.as_ref() != Some(task_no) {
                        fail.push(format!(
                            "{}: answered task {:?}, stored as {task_no}",
                            r.flow_id, r.task_no
                        ));
                    }
                    let kinds = cmds.get(id).cloned().unwrap_or_default();
                    let want = match call.oper {
                        OperType::Install => "ACTIVATE",
                        OperType::Modify => "MODIFY",
                        _ => "DEACTIVATE",
                    };
                    if kinds.len() as i64 != call.commands || kinds.iter().any(|k| k != want) {
                        fail.push(format!(
                            "{}: outbox holds {kinds:?}, expected {} {want}",
                            r.flow_id, call.commands
                        ));
                    }
                }
            }
            // The port the last directly answered Install/Modify reported.
            if call.oper != OperType::Delete {
                reported_port.insert(call.user, r.port.clone());
            }
        }
    }
    if tasks.len() != expected_tasks {
        fail.push(format!(
            "{} tasks stored for the run's flowIds, {expected_tasks} calls were accepted",
            tasks.len()
        ));
    }
    // Services: the final state of every subscriber, with what it holds.
    type Svc = (String, Option<i64>, Option<String>, Option<String>);
    let services: HashMap<(String, String), Svc> = rows(
        &db,
        "SELECT s.user_name, s.service_type, s.state, s.speed_kbps, \
           (SELECT d.name || '/' || p.frame || '/' || p.slot || '/' || p.port \
              FROM port p JOIN dslam d ON d.id = p.dslam_id WHERE p.service_id = s.id), \
           (SELECT o.serial FROM ont o WHERE o.service_id = s.id) \
         FROM service s WHERE s.user_name LIKE ?1",
        [format!("{}-%", plan.prefix.to_ascii_lowercase())],
        |r| {
            Ok((
                (r.get(0)?, r.get(1)?),
                (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
            ))
        },
    )?
    .into_iter()
    .collect();
    for (i, u) in plan.users.iter().enumerate() {
        let want_state = if u.active { "ACTIVE" } else { "INACTIVE" };
        let main = if u.tech == Tech::Adsl { "ADSL" } else { "FTTH" };
        let mut kinds = vec![main];
        if u.tech == Tech::Ftth {
            kinds.push("IPTV");
        }
        for kind in kinds {
            let Some((state, speed, port, ont)) = services.get(&(u.name.clone(), kind.into()))
            else {
                fail.push(format!("{} {kind}: no service stored", u.name));
                continue;
            };
            if state != want_state {
                fail.push(format!("{} {kind}: {state}, expected {want_state}", u.name));
            }
            if kind == main && *speed != Some(u.speed_kbps) {
                fail.push(format!(
                    "{} {kind}: speed {speed:?}, expected {}",
                    u.name, u.speed_kbps
                ));
            }
            if kind != main {
                continue;
            }
            let held_ok = match (u.active, u.tech) {
                (true, Tech::Adsl) => port.is_some() && ont.is_none(),
                (true, Tech::Ftth) => port.is_none() && ont.as_deref() == Some(&u.ont_sn),
                (false, _) => port.is_none() && ont.is_none(),
            };
            if !held_ok {
                fail.push(format!(
                    "{} {kind} ({state}): holds port {port:?} and ONT {ont:?}",
                    u.name
                ));
            }
            if u.active && u.port.is_some() && *port != u.port {
                fail.push(format!(
                    "{} {kind}: holds {port:?}, moved to {:?}",
                    u.name, u.port
                ));
            }
            if u.active
                && let Some(Some(reported)) = reported_port.get(&i)
                && port.as_ref() != Some(reported)
            {
                fail.push(format!(
                    "{} {kind}: answered port {reported}, holds {port:?}",
                    u.name
                ));
            }
        }
    }
    // No resource held twice, no service holding two, nothing held by an
    // inactive service; one record per (UserName, serviceType).
    for (what, sql) in [
        (
            "services holding two ports",
            "SELECT count(*) FROM (SELECT service_id FROM port WHERE service_id IS NOT NULL \
             GROUP BY service_id HAVING count(*) > 1)",
        ),
        (
            "services holding two ONTs",
            "SELECT count(*) FROM (SELECT service_id FROM ont WHERE service_id IS NOT NULL \
             GROUP BY service_id HAVING count(*) > 1)",
        ),
        (
            "ports held by an inactive or missing service",
            "SELECT count(*) FROM port p LEFT JOIN service s ON s.id = p.service_id \
             WHERE p.service_id IS NOT NULL AND (s.id IS NULL OR s.state <> 'ACTIVE')",
        ),
        (
            "ONTs held by an inactive or missing service",
            "SELECT count(*) FROM ont o LEFT JOIN service s ON s.id = o.service_id \
             WHERE o.service_id IS NOT NULL AND (s.id IS NULL OR s.state <> 'ACTIVE')",
        ),
        (
            "ONTs in one place (PON port, ONT id)",
            "SELECT count(*) FROM (SELECT 1 FROM ont WHERE removed = 0 \
             GROUP BY pon_port_id, ont_id HAVING count(*) > 1)",
        ),
        (
            "(UserName, serviceType) with two active records",
            "SELECT count(*) FROM (SELECT 1 FROM service WHERE state = 'ACTIVE' \
             GROUP BY lower(user_name), service_type HAVING count(*) > 1)",
        ),
        (
            "commands with the same id",
            "SELECT count(*) FROM (SELECT 1 FROM command GROUP BY cmd_id HAVING count(*) > 1)",
        ),
    ] {
        let n: i64 = one(&db, sql)?;
        if n != 0 {
            fail.push(format!("{n} {what}"));
        }
    }
    if let Some(am) = am {
        check_am(&db, &like, am, &mut fail, &mut counts)?;
    }
    Ok((fail, counts))
}

/// What AM received against the outbox: every command delivered and
/// accepted once (repeats answered DUPLICATE), the same content under one
/// id, nothing AM got that the database does not hold (a rolled-back work
/// order's command), one id per item, every task completed.
fn check_am(
    db: &Connection,
    like: &str,
    am: &[im_sync::am::sim::Received],
    fail: &mut Vec<String>,
    counts: &mut DbCounts,
) -> rusqlite::Result<()> {
    type Cmd = (String, String, String, String, String, String);
    let outbox: BTreeMap<String, Cmd> = rows(
        db,
        "SELECT c.cmd_id, c.type, c.service_type, t.task_no, t.flow_id, s.user_name, c.state \
         FROM command c JOIN task t ON t.id = c.task_id JOIN service s ON s.id = c.service_id",
        [],
        |r| {
            Ok((
                r.get(0)?,
                (
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ),
            ))
        },
    )?
    .into_iter()
    .collect();
    let by_id: HashMap<&str, &im_sync::am::sim::Received> =
        am.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut per_item: HashMap<(String, String, String, String), HashSet<String>> = HashMap::new();
    for r in am {
        counts.am_repeats += r.counts.duplicate;
        counts.am_failed += r.counts.failed;
        if r.counts.ok > 0 {
            counts.am_accepted += 1;
        }
        // Answers of HTTP 503 (`failed`) are retried; nothing is rejected.
        if r.counts.ok != 1 || r.counts.rejected != 0 {
            fail.push(format!("AM: {} seen as {:?}", r.id, r.counts));
        }
        let Some([kind, service, task_no, flow_id, user]) = &r.accepted else {
            fail.push(format!("AM: {} never accepted", r.id));
            continue;
        };
        match outbox.get(&r.id) {
            None => fail.push(format!(
                "AM received {} ({kind} {service} {user}, flowId {flow_id}), which the \
                 database does not hold: a command of a rolled-back change",
                r.id
            )),
            Some((k, s, t, f, u, _)) => {
                if (k, s, t, f, u) != (kind, service, task_no, flow_id, user) {
                    fail.push(format!(
                        "AM received {} as {kind} {service} {task_no} {flow_id} {user}; \
                         stored as {k} {s} {t} {f} {u}",
                        r.id
                    ));
                }
            }
        }
        per_item
            .entry((task_no.clone(), kind.clone(), service.clone(), user.clone()))
            .or_default()
            .insert(r.id.clone());
    }
    for (item, ids) in &per_item {
        if ids.len() > 1 {
            fail.push(format!(
                "AM got one item under several ids: {item:?} {ids:?}"
            ));
        }
    }
    for (id, (_, _, _, flow, _, state)) in &outbox {
        if !flow.starts_with(like.trim_end_matches('%')) {
            continue;
        }
        if state != "DELIVERED" {
            fail.push(format!("command {id} is {state}"));
        }
        if !by_id.contains_key(id.as_str()) {
            fail.push(format!("command {id} never reached AM (lost)"));
        }
    }
    // The commands of one service reached AM in the order they were made.
    let mut by_service: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (service, id) in rows(
        db,
        "SELECT c.service_id, c.cmd_id FROM command c JOIN task t ON t.id = c.task_id \
         WHERE t.flow_id LIKE ?1 ORDER BY c.id",
        [like],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
    )? {
        by_service.entry(service).or_default().push(id);
    }
    for ids in by_service.values() {
        let at: Vec<Option<u64>> = ids
            .iter()
            .map(|id| by_id.get(id.as_str()).and_then(|r| r.accepted_at))
            .collect();
        if at.windows(2).any(|w| w[0] >= w[1]) {
            fail.push(format!(
                "AM accepted one service's commands out of order: {ids:?} at {at:?}"
            ));
        }
    }
    let open: i64 = db.query_row(
        "SELECT count(*) FROM task WHERE flow_id LIKE ?1 AND state <> 'COMPLETED'",
        params![like],
        |r| r.get(0),
    )?;
    if open != 0 {
        fail.push(format!("{open} tasks of the run not COMPLETED"));
    }
    Ok(())
}
