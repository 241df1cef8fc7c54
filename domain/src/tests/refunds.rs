//! How much each after-sale refunds (API.md, "After-sale"): q of n units
//! refund floor(line pay × q / n), the application completing a line takes
//! the rest of it, the one completing the order adds the shipping fee, and
//! every after-sale not rejected, revoked or failed holds its units.

use super::*;

fn applied(shop: &mut Shop, f: &mut OrderFamily, list: &[(&str, Quantity)]) -> AfterSale {
    let id = f.order_id;
    let events = shop
        .run(
            f,
            shopper("u1"),
            apply(id, AfterSaleType::RETURN_MONEY, list),
        )
        .unwrap();
    committed(&events)
}

/// An application for `list`, approved, whose refund then failed.
fn failed(shop: &mut Shop, f: &mut OrderFamily, list: &[(&str, Quantity)]) -> AfterSale {
    let a = applied(shop, f, list);
    shop.run(f, admin(), review(a.after_sale_id, true)).unwrap();
    let amount = a.apply_refund_amount.minor();
    shop.run(f, provider(), refund_result(a.after_sale_id, amount, false))
        .unwrap();
    a
}

#[test]
fn a_partial_unit_refunds_the_floor_of_its_share_and_the_completing_ones_take_the_rest() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let first = applied(&mut shop, &mut f, &[("A1", 1)]);
    assert_eq!(first.items, [item("A1", 1, A1_ONE_UNIT)]);
    assert_eq!(first.shipping_amount, Money::ZERO);
    // The second unit completes line A1: 5429 − 2714, not another 2714.
    let second = applied(&mut shop, &mut f, &[("A1", 1)]);
    assert_eq!(second.items, [item("A1", 1, A1_PAY - A1_ONE_UNIT)]);
    assert_eq!(second.apply_refund_amount, m(2_715));
    assert_eq!(second.shipping_amount, Money::ZERO);
    // A2 completes the order and so carries the shipping fee.
    let third = applied(&mut shop, &mut f, &[("A2", 1)]);
    assert_eq!(third.items, [item("A2", 1, A2_PAY)]);
    assert_eq!(third.shipping_amount, m(SHIPPING));
    assert_eq!(third.apply_refund_amount, m(A2_PAY + SHIPPING));
    let total: i64 = f
        .after_sales
        .iter()
        .map(|a| a.apply_refund_amount.minor())
        .sum();
    assert_eq!(total, PAY);
    // Nothing is left to return.
    let id = f.order_id;
    let code = refused(
        &mut shop,
        &mut f,
        shopper("u1"),
        apply(id, AfterSaleType::RETURN_MONEY, &[("A2", 1)]),
    );
    assert_eq!(code, ErrorCode::AFTER_SALE_QUANTITY_EXCEEDED);
}

#[test]
fn one_application_of_everything_refunds_the_whole_payment() {
    let (mut shop, mut f) = fixture(OrderStatus::FULFILLED);
    let a = applied(&mut shop, &mut f, &[("A2", 1), ("A1", 2)]);
    assert_eq!(a.items, [item("A2", 1, A2_PAY), item("A1", 2, A1_PAY)]);
    assert_eq!(a.shipping_amount, m(SHIPPING));
    assert_eq!(a.apply_refund_amount, m(PAY));
}

#[test]
fn pending_applications_hold_their_units() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let id = f.order_id;
    applied(&mut shop, &mut f, &[("A1", 2)]);
    let code = refused(
        &mut shop,
        &mut f,
        shopper("u1"),
        apply(id, AfterSaleType::RETURN_MONEY, &[("A1", 1)]),
    );
    assert_eq!(code, ErrorCode::AFTER_SALE_QUANTITY_EXCEEDED);
    // A2 is still free, and completing the order it takes the shipping.
    let b = applied(&mut shop, &mut f, &[("A2", 1)]);
    assert_eq!(b.shipping_amount, m(SHIPPING));
}

#[test]
fn rejected_revoked_and_failed_after_sales_release_their_units() {
    for how in ["reject", "revoke", "fail"] {
        let (mut shop, mut f) = fixture(OrderStatus::PAID);
        let id = f.order_id;
        let first = applied(&mut shop, &mut f, &[("A1", 2), ("A2", 1)]);
        assert_eq!(first.apply_refund_amount, m(PAY));
        let a = first.after_sale_id;
        match how {
            "reject" => shop.run(&mut f, admin(), review(a, false)),
            "revoke" => shop.run(&mut f, shopper("u1"), revoke(a)),
            _ => {
                shop.run(&mut f, admin(), review(a, true)).unwrap();
                shop.run(&mut f, provider(), refund_result(a, PAY, false))
            }
        }
        .unwrap();
        // Everything can be applied for again, shipping included.
        let second = applied(&mut shop, &mut f, &[("A1", 1)]);
        assert_eq!(second.apply_refund_amount, m(A1_ONE_UNIT), "{how}");
        let third = applied(&mut shop, &mut f, &[("A1", 1), ("A2", 1)]);
        assert_eq!(
            third.apply_refund_amount,
            m(PAY - A1_ONE_UNIT),
            "{how}: the rest of A1, all of A2 and the shipping"
        );
        assert_eq!(third.shipping_amount, m(SHIPPING));
        if how == "fail" {
            // What the failed refund covered is claimed again: no retry.
            let code = refused(&mut shop, &mut f, admin(), retry(a));
            assert_eq!(code, ErrorCode::AFTER_SALE_STATUS_CHANGED);
        }
        let code = refused(
            &mut shop,
            &mut f,
            shopper("u1"),
            apply(id, AfterSaleType::RETURN_MONEY, &[("A1", 1)]),
        );
        assert_eq!(code, ErrorCode::AFTER_SALE_QUANTITY_EXCEEDED, "{how}");
    }
}

#[test]
fn a_failed_refund_can_be_retried_while_nobody_else_claims_what_it_covers() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let a = applied(&mut shop, &mut f, &[("A1", 1)]).after_sale_id;
    shop.run(&mut f, admin(), review(a, true)).unwrap();
    shop.run(&mut f, provider(), refund_result(a, A1_ONE_UNIT, false))
        .unwrap();
    // Another application takes another line: a's share is unchanged.
    applied(&mut shop, &mut f, &[("A2", 1)]);
    let events = shop.run(&mut f, admin(), retry(a)).unwrap();
    assert_eq!(types(&events), ["RefundRequested"]);
    assert_eq!(f.after_sale(&a).unwrap().status, AfterSaleStatus::REFUNDING);
}

/// On a line of many cheap units, the application that completed the line
/// took the rest over the floors of claims revoked since: a later share's
/// floor is capped at what the line has left, so the line's refunds never
/// pass its pay and no refund goes below zero.
#[test]
fn a_share_never_refunds_more_than_its_line_has_left() {
    let mut shop = Shop::default();
    shop.skus.push(sku(
        "P1",
        crate::codes::ProductType::NORMAL_PRODUCT,
        2,
        1_000,
    ));
    let mut f = shop.create("u1", &[("P1", 5)], None);
    shop.pay(&mut f, "T-P1").unwrap();
    // A line of 5 units paying 9 (a discount's share taken off).
    f.lines[0].pay_amount = m(9);
    let singles: Vec<AfterSaleId> = (0..4)
        .map(|_| applied(&mut shop, &mut f, &[("P1", 1)]).after_sale_id)
        .collect();
    let last = applied(&mut shop, &mut f, &[("P1", 1)]);
    assert_eq!(
        last.items[0].refund_amount,
        m(9 - 4),
        "the rest of the line"
    );
    for a in singles {
        shop.run(&mut f, shopper("u1"), revoke(a)).unwrap();
    }
    // floor(9 × 3 / 5) = 5, but the line has 4 left.
    let three = applied(&mut shop, &mut f, &[("P1", 3)]);
    assert_eq!(three.items[0].refund_amount, m(4));
    assert_eq!(f.claimed_line_amount(&sku_code("P1"), &[]), m(9));
}

/// A later FAILED refund that cannot be retried itself (what it covers was
/// applied for again and refunded) is no claim: an earlier failed refund
/// of another line is still retried.
#[test]
fn a_later_failed_refund_that_cannot_be_retried_does_not_block_an_earlier_one() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let a = failed(&mut shop, &mut f, &[("A1", 1)]);
    let b = failed(&mut shop, &mut f, &[("A2", 1)]);
    // The shopper applies for A2 again, and that refund goes through.
    let c = applied(&mut shop, &mut f, &[("A2", 1)]);
    shop.run(&mut f, admin(), review(c.after_sale_id, true))
        .unwrap();
    let amount = c.apply_refund_amount.minor();
    shop.run(
        &mut f,
        provider(),
        refund_result(c.after_sale_id, amount, true),
    )
    .unwrap();

    let code = refused(&mut shop, &mut f, admin(), retry(b.after_sale_id));
    assert_eq!(code, ErrorCode::AFTER_SALE_STATUS_CHANGED);
    // Counted as a claim, b would leave a no room: 4,071 (c) + 4,071 (b)
    // + 2,714 (a) is more than the 10,500 paid.
    let events = shop.run(&mut f, admin(), retry(a.after_sale_id)).unwrap();
    assert_eq!(types(&events), ["RefundRequested"]);
}

/// A later FAILED refund blocked only by a claim that may still go away
/// (an application under review) still counts: retrying the earlier one
/// would leave the later one unpayable for good once the application is
/// rejected.
#[test]
fn a_later_failed_refund_blocked_by_a_pending_claim_still_counts() {
    let (mut shop, mut f) = fixture(OrderStatus::FULFILLED);
    let id = f.order_id;
    let a = failed(&mut shop, &mut f, &[("A2", 1)]);
    // The warehouse lacks everything; that refund fails too.
    shop.run(&mut f, admin(), lack(id, &[("A1", 2), ("A2", 1)]))
        .unwrap();
    let x = last_after_sale(&f).clone();
    assert_eq!(x.apply_refund_amount, m(PAY));
    shop.run(
        &mut f,
        provider(),
        refund_result(x.after_sale_id, PAY, false),
    )
    .unwrap();
    // An application for A1 waits for review.
    let y = applied(&mut shop, &mut f, &[("A1", 1)]);

    let code = refused(&mut shop, &mut f, admin(), retry(a.after_sale_id));
    assert_eq!(code, ErrorCode::AFTER_SALE_STATUS_CHANGED);
    shop.run(&mut f, admin(), review(y.after_sale_id, false))
        .unwrap();
    let events = shop.run(&mut f, admin(), retry(x.after_sale_id)).unwrap();
    assert_eq!(types(&events), ["RefundRequested"]);
}

/// A failed refund without return can still be retried once its part has
/// shipped: the unit may have stayed behind (the refund held it while the
/// part shipped), and the family does not record when it shipped (README).
#[test]
fn a_failed_refund_without_return_can_be_retried_after_the_part_shipped() {
    let (mut shop, mut f) = fixture(OrderStatus::FULFILLED);
    let id = f.order_id;
    let a = applied(&mut shop, &mut f, &[("A1", 1)]).after_sale_id;
    shop.run(&mut f, admin(), review(a, true)).unwrap();
    shop.run(&mut f, admin(), fulfill(id, FulfillmentEvent::OUT_STOCK))
        .unwrap();
    shop.run(&mut f, provider(), refund_result(a, A1_ONE_UNIT, false))
        .unwrap();
    let events = shop.run(&mut f, admin(), retry(a)).unwrap();
    assert_eq!(types(&events), ["RefundRequested"]);
}

/// A failed return, then a cancel whose refund covers the returned units
/// too (the return's claim was released) and fails as well: retrying the
/// return first would leave the cancel's refund unpayable (a cancelled
/// order has no other way to refund it), so the return is refused while
/// the later failed refund covers its units, and the cancel's is retried.
#[test]
fn a_failed_refund_is_not_retried_over_a_later_failed_one_that_covers_it() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let id = f.order_id;
    let a = failed(&mut shop, &mut f, &[("A1", 1)]).after_sale_id;
    shop.run(&mut f, shopper("u1"), cancel(id, CancelType::USER_CANCELED))
        .unwrap();
    let whole = last_after_sale(&f).clone();
    assert_eq!(whole.apply_refund_amount, m(PAY));
    shop.run(
        &mut f,
        provider(),
        refund_result(whole.after_sale_id, PAY, false),
    )
    .unwrap();

    let code = refused(&mut shop, &mut f, admin(), retry(a));
    assert_eq!(code, ErrorCode::AFTER_SALE_STATUS_CHANGED);
    let events = shop
        .run(&mut f, admin(), retry(whole.after_sale_id))
        .unwrap();
    assert_eq!(types(&events), ["RefundRequested"]);
    shop.run(
        &mut f,
        provider(),
        refund_result(whole.after_sale_id, PAY, true),
    )
    .unwrap();
    assert_eq!(f.pay_status(), crate::codes::PayStatus::REFUNDED);
}

/// A failed refund released its units; another application took the
/// line's other unit meanwhile, priced as the first of two (floor), so a's
/// unit now completes the line and would refund the rest (one more minor
/// unit than a asks): a retry at a's old price would leave the line short,
/// so it is refused, and a new application for the unit refunds the rest.
#[test]
fn a_failed_refund_whose_share_was_priced_again_is_not_retried_at_its_old_price() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let a = applied(&mut shop, &mut f, &[("A1", 1)]).after_sale_id;
    shop.run(&mut f, admin(), review(a, true)).unwrap();
    shop.run(&mut f, provider(), refund_result(a, A1_ONE_UNIT, false))
        .unwrap();
    let b = applied(&mut shop, &mut f, &[("A1", 1)]);
    assert_eq!(b.items, [item("A1", 1, A1_ONE_UNIT)]);
    let code = refused(&mut shop, &mut f, admin(), retry(a));
    assert_eq!(code, ErrorCode::AFTER_SALE_STATUS_CHANGED);
    let c = applied(&mut shop, &mut f, &[("A1", 1)]);
    assert_eq!(c.items, [item("A1", 1, A1_PAY - A1_ONE_UNIT)]);
}

/// Four units: two single applications, then one for two that completes
/// the line and takes the rest; its refund fails and the singles are
/// revoked; a new application for two is priced at the floor of half. A
/// retry of the failed one at its old price would refund more than the
/// line's pay, so it is refused.
#[test]
fn a_retry_never_refunds_more_than_the_line_paid() {
    // A line of four whose pay leaves 2 or 3 over a multiple of 4: half of
    // it (floor) is then more than two single units' floor.
    let (mut shop, mut f) = (1..=6)
        .map(|a2| {
            let mut shop = Shop::default();
            let f = shop.create("u1", &[("A1", 4), ("A2", a2)], Some("C1"));
            (shop, f)
        })
        .find(|(_, f)| f.line(&sku_code("A1")).unwrap().pay_amount.minor() % 4 >= 2)
        .expect("a basket whose A1 line pay is 2 or 3 over a multiple of 4");
    shop.pay(&mut f, "T1").unwrap();
    let id = f.order_id;
    let line_pay = f.line(&sku_code("A1")).unwrap().pay_amount.minor();
    let one = applied(&mut shop, &mut f, &[("A1", 1)]).after_sale_id;
    let two = applied(&mut shop, &mut f, &[("A1", 1)]).after_sale_id;
    let rest = applied(&mut shop, &mut f, &[("A1", 2)]);
    let rest_amount = rest.apply_refund_amount.minor();
    assert_eq!(rest_amount, line_pay - 2 * (line_pay / 4));
    let rest = rest.after_sale_id;
    shop.run(&mut f, admin(), review(rest, true)).unwrap();
    shop.run(&mut f, provider(), refund_result(rest, rest_amount, false))
        .unwrap();
    for a in [one, two] {
        shop.run(&mut f, shopper("u1"), revoke(a)).unwrap();
    }
    let half = shop
        .run(
            &mut f,
            shopper("u1"),
            apply(id, AfterSaleType::RETURN_MONEY, &[("A1", 2)]),
        )
        .unwrap();
    let half = committed(&half).apply_refund_amount.minor();
    assert_eq!(half, line_pay * 2 / 4);
    if half + rest_amount > line_pay {
        let code = refused(&mut shop, &mut f, admin(), retry(rest));
        assert_eq!(code, ErrorCode::AFTER_SALE_STATUS_CHANGED);
    } else {
        panic!("the fixture's line pay {line_pay} splits evenly: no case");
    }
}

#[test]
fn a_failed_refund_carrying_the_shipping_cannot_be_retried_once_another_carries_it() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    applied(&mut shop, &mut f, &[("A1", 2)]);
    let a = applied(&mut shop, &mut f, &[("A2", 1)]);
    assert_eq!(a.shipping_amount, m(SHIPPING));
    let a = a.after_sale_id;
    shop.run(&mut f, admin(), review(a, true)).unwrap();
    shop.run(
        &mut f,
        provider(),
        refund_result(a, A2_PAY + SHIPPING, false),
    )
    .unwrap();
    let b = applied(&mut shop, &mut f, &[("A2", 1)]);
    assert_eq!(b.shipping_amount, m(SHIPPING));
    let code = refused(&mut shop, &mut f, admin(), retry(a));
    assert_eq!(code, ErrorCode::AFTER_SALE_STATUS_CHANGED);
}

#[test]
fn a_lack_refunds_the_lacked_share_and_counts_against_later_returns() {
    let (mut shop, mut f) = fixture(OrderStatus::FULFILLED);
    let id = f.order_id;
    let events = shop.run(&mut f, admin(), lack(id, &[("A1", 1)])).unwrap();
    let l = committed(&events);
    assert_eq!(l.items, [item("A1", 1, A1_ONE_UNIT)]);
    assert_eq!(l.reason.as_deref(), Some("lack"));
    // Only one A1 unit is left to return, and it takes the rest of the line.
    let code = refused(
        &mut shop,
        &mut f,
        shopper("u1"),
        apply(id, AfterSaleType::RETURN_MONEY, &[("A1", 2)]),
    );
    assert_eq!(code, ErrorCode::AFTER_SALE_QUANTITY_EXCEEDED);
    let a = applied(&mut shop, &mut f, &[("A1", 1)]);
    assert_eq!(a.items, [item("A1", 1, A1_PAY - A1_ONE_UNIT)]);
}

#[test]
fn a_lack_may_not_exceed_what_is_left_nor_name_another_sku() {
    let (mut shop, mut f) = fixture(OrderStatus::OUT_STOCK);
    let id = f.order_id;
    let code = refused(&mut shop, &mut f, admin(), lack(id, &[("A1", 3)]));
    assert_eq!(code, ErrorCode::AFTER_SALE_QUANTITY_EXCEEDED);
    let code = refused(&mut shop, &mut f, admin(), lack(id, &[("B1", 1)]));
    assert_eq!(code, ErrorCode::ORDER_ITEM_INVALID);
    let code = refused(&mut shop, &mut f, admin(), lack(id, &[]));
    assert_eq!(code, ErrorCode::ORDER_ITEM_INVALID);
}

#[test]
fn a_part_whose_every_unit_was_lacked_moves_no_further() {
    let (mut shop, mut f) = fixture(OrderStatus::FULFILLED);
    let id = f.order_id;
    let events = shop
        .run(&mut f, admin(), lack(id, &[("A1", 2), ("A2", 1)]))
        .unwrap();
    let l = committed(&events);
    assert_eq!(l.apply_refund_amount, m(PAY));
    assert_eq!(l.shipping_amount, m(SHIPPING));
    for event in [FulfillmentEvent::OUT_STOCK, FulfillmentEvent::DELIVERY] {
        let code = refused(&mut shop, &mut f, admin(), fulfill(id, event));
        assert_eq!(code, ErrorCode::ORDER_STATUS_CHANGED);
    }
    // A lack whose refund failed no longer refunds the part: it may move.
    let a = l.after_sale_id;
    shop.run(&mut f, provider(), refund_result(a, PAY, false))
        .unwrap();
    shop.run(&mut f, admin(), fulfill(id, FulfillmentEvent::OUT_STOCK))
        .unwrap();
    assert_eq!(f.status, OrderStatus::OUT_STOCK);
}

#[test]
fn a_part_fully_refunded_before_shipping_moves_no_further_but_can_still_be_cancelled() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let id = f.order_id;
    let a = applied(&mut shop, &mut f, &[("A1", 2), ("A2", 1)]).after_sale_id;
    // Pending, it does not stop the order yet.
    let decided = crate::decide(
        &f,
        &crate::Command {
            meta: admin(),
            action: fulfill(id, FulfillmentEvent::FULFILLED),
        },
        shop.now,
    );
    assert!(matches!(decided.as_deref(), Ok([_])));
    shop.run(&mut f, admin(), review(a, true)).unwrap();
    let code = refused(
        &mut shop,
        &mut f,
        admin(),
        fulfill(id, FulfillmentEvent::FULFILLED),
    );
    assert_eq!(code, ErrorCode::ORDER_STATUS_CHANGED);
    // Cancelling it returns the stock; the return already refunds the
    // whole payment, so no second refund is created.
    let events = shop
        .run(&mut f, shopper("u1"), cancel(id, CancelType::USER_CANCELED))
        .unwrap();
    assert_eq!(
        types(&events),
        [
            "OrderCanceled",
            "StockChanged",
            "StockChanged",
            "CouponChanged"
        ]
    );
    assert_eq!(f.after_sales.len(), 1);
    assert_eq!(stock(&shop, "A1"), (100, 0, 0));
}

#[test]
fn a_refusal_returns_every_unit_but_the_lacked_ones_and_refunds_the_rest() {
    let (mut shop, mut f) = fixture(OrderStatus::FULFILLED);
    let id = f.order_id;
    shop.run(&mut f, admin(), lack(id, &[("A1", 1)])).unwrap();
    for event in [FulfillmentEvent::OUT_STOCK, FulfillmentEvent::DELIVERY] {
        shop.run(&mut f, admin(), fulfill(id, event)).unwrap();
    }
    let events = shop
        .run(&mut f, admin(), fulfill(id, FulfillmentEvent::REFUSED))
        .unwrap();
    assert_eq!(
        stock_moves(&events),
        [("A1".into(), 1, 0, -1), ("A2".into(), 1, 0, -1)]
    );
    // The lacked unit was never there: it stays written off as sold.
    assert_eq!(stock(&shop, "A1"), (99, 0, 1));
    assert_eq!(stock(&shop, "A2"), (100, 0, 0));
    let refund = committed(&events);
    assert_refund(
        &refund,
        AfterSaleTypeDetail::ALL_REFUND,
        AfterSaleStatus::REFUNDING,
        PAY - A1_ONE_UNIT,
    );
    assert_eq!(
        refund.items,
        [item("A1", 1, A1_PAY - A1_ONE_UNIT), item("A2", 1, A2_PAY)]
    );
    assert_eq!(refund.shipping_amount, m(SHIPPING));
}

#[test]
fn a_refusal_revokes_pending_applications_and_refunds_what_they_asked_for() {
    let (mut shop, mut f) = fixture(OrderStatus::FULFILLED);
    let id = f.order_id;
    let pending = applied(&mut shop, &mut f, &[("A2", 1)]).after_sale_id;
    let approved = applied(&mut shop, &mut f, &[("A1", 1)]).after_sale_id;
    shop.run(&mut f, admin(), review(approved, true)).unwrap();
    for event in [FulfillmentEvent::OUT_STOCK, FulfillmentEvent::DELIVERY] {
        shop.run(&mut f, admin(), fulfill(id, event)).unwrap();
    }
    let events = shop
        .run(&mut f, admin(), fulfill(id, FulfillmentEvent::REFUSED))
        .unwrap();
    assert_eq!(types(&events)[0], "AfterSaleRevoked");
    assert_eq!(
        f.after_sale(&pending).unwrap().status,
        AfterSaleStatus::REVOKED
    );
    let refund = committed(&events);
    assert_eq!(
        refund.items,
        [item("A1", 1, A1_PAY - A1_ONE_UNIT), item("A2", 1, A2_PAY)]
    );
    assert_eq!(refund.apply_refund_amount, m(PAY - A1_ONE_UNIT));
    // RETURN_MONEY never restocks, but the refused parcel brings every unit back.
    assert_eq!(stock(&shop, "A1"), (100, 0, 0));
}

#[test]
fn cancelling_a_paid_order_revokes_pending_applications_and_refunds_the_rest() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let id = f.order_id;
    let pending = applied(&mut shop, &mut f, &[("A2", 1)]).after_sale_id;
    let approved = applied(&mut shop, &mut f, &[("A1", 1)]).after_sale_id;
    shop.run(&mut f, admin(), review(approved, true)).unwrap();
    let events = shop
        .run(&mut f, shopper("u1"), cancel(id, CancelType::USER_CANCELED))
        .unwrap();
    assert_eq!(types(&events)[..2], ["AfterSaleRevoked", "OrderCanceled"]);
    assert_eq!(
        f.after_sale(&pending).unwrap().status,
        AfterSaleStatus::REVOKED
    );
    let refund = committed(&events);
    assert_refund(
        &refund,
        AfterSaleTypeDetail::USER_CANCEL,
        AfterSaleStatus::REFUNDING,
        PAY - A1_ONE_UNIT,
    );
    assert_eq!(
        refund.items,
        [item("A1", 1, A1_PAY - A1_ONE_UNIT), item("A2", 1, A2_PAY)]
    );
    assert_eq!(refund.shipping_amount, m(SHIPPING));
    // Every unit goes back: RETURN_MONEY never took any out of `sold`.
    assert_eq!(stock(&shop, "A1"), (100, 0, 0));
    assert_eq!(stock(&shop, "A2"), (100, 0, 0));
}

#[test]
fn returned_goods_go_back_to_stock_once_even_when_a_failed_return_is_applied_for_again() {
    let (mut shop, mut f) = fixture(OrderStatus::SIGNED);
    let id = f.order_id;
    for round in 0..2 {
        shop.run(
            &mut f,
            shopper("u1"),
            apply(id, AfterSaleType::RETURN_GOODS, &[("A1", 2)]),
        )
        .unwrap();
        let a = last_after_sale(&f).clone();
        let events = shop
            .run(&mut f, admin(), review(a.after_sale_id, true))
            .unwrap();
        let moved = if round == 0 {
            vec![("A1".to_owned(), 2, 0, -2)]
        } else {
            // The units came back with the first return.
            vec![]
        };
        assert_eq!(stock_moves(&events), moved, "round {round}");
        assert_eq!(stock(&shop, "A1"), (100, 0, 0), "round {round}");
        assert_eq!(f.lines[0].restocked_quantity, 2, "round {round}");
        shop.run(
            &mut f,
            provider(),
            refund_result(a.after_sale_id, a.apply_refund_amount.minor(), false),
        )
        .unwrap();
    }
}

#[test]
fn a_return_of_goods_restocks_only_units_not_already_back() {
    let (mut shop, mut f) = fixture(OrderStatus::SIGNED);
    let id = f.order_id;
    shop.run(
        &mut f,
        shopper("u1"),
        apply(id, AfterSaleType::RETURN_GOODS, &[("A1", 1)]),
    )
    .unwrap();
    let a = last_after_sale(&f).clone();
    shop.run(&mut f, admin(), review(a.after_sale_id, true))
        .unwrap();
    shop.run(
        &mut f,
        provider(),
        refund_result(a.after_sale_id, A1_ONE_UNIT, false),
    )
    .unwrap();
    // Both units are returnable again (the failed one released its claim),
    // but only the one still with the shopper comes back now.
    shop.run(
        &mut f,
        shopper("u1"),
        apply(id, AfterSaleType::RETURN_GOODS, &[("A1", 2)]),
    )
    .unwrap();
    let b = last_after_sale(&f).after_sale_id;
    let events = shop.run(&mut f, admin(), review(b, true)).unwrap();
    assert_eq!(stock_moves(&events), [("A1".into(), 1, 0, -1)]);
    assert_eq!(stock(&shop, "A1"), (100, 0, 0));
    assert_eq!(f.lines[0].restocked_quantity, 2);
}

#[test]
fn a_return_of_goods_never_restocks_units_the_warehouse_lacked() {
    let (mut shop, mut f) = fixture(OrderStatus::FULFILLED);
    let id = f.order_id;
    shop.run(&mut f, admin(), lack(id, &[("A1", 1)])).unwrap();
    let l = last_after_sale(&f).after_sale_id;
    // The lack refund fails and releases its claim on the unit...
    shop.run(&mut f, provider(), refund_result(l, A1_ONE_UNIT, false))
        .unwrap();
    for event in [
        FulfillmentEvent::OUT_STOCK,
        FulfillmentEvent::DELIVERY,
        FulfillmentEvent::SIGNED,
    ] {
        shop.run(&mut f, admin(), fulfill(id, event)).unwrap();
    }
    // ...so both units may be returned, but only the delivered one exists.
    shop.run(
        &mut f,
        shopper("u1"),
        apply(id, AfterSaleType::RETURN_GOODS, &[("A1", 2)]),
    )
    .unwrap();
    let a = last_after_sale(&f).after_sale_id;
    let events = shop.run(&mut f, admin(), review(a, true)).unwrap();
    assert_eq!(stock_moves(&events), [("A1".into(), 1, 0, -1)]);
    assert_eq!(stock(&shop, "A1"), (99, 0, 1));
    assert_eq!(f.lines[0].restocked_quantity, 1);
}

/// A refund without return applied for before shipping cannot be approved
/// once the goods have left (or arrived): it would refund goods the
/// shopper keeps. It can still be rejected, which frees its units.
#[test]
fn a_refund_without_return_is_not_approved_once_the_goods_have_left() {
    for moved in [
        &[FulfillmentEvent::OUT_STOCK][..],
        &[FulfillmentEvent::OUT_STOCK, FulfillmentEvent::DELIVERY],
        &[
            FulfillmentEvent::OUT_STOCK,
            FulfillmentEvent::DELIVERY,
            FulfillmentEvent::SIGNED,
        ],
    ] {
        let (mut shop, mut f) = fixture(OrderStatus::FULFILLED);
        let id = f.order_id;
        let a = applied(&mut shop, &mut f, &[("A1", 1)]).after_sale_id;
        for step in moved {
            shop.run(&mut f, admin(), fulfill(id, *step)).unwrap();
        }
        let code = refused(&mut shop, &mut f, admin(), review(a, true));
        assert_eq!(code, ErrorCode::AFTER_SALE_CANNOT_APPLY, "after {moved:?}");
        shop.run(&mut f, admin(), review(a, false)).unwrap();
        assert_eq!(
            f.after_sale(&a).unwrap().status,
            AfterSaleStatus::REVIEW_REJECTED
        );
    }
    // Before the goods leave it is approved as ever.
    let (mut shop, mut f) = fixture(OrderStatus::FULFILLED);
    let a = applied(&mut shop, &mut f, &[("A1", 1)]).after_sale_id;
    shop.run(&mut f, admin(), review(a, true)).unwrap();
    assert_eq!(f.after_sale(&a).unwrap().status, AfterSaleStatus::REFUNDING);
}

/// Every unit refunded before it shipped: a lack finds nothing to take and
/// answers 409, as fulfillment does (README, "Rules decided").
#[test]
fn a_lack_on_a_part_whose_every_unit_was_refunded_answers_409() {
    let (mut shop, mut f) = fixture(OrderStatus::FULFILLED);
    let id = f.order_id;
    let a = applied(&mut shop, &mut f, &[("A1", 2), ("A2", 1)]).after_sale_id;
    shop.run(&mut f, admin(), review(a, true)).unwrap();
    let code = refused(&mut shop, &mut f, admin(), lack(id, &[("A1", 1)]));
    assert_eq!(code, ErrorCode::ORDER_NOT_ALLOW_TO_LACK);
}

/// A shopper who applies and revokes again and again runs out of
/// applications, not of after-sale numbers: cancelling the paid order
/// still creates its refund.
#[test]
fn applications_cannot_use_up_the_numbers_system_refunds_need() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let id = f.order_id;
    for _ in 0..crate::limits::SHOPPER_AFTER_SALES_PER_FAMILY_MAX {
        let a = applied(&mut shop, &mut f, &[("A1", 1)]).after_sale_id;
        shop.run(&mut f, shopper("u1"), revoke(a)).unwrap();
    }
    let code = refused(
        &mut shop,
        &mut f,
        shopper("u1"),
        apply(id, AfterSaleType::RETURN_MONEY, &[("A1", 1)]),
    );
    assert_eq!(code, ErrorCode::AFTER_SALE_LIMIT);
    let events = shop
        .run(&mut f, shopper("u1"), cancel(id, CancelType::USER_CANCELED))
        .unwrap();
    assert!(
        types(&events).contains(&"RefundRequested"),
        "{:?}",
        types(&events)
    );
    assert_eq!(f.status, OrderStatus::CANCELED);
}
