//! Shared helpers of the im-core integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use im_core::{CoreConfig, Form, FormItem, Im, Outcome};
use std::path::PathBuf;

/// A core on a fresh SQLite file in a temporary directory, with the demo inventory.
pub struct TestIm {
    pub im: Im,
    pub dir: tempfile::TempDir,
}

impl TestIm {
    pub fn new() -> TestIm {
        let dir = tempfile::tempdir().unwrap();
        let im = Im::open(CoreConfig::new(dir.path().join("im.db"))).unwrap();
        assert!(im_core::demo::install_if_empty(&im).unwrap());
        TestIm { im, dir }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("im.db")
    }

    pub fn submit(&self, form: Form) -> Outcome {
        self.im.submit_blocking(form)
    }

    /// Opens the database read-only for assertions.
    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.sql().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

/// A form with the demo OM credentials, a flowId and a popid.
pub fn form(flow: &str, popid: &str) -> Form {
    Form::default()
        .field("authusername", im_core::demo::DEMO_OM_USER)
        .field("authpassword", im_core::demo::DEMO_OM_PASSWORD)
        .field("flowId", flow)
        .field("popid", popid)
}

/// An item with opertype, coverType, serviceType and UserName.
pub fn item(op: &str, cover: &str, service: &str, user: &str) -> FormItem {
    FormItem::default()
        .field("opertype", op)
        .field("coverType", cover)
        .field("serviceType", service)
        .field("UserName", user)
}

/// An ADSL Install at EX01 (popid 19601), port auto-picked.
pub fn adsl_install(user: &str) -> FormItem {
    item("Install", "ADSL", "ADSL", user)
        .field("AccountNumber", format!("ACC-{user}"))
        .field("CustomerName", "Ahmed Hassan")
        .field("Password", "pppoe-secret-1")
        .attr("ExchangeID", "EX01")
        .attr("Speed", "16M")
}

/// An FTTH Install for compound CP01 (popid 19601).
pub fn ftth_install(user: &str, ont: &str) -> FormItem {
    item("Install", "FTTH", "FTTH", user)
        .field("AccountNumber", format!("ACC-{user}"))
        .field("CustomerName", "Mona")
        .attr("CompoundId", "CP01")
        .attr("ONTSN", ont)
        .attr("Speed", "100M")
}

// ------------------------------------------------------------------ additions

use im_core::{ErrorCode, ServiceView};
use std::sync::atomic::{AtomicU64, Ordering};

static FLOW_SEQ: AtomicU64 = AtomicU64::new(1);

/// A flowId that no other call of this test process uses.
pub fn fresh_flow(prefix: &str) -> String {
    format!("{prefix}-{}", FLOW_SEQ.fetch_add(1, Ordering::Relaxed))
}

/// The numeric code of an outcome.
pub fn code(o: &Outcome) -> i32 {
    o.error_code.code()
}

/// Asserts that an outcome carries `expected` (numeric), with the outcome in the message.
#[track_caller]
pub fn assert_code(o: &Outcome, expected: i32) {
    assert_eq!(code(o), expected, "expected {expected}, got {o:#?}");
}

/// Asserts that a call was accepted and returns its task number (if any).
#[track_caller]
pub fn assert_ok(o: &Outcome) -> Option<String> {
    assert_eq!(
        o.error_code,
        ErrorCode::Success,
        "expected success, got {o:#?}"
    );
    assert_eq!(o.return_code(), 0);
    o.task_no.clone()
}

/// A Query item for `user` (no coverType/serviceType).
pub fn query_item(user: &str) -> FormItem {
    FormItem::default()
        .field("opertype", "Query")
        .field("UserName", user)
}

/// An item that deletes `user`'s `service`.
pub fn delete_item(cover: &str, service: &str, user: &str) -> FormItem {
    item("Delete", cover, service, user)
}

impl TestIm {
    /// Submits a one-item call with a fresh flowId at popid 19601.
    pub fn one(&self, it: FormItem) -> Outcome {
        self.submit(form(&fresh_flow("one"), "19601").item(it))
    }

    /// Submits a one-item call that must be accepted; returns its outcome.
    #[track_caller]
    pub fn ok(&self, it: FormItem) -> Outcome {
        let o = self.one(it);
        assert_ok(&o);
        o
    }

    /// The services a Query for `user` lists (asserting the Query succeeded).
    #[track_caller]
    pub fn query(&self, user: &str) -> Vec<ServiceView> {
        let o = self.submit(form(&fresh_flow("q"), "19601").item(query_item(user)));
        assert_ok(&o);
        assert_eq!(o.items.len(), 1);
        o.items[0].services.clone()
    }

    /// The one service of `user` with `service_type`, as a Query lists it.
    #[track_caller]
    pub fn view(&self, user: &str, service_type: &str) -> ServiceView {
        let all = self.query(user);
        let mut m: Vec<_> = all
            .into_iter()
            .filter(|s| s.service_type == service_type)
            .collect();
        assert_eq!(m.len(), 1, "one {service_type} service of {user}: {m:?}");
        m.remove(0)
    }

    /// Verifies the demo credentials once, so that concurrent callers hit the
    /// credential cache instead of each running the password hash.
    pub fn warm(&self) {
        assert_ok(&self.submit(form(&fresh_flow("warm"), "19601").item(query_item("warm@x"))));
    }

    /// Whether the schema has a table of that name.
    pub fn has_table(&self, table: &str) -> bool {
        self.sql()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            > 0
    }

    /// The number of items a stored task holds (a `task_item` table, or the task's `items` JSON).
    pub fn task_item_count(&self, task_no: &str) -> i64 {
        let sql = if self.has_table("task_item") {
            "SELECT count(*) FROM task_item i JOIN task t ON t.id = i.task_id WHERE t.task_no = ?1"
        } else {
            "SELECT json_array_length(items) FROM task WHERE task_no = ?1"
        };
        self.sql().query_row(sql, [task_no], |r| r.get(0)).unwrap()
    }

    /// A task's history as the states it went through, oldest first. Its
    /// creation (RECEIVED) counts whether stored as a `task_history` row or
    /// implied by the task row itself.
    pub fn task_history(&self, task_no: &str) -> Vec<String> {
        let c = self.sql();
        let mut st = c
            .prepare(
                "SELECT h.from_state, h.to_state FROM task_history h JOIN task t ON t.id = h.task_id \
                 WHERE t.task_no = ?1 ORDER BY h.id",
            )
            .unwrap();
        let rows: Vec<(Option<String>, String)> = st
            .query_map([task_no], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let explicit_creation = rows
            .first()
            .is_some_and(|(from, to)| from.is_none() && to == "RECEIVED");
        let mut out = Vec::new();
        if !explicit_creation {
            out.push("RECEIVED".to_string());
        }
        out.extend(rows.into_iter().map(|(_, to)| to));
        out
    }

    /// Closes the core and opens it again on the same database and key file.
    pub fn reopen(&mut self) {
        self.im.close();
        self.im = Im::open(CoreConfig::new(self.db_path())).unwrap();
    }

    /// The key file of the database.
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("im.key")
    }

    /// The UserName/serviceType of the service holding a DSLAM port, by SQL.
    pub fn port_holder(
        &self,
        dslam: &str,
        frame: u32,
        slot: u32,
        port: u32,
    ) -> Option<(String, String)> {
        use rusqlite::OptionalExtension;
        self.sql()
            .query_row(
                "SELECT s.user_name, s.service_type FROM port p JOIN dslam d ON d.id = p.dslam_id \
                 JOIN service s ON s.id = p.service_id \
                 WHERE d.name = ?1 AND p.frame = ?2 AND p.slot = ?3 AND p.port = ?4",
                rusqlite::params![dslam, frame, slot, port],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .unwrap()
    }

    /// Where an ONT is placed and who holds it, by SQL:
    /// `(OLT/frame/slot/port, ont_id, holder UserName)`.
    pub fn ont_place(&self, serial: &str) -> Option<(String, i64, Option<String>)> {
        use rusqlite::OptionalExtension;
        self.sql()
            .query_row(
                "SELECT o.name || '/' || pp.frame || '/' || pp.slot || '/' || pp.port, t.ont_id, s.user_name \
                 FROM ont t JOIN pon_port pp ON pp.id = t.pon_port_id JOIN olt o ON o.id = pp.olt_id \
                 LEFT JOIN service s ON s.id = t.service_id WHERE t.serial = ?1 AND t.removed = 0",
                [serial],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .unwrap()
    }

    /// The commands of a task, in order: `(cmd_id, type, service_type, params as (name, value) pairs)`.
    pub fn commands(&self, task_no: &str) -> Vec<Command> {
        let c = self.sql();
        let mut st = c
            .prepare(
                "SELECT c.cmd_id, c.type, c.service_type, c.params, c.state FROM command c \
                 JOIN task t ON t.id = c.task_id WHERE t.task_no = ?1 ORDER BY c.seq",
            )
            .unwrap();
        st.query_map([task_no], |r| {
            let params: String = r.get(3)?;
            Ok(Command {
                cmd_id: r.get(0)?,
                kind: r.get(1)?,
                service_type: r.get(2)?,
                params: serde_json::from_str::<Vec<(String, String)>>(&params).unwrap(),
                state: r.get(4)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }
}

/// An outbox command as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// `CMD-<taskNo>-<n>`.
    pub cmd_id: String,
    /// `ACTIVATE`, `MODIFY`, `DEACTIVATE`.
    pub kind: String,
    /// Contract spelling of the service type.
    pub service_type: String,
    /// Parameters in order.
    pub params: Vec<(String, String)>,
    /// Delivery state.
    pub state: String,
}

impl Command {
    /// The parameter names in order.
    pub fn param_names(&self) -> Vec<&str> {
        self.params.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// A parameter's value.
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no param {name} in {self:?}"))
    }
}

/// An IPTV add-on Install for `user` (FTTH cover).
pub fn iptv_install(user: &str) -> FormItem {
    item("Install", "FTTH", "IPTV", user)
        .attr("IPTVContent", "GOLD")
        .attr("IPTVPassword", "iptv-secret-1")
}

/// An IP-Phone add-on Install for `user` (FTTH cover).
pub fn ipphone_install(user: &str) -> FormItem {
    item("Install", "FTTH", "IP-Phone", user)
        .attr("IPAddress", "10.200.0.7")
        .attr("SIPDomainName", "sip.example.net")
        .attr("VoiceOfferID", "VO-1")
}

/// An OptionPack add-on Install for `user` on `cover`.
pub fn optionpack_install(cover: &str, user: &str) -> FormItem {
    item("Install", cover, "OptionPack", user)
        .attr("WANIP", "41.33.0.1")
        .attr("SubnetMask", "255.255.255.248")
        .attr("LANIP", "192.168.1.1")
}

/// A Domain/Email add-on Install for `user` on `cover`.
pub fn domain_install(cover: &str, user: &str) -> FormItem {
    item("Install", cover, "Domain/Email", user).attr("DomainName", "example-shop.com.eg")
}

/// `it` with every field named `name` (any spelling, direct or in attrList)
/// set to `value`, or with an attrList entry added when there is none.
pub fn with_value(mut it: FormItem, name: &str, value: &str) -> FormItem {
    let mut found = false;
    for f in it.fields.iter_mut().chain(it.attrs.iter_mut()) {
        if im_core::names::same(&f.name, name) {
            f.value = value.to_string();
            found = true;
        }
    }
    if found { it } else { it.attr(name, value) }
}
