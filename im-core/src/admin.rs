//! Account administration for operator tools (`im-admin`): creating a role
//! and listing the accounts. Both run on the writer's connection, like the
//! other account changes, each in its own transaction. They need the SQLite
//! store; on another store they answer [`CoreError::Invalid`].

use crate::login::{LoginAccount, LoginRead, MAX_LOGIN_LEN};
use crate::store::WriteConn;
use crate::store::sqlite::{HasConn, SqliteWriter, backend};
use crate::{CoreError, Im};
use rusqlite::params;
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
        self.on_sqlite_writer(move |w| {
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
        self.on_sqlite_writer(|w| {
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
    async fn on_sqlite_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteWriter) -> Result<T, CoreError> + Send + 'static,
    ) -> Result<T, CoreError> {
        let (tx, rx) = oneshot::channel();
        self.send_writer_job(Box::new(move |conn| {
            let r = match conn.downcast_mut::<SqliteWriter>() {
                Some(w) => in_transaction(w, f),
                None => Err(CoreError::Invalid(
                    "account administration needs the SQLite store".into(),
                )),
            };
            let _ = tx.send(r);
        }))?;
        rx.await.map_err(|_| CoreError::Closed)?
    }
}

fn in_transaction<T>(
    w: &mut SqliteWriter,
    f: impl FnOnce(&mut SqliteWriter) -> Result<T, CoreError>,
) -> Result<T, CoreError> {
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
