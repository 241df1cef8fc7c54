//! Money in integer minor units (fen / cents), quantities, and time.

use crate::error::{DomainError, ErrorCode};
use crate::limits::{LINE_QUANTITY_MAX, MONEY_INPUT_MAX};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An amount of money in minor units. Never a float; every operation is
/// checked, so an overflow is an error instead of a wrong amount.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    /// An amount taken from input: 0..=[`MONEY_INPUT_MAX`].
    pub fn parse(minor: i64, field: &'static str) -> Result<Money, DomainError> {
        if !(0..=MONEY_INPUT_MAX).contains(&minor) {
            return Err(DomainError::invalid(
                ErrorCode::AMOUNT_INVALID,
                field,
                format!("must be 0..={MONEY_INPUT_MAX} minor units, got {minor}"),
            ));
        }
        Ok(Money(minor))
    }

    /// An amount the core computed itself (already inside the money range).
    pub const fn from_minor(minor: i64) -> Money {
        Money(minor)
    }

    /// The amount in minor units.
    pub const fn minor(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Money) -> Result<Money, DomainError> {
        self.0.checked_add(other.0).map(Money).ok_or_else(overflow)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, DomainError> {
        self.0.checked_sub(other.0).map(Money).ok_or_else(overflow)
    }

    /// The amount for `quantity` units at this unit price.
    pub fn checked_mul(self, quantity: u32) -> Result<Money, DomainError> {
        self.0
            .checked_mul(i64::from(quantity))
            .map(Money)
            .ok_or_else(overflow)
    }

    /// `floor(self × numerator / denominator)` computed in 128 bits, so the
    /// product cannot overflow; `denominator` must be positive.
    pub fn mul_div_floor(self, numerator: i64, denominator: i64) -> Result<Money, DomainError> {
        if denominator <= 0 {
            return Err(overflow());
        }
        let value = i128::from(self.0) * i128::from(numerator) / i128::from(denominator);
        i64::try_from(value).map(Money).map_err(|_| overflow())
    }

    /// Sum of amounts, checked.
    pub fn sum<I: IntoIterator<Item = Money>>(items: I) -> Result<Money, DomainError> {
        items.into_iter().try_fold(Money::ZERO, Money::checked_add)
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

fn overflow() -> DomainError {
    DomainError::rule(ErrorCode::AMOUNT_OVERFLOW, "amount out of range")
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Units of one SKU: 1..=[`LINE_QUANTITY_MAX`] when parsed from input.
pub type Quantity = u32;

/// Checks a quantity from input.
pub fn parse_quantity(raw: i64, field: &'static str) -> Result<Quantity, DomainError> {
    if raw < 1 || raw > i64::from(LINE_QUANTITY_MAX) {
        return Err(DomainError::invalid(
            ErrorCode::ORDER_ITEM_INVALID,
            field,
            format!("must be 1..={LINE_QUANTITY_MAX}, got {raw}"),
        ));
    }
    Ok(Quantity::try_from(raw).unwrap_or(LINE_QUANTITY_MAX))
}

/// A point in time: milliseconds since the Unix epoch, UTC. In JSON it is an
/// RFC 3339 string; in binary encodings an `i64`. The domain never reads a
/// clock: every `now` is a parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down).
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This time plus `ms` milliseconds, saturating.
    pub const fn plus_millis(self, ms: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Parses an RFC 3339 time (any offset; kept as UTC).
    pub fn parse_rfc3339(raw: &str, field: &'static str) -> Result<Timestamp, DomainError> {
        chrono::DateTime::parse_from_rfc3339(raw)
            .map(|t| Timestamp(t.timestamp_millis()))
            .map_err(|e| {
                DomainError::invalid(ErrorCode::TIME_INVALID, field, format!("not RFC 3339: {e}"))
            })
    }

    /// The RFC 3339 form, UTC, with milliseconds.
    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp_millis(self.0) {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => self.0.to_string(),
        }
    }

    /// The UTC calendar time, if representable.
    pub fn to_datetime(self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp_millis(self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_rfc3339())
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let raw = String::deserialize(deserializer)?;
            Timestamp::parse_rfc3339(&raw, "time").map_err(serde::de::Error::custom)
        } else {
            i64::deserialize(deserializer).map(Timestamp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_checked() {
        assert!(Money::parse(-1, "x").is_err());
        assert!(Money::parse(MONEY_INPUT_MAX + 1, "x").is_err());
        assert_eq!(Money::parse(0, "x").unwrap(), Money::ZERO);
        assert!(Money::from_minor(i64::MAX)
            .checked_add(Money::from_minor(1))
            .is_err());
        assert!(Money::from_minor(i64::MAX).checked_mul(2).is_err());
        assert_eq!(
            Money::from_minor(10).mul_div_floor(1, 3).unwrap(),
            Money::from_minor(3)
        );
        assert_eq!(
            Money::from_minor(i64::MAX)
                .mul_div_floor(9_999, 10_000)
                .unwrap(),
            Money::from_minor(i64::MAX / 10_000 * 9_999 + (i64::MAX % 10_000) * 9_999 / 10_000)
        );
        assert!(Money::from_minor(1).mul_div_floor(1, 0).is_err());
    }

    #[test]
    fn quantities_are_bounded() {
        assert!(parse_quantity(0, "q").is_err());
        assert!(parse_quantity(-3, "q").is_err());
        assert!(parse_quantity(i64::from(LINE_QUANTITY_MAX) + 1, "q").is_err());
        assert_eq!(parse_quantity(7, "q").unwrap(), 7);
    }

    #[test]
    fn timestamps_are_rfc3339_in_json_and_integers_in_binary_forms() {
        let t = Timestamp::parse_rfc3339("2026-11-25T12:00:00.250+08:00", "t").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-25T04:00:00.250Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-11-25T04:00:00.250Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
        assert!(Timestamp::parse_rfc3339("2026-13-01T00:00:00Z", "t").is_err());
    }
}
