//! HTTP/2 transactions: one per stream, built from the parser's events (sans-I/O: the caller
//! passes the time of the record that carried the bytes).
//!
//! A stream becomes a transaction when its request headers were decoded; it is finished when
//! the server ends its side (END_STREAM on the response or its trailers) or resets a stream
//! whose response had started. Streams whose request was never seen (capture started in
//! the middle, or the HPACK state is unknown) are dropped and counted, never guessed.

use std::collections::HashMap;
use std::time::SystemTime;

use super::{BodyPolicy, HttpProtocol, Notice, Transaction};
use crate::proto::http1::{Header, RequestHead, ResponseHead, Side};
use crate::proto::http2::{H2Event, HeadersKind};

struct Stream {
    txn: Option<Transaction>,
    request_bytes: u64,
    response_bytes: u64,
}

/// Pairs the events of each stream of one HTTP/2 connection into transactions.
pub struct StreamAssembler {
    policy: BodyPolicy,
    streams: HashMap<u32, Stream>,
    max_streams: usize,
    /// Streams dropped without a decoded request (their headers were never readable).
    pub headless: u64,
}

fn field<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name == name).map(|h| h.value.as_str())
}

fn request_head(headers: Vec<Header>) -> RequestHead {
    let method = field(&headers, ":method").unwrap_or("").to_string();
    // CONNECT names the authority instead of a path.
    let target = field(&headers, ":path").or_else(|| field(&headers, ":authority")).unwrap_or("").to_string();
    RequestHead { method, target, version: 2, headers }
}

fn response_head(headers: Vec<Header>) -> ResponseHead {
    let status = field(&headers, ":status").and_then(|s| s.parse().ok()).unwrap_or(0);
    ResponseHead { status, reason: String::new(), version: 2, headers }
}

impl StreamAssembler {
    /// A new assembler; at most `max_streams` open streams are tracked (the oldest go first).
    pub fn new(policy: BodyPolicy, max_streams: usize) -> Self {
        Self { policy, streams: HashMap::new(), max_streams: max_streams.max(1), headless: 0 }
    }

    /// Streams with a request in flight.
    pub fn in_flight(&self) -> usize {
        self.streams.values().filter(|s| s.txn.is_some()).count()
    }

    fn stream(&mut self, id: u32) -> &mut Stream {
        if !self.streams.contains_key(&id)
            && self.streams.len() >= self.max_streams
            && let Some(&oldest) = self.streams.keys().min()
        {
            self.streams.remove(&oldest);
            self.headless += 1;
        }
        self.streams.entry(id).or_insert(Stream { txn: None, request_bytes: 0, response_bytes: 0 })
    }

    fn start(&mut self, id: u32, head: RequestHead, at: SystemTime) {
        let s = self.stream(id);
        s.txn = Some(Transaction::new(HttpProtocol::Http2, head, at));
    }

    fn finish(&mut self, id: u32, at: SystemTime, incomplete: bool, done: &mut Vec<Transaction>) {
        let Some(s) = self.streams.remove(&id) else { return };
        match s.txn {
            Some(mut txn) => {
                txn.end_time = at;
                txn.incomplete |= incomplete;
                txn.wire_bytes = Some((s.request_bytes, s.response_bytes));
                done.push(txn);
            }
            None => self.headless += 1,
        }
    }

    /// Applies one parser event observed at `at`.
    pub fn on_event(&mut self, event: H2Event, at: SystemTime, done: &mut Vec<Transaction>, notices: &mut Vec<Notice>) {
        let policy = self.policy;
        match event {
            H2Event::StreamBytes { side, stream, bytes } => {
                let s = self.stream(stream);
                match side {
                    Side::Client => s.request_bytes += bytes,
                    Side::Server => s.response_bytes += bytes,
                }
            }
            H2Event::Headers { side, stream, headers, end_stream, kind } => match kind {
                // A request that ends with its headers has no body; nothing more until the response.
                HeadersKind::Request => self.start(stream, request_head(headers), at),
                HeadersKind::Informational => {}
                HeadersKind::Response => {
                    if let Some(txn) = self.stream(stream).txn.as_mut() {
                        txn.response = Some(response_head(headers));
                        txn.response_time = Some(at);
                    }
                    if end_stream {
                        self.finish(stream, at, false, done);
                    }
                }
                HeadersKind::Trailers => {
                    if let Some(txn) = self.stream(stream).txn.as_mut() {
                        match side {
                            Side::Client => txn.request_trailers.extend(headers),
                            Side::Server => txn.response_trailers.extend(headers),
                        }
                    }
                    if side == Side::Server && end_stream {
                        self.finish(stream, at, false, done);
                    }
                }
            },
            H2Event::Data { side, stream, bytes, end_stream } => {
                let s = self.stream(stream);
                if let Some(txn) = s.txn.as_mut() {
                    match side {
                        Side::Client => txn.request_body.push(&bytes, policy),
                        Side::Server => txn.response_body.push(&bytes, policy),
                    }
                }
                if side == Side::Server && end_stream {
                    self.finish(stream, at, false, done);
                }
            }
            H2Event::StreamReset { stream, .. } => {
                let answered =
                    self.streams.get(&stream).and_then(|s| s.txn.as_ref()).is_some_and(|t| t.response.is_some());
                if answered {
                    self.finish(stream, at, true, done);
                } else if self.streams.remove(&stream).is_some_and(|s| s.txn.is_some()) {
                    notices.push(Notice::StreamReset);
                }
            }
            H2Event::PushPromise { promised, headers, .. } => self.start(promised, request_head(headers), at),
            H2Event::GoAway { .. } => {}
            H2Event::HpackStateUnknown { .. } => notices.push(Notice::HpackStateUnknown),
            H2Event::Error(e) => notices.push(Notice::Http2(e)),
        }
    }

    /// The connection ended: streams with a response are returned (cut short); the number of
    /// requests that never got one is returned beside them.
    pub fn finish_all(&mut self, at: SystemTime) -> (Vec<Transaction>, usize) {
        let mut done = Vec::new();
        let mut unanswered = 0;
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            let answered = self.streams.get(&id).and_then(|s| s.txn.as_ref()).map(|t| t.response.is_some());
            match answered {
                Some(true) => self.finish(id, at, true, &mut done),
                Some(false) => {
                    self.streams.remove(&id);
                    unanswered += 1;
                }
                None => {
                    self.streams.remove(&id);
                }
            }
        }
        (done, unanswered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn h(n: &str, v: &str) -> Header {
        Header { name: n.into(), value: v.into() }
    }
    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000 + ms)
    }
    fn policy() -> BodyPolicy {
        BodyPolicy { keep: true, cap: 1 << 20 }
    }
    fn headers(side: Side, stream: u32, kind: HeadersKind, end_stream: bool, hs: Vec<Header>) -> H2Event {
        H2Event::Headers { side, stream, headers: hs, end_stream, kind }
    }
    fn data(side: Side, stream: u32, b: &[u8], end_stream: bool) -> H2Event {
        H2Event::Data { side, stream, bytes: b.to_vec(), end_stream }
    }

    #[test]
    fn interleaved_streams_each_become_a_transaction_with_their_bytes() {
        let mut a = StreamAssembler::new(policy(), 100);
        let (mut done, mut notes) = (vec![], vec![]);
        let get = |p: &str| vec![h(":method", "GET"), h(":path", p), h(":authority", "x"), h(":scheme", "http")];
        for (i, id) in [1u32, 3].iter().enumerate() {
            a.on_event(
                H2Event::StreamBytes { side: Side::Client, stream: *id, bytes: 30 },
                t(0),
                &mut done,
                &mut notes,
            );
            a.on_event(
                headers(Side::Client, *id, HeadersKind::Request, true, get(&format!("/{i}"))),
                t(0),
                &mut done,
                &mut notes,
            );
        }
        for id in [3u32, 1] {
            a.on_event(H2Event::StreamBytes { side: Side::Server, stream: id, bytes: 20 }, t(5), &mut done, &mut notes);
            a.on_event(
                headers(Side::Server, id, HeadersKind::Response, false, vec![h(":status", "200")]),
                t(5),
                &mut done,
                &mut notes,
            );
        }
        a.on_event(data(Side::Server, 1, b"one", true), t(9), &mut done, &mut notes);
        a.on_event(data(Side::Server, 3, b"three", false), t(9), &mut done, &mut notes);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].request.target, "/0");
        assert_eq!(done[0].response_body.bytes, b"one");
        assert_eq!(done[0].wire_bytes, Some((30, 20)));
        assert_eq!(done[0].protocol, HttpProtocol::Http2);
        assert_eq!(done[0].duration_ms(), 5);
        a.on_event(
            headers(Side::Server, 3, HeadersKind::Trailers, true, vec![h("grpc-status", "0")]),
            t(12),
            &mut done,
            &mut notes,
        );
        assert_eq!(done.len(), 2);
        assert_eq!(done[1].response_body.bytes, b"three");
        assert_eq!(done[1].response_trailers, vec![h("grpc-status", "0")]);
        assert!(notes.is_empty());
    }

    #[test]
    fn streams_without_decoded_requests_are_never_guessed() {
        let mut a = StreamAssembler::new(policy(), 100);
        let (mut done, mut notes) = (vec![], vec![]);
        a.on_event(H2Event::HpackStateUnknown { side: Side::Client }, t(0), &mut done, &mut notes);
        a.on_event(data(Side::Client, 5, b"body", true), t(0), &mut done, &mut notes);
        a.on_event(data(Side::Server, 5, b"resp", true), t(1), &mut done, &mut notes);
        assert!(done.is_empty());
        assert_eq!(a.headless, 1);
        assert_eq!(notes, vec![Notice::HpackStateUnknown]);
    }

    #[test]
    fn reset_and_close_account_for_every_stream() {
        let mut a = StreamAssembler::new(policy(), 100);
        let (mut done, mut notes) = (vec![], vec![]);
        let req = vec![h(":method", "POST"), h(":path", "/p")];
        for id in [1u32, 3, 5] {
            a.on_event(
                headers(Side::Client, id, HeadersKind::Request, false, req.clone()),
                t(0),
                &mut done,
                &mut notes,
            );
        }
        a.on_event(data(Side::Client, 1, b"abc", true), t(1), &mut done, &mut notes);
        a.on_event(
            headers(Side::Server, 3, HeadersKind::Response, false, vec![h(":status", "500")]),
            t(2),
            &mut done,
            &mut notes,
        );
        a.on_event(H2Event::StreamReset { side: Side::Client, stream: 5, error_code: 8 }, t(3), &mut done, &mut notes);
        assert_eq!(notes, vec![Notice::StreamReset]);
        let (rest, unanswered) = a.finish_all(t(4));
        assert_eq!(unanswered, 1, "stream 1 never got a response");
        assert_eq!(rest.len(), 1);
        assert!(rest[0].incomplete, "stream 3 was cut by the close");
        assert_eq!(rest[0].response.as_ref().map(|r| r.status), Some(500));
    }

    #[test]
    fn pushed_streams_pair_with_their_promise() {
        let mut a = StreamAssembler::new(policy(), 100);
        let (mut done, mut notes) = (vec![], vec![]);
        let promise = vec![h(":method", "GET"), h(":path", "/style.css")];
        a.on_event(H2Event::PushPromise { stream: 1, promised: 2, headers: promise }, t(0), &mut done, &mut notes);
        a.on_event(
            headers(Side::Server, 2, HeadersKind::Response, false, vec![h(":status", "200")]),
            t(1),
            &mut done,
            &mut notes,
        );
        a.on_event(data(Side::Server, 2, b"body{}", true), t(2), &mut done, &mut notes);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].request.target, "/style.css");
    }

    #[test]
    fn the_open_stream_table_is_bounded() {
        let mut a = StreamAssembler::new(policy(), 2);
        let (mut done, mut notes) = (vec![], vec![]);
        for id in [1u32, 3, 5] {
            a.on_event(
                headers(Side::Client, id, HeadersKind::Request, true, vec![h(":method", "GET")]),
                t(0),
                &mut done,
                &mut notes,
            );
        }
        assert_eq!(a.in_flight(), 2);
        assert_eq!(a.headless, 1, "the oldest was dropped and counted");
    }
}
