//! The in-process order core on actix 0.13: one actor per active order
//! family, shards on their own Arbiters that activate and passivate those
//! actors and fire payment deadlines, the live inventory and coupons, and
//! the risk counters — all behind one handle, [`OrderCore`], that the HTTP
//! edge, the benchmarks and the tests drive alike.
//!
//! A write's path: the caller looks the family's actor up in the registry
//! (a `DashMap`) and puts the command in its mailbox (one thread hop); on a
//! miss it goes to the family's shard, which activates the actor from
//! storage and forwards it on its own thread. The actor decides with the
//! domain, submits the events to the store's writer, applies them and
//! answers when the writer reports the group durable (the writer's thread
//! wakes the shard's, which answers the caller): three thread hops, each
//! shared by everything in flight.
//!
//! `OrderCore::start` must run inside an actix `System` (the server's, or
//! `actix::System::new()` / `#[actix::test]` in tests and benchmarks).

mod catalog;
pub mod config;
mod error;
mod metrics;
mod order;
mod shard;
#[cfg(test)]
mod tests;

pub use catalog::Catalog;
pub use config::CoreConfig;
pub use error::CoreError;
pub use metrics::{day_of, CoreMetrics, CoreMetricsSnapshot, DaySnapshot, DAY_MS};
pub use order::{Idempotency, Outcome, Render, WriteOptions};

use crate::order::{Exec, Op, OrderActor, Routed};
use crate::shard::{Route, ShardActor, ShardState, Tick};
use actix::dev::SendError;
use actix::{Actor, Addr, Arbiter, Context};
use dashmap::DashMap;
use ordercore_domain::catalog::{decide_issue_coupon, decide_stock_delta, decide_upsert_sku};
use ordercore_domain::codes::{CancelType, FulfillmentEvent, PayType};
use ordercore_domain::event::EventContext;
use ordercore_domain::ids::{IdempotencyKey, OutTradeNo, TradeNo};
use ordercore_domain::order::Address;
use ordercore_domain::pricing::quote;
use ordercore_domain::{
    Action, AfterSaleId, Command, CommandMeta, Coupon, CouponDetails, CouponId, CreateOrder,
    DomainError, ErrorCode, Event, IdSequencer, Money, OrderFamily, OrderId, Quantity, Quote, Sku,
    SkuCode, SkuDetails, Timestamp, UserId,
};
use ordercore_storage::{StorageError, Store, Ticket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::oneshot;

/// The shard number catalog changes (SKUs, stock, coupons) are journalled
/// under: they belong to no user's shard.
pub const CATALOG_SHARD: u32 = u32::MAX;

/// What the core's parts share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Store,
    pub catalog: Catalog,
    pub config: CoreConfig,
    /// Live order actors by family id. Sub-order and after-sale ids name
    /// their family directly (`family_id()`), so one entry serves them all.
    pub registry: DashMap<OrderId, Addr<OrderActor>>,
    pub metrics: CoreMetrics,
    /// The highest journal position of any family whose actor passivated:
    /// loading a family that is not live needs the store's view to hold
    /// changes up to here and no further (a family never live in this
    /// process was either recovered or is new).
    pub retired_watermark: std::sync::atomic::AtomicU64,
    shards: OnceLock<Vec<ShardHandle>>,
    arbiters: Mutex<Vec<Arbiter>>,
    ready: AtomicBool,
    ids: Mutex<IdSequencer>,
    /// Makes the next order actor panic right after a change is submitted
    /// (tests only).
    #[cfg(test)]
    pub panic_after_submit: AtomicBool,
}

#[derive(Debug, Clone)]
struct ShardHandle {
    addr: Addr<ShardActor>,
    state: Arc<ShardState>,
}

/// An `Idempotency-Key` sent with a batch remove.
pub struct BatchKey {
    pub key: IdempotencyKey,
    /// Hash of method, path and body.
    pub request_hash: u64,
    /// The reply (status, JSON body) recorded for a batch that removes `n`
    /// families.
    pub render: Box<dyn Fn(usize) -> (u16, String) + Send + Sync>,
}

impl std::fmt::Debug for BatchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchKey")
            .field("key", &self.key)
            .field("request_hash", &self.request_hash)
            .finish_non_exhaustive()
    }
}

/// What a batch remove answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// Without a key: the families this call removed.
    Count(usize),
    /// With a key: the reply recorded with it, and whether an earlier call
    /// recorded it and this one changed nothing.
    Keyed {
        status: u16,
        body: String,
        replayed: bool,
    },
}

/// The handle to the running core; clones share it.
#[derive(Debug, Clone)]
pub struct OrderCore {
    shared: Arc<Shared>,
}

impl OrderCore {
    /// Loads the catalog, starts the shards and re-arms every pending
    /// payment deadline (overdue ones fire on the first tick). The store
    /// has already recovered when it opened.
    pub fn start(store: Store, config: CoreConfig) -> Result<OrderCore, CoreError> {
        let catalog = Catalog::load(&store)?;
        let shard_count = config.shards.max(1);
        let shared = Arc::new(Shared {
            store,
            catalog,
            config,
            registry: DashMap::new(),
            metrics: CoreMetrics::default(),
            retired_watermark: std::sync::atomic::AtomicU64::new(0),
            shards: OnceLock::new(),
            arbiters: Mutex::new(Vec::new()),
            ready: AtomicBool::new(false),
            ids: Mutex::new(IdSequencer::default()),
            #[cfg(test)]
            panic_after_submit: AtomicBool::new(false),
        });
        let mut shards = Vec::with_capacity(shard_count);
        let mut arbiters = Vec::with_capacity(shard_count);
        for index in 0..shard_count {
            let arbiter = Arbiter::new();
            let state = Arc::new(ShardState::new(u32::try_from(index).unwrap_or(u32::MAX)));
            let (s, st) = (Arc::clone(&shared), Arc::clone(&state));
            let addr = ShardActor::start_in_arbiter(
                &arbiter.handle(),
                move |ctx: &mut Context<ShardActor>| {
                    ctx.set_mailbox_capacity(config::SHARD_MAILBOX_CAPACITY);
                    ShardActor::new(s, st)
                },
            );
            shards.push(ShardHandle { addr, state });
            arbiters.push(arbiter);
        }
        for (at, id) in shared.store.pending_deadlines()? {
            shards[id.shard(shard_count)].state.arm(at, id);
        }
        let _ = shared.shards.set(shards);
        *lock(&shared.arbiters) = arbiters;
        shared.ready.store(true, Ordering::SeqCst);
        Ok(OrderCore { shared })
    }

    fn shards(&self) -> &[ShardHandle] {
        self.shared.shards.get().map_or(&[], Vec::as_slice)
    }

    fn shard_of(&self, family: &OrderId) -> Option<&ShardHandle> {
        let shards = self.shards();
        shards.get(family.shard(shards.len().max(1)))
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn config(&self) -> &CoreConfig {
        &self.shared.config
    }

    pub fn now(&self) -> Timestamp {
        self.shared.config.clock.now()
    }

    /// Started and not shut down (whatever the writer's health).
    pub fn is_running(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst)
    }

    /// Recovered, running, and the writer is healthy.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst) && self.shared.store.is_healthy()
    }

    /// The outcomes of the UTC day `at` falls in (today's or yesterday's;
    /// older days are not kept).
    pub fn day(&self, at: Timestamp) -> DaySnapshot {
        self.shared.metrics.day(day_of(at))
    }

    pub fn metrics(&self) -> CoreMetricsSnapshot {
        let mut m = self.shared.metrics.snapshot();
        m.catalog_reloads = self.shared.catalog.reloads();
        m
    }

    /// Payment deadlines armed now, over every shard.
    pub fn armed_deadlines(&self) -> usize {
        self.shards().iter().map(|s| s.state.armed()).sum()
    }

    /// Stops serving, stops the shards and closes the store (flushing the
    /// writer and writing everything behind).
    pub fn shutdown(&self) -> Result<(), CoreError> {
        self.shared.ready.store(false, Ordering::SeqCst);
        for arbiter in lock(&self.shared.arbiters).drain(..) {
            arbiter.stop();
        }
        self.shared.store.shutdown()?;
        Ok(())
    }

    // ----- ids -----

    /// `POST /v1/order-ids`: a new, unique, time-ordered id for `user`.
    pub fn next_order_id(&self, user: &UserId) -> Result<OrderId, CoreError> {
        let (at, seq) = lock(&self.shared.ids).next(self.now());
        Ok(OrderId::generate(at, self.shared.config.node, seq, user)?)
    }

    // ----- catalog and coupons -----

    /// `PUT /v1/skus/{sku_code}`: sets the details and the total stock.
    pub async fn upsert_sku(
        &self,
        meta: &CommandMeta,
        details: SkuDetails,
        stock: i64,
    ) -> Result<Sku, CoreError> {
        let code = details.sku_code.clone();
        self.catalog_change(meta, Some(&code), None, |sku, _| {
            Ok(decide_upsert_sku(sku, details, stock)?)
        })
        .await?;
        self.sku(&code)?
            .ok_or_else(|| not_found(ErrorCode::PRODUCT_SKU_NOT_FOUND, "SKU", &code))
    }

    /// `POST /v1/skus/{sku_code}/stock`: adds `delta` to the available stock.
    pub async fn add_stock(
        &self,
        meta: &CommandMeta,
        code: &SkuCode,
        delta: i64,
    ) -> Result<Sku, CoreError> {
        self.catalog_change(meta, Some(code), None, |sku, _| {
            let sku =
                sku.ok_or_else(|| not_found(ErrorCode::PRODUCT_SKU_NOT_FOUND, "SKU", code))?;
            Ok(decide_stock_delta(sku, delta)?)
        })
        .await?;
        self.sku(code)?
            .ok_or_else(|| not_found(ErrorCode::PRODUCT_SKU_NOT_FOUND, "SKU", code))
    }

    /// `PUT /v1/coupons/{coupon_id}`: issues a coupon to a user.
    pub async fn issue_coupon(
        &self,
        meta: &CommandMeta,
        details: CouponDetails,
    ) -> Result<Coupon, CoreError> {
        let id = details.coupon_id.clone();
        self.catalog_change(meta, None, Some(&id), |_, coupon| {
            Ok(decide_issue_coupon(coupon, details)?)
        })
        .await?;
        self.coupon(&id)?
            .ok_or_else(|| not_found(ErrorCode::USER_COUPON_NOT_EXIST, "coupon", &id))
    }

    async fn catalog_change(
        &self,
        meta: &CommandMeta,
        sku: Option<&SkuCode>,
        coupon: Option<&CouponId>,
        decide: impl FnOnce(
            Option<&Sku>,
            Option<&Coupon>,
        ) -> Result<Vec<ordercore_domain::EventBody>, CoreError>,
    ) -> Result<(), CoreError> {
        self.check_ready()?;
        let context = EventContext {
            at: self.now(),
            actor: meta.actor.clone(),
            request_id: meta.request_id.clone(),
            reason: meta.reason.clone(),
            version: 0,
        };
        let ticket = self.shared.catalog.change(
            &self.shared.store,
            CATALOG_SHARD,
            sku,
            coupon,
            |s, c| Ok(context.events(decide(s, c)?)),
        )?;
        match ticket {
            Some(ticket) => wait(ticket).await,
            None => Ok(()),
        }
    }

    /// A SKU as last acknowledged.
    pub fn sku(&self, code: &SkuCode) -> Result<Option<Sku>, CoreError> {
        Ok(self.shared.store.sku(code)?)
    }

    /// Every SKU as last acknowledged.
    pub fn skus(&self) -> Result<Vec<Sku>, CoreError> {
        Ok(self.shared.store.all_skus()?)
    }

    /// A coupon as last acknowledged.
    pub fn coupon(&self, id: &CouponId) -> Result<Option<Coupon>, CoreError> {
        Ok(self.shared.store.coupon(id)?)
    }

    // ----- orders -----

    /// `POST /v1/orders/price`: what an order of these lines must pay now.
    pub fn price(
        &self,
        user: &UserId,
        items: &[(SkuCode, Quantity)],
        coupon: Option<&CouponId>,
    ) -> Result<Quote, CoreError> {
        let codes: Vec<SkuCode> = items.iter().map(|(c, _)| c.clone()).collect();
        let skus = self.shared.catalog.skus(&codes);
        let found = coupon.and_then(|id| self.shared.catalog.coupon(id));
        let coupon = coupon.map(|id| (id, found.as_ref()));
        Ok(quote(
            user,
            items,
            &skus,
            coupon,
            &self.shared.config.pricing,
            self.now(),
        )?)
    }

    /// `POST /v1/orders`: creates the order (or answers the existing one
    /// for a repeat of the same request).
    pub async fn create_order(
        &self,
        cmd: CreateOrder,
        meta: CommandMeta,
        idempotency: Option<Idempotency>,
    ) -> Result<Outcome, CoreError> {
        let family = cmd.order_id.family_id();
        let op = Op::Create {
            cmd: Box::new(cmd),
            meta,
            idempotency,
        };
        self.route(family, op).await
    }

    /// Runs any command on an existing family (or after-sale), routed by
    /// the id it names.
    pub async fn execute(&self, cmd: Command, opts: WriteOptions) -> Result<Outcome, CoreError> {
        let family = target(&cmd.action).ok_or_else(|| {
            CoreError::Domain(DomainError::invalid(
                ErrorCode::INVALID_REQUEST,
                "action",
                "creation goes through create_order",
            ))
        })?;
        self.route(
            family,
            Op::Command {
                cmd: Box::new(cmd),
                opts,
            },
        )
        .await
    }

    /// `POST /v1/orders/{id}/prepay`.
    pub async fn prepay(
        &self,
        meta: CommandMeta,
        order_id: OrderId,
        pay_type: PayType,
        pay_amount: Money,
        opts: WriteOptions,
    ) -> Result<Outcome, CoreError> {
        let action = Action::PrePay {
            order_id,
            pay_type,
            pay_amount,
        };
        self.execute(Command { meta, action }, opts).await
    }

    /// `POST /v1/payments/callback`.
    #[allow(clippy::too_many_arguments)]
    pub async fn pay_callback(
        &self,
        meta: CommandMeta,
        order_id: OrderId,
        out_trade_no: OutTradeNo,
        pay_type: PayType,
        pay_amount: Money,
        trade_no: TradeNo,
        paid_at: Timestamp,
        opts: WriteOptions,
    ) -> Result<Outcome, CoreError> {
        let action = Action::PayCallback {
            order_id,
            out_trade_no,
            pay_type,
            pay_amount,
            trade_no,
            paid_at,
        };
        self.execute(Command { meta, action }, opts).await
    }

    /// `POST /v1/orders/{id}/cancel`.
    pub async fn cancel(
        &self,
        meta: CommandMeta,
        order_id: OrderId,
        cancel_type: CancelType,
        opts: WriteOptions,
    ) -> Result<Outcome, CoreError> {
        let action = Action::Cancel {
            order_id,
            cancel_type,
        };
        self.execute(Command { meta, action }, opts).await
    }

    /// `PUT /v1/orders/{id}/delivery-address`.
    pub async fn adjust_address(
        &self,
        meta: CommandMeta,
        order_id: OrderId,
        address: Address,
        opts: WriteOptions,
    ) -> Result<Outcome, CoreError> {
        let action = Action::AdjustAddress { order_id, address };
        self.execute(Command { meta, action }, opts).await
    }

    /// `POST /v1/orders/{id}/fulfillment`.
    pub async fn fulfill(
        &self,
        meta: CommandMeta,
        order_id: OrderId,
        event: FulfillmentEvent,
        logistics_code: Option<String>,
        operator: Option<String>,
        opts: WriteOptions,
    ) -> Result<Outcome, CoreError> {
        let action = Action::Fulfill {
            order_id,
            event,
            logistics_code,
            operator,
        };
        self.execute(Command { meta, action }, opts).await
    }

    /// `POST /v1/orders/{id}/notes`.
    pub async fn add_note(
        &self,
        meta: CommandMeta,
        order_id: OrderId,
        text: String,
        opts: WriteOptions,
    ) -> Result<Outcome, CoreError> {
        let action = Action::AddNote { order_id, text };
        self.execute(Command { meta, action }, opts).await
    }

    /// `POST /v1/orders/{id}/lack`.
    pub async fn lack(
        &self,
        meta: CommandMeta,
        order_id: OrderId,
        items: Vec<(SkuCode, Quantity)>,
        opts: WriteOptions,
    ) -> Result<Outcome, CoreError> {
        let action = Action::Lack { order_id, items };
        self.execute(Command { meta, action }, opts).await
    }

    /// `POST /v1/after-sales/{id}/review`.
    pub async fn review_after_sale(
        &self,
        meta: CommandMeta,
        after_sale_id: AfterSaleId,
        approved: bool,
        remark: Option<String>,
        opts: WriteOptions,
    ) -> Result<Outcome, CoreError> {
        let action = Action::ReviewAfterSale {
            after_sale_id,
            approved,
            remark,
        };
        self.execute(Command { meta, action }, opts).await
    }

    /// `POST /v1/refunds/callback`.
    pub async fn refund_callback(
        &self,
        meta: CommandMeta,
        after_sale_id: AfterSaleId,
        refund_amount: Money,
        success: bool,
        refunded_at: Timestamp,
        opts: WriteOptions,
    ) -> Result<Outcome, CoreError> {
        let action = Action::RefundResult {
            after_sale_id,
            refund_amount,
            success,
            refunded_at,
        };
        self.execute(Command { meta, action }, opts).await
    }

    /// `POST /v1/orders/remove`: checks every id first and removes only if
    /// all qualify (their states are final, so the check stays true).
    ///
    /// With a key, each family the batch removes records it with the
    /// batch's reply, in the same journal unit as its removal. A retry
    /// finds the key in the families and answers that reply again; after a
    /// batch that stopped part-way (a failed write), the retry removes the
    /// rest under the same key and answers the reply the first part
    /// recorded (not as a replay: it changed state).
    pub async fn remove_orders(
        &self,
        meta: CommandMeta,
        ids: &[OrderId],
        key: Option<BatchKey>,
    ) -> Result<Removed, CoreError> {
        let remove = |order_id: OrderId| Command {
            meta: meta.clone(),
            action: Action::Remove { order_id },
        };
        let fixed = |key: &BatchKey, status: u16, body: String| Idempotency {
            key: key.key.clone(),
            request_hash: key.request_hash,
            render: Box::new(move |_, _| (status, body.clone())),
        };
        // The check: the key first (a dry run answers a recorded one's
        // reply), then the rules.
        let mut recorded: Option<(u16, String)> = None;
        let mut removing = std::collections::BTreeSet::new();
        let mut todo = Vec::with_capacity(ids.len());
        for id in ids {
            let check = WriteOptions {
                dry_run: true,
                idempotency: key.as_ref().map(|k| fixed(k, 0, String::new())),
                ..WriteOptions::default()
            };
            match self.execute(remove(*id), check).await? {
                Outcome::Replayed { status, body } => {
                    recorded.get_or_insert((status, body));
                }
                Outcome::DryRun { family, .. } => {
                    if !family.removed {
                        removing.insert(family.order_id);
                    }
                    todo.push(*id);
                }
                Outcome::Applied { .. } => todo.push(*id),
            }
        }
        let Some(key) = key else {
            let mut removed = 0;
            for id in todo {
                if let Outcome::Applied { unit: Some(_), .. } =
                    self.execute(remove(id), WriteOptions::default()).await?
                {
                    removed += 1;
                }
            }
            return Ok(Removed::Count(removed));
        };
        let mut replayed = recorded.is_some();
        let (mut status, mut body) = recorded.unwrap_or_else(|| (key.render)(removing.len()));
        let mut changed = false;
        for id in todo {
            let opts = WriteOptions {
                idempotency: Some(fixed(&key, status, body.clone())),
                ..WriteOptions::default()
            };
            match self.execute(remove(id), opts).await? {
                // A family already removed records only the key.
                Outcome::Applied {
                    unit: Some(unit), ..
                } if unit.events.iter().any(|e| e.body.is_public()) => {
                    changed = true;
                }
                // The same request, racing this one, removed it first: its
                // reply is the one recorded.
                Outcome::Replayed {
                    status: theirs,
                    body: recorded,
                } if !replayed => {
                    (status, body, replayed) = (theirs, recorded, true);
                }
                _ => {}
            }
        }
        Ok(Removed::Keyed {
            status,
            body,
            // Finishing a batch cut short changes state: not a replay,
            // though the reply is the one recorded.
            replayed: replayed && !changed,
        })
    }

    /// `GET /v1/orders/{id}` (any id of the family): the live actor's state
    /// when it is active (answered once nothing is in flight), else the
    /// stored one. Reads never activate an actor.
    pub async fn order(&self, id: &OrderId) -> Result<Arc<OrderFamily>, CoreError> {
        let family = id.family_id();
        let stored = if self.shared.registry.contains_key(&family) {
            if let Ok(Outcome::Applied { family, .. }) = self.route_live(family, Op::Get).await {
                return Ok(family);
            }
            // A live actor that could not answer: its acknowledged changes
            // may not be in the view yet, so wait for all of them.
            self.shared.store.family(&family)?
        } else {
            // Retired actors' changes are in the view up to the watermark.
            let watermark = self.shared.retired_watermark.load(Ordering::SeqCst);
            self.shared.store.family_after(&family, watermark)?
        };
        stored.ok_or_else(|| not_found(ErrorCode::ORDER_NOT_FOUND, "order", id))
    }

    /// The stored family of `id` (any id of the family), as the listings
    /// read it; `None` for an unknown one.
    pub fn listed_family(&self, id: &OrderId) -> Result<Option<Arc<OrderFamily>>, CoreError> {
        Ok(self.shared.store.family(&id.family_id())?)
    }

    /// A user's families, newest first, older than `before`.
    pub fn user_orders(
        &self,
        user: &UserId,
        before: Option<&OrderId>,
        limit: usize,
    ) -> Result<Vec<Arc<OrderFamily>>, CoreError> {
        let store = &self.shared.store;
        let mut out = Vec::new();
        for id in store.user_orders(user, before, limit)? {
            if let Some(f) = store.family(&id)? {
                out.push(f);
            }
        }
        Ok(out)
    }

    /// Families newest first, older than `before`, that `keep` accepts (the
    /// admin listing); answers the page and where to continue
    /// ([`Store::scan_families`](ordercore_storage::Store::scan_families)).
    pub fn scan_orders(
        &self,
        before: Option<&OrderId>,
        limit: usize,
        keep: &mut dyn FnMut(&OrderFamily) -> std::ops::ControlFlow<(), bool>,
    ) -> Result<(Vec<Arc<OrderFamily>>, Option<OrderId>), CoreError> {
        Ok(self.shared.store.scan_families(before, limit, keep)?)
    }

    /// The outbox: journalled events after `after`, and where to continue.
    /// A cursor before what the journal still holds is refused: answering
    /// the later events would skip the trimmed ones without a word.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<(Vec<Event>, u64), CoreError> {
        let page = self.shared.store.events_after(after, limit)?;
        // Checked after the read: a trim before or while it read may have
        // taken the first events it should have found, and the first held
        // sequence only moves forward, so this sees every such trim.
        self.check_events_cursor(after)?;
        Ok(page)
    }

    /// Refuses an outbox cursor before what the journal still holds
    /// (`CURSOR_INVALID`, naming the sequence to resume from). Cursor 0
    /// is the start of what is held: a new consumer's first read.
    pub fn check_events_cursor(&self, after: u64) -> Result<(), CoreError> {
        // Past the last acknowledged event: not a cursor this journal handed
        // out (a store restored from an older copy, or a relaxed store that
        // lost its last changes); reading on would skip the events that
        // take those numbers next without a word.
        let last = self.shared.store.last_seq();
        if after > last {
            return Err(DomainError::invalid(
                ErrorCode::CURSOR_INVALID,
                "after",
                format!("no event {after} was ever acknowledged here; the last is {last}"),
            )
            .into());
        }
        let first = self.shared.store.first_held_seq()?;
        if after > 0 && after.saturating_add(1) < first {
            return Err(DomainError::invalid(
                ErrorCode::CURSOR_INVALID,
                "after",
                format!(
                    "the events after {after} are no longer held (retention); the oldest held is {first}: resume with after={}",
                    first - 1
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Passivates every live order actor idle for at least `idle_for` with
    /// nothing in flight (their state is durable); answers how many were
    /// asked. The actors' own timers do this after `passivate_after`.
    pub fn passivate_idle(&self, idle_for: std::time::Duration) -> usize {
        let addrs: Vec<Addr<OrderActor>> = self
            .shared
            .registry
            .iter()
            .map(|entry| entry.value().clone())
            .collect();
        for addr in &addrs {
            addr.do_send(order::Passivate { idle_for });
        }
        addrs.len()
    }

    /// Asks every live order actor idle for at least `idle_for` with
    /// nothing in flight to keep only its family's compact state; answers
    /// how many were asked. The actors' own timers do this after
    /// `compact_after`.
    pub fn compact_idle(&self, idle_for: std::time::Duration) -> usize {
        let addrs: Vec<Addr<OrderActor>> = self
            .shared
            .registry
            .iter()
            .map(|entry| entry.value().clone())
            .collect();
        for addr in &addrs {
            addr.do_send(order::Compact { idle_for });
        }
        addrs.len()
    }

    /// Fires every payment deadline due now on every shard (the shards'
    /// timers do the same every `DEADLINE_TICK`); answers how many fired.
    pub async fn fire_due_deadlines(&self) -> usize {
        let mut fired = 0;
        for shard in self.shards() {
            fired += shard.addr.send(Tick).await.unwrap_or(0);
        }
        fired
    }

    // ----- routing -----

    fn check_ready(&self) -> Result<(), CoreError> {
        if !self.shared.ready.load(Ordering::SeqCst) {
            return Err(CoreError::not_ready("the core is not running"));
        }
        Ok(())
    }

    async fn route(&self, family: OrderId, mut op: Op) -> Result<Outcome, CoreError> {
        self.check_ready()?;
        for _ in 0..config::ROUTE_ATTEMPTS {
            let (reply, answer) = oneshot::channel();
            let exec = Exec { op, reply };
            let live = self.shared.registry.get(&family).map(|a| a.clone());
            let metrics = &self.shared.metrics;
            let sent = match live {
                Some(addr) => {
                    metrics.mailbox_backlog.fetch_add(1, Ordering::Relaxed);
                    addr.try_send(exec).map_err(|e| {
                        metrics.mailbox_backlog.fetch_sub(1, Ordering::Relaxed);
                        match e {
                            SendError::Full(exec) => (true, exec),
                            SendError::Closed(exec) => {
                                // A stopped actor's entry: drop it, so the
                                // next attempt goes to the shard, which
                                // activates the family again.
                                self.shared
                                    .registry
                                    .remove_if(&family, |_, a| !a.connected());
                                (false, exec)
                            }
                        }
                    })
                }
                None => {
                    let shard = self
                        .shard_of(&family)
                        .ok_or_else(|| CoreError::not_ready("no shards"))?;
                    shard
                        .addr
                        .try_send(Route { family, exec })
                        .map_err(|e| match e {
                            SendError::Full(route) => (true, route.exec),
                            SendError::Closed(route) => (false, route.exec),
                        })
                }
            };
            if let Err((full, exec)) = sent {
                if full {
                    metrics::bump(&metrics.overloaded);
                    return Err(CoreError::Overloaded("mailbox"));
                }
                op = exec.op;
                metrics::bump(&metrics.reroutes);
                continue;
            }
            match answer.await {
                Ok(Routed::Done(result)) => return result,
                Ok(Routed::Retry(back)) => {
                    metrics::bump(&metrics.reroutes);
                    op = back;
                }
                // Dropped unanswered: the actor panicked (and restarted) or
                // stopped while the message waited.
                Err(_) => {
                    return Err(CoreError::not_ready(
                        "the order's actor restarted; retry the request",
                    ))
                }
            }
        }
        Err(CoreError::not_ready("the order's actor kept moving; retry"))
    }

    /// Sends to the live actor only (no activation); an error when none.
    async fn route_live(&self, family: OrderId, op: Op) -> Result<Outcome, CoreError> {
        let addr = self
            .shared
            .registry
            .get(&family)
            .map(|a| a.clone())
            .ok_or_else(|| CoreError::not_ready("not live"))?;
        let (reply, answer) = oneshot::channel();
        self.shared
            .metrics
            .mailbox_backlog
            .fetch_add(1, Ordering::Relaxed);
        if addr.try_send(Exec { op, reply }).is_err() {
            self.shared
                .metrics
                .mailbox_backlog
                .fetch_sub(1, Ordering::Relaxed);
            return Err(CoreError::not_ready("not live"));
        }
        match answer.await {
            Ok(Routed::Done(result)) => result,
            _ => Err(CoreError::not_ready("not live")),
        }
    }

    /// Test hook: makes the family's actor panic while handling a message.
    #[cfg(test)]
    pub(crate) async fn inject_panic(&self, family: OrderId) -> Result<Outcome, CoreError> {
        self.route(family, Op::Panic).await
    }
}

/// The family a command acts on.
fn target(action: &Action) -> Option<OrderId> {
    let id = match action {
        Action::Create { .. } => return None,
        Action::PrePay { order_id, .. }
        | Action::PayCallback { order_id, .. }
        | Action::Cancel { order_id, .. }
        | Action::Deadline { order_id }
        | Action::AdjustAddress { order_id, .. }
        | Action::Remove { order_id }
        | Action::Fulfill { order_id, .. }
        | Action::ApplyAfterSale { order_id, .. }
        | Action::Lack { order_id, .. }
        | Action::AddNote { order_id, .. } => order_id.family_id(),
        Action::ReviewAfterSale { after_sale_id, .. }
        | Action::RevokeAfterSale { after_sale_id }
        | Action::RefundResult { after_sale_id, .. }
        | Action::RetryRefund { after_sale_id } => after_sale_id.family_id(),
    };
    Some(id)
}

async fn wait(ticket: Ticket) -> Result<(), CoreError> {
    ticket
        .done
        .await
        .unwrap_or(Err(StorageError::Closed))
        .map_err(CoreError::from)
}

fn not_found(code: ErrorCode, what: &'static str, id: impl std::fmt::Display) -> CoreError {
    CoreError::Domain(DomainError::not_found(code, what, id))
}

/// Locks a mutex; a panic while one was held is a defect, so go on with
/// the data as it is rather than cascading it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
