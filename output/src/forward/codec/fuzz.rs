//! Property tests of the response reader: receiver answers (acks, nacks, HELO, PONG, nil
//! heartbeats) read the same in any chunking; mutated and random bytes never panic and never
//! make it buffer more than one response's limit.

use super::*;
use proptest::prelude::*;
use rmpv::Value as V;

fn s(x: &str) -> V {
    V::String(x.into())
}

/// One answer as msgpack, and what the reader must make of it (`None`: a heartbeat).
fn answer() -> impl Strategy<Value = (V, Option<Response>)> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        "[A-Za-z0-9+/=]{0,32}".prop_map(|c| (V::Map(vec![(s("ack"), s(&c))]), Some(Response::Ack(c)))),
        Just((V::Map(vec![]), Some(Response::Nack))),
        Just((V::Nil, None)),
        (bytes(), bytes(), any::<bool>()).prop_map(|(nonce, auth, keepalive)| {
            let opts = vec![
                (s("nonce"), V::Binary(nonce.clone())),
                (s("auth"), V::Binary(auth.clone())),
                (s("keepalive"), V::Boolean(keepalive)),
            ];
            (V::Array(vec![s("HELO"), V::Map(opts)]), Some(Response::Helo { nonce, auth, keepalive }))
        }),
        (any::<bool>(), "[ -~]{0,20}", "[a-z.]{0,20}", "[0-9a-f]{0,128}").prop_map(|(ok, reason, host, digest)| {
            let v = V::Array(vec![s("PONG"), V::Boolean(ok), s(&reason), s(&host), s(&digest)]);
            let r = Response::Pong { ok, reason, server_hostname: host.into_bytes(), digest: digest.into_bytes() };
            (v, Some(r))
        }),
    ]
}

fn encode(values: &[(V, Option<Response>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (v, _) in values {
        rmpv::encode::write_value(&mut out, v).expect("writing to a Vec");
    }
    out
}

fn chunks<'a>(b: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < b.len() {
        let end = (at + sizes[i % sizes.len()].max(1)).min(b.len());
        out.push(&b[at..end]);
        at = end;
        i += 1;
    }
    out
}

/// Feeds the pieces; on an error the stream is dropped as the client does (cleared).
fn read(pieces: &[&[u8]]) -> (Vec<Response>, usize) {
    let mut r = Responses::new();
    let (mut got, mut errors) = (Vec::new(), 0);
    for p in pieces {
        r.feed(p);
        loop {
            match r.next_response() {
                Ok(Some(x)) => got.push(x),
                Ok(None) => break,
                Err(_) => {
                    errors += 1;
                    r.clear();
                    break;
                }
            }
        }
        assert!(r.buffered() <= MAX_RESPONSE_BYTES + p.len(), "{} bytes buffered", r.buffered());
    }
    (got, errors)
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(prop_oneof![1usize..4, 1usize..300], 1..20)
}

proptest! {
    #[test]
    fn fuzz_answers_read_the_same_in_any_chunking(answers in proptest::collection::vec(answer(), 1..8), sizes in sizes()) {
        let wire = encode(&answers);
        let expected: Vec<Response> = answers.iter().filter_map(|(_, r)| r.clone()).collect();
        prop_assert_eq!(read(&chunks(&wire, &sizes)), (expected, 0));
    }

    #[test]
    fn fuzz_mutated_answers_never_panic(
        answers in proptest::collection::vec(answer(), 1..8),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), 1u8..), 1..6),
        cut in any::<proptest::sample::Index>(),
        sizes in sizes(),
    ) {
        let mut wire = encode(&answers);
        for (i, x) in &flips {
            let at = i.index(wire.len());
            wire[at] ^= x;
        }
        wire.truncate(cut.index(wire.len() + 1));
        let (got, _) = read(&chunks(&wire, &sizes));
        prop_assert!(got.len() <= wire.len());
    }

    #[test]
    fn fuzz_random_bytes_never_panic(wire in proptest::collection::vec(any::<u8>(), 0..3000), sizes in sizes()) {
        let (got, _) = read(&chunks(&wire, &sizes));
        prop_assert!(got.len() <= wire.len());
    }
}

#[test]
fn a_declared_length_far_beyond_the_buffer_is_an_error_not_a_wait() {
    // A str32 of 4 GiB: waiting for it would buffer without bound.
    let (got, errors) = read(&[b"\xdb\xff\xff\xff\xff"]);
    assert_eq!((got.len(), errors), (0, 1));
}
