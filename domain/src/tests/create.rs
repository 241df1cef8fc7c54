//! `POST /v1/orders` (API.md, "Orders"): validation, risk, pricing checks,
//! all-or-nothing reservation and idempotent repeats on `order_id`.

use super::*;
use crate::codes::AmountType;
use crate::command::{CreateContext, CreateOrder};
use crate::pricing::RiskRules;

fn create_code(shop: &Shop, cmd: &CreateOrder) -> ErrorCode {
    let owner = cmd.user_id.as_str().to_owned();
    code_of(shop.decide_create(cmd, &shopper(&owner)))
}

#[test]
fn a_created_order_locks_its_coupon_reserves_its_stock_and_arms_its_deadline() {
    let mut shop = Shop::default();
    let cmd = shop.create_cmd("u1", BASKET, Some("C1"));
    let events = shop.decide_create(&cmd, &shopper("u1")).unwrap();
    assert_eq!(
        types(&events),
        [
            "OrderCreated",
            "CouponChanged",
            "StockChanged",
            "StockChanged"
        ]
    );
    assert_eq!(
        stock_moves(&events),
        [("A1".into(), -2, 2, 0), ("A2".into(), -1, 1, 0)]
    );
    assert_eq!(coupon_moves(&events), [CouponStatus::LOCKED]);
    assert!(events.iter().all(|e| e.version == 1 && e.at == t0()));
    let f = shop.create("u1", BASKET, Some("C1"));
    assert_eq!(f.status, OrderStatus::CREATED);
    assert_eq!(f.version, 1);
    assert_eq!(f.expire_at, t0().plus_millis(PAY_TIMEOUT_MS));
    assert_eq!(f.payment.trade_no, None);
    assert_eq!(f.payment.pay_amount, m(PAY));
    assert_eq!(f.pay_status(), crate::codes::PayStatus::UNPAID);
    assert_eq!(f.coupon.as_ref().map(|c| c.discount), Some(m(1_000)));
    assert_eq!(shop.coupon("C1").status, CouponStatus::LOCKED);
    assert_eq!(shop.coupon("C1").order_id, Some(f.order_id));
    assert_eq!(f.history.len(), 4);
}

#[test]
fn an_order_id_must_be_one_issued_for_its_user() {
    let mut shop = Shop::default();
    let mut cmd = shop.create_cmd("u1", BASKET, None);
    cmd.order_id = shop.order_id("u2");
    assert_eq!(create_code(&shop, &cmd), ErrorCode::ORDER_ID_INVALID);
    let mut cmd = shop.create_cmd("u1", BASKET, None);
    cmd.order_id = cmd
        .order_id
        .sub_order_id(crate::codes::ProductType::NORMAL_PRODUCT);
    assert_eq!(create_code(&shop, &cmd), ErrorCode::ORDER_ID_INVALID);
}

#[test]
fn a_shopper_creates_orders_for_itself_only() {
    let mut shop = Shop::default();
    let cmd = shop.create_cmd("u1", BASKET, None);
    let code = code_of(shop.decide_create(&cmd, &shopper("u2")));
    assert_eq!(code, ErrorCode::FORBIDDEN);
    assert!(shop.decide_create(&cmd, &admin()).is_ok());
}

#[test]
fn claimed_amounts_and_the_payment_must_be_the_true_price() {
    let mut shop = Shop::default();
    let good = shop.create_cmd("u1", BASKET, Some("C1"));
    for amount_type in AmountType::ALL {
        let mut cmd = good.clone();
        let true_amount = cmd
            .amounts
            .iter()
            .find(|(t, _)| t == amount_type)
            .unwrap()
            .1;
        cmd.amounts = with_amount(&cmd.amounts, *amount_type, true_amount.minor() + 1);
        assert_eq!(
            create_code(&shop, &cmd),
            ErrorCode::ORDER_CHECK_REAL_PAY_AMOUNT_FAIL,
            "{amount_type}"
        );
    }
    let mut cmd = good.clone();
    cmd.payments = vec![(PayType::ALI_PAY, m(PAY - 1))];
    assert_eq!(
        create_code(&shop, &cmd),
        ErrorCode::ORDER_CHECK_REAL_PAY_AMOUNT_FAIL
    );
    // Only REAL_PAY_AMOUNT is required among the claimed amounts.
    let mut cmd = good.clone();
    cmd.amounts
        .retain(|(t, _)| *t == AmountType::REAL_PAY_AMOUNT);
    assert!(shop.decide_create(&cmd, &shopper("u1")).is_ok());
    let mut cmd = good.clone();
    cmd.amounts
        .retain(|(t, _)| *t != AmountType::REAL_PAY_AMOUNT);
    assert_eq!(create_code(&shop, &cmd), ErrorCode::AMOUNT_TYPE_ERROR);
    let mut cmd = good.clone();
    cmd.payments.push((PayType::ALI_PAY, m(PAY)));
    assert_eq!(create_code(&shop, &cmd), ErrorCode::PAY_TYPE_ERROR);
}

#[test]
fn unknown_skus_are_not_found() {
    let mut shop = Shop::default();
    let mut cmd = shop.create_cmd("u1", &[("A1", 1)], None);
    cmd.items.push((sku_code("ZZ"), 1));
    assert_eq!(create_code(&shop, &cmd), ErrorCode::PRODUCT_SKU_NOT_FOUND);
}

#[test]
fn short_stock_reserves_nothing() {
    let mut shop = Shop::default();
    shop.skus[1].available = 1; // A2
    let cmd = shop.create_cmd("u1", &[("A1", 2), ("A2", 2)], Some("C1"));
    let skus_before = shop.skus.clone();
    assert_eq!(
        create_code(&shop, &cmd),
        ErrorCode::PRODUCT_STOCK_NOT_ENOUGH
    );
    assert_eq!(shop.skus, skus_before);
    assert_eq!(shop.coupon("C1").status, CouponStatus::UNUSED);
    // Exactly what is available can be reserved.
    let f = shop.create("u1", &[("A1", 2), ("A2", 1)], Some("C1"));
    assert_eq!(f.lines.len(), 2);
    assert_eq!(stock(&shop, "A2"), (0, 1, 0));
}

#[test]
fn a_coupon_belongs_to_one_user_and_one_live_order() {
    let mut shop = Shop::default();
    // Another user's coupon, and one that does not exist.
    let mut cmd = shop.create_cmd("u2", BASKET, None);
    cmd.coupon_id = Some(crate::ids::CouponId::parse("C1").unwrap());
    assert_eq!(create_code(&shop, &cmd), ErrorCode::USER_COUPON_NOT_EXIST);
    cmd.coupon_id = Some(crate::ids::CouponId::parse("NOPE").unwrap());
    assert_eq!(create_code(&shop, &cmd), ErrorCode::USER_COUPON_NOT_EXIST);
    // Locked by a first order, it is refused to a second one.
    let mut first = shop.create("u1", BASKET, Some("C1"));
    let mut cmd = shop.create_cmd("u1", BASKET, None);
    cmd.coupon_id = Some(crate::ids::CouponId::parse("C1").unwrap());
    assert_eq!(create_code(&shop, &cmd), ErrorCode::USER_COUPON_IS_USED);
    // Released when the first order is cancelled, it can be used again.
    let id = first.order_id;
    shop.run(
        &mut first,
        shopper("u1"),
        cancel(id, CancelType::USER_CANCELED),
    )
    .unwrap();
    let mut second = shop.create("u1", BASKET, Some("C1"));
    assert_eq!(shop.coupon("C1").order_id, Some(second.order_id));
    // Used by a paid order, it stays refused.
    shop.pay(&mut second, "T1").unwrap();
    let mut cmd = shop.create_cmd("u1", BASKET, None);
    cmd.coupon_id = Some(crate::ids::CouponId::parse("C1").unwrap());
    assert_eq!(create_code(&shop, &cmd), ErrorCode::USER_COUPON_IS_USED);
}

#[test]
fn a_coupon_below_its_threshold_gives_no_discount_and_stays_unused() {
    let mut shop = Shop::default();
    // 3000 is below C1's 5000 threshold.
    let cmd = shop.create_cmd("u1", &[("A1", 1)], Some("C1"));
    assert_eq!(
        cmd.amounts,
        [
            (AmountType::ORIGIN_PAY_AMOUNT, m(3_000)),
            (AmountType::COUPON_DISCOUNT_AMOUNT, Money::ZERO),
            (AmountType::SHIPPING_AMOUNT, m(1_000)),
            (AmountType::REAL_PAY_AMOUNT, m(4_000)),
        ]
    );
    let events = shop.decide_create(&cmd, &shopper("u1")).unwrap();
    assert!(coupon_moves(&events).is_empty());
    let f = shop.create("u1", &[("A1", 1)], Some("C1"));
    assert_eq!(f.coupon, None);
    assert_eq!(f.lines[0].discount_amount, Money::ZERO);
    assert_eq!(shop.coupon("C1").status, CouponStatus::UNUSED);
    // A claimed discount the threshold does not allow is refused.
    let mut cmd = shop.create_cmd("u1", &[("A1", 1)], Some("C1"));
    cmd.amounts = with_amount(&cmd.amounts, AmountType::COUPON_DISCOUNT_AMOUNT, 1_000);
    cmd.amounts = with_amount(&cmd.amounts, AmountType::REAL_PAY_AMOUNT, 3_000);
    cmd.payments = vec![(PayType::WECHAT_PAY, m(3_000))];
    assert_eq!(
        create_code(&shop, &cmd),
        ErrorCode::ORDER_CHECK_REAL_PAY_AMOUNT_FAIL
    );
}

#[test]
fn shipping_is_waived_from_the_free_shipping_threshold() {
    let mut shop = Shop::default();
    // 3 × 3000 + 4500 = 13500, less 1000 = 12500 ≥ 9900.
    let f = shop.create("u1", &[("A1", 3), ("A2", 1)], Some("C1"));
    assert_eq!(f.amounts.shipping, Money::ZERO);
    assert_eq!(f.amounts.real_pay, m(12_500));
    // Exactly at the threshold the fee is waived too.
    shop.pricing.free_shipping_threshold = m(3_000);
    let f = shop.create("u1", &[("A1", 1)], None);
    assert_eq!(f.amounts.shipping, Money::ZERO);
}

#[test]
fn risk_rules_refuse_blocked_users_big_amounts_and_fast_buyers() {
    let mut shop = Shop::default();
    shop.risk = RiskRules {
        max_order_amount: m(PAY),
        max_orders_per_user_per_min: 3,
        blocked_users: vec![user("bad")],
    };
    let cmd = shop.create_cmd("bad", &[("A1", 1)], None);
    assert_eq!(create_code(&shop, &cmd), ErrorCode::RISK_REJECTED);
    let cmd = shop.create_cmd("u1", &[("A1", 3), ("A2", 1)], None);
    assert_eq!(create_code(&shop, &cmd), ErrorCode::RISK_REJECTED);
    let cmd = shop.create_cmd("u1", BASKET, Some("C1"));
    assert!(shop.decide_create(&cmd, &shopper("u1")).is_ok());
    let skus: Vec<&crate::Sku> = shop.skus.iter().collect();
    for (recent, expected) in [(2, None), (3, Some(ErrorCode::ORDER_RATE_LIMITED))] {
        let ctx = CreateContext {
            skus: &skus,
            coupon: Some(shop.coupon("C1")),
            pricing: &shop.pricing,
            risk: &shop.risk,
            user_orders_last_minute: recent,
            pay_timeout_ms: PAY_TIMEOUT_MS,
        };
        let result = crate::decide_create(&cmd, &shopper("u1"), &ctx, shop.now);
        assert_eq!(result.err().map(|e| e.code()), expected, "{recent} recent");
    }
}

#[test]
fn a_repeated_create_answers_the_same_result_and_a_different_one_order_existed() {
    let mut shop = Shop::default();
    let cmd = shop.create_cmd("u1", BASKET, Some("C1"));
    let events = shop.decide_create(&cmd, &shopper("u1")).unwrap();
    shop.apply_catalog(&events);
    let mut f = OrderFamily::create(&events[0]).unwrap();
    for e in &events[1..] {
        f.apply(e);
    }
    no_op(
        &mut shop,
        &mut f,
        shopper("u1"),
        Action::Create {
            fingerprint: cmd.fingerprint,
        },
    );
    let code = refused(
        &mut shop,
        &mut f,
        shopper("u1"),
        Action::Create {
            fingerprint: cmd.fingerprint + 1,
        },
    );
    assert_eq!(code, ErrorCode::ORDER_EXISTED);
    // Another shopper's create on the used id learns that it is taken, not
    // whose it is, whatever its body; anything else it sends is refused.
    for fingerprint in [cmd.fingerprint, cmd.fingerprint + 1] {
        let code = refused(
            &mut shop,
            &mut f,
            shopper("u2"),
            Action::Create { fingerprint },
        );
        assert_eq!(code, ErrorCode::ORDER_EXISTED);
    }
    let id = f.order_id;
    let code = refused(
        &mut shop,
        &mut f,
        shopper("u2"),
        cancel(id, CancelType::USER_CANCELED),
    );
    assert_eq!(code, ErrorCode::FORBIDDEN);
}
