//! Account administration: for operator tools (`im-admin`: creating a role,
//! listing the accounts) and for administrators through the operators' API
//! (users, roles and organisations). Changes run on the writer's
//! connection, each in its own transaction with its operation-log row.
//! Accounts are disabled, never deleted; a login never changes once
//! created. They need the SQLite store; on another store they fail.

use crate::access::{Role, visible_to_json};
use crate::audit::{OpAction, Operation};
use crate::login::{AuthMode, LoginAccount, LoginRead, MAX_LOGIN_LEN};
use crate::operator::{Actor, OpError, Page, PageRequest, required, text};
use crate::store::sqlite::{HasConn, SqliteReader, SqliteWriter, backend};
use crate::store::{StoreError, WriteConn};
use crate::{CoreError, Im, auth};
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

impl Im {
    /// Creates the role `code` named `name` (no OM-interface right, no
    /// permissions) unless a role of that code exists; returns whether it
    /// was created. An existing role is left as it is.
    ///
    /// # Errors
    ///
    /// [`CoreError::Invalid`] for an empty or over-long code, storage failures.
    pub async fn ensure_role(&self, code: &str, name: &str) -> Result<bool, CoreError> {
        let code = code.trim().to_string();
        if code.is_empty()
            || code.chars().count() > MAX_LOGIN_LEN
            || code.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(CoreError::Invalid(format!(
                "a role code is 1 to {MAX_LOGIN_LEN} characters, without spaces"
            )));
        }
        let name = match name.trim() {
            "" => code.clone(),
            n => n.to_string(),
        };
        self.on_sqlite_writer::<_, CoreError>(move |w| {
            let n = w
                .conn()
                .prepare_cached(
                    "INSERT INTO role (code, name) VALUES (?1, ?2) ON CONFLICT (code) DO NOTHING",
                )
                .and_then(|mut st| st.execute(params![code, name]))
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    /// Every account, ordered by login, with its roles and last login. The
    /// password hashes are left out (`password_hash` is `None`).
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub async fn accounts(&self) -> Result<Vec<LoginAccount>, CoreError> {
        self.on_sqlite_writer::<_, CoreError>(|w| {
            let logins = w
                .conn()
                .prepare_cached("SELECT login FROM account ORDER BY login COLLATE NOCASE")
                .and_then(|mut st| {
                    st.query_map([], |r| r.get::<_, String>(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(backend)?;
            let mut out = Vec::with_capacity(logins.len());
            for login in logins {
                if let Some(mut a) = w.login_account(&login)? {
                    a.password_hash = None;
                    out.push(a);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Runs `f` on the SQLite writer in its own transaction (committed when
    /// `f` succeeds) and waits for its answer.
    pub(crate) async fn on_sqlite_writer<T: Send + 'static, E>(
        &self,
        f: impl FnOnce(&mut SqliteWriter) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        E: From<CoreError> + From<StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.send_writer_job(Box::new(move |conn| {
            let r = match conn.downcast_mut::<SqliteWriter>() {
                Some(w) => in_transaction(w, f),
                None => Err(E::from(CoreError::Invalid(
                    "account administration needs the SQLite store".into(),
                ))),
            };
            let _ = tx.send(r);
        }))
        .map_err(E::from)?;
        rx.await.map_err(|_| E::from(CoreError::Closed))?
    }

    /// Runs `f` on a read thread's SQLite connection and waits for its answer.
    pub(crate) async fn on_sqlite_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, OpError> + Send + 'static,
    ) -> Result<T, OpError> {
        let r = self
            .login_read(move |conn| {
                Ok(match conn.as_any_mut().downcast_mut::<SqliteReader>() {
                    Some(r) => f(r.conn()),
                    None => Err(OpError::Internal(
                        "the operators' queries need the SQLite store".into(),
                    )),
                })
            })
            .await;
        match r {
            Ok(v) => v,
            Err(e) => Err(e.into()),
        }
    }
}

fn in_transaction<T, E: From<StoreError>>(
    w: &mut SqliteWriter,
    f: impl FnOnce(&mut SqliteWriter) -> Result<T, E>,
) -> Result<T, E> {
    w.begin()?;
    match f(w) {
        Ok(v) => match w.commit() {
            Ok(()) => Ok(v),
            Err(e) => {
                w.rollback();
                Err(e.into())
            }
        },
        Err(e) => {
            w.rollback();
            Err(e)
        }
    }
}

/// An account as administrators see it (never a password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    /// Row id.
    pub id: i64,
    /// Login as stored (never changes).
    pub login: String,
    /// Display name.
    pub display_name: String,
    /// Organisation code, if any.
    pub organisation: Option<String>,
    /// `LOCAL` or `AD`.
    pub mode: AuthMode,
    /// Enabled flag.
    pub enabled: bool,
    /// Role codes, sorted.
    pub roles: Vec<String>,
    /// Last successful login.
    pub last_login: Option<String>,
    /// Locked until (after repeated failures).
    pub locked_until: Option<String>,
    /// Creation time.
    pub created: String,
}

/// A new account for [`Im::create_user`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Login (1 to 128 characters; unique, case-insensitive).
    pub login: String,
    /// Display name.
    pub display_name: String,
    /// `LOCAL` (needs a password) or `AD` (takes none).
    pub mode: AuthMode,
    /// The password of a `LOCAL` account.
    pub password: Option<String>,
    /// Role codes to grant (each must exist).
    pub roles: Vec<String>,
    /// Organisation code (must exist), if any.
    pub organisation: Option<String>,
}

/// An organisation (department).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    /// Row id.
    pub id: i64,
    /// Code, unique, case-insensitive.
    pub code: String,
    /// Name.
    pub name: String,
}

fn code_text(what: &str, code: &str) -> Result<String, OpError> {
    let c = required(what, code)?;
    if c.chars().count() > MAX_LOGIN_LEN || c.chars().any(char::is_whitespace) {
        return Err(OpError::Invalid(format!(
            "{what}: 1 to {MAX_LOGIN_LEN} characters, without spaces"
        )));
    }
    Ok(c)
}

fn no_user(login: &str) -> OpError {
    OpError::NotFound(format!("no account {login:?}"))
}

impl Im {
    /// One page of accounts, newest first.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub async fn users(&self, page: PageRequest) -> Result<Page<UserView>, OpError> {
        self.on_sqlite_reader(move |c| crate::store::sqlite::access::users(c, None, &page))
            .await
    }

    /// One account, or [`OpError::NotFound`].
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`], storage failures.
    pub async fn user(&self, login: &str) -> Result<UserView, OpError> {
        let l = login.trim().to_string();
        self.on_sqlite_reader(move |c| {
            crate::store::sqlite::access::users(c, Some(&l), &PageRequest::default())?
                .items
                .pop()
                .ok_or_else(|| no_user(&l))
        })
        .await
    }

    /// Creates an enabled account with its roles and organisation, and logs
    /// it (`ADD users <login>`), in one transaction.
    ///
    /// # Errors
    ///
    /// [`OpError::Invalid`] for a bad login, a missing `LOCAL` password or
    /// an `AD` one, an unknown role or organisation; [`OpError::Conflict`]
    /// when the login is taken.
    pub async fn create_user(&self, actor: &Actor, user: NewUser) -> Result<UserView, OpError> {
        let login = code_text("login", &user.login)?;
        let display = text("display_name", &user.display_name)?;
        let hash = match (user.mode, user.password) {
            (AuthMode::Local, Some(p)) if !p.is_empty() => {
                if p.len() > crate::login::MAX_PASSWORD_LEN {
                    return Err(OpError::Invalid("password too long".into()));
                }
                Some(
                    self.login_read(move |_| Ok(auth::hash_password(&p)))
                        .await??,
                )
            }
            (AuthMode::Local, _) => {
                return Err(OpError::Invalid(
                    "a LOCAL account needs a non-empty password".into(),
                ));
            }
            (AuthMode::Ad, None) => None,
            (AuthMode::Ad, Some(_)) => {
                return Err(OpError::Invalid(
                    "an AD account has no password in IM".into(),
                ));
            }
        };
        let roles = user
            .roles
            .iter()
            .map(|r| code_text("role", r))
            .collect::<Result<Vec<_>, _>>()?;
        let org = match user.organisation.as_deref().map(str::trim) {
            Some("") | None => None,
            Some(o) => Some(code_text("organisation", o)?),
        };
        let actor = actor.clone();
        let at = crate::lifecycle::stamp(std::time::SystemTime::now());
        self.on_sqlite_writer(move |w| {
            let c = w.conn();
            let exists: bool = c
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM account WHERE login = ?1)")?
                .query_row([&login], |r| r.get(0))?;
            if exists {
                return Err(OpError::Conflict(format!("account {login:?} exists already")));
            }
            let org_id = match &org {
                None => None,
                Some(o) => Some(
                    crate::store::sqlite::access::organisation_id(c, o)?
                        .ok_or_else(|| OpError::Invalid(format!("no organisation {o:?}")))?,
                ),
            };
            let id: i64 = c
                .prepare_cached(
                    "INSERT INTO account (login, display_name, organisation_id, auth_mode, enabled, \
                     password_hash, password_version, created, updated) \
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, 1, ?6, ?6) RETURNING id",
                )?
                .query_row(
                    params![login, display, org_id, user.mode.as_str(), hash, at],
                    |r| r.get(0),
                )?;
            crate::store::sqlite::access::set_roles(c, id, &roles)?;
            let detail = format!("mode {}, roles {}", user.mode.as_str(), roles.join(","));
            crate::store::sqlite::audit::append(
                c,
                &at,
                &actor,
                &Operation::success(OpAction::Add, "users", &login, &detail),
            )?;
            crate::store::sqlite::access::users(c, Some(&login), &PageRequest::default())?
                .items
                .pop()
                .ok_or_else(|| no_user(&login))
        })
        .await
    }

    /// Replaces an account's roles (each must exist), logged `MODIFY users`.
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`], [`OpError::Invalid`] for an unknown role.
    pub async fn set_user_roles(
        &self,
        actor: &Actor,
        login: &str,
        roles: &[String],
    ) -> Result<UserView, OpError> {
        let roles = roles
            .iter()
            .map(|r| code_text("role", r))
            .collect::<Result<Vec<_>, _>>()?;
        let login = login.trim().to_string();
        let actor = actor.clone();
        let at = crate::lifecycle::stamp(std::time::SystemTime::now());
        let r = self
            .on_sqlite_writer(move |w| {
                let c = w.conn();
                let id = crate::store::sqlite::access::account_id(c, &login)?
                    .ok_or_else(|| no_user(&login))?;
                c.prepare_cached("DELETE FROM account_role WHERE account_id = ?1")?
                    .execute([id])?;
                crate::store::sqlite::access::set_roles(c, id, &roles)?;
                crate::store::sqlite::audit::append(
                    c,
                    &at,
                    &actor,
                    &Operation::success(
                        OpAction::Modify,
                        "users",
                        &login,
                        &format!("roles {}", roles.join(",")),
                    ),
                )?;
                crate::store::sqlite::access::users(c, Some(&login), &PageRequest::default())?
                    .items
                    .pop()
                    .ok_or_else(|| no_user(&login))
            })
            .await;
        self.clear_credential_cache();
        r
    }

    /// Enables or disables an account (never deleted), logged `MODIFY users`.
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`].
    pub async fn set_user_enabled(
        &self,
        actor: &Actor,
        login: &str,
        enabled: bool,
    ) -> Result<UserView, OpError> {
        let login = login.trim().to_string();
        let actor = actor.clone();
        let at = crate::lifecycle::stamp(std::time::SystemTime::now());
        let r = self
            .on_sqlite_writer(move |w| {
                let c = w.conn();
                let n = c
                    .prepare_cached(
                        "UPDATE account SET enabled = ?2, updated = ?3 WHERE login = ?1",
                    )?
                    .execute(params![login, enabled, at])?;
                if n == 0 {
                    return Err(no_user(&login));
                }
                let what = if enabled { "enabled" } else { "disabled" };
                crate::store::sqlite::audit::append(
                    c,
                    &at,
                    &actor,
                    &Operation::success(OpAction::Modify, "users", &login, what),
                )?;
                crate::store::sqlite::access::users(c, Some(&login), &PageRequest::default())?
                    .items
                    .pop()
                    .ok_or_else(|| no_user(&login))
            })
            .await;
        self.clear_credential_cache();
        r
    }

    /// Sets a `LOCAL` account's password (and clears its lock), logged
    /// `MODIFY users` (never the password); drops cached credentials.
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`], [`OpError::Invalid`] for an empty password or
    /// an `AD` account.
    pub async fn reset_user_password(
        &self,
        actor: &Actor,
        login: &str,
        password: &str,
    ) -> Result<(), OpError> {
        if password.is_empty() || password.len() > crate::login::MAX_PASSWORD_LEN {
            return Err(OpError::Invalid(
                "the password must be 1 to 1024 bytes".into(),
            ));
        }
        let p = password.to_string();
        let hash = self
            .login_read(move |_| Ok(auth::hash_password(&p)))
            .await??;
        let login = login.trim().to_string();
        let actor = actor.clone();
        let at = crate::lifecycle::stamp(std::time::SystemTime::now());
        let r = self
            .on_sqlite_writer(move |w| {
                let acc = w.login_account(&login)?.ok_or_else(|| no_user(&login))?;
                if acc.mode != AuthMode::Local {
                    return Err(OpError::Invalid(format!(
                        "account {login:?} is an AD account: its password lives in AD"
                    )));
                }
                crate::login::LoginWrite::set_account_password(w, &login, &hash, &at)?;
                crate::store::sqlite::audit::append(
                    w.conn(),
                    &at,
                    &actor,
                    &Operation::success(OpAction::Modify, "users", &login, "password reset"),
                )?;
                Ok(())
            })
            .await;
        self.clear_credential_cache();
        r
    }

    /// Creates a role with its permissions, logged `ADD roles`.
    ///
    /// # Errors
    ///
    /// [`OpError::Invalid`] for a bad code, [`OpError::Conflict`] when the
    /// code is taken.
    pub async fn create_role(&self, actor: &Actor, role: Role) -> Result<Role, OpError> {
        let code = code_text("code", &role.code)?;
        let name = match text("name", &role.name)? {
            n if n.is_empty() => code.clone(),
            n => n,
        };
        let role = Role { code, name, ..role };
        let actor = actor.clone();
        let at = crate::lifecycle::stamp(std::time::SystemTime::now());
        self.on_sqlite_writer(move |w| {
            let c = w.conn();
            let n = c
                .prepare_cached(
                    "INSERT INTO role (code, name, om_interface, permissions, visible_protected) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (code) DO NOTHING",
                )?
                .execute(params![
                    role.code,
                    role.name,
                    role.om_interface,
                    role.permissions.to_json(),
                    visible_to_json(&role.visible)
                ])?;
            if n == 0 {
                return Err(OpError::Conflict(format!(
                    "role {:?} exists already",
                    role.code
                )));
            }
            crate::store::sqlite::audit::append(
                c,
                &at,
                &actor,
                &Operation::success(
                    OpAction::Add,
                    "roles",
                    &role.code,
                    &role.permissions.to_json(),
                ),
            )?;
            Ok(role)
        })
        .await
    }

    /// Every organisation, by code.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub async fn organisations(&self) -> Result<Vec<Organisation>, OpError> {
        self.on_sqlite_reader(crate::store::sqlite::access::organisations)
            .await
    }

    /// Creates an organisation, logged `ADD organisations`.
    ///
    /// # Errors
    ///
    /// [`OpError::Invalid`] for a bad code, [`OpError::Conflict`] when taken.
    pub async fn create_organisation(
        &self,
        actor: &Actor,
        code: &str,
        name: &str,
    ) -> Result<Organisation, OpError> {
        let code = code_text("code", code)?;
        let name = match text("name", name)? {
            n if n.is_empty() => code.clone(),
            n => n,
        };
        let actor = actor.clone();
        let at = crate::lifecycle::stamp(std::time::SystemTime::now());
        self.on_sqlite_writer(move |w| {
            let c = w.conn();
            let id: Option<i64> = c
                .prepare_cached(
                    "INSERT INTO organisation (code, name) VALUES (?1, ?2) \
                     ON CONFLICT (code) DO NOTHING RETURNING id",
                )?
                .query_row(params![code, name], |r| r.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            let Some(id) = id else {
                return Err(OpError::Conflict(format!(
                    "organisation {code:?} exists already"
                )));
            };
            crate::store::sqlite::audit::append(
                c,
                &at,
                &actor,
                &Operation::success(OpAction::Add, "organisations", &code, &name),
            )?;
            Ok(Organisation { id, code, name })
        })
        .await
    }
}

/// Built-in role codes (created by the schema).
pub mod builtin {
    /// Everything, every protected value in clear.
    pub const ROLE_ADMIN: &str = "ROLE_ADMIN";
    /// Reads everything but users and logs, changes tasks; sees Mobile and Email.
    pub const ROLE_TECH_L1: &str = "ROLE_TECH_L1";
    /// Reads inventory, services, tasks and sync; sees nothing in clear.
    pub const ROLE_VIEWER: &str = "ROLE_VIEWER";
    /// The OM web-service caller.
    pub const ROLE_OM_INTERFACE: &str = "ROLE_OM_INTERFACE";
}
