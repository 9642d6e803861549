//! Arbitrary outcomes (any text: `]]>`, quotes, non-ASCII, astral
//! characters, control characters XML can carry) through the result
//! writer and back through the client's reader: plain ASCII bytes, and
//! the same outcome.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use im_core::{DuplicateContent, ErrorCode, ItemResult, Outcome, ServiceView};
use libfuzzer_sys::fuzz_target;

/// Text XML 1.0 can carry (what a parsed request can hold), biased
/// towards the characters that matter to the writer.
fn text(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    const SPECIAL: [&str; 12] = [
        "]]>", "]]", "<", ">", "&", "\"", "'", "\t", "\n", "\r", "م", "😀",
    ];
    let n = u.int_in_range(0..=12)?;
    let mut s = String::new();
    for _ in 0..n {
        if u.ratio(1, 3)? {
            s.push_str(u.choose(&SPECIAL)?);
        } else {
            let c = char::arbitrary(u)?;
            if matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
            {
                s.push(c);
            }
        }
    }
    Ok(s)
}

fn code(u: &mut Unstructured<'_>) -> arbitrary::Result<ErrorCode> {
    u.choose(&ErrorCode::ALL).copied()
}

fn outcome(u: &mut Unstructured<'_>) -> arbitrary::Result<Outcome> {
    let error_code = code(u)?;
    let task: String = text(u)?;
    let mut items = Vec::new();
    for seq in 1..=u.int_in_range(0..=3)? {
        let mut services = Vec::new();
        for _ in 0..u.int_in_range(0..=2)? {
            services.push(ServiceView {
                user_name: text(u)?,
                service_type: text(u)?,
                cover_type: text(u)?,
                state: text(u)?,
                account_number: text(u)?,
                customer_name: text(u)?,
                serviceno: text(u)?,
                speed: text(u)?,
                port: text(u)?,
                ont_sn: text(u)?,
                olt: text(u)?,
                compound: text(u)?,
                vlan: text(u)?,
                conflict: bool::arbitrary(u)?,
                updated: text(u)?,
            });
        }
        items.push(ItemResult {
            seq,
            opertype: text(u)?,
            service_type: text(u)?,
            user_name: text(u)?,
            error_code: if bool::arbitrary(u)? {
                Some(code(u)?)
            } else {
                None
            },
            port: text(u)?,
            ont_sn: text(u)?,
            vlan: text(u)?,
            state: text(u)?,
            services,
        });
    }
    let same = bool::arbitrary(u)?;
    Ok(Outcome {
        error_code,
        error_desc: text(u)?,
        flow_id: text(u)?,
        // The reader trims taskNo (a task number has no spaces).
        task_no: (!task.trim().is_empty()).then(|| task.trim().to_string()),
        items,
        duplicate_content: (error_code == ErrorCode::DuplicateFlowId).then_some(if same {
            DuplicateContent::Same
        } else {
            DuplicateContent::Different
        }),
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(o) = outcome(&mut u) else {
        return;
    };
    if let Err(e) = im_fuzz::soap::check_outcome(&o) {
        panic!("{e}");
    }
});
