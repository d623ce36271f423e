//! Property tests: generated conversations (pipelined, Content-Length and chunked bodies, trailers,
//! interim responses) fed in random chunkings give the same events as whole, and the bodies that
//! were sent; mutated conversations and random bytes never panic and never produce more output
//! than input.

use super::*;
use crate::fuzzing::{chunk_sizes, chunks, edits, mutate};
use proptest::prelude::*;

/// How one generated message carries its body.
#[derive(Debug, Clone)]
enum Framing {
    Length,
    /// Chunk sizes (cycled), and whether a trailer follows.
    Chunked(Vec<usize>, bool),
}

#[derive(Debug, Clone)]
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    framing: Framing,
}

impl Message {
    fn wire(&self) -> Vec<u8> {
        let mut w = format!("{}\r\n", self.start).into_bytes();
        for (n, v) in &self.headers {
            w.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        match &self.framing {
            Framing::Length => {
                w.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
                w.extend_from_slice(&self.body);
            }
            Framing::Chunked(sizes, trailer) => {
                w.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for c in chunks(&self.body, sizes) {
                    w.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    w.extend_from_slice(c);
                    w.extend_from_slice(b"\r\n");
                }
                w.extend_from_slice(b"0\r\n");
                if *trailer {
                    w.extend_from_slice(b"X-Checksum: 1\r\n");
                }
                w.extend_from_slice(b"\r\n");
            }
        }
        w
    }
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::Length),
        (proptest::collection::vec(1usize..100, 1..4), any::<bool>()).prop_map(|(s, t)| Framing::Chunked(s, t)),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(("X-[A-Za-z0-9-]{1,12}", "[ -~]{0,30}"), 0..5)
        .prop_map(|hs| hs.into_iter().map(|(n, v)| (n, v.trim().to_string())).collect())
}

fn request() -> impl Strategy<Value = Message> {
    (
        proptest::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        "/[a-z0-9/?=&._-]{0,30}",
        headers(),
        proptest::collection::vec(any::<u8>(), 0..300),
        framing(),
    )
        .prop_map(|(m, path, headers, body, framing)| Message {
            start: format!("{m} {path} HTTP/1.1"),
            headers,
            body,
            framing,
        })
}

/// A final response (with an optional `100 Continue` before it).
fn response() -> impl Strategy<Value = (bool, Message)> {
    (
        any::<bool>(),
        proptest::sample::select(vec![200u16, 201, 301, 400, 404, 500, 503]),
        headers(),
        proptest::collection::vec(any::<u8>(), 0..300),
        framing(),
    )
        .prop_map(|(cont, status, headers, body, framing)| {
            (cont, Message { start: format!("HTTP/1.1 {status} Whatever"), headers, body, framing })
        })
}

/// Request/response pairs; the wire puts each request before its response.
fn conversation() -> impl Strategy<Value = Vec<(Message, (bool, Message))>> {
    proptest::collection::vec((request(), response()), 1..5)
}

fn wire_of(conv: &[(Message, (bool, Message))]) -> Vec<(Side, Vec<u8>)> {
    let mut out = Vec::new();
    for (req, (cont, res)) in conv {
        out.push((Side::Client, req.wire()));
        let mut r = if *cont { b"HTTP/1.1 100 Continue\r\n\r\n".to_vec() } else { Vec::new() };
        r.extend_from_slice(&res.wire());
        out.push((Side::Server, r));
    }
    out
}

/// Feeds every segment cut by `sizes`, draining after each piece; adjacent body events merged.
fn feed(wire: &[(Side, Vec<u8>)], sizes: &[usize]) -> Vec<Http1Event> {
    let mut p = Parser::new(Limits::default());
    let mut out = Vec::new();
    for (side, bytes) in wire {
        for c in chunks(bytes, sizes) {
            p.feed(*side, c);
            while let Some(e) = p.poll_event() {
                out.push(e);
            }
        }
    }
    super::tests::normalize(out)
}

fn bodies(events: &[Http1Event], side: Side) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    for e in events {
        match (e, side) {
            (Http1Event::RequestHead(_), Side::Client) | (Http1Event::ResponseHead(_), Side::Server) => {
                cur = Some(Vec::new())
            }
            (Http1Event::RequestBody(b), Side::Client) | (Http1Event::ResponseBody(b), Side::Server) => {
                if let Some(c) = cur.as_mut() {
                    c.extend_from_slice(b);
                }
            }
            (Http1Event::RequestEnd { .. }, Side::Client) | (Http1Event::ResponseEnd { .. }, Side::Server) => {
                out.extend(cur.take())
            }
            _ => {}
        }
    }
    out
}

/// Total body bytes in the events, per side.
fn body_bytes(events: &[Http1Event]) -> (usize, usize) {
    events.iter().fold((0, 0), |(c, s), e| match e {
        Http1Event::RequestBody(b) => (c + b.len(), s),
        Http1Event::ResponseBody(b) => (c, s + b.len()),
        _ => (c, s),
    })
}

proptest! {
    #[test]
    fn fuzz_generated_conversations_parse_the_same_in_any_chunking(conv in conversation(), sizes in chunk_sizes()) {
        let wire = wire_of(&conv);
        let whole = feed(&wire, &[usize::MAX]);
        prop_assert_eq!(&feed(&wire, &sizes), &whole);
        prop_assert!(!whole.iter().any(|e| matches!(e, Http1Event::Error(_))), "{:?}", whole);
        let sent_requests: Vec<Vec<u8>> = conv.iter().map(|(q, _)| q.body.clone()).collect();
        let sent_responses: Vec<Vec<u8>> = conv.iter().map(|(_, (_, r))| r.body.clone()).collect();
        prop_assert_eq!(bodies(&whole, Side::Client), sent_requests);
        prop_assert_eq!(bodies(&whole, Side::Server), sent_responses);
        let interim = whole.iter().filter(|e| matches!(e, Http1Event::Informational(_))).count();
        prop_assert_eq!(interim, conv.iter().filter(|(_, (c, _))| *c).count());
    }

    #[test]
    fn fuzz_mutated_conversations_parse_the_same_in_any_chunking(conv in conversation(), e in edits(4), sizes in chunk_sizes()) {
        let wire: Vec<(Side, Vec<u8>)> = wire_of(&conv).into_iter().map(|(s, b)| (s, mutate(&b, &e))).collect();
        prop_assert_eq!(feed(&wire, &sizes), feed(&wire, &[usize::MAX]));
    }

    #[test]
    fn fuzz_mutated_conversations_never_panic_and_stay_bounded(
        conv in conversation(),
        client_edits in edits(8),
        server_edits in edits(8),
        sizes in chunk_sizes(),
        order in any::<u64>(),
        close in any::<bool>(),
    ) {
        let wire = wire_of(&conv);
        let client = mutate(&wire.iter().filter(|(s, _)| *s == Side::Client).flat_map(|(_, b)| b.clone()).collect::<Vec<_>>(), &client_edits);
        let server = mutate(&wire.iter().filter(|(s, _)| *s == Side::Server).flat_map(|(_, b)| b.clone()).collect::<Vec<_>>(), &server_edits);
        let limits = Limits { max_head_bytes: 1024, max_headers: 16 };
        let mut p = Parser::new(limits);
        let (c, s) = (chunks(&client, &sizes), chunks(&server, &sizes));
        let (mut ci, mut si, mut calls, mut events) = (0, 0, 0usize, Vec::new());
        // Interleave the two directions in an order picked by the bits of `order`.
        while ci < c.len() || si < s.len() {
            let client_next = si >= s.len() || (ci < c.len() && (order >> ((ci + si) % 64)) & 1 == 1);
            if client_next { p.feed(Side::Client, c[ci]); ci += 1 } else { p.feed(Side::Server, s[si]); si += 1 }
            calls += 1;
            while let Some(e) = p.poll_event() { events.push(e) }
            prop_assert!(p.buffered_bytes() <= 2 * limits.max_head_bytes);
        }
        if close {
            p.close(Side::Server);
            p.close(Side::Client);
            calls += 2;
            while let Some(e) = p.poll_event() { events.push(e) }
        }
        let (cb, sb) = body_bytes(&events);
        prop_assert!(cb <= client.len() && sb <= server.len(), "body bytes out {cb}/{sb} > in {}/{}", client.len(), server.len());
        prop_assert!(events.len() <= client.len() + server.len() + calls, "{} events", events.len());
    }

    #[test]
    fn fuzz_random_bytes_in_random_chunks_stay_bounded(
        client in proptest::collection::vec(any::<u8>(), 0..2000),
        server in proptest::collection::vec(any::<u8>(), 0..2000),
        sizes in chunk_sizes(),
    ) {
        let mut p = Parser::new(Limits { max_head_bytes: 512, max_headers: 8 });
        let mut events = 0usize;
        for (a, b) in chunks(&client, &sizes).into_iter().zip(chunks(&server, &sizes)) {
            p.feed(Side::Client, a);
            p.feed(Side::Server, b);
            while p.poll_event().is_some() { events += 1 }
            prop_assert!(p.buffered_bytes() <= 2 * 512);
        }
        prop_assert!(events <= client.len() + server.len());
    }
}
