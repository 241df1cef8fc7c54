//! The stable error codes of the API and the domain's error type.
//!
//! Every failure has exactly one [`ErrorCode`], and every code has exactly
//! one HTTP status (API.md, "Errors"); the edge maps a code to its status in
//! one place, through [`ErrorCode::http_status`].

use crate::codes::OrderStatus;
use std::fmt;

/// Declares the code catalogue: name and HTTP status of every code.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $status:literal),+ $(,)?) => {
        /// A stable UPPER_SNAKE error code; see API.md, "Errors".
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(non_camel_case_types)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $name),+
        }

        impl ErrorCode {
            /// Every code, in catalogue order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),+];

            /// The UPPER_SNAKE name clients match on.
            pub const fn name(self) -> &'static str {
                match self { $(ErrorCode::$name => stringify!($name)),+ }
            }

            /// The one HTTP status this code is answered with.
            pub const fn http_status(self) -> u16 {
                match self { $(ErrorCode::$name => $status),+ }
            }
        }
    };
}

error_codes! {
    // 400: malformed or invalid input
    /// The request body or a parameter is malformed.
    INVALID_REQUEST = 400,
    ORDER_ID_IS_NULL = 400,
    /// Not an order id of ordercore's format, or not the given user's.
    ORDER_ID_INVALID = 400,
    AFTER_SALE_ID_INVALID = 400,
    USER_ID_INVALID = 400,
    SKU_CODE_INVALID = 400,
    COUPON_ID_INVALID = 400,
    BUSINESS_IDENTIFIER_ERROR = 400,
    ORDER_TYPE_ERROR = 400,
    PRODUCT_TYPE_ERROR = 400,
    DELIVERY_TYPE_ERROR = 400,
    PAY_TYPE_ERROR = 400,
    AMOUNT_TYPE_ERROR = 400,
    CANCEL_TYPE_ERROR = 400,
    AFTER_SALE_TYPE_ERROR = 400,
    /// An item list is empty, too long, repeats a SKU or has a bad quantity.
    ORDER_ITEM_INVALID = 400,
    DELIVERY_ADDRESS_INVALID = 400,
    /// A money amount is negative or above the accepted maximum.
    AMOUNT_INVALID = 400,
    TRADE_NO_INVALID = 400,
    TIME_INVALID = 400,
    TEXT_INVALID = 400,
    IDEMPOTENCY_KEY_INVALID = 400,
    PAGE_SIZE_INVALID = 400,
    CURSOR_INVALID = 400,
    SKU_INVALID = 400,
    COUPON_INVALID = 400,
    // 401
    UNAUTHORIZED = 401,
    SIGNATURE_INVALID = 401,
    // 403
    FORBIDDEN = 403,
    RISK_REJECTED = 403,
    // 404
    ORDER_NOT_FOUND = 404,
    AFTER_SALE_NOT_FOUND = 404,
    PRODUCT_SKU_NOT_FOUND = 404,
    USER_COUPON_NOT_EXIST = 404,
    ROUTE_NOT_FOUND = 404,
    // 405
    METHOD_NOT_ALLOWED = 405,
    // 409: state conflicts
    ORDER_EXISTED = 409,
    ORDER_STATUS_CHANGED = 409,
    ORDER_CANNOT_CANCEL = 409,
    ORDER_CANNOT_REMOVE = 409,
    ORDER_NOT_ALLOW_TO_ADJUST_ADDRESS = 409,
    ORDER_PRE_PAY_EXPIRE = 409,
    ORDER_NOT_ALLOW_TO_LACK = 409,
    AFTER_SALE_CANNOT_APPLY = 409,
    AFTER_SALE_STATUS_CHANGED = 409,
    /// A family already holds its maximum number of after-sales.
    AFTER_SALE_LIMIT = 409,
    IDEMPOTENCY_KEY_LIMIT = 409,
    /// A family that took `EDITS_PER_FAMILY_MAX` address changes, prepays
    /// and notes takes no more.
    ORDER_CHANGE_LIMIT = 409,
    /// A stock change would leave less than what orders have locked or sold.
    STOCK_BELOW_RESERVED = 409,
    /// A coupon that an order has locked or used cannot be reissued.
    COUPON_IN_USE = 409,
    // 412
    ORDER_VERSION_MISMATCH = 412,
    // 413
    PAYLOAD_TOO_LARGE = 413,
    // 415
    UNSUPPORTED_MEDIA_TYPE = 415,
    // 422: business rules
    ORDER_CHECK_REAL_PAY_AMOUNT_FAIL = 422,
    PRODUCT_STOCK_NOT_ENOUGH = 422,
    USER_COUPON_IS_USED = 422,
    USER_COUPON_EXPIRED = 422,
    USER_COUPON_NOT_STARTED = 422,
    ORDER_PAY_AMOUNT_ERROR = 422,
    REFUND_AMOUNT_MISMATCH = 422,
    AFTER_SALE_QUANTITY_EXCEEDED = 422,
    IDEMPOTENCY_KEY_REUSED = 422,
    /// A computed amount does not fit in the money range.
    AMOUNT_OVERFLOW = 422,
    // 429
    ORDER_RATE_LIMITED = 429,
    // 500: a defect, never caused by input
    SYSTEM_ERROR = 500,
    // 503
    OVERLOADED = 503,
    NOT_READY = 503,
    STORAGE_UNAVAILABLE = 503,
}

/// How loud an error is in logs and alerts (API.md, "Operations").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertLevel {
    Low,
    Medium,
    High,
}

impl AlertLevel {
    /// The name used as a metric label.
    pub const fn name(self) -> &'static str {
        match self {
            AlertLevel::Low => "LOW",
            AlertLevel::Medium => "MEDIUM",
            AlertLevel::High => "HIGH",
        }
    }
}

impl ErrorCode {
    /// HIGH for codes containing `PAY`, starting `PRODUCT_STOCK_`, `STORAGE_`
    /// or being `SYSTEM_ERROR`; MEDIUM for other `ORDER_` and `RISK_` codes;
    /// LOW for the rest.
    pub fn alert_level(self) -> AlertLevel {
        let name = self.name();
        if name.contains("PAY")
            || name.starts_with("PRODUCT_STOCK_")
            || name.starts_with("STORAGE_")
            || name == "SYSTEM_ERROR"
        {
            AlertLevel::High
        } else if name.starts_with("ORDER_") || name.starts_with("RISK_") {
            AlertLevel::Medium
        } else {
            AlertLevel::Low
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A refused command or invalid input. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// Input that does not parse or breaks a bound.
    #[error("{field}: {reason}")]
    Invalid {
        code: ErrorCode,
        field: &'static str,
        reason: String,
    },
    /// A command that the order's current state does not allow.
    #[error("order {order_id} is {status}: cannot {action}")]
    OrderState {
        code: ErrorCode,
        order_id: String,
        status: OrderStatus,
        action: &'static str,
    },
    /// A command that the after-sale's current state does not allow.
    #[error("after-sale {after_sale_id} is {status}: cannot {action}")]
    AfterSaleState {
        after_sale_id: String,
        status: crate::codes::AfterSaleStatus,
        action: &'static str,
    },
    /// An id that names nothing this caller may see.
    #[error("{what} {id} not found")]
    NotFound {
        code: ErrorCode,
        what: &'static str,
        id: String,
    },
    /// A business rule refused the command.
    #[error("{message}")]
    Rule { code: ErrorCode, message: String },
    /// The family moved on since the version the caller read.
    #[error("order version is {current}, not {expected}")]
    VersionMismatch { expected: u64, current: u64 },
}

impl DomainError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            DomainError::Invalid { code, .. }
            | DomainError::OrderState { code, .. }
            | DomainError::NotFound { code, .. }
            | DomainError::Rule { code, .. } => *code,
            DomainError::AfterSaleState { .. } => ErrorCode::AFTER_SALE_STATUS_CHANGED,
            DomainError::VersionMismatch { .. } => ErrorCode::ORDER_VERSION_MISMATCH,
        }
    }

    /// A malformed or out-of-range input `field`.
    pub fn invalid(code: ErrorCode, field: &'static str, reason: impl Into<String>) -> Self {
        DomainError::Invalid {
            code,
            field,
            reason: reason.into(),
        }
    }

    /// A business rule refused the request.
    pub fn rule(code: ErrorCode, message: impl Into<String>) -> Self {
        DomainError::Rule {
            code,
            message: message.into(),
        }
    }

    /// `what` with id `id` does not exist.
    pub fn not_found(code: ErrorCode, what: &'static str, id: impl fmt::Display) -> Self {
        DomainError::NotFound {
            code,
            what,
            id: id.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_code_of_api_md_exists_with_its_status() {
        let expected = [
            ("ORDER_ID_IS_NULL", 400),
            ("BUSINESS_IDENTIFIER_ERROR", 400),
            ("ORDER_CHECK_REAL_PAY_AMOUNT_FAIL", 422),
            ("PRODUCT_SKU_NOT_FOUND", 404),
            ("PRODUCT_STOCK_NOT_ENOUGH", 422),
            ("USER_COUPON_NOT_EXIST", 404),
            ("USER_COUPON_IS_USED", 422),
            ("ORDER_NOT_FOUND", 404),
            ("ORDER_STATUS_CHANGED", 409),
            ("ORDER_CANNOT_CANCEL", 409),
            ("ORDER_CANNOT_REMOVE", 409),
            ("ORDER_NOT_ALLOW_TO_ADJUST_ADDRESS", 409),
            ("ORDER_PAY_AMOUNT_ERROR", 422),
            ("ORDER_PRE_PAY_EXPIRE", 409),
            ("AFTER_SALE_CANNOT_APPLY", 409),
            ("RISK_REJECTED", 403),
            ("IDEMPOTENCY_KEY_REUSED", 422),
            ("IDEMPOTENCY_KEY_LIMIT", 409),
            ("ORDER_CHANGE_LIMIT", 409),
            ("ORDER_VERSION_MISMATCH", 412),
            ("ORDER_EXISTED", 409),
            ("ORDER_NOT_ALLOW_TO_LACK", 409),
            ("AFTER_SALE_STATUS_CHANGED", 409),
            ("REFUND_AMOUNT_MISMATCH", 422),
            ("ORDER_RATE_LIMITED", 429),
            ("PAYLOAD_TOO_LARGE", 413),
            ("ORDER_ID_INVALID", 400),
            ("UNAUTHORIZED", 401),
            ("SIGNATURE_INVALID", 401),
            ("FORBIDDEN", 403),
            ("OVERLOADED", 503),
            ("NOT_READY", 503),
            ("STORAGE_UNAVAILABLE", 503),
        ];
        for (name, status) in expected {
            let code = ErrorCode::ALL.iter().find(|c| c.name() == name);
            let code = code.unwrap_or_else(|| panic!("missing code {name}"));
            assert_eq!(code.http_status(), status, "{name}");
        }
    }

    #[test]
    fn no_input_code_is_a_500() {
        let five_hundreds: Vec<_> = ErrorCode::ALL
            .iter()
            .filter(|c| c.http_status() == 500)
            .collect();
        assert_eq!(five_hundreds, [&ErrorCode::SYSTEM_ERROR]);
    }

    #[test]
    fn alert_levels_follow_api_md() {
        assert_eq!(
            ErrorCode::ORDER_PAY_AMOUNT_ERROR.alert_level(),
            AlertLevel::High
        );
        assert_eq!(
            ErrorCode::PRODUCT_STOCK_NOT_ENOUGH.alert_level(),
            AlertLevel::High
        );
        assert_eq!(
            ErrorCode::STORAGE_UNAVAILABLE.alert_level(),
            AlertLevel::High
        );
        assert_eq!(ErrorCode::SYSTEM_ERROR.alert_level(), AlertLevel::High);
        assert_eq!(
            ErrorCode::ORDER_CHECK_REAL_PAY_AMOUNT_FAIL.alert_level(),
            AlertLevel::High
        );
        assert_eq!(ErrorCode::ORDER_NOT_FOUND.alert_level(), AlertLevel::Medium);
        assert_eq!(ErrorCode::RISK_REJECTED.alert_level(), AlertLevel::Medium);
        assert_eq!(ErrorCode::FORBIDDEN.alert_level(), AlertLevel::Low);
        assert_eq!(
            ErrorCode::PRODUCT_SKU_NOT_FOUND.alert_level(),
            AlertLevel::Low
        );
    }

    #[test]
    fn codes_are_unique() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }
}
