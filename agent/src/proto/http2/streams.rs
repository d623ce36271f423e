//! Per-stream state, just enough to label header blocks ([`HeadersKind`]).
//!
//! A stream is tracked from its first header block (or PUSH_PROMISE) until both sides
//! ended it or it was reset. The table holds at most `cap` streams; when full, the stream
//! with the lowest id (the oldest: ids only grow) is evicted and counted. A header block on
//! a stream with lost history (evicted, or opened before the capture) is labelled from its
//! content instead: trailers are the only blocks without pseudo-header fields.

use std::collections::BTreeMap;

use super::{Header, HeadersKind, Side};

#[derive(Debug, Default, Clone, Copy)]
struct Stream {
    request_seen: bool,
    response_seen: bool,
    client_ended: bool,
    server_ended: bool,
}

/// The stream table of one connection.
pub(super) struct Streams {
    map: BTreeMap<u32, Stream>,
    cap: usize,
    /// Highest stream id seen so far, per parity (client-initiated odd, server-initiated even).
    highest: [u32; 2],
    /// Streams dropped because the table was full.
    pub evicted: u64,
}

impl Streams {
    pub fn new(cap: usize) -> Streams {
        Streams { map: BTreeMap::new(), cap: cap.max(1), highest: [0; 2], evicted: 0 }
    }

    /// Streams currently tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The entry for `id`, created (evicting the oldest if full) if absent. The flag tells
    /// whether the stream is new: an id above every id seen before with its parity.
    fn entry(&mut self, id: u32) -> (&mut Stream, bool) {
        let parity = (id & 1) as usize;
        let fresh = id > self.highest[parity];
        if fresh {
            self.highest[parity] = id;
        }
        if !self.map.contains_key(&id) && self.map.len() >= self.cap && self.map.pop_first().is_some() {
            self.evicted += 1;
        }
        (self.map.entry(id).or_default(), fresh)
    }

    /// A complete header block from `side` on `id`; `headers` is None when it was not decoded.
    /// Returns the block's kind.
    pub fn on_headers(&mut self, side: Side, id: u32, end_stream: bool, headers: Option<&[Header]>) -> HeadersKind {
        let (st, fresh) = self.entry(id);
        let known = fresh || st.request_seen || st.response_seen;
        let kind = match side {
            Side::Client => {
                let head = if known { !st.request_seen } else { headers.is_some_and(has_pseudo) };
                if head {
                    st.request_seen = true;
                    HeadersKind::Request
                } else {
                    HeadersKind::Trailers
                }
            }
            Side::Server => {
                let status = headers.and_then(status);
                let head = if known { !st.response_seen } else { status.is_some() };
                match status {
                    Some(100..=199) if head => HeadersKind::Informational,
                    _ if head => {
                        // An undecoded block may have been 1xx: leave the head unseen then.
                        st.response_seen |= headers.is_some();
                        HeadersKind::Response
                    }
                    _ => HeadersKind::Trailers,
                }
            }
        };
        if end_stream {
            self.end(side, id);
        }
        kind
    }

    /// A PUSH_PROMISE reserved `promised`: its request is known, the client will send nothing.
    pub fn on_promise(&mut self, promised: u32) {
        let (st, _) = self.entry(promised);
        st.request_seen = true;
        st.client_ended = true;
    }

    /// The stream was upgraded from HTTP/1.1: the request was sent in full.
    pub fn on_upgrade(&mut self) {
        let (st, _) = self.entry(1);
        st.request_seen = true;
        st.client_ended = true;
    }

    /// `side` sent END_STREAM on `id`; forgets the stream once both sides did.
    pub fn end(&mut self, side: Side, id: u32) {
        let Some(st) = self.map.get_mut(&id) else { return };
        match side {
            Side::Client => st.client_ended = true,
            Side::Server => st.server_ended = true,
        }
        if st.client_ended && st.server_ended {
            self.map.remove(&id);
        }
    }

    /// The stream was reset.
    pub fn reset(&mut self, id: u32) {
        self.map.remove(&id);
    }
}

fn has_pseudo(headers: &[Header]) -> bool {
    headers.iter().any(|h| h.name.starts_with(':'))
}

fn status(headers: &[Header]) -> Option<u16> {
    headers.iter().find(|h| h.name == ":status").and_then(|h| h.value.trim().parse().ok())
}
