//! Counters the store keeps for `/metrics` and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (µs) of the commit latency histogram's buckets; the last
/// bucket is everything above.
pub const COMMIT_LATENCY_BUCKETS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
];

/// Live counters; read a consistent-enough copy with [`StoreMetrics::snapshot`].
#[derive(Debug, Default)]
pub struct StoreMetrics {
    pub groups: AtomicU64,
    pub units: AtomicU64,
    pub events: AtomicU64,
    pub journal_bytes: AtomicU64,
    pub commit_latency_us_sum: AtomicU64,
    pub commit_latency_buckets: [AtomicU64; COMMIT_LATENCY_BUCKETS_US.len() + 1],
    pub write_failures: AtomicU64,
    pub rows_written: AtomicU64,
    pub checkpoints: AtomicU64,
    pub checkpoint_us_last: AtomicU64,
    pub checkpoint_seq: AtomicU64,
    pub journal_records_trimmed: AtomicU64,
    pub apply_errors: AtomicU64,
    pub recovery_ms: AtomicU64,
    pub recovery_units: AtomicU64,
    pub overloaded: AtomicU64,
    /// Family lookups answered "none" without reading sled (new orders).
    pub row_reads_skipped: AtomicU64,
    /// Times a write-behind checkpoint waited to spread its rows.
    pub checkpoint_pauses: AtomicU64,
    /// Groups the journal writer waited for to grow (arrivals were dense).
    pub group_waits: AtomicU64,
    /// Runs of an unpaced checkpoint's rows written by two threads.
    pub checkpoint_splits: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub groups: u64,
    pub units: u64,
    pub events: u64,
    pub journal_bytes: u64,
    pub commit_latency_us_sum: u64,
    /// Count per bucket of [`COMMIT_LATENCY_BUCKETS_US`] (not cumulative),
    /// the last one for everything above.
    pub commit_latency_buckets: Vec<u64>,
    pub write_failures: u64,
    pub rows_written: u64,
    pub checkpoints: u64,
    pub checkpoint_us_last: u64,
    pub checkpoint_seq: u64,
    pub journal_records_trimmed: u64,
    pub apply_errors: u64,
    pub recovery_ms: u64,
    pub recovery_units: u64,
    pub overloaded: u64,
    pub row_reads_skipped: u64,
    pub checkpoint_pauses: u64,
    pub group_waits: u64,
    pub checkpoint_splits: u64,
    /// Units waiting for the writer.
    pub queue_depth: u64,
    /// Families changed but not yet written behind.
    pub dirty_families: u64,
}

impl StoreMetrics {
    pub(crate) fn record_commit(&self, units: u64, events: u64, bytes: u64, latency_us: u64) {
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.units.fetch_add(units, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
        self.journal_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.commit_latency_us_sum
            .fetch_add(latency_us, Ordering::Relaxed);
        let bucket = COMMIT_LATENCY_BUCKETS_US
            .iter()
            .position(|b| latency_us <= *b)
            .unwrap_or(COMMIT_LATENCY_BUCKETS_US.len());
        self.commit_latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, queue_depth: u64, dirty_families: u64) -> MetricsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            groups: get(&self.groups),
            units: get(&self.units),
            events: get(&self.events),
            journal_bytes: get(&self.journal_bytes),
            commit_latency_us_sum: get(&self.commit_latency_us_sum),
            commit_latency_buckets: self.commit_latency_buckets.iter().map(get).collect(),
            write_failures: get(&self.write_failures),
            rows_written: get(&self.rows_written),
            checkpoints: get(&self.checkpoints),
            checkpoint_us_last: get(&self.checkpoint_us_last),
            checkpoint_seq: get(&self.checkpoint_seq),
            journal_records_trimmed: get(&self.journal_records_trimmed),
            apply_errors: get(&self.apply_errors),
            recovery_ms: get(&self.recovery_ms),
            recovery_units: get(&self.recovery_units),
            overloaded: get(&self.overloaded),
            row_reads_skipped: get(&self.row_reads_skipped),
            checkpoint_pauses: get(&self.checkpoint_pauses),
            group_waits: get(&self.group_waits),
            checkpoint_splits: get(&self.checkpoint_splits),
            queue_depth,
            dirty_families,
        }
    }
}
