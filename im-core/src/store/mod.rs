//! Storage behind a trait, so that the domain logic (intake, lifecycle) never
//! names a database. [`sqlite`] is the embedded default; a server-grade store
//! implements the same traits.
//!
//! The split follows the group-commit design: one [`WriteConn`] is owned by
//! the single writer thread, which opens a batch, runs each work order in its
//! own savepoint and commits the batch; any number of [`ReadConn`]s serve
//! queries and logins concurrently.

pub mod sqlite;

use crate::lifecycle::{CommandView, DueCommand, HistoryEntry};
use crate::model::Domain;
use crate::model::{
    CommandState, CommandType, CoverType, Inventory, ServiceState, ServiceType, SourceState,
    TaskState, Technology, VlanPurpose,
};
use crate::sync::{Record, Resource, SyncCounts, SyncRunRec, Val};
use std::collections::BTreeMap;

/// A storage failure. Intake answers -9999 for it and stores nothing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, busy, corrupt, …).
    #[error("storage backend: {0}")]
    Backend(String),
    /// A uniqueness or reference rule of the schema refused a write.
    #[error("storage constraint: {0}")]
    Constraint(String),
    /// Stored data could not be read back as expected.
    #[error("stored data invalid: {0}")]
    Data(String),
}

/// Result of storage operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// An exchange (POP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeRec {
    /// Row id.
    pub id: i64,
    /// Exchange code.
    pub code: String,
    /// POP id.
    pub popid: String,
}

/// A DSLAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DslamRec {
    /// Row id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Its exchange's row id.
    pub exchange_id: i64,
    /// Management IP.
    pub ip: String,
    /// What it carries.
    pub technology: Technology,
}

/// A DSLAM port with its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRec {
    /// Row id.
    pub id: i64,
    /// DSLAM row id.
    pub dslam_id: i64,
    /// DSLAM name.
    pub dslam: String,
    /// DSLAM IP.
    pub dslam_ip: String,
    /// Frame.
    pub frame: u32,
    /// Slot.
    pub slot: u32,
    /// Port.
    pub port: u32,
    /// Source state.
    pub state: SourceState,
    /// The service holding it.
    pub holder: Option<i64>,
    /// Soft-removed by a sync.
    pub removed: bool,
}

impl PortRec {
    /// `dslam/frame/slot/port`.
    pub fn label(&self) -> String {
        format!("{}/{}/{}/{}", self.dslam, self.frame, self.slot, self.port)
    }
}

/// A compound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompoundRec {
    /// Row id.
    pub id: i64,
    /// Code.
    pub code: String,
    /// Exchange (POP) row id.
    pub exchange_id: i64,
}

/// An OLT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OltRec {
    /// Row id.
    pub id: i64,
    /// Name.
    pub name: String,
}

/// A PON port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PonRec {
    /// Row id.
    pub id: i64,
    /// OLT row id.
    pub olt_id: i64,
    /// OLT name.
    pub olt: String,
    /// Frame.
    pub frame: u32,
    /// Slot.
    pub slot: u32,
    /// Port.
    pub port: u32,
    /// ONT ids `0..max_onts`.
    pub max_onts: u32,
    /// Source state.
    pub state: SourceState,
}

impl PonRec {
    /// `OLT/frame/slot/port`.
    pub fn label(&self) -> String {
        format!("{}/{}/{}/{}", self.olt, self.frame, self.slot, self.port)
    }
}

/// An ONT with its place and holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OntRec {
    /// Row id.
    pub id: i64,
    /// Serial (canonical form).
    pub serial: String,
    /// Its PON port.
    pub pon: PonRec,
    /// ONT id on the PON port.
    pub ont_id: u32,
    /// Source state.
    pub state: SourceState,
    /// The service holding it.
    pub holder: Option<i64>,
    /// Soft-removed.
    pub removed: bool,
}

/// A service as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRec {
    /// Row id.
    pub id: i64,
    /// PPPoE login.
    pub user_name: String,
    /// Service type.
    pub service_type: ServiceType,
    /// Cover type.
    pub cover_type: CoverType,
    /// Active or not.
    pub state: ServiceState,
    /// Customer row id.
    pub customer_id: Option<i64>,
    /// Broadband service an add-on rides on.
    pub parent_id: Option<i64>,
    /// POP of the order that last placed it.
    pub popid: String,
    /// Exchange row id (ADSL/VDSL).
    pub exchange_id: Option<i64>,
    /// OLT row id (FTTH and its add-ons).
    pub olt_id: Option<i64>,
    /// Compound row id (FTTH).
    pub compound_id: Option<i64>,
    /// VLAN id.
    pub vlan: Option<u16>,
    /// Speed in kbit/s.
    pub speed_kbps: Option<u64>,
    /// Every other (non-protected) field the forms carried, canonical name → value.
    pub fields: BTreeMap<String, String>,
}

/// The writable part of a service (everything but id, state and timestamps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceWrite {
    /// PPPoE login.
    pub user_name: String,
    /// Service type.
    pub service_type: ServiceType,
    /// Cover type.
    pub cover_type: CoverType,
    /// Customer row id.
    pub customer_id: Option<i64>,
    /// Broadband parent of an add-on.
    pub parent_id: Option<i64>,
    /// POP id.
    pub popid: String,
    /// Exchange row id.
    pub exchange_id: Option<i64>,
    /// OLT row id.
    pub olt_id: Option<i64>,
    /// Compound row id.
    pub compound_id: Option<i64>,
    /// VLAN id.
    pub vlan: Option<u16>,
    /// Speed in kbit/s.
    pub speed_kbps: Option<u64>,
    /// Encrypted PPPoE password (`None` keeps the stored one).
    pub password_enc: Option<Vec<u8>>,
    /// Encrypted IPTV password (`None` keeps the stored one).
    pub iptv_password_enc: Option<Vec<u8>>,
    /// Other fields, canonical name → value.
    pub fields: BTreeMap<String, String>,
}

/// Customer data an order carries (`None` keeps what is stored).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomerWrite {
    /// Account number (key).
    pub account_number: String,
    /// Name.
    pub name: Option<String>,
    /// Segment.
    pub segment: Option<String>,
    /// Level.
    pub level: Option<String>,
    /// Encrypted mobile number.
    pub mobile_enc: Option<Vec<u8>>,
    /// Encrypted e-mail.
    pub email_enc: Option<Vec<u8>>,
}

/// A new task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskWrite<'a> {
    /// `WSyyyyMMddNNNNNN`.
    pub task_no: &'a str,
    /// The call's flowId.
    pub flow_id: &'a str,
    /// Keyed hash of the call's content.
    pub fingerprint: &'a [u8],
    /// POP id.
    pub popid: &'a str,
    /// The stored request (JSON; credentials removed, protected values encrypted).
    pub request: &'a str,
    /// The items' results as JSON.
    pub items: &'a str,
    /// The OM account that sent it.
    pub account: &'a str,
    /// Timestamp (RFC 3339 UTC).
    pub at: &'a str,
}

/// A transition of a task, for its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryWrite<'a> {
    /// Timestamp.
    pub at: &'a str,
    /// State before (`None` for a creation).
    pub from: Option<&'a str>,
    /// State after.
    pub to: &'a str,
    /// What happened (`REDO`, `CANCEL`, `FORCE_FINISH`, `DELIVERED`, …).
    pub action: &'a str,
    /// Who did it (account or `system`).
    pub actor: &'a str,
    /// Why (operators must give one).
    pub reason: &'a str,
}

/// An activation command for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandWrite<'a> {
    /// `CMD-<taskNo>-<n>`.
    pub cmd_id: &'a str,
    /// n, from 1 within the task.
    pub seq: u32,
    /// The service it is about.
    pub service_id: i64,
    /// ACTIVATE / MODIFY / DEACTIVATE.
    pub kind: CommandType,
    /// The service type.
    pub service_type: ServiceType,
    /// Params as JSON (an ordered list of name/value pairs; never secrets).
    pub params: &'a str,
    /// Timestamp.
    pub at: &'a str,
}

/// An account as login needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRec {
    /// Row id.
    pub id: i64,
    /// Login as stored.
    pub login: String,
    /// `LOCAL` or `AD`.
    pub auth_mode: String,
    /// Enabled flag.
    pub enabled: bool,
    /// Argon2id PHC string (LOCAL only).
    pub password_hash: Option<String>,
    /// Bumped on every password change.
    pub password_version: i64,
    /// Whether one of its roles allows the OM interface.
    pub om_interface: bool,
}

/// Reads the domain logic needs. Implemented by read connections and by the
/// writer (inside its open batch, so a work order sees the earlier ones).
pub trait StoreRead {
    /// The exchange with this POP id.
    fn exchange_by_popid(&mut self, popid: &str) -> StoreResult<Option<ExchangeRec>>;
    /// A DSLAM by name (case-insensitive), not removed.
    fn dslam_by_name(&mut self, name: &str) -> StoreResult<Option<DslamRec>>;
    /// A DSLAM by management IP, not removed.
    fn dslam_by_ip(&mut self, ip: &str) -> StoreResult<Option<DslamRec>>;
    /// The DSLAMs of an exchange by name, not removed.
    fn dslams_of_exchange(&mut self, exchange_id: i64) -> StoreResult<Vec<DslamRec>>;
    /// A port by position.
    fn port_at(
        &mut self,
        dslam_id: i64,
        frame: u32,
        slot: u32,
        port: u32,
    ) -> StoreResult<Option<PortRec>>;
    /// The first free, available port of a DSLAM (frame, slot, port order).
    fn first_free_port(&mut self, dslam_id: i64) -> StoreResult<Option<PortRec>>;
    /// The port a service holds.
    fn port_held_by(&mut self, service_id: i64) -> StoreResult<Option<PortRec>>;
    /// A compound by code, not removed.
    fn compound_by_code(&mut self, code: &str) -> StoreResult<Option<CompoundRec>>;
    /// The PON ports serving a compound, by OLT name, frame, slot, port.
    fn pon_ports_of_compound(&mut self, compound_id: i64) -> StoreResult<Vec<PonRec>>;
    /// An OLT by name, not removed.
    fn olt_by_name(&mut self, name: &str) -> StoreResult<Option<OltRec>>;
    /// An OLT by id.
    fn olt_by_id(&mut self, id: i64) -> StoreResult<Option<OltRec>>;
    /// A compound by id.
    fn compound_by_id(&mut self, id: i64) -> StoreResult<Option<CompoundRec>>;
    /// An ONT by serial (removed ones included).
    fn ont_by_serial(&mut self, serial: &str) -> StoreResult<Option<OntRec>>;
    /// The ONT a service holds.
    fn ont_held_by(&mut self, service_id: i64) -> StoreResult<Option<OntRec>>;
    /// ONT ids in use on a PON port, ascending.
    fn used_ont_ids(&mut self, pon_port_id: i64) -> StoreResult<Vec<u32>>;
    /// Whether a VLAN exists (not removed) on an OLT, and its purpose.
    fn vlan(&mut self, olt_id: i64, vlan_id: u16) -> StoreResult<Option<VlanPurpose>>;
    /// The lowest-numbered VLAN of a purpose on an OLT.
    fn lowest_vlan(&mut self, olt_id: i64, purpose: VlanPurpose) -> StoreResult<Option<u16>>;
    /// A service by its key.
    fn service(
        &mut self,
        user_name: &str,
        service_type: ServiceType,
    ) -> StoreResult<Option<ServiceRec>>;
    /// Active add-ons riding on a broadband service.
    fn active_addons(&mut self, parent_id: i64) -> StoreResult<Vec<ServiceRec>>;
    /// Services for a Query, as answered (no protected values).
    fn query_services(
        &mut self,
        user_name: &str,
        service_type: Option<ServiceType>,
    ) -> StoreResult<Vec<crate::ServiceView>>;
    /// The account number of a customer.
    fn customer_account(&mut self, customer_id: i64) -> StoreResult<Option<String>>;
    /// An account by login (case-insensitive).
    fn account(&mut self, login: &str) -> StoreResult<Option<AccountRec>>;
    /// Whether no exchange is known yet.
    fn inventory_is_empty(&mut self) -> StoreResult<bool>;
    /// The task that claimed a flowId: its number and content fingerprint.
    fn flow(&mut self, flow_id: &str) -> StoreResult<Option<(String, Vec<u8>)>>;
}

/// Writes of the domain logic, inside the writer's open batch.
pub trait StoreWrite: StoreRead {
    /// Inserts a task, claiming its flowId (a claimed flowId is a `Constraint`
    /// error); returns its id.
    fn insert_task(&mut self, task: &TaskWrite<'_>) -> StoreResult<i64>;
    /// Appends to a task's history.
    fn insert_task_history(&mut self, task_id: i64, h: &HistoryWrite<'_>) -> StoreResult<()>;
    /// Queues a command in the outbox.
    fn insert_command(&mut self, task_id: i64, cmd: &CommandWrite<'_>) -> StoreResult<()>;
    /// Creates or updates a customer; returns its id.
    fn upsert_customer(&mut self, c: &CustomerWrite, at: &str) -> StoreResult<i64>;
    /// Creates a service (state ACTIVE) or reactivates and rewrites an inactive
    /// one of the same key; returns its id. `inactive` is what the caller
    /// found under that key: the inactive service's id, or `None` when there
    /// is none (an active one must have been refused before). A service that
    /// exists when `None` is given fails on the unique key.
    fn put_service(
        &mut self,
        s: &ServiceWrite,
        inactive: Option<i64>,
        at: &str,
    ) -> StoreResult<i64>;
    /// Rewrites an active service's data.
    fn update_service(&mut self, id: i64, s: &ServiceWrite, at: &str) -> StoreResult<()>;
    /// Sets a service's state.
    fn set_service_state(&mut self, id: i64, state: ServiceState, at: &str) -> StoreResult<()>;
    /// Makes a service hold a port; fails with `Constraint` when it is held.
    fn hold_port(&mut self, port_id: i64, service_id: i64, at: &str) -> StoreResult<()>;
    /// Frees whatever port a service holds.
    fn release_port(&mut self, service_id: i64, at: &str) -> StoreResult<()>;
    /// Registers an ONT that OM named first, placed at a PON port and id.
    fn register_ont(
        &mut self,
        serial: &str,
        pon_port_id: i64,
        ont_id: u32,
        model: &str,
        at: &str,
    ) -> StoreResult<i64>;
    /// Re-places a removed ONT at a PON port and id.
    fn replace_ont(&mut self, id: i64, pon_port_id: i64, ont_id: u32, at: &str) -> StoreResult<()>;
    /// Makes a service hold an ONT; fails with `Constraint` when it is held.
    fn hold_ont(&mut self, ont_row: i64, service_id: i64, at: &str) -> StoreResult<()>;
    /// Frees whatever ONT a service holds.
    fn release_ont(&mut self, service_id: i64, at: &str) -> StoreResult<()>;
    /// The last task sequence number used on a day (`yyyyMMdd`), 0 when none.
    fn load_task_seq(&mut self, day: &str) -> StoreResult<u64>;
    /// Records the last task sequence number used on a day.
    fn save_task_seq(&mut self, day: &str, last: u64) -> StoreResult<()>;
}

/// A task as the activation lifecycle needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRec {
    /// Row id.
    pub id: i64,
    /// `WSyyyyMMddNNNNNN`.
    pub task_no: String,
    /// The call's flowId.
    pub flow_id: String,
    /// POP id.
    pub popid: String,
    /// Current state.
    pub state: TaskState,
    /// The items' results as JSON.
    pub items: String,
    /// The OM account that sent it.
    pub account: String,
    /// Creation time (RFC 3339 UTC).
    pub created: String,
    /// Last change (RFC 3339 UTC).
    pub updated: String,
}

/// An outbox command's delivery bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRec {
    /// Row id.
    pub id: i64,
    /// `CMD-<taskNo>-<n>` (without a redo suffix).
    pub cmd_id: String,
    /// Its task's row id.
    pub task_id: i64,
    /// Delivery state.
    pub state: CommandState,
    /// How often an operator redid it.
    pub redo: u32,
    /// Delivery attempts since it was queued or last redone.
    pub attempts: u32,
}

/// A command's new delivery bookkeeping after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandUpdate<'a> {
    /// New state.
    pub state: CommandState,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (`None`: no further attempt is planned).
    pub next_attempt: Option<&'a str>,
    /// AM's ack status (`None` when the attempt got no ack).
    pub ack_status: Option<&'a str>,
    /// AM's ack code, or the kind of failure when there was no ack.
    pub ack_code: Option<&'a str>,
    /// AM's ack description, or the failure when there was no ack.
    pub ack_desc: Option<&'a str>,
    /// Timestamp.
    pub at: &'a str,
}

/// Reads of the activation outbox and the tasks (see [`crate::lifecycle`]).
pub trait OutboxRead {
    /// PENDING commands due at `now` (next attempt unset or not later),
    /// in id order, none of which waits for an earlier pending command of
    /// its service (or, for a DEACTIVATE, of one of its add-ons).
    fn due_commands(&mut self, now: &str, limit: usize) -> StoreResult<Vec<DueCommand>>;
    /// A task by number.
    fn task_by_no(&mut self, task_no: &str) -> StoreResult<Option<TaskRec>>;
    /// A task by row id.
    fn task_by_id(&mut self, id: i64) -> StoreResult<Option<TaskRec>>;
    /// A command's bookkeeping by row id.
    fn command_rec(&mut self, id: i64) -> StoreResult<Option<CommandRec>>;
    /// A task's commands in order.
    fn task_commands(&mut self, task_id: i64) -> StoreResult<Vec<CommandView>>;
    /// A task's stored history (transitions after its creation), oldest first.
    fn task_history(&mut self, task_id: i64) -> StoreResult<Vec<HistoryEntry>>;
    /// How many of a task's commands are not delivered yet (PENDING or FAILED).
    fn undelivered_commands(&mut self, task_id: i64) -> StoreResult<u64>;
}

/// Writes of the activation outbox and the tasks, inside the writer's transaction.
pub trait OutboxWrite: StoreWrite + OutboxRead {
    /// Sets a task's state.
    fn set_task_state(&mut self, task_id: i64, state: TaskState, at: &str) -> StoreResult<()>;
    /// Rewrites a command's delivery bookkeeping.
    fn update_command(&mut self, id: i64, u: &CommandUpdate<'_>) -> StoreResult<()>;
    /// Makes a task's FAILED commands PENDING again under a new redo number
    /// (attempts reset); returns how many.
    fn redo_failed_commands(&mut self, task_id: i64, at: &str) -> StoreResult<u64>;
    /// Drops a task's PENDING commands; returns how many.
    fn drop_pending_commands(&mut self, task_id: i64, at: &str) -> StoreResult<u64>;
}

/// The writer's connection: batch control on top of [`StoreWrite`].
pub trait WriteConn:
    StoreWrite + OutboxWrite + SyncWrite + crate::login::LoginWrite + Send + 'static
{
    /// Opens a batch transaction (taking the write lock).
    fn begin(&mut self) -> StoreResult<()>;
    /// Starts an isolated unit inside the batch.
    fn savepoint(&mut self) -> StoreResult<()>;
    /// Keeps the unit's changes.
    fn release(&mut self) -> StoreResult<()>;
    /// Undoes the unit's changes.
    fn rollback_to(&mut self) -> StoreResult<()>;
    /// Commits the batch durably.
    fn commit(&mut self) -> StoreResult<()>;
    /// Abandons the batch.
    fn rollback(&mut self);
    /// Loads inventory rows (upsert by natural key) inside the open batch.
    fn load_inventory(&mut self, inventory: &Inventory, at: &str) -> StoreResult<()>;
    /// Creates or resets a LOCAL account with the OM-interface role.
    fn put_om_account(&mut self, login: &str, password_hash: &str, at: &str) -> StoreResult<()>;
    /// Forgets anything cached about where free resources are (called before
    /// work that may free ports other than through [`StoreWrite::release_port`]).
    fn forget_picks(&mut self) {}
}

/// A read connection.
pub trait ReadConn:
    StoreRead + OutboxRead + SyncRead + crate::login::LoginRead + Send + 'static
{
    /// Checks that the store answers.
    fn ping(&mut self) -> StoreResult<()>;
    /// The connection itself, for store-specific reads (the operators'
    /// queries of [`crate::query`] need the SQLite store).
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

/// A store: opens the writer's connection and read connections.
pub trait Store: Send + Sync + 'static {
    /// The writer's connection type.
    type Writer: WriteConn;
    /// A read connection type.
    type Reader: ReadConn;
    /// Opens the (single) writer connection.
    fn open_writer(&self) -> StoreResult<Self::Writer>;
    /// Opens one more read connection.
    fn open_reader(&self) -> StoreResult<Self::Reader>;
}

/// A stored inventory row as a sync compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// Row id.
    pub id: i64,
    /// Soft-removed.
    pub removed: bool,
    /// Key and field values in [`Resource::fields`] order.
    pub vals: Vec<Val>,
}

/// The service holding a port or ONT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Service row id.
    pub service_id: i64,
    /// Its user name.
    pub user_name: String,
    /// Its service type.
    pub service_type: String,
    /// Whether it is `ACTIVE`.
    pub active: bool,
}

/// Row ids of referenced rows resolved during one apply, by natural key.
#[derive(Debug, Default)]
pub struct IdCache(pub std::collections::HashMap<(Resource, String), i64>);

/// An entry of the resource operation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceLogWrite<'a> {
    /// Timestamp.
    pub at: &'a str,
    /// Account, or `sync:<system>:<run id>`.
    pub actor: &'a str,
    /// Client IP (empty for IM's own runs).
    pub ip: &'a str,
    /// Resource type ([`Resource::as_str`]).
    pub resource_type: &'a str,
    /// The resource's natural key as text.
    pub code: &'a str,
    /// Its display name.
    pub name: &'a str,
    /// `ADD`, `MODIFY`, `REMOVE`, `IMPORT`, `EXPORT`.
    pub operation: &'a str,
    /// Old values of the changed fields (JSON object).
    pub old_values: Option<&'a str>,
    /// New values of the changed fields (JSON object).
    pub new_values: Option<&'a str>,
}

/// The head of a decided sync run's apply journal: what the last slice
/// needs to end the run (its changes are journal rows `0..changes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalHead {
    /// The run.
    pub run_id: i64,
    /// `matrix` or `ematrix`.
    pub system: String,
    /// The run's lease holder (released when the last slice is applied).
    pub holder: String,
    /// The source's snapshot, recorded at the end.
    pub snapshot: Option<String>,
    /// The watermark recorded at the end.
    pub watermark: Option<String>,
    /// Rows the run rejected.
    pub rejected: u64,
    /// How many changes the journal holds in all.
    pub changes: u64,
    /// When the run was decided (RFC 3339).
    pub decided: String,
}

/// The end of a sync run, for the run log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd<'a> {
    /// Run id.
    pub run_id: i64,
    /// `SUCCEEDED`, `FAILED`, `ABORTED`.
    pub status: &'a str,
    /// Snapshot read.
    pub snapshot: Option<&'a str>,
    /// Watermark kept (succeeded runs).
    pub watermark: Option<&'a str>,
    /// Counts.
    pub counts: SyncCounts,
    /// Why it failed or aborted.
    pub error: Option<&'a str>,
    /// Timestamp.
    pub ended: &'a str,
}

/// Reads of a sync run's diff, on a read connection of its own.
pub trait SyncRead: Send {
    /// A row by natural key (removed ones included).
    fn sync_lookup(&mut self, resource: Resource, key: &[Val]) -> StoreResult<Option<StoredRow>>;
    /// A row by id.
    fn sync_by_id(&mut self, resource: Resource, id: i64) -> StoreResult<Option<StoredRow>>;
    /// Calls `each` with the id of every live (not removed) row of a type
    /// (of one map, for per-map types).
    fn sync_live_ids(
        &mut self,
        resource: Resource,
        domain: Option<Domain>,
        each: &mut dyn FnMut(i64),
    ) -> StoreResult<()>;
    /// How many live rows of a type there are.
    fn sync_live_count(&mut self, resource: Resource, domain: Option<Domain>) -> StoreResult<u64>;
    /// The ONT in place at a PON port (its key values) and ONT id: row id and serial.
    fn sync_ont_at(&mut self, pon: &[Val], ont_id: i64) -> StoreResult<Option<(i64, String)>>;
    /// When an ONT was created (RFC 3339).
    fn sync_ont_created(&mut self, id: i64) -> StoreResult<Option<String>>;
    /// The watermark of the system's last succeeded run.
    fn last_sync_watermark(&mut self, system: &str) -> StoreResult<Option<String>>;
    /// The run log, newest first.
    fn sync_runs(&mut self, system: Option<&str>, limit: usize) -> StoreResult<Vec<SyncRunRec>>;
}

/// Writes of sync runs, inside the writer's transaction.
pub trait SyncWrite {
    /// Claims a system's lease for `holder` until `expires` (unix seconds)
    /// when it is free or expired at `now` (a run left `RUNNING` by an
    /// expired holder is recorded `FAILED`); returns the current holder
    /// when someone else holds it.
    fn sync_claim(
        &mut self,
        system: &str,
        holder: &str,
        now: i64,
        expires: i64,
        at: &str,
    ) -> StoreResult<Option<String>>;
    /// Extends a held lease; `false` when `holder` no longer holds it.
    fn sync_renew(&mut self, system: &str, holder: &str, expires: i64) -> StoreResult<bool>;
    /// Releases the lease if `holder` holds it.
    fn sync_release(&mut self, system: &str, holder: &str) -> StoreResult<()>;
    /// Records a new `RUNNING` run (and ties the lease to it); returns its id.
    fn sync_run_start(
        &mut self,
        system: &str,
        kind: &str,
        since: Option<&str>,
        forced: bool,
        holder: &str,
        at: &str,
    ) -> StoreResult<i64>;
    /// Records the end of a run.
    fn sync_run_end(&mut self, end: &RunEnd<'_>) -> StoreResult<()>;
    /// Inserts a row (references resolved by natural key); returns its id.
    fn sync_insert(&mut self, rec: &Record, ids: &mut IdCache, at: &str) -> StoreResult<i64>;
    /// Rewrites the `changed` fields of a row (and un-removes it when `restore`).
    fn sync_update(
        &mut self,
        id: i64,
        rec: &Record,
        changed: &[usize],
        restore: bool,
        ids: &mut IdCache,
        at: &str,
    ) -> StoreResult<()>;
    /// Soft-removes a row.
    fn sync_remove(&mut self, resource: Resource, id: i64, at: &str) -> StoreResult<()>;
    /// The service holding a port or ONT.
    fn sync_holder(&mut self, resource: Resource, id: i64) -> StoreResult<Option<Holder>>;
    /// Flags a service with a resource conflict.
    fn sync_flag_conflict(&mut self, service_id: i64, reason: &str, at: &str) -> StoreResult<()>;
    /// Appends to the resource operation log.
    fn log_resource(&mut self, entry: &ResourceLogWrite<'_>) -> StoreResult<()>;
    /// Writes journal rows `first_seq..` of a run that is not decided yet.
    fn journal_put(&mut self, run_id: i64, first_seq: u64, bodies: &[Vec<u8>]) -> StoreResult<()>;
    /// How many journal rows a run has.
    fn journal_len(&mut self, run_id: i64) -> StoreResult<u64>;
    /// Decides a run: writes its journal head.
    fn journal_decide(&mut self, head: &JournalHead) -> StoreResult<()>;
    /// The heads of every decided run not yet fully applied, oldest first
    /// (of one system, or of all).
    fn journal_heads(&mut self, system: Option<&str>) -> StoreResult<Vec<JournalHead>>;
    /// Takes (reads and deletes) a run's next `limit` journal rows, in order.
    fn journal_take(&mut self, run_id: i64, limit: usize) -> StoreResult<Vec<Vec<u8>>>;
    /// Deletes a run's head (its last slice was applied).
    fn journal_close(&mut self, run_id: i64) -> StoreResult<()>;
    /// Deletes the journal rows of runs that were never decided and are no
    /// longer running.
    fn journal_drop_undecided(&mut self) -> StoreResult<u64>;
    /// Adds a slice's counts to a run's row of the run log.
    fn sync_run_add(&mut self, run_id: i64, counts: &SyncCounts) -> StoreResult<()>;
    /// A run's counts as the run log holds them.
    fn sync_run_counts(&mut self, run_id: i64) -> StoreResult<SyncCounts>;
}
