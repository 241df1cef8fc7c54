//! Storage throughput, in ONE run (DESIGN.md, "Storage"):
//!
//! (a) the raw ceiling: sled `apply_batch` + `flush` of the same unit bytes
//!     in batches of 1024 records;
//! (b) the store's writer appending order lifecycles (create with 2 SKUs,
//!     then pay), durable, sustained: the clock stops only when the
//!     write-behind has caught up (nothing dirty).
//!
//! Prints lifecycles/s, µs of process CPU per lifecycle, records written per
//! lifecycle (journal records + state rows) and the ratio of (b) to (a).
//!
//! `cargo bench -p ordercore-benches --bench storage [-- LIFECYCLES]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use ordercore_domain::catalog::decide_upsert_sku;
use ordercore_domain::codes::ProductType;
use ordercore_domain::event::EventContext;
use ordercore_domain::testkit::{self, pay_action, Shop};
use ordercore_domain::{decide, Actor, Command, Event, IdSequencer, OrderFamily, OrderId};
use ordercore_storage::journal::{encode_unit, Unit};
use ordercore_storage::{Store, StoreConfig, Ticket};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Tickets in flight: enough for group commit to fill its groups.
const WINDOW: usize = 8_192;
const SKUS: usize = 1_000;
const USERS: usize = 100_000;
const RAW_BATCH_RECORDS: usize = 1_024;

/// Process CPU time (user + system) from /proc, in µs.
fn cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // After the command name: state is not numeric, so utime/stime are
    // fields 11 and 12 of the numeric ones (clock ticks of 10 ms).
    fields.get(10..12).map_or(0, |f| (f[0] + f[1]) * 10_000)
}

/// The events of one order's create and of its payment.
type Lifecycle = (Vec<Event>, Vec<Event>);

fn lifecycles(n: usize) -> (Vec<Event>, Vec<Lifecycle>) {
    let mut shop = Shop::default();
    shop.skus = (0..SKUS)
        .map(|i| {
            let kind = if i % 5 == 0 {
                ProductType::ADVANCE_SALE
            } else {
                ProductType::NORMAL_PRODUCT
            };
            testkit::sku(
                &format!("S{i:04}"),
                kind,
                1_000 + (i as i64 % 50) * 100,
                1_000_000_000,
            )
        })
        .collect();
    shop.coupons.clear();
    let ctx = EventContext {
        at: shop.now,
        actor: Actor::admin("bench"),
        request_id: None,
        reason: None,
        version: 0,
    };
    let catalog = ctx.events(
        shop.skus
            .iter()
            .flat_map(|s| decide_upsert_sku(None, s.details.clone(), s.total()).unwrap())
            .collect(),
    );
    let mut ids = IdSequencer::default();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let owner = format!("u{}", i % USERS);
        let a = format!("S{:04}", (i * 7) % SKUS);
        let b = format!("S{:04}", (i * 7 + 3) % SKUS);
        let mut cmd = shop.create_cmd(&owner, &[(&a, 1), (&b, 2)], None);
        let (at, seq) = ids.next(shop.now);
        cmd.order_id = OrderId::generate(at, 1, seq, &testkit::user(&owner)).unwrap();
        let create = shop.decide_create(&cmd, &testkit::shopper(&owner)).unwrap();
        shop.apply_catalog(&create);
        let mut family = OrderFamily::create(&create[0]).unwrap();
        for e in &create[1..] {
            family.apply(e);
        }
        let pay = Command {
            meta: testkit::provider(),
            action: pay_action(&family, &format!("T{i}")),
        };
        let pay = decide(&family, &pay, shop.now).unwrap();
        out.push((create, pay));
    }
    (catalog, out)
}

fn raw_sled(dir: &std::path::Path, records: &[Vec<u8>]) -> Duration {
    let db = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None)
        .open()
        .unwrap();
    let tree = db.open_tree("raw").unwrap();
    let started = Instant::now();
    for (b, chunk) in records.chunks(RAW_BATCH_RECORDS).enumerate() {
        let mut batch = sled::Batch::default();
        for (i, r) in chunk.iter().enumerate() {
            let key = ((b * RAW_BATCH_RECORDS + i) as u64).to_be_bytes();
            batch.insert(&key, r.as_slice());
        }
        tree.apply_batch(batch).unwrap();
        db.flush().unwrap();
    }
    started.elapsed()
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    println!("generating {n} lifecycles (create 2 SKUs + pay) ...");
    let (catalog, work) = lifecycles(n);
    let unit_bytes: Vec<Vec<u8>> = work
        .iter()
        .flat_map(|(c, p)| [c, p])
        .map(|events| {
            encode_unit(&Unit {
                shard: 0,
                events: events.clone(),
            })
            .unwrap()
        })
        .collect();
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
    let mut inflight: VecDeque<Ticket> = VecDeque::with_capacity(WINDOW);
    let epoch = store.epoch();
    const STRIDE: usize = 1_024;
    for chunk in work.chunks(STRIDE) {
        for step in 0..2 {
            for (create, pay) in chunk {
                let events = if step == 0 {
                    create.clone()
                } else {
                    pay.clone()
                };
                if inflight.len() >= WINDOW {
                    inflight.pop_front().unwrap().wait().unwrap();
                }
                // A full queue answers Overloaded: wait for the oldest and retry.
                let ticket = loop {
                    match store.submit(0, epoch, events.clone()) {
                        Ok(t) => break t,
                        Err(e) => inflight
                            .pop_front()
                            .expect("overloaded with nothing in flight")
                            .wait()
                            .unwrap_or_else(|w| panic!("{e}; then {w}")),
                    }
                };
                inflight.push_back(ticket);
            }
        }
    }
    for t in inflight {
        t.wait().unwrap();
    }
    let acked = started.elapsed();
    store.checkpoint_now().unwrap();
    let sustained = started.elapsed();
    let cpu = cpu_us() - cpu0;
    let after = store.metrics();
    store.shutdown().unwrap();

    let lifecycles_per_s = n as f64 / sustained.as_secs_f64();
    let records = (after.groups - before.groups) + (after.rows_written - before.rows_written);
    let groups = after.groups - before.groups;
    println!();
    println!("unit bytes per lifecycle           {bytes_per_lifecycle:.0}");
    println!("(a) raw sled, 1024-record batches  {raw_records_per_s:.0} records/s = {:.0} lifecycles/s (2 records each)", raw_records_per_s / 2.0);
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
        "ratio (b) / (a) in lifecycles      {:.2}",
        lifecycles_per_s / (raw_records_per_s / 2.0)
    );
}
