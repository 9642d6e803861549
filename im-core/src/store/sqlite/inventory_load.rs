//! Bulk load of inventory rows: upsert by natural key inside the caller's
//! transaction. Usage columns (`service_id`) are never written here.

use super::backend;
use crate::model::Inventory;
use crate::store::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;

fn id_of(conn: &Connection, sql: &str, p: impl rusqlite::Params, what: &str) -> StoreResult<i64> {
    conn.prepare_cached(sql)
        .map_err(backend)?
        .query_row(p, |r| r.get(0))
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::Data(format!("unknown {what}")))
}

/// Upserts every row of `inv` (parents first).
pub(super) fn load(conn: &Connection, inv: &Inventory, at: &str) -> StoreResult<()> {
    for s in &inv.sectors {
        conn.prepare_cached(
            "INSERT INTO sector (domain, code, name, updated) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (domain, code) DO UPDATE SET name = excluded.name, removed = 0, updated = excluded.updated",
        )
        .map_err(backend)?
        .execute(params![s.domain.as_str(), s.code, s.name, at])
        .map_err(backend)?;
    }
    for z in &inv.zones {
        let sector = id_of(
            conn,
            "SELECT id FROM sector WHERE domain = ?1 AND code = ?2",
            params![z.domain.as_str(), z.sector],
            &format!("sector {} of zone {}", z.sector, z.code),
        )?;
        conn.prepare_cached(
            "INSERT INTO zone (domain, code, name, sector_id, updated) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (domain, code) DO UPDATE SET name = excluded.name, sector_id = excluded.sector_id, \
             removed = 0, updated = excluded.updated",
        )
        .map_err(backend)?
        .execute(params![z.domain.as_str(), z.code, z.name, sector, at])
        .map_err(backend)?;
    }
    for c in &inv.cities {
        let zone = id_of(
            conn,
            "SELECT id FROM zone WHERE domain = ?1 AND code = ?2",
            params![c.domain.as_str(), c.zone],
            &format!("zone {} of city {}", c.zone, c.code),
        )?;
        conn.prepare_cached(
            "INSERT INTO city (domain, code, name, zone_id, updated) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (domain, code) DO UPDATE SET name = excluded.name, zone_id = excluded.zone_id, \
             removed = 0, updated = excluded.updated",
        )
        .map_err(backend)?
        .execute(params![c.domain.as_str(), c.code, c.name, zone, at])
        .map_err(backend)?;
    }
    for e in &inv.exchanges {
        let city = id_of(
            conn,
            "SELECT id FROM city WHERE domain = 'ADSL' AND code = ?1",
            [&e.city],
            &format!("city {} of exchange {}", e.city, e.code),
        )?;
        conn.prepare_cached(
            "INSERT INTO exchange (code, name, city_id, popid, area_code, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (code) DO UPDATE SET name = excluded.name, city_id = excluded.city_id, \
             popid = excluded.popid, area_code = excluded.area_code, removed = 0, updated = excluded.updated",
        )
        .map_err(backend)?
        .execute(params![e.code, e.name, city, e.popid, e.area_code, at])
        .map_err(backend)?;
    }
    let mut exchanges: HashMap<String, i64> = HashMap::new();
    let mut exchange_id = |code: &str| -> StoreResult<i64> {
        if let Some(id) = exchanges.get(code) {
            return Ok(*id);
        }
        let id = id_of(
            conn,
            "SELECT id FROM exchange WHERE code = ?1",
            [code],
            &format!("exchange {code}"),
        )?;
        exchanges.insert(code.to_string(), id);
        Ok(id)
    };
    let mut dslams: HashMap<String, i64> = HashMap::new();
    for d in &inv.dslams {
        let ex = exchange_id(&d.exchange)?;
        let id: i64 = conn
            .prepare_cached(
                "INSERT INTO dslam (name, exchange_id, ip, model, technology, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (name) DO UPDATE SET exchange_id = excluded.exchange_id, ip = excluded.ip, \
                 model = excluded.model, technology = excluded.technology, removed = 0, updated = excluded.updated \
                 RETURNING id",
            )
            .map_err(backend)?
            .query_row(params![d.name, ex, d.ip, d.model, d.technology.as_str(), at], |r| r.get(0))
            .map_err(backend)?;
        dslams.insert(d.name.to_ascii_lowercase(), id);
    }
    {
        let mut st = conn
            .prepare_cached(
                "INSERT INTO port (dslam_id, frame, slot, port, state, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (dslam_id, frame, slot, port) DO UPDATE SET state = excluded.state, removed = 0, \
                 updated = excluded.updated WHERE state != excluded.state OR removed != 0",
            )
            .map_err(backend)?;
        for p in &inv.ports {
            let dslam = match dslams.get(&p.dslam.to_ascii_lowercase()) {
                Some(id) => *id,
                None => id_of(
                    conn,
                    "SELECT id FROM dslam WHERE name = ?1",
                    [&p.dslam],
                    &format!("DSLAM {}", p.dslam),
                )?,
            };
            st.execute(params![
                dslam,
                p.frame,
                p.slot,
                p.port,
                p.state.as_str(),
                at
            ])
            .map_err(backend)?;
        }
    }
    let mut olts: HashMap<String, i64> = HashMap::new();
    for o in &inv.olts {
        let ex = exchange_id(&o.exchange)?;
        let id: i64 = conn
            .prepare_cached(
                "INSERT INTO olt (name, exchange_id, ip, model, updated) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (name) DO UPDATE SET exchange_id = excluded.exchange_id, ip = excluded.ip, \
                 model = excluded.model, removed = 0, updated = excluded.updated RETURNING id",
            )
            .map_err(backend)?
            .query_row(params![o.name, ex, o.ip, o.model, at], |r| r.get(0))
            .map_err(backend)?;
        olts.insert(o.name.to_ascii_lowercase(), id);
    }
    let mut olt_id = |name: &str| -> StoreResult<i64> {
        if let Some(id) = olts.get(&name.to_ascii_lowercase()) {
            return Ok(*id);
        }
        let id = id_of(
            conn,
            "SELECT id FROM olt WHERE name = ?1",
            [name],
            &format!("OLT {name}"),
        )?;
        olts.insert(name.to_ascii_lowercase(), id);
        Ok(id)
    };
    for p in &inv.pon_ports {
        let olt = olt_id(&p.at.olt)?;
        conn.prepare_cached(
            "INSERT INTO pon_port (olt_id, frame, slot, port, max_onts, state, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (olt_id, frame, slot, port) DO UPDATE SET max_onts = excluded.max_onts, \
             state = excluded.state, removed = 0, updated = excluded.updated",
        )
        .map_err(backend)?
        .execute(params![olt, p.at.frame, p.at.slot, p.at.port, p.max_onts, p.state.as_str(), at])
        .map_err(backend)?;
    }
    let pon_id = |r: &crate::model::PonPortRef,
                  olt_id: &mut dyn FnMut(&str) -> StoreResult<i64>|
     -> StoreResult<i64> {
        let olt = olt_id(&r.olt)?;
        id_of(
            conn,
            "SELECT id FROM pon_port WHERE olt_id = ?1 AND frame = ?2 AND slot = ?3 AND port = ?4",
            params![olt, r.frame, r.slot, r.port],
            &format!("PON port {r}"),
        )
    };
    for c in &inv.compounds {
        let ex = exchange_id(&c.exchange)?;
        let zone: Option<i64> = conn
            .prepare_cached("SELECT id FROM zone WHERE domain = 'FTTH' AND code = ?1")
            .map_err(backend)?
            .query_row([&c.zone], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        let id: i64 = conn
            .prepare_cached(
                "INSERT INTO compound (code, name, exchange_id, zone_id, updated) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (code) DO UPDATE SET name = excluded.name, exchange_id = excluded.exchange_id, \
                 zone_id = excluded.zone_id, removed = 0, updated = excluded.updated RETURNING id",
            )
            .map_err(backend)?
            .query_row(params![c.code, c.name, ex, zone, at], |r| r.get(0))
            .map_err(backend)?;
        conn.prepare_cached("DELETE FROM compound_pon WHERE compound_id = ?1")
            .map_err(backend)?
            .execute([id])
            .map_err(backend)?;
        for p in &c.pon_ports {
            let pon = pon_id(p, &mut olt_id)?;
            conn.prepare_cached(
                "INSERT OR IGNORE INTO compound_pon (compound_id, pon_port_id) VALUES (?1, ?2)",
            )
            .map_err(backend)?
            .execute(params![id, pon])
            .map_err(backend)?;
        }
    }
    for o in &inv.onts {
        let pon = pon_id(&o.at, &mut olt_id)?;
        conn.prepare_cached(
            "INSERT INTO ont (serial, pon_port_id, ont_id, model, state, origin, created, updated) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'SOURCE', ?6, ?6) \
             ON CONFLICT (serial) DO UPDATE SET pon_port_id = excluded.pon_port_id, ont_id = excluded.ont_id, \
             model = excluded.model, state = excluded.state, removed = 0, updated = excluded.updated",
        )
        .map_err(backend)?
        .execute(params![o.serial, pon, o.ont_id, o.model, o.state.as_str(), at])
        .map_err(backend)?;
    }
    {
        let mut st = conn
            .prepare_cached(
                "INSERT INTO vlan (olt_id, vlan_id, purpose, state, updated) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (olt_id, vlan_id) DO UPDATE SET purpose = excluded.purpose, state = excluded.state, \
                 removed = 0, updated = excluded.updated \
                 WHERE purpose != excluded.purpose OR state != excluded.state OR removed != 0",
            )
            .map_err(backend)?;
        for v in &inv.vlans {
            let olt = olt_id(&v.olt)?;
            st.execute(params![olt, v.id, v.purpose.as_str(), v.state.as_str(), at])
                .map_err(backend)?;
        }
    }
    Ok(())
}
