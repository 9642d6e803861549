//! The audit logs as operators read them (spec auth-and-config.md, "Audit
//! logs"): the operation log (every action through the operators' API),
//! the resource operation log (every inventory change, by hand or by a
//! sync, with old and new values) and the login log. All three are
//! append-only: nothing here changes or deletes a row, and the database's
//! triggers refuse it. Reads are filtered and always paged.

use crate::Im;
use crate::login::{AuthMode, LoginEvent, LoginLogEntry};
use crate::operator::{Actor, OpError, Page, PageRequest, text};

/// What an operator did, as the operation log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpAction {
    /// Created something.
    Add,
    /// Changed something (including task actions).
    Modify,
    /// Removed or disabled something.
    Delete,
    /// Read something.
    Query,
    /// Imported data.
    Import,
    /// Exported data.
    Export,
    /// Logged in (a session opened).
    Login,
    /// Logged out (a session closed).
    Logout,
}

impl OpAction {
    /// Every action.
    pub const ALL: [OpAction; 8] = [
        OpAction::Add,
        OpAction::Modify,
        OpAction::Delete,
        OpAction::Query,
        OpAction::Import,
        OpAction::Export,
        OpAction::Login,
        OpAction::Logout,
    ];

    /// `ADD`, `MODIFY`, `DELETE`, `QUERY`, `IMPORT`, `EXPORT`, `LOGIN`, `LOGOUT`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OpAction::Add => "ADD",
            OpAction::Modify => "MODIFY",
            OpAction::Delete => "DELETE",
            OpAction::Query => "QUERY",
            OpAction::Import => "IMPORT",
            OpAction::Export => "EXPORT",
            OpAction::Login => "LOGIN",
            OpAction::Logout => "LOGOUT",
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpOutcome {
    /// Done.
    Success,
    /// Tried and failed (invalid, conflict, not found, error).
    Failure,
    /// Refused: not authenticated or not permitted.
    Denied,
}

impl OpOutcome {
    /// `SUCCESS`, `FAILURE`, `DENIED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OpOutcome::Success => "SUCCESS",
            OpOutcome::Failure => "FAILURE",
            OpOutcome::Denied => "DENIED",
        }
    }
}

/// One operation to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// What was done.
    pub action: OpAction,
    /// Where: an area or object kind (`tasks`, `inventory/port`, `users`).
    pub area: String,
    /// On what: a task number, a resource code, a login, a search.
    pub target: String,
    /// How it ended.
    pub outcome: OpOutcome,
    /// A short description (an error code, a reason); never a secret.
    pub detail: String,
}

impl Operation {
    /// A successful operation.
    pub fn success(action: OpAction, area: &str, target: &str, detail: &str) -> Operation {
        Operation {
            action,
            area: area.to_string(),
            target: target.to_string(),
            outcome: OpOutcome::Success,
            detail: detail.to_string(),
        }
    }
}

/// One row of the operation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationEntry {
    /// Row id (ascending with time).
    pub id: i64,
    /// When (RFC 3339 UTC).
    pub at: String,
    /// Who (as text).
    pub account: String,
    /// From where.
    pub ip: String,
    /// `ADD`, `MODIFY`, …
    pub action: String,
    /// Where.
    pub area: String,
    /// On what.
    pub target: String,
    /// `SUCCESS`, `FAILURE`, `DENIED`.
    pub outcome: String,
    /// Description.
    pub detail: String,
}

/// One row of the resource operation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceLogEntry {
    /// Row id.
    pub id: i64,
    /// When.
    pub at: String,
    /// An account, or `sync:<system>:<run id>`.
    pub actor: String,
    /// From where (empty for IM's own runs).
    pub ip: String,
    /// `port`, `ont`, `exchange`, …
    pub resource_type: String,
    /// The resource's natural key as text.
    pub code: String,
    /// Its display name.
    pub name: String,
    /// `ADD`, `MODIFY`, `REMOVE`, `IMPORT`, `EXPORT`.
    pub operation: String,
    /// Old values of the changed fields (a JSON object).
    pub old_values: Option<String>,
    /// New values of the changed fields (a JSON object).
    pub new_values: Option<String>,
}

/// A filter of a log: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// The account (case-insensitive; the resource log's actor).
    pub account: Option<String>,
    /// The type: the operation log's action, the resource log's operation
    /// or resource type, the login log's event (`LOGIN`, `LOGOUT`) or
    /// outcome (`SUCCESS`, `FAILURE`).
    pub kind: Option<String>,
    /// The IP address.
    pub ip: Option<String>,
    /// From this time (inclusive; `2026-12-05` or `2026-12-05T10:00:00Z`).
    pub from: Option<String>,
    /// Until this time (exclusive).
    pub to: Option<String>,
    /// Which page.
    pub page: PageRequest,
}

impl LogFilter {
    /// Checks the values (lengths, time stamps).
    ///
    /// # Errors
    ///
    /// [`OpError::Invalid`] naming the value.
    pub fn validated(mut self) -> Result<LogFilter, OpError> {
        for (what, v) in [
            ("account", &mut self.account),
            ("type", &mut self.kind),
            ("ip", &mut self.ip),
        ] {
            if let Some(s) = v.take() {
                let s = text(what, &s)?;
                *v = (!s.is_empty()).then_some(s);
            }
        }
        for (what, v) in [("from", &mut self.from), ("to", &mut self.to)] {
            if let Some(s) = v.take() {
                *v = Some(time_bound(what, &s)?);
            }
        }
        Ok(self)
    }
}

/// Checks a time bound: a date (`2026-12-05`) or an RFC 3339 UTC time
/// (`2026-12-05T10:00:00Z`, fractions allowed); compared as text with the
/// stored stamps, which sort as time.
pub(crate) fn time_bound(what: &str, s: &str) -> Result<String, OpError> {
    let s = s.trim();
    let b = s.as_bytes();
    let date_ok = b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit);
    let rest_ok = b.len() <= 30
        && b[10.min(b.len())..]
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'T' | b':' | b'.' | b'Z'));
    if !date_ok || !rest_ok || (b.len() > 10 && b[10] != b'T') {
        return Err(OpError::Invalid(format!(
            "{what}: a date (2026-12-05) or a UTC time (2026-12-05T10:00:00Z)"
        )));
    }
    Ok(s.trim_end_matches('Z').to_string())
}

impl Im {
    /// Appends one row to the operation log (its own transaction): for
    /// queries and refused or failed calls. Successful changes log their
    /// row in their own transaction.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub async fn record_operation(&self, actor: &Actor, op: Operation) -> Result<(), OpError> {
        let actor = actor.clone();
        let at = crate::lifecycle::stamp(std::time::SystemTime::now());
        self.on_sqlite_writer(move |w| {
            use crate::store::sqlite::HasConn;
            crate::store::sqlite::audit::append(w.conn(), &at, &actor, &op)
        })
        .await
    }

    /// A page of the operation log, newest first.
    ///
    /// # Errors
    ///
    /// [`OpError::Invalid`] for a bad filter; storage failures.
    pub async fn operation_log(&self, filter: LogFilter) -> Result<Page<OperationEntry>, OpError> {
        let f = filter.validated()?;
        self.on_sqlite_reader(move |c| crate::store::sqlite::audit::operation_log(c, &f))
            .await
    }

    /// A page of the resource operation log, newest first.
    ///
    /// # Errors
    ///
    /// [`OpError::Invalid`] for a bad filter; storage failures.
    pub async fn resource_log(&self, filter: LogFilter) -> Result<Page<ResourceLogEntry>, OpError> {
        let f = filter.validated()?;
        self.on_sqlite_reader(move |c| crate::store::sqlite::audit::resource_log(c, &f))
            .await
    }

    /// A page of the login log, newest first.
    ///
    /// # Errors
    ///
    /// [`OpError::Invalid`] for a bad filter; storage failures.
    pub async fn login_log_page(&self, filter: LogFilter) -> Result<Page<LoginLogEntry>, OpError> {
        let f = filter.validated()?;
        self.on_sqlite_reader(move |c| crate::store::sqlite::audit::login_log(c, &f))
            .await
    }
}

/// Reads a login-log event.
pub(crate) fn login_event(s: &str) -> LoginEvent {
    if s == "LOGOUT" {
        LoginEvent::Logout
    } else {
        LoginEvent::Login
    }
}

/// Reads a stored auth mode.
pub(crate) fn auth_mode(s: Option<&str>) -> Option<AuthMode> {
    s.and_then(AuthMode::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds() {
        assert_eq!(
            time_bound("from", "2026-12-05").expect("date"),
            "2026-12-05"
        );
        assert_eq!(
            time_bound("from", "2026-12-05T10:00:00.5Z").expect("time"),
            "2026-12-05T10:00:00.5"
        );
        for bad in [
            "yesterday",
            "2026-12-5",
            "2026-12-05 10:00",
            "2026-12-05T10:00'--",
        ] {
            assert!(time_bound("from", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_checked() {
        let f = LogFilter {
            account: Some("  ".into()),
            kind: Some("LOGIN".into()),
            ..LogFilter::default()
        }
        .validated()
        .expect("valid");
        assert_eq!(f.account, None);
        assert_eq!(f.kind.as_deref(), Some("LOGIN"));
        let long = LogFilter {
            ip: Some("1".repeat(1000)),
            ..LogFilter::default()
        };
        assert!(long.validated().is_err());
    }
}
