//! The apply journal of a sync run (migration `004_sync_journal.sql`).
//!
//! A run whose diff is larger than one apply slice, on an inventory that is
//! not empty, is applied in three steps, each its own short write
//! transaction so that OM calls are served in between:
//!
//! 1. its changes are written as journal rows (several transactions for a
//!    long diff; nothing is decided yet, and a failure here leaves the
//!    inventory untouched and the run `FAILED`);
//! 2. its head row is written after checking that every change row is there
//!    and that the run still holds its lease: from this commit on, the run
//!    is decided and will be applied in full;
//! 3. slices of journal rows are applied, each slice deleting the rows it
//!    applied in the same transaction; the last one ends the run
//!    (`SUCCEEDED`, counts, snapshot, watermark), releases its lease and
//!    deletes the head.
//!
//! Whoever opens the database next (the writer thread at start-up), or
//! begins the next run of the system, finishes a decided run that a crash
//! or a storage error interrupted: the inventory is never left between the
//! state before a run and the state after it once IM is open again. The
//! slices are idempotent: each takes its rows from the table, so two
//! processes finishing the same run never apply a row twice.

use super::{ALL_RESOURCES, Applied, Change, Packed, Record, Remove, Update, Val, apply_changes};
use crate::store::{JournalHead, RunEnd, StoreError, WriteConn};
use crate::sync::{RunStatus, SyncSystem};
use std::sync::Arc;

const TAG_INSERT: u8 = 0;
const TAG_UPDATE: u8 = 1;
const TAG_REMOVE: u8 = 2;
const VAL_NULL: u8 = 0;
const VAL_INT: u8 = 1;
const VAL_TEXT: u8 = 3;

/// Rows per slice when a run is finished at start-up (no intake waits yet).
pub(super) const RECOVERY_SLICE: usize = 4096;

fn put_var(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_int(out: &mut Vec<u8>, n: i64) {
    put_var(out, ((n << 1) ^ (n >> 63)) as u64);
}

fn put_vals(out: &mut Vec<u8>, vals: &[Val]) {
    put_var(out, vals.len() as u64);
    for v in vals {
        match v {
            Val::Null => out.push(VAL_NULL),
            Val::Int(n) => {
                out.push(VAL_INT);
                put_int(out, *n);
            }
            Val::Text(t) => {
                out.push(VAL_TEXT);
                put_var(out, t.len() as u64);
                out.extend_from_slice(t.as_bytes());
            }
        }
    }
}

fn put_record(out: &mut Vec<u8>, rec: &Record) {
    out.push(rec.resource as u8);
    put_vals(out, &rec.vals);
}

/// One change as a self-contained journal row.
pub(super) fn encode(change: &Change, packed: &Packed) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    match change {
        Change::Insert(off) => {
            out.push(TAG_INSERT);
            put_record(&mut out, &packed.get(*off));
        }
        Change::Update(u) => {
            out.push(TAG_UPDATE);
            put_int(&mut out, u.id);
            out.push(u8::from(u.restore));
            put_vals(&mut out, &u.old);
            put_record(&mut out, &u.new);
        }
        Change::Remove(r) => {
            out.push(TAG_REMOVE);
            out.push(r.resource as u8);
            put_int(&mut out, r.id);
            put_vals(&mut out, &r.old);
        }
    }
    out
}

/// Reads a journal row back.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn var(&mut self) -> Option<u64> {
        let mut n = 0u64;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            if shift > 63 {
                return None;
            }
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(n);
            }
            shift += 7;
        }
    }

    fn int(&mut self) -> Option<i64> {
        let z = self.var()?;
        Some(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn vals(&mut self) -> Option<Box<[Val]>> {
        let n = usize::try_from(self.var()?).ok()?;
        if n > 64 {
            return None;
        }
        let mut vals = Vec::with_capacity(n);
        for _ in 0..n {
            vals.push(match self.byte()? {
                VAL_NULL => Val::Null,
                VAL_INT => Val::Int(self.int()?),
                VAL_TEXT => {
                    let len = usize::try_from(self.var()?).ok()?;
                    let end = self.at.checked_add(len)?;
                    let b = self.bytes.get(self.at..end)?;
                    self.at = end;
                    Val::Text(Arc::from(std::str::from_utf8(b).ok()?))
                }
                _ => return None,
            });
        }
        Some(vals.into_boxed_slice())
    }

    fn resource(&mut self) -> Option<super::Resource> {
        ALL_RESOURCES.get(usize::from(self.byte()?)).copied()
    }

    fn record(&mut self) -> Option<Record> {
        let resource = self.resource()?;
        let vals = self.vals()?;
        Some(Record { resource, vals })
    }
}

/// A journal row as a change (inserted rows go into `packed`).
fn decode(bytes: &[u8], packed: &mut Packed) -> Option<Change> {
    let mut c = Cursor { bytes, at: 0 };
    let change = match c.byte()? {
        TAG_INSERT => Change::Insert(packed.push(&c.record()?)),
        TAG_UPDATE => {
            let id = c.int()?;
            let restore = c.byte()? != 0;
            let old = c.vals()?;
            let new = c.record()?;
            Change::Update(Box::new(Update {
                id,
                old,
                new,
                restore,
            }))
        }
        TAG_REMOVE => {
            let resource = c.resource()?;
            let id = c.int()?;
            let old = c.vals()?;
            Change::Remove(Box::new(Remove { resource, id, old }))
        }
        _ => return None,
    };
    (c.at == bytes.len()).then_some(change)
}

/// What one slice did.
pub(crate) struct Sliced {
    /// The slice's changes (counts and conflicts).
    pub(super) applied: Applied,
    /// Whether the run is now fully applied (or was finished by someone else).
    pub(super) done: bool,
}

/// Applies the next `limit` journal rows of a decided run, inside the
/// writer's open transaction; the last slice ends the run.
pub(super) fn apply_slice<W: WriteConn>(
    conn: &mut W,
    run_id: i64,
    limit: usize,
    at: &str,
) -> Result<Sliced, StoreError> {
    let Some(head) = conn
        .journal_heads(None)?
        .into_iter()
        .find(|h| h.run_id == run_id)
    else {
        return Ok(Sliced {
            applied: Applied::default(),
            done: true,
        });
    };
    let system = SyncSystem::parse(&head.system)
        .ok_or_else(|| StoreError::Data(format!("journal of run {run_id}: bad system")))?;
    let bodies = conn.journal_take(run_id, limit.max(1))?;
    let mut packed = Packed::default();
    let mut changes = Vec::with_capacity(bodies.len());
    for body in &bodies {
        changes.push(decode(body, &mut packed).ok_or_else(|| {
            StoreError::Data(format!("journal of run {run_id}: a row cannot be read"))
        })?);
    }
    let mut applied = Applied::default();
    apply_changes(conn, run_id, system, &changes, &packed, at, &mut applied)?;
    conn.sync_run_add(run_id, &applied.counts)?;
    let done = conn.journal_len(run_id)? == 0;
    if done {
        finish(conn, &head, at)?;
    }
    Ok(Sliced { applied, done })
}

/// Ends a fully applied run: the run log, the lease, the head.
fn finish<W: WriteConn>(conn: &mut W, head: &JournalHead, at: &str) -> Result<(), StoreError> {
    let mut counts = conn.sync_run_counts(head.run_id)?;
    counts.rejected = head.rejected;
    conn.sync_run_end(&RunEnd {
        run_id: head.run_id,
        status: RunStatus::Succeeded.as_str(),
        snapshot: head.snapshot.as_deref(),
        watermark: head.watermark.as_deref(),
        counts,
        error: None,
        ended: at,
    })?;
    conn.sync_release(&head.system, &head.holder)?;
    conn.journal_close(head.run_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Resource;

    fn text(s: &str) -> Val {
        Val::Text(Arc::from(s))
    }

    #[test]
    fn every_kind_of_change_round_trips() {
        let mut packed = Packed::default();
        let rec = Record {
            resource: Resource::Port,
            vals: vec![
                text("DSL-1"),
                Val::Int(0),
                Val::Int(-3),
                Val::Null,
                text("مصر"),
            ]
            .into_boxed_slice(),
        };
        let changes = vec![
            Change::Insert(packed.push(&rec)),
            Change::Update(Box::new(Update {
                id: 42,
                old: vec![Val::Int(i64::MIN), text("AVAILABLE")].into_boxed_slice(),
                new: rec.clone(),
                restore: true,
            })),
            Change::Remove(Box::new(Remove {
                resource: Resource::Ont,
                id: i64::MAX,
                old: vec![Val::Null].into_boxed_slice(),
            })),
        ];
        let mut back = Packed::default();
        for c in &changes {
            let body = encode(c, &packed);
            let d = decode(&body, &mut back).expect("decodes");
            assert_eq!(encode(&d, &back), body);
        }
    }

    #[test]
    fn damaged_rows_are_refused_not_misread() {
        let mut packed = Packed::default();
        let rec = Record {
            resource: Resource::Dslam,
            vals: vec![text("D"), Val::Int(7)].into_boxed_slice(),
        };
        let body = encode(&Change::Insert(packed.push(&rec)), &packed);
        for cut in 0..body.len() {
            assert!(
                decode(&body[..cut], &mut Packed::default()).is_none(),
                "cut {cut}"
            );
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode(&longer, &mut Packed::default()).is_none());
        assert!(decode(&[9], &mut Packed::default()).is_none());
    }
}
