//! Every bound the domain enforces, named once. The README lists them with
//! their values; input beyond a bound is a typed error, never a truncation.

/// Longest user id, SKU code, coupon id, seller or product id (characters).
pub const ID_LEN_MAX: usize = 64;
/// Longest provider `trade_no` / `out_trade_no` (characters).
pub const TRADE_NO_LEN_MAX: usize = 64;
/// Longest `Idempotency-Key` (visible ASCII characters).
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 64;
/// Longest `X-Request-Id` kept with an event (visible ASCII characters).
pub const REQUEST_ID_LEN_MAX: usize = 128;
/// Order lines in one order.
pub const ORDER_LINES_MAX: usize = 100;
/// Units of one SKU in one order line.
pub const LINE_QUANTITY_MAX: u32 = 9_999;
/// Largest single money input (minor units): 10 billion in major units.
/// With [`ORDER_LINES_MAX`] and [`LINE_QUANTITY_MAX`] an order's origin
/// amount stays below 10^18, inside `i64`.
pub const MONEY_INPUT_MAX: i64 = 1_000_000_000_000;
/// Largest stock of one SKU (units).
pub const STOCK_MAX: i64 = 1_000_000_000;
/// Receiver name, province, city, area, street (characters).
pub const ADDRESS_FIELD_LEN_MAX: usize = 64;
/// Detail address (characters).
pub const ADDRESS_DETAIL_LEN_MAX: usize = 256;
/// Receiver phone (characters: digits, `+`, `-`, space).
pub const PHONE_LEN_MAX: usize = 20;
/// Product name, product unit, product image URL (characters).
pub const PRODUCT_TEXT_LEN_MAX: usize = 256;
/// Shopper's remark on an order (characters).
pub const USER_REMARK_LEN_MAX: usize = 500;
/// Reason of an after-sale, a cancel, a review remark (characters).
pub const REASON_LEN_MAX: usize = 500;
/// Images on one after-sale application.
pub const AFTER_SALE_IMAGES_MAX: usize = 9;
/// A note on an order (characters, at least 1).
pub const NOTE_LEN_MAX: usize = 2_000;
/// Logistics code and operator of a fulfillment step (characters).
pub const LOGISTICS_TEXT_LEN_MAX: usize = 128;
/// Idempotency keys one order family keeps (API.md: 64); a new key beyond
/// it answers `IDEMPOTENCY_KEY_LIMIT`.
pub const IDEMPOTENCY_KEYS_PER_FAMILY_MAX: usize = 64;
/// After-sales one order family may hold, system refunds included; the id
/// format gives the after-sale number three digits.
pub const AFTER_SALES_PER_FAMILY_MAX: usize = 999;
/// Of those, the shopper's own applications, revoked and rejected ones
/// included (900): the other 99 numbers stay for system refunds (cancel,
/// refusal, lack, a payment that comes twice), so whatever a shopper
/// applied for and revoked, a family's system refunds have its last 99.
pub const SHOPPER_AFTER_SALES_PER_FAMILY_MAX: usize = 900;
/// Edits — address changes, prepays and notes — one family takes; one more
/// answers `ORDER_CHANGE_LIMIT`. Each edit is an event kept with the
/// family for its life, and none moves the order forward, so without a
/// bound one caller could grow a family's row and memory without end.
/// Changes that move the order (payment, cancel, deadline, fulfillment,
/// after-sales, refunds) are bounded by the state machine and the
/// after-sale limits, do not count, and always go through.
pub const EDITS_PER_FAMILY_MAX: usize = 1_000;
/// Orders in one remove request.
pub const REMOVE_BATCH_MAX: usize = 100;
/// Page size of listings: default and maximum.
pub const PAGE_SIZE_DEFAULT: usize = 20;
/// Largest page of a listing.
pub const PAGE_SIZE_MAX: usize = 100;
