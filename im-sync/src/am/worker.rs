//! The delivery worker: a Tokio task that takes the due commands of the
//! outbox (committed rows only, so a rolled-back work order never sends
//! anything), posts them to AM, and records each attempt through the core,
//! which moves the commands and their tasks on.
//!
//! Retries follow the `am` [`RetryPolicy`]: after the k-th failed attempt
//! the command's next attempt is due after the policy's k-th wait, so the
//! schedule survives restarts (it is in the database) and other services'
//! commands keep flowing meanwhile. A retry resends the same id.

use super::client::{AmClient, AmClientConfig, Answer, ConfigError};
use super::wire::Command;
use im_core::lifecycle::{Delivery, DueCommand};
use im_core::retry::{Interface, RetryPolicy};
use im_core::{CoreError, Im};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, error, info, warn};

/// Settings of the delivery worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How to reach AM.
    pub client: AmClientConfig,
    /// The retry policy (default: the built-in `am` policy; load the `am`
    /// retry-policy file with `im_core::retry::RetryPolicies`).
    pub retry: RetryPolicy,
    /// How often the outbox is looked at when nothing was due. Default 500 ms.
    pub poll_interval: Duration,
    /// Most commands taken per round. Default 64.
    pub batch: usize,
    /// Most commands in flight at once. Default 8.
    pub concurrency: usize,
}

impl WorkerConfig {
    /// Defaults for AM at `url`.
    pub fn new(url: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            client: AmClientConfig::new(url),
            retry: RetryPolicy::default_for(Interface::Am),
            poll_interval: Duration::from_millis(500),
            batch: 64,
            concurrency: 8,
        }
    }
}

/// Counters of a worker since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Attempts made.
    pub attempts: u64,
    /// Commands delivered (OK or DUPLICATE).
    pub delivered: u64,
    /// Commands rejected (REJECTED or HTTP 4xx).
    pub rejected: u64,
    /// Attempts that will be retried.
    pub retried: u64,
    /// Commands whose retries ran out.
    pub exhausted: u64,
}

#[derive(Default)]
struct Counters {
    attempts: AtomicU64,
    delivered: AtomicU64,
    rejected: AtomicU64,
    retried: AtomicU64,
    exhausted: AtomicU64,
}

/// A running delivery worker. Stop it with [`DeliveryWorker::stop`];
/// dropping the handle leaves it running until the runtime ends.
#[derive(Debug)]
pub struct DeliveryWorker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counters")
    }
}

/// The wait after the `attempts`-th failed attempt, or `None` when the
/// policy allows no further attempt.
///
/// ```
/// use im_core::retry::RetryPolicy;
/// use im_sync::am::worker::retry_wait;
/// use std::time::Duration;
/// let p = RetryPolicy { retries: 2, initial_interval: Duration::from_millis(10),
///     multiplier: 2.0, max_interval: Duration::from_millis(100), jitter: 0.0 };
/// assert_eq!(retry_wait(&p, 1), Some(Duration::from_millis(10)));
/// assert_eq!(retry_wait(&p, 2), Some(Duration::from_millis(20)));
/// assert_eq!(retry_wait(&p, 3), None);
/// ```
pub fn retry_wait(policy: &RetryPolicy, attempts: u32) -> Option<Duration> {
    let k = usize::try_from(attempts.checked_sub(1)?).ok()?;
    policy.intervals().nth(k)
}

impl DeliveryWorker {
    /// Starts the worker on the current Tokio runtime.
    pub fn start(im: Im, config: WorkerConfig) -> Result<DeliveryWorker, ConfigError> {
        let client = AmClient::new(config.client.clone())?;
        let (stop, stop_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        info!(url = %client.url(), "AM delivery worker started");
        let task = tokio::spawn(run(im, client, config, stop_rx, c));
        Ok(DeliveryWorker {
            stop,
            task,
            counters,
        })
    }

    /// Counters since the start.
    pub fn stats(&self) -> WorkerStats {
        let c = &self.counters;
        WorkerStats {
            attempts: c.attempts.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            exhausted: c.exhausted.load(Ordering::Relaxed),
        }
    }

    /// Stops the worker: the attempts in flight finish (each within the
    /// client's time-out) and are recorded; then it returns. What is still
    /// pending stays in the outbox for the next start.
    pub async fn stop(mut self) -> WorkerStats {
        let _ = self.stop.send(true);
        if let Err(e) = (&mut self.task).await {
            error!(error = %e, "AM delivery worker ended abnormally");
        }
        self.stats()
    }
}

/// Waits `d` or until a stop is asked; `true` when stopping.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        r = stop.changed() => r.is_err() || *stop.borrow(),
    }
}

async fn run(
    im: Im,
    client: AmClient,
    config: WorkerConfig,
    mut stop: watch::Receiver<bool>,
    counters: Arc<Counters>,
) {
    let poll = config.poll_interval.max(Duration::from_millis(1));
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    loop {
        if *stop.borrow() {
            break;
        }
        let due = match im.due_commands(config.batch.max(1)).await {
            Ok(v) => v,
            Err(CoreError::Closed) => {
                warn!("the core is closed: AM delivery worker stops");
                break;
            }
            Err(e) => {
                warn!(error = %e, "cannot read the outbox");
                if pause(&mut stop, poll).await {
                    break;
                }
                continue;
            }
        };
        if due.is_empty() {
            if pause(&mut stop, poll).await {
                break;
            }
            continue;
        }
        let (results, next_retry) =
            deliver_all(&client, &config.retry, &permits, due, &counters).await;
        let mut wait = None;
        match im.record_deliveries(results).await {
            Ok(_) => {
                // Come back at once, unless everything taken is waiting to be retried.
                if let Some(r) = next_retry {
                    wait = Some((r + Duration::from_millis(2)).min(poll));
                }
            }
            Err(CoreError::Closed) => {
                warn!("the core is closed: AM delivery worker stops");
                break;
            }
            Err(e) => {
                // The commands stay pending and go out again with the same
                // ids; AM answers DUPLICATE for those it already took.
                warn!(error = %e, "cannot record delivery attempts; they will be repeated");
                wait = Some(poll);
            }
        }
        if let Some(w) = wait
            && pause(&mut stop, w).await
        {
            break;
        }
    }
    info!("AM delivery worker stopped");
}

/// Sends every command (at most `permits` at once) and turns each answer
/// into a [`Delivery`]; also returns the shortest retry wait, if every
/// command taken is to be retried.
async fn deliver_all(
    client: &AmClient,
    policy: &RetryPolicy,
    permits: &Arc<Semaphore>,
    due: Vec<DueCommand>,
    counters: &Counters,
) -> (Vec<(i64, u32, Delivery)>, Option<Duration>) {
    let mut set = JoinSet::new();
    for (i, c) in due.into_iter().enumerate() {
        let client = client.clone();
        let permits = Arc::clone(permits);
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let answer = client.send(&Command::from_due(&c)).await;
            (i, c, answer)
        });
    }
    let mut answers = Vec::with_capacity(set.len());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(a) => answers.push(a),
            Err(e) => error!(error = %e, "a delivery attempt task failed"),
        }
    }
    answers.sort_by_key(|(i, _, _)| *i);
    let mut out = Vec::with_capacity(answers.len());
    let mut all_retrying = true;
    let mut shortest: Option<Duration> = None;
    for (_, c, answer) in answers {
        counters.attempts.fetch_add(1, Ordering::Relaxed);
        let attempts = c.attempts.saturating_add(1);
        let delivery = match answer {
            Answer::Delivered(ack) => {
                debug!(id = %c.id, status = %ack.status, "command delivered");
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                all_retrying = false;
                Delivery::Delivered(ack)
            }
            Answer::Rejected(ack) => {
                warn!(id = %c.id, task_no = %c.task_no, status = %ack.status, code = %ack.code, desc = %ack.desc, "command rejected by AM");
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                all_retrying = false;
                Delivery::Rejected(ack)
            }
            Answer::Transient(error) => {
                let retry_in = retry_wait(policy, attempts);
                match retry_in {
                    Some(w) => {
                        warn!(id = %c.id, attempt = attempts, wait_ms = u64::try_from(w.as_millis()).unwrap_or(u64::MAX), error = %error, "command not delivered; retrying with the same id");
                        counters.retried.fetch_add(1, Ordering::Relaxed);
                        shortest = Some(shortest.map_or(w, |s| s.min(w)));
                    }
                    None => {
                        warn!(id = %c.id, task_no = %c.task_no, attempts, error = %error, "command not delivered and retries exhausted");
                        counters.exhausted.fetch_add(1, Ordering::Relaxed);
                        all_retrying = false;
                    }
                }
                Delivery::NotDelivered { error, retry_in }
            }
        };
        out.push((c.row_id, c.redo, delivery));
    }
    (out, if all_retrying { shortest } else { None })
}
