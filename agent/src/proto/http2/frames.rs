//! What each frame type means to an observer (RFC 9113 §6), and header block assembly.

use super::frame::{FrameHeader, be_u32, flag, header_table_sizes, kind, unpad};
use super::hpack::DecodeError;
use super::{Block, H2Error, H2Event, Parser, Side};

/// Clears the reserved bit of a stream id.
const STREAM_MASK: u32 = 0x7fff_ffff;

fn other(side: Side) -> Side {
    match side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    }
}

fn need_stream(h: &FrameHeader) -> Result<(), &'static str> {
    if h.stream == 0 { Err("stream frame on stream 0") } else { Ok(()) }
}

fn need_connection(h: &FrameHeader) -> Result<(), &'static str> {
    if h.stream != 0 { Err("connection frame on a stream") } else { Ok(()) }
}

fn need_len(ok: bool) -> Result<(), &'static str> {
    if ok { Ok(()) } else { Err("bad frame length") }
}

impl Parser {
    /// Handles one frame of `side`. `payload` is None when it is not available (the frame is
    /// too large, or lost in a gap): then only what the frame header says is used. A protocol
    /// violation stops parsing of that side.
    pub(super) fn on_frame(&mut self, side: Side, h: FrameHeader, payload: Option<&[u8]>) {
        if let Err(detail) = self.frame(side, h, payload) {
            self.events.push_back(H2Event::Error(H2Error::Protocol { side, detail }));
            self.stop(side);
        }
    }

    fn frame(&mut self, side: Side, h: FrameHeader, payload: Option<&[u8]>) -> Result<(), &'static str> {
        if let Some(b) = &self.half(side).block
            && (h.kind != kind::CONTINUATION || h.stream != b.stream)
        {
            return Err("header block not continued by CONTINUATION");
        }
        if h.stream != 0 {
            let bytes = h.total() as u64;
            self.events.push_back(H2Event::StreamBytes { side, stream: h.stream, bytes });
        }
        match h.kind {
            kind::DATA => {
                need_stream(&h)?;
                let bytes = match payload {
                    Some(p) => unpad(&h, p)?.to_vec(),
                    None => Vec::new(),
                };
                let end_stream = h.has(flag::END_STREAM);
                if !bytes.is_empty() || end_stream {
                    self.events.push_back(H2Event::Data { side, stream: h.stream, bytes, end_stream });
                }
                if end_stream {
                    self.streams.end(side, h.stream);
                }
            }
            kind::HEADERS => {
                need_stream(&h)?;
                let fragment = match payload {
                    Some(p) => {
                        let p = unpad(&h, p)?;
                        let skip = if h.has(flag::PRIORITY) { 5 } else { 0 };
                        Some(p.get(skip..).ok_or("HEADERS too short for its priority fields")?)
                    }
                    None => None,
                };
                self.begin_block(side, &h, false, 0, fragment);
            }
            kind::PUSH_PROMISE => {
                need_stream(&h)?;
                if side == Side::Client {
                    return Err("PUSH_PROMISE from the client");
                }
                let (promised, fragment) = match payload {
                    Some(p) => {
                        let p = unpad(&h, p)?;
                        let promised = be_u32(p, 0).ok_or("PUSH_PROMISE too short")? & STREAM_MASK;
                        (promised, p.get(4..))
                    }
                    None => (0, None),
                };
                self.begin_block(side, &h, true, promised, fragment);
            }
            kind::CONTINUATION => {
                if self.half(side).block.is_none() {
                    return Err("CONTINUATION without a header block");
                }
                self.add_fragment(side, payload);
                if h.has(flag::END_HEADERS) {
                    self.finish_block(side);
                }
            }
            kind::RST_STREAM => {
                need_stream(&h)?;
                need_len(h.len == 4)?;
                if let Some(error_code) = payload.and_then(|p| be_u32(p, 0)) {
                    self.events.push_back(H2Event::StreamReset { side, stream: h.stream, error_code });
                    self.streams.reset(h.stream);
                }
            }
            kind::SETTINGS => {
                need_connection(&h)?;
                need_len(h.len.is_multiple_of(6) && !(h.has(flag::ACK) && h.len != 0))?;
                // Settings sent by `side` bound the encoder of the other side.
                for size in payload.map(header_table_sizes).into_iter().flatten() {
                    self.half_mut(other(side)).hpack.allow(size);
                }
            }
            kind::PING => {
                need_connection(&h)?;
                need_len(h.len == 8)?;
            }
            kind::GOAWAY => {
                need_connection(&h)?;
                need_len(h.len >= 8)?;
                if let Some(p) = payload
                    && let (Some(last), Some(error_code)) = (be_u32(p, 0), be_u32(p, 4))
                {
                    let last_stream = last & STREAM_MASK;
                    self.events.push_back(H2Event::GoAway { side, last_stream, error_code });
                }
            }
            kind::WINDOW_UPDATE => need_len(h.len == 4)?,
            // PRIORITY (deprecated, a wrong length is only a stream error) and unknown types.
            _ => {}
        }
        Ok(())
    }

    /// Starts a header block with its first fragment (None: not available).
    fn begin_block(&mut self, side: Side, h: &FrameHeader, push: bool, promised: u32, fragment: Option<&[u8]>) {
        let decode = !self.half(side).hpack.unknown;
        self.half_mut(side).block = Some(Block {
            stream: h.stream,
            end_stream: !push && h.has(flag::END_STREAM),
            push,
            promised,
            fragment: Vec::new(),
            decode,
        });
        self.add_fragment(side, fragment);
        if h.has(flag::END_HEADERS) {
            self.finish_block(side);
        }
    }

    /// Appends a fragment to the open block, within the limit. A missing or oversized
    /// fragment makes the side's header state unknown.
    fn add_fragment(&mut self, side: Side, fragment: Option<&[u8]>) {
        let limit = self.limits.max_header_list;
        let Some(block) = self.half_mut(side).block.as_mut() else { return };
        if !block.decode {
            return;
        }
        let Some(f) = fragment else {
            self.forget_headers(side);
            return;
        };
        if block.fragment.len().saturating_add(f.len()) <= limit {
            block.fragment.extend_from_slice(f);
            return;
        }
        let stream = block.stream;
        self.events.push_back(H2Event::Error(H2Error::HeaderListTooLarge { side, stream, limit }));
        self.forget_headers(side);
    }

    /// The open block is complete: decode it (if possible) and report it.
    fn finish_block(&mut self, side: Side) {
        let limit = self.limits.max_header_list;
        let half = self.half_mut(side);
        let Some(block) = half.block.take() else { return };
        let stream = block.stream;
        let headers = if block.decode {
            match half.hpack.decode(&block.fragment, limit) {
                Ok(headers) => Some(headers),
                Err(DecodeError::TooLarge) => {
                    self.events.push_back(H2Event::Error(H2Error::HeaderListTooLarge { side, stream, limit }));
                    None
                }
                Err(DecodeError::Hpack(detail)) => {
                    self.events.push_back(H2Event::Error(H2Error::Hpack { side, stream, detail }));
                    self.forget_headers(side);
                    None
                }
            }
        } else {
            None
        };
        if block.push {
            if block.promised != 0 {
                self.streams.on_promise(block.promised);
            }
            if let Some(headers) = headers {
                self.events.push_back(H2Event::PushPromise { stream, promised: block.promised, headers });
            }
            return;
        }
        let end_stream = block.end_stream;
        let kind = self.streams.on_headers(side, stream, end_stream, headers.as_deref());
        if let Some(headers) = headers {
            self.events.push_back(H2Event::Headers { side, stream, headers, end_stream, kind });
        }
    }
}
