//! Inventory and coupons in memory: the live counterpart of the SKU and
//! coupon rows, shared by every order actor.
//!
//! A reservation is a few hundred nanoseconds of work, so the catalog is
//! not an actor of its own (a lone message round trip to another thread
//! costs ~50 µs here): order actors reserve under per-SKU and per-coupon
//! locks taken in one fixed order (coupon, then SKUs by code), decide,
//! submit the change to the writer and apply its stock and coupon effects
//! before they let go. A change is therefore queued in the journal before
//! any change that saw its effect, and two orders can never reserve the
//! same units. Effects of changes that later fail to commit are dropped by
//! reloading the catalog from storage when the store's epoch moves on.

use crate::error::CoreError;
use crate::lock;
use ordercore_domain::{Coupon, CouponId, Event, EventBody, Sku, SkuCode};
use ordercore_storage::{StorageError, Store, Ticket};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// SKUs and coupons with their live counters.
#[derive(Debug)]
pub struct Catalog {
    state: RwLock<State>,
    metrics_reloads: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// The store epoch the counters belong to.
    epoch: u64,
    skus: HashMap<SkuCode, Mutex<Sku>>,
    coupons: HashMap<CouponId, Mutex<Coupon>>,
}

impl Catalog {
    /// Loads every SKU and coupon from the store.
    pub fn load(store: &Store) -> Result<Catalog, StorageError> {
        let catalog = Catalog {
            state: RwLock::new(State::default()),
            metrics_reloads: std::sync::atomic::AtomicU64::new(0),
        };
        catalog.reload(store, false)?;
        Ok(catalog)
    }

    /// Reloads the counters from the store; with `if_stale`, only if a
    /// write failed since they were loaded, checked again under the write
    /// lock: another thread may have reloaded and submitted a reservation
    /// meanwhile, and a second reload would drop that reservation's effect
    /// while its change is still on its way to the journal (the store's
    /// rows show only acknowledged changes). Answers whether it reloaded.
    pub(crate) fn reload(&self, store: &Store, if_stale: bool) -> Result<bool, StorageError> {
        let mut state = self.write();
        let epoch = store.epoch();
        if if_stale && state.epoch == epoch {
            return Ok(false);
        }
        state.skus = store
            .all_skus()?
            .into_iter()
            .map(|s| (s.code().clone(), Mutex::new(s)))
            .collect();
        state.coupons = store
            .all_coupons()?
            .into_iter()
            .map(|c| (c.details.coupon_id.clone(), Mutex::new(c)))
            .collect();
        state.epoch = epoch;
        Ok(true)
    }

    /// Times the catalog was reloaded after a failed write.
    pub fn reloads(&self) -> u64 {
        self.metrics_reloads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state, reloaded first if a write failed since it was loaded (its
    /// counters may hold effects that never became durable).
    fn current(&self, store: &Store) -> Result<RwLockReadGuard<'_, State>, CoreError> {
        for _ in 0..3 {
            let state = self.read();
            if state.epoch == store.epoch() {
                return Ok(state);
            }
            drop(state);
            if self.reload(store, true)? {
                self.metrics_reloads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    epoch = store.epoch(),
                    "catalog reloaded after a failed write"
                );
            }
        }
        Err(CoreError::StorageUnavailable(
            "the store keeps failing".into(),
        ))
    }

    /// Submits a decided change and applies its stock and coupon effects.
    pub fn submit(
        &self,
        store: &Store,
        epoch: u64,
        shard: u32,
        events: Vec<Event>,
    ) -> Result<Ticket, CoreError> {
        let state = self.current(store)?;
        let ticket = store.submit(shard, epoch, events)?;
        for event in &ticket.unit.events {
            match &event.body {
                EventBody::StockChanged(d) => {
                    if let Some(sku) = state.skus.get(&d.sku_code) {
                        lock(sku).apply(event);
                    }
                }
                EventBody::CouponChanged(c) => {
                    if let Some(coupon) = state.coupons.get(&c.coupon_id) {
                        lock(coupon).apply(event);
                    }
                }
                _ => {}
            }
        }
        Ok(ticket)
    }

    /// Decides a change that reserves: `decide` sees the named SKUs (those
    /// that exist) and coupon as they are, locked in a fixed order, and the
    /// locks are held until the change is queued and its effects applied.
    /// All or nothing: a refusal or a failed submit changes nothing.
    pub fn reserve<R>(
        &self,
        store: &Store,
        epoch: u64,
        shard: u32,
        skus: &[SkuCode],
        coupon: Option<&CouponId>,
        decide: impl FnOnce(&[&Sku], Option<&Coupon>) -> Result<(Vec<Event>, R), CoreError>,
    ) -> Result<(Ticket, R), CoreError> {
        let state = self.current(store)?;
        let mut coupon_guard = coupon.and_then(|id| state.coupons.get(id)).map(lock);
        let mut codes: Vec<&SkuCode> = skus.iter().collect();
        codes.sort();
        codes.dedup();
        let mut guards: Vec<MutexGuard<'_, Sku>> = codes
            .iter()
            .filter_map(|code| state.skus.get(*code))
            .map(lock)
            .collect();
        let current: Vec<&Sku> = guards.iter().map(|g| &**g).collect();
        let (events, extra) = decide(&current, coupon_guard.as_deref())?;
        let (ticket, wake) = store.submit_unwoken(shard, epoch, events)?;
        for event in &ticket.unit.events {
            match &event.body {
                EventBody::StockChanged(d) => {
                    if let Some(g) = guards.iter_mut().find(|g| g.code() == &d.sku_code) {
                        g.apply(event);
                    }
                }
                EventBody::CouponChanged(_) => {
                    if let Some(g) = coupon_guard.as_mut() {
                        g.apply(event);
                    }
                }
                _ => {}
            }
        }
        // The locks go before the writer is woken (see `submit_unwoken`).
        drop(guards);
        drop(coupon_guard);
        wake.wake();
        Ok((ticket, extra))
    }

    /// Runs a catalog change (SKU upsert, stock delta, coupon issue) with the
    /// whole catalog locked: `decide` sees the current SKU or coupon; its
    /// events are submitted and applied (creating entries they introduce).
    /// `None` when the change changes nothing.
    pub fn change(
        &self,
        store: &Store,
        shard: u32,
        sku: Option<&SkuCode>,
        coupon: Option<&CouponId>,
        decide: impl FnOnce(Option<&Sku>, Option<&Coupon>) -> Result<Vec<Event>, CoreError>,
    ) -> Result<Option<Ticket>, CoreError> {
        drop(self.current(store)?);
        let mut state = self.write();
        let current_sku = sku.and_then(|c| state.skus.get(c)).map(|m| lock(m).clone());
        let current_coupon = coupon
            .and_then(|c| state.coupons.get(c))
            .map(|m| lock(m).clone());
        let events = decide(current_sku.as_ref(), current_coupon.as_ref())?;
        if events.is_empty() {
            return Ok(None);
        }
        let ticket = store.submit(shard, state.epoch, events)?;
        for event in &ticket.unit.events {
            match &event.body {
                EventBody::SkuUpserted(d) => {
                    let entry = state
                        .skus
                        .entry(d.sku_code.clone())
                        .or_insert_with(|| Mutex::new(Sku::new((**d).clone())));
                    lock(entry).apply(event);
                }
                EventBody::StockChanged(d) => {
                    if let Some(s) = state.skus.get(&d.sku_code) {
                        lock(s).apply(event);
                    }
                }
                EventBody::CouponIssued(d) => {
                    state
                        .coupons
                        .insert(d.coupon_id.clone(), Mutex::new(Coupon::new((**d).clone())));
                }
                _ => {}
            }
        }
        Ok(Some(ticket))
    }

    /// The live SKUs named (those that exist), for a price preview.
    pub fn skus(&self, codes: &[SkuCode]) -> Vec<Sku> {
        let state = self.read();
        codes
            .iter()
            .filter_map(|c| state.skus.get(c))
            .map(|m| lock(m).clone())
            .collect()
    }

    /// The live coupon, for a price preview.
    pub fn coupon(&self, id: &CouponId) -> Option<Coupon> {
        self.read().coupons.get(id).map(|m| lock(m).clone())
    }
}
