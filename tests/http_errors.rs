//! Every documented error code that HTTP can reach, with its status, against
//! the real server binary. Every response passes `Resp::check_shape` (no
//! 500; an error body is exactly `{code, message}`), and each table-driven
//! test counts the cases it checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use ordercore_domain::UserId;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A request case: method, path, who, body, expected status and code.
struct Case {
    method: &'static str,
    path: String,
    who: Who,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
}

#[derive(Clone)]
enum Who {
    Nobody,
    User(&'static str),
    Admin,
    /// A signed provider callback.
    Provider,
    Bearer(String),
}

fn case(
    method: &'static str,
    path: impl Into<String>,
    who: Who,
    body: Option<Value>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        method,
        path: path.into(),
        who,
        body: body.map(|b| serde_json::to_vec(&b).unwrap()),
        status,
        code,
    }
}

fn raw_case(
    method: &'static str,
    path: impl Into<String>,
    who: Who,
    body: &[u8],
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        method,
        path: path.into(),
        who,
        body: Some(body.to_vec()),
        status,
        code,
    }
}

/// Sends a case; answers the response (shape already checked).
fn send(s: &Server, c: &Case) -> Resp {
    let mut r = s.req(c.method, &c.path);
    match &c.who {
        Who::Nobody => {}
        Who::User(u) => r = r.user(u),
        Who::Admin => r = r.admin(),
        Who::Bearer(t) => r = r.bearer(t),
        Who::Provider => {
            let sig = ordercore::auth::sign(PAYMENT_SECRET, c.body.as_deref().unwrap_or(b""));
            r = r.header("X-Signature", &sig);
        }
    }
    if let Some(body) = &c.body {
        r = r.raw("application/json", body.clone());
    }
    r.send()
}

/// Runs every case; answers how many were checked.
fn run(s: &Server, cases: &[Case]) -> usize {
    let mut failures = Vec::new();
    for c in cases {
        let r = send(s, c);
        if (r.status, r.error_code().as_deref()) != (c.status, Some(c.code)) {
            failures.push(format!(
                "{} {}: expected {} {}, got {} {}",
                c.method, c.path, c.status, c.code, r.status, r.body
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    cases.len()
}

/// A paid single order of `user`: (id, pay amount).
fn paid_order(s: &Server, user: &str, items: &[(&str, i64)], trade_no: &str) -> (String, i64) {
    let c = s.create(user, items, None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    let pay = c["pay_amount"].as_i64().unwrap();
    s.pay(&id, pay, trade_no).expect(200);
    (id, pay)
}

fn long(n: usize) -> String {
    "x".repeat(n)
}

#[test]
fn malformed_unknown_and_wrongly_typed_bodies_are_400() {
    let s = Server::start(Opts::demo());
    let c = s.create("alice", &[(TEA, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    let (paid, _) = paid_order(&s, "alice", &[(TEA, 2)], "T-400");
    let as_id = format!("{}3001{}", &paid[..20], &paid[24..]);

    // Every JSON route with a valid body, to break in several ways.
    let routes: Vec<(&str, String, Who, Value)> = vec![
        (
            "POST",
            "/v1/order-ids".into(),
            Who::User("alice"),
            json!({"user_id": "alice", "business_identifier": 1}),
        ),
        (
            "POST",
            "/v1/orders/price".into(),
            Who::User("alice"),
            json!({"user_id": "alice", "items": lines(&[(TEA, 1)])}),
        ),
        (
            "POST",
            "/v1/orders".into(),
            Who::User("alice"),
            s.create_body("alice", &[(TEA, 1)], None),
        ),
        (
            "POST",
            format!("/v1/orders/{id}/prepay"),
            Who::User("alice"),
            json!({"user_id": "alice", "pay_type": 10, "pay_amount": 4_900}),
        ),
        (
            "POST",
            format!("/v1/orders/{id}/cancel"),
            Who::User("alice"),
            json!({"user_id": "alice"}),
        ),
        (
            "PUT",
            format!("/v1/orders/{id}/delivery-address"),
            Who::User("alice"),
            json!({"user_id": "alice", "province": "p", "city": "c", "area": "a", "detail_address": "d"}),
        ),
        (
            "POST",
            "/v1/orders/remove".into(),
            Who::User("alice"),
            json!({"user_id": "alice", "order_ids": [id]}),
        ),
        (
            "POST",
            format!("/v1/orders/{paid}/fulfillment"),
            Who::Admin,
            json!({"event": "FULFILLED"}),
        ),
        (
            "POST",
            format!("/v1/orders/{id}/notes"),
            Who::Admin,
            json!({"text": "hello"}),
        ),
        (
            "POST",
            format!("/v1/orders/{paid}/after-sales"),
            Who::User("alice"),
            json!({"user_id": "alice", "after_sale_type": 1, "items": [{"sku_code": TEA, "return_quantity": 1}], "reason": "r"}),
        ),
        (
            "POST",
            format!("/v1/orders/{paid}/lack"),
            Who::Admin,
            json!({"items": [{"sku_code": TEA, "lack_quantity": 1}]}),
        ),
        (
            "POST",
            "/v1/payments/callback".into(),
            Who::Provider,
            pay_body(&id, 4_900, "T-X"),
        ),
        (
            "POST",
            "/v1/refunds/callback".into(),
            Who::Provider,
            refund_body(&as_id, 1, true),
        ),
        (
            "POST",
            format!("/v1/after-sales/{as_id}/revoke"),
            Who::User("alice"),
            json!({"user_id": "alice"}),
        ),
        (
            "POST",
            format!("/v1/after-sales/{as_id}/review"),
            Who::Admin,
            json!({"approved": true, "remark": "ok"}),
        ),
        (
            "PUT",
            "/v1/skus/SKU-NEW".into(),
            Who::Admin,
            sku_body(1, 100, 1),
        ),
        (
            "POST",
            format!("/v1/skus/{TEA}/stock"),
            Who::Admin,
            json!({"delta": 1}),
        ),
        (
            "PUT",
            "/v1/coupons/CPN-NEW".into(),
            Who::Admin,
            json!({"user_id": "alice", "amount": 1, "threshold_amount": 0, "valid_from": "2020-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z"}),
        ),
    ];
    let mut cases = Vec::new();
    for (method, path, who, body) in &routes {
        for raw in [
            &b"{"[..],
            b"",
            b"null",
            b"[]",
            b"\"text\"",
            b"{\"user_id\": }",
            b"\xff\xfe\x00",
            b"{} trailing",
        ] {
            cases.push(raw_case(
                method,
                path.clone(),
                who.clone(),
                raw,
                400,
                "INVALID_REQUEST",
            ));
        }
        let mut unknown = body.clone();
        unknown["bogus_field"] = json!(1);
        cases.push(case(
            method,
            path.clone(),
            who.clone(),
            Some(unknown),
            400,
            "INVALID_REQUEST",
        ));
        // Every field with a value of the wrong JSON type.
        for key in body.as_object().unwrap().keys() {
            let wrong = match &body[key] {
                Value::String(_) => json!(12),
                Value::Number(_) | Value::Bool(_) => json!("12"),
                Value::Array(_) | Value::Object(_) => json!(true),
                Value::Null => continue,
            };
            let mut typed = body.clone();
            typed[key] = wrong;
            cases.push(case(
                method,
                path.clone(),
                who.clone(),
                Some(typed),
                400,
                "INVALID_REQUEST",
            ));
        }
    }
    // Numbers that do not fit.
    cases.push(raw_case("POST", "/v1/orders/price", Who::User("alice"),
        br#"{"user_id":"alice","items":[{"sku_code":"SKU-TEA-001","sale_quantity":99999999999999999999}]}"#, 400, "INVALID_REQUEST"));
    cases.push(raw_case(
        "POST",
        "/v1/orders/price",
        Who::User("alice"),
        br#"{"user_id":"alice","items":[{"sku_code":"SKU-TEA-001","sale_quantity":1.5}]}"#,
        400,
        "INVALID_REQUEST",
    ));
    // Deep nesting stops at serde_json's recursion limit.
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    cases.push(raw_case(
        "POST",
        "/v1/orders",
        Who::User("alice"),
        deep.as_bytes(),
        400,
        "INVALID_REQUEST",
    ));
    // retry takes no body.
    let retry = format!("/v1/after-sales/{as_id}/retry");
    cases.push(raw_case(
        "POST",
        retry,
        Who::Admin,
        b"{\"x\":1}",
        400,
        "INVALID_REQUEST",
    ));
    let checked = run(&s, &cases);
    assert!(checked > 200, "{checked}");
    // Nothing of the above changed anything.
    assert_eq!(s.order(&id)["version"], 1);
}

#[test]
fn invalid_values_answer_their_400_codes() {
    let s = Server::start(Opts::demo());
    let c = s.create("alice", &[(TEA, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    let (paid, _) = paid_order(&s, "alice", &[(TEA, 2)], "T-400B");
    let a = Who::User("alice");
    let body = s.create_body("alice", &[(TEA, 1)], None);
    let create = |f: &dyn Fn(&mut Value), code: &'static str| {
        let mut b = body.clone();
        f(&mut b);
        case("POST", "/v1/orders", Who::User("alice"), Some(b), 400, code)
    };
    let price = |items: Value, code: &'static str| {
        case(
            "POST",
            "/v1/orders/price",
            Who::User("alice"),
            Some(json!({"user_id": "alice", "items": items})),
            400,
            code,
        )
    };
    let apply = |qty: i64| {
        case(
            "POST",
            format!("/v1/orders/{paid}/after-sales"),
            Who::User("alice"),
            Some(
                json!({"user_id": "alice", "after_sale_type": 1, "items": [{"sku_code": TEA, "return_quantity": qty}], "reason": "r"}),
            ),
            400,
            "ORDER_ITEM_INVALID",
        )
    };
    let bob_id = s.new_order_id("bob");
    let cases = vec![
        // Quantities: zero, negative, too many; empty and repeated lines.
        price(lines(&[(TEA, 0)]), "ORDER_ITEM_INVALID"),
        price(lines(&[(TEA, -1)]), "ORDER_ITEM_INVALID"),
        price(lines(&[(TEA, 10_000)]), "ORDER_ITEM_INVALID"),
        price(json!([]), "ORDER_ITEM_INVALID"),
        price(lines(&[(TEA, 1), (TEA, 1)]), "ORDER_ITEM_INVALID"),
        price(lines(&[(long(65).as_str(), 1)]), "SKU_CODE_INVALID"),
        price(lines(&[("bad code!", 1)]), "SKU_CODE_INVALID"),
        create(&|b| b["items"] = lines(&[(TEA, 0)]), "ORDER_ITEM_INVALID"),
        create(&|b| b["items"] = lines(&[(TEA, -5)]), "ORDER_ITEM_INVALID"),
        apply(0),
        apply(-1),
        case(
            "POST",
            format!("/v1/orders/{paid}/lack"),
            Who::Admin,
            Some(json!({"items": [{"sku_code": TEA, "lack_quantity": 0}]})),
            400,
            "ORDER_ITEM_INVALID",
        ),
        case(
            "POST",
            format!("/v1/orders/{paid}/lack"),
            Who::Admin,
            Some(json!({"items": [{"sku_code": TEA, "lack_quantity": -3}]})),
            400,
            "ORDER_ITEM_INVALID",
        ),
        // Ids.
        create(
            &|b| {
                b.as_object_mut().unwrap().remove("order_id");
            },
            "ORDER_ID_IS_NULL",
        ),
        create(&|b| b["order_id"] = json!(""), "ORDER_ID_IS_NULL"),
        create(
            &|b| b["order_id"] = json!("not-an-order-id"),
            "ORDER_ID_INVALID",
        ),
        create(&|b| b["order_id"] = json!(bob_id), "ORDER_ID_INVALID"),
        create(&|b| b["user_id"] = json!(long(65)), "USER_ID_INVALID"),
        create(
            &|b| b["coupon_id"] = json!("bad coupon"),
            "COUPON_ID_INVALID",
        ),
        case(
            "POST",
            "/v1/order-ids",
            a.clone(),
            Some(json!({"user_id": "has space", "business_identifier": 1})),
            400,
            "USER_ID_INVALID",
        ),
        case(
            "GET",
            "/v1/orders/not-an-id",
            Who::Admin,
            None,
            400,
            "ORDER_ID_INVALID",
        ),
        case(
            "GET",
            format!("/v1/orders/{}", long(5_000)),
            Who::Admin,
            None,
            400,
            "ORDER_ID_INVALID",
        ),
        case(
            "GET",
            "/v1/after-sales/not-an-id",
            Who::Admin,
            None,
            400,
            "AFTER_SALE_ID_INVALID",
        ),
        case(
            "GET",
            format!("/v1/skus/{}", long(65)),
            Who::Admin,
            None,
            400,
            "SKU_CODE_INVALID",
        ),
        case(
            "GET",
            "/v1/coupons/bad%20id",
            Who::Admin,
            None,
            400,
            "COUPON_ID_INVALID",
        ),
        case(
            "GET",
            "/v1/users/bad%20user/orders",
            Who::Admin,
            None,
            400,
            "USER_ID_INVALID",
        ),
        // Codes.
        create(
            &|b| b["business_identifier"] = json!(2),
            "BUSINESS_IDENTIFIER_ERROR",
        ),
        case(
            "POST",
            "/v1/order-ids",
            a.clone(),
            Some(json!({"user_id": "alice", "business_identifier": 0})),
            400,
            "BUSINESS_IDENTIFIER_ERROR",
        ),
        create(&|b| b["order_type"] = json!(2), "ORDER_TYPE_ERROR"),
        create(
            &|b| b["delivery"]["delivery_type"] = json!(9),
            "DELIVERY_TYPE_ERROR",
        ),
        create(
            &|b| b["payments"][0]["pay_type"] = json!(30),
            "PAY_TYPE_ERROR",
        ),
        create(&|b| b["payments"] = json!([]), "PAY_TYPE_ERROR"),
        create(
            &|b| b["amounts"] = json!([{"amount_type": 10, "amount": 3_900}]),
            "AMOUNT_TYPE_ERROR",
        ),
        create(
            &|b| b["amounts"] = json!([{"amount_type": 99, "amount": 1}]),
            "AMOUNT_TYPE_ERROR",
        ),
        create(
            &|b| b["amounts"] = json!([{"amount_type": 50, "amount": -1}]),
            "AMOUNT_INVALID",
        ),
        create(
            &|b| b["amounts"] = json!([{"amount_type": 50, "amount": 2_000_000_000_000i64}]),
            "AMOUNT_INVALID",
        ),
        case(
            "PUT",
            "/v1/skus/SKU-X",
            Who::Admin,
            Some(sku_body(3, 100, 1)),
            400,
            "PRODUCT_TYPE_ERROR",
        ),
        case(
            "PUT",
            "/v1/skus/SKU-X",
            Who::Admin,
            Some(sku_body(1, -100, 1)),
            400,
            "AMOUNT_INVALID",
        ),
        case(
            "PUT",
            "/v1/skus/SKU-X",
            Who::Admin,
            Some(sku_body(1, 100, -1)),
            400,
            "SKU_INVALID",
        ),
        case(
            "POST",
            format!("/v1/orders/{id}/cancel"),
            a.clone(),
            Some(json!({"user_id": "alice", "cancel_type": 7})),
            400,
            "CANCEL_TYPE_ERROR",
        ),
        case(
            "POST",
            format!("/v1/orders/{id}/cancel"),
            a.clone(),
            Some(json!({"user_id": "alice", "cancel_type": 1})),
            400,
            "CANCEL_TYPE_ERROR",
        ),
        case(
            "POST",
            format!("/v1/orders/{paid}/after-sales"),
            a.clone(),
            Some(
                json!({"user_id": "alice", "after_sale_type": 3, "items": [{"sku_code": TEA, "return_quantity": 1}], "reason": "r"}),
            ),
            400,
            "AFTER_SALE_TYPE_ERROR",
        ),
        case(
            "POST",
            format!("/v1/orders/{id}/prepay"),
            a.clone(),
            Some(json!({"user_id": "alice", "pay_type": 11, "pay_amount": 4_900})),
            400,
            "PAY_TYPE_ERROR",
        ),
        case(
            "POST",
            format!("/v1/orders/{id}/prepay"),
            a.clone(),
            Some(json!({"user_id": "alice", "pay_type": 10, "pay_amount": -4_900})),
            400,
            "AMOUNT_INVALID",
        ),
        // Huge and bad strings.
        create(&|b| b["user_remark"] = json!(long(501)), "TEXT_INVALID"),
        create(&|b| b["user_remark"] = json!(long(60_000)), "TEXT_INVALID"),
        create(
            &|b| b["delivery"]["receiver_name"] = json!(long(65)),
            "DELIVERY_ADDRESS_INVALID",
        ),
        create(
            &|b| b["delivery"]["receiver_phone"] = json!("call me maybe"),
            "DELIVERY_ADDRESS_INVALID",
        ),
        create(
            &|b| b["delivery"]["detail_address"] = json!(long(257)),
            "DELIVERY_ADDRESS_INVALID",
        ),
        create(
            &|b| b["delivery"]["detail_address"] = json!(""),
            "DELIVERY_ADDRESS_INVALID",
        ),
        case(
            "PUT",
            format!("/v1/orders/{id}/delivery-address"),
            a.clone(),
            Some(
                json!({"user_id": "alice", "province": long(65), "city": "c", "area": "a", "detail_address": "d"}),
            ),
            400,
            "DELIVERY_ADDRESS_INVALID",
        ),
        case(
            "POST",
            format!("/v1/orders/{id}/notes"),
            Who::Admin,
            Some(json!({"text": ""})),
            400,
            "TEXT_INVALID",
        ),
        case(
            "POST",
            format!("/v1/orders/{id}/notes"),
            Who::Admin,
            Some(json!({"text": long(2_001)})),
            400,
            "TEXT_INVALID",
        ),
        case(
            "POST",
            format!("/v1/orders/{paid}/after-sales"),
            a.clone(),
            Some(
                json!({"user_id": "alice", "after_sale_type": 1, "items": [{"sku_code": TEA, "return_quantity": 1}], "reason": long(501)}),
            ),
            400,
            "TEXT_INVALID",
        ),
        case(
            "POST",
            format!("/v1/orders/{paid}/fulfillment"),
            Who::Admin,
            Some(json!({"event": "FULFILLED", "logistics_code": long(129)})),
            400,
            "TEXT_INVALID",
        ),
        case(
            "PUT",
            "/v1/skus/SKU-X",
            Who::Admin,
            Some({
                let mut b = sku_body(1, 100, 1);
                b["product_name"] = json!(long(257));
                b
            }),
            400,
            "SKU_INVALID",
        ),
        // Callbacks.
        case(
            "POST",
            "/v1/payments/callback",
            Who::Provider,
            Some({
                let mut b = pay_body(&id, 4_900, "T");
                b["trade_no"] = json!("");
                b
            }),
            400,
            "TRADE_NO_INVALID",
        ),
        case(
            "POST",
            "/v1/payments/callback",
            Who::Provider,
            Some({
                let mut b = pay_body(&id, 4_900, "T");
                b["trade_no"] = json!(long(65));
                b
            }),
            400,
            "TRADE_NO_INVALID",
        ),
        case(
            "POST",
            "/v1/payments/callback",
            Who::Provider,
            Some({
                let mut b = pay_body(&id, 4_900, "T");
                b["paid_at"] = json!("yesterday");
                b
            }),
            400,
            "TIME_INVALID",
        ),
        case(
            "POST",
            "/v1/refunds/callback",
            Who::Provider,
            Some(refund_body("nope", 1, true)),
            400,
            "AFTER_SALE_ID_INVALID",
        ),
        case(
            "PUT",
            "/v1/coupons/CPN-X",
            Who::Admin,
            Some(
                json!({"user_id": "alice", "amount": 0, "threshold_amount": 0, "valid_from": "2020-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z"}),
            ),
            400,
            "COUPON_INVALID",
        ),
        case(
            "PUT",
            "/v1/coupons/CPN-X",
            Who::Admin,
            Some(
                json!({"user_id": "alice", "amount": 5, "threshold_amount": 0, "valid_from": "2099-01-01T00:00:00Z", "valid_to": "2020-01-01T00:00:00Z"}),
            ),
            400,
            "COUPON_INVALID",
        ),
        case(
            "PUT",
            "/v1/coupons/CPN-X",
            Who::Admin,
            Some(
                json!({"user_id": "alice", "amount": 5, "threshold_amount": 0, "valid_from": "soon", "valid_to": "2020-01-01T00:00:00Z"}),
            ),
            400,
            "TIME_INVALID",
        ),
        // Query strings.
        case(
            "GET",
            "/v1/orders?page_size=0",
            Who::Admin,
            None,
            400,
            "PAGE_SIZE_INVALID",
        ),
        case(
            "GET",
            "/v1/orders?page_size=101",
            Who::Admin,
            None,
            400,
            "PAGE_SIZE_INVALID",
        ),
        case(
            "GET",
            "/v1/orders?page_size=abc",
            Who::Admin,
            None,
            400,
            "PAGE_SIZE_INVALID",
        ),
        case(
            "GET",
            "/v1/orders?cursor=xyz",
            Who::Admin,
            None,
            400,
            "CURSOR_INVALID",
        ),
        case(
            "GET",
            "/v1/orders?status=99",
            Who::Admin,
            None,
            400,
            "INVALID_REQUEST",
        ),
        case(
            "GET",
            "/v1/orders?status=paid",
            Who::Admin,
            None,
            400,
            "INVALID_REQUEST",
        ),
        case(
            "GET",
            "/v1/orders?created_from=noon",
            Who::Admin,
            None,
            400,
            "TIME_INVALID",
        ),
        case(
            "GET",
            "/v1/orders?created_from=2030-01-01T00:00:00Z&created_to=2020-01-01T00:00:00Z",
            Who::Admin,
            None,
            400,
            "TIME_INVALID",
        ),
        case(
            "GET",
            "/v1/orders?bogus=1",
            Who::Admin,
            None,
            400,
            "INVALID_REQUEST",
        ),
        case(
            "GET",
            "/v1/users/alice/orders?page_size=-1",
            a.clone(),
            None,
            400,
            "PAGE_SIZE_INVALID",
        ),
        case(
            "GET",
            "/v1/users/alice/after-sales?cursor=1",
            a.clone(),
            None,
            400,
            "CURSOR_INVALID",
        ),
        case(
            "GET",
            "/v1/events?after=-1",
            Who::Admin,
            None,
            400,
            "CURSOR_INVALID",
        ),
        case(
            "GET",
            "/v1/events?limit=1001",
            Who::Admin,
            None,
            400,
            "PAGE_SIZE_INVALID",
        ),
        case(
            "GET",
            "/v1/events/stream?after=x",
            Who::Admin,
            None,
            400,
            "CURSOR_INVALID",
        ),
        case(
            "POST",
            format!("/v1/orders/{id}/cancel?dry_run=maybe"),
            a.clone(),
            Some(json!({"user_id": "alice"})),
            400,
            "INVALID_REQUEST",
        ),
    ];
    // Headers: If-Match and Idempotency-Key that do not parse.
    let bad_headers = [
        ("If-Match", "\"abc\"".to_owned(), "INVALID_REQUEST"),
        ("Idempotency-Key", long(65), "IDEMPOTENCY_KEY_INVALID"),
        (
            "Idempotency-Key",
            "has space".to_owned(),
            "IDEMPOTENCY_KEY_INVALID",
        ),
        (
            "Idempotency-Key",
            "clé".to_owned(),
            "IDEMPOTENCY_KEY_INVALID",
        ),
    ];
    let checked = run(&s, &cases);
    let mut header_cases = 0;
    for (name, value, code) in bad_headers {
        s.post(&format!("/v1/orders/{id}/notes"))
            .admin()
            .header(name, &value)
            .json(&json!({"text": "t"}))
            .send()
            .expect_error(400, code);
        header_cases += 1;
    }
    assert!(checked + header_cases > 70, "{checked}");
    assert_eq!(
        s.order(&id)["version"],
        1,
        "a refused request changed the order"
    );
}

#[test]
fn catalog_writes_refuse_keys_and_versions() {
    let s = Server::start(Opts::demo());
    let before = s.sku(TEA);
    let writes: [(&str, String, Value); 3] = [
        ("PUT", format!("/v1/skus/{TEA}"), sku_body(1, 1, 1)),
        ("POST", format!("/v1/skus/{TEA}/stock"), json!({"delta": 5})),
        (
            "PUT",
            "/v1/coupons/CPN-NEW".into(),
            json!({"user_id": "alice", "amount": 100, "threshold_amount": 0,
                   "valid_from": "2020-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z"}),
        ),
    ];
    let mut refused = 0;
    for (method, path, body) in &writes {
        for (name, value) in [("Idempotency-Key", "k-1"), ("If-Match", "\"1\"")] {
            s.req(method, path)
                .admin()
                .header(name, value)
                .json(body)
                .send()
                .expect_error(400, "INVALID_REQUEST");
            refused += 1;
        }
    }
    assert_eq!(refused, 6);
    assert_eq!(
        s.sku(TEA),
        before,
        "a refused catalog write changed the SKU"
    );
    s.get("/v1/coupons/CPN-NEW")
        .admin()
        .send()
        .expect_error(404, "USER_COUPON_NOT_EXIST");
    // Without the headers the same writes go through.
    for (method, path, body) in &writes[1..] {
        s.req(method, path).admin().json(body).send().expect(200);
    }
}

#[test]
fn unauthenticated_and_bad_signatures_are_401() {
    let s = Server::start(Opts::demo());
    let c = s.create("alice", &[(TEA, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    let keys = ordercore::auth::TokenKeys::new(JWT_SECRET);
    let alice = UserId::parse("alice").unwrap();
    let long_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 7_200;
    let expired = keys
        .mint_at(&alice, false, long_ago, Duration::from_secs(60))
        .unwrap();
    let foreign =
        ordercore::auth::mint("another-secret-0123456789", &alice, true, TOKEN_TTL).unwrap();
    let bad_tokens = [
        Who::Nobody,
        Who::Bearer(expired),
        Who::Bearer(foreign),
        Who::Bearer("not.a.jwt".into()),
        Who::Bearer(String::new()),
    ];
    let routes: Vec<(&'static str, String, Option<Value>)> = vec![
        (
            "POST",
            "/v1/order-ids".into(),
            Some(json!({"user_id": "alice", "business_identifier": 1})),
        ),
        (
            "POST",
            "/v1/orders/price".into(),
            Some(json!({"user_id": "alice", "items": lines(&[(TEA, 1)])})),
        ),
        ("POST", "/v1/orders".into(), Some(json!({}))),
        ("GET", "/v1/orders".into(), None),
        ("GET", format!("/v1/orders/{id}"), None),
        ("GET", format!("/v1/orders/{id}/events"), None),
        (
            "POST",
            format!("/v1/orders/{id}/cancel"),
            Some(json!({"user_id": "alice"})),
        ),
        ("POST", format!("/v1/orders/{id}/prepay"), Some(json!({}))),
        (
            "PUT",
            format!("/v1/orders/{id}/delivery-address"),
            Some(json!({})),
        ),
        ("POST", "/v1/orders/remove".into(), Some(json!({}))),
        ("GET", "/v1/users/alice/orders".into(), None),
        ("GET", "/v1/users/alice/after-sales".into(), None),
        ("GET", "/v1/skus".into(), None),
        ("GET", format!("/v1/skus/{TEA}"), None),
        ("GET", "/v1/coupons/CPN-ALICE-10".into(), None),
        ("GET", "/v1/events".into(), None),
        ("GET", "/v1/events/stream".into(), None),
        ("GET", "/v1/dashboard".into(), None),
        ("PUT", "/v1/skus/SKU-X".into(), Some(sku_body(1, 1, 1))),
        // A bad query string does not get past authentication first.
        ("GET", "/v1/events?limit=many".into(), None),
        ("GET", "/v1/orders?page_size=0".into(), None),
    ];
    let mut cases = Vec::new();
    for (method, path, body) in &routes {
        for who in &bad_tokens {
            cases.push(case(
                method,
                path.clone(),
                who.clone(),
                body.clone(),
                401,
                "UNAUTHORIZED",
            ));
        }
    }
    let checked = run(&s, &cases);
    // A Basic scheme is not a bearer token.
    s.get("/v1/skus")
        .header("Authorization", &format!("Basic {}", user_token("alice")))
        .send()
        .expect_error(401, "UNAUTHORIZED");

    // Callbacks: missing, wrong, not hex, other secret, other body.
    let body = serde_json::to_vec(&pay_body(&id, 4_900, "T-SIG")).unwrap();
    let good = ordercore::auth::sign(PAYMENT_SECRET, &body);
    let signatures = [
        None,
        Some("zz-not-hex".to_owned()),
        Some(ordercore::auth::sign("another-payment-secret", &body)),
        Some(ordercore::auth::sign(PAYMENT_SECRET, b"{}")),
        Some(good[..62].to_owned()),
        Some(String::new()),
    ];
    let mut signature_cases = 0;
    for path in ["/v1/payments/callback", "/v1/refunds/callback"] {
        for sig in &signatures {
            let mut r = s.post(path);
            if let Some(sig) = sig {
                r = r.header("X-Signature", sig);
            }
            r.raw("application/json", body.clone())
                .send()
                .expect_error(401, "SIGNATURE_INVALID");
            signature_cases += 1;
        }
    }
    // A bearer token is no signature.
    s.post("/v1/payments/callback")
        .admin()
        .raw("application/json", body.clone())
        .send()
        .expect_error(401, "SIGNATURE_INVALID");
    assert!(checked + signature_cases > 100);
    assert_eq!(s.order(&id)["status"], 10, "an unsigned callback paid");
}

#[test]
fn forbidden_and_risk_rejected_are_403() {
    let s = Server::start(Opts::demo().flag("--risk-blocked-users", "mallory,trudy"));
    let c = s.create("alice", &[(TEA, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    let (paid, _) = paid_order(&s, "alice", &[(TEA, 2)], "T-403");
    let after_sale = {
        let r = s
            .post(&format!("/v1/orders/{paid}/after-sales"))
            .user("alice")
            .json(&json!({"user_id": "alice", "after_sale_type": 1, "items": [{"sku_code": TEA, "return_quantity": 1}], "reason": "r"}))
            .send();
        r.expect(201);
        r.json()["after_sale_id"].as_str().unwrap().to_owned()
    };
    let bob = Who::User("bob");
    let mut cases = vec![
        // Another user's order, listing, coupon, after-sale.
        case(
            "GET",
            format!("/v1/orders/{id}"),
            bob.clone(),
            None,
            403,
            "FORBIDDEN",
        ),
        case(
            "GET",
            format!("/v1/orders/{id}/events"),
            bob.clone(),
            None,
            403,
            "FORBIDDEN",
        ),
        case(
            "GET",
            "/v1/users/alice/orders",
            bob.clone(),
            None,
            403,
            "FORBIDDEN",
        ),
        case(
            "GET",
            "/v1/users/alice/after-sales",
            bob.clone(),
            None,
            403,
            "FORBIDDEN",
        ),
        case(
            "GET",
            "/v1/coupons/CPN-ALICE-10",
            bob.clone(),
            None,
            403,
            "FORBIDDEN",
        ),
        case(
            "GET",
            format!("/v1/after-sales/{after_sale}"),
            bob.clone(),
            None,
            403,
            "FORBIDDEN",
        ),
        // Naming another user in a body.
        case(
            "POST",
            "/v1/order-ids",
            bob.clone(),
            Some(json!({"user_id": "alice", "business_identifier": 1})),
            403,
            "FORBIDDEN",
        ),
        case(
            "POST",
            "/v1/orders/price",
            bob.clone(),
            Some(json!({"user_id": "alice", "items": lines(&[(TEA, 1)])})),
            403,
            "FORBIDDEN",
        ),
        case(
            "POST",
            "/v1/orders",
            bob.clone(),
            Some(s.create_body("alice", &[(TEA, 1)], None)),
            403,
            "FORBIDDEN",
        ),
        case(
            "POST",
            format!("/v1/orders/{id}/cancel"),
            bob.clone(),
            Some(json!({"user_id": "alice"})),
            403,
            "FORBIDDEN",
        ),
        case(
            "POST",
            format!("/v1/orders/{id}/prepay"),
            bob.clone(),
            Some(json!({"user_id": "alice", "pay_type": 10, "pay_amount": 4_900})),
            403,
            "FORBIDDEN",
        ),
        case(
            "PUT",
            format!("/v1/orders/{id}/delivery-address"),
            bob.clone(),
            Some(
                json!({"user_id": "alice", "province": "p", "city": "c", "area": "a", "detail_address": "d"}),
            ),
            403,
            "FORBIDDEN",
        ),
        case(
            "POST",
            "/v1/orders/remove",
            bob.clone(),
            Some(json!({"user_id": "alice", "order_ids": [id]})),
            403,
            "FORBIDDEN",
        ),
        case(
            "POST",
            format!("/v1/orders/{paid}/after-sales"),
            bob.clone(),
            Some(
                json!({"user_id": "alice", "after_sale_type": 1, "items": [{"sku_code": TEA, "return_quantity": 1}], "reason": "r"}),
            ),
            403,
            "FORBIDDEN",
        ),
        case(
            "POST",
            format!("/v1/after-sales/{after_sale}/revoke"),
            bob.clone(),
            Some(json!({"user_id": "alice"})),
            403,
            "FORBIDDEN",
        ),
        // Naming itself in the body of another user's order.
        case(
            "POST",
            format!("/v1/orders/{id}/cancel"),
            bob.clone(),
            Some(json!({"user_id": "bob"})),
            403,
            "FORBIDDEN",
        ),
        case(
            "POST",
            format!("/v1/orders/{id}/prepay"),
            bob.clone(),
            Some(json!({"user_id": "bob", "pay_type": 10, "pay_amount": 4_900})),
            403,
            "FORBIDDEN",
        ),
        case(
            "POST",
            format!("/v1/after-sales/{after_sale}/revoke"),
            bob.clone(),
            Some(json!({"user_id": "bob"})),
            403,
            "FORBIDDEN",
        ),
        // cancel_type 2 is customer service's.
        case(
            "POST",
            format!("/v1/orders/{id}/cancel"),
            Who::User("alice"),
            Some(json!({"user_id": "alice", "cancel_type": 2})),
            403,
            "FORBIDDEN",
        ),
    ];
    // A shopper on every admin route.
    let admin_routes: Vec<(&'static str, String, Option<Value>)> = vec![
        ("GET", "/v1/orders".into(), None),
        (
            "POST",
            format!("/v1/orders/{paid}/fulfillment"),
            Some(json!({"event": "FULFILLED"})),
        ),
        (
            "POST",
            format!("/v1/orders/{id}/notes"),
            Some(json!({"text": "t"})),
        ),
        (
            "POST",
            format!("/v1/orders/{paid}/lack"),
            Some(json!({"items": [{"sku_code": TEA, "lack_quantity": 1}]})),
        ),
        (
            "POST",
            format!("/v1/after-sales/{after_sale}/review"),
            Some(json!({"approved": true, "remark": "r"})),
        ),
        ("POST", format!("/v1/after-sales/{after_sale}/retry"), None),
        ("PUT", "/v1/skus/SKU-X".into(), Some(sku_body(1, 1, 1))),
        ("GET", "/v1/skus".into(), None),
        ("GET", format!("/v1/skus/{TEA}"), None),
        (
            "POST",
            format!("/v1/skus/{TEA}/stock"),
            Some(json!({"delta": 1})),
        ),
        (
            "PUT",
            "/v1/coupons/CPN-X".into(),
            Some(
                json!({"user_id": "alice", "amount": 1, "threshold_amount": 0, "valid_from": "2020-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z"}),
            ),
        ),
        ("GET", "/v1/events".into(), None),
        ("GET", "/v1/events/stream".into(), None),
        ("GET", "/v1/dashboard".into(), None),
    ];
    for (method, path, body) in admin_routes {
        cases.push(case(
            method,
            path,
            Who::User("alice"),
            body,
            403,
            "FORBIDDEN",
        ));
    }
    // Risk: a blocked user; an amount over the cap (10,000,000 by default).
    for blocked in ["mallory", "trudy"] {
        let body = s.create_body(blocked, &[(TEA, 1)], None);
        cases.push(case(
            "POST",
            "/v1/orders",
            Who::User(blocked),
            Some(body),
            403,
            "RISK_REJECTED",
        ));
    }
    s.upsert_sku("SKU-GOLD", 1, 5_000_000, 100);
    let body = s.create_body("alice", &[("SKU-GOLD", 3)], None);
    cases.push(case(
        "POST",
        "/v1/orders",
        Who::User("alice"),
        Some(body),
        403,
        "RISK_REJECTED",
    ));
    let checked = run(&s, &cases);
    assert!(checked >= 30, "{checked}");
    // Nothing was reserved by the refused creates.
    assert_eq!(s.sku("SKU-GOLD")["locked"], 0);
    assert_eq!(s.order(&id)["status"], 10);
}

#[test]
fn unknown_ids_and_routes_are_404() {
    let s = Server::start(Opts::demo());
    let c = s.create("alice", &[(TEA, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    // Well-formed ids that name nothing.
    let ghost = s.new_order_id("alice");
    let ghost_as = format!("{}3001{}", &ghost[..20], &ghost[24..]);
    let a = Who::User("alice");
    let cases = vec![
        case(
            "GET",
            format!("/v1/orders/{ghost}"),
            a.clone(),
            None,
            404,
            "ORDER_NOT_FOUND",
        ),
        case(
            "GET",
            format!("/v1/orders/{ghost}"),
            Who::Admin,
            None,
            404,
            "ORDER_NOT_FOUND",
        ),
        case(
            "GET",
            format!("/v1/orders/{ghost}/events"),
            Who::Admin,
            None,
            404,
            "ORDER_NOT_FOUND",
        ),
        case(
            "POST",
            format!("/v1/orders/{ghost}/cancel"),
            a.clone(),
            Some(json!({"user_id": "alice"})),
            404,
            "ORDER_NOT_FOUND",
        ),
        case(
            "POST",
            format!("/v1/orders/{ghost}/prepay"),
            a.clone(),
            Some(json!({"user_id": "alice", "pay_type": 10, "pay_amount": 1})),
            404,
            "ORDER_NOT_FOUND",
        ),
        case(
            "PUT",
            format!("/v1/orders/{ghost}/delivery-address"),
            a.clone(),
            Some(
                json!({"user_id": "alice", "province": "p", "city": "c", "area": "a", "detail_address": "d"}),
            ),
            404,
            "ORDER_NOT_FOUND",
        ),
        case(
            "POST",
            format!("/v1/orders/{ghost}/fulfillment"),
            Who::Admin,
            Some(json!({"event": "FULFILLED"})),
            404,
            "ORDER_NOT_FOUND",
        ),
        case(
            "POST",
            format!("/v1/orders/{ghost}/notes"),
            Who::Admin,
            Some(json!({"text": "t"})),
            404,
            "ORDER_NOT_FOUND",
        ),
        case(
            "POST",
            format!("/v1/orders/{ghost}/lack"),
            Who::Admin,
            Some(json!({"items": [{"sku_code": TEA, "lack_quantity": 1}]})),
            404,
            "ORDER_NOT_FOUND",
        ),
        case(
            "POST",
            format!("/v1/orders/{ghost}/after-sales"),
            a.clone(),
            Some(
                json!({"user_id": "alice", "after_sale_type": 1, "items": [{"sku_code": TEA, "return_quantity": 1}], "reason": "r"}),
            ),
            404,
            "ORDER_NOT_FOUND",
        ),
        case(
            "POST",
            "/v1/orders/remove",
            a.clone(),
            Some(json!({"user_id": "alice", "order_ids": [ghost]})),
            404,
            "ORDER_NOT_FOUND",
        ),
        case(
            "POST",
            "/v1/payments/callback",
            Who::Provider,
            Some(pay_body(&ghost, 4_900, "T-404")),
            404,
            "ORDER_NOT_FOUND",
        ),
        case(
            "GET",
            format!("/v1/after-sales/{ghost_as}"),
            Who::Admin,
            None,
            404,
            "AFTER_SALE_NOT_FOUND",
        ),
        case(
            "POST",
            format!("/v1/after-sales/{ghost_as}/review"),
            Who::Admin,
            Some(json!({"approved": true, "remark": "r"})),
            404,
            "AFTER_SALE_NOT_FOUND",
        ),
        case(
            "POST",
            format!("/v1/after-sales/{ghost_as}/revoke"),
            a.clone(),
            Some(json!({"user_id": "alice"})),
            404,
            "AFTER_SALE_NOT_FOUND",
        ),
        case(
            "POST",
            format!("/v1/after-sales/{ghost_as}/retry"),
            Who::Admin,
            None,
            404,
            "AFTER_SALE_NOT_FOUND",
        ),
        case(
            "POST",
            "/v1/refunds/callback",
            Who::Provider,
            Some(refund_body(&ghost_as, 1, true)),
            404,
            "AFTER_SALE_NOT_FOUND",
        ),
        case(
            "GET",
            "/v1/skus/SKU-NOPE",
            Who::Admin,
            None,
            404,
            "PRODUCT_SKU_NOT_FOUND",
        ),
        case(
            "POST",
            "/v1/skus/SKU-NOPE/stock",
            Who::Admin,
            Some(json!({"delta": 1})),
            404,
            "PRODUCT_SKU_NOT_FOUND",
        ),
        case(
            "POST",
            "/v1/orders/price",
            a.clone(),
            Some(json!({"user_id": "alice", "items": lines(&[("SKU-NOPE", 1)])})),
            404,
            "PRODUCT_SKU_NOT_FOUND",
        ),
        case(
            "POST",
            "/v1/orders",
            a.clone(),
            Some({
                let mut b = s.create_body("alice", &[(TEA, 1)], None);
                b["items"] = lines(&[("SKU-NOPE", 1)]);
                b
            }),
            404,
            "PRODUCT_SKU_NOT_FOUND",
        ),
        case(
            "GET",
            "/v1/coupons/CPN-NOPE",
            Who::Admin,
            None,
            404,
            "USER_COUPON_NOT_EXIST",
        ),
        case(
            "POST",
            "/v1/orders/price",
            a.clone(),
            Some(json!({"user_id": "alice", "items": lines(&[(TEA, 1)]), "coupon_id": "CPN-NOPE"})),
            404,
            "USER_COUPON_NOT_EXIST",
        ),
        case("GET", "/nope", Who::Nobody, None, 404, "ROUTE_NOT_FOUND"),
        case("GET", "/v1/nope", Who::Admin, None, 404, "ROUTE_NOT_FOUND"),
        case(
            "GET",
            "/v2/orders",
            Who::Admin,
            None,
            404,
            "ROUTE_NOT_FOUND",
        ),
        case(
            "DELETE",
            format!("/v1/orders/{id}"),
            Who::Admin,
            None,
            405,
            "METHOD_NOT_ALLOWED",
        ),
        case(
            "PUT",
            "/healthz",
            Who::Nobody,
            None,
            405,
            "METHOD_NOT_ALLOWED",
        ),
        case(
            "GET",
            "/v1/payments/callback",
            Who::Nobody,
            None,
            405,
            "METHOD_NOT_ALLOWED",
        ),
        // Not a GET of an order named "price" or "remove".
        case(
            "GET",
            "/v1/orders/price",
            Who::Admin,
            None,
            405,
            "METHOD_NOT_ALLOWED",
        ),
        case(
            "GET",
            "/v1/orders/remove",
            a.clone(),
            None,
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ];
    let checked = run(&s, &cases);
    assert!(checked >= 25);

    // A removed order answers 404 to its shopper's writes.
    s.post(&format!("/v1/orders/{id}/cancel"))
        .user("alice")
        .json(&json!({"user_id": "alice"}))
        .send()
        .expect(200);
    s.post("/v1/orders/remove")
        .user("alice")
        .json(&json!({"user_id": "alice", "order_ids": [id]}))
        .send()
        .expect(200);
    s.put(&format!("/v1/orders/{id}/delivery-address"))
        .user("alice")
        .json(&json!({"user_id": "alice", "province": "p", "city": "c", "area": "a", "detail_address": "d"}))
        .send()
        .expect_error(404, "ORDER_NOT_FOUND");
}

#[test]
fn state_conflicts_are_409() {
    let s = Server::start(Opts::demo());
    let a = Who::User("alice");
    // Over the coupon's threshold, so the order locks it.
    let created = s.create("alice", &[(TEA, 2)], Some("CPN-ALICE-10"));
    let open = created["order_id"].as_str().unwrap().to_owned();
    let (paid, _) = paid_order(&s, "alice", &[(TEA, 2)], "T-409");
    let (shipped, _) = paid_order(&s, "alice", &[(MUG, 1)], "T-409B");
    s.fulfill(&shipped, "FULFILLED").expect(200);
    s.fulfill(&shipped, "OUT_STOCK").expect(200);
    s.fulfill(&shipped, "DELIVERY").expect(200);
    let canceled = s.create("alice", &[(TEA, 1)], None)["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.post(&format!("/v1/orders/{canceled}/cancel"))
        .user("alice")
        .json(&json!({"user_id": "alice"}))
        .send()
        .expect(200);
    // An after-sale already reviewed.
    let r = s
        .post(&format!("/v1/orders/{paid}/after-sales"))
        .user("alice")
        .json(&json!({"user_id": "alice", "after_sale_type": 1, "items": [{"sku_code": TEA, "return_quantity": 1}], "reason": "r"}))
        .send();
    r.expect(201);
    let reviewed = r.json()["after_sale_id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/after-sales/{reviewed}/review"))
        .admin()
        .json(&json!({"approved": false, "remark": "no"}))
        .send()
        .expect(200);
    let apply = |order: &str, kind: i64, sku: &str| {
        case(
            "POST",
            format!("/v1/orders/{order}/after-sales"),
            Who::User("alice"),
            Some(
                json!({"user_id": "alice", "after_sale_type": kind, "items": [{"sku_code": sku, "return_quantity": 1}], "reason": "r"}),
            ),
            409,
            "AFTER_SALE_CANNOT_APPLY",
        )
    };
    let existed = {
        let mut b = s.create_body("alice", &[(TEA, 1)], None);
        b["order_id"] = json!(open);
        b
    };
    let cases = vec![
        case(
            "POST",
            "/v1/orders",
            a.clone(),
            Some(existed),
            409,
            "ORDER_EXISTED",
        ),
        case(
            "POST",
            format!("/v1/orders/{paid}/prepay"),
            a.clone(),
            Some(json!({"user_id": "alice", "pay_type": 10, "pay_amount": 8_800})),
            409,
            "ORDER_STATUS_CHANGED",
        ),
        case(
            "POST",
            format!("/v1/orders/{open}/fulfillment"),
            Who::Admin,
            Some(json!({"event": "FULFILLED"})),
            409,
            "ORDER_STATUS_CHANGED",
        ),
        case(
            "POST",
            format!("/v1/orders/{paid}/fulfillment"),
            Who::Admin,
            Some(json!({"event": "SIGNED"})),
            409,
            "ORDER_STATUS_CHANGED",
        ),
        case(
            "POST",
            format!("/v1/orders/{canceled}/cancel"),
            a.clone(),
            Some(json!({"user_id": "alice"})),
            409,
            "ORDER_CANNOT_CANCEL",
        ),
        case(
            "POST",
            format!("/v1/orders/{shipped}/cancel"),
            a.clone(),
            Some(json!({"user_id": "alice"})),
            409,
            "ORDER_CANNOT_CANCEL",
        ),
        case(
            "POST",
            format!("/v1/orders/{shipped}/cancel?dry_run=true"),
            a.clone(),
            Some(json!({"user_id": "alice"})),
            409,
            "ORDER_CANNOT_CANCEL",
        ),
        case(
            "POST",
            "/v1/orders/remove",
            a.clone(),
            Some(json!({"user_id": "alice", "order_ids": [canceled, open]})),
            409,
            "ORDER_CANNOT_REMOVE",
        ),
        case(
            "POST",
            "/v1/orders/remove",
            a.clone(),
            Some(json!({"user_id": "alice", "order_ids": [paid]})),
            409,
            "ORDER_CANNOT_REMOVE",
        ),
        case(
            "PUT",
            format!("/v1/orders/{shipped}/delivery-address"),
            a.clone(),
            Some(
                json!({"user_id": "alice", "province": "p", "city": "c", "area": "a", "detail_address": "d"}),
            ),
            409,
            "ORDER_NOT_ALLOW_TO_ADJUST_ADDRESS",
        ),
        case(
            "PUT",
            format!("/v1/orders/{canceled}/delivery-address"),
            a.clone(),
            Some(
                json!({"user_id": "alice", "province": "p", "city": "c", "area": "a", "detail_address": "d"}),
            ),
            409,
            "ORDER_NOT_ALLOW_TO_ADJUST_ADDRESS",
        ),
        case(
            "POST",
            format!("/v1/orders/{paid}/lack"),
            Who::Admin,
            Some(json!({"items": [{"sku_code": TEA, "lack_quantity": 1}]})),
            409,
            "ORDER_NOT_ALLOW_TO_LACK",
        ),
        case(
            "POST",
            format!("/v1/orders/{shipped}/lack"),
            Who::Admin,
            Some(json!({"items": [{"sku_code": MUG, "lack_quantity": 1}]})),
            409,
            "ORDER_NOT_ALLOW_TO_LACK",
        ),
        apply(&open, 1, TEA),
        apply(&canceled, 1, TEA),
        apply(&shipped, 1, MUG),
        apply(&paid, 2, TEA),
        case(
            "POST",
            format!("/v1/after-sales/{reviewed}/revoke"),
            a.clone(),
            Some(json!({"user_id": "alice"})),
            409,
            "AFTER_SALE_STATUS_CHANGED",
        ),
        case(
            "POST",
            format!("/v1/after-sales/{reviewed}/review"),
            Who::Admin,
            Some(json!({"approved": true, "remark": "yes"})),
            409,
            "AFTER_SALE_STATUS_CHANGED",
        ),
        case(
            "POST",
            format!("/v1/after-sales/{reviewed}/retry"),
            Who::Admin,
            None,
            409,
            "AFTER_SALE_STATUS_CHANGED",
        ),
        case(
            "POST",
            "/v1/refunds/callback",
            Who::Provider,
            Some(refund_body(&reviewed, 3_900, true)),
            409,
            "AFTER_SALE_STATUS_CHANGED",
        ),
        // Less total stock than orders hold; a coupon an order locked.
        case(
            "PUT",
            format!("/v1/skus/{TEA}"),
            Who::Admin,
            Some(sku_body(1, 3_900, 1)),
            409,
            "STOCK_BELOW_RESERVED",
        ),
        case(
            "POST",
            format!("/v1/skus/{TEA}/stock"),
            Who::Admin,
            Some(json!({"delta": -1_000})),
            409,
            "STOCK_BELOW_RESERVED",
        ),
        case(
            "PUT",
            "/v1/coupons/CPN-ALICE-10",
            Who::Admin,
            Some(
                json!({"user_id": "alice", "amount": 1, "threshold_amount": 0, "valid_from": "2020-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z"}),
            ),
            409,
            "COUPON_IN_USE",
        ),
    ];
    let checked = run(&s, &cases);
    assert!(checked >= 24);

    // IDEMPOTENCY_KEY_LIMIT: a family keeps 64 keys.
    for i in 0..64 {
        s.post(&format!("/v1/orders/{open}/notes"))
            .admin()
            .header("Idempotency-Key", &format!("note-key-{i}"))
            .json(&json!({"text": format!("note {i}")}))
            .send()
            .expect(201);
    }
    let version = s.order(&open)["version"].clone();
    s.post(&format!("/v1/orders/{open}/notes"))
        .admin()
        .header("Idempotency-Key", "note-key-64")
        .json(&json!({"text": "one too many"}))
        .send()
        .expect_error(409, "IDEMPOTENCY_KEY_LIMIT");
    // A recorded key still replays.
    let r = s
        .post(&format!("/v1/orders/{open}/notes"))
        .admin()
        .header("Idempotency-Key", "note-key-3")
        .json(&json!({"text": "note 3"}))
        .send();
    r.expect(201);
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
    assert_eq!(s.order(&open)["version"], version);
    // A new key beyond the limit answers it whatever the request, also one
    // that would change nothing (the address the order has): the key comes
    // before every rule (API.md).
    let delivery = s.order(&open)["delivery"].clone();
    let mut same = json!({"user_id": "alice"});
    for k in [
        "province",
        "city",
        "area",
        "street",
        "detail_address",
        "lon",
        "lat",
    ] {
        same[k] = delivery[k].clone();
    }
    s.put(&format!("/v1/orders/{open}/delivery-address"))
        .user("alice")
        .header("Idempotency-Key", "addr-full")
        .json(&same)
        .send()
        .expect_error(409, "IDEMPOTENCY_KEY_LIMIT");
    assert_eq!(s.order(&open)["version"], version);
}

/// `ORDER_CHANGE_LIMIT`: a family takes 1,000 edits (address changes,
/// prepays, notes); moves — a payment, fulfillment — go on past it.
#[test]
fn edits_past_their_limit_are_409_and_moves_go_on() {
    const EDITS: usize = 1_000;
    const THREADS: usize = 8;
    let s = Server::start(Opts::demo());
    let c = s.create("alice", &[(TEA, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    let pay = c["pay_amount"].as_i64().unwrap();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (s, id) = (&s, &id);
            scope.spawn(move || {
                let client = s.client();
                for i in (t..EDITS).step_by(THREADS) {
                    client
                        .req("POST", &format!("/v1/orders/{id}/notes"))
                        .admin()
                        .json(&json!({"text": format!("note {i}")}))
                        .send()
                        .expect(201);
                }
            });
        }
    });
    let version = s.order(&id)["version"].clone();
    assert_eq!(version, 1 + EDITS as i64);
    let address = json!({"user_id": "alice", "province": "Jiangsu", "city": "Suzhou",
                         "area": "Gusu", "detail_address": "No. 9"});
    let prepay = json!({"user_id": "alice", "pay_type": 10, "pay_amount": pay});
    let limited = [
        case(
            "POST",
            format!("/v1/orders/{id}/notes"),
            Who::Admin,
            Some(json!({"text": "one more"})),
            409,
            "ORDER_CHANGE_LIMIT",
        ),
        case(
            "PUT",
            format!("/v1/orders/{id}/delivery-address"),
            Who::User("alice"),
            Some(address),
            409,
            "ORDER_CHANGE_LIMIT",
        ),
        case(
            "POST",
            format!("/v1/orders/{id}/prepay"),
            Who::User("alice"),
            Some(prepay),
            409,
            "ORDER_CHANGE_LIMIT",
        ),
    ];
    assert_eq!(run(&s, &limited), 3);
    assert_eq!(
        s.order(&id)["version"],
        version,
        "a refused edit changed the order"
    );
    s.pay(&id, pay, "T-EDITS").expect(200);
    s.fulfill(&id, "FULFILLED").expect(200);
    assert_eq!(s.order(&id)["status"], 30);
}

#[test]
fn stale_if_match_is_412_and_changes_nothing() {
    let s = Server::start(Opts::demo());
    let c = s.create("alice", &[(TEA, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    let r = s.get(&format!("/v1/orders/{id}")).user("alice").send();
    let etag = r.header("etag").unwrap().to_owned();
    assert_eq!(etag, "\"1\"");
    // A change moves the version on.
    s.put(&format!("/v1/orders/{id}/delivery-address"))
        .user("alice")
        .header("If-Match", &etag)
        .json(&json!({"user_id": "alice", "province": "p", "city": "c", "area": "a", "detail_address": "d"}))
        .send()
        .expect(200);
    let mut checked = 0;
    let writes: Vec<(&str, String, Value, bool)> = vec![
        (
            "POST",
            format!("/v1/orders/{id}/cancel"),
            json!({"user_id": "alice"}),
            false,
        ),
        (
            "POST",
            format!("/v1/orders/{id}/cancel?dry_run=true"),
            json!({"user_id": "alice"}),
            false,
        ),
        (
            "PUT",
            format!("/v1/orders/{id}/delivery-address"),
            json!({"user_id": "alice", "province": "p", "city": "c", "area": "a", "detail_address": "e"}),
            false,
        ),
        (
            "POST",
            format!("/v1/orders/{id}/prepay"),
            json!({"user_id": "alice", "pay_type": 10, "pay_amount": 4_900}),
            false,
        ),
        (
            "POST",
            format!("/v1/orders/{id}/notes"),
            json!({"text": "n"}),
            true,
        ),
    ];
    for (method, path, body, admin) in writes {
        for stale in ["\"1\"", "1", "W/\"1\"", "\"99\""] {
            let mut r = s.req(method, &path).header("If-Match", stale);
            r = if admin { r.admin() } else { r.user("alice") };
            r.json(&body)
                .send()
                .expect_error(412, "ORDER_VERSION_MISMATCH");
            checked += 1;
        }
    }
    assert!(checked >= 20);
    let order = s.order(&id);
    assert_eq!(
        (order["version"].as_i64(), order["status"].as_i64()),
        (Some(2), Some(10))
    );
    // A weak tag never matches, even the current version's (strong
    // comparison), and changes nothing.
    s.post(&format!("/v1/orders/{id}/cancel"))
        .user("alice")
        .header("If-Match", "W/\"2\"")
        .json(&json!({"user_id": "alice"}))
        .send()
        .expect_error(412, "ORDER_VERSION_MISMATCH");
    assert_eq!(s.order(&id)["status"].as_i64(), Some(10));
    // The current version passes.
    s.post(&format!("/v1/orders/{id}/cancel"))
        .user("alice")
        .header("If-Match", "\"2\"")
        .json(&json!({"user_id": "alice"}))
        .send()
        .expect(200);
}

#[test]
fn oversize_bodies_are_413() {
    let s = Server::start(Opts::demo());
    let c = s.create("alice", &[(TEA, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    let mut body = s.create_body("alice", &[(TEA, 1)], None);
    body["user_remark"] = json!(long(70 * 1024));
    let big = serde_json::to_vec(&body).unwrap();
    let mut checked = 0;
    for (method, path) in [
        ("POST", "/v1/orders".to_owned()),
        ("POST", "/v1/orders/price".to_owned()),
        ("POST", format!("/v1/orders/{id}/notes")),
        ("PUT", "/v1/skus/SKU-BIG".to_owned()),
    ] {
        s.req(method, &path)
            .admin()
            .raw("application/json", big.clone())
            .send()
            .expect_error(413, "PAYLOAD_TOO_LARGE");
        checked += 1;
    }
    let sig = ordercore::auth::sign(PAYMENT_SECRET, &big);
    s.post("/v1/payments/callback")
        .header("X-Signature", &sig)
        .raw("application/json", big.clone())
        .send()
        .expect_error(413, "PAYLOAD_TOO_LARGE");
    checked += 1;
    // A body at the limit is read (and refused for what it says).
    let mut at_limit = s.create_body("alice", &[(TEA, 1)], None);
    at_limit["user_remark"] = json!(long(60 * 1024));
    s.post("/v1/orders")
        .user("alice")
        .json(&at_limit)
        .send()
        .expect_error(400, "TEXT_INVALID");
    // A declared length of 10 MB, of which the client sends 128 KiB: the
    // answer comes once the limit is passed, without the rest.
    let mut stream = std::net::TcpStream::connect(s.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n",
        user_token("alice")
    )
    .unwrap();
    let _ = stream.write_all(&vec![b' '; 128 * 1024]);
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&response).contains("PAYLOAD_TOO_LARGE") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("PAYLOAD_TOO_LARGE"), "{text}");
    checked += 1;
    assert!(checked >= 6);
    assert_eq!(s.all_orders(None).len(), 1);
}

#[test]
fn business_rules_are_422() {
    let s = Server::start(Opts::demo());
    let a = Who::User("alice");
    // Wrong REAL_PAY_AMOUNT or payment.
    let body = s.create_body("alice", &[(TEA, 1)], None);
    let mut wrong_real = body.clone();
    wrong_real["amounts"] = json!([{"amount_type": 50, "amount": 4_800}]);
    wrong_real["payments"][0]["pay_amount"] = json!(4_800);
    let mut wrong_payment = body.clone();
    wrong_payment["payments"][0]["pay_amount"] = json!(4_899);
    let mut wrong_origin = body.clone();
    wrong_origin["amounts"] =
        json!([{"amount_type": 10, "amount": 1}, {"amount_type": 50, "amount": 4_900}]);
    // More than the stock.
    let no_stock = s.create_body("alice", &[(LAMP, 301)], None);
    // A coupon of another user, a used coupon, an expired and a future one.
    s.put("/v1/coupons/CPN-OLD")
        .admin()
        .json(&json!({"user_id": "alice", "amount": 100, "threshold_amount": 0, "valid_from": "2020-01-01T00:00:00Z", "valid_to": "2021-01-01T00:00:00Z"}))
        .send()
        .expect(200);
    s.put("/v1/coupons/CPN-LATER")
        .admin()
        .json(&json!({"user_id": "alice", "amount": 100, "threshold_amount": 0, "valid_from": "2098-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z"}))
        .send()
        .expect(200);
    let used = s.create("alice", &[(MUG, 1)], Some("CPN-ALICE-10"));
    let used_id = used["order_id"].as_str().unwrap().to_owned();
    s.pay(&used_id, used["pay_amount"].as_i64().unwrap(), "T-422")
        .expect(200);
    let price_with = |coupon: &str| {
        Some(json!({"user_id": "alice", "items": lines(&[(MUG, 1)]), "coupon_id": coupon}))
    };
    let mut coupon_used = s.create_body("alice", &[(MUG, 1)], None);
    coupon_used["coupon_id"] = json!("CPN-ALICE-10");
    let unpaid = s.create("alice", &[(TEA, 1)], None)["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut cases = vec![
        case(
            "POST",
            "/v1/orders",
            a.clone(),
            Some(wrong_real),
            422,
            "ORDER_CHECK_REAL_PAY_AMOUNT_FAIL",
        ),
        case(
            "POST",
            "/v1/orders",
            a.clone(),
            Some(wrong_payment),
            422,
            "ORDER_CHECK_REAL_PAY_AMOUNT_FAIL",
        ),
        case(
            "POST",
            "/v1/orders",
            a.clone(),
            Some(wrong_origin),
            422,
            "ORDER_CHECK_REAL_PAY_AMOUNT_FAIL",
        ),
        case(
            "POST",
            "/v1/orders",
            a.clone(),
            Some(no_stock),
            422,
            "PRODUCT_STOCK_NOT_ENOUGH",
        ),
        case(
            "POST",
            "/v1/orders",
            a.clone(),
            Some(coupon_used),
            422,
            "USER_COUPON_IS_USED",
        ),
        case(
            "POST",
            "/v1/orders/price",
            a.clone(),
            price_with("CPN-ALICE-10"),
            422,
            "USER_COUPON_IS_USED",
        ),
        case(
            "POST",
            "/v1/orders/price",
            a.clone(),
            price_with("CPN-OLD"),
            422,
            "USER_COUPON_EXPIRED",
        ),
        case(
            "POST",
            "/v1/orders/price",
            a.clone(),
            price_with("CPN-LATER"),
            422,
            "USER_COUPON_NOT_STARTED",
        ),
        case(
            "POST",
            "/v1/payments/callback",
            Who::Provider,
            Some(pay_body(&unpaid, 4_899, "T-422-PAY")),
            422,
            "ORDER_PAY_AMOUNT_ERROR",
        ),
        case(
            "POST",
            format!("/v1/orders/{unpaid}/prepay"),
            a.clone(),
            Some(json!({"user_id": "alice", "pay_type": 10, "pay_amount": 1})),
            422,
            "ORDER_PAY_AMOUNT_ERROR",
        ),
        case(
            "POST",
            format!("/v1/orders/{used_id}/after-sales"),
            a.clone(),
            Some(
                json!({"user_id": "alice", "after_sale_type": 1, "items": [{"sku_code": MUG, "return_quantity": 2}], "reason": "r"}),
            ),
            422,
            "AFTER_SALE_QUANTITY_EXCEEDED",
        ),
        case(
            "POST",
            format!("/v1/orders/{used_id}/after-sales"),
            a.clone(),
            Some(
                json!({"user_id": "alice", "after_sale_type": 1, "items": [{"sku_code": TEA, "return_quantity": 1}], "reason": "r"}),
            ),
            400,
            "ORDER_ITEM_INVALID",
        ),
    ];
    // A refund callback for another amount.
    let r = s
        .post(&format!("/v1/orders/{used_id}/after-sales"))
        .user("alice")
        .json(&json!({"user_id": "alice", "after_sale_type": 1, "items": [{"sku_code": MUG, "return_quantity": 1}], "reason": "r"}))
        .send();
    r.expect(201);
    let after_sale = r.json()["after_sale_id"].as_str().unwrap().to_owned();
    let refund = r.json()["apply_refund_amount"].as_i64().unwrap();
    s.post(&format!("/v1/after-sales/{after_sale}/review"))
        .admin()
        .json(&json!({"approved": true, "remark": "ok"}))
        .send()
        .expect(200);
    cases.push(case(
        "POST",
        "/v1/refunds/callback",
        Who::Provider,
        Some(refund_body(&after_sale, refund - 1, true)),
        422,
        "REFUND_AMOUNT_MISMATCH",
    ));
    cases.push(case(
        "POST",
        "/v1/refunds/callback",
        Who::Provider,
        Some(refund_body(&after_sale, refund + 1, false)),
        422,
        "REFUND_AMOUNT_MISMATCH",
    ));
    let checked = run(&s, &cases);
    assert!(checked >= 14);
    // IDEMPOTENCY_KEY_REUSED: the same key with another body or path.
    let key = |path: String, body: Value| {
        s.post(&path)
            .user("alice")
            .header("Idempotency-Key", "k-422")
            .json(&body)
            .send()
    };
    key(
        format!("/v1/orders/{unpaid}/cancel"),
        json!({"user_id": "alice"}),
    )
    .expect(200);
    key(
        format!("/v1/orders/{unpaid}/cancel"),
        json!({"user_id": "alice", "cancel_type": 0}),
    )
    .expect_error(422, "IDEMPOTENCY_KEY_REUSED");
    key(
        format!("/v1/orders/{unpaid}/prepay"),
        json!({"user_id": "alice", "pay_type": 10, "pay_amount": 4_900}),
    )
    .expect_error(422, "IDEMPOTENCY_KEY_REUSED");
    // Refused creates reserved nothing.
    assert_eq!(s.sku(LAMP)["locked"], 0);
    assert_eq!(s.sku(TEA)["locked"], 0);
}

#[test]
fn over_the_rate_limit_is_429() {
    let s = Server::start(Opts::demo().flag("--risk-max-orders-per-user-per-min", "3"));
    for _ in 0..3 {
        s.create("zoe", &[(TEA, 1)], None);
    }
    let mut limited = 0;
    for _ in 0..3 {
        let body = s.create_body("zoe", &[(TEA, 1)], None);
        s.post("/v1/orders")
            .user("zoe")
            .json(&body)
            .send()
            .expect_error(429, "ORDER_RATE_LIMITED");
        limited += 1;
    }
    assert!(limited > 0);
    // Another user is not limited; nothing was reserved by refused creates.
    s.create("yuri", &[(TEA, 1)], None);
    assert_eq!(s.sku(TEA)["locked"], 4);
}

#[test]
fn request_ids_that_do_not_parse_are_replaced() {
    let s = Server::start(Opts::demo());
    let too_long = long(200);
    let r = s.get("/healthz").header("X-Request-Id", &too_long).send();
    let echoed = r.header("x-request-id").unwrap();
    assert!(!echoed.is_empty() && echoed != too_long, "{echoed}");
    // Raw socket: a header that is not ASCII.
    let mut stream = std::net::TcpStream::connect(s.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(
            b"GET /v1/skus HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: \xe8\xae\xa2\xe5\x8d\x95\r\nIdempotency-Key: \xff\r\n\r\n",
        )
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("x-request-id: req-"),
        "{response}"
    );
}

/// Garbage through every route: no 500, every error `{code, message}`.
#[test]
fn no_input_produces_a_500() {
    let s = Server::start(Opts::demo());
    let c = s.create("alice", &[(TEA, 1)], None);
    let id = c["order_id"].as_str().unwrap().to_owned();
    let before = ERROR_BODIES_CHECKED.load(Ordering::Relaxed);
    let ids = [
        id.clone(),
        "%00".to_owned(),
        "%FF%FE".to_owned(),
        "..%2F..%2Fetc".to_owned(),
        "%E8%AE%A2%E5%8D%95".to_owned(),
        long(300),
        format!("{}{}", &id[..31], "!"),
        "0".repeat(32),
        "9".repeat(32),
    ];
    let bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"{}".to_vec(),
        b"null".to_vec(),
        b"{\"user_id\":null}".to_vec(),
        b"{\"user_id\":\"alice\",\"items\":[{\"sku_code\":\"\\u0000\",\"sale_quantity\":1}]}".to_vec(),
        b"{\"user_id\":\"alice\",\"items\":null,\"order_ids\":[\"\"],\"text\":\"\\ud800\"}".to_vec(),
        b"{\"delta\":-9223372036854775808}".to_vec(),
        b"{\"delta\":9223372036854775807}".to_vec(),
        b"{\"event\":\"TELEPORTED\"}".to_vec(),
        b"{\"approved\":true,\"remark\":\"\"}".to_vec(),
        br#"{"user_id":"alice","pay_type":10,"pay_amount":9223372036854775807}"#.to_vec(),
        br#"{"user_id":"alice","after_sale_type":1,"items":[],"reason":""}"#.to_vec(),
        br#"{"user_id":"alice","province":"","city":"","area":"","detail_address":"","lon":1e308,"lat":-1e308}"#.to_vec(),
        br#"{"order_id":"x","out_trade_no":"","pay_type":10,"pay_amount":0,"trade_no":"t","paid_at":"9999-99-99T00:00:00Z"}"#.to_vec(),
        vec![b'['; 200],
    ];
    let templates: [(&str, &str, bool); 21] = [
        ("POST", "/v1/order-ids", false),
        ("POST", "/v1/orders/price", false),
        ("POST", "/v1/orders", false),
        ("POST", "/v1/orders/remove", false),
        ("GET", "/v1/orders/{}", false),
        ("GET", "/v1/orders/{}/events", false),
        ("POST", "/v1/orders/{}/prepay", false),
        ("POST", "/v1/orders/{}/cancel", false),
        ("PUT", "/v1/orders/{}/delivery-address", false),
        ("POST", "/v1/orders/{}/fulfillment", true),
        ("POST", "/v1/orders/{}/notes", true),
        ("POST", "/v1/orders/{}/after-sales", false),
        ("POST", "/v1/orders/{}/lack", true),
        ("GET", "/v1/after-sales/{}", true),
        ("POST", "/v1/after-sales/{}/revoke", false),
        ("POST", "/v1/after-sales/{}/review", true),
        ("POST", "/v1/after-sales/{}/retry", true),
        ("PUT", "/v1/skus/{}", true),
        ("POST", "/v1/skus/{}/stock", true),
        ("PUT", "/v1/coupons/{}", true),
        ("GET", "/v1/users/{}/orders", false),
    ];
    let mut sent = 0;
    for (method, template, admin) in templates {
        let paths: Vec<String> = if template.contains("{}") {
            ids.iter().map(|i| template.replace("{}", i)).collect()
        } else {
            vec![template.to_owned()]
        };
        for path in &paths {
            for body in &bodies {
                let mut r = s.req(method, path);
                r = if admin { r.admin() } else { r.user("alice") };
                if method != "GET" {
                    r = r.raw("application/json", body.clone());
                }
                let resp = r.send();
                assert!(
                    resp.status < 500,
                    "{method} {path}: {} {}",
                    resp.status,
                    resp.body
                );
                sent += 1;
            }
        }
    }
    for path in ["/v1/payments/callback", "/v1/refunds/callback"] {
        for body in &bodies {
            let sig = ordercore::auth::sign(PAYMENT_SECRET, body);
            let resp = s
                .post(path)
                .header("X-Signature", &sig)
                .raw("application/json", body.clone())
                .send();
            assert!(resp.status < 500, "{path}: {} {}", resp.status, resp.body);
            sent += 1;
        }
    }
    let errors = ERROR_BODIES_CHECKED.load(Ordering::Relaxed) - before;
    assert!(sent > 1_000, "{sent}");
    assert!(errors > 1_000, "{errors} error bodies checked");
    // The server is still healthy and the order untouched.
    s.get("/readyz").send().expect(200);
    assert_eq!(s.order(&id)["status"], 10);
}
