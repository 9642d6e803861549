//! Accounts as login sees them, and the append-only login log.

use super::{HasConn, SqliteWriter, backend};
use crate::login::{
    AuthMode, LoginAccount, LoginEvent, LoginLogEntry, LoginLogWrite, LoginRead, LoginWrite,
    NewAccount,
};
use crate::store::StoreResult;
use rusqlite::{OptionalExtension, params};

impl<T: HasConn> LoginRead for T {
    fn login_account(&mut self, login: &str) -> StoreResult<Option<LoginAccount>> {
        let conn = self.conn();
        let row = conn
            .prepare_cached(
                "SELECT id, login, display_name, auth_mode, enabled, password_hash, \
                 failed_logins, locked_until, last_login FROM account WHERE login = ?1",
            )
            .map_err(backend)?
            .query_row([login], |r| {
                let mode: String = r.get(3)?;
                Ok(LoginAccount {
                    id: r.get(0)?,
                    login: r.get(1)?,
                    display_name: r.get(2)?,
                    mode: AuthMode::parse(&mode).unwrap_or(AuthMode::Local),
                    enabled: r.get(4)?,
                    password_hash: r.get(5)?,
                    failed_logins: r.get::<_, i64>(6)?.clamp(0, i64::from(u32::MAX)) as u32,
                    locked_until: r.get(7)?,
                    last_login: r.get(8)?,
                    roles: Vec::new(),
                })
            })
            .optional()
            .map_err(backend)?;
        let Some(mut account) = row else {
            return Ok(None);
        };
        account.roles = conn
            .prepare_cached(
                "SELECT r.code FROM account_role ar JOIN role r ON r.id = ar.role_id \
                 WHERE ar.account_id = ?1 ORDER BY r.code",
            )
            .map_err(backend)?
            .query_map([account.id], |r| r.get(0))
            .map_err(backend)?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(backend)?;
        Ok(Some(account))
    }

    fn login_log(
        &mut self,
        account: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<LoginLogEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.conn()
            .prepare_cached(
                "SELECT id, at, account, ip, event, outcome, reason, auth_mode FROM login_log \
                 WHERE ?1 IS NULL OR account = ?1 COLLATE NOCASE ORDER BY id DESC LIMIT ?2",
            )
            .map_err(backend)?
            .query_map(params![account, limit], |r| {
                let event: String = r.get(4)?;
                let outcome: String = r.get(5)?;
                let mode: Option<String> = r.get(7)?;
                Ok(LoginLogEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    account: r.get(2)?,
                    ip: r.get(3)?,
                    event: if event == "LOGOUT" {
                        LoginEvent::Logout
                    } else {
                        LoginEvent::Login
                    },
                    success: outcome == "SUCCESS",
                    reason: r.get(6)?,
                    auth_mode: mode.as_deref().and_then(AuthMode::parse),
                })
            })
            .map_err(backend)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(backend)
    }
}

impl LoginWrite for SqliteWriter {
    fn insert_account(&mut self, a: &NewAccount<'_>) -> StoreResult<i64> {
        self.conn()
            .prepare_cached(
                "INSERT INTO account (login, display_name, auth_mode, enabled, password_hash, \
                 password_version, created, updated) VALUES (?1, ?2, ?3, 1, ?4, 1, ?5, ?5) RETURNING id",
            )
            .map_err(backend)?
            .query_row(
                params![a.login, a.display_name, a.mode.as_str(), a.password_hash, a.at],
                |r| r.get(0),
            )
            .map_err(backend)
    }

    fn grant_role(&mut self, account_id: i64, role_code: &str) -> StoreResult<bool> {
        let n = self
            .conn()
            .prepare_cached(
                "INSERT OR IGNORE INTO account_role (account_id, role_id) \
                 SELECT ?1, id FROM role WHERE code = ?2",
            )
            .map_err(backend)?
            .execute(params![account_id, role_code])
            .map_err(backend)?;
        if n > 0 {
            return Ok(true);
        }
        let exists: bool = self
            .conn()
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM role WHERE code = ?1)")
            .map_err(backend)?
            .query_row([role_code], |r| r.get(0))
            .map_err(backend)?;
        Ok(exists)
    }

    fn set_account_enabled(&mut self, login: &str, enabled: bool, at: &str) -> StoreResult<bool> {
        let n = self
            .conn()
            .prepare_cached("UPDATE account SET enabled = ?2, updated = ?3 WHERE login = ?1")
            .map_err(backend)?
            .execute(params![login, enabled, at])
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn set_account_password(&mut self, login: &str, hash: &str, at: &str) -> StoreResult<bool> {
        let n = self
            .conn()
            .prepare_cached(
                "UPDATE account SET password_hash = ?2, password_version = password_version + 1, \
                 failed_logins = 0, locked_until = NULL, updated = ?3 WHERE login = ?1",
            )
            .map_err(backend)?
            .execute(params![login, hash, at])
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn set_login_state(
        &mut self,
        account_id: i64,
        failed_logins: u32,
        locked_until: Option<&str>,
        last_login: Option<&str>,
    ) -> StoreResult<()> {
        self.conn()
            .prepare_cached(
                "UPDATE account SET failed_logins = ?2, locked_until = ?3, \
                 last_login = COALESCE(?4, last_login) WHERE id = ?1",
            )
            .map_err(backend)?
            .execute(params![account_id, failed_logins, locked_until, last_login])
            .map_err(backend)?;
        Ok(())
    }

    fn append_login_log(&mut self, e: &LoginLogWrite<'_>) -> StoreResult<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO login_log (at, account, ip, event, outcome, reason, auth_mode) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(backend)?
            .execute(params![
                e.at,
                e.account,
                e.ip,
                e.event.as_str(),
                if e.success { "SUCCESS" } else { "FAILURE" },
                e.reason,
                e.auth_mode.map(AuthMode::as_str),
            ])
            .map_err(backend)?;
        Ok(())
    }
}
