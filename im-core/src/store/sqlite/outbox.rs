//! The activation outbox and task lifecycle on SQLite (tables `task`,
//! `task_history`, `command`).

use super::{HasConn, SqliteWriter, backend};
use crate::lifecycle::{CommandView, DueCommand, HistoryEntry, wire_id};
use crate::model::{CommandState, CommandType, ServiceType, TaskState};
use crate::store::{
    CommandRec, CommandUpdate, OutboxRead, OutboxWrite, StoreError, StoreResult, TaskRec,
};
use rusqlite::{OptionalExtension, Row, params};

fn parsed<T>(r: &Row<'_>, i: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unexpected value {s:?}").into(),
        )
    })
}

fn params_col(r: &Row<'_>, i: usize) -> rusqlite::Result<Vec<(String, String)>> {
    let s: String = r.get(i)?;
    serde_json::from_str::<Vec<(String, String)>>(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

/// Due: pending, next attempt unset or reached, no earlier pending command of
/// the same service, and for a DEACTIVATE no earlier pending command of one
/// of the service's add-ons (their DEACTIVATE goes first).
const DUE_SQL: &str = "\
SELECT c.id, c.cmd_id, c.redo, c.type, c.service_type, c.params, c.attempts, t.task_no, t.flow_id \
FROM command c JOIN task t ON t.id = c.task_id \
WHERE c.state = 'PENDING' \
  AND (c.next_attempt IS NULL OR c.next_attempt <= ?1) \
  AND NOT EXISTS (SELECT 1 FROM command e \
                  WHERE e.service_id = c.service_id AND e.id < c.id AND e.state = 'PENDING') \
  AND NOT (c.type = 'DEACTIVATE' AND EXISTS ( \
        SELECT 1 FROM service s JOIN command a ON a.service_id = s.id \
        WHERE s.parent_id = c.service_id AND a.id < c.id AND a.state = 'PENDING')) \
ORDER BY c.id LIMIT ?2";

const TASK_COLS: &str =
    "id, task_no, flow_id, popid, state, items, account, created, updated FROM task";

fn task_row(r: &Row<'_>) -> rusqlite::Result<TaskRec> {
    Ok(TaskRec {
        id: r.get(0)?,
        task_no: r.get(1)?,
        flow_id: r.get(2)?,
        popid: r.get(3)?,
        state: parsed(r, 4, TaskState::parse)?,
        items: r.get(5)?,
        account: r.get(6)?,
        created: r.get(7)?,
        updated: r.get(8)?,
    })
}

impl<T: HasConn> OutboxRead for T {
    fn due_commands(&mut self, now: &str, limit: usize) -> StoreResult<Vec<DueCommand>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut st = self.conn().prepare_cached(DUE_SQL).map_err(backend)?;
        let rows = st
            .query_map(params![now, limit], |r| {
                let cmd_id: String = r.get(1)?;
                let redo: u32 = r.get(2)?;
                Ok(DueCommand {
                    row_id: r.get(0)?,
                    id: wire_id(&cmd_id, redo),
                    redo,
                    kind: parsed(r, 3, CommandType::parse)?,
                    service_type: parsed(r, 4, ServiceType::parse)?,
                    params: params_col(r, 5)?,
                    attempts: r.get(6)?,
                    task_no: r.get(7)?,
                    flow_id: r.get(8)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn task_by_no(&mut self, task_no: &str) -> StoreResult<Option<TaskRec>> {
        self.conn()
            .prepare_cached(&format!("SELECT {TASK_COLS} WHERE task_no = ?1"))
            .map_err(backend)?
            .query_row([task_no], task_row)
            .optional()
            .map_err(backend)
    }

    fn task_by_id(&mut self, id: i64) -> StoreResult<Option<TaskRec>> {
        self.conn()
            .prepare_cached(&format!("SELECT {TASK_COLS} WHERE id = ?1"))
            .map_err(backend)?
            .query_row([id], task_row)
            .optional()
            .map_err(backend)
    }

    fn command_rec(&mut self, id: i64) -> StoreResult<Option<CommandRec>> {
        self.conn()
            .prepare_cached(
                "SELECT id, cmd_id, task_id, state, redo, attempts FROM command WHERE id = ?1",
            )
            .map_err(backend)?
            .query_row([id], |r| {
                Ok(CommandRec {
                    id: r.get(0)?,
                    cmd_id: r.get(1)?,
                    task_id: r.get(2)?,
                    state: parsed(r, 3, CommandState::parse)?,
                    redo: r.get(4)?,
                    attempts: r.get(5)?,
                })
            })
            .optional()
            .map_err(backend)
    }

    fn task_commands(&mut self, task_id: i64) -> StoreResult<Vec<CommandView>> {
        let mut st = self
            .conn()
            .prepare_cached(
                "SELECT id, cmd_id, seq, service_id, type, service_type, state, attempts, redo, \
                 next_attempt, ack_status, ack_code, ack_desc, params, created, updated \
                 FROM command WHERE task_id = ?1 ORDER BY seq",
            )
            .map_err(backend)?;
        let rows = st
            .query_map([task_id], |r| {
                let cmd_id: String = r.get(1)?;
                let redo: u32 = r.get(8)?;
                Ok(CommandView {
                    row_id: r.get(0)?,
                    id: wire_id(&cmd_id, redo),
                    cmd_id,
                    seq: r.get(2)?,
                    service_id: r.get(3)?,
                    kind: parsed(r, 4, CommandType::parse)?,
                    service_type: parsed(r, 5, ServiceType::parse)?,
                    state: parsed(r, 6, CommandState::parse)?,
                    attempts: r.get(7)?,
                    redo,
                    next_attempt: r.get(9)?,
                    ack_status: r.get(10)?,
                    ack_code: r.get(11)?,
                    ack_desc: r.get(12)?,
                    params: params_col(r, 13)?,
                    created: r.get(14)?,
                    updated: r.get(15)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn task_history(&mut self, task_id: i64) -> StoreResult<Vec<HistoryEntry>> {
        let mut st = self
            .conn()
            .prepare_cached(
                "SELECT at, from_state, to_state, action, actor, reason FROM task_history \
                 WHERE task_id = ?1 ORDER BY id",
            )
            .map_err(backend)?;
        let rows = st
            .query_map([task_id], |r| {
                let from: Option<String> = r.get(1)?;
                let from = match from {
                    None => None,
                    Some(s) => Some(TaskState::parse(&s).ok_or_else(|| {
                        rusqlite::Error::FromSqlConversionFailure(
                            1,
                            rusqlite::types::Type::Text,
                            format!("unexpected value {s:?}").into(),
                        )
                    })?),
                };
                Ok(HistoryEntry {
                    at: r.get(0)?,
                    from,
                    to: parsed(r, 2, TaskState::parse)?,
                    action: r.get(3)?,
                    actor: r.get(4)?,
                    reason: r.get(5)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn undelivered_commands(&mut self, task_id: i64) -> StoreResult<u64> {
        let n: i64 = self
            .conn()
            .prepare_cached(
                "SELECT count(*) FROM command WHERE task_id = ?1 AND state IN ('PENDING', 'FAILED')",
            )
            .map_err(backend)?
            .query_row([task_id], |r| r.get(0))
            .map_err(backend)?;
        u64::try_from(n).map_err(|_| StoreError::Data(format!("negative count {n}")))
    }
}

impl OutboxWrite for SqliteWriter {
    fn set_task_state(&mut self, task_id: i64, state: TaskState, at: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached("UPDATE task SET state = ?2, updated = ?3 WHERE id = ?1")
            .map_err(backend)?
            .execute(params![task_id, state.as_str(), at])
            .map_err(backend)?;
        Ok(())
    }

    fn update_command(&mut self, id: i64, u: &CommandUpdate<'_>) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE command SET state = ?2, attempts = ?3, next_attempt = ?4, ack_status = ?5, \
                 ack_code = ?6, ack_desc = ?7, updated = ?8 WHERE id = ?1",
            )
            .map_err(backend)?
            .execute(params![
                id,
                u.state.as_str(),
                u.attempts,
                u.next_attempt,
                u.ack_status,
                u.ack_code,
                u.ack_desc,
                u.at
            ])
            .map_err(backend)?;
        Ok(())
    }

    fn redo_failed_commands(&mut self, task_id: i64, at: &str) -> StoreResult<u64> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE command SET state = 'PENDING', redo = redo + 1, attempts = 0, \
                 next_attempt = NULL, updated = ?2 WHERE task_id = ?1 AND state = 'FAILED'",
            )
            .map_err(backend)?
            .execute(params![task_id, at])
            .map_err(backend)?;
        Ok(n as u64)
    }

    fn drop_pending_commands(&mut self, task_id: i64, at: &str) -> StoreResult<u64> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE command SET state = 'DROPPED', next_attempt = NULL, updated = ?2 \
                 WHERE task_id = ?1 AND state = 'PENDING'",
            )
            .map_err(backend)?
            .execute(params![task_id, at])
            .map_err(backend)?;
        Ok(n as u64)
    }
}
