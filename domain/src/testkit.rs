//! Builders for tests and benchmarks of every layer: a small catalog, valid
//! create commands priced by the same rules, and a `run` that decides and
//! applies. Compiled for this crate's tests and, with the `testkit` feature,
//! for other crates' tests and benches; never part of the server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::catalog::{Coupon, CouponDetails, Sku, SkuDetails};
use crate::codes::{AmountType, BusinessIdentifier, DeliveryType, OrderType, PayType, ProductType};
use crate::command::{Action, Command, CommandMeta, CreateContext, CreateOrder};
use crate::decide::{decide, decide_create};
use crate::error::DomainError;
use crate::event::{Actor, Event, Target};
use crate::family::OrderFamily;
use crate::ids::{CouponId, OrderId, ProductId, SellerId, SkuCode, UserId};
use crate::money::{Money, Quantity, Timestamp};
use crate::order::{Address, Delivery};
use crate::pricing::{quote, PricingRules, RiskRules};

/// 2026-01-01T00:00:00Z, the fixtures' "now".
pub const T0_MS: i64 = 1_767_225_600_000;
/// The fixtures' payment timeout: 30 minutes.
pub const PAY_TIMEOUT_MS: i64 = 30 * 60 * 1000;

pub fn t0() -> Timestamp {
    Timestamp::from_millis(T0_MS)
}

pub fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

pub fn sku_code(code: &str) -> SkuCode {
    SkuCode::parse(code).unwrap()
}

/// A SKU with `stock` available units.
pub fn sku(code: &str, product_type: ProductType, price: i64, stock: i64) -> Sku {
    Sku {
        details: SkuDetails {
            sku_code: sku_code(code),
            product_id: ProductId::parse(&format!("p-{code}")).unwrap(),
            product_name: format!("Product {code}"),
            product_type,
            sale_price: Money::from_minor(price),
            purchase_price: Money::from_minor(price / 2),
            product_unit: "piece".into(),
            product_img: None,
            seller_id: SellerId::parse("seller-1").unwrap(),
        },
        available: stock,
        locked: 0,
        sold: 0,
    }
}

/// An unused coupon for `owner`, valid around [`t0`].
pub fn coupon(id: &str, owner: &str, amount: i64, threshold: i64) -> Coupon {
    Coupon::new(CouponDetails {
        coupon_id: CouponId::parse(id).unwrap(),
        user_id: user(owner),
        amount: Money::from_minor(amount),
        threshold_amount: Money::from_minor(threshold),
        valid_from: t0().plus_millis(-86_400_000),
        valid_to: t0().plus_millis(30 * 86_400_000),
    })
}

pub fn address(detail: &str) -> Address {
    Address {
        province: "Zhejiang".into(),
        city: "Hangzhou".into(),
        area: "Xihu".into(),
        street: Some("Wensan".into()),
        detail_address: detail.into(),
        lon: Some(120.1),
        lat: Some(30.2),
    }
}

pub fn delivery() -> Delivery {
    Delivery {
        delivery_type: DeliveryType::SELF,
        receiver_name: "Li Lei".into(),
        receiver_phone: "13800000000".into(),
        address: address("1 Wensan Road"),
    }
}

pub fn meta(actor: Actor) -> CommandMeta {
    CommandMeta::by(actor)
}

pub fn shopper(id: &str) -> CommandMeta {
    meta(Actor::user(&user(id)))
}

pub fn admin() -> CommandMeta {
    meta(Actor::admin("ops-1"))
}

pub fn provider() -> CommandMeta {
    meta(Actor::provider())
}

pub fn system() -> CommandMeta {
    meta(Actor::system())
}

/// A catalog, rules and a clock: enough to create orders.
#[derive(Debug, Clone)]
pub struct Shop {
    pub skus: Vec<Sku>,
    pub coupons: Vec<Coupon>,
    pub pricing: PricingRules,
    pub risk: RiskRules,
    pub now: Timestamp,
    next_seq: u32,
    ids: crate::ids::IdSequencer,
}

impl Default for Shop {
    /// Two normal SKUs (A1 at 3000, A2 at 4500), one advance-sale SKU (B1 at
    /// 2000), 100 units each; coupon C1 (1000 off from 5000) for user `u1`.
    fn default() -> Self {
        Shop {
            skus: vec![
                sku("A1", ProductType::NORMAL_PRODUCT, 3_000, 100),
                sku("A2", ProductType::NORMAL_PRODUCT, 4_500, 100),
                sku("B1", ProductType::ADVANCE_SALE, 2_000, 100),
            ],
            coupons: vec![coupon("C1", "u1", 1_000, 5_000)],
            pricing: PricingRules::default(),
            risk: RiskRules::default(),
            now: t0(),
            next_seq: 0,
            ids: crate::ids::IdSequencer::default(),
        }
    }
}

impl Shop {
    /// A fresh order id for `owner`.
    pub fn order_id(&mut self, owner: &str) -> OrderId {
        self.next_seq += 1;
        // The sequencer borrows the next second after a million ids, so long
        // benchmark runs never run out of ids.
        let (at, seq) = self.ids.next(self.now);
        OrderId::generate(at, 1, seq, &user(owner)).unwrap()
    }

    /// A create command whose claimed amounts are the true price.
    pub fn create_cmd(
        &mut self,
        owner: &str,
        items: &[(&str, Quantity)],
        coupon: Option<&str>,
    ) -> CreateOrder {
        let items: Vec<(SkuCode, Quantity)> =
            items.iter().map(|(c, q)| (sku_code(c), *q)).collect();
        let coupon_id = coupon.map(|c| CouponId::parse(c).unwrap());
        let found = coupon_id
            .as_ref()
            .and_then(|id| self.coupons.iter().find(|c| &c.details.coupon_id == id));
        let priced = quote(
            &user(owner),
            &items,
            &self.skus,
            coupon_id.as_ref().map(|id| (id, found)),
            &self.pricing,
            self.now,
        )
        .expect("fixture basket prices");
        let pay = priced.amounts.real_pay;
        CreateOrder {
            order_id: self.order_id(owner),
            user_id: user(owner),
            business_identifier: BusinessIdentifier::SELF_MALL,
            order_type: OrderType::NORMAL,
            seller_id: None,
            coupon_id,
            user_remark: None,
            delivery: delivery(),
            items,
            amounts: priced.amounts.to_list().to_vec(),
            payments: vec![(PayType::WECHAT_PAY, pay)],
            fingerprint: u64::from(self.next_seq),
        }
    }

    /// Decides a create against the shop's current catalog.
    pub fn decide_create(
        &self,
        cmd: &CreateOrder,
        meta: &CommandMeta,
    ) -> Result<Vec<Event>, DomainError> {
        let coupon = cmd
            .coupon_id
            .as_ref()
            .and_then(|id| self.coupons.iter().find(|c| &c.details.coupon_id == id));
        let skus: Vec<&Sku> = self.skus.iter().collect();
        let ctx = CreateContext {
            skus: &skus,
            coupon,
            pricing: &self.pricing,
            risk: &self.risk,
            user_orders_last_minute: 0,
            pay_timeout_ms: PAY_TIMEOUT_MS,
        };
        decide_create(cmd, meta, &ctx, self.now)
    }

    /// Applies catalog events (stock, coupons) of a change to the shop.
    pub fn apply_catalog(&mut self, events: &[Event]) {
        for event in events {
            match event.body.target() {
                Target::Sku(code) => {
                    let code = code.clone();
                    if let Some(s) = self.skus.iter_mut().find(|s| s.details.sku_code == code) {
                        s.apply(event);
                    }
                }
                Target::Coupon(id) => {
                    let id = id.clone();
                    if let Some(c) = self.coupons.iter_mut().find(|c| c.details.coupon_id == id) {
                        c.apply(event);
                    }
                }
                Target::Family(_) | Target::Unrouted => {}
            }
        }
    }

    /// Creates an order of `owner` and applies it; panics if refused.
    pub fn create(
        &mut self,
        owner: &str,
        items: &[(&str, Quantity)],
        coupon: Option<&str>,
    ) -> OrderFamily {
        let cmd = self.create_cmd(owner, items, coupon);
        let events = self
            .decide_create(&cmd, &shopper(owner))
            .expect("fixture order is accepted");
        self.apply_catalog(&events);
        let mut family = OrderFamily::create(&events[0]).expect("first event creates");
        for event in &events[1..] {
            family.apply(event);
        }
        family
    }

    /// Decides `action` for `family` as `meta` at the shop's clock, applies
    /// the events to the family and the catalog, and returns them.
    pub fn run(
        &mut self,
        family: &mut OrderFamily,
        meta: CommandMeta,
        action: Action,
    ) -> Result<Vec<Event>, DomainError> {
        let events = decide(family, &Command { meta, action }, self.now)?;
        for event in &events {
            family.apply(event);
        }
        self.apply_catalog(&events);
        Ok(events)
    }

    /// Pays `family` with `trade_no` as the provider.
    pub fn pay(
        &mut self,
        family: &mut OrderFamily,
        trade_no: &str,
    ) -> Result<Vec<Event>, DomainError> {
        let action = pay_action(family, trade_no);
        self.run(family, provider(), action)
    }

    pub fn sku(&self, code: &str) -> &Sku {
        self.skus
            .iter()
            .find(|s| s.details.sku_code.as_str() == code)
            .expect("fixture SKU")
    }

    pub fn coupon(&self, id: &str) -> &Coupon {
        self.coupons
            .iter()
            .find(|c| c.details.coupon_id.as_str() == id)
            .expect("fixture coupon")
    }
}

/// The pay callback action that pays `family` in full.
pub fn pay_action(family: &OrderFamily, trade_no: &str) -> Action {
    Action::PayCallback {
        order_id: family.order_id,
        out_trade_no: crate::ids::OutTradeNo::parse(family.order_id.as_str()).unwrap(),
        pay_type: PayType::WECHAT_PAY,
        pay_amount: family.amounts.real_pay,
        trade_no: crate::ids::TradeNo::parse(trade_no).unwrap(),
        paid_at: t0(),
    }
}

/// The amount list with one amount replaced.
pub fn with_amount(
    amounts: &[(AmountType, Money)],
    t: AmountType,
    m: i64,
) -> Vec<(AmountType, Money)> {
    amounts
        .iter()
        .map(|(a, v)| {
            if *a == t {
                (*a, Money::from_minor(m))
            } else {
                (*a, *v)
            }
        })
        .collect()
}
