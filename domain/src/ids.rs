//! Typed identifiers, each parsed once from raw input.
//!
//! # Order id format
//!
//! Order, sub-order and after-sale ids are 32 ASCII characters:
//!
//! ```text
//! 251125043627 07 000042 1 000 00001234
//! ^ time        ^ ^ seq  ^ ^   ^ user suffix
//! |             | node   | extension
//! yyMMddHHmmss  |        kind
//! ```
//!
//! * `yyMMddHHmmss`: the UTC second the id was issued (years 2000-2099), so
//!   ids sort by time as plain bytes;
//! * node: 2 digits, the issuing node (00-99);
//! * seq: 6 digits, the node's sequence within that second;
//! * kind: `1` an order (master or single), `2` a sub-order, `3` an after-sale;
//! * extension: 3 digits: `000` for an order, the product type code for a
//!   sub-order, the after-sale's number within its family (001-999);
//! * user suffix: the last 8 characters of the user id, left-padded with `0`.
//!
//! Time, node and sequence make an id unique; the user suffix routes it: a
//! family, its sub-orders, its after-sales and its user's listing all hash
//! to one shard. A sub-order or after-sale id names its family directly (the
//! same time, node and sequence with kind `1`), so no index is needed to find
//! the family of either.

use crate::codes::ProductType;
use crate::error::{DomainError, ErrorCode};
use crate::limits::{IDEMPOTENCY_KEY_LEN_MAX, ID_LEN_MAX, REQUEST_ID_LEN_MAX, TRADE_NO_LEN_MAX};
use crate::money::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Declares a bounded string identifier made of `[A-Za-z0-9_.-]`.
macro_rules! plain_id {
    ($(#[$doc:meta])* $name:ident, $code:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses 1..=[`ID_LEN_MAX`] characters of `[A-Za-z0-9_.-]`.
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                check_plain(raw, ErrorCode::$code, $field).map(|()| $name(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                $name::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn check_plain(raw: &str, code: ErrorCode, field: &'static str) -> Result<(), DomainError> {
    if raw.is_empty() || raw.len() > ID_LEN_MAX {
        return Err(DomainError::invalid(
            code,
            field,
            format!("must be 1..={ID_LEN_MAX} characters"),
        ));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(DomainError::invalid(
            code,
            field,
            "may hold only A-Z, a-z, 0-9, '_', '-', '.'",
        ));
    }
    Ok(())
}

plain_id!(
    /// A shopper's id (the token's `sub`).
    UserId, USER_ID_INVALID, "user_id"
);
plain_id!(
    /// A stock keeping unit's code.
    SkuCode, SKU_CODE_INVALID, "sku_code"
);
plain_id!(
    /// A coupon issued to one user.
    CouponId, COUPON_ID_INVALID, "coupon_id"
);
plain_id!(
    /// A seller.
    SellerId, INVALID_REQUEST, "seller_id"
);
plain_id!(
    /// A product (several SKUs may share one).
    ProductId, INVALID_REQUEST, "product_id"
);

/// Length of the user suffix carried by order and after-sale ids.
pub const USER_SUFFIX_LEN: usize = 8;

impl UserId {
    /// The routing suffix: the last 8 characters, left-padded with `0`.
    pub fn suffix(&self) -> [u8; USER_SUFFIX_LEN] {
        let bytes = self.0.as_bytes();
        let mut out = [b'0'; USER_SUFFIX_LEN];
        let take = bytes.len().min(USER_SUFFIX_LEN);
        out[USER_SUFFIX_LEN - take..].copy_from_slice(&bytes[bytes.len() - take..]);
        out
    }
}

/// Declares a bounded identifier of visible ASCII characters.
macro_rules! visible_id {
    ($(#[$doc:meta])* $name:ident, $max:expr, $code:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses 1..=max visible ASCII characters (`!`..=`~`).
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                if raw.is_empty() || raw.len() > $max || !raw.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(DomainError::invalid(
                        ErrorCode::$code,
                        $field,
                        format!("must be 1..={} visible ASCII characters", $max),
                    ));
                }
                Ok($name(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                $name::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

visible_id!(
    /// The payment provider's id of a payment; decides repeats of a callback.
    TradeNo, TRADE_NO_LEN_MAX, TRADE_NO_INVALID, "trade_no"
);
visible_id!(
    /// The merchant-side payment number handed to the provider at prepay.
    OutTradeNo, TRADE_NO_LEN_MAX, TRADE_NO_INVALID, "out_trade_no"
);
visible_id!(
    /// The `Idempotency-Key` of a write.
    IdempotencyKey, IDEMPOTENCY_KEY_LEN_MAX, IDEMPOTENCY_KEY_INVALID, "Idempotency-Key"
);
visible_id!(
    /// The `X-Request-Id` of the request that caused a change.
    RequestId, REQUEST_ID_LEN_MAX, INVALID_REQUEST, "X-Request-Id"
);

/// Length of every order, sub-order and after-sale id.
pub const ORDER_ID_LEN: usize = 32;
const TIME_END: usize = 12;
const NODE_END: usize = 14;
const SEQ_END: usize = 20;
const KIND_AT: usize = 20;
const EXT_END: usize = 24;

const KIND_ORDER: u8 = b'1';
const KIND_SUB_ORDER: u8 = b'2';
const KIND_AFTER_SALE: u8 = b'3';

/// Largest node number an id can carry.
pub const NODE_MAX: u8 = 99;
/// Largest per-second sequence an id can carry.
pub const SEQ_MAX: u32 = 999_999;

/// The raw 32 bytes shared by order and after-sale ids.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct RawId([u8; ORDER_ID_LEN]);

impl RawId {
    fn parse(raw: &str, code: ErrorCode, field: &'static str) -> Result<RawId, DomainError> {
        let bytes = raw.as_bytes();
        let bad = |why: &str| DomainError::invalid(code, field, why.to_owned());
        let bytes: [u8; ORDER_ID_LEN] =
            bytes.try_into().map_err(|_| bad("must be 32 characters"))?;
        if !bytes[..EXT_END].iter().all(u8::is_ascii_digit) {
            return Err(bad("the first 24 characters must be digits"));
        }
        let suffix = &bytes[EXT_END..];
        if !suffix
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(bad("bad user suffix"));
        }
        let id = RawId(bytes);
        if id.issued_at().is_none() {
            return Err(bad("bad time part"));
        }
        Ok(id)
    }

    fn as_str(&self) -> &str {
        // Only ASCII bytes ever get in (checked by `parse` and built from
        // ASCII digits and a checked user suffix).
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    fn digits(&self, from: usize, to: usize) -> u32 {
        self.0[from..to]
            .iter()
            .fold(0, |n, d| n * 10 + u32::from(d - b'0'))
    }

    fn kind(&self) -> u8 {
        self.0[KIND_AT]
    }

    fn ext(&self) -> u32 {
        self.digits(KIND_AT + 1, EXT_END)
    }

    fn with_kind_ext(&self, kind: u8, ext: u32) -> RawId {
        let mut out = *self;
        out.0[KIND_AT] = kind;
        write_digits(&mut out.0[KIND_AT + 1..EXT_END], ext);
        out
    }

    fn issued_at(&self) -> Option<Timestamp> {
        let part = |i: usize| self.digits(i, i + 2);
        let date =
            chrono::NaiveDate::from_ymd_opt(2000 + i32::try_from(part(0)).ok()?, part(2), part(4))?;
        let time = date.and_hms_opt(part(6), part(8), part(10))?;
        Some(Timestamp::from_millis(time.and_utc().timestamp_millis()))
    }

    fn user_suffix(&self) -> &[u8] {
        &self.0[EXT_END..]
    }
}

fn write_digits(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + u8::try_from(value % 10).unwrap_or(0);
        value /= 10;
    }
}

macro_rules! raw_id_impls {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The bytes, fixed-width and time-ordered: a storage key.
            pub fn as_bytes(&self) -> &[u8; ORDER_ID_LEN] {
                &self.0 .0
            }

            /// The second the id (or its family's id) was issued.
            pub fn issued_at(&self) -> Timestamp {
                self.0.issued_at().unwrap_or_default()
            }

            /// The user routing suffix.
            pub fn user_suffix(&self) -> &[u8] {
                self.0.user_suffix()
            }

            /// Whether the id carries this user's suffix.
            pub fn belongs_to(&self, user: &UserId) -> bool {
                self.user_suffix() == user.suffix()
            }

            /// The shard (of `shards`) that owns this id's family: a hash of
            /// the user suffix, so a user's orders share one shard.
            pub fn shard(&self, shards: usize) -> usize {
                shard_of_suffix(self.user_suffix(), shards)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The shard of a user suffix: FNV-1a over its bytes, modulo `shards`.
pub fn shard_of_suffix(suffix: &[u8], shards: usize) -> usize {
    let hash = suffix.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    usize::try_from(hash % u64::try_from(shards.max(1)).unwrap_or(1)).unwrap_or(0)
}

/// The shard of a user's orders.
pub fn shard_of_user(user: &UserId, shards: usize) -> usize {
    shard_of_suffix(&user.suffix(), shards)
}

/// An order id: a master or single order (kind `1`) or a sub-order (kind `2`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderId(RawId);

raw_id_impls!(OrderId);

impl OrderId {
    /// Parses an order or sub-order id of ordercore's format.
    pub fn parse(raw: &str) -> Result<OrderId, DomainError> {
        if raw.is_empty() {
            return Err(DomainError::invalid(
                ErrorCode::ORDER_ID_IS_NULL,
                "order_id",
                "is empty",
            ));
        }
        let id = RawId::parse(raw, ErrorCode::ORDER_ID_INVALID, "order_id")?;
        let valid = match id.kind() {
            KIND_ORDER => id.ext() == 0,
            KIND_SUB_ORDER => ProductType::from_code(i64::from(id.ext())).is_some(),
            _ => false,
        };
        if !valid {
            return Err(DomainError::invalid(
                ErrorCode::ORDER_ID_INVALID,
                "order_id",
                "not an order or sub-order id",
            ));
        }
        Ok(OrderId(id))
    }

    /// Builds the id of an order issued at `at` by `node` with sequence `seq`
    /// for `user`. Pure: the same inputs give the same id.
    pub fn generate(
        at: Timestamp,
        node: u8,
        seq: u32,
        user: &UserId,
    ) -> Result<OrderId, DomainError> {
        let bad = |why: &str| {
            DomainError::invalid(ErrorCode::ORDER_ID_INVALID, "order_id", why.to_owned())
        };
        if node > NODE_MAX || seq > SEQ_MAX {
            return Err(bad("node or sequence out of range"));
        }
        let t = at.to_datetime().ok_or_else(|| bad("time out of range"))?;
        let stamp = t.format("%y%m%d%H%M%S").to_string();
        if !(2000..=2099).contains(&chrono::Datelike::year(&t)) || stamp.len() != TIME_END {
            return Err(bad("time out of range (years 2000-2099)"));
        }
        let mut raw = [b'0'; ORDER_ID_LEN];
        raw[..TIME_END].copy_from_slice(stamp.as_bytes());
        write_digits(&mut raw[TIME_END..NODE_END], u32::from(node));
        write_digits(&mut raw[NODE_END..SEQ_END], seq);
        raw[KIND_AT] = KIND_ORDER;
        raw[EXT_END..].copy_from_slice(&user.suffix());
        Ok(OrderId(RawId(raw)))
    }

    /// Whether this is a sub-order's id.
    pub fn is_sub_order(&self) -> bool {
        self.0.kind() == KIND_SUB_ORDER
    }

    /// The id of the family's master (or single) order.
    pub fn family_id(&self) -> OrderId {
        OrderId(self.0.with_kind_ext(KIND_ORDER, 0))
    }

    /// The id of this family's sub-order of `product_type`.
    pub fn sub_order_id(&self, product_type: ProductType) -> OrderId {
        OrderId(
            self.0
                .with_kind_ext(KIND_SUB_ORDER, u32::from(product_type.code())),
        )
    }

    /// The id of this family's after-sale number `number` (1-based).
    pub fn after_sale_id(&self, number: usize) -> Result<AfterSaleId, DomainError> {
        let n = u32::try_from(number)
            .ok()
            .filter(|n| (1..=999).contains(n))
            .ok_or_else(|| {
                DomainError::rule(
                    ErrorCode::AFTER_SALE_LIMIT,
                    "the order holds its maximum of after-sales",
                )
            })?;
        Ok(AfterSaleId(self.0.with_kind_ext(KIND_AFTER_SALE, n)))
    }
}

/// An after-sale id (kind `3`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AfterSaleId(RawId);

raw_id_impls!(AfterSaleId);

impl AfterSaleId {
    pub fn parse(raw: &str) -> Result<AfterSaleId, DomainError> {
        let id = RawId::parse(raw, ErrorCode::AFTER_SALE_ID_INVALID, "after_sale_id")?;
        if id.kind() != KIND_AFTER_SALE || id.ext() == 0 {
            return Err(DomainError::invalid(
                ErrorCode::AFTER_SALE_ID_INVALID,
                "after_sale_id",
                "not an after-sale id",
            ));
        }
        Ok(AfterSaleId(id))
    }

    /// The id of the order family the after-sale belongs to.
    pub fn family_id(&self) -> OrderId {
        OrderId(self.0.with_kind_ext(KIND_ORDER, 0))
    }
}

/// Hands out (second, sequence) pairs for order ids on one node: strictly
/// increasing, so ids stay unique and time-ordered even if the clock stalls
/// or steps back; when a second's [`SEQ_MAX`] sequences are used up it
/// borrows the next second. Pure: the caller passes the time.
#[derive(Debug, Clone, Default)]
pub struct IdSequencer {
    last_secs: i64,
    next_seq: u32,
}

impl IdSequencer {
    /// The next (time, sequence) for an id issued at `now`.
    pub fn next(&mut self, now: Timestamp) -> (Timestamp, u32) {
        if now.secs() > self.last_secs {
            self.last_secs = now.secs();
            self.next_seq = 0;
        }
        if self.next_seq > SEQ_MAX {
            self.last_secs += 1;
            self.next_seq = 0;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        (Timestamp::from_millis(self.last_secs * 1000), seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(raw: &str) -> UserId {
        UserId::parse(raw).unwrap()
    }

    fn at(raw: &str) -> Timestamp {
        Timestamp::parse_rfc3339(raw, "t").unwrap()
    }

    #[test]
    fn an_order_id_has_the_documented_layout() {
        let id = OrderId::generate(at("2025-11-25T04:36:27Z"), 7, 42, &user("u-1234")).unwrap();
        assert_eq!(id.as_str(), "25112504362707000042100000u-1234");
        assert_eq!(id.as_str().len(), ORDER_ID_LEN);
        assert_eq!(OrderId::parse(id.as_str()).unwrap(), id);
        assert_eq!(id.issued_at(), at("2025-11-25T04:36:27Z"));
        assert!(id.belongs_to(&user("u-1234")));
        assert!(id.belongs_to(&user("zz00u-1234")) && !id.belongs_to(&user("u-1235")));
        assert!(!id.is_sub_order());
    }

    #[test]
    fn sub_order_and_after_sale_ids_name_their_family() {
        let id = OrderId::generate(at("2026-01-02T03:04:05Z"), 1, 1, &user("42")).unwrap();
        let sub = id.sub_order_id(ProductType::ADVANCE_SALE);
        assert!(sub.is_sub_order());
        assert_eq!(sub.family_id(), id);
        assert_eq!(OrderId::parse(sub.as_str()).unwrap(), sub);
        let after_sale = id.after_sale_id(12).unwrap();
        assert_eq!(AfterSaleId::parse(after_sale.as_str()).unwrap(), after_sale);
        assert_eq!(after_sale.family_id(), id);
        assert_eq!(after_sale.user_suffix(), id.user_suffix());
        assert_eq!(after_sale.shard(4), id.shard(4));
        assert_eq!(sub.shard(4), shard_of_user(&user("42"), 4));
        assert!(id.after_sale_id(0).is_err() && id.after_sale_id(1000).is_err());
        assert!(OrderId::parse(after_sale.as_str()).is_err());
        assert!(AfterSaleId::parse(id.as_str()).is_err());
    }

    #[test]
    fn malformed_ids_are_refused_with_a_code() {
        for raw in [
            "",
            "1",
            "2511250436270700004210000000000012",
            "25132504362707000042100000u-1234",
            "25112504362707000042100100u-1234",
            "25112504362707000042400000u-1234",
            "25112504362707000042200300u-1234",
            "2511250436270700004210000u/23456",
            "251125043627070000421000000ü123",
            "2511250436270700004x100000u-1234",
        ] {
            let err = OrderId::parse(raw).unwrap_err();
            assert!(
                matches!(
                    err.code(),
                    ErrorCode::ORDER_ID_INVALID | ErrorCode::ORDER_ID_IS_NULL
                ),
                "{raw}: {err}"
            );
        }
    }

    #[test]
    fn ids_sort_by_time() {
        let u = user("7");
        let a = OrderId::generate(at("2026-01-01T00:00:00Z"), 99, 999_999, &u).unwrap();
        let b = OrderId::generate(at("2026-01-01T00:00:01Z"), 0, 0, &u).unwrap();
        assert!(a < b && a.as_bytes() < b.as_bytes());
        assert!(OrderId::generate(at("1999-12-31T23:59:59Z"), 0, 0, &u).is_err());
        assert!(OrderId::generate(at("2100-01-01T00:00:00Z"), 0, 0, &u).is_err());
        assert!(OrderId::generate(at("2026-01-01T00:00:00Z"), 100, 0, &u).is_err());
    }

    #[test]
    fn the_sequencer_never_repeats_even_when_the_clock_stalls_or_steps_back() {
        let mut seq = IdSequencer::default();
        let t = at("2026-01-01T00:00:00Z");
        let mut last = None;
        for i in 0..2_500_000_i64 {
            let now = if i == 1_000 { t.plus_millis(-5_000) } else { t };
            let next = seq.next(now);
            if let Some(prev) = last {
                assert!(next > prev);
            }
            last = Some(next);
        }
        // 2.5M ids in one stalled second borrowed the next two seconds.
        assert_eq!(last.unwrap().0, t.plus_millis(2_000));
    }

    #[test]
    fn user_suffix_is_the_last_eight_characters_padded() {
        assert_eq!(&user("abc").suffix(), b"00000abc");
        assert_eq!(&user("user-123456789").suffix(), b"23456789");
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("has space").is_err());
        assert!(UserId::parse(&"x".repeat(65)).is_err());
        assert_eq!(
            UserId::parse("").unwrap_err().code(),
            ErrorCode::USER_ID_INVALID
        );
        assert!(IdempotencyKey::parse("key with space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(64)).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(65)).is_err());
    }
}
