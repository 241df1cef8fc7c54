//! Domain events: the journal's content, the outbox, and each family's history.
//!
//! A decided change is a list of events that travel as one journal unit:
//! an order's creation with the stock it reserved and the coupon it locked,
//! or a payment with its stock moving from locked to sold. Each event
//! records who caused it (`actor`), the request and a reason, so history and
//! audit come from the journal itself.

use crate::catalog::{CouponDetails, SkuDetails};
use crate::codes::{CancelType, CouponStatus, PayType};
use crate::family::{AfterSale, IdempotencyEntry, NewOrder};
use crate::ids::{AfterSaleId, CouponId, OrderId, OutTradeNo, RequestId, SkuCode, TradeNo};
use crate::money::{Money, Timestamp};
use crate::order::Address;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Who caused a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// A shopper (the token's `sub`).
    User,
    /// An operator, fulfillment or customer service (`role: "admin"`).
    Admin,
    /// The payment provider (a signed callback).
    Provider,
    /// ordercore itself (payment deadlines).
    System,
}

/// Who caused a change: `{kind, id}` in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
}

impl Actor {
    pub fn user(id: &crate::ids::UserId) -> Actor {
        Actor {
            kind: ActorKind::User,
            id: id.as_str().to_owned(),
        }
    }

    pub fn admin(id: impl Into<String>) -> Actor {
        Actor {
            kind: ActorKind::Admin,
            id: id.into(),
        }
    }

    /// The payment provider.
    pub fn provider() -> Actor {
        Actor {
            kind: ActorKind::Provider,
            id: "provider".to_owned(),
        }
    }

    /// ordercore itself.
    pub fn system() -> Actor {
        Actor {
            kind: ActorKind::System,
            id: "system".to_owned(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.kind == ActorKind::Admin
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}:{}", self.kind, self.id)
    }
}

/// A change of one SKU's stock; the deltas sum to the change of its total
/// (zero for every move caused by an order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockDelta {
    pub sku_code: SkuCode,
    /// The order family that caused it, if any.
    pub order_id: Option<OrderId>,
    pub available_delta: i64,
    pub locked_delta: i64,
    pub sold_delta: i64,
}

/// A coupon's new state, caused by an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponChange {
    pub coupon_id: CouponId,
    pub order_id: OrderId,
    pub status: CouponStatus,
}

/// A payment as reported by the provider's callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReport {
    pub order_id: OrderId,
    pub trade_no: TradeNo,
    pub out_trade_no: OutTradeNo,
    pub pay_type: PayType,
    pub pay_amount: Money,
    pub paid_at: Timestamp,
}

/// A fulfillment step of one order or sub-order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentStep {
    pub order_id: OrderId,
    pub logistics_code: Option<String>,
    pub operator: Option<String>,
}

/// What happened. The variant name is the event `type` of API.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventBody {
    OrderCreated(Box<NewOrder>),
    OrderPrePaid {
        order_id: OrderId,
        pay_type: PayType,
        pay_amount: Money,
        out_trade_no: OutTradeNo,
    },
    OrderPaid(PaymentReport),
    /// A payment for a family that was cancelled or already paid; it is
    /// refunded by the after-sale named here (ordercore).
    PaymentReceived {
        payment: PaymentReport,
        after_sale_id: AfterSaleId,
    },
    OrderCanceled {
        order_id: OrderId,
        cancel_type: CancelType,
    },
    OrderAddressChanged {
        order_id: OrderId,
        address: Address,
    },
    OrderRemoved {
        order_id: OrderId,
    },
    OrderFulfilled(FulfillmentStep),
    OrderOutStock(FulfillmentStep),
    OrderDelivered(FulfillmentStep),
    OrderSigned(FulfillmentStep),
    OrderRefused(FulfillmentStep),
    RefundRequested {
        after_sale_id: AfterSaleId,
        order_id: OrderId,
        trade_no: Option<TradeNo>,
        refund_amount: Money,
    },
    AfterSaleCommitted(Box<AfterSale>),
    AfterSaleReviewed {
        after_sale_id: AfterSaleId,
        approved: bool,
        remark: Option<String>,
    },
    AfterSaleRevoked {
        after_sale_id: AfterSaleId,
    },
    RefundCompleted {
        after_sale_id: AfterSaleId,
        refund_amount: Money,
        refunded_at: Timestamp,
    },
    RefundFailed {
        after_sale_id: AfterSaleId,
        refund_amount: Money,
    },
    StockChanged(StockDelta),
    CouponChanged(CouponChange),
    OrderNoteAdded {
        order_id: OrderId,
        text: String,
    },
    /// The recorded reply of a write sent with an `Idempotency-Key` (internal:
    /// kept with the family, not published as an event).
    IdempotencyRecorded(Box<IdempotencyEntry>),
    SkuUpserted(Box<SkuDetails>),
    CouponIssued(Box<CouponDetails>),
    /// A refund the provider reports failed, with the time its callback
    /// gives (type `RefundFailed`): the time tells a repeat of that callback,
    /// arriving after a retry, from a failure of the retried refund.
    /// Emitted instead of `RefundFailed`, which journals and rows written
    /// before still hold (new variants go last: the stored encoding numbers
    /// them in order).
    RefundFailure {
        after_sale_id: AfterSaleId,
        refund_amount: Money,
        refunded_at: Timestamp,
    },
}

/// What an event changes: the aggregate a journal replay applies it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target<'a> {
    Family(OrderId),
    Sku(&'a SkuCode),
    Coupon(&'a CouponId),
    /// No aggregate: only a defect could produce such an event.
    Unrouted,
}

impl EventBody {
    /// The event `type` of API.md.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::OrderCreated(_) => "OrderCreated",
            EventBody::OrderPrePaid { .. } => "OrderPrePaid",
            EventBody::OrderPaid(_) => "OrderPaid",
            EventBody::PaymentReceived { .. } => "PaymentReceived",
            EventBody::OrderCanceled { .. } => "OrderCanceled",
            EventBody::OrderAddressChanged { .. } => "OrderAddressChanged",
            EventBody::OrderRemoved { .. } => "OrderRemoved",
            EventBody::OrderFulfilled(_) => "OrderFulfilled",
            EventBody::OrderOutStock(_) => "OrderOutStock",
            EventBody::OrderDelivered(_) => "OrderDelivered",
            EventBody::OrderSigned(_) => "OrderSigned",
            EventBody::OrderRefused(_) => "OrderRefused",
            EventBody::RefundRequested { .. } => "RefundRequested",
            EventBody::AfterSaleCommitted(_) => "AfterSaleCommitted",
            EventBody::AfterSaleReviewed { .. } => "AfterSaleReviewed",
            EventBody::AfterSaleRevoked { .. } => "AfterSaleRevoked",
            EventBody::RefundCompleted { .. } => "RefundCompleted",
            EventBody::RefundFailed { .. } | EventBody::RefundFailure { .. } => "RefundFailed",
            EventBody::StockChanged(_) => "StockChanged",
            EventBody::CouponChanged(_) => "CouponChanged",
            EventBody::OrderNoteAdded { .. } => "OrderNoteAdded",
            EventBody::IdempotencyRecorded(_) => "IdempotencyRecorded",
            EventBody::SkuUpserted(_) => "SkuUpserted",
            EventBody::CouponIssued(_) => "CouponIssued",
        }
    }

    /// Whether event consumers see this event (the outbox and history
    /// exclude the internal idempotency records).
    pub fn is_public(&self) -> bool {
        !matches!(self, EventBody::IdempotencyRecorded(_))
    }

    /// An edit: a change that does not move the order forward and may be
    /// asked for again and again (`EDITS_PER_FAMILY_MAX` bounds them).
    pub fn is_edit(&self) -> bool {
        matches!(
            self,
            EventBody::OrderAddressChanged { .. }
                | EventBody::OrderPrePaid { .. }
                | EventBody::OrderNoteAdded { .. }
        )
    }

    /// The order or sub-order the event concerns, if any.
    pub fn order_id(&self) -> Option<OrderId> {
        match self {
            EventBody::OrderCreated(new) => Some(new.order_id),
            EventBody::OrderPrePaid { order_id, .. }
            | EventBody::OrderCanceled { order_id, .. }
            | EventBody::OrderAddressChanged { order_id, .. }
            | EventBody::OrderRemoved { order_id }
            | EventBody::RefundRequested { order_id, .. }
            | EventBody::OrderNoteAdded { order_id, .. } => Some(*order_id),
            EventBody::OrderPaid(p) | EventBody::PaymentReceived { payment: p, .. } => {
                Some(p.order_id)
            }
            EventBody::OrderFulfilled(s)
            | EventBody::OrderOutStock(s)
            | EventBody::OrderDelivered(s)
            | EventBody::OrderSigned(s)
            | EventBody::OrderRefused(s) => Some(s.order_id),
            EventBody::AfterSaleCommitted(a) => Some(a.order_id),
            EventBody::AfterSaleReviewed { after_sale_id, .. }
            | EventBody::AfterSaleRevoked { after_sale_id }
            | EventBody::RefundCompleted { after_sale_id, .. }
            | EventBody::RefundFailed { after_sale_id, .. }
            | EventBody::RefundFailure { after_sale_id, .. } => Some(after_sale_id.family_id()),
            EventBody::StockChanged(d) => d.order_id,
            EventBody::CouponChanged(c) => Some(c.order_id),
            EventBody::IdempotencyRecorded(e) => Some(e.family_id),
            EventBody::SkuUpserted(_) | EventBody::CouponIssued(_) => None,
        }
    }

    /// The aggregate this event changes when replayed.
    pub fn target(&self) -> Target<'_> {
        match self {
            EventBody::StockChanged(d) => Target::Sku(&d.sku_code),
            EventBody::SkuUpserted(d) => Target::Sku(&d.sku_code),
            EventBody::CouponChanged(c) => Target::Coupon(&c.coupon_id),
            EventBody::CouponIssued(d) => Target::Coupon(&d.coupon_id),
            other => other
                .order_id()
                .map_or(Target::Unrouted, |id| Target::Family(id.family_id())),
        }
    }

    /// The family whose history records this event, if any.
    pub fn family_id(&self) -> Option<OrderId> {
        self.order_id().map(|id| id.family_id())
    }
}

/// One journalled event with who caused it and where it sits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Journal position (global, increasing); 0 until the writer assigns it.
    pub seq: u64,
    pub at: Timestamp,
    pub actor: Actor,
    pub request_id: Option<RequestId>,
    pub reason: Option<String>,
    /// The family's version after this change (0 for catalog events).
    pub version: u64,
    pub body: EventBody,
}

/// Who, when and why, shared by every event of one decided change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContext {
    pub at: Timestamp,
    pub actor: Actor,
    pub request_id: Option<RequestId>,
    pub reason: Option<String>,
    pub version: u64,
}

impl EventContext {
    /// Wraps the bodies of one change into events.
    pub fn events(&self, bodies: Vec<EventBody>) -> Vec<Event> {
        bodies
            .into_iter()
            .map(|body| Event {
                seq: 0,
                at: self.at,
                actor: self.actor.clone(),
                request_id: self.request_id.clone(),
                reason: self.reason.clone(),
                version: self.version,
                body,
            })
            .collect()
    }
}
