//! The enumerations of API.md ("Codes"), with the numeric codes and
//! UPPER_SNAKE names of the system ordercore replaces. In JSON each is its
//! integer code, both ways; `name()` gives the UPPER_SNAKE name for logs and
//! documents; `from_code` is the only way in from a raw integer.

use serde::{Deserialize, Serialize};
use serde_repr::{Deserialize_repr, Serialize_repr};

/// Declares a `#[repr(u8)]` code enum with its numeric code, its name and a
/// checked conversion from a raw integer.
macro_rules! code_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        // Variants keep the UPPER_SNAKE names of the replaced system (API.md),
        // so the name operators know is the name in the code and in logs.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize_repr, Deserialize_repr)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vdoc])* $variant = $code),+
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The numeric code used in JSON and on disk.
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// The UPPER_SNAKE name of the code.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant)),+
                }
            }

            /// The value with this numeric code, if there is one.
            pub fn from_code(code: i64) -> Option<Self> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

code_enum! {
    /// Status of an order or sub-order.
    OrderStatus {
        CREATED = 10,
        PAID = 20,
        /// Handed to the warehouse.
        FULFILLED = 30,
        /// Left the warehouse ("出库"); not a shortage.
        OUT_STOCK = 40,
        DELIVERY = 50,
        SIGNED = 60,
        CANCELED = 70,
        REFUSED = 100,
        /// The layer of an order family that is not live (see API.md, family rule).
        INVALID = 127,
    }
}

impl OrderStatus {
    /// States no later change leaves: an order in one of them may be removed.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::CANCELED | OrderStatus::SIGNED | OrderStatus::REFUSED
        )
    }

    /// FULFILLED or any later step of delivery.
    pub const fn is_fulfilled_or_later(self) -> bool {
        matches!(
            self,
            OrderStatus::FULFILLED
                | OrderStatus::OUT_STOCK
                | OrderStatus::DELIVERY
                | OrderStatus::SIGNED
                | OrderStatus::REFUSED
        )
    }
}

code_enum! {
    /// Order type; only NORMAL is accepted.
    OrderType { NORMAL = 1 }
}

code_enum! {
    /// Business identifier of the shop that sells.
    BusinessIdentifier { SELF_MALL = 1 }
}

code_enum! {
    /// Product type; an order mixing types gets one sub-order per type.
    ProductType { NORMAL_PRODUCT = 1, ADVANCE_SALE = 2 }
}

code_enum! {
    /// Delivery type.
    DeliveryType { SELF = 1 }
}

code_enum! {
    /// Payment channel.
    PayType { WECHAT_PAY = 10, ALI_PAY = 20 }
}

code_enum! {
    /// Status of one payment.
    PayStatus { UNPAID = 10, PAID = 20, REFUNDING = 30, REFUNDED = 40 }
}

code_enum! {
    /// Kind of an order amount.
    AmountType {
        ORIGIN_PAY_AMOUNT = 10,
        COUPON_DISCOUNT_AMOUNT = 20,
        SHIPPING_AMOUNT = 30,
        REAL_PAY_AMOUNT = 50,
    }
}

code_enum! {
    /// Why an order was cancelled.
    CancelType { USER_CANCELED = 0, TIMEOUT_CANCELED = 1, CUSTOMER_CANCELED = 2 }
}

code_enum! {
    /// After-sale type.
    AfterSaleType {
        /// Refund without goods.
        RETURN_MONEY = 1,
        RETURN_GOODS = 2,
    }
}

code_enum! {
    /// Why an after-sale exists.
    AfterSaleTypeDetail {
        /// A whole payment: refused delivery, or a second payment.
        ALL_REFUND = 1,
        TIMEOUT_NO_PAY = 2,
        /// A paid order cancelled by its user.
        USER_CANCEL = 3,
        /// Cancelled by customer service.
        CUSTOMER_CANCEL = 4,
        /// A shopper's return.
        PART_REFUND = 5,
        LACK_REFUND = 6,
    }
}

code_enum! {
    /// Status of an after-sale.
    AfterSaleStatus {
        COMMITTED = 10,
        REVIEW_PASS = 20,
        REVIEW_REJECTED = 30,
        REFUNDING = 40,
        REFUNDED = 50,
        FAILED = 60,
        REVOKED = 127,
    }
}

impl AfterSaleStatus {
    /// Whether an after-sale in this status claims its quantities and money:
    /// API.md counts every after-sale that is not REVIEW_REJECTED, REVOKED or
    /// FAILED (pending ones included), so concurrent applications can never
    /// refund more than was paid.
    pub const fn claims(self) -> bool {
        !matches!(
            self,
            AfterSaleStatus::REVIEW_REJECTED | AfterSaleStatus::REVOKED | AfterSaleStatus::FAILED
        )
    }
}

code_enum! {
    /// Kind of a snapshot kept with an order.
    SnapshotType { ORDER_COUPON = 1, ORDER_AMOUNT = 2, ORDER_ITEM = 3 }
}

/// A fulfillment step reported by the warehouse or carrier; the one string
/// enum of the order API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(non_camel_case_types)]
pub enum FulfillmentEvent {
    FULFILLED,
    OUT_STOCK,
    DELIVERY,
    SIGNED,
    REFUSED,
}

impl FulfillmentEvent {
    /// Every step, in the order they happen (REFUSED replaces SIGNED).
    pub const ALL: &'static [FulfillmentEvent] = &[
        FulfillmentEvent::FULFILLED,
        FulfillmentEvent::OUT_STOCK,
        FulfillmentEvent::DELIVERY,
        FulfillmentEvent::SIGNED,
        FulfillmentEvent::REFUSED,
    ];

    /// The status a part is in once this step happened.
    pub const fn target(self) -> OrderStatus {
        match self {
            FulfillmentEvent::FULFILLED => OrderStatus::FULFILLED,
            FulfillmentEvent::OUT_STOCK => OrderStatus::OUT_STOCK,
            FulfillmentEvent::DELIVERY => OrderStatus::DELIVERY,
            FulfillmentEvent::SIGNED => OrderStatus::SIGNED,
            FulfillmentEvent::REFUSED => OrderStatus::REFUSED,
        }
    }

    /// The status a part must be in for this step to happen.
    pub const fn source(self) -> OrderStatus {
        match self {
            FulfillmentEvent::FULFILLED => OrderStatus::PAID,
            FulfillmentEvent::OUT_STOCK => OrderStatus::FULFILLED,
            FulfillmentEvent::DELIVERY => OrderStatus::OUT_STOCK,
            FulfillmentEvent::SIGNED | FulfillmentEvent::REFUSED => OrderStatus::DELIVERY,
        }
    }

    /// The UPPER_SNAKE name, as in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            FulfillmentEvent::FULFILLED => "FULFILLED",
            FulfillmentEvent::OUT_STOCK => "OUT_STOCK",
            FulfillmentEvent::DELIVERY => "DELIVERY",
            FulfillmentEvent::SIGNED => "SIGNED",
            FulfillmentEvent::REFUSED => "REFUSED",
        }
    }
}

/// State of a coupon; a string enum in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(non_camel_case_types)]
pub enum CouponStatus {
    UNUSED,
    LOCKED,
    USED,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_json_as_integers() {
        for status in OrderStatus::ALL {
            let json = serde_json::to_string(status).unwrap();
            assert_eq!(json, status.code().to_string());
            let back: OrderStatus = serde_json::from_str(&json).unwrap();
            assert_eq!(back, *status);
        }
        assert!(serde_json::from_str::<OrderStatus>("11").is_err());
        assert!(serde_json::from_str::<PayType>("\"WECHAT_PAY\"").is_err());
        assert_eq!(
            AfterSaleStatus::from_code(127),
            Some(AfterSaleStatus::REVOKED)
        );
        assert_eq!(CancelType::from_code(3), None);
    }

    #[test]
    fn names_are_the_replaced_system_names() {
        assert_eq!(OrderStatus::OUT_STOCK.name(), "OUT_STOCK");
        assert_eq!(AmountType::REAL_PAY_AMOUNT.code(), 50);
        assert_eq!(AfterSaleTypeDetail::LACK_REFUND.code(), 6);
        assert_eq!(
            serde_json::to_string(&FulfillmentEvent::REFUSED).unwrap(),
            "\"REFUSED\""
        );
        assert_eq!(
            serde_json::to_string(&CouponStatus::LOCKED).unwrap(),
            "\"LOCKED\""
        );
    }

    #[test]
    fn only_rejected_revoked_and_failed_after_sales_release_their_claim() {
        let released: Vec<_> = AfterSaleStatus::ALL
            .iter()
            .filter(|s| !s.claims())
            .map(|s| s.name())
            .collect();
        assert_eq!(released, ["REVIEW_REJECTED", "FAILED", "REVOKED"]);
    }
}
