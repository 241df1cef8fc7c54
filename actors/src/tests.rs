//! Tests of the core against a real store in a temporary directory, driven
//! by a manual clock: lifecycles, races, the flash sale, passivation,
//! restart recovery, supervision, storage failure and idempotency.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::{CoreConfig, CoreError, Idempotency, OrderCore, Outcome, WriteOptions};
use ordercore_domain::codes::{CancelType, CouponStatus, OrderStatus, ProductType};
use ordercore_domain::family::PayResult;
use ordercore_domain::ids::{IdempotencyKey, TradeNo};
use ordercore_domain::testkit::{self, Shop};
use ordercore_domain::{
    Action, Command, CommandMeta, CreateOrder, ErrorCode, OrderFamily, OrderId, Quantity,
};
use ordercore_storage::testkit::FlakyJournal;
use ordercore_storage::{Journal, ManualClock, Store, StoreConfig, JOURNAL_DIR};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const MINUTE_MS: i64 = 60_000;

fn store_config(dir: &Path, clock: &ManualClock) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    config.clock = Arc::new(clock.clone());
    config
}

fn core_config(clock: &ManualClock) -> CoreConfig {
    CoreConfig {
        shards: 2,
        pay_timeout: Duration::from_millis(testkit::PAY_TIMEOUT_MS.unsigned_abs()),
        clock: Arc::new(clock.clone()),
        ..CoreConfig::default()
    }
}

/// Opens a store, retrying while sled still holds the directory's lock
/// from a store dropped a moment ago.
fn open_store(config: StoreConfig) -> Store {
    let mut tries = 0;
    loop {
        match Store::open(config.clone()) {
            Ok(store) => return store,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open store: {e}"),
        }
    }
}

fn start(dir: &Path, clock: &ManualClock, tweak: impl FnOnce(&mut CoreConfig)) -> OrderCore {
    let mut config = core_config(clock);
    tweak(&mut config);
    OrderCore::start(open_store(store_config(dir, clock)), config).unwrap()
}

/// A core on a journal that fails or stalls when the test says so.
fn start_flaky(
    dir: &Path,
    clock: &ManualClock,
    tweak: impl FnOnce(&mut CoreConfig),
) -> (OrderCore, Arc<FlakyJournal>) {
    let mut config = core_config(clock);
    tweak(&mut config);
    let db = sled::Config::new().path(dir).open().unwrap();
    let journal = Arc::new(FlakyJournal::open(dir.join(JOURNAL_DIR)).unwrap());
    let store = Store::open_with_journal(store_config(dir, clock), db, journal.clone()).unwrap();
    (OrderCore::start(store, config).unwrap(), journal)
}

/// A core on a fresh store at the test clock's start, with the default
/// shop's SKUs and coupons; the directory and clock live as long as the test
/// holds them.
async fn seeded() -> (tempfile::TempDir, ManualClock, OrderCore, Shop) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let core = start(dir.path(), &clock, |_| {});
    let shop = Shop::default();
    seed(&core, &shop).await;
    (dir, clock, core, shop)
}

async fn seed(core: &OrderCore, shop: &Shop) {
    let admin = testkit::admin();
    for sku in &shop.skus {
        core.upsert_sku(&admin, sku.details.clone(), sku.available)
            .await
            .unwrap();
    }
    for coupon in &shop.coupons {
        core.issue_coupon(&admin, coupon.details.clone())
            .await
            .unwrap();
    }
}

fn family_of(outcome: Outcome) -> Arc<OrderFamily> {
    match outcome {
        Outcome::Applied { family, .. } | Outcome::DryRun { family, .. } => family,
        Outcome::Replayed { .. } => panic!("unexpected replay"),
    }
}

async fn create(core: &OrderCore, cmd: CreateOrder) -> Result<Arc<OrderFamily>, CoreError> {
    let meta = CommandMeta::by(ordercore_domain::Actor::user(&cmd.user_id));
    core.create_order(cmd, meta, None).await.map(family_of)
}

async fn pay(
    core: &OrderCore,
    family: &OrderFamily,
    trade_no: &str,
) -> Result<Arc<OrderFamily>, CoreError> {
    let cmd = Command {
        meta: testkit::provider(),
        action: testkit::pay_action(family, trade_no),
    };
    core.execute(cmd, WriteOptions::default())
        .await
        .map(family_of)
}

async fn cancel(core: &OrderCore, family: &OrderFamily) -> Result<Arc<OrderFamily>, CoreError> {
    let meta = CommandMeta::by(ordercore_domain::Actor::user(&family.user_id));
    core.cancel(
        meta,
        family.order_id,
        CancelType::USER_CANCELED,
        WriteOptions::default(),
    )
    .await
    .map(family_of)
}

fn code(e: &CoreError) -> ErrorCode {
    e.code()
}

#[actix::test]
async fn an_order_is_created_paid_and_read_back_with_stock_and_coupon_moved() {
    let (_dir, _clock, core, mut shop) = seeded().await;

    let cmd = shop.create_cmd("u1", &[("A1", 2), ("B1", 1)], Some("C1"));
    let id = cmd.order_id;
    let created = create(&core, cmd).await.unwrap();
    assert_eq!(created.status, OrderStatus::CREATED);
    assert_eq!(created.sub_orders.len(), 2, "mixed product types split");
    assert_eq!(
        core.sku(&testkit::sku_code("A1")).unwrap().unwrap().locked,
        2
    );
    let coupon = core
        .coupon(&ordercore_domain::CouponId::parse("C1").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        (coupon.status, coupon.order_id),
        (CouponStatus::LOCKED, Some(id))
    );
    assert_eq!(core.armed_deadlines(), 1);

    let paid = pay(&core, &created, "T-1").await.unwrap();
    assert_eq!(
        paid.payment_result(&TradeNo::parse("T-1").unwrap())
            .unwrap()
            .0,
        PayResult::Paid
    );
    let a1 = core.sku(&testkit::sku_code("A1")).unwrap().unwrap();
    assert_eq!((a1.available, a1.locked, a1.sold), (98, 0, 2));
    let coupon = core
        .coupon(&ordercore_domain::CouponId::parse("C1").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(coupon.status, CouponStatus::USED);
    assert_eq!(core.armed_deadlines(), 0, "a paid order has no deadline");

    // A sub-order id reaches the same family; reads see the durable state.
    let read = core.order(&created.sub_orders[0].order_id).await.unwrap();
    assert_eq!(read.version, paid.version);
    // The live state and the written-behind state agree, journal positions
    // included.
    assert!(
        read.history.iter().all(|e| e.seq > 0),
        "history carries seqs"
    );
    core.store().checkpoint_now().unwrap();
    let stored = core.store().family(&id).unwrap().unwrap();
    assert_eq!(*stored, *read);
    let again = pay(&core, &created, "T-1").await.unwrap();
    assert_eq!(
        again.version, paid.version,
        "a duplicate callback changes nothing"
    );

    let m = core.metrics();
    assert_eq!((m.outcomes.orders_created, m.outcomes.orders_paid), (1, 1));
    assert!(m.active_actors >= 1);
    core.shutdown().unwrap();
}

/// Commands in flight at once in [`in_waves`].
const WAVE: usize = 1_000;

/// Runs `run` on every command, [`WAVE`] of them in flight at once, and
/// answers the results in order.
async fn in_waves<T, F, Fut>(core: &OrderCore, cmds: Vec<CreateOrder>, run: F) -> Vec<T>
where
    F: Fn(OrderCore, CreateOrder) -> Fut,
    Fut: std::future::Future<Output = T> + 'static,
    T: 'static,
{
    let mut results = Vec::with_capacity(cmds.len());
    let mut cmds = cmds.into_iter();
    loop {
        let wave: Vec<_> = cmds.by_ref().take(WAVE).collect();
        if wave.is_empty() {
            return results;
        }
        let tasks: Vec<_> = wave
            .into_iter()
            .map(|cmd| actix::spawn(run(core.clone(), cmd)))
            .collect();
        for task in tasks {
            results.push(task.await.unwrap());
        }
    }
}

#[actix::test]
async fn flash_sale_sells_exactly_the_stock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let core = start(dir.path(), &clock, |_| {});
    let mut shop = Shop::default();
    shop.skus = vec![testkit::sku("F1", ProductType::NORMAL_PRODUCT, 990, 100)];
    shop.coupons = Vec::new();
    seed(&core, &shop).await;

    let attempts = 10_000;
    let cmds: Vec<CreateOrder> = (0..attempts)
        .map(|i| shop.create_cmd(&format!("buyer-{i}"), &[("F1", 1)], None))
        .collect();
    let mut outcomes: HashMap<&'static str, usize> = HashMap::new();
    // Every wave races for the same SKU.
    let results = in_waves(
        &core,
        cmds,
        |core, cmd| async move { create(&core, cmd).await },
    )
    .await;
    for result in results {
        let key = match result {
            Ok(_) => "created",
            Err(e) if code(&e) == ErrorCode::PRODUCT_STOCK_NOT_ENOUGH => "sold out",
            Err(e) => panic!("unexpected refusal: {e}"),
        };
        *outcomes.entry(key).or_default() += 1;
    }
    assert_eq!(outcomes["created"], 100);
    assert_eq!(outcomes["sold out"], attempts - 100);
    let f1 = core.sku(&testkit::sku_code("F1")).unwrap().unwrap();
    assert_eq!((f1.available, f1.locked, f1.sold), (0, 100, 0));
    assert_eq!(core.metrics().outcomes.orders_created, 100);
    core.shutdown().unwrap();
}

/// What a race run saw, case by case (each must be met at least once).
#[derive(Debug, Default)]
struct RaceCases {
    paid: usize,
    canceled_unpaid: usize,
    timed_out: usize,
    timed_out_then_paid: usize,
    paid_then_canceled: usize,
    canceled_then_paid: usize,
    coupons_used: usize,
    coupon_double_use_refused: usize,
}

#[actix::test]
async fn pay_cancel_and_deadline_race_on_ten_thousand_orders() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let core = start(dir.path(), &clock, |_| {});
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let users = 400;
    let mut shop = Shop::default();
    shop.skus = (0..40)
        .map(|i| {
            let kind = if i % 4 == 0 {
                ProductType::ADVANCE_SALE
            } else {
                ProductType::NORMAL_PRODUCT
            };
            testkit::sku(&format!("S{i}"), kind, 1_000 + i * 10, 1_000_000)
        })
        .collect();
    shop.coupons = (0..users)
        .map(|u| testkit::coupon(&format!("K{u}"), &format!("r{u}"), 500, 1_000))
        .collect();
    seed(&core, &shop).await;
    let mut cases = RaceCases::default();

    // Half the orders at t0, half 20 minutes later; in the second half each
    // user's first two orders both try the user's coupon at once.
    let total = 10_000;
    let mut orders: Vec<Arc<OrderFamily>> = Vec::new();
    for half in 0..2 {
        if half == 1 {
            clock.advance(20 * MINUTE_MS);
            shop.now = clock_now(&clock);
        }
        let mut tasks = Vec::new();
        for i in 0..total / 2 {
            let n = half * total / 2 + i;
            let user = n % users;
            let a = rng.gen_range(0..40);
            let b = (a + rng.gen_range(1..40)) % 40;
            let items: Vec<(String, Quantity)> = vec![
                (format!("S{a}"), rng.gen_range(1..4)),
                (format!("S{b}"), rng.gen_range(1..4)),
            ];
            let items: Vec<(&str, Quantity)> =
                items.iter().map(|(c, q)| (c.as_str(), *q)).collect();
            let coupon = (half == 1 && i < 2 * users).then(|| format!("K{user}"));
            let cmd = shop.create_cmd(&format!("r{user}"), &items, coupon.as_deref());
            let core = core.clone();
            tasks.push(actix::spawn(async move { create(&core, cmd).await }));
        }
        for task in tasks {
            match task.await.unwrap() {
                Ok(f) => orders.push(f),
                Err(e) => {
                    assert!(
                        matches!(code(&e), ErrorCode::USER_COUPON_IS_USED),
                        "unexpected refusal: {e}"
                    );
                    cases.coupon_double_use_refused += 1;
                }
            }
        }
    }
    assert!(orders.len() >= total - users, "created {}", orders.len());

    // The first half is past its deadline now, the second is not.
    clock.set(testkit::t0().plus_millis(31 * MINUTE_MS));
    let mut tasks = Vec::new();
    let mut pay_results = HashMap::new();
    for (i, family) in orders.iter().enumerate() {
        let mut ops = vec!["pay", "tick"];
        if i % 2 == 0 {
            ops.push("cancel");
        }
        ops.shuffle(&mut rng);
        for op in ops {
            let (core, family) = (core.clone(), Arc::clone(family));
            tasks.push(actix::spawn(async move {
                let trade_no = format!("T-{}", family.order_id);
                let result = match op {
                    "pay" => pay(&core, &family, &trade_no).await.map(|f| {
                        let t = TradeNo::parse(&trade_no).unwrap();
                        Some((family.order_id, f.payment_result(&t).map(|r| r.0)))
                    }),
                    "cancel" => cancel(&core, &family).await.map(|_| None),
                    _ => {
                        core.fire_due_deadlines().await;
                        Ok(None)
                    }
                };
                (op, result)
            }));
        }
    }
    for task in tasks {
        match task.await.unwrap() {
            ("pay", Ok(Some((id, result)))) => {
                pay_results.insert(id, result);
            }
            ("cancel", Err(e)) => assert_eq!(code(&e), ErrorCode::ORDER_CANNOT_CANCEL, "{e}"),
            (op, Err(e)) => panic!("{op} failed: {e}"),
            _ => {}
        }
    }
    while core.fire_due_deadlines().await > 0 {}

    let mut locked: HashMap<String, i64> = HashMap::new();
    let mut sold: HashMap<String, i64> = HashMap::new();
    let mut coupon_holders: HashMap<String, Vec<(OrderId, OrderStatus)>> = HashMap::new();
    for created in &orders {
        let family = core.order(&created.order_id).await.unwrap();
        let payments = usize::from(family.payment.trade_no.is_some()) + family.extra_payments.len();
        assert_eq!(payments, 1, "one callback per order: {}", family.order_id);
        let statuses = family.live_statuses();
        let canceled = family.status == OrderStatus::CANCELED;
        if canceled {
            assert!(statuses.iter().all(|s| *s == OrderStatus::CANCELED));
            assert_eq!(
                family.after_sales.len(),
                1,
                "exactly one refund: {}",
                family.order_id
            );
            let refund = &family.after_sales[0];
            assert_eq!(refund.apply_refund_amount, family.amounts.real_pay);
            match (family.cancel_type, family.payment.trade_no.is_some()) {
                (Some(CancelType::TIMEOUT_CANCELED), _) => {
                    cases.timed_out += 1;
                    cases.timed_out_then_paid += 1;
                }
                (_, true) => cases.paid_then_canceled += 1,
                (_, false) => cases.canceled_then_paid += 1,
            }
        } else {
            assert!(
                statuses.iter().all(|s| *s == OrderStatus::PAID),
                "{}: {statuses:?}",
                family.order_id
            );
            assert!(family.after_sales.is_empty());
            cases.paid += 1;
            for line in &family.lines {
                *sold.entry(line.sku_code.to_string()).or_default() +=
                    i64::from(line.sale_quantity);
            }
        }
        if statuses.contains(&OrderStatus::CREATED) {
            for line in &family.lines {
                *locked.entry(line.sku_code.to_string()).or_default() +=
                    i64::from(line.sale_quantity);
            }
        }
        if let Some(c) = &family.coupon {
            coupon_holders
                .entry(c.coupon_id.to_string())
                .or_default()
                .push((family.order_id, family.status));
        }
        let expected = pay_results[&family.order_id];
        match expected {
            Some(PayResult::Paid) => {}
            Some(PayResult::Refund) => assert!(canceled),
            other => panic!("unexpected pay result {other:?}"),
        }
    }
    cases.canceled_unpaid = cases.canceled_then_paid;

    for sku in core.skus().unwrap() {
        let code = sku.code().to_string();
        assert_eq!(
            sku.locked,
            locked.get(&code).copied().unwrap_or(0),
            "locked of {code}"
        );
        assert_eq!(
            sku.sold,
            sold.get(&code).copied().unwrap_or(0),
            "sold of {code}"
        );
        assert_eq!(sku.total(), 1_000_000, "conservation of {code}");
    }
    for (id, holders) in &coupon_holders {
        let coupon = core
            .coupon(&ordercore_domain::CouponId::parse(id).unwrap())
            .unwrap()
            .unwrap();
        let live: Vec<_> = holders
            .iter()
            .filter(|(_, s)| *s != OrderStatus::CANCELED)
            .collect();
        assert!(live.len() <= 1, "coupon {id} held by {live:?}");
        match live.first() {
            Some((order, _)) => {
                assert_eq!(
                    (coupon.status, coupon.order_id),
                    (CouponStatus::USED, Some(*order))
                );
                cases.coupons_used += 1;
            }
            None => assert_eq!(coupon.status, CouponStatus::UNUSED, "coupon {id}"),
        }
    }
    let m = core.metrics();
    assert!(
        m.deadlines_fired > 0 && m.outcomes.orders_timed_out > 0,
        "{m:?}"
    );
    assert_eq!(m.outcomes.orders_timed_out, cases.timed_out as u64);
    for (name, count) in [
        ("paid", cases.paid),
        ("canceled before paid", cases.canceled_unpaid),
        ("timed out, then paid", cases.timed_out_then_paid),
        ("paid, then canceled", cases.paid_then_canceled),
        ("coupon used", cases.coupons_used),
        ("coupon double use refused", cases.coupon_double_use_refused),
    ] {
        assert!(count > 0, "no case of '{name}' in this run: {cases:?}");
    }
    core.shutdown().unwrap();
}

fn clock_now(clock: &ManualClock) -> ordercore_domain::Timestamp {
    use ordercore_storage::Clock;
    clock.now()
}

#[actix::test]
async fn idle_actors_passivate_and_come_back_on_the_next_message() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let core = start(dir.path(), &clock, |c| {
        c.passivate_after = Duration::from_millis(30);
    });
    let mut shop = Shop::default();
    seed(&core, &shop).await;
    let created = create(&core, shop.create_cmd("u2", &[("A1", 1)], None))
        .await
        .unwrap();
    let mut waited = 0;
    while core.metrics().active_actors > 0 && waited < 200 {
        actix::clock::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    let m = core.metrics();
    assert_eq!(m.active_actors, 0, "passivated: {m:?}");
    assert!(m.passivations >= 1);
    // Reads do not activate; writes do, from storage.
    assert_eq!(core.order(&created.order_id).await.unwrap().version, 1);
    assert_eq!(core.metrics().activations, m.activations);
    let paid = pay(&core, &created, "T-9").await.unwrap();
    assert_eq!(paid.version, 2);
    assert_eq!(core.metrics().activations, m.activations + 1);
    // The deadline stays armed while passivated and would wake the order.
    assert_eq!(core.armed_deadlines(), 0);
    core.shutdown().unwrap();
}

#[actix::test]
async fn idle_actors_can_be_passivated_on_demand() {
    let (_dir, _clock, core, mut shop) = seeded().await;
    let mut orders = Vec::new();
    for user in ["p1", "p2", "p3"] {
        orders.push(
            create(&core, shop.create_cmd(user, &[("A2", 1)], None))
                .await
                .unwrap(),
        );
    }
    assert_eq!(core.metrics().active_actors, 3);
    assert_eq!(core.passivate_idle(Duration::ZERO), 3);
    assert!(eventually(|| core.metrics().active_actors == 0).await);
    for (i, order) in orders.iter().enumerate() {
        let paid = pay(&core, order, &format!("T-P{i}")).await.unwrap();
        assert!(paid.is_paid());
    }
    assert_eq!(core.metrics().passivations, 3);
    core.shutdown().unwrap();
}

/// Polls `done` every 10 ms for up to 3 s.
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..300 {
        if done() {
            return true;
        }
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[actix::test]
async fn idle_actors_keep_a_compact_family_and_read_the_rest_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let tweak = |c: &mut CoreConfig| c.compact_after = Duration::from_secs(3_600);
    let core = start(dir.path(), &clock, tweak);
    let mut shop = Shop::default();
    seed(&core, &shop).await;
    let mixed = create(
        &core,
        shop.create_cmd("u1", &[("A1", 2), ("B1", 1)], Some("C1")),
    )
    .await
    .unwrap();
    let unpaid = create(&core, shop.create_cmd("k2", &[("A2", 1)], None))
        .await
        .unwrap();
    let canceled = create(&core, shop.create_cmd("k3", &[("A1", 1)], None))
        .await
        .unwrap();
    let whole_before = core.order(&mixed.order_id).await.unwrap();
    assert!(!whole_before.compact);
    assert_eq!(core.compact_idle(Duration::ZERO), 3);
    assert!(eventually(|| core.metrics().compactions == 3).await);

    // A payment is decided on the compact state, without reading storage.
    let paid = pay(&core, &mixed, "T-K1").await.unwrap();
    assert!(paid.compact, "answered from the compact state");
    assert!(
        paid.is_paid()
            && paid
                .sub_orders
                .iter()
                .all(|s| s.status == OrderStatus::PAID)
    );
    assert_eq!(core.metrics().rehydrations, 0);
    // A read gets the whole family back: snapshots, status log, history.
    let read = core.order(&mixed.order_id).await.unwrap();
    assert!(!read.compact);
    assert_eq!(core.metrics().rehydrations, 1);
    assert_eq!(read.version, paid.version);
    assert_eq!(read.lines, whole_before.lines, "product snapshots are back");
    assert!(read.status_log.len() > whole_before.status_log.len());
    let paid_events = |f: &OrderFamily| {
        f.history
            .iter()
            .filter(|e| matches!(e.body, ordercore_domain::EventBody::OrderPaid(_)))
            .count()
    };
    assert_eq!((paid_events(&whole_before), paid_events(&read)), (0, 1));
    core.store().checkpoint_now().unwrap();
    assert_eq!(
        *core.store().family(&mixed.order_id).unwrap().unwrap(),
        *read
    );

    // A reply that shows the detail reads the whole family first.
    assert_eq!(core.compact_idle(Duration::ZERO), 3);
    assert!(
        eventually(|| core.metrics().compactions == 4).await,
        "only the one read back"
    );
    let meta = CommandMeta::by(ordercore_domain::Actor::user(&canceled.user_id));
    let detail = WriteOptions {
        whole: true,
        ..WriteOptions::default()
    };
    let after = family_of(
        core.cancel(meta, canceled.order_id, CancelType::USER_CANCELED, detail)
            .await
            .unwrap(),
    );
    assert!(!after.compact);
    assert_eq!(after.status_log.last().unwrap().to, OrderStatus::CANCELED);
    assert_eq!(after.lines[0].product_name, canceled.lines[0].product_name);

    // The deadline cancels a compact family.
    clock.advance(testkit::PAY_TIMEOUT_MS + 1);
    assert_eq!(core.fire_due_deadlines().await, 1);
    assert!(
        eventually(|| core.metrics().outcomes.orders_timed_out == 1).await,
        "the deadline fired"
    );
    let timed_out = core.order(&unpaid.order_id).await.unwrap();
    assert_eq!(timed_out.cancel_type, Some(CancelType::TIMEOUT_CANCELED));
    assert!(!timed_out.compact);
    let m = core.metrics();
    assert!(m.rehydrations >= 3, "{m:?}");

    // An edit is decided on the compact state too, which counts the edits
    // its history held for the edit limit; packed again between two notes,
    // it keeps the count.
    let before = core.metrics().rehydrations;
    for n in 1..=2 {
        let compactions = core.metrics().compactions;
        assert!(core.compact_idle(Duration::ZERO) >= 1);
        assert!(eventually(|| core.metrics().compactions > compactions).await);
        let admin = CommandMeta::by(ordercore_domain::Actor::admin("ops"));
        let noted = family_of(
            core.add_note(
                admin,
                mixed.order_id,
                format!("called the customer, {n}"),
                WriteOptions::default(),
            )
            .await
            .unwrap(),
        );
        assert!(noted.compact, "decided on the compact state");
        assert_eq!(noted.edits(), n);
    }
    assert_eq!(core.metrics().rehydrations, before);
    core.shutdown().unwrap();
    drop(core);

    // Everything the compact states changed is durable, whole.
    let core = start(dir.path(), &clock, tweak);
    for (family, status, version) in [
        (&mixed, OrderStatus::INVALID, 4),
        (&unpaid, OrderStatus::CANCELED, 2),
        (&canceled, OrderStatus::CANCELED, 2),
    ] {
        let stored = core.order(&family.order_id).await.unwrap();
        assert_eq!((stored.status, stored.version), (status, version));
        assert_eq!(
            stored.history.len(),
            stored.history.iter().filter(|e| e.seq > 0).count()
        );
    }
    core.shutdown().unwrap();
}

/// A compact family keeps none of the replies recorded for keys (one can
/// be a whole order's detail, and a family keeps up to 64): a keyed retry
/// reads the whole family back and gets its recorded reply.
#[actix::test]
async fn a_compact_family_keeps_no_recorded_replies_and_a_keyed_retry_gets_its_own() {
    let (_dir, _clock, core, mut shop) = seeded().await;
    let order = create(&core, shop.create_cmd("u1", &[("A1", 1)], None))
        .await
        .unwrap();
    let reply = "{\"a long recorded reply\":true}".repeat(40);
    let keyed = |key: &str| WriteOptions {
        idempotency: Some(Idempotency {
            key: IdempotencyKey::parse(key).unwrap(),
            request_hash: 7,
            render: Box::new({
                let reply = reply.clone();
                move |_, _| (200, reply.clone())
            }),
        }),
        ..WriteOptions::default()
    };
    let note = |text: &str, opts: WriteOptions| {
        let admin = CommandMeta::by(ordercore_domain::Actor::admin("ops"));
        core.add_note(admin, order.order_id, text.to_owned(), opts)
    };
    let first = note("keyed", keyed("note-1")).await.unwrap();
    assert!(!family_of(first).idempotency.is_empty());

    let compactions = core.metrics().compactions;
    assert_eq!(core.compact_idle(Duration::ZERO), 1);
    assert!(eventually(|| core.metrics().compactions > compactions).await);
    // Decided on the compact state, which holds no recorded reply.
    let compact = family_of(note("plain", WriteOptions::default()).await.unwrap());
    assert!(compact.compact, "decided on the compact state");
    assert!(compact.idempotency.is_empty());

    let rehydrations = core.metrics().rehydrations;
    let retried = note("keyed", keyed("note-1")).await.unwrap();
    assert!(
        matches!(&retried, Outcome::Replayed { status: 200, body } if *body == reply),
        "{retried:?}"
    );
    assert_eq!(core.metrics().rehydrations, rehydrations + 1);
    let whole = core.order(&order.order_id).await.unwrap();
    assert_eq!(whole.idempotency.len(), 1);
    assert_eq!(whole.idempotency[0].body, reply);
    core.shutdown().unwrap();
}

#[actix::test]
async fn an_actor_compacts_its_family_on_its_own_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let core = start(dir.path(), &clock, |c| {
        c.compact_after = Duration::from_millis(20);
    });
    let mut shop = Shop::default();
    seed(&core, &shop).await;
    let created = create(&core, shop.create_cmd("k4", &[("A1", 1)], None))
        .await
        .unwrap();
    assert!(eventually(|| core.metrics().compactions >= 1).await);
    assert_eq!(core.metrics().active_actors, 1, "compacted, not passivated");
    let paid = pay(&core, &created, "T-K4").await.unwrap();
    assert!(paid.compact && paid.is_paid());
    core.shutdown().unwrap();
}

/// The first idle check comes while the creation is still being written:
/// the actor looks again once it is quiet, not only when passivation is due.
#[actix::test]
async fn an_actor_busy_at_its_first_idle_check_compacts_later() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let (core, journal) = start_flaky(dir.path(), &clock, |c| {
        c.compact_after = Duration::from_millis(20);
        c.passivate_after = Duration::from_secs(3_600);
    });
    let mut shop = Shop::default();
    seed(&core, &shop).await;
    journal.stalled.store(true, Ordering::SeqCst);
    let creating = {
        let core = core.clone();
        let cmd = shop.create_cmd("k5", &[("A1", 1)], None);
        actix::spawn(async move { create(&core, cmd).await })
    };
    // Several idle checks' worth of a slow disk.
    assert!(eventually(|| core.metrics().active_actors == 1).await);
    actix::clock::sleep(Duration::from_millis(100)).await;
    assert_eq!(core.metrics().compactions, 0, "nothing compacts while busy");
    journal.stalled.store(false, Ordering::SeqCst);
    creating.await.unwrap().unwrap();
    assert!(eventually(|| core.metrics().compactions >= 1).await);
    core.shutdown().unwrap();
}

/// A read that comes while a change of a compact family is being written
/// waits for it, then reads the whole family back: it never takes the
/// stored state from before the change, which would roll the actor back
/// under a payment that then lands (and let its deadline cancel it).
#[actix::test]
async fn a_read_during_a_change_of_a_compact_family_waits_for_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let (core, journal) = start_flaky(dir.path(), &clock, |c| {
        c.compact_after = Duration::from_secs(3_600);
    });
    let mut shop = Shop::default();
    seed(&core, &shop).await;
    let created = create(&core, shop.create_cmd("r1", &[("A1", 1)], None))
        .await
        .unwrap();
    assert_eq!(core.compact_idle(Duration::ZERO), 1);
    assert!(eventually(|| core.metrics().compactions == 1).await);

    journal.stalled.store(true, Ordering::SeqCst);
    let appended = journal.last_seq().unwrap();
    let paying = {
        let (core, created) = (core.clone(), Arc::clone(&created));
        actix::spawn(async move { pay(&core, &created, "T-R1").await })
    };
    // The payment is written, its flush held.
    assert!(eventually(|| journal.last_seq().unwrap() > appended).await);
    let reading = {
        let (core, id) = (core.clone(), created.order_id);
        actix::spawn(async move { core.order(&id).await })
    };
    // The read reaches the actor while the payment is in flight, and is
    // still unanswered when the payment's flush goes through: the case
    // this test is about.
    actix::clock::sleep(Duration::from_millis(20)).await;
    assert!(!reading.is_finished(), "the read waits behind the payment");
    journal.stalled.store(false, Ordering::SeqCst);
    assert!(paying.await.unwrap().unwrap().is_paid());
    let read = reading.await.unwrap().unwrap();
    assert!(read.is_paid(), "the read waited for the payment");
    assert!(!read.compact, "and read the whole family back");

    // The actor holds the payment: its deadline is gone.
    clock.advance(testkit::PAY_TIMEOUT_MS + 1);
    assert_eq!(core.fire_due_deadlines().await, 0);
    let after = core.order(&created.order_id).await.unwrap();
    assert!(after.is_paid());
    assert_eq!(core.metrics().outcomes.orders_timed_out, 0);
    core.shutdown().unwrap();
}

/// A cancellation whose write fails leaves the order CREATED: its payment
/// deadline comes back with the state, also when no other message comes
/// before the actor passivates.
#[actix::test]
async fn a_failed_cancel_keeps_the_payment_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let (core, journal) = start_flaky(dir.path(), &clock, |c| {
        c.compact_after = Duration::from_millis(20);
        c.passivate_after = Duration::from_millis(50);
    });
    let mut shop = Shop::default();
    seed(&core, &shop).await;
    let created = create(&core, shop.create_cmd("f1", &[("A1", 1)], None))
        .await
        .unwrap();
    journal.failing.store(true, Ordering::SeqCst);
    assert!(cancel(&core, &created).await.is_err());
    journal.failing.store(false, Ordering::SeqCst);
    assert!(eventually(|| core.store().is_healthy()).await);
    assert!(
        eventually(|| core.metrics().active_actors == 0).await,
        "passivated without another message"
    );
    clock.advance(testkit::PAY_TIMEOUT_MS + 1);
    assert_eq!(core.fire_due_deadlines().await, 1, "the deadline is armed");
    assert!(eventually(|| core.metrics().outcomes.orders_timed_out == 1).await);
    let after = core.order(&created.order_id).await.unwrap();
    assert_eq!(after.cancel_type, Some(CancelType::TIMEOUT_CANCELED));
    core.shutdown().unwrap();
}

/// A panic right after a payment is submitted (a defect) cannot lose the
/// payment: it lands, the actor reloads only once it has, and the caller
/// is answered from that state.
#[actix::test]
async fn a_panic_after_a_submit_reloads_once_the_change_has_landed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let (core, journal) = start_flaky(dir.path(), &clock, |_| {});
    let mut shop = Shop::default();
    seed(&core, &shop).await;
    let created = create(&core, shop.create_cmd("p1", &[("A1", 1)], None))
        .await
        .unwrap();
    journal.stalled.store(true, Ordering::SeqCst);
    core.shared.panic_after_submit.store(true, Ordering::SeqCst);
    let paying = {
        let (core, created) = (core.clone(), Arc::clone(&created));
        actix::spawn(async move { pay(&core, &created, "T-P1").await })
    };
    assert!(
        eventually(|| core.metrics().restarts == 1).await,
        "the fault hit"
    );
    actix::clock::sleep(Duration::from_millis(20)).await;
    journal.stalled.store(false, Ordering::SeqCst);
    let paid = paying.await.unwrap().unwrap();
    assert!(paid.is_paid(), "answered from the state after the payment");
    let read = core.order(&created.order_id).await.unwrap();
    assert!(read.is_paid());
    clock.advance(testkit::PAY_TIMEOUT_MS + 1);
    assert_eq!(
        core.fire_due_deadlines().await,
        0,
        "no deadline for a paid order"
    );
    core.shutdown().unwrap();
}

/// An outbox cursor before what the journal still holds is refused with
/// the sequence to resume from, instead of answering the later events as
/// if none were skipped.
#[actix::test]
async fn an_outbox_cursor_before_the_retained_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let mut config = store_config(dir.path(), &clock);
    // A segment per record: the journal is trimmed by whole segments.
    config.journal_segment_bytes = 1;
    let core = OrderCore::start(open_store(config), core_config(&clock)).unwrap();
    let mut shop = Shop::default();
    seed(&core, &shop).await;
    create(&core, shop.create_cmd("o1", &[("A1", 1)], None))
        .await
        .unwrap();
    assert!(!core.events_after(0, 100).unwrap().0.is_empty());
    // Past the retention window, a checkpoint trims what it covers.
    clock.advance(11 * MINUTE_MS);
    create(&core, shop.create_cmd("o2", &[("A1", 1)], None))
        .await
        .unwrap();
    core.store().checkpoint_now().unwrap();
    let first = core.store().first_held_seq().unwrap();
    assert!(first > 2, "trimmed");
    // Cursor 0 is the start of what is held (a new consumer).
    let (from_start, _) = core.events_after(0, 100).unwrap();
    assert!(from_start.first().is_some_and(|e| e.seq >= first));
    let refused = core.events_after(1, 100).unwrap_err();
    assert_eq!(code(&refused), ErrorCode::CURSOR_INVALID);
    assert!(
        refused
            .to_string()
            .contains(&format!("after={}", first - 1)),
        "{refused}"
    );
    let (events, _) = core.events_after(first - 1, 100).unwrap();
    assert_eq!(events.first().map(|e| e.seq), Some(first));
    // A cursor past the last acknowledged event was never handed out.
    let last = core.store().last_seq();
    assert!(core.events_after(last, 100).unwrap().0.is_empty());
    let beyond = core.events_after(last + 1, 100).unwrap_err();
    assert_eq!(beyond.code(), ErrorCode::CURSOR_INVALID, "{beyond}");
    core.shutdown().unwrap();
}

#[actix::test]
async fn a_restart_rearms_deadlines_and_keeps_acknowledged_states() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let mut shop = Shop::default();
    let (unpaid, paid) = {
        let core = start(dir.path(), &clock, |_| {});
        seed(&core, &shop).await;
        let unpaid = create(&core, shop.create_cmd("u3", &[("A2", 2)], None))
            .await
            .unwrap();
        let paid = create(&core, shop.create_cmd("u4", &[("A1", 1)], None))
            .await
            .unwrap();
        pay(&core, &paid, "T-P").await.unwrap();
        core.shutdown().unwrap();
        (unpaid.order_id, paid.order_id)
    };
    // Down past the deadline.
    clock.advance(testkit::PAY_TIMEOUT_MS + MINUTE_MS);
    let core = start(dir.path(), &clock, |_| {});
    assert_eq!(
        core.armed_deadlines(),
        1,
        "the unpaid order's deadline is re-armed"
    );
    assert_eq!(
        core.fire_due_deadlines().await,
        1,
        "an overdue deadline fires at once"
    );
    let canceled = core.order(&unpaid).await.unwrap();
    let mut waited = 0;
    let mut canceled = canceled;
    while canceled.status != OrderStatus::CANCELED && waited < 100 {
        actix::clock::sleep(Duration::from_millis(10)).await;
        canceled = core.order(&unpaid).await.unwrap();
        waited += 1;
    }
    assert_eq!(canceled.status, OrderStatus::CANCELED);
    assert_eq!(canceled.cancel_type, Some(CancelType::TIMEOUT_CANCELED));
    assert_eq!(core.order(&paid).await.unwrap().status, OrderStatus::PAID);
    let a2 = core.sku(&testkit::sku_code("A2")).unwrap().unwrap();
    assert_eq!(
        (a2.available, a2.locked),
        (100, 0),
        "the timeout released the stock"
    );
    assert_eq!(core.metrics().outcomes.orders_timed_out, 1);
    core.shutdown().unwrap();
}

#[actix::test]
async fn a_panicking_actor_fails_its_request_and_restarts_from_storage() {
    let (_dir, _clock, core, mut shop) = seeded().await;
    let victim = create(&core, shop.create_cmd("u5", &[("A1", 1)], None))
        .await
        .unwrap();
    let bystander = create(&core, shop.create_cmd("u6", &[("A1", 1)], None))
        .await
        .unwrap();
    let failed = core.inject_panic(victim.order_id).await.unwrap_err();
    assert_eq!(failed.code(), ErrorCode::NOT_READY);
    // The same actor serves again, from the stored state.
    let paid = pay(&core, &victim, "T-V").await.unwrap();
    assert_eq!(paid.version, 2);
    assert_eq!(core.metrics().restarts, 1);
    assert_eq!(pay(&core, &bystander, "T-B").await.unwrap().version, 2);
    core.shutdown().unwrap();
}

#[actix::test]
async fn a_failed_write_is_never_acknowledged_and_the_core_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let (core, journal) = start_flaky(dir.path(), &clock, |_| {});
    let failing = &journal.failing;
    let mut shop = Shop::default();
    seed(&core, &shop).await;
    let order = create(&core, shop.create_cmd("u1", &[("A1", 3)], Some("C1")))
        .await
        .unwrap();

    failing.store(true, Ordering::SeqCst);
    let e = pay(&core, &order, "T-F").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::STORAGE_UNAVAILABLE);
    assert!(
        !core.is_ready(),
        "a failing writer makes the core not ready"
    );
    let e = create(&core, shop.create_cmd("u2", &[("A1", 5)], None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::STORAGE_UNAVAILABLE);

    failing.store(false, Ordering::SeqCst);
    let mut waited = 0;
    while !core.is_ready() && waited < 200 {
        actix::clock::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(core.is_ready());
    // Nothing of the failed pay or create is visible, in the order or the catalog.
    let read = core.order(&order.order_id).await.unwrap();
    assert_eq!((read.status, read.version), (OrderStatus::CREATED, 1));
    let a1 = core.sku(&testkit::sku_code("A1")).unwrap().unwrap();
    assert_eq!((a1.available, a1.locked, a1.sold), (97, 3, 0));
    // The actor reloaded; the retry goes through, and so does a new order.
    let paid = pay(&core, &order, "T-F").await.unwrap();
    assert_eq!((paid.version, paid.is_paid()), (2, true));
    create(&core, shop.create_cmd("u2", &[("A1", 5)], None))
        .await
        .unwrap();
    let a1 = core.sku(&testkit::sku_code("A1")).unwrap().unwrap();
    assert_eq!((a1.available, a1.locked, a1.sold), (92, 5, 3));
    assert!(core.metrics().catalog_reloads >= 1);
    core.shutdown().unwrap();
}

#[actix::test]
async fn an_idempotency_key_replays_its_recorded_reply_and_refuses_other_requests() {
    let (_dir, _clock, core, mut shop) = seeded().await;
    let order = create(&core, shop.create_cmd("u7", &[("A1", 1)], None))
        .await
        .unwrap();
    let key = IdempotencyKey::parse("key-1").unwrap();
    let opts = |hash: u64| WriteOptions {
        dry_run: false,
        idempotency: Some(Idempotency {
            key: key.clone(),
            request_hash: hash,
            render: Box::new(|f, _| (200, format!("{{\"version\":{}}}", f.version))),
        }),
        whole: false,
    };
    let meta = CommandMeta::by(ordercore_domain::Actor::user(&order.user_id));
    let cancel = |opts| {
        core.cancel(
            meta.clone(),
            order.order_id,
            CancelType::USER_CANCELED,
            opts,
        )
    };
    let first = family_of(cancel(opts(11)).await.unwrap());
    assert_eq!(first.status, OrderStatus::CANCELED);
    match cancel(opts(11)).await.unwrap() {
        Outcome::Replayed { status, body } => {
            assert_eq!((status, body.as_str()), (200, "{\"version\":2}"));
        }
        other => panic!("expected a replay, got {other:?}"),
    }
    let e = cancel(opts(12)).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::IDEMPOTENCY_KEY_REUSED);
    // Another shopper learns nothing about the family's keys.
    let stranger = CommandMeta::by(ordercore_domain::Actor::user(&testkit::user("u8")));
    let e = core
        .cancel(
            stranger,
            order.order_id,
            CancelType::USER_CANCELED,
            opts(11),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::FORBIDDEN);
    // A dry run ignores the key and changes nothing.
    let dry = core
        .execute(
            Command {
                meta: meta.clone(),
                action: Action::AddNote {
                    order_id: order.order_id,
                    text: "hello".into(),
                },
            },
            WriteOptions {
                dry_run: true,
                ..WriteOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(matches!(dry, Outcome::DryRun { .. }));
    assert_eq!(core.order(&order.order_id).await.unwrap().version, 2);
    core.shutdown().unwrap();
}

#[actix::test]
async fn a_keyed_batch_remove_replays_its_reply_and_finishes_a_batch_cut_short() {
    let (_dir, _clock, core, mut shop) = seeded().await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let order = create(&core, shop.create_cmd("u7", &[("A1", 1)], None))
            .await
            .unwrap();
        cancel(&core, &order).await.unwrap();
        ids.push(order.order_id);
    }
    let meta = CommandMeta::by(ordercore_domain::Actor::user(&testkit::user("u7")));
    let batch_key = |key: &str, hash: u64| crate::BatchKey {
        key: IdempotencyKey::parse(key).unwrap(),
        request_hash: hash,
        render: Box::new(|n| (200, format!("{{\"removed\":{n}}}"))),
    };
    let version = |id: OrderId| {
        let core = core.clone();
        async move { core.order(&id).await.unwrap().version }
    };

    // A fresh batch records its reply; the same request answers it again
    // and changes nothing, though the orders are gone for the shopper.
    let first = core
        .remove_orders(meta.clone(), &ids[..2], Some(batch_key("rm-1", 21)))
        .await
        .unwrap();
    let removed = |body: &str, replayed| crate::Removed::Keyed {
        status: 200,
        body: body.to_owned(),
        replayed,
    };
    assert_eq!(first, removed("{\"removed\":2}", false));
    let versions = (version(ids[0]).await, version(ids[1]).await);
    let again = core
        .remove_orders(meta.clone(), &ids[..2], Some(batch_key("rm-1", 21)))
        .await
        .unwrap();
    assert_eq!(again, removed("{\"removed\":2}", true));
    assert_eq!((version(ids[0]).await, version(ids[1]).await), versions);
    // The same key with another request, and a retry without the key.
    let e = core
        .remove_orders(meta.clone(), &ids[..2], Some(batch_key("rm-1", 22)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::IDEMPOTENCY_KEY_REUSED);
    let e = core
        .remove_orders(meta.clone(), &ids[..1], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ORDER_NOT_FOUND);

    // A batch of two cut short after its first removal (a failed write):
    // the retry removes the second under the reply the first recorded.
    let cut_short = |by: &CommandMeta, order_id: OrderId, key: &str, hash: u64| {
        let opts = WriteOptions {
            idempotency: Some(Idempotency {
                key: IdempotencyKey::parse(key).unwrap(),
                request_hash: hash,
                render: Box::new(|_, _| (200, "{\"removed\":2}".to_owned())),
            }),
            ..WriteOptions::default()
        };
        let remove = Command {
            meta: by.clone(),
            action: Action::Remove { order_id },
        };
        let core = core.clone();
        async move { core.execute(remove, opts).await.unwrap() }
    };
    cut_short(&meta, ids[2], "rm-2", 31).await;
    let retried = core
        .remove_orders(meta.clone(), &ids[2..4], Some(batch_key("rm-2", 31)))
        .await
        .unwrap();
    assert_eq!(retried, removed("{\"removed\":2}", false));
    let again = core
        .remove_orders(meta.clone(), &ids[2..4], Some(batch_key("rm-2", 31)))
        .await
        .unwrap();
    assert_eq!(again, removed("{\"removed\":2}", true));

    // An operator's batch cut short, and the order left removed meanwhile
    // by its shopper: the retry changes nothing (it only records its key
    // with that order), so it answers as a replay. (To the shopper, a
    // removed order is not found: only an operator gets here.)
    let operator = testkit::admin();
    cut_short(&operator, ids[4], "rm-3", 41).await;
    core.remove_orders(meta.clone(), &ids[5..], None)
        .await
        .unwrap();
    let retried = core
        .remove_orders(operator, &ids[4..], Some(batch_key("rm-3", 41)))
        .await
        .unwrap();
    assert_eq!(retried, removed("{\"removed\":2}", true));
    let admin = testkit::admin();
    for id in &ids {
        let family = core.order(id).await.unwrap();
        assert!(family.removed, "{id}");
        assert_eq!(family.idempotency.len(), 1, "{id}");
    }
    // Without a key, an operator's batch counts what it removed now.
    let again = core.remove_orders(admin, &ids, None).await.unwrap();
    assert_eq!(again, crate::Removed::Count(0));
    core.shutdown().unwrap();
}

#[actix::test]
async fn todays_outcomes_start_again_at_utc_midnight() {
    let (_dir, clock, core, mut shop) = seeded().await;
    // Set the clock to a minute before a UTC midnight.
    let day = crate::DAY_MS;
    let now = core.now().millis();
    clock.advance((now.div_euclid(day) + 1) * day - 60_000 - now);
    let yesterday = create(&core, shop.create_cmd("u1", &[("A1", 1)], None))
        .await
        .unwrap();
    assert_eq!(core.day(core.now()).outcomes.orders_created, 1);
    clock.advance(120_000);
    let today = core.day(core.now());
    assert_eq!(
        (today.outcomes.orders_created, today.outcomes.orders_paid),
        (0, 0)
    );
    assert_eq!(today.day_start.millis() % day, 0);
    assert!(today.day_start <= core.now());
    let order = create(&core, shop.create_cmd("u2", &[("A1", 2)], None))
        .await
        .unwrap();
    pay(&core, &order, "T-TODAY").await.unwrap();
    pay(&core, &yesterday, "T-YESTERDAY").await.unwrap();
    let today = core.day(core.now()).outcomes;
    assert_eq!((today.orders_created, today.orders_paid), (1, 2));
    assert_eq!(
        today.amount_created,
        u64::try_from(order.amounts.real_pay.minor()).unwrap()
    );
    // The totals (for `/metrics`) keep counting across days.
    let total = core.metrics();
    assert_eq!(
        (total.outcomes.orders_created, total.outcomes.orders_paid),
        (2, 2)
    );
    core.shutdown().unwrap();
}

/// Relaxed durability answers at queueing time, and the writer then writes
/// the unit: under concurrency some actors set their reply hook only after
/// both. Every change must still be answered.
#[actix::test]
async fn relaxed_mode_answers_every_change_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let config = core_config(&clock);
    let mut stored = store_config(dir.path(), &clock);
    stored.durability = ordercore_storage::Durability::Relaxed;
    let core = OrderCore::start(open_store(stored), config).unwrap();
    let mut shop = Shop::default();
    shop.skus = vec![testkit::sku(
        "R1",
        ProductType::NORMAL_PRODUCT,
        990,
        1_000_000,
    )];
    shop.coupons = Vec::new();
    seed(&core, &shop).await;

    let orders: u64 = 4_000;
    let cmds = (0..orders)
        .map(|i| shop.create_cmd(&format!("relaxed-{i}"), &[("R1", 1)], None))
        .collect();
    let results = in_waves(&core, cmds, |core, cmd| async move {
        let family = create(&core, cmd).await?;
        pay(&core, &family, &format!("T-R{}", family.order_id)).await
    })
    .await;
    let mut paid = 0;
    for result in results {
        assert!(result.expect("every change is answered").is_paid());
        paid += 1;
    }
    assert_eq!(paid, orders);
    let m = core.metrics();
    assert_eq!(
        (m.outcomes.orders_created, m.outcomes.orders_paid),
        (orders, orders)
    );
    core.shutdown().unwrap();
}

/// A clock that reads as `late` once when told to, and as `base` otherwise:
/// a wall clock stepping back right after one reading.
#[derive(Debug)]
struct SteppingClock {
    base: ManualClock,
    late_once: std::sync::Mutex<Option<ordercore_domain::Timestamp>>,
}

impl ordercore_storage::Clock for SteppingClock {
    fn now(&self) -> ordercore_domain::Timestamp {
        let late = crate::lock(&self.late_once).take();
        late.unwrap_or_else(|| self.base.now())
    }
}

/// The shard's tick reads the deadline as due, the order a moment later as
/// not yet due (the clock stepped back): the order stays unpaid, so its
/// reminder goes back and fires once the deadline really passes.
#[actix::test]
async fn a_deadline_the_order_reads_as_not_yet_due_stays_armed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let stepping = Arc::new(SteppingClock {
        base: clock.clone(),
        late_once: std::sync::Mutex::new(None),
    });
    let core = start(dir.path(), &clock, |c| c.clock = stepping.clone());
    let mut shop = Shop::default();
    seed(&core, &shop).await;
    let created = create(&core, shop.create_cmd("d1", &[("A1", 1)], None))
        .await
        .unwrap();
    assert_eq!(core.armed_deadlines(), 1);

    let fired = core.metrics().deadlines_fired;
    *crate::lock(&stepping.late_once) = Some(created.expire_at.plus_millis(1));
    core.fire_due_deadlines().await;
    assert!(
        eventually(|| core.metrics().deadlines_fired > fired).await,
        "a tick read the clock late and fired"
    );
    assert!(
        eventually(|| core.armed_deadlines() == 1).await,
        "the reminder went back"
    );
    let read = core.order(&created.order_id).await.unwrap();
    assert_eq!(read.status, OrderStatus::CREATED);

    clock.advance(testkit::PAY_TIMEOUT_MS + 1);
    assert_eq!(core.fire_due_deadlines().await, 1);
    let mut status = OrderStatus::CREATED;
    for _ in 0..300 {
        status = core.order(&created.order_id).await.unwrap().status;
        if status != OrderStatus::CREATED {
            break;
        }
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, OrderStatus::CANCELED, "timed out once due");
    core.shutdown().unwrap();
}

/// After a failed write every thread finds the catalog stale; one reloads
/// and reserves, and the change waits for the disk. Another thread's
/// reload that comes late must not drop that reservation from the
/// counters (the store's rows do not hold it yet), or the SKU could be
/// sold twice.
#[actix::test]
async fn a_late_second_reload_keeps_a_reservation_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(testkit::t0());
    let (core, journal) = start_flaky(dir.path(), &clock, |_| {});
    let mut shop = Shop::default();
    seed(&core, &shop).await;
    journal.failing.store(true, Ordering::SeqCst);
    assert!(create(&core, shop.create_cmd("r1", &[("A1", 1)], None))
        .await
        .is_err());
    journal.failing.store(false, Ordering::SeqCst);
    assert!(eventually(|| core.is_ready()).await, "the writer recovered");

    let catalog = &core.shared.catalog;
    assert!(
        catalog.reload(core.store(), true).unwrap(),
        "stale: reloaded"
    );
    journal.stalled.store(true, Ordering::SeqCst);
    let creating = {
        let (core, cmd) = (core.clone(), shop.create_cmd("r2", &[("A1", 2)], None));
        actix::spawn(async move { create(&core, cmd).await })
    };
    let a1 = testkit::sku_code("A1");
    let locked = || catalog.skus(std::slice::from_ref(&a1))[0].locked;
    assert!(eventually(|| locked() == 2).await, "reserved, in flight");
    assert!(
        !catalog.reload(core.store(), true).unwrap(),
        "already current: nothing to reload"
    );
    assert_eq!(locked(), 2, "the reservation in flight is kept");
    journal.stalled.store(false, Ordering::SeqCst);
    creating.await.unwrap().unwrap();
    assert_eq!(core.sku(&a1).unwrap().unwrap().locked, 2);
    assert_eq!(locked(), 2, "the counters and the store agree");
    core.shutdown().unwrap();
}

/// A registry entry whose actor stopped without leaving (its task ended
/// outside the actor's own guard) is dropped by the next request, which
/// then reaches the shard and a fresh actor.
#[actix::test]
async fn a_stopped_actor_left_in_the_registry_is_replaced() {
    let (_dir, _clock, core, mut shop) = seeded().await;
    let created = create(&core, shop.create_cmd("s1", &[("A1", 1)], None))
        .await
        .unwrap();
    assert_eq!(core.passivate_idle(Duration::ZERO), 1);
    assert!(eventually(|| core.metrics().active_actors == 0).await);
    let (sender, receiver) = actix::dev::channel::channel(1);
    drop(receiver);
    let dead: actix::Addr<crate::order::OrderActor> = actix::Addr::new(sender);
    assert!(!dead.connected());
    core.shared.registry.insert(created.order_id, dead);

    let paid = pay(&core, &created, "T-S1").await.unwrap();
    assert!(paid.is_paid());
    let live = core
        .shared
        .registry
        .get(&created.order_id)
        .map(|a| a.clone());
    assert!(
        live.is_some_and(|a| a.connected()),
        "a live actor serves it"
    );
    core.shutdown().unwrap();
}

/// A change to the address an order already has is a no-op unless it is
/// recorded under an `Idempotency-Key`; the write options decide which,
/// whatever key the command's metadata carries.
#[actix::test]
async fn the_write_options_decide_whether_the_same_address_is_recorded() {
    let (_dir, _clock, core, mut shop) = seeded().await;
    let order = create(&core, shop.create_cmd("u7", &[("A1", 1)], None))
        .await
        .unwrap();
    let same = order.delivery.address.clone();
    let key = IdempotencyKey::parse("same-address").unwrap();
    let meta = CommandMeta::by(ordercore_domain::Actor::user(&order.user_id));
    let keyed = || WriteOptions {
        dry_run: false,
        idempotency: Some(Idempotency {
            key: key.clone(),
            request_hash: 7,
            render: Box::new(|f, _| (200, format!("{{\"version\":{}}}", f.version))),
        }),
        whole: false,
    };
    // A key in the metadata only: nothing is recorded, so nothing changes.
    let mut meta_only = meta.clone();
    meta_only.idempotency_key = Some(key.clone());
    let unchanged = family_of(
        core.adjust_address(
            meta_only,
            order.order_id,
            same.clone(),
            WriteOptions::default(),
        )
        .await
        .unwrap(),
    );
    assert_eq!(unchanged.version, order.version);
    // Keyed in the options only: recorded, and replayed after a later
    // change of address instead of putting this one back.
    let recorded = family_of(
        core.adjust_address(meta.clone(), order.order_id, same.clone(), keyed())
            .await
            .unwrap(),
    );
    assert_eq!(recorded.version, order.version + 1);
    core.adjust_address(
        meta.clone(),
        order.order_id,
        testkit::address("2 Lake Road"),
        WriteOptions::default(),
    )
    .await
    .unwrap();
    match core
        .adjust_address(meta.clone(), order.order_id, same, keyed())
        .await
        .unwrap()
    {
        Outcome::Replayed { body, .. } => {
            assert_eq!(body, format!("{{\"version\":{}}}", order.version + 1));
        }
        other => panic!("expected a replay, got {other:?}"),
    }
    let now = core.order(&order.order_id).await.unwrap();
    assert_eq!(now.delivery.address, testkit::address("2 Lake Road"));
    core.shutdown().unwrap();
}
