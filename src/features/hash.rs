//! Feature hashing, defined once for training and serving.
//!
//! **Changing anything in this file is a breaking change**: every trained model's
//! embedding indices depend on it. The golden values in the tests pin it forever.
//!
//! Scheme (all xxh3-64, little-endian):
//! - a raw value's hash: `vh = xxh3(value bytes, seed = spec.hash_seed)`; an absent value
//!   hashes as the empty byte string;
//! - a field's seed: `fs = xxh3(field name bytes, seed = spec.hash_seed)`;
//! - a single field's bucket: `xxh3(vh as 8 bytes, seed = fs) & (buckets - 1)`;
//! - a cross of fields a and b: `xxh3(vh_a as 8 bytes ++ vh_b as 8 bytes, seed = fs) & (buckets - 1)`;
//! - the global embedding index: `field offset + bucket`.
//!
//! Hashing a value once and combining 64-bit hashes lets one raw value feed several
//! fields and crosses without copying its bytes.

use xxhash_rust::xxh3::{xxh3_64_with_seed, Xxh3};

/// Longest value lower-cased on the stack; longer ones stream through the hasher.
const LOWER_STACK_BYTES: usize = 64;

/// Hash of one raw value's bytes.
#[inline]
pub fn value_hash(seed: u64, bytes: &[u8]) -> u64 {
    xxh3_64_with_seed(bytes, seed)
}

/// Hash of a value compared case-insensitively (ASCII): equals `value_hash` of its lower case.
pub fn value_hash_lower(seed: u64, s: &str) -> u64 {
    let bytes = s.as_bytes();
    if !bytes.iter().any(u8::is_ascii_uppercase) {
        return value_hash(seed, bytes);
    }
    if bytes.len() <= LOWER_STACK_BYTES {
        let mut buf = [0u8; LOWER_STACK_BYTES];
        for (d, s) in buf.iter_mut().zip(bytes) {
            *d = s.to_ascii_lowercase();
        }
        return value_hash(seed, &buf[..bytes.len()]);
    }
    let mut hasher = Xxh3::with_seed(seed);
    for chunk in bytes.chunks(LOWER_STACK_BYTES) {
        let mut buf = [0u8; LOWER_STACK_BYTES];
        for (d, s) in buf.iter_mut().zip(chunk) {
            *d = s.to_ascii_lowercase();
        }
        hasher.update(&buf[..chunk.len()]);
    }
    hasher.digest()
}

/// Hash of an integer value: the hash of its decimal text, so `4` and `"4"` agree.
pub fn value_hash_int(seed: u64, v: i64) -> u64 {
    let mut buf = [0u8; 20];
    value_hash(seed, format_int(v, &mut buf))
}

/// Seed of a field, from its name.
pub fn field_seed(seed: u64, name: &str) -> u64 {
    xxh3_64_with_seed(name.as_bytes(), seed)
}

/// Bucket of a single field. `buckets` is a power of two.
#[inline]
pub fn bucket(field_seed: u64, vh: u64, buckets: u64) -> u64 {
    debug_assert!(buckets.is_power_of_two());
    xxh3_64_with_seed(&vh.to_le_bytes(), field_seed) & (buckets - 1)
}

/// Bucket of a cross of two fields. `buckets` is a power of two.
#[inline]
pub fn bucket_cross(field_seed: u64, vh_a: u64, vh_b: u64, buckets: u64) -> u64 {
    debug_assert!(buckets.is_power_of_two());
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&vh_a.to_le_bytes());
    buf[8..].copy_from_slice(&vh_b.to_le_bytes());
    xxh3_64_with_seed(&buf, field_seed) & (buckets - 1)
}

/// Decimal text of `v` in `buf` (20 bytes hold every i64 but `i64::MIN`'s sign,
/// which is clamped away: no feature value is that small).
fn format_int(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let negative = v < 0;
    let mut n = v.unsigned_abs().min(9_999_999_999_999_999_999 / 10);
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: u64 = 7046029254386353131;

    #[test]
    fn integers_hash_as_their_decimal_text() {
        for v in [0i64, 4, -300, 1_767_571_200, i64::MAX / 10] {
            assert_eq!(value_hash_int(SEED, v), value_hash(SEED, v.to_string().as_bytes()), "{v}");
        }
    }

    #[test]
    fn lower_case_hash_matches_lower_cased_text() {
        let long = "ABCDEFGHIJKLMNOPQRSTUVWXYZ".repeat(5);
        for s in ["iOS", "android", "USA", long.as_str()] {
            assert_eq!(value_hash_lower(SEED, s), value_hash(SEED, s.to_ascii_lowercase().as_bytes()), "{s}");
        }
    }

    /// Golden values: these must never change (see the module docs).
    #[test]
    fn hashing_is_stable_forever() {
        let check = |got: u64, want: u64| assert_eq!(got, want);
        check(value_hash(SEED, b""), GOLDEN[0]);
        check(value_hash(SEED, b"example.com"), GOLDEN[1]);
        check(field_seed(SEED, "domain"), GOLDEN[2]);
        check(bucket(field_seed(SEED, "domain"), value_hash(SEED, b"example.com"), 8192), GOLDEN[3]);
        check(
            bucket_cross(
                field_seed(SEED, "segment1_x_ad_category"),
                value_hash(SEED, b"seg-IAB2"),
                value_hash(SEED, b"IAB2"),
                4096,
            ),
            GOLDEN[4],
        );
    }

    /// Computed independently with the Python `xxhash` package (`xxh3_64_intdigest`),
    /// so any other implementation of the scheme can check itself against them.
    const GOLDEN: [u64; 5] = [11724042008552822773, 13319124210858657847, 10866113138124791572, 7030, 2497];
}
