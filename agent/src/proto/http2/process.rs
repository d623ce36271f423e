//! The byte loop of one side: preface, resynchronisation, frame assembly, skipping.

use base64::Engine;

use super::frame::{FrameHeader, HEADER_LEN, PREFACE, header_table_sizes, kind};
use super::resync::{self, Scan};
use super::{H2Error, H2Event, Mode, Parser, Side};

impl Parser {
    /// Consumes as much of `input` (bytes of `side`) as possible; returns how many were used.
    /// What is left is an incomplete preface, frame, or resync window. `at_end`: no more
    /// bytes will come.
    pub(super) fn process(&mut self, side: Side, input: &[u8], at_end: bool) -> usize {
        let mut at = 0;
        loop {
            let rest = input.get(at..).unwrap_or_default();
            if rest.is_empty() {
                return at;
            }
            let max_frame = self.limits.max_frame;
            let half = self.half_mut(side);
            if half.skip > 0 {
                let n = half.skip.min(rest.len());
                half.skip -= n;
                at += n;
                continue;
            }
            match half.mode {
                Mode::Dead => {
                    half.dropped = half.dropped.saturating_add(rest.len() as u64);
                    return input.len();
                }
                Mode::Preface => {
                    let n = PREFACE.len().min(rest.len());
                    if rest.get(..n) != PREFACE.get(..n) {
                        self.events.push_back(H2Event::Error(H2Error::BadPreface { side }));
                        self.stop(side);
                    } else if n < PREFACE.len() {
                        return at;
                    } else {
                        half.mode = Mode::Frames;
                        at += n;
                    }
                }
                Mode::Resync => match resync::scan(rest, at_end) {
                    Scan::Found(off) => {
                        half.dropped = half.dropped.saturating_add(off as u64);
                        half.mode = Mode::Frames;
                        at += off;
                    }
                    Scan::NeedMore(off) => {
                        half.dropped = half.dropped.saturating_add(off as u64);
                        return at + off;
                    }
                },
                Mode::Frames => {
                    let Some(h) = FrameHeader::parse(rest) else { return at };
                    if h.total() > max_frame {
                        let limit = max_frame;
                        self.events.push_back(H2Event::Error(H2Error::FrameTooLarge { side, size: h.total(), limit }));
                        self.half_mut(side).skip = h.len;
                        self.on_frame(side, h, None);
                        at += HEADER_LEN;
                        continue;
                    }
                    let Some(payload) = rest.get(HEADER_LEN..h.total()) else { return at };
                    self.on_frame(side, h, Some(payload));
                    at += h.total();
                }
            }
        }
    }

    /// Tries to absorb a gap of `missing` bytes inside the payload of the DATA frame being
    /// received (or of a frame being skipped). True when framing survives.
    pub(super) fn skip_data_gap(&mut self, side: Side, missing: u64) -> bool {
        let half = self.half_mut(side);
        if half.mode != Mode::Frames {
            return false;
        }
        if half.skip > 0 {
            return match usize::try_from(missing) {
                Ok(m) if m <= half.skip => {
                    half.skip -= m;
                    true
                }
                _ => false,
            };
        }
        let Some(h) = FrameHeader::parse(&half.buf) else { return false };
        if h.kind != kind::DATA {
            return false;
        }
        // The frame is incomplete (a complete one would have been handled), so this is > 0.
        let remaining = h.total().saturating_sub(half.buf.len());
        let Ok(missing) = usize::try_from(missing) else { return false };
        if missing > remaining {
            return false;
        }
        half.dropped = half.dropped.saturating_add(half.buf.len().saturating_sub(HEADER_LEN) as u64);
        half.buf.clear();
        half.skip = remaining - missing;
        self.on_frame(side, h, None);
        true
    }
}

/// SETTINGS_HEADER_TABLE_SIZE values in an `HTTP2-Settings` header value (base64url SETTINGS payload).
pub(super) fn http2_settings_table_sizes(value: &str) -> Vec<u32> {
    let b64 = value.trim().trim_end_matches('=');
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64) {
        Ok(payload) => header_table_sizes(&payload).collect(),
        Err(_) => Vec::new(),
    }
}
