//! The mask that replaces a secret: plain, or a keyed hash that lets equal secrets be
//! correlated without revealing them.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The mask used without a hash key.
pub const PLAIN_MASK: &str = "[REDACTED]";

/// Prefix of a keyed mask; 16 lowercase hex digits and `]` follow.
const KEYED_PREFIX: &str = "[REDACTED:hmac-sha256:";

/// Hex digits of the HMAC kept in a keyed mask (64 bits).
const KEYED_HEX: usize = 16;

/// Produces masks for secrets.
#[derive(Clone)]
pub(crate) struct Masker {
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Masker {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker").field("keyed", &self.key.is_some()).finish()
    }
}

impl Masker {
    /// A masker hashing with `key`, or producing [`PLAIN_MASK`] without one.
    pub(crate) fn new(key: Option<Vec<u8>>) -> Self {
        Masker { key }
    }

    /// The mask for `secret`.
    pub(crate) fn mask(&self, secret: &[u8]) -> String {
        let Some(key) = &self.key else {
            return PLAIN_MASK.to_string();
        };
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return PLAIN_MASK.to_string();
        };
        mac.update(secret);
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(KEYED_PREFIX.len() + KEYED_HEX + 1);
        out.push_str(KEYED_PREFIX);
        for b in digest.iter().take(KEYED_HEX / 2) {
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xf));
        }
        out.push(']');
        out
    }
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// Whether `s` already is a mask (plain or keyed), so that redacting twice changes nothing.
pub(crate) fn is_mask(s: &str) -> bool {
    if s == PLAIN_MASK {
        return true;
    }
    s.strip_prefix(KEYED_PREFIX)
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|hex| hex.len() == KEYED_HEX && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}
