//! AM delivery (`inventory-sync-and-am.md` §4–§5) end to end: work orders
//! through `Im::submit` on a real SQLite file with the demo inventory, the
//! delivery worker over real HTTP on loopback, and the AM simulator.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use im_core::lifecycle::{Ack, Delivery, TaskView};
use im_core::model::{CommandState, CommandType, ServiceType, TaskState};
use im_core::retry::RetryPolicy;
use im_core::{CoreConfig, CoreError, Form, FormItem, Im, Outcome};
use im_sync::am::sim::AmSim;
use im_sync::am::wire::Command;
use im_sync::am::{DeliveryWorker, WorkerConfig};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ helpers

struct Env {
    im: Im,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("im.db");
        let im = tokio::task::spawn_blocking(move || {
            let im = Im::open(CoreConfig::new(path)).unwrap();
            assert!(im_core::demo::install_if_empty(&im).unwrap());
            im
        })
        .await
        .unwrap();
        Env { im, dir }
    }

    fn db_path(&self) -> PathBuf {
        self.dir.path().join("im.db")
    }

    /// Closes the core and opens a new one on the same files.
    async fn reopen(&mut self) {
        let old = self.im.clone();
        let path = self.db_path();
        self.im = tokio::task::spawn_blocking(move || {
            old.close();
            Im::open(CoreConfig::new(path)).unwrap()
        })
        .await
        .unwrap();
    }

    async fn submit(&self, form: Form) -> Outcome {
        self.im.submit(form).await
    }

    /// Submits one accepted call; returns its task number.
    #[track_caller]
    fn accepted(o: &Outcome) -> String {
        assert_eq!(o.return_code(), 0, "expected success: {o:#?}");
        o.task_no.clone().expect("a task number")
    }

    async fn ok(&self, items: Vec<FormItem>) -> String {
        let mut f = form(&fresh_flow());
        for it in items {
            f = f.item(it);
        }
        Env::accepted(&self.submit(f).await)
    }

    async fn task(&self, task_no: &str) -> TaskView {
        self.im.task(task_no).await.unwrap().expect("task exists")
    }

    async fn wait_state(&self, task_no: &str, state: TaskState) -> TaskView {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = self.task(task_no).await;
            if t.state == state {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "task {task_no} never became {state}: {t:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The state of `user`'s `service`, as a Query answers it.
    async fn service_state(&self, user: &str, service: &str) -> String {
        let o = self
            .submit(
                form(&fresh_flow()).item(
                    FormItem::default()
                        .field("opertype", "Query")
                        .field("UserName", user),
                ),
            )
            .await;
        assert_eq!(o.return_code(), 0, "{o:#?}");
        o.items[0]
            .services
            .iter()
            .find(|s| s.service_type == service)
            .map(|s| s.state.clone())
            .unwrap_or_default()
    }
}

static FLOW: AtomicU64 = AtomicU64::new(1);

fn fresh_flow() -> String {
    format!(
        "AMT-{}-{}",
        std::process::id(),
        FLOW.fetch_add(1, Ordering::Relaxed)
    )
}

fn form(flow: &str) -> Form {
    Form::default()
        .field("authusername", im_core::demo::DEMO_OM_USER)
        .field("authpassword", im_core::demo::DEMO_OM_PASSWORD)
        .field("flowId", flow)
        .field("popid", "19601")
}

fn item(op: &str, cover: &str, service: &str, user: &str) -> FormItem {
    FormItem::default()
        .field("opertype", op)
        .field("coverType", cover)
        .field("serviceType", service)
        .field("UserName", user)
}

fn adsl_install(user: &str) -> FormItem {
    item("Install", "ADSL", "ADSL", user)
        .field("AccountNumber", format!("ACC-{user}"))
        .field("CustomerName", "Ahmed Hassan")
        .field("Password", "pppoe-secret-1")
        .attr("ExchangeID", "EX01")
        .attr("Speed", "16M")
}

fn ftth_install(user: &str, ont: &str) -> FormItem {
    item("Install", "FTTH", "FTTH", user)
        .field("AccountNumber", format!("ACC-{user}"))
        .field("CustomerName", "Mona")
        .field("Password", "pppoe-secret-2")
        .attr("CompoundId", "CP01")
        .attr("ONTSN", ont)
        .attr("Speed", "100M")
}

fn iptv_install(user: &str) -> FormItem {
    item("Install", "FTTH", "IPTV", user)
        .attr("IPTVContent", "GOLD")
        .attr("IPTVPassword", "iptv-secret-1")
}

/// Tiny waits so that tests run fast.
fn fast_retry(retries: u32) -> RetryPolicy {
    RetryPolicy {
        retries,
        initial_interval: Duration::from_millis(5),
        multiplier: 1.5,
        max_interval: Duration::from_millis(20),
        jitter: 0.0,
    }
}

fn worker_config(sim: &AmSim, retries: u32) -> WorkerConfig {
    let mut c = WorkerConfig::new(sim.url());
    c.retry = fast_retry(retries);
    c.poll_interval = Duration::from_millis(10);
    c.client.timeout = Duration::from_secs(3);
    c
}

async fn start_sim() -> AmSim {
    AmSim::start("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn names(c: &Command) -> Vec<&str> {
    c.params.iter().map(|(k, _)| k.as_str()).collect()
}

fn states(t: &TaskView) -> Vec<TaskState> {
    t.states()
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_install_is_delivered_and_its_task_completes() {
    let env = Env::new().await;
    let sim = start_sim().await;
    let worker = DeliveryWorker::start(env.im.clone(), worker_config(&sim, 3)).unwrap();

    let flow = fresh_flow();
    let o = env
        .submit(form(&flow).item(adsl_install("am-adsl@x")))
        .await;
    let task_no = Env::accepted(&o);
    // A call refused by its second item, after the first one was written
    // in the writer's transaction, is rolled back: nothing is sent for it.
    let refused = env
        .submit(
            form(&fresh_flow())
                .item(adsl_install("am-refused@x"))
                .item(item("Modify", "ADSL", "ADSL", "am-nobody@x").attr("Speed", "8M")),
        )
        .await;
    assert_eq!(refused.error_code.code(), -1008, "{refused:#?}");

    let t = env.wait_state(&task_no, TaskState::Completed).await;
    assert_eq!(
        states(&t),
        [
            TaskState::Received,
            TaskState::Activating,
            TaskState::Completed
        ]
    );
    assert_eq!(t.history[0].actor, im_core::demo::DEMO_OM_USER);
    assert!(t.history[1..].iter().all(|h| h.actor == "system"), "{t:#?}");
    assert_eq!(t.commands.len(), 1);
    let c = &t.commands[0];
    assert_eq!(c.state, CommandState::Delivered);
    assert_eq!(c.attempts, 1);
    assert_eq!(c.ack_status.as_deref(), Some("OK"));

    let id = format!("CMD-{task_no}-1");
    let got = sim.accepted();
    assert_eq!(got.len(), 1, "only the accepted call's command: {got:?}");
    let cmd = &got[0];
    assert_eq!(cmd.id, id);
    assert_eq!(cmd.kind, CommandType::Activate);
    assert_eq!(cmd.service, ServiceType::Adsl);
    assert_eq!(cmd.task_no, task_no);
    assert_eq!(cmd.flow_id, flow);
    assert_eq!(names(cmd), ["UserName", "port", "dslamIp", "speed"]);
    assert_eq!(cmd.param("UserName"), Some("am-adsl@x"));
    assert_eq!(cmd.param("port"), Some(o.items[0].port.as_str()));
    assert!(
        cmd.param("port").unwrap().starts_with("EX01-D1/"),
        "{cmd:?}"
    );
    assert_eq!(cmd.param("dslamIp"), Some("10.1.0.1"));
    assert_eq!(cmd.param("speed"), Some("16384"));
    assert!(
        !cmd.params.iter().any(|(_, v)| v.contains("secret")),
        "{cmd:?}"
    );
    assert_eq!(sim.counts(&id).ok, 1);
    assert_eq!(sim.requests(), 1);
    let stats = worker.stop().await;
    assert_eq!(stats.delivered, 1);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftth_and_iptv_commands_carry_exactly_their_params() {
    let env = Env::new().await;
    let sim = start_sim().await;
    let worker = DeliveryWorker::start(env.im.clone(), worker_config(&sim, 3)).unwrap();
    let task_no = env
        .ok(vec![
            ftth_install("am-ftth@x", "HWTC0000A1A1"),
            iptv_install("am-ftth@x"),
        ])
        .await;
    env.wait_state(&task_no, TaskState::Completed).await;
    let got = sim.accepted();
    assert_eq!(got.len(), 2, "{got:?}");
    let ftth = got.iter().find(|c| c.service == ServiceType::Ftth).unwrap();
    assert_eq!(ftth.id, format!("CMD-{task_no}-1"));
    assert_eq!(
        names(ftth),
        [
            "UserName", "olt", "ponPort", "ontId", "ontSn", "vlan", "speed"
        ]
    );
    assert_eq!(ftth.param("UserName"), Some("am-ftth@x"));
    assert_eq!(ftth.param("olt"), Some("OLT01"));
    assert!(ftth.param("ponPort").unwrap().starts_with("OLT01/0/1/"));
    assert_eq!(ftth.param("ontId"), Some("0"));
    assert_eq!(ftth.param("ontSn"), Some("HWTC0000A1A1"));
    assert_eq!(ftth.param("vlan"), Some("100"));
    assert_eq!(ftth.param("speed"), Some("102400"));
    let iptv = got.iter().find(|c| c.service == ServiceType::Iptv).unwrap();
    assert_eq!(iptv.id, format!("CMD-{task_no}-2"));
    assert_eq!(names(iptv), ["UserName", "ontSn", "vlan", "iptvContent"]);
    assert_eq!(iptv.param("ontSn"), Some("HWTC0000A1A1"));
    assert_eq!(iptv.param("iptvContent"), Some("GOLD"));
    for c in &got {
        assert!(
            !c.params
                .iter()
                .any(|(k, v)| k.to_lowercase().contains("password") || v.contains("secret")),
            "{c:?}"
        );
    }
    worker.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn am_down_for_a_while_loses_nothing_and_duplicates_nothing() {
    let env = Env::new().await;
    let sim = start_sim().await;
    sim.set_failing(true);
    let worker = DeliveryWorker::start(env.im.clone(), worker_config(&sim, 100)).unwrap();
    let mut tasks = Vec::new();
    for i in 0..6 {
        tasks.push(env.ok(vec![adsl_install(&format!("am-down-{i}@x"))]).await);
    }
    let ids: Vec<String> = tasks.iter().map(|t| format!("CMD-{t}-1")).collect();
    // Every command is tried (and refused with 503) at least twice.
    eventually("retries while AM is down", || {
        ids.iter().all(|id| sim.counts(id).failed >= 2)
    })
    .await;
    for t in &tasks {
        let v = env.task(t).await;
        assert_eq!(v.state, TaskState::Activating, "{v:#?}");
        assert_eq!(v.commands[0].state, CommandState::Pending);
        // The first attempt's record is committed before the second is sent
        // (the second one's record may still be on its way).
        assert!(v.commands[0].attempts >= 1, "{v:#?}");
        assert_eq!(v.commands[0].ack_code.as_deref(), Some("NOT_DELIVERED"));
    }
    // AM comes back, but loses its answers to the first two commands it takes.
    sim.lose_next_acks(2);
    sim.set_failing(false);
    for t in &tasks {
        env.wait_state(t, TaskState::Completed).await;
    }
    let counts = sim.all_counts();
    for id in &ids {
        let c = counts[id];
        assert_eq!(c.ok, 1, "{id} accepted exactly once: {c:?}");
    }
    let dups: u64 = ids.iter().map(|id| counts[id].duplicate).sum();
    assert_eq!(dups, 2, "the two lost acks were resent and met DUPLICATE");
    let accepted: Vec<String> = sim.accepted().into_iter().map(|c| c.id).collect();
    let mut unique = accepted.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), accepted.len());
    assert_eq!(accepted.len(), ids.len());
    worker.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_commands_go_out_after_a_restart() {
    let mut env = Env::new().await;
    let sim = start_sim().await;
    sim.set_failing(true);
    let worker = DeliveryWorker::start(env.im.clone(), worker_config(&sim, 100)).unwrap();
    let mut tasks = Vec::new();
    for i in 0..4 {
        tasks.push(
            env.ok(vec![adsl_install(&format!("am-restart-{i}@x"))])
                .await,
        );
    }
    let ids: Vec<String> = tasks.iter().map(|t| format!("CMD-{t}-1")).collect();
    eventually("first attempts", || {
        ids.iter().all(|id| sim.counts(id).failed >= 1)
    })
    .await;
    // The worker stops mid-way; the core closes and opens again.
    worker.stop().await;
    env.reopen().await;
    for t in &tasks {
        let v = env.task(t).await;
        assert_eq!(v.commands[0].state, CommandState::Pending, "{v:#?}");
        assert!(v.commands[0].attempts >= 1, "attempts survive: {v:#?}");
    }
    let before = sim.requests();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        sim.requests(),
        before,
        "nothing is sent while no worker runs"
    );
    sim.set_failing(false);
    let worker = DeliveryWorker::start(env.im.clone(), worker_config(&sim, 100)).unwrap();
    for t in &tasks {
        env.wait_state(t, TaskState::Completed).await;
    }
    for id in &ids {
        assert_eq!(sim.counts(id).ok, 1, "{id}");
    }
    assert_eq!(sim.accepted().len(), ids.len());
    worker.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_command_fails_its_task_and_keeps_the_service() {
    let env = Env::new().await;
    let sim = start_sim().await;
    let worker = DeliveryWorker::start(env.im.clone(), worker_config(&sim, 5)).unwrap();

    // REJECTED ack.
    sim.set_reject_all(true);
    let t1 = env.ok(vec![adsl_install("am-rej@x")]).await;
    let v = env.wait_state(&t1, TaskState::Failed).await;
    assert_eq!(
        states(&v),
        [
            TaskState::Received,
            TaskState::Activating,
            TaskState::Failed
        ]
    );
    assert_eq!(v.history[2].action, "REJECTED");
    let c = &v.commands[0];
    assert_eq!(c.state, CommandState::Failed);
    assert_eq!(c.attempts, 1, "a rejection is not retried");
    assert_eq!(c.ack_status.as_deref(), Some("REJECTED"));
    assert_eq!(c.ack_code.as_deref(), Some("E-REJECT"));
    assert_eq!(sim.counts(&c.id).received, 1);
    assert_eq!(env.service_state("am-rej@x", "ADSL").await, "ACTIVE");

    // HTTP 4xx without an ack.
    sim.set_reject_all(false);
    sim.set_http_status(Some(http::StatusCode::BAD_REQUEST));
    let t2 = env.ok(vec![adsl_install("am-400@x")]).await;
    let v = env.wait_state(&t2, TaskState::Failed).await;
    let c = &v.commands[0];
    assert_eq!(c.state, CommandState::Failed);
    assert_eq!(c.attempts, 1);
    assert_eq!(
        (c.ack_status.as_deref(), c.ack_code.as_deref()),
        (Some("HTTP"), Some("400"))
    );
    assert_eq!(sim.counts(&c.id).received, 1);
    worker.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_fail_the_task_and_a_redo_sends_it_again_under_r1() {
    let env = Env::new().await;
    let sim = start_sim().await;
    sim.set_failing(true);
    let worker = DeliveryWorker::start(env.im.clone(), worker_config(&sim, 2)).unwrap();
    let t = env.ok(vec![adsl_install("am-exh@x")]).await;
    let id = format!("CMD-{t}-1");
    let v = env.wait_state(&t, TaskState::Failed).await;
    assert_eq!(v.history.last().unwrap().action, "RETRIES_EXHAUSTED");
    let c = &v.commands[0];
    assert_eq!(c.state, CommandState::Failed);
    assert_eq!(c.attempts, 3, "one attempt and two retries");
    assert_eq!(c.ack_code.as_deref(), Some("RETRIES_EXHAUSTED"));
    assert_eq!(sim.counts(&id).failed, 3);
    assert_eq!(sim.counts(&id).received, 3);

    // The operator's actions need a reason; a redo needs a failed task.
    assert!(matches!(
        env.im.redo_task(&t, "ops1", "  ").await,
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(
        env.im.redo_task("WS19990101000001", "ops1", "x").await,
        Err(CoreError::Invalid(_))
    ));

    sim.set_failing(false);
    let state = env
        .im
        .redo_task(&t, "ops1", "AM is back after maintenance")
        .await
        .unwrap();
    assert_eq!(state, TaskState::Activating);
    let v = env.wait_state(&t, TaskState::Completed).await;
    assert_eq!(
        states(&v),
        [
            TaskState::Received,
            TaskState::Activating,
            TaskState::Failed,
            TaskState::Activating,
            TaskState::Completed
        ]
    );
    let redo = &v.history[3];
    assert_eq!(
        (
            redo.action.as_str(),
            redo.actor.as_str(),
            redo.reason.as_str()
        ),
        ("REDO", "ops1", "AM is back after maintenance")
    );
    let c = &v.commands[0];
    assert_eq!(c.id, format!("{id}-r1"));
    assert_eq!((c.redo, c.attempts), (1, 1));
    assert_eq!(sim.counts(&format!("{id}-r1")).ok, 1);
    assert_eq!(sim.counts(&id).ok, 0);
    assert!(matches!(
        env.im.redo_task(&t, "ops1", "again").await,
        Err(CoreError::Invalid(_))
    ));
    worker.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_force_finish_drop_pending_commands_and_keep_services() {
    let env = Env::new().await;
    let sim = start_sim().await;
    let a = env.ok(vec![adsl_install("am-cancel@x")]).await;
    let b = env.ok(vec![adsl_install("am-force@x")]).await;

    assert!(matches!(
        env.im.cancel_task(&a, "ops1", "").await,
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(
        env.im.force_finish_task(&b, "", "reason").await,
        Err(CoreError::Invalid(_))
    ));
    let s = env
        .im
        .cancel_task(&a, "ops1", "customer withdrew")
        .await
        .unwrap();
    assert_eq!(s, TaskState::Cancelled);
    let s = env
        .im
        .force_finish_task(&b, "ops2", "activated by hand on the DSLAM")
        .await
        .unwrap();
    assert_eq!(s, TaskState::Completed);
    // Final states admit no further action.
    assert!(matches!(
        env.im.cancel_task(&a, "ops1", "twice").await,
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(
        env.im.cancel_task(&b, "ops1", "after finish").await,
        Err(CoreError::Invalid(_))
    ));

    let va = env.task(&a).await;
    assert_eq!(states(&va), [TaskState::Received, TaskState::Cancelled]);
    assert_eq!(
        (
            va.history[1].action.as_str(),
            va.history[1].actor.as_str(),
            va.history[1].reason.as_str()
        ),
        ("CANCEL", "ops1", "customer withdrew")
    );
    assert_eq!(va.commands[0].state, CommandState::Dropped);
    let vb = env.task(&b).await;
    assert_eq!(states(&vb), [TaskState::Received, TaskState::Completed]);
    assert_eq!(vb.history[1].action, "FORCE_FINISH");
    assert_eq!(vb.commands[0].state, CommandState::Dropped);

    // Nothing of theirs is sent, and the services stay as OM left them.
    let worker = DeliveryWorker::start(env.im.clone(), worker_config(&sim, 3)).unwrap();
    let probe = env.ok(vec![adsl_install("am-probe@x")]).await;
    env.wait_state(&probe, TaskState::Completed).await;
    assert_eq!(sim.requests(), 1, "only the probe's command went out");
    assert_eq!(env.service_state("am-cancel@x", "ADSL").await, "ACTIVE");
    assert_eq!(env.service_state("am-force@x", "ADSL").await, "ACTIVE");
    worker.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_services_commands_go_out_in_order() {
    let env = Env::new().await;
    let install = env.ok(vec![adsl_install("am-order@x")]).await;
    let delete = env
        .ok(vec![item("Delete", "ADSL", "ADSL", "am-order@x")])
        .await;
    let other = env.ok(vec![adsl_install("am-other@x")]).await;
    // The Delete's DEACTIVATE waits for the Install's ACTIVATE; another
    // service's command does not.
    let due: Vec<String> = env
        .im
        .due_commands(100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(due.contains(&format!("CMD-{install}-1")), "{due:?}");
    assert!(due.contains(&format!("CMD-{other}-1")), "{due:?}");
    assert!(!due.contains(&format!("CMD-{delete}-1")), "{due:?}");

    // While the ACTIVATE is retrying, the DEACTIVATE still waits.
    let act = env
        .im
        .due_commands(100)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == format!("CMD-{install}-1"))
        .unwrap();
    let r = env
        .im
        .record_delivery(
            act.row_id,
            act.redo,
            Delivery::NotDelivered {
                error: "HTTP 503".into(),
                retry_in: Some(Duration::from_millis(1)),
            },
        )
        .await
        .unwrap();
    assert!(r.applied);
    assert_eq!(r.command, CommandState::Pending);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let due: Vec<String> = env
        .im
        .due_commands(100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(due.contains(&format!("CMD-{install}-1")), "{due:?}");
    assert!(!due.contains(&format!("CMD-{delete}-1")), "{due:?}");

    // Delivered: now the DEACTIVATE is due.
    let r = env
        .im
        .record_delivery(act.row_id, act.redo, Delivery::Delivered(Ack::default()))
        .await
        .unwrap();
    assert_eq!(
        (r.applied, r.command, r.task),
        (true, CommandState::Delivered, TaskState::Completed)
    );
    // A stale record (already delivered) changes nothing.
    let r = env
        .im
        .record_delivery(act.row_id, act.redo, Delivery::Rejected(Ack::default()))
        .await
        .unwrap();
    assert!(!r.applied);
    assert_eq!(env.task(&install).await.state, TaskState::Completed);
    let due: Vec<String> = env
        .im
        .due_commands(100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(due.contains(&format!("CMD-{delete}-1")), "{due:?}");

    // End to end: the sim sees ACTIVATE before DEACTIVATE.
    let sim = start_sim().await;
    let worker = DeliveryWorker::start(env.im.clone(), worker_config(&sim, 3)).unwrap();
    env.wait_state(&delete, TaskState::Completed).await;
    env.wait_state(&other, TaskState::Completed).await;
    worker.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_ons_are_deactivated_before_their_broadband() {
    let env = Env::new().await;
    let sim = start_sim().await;
    let worker = DeliveryWorker::start(env.im.clone(), worker_config(&sim, 50)).unwrap();
    let install = env
        .ok(vec![
            ftth_install("am-addon@x", "HWTC0000B2B2"),
            iptv_install("am-addon@x"),
        ])
        .await;
    env.wait_state(&install, TaskState::Completed).await;
    worker.stop().await;

    // Deleting the broadband deactivates its IPTV first (command 1), then
    // the FTTH (command 2), which waits while the IPTV one is pending.
    let delete = env
        .ok(vec![item("Delete", "FTTH", "FTTH", "am-addon@x")])
        .await;
    let v = env.task(&delete).await;
    let kinds: Vec<(CommandType, ServiceType)> = v
        .commands
        .iter()
        .map(|c| (c.kind, c.service_type))
        .collect();
    assert_eq!(
        kinds,
        [
            (CommandType::Deactivate, ServiceType::Iptv),
            (CommandType::Deactivate, ServiceType::Ftth)
        ]
    );
    let due: Vec<String> = env
        .im
        .due_commands(100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(due, [format!("CMD-{delete}-1")]);

    // The IPTV DEACTIVATE fails a few times; the FTTH one still waits for it.
    let iptv_id = format!("CMD-{delete}-1");
    let ftth_id = format!("CMD-{delete}-2");
    sim.fail_id(iptv_id.clone(), 3);
    let worker = DeliveryWorker::start(env.im.clone(), worker_config(&sim, 50)).unwrap();
    env.wait_state(&delete, TaskState::Completed).await;
    assert_eq!(sim.counts(&iptv_id).failed, 3);
    let order: Vec<String> = sim
        .accepted()
        .into_iter()
        .map(|c| c.id)
        .filter(|id| id.starts_with(&format!("CMD-{delete}-")))
        .collect();
    assert_eq!(order, [iptv_id, ftth_id.clone()]);
    assert_eq!(sim.counts(&ftth_id).received, 1);
    worker.stop().await;
    sim.stop().await;
}
