//! Structured fuzzing of the whole API against the real server.
//!
//! Random plans of requests are built from the live state (real order ids,
//! their pay amounts, sub-orders and after-sales, the next fulfillment
//! step), each sent as is or one other way:
//! - spoiled: a value replaced by one of another type or out of range, a
//!   field dropped, an unknown field added, an array repeated, a number
//!   nudged; another caller or none; a bad `Idempotency-Key`, `If-Match`
//!   or `X-Request-Id`;
//! - `?dry_run=true`, then for real: the two must agree;
//! - with a new `Idempotency-Key`, sent again at once and after a restart
//!   (the recorded answer, changing nothing), or twice at once (the same
//!   answer twice, a success applied once);
//! - with `If-Match` naming the family's version (never refused for it) or
//!   the one before (always 412).
//!
//! Every response keeps the rules [`Req::send`] checks (no 5xx; every error
//! exactly `{code, message}`, with a documented code and that code's one
//! status); no token or a forged one is 401, a shopper never reaches
//! another's order, and a refused write leaves what it names as it was.
//! After each plan the store is consistent ([`check_store`]): stock
//! conservation, locked units against the CREATED orders, status logs,
//! refunds within the payment, coupons, listings. Plans restart or kill
//! the server in their middle and at their end (half of them with actors
//! compacting 1 ms after each change, a third in relaxed durability,
//! which are only stopped gracefully): everything reads back exactly as
//! before, recorded keys replay, and the event stream is the feed. Pairs
//! of plans also run at once on one server, each for half the shoppers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Plans per run; each starts its own server.
const PLANS: u32 = 32;
/// Steps per plan: enough to reach paid, fulfilled and refunded orders.
const STEPS: std::ops::Range<usize> = 60..110;
/// Bounded shrinking: every attempt starts a server.
const SHRINK_ITERS: u32 = 32;

/// Shoppers (the demo coupons belong to the first three).
const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
/// A shopper who owns nothing.
const STRANGER: &str = "mallory";
const COUPONS: [Option<&str>; 4] = [
    Some("CPN-ALICE-10"),
    Some("CPN-BOB-20"),
    Some("CPN-CAROL-5"),
    None,
];
/// Who a run of steps acts for: its shoppers, and the prefix of the
/// coupons it issues (so that concurrent runs touch disjoint orders and
/// coupons).
#[derive(Debug, Clone, Copy)]
struct Cast {
    users: &'static [&'static str],
    coupons: &'static str,
}
/// Every shopper, for a plan run alone.
const EVERYONE: Cast = Cast {
    users: &USERS,
    coupons: "",
};
/// The two halves of the shoppers, for two plans run at once.
const HALVES: [Cast; 2] = [
    Cast {
        users: &["alice", "bob"],
        coupons: "A",
    },
    Cast {
        users: &["carol", "dave"],
        coupons: "B",
    },
];

/// A shopper's demo coupon.
fn demo_coupon(user: &str) -> Option<&'static str> {
    USERS
        .iter()
        .position(|u| *u == user)
        .and_then(|i| COUPONS[i])
}

/// The demo SKUs and their stock at seeding (`src/demo.rs`).
const DEMO_STOCK: [(&str, i64); 4] = [(TEA, 1_000), (MUG, 500), (LAMP, 300), (BOOK, 200)];
/// Fulfillment steps, in order (API.md, "Fulfillment").
const EVENTS: [&str; 5] = ["FULFILLED", "OUT_STOCK", "DELIVERY", "SIGNED", "REFUSED"];

#[derive(Debug, Clone, Copy)]
enum Op {
    OrderIds,
    Price,
    Create,
    Prepay,
    Pay,
    Cancel,
    Address,
    Remove,
    Fulfill,
    Note,
    AfterSale,
    Lack,
    Review,
    Revoke,
    RefundCallback,
    Retry,
    Stock,
    Coupon,
    Sku,
    Listing,
    Read,
    /// A restart (or a crash) in the middle of the plan: the commands
    /// after it meet families activated from storage.
    Restart,
}

/// How a valid request is spoiled.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    /// The value at the `at`-th node becomes [`odd_value`]`(with)`.
    Replace {
        at: usize,
        with: usize,
    },
    /// The `at`-th node is removed from its object or array.
    Drop {
        at: usize,
    },
    /// The `at`-th object gets a field no route knows.
    Unknown {
        at: usize,
    },
    /// The `at`-th array becomes `times` copies of its first element.
    Repeat {
        at: usize,
        times: usize,
    },
    /// The `at`-th integer moves by `by`.
    Nudge {
        at: usize,
        by: i64,
    },
    /// Sent by [`CALLERS`]`[i]` instead (or, for a callback, signed over
    /// other bytes).
    Caller(usize),
    /// One of [`HEADERS`] added.
    Header(usize),
    /// Sent with `?dry_run=true` first, then for real.
    DryRun,
    /// Sent with a new `Idempotency-Key`, then again with the same one
    /// (and once more after the plan's restart).
    Replay,
    /// Sent twice at once with the same new `Idempotency-Key`, as a client
    /// retrying before its first answer came.
    Twice,
    /// Sent with `If-Match` naming the family's version as read just
    /// before (`stale`: the version before it).
    IfMatch {
        stale: bool,
    },
}

#[derive(Debug, Clone)]
struct Step {
    op: Op,
    pick: usize,
    mutation: Mutation,
}

/// Values of the wrong type, out of range or odd, for [`Mutation::Replace`].
fn odd_value(i: usize) -> Value {
    match i % 20 {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(i64::MAX),
        5 => json!(i64::MIN),
        6 => json!(u64::MAX),
        7 => json!(1.5),
        8 => json!(1e300),
        9 => json!(""),
        10 => json!("x".repeat(10_000)),
        11 => json!("\u{0}"),
        12 => json!("订单 🚚"),
        13 => json!([]),
        14 => json!({}),
        15 => json!([[[[[[[[[[1]]]]]]]]]]),
        16 => json!("-1"),
        17 => json!(" "),
        18 => json!(2_000_000_000_i64),
        _ => json!(-0.0),
    }
}

/// Odd query values for the listings.
const QUERY_VALUES: [&str; 10] = [
    "0",
    "101",
    "-1",
    "abc",
    "99999999999999999999",
    "%00",
    "10&status=999",
    "1.5",
    "",
    "%E8%AE%A2",
];

/// Who sends a [`Mutation::Caller`] request instead.
#[derive(Debug, Clone, Copy)]
enum Caller {
    Nobody,
    Stranger,
    GarbageToken,
    WrongSecret,
}
const CALLERS: [Caller; 4] = [
    Caller::Nobody,
    Caller::Stranger,
    Caller::GarbageToken,
    Caller::WrongSecret,
];

/// Headers for [`Mutation::Header`]; every value is printable ASCII, so
/// the request itself is valid HTTP.
const HEADERS: [(&str, &str); 9] = [
    ("Idempotency-Key", "fuzz-key-1"),
    ("Idempotency-Key", "has space"),
    (
        "Idempotency-Key",
        "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
    ),
    ("If-Match", "\"1\""),
    ("If-Match", "\"999\""),
    ("If-Match", "garbage"),
    ("If-Match", "*"),
    ("X-Request-Id", "ünïcode-is-not-ascii-but-this-is-fine"),
    ("Content-Type", "text/plain"),
];

/// Who a valid request is sent as.
#[derive(Debug, Clone)]
enum Who {
    User(String),
    Admin,
    /// A provider callback, signed with the payment secret.
    Signed,
}

/// One request before it is sent.
#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    path: String,
    body: Option<Value>,
    who: Who,
    /// The owner of the order or after-sale it acts on, if any.
    owner: Option<String>,
}

impl Request {
    fn new(method: &'static str, path: String, body: Option<Value>, who: Who) -> Request {
        let owner = match &who {
            Who::User(u) => Some(u.clone()),
            _ => None,
        };
        Request {
            method,
            path,
            body,
            who,
            owner,
        }
    }

    fn owned_by(mut self, owner: &str) -> Request {
        self.owner = Some(owner.to_owned());
        self
    }
}

#[derive(Debug, Clone)]
struct Order {
    id: String,
    user: String,
    /// The sub-orders of a mixed family (empty for a single order).
    parts: Vec<String>,
    pay_amount: i64,
}

/// What a plan has built so far.
#[derive(Debug, Default)]
struct World {
    orders: Vec<Order>,
    /// (after-sale id, owner)
    after_sales: Vec<(String, String)>,
    /// Stock deltas applied to the demo SKUs since their total was last
    /// set (`totals`, else their seeding).
    deltas: BTreeMap<String, i64>,
    /// Total stock a demo SKU's upsert set.
    totals: BTreeMap<String, i64>,
    /// Keyed requests that succeeded: the request, its key, and the
    /// response recorded for it (status and body).
    keyed: Vec<(Request, String, u16, String)>,
}

/// How often each named case was reached, over all plans.
#[derive(Debug, Default)]
struct Counts(RefCell<BTreeMap<String, u64>>);

impl Counts {
    fn hit(&self, what: impl Into<String>) {
        *self.0.borrow_mut().entry(what.into()).or_default() += 1;
    }

    /// Adds what another run counted.
    fn absorb(&self, other: Counts) {
        let mut mine = self.0.borrow_mut();
        for (what, n) in other.0.into_inner() {
            *mine.entry(what).or_default() += n;
        }
    }
}

fn ops() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::OrderIds),
        1 => Just(Op::Price),
        6 => Just(Op::Create),
        2 => Just(Op::Prepay),
        5 => Just(Op::Pay),
        2 => Just(Op::Cancel),
        1 => Just(Op::Address),
        1 => Just(Op::Remove),
        5 => Just(Op::Fulfill),
        1 => Just(Op::Note),
        3 => Just(Op::AfterSale),
        2 => Just(Op::Lack),
        2 => Just(Op::Review),
        1 => Just(Op::Revoke),
        2 => Just(Op::RefundCallback),
        1 => Just(Op::Retry),
        1 => Just(Op::Stock),
        1 => Just(Op::Coupon),
        1 => Just(Op::Sku),
        1 => Just(Op::Listing),
        1 => Just(Op::Restart),
        2 => Just(Op::Read),
    ]
}

fn mutations() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        5 => Just(Mutation::None),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(at, with)| Mutation::Replace { at, with }),
        1 => any::<usize>().prop_map(|at| Mutation::Drop { at }),
        1 => any::<usize>().prop_map(|at| Mutation::Unknown { at }),
        1 => (any::<usize>(), 2_usize..200).prop_map(|(at, times)| Mutation::Repeat { at, times }),
        2 => (any::<usize>(), prop_oneof![Just(-1_i64), Just(1), Just(-100), Just(100), Just(i64::MAX / 2)])
            .prop_map(|(at, by)| Mutation::Nudge { at, by }),
        1 => (0..CALLERS.len()).prop_map(Mutation::Caller),
        1 => (0..HEADERS.len()).prop_map(Mutation::Header),
        2 => Just(Mutation::DryRun),
        2 => Just(Mutation::Replay),
        1 => Just(Mutation::Twice),
        2 => any::<bool>().prop_map(|stale| Mutation::IfMatch { stale }),
    ]
}

fn plans() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (ops(), any::<usize>(), mutations()).prop_map(|(op, pick, mutation)| Step {
            op,
            pick,
            mutation,
        }),
        STEPS,
    )
}

/// Runs `test` on `cases` values of `strategy`, shrinking a failure a
/// bounded number of times (each attempt starts servers).
fn run_cases<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value)) {
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: SHRINK_ITERS,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, |value| {
        test(value);
        Ok(())
    }) {
        panic!("{e}");
    }
}

#[test]
fn random_requests_keep_every_rule_and_the_store_consistent() {
    let counts = Counts::default();
    run_cases(PLANS, plans(), |plan| run_plan(&plan, &counts));
    let counts = counts.0.into_inner();
    eprintln!("{counts:#?}");
    let reached = |name: &str| counts.get(name).copied().unwrap_or(0);
    // Each kind of case was met, so no check above held vacuously.
    for name in [
        "Create 2xx",
        "Pay 2xx",
        "Cancel 2xx",
        "Fulfill 2xx",
        "AfterSale 2xx",
        "Review 2xx",
        "RefundCallback 2xx",
        "mutated 4xx",
        "unmutated 4xx",
        "no token 401",
        "bad signature 401",
        "stranger refused",
        "refused and unchanged",
        "dry run refused as for real",
        "dry run agreed with the real one",
        "restart compared",
        "crash compared",
        "replayed",
        "replayed after the restart",
        "sent twice at once, 2xx",
        "stale If-Match refused",
        "current If-Match 2xx",
        "history events found in the feed",
        "streams matched the feed",
        "plans with compacting actors",
        "plans in relaxed durability",
        "restarted mid-plan",
        "coupons checked against their orders",
        "refunds checked against their payment",
        "compactions",
        "rehydrations",
        "plans checked",
    ] {
        assert!(reached(name) > 0, "never reached {name}: {counts:#?}");
    }
    let codes = counts.keys().filter(|k| k.starts_with("code ")).count();
    assert!(
        codes >= 15,
        "only {codes} distinct error codes: {counts:#?}"
    );
}

/// Plans run two at a time.
const CONCURRENT_PLANS: u32 = 16;

/// Two plans at once on one server, each for its half of the shoppers (so
/// the per-request checks, which read the order a request names, stay
/// exact), sharing the catalog: the same checks, and the store consistent
/// after both, across a restart.
#[test]
fn two_plans_at_once_keep_every_rule_and_the_store_consistent() {
    let counts = Counts::default();
    let shared = |plan: Vec<Step>| {
        // A restart would cut the other plan's requests, and catalog
        // writes would move what the other plan's checks read.
        plan.into_iter()
            .map(|mut step| {
                if matches!(step.op, Op::Restart | Op::Stock | Op::Sku) {
                    step.op = Op::Read;
                }
                step
            })
            .collect::<Vec<_>>()
    };
    run_cases(CONCURRENT_PLANS, (plans(), plans()), |(left, right)| {
        run_two(&shared(left), &shared(right), &counts);
    });
    let counts = counts.0.into_inner();
    eprintln!("{counts:#?}");
    for name in [
        "Create 2xx",
        "Pay 2xx",
        "Fulfill 2xx",
        "AfterSale 2xx",
        "refused and unchanged",
        "replayed",
        "replayed after the restart",
        "plans checked",
    ] {
        assert!(
            counts.get(name).copied().unwrap_or(0) > 0,
            "never reached {name}: {counts:#?}"
        );
    }
}

/// Runs `left` and `right` at once, each on its own thread and half of
/// the shoppers, then ends them as one plan.
fn run_two(left: &[Step], right: &[Step], counts: &Counts) {
    let (s, mode) = start(left, counts);
    let worlds: Vec<(World, Counts)> = std::thread::scope(|scope| {
        let runs: Vec<_> = [left, right]
            .into_iter()
            .zip(HALVES)
            .map(|(plan, cast)| {
                let s = &s;
                scope.spawn(move || {
                    let (mut world, counts) = (World::default(), Counts::default());
                    for step in plan {
                        run_step(s, &mut world, step, cast, &counts);
                    }
                    (world, counts)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut world = World::default();
    for (w, c) in worlds {
        counts.absorb(c);
        world.orders.extend(w.orders);
        world.after_sales.extend(w.after_sales);
        world.keyed.extend(w.keyed);
    }
    finish_plan(s, &world, left.len().is_multiple_of(2), mode, counts);
}

fn run_plan(plan: &[Step], counts: &Counts) {
    let (mut s, mode) = start(plan, counts);
    let mut world = World::default();
    for step in plan {
        if let Op::Restart = step.op {
            restart(&mut s, &world, mode.relaxed || step.pick % 2 == 0, counts);
            counts.hit("restarted mid-plan");
            continue;
        }
        run_step(&s, &mut world, step, EVERYONE, counts);
    }
    finish_plan(s, &world, plan.len().is_multiple_of(2), mode, counts);
}

/// Starts a plan's server; half the plans run with actors that keep only
/// their compact state 1 ms after each change, so most commands and reads
/// meet a compact family and bring the whole one back. Answers whether
/// this one does.
fn start(plan: &[Step], counts: &Counts) -> (Server, Mode) {
    let mut opts = Opts::demo().unlimited();
    let pick = plan.first().map_or(0, |step| step.pick);
    let mode = Mode {
        compacting: pick.is_multiple_of(2),
        relaxed: pick.is_multiple_of(3),
    };
    if mode.compacting {
        opts = opts.flag("--compact-after-ms", "1");
        counts.hit("plans with compacting actors");
    }
    if mode.relaxed {
        opts = opts.flag("--durability", "relaxed");
        counts.hit("plans in relaxed durability");
    }
    (Server::start(opts), mode)
}

/// How a plan's server runs.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// Actors compact 1 ms after each change.
    compacting: bool,
    /// `--durability relaxed`: changes are answered before they are
    /// durable, so a crash may lose the last of them (by design) and its
    /// plans stop the server gracefully instead.
    relaxed: bool,
}

/// Builds `step` for `cast` in `world`, sends it and checks its answer.
fn run_step(s: &Server, world: &mut World, step: &Step, cast: Cast, counts: &Counts) {
    let Some(request) = build(s, world, step, cast) else {
        return;
    };
    let before = subject(s, &request);
    // A command that dry-runs: first `?dry_run=true`, then for real.
    let dry = match (&step.mutation, &before) {
        (Mutation::DryRun, Some(before)) if dry_runs(step.op) => {
            let (dry, _) = send(s, &request, &step.mutation);
            let after = subject(s, &request);
            assert_eq!(
                after.as_ref(),
                Some(before),
                "{} ({} {}) changed what it acts on",
                dry.what,
                dry.status,
                dry.body
            );
            Some(dry)
        }
        _ => None,
    };
    let mutation = if dry.is_some() {
        &Mutation::None
    } else {
        &step.mutation
    };
    let key = (matches!(step.mutation, Mutation::Replay) && keyed(step.op))
        .then(|| format!("replay-{}", world.keyed.len()));
    let version = match step.mutation {
        Mutation::IfMatch { stale } => family_version(&request, before.as_ref()).map(|v| {
            counts.hit(if stale {
                "stale If-Match sent"
            } else {
                "current If-Match sent"
            });
            if stale {
                v - 1
            } else {
                v
            }
        }),
        _ => None,
    };
    let (resp, sent) = if let Some(v) = version {
        let tag = format!("\"{v}\"");
        let r = send_with(s, &request, mutation, &[("If-Match", &tag)]);
        check_if_match(
            &r.0,
            matches!(step.mutation, Mutation::IfMatch { stale: true }),
            counts,
        );
        r
    } else if matches!(step.mutation, Mutation::Twice) && keyed(step.op) {
        let key = format!("twice-{}", world.keyed.len());
        let (resp, sent) = send_twice(s, &request, &key);
        counts.hit(format!("sent twice at once, {}xx", resp.status / 100));
        if resp.status < 300 {
            world
                .keyed
                .push((request.clone(), key, resp.status, resp.body.clone()));
        }
        (resp, sent)
    } else {
        send_keyed(s, &request, mutation, key.as_deref())
    };
    if let Some(dry) = &dry {
        check_dry_run(step.op, dry, &resp, counts);
    }
    if let (Some(key), true) = (key, resp.status < 300) {
        let moved = subject(s, &request);
        let (again, _) = send_keyed(s, &request, &Mutation::None, Some(&key));
        check_replay(&again, resp.status, &resp.body, "at once");
        assert_eq!(
            subject(s, &request),
            moved,
            "{}: the replay changed something",
            again.what
        );
        counts.hit("replayed");
        world
            .keyed
            .push((request.clone(), key, resp.status, resp.body.clone()));
    }
    if resp.status >= 400 {
        if let Some(before) = before {
            let after = subject(s, &request);
            assert_eq!(
                after.as_ref(),
                Some(&before),
                "{} refused ({} {}) but changed what it acts on",
                resp.what,
                resp.status,
                resp.body
            );
            counts.hit("refused and unchanged");
        }
    }
    let mutated = !matches!(step.mutation, Mutation::None);
    counts.hit(format!("{:?} {}xx", step.op, resp.status / 100));
    if let Some(code) = resp.error_code() {
        counts.hit(format!("code {code}"));
    }
    if resp.status >= 400 {
        counts.hit(if mutated {
            "mutated 4xx"
        } else {
            "unmutated 4xx"
        });
    }
    check_caller(step, &request, &resp, counts);
    if resp.status < 300 {
        learn(s, world, step.op, &request, sent.as_ref(), &resp);
    }
}

/// The end of a plan: the store's checks, then a restart (or a crash)
/// after which everything reads back as before, every recorded key
/// replays, and the event stream is the feed.
fn finish_plan(mut s: Server, world: &World, graceful: bool, mode: Mode, counts: &Counts) {
    check_store(&s, world, counts);
    if mode.compacting {
        // Compact families were met and read back whole.
        for name in ["compactions", "rehydrations"] {
            if s.core_metric(name) > 0 {
                counts.hit(name);
            }
        }
    }
    let after = restart(&mut s, world, graceful || mode.relaxed, counts);
    for (request, key, status, body) in &world.keyed {
        let (again, _) = send_keyed(&s, request, &Mutation::None, Some(key));
        check_replay(&again, *status, body, "after the restart");
        counts.hit("replayed after the restart");
    }
    assert_eq!(snapshot(&s, world), after, "replays changed something");
    // The event stream, from the start, is the feed: every event once, in
    // order, after the restarts.
    let feed: Vec<u64> = s
        .all_events()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let (_, streamed) = stream_ids(&s, "?after=0", None, Duration::from_secs(10), |ids| {
        ids.len() >= feed.len()
    });
    assert_eq!(streamed, feed, "the event stream is not the feed");
    if !feed.is_empty() {
        counts.hit("streams matched the feed");
    }
    check_store(&s, world, counts);
    counts.hit("plans checked");
}

/// Stops the server (SIGTERM when `graceful`, else SIGKILL) and starts it
/// on the same data. Everything was acknowledged, so either way it must
/// bring back exactly what was read before, through replay. Answers what
/// it reads after.
fn restart(
    s: &mut Server,
    world: &World,
    graceful: bool,
    counts: &Counts,
) -> BTreeMap<String, Value> {
    let before = snapshot(s, world);
    for _ in 0..check_feed(&before) {
        counts.hit("history events found in the feed");
    }
    if graceful {
        s.stop();
        counts.hit("restart compared");
    } else {
        s.crash();
        counts.hit("crash compared");
    }
    s.restart();
    let after = snapshot(s, world);
    for (what, value) in &before {
        assert_eq!(
            after.get(what),
            Some(value),
            "{what} differs after the restart"
        );
    }
    assert_eq!(before.len(), after.len());
    after
}

/// The listings agree with the orders: every summary the admin listing
/// shows has the status, amount and owner of the order's own detail, and
/// each shopper's listing shows exactly that shopper's part of it.
fn check_listings(s: &Server) {
    let all = s.all_orders(None);
    let mut by_user: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for summary in &all {
        let id = summary["order_id"].as_str().unwrap();
        let detail = s.order(id);
        assert_eq!(
            summary["status"], detail["status"],
            "{id}: the listing's status is not the order's: {summary} / {detail}"
        );
        let real_pay = detail["amounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["amount_type"] == 50)
            .map(|a| a["amount"].clone());
        assert_eq!(
            Some(&summary["pay_amount"]),
            real_pay.as_ref(),
            "{id}: the listing's pay amount is not the order's: {summary} / {detail}"
        );
        assert_ne!(detail["status"], 127, "an INVALID order listed: {summary}");
        assert_ne!(detail["removed"], true, "a removed order listed: {summary}");
        let user = detail["user_id"].as_str().unwrap().to_owned();
        by_user.entry(user).or_default().insert(id.to_owned());
    }
    for user in USERS {
        let mut listed = BTreeSet::new();
        let mut cursor: Option<String> = None;
        for page in 0.. {
            assert!(page < 1_000, "{user}'s listing did not end");
            let path = match &cursor {
                Some(c) => format!("/v1/users/{user}/orders?page_size=7&cursor={c}"),
                None => format!("/v1/users/{user}/orders?page_size=7"),
            };
            let r = s.get(&path).user(user).send();
            r.expect(200);
            let body = r.json();
            for o in body["orders"].as_array().unwrap() {
                let id = o["order_id"].as_str().unwrap().to_owned();
                assert!(listed.insert(id.clone()), "{user}: {id} listed twice");
            }
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(
            listed,
            by_user.remove(user).unwrap_or_default(),
            "{user}'s listing is not their part of the admin listing"
        );
    }
}

/// Each order's history is the event feed's record of it: every event in
/// a history is in the feed under its `seq`, with the same type, time,
/// actor and data.
fn check_feed(snapshot: &BTreeMap<String, Value>) -> usize {
    let mut checked = 0;
    for (path, history) in snapshot {
        if !path.ends_with("/events") {
            continue;
        }
        for e in history["events"].as_array().unwrap() {
            let fed = snapshot
                .get(&format!("event {}", e["seq"]))
                .unwrap_or_else(|| panic!("{path}: event {} is not in the feed", e["seq"]));
            for field in ["type", "at", "actor", "data"] {
                assert_eq!(
                    fed[field], e[field],
                    "{path}: event {} differs in {field}",
                    e["seq"]
                );
            }
            checked += 1;
        }
    }
    checked
}

/// What an admin reads of everything the plan touched: each order's detail
/// and history, each after-sale, the demo SKUs and coupons, the event feed.
fn snapshot(s: &Server, world: &World) -> BTreeMap<String, Value> {
    let mut paths: Vec<String> = Vec::new();
    for o in &world.orders {
        paths.push(format!("/v1/orders/{}", o.id));
        paths.push(format!("/v1/orders/{}/events", o.id));
        paths.extend(o.parts.iter().map(|p| format!("/v1/orders/{p}")));
    }
    paths.extend(
        world
            .after_sales
            .iter()
            .map(|(id, _)| format!("/v1/after-sales/{id}")),
    );
    paths.extend(DEMO_STOCK.iter().map(|(sku, _)| format!("/v1/skus/{sku}")));
    paths.extend(COUPONS.iter().flatten().map(|c| format!("/v1/coupons/{c}")));
    // The coupons a plan may issue, where it did.
    for prefix in std::iter::once(EVERYONE).chain(HALVES).map(|c| c.coupons) {
        for i in 0..5 {
            let path = format!("/v1/coupons/CPN-FUZZ-{prefix}{i}");
            if s.get(&path).admin().send().status == 200 {
                paths.push(path);
            }
        }
    }
    let mut out: BTreeMap<String, Value> = paths
        .into_iter()
        .map(|path| {
            let r = s.get(&path).admin().send();
            r.expect(200);
            (path, r.json())
        })
        .collect();
    for e in s.all_events() {
        out.insert(format!("event {}", e["seq"]), e);
    }
    out
}

/// Sends `request` with `key` from two threads at once. The family's
/// actor takes them one after the other: both answer the same, and a
/// success is applied once (the other answer is its replay). Answers the
/// first reply that is not a replay.
fn send_twice(s: &Server, request: &Request, key: &str) -> (Resp, Option<Value>) {
    let clients = [s.client(), s.client()];
    let before = subject(s, request);
    let answers: Vec<(Resp, Option<Value>)> = std::thread::scope(|scope| {
        let sent: Vec<_> = clients
            .iter()
            .map(|c| scope.spawn(move || send_keyed(c, request, &Mutation::None, Some(key))))
            .collect();
        sent.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (a, b) = (&answers[0].0, &answers[1].0);
    assert_eq!(
        (a.status, &a.body),
        (b.status, &b.body),
        "{}: two sends of one key answered differently",
        a.what
    );
    let replays = answers
        .iter()
        .filter(|(r, _)| r.header("idempotent-replayed") == Some("true"))
        .count();
    if a.status < 300 {
        assert_eq!(
            replays, 1,
            "{}: a success must be applied once and replayed once",
            a.what
        );
        // Applied once: a third send replays, and changes nothing more.
        let moved = subject(s, request);
        let (again, _) = send_keyed(s, request, &Mutation::None, Some(key));
        check_replay(&again, a.status, &a.body, "after two at once");
        assert_eq!(subject(s, request), moved);
    } else {
        assert_eq!(replays, 0, "{}: a failure is never recorded", a.what);
        assert_eq!(
            subject(s, request),
            before,
            "{}: refused twice but changed",
            a.what
        );
    }
    answers
        .into_iter()
        .find(|(r, _)| r.header("idempotent-replayed").is_none())
        .expect("one answer is not a replay")
}

/// The version of the family a write to `/v1/orders/{id}/...` acts on, as
/// `before` (its detail, read just before: [`subject`]) has it, when it is
/// 2 or more (so that an older one exists) and the order is not removed
/// (to its shopper, a removed order is not found whatever version a write
/// names).
fn family_version(request: &Request, before: Option<&Value>) -> Option<u64> {
    request.path.strip_prefix("/v1/orders/")?.split_once('/')?;
    let detail = before?;
    if detail["removed"] == true {
        return None;
    }
    let version = detail["version"].as_u64()?;
    (version >= 2).then_some(version)
}

/// A write naming the version the family has is never refused for it;
/// one naming an older version always is, with 412.
fn check_if_match(resp: &Resp, stale: bool, counts: &Counts) {
    if stale {
        assert_eq!(
            (resp.status, resp.error_code().as_deref()),
            (412, Some("ORDER_VERSION_MISMATCH")),
            "{}: an older version was not refused: {}",
            resp.what,
            resp.body
        );
        counts.hit("stale If-Match refused");
    } else {
        assert_ne!(
            resp.status, 412,
            "{}: the current version refused: {}",
            resp.what, resp.body
        );
        counts.hit(format!("current If-Match {}xx", resp.status / 100));
    }
}

/// The writes that take an `Idempotency-Key` (API.md: every POST or PUT
/// that acts on an order family or an after-sale, provider callbacks
/// included).
fn keyed(op: Op) -> bool {
    matches!(
        op,
        Op::Create
            | Op::Prepay
            | Op::Pay
            | Op::RefundCallback
            | Op::Cancel
            | Op::Address
            | Op::Remove
            | Op::Fulfill
            | Op::Note
            | Op::AfterSale
            | Op::Lack
            | Op::Review
            | Op::Revoke
            | Op::Retry
    )
}

/// A keyed request sent again answers its recorded response, marked.
fn check_replay(again: &Resp, status: u16, body: &str, when: &str) {
    assert_eq!(
        (again.status, again.body.as_str()),
        (status, body),
        "{}: the replay {when} answered otherwise",
        again.what
    );
    assert_eq!(
        again.header("idempotent-replayed"),
        Some("true"),
        "{}: a replay {when} not marked",
        again.what
    );
}

/// The commands API.md lets run dry (`?dry_run=true`).
fn dry_runs(op: Op) -> bool {
    matches!(op, Op::Cancel | Op::AfterSale | Op::Review | Op::Lack)
}

/// A dry run answers what the same command then does for real: the
/// same error, or success with the status the real one answers (and, for
/// an application or a lack, the refund it creates).
fn check_dry_run(op: Op, dry: &Resp, real: &Resp, counts: &Counts) {
    if dry.status >= 400 {
        assert_eq!(
            (real.status, real.error_code()),
            (dry.status, dry.error_code()),
            "{} refused as {}, for real answered {} {}",
            dry.what,
            dry.body,
            real.status,
            real.body
        );
        counts.hit("dry run refused as for real");
        return;
    }
    assert_eq!(dry.status, 200, "{}: {}", dry.what, dry.body);
    let (d, r) = (dry.json(), real.json());
    assert_eq!(d["dry_run"], true, "{}: {d}", dry.what);
    assert!(
        real.status < 300,
        "{} succeeded dry ({d}), for real answered {} {}",
        dry.what,
        real.status,
        real.body
    );
    assert_eq!(d["status"], r["status"], "{}: dry {d}, real {r}", dry.what);
    // An application or a lack answers the refund it creates (a review
    // answers the whole after-sale, whose refund may be an earlier one).
    if let (Op::AfterSale | Op::Lack, Some(refund)) = (op, r.get("apply_refund_amount")) {
        assert_eq!(
            &d["refund_amount"], refund,
            "{}: dry {d}, real {r}",
            dry.what
        );
    }
    counts.hit("dry run agreed with the real one");
}

/// The order, after-sale, SKU or coupon `request` acts on, as an admin
/// reads it (or its absence, for one a create or an upsert would make).
fn subject(s: &Server, request: &Request) -> Option<Value> {
    let body = request.body.as_ref();
    let path = if let Some(rest) = request.path.strip_prefix("/v1/orders/") {
        let id = rest.split(['/', '?']).next()?;
        match id {
            "price" => return None,
            "remove" => format!("/v1/orders/{}", body?["order_ids"][0].as_str()?),
            _ => format!("/v1/orders/{id}"),
        }
    } else if let Some(rest) = request.path.strip_prefix("/v1/after-sales/") {
        format!("/v1/after-sales/{}", rest.split(['/', '?']).next()?)
    } else if request.path == "/v1/payments/callback" {
        format!("/v1/orders/{}", body?["order_id"].as_str()?)
    } else if request.path == "/v1/refunds/callback" {
        format!("/v1/after-sales/{}", body?["after_sale_id"].as_str()?)
    } else if request.path == "/v1/orders" {
        // A create: the order it names, or its absence.
        format!("/v1/orders/{}", body?["order_id"].as_str()?)
    } else if let Some(rest) = request.path.strip_prefix("/v1/skus/") {
        format!("/v1/skus/{}", rest.split(['/', '?']).next()?)
    } else if request.path.starts_with("/v1/coupons/") {
        request.path.clone()
    } else {
        return None;
    };
    if request.method == "GET" {
        return None;
    }
    let r = s.get(&path).admin().send();
    match r.status {
        200 => Some(r.json()),
        404 => Some(json!({"absent": r.error_code()})),
        other => panic!("{}: {other} {}", r.what, r.body),
    }
}

/// Tokens and signatures: none is 401, a forged one is 401, and a stranger
/// never acts on another's order.
fn check_caller(step: &Step, request: &Request, resp: &Resp, counts: &Counts) {
    let Mutation::Caller(i) = step.mutation else {
        return;
    };
    if matches!(request.who, Who::Signed) {
        assert_eq!(resp.status, 401, "{}: {}", resp.what, resp.body);
        counts.hit("bad signature 401");
        return;
    }
    match CALLERS[i] {
        Caller::Nobody | Caller::GarbageToken | Caller::WrongSecret => {
            assert_eq!(resp.status, 401, "{}: {}", resp.what, resp.body);
            counts.hit("no token 401");
        }
        Caller::Stranger => {
            let others = request.owner.as_deref().is_some_and(|o| o != STRANGER);
            if others || matches!(request.who, Who::Admin) {
                assert!(
                    resp.status >= 400,
                    "{}: a stranger was answered {} {}",
                    resp.what,
                    resp.status,
                    resp.body
                );
                counts.hit("stranger refused");
            }
        }
    }
}

/// Sends `request` with `mutation` applied; answers the response and the
/// body as sent.
fn send(s: &Server, request: &Request, mutation: &Mutation) -> (Resp, Option<Value>) {
    send_with(s, request, mutation, &[])
}

/// A server or a client of it (for another thread).
trait Requester {
    fn request(&self, method: &str, path: &str) -> Req<'_>;
}

impl Requester for Server {
    fn request(&self, method: &str, path: &str) -> Req<'_> {
        self.req(method, path)
    }
}

impl Requester for Client {
    fn request(&self, method: &str, path: &str) -> Req<'_> {
        self.req(method, path)
    }
}

/// [`send`] with an `Idempotency-Key`.
fn send_keyed(
    s: &dyn Requester,
    request: &Request,
    mutation: &Mutation,
    key: Option<&str>,
) -> (Resp, Option<Value>) {
    match key {
        Some(key) => send_with(s, request, mutation, &[("Idempotency-Key", key)]),
        None => send_with(s, request, mutation, &[]),
    }
}

/// [`send`] with `headers` added.
fn send_with(
    s: &dyn Requester,
    request: &Request,
    mutation: &Mutation,
    headers: &[(&str, &str)],
) -> (Resp, Option<Value>) {
    let mut body = request.body.clone();
    let mut path = request.path.clone();
    if let Some(b) = body.as_mut() {
        mutate(b, mutation);
    } else if let Mutation::Replace { with, .. } = mutation {
        // Listings and reads: an odd query value.
        let sep = if path.contains('?') { '&' } else { '?' };
        let key = ["page_size", "status", "cursor", "created_from"][with % 4];
        path = format!(
            "{path}{sep}{key}={}",
            QUERY_VALUES[with % QUERY_VALUES.len()]
        );
    }
    if let Mutation::DryRun = mutation {
        let sep = if path.contains('?') { '&' } else { '?' };
        path = format!("{path}{sep}dry_run=true");
    }
    let mut req = s.request(request.method, &path);
    let raw = body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
    req = match (&request.who, mutation) {
        (Who::Signed, Mutation::Caller(_)) => {
            // Signed over other bytes.
            let sig = ordercore::auth::sign(PAYMENT_SECRET, b"{}");
            req.header("X-Signature", &sig)
        }
        (Who::Signed, _) => {
            let sig = ordercore::auth::sign(PAYMENT_SECRET, raw.as_deref().unwrap_or_default());
            req.header("X-Signature", &sig)
        }
        (_, Mutation::Caller(i)) => match CALLERS[*i] {
            Caller::Nobody => req,
            Caller::Stranger => req.user(STRANGER),
            Caller::GarbageToken => req.bearer("abc.def.ghi"),
            Caller::WrongSecret => {
                let token = ordercore::auth::mint(
                    "not-the-server-secret-0123456789",
                    &ordercore_domain::UserId::parse("alice").unwrap(),
                    true,
                    TOKEN_TTL,
                )
                .unwrap();
                req.bearer(&token)
            }
        },
        (Who::User(u), _) => req.user(u),
        (Who::Admin, _) => req.admin(),
    };
    for (name, value) in headers {
        req = req.header(name, value);
    }
    if let Mutation::Header(i) = mutation {
        let (name, value) = HEADERS[*i];
        req = req.header(name, value);
    }
    if let Some(raw) = raw {
        req = req.raw("application/json", raw);
    }
    (req.send(), body)
}

/// Every node of `v` as a JSON pointer (the root excluded).
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                pointers(child, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(child, &p, out);
            }
        }
        _ => {}
    }
}

/// The pointers of `v`'s nodes that `keep` accepts, the root first.
fn nodes(v: &Value, keep: impl Fn(&Value) -> bool) -> Vec<String> {
    let mut all = vec![String::new()];
    pointers(v, "", &mut all);
    all.into_iter()
        .filter(|p| v.pointer(p).is_some_and(&keep))
        .collect()
}

fn mutate(body: &mut Value, mutation: &Mutation) {
    match *mutation {
        Mutation::Replace { at, with } => {
            let all = nodes(body, |_| true);
            if let Some(node) = body.pointer_mut(&all[at % all.len()]) {
                *node = odd_value(with);
            }
        }
        Mutation::Drop { at } => {
            let all = nodes(body, |_| true);
            let p = &all[at % all.len()];
            let Some((parent, last)) = p.rsplit_once('/') else {
                return;
            };
            match body.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(last);
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = last.parse::<usize>() {
                        items.remove(i);
                    }
                }
                _ => {}
            }
        }
        Mutation::Unknown { at } => {
            let objects = nodes(body, Value::is_object);
            if let Some(Value::Object(map)) = body.pointer_mut(&objects[at % objects.len()]) {
                map.insert("unexpected_field".to_owned(), json!(1));
            }
        }
        Mutation::Repeat { at, times } => {
            let arrays = nodes(body, Value::is_array);
            if arrays.is_empty() {
                return;
            }
            if let Some(Value::Array(items)) = body.pointer_mut(&arrays[at % arrays.len()]) {
                let first = items.first().cloned().unwrap_or(json!(1));
                *items = vec![first; times];
            }
        }
        Mutation::Nudge { at, by } => {
            let ints = nodes(body, |v| v.as_i64().is_some());
            if ints.is_empty() {
                return;
            }
            if let Some(node) = body.pointer_mut(&ints[at % ints.len()]) {
                *node = json!(node.as_i64().unwrap_or(0).saturating_add(by));
            }
        }
        Mutation::None
        | Mutation::Caller(_)
        | Mutation::Header(_)
        | Mutation::DryRun
        | Mutation::Replay
        | Mutation::Twice
        | Mutation::IfMatch { .. } => {}
    }
}

/// A basket of demo SKUs, 1 to 3 lines of 1 to 3 units; some mix product
/// types, so the order splits.
fn basket(pick: usize) -> Vec<(&'static str, i64)> {
    let skus = [TEA, MUG, LAMP, BOOK];
    let lines = 1 + pick % 3;
    (0..lines)
        .map(|i| {
            let sku = skus[(pick / 3 + i) % skus.len()];
            (sku, i64::try_from(1 + (pick / 7 + i) % 3).unwrap())
        })
        .collect()
}

fn pick<T>(items: &[T], pick: usize) -> Option<&T> {
    (!items.is_empty()).then(|| &items[pick % items.len()])
}

/// The first order or part from `pick` on whose status `fits` (by an admin
/// read), or the picked one when none does, so refused cases run too.
fn target(
    s: &Server,
    world: &World,
    pick: usize,
    fits: impl Fn(i64) -> bool,
) -> Option<(String, Order)> {
    let parts: Vec<(String, &Order)> = world
        .orders
        .iter()
        .flat_map(|o| {
            let ids = if o.parts.is_empty() {
                vec![o.id.clone()]
            } else {
                o.parts.clone()
            };
            ids.into_iter().map(move |id| (id, o))
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    let n = parts.len();
    for k in 0..n.min(16) {
        let (id, order) = &parts[(pick + k) % n];
        if fits(s.order_status(id)) {
            return Some((id.clone(), (*order).clone()));
        }
    }
    let (id, order) = &parts[pick % n];
    Some((id.clone(), (*order).clone()))
}

/// The valid request of `step` in `world` (`None` when it needs something
/// the plan has not made yet).
fn build(s: &Server, world: &World, step: &Step, cast: Cast) -> Option<Request> {
    let p = step.pick;
    let user = cast.users[p % cast.users.len()];
    let order = pick(&world.orders, p);
    let after_sale = pick(&world.after_sales, p);
    let request = match step.op {
        Op::OrderIds => Request::new(
            "POST",
            "/v1/order-ids".into(),
            Some(json!({"user_id": user, "business_identifier": 1})),
            Who::User(user.into()),
        ),
        Op::Price => Request::new(
            "POST",
            "/v1/orders/price".into(),
            Some(json!({"user_id": user, "items": lines(&basket(p))})),
            Who::User(user.into()),
        ),
        Op::Create => {
            let items = basket(p);
            let order_id = s.new_order_id(user);
            // The user's demo coupon, or one the plan issued (to this user
            // or another).
            let coupon = match p % 3 {
                0 => demo_coupon(user).map(str::to_owned),
                1 => Some(format!("CPN-FUZZ-{}{}", cast.coupons, p % 5)),
                _ => None,
            };
            let coupon = coupon.as_deref();
            let mut quote = json!({"user_id": user, "items": lines(&items)});
            if let Some(c) = coupon {
                quote["coupon_id"] = json!(c);
            }
            let r = s.post("/v1/orders/price").user(user).json(&quote).send();
            // A coupon under its threshold or already locked: buy without it.
            let (coupon, quote) = if r.status == 200 {
                (coupon, r.json())
            } else {
                (None, s.price(user, &items, None))
            };
            Request::new(
                "POST",
                "/v1/orders".into(),
                Some(create_body(
                    &order_id,
                    user,
                    &items,
                    coupon,
                    &quote["amounts"],
                )),
                Who::User(user.into()),
            )
        }
        Op::Prepay => {
            let o = order?;
            Request::new(
                "POST",
                format!("/v1/orders/{}/prepay", o.id),
                Some(json!({"user_id": o.user, "pay_type": 10, "pay_amount": o.pay_amount})),
                Who::User(o.user.clone()),
            )
        }
        Op::Pay => {
            let o = order?;
            // A few trade numbers per order: repeats are DUPLICATE, a
            // second one a REFUND.
            let trade = format!("T-{}-{}", &o.id[..12], p % 3);
            Request::new(
                "POST",
                "/v1/payments/callback".into(),
                Some(pay_body(&o.id, o.pay_amount, &trade)),
                Who::Signed,
            )
            .owned_by(&o.user)
        }
        Op::Cancel => {
            let o = order?;
            if p.is_multiple_of(4) {
                Request::new(
                    "POST",
                    format!("/v1/orders/{}/cancel", o.id),
                    Some(json!({"user_id": o.user, "cancel_type": 2})),
                    Who::Admin,
                )
                .owned_by(&o.user)
            } else {
                Request::new(
                    "POST",
                    format!("/v1/orders/{}/cancel", o.id),
                    Some(json!({"user_id": o.user})),
                    Who::User(o.user.clone()),
                )
            }
        }
        Op::Address => {
            let o = order?;
            let mut body = delivery();
            let map = body.as_object_mut().unwrap();
            for k in ["delivery_type", "receiver_name", "receiver_phone"] {
                map.remove(k);
            }
            map.insert("user_id".into(), json!(o.user));
            Request::new(
                "PUT",
                format!("/v1/orders/{}/delivery-address", o.id),
                Some(body),
                Who::User(o.user.clone()),
            )
        }
        Op::Remove => {
            let o = order?;
            Request::new(
                "POST",
                "/v1/orders/remove".into(),
                Some(json!({"user_id": o.user, "order_ids": [o.id]})),
                Who::User(o.user.clone()),
            )
        }
        Op::Fulfill => {
            let (id, o) = target(s, world, p, |st| (20..=50).contains(&st))?;
            // The next step, now and then another one.
            let status = s.order_status(&id);
            let next = match status {
                20 => 0,
                30 => 1,
                40 => 2,
                _ => 3 + p % 2,
            };
            let event = if p.is_multiple_of(5) {
                EVENTS[p % EVENTS.len()]
            } else {
                EVENTS[next]
            };
            Request::new(
                "POST",
                format!("/v1/orders/{id}/fulfillment"),
                Some(json!({"event": event, "logistics_code": "SF-1", "operator": "ops"})),
                Who::Admin,
            )
            .owned_by(&o.user)
        }
        Op::Note => {
            let o = order?;
            Request::new(
                "POST",
                format!("/v1/orders/{}/notes", o.id),
                Some(json!({"text": "called the shopper"})),
                Who::Admin,
            )
            .owned_by(&o.user)
        }
        Op::AfterSale => {
            let (id, o) = target(s, world, p, |st| [20, 30, 60].contains(&st))?;
            let detail = s.order(&id);
            let status = detail["status"].as_i64().unwrap_or(0);
            let item = pick(detail["items"].as_array()?, p / 5)?.clone();
            let kind = if status == 60 { 2 } else { 1 };
            Request::new(
                "POST",
                format!("/v1/orders/{id}/after-sales"),
                Some(json!({
                    "user_id": o.user,
                    "after_sale_type": kind,
                    "items": [{"sku_code": item["sku_code"], "return_quantity": 1}],
                    "reason": "arrived broken"
                })),
                Who::User(o.user.clone()),
            )
        }
        Op::Lack => {
            let (id, o) = target(s, world, p, |st| st == 30 || st == 40)?;
            let detail = s.order(&id);
            let item = pick(detail["items"].as_array()?, p / 5)?.clone();
            Request::new(
                "POST",
                format!("/v1/orders/{id}/lack"),
                Some(json!({"items": [{"sku_code": item["sku_code"], "lack_quantity": 1}]})),
                Who::Admin,
            )
            .owned_by(&o.user)
        }
        Op::Review => {
            let (id, owner) = after_sale?;
            Request::new(
                "POST",
                format!("/v1/after-sales/{id}/review"),
                Some(json!({"approved": !p.is_multiple_of(4), "remark": "checked"})),
                Who::Admin,
            )
            .owned_by(owner)
        }
        Op::Revoke => {
            let (id, owner) = after_sale?;
            Request::new(
                "POST",
                format!("/v1/after-sales/{id}/revoke"),
                Some(json!({"user_id": owner})),
                Who::User(owner.clone()),
            )
        }
        Op::RefundCallback => {
            let (id, owner) = after_sale?;
            let r = s.get(&format!("/v1/after-sales/{id}")).admin().send();
            let amount = r.json()["apply_refund_amount"].as_i64().unwrap_or(0);
            Request::new(
                "POST",
                "/v1/refunds/callback".into(),
                Some(refund_body(id, amount, !p.is_multiple_of(3))),
                Who::Signed,
            )
            .owned_by(owner)
        }
        Op::Retry => {
            let (id, owner) = after_sale?;
            Request::new(
                "POST",
                format!("/v1/after-sales/{id}/retry"),
                None,
                Who::Admin,
            )
            .owned_by(owner)
        }
        Op::Stock => {
            let (sku, _) = DEMO_STOCK[p % DEMO_STOCK.len()];
            let delta = i64::try_from(p % 21).unwrap() - 10;
            Request::new(
                "POST",
                format!("/v1/skus/{sku}/stock"),
                Some(json!({"delta": delta})),
                Who::Admin,
            )
        }
        Op::Coupon => Request::new(
            "PUT",
            format!("/v1/coupons/CPN-FUZZ-{}{}", cast.coupons, p % 5),
            Some(json!({
                "user_id": user,
                "amount": 500,
                "threshold_amount": 1_000,
                "valid_from": "2020-01-01T00:00:00Z",
                "valid_to": "2099-01-01T00:00:00Z"
            })),
            Who::Admin,
        ),
        Op::Sku if p.is_multiple_of(2) => {
            // A demo SKU's price and total stock changed under its orders
            // (they keep the price they were sold at).
            let (sku, _) = DEMO_STOCK[(p / 2) % DEMO_STOCK.len()];
            let row = s.sku(sku);
            let n = |k: &str| row[k].as_i64().unwrap();
            let mut body = json!({"stock": n("available") + n("locked") + n("sold")
                + i64::try_from(p % 7).unwrap() - 3});
            for k in [
                "product_id",
                "product_name",
                "product_type",
                "purchase_price",
                "product_unit",
                "product_img",
                "seller_id",
            ] {
                if !row[k].is_null() {
                    body[k] = row[k].clone();
                }
            }
            body["sale_price"] = json!(n("sale_price") + 100 * (i64::try_from(p % 5).unwrap() - 2));
            Request::new("PUT", format!("/v1/skus/{sku}"), Some(body), Who::Admin)
        }
        Op::Sku => Request::new(
            "PUT",
            format!("/v1/skus/SKU-FUZZ-{}", p % 3),
            Some(sku_body(1 + i64::try_from(p % 2).unwrap(), 2_500, 50)),
            Who::Admin,
        ),
        Op::Listing => {
            if p.is_multiple_of(2) {
                Request::new(
                    "GET",
                    format!("/v1/users/{user}/orders?page_size={}", 1 + p % 5),
                    None,
                    Who::User(user.into()),
                )
            } else {
                Request::new(
                    "GET",
                    format!("/v1/orders?page_size={}", 1 + p % 5),
                    None,
                    Who::Admin,
                )
            }
        }
        Op::Restart => return None,
        Op::Read => {
            let o = order?;
            let path = match p % 4 {
                0 => format!("/v1/orders/{}", o.id),
                1 => format!("/v1/orders/{}/events", o.id),
                2 => format!("/v1/users/{}/after-sales", o.user),
                _ => match after_sale {
                    Some((id, _)) => format!("/v1/after-sales/{id}"),
                    None => format!("/v1/orders/{}", o.id),
                },
            };
            let owner = match (p % 4, after_sale) {
                (3, Some((_, owner))) => owner.clone(),
                _ => o.user.clone(),
            };
            Request::new("GET", path, None, Who::User(owner))
        }
    };
    Some(request)
}

/// Records what a successful request made: orders, after-sales, stock.
fn learn(
    s: &Server,
    world: &mut World,
    op: Op,
    request: &Request,
    sent: Option<&Value>,
    resp: &Resp,
) {
    let body = resp.json();
    match op {
        Op::Create => {
            let user = sent
                .and_then(|b| b["user_id"].as_str())
                .unwrap_or_default()
                .to_owned();
            let Some(id) = body["order_id"].as_str() else {
                return;
            };
            if world.orders.iter().any(|o| o.id == id) {
                return;
            }
            world.orders.push(Order {
                id: id.to_owned(),
                user,
                parts: body["sub_order_ids"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                pay_amount: body["pay_amount"].as_i64().unwrap_or(0),
            });
        }
        Op::Pay | Op::AfterSale | Op::Lack => {
            if let Some(id) = body["after_sale_id"].as_str() {
                let owner = request.owner.clone().unwrap_or_default();
                if !world.after_sales.iter().any(|(a, _)| a == id) {
                    world.after_sales.push((id.to_owned(), owner));
                }
            }
        }
        Op::Fulfill | Op::Cancel => {
            // REFUSED and a paid cancel start system refunds: learn them
            // from the owner's after-sale listing.
            let Some(owner) = request.owner.as_deref() else {
                return;
            };
            let r = s
                .get(&format!("/v1/users/{owner}/after-sales?page_size=100"))
                .user(owner)
                .send();
            r.expect(200);
            for a in r.json()["after_sales"].as_array().into_iter().flatten() {
                if let Some(id) = a["after_sale_id"].as_str() {
                    if !world.after_sales.iter().any(|(x, _)| x == id) {
                        world.after_sales.push((id.to_owned(), owner.to_owned()));
                    }
                }
            }
        }
        Op::Sku => {
            let sku = request.path.trim_start_matches("/v1/skus/").to_owned();
            if let (true, Some(total)) = (
                DEMO_STOCK.iter().any(|(d, _)| *d == sku),
                sent.and_then(|b| b["stock"].as_i64()),
            ) {
                world.totals.insert(sku.clone(), total);
                world.deltas.insert(sku, 0);
            }
        }
        Op::Stock => {
            let sku = request
                .path
                .trim_start_matches("/v1/skus/")
                .trim_end_matches("/stock")
                .to_owned();
            let delta = sent.and_then(|b| b["delta"].as_i64()).unwrap_or(0);
            *world.deltas.entry(sku).or_default() += delta;
        }
        _ => {}
    }
}

/// The store is consistent: the server is ready, the listings agree with
/// the orders, each demo SKU's stock is conserved and its locked units are
/// those of the CREATED orders, and each order the plan made has a status
/// log that ends at its status, refunds within its payment and its coupon
/// held as its status says.
fn check_store(s: &Server, world: &World, counts: &Counts) {
    s.get("/readyz").send().expect(200);
    check_listings(s);
    let mut locked: BTreeMap<String, i64> = BTreeMap::new();
    let mut created = BTreeSet::new();
    for o in s.all_orders(Some(10)) {
        created.insert(o["order_id"].as_str().unwrap().to_owned());
        for item in o["items"].as_array().unwrap() {
            *locked
                .entry(item["sku_code"].as_str().unwrap().to_owned())
                .or_default() += item["sale_quantity"].as_i64().unwrap();
        }
    }
    for (sku, stock) in DEMO_STOCK {
        let row = s.sku(sku);
        let n = |k: &str| row[k].as_i64().unwrap();
        let (available, l, sold) = (n("available"), n("locked"), n("sold"));
        assert!(available >= 0 && l >= 0 && sold >= 0, "{sku}: {row}");
        assert_eq!(
            available + l + sold,
            world.totals.get(sku).copied().unwrap_or(stock)
                + world.deltas.get(sku).copied().unwrap_or(0),
            "{sku}: stock not conserved: {row}"
        );
        assert_eq!(
            l,
            locked.get(sku).copied().unwrap_or(0),
            "{sku}: locked against the CREATED orders {created:?}: {row}"
        );
    }
    for o in &world.orders {
        let detail = s.order(&o.id);
        assert_eq!(detail["order_id"], o.id.as_str(), "{detail}");
        check_status_log(s, o, &detail);
        if check_refunds(s, o, &detail) {
            counts.hit("refunds checked against their payment");
        }
        if check_coupon(s, &detail) {
            counts.hit("coupons checked against their orders");
        }
    }
}

/// The after-sales that refund, or may still refund, an order's payment
/// never add up to more than it paid (API.md: pending ones count).
fn check_refunds(s: &Server, order: &Order, detail: &Value) -> bool {
    let Some(trade_no) = detail["payment"]["trade_no"].as_str() else {
        return false;
    };
    let paid = detail["payment"]["pay_amount"].as_i64().unwrap();
    let mut seen = BTreeMap::new();
    let details = std::iter::once(detail.clone()).chain(order.parts.iter().map(|p| s.order(p)));
    for d in details {
        for a in d["after_sales"].as_array().into_iter().flatten() {
            seen.insert(a["after_sale_id"].as_str().unwrap().to_owned(), a.clone());
        }
    }
    let claimed: i64 = seen
        .values()
        .filter(|a| {
            a["trade_no"] == trade_no && [10, 20, 40, 50].contains(&a["status"].as_i64().unwrap())
        })
        .map(|a| a["apply_refund_amount"].as_i64().unwrap())
        .sum();
    assert!(
        claimed <= paid,
        "{}: after-sales claim {claimed} of a payment of {paid}: {seen:?}",
        order.id
    );
    claimed > 0
}

/// Each order's status log is a chain (every entry starts where the one
/// before it for the same order ended) that ends at the order's status.
fn check_status_log(s: &Server, order: &Order, detail: &Value) {
    let log = detail["status_log"].as_array().unwrap();
    for id in std::iter::once(&order.id).chain(&order.parts) {
        let mut last: Option<&Value> = None;
        for entry in log.iter().filter(|e| e["order_id"] == id.as_str()) {
            if let Some(before) = last {
                assert_eq!(
                    entry["from"], before["to"],
                    "{id}: the status log is not a chain: {log:?}"
                );
            }
            last = Some(entry);
        }
        let status = if *id == order.id {
            detail["status"].clone()
        } else {
            s.order(id)["status"].clone()
        };
        let last = last.unwrap_or_else(|| panic!("{id} has no status log: {log:?}"));
        assert_eq!(
            last["to"], status,
            "{id}: the status log ends elsewhere: {log:?}"
        );
    }
}

/// An order's coupon is LOCKED by it while it is CREATED, and USED by it
/// once it is paid and not cancelled.
fn check_coupon(s: &Server, detail: &Value) -> bool {
    let Some(coupon) = detail["coupon_id"].as_str() else {
        return false;
    };
    let id = &detail["order_id"];
    let r = s.get(&format!("/v1/coupons/{coupon}")).admin().send();
    r.expect(200);
    let c = r.json();
    match detail["status"].as_i64().unwrap() {
        10 => assert_eq!(
            (&c["status"], &c["order_id"]),
            (&json!("LOCKED"), id),
            "{c}"
        ),
        70 => assert_ne!(&c["order_id"], id, "a cancelled order holds {c}"),
        _ => assert_eq!((&c["status"], &c["order_id"]), (&json!("USED"), id), "{c}"),
    }
    true
}
