//! Command-by-command tests of the order and after-sale state tables
//! (API.md, "Order state machine" and "After-sale"), creation, payments,
//! refunds, mixed families, versions, idempotency and dry runs.
//!
//! Most tests start from [`fixture`]: a single order of user `u1` for
//! A1×2 + A2×1 with coupon C1, brought to one of the eight states of the
//! order table. Its numbers are chosen so that every refund rule shows:
//! origin 10500, discount 1000 split 571 / 429 (rounded down, the last line
//! taking the rest), shipping 1000 (9500 is below the 9900 threshold), real
//! pay 10500; line A1 pays 5429 for 2 units (one unit refunds 2714), line A2
//! pays 4071.

use crate::codes::{
    AfterSaleStatus, AfterSaleType, AfterSaleTypeDetail, CancelType, CouponStatus,
    FulfillmentEvent, OrderStatus, PayType,
};
use crate::command::Action;
use crate::error::{DomainError, ErrorCode};
use crate::event::{Event, EventBody};
use crate::family::{AfterSale, AfterSaleItem, OrderFamily};
use crate::ids::{AfterSaleId, OrderId, SkuCode, TradeNo};
use crate::money::{Money, Quantity};
use crate::testkit::*;

mod after_sale;
mod audit;
mod create;
mod mixed;
mod payment;
mod refunds;
mod state_table;

/// The fixture basket: A1×2 + A2×1, with coupon C1.
const BASKET: &[(&str, Quantity)] = &[("A1", 2), ("A2", 1)];
const PAY: i64 = 10_500;
const A1_PAY: i64 = 5_429;
const A2_PAY: i64 = 4_071;
const SHIPPING: i64 = 1_000;
/// floor(5429 × 1 / 2).
const A1_ONE_UNIT: i64 = 2_714;

/// The eight states of API.md's order table, in its column order.
const STATES: [OrderStatus; 8] = [
    OrderStatus::CREATED,
    OrderStatus::PAID,
    OrderStatus::FULFILLED,
    OrderStatus::OUT_STOCK,
    OrderStatus::DELIVERY,
    OrderStatus::SIGNED,
    OrderStatus::CANCELED,
    OrderStatus::REFUSED,
];

/// (available, locked, sold) of a SKU.
type Stock = (i64, i64, i64);

fn stock(shop: &Shop, code: &str) -> Stock {
    let s = shop.sku(code);
    (s.available, s.locked, s.sold)
}

fn m(minor: i64) -> Money {
    Money::from_minor(minor)
}

fn trade(t: &str) -> TradeNo {
    TradeNo::parse(t).unwrap()
}

/// The event types of a change, in order.
fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.body.type_name()).collect()
}

/// The error code of a refused command.
fn code_of(result: Result<Vec<Event>, DomainError>) -> ErrorCode {
    match result {
        Ok(events) => panic!("expected a refusal, got {:?}", types(&events)),
        Err(e) => e.code(),
    }
}

/// Runs a command that must be refused; checks that neither the family nor
/// the catalog changed and returns the code.
fn refused(
    shop: &mut Shop,
    family: &mut OrderFamily,
    meta: crate::command::CommandMeta,
    action: Action,
) -> ErrorCode {
    let (family_before, skus_before, coupons_before) =
        (family.clone(), shop.skus.clone(), shop.coupons.clone());
    let code = code_of(shop.run(family, meta, action));
    assert_eq!(
        *family, family_before,
        "a refused command changed the family"
    );
    assert_eq!(shop.skus, skus_before, "a refused command moved stock");
    assert_eq!(
        shop.coupons, coupons_before,
        "a refused command moved a coupon"
    );
    code
}

/// Runs a command that must be accepted without any change.
fn no_op(
    shop: &mut Shop,
    family: &mut OrderFamily,
    meta: crate::command::CommandMeta,
    action: Action,
) {
    let before = family.clone();
    let events = shop.run(family, meta, action).unwrap();
    assert_eq!(types(&events), Vec::<&str>::new());
    assert_eq!(*family, before);
}

/// A shop and the fixture order brought to `status`: paid with trade T1
/// (every state but CREATED and CANCELED), CANCELED by its user while
/// unpaid, REFUSED at delivery.
fn fixture(status: OrderStatus) -> (Shop, OrderFamily) {
    let mut shop = Shop::default();
    let mut family = shop.create("u1", BASKET, Some("C1"));
    let id = family.order_id;
    let steps: &[FulfillmentEvent] = match status {
        OrderStatus::CREATED => &[],
        OrderStatus::CANCELED => {
            shop.run(
                &mut family,
                shopper("u1"),
                cancel(id, CancelType::USER_CANCELED),
            )
            .unwrap();
            &[]
        }
        OrderStatus::PAID => &[],
        OrderStatus::FULFILLED => &[FulfillmentEvent::FULFILLED],
        OrderStatus::OUT_STOCK => &[FulfillmentEvent::FULFILLED, FulfillmentEvent::OUT_STOCK],
        OrderStatus::DELIVERY => &[
            FulfillmentEvent::FULFILLED,
            FulfillmentEvent::OUT_STOCK,
            FulfillmentEvent::DELIVERY,
        ],
        OrderStatus::SIGNED => &[
            FulfillmentEvent::FULFILLED,
            FulfillmentEvent::OUT_STOCK,
            FulfillmentEvent::DELIVERY,
            FulfillmentEvent::SIGNED,
        ],
        OrderStatus::REFUSED => &[
            FulfillmentEvent::FULFILLED,
            FulfillmentEvent::OUT_STOCK,
            FulfillmentEvent::DELIVERY,
            FulfillmentEvent::REFUSED,
        ],
        OrderStatus::INVALID => panic!("no single order is INVALID"),
    };
    if !matches!(status, OrderStatus::CREATED | OrderStatus::CANCELED) {
        shop.pay(&mut family, "T1").unwrap();
    }
    for step in steps {
        shop.run(&mut family, admin(), fulfill(id, *step)).unwrap();
    }
    assert_eq!(family.status, status);
    (shop, family)
}

/// Whether the fixture in `status` has been paid.
fn paid_state(status: OrderStatus) -> bool {
    !matches!(status, OrderStatus::CREATED | OrderStatus::CANCELED)
}

// ----- actions -----

fn prepay(family: &OrderFamily, id: OrderId) -> Action {
    Action::PrePay {
        order_id: id,
        pay_type: PayType::ALI_PAY,
        pay_amount: family.amounts.real_pay,
    }
}

/// A pay callback for `id` with `trade_no` and the order's amount.
fn pay_for(family: &OrderFamily, id: OrderId, trade_no: &str) -> Action {
    match pay_action(family, trade_no) {
        Action::PayCallback {
            out_trade_no,
            pay_type,
            pay_amount,
            trade_no,
            paid_at,
            ..
        } => Action::PayCallback {
            order_id: id,
            out_trade_no,
            pay_type,
            pay_amount,
            trade_no,
            paid_at,
        },
        other => other,
    }
}

fn cancel(id: OrderId, cancel_type: CancelType) -> Action {
    Action::Cancel {
        order_id: id,
        cancel_type,
    }
}

fn deadline(id: OrderId) -> Action {
    Action::Deadline { order_id: id }
}

fn new_address(id: OrderId) -> Action {
    Action::AdjustAddress {
        order_id: id,
        address: address("99 New Street"),
    }
}

fn new_address_2(id: OrderId) -> Action {
    Action::AdjustAddress {
        order_id: id,
        address: address("7 Second Street"),
    }
}

fn fulfill(id: OrderId, event: FulfillmentEvent) -> Action {
    Action::Fulfill {
        order_id: id,
        event,
        logistics_code: Some("SF123".into()),
        operator: Some("warehouse-1".into()),
    }
}

fn items(list: &[(&str, Quantity)]) -> Vec<(SkuCode, Quantity)> {
    list.iter().map(|(c, q)| (sku_code(c), *q)).collect()
}

fn apply(id: OrderId, after_sale_type: AfterSaleType, list: &[(&str, Quantity)]) -> Action {
    Action::ApplyAfterSale {
        order_id: id,
        after_sale_type,
        items: items(list),
        reason: "changed my mind".into(),
        images: Vec::new(),
    }
}

fn review(id: AfterSaleId, approved: bool) -> Action {
    Action::ReviewAfterSale {
        after_sale_id: id,
        approved,
        remark: Some("checked".into()),
    }
}

fn revoke(id: AfterSaleId) -> Action {
    Action::RevokeAfterSale { after_sale_id: id }
}

fn refund_result(id: AfterSaleId, amount: i64, success: bool) -> Action {
    Action::RefundResult {
        after_sale_id: id,
        refund_amount: m(amount),
        success,
        refunded_at: t0(),
    }
}

fn retry(id: AfterSaleId) -> Action {
    Action::RetryRefund { after_sale_id: id }
}

fn lack(id: OrderId, list: &[(&str, Quantity)]) -> Action {
    Action::Lack {
        order_id: id,
        items: items(list),
    }
}

fn remove(id: OrderId) -> Action {
    Action::Remove { order_id: id }
}

fn note(id: OrderId) -> Action {
    Action::AddNote {
        order_id: id,
        text: "customer called".into(),
    }
}

// ----- reading results -----

/// The after-sale a change committed.
fn committed(events: &[Event]) -> AfterSale {
    events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AfterSaleCommitted(a) => Some((**a).clone()),
            _ => None,
        })
        .expect("the change commits an after-sale")
}

/// The latest after-sale of a family.
fn last_after_sale(family: &OrderFamily) -> &AfterSale {
    family.after_sales.last().expect("an after-sale")
}

fn item(sku: &str, quantity: Quantity, refund: i64) -> AfterSaleItem {
    AfterSaleItem {
        sku_code: sku_code(sku),
        quantity,
        refund_amount: m(refund),
    }
}

/// (sku, available, locked, sold deltas) of the stock events of a change.
fn stock_moves(events: &[Event]) -> Vec<(String, i64, i64, i64)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::StockChanged(d) => Some((
                d.sku_code.as_str().to_owned(),
                d.available_delta,
                d.locked_delta,
                d.sold_delta,
            )),
            _ => None,
        })
        .collect()
}

fn coupon_moves(events: &[Event]) -> Vec<CouponStatus> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::CouponChanged(c) => Some(c.status),
            _ => None,
        })
        .collect()
}

fn assert_refund(a: &AfterSale, detail: AfterSaleTypeDetail, status: AfterSaleStatus, amount: i64) {
    assert_eq!(a.detail, detail, "detail of {a:?}");
    assert_eq!(a.status, status, "status of {a:?}");
    assert_eq!(a.apply_refund_amount, m(amount), "amount of {a:?}");
}

#[test]
fn a_fixture_order_is_created_with_its_stock_locked() {
    let mut shop = Shop::default();
    let family = shop.create("u1", &[("A1", 2)], None);
    assert_eq!(family.version, 1);
    assert_eq!(shop.sku("A1").locked, 2);
    assert_eq!(shop.sku("A1").available, 98);
}

#[test]
fn the_fixture_reaches_every_state_with_its_stock_coupon_and_amounts() {
    for status in STATES {
        let (shop, family) = fixture(status);
        let lines: Vec<_> = family
            .lines
            .iter()
            .map(|l| (l.discount_amount.minor(), l.pay_amount.minor()))
            .collect();
        assert_eq!(lines, [(571, A1_PAY), (429, A2_PAY)]);
        assert_eq!(family.amounts.shipping, m(SHIPPING));
        assert_eq!(family.amounts.real_pay, m(PAY));
        let (a1, a2, coupon) = match status {
            OrderStatus::CREATED => ((98, 2, 0), (99, 1, 0), CouponStatus::LOCKED),
            OrderStatus::CANCELED | OrderStatus::REFUSED => {
                let coupon = if status == OrderStatus::CANCELED {
                    CouponStatus::UNUSED
                } else {
                    CouponStatus::USED
                };
                ((100, 0, 0), (100, 0, 0), coupon)
            }
            _ => ((98, 0, 2), (99, 0, 1), CouponStatus::USED),
        };
        assert_eq!(stock(&shop, "A1"), a1, "{status}");
        assert_eq!(stock(&shop, "A2"), a2, "{status}");
        assert_eq!(shop.coupon("C1").status, coupon, "{status}");
        assert_eq!(family.is_paid(), paid_state(status), "{status}");
    }
}
