//! The order actor: one per active order family. Every command for the
//! family, its sub-orders and its after-sales goes through its mailbox, so
//! payment callbacks, cancels, deadlines and fulfillment never race.
//!
//! A change is decided with the domain, submitted to the writer, applied in
//! memory at once, and answered when the writer reports it durable — by the
//! writer itself, on its thread, so the reply does not wait for this
//! actor's shard thread to be scheduled; the mailbox moves on meanwhile
//! (the writer commits in order, so an answered state implies every earlier
//! state is durable). A family has at most one change in flight: commands
//! that arrive meanwhile wait, and reads are held until it lands, so a
//! caller never sees a state that is not yet durable. The actor itself
//! observes the outcome lazily — at its next message or idle check — unless
//! something waits for it. When a commit fails, the caller gets the
//! error and the actor reloads the family from storage before it serves
//! anything else. A panic while handling a message is caught here: the
//! request fails with `NOT_READY` and the actor restarts from storage
//! (supervision without losing the mailbox).

use crate::error::CoreError;
use crate::metrics::bump;
use crate::shard::ShardState;
use crate::Shared;
use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use ordercore_domain::codes::OrderStatus;
use ordercore_domain::family::IdempotencyEntry;
use ordercore_domain::ids::IdempotencyKey;
use ordercore_domain::{
    decide, decide_create, Action, Command, CommandMeta, CreateContext, CreateOrder, DomainError,
    DryRun, ErrorCode, Event, EventBody, IdempotencyCheck, OrderFamily, OrderId, Timestamp,
};
use ordercore_storage::{codec, Completion, StorageError, Ticket, Unit};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a retired (passivated) actor keeps answering `Retry` to
/// messages that were already on their way to it before it stops.
const RETIRE_GRACE: Duration = Duration::from_secs(1);
/// Shortest wait between two idle checks of one actor (10 ms): a due
/// check of a busy actor does not spin.
const IDLE_CHECK_MIN: Duration = Duration::from_millis(10);
/// Commands one family holds back while a change of it is in flight (the
/// same bound as its mailbox).
const DEFERRED_MAX: usize = crate::config::ORDER_MAILBOX_CAPACITY;

/// Renders the response a successful change records for its
/// `Idempotency-Key`: status and body, from the family after the change.
pub type Render = Box<dyn Fn(&OrderFamily, &[Arc<Event>]) -> (u16, String) + Send>;

/// An `Idempotency-Key` with the hash of its request.
pub struct Idempotency {
    pub key: IdempotencyKey,
    /// Hash of method, path and body.
    pub request_hash: u64,
    pub render: Render,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("key", &self.key)
            .field("request_hash", &self.request_hash)
            .finish_non_exhaustive()
    }
}

/// How a write is carried out.
#[derive(Debug, Default)]
pub struct WriteOptions {
    /// Decide only: answer what would happen, persist nothing.
    pub dry_run: bool,
    /// Checked first. With a dry run too: a recorded key answers its
    /// replay, a new one is not recorded (the batch remove checks its key
    /// with its dry runs; the edge sends none with a client's dry run,
    /// which API.md says ignores the key).
    pub idempotency: Option<Idempotency>,
    /// The reply shows what an idle actor's compact family leaves on disk
    /// (the detail's status log and product snapshots): read the whole
    /// family back first. A recorded `Idempotency-Key` reply implies it.
    pub whole: bool,
}

/// What a family's actor is asked.
#[derive(Debug)]
pub(crate) enum Op {
    Create {
        cmd: Box<CreateOrder>,
        meta: CommandMeta,
        idempotency: Option<Idempotency>,
    },
    Command {
        cmd: Box<Command>,
        opts: WriteOptions,
    },
    Get,
    /// Fault injection for the supervision tests.
    #[cfg(test)]
    Panic,
}

impl Op {
    /// The refusal when the family does not exist.
    pub(crate) fn not_found(&self, family: OrderId) -> DomainError {
        let after_sale = match self {
            Op::Command { cmd, .. } => match &cmd.action {
                Action::ReviewAfterSale { after_sale_id, .. }
                | Action::RevokeAfterSale { after_sale_id }
                | Action::RefundResult { after_sale_id, .. }
                | Action::RetryRefund { after_sale_id } => Some(*after_sale_id),
                _ => None,
            },
            _ => None,
        };
        match after_sale {
            Some(id) => DomainError::not_found(ErrorCode::AFTER_SALE_NOT_FOUND, "after-sale", id),
            None => DomainError::not_found(ErrorCode::ORDER_NOT_FOUND, "order", family),
        }
    }
}

/// What a change or read produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The family after the change (durable), and the change's events with
    /// their journal positions (`None` when nothing changed or for a read).
    Applied {
        family: Arc<OrderFamily>,
        unit: Option<Arc<Unit>>,
    },
    /// The recorded reply of an `Idempotency-Key` seen before.
    Replayed { status: u16, body: String },
    /// What the command would do.
    DryRun {
        family: Arc<OrderFamily>,
        dry_run: DryRun,
    },
}

/// An actor's answer: done, or "I have passivated: route this again".
#[derive(Debug)]
pub(crate) enum Routed {
    Done(Result<Outcome, CoreError>),
    Retry(Op),
}

pub(crate) type Reply = oneshot::Sender<Routed>;

/// A message for an order actor.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub(crate) struct Exec {
    pub op: Op,
    pub reply: Reply,
}

impl Exec {
    pub(crate) fn answer(self, result: Result<Outcome, CoreError>) {
        let _ = self.reply.send(Routed::Done(result));
    }
}

/// A change in flight, as its actor keeps it: only its position while the
/// store answers the caller (the unit's events, stock changes included,
/// are not held for as long as the actor takes to observe it).
#[derive(Debug)]
struct InFlight {
    last_seq: u64,
    /// The caller and the change, when the store does not answer it (see
    /// [`OrderActor::track`]).
    reply: Option<(Reply, Arc<Unit>)>,
}

#[derive(Debug)]
pub(crate) struct OrderActor {
    id: OrderId,
    shared: Arc<Shared>,
    shard: Arc<ShardState>,
    family: Option<Arc<OrderFamily>>,
    /// An idle actor's compact family, encoded (a few hundred bytes instead
    /// of a kilobyte and more of values), with its count of edits, which
    /// the encoding skips (`OrderFamily::compact_edits`): `family` is
    /// `None` meanwhile, and the next message decodes it.
    packed: Option<(Box<[u8]>, usize)>,
    /// The store epoch the family was loaded in; changes are submitted with
    /// it, so one decided on state from before a failed write is refused.
    epoch: u64,
    /// Changes submitted whose outcome this actor has not observed yet
    /// (at most one: commands wait while one is in flight).
    pending: u32,
    /// The change in flight: its completion, and what observing it does.
    in_flight: Option<(Completion, InFlight)>,
    /// A change failed or a handler panicked: reload before serving.
    reload_needed: bool,
    /// Replies held until nothing is in flight: (change's unit, reply).
    waiting: Vec<(Option<Arc<Unit>>, Reply)>,
    /// Commands that arrived while a change was in flight: they are decided
    /// once it is durable, so no answer — a refusal, a dry run, a replayed
    /// `Idempotency-Key` — ever rests on a change that could still fail.
    deferred: std::collections::VecDeque<Exec>,
    /// The payment deadline armed in the shard, if any.
    armed: Option<Timestamp>,
    last_active: Instant,
    /// The pending run of [`OrderActor::check_idle`].
    idle_timer: Option<actix::SpawnHandle>,
    retired: bool,
    /// The journal position of the family's last durable change.
    last_seq: u64,
}

impl OrderActor {
    pub(crate) fn new(
        id: OrderId,
        family: Option<Arc<OrderFamily>>,
        epoch: u64,
        shared: Arc<Shared>,
        shard: Arc<ShardState>,
    ) -> OrderActor {
        let mut actor = OrderActor {
            id,
            shared,
            shard,
            family,
            packed: None,
            epoch,
            pending: 0,
            in_flight: None,
            reload_needed: false,
            waiting: Vec::new(),
            deferred: std::collections::VecDeque::new(),
            armed: None,
            last_active: Instant::now(),
            idle_timer: None,
            retired: false,
            last_seq: 0,
        };
        actor.sync_deadline();
        actor
    }

    /// Keeps the shard's reminder in step with the family: armed while the
    /// family is CREATED, removed otherwise.
    fn sync_deadline(&mut self) {
        let wanted = self
            .family
            .as_ref()
            .filter(|f| f.status == OrderStatus::CREATED)
            .map(|f| f.expire_at);
        if wanted != self.armed {
            if let Some(at) = self.armed {
                self.shard.disarm(at, self.id);
            }
            if let Some(at) = wanted {
                self.shard.arm(at, self.id);
            }
            self.armed = wanted;
        }
    }

    fn reload(&mut self) -> Result<(), CoreError> {
        // The epoch first: a failure after this read makes our changes stale.
        let epoch = self.shared.store.epoch();
        let family = self.shared.store.family(&self.id)?;
        self.family = family;
        self.packed = None;
        self.epoch = epoch;
        self.reload_needed = false;
        self.sync_deadline();
        Ok(())
    }

    /// Reloads the state a failed change left, when one is owed and
    /// nothing is in flight; a reload that fails is tried again at the next
    /// idle check or message.
    fn reload_owed(&mut self) {
        if !self.reload_needed || self.pending > 0 {
            return;
        }
        if let Err(e) = self.reload() {
            tracing::warn!(order_id = %self.id, error = %e, "cannot reload after a failed write; trying again later");
        }
    }

    /// Reads the whole family back when the actor keeps only its compact
    /// state: from the write-behind view or the family's row, as of the
    /// actor's last durable change (nothing is in flight here).
    fn make_whole(&mut self) -> Result<(), CoreError> {
        let Some(version) = self
            .family
            .as_ref()
            .filter(|f| f.compact)
            .map(|f| f.version)
        else {
            return Ok(());
        };
        bump(&self.shared.metrics.rehydrations);
        match self.shared.store.family_after(&self.id, self.last_seq)? {
            Some(whole) if whole.version == version => {
                self.family = Some(whole);
                Ok(())
            }
            stored => {
                // Memory and storage disagree: a defect. Storage holds
                // what was acknowledged, so it wins.
                tracing::error!(
                    order_id = %self.id,
                    memory = version,
                    stored = stored.map(|f| f.version),
                    "compact family and its stored row disagree; reloading"
                );
                self.reload()
            }
        }
    }

    /// Keeps only the family's compact state, encoded (idle, nothing in
    /// flight).
    fn compact_family(&mut self) {
        let Some(family) = self.family.as_ref() else {
            return;
        };
        let compact = if family.compact {
            Arc::clone(family)
        } else {
            Arc::new(family.compact())
        };
        match codec::encode(&*compact) {
            Ok(bytes) => {
                self.packed = Some((bytes.into_boxed_slice(), compact.edits()));
                self.family = None;
            }
            // Encoding plain values cannot fail; if it did, stay decoded.
            Err(_) => self.family = Some(compact),
        }
        bump(&self.shared.metrics.compactions);
    }

    /// Decodes the family an idle actor packed.
    fn unpack(&mut self) -> Result<(), CoreError> {
        let Some((bytes, edits)) = self.packed.take() else {
            return Ok(());
        };
        match codec::decode::<OrderFamily>(&bytes, "packed family") {
            Ok(mut family) => {
                family.compact = true;
                family.compact_edits = edits;
                self.family = Some(Arc::new(family));
                Ok(())
            }
            Err(e) => {
                tracing::error!(order_id = %self.id, error = %e, "cannot decode a packed family; reloading");
                self.reload()
            }
        }
    }

    /// Nothing in flight, answered or waiting, and no reload owed (an
    /// actor that owes one must not compact or passivate the state a
    /// failed change left, its payment deadline among it).
    fn quiet(&self) -> bool {
        self.pending == 0
            && self.waiting.is_empty()
            && self.deferred.is_empty()
            && !self.reload_needed
    }

    /// Makes the state current before a message is served.
    fn ensure_fresh(&mut self) -> Result<(), CoreError> {
        if self.reload_needed || self.epoch != self.shared.store.epoch() {
            if self.pending > 0 {
                // Changes of the failed epoch are still being answered.
                return Err(CoreError::StorageUnavailable(
                    "a write of this order failed; retry shortly".into(),
                ));
            }
            self.reload()?;
        }
        Ok(())
    }

    fn dispatch(&mut self, exec: Exec, ctx: &mut Context<Self>) {
        if self.packed.is_some() {
            // The idle timer was set for passivation: compact again sooner.
            self.arm_idle(self.shared.config.compact_after, ctx);
        }
        if let Err(e) = self.unpack().and_then(|()| self.ensure_fresh()) {
            return exec.answer(Err(e));
        }
        let Exec { op, reply } = exec;
        let whole = match &op {
            Op::Get => true,
            Op::Create { idempotency, .. } => idempotency.is_some(),
            Op::Command { opts, .. } => opts.whole || opts.idempotency.is_some(),
            #[cfg(test)]
            Op::Panic => false,
        };
        if whole {
            if let Err(e) = self.make_whole() {
                let _ = reply.send(Routed::Done(Err(e)));
                return;
            }
        }
        match op {
            Op::Get => self.hold(None, reply),
            Op::Create {
                cmd,
                meta,
                idempotency,
            } => {
                if self.family.is_some() {
                    let action = Action::Create {
                        fingerprint: cmd.fingerprint,
                    };
                    let opts = WriteOptions {
                        dry_run: false,
                        idempotency,
                        whole: false,
                    };
                    self.command(Command { meta, action }, opts, reply, ctx);
                } else {
                    self.create(*cmd, meta, idempotency, reply, ctx);
                }
            }
            Op::Command { cmd, opts } => self.command(*cmd, opts, reply, ctx),
            #[cfg(test)]
            Op::Panic => {
                drop(reply);
                panic!("injected fault in order actor {}", self.id);
            }
        }
    }

    fn create(
        &mut self,
        cmd: CreateOrder,
        meta: CommandMeta,
        idempotency: Option<Idempotency>,
        reply: Reply,
        ctx: &mut Context<Self>,
    ) {
        let shared = Arc::clone(&self.shared);
        let config = &shared.config;
        let now = config.clock.now();
        let recent = self.shard.recent_orders(&cmd.user_id, now);
        let codes: Vec<_> = cmd.items.iter().map(|(code, _)| code.clone()).collect();
        let result = shared.catalog.reserve(
            &shared.store,
            self.epoch,
            self.shard.index,
            &codes,
            cmd.coupon_id.as_ref(),
            |skus, coupon| {
                let context = CreateContext {
                    skus,
                    coupon,
                    pricing: &config.pricing,
                    risk: &config.risk,
                    user_orders_last_minute: recent,
                    pay_timeout_ms: config.pay_timeout_ms(),
                };
                let mut events = decide_create(&cmd, &meta, &context, now)?;
                if let Some(idem) = &idempotency {
                    // The reply to record is rendered from the family the
                    // creation makes.
                    let family = provisional(&events)
                        .ok_or_else(|| CoreError::not_ready("creation decided no order"))?;
                    events.push(record(&family, &events, &meta, idem, now));
                }
                Ok((events, ()))
            },
        );
        match result {
            Ok((ticket, ())) => {
                self.shard.record_order(&cmd.user_id, now);
                self.apply_submitted(|actor| {
                    // Built from the events as the journal stamped them, so
                    // the history carries their positions.
                    match stamped(&ticket.unit.events) {
                        Some(family) => {
                            let family = Arc::new(family);
                            let _ = ticket.unit.family.set(Arc::clone(&family));
                            actor.family = Some(family);
                            actor.sync_deadline();
                        }
                        // Not a creation after all (a defect): answer from
                        // storage.
                        None => actor.reload_needed = true,
                    }
                });
                self.track(ticket, reply, ctx);
            }
            Err(e) => {
                let _ = reply.send(Routed::Done(Err(e)));
            }
        }
    }

    fn command(
        &mut self,
        mut cmd: Command,
        opts: WriteOptions,
        reply: Reply,
        ctx: &mut Context<Self>,
    ) {
        let Some(family) = self.family.as_ref() else {
            let e = Op::Command {
                cmd: Box::new(cmd),
                opts,
            }
            .not_found(self.id);
            let _ = reply.send(Routed::Done(Err(e.into())));
            return;
        };
        // Who may touch the family comes before anything it holds (its
        // idempotency keys included); every other rule, a removed order's
        // included, comes after the key (`decide`).
        if let Err(e) = ordercore_domain::check_owner(family, &cmd) {
            let _ = reply.send(Routed::Done(Err(e.into())));
            return;
        }
        let idempotency = match opts.idempotency {
            Some(idem) => {
                match family.check_idempotency(&cmd.meta.actor, &idem.key, idem.request_hash) {
                    Err(e) => {
                        let _ = reply.send(Routed::Done(Err(e.into())));
                        return;
                    }
                    Ok(IdempotencyCheck::Replay(entry)) => {
                        let (status, body) = (entry.status, entry.body.clone());
                        let _ = reply.send(Routed::Done(Ok(Outcome::Replayed { status, body })));
                        return;
                    }
                    Ok(IdempotencyCheck::New) => Some(idem),
                }
            }
            _ => None,
        };
        // `decide` reads the key from the command (a keyed change to the
        // address an order has is recorded, not a no-op); what the actor
        // records comes from the options, so they set it, and a caller of
        // the core cannot make the two disagree.
        cmd.meta.idempotency_key = idempotency.as_ref().map(|idem| idem.key.clone());
        let now = self.shared.config.clock.now();
        let mut events = match decide(family, &cmd, now) {
            Ok(events) => events,
            Err(e) => {
                let _ = reply.send(Routed::Done(Err(e.into())));
                return;
            }
        };
        if opts.dry_run {
            let dry_run = DryRun::of(family, &cmd.action, &events);
            let family = Arc::clone(family);
            let _ = reply.send(Routed::Done(Ok(Outcome::DryRun { family, dry_run })));
            return;
        }
        if events.is_empty() && idempotency.is_none() {
            // Accepted, nothing to change (a repeat of a recorded outcome).
            return self.hold(None, reply);
        }
        // With a key, even a success that changes nothing (the same review
        // decision or fulfillment step again) records its answer, so that
        // the key replays it (API.md: the recorded response, marked as a
        // replay) whatever the family does next.
        if let Some(idem) = &idempotency {
            let mut after = (**family).clone();
            for event in &events {
                after.apply(event);
            }
            events.push(record(&after, &events, &cmd.meta, idem, now));
        }
        let shared = Arc::clone(&self.shared);
        match shared
            .catalog
            .submit(&shared.store, self.epoch, self.shard.index, events)
        {
            Ok(ticket) => {
                self.apply_submitted(|actor| {
                    if let Some(family) = actor.family.as_mut() {
                        let state = Arc::make_mut(family);
                        for event in &ticket.unit.events {
                            state.apply_shared(event);
                        }
                        // The write-behind keeps this state instead of
                        // applying the events again (copy on write: the next
                        // change here clones it while the write-behind still
                        // holds it). A compact family is not one it can
                        // write: it applies the events to the whole family
                        // itself.
                        if !state.compact {
                            let _ = ticket.unit.family.set(Arc::clone(family));
                        }
                    }
                    actor.sync_deadline();
                });
                self.track(ticket, reply, ctx);
            }
            Err(e) => {
                let _ = reply.send(Routed::Done(Err(e)));
            }
        }
    }

    /// Applies a change just submitted to the actor's own state. The change
    /// is queued and will land whatever happens here, so a panic (a defect)
    /// must not lose track of it: the actor then tracks it without a state
    /// to answer from, and reloads once it has landed, not before.
    fn apply_submitted(&mut self, apply: impl FnOnce(&mut Self)) {
        let applied = std::panic::catch_unwind(AssertUnwindSafe(|| {
            #[cfg(test)]
            if self.shared.panic_after_submit.swap(false, Ordering::SeqCst) {
                panic!("injected fault after a submit in order actor {}", self.id);
            }
            apply(self);
        }));
        if applied.is_err() {
            tracing::error!(order_id = %self.id, "order actor panicked applying a submitted change; it reloads once the change lands");
            bump(&self.shared.metrics.restarts);
            self.reload_needed = true;
        }
    }

    /// Puts a submitted change in flight. Its caller is answered by the
    /// store the moment it is durable or failed; the actor observes the
    /// outcome later (see [`OrderActor::settle`]). Without a family to
    /// answer with (a creation that did not make one, a defect), the
    /// answer waits for the actor instead, which reloads first.
    fn track(&mut self, ticket: Ticket, reply: Reply, ctx: &mut Context<Self>) {
        self.pending += 1;
        let last_seq = ticket.unit.last_seq();
        let family = self.family.clone().filter(|_| !self.reload_needed);
        let reply = match family {
            Some(family) => {
                let shared = Arc::clone(&self.shared);
                let answered = Arc::clone(&ticket.unit);
                ticket.on_durable.set(Box::new(move |result| {
                    let answer = match result {
                        Ok(()) => {
                            count(&shared, &answered);
                            Ok(Outcome::Applied {
                                family,
                                unit: Some(answered),
                            })
                        }
                        Err(e) => Err(e.clone().into()),
                    };
                    let _ = reply.send(Routed::Done(answer));
                }));
                None
            }
            None => Some((reply, ticket.unit)),
        };
        self.in_flight = Some((ticket.done, InFlight { last_seq, reply }));
        self.watch(ctx);
    }

    /// Observes the change in flight if it has landed.
    fn settle(&mut self) {
        let Some((mut done, flight)) = self.in_flight.take() else {
            return;
        };
        match done.try_recv() {
            Ok(result) => self.observed(result, flight),
            Err(oneshot::error::TryRecvError::Empty) => self.in_flight = Some((done, flight)),
            Err(oneshot::error::TryRecvError::Closed) => {
                self.observed(Err(StorageError::Closed), flight);
            }
        }
    }

    /// Observes the change in flight as soon as it lands when something
    /// waits for it: a deferred command, a held reply, or the change's own
    /// caller when the store does not answer it.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        let caller_waits = self
            .in_flight
            .as_ref()
            .is_some_and(|(_, flight)| flight.reply.is_some());
        if self.deferred.is_empty() && self.waiting.is_empty() && !caller_waits {
            return;
        }
        let Some((done, flight)) = self.in_flight.take() else {
            return;
        };
        ctx.spawn(done.into_actor(self).map(move |result, actor, ctx| {
            actor.observed(result.unwrap_or(Err(StorageError::Closed)), flight);
            actor.resume(ctx);
        }));
    }

    fn observed(&mut self, result: Result<(), StorageError>, flight: InFlight) {
        self.pending = self.pending.saturating_sub(1);
        let InFlight { last_seq, reply } = flight;
        match result {
            Ok(()) => {
                self.last_seq = self.last_seq.max(last_seq);
                if let Some((reply, unit)) = reply {
                    count(&self.shared, &unit);
                    self.waiting.push((Some(unit), reply));
                }
            }
            Err(e) => {
                self.reload_needed = true;
                if let Some((reply, _)) = reply {
                    let _ = reply.send(Routed::Done(Err(e.into())));
                }
            }
        }
        self.release();
    }

    /// Decides the commands that waited for the last change to land, until
    /// one of them puts a change in flight again.
    fn resume(&mut self, ctx: &mut Context<Self>) {
        while self.pending == 0 {
            let Some(exec) = self.deferred.pop_front() else {
                self.deferred = std::collections::VecDeque::new();
                break;
            };
            self.run(exec, ctx);
        }
    }

    /// Answers now if nothing is in flight, else when the last change lands.
    fn hold(&mut self, unit: Option<Arc<Unit>>, reply: Reply) {
        self.waiting.push((unit, reply));
        self.release();
    }

    fn release(&mut self) {
        if self.pending > 0 {
            return;
        }
        if self.waiting.is_empty() {
            // A failed change's state comes back now, its payment deadline
            // with it, not at the next message: none may come before the
            // actor retires.
            self.reload_owed();
            return;
        }
        let reloaded = if self.reload_needed {
            self.reload()
        } else {
            Ok(())
        };
        // Taken, not drained: an idle actor keeps no spare capacity (memory
        // per active order is a target).
        for (unit, reply) in std::mem::take(&mut self.waiting) {
            let result = match (&reloaded, &self.family) {
                (Err(e), _) => Err(e.clone()),
                (Ok(()), Some(family)) => Ok(Outcome::Applied {
                    family: Arc::clone(family),
                    unit,
                }),
                (Ok(()), None) => {
                    Err(DomainError::not_found(ErrorCode::ORDER_NOT_FOUND, "order", self.id).into())
                }
            };
            let _ = reply.send(Routed::Done(result));
        }
    }

    /// Leaves the registry and stops: the family is durable and the next
    /// message loads it again.
    fn retire(&mut self, ctx: &mut Context<Self>) {
        // The watermark first: a reader that finds the family gone from the
        // registry reads the view up to the watermark, which must then
        // cover this actor's acknowledged changes.
        self.shared
            .retired_watermark
            .fetch_max(self.last_seq, Ordering::SeqCst);
        let me = ctx.address();
        self.shared
            .registry
            .remove_if(&self.id, |_, addr| *addr == me);
        self.retired = true;
        bump(&self.shared.metrics.passivations);
        ctx.run_later(RETIRE_GRACE, |_, ctx| ctx.stop());
    }

    /// The actor's idle timer: compacts the family after `compact_after`,
    /// passivates after `passivate_after`.
    fn check_idle(&mut self, ctx: &mut Context<Self>) {
        self.idle_timer = None; // this run
        if self.retired {
            return;
        }
        self.settle();
        // The reload after a failed change failed too: try again.
        self.reload_owed();
        let config = &self.shared.config;
        let (compact_after, passivate_after) = (config.compact_after, config.passivate_after);
        let idle = self.last_active.elapsed();
        if self.quiet() && idle >= passivate_after {
            return self.retire(ctx);
        }
        if self.quiet() && idle >= compact_after {
            self.compact_family();
        }
        // Not compact yet (too recent, or a write was still in flight):
        // look again for that; compact: only passivation is left.
        let whole = self.family.as_ref().is_some_and(|f| !f.compact);
        let due = if whole && compact_after < passivate_after {
            compact_after
        } else {
            passivate_after
        };
        let wait = if idle < due {
            due - idle
        } else {
            // Due but busy: the write in flight ends soon.
            compact_after.min(passivate_after)
        };
        self.arm_idle(wait.max(IDLE_CHECK_MIN), ctx);
    }

    /// Runs [`OrderActor::check_idle`] after `wait`, instead of when it was
    /// due to run.
    fn arm_idle(&mut self, wait: Duration, ctx: &mut Context<Self>) {
        if let Some(timer) = self.idle_timer.take() {
            ctx.cancel_future(timer);
        }
        self.idle_timer = Some(ctx.run_later(wait, Self::check_idle));
    }
}

/// Counts a durable change's orders in the core's metrics, in total and
/// for the UTC day the change was decided on.
fn count(shared: &Shared, unit: &Unit) {
    let m = &shared.metrics;
    let Some(first) = unit.events.first() else {
        return;
    };
    let day = m.day_counts(crate::metrics::day_of(first.at));
    for event in &unit.events {
        m.outcomes.count(&event.body);
        day.count(&event.body);
    }
}

/// The family a creation's stamped events make (sharing them).
fn stamped(events: &[Arc<Event>]) -> Option<OrderFamily> {
    let mut family = OrderFamily::create_shared(events.first()?)?;
    for event in &events[1..] {
        family.apply_shared(event);
    }
    Some(family)
}

/// The family a creation's events will make, before the journal stamps
/// them: only to render the reply an `Idempotency-Key` records.
fn provisional(events: &[Event]) -> Option<OrderFamily> {
    let mut family = OrderFamily::create(events.first()?)?;
    for event in &events[1..] {
        family.apply(event);
    }
    Some(family)
}

/// The event that records an `Idempotency-Key` and its reply, in the same
/// journal unit as the change.
fn record(
    after: &OrderFamily,
    events: &[Event],
    meta: &CommandMeta,
    idem: &Idempotency,
    now: Timestamp,
) -> Event {
    // Copies, as the journal has not stamped the events yet; only writes
    // that carry an Idempotency-Key pay for them.
    let events: Vec<Arc<Event>> = events.iter().cloned().map(Arc::new).collect();
    let (status, body) = (idem.render)(after, &events);
    Event {
        seq: 0,
        at: now,
        actor: meta.actor.clone(),
        request_id: meta.request_id.clone(),
        reason: meta.reason.clone(),
        version: after.version,
        body: EventBody::IdempotencyRecorded(Box::new(IdempotencyEntry {
            family_id: after.order_id,
            caller: meta.actor.clone(),
            key: idem.key.clone(),
            request_hash: idem.request_hash,
            status,
            body,
        })),
    }
}

impl Actor for OrderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.shared
            .metrics
            .active_actors
            .fetch_add(1, Ordering::Relaxed);
        let config = &self.shared.config;
        let first = config.compact_after.min(config.passivate_after);
        self.arm_idle(first, ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.shared
            .metrics
            .active_actors
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Asks an actor to passivate now if it has been idle for `idle_for` and
/// has nothing in flight (memory pressure, benchmarks).
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub(crate) struct Passivate {
    pub idle_for: Duration,
}

impl Handler<Passivate> for OrderActor {
    type Result = ();

    fn handle(&mut self, msg: Passivate, ctx: &mut Context<Self>) {
        self.settle();
        if !self.retired && self.last_active.elapsed() >= msg.idle_for && self.quiet() {
            self.retire(ctx);
        }
    }
}

/// Asks an actor to keep only its family's compact state now if it has
/// been idle for `idle_for` with nothing in flight (benchmarks, memory
/// pressure). Its own timer does this after `compact_after`.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub(crate) struct Compact {
    pub idle_for: Duration,
}

impl Handler<Compact> for OrderActor {
    type Result = ();

    fn handle(&mut self, msg: Compact, _ctx: &mut Context<Self>) {
        self.settle();
        if !self.retired && self.last_active.elapsed() >= msg.idle_for && self.quiet() {
            self.compact_family();
        }
    }
}

impl Handler<Exec> for OrderActor {
    type Result = ();

    fn handle(&mut self, exec: Exec, ctx: &mut Context<Self>) {
        self.shared
            .metrics
            .mailbox_backlog
            .fetch_sub(1, Ordering::Relaxed);
        if self.retired {
            let _ = exec.reply.send(Routed::Retry(exec.op));
            return;
        }
        self.last_active = Instant::now();
        self.settle();
        // Reads wait behind a change in flight like commands: a compact
        // family read back now would be the stored one from before the
        // change, and taking it would roll the actor back under a change
        // that then lands.
        if self.pending > 0 {
            if self.deferred.len() >= DEFERRED_MAX {
                bump(&self.shared.metrics.overloaded);
                return exec.answer(Err(CoreError::Overloaded("order actor")));
            }
            self.deferred.push_back(exec);
        } else {
            self.run(exec, ctx);
        }
        // A read held, or a command deferred, behind the change in flight.
        self.watch(ctx);
    }
}

impl OrderActor {
    fn run(&mut self, exec: Exec, ctx: &mut Context<Self>) {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.dispatch(exec, ctx)));
        if outcome.is_err() {
            // The reply was dropped with the unwinding handler: its caller
            // gets NOT_READY. Restart from storage before the next message.
            tracing::error!(order_id = %self.id, "order actor panicked; restarting it from storage");
            bump(&self.shared.metrics.restarts);
            self.reload_needed = true;
            self.release();
        }
        if self.family.is_none() && self.quiet() && !self.retired {
            // A create that was refused: nothing to keep in memory.
            self.retire(ctx);
        }
    }
}
