//! Property tests: random baskets price exactly, and random command
//! sequences on random orders never leave API.md's state tables or break
//! DESIGN.md's invariants (stock conservation, one live coupon holder,
//! refunds within what was paid, a trade_no applied once, replay).
//!
//! Each property counts the cases it actually reached (a refund, a cancel of
//! a paid order, a lack, ...) and fails if one was never generated, so a
//! generator that drifts away from a case cannot pass silently.

use std::cell::RefCell;
use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::codes::{
    AfterSaleStatus, AfterSaleType, AfterSaleTypeDetail, CancelType, CouponStatus,
    FulfillmentEvent, OrderStatus, PayType, ProductType,
};
use crate::command::{Action, Command, CommandMeta};
use crate::error::{DomainError, ErrorCode};
use crate::event::{ActorKind, Event, EventBody};
use crate::family::{AfterSale, AfterSaleItem, OrderFamily, PartRef};
use crate::ids::{CouponId, OrderId, SkuCode, TradeNo};
use crate::money::{Money, Quantity};
use crate::pricing::PricingRules;
use crate::testkit::*;

/// Cases per property: enough to reach every counted case many times,
/// few enough to keep each property under a few seconds.
const CASES: u32 = 256;

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

/// How often each named case was reached.
#[derive(Debug, Default)]
struct Counts(RefCell<BTreeMap<&'static str, u64>>);

impl Counts {
    fn hit(&self, what: &'static str) {
        *self.0.borrow_mut().entry(what).or_default() += 1;
    }

    fn assert_reached(&self, names: &[&'static str]) {
        let counts = self.0.borrow();
        let missing: Vec<_> = names
            .iter()
            .filter(|n| counts.get(*n).copied().unwrap_or(0) == 0)
            .collect();
        assert!(
            missing.is_empty(),
            "never reached {missing:?}; reached {counts:?}"
        );
    }
}

fn run_property<S: Strategy>(strategy: S, test: impl Fn(S::Value)) {
    let result = runner().run(&strategy, |value| {
        test(value);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn m(minor: i64) -> Money {
    Money::from_minor(minor)
}

// ===== pricing =====

#[derive(Debug, Clone)]
struct Basket {
    /// (price, quantity, advance sale) per line.
    lines: Vec<(i64, Quantity, bool)>,
    /// (amount, threshold) of the shopper's coupon.
    coupon: Option<(i64, i64)>,
    shipping_fee: i64,
    free_shipping_threshold: i64,
}

fn basket() -> impl Strategy<Value = Basket> {
    // Small prices and coupons as well as large ones, so that discounts
    // close to the whole origin, zero-price lines and waived and charged
    // shipping all show up.
    let price = prop_oneof![4 => 0..=1_000_000i64, 3 => 0..=60i64, 2 => Just(0i64), 1 => 1..=2i64];
    let coupon_amount = prop_oneof![1..=3_000_000i64, 1..=300i64, Just(1_000_000_000i64)];
    let threshold = prop_oneof![0..=5_000_000i64, 0..=500i64];
    // A last line worth (almost) nothing is where the rounded-down shares
    // can leave a remainder larger than the last line.
    let tail = prop::option::weighted(
        0.5,
        (
            prop_oneof![2 => Just(0i64), 1 => 1..=2i64],
            1..=50u32,
            any::<bool>(),
        ),
    );
    (
        prop::collection::vec((price, 1..=50u32, any::<bool>()), 1..=4),
        tail,
        prop::option::of((coupon_amount, threshold)),
        0..=5_000i64,
        prop_oneof![0..=20_000_000i64, 0..=2_000i64],
    )
        .prop_map(
            |(mut lines, tail, coupon, shipping_fee, free_shipping_threshold)| {
                lines.extend(tail);
                Basket {
                    lines,
                    coupon,
                    shipping_fee,
                    free_shipping_threshold,
                }
            },
        )
}

/// The discount shares API.md prescribes: each line's share of the
/// discount in proportion to its origin, rounded down, the last line taking
/// the remainder; what the last line cannot hold goes to the earlier lines
/// in request order, up to each one's origin. Also says whether that last
/// case happened.
fn expected_shares(discount: i64, origins: &[i64]) -> (Vec<i64>, bool) {
    let total: i64 = origins.iter().sum();
    if discount == 0 || total == 0 {
        return (vec![0; origins.len()], false);
    }
    let last = origins.len() - 1;
    let mut shares: Vec<i64> = origins[..last]
        .iter()
        .map(|o| i64::try_from(i128::from(discount) * i128::from(*o) / i128::from(total)).unwrap())
        .collect();
    let remainder = discount - shares.iter().sum::<i64>();
    if remainder <= origins[last] {
        shares.push(remainder);
        return (shares, false);
    }
    shares.push(origins[last]);
    let mut excess = remainder - origins[last];
    for (share, origin) in shares.iter_mut().zip(origins) {
        let take = (origin - *share).min(excess);
        *share += take;
        excess -= take;
    }
    assert_eq!(excess, 0);
    (shares, true)
}

fn check_basket(b: &Basket, counts: &Counts) {
    let mut shop = Shop::default();
    shop.skus = b
        .lines
        .iter()
        .enumerate()
        .map(|(i, (price, _, advance))| {
            let product_type = if *advance {
                ProductType::ADVANCE_SALE
            } else {
                ProductType::NORMAL_PRODUCT
            };
            sku(&format!("S{i}"), product_type, *price, 1_000)
        })
        .collect();
    shop.coupons = b
        .coupon
        .map(|(amount, threshold)| coupon("CP", "u1", amount, threshold))
        .into_iter()
        .collect();
    shop.pricing = PricingRules {
        shipping_fee: m(b.shipping_fee),
        free_shipping_threshold: m(b.free_shipping_threshold),
    };
    let codes: Vec<String> = (0..b.lines.len()).map(|i| format!("S{i}")).collect();
    let items: Vec<(&str, Quantity)> = codes
        .iter()
        .zip(&b.lines)
        .map(|(c, (_, q, _))| (c.as_str(), *q))
        .collect();
    let f = shop.create("u1", &items, b.coupon.map(|_| "CP"));

    // The rules of API.md, computed here independently.
    let origins: Vec<i64> = b.lines.iter().map(|(p, q, _)| p * i64::from(*q)).collect();
    let origin: i64 = origins.iter().sum();
    let threshold_met = b.coupon.is_some_and(|(_, t)| origin >= t);
    let discount = match b.coupon {
        Some((amount, _)) if threshold_met => amount.min(origin),
        _ => 0,
    };
    let after_discount = origin - discount;
    let shipping = if after_discount >= b.free_shipping_threshold {
        0
    } else {
        b.shipping_fee
    };
    let a = f.amounts;
    assert_eq!(a.origin, m(origin));
    assert_eq!(a.discount, m(discount));
    assert_eq!(a.shipping, m(shipping));
    assert_eq!(a.real_pay, m(after_discount + shipping));
    assert!(a.discount <= a.origin);
    assert_eq!(f.payment.pay_amount, a.real_pay);

    // Lines: exact shares, never negative, adding up to the order.
    let (shares, overflowed) = expected_shares(discount, &origins);
    for ((line, share), origin) in f.lines.iter().zip(&shares).zip(&origins) {
        assert_eq!(line.origin_amount, m(*origin));
        assert_eq!(line.discount_amount, m(*share));
        assert!(line.discount_amount >= Money::ZERO && line.discount_amount <= line.origin_amount);
        assert_eq!(line.pay_amount, m(origin - share));
        assert!(line.pay_amount >= Money::ZERO);
    }
    let line_pay: i64 = f.lines.iter().map(|l| l.pay_amount.minor()).sum();
    assert_eq!(line_pay + a.shipping.minor(), a.real_pay.minor());

    // The coupon is locked only when it gives its discount.
    assert_eq!(f.coupon.is_some(), threshold_met);
    if b.coupon.is_some() {
        let expected = if threshold_met {
            CouponStatus::LOCKED
        } else {
            CouponStatus::UNUSED
        };
        assert_eq!(shop.coupon("CP").status, expected);
    }

    // Sub-orders: one per product type when mixed, shipping on the lowest.
    let mixed = b.lines.iter().any(|l| l.2) && b.lines.iter().any(|l| !l.2);
    assert_eq!(f.sub_orders.len(), if mixed { 2 } else { 0 });
    if mixed {
        let sum = |get: fn(&crate::order::Amounts) -> Money| -> i64 {
            f.sub_orders.iter().map(|s| get(&s.amounts).minor()).sum()
        };
        assert_eq!(sum(|x| x.real_pay), a.real_pay.minor());
        assert_eq!(sum(|x| x.origin), a.origin.minor());
        assert_eq!(sum(|x| x.discount), a.discount.minor());
        assert_eq!(f.sub_orders[0].product_type, ProductType::NORMAL_PRODUCT);
        assert_eq!(f.sub_orders[0].amounts.shipping, a.shipping);
        assert_eq!(f.sub_orders[1].amounts.shipping, Money::ZERO);
        for sub in &f.sub_orders {
            assert!(sub.amounts.is_consistent());
            let pay: i64 = f
                .lines
                .iter()
                .filter(|l| l.product_type == sub.product_type)
                .map(|l| l.pay_amount.minor())
                .sum();
            assert_eq!(
                pay + sub.amounts.shipping.minor(),
                sub.amounts.real_pay.minor()
            );
        }
        counts.hit("mixed");
    }
    for (i, (_, q, _)) in b.lines.iter().enumerate() {
        assert_eq!(shop.sku(&format!("S{i}")).locked, i64::from(*q));
    }

    if discount > 0 {
        counts.hit("discounted");
    }
    if discount > 0 && discount == origin {
        counts.hit("discount_is_the_whole_origin");
    }
    if b.coupon.is_some() && !threshold_met {
        counts.hit("coupon_below_threshold");
    }
    if overflowed {
        counts.hit("remainder_above_the_last_line");
    }
    if shipping > 0 {
        counts.hit("shipping_charged");
    } else {
        counts.hit("shipping_waived");
    }
    if b.lines.len() > 1 && discount > 0 {
        counts.hit("discount_split_over_lines");
    }
}

#[test]
fn random_baskets_price_exactly() {
    let counts = Counts::default();
    run_property(basket(), |b| check_basket(&b, &counts));
    counts.assert_reached(&[
        "mixed",
        "discounted",
        "discount_is_the_whole_origin",
        "coupon_below_threshold",
        "remainder_above_the_last_line",
        "shipping_charged",
        "shipping_waived",
        "discount_split_over_lines",
    ]);
}

// ===== the state machine =====

/// The shop's SKUs; each starts with 100 units (the testkit's catalog).
const SKUS: [&str; 3] = ["A1", "A2", "B1"];
const STOCK_TOTAL: i64 = 100;
/// Families one sequence may create.
const FAMILIES_MAX: usize = 4;

/// A basket of up to three lines of the shop's SKUs, with or without C1.
#[derive(Debug, Clone)]
struct Spec {
    lines: Vec<(u8, Quantity)>,
    coupon: bool,
}

/// One random command. `fam`, `part` and `sale` pick a family, an order id
/// of it and an after-sale of it among those that exist at that moment.
#[derive(Debug, Clone)]
enum Op {
    Create(Spec),
    PrePay {
        fam: u8,
    },
    Pay {
        fam: u8,
        trade: u8,
        wrong_amount: bool,
    },
    /// `how` picks the caller and cancel type: mostly the shopper's own
    /// cancel, sometimes customer service, a shopper's forbidden type 2, or
    /// the deadline's type 1.
    Cancel {
        fam: u8,
        how: u8,
    },
    /// The clock moves on, then the family's deadline fires.
    Deadline {
        fam: u8,
        minutes: u8,
    },
    /// The clock moves on; no deadline fires (a late timer).
    Tick {
        minutes: u8,
    },
    /// `same`: the address the family already has (a no-op).
    Address {
        fam: u8,
        same: bool,
    },
    /// `pick` mostly takes the part's next step, sometimes any step.
    Fulfill {
        fam: u8,
        part: u8,
        pick: u8,
    },
    /// `kind` mostly takes the type the part's status allows.
    Apply {
        fam: u8,
        part: u8,
        kind: u8,
        items: Vec<(u8, Quantity)>,
    },
    Review {
        fam: u8,
        sale: u8,
        approved: bool,
    },
    Revoke {
        fam: u8,
        sale: u8,
    },
    RefundResult {
        fam: u8,
        sale: u8,
        success: bool,
        wrong_amount: bool,
        /// Sends again the last failure's callback, when there was one.
        resend: bool,
    },
    Retry {
        fam: u8,
        sale: u8,
    },
    Lack {
        fam: u8,
        part: u8,
        items: Vec<(u8, Quantity)>,
    },
    Remove {
        fam: u8,
        part: u8,
    },
    Note {
        fam: u8,
        part: u8,
    },
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec((0..3u8, 1..=4u32), 1..=3),
        prop::bool::weighted(0.5),
    )
        .prop_map(|(lines, coupon)| Spec { lines, coupon })
}

fn op() -> impl Strategy<Value = Op> {
    let b = any::<u8>;
    let few = || prop::collection::vec((any::<u8>(), 1..=3u32), 1..=2);
    // The weights favour the after-sale cycle (apply, review, refund
    // results, retries): head starts already carry orders along their
    // fulfillment, and cancels and deadlines end a life early.
    prop_oneof![
        1 => spec().prop_map(Op::Create),
        2 => b().prop_map(|fam| Op::PrePay { fam }),
        2 => (b(), 0..3u8, prop::bool::weighted(0.1))
            .prop_map(|(fam, trade, wrong_amount)| Op::Pay { fam, trade, wrong_amount }),
        3 => (b(), b()).prop_map(|(fam, how)| Op::Cancel { fam, how }),
        2 => (b(), 0..=40u8).prop_map(|(fam, minutes)| Op::Deadline { fam, minutes }),
        2 => (0..=40u8).prop_map(|minutes| Op::Tick { minutes }),
        2 => (b(), any::<bool>()).prop_map(|(fam, same)| Op::Address { fam, same }),
        6 => (b(), b(), b()).prop_map(|(fam, part, pick)| Op::Fulfill { fam, part, pick }),
        8 => (b(), b(), b(), few())
            .prop_map(|(fam, part, kind, items)| Op::Apply { fam, part, kind, items }),
        4 => (b(), b(), prop::bool::weighted(0.75))
            .prop_map(|(fam, sale, approved)| Op::Review { fam, sale, approved }),
        1 => (b(), b()).prop_map(|(fam, sale)| Op::Revoke { fam, sale }),
        5 => (
            b(),
            b(),
            prop::bool::weighted(0.4),
            prop::bool::weighted(0.08),
            prop::bool::weighted(0.3)
        )
            .prop_map(
                |(fam, sale, success, wrong_amount, resend)| Op::RefundResult {
                    fam,
                    sale,
                    success,
                    wrong_amount,
                    resend,
                }
            ),
        2 => (b(), b()).prop_map(|(fam, sale)| Op::Retry { fam, sale }),
        3 => (b(), b(), few()).prop_map(|(fam, part, items)| Op::Lack { fam, part, items }),
        1 => (b(), b()).prop_map(|(fam, part)| Op::Remove { fam, part }),
        1 => (b(), b()).prop_map(|(fam, part)| Op::Note { fam, part }),
    ]
}

/// Up to two orders, each given a head start along its legal path (see
/// [`World::advance`]), then up to 30 random commands.
fn scenario() -> impl Strategy<Value = (Vec<(Spec, u8)>, Vec<Op>)> {
    (
        prop::collection::vec((spec(), 0..=6u8), 1..=2),
        // Mostly long sequences: the interesting states lie deep.
        prop_oneof![
            1 => prop::collection::vec(op(), 1..=10),
            4 => prop::collection::vec(op(), 20..=30),
        ],
    )
}

/// Which status moves a command may cause (API.md's order table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Pay,
    Cancel,
    Fulfill,
    /// Everything else: no order or sub-order changes status.
    Other,
}

fn legal_move(
    class: Class,
    f: &OrderFamily,
    id: OrderId,
    from: OrderStatus,
    to: OrderStatus,
) -> bool {
    use OrderStatus::*;
    let chain = [
        (PAID, FULFILLED),
        (FULFILLED, OUT_STOCK),
        (OUT_STOCK, DELIVERY),
        (DELIVERY, SIGNED),
        (DELIVERY, REFUSED),
    ];
    let mixed_master = id == f.order_id && f.is_mixed();
    let sub = id != f.order_id;
    match class {
        Class::Pay if mixed_master => (from, to) == (CREATED, INVALID),
        Class::Pay if sub => (from, to) == (INVALID, PAID),
        Class::Pay => (from, to) == (CREATED, PAID),
        Class::Cancel if mixed_master => to == CANCELED && matches!(from, CREATED | INVALID),
        Class::Cancel if sub => to == CANCELED && matches!(from, INVALID | PAID),
        Class::Cancel => to == CANCELED && matches!(from, CREATED | PAID),
        Class::Fulfill => !mixed_master && chain.contains(&(from, to)),
        Class::Other => false,
    }
}

// ----- independent readings of a family -----

fn claims(status: AfterSaleStatus) -> bool {
    !matches!(
        status,
        AfterSaleStatus::REVIEW_REJECTED | AfterSaleStatus::REVOKED | AfterSaleStatus::FAILED
    )
}

fn claimed_qty(f: &OrderFamily, sku: &SkuCode) -> Quantity {
    f.after_sales
        .iter()
        .filter(|a| claims(a.status))
        .flat_map(|a| &a.items)
        .filter(|i| &i.sku_code == sku)
        .map(|i| i.quantity)
        .sum()
}

fn claimed_money(f: &OrderFamily, sku: &SkuCode) -> i64 {
    f.after_sales
        .iter()
        .filter(|a| claims(a.status))
        .flat_map(|a| &a.items)
        .filter(|i| &i.sku_code == sku)
        .map(|i| i.refund_amount.minor())
        .sum()
}

fn shipping_claimed(f: &OrderFamily) -> bool {
    f.after_sales
        .iter()
        .any(|a| claims(a.status) && !a.shipping_amount.is_zero())
}

fn claimed_of_trade(f: &OrderFamily, trade: &TradeNo, with_failed: bool) -> i64 {
    f.after_sales
        .iter()
        .filter(|a| a.trade_no.as_ref() == Some(trade))
        .filter(|a| claims(a.status) || (with_failed && a.status == AfterSaleStatus::FAILED))
        .map(|a| a.apply_refund_amount.minor())
        .sum()
}

fn lacked(f: &OrderFamily, sku: &SkuCode) -> Quantity {
    f.after_sales
        .iter()
        .filter(|a| a.detail == AfterSaleTypeDetail::LACK_REFUND)
        .flat_map(|a| &a.items)
        .filter(|i| &i.sku_code == sku)
        .map(|i| i.quantity)
        .sum()
}

/// Whether a failed refund may go back to REFUNDING: nothing it covers
/// (units, money of its payment, the shipping fee) is claimed meanwhile by
/// another after-sale, or by a later FAILED refund that REFUNDED ones have
/// not made impossible, and a share of lines is priced now as it was.
fn retry_fits(f: &OrderFamily, a: &AfterSale) -> bool {
    let at = f
        .after_sales
        .iter()
        .position(|x| x.after_sale_id == a.after_sale_id)
        .unwrap();
    let refunded: Vec<&AfterSale> = f
        .after_sales
        .iter()
        .filter(|r| r.status == AfterSaleStatus::REFUNDED)
        .collect();
    let holding: Vec<&AfterSale> = f
        .after_sales
        .iter()
        .filter(|x| claims(x.status))
        .chain(
            f.after_sales[at + 1..]
                .iter()
                .filter(|x| x.status == AfterSaleStatus::FAILED && room_for(f, x, &refunded)),
        )
        .collect();
    room_for(f, a, &holding) && priced_alike(f, a)
}

/// Whether the units, money of its payment and shipping fee `a` refunds
/// fit beside what `others` take.
fn room_for(f: &OrderFamily, a: &AfterSale, others: &[&AfterSale]) -> bool {
    let units = a.items.iter().all(|i| {
        let taken: Quantity = others.iter().map(|x| x.quantity_of(&i.sku_code)).sum();
        taken + i.quantity <= f.line(&i.sku_code).unwrap().sale_quantity
    });
    let trade = a.trade_no.as_ref().unwrap();
    let paid = if f.payment.trade_no.as_ref() == Some(trade) {
        f.payment.pay_amount
    } else {
        f.extra_payments
            .iter()
            .find(|p| &p.trade_no == trade)
            .unwrap()
            .pay_amount
    };
    let taken: i64 = others
        .iter()
        .filter(|x| x.trade_no.as_ref() == Some(trade))
        .map(|x| x.apply_refund_amount.minor())
        .sum();
    let money = taken + a.apply_refund_amount.minor() <= paid.minor();
    let shipping =
        a.shipping_amount.is_zero() || !others.iter().any(|x| !x.shipping_amount.is_zero());
    units && money && shipping
}

/// Whether a share of lines priced again now comes to what it asks (other
/// refunds are not shares).
fn priced_alike(f: &OrderFamily, a: &AfterSale) -> bool {
    if !matches!(
        a.detail,
        AfterSaleTypeDetail::PART_REFUND | AfterSaleTypeDetail::LACK_REFUND
    ) {
        return true;
    }
    let part = f.part_of(a.order_id).unwrap();
    let asked: Vec<(SkuCode, Quantity)> = a
        .items
        .iter()
        .map(|i| (i.sku_code.clone(), i.quantity))
        .collect();
    let fit_now = a.items.iter().all(|i| {
        claimed_qty(f, &i.sku_code) + i.quantity <= f.line(&i.sku_code).unwrap().sale_quantity
    });
    !fit_now || expected_refund(f, part, &asked) == (a.items.clone(), a.shipping_amount)
}

fn all_parts(f: &OrderFamily) -> Vec<PartRef> {
    let mut parts = vec![PartRef::Master];
    parts.extend((0..f.sub_orders.len()).map(PartRef::Sub));
    parts
}

/// The live parts: the sub-orders of a paid mixed family, else the master.
fn live(f: &OrderFamily) -> Vec<PartRef> {
    if f.is_mixed() && f.status == OrderStatus::INVALID {
        (0..f.sub_orders.len()).map(PartRef::Sub).collect()
    } else {
        vec![PartRef::Master]
    }
}

fn paid_and_unfulfilled(f: &OrderFamily) -> bool {
    f.payment.trade_no.is_some()
        && f.status != OrderStatus::CANCELED
        && live(f)
            .into_iter()
            .all(|p| f.part_status(p) == OrderStatus::PAID)
}

/// Every unit of the part refunded by an approved, not failed, after-sale.
fn fully_refunded(f: &OrderFamily, part: PartRef) -> bool {
    f.part_lines(part).into_iter().all(|i| {
        let line = &f.lines[i];
        let refunded: Quantity = f
            .after_sales
            .iter()
            .filter(|a| {
                matches!(
                    a.status,
                    AfterSaleStatus::REVIEW_PASS
                        | AfterSaleStatus::REFUNDING
                        | AfterSaleStatus::REFUNDED
                )
            })
            .map(|a| a.quantity_of(&line.sku_code))
            .sum();
        refunded >= line.sale_quantity
    })
}

/// Money the claiming after-sales take from a part: its lines' refunds and,
/// if the part holds the shipping fee, that fee once claimed.
fn part_claimed(f: &OrderFamily, part: PartRef) -> i64 {
    let lines: i64 = f
        .part_lines(part)
        .into_iter()
        .map(|i| claimed_money(f, &f.lines[i].sku_code))
        .sum();
    let shipping = f.part_amounts(part).shipping;
    lines
        + if !shipping.is_zero() && shipping_claimed(f) {
            shipping.minor()
        } else {
            0
        }
}

/// The refund API.md prescribes for returning `items` of a part now.
fn expected_refund(
    f: &OrderFamily,
    part: PartRef,
    items: &[(SkuCode, Quantity)],
) -> (Vec<AfterSaleItem>, Money) {
    let out: Vec<AfterSaleItem> = items
        .iter()
        .map(|(sku, q)| {
            let line = f.line(sku).unwrap();
            let claimed = claimed_qty(f, sku);
            let left = line.pay_amount.minor() - claimed_money(f, sku);
            let refund = if claimed + q == line.sale_quantity {
                left
            } else {
                i64::try_from(
                    i128::from(line.pay_amount.minor()) * i128::from(*q)
                        / i128::from(line.sale_quantity),
                )
                .unwrap()
                .min(left)
            };
            AfterSaleItem {
                sku_code: sku.clone(),
                quantity: *q,
                refund_amount: m(refund),
            }
        })
        .collect();
    let completes = f.part_lines(part).into_iter().all(|i| {
        let line = &f.lines[i];
        let asked: Quantity = items
            .iter()
            .filter(|(s, _)| s == &line.sku_code)
            .map(|(_, q)| *q)
            .sum();
        claimed_qty(f, &line.sku_code) + asked >= line.sale_quantity
    });
    let shipping = if completes && !shipping_claimed(f) {
        f.part_amounts(part).shipping
    } else {
        Money::ZERO
    };
    (out, shipping)
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.body.type_name()).collect()
}

#[track_caller]
fn expect_code(result: &Result<Vec<Event>, DomainError>, code: ErrorCode, what: &str) {
    match result {
        Err(e) => assert_eq!(e.code(), code, "{what}: {e}"),
        Ok(events) => panic!("{what}: expected {code}, got {:?}", types(events)),
    }
}

#[track_caller]
fn expect_events<'a>(result: &'a Result<Vec<Event>, DomainError>, what: &str) -> &'a [Event] {
    match result {
        Ok(events) => events,
        Err(e) => panic!("{what}: refused with {}: {e}", e.code()),
    }
}

#[track_caller]
fn expect_no_op(result: &Result<Vec<Event>, DomainError>, what: &str) {
    assert_eq!(
        expect_events(result, what).len(),
        0,
        "{what}: expected no change"
    );
}

fn committed(events: &[Event]) -> &AfterSale {
    events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AfterSaleCommitted(a) => Some(&**a),
            _ => None,
        })
        .expect("an after-sale is committed")
}

// ----- the world: a shop and the families of one sequence -----

struct World {
    shop: Shop,
    families: Vec<OrderFamily>,
    /// Every event of each family, in decided order.
    journals: Vec<Vec<Event>>,
    /// Commands the compact state was checked against.
    compact_checks: std::cell::Cell<u64>,
    /// The time of each after-sale's last recorded refund failure, as the
    /// model saw it recorded.
    failed_at: BTreeMap<crate::AfterSaleId, crate::Timestamp>,
    /// Refund callbacks sent: each fresh one reports a time of its own.
    callbacks: i64,
}

impl World {
    fn new() -> World {
        World {
            shop: Shop::default(),
            families: Vec::new(),
            journals: Vec::new(),
            compact_checks: std::cell::Cell::new(0),
            failed_at: BTreeMap::new(),
            callbacks: 0,
        }
    }

    /// Mostly the first family, so that one order gets far along its life;
    /// the others interleave (coupon and stock shared with it).
    fn family_index(&self, fam: u8) -> usize {
        if fam < 160 {
            0
        } else {
            usize::from(fam) % self.families.len()
        }
    }

    /// An order id for a part-level command: mostly a live part, sometimes
    /// any id of the family (the master of a paid mixed family included).
    fn part_id(&self, i: usize, pick: u8) -> (OrderId, PartRef) {
        let f = &self.families[i];
        let mut candidates = Vec::new();
        for _ in 0..3 {
            candidates.extend(live(f));
        }
        candidates.extend(all_parts(f));
        let part = candidates[usize::from(pick) % candidates.len()];
        (f.part_id(part), part)
    }

    /// An after-sale: mostly one in the status the command expects.
    fn after_sale(&self, i: usize, sale: u8, natural: AfterSaleStatus) -> Option<AfterSale> {
        let all = &self.families[i].after_sales;
        let fitting: Vec<&AfterSale> = all.iter().filter(|a| a.status == natural).collect();
        if sale < 200 && !fitting.is_empty() {
            return Some(fitting[usize::from(sale) % fitting.len()].clone());
        }
        (!all.is_empty()).then(|| all[usize::from(sale) % all.len()].clone())
    }

    fn create(&mut self, spec: &Spec, counts: &Counts) {
        if self.families.len() >= FAMILIES_MAX {
            return;
        }
        let mut lines: Vec<(&str, Quantity)> = Vec::new();
        for (i, q) in &spec.lines {
            let code = SKUS[usize::from(*i) % SKUS.len()];
            if !lines.iter().any(|(c, _)| *c == code) {
                lines.push((code, *q));
            }
        }
        let coupon_free = self.shop.coupon("C1").status == CouponStatus::UNUSED;
        let mut cmd =
            self.shop
                .create_cmd("u1", &lines, (spec.coupon && coupon_free).then_some("C1"));
        if spec.coupon && !coupon_free {
            cmd.coupon_id = Some(CouponId::parse("C1").unwrap());
            let result = self.shop.decide_create(&cmd, &shopper("u1"));
            expect_code(&result, ErrorCode::USER_COUPON_IS_USED, "create");
            counts.hit("coupon_refused_while_held");
            return;
        }
        let events = self.shop.decide_create(&cmd, &shopper("u1")).unwrap();
        self.shop.apply_catalog(&events);
        let mut family = OrderFamily::create(&events[0]).unwrap();
        for e in &events[1..] {
            family.apply(e);
        }
        counts.hit("created");
        if family.is_mixed() {
            counts.hit("created_mixed");
        }
        if family.coupon.is_some() {
            counts.hit("created_with_coupon");
        }
        self.families.push(family);
        self.journals.push(events);
    }

    /// Decides and applies a command, and checks what holds for every one:
    /// a refusal or a no-op changes nothing, a change adds exactly one to
    /// the version, statuses move only as `class` allows, and the compact
    /// state an idle order actor keeps decides the same and applies to the
    /// compact state of the whole family's result.
    fn run(
        &mut self,
        i: usize,
        meta: CommandMeta,
        action: Action,
        class: Class,
    ) -> (OrderFamily, Result<Vec<Event>, DomainError>) {
        let before = self.families[i].clone();
        let skus_before = self.shop.skus.clone();
        let mut compact = before.compact();
        let command = Command {
            meta: meta.clone(),
            action: action.clone(),
        };
        let compact_result = crate::decide(&compact, &command, self.shop.now);
        let result = self.shop.run(&mut self.families[i], meta, action);
        let after = &self.families[i];
        assert_eq!(
            compact_result, result,
            "the compact state decided otherwise"
        );
        for event in compact_result.iter().flatten() {
            compact.apply(event);
        }
        assert_eq!(
            compact,
            after.compact(),
            "the compact state applied otherwise"
        );
        self.compact_checks.set(self.compact_checks.get() + 1);
        match &result {
            Ok(events) if !events.is_empty() => {
                assert_eq!(after.version, before.version + 1);
                assert!(events.iter().all(|e| e.version == after.version));
                self.journals[i].extend(events.iter().cloned());
            }
            _ => {
                assert_eq!(*after, before, "a refusal or no-op changed the family");
                assert_eq!(self.shop.skus, skus_before);
            }
        }
        for entry in &after.status_log[before.status_log.len()..] {
            let from = entry.from.expect("only a creation logs no previous status");
            assert!(
                legal_move(class, after, entry.order_id, from, entry.to),
                "{class:?} moved {} from {from} to {}",
                entry.order_id,
                entry.to
            );
        }
        for part in all_parts(after) {
            let id = after.part_id(part);
            let last = after.status_log.iter().rev().find(|e| e.order_id == id);
            assert_eq!(last.map(|e| e.to), Some(after.part_status(part)));
        }
        (before, result)
    }

    fn step(&mut self, op: &Op, counts: &Counts) {
        let now = self.shop.now;
        match op {
            Op::Create(spec) => self.create(spec, counts),
            Op::Tick { minutes } => {
                self.shop.now = now.plus_millis(i64::from(*minutes) * 60_000);
            }
            Op::PrePay { fam } => {
                let i = self.family_index(*fam);
                let f = &self.families[i];
                let action = Action::PrePay {
                    order_id: f.order_id,
                    pay_type: PayType::WECHAT_PAY,
                    pay_amount: f.amounts.real_pay,
                };
                let expected = if f.removed {
                    Some(ErrorCode::ORDER_NOT_FOUND)
                } else if f.status != OrderStatus::CREATED {
                    Some(ErrorCode::ORDER_STATUS_CHANGED)
                } else if now >= f.expire_at {
                    Some(ErrorCode::ORDER_PRE_PAY_EXPIRE)
                } else {
                    None
                };
                let (_, result) = self.run(i, shopper("u1"), action, Class::Other);
                match expected {
                    Some(code) => {
                        expect_code(&result, code, "prepay");
                        if code == ErrorCode::ORDER_PRE_PAY_EXPIRE {
                            counts.hit("prepay_expired");
                        }
                    }
                    None => {
                        assert_eq!(types(expect_events(&result, "prepay")), ["OrderPrePaid"]);
                    }
                }
            }
            Op::Pay {
                fam,
                trade,
                wrong_amount,
            } => self.pay(self.family_index(*fam), *trade, *wrong_amount, counts),
            Op::Cancel { fam, how } => self.cancel(self.family_index(*fam), *how, counts),
            Op::Deadline { fam, minutes } => {
                self.shop.now = now.plus_millis(i64::from(*minutes) * 60_000);
                let i = self.family_index(*fam);
                let f = &self.families[i];
                let due = f.status == OrderStatus::CREATED && self.shop.now >= f.expire_at;
                let action = Action::Deadline {
                    order_id: f.order_id,
                };
                let (_, result) = self.run(i, system(), action, Class::Cancel);
                if due {
                    expect_events(&result, "deadline");
                    let f = &self.families[i];
                    assert_eq!(f.status, OrderStatus::CANCELED);
                    assert_eq!(f.cancel_type, Some(CancelType::TIMEOUT_CANCELED));
                    counts.hit("deadline_cancel");
                } else {
                    expect_no_op(&result, "deadline");
                }
            }
            Op::Address { fam, same } => {
                let i = self.family_index(*fam);
                let f = &self.families[i];
                let expected = if f.removed {
                    Some(ErrorCode::ORDER_NOT_FOUND)
                } else if f.status == OrderStatus::CREATED || paid_and_unfulfilled(f) {
                    None
                } else {
                    Some(ErrorCode::ORDER_NOT_ALLOW_TO_ADJUST_ADDRESS)
                };
                let to = if *same {
                    f.delivery.address.clone()
                } else {
                    address("2 Other Road")
                };
                let unchanged = f.delivery.address == to;
                let action = Action::AdjustAddress {
                    order_id: f.order_id,
                    address: to,
                };
                let (_, result) = self.run(i, shopper("u1"), action, Class::Other);
                match expected {
                    Some(code) => expect_code(&result, code, "address"),
                    None if unchanged => {
                        expect_no_op(&result, "address");
                        counts.hit("address_unchanged");
                    }
                    None => assert_eq!(
                        types(expect_events(&result, "address")),
                        ["OrderAddressChanged"]
                    ),
                }
            }
            Op::Fulfill { fam, part, pick } => {
                self.fulfill(self.family_index(*fam), *part, *pick, counts)
            }
            Op::Apply {
                fam,
                part,
                kind,
                items,
            } => self.apply(self.family_index(*fam), *part, *kind, items, counts),
            Op::Review {
                fam,
                sale,
                approved,
            } => self.review(self.family_index(*fam), *sale, *approved, counts),
            Op::Revoke { fam, sale } => {
                let i = self.family_index(*fam);
                let Some(a) = self.after_sale(i, *sale, AfterSaleStatus::COMMITTED) else {
                    return;
                };
                let removed = self.families[i].removed;
                let action = Action::RevokeAfterSale {
                    after_sale_id: a.after_sale_id,
                };
                let (_, result) = self.run(i, shopper("u1"), action, Class::Other);
                match a.status {
                    _ if removed => expect_code(&result, ErrorCode::ORDER_NOT_FOUND, "revoke"),
                    AfterSaleStatus::COMMITTED => {
                        expect_events(&result, "revoke");
                        counts.hit("revoked");
                    }
                    AfterSaleStatus::REVOKED => expect_no_op(&result, "revoke"),
                    _ => expect_code(&result, ErrorCode::AFTER_SALE_STATUS_CHANGED, "revoke"),
                }
            }
            Op::RefundResult {
                fam,
                sale,
                success,
                wrong_amount,
                resend,
            } => {
                let i = self.family_index(*fam);
                let Some(a) = self.after_sale(i, *sale, AfterSaleStatus::REFUNDING) else {
                    return;
                };
                let amount = a.apply_refund_amount.minor() + i64::from(*wrong_amount);
                let last_failure = self.failed_at.get(&a.after_sale_id).copied();
                // A fresh callback reports a time after every earlier one.
                self.callbacks += 1;
                let refunded_at = match last_failure {
                    Some(at) if *resend && !*success => at,
                    _ => now.plus_millis(self.callbacks),
                };
                let action = Action::RefundResult {
                    after_sale_id: a.after_sale_id,
                    refund_amount: m(amount),
                    success: *success,
                    refunded_at,
                };
                let (_, result) = self.run(i, provider(), action, Class::Other);
                let status = |w: &World| w.families[i].after_sale(&a.after_sale_id).unwrap().status;
                match (a.status, *success) {
                    _ if *wrong_amount => {
                        expect_code(&result, ErrorCode::REFUND_AMOUNT_MISMATCH, "refund");
                        counts.hit("refund_amount_mismatch");
                    }
                    (AfterSaleStatus::REFUNDING, true) => {
                        expect_events(&result, "refund");
                        assert_eq!(status(self), AfterSaleStatus::REFUNDED);
                        counts.hit("refunded");
                    }
                    // The failure recorded before a retry, sent again: the
                    // same callback.
                    (AfterSaleStatus::REFUNDING, false)
                        if last_failure.is_some_and(|at| refunded_at <= at) =>
                    {
                        expect_no_op(&result, "refund failure repeated after a retry");
                        assert_eq!(status(self), AfterSaleStatus::REFUNDING);
                        counts.hit("refund_failure_repeated_after_retry");
                    }
                    (AfterSaleStatus::REFUNDING, false) => {
                        expect_events(&result, "refund");
                        assert_eq!(status(self), AfterSaleStatus::FAILED);
                        self.failed_at.insert(a.after_sale_id, refunded_at);
                        counts.hit("refund_failed");
                    }
                    (AfterSaleStatus::REFUNDED, true) | (AfterSaleStatus::FAILED, false) => {
                        expect_no_op(&result, "refund repeat");
                        counts.hit("refund_result_repeated");
                    }
                    // An earlier failure's callback after the refund went
                    // through (its time before the refund's).
                    (AfterSaleStatus::REFUNDED, false) if last_failure == Some(refunded_at) => {
                        expect_no_op(&result, "refund failure repeated after the refund");
                        counts.hit("refund_failure_repeated_after_the_refund");
                    }
                    _ => expect_code(&result, ErrorCode::AFTER_SALE_STATUS_CHANGED, "refund"),
                }
            }
            Op::Retry { fam, sale } => {
                let i = self.family_index(*fam);
                let Some(a) = self.after_sale(i, *sale, AfterSaleStatus::FAILED) else {
                    return;
                };
                let action = Action::RetryRefund {
                    after_sale_id: a.after_sale_id,
                };
                let (before, result) = self.run(i, admin(), action, Class::Other);
                match (a.status, &result) {
                    (AfterSaleStatus::FAILED, Ok(events)) => {
                        assert!(
                            retry_fits(&before, &a),
                            "a retry that overclaims was accepted"
                        );
                        assert_eq!(types(events), ["RefundRequested"]);
                        let after = self.families[i].after_sale(&a.after_sale_id).unwrap();
                        assert_eq!(after.status, AfterSaleStatus::REFUNDING);
                        counts.hit("retried");
                        // The failure's callback sent again now is the same
                        // callback (decided, not applied).
                        if let Some(at) = self.failed_at.get(&a.after_sale_id) {
                            let command = Command {
                                meta: provider(),
                                action: Action::RefundResult {
                                    after_sale_id: a.after_sale_id,
                                    refund_amount: a.apply_refund_amount,
                                    success: false,
                                    refunded_at: *at,
                                },
                            };
                            let repeat = crate::decide(&self.families[i], &command, now);
                            expect_no_op(&repeat, "refund failure repeated after a retry");
                            counts.hit("refund_failure_repeat_probed_after_retry");
                        }
                    }
                    (AfterSaleStatus::FAILED, Err(_)) => {
                        assert!(!retry_fits(&before, &a), "a retry that fits was refused");
                        expect_code(&result, ErrorCode::AFTER_SALE_STATUS_CHANGED, "retry");
                        counts.hit("retry_refused");
                    }
                    _ => expect_code(&result, ErrorCode::AFTER_SALE_STATUS_CHANGED, "retry"),
                }
            }
            Op::Lack { fam, part, items } => {
                self.lack(self.family_index(*fam), *part, items, counts)
            }
            Op::Remove { fam, part } => {
                let i = self.family_index(*fam);
                let f = &self.families[i];
                let parts = all_parts(f);
                let id = f.part_id(parts[usize::from(*part) % parts.len()]);
                let final_now = live(f).into_iter().all(|p| f.part_status(p).is_final());
                let expected = if f.removed {
                    Some(ErrorCode::ORDER_NOT_FOUND)
                } else if id != f.order_id {
                    Some(ErrorCode::ORDER_STATUS_CHANGED)
                } else if final_now {
                    None
                } else {
                    Some(ErrorCode::ORDER_CANNOT_REMOVE)
                };
                let (_, result) = self.run(
                    i,
                    shopper("u1"),
                    Action::Remove { order_id: id },
                    Class::Other,
                );
                match expected {
                    Some(code) => expect_code(&result, code, "remove"),
                    None => {
                        assert_eq!(types(expect_events(&result, "remove")), ["OrderRemoved"]);
                        assert!(self.families[i].removed);
                        counts.hit("removed");
                    }
                }
            }
            Op::Note { fam, part } => {
                let i = self.family_index(*fam);
                let f = &self.families[i];
                let parts = all_parts(f);
                let id = f.part_id(parts[usize::from(*part) % parts.len()]);
                let action = Action::AddNote {
                    order_id: id,
                    text: "checked".into(),
                };
                let (_, result) = self.run(i, admin(), action, Class::Other);
                assert_eq!(types(expect_events(&result, "note")), ["OrderNoteAdded"]);
            }
        }
    }

    /// Brings family `i` along its legal path with checked commands: paid
    /// (trade T0), then every live part one fulfillment step at a time,
    /// `steps` in all counting the payment (5: SIGNED); 6 leaves it unpaid
    /// with the clock past its deadline and the timer not yet fired. Random
    /// commands then start from orders in every state, not only fresh ones.
    fn advance(&mut self, i: usize, steps: u8, counts: &Counts) {
        if steps == 0 {
            return;
        }
        if steps > 5 {
            let late = self.families[i].expire_at.plus_millis(1);
            self.shop.now = self.shop.now.max(late);
            return;
        }
        self.pay(i, 0, false, counts);
        for _ in 1..steps {
            for k in 0..live(&self.families[i]).len() {
                // The first candidates are the live parts; pick 1 takes the
                // next step (SIGNED at delivery).
                self.fulfill(i, u8::try_from(k).unwrap(), 1, counts);
            }
        }
    }

    fn pay(&mut self, i: usize, trade: u8, wrong_amount: bool, counts: &Counts) {
        let f = &self.families[i];
        let trade_no = TradeNo::parse(&format!("T{trade}")).unwrap();
        let mut action = pay_action(f, trade_no.as_str());
        if let Action::PayCallback { pay_amount, .. } = &mut action {
            *pay_amount = m(pay_amount.minor() + i64::from(wrong_amount));
        }
        let seen = f.payment.trade_no.as_ref() == Some(&trade_no)
            || f.extra_payments.iter().any(|p| p.trade_no == trade_no);
        let (status, cancel_type) = (f.status, f.cancel_type);
        let late = self.shop.now >= f.expire_at;
        let (before, result) = self.run(i, provider(), action.clone(), Class::Pay);
        let f = &self.families[i];
        if seen {
            expect_no_op(&result, "repeated trade_no");
            counts.hit("duplicate_trade");
            return;
        }
        if wrong_amount {
            expect_code(&result, ErrorCode::ORDER_PAY_AMOUNT_ERROR, "pay");
            counts.hit("pay_amount_refused");
            return;
        }
        let events = expect_events(&result, "pay");
        if status == OrderStatus::CREATED {
            assert_eq!(types(events)[0], "OrderPaid");
            assert_eq!(f.payment.trade_no.as_ref(), Some(&trade_no));
            if f.is_mixed() {
                assert_eq!(f.status, OrderStatus::INVALID);
                assert!(f.sub_orders.iter().all(|s| s.status == OrderStatus::PAID));
                counts.hit("paid_mixed");
            } else {
                assert_eq!(f.status, OrderStatus::PAID);
            }
            counts.hit("paid");
            if late {
                counts.hit("paid_after_the_deadline_before_it_fired");
            }
        } else {
            assert_eq!(
                types(events),
                ["PaymentReceived", "AfterSaleCommitted", "RefundRequested"]
            );
            let refund = committed(events);
            let detail = match (status, cancel_type) {
                (OrderStatus::CANCELED, Some(CancelType::TIMEOUT_CANCELED)) => {
                    AfterSaleTypeDetail::TIMEOUT_NO_PAY
                }
                (OrderStatus::CANCELED, Some(CancelType::USER_CANCELED)) => {
                    AfterSaleTypeDetail::USER_CANCEL
                }
                (OrderStatus::CANCELED, Some(CancelType::CUSTOMER_CANCELED)) => {
                    AfterSaleTypeDetail::CUSTOMER_CANCEL
                }
                _ => AfterSaleTypeDetail::ALL_REFUND,
            };
            assert_eq!(refund.detail, detail);
            assert_eq!(refund.status, AfterSaleStatus::REFUNDING);
            assert_eq!(refund.apply_refund_amount, f.amounts.real_pay);
            assert_eq!(refund.trade_no.as_ref(), Some(&trade_no));
            assert_eq!(f.status, before.status);
            counts.hit("refund_of_another_payment");
            if status == OrderStatus::CANCELED {
                counts.hit("refund_of_a_payment_for_a_cancelled_family");
            }
        }
        // Sent again, the same callback changes nothing.
        let again = crate::decide(
            f,
            &Command {
                meta: provider(),
                action,
            },
            self.shop.now,
        );
        expect_no_op(&again, "the same callback again");
    }

    fn cancel(&mut self, i: usize, how: u8, counts: &Counts) {
        let (meta, cancel_type) = match how % 20 {
            0 => (admin(), CancelType::TIMEOUT_CANCELED),
            1 => (shopper("u1"), CancelType::CUSTOMER_CANCELED),
            2..=4 => (admin(), CancelType::CUSTOMER_CANCELED),
            _ => (shopper("u1"), CancelType::USER_CANCELED),
        };
        let f = &self.families[i];
        let by_user = meta.actor.kind == ActorKind::User;
        let expected = if by_user && f.removed {
            Some(ErrorCode::ORDER_NOT_FOUND)
        } else if cancel_type == CancelType::TIMEOUT_CANCELED {
            Some(ErrorCode::CANCEL_TYPE_ERROR)
        } else if cancel_type == CancelType::CUSTOMER_CANCELED && by_user {
            Some(ErrorCode::FORBIDDEN)
        } else if f.status == OrderStatus::CREATED || paid_and_unfulfilled(f) {
            None
        } else {
            Some(ErrorCode::ORDER_CANNOT_CANCEL)
        };
        let was_paid = f.payment.trade_no.is_some();
        let action = Action::Cancel {
            order_id: f.order_id,
            cancel_type,
        };
        let (_, result) = self.run(i, meta, action, Class::Cancel);
        if let Some(code) = expected {
            expect_code(&result, code, "cancel");
            return;
        }
        expect_events(&result, "cancel");
        let f = &self.families[i];
        assert_eq!(f.status, OrderStatus::CANCELED);
        assert!(f
            .sub_orders
            .iter()
            .all(|s| s.status == OrderStatus::CANCELED));
        assert_eq!(f.cancel_type, Some(cancel_type));
        assert!(f
            .after_sales
            .iter()
            .all(|a| a.status != AfterSaleStatus::COMMITTED));
        if was_paid {
            // The refunds of the payment now cover all of it, exactly.
            let t = f.payment.trade_no.as_ref().unwrap();
            assert_eq!(claimed_of_trade(f, t, false), f.payment.pay_amount.minor());
            counts.hit("cancel_paid");
        } else {
            counts.hit("cancel_unpaid");
        }
    }

    fn fulfill(&mut self, i: usize, part_pick: u8, pick: u8, counts: &Counts) {
        let (id, part) = self.part_id(i, part_pick);
        let f = &self.families[i];
        let status = f.part_status(part);
        let event = if pick < 220 {
            match status {
                OrderStatus::FULFILLED => FulfillmentEvent::OUT_STOCK,
                OrderStatus::OUT_STOCK => FulfillmentEvent::DELIVERY,
                OrderStatus::DELIVERY if pick.is_multiple_of(3) => FulfillmentEvent::REFUSED,
                OrderStatus::DELIVERY => FulfillmentEvent::SIGNED,
                _ => FulfillmentEvent::FULFILLED,
            }
        } else {
            FulfillmentEvent::ALL[usize::from(pick) % FulfillmentEvent::ALL.len()]
        };
        let master_of_paid_mixed =
            part == PartRef::Master && f.is_mixed() && f.status == OrderStatus::INVALID;
        let stopped = fully_refunded(f, part);
        let action = Action::Fulfill {
            order_id: id,
            event,
            logistics_code: None,
            operator: None,
        };
        let (_, result) = self.run(i, admin(), action, Class::Fulfill);
        if master_of_paid_mixed {
            expect_code(&result, ErrorCode::ORDER_STATUS_CHANGED, "fulfill master");
            counts.hit("part_command_with_the_master_id_refused");
        } else if status == event.target() {
            expect_no_op(&result, "fulfill repeat");
        } else if status != event.source() {
            expect_code(&result, ErrorCode::ORDER_STATUS_CHANGED, "fulfill");
        } else if stopped {
            expect_code(&result, ErrorCode::ORDER_STATUS_CHANGED, "fulfill refunded");
            counts.hit("fully_refunded_part_stopped");
        } else {
            expect_events(&result, "fulfill");
            let f = &self.families[i];
            assert_eq!(f.part_status(part), event.target());
            match event {
                FulfillmentEvent::SIGNED => counts.hit("signed"),
                FulfillmentEvent::REFUSED => {
                    // The refusal refunds whatever of the part was not yet
                    // claimed, so the part's claims are now all it paid.
                    assert_eq!(part_claimed(f, part), f.part_amounts(part).real_pay.minor());
                    counts.hit("refused");
                }
                _ => counts.hit("fulfillment_step"),
            }
        }
    }

    /// The SKUs of a part's lines picked by `items`, each at most once:
    /// mostly lines with units left to return, first those a failed refund
    /// released, and no more units than are left; sometimes any line and
    /// quantity.
    fn part_items(
        &self,
        i: usize,
        part: PartRef,
        items: &[(u8, Quantity)],
    ) -> Vec<(SkuCode, Quantity)> {
        let f = &self.families[i];
        let left = |li: usize| {
            let line = &f.lines[li];
            line.sale_quantity - claimed_qty(f, &line.sku_code)
        };
        let all = f.part_lines(part);
        let open: Vec<usize> = all.iter().copied().filter(|li| left(*li) > 0).collect();
        let released: Vec<usize> = open
            .iter()
            .copied()
            .filter(|li| {
                f.after_sales.iter().any(|a| {
                    a.status == AfterSaleStatus::FAILED && a.quantity_of(&f.lines[*li].sku_code) > 0
                })
            })
            .collect();
        let mut out: Vec<(SkuCode, Quantity)> = Vec::new();
        for (pick, q) in items {
            let lines = if *pick < 100 && !released.is_empty() {
                &released
            } else if *pick < 200 && !open.is_empty() {
                &open
            } else {
                &all
            };
            let li = lines[usize::from(*pick) % lines.len()];
            let q = if *pick < 200 {
                (*q).min(left(li)).max(1)
            } else {
                *q
            };
            let sku = &f.lines[li].sku_code;
            if !out.iter().any(|(s, _)| s == sku) {
                out.push((sku.clone(), q));
            }
        }
        out
    }

    /// The first item asking for more than its line has left to return.
    fn exceeding(&self, i: usize, items: &[(SkuCode, Quantity)]) -> Option<SkuCode> {
        let f = &self.families[i];
        items
            .iter()
            .find(|(sku, q)| claimed_qty(f, sku) + q > f.line(sku).unwrap().sale_quantity)
            .map(|(sku, _)| sku.clone())
    }

    fn apply(
        &mut self,
        i: usize,
        part_pick: u8,
        kind: u8,
        items: &[(u8, Quantity)],
        counts: &Counts,
    ) {
        let (id, part) = self.part_id(i, part_pick);
        let items = self.part_items(i, part, items);
        let f = &self.families[i];
        let status = f.part_status(part);
        let after_sale_type = match kind % 8 {
            6 => AfterSaleType::RETURN_MONEY,
            7 => AfterSaleType::RETURN_GOODS,
            _ if status == OrderStatus::SIGNED => AfterSaleType::RETURN_GOODS,
            _ => AfterSaleType::RETURN_MONEY,
        };
        let allowed = match after_sale_type {
            AfterSaleType::RETURN_MONEY => {
                matches!(status, OrderStatus::PAID | OrderStatus::FULFILLED)
            }
            AfterSaleType::RETURN_GOODS => status == OrderStatus::SIGNED,
        };
        let exceeding = self.exceeding(i, &items);
        let pending_blocks = exceeding.as_ref().is_some_and(|sku| {
            f.after_sales
                .iter()
                .any(|a| a.status == AfterSaleStatus::COMMITTED && a.quantity_of(sku) > 0)
        });
        let (expected_items, expected_shipping) = expected_refund(f, part, &items);
        let expected = if f.removed {
            Some(ErrorCode::ORDER_NOT_FOUND)
        } else if part == PartRef::Master && f.is_mixed() && f.status == OrderStatus::INVALID {
            counts.hit("part_command_with_the_master_id_refused");
            Some(ErrorCode::ORDER_STATUS_CHANGED)
        } else if !allowed {
            Some(ErrorCode::AFTER_SALE_CANNOT_APPLY)
        } else if exceeding.is_some() {
            counts.hit("application_beyond_the_returnable_refused");
            if pending_blocks {
                counts.hit("pending_application_held_its_units");
            }
            Some(ErrorCode::AFTER_SALE_QUANTITY_EXCEEDED)
        } else {
            None
        };
        let action = Action::ApplyAfterSale {
            order_id: id,
            after_sale_type,
            items,
            reason: "random".into(),
            images: Vec::new(),
        };
        let (_, result) = self.run(i, shopper("u1"), action, Class::Other);
        if let Some(code) = expected {
            expect_code(&result, code, "apply");
            return;
        }
        let a = committed(expect_events(&result, "apply"));
        assert_eq!(a.status, AfterSaleStatus::COMMITTED);
        assert_eq!(a.detail, AfterSaleTypeDetail::PART_REFUND);
        assert_eq!(a.after_sale_type, after_sale_type);
        assert_eq!(a.order_id, id);
        assert_eq!(a.items, expected_items);
        assert_eq!(a.shipping_amount, expected_shipping);
        let sum: i64 = expected_items.iter().map(|x| x.refund_amount.minor()).sum();
        assert_eq!(a.apply_refund_amount, m(sum + expected_shipping.minor()));
        counts.hit(match after_sale_type {
            AfterSaleType::RETURN_MONEY => "applied_return_money",
            AfterSaleType::RETURN_GOODS => "applied_return_goods",
        });
        if !expected_shipping.is_zero() {
            counts.hit("application_completing_the_part_took_the_shipping");
        }
    }

    fn review(&mut self, i: usize, sale: u8, approved: bool, counts: &Counts) {
        let Some(a) = self.after_sale(i, sale, AfterSaleStatus::COMMITTED) else {
            return;
        };
        let restock: Vec<(SkuCode, i64)> = {
            let f = &self.families[i];
            a.items
                .iter()
                .map(|item| {
                    let line = f.line(&item.sku_code).unwrap();
                    let out = line
                        .sale_quantity
                        .saturating_sub(line.restocked_quantity)
                        .saturating_sub(lacked(f, &item.sku_code));
                    (item.sku_code.clone(), i64::from(item.quantity.min(out)))
                })
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        let sold_before: Vec<i64> = restock
            .iter()
            .map(|(s, _)| self.shop.sku(s.as_str()).sold)
            .collect();
        // A refund without return whose goods left since it was applied for.
        let goods_left = a.after_sale_type == AfterSaleType::RETURN_MONEY
            && a.detail == AfterSaleTypeDetail::PART_REFUND
            && self.families[i].part_of(a.order_id).is_some_and(|part| {
                !matches!(
                    self.families[i].part_status(part),
                    OrderStatus::PAID | OrderStatus::FULFILLED
                )
            });
        let action = Action::ReviewAfterSale {
            after_sale_id: a.after_sale_id,
            approved,
            remark: None,
        };
        let (_, result) = self.run(i, admin(), action, Class::Other);
        let approved_already = matches!(
            a.status,
            AfterSaleStatus::REVIEW_PASS
                | AfterSaleStatus::REFUNDING
                | AfterSaleStatus::REFUNDED
                | AfterSaleStatus::FAILED
        );
        match (a.status, approved) {
            (AfterSaleStatus::COMMITTED, true) if goods_left => {
                expect_code(&result, ErrorCode::AFTER_SALE_CANNOT_APPLY, "approve");
                let after = self.families[i].after_sale(&a.after_sale_id).unwrap();
                assert_eq!(after.status, AfterSaleStatus::COMMITTED);
                counts.hit("approval_refused_once_the_goods_left");
            }
            (AfterSaleStatus::COMMITTED, true) => {
                expect_events(&result, "approve");
                let after = self.families[i].after_sale(&a.after_sale_id).unwrap();
                assert_eq!(after.status, AfterSaleStatus::REFUNDING);
                if a.after_sale_type == AfterSaleType::RETURN_GOODS {
                    for ((sku, n), before) in restock.iter().zip(sold_before) {
                        assert_eq!(self.shop.sku(sku.as_str()).sold, before - n);
                    }
                    counts.hit("approved_return_of_goods");
                } else {
                    counts.hit("approved_return_of_money");
                }
            }
            (AfterSaleStatus::COMMITTED, false) => {
                expect_events(&result, "reject");
                let after = self.families[i].after_sale(&a.after_sale_id).unwrap();
                assert_eq!(after.status, AfterSaleStatus::REVIEW_REJECTED);
                counts.hit("rejected");
            }
            (_, true) if approved_already => expect_no_op(&result, "approve again"),
            (AfterSaleStatus::REVIEW_REJECTED, false) => expect_no_op(&result, "reject again"),
            _ => expect_code(&result, ErrorCode::AFTER_SALE_STATUS_CHANGED, "review"),
        }
    }

    fn lack(&mut self, i: usize, part_pick: u8, items: &[(u8, Quantity)], counts: &Counts) {
        let (id, part) = self.part_id(i, part_pick);
        let items = self.part_items(i, part, items);
        let f = &self.families[i];
        let status = f.part_status(part);
        let lacked_before = f
            .after_sales
            .iter()
            .any(|a| a.detail == AfterSaleTypeDetail::LACK_REFUND && a.order_id == id);
        let (expected_items, expected_shipping) = expected_refund(f, part, &items);
        let expected =
            if part == PartRef::Master && f.is_mixed() && f.status == OrderStatus::INVALID {
                Some(ErrorCode::ORDER_STATUS_CHANGED)
            } else if !matches!(status, OrderStatus::FULFILLED | OrderStatus::OUT_STOCK) {
                Some(ErrorCode::ORDER_NOT_ALLOW_TO_LACK)
            } else if lacked_before {
                counts.hit("second_lack_refused");
                Some(ErrorCode::ORDER_NOT_ALLOW_TO_LACK)
            } else if fully_refunded(f, part) {
                Some(ErrorCode::ORDER_NOT_ALLOW_TO_LACK)
            } else if self.exceeding(i, &items).is_some() {
                Some(ErrorCode::AFTER_SALE_QUANTITY_EXCEEDED)
            } else {
                None
            };
        let action = Action::Lack {
            order_id: id,
            items,
        };
        let (_, result) = self.run(i, admin(), action, Class::Other);
        if let Some(code) = expected {
            expect_code(&result, code, "lack");
            return;
        }
        let events = expect_events(&result, "lack");
        assert_eq!(types(events), ["AfterSaleCommitted", "RefundRequested"]);
        let a = committed(events);
        assert_eq!(a.detail, AfterSaleTypeDetail::LACK_REFUND);
        assert_eq!(a.status, AfterSaleStatus::REFUNDING);
        assert_eq!(a.items, expected_items);
        assert_eq!(a.shipping_amount, expected_shipping);
        assert_eq!(self.families[i].part_status(part), status);
        counts.hit("lack");
    }

    /// DESIGN.md's invariants over the whole shop.
    fn check_invariants(&self, counts: &Counts) {
        // Stock: conserved, never negative, and what the orders say.
        for code in SKUS {
            let s = self.shop.sku(code);
            let sku = sku_code(code);
            assert_eq!(s.available + s.locked + s.sold, STOCK_TOTAL, "{code}");
            assert!(s.available >= 0 && s.locked >= 0 && s.sold >= 0, "{s:?}");
            let held = |f: &OrderFamily, units: fn(&crate::order::OrderLine) -> Quantity| {
                f.line(&sku).map_or(0, |l| i64::from(units(l)))
            };
            let locked: i64 = self
                .families
                .iter()
                .filter(|f| f.status == OrderStatus::CREATED)
                .map(|f| held(f, |l| l.sale_quantity))
                .sum();
            let sold: i64 = self
                .families
                .iter()
                .filter(|f| f.payment.trade_no.is_some())
                .map(|f| held(f, |l| l.sale_quantity - l.restocked_quantity))
                .sum();
            assert_eq!(s.locked, locked, "{code} locked");
            assert_eq!(s.sold, sold, "{code} sold");
        }
        // Coupon C1: locked or used by at most one live order, as it says.
        let holders: Vec<&OrderFamily> = self
            .families
            .iter()
            .filter(|f| f.coupon.is_some())
            .filter(|f| {
                f.status == OrderStatus::CREATED
                    || (f.payment.trade_no.is_some() && f.status != OrderStatus::CANCELED)
            })
            .collect();
        assert!(
            holders.len() <= 1,
            "coupon held by {} orders",
            holders.len()
        );
        let c = self.shop.coupon("C1");
        match holders.first() {
            None => assert_eq!((c.status, c.order_id), (CouponStatus::UNUSED, None)),
            Some(f) => {
                let status = if f.status == OrderStatus::CREATED {
                    CouponStatus::LOCKED
                } else {
                    CouponStatus::USED
                };
                assert_eq!((c.status, c.order_id), (status, Some(f.order_id)));
            }
        }
        for f in &self.families {
            self.check_family(f, counts);
            self.probe_retries(f, counts);
            self.check_nothing_stranded(f, counts);
        }
    }

    /// Decides (without applying) a retry of every failed refund: API.md
    /// lets it go back to REFUNDING unless another after-sale now claims
    /// what it covers (a failed one released its claim), and the refunds
    /// it would leave must still fit in what was paid.
    fn probe_retries(&self, f: &OrderFamily, counts: &Counts) {
        for a in f
            .after_sales
            .iter()
            .filter(|a| a.status == AfterSaleStatus::FAILED)
        {
            let command = Command {
                meta: admin(),
                action: Action::RetryRefund {
                    after_sale_id: a.after_sale_id,
                },
            };
            let result = crate::decide(f, &command, self.shop.now);
            if retry_fits(f, a) {
                let events = expect_events(&result, "retry probe");
                assert_eq!(types(events), ["RefundRequested"]);
                let mut retried = f.clone();
                for e in events {
                    retried.apply(e);
                }
                self.check_family(&retried, counts);
                counts.hit("retry_probe_accepted");
            } else {
                expect_code(&result, ErrorCode::AFTER_SALE_STATUS_CHANGED, "retry probe");
                counts.hit("retry_probe_refused");
            }
        }
    }

    /// A paid, cancelled family: retrying its failed refunds, the newest
    /// first (README), until none goes, leaves the whole payment claimed.
    /// Nothing else can refund a cancelled family, so any money left over
    /// would be stranded.
    fn check_nothing_stranded(&self, f: &OrderFamily, counts: &Counts) {
        let Some(trade) = &f.payment.trade_no else {
            return;
        };
        if f.status != OrderStatus::CANCELED {
            return;
        }
        let mut g = f.clone();
        loop {
            let failed: Vec<crate::AfterSaleId> = g
                .after_sales
                .iter()
                .rev()
                .filter(|a| a.status == AfterSaleStatus::FAILED)
                .map(|a| a.after_sale_id)
                .collect();
            let mut retried = false;
            for after_sale_id in failed {
                let command = Command {
                    meta: admin(),
                    action: Action::RetryRefund { after_sale_id },
                };
                if let Ok(events) = crate::decide(&g, &command, self.shop.now) {
                    for e in &events {
                        g.apply(e);
                    }
                    retried = true;
                }
            }
            if !retried {
                break;
            }
            counts.hit("cancelled_family_failed_refund_retried");
        }
        assert_eq!(
            claimed_of_trade(&g, trade, false),
            f.payment.pay_amount.minor(),
            "a refund of cancelled family {} is stranded",
            f.order_id
        );
        counts.hit("cancelled_family_retried_to_its_whole_payment");
    }

    fn check_family(&self, f: &OrderFamily, counts: &Counts) {
        // Exactly one layer is live.
        if f.is_mixed() {
            let subs: Vec<OrderStatus> = f.sub_orders.iter().map(|s| s.status).collect();
            match f.status {
                OrderStatus::CREATED => assert!(subs.iter().all(|s| *s == OrderStatus::INVALID)),
                OrderStatus::CANCELED => assert!(subs.iter().all(|s| *s == OrderStatus::CANCELED)),
                OrderStatus::INVALID => assert!(subs.iter().all(|s| matches!(
                    s,
                    OrderStatus::PAID
                        | OrderStatus::FULFILLED
                        | OrderStatus::OUT_STOCK
                        | OrderStatus::DELIVERY
                        | OrderStatus::SIGNED
                        | OrderStatus::REFUSED
                ))),
                other => panic!("a mixed master is never {other}"),
            }
        }
        if f.removed {
            assert!(live(f).into_iter().all(|p| f.part_status(p).is_final()));
        }
        // Refunds never exceed what was paid, per payment and per line.
        if let Some(t) = &f.payment.trade_no {
            assert!(claimed_of_trade(f, t, false) <= f.payment.pay_amount.minor());
            if f.status == OrderStatus::CANCELED {
                // Paid and cancelled: refunds (or retriable failed ones)
                // cover the whole payment.
                assert!(claimed_of_trade(f, t, true) >= f.payment.pay_amount.minor());
                counts.hit("cancelled_and_paid_family_checked");
            }
        } else {
            assert!(f.after_sales.iter().all(|a| a.trade_no.is_some()
                && f.extra_payments
                    .iter()
                    .any(|p| Some(&p.trade_no) == a.trade_no.as_ref())));
        }
        for p in &f.extra_payments {
            let refunds: Vec<&AfterSale> = f
                .after_sales
                .iter()
                .filter(|a| a.trade_no.as_ref() == Some(&p.trade_no))
                .collect();
            assert_eq!(refunds.len(), 1);
            assert_eq!(refunds[0].after_sale_id, p.after_sale_id);
            assert_eq!(refunds[0].apply_refund_amount, p.pay_amount);
        }
        for line in &f.lines {
            assert!(claimed_qty(f, &line.sku_code) <= line.sale_quantity);
            assert!(claimed_money(f, &line.sku_code) <= line.pay_amount.minor());
            assert!(line.restocked_quantity <= line.sale_quantity);
        }
        let shipping_claims = f
            .after_sales
            .iter()
            .filter(|a| claims(a.status) && !a.shipping_amount.is_zero())
            .count();
        assert!(shipping_claims <= 1);
        for a in &f.after_sales {
            assert!(a.shipping_amount.is_zero() || a.shipping_amount == f.amounts.shipping);
            if !a.items.is_empty() || !a.shipping_amount.is_zero() {
                let items: i64 = a.items.iter().map(|x| x.refund_amount.minor()).sum();
                assert_eq!(
                    a.apply_refund_amount.minor(),
                    items + a.shipping_amount.minor()
                );
            }
            assert!(a.apply_refund_amount >= Money::ZERO);
        }
        // Stock put back after payment, part by part.
        for part in live(f) {
            let status = f.part_status(part);
            let lacks = f
                .after_sales
                .iter()
                .filter(|a| {
                    a.detail == AfterSaleTypeDetail::LACK_REFUND && a.order_id == f.part_id(part)
                })
                .count();
            assert!(lacks <= 1, "lack reported twice");
            for li in f.part_lines(part) {
                let line = &f.lines[li];
                let lacked = lacked(f, &line.sku_code);
                let returned: Quantity = f
                    .after_sales
                    .iter()
                    .filter(|a| {
                        a.after_sale_type == AfterSaleType::RETURN_GOODS
                            && matches!(
                                a.status,
                                AfterSaleStatus::REVIEW_PASS
                                    | AfterSaleStatus::REFUNDING
                                    | AfterSaleStatus::REFUNDED
                                    | AfterSaleStatus::FAILED
                            )
                    })
                    .map(|a| a.quantity_of(&line.sku_code))
                    .sum();
                let expected = match status {
                    _ if f.status == OrderStatus::CANCELED && f.payment.trade_no.is_some() => {
                        line.sale_quantity
                    }
                    OrderStatus::REFUSED => line.sale_quantity - lacked,
                    OrderStatus::SIGNED => returned.min(line.sale_quantity - lacked),
                    _ => 0,
                };
                assert_eq!(
                    line.restocked_quantity, expected,
                    "{status} {}",
                    line.sku_code
                );
            }
        }
    }

    /// Replaying a family's events from scratch rebuilds it exactly, from
    /// its journal as stored (through JSON) and from its public history.
    fn check_replay(&self, counts: &Counts) {
        for (f, journal) in self.families.iter().zip(&self.journals) {
            let json = serde_json::to_string(journal).unwrap();
            let stored: Vec<Event> = serde_json::from_str(&json).unwrap();
            let history: Vec<Event> = f.history.iter().map(|e| (**e).clone()).collect();
            for events in [&stored, &history] {
                let mut rebuilt = OrderFamily::create(&events[0]).unwrap();
                for e in &events[1..] {
                    rebuilt.apply(e);
                }
                assert_eq!(rebuilt, *f);
            }
            counts.hit("replayed");
        }
    }
}

#[test]
fn random_command_sequences_keep_every_invariant() {
    let counts = Counts::default();
    run_property(scenario(), |(initial, ops)| {
        let mut world = World::new();
        for (spec, steps) in &initial {
            let created = world.families.len();
            world.create(spec, &counts);
            if world.families.len() > created {
                world.advance(created, *steps, &counts);
            }
        }
        if world.families.is_empty() {
            return;
        }
        world.check_invariants(&counts);
        for op in &ops {
            world.step(op, &counts);
            world.check_invariants(&counts);
        }
        world.check_replay(&counts);
        if world.compact_checks.get() > 0 {
            counts.hit("compact_state_decided_alike");
        }
    });
    counts.assert_reached(&[
        "created_mixed",
        "created_with_coupon",
        "coupon_refused_while_held",
        "paid",
        "paid_mixed",
        "paid_after_the_deadline_before_it_fired",
        "prepay_expired",
        "duplicate_trade",
        "pay_amount_refused",
        "refund_of_another_payment",
        "refund_of_a_payment_for_a_cancelled_family",
        "cancel_unpaid",
        "cancel_paid",
        "cancelled_and_paid_family_checked",
        "cancelled_family_retried_to_its_whole_payment",
        "cancelled_family_failed_refund_retried",
        "deadline_cancel",
        "fulfillment_step",
        "signed",
        "refused",
        "part_command_with_the_master_id_refused",
        "fully_refunded_part_stopped",
        "applied_return_money",
        "applied_return_goods",
        "application_completing_the_part_took_the_shipping",
        "application_beyond_the_returnable_refused",
        "pending_application_held_its_units",
        "approved_return_of_money",
        "approval_refused_once_the_goods_left",
        "approved_return_of_goods",
        "rejected",
        "revoked",
        "refunded",
        "refund_failed",
        "refund_result_repeated",
        "refund_failure_repeat_probed_after_retry",
        "refund_amount_mismatch",
        "retried",
        "retry_probe_accepted",
        "retry_probe_refused",
        "lack",
        "second_lack_refused",
        "removed",
        "address_unchanged",
        "replayed",
        "compact_state_decided_alike",
    ]);
}
