//! HTTP/2 frame headers (RFC 9113 §4.1) and the fixed-layout parts of frame payloads.

/// The client connection preface (RFC 9113 §3.4).
pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Length of a frame header.
pub(super) const HEADER_LEN: usize = 9;

/// Frame type codes (RFC 9113 §6).
pub(super) mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub(super) mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS_HEADER_TABLE_SIZE (RFC 9113 §6.5.2).
const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;

/// A decoded 9-byte frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameHeader {
    /// Payload length.
    pub len: usize,
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier, reserved bit cleared.
    pub stream: u32,
    /// The reserved bit (ignored on receipt, but a resync hint).
    pub reserved: bool,
}

impl FrameHeader {
    /// Decodes the header at the start of `b`, or None when fewer than 9 bytes are there.
    pub fn parse(b: &[u8]) -> Option<FrameHeader> {
        let h: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        let raw = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        Some(FrameHeader {
            len: (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]),
            kind: h[3],
            flags: h[4],
            stream: raw & 0x7fff_ffff,
            reserved: raw & 0x8000_0000 != 0,
        })
    }

    /// Whether `f` is set.
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// Header plus payload.
    pub fn total(&self) -> usize {
        HEADER_LEN + self.len
    }

    /// True for frames whose payload is (part of) a header block.
    pub fn carries_header_block(&self) -> bool {
        matches!(self.kind, kind::HEADERS | kind::PUSH_PROMISE | kind::CONTINUATION)
    }

    /// A strict sanity check used only to find frame boundaries mid-connection: a known type,
    /// the reserved bit clear, only defined flags, the stream id (zero or not) the type requires,
    /// and the fixed lengths of fixed-size frames.
    pub fn plausible(&self) -> bool {
        use kind::*;
        let on_stream = self.stream != 0;
        let (flags_ok, stream_ok, len_ok) = match self.kind {
            DATA => (flag::END_STREAM | flag::PADDED, on_stream, true),
            HEADERS => (flag::END_STREAM | flag::END_HEADERS | flag::PADDED | flag::PRIORITY, on_stream, true),
            PRIORITY => (0, on_stream, self.len == 5),
            RST_STREAM => (0, on_stream, self.len == 4),
            SETTINGS => (flag::ACK, !on_stream, self.len.is_multiple_of(6) && !(self.has(flag::ACK) && self.len != 0)),
            PUSH_PROMISE => (flag::END_HEADERS | flag::PADDED, on_stream, self.len >= 4),
            PING => (flag::ACK, !on_stream, self.len == 8),
            GOAWAY => (0, !on_stream, self.len >= 8),
            WINDOW_UPDATE => (0, true, self.len == 4),
            CONTINUATION => (flag::END_HEADERS, on_stream, true),
            _ => return false,
        };
        !self.reserved && self.flags & !flags_ok == 0 && stream_ok && len_ok
    }

    /// Whether `self` may directly follow `prev` on the wire: a header block that has not
    /// ended must be continued by a CONTINUATION on the same stream, and only then.
    pub fn may_follow(&self, prev: &FrameHeader) -> bool {
        let open_block = prev.carries_header_block() && !prev.has(flag::END_HEADERS);
        if open_block {
            self.kind == kind::CONTINUATION && self.stream == prev.stream
        } else {
            self.kind != kind::CONTINUATION
        }
    }
}

/// Strips the pad-length octet and the padding of a frame that may be PADDED.
pub(super) fn unpad<'a>(h: &FrameHeader, payload: &'a [u8]) -> Result<&'a [u8], &'static str> {
    if !h.has(flag::PADDED) {
        return Ok(payload);
    }
    let (&pad, rest) = payload.split_first().ok_or("PADDED frame without a pad length")?;
    let keep = rest.len().checked_sub(usize::from(pad)).ok_or("padding longer than the frame")?;
    Ok(&rest[..keep])
}

/// Reads a big-endian u32 at `at`, if there.
pub(super) fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(s))
}

/// Every SETTINGS_HEADER_TABLE_SIZE value in a SETTINGS payload (or an HTTP2-Settings header), in order.
pub(super) fn header_table_sizes(payload: &[u8]) -> impl Iterator<Item = u32> + '_ {
    payload.chunks_exact(6).filter_map(|s| {
        let id = u16::from_be_bytes([s[0], s[1]]);
        if id == SETTINGS_HEADER_TABLE_SIZE { be_u32(s, 2) } else { None }
    })
}
