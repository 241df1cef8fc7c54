//! API.md's order state table, one test per command row, each cell checked
//! on the fixture order brought to that column's state.

use super::*;

#[test]
fn prepay_row() {
    for status in STATES {
        let (mut shop, mut f) = fixture(status);
        let id = f.order_id;
        if status == OrderStatus::CREATED {
            let action = prepay(&f, id);
            let events = shop.run(&mut f, shopper("u1"), action).unwrap();
            assert_eq!(types(&events), ["OrderPrePaid"]);
            assert_eq!(f.status, OrderStatus::CREATED);
            assert_eq!(f.payment.pay_type, PayType::ALI_PAY);
            assert_eq!(
                f.payment.out_trade_no.as_ref().map(|o| o.as_str()),
                Some(id.as_str())
            );
            assert_eq!(f.payment.prepaid_at, Some(t0()));
            assert_eq!(f.version, 2);
        } else {
            let action = prepay(&f, id);
            let code = refused(&mut shop, &mut f, shopper("u1"), action);
            assert_eq!(code, ErrorCode::ORDER_STATUS_CHANGED, "{status}");
        }
    }
}

#[test]
fn pay_callback_row() {
    for status in STATES {
        let (mut shop, mut f) = fixture(status);
        let id = f.order_id;
        let (a1, a2) = (stock(&shop, "A1"), stock(&shop, "A2"));
        let events = shop.pay(&mut f, "T9").unwrap();
        match status {
            OrderStatus::CREATED => {
                assert_eq!(
                    types(&events),
                    ["OrderPaid", "StockChanged", "StockChanged", "CouponChanged"]
                );
                assert_eq!(f.status, OrderStatus::PAID);
                assert_eq!(f.payment.trade_no, Some(trade("T9")));
                assert_eq!(f.pay_status(), crate::codes::PayStatus::PAID);
                assert_eq!(stock(&shop, "A1"), (98, 0, 2));
                assert_eq!(stock(&shop, "A2"), (99, 0, 1));
                assert_eq!(shop.coupon("C1").status, CouponStatus::USED);
                assert_eq!(shop.coupon("C1").order_id, Some(id));
                assert!(f.after_sales.is_empty());
            }
            _ => {
                // A new trade_no for a cancelled or paid family is refunded.
                assert_eq!(
                    types(&events),
                    ["PaymentReceived", "AfterSaleCommitted", "RefundRequested"]
                );
                assert_eq!(f.status, status);
                let refund = last_after_sale(&f);
                let detail = if status == OrderStatus::CANCELED {
                    AfterSaleTypeDetail::USER_CANCEL
                } else {
                    AfterSaleTypeDetail::ALL_REFUND
                };
                assert_refund(refund, detail, AfterSaleStatus::REFUNDING, PAY);
                assert_eq!(refund.trade_no, Some(trade("T9")));
                assert_eq!(refund.order_id, id);
                assert!(refund.items.is_empty());
                assert_eq!(
                    f.payment_result(&trade("T9")),
                    Some((crate::PayResult::Refund, Some(refund.after_sale_id)))
                );
                assert_eq!(f.extra_payments.len(), 1);
                assert_eq!((stock(&shop, "A1"), stock(&shop, "A2")), (a1, a2));
            }
        }
        // The same trade_no again is a DUPLICATE: nothing changes.
        let action = pay_action(&f, "T9");
        no_op(&mut shop, &mut f, provider(), action);
        if paid_state(status) {
            let action = pay_action(&f, "T1");
            no_op(&mut shop, &mut f, provider(), action);
            assert_eq!(
                f.payment_result(&trade("T1")),
                Some((crate::PayResult::Paid, None))
            );
        }
    }
}

#[test]
fn cancel_row() {
    for status in STATES {
        let (mut shop, mut f) = fixture(status);
        let id = f.order_id;
        let action = cancel(id, CancelType::USER_CANCELED);
        match status {
            OrderStatus::CREATED => {
                let events = shop.run(&mut f, shopper("u1"), action).unwrap();
                assert_eq!(
                    types(&events),
                    [
                        "OrderCanceled",
                        "StockChanged",
                        "StockChanged",
                        "CouponChanged"
                    ]
                );
                assert_eq!(
                    stock_moves(&events),
                    [("A1".into(), 2, -2, 0), ("A2".into(), 1, -1, 0)]
                );
                assert_eq!(f.status, OrderStatus::CANCELED);
                assert_eq!(f.cancel_type, Some(CancelType::USER_CANCELED));
                assert_eq!(stock(&shop, "A1"), (100, 0, 0));
                assert_eq!(stock(&shop, "A2"), (100, 0, 0));
                assert_eq!(shop.coupon("C1").status, CouponStatus::UNUSED);
                assert_eq!(shop.coupon("C1").order_id, None);
                assert!(f.after_sales.is_empty());
            }
            OrderStatus::PAID => {
                let events = shop.run(&mut f, shopper("u1"), action).unwrap();
                assert_eq!(
                    types(&events),
                    [
                        "OrderCanceled",
                        "StockChanged",
                        "StockChanged",
                        "CouponChanged",
                        "AfterSaleCommitted",
                        "RefundRequested"
                    ]
                );
                assert_eq!(
                    stock_moves(&events),
                    [("A1".into(), 2, 0, -2), ("A2".into(), 1, 0, -1)]
                );
                assert_eq!(f.status, OrderStatus::CANCELED);
                assert_eq!(stock(&shop, "A1"), (100, 0, 0));
                assert_eq!(stock(&shop, "A2"), (100, 0, 0));
                assert_eq!(shop.coupon("C1").status, CouponStatus::UNUSED);
                let refund = last_after_sale(&f);
                assert_refund(
                    refund,
                    AfterSaleTypeDetail::USER_CANCEL,
                    AfterSaleStatus::REFUNDING,
                    PAY,
                );
                assert_eq!(refund.after_sale_type, AfterSaleType::RETURN_MONEY);
                assert_eq!(refund.items, [item("A1", 2, A1_PAY), item("A2", 1, A2_PAY)]);
                assert_eq!(refund.shipping_amount, m(SHIPPING));
                assert_eq!(refund.trade_no, Some(trade("T1")));
                assert_eq!(f.pay_status(), crate::codes::PayStatus::REFUNDING);
            }
            _ => {
                let code = refused(&mut shop, &mut f, shopper("u1"), action);
                assert_eq!(code, ErrorCode::ORDER_CANNOT_CANCEL, "{status}");
            }
        }
    }
}

#[test]
fn deadline_row() {
    for status in STATES {
        let (mut shop, mut f) = fixture(status);
        let id = f.order_id;
        shop.now = f.expire_at;
        if status == OrderStatus::CREATED {
            let events = shop.run(&mut f, system(), deadline(id)).unwrap();
            assert_eq!(
                types(&events),
                [
                    "OrderCanceled",
                    "StockChanged",
                    "StockChanged",
                    "CouponChanged"
                ]
            );
            assert_eq!(f.status, OrderStatus::CANCELED);
            assert_eq!(f.cancel_type, Some(CancelType::TIMEOUT_CANCELED));
            assert_eq!(stock(&shop, "A1"), (100, 0, 0));
            assert_eq!(stock(&shop, "A2"), (100, 0, 0));
            assert_eq!(shop.coupon("C1").status, CouponStatus::UNUSED);
            assert_eq!(f.status_log.last().map(|e| &e.actor), Some(&system().actor));
        } else {
            no_op(&mut shop, &mut f, system(), deadline(id));
        }
    }
}

#[test]
fn address_row() {
    for status in STATES {
        let (mut shop, mut f) = fixture(status);
        let id = f.order_id;
        if matches!(status, OrderStatus::CREATED | OrderStatus::PAID) {
            let events = shop.run(&mut f, shopper("u1"), new_address(id)).unwrap();
            assert_eq!(types(&events), ["OrderAddressChanged"]);
            assert_eq!(f.delivery.address, address("99 New Street"));
            assert_eq!(f.status, status);
        } else {
            let code = refused(&mut shop, &mut f, shopper("u1"), new_address(id));
            assert_eq!(
                code,
                ErrorCode::ORDER_NOT_ALLOW_TO_ADJUST_ADDRESS,
                "{status}"
            );
        }
    }
}

/// What a fulfillment event does in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Moves the order to the event's status.
    Moves,
    /// The order is already there: 200, no change.
    Repeat,
    /// 409 ORDER_STATUS_CHANGED.
    Conflict,
}

#[test]
fn fulfillment_row_for_every_event() {
    use Step::{Conflict as C, Moves as M, Repeat as R};
    // Columns: FULFILLED, OUT_STOCK, DELIVERY, SIGNED, REFUSED.
    let table: [(OrderStatus, [Step; 5]); 8] = [
        (OrderStatus::CREATED, [C, C, C, C, C]),
        (OrderStatus::PAID, [M, C, C, C, C]),
        (OrderStatus::FULFILLED, [R, M, C, C, C]),
        (OrderStatus::OUT_STOCK, [C, R, M, C, C]),
        (OrderStatus::DELIVERY, [C, C, R, M, M]),
        (OrderStatus::SIGNED, [C, C, C, R, C]),
        (OrderStatus::CANCELED, [C, C, C, C, C]),
        (OrderStatus::REFUSED, [C, C, C, C, R]),
    ];
    for (status, row) in table {
        for (event, expected) in FulfillmentEvent::ALL.iter().zip(row) {
            let (mut shop, mut f) = fixture(status);
            let id = f.order_id;
            match expected {
                Step::Moves => {
                    let events = shop.run(&mut f, admin(), fulfill(id, *event)).unwrap();
                    assert_eq!(f.status, event.target(), "{status} + {event:?}");
                    let public = match event {
                        FulfillmentEvent::FULFILLED => "OrderFulfilled",
                        FulfillmentEvent::OUT_STOCK => "OrderOutStock",
                        FulfillmentEvent::DELIVERY => "OrderDelivered",
                        FulfillmentEvent::SIGNED => "OrderSigned",
                        FulfillmentEvent::REFUSED => "OrderRefused",
                    };
                    assert!(types(&events).contains(&public), "{status} + {event:?}");
                    let entry = f.status_log.last().unwrap();
                    assert_eq!((entry.from, entry.to), (Some(status), event.target()));
                }
                Step::Repeat => no_op(&mut shop, &mut f, admin(), fulfill(id, *event)),
                Step::Conflict => {
                    let code = refused(&mut shop, &mut f, admin(), fulfill(id, *event));
                    assert_eq!(
                        code,
                        ErrorCode::ORDER_STATUS_CHANGED,
                        "{status} + {event:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn fulfillment_steps_other_than_refusal_emit_one_event_and_move_no_stock() {
    for (status, event, name) in [
        (
            OrderStatus::PAID,
            FulfillmentEvent::FULFILLED,
            "OrderFulfilled",
        ),
        (
            OrderStatus::FULFILLED,
            FulfillmentEvent::OUT_STOCK,
            "OrderOutStock",
        ),
        (
            OrderStatus::OUT_STOCK,
            FulfillmentEvent::DELIVERY,
            "OrderDelivered",
        ),
        (
            OrderStatus::DELIVERY,
            FulfillmentEvent::SIGNED,
            "OrderSigned",
        ),
    ] {
        let (mut shop, mut f) = fixture(status);
        let id = f.order_id;
        let events = shop.run(&mut f, admin(), fulfill(id, event)).unwrap();
        assert_eq!(types(&events), [name]);
        match &events[0].body {
            EventBody::OrderFulfilled(s)
            | EventBody::OrderOutStock(s)
            | EventBody::OrderDelivered(s)
            | EventBody::OrderSigned(s) => {
                assert_eq!(s.logistics_code.as_deref(), Some("SF123"));
                assert_eq!(s.operator.as_deref(), Some("warehouse-1"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(stock(&shop, "A1"), (98, 0, 2));
        assert!(f.after_sales.is_empty());
    }
}

#[test]
fn refusal_at_delivery_returns_the_stock_and_refunds_the_whole_payment() {
    let (mut shop, mut f) = fixture(OrderStatus::DELIVERY);
    let id = f.order_id;
    let events = shop
        .run(&mut f, admin(), fulfill(id, FulfillmentEvent::REFUSED))
        .unwrap();
    assert_eq!(
        types(&events),
        [
            "StockChanged",
            "StockChanged",
            "OrderRefused",
            "AfterSaleCommitted",
            "RefundRequested"
        ]
    );
    assert_eq!(
        stock_moves(&events),
        [("A1".into(), 2, 0, -2), ("A2".into(), 1, 0, -1)]
    );
    assert_eq!(f.status, OrderStatus::REFUSED);
    assert_eq!(stock(&shop, "A1"), (100, 0, 0));
    assert_eq!(stock(&shop, "A2"), (100, 0, 0));
    // The coupon was spent on a delivered order; a refusal does not give it back.
    assert_eq!(shop.coupon("C1").status, CouponStatus::USED);
    let refund = last_after_sale(&f);
    assert_refund(
        refund,
        AfterSaleTypeDetail::ALL_REFUND,
        AfterSaleStatus::REFUNDING,
        PAY,
    );
    assert_eq!(refund.items, [item("A1", 2, A1_PAY), item("A2", 1, A2_PAY)]);
    assert_eq!(refund.shipping_amount, m(SHIPPING));
    assert_eq!(refund.trade_no, Some(trade("T1")));
    assert_eq!(f.lines[0].restocked_quantity, 2);
    assert_eq!(f.lines[1].restocked_quantity, 1);
}

#[test]
fn after_sale_apply_row_for_both_types() {
    use AfterSaleType::{RETURN_GOODS, RETURN_MONEY};
    // Columns: RETURN_MONEY, RETURN_GOODS; true = accepted.
    let table = [
        (OrderStatus::CREATED, [false, false]),
        (OrderStatus::PAID, [true, false]),
        (OrderStatus::FULFILLED, [true, false]),
        (OrderStatus::OUT_STOCK, [false, false]),
        (OrderStatus::DELIVERY, [false, false]),
        (OrderStatus::SIGNED, [false, true]),
        (OrderStatus::CANCELED, [false, false]),
        (OrderStatus::REFUSED, [false, false]),
    ];
    for (status, row) in table {
        for (kind, accepted) in [RETURN_MONEY, RETURN_GOODS].into_iter().zip(row) {
            let (mut shop, mut f) = fixture(status);
            let id = f.order_id;
            let before = (stock(&shop, "A1"), stock(&shop, "A2"));
            let action = apply(id, kind, &[("A1", 1)]);
            if accepted {
                let events = shop.run(&mut f, shopper("u1"), action).unwrap();
                assert_eq!(types(&events), ["AfterSaleCommitted"]);
                let a = last_after_sale(&f);
                assert_refund(
                    a,
                    AfterSaleTypeDetail::PART_REFUND,
                    AfterSaleStatus::COMMITTED,
                    A1_ONE_UNIT,
                );
                assert_eq!(a.after_sale_type, kind);
                assert_eq!(a.items, [item("A1", 1, A1_ONE_UNIT)]);
                assert_eq!(a.shipping_amount, Money::ZERO);
                assert_eq!(a.order_id, id);
                assert_eq!(a.trade_no, Some(trade("T1")));
                assert_eq!(a.reason.as_deref(), Some("changed my mind"));
                assert_eq!(f.status, status);
                assert_eq!((stock(&shop, "A1"), stock(&shop, "A2")), before);
            } else {
                let code = refused(&mut shop, &mut f, shopper("u1"), action);
                assert_eq!(code, ErrorCode::AFTER_SALE_CANNOT_APPLY, "{status} {kind}");
            }
        }
    }
}

#[test]
fn lack_row() {
    for status in STATES {
        let (mut shop, mut f) = fixture(status);
        let id = f.order_id;
        if matches!(status, OrderStatus::FULFILLED | OrderStatus::OUT_STOCK) {
            let events = shop.run(&mut f, admin(), lack(id, &[("A1", 1)])).unwrap();
            assert_eq!(types(&events), ["AfterSaleCommitted", "RefundRequested"]);
            let a = last_after_sale(&f);
            assert_refund(
                a,
                AfterSaleTypeDetail::LACK_REFUND,
                AfterSaleStatus::REFUNDING,
                A1_ONE_UNIT,
            );
            assert_eq!(a.after_sale_type, AfterSaleType::RETURN_MONEY);
            assert_eq!(a.items, [item("A1", 1, A1_ONE_UNIT)]);
            // The order does not move and the lacked unit is not released.
            assert_eq!(f.status, status);
            assert_eq!(stock(&shop, "A1"), (98, 0, 2));
            // Only once per order.
            let code = refused(&mut shop, &mut f, admin(), lack(id, &[("A2", 1)]));
            assert_eq!(code, ErrorCode::ORDER_NOT_ALLOW_TO_LACK);
        } else {
            let code = refused(&mut shop, &mut f, admin(), lack(id, &[("A1", 1)]));
            assert_eq!(code, ErrorCode::ORDER_NOT_ALLOW_TO_LACK, "{status}");
        }
    }
}

#[test]
fn remove_row() {
    for status in STATES {
        let (mut shop, mut f) = fixture(status);
        let id = f.order_id;
        if status.is_final() {
            let events = shop.run(&mut f, shopper("u1"), remove(id)).unwrap();
            assert_eq!(types(&events), ["OrderRemoved"]);
            assert!(f.removed);
            assert_eq!(f.status, status);
            // Its shopper no longer reaches it; an admin's repeat is a no-op.
            let code = refused(&mut shop, &mut f, shopper("u1"), remove(id));
            assert_eq!(code, ErrorCode::ORDER_NOT_FOUND);
            no_op(&mut shop, &mut f, admin(), remove(id));
        } else {
            let code = refused(&mut shop, &mut f, shopper("u1"), remove(id));
            assert_eq!(code, ErrorCode::ORDER_CANNOT_REMOVE, "{status}");
            assert!(!f.removed);
        }
    }
    assert_eq!(
        STATES.iter().filter(|s| s.is_final()).collect::<Vec<_>>(),
        [
            &OrderStatus::SIGNED,
            &OrderStatus::CANCELED,
            &OrderStatus::REFUSED
        ]
    );
}

#[test]
fn note_row() {
    for status in STATES {
        let (mut shop, mut f) = fixture(status);
        let id = f.order_id;
        let version = f.version;
        let events = shop.run(&mut f, admin(), note(id)).unwrap();
        assert_eq!(types(&events), ["OrderNoteAdded"]);
        assert_eq!(f.version, version + 1, "{status}");
        assert_eq!(f.status, status);
        match &f.history.last().unwrap().body {
            EventBody::OrderNoteAdded { text, order_id } => {
                assert_eq!(text, "customer called");
                assert_eq!(*order_id, id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
