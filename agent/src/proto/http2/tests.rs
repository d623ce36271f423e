//! Wire fixtures built with a test frame writer and `loona_hpack::Encoder`, fed whole, split at
//! every byte boundary and in random chunks: the events must not depend on how bytes arrive.

mod fuzz;
mod wire;

use super::frame::{PREFACE, flag, kind};
use super::*;
use proptest::prelude::*;
use wire::{Wire, frame, hdrs, settings, size_update};

const C: Side = Side::Client;
const S: Side = Side::Server;

fn drain(p: &mut Parser, out: &mut Vec<H2Event>) {
    while let Some(e) = p.poll_event() {
        out.push(e);
    }
}

fn feed_all(p: &mut Parser, segs: &[(Side, Vec<u8>)]) -> Vec<H2Event> {
    let mut out = Vec::new();
    for (side, bytes) in segs {
        p.feed(*side, bytes);
        drain(p, &mut out);
    }
    drain(p, &mut out);
    out
}

fn run(w: &Wire) -> Vec<H2Event> {
    feed_all(&mut Parser::new(Limits::default(), true), &w.segs)
}

/// Every byte with its side, in arrival order.
fn flatten(segs: &[(Side, Vec<u8>)]) -> Vec<(Side, u8)> {
    segs.iter().flat_map(|(s, b)| b.iter().map(move |&x| (*s, x))).collect()
}

/// Regroups bytes into segments, cutting where the side changes and at each of `cuts`.
fn regroup(flat: &[(Side, u8)], cuts: &[usize]) -> Vec<(Side, Vec<u8>)> {
    let mut out: Vec<(Side, Vec<u8>)> = Vec::new();
    for (i, &(side, b)) in flat.iter().enumerate() {
        match out.last_mut() {
            Some((s, seg)) if *s == side && !cuts.contains(&i) => seg.push(b),
            _ => out.push((side, vec![b])),
        }
    }
    out
}

/// (side, stream, kind, headers, end_stream) of every Headers event.
fn heads(ev: &[H2Event]) -> Vec<(Side, u32, HeadersKind, Vec<Header>, bool)> {
    ev.iter()
        .filter_map(|e| match e {
            H2Event::Headers { side, stream, headers, end_stream, kind } => {
                Some((*side, *stream, *kind, headers.clone(), *end_stream))
            }
            _ => None,
        })
        .collect()
}

fn body(ev: &[H2Event], side: Side, stream: u32) -> Vec<u8> {
    ev.iter()
        .filter_map(|e| match e {
            H2Event::Data { side: s, stream: id, bytes, .. } if *s == side && *id == stream => Some(bytes.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn wire_bytes(ev: &[H2Event], side: Side, stream: u32) -> u64 {
    ev.iter()
        .map(|e| match e {
            H2Event::StreamBytes { side: s, stream: id, bytes } if *s == side && *id == stream => *bytes,
            _ => 0,
        })
        .sum()
}

/// Bytes of the frames `side` sent on `stream` (every segment but the preface is one frame).
fn sent_on(w: &Wire, side: Side, stream: u32) -> u64 {
    w.segs
        .iter()
        .filter(|(s, b)| *s == side && !b.starts_with(PREFACE) && b[5..9] == stream.to_be_bytes())
        .map(|(_, b)| b.len() as u64)
        .sum()
}

fn count(ev: &[H2Event], f: impl Fn(&H2Event) -> bool) -> usize {
    ev.iter().filter(|e| f(e)).count()
}

fn unknown(ev: &[H2Event], side: Side) -> usize {
    count(ev, |e| matches!(e, H2Event::HpackStateUnknown { side: s } if *s == side))
}

fn errors(ev: &[H2Event]) -> Vec<H2Error> {
    ev.iter()
        .filter_map(|e| match e {
            H2Event::Error(err) => Some(err.clone()),
            _ => None,
        })
        .collect()
}

/// `loona_hpack::Encoder` only adds fields whose name is not in the static table to the dynamic table.
const GET: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":authority", "example.com"),
    (":path", "/"),
    ("x-client", "tapline-test"),
];
const OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/plain"), ("x-backend", "b1")];

/// A connection exercising most frame types; stream 1 is a GET, 3 a padded POST with
/// trailers, 5 a split header block, 7 gets 103 then a reset, 2 is pushed.
fn everything() -> Wire {
    let mut w = Wire::new();
    w.headers(C, 1, GET, true);
    let post =
        w.block(C, &[(":method", "POST"), (":scheme", "https"), (":authority", "example.com"), (":path", "/up")]);
    let mut prio = vec![3, 0x80, 0, 0, 0, 16]; // pad 3, exclusive dependency on 0, weight 16
    prio.extend(&post);
    prio.extend([0; 3]);
    w.frame(C, kind::HEADERS, flag::END_HEADERS | flag::PADDED | flag::PRIORITY, 3, &prio);
    let big = w.block(C, &[(":method", "GET"), (":path", "/split"), ("x-long", &"v".repeat(40))]);
    let (a, b) = big.split_at(10);
    let (b, c) = b.split_at(7);
    w.frame(C, kind::HEADERS, flag::END_STREAM, 5, a);
    w.frame(C, kind::CONTINUATION, 0, 5, b);
    w.frame(C, kind::CONTINUATION, flag::END_HEADERS, 5, c);
    w.frame(C, kind::DATA, flag::PADDED, 3, &[4, b'a', b'b', 0, 0, 0, 0]);
    w.frame(C, kind::PING, 0, 0, &[1; 8]);
    w.frame(C, kind::WINDOW_UPDATE, 0, 0, &100u32.to_be_bytes());
    w.headers(C, 7, &[(":method", "GET"), (":path", "/slow")], true);
    w.headers(S, 1, OK, false);
    let push = w.block(S, &[(":method", "GET"), (":path", "/style.css"), (":authority", "example.com")]);
    let mut pp = 2u32.to_be_bytes().to_vec();
    pp.extend(&push);
    w.frame(S, kind::PUSH_PROMISE, flag::END_HEADERS, 1, &pp);
    w.frame(S, 0xfa, 0x3, 1, b"unknown type");
    w.data(S, 1, b"hello ", false);
    w.frame(C, kind::DATA, flag::END_STREAM, 3, b"cd");
    w.headers(S, 7, &[(":status", "103"), ("link", "</style.css>")], false);
    w.headers(S, 3, OK, false);
    w.data(S, 1, b"world", true);
    w.frame(S, kind::WINDOW_UPDATE, 0, 3, &1u32.to_be_bytes());
    w.headers(S, 5, &[(":status", "404")], true);
    w.data(S, 3, b"ok", false);
    w.frame(C, kind::RST_STREAM, 0, 7, &8u32.to_be_bytes());
    w.headers(S, 2, &[(":status", "200"), ("content-type", "text/css")], false);
    w.data(S, 2, b"body{}", true);
    w.headers(S, 3, &[("grpc-status", "0")], true);
    w.frame(S, kind::GOAWAY, 0, 0, &[0, 0, 0, 7, 0, 0, 0, 0]);
    w
}

#[test]
fn get_200_and_indexed_second_request() {
    let mut w = Wire::new();
    w.headers(C, 1, GET, true);
    w.headers(S, 1, OK, false);
    w.data(S, 1, b"hi", true);
    let first = w.block(C, GET); // the second encoding of GET: x-client is now a dynamic table index
    assert!(first.contains(&(0x80 | 62)) && !first.windows(8).any(|x| x == b"tapline-"), "{first:?}");
    w.frame(C, kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 3, &first);
    let again = w.block(S, OK);
    w.frame(S, kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 3, &again);
    let ev = run(&w);
    let resp_len = frame(kind::HEADERS, 0, 1, &Wire::empty().block(S, OK)).len() as u64;
    let expected = vec![
        H2Event::StreamBytes { side: C, stream: 1, bytes: wire_bytes(&ev, C, 1) },
        H2Event::Headers { side: C, stream: 1, headers: hdrs(GET), end_stream: true, kind: HeadersKind::Request },
        H2Event::StreamBytes { side: S, stream: 1, bytes: resp_len },
        H2Event::Headers { side: S, stream: 1, headers: hdrs(OK), end_stream: false, kind: HeadersKind::Response },
        H2Event::StreamBytes { side: S, stream: 1, bytes: 11 },
        H2Event::Data { side: S, stream: 1, bytes: b"hi".to_vec(), end_stream: true },
        H2Event::StreamBytes { side: C, stream: 3, bytes: 9 + first.len() as u64 },
        H2Event::Headers { side: C, stream: 3, headers: hdrs(GET), end_stream: true, kind: HeadersKind::Request },
        H2Event::StreamBytes { side: S, stream: 3, bytes: 9 + again.len() as u64 },
        H2Event::Headers { side: S, stream: 3, headers: hdrs(OK), end_stream: true, kind: HeadersKind::Response },
    ];
    assert_eq!(ev, expected);
    let p = {
        let mut p = Parser::new(Limits::default(), true);
        feed_all(&mut p, &w.segs);
        p
    };
    assert_eq!(p.streams_tracked(), 0, "finished streams are forgotten");
    assert_eq!(p.buffered_bytes(), 0);
}

#[test]
fn post_with_split_and_padded_data() {
    let mut w = Wire::new();
    w.headers(C, 1, &[(":method", "POST"), (":path", "/u"), (":scheme", "http"), (":authority", "h")], false);
    w.data(C, 1, b"hel", false);
    w.frame(C, kind::DATA, flag::PADDED, 1, &[5, b'l', b'o', b' ', 0, 0, 0, 0, 0]);
    w.frame(C, kind::DATA, flag::PADDED, 1, &[0]); // padded, empty: no event
    w.frame(C, kind::DATA, flag::PADDED | flag::END_STREAM, 1, &[2, b'w', b'o', b'r', b'l', b'd', 0, 0]);
    w.headers(S, 1, &[(":status", "201")], true);
    let ev = run(&w);
    assert_eq!(body(&ev, C, 1), b"hello world");
    let data: Vec<_> = ev.iter().filter(|e| matches!(e, H2Event::Data { .. })).collect();
    assert_eq!(data.len(), 3);
    assert!(matches!(data[2], H2Event::Data { end_stream: true, .. }));
    let sent: u64 = w.segs[4..9].iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(wire_bytes(&ev, C, 1), sent, "headers + data frames, padding included");
    assert_eq!(heads(&ev)[1].2, HeadersKind::Response);
    assert!(errors(&ev).is_empty());
}

#[test]
fn everything_decodes() {
    let w = everything();
    let ev = run(&w);
    assert!(errors(&ev).is_empty(), "{:?}", errors(&ev));
    let hs = heads(&ev);
    let kinds: Vec<_> = hs.iter().map(|h| (h.0, h.1, h.2)).collect();
    use HeadersKind::*;
    assert_eq!(
        kinds,
        vec![
            (C, 1, Request),
            (C, 3, Request),
            (C, 5, Request),
            (C, 7, Request),
            (S, 1, Response),
            (S, 7, Informational),
            (S, 3, Response),
            (S, 5, Response),
            (S, 2, Response),
            (S, 3, Trailers),
        ]
    );
    assert_eq!(hs[2].3, hdrs(&[(":method", "GET"), (":path", "/split"), ("x-long", &"v".repeat(40))]));
    assert_eq!(hs[1].3[3], Header { name: ":path".into(), value: "/up".into() });
    assert_eq!(hs[9].3, hdrs(&[("grpc-status", "0")]));
    assert!(hs[9].4);
    assert_eq!(body(&ev, C, 3), b"abcd");
    assert_eq!(body(&ev, S, 1), b"hello world");
    assert_eq!(body(&ev, S, 2), b"body{}");
    assert!(ev.contains(&H2Event::PushPromise {
        stream: 1,
        promised: 2,
        headers: hdrs(&[(":method", "GET"), (":path", "/style.css"), (":authority", "example.com")]),
    }));
    assert!(ev.contains(&H2Event::StreamReset { side: C, stream: 7, error_code: 8 }));
    assert_eq!(ev.last(), Some(&H2Event::GoAway { side: S, last_stream: 7, error_code: 0 }));
    // Unknown frame types and WINDOW_UPDATE on a stream are only counted.
    for (side, id) in [(C, 1), (C, 3), (C, 5), (S, 1), (S, 2), (S, 3), (S, 5)] {
        assert_eq!(wire_bytes(&ev, side, id), sent_on(&w, side, id), "{side:?} {id}");
    }
    assert_eq!(unknown(&ev, C) + unknown(&ev, S), 0);
}

#[test]
fn every_two_part_split_gives_the_same_events() {
    let w = everything();
    let whole = run(&w);
    let flat = flatten(&w.segs);
    for cut in 1..flat.len() {
        let segs = regroup(&flat, &[cut]);
        assert_eq!(feed_all(&mut Parser::new(Limits::default(), true), &segs), whole, "cut at {cut}");
    }
    let bytewise = regroup(&flat, &(0..flat.len()).collect::<Vec<_>>());
    assert_eq!(feed_all(&mut Parser::new(Limits::default(), true), &bytewise), whole, "byte at a time");
}

#[test]
fn interleaved_streams() {
    let mut w = Wire::new();
    for id in [1, 3, 5] {
        w.headers(C, id, &[(":method", "POST"), (":path", &format!("/{id}"))], false);
    }
    for round in 0..3u8 {
        for id in [5, 1, 3] {
            w.data(C, id, &[b'a' + round; 3], round == 2);
        }
    }
    for id in [3, 5, 1] {
        w.headers(S, id, &[(":status", "200"), ("x-id", &id.to_string())], false);
    }
    for id in [1, 5, 3] {
        w.data(S, id, format!("r{id}").as_bytes(), false);
        w.data(S, id, b"!", true);
    }
    let ev = run(&w);
    for id in [1, 3, 5] {
        assert_eq!(body(&ev, C, id), b"aaabbbccc");
        assert_eq!(body(&ev, S, id), format!("r{id}!").as_bytes());
    }
    let hs = heads(&ev);
    assert_eq!(hs.len(), 6);
    assert!(hs[3..].iter().all(|h| h.2 == HeadersKind::Response && h.3[1].value == h.1.to_string()));
}

#[test]
fn continuation_split_across_feeds() {
    let mut w = Wire::new();
    let block = w.block(C, &[(":method", "GET"), (":path", "/cont"), ("cookie", &"c".repeat(100))]);
    let mut bytes = frame(kind::HEADERS, flag::END_STREAM, 1, &block[..5]);
    bytes.extend(frame(kind::CONTINUATION, 0, 1, &block[5..60]));
    bytes.extend(frame(kind::CONTINUATION, flag::END_HEADERS, 1, &block[60..]));
    let mut p = Parser::new(Limits::default(), true);
    let mut ev = feed_all(&mut p, &w.segs);
    for chunk in bytes.chunks(7) {
        p.feed(C, chunk);
        drain(&mut p, &mut ev);
        if p.buffered_bytes() > 0 {
            assert!(heads(&ev).is_empty(), "no headers before the block ends");
        }
    }
    let hs = heads(&ev);
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0].3[2].value.len(), 100);
    assert!(hs[0].4, "END_STREAM comes from the HEADERS frame");
    assert_eq!(wire_bytes(&ev, C, 1), bytes.len() as u64);
}

#[test]
fn interrupted_header_block_is_a_protocol_error() {
    let mut w = Wire::new();
    let block = w.block(C, GET);
    w.frame(C, kind::HEADERS, 0, 1, &block[..4]);
    w.data(C, 1, b"x", false);
    w.headers(S, 2, OK, true);
    let ev = run(&w);
    assert!(matches!(errors(&ev)[..], [H2Error::Protocol { side: C, .. }]));
    assert_eq!(unknown(&ev, C), 1);
    assert_eq!(heads(&ev).len(), 1, "the server side is still decoded");
}

#[test]
fn headers_with_priority_and_padding() {
    let mut w = Wire::new();
    let block = w.block(C, GET);
    let mut payload = vec![200];
    payload.extend([0, 0, 0, 3, 255]);
    payload.extend(&block);
    payload.extend([0u8; 200]);
    w.frame(C, kind::HEADERS, flag::PADDED | flag::PRIORITY | flag::END_HEADERS | flag::END_STREAM, 1, &payload);
    w.frame(C, kind::PRIORITY, 0, 3, &[0, 0, 0, 1, 7]);
    let ev = run(&w);
    assert_eq!(heads(&ev), vec![(C, 1, HeadersKind::Request, hdrs(GET), true)]);
    assert_eq!(wire_bytes(&ev, C, 1), 9 + payload.len() as u64);
    assert_eq!(wire_bytes(&ev, C, 3), 14);
    // Padding longer than the payload breaks the framing of that side.
    let mut w = Wire::new();
    w.frame(C, kind::HEADERS, flag::PADDED | flag::END_HEADERS, 1, &[9, 0x82]);
    let ev = run(&w);
    assert!(matches!(errors(&ev)[..], [H2Error::Protocol { side: C, .. }]));
}

#[test]
fn grpc_trailers() {
    let mut w = Wire::new();
    let req =
        [(":method", "POST"), (":path", "/pkg.Svc/Call"), ("content-type", "application/grpc"), ("te", "trailers")];
    w.headers(C, 1, &req, false);
    w.data(C, 1, &[0, 0, 0, 0, 2, 8, 1], true);
    w.headers(S, 1, &[(":status", "200"), ("content-type", "application/grpc")], false);
    w.data(S, 1, &[0, 0, 0, 0, 0], false);
    w.headers(S, 1, &[("grpc-status", "0"), ("grpc-message", "")], true);
    let ev = run(&w);
    let hs = heads(&ev);
    assert_eq!(hs[2].2, HeadersKind::Trailers);
    assert_eq!(hs[2].3, hdrs(&[("grpc-status", "0"), ("grpc-message", "")]));
    assert!(hs[2].4);
}

#[test]
fn informational_responses() {
    let mut w = Wire::new();
    w.headers(C, 1, &[(":method", "POST"), (":path", "/"), ("expect", "100-continue")], false);
    w.headers(S, 1, &[(":status", "100")], false);
    w.data(C, 1, b"x", true);
    w.headers(S, 1, &[(":status", "103"), ("link", "<a>")], false);
    w.headers(S, 1, &[(":status", "204")], true);
    let kinds: Vec<_> = heads(&run(&w)).iter().map(|h| h.2).collect();
    use HeadersKind::*;
    assert_eq!(kinds, vec![Request, Informational, Informational, Response]);
}

#[test]
fn rst_stream_and_goaway() {
    let mut w = Wire::new();
    w.headers(C, 1, GET, true);
    w.frame(S, kind::RST_STREAM, 0, 1, &7u32.to_be_bytes());
    w.frame(C, kind::GOAWAY, 0, 0, &[0x80, 0, 0, 2, 0, 0, 0, 1, b'd', b'b', b'g']);
    let mut p = Parser::new(Limits::default(), true);
    let ev = feed_all(&mut p, &w.segs);
    let tail = &ev[ev.len() - 3..];
    assert_eq!(
        tail,
        [
            H2Event::StreamBytes { side: S, stream: 1, bytes: 13 },
            H2Event::StreamReset { side: S, stream: 1, error_code: 7 },
            H2Event::GoAway { side: C, last_stream: 2, error_code: 1 },
        ]
    );
    assert_eq!(p.streams_tracked(), 0);
}

#[test]
fn ping_window_update_and_unknown_types_are_ignored() {
    let mut w = Wire::new();
    w.frame(C, kind::PING, 0, 0, &[0; 8]);
    w.frame(S, kind::PING, flag::ACK, 0, &[0; 8]);
    w.frame(S, kind::WINDOW_UPDATE, 0, 0, &[0, 1, 0, 0]);
    w.frame(C, kind::WINDOW_UPDATE, 0, 9, &[0, 1, 0, 0]);
    w.frame(C, 0x0b, 0xff, 0, b"altsvc-ish");
    w.frame(S, 0x10, 0, 11, b"?");
    let ev = run(&w);
    assert_eq!(
        ev,
        vec![
            H2Event::StreamBytes { side: C, stream: 9, bytes: 13 },
            H2Event::StreamBytes { side: S, stream: 11, bytes: 10 },
        ]
    );
}

#[test]
fn dynamic_table_eviction_with_a_small_table() {
    let mut w = Wire::new();
    // The client allows the server's encoder only 200 bytes of table.
    w.frame(C, kind::SETTINGS, 0, 0, &settings(&[(1, 200)]));
    w.set_table_size(S, 200);
    let mut expected = Vec::new();
    for i in 0..30u32 {
        let id = 2 * i + 1;
        w.headers(C, id, &[(":method", "GET"), (":path", "/")], true);
        let name = format!("x-field-{}", i % 7);
        let value = format!("value-{i}");
        let fields = [(":status", "200"), (name.as_str(), value.as_str()), ("x-same", "same-every-time")];
        let mut block = if i == 0 { size_update(200) } else { Vec::new() };
        block.extend(w.block(S, &fields));
        w.frame(S, kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, id, &block);
        expected.push(hdrs(&fields));
    }
    let ev = run(&w);
    assert!(errors(&ev).is_empty(), "{:?}", errors(&ev));
    let got: Vec<_> = heads(&ev).into_iter().filter(|h| h.0 == S).map(|h| h.3).collect();
    assert_eq!(got, expected);
}

#[test]
fn dynamic_table_size_updates() {
    // Shrink to 0 (flush) and grow back inside one block.
    let mut w = Wire::new();
    w.headers(C, 1, GET, true);
    w.set_table_size(C, 0);
    w.set_table_size(C, 4096);
    let mut block = size_update(0);
    block.extend(size_update(4096));
    block.extend(w.block(C, GET));
    w.frame(C, kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 3, &block);
    w.headers(C, 5, GET, true);
    let ev = run(&w);
    assert!(errors(&ev).is_empty());
    assert!(heads(&ev).iter().all(|h| h.3 == hdrs(GET)));
    assert_eq!(heads(&ev).len(), 3);

    // Growing beyond what the peer advertised is an HPACK error: the side's state is unknown.
    let mut w = Wire::new();
    w.frame(S, kind::HEADERS, flag::END_HEADERS, 1, &[size_update(8192), vec![0x88]].concat());
    w.headers(S, 3, OK, true);
    let ev = run(&w);
    assert!(matches!(errors(&ev)[..], [H2Error::Hpack { side: S, stream: 1, .. }]));
    assert_eq!(unknown(&ev, S), 1);
    assert!(heads(&ev).is_empty());

    // ... but fine once the client advertised it (SETTINGS from the client bound the server's encoder).
    let mut w = Wire::new();
    w.frame(C, kind::SETTINGS, 0, 0, &settings(&[(1, 65536)]));
    w.frame(S, kind::HEADERS, flag::END_HEADERS, 1, &[size_update(65536), vec![0x88]].concat());
    let ev = run(&w);
    assert!(errors(&ev).is_empty());
    assert_eq!(heads(&ev)[0].3, hdrs(&[(":status", "200")]));
}

#[test]
fn mid_connection_start_never_decodes_headers() {
    let w = everything();
    let full = run(&w);
    for (cut_c, cut_s) in [(0, 0), (150, 40), (163, 77), (201, 95), (3, 1)] {
        let c = w.side_bytes(C);
        let s = w.side_bytes(S);
        let mut p = Parser::new(Limits::default(), false);
        let mut ev = Vec::new();
        drain(&mut p, &mut ev);
        assert_eq!(ev, vec![H2Event::HpackStateUnknown { side: C }, H2Event::HpackStateUnknown { side: S }]);
        for chunk in c[cut_c..].chunks(50) {
            p.feed(C, chunk);
        }
        for chunk in s[cut_s..].chunks(33) {
            p.feed(S, chunk);
        }
        p.close(C);
        p.close(S);
        drain(&mut p, &mut ev);
        assert_eq!(unknown(&ev, C) + unknown(&ev, S), 2, "cut {cut_c}/{cut_s}");
        assert!(heads(&ev).is_empty() && !ev.iter().any(|e| matches!(e, H2Event::PushPromise { .. })));
        assert!(errors(&ev).is_empty(), "cut {cut_c}/{cut_s}: {:?}", errors(&ev));
        // The server's last frames are always after the cut: their data and GOAWAY arrive.
        assert_eq!(body(&ev, S, 2), body(&full, S, 2));
        assert_eq!(ev.last(), full.last());
        assert!(p.dropped_bytes(S) <= cut_s as u64 + 200);
    }
}

#[test]
fn mid_connection_start_at_every_offset() {
    // Resync only trusts known frame types, so a chain through an unknown one cannot confirm.
    let mut w = everything();
    w.segs.retain(|(_, b)| b.get(3) != Some(&0xfa));
    let full = run(&w);
    for side in [C, S] {
        let bytes = w.side_bytes(side);
        let mut wrong = 0;
        for cut in 0..bytes.len() {
            let mut p = Parser::new(Limits::default(), false);
            p.feed(side, &bytes[cut..]);
            p.close(side);
            let ev = feed_all(&mut p, &[]);
            assert!(heads(&ev).is_empty());
            // The frames seen are the last ones of the real connection.
            let data = |ev: &[H2Event]| -> Vec<H2Event> {
                ev.iter().filter(|e| matches!(e, H2Event::Data { side: s, .. } if *s == side)).cloned().collect()
            };
            let (got, all) = (data(&ev), data(&full));
            if !errors(&ev).is_empty()
                || !all.ends_with(&got)
                || (side == S && cut <= bytes.len() - 17 && ev.last() != full.last())
            {
                wrong += 1;
            }
        }
        assert_eq!(wrong, 0, "{side:?}: {wrong} of {} starting offsets went wrong", bytes.len());
    }
}

#[test]
fn mid_connection_resync_skips_partial_frames() {
    let mut w = Wire::empty();
    w.data(S, 1, &[7u8; 300], false);
    w.data(S, 1, b"second", false);
    w.data(S, 1, b"third", true);
    let bytes = w.side_bytes(S);
    let mut p = Parser::new(Limits::default(), false);
    p.feed(S, &bytes[100..]);
    let ev = feed_all(&mut p, &[]);
    assert!(body(&ev, S, 1).is_empty(), "a frame is trusted once two more follow it (or at the end)");
    p.close(S);
    let ev = feed_all(&mut p, &[]);
    assert_eq!(body(&ev, S, 1), b"secondthird");
    assert_eq!(p.dropped_bytes(S), 209);
}

#[test]
fn gap_outside_data_stops_the_side() {
    let mut w = Wire::new();
    w.headers(C, 1, GET, false);
    let mut p = Parser::new(Limits::default(), true);
    let mut ev = feed_all(&mut p, &w.segs);
    p.gap(C, 10);
    p.gap(C, 10);
    let mut more = Wire::new();
    more.headers(C, 1, GET, false); // advances the encoders like the first connection
    more.headers(S, 1, OK, false);
    more.data(C, 1, b"lost", true);
    more.data(S, 1, b"kept", true);
    ev.extend(feed_all(&mut p, &more.segs[5..]));
    assert_eq!(unknown(&ev, C), 1);
    assert_eq!(unknown(&ev, S), 0);
    assert_eq!(count(&ev, |e| matches!(e, H2Event::Error(H2Error::Gap { side: C, bytes: 10 }))), 1);
    assert!(body(&ev, C, 1).is_empty());
    assert_eq!(body(&ev, S, 1), b"kept");
    assert_eq!(heads(&ev).len(), 2);
    assert_eq!(p.dropped_bytes(C), 20 + more.segs[6].1.len() as u64);
}

#[test]
fn gap_inside_data_keeps_framing_and_headers() {
    let mut w = Wire::new();
    w.headers(C, 1, &[(":method", "POST"), (":path", "/")], false);
    let big = frame(kind::DATA, flag::END_STREAM, 1, &[1u8; 1000]);
    let mut p = Parser::new(Limits::default(), true);
    let mut ev = feed_all(&mut p, &w.segs);
    p.feed(C, &big[..300]);
    p.gap(C, 500);
    p.feed(C, &big[800..]);
    let mut next = Wire::new();
    next.headers(C, 1, &[(":method", "POST"), (":path", "/")], false);
    next.headers(C, 3, &[(":method", "POST"), (":path", "/")], true);
    ev.extend(feed_all(&mut p, &next.segs[5..]));
    assert_eq!(unknown(&ev, C), 0);
    assert_eq!(heads(&ev).iter().map(|h| h.1).collect::<Vec<_>>(), vec![1, 3]);
    assert!(ev.contains(&H2Event::Data { side: C, stream: 1, bytes: vec![], end_stream: true }));
    assert_eq!(wire_bytes(&ev, C, 1), (w.segs[4].1.len() + big.len()) as u64);
    // A gap reaching past the frame loses the framing.
    let mut p = Parser::new(Limits::default(), true);
    feed_all(&mut p, &w.segs);
    p.feed(C, &big[..300]);
    p.gap(C, 800);
    assert_eq!(unknown(&feed_all(&mut p, &[]), C), 1);
}

#[test]
fn after_upgrade_pairs_stream_1() {
    let req = hdrs(&[
        (":method", "GET"),
        (":path", "/"),
        (":scheme", "http"),
        (":authority", "h"),
        ("http2-settings", "AAEAACAA"), // HEADER_TABLE_SIZE = 8192
    ]);
    let mut p = Parser::after_upgrade(Limits::default(), req.clone());
    let mut w = Wire::new();
    let block = [size_update(8192), w.block(S, OK)].concat();
    w.frame(S, kind::HEADERS, flag::END_HEADERS, 1, &block);
    w.data(S, 1, b"up", true);
    let ev = feed_all(&mut p, &w.segs);
    let hs = heads(&ev);
    assert_eq!(hs[0], (C, 1, HeadersKind::Request, req, true));
    assert_eq!(hs[1], (S, 1, HeadersKind::Response, hdrs(OK), false));
    assert_eq!(body(&ev, S, 1), b"up");
    assert!(errors(&ev).is_empty());
    assert_eq!(p.streams_tracked(), 0);
}

#[test]
fn bad_preface() {
    let mut p = Parser::new(Limits::default(), true);
    p.feed(C, b"GET / HTTP/1.1\r\n\r\n");
    p.feed(S, &frame(kind::SETTINGS, 0, 0, &[]));
    let ev = feed_all(&mut p, &[]);
    assert_eq!(errors(&ev), vec![H2Error::BadPreface { side: C }]);
    assert_eq!(p.buffered_bytes(), 0);
    assert_eq!(p.dropped_bytes(C), 18);
    // A preface split anywhere is fine.
    let mut p = Parser::new(Limits::default(), true);
    p.feed(C, &PREFACE[..5]);
    p.feed(C, &PREFACE[5..]);
    assert!(errors(&feed_all(&mut p, &[])).is_empty());
}

#[test]
fn limits_are_enforced() {
    let limits = Limits { max_frame: 9 + 600, max_header_list: 300, max_streams_tracked: 2, max_hpack_table: 4096 };
    let mut w = Wire::new();
    w.headers(C, 1, GET, false);
    w.data(C, 1, &[0; 1000], false);
    w.data(C, 1, b"small", true);
    w.headers(C, 3, &[(":method", "GET"), ("big", &"b".repeat(400))], true);
    let mut p = Parser::new(limits, true);
    let ev = feed_all(&mut p, &w.segs);
    let errs = errors(&ev);
    assert!(matches!(errs[0], H2Error::FrameTooLarge { side: C, size: 1009, limit: 609 }), "{errs:?}");
    assert!(matches!(errs[1], H2Error::HeaderListTooLarge { side: C, stream: 3, limit: 300 }), "{errs:?}");
    assert_eq!(body(&ev, C, 1), b"small");
    assert_eq!(wire_bytes(&ev, C, 1), wire_bytes(&run(&w), C, 1));
    assert_eq!(unknown(&ev, C), 1);

    let mut w = Wire::new();
    for id in [1, 3, 5, 7, 9] {
        w.headers(C, id, GET, true);
    }
    w.headers(S, 1, &[("grpc-status", "1")], true); // stream 1 was evicted: labelled by content
    let mut p = Parser::new(limits, true);
    let ev = feed_all(&mut p, &w.segs);
    assert_eq!(p.streams_evicted(), 4, "3 requests, then one for the late block on stream 1");
    assert_eq!(p.streams_tracked(), 2);
    assert_eq!(heads(&ev).last().map(|h| h.2), Some(HeadersKind::Trailers));
}

#[test]
fn close_mid_frame_is_reported() {
    let mut p = Parser::new(Limits::default(), true);
    p.feed(S, &frame(kind::DATA, 0, 1, b"abcdef")[..12]);
    p.close(S);
    let ev = feed_all(&mut p, &[]);
    assert_eq!(errors(&ev), vec![H2Error::Truncated { side: S, bytes: 12 }]);
    p.feed(S, b"more");
    assert_eq!(p.buffered_bytes(), 0);
}

fn segments() -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
    let frame_like = (0u8..12, any::<u8>(), 0u32..6, proptest::collection::vec(any::<u8>(), 0..40))
        .prop_map(|(k, f, s, p)| frame(k, f, s, &p));
    let part = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..60),
        frame_like,
        Just(PREFACE.to_vec()),
        Just(frame(kind::HEADERS, flag::END_HEADERS, 1, &[0x82, 0x84, 0x86])),
        Just(frame(kind::HEADERS, 0, 3, &[0x82])),
        Just(frame(kind::CONTINUATION, flag::END_HEADERS, 3, &[0x84, 0x3f])),
    ];
    proptest::collection::vec((any::<bool>(), part), 0..30)
}

proptest! {
    #[test]
    fn random_chunking_gives_the_same_events(cuts in proptest::collection::vec(1usize..2000, 0..40)) {
        let w = everything();
        let flat = flatten(&w.segs);
        let segs = regroup(&flat, &cuts);
        prop_assert_eq!(feed_all(&mut Parser::new(Limits::default(), true), &segs), run(&w));
    }

    #[test]
    fn garbage_never_panics(
        segs in segments(),
        preface in any::<bool>(),
        gaps in proptest::collection::vec(0u64..30, 30),
        closes in proptest::collection::vec(any::<bool>(), 30),
    ) {
        let limits = Limits { max_frame: 9 + 30, max_header_list: 100, max_streams_tracked: 3, max_hpack_table: 4096 };
        let mut p = Parser::new(limits, preface);
        for (i, (client, bytes)) in segs.iter().enumerate() {
            let side = if *client { C } else { S };
            p.feed(side, bytes);
            if gaps[i] > 25 { p.gap(side, gaps[i]); }
            if closes[i] && i % 7 == 6 { p.close(side); }
            while p.poll_event().is_some() {}
            prop_assert!(p.buffered_bytes() <= 2 * (super::resync::WINDOW + 100));
            prop_assert!(p.streams_tracked() <= 3);
        }
    }
}

#[test]
fn large_frame_fed_in_small_chunks() {
    let mut w = Wire::new();
    w.headers(C, 1, GET, true);
    w.headers(S, 1, OK, false);
    let payload: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let big = frame(kind::DATA, flag::END_STREAM, 1, &payload);
    let mut p = Parser::new(Limits::default(), true);
    let mut ev = feed_all(&mut p, &w.segs);
    for chunk in big.chunks(1000) {
        p.feed(S, chunk);
        assert!(p.buffered_bytes() <= big.len());
    }
    drain(&mut p, &mut ev);
    assert_eq!(body(&ev, S, 1), payload);
    assert_eq!(p.buffered_bytes(), 0);
}
