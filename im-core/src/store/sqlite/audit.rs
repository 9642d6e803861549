//! SQL of the audit logs: appending to the operation log, and the filtered,
//! paged reads of the operation, resource and login logs.

use crate::audit::{
    LogFilter, Operation, OperationEntry, ResourceLogEntry, auth_mode, login_event,
};
use crate::login::LoginLogEntry;
use crate::operator::{Actor, OpError, Page};
use rusqlite::{Connection, params};

/// Longest detail text kept.
const MAX_DETAIL: usize = 1000;

fn clip(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Appends one operation-log row.
pub(crate) fn append(
    conn: &Connection,
    at: &str,
    actor: &Actor,
    op: &Operation,
) -> Result<(), OpError> {
    conn.prepare_cached(
        "INSERT INTO operation_log (at, account, ip, action, area, target, outcome, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        at,
        clip(&actor.account, 128),
        clip(&actor.ip, 64),
        op.action.as_str(),
        clip(&op.area, 64),
        clip(&op.target, 256),
        op.outcome.as_str(),
        clip(&op.detail, MAX_DETAIL),
    ])?;
    Ok(())
}

/// A page of the operation log.
pub(crate) fn operation_log(
    conn: &Connection,
    f: &LogFilter,
) -> Result<Page<OperationEntry>, OpError> {
    let rows = conn
        .prepare_cached(
            "SELECT id, at, account, ip, action, area, target, outcome, detail FROM operation_log \
             WHERE id < ?1 AND (?2 IS NULL OR account = ?2 COLLATE NOCASE) \
             AND (?3 IS NULL OR action = upper(?3) OR outcome = upper(?3)) AND (?4 IS NULL OR ip = ?4) \
             AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at < ?6) \
             ORDER BY id DESC LIMIT ?7",
        )?
        .query_map(
            params![f.page.sql_before(), f.account, f.kind, f.ip, f.from, f.to, f.page.sql_limit()],
            |r| {
                Ok(OperationEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    account: r.get(2)?,
                    ip: r.get(3)?,
                    action: r.get(4)?,
                    area: r.get(5)?,
                    target: r.get(6)?,
                    outcome: r.get(7)?,
                    detail: r.get(8)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, &f.page, |e| e.id))
}

/// A page of the resource operation log.
pub(crate) fn resource_log(
    conn: &Connection,
    f: &LogFilter,
) -> Result<Page<ResourceLogEntry>, OpError> {
    let rows = conn
        .prepare_cached(
            "SELECT id, at, actor, ip, resource_type, code, name, operation, old_values, new_values \
             FROM resource_log \
             WHERE id < ?1 AND (?2 IS NULL OR actor = ?2 COLLATE NOCASE) \
             AND (?3 IS NULL OR operation = upper(?3) OR resource_type = lower(?3)) \
             AND (?4 IS NULL OR ip = ?4) AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at < ?6) \
             ORDER BY id DESC LIMIT ?7",
        )?
        .query_map(
            params![f.page.sql_before(), f.account, f.kind, f.ip, f.from, f.to, f.page.sql_limit()],
            |r| {
                Ok(ResourceLogEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    ip: r.get(3)?,
                    resource_type: r.get(4)?,
                    code: r.get(5)?,
                    name: r.get(6)?,
                    operation: r.get(7)?,
                    old_values: r.get(8)?,
                    new_values: r.get(9)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, &f.page, |e| e.id))
}

/// A page of the login log.
pub(crate) fn login_log(conn: &Connection, f: &LogFilter) -> Result<Page<LoginLogEntry>, OpError> {
    let rows = conn
        .prepare_cached(
            "SELECT id, at, account, ip, event, outcome, reason, auth_mode FROM login_log \
             WHERE id < ?1 AND (?2 IS NULL OR account = ?2 COLLATE NOCASE) \
             AND (?3 IS NULL OR event = upper(?3) OR outcome = upper(?3)) \
             AND (?4 IS NULL OR ip = ?4) AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at < ?6) \
             ORDER BY id DESC LIMIT ?7",
        )?
        .query_map(
            params![
                f.page.sql_before(),
                f.account,
                f.kind,
                f.ip,
                f.from,
                f.to,
                f.page.sql_limit()
            ],
            |r| {
                let event: String = r.get(4)?;
                let outcome: String = r.get(5)?;
                let mode: Option<String> = r.get(7)?;
                Ok(LoginLogEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    account: r.get(2)?,
                    ip: r.get(3)?,
                    event: login_event(&event),
                    success: outcome == "SUCCESS",
                    reason: r.get(6)?,
                    auth_mode: auth_mode(mode.as_deref()),
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, &f.page, |e| e.id))
}
