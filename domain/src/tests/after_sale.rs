//! API.md's after-sale transitions: every command in every state an
//! after-sale can rest in.

use super::*;

/// The states an after-sale rests in (REVIEW_PASS is passed through in the
/// same change as REFUNDING and never rests).
const AFTER_SALE_STATES: [AfterSaleStatus; 6] = [
    AfterSaleStatus::COMMITTED,
    AfterSaleStatus::REVIEW_REJECTED,
    AfterSaleStatus::REFUNDING,
    AfterSaleStatus::REFUNDED,
    AfterSaleStatus::FAILED,
    AfterSaleStatus::REVOKED,
];

/// A paid fixture order with one RETURN_MONEY after-sale for one unit of
/// A1 (refund 2714), brought to `status`.
fn after_sale_in(status: AfterSaleStatus) -> (Shop, OrderFamily, AfterSaleId) {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let id = f.order_id;
    shop.run(
        &mut f,
        shopper("u1"),
        apply(id, AfterSaleType::RETURN_MONEY, &[("A1", 1)]),
    )
    .unwrap();
    let a = last_after_sale(&f).after_sale_id;
    let steps: Vec<(crate::command::CommandMeta, Action)> = match status {
        AfterSaleStatus::COMMITTED => vec![],
        AfterSaleStatus::REVIEW_REJECTED => vec![(admin(), review(a, false))],
        AfterSaleStatus::REFUNDING => vec![(admin(), review(a, true))],
        AfterSaleStatus::REFUNDED => vec![
            (admin(), review(a, true)),
            (provider(), refund_result(a, A1_ONE_UNIT, true)),
        ],
        AfterSaleStatus::FAILED => vec![
            (admin(), review(a, true)),
            (provider(), refund_result(a, A1_ONE_UNIT, false)),
        ],
        AfterSaleStatus::REVOKED => vec![(shopper("u1"), revoke(a))],
        AfterSaleStatus::REVIEW_PASS => panic!("REVIEW_PASS never rests"),
    };
    for (meta, action) in steps {
        shop.run(&mut f, meta, action).unwrap();
    }
    assert_eq!(f.after_sale(&a).unwrap().status, status);
    (shop, f, a)
}

/// What an after-sale command does in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Moves the after-sale to this status with these events.
    To(AfterSaleStatus, &'static [&'static str]),
    /// The outcome already recorded: 200, no change.
    Same,
    /// 409 AFTER_SALE_STATUS_CHANGED.
    Conflict,
}

#[test]
fn every_after_sale_command_in_every_state() {
    use AfterSaleStatus as S;
    use Outcome::{Conflict as X, Same as Eq, To};
    const REVOKED: Outcome = To(S::REVOKED, &["AfterSaleRevoked"]);
    const APPROVED: Outcome = To(S::REFUNDING, &["AfterSaleReviewed", "RefundRequested"]);
    const REJECTED: Outcome = To(S::REVIEW_REJECTED, &["AfterSaleReviewed"]);
    const DONE: Outcome = To(S::REFUNDED, &["RefundCompleted"]);
    const FAILED: Outcome = To(S::FAILED, &["RefundFailed"]);
    const RETRIED: Outcome = To(S::REFUNDING, &["RefundRequested"]);
    // Columns: revoke, approve, reject, refund success, refund failure, retry.
    let table: [(AfterSaleStatus, [Outcome; 6]); 6] = [
        (S::COMMITTED, [REVOKED, APPROVED, REJECTED, X, X, X]),
        (S::REVIEW_REJECTED, [X, X, Eq, X, X, X]),
        (S::REFUNDING, [X, Eq, X, DONE, FAILED, X]),
        (S::REFUNDED, [X, Eq, X, Eq, X, X]),
        (S::FAILED, [X, Eq, X, X, Eq, RETRIED]),
        (S::REVOKED, [Eq, X, X, X, X, X]),
    ];
    assert_eq!(table.map(|(s, _)| s), AFTER_SALE_STATES);
    for (status, row) in table {
        for (column, expected) in row.into_iter().enumerate() {
            let (mut shop, mut f, a) = after_sale_in(status);
            let (meta, action) = match column {
                0 => (shopper("u1"), revoke(a)),
                1 => (admin(), review(a, true)),
                2 => (admin(), review(a, false)),
                3 => (provider(), refund_result(a, A1_ONE_UNIT, true)),
                4 => (provider(), refund_result(a, A1_ONE_UNIT, false)),
                _ => (admin(), retry(a)),
            };
            let what = format!("{status} / column {column}");
            match expected {
                To(to, names) => {
                    let version = f.version;
                    let events = shop.run(&mut f, meta, action).unwrap();
                    assert_eq!(types(&events), names, "{what}");
                    assert_eq!(f.after_sale(&a).unwrap().status, to, "{what}");
                    assert_eq!(f.version, version + 1, "{what}");
                    // RETURN_MONEY never moves stock, and the order stays put.
                    assert_eq!(stock(&shop, "A1"), (98, 0, 2), "{what}");
                    assert_eq!(f.status, OrderStatus::PAID, "{what}");
                }
                Outcome::Same => no_op(&mut shop, &mut f, meta, action),
                Outcome::Conflict => {
                    let code = refused(&mut shop, &mut f, meta, action);
                    assert_eq!(code, ErrorCode::AFTER_SALE_STATUS_CHANGED, "{what}");
                }
            }
        }
    }
}

#[test]
fn a_refund_callback_with_another_amount_is_refused_in_every_state() {
    for status in AFTER_SALE_STATES {
        for success in [true, false] {
            let (mut shop, mut f, a) = after_sale_in(status);
            let action = refund_result(a, A1_ONE_UNIT - 1, success);
            let code = refused(&mut shop, &mut f, provider(), action);
            assert_eq!(code, ErrorCode::REFUND_AMOUNT_MISMATCH, "{status}");
        }
    }
}

#[test]
fn refund_results_record_their_time_and_the_review_its_remark() {
    let (mut shop, mut f, a) = after_sale_in(AfterSaleStatus::REFUNDING);
    assert_eq!(
        f.after_sale(&a).unwrap().review_remark.as_deref(),
        Some("checked")
    );
    shop.now = shop.now.plus_millis(5_000);
    let at = shop.now;
    let events = shop
        .run(
            &mut f,
            provider(),
            Action::RefundResult {
                after_sale_id: a,
                refund_amount: m(A1_ONE_UNIT),
                success: true,
                refunded_at: at,
            },
        )
        .unwrap();
    assert_eq!(types(&events), ["RefundCompleted"]);
    let after = f.after_sale(&a).unwrap();
    assert_eq!(after.refunded_at, Some(at));
    assert_eq!(after.updated_at, at);
    // A partial refund leaves the payment REFUNDING; it is REFUNDED only
    // when the whole of it is.
    assert_eq!(f.pay_status(), crate::codes::PayStatus::REFUNDING);
}

/// A failure callback the provider sends again after the admin retried
/// (webhooks come at least once) is the failure already recorded: no
/// change. Taken as a failure of the retried refund, it would leave the
/// after-sale FAILED while that refund goes through, and a second retry
/// would refund twice.
#[test]
fn a_failure_callback_repeated_after_a_retry_changes_nothing() {
    let (mut shop, mut f, a) = after_sale_in(AfterSaleStatus::REFUNDING);
    let result = |success: bool, at: crate::Timestamp| Action::RefundResult {
        after_sale_id: a,
        refund_amount: m(A1_ONE_UNIT),
        success,
        refunded_at: at,
    };
    let first_failure = shop.now.plus_millis(1_000);
    let events = shop.run(&mut f, provider(), result(false, first_failure));
    assert_eq!(types(&events.unwrap()), ["RefundFailed"]);
    shop.now = shop.now.plus_millis(60_000);
    let retried = shop.run(&mut f, admin(), Action::RetryRefund { after_sale_id: a });
    assert_eq!(types(&retried.unwrap()), ["RefundRequested"]);

    let repeated = shop.run(&mut f, provider(), result(false, first_failure));
    assert_eq!(repeated.unwrap(), Vec::new());
    assert_eq!(f.after_sale(&a).unwrap().status, AfterSaleStatus::REFUNDING);

    // The retried refund's own failure is recorded, then its retry's success.
    let second_failure = shop.now.plus_millis(2_000);
    let events = shop.run(&mut f, provider(), result(false, second_failure));
    assert_eq!(types(&events.unwrap()), ["RefundFailed"]);
    assert_eq!(f.after_sale(&a).unwrap().status, AfterSaleStatus::FAILED);
    shop.run(&mut f, admin(), Action::RetryRefund { after_sale_id: a })
        .unwrap();
    let refunded = shop.now.plus_millis(3_000);
    let events = shop.run(&mut f, provider(), result(true, refunded));
    assert_eq!(types(&events.unwrap()), ["RefundCompleted"]);
    assert_eq!(f.after_sale(&a).unwrap().refunded_at, Some(refunded));

    // Either failure sent again now: the same callback, 200 with no change;
    // a failure reported after the refund is not one recorded: 409.
    for at in [first_failure, second_failure] {
        let repeated = shop.run(&mut f, provider(), result(false, at));
        assert_eq!(repeated.unwrap(), Vec::new());
    }
    let code = refused(
        &mut shop,
        &mut f,
        provider(),
        result(false, refunded.plus_millis(1)),
    );
    assert_eq!(code, ErrorCode::AFTER_SALE_STATUS_CHANGED);
    assert_eq!(f.after_sale(&a).unwrap().status, AfterSaleStatus::REFUNDED);
}

/// A failure journalled by an earlier build (`RefundFailed`, without the
/// callback's time) still applies: FAILED, and no failure time to compare
/// a repeat with.
#[test]
fn a_refund_failure_of_an_earlier_build_still_applies() {
    let (shop, mut f, a) = after_sale_in(AfterSaleStatus::REFUNDING);
    let event = Event {
        seq: 0,
        at: shop.now,
        actor: provider().actor,
        request_id: None,
        reason: None,
        version: f.version + 1,
        body: EventBody::RefundFailed {
            after_sale_id: a,
            refund_amount: m(A1_ONE_UNIT),
        },
    };
    f.apply(&event);
    let after = f.after_sale(&a).unwrap();
    assert_eq!(after.status, AfterSaleStatus::FAILED);
    assert_eq!(after.refunded_at, None);
    assert_eq!(f.history.last().unwrap().body.type_name(), "RefundFailed");
}

#[test]
fn unknown_after_sale_ids_are_not_found() {
    let (mut shop, mut f, a) = after_sale_in(AfterSaleStatus::COMMITTED);
    let other = f.order_id.after_sale_id(7).unwrap();
    assert_ne!(other, a);
    for (meta, action) in [
        (shopper("u1"), revoke(other)),
        (admin(), review(other, true)),
        (provider(), refund_result(other, 1, true)),
        (admin(), retry(other)),
    ] {
        let code = refused(&mut shop, &mut f, meta, action);
        assert_eq!(code, ErrorCode::AFTER_SALE_NOT_FOUND);
    }
}

#[test]
fn system_refunds_start_refunding_and_cannot_be_revoked_or_reviewed_away() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let id = f.order_id;
    shop.run(&mut f, shopper("u1"), cancel(id, CancelType::USER_CANCELED))
        .unwrap();
    let a = last_after_sale(&f).after_sale_id;
    assert_eq!(
        refused(&mut shop, &mut f, shopper("u1"), revoke(a)),
        ErrorCode::AFTER_SALE_STATUS_CHANGED
    );
    assert_eq!(
        refused(&mut shop, &mut f, admin(), review(a, false)),
        ErrorCode::AFTER_SALE_STATUS_CHANGED
    );
    no_op(&mut shop, &mut f, admin(), review(a, true));
    // Failure, retry, success: the payment ends REFUNDED.
    shop.run(&mut f, provider(), refund_result(a, PAY, false))
        .unwrap();
    assert_eq!(f.pay_status(), crate::codes::PayStatus::REFUNDING);
    let events = shop.run(&mut f, admin(), retry(a)).unwrap();
    match &events[0].body {
        EventBody::RefundRequested {
            after_sale_id,
            order_id,
            trade_no,
            refund_amount,
        } => {
            assert_eq!(*after_sale_id, a);
            assert_eq!(*order_id, id);
            assert_eq!(trade_no.as_ref(), Some(&trade("T1")));
            assert_eq!(*refund_amount, m(PAY));
        }
        other => panic!("unexpected {other:?}"),
    }
    shop.run(&mut f, provider(), refund_result(a, PAY, true))
        .unwrap();
    assert_eq!(f.after_sale(&a).unwrap().status, AfterSaleStatus::REFUNDED);
    assert_eq!(f.pay_status(), crate::codes::PayStatus::REFUNDED);
}

#[test]
fn approving_returned_goods_restocks_them_and_returned_money_does_not() {
    // RETURN_GOODS on a signed order: approval puts the units back.
    let (mut shop, mut f) = fixture(OrderStatus::SIGNED);
    let id = f.order_id;
    shop.run(
        &mut f,
        shopper("u1"),
        apply(id, AfterSaleType::RETURN_GOODS, &[("A1", 2)]),
    )
    .unwrap();
    let a = last_after_sale(&f).after_sale_id;
    assert_eq!(
        stock(&shop, "A1"),
        (98, 0, 2),
        "nothing moves before review"
    );
    let events = shop.run(&mut f, admin(), review(a, true)).unwrap();
    assert_eq!(
        types(&events),
        ["AfterSaleReviewed", "StockChanged", "RefundRequested"]
    );
    assert_eq!(stock_moves(&events), [("A1".into(), 2, 0, -2)]);
    assert_eq!(stock(&shop, "A1"), (100, 0, 0));
    assert_eq!(f.lines[0].restocked_quantity, 2);
    // A rejected return of goods moves nothing.
    shop.run(
        &mut f,
        shopper("u1"),
        apply(id, AfterSaleType::RETURN_GOODS, &[("A2", 1)]),
    )
    .unwrap();
    let b = last_after_sale(&f).after_sale_id;
    let events = shop.run(&mut f, admin(), review(b, false)).unwrap();
    assert_eq!(types(&events), ["AfterSaleReviewed"]);
    assert_eq!(stock(&shop, "A2"), (99, 0, 1));

    // RETURN_MONEY before the goods leave: approval refunds, no restock.
    let (mut shop, mut f) = fixture(OrderStatus::FULFILLED);
    let id = f.order_id;
    shop.run(
        &mut f,
        shopper("u1"),
        apply(id, AfterSaleType::RETURN_MONEY, &[("A1", 2)]),
    )
    .unwrap();
    let a = last_after_sale(&f).after_sale_id;
    let events = shop.run(&mut f, admin(), review(a, true)).unwrap();
    assert_eq!(types(&events), ["AfterSaleReviewed", "RefundRequested"]);
    assert_eq!(stock(&shop, "A1"), (98, 0, 2));
    assert_eq!(f.lines[0].restocked_quantity, 0);
}
