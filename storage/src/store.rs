//! The store: the single writer of sled, its queue, the write-behind and
//! recovery.
//!
//! Two threads own every write. The *journal writer* takes everything queued
//! (up to the group limits), appends it as ONE journal record, flushes, and
//! only then completes the waiting submitters; afterwards it applies the
//! units to the write-behind view. The *write-behind* thread writes the
//! view's dirty entries as state rows, coalesced, then the checkpoint row
//! (the sequence they reflect), then trims the journal.

use crate::arrivals::ArrivalRate;
use crate::codec::{decode, encode, encode_packed};
use crate::config::{
    Durability, StoreConfig, APPLY_INLINE_UNITS_MAX, ARRIVAL_RATE_WINDOW, CHECKPOINT_PACE_ROWS,
    CHECKPOINT_SPREAD_PERCENT, DIRTY_FAMILIES_WAKE, LISTING_SCAN_MAX, PROBE_INTERVAL,
};
use crate::error::StorageError;
use crate::journal::{encode_unit, Journal, RecordBuilder, SledJournal, Unit};
use crate::metrics::{MetricsSnapshot, StoreMetrics};
use crate::segments::{AfterFailedSync, SegmentJournal};
use crate::view::{
    coupon_key, decode_stamped, encode_stamped, family_key, parse_expiry_key, read_row,
    read_stamped, sku_key, user_key, user_prefix, Checkpoint, Dirties, Dirty, View, CHECKPOINT_KEY,
    COUPON, EXPIRY, FAMILY, SKU,
};
use ordercore_domain::{
    Coupon, CouponId, Event, OrderFamily, OrderId, Sku, SkuCode, Timestamp, UserId,
};
use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The outcome a submitter waits for.
pub type Completion = oneshot::Receiver<Result<(), StorageError>>;

/// A submitted unit: its events stamped with their sequence numbers, and
/// the completion that says whether it is durable.
#[derive(Debug)]
pub struct Ticket {
    pub unit: Arc<Unit>,
    pub done: Completion,
    /// Runs a hook the moment the unit is durable or failed.
    pub on_durable: Arc<OnDurable>,
}

/// What a submitter has done the moment its unit is durable (or failed),
/// on the thread that learns it first — the journal writer's, or the
/// submitter's own when it sets the hook after the fact. An order actor
/// answers its caller from here: the reply does not wait for the actor's
/// own thread to be scheduled and hear of the commit.
pub type DurableHook = Box<dyn FnOnce(Result<(), &StorageError>) + Send>;

/// A unit's [`DurableHook`] slot: set once by the submitter after
/// [`Store::submit`] returns, fired once by the store; whichever comes
/// second runs the hook.
#[derive(Default)]
pub struct OnDurable(Mutex<HookState>);

#[derive(Default)]
enum HookState {
    #[default]
    Empty,
    Set(DurableHook),
    Fired(Result<(), StorageError>),
    Done,
}

impl std::fmt::Debug for OnDurable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &*lock(&self.0) {
            HookState::Empty => "empty",
            HookState::Set(_) => "set",
            HookState::Fired(_) => "fired",
            HookState::Done => "done",
        };
        f.debug_tuple("OnDurable").field(&state).finish()
    }
}

impl OnDurable {
    /// Sets the hook; runs it at once (on this thread) when the unit's
    /// outcome is already known. A second hook is dropped unrun.
    pub fn set(&self, hook: DurableHook) {
        let mut state = lock(&self.0);
        match std::mem::replace(&mut *state, HookState::Done) {
            HookState::Empty => *state = HookState::Set(hook),
            HookState::Fired(result) => {
                drop(state);
                hook(result.as_ref().map(|_| ()));
            }
            other @ (HookState::Set(_) | HookState::Done) => *state = other,
        }
    }

    /// Reports the unit's outcome: runs the hook if set, else keeps the
    /// outcome for [`OnDurable::set`].
    fn fire(&self, result: Result<(), &StorageError>) {
        let mut state = lock(&self.0);
        match std::mem::replace(&mut *state, HookState::Done) {
            HookState::Empty => *state = HookState::Fired(result.map_err(Clone::clone)),
            HookState::Set(hook) => {
                drop(state);
                hook(result);
            }
            // A unit is fired once (see `Pending::complete`); should it
            // be fired again, the first outcome stands.
            already @ (HookState::Fired(_) | HookState::Done) => *state = already,
        }
    }
}

/// The wake-up a submission owes the journal writer (see
/// [`Store::submit_unwoken`]); given when dropped if not before.
#[derive(Debug)]
#[must_use = "dropping it wakes the writer at once"]
pub struct WriterWake {
    inner: Option<Arc<Inner>>,
}

impl WriterWake {
    pub fn wake(mut self) {
        self.give();
    }

    fn give(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.queue_cv.notify_one();
        }
    }
}

impl Drop for WriterWake {
    fn drop(&mut self) {
        self.give();
    }
}

impl Ticket {
    /// Blocks until the unit is durable (or failed). For threads outside an
    /// async runtime: tests, tools, the crash-test child.
    pub fn wait(self) -> Result<(), StorageError> {
        self.done
            .blocking_recv()
            .unwrap_or(Err(StorageError::Closed))
    }
}

/// What recovery found and how long it took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub checkpoint_seq: u64,
    pub last_seq: u64,
    pub replayed_units: u64,
    pub replayed_events: u64,
    pub pending_deadlines: usize,
    pub duration: Duration,
}

#[derive(Debug)]
struct Pending {
    unit: Arc<Unit>,
    encoded: Vec<u8>,
    done: Option<oneshot::Sender<Result<(), StorageError>>>,
    on_durable: Option<Arc<OnDurable>>,
}

impl Pending {
    /// Tells the submitter, once (a relaxed unit is completed when queued,
    /// before the writer sees it): its completion first, then its hook, so
    /// that whoever the hook answers finds the submitter able to observe
    /// the outcome already.
    fn complete(&mut self, result: Result<(), StorageError>) {
        let Some(hook) = self.on_durable.take() else {
            return; // completed already
        };
        let hook_result = result.clone();
        if let Some(done) = self.done.take() {
            let _ = done.send(result);
        }
        hook.fire(hook_result.as_ref().map(|_| ()));
    }
}

#[derive(Debug, Default)]
struct Queue {
    units: VecDeque<Pending>,
    bytes: usize,
    /// Units ever queued: the journal writer measures the arrival rate
    /// from it.
    queued_total: u64,
    next_seq: u64,
    closing: bool,
    /// The journal writer is asleep on `queue_cv`: only then does a
    /// submitter pay for a wake-up (a syscall, and on a busy machine often
    /// a preemption of the submitter by the writer).
    writer_waiting: bool,
    /// The writer waits for its group to grow (see `take_group`): a
    /// submitter wakes it when the queue reaches the linger size.
    writer_lingering: bool,
}

#[derive(Debug)]
struct Inner {
    config: StoreConfig,
    db: sled::Db,
    rows: sled::Tree,
    journal: Arc<dyn Journal>,
    queue: Mutex<Queue>,
    queue_cv: Condvar,
    view: Mutex<View>,
    view_cv: Condvar,
    /// Highest sequence acknowledged to a submitter.
    acked: AtomicU64,
    /// Messages handed to the view applier that it has not finished.
    applier_backlog: AtomicUsize,
    journal_ok: AtomicBool,
    write_behind_ok: AtomicBool,
    epoch: AtomicU64,
    dirty_families: AtomicUsize,
    wake_write_behind: Condvar,
    write_behind_flag: Mutex<bool>,
    /// Held for a whole checkpoint: one started while another is writing
    /// would take the entries that one is writing too, and write them
    /// again; and the older one, finishing last, could leave a row it
    /// wrote over a newer one, or set the checkpoint row back.
    checkpointing: Mutex<()>,
    /// Callers of [`Store::checkpoint_now`] waiting for a checkpoint in
    /// progress: it stops spreading its rows.
    hurry: AtomicUsize,
    /// Run once by the next reader between its copy of the view and its
    /// row scan (tests put a checkpoint there).
    #[cfg(feature = "testkit")]
    between_reads: TestHook,
    /// Run once by the next checkpoint between its snapshot and its rows.
    #[cfg(feature = "testkit")]
    during_checkpoint: TestHook,
    metrics: StoreMetrics,
    recovery: Mutex<RecoveryReport>,
    /// The greatest family id any family row may hold: raised before a
    /// checkpoint writes rows. Family keys sort by id, and ids by creation
    /// time, so a family that is neither in the view nor below this id is
    /// in no row either: activating a new order reads nothing from sled.
    rows_family_max: Mutex<Option<OrderId>>,
}

/// A closure a test hands the store to run at one point, once.
#[cfg(feature = "testkit")]
#[derive(Default)]
struct TestHook(Mutex<Option<Box<dyn FnOnce() + Send>>>);

#[cfg(feature = "testkit")]
impl std::fmt::Debug for TestHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestHook")
    }
}

/// A handle to the store; clones share it.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// The journal's directory inside the store's directory.
pub const JOURNAL_DIR: &str = "journal";

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks is a defect; keep serving
    // with the data as it is rather than cascading the panic.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Store {
    /// Opens (or creates) the store, recovers it and starts its threads.
    pub fn open(config: StoreConfig) -> Result<Store, StorageError> {
        let db = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.sled_cache_bytes)
            .mode(sled::Mode::HighThroughput)
            // sled holds only the state rows, which each checkpoint flushes.
            .flush_every_ms(None)
            .open()?;
        let journal = SegmentJournal::open_sized(
            config.path.join(JOURNAL_DIR),
            config.journal_segment_bytes,
        )?
        .after_failed_sync(match config.durability {
            Durability::Durable => AfterFailedSync::Cut,
            Durability::Relaxed => AfterFailedSync::Refuse,
        });
        let moved = SledJournal::open(&db)?.move_into(&journal)?;
        if moved > 0 {
            tracing::info!(
                records = moved,
                "journal moved from sled into segment files"
            );
        }
        Store::open_with_journal(config, db, Arc::new(journal))
    }

    /// Opens with a given journal (a fault-injecting one in tests; a
    /// replicated one later).
    pub fn open_with_journal(
        config: StoreConfig,
        db: sled::Db,
        journal: Arc<dyn Journal>,
    ) -> Result<Store, StorageError> {
        let started = Instant::now();
        let rows = db.open_tree("state")?;
        let checkpoint: Checkpoint =
            read_row(&rows, CHECKPOINT_KEY, "checkpoint")?.unwrap_or_default();
        let mut view = View {
            applied_seq: checkpoint.seq,
            // Any index row replay marks may be on disk already.
            maybe_written_through: u64::MAX,
            ..View::default()
        };
        let (mut units, mut events) = (0_u64, 0_u64);
        journal.scan(checkpoint.seq, &mut |unit| {
            units += 1;
            events += unit.events.len() as u64;
            view.apply_unit(&unit, &rows);
            true
        })?;
        if let Some(seq) = view.failed_seq {
            return Err(StorageError::corrupt(
                "state",
                format!(
                    "the journalled change {seq} cannot be applied to the stored rows \
                     (the log names the event and the cause); the journal still holds it"
                ),
            ));
        }
        let last_seq = journal
            .last_seq()?
            .max(view.applied_seq)
            .max(checkpoint.seq);
        view.applied_seq = last_seq;
        view.maybe_written_through = last_seq;
        let dirty = view.dirty_families();
        let rows_family_max = match rows.scan_prefix([FAMILY]).keys().next_back() {
            Some(key) => Some(parse_index_id(key?.get(1..).unwrap_or_default())?),
            None => None,
        };
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue {
                next_seq: last_seq + 1,
                ..Queue::default()
            }),
            queue_cv: Condvar::new(),
            acked: AtomicU64::new(last_seq),
            applier_backlog: AtomicUsize::new(0),
            journal_ok: AtomicBool::new(true),
            write_behind_ok: AtomicBool::new(true),
            epoch: AtomicU64::new(1),
            dirty_families: AtomicUsize::new(dirty),
            wake_write_behind: Condvar::new(),
            write_behind_flag: Mutex::new(false),
            checkpointing: Mutex::new(()),
            hurry: AtomicUsize::new(0),
            #[cfg(feature = "testkit")]
            between_reads: TestHook::default(),
            #[cfg(feature = "testkit")]
            during_checkpoint: TestHook::default(),
            metrics: StoreMetrics::default(),
            recovery: Mutex::new(RecoveryReport::default()),
            rows_family_max: Mutex::new(rows_family_max),
            view: Mutex::new(view),
            view_cv: Condvar::new(),
            config,
            db,
            rows,
            journal,
        });
        let store = Store {
            inner,
            threads: Arc::new(Mutex::new(Vec::new())),
        };
        let report = RecoveryReport {
            checkpoint_seq: checkpoint.seq,
            last_seq,
            replayed_units: units,
            replayed_events: events,
            pending_deadlines: store.pending_deadlines()?.len(),
            duration: started.elapsed(),
        };
        store
            .inner
            .metrics
            .recovery_ms
            .store(millis(report.duration), Ordering::Relaxed);
        store
            .inner
            .metrics
            .recovery_units
            .store(units, Ordering::Relaxed);
        store
            .inner
            .metrics
            .checkpoint_seq
            .store(checkpoint.seq, Ordering::Relaxed);
        tracing::info!(
            checkpoint = checkpoint.seq,
            last_seq,
            replayed_units = units,
            ms = millis(report.duration),
            "storage recovered"
        );
        *lock(&store.inner.recovery) = report;
        store.spawn_threads()?;
        Ok(store)
    }

    fn spawn_threads(&self) -> Result<(), StorageError> {
        let (to_applier, applies) = std::sync::mpsc::channel();
        let thread = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(f)
                .map_err(|e| StorageError::Unavailable(format!("cannot start {name}: {e}")))
        };
        let (w, a, b) = (
            Arc::clone(&self.inner),
            Arc::clone(&self.inner),
            Arc::clone(&self.inner),
        );
        let writer = thread(
            "ordercore-journal",
            Box::new(move || journal_writer(w, to_applier)),
        )?;
        let applier = thread(
            "ordercore-apply",
            Box::new(move || view_applier(a, applies)),
        )?;
        let behind = thread("ordercore-write-behind", Box::new(move || write_behind(b)))?;
        lock(&self.threads).extend([writer, applier, behind]);
        Ok(())
    }

    /// What recovery found when the store opened.
    pub fn recovery(&self) -> RecoveryReport {
        lock(&self.inner.recovery).clone()
    }

    /// The epoch of the store's state: it moves on when a write fails, and a
    /// change decided in an earlier epoch is refused (`StaleEpoch`) so its
    /// actor reloads the durable state first.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::SeqCst)
    }

    /// Whether writes are going through (journal and write-behind).
    pub fn is_healthy(&self) -> bool {
        self.inner.journal_ok.load(Ordering::SeqCst)
            && self.inner.write_behind_ok.load(Ordering::SeqCst)
    }

    pub fn durability(&self) -> Durability {
        self.inner.config.durability
    }

    /// Submits the events of one decided change. They are stamped with
    /// consecutive sequence numbers and become durable together or not at
    /// all. A full queue answers `Overloaded` at once.
    pub fn submit(
        &self,
        shard: u32,
        epoch: u64,
        events: Vec<Event>,
    ) -> Result<Ticket, StorageError> {
        let (ticket, wake) = self.submit_unwoken(shard, epoch, events)?;
        wake.wake();
        Ok(ticket)
    }

    /// [`Store::submit`], leaving the wake-up of the journal writer to the
    /// caller: one that holds locks other threads wait for (the catalog's)
    /// wakes it after releasing them, so the woken writer cannot preempt it
    /// while it holds them. The writer is woken when the [`WriterWake`]
    /// goes, at the latest.
    pub fn submit_unwoken(
        &self,
        shard: u32,
        epoch: u64,
        events: Vec<Event>,
    ) -> Result<(Ticket, WriterWake), StorageError> {
        let inner = &self.inner;
        // A unit's sequences come from its events, and a frame with none
        // would read as torn: every caller decides at least one event, so
        // an empty change is a defect, refused before it takes a sequence.
        if events.is_empty() {
            return Err(StorageError::corrupt("change", "a change with no events"));
        }
        if inner.dirty_families.load(Ordering::Relaxed) >= inner.config.dirty_families_max {
            inner.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::Overloaded {
                what: "write-behind",
            });
        }
        let mut unit = Unit::new(shard, events);
        // Encoded here, on the submitter's thread, so the single writer only
        // frames bytes; sequence numbers live in the frame, not the bytes.
        let encoded = encode_unit(&unit)?;
        let (tx, rx) = oneshot::channel();
        let mut queue = lock(&inner.queue);
        if queue.closing {
            return Err(StorageError::Closed);
        }
        // Checked under the queue lock, which the writer holds while it
        // fails a group and starts a new epoch: a change decided before a
        // failure can never slip into the queue after it.
        if !inner.journal_ok.load(Ordering::SeqCst) {
            return Err(StorageError::Unavailable(
                "the journal writer is failing".into(),
            ));
        }
        let current = inner.epoch.load(Ordering::SeqCst);
        if epoch != current {
            return Err(StorageError::StaleEpoch {
                submitted: epoch,
                current,
            });
        }
        if queue.units.len() >= inner.config.queue_units_max
            || queue.bytes + encoded.len() > inner.config.queue_bytes_max
        {
            drop(queue);
            inner.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::Overloaded {
                what: "journal queue",
            });
        }
        let first = queue.next_seq;
        for (i, event) in unit.events.iter_mut().enumerate() {
            // The unit is this call's alone until it is queued below.
            Arc::make_mut(event).seq = first + i as u64;
        }
        queue.next_seq = first + unit.events.len().max(1) as u64;
        let unit = Arc::new(unit);
        let relaxed = inner.config.durability == Durability::Relaxed;
        queue.bytes += encoded.len();
        let on_durable = Arc::new(OnDurable::default());
        let mut pending = Pending {
            unit: Arc::clone(&unit),
            encoded,
            done: Some(tx),
            on_durable: Some(Arc::clone(&on_durable)),
        };
        if relaxed {
            // Relaxed: the reply goes out now; the writer only appends.
            pending.complete(Ok(()));
        }
        queue.units.push_back(pending);
        queue.queued_total += 1;
        if relaxed {
            inner.acked.fetch_max(unit.last_seq(), Ordering::SeqCst);
        }
        let wake = WriterWake {
            inner: (queue.writer_waiting
                || (queue.writer_lingering
                    && queue.units.len() >= inner.config.group_linger_units))
                .then(|| Arc::clone(inner)),
        };
        drop(queue);
        Ok((
            Ticket {
                unit,
                done: rx,
                on_durable,
            },
            wake,
        ))
    }

    /// Waits until the view holds everything acknowledged so far, then runs
    /// `f` on it.
    fn with_view<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        self.with_view_at(self.inner.acked.load(Ordering::SeqCst), f)
    }

    /// Waits until the view holds everything up to `target`, then runs `f`.
    fn with_view_at<R>(&self, target: u64, f: impl FnOnce(&View) -> R) -> R {
        let target = target.min(self.inner.acked.load(Ordering::SeqCst));
        let mut view = lock(&self.inner.view);
        while view.applied_seq < target {
            view = self
                .inner
                .view_cv
                .wait_timeout(view, Duration::from_millis(50))
                .map(|(v, _)| v)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        f(&view)
    }

    /// The order family `id` (a master id), as last acknowledged.
    pub fn family(&self, id: &OrderId) -> Result<Option<Arc<OrderFamily>>, StorageError> {
        self.family_after(id, u64::MAX)
    }

    /// The order family `id` as of every change up to sequence `seq` (a
    /// caller that knows the family's last change needs to wait for no
    /// other). Does not wait past what is acknowledged.
    pub fn family_after(
        &self,
        id: &OrderId,
        seq: u64,
    ) -> Result<Option<Arc<OrderFamily>>, StorageError> {
        let viewed = self.with_view_at(seq, |v| v.family(id).map(Arc::clone));
        if let Some(f) = viewed {
            return Ok(Some(f));
        }
        // Looked up in the view first: a family that left it is in a row
        // whose id the maximum already covers.
        if lock(&self.inner.rows_family_max).is_none_or(|max| *id > max) {
            self.inner
                .metrics
                .row_reads_skipped
                .fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        Ok(read_row::<OrderFamily>(&self.inner.rows, &family_key(id), "family")?.map(Arc::new))
    }

    pub fn sku(&self, code: &SkuCode) -> Result<Option<Sku>, StorageError> {
        if let Some(s) = self.with_view(|v| v.sku(code).map(|s| (**s).clone())) {
            return Ok(Some(s));
        }
        Ok(read_stamped::<Sku>(&self.inner.rows, &sku_key(code), "sku")?.map(|r| r.value))
    }

    pub fn coupon(&self, id: &CouponId) -> Result<Option<Coupon>, StorageError> {
        if let Some(c) = self.with_view(|v| v.coupon(id).map(|c| (**c).clone())) {
            return Ok(Some(c));
        }
        Ok(read_stamped::<Coupon>(&self.inner.rows, &coupon_key(id), "coupon")?.map(|r| r.value))
    }

    /// Every SKU: the catalog, for the inventory at start-up.
    pub fn all_skus(&self) -> Result<Vec<Sku>, StorageError> {
        self.all_catalog(SKU, "sku", |v| &v.skus, |sku: &Sku| sku.code().clone())
    }

    /// Every coupon (for the coupon registry at start-up).
    pub fn all_coupons(&self) -> Result<Vec<Coupon>, StorageError> {
        self.all_catalog(
            COUPON,
            "coupon",
            |v| &v.coupons,
            |c: &Coupon| c.details.coupon_id.clone(),
        )
    }

    /// Every catalog entry of one kind: its rows (under `prefix`), and the
    /// view's entries over them.
    fn all_catalog<K, V>(
        &self,
        prefix: u8,
        what: &'static str,
        entries: impl Fn(&Dirties) -> &HashMap<K, Dirty<Arc<V>>>,
        key_of: impl Fn(&V) -> K,
    ) -> Result<Vec<V>, StorageError>
    where
        K: Ord + Clone,
        V: Clone + serde::de::DeserializeOwned,
    {
        // The view before the rows, in every reader that merges the two: a
        // checkpoint writes an entry's row before it drops the entry, so an
        // entry missing from the copy is in the rows read after it. Read the
        // other way round, a checkpoint in between leaves the old row and no
        // entry: state older than what was acknowledged.
        // Oldest layer first: the newest copy of an entry lands last.
        let recent: Vec<(K, V)> = self.with_view(|v| {
            v.layers()
                .flat_map(|d| entries(d).iter())
                .map(|(key, d)| (key.clone(), (*d.value).clone()))
                .collect()
        });
        self.between_reads();
        let mut all = std::collections::BTreeMap::new();
        for entry in self.inner.rows.scan_prefix([prefix]) {
            let (_, bytes) = entry?;
            let value = decode_stamped::<V>(&bytes, what)?.value;
            all.insert(key_of(&value), value);
        }
        all.extend(recent);
        Ok(all.into_values().collect())
    }

    /// Payment deadlines of every CREATED family, earliest first.
    pub fn pending_deadlines(&self) -> Result<Vec<(Timestamp, OrderId)>, StorageError> {
        // The view first (see `all_catalog`): its inserts and removals.
        // Oldest layer first, so the newest mark of a key is applied last.
        let recent: Vec<(Vec<u8>, bool)> = self.with_view(|v| {
            v.layers()
                .flat_map(|d| d.index.range(vec![EXPIRY]..vec![EXPIRY + 1]))
                .map(|(key, d)| (key.clone(), d.value))
                .collect()
        });
        self.between_reads();
        let mut keys: std::collections::BTreeSet<Vec<u8>> = std::collections::BTreeSet::new();
        for entry in self.inner.rows.scan_prefix([EXPIRY]) {
            keys.insert(entry?.0.to_vec());
        }
        for (key, insert) in recent {
            if insert {
                keys.insert(key);
            } else {
                keys.remove(&key);
            }
        }
        keys.iter()
            .map(|k| {
                parse_expiry_key(k).ok_or_else(|| StorageError::corrupt("expiry index", "bad key"))
            })
            .collect()
    }

    /// A user's family ids, newest first, strictly older than `before`.
    pub fn user_orders(
        &self,
        user: &UserId,
        before: Option<&OrderId>,
        limit: usize,
    ) -> Result<Vec<OrderId>, StorageError> {
        let prefix = user_prefix(user);
        let end = match before {
            Some(id) => user_key(user, id),
            None => [prefix.as_slice(), &[0xFF]].concat(),
        };
        // The view first (see `all_catalog`).
        // Each layer's newest `limit`, oldest layer first (see above).
        let recent: Vec<(Vec<u8>, bool)> = self.with_view(|v| {
            v.layers()
                .flat_map(|d| d.index.range(prefix.clone()..end.clone()).rev().take(limit))
                .map(|(key, d)| (key.clone(), d.value))
                .collect()
        });
        self.between_reads();
        let mut ids: std::collections::BTreeSet<OrderId> = std::collections::BTreeSet::new();
        for entry in self.inner.rows.range(prefix.clone()..end).rev().take(limit) {
            let (key, _) = entry?;
            ids.insert(parse_index_id(&key[prefix.len()..])?);
        }
        for (key, insert) in recent {
            if let Ok(id) = parse_index_id(&key[prefix.len()..]) {
                if insert {
                    ids.insert(id);
                } else {
                    ids.remove(&id);
                }
            }
        }
        Ok(ids.into_iter().rev().take(limit).collect())
    }

    /// Families newest first, strictly older than `before`, that `keep`
    /// accepts (`Continue(true)`): up to `limit` of them, examining at most
    /// [`LISTING_SCAN_MAX`], and none from the one `keep` breaks at (a
    /// caller that has what it wants). Answers the page and the id to
    /// continue before: the last family examined (None when the scan
    /// reached the oldest family, and when `keep` broke at the first one:
    /// a caller that breaks knows where it stopped).
    pub fn scan_families(
        &self,
        before: Option<&OrderId>,
        limit: usize,
        keep: &mut dyn FnMut(&OrderFamily) -> ControlFlow<(), bool>,
    ) -> Result<(Vec<Arc<OrderFamily>>, Option<OrderId>), StorageError> {
        let start = vec![FAMILY];
        let end = match before {
            Some(id) => family_key(id),
            None => vec![FAMILY + 1],
        };
        // Newer families may still be only in the view; merge both, newest first.
        let recent: Vec<(OrderId, Arc<OrderFamily>)> = self.with_view(|v| {
            let upper = before.copied();
            // Each layer's newest, the newer layer's copy over the older's.
            let mut merged = std::collections::BTreeMap::new();
            for layer in v.layers() {
                let newest = layer
                    .families
                    .iter()
                    .rev()
                    .filter(|(id, _)| upper.is_none_or(|b| **id < b))
                    .take(LISTING_SCAN_MAX);
                merged.extend(newest.map(|(id, d)| (*id, Arc::clone(&d.value))));
            }
            merged.into_iter().rev().take(LISTING_SCAN_MAX).collect()
        });
        let mut recent = recent.into_iter().peekable();
        let mut stored = self.inner.rows.range(start..end).rev().peekable();
        let mut page = Vec::new();
        let mut scanned = 0;
        let mut last = None;
        while page.len() < limit && scanned < LISTING_SCAN_MAX {
            let stored_id = match stored.peek() {
                Some(Ok((key, _))) => Some(parse_index_id(&key[1..])?),
                Some(Err(_)) => {
                    return Err(stored
                        .next()
                        .and_then(Result::err)
                        .map_or(StorageError::Closed, Into::into))
                }
                None => None,
            };
            let recent_id = recent.peek().map(|(id, _)| *id);
            let family = match (recent_id, stored_id) {
                (None, None) => return Ok((page, None)),
                (Some(r), s) if s.is_none_or(|s| r >= s) => {
                    if Some(r) == s {
                        stored.next();
                    }
                    recent.next().map(|(_, f)| f)
                }
                _ => match stored.next() {
                    Some(Ok((_, bytes))) => {
                        Some(Arc::new(decode::<OrderFamily>(&bytes, "family")?))
                    }
                    _ => None,
                },
            };
            let Some(family) = family else { break };
            let ControlFlow::Continue(kept) = keep(&family) else {
                break;
            };
            scanned += 1;
            last = Some(family.order_id);
            if kept {
                page.push(family);
            }
        }
        Ok((page, last))
    }

    /// Journalled events after `after`, up to `limit`, in order (the outbox).
    /// Internal records are skipped. Answers the events and the sequence to
    /// continue after.
    pub fn events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Event>, u64), StorageError> {
        let mut out = Vec::new();
        let mut next = after;
        let durable = self.inner.acked.load(Ordering::SeqCst);
        self.inner.journal.scan(after, &mut |unit| {
            for event in unit.events {
                let event = Arc::unwrap_or_clone(event);
                if event.seq > durable || out.len() >= limit {
                    return false;
                }
                next = event.seq;
                if event.body.is_public() {
                    out.push(event);
                }
            }
            out.len() < limit
        })?;
        Ok((out, next))
    }

    /// The first sequence the journal still holds (0 when empty): events
    /// before it were trimmed (see `journal_retention`).
    pub fn first_held_seq(&self) -> Result<u64, StorageError> {
        self.inner.journal.first_seq()
    }

    /// The last acknowledged sequence.
    pub fn last_seq(&self) -> u64 {
        self.inner.acked.load(Ordering::SeqCst)
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        let depth = lock(&self.inner.queue).units.len() as u64;
        self.inner.metrics.snapshot(
            depth,
            self.inner.dirty_families.load(Ordering::Relaxed) as u64,
        )
    }

    /// Families changed but not yet written behind.
    pub fn dirty_families(&self) -> usize {
        self.inner.dirty_families.load(Ordering::Relaxed)
    }

    /// Writes everything dirty behind now and waits for it (benchmarks stop
    /// their clock after this; shutdown calls it last).
    pub fn checkpoint_now(&self) -> Result<(), StorageError> {
        // Everything acknowledged must be in the view before it is written.
        self.with_view(|_| ());
        // A checkpoint in progress finishes first, unpaced.
        self.inner.hurry.fetch_add(1, Ordering::SeqCst);
        let result = checkpoint(&self.inner, false);
        self.inner.hurry.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Test support: runs `hook` once, in the next reader that merges the
    /// view with the rows, between the two reads.
    #[cfg(feature = "testkit")]
    pub fn set_between_reads(&self, hook: Box<dyn FnOnce() + Send>) {
        *lock(&self.inner.between_reads.0) = Some(hook);
    }

    /// Test support: runs `hook` once, in the next checkpoint, after it
    /// took its snapshot and before it writes any row.
    #[cfg(feature = "testkit")]
    pub fn set_during_checkpoint(&self, hook: Box<dyn FnOnce() + Send>) {
        *lock(&self.inner.during_checkpoint.0) = Some(hook);
    }

    fn between_reads(&self) {
        #[cfg(feature = "testkit")]
        {
            let hook = lock(&self.inner.between_reads.0).take();
            if let Some(hook) = hook {
                hook();
            }
        }
    }

    /// Stops accepting, drains the queue, flushes, writes everything behind
    /// and stops the threads. Idempotent.
    pub fn shutdown(&self) -> Result<(), StorageError> {
        {
            let mut queue = lock(&self.inner.queue);
            queue.closing = true;
        }
        self.inner.queue_cv.notify_all();
        {
            *lock(&self.inner.write_behind_flag) = true;
        }
        self.inner.wake_write_behind.notify_all();
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        self.inner.journal.flush()?;
        checkpoint(&self.inner, false)?;
        self.inner.db.flush()?;
        Ok(())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn parse_index_id(bytes: &[u8]) -> Result<OrderId, StorageError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| OrderId::parse(s).ok())
        .ok_or_else(|| StorageError::corrupt("index", "bad order id in key"))
}

/// Takes the next group: everything queued up to the group limits. Blocks
/// until something is queued; answers an empty group when closing and
/// drained, or after [`PROBE_INTERVAL`] with nothing queued. While changes
/// arrive at [`StoreConfig::group_linger_min_rate`] or more, it first waits
/// up to [`StoreConfig::group_wait`] for the group to grow.
fn take_group(inner: &Inner, arrivals: &mut ArrivalRate) -> (Vec<Pending>, bool) {
    let mut queue = lock(&inner.queue);
    if queue.units.is_empty() && !queue.closing {
        queue.writer_waiting = true;
        queue = inner
            .queue_cv
            .wait_timeout(queue, PROBE_INTERVAL)
            .map(|(q, _)| q)
            .unwrap_or_else(|p| p.into_inner().0);
        queue.writer_waiting = false;
    }
    arrivals.observe(queue.queued_total, Instant::now());
    if !inner.config.group_wait.is_zero()
        && queue.units.len() < inner.config.group_linger_units
        && !queue.closing
        && arrivals.per_sec() >= inner.config.group_linger_min_rate
    {
        inner.metrics.group_waits.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + inner.config.group_wait;
        queue.writer_lingering = true;
        loop {
            let now = Instant::now();
            if queue.units.len() >= inner.config.group_linger_units
                || queue.closing
                || now >= deadline
            {
                break;
            }
            queue = inner
                .queue_cv
                .wait_timeout(queue, deadline - now)
                .map(|(q, _)| q)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        queue.writer_lingering = false;
    }
    let mut group = Vec::new();
    let mut bytes = 0;
    while let Some(p) = queue.units.front() {
        if !group.is_empty()
            && (group.len() >= inner.config.group_units_max
                || bytes + p.encoded.len() > inner.config.group_bytes_max)
        {
            break;
        }
        bytes += p.encoded.len();
        if let Some(p) = queue.units.pop_front() {
            group.push(p);
        }
    }
    queue.bytes -= bytes;
    let closed = queue.closing && queue.units.is_empty();
    (group, closed)
}

/// What the journal writer hands the view applier, in journal order.
#[derive(Debug)]
enum ToApply {
    /// Durable units to apply.
    Units(Vec<Arc<Unit>>),
    /// Sequences up to here failed and will never be applied.
    Skip(u64),
}

/// Applies durable units to the write-behind view on its own thread, so
/// the journal writer goes straight on to the next group.
fn view_applier(inner: Arc<Inner>, applies: std::sync::mpsc::Receiver<ToApply>) {
    // Ends when the journal writer ends and drops its sender.
    for message in applies {
        apply_message(&inner, message);
        inner.applier_backlog.fetch_sub(1, Ordering::Release);
    }
}

fn apply_message(inner: &Inner, message: ToApply) {
    match message {
        ToApply::Units(units) => apply_to_view(inner, &units),
        ToApply::Skip(last) => {
            let mut view = lock(&inner.view);
            view.applied_seq = view.applied_seq.max(last);
            drop(view);
            inner.view_cv.notify_all();
        }
    }
}

/// Gives the journal's outcome to the write-behind view, in journal order:
/// applied on the writer's thread when it is small and the applier has
/// nothing left to do (see [`APPLY_INLINE_UNITS_MAX`]), else handed over.
fn to_view(inner: &Inner, applier: &std::sync::mpsc::Sender<ToApply>, message: ToApply) {
    let small = match &message {
        ToApply::Units(units) => units.len() <= APPLY_INLINE_UNITS_MAX,
        ToApply::Skip(_) => true,
    };
    // The applier counts a message down only once it is applied, so at
    // zero everything handed to it is in the view and this one is next.
    if small && inner.applier_backlog.load(Ordering::Acquire) == 0 {
        apply_message(inner, message);
        return;
    }
    inner.applier_backlog.fetch_add(1, Ordering::AcqRel);
    if applier.send(message).is_err() {
        inner.applier_backlog.fetch_sub(1, Ordering::Release);
        tracing::error!("the view applier stopped");
    }
}

fn journal_writer(inner: Arc<Inner>, applier: std::sync::mpsc::Sender<ToApply>) {
    let mut expected_last = inner.journal.last_seq().unwrap_or(0);
    let mut last_flush = Instant::now();
    // The last record's bytes, reused for the next one.
    let mut buffer = Vec::new();
    let mut arrivals = ArrivalRate::new(ARRIVAL_RATE_WINDOW, Instant::now());
    loop {
        let (group, closed) = take_group(&inner, &mut arrivals);
        if group.is_empty() {
            if !inner.journal_ok.load(Ordering::SeqCst) {
                probe(&inner);
            } else if inner.config.durability == Durability::Relaxed
                && last_flush.elapsed() >= inner.config.relaxed_flush_interval
            {
                // Relaxed changes were answered already: a failed sync
                // loses them (the mode's window), and the journal cuts
                // them; it is said and counted, not hidden.
                if let Err(e) = inner.journal.flush() {
                    tracing::error!(error = %e, "relaxed journal sync failed; the changes since the last one are lost");
                    inner.metrics.write_failures.fetch_add(1, Ordering::Relaxed);
                }
                last_flush = Instant::now();
            }
            if closed {
                return;
            }
            continue;
        }
        let started = Instant::now();
        let mut builder = RecordBuilder::with_buffer(std::mem::take(&mut buffer));
        let mut events = 0_u64;
        for p in &group {
            builder.push(p.unit.first_seq(), p.unit.last_seq(), &p.encoded);
            events += p.unit.events.len() as u64;
        }
        let record = builder.finish(inner.config.clock.now());
        let durable = inner.config.durability == Durability::Durable;
        let result = inner.journal.append(expected_last, &record).and_then(|()| {
            if durable || last_flush.elapsed() >= inner.config.relaxed_flush_interval {
                last_flush = Instant::now();
                inner.journal.flush()
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                expected_last = record.last_seq;
                inner.acked.fetch_max(record.last_seq, Ordering::SeqCst);
                let latency = micros(started.elapsed());
                inner.metrics.record_commit(
                    group.len() as u64,
                    events,
                    record.bytes.len() as u64,
                    latency,
                );
                let mut units = Vec::with_capacity(group.len());
                for mut p in group {
                    p.complete(Ok(()));
                    units.push(p.unit);
                }
                to_view(&inner, &applier, ToApply::Units(units));
                buffer = record.bytes;
            }
            Err(e) => {
                tracing::error!(error = %e, units = group.len(), "journal write failed; refusing writes until the disk recovers");
                inner.metrics.write_failures.fetch_add(1, Ordering::Relaxed);
                let mut failed = group;
                {
                    let mut queue = lock(&inner.queue);
                    inner.journal_ok.store(false, Ordering::SeqCst);
                    inner.epoch.fetch_add(1, Ordering::SeqCst);
                    queue.bytes = 0;
                    failed.extend(queue.units.drain(..));
                }
                let last = failed.iter().map(|p| p.unit.last_seq()).max().unwrap_or(0);
                let error = StorageError::Unavailable(e.to_string());
                for mut p in failed {
                    p.complete(Err(error.clone()));
                }
                // Those sequences will never be applied: readers must not wait for them.
                to_view(&inner, &applier, ToApply::Skip(last));
            }
        }
    }
}

/// A failed writer tries a flush; when it goes through, writes resume (in
/// the epoch the failure started, so changes decided before it stay refused).
fn probe(inner: &Inner) {
    if inner.journal.flush().is_ok() {
        inner.journal_ok.store(true, Ordering::SeqCst);
        tracing::warn!(
            epoch = inner.epoch.load(Ordering::SeqCst),
            "journal writes recovered"
        );
    }
}

fn apply_to_view(inner: &Inner, units: &[Arc<Unit>]) {
    let mut view = lock(&inner.view);
    for unit in units {
        view.apply_unit(unit, &inner.rows);
    }
    let dirty = view.dirty_families();
    // Stored under the view's lock, so whoever sees the failure a checkpoint
    // reports (it reads the view under this lock) also sees it counted.
    inner
        .metrics
        .apply_errors
        .store(view.apply_errors, Ordering::Relaxed);
    if view.failed_seq.is_some() {
        // Checkpoints stop (see `View::failed_seq`); not ready until a
        // restart. Stored under the view's lock, as a checkpoint stores it.
        inner.write_behind_ok.store(false, Ordering::SeqCst);
    }
    // Stored under the view's lock too: stored after it, a count could
    // land after a later checkpoint's (which stores its own under the lock)
    // and stand for families already written.
    inner.dirty_families.store(dirty, Ordering::Relaxed);
    drop(view);
    inner.view_cv.notify_all();
    if dirty >= DIRTY_FAMILIES_WAKE {
        inner.wake_write_behind.notify_one();
    }
}

fn write_behind(inner: Arc<Inner>) {
    let mut spent = Duration::ZERO;
    loop {
        let stop = {
            let flag = lock(&inner.write_behind_flag);
            // Set while a checkpoint ran, its notification went to no
            // waiter: seen here, shutdown does not wait an interval.
            if *flag {
                return;
            }
            // A paced checkpoint took part of the interval already.
            let wait = inner.config.checkpoint_interval.saturating_sub(spent);
            let (flag, _) = inner
                .wake_write_behind
                .wait_timeout(flag, wait)
                .unwrap_or_else(|p| p.into_inner());
            *flag
        };
        if stop {
            return; // `shutdown` writes the last checkpoint itself
        }
        let started = Instant::now();
        if let Err(e) = checkpoint(&inner, true) {
            tracing::error!(error = %e, "write-behind failed; will retry");
        }
        spent = started.elapsed();
    }
}

/// Spreads a checkpoint's rows over [`CHECKPOINT_SPREAD_PERCENT`] of the
/// interval, unless the view is filling up, the store is stopping or a
/// caller of [`Store::checkpoint_now`] waits for it.
struct Pace<'a> {
    inner: &'a Inner,
    started: Instant,
    spread: Duration,
    rows_total: u64,
}

impl<'a> Pace<'a> {
    fn new(inner: &'a Inner, paced: bool, rows_total: u64) -> Pace<'a> {
        let spread = if paced {
            inner.config.checkpoint_interval * CHECKPOINT_SPREAD_PERCENT / 100
        } else {
            Duration::ZERO
        };
        Pace {
            inner,
            started: Instant::now(),
            spread,
            rows_total: rows_total.max(1),
        }
    }

    /// Called after each row: every [`CHECKPOINT_PACE_ROWS`], sleeps until
    /// the share of the spread that `rows` are of the total has passed.
    fn row(&mut self, rows: u64) {
        if self.spread.is_zero() || !rows.is_multiple_of(CHECKPOINT_PACE_ROWS) {
            return;
        }
        let pressed = self.inner.dirty_families.load(Ordering::Relaxed) >= DIRTY_FAMILIES_WAKE
            || self.inner.hurry.load(Ordering::SeqCst) > 0;
        if pressed || *lock(&self.inner.write_behind_flag) {
            self.spread = Duration::ZERO;
            return;
        }
        let share = u32::try_from(rows * 1_000 / self.rows_total).unwrap_or(1_000);
        let due = self.started + self.spread * share / 1_000;
        let now = Instant::now();
        if due > now {
            self.inner
                .metrics
                .checkpoint_pauses
                .fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(due - now);
        }
    }
}

/// Writes `items` one by one with `write`, paced; once the checkpoint is
/// unpaced (someone waits for it, or the view is filling up) and at least
/// [`crate::config::CHECKPOINT_SPLIT_ROWS_MIN`] remain, the rest in two
/// halves on two threads. `done` rows came before these. Returns the rows
/// written.
fn write_rows<T: Sync>(
    items: &[T],
    done: u64,
    pace: &mut Pace<'_>,
    write: impl Fn(&T) -> Result<(), StorageError> + Sync,
) -> Result<u64, StorageError> {
    for (i, item) in items.iter().enumerate() {
        let rest = &items[i..];
        if pace.spread.is_zero() && rest.len() >= pace.inner.config.checkpoint_split_rows_min {
            pace.inner
                .metrics
                .checkpoint_splits
                .fetch_add(1, Ordering::Relaxed);
            split_rows(rest, &write)?;
            return Ok(items.len() as u64);
        }
        write(item)?;
        pace.row(done + i as u64 + 1);
    }
    Ok(items.len() as u64)
}

/// Writes `items` with `write` in two halves, one on a second thread. A
/// half stops, answering nothing of its own, once the other meets an error:
/// the checkpoint fails with that error and its rows are written later.
fn split_rows<T: Sync>(
    items: &[T],
    write: &(impl Fn(&T) -> Result<(), StorageError> + Sync),
) -> Result<(), StorageError> {
    let (mine, theirs) = items.split_at(items.len() / 2);
    let failed = AtomicBool::new(false);
    let half = |rows: &[T]| {
        for row in rows {
            if failed.load(Ordering::Relaxed) {
                break;
            }
            if let Err(e) = write(row) {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let other = std::thread::Builder::new()
            .name("ordercore-rows".into())
            .spawn_scoped(scope, || half(theirs));
        let mine = half(mine);
        let theirs = match other {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                Err(StorageError::Unavailable(
                    "a checkpoint's second row writer stopped".into(),
                ))
            }),
            // No second thread to be had: this one writes the rest.
            Err(_) => half(theirs),
        };
        mine.and(theirs)
    })
}

/// Writes the view's dirty entries, then the checkpoint row, then trims the
/// journal.
fn checkpoint(inner: &Inner, paced: bool) -> Result<(), StorageError> {
    let _one_at_a_time = lock(&inner.checkpointing);
    let started = Instant::now();
    let mut view = lock(&inner.view);
    if let Some(seq) = view.failed_seq {
        drop(view);
        inner.write_behind_ok.store(false, Ordering::SeqCst);
        return Err(StorageError::Unavailable(format!(
            "the journalled change {seq} could not be applied to the state; \
             no checkpoint passes it until a restart replays it"
        )));
    }
    let snapshot = view.snapshot();
    drop(view);
    #[cfg(feature = "testkit")]
    {
        let hook = lock(&inner.during_checkpoint.0).take();
        if let Some(hook) = hook {
            hook();
        }
    }
    let previous = inner.metrics.checkpoint_seq.load(Ordering::Relaxed);
    if snapshot.dirty.is_empty() && snapshot.seq == previous {
        let _written = lock(&inner.view).clear_through(snapshot.seq);
        return Ok(());
    }
    // A relaxed journal may hold the snapshot's last changes unsynced: no
    // row may reflect a change the journal could still lose, or a restart
    // would hand its sequences out again to events the row passes over.
    let synced = match inner.config.durability {
        Durability::Relaxed => inner.journal.flush(),
        Durability::Durable => Ok(()),
    };
    let result = synced.and_then(|()| write_snapshot(inner, &snapshot, paced));
    let mut view = lock(&inner.view);
    match result {
        Ok(rows) => {
            // Dropped (30,000 entries at 10,000 creates/s) once the lock
            // is released, with `snapshot`.
            let _written = view.clear_through(snapshot.seq);
            inner
                .dirty_families
                .store(view.dirty_families(), Ordering::Relaxed);
            // Healthy again, unless a change failed to apply meanwhile;
            // stored under the view's lock, so an apply failing after it
            // stores its `false` later.
            inner
                .write_behind_ok
                .store(view.failed_seq.is_none(), Ordering::SeqCst);
            drop(view);
            let m = &inner.metrics;
            m.rows_written.fetch_add(rows, Ordering::Relaxed);
            m.checkpoints.fetch_add(1, Ordering::Relaxed);
            m.checkpoint_seq.store(snapshot.seq, Ordering::Relaxed);
            m.checkpoint_us_last
                .store(micros(started.elapsed()), Ordering::Relaxed);
            let retention =
                i64::try_from(inner.config.journal_retention.as_millis()).unwrap_or(i64::MAX);
            let cutoff = inner.config.clock.now().plus_millis(-retention);
            let trimmed = inner.journal.trim(snapshot.seq, cutoff)?;
            m.journal_records_trimmed
                .fetch_add(trimmed as u64, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            // Let go of it first: the view then merges it without copies.
            let seq = snapshot.seq;
            drop(snapshot);
            view.restore();
            view.maybe_written_through = view.maybe_written_through.max(seq);
            inner
                .dirty_families
                .store(view.dirty_families(), Ordering::Relaxed);
            drop(view);
            inner.write_behind_ok.store(false, Ordering::SeqCst);
            Err(e)
        }
    }
}

fn write_snapshot(
    inner: &Inner,
    snapshot: &crate::view::Snapshot,
    paced: bool,
) -> Result<u64, StorageError> {
    // Row by row, never in a sled batch: the first `apply_batch` (or
    // transaction) in a process switches sled 0.34 to a process-wide
    // reader-writer lock for every later operation, and each batch then
    // stalls every journal append and read for as long as it applies. Rows
    // can therefore land ahead of the checkpoint row (a crash in between):
    // replay skips what a family row holds by its version and what a catalog
    // row holds by its sequence; index rows are plain inserts and removals.
    let mut rows = 0_u64;
    let mut pace = Pace::new(
        inner,
        paced,
        (snapshot.dirty.families.len() + snapshot.dirty.index.len()) as u64,
    );
    // Raised before any row holds these families (see `rows_family_max`).
    if let Some((last, _)) = snapshot.dirty.families.last_key_value() {
        let mut max = lock(&inner.rows_family_max);
        if max.is_none_or(|m| *last > m) {
            *max = Some(*last);
        }
    }
    let write_family = |(id, family): &(&OrderId, &Dirty<Arc<OrderFamily>>)| {
        inner
            .rows
            .insert(family_key(id), encode_packed(family.value.as_ref())?)?;
        Ok(())
    };
    let write_index = |(key, insert): &(&Vec<u8>, &Dirty<bool>)| {
        if insert.value {
            inner.rows.insert(key.as_slice(), &[][..])?;
        } else {
            inner.rows.remove(key.as_slice())?;
        }
        Ok(())
    };
    let families: Vec<_> = snapshot.dirty.families.iter().collect();
    rows += write_rows(&families, rows, &mut pace, write_family)?;
    let index: Vec<_> = snapshot.dirty.index.iter().collect();
    rows += write_rows(&index, rows, &mut pace, write_index)?;
    for (code, sku) in &snapshot.dirty.skus {
        inner
            .rows
            .insert(sku_key(code), encode_stamped(sku.seq, sku.value.as_ref())?)?;
        rows += 1;
    }
    for (id, coupon) in &snapshot.dirty.coupons {
        inner.rows.insert(
            coupon_key(id),
            encode_stamped(coupon.seq, coupon.value.as_ref())?,
        )?;
        rows += 1;
    }
    let seq = snapshot.seq;
    let checkpoint = Checkpoint {
        seq,
        written_at: inner.config.clock.now(),
    };
    inner.rows.insert(CHECKPOINT_KEY, encode(&checkpoint)?)?;
    inner.db.flush()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both halves write every row once; a failure in one half stops the
    /// other, and the checkpoint gets that failure, not a stand-in.
    #[test]
    fn split_rows_write_each_row_once_and_stop_at_the_first_failure() {
        let rows: Vec<u32> = (0..10_000).collect();
        let written: Vec<AtomicUsize> = rows.iter().map(|_| AtomicUsize::new(0)).collect();
        split_rows(&rows, &|&r: &u32| {
            written[r as usize].fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert!(written.iter().all(|w| w.load(Ordering::Relaxed) == 1));

        // A failure at the first row of the second thread's half.
        let tried = AtomicUsize::new(0);
        let failing = 5_000;
        let result = split_rows(&rows, &|&r: &u32| {
            tried.fetch_add(1, Ordering::Relaxed);
            if r == failing {
                return Err(StorageError::Sled("injected: no space left".into()));
            }
            // Slow enough that the other half's failure is seen mid-way.
            std::thread::sleep(Duration::from_micros(20));
            Ok(())
        });
        assert!(
            matches!(&result, Err(StorageError::Sled(m)) if m.contains("injected")),
            "{result:?}"
        );
        let tried = tried.load(Ordering::Relaxed);
        assert!(
            tried < rows.len() / 2,
            "the other half stopped: {tried} tried"
        );
    }
}
