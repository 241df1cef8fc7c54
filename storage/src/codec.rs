//! Stored bytes: a format version byte, then bincode 2 (serde) of the value
//! ([`FORMAT_VERSION`]) or, for a large row, an LZ4 block of that body
//! ([`PACKED_FORMAT`]). Keys that must sort are fixed-width big-endian.
//! Decoding never panics: a corrupt or unknown-version record is a
//! `StorageError::Corrupt`.

use crate::error::StorageError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The format version of every record this build writes.
pub const FORMAT_VERSION: u8 = 1;

/// Largest record the decoder accepts; a length prefix beyond it in a
/// corrupt record is refused instead of allocated.
pub const RECORD_BYTES_MAX: usize = 256 * 1024 * 1024;

/// The format byte of a packed row: `[PACKED_FORMAT] ++ u32 LE length of
/// the bincode body ++ LZ4 block of the body`. A family row is written
/// packed: sled 0.34 writes each insert to its log and the whole leaf, every
/// value in it, again after ten changes to it and at each split (every ~8
/// appends), so its cost grows with the bytes of a row — a paid order's row
/// of ~1,290 bytes packs into ~450 (`--bench core`, README "Storage"). LZ4
/// packs such a row in ~1.3 µs and unpacks it in ~0.4 µs. Byte 2 is the
/// catalog rows' stamped format.
pub const PACKED_FORMAT: u8 = 3;

/// Smallest body [`encode_packed`] tries to pack: below it the row is small
/// enough that sled's copies cost less than LZ4 would.
pub const PACK_BYTES_MIN: usize = 256;

/// The largest expansion an LZ4 block can encode (a run of one byte packs
/// at most ~255:1); a packed row claiming more is corrupt, refused before
/// anything is allocated for it.
const PACK_RATIO_MAX: usize = 256;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<RECORD_BYTES_MAX>()
}

/// Appends the encoding of `value` (no version byte) to `out`.
pub fn encode_body_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), StorageError> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map(|_| ())
        .map_err(|e| StorageError::corrupt("record", format!("cannot encode: {e}")))
}

/// A versioned record: `[FORMAT_VERSION] ++ bincode(value)`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(256);
    out.push(FORMAT_VERSION);
    encode_body_into(value, &mut out)?;
    Ok(out)
}

/// A row: [`PACKED_FORMAT`] when its body is at least [`PACK_BYTES_MIN`]
/// bytes and packing makes it smaller, else the plain [`encode`] form.
pub fn encode_packed<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    let mut plain = Vec::with_capacity(1024);
    plain.push(FORMAT_VERSION);
    encode_body_into(value, &mut plain)?;
    let body = &plain[1..];
    let Ok(len) = u32::try_from(body.len()) else {
        return Ok(plain);
    };
    if body.len() < PACK_BYTES_MIN {
        return Ok(plain);
    }
    let header = 1 + 4;
    let mut packed = vec![0; header + lz4_flex::block::get_maximum_output_size(body.len())];
    packed[0] = PACKED_FORMAT;
    packed[1..header].copy_from_slice(&len.to_le_bytes());
    match lz4_flex::block::compress_into(body, &mut packed[header..]) {
        Ok(n) if header + n < plain.len() => {
            packed.truncate(header + n);
            Ok(packed)
        }
        // Incompressible, or (never with a buffer of the maximum size) no room.
        _ => Ok(plain),
    }
}

/// Decodes a bincode body (no version byte); all bytes must be used.
pub fn decode_body<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, StorageError> {
    let (value, used) = bincode::serde::decode_from_slice::<T, _>(bytes, config())
        .map_err(|e| StorageError::corrupt(what, e))?;
    if used != bytes.len() {
        return Err(StorageError::corrupt(
            what,
            format!("{} trailing bytes", bytes.len() - used),
        ));
    }
    Ok(value)
}

/// Decodes a versioned record.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, StorageError> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, body)) => decode_body(body, what),
        Some((&PACKED_FORMAT, packed)) => decode_body(&unpack(packed, what)?, what),
        Some((version, _)) => Err(StorageError::corrupt(
            what,
            format!("unknown format version {version}"),
        )),
        None => Err(StorageError::corrupt(what, "empty record")),
    }
}

/// The bincode body of a packed row (after its format byte).
fn unpack(packed: &[u8], what: &'static str) -> Result<Vec<u8>, StorageError> {
    let (len, block) = match packed.split_first_chunk::<4>() {
        Some((len, block)) => (u32::from_le_bytes(*len) as usize, block),
        None => return Err(StorageError::corrupt(what, "packed row without length")),
    };
    if len > RECORD_BYTES_MAX || len > block.len().saturating_mul(PACK_RATIO_MAX) {
        return Err(StorageError::corrupt(
            what,
            format!("packed row claims {len} bytes from {}", block.len()),
        ));
    }
    let body = lz4_flex::block::decompress(block, len)
        .map_err(|e| StorageError::corrupt(what, format!("cannot unpack: {e}")))?;
    if body.len() != len {
        return Err(StorageError::corrupt(
            what,
            format!("packed row unpacks to {} bytes, not {len}", body.len()),
        ));
    }
    Ok(body)
}

/// Reads a big-endian `u64` at `at`, if the bytes are there.
pub fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// Reads a big-endian `u32` at `at`, if the bytes are there.
pub fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordercore_domain::testkit::Shop;
    use ordercore_domain::OrderFamily;

    /// The stored encoding numbers an enum's variants by position, and
    /// journals and family rows hold events of earlier builds: a variant
    /// keeps its number for good (new ones go last).
    #[test]
    fn event_variants_keep_their_stored_numbers() {
        use ordercore_domain::{EventBody, Money, OrderId, Timestamp};
        let order = OrderId::parse("26120704362707000042100000u-1234").unwrap();
        let after_sale_id = order.after_sale_id(1).unwrap();
        let refund_amount = Money::from_minor(2_714);
        let refunded_at = Timestamp::from_millis(1_765_000_000_000);
        for (body, number) in [
            (EventBody::OrderRemoved { order_id: order }, 6),
            (
                EventBody::RefundCompleted {
                    after_sale_id,
                    refund_amount,
                    refunded_at,
                },
                16,
            ),
            (
                EventBody::RefundFailed {
                    after_sale_id,
                    refund_amount,
                },
                17,
            ),
            (
                EventBody::RefundFailure {
                    after_sale_id,
                    refund_amount,
                    refunded_at,
                },
                24,
            ),
        ] {
            let mut bytes = Vec::new();
            encode_body_into(&body, &mut bytes).unwrap();
            assert_eq!(bytes[0], number, "{}", body.type_name());
            let back: EventBody = decode_body(&bytes, "event").unwrap();
            assert_eq!(back, body);
        }
    }

    #[test]
    fn a_family_round_trips_and_corruption_is_an_error_not_a_panic() {
        let mut shop = Shop::default();
        let family = shop.create("u1", &[("A1", 2), ("B1", 1)], Some("C1"));
        let bytes = encode(&family).unwrap();
        let back: OrderFamily = decode(&bytes, "family").unwrap();
        assert_eq!(back, family);

        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert!(matches!(
            decode::<OrderFamily>(&wrong_version, "family"),
            Err(StorageError::Corrupt { .. })
        ));
        assert!(decode::<OrderFamily>(&[], "family").is_err());
        for cut in [1, 2, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                decode::<OrderFamily>(&bytes[..cut], "family").is_err(),
                "cut at {cut}"
            );
        }
        let mut flipped = bytes.clone();
        for i in (1..flipped.len()).step_by(7) {
            flipped[i] ^= 0xA5;
        }
        // Either a clean error or some value; never a panic or a huge allocation.
        let _ = decode::<OrderFamily>(&flipped, "family");
        let mut trailing = bytes;
        trailing.push(0);
        assert!(decode::<OrderFamily>(&trailing, "family").is_err());
    }

    #[test]
    fn a_family_row_is_packed_smaller_and_reads_back() {
        let mut shop = Shop::default();
        let family = shop.create("u1", &[("A1", 2), ("B1", 1)], Some("C1"));
        let plain = encode(&family).unwrap();
        let packed = encode_packed(&family).unwrap();
        assert_eq!(packed[0], PACKED_FORMAT);
        assert!(
            packed.len() * 2 < plain.len(),
            "{} packed from {}",
            packed.len(),
            plain.len()
        );
        assert_eq!(decode::<OrderFamily>(&packed, "family").unwrap(), family);
        // Rows written before packing still read.
        assert_eq!(decode::<OrderFamily>(&plain, "family").unwrap(), family);
    }

    #[test]
    fn small_or_incompressible_rows_stay_plain() {
        let small = encode_packed(&42_u64).unwrap();
        assert_eq!(small, encode(&42_u64).unwrap());
        let noise: Vec<u8> = (0..4096_u32)
            .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[1])
            .collect();
        let row = encode_packed(&noise).unwrap();
        assert!(matches!(row[0], FORMAT_VERSION | PACKED_FORMAT));
        assert!(row.len() <= encode(&noise).unwrap().len());
        assert_eq!(decode::<Vec<u8>>(&row, "noise").unwrap(), noise);
    }

    #[test]
    fn a_corrupt_packed_row_is_an_error_not_a_panic_or_a_huge_allocation() {
        let mut shop = Shop::default();
        let family = shop.create("u1", &[("A1", 2), ("B1", 1)], Some("C1"));
        let packed = encode_packed(&family).unwrap();
        let corrupt = |bytes: &[u8]| {
            matches!(
                decode::<OrderFamily>(bytes, "family"),
                Err(StorageError::Corrupt { .. })
            )
        };
        for cut in [1, 3, 5, 6, packed.len() / 2, packed.len() - 1] {
            assert!(corrupt(&packed[..cut]), "cut at {cut}");
        }
        // A length beyond what the block can hold, or beyond the limit.
        for claim in [u32::MAX, u32::try_from(RECORD_BYTES_MAX + 1).unwrap()] {
            let mut lying = packed.clone();
            lying[1..5].copy_from_slice(&claim.to_le_bytes());
            assert!(corrupt(&lying), "claims {claim}");
        }
        // A length that is not the body's.
        let real = u32::from_le_bytes(packed[1..5].try_into().unwrap());
        for claim in [real - 1, real + 1] {
            let mut lying = packed.clone();
            lying[1..5].copy_from_slice(&claim.to_le_bytes());
            assert!(corrupt(&lying), "claims {claim} of {real}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_after_the_packed_byte_decode_or_fail_cleanly(
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            let mut row = vec![PACKED_FORMAT];
            row.extend_from_slice(&tail);
            let _ = decode::<OrderFamily>(&row, "family");
        }

        #[test]
        fn a_damaged_block_decodes_or_fails_cleanly(
            damage in proptest::collection::vec((5_usize..400, proptest::prelude::any::<u8>()), 1..8),
        ) {
            let mut shop = Shop::default();
            let family = shop.create("u1", &[("A1", 2), ("B1", 1)], Some("C1"));
            let mut row = encode_packed(&family).unwrap();
            for (at, byte) in damage {
                let at = at % row.len();
                row[at.max(5)] ^= byte | 1;
            }
            let _ = decode::<OrderFamily>(&row, "family");
        }

        #[test]
        fn packed_rows_round_trip(
            words in proptest::collection::vec("[a-d]{0,12}", 0..200),
        ) {
            let row = encode_packed(&words).unwrap();
            proptest::prop_assert_eq!(decode::<Vec<String>>(&row, "words").unwrap(), words);
        }
    }
}
