//! The SOAP request path as the server runs it before submitting to the
//! core, with the checks every input must pass. Shared by the cargo-fuzz
//! targets (`fuzz/fuzz_targets/*.rs`) and by the proptest properties in
//! `im-soap/tests/any_input.rs`, so that both exercise the same code.
//!
//! The path: decode the body (BOM, `Content-Type`, declaration, UTF-8),
//! read the envelope, read the form, then the core's own checks that need
//! no stored data (credentials, flowId, every item's static checks). The
//! answer is a SOAP Fault, an outcome with an error code, or a call ready
//! for the writer; each is then written the way the server writes it and
//! read back the way a client reads it.

use im_core::intake::{self, ItemFailure, PreparedCall};
use im_core::secrets::Secrets;
use im_core::{ErrorCode, ItemResult, Outcome};
use im_soap::envelope::{decode_body, parse_request};
use im_soap::form_xml::{FormError, parse_form};
use im_soap::result_xml::{ReadError, parse_response, write_response};
use im_soap::{Fault, Limits, ReturnElement};

/// `Content-Type` values the targets choose from (by one input byte).
pub const CONTENT_TYPES: [Option<&str>; 10] = [
    None,
    Some("text/xml; charset=gb2312"),
    Some("text/xml; charset=GBK"),
    Some("text/xml; charset=gb18030"),
    Some("text/xml; charset=utf-8"),
    Some("text/xml"),
    Some("text/xml; charset=\"UTF-16\""),
    Some("text/xml; charset=iso-8859-1"),
    Some("text/xml; charset=x-bogus"),
    Some("application/soap+xml; charset=utf-8; action=\"x\""),
];

/// How the request path answered.
#[derive(Debug)]
pub enum Answer {
    /// HTTP 500 with this Fault.
    Fault(Fault),
    /// HTTP 200 with this refusal (an error code).
    Refused(Outcome),
    /// Every check that needs no stored data passed: the call goes to the
    /// core's writer.
    Ready(Box<PreparedCall>),
}

/// The key the harness's [`Secrets`] use (any fixed key will do).
pub fn test_secrets() -> Secrets {
    Secrets::from_key([7; 32])
}

/// Runs the request path on `body` as the server does before it submits.
pub fn request_path(
    body: &[u8],
    content_type: Option<&str>,
    limits: &Limits,
    secrets: &Secrets,
) -> Answer {
    let text = match decode_body(body, content_type) {
        Ok((text, _)) => text,
        Err(f) => return Answer::Fault(f),
    };
    let request = match parse_request(&text, &limits.envelope) {
        Ok(r) => r,
        Err(f) => return Answer::Fault(f),
    };
    let form = match parse_form(&request.payload, &limits.form) {
        Ok(form) => form,
        Err(FormError::NoForm(reason)) => return Answer::Refused(Outcome::no_form(reason)),
        Err(FormError::Dtd) => {
            return Answer::Fault(Fault::client("a DTD is not allowed in the form"));
        }
    };
    let (user, _) = match intake::credentials(&form) {
        Ok(c) => c,
        Err(o) => return Answer::Refused(o),
    };
    match intake::prepare(&form, user, secrets) {
        Ok(call) => {
            let failed = call
                .items
                .iter()
                .enumerate()
                .find_map(|(i, r)| r.as_ref().err().map(|f| (i, f.clone())));
            match failed {
                Some((i, f)) => Answer::Refused(item_refusal(&call, i, &f)),
                None => Answer::Ready(Box::new(call)),
            }
        }
        Err(o) => Answer::Refused(o),
    }
}

/// The outcome of a call whose item `failed` failed a static check (what
/// the core answers: that item carries the code, the others none).
fn item_refusal(call: &PreparedCall, failed: usize, f: &ItemFailure) -> Outcome {
    Outcome {
        error_code: f.code,
        error_desc: format!("item {}: {}", failed + 1, f.desc),
        flow_id: call.flow_id.clone(),
        task_no: None,
        items: call
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
            .collect(),
        duplicate_content: None,
    }
}

/// An acceptance of a ready call, echoing what it carried (what the
/// writer's answer would hold, without stored data).
fn acceptance(call: &PreparedCall) -> Outcome {
    Outcome {
        error_code: ErrorCode::Success,
        error_desc: "success".into(),
        flow_id: call.flow_id.clone(),
        task_no: (!call.all_query).then(|| "WS20261204000001".to_string()),
        items: call
            .heads
            .iter()
            .enumerate()
            .map(|(i, h)| ItemResult {
                seq: i + 1,
                opertype: h.opertype.clone(),
                service_type: h.service_type.clone(),
                user_name: h.user_name.clone(),
                error_code: Some(ErrorCode::Success),
                state: "ACTIVE".into(),
                ..ItemResult::default()
            })
            .collect(),
        duplicate_content: None,
    }
}

/// Runs the request path on `body` and checks what every answer must
/// satisfy: a Fault is written as plain ASCII and read back as the same
/// Fault; an outcome is written as plain ASCII and read back equal; a
/// -1001 names no form; a ready call has one head per item. Returns the
/// answer, or what was wrong.
pub fn check_request(
    body: &[u8],
    content_type: Option<&str>,
    limits: &Limits,
    secrets: &Secrets,
) -> Result<Answer, String> {
    let answer = request_path(body, content_type, limits, secrets);
    match &answer {
        Answer::Fault(f) => {
            let xml = f.to_xml();
            if !xml.is_ascii() {
                return Err(format!("Fault not ASCII: {xml}"));
            }
            match parse_response(xml.as_bytes(), Some("text/xml; charset=UTF-8")) {
                Err(ReadError::Fault(back)) if back.code == f.code => {}
                other => return Err(format!("Fault {f:?} read back as {other:?}")),
            }
        }
        Answer::Refused(o) => {
            if o.is_success() {
                return Err(format!("a refusal with code 0: {o:?}"));
            }
            check_outcome(o)?;
        }
        Answer::Ready(call) => {
            if call.heads.len() != call.items.len() {
                return Err(format!(
                    "{} heads for {} items",
                    call.heads.len(),
                    call.items.len()
                ));
            }
            check_outcome(&acceptance(call))?;
        }
    }
    Ok(answer)
}

/// Writes `o` as the server does (both return elements) and reads it back
/// as a client does: ASCII bytes, and the same outcome.
pub fn check_outcome(o: &Outcome) -> Result<(), String> {
    for el in [ReturnElement::Out, ReturnElement::AxisReturn] {
        let xml = write_response(o, el);
        if !xml.is_ascii() {
            return Err(format!("response not ASCII: {xml}"));
        }
        match parse_response(xml.as_bytes(), Some("text/xml; charset=UTF-8")) {
            Ok(back) if back == *o => {}
            other => return Err(format!("{o:?}\nwritten as {xml}\nread back as {other:?}")),
        }
    }
    Ok(())
}
