//! Property tests of the wire code: arbitrary input never panics, and what
//! the writers produce reads back as written.

use im_core::{
    DuplicateContent, ErrorCode, Field, Form, FormItem, ItemResult, Outcome, ServiceView,
};
use im_soap::envelope::{decode_body, parse_request};
use im_soap::form_xml::{parse_form, write_form};
use im_soap::result_xml::{parse_response, write_response};
use im_soap::{Limits, ReturnElement};
use proptest::prelude::*;

fn any_text() -> impl Strategy<Value = String> {
    // Any Unicode text XML can carry, with the characters that matter most.
    prop::collection::vec(
        prop_oneof![
            any::<char>().prop_filter("XML char", |c| matches!(*c, '\u{9}' | '\u{A}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)),
            prop::sample::select(vec!['<', '>', '&', '"', '\'', ']', 'م', '工', '😀', ' ']),
        ],
        0..40,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn any_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL.to_vec())
}

fn any_outcome() -> impl Strategy<Value = Outcome> {
    (
        any_code(),
        any_text(),
        any_text(),
        prop::option::of(any_text().prop_filter("trimmed non-empty", |s| {
            !s.trim().is_empty() && s.trim() == s
        })),
        prop::collection::vec(
            (
                any_text(),
                any_text(),
                prop::option::of(any_code()),
                any_text(),
                any::<bool>(),
            ),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(code, desc, flow, task, items, same)| Outcome {
            error_code: code,
            error_desc: desc,
            flow_id: flow,
            task_no: task,
            items: items
                .into_iter()
                .enumerate()
                .map(|(i, (user, port, c, name, conflict))| ItemResult {
                    seq: i + 1,
                    opertype: "Install".into(),
                    service_type: "ADSL".into(),
                    user_name: user.clone(),
                    error_code: c,
                    port,
                    services: if conflict {
                        vec![ServiceView {
                            user_name: user,
                            customer_name: name,
                            conflict,
                            ..ServiceView::default()
                        }]
                    } else {
                        Vec::new()
                    },
                    ..ItemResult::default()
                })
                .collect(),
            duplicate_content: (code == ErrorCode::DuplicateFlowId).then_some(if same {
                DuplicateContent::Same
            } else {
                DuplicateContent::Different
            }),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600),
                                   ct in prop::option::of(prop::sample::select(vec![
                                       "text/xml; charset=gb2312", "text/xml; charset=utf-8",
                                       "text/xml; charset=x-bogus", "text/xml"]))) {
        let limits = Limits::default();
        if let Ok((text, _)) = decode_body(&bytes, ct) {
            if let Ok(req) = parse_request(&text, &limits.envelope) {
                let _ = parse_form(&req.payload, &limits.form);
            }
            let _ = parse_form(&text, &limits.form);
        }
        let _ = parse_response(&bytes, ct);
    }

    #[test]
    fn arbitrary_text_in_an_envelope_never_panics(payload in any_text()) {
        let limits = Limits::default();
        let env = format!(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><EgyptWorkSheetAll><in0>{payload}</in0></EgyptWorkSheetAll></s:Body></s:Envelope>"
        );
        if let Ok(req) = parse_request(&env, &limits.envelope) {
            let _ = parse_form(&req.payload, &limits.form);
        }
    }

    #[test]
    fn responses_read_back_as_written(o in any_outcome(), axis in any::<bool>()) {
        let el = if axis { ReturnElement::AxisReturn } else { ReturnElement::Out };
        let xml = write_response(&o, el);
        prop_assert!(xml.is_ascii());
        let back = parse_response(xml.as_bytes(), Some("text/xml; charset=UTF-8"));
        prop_assert_eq!(back.ok(), Some(o));
    }

    #[test]
    fn forms_read_back_as_written(values in prop::collection::vec(any_text(), 1..6)) {
        let mut item = FormItem::default();
        for (i, v) in values.iter().enumerate() {
            item.fields.push(Field::new(format!("f{i}"), v.clone()));
            item.attrs.push(Field::new(format!("A {i}"), v.clone()));
        }
        let form = Form::default().field("flowId", values[0].clone()).item(item);
        let xml = write_form(&form).expect("writable");
        // Through the client's gb2312 encoding and the server's reader.
        let bytes = im_soap::client::encode_request(&form, encoding_rs::GBK, "gb2312").expect("encodable");
        let limits = Limits::default();
        let (text, _) = decode_body(&bytes, Some("text/xml; charset=gb2312")).expect("decodable");
        let req = parse_request(&text, &limits.envelope).expect("envelope");
        let back = parse_form(&req.payload, &limits.form).expect("form");
        // XML normalises CR and CRLF to LF; the generator makes no CR.
        prop_assert_eq!(&back, &form);
        prop_assert_eq!(parse_form(&xml, &limits.form).expect("form"), form);
    }
}
