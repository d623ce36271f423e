//! Byte-position bookkeeping for one direction of one connection.
//!
//! The kernel stamps every data record with the offset of its first byte in that
//! direction. Comparing it with what we have already seen tells contiguous data from a
//! gap (bytes the kernel could not deliver) and from a duplicate. Nothing is glued
//! across a gap: the caller tells the parser how many bytes are missing.

/// How a data record relates to what this direction has seen so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<'a> {
    /// The record continues the stream exactly.
    Contiguous(&'a [u8]),
    /// `missing` bytes were lost before these bytes.
    AfterGap {
        /// Number of bytes never delivered.
        missing: u64,
        /// The bytes that follow the gap.
        bytes: &'a [u8],
    },
    /// Every byte of the record was already seen (a replay or a reordering).
    Duplicate,
}

/// The position cursor of one direction.
#[derive(Debug, Default, Clone)]
pub struct StreamCursor {
    next: u64,
    /// Bytes accepted (not counting gaps and duplicates).
    pub bytes: u64,
    /// Number of gaps seen.
    pub gaps: u64,
    /// Total bytes lost in gaps.
    pub gap_bytes: u64,
}

impl StreamCursor {
    /// A cursor expecting the stream to start at `pos` (0 for a connection seen from its start).
    pub fn starting_at(pos: u64) -> Self {
        Self { next: pos, ..Self::default() }
    }

    /// The position the next byte should have.
    pub fn next_pos(&self) -> u64 {
        self.next
    }

    /// Classifies a record of `bytes` starting at `pos` and advances the cursor.
    pub fn admit<'a>(&mut self, pos: u64, bytes: &'a [u8]) -> Admit<'a> {
        let end = pos.saturating_add(bytes.len() as u64);
        if end <= self.next {
            return if bytes.is_empty() { Admit::Contiguous(bytes) } else { Admit::Duplicate };
        }
        if pos < self.next {
            // Overlaps what we have: keep only the new tail.
            let skip = (self.next - pos) as usize;
            let tail = &bytes[skip.min(bytes.len())..];
            self.next = end;
            self.bytes += tail.len() as u64;
            return Admit::Contiguous(tail);
        }
        let missing = pos - self.next;
        self.next = end;
        self.bytes += bytes.len() as u64;
        if missing == 0 {
            Admit::Contiguous(bytes)
        } else {
            self.gaps += 1;
            self.gap_bytes += missing;
            Admit::AfterGap { missing, bytes }
        }
    }

    /// The stream ended at `final_pos` (from the kernel's close record): any bytes
    /// between what we saw and that position were lost.
    pub fn close_at(&mut self, final_pos: u64) -> u64 {
        if final_pos > self.next {
            let missing = final_pos - self.next;
            self.gaps += 1;
            self.gap_bytes += missing;
            self.next = final_pos;
            missing
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_gap_duplicate_and_overlap() {
        let mut c = StreamCursor::default();
        assert_eq!(c.admit(0, b"abc"), Admit::Contiguous(b"abc"));
        assert_eq!(c.admit(3, b"de"), Admit::Contiguous(b"de"));
        assert_eq!(c.admit(10, b"xy"), Admit::AfterGap { missing: 5, bytes: b"xy" });
        assert_eq!(c.admit(3, b"de"), Admit::Duplicate);
        assert_eq!(c.admit(11, b"yz"), Admit::Contiguous(b"z"));
        assert_eq!(c.next_pos(), 13);
        assert_eq!((c.gaps, c.gap_bytes, c.bytes), (1, 5, 8));
        assert_eq!(c.close_at(20), 7);
        assert_eq!(c.close_at(20), 0);
        assert_eq!((c.gaps, c.gap_bytes), (2, 12));
    }

    #[test]
    fn starting_mid_stream() {
        let mut c = StreamCursor::starting_at(100);
        assert_eq!(c.admit(100, b"a"), Admit::Contiguous(b"a"));
        assert_eq!(c.admit(50, b"old"), Admit::Duplicate);
    }
}
