//! Response bodies, built from domain values.
//!
//! Domain values are serialized as they are (ids as strings, codes as
//! integers, money as minor units, times as RFC 3339); the `value_type`
//! attributes only tell the OpenAPI document what they look like.
//! Purchase prices are cost data: SKU views (admin) show them, order views
//! (which shoppers read too) do not.

use ordercore_domain::codes::{
    AfterSaleStatus, AfterSaleType, AfterSaleTypeDetail, AmountType, BusinessIdentifier,
    CancelType, CouponStatus, DeliveryType, OrderStatus, OrderType, PayStatus, PayType,
    ProductType, SnapshotType,
};
use ordercore_domain::event::StockDelta;
use ordercore_domain::family::{AfterSaleItem, PartRef, StatusLogEntry};
use ordercore_domain::ids::{OutTradeNo, ProductId, SellerId, TradeNo};
use ordercore_domain::order::{Amounts, CouponSnapshot, Delivery, OrderLine};
use ordercore_domain::pricing::{Quote, QuoteLine};
use ordercore_domain::{
    Actor, AfterSale, AfterSaleId, Coupon, CouponId, DryRun, Event, Money, OrderFamily, OrderId,
    PayResult, Quantity, Sku, SkuCode, Timestamp, UserId,
};
use serde::Serialize;
use utoipa::ToSchema;

/// `{amount_type, amount}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AmountView {
    /// 10 ORIGIN_PAY_AMOUNT · 20 COUPON_DISCOUNT_AMOUNT · 30 SHIPPING_AMOUNT · 50 REAL_PAY_AMOUNT
    #[schema(value_type = u8)]
    pub amount_type: AmountType,
    #[schema(value_type = i64)]
    pub amount: Money,
}

/// The four amounts of an order, as API.md lists them.
pub fn amount_list(amounts: &Amounts) -> Vec<AmountView> {
    amounts
        .to_list()
        .into_iter()
        .map(|(amount_type, amount)| AmountView {
            amount_type,
            amount,
        })
        .collect()
}

/// `{order_id, user_id}`: the answer of `POST /v1/order-ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderIdResponse {
    #[schema(value_type = String)]
    pub order_id: OrderId,
    #[schema(value_type = String)]
    pub user_id: UserId,
}

/// A priced line of `POST /v1/orders/price`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PriceItemView {
    #[schema(value_type = String)]
    pub sku_code: SkuCode,
    #[schema(value_type = i64)]
    pub sale_price: Money,
    pub sale_quantity: Quantity,
    #[schema(value_type = i64)]
    pub origin_amount: Money,
    #[schema(value_type = i64)]
    pub pay_amount: Money,
}

impl From<&QuoteLine> for PriceItemView {
    fn from(line: &QuoteLine) -> PriceItemView {
        PriceItemView {
            sku_code: line.sku_code.clone(),
            sale_price: line.sale_price,
            sale_quantity: line.sale_quantity,
            origin_amount: line.origin_amount,
            pay_amount: line.pay_amount,
        }
    }
}

/// The checkout preview: exactly what `POST /v1/orders` will require now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PriceResponse {
    pub amounts: Vec<AmountView>,
    pub items: Vec<PriceItemView>,
}

impl From<&Quote> for PriceResponse {
    fn from(quote: &Quote) -> PriceResponse {
        PriceResponse {
            amounts: amount_list(&quote.amounts),
            items: quote.lines.iter().map(PriceItemView::from).collect(),
        }
    }
}

/// The answer of `POST /v1/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CreateOrderResponse {
    #[schema(value_type = String)]
    pub order_id: OrderId,
    /// Always 10 CREATED: this is the result of the creation.
    #[schema(value_type = u8)]
    pub status: OrderStatus,
    /// The payment deadline.
    #[schema(value_type = String, format = DateTime)]
    pub expire_time: Timestamp,
    #[schema(value_type = i64)]
    pub pay_amount: Money,
    /// One per product type when the order mixes them; empty otherwise.
    #[schema(value_type = Vec<String>)]
    pub sub_order_ids: Vec<OrderId>,
}

impl CreateOrderResponse {
    /// The creation result of `family`. A repeated create answers "the same
    /// result" (API.md), so the status is the one the order was created
    /// with, whatever happened to it since.
    pub fn of(family: &OrderFamily) -> CreateOrderResponse {
        CreateOrderResponse {
            order_id: family.order_id,
            status: OrderStatus::CREATED,
            expire_time: family.expire_at,
            pay_amount: family.amounts.real_pay,
            sub_order_ids: family.sub_orders.iter().map(|s| s.order_id).collect(),
        }
    }
}

/// The answer of `POST /v1/orders/{order_id}/prepay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PrepayResponse {
    #[schema(value_type = String)]
    pub order_id: OrderId,
    /// The merchant payment number to hand to the provider.
    #[schema(value_type = String)]
    pub out_trade_no: String,
    #[schema(value_type = u8)]
    pub pay_type: PayType,
    #[schema(value_type = i64)]
    pub pay_amount: Money,
    #[schema(value_type = String, format = DateTime)]
    pub expire_time: Timestamp,
}

impl PrepayResponse {
    /// The prepay result of `family` after its prepay was applied.
    pub fn of(family: &OrderFamily) -> PrepayResponse {
        PrepayResponse {
            order_id: family.order_id,
            // Prepay always sets it; the core's own default is the order id.
            out_trade_no: family
                .payment
                .out_trade_no
                .as_ref()
                .map_or_else(|| family.order_id.to_string(), |n| n.as_str().to_owned()),
            pay_type: family.payment.pay_type,
            pay_amount: family.payment.pay_amount,
            expire_time: family.expire_at,
        }
    }
}

/// What a payment callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum PayOutcome {
    /// The family is now paid.
    Paid,
    /// This `trade_no` was seen before; nothing changed.
    Duplicate,
    /// A payment for a cancelled or already-paid family: it is refunded.
    Refund,
}

impl From<PayResult> for PayOutcome {
    fn from(result: PayResult) -> PayOutcome {
        match result {
            PayResult::Paid => PayOutcome::Paid,
            PayResult::Duplicate => PayOutcome::Duplicate,
            PayResult::Refund => PayOutcome::Refund,
        }
    }
}

/// The answer of `POST /v1/payments/callback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PayCallbackResponse {
    pub result: PayOutcome,
    /// The after-sale that refunds this payment (REFUND, and a DUPLICATE of
    /// a refunded one).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub after_sale_id: Option<AfterSaleId>,
}

impl PayCallbackResponse {
    /// The result for `trade_no` once the callback was decided and applied
    /// to `family`: `changed` is false when the core decided no events (a
    /// repeat), which answers DUPLICATE with the earlier refund, if any.
    pub fn of(family: &OrderFamily, trade_no: &TradeNo, changed: bool) -> PayCallbackResponse {
        let (result, after_sale_id) = family
            .payment_result(trade_no)
            .unwrap_or((PayResult::Duplicate, None));
        PayCallbackResponse {
            result: if changed {
                result.into()
            } else {
                PayOutcome::Duplicate
            },
            after_sale_id,
        }
    }
}

/// `{removed: N}`: the answer of `POST /v1/orders/remove`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct RemovedResponse {
    pub removed: usize,
}

/// `{version}`: the family's version after a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct VersionResponse {
    pub version: u64,
}

/// Who caused a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ActorView {
    /// `user`, `admin`, `provider` or `system`.
    #[schema(value_type = String)]
    pub kind: ordercore_domain::ActorKind,
    /// The token's `sub`, `provider` or `system`.
    pub id: String,
}

impl From<&Actor> for ActorView {
    fn from(actor: &Actor) -> ActorView {
        ActorView {
            kind: actor.kind,
            id: actor.id.clone(),
        }
    }
}

/// A line of an order as shown to shoppers and admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderItemView {
    #[schema(value_type = String)]
    pub sku_code: SkuCode,
    #[schema(value_type = String)]
    pub product_id: ProductId,
    pub product_name: String,
    /// 1 NORMAL_PRODUCT · 2 ADVANCE_SALE
    #[schema(value_type = u8)]
    pub product_type: ProductType,
    pub product_unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_img: Option<String>,
    #[schema(value_type = String)]
    pub seller_id: SellerId,
    #[schema(value_type = i64)]
    pub sale_price: Money,
    pub sale_quantity: Quantity,
    /// `sale_price × sale_quantity`.
    #[schema(value_type = i64)]
    pub origin_amount: Money,
    /// This line's share of the coupon discount.
    #[schema(value_type = i64)]
    pub discount_amount: Money,
    /// `origin_amount − discount_amount`.
    #[schema(value_type = i64)]
    pub pay_amount: Money,
    /// Units put back into available stock after payment.
    pub restocked_quantity: Quantity,
}

impl From<&OrderLine> for OrderItemView {
    fn from(line: &OrderLine) -> OrderItemView {
        OrderItemView {
            sku_code: line.sku_code.clone(),
            product_id: line.product_id.clone(),
            product_name: line.product_name.clone(),
            product_type: line.product_type,
            product_unit: line.product_unit.clone(),
            product_img: line.product_img.clone(),
            seller_id: line.seller_id.clone(),
            sale_price: line.sale_price,
            sale_quantity: line.sale_quantity,
            origin_amount: line.origin_amount,
            discount_amount: line.discount_amount,
            pay_amount: line.pay_amount,
            restocked_quantity: line.restocked_quantity,
        }
    }
}

/// The family's payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PaymentView {
    /// 10 WECHAT_PAY · 20 ALI_PAY
    #[schema(value_type = u8)]
    pub pay_type: PayType,
    #[schema(value_type = i64)]
    pub pay_amount: Money,
    /// 10 UNPAID · 20 PAID · 30 REFUNDING · 40 REFUNDED
    #[schema(value_type = u8)]
    pub pay_status: PayStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub out_trade_no: Option<OutTradeNo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub trade_no: Option<TradeNo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub prepaid_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paid_at: Option<Timestamp>,
}

/// A payment that arrived for a cancelled or already-paid family, refunded
/// whole by its after-sale (ordercore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ExtraPaymentView {
    #[schema(value_type = String)]
    pub trade_no: TradeNo,
    #[schema(value_type = String)]
    pub out_trade_no: OutTradeNo,
    #[schema(value_type = u8)]
    pub pay_type: PayType,
    #[schema(value_type = i64)]
    pub pay_amount: Money,
    #[schema(value_type = u8)]
    pub pay_status: PayStatus,
    #[schema(value_type = String, format = DateTime)]
    pub paid_at: Timestamp,
    #[schema(value_type = String)]
    pub after_sale_id: AfterSaleId,
}

/// Who receives the order and where.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeliveryView {
    /// 1 SELF
    #[schema(value_type = u8)]
    pub delivery_type: DeliveryType,
    pub receiver_name: String,
    pub receiver_phone: String,
    pub province: String,
    pub city: String,
    pub area: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    pub detail_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> DeliveryView {
        DeliveryView {
            delivery_type: d.delivery_type,
            receiver_name: d.receiver_name.clone(),
            receiver_phone: d.receiver_phone.clone(),
            province: d.address.province.clone(),
            city: d.address.city.clone(),
            area: d.address.area.clone(),
            street: d.address.street.clone(),
            detail_address: d.address.detail_address.clone(),
            lon: d.address.lon,
            lat: d.address.lat,
        }
    }
}

/// A sub-order in its master's detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SubOrderView {
    #[schema(value_type = String)]
    pub order_id: OrderId,
    #[schema(value_type = u8)]
    pub product_type: ProductType,
    #[schema(value_type = u8)]
    pub status: OrderStatus,
    #[schema(value_type = i64)]
    pub pay_amount: Money,
    pub amounts: Vec<AmountView>,
}

/// What an order was created with (1 ORDER_COUPON, 2 ORDER_AMOUNT,
/// 3 ORDER_ITEM), kept as it was.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SnapshotView {
    #[schema(value_type = u8)]
    pub snapshot_type: SnapshotType,
    /// The coupon (`{coupon_id, amount, threshold_amount, valid_from,
    /// valid_to, discount}`), the amounts (`[{amount_type, amount}]`) or the
    /// items (`[{sku_code, product_id, product_name, product_type,
    /// product_unit, product_img?, seller_id, sale_price, sale_quantity}]`).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// A product as an order line captured it at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct ItemSnapshot<'a> {
    sku_code: &'a SkuCode,
    product_id: &'a ProductId,
    product_name: &'a str,
    product_type: ProductType,
    product_unit: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    product_img: Option<&'a str>,
    seller_id: &'a SellerId,
    sale_price: Money,
    sale_quantity: Quantity,
}

fn snapshots(
    coupon: Option<&CouponSnapshot>,
    amounts: &Amounts,
    lines: &[&OrderLine],
) -> Vec<SnapshotView> {
    // Serializing plain data into a `Value` cannot fail; `Null` keeps the
    // function total.
    let value = |v: serde_json::Result<serde_json::Value>| v.unwrap_or_default();
    let mut out = Vec::with_capacity(3);
    if let Some(coupon) = coupon {
        out.push(SnapshotView {
            snapshot_type: SnapshotType::ORDER_COUPON,
            data: value(serde_json::to_value(coupon)),
        });
    }
    out.push(SnapshotView {
        snapshot_type: SnapshotType::ORDER_AMOUNT,
        data: value(serde_json::to_value(amount_list(amounts))),
    });
    let items: Vec<ItemSnapshot<'_>> = lines
        .iter()
        .map(|l| ItemSnapshot {
            sku_code: &l.sku_code,
            product_id: &l.product_id,
            product_name: &l.product_name,
            product_type: l.product_type,
            product_unit: &l.product_unit,
            product_img: l.product_img.as_deref(),
            seller_id: &l.seller_id,
            sale_price: l.sale_price,
            sale_quantity: l.sale_quantity,
        })
        .collect();
    out.push(SnapshotView {
        snapshot_type: SnapshotType::ORDER_ITEM,
        data: value(serde_json::to_value(items)),
    });
    out
}

/// One change of an order's status, with who caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatusLogView {
    #[schema(value_type = String)]
    pub order_id: OrderId,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u8>)]
    pub from: Option<OrderStatus>,
    #[schema(value_type = u8)]
    pub to: OrderStatus,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub actor: ActorView,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub request_id: Option<ordercore_domain::ids::RequestId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&StatusLogEntry> for StatusLogView {
    fn from(e: &StatusLogEntry) -> StatusLogView {
        StatusLogView {
            order_id: e.order_id,
            from: e.from,
            to: e.to,
            at: e.at,
            actor: ActorView::from(&e.actor),
            request_id: e.request_id.clone(),
            reason: e.reason.clone(),
        }
    }
}

/// A returned (or lacked, or refunded) line of an after-sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AfterSaleItemView {
    #[schema(value_type = String)]
    pub sku_code: SkuCode,
    pub return_quantity: Quantity,
    #[schema(value_type = i64)]
    pub refund_amount: Money,
}

impl From<&AfterSaleItem> for AfterSaleItemView {
    fn from(item: &AfterSaleItem) -> AfterSaleItemView {
        AfterSaleItemView {
            sku_code: item.sku_code.clone(),
            return_quantity: item.quantity,
            refund_amount: item.refund_amount,
        }
    }
}

/// An after-sale: `GET /v1/after-sales/{id}` and the answer of revoke,
/// review, retry and the refund callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AfterSaleView {
    #[schema(value_type = String)]
    pub after_sale_id: AfterSaleId,
    /// The order or sub-order it concerns (the master for a refund of a
    /// whole payment).
    #[schema(value_type = String)]
    pub order_id: OrderId,
    #[schema(value_type = String)]
    pub user_id: UserId,
    /// 1 RETURN_MONEY · 2 RETURN_GOODS
    #[schema(value_type = u8)]
    pub after_sale_type: AfterSaleType,
    /// 1 ALL_REFUND · 2 TIMEOUT_NO_PAY · 3 USER_CANCEL · 4 CUSTOMER_CANCEL ·
    /// 5 PART_REFUND · 6 LACK_REFUND
    #[schema(value_type = u8)]
    pub after_sale_type_detail: AfterSaleTypeDetail,
    /// 10 COMMITTED · 20 REVIEW_PASS · 30 REVIEW_REJECTED · 40 REFUNDING ·
    /// 50 REFUNDED · 60 FAILED · 127 REVOKED
    #[schema(value_type = u8)]
    pub status: AfterSaleStatus,
    pub items: Vec<AfterSaleItemView>,
    /// The shipping fee refunded with it.
    #[schema(value_type = i64)]
    pub shipping_amount: Money,
    #[schema(value_type = i64)]
    pub apply_refund_amount: Money,
    /// The payment it refunds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub trade_no: Option<TradeNo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub images: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_remark: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub refunded_at: Option<Timestamp>,
}

impl From<&AfterSale> for AfterSaleView {
    fn from(a: &AfterSale) -> AfterSaleView {
        AfterSaleView {
            after_sale_id: a.after_sale_id,
            order_id: a.order_id,
            user_id: a.user_id.clone(),
            after_sale_type: a.after_sale_type,
            after_sale_type_detail: a.detail,
            status: a.status,
            items: a.items.iter().map(AfterSaleItemView::from).collect(),
            shipping_amount: a.shipping_amount,
            apply_refund_amount: a.apply_refund_amount,
            trade_no: a.trade_no.clone(),
            reason: a.reason.clone(),
            images: a.images.clone(),
            review_remark: a.review_remark.clone(),
            created_at: a.created_at,
            updated_at: a.updated_at,
            // Before REFUNDED it holds the last failure's time (see
            // `AfterSale::refunded_at`): not a refund time.
            refunded_at: a
                .refunded_at
                .filter(|_| a.status == AfterSaleStatus::REFUNDED),
        }
    }
}

/// `{after_sale_id, status, apply_refund_amount}`: the answer of an
/// after-sale application and of a lack report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AfterSaleCreated {
    #[schema(value_type = String)]
    pub after_sale_id: AfterSaleId,
    #[schema(value_type = u8)]
    pub status: AfterSaleStatus,
    #[schema(value_type = i64)]
    pub apply_refund_amount: Money,
}

impl From<&AfterSale> for AfterSaleCreated {
    fn from(a: &AfterSale) -> AfterSaleCreated {
        AfterSaleCreated {
            after_sale_id: a.after_sale_id,
            status: a.status,
            apply_refund_amount: a.apply_refund_amount,
        }
    }
}

/// `GET /v1/users/{user_id}/after-sales`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AfterSaleList {
    pub after_sales: Vec<AfterSaleView>,
    /// Pass as `cursor` for the next page (the page's last after-sale, or
    /// the last order read when a page stops short); absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/orders/{order_id}`: an order (a single order, a master with its
/// sub-orders, or one sub-order) with everything about it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OrderDetail {
    #[schema(value_type = String)]
    pub order_id: OrderId,
    /// The master's id, for a sub-order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub parent_order_id: Option<OrderId>,
    #[schema(value_type = String)]
    pub user_id: UserId,
    /// 1 SELF_MALL
    #[schema(value_type = u8)]
    pub business_identifier: BusinessIdentifier,
    /// 1 NORMAL
    #[schema(value_type = u8)]
    pub order_type: OrderType,
    /// The product type of a sub-order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u8>)]
    pub product_type: Option<ProductType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub seller_id: Option<SellerId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub coupon_id: Option<CouponId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_remark: Option<String>,
    /// 10 CREATED · 20 PAID · 30 FULFILLED · 40 OUT_STOCK · 50 DELIVERY ·
    /// 60 SIGNED · 70 CANCELED · 100 REFUSED · 127 INVALID
    #[schema(value_type = u8)]
    pub status: OrderStatus,
    /// 0 USER_CANCELED · 1 TIMEOUT_CANCELED · 2 CUSTOMER_CANCELED
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u8>)]
    pub cancel_type: Option<CancelType>,
    /// The family's version: 1 at creation, +1 per change; also the ETag.
    pub version: u64,
    /// Soft-deleted by its shopper.
    pub removed: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// The payment deadline.
    #[schema(value_type = String, format = DateTime)]
    pub expire_time: Timestamp,
    pub items: Vec<OrderItemView>,
    pub amounts: Vec<AmountView>,
    pub payment: PaymentView,
    pub extra_payments: Vec<ExtraPaymentView>,
    pub delivery: DeliveryView,
    pub sub_orders: Vec<SubOrderView>,
    pub snapshots: Vec<SnapshotView>,
    pub status_log: Vec<StatusLogView>,
    pub after_sales: Vec<AfterSaleView>,
}

impl OrderDetail {
    /// The order `id` of `family`: the master (or single) order with the
    /// whole family, or one sub-order with its own lines, amounts, status
    /// log and after-sales. `None` when `id` is not in the family.
    pub fn of(family: &OrderFamily, id: OrderId) -> Option<OrderDetail> {
        debug_assert!(
            !family.compact,
            "order {id}: a compact family has no detail"
        );
        let part = family.part_of(id)?;
        let (parent, product_type) = match part {
            PartRef::Master => (None, None),
            PartRef::Sub(i) => (
                Some(family.order_id),
                Some(family.sub_orders[i].product_type),
            ),
        };
        let lines: Vec<&OrderLine> = family
            .part_lines(part)
            .into_iter()
            .map(|i| &family.lines[i])
            .collect();
        let amounts = family.part_amounts(part);
        // The master shows the family's whole history; a sub-order its own.
        let own = |order_id: OrderId| part == PartRef::Master || order_id == id;
        let payment = &family.payment;
        Some(OrderDetail {
            order_id: id,
            parent_order_id: parent,
            user_id: family.user_id.clone(),
            business_identifier: family.business_identifier,
            order_type: family.order_type,
            product_type,
            seller_id: family.seller_id.clone(),
            coupon_id: family.coupon.as_ref().map(|c| c.coupon_id.clone()),
            user_remark: family.user_remark.clone(),
            status: family.part_status(part),
            cancel_type: family.cancel_type,
            version: family.version,
            removed: family.removed,
            created_at: family.created_at,
            updated_at: family.updated_at,
            expire_time: family.expire_at,
            items: lines.iter().map(|l| OrderItemView::from(*l)).collect(),
            amounts: amount_list(&amounts),
            payment: PaymentView {
                pay_type: payment.pay_type,
                pay_amount: payment.pay_amount,
                pay_status: family.pay_status(),
                out_trade_no: payment.out_trade_no.clone(),
                trade_no: payment.trade_no.clone(),
                prepaid_at: payment.prepaid_at,
                paid_at: payment.paid_at,
            },
            extra_payments: family
                .extra_payments
                .iter()
                .map(|p| ExtraPaymentView {
                    trade_no: p.trade_no.clone(),
                    out_trade_no: p.out_trade_no.clone(),
                    pay_type: p.pay_type,
                    pay_amount: p.pay_amount,
                    pay_status: family.refund_status(&p.trade_no, p.pay_amount),
                    paid_at: p.paid_at,
                    after_sale_id: p.after_sale_id,
                })
                .collect(),
            delivery: DeliveryView::from(&family.delivery),
            sub_orders: match part {
                PartRef::Master => family
                    .sub_orders
                    .iter()
                    .map(|s| SubOrderView {
                        order_id: s.order_id,
                        product_type: s.product_type,
                        status: s.status,
                        pay_amount: s.amounts.real_pay,
                        amounts: amount_list(&s.amounts),
                    })
                    .collect(),
                PartRef::Sub(_) => Vec::new(),
            },
            snapshots: snapshots(family.coupon.as_ref(), &amounts, &lines),
            status_log: family
                .status_log
                .iter()
                .filter(|e| own(e.order_id))
                .map(StatusLogView::from)
                .collect(),
            after_sales: family
                .after_sales
                .iter()
                .filter(|a| own(a.order_id))
                .map(AfterSaleView::from)
                .collect(),
        })
    }
}

/// A line of an order summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SummaryItemView {
    #[schema(value_type = String)]
    pub sku_code: SkuCode,
    pub product_name: String,
    pub sale_quantity: Quantity,
}

/// An order in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderSummary {
    #[schema(value_type = String)]
    pub order_id: OrderId,
    /// The master's id, for a sub-order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub parent_order_id: Option<OrderId>,
    #[schema(value_type = u8)]
    pub status: OrderStatus,
    #[schema(value_type = i64)]
    pub pay_amount: Money,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub items: Vec<SummaryItemView>,
}

impl OrderSummary {
    /// The summaries a listing shows for `family`: its live parts that are
    /// not INVALID (the master before payment, its sub-orders after), none
    /// when the family was removed.
    pub fn listed(family: &OrderFamily) -> Vec<OrderSummary> {
        if family.removed {
            return Vec::new();
        }
        family
            .live_parts()
            .into_iter()
            .filter(|part| family.part_status(*part) != OrderStatus::INVALID)
            .map(|part| OrderSummary::of_part(family, part))
            .collect()
    }

    fn of_part(family: &OrderFamily, part: PartRef) -> OrderSummary {
        debug_assert!(!family.compact, "a compact family has no product snapshots");
        let order_id = family.part_id(part);
        OrderSummary {
            order_id,
            parent_order_id: (order_id != family.order_id).then_some(family.order_id),
            status: family.part_status(part),
            pay_amount: family.part_amounts(part).real_pay,
            created_at: family.created_at,
            items: family
                .part_lines(part)
                .into_iter()
                .map(|i| {
                    let line = &family.lines[i];
                    SummaryItemView {
                        sku_code: line.sku_code.clone(),
                        product_name: line.product_name.clone(),
                        sale_quantity: line.sale_quantity,
                    }
                })
                .collect(),
        }
    }
}

/// `{orders: [summary], next_cursor?}`: a page of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderList {
    pub orders: Vec<OrderSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub next_cursor: Option<OrderId>,
}

/// A SKU with its stock: `PUT` and `GET /v1/skus/{sku_code}` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SkuView {
    #[schema(value_type = String)]
    pub sku_code: SkuCode,
    #[schema(value_type = String)]
    pub product_id: ProductId,
    pub product_name: String,
    #[schema(value_type = u8)]
    pub product_type: ProductType,
    #[schema(value_type = i64)]
    pub sale_price: Money,
    #[schema(value_type = i64)]
    pub purchase_price: Money,
    pub product_unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_img: Option<String>,
    #[schema(value_type = String)]
    pub seller_id: SellerId,
    /// Units that can be reserved.
    pub available: i64,
    /// Units reserved by unpaid orders.
    pub locked: i64,
    /// Units of paid orders.
    pub sold: i64,
}

impl From<&Sku> for SkuView {
    fn from(sku: &Sku) -> SkuView {
        let d = &sku.details;
        SkuView {
            sku_code: d.sku_code.clone(),
            product_id: d.product_id.clone(),
            product_name: d.product_name.clone(),
            product_type: d.product_type,
            sale_price: d.sale_price,
            purchase_price: d.purchase_price,
            product_unit: d.product_unit.clone(),
            product_img: d.product_img.clone(),
            seller_id: d.seller_id.clone(),
            available: sku.available,
            locked: sku.locked,
            sold: sku.sold,
        }
    }
}

/// `{sku_code, available, locked, sold}`: the answer of a stock change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StockView {
    #[schema(value_type = String)]
    pub sku_code: SkuCode,
    pub available: i64,
    pub locked: i64,
    pub sold: i64,
}

impl From<&Sku> for StockView {
    fn from(sku: &Sku) -> StockView {
        StockView {
            sku_code: sku.details.sku_code.clone(),
            available: sku.available,
            locked: sku.locked,
            sold: sku.sold,
        }
    }
}

/// A coupon's state, a string in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[allow(non_camel_case_types)]
pub enum CouponState {
    UNUSED,
    LOCKED,
    USED,
}

impl From<CouponStatus> for CouponState {
    fn from(status: CouponStatus) -> CouponState {
        match status {
            CouponStatus::UNUSED => CouponState::UNUSED,
            CouponStatus::LOCKED => CouponState::LOCKED,
            CouponStatus::USED => CouponState::USED,
        }
    }
}

/// A coupon: `PUT` and `GET /v1/coupons/{coupon_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CouponView {
    #[schema(value_type = String)]
    pub coupon_id: CouponId,
    #[schema(value_type = String)]
    pub user_id: UserId,
    #[schema(value_type = i64)]
    pub amount: Money,
    #[schema(value_type = i64)]
    pub threshold_amount: Money,
    #[schema(value_type = String, format = DateTime)]
    pub valid_from: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub valid_to: Timestamp,
    pub status: CouponState,
    /// The order that locked or used it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub order_id: Option<OrderId>,
}

impl From<&Coupon> for CouponView {
    fn from(c: &Coupon) -> CouponView {
        CouponView {
            coupon_id: c.details.coupon_id.clone(),
            user_id: c.details.user_id.clone(),
            amount: c.details.amount,
            threshold_amount: c.details.threshold_amount,
            valid_from: c.details.valid_from,
            valid_to: c.details.valid_to,
            status: c.status.into(),
            order_id: c.order_id,
        }
    }
}

/// One published event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventView {
    /// The journal position (not the family version).
    pub seq: u64,
    /// `OrderCreated`, `OrderPaid`, `RefundRequested`, ...
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// The order or sub-order it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub order_id: Option<OrderId>,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub actor: ActorView,
    /// The `X-Request-Id` of the request that caused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub request_id: Option<ordercore_domain::ids::RequestId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The event's payload.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// Keys of event payloads that are cost data, shown to admins only.
const ADMIN_ONLY_KEYS: &[&str] = &["purchase_price"];

impl EventView {
    /// The view of a published event (`None` for internal records such as
    /// idempotency replies). `for_admin` false drops cost data (purchase
    /// prices) from the payload, for a shopper reading its order's history.
    pub fn of(event: &Event, for_admin: bool) -> Option<EventView> {
        if !event.body.is_public() {
            return None;
        }
        // The body serializes as `{"Variant": payload}`: the payload is the
        // one value inside. Serializing plain data cannot fail; `Null`
        // keeps this total.
        let mut data = match serde_json::to_value(&event.body).unwrap_or_default() {
            serde_json::Value::Object(map) if map.len() == 1 => {
                map.into_iter().next().map(|(_, v)| v).unwrap_or_default()
            }
            other => other,
        };
        if !for_admin {
            strip_keys(&mut data, ADMIN_ONLY_KEYS);
        }
        Some(EventView {
            seq: event.seq,
            event_type: event.body.type_name(),
            order_id: event.body.order_id(),
            at: event.at,
            actor: ActorView::from(&event.actor),
            request_id: event.request_id.clone(),
            reason: event.reason.clone(),
            data,
        })
    }
}

fn strip_keys(value: &mut serde_json::Value, keys: &[&str]) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|k, _| !keys.contains(&k.as_str()));
            map.values_mut().for_each(|v| strip_keys(v, keys));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| strip_keys(v, keys)),
        _ => {}
    }
}

/// `GET /v1/orders/{order_id}/events`: the family's history, in order.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OrderEvents {
    pub events: Vec<EventView>,
}

impl OrderEvents {
    /// The published history of `family`.
    pub fn of(family: &OrderFamily, for_admin: bool) -> OrderEvents {
        debug_assert!(!family.compact, "a compact family has no history");
        OrderEvents {
            events: family
                .history
                .iter()
                .filter_map(|e| EventView::of(e, for_admin))
                .collect(),
        }
    }
}

/// `GET /v1/events`: a page of the global feed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<EventView>,
    /// Pass as `after` for the next page.
    pub next: u64,
}

/// A stock move of a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StockMoveView {
    #[schema(value_type = String)]
    pub sku_code: SkuCode,
    pub available_delta: i64,
    pub locked_delta: i64,
    pub sold_delta: i64,
}

impl From<&StockDelta> for StockMoveView {
    fn from(d: &StockDelta) -> StockMoveView {
        StockMoveView {
            sku_code: d.sku_code.clone(),
            available_delta: d.available_delta,
            locked_delta: d.locked_delta,
            sold_delta: d.sold_delta,
        }
    }
}

/// What a command would do (`?dry_run=true`); nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DryRunView {
    /// Always true.
    pub dry_run: bool,
    /// The status the real command answers with: the order's afterwards
    /// for a cancel, the after-sale's for an application, a review or a
    /// lack.
    pub status: u8,
    #[schema(value_type = i64)]
    pub refund_amount: Money,
    pub stock: Vec<StockMoveView>,
    /// The coupon's state afterwards; null when the command leaves it.
    pub coupon_status: Option<CouponState>,
}

impl From<&DryRun> for DryRunView {
    fn from(d: &DryRun) -> DryRunView {
        DryRunView {
            dry_run: true,
            status: d.status,
            refund_amount: d.refund_amount,
            stock: d.stock.iter().map(StockMoveView::from).collect(),
            coupon_status: d.coupon_status.map(CouponState::from),
        }
    }
}
