//! Operators' actions on tasks and the AM outbox (spec
//! inventory-sync-and-am.md §4–§5) as the operators' API takes them: redo,
//! cancel and force-finish a task, and re-drive a failed command, each with
//! a required reason, run on the writer in one transaction with its
//! operation-log row (see [`crate::lifecycle`] for the rules).

use crate::audit::{OpAction, Operation};
use crate::lifecycle::{self, OperatorAction};
use crate::model::TaskState;
use crate::operator::{Actor, OpError, required};
use crate::store::OutboxRead;
use crate::store::sqlite::HasConn;
use crate::{CoreError, Im};

impl Im {
    /// An operator's action on a task, with a reason (required), logged
    /// `MODIFY tasks <taskNo>`; returns the task's new state.
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`] for an unknown task, [`OpError::Conflict`]
    /// when its state does not allow the action, [`OpError::Invalid`]
    /// without a reason.
    pub async fn task_action(
        &self,
        actor: &Actor,
        action: OperatorAction,
        task_no: &str,
        reason: &str,
    ) -> Result<TaskState, OpError> {
        let reason = required("reason", reason)?;
        let task_no = required("task_no", task_no)?;
        let actor = actor.clone();
        let now = std::time::SystemTime::now();
        let at = lifecycle::stamp(now);
        self.on_sqlite_writer(move |w| {
            if w.task_by_no(&task_no)?.is_none() {
                return Err(OpError::NotFound(format!("no task {task_no}")));
            }
            let op = lifecycle::Op::Operator {
                action,
                task_no: task_no.clone(),
                actor: actor.account.clone(),
                reason: reason.clone(),
            };
            let state = match lifecycle::apply(w, &op, &at, now) {
                Ok(lifecycle::Reply::Task(s)) => s,
                Ok(lifecycle::Reply::Recorded(_)) => {
                    return Err(OpError::Internal("unexpected reply".into()));
                }
                Err(CoreError::Invalid(m)) => return Err(OpError::Conflict(m)),
                Err(CoreError::Storage(crate::store::StoreError::Data(m))) => {
                    return Err(OpError::Conflict(m));
                }
                Err(e) => return Err(e.into()),
            };
            crate::store::sqlite::audit::append(
                w.conn(),
                &at,
                &actor,
                &Operation::success(
                    OpAction::Modify,
                    "tasks",
                    &task_no,
                    &format!("{} -> {}: {reason}", action.as_str(), state.as_str()),
                ),
            )?;
            Ok(state)
        })
        .await
    }

    /// Re-drives a failed outbox command: its task's failed commands go out
    /// again under a new id (`…-rN`) and the task becomes `ACTIVATING`
    /// (a redo of the task). Returns the task's number and new state.
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`] for an unknown command, [`OpError::Conflict`]
    /// when it has not failed.
    pub async fn redrive_command(
        &self,
        actor: &Actor,
        command_row_id: i64,
        reason: &str,
    ) -> Result<(String, TaskState), OpError> {
        let reason = required("reason", reason)?;
        let (task_no, failed) = self
            .on_sqlite_reader(move |c| {
                let task = crate::store::sqlite::query::command_task(c, command_row_id)?;
                let state: Option<String> = rusqlite::OptionalExtension::optional(
                    c.prepare_cached("SELECT state FROM command WHERE id = ?1")?
                        .query_row([command_row_id], |r| r.get(0)),
                )?;
                Ok((task, state.as_deref() == Some("FAILED")))
            })
            .await?;
        let Some(task_no) = task_no else {
            return Err(OpError::NotFound(format!("no command {command_row_id}")));
        };
        if !failed {
            return Err(OpError::Conflict(format!(
                "command {command_row_id} has not failed: nothing to re-drive"
            )));
        }
        let state = self
            .task_action(actor, OperatorAction::Redo, &task_no, &reason)
            .await?;
        Ok((task_no, state))
    }
}
