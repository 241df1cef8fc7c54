//! Request bodies, each with its conversion into the domain's types.
//!
//! Fields hold raw JSON values (strings, integers) so that each bad value
//! is answered with its own code rather than a generic parse error; every
//! struct refuses unknown fields.

use super::{code_of, fnv1a_64, parse_after_sale_id, parse_coupon_id, parse_order_id};
use super::{parse_sku_code, parse_user_id};
use crate::error::ApiError;
use ordercore_domain::codes::{
    AfterSaleType, AmountType, BusinessIdentifier, CancelType, DeliveryType, FulfillmentEvent,
    OrderType, PayType, ProductType,
};
use ordercore_domain::ids::{OutTradeNo, ProductId, SellerId, TradeNo};
use ordercore_domain::limits::{NOTE_LEN_MAX, REMOVE_BATCH_MAX, STOCK_MAX, USER_REMARK_LEN_MAX};
use ordercore_domain::money::parse_quantity;
use ordercore_domain::order::{Address, Delivery};
use ordercore_domain::pricing::check_items;
use ordercore_domain::text::{bounded_text, optional_text};
use ordercore_domain::{
    Action, AfterSaleId, CouponDetails, CouponId, CreateOrder, ErrorCode, Money, OrderId, Quantity,
    SkuCode, SkuDetails, Timestamp, UserId,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A command for an existing family together with the user it names: the
/// route checks that a shopper names itself (403 otherwise) before it runs
/// the action.
#[derive(Debug, Clone, PartialEq)]
pub struct UserAction {
    pub user_id: UserId,
    pub action: Action,
}

fn money(raw: i64, field: &'static str) -> Result<Money, ApiError> {
    Ok(Money::parse(raw, field)?)
}

fn time(raw: &str, field: &'static str) -> Result<Timestamp, ApiError> {
    Ok(Timestamp::parse_rfc3339(raw, field)?)
}

/// Parses item lines and checks the list: 1..=100 lines, each SKU once,
/// each quantity 1..=9999 (`ORDER_ITEM_INVALID`).
fn item_lines<'a>(
    lines: impl IntoIterator<Item = (&'a str, i64)>,
    quantity_field: &'static str,
) -> Result<Vec<(SkuCode, Quantity)>, ApiError> {
    let items = lines
        .into_iter()
        .map(|(sku, quantity)| {
            Ok((
                parse_sku_code(sku)?,
                parse_quantity(quantity, quantity_field)?,
            ))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    check_items(&items)?;
    Ok(items)
}

/// `{sku_code, sale_quantity}`: a line of an order or a price request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemRequest {
    pub sku_code: String,
    /// 1..=9999 units.
    pub sale_quantity: i64,
}

/// `{amount_type, amount}`: one amount of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmountRequest {
    /// 10 ORIGIN_PAY_AMOUNT · 20 COUPON_DISCOUNT_AMOUNT · 30 SHIPPING_AMOUNT · 50 REAL_PAY_AMOUNT
    pub amount_type: i64,
    /// Minor units.
    pub amount: i64,
}

/// `{pay_type, pay_amount}`: the payment a create request intends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// 10 WECHAT_PAY · 20 ALI_PAY
    pub pay_type: i64,
    /// Minor units.
    pub pay_amount: i64,
}

/// The delivery of a create request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRequest {
    /// 1 SELF
    pub delivery_type: i64,
    pub receiver_name: String,
    pub receiver_phone: String,
    pub province: String,
    pub city: String,
    pub area: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    pub detail_address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
}

impl DeliveryRequest {
    /// The checked delivery (`DELIVERY_TYPE_ERROR`, `DELIVERY_ADDRESS_INVALID`).
    pub fn parse(self) -> Result<Delivery, ApiError> {
        let delivery = Delivery {
            delivery_type: code_of(
                self.delivery_type,
                DeliveryType::from_code,
                ErrorCode::DELIVERY_TYPE_ERROR,
                "delivery_type",
            )?,
            receiver_name: self.receiver_name,
            receiver_phone: self.receiver_phone,
            address: Address {
                province: self.province,
                city: self.city,
                area: self.area,
                street: self.street,
                detail_address: self.detail_address,
                lon: self.lon,
                lat: self.lat,
            },
        };
        delivery.validate()?;
        Ok(delivery)
    }
}

/// `POST /v1/order-ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderIdRequest {
    pub user_id: String,
    /// 1 SELF_MALL
    pub business_identifier: i64,
}

impl OrderIdRequest {
    /// The user to issue an id for (`USER_ID_INVALID`,
    /// `BUSINESS_IDENTIFIER_ERROR`).
    pub fn parse(self) -> Result<(UserId, BusinessIdentifier), ApiError> {
        let user = parse_user_id(&self.user_id)?;
        let business = code_of(
            self.business_identifier,
            BusinessIdentifier::from_code,
            ErrorCode::BUSINESS_IDENTIFIER_ERROR,
            "business_identifier",
        )?;
        Ok((user, business))
    }
}

/// `POST /v1/orders/price`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceRequest {
    pub user_id: String,
    pub items: Vec<ItemRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_id: Option<String>,
}

/// A parsed price request: what `pricing::quote` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceBasket {
    pub user_id: UserId,
    pub items: Vec<(SkuCode, Quantity)>,
    pub coupon_id: Option<CouponId>,
}

impl PriceRequest {
    pub fn parse(self) -> Result<PriceBasket, ApiError> {
        Ok(PriceBasket {
            user_id: parse_user_id(&self.user_id)?,
            items: item_lines(
                self.items
                    .iter()
                    .map(|i| (i.sku_code.as_str(), i.sale_quantity)),
                "sale_quantity",
            )?,
            coupon_id: self.coupon_id.as_deref().map(parse_coupon_id).transpose()?,
        })
    }
}

/// `POST /v1/orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    /// An id from `POST /v1/order-ids` for this `user_id`. Optional in the
    /// JSON only so that a missing id answers `ORDER_ID_IS_NULL`, the
    /// replaced system's code, rather than a generic parse error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(required = true)]
    pub order_id: Option<String>,
    pub user_id: String,
    /// 1 SELF_MALL
    pub business_identifier: i64,
    /// 1 NORMAL
    pub order_type: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_remark: Option<String>,
    pub delivery: DeliveryRequest,
    pub items: Vec<ItemRequest>,
    pub amounts: Vec<AmountRequest>,
    pub payments: Vec<PaymentRequest>,
}

impl CreateOrderRequest {
    /// A stable 64-bit hash of the request: FNV-1a ([`fnv1a_64`]) over this
    /// struct re-serialized by serde_json. Re-serializing canonicalises the
    /// body — field order, whitespace, escapes and `null` versus absent no
    /// longer matter — so equal requests hash equal across clients and
    /// restarts, and any changed value changes the hash.
    pub fn fingerprint(&self) -> u64 {
        // Serializing plain strings, integers and finite floats cannot fail.
        fnv1a_64(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// The create command, every value checked with its own code.
    pub fn into_command(self) -> Result<CreateOrder, ApiError> {
        let fingerprint = self.fingerprint();
        let order_id = parse_order_id(self.order_id.as_deref().unwrap_or(""))?;
        let user_id = parse_user_id(&self.user_id)?;
        // Checked here as well as in the core, so that a repeat of a create
        // for an existing id is refused for the same reasons as the first.
        if order_id.is_sub_order() || !order_id.belongs_to(&user_id) {
            return Err(ApiError::new(
                ErrorCode::ORDER_ID_INVALID,
                "order_id: is not an order id issued for this user_id",
            ));
        }
        let business_identifier = code_of(
            self.business_identifier,
            BusinessIdentifier::from_code,
            ErrorCode::BUSINESS_IDENTIFIER_ERROR,
            "business_identifier",
        )?;
        let order_type = code_of(
            self.order_type,
            OrderType::from_code,
            ErrorCode::ORDER_TYPE_ERROR,
            "order_type",
        )?;
        let seller_id = self.seller_id.as_deref().map(SellerId::parse).transpose()?;
        let coupon_id = self.coupon_id.as_deref().map(parse_coupon_id).transpose()?;
        optional_text(
            self.user_remark.as_deref(),
            USER_REMARK_LEN_MAX,
            ErrorCode::TEXT_INVALID,
            "user_remark",
        )?;
        let delivery = self.delivery.parse()?;
        let items = item_lines(
            self.items
                .iter()
                .map(|i| (i.sku_code.as_str(), i.sale_quantity)),
            "sale_quantity",
        )?;
        let mut amounts = Vec::with_capacity(self.amounts.len());
        for a in &self.amounts {
            let amount_type = code_of(
                a.amount_type,
                AmountType::from_code,
                ErrorCode::AMOUNT_TYPE_ERROR,
                "amount_type",
            )?;
            if amounts.iter().any(|(t, _)| *t == amount_type) {
                return Err(ApiError::new(
                    ErrorCode::AMOUNT_TYPE_ERROR,
                    format!("amounts: {amount_type} appears twice"),
                ));
            }
            amounts.push((amount_type, money(a.amount, "amount")?));
        }
        if !amounts
            .iter()
            .any(|(t, _)| *t == AmountType::REAL_PAY_AMOUNT)
        {
            return Err(ApiError::new(
                ErrorCode::AMOUNT_TYPE_ERROR,
                "amounts: REAL_PAY_AMOUNT (50) is required",
            ));
        }
        let [payment] = self.payments.as_slice() else {
            return Err(ApiError::new(
                ErrorCode::PAY_TYPE_ERROR,
                "payments: must hold exactly one payment",
            ));
        };
        let pay_type = code_of(
            payment.pay_type,
            PayType::from_code,
            ErrorCode::PAY_TYPE_ERROR,
            "pay_type",
        )?;
        let payments = vec![(pay_type, money(payment.pay_amount, "pay_amount")?)];
        Ok(CreateOrder {
            order_id,
            user_id,
            business_identifier,
            order_type,
            seller_id,
            coupon_id,
            user_remark: self.user_remark,
            delivery,
            items,
            amounts,
            payments,
            fingerprint,
        })
    }
}

/// `POST /v1/orders/{order_id}/prepay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrepayRequest {
    pub user_id: String,
    /// 10 WECHAT_PAY · 20 ALI_PAY
    pub pay_type: i64,
    pub pay_amount: i64,
}

impl PrepayRequest {
    /// `Action::PrePay` for the order of the path.
    pub fn into_action(self, order_id: OrderId) -> Result<UserAction, ApiError> {
        Ok(UserAction {
            user_id: parse_user_id(&self.user_id)?,
            action: Action::PrePay {
                order_id,
                pay_type: code_of(
                    self.pay_type,
                    PayType::from_code,
                    ErrorCode::PAY_TYPE_ERROR,
                    "pay_type",
                )?,
                pay_amount: money(self.pay_amount, "pay_amount")?,
            },
        })
    }
}

/// `POST /v1/payments/callback` (signed by the payment provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayCallbackRequest {
    /// The master (or single) order.
    pub order_id: String,
    pub out_trade_no: String,
    /// 10 WECHAT_PAY · 20 ALI_PAY
    pub pay_type: i64,
    pub pay_amount: i64,
    /// The provider's payment id; decides repeats.
    pub trade_no: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub paid_at: String,
}

impl PayCallbackRequest {
    /// `Action::PayCallback` (`TRADE_NO_INVALID`, `TIME_INVALID`, ...).
    pub fn into_action(self) -> Result<Action, ApiError> {
        Ok(Action::PayCallback {
            order_id: parse_order_id(&self.order_id)?,
            out_trade_no: OutTradeNo::parse(&self.out_trade_no)?,
            pay_type: code_of(
                self.pay_type,
                PayType::from_code,
                ErrorCode::PAY_TYPE_ERROR,
                "pay_type",
            )?,
            pay_amount: money(self.pay_amount, "pay_amount")?,
            trade_no: TradeNo::parse(&self.trade_no)?,
            paid_at: time(&self.paid_at, "paid_at")?,
        })
    }
}

/// `POST /v1/orders/{order_id}/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub user_id: String,
    /// 0 USER_CANCELED (the default) · 2 CUSTOMER_CANCELED (admins only);
    /// 1 TIMEOUT_CANCELED is the deadline's alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_type: Option<i64>,
}

impl CancelRequest {
    /// `Action::Cancel`; whether the caller may send `cancel_type` 1 or 2 is
    /// the core's decision (400 / 403), made with the caller's actor.
    pub fn into_action(self, order_id: OrderId) -> Result<UserAction, ApiError> {
        let cancel_type = match self.cancel_type {
            None => CancelType::USER_CANCELED,
            Some(raw) => code_of(
                raw,
                CancelType::from_code,
                ErrorCode::CANCEL_TYPE_ERROR,
                "cancel_type",
            )?,
        };
        Ok(UserAction {
            user_id: parse_user_id(&self.user_id)?,
            action: Action::Cancel {
                order_id,
                cancel_type,
            },
        })
    }
}

/// `PUT /v1/orders/{order_id}/delivery-address`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRequest {
    pub user_id: String,
    pub province: String,
    pub city: String,
    pub area: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    pub detail_address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
}

impl AddressRequest {
    /// `Action::AdjustAddress` (`DELIVERY_ADDRESS_INVALID`).
    pub fn into_action(self, order_id: OrderId) -> Result<UserAction, ApiError> {
        let user_id = parse_user_id(&self.user_id)?;
        let address = Address {
            province: self.province,
            city: self.city,
            area: self.area,
            street: self.street,
            detail_address: self.detail_address,
            lon: self.lon,
            lat: self.lat,
        };
        address.validate()?;
        Ok(UserAction {
            user_id,
            action: Action::AdjustAddress { order_id, address },
        })
    }
}

/// `POST /v1/orders/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    pub user_id: String,
    /// 1..=100 master or single order ids.
    pub order_ids: Vec<String>,
}

/// A parsed remove request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveBatch {
    pub user_id: UserId,
    /// Without repeats, in request order.
    pub order_ids: Vec<OrderId>,
}

impl RemoveRequest {
    pub fn parse(self) -> Result<RemoveBatch, ApiError> {
        let user_id = parse_user_id(&self.user_id)?;
        if self.order_ids.is_empty() || self.order_ids.len() > REMOVE_BATCH_MAX {
            return Err(ApiError::invalid_request(format!(
                "order_ids: must hold 1..={REMOVE_BATCH_MAX} ids"
            )));
        }
        let mut order_ids: Vec<OrderId> = Vec::with_capacity(self.order_ids.len());
        for raw in &self.order_ids {
            let id = parse_order_id(raw)?;
            // A repeated id is one order: removing it twice is one removal.
            if !order_ids.contains(&id) {
                order_ids.push(id);
            }
        }
        Ok(RemoveBatch { user_id, order_ids })
    }
}

/// A fulfillment step, as the warehouse or carrier reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[allow(non_camel_case_types)]
pub enum FulfillmentEventName {
    /// PAID → FULFILLED: pushed to the warehouse.
    FULFILLED,
    /// FULFILLED → OUT_STOCK: left the warehouse.
    OUT_STOCK,
    /// OUT_STOCK → DELIVERY.
    DELIVERY,
    /// DELIVERY → SIGNED.
    SIGNED,
    /// DELIVERY → REFUSED: full refund, stock back.
    REFUSED,
}

impl From<FulfillmentEventName> for FulfillmentEvent {
    fn from(name: FulfillmentEventName) -> FulfillmentEvent {
        match name {
            FulfillmentEventName::FULFILLED => FulfillmentEvent::FULFILLED,
            FulfillmentEventName::OUT_STOCK => FulfillmentEvent::OUT_STOCK,
            FulfillmentEventName::DELIVERY => FulfillmentEvent::DELIVERY,
            FulfillmentEventName::SIGNED => FulfillmentEvent::SIGNED,
            FulfillmentEventName::REFUSED => FulfillmentEvent::REFUSED,
        }
    }
}

/// `POST /v1/orders/{order_id}/fulfillment` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FulfillmentRequest {
    pub event: FulfillmentEventName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logistics_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
}

impl FulfillmentRequest {
    /// `Action::Fulfill`; the core bounds the free text.
    pub fn into_action(self, order_id: OrderId) -> Action {
        Action::Fulfill {
            order_id,
            event: self.event.into(),
            logistics_code: self.logistics_code,
            operator: self.operator,
        }
    }
}

/// `{sku_code, return_quantity}`: a line of an after-sale application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnItemRequest {
    pub sku_code: String,
    pub return_quantity: i64,
}

/// `POST /v1/orders/{order_id}/after-sales`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AfterSaleApplyRequest {
    pub user_id: String,
    /// 1 RETURN_MONEY · 2 RETURN_GOODS
    pub after_sale_type: i64,
    pub items: Vec<ReturnItemRequest>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
}

impl AfterSaleApplyRequest {
    /// `Action::ApplyAfterSale` (`AFTER_SALE_TYPE_ERROR`,
    /// `ORDER_ITEM_INVALID`; the core bounds reason and images).
    pub fn into_action(self, order_id: OrderId) -> Result<UserAction, ApiError> {
        Ok(UserAction {
            user_id: parse_user_id(&self.user_id)?,
            action: Action::ApplyAfterSale {
                order_id,
                after_sale_type: code_of(
                    self.after_sale_type,
                    AfterSaleType::from_code,
                    ErrorCode::AFTER_SALE_TYPE_ERROR,
                    "after_sale_type",
                )?,
                items: item_lines(
                    self.items
                        .iter()
                        .map(|i| (i.sku_code.as_str(), i.return_quantity)),
                    "return_quantity",
                )?,
                reason: self.reason,
                images: self.images.unwrap_or_default(),
            },
        })
    }
}

/// `POST /v1/after-sales/{id}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    pub user_id: String,
}

impl RevokeRequest {
    pub fn into_action(self, after_sale_id: AfterSaleId) -> Result<UserAction, ApiError> {
        Ok(UserAction {
            user_id: parse_user_id(&self.user_id)?,
            action: Action::RevokeAfterSale { after_sale_id },
        })
    }
}

/// `POST /v1/after-sales/{id}/review` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    pub approved: bool,
    pub remark: String,
}

impl ReviewRequest {
    /// `Action::ReviewAfterSale`; the core bounds the remark.
    pub fn into_action(self, after_sale_id: AfterSaleId) -> Action {
        Action::ReviewAfterSale {
            after_sale_id,
            approved: self.approved,
            remark: Some(self.remark),
        }
    }
}

/// `POST /v1/after-sales/{id}/retry` (admin) has no body.
pub fn retry_action(after_sale_id: AfterSaleId) -> Action {
    Action::RetryRefund { after_sale_id }
}

/// `POST /v1/refunds/callback` (signed by the payment provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundCallbackRequest {
    pub after_sale_id: String,
    pub refund_amount: i64,
    pub success: bool,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub refunded_at: String,
}

impl RefundCallbackRequest {
    /// The after-sale it reports on (its family routes the callback) and
    /// `Action::RefundResult`.
    pub fn into_action(self) -> Result<(AfterSaleId, Action), ApiError> {
        let after_sale_id = parse_after_sale_id(&self.after_sale_id)?;
        Ok((
            after_sale_id,
            Action::RefundResult {
                after_sale_id,
                refund_amount: money(self.refund_amount, "refund_amount")?,
                success: self.success,
                refunded_at: time(&self.refunded_at, "refunded_at")?,
            },
        ))
    }
}

/// `{sku_code, lack_quantity}`: a line the warehouse cannot ship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LackItemRequest {
    pub sku_code: String,
    pub lack_quantity: i64,
}

/// `POST /v1/orders/{order_id}/lack` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LackRequest {
    pub items: Vec<LackItemRequest>,
}

impl LackRequest {
    pub fn into_action(self, order_id: OrderId) -> Result<Action, ApiError> {
        Ok(Action::Lack {
            order_id,
            items: item_lines(
                self.items
                    .iter()
                    .map(|i| (i.sku_code.as_str(), i.lack_quantity)),
                "lack_quantity",
            )?,
        })
    }
}

/// `POST /v1/orders/{order_id}/notes` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// 1..=2000 characters.
    pub text: String,
}

impl NoteRequest {
    /// `Action::AddNote` (`TEXT_INVALID`).
    pub fn into_action(self, order_id: OrderId) -> Result<Action, ApiError> {
        bounded_text(&self.text, 1, NOTE_LEN_MAX, ErrorCode::TEXT_INVALID, "text")?;
        Ok(Action::AddNote {
            order_id,
            text: self.text,
        })
    }
}

/// `PUT /v1/skus/{sku_code}` (admin): the catalog entry and its total stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkuUpsertRequest {
    pub product_id: String,
    pub product_name: String,
    /// 1 NORMAL_PRODUCT · 2 ADVANCE_SALE
    pub product_type: i64,
    pub sale_price: i64,
    pub purchase_price: i64,
    pub product_unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_img: Option<String>,
    pub seller_id: String,
    /// Total units (available + locked + sold).
    pub stock: i64,
}

impl SkuUpsertRequest {
    /// The SKU details and the total stock (`PRODUCT_TYPE_ERROR`,
    /// `AMOUNT_INVALID`, `SKU_INVALID`; the core checks the stock against
    /// what orders hold).
    pub fn into_details(self, sku_code: SkuCode) -> Result<(SkuDetails, i64), ApiError> {
        let details = SkuDetails {
            sku_code,
            product_id: ProductId::parse(&self.product_id)?,
            product_name: self.product_name,
            product_type: code_of(
                self.product_type,
                ProductType::from_code,
                ErrorCode::PRODUCT_TYPE_ERROR,
                "product_type",
            )?,
            sale_price: money(self.sale_price, "sale_price")?,
            purchase_price: money(self.purchase_price, "purchase_price")?,
            product_unit: self.product_unit,
            product_img: self.product_img,
            seller_id: SellerId::parse(&self.seller_id)?,
        };
        details.validate()?;
        if !(0..=STOCK_MAX).contains(&self.stock) {
            return Err(ApiError::new(
                ErrorCode::SKU_INVALID,
                format!("stock: must be 0..={STOCK_MAX}, got {}", self.stock),
            ));
        }
        Ok((details, self.stock))
    }
}

/// `POST /v1/skus/{sku_code}/stock` (admin): add to (or, negative, take
/// from) the available stock; the core bounds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockDeltaRequest {
    pub delta: i64,
}

/// `PUT /v1/coupons/{coupon_id}` (admin): issue a coupon to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CouponIssueRequest {
    pub user_id: String,
    /// Discount, minor units.
    pub amount: i64,
    /// Smallest origin amount the coupon applies to.
    pub threshold_amount: i64,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub valid_from: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub valid_to: String,
}

impl CouponIssueRequest {
    /// The coupon details (`USER_ID_INVALID`, `AMOUNT_INVALID`,
    /// `TIME_INVALID`; the core checks amount and validity window).
    pub fn into_details(self, coupon_id: CouponId) -> Result<CouponDetails, ApiError> {
        Ok(CouponDetails {
            coupon_id,
            user_id: parse_user_id(&self.user_id)?,
            amount: money(self.amount, "amount")?,
            threshold_amount: money(self.threshold_amount, "threshold_amount")?,
            valid_from: time(&self.valid_from, "valid_from")?,
            valid_to: time(&self.valid_to, "valid_to")?,
        })
    }
}
