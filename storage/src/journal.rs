//! The journal: one record per group commit, the source of truth and the
//! event outbox. The writer speaks to it only through [`Journal`] (append a
//! group after an expected sequence, flush, read from a sequence, trim), so
//! a replicated per-shard journal can replace the segment files without
//! touching order logic (DESIGN.md, "Scale-out").
//!
//! Record layout (framed in a segment file, see `segments.rs`; in the older
//! sled `journal` tree, keyed by its first sequence, 8 bytes big-endian):
//!
//! ```text
//! [version u8][written_at_ms i64 BE][first_seq u64 BE][last_seq u64 BE][units u32 BE]
//! then per unit: [len u32 BE][first_seq u64 BE][bincode(Unit)]
//! ```
//!
//! Each unit is encoded by its submitter (off the writer thread) before its
//! sequence numbers are known; the frame carries the unit's first sequence
//! and decoding stamps its events with consecutive numbers from it.

use crate::codec::{decode_body, encode_body_into, read_u32, read_u64, FORMAT_VERSION};
use crate::error::StorageError;
use ordercore_domain::{Event, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The events of one decided change: durable together or not at all. It
/// names its shard, the unit of ownership and (later) replication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    pub shard: u32,
    /// Stamped with consecutive sequence numbers. Shared: the family an
    /// actor keeps records these same events in its history.
    pub events: Vec<Arc<Event>>,
    /// The family as this change left it, set by a submitter that holds it
    /// (an order actor) right after submitting: the write-behind then keeps
    /// it instead of applying the events to its own copy. Never journalled;
    /// when unset (recovery, catalog changes) the events are applied.
    #[serde(skip)]
    pub family: std::sync::OnceLock<Arc<ordercore_domain::OrderFamily>>,
}

impl Unit {
    /// A unit of `events` for `shard`.
    pub fn new(shard: u32, events: Vec<Event>) -> Unit {
        Unit {
            shard,
            events: events.into_iter().map(Arc::new).collect(),
            family: std::sync::OnceLock::new(),
        }
    }
}

impl Unit {
    /// Copies of the events (for callers that need them owned).
    pub fn cloned_events(&self) -> Vec<Event> {
        self.events.iter().map(|e| (**e).clone()).collect()
    }

    pub fn first_seq(&self) -> u64 {
        self.events.first().map_or(0, |e| e.seq)
    }

    pub fn last_seq(&self) -> u64 {
        self.events.last().map_or(0, |e| e.seq)
    }
}

const HEADER_LEN: usize = 1 + 8 + 8 + 8 + 4;

/// A group of encoded units framed as one journal record.
#[derive(Debug, Clone, Default)]
pub struct RecordBuilder {
    bytes: Vec<u8>,
    units: u32,
    first_seq: u64,
    last_seq: u64,
}

impl RecordBuilder {
    pub fn new() -> Self {
        RecordBuilder::with_buffer(Vec::new())
    }

    /// A builder writing into `buffer` (cleared first), so a writer can
    /// hand back the bytes of its last record and keep their capacity:
    /// a fresh buffer per group costs page faults, not just a copy.
    pub fn with_buffer(mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        buffer.resize(HEADER_LEN, 0);
        RecordBuilder {
            bytes: buffer,
            units: 0,
            first_seq: 0,
            last_seq: 0,
        }
    }

    /// Adds one unit, already encoded with [`encode_unit`].
    pub fn push(&mut self, first_seq: u64, last_seq: u64, encoded: &[u8]) {
        if self.units == 0 {
            self.first_seq = first_seq;
        }
        self.last_seq = last_seq;
        self.units += 1;
        let len = u32::try_from(encoded.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(&first_seq.to_be_bytes());
        self.bytes.extend_from_slice(encoded);
    }

    pub fn is_empty(&self) -> bool {
        self.units == 0
    }

    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The finished record, stamped with the time it was written.
    pub fn finish(mut self, written_at: Timestamp) -> EncodedRecord {
        self.bytes[0] = FORMAT_VERSION;
        self.bytes[1..9].copy_from_slice(&written_at.millis().to_be_bytes());
        self.bytes[9..17].copy_from_slice(&self.first_seq.to_be_bytes());
        self.bytes[17..25].copy_from_slice(&self.last_seq.to_be_bytes());
        self.bytes[25..29].copy_from_slice(&self.units.to_be_bytes());
        EncodedRecord {
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            bytes: self.bytes,
        }
    }
}

/// A framed journal record ready to append.
#[derive(Debug, Clone)]
pub struct EncodedRecord {
    pub first_seq: u64,
    pub last_seq: u64,
    pub bytes: Vec<u8>,
}

/// Encodes a unit for [`RecordBuilder::push`].
pub fn encode_unit(unit: &Unit) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(512 * unit.events.len());
    encode_body_into(unit, &mut out)?;
    Ok(out)
}

/// The header of a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub written_at: Timestamp,
    pub first_seq: u64,
    pub last_seq: u64,
    pub units: u32,
}

/// Reads a record's header without decoding its units.
pub fn read_header(bytes: &[u8]) -> Result<RecordHeader, StorageError> {
    match bytes.first() {
        Some(&FORMAT_VERSION) => {}
        Some(v) => {
            return Err(StorageError::corrupt(
                "journal record",
                format!("unknown format version {v}"),
            ))
        }
        None => return Err(StorageError::corrupt("journal record", "empty")),
    }
    let short = || StorageError::corrupt("journal record", "short header");
    let at = read_u64(bytes, 1).ok_or_else(short)?;
    Ok(RecordHeader {
        written_at: Timestamp::from_millis(i64::from_be_bytes(at.to_be_bytes())),
        first_seq: read_u64(bytes, 9).ok_or_else(short)?,
        last_seq: read_u64(bytes, 17).ok_or_else(short)?,
        units: read_u32(bytes, 25).ok_or_else(short)?,
    })
}

/// Decodes every unit of a record.
pub fn decode_record(bytes: &[u8]) -> Result<(RecordHeader, Vec<Unit>), StorageError> {
    let header = read_header(bytes)?;
    let mut units = Vec::with_capacity(header.units.min(65_536) as usize);
    let mut at = HEADER_LEN;
    for _ in 0..header.units {
        let short = || StorageError::corrupt("journal record", "short frame");
        let len = read_u32(bytes, at).ok_or_else(short)? as usize;
        let first_seq = read_u64(bytes, at + 4).ok_or_else(short)?;
        let body = bytes
            .get(at + 12..at + 12 + len)
            .ok_or_else(|| StorageError::corrupt("journal record", "frame past the end"))?;
        let mut unit = decode_body::<Unit>(body, "journal unit")?;
        for (i, event) in unit.events.iter_mut().enumerate() {
            // Just decoded: not shared yet, so this does not copy.
            Arc::make_mut(event).seq = first_seq + i as u64;
        }
        units.push(unit);
        at += 12 + len;
    }
    if at != bytes.len() {
        return Err(StorageError::corrupt("journal record", "trailing bytes"));
    }
    Ok((header, units))
}

/// Hands `f` the events of `units` after `after` (a scan's tail of a
/// record); answers false when `f` asked to stop.
pub(crate) fn feed(units: Vec<Unit>, after: u64, f: &mut dyn FnMut(Unit) -> bool) -> bool {
    for mut unit in units {
        if unit.last_seq() <= after {
            continue;
        }
        unit.events.retain(|e| e.seq > after);
        if !f(unit) {
            return false;
        }
    }
    true
}

/// The narrow interface between the writer and a journal.
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// Appends a record whose first sequence follows `expected_last` (the
    /// last sequence the writer appended); a journal that has moved on (a
    /// deposed owner) refuses.
    fn append(&self, expected_last: u64, record: &EncodedRecord) -> Result<(), StorageError>;
    /// Makes every appended record durable.
    fn flush(&self) -> Result<(), StorageError>;
    /// The last sequence stored (0 when empty).
    fn last_seq(&self) -> Result<u64, StorageError>;
    /// The first sequence still held: earlier ones were trimmed (0 when
    /// empty).
    fn first_seq(&self) -> Result<u64, StorageError>;
    /// Calls `f` with every unit holding events after `after`, in order;
    /// events at or before `after` are dropped from the first unit. Stops
    /// early when `f` answers false.
    fn scan(&self, after: u64, f: &mut dyn FnMut(Unit) -> bool) -> Result<(), StorageError>;
    /// Removes records whose every event is at or before `through` and that
    /// were written before `written_before`. Answers how many went.
    fn trim(&self, through: u64, written_before: Timestamp) -> Result<usize, StorageError>;
}

/// The journal in a sled tree: how stores kept it before segment files
/// ([`crate::segments::SegmentJournal`]). A store that still has records
/// here moves them into its segments when it opens.
#[derive(Debug, Clone)]
pub struct SledJournal {
    tree: sled::Tree,
    db: sled::Db,
}

impl SledJournal {
    pub fn open(db: &sled::Db) -> Result<Self, StorageError> {
        Ok(SledJournal {
            tree: db.open_tree("journal")?,
            db: db.clone(),
        })
    }
}

impl SledJournal {
    /// Appends every record `to` does not hold yet, makes them durable
    /// there, then removes them here. Answers how many moved.
    pub fn move_into(&self, to: &dyn Journal) -> Result<usize, StorageError> {
        let mut last = to.last_seq()?;
        let mut moved = 0;
        for entry in self.tree.iter() {
            let (_, bytes) = entry?;
            let header = read_header(&bytes)?;
            if header.last_seq <= last {
                continue;
            }
            let record = EncodedRecord {
                first_seq: header.first_seq,
                last_seq: header.last_seq,
                bytes: bytes.to_vec(),
            };
            to.append(last, &record)?;
            last = header.last_seq;
            moved += 1;
        }
        if moved > 0 || !self.tree.is_empty() {
            to.flush()?;
            // Key by key: a sled batch or `clear` would switch the process
            // to sled's global lock (see `write_snapshot` in store.rs).
            for key in self.tree.iter().keys() {
                self.tree.remove(key?)?;
            }
            self.db.flush()?;
        }
        Ok(moved)
    }
}

impl Journal for SledJournal {
    fn append(&self, expected_last: u64, record: &EncodedRecord) -> Result<(), StorageError> {
        if record.first_seq <= expected_last {
            return Err(StorageError::Unavailable(format!(
                "journal append at {} does not follow {expected_last}",
                record.first_seq
            )));
        }
        self.tree
            .insert(record.first_seq.to_be_bytes(), record.bytes.as_slice())?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }

    fn last_seq(&self) -> Result<u64, StorageError> {
        match self.tree.last()? {
            Some((_, bytes)) => Ok(read_header(&bytes)?.last_seq),
            None => Ok(0),
        }
    }

    fn first_seq(&self) -> Result<u64, StorageError> {
        match self.tree.first()? {
            Some((_, bytes)) => Ok(read_header(&bytes)?.first_seq),
            None => Ok(0),
        }
    }

    fn scan(&self, after: u64, f: &mut dyn FnMut(Unit) -> bool) -> Result<(), StorageError> {
        let start = after.saturating_add(1);
        // The record holding `start` may begin before it.
        let from = match self.tree.range(..=start.to_be_bytes()).next_back() {
            Some(entry) => entry?.0.to_vec(),
            None => start.to_be_bytes().to_vec(),
        };
        for entry in self.tree.range(from..) {
            let (_, bytes) = entry?;
            let (header, units) = decode_record(&bytes)?;
            if header.last_seq <= after {
                continue;
            }
            if !feed(units, after, f) {
                return Ok(());
            }
        }
        Ok(())
    }

    fn trim(&self, through: u64, written_before: Timestamp) -> Result<usize, StorageError> {
        let mut removed = 0;
        for entry in self.tree.iter() {
            let (key, bytes) = entry?;
            let header = read_header(&bytes)?;
            if header.last_seq > through || header.written_at >= written_before {
                break;
            }
            self.tree.remove(key)?;
            removed += 1;
        }
        Ok(removed)
    }
}
