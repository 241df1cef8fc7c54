//! The write-behind view: the state of every family, SKU, coupon and index
//! row that the journal has changed since it was last written, kept current
//! by applying each committed unit with the domain's `apply`. Reads look
//! here first, so no reader sees state older than what was acknowledged;
//! the write-behind writes these entries as rows and drops the ones that did
//! not change meanwhile.
//!
//! State tree key layout:
//!
//! | prefix | key after the prefix                         | value |
//! |--------|----------------------------------------------|-------|
//! | `F`    | family (master) order id, 32 bytes           | the `OrderFamily` (carries its version) |
//! | `S`    | SKU code                                     | `Stamped<Sku>` (format byte 2) |
//! | `C`    | coupon id                                    | `Stamped<Coupon>` (format byte 2) |
//! | `U`    | user id, `0x00`, family id                   | empty (user listing index) |
//! | `E`    | payment deadline ms (u64 BE), family id      | empty (deadlines of CREATED families) |
//! | `M`    | `checkpoint`                                 | the `Checkpoint` |

use crate::codec::{decode, decode_body, encode_body_into, read_u64};
use crate::error::StorageError;
use crate::journal::Unit;
use ordercore_domain::codes::OrderStatus;
use ordercore_domain::{
    Coupon, CouponId, Event, EventBody, OrderFamily, OrderId, Sku, SkuCode, Target, Timestamp,
    UserId,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub(crate) const FAMILY: u8 = b'F';
pub(crate) const SKU: u8 = b'S';
pub(crate) const COUPON: u8 = b'C';
pub(crate) const USER_INDEX: u8 = b'U';
pub(crate) const EXPIRY: u8 = b'E';
pub(crate) const CHECKPOINT_KEY: &[u8] = b"Mcheckpoint";

pub(crate) fn family_key(id: &OrderId) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(FAMILY);
    key.extend_from_slice(id.as_bytes());
    key
}

pub(crate) fn sku_key(code: &SkuCode) -> Vec<u8> {
    [&[SKU][..], code.as_str().as_bytes()].concat()
}

pub(crate) fn coupon_key(id: &CouponId) -> Vec<u8> {
    [&[COUPON][..], id.as_str().as_bytes()].concat()
}

/// `U ++ user ++ 0x00`: the prefix of a user's index rows (user ids never
/// hold a zero byte, so one user's prefix never covers another's).
pub(crate) fn user_prefix(user: &UserId) -> Vec<u8> {
    [&[USER_INDEX][..], user.as_str().as_bytes(), &[0]].concat()
}

pub(crate) fn user_key(user: &UserId, id: &OrderId) -> Vec<u8> {
    [user_prefix(user).as_slice(), id.as_bytes()].concat()
}

/// The rows the write-behind keeps for an unpaid family, as sled keys and
/// the family row's bytes: the family row, its user-index row and its
/// expiry-index row (the benchmarks price each shape with sled alone).
#[derive(Debug, Clone)]
pub struct StateRows {
    pub family_key: Vec<u8>,
    pub family_row: Vec<u8>,
    pub user_key: Vec<u8>,
    pub expiry_key: Vec<u8>,
}

impl StateRows {
    pub fn of(family: &OrderFamily) -> Result<StateRows, StorageError> {
        Ok(StateRows {
            family_key: family_key(&family.order_id),
            family_row: crate::codec::encode_packed(family)?,
            user_key: user_key(&family.user_id, &family.order_id),
            expiry_key: expiry_key(family.expire_at, &family.order_id),
        })
    }
}

pub(crate) fn expiry_key(at: Timestamp, id: &OrderId) -> Vec<u8> {
    let ms = u64::try_from(at.millis()).unwrap_or(0);
    [&[EXPIRY][..], &ms.to_be_bytes(), id.as_bytes()].concat()
}

/// Reads an expiry key back.
pub(crate) fn parse_expiry_key(key: &[u8]) -> Option<(Timestamp, OrderId)> {
    let ms = read_u64(key, 1)?;
    let id = std::str::from_utf8(key.get(9..)?).ok()?;
    Some((
        Timestamp::from_millis(i64::try_from(ms).ok()?),
        OrderId::parse(id).ok()?,
    ))
}

/// A catalog row with the journal sequence it reflects. Rows are written
/// one by one ahead of the checkpoint row (DESIGN.md, "Storage"), so after
/// a crash a row can be ahead of the checkpoint: replay skips the events
/// its `seq` already holds, as it skips a family's by its version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stamped<T> {
    pub seq: u64,
    pub value: T,
}

/// The format byte of a stamped catalog row. Rows written before stamps
/// carry `codec::FORMAT_VERSION` and the bare value; they were written in one
/// atomic batch with their checkpoint row, so they reflect it exactly, and
/// read as sequence 0 replay applies every journalled event after it.
pub(crate) const STAMPED_FORMAT: u8 = 2;

/// A catalog row reflecting every event up to `seq`.
pub(crate) fn encode_stamped<T: Serialize>(seq: u64, value: &T) -> Result<Vec<u8>, StorageError> {
    let mut out = vec![STAMPED_FORMAT];
    encode_body_into(&Stamped { seq, value }, &mut out)?;
    Ok(out)
}

/// Decodes a catalog row, stamped or written before stamps.
pub(crate) fn decode_stamped<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<Stamped<T>, StorageError> {
    match bytes.split_first() {
        Some((&STAMPED_FORMAT, body)) => decode_body(body, what),
        _ => Ok(Stamped {
            seq: 0,
            value: decode(bytes, what)?,
        }),
    }
}

/// Reads and decodes one catalog row.
pub(crate) fn read_stamped<T: serde::de::DeserializeOwned>(
    rows: &sled::Tree,
    key: &[u8],
    what: &'static str,
) -> Result<Option<Stamped<T>>, StorageError> {
    match rows.get(key)? {
        Some(bytes) => decode_stamped(&bytes, what).map(Some),
        None => Ok(None),
    }
}

/// The journal sequence every state row reflects once it is written; the
/// last row a checkpoint writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub written_at: Timestamp,
}

/// A value changed by the unit at `seq` and not written behind yet.
#[derive(Debug, Clone)]
pub(crate) struct Dirty<T> {
    pub value: T,
    pub seq: u64,
}

/// Entries changed and not written behind yet, each with the sequence of
/// the last event it holds.
#[derive(Debug, Default, Clone)]
pub(crate) struct Dirties {
    pub families: BTreeMap<OrderId, Dirty<Arc<OrderFamily>>>,
    /// A catalog row's stamp is its entry's sequence, not the snapshot's,
    /// which may be one that a failed write skipped and a restart hands out
    /// again, whose events the row would then pass over.
    pub skus: HashMap<SkuCode, Dirty<Arc<Sku>>>,
    pub coupons: HashMap<CouponId, Dirty<Arc<Coupon>>>,
    /// Pending index rows (`U`, `E`): insert or remove.
    pub index: BTreeMap<Vec<u8>, Dirty<bool>>,
}

impl Dirties {
    /// Takes `older`'s entries where it has none of its own. The big maps
    /// are merged by inserting the smaller into the larger: a failing disk
    /// then stalls the journal writer for the smaller side's entries, not
    /// a second's worth at every try.
    fn put_under(&mut self, older: Dirties) {
        self.families = newer_over(older.families, std::mem::take(&mut self.families));
        self.index = newer_over(older.index, std::mem::take(&mut self.index));
        for (k, d) in older.skus {
            self.skus.entry(k).or_insert(d);
        }
        for (k, d) in older.coupons {
            self.coupons.entry(k).or_insert(d);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
            && self.skus.is_empty()
            && self.coupons.is_empty()
            && self.index.is_empty()
    }
}

/// What a checkpoint writes: the dirty entries as of `seq`, taken out of
/// the view whole. The view keeps it for readers until its rows are
/// written (or gives its entries back if the write fails).
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub seq: u64,
    pub dirty: Dirties,
}

/// The dirty state: what changed since the checkpoint in flight took its
/// snapshot, over that snapshot while its rows are being written.
///
/// Taking a snapshot moves the dirty maps out whole and dropping a written
/// one drops a pointer, so neither holds the view's lock (which the journal
/// writer takes to complete every group) for longer than a swap. Copying
/// and then pruning the maps in place held it for 2-3 and 4-5 ms at 10,000
/// creates/s (30,000 entries a checkpoint), once a second each: the
/// slowest answers of the open loop.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub dirty: Dirties,
    /// The snapshot a checkpoint is writing, if one is: still read through
    /// until its rows are on disk.
    pub in_flight: Option<Arc<Snapshot>>,
    /// Families in the dirty maps that the snapshot in flight holds too:
    /// counted once by [`View::dirty_families`] (an order created in one
    /// interval and paid while its checkpoint writes is one family).
    pub(crate) in_both: usize,
    /// The last sequence applied (or skipped after a failed write).
    pub applied_seq: u64,
    /// Events that could not be applied: they named a family, SKU or
    /// coupon the store does not hold, or its row could not be read.
    pub apply_errors: u64,
    /// The first sequence whose events could not be applied. No checkpoint
    /// may pass it: the view lacks that change, so rows written now would
    /// lose it once the journal is trimmed. A restart replays it (and
    /// refuses to open if it still cannot be applied).
    pub failed_seq: Option<u64>,
    /// Index entries marked at or below this sequence may be on disk
    /// already, though no checkpoint counted them written: a failed
    /// checkpoint may have written some, and replay re-marks rows a
    /// checkpoint wrote before a crash took its checkpoint row. Their
    /// removal is always written, never coalesced away with the insert.
    pub maybe_written_through: u64,
}

impl View {
    /// The dirty entries, oldest first: the snapshot in flight, then what
    /// changed since. A reader that lets later layers override earlier
    /// ones sees the newest state of every entry.
    pub fn layers(&self) -> impl Iterator<Item = &Dirties> {
        self.in_flight
            .iter()
            .map(|s| &s.dirty)
            .chain(std::iter::once(&self.dirty))
    }

    /// Family `id` as the view holds it, newest first.
    pub fn family(&self, id: &OrderId) -> Option<&Arc<OrderFamily>> {
        self.dirty
            .families
            .get(id)
            .or_else(|| self.in_flight.as_ref()?.dirty.families.get(id))
            .map(|d| &d.value)
    }

    pub fn sku(&self, code: &SkuCode) -> Option<&Arc<Sku>> {
        self.dirty
            .skus
            .get(code)
            .or_else(|| self.in_flight.as_ref()?.dirty.skus.get(code))
            .map(|d| &d.value)
    }

    pub fn coupon(&self, id: &CouponId) -> Option<&Arc<Coupon>> {
        self.dirty
            .coupons
            .get(id)
            .or_else(|| self.in_flight.as_ref()?.dirty.coupons.get(id))
            .map(|d| &d.value)
    }

    /// Families not written behind yet (counting the checkpoint's own),
    /// each once.
    pub fn dirty_families(&self) -> usize {
        self.layers().map(|d| d.families.len()).sum::<usize>() - self.in_both
    }

    /// Whether the snapshot in flight holds family `id`.
    fn in_flight_holds(&self, id: &OrderId) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|s| s.dirty.families.contains_key(id))
    }

    /// Applies every event of a committed unit. `rows` reads an entry not in
    /// the view from the state tree.
    pub fn apply_unit(&mut self, unit: &Unit, rows: &sled::Tree) {
        let family = unit.family.get();
        // Whether this unit's events still have to reach each family it
        // touches: a family row a checkpoint wrote in an earlier batch may
        // already hold them (decided once per family, on its first event).
        let mut decided: Vec<(OrderId, bool)> = Vec::new();
        for event in &unit.events {
            // With the family as the change left it (kept below), only the
            // catalog's side of the events remains to apply.
            let to_family = family.is_none();
            if !to_family && matches!(event.body.target(), Target::Family(_)) {
                continue;
            }
            if let Err(e) = self.apply_event(event, rows, to_family, &mut decided) {
                self.apply_errors += 1;
                self.failed_seq.get_or_insert(event.seq);
                tracing::error!(seq = event.seq, error = %e, "cannot apply a journalled event");
            }
            self.applied_seq = self.applied_seq.max(event.seq);
        }
        if let Some(family) = family {
            self.keep_family(family, unit);
        }
    }

    /// Keeps the family a live actor produced for `unit`, with the index
    /// rows its events imply: a creation adds the user's listing row and
    /// the deadline row; a payment or cancellation removes the deadline row
    /// (the only ways out of CREATED).
    fn keep_family(&mut self, family: &Arc<OrderFamily>, unit: &Unit) {
        debug_assert!(!family.compact, "a compact family is never written");
        let (id, seq) = (family.order_id, unit.last_seq());
        for event in &unit.events {
            match &event.body {
                EventBody::OrderCreated(new) => {
                    self.mark_index(user_key(&new.user_id, &id), true, seq);
                    self.mark_index(expiry_key(new.expire_at, &id), true, seq);
                }
                EventBody::OrderPaid(_) | EventBody::OrderCanceled { .. } => {
                    self.mark_index(expiry_key(family.expire_at, &id), false, seq);
                }
                _ => {}
            }
        }
        let first = self
            .dirty
            .families
            .insert(
                id,
                Dirty {
                    value: Arc::clone(family),
                    seq,
                },
            )
            .is_none();
        if first && self.in_flight_holds(&id) {
            self.in_both += 1;
        }
        self.applied_seq = self.applied_seq.max(seq);
    }

    /// Applies one event to what it changes; with `to_family`, a stock or
    /// coupon move caused by an order also joins that order's history (as
    /// it does in the order actor's copy).
    fn apply_event(
        &mut self,
        event: &Arc<Event>,
        rows: &sled::Tree,
        to_family: bool,
        decided: &mut Vec<(OrderId, bool)>,
    ) -> Result<(), StorageError> {
        if to_family && !matches!(event.body.target(), Target::Family(_)) {
            if let Some(id) = event.body.family_id() {
                if self.family_takes(id, event, rows, decided)? {
                    self.apply_family(id, event, rows)?;
                }
            }
        }
        match event.body.target() {
            Target::Family(id) => {
                if self.family_takes(id, event, rows, decided)? {
                    self.apply_family(id, event, rows)?;
                }
                Ok(())
            }
            Target::Sku(code) => apply_catalog(
                &mut self.dirty.skus,
                self.in_flight.as_ref().map(|s| &s.dirty.skus),
                code,
                &sku_key(code),
                rows,
                event,
                |body| match body {
                    EventBody::SkuUpserted(details) => Some(Sku::new((**details).clone())),
                    _ => None,
                },
                Sku::apply,
            ),
            Target::Coupon(id) => apply_catalog(
                &mut self.dirty.coupons,
                self.in_flight.as_ref().map(|s| &s.dirty.coupons),
                id,
                &coupon_key(id),
                rows,
                event,
                |body| match body {
                    EventBody::CouponIssued(details) => Some(Coupon::new((**details).clone())),
                    _ => None,
                },
                Coupon::apply,
            ),
            Target::Unrouted => Err(StorageError::corrupt(
                "journal",
                "an event that names no aggregate",
            )),
        }
    }

    /// Whether `event`'s unit still has to be applied to family `id`: not
    /// when the family (in the view, or its row) already holds the unit's
    /// version. Checkpoints write family rows in several batches before the
    /// checkpoint row, so after a crash a row can be ahead of the
    /// checkpoint; replay then skips what it holds, and marks its index
    /// rows from its state instead (they may be behind it): both rows of a
    /// creation, the deadline row's removal once it left CREATED.
    fn family_takes(
        &mut self,
        id: OrderId,
        event: &Event,
        rows: &sled::Tree,
        decided: &mut Vec<(OrderId, bool)>,
    ) -> Result<bool, StorageError> {
        if let Some((_, takes)) = decided.iter().find(|(d, _)| *d == id) {
            return Ok(*takes);
        }
        let current = match self.family(&id) {
            Some(f) => Some(Arc::clone(f)),
            None => read_row::<OrderFamily>(rows, &family_key(&id), "family")?.map(Arc::new),
        };
        let takes = match (&event.body, &current) {
            (_, None) => true,
            (EventBody::OrderCreated(_), Some(family)) => {
                let seq = event.seq;
                self.mark_index(user_key(&family.user_id, &id), true, seq);
                let created = family.status == OrderStatus::CREATED;
                self.mark_index(expiry_key(family.expire_at, &id), created, seq);
                false
            }
            // A keyed success that changed nothing records only its key, at
            // the version the family already had: whether the row holds it
            // is whether the key is there (a key is recorded once).
            (EventBody::IdempotencyRecorded(entry), Some(family)) => family
                .idempotency_entry(&entry.caller, &entry.key)
                .is_none(),
            (_, Some(family)) if family.version >= event.version => {
                // The row is ahead of the replay: a crash took the
                // checkpoint that wrote it before its index rows, so a
                // deadline row its payment or cancellation removed may
                // still be on disk. The row is the truth: a family out of
                // CREATED has no deadline.
                if family.status != OrderStatus::CREATED {
                    self.mark_index(expiry_key(family.expire_at, &id), false, event.seq);
                }
                false
            }
            (_, Some(_)) => true,
        };
        decided.push((id, takes));
        Ok(takes)
    }

    fn apply_family(
        &mut self,
        id: OrderId,
        event: &Arc<Event>,
        rows: &sled::Tree,
    ) -> Result<(), StorageError> {
        let seq = event.seq;
        if let EventBody::OrderCreated(new) = &event.body {
            if self.family(&id).is_some() || rows.contains_key(family_key(&id))? {
                return Ok(()); // already created: a replay of a reflected unit
            }
            let family = OrderFamily::create_shared(event).ok_or_else(|| {
                StorageError::corrupt("journal", "OrderCreated that creates nothing")
            })?;
            self.mark_index(user_key(&new.user_id, &id), true, seq);
            self.mark_index(expiry_key(new.expire_at, &id), true, seq);
            self.dirty.families.insert(
                id,
                Dirty {
                    value: Arc::new(family),
                    seq,
                },
            );
            return Ok(());
        }
        let in_flight = self
            .in_flight
            .as_ref()
            .and_then(|s| s.dirty.families.get(&id));
        let entry = match self.dirty.families.entry(id) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let family = match in_flight {
                    // Shared with the snapshot: changed below as a copy.
                    Some(d) => {
                        self.in_both += 1;
                        Arc::clone(&d.value)
                    }
                    None => Arc::new(
                        read_row::<OrderFamily>(rows, &family_key(&id), "family")?.ok_or_else(
                            || {
                                StorageError::corrupt(
                                    "journal",
                                    format!("event for unknown order {id}"),
                                )
                            },
                        )?,
                    ),
                };
                v.insert(Dirty { value: family, seq })
            }
        };
        let family = Arc::make_mut(&mut entry.value);
        let was_created = family.status == OrderStatus::CREATED;
        family.apply_shared(event);
        entry.seq = seq;
        if was_created && family.status != OrderStatus::CREATED {
            let key = expiry_key(family.expire_at, &id);
            self.mark_index(key, false, seq);
        }
        Ok(())
    }

    fn mark_index(&mut self, key: Vec<u8>, insert: bool, seq: u64) {
        let in_flight = self
            .in_flight
            .as_ref()
            .map_or(0, |s| s.seq)
            .max(self.maybe_written_through);
        match self.dirty.index.get(&key) {
            // Inserted and removed before any checkpoint took the insert:
            // nothing reaches the disk at all (an order created and paid
            // within one checkpoint interval writes no deadline row).
            Some(pending) if pending.value && !insert && pending.seq > in_flight => {
                self.dirty.index.remove(&key);
            }
            _ => {
                self.dirty.index.insert(key, Dirty { value: insert, seq });
            }
        }
    }

    /// The entries a checkpoint writes, taken out of the view (which
    /// reads through them until [`View::clear_through`] or
    /// [`View::restore`]).
    pub fn snapshot(&mut self) -> Arc<Snapshot> {
        // A snapshot still in flight is one whose write was never settled:
        // its entries are older than everything dirty since, so they go
        // back under them rather than being lost.
        self.restore();
        let snapshot = Arc::new(Snapshot {
            seq: self.applied_seq,
            dirty: std::mem::take(&mut self.dirty),
        });
        self.in_flight = Some(Arc::clone(&snapshot));
        self.in_both = 0;
        snapshot
    }

    /// Forgets the snapshot of the checkpoint at `seq`, now written: every
    /// entry a later unit changed is in the dirty maps. Answers it, for
    /// the caller to drop after releasing the view's lock.
    pub fn clear_through(&mut self, seq: u64) -> Option<Arc<Snapshot>> {
        debug_assert!(self.in_flight.as_ref().is_none_or(|s| s.seq == seq));
        self.in_both = 0;
        self.in_flight.take()
    }

    /// Gives a snapshot whose write failed its entries back, under the
    /// ones changed since, so the next checkpoint writes them again.
    pub fn restore(&mut self) {
        let Some(snapshot) = self.in_flight.take() else {
            return;
        };
        self.in_both = 0;
        // Moved, not copied, when no one else holds it (the checkpoint
        // lets go of it first): this runs under the view's lock, which the
        // journal writer waits for.
        let older =
            Arc::try_unwrap(snapshot).map_or_else(|shared| shared.dirty.clone(), |s| s.dirty);
        self.dirty.put_under(older);
    }
}

/// `newer`'s entries over `older`'s, inserting the smaller map's into the
/// larger.
fn newer_over<K: Ord, V>(mut older: BTreeMap<K, V>, mut newer: BTreeMap<K, V>) -> BTreeMap<K, V> {
    if older.len() <= newer.len() {
        for (k, v) in older {
            newer.entry(k).or_insert(v);
        }
        newer
    } else {
        older.extend(newer);
        older
    }
}

/// Applies a catalog event (SKU or coupon) to its dirty entry, loading the
/// entry from its row, or creating it from the event that issues it.
#[allow(clippy::too_many_arguments)]
fn apply_catalog<K, V>(
    map: &mut HashMap<K, Dirty<Arc<V>>>,
    in_flight: Option<&HashMap<K, Dirty<Arc<V>>>>,
    key: &K,
    row_key: &[u8],
    rows: &sled::Tree,
    event: &Event,
    create: impl FnOnce(&EventBody) -> Option<V>,
    apply: fn(&mut V, &Event),
) -> Result<(), StorageError>
where
    K: std::hash::Hash + Eq + Clone + std::fmt::Display,
    V: Clone + serde::de::DeserializeOwned,
{
    let entry = match map.entry(key.clone()) {
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            // The checkpoint in flight holds a newer copy than the row.
            if let Some(d) = in_flight.and_then(|m| m.get(key)) {
                v.insert(d.clone())
            } else {
                let loaded = match read_stamped::<V>(rows, row_key, "catalog row")? {
                    Some(row) => row,
                    None => Stamped {
                        seq: 0,
                        value: create(&event.body).ok_or_else(|| {
                            StorageError::corrupt("journal", format!("event for unknown {key}"))
                        })?,
                    },
                };
                v.insert(Dirty {
                    value: Arc::new(loaded.value),
                    seq: loaded.seq,
                })
            }
        }
    };
    // A row written ahead of the checkpoint already holds this event.
    if event.seq <= entry.seq {
        return Ok(());
    }
    apply(Arc::make_mut(&mut entry.value), event);
    entry.seq = event.seq;
    Ok(())
}

/// Reads and decodes one state row.
pub(crate) fn read_row<T: serde::de::DeserializeOwned>(
    rows: &sled::Tree,
    key: &[u8],
    what: &'static str,
) -> Result<Option<T>, StorageError> {
    match rows.get(key)? {
        Some(bytes) => decode(&bytes, what).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordercore_domain::testkit::Shop;

    /// A failed checkpoint's entries go back under the newer ones,
    /// whichever side is moved into the other.
    #[test]
    fn newer_entries_win_whichever_map_is_larger() {
        let mut cases = 0;
        for (older_keys, newer_keys) in [(0..1, 0..3), (0..3, 2..3), (0..2, 1..3)] {
            let older: BTreeMap<u32, &str> = older_keys.clone().map(|k| (k, "old")).collect();
            let newer: BTreeMap<u32, &str> = newer_keys.clone().map(|k| (k, "new")).collect();
            let merged = newer_over(older, newer);
            let expected: BTreeMap<u32, &str> = older_keys
                .map(|k| (k, "old"))
                .chain(newer_keys.map(|k| (k, "new")))
                .collect();
            assert_eq!(merged, expected);
            cases += 1;
        }
        assert_eq!(cases, 3);
    }

    #[test]
    fn state_rows_are_the_rows_the_store_keeps() {
        let mut shop = Shop::default();
        let family = shop.create("u1", &[("A1", 1), ("A2", 2)], None);
        let rows = StateRows::of(&family).expect("encodes");
        let back: OrderFamily = decode(&rows.family_row, "family").expect("decodes");
        assert_eq!(back.order_id, family.order_id);
        assert_eq!(back.version, family.version);
        assert_eq!(back.history.len(), family.history.len());
        assert_eq!(
            parse_expiry_key(&rows.expiry_key),
            Some((family.expire_at, family.order_id))
        );
        assert!(rows.user_key.starts_with(&user_prefix(&family.user_id)));
        assert!(rows.family_key.ends_with(family.order_id.as_bytes()));
    }
}
