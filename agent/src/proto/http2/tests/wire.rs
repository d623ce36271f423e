//! A test-only HTTP/2 writer: frames, HPACK-encoded header blocks, a script of segments.

use loona_hpack::Encoder;

use super::super::frame::{PREFACE, flag, kind};
use super::super::{Header, Side};

/// One frame on the wire.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS payload.
pub fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    params.iter().flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes())).collect()
}

/// A dynamic table size update (RFC 7541 §6.3).
pub fn size_update(size: usize) -> Vec<u8> {
    let mut b = loona_hpack::encoder::encode_integer(size, 5);
    b[0] |= 0x20;
    b
}

/// Header fields from pairs.
pub fn hdrs(pairs: &[(&str, &str)]) -> Vec<Header> {
    pairs.iter().map(|(n, v)| Header { name: n.to_string(), value: v.to_string() }).collect()
}

/// The bytes of a connection, as (side, segment) in arrival order, with one HPACK encoder per side.
pub struct Wire {
    pub segs: Vec<(Side, Vec<u8>)>,
    client_enc: Encoder<'static>,
    server_enc: Encoder<'static>,
}

impl Wire {
    /// Nothing sent yet.
    pub fn empty() -> Wire {
        Wire { segs: Vec::new(), client_enc: Encoder::new(), server_enc: Encoder::new() }
    }

    /// Client preface + empty SETTINGS, server SETTINGS, and the ACKs.
    pub fn new() -> Wire {
        let mut w = Wire::empty();
        let mut c = PREFACE.to_vec();
        c.extend(frame(kind::SETTINGS, 0, 0, &[]));
        w.raw(Side::Client, c);
        w.frame(Side::Server, kind::SETTINGS, 0, 0, &settings(&[(3, 100)]));
        w.frame(Side::Client, kind::SETTINGS, flag::ACK, 0, &[]);
        w.frame(Side::Server, kind::SETTINGS, flag::ACK, 0, &[]);
        w
    }

    pub fn raw(&mut self, side: Side, bytes: Vec<u8>) {
        self.segs.push((side, bytes));
    }

    pub fn frame(&mut self, side: Side, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.raw(side, frame(kind, flags, stream, payload));
    }

    /// Encodes `pairs` with `side`'s encoder (so repeated fields become indexed).
    pub fn block(&mut self, side: Side, pairs: &[(&str, &str)]) -> Vec<u8> {
        let enc = match side {
            Side::Client => &mut self.client_enc,
            Side::Server => &mut self.server_enc,
        };
        enc.encode(pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// Sets the table size of `side`'s encoder (the update itself must be written with [`size_update`]).
    pub fn set_table_size(&mut self, side: Side, size: usize) {
        match side {
            Side::Client => self.client_enc.set_max_table_size(size),
            Side::Server => self.server_enc.set_max_table_size(size),
        }
    }

    /// One HEADERS frame with END_HEADERS.
    pub fn headers(&mut self, side: Side, stream: u32, pairs: &[(&str, &str)], end_stream: bool) {
        let block = self.block(side, pairs);
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        self.frame(side, kind::HEADERS, flags, stream, &block);
    }

    /// One DATA frame.
    pub fn data(&mut self, side: Side, stream: u32, bytes: &[u8], end_stream: bool) {
        self.frame(side, kind::DATA, if end_stream { flag::END_STREAM } else { 0 }, stream, bytes);
    }

    /// All bytes of one side, concatenated.
    pub fn side_bytes(&self, side: Side) -> Vec<u8> {
        self.segs.iter().filter(|(s, _)| *s == side).flat_map(|(_, b)| b.iter().copied()).collect()
    }
}
