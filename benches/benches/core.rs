//! The in-process core, in ONE run (DESIGN.md, "Performance targets"):
//!
//! (a) the raw ceiling: sled `apply_batch` + `flush` of the same lifecycles'
//!     journal units in batches of 1024 records;
//! (b) `OrderCore`: create (2 SKUs) then pay, durable, many users and SKUs,
//!     `WINDOW` lifecycles in flight; the clock stops only when the
//!     write-behind has caught up;
//! (c) memory per active order: live heap bytes (a counting allocator) and
//!     RSS with `ACTIVE` created orders whose actors stay live, then after
//!     they passivate.
//!
//! `cargo bench -p ordercore-benches --bench core [-- LIFECYCLES [ACTIVE]]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use ordercore_actors::{CoreConfig, OrderCore, Outcome, WriteOptions};
use ordercore_benches::{cpu_us, raw_sled, rss_bytes, unit_bytes, Workload};
use ordercore_domain::testkit;
use ordercore_domain::{Command, CommandMeta, CreateOrder, OrderFamily};
use ordercore_storage::{Store, StoreConfig};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Lifecycles in flight at once: enough for group commit to fill groups.
const WINDOW: usize = 4_096;

fn live_heap() -> i64 {
    let s = GLOBAL.stats();
    let allocated = i64::try_from(s.bytes_allocated).unwrap_or(i64::MAX);
    let freed = i64::try_from(s.bytes_deallocated).unwrap_or(i64::MAX);
    allocated - freed + i64::try_from(s.bytes_reallocated).unwrap_or(0)
}

fn start(dir: &std::path::Path, passivate_after: Duration) -> OrderCore {
    let store = Store::open(StoreConfig::new(dir)).unwrap();
    let config = CoreConfig {
        passivate_after,
        ..CoreConfig::default()
    };
    OrderCore::start(store, config).unwrap()
}

async fn seed(core: &OrderCore, workload: &Workload) {
    let admin = testkit::admin();
    for sku in workload.skus() {
        core.upsert_sku(&admin, sku.details.clone(), sku.total())
            .await
            .unwrap();
    }
}

fn family(outcome: Outcome) -> Arc<OrderFamily> {
    match outcome {
        Outcome::Applied { family, .. } => family,
        other => panic!("unexpected {other:?}"),
    }
}

/// Runs `cmds` through the core with `WINDOW` in flight; pays each order
/// after its create when `pay` is set. Retries what the core refuses as
/// overloaded.
async fn drive(core: &OrderCore, cmds: Vec<CreateOrder>, pay: bool) {
    let queue = Rc::new(RefCell::new(cmds.into_iter().enumerate()));
    let workers: Vec<_> = (0..WINDOW)
        .map(|_| {
            let (core, queue) = (core.clone(), Rc::clone(&queue));
            actix::spawn(async move {
                loop {
                    let next = queue.borrow_mut().next();
                    let Some((i, cmd)) = next else { break };
                    let meta = CommandMeta::by(ordercore_domain::Actor::user(&cmd.user_id));
                    let created = loop {
                        match core.create_order(cmd.clone(), meta.clone(), None).await {
                            Ok(outcome) => break family(outcome),
                            Err(e) if e.code() == ordercore_domain::ErrorCode::OVERLOADED => {
                                actix::clock::sleep(Duration::from_millis(1)).await;
                            }
                            Err(e) => panic!("create failed: {e}"),
                        }
                    };
                    if pay {
                        let action = testkit::pay_action(&created, &format!("T{i}"));
                        let cmd = Command {
                            meta: testkit::provider(),
                            action,
                        };
                        loop {
                            match core.execute(cmd.clone(), WriteOptions::default()).await {
                                Ok(_) => break,
                                Err(e) if e.code() == ordercore_domain::ErrorCode::OVERLOADED => {
                                    actix::clock::sleep(Duration::from_millis(1)).await;
                                }
                                Err(e) => panic!("pay failed: {e}"),
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<usize>().ok());
    let n = args.next().unwrap_or(200_000);
    let active = args.next().unwrap_or(1_000_000);
    actix::System::new().block_on(run(n, active));
}

async fn run(n: usize, active: usize) {
    println!("generating {n} lifecycles (create 2 SKUs + pay) ...");
    let mut workload = Workload::new();
    let lifecycles: Vec<_> = (0..n.min(100_000))
        .map(|_| workload.next_lifecycle())
        .collect();
    let records = unit_bytes(&lifecycles);
    drop(lifecycles);
    let raw_dir = tempfile::tempdir().unwrap();
    let raw = raw_sled(raw_dir.path(), &records);
    let raw_lifecycles_per_s = records.len() as f64 / 2.0 / raw.as_secs_f64();
    drop(records);

    // (b) lifecycles through the core.
    let dir = tempfile::tempdir().unwrap();
    let core = start(dir.path(), Duration::from_secs(3_600));
    let mut workload = Workload::new();
    seed(&core, &workload).await;
    core.store().checkpoint_now().unwrap();
    let cmds: Vec<CreateOrder> = (0..n).map(|_| workload.next_create()).collect();
    let cpu0 = cpu_us();
    let started = Instant::now();
    drive(&core, cmds, true).await;
    let acked = started.elapsed();
    core.store().checkpoint_now().unwrap();
    let sustained = started.elapsed();
    let cpu = cpu_us() - cpu0;
    let m = core.metrics();
    assert_eq!((m.orders_created, m.orders_paid), (n as u64, n as u64));
    let rate = n as f64 / sustained.as_secs_f64();
    core.shutdown().unwrap();
    drop(core);

    println!();
    println!("(a) raw sled, 1024-record batches   {raw_lifecycles_per_s:.0} lifecycles/s (2 records each)");
    println!(
        "(b) OrderCore, durable, sustained   {rate:.0} lifecycles/s ({:.2} s acked = {:.0}/s, {:.2} s caught up)",
        acked.as_secs_f64(),
        n as f64 / acked.as_secs_f64(),
        sustained.as_secs_f64()
    );
    println!(
        "    process CPU per lifecycle       {:.1} µs",
        cpu as f64 / n as f64
    );
    println!(
        "ratio (b) / (a)                     {:.2}",
        rate / raw_lifecycles_per_s
    );

    // (c) memory per active order.
    if active == 0 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let core = start(dir.path(), Duration::from_secs(20));
    let mut workload = Workload::new();
    seed(&core, &workload).await;
    let cmds: Vec<CreateOrder> = (0..active).map(|_| workload.next_create()).collect();
    core.store().checkpoint_now().unwrap();
    let (heap0, rss0) = (live_heap(), rss_bytes());
    let cmds_heap = {
        // The commands themselves are dropped as they are used; count them out.
        let before = live_heap();
        let copy = cmds.clone();
        let bytes = live_heap() - before;
        drop(copy);
        bytes
    };
    let started = Instant::now();
    drive(&core, cmds, false).await;
    let created = started.elapsed();
    core.store().checkpoint_now().unwrap();
    let live = core.metrics().active_actors;
    let heap1 = live_heap() + cmds_heap;
    let rss1 = rss_bytes();
    let per_order_heap = (heap1 - heap0) as f64 / active as f64;
    let per_order_rss = (rss1 as f64 - rss0 as f64) / active as f64;
    println!();
    println!(
        "(c) {active} active orders created in {:.1} s, {live} live actors",
        created.as_secs_f64()
    );
    println!("    live heap per active order      {per_order_heap:.0} bytes (actor, mailbox, family state, registry, deadline)");
    println!("    RSS per active order            {per_order_rss:.0} bytes (includes sled's page cache growth)");
    let mut waited = 0;
    while core.metrics().active_actors > 0 && waited < 600 {
        actix::clock::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let heap2 = live_heap();
    println!(
        "    after passivation               {} live actors, live heap {:.0} bytes per order",
        core.metrics().active_actors,
        (heap2 - heap0) as f64 / active as f64
    );
    core.shutdown().unwrap();
}
