//! HMAC-SHA256 over a notice's terms, truncated to 128 bits.
//!
//! The MAC input is every signed field, each written as its length (u32, little
//! endian) then its bytes, so no choice of field values can make two different term
//! sets produce the same input. Verification is constant time (`hmac`'s
//! `verify_truncated_left`) and accepts the current key or the previous one, so keys
//! can be rotated without rejecting notices for bids made just before.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use smallvec::SmallVec;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of MAC kept in the URL (hex: twice as many characters).
pub const TAG_BYTES: usize = 16;

/// Signs with `key`; verifies with `key` or `previous`. Holds each key's HMAC state
/// after the key schedule, cloned per message.
#[derive(Clone)]
pub struct Signer {
    key: HmacSha256,
    previous: Option<HmacSha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("key", &"<redacted>").finish_non_exhaustive()
    }
}

/// Accumulates the MAC input of one term set.
#[derive(Debug, Default)]
pub struct Message(SmallVec<[u8; MESSAGE_INLINE_BYTES]>);

/// A message up to this long is built on the stack: the terms of a bid with ids of
/// ordinary length are about 130 bytes.
const MESSAGE_INLINE_BYTES: usize = 256;

impl Message {
    pub fn with_capacity(n: usize) -> Message {
        Message(SmallVec::with_capacity(n))
    }

    /// Appends one field: length, then bytes.
    pub fn field(&mut self, bytes: &[u8]) -> &mut Message {
        self.0.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.0.extend_from_slice(bytes);
        self
    }
}

impl Signer {
    /// Keys shorter than 32 bytes are refused by [`crate::config`] before this is built.
    pub fn new(key: Vec<u8>, previous: Option<Vec<u8>>) -> Signer {
        Signer { key: Signer::mac(&key), previous: previous.as_deref().map(Signer::mac) }
    }

    fn mac(key: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length.
        HmacSha256::new_from_slice(key).expect("HMAC accepts any key length")
    }

    /// The tag of `msg`, as lowercase hex.
    pub fn sign_hex(&self, msg: &Message) -> String {
        let mut out = String::with_capacity(TAG_BYTES * 2);
        self.push_sign_hex(msg, &mut out);
        out
    }

    /// Appends the tag of `msg`, in hex, to `out` (no allocation when `out` has room).
    pub fn push_sign_hex(&self, msg: &Message, out: &mut String) {
        let mut mac = self.key.clone();
        mac.update(&msg.0);
        let tag = mac.finalize().into_bytes();
        out.reserve(TAG_BYTES * 2);
        for b in &tag[..TAG_BYTES] {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }

    /// True when `tag_hex` is the tag of `msg` under the current or the previous key.
    pub fn verify_hex(&self, msg: &Message, tag_hex: &str) -> bool {
        let Some(tag) = decode_hex::<TAG_BYTES>(tag_hex) else { return false };
        let check = |key: &HmacSha256| {
            let mut mac = key.clone();
            mac.update(&msg.0);
            mac.verify_truncated_left(&tag).is_ok()
        };
        check(&self.key) || self.previous.as_ref().is_some_and(check)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Exactly `N` bytes of hex (either case), else `None`.
pub fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(fields: &[&str]) -> Message {
        let mut m = Message::default();
        for f in fields {
            m.field(f.as_bytes());
        }
        m
    }

    #[test]
    fn signs_and_verifies_with_current_and_previous_keys() {
        let old = Signer::new(b"old-key-old-key-old-key-old-key!".to_vec(), None);
        let new = Signer::new(
            b"new-key-new-key-new-key-new-key!".to_vec(),
            Some(b"old-key-old-key-old-key-old-key!".to_vec()),
        );
        let m = msg(&["win", "b1", "imp-1"]);
        let tag = new.sign_hex(&m);
        assert_eq!(tag.len(), 32);
        assert!(new.verify_hex(&m, &tag));
        assert!(new.verify_hex(&m, &tag.to_uppercase()));
        assert!(new.verify_hex(&m, &old.sign_hex(&m)), "previous key still accepted");
        assert!(!old.verify_hex(&m, &tag), "the new key is not known to the old signer");
        assert!(!new.verify_hex(&msg(&["win", "b1", "imp-2"]), &tag));
        assert!(!new.verify_hex(&m, &tag[..30]));
        assert!(!new.verify_hex(&m, "zz"));
    }

    #[test]
    fn field_boundaries_are_part_of_the_message() {
        let s = Signer::new(vec![7; 32], None);
        assert_ne!(s.sign_hex(&msg(&["ab", "c"])), s.sign_hex(&msg(&["a", "bc"])));
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(decode_hex::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(decode_hex::<2>("0aF"), None);
        assert_eq!(decode_hex::<1>("g0"), None);
    }
}
