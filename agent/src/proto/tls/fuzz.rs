//! Property tests on the recorded hellos, mutated (bytes flipped, inserted, removed, cut) and fed
//! to the connection's handshake reader in random chunkings: never a panic, at most one record
//! buffered per direction, and the same verdict as when fed whole.

use super::*;
use crate::conn::l7::{HELLO_LIMIT, TlsHandshake};
use crate::fuzzing::{chunk_sizes, chunks, edits, mutate};
use proptest::prelude::*;
use tapline_ebpf::Direction;

const FIXTURES: [&[u8]; 4] = [
    include_bytes!("fixtures/client_hello_tls13.bin"),
    include_bytes!("fixtures/server_flight_tls13.bin"),
    include_bytes!("fixtures/client_hello_tls12.bin"),
    include_bytes!("fixtures/server_flight_tls12.bin"),
];

/// (client, server) facts read from the two directions, each fed in pieces of `sizes`.
fn read(egress: &[u8], ingress: &[u8], sizes: &[usize]) -> (Option<ClientHello>, Option<ServerHello>) {
    let mut h = TlsHandshake::default();
    for (e, i) in chunks(egress, sizes).into_iter().zip(chunks(ingress, sizes)) {
        h.feed(Direction::Egress, e);
        h.feed(Direction::Ingress, i);
        assert!(h.buffered_bytes() <= 2 * HELLO_LIMIT);
    }
    // The longer direction's tail.
    for c in chunks(egress, sizes).into_iter().skip(chunks(ingress, sizes).len()) {
        h.feed(Direction::Egress, c);
    }
    for c in chunks(ingress, sizes).into_iter().skip(chunks(egress, sizes).len()) {
        h.feed(Direction::Ingress, c);
    }
    assert!(h.buffered_bytes() <= 2 * HELLO_LIMIT);
    (h.client, h.server)
}

proptest! {
    #[test]
    fn fuzz_recorded_hellos_read_the_same_in_any_chunking(pair in 0usize..2, sizes in chunk_sizes()) {
        let (ch, sh) = (FIXTURES[2 * pair], FIXTURES[2 * pair + 1]);
        let (c, s) = read(ch, sh, &sizes);
        prop_assert_eq!(c.as_ref().and_then(|c| c.sni.as_deref()), Some("example.com"));
        prop_assert!(s.is_some());
        prop_assert_eq!((c, s), read(ch, sh, &[usize::MAX]));
    }

    #[test]
    fn fuzz_mutated_hellos_read_the_same_in_any_chunking(
        which in 0usize..4,
        e in edits(6),
        sizes in chunk_sizes(),
    ) {
        // The mutated hello on its own direction (client: egress), the intact answer on the other.
        let a = mutate(FIXTURES[which], &e);
        let b = FIXTURES[which ^ 1].to_vec();
        let (egress, ingress) = if which % 2 == 0 { (a, b) } else { (b, a) };
        prop_assert_eq!(read(&egress, &ingress, &sizes), read(&egress, &ingress, &[usize::MAX]));
    }

    #[test]
    fn fuzz_hello_records_with_random_bodies_never_panic(
        kind in 0u8..4,
        body in proptest::collection::vec(any::<u8>(), 0..600),
        record_len in proptest::option::of(0usize..20_000),
        split in any::<proptest::sample::Index>(),
    ) {
        // A handshake header (type, u24 length) in one or two records with random contents.
        let mut hs = vec![kind, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let cut = split.index(hs.len() + 1);
        let mut wire = Vec::new();
        for part in [&hs[..cut], &hs[cut..]] {
            let len = record_len.unwrap_or(part.len()) as u16;
            wire.extend_from_slice(&[0x16, 0x03, 0x03]);
            wire.extend_from_slice(&len.to_be_bytes());
            wire.extend_from_slice(part);
        }
        let _ = parse_hello(&wire);
        let mut h = TlsHandshake::default();
        h.feed(Direction::Egress, &wire);
        prop_assert!(h.buffered_bytes() <= HELLO_LIMIT);
    }
}
