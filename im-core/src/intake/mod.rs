//! Intake: every business rule of the OM → IM contract. A call goes through
//! [`credentials`] (-1002 when absent), authentication (by the engine, with
//! its credential cache), [`prepare`] (flowId, static item checks, the
//! content fingerprint and the stored request, all off the writer), and then
//! either the writer (changing calls: duplicate check, stored-data checks and
//! writes in one savepoint) or a read connection (calls of Query items only).

mod apply;
mod fields;
mod formats;
mod validate;

pub(crate) use apply::{apply_call, query_call};
pub use fields::{ItemFields, KNOWN_FIELDS, PROTECTED_FIELDS, contract_name, is_protected};
pub use formats::{is_flow_id, parse_ont_sn, parse_speed, parse_vlan};
pub use validate::{ItemFailure, ItemHead, ValidItem};

use crate::form::{Field, Form};
use crate::model::OperType;
use crate::secrets::Secrets;
use crate::{ErrorCode, ItemResult, Outcome};

/// A call that passed authentication and the flowId checks, with every item
/// judged statically. Built on the submitter's thread.
#[derive(Debug, Clone)]
pub struct PreparedCall {
    /// The flowId (trimmed).
    pub flow_id: String,
    /// The OM account that sent it.
    pub account: String,
    /// The `popid` (trimmed).
    pub popid: String,
    /// A refusal due after the duplicate check (`popid` or `bussInfo` missing).
    pub deferred: Option<ItemFailure>,
    /// What each item's result shows.
    pub heads: Vec<ItemHead>,
    /// Each item, valid or with its static failure.
    pub items: Vec<Result<ValidItem, ItemFailure>>,
    /// Keyed hash of the content (`popid` and the items' fields).
    pub fingerprint: [u8; 32],
    /// The request as stored: credentials removed, protected values encrypted.
    pub request_json: String,
    /// Whether every item is a Query (the call changes nothing).
    pub all_query: bool,
}

/// The credentials of a call: `(authusername, authpassword)`, or -1002.
pub fn credentials(form: &Form) -> Result<(&str, &str), Outcome> {
    let user = form.get("authusername");
    let password = form.get("authpassword");
    if user.is_empty() || password.is_empty() {
        return Err(Outcome::refused(
            ErrorCode::AuthFailed,
            "authentication failed: authusername and authpassword are required",
            form.get("flowId"),
        ));
    }
    Ok((user, password))
}

/// Checks the flowId and judges every item statically (after authentication).
pub fn prepare(form: &Form, account: &str, secrets: &Secrets) -> Result<PreparedCall, Outcome> {
    let flow_id = form.get("flowId");
    if flow_id.is_empty() {
        return Err(Outcome::refused(
            ErrorCode::MissingField,
            "flowId is missing",
            "",
        ));
    }
    if !formats::is_flow_id(flow_id) {
        return Err(Outcome::refused(
            ErrorCode::InvalidValue,
            "flowId must be 1-64 characters of A-Z a-z 0-9 _ . -",
            "",
        ));
    }
    let popid = form.get("popid").to_string();
    let deferred = if popid.is_empty() {
        Some(ItemFailure::new(
            ErrorCode::MissingField,
            "popid is missing",
        ))
    } else if !form.buss_info_present || form.items.is_empty() {
        Some(ItemFailure::new(
            ErrorCode::MissingField,
            "bussInfo has no bussItem",
        ))
    } else {
        None
    };
    let merged: Vec<ItemFields> = form
        .items
        .iter()
        .map(|it| ItemFields::merge(it.fields.iter().chain(&it.attrs)))
        .collect();
    let fingerprint = fingerprint_of(form.get("popid"), &merged, secrets);
    let mut heads = Vec::with_capacity(merged.len());
    let mut items = Vec::with_capacity(merged.len());
    let mut all_query = !merged.is_empty();
    for (i, fields) in merged.into_iter().enumerate() {
        all_query &= OperType::parse(fields.get("opertype")) == Some(OperType::Query);
        let (head, r) = validate::check_fields(i + 1, fields, secrets);
        heads.push(head);
        items.push(r);
    }
    Ok(PreparedCall {
        flow_id: flow_id.to_string(),
        account: account.to_string(),
        popid,
        deferred,
        heads,
        fingerprint,
        request_json: stored_request(form, secrets),
        items,
        all_query,
    })
}

/// The content fingerprint: `popid` and each item's non-empty fields by
/// canonical name (order and attrList shape do not matter), keyed-hashed.
pub fn fingerprint(form: &Form, secrets: &Secrets) -> [u8; 32] {
    let merged: Vec<ItemFields> = form
        .items
        .iter()
        .map(|it| ItemFields::merge(it.fields.iter().chain(&it.attrs)))
        .collect();
    fingerprint_of(form.get("popid"), &merged, secrets)
}

fn fingerprint_of(popid: &str, items: &[ItemFields], secrets: &Secrets) -> [u8; 32] {
    let mut buf = Vec::with_capacity(512);
    let mut put = |s: &str| {
        buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
        buf.extend_from_slice(s.as_bytes());
    };
    put(popid);
    for f in items {
        put("\u{1}item");
        for (key, _, value) in f.non_empty() {
            put(key);
            put(value);
        }
    }
    secrets.fingerprint(&buf)
}

fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

/// The request as stored with its task: form fields without the credentials,
/// items with their fields and attrList entries, protected values encrypted
/// (`enc:` + hex).
pub fn stored_request(form: &Form, secrets: &Secrets) -> String {
    use std::borrow::Cow;
    // Serialised straight from borrowed fields (keys in the order the
    // stored format has always had: `form`, `items`; `attrs`, `fields`).
    #[derive(serde::Serialize)]
    struct Stored<'a> {
        form: Vec<[Cow<'a, str>; 2]>,
        items: Vec<StoredItem<'a>>,
    }
    #[derive(serde::Serialize)]
    struct StoredItem<'a> {
        attrs: Vec<[Cow<'a, str>; 2]>,
        fields: Vec<[Cow<'a, str>; 2]>,
    }
    fn conv<'a>(fields: &'a [Field], secrets: &Secrets) -> Vec<[Cow<'a, str>; 2]> {
        fields
            .iter()
            .filter(|f| {
                !(crate::names::same(&f.name, "authpassword")
                    || crate::names::same(&f.name, "authusername"))
            })
            .map(|f| {
                let v = if is_protected(&f.name) && !f.value.trim().is_empty() {
                    Cow::Owned(format!("enc:{}", hex(&secrets.encrypt(f.value.trim()))))
                } else {
                    Cow::Borrowed(f.value.as_str())
                };
                [Cow::Borrowed(f.name.as_str()), v]
            })
            .collect()
    }
    let stored = Stored {
        form: conv(&form.fields, secrets),
        items: form
            .items
            .iter()
            .map(|it| StoredItem {
                attrs: conv(&it.attrs, secrets),
                fields: conv(&it.fields, secrets),
            })
            .collect(),
    };
    serde_json::to_string(&stored).unwrap_or_default()
}

/// The outcome of a call whose item `failed` (0-based) failed: that item
/// carries its code, the others an empty one; nothing was stored.
pub(crate) fn item_results_failed(call: &PreparedCall, failed: usize, f: ItemFailure) -> Outcome {
    let items = call
        .heads
        .iter()
        .enumerate()
        .map(|(i, h)| ItemResult {
            seq: i + 1,
            opertype: h.opertype.clone(),
            service_type: h.service_type.clone(),
            user_name: h.user_name.clone(),
            error_code: (i == failed).then_some(f.code),
            ..ItemResult::default()
        })
        .collect();
    Outcome {
        error_code: f.code,
        error_desc: format!("item {}: {}", failed + 1, f.desc),
        flow_id: call.flow_id.clone(),
        task_no: None,
        items,
        duplicate_content: None,
    }
}
