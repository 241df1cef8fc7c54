//! Crash test with a real child process: the child creates and pays orders
//! from several threads and prints every acknowledged change; the parent
//! kills it with SIGKILL at random moments, reopens the store and checks
//! that every acknowledged change is there, that nothing is half-applied
//! (an order and the stock it moved are together or absent) and that replay
//! is idempotent.

#![allow(clippy::unwrap_used)]

mod common;

use ordercore_domain::codes::{OrderStatus, ProductType};
use ordercore_domain::testkit::{self, pay_action, Shop};
use ordercore_domain::{decide, Command, IdSequencer, OrderFamily, OrderId, Sku};
use ordercore_storage::{Store, StoreConfig};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DIR_VAR: &str = "ORDERCORE_CRASH_DIR";
const RUN_VAR: &str = "ORDERCORE_CRASH_RUN";
/// Units of each SKU in the crash catalog: never runs out during a test.
const STOCK: i64 = 10_000_000;
const KILLS: usize = 12;
const WORKERS: usize = 4;

fn crash_shop() -> Shop {
    let mut shop = Shop::default();
    shop.skus = vec![
        testkit::sku("A1", ProductType::NORMAL_PRODUCT, 3_000, STOCK),
        testkit::sku("A2", ProductType::NORMAL_PRODUCT, 4_500, STOCK),
        testkit::sku("B1", ProductType::ADVANCE_SALE, 2_000, STOCK),
    ];
    shop.coupons.clear();
    shop
}

/// The child: runs until killed.
#[test]
#[ignore = "run by `crash_kills_lose_nothing_acknowledged` as its child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let run: u8 = std::env::var(RUN_VAR).unwrap().parse().unwrap();
    let store = common::open_retrying(common::config(Path::new(&dir)));
    let mut shop = crash_shop();
    let stored = store.all_skus().unwrap();
    if stored.is_empty() {
        store
            .submit(0, store.epoch(), common::catalog_events(&shop))
            .unwrap()
            .wait()
            .unwrap();
    } else {
        shop.skus = stored;
    }
    let state = Arc::new(Mutex::new((shop, IdSequencer::default())));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (store, state, out) = (store.clone(), Arc::clone(&state), Arc::clone(&out));
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(run) * 100 + w as u64);
                loop {
                    let owner = format!("u{}", rng.gen_range(0..50));
                    let skus = ["A1", "A2", "B1"];
                    let mut items = vec![(skus[rng.gen_range(0..3)], rng.gen_range(1..4))];
                    if rng.gen_bool(0.5) {
                        let other = skus.iter().find(|s| **s != items[0].0).unwrap();
                        items.push((other, 1));
                    }
                    // Decide and submit under one lock: journal order = decision order.
                    let (ticket, family) = {
                        let mut guard = state.lock().unwrap();
                        let (shop, ids) = &mut *guard;
                        let mut cmd = shop.create_cmd(&owner, &items, None);
                        let (at, seq) = ids.next(testkit::t0().plus_millis(0).max(shop.now));
                        cmd.order_id =
                            OrderId::generate(at, run % 100, seq, &testkit::user(&owner)).unwrap();
                        let events = shop.decide_create(&cmd, &testkit::shopper(&owner)).unwrap();
                        let ticket = store.submit(0, store.epoch(), events).unwrap();
                        shop.apply_catalog(&ticket.unit.cloned_events());
                        let family = OrderFamily::create(&ticket.unit.events[0]).unwrap();
                        (ticket, family)
                    };
                    let id = family.order_id;
                    if ticket.wait().is_err() {
                        continue;
                    }
                    writeln!(out.lock().unwrap(), "CREATED {id}").unwrap();
                    if rng.gen_bool(0.7) {
                        let ticket = {
                            let mut guard = state.lock().unwrap();
                            let (shop, _) = &mut *guard;
                            let pay = Command {
                                meta: testkit::provider(),
                                action: pay_action(&family, &format!("T{id}")),
                            };
                            let events = decide(&family, &pay, shop.now).unwrap();
                            let ticket = store.submit(0, store.epoch(), events).unwrap();
                            shop.apply_catalog(&ticket.unit.cloned_events());
                            ticket
                        };
                        if ticket.wait().is_ok() {
                            writeln!(out.lock().unwrap(), "PAID {id}").unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

fn all_families(store: &Store) -> Vec<Arc<OrderFamily>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = store
            .scan_families(cursor.as_ref(), usize::MAX, &mut |_| {
                ControlFlow::Continue(true)
            })
            .unwrap();
        out.extend(page);
        match next {
            Some(id) if next != cursor => cursor = Some(id),
            _ => break,
        }
    }
    out
}

type State = (BTreeMap<OrderId, OrderFamily>, Vec<Sku>);

fn state_of(store: &Store) -> State {
    let families = all_families(store)
        .into_iter()
        .map(|f| (f.order_id, (*f).clone()))
        .collect();
    (families, store.all_skus().unwrap())
}

/// Every SKU's stock matches the orders: locked = units of CREATED
/// families, sold = units of paid ones, total unchanged.
fn check_stock_matches_orders(state: &State) {
    let (families, skus) = state;
    for sku in skus {
        let units = |status: OrderStatus| -> i64 {
            families
                .values()
                .filter(|f| f.display_status() == status)
                .flat_map(|f| f.lines.iter())
                .filter(|l| &l.sku_code == sku.code())
                .map(|l| i64::from(l.sale_quantity))
                .sum()
        };
        assert_eq!(
            sku.locked,
            units(OrderStatus::CREATED),
            "locked of {}",
            sku.code()
        );
        assert_eq!(sku.sold, units(OrderStatus::PAID), "sold of {}", sku.code());
        assert_eq!(sku.total(), STOCK, "total of {}", sku.code());
        assert!(sku.available >= 0);
    }
}

#[test]
fn crash_kills_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut created: HashSet<OrderId> = HashSet::new();
    let mut paid: HashSet<OrderId> = HashSet::new();
    let mut kills = 0;
    for run in 0..KILLS {
        let mut child = Process::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .env(RUN_VAR, run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let reader = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            })
        };
        // Wait for the child to make progress, then kill it at a random moment.
        let started = Instant::now();
        while lines.lock().unwrap().len() < 20 && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        reader.join().unwrap();
        for line in lines.lock().unwrap().iter() {
            // The test harness prints its own lines too; only ours name orders.
            match line.split_once(' ') {
                Some(("CREATED", id)) => created.insert(OrderId::parse(id).unwrap()),
                Some(("PAID", id)) => paid.insert(OrderId::parse(id).unwrap()),
                _ => false,
            };
        }

        let store = common::open_retrying(StoreConfig {
            ..common::config(dir.path())
        });
        let replayed = state_of(&store);
        for id in &created {
            assert!(
                replayed.0.contains_key(id),
                "acknowledged order {id} lost after kill {kills}"
            );
        }
        for id in &paid {
            assert!(
                replayed.0[id].is_paid(),
                "acknowledged payment of {id} lost after kill {kills}"
            );
        }
        check_stock_matches_orders(&replayed);
        // Replay is idempotent: the rows written from it read back equal,
        // and opening again replays nothing new.
        store.shutdown().unwrap();
        drop(store);
        let store = common::open_retrying(common::config(dir.path()));
        assert_eq!(
            state_of(&store),
            replayed,
            "state after checkpoint and reopen"
        );
        assert_eq!(store.recovery().replayed_units, 0);
        store.shutdown().unwrap();
    }
    assert_eq!(kills, KILLS);
    assert!(
        created.len() > 100,
        "the child acknowledged {} creates",
        created.len()
    );
    assert!(!paid.is_empty());
}
