//! Every route of API.md on its success path, against the real server
//! binary over HTTP. Each test starts its own server (port 0, its own data
//! directory), so the tests run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn types(events: &Value) -> Vec<String> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

fn amount(amounts: &Value, amount_type: i64) -> i64 {
    amounts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["amount_type"] == amount_type)
        .map_or(0, |a| a["amount"].as_i64().unwrap())
}

fn ids(orders: &[Value]) -> Vec<String> {
    orders
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn operations_routes_answer() {
    let s = Server::start(Opts::demo());
    let r = s.get("/healthz").send();
    r.expect(200);
    assert_eq!(r.json(), json!({"status": "ok"}));
    let r = s.get("/readyz").send();
    r.expect(200);
    assert_eq!(r.json()["status"], "ready");

    // Some traffic, one error among it, so metrics and dashboard have data.
    let created = s.create("alice", &[(TEA, 1)], None);
    let pay = created["pay_amount"].as_i64().unwrap();
    s.pay(created["order_id"].as_str().unwrap(), pay, "T-OPS-1")
        .expect(200);
    s.get("/v1/orders/nope").admin().send().expect(400);

    // Errors of each alert level: HIGH (stock), MEDIUM (ORDER_), LOW.
    let greedy = s.create_body("alice", &[(LAMP, 301)], None);
    s.post("/v1/orders")
        .user("alice")
        .json(&greedy)
        .send()
        .expect_error(422, "PRODUCT_STOCK_NOT_ENOUGH");
    s.get("/v1/dashboard")
        .user("alice")
        .send()
        .expect_error(403, "FORBIDDEN");

    let r = s.get("/metrics").send();
    r.expect(200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    for needle in [
        "ordercore_http_requests_total{",
        "ordercore_http_request_duration_seconds_bucket{",
        "ordercore_ready 1",
        r#"ordercore_errors_total{code="ORDER_ID_INVALID",level="MEDIUM"} 1"#,
        r#"ordercore_errors_total{code="PRODUCT_STOCK_NOT_ENOUGH",level="HIGH"} 1"#,
        r#"ordercore_errors_total{code="FORBIDDEN",level="LOW"} 1"#,
        r#"ordercore_core{metric="orders_created"} 1"#,
        r#"ordercore_core{metric="orders_paid"} 1"#,
        r#"ordercore_core{metric="orders_canceled"}"#,
        r#"ordercore_core{metric="orders_timed_out"}"#,
        r#"ordercore_core{metric="active_actors"}"#,
        r#"ordercore_core{metric="mailbox_backlog"}"#,
        r#"ordercore_store{metric="commit_latency_us_sum"}"#,
        r#"ordercore_store{metric="groups"}"#,
        r#"ordercore_store{metric="units"}"#,
    ] {
        assert!(
            r.body.contains(needle),
            "/metrics lacks {needle}:\n{}",
            r.body
        );
    }
    // Alice's and the admin's tokens were each checked in full once, then
    // remembered for every later request.
    let tokens = |how: &str| -> u64 {
        let needle = format!("ordercore_auth_tokens{{verified=\"{how}\"}} ");
        let line = r.body.lines().find(|l| l.starts_with(&needle));
        line.and_then(|l| l[needle.len()..].trim().parse().ok())
            .unwrap_or_else(|| panic!("/metrics lacks {needle}:\n{}", r.body))
    };
    assert!(tokens("checked") >= 2, "{}", r.body);
    assert!(tokens("remembered") > tokens("checked"), "{}", r.body);

    let r = s.get("/v1/dashboard").admin().send();
    r.expect(200);
    let d = r.json();
    assert_eq!(d["orders_created"], 1, "{d}");
    assert_eq!(d["orders_paid"], 1, "{d}");
    assert_eq!(d["total_amount"], pay, "{d}");
    assert_eq!(d["average_amount"], pay, "{d}");
    assert_eq!(d["pay_success_rate"], 1.0, "{d}");
    for key in [
        "since",
        "orders_canceled",
        "orders_timed_out",
        "fulfillment_success_rate",
        "errors_by_code",
    ] {
        assert!(d.get(key).is_some(), "dashboard lacks {key}: {d}");
    }
    assert!(
        d["errors_by_code"]
            .as_object()
            .unwrap()
            .contains_key("ORDER_ID_INVALID"),
        "{d}"
    );

    let r = s.get("/openapi.json").send();
    r.expect(200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert!(doc["info"]["title"].is_string(), "{doc}");
    assert!(doc["paths"].is_object(), "{doc}");
}

#[test]
fn request_ids_are_echoed_or_generated() {
    let s = Server::start(Opts::demo());
    let r = s.get("/healthz").header("X-Request-Id", "my-req-42").send();
    assert_eq!(r.header("x-request-id"), Some("my-req-42"));
    // Also on errors.
    let r = s
        .get("/v1/orders")
        .header("X-Request-Id", "my-req-43")
        .send();
    r.expect_error(401, "UNAUTHORIZED");
    assert_eq!(r.header("x-request-id"), Some("my-req-43"));
    // Generated when absent: present and distinct.
    let mut seen = BTreeSet::new();
    for _ in 0..5 {
        let r = s.get("/healthz").send();
        let id = r.header("x-request-id").unwrap().to_owned();
        assert!(!id.is_empty());
        assert!(seen.insert(id), "a generated request id repeated");
    }
    // The request id of a write is recorded on its event and status log.
    let body = s.create_body("alice", &[(TEA, 1)], None);
    let r = s
        .post("/v1/orders")
        .user("alice")
        .header("X-Request-Id", "create-req-1")
        .json(&body)
        .send();
    r.expect(201);
    assert_eq!(r.header("x-request-id"), Some("create-req-1"));
    let id = body["order_id"].as_str().unwrap();
    let order = s.order(id);
    assert_eq!(
        order["status_log"][0]["request_id"], "create-req-1",
        "{order}"
    );
    let r = s
        .get(&format!("/v1/orders/{id}/events"))
        .user("alice")
        .send();
    r.expect(200);
    let events = r.json()["events"].clone();
    assert_eq!(events[0]["type"], "OrderCreated");
    assert_eq!(events[0]["request_id"], "create-req-1");
    assert_eq!(events[0]["actor"], json!({"kind": "user", "id": "alice"}));
}

#[test]
fn catalog_skus_stock_and_coupons() {
    let s = Server::start(Opts::no_demo());
    let r = s.get("/v1/skus").admin().send();
    r.expect(200);
    assert_eq!(r.json(), json!({"skus": []}));

    let sku = s.upsert_sku("SKU-A", 1, 2_500, 40);
    assert_eq!(sku["sku_code"], "SKU-A");
    assert_eq!(sku["sale_price"], 2_500);
    assert_eq!(sku["product_type"], 1);
    assert_eq!(
        (&sku["available"], &sku["locked"], &sku["sold"]),
        (&json!(40), &json!(0), &json!(0))
    );
    s.upsert_sku("SKU-B", 2, 10_000, 5);
    // Upsert again: new price, new total stock.
    let sku = s.upsert_sku("SKU-A", 1, 3_000, 50);
    assert_eq!(
        (sku["sale_price"].as_i64(), sku["available"].as_i64()),
        (Some(3_000), Some(50))
    );

    let r = s
        .post("/v1/skus/SKU-A/stock")
        .admin()
        .json(&json!({"delta": 7}))
        .send();
    r.expect(200);
    assert_eq!(
        r.json(),
        json!({"sku_code": "SKU-A", "available": 57, "locked": 0, "sold": 0})
    );
    let r = s
        .post("/v1/skus/SKU-A/stock")
        .admin()
        .json(&json!({"delta": -2}))
        .send();
    r.expect(200);
    assert_eq!(r.json()["available"], 55);

    // The catalog is the operators' (API.md): shoppers are refused.
    let r = s.get("/v1/skus/SKU-A").admin().send();
    r.expect(200);
    assert_eq!(r.json()["available"], 55);
    assert_eq!(r.json()["purchase_price"], 1_500);
    s.get("/v1/skus/SKU-A")
        .user("u1")
        .send()
        .expect_error(403, "FORBIDDEN");
    s.get("/v1/skus")
        .user("u1")
        .send()
        .expect_error(403, "FORBIDDEN");
    let r = s.get("/v1/skus").admin().send();
    r.expect(200);
    assert!(r.json()["skus"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k.get("purchase_price").is_some()));
    let codes: BTreeSet<String> = r.json()["skus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["sku_code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        codes,
        BTreeSet::from(["SKU-A".to_owned(), "SKU-B".to_owned()])
    );

    let coupon = json!({
        "user_id": "u1",
        "amount": 500,
        "threshold_amount": 1_000,
        "valid_from": "2020-01-01T00:00:00Z",
        "valid_to": "2099-01-01T00:00:00Z"
    });
    let r = s.put("/v1/coupons/CPN-1").admin().json(&coupon).send();
    r.expect(200);
    let c = r.json();
    assert_eq!(c["coupon_id"], "CPN-1");
    assert_eq!(c["user_id"], "u1");
    assert_eq!(c["status"], "UNUSED");
    assert!(c.get("order_id").is_none(), "{c}");
    let r = s.get("/v1/coupons/CPN-1").user("u1").send();
    r.expect(200);
    assert_eq!(r.json()["amount"], 500);

    // The coupon follows the order: LOCKED by a create, USED by the payment.
    let created = s.create("u1", &[("SKU-A", 1)], Some("CPN-1"));
    let id = created["order_id"].as_str().unwrap();
    // 3,000 − 500 + 1,000 shipping.
    assert_eq!(created["pay_amount"], 3_500);
    let c = s.get("/v1/coupons/CPN-1").admin().send().json();
    assert_eq!(
        (c["status"].as_str(), c["order_id"].as_str()),
        (Some("LOCKED"), Some(id))
    );
    s.pay(id, 3_500, "T-CPN-1").expect(200);
    let c = s.get("/v1/coupons/CPN-1").admin().send().json();
    assert_eq!(c["status"], "USED");
    let sku = s.sku("SKU-A");
    assert_eq!(
        (sku["available"].as_i64(), sku["sold"].as_i64()),
        (Some(54), Some(1))
    );
}

#[test]
fn single_order_from_id_to_paid() {
    let s = Server::start(Opts::demo());
    let r = s
        .post("/v1/order-ids")
        .user("alice")
        .json(&json!({"user_id": "alice", "business_identifier": 1}))
        .send();
    r.expect(201);
    let issued = r.json();
    let id = issued["order_id"].as_str().unwrap().to_owned();
    assert_eq!(issued["user_id"], "alice");
    // 32 characters, kind 1 (an order), the user suffix at the end.
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(&id[20..21], "1", "{id}");
    assert!(id.ends_with("000alice"), "{id}");
    // Ids are unique and time-ordered.
    let next = s.new_order_id("alice");
    assert!(next > id, "{next} <= {id}");

    let items = [(TEA, 2), (MUG, 1)];
    let quote = s.price("alice", &items, Some("CPN-ALICE-10"));
    let amounts = &quote["amounts"];
    // origin 2×3,900 + 5,900; 1,000 off; 12,700 ≥ 9,900: free shipping.
    assert_eq!(amount(amounts, 10), 13_700, "{quote}");
    assert_eq!(amount(amounts, 20), 1_000, "{quote}");
    assert_eq!(amount(amounts, 30), 0, "{quote}");
    assert_eq!(amount(amounts, 50), 12_700, "{quote}");
    let lines = quote["items"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    let line_pay: i64 = lines
        .iter()
        .map(|l| l["pay_amount"].as_i64().unwrap())
        .sum();
    assert_eq!(line_pay, 12_700, "{quote}");
    assert_eq!(lines[0]["origin_amount"], 7_800);
    assert_eq!(lines[0]["sale_price"], 3_900);
    // The preview reserves nothing.
    assert_eq!(s.sku(TEA)["locked"], 0);

    let body = create_body(&id, "alice", &items, Some("CPN-ALICE-10"), amounts);
    let r = s.post("/v1/orders").user("alice").json(&body).send();
    r.expect(201);
    assert_eq!(r.header("etag"), Some("\"1\""));
    let created = r.json();
    assert_eq!(created["order_id"], id.as_str());
    assert_eq!(created["status"], 10);
    assert_eq!(created["pay_amount"], 12_700);
    assert_eq!(created["sub_order_ids"], json!([]));
    assert!(created["expire_time"].is_string());
    let tea = s.sku(TEA);
    assert_eq!(
        (tea["available"].as_i64(), tea["locked"].as_i64()),
        (Some(998), Some(2))
    );

    let r = s.get(&format!("/v1/orders/{id}")).user("alice").send();
    r.expect(200);
    assert_eq!(r.header("etag"), Some("\"1\""));
    let order = r.json();
    assert_eq!(order["version"], 1);
    assert_eq!(order["status"], 10);
    assert_eq!(order["user_id"], "alice");
    assert_eq!(order["coupon_id"], "CPN-ALICE-10");
    assert_eq!(order["removed"], false);
    assert_eq!(order["items"].as_array().unwrap().len(), 2);
    assert_eq!(order["payment"]["pay_status"], 10);
    assert_eq!(order["payment"]["pay_amount"], 12_700);
    assert_eq!(order["delivery"]["city"], "Hangzhou");
    let snapshot_types: BTreeSet<i64> = order["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot_type"].as_i64().unwrap())
        .collect();
    assert_eq!(snapshot_types, BTreeSet::from([1, 2, 3]), "{order}");
    assert_eq!(order["status_log"][0]["to"], 10);
    assert_eq!(order["status_log"][0]["actor"]["kind"], "user");
    let discount: i64 = order["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["discount_amount"].as_i64().unwrap())
        .sum();
    assert_eq!(discount, 1_000);

    let r = s
        .post(&format!("/v1/orders/{id}/prepay"))
        .user("alice")
        .json(&json!({"user_id": "alice", "pay_type": 20, "pay_amount": 12_700}))
        .send();
    r.expect(200);
    let prepay = r.json();
    assert_eq!(prepay["order_id"], id.as_str());
    assert_eq!(prepay["pay_type"], 20);
    assert_eq!(prepay["pay_amount"], 12_700);
    let out_trade_no = prepay["out_trade_no"].as_str().unwrap().to_owned();
    assert!(!out_trade_no.is_empty());
    assert_eq!(prepay["expire_time"], created["expire_time"]);

    let mut callback = pay_body(&id, 12_700, "WX-1");
    callback["out_trade_no"] = json!(out_trade_no);
    let r = s.callback("/v1/payments/callback", &callback);
    r.expect(200);
    assert_eq!(r.json(), json!({"result": "PAID"}));
    let paid = s.order(&id);
    assert_eq!(paid["status"], 20);
    assert_eq!(paid["payment"]["pay_status"], 20);
    assert_eq!(paid["payment"]["trade_no"], "WX-1");
    let version = paid["version"].as_i64().unwrap();
    assert_eq!(version, 3, "create, prepay, pay: {paid}");
    let tea = s.sku(TEA);
    assert_eq!(
        (tea["locked"].as_i64(), tea["sold"].as_i64()),
        (Some(0), Some(2))
    );
    let c = s
        .get("/v1/coupons/CPN-ALICE-10")
        .user("alice")
        .send()
        .json();
    assert_eq!(c["status"], "USED");

    // A duplicate callback: DUPLICATE, nothing changes.
    let r = s.callback("/v1/payments/callback", &callback);
    r.expect(200);
    assert_eq!(r.json(), json!({"result": "DUPLICATE"}));
    let again = s.order(&id);
    assert_eq!(again["version"], version);
    assert_eq!(again, paid);
    assert_eq!(s.sku(TEA)["sold"], 2);

    // History: the family's events in order, with actors.
    let r = s
        .get(&format!("/v1/orders/{id}/events"))
        .user("alice")
        .send();
    r.expect(200);
    let events = r.json()["events"].clone();
    let names = types(&events);
    for expected in ["OrderCreated", "OrderPrePaid", "OrderPaid"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    let seqs: Vec<u64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.iter().all(|&seq| seq > 0),
        "history without journal positions: {seqs:?}"
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let paid_event = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "OrderPaid")
        .unwrap();
    assert_eq!(paid_event["actor"]["kind"], "provider");
    assert!(paid_event["at"].is_string() && paid_event["data"].is_object());
    // Shoppers do not see purchase prices in their history.
    assert!(!r.body.contains("purchase_price"), "{}", r.body);

    let r = s.get("/v1/users/alice/orders").user("alice").send();
    r.expect(200);
    let list = r.json();
    let orders = list["orders"].as_array().unwrap();
    assert_eq!(ids(orders), vec![id.clone()]);
    assert_eq!(orders[0]["status"], 20);
    assert_eq!(orders[0]["pay_amount"], 12_700);
    assert_eq!(orders[0]["items"][0]["product_name"], "Oolong tea, 250 g");
    assert!(list.get("next_cursor").is_none(), "{list}");
}

/// A sub-order of `order` by product type.
fn part(order: &Value, product_type: i64) -> String {
    order["sub_orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["product_type"] == product_type)
        .map(|p| p["order_id"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no sub-order of type {product_type}: {order}"))
}

#[test]
fn mixed_family_fulfillment_chain_signed_and_refused() {
    let s = Server::start(Opts::demo());
    let created = s.create("bob", &[(TEA, 1), (BOOK, 1)], None);
    let master = created["order_id"].as_str().unwrap().to_owned();
    let subs = created["sub_order_ids"].as_array().unwrap();
    assert_eq!(subs.len(), 2, "{created}");
    assert_eq!(created["pay_amount"], 16_800);
    let order = s.order(&master);
    let normal = part(&order, 1);
    let advance = part(&order, 2);
    let sub_sum: i64 = order["sub_orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pay_amount"].as_i64().unwrap())
        .sum();
    assert_eq!(sub_sum, 16_800);
    for p in order["sub_orders"].as_array().unwrap() {
        assert_eq!(p["status"], 127, "unpaid parts are INVALID: {order}");
    }
    // Before paying, the shopper sees one order.
    let list = s.get("/v1/users/bob/orders").user("bob").send().json();
    assert_eq!(
        ids(list["orders"].as_array().unwrap()),
        vec![master.clone()]
    );

    assert_eq!(s.pay(&master, 16_800, "T-MIX-1").json()["result"], "PAID");
    let order = s.order(&master);
    assert_eq!(order["status"], 127, "a paid master is INVALID: {order}");
    let list = s.get("/v1/users/bob/orders").user("bob").send().json();
    let listed = list["orders"].as_array().unwrap();
    assert_eq!(
        ids(listed).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([normal.clone(), advance.clone()])
    );
    for o in listed {
        assert_eq!(o["parent_order_id"], master.as_str());
        assert_eq!(o["status"], 20);
    }
    // A part-level command with the master id: 409.
    s.fulfill(&master, "FULFILLED")
        .expect_error(409, "ORDER_STATUS_CHANGED");
    // A step out of order: 409.
    s.fulfill(&normal, "OUT_STOCK")
        .expect_error(409, "ORDER_STATUS_CHANGED");

    let mut version = 0;
    for (event, status) in [
        ("FULFILLED", 30),
        ("OUT_STOCK", 40),
        ("DELIVERY", 50),
        ("SIGNED", 60),
    ] {
        let r = s.fulfill(&normal, event);
        r.expect(200);
        let detail = r.json();
        assert_eq!(detail["order_id"], normal.as_str());
        assert_eq!(detail["status"], status, "{event}: {detail}");
        let v = detail["version"].as_i64().unwrap();
        assert!(v > version);
        version = v;
    }
    // Repeating the current step: 200, no change.
    let r = s.fulfill(&normal, "SIGNED");
    r.expect(200);
    assert_eq!(r.json()["version"], version);
    s.fulfill(&normal, "REFUSED")
        .expect_error(409, "ORDER_STATUS_CHANGED");

    let book_before = s.sku(BOOK);
    for (event, status) in [("FULFILLED", 30), ("OUT_STOCK", 40), ("DELIVERY", 50)] {
        let r = s.fulfill(&advance, event);
        r.expect(200);
        assert_eq!(r.json()["status"], status);
    }
    let r = s.fulfill(&advance, "REFUSED");
    r.expect(200);
    assert_eq!(r.json()["status"], 100);
    let order = s.order(&master);
    let refunds: Vec<&Value> = order["after_sales"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["order_id"] == advance.as_str())
        .collect();
    assert_eq!(refunds.len(), 1, "{order}");
    assert_eq!(refunds[0]["after_sale_type_detail"], 1, "ALL_REFUND");
    assert_eq!(refunds[0]["status"], 40, "REFUNDING");
    assert_eq!(refunds[0]["apply_refund_amount"], 12_900);
    let book = s.sku(BOOK);
    assert_eq!(
        book["sold"].as_i64().unwrap(),
        book_before["sold"].as_i64().unwrap() - 1
    );
    assert_eq!(
        book["available"].as_i64().unwrap(),
        book_before["available"].as_i64().unwrap() + 1
    );
    // The dashboard counts one signed and one refused part.
    let d = s.get("/v1/dashboard").admin().send().json();
    assert_eq!(d["fulfillment_success_rate"], 0.5, "{d}");
}

#[test]
fn the_address_it_already_has_changes_nothing_unless_keyed() {
    let s = Server::start(Opts::demo());
    let id = s.create("carol", &[(TEA, 1)], None)["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let address = |city: &str| {
        json!({"user_id": "carol", "province": "Jiangsu", "city": city, "area": "Gusu",
               "detail_address": "No. 9"})
    };
    let put = |city: &str, key: Option<&str>| {
        let req = s
            .put(&format!("/v1/orders/{id}/delivery-address"))
            .user("carol");
        let req = match key {
            Some(k) => req.header("Idempotency-Key", k),
            None => req,
        };
        let r = req.json(&address(city)).send();
        r.expect(200);
        r
    };
    assert_eq!(put("Suzhou", None).json()["version"], 2);
    // The same address again: nothing recorded.
    assert_eq!(put("Suzhou", None).json()["version"], 2);
    assert_eq!(s.order(&id)["version"], 2);
    // With a key it is recorded, so that its retry replays after a later
    // change instead of putting its address back.
    assert_eq!(put("Suzhou", Some("addr-1")).json()["version"], 3);
    assert_eq!(put("Wuxi", None).json()["version"], 4);
    let retry = put("Suzhou", Some("addr-1"));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    let now = s.order(&id);
    assert_eq!(now["delivery"]["city"], "Wuxi");
    assert_eq!(now["version"], 4);
}

/// A keyed repeat of a create or of a payment answers as the repeat it is
/// (200 for the create, `DUPLICATE` for the callback), the first time and
/// when its key replays it.
#[test]
fn a_keyed_repeat_answers_as_the_repeat_it_is() {
    let s = Server::start(Opts::demo());
    let body = s.create_body("frank", &[(TEA, 1)], None);
    s.post("/v1/orders")
        .user("frank")
        .json(&body)
        .send()
        .expect(201);
    let again = |key: &str| {
        let r = s
            .post("/v1/orders")
            .user("frank")
            .header("Idempotency-Key", key)
            .json(&body)
            .send();
        r.expect(200);
        r
    };
    let first = again("create-again");
    assert_eq!(first.header("idempotent-replayed"), None);
    let replay = again("create-again");
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body);

    let id = body["order_id"].as_str().unwrap().to_owned();
    let pay_amount = real_pay(&body["amounts"]);
    s.pay(&id, pay_amount, "T-KEYED-1").expect(200);
    let raw = serde_json::to_vec(&pay_body(&id, pay_amount, "T-KEYED-1")).unwrap();
    let callback = |key: &str| {
        let r = s
            .post("/v1/payments/callback")
            .header("X-Signature", &ordercore::auth::sign(PAYMENT_SECRET, &raw))
            .header("Idempotency-Key", key)
            .raw("application/json", raw.clone())
            .send();
        r.expect(200);
        r
    };
    let first = callback("callback-again");
    assert_eq!(first.json()["result"], "DUPLICATE", "{}", first.body);
    let replay = callback("callback-again");
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body);
}

/// A keyed success that changes nothing (the step the order is in, the
/// review decision already made) still records its answer: its retry
/// replays it after the order moves on, and the version does not move.
#[test]
fn a_keyed_success_that_changes_nothing_replays_its_answer() {
    let s = Server::start(Opts::demo());
    let created = s.create("erin", &[(TEA, 1)], None);
    let id = created["order_id"].as_str().unwrap().to_owned();
    let pay = created["pay_amount"].as_i64().unwrap();
    s.pay(&id, pay, "T-NOOP-1").expect(200);
    s.fulfill(&id, "FULFILLED").expect(200);
    let step = |event: &str, key: Option<&str>| {
        let req = s.post(&format!("/v1/orders/{id}/fulfillment")).admin();
        let req = match key {
            Some(k) => req.header("Idempotency-Key", k),
            None => req,
        };
        let r = req.json(&json!({"event": event})).send();
        r.expect(200);
        r
    };
    let version = s.order(&id)["version"].clone();
    let first = step("FULFILLED", Some("step-1"));
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(first.json()["version"], version);
    assert_eq!(
        s.order(&id)["version"],
        version,
        "a no-op moved the version"
    );
    step("OUT_STOCK", None);
    let retry = step("FULFILLED", Some("step-1"));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.body, first.body);
    assert_eq!(s.order_status(&id), 40);

    // The same for a review decision made again.
    let r = s
        .post(&format!("/v1/orders/{id}/after-sales"))
        .user("erin")
        .json(&json!({"user_id": "erin", "after_sale_type": 1,
                      "items": [{"sku_code": TEA, "return_quantity": 1}], "reason": "late"}));
    let r = r.send();
    r.expect_error(409, "AFTER_SALE_CANNOT_APPLY");
    let created = s.create("erin", &[(MUG, 1)], None);
    let id = created["order_id"].as_str().unwrap().to_owned();
    s.pay(&id, created["pay_amount"].as_i64().unwrap(), "T-NOOP-2")
        .expect(200);
    let r = s
        .post(&format!("/v1/orders/{id}/after-sales"))
        .user("erin")
        .json(&json!({"user_id": "erin", "after_sale_type": 1,
                      "items": [{"sku_code": MUG, "return_quantity": 1}], "reason": "late"}))
        .send();
    r.expect(201);
    let after_sale = r.json()["after_sale_id"].as_str().unwrap().to_owned();
    let review = |key: Option<&str>| {
        let req = s
            .post(&format!("/v1/after-sales/{after_sale}/review"))
            .admin();
        let req = match key {
            Some(k) => req.header("Idempotency-Key", k),
            None => req,
        };
        let r = req.json(&json!({"approved": true, "remark": "ok"})).send();
        r.expect(200);
        r
    };
    review(None);
    let first = review(Some("review-1"));
    assert_eq!(first.json()["status"], 40);
    let refund = first.json()["apply_refund_amount"].as_i64().unwrap();
    s.callback(
        "/v1/refunds/callback",
        &refund_body(&after_sale, refund, true),
    )
    .expect(200);
    let retry = review(Some("review-1"));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.body, first.body);
    let now = s
        .get(&format!("/v1/after-sales/{after_sale}"))
        .admin()
        .send();
    assert_eq!(now.json()["status"], 50);

    // And after a restart, from what was recorded.
    let mut s = s;
    s.stop();
    s.restart();
    let retry = s
        .post(&format!("/v1/after-sales/{after_sale}/review"))
        .admin()
        .header("Idempotency-Key", "review-1")
        .json(&json!({"approved": true, "remark": "ok"}))
        .send();
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.body, first.body);
}

#[test]
fn address_cancel_dry_run_and_remove() {
    let s = Server::start(Opts::demo());
    // 3,900 − 500 + 1,000 shipping.
    let created = s.create("carol", &[(TEA, 1)], Some("CPN-CAROL-5"));
    let id = created["order_id"].as_str().unwrap().to_owned();
    assert_eq!(created["pay_amount"], 4_400);

    let r = s
        .put(&format!("/v1/orders/{id}/delivery-address"))
        .user("carol")
        .json(&json!({
            "user_id": "carol", "province": "Jiangsu", "city": "Suzhou", "area": "Gusu",
            "detail_address": "No. 9"
        }))
        .send();
    r.expect(200);
    assert_eq!(r.header("etag"), Some("\"2\""));
    let detail = r.json();
    assert_eq!(detail["delivery"]["city"], "Suzhou");
    assert_eq!(detail["delivery"]["receiver_name"], "Li Lei");
    assert_eq!(detail["version"], 2);

    // A dry run says what would happen and changes nothing.
    let r = s
        .post(&format!("/v1/orders/{id}/cancel?dry_run=true"))
        .user("carol")
        .json(&json!({"user_id": "carol"}))
        .send();
    r.expect(200);
    let dry = r.json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["status"], 70);
    assert_eq!(dry["refund_amount"], 0);
    assert_eq!(dry["coupon_status"], "UNUSED");
    assert_eq!(
        dry["stock"],
        json!([{"sku_code": TEA, "available_delta": 1, "locked_delta": -1, "sold_delta": 0}])
    );
    assert_eq!(s.order(&id)["version"], 2);
    assert_eq!(s.sku(TEA)["locked"], 1);

    let r = s
        .post(&format!("/v1/orders/{id}/cancel"))
        .user("carol")
        .json(&json!({"user_id": "carol"}))
        .send();
    r.expect(200);
    let detail = r.json();
    assert_eq!(detail["status"], 70);
    assert_eq!(detail["cancel_type"], 0);
    assert_eq!(s.sku(TEA)["locked"], 0);
    assert_eq!(s.sku(TEA)["available"], 1_000);
    let c = s.get("/v1/coupons/CPN-CAROL-5").user("carol").send().json();
    assert_eq!(c["status"], "UNUSED");

    // A paid order cancelled by customer service: refund CUSTOMER_CANCEL.
    let paid = s.create("carol", &[(MUG, 2)], None);
    let paid_id = paid["order_id"].as_str().unwrap().to_owned();
    s.pay(&paid_id, 11_800, "T-CANCEL-2").expect(200);
    let r = s
        .post(&format!("/v1/orders/{paid_id}/cancel"))
        .admin()
        .json(&json!({"user_id": "carol", "cancel_type": 2}))
        .send();
    r.expect(200);
    let detail = r.json();
    assert_eq!(detail["status"], 70);
    assert_eq!(detail["cancel_type"], 2);
    assert_eq!(detail["payment"]["pay_status"], 30, "REFUNDING: {detail}");
    let refunds = detail["after_sales"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "{detail}");
    assert_eq!(refunds[0]["after_sale_type_detail"], 4, "CUSTOMER_CANCEL");
    assert_eq!(refunds[0]["apply_refund_amount"], 11_800);
    let mug = s.sku(MUG);
    assert_eq!(
        (mug["sold"].as_i64(), mug["available"].as_i64()),
        (Some(0), Some(500))
    );

    // Remove both: hidden from the listing, still readable by id.
    let r = s
        .post("/v1/orders/remove")
        .user("carol")
        .json(&json!({"user_id": "carol", "order_ids": [id, paid_id, id]}))
        .send();
    r.expect(200);
    assert_eq!(r.json(), json!({"removed": 2}));
    let list = s.get("/v1/users/carol/orders").user("carol").send().json();
    assert_eq!(list["orders"], json!([]), "{list}");
    let r = s.get(&format!("/v1/orders/{id}")).admin().send();
    r.expect(200);
    assert_eq!(r.json()["removed"], true);
    // Removing again removes nothing new.
    let r = s
        .post("/v1/orders/remove")
        .user("carol")
        .json(&json!({"user_id": "carol", "order_ids": [id]}))
        .send();
    assert!(
        r.status == 200 || r.status == 404,
        "{} {}",
        r.status,
        r.body
    );
}

fn apply(s: &Server, order: &str, user: &str, kind: i64, sku: &str, qty: i64) -> Resp {
    s.post(&format!("/v1/orders/{order}/after-sales"))
        .user(user)
        .json(&json!({
            "user_id": user,
            "after_sale_type": kind,
            "items": [{"sku_code": sku, "return_quantity": qty}],
            "reason": "changed my mind",
            "images": ["https://img.example/1.png"]
        }))
        .send()
}

fn review(s: &Server, after_sale: &str, approved: bool) -> Resp {
    s.post(&format!("/v1/after-sales/{after_sale}/review"))
        .admin()
        .json(&json!({"approved": approved, "remark": "checked"}))
        .send()
}

#[test]
fn after_sales_apply_review_refund_revoke_retry() {
    let s = Server::start(Opts::demo());
    // 3×3,900 + 5,900 = 17,600, free shipping.
    let created = s.create("dave", &[(TEA, 3), (MUG, 1)], None);
    let id = created["order_id"].as_str().unwrap().to_owned();
    s.pay(&id, 17_600, "T-AS-1").expect(200);

    // RETURN_MONEY while PAID (dry run first).
    let r = s
        .post(&format!("/v1/orders/{id}/after-sales?dry_run=true"))
        .user("dave")
        .json(&json!({
            "user_id": "dave", "after_sale_type": 1,
            "items": [{"sku_code": MUG, "return_quantity": 1}], "reason": "late"
        }))
        .send();
    r.expect(200);
    assert_eq!(r.json()["dry_run"], true);
    assert_eq!(r.json()["status"], 10);
    assert_eq!(r.json()["refund_amount"], 5_900);
    let r = apply(&s, &id, "dave", 1, MUG, 1);
    r.expect(201);
    let money = r.json();
    assert_eq!(money["status"], 10);
    assert_eq!(money["apply_refund_amount"], 5_900);
    let money_id = money["after_sale_id"].as_str().unwrap().to_owned();
    assert_eq!(&money_id[20..21], "3", "{money_id}");
    assert!(money_id.ends_with("0000dave"), "{money_id}");
    // Rejected.
    let r = review(&s, &money_id, false);
    r.expect(200);
    assert_eq!(r.json()["status"], 30);
    assert_eq!(r.json()["review_remark"], "checked");
    // The same decision again: 200, no change.
    review(&s, &money_id, false).expect(200);

    for (event, _) in [
        ("FULFILLED", 30),
        ("OUT_STOCK", 40),
        ("DELIVERY", 50),
        ("SIGNED", 60),
    ] {
        s.fulfill(&id, event).expect(200);
    }

    // RETURN_GOODS on SIGNED: approve, refund succeeds, goods back in stock.
    let r = apply(&s, &id, "dave", 2, TEA, 1);
    r.expect(201);
    let goods = r.json();
    assert_eq!(goods["apply_refund_amount"], 3_900);
    let goods_id = goods["after_sale_id"].as_str().unwrap().to_owned();
    let tea_before = s.sku(TEA);
    let r = review(&s, &goods_id, true);
    r.expect(200);
    let view = r.json();
    assert_eq!(view["status"], 40, "approved means REFUNDING: {view}");
    assert_eq!(view["after_sale_type"], 2);
    assert_eq!(view["after_sale_type_detail"], 5);
    let tea = s.sku(TEA);
    assert_eq!(
        tea["available"].as_i64().unwrap(),
        tea_before["available"].as_i64().unwrap() + 1
    );
    let r = s.callback("/v1/refunds/callback", &refund_body(&goods_id, 3_900, true));
    r.expect(200);
    assert_eq!(r.json()["status"], 50);
    assert!(r.json()["refunded_at"].is_string());
    // The same callback again: 200, no change.
    let r = s.callback("/v1/refunds/callback", &refund_body(&goods_id, 3_900, true));
    r.expect(200);
    assert_eq!(r.json()["status"], 50);
    let r = s
        .get(&format!("/v1/after-sales/{goods_id}"))
        .user("dave")
        .send();
    r.expect(200);
    assert_eq!(r.json()["status"], 50);
    assert_eq!(r.json()["items"][0]["return_quantity"], 1);

    // Revoke.
    let r = apply(&s, &id, "dave", 2, TEA, 1);
    r.expect(201);
    let revoked_id = r.json()["after_sale_id"].as_str().unwrap().to_owned();
    let r = s
        .post(&format!("/v1/after-sales/{revoked_id}/revoke"))
        .user("dave")
        .json(&json!({"user_id": "dave"}))
        .send();
    r.expect(200);
    assert_eq!(r.json()["status"], 127);

    // A failed refund, retried, then refunded.
    let r = apply(&s, &id, "dave", 2, TEA, 1);
    r.expect(201);
    let retry_id = r.json()["after_sale_id"].as_str().unwrap().to_owned();
    review(&s, &retry_id, true).expect(200);
    let r = s.callback(
        "/v1/refunds/callback",
        &refund_body(&retry_id, 3_900, false),
    );
    r.expect(200);
    assert_eq!(r.json()["status"], 60);
    let r = s
        .post(&format!("/v1/after-sales/{retry_id}/retry"))
        .admin()
        .send();
    r.expect(200);
    assert_eq!(r.json()["status"], 40);
    // The failure's callback sent again after the retry: the outcome
    // already recorded, no change (the retried refund is still on its way).
    let r = s.callback(
        "/v1/refunds/callback",
        &refund_body(&retry_id, 3_900, false),
    );
    r.expect(200);
    assert_eq!(r.json()["status"], 40);
    assert!(r.json()["refunded_at"].is_null(), "{}", r.json());
    let r = s.callback("/v1/refunds/callback", &refund_body(&retry_id, 3_900, true));
    r.expect(200);
    assert_eq!(r.json()["status"], 50);
    assert_eq!(r.json()["refunded_at"], "2025-11-25T09:00:00.000Z");

    // The shopper's after-sale listing, and the history's events.
    let r = s.get("/v1/users/dave/after-sales").user("dave").send();
    r.expect(200);
    let listed: BTreeSet<String> = r.json()["after_sales"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["after_sale_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([money_id, goods_id, revoked_id, retry_id.clone()])
    );
    let events = s
        .get(&format!("/v1/orders/{id}/events"))
        .admin()
        .send()
        .json()["events"]
        .clone();
    let names = types(&events);
    for expected in [
        "AfterSaleCommitted",
        "AfterSaleReviewed",
        "AfterSaleRevoked",
        "RefundRequested",
        "RefundCompleted",
        "RefundFailed",
        "OrderSigned",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
}

#[test]
fn lack_on_a_fulfilled_order() {
    let s = Server::start(Opts::demo());
    let created = s.create("erin", &[(TEA, 2), (LAMP, 1)], None);
    let id = created["order_id"].as_str().unwrap().to_owned();
    let pay = created["pay_amount"].as_i64().unwrap();
    assert_eq!(pay, 16_700);
    s.pay(&id, pay, "T-LACK-1").expect(200);
    let lack = |dry: bool| {
        s.post(&format!(
            "/v1/orders/{id}/lack{}",
            if dry { "?dry_run=true" } else { "" }
        ))
        .admin()
        .json(&json!({"items": [{"sku_code": TEA, "lack_quantity": 1}]}))
        .send()
    };
    // Not before the warehouse holds it.
    lack(false).expect_error(409, "ORDER_NOT_ALLOW_TO_LACK");
    s.fulfill(&id, "FULFILLED").expect(200);
    let r = lack(true);
    r.expect(200);
    assert_eq!(r.json()["refund_amount"], 3_900);
    let r = lack(false);
    r.expect(201);
    let created = r.json();
    assert_eq!(created["status"], 40, "approved at once: {created}");
    assert_eq!(created["apply_refund_amount"], 3_900);
    let order = s.order(&id);
    assert_eq!(order["status"], 30, "lack leaves the status: {order}");
    assert_eq!(order["after_sales"][0]["after_sale_type_detail"], 6);
    // At most once.
    lack(false).expect_error(409, "ORDER_NOT_ALLOW_TO_LACK");
}

#[test]
fn notes_and_if_match() {
    let s = Server::start(Opts::demo());
    let created = s.create("frank", &[(TEA, 1)], None);
    let id = created["order_id"].as_str().unwrap().to_owned();
    let note = |if_match: Option<&str>, text: &str| {
        let mut r = s.post(&format!("/v1/orders/{id}/notes")).admin();
        if let Some(v) = if_match {
            r = r.header("If-Match", v);
        }
        r.json(&json!({"text": text})).send()
    };
    let r = note(None, "called the customer");
    r.expect(201);
    assert_eq!(r.json(), json!({"version": 2}));
    let r = note(Some("\"2\""), "second note");
    r.expect(201);
    assert_eq!(r.json(), json!({"version": 3}));
    note(Some("\"2\""), "stale").expect_error(412, "ORDER_VERSION_MISMATCH");
    let r = note(Some("*"), "any version");
    r.expect(201);
    let order = s.order(&id);
    assert_eq!(order["version"], 4);
    let events = s
        .get(&format!("/v1/orders/{id}/events"))
        .admin()
        .send()
        .json()["events"]
        .clone();
    let notes: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "OrderNoteAdded")
        .collect();
    assert_eq!(notes.len(), 3);
    assert_eq!(notes[0]["actor"], json!({"kind": "admin", "id": "ops"}));
    assert!(events.to_string().contains("called the customer"));
}

#[test]
fn listings_filter_by_status_and_page_by_cursor() {
    let s = Server::start(Opts::demo());
    let mut created = Vec::new();
    let mut paid = BTreeSet::new();
    for i in 0..7 {
        let c = s.create("gina", &[(TEA, 1)], None);
        let id = c["order_id"].as_str().unwrap().to_owned();
        if i % 2 == 0 {
            s.pay(&id, 4_900, &format!("T-LIST-{i}")).expect(200);
            paid.insert(id.clone());
        }
        created.push(id);
    }
    // Other users' orders do not appear in gina's listing.
    s.create("hank", &[(MUG, 1)], None);

    // Admin listing, status filter, pages of 2 following next_cursor.
    let mut pages = 0;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/orders?status=20&page_size=2".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = s.get(&path).admin().send();
        r.expect(200);
        let page = r.json();
        let orders = page["orders"].as_array().unwrap();
        assert!(orders.len() <= 2);
        assert!(orders.iter().all(|o| o["status"] == 20), "{page}");
        seen.extend(ids(orders));
        pages += 1;
        assert!(pages < 20, "paging does not end");
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(pages >= 2, "{pages}");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), paid);
    assert_eq!(seen.len(), paid.len(), "a page repeated an order: {seen:?}");
    // Newest first.
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");

    let all = s.all_orders(None);
    assert_eq!(all.len(), 8);
    let unpaid = s.all_orders(Some(10));
    assert_eq!(unpaid.len(), 4);
    let r = s
        .get("/v1/orders?created_from=2099-01-01T00:00:00Z")
        .admin()
        .send();
    r.expect(200);
    assert_eq!(r.json()["orders"], json!([]));
    let r = s
        .get("/v1/orders?created_from=2000-01-01T00:00:00Z&created_to=2099-01-01T00:00:00Z&status=")
        .admin()
        .send();
    r.expect(200);
    assert_eq!(r.json()["orders"].as_array().unwrap().len(), 8);

    // User listing: pages of 3, newest first, only gina's.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut path = "/v1/users/gina/orders?page_size=3".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = s.get(&path).user("gina").send().json();
        seen.extend(ids(page["orders"].as_array().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let page = s
        .get("/v1/users/gina/orders?status=10")
        .user("gina")
        .send()
        .json();
    assert_eq!(page["orders"].as_array().unwrap().len(), 3);
    // An admin may read any user's listing.
    s.get("/v1/users/gina/orders").admin().send().expect(200);
}

/// Follows `next_cursor` from `first` to the end; answers every page's ids.
fn pages(s: &Server, first: &str, who: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut path = first.to_owned();
    loop {
        let req = s.get(&path);
        let req = if who == "admin" {
            req.admin()
        } else {
            req.user(who)
        };
        let r = req.send();
        r.expect(200);
        let page = r.json();
        out.push(ids(page["orders"].as_array().unwrap()));
        assert!(out.len() < 50, "paging does not end");
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("{first}&cursor={c}"),
            None => return out,
        }
    }
}

#[test]
fn a_page_that_fills_inside_a_mixed_family_ends_there() {
    let s = Server::start(Opts::demo());
    // Newest first: a single unpaid order, then three paid mixed families
    // (two parts each): seven summaries.
    let (mut parts, mut fams) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let c = s.create("mia", &[(TEA, 1), (BOOK, 1)], None);
        let id = c["order_id"].as_str().unwrap().to_owned();
        fams.push(id.clone());
        let pay = c["pay_amount"].as_i64().unwrap();
        s.pay(&id, pay, &format!("T-MIX-{i}")).expect(200);
        let detail = s.order(&id);
        let mut subs: Vec<String> = detail["sub_orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["order_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(subs.len(), 2, "{detail}");
        subs.sort();
        parts.push(subs);
    }
    let single = s.create("mia", &[(TEA, 1)], None)["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let whole = s.get("/v1/users/mia/orders").user("mia").send().json();
    let expected = ids(whole["orders"].as_array().unwrap());
    assert_eq!(expected.len(), 7, "{whole}");
    assert_eq!(expected[0], single);
    for size in [1, 2, 3] {
        let got = pages(&s, &format!("/v1/users/mia/orders?page_size={size}"), "mia");
        assert!(got.iter().all(|p| p.len() <= size), "size {size}: {got:?}");
        // Every page but the last is full, and each summary comes once.
        assert!(
            got[..got.len() - 1].iter().all(|p| p.len() == size),
            "{got:?}"
        );
        assert_eq!(got.concat(), expected, "size {size}");
        // The admin listing of paid orders pages alike.
        let paid = pages(
            &s,
            &format!("/v1/orders?status=20&page_size={size}"),
            "admin",
        );
        assert!(
            paid.iter().all(|p| p.len() <= size),
            "size {size}: {paid:?}"
        );
        assert_eq!(paid.concat(), expected[1..], "admin, size {size}");
    }
    // A page of 1 ends inside a family: its cursor is the part listed.
    let first = s
        .get("/v1/orders?status=20&page_size=1")
        .admin()
        .send()
        .json();
    assert_eq!(first["orders"].as_array().unwrap().len(), 1);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    assert!(parts[2].contains(&cursor));
    // The listed part leaves the filter before the next page: the part
    // after it still comes next.
    s.fulfill(&cursor, "FULFILLED").expect(200);
    let next = s
        .get(&format!("/v1/orders?status=20&page_size=1&cursor={cursor}"))
        .admin()
        .send()
        .json();
    let other = parts[2].iter().find(|p| **p != cursor).unwrap();
    assert_eq!(
        ids(next["orders"].as_array().unwrap()),
        std::slice::from_ref(other)
    );
    // A family cancelled after a page ended inside it lists its master
    // next, then the older families.
    s.post(&format!("/v1/orders/{}/cancel", fams[1]))
        .user("mia")
        .json(&json!({"user_id": "mia"}))
        .send()
        .expect(200);
    let after = s
        .get(&format!("/v1/users/mia/orders?cursor={}", parts[1][0]))
        .user("mia")
        .send()
        .json();
    let mut expected_after = vec![fams[1].clone()];
    expected_after.extend(parts[0].iter().cloned());
    let got_after = ids(after["orders"].as_array().unwrap());
    assert_eq!(got_after[0], expected_after[0], "{after}");
    assert_eq!(
        got_after[1..].iter().collect::<BTreeSet<_>>(),
        expected_after[1..].iter().collect::<BTreeSet<_>>()
    );
    // Another user's sub-order is no way into mia's parts, nor mia's into
    // another user's listing.
    let other = s.get(&format!("/v1/users/nick/orders?cursor={}", parts[2][0]));
    let r = other.user("nick").send();
    r.expect(200);
    assert_eq!(r.json()["orders"], json!([]));
}

#[test]
fn events_by_offset() {
    let s = Server::start(Opts::demo());
    let c = s.create("ivan", &[(TEA, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    s.pay(&id, 4_900, "T-EV-1").expect(200);

    let mut after = 0u64;
    let mut all = Vec::new();
    for _ in 0..1_000 {
        let r = s
            .get(&format!("/v1/events?after={after}&limit=3"))
            .admin()
            .send();
        r.expect(200);
        let page = r.json();
        let events = page["events"].as_array().unwrap().clone();
        assert!(events.len() <= 3);
        let next = page["next"].as_u64().unwrap();
        if events.is_empty() && next == after {
            break;
        }
        assert!(next >= after);
        for e in &events {
            let seq = e["seq"].as_u64().unwrap();
            assert!(seq > after && seq <= next, "{seq} not in ({after}, {next}]");
            assert!(e["at"].is_string() && e["actor"].is_object());
        }
        all.extend(events);
        after = next;
    }
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let names = types(&Value::Array(all.clone()));
    for expected in ["OrderCreated", "OrderPaid", "StockChanged"] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    let created = all.iter().find(|e| e["type"] == "OrderCreated").unwrap();
    assert_eq!(created["order_id"], id.as_str());
    // The page after the last event is empty.
    let r = s.get(&format!("/v1/events?after={after}")).admin().send();
    assert_eq!(r.json()["events"], json!([]));
}

#[test]
fn idempotent_create_and_idempotency_keys() {
    let s = Server::start(Opts::demo());
    let body = s.create_body("judy", &[(TEA, 1)], None);
    let r = s.post("/v1/orders").user("judy").json(&body).send();
    r.expect(201);
    let first = r.json();
    // The same body again: 200, the same result, nothing reserved twice.
    let r = s.post("/v1/orders").user("judy").json(&body).send();
    r.expect(200);
    assert_eq!(r.json(), first);
    assert_eq!(s.sku(TEA)["locked"], 1);
    // Another body with the same order id: 409.
    let mut other = body.clone();
    other["user_remark"] = json!("another remark");
    s.post("/v1/orders")
        .user("judy")
        .json(&other)
        .send()
        .expect_error(409, "ORDER_EXISTED");
    let id = first["order_id"].as_str().unwrap().to_owned();
    assert_eq!(s.order(&id)["version"], 1);
    // A user whose id ends in the same 8 characters may use the id's
    // format, but not judy's order: it hears that the id is taken, as
    // with any other body, not whose it is; nothing changes.
    let mut squat = body.clone();
    squat["user_id"] = json!("000judy");
    s.post("/v1/orders")
        .user("000judy")
        .json(&squat)
        .send()
        .expect_error(409, "ORDER_EXISTED");
    assert_eq!(s.order(&id)["version"], 1);
    assert_eq!(s.sku(TEA)["locked"], 1);

    // Idempotency-Key on create: the recorded reply, replayed.
    let keyed = s.create_body("judy", &[(MUG, 1)], None);
    let send = |body: &Value| {
        s.post("/v1/orders")
            .user("judy")
            .header("Idempotency-Key", "create-key-1")
            .json(body)
            .send()
    };
    let r = send(&keyed);
    r.expect(201);
    assert!(r.header("idempotent-replayed").is_none());
    let r2 = send(&keyed);
    r2.expect(201);
    assert_eq!(r2.header("idempotent-replayed"), Some("true"));
    assert_eq!(r2.json(), r.json());
    assert_eq!(s.sku(MUG)["locked"], 1);

    // On a family write: replay, and 422 for another request.
    let prepay = |amount: i64| {
        s.post(&format!("/v1/orders/{id}/prepay"))
            .user("judy")
            .header("Idempotency-Key", "prepay-key-1")
            .json(&json!({"user_id": "judy", "pay_type": 10, "pay_amount": amount}))
            .send()
    };
    let r = prepay(4_900);
    r.expect(200);
    let version = s.order(&id)["version"].clone();
    let again = prepay(4_900);
    again.expect(200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), r.json());
    assert_eq!(s.order(&id)["version"], version);
    prepay(4_901).expect_error(422, "IDEMPOTENCY_KEY_REUSED");
}

#[test]
fn a_payment_after_cancel_is_refunded_once() {
    let s = Server::start(Opts::demo());
    let c = s.create("kate", &[(LAMP, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    assert_eq!(c["pay_amount"], 9_900);
    s.post(&format!("/v1/orders/{id}/cancel"))
        .user("kate")
        .json(&json!({"user_id": "kate"}))
        .send()
        .expect(200);
    let r = s.pay(&id, 9_900, "T-LATE-1");
    r.expect(200);
    let answer = r.json();
    assert_eq!(answer["result"], "REFUND");
    let refund_id = answer["after_sale_id"].as_str().unwrap().to_owned();
    let order = s.order(&id);
    assert_eq!(order["status"], 70);
    let version = order["version"].clone();
    let after_sales = order["after_sales"].as_array().unwrap();
    assert_eq!(after_sales.len(), 1, "{order}");
    assert_eq!(after_sales[0]["after_sale_id"], refund_id.as_str());
    assert_eq!(after_sales[0]["after_sale_type_detail"], 3, "USER_CANCEL");
    assert_eq!(after_sales[0]["status"], 40);
    assert_eq!(after_sales[0]["apply_refund_amount"], 9_900);
    assert_eq!(
        order["extra_payments"].as_array().unwrap().len(),
        1,
        "{order}"
    );
    // The same payment again: DUPLICATE with the same after-sale; no second refund.
    let r = s.pay(&id, 9_900, "T-LATE-1");
    r.expect(200);
    assert_eq!(
        r.json(),
        answer
            .clone()
            .as_object()
            .map(|m| {
                let mut m = m.clone();
                m.insert("result".into(), json!("DUPLICATE"));
                Value::Object(m)
            })
            .unwrap()
    );
    let order = s.order(&id);
    assert_eq!(order["after_sales"].as_array().unwrap().len(), 1);
    assert_eq!(order["version"], version);
    // The stock stays released.
    assert_eq!(s.sku(LAMP)["available"], 300);

    // A second payment of a paid order: ALL_REFUND.
    let c = s.create("kate", &[(LAMP, 1)], None);
    let paid = c["order_id"].as_str().unwrap().to_owned();
    assert_eq!(s.pay(&paid, 9_900, "T-FIRST").json()["result"], "PAID");
    let r = s.pay(&paid, 9_900, "T-SECOND");
    assert_eq!(r.json()["result"], "REFUND");
    let order = s.order(&paid);
    assert_eq!(order["status"], 20);
    assert_eq!(order["after_sales"].as_array().unwrap().len(), 1);
    assert_eq!(order["after_sales"][0]["after_sale_type_detail"], 1);
    assert_eq!(s.sku(LAMP)["sold"], 1);
}

#[test]
fn idempotency_keys_come_first_are_scoped_and_record_only_successes() {
    let s = Server::start(Opts::demo());
    let c = s.create("lena", &[(TEA, 3)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    let note = |key: &str, if_match: &str, text: &str| {
        s.post(&format!("/v1/orders/{id}/notes"))
            .admin()
            .header("Idempotency-Key", key)
            .header("If-Match", if_match)
            .json(&json!({"text": text}))
            .send()
    };
    let first = note("n-1", "\"1\"", "hello");
    first.expect(201);
    assert_eq!(first.json(), json!({"version": 2}));
    // The key is checked before If-Match: the replay of a request whose
    // If-Match is now stale answers the recorded response, and so does
    // one with a weak tag, which never matches otherwise.
    for if_match in ["\"1\"", "W/\"1\""] {
        let replay = note("n-1", if_match, "hello");
        replay.expect(201);
        assert_eq!(replay.header("idempotent-replayed"), Some("true"));
        assert_eq!(replay.json(), json!({"version": 2}));
    }
    note("n-weak", "W/\"2\"", "weak").expect_error(412, "ORDER_VERSION_MISMATCH");
    // A failure is not recorded: the same key may be retried.
    note("n-2", "\"1\"", "second").expect_error(412, "ORDER_VERSION_MISMATCH");
    let retried = note("n-2", "\"2\"", "second");
    retried.expect(201);
    assert!(retried.header("idempotent-replayed").is_none());
    assert_eq!(retried.json(), json!({"version": 3}));

    // Keys are per caller: the shopper's key is not the admin's.
    let prepay = |as_admin: bool| {
        let r = s.post(&format!("/v1/orders/{id}/prepay"));
        let r = if as_admin { r.admin() } else { r.user("lena") };
        r.header("Idempotency-Key", "shared-key")
            .json(&json!({"user_id": "lena", "pay_type": 10, "pay_amount": 11_700}))
            .send()
    };
    let mine = prepay(false);
    mine.expect(200);
    let theirs = prepay(true);
    theirs.expect(200);
    assert!(theirs.header("idempotent-replayed").is_none());
    assert_eq!(prepay(false).header("idempotent-replayed"), Some("true"));
    assert_eq!(s.order(&id)["version"], 5);

    // A dry run ignores the key: the real request afterwards runs.
    s.pay(&id, 11_700, "T-IDEM").expect(200);
    let apply = |dry: bool| {
        s.post(&format!(
            "/v1/orders/{id}/after-sales{}",
            if dry { "?dry_run=true" } else { "" }
        ))
        .user("lena")
        .header("Idempotency-Key", "apply-1")
        .json(&json!({
            "user_id": "lena", "after_sale_type": 1,
            "items": [{"sku_code": TEA, "return_quantity": 1}], "reason": "r"
        }))
        .send()
    };
    let dry = apply(true);
    dry.expect(200);
    assert_eq!(dry.json()["dry_run"], true);
    let real = apply(false);
    real.expect(201);
    assert!(real.header("idempotent-replayed").is_none());
    let again = apply(false);
    again.expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), real.json());
    // ... and after the real one, a keyed dry run is no replay either.
    let dry_after = apply(true);
    assert!(dry_after.header("idempotent-replayed").is_none());
    assert_ne!(dry_after.json(), real.json());
    assert_eq!(s.order(&id)["after_sales"].as_array().unwrap().len(), 1);

    // The same key on a create with another body: 422, nothing created.
    let body = s.create_body("lena", &[(MUG, 1)], None);
    let keyed = |b: &Value| {
        s.post("/v1/orders")
            .user("lena")
            .header("Idempotency-Key", "create-k")
            .json(b)
            .send()
    };
    keyed(&body).expect(201);
    let mut other = body.clone();
    other["user_remark"] = json!("changed");
    keyed(&other).expect_error(422, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(s.sku(MUG)["locked"], 1);

    // A keyed batch remove replays its reply once the orders are gone for
    // the shopper; another batch under the same key is refused.
    let gone: Vec<String> = (0..2)
        .map(|_| {
            let id = s.create("lena", &[(LAMP, 1)], None)["order_id"]
                .as_str()
                .unwrap()
                .to_owned();
            s.post(&format!("/v1/orders/{id}/cancel"))
                .user("lena")
                .json(&json!({"user_id": "lena"}))
                .send()
                .expect(200);
            id
        })
        .collect();
    let remove = |ids: &[String]| {
        s.post("/v1/orders/remove")
            .user("lena")
            .header("Idempotency-Key", "remove-k")
            .json(&json!({"user_id": "lena", "order_ids": ids}))
            .send()
    };
    let removed = remove(&gone);
    removed.expect(200);
    assert_eq!(removed.json(), json!({"removed": 2}));
    assert!(removed.header("idempotent-replayed").is_none());
    let versions: Vec<Value> = gone
        .iter()
        .map(|id| s.order(id)["version"].clone())
        .collect();
    let again = remove(&gone);
    again.expect(200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), json!({"removed": 2}));
    remove(&gone[..1]).expect_error(422, "IDEMPOTENCY_KEY_REUSED");
    let after: Vec<Value> = gone
        .iter()
        .map(|id| s.order(id)["version"].clone())
        .collect();
    assert_eq!(after, versions);
    // Without the key the orders are gone for their shopper.
    s.post("/v1/orders/remove")
        .user("lena")
        .json(&json!({"user_id": "lena", "order_ids": &gone[..1]}))
        .send()
        .expect_error(404, "ORDER_NOT_FOUND");
}

#[test]
fn every_event_type_of_api_md_is_published() {
    let s = Server::start(Opts::demo());
    let address =
        json!({"user_id": "mia", "province": "p", "city": "c", "area": "a", "detail_address": "d"});
    // A: the whole road to a refunded return, with a failed refund retried.
    let a = s.create("mia", &[(TEA, 2)], None)["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.post(&format!("/v1/orders/{a}/prepay"))
        .user("mia")
        .json(&json!({"user_id": "mia", "pay_type": 10, "pay_amount": 8_800}))
        .send()
        .expect(200);
    s.put(&format!("/v1/orders/{a}/delivery-address"))
        .user("mia")
        .json(&address)
        .send()
        .expect(200);
    s.pay(&a, 8_800, "T-EV-A").expect(200);
    s.post(&format!("/v1/orders/{a}/notes"))
        .admin()
        .json(&json!({"text": "vip"}))
        .send()
        .expect(201);
    for event in ["FULFILLED", "OUT_STOCK", "DELIVERY", "SIGNED"] {
        s.fulfill(&a, event).expect(200);
    }
    let apply = || {
        let r = s
            .post(&format!("/v1/orders/{a}/after-sales"))
            .user("mia")
            .json(&json!({"user_id": "mia", "after_sale_type": 2, "items": [{"sku_code": TEA, "return_quantity": 1}], "reason": "r"}))
            .send();
        r.expect(201);
        r.json()
    };
    let returned = apply();
    let returned_id = returned["after_sale_id"].as_str().unwrap().to_owned();
    let amount = returned["apply_refund_amount"].as_i64().unwrap();
    s.post(&format!("/v1/after-sales/{returned_id}/review"))
        .admin()
        .json(&json!({"approved": true, "remark": "ok"}))
        .send()
        .expect(200);
    s.callback(
        "/v1/refunds/callback",
        &refund_body(&returned_id, amount, false),
    )
    .expect(200);
    s.post(&format!("/v1/after-sales/{returned_id}/retry"))
        .admin()
        .send()
        .expect(200);
    s.callback(
        "/v1/refunds/callback",
        &refund_body(&returned_id, amount, true),
    )
    .expect(200);
    let revoked = apply()["after_sale_id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/after-sales/{revoked}/revoke"))
        .user("mia")
        .json(&json!({"user_id": "mia"}))
        .send()
        .expect(200);
    // B: refused on delivery.
    let b = s.create("mia", &[(MUG, 1)], None)["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.pay(&b, 6_900, "T-EV-B").expect(200);
    for event in ["FULFILLED", "OUT_STOCK", "DELIVERY", "REFUSED"] {
        s.fulfill(&b, event).expect(200);
    }
    // C: cancelled and removed.
    let c = s.create("mia", &[(LAMP, 1)], None)["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.post(&format!("/v1/orders/{c}/cancel"))
        .user("mia")
        .json(&json!({"user_id": "mia"}))
        .send()
        .expect(200);
    s.post("/v1/orders/remove")
        .user("mia")
        .json(&json!({"user_id": "mia", "order_ids": [c]}))
        .send()
        .expect(200);

    let events = s.all_events();
    let published: BTreeSet<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let documented = [
        "OrderCreated",
        "OrderPrePaid",
        "OrderPaid",
        "OrderCanceled",
        "OrderAddressChanged",
        "OrderRemoved",
        "OrderFulfilled",
        "OrderOutStock",
        "OrderDelivered",
        "OrderSigned",
        "OrderRefused",
        "RefundRequested",
        "AfterSaleCommitted",
        "AfterSaleReviewed",
        "AfterSaleRevoked",
        "RefundCompleted",
        "RefundFailed",
        "StockChanged",
        "OrderNoteAdded",
    ];
    let missing: Vec<&str> = documented
        .iter()
        .copied()
        .filter(|t| !published.contains(t))
        .collect();
    assert!(
        missing.is_empty(),
        "never published: {missing:?} (saw {published:?})"
    );
    let mut checked = 0;
    for e in &events {
        let t = e["type"].as_str().unwrap();
        for key in ["seq", "type", "at", "actor", "data"] {
            assert!(e.get(key).is_some(), "{t} lacks {key}: {e}");
        }
        if t.starts_with("Order") || t.starts_with("AfterSale") || t.starts_with("Refund") {
            assert!(e["order_id"].is_string(), "{t} lacks order_id: {e}");
        }
        checked += 1;
    }
    assert!(checked > documented.len());
    let requested = events
        .iter()
        .find(|e| e["type"] == "RefundRequested")
        .unwrap();
    for key in ["after_sale_id", "order_id", "trade_no", "refund_amount"] {
        assert!(
            requested["data"].get(key).is_some(),
            "RefundRequested lacks {key}: {requested}"
        );
    }
}

/// The OpenAPI document names every route the server serves, with its
/// method (API.md: the document must agree with the API).
#[test]
fn the_openapi_document_lists_every_route() {
    let s = Server::start(Opts::demo());
    let doc = s.get("/openapi.json").send().json();
    let paths = doc["paths"].as_object().unwrap();
    let normal = |p: &str| {
        let mut out = String::new();
        let mut inside = false;
        for ch in p.chars() {
            match ch {
                '{' => {
                    inside = true;
                    out.push_str("{}");
                }
                '}' => inside = false,
                _ if inside => {}
                _ => out.push(ch),
            }
        }
        out
    };
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, ops)| {
            let path = normal(path);
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_ascii_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let served = [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("POST", "/v1/order-ids"),
        ("POST", "/v1/orders/price"),
        ("POST", "/v1/orders/remove"),
        ("POST", "/v1/orders"),
        ("GET", "/v1/orders"),
        ("GET", "/v1/orders/{}"),
        ("GET", "/v1/orders/{}/events"),
        ("POST", "/v1/orders/{}/prepay"),
        ("POST", "/v1/orders/{}/cancel"),
        ("PUT", "/v1/orders/{}/delivery-address"),
        ("POST", "/v1/orders/{}/fulfillment"),
        ("POST", "/v1/orders/{}/notes"),
        ("POST", "/v1/orders/{}/after-sales"),
        ("POST", "/v1/orders/{}/lack"),
        ("POST", "/v1/payments/callback"),
        ("POST", "/v1/refunds/callback"),
        ("GET", "/v1/after-sales/{}"),
        ("POST", "/v1/after-sales/{}/revoke"),
        ("POST", "/v1/after-sales/{}/review"),
        ("POST", "/v1/after-sales/{}/retry"),
        ("GET", "/v1/users/{}/orders"),
        ("GET", "/v1/users/{}/after-sales"),
        ("GET", "/v1/skus"),
        ("PUT", "/v1/skus/{}"),
        ("GET", "/v1/skus/{}"),
        ("POST", "/v1/skus/{}/stock"),
        ("PUT", "/v1/coupons/{}"),
        ("GET", "/v1/coupons/{}"),
        ("GET", "/v1/events"),
        ("GET", "/v1/events/stream"),
        ("GET", "/v1/dashboard"),
    ];
    let missing: Vec<_> = served
        .iter()
        .filter(|(m, p)| !documented.contains(&((*m).to_owned(), (*p).to_owned())))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from /openapi.json: {missing:?}"
    );
    assert_eq!(served.len(), 35);
}

/// The audit trail and the guards around it: a request's reason on its
/// events, dry runs only where API.md has them (and ignoring the key there),
/// and no history or note for an id the family does not have.
#[test]
fn reasons_reach_the_history_dry_runs_stay_where_they_are_and_ids_must_exist() {
    let s = Server::start(Opts::demo());
    let c = s.create("mia", &[(TEA, 2)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    let pay = c["pay_amount"].as_i64().unwrap();
    s.pay(&id, pay, "T-AUDIT").expect(200);
    let applied = apply(&s, &id, "mia", 1, TEA, 1);
    applied.expect(201);
    let after_sale = applied.json()["after_sale_id"].as_str().unwrap().to_owned();
    review(&s, &after_sale, true).expect(200);
    let history = s.get(&format!("/v1/orders/{id}/events")).user("mia").send();
    history.expect(200);
    let events = history.json()["events"].as_array().unwrap().clone();
    let reason_of = |kind: &str| {
        events
            .iter()
            .find(|e| e["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {events:?}"))["reason"]
            .clone()
    };
    assert_eq!(reason_of("AfterSaleCommitted"), "changed my mind");
    assert_eq!(reason_of("AfterSaleReviewed"), "checked");
    assert_eq!(reason_of("OrderPaid"), Value::Null);

    // A dry run on a route without one is refused, and changes nothing.
    let version = s.order(&id)["version"].clone();
    s.put(&format!("/v1/orders/{id}/delivery-address?dry_run=true"))
        .user("mia")
        .json(&json!({"user_id": "mia", "province": "P", "city": "C", "area": "A", "detail_address": "D"}))
        .send()
        .expect_error(400, "INVALID_REQUEST");
    for query in ["dry_run=false", "dry%5Frun=true", "dry_run"] {
        s.post(&format!("/v1/orders/{id}/notes?{query}"))
            .admin()
            .json(&json!({"text": "hello"}))
            .send()
            .expect_error(400, "INVALID_REQUEST");
    }
    assert_eq!(s.order(&id)["version"], version);
    // A dry run ignores the key: even one that would not do (65
    // characters), which the real request refuses.
    let too_long = "k".repeat(65);
    let cancel = |dry: bool| {
        s.post(&format!("/v1/orders/{id}/cancel?dry_run={dry}"))
            .user("mia")
            .header("Idempotency-Key", &too_long)
            .json(&json!({"user_id": "mia"}))
            .send()
    };
    let dry = cancel(true);
    dry.expect(200);
    assert_eq!(dry.json()["dry_run"], true);
    cancel(false).expect_error(400, "IDEMPOTENCY_KEY_INVALID");

    // A sub-order id of a single order's family names nothing.
    let ghost = ordercore_domain::OrderId::parse(&id)
        .unwrap()
        .sub_order_id(ordercore_domain::codes::ProductType::ADVANCE_SALE)
        .to_string();
    s.get(&format!("/v1/orders/{ghost}/events"))
        .admin()
        .send()
        .expect_error(404, "ORDER_NOT_FOUND");
    s.post(&format!("/v1/orders/{ghost}/notes"))
        .admin()
        .json(&json!({"text": "hello"}))
        .send()
        .expect_error(404, "ORDER_NOT_FOUND");
    assert_eq!(s.order(&id)["version"], version);
}

/// A page of the event feed stops at its byte budget (1 MiB) however many
/// events `limit` allows, and the next page resumes right after it: walked
/// with large pages, the feed is the same as walked three at a time.
#[test]
fn event_pages_stop_at_their_byte_budget_and_resume_exactly() {
    let s = Server::start(Opts {
        extra: vec!["--risk-max-orders-per-user-per-min".into(), "0".into()],
        ..Opts::no_demo()
    });
    big_orders(&s, 30);
    let walk = |limit: u32| -> (Vec<u64>, usize) {
        let (mut after, mut seqs, mut cut) = (0u64, Vec::new(), 0);
        loop {
            let r = s
                .get(&format!("/v1/events?after={after}&limit={limit}"))
                .admin()
                .send();
            r.expect(200);
            let text = &r.body;
            assert!(text.len() < 1_300_000, "a page of {} bytes", text.len());
            let page: Value = serde_json::from_str(text).unwrap();
            let events = page["events"].as_array().unwrap();
            let next = page["next"].as_u64().unwrap();
            if events.is_empty() && next == after {
                return (seqs, cut);
            }
            if text.len() > 900_000 && events.len() < limit as usize {
                cut += 1;
            }
            seqs.extend(events.iter().map(|e| e["seq"].as_u64().unwrap()));
            after = next;
        }
    };
    let (small, _) = walk(3);
    let (large, cut) = walk(1_000);
    assert!(cut > 0, "no page was cut by its byte budget");
    assert!(small.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(large, small, "the same feed, nothing skipped or repeated");
}

/// A user's after-sales come `page_size` at a time even when one family
/// holds more than a page: the cursor is the page's last after-sale, and
/// the next page goes on within its family, then with older families.
#[test]
fn after_sale_pages_hold_page_size_even_within_one_family() {
    let s = Server::start(Opts::demo());
    let older = s.create("erin", &[(TEA, 1)], None);
    let older_pay = older["pay_amount"].as_i64().unwrap();
    let older = older["order_id"].as_str().unwrap().to_owned();
    s.pay(&older, older_pay, "T-PG-0").expect(200);
    let first = apply(&s, &older, "erin", 1, TEA, 1);
    first.expect(201);
    let c = s.create("erin", &[(TEA, 3)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    let pay = c["pay_amount"].as_i64().unwrap();
    s.pay(&id, pay, "T-PG-1").expect(200);
    // Seven after-sales in the newer family: applied and revoked.
    for _ in 0..7 {
        let r = apply(&s, &id, "erin", 1, TEA, 1);
        r.expect(201);
        let a = r.json()["after_sale_id"].as_str().unwrap().to_owned();
        s.post(&format!("/v1/after-sales/{a}/revoke"))
            .user("erin")
            .json(&json!({"user_id": "erin"}))
            .send()
            .expect(200);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/v1/users/erin/after-sales?page_size=2".to_owned(),
            Some(c) => format!("/v1/users/erin/after-sales?page_size=2&cursor={c}"),
        };
        let r = s.get(&path).user("erin").send();
        r.expect(200);
        let page = r.json();
        let ids: Vec<String> = page["after_sales"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["after_sale_id"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.len() <= 2, "a page of {}", ids.len());
        pages += 1;
        seen.extend(ids);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert_eq!(pages, 4);
    let mut newest_first = seen.clone();
    newest_first.sort();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "newest first, each once");
    // Another user's after-sale id is not a cursor of this listing.
    let r = s
        .get(&format!("/v1/users/alice/after-sales?cursor={}", seen[0]))
        .user("alice")
        .send();
    r.expect_error(400, "CURSOR_INVALID");
}

/// A user listing reads at most 2,000 of the user's orders per request: a
/// filter that matches only an old order answers short pages with a cursor
/// until it gets there, and nothing is skipped.
#[test]
fn user_listings_read_a_bounded_number_of_orders_per_request() {
    let s = Server::start(Opts {
        extra: vec!["--risk-max-orders-per-user-per-min".into(), "0".into()],
        ..Opts::no_demo()
    });
    s.upsert_sku("SCAN-1", 1, 100, 100_000);
    let amounts = json!([{"amount_type": 50, "amount": 1_100}]);
    let mut first = None;
    for _ in 0..2_050 {
        let id = s.new_order_id("scan");
        let body = create_body(&id, "scan", &[("SCAN-1", 1)], None, &amounts);
        s.post("/v1/orders")
            .user("scan")
            .json(&body)
            .send()
            .expect(201);
        first.get_or_insert(id);
    }
    let oldest = first.unwrap();
    s.post(&format!("/v1/orders/{oldest}/cancel"))
        .user("scan")
        .json(&json!({"user_id": "scan"}))
        .send()
        .expect(200);

    let (mut cursor, mut found, mut short) = (None::<String>, Vec::new(), 0);
    for _ in 0..10 {
        let path = match &cursor {
            None => "/v1/users/scan/orders?status=70&page_size=5".to_owned(),
            Some(c) => format!("/v1/users/scan/orders?status=70&page_size=5&cursor={c}"),
        };
        let page = s.get(&path).user("scan").send().json();
        let orders = page["orders"].as_array().unwrap();
        found.extend(
            orders
                .iter()
                .map(|o| o["order_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => {
                if orders.len() < 5 {
                    short += 1;
                }
                cursor = Some(next.to_owned());
            }
            None => break,
        }
    }
    assert!(short > 0, "no page stopped at the scan bound");
    assert_eq!(found, vec![oldest.clone()]);

    // The after-sales listing reads with the same bound.
    let page = s
        .get("/v1/users/scan/after-sales")
        .user("scan")
        .send()
        .json();
    assert_eq!(page["after_sales"], json!([]));
    let next = page["next_cursor"]
        .as_str()
        .expect("a short page goes on")
        .to_owned();
    let page = s
        .get(&format!("/v1/users/scan/after-sales?cursor={next}"))
        .user("scan")
        .send()
        .json();
    assert_eq!(page["after_sales"], json!([]));
    assert!(page.get("next_cursor").is_none(), "{page}");
}
