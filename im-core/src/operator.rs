//! What every operator query and change shares: who acts ([`Actor`]), page
//! bounds ([`PageRequest`], [`Page`]) and the error with stable codes
//! ([`OpError`]). The wire format (HTTP, JSON) is the server's business;
//! these are plain typed values.

use crate::CoreError;
use crate::store::StoreError;
use std::fmt;

/// Largest page any operator query returns.
pub const MAX_PAGE: usize = 500;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: usize = 50;
/// Longest free text an operator query or change takes (a search value, a
/// reason, a name).
pub const MAX_TEXT: usize = 256;

/// Who acts: the account (as text, as the logs keep it) and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The account's login as stored.
    pub account: String,
    /// The caller's IP address (empty when not over a network).
    pub ip: String,
}

impl Actor {
    /// An actor of `account` calling from `ip`.
    pub fn new(account: impl Into<String>, ip: impl Into<String>) -> Actor {
        Actor {
            account: account.into(),
            ip: ip.into(),
        }
    }
}

/// Which page of a list: at most `limit` rows with ids below `before`
/// (newest first), so that paging is stable while rows are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows wanted (1 to [`MAX_PAGE`]).
    pub limit: usize,
    /// Only rows with a smaller id (the `next_before` of the previous page).
    pub before: Option<i64>,
}

impl Default for PageRequest {
    fn default() -> PageRequest {
        PageRequest {
            limit: DEFAULT_PAGE,
            before: None,
        }
    }
}

impl PageRequest {
    /// A page of `limit` rows before `before`.
    ///
    /// # Errors
    ///
    /// [`OpError::Invalid`] when `limit` is 0 or over [`MAX_PAGE`].
    ///
    /// ```
    /// use im_core::operator::PageRequest;
    /// assert!(PageRequest::new(10, None).is_ok());
    /// assert!(PageRequest::new(0, None).is_err());
    /// assert!(PageRequest::new(100_000, None).is_err());
    /// ```
    pub fn new(limit: usize, before: Option<i64>) -> Result<PageRequest, OpError> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(OpError::Invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        Ok(PageRequest { limit, before })
    }

    /// The limit as SQL takes it, one more than asked (to know whether a
    /// next page exists).
    pub(crate) fn sql_limit(&self) -> i64 {
        i64::try_from(self.limit.clamp(1, MAX_PAGE) + 1).unwrap_or(i64::MAX)
    }

    /// The `before` bound as SQL takes it.
    pub(crate) fn sql_before(&self) -> i64 {
        self.before.unwrap_or(i64::MAX)
    }
}

/// One page of rows, newest first, and the cursor of the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Pass as `before` for the next page; `None` on the last page.
    pub next_before: Option<i64>,
}

impl<T> Page<T> {
    /// Cuts the one extra row a query fetched and sets the cursor from the
    /// id of the last row kept.
    pub(crate) fn from_rows(
        mut rows: Vec<T>,
        page: &PageRequest,
        id: impl Fn(&T) -> i64,
    ) -> Page<T> {
        let more = rows.len() > page.limit;
        rows.truncate(page.limit);
        let next_before = if more { rows.last().map(id) } else { None };
        Page {
            items: rows,
            next_before,
        }
    }
}

/// Why an operator's query or change failed. Each variant has a stable
/// [`OpError::code`]; messages name what is wrong but never SQL or internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// Nothing of that name or number.
    #[error("{0}")]
    NotFound(String),
    /// A value is missing, malformed or out of its bounds.
    #[error("{0}")]
    Invalid(String),
    /// The change contradicts the current state (exists already, a task in
    /// a state that does not allow it).
    #[error("{0}")]
    Conflict(String),
    /// The resource is held by a service and cannot be removed or changed so.
    #[error("{0}")]
    ResourceHeld(String),
    /// The core is busy or closed; try again later.
    #[error("the service is busy or stopping; try again later")]
    Unavailable,
    /// Storage failed; the details are in the server's log only.
    #[error("internal error")]
    Internal(String),
}

impl OpError {
    /// The stable code: `NOT_FOUND`, `INVALID_REQUEST`, `CONFLICT`,
    /// `RESOURCE_HELD`, `UNAVAILABLE`, `INTERNAL`.
    pub const fn code(&self) -> &'static str {
        match self {
            OpError::NotFound(_) => "NOT_FOUND",
            OpError::Invalid(_) => "INVALID_REQUEST",
            OpError::Conflict(_) => "CONFLICT",
            OpError::ResourceHeld(_) => "RESOURCE_HELD",
            OpError::Unavailable => "UNAVAILABLE",
            OpError::Internal(_) => "INTERNAL",
        }
    }

    /// What may be shown to the caller (never internals).
    pub fn public_message(&self) -> String {
        match self {
            OpError::Internal(_) => "internal error".into(),
            e => e.to_string(),
        }
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> OpError {
        match e {
            StoreError::Constraint(m) => {
                tracing::info!(error = %m, "constraint refused an operator change");
                OpError::Conflict("the change breaks a rule of the inventory (a duplicate key or an unknown reference)".into())
            }
            e => OpError::Internal(e.to_string()),
        }
    }
}

impl From<CoreError> for OpError {
    fn from(e: CoreError) -> OpError {
        match e {
            CoreError::Storage(s) => s.into(),
            CoreError::Invalid(m) => OpError::Invalid(m),
            CoreError::Busy | CoreError::Closed => OpError::Unavailable,
            CoreError::KeyFile(e) => OpError::Internal(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> OpError {
        crate::store::sqlite::backend(e).into()
    }
}

/// Checks a free-text value: trimmed, at most [`MAX_TEXT`] characters, no
/// control characters; `what` names it in the error.
pub(crate) fn text(what: &str, value: &str) -> Result<String, OpError> {
    let v = value.trim();
    if v.chars().count() > MAX_TEXT || v.chars().any(char::is_control) {
        return Err(OpError::Invalid(format!(
            "{what}: at most {MAX_TEXT} characters, without control characters"
        )));
    }
    Ok(v.to_string())
}

/// [`text`] that must not be empty.
pub(crate) fn required(what: &str, value: &str) -> Result<String, OpError> {
    let v = text(what, value)?;
    if v.is_empty() {
        return Err(OpError::Invalid(format!("{what} is required")));
    }
    Ok(v)
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.account, self.ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cut_and_point_to_the_next() {
        let p = PageRequest::new(2, None).expect("valid");
        let page = Page::from_rows(vec![9_i64, 8, 7], &p, |v| *v);
        assert_eq!(page.items, vec![9, 8]);
        assert_eq!(page.next_before, Some(8));
        let last = Page::from_rows(vec![9_i64, 8], &p, |v| *v);
        assert_eq!(last.next_before, None);
        assert_eq!(p.sql_limit(), 3);
    }

    #[test]
    fn texts_are_bounded() {
        assert_eq!(text("x", "  a ").expect("ok"), "a");
        assert!(text("x", &"a".repeat(MAX_TEXT + 1)).is_err());
        assert!(text("x", "a\u{0}").is_err());
        assert!(required("reason", " ").is_err());
    }

    #[test]
    fn internal_details_stay_inside() {
        let e = OpError::Internal("no such table: x".into());
        assert_eq!(e.public_message(), "internal error");
        assert_eq!(e.code(), "INTERNAL");
    }
}
