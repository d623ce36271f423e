//! Finding frame boundaries when the capture starts mid-connection.
//!
//! A position is taken as the start of a frame when the 9 bytes there pass
//! [`FrameHeader::plausible`] (known type ≤ 0x9, reserved bit clear, only defined flags, the
//! stream id and payload length the type requires; no empty DATA without END_STREAM, no
//! empty header block), the payload is consistent where that is checkable (padding shorter
//! than the payload, non-zero WINDOW_UPDATE increment), a CONTINUATION is never a start, AND
//! the next [`CONFIRM`] frames pass the same test and may follow their predecessor (a header
//! block that has not ended continues with a CONTINUATION on the same stream, and only then).
//! At the end of the direction, a chain that ends exactly with the last byte is accepted.
//! Candidates whose confirmation lies more than [`WINDOW`] bytes ahead are rejected (so at
//! most that much is buffered): the first frame found is never a huge one. The decision for a
//! position depends only on the bytes from there on, not on how they were chunked.

use super::frame::{FrameHeader, HEADER_LEN, flag, kind};

/// Largest span (candidate frame + next header) examined for one candidate.
pub(super) const WINDOW: usize = 64 * 1024;

/// Outcome of a scan.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    /// A frame starts at this offset.
    Found(usize),
    /// Nothing before this offset can start a frame; more bytes are needed after it.
    NeedMore(usize),
}

/// Frames that must follow a candidate before it is trusted.
pub(super) const CONFIRM: usize = 2;

/// Looks for the first confirmed frame start in `input`; `at_end` means no more bytes will come.
pub(super) fn scan(input: &[u8], at_end: bool) -> Scan {
    for i in 0..input.len() {
        let rest = &input[i..];
        let Some(first) = FrameHeader::parse(rest) else {
            return Scan::NeedMore(if at_end { input.len() } else { i });
        };
        if first.kind == kind::CONTINUATION || !trusted(&first, rest) {
            continue;
        }
        match confirm(rest, first, at_end) {
            Some(true) => return Scan::Found(i + finer_start(rest, first.total())),
            Some(false) => continue,
            None => return Scan::NeedMore(i),
        }
    }
    Scan::NeedMore(input.len())
}

/// A confirmed frame may swallow real frames (a bogus length that happens to end on a real
/// boundary). Returns the first offset inside the frame where a chain of at least two trusted
/// frames ends exactly on that boundary and is followed by the frame there (0 when there is
/// none): the finer framing wins.
fn finer_start(rest: &[u8], end: usize) -> usize {
    let Some(after) = FrameHeader::parse(rest.get(end..).unwrap_or_default()) else { return 0 };
    (1..end.saturating_sub(HEADER_LEN - 1))
        .find(|&j| lands_on(rest, j, end).is_some_and(|last| after.may_follow(&last)))
        .unwrap_or(0)
}

/// The last frame, when 2 to [`FINER_MAX`] trusted frames starting at `from` end exactly at `target`.
fn lands_on(rest: &[u8], from: usize, target: usize) -> Option<FrameHeader> {
    let (mut at, mut prev) = (from, None::<FrameHeader>);
    for n in 1..=FINER_MAX {
        let here = rest.get(at..).unwrap_or_default();
        let h = FrameHeader::parse(here)?;
        let follows = match &prev {
            Some(p) => h.may_follow(p),
            None => h.kind != kind::CONTINUATION,
        };
        if !follows || !trusted(&h, here) {
            return None;
        }
        at += h.total();
        if at >= target {
            return (at == target && n >= 2).then_some(h);
        }
        prev = Some(h);
    }
    None
}

/// Most frames in a finer chain (bounds the work per candidate).
const FINER_MAX: usize = 8;

/// Follows the chain of frames after `first` (at the start of `rest`). None: more bytes needed.
fn confirm(rest: &[u8], first: FrameHeader, at_end: bool) -> Option<bool> {
    let (mut prev, mut at) = (first, 0);
    for _ in 0..CONFIRM {
        at += prev.total();
        if at + HEADER_LEN > WINDOW {
            return Some(false);
        }
        let here = match rest.get(at..) {
            Some(here) => here,
            None => return if at_end { Some(false) } else { None },
        };
        match FrameHeader::parse(here) {
            Some(next) if next.may_follow(&prev) && trusted(&next, here) => prev = next,
            Some(_) => return Some(false),
            None if at_end => return Some(here.is_empty()),
            None => return None,
        }
    }
    Some(true)
}

/// The resync test for one frame whose header starts `at` (payload checks only if present).
fn trusted(h: &FrameHeader, at: &[u8]) -> bool {
    if !h.plausible() {
        return false;
    }
    let payload = at.get(HEADER_LEN..h.total()).unwrap_or_default();
    let padded = h.has(flag::PADDED);
    let min = match h.kind {
        kind::DATA if !h.has(flag::END_STREAM) => 1,
        kind::HEADERS => 1 + usize::from(padded) + if h.has(flag::PRIORITY) { 5 } else { 0 },
        kind::PUSH_PROMISE => 4 + usize::from(padded),
        kind::DATA => usize::from(padded),
        _ => 0,
    };
    if h.len < min {
        return false;
    }
    if padded && payload.first().is_some_and(|&pad| usize::from(pad) >= h.len) {
        return false;
    }
    !(h.kind == kind::WINDOW_UPDATE && payload.len() == 4 && payload == [0; 4])
}
