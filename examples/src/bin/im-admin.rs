//! The admin tool: what an operator needs before the API is reachable — the
//! first administrator, users, password resets, disabling and enabling
//! users, and the OM account's password (`docs/operations.md`, "First start
//! and accounts").
//!
//! ```text
//! im-admin --database data/im.db create-admin admin --display "Site admin"
//! im-admin add-user alice --mode local --role ROLE_ADMIN
//! im-admin add-user bob --mode ad --display "Bob (AD)"
//! im-admin reset-password alice
//! im-admin disable bob
//! im-admin set-om-password
//! im-admin list-users
//! ```
//!
//! Passwords are never taken from the command line: on a terminal they are
//! read without echo and asked twice; otherwise one line of standard input
//! is read (for scripts). Exit codes: 0 done, 1 refused or failed (one line
//! on standard error), 2 usage.

use clap::{Parser, Subcommand, ValueEnum};
use im_core::audit::{OpAction, OpOutcome, Operation};
use im_core::login::{AuthMode, LoginAccount, MAX_PASSWORD_LEN, SecretString};
use im_core::operator::Actor;
use im_core::{CoreConfig, Im};
use im_examples::init_logging;
use im_soap::config::LogFormat;
use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::runtime::Runtime;

/// The administrators' role code.
const ADMIN_ROLE: &str = "ROLE_ADMIN";

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "im-admin",
    version,
    about = "IM account administration: first administrator, users, passwords"
)]
struct Args {
    /// The IM database.
    #[arg(long, global = true, default_value = "./data/im.db")]
    database: PathBuf,
    /// The key file (default: the database's path with the extension `.key`).
    #[arg(long, global = true)]
    key_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// An account's auth mode.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Password checked against IM's Argon2id hash.
    Local,
    /// Password checked by Active Directory (none stored in IM).
    Ad,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Creates the first administrator: a LOCAL account with ROLE_ADMIN
    /// (creates the database and the role when absent).
    CreateAdmin {
        /// The administrator's login.
        login: String,
        /// Display name.
        #[arg(long)]
        display: Option<String>,
        /// Create it even though an administrator exists.
        #[arg(long)]
        force: bool,
    },
    /// Adds a user (LOCAL: asks for a password; AD: none).
    AddUser {
        /// The user's login.
        login: String,
        /// How the user's password is checked.
        #[arg(long, value_enum)]
        mode: ModeArg,
        /// Display name.
        #[arg(long)]
        display: Option<String>,
        /// A role code to grant (repeatable).
        #[arg(long = "role", value_name = "CODE")]
        roles: Vec<String>,
    },
    /// Sets a new password for a LOCAL user (and clears a lockout).
    ResetPassword {
        /// The user's login.
        login: String,
    },
    /// Disables a user (accounts are never deleted).
    Disable {
        /// The user's login.
        login: String,
    },
    /// Enables a disabled user.
    Enable {
        /// The user's login.
        login: String,
    },
    /// Sets the OM account's password (creates the account when absent).
    SetOmPassword {
        /// The OM account's login.
        #[arg(long, default_value = "OM_webservice")]
        login: String,
    },
    /// Lists the accounts: login, display name, mode, enabled, roles, last login.
    ListUsers,
}

impl Command {
    /// Whether the command may create the database (first-start steps only).
    fn may_create(&self) -> bool {
        matches!(
            self,
            Command::CreateAdmin { .. } | Command::SetOmPassword { .. }
        )
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(LogFormat::Text, "warn");
    match run(args) {
        Ok(done) => {
            if !done.is_empty() {
                println!("{done}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("im-admin: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let im = open(&args)?;
    let op = operation_of(&args.command);
    let r = execute(&rt, &im, args.command);
    // Every use of the tool lands in the operation log, as the tool and the
    // operating-system user that ran it, from the local machine.
    let actor = Actor::new(
        format!(
            "im-admin:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        ),
        "local",
    );
    let logged = Operation {
        outcome: if r.is_ok() {
            OpOutcome::Success
        } else {
            OpOutcome::Failure
        },
        detail: match &r {
            Ok(_) => op.detail.clone(),
            Err(e) => e.chars().take(200).collect(),
        },
        ..op
    };
    if let Err(e) = rt.block_on(im.record_operation(&actor, logged)) {
        eprintln!("im-admin: cannot write the operation log: {e}");
    }
    im.close();
    r
}

/// The operation-log row of a command (its outcome is filled in after).
fn operation_of(command: &Command) -> Operation {
    let (action, target, detail) = match command {
        Command::CreateAdmin { login, .. } => (OpAction::Add, login.trim(), "create-admin"),
        Command::AddUser { login, .. } => (OpAction::Add, login.trim(), "add-user"),
        Command::ResetPassword { login } => (OpAction::Modify, login.trim(), "reset-password"),
        Command::Disable { login } => (OpAction::Delete, login.trim(), "disable"),
        Command::Enable { login } => (OpAction::Modify, login.trim(), "enable"),
        Command::SetOmPassword { login } => (OpAction::Modify, login.trim(), "set-om-password"),
        Command::ListUsers => (OpAction::Query, "", "list-users"),
    };
    Operation::success(action, "users", target, detail)
}

fn open(args: &Args) -> Result<Im, String> {
    let db = &args.database;
    if !db.exists() {
        if !args.command.may_create() {
            return Err(format!(
                "no database at {} (create-admin creates it)",
                db.display()
            ));
        }
        if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    let mut config = CoreConfig::new(db.clone());
    if let Some(k) = &args.key_file {
        config.key_file = k.clone();
    }
    Im::open(config).map_err(|e| format!("{}: {e}", db.display()))
}

fn execute(rt: &Runtime, im: &Im, command: Command) -> Result<String, String> {
    let err = |e: im_core::CoreError| e.to_string();
    match command {
        Command::CreateAdmin {
            login,
            display,
            force,
        } => {
            let accounts = rt.block_on(im.accounts()).map_err(err)?;
            let admins: Vec<&str> = accounts
                .iter()
                .filter(|a| is_admin(a))
                .map(|a| a.login.as_str())
                .collect();
            if !admins.is_empty() && !force {
                return Err(format!(
                    "an administrator exists already ({}); use --force to add another",
                    admins.join(", ")
                ));
            }
            if accounts
                .iter()
                .any(|a| a.login.eq_ignore_ascii_case(login.trim()))
            {
                return Err(format!("account {:?} exists already", login.trim()));
            }
            let password = read_password("Password")?;
            rt.block_on(im.ensure_role(ADMIN_ROLE, "Administrator"))
                .map_err(err)?;
            rt.block_on(im.create_account(
                &login,
                display.as_deref().unwrap_or(""),
                AuthMode::Local,
                Some(password.expose()),
                &[ADMIN_ROLE],
            ))
            .map_err(err)?;
            Ok(format!("created administrator {}", login.trim()))
        }
        Command::AddUser {
            login,
            mode,
            display,
            roles,
        } => {
            if rt
                .block_on(im.login_account(&login))
                .map_err(err)?
                .is_some()
            {
                return Err(format!("account {:?} exists already", login.trim()));
            }
            let (mode, password) = match mode {
                ModeArg::Local => (AuthMode::Local, Some(read_password("Password")?)),
                ModeArg::Ad => (AuthMode::Ad, None),
            };
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            rt.block_on(im.create_account(
                &login,
                display.as_deref().unwrap_or(""),
                mode,
                password.as_ref().map(SecretString::expose),
                &roles,
            ))
            .map_err(err)?;
            Ok(format!("added {} user {}", mode.as_str(), login.trim()))
        }
        Command::ResetPassword { login } => {
            match rt.block_on(im.login_account(&login)).map_err(err)? {
                None => return Err(format!("no account {:?}", login.trim())),
                Some(a) if a.mode == AuthMode::Ad => {
                    return Err(format!(
                        "{} is an AD account: its password lives in AD",
                        a.login
                    ));
                }
                Some(_) => {}
            }
            let password = read_password("New password")?;
            rt.block_on(im.set_password(&login, password.expose()))
                .map_err(err)?;
            Ok(format!("password of {} reset", login.trim()))
        }
        Command::Disable { login } => {
            rt.block_on(im.set_enabled(&login, false)).map_err(err)?;
            Ok(format!("disabled {}", login.trim()))
        }
        Command::Enable { login } => {
            rt.block_on(im.set_enabled(&login, true)).map_err(err)?;
            Ok(format!("enabled {}", login.trim()))
        }
        Command::SetOmPassword { login } => {
            if let Some(a) = rt.block_on(im.login_account(&login)).map_err(err)?
                && a.mode == AuthMode::Ad
            {
                return Err(format!("{} is an AD account", a.login));
            }
            let password = read_password("OM password")?;
            im.set_om_account(&login, password.expose()).map_err(err)?;
            Ok(format!("OM password of {} set", login.trim()))
        }
        Command::ListUsers => {
            let accounts = rt.block_on(im.accounts()).map_err(err)?;
            print_table(&accounts);
            Ok(String::new())
        }
    }
}

fn is_admin(a: &LoginAccount) -> bool {
    a.roles.iter().any(|r| r.eq_ignore_ascii_case(ADMIN_ROLE))
}

/// Reads a password: without echo and twice on a terminal, else one line of
/// standard input. Empty and over-long passwords are refused.
fn read_password(prompt: &str) -> Result<SecretString, String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = rpassword::prompt_password(format!("{prompt}: "))
            .map_err(|e| format!("cannot read the password: {e}"))?;
        if first.is_empty() {
            return Err("empty password refused".into());
        }
        let again = rpassword::prompt_password(format!("{prompt} (again): "))
            .map_err(|e| format!("cannot read the password: {e}"))?;
        if first != again {
            return Err("the passwords do not match".into());
        }
        first
    } else {
        let mut line = String::new();
        let limit = u64::try_from(MAX_PASSWORD_LEN).unwrap_or(u64::MAX) + 3;
        stdin
            .lock()
            .take(limit)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        let end = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(end);
        line
    };
    if password.is_empty() {
        return Err("empty password refused".into());
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "password refused: longer than {MAX_PASSWORD_LEN} bytes"
        ));
    }
    Ok(SecretString::new(password))
}

fn print_table(accounts: &[LoginAccount]) {
    let rows: Vec<[String; 6]> = accounts
        .iter()
        .map(|a| {
            [
                a.login.clone(),
                a.display_name.clone(),
                a.mode.as_str().to_string(),
                if a.enabled { "yes" } else { "no" }.to_string(),
                if a.roles.is_empty() {
                    "-".to_string()
                } else {
                    a.roles.join(",")
                },
                a.last_login.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["LOGIN", "DISPLAY", "MODE", "ENABLED", "ROLES", "LAST LOGIN"];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{s}");
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
}
