//! Concurrent requests against one server: scarce stock, one coupon, the
//! same payment twice, a payment racing a cancel, and the family rules of
//! mixed orders and refunds that API.md spells out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Runs `f(i)` on `n` threads at once; answers the results in order.
fn at_once<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (f, barrier) = (&f, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn tally(codes: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for c in codes {
        *counts.entry(c.clone()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn scarce_stock_is_never_oversold() {
    let s = Server::start(Opts::no_demo().unlimited());
    s.upsert_sku("SKU-RARE", 1, 20_000, 10);
    // Bodies prepared first, so the creates themselves race.
    let bodies: Vec<(String, Value)> = (0..24)
        .map(|i| {
            let user = format!("u{i}");
            let body = s.create_body(&user, &[("SKU-RARE", 1)], None);
            (user, body)
        })
        .collect();
    let clients: Vec<Client> = (0..24).map(|_| s.client()).collect();
    let outcomes = at_once(24, |i| {
        let (user, body) = &bodies[i];
        let r = clients[i]
            .req("POST", "/v1/orders")
            .user(user)
            .json(body)
            .send();
        match r.status {
            201 => "CREATED".to_owned(),
            _ => r.error_code().unwrap(),
        }
    });
    let counts = tally(&outcomes);
    assert_eq!(counts.get("CREATED"), Some(&10), "{counts:?}");
    assert_eq!(
        counts.get("PRODUCT_STOCK_NOT_ENOUGH"),
        Some(&14),
        "{counts:?}"
    );
    let sku = s.sku("SKU-RARE");
    assert_eq!(
        (sku["available"].as_i64(), sku["locked"].as_i64()),
        (Some(0), Some(10))
    );
    assert_eq!(s.all_orders(Some(10)).len(), 10);
}

#[test]
fn one_coupon_locks_for_one_order() {
    let s = Server::start(Opts::demo());
    let bodies: Vec<Value> = (0..6)
        .map(|_| s.create_body("alice", &[(MUG, 1)], Some("CPN-ALICE-10")))
        .collect();
    let clients: Vec<Client> = (0..6).map(|_| s.client()).collect();
    let outcomes = at_once(6, |i| {
        let r = clients[i]
            .req("POST", "/v1/orders")
            .user("alice")
            .json(&bodies[i])
            .send();
        (r.status, r.error_code(), r.body)
    });
    let winners: Vec<_> = outcomes.iter().filter(|o| o.0 == 201).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for (status, code, body) in &outcomes {
        if *status != 201 {
            assert_eq!(*status, 422, "{body}");
            assert_eq!(code.as_deref(), Some("USER_COUPON_IS_USED"), "{body}");
        }
    }
    let winner: Value = serde_json::from_str(&winners[0].2).unwrap();
    let coupon = s.get("/v1/coupons/CPN-ALICE-10").admin().send().json();
    assert_eq!(coupon["status"], "LOCKED");
    assert_eq!(coupon["order_id"], winner["order_id"]);
    assert_eq!(s.sku(MUG)["locked"], 1);
}

#[test]
fn concurrent_payments_pay_once_and_refund_the_rest() {
    let s = Server::start(Opts::demo());
    let c = s.create("bob", &[(LAMP, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    // The same trade_no eight times at once: one PAID, seven DUPLICATE.
    let clients: Vec<Client> = (0..8).map(|_| s.client()).collect();
    let body = serde_json::to_vec(&pay_body(&id, 9_900, "T-SAME")).unwrap();
    let sig = ordercore::auth::sign(PAYMENT_SECRET, &body);
    let results = at_once(8, |i| {
        let r = clients[i]
            .req("POST", "/v1/payments/callback")
            .header("X-Signature", &sig)
            .raw("application/json", body.clone())
            .send();
        r.expect(200);
        r.json()["result"].as_str().unwrap().to_owned()
    });
    let counts = tally(&results);
    assert_eq!(counts.get("PAID"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("DUPLICATE"), Some(&7), "{counts:?}");
    let version = s.order(&id)["version"].clone();

    // Six other payments at once: each refunded exactly once.
    let results = at_once(6, |i| {
        let body = serde_json::to_vec(&pay_body(&id, 9_900, &format!("T-OTHER-{i}"))).unwrap();
        let sig = ordercore::auth::sign(PAYMENT_SECRET, &body);
        let r = clients[i]
            .req("POST", "/v1/payments/callback")
            .header("X-Signature", &sig)
            .raw("application/json", body)
            .send();
        r.expect(200);
        r.json()
    });
    assert!(
        results.iter().all(|r| r["result"] == "REFUND"),
        "{results:?}"
    );
    let order = s.order(&id);
    assert_eq!(order["status"], 20);
    assert!(order["version"].as_i64() > version.as_i64());
    let refunds = order["after_sales"].as_array().unwrap();
    assert_eq!(refunds.len(), 6, "{order}");
    assert!(refunds
        .iter()
        .all(|a| a["after_sale_type_detail"] == 1 && a["apply_refund_amount"] == 9_900));
    assert_eq!(order["extra_payments"].as_array().unwrap().len(), 6);
    assert_eq!(s.sku(LAMP)["sold"], 1);
}

#[test]
fn a_payment_racing_a_cancel_is_refunded_or_cancelled_with_a_refund() {
    let s = Server::start(Opts::demo().unlimited());
    let mut cases = 0;
    let mut by_outcome: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..8 {
        let c = s.create("carol", &[(TEA, 1)], None);
        let id = c["order_id"].as_str().unwrap().to_owned();
        let (payer, canceller) = (s.client(), s.client());
        let outcomes = at_once(2, |i| {
            if i == 0 {
                let body =
                    serde_json::to_vec(&pay_body(&id, 4_900, &format!("T-RACE-{round}"))).unwrap();
                let sig = ordercore::auth::sign(PAYMENT_SECRET, &body);
                let r = payer
                    .req("POST", "/v1/payments/callback")
                    .header("X-Signature", &sig)
                    .raw("application/json", body)
                    .send();
                r.expect(200);
                r.json()["result"].as_str().unwrap().to_owned()
            } else {
                let r = canceller
                    .req("POST", &format!("/v1/orders/{id}/cancel"))
                    .user("carol")
                    .json(&json!({"user_id": "carol"}))
                    .send();
                r.expect(200);
                "CANCELED".to_owned()
            }
        });
        // Either way the family ends CANCELED with the payment refunded once.
        let order = s.order(&id);
        assert_eq!(order["status"], 70, "{order}");
        let refunds = order["after_sales"].as_array().unwrap();
        assert_eq!(refunds.len(), 1, "{outcomes:?}: {order}");
        assert_eq!(refunds[0]["apply_refund_amount"], 4_900);
        *by_outcome.entry(outcomes[0].clone()).or_insert(0) += 1;
        cases += 1;
    }
    assert_eq!(cases, 8);
    // Nothing stays reserved or sold.
    let tea = s.sku(TEA);
    assert_eq!(
        (tea["locked"].as_i64(), tea["sold"].as_i64()),
        (Some(0), Some(0)),
        "{by_outcome:?}"
    );
}

#[test]
fn mixed_families_act_as_one_before_payment_and_as_parts_after() {
    let s = Server::start(Opts::demo());
    let c = s.create("dave", &[(MUG, 1), (BOOK, 1)], None);
    let master = c["order_id"].as_str().unwrap().to_owned();
    let parts: Vec<String> = c["sub_order_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(parts.len(), 2);
    for part in &parts {
        assert!(part.ends_with("0000dave"), "{part}");
        assert_eq!(&part[..20], &master[..20]);
        // A sub-order reads as itself, with its parent.
        let r = s.get(&format!("/v1/orders/{part}")).user("dave").send();
        r.expect(200);
        assert_eq!(r.json()["parent_order_id"], master.as_str());
    }
    let part = &parts[0];
    // Family-level commands with a part id: 409.
    let mut refused = 0;
    for (method, path, body) in [
        (
            "POST",
            format!("/v1/orders/{part}/prepay"),
            json!({"user_id": "dave", "pay_type": 10, "pay_amount": 18_800}),
        ),
        (
            "POST",
            format!("/v1/orders/{part}/cancel"),
            json!({"user_id": "dave"}),
        ),
        (
            "PUT",
            format!("/v1/orders/{part}/delivery-address"),
            json!({"user_id": "dave", "province": "p", "city": "c", "area": "a", "detail_address": "d"}),
        ),
    ] {
        s.req(method, &path)
            .user("dave")
            .json(&body)
            .send()
            .expect_error(409, "ORDER_STATUS_CHANGED");
        refused += 1;
    }
    s.pay(part, 18_800, "T-PART")
        .expect_error(409, "ORDER_STATUS_CHANGED");
    refused += 1;
    assert_eq!(refused, 4);

    // Pay, then cancel the whole family: master and parts CANCELED, one
    // refund of the whole payment, stock back.
    assert_eq!(s.pay(&master, 18_800, "T-MIXED").json()["result"], "PAID");
    let r = s
        .post(&format!("/v1/orders/{master}/cancel"))
        .user("dave")
        .json(&json!({"user_id": "dave"}))
        .send();
    r.expect(200);
    let order = s.order(&master);
    assert_eq!(order["status"], 70, "{order}");
    for p in order["sub_orders"].as_array().unwrap() {
        assert_eq!(p["status"], 70, "{order}");
    }
    let refunds = order["after_sales"].as_array().unwrap();
    let refunded: i64 = refunds
        .iter()
        .map(|a| a["apply_refund_amount"].as_i64().unwrap())
        .sum();
    assert_eq!(refunded, 18_800, "{order}");
    assert!(refunds.iter().all(|a| a["after_sale_type_detail"] == 3));
    for sku in [MUG, BOOK] {
        let row = s.sku(sku);
        assert_eq!(
            (row["locked"].as_i64(), row["sold"].as_i64()),
            (Some(0), Some(0)),
            "{sku}"
        );
    }
    // The refund callbacks complete the payment's refund.
    for a in refunds {
        let id = a["after_sale_id"].as_str().unwrap();
        let amount = a["apply_refund_amount"].as_i64().unwrap();
        s.callback("/v1/refunds/callback", &refund_body(id, amount, true))
            .expect(200);
    }
    let order = s.order(&master);
    assert_eq!(order["payment"]["pay_status"], 40, "REFUNDED: {order}");
    // A cancelled family is removed by its master id, not by a part's.
    s.post("/v1/orders/remove")
        .user("dave")
        .json(&json!({"user_id": "dave", "order_ids": [part]}))
        .send()
        .expect_error(409, "ORDER_STATUS_CHANGED");
    s.post("/v1/orders/remove")
        .user("dave")
        .json(&json!({"user_id": "dave", "order_ids": [master]}))
        .send()
        .expect(200);
}

#[test]
fn refunds_split_by_units_and_the_last_takes_the_rest_and_shipping() {
    let s = Server::start(Opts::demo());
    // 3 × 3,900 = 11,700 − 1,000 coupon (threshold 5,000), free shipping:
    // one line paying 10,700.
    let c = s.create("alice", &[(TEA, 3)], Some("CPN-ALICE-10"));
    let id = c["order_id"].as_str().unwrap().to_owned();
    assert_eq!(c["pay_amount"], 10_700);
    s.pay(&id, 10_700, "T-SPLIT").expect(200);
    for event in ["FULFILLED", "OUT_STOCK", "DELIVERY", "SIGNED"] {
        s.fulfill(&id, event).expect(200);
    }
    let apply = |q: i64| {
        s.post(&format!("/v1/orders/{id}/after-sales"))
            .user("alice")
            .json(&json!({"user_id": "alice", "after_sale_type": 2, "items": [{"sku_code": TEA, "return_quantity": q}], "reason": "r"}))
            .send()
    };
    // floor(10,700 × 1 / 3) = 3,566.
    let first = apply(1);
    first.expect(201);
    assert_eq!(first.json()["apply_refund_amount"], 3_566);
    // Pending applications count: 2 more fit, not 3.
    apply(3).expect_error(422, "AFTER_SALE_QUANTITY_EXCEEDED");
    let second = apply(2);
    second.expect(201);
    // The application that completes the line takes the rest.
    assert_eq!(second.json()["apply_refund_amount"], 10_700 - 3_566);
    apply(1).expect_error(422, "AFTER_SALE_QUANTITY_EXCEEDED");

    // With shipping: 1 × 3,900 + 1,000; a full return refunds both.
    let c = s.create("bob", &[(TEA, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    s.pay(&id, 4_900, "T-SHIP").expect(200);
    for event in ["FULFILLED", "OUT_STOCK", "DELIVERY", "SIGNED"] {
        s.fulfill(&id, event).expect(200);
    }
    let r = s
        .post(&format!("/v1/orders/{id}/after-sales"))
        .user("bob")
        .json(&json!({"user_id": "bob", "after_sale_type": 2, "items": [{"sku_code": TEA, "return_quantity": 1}], "reason": "r"}))
        .send();
    r.expect(201);
    assert_eq!(r.json()["apply_refund_amount"], 4_900);
    let after_sale = r.json()["after_sale_id"].as_str().unwrap().to_owned();
    let view = s
        .get(&format!("/v1/after-sales/{after_sale}"))
        .admin()
        .send()
        .json();
    assert_eq!(view["shipping_amount"], 1_000, "{view}");

    // A part whose every unit was lacked moves no further.
    let c = s.create("carol", &[(MUG, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    s.pay(&id, 6_900, "T-LACKALL").expect(200);
    s.fulfill(&id, "FULFILLED").expect(200);
    let r = s
        .post(&format!("/v1/orders/{id}/lack"))
        .admin()
        .json(&json!({"items": [{"sku_code": MUG, "lack_quantity": 1}]}))
        .send();
    r.expect(201);
    s.fulfill(&id, "OUT_STOCK")
        .expect_error(409, "ORDER_STATUS_CHANGED");
}
