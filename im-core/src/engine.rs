//! The [`Im`] handle: opens the store, runs the group-commit writer and the
//! read pool, and serves submitters from any thread or async task.
//!
//! Threads: one writer owns the only write connection; it takes every call
//! waiting at that moment, runs each in its own savepoint inside one
//! transaction, commits once, and only then answers each. Read threads serve
//! Query calls and password checks (Argon2 runs there, never on an async
//! runtime). Submitters wait on one-shot channels, so `submit` never blocks
//! an executor thread.

use crate::auth::{self, CredentialCache};
use crate::intake::{self, PreparedCall};
use crate::lifecycle::{
    self, Delivery, DueCommand, HistoryEntry, OperatorAction, Recorded, TaskView,
};
use crate::model::Inventory;
use crate::model::TaskState;
use crate::secrets::Secrets;
use crate::store::sqlite::SqliteStore;
use crate::store::{ReadConn, Store, StoreError, SyncRead, WriteConn};
use crate::sync;
use crate::{CoreConfig, ErrorCode, Form, Outcome};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

/// Errors of the core's own operations (not of a work order: those are
/// [`Outcome`]s).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The database could not be opened, migrated or used.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// The key file could not be read or created.
    #[error("key file: {0}")]
    KeyFile(#[from] crate::secrets::SecretsError),
    /// A value given to the core is not acceptable.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The core has been closed.
    #[error("the core is closed")]
    Closed,
    /// The writer's queue is full; try again later.
    #[error("the writer is busy; try again")]
    Busy,
}

/// Counters of the group-commit writer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Work orders waiting for the writer now.
    pub queue_depth: usize,
    /// Transactions committed.
    pub batches: u64,
    /// Work orders judged by the writer.
    pub jobs: u64,
    /// Work orders answered -9999 because they waited longer than the queue time-out.
    pub expired: u64,
    /// Batch-size histogram: batches of size ≤ 1, 2, 4, … 1024, and more (last).
    pub batch_size_buckets: [u64; 12],
    /// Time the writer spent running batches (judging, writing, committing).
    pub busy: std::time::Duration,
    /// Batches that failed in storage as a whole (every call answered -9999).
    pub failed_batches: u64,
    /// Whether the last batch failed in storage (the store refuses writes:
    /// disk full, I/O errors); cleared by the next batch that commits.
    pub failing: bool,
}

impl WriterStats {
    /// The upper bound of each histogram bucket (`None` for the last one).
    pub fn bucket_bounds() -> [Option<usize>; 12] {
        let mut b = [None; 12];
        for (i, slot) in b.iter_mut().enumerate().take(11) {
            *slot = Some(1usize << i);
        }
        b
    }
}

#[derive(Default)]
struct Stats {
    queue_depth: AtomicUsize,
    batches: AtomicU64,
    jobs: AtomicU64,
    expired: AtomicU64,
    busy_ns: AtomicU64,
    buckets: [AtomicU64; 12],
    failed_batches: AtomicU64,
    failing: std::sync::atomic::AtomicBool,
}

struct WriteJob {
    call: PreparedCall,
    enqueued: Instant,
    /// The call goes back with its outcome, so that its memory is freed on
    /// the submitter's thread, not the writer's.
    reply: oneshot::Sender<(Outcome, PreparedCall)>,
}

enum Admin {
    LoadInventory(Box<Inventory>),
    PutOmAccount { login: String, hash: String },
}

type LifecycleReply = oneshot::Sender<Result<lifecycle::Reply, CoreError>>;

enum WriteMsg {
    Call(WriteJob),
    Admin(Admin, oneshot::Sender<Result<(), StoreError>>),
    Lifecycle(lifecycle::Op, LifecycleReply),
    Sync(Box<sync::WriterOp>, SyncReply),
    Login(Box<crate::login::WriterOp>, LoginReply),
    Exec(WriterJob),
    Stop,
}

/// A store-specific job run on the writer's connection (see [`crate::admin`]).
pub(crate) type WriterJob = Box<dyn FnOnce(&mut dyn std::any::Any) + Send>;

type LoginReply = oneshot::Sender<Result<crate::login::WriterReply, CoreError>>;

type SyncReply = oneshot::Sender<Result<sync::WriterReply, StoreError>>;

type SyncReaderFactory = Box<dyn Fn() -> Result<Box<dyn SyncRead>, StoreError> + Send + Sync>;

type ReadJob = Box<dyn FnOnce(&mut dyn ReadConn) + Send>;

enum ReadMsg {
    Job(ReadJob),
    Stop,
}

struct Inner {
    secrets: Secrets,
    cache: CredentialCache,
    writer: SyncSender<WriteMsg>,
    reader: mpsc::Sender<ReadMsg>,
    stats: Arc<Stats>,
    readers: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    sync_reader: SyncReaderFactory,
    login: Arc<crate::login::LoginState>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        stop(self);
    }
}

fn stop(inner: &Inner) {
    let Ok(mut threads) = inner.threads.lock() else {
        return;
    };
    if threads.is_empty() {
        return;
    }
    let _ = inner.writer.send(WriteMsg::Stop);
    for _ in 0..inner.readers {
        let _ = inner.reader.send(ReadMsg::Stop);
    }
    for t in threads.drain(..) {
        let _ = t.join();
    }
}

/// The core handle: cheap to clone, `Send + Sync`, usable from async code.
#[derive(Clone)]
pub struct Im {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Im {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Im")
            .field("stats", &self.writer_stats())
            .finish()
    }
}

impl Im {
    /// Opens (creating and migrating when needed) the SQLite database and the
    /// key file of `config`, and starts the writer and read threads.
    pub fn open(config: CoreConfig) -> Result<Im, CoreError> {
        let store = SqliteStore::open(&config.db_path, config.synchronous)?
            .with_background_checkpoint(config.background_checkpoint)
            .with_writer_cache_mb(config.writer_cache_mb);
        let secrets = Secrets::load_or_create(&config.key_file)?;
        Im::with_store(store, secrets, config)
    }

    /// Starts the core on any [`Store`] (the SQLite store is the default).
    pub fn with_store<S: Store>(
        store: S,
        secrets: Secrets,
        config: CoreConfig,
    ) -> Result<Im, CoreError> {
        let login = Arc::new(crate::login::LoginState::new(&config.login)?);
        let stats = Arc::new(Stats::default());
        let mut writer_conn = store.open_writer()?;
        // A sync run decided before a crash is finished before anything
        // else is served: once open, the inventory is as before or as after
        // every run.
        sync::recover(&mut writer_conn);
        let (wtx, wrx) = mpsc::sync_channel(config.queue_capacity.max(1));
        let (rtx, rrx) = mpsc::channel::<ReadMsg>();
        let rrx = Arc::new(Mutex::new(rrx));
        let mut threads = Vec::new();
        let readers = config.read_connections.max(1);
        for i in 0..readers {
            let conn = store.open_reader()?;
            let rx = Arc::clone(&rrx);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("im-read-{i}"))
                    .spawn(move || read_loop(conn, rx))
                    .map_err(|e| CoreError::Invalid(format!("cannot start a read thread: {e}")))?,
            );
        }
        let st = Arc::clone(&stats);
        let cfg = config.clone();
        threads.push(
            std::thread::Builder::new()
                .name("im-writer".into())
                .spawn(move || write_loop(writer_conn, wrx, st, cfg))
                .map_err(|e| CoreError::Invalid(format!("cannot start the writer: {e}")))?,
        );
        let store = Arc::new(store);
        let sync_reader: SyncReaderFactory = Box::new(move || {
            store
                .open_reader()
                .map(|r| Box::new(r) as Box<dyn SyncRead>)
        });
        Ok(Im {
            inner: Arc::new(Inner {
                sync_reader,
                login,
                secrets,
                cache: CredentialCache::new(config.credential_cache_ttl),
                writer: wtx,
                reader: rtx,
                stats,
                readers,
                threads: Mutex::new(threads),
            }),
        })
    }

    /// Judges one call and, when accepted, stores it durably before answering.
    /// Never blocks the async runtime it is awaited on.
    pub async fn submit(&self, form: Form) -> Outcome {
        let (login, password) = match intake::credentials(&form) {
            Ok(c) => c,
            Err(o) => return o,
        };
        match self.authenticate(login, password).await {
            Ok(()) => {}
            Err(o) => return o,
        }
        let call = match intake::prepare(&form, login, &self.inner.secrets) {
            Ok(c) => c,
            Err(o) => return o,
        };
        drop(form);
        if call.all_query {
            let flow = call.flow_id.clone();
            return self
                .read(move |r| intake::query_call(r, &call))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, flow_id = %flow, "query failed");
                    Outcome::internal(flow)
                });
        }
        self.write(call).await
    }

    /// [`Im::submit`] for synchronous callers. Do not call it on an async
    /// runtime's thread (it parks the calling thread until the answer).
    pub fn submit_blocking(&self, form: Form) -> Outcome {
        block_on(self.submit(form))
    }

    async fn authenticate(&self, login: &str, password: &str) -> Result<(), Outcome> {
        let inner = &self.inner;
        let refused = || Outcome::refused(ErrorCode::AuthFailed, "authentication failed", "");
        // One check per pair of credentials at a time: the other callers
        // wait for its verdict instead of each hashing (and a cached entry
        // is renewed by one caller before it expires, so its expiry never
        // sends every caller to Argon2 at once).
        let mut flight = None;
        let mut refreshing = false;
        for attempt in 0..2 {
            match inner.cache.lookup(&inner.secrets, login, password) {
                auth::Cached::Verified { refresh: false } => return Ok(()),
                auth::Cached::Verified { refresh: true } => {
                    match inner.cache.join_flight(&inner.secrets, login, password) {
                        auth::Flight::Leader(g) => {
                            flight = Some(g);
                            refreshing = true;
                        }
                        _ => return Ok(()),
                    }
                }
                auth::Cached::Denied => {
                    tracing::warn!(account = %login, "OM authentication failed (repeated credentials)");
                    return Err(refused());
                }
                auth::Cached::Unknown if attempt == 0 => {
                    match inner.cache.join_flight(&inner.secrets, login, password) {
                        auth::Flight::Leader(g) => flight = Some(g),
                        auth::Flight::Follower(mut rx) => {
                            // Returns once the leader is done (its sender
                            // dropped); then the cache has its verdict.
                            let _ = rx.changed().await;
                            continue;
                        }
                        auth::Flight::Alone => {}
                    }
                }
                auth::Cached::Unknown => {}
            }
            break;
        }
        // Each check costs a full Argon2 hash: bound how many may wait, so
        // that a flood of wrong passwords cannot exhaust the server.
        let Some(_slot) = inner.cache.verification_slot() else {
            if refreshing {
                // Still verified: renew it another time.
                return Ok(());
            }
            tracing::warn!(account = %login, "too many password checks in progress: answering -9999");
            return Err(Outcome::internal(""));
        };
        let epoch = inner.cache.epoch();
        let (l, p) = (login.to_string(), password.to_string());
        let verdict = self
            .read(move |r| Ok(auth::check_om_account(r.account(&l)?.as_ref(), &p)))
            .await;
        let r = match verdict {
            Ok(Ok(())) => {
                inner.cache.insert(&inner.secrets, login, password, epoch);
                Ok(())
            }
            Ok(Err(denial)) => {
                if refreshing {
                    // Changed by another process since it was cached.
                    inner.cache.clear();
                }
                inner.cache.deny(&inner.secrets, login, password, epoch);
                tracing::warn!(account = %login, reason = denial.as_str(), "OM authentication failed");
                Err(refused())
            }
            Err(e) if refreshing => {
                tracing::warn!(error = %e, "account lookup failed while renewing a cached credential");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                Err(Outcome::internal(""))
            }
        };
        drop(flight);
        r
    }

    async fn write(&self, call: PreparedCall) -> Outcome {
        let flow = call.flow_id.clone();
        let (tx, rx) = oneshot::channel();
        let job = WriteJob {
            call,
            enqueued: Instant::now(),
            reply: tx,
        };
        let stats = &self.inner.stats;
        stats.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.inner.writer.try_send(WriteMsg::Call(job)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(flow_id = %flow, "writer queue full: answering -9999");
                return Outcome::internal(flow);
            }
            Err(TrySendError::Disconnected(_)) => {
                stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                return Outcome::internal(flow);
            }
        }
        match rx.await {
            Ok((outcome, call)) => {
                drop(call);
                if outcome.is_success() {
                    tracing::info!(flow_id = %flow, task_no = outcome.task_no.as_deref().unwrap_or(""), "work order accepted");
                } else {
                    tracing::info!(flow_id = %flow, code = outcome.error_code.code(), desc = %outcome.error_desc, "work order refused");
                }
                outcome
            }
            Err(_) => Outcome::internal(flow),
        }
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn ReadConn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.inner
            .reader
            .send(ReadMsg::Job(job))
            .map_err(|_| StoreError::Backend("the core is closed".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("the read thread stopped".into()))?
    }

    fn admin(&self, op: Admin) -> Result<(), CoreError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .writer
            .send(WriteMsg::Admin(op, tx))
            .map_err(|_| CoreError::Closed)?;
        block_on(rx)
            .map_err(|_| CoreError::Closed)?
            .map_err(CoreError::from)
    }

    /// Runs one sync operation on the writer and waits for its answer.
    pub(crate) fn sync_op(&self, op: sync::WriterOp) -> Result<sync::WriterReply, CoreError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .writer
            .send(WriteMsg::Sync(Box::new(op), tx))
            .map_err(|_| CoreError::Closed)?;
        Ok(block_on(rx).map_err(|_| CoreError::Closed)??)
    }

    /// Queues one sync operation on the writer without waiting.
    pub(crate) fn sync_op_nowait(&self, op: sync::WriterOp) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.inner.writer.send(WriteMsg::Sync(Box::new(op), tx));
    }

    /// Opens a read connection for a sync run.
    pub(crate) fn sync_reader(&self) -> Result<Box<dyn SyncRead>, CoreError> {
        Ok((self.inner.sync_reader)()?)
    }

    /// Loads inventory rows (upsert by natural key; usage is never touched)
    /// in one transaction.
    pub fn load_inventory(&self, inventory: Inventory) -> Result<(), CoreError> {
        self.admin(Admin::LoadInventory(Box::new(inventory)))
    }

    /// Whether the inventory holds no exchange yet.
    pub fn inventory_is_empty(&self) -> Result<bool, CoreError> {
        Ok(block_on(self.read(|r| r.inventory_is_empty()))?)
    }

    /// Whether an account with this login (any mode, enabled or not) exists.
    pub fn account_exists(&self, login: &str) -> Result<bool, CoreError> {
        let login = login.to_string();
        Ok(block_on(
            self.read(move |r| Ok(r.account(&login)?.is_some())),
        )?)
    }

    /// Creates the OM account `login` (LOCAL, with the role that allows the OM
    /// interface) or resets its password; drops cached credentials.
    pub fn set_om_account(&self, login: &str, password: &str) -> Result<(), CoreError> {
        if login.trim().is_empty() || password.is_empty() {
            return Err(CoreError::Invalid(
                "login and password must not be empty".into(),
            ));
        }
        let hash = auth::hash_password(password)?;
        let r = self.admin(Admin::PutOmAccount {
            login: login.trim().to_string(),
            hash,
        });
        self.inner.cache.clear();
        r
    }

    async fn lifecycle(&self, op: lifecycle::Op) -> Result<lifecycle::Reply, CoreError> {
        let (tx, rx) = oneshot::channel();
        match self.inner.writer.try_send(WriteMsg::Lifecycle(op, tx)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(CoreError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(CoreError::Closed),
        }
        rx.await.map_err(|_| CoreError::Closed)?
    }

    fn lifecycle_blocking(&self, op: lifecycle::Op) -> Result<lifecycle::Reply, CoreError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .writer
            .send(WriteMsg::Lifecycle(op, tx))
            .map_err(|_| CoreError::Closed)?;
        block_on(rx).map_err(|_| CoreError::Closed)?
    }

    /// Up to `limit` outbox commands due for delivery to AM now, in queue
    /// order: PENDING ones whose next attempt is unset or reached, except a
    /// command that waits for an earlier pending (or retrying) command of
    /// its service, or — for a DEACTIVATE — of one of the service's add-ons.
    /// Reads committed rows only.
    pub async fn due_commands(&self, limit: usize) -> Result<Vec<DueCommand>, CoreError> {
        let now = lifecycle::stamp(std::time::SystemTime::now());
        Ok(self.read(move |r| r.due_commands(&now, limit)).await?)
    }

    /// Records one delivery attempt of the command `row_id`, sent under redo
    /// number `redo` (see [`DueCommand`]), and moves its task on, in one
    /// transaction: the first attempt makes the task `ACTIVATING`; the last
    /// delivered command makes it `COMPLETED`; a rejection or exhausted
    /// retries make the command and the task `FAILED`. Each transition adds
    /// a history entry. A command that is no longer pending under `redo`
    /// (dropped or redone meanwhile) is left alone (`applied == false`).
    pub async fn record_delivery(
        &self,
        row_id: i64,
        redo: u32,
        delivery: Delivery,
    ) -> Result<Recorded, CoreError> {
        let mut v = self
            .record_deliveries(vec![(row_id, redo, delivery)])
            .await?;
        v.pop()
            .ok_or_else(|| CoreError::Invalid("no delivery recorded".into()))
    }

    /// [`Im::record_delivery`] for several attempts, in one transaction
    /// (all or none are stored). Results are in input order.
    pub async fn record_deliveries(
        &self,
        deliveries: Vec<(i64, u32, Delivery)>,
    ) -> Result<Vec<Recorded>, CoreError> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        match self.lifecycle(lifecycle::Op::Record(deliveries)).await? {
            lifecycle::Reply::Recorded(v) => Ok(v),
            lifecycle::Reply::Task(_) => Err(CoreError::Invalid("unexpected reply".into())),
        }
    }

    fn operator_op(
        action: OperatorAction,
        task_no: &str,
        actor: &str,
        reason: &str,
    ) -> Result<lifecycle::Op, CoreError> {
        lifecycle::check_operator(actor, reason)?;
        Ok(lifecycle::Op::Operator {
            action,
            task_no: task_no.trim().to_string(),
            actor: actor.to_string(),
            reason: reason.to_string(),
        })
    }

    fn task_state(reply: lifecycle::Reply) -> Result<TaskState, CoreError> {
        match reply {
            lifecycle::Reply::Task(s) => Ok(s),
            lifecycle::Reply::Recorded(_) => Err(CoreError::Invalid("unexpected reply".into())),
        }
    }

    /// An operator's action on a task, with the operator's account and a
    /// reason (both required, else [`CoreError::Invalid`]); returns the
    /// task's new state. `Redo` needs a `FAILED` task: its failed commands
    /// become pending again under the next redo id (`…-r1`, `…-r2`) and the
    /// task `ACTIVATING`. `Cancel` (→ `CANCELLED`) and `ForceFinish`
    /// (→ `COMPLETED`) drop the pending commands. None changes the
    /// inventory or any service.
    pub async fn operate_task(
        &self,
        action: OperatorAction,
        task_no: &str,
        actor: &str,
        reason: &str,
    ) -> Result<TaskState, CoreError> {
        let op = Im::operator_op(action, task_no, actor, reason)?;
        Im::task_state(self.lifecycle(op).await?)
    }

    /// [`Im::operate_task`] for synchronous callers (not on an async runtime's thread).
    pub fn operate_task_blocking(
        &self,
        action: OperatorAction,
        task_no: &str,
        actor: &str,
        reason: &str,
    ) -> Result<TaskState, CoreError> {
        let op = Im::operator_op(action, task_no, actor, reason)?;
        Im::task_state(self.lifecycle_blocking(op)?)
    }

    /// Redoes a `FAILED` task's failed commands (→ `ACTIVATING`); see [`Im::operate_task`].
    pub async fn redo_task(
        &self,
        task_no: &str,
        actor: &str,
        reason: &str,
    ) -> Result<TaskState, CoreError> {
        self.operate_task(OperatorAction::Redo, task_no, actor, reason)
            .await
    }

    /// Cancels a task: pending commands dropped (→ `CANCELLED`); see [`Im::operate_task`].
    pub async fn cancel_task(
        &self,
        task_no: &str,
        actor: &str,
        reason: &str,
    ) -> Result<TaskState, CoreError> {
        self.operate_task(OperatorAction::Cancel, task_no, actor, reason)
            .await
    }

    /// Force-finishes a task: pending commands dropped (→ `COMPLETED`); see [`Im::operate_task`].
    pub async fn force_finish_task(
        &self,
        task_no: &str,
        actor: &str,
        reason: &str,
    ) -> Result<TaskState, CoreError> {
        self.operate_task(OperatorAction::ForceFinish, task_no, actor, reason)
            .await
    }

    /// A task with its commands and full history (the first entry is its
    /// creation by the OM account), or `None` for an unknown number.
    pub async fn task(&self, task_no: &str) -> Result<Option<TaskView>, CoreError> {
        let task_no = task_no.trim().to_string();
        Ok(self
            .read(move |r| {
                let Some(t) = r.task_by_no(&task_no)? else {
                    return Ok(None);
                };
                let commands = r.task_commands(t.id)?;
                let mut history = vec![HistoryEntry {
                    at: t.created.clone(),
                    from: None,
                    to: TaskState::Received,
                    action: "RECEIVED".into(),
                    actor: t.account.clone(),
                    reason: String::new(),
                }];
                history.extend(r.task_history(t.id)?);
                Ok(Some(TaskView {
                    task_no: t.task_no,
                    flow_id: t.flow_id,
                    popid: t.popid,
                    state: t.state,
                    items: t.items,
                    account: t.account,
                    created: t.created,
                    updated: t.updated,
                    commands,
                    history,
                }))
            })
            .await?)
    }

    /// [`Im::task`] for synchronous callers (not on an async runtime's thread).
    pub fn task_blocking(&self, task_no: &str) -> Result<Option<TaskView>, CoreError> {
        block_on(self.task(task_no))
    }

    /// Checks that the store answers reads and that the last batch of work
    /// orders did not fail in storage (a store that refuses writes — disk
    /// full, I/O errors — is not healthy even though it reads).
    pub fn health(&self) -> Result<(), CoreError> {
        self.writes_ok()?;
        Ok(block_on(self.read(|r| r.ping()))?)
    }

    /// [`Im::health`], from async code.
    pub async fn health_async(&self) -> Result<(), CoreError> {
        self.writes_ok()?;
        Ok(self.read(|r| r.ping()).await?)
    }

    fn writes_ok(&self) -> Result<(), CoreError> {
        if self.inner.stats.failing.load(Ordering::Relaxed) {
            return Err(CoreError::Storage(StoreError::Backend(
                "the last batch of work orders failed in storage: the store refuses writes".into(),
            )));
        }
        Ok(())
    }

    /// Writer counters.
    pub fn writer_stats(&self) -> WriterStats {
        let s = &self.inner.stats;
        let mut buckets = [0u64; 12];
        for (b, a) in buckets.iter_mut().zip(&s.buckets) {
            *b = a.load(Ordering::Relaxed);
        }
        WriterStats {
            queue_depth: s.queue_depth.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            jobs: s.jobs.load(Ordering::Relaxed),
            expired: s.expired.load(Ordering::Relaxed),
            batch_size_buckets: buckets,
            busy: std::time::Duration::from_nanos(s.busy_ns.load(Ordering::Relaxed)),
            failed_batches: s.failed_batches.load(Ordering::Relaxed),
            failing: s.failing.load(Ordering::Relaxed),
        }
    }

    /// The key of the values encrypted at rest.
    pub(crate) fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    /// The login settings and directory client.
    pub(crate) fn login_state(&self) -> &Arc<crate::login::LoginState> {
        &self.inner.login
    }

    /// Runs `f` on a read thread (logins: account lookups and Argon2).
    pub(crate) async fn login_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn ReadConn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.read(f).await
    }

    /// Queues a login change on the writer.
    pub(crate) fn send_login_op(
        &self,
        op: crate::login::WriterOp,
        reply: LoginReply,
    ) -> Result<(), CoreError> {
        self.inner
            .writer
            .send(WriteMsg::Login(Box::new(op), reply))
            .map_err(|_| CoreError::Closed)
    }

    /// Queues a job on the writer's connection, given as `&mut dyn Any`.
    pub(crate) fn send_writer_job(&self, job: WriterJob) -> Result<(), CoreError> {
        self.inner
            .writer
            .send(WriteMsg::Exec(job))
            .map_err(|_| CoreError::Closed)
    }

    /// Forgets every cached OM credential (a password changed).
    pub(crate) fn clear_credential_cache(&self) {
        self.inner.cache.clear();
    }

    /// Stops the threads after the writer has answered every call it holds,
    /// and closes the store. Later calls answer -9999.
    pub fn close(&self) {
        stop(&self.inner);
    }
}

fn read_loop<R: ReadConn>(mut conn: R, rx: Arc<Mutex<Receiver<ReadMsg>>>) {
    loop {
        let msg = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        match msg {
            Ok(ReadMsg::Job(job)) => job(&mut conn),
            Ok(ReadMsg::Stop) | Err(_) => return,
        }
    }
}

/// Task numbers: `WS` + day + a daily sequence of at least six digits.
struct TaskSeq {
    day: String,
    last: u64,
    loaded: bool,
}

fn now() -> (String, String) {
    let t = time::OffsetDateTime::now_utc();
    let day = format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day());
    let at = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| day.clone());
    (day, at)
}

fn write_loop<W: WriteConn>(
    mut conn: W,
    rx: Receiver<WriteMsg>,
    stats: Arc<Stats>,
    cfg: CoreConfig,
) {
    let mut seq = TaskSeq {
        day: String::new(),
        last: 0,
        loaded: false,
    };
    let max_batch = cfg.max_batch.max(1);
    let mut batch: Vec<WriteJob> = Vec::with_capacity(max_batch);
    let mut stopping = false;
    let replier = Replier::start();
    while !stopping {
        let first = match rx.recv() {
            Ok(m) => m,
            Err(_) => return,
        };
        let mut admin = Vec::new();
        let mut life = Vec::new();
        let mut syncs = Vec::new();
        let mut logins = Vec::new();
        let mut jobs = Vec::new();
        let mut push = |m: WriteMsg, batch: &mut Vec<WriteJob>, stopping: &mut bool| match m {
            WriteMsg::Call(j) => batch.push(j),
            WriteMsg::Admin(op, reply) => admin.push((op, reply)),
            WriteMsg::Lifecycle(op, reply) => life.push((op, reply)),
            WriteMsg::Sync(op, reply) => syncs.push((op, reply)),
            WriteMsg::Login(op, reply) => logins.push((op, reply)),
            WriteMsg::Exec(job) => jobs.push(job),
            WriteMsg::Stop => *stopping = true,
        };
        push(first, &mut batch, &mut stopping);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(m) => push(m, &mut batch, &mut stopping),
                Err(_) => break,
            }
        }
        if stopping {
            // Answer everything already queued before stopping.
            while let Ok(m) = rx.try_recv() {
                push(m, &mut batch, &mut stopping);
            }
        }
        stats.queue_depth.fetch_sub(batch.len(), Ordering::Relaxed);
        if !batch.is_empty() {
            let t = Instant::now();
            run_batch(&mut conn, &mut batch, &mut seq, &stats, &cfg, &replier);
            stats
                .busy_ns
                .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        for (op, reply) in admin {
            let _ = reply.send(run_admin(&mut conn, op));
        }
        if !life.is_empty() {
            run_lifecycle(&mut conn, life);
        }
        for (op, reply) in syncs {
            let t = Instant::now();
            let _ = reply.send(sync::run_writer_op(&mut conn, *op));
            stats
                .busy_ns
                .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        for (op, reply) in logins {
            let _ = reply.send(crate::login::run_writer_op(&mut conn, *op));
        }
        if !jobs.is_empty() {
            // Operators' changes may free ports.
            conn.forget_picks();
        }
        for job in jobs {
            job(&mut conn);
        }
    }
}

/// Runs lifecycle changes in one transaction, each in its own savepoint,
/// and answers each after the commit.
fn run_lifecycle<W: WriteConn>(conn: &mut W, ops: Vec<(lifecycle::Op, LifecycleReply)>) {
    let (_, at) = now();
    let when = std::time::SystemTime::now();
    let mut results: Vec<Result<lifecycle::Reply, CoreError>> = Vec::with_capacity(ops.len());
    let r = (|| -> Result<(), StoreError> {
        conn.begin()?;
        for (op, _) in &ops {
            conn.savepoint()?;
            let r = lifecycle::apply(conn, op, &at, when);
            if r.is_ok() {
                conn.release()?;
            } else {
                conn.rollback_to()?;
            }
            results.push(r);
        }
        conn.commit()
    })();
    if let Err(e) = r {
        conn.rollback();
        tracing::error!(error = %e, "lifecycle changes failed: nothing of them was stored");
        let msg = e.to_string();
        for (_, reply) in ops {
            let _ = reply.send(Err(CoreError::Storage(StoreError::Backend(msg.clone()))));
        }
        return;
    }
    for ((_, reply), result) in ops.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

fn run_admin<W: WriteConn>(conn: &mut W, op: Admin) -> Result<(), StoreError> {
    let (_, at) = now();
    conn.begin()?;
    let r = match &op {
        Admin::LoadInventory(inv) => conn.load_inventory(inv, &at),
        Admin::PutOmAccount { login, hash } => conn.put_om_account(login, hash, &at),
    };
    match r {
        Ok(()) => conn.commit().inspect_err(|_| conn.rollback()),
        Err(e) => {
            conn.rollback();
            Err(e)
        }
    }
}

/// How a batch isolates its calls from each other.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// Savepoints only around calls of several items. A one-item call makes
    /// every refusal before its first write, so it needs none; if a write of
    /// it fails anyway, the batch is redone in `Every` mode.
    MultiItem,
    /// A savepoint around every call.
    Every,
}

fn run_batch<W: WriteConn>(
    conn: &mut W,
    batch: &mut Vec<WriteJob>,
    seq: &mut TaskSeq,
    stats: &Stats,
    cfg: &CoreConfig,
    replier: &Replier,
) {
    let n = batch.len();
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.jobs.fetch_add(n as u64, Ordering::Relaxed);
    let bucket = (usize::BITS - (n.max(1) - 1).leading_zeros()) as usize;
    stats.buckets[bucket.min(11)].fetch_add(1, Ordering::Relaxed);

    let (day, at) = now();
    let expired: Vec<bool> = batch
        .iter()
        .map(|j| j.enqueued.elapsed() > cfg.queue_timeout)
        .collect();
    let n_expired = expired.iter().filter(|e| **e).count() as u64;
    stats.expired.fetch_add(n_expired, Ordering::Relaxed);

    let mut outcomes = match try_batch(conn, batch, &expired, seq, &day, &at, Isolation::MultiItem)
    {
        Ok(o) => Ok(o),
        Err(BatchError::Redo) => try_batch(conn, batch, &expired, seq, &day, &at, Isolation::Every),
        Err(e) => Err(e),
    };
    if outcomes.is_ok() {
        if stats.failing.load(Ordering::Relaxed) {
            stats.failing.store(false, Ordering::Relaxed);
            tracing::info!("the store accepts writes again");
        }
    } else {
        stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        stats.failing.store(true, Ordering::Relaxed);
    }
    if let Err(e) = &outcomes {
        tracing::error!(error = %e, jobs = n, "batch failed: nothing of it was stored");
        conn.rollback();
        seq.loaded = false;
        outcomes = Ok(batch
            .iter()
            .map(|j| Outcome::internal(j.call.flow_id.clone()))
            .collect());
    }
    let outcomes = outcomes.unwrap_or_default();
    replier.answer(
        batch
            .drain(..)
            .zip(outcomes)
            .map(|(job, outcome)| (job.reply, outcome, job.call))
            .collect(),
    );
}

/// One committed batch's answers: each submitter's channel, outcome and call.
type Answers = Vec<(
    oneshot::Sender<(Outcome, PreparedCall)>,
    Outcome,
    PreparedCall,
)>;

/// Delivers a committed batch's answers on a thread of its own.
///
/// Waking a waiting submitter is a system call, and the woken thread often
/// takes the writer's core: answering 30 submitters cost the writer about a
/// tenth of its time. The writer hands the whole batch over in one message
/// instead; the answers still go out only after the commit.
struct Replier {
    tx: Option<mpsc::Sender<Answers>>,
    thread: Option<JoinHandle<()>>,
}

impl Replier {
    fn start() -> Replier {
        let (tx, rx) = mpsc::channel::<Answers>();
        let thread = std::thread::Builder::new()
            .name("im-replier".into())
            .spawn(move || {
                for answers in rx {
                    deliver(answers);
                }
            });
        match thread {
            Ok(t) => Replier {
                tx: Some(tx),
                thread: Some(t),
            },
            Err(e) => {
                tracing::warn!(error = %e, "no replier thread: the writer answers itself");
                Replier {
                    tx: None,
                    thread: None,
                }
            }
        }
    }

    fn answer(&self, answers: Answers) {
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(answers)) = tx.send(answers) {
                    deliver(answers);
                }
            }
            None => deliver(answers),
        }
    }
}

impl Drop for Replier {
    /// Every answer handed over is delivered before the writer stops.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn deliver(answers: Answers) {
    for (reply, outcome, call) in answers {
        let _ = reply.send((outcome, call));
    }
}

#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("a call without savepoint failed in storage; redo with savepoints")]
    Redo,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs one batch in one transaction and commits it; on `Err` nothing of it
/// is stored (the transaction is rolled back).
fn try_batch<W: WriteConn>(
    conn: &mut W,
    batch: &[WriteJob],
    expired: &[bool],
    seq: &mut TaskSeq,
    day: &str,
    at: &str,
    isolation: Isolation,
) -> Result<Vec<Outcome>, BatchError> {
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
    let r = (|| -> Result<(), BatchError> {
        conn.begin()?;
        if !seq.loaded || seq.day != day {
            seq.last = conn.load_task_seq(day)?;
            seq.day = day.to_string();
            seq.loaded = true;
        }
        for (job, expired) in batch.iter().zip(expired) {
            if *expired {
                outcomes.push(Outcome::internal(job.call.flow_id.clone()));
                continue;
            }
            let task_no = format!("WS{day}{:06}", seq.last + 1);
            let isolated = isolation == Isolation::Every || job.call.items.len() > 1;
            if isolated {
                conn.savepoint()?;
            }
            match intake::apply_call(conn, &job.call, &task_no, at) {
                Ok(o) => {
                    if isolated {
                        if o.is_success() {
                            conn.release()?;
                        } else {
                            conn.rollback_to()?;
                        }
                    }
                    if o.is_success() {
                        seq.last += 1;
                    }
                    outcomes.push(o);
                }
                Err(e) if isolated => {
                    tracing::error!(error = %e, flow_id = %job.call.flow_id, "work order failed in storage");
                    conn.rollback_to()?;
                    outcomes.push(Outcome::internal(job.call.flow_id.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, flow_id = %job.call.flow_id, "work order failed in storage; redoing its batch with savepoints");
                    return Err(BatchError::Redo);
                }
            }
        }
        conn.save_task_seq(day, seq.last)?;
        conn.commit()?;
        Ok(())
    })();
    match r {
        Ok(()) => Ok(outcomes),
        Err(e) => {
            conn.rollback();
            seq.loaded = false;
            Err(e)
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives a future to completion on the calling thread (the core's futures
/// only wait on its own channels, so no runtime is needed).
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
