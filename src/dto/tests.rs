use super::*;
use crate::error::{parse_json, ApiError};
use actix_web::web::Query;
use ordercore_domain::codes::{
    AmountType, BusinessIdentifier, CancelType, DeliveryType, OrderStatus, OrderType, PayType,
};
use ordercore_domain::testkit::{self, Shop};
use ordercore_domain::{Action, ErrorCode, Money, OrderFamily};
use serde_json::{json, Value};

fn code<T: std::fmt::Debug>(result: Result<T, ApiError>) -> ErrorCode {
    result.unwrap_err().code()
}

/// A valid create body for `order_id` of user `u1`: A1 × 2 (3000 each)
/// with the default shipping fee, 7000 to pay.
fn create_body(order_id: &str) -> Value {
    json!({
        "order_id": order_id,
        "user_id": "u1",
        "business_identifier": 1,
        "order_type": 1,
        "user_remark": "leave at the door",
        "delivery": {
            "delivery_type": 1,
            "receiver_name": "Li Lei",
            "receiver_phone": "13800000000",
            "province": "Zhejiang",
            "city": "Hangzhou",
            "area": "Xihu",
            "detail_address": "1 Wensan Road",
            "lon": 120.1,
            "lat": 30.2
        },
        "items": [{"sku_code": "A1", "sale_quantity": 2}],
        "amounts": [
            {"amount_type": 10, "amount": 6000},
            {"amount_type": 20, "amount": 0},
            {"amount_type": 30, "amount": 1000},
            {"amount_type": 50, "amount": 7000}
        ],
        "payments": [{"pay_type": 10, "pay_amount": 7000}]
    })
}

fn create_request(body: &Value) -> CreateOrderRequest {
    serde_json::from_value(body.clone()).unwrap()
}

/// The code `into_command` answers after `edit` changed a valid body.
fn create_code(edit: impl FnOnce(&mut Value)) -> ErrorCode {
    let id = Shop::default().order_id("u1");
    let mut body = create_body(id.as_str());
    edit(&mut body);
    code(create_request(&body).into_command())
}

#[test]
fn unknown_fields_are_refused_everywhere() {
    let id = Shop::default().order_id("u1");
    let mut body = create_body(id.as_str());
    body["coupon"] = json!("C1");
    let err = parse_json::<CreateOrderRequest>(body.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::INVALID_REQUEST);
    assert!(err.message().contains("`coupon`"), "{}", err.message());

    let mut nested = create_body(id.as_str());
    nested["delivery"]["zip"] = json!("310000");
    assert!(parse_json::<CreateOrderRequest>(nested.to_string().as_bytes()).is_err());
    let mut line = create_body(id.as_str());
    line["items"][0]["price"] = json!(1);
    assert!(parse_json::<CreateOrderRequest>(line.to_string().as_bytes()).is_err());

    assert!(
        parse_json::<PrepayRequest>(br#"{"user_id":"u1","pay_type":10,"pay_amount":1,"x":1}"#)
            .is_err()
    );
    assert!(parse_json::<CancelRequest>(br#"{"user_id":"u1","reason":"no"}"#).is_err());
    assert!(parse_json::<NoteRequest>(br#"{"text":"t","author":"me"}"#).is_err());
    assert!(parse_json::<ReviewRequest>(br#"{"approved":true,"remark":"ok","by":"x"}"#).is_err());
    assert!(parse_json::<StockDeltaRequest>(br#"{"delta":1,"reason":"x"}"#).is_err());
    assert!(Query::<UserOrdersQuery>::from_query("page_size=5&sort=asc").is_err());
    assert!(Query::<EventsQuery>::from_query("after=1&limt=5").is_err());
}

#[test]
fn wrong_types_are_refused() {
    for json in [
        r#"{"user_id":"u1","pay_type":"10","pay_amount":1}"#,
        r#"{"user_id":"u1","pay_type":10,"pay_amount":1.5}"#,
        r#"{"user_id":1,"pay_type":10,"pay_amount":1}"#,
        r#"{"user_id":"u1","pay_type":10}"#,
        r#"{"user_id":"u1","pay_type":10,"pay_amount":99999999999999999999}"#,
        r#""u1""#,
        r#"{"user_id":"u1","pay_type":10,"pay_amount":1"#,
    ] {
        let err = parse_json::<PrepayRequest>(json.as_bytes()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::INVALID_REQUEST, "{json}");
    }
    assert!(parse_json::<ReviewRequest>(br#"{"approved":"yes","remark":"ok"}"#).is_err());
    assert!(parse_json::<FulfillmentRequest>(br#"{"event":"SHIPPED"}"#).is_err());
    assert!(parse_json::<FulfillmentRequest>(br#"{"event":30}"#).is_err());
}

#[test]
fn a_create_request_becomes_the_create_command() {
    let mut shop = Shop::default();
    let id = shop.order_id("u1");
    let command = create_request(&create_body(id.as_str()))
        .into_command()
        .unwrap();
    assert_eq!(command.order_id, id);
    assert_eq!(command.user_id.as_str(), "u1");
    assert_eq!(command.business_identifier, BusinessIdentifier::SELF_MALL);
    assert_eq!(command.order_type, OrderType::NORMAL);
    assert_eq!(command.delivery.delivery_type, DeliveryType::SELF);
    assert_eq!(command.delivery.address.lon, Some(120.1));
    assert_eq!(command.items, vec![(testkit::sku_code("A1"), 2)]);
    assert_eq!(
        command.amounts[3],
        (AmountType::REAL_PAY_AMOUNT, Money::from_minor(7_000))
    );
    assert_eq!(
        command.payments,
        vec![(PayType::WECHAT_PAY, Money::from_minor(7_000))]
    );
    assert_eq!(command.user_remark.as_deref(), Some("leave at the door"));
    // The core accepts it as it is.
    let events = shop
        .decide_create(&command, &testkit::shopper("u1"))
        .unwrap();
    let family = OrderFamily::create(&events[0]).unwrap();
    assert_eq!(family.fingerprint, command.fingerprint);
    assert_eq!(family.amounts.real_pay, Money::from_minor(7_000));
}

#[test]
fn equal_create_bodies_have_equal_fingerprints_and_different_ones_do_not() {
    let id = Shop::default().order_id("u1");
    let body = create_body(id.as_str());
    let fingerprint = |json: &str| {
        parse_json::<CreateOrderRequest>(json.as_bytes())
            .unwrap()
            .into_command()
            .unwrap()
            .fingerprint
    };
    let compact = body.to_string();
    let pretty = serde_json::to_string_pretty(&body).unwrap();
    // Keys in another order, an explicit null for an absent field, and an
    // escaped character: the same request.
    let reordered = compact
        .replacen("{\"amounts\"", "{\"seller_id\":null,\"amounts\"", 1)
        .replace("Li Lei", "\\u004ci Lei");
    assert_ne!(compact, reordered);
    assert_eq!(fingerprint(&compact), fingerprint(&pretty));
    assert_eq!(fingerprint(&compact), fingerprint(&reordered));
    // Stable across processes and builds: FNV-1a of the canonical JSON.
    let canonical = serde_json::to_vec(&create_request(&body)).unwrap();
    assert_eq!(fingerprint(&compact), fnv1a_64(&canonical));
    assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);

    let mut more = body.clone();
    more["items"][0]["sale_quantity"] = json!(3);
    let mut remark = body.clone();
    remark["user_remark"] = json!("ring the bell");
    let mut other_order = body.clone();
    let mut shop = Shop::default();
    shop.order_id("u1");
    other_order["order_id"] = json!(shop.order_id("u1").as_str());
    for changed in [more, remark, other_order] {
        assert_ne!(fingerprint(&compact), fingerprint(&changed.to_string()));
    }
}

/// A change to a valid create body.
type Edit = Box<dyn FnOnce(&mut Value)>;

#[test]
fn every_create_field_is_checked_with_its_code() {
    let other_user = Shop::default().order_id("u2");
    let sub_order = Shop::default()
        .order_id("u1")
        .sub_order_id(ordercore_domain::codes::ProductType::NORMAL_PRODUCT);
    let cases: Vec<(ErrorCode, Edit)> = vec![
        (
            ErrorCode::ORDER_ID_IS_NULL,
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("order_id");
            }),
        ),
        (
            ErrorCode::ORDER_ID_IS_NULL,
            Box::new(|b| b["order_id"] = json!("")),
        ),
        (
            ErrorCode::ORDER_ID_INVALID,
            Box::new(|b| b["order_id"] = json!("12345")),
        ),
        (
            ErrorCode::ORDER_ID_INVALID,
            Box::new(move |b| b["order_id"] = json!(other_user.as_str())),
        ),
        (
            ErrorCode::ORDER_ID_INVALID,
            Box::new(move |b| b["order_id"] = json!(sub_order.as_str())),
        ),
        (
            ErrorCode::USER_ID_INVALID,
            Box::new(|b| b["user_id"] = json!("u 1")),
        ),
        (
            ErrorCode::BUSINESS_IDENTIFIER_ERROR,
            Box::new(|b| b["business_identifier"] = json!(2)),
        ),
        (
            ErrorCode::ORDER_TYPE_ERROR,
            Box::new(|b| b["order_type"] = json!(0)),
        ),
        (
            ErrorCode::INVALID_REQUEST,
            Box::new(|b| b["seller_id"] = json!("s/1")),
        ),
        (
            ErrorCode::COUPON_ID_INVALID,
            Box::new(|b| b["coupon_id"] = json!("")),
        ),
        (
            ErrorCode::TEXT_INVALID,
            Box::new(|b| b["user_remark"] = json!("")),
        ),
        (
            ErrorCode::DELIVERY_TYPE_ERROR,
            Box::new(|b| b["delivery"]["delivery_type"] = json!(2)),
        ),
        (
            ErrorCode::DELIVERY_ADDRESS_INVALID,
            Box::new(|b| b["delivery"]["receiver_phone"] = json!("call me")),
        ),
        (
            ErrorCode::DELIVERY_ADDRESS_INVALID,
            Box::new(|b| b["delivery"]["lat"] = json!(91.0)),
        ),
        (
            ErrorCode::SKU_CODE_INVALID,
            Box::new(|b| b["items"][0]["sku_code"] = json!("A 1")),
        ),
        (
            ErrorCode::ORDER_ITEM_INVALID,
            Box::new(|b| b["items"][0]["sale_quantity"] = json!(0)),
        ),
        (
            ErrorCode::ORDER_ITEM_INVALID,
            Box::new(|b| b["items"][0]["sale_quantity"] = json!(10_000)),
        ),
        (
            ErrorCode::ORDER_ITEM_INVALID,
            Box::new(|b| b["items"] = json!([])),
        ),
        (
            ErrorCode::ORDER_ITEM_INVALID,
            Box::new(
                |b| b["items"] = json!([{"sku_code": "A1", "sale_quantity": 1}, {"sku_code": "A1", "sale_quantity": 1}]),
            ),
        ),
        (
            ErrorCode::AMOUNT_TYPE_ERROR,
            Box::new(|b| b["amounts"][0]["amount_type"] = json!(40)),
        ),
        (
            ErrorCode::AMOUNT_TYPE_ERROR,
            Box::new(|b| b["amounts"][0]["amount_type"] = json!(20)),
        ),
        (
            ErrorCode::AMOUNT_TYPE_ERROR,
            Box::new(|b| b["amounts"] = json!([{"amount_type": 10, "amount": 6000}])),
        ),
        (
            ErrorCode::AMOUNT_INVALID,
            Box::new(|b| b["amounts"][3]["amount"] = json!(-1)),
        ),
        (
            ErrorCode::PAY_TYPE_ERROR,
            Box::new(|b| b["payments"][0]["pay_type"] = json!(30)),
        ),
        (
            ErrorCode::PAY_TYPE_ERROR,
            Box::new(|b| b["payments"] = json!([])),
        ),
        (
            ErrorCode::PAY_TYPE_ERROR,
            Box::new(|b| {
                let payment = b["payments"][0].clone();
                b["payments"] = json!([payment.clone(), payment]);
            }),
        ),
        (
            ErrorCode::AMOUNT_INVALID,
            Box::new(|b| b["payments"][0]["pay_amount"] = json!(-5)),
        ),
    ];
    for (i, (expected, edit)) in cases.into_iter().enumerate() {
        assert_eq!(create_code(edit), expected, "case {i}");
    }
}

#[test]
fn order_actions_are_checked_with_their_codes() {
    let id = Shop::default().order_id("u1");
    let prepay = |json: Value| {
        serde_json::from_value::<PrepayRequest>(json)
            .unwrap()
            .into_action(id)
    };
    let action = prepay(json!({"user_id": "u1", "pay_type": 20, "pay_amount": 7000})).unwrap();
    assert_eq!(action.user_id.as_str(), "u1");
    assert!(matches!(
        action.action,
        Action::PrePay {
            pay_type: PayType::ALI_PAY,
            ..
        }
    ));
    assert_eq!(
        code(prepay(
            json!({"user_id": "u1", "pay_type": 11, "pay_amount": 1})
        )),
        ErrorCode::PAY_TYPE_ERROR
    );
    assert_eq!(
        code(prepay(
            json!({"user_id": "", "pay_type": 10, "pay_amount": 1})
        )),
        ErrorCode::USER_ID_INVALID
    );

    let callback = |edit: fn(&mut Value)| {
        let mut body = json!({
            "order_id": id.as_str(), "out_trade_no": id.as_str(), "pay_type": 10,
            "pay_amount": 7000, "trade_no": "T-1", "paid_at": "2026-01-01T00:00:00+08:00"
        });
        edit(&mut body);
        serde_json::from_value::<PayCallbackRequest>(body)
            .unwrap()
            .into_action()
    };
    match callback(|_| {}).unwrap() {
        Action::PayCallback {
            paid_at, order_id, ..
        } => {
            assert_eq!(order_id, id);
            assert_eq!(paid_at.to_rfc3339(), "2025-12-31T16:00:00.000Z");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(callback(|b| b["trade_no"] = json!(""))),
        ErrorCode::TRADE_NO_INVALID
    );
    assert_eq!(
        code(callback(|b| b["out_trade_no"] = json!("a b"))),
        ErrorCode::TRADE_NO_INVALID
    );
    assert_eq!(
        code(callback(|b| b["paid_at"] = json!("yesterday"))),
        ErrorCode::TIME_INVALID
    );
    assert_eq!(
        code(callback(|b| b["order_id"] = json!("x"))),
        ErrorCode::ORDER_ID_INVALID
    );
    assert_eq!(
        code(callback(|b| b["pay_amount"] = json!(-1))),
        ErrorCode::AMOUNT_INVALID
    );

    let cancel = |json: Value| {
        serde_json::from_value::<CancelRequest>(json)
            .unwrap()
            .into_action(id)
    };
    assert!(matches!(
        cancel(json!({"user_id": "u1"})).unwrap().action,
        Action::Cancel {
            cancel_type: CancelType::USER_CANCELED,
            ..
        }
    ));
    assert!(matches!(
        cancel(json!({"user_id": "u1", "cancel_type": 2}))
            .unwrap()
            .action,
        Action::Cancel {
            cancel_type: CancelType::CUSTOMER_CANCELED,
            ..
        }
    ));
    assert_eq!(
        code(cancel(json!({"user_id": "u1", "cancel_type": 5}))),
        ErrorCode::CANCEL_TYPE_ERROR
    );

    let address = |json: Value| {
        serde_json::from_value::<AddressRequest>(json)
            .unwrap()
            .into_action(id)
    };
    let ok =
        json!({"user_id": "u1", "province": "P", "city": "C", "area": "A", "detail_address": "D"});
    assert!(matches!(
        address(ok.clone()).unwrap().action,
        Action::AdjustAddress { .. }
    ));
    let mut bad = ok;
    bad["city"] = json!("  ");
    assert_eq!(code(address(bad)), ErrorCode::DELIVERY_ADDRESS_INVALID);

    let remove = |json: Value| {
        serde_json::from_value::<RemoveRequest>(json)
            .unwrap()
            .parse()
    };
    let batch = remove(json!({"user_id": "u1", "order_ids": [id.as_str(), id.as_str()]})).unwrap();
    assert_eq!(batch.order_ids, vec![id]);
    assert_eq!(
        code(remove(json!({"user_id": "u1", "order_ids": []}))),
        ErrorCode::INVALID_REQUEST
    );
    let many: Vec<&str> = vec![id.as_str(); 101];
    assert_eq!(
        code(remove(json!({"user_id": "u1", "order_ids": many}))),
        ErrorCode::INVALID_REQUEST
    );
    assert_eq!(
        code(remove(json!({"user_id": "u1", "order_ids": ["bad"]}))),
        ErrorCode::ORDER_ID_INVALID
    );

    let note = |text: &str| NoteRequest { text: text.into() }.into_action(id);
    assert!(note("called the shopper").is_ok());
    assert_eq!(code(note("")), ErrorCode::TEXT_INVALID);
    assert_eq!(code(note(&"x".repeat(2_001))), ErrorCode::TEXT_INVALID);

    let fulfill: FulfillmentRequest =
        serde_json::from_value(json!({"event": "OUT_STOCK", "logistics_code": "SF1"})).unwrap();
    assert!(matches!(
        fulfill.into_action(id),
        Action::Fulfill {
            event: ordercore_domain::codes::FulfillmentEvent::OUT_STOCK,
            ..
        }
    ));

    let order_ids = serde_json::from_value::<OrderIdRequest>(
        json!({"user_id": "u1", "business_identifier": 1}),
    )
    .unwrap()
    .parse()
    .unwrap();
    assert_eq!(order_ids.1, BusinessIdentifier::SELF_MALL);
    assert_eq!(
        code(
            OrderIdRequest {
                user_id: "u1".into(),
                business_identifier: 9
            }
            .parse()
        ),
        ErrorCode::BUSINESS_IDENTIFIER_ERROR
    );

    let price = |json: Value| {
        serde_json::from_value::<PriceRequest>(json)
            .unwrap()
            .parse()
    };
    let basket = price(json!({"user_id": "u1", "items": [{"sku_code": "A1", "sale_quantity": 1}], "coupon_id": "C1"})).unwrap();
    assert_eq!(basket.coupon_id.unwrap().as_str(), "C1");
    assert_eq!(
        code(price(json!({"user_id": "u1", "items": []}))),
        ErrorCode::ORDER_ITEM_INVALID
    );
    assert_eq!(
        code(price(
            json!({"user_id": "u1", "items": [{"sku_code": "A1", "sale_quantity": 1}], "coupon_id": "C 1"})
        )),
        ErrorCode::COUPON_ID_INVALID
    );
}

#[test]
fn after_sale_requests_are_checked_with_their_codes() {
    let id = Shop::default().order_id("u1");
    let after_sale = id.after_sale_id(1).unwrap();
    let apply = |json: Value| {
        serde_json::from_value::<AfterSaleApplyRequest>(json)
            .unwrap()
            .into_action(id)
    };
    let ok = apply(
        json!({"user_id": "u1", "after_sale_type": 2, "items": [{"sku_code": "A1", "return_quantity": 1}], "reason": "broken"}),
    );
    assert!(
        matches!(ok.unwrap().action, Action::ApplyAfterSale { ref images, .. } if images.is_empty())
    );
    assert_eq!(
        code(apply(
            json!({"user_id": "u1", "after_sale_type": 3, "items": [{"sku_code": "A1", "return_quantity": 1}], "reason": "r"})
        )),
        ErrorCode::AFTER_SALE_TYPE_ERROR
    );
    assert_eq!(
        code(apply(
            json!({"user_id": "u1", "after_sale_type": 1, "items": [{"sku_code": "A1", "return_quantity": 0}], "reason": "r"})
        )),
        ErrorCode::ORDER_ITEM_INVALID
    );

    let revoke = RevokeRequest {
        user_id: "u1".into(),
    }
    .into_action(after_sale)
    .unwrap();
    assert_eq!(
        revoke.action,
        Action::RevokeAfterSale {
            after_sale_id: after_sale
        }
    );
    assert_eq!(
        retry_action(after_sale),
        Action::RetryRefund {
            after_sale_id: after_sale
        }
    );
    let review = ReviewRequest {
        approved: false,
        remark: "no".into(),
    }
    .into_action(after_sale);
    assert!(matches!(
        review,
        Action::ReviewAfterSale {
            approved: false,
            ..
        }
    ));

    let refund = |edit: &dyn Fn(&mut Value)| {
        let mut body = json!({"after_sale_id": after_sale.as_str(), "refund_amount": 100, "success": true, "refunded_at": "2026-01-01T00:00:00Z"});
        edit(&mut body);
        serde_json::from_value::<RefundCallbackRequest>(body)
            .unwrap()
            .into_action()
    };
    let (routed, action) = refund(&|_| {}).unwrap();
    assert_eq!(routed, after_sale);
    assert!(matches!(action, Action::RefundResult { success: true, .. }));
    assert_eq!(
        code(refund(&|b| b["after_sale_id"] = json!(id.as_str()))),
        ErrorCode::AFTER_SALE_ID_INVALID
    );
    assert_eq!(
        code(refund(&|b| b["refunded_at"] = json!("2026-13-01T00:00:00Z"))),
        ErrorCode::TIME_INVALID
    );
    assert_eq!(
        code(refund(&|b| b["refund_amount"] = json!(-1))),
        ErrorCode::AMOUNT_INVALID
    );

    let lack = |json: Value| {
        serde_json::from_value::<LackRequest>(json)
            .unwrap()
            .into_action(id)
    };
    assert!(lack(json!({"items": [{"sku_code": "A1", "lack_quantity": 1}]})).is_ok());
    assert_eq!(
        code(lack(
            json!({"items": [{"sku_code": "A1", "lack_quantity": -1}]})
        )),
        ErrorCode::ORDER_ITEM_INVALID
    );
    assert_eq!(
        code(lack(
            json!({"items": [{"sku_code": "", "lack_quantity": 1}]})
        )),
        ErrorCode::SKU_CODE_INVALID
    );
}

#[test]
fn catalog_requests_are_checked_with_their_codes() {
    let sku = testkit::sku_code("A9");
    let upsert = |edit: fn(&mut Value)| {
        let mut body = json!({"product_id": "p-9", "product_name": "Tea", "product_type": 2, "sale_price": 1200,
            "purchase_price": 600, "product_unit": "box", "seller_id": "seller-1", "stock": 50});
        edit(&mut body);
        serde_json::from_value::<SkuUpsertRequest>(body)
            .unwrap()
            .into_details(sku.clone())
    };
    let (details, stock) = upsert(|_| {}).unwrap();
    assert_eq!(
        details.product_type,
        ordercore_domain::codes::ProductType::ADVANCE_SALE
    );
    assert_eq!((details.sale_price.minor(), stock), (1_200, 50));
    assert_eq!(
        code(upsert(|b| b["product_type"] = json!(3))),
        ErrorCode::PRODUCT_TYPE_ERROR
    );
    assert_eq!(
        code(upsert(|b| b["product_name"] = json!(""))),
        ErrorCode::SKU_INVALID
    );
    assert_eq!(
        code(upsert(|b| b["stock"] = json!(-1))),
        ErrorCode::SKU_INVALID
    );
    assert_eq!(
        code(upsert(|b| b["sale_price"] = json!(-1))),
        ErrorCode::AMOUNT_INVALID
    );
    assert_eq!(
        code(upsert(|b| b["product_id"] = json!("p 9"))),
        ErrorCode::INVALID_REQUEST
    );

    let coupon_id = parse_coupon_id("C9").unwrap();
    let issue = |edit: fn(&mut Value)| {
        let mut body = json!({"user_id": "u1", "amount": 500, "threshold_amount": 3000,
            "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2026-02-01T00:00:00Z"});
        edit(&mut body);
        serde_json::from_value::<CouponIssueRequest>(body)
            .unwrap()
            .into_details(coupon_id.clone())
    };
    assert_eq!(issue(|_| {}).unwrap().amount.minor(), 500);
    assert_eq!(
        code(issue(|b| b["valid_to"] = json!("soon"))),
        ErrorCode::TIME_INVALID
    );
    assert_eq!(
        code(issue(|b| b["user_id"] = json!(""))),
        ErrorCode::USER_ID_INVALID
    );
    assert_eq!(
        code(issue(|b| b["threshold_amount"] = json!(-3))),
        ErrorCode::AMOUNT_INVALID
    );

    assert_eq!(code(parse_sku_code("")), ErrorCode::SKU_CODE_INVALID);
    assert_eq!(code(parse_order_id("")), ErrorCode::ORDER_ID_IS_NULL);
    assert_eq!(
        code(parse_after_sale_id("x")),
        ErrorCode::AFTER_SALE_ID_INVALID
    );
    assert_eq!(code(parse_user_id("a/b")), ErrorCode::USER_ID_INVALID);
}

#[test]
fn listing_queries_have_defaults_bounds_and_codes() {
    let user = |q: &str| {
        Query::<UserOrdersQuery>::from_query(q)
            .unwrap()
            .into_inner()
            .parse()
    };
    let filter = user("").unwrap();
    assert_eq!(filter.page.size, 20);
    assert_eq!((filter.status, filter.page.cursor), (None, None));
    // Empty values, as API.md writes the query, mean absent.
    assert_eq!(user("status=&page_size=&cursor=").unwrap(), filter);
    let id = Shop::default().order_id("u1");
    let filter = user(&format!("status=20&page_size=100&cursor={id}")).unwrap();
    assert_eq!(filter.status, Some(OrderStatus::PAID));
    assert_eq!((filter.page.size, filter.page.cursor), (100, Some(id)));
    for bad in [
        "page_size=0",
        "page_size=101",
        "page_size=ten",
        "page_size=-1",
    ] {
        assert_eq!(code(user(bad)), ErrorCode::PAGE_SIZE_INVALID, "{bad}");
    }
    assert_eq!(code(user("cursor=zzz")), ErrorCode::CURSOR_INVALID);
    // A page that ended inside a mixed family goes on from its sub-order.
    let sub = id.sub_order_id(ordercore_domain::codes::ProductType::NORMAL_PRODUCT);
    let filter = user(&format!("cursor={sub}")).unwrap();
    assert_eq!(filter.page.cursor, Some(sub));
    assert_eq!(code(user("status=11")), ErrorCode::INVALID_REQUEST);
    assert_eq!(code(user("status=paid")), ErrorCode::INVALID_REQUEST);

    let admin = |q: &str| {
        Query::<AdminOrdersQuery>::from_query(q)
            .unwrap()
            .into_inner()
            .parse()
    };
    let filter =
        admin("created_from=2026-01-01T00:00:00Z&created_to=2026-01-02T00:00:00%2B08:00&status=10")
            .unwrap();
    let t0 = testkit::t0();
    assert!(filter.accepts(OrderStatus::CREATED, t0));
    assert!(!filter.accepts(OrderStatus::PAID, t0));
    assert!(!filter.accepts(OrderStatus::CREATED, t0.plus_millis(-1)));
    assert_eq!(
        code(admin("created_from=yesterday")),
        ErrorCode::TIME_INVALID
    );
    assert_eq!(
        code(admin(
            "created_from=2026-01-02T00:00:00Z&created_to=2026-01-01T00:00:00Z"
        )),
        ErrorCode::TIME_INVALID
    );
    let page = Query::<PageQuery>::from_query("page_size=7")
        .unwrap()
        .into_inner()
        .parse()
        .unwrap();
    assert_eq!(page.size, 7);

    let events = |q: &str| {
        Query::<EventsQuery>::from_query(q)
            .unwrap()
            .into_inner()
            .parse()
    };
    assert_eq!(
        events("").unwrap(),
        EventRange {
            after: 0,
            limit: EVENTS_LIMIT_DEFAULT
        }
    );
    assert_eq!(
        events("after=42&limit=1000").unwrap(),
        EventRange {
            after: 42,
            limit: 1_000
        }
    );
    assert_eq!(code(events("limit=0")), ErrorCode::PAGE_SIZE_INVALID);
    assert_eq!(code(events("limit=1001")), ErrorCode::PAGE_SIZE_INVALID);
    assert_eq!(code(events("after=-1")), ErrorCode::CURSOR_INVALID);
    let stream = |q: &str| {
        Query::<StreamQuery>::from_query(q)
            .unwrap()
            .into_inner()
            .parse()
    };
    assert_eq!(stream("after=9").unwrap(), 9);
    assert_eq!(code(stream("after=x")), ErrorCode::CURSOR_INVALID);

    let dry = |q: &str| {
        Query::<DryRunQuery>::from_query(q)
            .unwrap()
            .into_inner()
            .parse()
    };
    assert!(dry("dry_run=true").unwrap());
    assert!(!dry("").unwrap() && !dry("dry_run=false").unwrap());
    assert_eq!(code(dry("dry_run=yes")), ErrorCode::INVALID_REQUEST);
}

/// A paid mixed family of `u1`: A1 × 1 (normal, 3000) and B1 × 2 (advance
/// sale, 2 × 2000) with coupon C1 (1000 off from 5000).
fn paid_mixed_family(shop: &mut Shop) -> OrderFamily {
    let mut family = shop.create("u1", &[("A1", 1), ("B1", 2)], Some("C1"));
    shop.pay(&mut family, "T-1").unwrap();
    family
}

#[test]
fn the_order_detail_of_a_mixed_family() {
    let mut shop = Shop::default();
    let family = paid_mixed_family(&mut shop);
    let detail = OrderDetail::of(&family, family.order_id).unwrap();
    let json = serde_json::to_value(&detail).unwrap();
    let id = family.order_id.as_str();
    let normal = family.sub_orders[0].order_id;
    let advance = family.sub_orders[1].order_id;
    let actor_u1 = json!({"kind": "user", "id": "u1"});
    let provider = json!({"kind": "provider", "id": "provider"});
    let at = "2026-01-01T00:00:00.000Z";
    let expected = json!({
        "order_id": id,
        "user_id": "u1",
        "business_identifier": 1,
        "order_type": 1,
        "coupon_id": "C1",
        "status": 127,
        "version": 2,
        "removed": false,
        "created_at": at,
        "updated_at": at,
        "expire_time": "2026-01-01T00:30:00.000Z",
        "items": [
            {"sku_code": "A1", "product_id": "p-A1", "product_name": "Product A1", "product_type": 1,
             "product_unit": "piece", "seller_id": "seller-1", "sale_price": 3000, "sale_quantity": 1,
             "origin_amount": 3000, "discount_amount": 428, "pay_amount": 2572, "restocked_quantity": 0},
            {"sku_code": "B1", "product_id": "p-B1", "product_name": "Product B1", "product_type": 2,
             "product_unit": "piece", "seller_id": "seller-1", "sale_price": 2000, "sale_quantity": 2,
             "origin_amount": 4000, "discount_amount": 572, "pay_amount": 3428, "restocked_quantity": 0}
        ],
        "amounts": [
            {"amount_type": 10, "amount": 7000},
            {"amount_type": 20, "amount": 1000},
            {"amount_type": 30, "amount": 1000},
            {"amount_type": 50, "amount": 7000}
        ],
        "payment": {"pay_type": 10, "pay_amount": 7000, "pay_status": 20, "out_trade_no": id,
                    "trade_no": "T-1", "paid_at": at},
        "extra_payments": [],
        "delivery": {"delivery_type": 1, "receiver_name": "Li Lei", "receiver_phone": "13800000000",
                     "province": "Zhejiang", "city": "Hangzhou", "area": "Xihu", "street": "Wensan",
                     "detail_address": "1 Wensan Road", "lon": 120.1, "lat": 30.2},
        "sub_orders": [
            {"order_id": normal.as_str(), "product_type": 1, "status": 20, "pay_amount": 3572,
             "amounts": [{"amount_type": 10, "amount": 3000}, {"amount_type": 20, "amount": 428},
                         {"amount_type": 30, "amount": 1000}, {"amount_type": 50, "amount": 3572}]},
            {"order_id": advance.as_str(), "product_type": 2, "status": 20, "pay_amount": 3428,
             "amounts": [{"amount_type": 10, "amount": 4000}, {"amount_type": 20, "amount": 572},
                         {"amount_type": 30, "amount": 0}, {"amount_type": 50, "amount": 3428}]}
        ],
        "snapshots": [
            {"snapshot_type": 1, "data": {"coupon_id": "C1", "amount": 1000, "threshold_amount": 5000,
              "valid_from": "2025-12-31T00:00:00.000Z", "valid_to": "2026-01-31T00:00:00.000Z", "discount": 1000}},
            {"snapshot_type": 2, "data": [{"amount_type": 10, "amount": 7000}, {"amount_type": 20, "amount": 1000},
                                          {"amount_type": 30, "amount": 1000}, {"amount_type": 50, "amount": 7000}]},
            {"snapshot_type": 3, "data": [
                {"sku_code": "A1", "product_id": "p-A1", "product_name": "Product A1", "product_type": 1,
                 "product_unit": "piece", "seller_id": "seller-1", "sale_price": 3000, "sale_quantity": 1},
                {"sku_code": "B1", "product_id": "p-B1", "product_name": "Product B1", "product_type": 2,
                 "product_unit": "piece", "seller_id": "seller-1", "sale_price": 2000, "sale_quantity": 2}]}
        ],
        "status_log": [
            {"order_id": id, "to": 10, "at": at, "actor": actor_u1},
            {"order_id": normal.as_str(), "to": 127, "at": at, "actor": actor_u1},
            {"order_id": advance.as_str(), "to": 127, "at": at, "actor": actor_u1},
            {"order_id": id, "from": 10, "to": 127, "at": at, "actor": provider},
            {"order_id": normal.as_str(), "from": 127, "to": 20, "at": at, "actor": provider},
            {"order_id": advance.as_str(), "from": 127, "to": 20, "at": at, "actor": provider}
        ],
        "after_sales": []
    });
    assert_eq!(
        json,
        expected,
        "{}",
        serde_json::to_string_pretty(&json).unwrap()
    );
    // Cost data never reaches an order view.
    assert!(!json.to_string().contains("purchase_price"));
}

#[test]
fn a_sub_order_detail_shows_its_own_part() {
    let mut shop = Shop::default();
    let family = paid_mixed_family(&mut shop);
    let sub = family.sub_orders[1].order_id;
    let detail = OrderDetail::of(&family, sub).unwrap();
    assert_eq!(detail.parent_order_id, Some(family.order_id));
    assert_eq!(
        detail.product_type,
        Some(ordercore_domain::codes::ProductType::ADVANCE_SALE)
    );
    assert_eq!(detail.status, OrderStatus::PAID);
    assert_eq!(detail.version, family.version);
    assert_eq!(detail.items.len(), 1);
    assert_eq!(detail.items[0].sku_code.as_str(), "B1");
    assert_eq!(detail.amounts[3].amount, Money::from_minor(3_428));
    assert!(detail.sub_orders.is_empty());
    assert!(detail.status_log.iter().all(|e| e.order_id == sub));
    assert_eq!(detail.status_log.len(), 2);
    let other = Shop::default().order_id("u9");
    assert!(OrderDetail::of(&family, other).is_none());
}

#[test]
fn listings_show_the_master_before_payment_and_the_parts_after() {
    let mut shop = Shop::default();
    let mut family = shop.create("u1", &[("A1", 1), ("B1", 2)], Some("C1"));
    let before = OrderSummary::listed(&family);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].order_id, family.order_id);
    assert_eq!(before[0].parent_order_id, None);
    assert_eq!(before[0].status, OrderStatus::CREATED);
    assert_eq!(before[0].items.len(), 2);
    shop.pay(&mut family, "T-1").unwrap();
    let after = OrderSummary::listed(&family);
    assert_eq!(after.len(), 2);
    assert!(after
        .iter()
        .all(|s| s.parent_order_id == Some(family.order_id)));
    assert_eq!(
        after.iter().map(|s| s.pay_amount.minor()).sum::<i64>(),
        family.amounts.real_pay.minor()
    );
    let json = serde_json::to_value(&after[1]).unwrap();
    assert_eq!(
        json["items"],
        json!([{"sku_code": "B1", "product_name": "Product B1", "sale_quantity": 2}])
    );
    assert_eq!(json["created_at"], json!("2026-01-01T00:00:00.000Z"));
    family.removed = true;
    assert!(OrderSummary::listed(&family).is_empty());
}

#[test]
fn results_of_create_prepay_and_pay_callback() {
    let mut shop = Shop::default();
    let mut family = shop.create("u1", &[("A1", 1), ("B1", 2)], Some("C1"));
    let created = serde_json::to_value(CreateOrderResponse::of(&family)).unwrap();
    assert_eq!(
        created,
        json!({
            "order_id": family.order_id.as_str(), "status": 10,
            "expire_time": "2026-01-01T00:30:00.000Z", "pay_amount": 7000,
            "sub_order_ids": [family.sub_orders[0].order_id.as_str(), family.sub_orders[1].order_id.as_str()]
        })
    );
    let prepay = Action::PrePay {
        order_id: family.order_id,
        pay_type: PayType::ALI_PAY,
        pay_amount: family.amounts.real_pay,
    };
    shop.run(&mut family, testkit::shopper("u1"), prepay)
        .unwrap();
    let prepaid = serde_json::to_value(PrepayResponse::of(&family)).unwrap();
    assert_eq!(prepaid["out_trade_no"], json!(family.order_id.as_str()));
    assert_eq!(prepaid["pay_type"], json!(20));

    let trade = ordercore_domain::ids::TradeNo::parse("T-1").unwrap();
    let events = shop.pay(&mut family, "T-1").unwrap();
    let paid = PayCallbackResponse::of(&family, &trade, !events.is_empty());
    assert_eq!(
        serde_json::to_value(&paid).unwrap(),
        json!({"result": "PAID"})
    );
    let events = shop.pay(&mut family, "T-1").unwrap();
    let again = PayCallbackResponse::of(&family, &trade, !events.is_empty());
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        json!({"result": "DUPLICATE"})
    );
    let second = ordercore_domain::ids::TradeNo::parse("T-2").unwrap();
    let events = shop.pay(&mut family, "T-2").unwrap();
    let refund = serde_json::to_value(PayCallbackResponse::of(
        &family,
        &second,
        !events.is_empty(),
    ))
    .unwrap();
    assert_eq!(refund["result"], json!("REFUND"));
    assert_eq!(
        refund["after_sale_id"],
        json!(family.after_sales[0].after_sale_id.as_str())
    );

    let view = serde_json::to_value(AfterSaleView::from(&family.after_sales[0])).unwrap();
    assert_eq!(view["after_sale_type_detail"], json!(1));
    assert_eq!(view["status"], json!(40));
    assert_eq!(view["apply_refund_amount"], json!(7000));
    assert_eq!(view["trade_no"], json!("T-2"));
    let created = serde_json::to_value(AfterSaleCreated::from(&family.after_sales[0])).unwrap();
    assert_eq!(
        created,
        json!({"after_sale_id": family.after_sales[0].after_sale_id.as_str(), "status": 40, "apply_refund_amount": 7000})
    );
    let detail = OrderDetail::of(&family, family.order_id).unwrap();
    assert_eq!(detail.extra_payments.len(), 1);
    assert_eq!(detail.after_sales.len(), 1);
    assert_eq!(
        serde_json::to_value(RemovedResponse { removed: 2 }).unwrap(),
        json!({"removed": 2})
    );
    assert_eq!(
        serde_json::to_value(VersionResponse { version: 5 }).unwrap(),
        json!({"version": 5})
    );
}

#[test]
fn events_show_their_payload_and_hide_cost_data_from_shoppers() {
    let mut shop = Shop::default();
    let family = paid_mixed_family(&mut shop);
    let history = OrderEvents::of(&family, false);
    let types: Vec<&str> = history.events.iter().map(|e| e.event_type).collect();
    assert_eq!(types[0], "OrderCreated");
    assert!(types.contains(&"OrderPaid") && types.contains(&"StockChanged"));
    let created = serde_json::to_value(&history.events[0]).unwrap();
    assert_eq!(created["type"], json!("OrderCreated"));
    assert_eq!(created["order_id"], json!(family.order_id.as_str()));
    assert_eq!(created["actor"], json!({"kind": "user", "id": "u1"}));
    assert_eq!(created["data"]["order_id"], json!(family.order_id.as_str()));
    assert!(!created.to_string().contains("purchase_price"));
    let admin = serde_json::to_value(EventView::of(&family.history[0], true).unwrap()).unwrap();
    assert_eq!(admin["data"]["lines"][0]["purchase_price"], json!(1_500));

    let paid = history
        .events
        .iter()
        .find(|e| e.event_type == "OrderPaid")
        .unwrap();
    let paid = serde_json::to_value(paid).unwrap();
    assert_eq!(paid["data"]["trade_no"], json!("T-1"));
    assert_eq!(paid["data"]["pay_amount"], json!(7000));
    assert_eq!(paid["actor"]["kind"], json!("provider"));

    let mut internal = (*family.history[0]).clone();
    internal.body = ordercore_domain::EventBody::IdempotencyRecorded(Box::new(
        ordercore_domain::family::IdempotencyEntry {
            family_id: family.order_id,
            caller: ordercore_domain::Actor::user(&testkit::user("u1")),
            key: ordercore_domain::ids::IdempotencyKey::parse("k").unwrap(),
            request_hash: 1,
            status: 200,
            body: "{}".into(),
        },
    ));
    assert!(EventView::of(&internal, true).is_none());
    let page = EventsPage {
        events: history.events,
        next: 9,
    };
    assert_eq!(serde_json::to_value(&page).unwrap()["next"], json!(9));
}

#[test]
fn a_dry_run_says_what_would_happen() {
    let mut shop = Shop::default();
    let family = shop.create("u1", &[("A1", 2)], Some("C1"));
    let cancel = ordercore_domain::Command {
        meta: testkit::shopper("u1"),
        action: Action::Cancel {
            order_id: family.order_id,
            cancel_type: CancelType::USER_CANCELED,
        },
    };
    let events = ordercore_domain::decide(&family, &cancel, shop.now).unwrap();
    let view = DryRunView::from(&ordercore_domain::DryRun::of(
        &family,
        &cancel.action,
        &events,
    ));
    assert_eq!(
        serde_json::to_value(&view).unwrap(),
        json!({
            "dry_run": true, "status": 70, "refund_amount": 0,
            "stock": [{"sku_code": "A1", "available_delta": 2, "locked_delta": -2, "sold_delta": 0}],
            "coupon_status": "UNUSED"
        })
    );
}

#[test]
fn catalog_views() {
    let mut shop = Shop::default();
    let family = shop.create("u1", &[("A1", 2)], Some("C1"));
    let sku = serde_json::to_value(SkuView::from(shop.sku("A1"))).unwrap();
    assert_eq!(
        sku,
        json!({"sku_code": "A1", "product_id": "p-A1", "product_name": "Product A1", "product_type": 1,
               "sale_price": 3000, "purchase_price": 1500, "product_unit": "piece", "seller_id": "seller-1",
               "available": 98, "locked": 2, "sold": 0})
    );
    let stock = serde_json::to_value(StockView::from(shop.sku("A1"))).unwrap();
    assert_eq!(
        stock,
        json!({"sku_code": "A1", "available": 98, "locked": 2, "sold": 0})
    );
    let coupon = serde_json::to_value(CouponView::from(shop.coupon("C1"))).unwrap();
    assert_eq!(
        coupon,
        json!({"coupon_id": "C1", "user_id": "u1", "amount": 1000, "threshold_amount": 5000,
               "valid_from": "2025-12-31T00:00:00.000Z", "valid_to": "2026-01-31T00:00:00.000Z",
               "status": "LOCKED", "order_id": family.order_id.as_str()})
    );
    let quote = ordercore_domain::pricing::quote(
        &testkit::user("u1"),
        &[(testkit::sku_code("A1"), 2)],
        &shop.skus,
        None,
        &shop.pricing,
        shop.now,
    )
    .unwrap();
    let price = serde_json::to_value(PriceResponse::from(&quote)).unwrap();
    assert_eq!(
        price,
        json!({
            "amounts": [{"amount_type": 10, "amount": 6000}, {"amount_type": 20, "amount": 0},
                        {"amount_type": 30, "amount": 1000}, {"amount_type": 50, "amount": 7000}],
            "items": [{"sku_code": "A1", "sale_price": 3000, "sale_quantity": 2, "origin_amount": 6000, "pay_amount": 6000}]
        })
    );
}

#[test]
fn every_dto_describes_itself_for_openapi() {
    use utoipa::OpenApi;

    // The served document: every DTO reaches it through a route or as a
    // listed schema.
    let doc = serde_json::to_value(crate::openapi::ApiDoc::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let create = &schemas["CreateOrderRequest"];
    let required = create["required"].as_array().unwrap();
    for field in [
        "order_id", "user_id", "delivery", "items", "amounts", "payments",
    ] {
        assert!(required.contains(&json!(field)), "{field} not required");
    }
    assert!(!required.contains(&json!("coupon_id")));
    assert_eq!(
        schemas["OrderDetail"]["properties"]["version"]["type"],
        json!("integer")
    );
    assert_eq!(
        schemas["OrderDetail"]["properties"]["created_at"]["format"],
        json!("date-time")
    );
    assert_eq!(
        schemas["FulfillmentEventName"]["enum"],
        json!(["FULFILLED", "OUT_STOCK", "DELIVERY", "SIGNED", "REFUSED"])
    );
    assert!(schemas["EventView"]["required"]
        .as_array()
        .unwrap()
        .contains(&json!("type")));

    let params = <UserOrdersQuery as utoipa::IntoParams>::into_params(|| None);
    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["status", "page_size", "cursor"]);
}
