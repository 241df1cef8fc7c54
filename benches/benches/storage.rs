//! Storage throughput, in ONE run (DESIGN.md, "Storage"):
//!
//! (a) the raw ceiling: the same unit bytes as sled records, one `flush`
//!     per 1024;
//! (b) the store's writer appending order lifecycles (create with 2 SKUs,
//!     then pay), durable, sustained: the clock stops only when the
//!     write-behind has caught up (nothing dirty).
//!
//! (c) sled alone inserting each shape of state row (family, user index,
//!     expiry index) with the keys and bytes of (b)'s families.
//! (d) a checkpoint someone waits for, of up to 100,000 lifecycles' rows,
//!     written by one thread and by two.
//!
//! Prints lifecycles/s, µs of process CPU per lifecycle, records written per
//! lifecycle (journal records + state rows), the ratio of (b) to (a) and
//! (c)'s µs per row.
//!
//! `cargo bench -p ordercore-benches --bench storage [-- LIFECYCLES]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use ordercore_benches::{cpu_us, raw_sled, sled_row_cpu_us, submit_all, unit_bytes, Workload};
use ordercore_storage::{StateRows, Store, StoreConfig};
use std::ops::ControlFlow;
use std::time::Instant;

/// Tickets in flight: enough for group commit to fill its groups.
const WINDOW: usize = 8_192;

/// mimalloc instead of the system allocator: the core allocates many small,
/// short-lived values on several threads, where glibc's arenas spend a
/// large share of the CPU (measured with `--bench core`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // As the server does (`--bench core` explains why).
    ordercore::tune_allocator().unwrap();
    ordercore::disable_transparent_huge_pages().unwrap();
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    println!("generating {n} lifecycles (create 2 SKUs + pay) ...");
    let mut workload = Workload::new();
    let catalog = workload.catalog();
    let work: Vec<_> = (0..n).map(|_| workload.next_lifecycle()).collect();
    let unit_bytes = unit_bytes(&work);
    let bytes_per_lifecycle = unit_bytes.iter().map(Vec::len).sum::<usize>() as f64 / n as f64;

    let raw_dir = tempfile::tempdir().unwrap();
    let raw = raw_sled(raw_dir.path(), &unit_bytes);
    let raw_records_per_s = unit_bytes.len() as f64 / raw.as_secs_f64();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    store
        .submit(0, store.epoch(), catalog)
        .unwrap()
        .wait()
        .unwrap();
    store.checkpoint_now().unwrap();
    let before = store.metrics();
    let cpu0 = cpu_us();
    let started = Instant::now();
    submit_all(&store, &work, WINDOW);
    let acked = started.elapsed();
    store.checkpoint_now().unwrap();
    let sustained = started.elapsed();
    let cpu = cpu_us() - cpu0;
    let after = store.metrics();
    // The alternative to the deadline index: find CREATED families at
    // recovery by decoding every stored family.
    let scan_started = Instant::now();
    let mut cursor = None;
    loop {
        let (_created, next) = store
            .scan_families(cursor.as_ref(), usize::MAX, &mut |f| {
                ControlFlow::Continue(f.status == ordercore_domain::codes::OrderStatus::CREATED)
            })
            .unwrap();
        match next {
            Some(id) if next != cursor => cursor = Some(id),
            _ => break,
        }
    }
    let scan = scan_started.elapsed();
    // Every stored family's rows, for (c).
    let mut state_rows = Vec::with_capacity(n);
    let mut cursor = None;
    loop {
        let (page, next) = store
            .scan_families(cursor.as_ref(), 10_000, &mut |_| {
                ControlFlow::Continue(true)
            })
            .unwrap();
        state_rows.extend(page.iter().map(|f| StateRows::of(f).unwrap()));
        match next {
            Some(id) if next != cursor => cursor = Some(id),
            _ => break,
        }
    }
    let deadlines_started = Instant::now();
    let pending = store.pending_deadlines().unwrap().len();
    let deadlines = deadlines_started.elapsed();
    store.shutdown().unwrap();

    let lifecycles_per_s = n as f64 / sustained.as_secs_f64();
    let records = (after.groups - before.groups) + (after.rows_written - before.rows_written);
    let groups = after.groups - before.groups;
    println!();
    println!("unit bytes per lifecycle           {bytes_per_lifecycle:.0}");
    println!("(a) raw sled, flush per 1024 records{raw_records_per_s:.0} records/s = {:.0} lifecycles/s (2 records each)", raw_records_per_s / 2.0);
    println!("(b) store, durable, sustained      {lifecycles_per_s:.0} lifecycles/s ({:.2} s acked, {:.2} s caught up)", acked.as_secs_f64(), sustained.as_secs_f64());
    println!(
        "    storage CPU per lifecycle      {:.1} µs (process CPU / lifecycles)",
        cpu as f64 / n as f64
    );
    println!(
        "    records per lifecycle          {:.2} ({groups} journal records, {} state rows)",
        records as f64 / n as f64,
        after.rows_written - before.rows_written
    );
    println!(
        "    mean group commit              {:.0} units, {:.0} µs",
        (after.units - before.units) as f64 / groups.max(1) as f64,
        (after.commit_latency_us_sum - before.commit_latency_us_sum) as f64 / groups.max(1) as f64
    );
    println!(
        "deadlines at recovery: index read {:.3} ms ({pending} pending) vs scan of all {n} families {:.2} s ({:.1} µs each)",
        deadlines.as_secs_f64() * 1e3,
        scan.as_secs_f64(),
        scan.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "ratio (b) / (a) in lifecycles      {:.2}",
        lifecycles_per_s / (raw_records_per_s / 2.0)
    );
    row_costs(&state_rows);
    split_checkpoints(&Workload::new().catalog(), &work[..n.min(100_000)]);
}

/// (d) A checkpoint waited for (`checkpoint_now`) of `work`'s rows, all
/// dirty at once, written by one thread and by two (the store's default
/// past `CHECKPOINT_SPLIT_ROWS_MIN`), in the order A B B A.
fn split_checkpoints(catalog: &[ordercore_domain::Event], work: &[ordercore_benches::Lifecycle]) {
    let measure = |split_rows_min: usize| {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path());
        config.checkpoint_interval = std::time::Duration::from_secs(3_600);
        config.checkpoint_split_rows_min = split_rows_min;
        let store = Store::open(config).unwrap();
        store
            .submit(0, store.epoch(), catalog.to_vec())
            .unwrap()
            .wait()
            .unwrap();
        store.checkpoint_now().unwrap();
        submit_all(&store, work, WINDOW);
        let rows0 = store.metrics().rows_written;
        let (cpu0, started) = (cpu_us(), Instant::now());
        store.checkpoint_now().unwrap();
        let (took, cpu) = (started.elapsed(), cpu_us() - cpu0);
        let rows = store.metrics().rows_written - rows0;
        store.shutdown().unwrap();
        (took.as_secs_f64(), cpu as f64 / rows.max(1) as f64, rows)
    };
    let one = usize::MAX;
    let two = ordercore_storage::config::CHECKPOINT_SPLIT_ROWS_MIN;
    let runs = [measure(one), measure(two), measure(two), measure(one)];
    let rows = runs[0].2;
    println!("(d) a checkpoint waited for, {rows} rows (A B B A):");
    for (name, a, b) in [("one thread", 0, 3), ("two threads", 1, 2)] {
        println!(
            "    {name:12} {:.3} / {:.3} s, {:.1} / {:.1} µs of CPU per row",
            runs[a].0, runs[b].0, runs[a].1, runs[b].1
        );
    }
}

/// A sled key and value.
type Row = (Vec<u8>, Vec<u8>);

/// (c) What sled alone charges for each shape of row the write-behind
/// writes, with these families' own keys and bytes: the floor under the
/// store's storage CPU per order.
fn row_costs(rows: &[StateRows]) {
    let family_bytes = rows.iter().map(|r| r.family_row.len()).sum::<usize>() / rows.len().max(1);
    let shapes: [(&str, Vec<Row>); 3] = [
        (
            "family row (time-ordered key)",
            rows.iter()
                .map(|r| (r.family_key.clone(), r.family_row.clone()))
                .collect(),
        ),
        (
            "user index row (by user: random)",
            rows.iter()
                .map(|r| (r.user_key.clone(), Vec::new()))
                .collect(),
        ),
        (
            "expiry index row (by deadline)",
            rows.iter()
                .map(|r| (r.expiry_key.clone(), Vec::new()))
                .collect(),
        ),
    ];
    println!("(c) sled alone, µs of process CPU per row ({} rows each, the second half measured; family rows {family_bytes} bytes; after one discarded run, the mean of two runs in the order A B C C B A):", rows.len());
    // The first database of a process pays for memory no earlier one freed
    // (page faults a later one does not take): one run is discarded. The
    // mirrored order then cancels a drift of the machine over the runs.
    let measure = |rows: &[Row]| {
        let dir = tempfile::tempdir().unwrap();
        sled_row_cpu_us(dir.path(), rows)
    };
    measure(&shapes[0].1);
    let first: Vec<f64> = shapes.iter().map(|(_, shape)| measure(shape)).collect();
    let second: Vec<f64> = shapes
        .iter()
        .rev()
        .map(|(_, shape)| measure(shape))
        .collect();
    let mut costs = Vec::new();
    for (i, (name, _)) in shapes.iter().enumerate() {
        let (a, b) = (first[i], second[shapes.len() - 1 - i]);
        let cost = (a + b) / 2.0;
        println!("    {name:34} {cost:.1} (runs {a:.1}, {b:.1})");
        costs.push(cost);
    }
    println!(
        "    an unpaid order's rows {:.1} µs; a lifecycle's (its expiry row coalesced away) {:.1} µs",
        costs.iter().sum::<f64>(),
        costs[0] + costs[1]
    );
}
