//! `im-admin` run as a process against a temporary database, passwords piped
//! on standard input; the results checked through the core's public API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use im_core::login::Refusal;
use im_core::{CoreConfig, ErrorCode, Form, FormItem, Im};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Db {
    _dir: tempfile::TempDir,
    db: PathBuf,
    key: PathBuf,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data").join("im.db");
        let key = dir.path().join("keys").join("im.key");
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        Db { _dir: dir, db, key }
    }

    /// Runs `im-admin ARGS` with `stdin` piped in.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_im-admin"))
            .arg("--database")
            .arg(&self.db)
            .arg("--key-file")
            .arg(&self.key)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A refusal may exit before reading: ignore a broken pipe.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        child.wait_with_output().unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    #[track_caller]
    fn refused(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        err
    }

    /// Opens the database with the core (after the CLI has exited).
    fn open(&self) -> Im {
        let mut c = CoreConfig::new(&self.db);
        c.key_file = self.key.clone();
        Im::open(c).unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn login(db: &Path, key: &Path, user: &str, password: &str) -> Result<Vec<String>, Refusal> {
    let mut c = CoreConfig::new(db);
    c.key_file = key.to_path_buf();
    let im = Im::open(c).unwrap();
    let r = block(im.login(user, password, "127.0.0.1"));
    im.close();
    match r {
        Ok(p) => Ok(p.roles),
        Err(e) => Err(e.refusal().expect("a refusal")),
    }
}

#[test]
fn create_admin_then_login_and_second_admin_refused() {
    let t = Db::new();
    let out = t.ok(&["create-admin", "root", "--display", "Root"], "s3cret-1\n");
    assert!(out.contains("root"));
    assert!(!out.contains("s3cret-1"));
    let roles = login(&t.db, &t.key, "root", "s3cret-1").unwrap();
    assert_eq!(roles, vec!["ROLE_ADMIN".to_string()]);
    assert_eq!(
        login(&t.db, &t.key, "root", "wrong"),
        Err(Refusal::WrongPassword)
    );

    let err = t.refused(&["create-admin", "root2"], "other-pw\n");
    assert!(err.contains("administrator exists"), "{err}");
    assert_eq!(
        login(&t.db, &t.key, "root2", "other-pw"),
        Err(Refusal::UnknownAccount)
    );
    // --force adds a second one (the role exists already).
    t.ok(&["create-admin", "root2", "--force"], "other-pw\r\n");
    assert!(login(&t.db, &t.key, "root2", "other-pw").is_ok());
}

#[test]
fn disable_enable_and_reset_password() {
    let t = Db::new();
    t.ok(&["create-admin", "root"], "root-pw\n");
    t.ok(
        &["add-user", "alice", "--mode", "local", "--display", "Alice"],
        "old-pw\n",
    );
    assert!(login(&t.db, &t.key, "alice", "old-pw").is_ok());

    t.ok(&["disable", "alice"], "");
    assert_eq!(
        login(&t.db, &t.key, "alice", "old-pw"),
        Err(Refusal::Disabled)
    );

    t.ok(&["enable", "alice"], "");
    t.ok(&["reset-password", "alice"], "new-pw\n");
    assert!(login(&t.db, &t.key, "alice", "new-pw").is_ok());
    assert_eq!(
        login(&t.db, &t.key, "alice", "old-pw"),
        Err(Refusal::WrongPassword)
    );

    let err = t.refused(&["disable", "nobody"], "");
    assert!(err.contains("nobody"), "{err}");
    let err = t.refused(&["reset-password", "nobody"], "x\n");
    assert!(err.contains("nobody"), "{err}");

    // Every use of the tool is in the operation log, failures included,
    // and never a password.
    let conn = rusqlite::Connection::open(&t.db).unwrap();
    let rows: Vec<String> = conn
        .prepare("SELECT action || ' ' || target || ' ' || outcome || ' ' || detail FROM operation_log WHERE account LIKE 'im-admin:%' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 7, "{rows:?}");
    assert_eq!(rows[0], "ADD root SUCCESS create-admin");
    assert_eq!(rows[2], "DELETE alice SUCCESS disable");
    assert!(rows[5].starts_with("DELETE nobody FAILURE"), "{rows:?}");
    assert!(rows.iter().all(|r| !r.contains("-pw")), "{rows:?}");
}

#[test]
fn empty_passwords_are_refused() {
    let t = Db::new();
    let err = t.refused(&["create-admin", "root"], "\n");
    assert!(err.contains("empty password"), "{err}");
    let err = t.refused(&["create-admin", "root"], "");
    assert!(err.contains("empty password"), "{err}");
    assert_eq!(
        login(&t.db, &t.key, "root", "x"),
        Err(Refusal::UnknownAccount)
    );
    t.ok(&["create-admin", "root"], "pw\n");
    t.refused(&["reset-password", "root"], "\n");
    t.refused(&["set-om-password"], "\n");
    t.refused(&["add-user", "bob", "--mode", "local"], "\n");
    assert!(login(&t.db, &t.key, "root", "pw").is_ok());
}

#[test]
fn set_om_password_authenticates_om_calls() {
    let t = Db::new();
    t.ok(&["set-om-password"], "om-first\n");
    t.ok(
        &["set-om-password", "--login", "OM_webservice"],
        "om-second\n",
    );
    let im = t.open();
    let query = |flow: &str, password: &str| {
        im.submit_blocking(
            Form::default()
                .field("authusername", "OM_webservice")
                .field("authpassword", password)
                .field("flowId", flow)
                .field("popid", "19601")
                .item(
                    FormItem::default()
                        .field("opertype", "Query")
                        .field("UserName", "nobody@x"),
                ),
        )
    };
    let o = query("Q1", "om-second");
    assert_ne!(o.error_code, ErrorCode::AuthFailed, "{o:?}");
    let o = query("Q2", "om-first");
    assert_eq!(o.error_code, ErrorCode::AuthFailed, "{o:?}");
    im.close();
}

#[test]
fn list_users_shows_accounts_without_hashes() {
    let t = Db::new();
    t.ok(
        &["create-admin", "root", "--display", "Root Admin"],
        "pw-1\n",
    );
    t.ok(
        &[
            "add-user",
            "bob",
            "--mode",
            "ad",
            "--display",
            "Bob",
            "--role",
            "ROLE_ADMIN",
        ],
        "",
    );
    t.ok(&["set-om-password"], "om-pw\n");
    t.ok(&["disable", "bob"], "");
    assert!(login(&t.db, &t.key, "root", "pw-1").is_ok());

    let out = t.ok(&["list-users"], "");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("LOGIN"), "{out}");
    let row = |login: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(login))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no row for {login}: {out}"))
    };
    let root = row("root");
    assert!(root.contains(&"LOCAL") && root.contains(&"yes") && root.contains(&"ROLE_ADMIN"));
    assert!(root.last().unwrap().starts_with("20"), "last login: {out}");
    let bob = row("bob");
    assert!(bob.contains(&"AD") && bob.contains(&"no"), "{out}");
    let om = row("OM_webservice");
    assert!(om.contains(&"ROLE_OM_INTERFACE"), "{out}");
    assert!(!out.contains("argon2"), "no hash: {out}");
    for secret in ["pw-1", "om-pw"] {
        assert!(!out.contains(secret));
    }
}

#[test]
fn usage_errors_exit_2_and_a_missing_database_is_not_created() {
    let t = Db::new();
    assert_eq!(t.run(&["frobnicate"], "").status.code(), Some(2));
    assert_eq!(
        t.run(&["add-user", "x", "--mode", "nis"], "").status.code(),
        Some(2)
    );
    let err = t.refused(&["list-users"], "");
    assert!(err.contains("no database"), "{err}");
    assert!(!t.db.exists());
}

/// An OM password set with `im-admin` before the first start survives the
/// demo data that the first start loads.
#[test]
fn an_om_password_set_before_the_first_start_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("im.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_im-admin"))
        .args(["--database", db.to_str().unwrap(), "set-om-password"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"set-before-start\n")?;
            c.wait()
        })
        .unwrap();
    assert!(out.success());
    let im = im_core::Im::open(im_core::CoreConfig::new(&db)).unwrap();
    assert!(
        im_core::demo::install_if_empty(&im).unwrap(),
        "the inventory was empty"
    );
    let query = |pw: &str| {
        im_core::Form::default()
            .field("authusername", "OM_webservice")
            .field("authpassword", pw)
            .field("flowId", "Q-first-start")
            .field("popid", "19601")
            .item(
                im_core::FormItem::default()
                    .field("opertype", "Query")
                    .field("UserName", "x"),
            )
    };
    assert_eq!(
        im.submit_blocking(query("set-before-start")).error_code,
        im_core::ErrorCode::Success
    );
    assert_eq!(
        im.submit_blocking(query("om-demo-secret")).error_code,
        im_core::ErrorCode::AuthFailed
    );
}
