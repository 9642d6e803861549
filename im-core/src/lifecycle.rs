//! The activation lifecycle (`inventory-sync-and-am.md` §4–§5): which outbox
//! commands are due for AM, what a delivery attempt changes, and the
//! operators' actions on tasks.
//!
//! Every change here runs on the single writer, each in its own savepoint of
//! one transaction, so a command's new state and its task's transition (with
//! its history row) are stored together or not at all. Nothing here touches
//! the inventory or the services: a rejected, cancelled or force-finished
//! activation leaves them as OM's work order left them.
//!
//! Task states: `RECEIVED` when accepted, `ACTIVATING` once its first
//! command was attempted, `COMPLETED` when every command is delivered,
//! `FAILED` when one is rejected or runs out of retries. Operators may redo
//! a failed task (its failed commands go out again under `…-rN` ids),
//! cancel a task or force-finish it (pending commands are dropped).

use crate::CoreError;
use crate::model::{CommandState, CommandType, ServiceType, TaskState};
use crate::store::{CommandUpdate, HistoryWrite, OutboxWrite, StoreError, TaskRec};
use std::time::{Duration, SystemTime};

/// The actor named in the history of transitions IM makes by itself.
pub const SYSTEM_ACTOR: &str = "system";

/// Longest reason or ack text stored (longer ones are cut).
pub const MAX_TEXT: usize = 1000;

/// An outbox command that is due for delivery to AM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCommand {
    /// The command's row id (what [`crate::Im::record_delivery`] takes).
    pub row_id: i64,
    /// The id AM sees: `CMD-<taskNo>-<n>`, with `-r<redo>` after a redo.
    pub id: String,
    /// How often an operator redid it (0 = never).
    pub redo: u32,
    /// `ACTIVATE`, `MODIFY` or `DEACTIVATE`.
    pub kind: CommandType,
    /// The service type.
    pub service_type: ServiceType,
    /// The task's number.
    pub task_no: String,
    /// The task's flowId.
    pub flow_id: String,
    /// The parameters, in order (never secrets).
    pub params: Vec<(String, String)>,
    /// Attempts made since it was queued or last redone.
    pub attempts: u32,
}

/// The id AM sees for a command: `cmd_id`, or `cmd_id-rN` after the N-th redo.
///
/// ```
/// use im_core::lifecycle::wire_id;
/// assert_eq!(wire_id("CMD-WS20261204000001-1", 0), "CMD-WS20261204000001-1");
/// assert_eq!(wire_id("CMD-WS20261204000001-1", 2), "CMD-WS20261204000001-1-r2");
/// ```
pub fn wire_id(cmd_id: &str, redo: u32) -> String {
    if redo == 0 {
        cmd_id.to_string()
    } else {
        format!("{cmd_id}-r{redo}")
    }
}

/// AM's acknowledgement of a command (or, for an HTTP refusal without one,
/// status `HTTP` and the status code).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    /// `OK`, `DUPLICATE`, `REJECTED` (or `HTTP` for a refusal without ack).
    pub status: String,
    /// AM's code.
    pub code: String,
    /// AM's description.
    pub desc: String,
}

/// What one delivery attempt of a command came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// AM answered `OK` or `DUPLICATE`: the command is delivered.
    Delivered(Ack),
    /// AM answered `REJECTED`, or HTTP 4xx: the command failed (no retry)
    /// and so did its task.
    Rejected(Ack),
    /// No usable answer (HTTP 5xx, connection error, time-out). Retried
    /// after `retry_in` with the same id; `None` means the retries ran out:
    /// the command failed (re-drivable by a redo) and so did its task.
    NotDelivered {
        /// What went wrong.
        error: String,
        /// Wait before the next attempt; `None` when retries are exhausted.
        retry_in: Option<Duration>,
    },
}

/// What recording a delivery attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// `false` when the command was no longer pending under that redo
    /// number (an operator dropped or redid it meanwhile): nothing changed.
    pub applied: bool,
    /// The command's state afterwards.
    pub command: CommandState,
    /// Its task's state afterwards.
    pub task: TaskState,
}

/// One outbox command of a task, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandView {
    /// Row id.
    pub row_id: i64,
    /// The id AM sees now (with `-rN` after a redo).
    pub id: String,
    /// `CMD-<taskNo>-<n>`.
    pub cmd_id: String,
    /// n, from 1 within the task.
    pub seq: u32,
    /// The service's row id.
    pub service_id: i64,
    /// `ACTIVATE`, `MODIFY` or `DEACTIVATE`.
    pub kind: CommandType,
    /// The service type.
    pub service_type: ServiceType,
    /// Delivery state.
    pub state: CommandState,
    /// Attempts since it was queued or last redone.
    pub attempts: u32,
    /// Redo number.
    pub redo: u32,
    /// When the next attempt is due (while retrying).
    pub next_attempt: Option<String>,
    /// AM's last ack status (`None` when the last attempt got no ack).
    pub ack_status: Option<String>,
    /// AM's last ack code, or the kind of the last failure.
    pub ack_code: Option<String>,
    /// AM's last ack description, or the last failure.
    pub ack_desc: Option<String>,
    /// The parameters, in order.
    pub params: Vec<(String, String)>,
    /// Queued at.
    pub created: String,
    /// Last change.
    pub updated: String,
}

/// One entry of a task's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When.
    pub at: String,
    /// State before (`None` for the creation).
    pub from: Option<TaskState>,
    /// State after.
    pub to: TaskState,
    /// What happened: `RECEIVED`, `SENT`, `DELIVERED`, `REJECTED`,
    /// `RETRIES_EXHAUSTED`, `REDO`, `CANCEL`, `FORCE_FINISH`.
    pub action: String,
    /// Who: the OM account (creation), an operator, or `system`.
    pub actor: String,
    /// Why.
    pub reason: String,
}

/// A task with its commands and full history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    /// `WSyyyyMMddNNNNNN`.
    pub task_no: String,
    /// The call's flowId.
    pub flow_id: String,
    /// POP id.
    pub popid: String,
    /// Current state.
    pub state: TaskState,
    /// The items' results as JSON (per item: seq, opertype, serviceType,
    /// UserName, service id, port, ontSn, vlan, state).
    pub items: String,
    /// The OM account that sent it.
    pub account: String,
    /// Creation time.
    pub created: String,
    /// Last change.
    pub updated: String,
    /// Its commands, in order.
    pub commands: Vec<CommandView>,
    /// Its history, oldest first; the first entry is the creation.
    pub history: Vec<HistoryEntry>,
}

impl TaskView {
    /// The states the task went through, oldest first.
    pub fn states(&self) -> Vec<TaskState> {
        self.history.iter().map(|h| h.to).collect()
    }
}

/// An operator's action on a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAction {
    /// A failed task's failed commands go out again (→ `ACTIVATING`).
    Redo,
    /// Pending commands dropped (→ `CANCELLED`).
    Cancel,
    /// Pending commands dropped (→ `COMPLETED`).
    ForceFinish,
}

impl OperatorAction {
    /// The history action name.
    pub const fn as_str(self) -> &'static str {
        match self {
            OperatorAction::Redo => "REDO",
            OperatorAction::Cancel => "CANCEL",
            OperatorAction::ForceFinish => "FORCE_FINISH",
        }
    }

    const fn target(self) -> TaskState {
        match self {
            OperatorAction::Redo => TaskState::Activating,
            OperatorAction::Cancel => TaskState::Cancelled,
            OperatorAction::ForceFinish => TaskState::Completed,
        }
    }
}

/// A change for the writer.
pub(crate) enum Op {
    /// Delivery attempts: (row id, redo number it was sent under, result).
    Record(Vec<(i64, u32, Delivery)>),
    /// An operator's action.
    Operator {
        action: OperatorAction,
        task_no: String,
        actor: String,
        reason: String,
    },
}

/// The writer's answer to an [`Op`].
pub(crate) enum Reply {
    Recorded(Vec<Recorded>),
    Task(TaskState),
}

/// Now, as stored in `next_attempt` and compared against it: RFC 3339 UTC
/// with exactly three fraction digits, so that text order is time order.
pub(crate) fn stamp(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Checks an operator's actor and reason.
pub(crate) fn check_operator(actor: &str, reason: &str) -> Result<(), CoreError> {
    if actor.trim().is_empty() {
        return Err(CoreError::Invalid(
            "an operator action needs an actor".into(),
        ));
    }
    if reason.trim().is_empty() {
        return Err(CoreError::Invalid(
            "an operator action needs a reason".into(),
        ));
    }
    Ok(())
}

/// Runs one op inside the writer's open transaction; `at` is `now` as the
/// engine writes timestamps.
pub(crate) fn apply<W: OutboxWrite + ?Sized>(
    w: &mut W,
    op: &Op,
    at: &str,
    now: SystemTime,
) -> Result<Reply, CoreError> {
    match op {
        Op::Record(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (row_id, redo, delivery) in list {
                out.push(record(w, *row_id, *redo, delivery, at, now)?);
            }
            Ok(Reply::Recorded(out))
        }
        Op::Operator {
            action,
            task_no,
            actor,
            reason,
        } => operator(w, *action, task_no, actor, reason, at).map(Reply::Task),
    }
}

fn transition<W: OutboxWrite + ?Sized>(
    w: &mut W,
    task: &mut TaskRec,
    to: TaskState,
    action: &str,
    actor: &str,
    reason: &str,
    at: &str,
) -> Result<(), StoreError> {
    if !task.state.can_become(to) {
        return Err(StoreError::Data(format!(
            "task {} cannot go from {} to {}",
            task.task_no, task.state, to
        )));
    }
    w.set_task_state(task.id, to, at)?;
    w.insert_task_history(
        task.id,
        &HistoryWrite {
            at,
            from: Some(task.state.as_str()),
            to: to.as_str(),
            action,
            actor,
            reason: clip(reason),
        },
    )?;
    task.state = to;
    Ok(())
}

fn record<W: OutboxWrite + ?Sized>(
    w: &mut W,
    row_id: i64,
    redo: u32,
    delivery: &Delivery,
    at: &str,
    now: SystemTime,
) -> Result<Recorded, CoreError> {
    let Some(cmd) = w.command_rec(row_id)? else {
        return Err(CoreError::Invalid(format!(
            "no command with row id {row_id}"
        )));
    };
    let Some(mut task) = w.task_by_id(cmd.task_id)? else {
        return Err(StoreError::Data(format!("command {row_id} has no task")).into());
    };
    if cmd.state != CommandState::Pending || cmd.redo != redo {
        return Ok(Recorded {
            applied: false,
            command: cmd.state,
            task: task.state,
        });
    }
    let attempts = cmd.attempts.saturating_add(1);
    let id = wire_id(&cmd.cmd_id, cmd.redo);
    if task.state == TaskState::Received {
        transition(
            w,
            &mut task,
            TaskState::Activating,
            "SENT",
            SYSTEM_ACTOR,
            &format!("first command sent: {id}"),
            at,
        )?;
    }
    let (state, failure_action, reason) = match delivery {
        Delivery::Delivered(ack) => {
            w.update_command(
                row_id,
                &CommandUpdate {
                    state: CommandState::Delivered,
                    attempts,
                    next_attempt: None,
                    ack_status: Some(clip(&ack.status)),
                    ack_code: Some(clip(&ack.code)),
                    ack_desc: Some(clip(&ack.desc)),
                    at,
                },
            )?;
            (CommandState::Delivered, None, String::new())
        }
        Delivery::Rejected(ack) => {
            w.update_command(
                row_id,
                &CommandUpdate {
                    state: CommandState::Failed,
                    attempts,
                    next_attempt: None,
                    ack_status: Some(clip(&ack.status)),
                    ack_code: Some(clip(&ack.code)),
                    ack_desc: Some(clip(&ack.desc)),
                    at,
                },
            )?;
            let reason = format!("{id} rejected: {} {} {}", ack.status, ack.code, ack.desc);
            (CommandState::Failed, Some("REJECTED"), reason)
        }
        Delivery::NotDelivered { error, retry_in } => match retry_in {
            Some(wait) => {
                let next = stamp(now + *wait);
                w.update_command(
                    row_id,
                    &CommandUpdate {
                        state: CommandState::Pending,
                        attempts,
                        next_attempt: Some(&next),
                        ack_status: None,
                        ack_code: Some("NOT_DELIVERED"),
                        ack_desc: Some(clip(error)),
                        at,
                    },
                )?;
                (CommandState::Pending, None, String::new())
            }
            None => {
                w.update_command(
                    row_id,
                    &CommandUpdate {
                        state: CommandState::Failed,
                        attempts,
                        next_attempt: None,
                        ack_status: None,
                        ack_code: Some("RETRIES_EXHAUSTED"),
                        ack_desc: Some(clip(error)),
                        at,
                    },
                )?;
                let reason = format!("{id} not delivered after {attempts} attempts: {error}");
                (CommandState::Failed, Some("RETRIES_EXHAUSTED"), reason)
            }
        },
    };
    match (state, failure_action) {
        (CommandState::Failed, Some(action)) if task.state == TaskState::Activating => {
            transition(
                w,
                &mut task,
                TaskState::Failed,
                action,
                SYSTEM_ACTOR,
                &reason,
                at,
            )?;
        }
        (CommandState::Delivered, _) => settle(w, &mut task, at)?,
        _ => {}
    }
    Ok(Recorded {
        applied: true,
        command: state,
        task: task.state,
    })
}

/// Completes an activating task whose commands are all delivered.
fn settle<W: OutboxWrite + ?Sized>(
    w: &mut W,
    task: &mut TaskRec,
    at: &str,
) -> Result<(), StoreError> {
    if task.state == TaskState::Activating && w.undelivered_commands(task.id)? == 0 {
        transition(
            w,
            task,
            TaskState::Completed,
            "DELIVERED",
            SYSTEM_ACTOR,
            "all commands delivered",
            at,
        )?;
    }
    Ok(())
}

fn operator<W: OutboxWrite + ?Sized>(
    w: &mut W,
    action: OperatorAction,
    task_no: &str,
    actor: &str,
    reason: &str,
    at: &str,
) -> Result<TaskState, CoreError> {
    check_operator(actor, reason)?;
    let Some(mut task) = w.task_by_no(task_no)? else {
        return Err(CoreError::Invalid(format!("no task {task_no}")));
    };
    let to = action.target();
    let allowed = match action {
        OperatorAction::Redo => task.state == TaskState::Failed,
        _ => task.state.can_become(to),
    };
    if !allowed {
        return Err(CoreError::Invalid(format!(
            "task {task_no} is {}: {} is not possible",
            task.state,
            action.as_str()
        )));
    }
    let actor = actor.trim();
    let reason = reason.trim();
    match action {
        OperatorAction::Redo => {
            w.redo_failed_commands(task.id, at)?;
        }
        OperatorAction::Cancel | OperatorAction::ForceFinish => {
            w.drop_pending_commands(task.id, at)?;
        }
    }
    transition(w, &mut task, to, action.as_str(), actor, reason, at)?;
    if action == OperatorAction::Redo {
        settle(w, &mut task, at)?;
    }
    Ok(task.state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn stamps_sort_as_time() {
        let a = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let b = a + Duration::from_millis(1);
        let c = a + Duration::from_millis(999);
        let d = a + Duration::from_secs(1);
        let s: Vec<String> = [a, b, c, d].into_iter().map(stamp).collect();
        assert_eq!(s[0], "2027-01-15T08:00:00.000Z");
        assert!(s.windows(2).all(|w| w[0] < w[1]), "{s:?}");
    }

    #[test]
    fn operators_need_actor_and_reason() {
        assert!(check_operator("ops1", "customer asked").is_ok());
        assert!(check_operator("ops1", "  ").is_err());
        assert!(check_operator("", "x").is_err());
    }

    #[test]
    fn long_texts_are_cut_on_a_char_boundary() {
        let s = "م".repeat(MAX_TEXT + 5);
        assert_eq!(clip(&s).chars().count(), MAX_TEXT);
    }
}
