//! The operators' queries: services and customers, tasks with their raw
//! request, the inventory with per exchange / OLT summaries, sync runs and
//! the AM outbox. Every list is paged ([`PageRequest`], at most
//! [`crate::operator::MAX_PAGE`] rows); protected values (`Mobile`,
//! `Email`, `Password`, `IPTVPassword`) are decrypted only for an
//! [`Access`] that may see them and shown as [`crate::access::MASK`]
//! otherwise. Reads run on the core's read threads.

use crate::Im;
use crate::access::{Access, MASK, ProtectedValue};
use crate::lifecycle::TaskView;
use crate::model::{CommandState, TaskState};
use crate::operator::{OpError, Page, PageRequest, text};
use crate::secrets::Secrets;
use crate::store::sqlite::query as sql;
use crate::sync::{Resource, SyncRunRec};

/// Criteria of a service search (all given ones must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSearch {
    /// The service's UserName (exact).
    pub user_name: Option<String>,
    /// The customer's AccountNumber (exact).
    pub account_number: Option<String>,
    /// The Serviceno field (exact).
    pub serviceno: Option<String>,
    /// The serial of the ONT the service (or its broadband) holds.
    pub ont_sn: Option<String>,
    /// The port the service (or its broadband) holds: `DSLAM/frame/slot/port`.
    pub port: Option<String>,
    /// Which page.
    pub page: PageRequest,
}

/// A service in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRow {
    /// Row id.
    pub id: i64,
    /// UserName.
    pub user_name: String,
    /// Service type.
    pub service_type: String,
    /// Cover type.
    pub cover_type: String,
    /// `ACTIVE` or `INACTIVE`.
    pub state: String,
    /// The customer's AccountNumber.
    pub account_number: String,
    /// The customer's name.
    pub customer_name: String,
    /// Serviceno.
    pub serviceno: String,
    /// The port held (`DSLAM/frame/slot/port`), if any.
    pub port: String,
    /// The ONT held, if any.
    pub ont_sn: String,
    /// POP id.
    pub popid: String,
    /// Flagged with a resource conflict.
    pub conflict: bool,
    /// Last change.
    pub updated: String,
}

/// A customer with its protected values shown or masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerView {
    /// AccountNumber.
    pub account_number: String,
    /// Name.
    pub name: String,
    /// Segment.
    pub segment: String,
    /// Level.
    pub level: String,
    /// Mobile (clear or masked).
    pub mobile: Option<String>,
    /// Email (clear or masked).
    pub email: Option<String>,
    /// Creation.
    pub created: String,
}

/// A resource a service holds or uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldResource {
    /// `port`, `ont`, `vlan`, `olt`, `compound`, `exchange`.
    pub kind: String,
    /// Its natural key as text.
    pub code: String,
    /// Its state (source state), when it has one.
    pub state: String,
}

/// A command of a task that touched a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEvent {
    /// The task's number.
    pub task_no: String,
    /// Its flowId.
    pub flow_id: String,
    /// Its state.
    pub task_state: String,
    /// The command's id as AM sees it.
    pub command_id: String,
    /// `ACTIVATE`, `MODIFY`, `DEACTIVATE`.
    pub command_type: String,
    /// The command's state.
    pub command_state: String,
    /// When the command was queued.
    pub at: String,
}

/// A service with its customer, resources, add-ons and history.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDetail {
    /// The service.
    pub service: ServiceRow,
    /// Speed in kbit/s.
    pub speed_kbps: Option<i64>,
    /// The other work-order fields as stored (never a protected value).
    pub fields: serde_json::Value,
    /// The PPPoE password (clear or masked).
    pub password: Option<String>,
    /// The IPTV password (clear or masked).
    pub iptv_password: Option<String>,
    /// Why it is flagged, if it is.
    pub conflict_reason: Option<String>,
    /// Its customer.
    pub customer: Option<CustomerView>,
    /// The broadband an add-on belongs to.
    pub parent: Option<ServiceRow>,
    /// Its add-ons (active or not).
    pub addons: Vec<ServiceRow>,
    /// What it holds or uses.
    pub resources: Vec<HeldResource>,
    /// The commands of tasks that touched it, newest first (at most 100).
    pub history: Vec<ServiceEvent>,
    /// Creation.
    pub created: String,
}

/// Criteria of a task search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSearch {
    /// The task number (exact).
    pub task_no: Option<String>,
    /// The flowId (exact).
    pub flow_id: Option<String>,
    /// The state.
    pub state: Option<TaskState>,
    /// Created at or after (a date or UTC time).
    pub from: Option<String>,
    /// Created before.
    pub to: Option<String>,
    /// Which page.
    pub page: PageRequest,
}

/// A task in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    /// Row id.
    pub id: i64,
    /// Task number.
    pub task_no: String,
    /// flowId.
    pub flow_id: String,
    /// POP id.
    pub popid: String,
    /// State.
    pub state: String,
    /// The OM account that sent it.
    pub account: String,
    /// Creation.
    pub created: String,
    /// Last change.
    pub updated: String,
}

/// A task with its raw request (protected values shown or masked).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDetail {
    /// The task, its commands and history.
    pub task: TaskView,
    /// The request as OM sent it, without the credentials: `{"form":
    /// [[name, value]…], "items": [{"fields": […], "attrs": […]}]}`.
    pub request: serde_json::Value,
    /// The items' results.
    pub items: serde_json::Value,
}

/// Criteria of an inventory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryQuery {
    /// The resource type.
    pub resource: Resource,
    /// The parent's code: a sector for zones, a zone for cities, a city for
    /// exchanges, an exchange for DSLAMs, OLTs and compounds, a DSLAM for
    /// ports, an OLT for PON ports, ONTs and VLANs; a map (`ADSL`, `FTTH`)
    /// for sectors.
    pub parent: Option<String>,
    /// The code (or name, or serial) starts with this.
    pub search: Option<String>,
    /// The source state (`AVAILABLE`, `OCCUPIED`, `FAULTY`) of ports, PON
    /// ports, ONTs and VLANs.
    pub state: Option<String>,
    /// Include soft-removed rows.
    pub include_removed: bool,
    /// Which page.
    pub page: PageRequest,
}

/// One inventory row.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryRow {
    /// Row id.
    pub id: i64,
    /// Resource type.
    pub resource: Resource,
    /// The natural key as text.
    pub code: String,
    /// Soft-removed.
    pub removed: bool,
    /// The fields by name (references by the referenced row's key).
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The service holding it (`UserName (type)`), for ports and ONTs.
    pub holder: Option<String>,
}

/// Usage of an exchange's DSLAM ports or an OLT's ONTs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageSummary {
    /// `exchange` or `olt`.
    pub kind: String,
    /// Its code (or name).
    pub code: String,
    /// Rows counted (ports or ONTs), removed ones included.
    pub total: u64,
    /// Not removed, available and held by no service.
    pub free: u64,
    /// Held by a service.
    pub in_service: u64,
    /// Not removed and faulty.
    pub faulty: u64,
    /// Soft-removed.
    pub removed: u64,
    /// For an OLT: its PON ports (not removed).
    pub pon_ports: u64,
    /// For an OLT: the ONTs its PON ports can take.
    pub capacity: u64,
}

/// An outbox command in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// The id AM sees (with `-rN` after a redo).
    pub command_id: String,
    /// The task's number.
    pub task_no: String,
    /// The service's UserName.
    pub user_name: String,
    /// `ACTIVATE`, `MODIFY`, `DEACTIVATE`.
    pub kind: String,
    /// Service type.
    pub service_type: String,
    /// `PENDING`, `DELIVERED`, `FAILED`, `DROPPED`.
    pub state: String,
    /// Attempts since queued or last redone.
    pub attempts: u32,
    /// Next attempt (while retrying).
    pub next_attempt: Option<String>,
    /// AM's last ack status, code and description.
    pub last_ack: Option<String>,
    /// Queued at.
    pub created: String,
    /// Last change.
    pub updated: String,
}

fn opt_text(what: &str, v: &Option<String>) -> Result<Option<String>, OpError> {
    match v {
        None => Ok(None),
        Some(s) => {
            let s = text(what, s)?;
            Ok((!s.is_empty()).then_some(s))
        }
    }
}

/// A port reference `DSLAM/frame/slot/port` (DSLAM names may hold `/`).
pub(crate) fn parse_port(s: &str) -> Option<(String, u32, u32, u32)> {
    let mut it = s.trim().rsplitn(4, '/');
    let port = it.next()?.trim().parse().ok()?;
    let slot = it.next()?.trim().parse().ok()?;
    let frame = it.next()?.trim().parse().ok()?;
    let dslam = it.next()?.trim();
    (!dslam.is_empty()).then(|| (dslam.to_string(), frame, slot, port))
}

/// Decrypts a stored blob for `access`: clear when it may see `value`,
/// [`MASK`] otherwise; `None` when nothing is stored.
pub(crate) fn shown(
    secrets: &Secrets,
    access: &Access,
    value: ProtectedValue,
    blob: Option<Vec<u8>>,
) -> Option<String> {
    let blob = blob?;
    if !access.sees(value) {
        return Some(MASK.to_string());
    }
    Some(secrets.decrypt(&blob).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "a stored protected value cannot be decrypted");
        MASK.to_string()
    }))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The stored request with each `enc:` value decrypted when `access` may
/// see that field, [`MASK`] otherwise.
pub(crate) fn request_for(secrets: &Secrets, access: &Access, stored: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(stored).unwrap_or(serde_json::Value::Null);
    fn pairs(list: Option<&mut serde_json::Value>, f: &dyn Fn(&str, &str) -> Option<String>) {
        let Some(serde_json::Value::Array(list)) = list else {
            return;
        };
        for pair in list.iter_mut() {
            let Some(arr) = pair.as_array_mut() else {
                continue;
            };
            let name = arr
                .first()
                .and_then(|n| n.as_str())
                .unwrap_or("")
                .to_string();
            if let Some(val) = arr.get_mut(1)
                && let Some(s) = val.as_str()
                && let Some(new) = f(&name, s)
            {
                *val = serde_json::Value::String(new);
            }
        }
    }
    let f = |name: &str, value: &str| -> Option<String> {
        let hex = value.strip_prefix("enc:")?;
        let visible = ProtectedValue::parse(name).is_some_and(|p| access.sees(p));
        if !visible {
            return Some(MASK.to_string());
        }
        Some(
            unhex(hex)
                .and_then(|b| secrets.decrypt(&b).ok())
                .unwrap_or_else(|| MASK.to_string()),
        )
    };
    pairs(v.get_mut("form"), &f);
    if let Some(serde_json::Value::Array(items)) = v.get_mut("items") {
        for it in items {
            pairs(it.get_mut("fields"), &f);
            pairs(it.get_mut("attrs"), &f);
        }
    }
    v
}

impl Im {
    /// Services matching `search`, newest first.
    ///
    /// # Errors
    ///
    /// [`OpError::Invalid`] for an over-long value or a malformed port.
    pub async fn search_services(
        &self,
        search: ServiceSearch,
    ) -> Result<Page<ServiceRow>, OpError> {
        let s = ServiceSearch {
            user_name: opt_text("user_name", &search.user_name)?,
            account_number: opt_text("account_number", &search.account_number)?,
            serviceno: opt_text("serviceno", &search.serviceno)?,
            ont_sn: opt_text("ont_sn", &search.ont_sn)?,
            port: opt_text("port", &search.port)?,
            page: search.page,
        };
        let port = match &s.port {
            Some(p) => Some(parse_port(p).ok_or_else(|| {
                OpError::Invalid("port: DSLAM/frame/slot/port, e.g. EX01-D1/0/2/17".into())
            })?),
            None => None,
        };
        self.on_sqlite_reader(move |c| sql::search_services(c, &s, port.as_ref()))
            .await
    }

    /// A service by row id with its customer, resources, add-ons and
    /// history; protected values shown only as `access` allows.
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`], storage failures.
    pub async fn service_detail(&self, id: i64, access: &Access) -> Result<ServiceDetail, OpError> {
        let raw = self
            .on_sqlite_reader(move |c| sql::service_detail(c, id))
            .await?
            .ok_or_else(|| OpError::NotFound(format!("no service {id}")))?;
        let secrets = self.secrets();
        let customer = raw.customer.map(|(mut c, mobile, email)| {
            c.mobile = shown(secrets, access, ProtectedValue::Mobile, mobile);
            c.email = shown(secrets, access, ProtectedValue::Email, email);
            c
        });
        Ok(ServiceDetail {
            password: shown(secrets, access, ProtectedValue::Password, raw.password),
            iptv_password: shown(
                secrets,
                access,
                ProtectedValue::IptvPassword,
                raw.iptv_password,
            ),
            customer,
            ..raw.detail
        })
    }

    /// Tasks matching `search`, newest first.
    ///
    /// # Errors
    ///
    /// [`OpError::Invalid`] for a bad value.
    pub async fn search_tasks(&self, search: TaskSearch) -> Result<Page<TaskRow>, OpError> {
        let s = TaskSearch {
            task_no: opt_text("task_no", &search.task_no)?,
            flow_id: opt_text("flow_id", &search.flow_id)?,
            from: search
                .from
                .as_deref()
                .map(|t| crate::audit::time_bound("from", t))
                .transpose()?,
            to: search
                .to
                .as_deref()
                .map(|t| crate::audit::time_bound("to", t))
                .transpose()?,
            ..search
        };
        self.on_sqlite_reader(move |c| sql::search_tasks(c, &s))
            .await
    }

    /// A task with its commands, history, items and raw request (protected
    /// values shown only as `access` allows).
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`], storage failures.
    pub async fn task_detail(&self, task_no: &str, access: &Access) -> Result<TaskDetail, OpError> {
        let no = text("task_no", task_no)?;
        let task = self
            .task(&no)
            .await?
            .ok_or_else(|| OpError::NotFound(format!("no task {no}")))?;
        let n = no.clone();
        let stored = self
            .on_sqlite_reader(move |c| sql::task_request(c, &n))
            .await?
            .unwrap_or_default();
        let request = request_for(self.secrets(), access, &stored);
        let items = serde_json::from_str(&task.items).unwrap_or(serde_json::Value::Null);
        Ok(TaskDetail {
            task,
            request,
            items,
        })
    }

    /// Inventory rows of one type, newest first.
    ///
    /// # Errors
    ///
    /// [`OpError::Invalid`] for a bad value.
    pub async fn inventory(&self, query: InventoryQuery) -> Result<Page<InventoryRow>, OpError> {
        let q = InventoryQuery {
            parent: opt_text("parent", &query.parent)?,
            search: opt_text("search", &query.search)?,
            state: opt_text("state", &query.state)?.map(|s| s.to_ascii_uppercase()),
            ..query
        };
        self.on_sqlite_reader(move |c| sql::inventory(c, &q)).await
    }

    /// One inventory row by type and natural key text (as [`InventoryRow::code`]).
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`], [`OpError::Invalid`] for a malformed key.
    pub async fn inventory_item(
        &self,
        resource: Resource,
        code: &str,
    ) -> Result<InventoryRow, OpError> {
        let key = crate::inventory_admin::key_of(resource, code)?;
        let code = code.to_string();
        self.on_sqlite_reader(move |c| sql::inventory_item(c, resource, &key))
            .await?
            .ok_or_else(|| OpError::NotFound(format!("no {resource} {code}")))
    }

    /// Port usage of an exchange's DSLAMs.
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`] for an unknown exchange.
    pub async fn exchange_summary(&self, code: &str) -> Result<UsageSummary, OpError> {
        let code = text("exchange", code)?;
        self.on_sqlite_reader(move |c| sql::exchange_summary(c, &code))
            .await
    }

    /// ONT usage of an OLT, with its PON ports and capacity.
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`] for an unknown OLT.
    pub async fn olt_summary(&self, name: &str) -> Result<UsageSummary, OpError> {
        let name = text("olt", name)?;
        self.on_sqlite_reader(move |c| sql::olt_summary(c, &name))
            .await
    }

    /// Sync runs, newest first, of one system (`matrix`, `ematrix`) or all.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub async fn sync_run_page(
        &self,
        system: Option<crate::sync::SyncSystem>,
        page: PageRequest,
    ) -> Result<Page<SyncRunRec>, OpError> {
        self.on_sqlite_reader(move |c| sql::sync_runs(c, system.map(|s| s.as_str()), None, &page))
            .await
    }

    /// One sync run.
    ///
    /// # Errors
    ///
    /// [`OpError::NotFound`].
    pub async fn sync_run(&self, id: i64) -> Result<SyncRunRec, OpError> {
        self.on_sqlite_reader(move |c| {
            sql::sync_runs(c, None, Some(id), &PageRequest::default())?
                .items
                .pop()
                .ok_or_else(|| OpError::NotFound(format!("no sync run {id}")))
        })
        .await
    }

    /// Outbox commands, newest first, of one state or all.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub async fn outbox(
        &self,
        state: Option<CommandState>,
        page: PageRequest,
    ) -> Result<Page<OutboxRow>, OpError> {
        self.on_sqlite_reader(move |c| sql::outbox(c, state.map(|s| s.as_str()), &page))
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::access::{Permissions, Role, visible_from_json};

    fn access(visible: &str) -> Access {
        Access::of(
            "x",
            &[Role {
                code: "R".into(),
                name: "R".into(),
                om_interface: false,
                permissions: Permissions::none(),
                visible: visible_from_json(visible),
            }],
        )
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn ports_parse() {
        assert_eq!(
            parse_port("EX01-D1/0/2/17"),
            Some(("EX01-D1".into(), 0, 2, 17))
        );
        assert_eq!(parse_port("A/B/0/1/2"), Some(("A/B".into(), 0, 1, 2)));
        assert_eq!(parse_port("EX01-D1/0/2"), None);
        assert_eq!(parse_port("/0/2/3"), None);
        assert_eq!(parse_port("D/x/2/3"), None);
    }

    #[test]
    fn requests_are_masked_unless_visible() {
        let secrets = Secrets::from_key([7; 32]);
        let stored = serde_json::json!({
            "form": [["flowId", "F1"]],
            "items": [{
                "fields": [["UserName", "u1"], ["Password", format!("enc:{}", hex(&secrets.encrypt("pppoe-pw")))],
                           ["Mobile", format!("enc:{}", hex(&secrets.encrypt("0100")))]],
                "attrs": [["IPTVPassword", format!("enc:{}", hex(&secrets.encrypt("tv-pw")))]]
            }]
        })
        .to_string();
        let viewer = request_for(&secrets, &access("[]"), &stored);
        let text = viewer.to_string();
        assert!(!text.contains("pppoe-pw") && !text.contains("0100") && !text.contains("tv-pw"));
        assert_eq!(viewer["items"][0]["fields"][1][1], MASK);
        assert_eq!(viewer["items"][0]["fields"][0][1], "u1");
        let admin = request_for(&secrets, &access(r#"["Password","Mobile"]"#), &stored);
        assert_eq!(admin["items"][0]["fields"][1][1], "pppoe-pw");
        assert_eq!(admin["items"][0]["fields"][2][1], "0100");
        assert_eq!(admin["items"][0]["attrs"][0][1], MASK);
    }

    #[test]
    fn shown_values() {
        let secrets = Secrets::from_key([1; 32]);
        let blob = secrets.encrypt("secret");
        assert_eq!(
            shown(
                &secrets,
                &access("[]"),
                ProtectedValue::Email,
                Some(blob.clone())
            )
            .as_deref(),
            Some(MASK)
        );
        assert_eq!(
            shown(
                &secrets,
                &access(r#"["Email"]"#),
                ProtectedValue::Email,
                Some(blob)
            )
            .as_deref(),
            Some("secret")
        );
        assert_eq!(
            shown(
                &secrets,
                &access(r#"["Email"]"#),
                ProtectedValue::Email,
                None
            ),
            None
        );
    }
}
