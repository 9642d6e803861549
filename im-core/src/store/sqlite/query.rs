//! SQL of the operators' queries (see [`crate::query`]). Searches build
//! their WHERE clause from the criteria given, so each uses its index.

use super::sync::{meta, read_row};
use crate::operator::{OpError, Page, PageRequest};
use crate::query::{
    CustomerView, HeldResource, InventoryQuery, InventoryRow, OutboxRow, ServiceDetail,
    ServiceEvent, ServiceRow, ServiceSearch, TaskRow, TaskSearch, UsageSummary,
};
use crate::store::StoredRow;
use crate::sync::{Resource, SyncCounts, SyncRunRec, Val};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

const SERVICE_SELECT: &str = "SELECT s.id, s.user_name, s.service_type, s.cover_type, s.state, \
     coalesce(c.account_number, ''), coalesce(c.name, ''), \
     coalesce(json_extract(s.fields, '$.serviceno'), ''), \
     coalesce(d.name || '/' || p.frame || '/' || p.slot || '/' || p.port, ''), \
     coalesce(t.serial, ''), s.popid, s.conflict, s.updated \
     FROM service s LEFT JOIN customer c ON c.id = s.customer_id \
     LEFT JOIN port p ON p.service_id = s.id LEFT JOIN dslam d ON d.id = p.dslam_id \
     LEFT JOIN ont t ON t.service_id = s.id";

fn service_row(r: &Row<'_>) -> rusqlite::Result<ServiceRow> {
    Ok(ServiceRow {
        id: r.get(0)?,
        user_name: r.get(1)?,
        service_type: r.get(2)?,
        cover_type: r.get(3)?,
        state: r.get(4)?,
        account_number: r.get(5)?,
        customer_name: r.get(6)?,
        serviceno: r.get::<_, Value>(7).map(|v| match v {
            Value::Text(t) => t,
            Value::Integer(n) => n.to_string(),
            _ => String::new(),
        })?,
        port: r.get(8)?,
        ont_sn: r.get(9)?,
        popid: r.get(10)?,
        conflict: r.get(11)?,
        updated: r.get(12)?,
    })
}

/// Services matching the criteria, newest first.
pub(crate) fn search_services(
    conn: &Connection,
    s: &ServiceSearch,
    port: Option<&(String, u32, u32, u32)>,
) -> Result<Page<ServiceRow>, OpError> {
    let mut sql = format!("{SERVICE_SELECT} WHERE s.id < ?");
    let mut args: Vec<Value> = vec![Value::Integer(s.page.sql_before())];
    if let Some(u) = &s.user_name {
        sql.push_str(" AND s.user_name = ?");
        args.push(Value::Text(u.clone()));
    }
    if let Some(a) = &s.account_number {
        sql.push_str(" AND s.customer_id = (SELECT id FROM customer WHERE account_number = ?)");
        args.push(Value::Text(a.clone()));
    }
    if let Some(n) = &s.serviceno {
        sql.push_str(" AND json_extract(s.fields, '$.serviceno') = ?");
        args.push(Value::Text(n.clone()));
    }
    if let Some(sn) = &s.ont_sn {
        sql.push_str(
            " AND (s.id = (SELECT service_id FROM ont WHERE serial = ?) \
             OR s.parent_id = (SELECT service_id FROM ont WHERE serial = ?))",
        );
        args.push(Value::Text(sn.clone()));
        args.push(Value::Text(sn.clone()));
    }
    if let Some((dslam, f, sl, p)) = port {
        let held = "(SELECT x.service_id FROM port x JOIN dslam y ON y.id = x.dslam_id \
                    WHERE y.name = ? AND x.frame = ? AND x.slot = ? AND x.port = ?)";
        sql.push_str(&format!(" AND (s.id = {held} OR s.parent_id = {held})"));
        for _ in 0..2 {
            args.push(Value::Text(dslam.clone()));
            args.push(Value::Integer(i64::from(*f)));
            args.push(Value::Integer(i64::from(*sl)));
            args.push(Value::Integer(i64::from(*p)));
        }
    }
    sql.push_str(" ORDER BY s.id DESC LIMIT ?");
    args.push(Value::Integer(s.page.sql_limit()));
    let rows = conn
        .prepare(&sql)?
        .query_map(params_from_iter(args), service_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, &s.page, |r| r.id))
}

/// A customer with its encrypted mobile and e-mail.
pub(crate) type RawCustomer = (CustomerView, Option<Vec<u8>>, Option<Vec<u8>>);

/// A service as stored, its protected values still encrypted.
pub(crate) struct RawService {
    /// Everything but the protected values.
    pub(crate) detail: ServiceDetail,
    /// The customer, with its encrypted mobile and e-mail.
    pub(crate) customer: Option<RawCustomer>,
    /// Encrypted PPPoE password.
    pub(crate) password: Option<Vec<u8>>,
    /// Encrypted IPTV password.
    pub(crate) iptv_password: Option<Vec<u8>>,
}

fn service_by_id(conn: &Connection, id: i64) -> Result<Option<ServiceRow>, OpError> {
    Ok(conn
        .prepare_cached(&format!("{SERVICE_SELECT} WHERE s.id = ?1"))?
        .query_row([id], service_row)
        .optional()?)
}

/// A service with everything around it.
pub(crate) fn service_detail(conn: &Connection, id: i64) -> Result<Option<RawService>, OpError> {
    let Some(service) = service_by_id(conn, id)? else {
        return Ok(None);
    };
    #[allow(clippy::type_complexity)]
    let extra: (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        String,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Option<String>,
        String,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) = conn
        .prepare_cached(
            "SELECT s.customer_id, s.parent_id, s.speed_kbps, s.fields, s.password_enc, \
             s.iptv_password_enc, s.conflict_reason, s.created, s.vlan, o.name, cp.code, e.code \
             FROM service s LEFT JOIN olt o ON o.id = s.olt_id \
             LEFT JOIN compound cp ON cp.id = s.compound_id \
             LEFT JOIN exchange e ON e.id = s.exchange_id WHERE s.id = ?1",
        )?
        .query_row([id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
            ))
        })?;
    let (
        customer_id,
        parent_id,
        speed,
        fields,
        pw,
        iptv,
        reason,
        created,
        vlan,
        olt,
        compound,
        exchange,
    ) = extra;
    let customer = match customer_id {
        None => None,
        Some(cid) => conn
            .prepare_cached(
                "SELECT account_number, name, segment, level, mobile_enc, email_enc, created \
                 FROM customer WHERE id = ?1",
            )?
            .query_row([cid], |r| {
                Ok((
                    CustomerView {
                        account_number: r.get(0)?,
                        name: r.get(1)?,
                        segment: r.get(2)?,
                        level: r.get(3)?,
                        mobile: None,
                        email: None,
                        created: r.get(6)?,
                    },
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()?,
    };
    let parent = match parent_id {
        Some(p) => service_by_id(conn, p)?,
        None => None,
    };
    let addons = conn
        .prepare_cached(&format!(
            "{SERVICE_SELECT} WHERE s.parent_id = ?1 ORDER BY s.id LIMIT 100"
        ))?
        .query_map([id], service_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut resources = Vec::new();
    let holder = parent_id.unwrap_or(id);
    let port: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT d.name || '/' || p.frame || '/' || p.slot || '/' || p.port, p.state \
             FROM port p JOIN dslam d ON d.id = p.dslam_id WHERE p.service_id = ?1",
        )?
        .query_row([holder], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((code, state)) = port {
        resources.push(HeldResource {
            kind: "port".into(),
            code,
            state,
        });
    }
    let ont: Option<(String, String, String)> = conn
        .prepare_cached(
            "SELECT t.serial, o.name || '/' || pp.frame || '/' || pp.slot || '/' || pp.port \
             || ':' || t.ont_id, t.state FROM ont t JOIN pon_port pp ON pp.id = t.pon_port_id \
             JOIN olt o ON o.id = pp.olt_id WHERE t.service_id = ?1",
        )?
        .query_row([holder], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((serial, place, state)) = ont {
        resources.push(HeldResource {
            kind: "ont".into(),
            code: serial,
            state,
        });
        resources.push(HeldResource {
            kind: "ponport".into(),
            code: place,
            state: String::new(),
        });
    }
    for (kind, code) in [
        ("exchange", exchange),
        ("olt", olt.clone()),
        ("compound", compound),
    ] {
        if let Some(code) = code {
            resources.push(HeldResource {
                kind: kind.into(),
                code,
                state: String::new(),
            });
        }
    }
    if let (Some(v), Some(o)) = (vlan, olt) {
        resources.push(HeldResource {
            kind: "vlan".into(),
            code: format!("{o}/{v}"),
            state: String::new(),
        });
    }
    let history = conn
        .prepare_cached(
            "SELECT t.task_no, t.flow_id, t.state, \
             CASE WHEN c.redo > 0 THEN c.cmd_id || '-r' || c.redo ELSE c.cmd_id END, \
             c.type, c.state, c.created \
             FROM command c JOIN task t ON t.id = c.task_id WHERE c.service_id = ?1 \
             ORDER BY c.id DESC LIMIT 100",
        )?
        .query_map([id], |r| {
            Ok(ServiceEvent {
                task_no: r.get(0)?,
                flow_id: r.get(1)?,
                task_state: r.get(2)?,
                command_id: r.get(3)?,
                command_type: r.get(4)?,
                command_state: r.get(5)?,
                at: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let fields = serde_json::from_str(&fields).unwrap_or(serde_json::Value::Null);
    Ok(Some(RawService {
        detail: ServiceDetail {
            service,
            speed_kbps: speed,
            fields,
            password: None,
            iptv_password: None,
            conflict_reason: reason,
            customer: None,
            parent,
            addons,
            resources,
            history,
            created,
        },
        customer,
        password: pw,
        iptv_password: iptv,
    }))
}

/// Tasks matching the criteria, newest first.
pub(crate) fn search_tasks(conn: &Connection, s: &TaskSearch) -> Result<Page<TaskRow>, OpError> {
    let mut sql = String::from(
        "SELECT id, task_no, flow_id, popid, state, account, created, updated FROM task WHERE id < ?",
    );
    let mut args: Vec<Value> = vec![Value::Integer(s.page.sql_before())];
    for (col, v) in [
        ("task_no = ?", s.task_no.clone()),
        ("flow_id = ?", s.flow_id.clone()),
        ("state = ?", s.state.map(|t| t.as_str().to_string())),
        ("created >= ?", s.from.clone()),
        ("created < ?", s.to.clone()),
    ] {
        if let Some(v) = v {
            sql.push_str(" AND ");
            sql.push_str(col);
            args.push(Value::Text(v));
        }
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    args.push(Value::Integer(s.page.sql_limit()));
    let rows = conn
        .prepare(&sql)?
        .query_map(params_from_iter(args), |r| {
            Ok(TaskRow {
                id: r.get(0)?,
                task_no: r.get(1)?,
                flow_id: r.get(2)?,
                popid: r.get(3)?,
                state: r.get(4)?,
                account: r.get(5)?,
                created: r.get(6)?,
                updated: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, &s.page, |r| r.id))
}

/// A task's stored request.
pub(crate) fn task_request(conn: &Connection, task_no: &str) -> Result<Option<String>, OpError> {
    Ok(conn
        .prepare_cached("SELECT request FROM task WHERE task_no = ?1")?
        .query_row([task_no], |r| r.get(0))
        .optional()?)
}

/// The filter on a row's parent, by the parent's code.
fn parent_clause(r: Resource) -> &'static str {
    match r {
        Resource::Sector => "x.domain = upper(?)",
        Resource::Zone => "x.sector_id IN (SELECT id FROM sector WHERE code = ?)",
        Resource::City => "x.zone_id IN (SELECT id FROM zone WHERE code = ?)",
        Resource::Exchange => "x.city_id IN (SELECT id FROM city WHERE code = ?)",
        Resource::Dslam | Resource::Olt | Resource::Compound => {
            "x.exchange_id IN (SELECT id FROM exchange WHERE code = ?)"
        }
        Resource::Port => "x.dslam_id IN (SELECT id FROM dslam WHERE name = ?)",
        Resource::PonPort | Resource::Vlan => "x.olt_id IN (SELECT id FROM olt WHERE name = ?)",
        Resource::Ont => {
            "x.pon_port_id IN (SELECT pp.id FROM pon_port pp JOIN olt oo ON oo.id = pp.olt_id \
             WHERE oo.name = ?)"
        }
    }
}

/// The column a search by code looks at.
fn code_column(r: Resource) -> Option<&'static str> {
    match r {
        Resource::Sector
        | Resource::Zone
        | Resource::City
        | Resource::Exchange
        | Resource::Compound => Some("x.code"),
        Resource::Dslam | Resource::Olt => Some("x.name"),
        Resource::Ont => Some("x.serial"),
        Resource::Port | Resource::PonPort | Resource::Vlan => None,
    }
}

fn to_json(v: &Val) -> serde_json::Value {
    match v {
        Val::Null => serde_json::Value::Null,
        Val::Int(n) => serde_json::Value::from(*n),
        Val::Text(t) => serde_json::Value::from(t.as_ref()),
    }
}

fn holder_of(conn: &Connection, r: Resource, id: i64) -> Result<Option<String>, OpError> {
    let sql = match r {
        Resource::Port => {
            "SELECT s.user_name || ' (' || s.service_type || ')' FROM port x \
             JOIN service s ON s.id = x.service_id WHERE x.id = ?1"
        }
        Resource::Ont => {
            "SELECT s.user_name || ' (' || s.service_type || ')' FROM ont x \
             JOIN service s ON s.id = x.service_id WHERE x.id = ?1"
        }
        _ => return Ok(None),
    };
    Ok(conn
        .prepare_cached(sql)?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// An inventory row for the operators' view.
pub(crate) fn inventory_row(
    conn: &Connection,
    r: Resource,
    row: StoredRow,
) -> Result<InventoryRow, OpError> {
    let rec = crate::sync::Record {
        resource: r,
        vals: row.vals.clone().into_boxed_slice(),
    };
    let fields = r
        .fields()
        .iter()
        .zip(row.vals.iter())
        .map(|(n, v)| ((*n).to_string(), to_json(v)))
        .collect();
    Ok(InventoryRow {
        id: row.id,
        resource: r,
        code: rec.code(),
        removed: row.removed,
        fields,
        holder: holder_of(conn, r, row.id)?,
    })
}

/// Inventory rows of one type, newest first.
pub(crate) fn inventory(
    conn: &Connection,
    q: &InventoryQuery,
) -> Result<Page<InventoryRow>, OpError> {
    let m = meta(q.resource);
    let mut sql = format!("{} WHERE x.id < ?", m.select);
    let mut args: Vec<Value> = vec![Value::Integer(q.page.sql_before())];
    if !q.include_removed {
        sql.push_str(" AND x.removed = 0");
    }
    if let Some(p) = &q.parent {
        sql.push_str(" AND ");
        sql.push_str(parent_clause(q.resource));
        args.push(Value::Text(p.clone()));
    }
    if let Some(s) = &q.search {
        let Some(col) = code_column(q.resource) else {
            return Err(OpError::Invalid(format!(
                "{}: search by its parent instead",
                q.resource
            )));
        };
        sql.push_str(&format!(" AND {col} LIKE ? ESCAPE '\\'"));
        let escaped: String = s
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        args.push(Value::Text(format!("{escaped}%")));
    }
    if let Some(st) = &q.state {
        if !q.resource.fields().contains(&"state") {
            return Err(OpError::Invalid(format!("{} has no state", q.resource)));
        }
        sql.push_str(" AND x.state = ?");
        args.push(Value::Text(st.clone()));
    }
    sql.push_str(" ORDER BY x.id DESC LIMIT ?");
    args.push(Value::Integer(q.page.sql_limit()));
    let n = q.resource.fields().len();
    let rows = conn
        .prepare(&sql)?
        .query_map(params_from_iter(args), |r| read_row(r, n))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(inventory_row(conn, q.resource, row)?);
    }
    Ok(Page::from_rows(out, &q.page, |r| r.id))
}

/// One inventory row by natural key.
pub(crate) fn inventory_item(
    conn: &Connection,
    r: Resource,
    key: &[Val],
) -> Result<Option<InventoryRow>, OpError> {
    match super::sync::lookup(conn, r, key)? {
        Some(row) => Ok(Some(inventory_row(conn, r, row)?)),
        None => Ok(None),
    }
}

fn count(r: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0).max(0) as u64)
}

/// Port usage of an exchange.
pub(crate) fn exchange_summary(conn: &Connection, code: &str) -> Result<UsageSummary, OpError> {
    let found: Option<String> = conn
        .prepare_cached("SELECT code FROM exchange WHERE code = ?1")?
        .query_row([code], |r| r.get(0))
        .optional()?;
    let Some(code) = found else {
        return Err(OpError::NotFound(format!("no exchange {code}")));
    };
    Ok(conn
        .prepare_cached(
            "SELECT count(p.id), \
             sum(p.removed = 0 AND p.service_id IS NULL AND p.state = 'AVAILABLE'), \
             sum(p.service_id IS NOT NULL), sum(p.removed = 0 AND p.state = 'FAULTY'), \
             sum(p.removed = 1) \
             FROM exchange e JOIN dslam d ON d.exchange_id = e.id JOIN port p ON p.dslam_id = d.id \
             WHERE e.code = ?1",
        )?
        .query_row([&code], |r| {
            Ok(UsageSummary {
                kind: "exchange".into(),
                code: code.clone(),
                total: count(r, 0)?,
                free: count(r, 1)?,
                in_service: count(r, 2)?,
                faulty: count(r, 3)?,
                removed: count(r, 4)?,
                pon_ports: 0,
                capacity: 0,
            })
        })?)
}

/// ONT usage of an OLT.
pub(crate) fn olt_summary(conn: &Connection, name: &str) -> Result<UsageSummary, OpError> {
    let found: Option<(i64, String)> = conn
        .prepare_cached("SELECT id, name FROM olt WHERE name = ?1")?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((id, name)) = found else {
        return Err(OpError::NotFound(format!("no OLT {name}")));
    };
    let (pon_ports, capacity): (u64, u64) = conn
        .prepare_cached(
            "SELECT count(*), sum(max_onts) FROM pon_port WHERE olt_id = ?1 AND removed = 0",
        )?
        .query_row([id], |r| Ok((count(r, 0)?, count(r, 1)?)))?;
    Ok(conn
        .prepare_cached(
            "SELECT count(t.id), \
             sum(t.removed = 0 AND t.service_id IS NULL AND t.state = 'AVAILABLE'), \
             sum(t.service_id IS NOT NULL), sum(t.removed = 0 AND t.state = 'FAULTY'), \
             sum(t.removed = 1) \
             FROM pon_port pp JOIN ont t ON t.pon_port_id = pp.id WHERE pp.olt_id = ?1",
        )?
        .query_row([id], |r| {
            Ok(UsageSummary {
                kind: "olt".into(),
                code: name.clone(),
                total: count(r, 0)?,
                free: count(r, 1)?,
                in_service: count(r, 2)?,
                faulty: count(r, 3)?,
                removed: count(r, 4)?,
                pon_ports,
                capacity,
            })
        })?)
}

/// Sync runs, newest first (one by id, or a page of one system or all).
pub(crate) fn sync_runs(
    conn: &Connection,
    system: Option<&str>,
    id: Option<i64>,
    page: &PageRequest,
) -> Result<Page<SyncRunRec>, OpError> {
    let rows = conn
        .prepare_cached(
            "SELECT id, system, kind, snapshot, watermark, since, started, ended, status, forced, \
             added, changed, removed, rejected, conflicts, error FROM sync_run \
             WHERE id < ?1 AND (?2 IS NULL OR system = ?2) AND (?3 IS NULL OR id = ?3) \
             ORDER BY id DESC LIMIT ?4",
        )?
        .query_map(
            params![page.sql_before(), system, id, page.sql_limit()],
            |r| {
                Ok(SyncRunRec {
                    id: r.get(0)?,
                    system: r.get(1)?,
                    kind: r.get(2)?,
                    snapshot: r.get(3)?,
                    watermark: r.get(4)?,
                    since: r.get(5)?,
                    started: r.get(6)?,
                    ended: r.get(7)?,
                    status: r.get(8)?,
                    forced: r.get(9)?,
                    counts: SyncCounts {
                        added: count(r, 10)?,
                        changed: count(r, 11)?,
                        removed: count(r, 12)?,
                        rejected: count(r, 13)?,
                        conflicts: count(r, 14)?,
                    },
                    error: r.get(15)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, page, |r| r.id))
}

/// Outbox commands, newest first.
pub(crate) fn outbox(
    conn: &Connection,
    state: Option<&str>,
    page: &PageRequest,
) -> Result<Page<OutboxRow>, OpError> {
    let sql = if state.is_some() {
        "SELECT c.id, CASE WHEN c.redo > 0 THEN c.cmd_id || '-r' || c.redo ELSE c.cmd_id END, \
         t.task_no, s.user_name, c.type, c.service_type, c.state, c.attempts, c.next_attempt, \
         nullif(trim(coalesce(c.ack_status, '') || ' ' || coalesce(c.ack_code, '') || ' ' || coalesce(c.ack_desc, '')), ''), \
         c.created, c.updated \
         FROM command c JOIN task t ON t.id = c.task_id JOIN service s ON s.id = c.service_id \
         WHERE c.state = ?2 AND c.id < ?1 ORDER BY c.id DESC LIMIT ?3"
    } else {
        "SELECT c.id, CASE WHEN c.redo > 0 THEN c.cmd_id || '-r' || c.redo ELSE c.cmd_id END, \
         t.task_no, s.user_name, c.type, c.service_type, c.state, c.attempts, c.next_attempt, \
         nullif(trim(coalesce(c.ack_status, '') || ' ' || coalesce(c.ack_code, '') || ' ' || coalesce(c.ack_desc, '')), ''), \
         c.created, c.updated \
         FROM command c JOIN task t ON t.id = c.task_id JOIN service s ON s.id = c.service_id \
         WHERE (?2 IS NULL) AND c.id < ?1 ORDER BY c.id DESC LIMIT ?3"
    };
    let rows = conn
        .prepare_cached(sql)?
        .query_map(params![page.sql_before(), state, page.sql_limit()], |r| {
            Ok(OutboxRow {
                id: r.get(0)?,
                command_id: r.get(1)?,
                task_no: r.get(2)?,
                user_name: r.get(3)?,
                kind: r.get(4)?,
                service_type: r.get(5)?,
                state: r.get(6)?,
                attempts: r.get::<_, i64>(7)?.clamp(0, i64::from(u32::MAX)) as u32,
                next_attempt: r.get(8)?,
                last_ack: r.get(9)?,
                created: r.get(10)?,
                updated: r.get(11)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, page, |r| r.id))
}

/// The task of an outbox command.
pub(crate) fn command_task(conn: &Connection, id: i64) -> Result<Option<String>, OpError> {
    Ok(conn
        .prepare_cached(
            "SELECT t.task_no FROM command c JOIN task t ON t.id = c.task_id WHERE c.id = ?1",
        )?
        .query_row([id], |r| r.get(0))
        .optional()?)
}
