//! The JSON wire format of the operators' API, in one place: request bodies
//! (deserialized strictly: unknown fields refused) and response bodies,
//! converted from im-core's typed values. Nothing else in the API writes
//! or reads JSON shapes.

use im_core::access::{Access, Role};
use im_core::admin::{Organisation, UserView};
use im_core::audit::{OperationEntry, ResourceLogEntry};
use im_core::lifecycle::{CommandView, HistoryEntry};
use im_core::login::LoginLogEntry;
use im_core::operator::Page;
use im_core::query::{
    CustomerView, HeldResource, InventoryRow, OutboxRow, ServiceDetail, ServiceEvent, ServiceRow,
    TaskDetail, TaskRow, UsageSummary,
};
use im_core::sync::SyncRunRec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The body of every error answer: `{"error":{"code":…,"message":…}}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a message for people.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code (`UNAUTHENTICATED`, `FORBIDDEN`, `NOT_FOUND`, …).
    pub code: String,
    /// What went wrong (never internals).
    pub message: String,
}

/// A page of rows and the cursor of the next one.
#[derive(Debug, Serialize)]
pub struct PageBody<T> {
    /// The rows, newest first.
    pub items: Vec<T>,
    /// Pass as `before` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

impl<T> PageBody<T> {
    /// Converts a core page.
    pub fn from<U>(page: Page<U>, f: impl Fn(U) -> T) -> PageBody<T> {
        PageBody {
            items: page.items.into_iter().map(f).collect(),
            next_before: page.next_before,
        }
    }
}

/// `POST /session`'s answer.
#[derive(Debug, Serialize)]
pub struct SessionBody {
    /// The bearer token (send as `Authorization: Bearer …`).
    pub token: String,
    /// Seconds it stays valid.
    pub expires_in: u64,
    /// The account.
    pub account: String,
    /// Its roles.
    pub roles: Vec<String>,
}

/// `GET /me`: what the caller may do.
#[derive(Debug, Serialize)]
pub struct AccessBody {
    /// The account.
    pub account: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// Area → allowed actions.
    pub permissions: BTreeMap<String, Vec<String>>,
    /// Whether it may call the OM interface.
    pub om_interface: bool,
    /// Protected values shown in clear.
    pub visible_protected: Vec<String>,
}

fn perms_map(p: &im_core::access::Permissions) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (area, action) in p.iter() {
        m.entry(area.as_str().into())
            .or_default()
            .push(action.as_str().into());
    }
    m
}

impl From<&Access> for AccessBody {
    fn from(a: &Access) -> AccessBody {
        AccessBody {
            account: a.account.clone(),
            roles: a.roles.clone(),
            permissions: perms_map(&a.permissions),
            om_interface: a.om_interface,
            visible_protected: a.visible.iter().map(|v| v.as_str().into()).collect(),
        }
    }
}

/// A service in a list.
#[derive(Debug, Serialize)]
pub struct ServiceRowBody {
    /// Id (for `GET /services/{id}`).
    pub id: i64,
    /// UserName.
    pub user_name: String,
    /// Service type.
    pub service_type: String,
    /// Cover type.
    pub cover_type: String,
    /// `ACTIVE` / `INACTIVE`.
    pub state: String,
    /// AccountNumber.
    pub account_number: String,
    /// Customer name.
    pub customer_name: String,
    /// Serviceno.
    pub serviceno: String,
    /// Port held.
    pub port: String,
    /// ONT held.
    pub ont_sn: String,
    /// POP id.
    pub popid: String,
    /// Flagged with a resource conflict.
    pub conflict: bool,
    /// Last change.
    pub updated: String,
}

impl From<ServiceRow> for ServiceRowBody {
    fn from(s: ServiceRow) -> ServiceRowBody {
        ServiceRowBody {
            id: s.id,
            user_name: s.user_name,
            service_type: s.service_type,
            cover_type: s.cover_type,
            state: s.state,
            account_number: s.account_number,
            customer_name: s.customer_name,
            serviceno: s.serviceno,
            port: s.port,
            ont_sn: s.ont_sn,
            popid: s.popid,
            conflict: s.conflict,
            updated: s.updated,
        }
    }
}

/// A customer.
#[derive(Debug, Serialize)]
pub struct CustomerBody {
    /// AccountNumber.
    pub account_number: String,
    /// Name.
    pub name: String,
    /// Segment.
    pub segment: String,
    /// Level.
    pub level: String,
    /// Mobile: clear, `******`, or absent.
    pub mobile: Option<String>,
    /// Email: clear, `******`, or absent.
    pub email: Option<String>,
    /// Creation.
    pub created: String,
}

impl From<CustomerView> for CustomerBody {
    fn from(c: CustomerView) -> CustomerBody {
        CustomerBody {
            account_number: c.account_number,
            name: c.name,
            segment: c.segment,
            level: c.level,
            mobile: c.mobile,
            email: c.email,
            created: c.created,
        }
    }
}

/// A resource a service uses.
#[derive(Debug, Serialize)]
pub struct ResourceBody {
    /// Kind.
    pub kind: String,
    /// Key.
    pub code: String,
    /// State, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
}

impl From<HeldResource> for ResourceBody {
    fn from(r: HeldResource) -> ResourceBody {
        ResourceBody {
            kind: r.kind,
            code: r.code,
            state: r.state,
        }
    }
}

/// A command of a task that touched a service.
#[derive(Debug, Serialize)]
pub struct ServiceEventBody {
    /// Task number.
    pub task_no: String,
    /// flowId.
    pub flow_id: String,
    /// Task state.
    pub task_state: String,
    /// Command id.
    pub command_id: String,
    /// Command type.
    pub command_type: String,
    /// Command state.
    pub command_state: String,
    /// Queued at.
    pub at: String,
}

impl From<ServiceEvent> for ServiceEventBody {
    fn from(e: ServiceEvent) -> ServiceEventBody {
        ServiceEventBody {
            task_no: e.task_no,
            flow_id: e.flow_id,
            task_state: e.task_state,
            command_id: e.command_id,
            command_type: e.command_type,
            command_state: e.command_state,
            at: e.at,
        }
    }
}

/// A service with everything around it.
#[derive(Debug, Serialize)]
pub struct ServiceDetailBody {
    /// The service.
    pub service: ServiceRowBody,
    /// Speed in kbit/s.
    pub speed_kbps: Option<i64>,
    /// Other stored fields.
    pub fields: serde_json::Value,
    /// PPPoE password: clear, `******`, or absent.
    pub password: Option<String>,
    /// IPTV password: clear, `******`, or absent.
    pub iptv_password: Option<String>,
    /// Why it is flagged.
    pub conflict_reason: Option<String>,
    /// Its customer.
    pub customer: Option<CustomerBody>,
    /// The broadband of an add-on.
    pub parent: Option<ServiceRowBody>,
    /// Its add-ons.
    pub addons: Vec<ServiceRowBody>,
    /// What it holds or uses.
    pub resources: Vec<ResourceBody>,
    /// Commands of tasks that touched it, newest first.
    pub history: Vec<ServiceEventBody>,
    /// Creation.
    pub created: String,
}

impl From<ServiceDetail> for ServiceDetailBody {
    fn from(d: ServiceDetail) -> ServiceDetailBody {
        ServiceDetailBody {
            service: d.service.into(),
            speed_kbps: d.speed_kbps,
            fields: d.fields,
            password: d.password,
            iptv_password: d.iptv_password,
            conflict_reason: d.conflict_reason,
            customer: d.customer.map(Into::into),
            parent: d.parent.map(Into::into),
            addons: d.addons.into_iter().map(Into::into).collect(),
            resources: d.resources.into_iter().map(Into::into).collect(),
            history: d.history.into_iter().map(Into::into).collect(),
            created: d.created,
        }
    }
}

/// A task in a list.
#[derive(Debug, Serialize)]
pub struct TaskRowBody {
    /// Row id (the `before` cursor).
    pub id: i64,
    /// Task number.
    pub task_no: String,
    /// flowId.
    pub flow_id: String,
    /// POP id.
    pub popid: String,
    /// State.
    pub state: String,
    /// OM account.
    pub account: String,
    /// Creation.
    pub created: String,
    /// Last change.
    pub updated: String,
}

impl From<TaskRow> for TaskRowBody {
    fn from(t: TaskRow) -> TaskRowBody {
        TaskRowBody {
            id: t.id,
            task_no: t.task_no,
            flow_id: t.flow_id,
            popid: t.popid,
            state: t.state,
            account: t.account,
            created: t.created,
            updated: t.updated,
        }
    }
}

/// A command of a task.
#[derive(Debug, Serialize)]
pub struct CommandBody {
    /// Row id (for `POST /outbox/{id}/redo`).
    pub row_id: i64,
    /// Id AM sees.
    pub id: String,
    /// Number within the task.
    pub seq: u32,
    /// Type.
    pub kind: String,
    /// Service type.
    pub service_type: String,
    /// State.
    pub state: String,
    /// Attempts.
    pub attempts: u32,
    /// Redo number.
    pub redo: u32,
    /// Next attempt.
    pub next_attempt: Option<String>,
    /// Last ack status.
    pub ack_status: Option<String>,
    /// Last ack code.
    pub ack_code: Option<String>,
    /// Last ack description.
    pub ack_desc: Option<String>,
    /// Parameters (never secrets).
    pub params: Vec<(String, String)>,
    /// Queued at.
    pub created: String,
    /// Last change.
    pub updated: String,
}

impl From<CommandView> for CommandBody {
    fn from(c: CommandView) -> CommandBody {
        CommandBody {
            row_id: c.row_id,
            id: c.id,
            seq: c.seq,
            kind: c.kind.as_str().into(),
            service_type: c.service_type.as_str().into(),
            state: c.state.as_str().into(),
            attempts: c.attempts,
            redo: c.redo,
            next_attempt: c.next_attempt,
            ack_status: c.ack_status,
            ack_code: c.ack_code,
            ack_desc: c.ack_desc,
            params: c.params,
            created: c.created,
            updated: c.updated,
        }
    }
}

/// One entry of a task's history.
#[derive(Debug, Serialize)]
pub struct HistoryBody {
    /// When.
    pub at: String,
    /// State before.
    pub from: Option<String>,
    /// State after.
    pub to: String,
    /// What happened.
    pub action: String,
    /// Who.
    pub actor: String,
    /// Why.
    pub reason: String,
}

impl From<HistoryEntry> for HistoryBody {
    fn from(h: HistoryEntry) -> HistoryBody {
        HistoryBody {
            at: h.at,
            from: h.from.map(|s| s.as_str().into()),
            to: h.to.as_str().into(),
            action: h.action,
            actor: h.actor,
            reason: h.reason,
        }
    }
}

/// A task with its request, items, commands and history.
#[derive(Debug, Serialize)]
pub struct TaskDetailBody {
    /// Task number.
    pub task_no: String,
    /// flowId.
    pub flow_id: String,
    /// POP id.
    pub popid: String,
    /// State.
    pub state: String,
    /// OM account.
    pub account: String,
    /// Creation.
    pub created: String,
    /// Last change.
    pub updated: String,
    /// The request as OM sent it (credentials left out, protected values
    /// `******` unless the caller may see them).
    pub request: serde_json::Value,
    /// Item results.
    pub items: serde_json::Value,
    /// Commands.
    pub commands: Vec<CommandBody>,
    /// History, oldest first.
    pub history: Vec<HistoryBody>,
}

impl From<TaskDetail> for TaskDetailBody {
    fn from(d: TaskDetail) -> TaskDetailBody {
        let t = d.task;
        TaskDetailBody {
            task_no: t.task_no,
            flow_id: t.flow_id,
            popid: t.popid,
            state: t.state.as_str().into(),
            account: t.account,
            created: t.created,
            updated: t.updated,
            request: d.request,
            items: d.items,
            commands: t.commands.into_iter().map(Into::into).collect(),
            history: t.history.into_iter().map(Into::into).collect(),
        }
    }
}

/// A task action's answer.
#[derive(Debug, Serialize)]
pub struct TaskStateBody {
    /// Task number.
    pub task_no: String,
    /// Its state afterwards.
    pub state: String,
}

/// An inventory row.
#[derive(Debug, Serialize)]
pub struct InventoryBody {
    /// Row id (the `before` cursor).
    pub id: i64,
    /// Type.
    pub resource: String,
    /// Natural key as text (the `{code}` of its URL).
    pub code: String,
    /// Soft-removed.
    pub removed: bool,
    /// Fields.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The service holding it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

impl From<InventoryRow> for InventoryBody {
    fn from(r: InventoryRow) -> InventoryBody {
        InventoryBody {
            id: r.id,
            resource: r.resource.as_str().into(),
            code: r.code,
            removed: r.removed,
            fields: r.fields,
            holder: r.holder,
        }
    }
}

/// Usage of an exchange or OLT.
#[derive(Debug, Serialize)]
pub struct SummaryBody {
    /// `exchange` / `olt`.
    pub kind: String,
    /// Code.
    pub code: String,
    /// Ports or ONTs counted.
    pub total: u64,
    /// Free.
    pub free: u64,
    /// In service.
    pub in_service: u64,
    /// Faulty.
    pub faulty: u64,
    /// Removed.
    pub removed: u64,
    /// PON ports (OLT).
    #[serde(skip_serializing_if = "is_zero")]
    pub pon_ports: u64,
    /// ONT capacity (OLT).
    #[serde(skip_serializing_if = "is_zero")]
    pub capacity: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<UsageSummary> for SummaryBody {
    fn from(s: UsageSummary) -> SummaryBody {
        SummaryBody {
            kind: s.kind,
            code: s.code,
            total: s.total,
            free: s.free,
            in_service: s.in_service,
            faulty: s.faulty,
            removed: s.removed,
            pon_ports: s.pon_ports,
            capacity: s.capacity,
        }
    }
}

/// A sync run.
#[derive(Debug, Serialize)]
pub struct SyncRunBody {
    /// Id.
    pub id: i64,
    /// `matrix` / `ematrix`.
    pub system: String,
    /// `FULL` / `INCREMENTAL`.
    pub kind: String,
    /// Status.
    pub status: String,
    /// Start.
    pub started: String,
    /// End.
    pub ended: Option<String>,
    /// Snapshot read.
    pub snapshot: Option<String>,
    /// Watermark.
    pub watermark: Option<String>,
    /// `since` of an incremental run.
    pub since: Option<String>,
    /// Guards overridden.
    pub forced: bool,
    /// Rows added.
    pub added: u64,
    /// Rows changed.
    pub changed: u64,
    /// Rows removed.
    pub removed: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// Conflicts flagged.
    pub conflicts: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// The resource-log filter that lists its changes.
    pub changes_actor: String,
}

impl From<SyncRunRec> for SyncRunBody {
    fn from(r: SyncRunRec) -> SyncRunBody {
        SyncRunBody {
            changes_actor: format!("sync:{}:{}", r.system, r.id),
            id: r.id,
            system: r.system,
            kind: r.kind,
            status: r.status,
            started: r.started,
            ended: r.ended,
            snapshot: r.snapshot,
            watermark: r.watermark,
            since: r.since,
            forced: r.forced,
            added: r.counts.added,
            changed: r.counts.changed,
            removed: r.counts.removed,
            rejected: r.counts.rejected,
            conflicts: r.counts.conflicts,
            error: r.error,
        }
    }
}

/// An outbox command.
#[derive(Debug, Serialize)]
pub struct OutboxBody {
    /// Row id.
    pub id: i64,
    /// Id AM sees.
    pub command_id: String,
    /// Task number.
    pub task_no: String,
    /// Service UserName.
    pub user_name: String,
    /// Type.
    pub kind: String,
    /// Service type.
    pub service_type: String,
    /// State.
    pub state: String,
    /// Attempts.
    pub attempts: u32,
    /// Next attempt.
    pub next_attempt: Option<String>,
    /// Last ack.
    pub last_ack: Option<String>,
    /// Queued.
    pub created: String,
    /// Last change.
    pub updated: String,
}

impl From<OutboxRow> for OutboxBody {
    fn from(o: OutboxRow) -> OutboxBody {
        OutboxBody {
            id: o.id,
            command_id: o.command_id,
            task_no: o.task_no,
            user_name: o.user_name,
            kind: o.kind,
            service_type: o.service_type,
            state: o.state,
            attempts: o.attempts,
            next_attempt: o.next_attempt,
            last_ack: o.last_ack,
            created: o.created,
            updated: o.updated,
        }
    }
}

/// An account.
#[derive(Debug, Serialize)]
pub struct UserBody {
    /// Login.
    pub login: String,
    /// Display name.
    pub display_name: String,
    /// Organisation code.
    pub organisation: Option<String>,
    /// `LOCAL` / `AD`.
    pub mode: String,
    /// Enabled.
    pub enabled: bool,
    /// Roles.
    pub roles: Vec<String>,
    /// Last login.
    pub last_login: Option<String>,
    /// Locked until.
    pub locked_until: Option<String>,
    /// Creation.
    pub created: String,
    /// Row id (the `before` cursor).
    pub id: i64,
}

impl From<UserView> for UserBody {
    fn from(u: UserView) -> UserBody {
        UserBody {
            login: u.login,
            display_name: u.display_name,
            organisation: u.organisation,
            mode: u.mode.as_str().into(),
            enabled: u.enabled,
            roles: u.roles,
            last_login: u.last_login,
            locked_until: u.locked_until,
            created: u.created,
            id: u.id,
        }
    }
}

/// A role.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    /// Code.
    pub code: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// May call the OM interface.
    #[serde(default)]
    pub om_interface: bool,
    /// Area → actions (`read`, `add`, `modify`, `delete`).
    #[serde(default)]
    pub permissions: BTreeMap<String, Vec<String>>,
    /// Protected values shown in clear.
    #[serde(default)]
    pub visible_protected: Vec<String>,
}

impl From<Role> for RoleBody {
    fn from(r: Role) -> RoleBody {
        RoleBody {
            permissions: perms_map(&r.permissions),
            visible_protected: r.visible.iter().map(|v| v.as_str().into()).collect(),
            code: r.code,
            name: r.name,
            om_interface: r.om_interface,
        }
    }
}

/// An organisation.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganisationBody {
    /// Code.
    pub code: String,
    /// Name.
    #[serde(default)]
    pub name: String,
}

impl From<Organisation> for OrganisationBody {
    fn from(o: Organisation) -> OrganisationBody {
        OrganisationBody {
            code: o.code,
            name: o.name,
        }
    }
}

/// An operation-log row.
#[derive(Debug, Serialize)]
pub struct OperationBody {
    /// Id.
    pub id: i64,
    /// When.
    pub at: String,
    /// Who.
    pub account: String,
    /// From where.
    pub ip: String,
    /// Action.
    pub action: String,
    /// Area.
    pub area: String,
    /// Target.
    pub target: String,
    /// Outcome.
    pub outcome: String,
    /// Detail.
    pub detail: String,
}

impl From<OperationEntry> for OperationBody {
    fn from(e: OperationEntry) -> OperationBody {
        OperationBody {
            id: e.id,
            at: e.at,
            account: e.account,
            ip: e.ip,
            action: e.action,
            area: e.area,
            target: e.target,
            outcome: e.outcome,
            detail: e.detail,
        }
    }
}

/// A resource-log row.
#[derive(Debug, Serialize)]
pub struct ResourceLogBody {
    /// Id.
    pub id: i64,
    /// When.
    pub at: String,
    /// Account or sync run.
    pub actor: String,
    /// From where.
    pub ip: String,
    /// Resource type.
    pub resource_type: String,
    /// Key.
    pub code: String,
    /// Name.
    pub name: String,
    /// `ADD`, `MODIFY`, `REMOVE`, …
    pub operation: String,
    /// Old values.
    pub old_values: Option<serde_json::Value>,
    /// New values.
    pub new_values: Option<serde_json::Value>,
}

impl From<ResourceLogEntry> for ResourceLogBody {
    fn from(e: ResourceLogEntry) -> ResourceLogBody {
        let parse = |s: Option<String>| {
            s.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
        };
        ResourceLogBody {
            id: e.id,
            at: e.at,
            actor: e.actor,
            ip: e.ip,
            resource_type: e.resource_type,
            code: e.code,
            name: e.name,
            operation: e.operation,
            old_values: parse(e.old_values),
            new_values: parse(e.new_values),
        }
    }
}

/// A login-log row.
#[derive(Debug, Serialize)]
pub struct LoginLogBody {
    /// Id.
    pub id: i64,
    /// When.
    pub at: String,
    /// Account as typed.
    pub account: String,
    /// From where.
    pub ip: String,
    /// `LOGIN` / `LOGOUT`.
    pub event: String,
    /// `SUCCESS` / `FAILURE`.
    pub outcome: String,
    /// Why it failed.
    pub reason: String,
    /// Auth mode.
    pub auth_mode: Option<String>,
}

impl From<LoginLogEntry> for LoginLogBody {
    fn from(e: LoginLogEntry) -> LoginLogBody {
        LoginLogBody {
            id: e.id,
            at: e.at,
            account: e.account,
            ip: e.ip,
            event: e.event.as_str().into(),
            outcome: if e.success { "SUCCESS" } else { "FAILURE" }.into(),
            reason: e.reason,
            auth_mode: e.auth_mode.map(|m| m.as_str().into()),
        }
    }
}

/// A task action or re-drive: the reason is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    /// Why.
    pub reason: String,
}

/// `POST /users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    /// Login.
    pub login: String,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
    /// `LOCAL` or `AD`.
    pub mode: String,
    /// Password (LOCAL only).
    #[serde(default)]
    pub password: Option<String>,
    /// Role codes.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Organisation code.
    #[serde(default)]
    pub organisation: Option<String>,
}

/// `PUT /users/{login}/roles`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesRequest {
    /// Role codes (replace the current ones).
    pub roles: Vec<String>,
}

/// `POST /users/{login}/password`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    /// The new password.
    pub password: String,
}

/// `POST /sync/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncStartRequest {
    /// `matrix` / `ematrix`.
    pub system: String,
    /// `FULL` (default) / `INCREMENTAL`.
    #[serde(default)]
    pub kind: Option<String>,
}

/// `POST /sync/runs`'s answer.
#[derive(Debug, Serialize)]
pub struct SyncStartedBody {
    /// The system.
    pub system: String,
    /// The kind.
    pub kind: String,
    /// What the runner said.
    pub message: String,
}
