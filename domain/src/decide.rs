//! `decide`: what a command does to an order family, as events, or why it
//! is refused. Pure: the state, the command and `now` in; events out.
//! Nothing here changes state; `OrderFamily::apply` does, with these events.
//! A dry run is `decide` without `apply`.

use crate::codes::{
    AfterSaleStatus, AfterSaleType, AfterSaleTypeDetail, AmountType, CancelType, CouponStatus,
    FulfillmentEvent, OrderStatus, PayType, ProductType,
};
use crate::command::{Action, Command, CommandMeta, CreateContext, CreateOrder, IfMatch};
use crate::error::{DomainError, ErrorCode};
use crate::event::{
    ActorKind, CouponChange, Event, EventBody, EventContext, FulfillmentStep, PaymentReport,
    StockDelta,
};
use crate::family::{AfterSale, AfterSaleItem, NewOrder, OrderFamily, PartRef};
use crate::ids::{AfterSaleId, OrderId, OutTradeNo, SkuCode, TradeNo};
use crate::limits::{
    AFTER_SALES_PER_FAMILY_MAX, AFTER_SALE_IMAGES_MAX, EDITS_PER_FAMILY_MAX,
    LOGISTICS_TEXT_LEN_MAX, NOTE_LEN_MAX, PRODUCT_TEXT_LEN_MAX, REASON_LEN_MAX,
    SHOPPER_AFTER_SALES_PER_FAMILY_MAX, USER_REMARK_LEN_MAX,
};
use crate::money::{Money, Quantity, Timestamp};
use crate::order::{Amounts, OrderLine, Payment, SubOrder};
use crate::pricing::{check_items, quote};
use crate::text::{bounded_text, optional_text};

/// Decides a command for an existing family. An empty list means the
/// command is accepted and changes nothing (a repeat of an outcome already
/// recorded, or a deadline that finds the order paid).
pub fn decide(
    family: &OrderFamily,
    command: &Command,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    let meta = &command.meta;
    check_access(family, command)?;
    match meta.if_match {
        Some(IfMatch::Version(expected)) if expected != family.version => {
            return Err(DomainError::VersionMismatch {
                expected,
                current: family.version,
            });
        }
        Some(IfMatch::Weak(named)) => {
            return Err(DomainError::rule(
                ErrorCode::ORDER_VERSION_MISMATCH,
                format!(
                    "If-Match: W/\"{named}\" is a weak tag, which never matches; send \"{}\"",
                    family.version
                ),
            ));
        }
        _ => {}
    }
    if let Some(reason) = &meta.reason {
        bounded_text(reason, 1, REASON_LEN_MAX, ErrorCode::TEXT_INVALID, "reason")?;
    }
    let bodies = decide_bodies(family, &command.action, meta, now)?;
    Ok(context(meta, now, family.version + 1).events(bodies))
}

fn context(meta: &CommandMeta, now: Timestamp, version: u64) -> EventContext {
    EventContext {
        at: now,
        actor: meta.actor.clone(),
        request_id: meta.request_id.clone(),
        reason: meta.reason.clone(),
        version,
    }
}

/// A shopper reaches only its own families: checked before anything the
/// family holds, its `Idempotency-Key`s included. A shopper's create naming
/// another shopper's family is told that the id is taken (409
/// `ORDER_EXISTED`, as any other body on a used id is, API.md), not whose
/// it is: order ids are predictable, and two users can share the 8
/// characters an id keeps of its user.
pub fn check_owner(family: &OrderFamily, command: &Command) -> Result<(), DomainError> {
    let meta = &command.meta;
    if meta.actor.kind == ActorKind::User && meta.actor.id != family.user_id.as_str() {
        if matches!(command.action, Action::Create { .. }) {
            return Err(order_existed(family));
        }
        return Err(DomainError::rule(ErrorCode::FORBIDDEN, "not your order"));
    }
    Ok(())
}

fn order_existed(family: &OrderFamily) -> DomainError {
    DomainError::rule(
        ErrorCode::ORDER_EXISTED,
        format!("order {} exists with a different request", family.order_id),
    )
}

/// [`check_owner`], and a shopper no longer reaches a removed family.
/// `decide` checks it first. A caller that looks at the family's
/// `Idempotency-Key`s before deciding checks [`check_owner`] before that:
/// a key is checked before every rule (API.md), so a retried remove
/// replays its recorded reply instead of answering that the order is gone.
pub fn check_access(family: &OrderFamily, command: &Command) -> Result<(), DomainError> {
    check_owner(family, command)?;
    let meta = &command.meta;
    if meta.actor.kind == ActorKind::User && family.removed {
        return Err(DomainError::not_found(
            ErrorCode::ORDER_NOT_FOUND,
            "order",
            family.order_id,
        ));
    }
    Ok(())
}

fn decide_bodies(
    family: &OrderFamily,
    action: &Action,
    meta: &CommandMeta,
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    match action {
        Action::Create { fingerprint } => {
            if *fingerprint == family.fingerprint {
                Ok(Vec::new())
            } else {
                Err(order_existed(family))
            }
        }
        Action::PrePay {
            order_id,
            pay_type,
            pay_amount,
        } => prepay(family, *order_id, *pay_type, *pay_amount, now),
        Action::PayCallback {
            order_id,
            out_trade_no,
            pay_type,
            pay_amount,
            trade_no,
            paid_at,
        } => {
            let report = PaymentReport {
                order_id: *order_id,
                trade_no: trade_no.clone(),
                out_trade_no: out_trade_no.clone(),
                pay_type: *pay_type,
                pay_amount: *pay_amount,
                paid_at: *paid_at,
            };
            pay_callback(family, report, now)
        }
        Action::Cancel {
            order_id,
            cancel_type,
        } => cancel(family, *order_id, *cancel_type, meta, now),
        Action::Deadline { order_id } => {
            family_level(family, *order_id)?;
            if family.status == OrderStatus::CREATED && now >= family.expire_at {
                cancel_unpaid(family, CancelType::TIMEOUT_CANCELED)
            } else {
                Ok(Vec::new())
            }
        }
        Action::AdjustAddress { order_id, address } => {
            family_level(family, *order_id)?;
            address.validate()?;
            if family.status != OrderStatus::CREATED && !family.is_paid_and_unfulfilled() {
                return Err(state_error(
                    family,
                    ErrorCode::ORDER_NOT_ALLOW_TO_ADJUST_ADDRESS,
                    "change the address",
                ));
            }
            // The address it already has: nothing to record — unless the
            // request carries an `Idempotency-Key`, which only a recorded
            // change keeps: unrecorded, a retry after a later change of
            // address would put this one back instead of replaying.
            if family.delivery.address == *address && meta.idempotency_key.is_none() {
                return Ok(Vec::new());
            }
            edit_room(family, "change the address")?;
            Ok(vec![EventBody::OrderAddressChanged {
                order_id: family.order_id,
                address: address.clone(),
            }])
        }
        Action::Remove { order_id } => {
            family_level(family, *order_id)?;
            if family.removed {
                return Ok(Vec::new());
            }
            if !family.live_statuses().iter().all(|s| s.is_final()) {
                return Err(state_error(
                    family,
                    ErrorCode::ORDER_CANNOT_REMOVE,
                    "remove",
                ));
            }
            Ok(vec![EventBody::OrderRemoved {
                order_id: family.order_id,
            }])
        }
        Action::Fulfill {
            order_id,
            event,
            logistics_code,
            operator,
        } => {
            optional_text(
                logistics_code.as_deref(),
                LOGISTICS_TEXT_LEN_MAX,
                ErrorCode::TEXT_INVALID,
                "logistics_code",
            )?;
            optional_text(
                operator.as_deref(),
                LOGISTICS_TEXT_LEN_MAX,
                ErrorCode::TEXT_INVALID,
                "operator",
            )?;
            let step = FulfillmentStep {
                order_id: *order_id,
                logistics_code: logistics_code.clone(),
                operator: operator.clone(),
            };
            fulfill(family, *event, step, now)
        }
        Action::ApplyAfterSale {
            order_id,
            after_sale_type,
            items,
            reason,
            images,
        } => apply_after_sale(
            family,
            *order_id,
            *after_sale_type,
            items,
            reason,
            images,
            now,
        ),
        Action::ReviewAfterSale {
            after_sale_id,
            approved,
            remark,
        } => {
            optional_text(
                remark.as_deref(),
                REASON_LEN_MAX,
                ErrorCode::TEXT_INVALID,
                "remark",
            )?;
            review(family, after_sale_id, *approved, remark.clone())
        }
        Action::RevokeAfterSale { after_sale_id } => {
            let a = find_after_sale(family, after_sale_id)?;
            match a.status {
                AfterSaleStatus::COMMITTED => Ok(vec![EventBody::AfterSaleRevoked {
                    after_sale_id: *after_sale_id,
                }]),
                AfterSaleStatus::REVOKED => Ok(Vec::new()),
                status => Err(after_sale_error(a, status, "revoke")),
            }
        }
        Action::RefundResult {
            after_sale_id,
            refund_amount,
            success,
            refunded_at,
        } => {
            let a = find_after_sale(family, after_sale_id)?;
            if *refund_amount != a.apply_refund_amount {
                return Err(DomainError::rule(
                    ErrorCode::REFUND_AMOUNT_MISMATCH,
                    format!(
                        "after-sale {after_sale_id} refunds {}, not {refund_amount}",
                        a.apply_refund_amount
                    ),
                ));
            }
            match (a.status, success) {
                (AfterSaleStatus::REFUNDING, true) => Ok(vec![EventBody::RefundCompleted {
                    after_sale_id: *after_sale_id,
                    refund_amount: *refund_amount,
                    refunded_at: *refunded_at,
                }]),
                // A failure recorded before a retry, its callback sent again
                // (the last one, or an earlier one: reported no later than
                // the last): the same callback, no change. Recorded as a
                // failure of the retried refund, it would let a later retry
                // refund twice if the retried refund went through.
                (AfterSaleStatus::REFUNDING, false)
                    if a.refunded_at.is_some_and(|last| *refunded_at <= last) =>
                {
                    Ok(Vec::new())
                }
                (AfterSaleStatus::REFUNDING, false) => Ok(vec![EventBody::RefundFailure {
                    after_sale_id: *after_sale_id,
                    refund_amount: *refund_amount,
                    refunded_at: *refunded_at,
                }]),
                (AfterSaleStatus::REFUNDED, true) | (AfterSaleStatus::FAILED, false) => {
                    Ok(Vec::new())
                }
                // A failure recorded before the retry that went through, its
                // callback sent again (reported before the refund): the
                // same callback. Answered 409, the provider would send it
                // again and again.
                (AfterSaleStatus::REFUNDED, false)
                    if a.refunded_at.is_some_and(|refund| *refunded_at < refund) =>
                {
                    Ok(Vec::new())
                }
                (status, _) => Err(after_sale_error(a, status, "record a refund result")),
            }
        }
        Action::RetryRefund { after_sale_id } => retry(family, after_sale_id),
        Action::Lack { order_id, items } => lack(family, *order_id, items, now),
        Action::AddNote { order_id, text } => {
            if family.part_of(*order_id).is_none() {
                return Err(DomainError::not_found(
                    ErrorCode::ORDER_NOT_FOUND,
                    "order",
                    order_id,
                ));
            }
            bounded_text(text, 1, NOTE_LEN_MAX, ErrorCode::TEXT_INVALID, "text")?;
            edit_room(family, "add a note")?;
            Ok(vec![EventBody::OrderNoteAdded {
                order_id: *order_id,
                text: text.clone(),
            }])
        }
    }
}

// ----- creation -----

/// Decides `POST /v1/orders` for an id not used before: validate, risk check,
/// price, compare with what the client claims, lock the coupon and reserve
/// stock (all or nothing), split by product type, snapshot.
pub fn decide_create(
    cmd: &CreateOrder,
    meta: &CommandMeta,
    ctx: &CreateContext<'_>,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    validate_create(cmd, meta)?;
    let claimed_pay = cmd
        .amounts
        .iter()
        .find(|(t, _)| *t == AmountType::REAL_PAY_AMOUNT)
        .map(|(_, m)| *m)
        .ok_or_else(|| {
            DomainError::invalid(
                ErrorCode::AMOUNT_TYPE_ERROR,
                "amounts",
                "REAL_PAY_AMOUNT (50) is required",
            )
        })?;
    ctx.risk
        .check(&cmd.user_id, claimed_pay, ctx.user_orders_last_minute)?;
    let coupon = cmd.coupon_id.as_ref().map(|id| (id, ctx.coupon));
    let priced = quote(&cmd.user_id, &cmd.items, ctx.skus, coupon, ctx.pricing, now)?;
    for (amount_type, claimed) in &cmd.amounts {
        let actual = priced.amounts.get(*amount_type);
        if *claimed != actual {
            return Err(DomainError::rule(
                ErrorCode::ORDER_CHECK_REAL_PAY_AMOUNT_FAIL,
                format!("{amount_type} is {actual}, not {claimed}"),
            ));
        }
    }
    let (pay_type, pay_amount) = cmd.payments[0];
    if pay_amount != priced.amounts.real_pay {
        return Err(DomainError::rule(
            ErrorCode::ORDER_CHECK_REAL_PAY_AMOUNT_FAIL,
            format!(
                "payment is {pay_amount}, the order pays {}",
                priced.amounts.real_pay
            ),
        ));
    }
    let mut stock = Vec::with_capacity(cmd.items.len());
    let mut lines = Vec::with_capacity(cmd.items.len());
    for ((sku_code, quantity), priced_line) in cmd.items.iter().zip(&priced.lines) {
        let sku = crate::pricing::find_sku(ctx.skus, sku_code)?;
        if !sku.can_reserve(*quantity) {
            return Err(DomainError::rule(
                ErrorCode::PRODUCT_STOCK_NOT_ENOUGH,
                format!(
                    "SKU {sku_code} has {} available, {quantity} asked",
                    sku.available
                ),
            ));
        }
        stock.push(EventBody::StockChanged(StockDelta {
            sku_code: sku_code.clone(),
            order_id: Some(cmd.order_id),
            available_delta: -i64::from(*quantity),
            locked_delta: i64::from(*quantity),
            sold_delta: 0,
        }));
        let d = &sku.details;
        lines.push(OrderLine {
            sku_code: sku_code.clone(),
            product_id: d.product_id.clone(),
            product_name: d.product_name.clone(),
            product_type: d.product_type,
            product_unit: d.product_unit.clone(),
            product_img: d.product_img.clone(),
            seller_id: d.seller_id.clone(),
            sale_price: priced_line.sale_price,
            purchase_price: d.purchase_price,
            sale_quantity: *quantity,
            origin_amount: priced_line.origin_amount,
            discount_amount: priced_line.discount_amount,
            pay_amount: priced_line.pay_amount,
            restocked_quantity: 0,
        });
    }
    let sub_orders = split(cmd.order_id, &lines, priced.amounts.shipping)?;
    let new = NewOrder {
        order_id: cmd.order_id,
        user_id: cmd.user_id.clone(),
        business_identifier: cmd.business_identifier,
        order_type: cmd.order_type,
        seller_id: cmd.seller_id.clone(),
        user_remark: cmd.user_remark.clone(),
        created_at: now,
        expire_at: now.plus_millis(ctx.pay_timeout_ms),
        delivery: cmd.delivery.clone(),
        amounts: priced.amounts,
        coupon: priced.coupon.clone(),
        lines,
        sub_orders,
        payment: Payment {
            pay_type,
            pay_amount,
            out_trade_no: None,
            trade_no: None,
            prepaid_at: None,
            paid_at: None,
        },
        fingerprint: cmd.fingerprint,
    };
    let mut bodies = vec![EventBody::OrderCreated(Box::new(new))];
    if let Some(c) = &priced.coupon {
        bodies.push(EventBody::CouponChanged(CouponChange {
            coupon_id: c.coupon_id.clone(),
            order_id: cmd.order_id,
            status: CouponStatus::LOCKED,
        }));
    }
    bodies.extend(stock);
    Ok(context(meta, now, 1).events(bodies))
}

fn validate_create(cmd: &CreateOrder, meta: &CommandMeta) -> Result<(), DomainError> {
    if cmd.order_id.is_sub_order() || !cmd.order_id.belongs_to(&cmd.user_id) {
        return Err(DomainError::invalid(
            ErrorCode::ORDER_ID_INVALID,
            "order_id",
            "is not an order id issued for this user",
        ));
    }
    if meta.actor.kind == ActorKind::User && meta.actor.id != cmd.user_id.as_str() {
        return Err(DomainError::rule(
            ErrorCode::FORBIDDEN,
            "user_id is not the caller",
        ));
    }
    optional_text(
        cmd.user_remark.as_deref(),
        USER_REMARK_LEN_MAX,
        ErrorCode::TEXT_INVALID,
        "user_remark",
    )?;
    cmd.delivery.validate()?;
    check_items(&cmd.items)?;
    for (i, (t, _)) in cmd.amounts.iter().enumerate() {
        if cmd.amounts[..i].iter().any(|(other, _)| other == t) {
            return Err(DomainError::invalid(
                ErrorCode::AMOUNT_TYPE_ERROR,
                "amounts",
                format!("{t} appears twice"),
            ));
        }
    }
    if cmd.payments.len() != 1 {
        return Err(DomainError::invalid(
            ErrorCode::PAY_TYPE_ERROR,
            "payments",
            "must hold exactly one payment",
        ));
    }
    Ok(())
}

/// One sub-order per product type when the lines mix types; none otherwise.
/// The sub-order of the lowest product type carries the shipping fee.
fn split(
    order_id: OrderId,
    lines: &[OrderLine],
    shipping: Money,
) -> Result<Vec<SubOrder>, DomainError> {
    let mut types: Vec<ProductType> = lines.iter().map(|l| l.product_type).collect();
    types.sort_unstable();
    types.dedup();
    if types.len() < 2 {
        return Ok(Vec::new());
    }
    let mut subs = Vec::with_capacity(types.len());
    for (i, product_type) in types.into_iter().enumerate() {
        let of_type = || lines.iter().filter(move |l| l.product_type == product_type);
        let origin = Money::sum(of_type().map(|l| l.origin_amount))?;
        let discount = Money::sum(of_type().map(|l| l.discount_amount))?;
        let shipping = if i == 0 { shipping } else { Money::ZERO };
        subs.push(SubOrder {
            order_id: order_id.sub_order_id(product_type),
            product_type,
            status: OrderStatus::INVALID,
            amounts: Amounts {
                origin,
                discount,
                shipping,
                real_pay: origin.checked_sub(discount)?.checked_add(shipping)?,
            },
        });
    }
    Ok(subs)
}

// ----- payment -----

/// Family-level commands take the master (or single) order's id.
fn family_level(family: &OrderFamily, order_id: OrderId) -> Result<(), DomainError> {
    if order_id == family.order_id {
        Ok(())
    } else if family.part_of(order_id).is_some() {
        Err(DomainError::OrderState {
            code: ErrorCode::ORDER_STATUS_CHANGED,
            order_id: order_id.to_string(),
            status: family
                .part_of(order_id)
                .map_or(family.status, |p| family.part_status(p)),
            action: "act on a sub-order with a family command (use the master order id)",
        })
    } else {
        Err(DomainError::not_found(
            ErrorCode::ORDER_NOT_FOUND,
            "order",
            order_id,
        ))
    }
}

fn state_error(family: &OrderFamily, code: ErrorCode, action: &'static str) -> DomainError {
    DomainError::OrderState {
        code,
        order_id: family.order_id.to_string(),
        status: family.display_status(),
        action,
    }
}

fn prepay(
    family: &OrderFamily,
    order_id: OrderId,
    pay_type: PayType,
    pay_amount: Money,
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    family_level(family, order_id)?;
    if family.status != OrderStatus::CREATED {
        return Err(state_error(
            family,
            ErrorCode::ORDER_STATUS_CHANGED,
            "prepay",
        ));
    }
    if now >= family.expire_at {
        return Err(state_error(
            family,
            ErrorCode::ORDER_PRE_PAY_EXPIRE,
            "prepay after the payment deadline",
        ));
    }
    if pay_amount != family.amounts.real_pay {
        return Err(pay_amount_error(family, pay_amount));
    }
    edit_room(family, "prepay")?;
    let out_trade_no = match &family.payment.out_trade_no {
        Some(existing) => existing.clone(),
        None => OutTradeNo::parse(family.order_id.as_str())?,
    };
    Ok(vec![EventBody::OrderPrePaid {
        order_id,
        pay_type,
        pay_amount,
        out_trade_no,
    }])
}

/// Refuses an edit (address, prepay, note) once the family has taken
/// [`EDITS_PER_FAMILY_MAX`], counted in its history (no counter of its own
/// to store) or, by an idle actor's compact state, alongside it.
fn edit_room(family: &OrderFamily, what: &str) -> Result<(), DomainError> {
    if family.edits() >= EDITS_PER_FAMILY_MAX {
        return Err(DomainError::rule(
            ErrorCode::ORDER_CHANGE_LIMIT,
            format!(
                "cannot {what}: order {} has taken {EDITS_PER_FAMILY_MAX} address changes, \
                 prepays and notes, the most it takes",
                family.order_id
            ),
        ));
    }
    Ok(())
}

fn pay_amount_error(family: &OrderFamily, pay_amount: Money) -> DomainError {
    DomainError::rule(
        ErrorCode::ORDER_PAY_AMOUNT_ERROR,
        format!(
            "order {} pays {}, not {pay_amount}",
            family.order_id, family.amounts.real_pay
        ),
    )
}

fn pay_callback(
    family: &OrderFamily,
    report: PaymentReport,
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    family_level(family, report.order_id)?;
    if family.payment_result(&report.trade_no).is_some() {
        return Ok(Vec::new());
    }
    if report.pay_amount != family.amounts.real_pay {
        return Err(pay_amount_error(family, report.pay_amount));
    }
    if family.status == OrderStatus::CREATED {
        let mut bodies = vec![EventBody::OrderPaid(report)];
        bodies.extend(family.lines.iter().map(|l| {
            stock_move(
                family,
                &l.sku_code,
                l.sale_quantity,
                StockMove::LockedToSold,
            )
        }));
        if let Some(c) = &family.coupon {
            bodies.push(coupon_change(family, &c.coupon_id, CouponStatus::USED));
        }
        return Ok(bodies);
    }
    // Cancelled, or paid by another payment: the money is real, refund it.
    let detail = match family.cancel_type {
        Some(CancelType::TIMEOUT_CANCELED) if family.status == OrderStatus::CANCELED => {
            AfterSaleTypeDetail::TIMEOUT_NO_PAY
        }
        Some(CancelType::USER_CANCELED) if family.status == OrderStatus::CANCELED => {
            AfterSaleTypeDetail::USER_CANCEL
        }
        Some(CancelType::CUSTOMER_CANCELED) if family.status == OrderStatus::CANCELED => {
            AfterSaleTypeDetail::CUSTOMER_CANCEL
        }
        _ => AfterSaleTypeDetail::ALL_REFUND,
    };
    let after_sale = system_refund(
        family,
        family.order_id,
        detail,
        Vec::new(),
        Money::ZERO,
        report.pay_amount,
        Some(report.trade_no.clone()),
        now,
    )?;
    let after_sale_id = after_sale.after_sale_id;
    let mut bodies = vec![EventBody::PaymentReceived {
        payment: report,
        after_sale_id,
    }];
    bodies.extend(refund_bodies(after_sale));
    Ok(bodies)
}

// ----- cancel -----

fn cancel(
    family: &OrderFamily,
    order_id: OrderId,
    cancel_type: CancelType,
    meta: &CommandMeta,
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    family_level(family, order_id)?;
    match cancel_type {
        CancelType::TIMEOUT_CANCELED => {
            return Err(DomainError::invalid(
                ErrorCode::CANCEL_TYPE_ERROR,
                "cancel_type",
                "1 (TIMEOUT_CANCELED) is the payment deadline's alone",
            ))
        }
        CancelType::CUSTOMER_CANCELED if !meta.actor.is_admin() => {
            return Err(DomainError::rule(
                ErrorCode::FORBIDDEN,
                "only customer service may cancel with cancel_type 2",
            ))
        }
        _ => {}
    }
    if family.status == OrderStatus::CREATED {
        return cancel_unpaid(family, cancel_type);
    }
    if !family.is_paid_and_unfulfilled() {
        return Err(state_error(
            family,
            ErrorCode::ORDER_CANNOT_CANCEL,
            "cancel",
        ));
    }
    // Paid, nothing shipped: return the stock, release the coupon, revoke
    // pending returns (the cancel refunds what they asked for) and refund the
    // rest of the payment.
    let revoked: Vec<AfterSaleId> = family
        .after_sales
        .iter()
        .filter(|a| a.status == AfterSaleStatus::COMMITTED)
        .map(|a| a.after_sale_id)
        .collect();
    let mut bodies: Vec<EventBody> = revoked
        .iter()
        .map(|id| EventBody::AfterSaleRevoked { after_sale_id: *id })
        .collect();
    bodies.push(EventBody::OrderCanceled {
        order_id: family.order_id,
        cancel_type,
    });
    for line in &family.lines {
        let units = line.sale_quantity - line.restocked_quantity;
        if units > 0 {
            bodies.push(stock_move(
                family,
                &line.sku_code,
                units,
                StockMove::SoldToAvailable,
            ));
        }
    }
    if let Some(c) = &family.coupon {
        bodies.push(coupon_change(family, &c.coupon_id, CouponStatus::UNUSED));
    }
    let detail = if cancel_type == CancelType::CUSTOMER_CANCELED {
        AfterSaleTypeDetail::CUSTOMER_CANCEL
    } else {
        AfterSaleTypeDetail::USER_CANCEL
    };
    let all_lines: Vec<usize> = (0..family.lines.len()).collect();
    let (items, shipping) =
        remaining_refund(family, &all_lines, family.amounts.shipping, &revoked)?;
    bodies.extend(refund_of_remaining(
        family,
        family.order_id,
        detail,
        items,
        shipping,
        &revoked,
        now,
    )?);
    Ok(bodies)
}

fn cancel_unpaid(
    family: &OrderFamily,
    cancel_type: CancelType,
) -> Result<Vec<EventBody>, DomainError> {
    let mut bodies = vec![EventBody::OrderCanceled {
        order_id: family.order_id,
        cancel_type,
    }];
    bodies.extend(family.lines.iter().map(|l| {
        stock_move(
            family,
            &l.sku_code,
            l.sale_quantity,
            StockMove::LockedToAvailable,
        )
    }));
    if let Some(c) = &family.coupon {
        bodies.push(coupon_change(family, &c.coupon_id, CouponStatus::UNUSED));
    }
    Ok(bodies)
}

#[derive(Clone, Copy)]
enum StockMove {
    LockedToSold,
    LockedToAvailable,
    SoldToAvailable,
}

fn stock_move(family: &OrderFamily, sku: &SkuCode, units: Quantity, kind: StockMove) -> EventBody {
    let n = i64::from(units);
    let (available_delta, locked_delta, sold_delta) = match kind {
        StockMove::LockedToSold => (0, -n, n),
        StockMove::LockedToAvailable => (n, -n, 0),
        StockMove::SoldToAvailable => (n, 0, -n),
    };
    EventBody::StockChanged(StockDelta {
        sku_code: sku.clone(),
        order_id: Some(family.order_id),
        available_delta,
        locked_delta,
        sold_delta,
    })
}

fn coupon_change(
    family: &OrderFamily,
    coupon_id: &crate::ids::CouponId,
    status: CouponStatus,
) -> EventBody {
    EventBody::CouponChanged(CouponChange {
        coupon_id: coupon_id.clone(),
        order_id: family.order_id,
        status,
    })
}

// ----- fulfillment -----

/// A part-level command's part: a single order, or a sub-order of a paid
/// mixed family (its master answers ORDER_STATUS_CHANGED).
fn resolve_part(family: &OrderFamily, order_id: OrderId) -> Result<PartRef, DomainError> {
    let part = family
        .part_of(order_id)
        .ok_or_else(|| DomainError::not_found(ErrorCode::ORDER_NOT_FOUND, "order", order_id))?;
    if part == PartRef::Master && family.is_mixed() && family.status == OrderStatus::INVALID {
        return Err(DomainError::OrderState {
            code: ErrorCode::ORDER_STATUS_CHANGED,
            order_id: order_id.to_string(),
            status: OrderStatus::INVALID,
            action: "act on a paid mixed order by its master id (use a sub-order id)",
        });
    }
    Ok(part)
}

fn part_error(
    family: &OrderFamily,
    part: PartRef,
    code: ErrorCode,
    action: &'static str,
) -> DomainError {
    DomainError::OrderState {
        code,
        order_id: family.part_id(part).to_string(),
        status: family.part_status(part),
        action,
    }
}

fn fulfill(
    family: &OrderFamily,
    event: FulfillmentEvent,
    step: FulfillmentStep,
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    let part = resolve_part(family, step.order_id)?;
    let status = family.part_status(part);
    if status == event.target() {
        return Ok(Vec::new());
    }
    if status != event.source() {
        return Err(part_error(
            family,
            part,
            ErrorCode::ORDER_STATUS_CHANGED,
            "take this fulfillment step",
        ));
    }
    if family.is_fully_refunded(part) {
        return Err(part_error(
            family,
            part,
            ErrorCode::ORDER_STATUS_CHANGED,
            "move on: every unit was refunded",
        ));
    }
    let part_id = family.part_id(part);
    Ok(match event {
        FulfillmentEvent::FULFILLED => vec![EventBody::OrderFulfilled(step)],
        FulfillmentEvent::OUT_STOCK => vec![EventBody::OrderOutStock(step)],
        FulfillmentEvent::DELIVERY => vec![EventBody::OrderDelivered(step)],
        FulfillmentEvent::SIGNED => vec![EventBody::OrderSigned(step)],
        FulfillmentEvent::REFUSED => {
            let revoked: Vec<AfterSaleId> = family
                .after_sales
                .iter()
                .filter(|a| a.status == AfterSaleStatus::COMMITTED && a.order_id == part_id)
                .map(|a| a.after_sale_id)
                .collect();
            let mut bodies: Vec<EventBody> = revoked
                .iter()
                .map(|id| EventBody::AfterSaleRevoked { after_sale_id: *id })
                .collect();
            bodies.extend(
                family
                    .refusal_restock(part)
                    .into_iter()
                    .map(|(sku, units)| {
                        stock_move(family, &sku, units, StockMove::SoldToAvailable)
                    }),
            );
            bodies.push(EventBody::OrderRefused(step));
            let (items, shipping) = remaining_refund(
                family,
                &family.part_lines(part),
                family.part_amounts(part).shipping,
                &revoked,
            )?;
            bodies.extend(refund_of_remaining(
                family,
                part_id,
                AfterSaleTypeDetail::ALL_REFUND,
                items,
                shipping,
                &revoked,
                now,
            )?);
            bodies
        }
    })
}

// ----- refunds -----

/// What is left to refund of some lines: each line's unclaimed units and
/// money, and the shipping fee if no claim carries it yet.
fn remaining_refund(
    family: &OrderFamily,
    lines: &[usize],
    shipping: Money,
    skip: &[AfterSaleId],
) -> Result<(Vec<AfterSaleItem>, Money), DomainError> {
    let mut items = Vec::new();
    for &i in lines {
        let line = &family.lines[i];
        let units = line
            .sale_quantity
            .saturating_sub(family.claimed_quantity(&line.sku_code, skip));
        let money = line
            .pay_amount
            .checked_sub(family.claimed_line_amount(&line.sku_code, skip))?;
        if units > 0 || !money.is_zero() {
            items.push(AfterSaleItem {
                sku_code: line.sku_code.clone(),
                quantity: units,
                refund_amount: money,
            });
        }
    }
    let shipping = if family.shipping_claimed(skip) {
        Money::ZERO
    } else {
        shipping
    };
    Ok((items, shipping))
}

/// The system refund of what remains (cancel of a paid family, refusal),
/// if anything remains.
fn refund_of_remaining(
    family: &OrderFamily,
    order_id: OrderId,
    detail: AfterSaleTypeDetail,
    items: Vec<AfterSaleItem>,
    shipping: Money,
    skip: &[AfterSaleId],
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    let amount = Money::sum(items.iter().map(|i| i.refund_amount))?.checked_add(shipping)?;
    if amount.is_zero() {
        return Ok(Vec::new());
    }
    let trade = family.payment.trade_no.clone();
    let remaining = family
        .payment
        .pay_amount
        .checked_sub(family.claimed_amount_of(trade.as_ref(), skip))?;
    debug_assert!(
        amount <= remaining,
        "refund {amount} above the {remaining} left of the payment"
    );
    let after_sale = system_refund(
        family, order_id, detail, items, shipping, amount, trade, now,
    )?;
    Ok(refund_bodies(after_sale))
}

/// A system refund: an after-sale RETURN_MONEY that starts in REFUNDING.
#[allow(clippy::too_many_arguments)]
fn system_refund(
    family: &OrderFamily,
    order_id: OrderId,
    detail: AfterSaleTypeDetail,
    items: Vec<AfterSaleItem>,
    shipping: Money,
    amount: Money,
    trade_no: Option<TradeNo>,
    now: Timestamp,
) -> Result<AfterSale, DomainError> {
    Ok(AfterSale {
        after_sale_id: next_after_sale_id(family)?,
        order_id,
        user_id: family.user_id.clone(),
        after_sale_type: AfterSaleType::RETURN_MONEY,
        detail,
        status: AfterSaleStatus::REFUNDING,
        items,
        shipping_amount: shipping,
        apply_refund_amount: amount,
        trade_no,
        reason: None,
        images: Vec::new(),
        review_remark: None,
        created_at: now,
        updated_at: now,
        refunded_at: None,
    })
}

fn refund_bodies(after_sale: AfterSale) -> Vec<EventBody> {
    let requested = EventBody::RefundRequested {
        after_sale_id: after_sale.after_sale_id,
        order_id: after_sale.order_id,
        trade_no: after_sale.trade_no.clone(),
        refund_amount: after_sale.apply_refund_amount,
    };
    vec![
        EventBody::AfterSaleCommitted(Box::new(after_sale)),
        requested,
    ]
}

fn next_after_sale_id(family: &OrderFamily) -> Result<AfterSaleId, DomainError> {
    if family.after_sales.len() >= AFTER_SALES_PER_FAMILY_MAX {
        return Err(DomainError::rule(
            ErrorCode::AFTER_SALE_LIMIT,
            format!(
                "order {} holds {AFTER_SALES_PER_FAMILY_MAX} after-sales",
                family.order_id
            ),
        ));
    }
    family.order_id.after_sale_id(family.after_sales.len() + 1)
}

/// The refund of `items` of a part (API.md): q of n units refund
/// floor(line pay × q / n); the claim that completes a line takes the rest
/// of its pay; the one that completes the part adds its shipping fee.
fn part_refund(
    family: &OrderFamily,
    part: PartRef,
    items: &[(SkuCode, Quantity)],
    skip: &[AfterSaleId],
) -> Result<(Vec<AfterSaleItem>, Money), DomainError> {
    check_items(items)?;
    let lines = family.part_lines(part);
    let mut out = Vec::with_capacity(items.len());
    for (sku, quantity) in items {
        let line = lines
            .iter()
            .map(|&i| &family.lines[i])
            .find(|l| &l.sku_code == sku)
            .ok_or_else(|| {
                DomainError::invalid(
                    ErrorCode::ORDER_ITEM_INVALID,
                    "items",
                    format!("SKU {sku} is not in order {}", family.part_id(part)),
                )
            })?;
        let claimed = family.claimed_quantity(sku, skip);
        let returnable = line.sale_quantity.saturating_sub(claimed);
        if *quantity > returnable {
            return Err(DomainError::rule(
                ErrorCode::AFTER_SALE_QUANTITY_EXCEEDED,
                format!(
                    "SKU {sku}: {returnable} of {} units can still be refunded, {quantity} asked",
                    line.sale_quantity
                ),
            ));
        }
        let left = line
            .pay_amount
            .checked_sub(family.claimed_line_amount(sku, skip))?;
        let refund_amount = if claimed + quantity == line.sale_quantity {
            left
        } else {
            // At most what the line has left: a claim that completed the
            // line took the rest over floors of claims revoked since, and
            // on a line of many cheap units the floor of a larger share
            // could pass what is left (and the last unit's refund go
            // below zero).
            line.pay_amount
                .mul_div_floor(i64::from(*quantity), i64::from(line.sale_quantity))?
                .min(left)
        };
        out.push(AfterSaleItem {
            sku_code: sku.clone(),
            quantity: *quantity,
            refund_amount,
        });
    }
    let completes = lines.iter().all(|&i| {
        let line = &family.lines[i];
        let asked: Quantity = out
            .iter()
            .filter(|o| o.sku_code == line.sku_code)
            .map(|o| o.quantity)
            .sum();
        family.claimed_quantity(&line.sku_code, skip) + asked >= line.sale_quantity
    });
    let shipping = if completes && !family.shipping_claimed(skip) {
        family.part_amounts(part).shipping
    } else {
        Money::ZERO
    };
    Ok((out, shipping))
}

#[allow(clippy::too_many_arguments)]
fn apply_after_sale(
    family: &OrderFamily,
    order_id: OrderId,
    after_sale_type: AfterSaleType,
    items: &[(SkuCode, Quantity)],
    reason: &str,
    images: &[String],
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    let part = resolve_part(family, order_id)?;
    bounded_text(reason, 1, REASON_LEN_MAX, ErrorCode::TEXT_INVALID, "reason")?;
    if images.len() > AFTER_SALE_IMAGES_MAX {
        return Err(DomainError::invalid(
            ErrorCode::TEXT_INVALID,
            "images",
            format!("at most {AFTER_SALE_IMAGES_MAX}"),
        ));
    }
    for image in images {
        bounded_text(
            image,
            1,
            PRODUCT_TEXT_LEN_MAX,
            ErrorCode::TEXT_INVALID,
            "images",
        )?;
    }
    let status = family.part_status(part);
    let allowed = match after_sale_type {
        AfterSaleType::RETURN_GOODS => status == OrderStatus::SIGNED,
        AfterSaleType::RETURN_MONEY => goods_not_left(status),
    };
    if !allowed {
        return Err(part_error(
            family,
            part,
            ErrorCode::AFTER_SALE_CANNOT_APPLY,
            "apply for this after-sale",
        ));
    }
    let applications = family
        .after_sales
        .iter()
        .filter(|a| a.detail == AfterSaleTypeDetail::PART_REFUND)
        .count();
    if applications >= SHOPPER_AFTER_SALES_PER_FAMILY_MAX {
        return Err(DomainError::rule(
            ErrorCode::AFTER_SALE_LIMIT,
            format!(
                "order {} holds {SHOPPER_AFTER_SALES_PER_FAMILY_MAX} applications",
                family.order_id
            ),
        ));
    }
    let (items, shipping) = part_refund(family, part, items, &[])?;
    let amount = Money::sum(items.iter().map(|i| i.refund_amount))?.checked_add(shipping)?;
    let after_sale = AfterSale {
        after_sale_id: next_after_sale_id(family)?,
        order_id: family.part_id(part),
        user_id: family.user_id.clone(),
        after_sale_type,
        detail: AfterSaleTypeDetail::PART_REFUND,
        status: AfterSaleStatus::COMMITTED,
        items,
        shipping_amount: shipping,
        apply_refund_amount: amount,
        trade_no: family.payment.trade_no.clone(),
        reason: Some(reason.to_owned()),
        images: images.to_vec(),
        review_remark: None,
        created_at: now,
        updated_at: now,
        refunded_at: None,
    };
    Ok(vec![EventBody::AfterSaleCommitted(Box::new(after_sale))])
}

fn lack(
    family: &OrderFamily,
    order_id: OrderId,
    items: &[(SkuCode, Quantity)],
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    let part = resolve_part(family, order_id)?;
    let status = family.part_status(part);
    if !matches!(status, OrderStatus::FULFILLED | OrderStatus::OUT_STOCK) {
        return Err(part_error(
            family,
            part,
            ErrorCode::ORDER_NOT_ALLOW_TO_LACK,
            "report a lack",
        ));
    }
    if family.is_lacked(part) {
        return Err(part_error(
            family,
            part,
            ErrorCode::ORDER_NOT_ALLOW_TO_LACK,
            "report a second lack",
        ));
    }
    // Every unit refunded already: nothing is left to lack (README).
    if family.is_fully_refunded(part) {
        return Err(part_error(
            family,
            part,
            ErrorCode::ORDER_NOT_ALLOW_TO_LACK,
            "report a lack on an order whose every unit was refunded",
        ));
    }
    let (items, shipping) = part_refund(family, part, items, &[])?;
    let amount = Money::sum(items.iter().map(|i| i.refund_amount))?.checked_add(shipping)?;
    let mut after_sale = system_refund(
        family,
        family.part_id(part),
        AfterSaleTypeDetail::LACK_REFUND,
        items,
        shipping,
        amount,
        family.payment.trade_no.clone(),
        now,
    )?;
    after_sale.reason = Some("lack".to_owned());
    Ok(refund_bodies(after_sale))
}

fn find_after_sale<'a>(
    family: &'a OrderFamily,
    id: &AfterSaleId,
) -> Result<&'a AfterSale, DomainError> {
    family
        .after_sale(id)
        .ok_or_else(|| DomainError::not_found(ErrorCode::AFTER_SALE_NOT_FOUND, "after-sale", id))
}

fn after_sale_error(a: &AfterSale, status: AfterSaleStatus, action: &'static str) -> DomainError {
    DomainError::AfterSaleState {
        after_sale_id: a.after_sale_id.to_string(),
        status,
        action,
    }
}

fn review(
    family: &OrderFamily,
    id: &AfterSaleId,
    approved: bool,
    remark: Option<String>,
) -> Result<Vec<EventBody>, DomainError> {
    let a = find_after_sale(family, id)?;
    match (a.status, approved) {
        (AfterSaleStatus::COMMITTED, true) => {
            // A refund without return is for goods that have not left
            // (API.md): checked when applied, and again now, as the part
            // may have shipped since.
            if a.after_sale_type == AfterSaleType::RETURN_MONEY
                && a.detail == AfterSaleTypeDetail::PART_REFUND
            {
                if let Some(part) = family.part_of(a.order_id) {
                    if !goods_not_left(family.part_status(part)) {
                        return Err(part_error(
                            family,
                            part,
                            ErrorCode::AFTER_SALE_CANNOT_APPLY,
                            "approve a refund without return once the goods have left (reject it)",
                        ));
                    }
                }
            }
            let mut bodies = vec![EventBody::AfterSaleReviewed {
                after_sale_id: *id,
                approved,
                remark,
            }];
            bodies.extend(
                family.return_restock(a).into_iter().map(|(sku, units)| {
                    stock_move(family, &sku, units, StockMove::SoldToAvailable)
                }),
            );
            bodies.push(EventBody::RefundRequested {
                after_sale_id: *id,
                order_id: a.order_id,
                trade_no: a.trade_no.clone(),
                refund_amount: a.apply_refund_amount,
            });
            Ok(bodies)
        }
        (AfterSaleStatus::COMMITTED, false) => Ok(vec![EventBody::AfterSaleReviewed {
            after_sale_id: *id,
            approved,
            remark,
        }]),
        (_, true) if a.is_approved() => Ok(Vec::new()),
        (AfterSaleStatus::REVIEW_REJECTED, false) => Ok(Vec::new()),
        (status, _) => Err(after_sale_error(a, status, "review")),
    }
}

/// A part whose goods have not left the warehouse: the only ones a refund
/// without return (RETURN_MONEY) may be applied for or approved on.
fn goods_not_left(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::PAID | OrderStatus::FULFILLED)
}

/// Whether a share of lines (an application, a lack) comes to the same
/// amounts priced again now: it was priced against the claims of its day,
/// others completed, revoked or took the shipping fee since, and at its old
/// price the line's refunds could pass the line's pay (or leave part of it
/// unpaid). Other refunds are not shares.
fn priced_alike(family: &OrderFamily, a: &AfterSale) -> bool {
    !matches!(
        a.detail,
        AfterSaleTypeDetail::PART_REFUND | AfterSaleTypeDetail::LACK_REFUND
    ) || family.part_of(a.order_id).is_some_and(|part| {
        let asked: Vec<(SkuCode, Quantity)> = a
            .items
            .iter()
            .map(|i| (i.sku_code.clone(), i.quantity))
            .collect();
        part_refund(family, part, &asked, &[a.after_sale_id])
            .is_ok_and(|(items, shipping)| items == a.items && shipping == a.shipping_amount)
    })
}

/// The amount of the payment `trade_no` names (0 for none).
fn paid_by(family: &OrderFamily, trade_no: Option<&TradeNo>) -> Money {
    match trade_no {
        Some(t) if family.payment.trade_no.as_ref() == Some(t) => family.payment.pay_amount,
        Some(t) => family
            .extra_payments
            .iter()
            .find(|p| &p.trade_no == t)
            .map_or(Money::ZERO, |p| p.pay_amount),
        None => Money::ZERO,
    }
}

/// Whether the units, money and shipping fee `a` refunds fit beside the
/// after-sales `holds` picks and `extra` besides.
fn fits_beside(
    family: &OrderFamily,
    a: &AfterSale,
    holds: impl Fn(&AfterSale) -> bool,
    extra: &[&AfterSale],
) -> bool {
    let others = || {
        family
            .after_sales
            .iter()
            .filter(|x| holds(x))
            .chain(extra.iter().copied())
    };
    let units = a.items.iter().all(|i| {
        family.line(&i.sku_code).is_some_and(|line| {
            let taken: Quantity = others().map(|x| x.quantity_of(&i.sku_code)).sum();
            taken + i.quantity <= line.sale_quantity
        })
    });
    let taken: i64 = others()
        .filter(|x| x.trade_no == a.trade_no)
        .map(|x| x.apply_refund_amount.minor())
        .sum();
    let money =
        taken + a.apply_refund_amount.minor() <= paid_by(family, a.trade_no.as_ref()).minor();
    let shipping = a.shipping_amount.is_zero() || !others().any(|x| !x.shipping_amount.is_zero());
    units && money && shipping
}

/// A FAILED refund goes back to REFUNDING, if what it refunds has not been
/// claimed by another after-sale meanwhile (a FAILED after-sale releases
/// its claim, API.md).
fn retry(family: &OrderFamily, id: &AfterSaleId) -> Result<Vec<EventBody>, DomainError> {
    let a = find_after_sale(family, id)?;
    if a.status != AfterSaleStatus::FAILED {
        return Err(after_sale_error(
            a,
            a.status,
            "retry a refund that has not failed",
        ));
    }
    // FAILED refunds after this one were priced with its claim released
    // and may cover what it refunds (a cancel after a failed return refunds
    // the returned units too). They still count here: retried first, this
    // one would leave the rest of theirs unpayable, and a cancelled order
    // has no other way to refund it. Only one that can never be retried is
    // no claim: what it covers was refunded since (a claim still pending
    // may yet go away, and it would then be owed).
    let later_failed: Vec<&AfterSale> = family
        .after_sales
        .iter()
        .skip_while(|x| x.after_sale_id != *id)
        .skip(1)
        .filter(|x| {
            x.status == AfterSaleStatus::FAILED
                && fits_beside(family, x, |r| r.status == AfterSaleStatus::REFUNDED, &[])
        })
        .collect();
    let fits = fits_beside(family, a, |x| x.status.claims(), &later_failed);
    if !(fits && priced_alike(family, a)) {
        return Err(after_sale_error(
            a,
            a.status,
            "retry: another after-sale now claims what it refunds",
        ));
    }
    Ok(vec![EventBody::RefundRequested {
        after_sale_id: *id,
        order_id: a.order_id,
        trade_no: a.trade_no.clone(),
        refund_amount: a.apply_refund_amount,
    }])
}
