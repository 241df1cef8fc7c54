//! Shards: each owns the order families whose user suffix hashes to it, on
//! its own actix Arbiter (thread). A shard activates its families' actors
//! (exactly once: activation runs only in the shard's own mailbox), keeps
//! their payment deadlines and fires them, and counts its users' recent
//! orders for the risk rules — a user's families all live on one shard.

use crate::config::{
    DEADLINES_PER_TICK, DEADLINE_RETRY_MS, DEADLINE_TICK, ORDER_MAILBOX_CAPACITY, RISK_WINDOW_MS,
};
use crate::error::CoreError;
use crate::metrics::bump;
use crate::order::{Exec, Op, OrderActor, Outcome, Routed, WriteOptions};
use crate::{lock, Shared};
use actix::dev::SendError;
use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, WrapFuture};
use ordercore_domain::codes::OrderStatus;
use ordercore_domain::{Action, Actor as Caller, Command, CommandMeta, OrderId, Timestamp, UserId};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Ticks between sweeps of users with no order in the risk window (one
/// minute at [`DEADLINE_TICK`]).
const RISK_PRUNE_TICKS: u64 = 600;

/// What a shard shares with its order actors (they run on its thread, so
/// these locks are never contended in steady state).
#[derive(Debug)]
pub(crate) struct ShardState {
    pub index: u32,
    /// Payment deadlines of this shard's CREATED families, earliest first.
    reminders: Mutex<BTreeSet<(Timestamp, OrderId)>>,
    /// Creation times of each user's orders within the risk window.
    recent: Mutex<HashMap<UserId, VecDeque<Timestamp>>>,
}

impl ShardState {
    pub(crate) fn new(index: u32) -> ShardState {
        ShardState {
            index,
            reminders: Mutex::new(BTreeSet::new()),
            recent: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn arm(&self, at: Timestamp, id: OrderId) {
        lock(&self.reminders).insert((at, id));
    }

    pub(crate) fn disarm(&self, at: Timestamp, id: OrderId) {
        lock(&self.reminders).remove(&(at, id));
    }

    pub(crate) fn armed(&self) -> usize {
        lock(&self.reminders).len()
    }

    /// Removes and answers up to `limit` deadlines due at `now`.
    fn take_due(&self, now: Timestamp, limit: usize) -> Vec<(Timestamp, OrderId)> {
        let mut reminders = lock(&self.reminders);
        let mut due = Vec::new();
        while due.len() < limit {
            match reminders.first() {
                Some((at, _)) if *at <= now => {
                    if let Some(entry) = reminders.pop_first() {
                        due.push(entry);
                    }
                }
                _ => break,
            }
        }
        due
    }

    /// Orders `user` created within the risk window before `now`.
    pub(crate) fn recent_orders(&self, user: &UserId, now: Timestamp) -> u32 {
        let mut recent = lock(&self.recent);
        let Some(times) = recent.get_mut(user) else {
            return 0;
        };
        let since = now.plus_millis(-RISK_WINDOW_MS);
        while times.front().is_some_and(|t| *t <= since) {
            times.pop_front();
        }
        u32::try_from(times.len()).unwrap_or(u32::MAX)
    }

    pub(crate) fn record_order(&self, user: &UserId, now: Timestamp) {
        lock(&self.recent)
            .entry(user.clone())
            .or_default()
            .push_back(now);
    }

    /// Forgets users with no order in the window (bounds the map).
    fn prune_recent(&self, now: Timestamp) {
        let since = now.plus_millis(-RISK_WINDOW_MS);
        lock(&self.recent).retain(|_, times| times.back().is_some_and(|t| *t > since));
    }
}

/// The shard's actor: activation and deadlines.
#[derive(Debug)]
pub(crate) struct ShardActor {
    pub shared: Arc<Shared>,
    pub state: Arc<ShardState>,
    ticks: u64,
}

impl ShardActor {
    pub(crate) fn new(shared: Arc<Shared>, state: Arc<ShardState>) -> ShardActor {
        ShardActor {
            shared,
            state,
            ticks: 0,
        }
    }

    /// The family's actor, activated from storage if it is not live.
    /// `None` when the family does not exist and `create` is false.
    fn activate(
        &mut self,
        family: OrderId,
        create: bool,
    ) -> Result<Option<Addr<OrderActor>>, CoreError> {
        if let Some(addr) = self.shared.registry.get(&family) {
            if addr.connected() {
                return Ok(Some(addr.clone()));
            }
        }
        // The epoch first: a failure after this read makes the state stale.
        let epoch = self.shared.store.epoch();
        // Only the changes of families that passivated can be missing from
        // the store's view; waiting for everything acknowledged would stall
        // this shard behind the write-behind on every activation.
        let watermark = self
            .shared
            .retired_watermark
            .load(std::sync::atomic::Ordering::SeqCst);
        let loaded = self.shared.store.family_after(&family, watermark)?;
        if loaded.is_none() && !create {
            return Ok(None);
        }
        let actor = OrderActor::new(
            family,
            loaded,
            epoch,
            Arc::clone(&self.shared),
            Arc::clone(&self.state),
        );
        let addr = OrderActor::create(|ctx| {
            ctx.set_mailbox_capacity(ORDER_MAILBOX_CAPACITY);
            actor
        });
        self.shared.registry.insert(family, addr.clone());
        bump(&self.shared.metrics.activations);
        Ok(Some(addr))
    }

    /// Delivers `exec` to the family's actor, activating it if needed.
    fn deliver(&mut self, family: OrderId, exec: Exec) {
        let create = matches!(exec.op, Op::Create { .. });
        let addr = match self.activate(family, create) {
            Ok(Some(addr)) => addr,
            Ok(None) => {
                let e = exec.op.not_found(family);
                return exec.answer(Err(e.into()));
            }
            Err(e) => return exec.answer(Err(e)),
        };
        self.shared
            .metrics
            .mailbox_backlog
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = addr.try_send(exec) {
            self.shared
                .metrics
                .mailbox_backlog
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            match e {
                SendError::Full(exec) => {
                    bump(&self.shared.metrics.overloaded);
                    exec.answer(Err(CoreError::Overloaded("order mailbox")));
                }
                SendError::Closed(exec) => {
                    let _ = exec.reply.send(Routed::Retry(exec.op));
                }
            }
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.ticks += 1;
        let now = self.shared.config.clock.now();
        for (at, id) in self.state.take_due(now, DEADLINES_PER_TICK) {
            self.fire(at, id, ctx);
        }
        if self.ticks.is_multiple_of(RISK_PRUNE_TICKS) {
            self.state.prune_recent(now);
        }
    }

    /// Wakes a family at its payment deadline (activating it if needed).
    fn fire(&mut self, at: Timestamp, id: OrderId, ctx: &mut Context<Self>) {
        bump(&self.shared.metrics.deadlines_fired);
        let cmd = Command {
            meta: CommandMeta::by(Caller::system()),
            action: Action::Deadline { order_id: id },
        };
        let (reply, answer) = oneshot::channel();
        let op = Op::Command {
            cmd: Box::new(cmd),
            opts: WriteOptions::default(),
        };
        self.deliver(id, Exec { op, reply });
        let state = Arc::clone(&self.state);
        ctx.spawn(answer.into_actor(self).map(move |answer, act, _| {
            let retry_at = match answer {
                // Still unpaid: the actor's clock read the deadline as not
                // yet due (the clock stepped back after this tick), so the
                // reminder the tick took goes back.
                Ok(Routed::Done(Ok(Outcome::Applied { family, .. })))
                    if family.status == OrderStatus::CREATED =>
                {
                    at
                }
                Ok(Routed::Done(Ok(Outcome::Applied { .. }))) => return,
                // The family is gone or refused the deadline: nothing to do.
                Ok(Routed::Done(Err(CoreError::Domain(_)))) => return,
                // The actor passivated under the message: fire again next tick.
                Ok(Routed::Retry(_)) => at,
                _ => act.shared.config.clock.now().plus_millis(DEADLINE_RETRY_MS),
            };
            state.arm(retry_at, id);
        }));
    }
}

impl Actor for ShardActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(DEADLINE_TICK, Self::tick);
    }
}

/// Routes a message to a family whose actor is not in the registry.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub(crate) struct Route {
    pub family: OrderId,
    pub exec: Exec,
}

impl Handler<Route> for ShardActor {
    type Result = ();

    fn handle(&mut self, msg: Route, _ctx: &mut Context<Self>) {
        self.deliver(msg.family, msg.exec);
    }
}

/// Fires every due deadline now (tests and tools; the timer does the same
/// every [`DEADLINE_TICK`]). Answers how many fired.
#[derive(Debug, actix::Message)]
#[rtype(result = "usize")]
pub(crate) struct Tick;

impl Handler<Tick> for ShardActor {
    type Result = usize;

    fn handle(&mut self, _msg: Tick, ctx: &mut Context<Self>) -> usize {
        let now = self.shared.config.clock.now();
        let due = self.state.take_due(now, usize::MAX);
        let fired = due.len();
        for (at, id) in due {
            self.fire(at, id, ctx);
        }
        fired
    }
}
