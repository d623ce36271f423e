//! Transactions: pairs the HTTP/1 events of one connection into request/response
//! transactions, with timings and (bounded) bodies.
//!
//! Sans-I/O like the parsers: the caller passes the wall-clock time of the kernel record
//! that produced each event, so the assembler is deterministic and testable.

pub mod decode;
pub mod h2;

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::proto::http1::{Header, Http1Error, Http1Event, RequestHead, ResponseHead};

/// What the assembler keeps of a message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPolicy {
    /// Keep body bytes at all (capture level `full`, or a rule may want them).
    pub keep: bool,
    /// At most this many bytes are kept per body; the rest is counted, not stored.
    pub cap: usize,
}

/// A body as captured: the kept prefix and the full length seen on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    /// The kept bytes (empty unless the policy keeps bodies).
    pub bytes: Vec<u8>,
    /// Every decoded body byte seen, kept or not.
    pub len: u64,
    /// True when `len > bytes.len()` although bodies were kept (the cap was hit).
    pub truncated: bool,
}

impl Body {
    fn push(&mut self, chunk: &[u8], policy: BodyPolicy) {
        self.len += chunk.len() as u64;
        if !policy.keep {
            return;
        }
        let room = policy.cap.saturating_sub(self.bytes.len());
        let take = room.min(chunk.len());
        self.bytes.extend_from_slice(&chunk[..take]);
        if take < chunk.len() {
            self.truncated = true;
        }
    }
}

/// The HTTP version an exchange used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpProtocol {
    /// HTTP/1.x.
    #[default]
    Http1,
    /// HTTP/2 (one stream).
    Http2,
}

impl HttpProtocol {
    /// The data model's name: `http1` or `http2`.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpProtocol::Http1 => "http1",
            HttpProtocol::Http2 => "http2",
        }
    }
}

/// One finished (or abandoned) HTTP exchange.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// HTTP/1.x or one HTTP/2 stream.
    pub protocol: HttpProtocol,
    /// Bytes on the wire for (request, response) when the parser counted them (HTTP/2 frames of
    /// the stream); `None` for HTTP/1, where they are computed from the heads and bodies.
    pub wire_bytes: Option<(u64, u64)>,
    /// The request head.
    pub request: RequestHead,
    /// The request body.
    pub request_body: Body,
    /// Request trailers, if any.
    pub request_trailers: Vec<Header>,
    /// When the request head was seen.
    pub request_time: SystemTime,
    /// The final (non-1xx) response head, if one arrived.
    pub response: Option<ResponseHead>,
    /// The response body.
    pub response_body: Body,
    /// Response trailers, if any.
    pub response_trailers: Vec<Header>,
    /// When the response head was seen.
    pub response_time: Option<SystemTime>,
    /// When the exchange ended (response end, or abandonment).
    pub end_time: SystemTime,
    /// Bytes were lost inside this exchange (a kernel gap or a parse error).
    pub incomplete: bool,
}

impl Transaction {
    /// A transaction whose request head was seen at `at`, nothing else yet.
    pub fn new(protocol: HttpProtocol, request: RequestHead, at: SystemTime) -> Self {
        Transaction {
            protocol,
            wire_bytes: None,
            request,
            request_body: Body::default(),
            request_trailers: Vec::new(),
            request_time: at,
            response: None,
            response_body: Body::default(),
            response_trailers: Vec::new(),
            response_time: None,
            end_time: at,
            incomplete: false,
        }
    }

    /// Response head time minus request head time, in whole milliseconds (at least 1), as qtap computes it.
    pub fn duration_ms(&self) -> u64 {
        let end = self.response_time.unwrap_or(self.end_time);
        let ms = end.duration_since(self.request_time).map(|d| d.as_millis() as u64).unwrap_or(0);
        ms.max(1)
    }
}

/// What the assembler hands back besides finished transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The parser reported an error (gap, bad head, ...).
    ParseError(Http1Error),
    /// A response arrived with no request waiting for it (capture started mid-exchange).
    OrphanResponse,
    /// The connection switched protocols (101 / CONNECT); no more HTTP/1 follows.
    Upgraded,
    /// An HTTP/2 problem (protocol error, limit, lost bytes).
    Http2(crate::proto::http2::H2Error),
    /// The HTTP/2 header compression state of a direction is unknown (capture started in
    /// the middle of the connection, or bytes were lost): its headers cannot be read.
    HpackStateUnknown,
    /// An HTTP/2 stream was reset before its response started.
    StreamReset,
}

struct Pending {
    txn: Transaction,
    request_done: bool,
    response_started: bool,
}

/// Pairs requests with responses on one connection (FIFO, so pipelining works).
pub struct Assembler {
    policy: BodyPolicy,
    pending: VecDeque<Pending>,
    /// A response whose request we never saw: its body events are swallowed.
    orphan_response: bool,
}

impl Assembler {
    /// A new assembler for one connection.
    pub fn new(policy: BodyPolicy) -> Self {
        Self { policy, pending: VecDeque::new(), orphan_response: false }
    }

    /// Requests seen whose exchange has not finished yet.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Applies one parser event observed at `at`; finished transactions go to `done`,
    /// anything worth counting to `notices`.
    pub fn on_event(
        &mut self,
        event: Http1Event,
        at: SystemTime,
        done: &mut Vec<Transaction>,
        notices: &mut Vec<Notice>,
    ) {
        let policy = self.policy;
        match event {
            Http1Event::RequestHead(head) => self.pending.push_back(Pending {
                txn: Transaction::new(HttpProtocol::Http1, head, at),
                request_done: false,
                response_started: false,
            }),
            Http1Event::RequestBody(chunk) => {
                if let Some(p) = self.pending.iter_mut().rev().find(|p| !p.request_done) {
                    p.txn.request_body.push(&chunk, policy);
                }
            }
            Http1Event::RequestEnd { trailers } => {
                if let Some(p) = self.pending.iter_mut().rev().find(|p| !p.request_done) {
                    p.request_done = true;
                    p.txn.request_trailers = trailers;
                }
            }
            Http1Event::Informational(_) => {}
            Http1Event::ResponseHead(head) => match self.pending.iter_mut().find(|p| !p.response_started) {
                Some(p) => {
                    p.response_started = true;
                    p.txn.response = Some(head);
                    p.txn.response_time = Some(at);
                    self.orphan_response = false;
                }
                None => {
                    self.orphan_response = true;
                    notices.push(Notice::OrphanResponse);
                }
            },
            Http1Event::ResponseBody(chunk) => {
                if self.orphan_response {
                    return;
                }
                if let Some(p) = self.pending.iter_mut().find(|p| p.response_started) {
                    p.txn.response_body.push(&chunk, policy);
                }
            }
            Http1Event::ResponseEnd { trailers } => {
                if std::mem::take(&mut self.orphan_response) {
                    return;
                }
                if let Some(pos) = self.pending.iter().position(|p| p.response_started) {
                    // Responses come in request order; anything before it lost its response.
                    if let Some(mut p) = self.pending.remove(pos) {
                        p.txn.response_trailers = trailers;
                        p.txn.end_time = at;
                        done.push(p.txn);
                    }
                }
            }
            Http1Event::Upgraded => {
                // The handshake is a complete exchange: the response head ended it.
                if let Some(pos) = self.pending.iter().position(|p| p.response_started)
                    && let Some(mut p) = self.pending.remove(pos)
                {
                    p.txn.end_time = at;
                    done.push(p.txn);
                }
                notices.push(Notice::Upgraded);
            }
            Http1Event::Error(e) => {
                // Mark the exchange the error belongs to: the newest unfinished one.
                if let Some(p) = self.pending.back_mut() {
                    p.txn.incomplete = true;
                }
                notices.push(Notice::ParseError(e));
            }
        }
    }

    /// The connection ended: exchanges that have a response head are returned (their body
    /// may be cut short); requests that never got a response are returned separately.
    pub fn finish(&mut self, at: SystemTime) -> (Vec<Transaction>, usize) {
        let mut done = Vec::new();
        let mut unanswered = 0;
        for mut p in self.pending.drain(..) {
            if p.response_started {
                p.txn.end_time = at;
                p.txn.incomplete = true;
                done.push(p.txn);
            } else {
                unanswered += 1;
            }
        }
        (done, unanswered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn req(path: &str) -> Http1Event {
        Http1Event::RequestHead(RequestHead { method: "GET".into(), target: path.into(), version: 1, headers: vec![] })
    }
    fn res(status: u16) -> Http1Event {
        Http1Event::ResponseHead(ResponseHead { status, reason: String::new(), version: 1, headers: vec![] })
    }
    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000 + ms)
    }

    #[test]
    fn pipelined_requests_pair_in_order_with_durations() {
        let mut a = Assembler::new(BodyPolicy { keep: true, cap: 4 });
        let (mut done, mut notes) = (vec![], vec![]);
        for (i, p) in ["/a", "/b"].iter().enumerate() {
            a.on_event(req(p), t(i as u64), &mut done, &mut notes);
            a.on_event(Http1Event::RequestEnd { trailers: vec![] }, t(i as u64), &mut done, &mut notes);
        }
        a.on_event(res(200), t(10), &mut done, &mut notes);
        a.on_event(Http1Event::ResponseBody(b"hello".to_vec()), t(11), &mut done, &mut notes);
        a.on_event(Http1Event::ResponseEnd { trailers: vec![] }, t(12), &mut done, &mut notes);
        a.on_event(res(404), t(30), &mut done, &mut notes);
        a.on_event(Http1Event::ResponseEnd { trailers: vec![] }, t(31), &mut done, &mut notes);
        assert_eq!(done.len(), 2);
        assert_eq!(done[0].request.target, "/a");
        assert_eq!(done[0].response.as_ref().map(|r| r.status), Some(200));
        assert_eq!(done[0].response_body.bytes, b"hell");
        assert_eq!(done[0].response_body.len, 5);
        assert!(done[0].response_body.truncated);
        assert_eq!(done[0].duration_ms(), 10);
        assert_eq!(done[1].request.target, "/b");
        assert_eq!(done[1].response.as_ref().map(|r| r.status), Some(404));
        assert_eq!(done[1].duration_ms(), 29);
        assert!(notes.is_empty());
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn bodies_are_not_kept_below_full_but_counted() {
        let mut a = Assembler::new(BodyPolicy { keep: false, cap: 1 << 20 });
        let (mut done, mut notes) = (vec![], vec![]);
        a.on_event(req("/"), t(0), &mut done, &mut notes);
        a.on_event(Http1Event::RequestBody(vec![1; 100]), t(0), &mut done, &mut notes);
        a.on_event(Http1Event::RequestEnd { trailers: vec![] }, t(0), &mut done, &mut notes);
        a.on_event(res(200), t(0), &mut done, &mut notes);
        a.on_event(Http1Event::ResponseEnd { trailers: vec![] }, t(0), &mut done, &mut notes);
        assert_eq!(done[0].request_body.len, 100);
        assert!(done[0].request_body.bytes.is_empty());
        assert!(!done[0].request_body.truncated);
        assert_eq!(done[0].duration_ms(), 1, "durations are at least 1 ms");
    }

    #[test]
    fn orphan_response_is_reported_and_its_body_swallowed() {
        let mut a = Assembler::new(BodyPolicy { keep: true, cap: 100 });
        let (mut done, mut notes) = (vec![], vec![]);
        a.on_event(res(200), t(0), &mut done, &mut notes);
        a.on_event(Http1Event::ResponseBody(b"x".to_vec()), t(0), &mut done, &mut notes);
        a.on_event(Http1Event::ResponseEnd { trailers: vec![] }, t(0), &mut done, &mut notes);
        assert!(done.is_empty());
        assert_eq!(notes, vec![Notice::OrphanResponse]);
        // The next real exchange still pairs.
        a.on_event(req("/n"), t(1), &mut done, &mut notes);
        a.on_event(Http1Event::RequestEnd { trailers: vec![] }, t(1), &mut done, &mut notes);
        a.on_event(res(201), t(2), &mut done, &mut notes);
        a.on_event(Http1Event::ResponseEnd { trailers: vec![] }, t(3), &mut done, &mut notes);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].request.target, "/n");
    }

    #[test]
    fn finish_returns_started_exchanges_and_counts_unanswered() {
        let mut a = Assembler::new(BodyPolicy { keep: true, cap: 100 });
        let (mut done, mut notes) = (vec![], vec![]);
        a.on_event(req("/1"), t(0), &mut done, &mut notes);
        a.on_event(Http1Event::RequestEnd { trailers: vec![] }, t(0), &mut done, &mut notes);
        a.on_event(req("/2"), t(0), &mut done, &mut notes);
        a.on_event(Http1Event::RequestEnd { trailers: vec![] }, t(0), &mut done, &mut notes);
        a.on_event(res(200), t(5), &mut done, &mut notes);
        a.on_event(Http1Event::ResponseBody(b"par".to_vec()), t(6), &mut done, &mut notes);
        let (fin, unanswered) = a.finish(t(9));
        assert_eq!(fin.len(), 1);
        assert!(fin[0].incomplete);
        assert_eq!(fin[0].response_body.bytes, b"par");
        assert_eq!(unanswered, 1);
    }
}
