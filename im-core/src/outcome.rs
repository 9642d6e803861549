//! The typed answer to one call: what the SOAP layer writes as `<result>`.

use crate::ErrorCode;

/// Whether a duplicate call carried the same content as the accepted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateContent {
    /// Same `popid` and item fields (after name matching and trimming).
    Same,
    /// A flowId reused for different content.
    Different,
}

impl DuplicateContent {
    /// `SAME` or `DIFFERENT`, as written on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            DuplicateContent::Same => "SAME",
            DuplicateContent::Different => "DIFFERENT",
        }
    }
}

/// A service as a Query lists it (never with protected values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceView {
    /// PPPoE login.
    pub user_name: String,
    /// `ADSL`, `VDSL`, `FTTH`, `IPTV`, `IP-Phone`, `OptionPack`, `Domain/Email`.
    pub service_type: String,
    /// `ADSL`, `VDSL` or `FTTH`.
    pub cover_type: String,
    /// `ACTIVE` or `INACTIVE`.
    pub state: String,
    /// The customer's account number.
    pub account_number: String,
    /// The customer's name (any Unicode).
    pub customer_name: String,
    /// Service / line number.
    pub serviceno: String,
    /// Speed in kbit/s, empty when none.
    pub speed: String,
    /// Held port as `dslam/frame/slot/port`, or empty.
    pub port: String,
    /// Held ONT serial, or empty.
    pub ont_sn: String,
    /// OLT name, or empty.
    pub olt: String,
    /// Compound code, or empty.
    pub compound: String,
    /// VLAN id, or empty.
    pub vlan: String,
    /// Whether a sync flagged a resource conflict on this service.
    pub conflict: bool,
    /// Last change, RFC 3339 UTC.
    pub updated: String,
}

/// The result of one `bussItem`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemResult {
    /// 1-based position of the item in the call.
    pub seq: usize,
    /// The opertype in its contract spelling (`Install`), or as sent when unknown.
    pub opertype: String,
    /// The serviceType in its contract spelling, or as sent when unknown.
    pub service_type: String,
    /// The item's `UserName`.
    pub user_name: String,
    /// `Some(code)` for an item that was judged; `None` (written empty) for
    /// the items of a refused call other than the one that failed.
    pub error_code: Option<ErrorCode>,
    /// Held port after the call, `dslam/frame/slot/port`, or empty.
    pub port: String,
    /// Held ONT serial after the call, or empty.
    pub ont_sn: String,
    /// VLAN after the call, or empty.
    pub vlan: String,
    /// The service's state after the call (`ACTIVE`/`INACTIVE`), or empty.
    pub state: String,
    /// For a Query: every matching service, active or not.
    pub services: Vec<ServiceView>,
}

/// The typed outcome of one call.
///
/// ```
/// use im_core::{ErrorCode, Outcome};
/// let o = Outcome::refused(ErrorCode::MissingField, "no form", "");
/// assert_eq!(o.return_code(), 1);
/// assert_eq!(o.error_code.code(), -1001);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `Success` or the refusal's code.
    pub error_code: ErrorCode,
    /// `success`, or a description naming the item and field (never a secret).
    pub error_desc: String,
    /// The call's flowId as sent (trimmed), possibly empty.
    pub flow_id: String,
    /// The task created (or, on -1003, the task the earlier call created).
    pub task_no: Option<String>,
    /// Per-item results; empty when the call failed before its items.
    pub items: Vec<ItemResult>,
    /// On -1003: whether the earlier call carried the same content.
    pub duplicate_content: Option<DuplicateContent>,
}

impl Outcome {
    /// A refusal before any item was judged.
    pub fn refused(
        code: ErrorCode,
        desc: impl Into<String>,
        flow_id: impl Into<String>,
    ) -> Outcome {
        Outcome {
            error_code: code,
            error_desc: desc.into(),
            flow_id: flow_id.into(),
            task_no: None,
            items: Vec::new(),
            duplicate_content: None,
        }
    }

    /// The answer for a call without a usable form (-1001): payload empty,
    /// not XML, root not `form`, or over the form limits.
    pub fn no_form(reason: impl Into<String>) -> Outcome {
        Outcome::refused(ErrorCode::MissingField, reason, "")
    }

    /// The answer when nothing could be stored (-9999).
    pub fn internal(flow_id: impl Into<String>) -> Outcome {
        Outcome::refused(
            ErrorCode::Internal,
            "internal error: nothing was stored, retry with the same flowId",
            flow_id,
        )
    }

    /// `returnCode`: 0 on success, 1 otherwise.
    pub fn return_code(&self) -> u8 {
        self.error_code.return_code()
    }

    /// Whether the call was accepted.
    pub fn is_success(&self) -> bool {
        self.error_code == ErrorCode::Success
    }
}
