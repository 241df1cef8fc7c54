//! The JSON of every route in API.md: request bodies and query strings, and
//! the responses built from domain values.
//!
//! Requests are parsed in two steps. serde reads the JSON into the types of
//! [`request`] and [`query`], which hold raw strings and integers and refuse
//! unknown fields, so a malformed body or a wrong JSON type is a 400
//! `INVALID_REQUEST` naming the problem. Each request then converts itself
//! into the domain's types with the specific code of the first bad value
//! (`ORDER_ID_INVALID`, `SKU_CODE_INVALID`, `PAY_TYPE_ERROR`, ...), using the
//! domain's own parsers, so the edge and the core agree on every bound.
//!
//! Responses ([`view`]) are built from domain values (`&OrderFamily`,
//! `&AfterSale`, `&Sku`, ...). Enumerations are their integer codes (the
//! domain's code enums serialize that way), money is integer minor units and
//! times are RFC 3339 strings. Every type derives `utoipa::ToSchema` (or
//! `IntoParams`) so `/openapi.json` can be generated from them; domain
//! values inside are described with `value_type` overrides.

pub mod query;
pub mod request;
pub mod view;

#[cfg(test)]
mod tests;

pub use query::*;
pub use request::*;
pub use view::*;

use crate::error::ApiError;
use ordercore_domain::{AfterSaleId, CouponId, ErrorCode, OrderId, SkuCode, UserId};

/// An order id from a path or a body (`ORDER_ID_IS_NULL` when empty,
/// `ORDER_ID_INVALID` when not of ordercore's format).
pub fn parse_order_id(raw: &str) -> Result<OrderId, ApiError> {
    Ok(OrderId::parse(raw)?)
}

/// An after-sale id (`AFTER_SALE_ID_INVALID`).
pub fn parse_after_sale_id(raw: &str) -> Result<AfterSaleId, ApiError> {
    Ok(AfterSaleId::parse(raw)?)
}

/// A user id (`USER_ID_INVALID`).
pub fn parse_user_id(raw: &str) -> Result<UserId, ApiError> {
    Ok(UserId::parse(raw)?)
}

/// A SKU code (`SKU_CODE_INVALID`).
pub fn parse_sku_code(raw: &str) -> Result<SkuCode, ApiError> {
    Ok(SkuCode::parse(raw)?)
}

/// A coupon id (`COUPON_ID_INVALID`).
pub fn parse_coupon_id(raw: &str) -> Result<CouponId, ApiError> {
    Ok(CouponId::parse(raw)?)
}

/// The value of an integer code, or `code` naming the field.
fn code_of<T>(
    raw: i64,
    from_code: fn(i64) -> Option<T>,
    code: ErrorCode,
    field: &str,
) -> Result<T, ApiError> {
    from_code(raw).ok_or_else(|| ApiError::new(code, format!("{field}: {raw} is not a valid code")))
}

/// FNV-1a, 64 bits: a hash that is the same on every platform, build and
/// Rust release. The create fingerprint is stored in the journal and
/// compared after restarts, so a per-process hasher (std's `RandomState`)
/// or one whose algorithm may change (`DefaultHasher`) would not do.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
