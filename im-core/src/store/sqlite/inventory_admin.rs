//! SQL of manual inventory changes (see [`crate::inventory_admin`]): the
//! sync's natural-key lookups and row writes, with the resource-log row and
//! the holding checks of a removal.

use super::query::inventory_row;
use super::sync::lookup;
use super::{HasConn, SqliteWriter};
use crate::inventory_admin::store_err;
use crate::operator::{Actor, OpError};
use crate::query::InventoryRow;
use crate::store::{IdCache, ResourceLogWrite, SyncWrite};
use crate::sync::{Record, Resource, Val, json_of};
use rusqlite::{Connection, OptionalExtension};

fn log(
    w: &mut SqliteWriter,
    actor: &Actor,
    at: &str,
    rec: &Record,
    operation: &str,
    old: Option<&str>,
    new: Option<&str>,
) -> Result<(), OpError> {
    w.log_resource(&ResourceLogWrite {
        at,
        actor: &actor.account,
        ip: &actor.ip,
        resource_type: rec.resource.as_str(),
        code: &rec.code(),
        name: &rec.name(),
        operation,
        old_values: old,
        new_values: new,
    })
    .map_err(store_err)
}

fn current(conn: &Connection, r: Resource, key: &[Val]) -> Result<InventoryRow, OpError> {
    let row = lookup(conn, r, key)
        .map_err(store_err)?
        .ok_or_else(|| OpError::Internal("a changed row is gone".into()))?;
    inventory_row(conn, r, row)
}

/// Adds a row, or restores a removed one with the given values.
pub(crate) fn add(
    w: &mut SqliteWriter,
    actor: &Actor,
    at: &str,
    rec: &Record,
) -> Result<InventoryRow, OpError> {
    let r = rec.resource;
    let all: Vec<usize> = (0..r.fields().len()).collect();
    let mut ids = IdCache::default();
    match lookup(w.conn(), r, rec.key()).map_err(store_err)? {
        Some(row) if !row.removed => {
            return Err(OpError::Conflict(format!(
                "{r} {} exists already",
                rec.code()
            )));
        }
        Some(row) => {
            let changed: Vec<usize> = (r.key_len()..r.fields().len()).collect();
            w.sync_update(row.id, rec, &changed, true, &mut ids, at)
                .map_err(store_err)?;
            let old = json_of(r, &row.vals, &all);
            let new = json_of(r, &rec.vals, &all);
            log(w, actor, at, rec, "ADD", Some(&old), Some(&new))?;
        }
        None => {
            if r == Resource::Ont {
                ont_place_free(w.conn(), rec, None)?;
            }
            w.sync_insert(rec, &mut ids, at).map_err(store_err)?;
            let new = json_of(r, &rec.vals, &all);
            log(w, actor, at, rec, "ADD", None, Some(&new))?;
        }
    }
    current(w.conn(), r, rec.key())
}

/// Whether an ONT's place (PON port, ONT id) is free.
fn ont_place_free(conn: &Connection, rec: &Record, own: Option<i64>) -> Result<(), OpError> {
    let pon = rec.vals.get(1).and_then(Val::as_text).unwrap_or_default();
    let Some((olt, f, s, p)) = crate::query::parse_port(pon) else {
        return Err(OpError::Invalid("ont pon: OLT/frame/slot/port".into()));
    };
    let ont_id = match rec.vals.get(2) {
        Some(Val::Int(n)) => *n,
        _ => return Err(OpError::Invalid("ont_id is required".into())),
    };
    let taken: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT t.id, t.serial FROM ont t JOIN pon_port pp ON pp.id = t.pon_port_id \
             JOIN olt o ON o.id = pp.olt_id WHERE o.name = ?1 AND pp.frame = ?2 AND pp.slot = ?3 \
             AND pp.port = ?4 AND t.place = ?5",
        )?
        .query_row(rusqlite::params![olt, f, s, p, ont_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match taken {
        Some((id, serial)) if Some(id) != own => Err(OpError::Conflict(format!(
            "ONT id {ont_id} of {pon} is taken by {serial}"
        ))),
        _ => Ok(()),
    }
}

/// Changes fields of a row; returns it and a description of the change.
pub(crate) fn modify(
    w: &mut SqliteWriter,
    actor: &Actor,
    at: &str,
    r: Resource,
    key: &[Val],
    changes: &[(usize, Val)],
) -> Result<(InventoryRow, String), OpError> {
    let row = lookup(w.conn(), r, key)
        .map_err(store_err)?
        .ok_or_else(|| not_found(r, key))?;
    let mut vals = row.vals.clone();
    let mut changed = Vec::new();
    for (i, v) in changes {
        if let Some(slot) = vals.get_mut(*i)
            && slot != v
        {
            *slot = v.clone();
            changed.push(*i);
        }
    }
    let rec = Record {
        resource: r,
        vals: vals.into_boxed_slice(),
    };
    if changed.is_empty() {
        return Ok((inventory_row(w.conn(), r, row)?, "no change".into()));
    }
    if r == Resource::Ont && changed.iter().any(|i| *i == 1 || *i == 2) {
        ont_place_free(w.conn(), &rec, Some(row.id))?;
    }
    let mut ids = IdCache::default();
    w.sync_update(row.id, &rec, &changed, false, &mut ids, at)
        .map_err(store_err)?;
    let old = json_of(r, &row.vals, &changed);
    let new = json_of(r, &rec.vals, &changed);
    log(w, actor, at, &rec, "MODIFY", Some(&old), Some(&new))?;
    let names: Vec<&str> = changed
        .iter()
        .filter_map(|i| r.fields().get(*i).copied())
        .collect();
    Ok((
        current(w.conn(), r, key)?,
        format!("changed {}", names.join(", ")),
    ))
}

fn not_found(r: Resource, key: &[Val]) -> OpError {
    let rec = Record {
        resource: r,
        vals: key.to_vec().into_boxed_slice(),
    };
    OpError::NotFound(format!("no {r} {}", rec.code()))
}

/// Who holds the row, or a resource below it (a service's name).
fn held_by(conn: &Connection, r: Resource, id: i64) -> Result<Option<String>, OpError> {
    let sql = match r {
        Resource::Port => {
            "SELECT s.user_name FROM port x JOIN service s ON s.id = x.service_id WHERE x.id = ?1"
        }
        Resource::Ont => {
            "SELECT s.user_name FROM ont x JOIN service s ON s.id = x.service_id WHERE x.id = ?1"
        }
        Resource::Dslam => {
            "SELECT s.user_name FROM port x JOIN service s ON s.id = x.service_id \
             WHERE x.dslam_id = ?1 LIMIT 1"
        }
        Resource::PonPort => {
            "SELECT s.user_name FROM ont x JOIN service s ON s.id = x.service_id \
             WHERE x.pon_port_id = ?1 LIMIT 1"
        }
        Resource::Olt => {
            "SELECT s.user_name FROM ont x JOIN pon_port pp ON pp.id = x.pon_port_id \
             JOIN service s ON s.id = x.service_id WHERE pp.olt_id = ?1 \
             UNION ALL SELECT user_name FROM service WHERE olt_id = ?1 AND state = 'ACTIVE' LIMIT 1"
        }
        Resource::Exchange => {
            "SELECT s.user_name FROM port x JOIN dslam d ON d.id = x.dslam_id \
             JOIN service s ON s.id = x.service_id WHERE d.exchange_id = ?1 \
             UNION ALL SELECT s.user_name FROM ont x JOIN pon_port pp ON pp.id = x.pon_port_id \
             JOIN olt o ON o.id = pp.olt_id JOIN service s ON s.id = x.service_id \
             WHERE o.exchange_id = ?1 LIMIT 1"
        }
        Resource::Compound => {
            "SELECT user_name FROM service WHERE compound_id = ?1 AND state = 'ACTIVE' LIMIT 1"
        }
        Resource::Vlan => {
            "SELECT s.user_name FROM vlan v JOIN service s ON s.olt_id = v.olt_id AND s.vlan = v.vlan_id \
             WHERE v.id = ?1 AND s.state = 'ACTIVE' LIMIT 1"
        }
        Resource::Sector | Resource::Zone | Resource::City => return Ok(None),
    };
    Ok(conn
        .prepare_cached(sql)?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// Soft-removes a row nobody holds.
pub(crate) fn remove(
    w: &mut SqliteWriter,
    actor: &Actor,
    at: &str,
    r: Resource,
    key: &[Val],
) -> Result<InventoryRow, OpError> {
    let row = lookup(w.conn(), r, key)
        .map_err(store_err)?
        .filter(|row| !row.removed)
        .ok_or_else(|| not_found(r, key))?;
    let rec = Record {
        resource: r,
        vals: row.vals.clone().into_boxed_slice(),
    };
    if let Some(user) = held_by(w.conn(), r, row.id)? {
        return Err(OpError::ResourceHeld(format!(
            "{r} {} is in use by the service of {user}: it cannot be removed",
            rec.code()
        )));
    }
    w.sync_remove(r, row.id, at).map_err(store_err)?;
    // Logged as a sync logs a removal.
    let (old, new) = (r#"{"removed":0}"#, r#"{"removed":1}"#);
    log(w, actor, at, &rec, "REMOVE", Some(old), Some(new))?;
    current(w.conn(), r, key)
}
