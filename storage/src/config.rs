//! The store's configuration and its named limits.

use crate::clock::{Clock, SystemClock};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// When a reply may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After the change's journal record is flushed (the default).
    #[default]
    Durable,
    /// After the change is queued; it reaches disk within
    /// [`StoreConfig::relaxed_flush_interval`].
    Relaxed,
}

/// Units the writer's queue holds before submitters get `Overloaded`.
pub const QUEUE_UNITS_MAX: usize = 65_536;
/// Encoded bytes the writer's queue holds before `Overloaded` (64 MiB).
pub const QUEUE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Units in one group commit (one journal record).
pub const GROUP_UNITS_MAX: usize = 1_024;
/// Encoded bytes in one group commit (1 MiB): sled 0.34 writes a large value
/// as a separate blob file, which costs more than its share of a flush.
pub const GROUP_BYTES_MAX: usize = 1024 * 1024;
/// Longest time the journal writer waits for a group to grow to
/// [`GROUP_LINGER_UNITS`] before it flushes what it has (1 ms). A flush
/// costs ~140 µs of CPU here (the kernel's share of `fdatasync` on ext4,
/// and the wake-ups of the threads waiting for it): at 6,000 creates/s in
/// an open loop, a 300 µs wait made groups of ~5 and cost 28 µs of journal
/// CPU per change; 1 ms makes groups of ~8 and costs 15-18 µs, and every
/// request waiting for a core gains from it. 2 ms for 16 units took ~8%
/// less server CPU at 6,000/s but added ~0.5 ms to the median and nothing
/// to the p99 (three pairs alternated). It is only taken when changes
/// come fast enough to fill it (see [`GROUP_LINGER_MIN_RATE`]).
pub const GROUP_WAIT: Duration = Duration::from_millis(1);
/// Queued changes that end the writer's wait at once (8): past this the
/// flush's cost per change is small, and a busy core never waits.
pub const GROUP_LINGER_UNITS: usize = 8;
/// Arrival rate (changes per second) below which the writer flushes at
/// once instead of waiting for its group to grow (2,000/s: two changes
/// expected within [`GROUP_WAIT`]). A sparse change would otherwise wait
/// the whole [`GROUP_WAIT`] to share its flush with nothing.
pub const GROUP_LINGER_MIN_RATE: f64 = 2_000.0;
/// The span over which the journal writer measures the arrival rate (20 ms:
/// ~100 changes at the rates where waiting pays, and a change of load is
/// seen within a few groups).
pub const ARRIVAL_RATE_WINDOW: Duration = Duration::from_millis(20);
/// Largest group the journal writer applies to the write-behind view
/// itself, when the view's own thread is idle (8 units): handing a small
/// group over cost a thread wake-up, more than applying it; a large group
/// goes to that thread so the writer goes straight on to the next flush.
pub const APPLY_INLINE_UNITS_MAX: usize = 8;
/// Time between write-behind checkpoints.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(1_000);
/// Share of the checkpoint interval over which the write-behind spreads a
/// checkpoint's rows (80%): written in one burst, a second's rows take a
/// whole core for a tenth of a second or more, and every request waiting
/// for a core meanwhile shows it in its latency.
pub const CHECKPOINT_SPREAD_PERCENT: u32 = 80;
/// Rows written between two looks at the pace (one is a few µs).
pub const CHECKPOINT_PACE_ROWS: u64 = 128;
/// Rows left in an unpaced checkpoint (one a caller waits for: shutdown,
/// `checkpoint_now`, a view filling up) from which the rest is written by
/// two threads, half each (8,192: ~50 ms of rows on one thread, where a
/// thread costs ~50 µs to start). sled takes inserts from several threads;
/// a paced checkpoint keeps to one and leaves the other core to requests.
pub const CHECKPOINT_SPLIT_ROWS_MIN: usize = 8_192;
/// Families changed but not yet written behind before submitters get
/// `Overloaded`: bounds the memory of the write-behind view.
pub const DIRTY_FAMILIES_MAX: usize = 1_000_000;
/// Dirty families that wake the write-behind before its interval ends.
pub const DIRTY_FAMILIES_WAKE: usize = 200_000;
/// How long event consumers can come back for journalled events.
pub const JOURNAL_RETENTION: Duration = Duration::from_secs(10 * 60);
/// How often a failed writer probes the disk to recover.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// sled's page cache (256 MiB).
pub const SLED_CACHE_BYTES: u64 = 256 * 1024 * 1024;
/// Relaxed mode: longest time a queued change waits for its flush.
pub const RELAXED_FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// Families an admin listing page may examine (decode) before it answers
/// with a cursor to continue from.
pub const LISTING_SCAN_MAX: usize = 10_000;

/// Everything the store needs to open.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub durability: Durability,
    pub queue_units_max: usize,
    pub queue_bytes_max: usize,
    pub group_units_max: usize,
    pub group_bytes_max: usize,
    /// Longest time the writer waits for a group to grow to
    /// `group_linger_units` (0: take what is queued).
    pub group_wait: Duration,
    pub group_linger_units: usize,
    /// Arrival rate (changes/s) below which the writer never waits (0:
    /// always wait).
    pub group_linger_min_rate: f64,
    pub checkpoint_interval: Duration,
    /// [`CHECKPOINT_SPLIT_ROWS_MIN`].
    pub checkpoint_split_rows_min: usize,
    pub dirty_families_max: usize,
    pub journal_retention: Duration,
    /// Size of a journal segment file (the grain of trimming).
    pub journal_segment_bytes: u64,
    pub relaxed_flush_interval: Duration,
    pub sled_cache_bytes: u64,
    pub clock: Arc<dyn Clock>,
}

impl StoreConfig {
    /// The defaults above, storing in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            durability: Durability::Durable,
            queue_units_max: QUEUE_UNITS_MAX,
            queue_bytes_max: QUEUE_BYTES_MAX,
            group_units_max: GROUP_UNITS_MAX,
            group_bytes_max: GROUP_BYTES_MAX,
            group_wait: GROUP_WAIT,
            group_linger_units: GROUP_LINGER_UNITS,
            group_linger_min_rate: GROUP_LINGER_MIN_RATE,
            checkpoint_interval: CHECKPOINT_INTERVAL,
            checkpoint_split_rows_min: CHECKPOINT_SPLIT_ROWS_MIN,
            dirty_families_max: DIRTY_FAMILIES_MAX,
            journal_retention: JOURNAL_RETENTION,
            journal_segment_bytes: crate::segments::SEGMENT_BYTES,
            relaxed_flush_interval: RELAXED_FLUSH_INTERVAL,
            sled_cache_bytes: SLED_CACHE_BYTES,
            clock: Arc::new(SystemClock),
        }
    }
}
