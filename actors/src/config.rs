//! The core's configuration and its named limits.

use ordercore_domain::{PricingRules, RiskRules};
use ordercore_storage::{Clock, SystemClock};
use std::sync::Arc;
use std::time::Duration;

/// Messages an order actor's mailbox holds before senders get `OVERLOADED`.
/// One family rarely has more than a handful of requests in flight; 64
/// absorbs a burst of retries while bounding what one hot order can queue.
pub const ORDER_MAILBOX_CAPACITY: usize = 64;
/// Messages a shard's mailbox holds (activations, deadline ticks): every
/// request for an inactive order passes through it, so it is deeper.
pub const SHARD_MAILBOX_CAPACITY: usize = 4_096;
/// Idle time after which an order actor passivates (its state is durable;
/// the next message loads it again).
pub const PASSIVATE_AFTER: Duration = Duration::from_secs(60);
/// Idle time after which an order actor keeps only its family's compact
/// state (`OrderFamily::compact`): what deciding needs, without history,
/// status log and product snapshots, which stay on disk until a detail or
/// history read asks for them. Longer than the write-behind's checkpoint
/// interval (1 s), so the changes of an order being worked on meet a whole
/// family and the write-behind keeps it without reading its row back.
pub const COMPACT_AFTER: Duration = Duration::from_secs(5);
/// How often each shard looks for due payment deadlines (real time; the
/// deadlines themselves are compared with the injected clock).
pub const DEADLINE_TICK: Duration = Duration::from_millis(100);
/// Deadlines one shard fires per tick; the rest wait for the next tick, so
/// a backlog after a restart cannot flood the writer.
pub const DEADLINES_PER_TICK: usize = 2_048;
/// Delay before a deadline whose cancel failed (storage unavailable) is
/// tried again.
pub const DEADLINE_RETRY_MS: i64 = 1_000;
/// Times a request is re-routed when its actor passivated under it.
pub const ROUTE_ATTEMPTS: usize = 4;
/// The window of the per-user order rate (risk rule).
pub const RISK_WINDOW_MS: i64 = 60_000;

/// Everything the core needs besides the store.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Shards, each an actix Arbiter (a thread); default: the cores.
    pub shards: usize,
    /// Node number written into order ids (00-99).
    pub node: u8,
    /// Time from creation to the payment deadline.
    pub pay_timeout: Duration,
    pub passivate_after: Duration,
    /// Idle time before an actor compacts its family ([`COMPACT_AFTER`]).
    pub compact_after: Duration,
    pub pricing: PricingRules,
    pub risk: RiskRules,
    /// Where "now" comes from; tests inject a manual clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            shards: std::thread::available_parallelism().map_or(2, usize::from),
            node: 0,
            pay_timeout: Duration::from_secs(1_800),
            passivate_after: PASSIVATE_AFTER,
            compact_after: COMPACT_AFTER,
            pricing: PricingRules::default(),
            risk: RiskRules::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl CoreConfig {
    pub(crate) fn pay_timeout_ms(&self) -> i64 {
        i64::try_from(self.pay_timeout.as_millis()).unwrap_or(i64::MAX)
    }
}
