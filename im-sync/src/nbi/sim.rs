//! Matrix and eMatrix NBI simulators: hyper servers answering
//! `GET /nbi/{entity}?offset=&limit=[&snapshot=][&since=]` from a
//! deterministic demo inventory of any size (`im_core::demo`), computed page
//! by page (never materialised), with snapshots, incremental listings,
//! [`NbiSim::advance`] to a new snapshot, and fault injection
//! ([`Fault`]).
//!
//! Versions: the simulator starts at version 1 (watermark `W000001`) with
//! exactly the demo inventory of its [`DemoSpec`]. Each
//! [`NbiSim::advance`] makes a new version and a new snapshot; earlier
//! snapshots stay readable until [`NbiSim::expire_snapshots`]. An advance
//! changes the leaf resources only: DSLAM ports (Matrix), ONTs and VLANs
//! (eMatrix) — removals and changes (the source state moves on
//! `AVAILABLE → OCCUPIED → FAULTY → AVAILABLE`) are spread evenly over the
//! live rows; added rows are appended (ports in new slots beyond the
//! spec's, ONTs at ONT ids beyond the spec's, VLANs in ids the demo leaves
//! free: 1100–1999 `INTERNET`, 2100–2999 `VOICE`, 3100–4094 `IPTV`).
//!
//! ```no_run
//! use im_sync::nbi::{Fault, FaultKind, NbiSim, SimConfig, System};
//! # async fn go() -> std::io::Result<()> {
//! let sim = NbiSim::start(SimConfig::new(System::Matrix)).await?;
//! println!("serving {}", sim.base_url());
//! sim.inject(Fault::new(FaultKind::Status(500)).times(2));
//! let next = sim.advance(0.01, 0.01, 0.01);
//! println!("now at {} / {}", next.snapshot, next.watermark);
//! sim.stop().await;
//! # Ok(()) }
//! ```

use super::demo_rows;
use super::wire::{Entity, PageHeader, PageWriter, Row, RowKey, System};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use im_core::demo::{DemoSpec, ONT_MODEL, ont_serial};
use im_core::model::{Ont, Port, SourceState, Vlan, VlanPurpose};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// Settings of a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Which system to simulate.
    pub system: System,
    /// The inventory's shape. Default: the demo inventory
    /// ([`DemoSpec::default`]).
    pub spec: DemoSpec,
    /// Listen address. Default `127.0.0.1:0` (a free port).
    pub listen: SocketAddr,
    /// Charset of the pages (declared and used). Default `utf-8`.
    pub charset: String,
    /// Appended to every display name (sectors, zones, cities, exchanges,
    /// compounds), to exercise charsets. Default empty.
    pub name_suffix: String,
    /// Largest page served; a larger `limit` is lowered. Default 50,000.
    pub max_limit: u64,
    /// Page size when the request names none. Default 5,000.
    pub default_limit: u64,
}

impl SimConfig {
    /// Defaults for `system`.
    pub fn new(system: System) -> SimConfig {
        SimConfig {
            system,
            spec: DemoSpec::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            charset: "utf-8".into(),
            name_suffix: String::new(),
            max_limit: 50_000,
            default_limit: 5_000,
        }
    }

    /// The default set grown to at least `ports` DSLAM ports
    /// ([`DemoSpec::with_ports`]).
    pub fn with_ports(mut self, ports: u64) -> SimConfig {
        self.spec = DemoSpec::with_ports(ports);
        self
    }
}

/// What a [`Fault`] does to the request it hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this HTTP status (e.g. 500) and no page.
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Send the headers and half the body, then drop the connection.
    DropMidBody,
    /// Answer 200 with a page that is not well-formed XML.
    Malformed,
    /// Answer 410 Gone (the snapshot expired).
    Gone,
    /// Replace the first N row elements of the page with bad rows
    /// (alternately one without its key, and one with `state="BROKEN"`, or
    /// without its key where the entity has no state).
    BadRows(u32),
}

/// A fault to inject into the next matching request(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// How many matching requests it hits. Default 1.
    pub times: u32,
    /// Only requests for this entity. Default: any.
    pub entity: Option<Entity>,
    /// Only requests at this offset. Default: any.
    pub offset: Option<u64>,
    /// Only requests for the last page of a listing. Default: false.
    pub last_page: bool,
}

impl Fault {
    /// A fault hitting the next request once.
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            times: 1,
            entity: None,
            offset: None,
            last_page: false,
        }
    }

    /// Hits the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Fault {
        self.times = n;
        self
    }

    /// Only requests for `entity`.
    pub fn entity(mut self, entity: Entity) -> Fault {
        self.entity = Some(entity);
        self
    }

    /// Only requests at `offset`.
    pub fn at_offset(mut self, offset: u64) -> Fault {
        self.offset = Some(offset);
        self
    }

    /// Only requests for the last page of a listing.
    pub fn on_last_page(mut self) -> Fault {
        self.last_page = true;
        self
    }

    fn matches(&self, entity: Entity, offset: u64, last: bool) -> bool {
        self.times > 0
            && self.entity.is_none_or(|e| e == entity)
            && self.offset.is_none_or(|o| o == offset)
            && (!self.last_page || last)
    }
}

/// A snapshot of the simulator: its id, watermark and version, and what
/// the advance that made it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Snapshot id (`S000001`).
    pub snapshot: String,
    /// Watermark (`W000001`).
    pub watermark: String,
    /// Version number (from 1).
    pub version: u32,
    /// Rows added by the advance that made this version.
    pub added: u64,
    /// Rows changed by it.
    pub changed: u64,
    /// Rows removed by it.
    pub removed: u64,
}

/// The history of one leaf entity (the ones an advance changes).
#[derive(Debug)]
struct Leaf {
    entity: Entity,
    /// Rows of the demo inventory (indices `0..base`).
    base: u64,
    /// Most rows that can be added.
    capacity: u64,
    /// Cumulative rows added after each version (index = version; [0] = 0).
    added_by: Vec<u64>,
    /// Index → version that removed it.
    removed: BTreeMap<u64, u32>,
    /// Index → versions that changed its state.
    changed: HashMap<u64, Vec<u32>>,
}

impl Leaf {
    fn end(&self, v: u32) -> u64 {
        let at = (v as usize).min(self.added_by.len().saturating_sub(1));
        self.base + self.added_by.get(at).copied().unwrap_or(0)
    }

    fn alive(&self, i: u64, v: u32) -> bool {
        i < self.end(v) && self.removed.get(&i).is_none_or(|&w| w > v)
    }

    fn changes(&self, i: u64, v: u32) -> usize {
        self.changed
            .get(&i)
            .map_or(0, |vs| vs.iter().filter(|&&x| x <= v).count())
    }

    /// Indices removed by version `v`, ascending.
    fn removed_by(&self, v: u32) -> Vec<u64> {
        self.removed
            .iter()
            .filter(|&(_, &w)| w <= v)
            .map(|(&i, _)| i)
            .collect()
    }
}

#[derive(Debug)]
struct SimState {
    version: u32,
    /// Live snapshot id → version.
    snapshots: HashMap<String, u32>,
    /// The snapshot of the current version.
    current: String,
    next_serial: u64,
    leaves: Vec<Leaf>,
    charset: String,
    name_suffix: String,
    /// What each version's advance did: (added, changed, removed).
    advances: Vec<(u64, u64, u64)>,
}

impl SimState {
    fn leaf(&self, e: Entity) -> Option<&Leaf> {
        self.leaves.iter().find(|l| l.entity == e)
    }

    fn new_snapshot(&mut self) -> String {
        let id = format!("S{:06}", self.next_serial);
        self.next_serial += 1;
        self.snapshots.insert(id.clone(), self.version);
        self.current = id.clone();
        id
    }
}

type Cache<K, V> = Mutex<HashMap<K, Arc<V>>>;

struct Shared {
    system: System,
    spec: DemoSpec,
    max_limit: u64,
    default_limit: u64,
    state: RwLock<SimState>,
    faults: Mutex<Vec<Fault>>,
    requests: AtomicU64,
    removed_cache: Cache<(Entity, u32), Vec<u64>>,
    delta_cache: Cache<(Entity, u32, u32), Vec<(u64, bool)>>,
}

fn watermark(v: u32) -> String {
    format!("W{v:06}")
}

fn rotate(state: SourceState, times: usize) -> SourceState {
    let mut s = state;
    for _ in 0..times % 3 {
        s = match s {
            SourceState::Available => SourceState::Occupied,
            SourceState::Occupied => SourceState::Faulty,
            SourceState::Faulty => SourceState::Available,
        };
    }
    s
}

/// VLAN ids the demo leaves free, per OLT: (first, last, purpose).
const FREE_VLANS: [(u16, u16, VlanPurpose); 3] = [
    (1100, 1999, VlanPurpose::Internet),
    (2100, 2999, VlanPurpose::Voice),
    (3100, 4094, VlanPurpose::Iptv),
];

fn free_vlans_per_olt() -> u64 {
    FREE_VLANS
        .iter()
        .map(|(a, b, _)| u64::from(*b) - u64::from(*a) + 1)
        .sum()
}

impl Shared {
    fn leaf_entities(system: System) -> &'static [Entity] {
        match system {
            System::Matrix => &[Entity::Ports],
            System::Ematrix => &[Entity::Onts, Entity::Vlans],
        }
    }

    fn new_leaf(&self, entity: Entity) -> Leaf {
        let spec = &self.spec;
        let e = u64::from(spec.exchanges);
        let capacity = match entity {
            Entity::Ports => {
                if e * u64::from(spec.dslams_per_exchange) * u64::from(spec.ports_per_slot) == 0 {
                    0
                } else {
                    u64::MAX / 4
                }
            }
            Entity::Onts => {
                let pons = e * u64::from(spec.pon_ports_per_olt);
                pons * u64::from(demo_rows::max_onts(spec).saturating_sub(spec.onts_per_pon))
            }
            Entity::Vlans => e * free_vlans_per_olt(),
            _ => 0,
        };
        Leaf {
            entity,
            base: demo_rows::count(spec, self.system, entity),
            capacity,
            added_by: vec![0, 0],
            removed: BTreeMap::new(),
            changed: HashMap::new(),
        }
    }

    /// Added row `j` (from 0) of a leaf entity.
    fn added_row(&self, leaf: &Leaf, j: u64) -> Option<Row> {
        let spec = &self.spec;
        let e = u64::from(spec.exchanges);
        match leaf.entity {
            Entity::Ports => {
                let dslams = e * u64::from(spec.dslams_per_exchange);
                let per_slot = u64::from(spec.ports_per_slot);
                if dslams == 0 || per_slot == 0 {
                    return None;
                }
                let q = j % dslams;
                let r = j / dslams;
                let per = u64::from(spec.dslams_per_exchange);
                Some(Row::Port(Port {
                    dslam: demo_rows::dslam_name(q / per + 1, q % per + 1),
                    frame: 0,
                    slot: u32::try_from(u64::from(spec.slots) + 1 + r / per_slot).ok()?,
                    port: u32::try_from(r % per_slot).ok()?,
                    state: SourceState::Available,
                }))
            }
            Entity::Onts => {
                let pons = e * u64::from(spec.pon_ports_per_olt);
                if pons == 0 {
                    return None;
                }
                Some(Row::Ont(Ont {
                    serial: ont_serial(leaf.base + j),
                    at: demo_rows::pon_ref(spec, j % pons),
                    ont_id: u32::try_from(u64::from(spec.onts_per_pon) + j / pons).ok()?,
                    model: ONT_MODEL.into(),
                    state: SourceState::Available,
                }))
            }
            Entity::Vlans => {
                if e == 0 {
                    return None;
                }
                let mut k = j / e;
                for (first, last, purpose) in FREE_VLANS {
                    let len = u64::from(last) - u64::from(first) + 1;
                    if k < len {
                        return Some(Row::Vlan(Vlan {
                            olt: demo_rows::olt_name(j % e + 1),
                            id: u16::try_from(u64::from(first) + k).ok()?,
                            purpose,
                            state: SourceState::Available,
                        }));
                    }
                    k -= len;
                }
                None
            }
            _ => None,
        }
    }

    /// Row `i` of a leaf entity as of version `v` (whether or not alive).
    fn leaf_row(&self, leaf: &Leaf, i: u64, v: u32) -> Option<Row> {
        let row = if i < leaf.base {
            demo_rows::row(&self.spec, self.system, leaf.entity, i)
        } else {
            self.added_row(leaf, i - leaf.base)
        }?;
        let n = leaf.changes(i, v);
        Some(match row {
            Row::Port(mut p) => {
                p.state = rotate(p.state, n);
                Row::Port(p)
            }
            Row::Ont(mut o) => {
                o.state = rotate(o.state, n);
                Row::Ont(o)
            }
            Row::Vlan(mut x) => {
                x.state = rotate(x.state, n);
                Row::Vlan(x)
            }
            other => other,
        })
    }

    fn removed_by(&self, leaf: &Leaf, v: u32) -> Arc<Vec<u64>> {
        let key = (leaf.entity, v);
        if let Ok(cache) = self.removed_cache.lock()
            && let Some(hit) = cache.get(&key)
        {
            return hit.clone();
        }
        let list = Arc::new(leaf.removed_by(v));
        if let Ok(mut cache) = self.removed_cache.lock() {
            cache.insert(key, list.clone());
        }
        list
    }

    /// Indices of a leaf entity that differ between versions `w` and `v`
    /// (`w < v`), ascending, each with whether it is a removal.
    fn delta(&self, leaf: &Leaf, w: u32, v: u32) -> Arc<Vec<(u64, bool)>> {
        let key = (leaf.entity, w, v);
        if let Ok(cache) = self.delta_cache.lock()
            && let Some(hit) = cache.get(&key)
        {
            return hit.clone();
        }
        let mut touched: Vec<u64> = leaf
            .changed
            .iter()
            .filter(|(_, vs)| vs.iter().any(|&x| x > w && x <= v))
            .map(|(&i, _)| i)
            .chain(
                leaf.removed
                    .iter()
                    .filter(|&(_, &x)| x > w && x <= v)
                    .map(|(&i, _)| i),
            )
            .chain(leaf.end(w)..leaf.end(v))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        let mut out = Vec::with_capacity(touched.len());
        for i in touched {
            match (leaf.alive(i, w), leaf.alive(i, v)) {
                (true, false) => out.push((i, true)),
                (false, true) => out.push((i, false)),
                (true, true) => {
                    if self.leaf_row(leaf, i, w) != self.leaf_row(leaf, i, v) {
                        out.push((i, false));
                    }
                }
                (false, false) => {}
            }
        }
        let out = Arc::new(out);
        if let Ok(mut cache) = self.delta_cache.lock() {
            cache.insert(key, out.clone());
        }
        out
    }

    fn decorate(&self, row: Row, suffix: &str) -> Row {
        if suffix.is_empty() {
            return row;
        }
        match row {
            Row::Sector(mut r) => {
                r.name.push_str(suffix);
                Row::Sector(r)
            }
            Row::Zone(mut r) => {
                r.name.push_str(suffix);
                Row::Zone(r)
            }
            Row::City(mut r) => {
                r.name.push_str(suffix);
                Row::City(r)
            }
            Row::Exchange(mut r) => {
                r.name.push_str(suffix);
                Row::Exchange(r)
            }
            Row::Compound(mut r) => {
                r.name.push_str(suffix);
                Row::Compound(r)
            }
            other => other,
        }
    }

    /// One page: header and items (rows, or keys of removed rows).
    fn page(&self, q: &Query) -> Result<(PageHeader, Vec<Item>, String), Answer> {
        let state = self
            .state
            .read()
            .map_err(|_| Answer::status(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned"))?;
        let (snapshot, v) = match &q.snapshot {
            Some(s) => match state.snapshots.get(s) {
                Some(&v) => (s.clone(), v),
                None => {
                    return Err(Answer::status(
                        StatusCode::GONE,
                        &format!("snapshot {s} expired"),
                    ));
                }
            },
            None => (state.current.clone(), state.version),
        };
        let since = match &q.since {
            None => None,
            Some(w) => {
                let parsed = w
                    .strip_prefix('W')
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|&n| n >= 1 && n <= v);
                match parsed {
                    Some(n) => Some(n),
                    None => {
                        return Err(Answer::status(
                            StatusCode::BAD_REQUEST,
                            &format!("unknown watermark {w:?}"),
                        ));
                    }
                }
            }
        };
        let limit = q.limit.unwrap_or(self.default_limit).min(self.max_limit);
        let offset = q.offset;
        let mut items = Vec::new();
        let leaf = state.leaf(q.entity);
        let total = match (leaf, since) {
            (None, Some(_)) => 0,
            (None, None) => {
                let total = demo_rows::count(&self.spec, self.system, q.entity);
                let end = offset.saturating_add(limit).min(total);
                for i in offset..end {
                    if let Some(r) = demo_rows::row(&self.spec, self.system, q.entity, i) {
                        items.push(Item::Row(self.decorate(r, &state.name_suffix)));
                    }
                }
                total
            }
            (Some(leaf), Some(w)) => {
                let delta = self.delta(leaf, w, v);
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(delta.len());
                let end = usize::try_from(offset.saturating_add(limit))
                    .unwrap_or(usize::MAX)
                    .min(delta.len());
                for &(i, removed) in &delta[start..end] {
                    let at = if removed { w } else { v };
                    if let Some(r) = self.leaf_row(leaf, i, at) {
                        items.push(if removed {
                            Item::Gone(r.key())
                        } else {
                            Item::Row(r)
                        });
                    }
                }
                delta.len() as u64
            }
            (Some(leaf), None) => {
                let removed = self.removed_by(leaf, v);
                let end = leaf.end(v);
                let total = end - removed.len() as u64;
                // The offset-th live index: skip the removed ones below it.
                let mut idx = offset;
                let mut j = 0;
                while j < removed.len() && removed[j] <= idx {
                    idx += 1;
                    j += 1;
                }
                while (items.len() as u64) < limit && idx < end {
                    if j < removed.len() && removed[j] == idx {
                        j += 1;
                        idx += 1;
                        continue;
                    }
                    if let Some(r) = self.leaf_row(leaf, idx, v) {
                        items.push(Item::Row(r));
                    }
                    idx += 1;
                }
                total
            }
        };
        let header = PageHeader {
            system: self.system,
            entity: q.entity,
            snapshot,
            offset,
            limit,
            total,
            watermark: watermark(v),
        };
        Ok((header, items, state.charset.clone()))
    }

    fn take_fault(&self, entity: Entity, offset: u64, last: bool) -> Option<FaultKind> {
        let mut faults = self.faults.lock().ok()?;
        let at = faults
            .iter()
            .position(|f| f.matches(entity, offset, last))?;
        let f = &mut faults[at];
        f.times -= 1;
        let kind = f.kind.clone();
        if f.times == 0 {
            faults.remove(at);
        }
        Some(kind)
    }
}

enum Item {
    Row(Row),
    Gone(RowKey),
}

/// A parsed page request.
struct Query {
    entity: Entity,
    offset: u64,
    limit: Option<u64>,
    snapshot: Option<String>,
    since: Option<String>,
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn parse_query(entity: Entity, query: Option<&str>) -> Result<Query, String> {
    let mut q = Query {
        entity,
        offset: 0,
        limit: None,
        snapshot: None,
        since: None,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| format!("bad encoding in {k}"))?;
        match k {
            "offset" => q.offset = v.parse().map_err(|_| format!("offset={v:?}"))?,
            "limit" => {
                let n: u64 = v.parse().map_err(|_| format!("limit={v:?}"))?;
                if n == 0 {
                    return Err("limit=0".into());
                }
                q.limit = Some(n);
            }
            "snapshot" if !v.is_empty() => q.snapshot = Some(v),
            "since" if !v.is_empty() => q.since = Some(v),
            _ => {}
        }
    }
    Ok(q)
}

/// The response body: whole, or cut short with an error (the connection
/// then drops).
pub struct SimBody {
    data: Option<Bytes>,
    fail: bool,
    len: u64,
}

impl SimBody {
    fn full(b: Bytes) -> SimBody {
        SimBody {
            len: b.len() as u64,
            data: Some(b),
            fail: false,
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if self.fail {
            self.fail = false;
            return Poll::Ready(Some(Err(std::io::Error::other(
                "simulated connection drop",
            ))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && !self.fail
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    fn status(status: StatusCode, msg: &str) -> Answer {
        Answer {
            status,
            body: Bytes::from(format!("{msg}\n")),
        }
    }
}

fn plain(a: Answer) -> Response<SimBody> {
    let mut resp = Response::new(SimBody::full(a.body));
    *resp.status_mut() = a.status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Writes the page; `bad` first items become bad rows.
fn render(header: &PageHeader, items: &[Item], charset: &str, bad: u32) -> Result<Vec<u8>, String> {
    let mut w = PageWriter::new(header, charset).map_err(|e| e.to_string())?;
    w.reserve_rows(items.len());
    for (n, item) in items.iter().enumerate() {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        match item {
            Item::Row(r) if n < bad => w.raw(&bad_row(header, r, n % 2 == 1)),
            Item::Gone(k) if n < bad => {
                w.raw(&format!("  <{} deleted=\"true\"/>\n", k.entity().element()))
            }
            Item::Row(r) => w.row(r),
            Item::Gone(k) => w.tombstone(k),
        }
    }
    Ok(w.finish())
}

/// A bad version of `row`: without its key, or (`bad_value`, where the
/// entity has a state) with `state="BROKEN"`.
fn bad_row(header: &PageHeader, row: &Row, bad_value: bool) -> String {
    let has_state = matches!(
        row,
        Row::Port(_) | Row::PonPort(_) | Row::Ont(_) | Row::Vlan(_)
    );
    if bad_value && has_state {
        let mut one = PageHeader {
            total: 1,
            ..header.clone()
        };
        one.offset = 0;
        if let Ok(mut w) = PageWriter::new(&one, "utf-8") {
            w.row(row);
            let text = String::from_utf8_lossy(&w.finish()).into_owned();
            if let Some(line) = text
                .lines()
                .find(|l| l.trim_start().starts_with('<') && l.contains("state="))
            {
                let mut out = String::new();
                for s in ["AVAILABLE", "OCCUPIED", "FAULTY"] {
                    if line.contains(&format!("state=\"{s}\"")) {
                        out = line.replace(&format!("state=\"{s}\""), "state=\"BROKEN\"");
                    }
                }
                if !out.is_empty() {
                    return format!("{out}\n");
                }
            }
        }
    }
    format!("  <{} bogus=\"1\"/>\n", row.entity().element())
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<SimBody> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if req.method() != Method::GET {
        return plain(Answer::status(StatusCode::METHOD_NOT_ALLOWED, "GET only"));
    }
    let path = req.uri().path();
    let Some(name) = path.strip_prefix("/nbi/") else {
        return plain(Answer::status(StatusCode::NOT_FOUND, "no such path"));
    };
    let Some(entity) = Entity::parse(name).filter(|e| shared.system.serves(*e)) else {
        return plain(Answer::status(
            StatusCode::NOT_FOUND,
            &format!("{} does not serve {name:?}", shared.system),
        ));
    };
    let query = match parse_query(entity, req.uri().query()) {
        Ok(q) => q,
        Err(e) => return plain(Answer::status(StatusCode::BAD_REQUEST, &e)),
    };
    let worker = shared.clone();
    let built =
        tokio::task::spawn_blocking(move || -> Result<(PageHeader, Vec<Item>, String), Answer> {
            worker.page(&query)
        })
        .await;
    let (header, items, charset) = match built {
        Ok(Ok(p)) => p,
        Ok(Err(a)) => return plain(a),
        Err(_) => {
            return plain(Answer::status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "page task failed",
            ));
        }
    };
    let last = header.offset.saturating_add(header.limit) >= header.total;
    let fault = shared.take_fault(entity, header.offset, last);
    let mut bad = 0;
    let mut drop_mid_body = false;
    let mut malformed = false;
    match fault {
        None => {}
        Some(FaultKind::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return plain(Answer::status(status, "injected fault"));
        }
        Some(FaultKind::Gone) => {
            return plain(Answer::status(
                StatusCode::GONE,
                "injected: snapshot expired",
            ));
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        Some(FaultKind::DropMidBody) => drop_mid_body = true,
        Some(FaultKind::Malformed) => malformed = true,
        Some(FaultKind::BadRows(n)) => bad = n,
    }
    let bytes =
        match tokio::task::spawn_blocking(move || render(&header, &items, &charset, bad)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return plain(Answer::status(StatusCode::INTERNAL_SERVER_ERROR, &e)),
            Err(_) => {
                return plain(Answer::status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "render task failed",
                ));
            }
        };
    let mut bytes = Bytes::from(bytes);
    if malformed {
        let cut = bytes.len() / 2;
        let mut v = bytes[..cut].to_vec();
        v.extend_from_slice(b"<<broken attr=\"\n");
        bytes = Bytes::from(v);
    }
    let full_len = bytes.len() as u64;
    let body = if drop_mid_body {
        SimBody {
            data: Some(bytes.slice(..bytes.len() / 2)),
            fail: true,
            len: full_len,
        }
    } else {
        SimBody::full(bytes)
    };
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(full_len));
    resp
}

/// A running simulator. Dropping it without [`NbiSim::stop`] stops it too.
pub struct NbiSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for NbiSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbiSim")
            .field("system", &self.shared.system)
            .field("addr", &self.addr)
            .finish()
    }
}

impl NbiSim {
    /// Binds `config.listen` and starts serving (on the current tokio
    /// runtime).
    pub async fn start(config: SimConfig) -> std::io::Result<NbiSim> {
        if PageWriter::new(
            &PageHeader {
                system: config.system,
                entity: config.system.entities()[0],
                snapshot: "S".into(),
                offset: 0,
                limit: 1,
                total: 0,
                watermark: "W".into(),
            },
            &config.charset,
        )
        .is_err()
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("charset {:?} cannot be written", config.charset),
            ));
        }
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let mut shared = Shared {
            system: config.system,
            spec: config.spec.clone(),
            max_limit: config.max_limit.max(1),
            default_limit: config.default_limit.max(1),
            state: RwLock::new(SimState {
                version: 1,
                snapshots: HashMap::new(),
                current: String::new(),
                next_serial: 1,
                leaves: Vec::new(),
                charset: config.charset.clone(),
                name_suffix: config.name_suffix.clone(),
                advances: vec![(0, 0, 0), (0, 0, 0)],
            }),
            faults: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            removed_cache: Mutex::new(HashMap::new()),
            delta_cache: Mutex::new(HashMap::new()),
        };
        let leaves: Vec<Leaf> = Shared::leaf_entities(config.system)
            .iter()
            .map(|&e| shared.new_leaf(e))
            .collect();
        if let Ok(state) = shared.state.get_mut() {
            state.leaves = leaves;
            state.new_snapshot();
        }
        let shared = Arc::new(shared);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, shared.clone(), rx));
        Ok(NbiSim {
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` + the bound address: the base URL for a client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The simulated system.
    pub fn system(&self) -> System {
        self.shared.system
    }

    /// The inventory's shape.
    pub fn spec(&self) -> &DemoSpec {
        &self.shared.spec
    }

    /// Requests received so far (every path and method).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The current snapshot.
    pub fn current(&self) -> SnapshotInfo {
        match self.shared.state.read() {
            Ok(s) => info(&s),
            Err(p) => info(&p.into_inner()),
        }
    }

    /// Queues a fault; faults are tried in the order queued and each hits
    /// the next request(s) it matches.
    pub fn inject(&self, fault: Fault) {
        if fault.times == 0 {
            return;
        }
        if let Ok(mut f) = self.shared.faults.lock() {
            f.push(fault);
        }
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        if let Ok(mut f) = self.shared.faults.lock() {
            f.clear();
        }
    }

    /// Faults still queued.
    pub fn pending_faults(&self) -> usize {
        self.shared.faults.lock().map_or(0, |f| f.len())
    }

    /// Changes the charset pages are written in (`utf-8`, `iso-8859-1`,
    /// `gbk`, …); `false` if the charset cannot be written.
    pub fn set_charset(&self, charset: &str) -> bool {
        let probe = PageHeader {
            system: self.shared.system,
            entity: Entity::Sectors,
            snapshot: "S".into(),
            offset: 0,
            limit: 1,
            total: 0,
            watermark: "W".into(),
        };
        if PageWriter::new(&probe, charset).is_err() {
            return false;
        }
        if let Ok(mut s) = self.shared.state.write() {
            s.charset = charset.trim().to_string();
            return true;
        }
        false
    }

    /// Changes the suffix appended to display names.
    pub fn set_name_suffix(&self, suffix: &str) {
        if let Ok(mut s) = self.shared.state.write() {
            s.name_suffix = suffix.to_string();
        }
    }

    /// Expires every snapshot (requests naming one get 410) and opens a new
    /// snapshot of the current version (same watermark).
    pub fn expire_snapshots(&self) -> SnapshotInfo {
        match self.shared.state.write() {
            Ok(mut s) => {
                s.snapshots.clear();
                s.new_snapshot();
                info(&s)
            }
            Err(p) => info(&p.into_inner()),
        }
    }

    /// Moves to a new version and snapshot: of the leaf rows (ports;
    /// ONTs and VLANs), removes `share_removed` and changes the state of
    /// `share_changed` of the live rows (spread evenly), and adds
    /// `share_added` as many rows as are live (for ONTs: of the ONT capacity,
    /// PON ports × max ONTs), as far as room allows. Shares are clamped to
    /// 0..=1. Deterministic: the same calls give the same rows.
    pub fn advance(
        &self,
        share_added: f64,
        share_changed: f64,
        share_removed: f64,
    ) -> SnapshotInfo {
        let shared = &self.shared;
        let mut state = match shared.state.write() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let cur = state.version;
        let v = cur + 1;
        let share = |x: f64| if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
        let (sa, sc, sr) = (
            share(share_added),
            share(share_changed),
            share(share_removed),
        );
        let (mut added, mut changed, mut removed) = (0u64, 0u64, 0u64);
        let ont_capacity = demo_rows::count(&shared.spec, shared.system, Entity::PonPorts)
            * u64::from(demo_rows::max_onts(&shared.spec));
        for leaf in &mut state.leaves {
            let gone = leaf.removed_by(cur);
            let end = leaf.end(cur);
            let live = end - gone.len() as u64;
            let k_r = ((sr * live as f64).round() as u64).min(live);
            let k_c = ((sc * live as f64).round() as u64).min(live - k_r);
            let seed = u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (leaf.entity as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            // Removals, spread evenly over the live rows.
            let picks_r = spread(live, k_r, seed);
            let mut newly_removed = Vec::new();
            for_live(end, &gone, |pos, i| {
                if picks_r(pos) {
                    newly_removed.push(i);
                }
            });
            // Changes, spread evenly over the rows still live.
            let remaining = live - k_r;
            let picks_c = spread(remaining, k_c, seed.rotate_left(17));
            let mut gone_now = gone.clone();
            gone_now.extend(&newly_removed);
            gone_now.sort_unstable();
            let mut newly_changed = Vec::new();
            for_live(end, &gone_now, |pos, i| {
                if picks_c(pos) {
                    newly_changed.push(i);
                }
            });
            for i in &newly_removed {
                leaf.removed.insert(*i, v);
            }
            for i in &newly_changed {
                leaf.changed.entry(*i).or_default().push(v);
            }
            let reference = if leaf.entity == Entity::Onts {
                ont_capacity
            } else {
                live
            };
            let so_far = leaf.added_by.last().copied().unwrap_or(0);
            let k_a =
                ((sa * reference as f64).round() as u64).min(leaf.capacity.saturating_sub(so_far));
            leaf.added_by.push(so_far + k_a);
            added += k_a;
            changed += newly_changed.len() as u64;
            removed += newly_removed.len() as u64;
        }
        state.version = v;
        state.advances.push((added, changed, removed));
        state.new_snapshot();
        debug!(version = v, added, changed, removed, "simulator advanced");
        info(&state)
    }

    /// Stops serving: no new connections; open ones get a moment to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take()
            && task.await.is_err()
        {
            warn!("the simulator task ended abnormally");
        }
    }
}

impl Drop for NbiSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn info(s: &SimState) -> SnapshotInfo {
    let (added, changed, removed) = s
        .advances
        .get(s.version as usize)
        .copied()
        .unwrap_or_default();
    SnapshotInfo {
        snapshot: s.current.clone(),
        watermark: watermark(s.version),
        version: s.version,
        added,
        changed,
        removed,
    }
}

/// Calls `f(position, index)` for every live index below `end`, `gone`
/// (ascending) being the removed ones.
fn for_live(end: u64, gone: &[u64], mut f: impl FnMut(u64, u64)) {
    let mut j = 0;
    let mut pos = 0;
    for i in 0..end {
        if j < gone.len() && gone[j] == i {
            j += 1;
            continue;
        }
        f(pos, i);
        pos += 1;
    }
}

/// Picks exactly `k` of `n` positions, evenly spread, starting at a phase
/// drawn from `seed`.
fn spread(n: u64, k: u64, seed: u64) -> impl Fn(u64) -> bool {
    let phase = if n == 0 { 0 } else { u128::from(seed % n) };
    let (n, k) = (u128::from(n), u128::from(k));
    move |p: u64| {
        if k == 0 || n == 0 {
            return false;
        }
        let p = u128::from(p);
        (p * k + phase) / n != ((p + 1) * k + phase) / n
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut stop => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "simulator accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let conn_shared = shared.clone();
        let svc = service_fn(move |req| {
            let s = conn_shared.clone();
            async move { Ok::<_, Infallible>(handle(s, req).await) }
        });
        let conn = http.serve_connection(TokioIo::new(tcp), svc);
        let fut = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = fut.await {
                debug!(%peer, error = %e, "simulator connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(2)) => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn spread_picks_exactly_k() {
        for (n, k) in [(10, 3), (100, 1), (7, 7), (5, 0), (0, 0), (20_480, 205)] {
            for seed in [0, 1, 99, u64::MAX] {
                let f = spread(n, k, seed);
                assert_eq!((0..n).filter(|&p| f(p)).count() as u64, k, "{n} {k}");
            }
        }
    }

    #[test]
    fn rotation_and_queries() {
        assert_eq!(rotate(SourceState::Available, 1), SourceState::Occupied);
        assert_eq!(rotate(SourceState::Occupied, 1), SourceState::Faulty);
        assert_eq!(rotate(SourceState::Faulty, 1), SourceState::Available);
        assert_eq!(rotate(SourceState::Faulty, 3), SourceState::Faulty);
        let q = parse_query(
            Entity::Ports,
            Some("offset=5&limit=7&snapshot=S%2001&since=W000001&x=y"),
        )
        .unwrap();
        assert_eq!((q.offset, q.limit), (5, Some(7)));
        assert_eq!(q.snapshot.as_deref(), Some("S 01"));
        assert_eq!(q.since.as_deref(), Some("W000001"));
        assert!(parse_query(Entity::Ports, Some("limit=0")).is_err());
        assert!(parse_query(Entity::Ports, Some("offset=x")).is_err());
        assert!(parse_query(Entity::Ports, Some("snapshot=%zz")).is_err());
    }
}
