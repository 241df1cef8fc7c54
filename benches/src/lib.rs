//! Criterion and harness benchmarks for ordercore's hot paths. They live in
//! their own crate so criterion and its dependencies stay out of the server
//! build. The workload shared by the storage benchmarks is defined here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ordercore_domain::catalog::decide_upsert_sku;
use ordercore_domain::codes::ProductType;
use ordercore_domain::event::EventContext;
use ordercore_domain::testkit::{self, pay_action, Shop};
use ordercore_domain::{decide, Actor, Command, Event, IdSequencer, OrderFamily, OrderId};

/// SKUs in the benchmark catalog.
pub const SKUS: usize = 1_000;
/// Distinct users placing orders.
pub const USERS: usize = 100_000;

/// The events of one order's create (2 SKUs) and of its payment.
pub type Lifecycle = (Vec<Event>, Vec<Event>);

/// Order lifecycles decided with the domain, one after another: many users,
/// many SKUs, stock that never runs out.
#[derive(Debug)]
pub struct Workload {
    shop: Shop,
    ids: IdSequencer,
    next: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Self::new()
    }
}

impl Workload {
    pub fn new() -> Self {
        let mut shop = Shop::default();
        shop.skus = (0..SKUS)
            .map(|i| {
                let kind = if i % 5 == 0 {
                    ProductType::ADVANCE_SALE
                } else {
                    ProductType::NORMAL_PRODUCT
                };
                let price = 1_000 + i64::try_from(i % 50).unwrap() * 100;
                testkit::sku(&format!("S{i:04}"), kind, price, 1_000_000_000)
            })
            .collect();
        shop.coupons.clear();
        Workload {
            shop,
            ids: IdSequencer::default(),
            next: 0,
        }
    }

    /// The events that put the catalog into an empty store.
    pub fn catalog(&self) -> Vec<Event> {
        let ctx = EventContext {
            at: self.shop.now,
            actor: Actor::admin("bench"),
            request_id: None,
            reason: None,
            version: 0,
        };
        ctx.events(
            self.shop
                .skus
                .iter()
                .flat_map(|s| decide_upsert_sku(None, s.details.clone(), s.total()).unwrap())
                .collect(),
        )
    }

    /// The SKUs of the benchmark catalog.
    pub fn skus(&self) -> &[ordercore_domain::Sku] {
        &self.shop.skus
    }

    /// The next create request: 2 SKUs, many users, unique order ids.
    pub fn next_create(&mut self) -> ordercore_domain::CreateOrder {
        let i = self.next;
        self.next += 1;
        let (at, seq) = self.ids.next(self.shop.now);
        let owner = testkit::user(&format!("u{}", i % USERS));
        self.create_at(i, OrderId::generate(at, 1, seq, &owner).unwrap())
    }

    /// The `i`th create request once more, with the order id it was given:
    /// a driver sends each request without keeping a copy, and asks for it
    /// again only if the core refused it as overloaded.
    pub fn create_at(&mut self, i: usize, order_id: OrderId) -> ordercore_domain::CreateOrder {
        let owner = format!("u{}", i % USERS);
        let a = format!("S{:04}", (i * 7) % SKUS);
        let b = format!("S{:04}", (i * 7 + 3) % SKUS);
        let mut cmd = self.shop.create_cmd(&owner, &[(&a, 1), (&b, 2)], None);
        cmd.order_id = order_id;
        // The body's fingerprint, as an edge would hash it: one per request.
        cmd.fingerprint = i as u64 + 1;
        cmd
    }

    /// The next lifecycle: a create of 2 SKUs and its payment.
    pub fn next_lifecycle(&mut self) -> Lifecycle {
        let i = self.next;
        let cmd = self.next_create();
        let owner = cmd.user_id.as_str().to_owned();
        let create = self
            .shop
            .decide_create(&cmd, &testkit::shopper(&owner))
            .unwrap();
        self.shop.apply_catalog(&create);
        let mut family = OrderFamily::create(&create[0]).unwrap();
        for e in &create[1..] {
            family.apply(e);
        }
        let pay = Command {
            meta: testkit::provider(),
            action: pay_action(&family, &format!("T{i}")),
        };
        let pay = decide(&family, &pay, self.shop.now).unwrap();
        (create, pay)
    }
}

/// Process CPU time (user + system) from /proc, in µs.
pub fn cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    ticks_us(stat.rsplit_once(')').map_or("", |(_, rest)| rest))
}

/// Process CPU time (user + system) by thread name, in µs, from
/// /proc/self/task: which part of the process a run's CPU went to. Threads
/// that share a name (sled's I/O pool, the shards' arbiters) are summed.
pub fn cpu_us_by_thread() -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, n)| n);
        // Numbered pool threads (`sled-io-3`) count as one.
        let name = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
        *by_name.entry(name.to_owned()).or_insert(0) += ticks_us(rest);
    }
    by_name
}

/// utime + stime of a /proc `stat` line's fields after the name, in µs.
fn ticks_us(after_name: &str) -> u64 {
    // By position (proc(5)): after the name come state, ppid, pgrp, session,
    // tty_nr, tpgid, flags, four fault counts, then utime and stime in clock
    // ticks of 10 ms. tpgid is -1 without a controlling terminal, so the
    // fields cannot be picked out by whether they parse as unsigned.
    let mut fields = after_name.split_whitespace().skip(11);
    let mut ticks = || {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks() + ticks()) * 10_000
}

/// Submits lifecycles to a store keeping up to `window` units in flight, so
/// group commit can fill its groups: creates of a stride of orders, then
/// their payments.
pub fn submit_all(store: &ordercore_storage::Store, work: &[Lifecycle], window: usize) {
    use std::collections::VecDeque;
    const STRIDE: usize = 1_024;
    let mut inflight: VecDeque<ordercore_storage::Ticket> = VecDeque::with_capacity(window);
    let epoch = store.epoch();
    for chunk in work.chunks(STRIDE) {
        for step in 0..2 {
            for (create, pay) in chunk {
                let events = if step == 0 {
                    create.clone()
                } else {
                    pay.clone()
                };
                if inflight.len() >= window {
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
}

/// Records per `flush` in the raw sled ceiling.
pub const RAW_BATCH_RECORDS: usize = 1_024;

/// A fresh sled database at `dir`, configured as the store's (high
/// throughput, flushed only when asked).
fn open_sled(dir: &std::path::Path) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None)
        .open()
        .unwrap()
}

/// The raw ceiling: sled inserts of `records` with one `flush` per
/// [`RAW_BATCH_RECORDS`], in a fresh database at `dir`. Inserts, not
/// `apply_batch`: the first batch in a process switches sled 0.34 to a
/// process-wide lock for every later operation, and would slow down
/// whatever this process measures next.
pub fn raw_sled(dir: &std::path::Path, records: &[Vec<u8>]) -> std::time::Duration {
    let db = open_sled(dir);
    let tree = db.open_tree("raw").unwrap();
    let started = std::time::Instant::now();
    for (b, chunk) in records.chunks(RAW_BATCH_RECORDS).enumerate() {
        for (i, r) in chunk.iter().enumerate() {
            let key = ((b * RAW_BATCH_RECORDS + i) as u64).to_be_bytes();
            tree.insert(key, r.as_slice()).unwrap();
        }
        db.flush().unwrap();
    }
    started.elapsed()
}

/// µs of process CPU per row that sled alone spends inserting `rows`
/// (key, value) into a fresh database at `dir`, one flush per
/// [`RAW_BATCH_RECORDS`]: the first half fills the tree to the depth a
/// store of that many rows has, the second half is measured.
pub fn sled_row_cpu_us(dir: &std::path::Path, rows: &[(Vec<u8>, Vec<u8>)]) -> f64 {
    let db = open_sled(dir);
    let tree = db.open_tree("rows").unwrap();
    let (fill, measured) = rows.split_at(rows.len() / 2);
    let insert = |part: &[(Vec<u8>, Vec<u8>)]| {
        for chunk in part.chunks(RAW_BATCH_RECORDS) {
            for (key, value) in chunk {
                tree.insert(key.as_slice(), value.as_slice()).unwrap();
            }
            db.flush().unwrap();
        }
    };
    insert(fill);
    let cpu0 = cpu_us();
    insert(measured);
    (cpu_us() - cpu0) as f64 / measured.len().max(1) as f64
}

/// Encoded units of `work` (one per create and per payment), as the raw
/// ceiling's records.
pub fn unit_bytes(work: &[Lifecycle]) -> Vec<Vec<u8>> {
    use ordercore_storage::journal::{encode_unit, Unit};
    work.iter()
        .flat_map(|(c, p)| [c, p])
        .map(|events| encode_unit(&Unit::new(0, events.clone())).unwrap())
        .collect()
}

/// Resident memory of this process, in bytes (from /proc).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Driving an in-process `OrderCore` (inside an actix `System`).
mod core_driver {
    use super::Workload;
    use ordercore_actors::{CoreConfig, OrderCore, Outcome, WriteOptions};
    use ordercore_domain::testkit;
    use ordercore_domain::{Command, CommandMeta, CreateOrder, OrderFamily};
    use ordercore_storage::{Store, StoreConfig};
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::Duration;

    /// Lifecycles in flight at once: enough for group commit to fill groups.
    pub const WINDOW: usize = 4_096;

    /// `ORDERCORE_BENCH_DURABILITY=relaxed` runs it relaxed (reported beside
    /// durable figures, never instead of them).
    /// `idle` is how long actors stay idle before they compact their family
    /// or passivate on their own.
    pub fn start(dir: &std::path::Path, idle: Duration) -> OrderCore {
        start_with(StoreConfig::new(dir), idle)
    }

    /// [`start`] with the store's settings given.
    pub fn start_with(mut config: StoreConfig, idle: Duration) -> OrderCore {
        if std::env::var("ORDERCORE_BENCH_DURABILITY").is_ok_and(|d| d == "relaxed") {
            config.durability = ordercore_storage::Durability::Relaxed;
        }
        let store = Store::open(config).unwrap();
        let mut config = CoreConfig {
            passivate_after: idle,
            compact_after: idle,
            ..CoreConfig::default()
        };
        // As the server's `--shards`: by default one per core.
        if let Some(n) = std::env::var("ORDERCORE_BENCH_SHARDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|n: &usize| *n > 0)
        {
            config.shards = n;
        }
        OrderCore::start(store, config).unwrap()
    }

    pub async fn seed(core: &OrderCore, workload: &Workload) {
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

    /// Runs `cmds` (the next ones of `workload`) through the core with
    /// `WINDOW` in flight; pays each order after its create when `pay` is
    /// set. Each request is sent as it is, not a copy of it, as an edge
    /// sends the one it parsed; one the core refuses as overloaded is asked
    /// of `workload` again and retried.
    pub async fn drive(
        core: &OrderCore,
        workload: &Rc<RefCell<Workload>>,
        cmds: Vec<CreateOrder>,
        pay: bool,
    ) {
        let first = workload
            .borrow()
            .next
            .checked_sub(cmds.len())
            .expect("`cmds` are the last requests `workload` made");
        let queue = Rc::new(RefCell::new(
            cmds.into_iter()
                .enumerate()
                .map(move |(i, c)| (first + i, c)),
        ));
        let window = std::env::var("ORDERCORE_BENCH_WINDOW")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(WINDOW);
        let workers: Vec<_> = (0..window)
            .map(|_| {
                let (core, queue, workload) =
                    (core.clone(), Rc::clone(&queue), Rc::clone(workload));
                actix::spawn(async move {
                    loop {
                        let next = queue.borrow_mut().next();
                        let Some((i, mut cmd)) = next else { break };
                        let order_id = cmd.order_id;
                        let created = loop {
                            let meta = CommandMeta::by(ordercore_domain::Actor::user(&cmd.user_id));
                            match core.create_order(cmd, meta, None).await {
                                Ok(outcome) => break family(outcome),
                                Err(e) if overloaded(&e) => {
                                    actix::clock::sleep(Duration::from_millis(1)).await;
                                    cmd = workload.borrow_mut().create_at(i, order_id);
                                }
                                Err(e) => panic!("create failed: {e}"),
                            }
                        };
                        if pay {
                            let trade_no = format!("T{i}");
                            loop {
                                let cmd = Command {
                                    meta: testkit::provider(),
                                    action: testkit::pay_action(&created, &trade_no),
                                };
                                match core.execute(cmd, WriteOptions::default()).await {
                                    Ok(_) => break,
                                    Err(e) if overloaded(&e) => {
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

    fn overloaded(e: &ordercore_actors::CoreError) -> bool {
        e.code() == ordercore_domain::ErrorCode::OVERLOADED
    }
}

pub use core_driver::{drive, seed, start, start_with, WINDOW};

#[cfg(test)]
mod tests {
    use super::{drive, seed, start_with, Workload};
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    /// A writer queue of two units refuses most creates and payments as
    /// overloaded: the driver asks for each again and every lifecycle
    /// still completes, once.
    #[test]
    fn the_driver_retries_what_the_core_refuses_as_overloaded() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ordercore_storage::StoreConfig::new(dir.path());
        config.queue_units_max = 2;
        let n = 300;
        actix::System::new().block_on(async {
            let core = start_with(config, Duration::from_secs(3_600));
            let mut workload = Workload::new();
            seed(&core, &workload).await;
            let cmds = (0..n).map(|_| workload.next_create()).collect();
            drive(&core, &Rc::new(RefCell::new(workload)), cmds, true).await;
            let outcomes = core.metrics().outcomes;
            assert_eq!((outcomes.orders_created, outcomes.orders_paid), (n, n));
            assert!(core.store().metrics().overloaded > 0, "nothing was refused");
            core.shutdown().unwrap();
        });
    }

    #[test]
    fn a_create_asked_for_again_is_the_one_first_given() {
        let mut workload = Workload::new();
        let first: Vec<_> = (0..300).map(|_| workload.next_create()).collect();
        for (i, cmd) in first.iter().enumerate() {
            assert_eq!(&workload.create_at(i, cmd.order_id), cmd);
        }
        assert_ne!(first[0], first[1]);
    }
}
