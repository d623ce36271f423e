//! Identifiers: 20-character xid-style ids (`connectionId`, `requestId`) and SHA-1 digests.

use sha1::{Digest, Sha1};

/// A new globally unique 20-character id (base32hex, lowercase), sortable by creation time.
pub fn new_id() -> String {
    xid::new().to_string()
}

/// Lowercase hex SHA-1 of `bytes`.
pub fn digest_hex(bytes: &[u8]) -> String {
    let d = Sha1::digest(bytes);
    let mut s = String::with_capacity(40);
    for b in d {
        s.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        s.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_20_char_base32hex() {
        let ids: HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in &ids {
            assert_eq!(id.len(), 20);
            assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b)), "{id}");
        }
    }

    #[test]
    fn digest_matches_known_sha1() {
        assert_eq!(digest_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
