//! Commands: what a caller asks of an order family, already parsed into
//! the domain's types, with who asks and why.

use crate::catalog::{Coupon, Sku};
use crate::codes::AmountType;
use crate::codes::{
    AfterSaleType, BusinessIdentifier, CancelType, FulfillmentEvent, OrderType, PayType,
};
use crate::event::Actor;
use crate::ids::{
    AfterSaleId, CouponId, IdempotencyKey, OrderId, OutTradeNo, RequestId, SellerId, SkuCode,
    TradeNo, UserId,
};
use crate::money::{Money, Quantity, Timestamp};
use crate::order::{Address, Delivery};
use crate::pricing::{PricingRules, RiskRules};

/// Who asks, for which request, and why. Every event of the change records
/// the actor, request id and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMeta {
    pub actor: Actor,
    pub request_id: Option<RequestId>,
    /// Checked by the caller with `OrderFamily::check_idempotency` before
    /// `decide`; carried here so the change can record its reply. The
    /// order actor sets it from its write options before `decide`, whatever
    /// a caller of the core put here.
    pub idempotency_key: Option<IdempotencyKey>,
    pub reason: Option<String>,
    /// `If-Match`: the family version the caller last read.
    pub if_match: Option<IfMatch>,
}

/// An `If-Match` as sent. `decide` checks it, after the `Idempotency-Key`
/// (API.md: the key comes first, so a retry replays whatever tag it sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// `"3"`: the family must be at version 3.
    Version(u64),
    /// `W/"3"`: a weak tag, which never matches (RFC 9110's strong
    /// comparison), whatever version it names.
    Weak(u64),
}

impl CommandMeta {
    /// Metadata for `actor` with nothing else set.
    pub fn by(actor: Actor) -> CommandMeta {
        CommandMeta {
            actor,
            request_id: None,
            idempotency_key: None,
            reason: None,
            if_match: None,
        }
    }
}

/// `POST /v1/orders`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateOrder {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub business_identifier: BusinessIdentifier,
    pub order_type: OrderType,
    pub seller_id: Option<SellerId>,
    pub coupon_id: Option<CouponId>,
    pub user_remark: Option<String>,
    pub delivery: Delivery,
    pub items: Vec<(SkuCode, Quantity)>,
    /// The amounts the client claims; REAL_PAY_AMOUNT is required.
    pub amounts: Vec<(AmountType, Money)>,
    /// The payment the client intends: exactly one.
    pub payments: Vec<(PayType, Money)>,
    /// A hash of the request body, for idempotent repeats on `order_id`.
    pub fingerprint: u64,
}

/// What `decide_create` needs to know beyond the request: the SKUs and
/// coupon as they are now, the rules, and the user's recent order count.
#[derive(Debug, Clone, Copy)]
pub struct CreateContext<'a> {
    /// The current state of every SKU the order names (missing ones are
    /// `PRODUCT_SKU_NOT_FOUND`); borrowed, so a caller holding them under
    /// locks copies nothing.
    pub skus: &'a [&'a Sku],
    /// The coupon the order names, if it exists.
    pub coupon: Option<&'a Coupon>,
    pub pricing: &'a PricingRules,
    pub risk: &'a RiskRules,
    /// Orders the user created in the last minute.
    pub user_orders_last_minute: u32,
    /// Time from creation to the payment deadline.
    pub pay_timeout_ms: i64,
}

/// A change asked of an existing order family.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A repeat of the create request for an existing id.
    Create {
        fingerprint: u64,
    },
    PrePay {
        order_id: OrderId,
        pay_type: PayType,
        pay_amount: Money,
    },
    PayCallback {
        order_id: OrderId,
        out_trade_no: OutTradeNo,
        pay_type: PayType,
        pay_amount: Money,
        trade_no: TradeNo,
        paid_at: Timestamp,
    },
    Cancel {
        order_id: OrderId,
        cancel_type: CancelType,
    },
    /// The payment deadline fired.
    Deadline {
        order_id: OrderId,
    },
    AdjustAddress {
        order_id: OrderId,
        address: Address,
    },
    Remove {
        order_id: OrderId,
    },
    Fulfill {
        order_id: OrderId,
        event: FulfillmentEvent,
        logistics_code: Option<String>,
        operator: Option<String>,
    },
    ApplyAfterSale {
        order_id: OrderId,
        after_sale_type: AfterSaleType,
        items: Vec<(SkuCode, Quantity)>,
        reason: String,
        images: Vec<String>,
    },
    ReviewAfterSale {
        after_sale_id: AfterSaleId,
        approved: bool,
        remark: Option<String>,
    },
    RevokeAfterSale {
        after_sale_id: AfterSaleId,
    },
    RefundResult {
        after_sale_id: AfterSaleId,
        refund_amount: Money,
        success: bool,
        refunded_at: Timestamp,
    },
    RetryRefund {
        after_sale_id: AfterSaleId,
    },
    Lack {
        order_id: OrderId,
        items: Vec<(SkuCode, Quantity)>,
    },
    AddNote {
        order_id: OrderId,
        text: String,
    },
}

impl Action {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::PrePay { .. } => "prepay",
            Action::PayCallback { .. } => "pay_callback",
            Action::Cancel { .. } => "cancel",
            Action::Deadline { .. } => "deadline",
            Action::AdjustAddress { .. } => "adjust_address",
            Action::Remove { .. } => "remove",
            Action::Fulfill { .. } => "fulfill",
            Action::ApplyAfterSale { .. } => "after_sale_apply",
            Action::ReviewAfterSale { .. } => "after_sale_review",
            Action::RevokeAfterSale { .. } => "after_sale_revoke",
            Action::RefundResult { .. } => "refund_callback",
            Action::RetryRefund { .. } => "refund_retry",
            Action::Lack { .. } => "lack",
            Action::AddNote { .. } => "note",
        }
    }
}

/// A command for an existing family.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub meta: CommandMeta,
    pub action: Action,
}
