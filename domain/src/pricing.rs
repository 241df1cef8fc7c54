//! Pricing (origin, coupon discount, shipping, real pay), the exact split of
//! the discount over lines, and the risk rules checked before an order is
//! priced.

use crate::catalog::{Coupon, Sku};
use crate::codes::CouponStatus;
use crate::error::{DomainError, ErrorCode};
use crate::ids::{CouponId, SkuCode, UserId};
use crate::limits::{LINE_QUANTITY_MAX, ORDER_LINES_MAX};
use crate::money::{Money, Quantity, Timestamp};
use crate::order::{Amounts, CouponSnapshot};
use serde::{Deserialize, Serialize};

/// The shipping rule, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricingRules {
    /// Fee charged per order.
    pub shipping_fee: Money,
    /// The fee is waived when origin − discount reaches this.
    pub free_shipping_threshold: Money,
}

impl Default for PricingRules {
    /// API.md's defaults: 1000 fee, waived from 9900.
    fn default() -> Self {
        PricingRules {
            shipping_fee: Money::from_minor(1_000),
            free_shipping_threshold: Money::from_minor(9_900),
        }
    }
}

/// One priced line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteLine {
    pub sku_code: SkuCode,
    pub sale_price: Money,
    pub sale_quantity: Quantity,
    pub origin_amount: Money,
    pub discount_amount: Money,
    pub pay_amount: Money,
}

/// The price of a basket: exactly what an order of it must pay now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub amounts: Amounts,
    pub lines: Vec<QuoteLine>,
    /// The coupon that gave a discount (none when its threshold is not met).
    pub coupon: Option<CouponSnapshot>,
}

/// Checks an item list: 1..=[`ORDER_LINES_MAX`] lines, each SKU once, each
/// quantity 1..=[`LINE_QUANTITY_MAX`].
pub fn check_items(items: &[(SkuCode, Quantity)]) -> Result<(), DomainError> {
    if items.is_empty() || items.len() > ORDER_LINES_MAX {
        return Err(DomainError::invalid(
            ErrorCode::ORDER_ITEM_INVALID,
            "items",
            format!("must hold 1..={ORDER_LINES_MAX} lines"),
        ));
    }
    for (i, (sku, quantity)) in items.iter().enumerate() {
        if *quantity < 1 || *quantity > LINE_QUANTITY_MAX {
            return Err(DomainError::invalid(
                ErrorCode::ORDER_ITEM_INVALID,
                "items",
                format!("SKU {sku}: quantity must be 1..={LINE_QUANTITY_MAX}, got {quantity}"),
            ));
        }
        if items[..i].iter().any(|(other, _)| other == sku) {
            return Err(DomainError::invalid(
                ErrorCode::ORDER_ITEM_INVALID,
                "items",
                format!("SKU {sku} appears twice"),
            ));
        }
    }
    Ok(())
}

/// Checks that `coupon` may be used by `user` at `now`.
pub fn check_coupon(
    coupon_id: &CouponId,
    coupon: Option<&Coupon>,
    user: &UserId,
    now: Timestamp,
) -> Result<(), DomainError> {
    let coupon = coupon
        .filter(|c| &c.details.user_id == user)
        .ok_or_else(|| {
            DomainError::not_found(ErrorCode::USER_COUPON_NOT_EXIST, "coupon", coupon_id)
        })?;
    if coupon.status != CouponStatus::UNUSED {
        return Err(DomainError::rule(
            ErrorCode::USER_COUPON_IS_USED,
            format!("coupon {coupon_id} is {:?}", coupon.status),
        ));
    }
    if now < coupon.details.valid_from {
        return Err(DomainError::rule(
            ErrorCode::USER_COUPON_NOT_STARTED,
            format!(
                "coupon {coupon_id} is valid from {}",
                coupon.details.valid_from
            ),
        ));
    }
    if now > coupon.details.valid_to {
        return Err(DomainError::rule(
            ErrorCode::USER_COUPON_EXPIRED,
            format!("coupon {coupon_id} expired at {}", coupon.details.valid_to),
        ));
    }
    Ok(())
}

/// Prices `items` from the catalog `skus` with an optional coupon.
/// origin = Σ price × quantity; the coupon gives `min(amount, origin)` when
/// origin reaches its threshold, nothing otherwise; shipping is the fee
/// unless origin − discount reaches the free-shipping threshold.
pub fn quote<S: std::borrow::Borrow<Sku>>(
    user: &UserId,
    items: &[(SkuCode, Quantity)],
    skus: &[S],
    coupon: Option<(&CouponId, Option<&Coupon>)>,
    rules: &PricingRules,
    now: Timestamp,
) -> Result<Quote, DomainError> {
    check_items(items)?;
    let mut lines = Vec::with_capacity(items.len());
    for (sku_code, quantity) in items {
        let sku = find_sku(skus, sku_code)?;
        let origin = sku.details.sale_price.checked_mul(*quantity)?;
        lines.push(QuoteLine {
            sku_code: sku_code.clone(),
            sale_price: sku.details.sale_price,
            sale_quantity: *quantity,
            origin_amount: origin,
            discount_amount: Money::ZERO,
            pay_amount: origin,
        });
    }
    let origin = Money::sum(lines.iter().map(|l| l.origin_amount))?;
    let mut snapshot = None;
    if let Some((coupon_id, coupon)) = coupon {
        check_coupon(coupon_id, coupon, user, now)?;
        if let Some(c) = coupon.filter(|c| origin >= c.details.threshold_amount) {
            let discount = c.details.amount.min(origin);
            snapshot = Some(CouponSnapshot {
                coupon_id: coupon_id.clone(),
                amount: c.details.amount,
                threshold_amount: c.details.threshold_amount,
                valid_from: c.details.valid_from,
                valid_to: c.details.valid_to,
                discount,
            });
        }
    }
    let discount = snapshot.as_ref().map_or(Money::ZERO, |c| c.discount);
    let origins: Vec<Money> = lines.iter().map(|l| l.origin_amount).collect();
    for (line, share) in lines.iter_mut().zip(allocate(discount, &origins)?) {
        line.discount_amount = share;
        line.pay_amount = line.origin_amount.checked_sub(share)?;
    }
    let after_discount = origin.checked_sub(discount)?;
    let shipping = if after_discount >= rules.free_shipping_threshold {
        Money::ZERO
    } else {
        rules.shipping_fee
    };
    let amounts = Amounts {
        origin,
        discount,
        shipping,
        real_pay: after_discount.checked_add(shipping)?,
    };
    debug_assert!(amounts.is_consistent());
    Ok(Quote {
        amounts,
        lines,
        coupon: snapshot,
    })
}

pub(crate) fn find_sku<'a, S: std::borrow::Borrow<Sku>>(
    skus: &'a [S],
    code: &SkuCode,
) -> Result<&'a Sku, DomainError> {
    skus.iter()
        .map(std::borrow::Borrow::borrow)
        .find(|s| s.code() == code)
        .ok_or_else(|| DomainError::not_found(ErrorCode::PRODUCT_SKU_NOT_FOUND, "SKU", code))
}

/// Splits `discount` over lines in proportion to their origin amounts, in
/// request order: each share rounded down, the last line taking the
/// remainder, so the shares sum to the discount exactly. No share exceeds
/// its line's origin: in the rare case the remainder is larger than the last
/// line (a discount close to the whole origin spread over lines of very
/// different size), the excess goes to the earlier lines in request order,
/// up to each one's origin.
pub fn allocate(discount: Money, origins: &[Money]) -> Result<Vec<Money>, DomainError> {
    let total = Money::sum(origins.iter().copied())?;
    if origins.is_empty() || discount.is_zero() || total.is_zero() {
        return Ok(vec![Money::ZERO; origins.len()]);
    }
    debug_assert!(discount <= total);
    let last = origins.len() - 1;
    let mut shares = Vec::with_capacity(origins.len());
    for origin in &origins[..last] {
        shares.push(discount.mul_div_floor(origin.minor(), total.minor())?);
    }
    let given = Money::sum(shares.iter().copied())?;
    let remainder = discount.checked_sub(given)?;
    let mut excess = remainder.minor() - origins[last].minor();
    shares.push(if excess > 0 { origins[last] } else { remainder });
    for (share, origin) in shares.iter_mut().zip(origins) {
        if excess <= 0 {
            break;
        }
        let room = origin.minor() - share.minor();
        let take = room.min(excess);
        *share = Money::from_minor(share.minor() + take);
        excess -= take;
    }
    Ok(shares)
}

/// Risk rules, from configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskRules {
    /// Largest real pay amount accepted; zero means no cap.
    pub max_order_amount: Money,
    /// Orders one user may create per minute; zero means no limit.
    pub max_orders_per_user_per_min: u32,
    /// Users refused outright.
    pub blocked_users: Vec<UserId>,
}

impl RiskRules {
    /// Checks an order before it is priced: a blocked user or an amount over
    /// the cap is `RISK_REJECTED`; a user at the per-minute limit (given the
    /// caller's count of that user's orders in the last minute) is
    /// `ORDER_RATE_LIMITED`.
    pub fn check(
        &self,
        user: &UserId,
        claimed_real_pay: Money,
        orders_in_last_minute: u32,
    ) -> Result<(), DomainError> {
        if self.blocked_users.contains(user) {
            return Err(DomainError::rule(
                ErrorCode::RISK_REJECTED,
                format!("user {user} is blocked"),
            ));
        }
        if !self.max_order_amount.is_zero() && claimed_real_pay > self.max_order_amount {
            return Err(DomainError::rule(
                ErrorCode::RISK_REJECTED,
                format!(
                    "amount {claimed_real_pay} is above the cap {}",
                    self.max_order_amount
                ),
            ));
        }
        if self.max_orders_per_user_per_min > 0
            && orders_in_last_minute >= self.max_orders_per_user_per_min
        {
            return Err(DomainError::rule(
                ErrorCode::ORDER_RATE_LIMITED,
                format!(
                    "user {user} created {orders_in_last_minute} orders in the last minute (limit {})",
                    self.max_orders_per_user_per_min
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &[i64]) -> Vec<Money> {
        v.iter().map(|x| Money::from_minor(*x)).collect()
    }

    #[test]
    fn allocation_rounds_down_in_request_order_and_gives_the_rest_to_the_last_line() {
        assert_eq!(
            allocate(Money::from_minor(100), &m(&[300, 300, 400])).unwrap(),
            m(&[30, 30, 40])
        );
        assert_eq!(
            allocate(Money::from_minor(10), &m(&[10, 10, 10])).unwrap(),
            m(&[3, 3, 4])
        );
        assert_eq!(
            allocate(Money::from_minor(7), &m(&[100, 200])).unwrap(),
            m(&[2, 5])
        );
        assert_eq!(allocate(Money::ZERO, &m(&[5, 5])).unwrap(), m(&[0, 0]));
        assert_eq!(
            allocate(Money::from_minor(3), &m(&[0, 0])).unwrap(),
            m(&[0, 0])
        );
    }

    #[test]
    fn item_lists_refuse_zero_and_oversized_quantities_and_repeats() {
        let a = SkuCode::parse("A").unwrap();
        let b = SkuCode::parse("B").unwrap();
        assert!(check_items(&[(a.clone(), 1), (b.clone(), LINE_QUANTITY_MAX)]).is_ok());
        for bad in [
            vec![],
            vec![(a.clone(), 0)],
            vec![(a.clone(), LINE_QUANTITY_MAX + 1)],
            vec![(a.clone(), 1), (a.clone(), 2)],
        ] {
            assert_eq!(
                check_items(&bad).unwrap_err().code(),
                ErrorCode::ORDER_ITEM_INVALID,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn allocation_never_pushes_a_line_below_zero() {
        // floor(10×5/11) = 4 twice leaves 2 for a line of origin 1.
        let shares = allocate(Money::from_minor(10), &m(&[5, 5, 1])).unwrap();
        assert_eq!(shares, m(&[5, 4, 1]));
        assert_eq!(shares.iter().map(|s| s.minor()).sum::<i64>(), 10);
    }

    #[test]
    fn risk_rules_refuse_blocked_users_big_amounts_and_fast_buyers() {
        let bad = UserId::parse("bad").unwrap();
        let ok = UserId::parse("ok").unwrap();
        let rules = RiskRules {
            max_order_amount: Money::from_minor(1_000),
            max_orders_per_user_per_min: 2,
            blocked_users: vec![bad.clone()],
        };
        let code = |r: Result<(), DomainError>| r.map_err(|e| e.code());
        assert_eq!(
            code(rules.check(&bad, Money::ZERO, 0)),
            Err(ErrorCode::RISK_REJECTED)
        );
        assert_eq!(
            code(rules.check(&ok, Money::from_minor(1_001), 0)),
            Err(ErrorCode::RISK_REJECTED)
        );
        assert_eq!(
            code(rules.check(&ok, Money::from_minor(1_000), 2)),
            Err(ErrorCode::ORDER_RATE_LIMITED)
        );
        assert_eq!(code(rules.check(&ok, Money::from_minor(1_000), 1)), Ok(()));
        assert_eq!(
            code(RiskRules::default().check(&ok, Money::from_minor(i64::MAX), 1_000)),
            Ok(())
        );
    }
}
