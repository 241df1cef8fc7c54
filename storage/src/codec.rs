//! Stored bytes: a format version byte, then bincode 2 (serde) of the value.
//! Keys that must sort are fixed-width big-endian. Decoding never panics: a
//! corrupt or unknown-version record is a `StorageError::Corrupt`.

use crate::error::StorageError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The format version of every record this build writes.
pub const FORMAT_VERSION: u8 = 1;

/// Largest record the decoder accepts; a length prefix beyond it in a
/// corrupt record is refused instead of allocated.
pub const RECORD_BYTES_MAX: usize = 256 * 1024 * 1024;

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
        Some((version, _)) => Err(StorageError::corrupt(
            what,
            format!("unknown format version {version}"),
        )),
        None => Err(StorageError::corrupt(what, "empty record")),
    }
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
}
