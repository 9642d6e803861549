//! Operator logins through the public API: LOCAL accounts (Argon2id),
//! lockout and its expiry, the login log, and AD accounts against a real
//! OpenLDAP slapd over LDAPS (started by `support/slapd.rs`; skipped with a
//! message when slapd is not installed, a failure when `CI` is set).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "ad")]
#[path = "support/slapd.rs"]
mod slapd;

#[cfg(feature = "ad")]
use im_core::login::{AdConfig, AdLookup};
use im_core::login::{AuthMode, LoginConfig, LoginError, LoginLogEntry, Refusal};
#[cfg(feature = "ad")]
use im_core::retry::RetryPolicy;
use im_core::{CoreConfig, Im, Synchronous};
use std::time::Duration;

const IP: &str = "192.0.2.7";

fn open(login: LoginConfig) -> (tempfile::TempDir, Im) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = CoreConfig::new(dir.path().join("im.db"));
    cfg.synchronous = Synchronous::Off;
    cfg.login = login;
    let im = Im::open(cfg).unwrap();
    (dir, im)
}

fn refusal(r: Result<im_core::login::Principal, LoginError>) -> Refusal {
    match r {
        Err(LoginError::Refused(x)) => x,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The log, oldest first.
async fn log(im: &Im) -> Vec<LoginLogEntry> {
    let mut v = im.login_log(None, 1000).await.unwrap();
    v.reverse();
    v
}

fn assert_no_secret(entries: &[LoginLogEntry], secrets: &[&str]) {
    for e in entries {
        for s in secrets {
            let all = format!("{} {} {} {}", e.account, e.ip, e.reason, e.at);
            assert!(!all.contains(s), "secret {s:?} in the log: {e:?}");
        }
    }
}

#[tokio::test]
async fn local_logins() {
    let (_d, im) = open(LoginConfig::default());
    im.create_account(
        "Ops1",
        "Operator One",
        AuthMode::Local,
        Some("s3cret-pw"),
        &["ROLE_OM_INTERFACE"],
    )
    .await
    .unwrap();
    // Creation rules.
    assert!(
        im.create_account("ops1", "x", AuthMode::Local, Some("p"), &[])
            .await
            .is_err(),
        "login is case-insensitive and unique"
    );
    assert!(
        im.create_account("ops2", "x", AuthMode::Local, None, &[])
            .await
            .is_err()
    );
    assert!(
        im.create_account("ops3", "x", AuthMode::Local, Some("p"), &["NO_SUCH_ROLE"])
            .await
            .is_err()
    );
    assert!(
        im.create_account("ad1", "x", AuthMode::Ad, Some("p"), &[])
            .await
            .is_err()
    );

    let p = im.login("ops1", "s3cret-pw", IP).await.unwrap();
    assert_eq!(p.account, "Ops1");
    assert_eq!(p.display_name, "Operator One");
    assert_eq!(p.mode, AuthMode::Local);
    assert_eq!(p.roles, ["ROLE_OM_INTERFACE"]);
    let acc = im.login_account("ops1").await.unwrap().unwrap();
    assert!(acc.last_login.is_some());

    assert_eq!(
        refusal(im.login("ops1", "wrong-pw", IP).await),
        Refusal::WrongPassword
    );
    assert_eq!(
        refusal(im.login("nobody", "s3cret-pw", IP).await),
        Refusal::UnknownAccount
    );
    assert_eq!(
        refusal(im.login("ops1", "", IP).await),
        Refusal::EmptyPassword
    );
    im.set_enabled("ops1", false).await.unwrap();
    assert_eq!(
        refusal(im.login("ops1", "s3cret-pw", IP).await),
        Refusal::Disabled
    );
    im.set_enabled("ops1", true).await.unwrap();
    im.set_password("ops1", "new-pw").await.unwrap();
    assert_eq!(
        refusal(im.login("ops1", "s3cret-pw", IP).await),
        Refusal::WrongPassword
    );
    im.login("OPS1", "new-pw", IP).await.unwrap();
    im.logout("Ops1", IP).await.unwrap();

    let l = log(&im).await;
    let got: Vec<(&str, bool, &str)> = l
        .iter()
        .map(|e| (e.account.as_str(), e.success, e.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("Ops1", true, ""),
            ("Ops1", false, "wrong password"),
            ("nobody", false, "unknown account"),
            ("ops1", false, "empty password"),
            ("Ops1", false, "account disabled"),
            ("Ops1", false, "wrong password"),
            ("Ops1", true, ""),
            ("Ops1", true, ""),
        ]
    );
    assert_eq!(l.last().unwrap().event, im_core::login::LoginEvent::Logout);
    assert!(l.iter().all(|e| e.ip == IP && !e.at.is_empty()));
    assert_eq!(l[0].auth_mode, Some(AuthMode::Local));
    assert_eq!(l[2].auth_mode, None);
    assert_no_secret(&l, &["s3cret-pw", "wrong-pw", "new-pw"]);
    // Filtered by account (case-insensitive), newest first.
    let mine = im.login_log(Some("OPS1"), 2).await.unwrap();
    assert_eq!(mine.len(), 2);
    assert!(mine[0].id > mine[1].id);
}

#[tokio::test]
async fn lockout_and_its_expiry() {
    let (_d, im) = open(LoginConfig {
        max_failures: 3,
        lockout: Duration::from_millis(600),
        ..LoginConfig::default()
    });
    im.create_account("ops", "Ops", AuthMode::Local, Some("right"), &[])
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            refusal(im.login("ops", "bad", IP).await),
            Refusal::WrongPassword
        );
    }
    // A success resets the count.
    im.login("ops", "right", IP).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            refusal(im.login("ops", "bad", IP).await),
            Refusal::WrongPassword
        );
    }
    let acc = im.login_account("ops").await.unwrap().unwrap();
    assert!(acc.locked_until.is_some());
    // Locked: even the right password is refused, without a check.
    assert_eq!(refusal(im.login("ops", "right", IP).await), Refusal::Locked);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Expired: one wrong password does not lock again at once.
    assert_eq!(
        refusal(im.login("ops", "bad", IP).await),
        Refusal::WrongPassword
    );
    im.login("ops", "right", IP).await.unwrap();
    let acc = im.login_account("ops").await.unwrap().unwrap();
    assert_eq!((acc.failed_logins, acc.locked_until), (0, None));
    let l = log(&im).await;
    assert_eq!(l.len(), 9);
    assert!(l[5].reason.contains("account locked until"), "{:?}", l[5]);
    assert_eq!(l[6].reason, "account locked");
    assert_no_secret(&l, &["right", "bad"]);
}

#[cfg(feature = "ad")]
fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        retries: 2,
        initial_interval: Duration::from_millis(20),
        multiplier: 2.0,
        max_interval: Duration::from_millis(100),
        jitter: 0.0,
    }
}

#[cfg(feature = "ad")]
fn ad_login(ad: AdConfig) -> LoginConfig {
    LoginConfig {
        ad: Some(ad),
        ad_retry: fast_retry(),
        ..LoginConfig::default()
    }
}

#[cfg(feature = "ad")]
async fn ad_accounts(im: &Im) {
    for (login, display) in [("alice", "Alice"), ("bob", "Bob"), ("*)(uid=*", "Injector")] {
        im.create_account(login, display, AuthMode::Ad, None, &["ROLE_OM_INTERFACE"])
            .await
            .unwrap();
    }
    im.set_enabled("bob", false).await.unwrap();
}

#[cfg(feature = "ad")]
#[tokio::test]
async fn ad_logins_against_slapd() {
    let Some(ldap) = slapd::Slapd::start() else {
        return;
    };
    eprintln!(
        "slapd running at {} ({})",
        ldaps_url(&ldap),
        ldap.dir().display()
    );

    // Search-then-bind with a service account and the default filter.
    let search = AdConfig::search(
        &ldap.ldaps_url,
        ldap.ca_file(),
        slapd::SVC_DN,
        slapd::SVC_PW,
        format!("ou=people,{}", slapd::SUFFIX),
    );
    if let AdLookup::Search { filter, .. } = &search.lookup {
        assert_eq!(filter, "(sAMAccountName={user})");
    }
    let (_d, im) = open(ad_login(search.clone()));
    ad_accounts(&im).await;

    let p = im.login("alice", "alicepass", IP).await.unwrap();
    assert_eq!((p.account.as_str(), p.mode), ("alice", AuthMode::Ad));
    assert_eq!(p.roles, ["ROLE_OM_INTERFACE"]);
    assert_eq!(
        refusal(im.login("alice", "not-alices-pw", IP).await),
        Refusal::WrongPassword
    );
    // carol is in AD with the right password, but has no IM account.
    assert_eq!(
        refusal(im.login("carol", "carolpass", IP).await),
        Refusal::UnknownAccount
    );
    assert_eq!(
        refusal(im.login("bob", "bobpass", IP).await),
        Refusal::Disabled
    );
    assert_eq!(
        refusal(im.login("alice", "", IP).await),
        Refusal::EmptyPassword
    );
    // A filter-injection login: escaped, it matches no entry.
    assert_eq!(
        refusal(im.login("*)(uid=*", "alicepass", IP).await),
        Refusal::WrongPassword
    );
    let l = log(&im).await;
    let got: Vec<(&str, bool, &str)> = l
        .iter()
        .map(|e| (e.account.as_str(), e.success, e.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("alice", true, ""),
            ("alice", false, "wrong password"),
            ("carol", false, "unknown account"),
            ("bob", false, "account disabled"),
            ("alice", false, "empty password"),
            ("*)(uid=*", false, "no directory entry for this login"),
        ]
    );
    assert!(l.iter().all(|e| e.ip == IP));
    assert_eq!(l[0].auth_mode, Some(AuthMode::Ad));
    assert_no_secret(
        &l,
        &[
            "alicepass",
            "carolpass",
            "bobpass",
            "not-alices-pw",
            "svcsecret",
        ],
    );
    im.close();

    // Direct bind with a DN template (what any LDAP server accepts).
    let template = AdConfig::template(
        &ldap.ldaps_url,
        ldap.ca_file(),
        "uid={user},ou=people,dc=example,dc=com",
    );
    let (_d2, im) = open(ad_login(template));
    ad_accounts(&im).await;
    im.login("alice", "alicepass", IP).await.unwrap();
    assert_eq!(
        refusal(im.login("alice", "bobpass", IP).await),
        Refusal::WrongPassword
    );
    // The injection login becomes an escaped DN that names nobody.
    assert!(im.login("*)(uid=*", "alicepass", IP).await.is_err());
    let l = log(&im).await;
    assert_eq!(l.len(), 3);
    assert!(l[0].success && !l[1].success && !l[2].success);
    im.close();

    // StartTLS on the plain port, still verified against the CA.
    let mut starttls = search.clone();
    starttls.url = ldap.ldap_url.clone();
    starttls.starttls = true;
    let (_d3, im) = open(ad_login(starttls));
    ad_accounts(&im).await;
    im.login("alice", "alicepass", IP).await.unwrap();
    im.close();

    // A server whose certificate the configured CA did not sign: refused,
    // never let in, not retried.
    let mut wrong_ca = search.clone();
    wrong_ca.ca_file = Some(ldap.wrong_ca_file());
    let (_d4, im) = open(ad_login(wrong_ca));
    ad_accounts(&im).await;
    let r = im.login("alice", "alicepass", IP).await;
    assert!(matches!(r, Err(LoginError::DirectoryUnavailable)), "{r:?}");
    let l = log(&im).await;
    assert_eq!(l.len(), 1);
    assert!(!l[0].success);
    assert!(
        l[0].reason.starts_with("directory unavailable: TLS"),
        "{:?}",
        l[0]
    );
    assert!(!l[0].reason.contains("attempts"), "not retried: {:?}", l[0]);
    // Directory trouble does not count toward the lockout.
    let acc = im.login_account("alice").await.unwrap().unwrap();
    assert_eq!(acc.failed_logins, 0);
    im.close();
}

#[cfg(feature = "ad")]
fn ldaps_url(l: &slapd::Slapd) -> &str {
    &l.ldaps_url
}

#[cfg(feature = "ad")]
#[tokio::test]
async fn ad_server_down_is_unavailable_after_the_retries() {
    // The CA file must exist and parse; the server itself is absent, so any
    // self-made PEM will do: use a slapd CA when available, else skip.
    let Some(ldap) = slapd::Slapd::start() else {
        return;
    };
    let port = slapd::free_port();
    let cfg = AdConfig::search(
        format!("ldaps://127.0.0.1:{port}"),
        ldap.ca_file(),
        slapd::SVC_DN,
        slapd::SVC_PW,
        "ou=people,dc=example,dc=com",
    );
    let (_d, im) = open(ad_login(cfg));
    ad_accounts(&im).await;
    let t = std::time::Instant::now();
    let r = im.login("alice", "alicepass", IP).await;
    assert!(matches!(r, Err(LoginError::DirectoryUnavailable)), "{r:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "waited between retries"
    );
    let l = log(&im).await;
    assert_eq!(l.len(), 1);
    assert!(
        l[0].reason.contains("(after 3 attempts)"),
        "1 try + 2 retries: {:?}",
        l[0]
    );
    assert!(!l[0].success);
}

#[cfg(feature = "ad")]
#[tokio::test]
async fn bad_ad_settings_are_start_up_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = CoreConfig::new(dir.path().join("im.db"));
    cfg.login.ad = Some(AdConfig::search(
        "ldap://127.0.0.1:389",
        dir.path().join("ca.pem"),
        "cn=svc",
        "pw",
        "dc=x",
    ));
    let e = Im::open(cfg.clone()).unwrap_err().to_string();
    assert!(e.contains("starttls"), "{e}");
    cfg.login.ad = Some(AdConfig::search(
        "ldaps://127.0.0.1:636",
        dir.path().join("missing-ca.pem"),
        "cn=svc",
        "pw",
        "dc=x",
    ));
    let e = Im::open(cfg).unwrap_err().to_string();
    assert!(e.contains("ad.ca_file"), "{e}");
}

#[tokio::test]
async fn ad_account_without_ad_settings_is_refused() {
    let (_d, im) = open(LoginConfig::default());
    im.create_account("alice", "Alice", AuthMode::Ad, None, &[])
        .await
        .unwrap();
    assert_eq!(
        refusal(im.login("alice", "alicepass", IP).await),
        Refusal::DirectoryNotConfigured
    );
    let l = log(&im).await;
    assert_eq!(l[0].reason, "AD account but no AD configured");
}
