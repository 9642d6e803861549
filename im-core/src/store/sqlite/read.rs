//! Reads shared by the writer and the read connections.

use super::{HasConn, backend};
use crate::ServiceView;
use crate::model::{CoverType, ServiceState, ServiceType, SourceState, Technology, VlanPurpose};
use crate::store::{
    AccountRec, CompoundRec, DslamRec, ExchangeRec, OltRec, OntRec, PonRec, PortRec, ServiceRec,
    StoreRead, StoreResult,
};
use rusqlite::{OptionalExtension, Row, params};

fn enum_col<T>(r: &Row<'_>, i: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unexpected value {s:?}").into(),
        )
    })
}

macro_rules! dslam_cols {
    () => {
        "id, name, exchange_id, ip, technology"
    };
}
fn dslam_row(r: &Row<'_>) -> rusqlite::Result<DslamRec> {
    Ok(DslamRec {
        id: r.get(0)?,
        name: r.get(1)?,
        exchange_id: r.get(2)?,
        ip: r.get(3)?,
        technology: enum_col(r, 4, Technology::parse)?,
    })
}

macro_rules! port_cols {
    () => {
        "p.id, p.dslam_id, d.name, d.ip, p.frame, p.slot, p.port, p.state, p.service_id, p.removed"
    };
}
fn port_row(r: &Row<'_>) -> rusqlite::Result<PortRec> {
    Ok(PortRec {
        id: r.get(0)?,
        dslam_id: r.get(1)?,
        dslam: r.get(2)?,
        dslam_ip: r.get(3)?,
        frame: r.get(4)?,
        slot: r.get(5)?,
        port: r.get(6)?,
        state: enum_col(r, 7, SourceState::parse)?,
        holder: r.get(8)?,
        removed: r.get(9)?,
    })
}

macro_rules! pon_cols {
    () => {
        "pp.id, pp.olt_id, o.name, pp.frame, pp.slot, pp.port, pp.max_onts, pp.state"
    };
}
fn pon_row(r: &Row<'_>, at: usize) -> rusqlite::Result<PonRec> {
    Ok(PonRec {
        id: r.get(at)?,
        olt_id: r.get(at + 1)?,
        olt: r.get(at + 2)?,
        frame: r.get(at + 3)?,
        slot: r.get(at + 4)?,
        port: r.get(at + 5)?,
        max_onts: r.get(at + 6)?,
        state: enum_col(r, at + 7, SourceState::parse)?,
    })
}

macro_rules! ont_sql {
    () => {
        "SELECT t.id, t.serial, t.ont_id, t.state, t.service_id, t.removed, \
     pp.id, pp.olt_id, o.name, pp.frame, pp.slot, pp.port, pp.max_onts, pp.state \
     FROM ont t JOIN pon_port pp ON pp.id = t.pon_port_id JOIN olt o ON o.id = pp.olt_id"
    };
}
fn ont_row(r: &Row<'_>) -> rusqlite::Result<OntRec> {
    Ok(OntRec {
        id: r.get(0)?,
        serial: r.get(1)?,
        ont_id: r.get(2)?,
        state: enum_col(r, 3, SourceState::parse)?,
        holder: r.get(4)?,
        removed: r.get(5)?,
        pon: pon_row(r, 6)?,
    })
}

macro_rules! service_cols {
    () => {
        "id, user_name, service_type, cover_type, state, customer_id, \
     parent_id, popid, exchange_id, olt_id, compound_id, vlan, speed_kbps, fields"
    };
}
fn service_row(r: &Row<'_>) -> rusqlite::Result<ServiceRec> {
    let fields: String = r.get(13)?;
    Ok(ServiceRec {
        id: r.get(0)?,
        user_name: r.get(1)?,
        service_type: enum_col(r, 2, ServiceType::parse)?,
        cover_type: enum_col(r, 3, CoverType::parse)?,
        state: enum_col(r, 4, ServiceState::parse)?,
        customer_id: r.get(5)?,
        parent_id: r.get(6)?,
        popid: r.get(7)?,
        exchange_id: r.get(8)?,
        olt_id: r.get(9)?,
        compound_id: r.get(10)?,
        vlan: r.get(11)?,
        speed_kbps: r.get::<_, Option<i64>>(12)?.map(|v| v.max(0) as u64),
        fields: serde_json::from_str(&fields).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(13, rusqlite::types::Type::Text, e.into())
        })?,
    })
}

fn compound_row(r: &Row<'_>) -> rusqlite::Result<CompoundRec> {
    Ok(CompoundRec {
        id: r.get(0)?,
        code: r.get(1)?,
        exchange_id: r.get(2)?,
    })
}

fn olt_row(r: &Row<'_>) -> rusqlite::Result<OltRec> {
    Ok(OltRec {
        id: r.get(0)?,
        name: r.get(1)?,
    })
}

impl<T: HasConn> StoreRead for T {
    fn exchange_by_popid(&mut self, popid: &str) -> StoreResult<Option<ExchangeRec>> {
        if let Some(hit) = self.cache().and_then(|c| c.exchanges.get(popid).cloned()) {
            return Ok(hit);
        }
        let found = self
            .conn()
            .prepare_cached("SELECT id, code, popid FROM exchange WHERE popid = ?1 AND removed = 0")
            .map_err(backend)?
            .query_row([popid], |r| {
                Ok(ExchangeRec {
                    id: r.get(0)?,
                    code: r.get(1)?,
                    popid: r.get(2)?,
                })
            })
            .optional()
            .map_err(backend)?;
        if let Some(c) = self.cache() {
            c.exchanges.insert(popid.to_string(), found.clone());
        }
        Ok(found)
    }

    fn dslam_by_name(&mut self, name: &str) -> StoreResult<Option<DslamRec>> {
        self.conn()
            .prepare_cached(concat!(
                "SELECT ",
                dslam_cols!(),
                " FROM dslam WHERE name = ?1 AND removed = 0"
            ))
            .map_err(backend)?
            .query_row([name], dslam_row)
            .optional()
            .map_err(backend)
    }

    fn dslam_by_ip(&mut self, ip: &str) -> StoreResult<Option<DslamRec>> {
        self.conn()
            .prepare_cached(concat!(
                "SELECT ",
                dslam_cols!(),
                " FROM dslam WHERE ip = ?1 AND removed = 0 ORDER BY name LIMIT 1"
            ))
            .map_err(backend)?
            .query_row([ip], dslam_row)
            .optional()
            .map_err(backend)
    }

    fn dslams_of_exchange(&mut self, exchange_id: i64) -> StoreResult<Vec<DslamRec>> {
        if let Some(hit) = self
            .cache()
            .and_then(|c| c.dslams.get(&exchange_id).cloned())
        {
            return Ok(hit);
        }
        let mut st = self
            .conn()
            .prepare_cached(concat!(
                "SELECT ",
                dslam_cols!(),
                " FROM dslam WHERE exchange_id = ?1 AND removed = 0 ORDER BY name"
            ))
            .map_err(backend)?;
        let rows = st.query_map([exchange_id], dslam_row).map_err(backend)?;
        let found: Vec<DslamRec> = rows.collect::<Result<_, _>>().map_err(backend)?;
        drop(st);
        if let Some(c) = self.cache() {
            c.dslams.insert(exchange_id, found.clone());
        }
        Ok(found)
    }

    fn port_at(
        &mut self,
        dslam_id: i64,
        frame: u32,
        slot: u32,
        port: u32,
    ) -> StoreResult<Option<PortRec>> {
        self.conn()
            .prepare_cached(concat!(
                "SELECT ",
                port_cols!(),
                " FROM port p JOIN dslam d ON d.id = p.dslam_id \
                 WHERE p.dslam_id = ?1 AND p.frame = ?2 AND p.slot = ?3 AND p.port = ?4"
            ))
            .map_err(backend)?
            .query_row(params![dslam_id, frame, slot, port], port_row)
            .optional()
            .map_err(backend)
    }

    fn first_free_port(&mut self, dslam_id: i64) -> StoreResult<Option<PortRec>> {
        // The writer starts where the last search on this DSLAM ended (see
        // `InventoryCache::pick_from`): the ports before it are held, so
        // the unique index (dslam_id, frame, slot, port) is walked from
        // there and the first row that is pickable is usually the first one
        // looked at. No index on "pickable" has to change when a port is
        // taken or freed.
        const START: super::PortPos = (i64::MIN, i64::MIN, i64::MIN);
        let from = self
            .cache()
            .and_then(|c| c.pick_from.get(&dslam_id).copied())
            .unwrap_or(START);
        let found = self
            .conn()
            .prepare_cached(concat!(
                "SELECT ",
                port_cols!(),
                " FROM port p JOIN dslam d ON d.id = p.dslam_id \
                 WHERE p.dslam_id = ?1 AND (p.frame, p.slot, p.port) >= (?2, ?3, ?4) AND p.pickable = 1 \
                 ORDER BY p.frame, p.slot, p.port LIMIT 1"
            ))
            .map_err(backend)?
            .query_row(params![dslam_id, from.0, from.1, from.2], port_row)
            .optional()
            .map_err(backend)?;
        if let Some(c) = self.cache() {
            // None free: the search next time starts past the last port.
            let to = found
                .as_ref()
                .map(|p| (i64::from(p.frame), i64::from(p.slot), i64::from(p.port)))
                .unwrap_or((i64::MAX, i64::MAX, i64::MAX));
            if c.pick_from.insert(dslam_id, to) != Some(to) {
                c.moved_in_savepoint.push(dslam_id);
            }
        }
        Ok(found)
    }

    fn port_held_by(&mut self, service_id: i64) -> StoreResult<Option<PortRec>> {
        self.conn()
            .prepare_cached(concat!(
                "SELECT ",
                port_cols!(),
                " FROM port p JOIN dslam d ON d.id = p.dslam_id \
                 WHERE p.service_id = ?1"
            ))
            .map_err(backend)?
            .query_row([service_id], port_row)
            .optional()
            .map_err(backend)
    }

    fn compound_by_code(&mut self, code: &str) -> StoreResult<Option<CompoundRec>> {
        self.conn()
            .prepare_cached(
                "SELECT id, code, exchange_id FROM compound WHERE code = ?1 AND removed = 0",
            )
            .map_err(backend)?
            .query_row([code], compound_row)
            .optional()
            .map_err(backend)
    }

    fn compound_by_id(&mut self, id: i64) -> StoreResult<Option<CompoundRec>> {
        self.conn()
            .prepare_cached("SELECT id, code, exchange_id FROM compound WHERE id = ?1")
            .map_err(backend)?
            .query_row([id], compound_row)
            .optional()
            .map_err(backend)
    }

    fn pon_ports_of_compound(&mut self, compound_id: i64) -> StoreResult<Vec<PonRec>> {
        let mut st = self
            .conn()
            .prepare_cached(concat!(
                "SELECT ",
                pon_cols!(),
                " FROM compound_pon cp JOIN pon_port pp ON pp.id = cp.pon_port_id \
                 JOIN olt o ON o.id = pp.olt_id \
                 WHERE cp.compound_id = ?1 AND pp.removed = 0 AND o.removed = 0 \
                 ORDER BY o.name, pp.frame, pp.slot, pp.port"
            ))
            .map_err(backend)?;
        let rows = st
            .query_map([compound_id], |r| pon_row(r, 0))
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn olt_by_name(&mut self, name: &str) -> StoreResult<Option<OltRec>> {
        self.conn()
            .prepare_cached("SELECT id, name FROM olt WHERE name = ?1 AND removed = 0")
            .map_err(backend)?
            .query_row([name], olt_row)
            .optional()
            .map_err(backend)
    }

    fn olt_by_id(&mut self, id: i64) -> StoreResult<Option<OltRec>> {
        self.conn()
            .prepare_cached("SELECT id, name FROM olt WHERE id = ?1")
            .map_err(backend)?
            .query_row([id], olt_row)
            .optional()
            .map_err(backend)
    }

    fn ont_by_serial(&mut self, serial: &str) -> StoreResult<Option<OntRec>> {
        self.conn()
            .prepare_cached(concat!(ont_sql!(), " WHERE t.serial = ?1"))
            .map_err(backend)?
            .query_row([serial], ont_row)
            .optional()
            .map_err(backend)
    }

    fn ont_held_by(&mut self, service_id: i64) -> StoreResult<Option<OntRec>> {
        self.conn()
            .prepare_cached(concat!(ont_sql!(), " WHERE t.service_id = ?1"))
            .map_err(backend)?
            .query_row([service_id], ont_row)
            .optional()
            .map_err(backend)
    }

    fn used_ont_ids(&mut self, pon_port_id: i64) -> StoreResult<Vec<u32>> {
        let mut st = self
            .conn()
            .prepare_cached(
                "SELECT place FROM ont WHERE pon_port_id = ?1 AND place IS NOT NULL ORDER BY place",
            )
            .map_err(backend)?;
        let rows = st.query_map([pon_port_id], |r| r.get(0)).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn vlan(&mut self, olt_id: i64, vlan_id: u16) -> StoreResult<Option<VlanPurpose>> {
        self.conn()
            .prepare_cached(
                "SELECT purpose FROM vlan WHERE olt_id = ?1 AND vlan_id = ?2 AND removed = 0",
            )
            .map_err(backend)?
            .query_row(params![olt_id, vlan_id], |r| {
                enum_col(r, 0, VlanPurpose::parse)
            })
            .optional()
            .map_err(backend)
    }

    fn lowest_vlan(&mut self, olt_id: i64, purpose: VlanPurpose) -> StoreResult<Option<u16>> {
        self.conn()
            .prepare_cached(
                "SELECT vlan_id FROM vlan WHERE olt_id = ?1 AND purpose = ?2 AND removed = 0 \
                 AND state = 'AVAILABLE' ORDER BY vlan_id LIMIT 1",
            )
            .map_err(backend)?
            .query_row(params![olt_id, purpose.as_str()], |r| r.get(0))
            .optional()
            .map_err(backend)
    }

    fn service(
        &mut self,
        user_name: &str,
        service_type: ServiceType,
    ) -> StoreResult<Option<ServiceRec>> {
        self.conn()
            .prepare_cached(concat!(
                "SELECT ",
                service_cols!(),
                " FROM service WHERE user_name = ?1 AND service_type = ?2"
            ))
            .map_err(backend)?
            .query_row(params![user_name, service_type.as_str()], service_row)
            .optional()
            .map_err(backend)
    }

    fn active_addons(&mut self, parent_id: i64) -> StoreResult<Vec<ServiceRec>> {
        let mut st = self
            .conn()
            .prepare_cached(concat!(
                "SELECT ",
                service_cols!(),
                " FROM service WHERE parent_id = ?1 AND state = 'ACTIVE' \
                 ORDER BY id"
            ))
            .map_err(backend)?;
        let rows = st.query_map([parent_id], service_row).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn query_services(
        &mut self,
        user_name: &str,
        service_type: Option<ServiceType>,
    ) -> StoreResult<Vec<ServiceView>> {
        let mut st = self
            .conn()
            .prepare_cached(
                "SELECT s.user_name, s.service_type, s.cover_type, s.state, \
                 coalesce(c.account_number, ''), coalesce(c.name, ''), \
                 coalesce(json_extract(s.fields, '$.serviceno'), ''), s.speed_kbps, \
                 coalesce(d.name || '/' || p.frame || '/' || p.slot || '/' || p.port, pd.name || '/' || pp.frame || '/' || pp.slot || '/' || pp.port, ''), \
                 coalesce(t.serial, pt.serial, ''), coalesce(o.name, ''), coalesce(cp.code, ''), \
                 s.vlan, s.conflict, s.updated \
                 FROM service s \
                 LEFT JOIN customer c ON c.id = s.customer_id \
                 LEFT JOIN port p ON p.service_id = s.id LEFT JOIN dslam d ON d.id = p.dslam_id \
                 LEFT JOIN ont t ON t.service_id = s.id \
                 LEFT JOIN port pp ON pp.service_id = s.parent_id LEFT JOIN dslam pd ON pd.id = pp.dslam_id \
                 LEFT JOIN ont pt ON pt.service_id = s.parent_id \
                 LEFT JOIN olt o ON o.id = s.olt_id LEFT JOIN compound cp ON cp.id = s.compound_id \
                 WHERE s.user_name = ?1 AND (?2 IS NULL OR s.service_type = ?2) \
                 ORDER BY s.id",
            )
            .map_err(backend)?;
        let rows = st
            .query_map(params![user_name, service_type.map(|t| t.as_str())], |r| {
                let speed: Option<i64> = r.get(7)?;
                let vlan: Option<i64> = r.get(12)?;
                Ok(ServiceView {
                    user_name: r.get(0)?,
                    service_type: r.get(1)?,
                    cover_type: r.get(2)?,
                    state: r.get(3)?,
                    account_number: r.get(4)?,
                    customer_name: r.get(5)?,
                    serviceno: r.get(6)?,
                    speed: speed.map(|s| s.to_string()).unwrap_or_default(),
                    port: r.get(8)?,
                    ont_sn: r.get(9)?,
                    olt: r.get(10)?,
                    compound: r.get(11)?,
                    vlan: vlan.map(|v| v.to_string()).unwrap_or_default(),
                    conflict: r.get(13)?,
                    updated: r.get(14)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn customer_account(&mut self, customer_id: i64) -> StoreResult<Option<String>> {
        self.conn()
            .prepare_cached("SELECT account_number FROM customer WHERE id = ?1")
            .map_err(backend)?
            .query_row([customer_id], |r| r.get(0))
            .optional()
            .map_err(backend)
    }

    fn account(&mut self, login: &str) -> StoreResult<Option<AccountRec>> {
        self.conn()
            .prepare_cached(
                "SELECT a.id, a.login, a.auth_mode, a.enabled, a.password_hash, a.password_version, \
                 EXISTS (SELECT 1 FROM account_role ar JOIN role r ON r.id = ar.role_id \
                         WHERE ar.account_id = a.id AND r.om_interface = 1) \
                 FROM account a WHERE a.login = ?1",
            )
            .map_err(backend)?
            .query_row([login], |r| {
                Ok(AccountRec {
                    id: r.get(0)?,
                    login: r.get(1)?,
                    auth_mode: r.get(2)?,
                    enabled: r.get(3)?,
                    password_hash: r.get(4)?,
                    password_version: r.get(5)?,
                    om_interface: r.get(6)?,
                })
            })
            .optional()
            .map_err(backend)
    }

    fn flow(&mut self, flow_id: &str) -> StoreResult<Option<(String, Vec<u8>)>> {
        self.conn()
            .prepare_cached("SELECT task_no, fingerprint FROM task WHERE flow_id = ?1")
            .map_err(backend)?
            .query_row([flow_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(backend)
    }

    fn inventory_is_empty(&mut self) -> StoreResult<bool> {
        let n: i64 = self
            .conn()
            .prepare_cached("SELECT count(*) FROM (SELECT 1 FROM exchange LIMIT 1)")
            .map_err(backend)?
            .query_row([], |r| r.get(0))
            .map_err(backend)?;
        Ok(n == 0)
    }
}
