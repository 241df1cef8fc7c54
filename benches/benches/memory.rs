//! Memory per active order (DESIGN.md, "Performance targets": ≤ 2 KiB per
//! active order; passivated orders hold none).
//!
//! Creates `ACTIVE` orders (2 SKUs each, unpaid) through a durable
//! `OrderCore` whose actors stay live, writes everything behind, and reads
//! the live heap (a counting allocator) and RSS; asks every actor to keep
//! only its family's compact state (what an actor idle for `compact_after`
//! keeps) and reads the heap again; then passivates every actor and reads
//! it a last time. What passivation gave back is what the active orders
//! held (actor, mailbox, family state, registry entry); what stays is the
//! store's (sled's page cache, journal) and the shards' deadline and risk
//! entries.
//!
//! `cargo bench -p ordercore-benches --bench memory [-- ACTIVE]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use ordercore_benches::{drive, rss_bytes, seed, start, Workload};
use ordercore_domain::CreateOrder;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Idle time before the actors compact or passivate on their own: longer
/// than the run, which asks them itself once it has measured them.
const PASSIVATE_AFTER: Duration = Duration::from_secs(3_600);

/// Bytes allocated and not freed (reallocations are already counted in
/// both totals).
fn live_heap() -> i64 {
    let s = GLOBAL.stats();
    i64::try_from(s.bytes_allocated).unwrap_or(i64::MAX)
        - i64::try_from(s.bytes_deallocated).unwrap_or(i64::MAX)
}

fn main() {
    let active = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(1_000_000);
    actix::System::new().block_on(run(active));
}

async fn run(active: usize) {
    let dir = tempfile::tempdir().unwrap();
    let core = start(dir.path(), PASSIVATE_AFTER);
    let mut workload = Workload::new();
    seed(&core, &workload).await;
    let cmds: Vec<CreateOrder> = (0..active).map(|_| workload.next_create()).collect();
    // The commands are dropped as they are used: count them out.
    let cmds_heap = {
        let before = live_heap();
        let copy = cmds.clone();
        let bytes = live_heap() - before;
        drop(copy);
        bytes
    };
    core.store().checkpoint_now().unwrap();
    let (heap0, rss0) = (live_heap() - cmds_heap, rss_bytes());
    let started = Instant::now();
    drive(&core, &Rc::new(RefCell::new(workload)), cmds, false).await;
    let created = started.elapsed();
    core.store().checkpoint_now().unwrap();
    let live = core.metrics().active_actors;
    let (heap1, rss1) = (live_heap(), rss_bytes());
    core.compact_idle(Duration::ZERO);
    let compacted = wait_until(|| core.metrics().compactions >= active as u64).await;
    let heap_compact = live_heap();
    core.passivate_idle(Duration::ZERO);
    wait_until(|| core.metrics().active_actors == 0).await;
    let heap2 = live_heap();
    let per = |bytes: i64| bytes as f64 / active as f64;
    println!(
        "{active} active orders created in {:.1} s; {live} live actors",
        created.as_secs_f64()
    );
    println!(
        "live heap per active order       {:.0} bytes (everything the run added)",
        per(heap1 - heap0)
    );
    println!(
        "RSS per active order             {:.0} bytes",
        per(i64::try_from(rss1).unwrap_or(0) - i64::try_from(rss0).unwrap_or(0))
    );
    println!(
        "held per active order, whole     {:.0} bytes (just changed; freed when they passivated, {} live actors left)",
        per(heap1 - heap2),
        core.metrics().active_actors
    );
    println!(
        "held per active order, compact   {:.0} bytes (idle: {} of {live} compacted{})",
        per(heap_compact - heap2),
        core.metrics().compactions,
        if compacted { "" } else { ", timed out waiting" }
    );
    println!(
        "kept after passivation           {:.0} bytes (store caches, deadline and risk entries)",
        per(heap2 - heap0)
    );
    core.shutdown().unwrap();
}

/// Waits (up to 2 minutes) until `done`; answers whether it came true.
async fn wait_until(done: impl Fn() -> bool) -> bool {
    for _ in 0..1_200 {
        if done() {
            return true;
        }
        actix::clock::sleep(Duration::from_millis(100)).await;
    }
    done()
}
