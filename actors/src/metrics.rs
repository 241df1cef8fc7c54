//! Counters of the core, for `/metrics`, the dashboard and benchmarks.

use dashmap::DashMap;
use ordercore_domain::codes::CancelType;
use ordercore_domain::{EventBody, Timestamp};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A UTC day, in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// UTC days whose outcome counts are kept: today and yesterday (a change
/// decided just before midnight may land just after it).
pub const DAYS_KEPT: i64 = 2;

/// Live counters. Outcomes are counted when their change is durable.
#[derive(Debug, Default)]
pub struct CoreMetrics {
    /// Since the process started.
    pub outcomes: Outcomes,
    pub deadlines_fired: AtomicU64,
    pub activations: AtomicU64,
    pub passivations: AtomicU64,
    /// Idle actors that dropped their family to its compact state, and
    /// compact families read back whole for a detail or history.
    pub compactions: AtomicU64,
    pub rehydrations: AtomicU64,
    /// Order actors that panicked and were restarted from storage.
    pub restarts: AtomicU64,
    /// Requests re-routed because their actor passivated under them.
    pub reroutes: AtomicU64,
    pub overloaded: AtomicU64,
    /// Order actors alive now.
    pub active_actors: AtomicI64,
    /// Messages sent to order actors and not yet handled.
    pub mailbox_backlog: AtomicI64,
    /// The same per UTC day of their decision (the dashboard's "today"),
    /// for the last [`DAYS_KEPT`] days.
    pub days: DashMap<i64, Outcomes>,
}

/// What became of orders, counted when their change is durable.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub orders_created: AtomicU64,
    pub orders_paid: AtomicU64,
    pub orders_canceled: AtomicU64,
    pub orders_timed_out: AtomicU64,
    /// Parts signed for, and refused at delivery (fulfillment outcomes).
    pub orders_signed: AtomicU64,
    pub orders_refused: AtomicU64,
    /// Money of created orders, in minor units.
    pub amount_created: AtomicU64,
}

impl Outcomes {
    /// Counts what `event` made of an order, if anything.
    pub(crate) fn count(&self, event: &EventBody) {
        match event {
            EventBody::OrderCreated(new) => {
                bump(&self.orders_created);
                let amount = u64::try_from(new.amounts.real_pay.minor()).unwrap_or(0);
                self.amount_created.fetch_add(amount, Ordering::Relaxed);
            }
            EventBody::OrderPaid { .. } => bump(&self.orders_paid),
            EventBody::OrderSigned(_) => bump(&self.orders_signed),
            EventBody::OrderRefused(_) => bump(&self.orders_refused),
            EventBody::OrderCanceled { cancel_type, .. } => {
                if *cancel_type == CancelType::TIMEOUT_CANCELED {
                    bump(&self.orders_timed_out);
                } else {
                    bump(&self.orders_canceled);
                }
            }
            _ => {}
        }
    }

    fn snapshot(&self) -> OutcomesSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        OutcomesSnapshot {
            orders_created: get(&self.orders_created),
            orders_paid: get(&self.orders_paid),
            orders_canceled: get(&self.orders_canceled),
            orders_timed_out: get(&self.orders_timed_out),
            orders_signed: get(&self.orders_signed),
            orders_refused: get(&self.orders_refused),
            amount_created: get(&self.amount_created),
        }
    }
}

/// [`Outcomes`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomesSnapshot {
    pub orders_created: u64,
    pub orders_paid: u64,
    pub orders_canceled: u64,
    pub orders_timed_out: u64,
    pub orders_signed: u64,
    pub orders_refused: u64,
    pub amount_created: u64,
}

/// One UTC day's outcomes at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaySnapshot {
    /// The day's first millisecond.
    pub day_start: Timestamp,
    pub outcomes: OutcomesSnapshot,
}

/// The UTC day `at` falls in.
pub fn day_of(at: Timestamp) -> i64 {
    at.millis().div_euclid(DAY_MS)
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreMetricsSnapshot {
    /// Since the process started.
    pub outcomes: OutcomesSnapshot,
    pub deadlines_fired: u64,
    pub activations: u64,
    pub passivations: u64,
    pub compactions: u64,
    pub rehydrations: u64,
    pub restarts: u64,
    pub reroutes: u64,
    pub overloaded: u64,
    /// Filled by the core from the catalog.
    pub catalog_reloads: u64,
    pub active_actors: i64,
    pub mailbox_backlog: i64,
}

impl CoreMetrics {
    pub fn snapshot(&self) -> CoreMetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CoreMetricsSnapshot {
            outcomes: self.outcomes.snapshot(),
            deadlines_fired: get(&self.deadlines_fired),
            activations: get(&self.activations),
            passivations: get(&self.passivations),
            compactions: get(&self.compactions),
            rehydrations: get(&self.rehydrations),
            restarts: get(&self.restarts),
            reroutes: get(&self.reroutes),
            overloaded: get(&self.overloaded),
            catalog_reloads: 0,
            active_actors: self.active_actors.load(Ordering::Relaxed),
            mailbox_backlog: self.mailbox_backlog.load(Ordering::Relaxed),
        }
    }
}

impl CoreMetrics {
    /// The counts of `day` (zero when nothing happened that day).
    pub fn day(&self, day: i64) -> DaySnapshot {
        DaySnapshot {
            day_start: Timestamp::from_millis(day.saturating_mul(DAY_MS)),
            outcomes: self
                .days
                .get(&day)
                .map(|d| d.snapshot())
                .unwrap_or_default(),
        }
    }

    /// The counts of `day`, created when it is the first change of the
    /// day; days older than [`DAYS_KEPT`] go then.
    pub(crate) fn day_counts(&self, day: i64) -> dashmap::mapref::one::Ref<'_, i64, Outcomes> {
        if let Some(counts) = self.days.get(&day) {
            return counts;
        }
        self.days.retain(|kept, _| *kept > day - DAYS_KEPT);
        self.days.entry(day).or_default().downgrade()
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
