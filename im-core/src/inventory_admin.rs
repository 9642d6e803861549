//! Manual inventory changes by administrators (spec inventory-sync-and-am.md
//! §1: the fallback when a source is late): add, modify or remove (soft) a
//! row of any resource type by its natural key. Each change runs on the
//! writer in one transaction with its resource-log row (old and new values,
//! the acting account and IP) and its operation-log row. A resource held by
//! a service (or holding one below it) is never removed.

use crate::Im;
use crate::audit::{OpAction, Operation};
use crate::operator::{Actor, OpError};
use crate::query::{InventoryRow, parse_port};
use crate::sync::{Record, Resource, Val};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Fields that hold whole numbers.
const INT_FIELDS: &[&str] = &["frame", "slot", "port", "max_onts", "ont_id", "vlan_id"];

/// Values a field may take, where the schema bounds them (upper case).
fn allowed(field: &str) -> Option<&'static [&'static str]> {
    match field {
        "domain" => Some(&["ADSL", "FTTH"]),
        "state" => Some(&["AVAILABLE", "OCCUPIED", "FAULTY"]),
        "technology" => Some(&["ADSL", "VDSL", "ADSL+VDSL"]),
        "purpose" => Some(&["INTERNET", "VOICE", "IPTV", "MGMT"]),
        "origin" => Some(&["SOURCE", "OM"]),
        _ => None,
    }
}

/// The value a field takes when an added row does not give it.
fn default_of(resource: Resource, field: &str) -> Option<Val> {
    match (resource, field) {
        (_, "state") => Some(text("AVAILABLE")),
        (_, "origin") => Some(text("SOURCE")),
        (_, "max_onts") => Some(Val::Int(128)),
        (_, "ponports") => Some(text("")),
        (Resource::Exchange, "city") | (Resource::Compound, "zone") => Some(Val::Null),
        _ => None,
    }
}

fn text(s: &str) -> Val {
    Val::Text(Arc::from(s))
}

/// Reads one field's value from JSON.
fn value_of(field: &str, v: &serde_json::Value) -> Result<Val, OpError> {
    let bad = || OpError::Invalid(format!("{field}: not a valid value"));
    if INT_FIELDS.contains(&field) {
        return match v {
            serde_json::Value::Number(n) => {
                n.as_i64().filter(|n| *n >= 0).map(Val::Int).ok_or_else(bad)
            }
            serde_json::Value::String(s) => s
                .trim()
                .parse::<u32>()
                .map(|n| Val::Int(i64::from(n)))
                .map_err(|_| bad()),
            _ => Err(bad()),
        };
    }
    let s = match v {
        serde_json::Value::Null => return Ok(Val::Null),
        serde_json::Value::String(s) => crate::operator::text(field, s)?,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(bad()),
    };
    match allowed(field) {
        Some(list) => {
            let up = s.to_ascii_uppercase();
            if list.contains(&up.as_str()) {
                Ok(text(&up))
            } else {
                Err(OpError::Invalid(format!(
                    "{field}: one of {}",
                    list.join(", ")
                )))
            }
        }
        None if s.is_empty() && field != "ponports" => Ok(Val::Null),
        None => Ok(text(&s)),
    }
}

/// The natural key of a row from its text (as [`InventoryRow::code`]):
/// `ADSL:CAIRO` for sectors, zones and cities; `DSLAM/frame/slot/port` for
/// ports; `OLT/frame/slot/port` for PON ports; `OLT/vlan id` for VLANs; the
/// code, name or serial otherwise.
///
/// # Errors
///
/// [`OpError::Invalid`] for a malformed key.
pub fn key_of(resource: Resource, code: &str) -> Result<Vec<Val>, OpError> {
    let code = crate::operator::required("code", code)?;
    let bad = |form: &str| OpError::Invalid(format!("{resource} key: {form}"));
    Ok(match resource {
        r if r.has_domain() => {
            let (d, c) = code
                .split_once(':')
                .ok_or_else(|| bad("MAP:CODE, e.g. ADSL:CAIRO"))?;
            vec![
                value_of("domain", &serde_json::Value::from(d))?,
                text(c.trim()),
            ]
        }
        Resource::Port | Resource::PonPort => {
            let (n, f, s, p) = parse_port(&code).ok_or_else(|| bad("NAME/frame/slot/port"))?;
            vec![
                text(&n),
                Val::Int(i64::from(f)),
                Val::Int(i64::from(s)),
                Val::Int(i64::from(p)),
            ]
        }
        Resource::Vlan => {
            let (o, v) = code.rsplit_once('/').ok_or_else(|| bad("OLT/vlan id"))?;
            let v: u16 = v
                .trim()
                .parse()
                .ok()
                .filter(|v| (1..=4094).contains(v))
                .ok_or_else(|| bad("OLT/vlan id (1 to 4094)"))?;
            vec![text(o.trim()), Val::Int(i64::from(v))]
        }
        _ => vec![text(&code)],
    })
}

/// Checks that every given field belongs to the resource.
fn check_names(
    resource: Resource,
    values: &BTreeMap<String, serde_json::Value>,
) -> Result<(), OpError> {
    for name in values.keys() {
        if !resource.fields().contains(&name.as_str()) {
            return Err(OpError::Invalid(format!(
                "{resource} has no field {name:?} (fields: {})",
                resource.fields().join(", ")
            )));
        }
    }
    Ok(())
}

/// A whole row for an add: every field given or defaulted.
fn new_record(
    resource: Resource,
    values: &BTreeMap<String, serde_json::Value>,
) -> Result<Record, OpError> {
    check_names(resource, values)?;
    let mut vals = Vec::with_capacity(resource.fields().len());
    for (i, f) in resource.fields().iter().enumerate() {
        let v = match values.get(*f) {
            Some(v) => value_of(f, v)?,
            None => default_of(resource, f)
                .ok_or_else(|| OpError::Invalid(format!("{resource}: {f} is required")))?,
        };
        if i < resource.key_len() && v == Val::Null {
            return Err(OpError::Invalid(format!("{resource}: {f} is required")));
        }
        vals.push(v);
    }
    Ok(Record {
        resource,
        vals: vals.into_boxed_slice(),
    })
}

/// The changed values of a modify (key fields cannot change).
fn changes(
    resource: Resource,
    values: &BTreeMap<String, serde_json::Value>,
) -> Result<Vec<(usize, Val)>, OpError> {
    check_names(resource, values)?;
    let mut out = Vec::new();
    for (i, f) in resource.fields().iter().enumerate() {
        if let Some(v) = values.get(*f) {
            if i < resource.key_len() {
                return Err(OpError::Invalid(format!(
                    "{resource}: {f} is part of the key and cannot change"
                )));
            }
            out.push((i, value_of(f, v)?));
        }
    }
    if out.is_empty() {
        return Err(OpError::Invalid("nothing to change".into()));
    }
    Ok(out)
}

/// Maps a storage failure of a manual change (an unknown reference is the
/// caller's mistake, not an internal error).
pub(crate) fn store_err(e: crate::store::StoreError) -> OpError {
    match e {
        crate::store::StoreError::Data(m) if m.starts_with("unknown ") => OpError::Invalid(m),
        e => e.into(),
    }
}

impl Im {
    /// Adds an inventory row (or restores a removed one), logged `ADD`
    /// with its values in the resource log.
    ///
    /// # Errors
    ///
    /// [`OpError::Invalid`] for a missing, unknown or malformed field or an
    /// unknown parent; [`OpError::Conflict`] when the row exists.
    pub async fn add_inventory(
        &self,
        actor: &Actor,
        resource: Resource,
        values: BTreeMap<String, serde_json::Value>,
    ) -> Result<InventoryRow, OpError> {
        let rec = new_record(resource, &values)?;
        let actor = actor.clone();
        let at = crate::lifecycle::stamp(std::time::SystemTime::now());
        self.on_sqlite_writer(move |w| {
            let row = crate::store::sqlite::inventory_admin::add(w, &actor, &at, &rec)?;
            crate::store::sqlite::audit::append(
                crate::store::sqlite::HasConn::conn(w),
                &at,
                &actor,
                &Operation::success(
                    OpAction::Add,
                    &format!("inventory/{resource}"),
                    &row.code,
                    "",
                ),
            )?;
            Ok(row)
        })
        .await
    }

    /// Changes fields of an inventory row (not its key), logged `MODIFY`
    /// with the old and new values of the changed fields.
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`], [`OpError::Invalid`].
    pub async fn modify_inventory(
        &self,
        actor: &Actor,
        resource: Resource,
        code: &str,
        values: BTreeMap<String, serde_json::Value>,
    ) -> Result<InventoryRow, OpError> {
        let key = key_of(resource, code)?;
        let changes = changes(resource, &values)?;
        let actor = actor.clone();
        let at = crate::lifecycle::stamp(std::time::SystemTime::now());
        self.on_sqlite_writer(move |w| {
            let (row, detail) = crate::store::sqlite::inventory_admin::modify(
                w, &actor, &at, resource, &key, &changes,
            )?;
            crate::store::sqlite::audit::append(
                crate::store::sqlite::HasConn::conn(w),
                &at,
                &actor,
                &Operation::success(
                    OpAction::Modify,
                    &format!("inventory/{resource}"),
                    &row.code,
                    &detail,
                ),
            )?;
            Ok(row)
        })
        .await
    }

    /// Removes (soft) an inventory row, logged `REMOVE` with its values;
    /// refused while a service holds it or a resource below it.
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`], [`OpError::ResourceHeld`].
    pub async fn remove_inventory(
        &self,
        actor: &Actor,
        resource: Resource,
        code: &str,
    ) -> Result<InventoryRow, OpError> {
        let key = key_of(resource, code)?;
        let actor = actor.clone();
        let at = crate::lifecycle::stamp(std::time::SystemTime::now());
        self.on_sqlite_writer(move |w| {
            let row =
                crate::store::sqlite::inventory_admin::remove(w, &actor, &at, resource, &key)?;
            crate::store::sqlite::audit::append(
                crate::store::sqlite::HasConn::conn(w),
                &at,
                &actor,
                &Operation::success(
                    OpAction::Delete,
                    &format!("inventory/{resource}"),
                    &row.code,
                    "",
                ),
            )?;
            Ok(row)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            key_of(Resource::Exchange, "EX01").expect("k"),
            vec![text("EX01")]
        );
        assert_eq!(
            key_of(Resource::Sector, "adsl:CAIRO").expect("k"),
            vec![text("ADSL"), text("CAIRO")]
        );
        assert_eq!(
            key_of(Resource::Port, "EX01-D1/0/2/17").expect("k"),
            vec![text("EX01-D1"), Val::Int(0), Val::Int(2), Val::Int(17)]
        );
        assert_eq!(
            key_of(Resource::Vlan, "OLT01/100").expect("k"),
            vec![text("OLT01"), Val::Int(100)]
        );
        assert!(key_of(Resource::Port, "EX01-D1/0/2").is_err());
        assert!(key_of(Resource::Vlan, "OLT01/5000").is_err());
        assert!(key_of(Resource::Zone, "CAIRO").is_err());
        assert!(key_of(Resource::Olt, " ").is_err());
    }

    #[test]
    fn records_need_their_fields() {
        let mut v = BTreeMap::new();
        v.insert("dslam".to_string(), serde_json::json!("D1"));
        v.insert("frame".to_string(), serde_json::json!(0));
        v.insert("slot".to_string(), serde_json::json!("1"));
        assert!(new_record(Resource::Port, &v).is_err(), "port missing");
        v.insert("port".to_string(), serde_json::json!(3));
        let rec = new_record(Resource::Port, &v).expect("defaults the state");
        assert_eq!(rec.vals[4], text("AVAILABLE"));
        v.insert("state".to_string(), serde_json::json!("broken"));
        assert!(new_record(Resource::Port, &v).is_err());
        v.insert("colour".to_string(), serde_json::json!("red"));
        assert!(new_record(Resource::Port, &v).is_err());
    }

    #[test]
    fn modifies_leave_keys_alone() {
        let mut v = BTreeMap::new();
        v.insert("state".to_string(), serde_json::json!("faulty"));
        assert_eq!(
            changes(Resource::Port, &v).expect("ok"),
            vec![(4, text("FAULTY"))]
        );
        v.insert("frame".to_string(), serde_json::json!(1));
        assert!(changes(Resource::Port, &v).is_err());
        assert!(changes(Resource::Port, &BTreeMap::new()).is_err());
    }
}
