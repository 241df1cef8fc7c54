//! The store against a plain in-memory model: submits, reads, checkpoints,
//! restarts, faults and limits.

#![allow(clippy::unwrap_used)]

mod common;

use common::{config, Model};
use ordercore_domain::codes::CancelType;
use ordercore_domain::codes::OrderStatus;
use ordercore_domain::testkit::{self, pay_action};
use ordercore_domain::{Action, Coupon, OrderId, Sku};
use ordercore_storage::testkit::FlakyJournal;
use ordercore_storage::{ManualClock, StorageError, Store, StoreConfig, Ticket, JOURNAL_DIR};
use proptest::prelude::*;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn reopen(store: Store, dir: &std::path::Path) -> Store {
    store.shutdown().unwrap();
    drop(store);
    common::open_retrying(config(dir))
}

#[test]
fn acknowledged_changes_survive_restarts_before_and_after_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut model = Model::new(&store);
    let a = model.create(&store, "u1", &[("A1", 2), ("B1", 1)]).unwrap();
    let b = model.create(&store, "u2", &[("A2", 1)]).unwrap();
    assert!(model.run(
        &store,
        a,
        testkit::provider(),
        pay_action(&model.families[&a], "T-a")
    ));
    model.assert_matches(&store);

    // Restart with everything still in the journal only.
    let store = reopen(store, dir.path());
    model.assert_matches(&store);

    store.checkpoint_now().unwrap();
    assert!(model.run(
        &store,
        b,
        testkit::shopper("u2"),
        Action::Cancel {
            order_id: b,
            cancel_type: CancelType::USER_CANCELED
        }
    ));
    let store = reopen(store, dir.path());
    model.assert_matches(&store);
    assert_eq!(
        store.family(&a).unwrap().unwrap().live_statuses(),
        vec![OrderStatus::PAID, OrderStatus::PAID]
    );
    assert_eq!(
        store.family(&b).unwrap().unwrap().status,
        OrderStatus::CANCELED
    );
    store.shutdown().unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        owner: u8,
        sku: u8,
        quantity: u32,
        second: bool,
    },
    Pay {
        pick: usize,
    },
    Cancel {
        pick: usize,
    },
    Checkpoint,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4u8, 0..3u8, 1..5u32, any::<bool>()).prop_map(|(owner, sku, quantity, second)| Op::Create { owner, sku, quantity, second }),
        3 => any::<usize>().prop_map(|pick| Op::Pay { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_store_matches_a_plain_model_across_checkpoints_and_restarts(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(config(dir.path())).unwrap();
        let mut model = Model::new(&store);
        let skus = ["A1", "A2", "B1"];
        let mut restarts = 0;
        for op in ops {
            let ids: Vec<OrderId> = model.families.keys().copied().collect();
            match op {
                Op::Create { owner, sku, quantity, second } => {
                    let owner = format!("u{owner}");
                    let mut items = vec![(skus[sku as usize], quantity)];
                    if second {
                        items.push((skus[(sku as usize + 1) % 3], 1));
                    }
                    model.create(&store, &owner, &items);
                }
                Op::Pay { pick } if !ids.is_empty() => {
                    let id = ids[pick % ids.len()];
                    let action = pay_action(&model.families[&id], &format!("T-{pick}"));
                    model.run(&store, id, testkit::provider(), action);
                }
                Op::Cancel { pick } if !ids.is_empty() => {
                    let id = ids[pick % ids.len()];
                    model.run(&store, id, testkit::admin(), Action::Cancel { order_id: id, cancel_type: CancelType::USER_CANCELED });
                }
                Op::Checkpoint => store.checkpoint_now().unwrap(),
                Op::Restart => {
                    store = reopen(store, dir.path());
                    restarts += 1;
                }
                _ => {}
            }
            model.assert_matches(&store);
        }
        prop_assert!(restarts <= 40);
        store.shutdown().unwrap();
    }
}

/// A journal whose writes fail while `failing` is set.
#[test]
fn a_failing_disk_surfaces_errors_marks_the_store_unhealthy_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let open = |failing: &Arc<AtomicBool>| {
        let cfg = config(dir.path());
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let journal = Arc::new(FlakyJournal {
            failing: Arc::clone(failing),
            ..FlakyJournal::open(dir.path().join(JOURNAL_DIR)).unwrap()
        });
        Store::open_with_journal(cfg, db, journal).unwrap()
    };
    let store = open(&failing);
    let mut model = Model::new(&store);
    let kept = model.create(&store, "u1", &[("A1", 1)]).unwrap();
    assert!(store.is_healthy());
    let epoch = store.epoch();

    failing.store(true, Ordering::SeqCst);
    let cmd = model.shop.create_cmd("u1", &[("A2", 3)], None);
    let events = model
        .shop
        .decide_create(&cmd, &testkit::shopper("u1"))
        .unwrap();
    let ticket = store.submit(0, epoch, events.clone()).unwrap();
    assert!(matches!(ticket.wait(), Err(StorageError::Unavailable(_))));
    assert!(
        !store.is_healthy(),
        "a failed write marks the store unhealthy"
    );
    assert!(matches!(
        store.submit(0, epoch, events.clone()),
        Err(StorageError::Unavailable(_))
    ));
    assert!(
        store.family(&cmd.order_id).unwrap().is_none(),
        "nothing unacknowledged is visible"
    );

    failing.store(false, Ordering::SeqCst);
    let mut waited = 0;
    while !store.is_healthy() && waited < 100 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        waited += 1;
    }
    assert!(store.is_healthy(), "the writer recovers once the disk does");
    assert!(store.epoch() > epoch, "a failed write starts a new epoch");
    assert!(matches!(
        store.submit(0, epoch, events.clone()),
        Err(StorageError::StaleEpoch { .. })
    ));
    model.assert_matches(&store);
    store.shutdown().unwrap();
    drop(store);
    let store = open(&failing);
    model.assert_matches(&store);
    assert!(store.family(&kept).unwrap().is_some());
    assert!(store.family(&cmd.order_id).unwrap().is_none());
    store.shutdown().unwrap();
}

#[test]
fn full_queues_answer_overloaded_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut model = Model::new(&store);
    store.shutdown().unwrap();
    drop(store);
    let mut cfg = config(dir.path());
    cfg.queue_units_max = 0;
    let store = common::open_retrying(cfg);
    let cmd = model.shop.create_cmd("u1", &[("A1", 1)], None);
    let events = model
        .shop
        .decide_create(&cmd, &testkit::shopper("u1"))
        .unwrap();
    assert!(matches!(
        store.submit(0, store.epoch(), events),
        Err(StorageError::Overloaded { .. })
    ));
    assert_eq!(store.metrics().overloaded, 1);
    model.assert_matches(&store);
    store.shutdown().unwrap();
}

/// The writer waits for a group to grow: a group that reaches the linger
/// size goes at once, and changes that arrive within the wait share one
/// flush.
#[test]
fn the_writer_lingers_for_a_group_and_goes_when_it_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut model = Model::new(&store);
    store.shutdown().unwrap();
    drop(store);
    let creates = |model: &mut Model, n: usize| -> Vec<Vec<ordercore_domain::Event>> {
        (0..n)
            .map(|i| {
                let owner = format!("linger{i}");
                let cmd = model.shop.create_cmd(&owner, &[("A1", 1)], None);
                model
                    .shop
                    .decide_create(&cmd, &testkit::shopper(&owner))
                    .unwrap()
            })
            .collect()
    };
    let submit_all = |store: &Store, changes: Vec<Vec<ordercore_domain::Event>>| {
        let tickets: Vec<_> = changes
            .into_iter()
            .map(|events| store.submit(0, store.epoch(), events).unwrap())
            .collect();
        for ticket in tickets {
            ticket.wait().unwrap();
        }
    };

    // A wait far longer than the test: only a full group ends it.
    let mut cfg = config(dir.path());
    cfg.group_wait = std::time::Duration::from_secs(600);
    cfg.group_linger_units = 3;
    cfg.group_linger_min_rate = 0.0;
    let store = common::open_retrying(cfg);
    let before = store.metrics();
    let started = std::time::Instant::now();
    submit_all(&store, creates(&mut model, 3));
    assert!(started.elapsed() < std::time::Duration::from_secs(600));
    let after = store.metrics();
    assert_eq!(
        (after.groups - before.groups, after.units - before.units),
        (1, 3)
    );
    store.shutdown().unwrap();
    drop(store);

    // A group that never fills goes when the wait ends, with everything
    // that came meanwhile.
    let mut cfg = config(dir.path());
    cfg.group_wait = std::time::Duration::from_millis(200);
    cfg.group_linger_units = 100;
    cfg.group_linger_min_rate = 0.0;
    let store = common::open_retrying(cfg);
    let before = store.metrics();
    submit_all(&store, creates(&mut model, 2));
    let after = store.metrics();
    assert_eq!(
        (after.groups - before.groups, after.units - before.units),
        (1, 2)
    );
    store.shutdown().unwrap();
}

/// Opens the store in `dir` on a journal that fails while `failing` is
/// set, keeping a handle on its sled database, so that a test can put rows
/// back as a kill would have left them. sled's threads of a dropped handle
/// let go of its lock shortly, so the open is retried meanwhile.
fn open_keeping_db(dir: &std::path::Path, failing: &Arc<AtomicBool>) -> (Store, sled::Db) {
    let mut tries = 0;
    let db = loop {
        match sled::Config::new().path(dir).open() {
            Ok(db) => break db,
            Err(e) if tries < 200 && e.to_string().contains("could not acquire lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("cannot open sled: {e}"),
        }
    };
    let journal = Arc::new(FlakyJournal {
        failing: Arc::clone(failing),
        ..FlakyJournal::open(dir.join(JOURNAL_DIR)).unwrap()
    });
    let store = Store::open_with_journal(config(dir), db.clone(), journal).unwrap();
    (store, db)
}

/// A shop of one SKU (`D1`) with stock for any number of test orders,
/// put into `store`.
fn roomy_shop(store: &Store) -> testkit::Shop {
    let mut shop = testkit::Shop::default();
    shop.skus = vec![testkit::sku(
        "D1",
        ordercore_domain::codes::ProductType::NORMAL_PRODUCT,
        1_000,
        1_000_000,
    )];
    shop.coupons.clear();
    store
        .submit(0, store.epoch(), common::catalog_events(&shop))
        .unwrap()
        .wait()
        .unwrap();
    shop
}

/// Submits the creation of an order of one `D1` for `owner`.
fn submit_create(store: &Store, shop: &mut testkit::Shop, owner: &str) -> Ticket {
    let cmd = shop.create_cmd(owner, &[("D1", 1)], None);
    let events = shop.decide_create(&cmd, &testkit::shopper(owner)).unwrap();
    shop.apply_catalog(&events);
    store.submit(0, store.epoch(), events).unwrap()
}

/// `checkpoint_now` while the write-behind spreads a checkpoint: that one
/// finishes first, and no row is written twice (a second checkpoint
/// started meanwhile took the entries being written and wrote them again).
#[test]
fn a_checkpoint_asked_for_during_another_waits_for_it_and_writes_no_row_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_interval = std::time::Duration::from_secs(2);
    let store = common::open_retrying(cfg);
    let mut shop = roomy_shop(&store);
    let orders = 600_u64;
    let tickets: Vec<_> = (0..orders)
        .map(|i| submit_create(&store, &mut shop, &format!("c{i}")))
        .collect();
    for ticket in tickets {
        ticket.wait().unwrap();
    }
    // Until the write-behind's own checkpoint is in progress: it pauses
    // every 128 rows to spread them over 1.6 s.
    let started = std::time::Instant::now();
    let in_progress = loop {
        let m = store.metrics();
        if m.checkpoint_pauses > 0 {
            break m;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    store.checkpoint_now().unwrap();
    // The one in progress has finished: the one asked for waited for it
    // (and wrote what came after that one's snapshot, if anything did).
    assert!(store.metrics().checkpoints > in_progress.checkpoints);
    // It stopped pausing once asked to: of its ~14 pauses, at most the one
    // under way when the call came was taken after the first.
    assert!(
        store.metrics().checkpoint_pauses <= in_progress.checkpoint_pauses + 1,
        "{} pauses after the first",
        store.metrics().checkpoint_pauses - in_progress.checkpoint_pauses
    );
    assert_eq!(store.dirty_families(), 0);
    assert_eq!(store.metrics().checkpoint_seq, store.last_seq());
    // Stopping joins the write-behind: every checkpoint has ended.
    store.shutdown().unwrap();
    let after = store.metrics();
    // A family row, a user index row and a deadline row per order, and the
    // SKU's row at most once per checkpoint: none written twice.
    assert!(
        after.rows_written <= 3 * orders + after.checkpoints,
        "{} rows for {orders} orders in {} checkpoints",
        after.rows_written,
        after.checkpoints
    );
    assert!(after.rows_written >= 3 * orders);
}

/// A reader that merges the view with the rows sees everything
/// acknowledged even when a checkpoint writes the rows and drops the view's
/// entries between its two reads.
#[test]
fn readers_see_every_acknowledged_change_across_a_checkpoint_between_their_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Only the test's own checkpoints run.
    cfg.checkpoint_interval = std::time::Duration::from_secs(3_600);
    let store = common::open_retrying(cfg);
    let mut shop = roomy_shop(&store);
    let owner = "reader";
    let mut create = |store: &Store, n: usize| {
        let tickets: Vec<_> = (0..n)
            .map(|_| submit_create(store, &mut shop, owner))
            .collect();
        for ticket in tickets {
            ticket.wait().unwrap();
        }
    };
    // Some orders in rows, more in the view only.
    create(&store, 5);
    store.checkpoint_now().unwrap();
    create(&store, 7);
    let orders = 12;
    let checkpoint_between = |store: &Store| {
        let other = store.clone();
        store.set_between_reads(Box::new(move || other.checkpoint_now().unwrap()));
    };
    let checkpoints = store.metrics().checkpoints;

    checkpoint_between(&store);
    let skus = store.all_skus().unwrap();
    let d1 = skus.iter().find(|s| s.code().as_str() == "D1").unwrap();
    assert_eq!(d1.locked, orders as i64);
    assert_eq!(store.metrics().checkpoints, checkpoints + 1);

    create(&store, 1);
    checkpoint_between(&store);
    assert_eq!(store.pending_deadlines().unwrap().len(), orders + 1);
    assert_eq!(store.metrics().checkpoints, checkpoints + 2);

    create(&store, 1);
    checkpoint_between(&store);
    let listed = store.user_orders(&testkit::user(owner), None, 100).unwrap();
    assert_eq!(listed.len(), orders + 2);
    assert_eq!(store.metrics().checkpoints, checkpoints + 3);
    store.shutdown().unwrap();
}

/// Creates `n` orders of one `A1` for `owner` through a shared model.
fn create_shared(model: &Mutex<Model>, store: &Store, owner: &str, n: usize) -> Vec<OrderId> {
    let mut model = model.lock().unwrap();
    (0..n)
        .map(|_| model.create(store, owner, &[("A1", 1)]).unwrap())
        .collect()
}

/// While a checkpoint writes its snapshot (taken out of the view), readers
/// read through it and a change to a family it holds builds on it, not on
/// the family's older row; afterwards, and after a restart, the newest
/// state of everything holds.
#[test]
fn changes_and_reads_during_a_checkpoint_see_the_snapshot_it_is_writing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Only the test's own checkpoints run.
    cfg.checkpoint_interval = std::time::Duration::from_secs(3_600);
    let store = common::open_retrying(cfg);
    let model = Arc::new(Mutex::new(Model::new(&store)));
    let ids = create_shared(&model, &store, "u1", 3);
    // One checkpoint first, so one paid family also has an older row.
    store.checkpoint_now().unwrap();
    let paid = ids[0];
    // In the snapshot of the next checkpoint, and in no row yet.
    let ids_again = create_shared(&model, &store, "u2", 2);
    let in_snapshot = ids_again[0];
    let ran = Arc::new(AtomicUsize::new(0));
    {
        let (store, model, ran) = (store.clone(), Arc::clone(&model), Arc::clone(&ran));
        store.clone().set_during_checkpoint(Box::new(move || {
            let mut model = model.lock().unwrap();
            for (id, trade) in [(paid, "T-1"), (in_snapshot, "T-2")] {
                let pay = pay_action(&model.families[&id], trade);
                assert!(model.run(&store, id, testkit::provider(), pay));
            }
            model.create(&store, "u1", &[("A1", 2)]).unwrap();
            // The snapshot holds one paid family, the row the other.
            model.assert_matches(&store);
            let listed = store.user_orders(&testkit::user("u1"), None, 100).unwrap();
            assert_eq!(listed.len(), 4);
            // The snapshot's two, and three changed since, one of them
            // also in the snapshot: each counted once.
            assert_eq!(store.dirty_families(), 4);
            ran.fetch_add(1, Ordering::SeqCst);
        }));
    }
    store.checkpoint_now().unwrap();
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "the hook ran inside the checkpoint"
    );
    let model = model.lock().unwrap();
    model.assert_matches(&store);
    assert_eq!(
        store.dirty_families(),
        3,
        "the families paid and the one created during the checkpoint are left for the next"
    );
    assert!(store.family(&paid).unwrap().unwrap().is_paid());
    assert!(store.family(&in_snapshot).unwrap().unwrap().is_paid());
    assert!(store.family(&ids_again[1]).unwrap().is_some());
    store.checkpoint_now().unwrap();
    assert_eq!(store.dirty_families(), 0);
    let store = reopen(store, dir.path());
    model.assert_matches(&store);
    store.shutdown().unwrap();
}

/// A checkpoint whose write fails gives its snapshot back under the
/// changes made meanwhile, so the next one writes both: every family's row
/// is on disk afterwards, the one changed meanwhile as last changed.
#[test]
fn a_failed_checkpoint_gives_its_snapshot_back_under_the_changes_made_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let mut cfg = config(dir.path());
    // A relaxed store's checkpoint syncs the journal first: the failure to
    // inject.
    cfg.durability = ordercore_storage::Durability::Relaxed;
    cfg.checkpoint_interval = std::time::Duration::from_secs(3_600);
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let journal = Arc::new(FlakyJournal {
        failing: Arc::clone(&failing),
        ..FlakyJournal::open(dir.path().join(JOURNAL_DIR)).unwrap()
    });
    let store = Store::open_with_journal(cfg.clone(), db, journal).unwrap();
    let model = Arc::new(Mutex::new(Model::new(&store)));
    let ids = create_shared(&model, &store, "u1", 3);
    let paid = ids[0];
    let ran = Arc::new(AtomicUsize::new(0));
    {
        let (store, model, ran, failing) = (
            store.clone(),
            Arc::clone(&model),
            Arc::clone(&ran),
            Arc::clone(&failing),
        );
        store.clone().set_during_checkpoint(Box::new(move || {
            let mut model = model.lock().unwrap();
            let pay = pay_action(&model.families[&paid], "T-1");
            assert!(model.run(&store, paid, testkit::provider(), pay));
            // In the view (a read waits for it) before the disk fails.
            assert!(store.family(&paid).unwrap().unwrap().is_paid());
            assert_eq!(store.dirty_families(), 3, "the paid one counted once");
            failing.store(true, Ordering::SeqCst);
            ran.fetch_add(1, Ordering::SeqCst);
        }));
    }
    assert!(store.checkpoint_now().is_err(), "the injected failure");
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    failing.store(false, Ordering::SeqCst);
    let model = model.lock().unwrap();
    model.assert_matches(&store);
    assert_eq!(store.dirty_families(), 3, "all three are still to write");
    store.checkpoint_now().unwrap();
    store.shutdown().unwrap();
    drop(store);
    let db = raw_db(dir.path());
    let state = db.open_tree("state").unwrap();
    for id in &ids {
        let key = [&b"F"[..], id.as_bytes()].concat();
        assert!(state.contains_key(key).unwrap(), "the row of {id}");
    }
    drop((state, db));
    let store = common::open_retrying(cfg);
    model.assert_matches(&store);
    assert!(store.family(&paid).unwrap().unwrap().is_paid());
    store.shutdown().unwrap();
}

/// A change with no events is refused before it takes a sequence; the
/// journal goes on.
#[test]
fn a_change_with_no_events_is_refused_and_the_journal_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut shop = roomy_shop(&store);
    let last = store.last_seq();
    let refused = store.submit(0, store.epoch(), Vec::new()).unwrap_err();
    assert!(matches!(refused, StorageError::Corrupt { .. }), "{refused}");
    assert_eq!(store.last_seq(), last);
    submit_create(&store, &mut shop, "after").wait().unwrap();
    assert!(store.last_seq() > last);
    assert!(store.is_healthy());
    store.shutdown().unwrap();
}

/// A failed write's sequences are skipped, and a restart before the next
/// checkpoint row hands them out again: a catalog row written meanwhile is
/// stamped with its own last event, not with the skipped sequences, so the
/// events that reuse them still reach it.
#[test]
fn catalog_rows_are_stamped_with_their_own_events_not_with_skipped_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let open = |failing: &Arc<AtomicBool>| open_keeping_db(dir.path(), failing);
    let (store, db) = open(&failing);
    let mut shop = roomy_shop(&store);
    store.checkpoint_now().unwrap();
    // The checkpoint row as it was before the failure.
    let state = db.open_tree("state").unwrap();
    let before_failure = state.get(b"Mcheckpoint").unwrap().unwrap();
    submit_create(&store, &mut shop, "u1").wait().unwrap();

    failing.store(true, Ordering::SeqCst);
    let cmd = shop.create_cmd("u1", &[("D1", 1)], None);
    let events = shop.decide_create(&cmd, &testkit::shopper("u1")).unwrap();
    let skipped = events.len();
    assert!(store
        .submit(0, store.epoch(), events)
        .unwrap()
        .wait()
        .is_err());
    failing.store(false, Ordering::SeqCst);
    let mut waited = 0;
    while !store.is_healthy() && waited < 250 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        waited += 1;
    }
    assert!(store.is_healthy());
    // The rows are written, then a kill leaves the checkpoint row from
    // before the failure (put back by hand here).
    store.checkpoint_now().unwrap();
    store.shutdown().unwrap();
    drop(store);
    state.insert(b"Mcheckpoint", before_failure).unwrap();
    state.flush().unwrap();
    drop((state, db));

    let (store, _db) = open(&failing);
    let reused = store.last_seq() + 1;
    submit_create(&store, &mut shop, "u2").wait().unwrap();
    // The new order's events took the failed ones' sequences.
    assert!(store.last_seq() >= reused + skipped as u64 - 1);
    let d1 = store
        .sku(&testkit::sku_code("D1"))
        .unwrap()
        .expect("D1 is in the catalog");
    assert_eq!(d1.locked, 2, "both acknowledged orders hold their unit");
    store.shutdown().unwrap();
}

/// A keyed success that changed nothing journals only its key, at the
/// version the family already had. A kill before the next checkpoint
/// leaves a family row of that same version without the key; replay must
/// still apply it, or the key's retry after the restart runs again instead
/// of replaying.
#[test]
fn replay_applies_a_key_recorded_at_the_version_the_row_already_has() {
    use ordercore_domain::event::Actor;
    use ordercore_domain::family::IdempotencyEntry;
    use ordercore_domain::ids::IdempotencyKey;
    use ordercore_domain::{Event, EventBody, Target, UserId};

    let dir = tempfile::tempdir().unwrap();
    let (store, db) = open_keeping_db(dir.path(), &Arc::default());
    let mut shop = roomy_shop(&store);
    let ticket = submit_create(&store, &mut shop, "u1");
    let id = ticket
        .unit
        .events
        .iter()
        .find_map(|e| match e.body.target() {
            Target::Family(id) => Some(id),
            _ => None,
        })
        .expect("a family event");
    ticket.wait().unwrap();
    store.checkpoint_now().unwrap();
    let family = store.family(&id).unwrap().expect("the order");
    // Every row as that checkpoint left them.
    let state = db.open_tree("state").unwrap();
    let rows: Vec<(sled::IVec, sled::IVec)> = state.iter().map(Result::unwrap).collect();

    let caller = Actor::user(&UserId::parse("u1").unwrap());
    let key = IdempotencyKey::parse("noop-1").unwrap();
    let record = Event {
        seq: 0,
        at: family.updated_at,
        actor: caller.clone(),
        request_id: None,
        reason: None,
        version: family.version,
        body: EventBody::IdempotencyRecorded(Box::new(IdempotencyEntry {
            family_id: family.order_id,
            caller: caller.clone(),
            key: key.clone(),
            request_hash: 7,
            status: 200,
            body: "{}".into(),
        })),
    };
    store
        .submit(0, store.epoch(), vec![record])
        .unwrap()
        .wait()
        .unwrap();
    // A kill right after: the journal holds the key, the rows do not.
    store.shutdown().unwrap();
    drop(store);
    state.clear().unwrap();
    for (k, v) in rows {
        state.insert(k, v).unwrap();
    }
    state.flush().unwrap();
    drop((state, db));

    let (store, _db) = open_keeping_db(dir.path(), &Arc::default());
    let back = store.family(&family.order_id).unwrap().expect("the order");
    assert_eq!(back.version, family.version);
    assert!(
        back.idempotency
            .iter()
            .any(|e| e.caller == caller && e.key == key && e.request_hash == 7),
        "the key was lost in replay: {:?}",
        back.idempotency
    );
    store.shutdown().unwrap();
}

/// A store with one CREATED order, written by a checkpoint, and the
/// checkpoint row from before that order, to put back as a kill between
/// the checkpoint's rows and its checkpoint row would have left it.
fn one_order_written_behind(
    dir: &std::path::Path,
) -> (Store, sled::Db, Model, OrderId, sled::IVec) {
    let (store, db) = open_keeping_db(dir, &Arc::default());
    let mut model = Model::new(&store);
    store.checkpoint_now().unwrap();
    let before_order = db
        .open_tree("state")
        .unwrap()
        .get(b"Mcheckpoint")
        .unwrap()
        .unwrap();
    let id = model.create(&store, "u1", &[("A1", 1)]).unwrap();
    store.checkpoint_now().unwrap();
    (store, db, model, id, before_order)
}

/// Writes everything behind, restarts, and checks that no deadline row is
/// left (the order is paid) and that every family matches the model.
fn assert_no_deadline_row_after_a_restart(
    dir: &std::path::Path,
    store: Store,
    db: sled::Db,
    model: &Model,
) {
    assert!(store.pending_deadlines().unwrap().is_empty());
    store.checkpoint_now().unwrap();
    store.shutdown().unwrap();
    drop((store, db));
    let (store, _db) = open_keeping_db(dir, &Arc::default());
    assert!(
        store.pending_deadlines().unwrap().is_empty(),
        "a paid order keeps no deadline row"
    );
    model.assert_matches(&store);
    store.shutdown().unwrap();
}

/// Rows a checkpoint wrote before a kill took its checkpoint row are
/// re-marked by replay; a payment afterwards must still remove the order's
/// deadline row, or every restart re-arms a deadline for a paid order.
#[test]
fn a_deadline_row_replay_re_marks_is_removed_when_the_order_is_paid() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db, mut model, id, before_order) = one_order_written_behind(dir.path());
    store.shutdown().unwrap();
    drop(store);
    let state = db.open_tree("state").unwrap();
    state.insert(b"Mcheckpoint", before_order).unwrap();
    state.flush().unwrap();
    drop((state, db));

    let (store, db) = open_keeping_db(dir.path(), &Arc::default());
    let deadlines = store.pending_deadlines().unwrap();
    assert_eq!(deadlines.len(), 1, "the CREATED order's deadline");
    assert!(model.run(
        &store,
        id,
        testkit::provider(),
        pay_action(&model.families[&id], "T-1")
    ));
    assert_no_deadline_row_after_a_restart(dir.path(), store, db, &model);
}

/// The same when the payment itself is replayed: a checkpoint wrote the
/// CREATED order's rows (its deadline row too), the order was paid, and a
/// kill took the checkpoint row; replay re-marks the deadline and then
/// removes it again, and that removal reaches the disk.
#[test]
fn a_deadline_row_is_removed_when_replay_meets_the_payment_too() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db, mut model, id, before_order) = one_order_written_behind(dir.path());
    let state = db.open_tree("state").unwrap();
    // The rows that checkpoint wrote: the CREATED family and its deadline.
    let created_rows: Vec<(sled::IVec, sled::IVec)> = state
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, _)| k.first().is_some_and(|p| *p == b'F' || *p == b'E'))
        .collect();
    assert_eq!(created_rows.len(), 2);
    assert!(model.run(
        &store,
        id,
        testkit::provider(),
        pay_action(&model.families[&id], "T-1")
    ));
    store.shutdown().unwrap();
    drop(store);
    // A kill after that checkpoint's rows, before its checkpoint row, and
    // before anything of the payment reached a row (put back by hand).
    for (key, value) in &created_rows {
        state.insert(key, value.clone()).unwrap();
    }
    state.insert(b"Mcheckpoint", before_order).unwrap();
    state.flush().unwrap();
    drop((state, db));

    let (store, db) = open_keeping_db(dir.path(), &Arc::default());
    assert_no_deadline_row_after_a_restart(dir.path(), store, db, &model);
}

/// Sparse changes never wait for a group: each is flushed at once, even
/// with a wait far longer than the test; dense ones do wait.
#[test]
fn the_writer_waits_for_a_group_only_while_changes_come_fast() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    let wait = std::time::Duration::from_secs(30);
    cfg.group_wait = wait;
    cfg.group_linger_units = 1_000;
    let store = common::open_retrying(cfg);
    let mut shop = roomy_shop(&store);
    let mut create = |store: &Store, owner: &str| submit_create(store, &mut shop, owner);

    // One change at a time, more than a rate window apart.
    let before = store.metrics();
    let started = std::time::Instant::now();
    let sparse = 3;
    for i in 0..sparse {
        std::thread::sleep(ordercore_storage::config::ARRIVAL_RATE_WINDOW * 2);
        create(&store, &format!("sparse{i}")).wait().unwrap();
    }
    assert!(
        started.elapsed() < wait,
        "a sparse change waited for a group"
    );
    let after = store.metrics();
    assert_eq!(after.group_waits, before.group_waits);
    assert_eq!(
        (after.groups - before.groups, after.units - before.units),
        (sparse, sparse)
    );
    store.shutdown().unwrap();
    drop(store);

    // Changes every 100 µs or so (several thousand a second): the writer
    // waits, and the wait ends by its deadline (10 ms here).
    let mut cfg = config(dir.path());
    cfg.group_wait = std::time::Duration::from_millis(10);
    cfg.group_linger_units = 1_000;
    let store = common::open_retrying(cfg);
    let before = store.metrics();
    let started = std::time::Instant::now();
    let mut tickets = Vec::new();
    let mut i = 0;
    // Until the writer has waited a few times, so that changes kept
    // coming while it waited.
    while store.metrics().group_waits < before.group_waits + 3
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        tickets.push(create(&store, &format!("dense{i}")));
        i += 1;
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    for ticket in tickets {
        ticket.wait().unwrap();
    }
    let after = store.metrics();
    assert!(after.group_waits >= before.group_waits + 3, "{i} changes");
    assert!(after.units - before.units > after.groups - before.groups);
    store.shutdown().unwrap();
}

#[test]
fn a_family_created_and_paid_in_one_interval_costs_one_row_and_one_index_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut model = Model::new(&store);
    store.checkpoint_now().unwrap();
    let before = store.metrics().rows_written;
    let orders = 50;
    for i in 0..orders {
        let owner = format!("u{i}");
        let id = model
            .create(&store, &owner, &[("A1", 1), ("A2", 1)])
            .unwrap();
        assert!(model.run(
            &store,
            id,
            testkit::provider(),
            pay_action(&model.families[&id], &format!("T{i}"))
        ));
    }
    store.checkpoint_now().unwrap();
    let rows = store.metrics().rows_written - before;
    // One family row and one user index row per order, plus the two SKU rows.
    assert_eq!(rows, 2 * orders + 2);
    assert!(store.pending_deadlines().unwrap().is_empty());
    model.assert_matches(&store);
    store.shutdown().unwrap();
}

/// A checkpoint someone waits for writes its rows on two threads once
/// enough remain: every row is written once, and reads back.
#[test]
fn a_checkpoint_waited_for_writes_its_rows_on_two_threads_and_all_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_split_rows_min = 8;
    // No background checkpoint in between: the counts below are exact.
    cfg.checkpoint_interval = std::time::Duration::from_secs(3_600);
    let store = Store::open(cfg).unwrap();
    let mut model = Model::new(&store);
    store.checkpoint_now().unwrap();
    let before = store.metrics();
    let orders = 41;
    for i in 0..orders {
        let id = model
            .create(&store, &format!("u{i}"), &[(["A1", "A2", "B1"][i % 3], 1)])
            .unwrap();
        if i % 2 == 0 {
            let pay = pay_action(&model.families[&id], &format!("T{i}"));
            assert!(model.run(&store, id, testkit::provider(), pay));
        }
    }
    store.checkpoint_now().unwrap();
    let after = store.metrics();
    // Families, then index rows (a user row each, a deadline row for each
    // unpaid one): two runs split.
    assert_eq!(after.checkpoint_splits - before.checkpoint_splits, 2);
    let unpaid = orders / 2;
    let skus = 3;
    assert_eq!(
        after.rows_written - before.rows_written,
        (2 * orders + unpaid + skus) as u64
    );
    let store = reopen(store, dir.path());
    model.assert_matches(&store);
    assert_eq!(store.pending_deadlines().unwrap().len(), unpaid);
    store.shutdown().unwrap();
}

/// The background checkpoint spreads its rows over the interval (it
/// pauses between them) and still writes every one of them.
#[test]
fn background_checkpoints_spread_their_rows_and_write_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_interval = std::time::Duration::from_millis(300);
    let store = Store::open(cfg).unwrap();
    let mut model = Model::new(&store);
    // A family row and an index row each: many pace steps. 100 units of
    // each SKU are in stock.
    let orders = 300;
    for i in 0..orders {
        let sku = ["A1", "A2", "B1"][i % 3];
        model.create(&store, &format!("u{i}"), &[(sku, 1)]).unwrap();
    }
    let last = store.last_seq();
    let mut waited = 0;
    while store.metrics().checkpoint_seq < last && waited < 1_000 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    let metrics = store.metrics();
    assert_eq!(
        metrics.checkpoint_seq, last,
        "written behind in the background"
    );
    assert!(metrics.checkpoint_pauses > 0, "the rows were spread");
    assert!(metrics.rows_written >= 2 * orders as u64);
    let store = reopen(store, dir.path());
    model.assert_matches(&store);
    store.shutdown().unwrap();
}

#[test]
fn the_journal_is_an_outbox_and_is_trimmed_after_checkpoint_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let mut cfg: StoreConfig = config(dir.path());
    cfg.clock = Arc::new(clock.clone());
    // A segment per record: the journal is trimmed by whole segments.
    cfg.journal_segment_bytes = 1;
    let store = Store::open(cfg).unwrap();
    let mut model = Model::new(&store);
    let id = model.create(&store, "u1", &[("A1", 1)]).unwrap();
    model.run(
        &store,
        id,
        testkit::provider(),
        pay_action(&model.families[&id], "T-1"),
    );

    let (all, last) = store.events_after(0, 1_000).unwrap();
    assert_eq!(last, store.last_seq());
    let types: Vec<_> = all.iter().map(|e| e.body.type_name()).collect();
    assert!(
        types.contains(&"OrderCreated") && types.contains(&"OrderPaid"),
        "{types:?}"
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let (page, next) = store.events_after(0, 3).unwrap();
    assert_eq!(page.len(), 3);
    let (rest, _) = store.events_after(next, 1_000).unwrap();
    assert_eq!(page.len() + rest.len(), all.len());
    assert_eq!(page.last().unwrap().seq + 1, rest[0].seq);

    // Checkpointed but inside the retention window: kept.
    let first = store.first_held_seq().unwrap();
    assert!(first <= all[0].seq, "{first}");
    store.checkpoint_now().unwrap();
    assert_eq!(store.events_after(0, 1_000).unwrap().0.len(), all.len());
    assert_eq!(store.metrics().journal_records_trimmed, 0);
    assert_eq!(store.first_held_seq().unwrap(), first);
    // Past the window: trimmed at the next checkpoint; state is unaffected.
    clock.advance(11 * 60 * 1000);
    model.create(&store, "u2", &[("A2", 1)]).unwrap();
    store.checkpoint_now().unwrap();
    assert!(store.metrics().journal_records_trimmed >= 3);
    assert!(store.events_after(0, 1_000).unwrap().0.len() < all.len());
    // The first sequence held moved past what was trimmed.
    let held = store.first_held_seq().unwrap();
    assert!(held > last, "{held} after trimming through {last}");
    let store = reopen(store, dir.path());
    assert_eq!(store.first_held_seq().unwrap(), held);
    model.assert_matches(&store);
    store.shutdown().unwrap();
}

#[test]
fn a_users_orders_are_listed_newest_first_with_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut model = Model::new(&store);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(model.create(&store, "u1", &[("A1", 1)]).unwrap());
        model.create(&store, "u2", &[("A1", 1)]).unwrap();
        if i == 2 {
            store.checkpoint_now().unwrap();
        }
    }
    ids.reverse();
    let user = testkit::user("u1");
    assert_eq!(store.user_orders(&user, None, 10).unwrap(), ids);
    let first = store.user_orders(&user, None, 2).unwrap();
    assert_eq!(first, ids[..2]);
    assert_eq!(
        store.user_orders(&user, Some(&first[1]), 10).unwrap(),
        ids[2..]
    );
    let (page, cursor) = store
        .scan_families(None, 3, &mut |f| ControlFlow::Continue(f.user_id == user))
        .unwrap();
    assert_eq!(
        page.iter().map(|f| f.order_id).collect::<Vec<_>>(),
        ids[..3]
    );
    let (rest, _) = store
        .scan_families(cursor.as_ref(), 10, &mut |f| {
            ControlFlow::Continue(f.user_id == user)
        })
        .unwrap();
    assert_eq!(
        rest.iter().map(|f| f.order_id).collect::<Vec<_>>(),
        ids[3..]
    );
    // A caller that has what it wants breaks: the scan stops before that
    // family and goes on after the last one it examined.
    let mut examined = 0;
    let (two, stopped) = store
        .scan_families(None, 10, &mut |_| {
            examined += 1;
            if examined > 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(true)
            }
        })
        .unwrap();
    assert_eq!(examined, 3);
    assert_eq!(two.len(), 2);
    assert_eq!(stopped, Some(two[1].order_id));
    store.shutdown().unwrap();
}

#[test]
fn relaxed_mode_answers_at_once_and_still_reaches_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.durability = ordercore_storage::Durability::Relaxed;
    let store = Store::open(cfg.clone()).unwrap();
    let mut model = Model::new(&store);
    let id = model.create(&store, "u1", &[("A1", 2)]).unwrap();
    assert!(model.run(
        &store,
        id,
        testkit::provider(),
        pay_action(&model.families[&id], "T-r")
    ));
    model.assert_matches(&store);
    store.shutdown().unwrap();
    drop(store);
    let store = common::open_retrying(cfg);
    model.assert_matches(&store);
    assert!(store.family(&id).unwrap().unwrap().is_paid());
    store.shutdown().unwrap();
}

/// A checkpoint writes its rows one by one before the checkpoint row; a
/// crash in between leaves some rows ahead of it. Replay must apply each
/// change exactly once whichever rows got out: here family and index rows
/// are ahead while the SKU and coupon rows are not...
#[test]
fn replay_over_family_rows_ahead_of_the_checkpoint_applies_each_change_once() {
    replay_over_rows_ahead(|k| matches!(k.first(), Some(b'S' | b'C' | b'M')));
}

/// ... here the family rows are ahead while the deadline rows are not (a
/// crash between the two): the paid order's deadline row must go...
#[test]
fn replay_over_family_rows_ahead_of_their_deadline_rows_removes_a_paid_deadline() {
    replay_over_rows_ahead(|k| matches!(k.first(), Some(b'S' | b'C' | b'M' | b'E')));
}

/// ... and here every row is ahead and only the checkpoint row is old.
#[test]
fn replay_over_catalog_rows_ahead_of_the_checkpoint_applies_each_change_once() {
    replay_over_rows_ahead(|k| k.first() == Some(&b'M'));
}

/// A store written before catalog rows carried their sequence: its SKU and
/// coupon rows hold the bare value, written in one batch with their
/// checkpoint row, and replay applies every change after that checkpoint
/// to them once.
#[test]
fn catalog_rows_written_before_stamps_replay_every_later_change_once() {
    replay_over_rows(
        |k| matches!(k.first(), Some(b'S' | b'C' | b'M')),
        |key, value| {
            use ordercore_storage::codec::{decode_body, encode};
            if key.first() == Some(&b'M') {
                return value.to_vec();
            }
            assert_eq!(value.first(), Some(&2), "a stamped row");
            let body = &value[1..];
            match key.first() {
                Some(b'S') => encode(&decode_body::<(u64, Sku)>(body, "sku").unwrap().1),
                Some(b'C') => encode(&decode_body::<(u64, Coupon)>(body, "coupon").unwrap().1),
                _ => return value.to_vec(),
            }
            .unwrap()
        },
    );
}

/// Runs a payment after a checkpoint, checkpoints again, then puts back the
/// rows `restore` picks as the first checkpoint left them, and reopens.
fn replay_over_rows_ahead(restore: fn(&[u8]) -> bool) {
    replay_over_rows(restore, |_, value| value.to_vec());
}

/// [`replay_over_rows_ahead`], putting back each row as `as_written` turns it.
fn replay_over_rows(restore: fn(&[u8]) -> bool, as_written: fn(&[u8], &[u8]) -> Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_retrying(config(dir.path()));
    let mut model = Model::new(&store);
    let paid = model.create(&store, "u1", &[("A1", 2)]).unwrap();
    let open_order = model.create(&store, "u2", &[("A2", 1)]).unwrap();
    store.checkpoint_now().unwrap();
    store.shutdown().unwrap();
    drop(store);

    // The catalog rows and the checkpoint as that checkpoint left them.
    let older: Vec<(Vec<u8>, Vec<u8>)> = {
        let db = raw_db(dir.path());
        let state = db.open_tree("state").unwrap();
        let rows = state
            .iter()
            .map(Result::unwrap)
            .filter(|(k, _)| restore(k))
            .map(|(k, v)| (k.to_vec(), as_written(&k, &v)))
            .collect();
        db.flush().unwrap();
        rows
    };
    assert!(
        older.iter().any(|(k, _)| k.first() == Some(&b'M')),
        "a checkpoint row"
    );

    let store = common::open_retrying(config(dir.path()));
    let family = store.family(&paid).unwrap().unwrap();
    assert!(model.run(
        &store,
        paid,
        testkit::provider(),
        pay_action(&family, "T-AHEAD")
    ));
    store.checkpoint_now().unwrap();
    store.shutdown().unwrap();
    drop(store);

    // As if the process died while the second checkpoint wrote its rows,
    // before its checkpoint row.
    {
        let db = raw_db(dir.path());
        let state = db.open_tree("state").unwrap();
        for (k, v) in &older {
            state.insert(k.as_slice(), v.as_slice()).unwrap();
        }
        db.flush().unwrap();
    }

    let store = common::open_retrying(config(dir.path()));
    assert!(
        store.recovery().replayed_units > 0,
        "the payment is replayed"
    );
    model.assert_matches(&store);
    let family = store.family(&paid).unwrap().unwrap();
    assert_eq!(
        family
            .history
            .iter()
            .filter(|e| e.body.type_name() == "OrderPaid")
            .count(),
        1
    );
    assert!(store.family(&open_order).unwrap().is_some());
    // Only the unpaid order keeps a deadline, before and after the next
    // checkpoint writes the index rows.
    let pending = |store: &Store| -> Vec<OrderId> {
        let deadlines = store.pending_deadlines().unwrap();
        deadlines.into_iter().map(|(_, id)| id).collect()
    };
    assert_eq!(pending(&store), vec![open_order]);
    store.checkpoint_now().unwrap();
    store.shutdown().unwrap();
    drop(store);
    let store = common::open_retrying(config(dir.path()));
    assert_eq!(pending(&store), vec![open_order]);
    store.shutdown().unwrap();
}

/// The store's sled database itself, retrying while a dropped store still
/// holds its lock.
fn raw_db(dir: &std::path::Path) -> sled::Db {
    for _ in 0..100 {
        if let Ok(db) = sled::open(dir) {
            return db;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sled::open(dir).unwrap()
}

/// A lookup of a family that no row can hold (its id is above every family
/// row's) answers none without reading sled; one that a row may hold reads
/// it, before and after a restart.
#[test]
fn lookups_skip_sled_only_for_ids_above_every_stored_family() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut model = Model::new(&store);
    let stored = model.create(&store, "u1", &[("A1", 1)]).unwrap();
    store.checkpoint_now().unwrap();
    let later = OrderId::generate(
        testkit::t0().plus_millis(86_400_000),
        1,
        1,
        &testkit::user("u2"),
    )
    .unwrap();
    let earlier = OrderId::generate(
        testkit::t0().plus_millis(-86_400_000),
        1,
        1,
        &testkit::user("u2"),
    )
    .unwrap();
    assert!(earlier < stored && stored < later);

    let store = reopen(store, dir.path());
    let skipped = || store.metrics().row_reads_skipped;
    let before = skipped();
    // In a row, not in the view: read.
    assert!(store.family(&stored).unwrap().is_some());
    assert_eq!(skipped(), before);
    // Below the greatest stored id: read, and absent.
    assert!(store.family(&earlier).unwrap().is_none());
    assert_eq!(skipped(), before);
    // Above it: absent without a read.
    assert!(store.family(&later).unwrap().is_none());
    assert_eq!(skipped(), before + 1);

    // Once a later family is written behind, its id raises the bound.
    let newer = model.create(&store, "u3", &[("A1", 1)]).unwrap();
    store.checkpoint_now().unwrap();
    let store = reopen(store, dir.path());
    let before = store.metrics().row_reads_skipped;
    assert!(store.family(&newer).unwrap().is_some());
    assert!(store.family(&stored).unwrap().is_some());
    assert_eq!(store.metrics().row_reads_skipped, before);
    model.assert_matches(&store);
    store.shutdown().unwrap();
}

/// A store written when the journal was a sled tree: opening it moves the
/// records into segment files and replays them, so nothing acknowledged
/// before the upgrade is lost.
#[test]
fn a_store_whose_journal_is_in_sled_keeps_every_change_when_it_opens() {
    use ordercore_storage::journal::{encode_unit, RecordBuilder};
    use ordercore_storage::{Journal, SledJournal, Unit};

    let dir = tempfile::tempdir().unwrap();
    let mut model = Model {
        shop: testkit::Shop::default(),
        families: Default::default(),
    };
    let cmd = model.shop.create_cmd("u1", &[("A1", 2)], None);
    let changes = vec![
        common::catalog_events(&model.shop),
        model
            .shop
            .decide_create(&cmd, &testkit::shopper("u1"))
            .unwrap(),
    ];
    {
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let journal = SledJournal::open(&db).unwrap();
        let mut seq = 0;
        for (i, mut events) in changes.into_iter().enumerate() {
            let first = seq + 1;
            for e in &mut events {
                seq += 1;
                e.seq = seq;
            }
            let unit = Unit::new(0, events.clone());
            let mut record = RecordBuilder::new();
            record.push(first, seq, &encode_unit(&unit).unwrap());
            journal
                .append(first - 1, &record.finish(testkit::t0()))
                .unwrap();
            // The shop already holds its catalog (as `Model::new` assumes).
            if i > 0 {
                model.apply(&events);
            }
        }
        db.flush().unwrap();
    }

    let store = common::open_retrying(config(dir.path()));
    assert_eq!(store.recovery().replayed_units, 2);
    assert!(store.family(&cmd.order_id).unwrap().is_some());
    model.assert_matches(&store);
    // Moved, not copied: the next open replays the segments alone.
    let store = reopen(store, dir.path());
    model.assert_matches(&store);
    store.shutdown().unwrap();
}

/// A unit's durable hook runs exactly once, on whichever side comes
/// second — the commit or the hook being set — and hears a failed write.
#[test]
fn a_durable_hook_runs_once_whether_set_before_or_after_the_commit() {
    type Heard = Arc<Mutex<Vec<Result<(), StorageError>>>>;
    fn hook(heard: &Heard) -> ordercore_storage::DurableHook {
        let heard = Arc::clone(heard);
        Box::new(move |result| heard.lock().unwrap().push(result.map_err(Clone::clone)))
    }
    fn heard_within(heard: &Heard, n: usize) -> Vec<Result<(), StorageError>> {
        for _ in 0..200 {
            if heard.lock().unwrap().len() >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        heard.lock().unwrap().clone()
    }

    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let journal = Arc::new(FlakyJournal {
        failing: Arc::clone(&failing),
        ..FlakyJournal::open(dir.path().join(JOURNAL_DIR)).unwrap()
    });
    let store = Store::open_with_journal(config(dir.path()), db, journal).unwrap();
    let mut model = Model::new(&store);
    let mut decided = |user: &str| {
        let cmd = model.shop.create_cmd(user, &[("A1", 1)], None);
        model
            .shop
            .decide_create(&cmd, &testkit::shopper(user))
            .unwrap()
    };

    // Set at once: the writer runs it once the unit is durable.
    let heard: Heard = Arc::default();
    let ticket = store.submit(0, store.epoch(), decided("u1")).unwrap();
    ticket.on_durable.set(hook(&heard));
    let on_durable = Arc::clone(&ticket.on_durable);
    ticket.wait().unwrap();
    assert_eq!(heard_within(&heard, 1), vec![Ok(())]);
    // A second hook is dropped unrun.
    on_durable.set(hook(&heard));
    assert_eq!(heard.lock().unwrap().len(), 1);

    // Set after the commit: it runs right away, on the caller's thread.
    // (The writer completes units in order, so once a later unit is
    // durable, this one's outcome has been fired.)
    let heard: Heard = Arc::default();
    let ticket = store.submit(0, store.epoch(), decided("u2")).unwrap();
    let later = store.submit(0, store.epoch(), decided("u4")).unwrap();
    later.wait().unwrap();
    ticket.on_durable.set(hook(&heard));
    assert_eq!(*heard.lock().unwrap(), vec![Ok(())]);

    // A failed write reaches the hook as the error.
    failing.store(true, Ordering::SeqCst);
    let heard: Heard = Arc::default();
    let ticket = store.submit(0, store.epoch(), decided("u3")).unwrap();
    ticket.on_durable.set(hook(&heard));
    assert!(ticket.wait().is_err());
    let failed = heard_within(&heard, 1);
    assert_eq!(failed.len(), 1);
    assert!(
        matches!(failed[0], Err(StorageError::Unavailable(_))),
        "{failed:?}"
    );
    failing.store(false, Ordering::SeqCst);
    store.shutdown().unwrap();
}

/// In relaxed mode a unit's outcome is known when it is queued; a hook set
/// after the writer has also written it runs at once, with that outcome.
#[test]
fn a_durable_hook_set_after_a_relaxed_unit_was_written_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.durability = ordercore_storage::Durability::Relaxed;
    let store = Store::open(cfg).unwrap();
    let mut model = Model::new(&store);
    let cmd = model.shop.create_cmd("u1", &[("A1", 1)], None);
    let events = model
        .shop
        .decide_create(&cmd, &testkit::shopper("u1"))
        .unwrap();
    let units_before = store.metrics().units;
    let ticket = store.submit(0, store.epoch(), events).unwrap();
    let mut waited = 0;
    while store.metrics().units == units_before && waited < 200 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    assert!(store.metrics().units > units_before, "the writer wrote it");
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    ticket.on_durable.set(Box::new(move |result| {
        flag.store(result.is_ok(), Ordering::SeqCst);
    }));
    assert!(
        ran.load(Ordering::SeqCst),
        "set after queueing and writing: runs at once"
    );
    store.shutdown().unwrap();
}

/// A journalled change the state cannot take (here a payment of an order
/// this store never held) stops the checkpoints, so no trim can lose it,
/// marks the store unhealthy, and a restart refuses to open rather than
/// drop it.
#[test]
fn a_change_the_state_cannot_take_stops_checkpoints_and_the_next_open() {
    let elsewhere = tempfile::tempdir().unwrap();
    let other = common::open_retrying(config(elsewhere.path()));
    let mut model = Model::new(&other);
    let order = model.create(&other, "u1", &[("A1", 1)]).unwrap();
    let family = store_family(&model, order);

    let dir = tempfile::tempdir().unwrap();
    let store = common::open_retrying(config(dir.path()));
    let _catalog = Model::new(&store);
    store.checkpoint_now().unwrap();
    assert!(model.run(
        &store,
        order,
        testkit::provider(),
        pay_action(&family, "T-UNKNOWN")
    ));
    let refused = store.checkpoint_now().unwrap_err();
    assert!(matches!(refused, StorageError::Unavailable(_)), "{refused}");
    assert!(!store.is_healthy());
    assert!(store.metrics().apply_errors > 0);
    let _ = store.shutdown();
    drop(store);
    other.shutdown().unwrap();

    let reopened = loop {
        match Store::open(config(dir.path())) {
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other,
        }
    };
    match reopened {
        Err(StorageError::Corrupt { what, .. }) => assert_eq!(what, "state"),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("opened over a change it cannot apply"),
    }
}

fn store_family(model: &Model, id: OrderId) -> ordercore_domain::OrderFamily {
    model.families.get(&id).unwrap().clone()
}
