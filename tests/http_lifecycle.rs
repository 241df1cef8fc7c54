//! The server as a process: payment deadlines, the live event stream,
//! graceful shutdown with requests in flight, restarts on the same data
//! directory, and SIGKILL crashes under load. Each test runs its own
//! server; waits are bounded polls with short sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Load-test SKUs: price 5,000 each, so 1 unit pays 6,000 (shipping) and
/// 2 units 10,000 (free shipping).
const LOAD_SKUS: [&str; 3] = ["SKU-L1", "SKU-L2", "SKU-L3"];
const LOAD_PRICE: i64 = 5_000;
const LOAD_STOCK: i64 = 1_000_000;

fn seed_load_skus(s: &Server) {
    for sku in LOAD_SKUS {
        s.upsert_sku(sku, 1, LOAD_PRICE, LOAD_STOCK);
    }
}

/// What a worker was told succeeded.
#[derive(Debug, Default)]
struct Acks {
    /// Order id and its lines.
    created: Vec<(String, Vec<(String, i64)>)>,
    paid: Vec<String>,
    canceled: Vec<String>,
}

/// A load worker: creates orders (one or two lines), paying every third
/// and cancelling every third when `mixed`, until `stop` is set, a
/// transport error or a 503 (the server is going away), or `max` orders.
fn worker(
    client: Client,
    user: String,
    seed: usize,
    mixed: bool,
    stop: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
    acks: Arc<Mutex<Acks>>,
) {
    let send = |r: Req<'_>| -> Option<Resp> {
        in_flight.fetch_add(1, Ordering::SeqCst);
        let result = r.try_send();
        in_flight.fetch_sub(1, Ordering::SeqCst);
        let resp = result.ok()?;
        resp.check_shape();
        (resp.status < 500).then_some(resp)
    };
    let token = user_token(&user);
    for i in 0..100_000usize {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(r) = send(
            client
                .req("POST", "/v1/order-ids")
                .bearer(&token)
                .json(&json!({"user_id": user, "business_identifier": 1})),
        ) else {
            return;
        };
        r.expect(201);
        let id = r.json()["order_id"].as_str().unwrap().to_owned();
        let n = seed + i;
        let mut items = vec![(LOAD_SKUS[n % 3], 1 + (n % 2) as i64)];
        if n.is_multiple_of(4) {
            items.push((LOAD_SKUS[(n + 1) % 3], 1));
        }
        let units: i64 = items.iter().map(|(_, q)| q).sum();
        let origin = units * LOAD_PRICE;
        let pay = if origin >= 9_900 {
            origin
        } else {
            origin + 1_000
        };
        let amounts = json!([{"amount_type": 50, "amount": pay}]);
        let body = create_body(&id, &user, &items, None, &amounts);
        let Some(r) = send(client.req("POST", "/v1/orders").bearer(&token).json(&body)) else {
            return;
        };
        r.expect(201);
        let lines = items.iter().map(|(s, q)| ((*s).to_owned(), *q)).collect();
        acks.lock().unwrap().created.push((id.clone(), lines));
        if !mixed {
            continue;
        }
        match n % 3 {
            1 => {
                let raw = serde_json::to_vec(&pay_body(&id, pay, &format!("T-{id}"))).unwrap();
                let sig = ordercore::auth::sign(PAYMENT_SECRET, &raw);
                let Some(r) = send(
                    client
                        .req("POST", "/v1/payments/callback")
                        .header("X-Signature", &sig)
                        .raw("application/json", raw),
                ) else {
                    return;
                };
                r.expect(200);
                assert_eq!(r.json()["result"], "PAID");
                acks.lock().unwrap().paid.push(id);
            }
            2 => {
                let Some(r) = send(
                    client
                        .req("POST", &format!("/v1/orders/{id}/cancel"))
                        .bearer(&token)
                        .json(&json!({"user_id": user})),
                ) else {
                    return;
                };
                r.expect(200);
                acks.lock().unwrap().canceled.push(id);
            }
            _ => {}
        }
    }
}

/// Runs `threads` workers until `acked` creates were acknowledged (or 20
/// s), then calls `interrupt` while they are still sending; answers the
/// requests in flight at that moment. The workers are joined after it.
fn load_until(
    s: &Server,
    threads: usize,
    mixed: bool,
    acked: usize,
    round: usize,
    acks: &Arc<Mutex<Acks>>,
    interrupt: impl FnOnce(),
) -> usize {
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (client, stop, in_flight, acks) = (
                s.client(),
                Arc::clone(&stop),
                Arc::clone(&in_flight),
                Arc::clone(acks),
            );
            let user = format!("load-{round}-{t}");
            std::thread::spawn(move || {
                worker(client, user, t * 7, mixed, stop, in_flight, acks);
            })
        })
        .collect();
    let start = acks.lock().unwrap().created.len();
    poll(Duration::from_secs(20), &mut || {
        (acks.lock().unwrap().created.len() >= start + acked).then_some(())
    });
    let busy = in_flight.load(Ordering::SeqCst);
    interrupt();
    // Workers stop at their first failed request; a bound in case one
    // keeps succeeding (a graceful stop lets in-flight requests finish).
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().expect("a worker panicked");
    }
    busy
}

/// Checks every acknowledged change after a restart, and stock
/// conservation against every order the listing shows. Answers how many
/// acknowledged creates were checked.
fn check_acks(s: &Server, acks: &Acks) -> usize {
    let paid: BTreeSet<&String> = acks.paid.iter().collect();
    let canceled: BTreeSet<&String> = acks.canceled.iter().collect();
    for (id, lines) in &acks.created {
        let order = s.order(id);
        let status = order["status"].as_i64().unwrap();
        if paid.contains(id) {
            assert_eq!(status, 20, "acknowledged payment lost: {order}");
            assert_eq!(order["payment"]["pay_status"], 20);
        } else if canceled.contains(id) {
            assert_eq!(status, 70, "acknowledged cancel lost: {order}");
        } else {
            // A payment or cancel in flight at the crash may have landed.
            assert!([10, 20, 70].contains(&status), "{order}");
        }
        let stored: Vec<(String, i64)> = order["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["sku_code"].as_str().unwrap().to_owned(),
                    i["sale_quantity"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(&stored, lines, "{id}");
    }
    // Invariant 2, over every order stored (acknowledged or not).
    let orders = s.all_orders(None);
    let listed: BTreeSet<String> = orders
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_owned())
        .collect();
    for (id, _) in &acks.created {
        assert!(listed.contains(id), "{id} missing from the admin listing");
    }
    let mut locked: BTreeMap<String, i64> = BTreeMap::new();
    let mut sold: BTreeMap<String, i64> = BTreeMap::new();
    for o in &orders {
        let target = match o["status"].as_i64().unwrap() {
            10 => &mut locked,
            20 => &mut sold,
            70 => continue,
            other => panic!("unexpected status {other}: {o}"),
        };
        for item in o["items"].as_array().unwrap() {
            *target
                .entry(item["sku_code"].as_str().unwrap().to_owned())
                .or_default() += item["sale_quantity"].as_i64().unwrap();
        }
    }
    for sku in LOAD_SKUS {
        let row = s.sku(sku);
        let (available, l, so) = (
            row["available"].as_i64().unwrap(),
            row["locked"].as_i64().unwrap(),
            row["sold"].as_i64().unwrap(),
        );
        assert_eq!(
            l,
            locked.get(sku).copied().unwrap_or(0),
            "{sku} locked: {row}"
        );
        assert_eq!(so, sold.get(sku).copied().unwrap_or(0), "{sku} sold: {row}");
        assert_eq!(available + l + so, LOAD_STOCK, "{sku}: {row}");
    }
    acks.created.len()
}

#[test]
fn a_sigkill_under_load_keeps_every_acknowledged_change() {
    let mut s = Server::start(Opts::no_demo().unlimited());
    seed_load_skus(&s);
    let acks = Arc::new(Mutex::new(Acks::default()));
    let mut busy_at_kill = 0;
    for round in 0..2 {
        busy_at_kill += load_until(&s, 6, true, 60, round, &acks, || s.sigkill());
        s.crash();
        s.restart();
        let checked = check_acks(&s, &acks.lock().unwrap());
        assert!(checked >= 60 * (round + 1), "{checked}");
    }
    let acks = acks.lock().unwrap();
    assert!(!acks.paid.is_empty() && !acks.canceled.is_empty());
    assert!(busy_at_kill > 0, "no request was in flight at either kill");
    // Replaying the journal twice changes nothing: one more crash, no load.
    s.crash();
    s.restart();
    check_acks(&s, &acks);
}

#[test]
fn sigterm_drains_in_flight_creates_and_exits_0() {
    let mut s = Server::start(Opts::no_demo().unlimited());
    seed_load_skus(&s);
    let acks = Arc::new(Mutex::new(Acks::default()));
    let busy = load_until(&s, 8, false, 40, 0, &acks, || s.sigterm());
    // The workers ended with the listener; the process exits 0.
    let status = s.wait_exit(STOP_TIMEOUT);
    assert!(status.success(), "exit status {status}; log:\n{}", s.log());
    assert!(busy > 0, "no request was in flight at SIGTERM");
    assert!(s.log().contains("stopped"), "{}", s.log());
    s.restart();
    let acks = acks.lock().unwrap();
    let checked = check_acks(&s, &acks);
    assert!(checked >= 40, "{checked}");
    // Everything acknowledged is CREATED with its stock locked.
    let created = s.all_orders(Some(10));
    assert_eq!(created.len(), s.all_orders(None).len());
}

/// `GET /v1/orders/{id}/events` as an admin.
fn order_history(s: &Server, id: &str) -> Value {
    let r = s.get(&format!("/v1/orders/{id}/events")).admin().send();
    r.expect(200);
    r.json()
}

/// An order's history is the same before a crash and after recovery:
/// replaying the journal gives a family the stock and coupon moves of its
/// changes, as the live order actor recorded them.
#[test]
fn a_crash_keeps_each_orders_history() {
    let mut s = Server::start(Opts::demo());
    let c = s.create("bob", &[(MUG, 1), (BOOK, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    s.pay(&id, 18_800, "T-HISTORY").expect(200);
    let before = order_history(&s, &id);
    let stock_events = before["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "StockChanged")
        .count();
    assert_eq!(stock_events, 4, "reserve and sell two SKUs: {before}");
    s.crash();
    s.restart();
    assert_eq!(order_history(&s, &id), before);
}

#[test]
fn a_restart_keeps_state_and_replays_idempotency_keys() {
    let mut s = Server::start(Opts::demo_if_empty());
    // A keyed create, paid; a keyed cancel; a keyed note; an after-sale.
    let body = s.create_body("alice", &[(TEA, 2)], Some("CPN-ALICE-10"));
    let create = |s: &Server| {
        s.post("/v1/orders")
            .user("alice")
            .header("Idempotency-Key", "create-1")
            .json(&body)
            .send()
    };
    let first = create(&s);
    first.expect(201);
    let paid = body["order_id"].as_str().unwrap().to_owned();
    let pay = first.json()["pay_amount"].as_i64().unwrap();
    s.pay(&paid, pay, "T-RESTART-1").expect(200);
    let r = s
        .post(&format!("/v1/orders/{paid}/after-sales"))
        .user("alice")
        .json(&json!({"user_id": "alice", "after_sale_type": 1, "items": [{"sku_code": TEA, "return_quantity": 1}], "reason": "r"}))
        .send();
    r.expect(201);
    let canceled = s.create("bob", &[(MUG, 1), (BOOK, 1)], None)["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cancel = |s: &Server| {
        s.post(&format!("/v1/orders/{canceled}/cancel"))
            .user("bob")
            .header("Idempotency-Key", "cancel-1")
            .json(&json!({"user_id": "bob"}))
            .send()
    };
    let canceled_reply = cancel(&s);
    canceled_reply.expect(200);
    let note = |s: &Server| {
        s.post(&format!("/v1/orders/{paid}/notes"))
            .admin()
            .header("Idempotency-Key", "note-1")
            .json(&json!({"text": "fragile"}))
            .send()
    };
    let note_reply = note(&s);
    note_reply.expect(201);
    // A keyed remove: its reply replays though the order is gone for bob.
    let remove = |s: &Server| {
        s.post("/v1/orders/remove")
            .user("bob")
            .header("Idempotency-Key", "remove-1")
            .json(&json!({"user_id": "bob", "order_ids": [canceled]}))
            .send()
    };
    let remove_reply = remove(&s);
    remove_reply.expect(200);
    assert_eq!(remove_reply.json(), json!({"removed": 1}));
    assert_eq!(remove_reply.header("idempotent-replayed"), None);
    let open = s.create("carol", &[(LAMP, 1)], None)["order_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let snapshot = |s: &Server| {
        let orders: Vec<Value> = [&paid, &canceled, &open]
            .iter()
            .map(|id| s.order(id))
            .collect();
        let history: Vec<Value> = [&paid, &canceled, &open]
            .iter()
            .map(|id| order_history(s, id))
            .collect();
        let skus = s.get("/v1/skus").admin().send().json();
        let coupon = s.get("/v1/coupons/CPN-ALICE-10").admin().send().json();
        let listing = s.all_orders(None);
        json!({"orders": orders, "history": history, "skus": skus, "coupon": coupon, "listing": listing})
    };
    let before = snapshot(&s);
    let events_before = s.get("/v1/events?limit=1000").admin().send().json();

    s.stop();
    s.restart();
    let after = snapshot(&s);
    assert_eq!(after, before, "state changed across a graceful restart");
    let events_after = s.get("/v1/events?limit=1000").admin().send().json();
    assert_eq!(events_after, events_before);

    // Idempotency-Keys replay their recorded responses after the restart.
    let mut replays = 0;
    for (reply, again) in [
        (&first, create(&s)),
        (&canceled_reply, cancel(&s)),
        (&note_reply, note(&s)),
        (&remove_reply, remove(&s)),
    ] {
        assert_eq!(again.status, reply.status, "{}", again.body);
        assert_eq!(
            again.header("idempotent-replayed"),
            Some("true"),
            "{}",
            again.what
        );
        assert_eq!(again.json(), reply.json(), "{}", again.what);
        replays += 1;
    }
    assert_eq!(replays, 4);
    // ... and changed nothing.
    assert_eq!(snapshot(&s), before);

    // A crash right after more changes keeps them too.
    let r = s.pay(&open, 9_900, "T-RESTART-2");
    r.expect(200);
    let open_paid = s.order(&open);
    s.crash();
    s.restart();
    assert_eq!(s.order(&open), open_paid);
    assert_eq!(
        s.get("/v1/coupons/CPN-ALICE-10").admin().send().json(),
        before["coupon"]
    );
}

#[test]
fn an_explicit_demo_flag_restarts_on_a_used_store() {
    let mut s = Server::start(Opts::demo());
    // The demo coupon is used and demo stock is sold.
    let c = s.create("alice", &[(TEA, 2)], Some("CPN-ALICE-10"));
    let id = c["order_id"].as_str().unwrap().to_owned();
    s.pay(&id, c["pay_amount"].as_i64().unwrap(), "T-DEMO")
        .expect(200);
    // An operator set another total stock on a demo SKU.
    s.put(&format!("/v1/skus/{MUG}"))
        .admin()
        .json(&sku_body(1, 6_100, 2_000))
        .send()
        .expect(200);
    let tea = s.sku(TEA);
    let mug = s.sku(MUG);
    s.stop();
    s.restart();
    s.get("/readyz").send().expect(200);
    assert_eq!(s.sku(TEA), tea);
    assert_eq!(s.sku(MUG), mug);
    assert_eq!(mug["available"], 2_000);
    let coupon = s.get("/v1/coupons/CPN-ALICE-10").admin().send().json();
    assert_eq!(coupon["status"], "USED");
    assert_eq!(s.order_status(&id), 20);
}

/// Prepays each order (as its user) every few ms until a refusal;
/// answers the refusal codes, each checked to be one the deadline explains.
fn prepay_until_refused(s: &Server, orders: &[(String, &str)]) -> Vec<String> {
    let outcomes: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = orders
            .iter()
            .map(|(id, user)| {
                let client = s.client();
                scope.spawn(move || {
                    let token = user_token(user);
                    let deadline = Instant::now() + Duration::from_secs(15);
                    while Instant::now() < deadline {
                        let r = client
                            .req("POST", &format!("/v1/orders/{id}/prepay"))
                            .bearer(&token)
                            .json(&json!({"user_id": user, "pay_type": 10, "pay_amount": 4_900}))
                            .send();
                        if r.status != 200 {
                            return r.error_code().unwrap();
                        }
                        std::thread::sleep(Duration::from_millis(3));
                    }
                    panic!("prepay kept succeeding past the deadline");
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for code in &outcomes {
        assert!(
            code == "ORDER_PRE_PAY_EXPIRE" || code == "ORDER_STATUS_CHANGED",
            "{outcomes:?}"
        );
    }
    outcomes
}

#[test]
fn the_payment_deadline_cancels_unpaid_orders() {
    let s = Server::start(Opts::demo().pay_timeout(2));
    let with_coupon = s.create("alice", &[(TEA, 2)], Some("CPN-ALICE-10"));
    let mut unpaid = vec![with_coupon["order_id"].as_str().unwrap().to_owned()];
    for user in ["bob", "carol", "dave"] {
        unpaid.push(
            s.create(user, &[(TEA, 1)], None)["order_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let paid = s.create("erin", &[(TEA, 1)], None)["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.pay(&paid, 4_900, "T-DEADLINE-PAID").expect(200);
    assert_eq!(s.sku(TEA)["locked"], 5);
    assert_eq!(
        s.get("/v1/coupons/CPN-ALICE-10").admin().send().json()["status"],
        "LOCKED"
    );

    // Prepay at the deadline: 200 before it, then ORDER_PRE_PAY_EXPIRE
    // until the deadline fires (within a 100 ms tick), then
    // ORDER_STATUS_CHANGED once it is CANCELED.
    let racers: Vec<(String, &str)> = unpaid[1..]
        .iter()
        .cloned()
        .zip(["bob", "carol", "dave"])
        .collect();
    let outcomes = prepay_until_refused(&s, &racers);

    let mut timed_out = 0;
    for id in &unpaid {
        let order = s.poll(Duration::from_secs(15), || {
            let o = s.order(id);
            (o["status"] == 70).then_some(o)
        });
        assert_eq!(order["cancel_type"], 1, "TIMEOUT_CANCELED: {order}");
        let last = order["status_log"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["actor"]["kind"], "system", "{order}");
        timed_out += 1;
    }
    assert_eq!(timed_out, 4);
    assert_eq!(
        s.order_status(&paid),
        20,
        "the deadline touched a paid order"
    );
    let tea = s.sku(TEA);
    assert_eq!(
        (tea["locked"].as_i64(), tea["sold"].as_i64()),
        (Some(0), Some(1))
    );
    assert_eq!(tea["available"], 999);
    assert_eq!(
        s.get("/v1/coupons/CPN-ALICE-10").admin().send().json()["status"],
        "UNUSED"
    );
    let d = s.get("/v1/dashboard").admin().send().json();
    assert_eq!(d["orders_timed_out"], 4, "{d}");
    // A payment that arrives after the deadline fired is refunded.
    let r = s.pay(
        &unpaid[0],
        with_coupon["pay_amount"].as_i64().unwrap(),
        "T-LATE",
    );
    assert_eq!(r.json()["result"], "REFUND");
    let order = s.order(&unpaid[0]);
    assert_eq!(
        order["after_sales"][0]["after_sale_type_detail"], 2,
        "TIMEOUT_NO_PAY"
    );

    // The window between the deadline and its timer tick is a few dozen
    // ms: prepaying every few ms hits it. On a loaded machine a round may
    // miss it; a few more rounds (2 s each) settle it.
    let mut seen = outcomes;
    for round in 0..3 {
        if seen.iter().any(|c| c == "ORDER_PRE_PAY_EXPIRE") {
            break;
        }
        let users = ["frank", "gina", "hank"];
        let racers: Vec<(String, &str)> = users
            .iter()
            .map(|u| {
                // 4,900: what the prepay sends.
                let id = s.create(u, &[(TEA, 1)], None)["order_id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                (id, *u)
            })
            .collect();
        seen.extend(prepay_until_refused(&s, &racers));
        assert!(
            round < 2 || seen.iter().any(|c| c == "ORDER_PRE_PAY_EXPIRE"),
            "{seen:?}"
        );
    }
    assert!(seen.iter().any(|c| c == "ORDER_PRE_PAY_EXPIRE"), "{seen:?}");
}

#[test]
fn a_deadline_that_passed_while_down_fires_after_restart() {
    let mut s = Server::start(Opts::demo().pay_timeout(1));
    let ids: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| {
            s.create(u, &[(MUG, 1)], None)["order_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // Killed before the deadline (and before any checkpoint), down past it.
    s.crash();
    std::thread::sleep(Duration::from_millis(1_100));
    s.restart_with(Opts::demo_if_empty().pay_timeout(1));
    let mut fired = 0;
    for id in &ids {
        let order = s.poll(Duration::from_secs(10), || {
            let o = s.order(id);
            (o["status"] == 70).then_some(o)
        });
        assert_eq!(order["cancel_type"], 1);
        fired += 1;
    }
    assert_eq!(fired, 3);
    assert_eq!(s.sku(MUG)["locked"], 0);
    assert_eq!(s.sku(MUG)["available"], 500);
}

/// The stream sends a large feed in chunks cut at their byte budget
/// (128 KiB) rather than at 256 events, and nothing is skipped or repeated
/// where a chunk was cut.
#[test]
fn the_event_stream_cuts_large_batches_by_bytes_and_loses_nothing() {
    let s = Server::start(Opts {
        extra: vec!["--risk-max-orders-per-user-per-min".into(), "0".into()],
        ..Opts::no_demo()
    });
    big_orders(&s, 20);
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = s
            .get(&format!("/v1/events?after={after}&limit=1000"))
            .admin()
            .send()
            .json();
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        all.extend(events.iter().map(|e| e["seq"].as_u64().unwrap()));
        after = page["next"].as_u64().unwrap();
    }
    let last = *all.last().unwrap();
    let (text, ids) = stream_ids(&s, "?after=0", None, Duration::from_secs(20), |ids| {
        ids.last() == Some(&last)
    });
    assert_eq!(ids, all, "every event once, in order");
    // The chunked body's data chunks: none much over the budget, and more
    // of them than whole batches of 256 events would make.
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let mut sizes = Vec::new();
    let mut rest = body;
    while let Some((size, after_size)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after_size.len() < n {
            break;
        }
        sizes.push(n);
        rest = after_size[n..].trim_start_matches("\r\n");
    }
    let data: Vec<usize> = sizes.into_iter().filter(|n| *n > 1_000).collect();
    assert!(
        data.iter().all(|n| *n < 256 * 1024),
        "chunks over the budget: {data:?}"
    );
    assert!(
        data.len() > all.len() / 256 + 1,
        "{} chunks for {} events: not cut by bytes",
        data.len(),
        all.len()
    );
}

/// At most 64 event streams are open at once: one more answers 503
/// `OVERLOADED`, and a closed stream frees its place (noticed when the next
/// events are written to it).
#[test]
fn event_streams_are_bounded_and_a_closed_one_frees_its_place() {
    let s = Server::start(Opts::demo());
    let open = |s: &Server| -> (std::net::TcpStream, String) {
        let mut stream = std::net::TcpStream::connect(s.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let request = format!(
            "GET /v1/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            admin_token("ops")
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        (stream, String::from_utf8_lossy(&head).into_owned())
    };
    let mut streams = Vec::new();
    for _ in 0..64 {
        let (stream, head) = open(&s);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        streams.push(stream);
    }
    let (_, head) = open(&s);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    // Close one; the next events written to it find it gone.
    drop(streams.pop());
    let mut reopened = false;
    for _ in 0..30 {
        s.create("alice", &[(TEA, 1)], None);
        let (stream, head) = open(&s);
        if head.starts_with("HTTP/1.1 200") {
            streams.push(stream);
            reopened = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(reopened, "the closed stream's place was never freed");
}

#[test]
fn the_event_stream_resumes_with_after_and_last_event_id() {
    let s = Server::start(Opts::demo());
    for user in ["alice", "bob"] {
        let c = s.create(user, &[(TEA, 1)], None);
        s.pay(
            c["order_id"].as_str().unwrap(),
            4_900,
            &format!("T-SSE-{user}"),
        )
        .expect(200);
    }
    let page = s.get("/v1/events?limit=1000").admin().send().json();
    let all: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(all.len() >= 8, "{all:?}");
    let last = *all.last().unwrap();

    // From the start: every published event, in order, with its type.
    let (text, ids) = stream_ids(&s, "?after=0", None, Duration::from_secs(10), |ids| {
        ids.last() == Some(&last)
    });
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{text}"
    );
    assert!(text.contains("event: OrderPaid"), "{text}");
    assert!(text.contains("data: {"), "{text}");
    assert_eq!(ids, all);

    // Resume after an id: only later events.
    let mid = all[all.len() / 2];
    let expected: Vec<u64> = all.iter().copied().filter(|&i| i > mid).collect();
    let (_, ids) = stream_ids(
        &s,
        &format!("?after={mid}"),
        None,
        Duration::from_secs(10),
        |ids| ids.last() == Some(&last),
    );
    assert_eq!(ids, expected);

    // Last-Event-ID (what a reconnecting EventSource sends) wins over `after`.
    let resume = all[all.len() - 3];
    let (_, ids) = stream_ids(
        &s,
        "?after=0",
        Some(&resume.to_string()),
        Duration::from_secs(10),
        |ids| ids.last() == Some(&last),
    );
    assert_eq!(
        ids,
        all.iter()
            .copied()
            .filter(|&i| i > resume)
            .collect::<Vec<_>>()
    );
    // An empty Last-Event-ID is no cursor: `after` stands.
    let (_, ids) = stream_ids(
        &s,
        &format!("?after={mid}"),
        Some(""),
        Duration::from_secs(10),
        |ids| ids.last() == Some(&last),
    );
    assert_eq!(ids, expected);

    // Live: an event that happens while the stream is open arrives.
    let creator = {
        let client = s.client();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let token = user_token("carol");
            let r = client
                .req("POST", "/v1/order-ids")
                .bearer(&token)
                .json(&json!({"user_id": "carol", "business_identifier": 1}))
                .send();
            let id = r.json()["order_id"].as_str().unwrap().to_owned();
            client
                .req("POST", &format!("/v1/orders/{id}/notes"))
                .bearer(&admin_token("ops"))
                .json(&json!({"text": "x"}))
                .send()
                .expect(404);
            let amounts = json!([{"amount_type": 50, "amount": 4_900}]);
            let body = create_body(&id, "carol", &[(TEA, 1)], None, &amounts);
            client
                .req("POST", "/v1/orders")
                .bearer(&token)
                .json(&body)
                .send()
                .expect(201);
        })
    };
    let (text, ids) = stream_ids(
        &s,
        &format!("?after={last}"),
        None,
        Duration::from_secs(10),
        |ids| !ids.is_empty(),
    );
    creator.join().unwrap();
    assert!(!ids.is_empty(), "no live event arrived: {text}");
    assert!(ids.iter().all(|&i| i > last), "{ids:?}");
    assert!(text.contains("event: OrderCreated"), "{text}");
}

/// Opens an event stream, sends `signal`, and checks that the stream ends
/// cleanly (the chunked body's last chunk, not a dropped connection) and
/// the process exits 0 well before the 30 s shutdown timeout.
fn stop_with_an_open_stream(signal: nix::sys::signal::Signal) {
    let mut s = Server::start(Opts::demo());
    let mut stream = std::net::TcpStream::connect(s.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    write!(
        stream,
        "GET /v1/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        admin_token("ops")
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    poll(
        Duration::from_secs(10),
        &mut || match stream.read(&mut buf) {
            Ok(n) if n > 0 => {
                raw.extend_from_slice(&buf[..n]);
                String::from_utf8_lossy(&raw).contains("id: ").then_some(())
            }
            _ => None,
        },
    );
    assert!(raw.starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    s.signal(signal);
    // Read to the end of the stream.
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                assert!(Instant::now() < deadline, "the stream did not end");
            }
            Err(_) => break,
        }
    }
    let status = s.wait_exit(STOP_TIMEOUT);
    let took = started.elapsed();
    assert!(status.success(), "{signal}: exit {status}");
    assert!(
        took < Duration::from_secs(5),
        "{signal}: graceful stop took {took:?}"
    );
    assert!(
        raw.ends_with(b"0\r\n\r\n"),
        "{signal}: the stream was cut, not ended: {:?}",
        String::from_utf8_lossy(&raw[raw.len().saturating_sub(200)..])
    );
    assert!(s.log().contains("stopped"), "{}", s.log());
}

#[test]
fn sigterm_with_an_open_event_stream_ends_it_and_exits_0() {
    stop_with_an_open_stream(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigint_stops_gracefully_too() {
    stop_with_an_open_stream(nix::sys::signal::Signal::SIGINT);
}

/// A stop signal sent the moment the port is announced still stops the
/// server gracefully: the handlers are in place before the announcement.
#[test]
fn a_signal_right_after_listening_stops_gracefully() {
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let mut s = Server::start(Opts::demo());
        s.signal(signal);
        let status = s.wait_exit(STOP_TIMEOUT);
        assert!(status.success(), "{signal}: exit {status}");
        assert!(s.log().contains("stopped"), "{}", s.log());
    }
}

/// An idle order actor keeps only its compact state: a payment is decided
/// on it, and the detail, the history and a cancel's reply read the parts
/// it left on disk back, as they were.
#[test]
fn idle_orders_compact_and_still_answer_whole_details() {
    let s = Server::start(Opts::demo().flag("--compact-after-ms", "20"));
    let c = s.create("bob", &[(MUG, 1), (BOOK, 1)], Some("CPN-BOB-20"));
    let id = c["order_id"].as_str().unwrap().to_owned();
    let before = s.order(&id);
    let compacted = |at_least: i64| {
        s.poll(Duration::from_secs(10), || {
            (s.core_metric("compactions") >= at_least).then_some(())
        })
    };
    compacted(1);
    let pay_amount = c["pay_amount"].as_i64().unwrap();
    let paid = s.pay(&id, pay_amount, "T-COMPACT");
    paid.expect(200);
    assert_eq!(paid.json()["result"], "PAID");
    compacted(2);
    let rehydrations = s.core_metric("rehydrations");
    let after = s.order(&id);
    assert!(s.core_metric("rehydrations") > rehydrations);
    assert_eq!(
        after["items"], before["items"],
        "product snapshots are back"
    );
    let log = |o: &Value| o["status_log"].as_array().unwrap().len();
    assert!(
        log(&after) > log(&before),
        "the payment is in the status log"
    );
    let history = order_history(&s, &id);
    assert!(
        history["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "OrderPaid"),
        "{history}"
    );
    compacted(3);
    let r = s
        .post(&format!("/v1/orders/{id}/cancel"))
        .user("bob")
        .json(&json!({"user_id": "bob"}))
        .send();
    r.expect(200);
    let canceled = r.json();
    assert_eq!(canceled["status"], 70);
    let names = |o: &Value| -> Vec<Value> {
        let items = o["items"].as_array().unwrap();
        items.iter().map(|i| i["product_name"].clone()).collect()
    };
    assert_eq!(names(&canceled), names(&before));
    assert!(names(&before)
        .iter()
        .all(|n| n.as_str().is_some_and(|n| !n.is_empty())));
    assert!(log(&canceled) > log(&after));
}

/// The server turns transparent huge pages off for itself (src/main.rs,
/// `disable_transparent_huge_pages`): the kernel reports it per process.
#[cfg(target_os = "linux")]
#[test]
fn the_server_runs_without_transparent_huge_pages() {
    let s = Server::start(Opts::demo());
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
        .unwrap_or_else(|| panic!("no THP_enabled line (kernel < 5.0?):\n{status}"));
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
}

/// The server gives the allocator a 10 s purge delay by executing itself
/// again in place with `MIMALLOC_PURGE_DELAY` set (src/lib.rs,
/// `tune_allocator`): the process answering is the one started, with the
/// variable; an operator's own value is kept.
#[cfg(target_os = "linux")]
#[test]
fn the_server_tunes_its_allocator_in_place_unless_told_otherwise() {
    let purge_delay = |s: &Server| {
        let environ = std::fs::read(format!("/proc/{}/environ", s.pid())).unwrap();
        environ
            .split(|b| *b == 0)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .find_map(|v| v.strip_prefix("MIMALLOC_PURGE_DELAY="))
            .map(str::to_owned)
    };
    let tuned = Server::start(Opts::demo());
    tuned.get("/healthz").send().expect(200);
    assert_eq!(purge_delay(&tuned).as_deref(), Some("10000"));
    assert_eq!(
        ordercore::ALLOCATOR_PURGE_DELAY_MS,
        10_000,
        "README's value"
    );
    let told = Server::start(Opts::demo().env("MIMALLOC_PURGE_DELAY", "-1"));
    told.get("/healthz").send().expect(200);
    assert_eq!(purge_delay(&told).as_deref(), Some("-1"));
}

/// `ordercore token` on a fresh data directory generates the development
/// secrets and prints them once on stderr (the callback secret is needed to
/// sign), with only the token on stdout; the next call reuses them silently.
#[test]
fn token_on_a_fresh_data_dir_prints_the_generated_secrets_once() {
    let home = tempfile::tempdir().unwrap();
    let token = |user: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ordercore"));
        cmd.arg("token")
            .arg("--user")
            .arg(user)
            .arg("--data-dir")
            .arg(home.path().join("data"))
            .current_dir(home.path());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ORDERCORE_") {
                cmd.env_remove(name);
            }
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (stdout, stderr) = token("alice");
    let secret_of = |key: &str| {
        let line = stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in {stderr:?}"));
        line.to_owned()
    };
    let jwt = secret_of("jwt_secret");
    assert_eq!(secret_of("payment_secret").len(), 64);
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    let caller = ordercore::auth::verify(&jwt, Some(&format!("Bearer {}", stdout.trim()))).unwrap();
    assert!(!caller.is_admin());
    let (again, quiet) = token("bob");
    assert!(quiet.is_empty(), "printed twice: {quiet}");
    ordercore::auth::verify(&jwt, Some(&format!("Bearer {}", again.trim()))).unwrap();
}
