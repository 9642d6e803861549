//! Property tests of intake through the public API: whatever a form holds,
//! the core answers with a contract code and never panics or fails
//! internally; the shape of every answer follows §5–§6; accepted calls are
//! idempotent; field names are read tolerantly; protected values never come
//! back in an answer.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use im_core::intake::KNOWN_FIELDS;
use im_core::{DuplicateContent, ErrorCode, Form, FormItem, Outcome};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Values that mean something to some field, plus junk.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", " ", "Install", "Modify", "Delete", "Query", "install", "QUERY", "Remove",
            "ADSL", "VDSL", "FTTH", "ftth", "IPTV", "IP-Phone", "ip_phone", "OptionPack",
            "Domain/Email", "EX01", "EX02", "EX99", "EX01-D1", "EX01-D3", "EX01-D9", "10.1.0.1",
            "0", "1", "5", "9", "63", "64", "-1", "16M", "1.5m", "512", "fast", "100", "3000",
            "4095", "HWTC1A2B3C4D", "485754431A2B3C4D", "HWTC0000BEEF", "CP01", "CP02", "CP11",
            "OLT01", "OLT02", "255.255.255.0", "255.0.255.0", "192.168.1.1", "a@b", "noat",
            "u1@x", "u2@x", "ACC-1", "\u{0623}\u{062d}\u{0645}\u{062f}", "19601",
        ]).prop_map(str::to_string),
        1 => "\\PC{0,24}",
        1 => prop::sample::select(vec![255usize, 256, 257, 300]).prop_map(|n| "x".repeat(n)),
        1 => "[ \t]{0,2}[A-Za-z0-9@._-]{1,12}[ \t]{0,2}",
    ]
}

/// A field name: a contract name, respelled or not, or junk.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop::sample::select(KNOWN_FIELDS.to_vec()), 0u8..4).prop_map(|(n, how)| respell(n, how)),
        1 => "[A-Za-z_ -]{0,12}",
        1 => "\\PC{0,8}",
    ]
}

/// One of several spellings of a name that the contract reads as the same field.
fn respell(name: &str, how: u8) -> String {
    match how {
        0 => name.to_string(),
        1 => name.to_lowercase(),
        2 => name.to_uppercase(),
        _ => {
            // Put a separator between every pair of characters.
            let mut s = String::new();
            for (i, c) in name.chars().enumerate() {
                if i > 0 {
                    s.push(['_', '-', ' '][i % 3]);
                }
                s.push(c);
            }
            s
        }
    }
}

fn random_item() -> impl Strategy<Value = FormItem> {
    (
        prop::option::of(prop::sample::select(vec![
            "Install", "Modify", "Delete", "Query", "Bogus", "",
        ])),
        prop::option::of(prop::sample::select(vec![
            "ADSL", "VDSL", "FTTH", "DSL", "",
        ])),
        prop::option::of(prop::sample::select(vec![
            "ADSL",
            "VDSL",
            "FTTH",
            "IPTV",
            "IP-Phone",
            "OptionPack",
            "Domain/Email",
            "Fax",
            "",
        ])),
        prop::option::of(prop::sample::select(vec!["u1@x", "u2@x", "u3@x", ""])),
        prop::collection::vec((name(), value(), any::<bool>()), 0..12),
    )
        .prop_map(|(op, cover, service, user, extra)| {
            let mut it = FormItem::default();
            for (n, v) in [
                ("opertype", op),
                ("coverType", cover),
                ("serviceType", service),
                ("UserName", user),
            ] {
                if let Some(v) = v {
                    it = it.field(n, v);
                }
            }
            for (n, v, in_attrs) in extra {
                it = if in_attrs {
                    it.attr(n, v)
                } else {
                    it.field(n, v)
                };
            }
            it
        })
}

/// A valid ADSL/FTTH/add-on item with some of its fields mutated.
fn mutated_item() -> impl Strategy<Value = FormItem> {
    (
        0usize..8,
        0u32..6,
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                prop::sample::select(vec![0u8, 1, 1, 2, 3, 3]),
                value(),
            ),
            0..3,
        ),
    )
        .prop_map(|(kind, u, mutations)| {
            let user = format!("m{u}@x");
            let mut it = match kind {
                0 | 1 => adsl_install(&user),
                2 => ftth_install(&user, &format!("HWTC0000{u:04X}")),
                3 => iptv_install(&user),
                4 => optionpack_install("ADSL", &user),
                5 => delete_item("ADSL", "ADSL", &user),
                6 => item("Modify", "ADSL", "ADSL", &user).attr("Speed", "8M"),
                _ => query_item(&user),
            };
            for (idx, how, v) in mutations {
                let n = it.fields.len() + it.attrs.len();
                let i = idx.index(n);
                let in_fields = i < it.fields.len();
                let f = if in_fields {
                    &mut it.fields[i]
                } else {
                    &mut it.attrs[i - it.fields.len()]
                };
                match how {
                    0 => f.value = v,
                    1 => f.name = respell(&f.name, 3),
                    2 => f.value = String::new(),
                    _ => {
                        // Move the field between the bussItem and its attrList.
                        if in_fields {
                            let f = it.fields.remove(i);
                            it.attrs.push(f);
                        } else {
                            let f = it.attrs.remove(i - it.fields.len());
                            it.fields.insert(0, f);
                        }
                    }
                }
            }
            it
        })
}

fn any_form() -> impl Strategy<Value = Form> {
    (
        prop::sample::select(vec![0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]),
        prop_oneof![4 => "P-[0-9]{1,3}", 1 => "\\PC{0,70}"],
        prop::sample::select(vec![
            "19601", "19601", "19601", "19601", " 19601 ", "19602", "19699", "",
        ]),
        any::<bool>(),
        prop::collection::vec(prop_oneof![1 => random_item(), 4 => mutated_item()], 0..4),
    )
        .prop_map(|(creds, flow, popid, buss_info, items)| {
            let mut f = Form::default();
            match creds {
                0 => {
                    f = f
                        .field("authusername", im_core::demo::DEMO_OM_USER)
                        .field("authpassword", im_core::demo::DEMO_OM_PASSWORD)
                }
                1 => f = f.field("authusername", im_core::demo::DEMO_OM_USER),
                2 => f = f.field("authusername", "nobody").field("authpassword", "x"),
                _ => {}
            }
            f = f.field("flowId", flow).field("popid", popid);
            f.buss_info_present = buss_info;
            for it in items {
                f = f.item(it);
            }
            f
        })
}

fn is_all_query(f: &Form, o: &Outcome) -> bool {
    !f.items.is_empty() && o.items.iter().all(|i| i.opertype == "Query")
}

/// The shape every answer has, whatever the form.
fn check_answer(f: &Form, o: &Outcome) -> Result<(), TestCaseError> {
    prop_assert!(ErrorCode::ALL.contains(&o.error_code));
    prop_assert_eq!(
        ErrorCode::from_code(o.error_code.code()),
        Some(o.error_code)
    );
    prop_assert_ne!(
        o.error_code,
        ErrorCode::Internal,
        "no form makes the core fail internally: {:?}",
        o
    );
    prop_assert_eq!(o.return_code(), u8::from(!o.is_success()));
    prop_assert!(!o.error_desc.is_empty());
    match o.error_code {
        ErrorCode::Success => {
            prop_assert_eq!(o.items.len(), f.items.len(), "one result per item: {:?}", o);
            prop_assert!(
                o.items
                    .iter()
                    .enumerate()
                    .all(|(i, r)| r.seq == i + 1 && r.error_code == Some(ErrorCode::Success)),
                "{:?}",
                o
            );
            if is_all_query(f, o) {
                prop_assert!(o.task_no.is_none(), "a Query creates no task: {:?}", o);
            } else {
                prop_assert!(
                    o.task_no
                        .as_deref()
                        .is_some_and(|t| t.starts_with("WS") && t.len() >= 16),
                    "{:?}",
                    o
                );
            }
            prop_assert!(o.duplicate_content.is_none());
        }
        ErrorCode::DuplicateFlowId => {
            prop_assert!(
                o.task_no.is_some() && o.duplicate_content.is_some(),
                "{:?}",
                o
            );
        }
        _ => {
            prop_assert!(
                o.task_no.is_none() && o.duplicate_content.is_none(),
                "{:?}",
                o
            );
            if !o.items.is_empty() {
                // Item-level refusal: exactly the failing item carries the call's code.
                prop_assert_eq!(o.items.len(), f.items.len());
                let failing: Vec<_> = o.items.iter().filter(|i| i.error_code.is_some()).collect();
                prop_assert_eq!(failing.len(), 1, "{:?}", o);
                prop_assert_eq!(failing[0].error_code, Some(o.error_code));
                let prefix = format!("item {}:", failing[0].seq);
                prop_assert!(o.error_desc.starts_with(&prefix), "{:?}", o);
            }
        }
    }
    Ok(())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn any_form_gets_a_contract_code_and_a_well_formed_answer() {
    let t = TestIm::new();
    let accepted = std::cell::Cell::new(0u32);
    let seen = std::cell::RefCell::new(std::collections::BTreeMap::<i32, u32>::new());
    runner(128)
        .run(&any_form(), |f| {
            let o = t.submit(f.clone());
            check_answer(&f, &o)?;
            *seen.borrow_mut().entry(o.error_code.code()).or_default() += 1;
            if o.is_success() && !is_all_query(&f, &o) {
                accepted.set(accepted.get() + 1);
                // Resending an accepted call is a duplicate of the same content and the same task.
                let again = t.submit(f.clone());
                prop_assert_eq!(again.error_code, ErrorCode::DuplicateFlowId);
                prop_assert_eq!(again.task_no, o.task_no);
                prop_assert_eq!(again.duplicate_content, Some(DuplicateContent::Same));
            }
            Ok(())
        })
        .unwrap();
    // The generator is not all noise: calls get through, and many different codes come back.
    let seen = seen.into_inner();
    eprintln!("codes seen: {seen:?}");
    assert!(accepted.get() > 0, "no call was ever accepted: {seen:?}");
    assert!(seen.len() >= 4, "{seen:?}");
}

#[test]
fn respelled_and_reshaped_installs_are_read_as_the_original() {
    let t = TestIm::new();
    let counter = std::cell::Cell::new(0u32);
    runner(64)
        .run(
            &(
                prop::collection::vec((0u8..4, any::<bool>()), 6..16),
                any::<bool>(),
            ),
            |(shape, ftth)| {
                counter.set(counter.get() + 1);
                let n = counter.get();
                let user = format!("resp-{n}@x");
                let base = if ftth {
                    ftth_install(&user, &format!("HWTC{n:08X}"))
                } else {
                    adsl_install(&user)
                };
                // Every field respelled its own way and placed in the item or its attrList.
                let mut it = FormItem::default();
                for (i, fld) in base.fields.iter().chain(&base.attrs).enumerate() {
                    let (how, in_attrs) = shape[i % shape.len()];
                    let name = respell(&fld.name, how);
                    let value = format!("  {}\t", fld.value);
                    it = if in_attrs {
                        it.attr(name, value)
                    } else {
                        it.field(name, value)
                    };
                }
                let flow = format!("RESP-{n}");
                let o = t.submit(form(&flow, "19601").item(it));
                prop_assert!(o.is_success(), "{:?}", o);
                prop_assert_eq!(&o.items[0].user_name, &user);
                // The original spelling is the same content.
                let dup = t.submit(form(&flow, "19601").item(base));
                prop_assert_eq!(dup.error_code, ErrorCode::DuplicateFlowId);
                prop_assert_eq!(dup.duplicate_content, Some(DuplicateContent::Same));
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn protected_values_never_come_back_in_an_answer() {
    let t = TestIm::new();
    let secret = "[A-Za-z]{3}[0-9]{3}[A-Za-z0-9]{6}".prop_map(|s| format!("SECRET{s}"));
    let strategy = (
        any_form(),
        prop::collection::vec(secret, 4),
        prop::collection::vec(any::<bool>(), 4),
    );
    runner(96)
        .run(&strategy, |(mut f, secrets, in_attrs)| {
            if f.items.is_empty() {
                f = f.item(adsl_install("sec@x"));
            }
            for it in &mut f.items {
                for (i, (name, s)) in ["Password", "Mobile", "E-mail", "IPTV password"]
                    .iter()
                    .zip(&secrets)
                    .enumerate()
                {
                    *it = if in_attrs[i] {
                        std::mem::take(it).attr(*name, s.as_str())
                    } else {
                        std::mem::take(it).field(*name, s.as_str())
                    };
                }
            }
            let o = t.submit(f.clone());
            let mut text = format!("{o:?}");
            // And whatever the stored service shows to a Query afterwards.
            for it in &f.items {
                if let Some(u) = it
                    .fields
                    .iter()
                    .chain(&it.attrs)
                    .find(|x| im_core::names::same(&x.name, "UserName"))
                {
                    let q =
                        t.submit(form(&fresh_flow("pq"), "19601").item(query_item(u.value.trim())));
                    text.push_str(&format!("{q:?}"));
                }
            }
            for s in &secrets {
                prop_assert!(!text.contains(s.as_str()), "{} in {}", s, text);
            }
            Ok(())
        })
        .unwrap();
}
