//! decide + apply of the two commands of every order's life: create (2 SKUs)
//! and the pay callback. Baseline in the same run: cloning the family, the
//! least any copy-on-write order store would pay per change.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ordercore_domain::testkit::{pay_action, provider, shopper, Shop};
use ordercore_domain::{decide, Command, OrderFamily};
use std::hint::black_box;

fn create_and_pay(c: &mut Criterion) {
    let mut shop = Shop::default();
    let cmd = shop.create_cmd("u1", &[("A1", 1), ("A2", 2)], None);
    let meta = shopper("u1");
    let family = shop.create("u1", &[("A1", 1), ("A2", 2)], None);
    let pay = Command {
        meta: provider(),
        action: pay_action(&family, "T-1"),
    };

    let mut group = c.benchmark_group("domain");
    group.bench_function("create_decide_apply", |b| {
        b.iter(|| {
            let events = shop
                .decide_create(black_box(&cmd), &meta)
                .expect("accepted");
            let mut family = OrderFamily::create(&events[0]).expect("created");
            for event in &events[1..] {
                family.apply(event);
            }
            black_box(family)
        })
    });
    group.bench_function("pay_decide_apply", |b| {
        b.iter_batched(
            || family.clone(),
            |mut family| {
                let events = decide(&family, black_box(&pay), shop.now).expect("accepted");
                for event in &events {
                    family.apply(event);
                }
                family
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("baseline_family_clone", |b| {
        b.iter(|| black_box(family.clone()))
    });
    group.finish();
}

criterion_group!(benches, create_and_pay);
criterion_main!(benches);
