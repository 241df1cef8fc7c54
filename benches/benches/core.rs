//! The in-process core, in ONE run (DESIGN.md, "Performance targets"):
//!
//! (a) the raw ceiling: the same lifecycles' journal units as sled
//!     records, one `flush` per 1024;
//! (b) `OrderCore`: create (2 SKUs) then pay, durable, many users and SKUs,
//!     `WINDOW` lifecycles in flight; the clock stops only when the
//!     write-behind has caught up.
//!
//! Memory per active order is measured apart (`--bench memory`): its
//! counting allocator would slow this run down.
//!
//! `cargo bench -p ordercore-benches --bench core [-- LIFECYCLES]`;
//! `ORDERCORE_BENCH_IDLE_S=5` lets actors compact after the server's default
//! 5 s idle instead of keeping every family whole; `ORDERCORE_BENCH_SHARDS=N`
//! runs N shards instead of one per core (the server's `--shards`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use ordercore_benches::{
    cpu_us, cpu_us_by_thread, drive, raw_sled, seed, start, unit_bytes, Workload,
};
use ordercore_domain::CreateOrder;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// mimalloc instead of the system allocator: the core allocates many small,
/// short-lived values on several threads, where glibc's arenas spend a
/// large share of the CPU (measured with `--bench core`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // As the server does: with mimalloc's default purge delay, faulting
    // given-back pages in again took 14-17% of this run's CPU, and with huge
    // pages, zeroing 2 MiB pages as the heap grows took 30% (`perf record`).
    ordercore::tune_allocator().unwrap();
    ordercore::disable_transparent_huge_pages().unwrap();
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<usize>().ok());
    let n = args.next().unwrap_or(200_000);
    actix::System::new().block_on(run(n));
}

/// How long an actor stays idle before it compacts or passivates:
/// `ORDERCORE_BENCH_IDLE_S` seconds, by default an hour, so every order of
/// the run stays whole in memory.
fn idle() -> Duration {
    std::env::var("ORDERCORE_BENCH_IDLE_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(3_600), Duration::from_secs)
}

async fn run(n: usize) {
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
    let core = start(dir.path(), idle());
    let mut workload = Workload::new();
    seed(&core, &workload).await;
    core.store().checkpoint_now().unwrap();
    let rows0 = core.store().metrics().rows_written;
    let cmds: Vec<CreateOrder> = (0..n).map(|_| workload.next_create()).collect();
    let workload = Rc::new(RefCell::new(workload));
    println!("driving the core ...");
    let cpu0 = cpu_us();
    let threads0 = cpu_us_by_thread();
    let started = Instant::now();
    drive(&core, &workload, cmds, true).await;
    let acked = started.elapsed();
    core.store().checkpoint_now().unwrap();
    let sustained = started.elapsed();
    let cpu = cpu_us() - cpu0;
    let threads = cpu_us_by_thread();
    let m = core.metrics();
    let sm = core.store().metrics();

    assert_eq!(
        (m.outcomes.orders_created, m.outcomes.orders_paid),
        (n as u64, n as u64)
    );
    let rate = n as f64 / sustained.as_secs_f64();
    let mode = match core.store().durability() {
        ordercore_storage::Durability::Durable => "durable",
        ordercore_storage::Durability::Relaxed => "relaxed",
    };
    core.shutdown().unwrap();
    drop(core);

    println!();
    println!("(a) raw sled, flush per 1024 records {raw_lifecycles_per_s:.0} lifecycles/s (2 records each)");
    println!(
        "(b) OrderCore, {mode}, sustained   {rate:.0} lifecycles/s ({:.2} s acked = {:.0}/s, {:.2} s caught up)",
        acked.as_secs_f64(),
        n as f64 / acked.as_secs_f64(),
        sustained.as_secs_f64()
    );
    println!(
        "    process CPU per lifecycle       {:.1} µs",
        cpu as f64 / n as f64
    );
    for (name, us) in &threads {
        let us = us - threads0.get(name).copied().unwrap_or(0);
        if us > 0 {
            println!("      {name:<28} {:.1} µs", us as f64 / n as f64);
        }
    }
    println!(
        "    state rows per lifecycle        {:.2} (written behind)",
        (sm.rows_written - rows0) as f64 / n as f64
    );
    println!(
        "    mean group commit               {:.0} units, {:.0} µs",
        sm.units as f64 / sm.groups.max(1) as f64,
        sm.commit_latency_us_sum as f64 / sm.groups.max(1) as f64
    );
    println!(
        "ratio (b) / (a)                     {:.2}",
        rate / raw_lifecycles_per_s
    );
}
