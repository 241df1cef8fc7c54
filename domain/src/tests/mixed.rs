//! Families that mix product types (API.md, "Orders", family rule): a
//! master and one sub-order per type, exactly one layer live at a time.
//!
//! The basket A1×1 (NORMAL_PRODUCT, 3000) + B1×1 (ADVANCE_SALE, 2000) with
//! coupon C1: origin 5000, discount 1000 split 600 / 400, shipping 1000,
//! real pay 5000; the NORMAL_PRODUCT sub-order pays 2400 + 1000 shipping,
//! the ADVANCE_SALE one 1600.

use super::*;
use crate::codes::ProductType;
use crate::order::Amounts;

const MIXED: &[(&str, Quantity)] = &[("A1", 1), ("B1", 1)];

fn mixed(shop: &mut Shop, paid: bool) -> (OrderFamily, OrderId, OrderId) {
    let mut f = shop.create("u1", MIXED, Some("C1"));
    if paid {
        shop.pay(&mut f, "T1").unwrap();
    }
    let normal = f.order_id.sub_order_id(ProductType::NORMAL_PRODUCT);
    let advance = f.order_id.sub_order_id(ProductType::ADVANCE_SALE);
    (f, normal, advance)
}

fn amounts(origin: i64, discount: i64, shipping: i64, real_pay: i64) -> Amounts {
    Amounts {
        origin: m(origin),
        discount: m(discount),
        shipping: m(shipping),
        real_pay: m(real_pay),
    }
}

fn statuses(f: &OrderFamily) -> (OrderStatus, Vec<OrderStatus>) {
    (f.status, f.sub_orders.iter().map(|s| s.status).collect())
}

#[test]
fn a_mixed_order_has_one_invalid_sub_order_per_type_until_paid() {
    let mut shop = Shop::default();
    let (f, normal, advance) = mixed(&mut shop, false);
    assert_eq!(f.amounts, amounts(5_000, 1_000, 1_000, 5_000));
    let subs: Vec<_> = f
        .sub_orders
        .iter()
        .map(|s| (s.order_id, s.product_type, s.status, s.amounts))
        .collect();
    assert_eq!(
        subs,
        [
            (
                normal,
                ProductType::NORMAL_PRODUCT,
                OrderStatus::INVALID,
                amounts(3_000, 600, 1_000, 3_400)
            ),
            (
                advance,
                ProductType::ADVANCE_SALE,
                OrderStatus::INVALID,
                amounts(2_000, 400, 0, 1_600)
            ),
        ]
    );
    assert_eq!(f.status, OrderStatus::CREATED);
    assert_eq!(f.display_status(), OrderStatus::CREATED);
    assert!(normal.is_sub_order() && advance.is_sub_order());
    assert_eq!(normal.family_id(), f.order_id);
    assert!(normal.belongs_to(&user("u1")));
    // The status log records every sub-order's birth as INVALID.
    let born: Vec<_> = f.status_log.iter().map(|e| (e.order_id, e.to)).collect();
    assert_eq!(
        born,
        [
            (f.order_id, OrderStatus::CREATED),
            (normal, OrderStatus::INVALID),
            (advance, OrderStatus::INVALID)
        ]
    );
}

#[test]
fn the_shipping_fee_goes_with_the_lowest_product_type_whatever_the_line_order() {
    let mut shop = Shop::default();
    let f = shop.create("u1", &[("B1", 2), ("A2", 1)], None);
    // 4000 + 4500 = 8500 < 9900: shipping is charged.
    let subs: Vec<_> = f
        .sub_orders
        .iter()
        .map(|s| (s.product_type, s.amounts))
        .collect();
    assert_eq!(
        subs,
        [
            (ProductType::NORMAL_PRODUCT, amounts(4_500, 0, 1_000, 5_500)),
            (ProductType::ADVANCE_SALE, amounts(4_000, 0, 0, 4_000)),
        ]
    );
    let total: i64 = f
        .sub_orders
        .iter()
        .map(|s| s.amounts.real_pay.minor())
        .sum();
    assert_eq!(total, f.amounts.real_pay.minor());
    // An order of one product type has no sub-orders.
    let single = shop.create("u1", &[("A1", 1), ("A2", 1)], None);
    assert!(single.sub_orders.is_empty());
    let advance_only = shop.create("u1", &[("B1", 1)], None);
    assert!(advance_only.sub_orders.is_empty());
}

#[test]
fn paying_moves_the_master_to_invalid_and_every_sub_order_to_paid() {
    let mut shop = Shop::default();
    let (mut f, normal, advance) = mixed(&mut shop, false);
    shop.pay(&mut f, "T1").unwrap();
    assert_eq!(
        statuses(&f),
        (
            OrderStatus::INVALID,
            vec![OrderStatus::PAID, OrderStatus::PAID]
        )
    );
    assert_eq!(f.display_status(), OrderStatus::PAID);
    let moves: Vec<_> = f.status_log[3..]
        .iter()
        .map(|e| (e.order_id, e.from, e.to))
        .collect();
    assert_eq!(
        moves,
        [
            (f.order_id, Some(OrderStatus::CREATED), OrderStatus::INVALID),
            (normal, Some(OrderStatus::INVALID), OrderStatus::PAID),
            (advance, Some(OrderStatus::INVALID), OrderStatus::PAID),
        ]
    );
    assert_eq!(stock(&shop, "A1"), (99, 0, 1));
    assert_eq!(stock(&shop, "B1"), (99, 0, 1));
    assert_eq!(shop.coupon("C1").status, CouponStatus::USED);
    // A second payment is refunded whole, against the master.
    let events = shop.pay(&mut f, "T2").unwrap();
    let refund = committed(&events);
    assert_refund(
        &refund,
        AfterSaleTypeDetail::ALL_REFUND,
        AfterSaleStatus::REFUNDING,
        5_000,
    );
    assert_eq!(refund.order_id, f.order_id);
    let action = pay_action(&f, "T1");
    no_op(&mut shop, &mut f, provider(), action);
}

#[test]
fn family_commands_with_a_sub_order_id_answer_order_status_changed() {
    for paid in [false, true] {
        let mut shop = Shop::default();
        let (mut f, normal, advance) = mixed(&mut shop, paid);
        for sub in [normal, advance] {
            let actions = [
                (shopper("u1"), prepay(&f, sub)),
                (provider(), pay_for(&f, sub, "T5")),
                (shopper("u1"), cancel(sub, CancelType::USER_CANCELED)),
                (system(), deadline(sub)),
                (shopper("u1"), new_address(sub)),
                (shopper("u1"), remove(sub)),
            ];
            for (meta, action) in actions {
                let name = action.name();
                let code = refused(&mut shop, &mut f, meta, action);
                assert_eq!(code, ErrorCode::ORDER_STATUS_CHANGED, "{name} paid={paid}");
            }
        }
    }
}

#[test]
fn part_commands_with_the_master_id_of_a_paid_family_answer_order_status_changed() {
    let mut shop = Shop::default();
    let (mut f, normal, _) = mixed(&mut shop, true);
    let id = f.order_id;
    let actions = [
        fulfill(id, FulfillmentEvent::FULFILLED),
        apply(id, AfterSaleType::RETURN_MONEY, &[("A1", 1)]),
    ];
    for action in actions {
        let name = action.name();
        let code = refused(&mut shop, &mut f, admin(), action);
        assert_eq!(code, ErrorCode::ORDER_STATUS_CHANGED, "{name}");
    }
    shop.run(
        &mut f,
        admin(),
        fulfill(normal, FulfillmentEvent::FULFILLED),
    )
    .unwrap();
    let code = refused(&mut shop, &mut f, admin(), lack(id, &[("A1", 1)]));
    assert_eq!(code, ErrorCode::ORDER_STATUS_CHANGED);
    // With the sub-order's id the lack is accepted.
    let events = shop
        .run(&mut f, admin(), lack(normal, &[("A1", 1)]))
        .unwrap();
    assert_eq!(committed(&events).order_id, normal);
}

#[test]
fn before_payment_the_sub_orders_are_not_live() {
    let mut shop = Shop::default();
    let (mut f, normal, _) = mixed(&mut shop, false);
    let id = f.order_id;
    let cases = [
        (
            fulfill(normal, FulfillmentEvent::FULFILLED),
            ErrorCode::ORDER_STATUS_CHANGED,
        ),
        (
            apply(normal, AfterSaleType::RETURN_MONEY, &[("A1", 1)]),
            ErrorCode::AFTER_SALE_CANNOT_APPLY,
        ),
        (
            lack(normal, &[("A1", 1)]),
            ErrorCode::ORDER_NOT_ALLOW_TO_LACK,
        ),
        (
            fulfill(id, FulfillmentEvent::FULFILLED),
            ErrorCode::ORDER_STATUS_CHANGED,
        ),
        (
            apply(id, AfterSaleType::RETURN_MONEY, &[("A1", 1)]),
            ErrorCode::AFTER_SALE_CANNOT_APPLY,
        ),
    ];
    for (action, expected) in cases {
        let name = action.name();
        assert_eq!(
            refused(&mut shop, &mut f, admin(), action),
            expected,
            "{name}"
        );
    }
    // The master takes the family's commands.
    let action = prepay(&f, id);
    shop.run(&mut f, shopper("u1"), action).unwrap();
    shop.run(&mut f, shopper("u1"), new_address(id)).unwrap();
    assert_eq!(f.delivery.address, address("99 New Street"));
}

#[test]
fn each_paid_part_is_fulfilled_on_its_own_and_blocks_cancel_and_address_once_it_moves() {
    let mut shop = Shop::default();
    let (mut f, normal, advance) = mixed(&mut shop, true);
    let id = f.order_id;
    shop.run(&mut f, shopper("u1"), new_address(id)).unwrap();
    shop.run(
        &mut f,
        admin(),
        fulfill(advance, FulfillmentEvent::FULFILLED),
    )
    .unwrap();
    assert_eq!(
        statuses(&f),
        (
            OrderStatus::INVALID,
            vec![OrderStatus::PAID, OrderStatus::FULFILLED]
        )
    );
    assert_eq!(f.display_status(), OrderStatus::PAID);
    let code = refused(
        &mut shop,
        &mut f,
        shopper("u1"),
        cancel(id, CancelType::USER_CANCELED),
    );
    assert_eq!(code, ErrorCode::ORDER_CANNOT_CANCEL);
    let code = refused(&mut shop, &mut f, shopper("u1"), new_address(id));
    assert_eq!(code, ErrorCode::ORDER_NOT_ALLOW_TO_ADJUST_ADDRESS);
    // The other part is still PAID: a return of money is accepted for it.
    let events = shop
        .run(
            &mut f,
            shopper("u1"),
            apply(normal, AfterSaleType::RETURN_MONEY, &[("A1", 1)]),
        )
        .unwrap();
    assert_eq!(committed(&events).order_id, normal);
    // A part answers for its own lines only.
    let code = refused(
        &mut shop,
        &mut f,
        shopper("u1"),
        apply(normal, AfterSaleType::RETURN_MONEY, &[("B1", 1)]),
    );
    assert_eq!(code, ErrorCode::ORDER_ITEM_INVALID);
}

#[test]
fn cancelling_a_paid_mixed_family_cancels_every_part_and_refunds_everything() {
    let mut shop = Shop::default();
    let (mut f, _, _) = mixed(&mut shop, true);
    let id = f.order_id;
    let events = shop
        .run(&mut f, shopper("u1"), cancel(id, CancelType::USER_CANCELED))
        .unwrap();
    assert_eq!(
        statuses(&f),
        (
            OrderStatus::CANCELED,
            vec![OrderStatus::CANCELED, OrderStatus::CANCELED]
        )
    );
    let refund = committed(&events);
    assert_refund(
        &refund,
        AfterSaleTypeDetail::USER_CANCEL,
        AfterSaleStatus::REFUNDING,
        5_000,
    );
    assert_eq!(refund.items, [item("A1", 1, 2_400), item("B1", 1, 1_600)]);
    assert_eq!(refund.shipping_amount, m(1_000));
    assert_eq!(refund.order_id, id);
    assert_eq!(stock(&shop, "A1"), (100, 0, 0));
    assert_eq!(stock(&shop, "B1"), (100, 0, 0));
    assert_eq!(shop.coupon("C1").status, CouponStatus::UNUSED);
    // Everything is final now: it may be removed.
    shop.run(&mut f, shopper("u1"), remove(id)).unwrap();
    assert!(f.removed);
}

#[test]
fn cancelling_an_unpaid_mixed_family_cancels_the_master_and_its_sub_orders() {
    let mut shop = Shop::default();
    let (mut f, _, _) = mixed(&mut shop, false);
    let id = f.order_id;
    shop.now = f.expire_at;
    shop.run(&mut f, system(), deadline(id)).unwrap();
    assert_eq!(
        statuses(&f),
        (
            OrderStatus::CANCELED,
            vec![OrderStatus::CANCELED, OrderStatus::CANCELED]
        )
    );
    assert_eq!(f.cancel_type, Some(CancelType::TIMEOUT_CANCELED));
    assert_eq!(stock(&shop, "A1"), (100, 0, 0));
    assert_eq!(stock(&shop, "B1"), (100, 0, 0));
    let events = shop.pay(&mut f, "LATE").unwrap();
    assert_eq!(
        committed(&events).detail,
        AfterSaleTypeDetail::TIMEOUT_NO_PAY
    );
}

#[test]
fn refusing_one_part_refunds_that_part_only_and_the_family_is_removable_when_all_are_final() {
    let mut shop = Shop::default();
    let (mut f, normal, advance) = mixed(&mut shop, true);
    let id = f.order_id;
    for part in [normal, advance] {
        for step in [
            FulfillmentEvent::FULFILLED,
            FulfillmentEvent::OUT_STOCK,
            FulfillmentEvent::DELIVERY,
        ] {
            shop.run(&mut f, admin(), fulfill(part, step)).unwrap();
        }
    }
    let events = shop
        .run(&mut f, admin(), fulfill(normal, FulfillmentEvent::REFUSED))
        .unwrap();
    let refund = committed(&events);
    assert_refund(
        &refund,
        AfterSaleTypeDetail::ALL_REFUND,
        AfterSaleStatus::REFUNDING,
        3_400,
    );
    assert_eq!(refund.items, [item("A1", 1, 2_400)]);
    assert_eq!(refund.shipping_amount, m(1_000));
    assert_eq!(refund.order_id, normal);
    assert_eq!(stock(&shop, "A1"), (100, 0, 0));
    assert_eq!(stock(&shop, "B1"), (99, 0, 1));
    let code = refused(&mut shop, &mut f, shopper("u1"), remove(id));
    assert_eq!(code, ErrorCode::ORDER_CANNOT_REMOVE);
    shop.run(&mut f, admin(), fulfill(advance, FulfillmentEvent::SIGNED))
        .unwrap();
    assert_eq!(
        statuses(&f),
        (
            OrderStatus::INVALID,
            vec![OrderStatus::REFUSED, OrderStatus::SIGNED]
        )
    );
    shop.run(&mut f, shopper("u1"), remove(id)).unwrap();
    assert!(f.removed);
}

#[test]
fn a_part_completed_by_returns_carries_the_shipping_only_if_it_holds_it() {
    let mut shop = Shop::default();
    let (mut f, normal, advance) = mixed(&mut shop, true);
    let events = shop
        .run(
            &mut f,
            shopper("u1"),
            apply(advance, AfterSaleType::RETURN_MONEY, &[("B1", 1)]),
        )
        .unwrap();
    let a = committed(&events);
    assert_eq!(a.items, [item("B1", 1, 1_600)]);
    assert_eq!(a.shipping_amount, Money::ZERO);
    let events = shop
        .run(
            &mut f,
            shopper("u1"),
            apply(normal, AfterSaleType::RETURN_MONEY, &[("A1", 1)]),
        )
        .unwrap();
    let b = committed(&events);
    assert_eq!(b.items, [item("A1", 1, 2_400)]);
    assert_eq!(b.shipping_amount, m(1_000));
    assert_eq!(
        a.apply_refund_amount.minor() + b.apply_refund_amount.minor(),
        f.amounts.real_pay.minor()
    );
}
