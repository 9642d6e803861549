//! OM authentication through the public API: wrong credentials never lock
//! the account, password changes take effect at once (cached credentials
//! are dropped), repeated wrong passwords are refused without new hashes.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use im_core::ErrorCode;
use std::time::Instant;

fn query(flow: &str, user: &str, password: &str) -> im_core::Form {
    im_core::Form::default()
        .field("authusername", user)
        .field("authpassword", password)
        .field("flowId", flow)
        .field("popid", "19601")
        .item(item("Query", "", "", "nobody@x"))
}

#[test]
fn wrong_passwords_never_lock_the_om_account() {
    let t = TestIm::new();
    for i in 0..20 {
        let o = t.submit(query(&format!("Q{i}"), "OM_webservice", "wrong"));
        assert_eq!(o.error_code, ErrorCode::AuthFailed, "{o:?}");
        assert!(!o.error_desc.contains("wrong"), "no secret in errorDesc");
    }
    let o = t.submit(query("Q-ok", "OM_webservice", "om-demo-secret"));
    assert_eq!(o.error_code, ErrorCode::Success, "{o:?}");
}

#[test]
fn login_is_case_insensitive_and_unknown_accounts_are_refused() {
    let t = TestIm::new();
    let o = t.submit(query("Q1", "om_WEBSERVICE", "om-demo-secret"));
    assert_eq!(o.error_code, ErrorCode::Success, "{o:?}");
    let o = t.submit(query("Q2", "someone-else", "om-demo-secret"));
    assert_eq!(o.error_code, ErrorCode::AuthFailed);
    let o = t.submit(query("Q3", "OM_webservice", ""));
    assert_eq!(o.error_code, ErrorCode::AuthFailed);
}

#[test]
fn a_password_change_takes_effect_at_once() {
    let t = TestIm::new();
    // Warm the cache with the old password, and remember a wrong one.
    assert!(
        t.submit(query("A1", "OM_webservice", "om-demo-secret"))
            .is_success()
    );
    assert_eq!(
        t.submit(query("A2", "OM_webservice", "new-secret"))
            .error_code,
        ErrorCode::AuthFailed
    );
    t.im.set_om_account("OM_webservice", "new-secret").unwrap();
    let o = t.submit(query("A3", "OM_webservice", "om-demo-secret"));
    assert_eq!(
        o.error_code,
        ErrorCode::AuthFailed,
        "old password still accepted: {o:?}"
    );
    let o = t.submit(query("A4", "OM_webservice", "new-secret"));
    assert_eq!(
        o.error_code,
        ErrorCode::Success,
        "new password refused: {o:?}"
    );
}

#[test]
fn repeated_wrong_credentials_do_not_cost_a_hash_each() {
    let t = TestIm::new();
    let first = Instant::now();
    assert_eq!(
        t.submit(query("W0", "OM_webservice", "bad")).error_code,
        ErrorCode::AuthFailed
    );
    let one_hash = first.elapsed();
    let start = Instant::now();
    for i in 0..50 {
        assert_eq!(
            t.submit(query(&format!("W{}", i + 1), "OM_webservice", "bad"))
                .error_code,
            ErrorCode::AuthFailed
        );
    }
    // 50 full hashes would take at least 50 × one hash; cached refusals are
    // orders of magnitude cheaper. A generous factor keeps this robust.
    assert!(
        start.elapsed() < one_hash * 10,
        "50 repeated refusals took {:?}, one hash {:?}",
        start.elapsed(),
        one_hash
    );
}

/// Many callers with the same credentials on a cold (or expiring) cache
/// share one password check: none is turned away with -9999 because the
/// bounded number of concurrent checks ran out.
#[test]
fn a_crowd_on_a_cold_or_expiring_cache_shares_one_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = im_core::CoreConfig::new(dir.path().join("im.db"));
    cfg.credential_cache_ttl = std::time::Duration::from_millis(400);
    let im = im_core::Im::open(cfg).unwrap();
    assert!(im_core::demo::install_if_empty(&im).unwrap());
    let end = Instant::now() + std::time::Duration::from_millis(1500);
    let threads: Vec<_> = (0..64)
        .map(|t| {
            let im = im.clone();
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                let mut i = 0;
                while Instant::now() < end {
                    let o = im.submit_blocking(query(
                        &format!("CROWD-{t}-{i}"),
                        "OM_webservice",
                        "om-demo-secret",
                    ));
                    answers.push(o.error_code);
                    i += 1;
                }
                answers
            })
        })
        .collect();
    let mut total = 0;
    for t in threads {
        let answers = t.join().unwrap();
        total += answers.len();
        assert!(
            answers.iter().all(|c| *c == ErrorCode::Success),
            "a call was not accepted: {:?}",
            answers.iter().find(|c| **c != ErrorCode::Success)
        );
    }
    // The cache expired several times over while the crowd called.
    assert!(total > 64 * 3, "{total} calls");
}
