//! Writes of the writer connection.

use super::{PortPos, SqliteWriter, backend};
use crate::model::ServiceState;
use crate::store::{
    CommandWrite, CustomerWrite, HistoryWrite, ServiceWrite, StoreError, StoreResult, StoreWrite,
    TaskWrite,
};
use rusqlite::{Connection, OptionalExtension, params};

fn fields_json(s: &ServiceWrite) -> StoreResult<String> {
    serde_json::to_string(&s.fields).map_err(|e| StoreError::Data(e.to_string()))
}

/// Runs an `UPDATE` of a service row by id whose parameters are, in order:
/// `?1` id, `?2` cover type, `?3` customer, `?4` parent, `?5` popid,
/// `?6` exchange, `?7` OLT, `?8` compound, `?9` VLAN, `?10` speed,
/// `?11` password, `?12` IPTV password, `?13` fields, `?14` time; returns the
/// rows changed.
fn rewrite_service(
    conn: &Connection,
    sql: &str,
    id: i64,
    s: &ServiceWrite,
    fields: &str,
    at: &str,
) -> StoreResult<usize> {
    conn.prepare_cached(sql)
        .map_err(backend)?
        .execute(params![
            id,
            s.cover_type.as_str(),
            s.customer_id,
            s.parent_id,
            s.popid,
            s.exchange_id,
            s.olt_id,
            s.compound_id,
            s.vlan,
            s.speed_kbps.map(|v| v as i64),
            s.password_enc,
            s.iptv_password_enc,
            fields,
            at
        ])
        .map_err(backend)
}

impl StoreWrite for SqliteWriter {
    fn insert_task(&mut self, t: &TaskWrite<'_>) -> StoreResult<i64> {
        // No RETURNING on the hot path: SQLite runs RETURNING as a trigger,
        // which costs a statement journal and a temporary table per row.
        self.conn
            .prepare_cached(
                "INSERT INTO task (task_no, flow_id, fingerprint, popid, state, request, items, account, created, updated) \
                 VALUES (?1, ?2, ?3, ?4, 'RECEIVED', ?5, ?6, ?7, ?8, ?8)",
            )
            .map_err(backend)?
            .execute(params![t.task_no, t.flow_id, t.fingerprint, t.popid, t.request, t.items, t.account, t.at])
            .map_err(backend)?;
        Ok(self.conn.last_insert_rowid())
    }

    fn insert_task_history(&mut self, task_id: i64, h: &HistoryWrite<'_>) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO task_history (task_id, at, from_state, to_state, action, actor, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(backend)?
            .execute(params![task_id, h.at, h.from, h.to, h.action, h.actor, h.reason])
            .map_err(backend)?;
        Ok(())
    }

    fn insert_command(&mut self, task_id: i64, c: &CommandWrite<'_>) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO command (cmd_id, task_id, seq, service_id, type, service_type, params, state, created, updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'PENDING', ?8, ?8)",
            )
            .map_err(backend)?
            .execute(params![
                c.cmd_id,
                task_id,
                c.seq,
                c.service_id,
                c.kind.as_str(),
                c.service_type.as_str(),
                c.params,
                c.at
            ])
            .map_err(backend)?;
        Ok(())
    }

    fn upsert_customer(&mut self, c: &CustomerWrite, at: &str) -> StoreResult<i64> {
        // A lookup, then a plain INSERT or an UPDATE by rowid: an upsert with
        // RETURNING would cost a statement journal and a temporary table.
        let existing: Option<i64> = self
            .conn
            .prepare_cached("SELECT id FROM customer WHERE account_number = ?1")
            .map_err(backend)?
            .query_row([&c.account_number], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        if let Some(id) = existing {
            self.conn
                .prepare_cached(
                    "UPDATE customer SET name = coalesce(?2, name), segment = coalesce(?3, segment), \
                       level = coalesce(?4, level), mobile_enc = coalesce(?5, mobile_enc), \
                       email_enc = coalesce(?6, email_enc), updated = ?7 WHERE id = ?1",
                )
                .map_err(backend)?
                .execute(params![id, c.name, c.segment, c.level, c.mobile_enc, c.email_enc, at])
                .map_err(backend)?;
            return Ok(id);
        }
        self.conn
            .prepare_cached(
                "INSERT INTO customer (account_number, name, segment, level, mobile_enc, email_enc, created, updated) \
                 VALUES (?1, coalesce(?2, ''), coalesce(?3, ''), coalesce(?4, ''), ?5, ?6, ?7, ?7)",
            )
            .map_err(backend)?
            .execute(params![
                c.account_number,
                c.name,
                c.segment,
                c.level,
                c.mobile_enc,
                c.email_enc,
                at
            ])
            .map_err(backend)?;
        Ok(self.conn.last_insert_rowid())
    }

    fn put_service(
        &mut self,
        s: &ServiceWrite,
        inactive: Option<i64>,
        at: &str,
    ) -> StoreResult<i64> {
        let fields = fields_json(s)?;
        // A plain INSERT (new) or an UPDATE by rowid (an INACTIVE service
        // installed again); no upsert with RETURNING, which would cost a
        // statement journal and a temporary table.
        match inactive {
            Some(id) => {
                let n = rewrite_service(
                    &self.conn,
                    "UPDATE service SET cover_type = ?2, state = 'ACTIVE', customer_id = ?3, parent_id = ?4, \
                       popid = ?5, exchange_id = ?6, olt_id = ?7, compound_id = ?8, vlan = ?9, speed_kbps = ?10, \
                       password_enc = coalesce(?11, password_enc), iptv_password_enc = coalesce(?12, iptv_password_enc), \
                       fields = ?13, conflict = 0, conflict_reason = NULL, updated = ?14 \
                     WHERE id = ?1 AND state = 'INACTIVE'",
                    id,
                    s,
                    &fields,
                    at,
                )?;
                if n == 1 {
                    Ok(id)
                } else {
                    Err(StoreError::Constraint("service is already active".into()))
                }
            }
            None => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO service (user_name, service_type, cover_type, state, customer_id, parent_id, popid, \
                           exchange_id, olt_id, compound_id, vlan, speed_kbps, password_enc, iptv_password_enc, fields, \
                           conflict, created, updated) \
                         VALUES (?1, ?2, ?3, 'ACTIVE', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 0, ?15, ?15)",
                    )
                    .map_err(backend)?
                    .execute(params![
                        s.user_name,
                        s.service_type.as_str(),
                        s.cover_type.as_str(),
                        s.customer_id,
                        s.parent_id,
                        s.popid,
                        s.exchange_id,
                        s.olt_id,
                        s.compound_id,
                        s.vlan,
                        s.speed_kbps.map(|v| v as i64),
                        s.password_enc,
                        s.iptv_password_enc,
                        fields,
                        at
                    ])
                    .map_err(backend)?;
                Ok(self.conn.last_insert_rowid())
            }
        }
    }

    fn update_service(&mut self, id: i64, s: &ServiceWrite, at: &str) -> StoreResult<()> {
        let fields = fields_json(s)?;
        rewrite_service(
            &self.conn,
            "UPDATE service SET cover_type = ?2, customer_id = ?3, parent_id = ?4, popid = ?5, \
               exchange_id = ?6, olt_id = ?7, compound_id = ?8, vlan = ?9, speed_kbps = ?10, \
               password_enc = coalesce(?11, password_enc), iptv_password_enc = coalesce(?12, iptv_password_enc), \
               fields = ?13, updated = ?14 WHERE id = ?1",
            id,
            s,
            &fields,
            at,
        )?;
        Ok(())
    }

    fn set_service_state(&mut self, id: i64, state: ServiceState, at: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached("UPDATE service SET state = ?2, updated = ?3 WHERE id = ?1")
            .map_err(backend)?
            .execute(params![id, state.as_str(), at])
            .map_err(backend)?;
        Ok(())
    }

    fn hold_port(&mut self, port_id: i64, service_id: i64, at: &str) -> StoreResult<()> {
        take_holder(
            &self.conn,
            "UPDATE port SET service_id = ?2, updated = ?3 WHERE id = ?1 AND service_id IS NULL",
            "port",
            port_id,
            service_id,
            at,
        )
    }

    fn release_port(&mut self, service_id: i64, at: &str) -> StoreResult<()> {
        let held: Option<(i64, i64, PortPos)> = self
            .conn
            .prepare_cached(
                "SELECT id, dslam_id, frame, slot, port FROM port WHERE service_id = ?1",
            )
            .map_err(backend)?
            .query_row([service_id], |r| {
                Ok((r.get(0)?, r.get(1)?, (r.get(2)?, r.get(3)?, r.get(4)?)))
            })
            .optional()
            .map_err(backend)?;
        let Some((port_id, dslam_id, pos)) = held else {
            return Ok(());
        };
        self.conn
            .prepare_cached("UPDATE port SET service_id = NULL, updated = ?2 WHERE id = ?1")
            .map_err(backend)?
            .execute(params![port_id, at])
            .map_err(backend)?;
        // The freed port may come before where this DSLAM's search starts.
        if let Some(from) = self.cache.pick_from.get_mut(&dslam_id)
            && pos < *from
        {
            *from = pos;
        }
        Ok(())
    }

    fn register_ont(
        &mut self,
        serial: &str,
        pon_port_id: i64,
        ont_id: u32,
        model: &str,
        at: &str,
    ) -> StoreResult<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO ont (serial, pon_port_id, ont_id, model, state, origin, created, updated) \
                 VALUES (?1, ?2, ?3, ?4, 'AVAILABLE', 'OM', ?5, ?5)",
            )
            .map_err(backend)?
            .execute(params![serial, pon_port_id, ont_id, model, at])
            .map_err(backend)?;
        Ok(self.conn.last_insert_rowid())
    }

    fn replace_ont(&mut self, id: i64, pon_port_id: i64, ont_id: u32, at: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE ont SET pon_port_id = ?2, ont_id = ?3, removed = 0, updated = ?4 WHERE id = ?1",
            )
            .map_err(backend)?
            .execute(params![id, pon_port_id, ont_id, at])
            .map_err(backend)?;
        Ok(())
    }

    fn hold_ont(&mut self, ont_row: i64, service_id: i64, at: &str) -> StoreResult<()> {
        take_holder(
            &self.conn,
            "UPDATE ont SET service_id = ?2, updated = ?3 WHERE id = ?1 AND service_id IS NULL",
            "ONT",
            ont_row,
            service_id,
            at,
        )
    }

    fn release_ont(&mut self, service_id: i64, at: &str) -> StoreResult<()> {
        release_holder(
            &self.conn,
            "UPDATE ont SET service_id = NULL, updated = ?2 WHERE service_id = ?1",
            service_id,
            at,
        )
    }

    fn load_task_seq(&mut self, day: &str) -> StoreResult<u64> {
        let v: Option<String> = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .map_err(backend)?
            .query_row([format!("task_seq:{day}")], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        match v {
            None => Ok(0),
            Some(s) => s
                .parse()
                .map_err(|_| StoreError::Data(format!("task sequence of {day}: {s:?}"))),
        }
    }

    fn save_task_seq(&mut self, day: &str, last: u64) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .map_err(backend)?
            .execute(params![format!("task_seq:{day}"), last.to_string()])
            .map_err(backend)?;
        Ok(())
    }
}

/// Creates or resets the LOCAL account `login` with the OM-interface role.
pub(super) fn put_om_account(
    conn: &Connection,
    login: &str,
    password_hash: &str,
    at: &str,
) -> StoreResult<()> {
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO account (login, display_name, auth_mode, enabled, password_hash, password_version, created, updated) \
             VALUES (?1, ?1, 'LOCAL', 1, ?2, 1, ?3, ?3) \
             ON CONFLICT (login) DO UPDATE SET password_hash = ?2, \
               password_version = password_version + 1, updated = ?3 \
             RETURNING id",
        )
        .map_err(backend)?
        .query_row(params![login, password_hash, at], |r| r.get(0))
        .map_err(backend)?;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO account_role (account_id, role_id) \
         SELECT ?1, id FROM role WHERE code = 'ROLE_OM_INTERFACE'",
    )
    .map_err(backend)?
    .execute([id])
    .map_err(backend)?;
    Ok(())
}

/// Makes `service_id` the holder of a free resource row (`sql` sets it only
/// where none holds it); a held row is a `Constraint` error.
fn take_holder(
    conn: &Connection,
    sql: &str,
    what: &str,
    row: i64,
    service_id: i64,
    at: &str,
) -> StoreResult<()> {
    let n = conn
        .prepare_cached(sql)
        .map_err(backend)?
        .execute(params![row, service_id, at])
        .map_err(backend)?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::Constraint(format!("{what} {row} is held")))
    }
}

/// Frees whatever resource rows of one kind a service holds.
fn release_holder(conn: &Connection, sql: &str, service_id: i64, at: &str) -> StoreResult<()> {
    conn.prepare_cached(sql)
        .map_err(backend)?
        .execute(params![service_id, at])
        .map_err(backend)?;
    Ok(())
}
