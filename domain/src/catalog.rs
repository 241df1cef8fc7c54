//! SKUs with their stock, and coupons: the aggregates an order reserves from.
//!
//! Stock of a SKU changes only through `StockChanged` events and a coupon's
//! state only through `CouponChanged` events, so a journal replay rebuilds
//! both from the same units that changed the orders.

use crate::codes::{CouponStatus, ProductType};
use crate::error::{DomainError, ErrorCode};
use crate::event::{Event, EventBody, StockDelta};
use crate::ids::{CouponId, OrderId, ProductId, SellerId, SkuCode, UserId};
use crate::limits::{PRODUCT_TEXT_LEN_MAX, STOCK_MAX};
use crate::money::{Money, Quantity, Timestamp};
use crate::text::bounded_text;
use serde::{Deserialize, Serialize};

/// What the catalog says about a SKU (everything but stock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuDetails {
    pub sku_code: SkuCode,
    pub product_id: ProductId,
    pub product_name: String,
    pub product_type: ProductType,
    pub sale_price: Money,
    pub purchase_price: Money,
    pub product_unit: String,
    pub product_img: Option<String>,
    pub seller_id: SellerId,
}

impl SkuDetails {
    /// Checks the free-text fields' bounds.
    pub fn validate(&self) -> Result<(), DomainError> {
        bounded_text(
            &self.product_name,
            1,
            PRODUCT_TEXT_LEN_MAX,
            ErrorCode::SKU_INVALID,
            "product_name",
        )?;
        bounded_text(
            &self.product_unit,
            1,
            PRODUCT_TEXT_LEN_MAX,
            ErrorCode::SKU_INVALID,
            "product_unit",
        )?;
        if let Some(img) = &self.product_img {
            bounded_text(
                img,
                1,
                PRODUCT_TEXT_LEN_MAX,
                ErrorCode::SKU_INVALID,
                "product_img",
            )?;
        }
        Ok(())
    }
}

/// A SKU and its stock: `available + locked + sold` is its total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sku {
    pub details: SkuDetails,
    /// Units that can be reserved.
    pub available: i64,
    /// Units reserved by CREATED orders.
    pub locked: i64,
    /// Units of paid orders.
    pub sold: i64,
}

impl Sku {
    pub fn code(&self) -> &SkuCode {
        &self.details.sku_code
    }

    pub fn total(&self) -> i64 {
        self.available + self.locked + self.sold
    }

    /// Whether `quantity` units can be reserved now.
    pub fn can_reserve(&self, quantity: Quantity) -> bool {
        self.available >= i64::from(quantity)
    }

    /// The SKU a first `SkuUpserted` event creates (no stock yet).
    pub fn new(details: SkuDetails) -> Sku {
        Sku {
            details,
            available: 0,
            locked: 0,
            sold: 0,
        }
    }

    /// Applies an event that concerns this SKU; others are ignored.
    pub fn apply(&mut self, event: &Event) {
        match &event.body {
            EventBody::SkuUpserted(details) if details.sku_code == self.details.sku_code => {
                self.details = (**details).clone();
            }
            EventBody::StockChanged(delta) if delta.sku_code == self.details.sku_code => {
                self.available += delta.available_delta;
                self.locked += delta.locked_delta;
                self.sold += delta.sold_delta;
                debug_assert!(
                    self.available >= 0 && self.locked >= 0 && self.sold >= 0,
                    "stock of {} went negative: {self:?}",
                    self.details.sku_code
                );
            }
            _ => {}
        }
    }
}

/// Decides `PUT /v1/skus/{sku_code}`: set the details and the total stock.
/// The total may not drop below what orders hold (locked + sold).
pub fn decide_upsert_sku(
    current: Option<&Sku>,
    details: SkuDetails,
    stock_total: i64,
) -> Result<Vec<EventBody>, DomainError> {
    details.validate()?;
    if !(0..=STOCK_MAX).contains(&stock_total) {
        return Err(DomainError::invalid(
            ErrorCode::SKU_INVALID,
            "stock",
            format!("must be 0..={STOCK_MAX}"),
        ));
    }
    let (held, total) = current.map_or((0, 0), |s| (s.locked + s.sold, s.total()));
    if stock_total < held {
        return Err(DomainError::rule(
            ErrorCode::STOCK_BELOW_RESERVED,
            format!("stock {stock_total} is below the {held} units orders hold"),
        ));
    }
    let sku_code = details.sku_code.clone();
    let mut events = vec![EventBody::SkuUpserted(Box::new(details))];
    if stock_total != total {
        events.push(EventBody::StockChanged(StockDelta {
            sku_code,
            order_id: None,
            available_delta: stock_total - total,
            locked_delta: 0,
            sold_delta: 0,
        }));
    }
    Ok(events)
}

/// Decides `POST /v1/skus/{sku_code}/stock`: add `delta` (may be negative)
/// to the available stock, never below zero available.
pub fn decide_stock_delta(sku: &Sku, delta: i64) -> Result<Vec<EventBody>, DomainError> {
    if delta.unsigned_abs() > STOCK_MAX.unsigned_abs() {
        return Err(DomainError::invalid(
            ErrorCode::SKU_INVALID,
            "delta",
            "out of range",
        ));
    }
    let available = sku.available + delta;
    if available < 0 {
        return Err(DomainError::rule(
            ErrorCode::STOCK_BELOW_RESERVED,
            format!(
                "delta {delta} would leave the stock below the {} units orders hold",
                sku.locked + sku.sold
            ),
        ));
    }
    if sku.total() + delta > STOCK_MAX {
        return Err(DomainError::invalid(
            ErrorCode::SKU_INVALID,
            "delta",
            "stock above maximum",
        ));
    }
    if delta == 0 {
        return Ok(Vec::new());
    }
    Ok(vec![EventBody::StockChanged(StockDelta {
        sku_code: sku.details.sku_code.clone(),
        order_id: None,
        available_delta: delta,
        locked_delta: 0,
        sold_delta: 0,
    })])
}

/// What is issued about a coupon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponDetails {
    pub coupon_id: CouponId,
    pub user_id: UserId,
    /// Discount in minor units.
    pub amount: Money,
    /// Smallest origin amount the coupon applies to.
    pub threshold_amount: Money,
    pub valid_from: Timestamp,
    pub valid_to: Timestamp,
}

/// A coupon issued to one user and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupon {
    pub details: CouponDetails,
    pub status: CouponStatus,
    /// The order that locked or used it.
    pub order_id: Option<OrderId>,
}

impl Coupon {
    pub fn new(details: CouponDetails) -> Coupon {
        Coupon {
            details,
            status: CouponStatus::UNUSED,
            order_id: None,
        }
    }

    /// Applies an event that concerns this coupon; others are ignored.
    pub fn apply(&mut self, event: &Event) {
        match &event.body {
            EventBody::CouponIssued(details) if details.coupon_id == self.details.coupon_id => {
                *self = Coupon::new((**details).clone());
            }
            EventBody::CouponChanged(change) if change.coupon_id == self.details.coupon_id => {
                self.status = change.status;
                self.order_id = match change.status {
                    CouponStatus::UNUSED => None,
                    CouponStatus::LOCKED | CouponStatus::USED => Some(change.order_id),
                };
            }
            _ => {}
        }
    }
}

/// Decides `PUT /v1/coupons/{coupon_id}`: issue (or re-issue while unused).
pub fn decide_issue_coupon(
    current: Option<&Coupon>,
    details: CouponDetails,
) -> Result<Vec<EventBody>, DomainError> {
    if let Some(coupon) = current {
        if coupon.status != CouponStatus::UNUSED {
            return Err(DomainError::rule(
                ErrorCode::COUPON_IN_USE,
                format!("coupon {} is {:?}", coupon.details.coupon_id, coupon.status),
            ));
        }
    }
    if details.amount.is_zero() {
        return Err(DomainError::invalid(
            ErrorCode::COUPON_INVALID,
            "amount",
            "must be positive",
        ));
    }
    if details.valid_from >= details.valid_to {
        return Err(DomainError::invalid(
            ErrorCode::COUPON_INVALID,
            "valid_to",
            "must be after valid_from",
        ));
    }
    Ok(vec![EventBody::CouponIssued(Box::new(details))])
}
