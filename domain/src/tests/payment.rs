//! Payments, the payment deadline and cancel types (API.md, "Orders").

use super::*;
use crate::codes::PayStatus;
use crate::PayResult;

#[test]
fn a_payment_after_the_deadline_but_before_it_fired_pays_the_order() {
    let (mut shop, mut f) = fixture(OrderStatus::CREATED);
    let id = f.order_id;
    shop.now = f.expire_at.plus_millis(60_000);
    let events = shop.pay(&mut f, "T1").unwrap();
    assert_eq!(types(&events)[0], "OrderPaid");
    assert_eq!(f.status, OrderStatus::PAID);
    assert_eq!(
        f.payment_result(&trade("T1")),
        Some((PayResult::Paid, None))
    );
    // The deadline firing late finds it paid and does nothing.
    no_op(&mut shop, &mut f, system(), deadline(id));
}

#[test]
fn prepay_is_refused_from_the_deadline_on() {
    let (mut shop, mut f) = fixture(OrderStatus::CREATED);
    let id = f.order_id;
    shop.now = f.expire_at.plus_millis(-1);
    let action = prepay(&f, id);
    shop.run(&mut f, shopper("u1"), action).unwrap();
    for late in [0, 1, 3_600_000] {
        shop.now = f.expire_at.plus_millis(late);
        let action = prepay(&f, id);
        let code = refused(&mut shop, &mut f, shopper("u1"), action);
        assert_eq!(code, ErrorCode::ORDER_PRE_PAY_EXPIRE, "{late} ms late");
    }
}

#[test]
fn a_second_prepay_keeps_the_out_trade_no() {
    let (mut shop, mut f) = fixture(OrderStatus::CREATED);
    let id = f.order_id;
    let action = prepay(&f, id);
    shop.run(&mut f, shopper("u1"), action).unwrap();
    let first = f.payment.out_trade_no.clone();
    let action = prepay(&f, id);
    let events = shop.run(&mut f, shopper("u1"), action).unwrap();
    assert_eq!(types(&events), ["OrderPrePaid"]);
    assert_eq!(f.payment.out_trade_no, first);
}

#[test]
fn the_deadline_does_nothing_before_it_is_due() {
    let (mut shop, mut f) = fixture(OrderStatus::CREATED);
    let id = f.order_id;
    shop.now = f.expire_at.plus_millis(-1);
    no_op(&mut shop, &mut f, system(), deadline(id));
    assert_eq!(f.expire_at, t0().plus_millis(PAY_TIMEOUT_MS));
}

#[test]
fn a_payment_of_another_amount_is_refused_and_changes_nothing() {
    for status in [
        OrderStatus::CREATED,
        OrderStatus::PAID,
        OrderStatus::CANCELED,
    ] {
        let (mut shop, mut f) = fixture(status);
        let id = f.order_id;
        for amount in [PAY - 1, PAY + 1, 0] {
            let mut action = pay_for(&f, id, "T7");
            if let Action::PayCallback { pay_amount, .. } = &mut action {
                *pay_amount = m(amount);
            }
            let code = refused(&mut shop, &mut f, provider(), action);
            assert_eq!(code, ErrorCode::ORDER_PAY_AMOUNT_ERROR, "{status} {amount}");
        }
        // Since nothing was recorded, the right amount is accepted later.
        let action = pay_for(&f, id, "T7");
        shop.run(&mut f, provider(), action).unwrap();
        assert!(f.payment_result(&trade("T7")).is_some());
    }
}

#[test]
fn a_prepay_of_another_amount_is_refused() {
    let (mut shop, mut f) = fixture(OrderStatus::CREATED);
    let id = f.order_id;
    let action = Action::PrePay {
        order_id: id,
        pay_type: PayType::WECHAT_PAY,
        pay_amount: m(PAY - 1),
    };
    let code = refused(&mut shop, &mut f, shopper("u1"), action);
    assert_eq!(code, ErrorCode::ORDER_PAY_AMOUNT_ERROR);
}

#[test]
fn a_repeated_trade_no_answers_duplicate_whatever_it_was_first() {
    let (mut shop, mut f) = fixture(OrderStatus::CREATED);
    let id = f.order_id;
    shop.pay(&mut f, "T1").unwrap();
    let events = shop.pay(&mut f, "T2").unwrap();
    let refund = committed(&events).after_sale_id;
    assert_eq!(
        f.payment_result(&trade("T2")),
        Some((PayResult::Refund, Some(refund)))
    );
    // Later the family is cancelled; the repeats still change nothing.
    shop.run(&mut f, shopper("u1"), cancel(id, CancelType::USER_CANCELED))
        .unwrap();
    let after_sales = f.after_sales.len();
    for t in ["T1", "T2", "T1"] {
        let action = pay_action(&f, t);
        no_op(&mut shop, &mut f, provider(), action);
    }
    assert_eq!(f.after_sales.len(), after_sales);
    // A duplicate is recognised before the amount is checked.
    let mut action = pay_action(&f, "T2");
    if let Action::PayCallback { pay_amount, .. } = &mut action {
        *pay_amount = m(1);
    }
    no_op(&mut shop, &mut f, provider(), action);
    assert_eq!(f.payment_result(&trade("T3")), None);
}

#[test]
fn a_payment_for_a_cancelled_family_is_refunded_after_its_cancel_type() {
    let cases = [
        ("deadline", AfterSaleTypeDetail::TIMEOUT_NO_PAY),
        ("user", AfterSaleTypeDetail::USER_CANCEL),
        ("customer service", AfterSaleTypeDetail::CUSTOMER_CANCEL),
        ("user after paying", AfterSaleTypeDetail::USER_CANCEL),
        (
            "customer service after paying",
            AfterSaleTypeDetail::CUSTOMER_CANCEL,
        ),
    ];
    for (how, detail) in cases {
        let (mut shop, mut f) = fixture(OrderStatus::CREATED);
        let id = f.order_id;
        if how.ends_with("after paying") {
            shop.pay(&mut f, "T1").unwrap();
        }
        match how {
            "deadline" => {
                shop.now = f.expire_at;
                shop.run(&mut f, system(), deadline(id))
            }
            h if h.starts_with("user") => {
                shop.run(&mut f, shopper("u1"), cancel(id, CancelType::USER_CANCELED))
            }
            _ => shop.run(&mut f, admin(), cancel(id, CancelType::CUSTOMER_CANCELED)),
        }
        .unwrap();
        assert_eq!(f.status, OrderStatus::CANCELED);
        let stock_before = (stock(&shop, "A1"), shop.coupon("C1").clone());
        let events = shop.pay(&mut f, "LATE").unwrap();
        assert_eq!(
            types(&events),
            ["PaymentReceived", "AfterSaleCommitted", "RefundRequested"],
            "{how}"
        );
        let refund = committed(&events);
        assert_refund(&refund, detail, AfterSaleStatus::REFUNDING, PAY);
        assert_eq!(refund.trade_no, Some(trade("LATE")));
        assert_eq!(f.status, OrderStatus::CANCELED, "{how}");
        assert_eq!(
            (stock(&shop, "A1"), shop.coupon("C1").clone()),
            stock_before
        );
        // The late payment is recorded apart from the family's own payment.
        assert_eq!(f.extra_payments.len(), 1);
        assert_eq!(f.extra_payments[0].after_sale_id, refund.after_sale_id);
        assert_eq!(
            f.refund_status(&trade("LATE"), m(PAY)),
            PayStatus::REFUNDING
        );
        shop.run(
            &mut f,
            provider(),
            refund_result(refund.after_sale_id, PAY, true),
        )
        .unwrap();
        assert_eq!(f.refund_status(&trade("LATE"), m(PAY)), PayStatus::REFUNDED);
        // Repeated, the late payment is never refunded twice.
        let action = pay_action(&f, "LATE");
        no_op(&mut shop, &mut f, provider(), action);
    }
}

#[test]
fn a_second_payment_of_a_paid_family_is_refunded_whole() {
    let (mut shop, mut f) = fixture(OrderStatus::SIGNED);
    let events = shop.pay(&mut f, "T2").unwrap();
    let refund = committed(&events);
    assert_refund(
        &refund,
        AfterSaleTypeDetail::ALL_REFUND,
        AfterSaleStatus::REFUNDING,
        PAY,
    );
    // The family's own payment is untouched by the refund of the second one.
    assert_eq!(f.payment.trade_no, Some(trade("T1")));
    assert_eq!(f.pay_status(), PayStatus::PAID);
    // And a return of the whole order still refunds the whole first payment.
    let id = f.order_id;
    let events = shop
        .run(
            &mut f,
            shopper("u1"),
            apply(id, AfterSaleType::RETURN_GOODS, &[("A1", 2), ("A2", 1)]),
        )
        .unwrap();
    assert_eq!(committed(&events).apply_refund_amount, m(PAY));
    assert_eq!(committed(&events).trade_no, Some(trade("T1")));
}

#[test]
fn cancel_type_one_belongs_to_the_deadline_alone() {
    for (status, meta) in [
        (OrderStatus::CREATED, shopper("u1")),
        (OrderStatus::CREATED, admin()),
        (OrderStatus::PAID, admin()),
        (OrderStatus::SIGNED, admin()),
    ] {
        let (mut shop, mut f) = fixture(status);
        let id = f.order_id;
        let code = refused(
            &mut shop,
            &mut f,
            meta,
            cancel(id, CancelType::TIMEOUT_CANCELED),
        );
        assert_eq!(code, ErrorCode::CANCEL_TYPE_ERROR, "{status}");
    }
}

#[test]
fn cancel_type_two_is_for_customer_service_only() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let id = f.order_id;
    let code = refused(
        &mut shop,
        &mut f,
        shopper("u1"),
        cancel(id, CancelType::CUSTOMER_CANCELED),
    );
    assert_eq!(code, ErrorCode::FORBIDDEN);
    let events = shop
        .run(&mut f, admin(), cancel(id, CancelType::CUSTOMER_CANCELED))
        .unwrap();
    assert_eq!(f.cancel_type, Some(CancelType::CUSTOMER_CANCELED));
    let refund = committed(&events);
    assert_refund(
        &refund,
        AfterSaleTypeDetail::CUSTOMER_CANCEL,
        AfterSaleStatus::REFUNDING,
        PAY,
    );
    // An admin may also cancel with the user's cancel type.
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let id = f.order_id;
    let events = shop
        .run(&mut f, admin(), cancel(id, CancelType::USER_CANCELED))
        .unwrap();
    assert_eq!(committed(&events).detail, AfterSaleTypeDetail::USER_CANCEL);
}

#[test]
fn a_payment_moves_locked_stock_to_sold_and_uses_the_coupon() {
    let (mut shop, mut f) = fixture(OrderStatus::CREATED);
    let events = shop.pay(&mut f, "T1").unwrap();
    assert_eq!(
        stock_moves(&events),
        [("A1".into(), 0, -2, 2), ("A2".into(), 0, -1, 1)]
    );
    assert_eq!(coupon_moves(&events), [CouponStatus::USED]);
    match &events[0].body {
        EventBody::OrderPaid(report) => {
            assert_eq!(report.trade_no, trade("T1"));
            assert_eq!(report.pay_amount, m(PAY));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(f.payment.paid_at, Some(t0()));
    assert_eq!(f.pay_status(), PayStatus::PAID);
    let log: Vec<_> = f.status_log.iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(
        log,
        [
            (None, OrderStatus::CREATED),
            (Some(OrderStatus::CREATED), OrderStatus::PAID)
        ]
    );
    assert_eq!(f.status_log[1].actor, provider().actor);
}
