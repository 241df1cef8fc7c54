//! The order family aggregate: a master order, its sub-orders (one per
//! product type when an order mixes them), lines, amounts, delivery,
//! payments, after-sales, status log, idempotency records and history.
//!
//! Family rule (API.md): exactly one layer is live at a time. Until the
//! family is paid the master is the order and its sub-orders are INVALID;
//! the payment moves the master to INVALID and every sub-order to PAID. An
//! order of one product type has no sub-orders and is its own only part.
//!
//! Only `apply` changes a family, and only with events that `decide`
//! produced (or the journal replays), so replaying a family's events
//! rebuilds an equal state.

use crate::codes::{
    AfterSaleStatus, AfterSaleType, AfterSaleTypeDetail, BusinessIdentifier, CancelType,
    OrderStatus, OrderType, PayStatus,
};
use crate::event::{Actor, Event, EventBody};
use crate::ids::{
    AfterSaleId, IdempotencyKey, OrderId, RequestId, SellerId, SkuCode, TradeNo, UserId,
};
use crate::money::{Money, Quantity, Timestamp};
use crate::order::{Amounts, CouponSnapshot, Delivery, ExtraPayment, OrderLine, Payment, SubOrder};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Everything an `OrderCreated` event records: the family as it was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub business_identifier: BusinessIdentifier,
    pub order_type: OrderType,
    pub seller_id: Option<SellerId>,
    pub user_remark: Option<String>,
    pub created_at: Timestamp,
    /// The payment deadline.
    pub expire_at: Timestamp,
    pub delivery: Delivery,
    pub amounts: Amounts,
    pub coupon: Option<CouponSnapshot>,
    pub lines: Vec<OrderLine>,
    /// Empty for an order of one product type.
    pub sub_orders: Vec<SubOrder>,
    pub payment: Payment,
    /// A hash of the create request, so a repeat with the same `order_id`
    /// answers the same result and a different body answers ORDER_EXISTED.
    pub fingerprint: u64,
}

/// One returned line of an after-sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterSaleItem {
    pub sku_code: SkuCode,
    pub quantity: Quantity,
    pub refund_amount: Money,
}

/// An after-sale: a shopper's return, a lack refund, or a system refund of a
/// whole payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterSale {
    pub after_sale_id: AfterSaleId,
    /// The order or sub-order it concerns (the master for family refunds).
    pub order_id: OrderId,
    pub user_id: UserId,
    pub after_sale_type: AfterSaleType,
    pub detail: AfterSaleTypeDetail,
    pub status: AfterSaleStatus,
    /// Empty for the refund of a payment that bought nothing.
    pub items: Vec<AfterSaleItem>,
    /// The shipping fee refunded with it (by the one completing the order).
    pub shipping_amount: Money,
    /// Σ item refunds + shipping, or the whole extra payment.
    pub apply_refund_amount: Money,
    /// The payment it refunds.
    pub trade_no: Option<TradeNo>,
    pub reason: Option<String>,
    pub images: Vec<String>,
    pub review_remark: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The time the provider's last refund callback gave: the refund's once
    /// REFUNDED; before that, the last failure's (kept across a retry to
    /// tell that failure's repeated callback from a new one; API views show
    /// it only when REFUNDED).
    pub refunded_at: Option<Timestamp>,
}

impl AfterSale {
    /// Units of `sku` this after-sale returns.
    pub fn quantity_of(&self, sku: &SkuCode) -> Quantity {
        self.items
            .iter()
            .filter(|i| &i.sku_code == sku)
            .map(|i| i.quantity)
            .sum()
    }

    /// Whether it has been approved (system refunds start approved).
    pub fn is_approved(&self) -> bool {
        matches!(
            self.status,
            AfterSaleStatus::REVIEW_PASS
                | AfterSaleStatus::REFUNDING
                | AfterSaleStatus::REFUNDED
                | AfterSaleStatus::FAILED
        )
    }
}

/// One change of an order's or sub-order's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusLogEntry {
    pub order_id: OrderId,
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub at: Timestamp,
    pub actor: Actor,
    pub request_id: Option<RequestId>,
    pub reason: Option<String>,
}

/// A recorded reply to a write sent with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyEntry {
    pub family_id: OrderId,
    /// Keys are scoped to (caller, family).
    pub caller: Actor,
    pub key: IdempotencyKey,
    /// Hash of method, path and body of the request.
    pub request_hash: u64,
    /// The recorded success response.
    pub status: u16,
    pub body: String,
}

/// The answer of [`OrderFamily::check_idempotency`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyCheck<'a> {
    /// A key not seen before: run the command and record its reply.
    New,
    /// The same request again: answer the recorded reply, change nothing.
    Replay(&'a IdempotencyEntry),
}

/// A live part of a family: the single order itself, or one sub-order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartRef {
    Master,
    Sub(usize),
}

/// An order family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderFamily {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub business_identifier: BusinessIdentifier,
    pub order_type: OrderType,
    pub seller_id: Option<SellerId>,
    pub user_remark: Option<String>,
    /// The master (or single) order's status.
    pub status: OrderStatus,
    pub cancel_type: Option<CancelType>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expire_at: Timestamp,
    /// 1 at creation, +1 for every change that persists.
    pub version: u64,
    /// Soft-deleted: hidden from listings, still readable by id.
    pub removed: bool,
    pub delivery: Delivery,
    pub amounts: Amounts,
    pub coupon: Option<CouponSnapshot>,
    pub lines: Vec<OrderLine>,
    pub sub_orders: Vec<SubOrder>,
    pub payment: Payment,
    pub extra_payments: Vec<ExtraPayment>,
    pub after_sales: Vec<AfterSale>,
    pub status_log: Vec<StatusLogEntry>,
    pub idempotency: Vec<IdempotencyEntry>,
    pub fingerprint: u64,
    /// Every public event of the family, in order. Shared with the journal
    /// unit that carried it (an actor's copy-on-write clone of the family
    /// copies pointers, not events).
    pub history: Vec<Arc<Event>>,
    /// A compact copy ([`OrderFamily::compact`]): never stored, and never
    /// rendered as a detail or a history.
    #[serde(skip)]
    pub compact: bool,
    /// A compact copy's count of the edits its history held, and of those
    /// applied to it since (it keeps no history to count them in); zero in
    /// a whole family. Never stored: see [`OrderFamily::edits`].
    #[serde(skip)]
    pub compact_edits: usize,
}

impl OrderFamily {
    /// The family an `OrderCreated` event creates; `None` for other events.
    pub fn create(event: &Event) -> Option<OrderFamily> {
        if !matches!(event.body, EventBody::OrderCreated(_)) {
            return None;
        }
        OrderFamily::create_shared(&Arc::new(event.clone()))
    }

    /// [`OrderFamily::create`] keeping `event` itself in the history.
    pub fn create_shared(event: &Arc<Event>) -> Option<OrderFamily> {
        let EventBody::OrderCreated(new) = &event.body else {
            return None;
        };
        let new = (**new).clone();
        let mut family = OrderFamily {
            order_id: new.order_id,
            user_id: new.user_id,
            business_identifier: new.business_identifier,
            order_type: new.order_type,
            seller_id: new.seller_id,
            user_remark: new.user_remark,
            status: OrderStatus::CREATED,
            cancel_type: None,
            created_at: new.created_at,
            updated_at: event.at,
            expire_at: new.expire_at,
            version: event.version,
            removed: false,
            delivery: new.delivery,
            amounts: new.amounts,
            coupon: new.coupon,
            lines: new.lines,
            sub_orders: new.sub_orders,
            payment: new.payment,
            extra_payments: Vec::new(),
            after_sales: Vec::new(),
            status_log: Vec::new(),
            idempotency: Vec::new(),
            fingerprint: new.fingerprint,
            history: Vec::new(),
            compact: false,
            compact_edits: 0,
        };
        family.log_status(event, family.order_id, None, OrderStatus::CREATED);
        for i in 0..family.sub_orders.len() {
            let id = family.sub_orders[i].order_id;
            family.log_status(event, id, None, OrderStatus::INVALID);
        }
        family.history.push(Arc::clone(event));
        Some(family)
    }

    /// Applies one event of this family. Events of other aggregates (a
    /// catalog change) are ignored; stock and coupon events only enter the
    /// history.
    pub fn apply(&mut self, event: &Event) {
        if self.change(event) && !self.count_compact(event) {
            self.history.push(Arc::new(event.clone()));
        }
    }

    /// [`OrderFamily::apply`] keeping `event` itself in the history.
    pub fn apply_shared(&mut self, event: &Arc<Event>) {
        if self.change(event) && !self.count_compact(event) {
            self.history.push(Arc::clone(event));
        }
    }

    /// For a compact copy, which keeps no history: counts an edit it
    /// applies, and answers true (nothing to push).
    fn count_compact(&mut self, event: &Event) -> bool {
        if self.compact && event.body.is_edit() {
            self.compact_edits += 1;
        }
        self.compact
    }

    /// Address changes, prepays and notes the family took
    /// ([`EDITS_PER_FAMILY_MAX`](crate::limits::EDITS_PER_FAMILY_MAX)
    /// bounds them): counted in the history, or kept by a compact copy.
    pub fn edits(&self) -> usize {
        if self.compact {
            self.compact_edits
        } else {
            self.history.iter().filter(|e| e.body.is_edit()).count()
        }
    }

    /// The family without what only a detail or a history read shows: the
    /// history, the status log, the buyer's remark and each line's product
    /// snapshot (name, unit, image); nor the replies recorded for
    /// `Idempotency-Key`s, which only a keyed request reads, and it reads
    /// the whole family first (a reply can be a whole order's detail, and
    /// a family keeps up to 64). It decides every command and applies
    /// every event as the whole family does (a property test holds it to
    /// that), so an idle order actor keeps this much in memory and reads
    /// the whole family from storage only when those parts are asked for
    /// (DESIGN.md: snapshots and history may stay on disk until asked for).
    pub fn compact(&self) -> OrderFamily {
        let lines = self
            .lines
            .iter()
            .map(|line| OrderLine {
                product_name: String::new(),
                product_unit: String::new(),
                product_img: None,
                ..line.clone()
            })
            .collect();
        OrderFamily {
            user_remark: None,
            delivery: self.delivery.clone(),
            coupon: self.coupon.clone(),
            lines,
            sub_orders: self.sub_orders.clone(),
            payment: self.payment.clone(),
            extra_payments: self.extra_payments.clone(),
            after_sales: self.after_sales.clone(),
            status_log: Vec::new(),
            idempotency: Vec::new(),
            history: Vec::new(),
            compact: true,
            compact_edits: self.edits(),
            user_id: self.user_id.clone(),
            seller_id: self.seller_id.clone(),
            ..*self
        }
    }

    /// Applies `event` to everything but the history; answers whether the
    /// history records it.
    fn change(&mut self, event: &Event) -> bool {
        match &event.body {
            EventBody::OrderCreated(_) => {
                debug_assert!(
                    false,
                    "OrderCreated applied to existing family {}",
                    self.order_id
                );
                return false;
            }
            EventBody::OrderPrePaid {
                pay_type,
                out_trade_no,
                ..
            } => {
                self.payment.pay_type = *pay_type;
                self.payment.out_trade_no = Some(out_trade_no.clone());
                self.payment.prepaid_at = Some(event.at);
            }
            EventBody::OrderPaid(report) => {
                self.payment.pay_type = report.pay_type;
                self.payment.trade_no = Some(report.trade_no.clone());
                self.payment.out_trade_no = Some(report.out_trade_no.clone());
                self.payment.paid_at = Some(report.paid_at);
                if self.sub_orders.is_empty() {
                    self.set_status(event, PartRef::Master, OrderStatus::PAID);
                } else {
                    self.set_status(event, PartRef::Master, OrderStatus::INVALID);
                    for i in 0..self.sub_orders.len() {
                        self.set_status(event, PartRef::Sub(i), OrderStatus::PAID);
                    }
                }
            }
            EventBody::PaymentReceived {
                payment,
                after_sale_id,
            } => {
                self.extra_payments.push(ExtraPayment {
                    trade_no: payment.trade_no.clone(),
                    out_trade_no: payment.out_trade_no.clone(),
                    pay_type: payment.pay_type,
                    pay_amount: payment.pay_amount,
                    paid_at: payment.paid_at,
                    after_sale_id: *after_sale_id,
                });
            }
            EventBody::OrderCanceled { cancel_type, .. } => {
                if self.is_paid() {
                    for line in &mut self.lines {
                        line.restocked_quantity = line.sale_quantity;
                    }
                }
                self.cancel_type = Some(*cancel_type);
                self.set_status(event, PartRef::Master, OrderStatus::CANCELED);
                for i in 0..self.sub_orders.len() {
                    self.set_status(event, PartRef::Sub(i), OrderStatus::CANCELED);
                }
            }
            EventBody::OrderAddressChanged { address, .. } => {
                self.delivery.address = address.clone();
            }
            EventBody::OrderRemoved { .. } => self.removed = true,
            EventBody::OrderFulfilled(step) => {
                self.step(event, step.order_id, OrderStatus::FULFILLED)
            }
            EventBody::OrderOutStock(step) => {
                self.step(event, step.order_id, OrderStatus::OUT_STOCK)
            }
            EventBody::OrderDelivered(step) => {
                self.step(event, step.order_id, OrderStatus::DELIVERY)
            }
            EventBody::OrderSigned(step) => self.step(event, step.order_id, OrderStatus::SIGNED),
            EventBody::OrderRefused(step) => {
                if let Some(part) = self.part_of(step.order_id) {
                    for (sku, units) in self.refusal_restock(part) {
                        if let Some(line) = self.lines.iter_mut().find(|l| l.sku_code == sku) {
                            line.restocked_quantity += units;
                        }
                    }
                }
                self.step(event, step.order_id, OrderStatus::REFUSED);
            }
            EventBody::AfterSaleCommitted(after_sale) => {
                self.after_sales.push((**after_sale).clone())
            }
            EventBody::AfterSaleReviewed {
                after_sale_id,
                approved,
                remark,
            } => {
                let Some(i) = self.after_sale_index(after_sale_id) else {
                    return false;
                };
                let restock = if *approved {
                    self.return_restock(&self.after_sales[i])
                } else {
                    Vec::new()
                };
                let a = &mut self.after_sales[i];
                a.review_remark.clone_from(remark);
                a.updated_at = event.at;
                a.status = if *approved {
                    AfterSaleStatus::REVIEW_PASS
                } else {
                    AfterSaleStatus::REVIEW_REJECTED
                };
                for (sku, units) in restock {
                    if let Some(line) = self.lines.iter_mut().find(|l| l.sku_code == sku) {
                        line.restocked_quantity += units;
                    }
                }
            }
            EventBody::RefundRequested { after_sale_id, .. } => {
                self.set_after_sale_status(after_sale_id, AfterSaleStatus::REFUNDING, event.at);
            }
            EventBody::AfterSaleRevoked { after_sale_id } => {
                self.set_after_sale_status(after_sale_id, AfterSaleStatus::REVOKED, event.at);
            }
            EventBody::RefundCompleted {
                after_sale_id,
                refunded_at,
                ..
            }
            | EventBody::RefundFailure {
                after_sale_id,
                refunded_at,
                ..
            } => {
                let status = if matches!(event.body, EventBody::RefundCompleted { .. }) {
                    AfterSaleStatus::REFUNDED
                } else {
                    AfterSaleStatus::FAILED
                };
                self.set_after_sale_status(after_sale_id, status, event.at);
                if let Some(i) = self.after_sale_index(after_sale_id) {
                    self.after_sales[i].refunded_at = Some(*refunded_at);
                }
            }
            EventBody::RefundFailed { after_sale_id, .. } => {
                self.set_after_sale_status(after_sale_id, AfterSaleStatus::FAILED, event.at);
            }
            // A compact copy keeps no recorded replies (see `compact`).
            EventBody::IdempotencyRecorded(_) if self.compact => {}
            EventBody::IdempotencyRecorded(entry) => {
                // Replay relies on it (a key-only change is decided by the
                // key): a key is recorded once per caller and family.
                debug_assert!(
                    self.idempotency_entry(&entry.caller, &entry.key).is_none(),
                    "key {} recorded twice in {}",
                    entry.key,
                    self.order_id
                );
                self.idempotency.push((**entry).clone());
            }
            EventBody::StockChanged(_)
            | EventBody::CouponChanged(_)
            | EventBody::OrderNoteAdded { .. }
            | EventBody::SkuUpserted(_)
            | EventBody::CouponIssued(_) => {}
        }
        if event.version > self.version {
            self.version = event.version;
        }
        // A key recorded for a success that changed nothing is not a change.
        if event.body.is_public() {
            self.updated_at = event.at;
        }
        event.body.is_public()
    }

    fn step(&mut self, event: &Event, id: OrderId, to: OrderStatus) {
        if let Some(part) = self.part_of(id) {
            self.set_status(event, part, to);
        }
    }

    fn set_status(&mut self, event: &Event, part: PartRef, to: OrderStatus) {
        let (id, from) = match part {
            PartRef::Master => (self.order_id, std::mem::replace(&mut self.status, to)),
            PartRef::Sub(i) => {
                let sub = &mut self.sub_orders[i];
                (sub.order_id, std::mem::replace(&mut sub.status, to))
            }
        };
        if from != to {
            self.log_status(event, id, Some(from), to);
        }
    }

    fn log_status(
        &mut self,
        event: &Event,
        order_id: OrderId,
        from: Option<OrderStatus>,
        to: OrderStatus,
    ) {
        if self.compact {
            return;
        }
        self.status_log.push(StatusLogEntry {
            order_id,
            from,
            to,
            at: event.at,
            actor: event.actor.clone(),
            request_id: event.request_id.clone(),
            reason: event.reason.clone(),
        });
    }

    fn set_after_sale_status(&mut self, id: &AfterSaleId, status: AfterSaleStatus, at: Timestamp) {
        if let Some(i) = self.after_sale_index(id) {
            self.after_sales[i].status = status;
            self.after_sales[i].updated_at = at;
        }
    }

    // ----- queries -----

    /// Whether the family's own payment has arrived.
    pub fn is_paid(&self) -> bool {
        self.payment.trade_no.is_some()
    }

    /// Whether the family has sub-orders.
    pub fn is_mixed(&self) -> bool {
        !self.sub_orders.is_empty()
    }

    pub fn after_sale_index(&self, id: &AfterSaleId) -> Option<usize> {
        self.after_sales.iter().position(|a| &a.after_sale_id == id)
    }

    pub fn after_sale(&self, id: &AfterSaleId) -> Option<&AfterSale> {
        self.after_sales.iter().find(|a| &a.after_sale_id == id)
    }

    /// The part an id names: the master (single order, or a mixed master)
    /// or a sub-order; `None` for an id outside the family.
    pub fn part_of(&self, id: OrderId) -> Option<PartRef> {
        if id == self.order_id {
            return Some(PartRef::Master);
        }
        self.sub_orders
            .iter()
            .position(|s| s.order_id == id)
            .map(PartRef::Sub)
    }

    pub fn part_id(&self, part: PartRef) -> OrderId {
        match part {
            PartRef::Master => self.order_id,
            PartRef::Sub(i) => self.sub_orders[i].order_id,
        }
    }

    pub fn part_status(&self, part: PartRef) -> OrderStatus {
        match part {
            PartRef::Master => self.status,
            PartRef::Sub(i) => self.sub_orders[i].status,
        }
    }

    /// The amounts of a part (the family's for the master).
    pub fn part_amounts(&self, part: PartRef) -> Amounts {
        match part {
            PartRef::Master => self.amounts,
            PartRef::Sub(i) => self.sub_orders[i].amounts,
        }
    }

    /// Indexes of the lines a part holds.
    pub fn part_lines(&self, part: PartRef) -> Vec<usize> {
        (0..self.lines.len())
            .filter(|&i| match part {
                PartRef::Master => true,
                PartRef::Sub(s) => self.lines[i].product_type == self.sub_orders[s].product_type,
            })
            .collect()
    }

    /// The live parts: the master alone, or the sub-orders once paid.
    pub fn live_parts(&self) -> Vec<PartRef> {
        if self.is_mixed() && self.status == OrderStatus::INVALID {
            (0..self.sub_orders.len()).map(PartRef::Sub).collect()
        } else {
            vec![PartRef::Master]
        }
    }

    /// Statuses of the live parts.
    pub fn live_statuses(&self) -> Vec<OrderStatus> {
        self.live_parts()
            .into_iter()
            .map(|p| self.part_status(p))
            .collect()
    }

    /// The status shown for the family as a whole: the master's, or for a
    /// paid mixed family the least advanced live part's.
    pub fn display_status(&self) -> OrderStatus {
        self.live_statuses()
            .into_iter()
            .min()
            .unwrap_or(self.status)
    }

    /// Whether the whole family is paid and no part has left PAID: the
    /// window in which a paid family can still be cancelled or re-addressed.
    pub fn is_paid_and_unfulfilled(&self) -> bool {
        self.is_paid()
            && self.status != OrderStatus::CANCELED
            && self.live_statuses().iter().all(|s| *s == OrderStatus::PAID)
    }

    pub fn line(&self, sku: &SkuCode) -> Option<&OrderLine> {
        self.lines.iter().find(|l| &l.sku_code == sku)
    }

    /// Units of a line claimed by after-sales that still claim (pending,
    /// approved, refunding or refunded), except those `skip` names.
    pub fn claimed_quantity(&self, sku: &SkuCode, skip: &[AfterSaleId]) -> Quantity {
        self.claiming(skip).map(|a| a.quantity_of(sku)).sum()
    }

    /// Money of a line claimed likewise.
    pub fn claimed_line_amount(&self, sku: &SkuCode, skip: &[AfterSaleId]) -> Money {
        Money::from_minor(
            self.claiming(skip)
                .flat_map(|a| a.items.iter())
                .filter(|i| &i.sku_code == sku)
                .map(|i| i.refund_amount.minor())
                .sum(),
        )
    }

    /// Whether a claiming after-sale already carries the shipping fee.
    pub fn shipping_claimed(&self, skip: &[AfterSaleId]) -> bool {
        self.claiming(skip).any(|a| !a.shipping_amount.is_zero())
    }

    /// Money of a payment claimed by after-sales that still claim.
    pub fn claimed_amount_of(&self, trade_no: Option<&TradeNo>, skip: &[AfterSaleId]) -> Money {
        Money::from_minor(
            self.claiming(skip)
                .filter(|a| a.trade_no.as_ref() == trade_no)
                .map(|a| a.apply_refund_amount.minor())
                .sum(),
        )
    }

    fn claiming<'a>(&'a self, skip: &'a [AfterSaleId]) -> impl Iterator<Item = &'a AfterSale> + 'a {
        self.after_sales
            .iter()
            .filter(move |a| a.status.claims() && !skip.contains(&a.after_sale_id))
    }

    /// Units of a line that the warehouse reported lacking.
    pub fn lacked_quantity(&self, sku: &SkuCode) -> Quantity {
        self.after_sales
            .iter()
            .filter(|a| a.detail == AfterSaleTypeDetail::LACK_REFUND)
            .map(|a| a.quantity_of(sku))
            .sum()
    }

    /// Whether the warehouse already reported a lack for this part.
    pub fn is_lacked(&self, part: PartRef) -> bool {
        let id = self.part_id(part);
        self.after_sales
            .iter()
            .any(|a| a.detail == AfterSaleTypeDetail::LACK_REFUND && a.order_id == id)
    }

    /// Whether every unit of a part has been refunded by approved
    /// after-sales or lack: such a part moves no further.
    pub fn is_fully_refunded(&self, part: PartRef) -> bool {
        self.part_lines(part).into_iter().all(|i| {
            let line = &self.lines[i];
            let approved: Quantity = self
                .after_sales
                .iter()
                .filter(|a| a.is_approved() && a.status != AfterSaleStatus::FAILED)
                .map(|a| a.quantity_of(&line.sku_code))
                .sum();
            approved >= line.sale_quantity
        })
    }

    /// Units that a refusal of `part` puts back into available stock: what
    /// was bought, less what the warehouse lacked, less what already went
    /// back.
    pub fn refusal_restock(&self, part: PartRef) -> Vec<(SkuCode, Quantity)> {
        self.part_lines(part)
            .into_iter()
            .map(|i| {
                let line = &self.lines[i];
                let held = line.sale_quantity.saturating_sub(line.restocked_quantity);
                (
                    line.sku_code.clone(),
                    held.saturating_sub(self.lacked_quantity(&line.sku_code)),
                )
            })
            .filter(|(_, units)| *units > 0)
            .collect()
    }

    /// Units that approving `after_sale` puts back into available stock:
    /// for a return of goods, its quantities, but never more of a line than
    /// is still out (bought, less what already went back, less what the
    /// warehouse lacked). A return whose refund failed releases its claim,
    /// so the same units may be applied for again; they came back with the
    /// first approval and must not be restocked twice. Nothing for a return
    /// of money.
    pub fn return_restock(&self, after_sale: &AfterSale) -> Vec<(SkuCode, Quantity)> {
        if after_sale.after_sale_type != AfterSaleType::RETURN_GOODS {
            return Vec::new();
        }
        after_sale
            .items
            .iter()
            .filter_map(|item| {
                let line = self.line(&item.sku_code)?;
                let out = line
                    .sale_quantity
                    .saturating_sub(line.restocked_quantity)
                    .saturating_sub(self.lacked_quantity(&line.sku_code));
                Some((item.sku_code.clone(), item.quantity.min(out)))
            })
            .filter(|(_, units)| *units > 0)
            .collect()
    }

    /// The status of the family's own payment.
    pub fn pay_status(&self) -> PayStatus {
        match &self.payment.trade_no {
            None => PayStatus::UNPAID,
            Some(trade) => self.refund_status(trade, self.payment.pay_amount),
        }
    }

    /// PAID → REFUNDING once a refund of the payment is under way →
    /// REFUNDED when the whole of it is refunded.
    pub fn refund_status(&self, trade_no: &TradeNo, amount: Money) -> PayStatus {
        let refunds = self
            .after_sales
            .iter()
            .filter(|a| a.trade_no.as_ref() == Some(trade_no));
        let mut refunded = 0;
        let mut any = false;
        for a in refunds {
            if a.status == AfterSaleStatus::REFUNDED {
                refunded += a.apply_refund_amount.minor();
                any = true;
            } else if a.is_approved() {
                any = true;
            }
        }
        if any && refunded >= amount.minor() {
            PayStatus::REFUNDED
        } else if any {
            PayStatus::REFUNDING
        } else {
            PayStatus::PAID
        }
    }

    /// The result a `trade_no` got when it was first seen: `PAID`, or
    /// `REFUND` with the after-sale that refunds it.
    pub fn payment_result(&self, trade_no: &TradeNo) -> Option<(PayResult, Option<AfterSaleId>)> {
        if self.payment.trade_no.as_ref() == Some(trade_no) {
            return Some((PayResult::Paid, None));
        }
        self.extra_payments
            .iter()
            .find(|p| &p.trade_no == trade_no)
            .map(|p| (PayResult::Refund, Some(p.after_sale_id)))
    }

    /// What the family recorded for `key` sent by `caller` (keys are
    /// scoped to both).
    pub fn idempotency_entry(
        &self,
        caller: &Actor,
        key: &IdempotencyKey,
    ) -> Option<&IdempotencyEntry> {
        self.idempotency
            .iter()
            .find(|e| &e.caller == caller && &e.key == key)
    }

    /// Checks an `Idempotency-Key` before anything else (API.md).
    pub fn check_idempotency(
        &self,
        caller: &Actor,
        key: &IdempotencyKey,
        request_hash: u64,
    ) -> Result<IdempotencyCheck<'_>, crate::DomainError> {
        use crate::error::{DomainError, ErrorCode};
        match self.idempotency_entry(caller, key) {
            Some(entry) if entry.request_hash == request_hash => {
                Ok(IdempotencyCheck::Replay(entry))
            }
            Some(_) => Err(DomainError::rule(
                ErrorCode::IDEMPOTENCY_KEY_REUSED,
                format!("Idempotency-Key {key} was used for a different request"),
            )),
            None if self.idempotency.len() >= crate::limits::IDEMPOTENCY_KEYS_PER_FAMILY_MAX => {
                Err(DomainError::rule(
                    ErrorCode::IDEMPOTENCY_KEY_LIMIT,
                    format!(
                        "order {} already keeps {} idempotency keys",
                        self.order_id,
                        crate::limits::IDEMPOTENCY_KEYS_PER_FAMILY_MAX
                    ),
                ))
            }
            None => Ok(IdempotencyCheck::New),
        }
    }
}

/// What a payment callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PayResult {
    /// The family is now paid.
    Paid,
    /// This `trade_no` was seen before; nothing changed.
    Duplicate,
    /// A payment for a cancelled or already-paid family: refunded.
    Refund,
}
