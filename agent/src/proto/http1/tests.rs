//! Wire fixtures, fed whole, split at every byte boundary, and one byte at a time: the
//! event stream (with adjacent body chunks merged) must not depend on how bytes arrive.

use super::*;
use proptest::prelude::*;

type Wire<'a> = &'a [(Side, &'a [u8])];

/// Events with adjacent body chunks of the same kind merged.
pub(super) fn normalize(events: Vec<Http1Event>) -> Vec<Http1Event> {
    let mut out: Vec<Http1Event> = Vec::new();
    for e in events {
        match (out.last_mut(), e) {
            (Some(Http1Event::RequestBody(a)), Http1Event::RequestBody(b)) => a.extend(b),
            (Some(Http1Event::ResponseBody(a)), Http1Event::ResponseBody(b)) => a.extend(b),
            (_, Http1Event::RequestBody(b)) if b.is_empty() => {}
            (_, Http1Event::ResponseBody(b)) if b.is_empty() => {}
            (_, e) => out.push(e),
        }
    }
    out
}

fn drain(p: &mut Parser, out: &mut Vec<Http1Event>) {
    while let Some(e) = p.poll_event() {
        out.push(e);
    }
}

/// Feeds each wire segment split into pieces of at most `step` bytes (0 = whole).
fn run(wire: Wire<'_>, step: usize, close_server: bool) -> Vec<Http1Event> {
    let mut p = Parser::new(Limits::default());
    let mut out = Vec::new();
    for (side, bytes) in wire {
        if step == 0 {
            p.feed(*side, bytes);
        } else {
            for c in bytes.chunks(step) {
                p.feed(*side, c);
            }
        }
        drain(&mut p, &mut out);
    }
    if close_server {
        p.close(Side::Server);
        drain(&mut p, &mut out);
    }
    normalize(out)
}

/// Every split point of every segment gives the same events as the whole feed.
fn check_splits(wire: Wire<'_>, close_server: bool) -> Vec<Http1Event> {
    let whole = run(wire, 0, close_server);
    assert_eq!(run(wire, 1, close_server), whole, "byte at a time");
    for (i, (side, bytes)) in wire.iter().enumerate() {
        for cut in 1..bytes.len() {
            let mut p = Parser::new(Limits::default());
            let mut out = Vec::new();
            for (j, (s, b)) in wire.iter().enumerate() {
                if i == j {
                    p.feed(*side, &bytes[..cut]);
                    p.feed(*side, &bytes[cut..]);
                } else {
                    p.feed(*s, b);
                }
                drain(&mut p, &mut out);
            }
            if close_server {
                p.close(Side::Server);
                drain(&mut p, &mut out);
            }
            assert_eq!(normalize(out), whole, "split segment {i} at {cut}");
        }
    }
    whole
}

fn heads(ev: &[Http1Event]) -> (Vec<String>, Vec<u16>) {
    let mut reqs = vec![];
    let mut stats = vec![];
    for e in ev {
        match e {
            Http1Event::RequestHead(r) => reqs.push(format!("{} {}", r.method, r.target)),
            Http1Event::ResponseHead(r) => stats.push(r.status),
            _ => {}
        }
    }
    (reqs, stats)
}

fn h(n: &str, v: &str) -> Header {
    Header { name: n.into(), value: v.into() }
}

#[test]
fn get_with_content_length() {
    let ev = check_splits(
        &[
            (Side::Client, b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n"),
            (Side::Server, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"),
        ],
        false,
    );
    assert_eq!(
        ev,
        vec![
            Http1Event::RequestHead(RequestHead {
                method: "GET".into(),
                target: "/x?y=1".into(),
                version: 1,
                headers: vec![h("Host", "a"), h("User-Agent", "t")],
            }),
            Http1Event::RequestEnd { trailers: vec![] },
            Http1Event::ResponseHead(ResponseHead {
                status: 200,
                reason: "OK".into(),
                version: 1,
                headers: vec![h("Content-Length", "5"), h("Content-Type", "text/plain")],
            }),
            Http1Event::ResponseBody(b"hello".to_vec()),
            Http1Event::ResponseEnd { trailers: vec![] },
        ]
    );
}

#[test]
fn post_body_and_chunked_with_extensions_and_trailers() {
    let ev = check_splits(
        &[
            (Side::Client, b"POST /p HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: yes\r\n\r\n"),
            (Side::Server, b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        ],
        false,
    );
    assert!(ev.contains(&Http1Event::RequestBody(b"Wikipedia in\r\n\r\nchunks.".to_vec())), "{ev:?}");
    assert!(ev.contains(&Http1Event::RequestEnd { trailers: vec![h("X-Trailer", "yes")] }));
    assert!(ev.contains(&Http1Event::ResponseBody(b"abc".to_vec())));
    assert_eq!(ev.last(), Some(&Http1Event::ResponseEnd { trailers: vec![] }));
}

#[test]
fn pipelined_requests_then_responses_and_head_204_304() {
    let ev = check_splits(
        &[
            (
                Side::Client,
                b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\nPOST /d HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
            ),
            (
                Side::Server,
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ),
        ],
        false,
    );
    let (reqs, stats) = heads(&ev);
    assert_eq!(reqs, ["HEAD /a", "GET /b", "GET /c", "POST /d"]);
    assert_eq!(stats, [200, 204, 304, 200]);
    assert_eq!(ev.iter().filter(|e| matches!(e, Http1Event::ResponseEnd { .. })).count(), 4);
    assert!(ev.contains(&Http1Event::ResponseBody(b"ok".to_vec())));
    assert!(!ev.iter().any(|e| matches!(e, Http1Event::Error(_))), "{ev:?}");
}

#[test]
fn expect_100_continue() {
    let ev = check_splits(
        &[
            (Side::Client, b"PUT /u HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"),
            (Side::Server, b"HTTP/1.1 100 Continue\r\n\r\n"),
            (Side::Client, b"abc"),
            (Side::Server, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
        false,
    );
    assert!(matches!(ev[1], Http1Event::Informational(ResponseHead { status: 100, .. })), "{ev:?}");
    assert_eq!(ev[2], Http1Event::RequestBody(b"abc".to_vec()));
    assert_eq!(ev[3], Http1Event::RequestEnd { trailers: vec![] });
    assert!(matches!(ev[4], Http1Event::ResponseHead(ResponseHead { status: 200, .. })));
    assert_eq!(ev.len(), 6);
}

#[test]
fn close_delimited_response_ends_on_close() {
    let ev = check_splits(
        &[(Side::Client, b"GET / HTTP/1.0\r\n\r\n"), (Side::Server, b"HTTP/1.0 200 OK\r\n\r\nuntil the end")],
        true,
    );
    assert_eq!(ev[3], Http1Event::ResponseBody(b"until the end".to_vec()));
    assert_eq!(ev[4], Http1Event::ResponseEnd { trailers: vec![] });
}

#[test]
fn upgrade_stops_parsing() {
    let ev = check_splits(
        &[
            (Side::Client, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            (Side::Server, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
            (Side::Client, b"\x81\x85garbage frames"),
        ],
        false,
    );
    assert_eq!(ev.last(), Some(&Http1Event::Upgraded));
    assert_eq!(ev.iter().filter(|e| matches!(e, Http1Event::Error(_))).count(), 0);
}

#[test]
fn garbage_is_an_error_and_a_later_request_still_parses() {
    let ev = run(
        &[
            (Side::Client, b"\x00\x01garbage bytes here\r\nmore junk\r\nGET /ok HTTP/1.1\r\n\r\n"),
            (Side::Server, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
        0,
        false,
    );
    assert!(matches!(ev[0], Http1Event::Error(Http1Error::InvalidHead { side: Side::Client, .. })), "{ev:?}");
    let (reqs, stats) = heads(&ev);
    assert_eq!(reqs, ["GET /ok"]);
    assert_eq!(stats, [200]);
}

#[test]
fn gap_inside_a_content_length_body_keeps_framing() {
    let mut p = Parser::new(Limits::default());
    let mut out = Vec::new();
    p.feed(Side::Client, b"POST /big HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    p.gap(Side::Client, 4);
    p.feed(Side::Client, b"xyzGET /next HTTP/1.1\r\n\r\n");
    p.feed(
        Side::Server,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    );
    drain(&mut p, &mut out);
    let ev = normalize(out);
    assert!(ev.contains(&Http1Event::Error(Http1Error::Gap { side: Side::Client, bytes: 4 })));
    let (reqs, stats) = heads(&ev);
    assert_eq!(reqs, ["POST /big", "GET /next"]);
    assert_eq!(stats, [200, 404]);
    // The body pieces are never glued into one chunk across the gap.
    assert!(ev.contains(&Http1Event::RequestBody(b"abc".to_vec())));
    assert!(ev.contains(&Http1Event::RequestBody(b"xyz".to_vec())));
}

#[test]
fn gap_in_a_head_resyncs_to_the_next_request() {
    let mut p = Parser::new(Limits::default());
    let mut out = Vec::new();
    p.feed(Side::Client, b"GET /lost HTTP/1.1\r\nHo");
    p.gap(Side::Client, 50);
    p.feed(Side::Client, b"st-tail: x\r\n\r\nGET /found HTTP/1.1\r\nHost: y\r\n\r\n");
    drain(&mut p, &mut out);
    let (reqs, _) = heads(&out);
    assert_eq!(reqs, ["GET /found"]);
    assert!(p.buffered_bytes() == 0);
}

#[test]
fn keep_alive_thousand_transactions() {
    let mut p = Parser::new(Limits::default());
    let mut out = Vec::new();
    for i in 0..1000 {
        p.feed(Side::Client, format!("GET /k/{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        p.feed(Side::Server, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
        drain(&mut p, &mut out);
    }
    let (reqs, stats) = heads(&out);
    assert_eq!(reqs.len(), 1000);
    assert_eq!(reqs[999], "GET /k/999");
    assert_eq!(stats.len(), 1000);
    assert_eq!(out.iter().filter(|e| matches!(e, Http1Event::ResponseEnd { .. })).count(), 1000);
}

#[test]
fn head_too_large_is_bounded() {
    let mut p = Parser::new(Limits { max_head_bytes: 1024, max_headers: 16 });
    let mut out = Vec::new();
    p.feed(Side::Client, b"GET / HTTP/1.1\r\nX-Long: ");
    for _ in 0..100 {
        p.feed(Side::Client, &[b'a'; 100]);
        assert!(p.buffered_bytes() <= 1024 + 100);
    }
    drain(&mut p, &mut out);
    assert!(out.iter().any(|e| matches!(e, Http1Event::Error(Http1Error::HeadTooLarge { .. }))));
    let many: String = (0..50).map(|i| format!("H{i}: v\r\n")).collect();
    p.feed(Side::Client, format!("\r\nGET /many HTTP/1.1\r\n{many}\r\n").as_bytes());
    drain(&mut p, &mut out);
    assert!(out.iter().filter(|e| matches!(e, Http1Event::Error(Http1Error::HeadTooLarge { .. }))).count() >= 2);
}

#[test]
fn body_bytes_are_emitted_without_buffering() {
    let mut p = Parser::new(Limits::default());
    p.feed(Side::Client, b"POST / HTTP/1.1\r\nContent-Length: 5000000\r\n\r\n");
    let chunk = vec![7u8; 65536];
    let mut total = 0;
    for _ in 0..76 {
        p.feed(Side::Client, &chunk);
        assert_eq!(p.buffered_bytes(), 0, "body bytes are never buffered");
        while let Some(e) = p.poll_event() {
            if let Http1Event::RequestBody(b) = e {
                total += b.len();
            }
        }
    }
    assert_eq!(total, 76 * 65536);
}

#[test]
fn conflicting_content_length_is_an_error() {
    let ev = run(&[(Side::Client, b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")], 0, false);
    assert!(ev.iter().any(|e| matches!(e, Http1Event::Error(Http1Error::InvalidLength { .. }))), "{ev:?}");
}

proptest! {
    #[test]
    fn arbitrary_bytes_splits_and_gaps_never_panic(
        ops in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300), 0u64..50, any::<bool>()), 0..40)
    ) {
        let mut p = Parser::new(Limits { max_head_bytes: 2048, max_headers: 32 });
        for (client, bytes, gap, close) in ops {
            let side = if client { Side::Client } else { Side::Server };
            p.feed(side, &bytes);
            if gap > 40 { p.gap(side, gap); }
            if close { p.close(side); }
            while p.poll_event().is_some() {}
            prop_assert!(p.buffered_bytes() <= 2 * 2048 + 300);
        }
    }

    #[test]
    fn http_like_input_never_panics(
        parts in proptest::collection::vec(prop_oneof![
            Just(b"GET / HTTP/1.1\r\n".to_vec()), Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
            Just(b"Content-Length: 3\r\n".to_vec()), Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
            Just(b"\r\n".to_vec()), Just(b"3\r\nabc\r\n".to_vec()), Just(b"0\r\n\r\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..20)], 0..30),
        sides in proptest::collection::vec(any::<bool>(), 30)
    ) {
        let mut p = Parser::new(Limits::default());
        for (i, part) in parts.iter().enumerate() {
            p.feed(if sides[i % sides.len()] { Side::Client } else { Side::Server }, part);
            while p.poll_event().is_some() {}
        }
    }
}

#[test]
fn bytes_after_the_upgrade_are_handed_over() {
    let mut p = Parser::new(Limits::default());
    p.feed(Side::Client, b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n");
    p.feed(Side::Server, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n\x00\x00\x06\x04\x00");
    p.feed(Side::Server, b"\x00\x00\x00\x00rest");
    p.feed(Side::Client, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert_eq!(p.take_upgraded_bytes(Side::Server), b"\x00\x00\x06\x04\x00\x00\x00\x00\x00rest");
    assert_eq!(p.take_upgraded_bytes(Side::Client), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert!(p.take_upgraded_bytes(Side::Server).is_empty(), "taken once");
}

/// Found by `fuzz::fuzz_mutated_conversations_parse_the_same_in_any_chunking` (one flipped bit): after an invalid head, resync only
/// starts a message at a line start, whether or not a feed ended mid-line.
#[test]
fn resync_does_not_start_a_message_mid_line_whatever_the_chunking() {
    let wire: Wire<'_> = &[(Side::Client, b"OPT\tONS /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nab")];
    let ev = check_splits(wire, false);
    assert!(matches!(&ev[..], [Http1Event::Error(Http1Error::InvalidHead { .. })]), "{ev:?}");
    let ev = check_splits(&[(Side::Client, b"GET\t/ HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")], false);
    assert!(
        matches!(&ev[..], [Http1Event::Error(_), Http1Event::RequestHead(_), Http1Event::RequestEnd { .. }]),
        "{ev:?}"
    );
}
