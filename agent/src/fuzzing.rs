//! Shared strategies of the property ("fuzz") tests: byte mutations of a valid message and random
//! chunkings of a byte stream. Case counts follow `PROPTEST_CASES` (proptest's default config
//! reads it), so a long run is `PROPTEST_CASES=100000 cargo test -p tapline fuzz`.

use proptest::prelude::*;

/// One edit of a byte string; positions are taken modulo the length at the time of the edit.
#[derive(Debug, Clone)]
pub enum Edit {
    /// XOR one byte with a non-zero mask.
    Flip(usize, u8),
    /// Overwrite one byte.
    Set(usize, u8),
    /// Insert one byte.
    Insert(usize, u8),
    /// Remove up to `n` bytes.
    Remove(usize, usize),
    /// Repeat up to `n` bytes in place.
    Repeat(usize, usize),
    /// Cut the tail.
    Truncate(usize),
}

/// Up to `max` random edits.
pub fn edits(max: usize) -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        4 => (any::<usize>(), 1u8..).prop_map(|(i, x)| Edit::Flip(i, x)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Edit::Set(i, x)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Edit::Insert(i, x)),
        2 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Remove(i, n)),
        1 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Repeat(i, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ];
    proptest::collection::vec(edit, 0..=max)
}

/// `bytes` with `edits` applied in order.
pub fn mutate(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    for e in edits {
        let len = v.len();
        match *e {
            Edit::Insert(i, x) => v.insert(i % (len + 1), x),
            _ if len == 0 => {}
            Edit::Flip(i, x) => v[i % len] ^= x,
            Edit::Set(i, x) => v[i % len] = x,
            Edit::Remove(i, n) => {
                let at = i % len;
                v.drain(at..(at + n).min(len));
            }
            Edit::Repeat(i, n) => {
                let at = i % len;
                let piece = v[at..(at + n).min(len)].to_vec();
                v.splice(at..at, piece);
            }
            Edit::Truncate(i) => v.truncate(i % (len + 1)),
        }
    }
    v
}

/// Chunk sizes for [`chunks`]: mostly small (to split inside every field), sometimes large.
pub fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(prop_oneof![3 => 1usize..8, 2 => 1usize..200, 1 => 1usize..5000], 1..64)
}

/// `bytes` cut into pieces of the given sizes (cycled), covering every byte once, in order.
pub fn chunks<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let n = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(bytes.len()).max(1);
        let end = (at + n).min(bytes.len());
        out.push(&bytes[at..end]);
        at = end;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_byte_in_order() {
        let b: Vec<u8> = (0..=255).collect();
        let c = chunks(&b, &[3, 1, 100]);
        assert_eq!(c.concat(), b);
        assert_eq!(c.iter().map(|c| c.len()).collect::<Vec<_>>(), vec![3, 1, 100, 3, 1, 100, 3, 1, 44]);
        assert!(chunks(&[], &[1]).is_empty());
    }

    #[test]
    fn edits_apply_in_order() {
        assert_eq!(mutate(b"abcd", &[Edit::Flip(4, 1)]), b"`bcd", "4 % 4 = 0");
        assert_eq!(mutate(b"abcd", &[Edit::Insert(7, b'z')]), b"abzcd", "7 % 5 = 2");
        assert_eq!(mutate(b"abcd", &[Edit::Remove(1, 2)]), b"ad");
        assert_eq!(mutate(b"abcd", &[Edit::Repeat(1, 2)]), b"abcbcd");
        assert_eq!(mutate(b"abcd", &[Edit::Truncate(3)]), b"abc");
        // "" → "z" → "" (the removal at 0 takes the inserted byte) → edits on nothing are no-ops.
        let e = [Edit::Flip(0, 1), Edit::Insert(100, b'z'), Edit::Remove(1, 2), Edit::Repeat(0, 2), Edit::Set(3, 1)];
        assert_eq!(mutate(b"", &e), b"");
    }
}
