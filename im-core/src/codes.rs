//! The error codes of the OM → IM contract (`errorCode` in every answer).

use std::fmt;

/// One `errorCode` of the EgyptWorkSheetAll contract.
///
/// `Success` is `0`; every other variant is a refusal with `returnCode` 1.
///
/// ```
/// use im_core::ErrorCode;
/// assert_eq!(ErrorCode::DuplicateFlowId.code(), -1003);
/// assert_eq!(ErrorCode::from_code(-1009), Some(ErrorCode::ResourceUnavailable));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    /// `0`: received, validated, stored, inventory updated.
    Success,
    /// `-1001`: a required field is missing, or there is no usable form.
    MissingField,
    /// `-1002`: `authusername`/`authpassword` wrong, or the account disabled.
    AuthFailed,
    /// `-1003`: a call with this flowId was already accepted.
    DuplicateFlowId,
    /// `-1004`: invalid `opertype`.
    InvalidOpertype,
    /// `-1005`: `coverType` or `serviceType` not supported.
    UnsupportedService,
    /// `-1006`: invalid field value (format, length, two values for one field, …).
    InvalidValue,
    /// `-1007`: unknown reference (POP, exchange, DSLAM, port, compound, OLT, VLAN).
    UnknownReference,
    /// `-1008`: service state conflict.
    StateConflict,
    /// `-1009`: resource unavailable.
    ResourceUnavailable,
    /// `-9999`: internal error; nothing was stored, retry with the same flowId.
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of the contract's table.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::Success,
        ErrorCode::MissingField,
        ErrorCode::AuthFailed,
        ErrorCode::DuplicateFlowId,
        ErrorCode::InvalidOpertype,
        ErrorCode::UnsupportedService,
        ErrorCode::InvalidValue,
        ErrorCode::UnknownReference,
        ErrorCode::StateConflict,
        ErrorCode::ResourceUnavailable,
        ErrorCode::Internal,
    ];

    /// The numeric `errorCode` written on the wire.
    pub const fn code(self) -> i32 {
        match self {
            ErrorCode::Success => 0,
            ErrorCode::MissingField => -1001,
            ErrorCode::AuthFailed => -1002,
            ErrorCode::DuplicateFlowId => -1003,
            ErrorCode::InvalidOpertype => -1004,
            ErrorCode::UnsupportedService => -1005,
            ErrorCode::InvalidValue => -1006,
            ErrorCode::UnknownReference => -1007,
            ErrorCode::StateConflict => -1008,
            ErrorCode::ResourceUnavailable => -1009,
            ErrorCode::Internal => -9999,
        }
    }

    /// The code for a numeric `errorCode`, if it is one of the contract's.
    pub fn from_code(code: i32) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// `returnCode`: `0` for success, `1` for everything else.
    pub const fn return_code(self) -> u8 {
        match self {
            ErrorCode::Success => 0,
            _ => 1,
        }
    }

    /// Whether OM should retry the call (with the same flowId): only `-9999`.
    pub const fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Internal)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}
