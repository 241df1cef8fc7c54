//! The hot paths of a request, each with a same-run baseline:
//!
//! * codec: encoding and decoding a create's journal unit and a family row
//!   (plain, and packed with LZ4 as the write-behind writes it),
//!   and cloning a family (baseline: cloning the create's events);
//! * JSON: parsing a create request into the domain's command (baseline:
//!   parsing the same bytes into an untyped `serde_json::Value`);
//! * auth: verifying a bearer JWT and an HMAC callback signature;
//! * writer: a durable submit of one create unit under load (16 in flight),
//!   per unit;
//! * core: a create + pay lifecycle through `OrderCore`, durable, every
//!   lifecycle of a sample in flight at once (up to 4,096), per lifecycle.
//!
//! `cargo bench -p ordercore-benches --bench hot_paths`

use criterion::{criterion_group, criterion_main, Criterion};
use ordercore::auth::{sign, verify_signature, TokenKeys};
use ordercore::dto::CreateOrderRequest;
use ordercore_benches::{drive, seed, start, Workload};
use ordercore_domain::testkit::{shopper, Shop};
use ordercore_domain::{OrderFamily, UserId};
use ordercore_storage::codec::{decode, encode, encode_packed};
use ordercore_storage::journal::{encode_unit, Unit};
use ordercore_storage::{Store, StoreConfig};
use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

const CREATE_JSON: &str = r#"{"order_id":"260101000000010000011000000000u1","user_id":"u1","business_identifier":1,"order_type":1,
"delivery":{"delivery_type":1,"receiver_name":"Alice","receiver_phone":"13800000000","province":"Zhejiang","city":"Hangzhou","area":"Xihu","detail_address":"1 Lake Road"},
"items":[{"sku_code":"A1","sale_quantity":1},{"sku_code":"A2","sale_quantity":2}],
"amounts":[{"amount_type":10,"amount":12000},{"amount_type":30,"amount":0},{"amount_type":50,"amount":12000}],
"payments":[{"pay_type":10,"pay_amount":12000}]}"#;

fn codec(c: &mut Criterion) {
    let mut shop = Shop::default();
    let cmd = shop.create_cmd("u1", &[("A1", 1), ("A2", 2)], None);
    let events = shop.decide_create(&cmd, &shopper("u1")).expect("accepted");
    let unit = Unit::new(0, events.clone());
    let family = shop.create("u1", &[("A1", 1), ("A2", 2)], None);
    let unit_bytes = encode_unit(&unit).expect("encodes");
    let family_bytes = encode(&family).expect("encodes");
    let mut g = c.benchmark_group("codec");
    g.bench_function("encode_create_unit", |b| {
        b.iter(|| encode_unit(black_box(&unit)))
    });
    g.bench_function("decode_family_row", |b| {
        b.iter(|| decode::<OrderFamily>(black_box(&family_bytes), "family"))
    });
    g.bench_function("encode_family_row", |b| {
        b.iter(|| encode(black_box(&family)))
    });
    // As the write-behind writes it: encoded, then LZ4-packed.
    g.bench_function("pack_family_row", |b| {
        b.iter(|| encode_packed(black_box(&family)))
    });
    // What an order actor pays when it changes a family the write-behind
    // still holds (copy-on-write), and frees when the old copy is dropped.
    g.bench_function("clone_family", |b| b.iter(|| black_box(family.clone())));
    g.bench_function("baseline_clone_create_events", |b| {
        b.iter(|| black_box(events.clone()))
    });
    g.finish();
    eprintln!(
        "bytes: create unit {}, family row {}",
        unit_bytes.len(),
        family_bytes.len()
    );
}

fn json_and_auth(c: &mut Criterion) {
    let mut g = c.benchmark_group("edge");
    let bytes = CREATE_JSON.replace('\n', "").into_bytes();
    g.bench_function("parse_create_request", |b| {
        b.iter(|| {
            let req: CreateOrderRequest =
                serde_json::from_slice(black_box(&bytes)).expect("parses");
            req.into_command().expect("valid")
        })
    });
    g.bench_function("baseline_parse_untyped_json", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&bytes)).expect("parses"))
    });
    let keys = TokenKeys::new("bench-secret-bench-secret-0123456789");
    let user = UserId::parse("u1").expect("valid");
    let token = keys
        .mint(&user, false, Duration::from_secs(3_600))
        .expect("mints");
    let header = format!("Bearer {token}");
    // A token seen before (the common case: one per shopper session) ...
    keys.verify(Some(&header)).expect("valid");
    g.bench_function("verify_jwt_remembered", |b| {
        b.iter(|| keys.verify(Some(black_box(&header))).expect("valid"))
    });
    // ... and one seen for the first time: the signature checked.
    g.bench_function("verify_jwt_first_use", |b| {
        b.iter_batched(
            || TokenKeys::new("bench-secret-bench-secret-0123456789"),
            |fresh| fresh.verify(Some(black_box(&header))).expect("valid"),
            criterion::BatchSize::SmallInput,
        )
    });
    let signature = sign("pay-secret", &bytes);
    g.bench_function("verify_hmac_signature", |b| {
        b.iter(|| {
            verify_signature("pay-secret", black_box(&bytes), Some(&signature)).expect("valid")
        })
    });
    g.finish();
}

fn writer_and_core(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreConfig::new(dir.path())).expect("opens");
    let mut workload = Workload::new();
    store
        .submit(0, store.epoch(), workload.catalog())
        .expect("queued")
        .wait()
        .expect("durable");
    g.bench_function("writer_submit_create_unit_16_in_flight", |b| {
        b.iter_custom(|iters| {
            let units: Vec<_> = (0..iters).map(|_| workload.next_lifecycle().0).collect();
            let started = Instant::now();
            let mut inflight = std::collections::VecDeque::new();
            for events in units {
                if inflight.len() >= 16 {
                    let t: ordercore_storage::Ticket = inflight.pop_front().expect("some");
                    t.wait().expect("durable");
                }
                inflight.push_back(store.submit(0, store.epoch(), events).expect("queued"));
            }
            for t in inflight {
                t.wait().expect("durable");
            }
            started.elapsed()
        })
    });
    store.shutdown().expect("closes");
    drop(store);

    let system = actix::System::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let core = system.block_on(async {
        let core = start(dir.path(), Duration::from_secs(3_600));
        seed(&core, &Workload::new()).await;
        core
    });
    let workload = Rc::new(RefCell::new(Workload::new()));
    g.bench_function("core_create_pay_lifecycle", |b| {
        b.iter_custom(|iters| {
            let cmds: Vec<_> = (0..iters)
                .map(|_| workload.borrow_mut().next_create())
                .collect();
            system.block_on(async {
                let started = Instant::now();
                drive(&core, &workload, cmds, true).await;
                started.elapsed()
            })
        })
    });
    g.finish();
    let _ = core.shutdown();
}

criterion_group!(benches, codec, json_and_auth, writer_and_core);
/// The allocator the server runs with (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_main!(benches);
