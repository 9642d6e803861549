//! SQL of the access model: an account's roles with their permissions,
//! roles, organisations and the accounts as administrators list them.

use crate::access::{Access, Permissions, Role, visible_from_json};
use crate::admin::{Organisation, UserView};
use crate::login::AuthMode;
use crate::operator::{OpError, Page, PageRequest};
use rusqlite::{Connection, OptionalExtension, Row, params};

fn role_row(r: &Row<'_>) -> rusqlite::Result<Role> {
    let perms: String = r.get(3)?;
    let visible: String = r.get(4)?;
    Ok(Role {
        code: r.get(0)?,
        name: r.get(1)?,
        om_interface: r.get(2)?,
        permissions: Permissions::from_json(&perms),
        visible: visible_from_json(&visible),
    })
}

/// What the enabled account `login` may do (`None`: unknown or disabled).
pub(crate) fn access_of(conn: &Connection, login: &str) -> Result<Option<Access>, OpError> {
    let acc: Option<(i64, String, bool)> = conn
        .prepare_cached("SELECT id, login, enabled FROM account WHERE login = ?1")?
        .query_row([login], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((id, login, true)) = acc else {
        return Ok(None);
    };
    let roles = conn
        .prepare_cached(
            "SELECT r.code, r.name, r.om_interface, r.permissions, r.visible_protected \
             FROM account_role ar JOIN role r ON r.id = ar.role_id WHERE ar.account_id = ?1 \
             ORDER BY r.code",
        )?
        .query_map([id], role_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(Access::of(&login, &roles)))
}

/// Every role, by code.
pub(crate) fn roles(conn: &Connection) -> Result<Vec<Role>, OpError> {
    Ok(conn
        .prepare_cached(
            "SELECT code, name, om_interface, permissions, visible_protected FROM role \
             ORDER BY code COLLATE NOCASE LIMIT 1000",
        )?
        .query_map([], role_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Every organisation, by code.
pub(crate) fn organisations(conn: &Connection) -> Result<Vec<Organisation>, OpError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, code, name FROM organisation ORDER BY code COLLATE NOCASE LIMIT 1000",
        )?
        .query_map([], |r| {
            Ok(Organisation {
                id: r.get(0)?,
                code: r.get(1)?,
                name: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?)
}

/// An organisation's row id.
pub(crate) fn organisation_id(conn: &Connection, code: &str) -> Result<Option<i64>, OpError> {
    Ok(conn
        .prepare_cached("SELECT id FROM organisation WHERE code = ?1")?
        .query_row([code], |r| r.get(0))
        .optional()?)
}

/// An account's row id.
pub(crate) fn account_id(conn: &Connection, login: &str) -> Result<Option<i64>, OpError> {
    Ok(conn
        .prepare_cached("SELECT id FROM account WHERE login = ?1")?
        .query_row([login], |r| r.get(0))
        .optional()?)
}

/// Grants each role code (each must exist).
pub(crate) fn set_roles(
    conn: &Connection,
    account_id: i64,
    roles: &[String],
) -> Result<(), OpError> {
    for role in roles {
        let n = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO account_role (account_id, role_id) \
                 SELECT ?1, id FROM role WHERE code = ?2",
            )?
            .execute(params![account_id, role])?;
        if n == 0 {
            let exists: bool = conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM role WHERE code = ?1)")?
                .query_row([role], |r| r.get(0))?;
            if !exists {
                return Err(OpError::Invalid(format!("no role {role:?}")));
            }
        }
    }
    Ok(())
}

/// Accounts (one by login, or a page of all, newest first).
pub(crate) fn users(
    conn: &Connection,
    login: Option<&str>,
    page: &PageRequest,
) -> Result<Page<UserView>, OpError> {
    let rows = conn
        .prepare_cached(
            "SELECT a.id, a.login, a.display_name, o.code, a.auth_mode, a.enabled, \
             coalesce((SELECT group_concat(code, ',') FROM (SELECT r.code AS code FROM account_role ar \
                JOIN role r ON r.id = ar.role_id WHERE ar.account_id = a.id ORDER BY r.code)), ''), \
             a.last_login, a.locked_until, a.created \
             FROM account a LEFT JOIN organisation o ON o.id = a.organisation_id \
             WHERE (?1 IS NULL OR a.login = ?1) AND a.id < ?2 ORDER BY a.id DESC LIMIT ?3",
        )?
        .query_map(params![login, page.sql_before(), page.sql_limit()], |r| {
            let mode: String = r.get(4)?;
            let roles: String = r.get(6)?;
            Ok(UserView {
                id: r.get(0)?,
                login: r.get(1)?,
                display_name: r.get(2)?,
                organisation: r.get(3)?,
                mode: AuthMode::parse(&mode).unwrap_or(AuthMode::Local),
                enabled: r.get(5)?,
                roles: roles
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                last_login: r.get(7)?,
                locked_until: r.get(8)?,
                created: r.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, page, |u| u.id))
}
