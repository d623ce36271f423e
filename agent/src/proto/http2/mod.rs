//! HTTP/2 sans-I/O parser for passive observation of both directions of one connection.
//!
//! Bytes go in with the [`Side`] that sent them, in arrival order and split anywhere;
//! [`H2Event`]s come out of [`Parser::poll_event`]. No I/O, no clocks.
//!
//! * **Framing** (RFC 9113 §4): a frame is buffered until complete (at most
//!   [`Limits::max_frame`] bytes), then handled; so one DATA frame gives one [`H2Event::Data`]
//!   and the events do not depend on how the bytes were chunked.
//! * **Headers**: one HPACK context per direction (`loona-hpack`); a block (HEADERS or
//!   PUSH_PROMISE plus CONTINUATIONs) is decoded when complete. See the `hpack` module for how
//!   SETTINGS_HEADER_TABLE_SIZE is applied.
//! * **Bytes per stream**: every frame on a stream (id ≠ 0) yields one [`H2Event::StreamBytes`]
//!   with its wire size (9-byte header + payload, padding included), queued *before* any other
//!   event of that frame, so when a stream's final event is seen its byte counts are complete.
//!   Connection-level frames (stream 0) and the preface are not attributed.
//! * **Unknown header state** ([`H2Event::HpackStateUnknown`], once per side): headers are
//!   never guessed. It happens when the parser starts mid-connection (both sides, at once),
//!   on an HPACK decoding error, when a header block is too large to buffer, when bytes were
//!   lost ([`Parser::gap`]) and when a side stops being parsed after an error.
//! * **Mid-connection start** (`expect_preface = false`): each side looks for a frame
//!   boundary (see the `resync` module: a frame header is only trusted if its type is ≤ 0x9,
//!   its reserved bit is 0, its flags, stream id and length fit its type, and the next two
//!   frame headers pass the same test), then frames normally: DATA, RST_STREAM, GOAWAY and
//!   stream bytes are still reported, header blocks are tracked but never decoded (a fresh
//!   decoder would produce wrong headers at the first dynamic table reference).
//! * **Gaps**: if the lost bytes fall inside the payload of the DATA frame being received, the
//!   framing and the header state survive: that frame's [`H2Event::Data`] is not delivered
//!   (an [`H2Error::Gap`] is, then its END_STREAM, if any, as an empty `Data`), the rest of the
//!   frame is skipped. Otherwise the framing of that side is lost: [`H2Error::Gap`], then
//!   `HpackStateUnknown`, and the side is no longer parsed (its bytes are only counted in
//!   [`Parser::dropped_bytes`]).
//! * **Errors**: a frame larger than the limit is skipped (its stream bytes still counted;
//!   for a header block frame the side's header state becomes unknown). A protocol violation
//!   that breaks framing or HPACK (bad preface, bad padding, missing CONTINUATION, bad
//!   stream id or length on a control frame) stops parsing of that side.
//! * **Memory**: partial frames (≤ `max_frame`), header block fragments
//!   (≤ `max_header_list`), HPACK tables (≤ `max_hpack_table`) and the stream table
//!   (≤ `max_streams_tracked`, lowest ids evicted first) are bounded.

mod frame;
mod frames;
mod hpack;
mod process;
mod resync;
mod streams;

use std::collections::VecDeque;

pub use crate::proto::http1::{Header, Side};

use hpack::HeaderDecoder;
use streams::Streams;

/// What a header block is, from the stream's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadersKind {
    /// The first block from the client on a stream.
    Request,
    /// The final (non-1xx) response head from the server.
    Response,
    /// A 1xx response head (several may precede the final one).
    Informational,
    /// A later block from the same side (after its head), or a block without pseudo-header
    /// fields on a stream whose history was lost.
    Trailers,
}

/// What the parser saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H2Event {
    /// A complete header block (HEADERS + CONTINUATION*) decoded, in wire order,
    /// pseudo-headers kept as fields named ":method", ":path", ":authority", ":scheme", ":status".
    Headers {
        /// Who sent it.
        side: Side,
        /// Stream id.
        stream: u32,
        /// Fields in wire order (lossy UTF-8).
        headers: Vec<Header>,
        /// The HEADERS frame had END_STREAM.
        end_stream: bool,
        /// What the block is on this stream.
        kind: HeadersKind,
    },
    /// The payload of one DATA frame, padding removed. An empty payload is only reported
    /// when it carries END_STREAM.
    Data {
        /// Who sent it.
        side: Side,
        /// Stream id.
        stream: u32,
        /// Payload, padding removed.
        bytes: Vec<u8>,
        /// The frame had END_STREAM.
        end_stream: bool,
    },
    /// Wire size of one frame on a stream (9-byte header + payload, padding included),
    /// queued before the other events of that frame. Sum per `(side, stream)` for
    /// bytes sent/received.
    StreamBytes {
        /// Who sent the frame.
        side: Side,
        /// Stream id (never 0).
        stream: u32,
        /// Frame size on the wire.
        bytes: u64,
    },
    /// RST_STREAM.
    StreamReset {
        /// Who reset the stream.
        side: Side,
        /// Stream id.
        stream: u32,
        /// HTTP/2 error code.
        error_code: u32,
    },
    /// Server push: the promised request's headers (always sent by the server).
    PushPromise {
        /// The stream the promise was sent on.
        stream: u32,
        /// The reserved stream that will carry the pushed response.
        promised: u32,
        /// The promised request's header fields.
        headers: Vec<Header>,
    },
    /// GOAWAY.
    GoAway {
        /// Who sent it.
        side: Side,
        /// Last stream id the sender may have processed.
        last_stream: u32,
        /// HTTP/2 error code.
        error_code: u32,
    },
    /// The header compression state of `side` is unknown (the parser started mid-connection,
    /// bytes were lost, or decoding failed): from now on that direction's header blocks are
    /// not decoded. Emitted once per side. DATA frames are still framed and counted where
    /// the framing is intact, but no headers are ever guessed.
    HpackStateUnknown {
        /// Which direction.
        side: Side,
    },
    /// A protocol violation, a limit, or lost bytes.
    Error(H2Error),
}

/// Problems, each with a stable reason for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H2Error {
    /// The client did not start with the connection preface; that side is not parsed.
    #[error("the {side:?} did not send the HTTP/2 connection preface")]
    BadPreface {
        /// Which side.
        side: Side,
    },
    /// A frame (header included) is larger than [`Limits::max_frame`]; it was skipped.
    #[error("{side:?} frame of {size} bytes exceeds the {limit}-byte limit")]
    FrameTooLarge {
        /// Which side.
        side: Side,
        /// Frame size, header included.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A violation that breaks framing or header decoding; that side is not parsed any more.
    #[error("HTTP/2 protocol error from the {side:?}: {detail}")]
    Protocol {
        /// Which side.
        side: Side,
        /// What was wrong.
        detail: &'static str,
    },
    /// A header block, or the list it decodes to, exceeds [`Limits::max_header_list`].
    #[error("{side:?} header block on stream {stream} larger than {limit} bytes")]
    HeaderListTooLarge {
        /// Which side.
        side: Side,
        /// Stream id.
        stream: u32,
        /// The limit.
        limit: usize,
    },
    /// HPACK decoding failed; the side's header state is unknown from now on.
    #[error("HPACK error from the {side:?} on stream {stream}: {detail}")]
    Hpack {
        /// Which side.
        side: Side,
        /// Stream id.
        stream: u32,
        /// The decoder's complaint.
        detail: String,
    },
    /// Bytes were lost.
    #[error("{bytes} bytes from the {side:?} were lost")]
    Gap {
        /// Which side.
        side: Side,
        /// How many.
        bytes: u64,
    },
    /// The side closed in the middle of a frame or header block.
    #[error("the {side:?} closed with {bytes} bytes of an incomplete frame")]
    Truncated {
        /// Which side.
        side: Side,
        /// Bytes of the incomplete frame.
        bytes: usize,
    },
}

impl H2Error {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            H2Error::BadPreface { .. } => "bad_preface",
            H2Error::FrameTooLarge { .. } => "frame_too_large",
            H2Error::Protocol { .. } => "protocol",
            H2Error::HeaderListTooLarge { .. } => "header_list_too_large",
            H2Error::Hpack { .. } => "hpack",
            H2Error::Gap { .. } => "gap",
            H2Error::Truncated { .. } => "truncated",
        }
    }
}

/// Bounds on what the parser buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame buffered, 9-byte header included, whatever SETTINGS_MAX_FRAME_SIZE says.
    pub max_frame: usize,
    /// Largest header block, both as compressed fragments and as a decoded list
    /// (name + value + 32 per field, as SETTINGS_MAX_HEADER_LIST_SIZE counts).
    pub max_header_list: usize,
    /// Most streams whose state is kept.
    pub max_streams_tracked: usize,
    /// Largest HPACK dynamic table accepted per direction (a size update above it, or above
    /// what the peer advertised, is a decoding error). The protocol default 4096 is always allowed.
    pub max_hpack_table: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 16 * 1024 * 1024 + 9,
            max_header_list: 256 * 1024,
            max_streams_tracked: 10_000,
            max_hpack_table: 256 * 1024,
        }
    }
}

/// How far one side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Matching the client connection preface.
    Preface,
    /// Looking for a frame boundary (mid-connection start).
    Resync,
    /// In step with the frames.
    Frames,
    /// Framing lost or closed: bytes are only counted.
    Dead,
}

/// A header block being collected.
struct Block {
    stream: u32,
    end_stream: bool,
    /// Started by PUSH_PROMISE rather than HEADERS.
    push: bool,
    /// The promised stream (0 when unknown).
    promised: u32,
    /// Compressed fragments so far (empty when not decoding).
    fragment: Vec<u8>,
    /// False when the block will not be decoded (unknown header state).
    decode: bool,
}

/// One direction.
struct Half {
    mode: Mode,
    /// An incomplete preface, frame, or resync window (never more than the limits).
    buf: Vec<u8>,
    /// Payload bytes of a skipped frame still to come.
    skip: usize,
    block: Option<Block>,
    hpack: HeaderDecoder,
    dropped: u64,
}

impl Half {
    fn new(mode: Mode, limits: &Limits) -> Half {
        Half {
            mode,
            buf: Vec::new(),
            skip: 0,
            block: None,
            hpack: HeaderDecoder::new(limits.max_hpack_table),
            dropped: 0,
        }
    }
}

/// The parser for one connection.
pub struct Parser {
    limits: Limits,
    client: Half,
    server: Half,
    streams: Streams,
    events: VecDeque<H2Event>,
}

impl Parser {
    /// `expect_preface`: true when the connection is watched from its start (the client preface
    /// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" must come first on the client side); false when started
    /// mid-connection (frame boundaries are searched for and header blocks are never decoded).
    pub fn new(limits: Limits, expect_preface: bool) -> Self {
        let (client, server) =
            if expect_preface { (Mode::Preface, Mode::Frames) } else { (Mode::Resync, Mode::Resync) };
        let mut p = Parser {
            client: Half::new(client, &limits),
            server: Half::new(server, &limits),
            streams: Streams::new(limits.max_streams_tracked),
            events: VecDeque::new(),
            limits,
        };
        if !expect_preface {
            p.forget_headers(Side::Client);
            p.forget_headers(Side::Server);
        }
        p
    }

    /// A parser for a connection that switched from HTTP/1.1 via `Upgrade: h2c` (RFC 7540 §3.2):
    /// stream 1 is the upgraded request (half-closed from the client), queued
    /// at once as a `Headers { kind: Request, stream: 1, end_stream: true }` event; its
    /// response arrives as HTTP/2 on stream 1. Feed the bytes after the 101 response: the
    /// client still sends the connection preface. An `HTTP2-Settings` header in the request
    /// is applied (its header table size bounds the server's encoder).
    pub fn after_upgrade(limits: Limits, request_on_stream_1: Vec<Header>) -> Self {
        let mut p = Parser::new(limits, true);
        for h in request_on_stream_1.iter().filter(|h| h.name.eq_ignore_ascii_case("http2-settings")) {
            for size in process::http2_settings_table_sizes(&h.value) {
                p.server.hpack.allow(size);
            }
        }
        p.streams.on_upgrade();
        p.events.push_back(H2Event::Headers {
            side: Side::Client,
            stream: 1,
            headers: request_on_stream_1,
            end_stream: true,
            kind: HeadersKind::Request,
        });
        p
    }

    /// Feeds bytes sent by `side`.
    pub fn feed(&mut self, side: Side, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut buf = std::mem::take(&mut self.half_mut(side).buf);
        if buf.is_empty() {
            let used = self.process(side, bytes, false);
            buf.extend_from_slice(bytes.get(used..).unwrap_or_default());
        } else {
            buf.extend_from_slice(bytes);
            let used = self.process(side, &buf, false);
            buf.drain(..used.min(buf.len()));
        }
        self.half_mut(side).buf = buf;
    }

    /// `missing` bytes sent by `side` were lost (see the module docs for what survives).
    pub fn gap(&mut self, side: Side, missing: u64) {
        if missing == 0 {
            return;
        }
        let half = self.half_mut(side);
        half.dropped = half.dropped.saturating_add(missing);
        if half.mode == Mode::Dead {
            return;
        }
        self.events.push_back(H2Event::Error(H2Error::Gap { side, bytes: missing }));
        if !self.skip_data_gap(side, missing) {
            self.stop(side);
        }
    }

    /// The sender of `side` closed its direction.
    pub fn close(&mut self, side: Side) {
        let buf = std::mem::take(&mut self.half_mut(side).buf);
        let used = self.process(side, &buf, true);
        let half = self.half_mut(side);
        let left = buf.len().saturating_sub(used);
        let open_block = half.block.take().is_some();
        if half.mode == Mode::Frames && (left > 0 || half.skip > 0 || open_block) {
            self.events.push_back(H2Event::Error(H2Error::Truncated { side, bytes: left }));
        }
        let half = self.half_mut(side);
        half.dropped = half.dropped.saturating_add(left as u64);
        half.skip = 0;
        half.mode = Mode::Dead;
    }

    /// The next event, in the order things happened.
    pub fn poll_event(&mut self) -> Option<H2Event> {
        self.events.pop_front()
    }

    /// Bytes held in partial frames and header block fragments.
    pub fn buffered_bytes(&self) -> usize {
        [&self.client, &self.server]
            .iter()
            .map(|h| h.buf.len() + h.block.as_ref().map_or(0, |b| b.fragment.len()))
            .sum()
    }

    /// Bytes of `side` that were not parsed: lost in gaps, skipped while looking for a frame
    /// boundary, or fed after that side stopped being parsed.
    pub fn dropped_bytes(&self, side: Side) -> u64 {
        self.half(side).dropped
    }

    /// Streams forgotten because more than [`Limits::max_streams_tracked`] were open.
    pub fn streams_evicted(&self) -> u64 {
        self.streams.evicted
    }

    /// Streams whose state is currently kept.
    pub fn streams_tracked(&self) -> usize {
        self.streams.len()
    }

    fn half(&self, side: Side) -> &Half {
        match side {
            Side::Client => &self.client,
            Side::Server => &self.server,
        }
    }

    fn half_mut(&mut self, side: Side) -> &mut Half {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// The header state of `side` is unknown from now on (announced once).
    fn forget_headers(&mut self, side: Side) {
        let half = self.half_mut(side);
        if let Some(b) = half.block.as_mut() {
            b.decode = false;
            b.fragment = Vec::new();
        }
        if !half.hpack.unknown {
            half.hpack.forget();
            self.events.push_back(H2Event::HpackStateUnknown { side });
        }
    }

    /// Stops parsing `side` for good: its framing is lost.
    fn stop(&mut self, side: Side) {
        let half = self.half_mut(side);
        half.mode = Mode::Dead;
        half.block = None;
        half.skip = 0;
        let pending = std::mem::take(&mut half.buf);
        half.dropped = half.dropped.saturating_add(pending.len() as u64);
        self.forget_headers(side);
    }
}

#[cfg(test)]
mod tests;
