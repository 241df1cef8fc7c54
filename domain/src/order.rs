//! The values an order is made of: delivery, amounts, lines, sub-orders,
//! payment. Each is checked when built from input; afterwards it is a fact.

use crate::codes::{AmountType, DeliveryType, OrderStatus, PayType, ProductType};
use crate::error::{DomainError, ErrorCode};
use crate::ids::{CouponId, OrderId, OutTradeNo, ProductId, SellerId, SkuCode, TradeNo};
use crate::limits::{ADDRESS_DETAIL_LEN_MAX, ADDRESS_FIELD_LEN_MAX, PHONE_LEN_MAX};
use crate::money::{Money, Quantity, Timestamp};
use crate::text::{bounded_text, optional_text};
use serde::{Deserialize, Serialize};

/// Where an order goes (the part of the delivery a shopper may change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub province: String,
    pub city: String,
    pub area: String,
    pub street: Option<String>,
    pub detail_address: String,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
}

impl Address {
    /// Checks every field's bounds and the coordinates' ranges.
    pub fn validate(&self) -> Result<(), DomainError> {
        let code = ErrorCode::DELIVERY_ADDRESS_INVALID;
        bounded_text(&self.province, 1, ADDRESS_FIELD_LEN_MAX, code, "province")?;
        bounded_text(&self.city, 1, ADDRESS_FIELD_LEN_MAX, code, "city")?;
        bounded_text(&self.area, 1, ADDRESS_FIELD_LEN_MAX, code, "area")?;
        optional_text(
            self.street.as_deref(),
            ADDRESS_FIELD_LEN_MAX,
            code,
            "street",
        )?;
        bounded_text(
            &self.detail_address,
            1,
            ADDRESS_DETAIL_LEN_MAX,
            code,
            "detail_address",
        )?;
        let in_range =
            |v: Option<f64>, limit: f64| v.is_none_or(|v| v.is_finite() && v.abs() <= limit);
        if !in_range(self.lon, 180.0) {
            return Err(DomainError::invalid(code, "lon", "must be -180..=180"));
        }
        if !in_range(self.lat, 90.0) {
            return Err(DomainError::invalid(code, "lat", "must be -90..=90"));
        }
        Ok(())
    }
}

/// Who receives an order and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub delivery_type: DeliveryType,
    pub receiver_name: String,
    pub receiver_phone: String,
    pub address: Address,
}

impl Delivery {
    pub fn validate(&self) -> Result<(), DomainError> {
        let code = ErrorCode::DELIVERY_ADDRESS_INVALID;
        bounded_text(
            &self.receiver_name,
            1,
            ADDRESS_FIELD_LEN_MAX,
            code,
            "receiver_name",
        )?;
        let phone = &self.receiver_phone;
        if phone.is_empty()
            || phone.len() > PHONE_LEN_MAX
            || !phone
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b' '))
            || !phone.bytes().any(|b| b.is_ascii_digit())
        {
            return Err(DomainError::invalid(
                code,
                "receiver_phone",
                format!("must be 1..={PHONE_LEN_MAX} of digits, '+', '-', ' '"),
            ));
        }
        self.address.validate()
    }
}

/// The four amounts of an order (or sub-order). `real_pay = origin −
/// discount + shipping`, always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Amounts {
    pub origin: Money,
    pub discount: Money,
    pub shipping: Money,
    pub real_pay: Money,
}

impl Amounts {
    /// The amounts as API.md lists them: `[{amount_type, amount}]`.
    pub fn to_list(&self) -> [(AmountType, Money); 4] {
        [
            (AmountType::ORIGIN_PAY_AMOUNT, self.origin),
            (AmountType::COUPON_DISCOUNT_AMOUNT, self.discount),
            (AmountType::SHIPPING_AMOUNT, self.shipping),
            (AmountType::REAL_PAY_AMOUNT, self.real_pay),
        ]
    }

    /// The amount of one type.
    pub fn get(&self, amount_type: AmountType) -> Money {
        match amount_type {
            AmountType::ORIGIN_PAY_AMOUNT => self.origin,
            AmountType::COUPON_DISCOUNT_AMOUNT => self.discount,
            AmountType::SHIPPING_AMOUNT => self.shipping,
            AmountType::REAL_PAY_AMOUNT => self.real_pay,
        }
    }

    /// Whether the amounts add up.
    pub fn is_consistent(&self) -> bool {
        self.origin.minor() - self.discount.minor() + self.shipping.minor() == self.real_pay.minor()
            && self.discount <= self.origin
    }
}

/// The coupon an order used, as it was when the order was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponSnapshot {
    pub coupon_id: CouponId,
    pub amount: Money,
    pub threshold_amount: Money,
    pub valid_from: Timestamp,
    pub valid_to: Timestamp,
    /// The discount it gave this order.
    pub discount: Money,
}

/// One line of an order: what was bought, at what price, and what it paid.
/// The product fields are the snapshot taken at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku_code: SkuCode,
    pub product_id: ProductId,
    pub product_name: String,
    pub product_type: ProductType,
    pub product_unit: String,
    pub product_img: Option<String>,
    pub seller_id: SellerId,
    pub sale_price: Money,
    pub purchase_price: Money,
    pub sale_quantity: Quantity,
    /// `sale_price × sale_quantity`.
    pub origin_amount: Money,
    /// This line's share of the coupon discount.
    pub discount_amount: Money,
    /// `origin_amount − discount_amount`.
    pub pay_amount: Money,
    /// Units put back into available stock after payment (cancel, refusal,
    /// approved returns of goods).
    pub restocked_quantity: Quantity,
}

/// One part of a mixed order family: the lines of one product type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubOrder {
    pub order_id: OrderId,
    pub product_type: ProductType,
    pub status: OrderStatus,
    pub amounts: Amounts,
}

/// The family's payment: chosen at creation, confirmed by the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub pay_type: PayType,
    pub pay_amount: Money,
    /// The merchant payment number handed to the provider (set by prepay).
    pub out_trade_no: Option<OutTradeNo>,
    /// The provider's id of the payment that paid the family.
    pub trade_no: Option<TradeNo>,
    pub prepaid_at: Option<Timestamp>,
    pub paid_at: Option<Timestamp>,
}

/// A payment that arrived for a family that was cancelled or already paid;
/// it is refunded whole by its after-sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraPayment {
    pub trade_no: TradeNo,
    pub out_trade_no: OutTradeNo,
    pub pay_type: PayType,
    pub pay_amount: Money,
    pub paid_at: Timestamp,
    pub after_sale_id: crate::ids::AfterSaleId,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn address() -> Address {
        Address {
            province: "Zhejiang".into(),
            city: "Hangzhou".into(),
            area: "Xihu".into(),
            street: None,
            detail_address: "1 Wensan Road".into(),
            lon: Some(120.1),
            lat: Some(30.2),
        }
    }

    #[test]
    fn addresses_are_bounded() {
        assert!(address().validate().is_ok());
        let mut a = address();
        a.lat = Some(91.0);
        assert_eq!(
            a.validate().unwrap_err().code(),
            ErrorCode::DELIVERY_ADDRESS_INVALID
        );
        let mut a = address();
        a.lon = Some(f64::NAN);
        assert!(a.validate().is_err());
        let mut a = address();
        a.detail_address = "x".repeat(ADDRESS_DETAIL_LEN_MAX + 1);
        assert!(a.validate().is_err());
        let mut a = address();
        a.street = Some(String::new());
        assert!(a.validate().is_err());
    }

    #[test]
    fn phones_are_digits() {
        let mut d = Delivery {
            delivery_type: DeliveryType::SELF,
            receiver_name: "Li Lei".into(),
            receiver_phone: "+86 138-0000-0000".into(),
            address: address(),
        };
        assert!(d.validate().is_ok());
        d.receiver_phone = "call me".into();
        assert!(d.validate().is_err());
        d.receiver_phone = "---".into();
        assert!(d.validate().is_err());
    }
}
