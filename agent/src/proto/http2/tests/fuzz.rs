//! Property tests on mutated connections (the `everything()` fixture with bytes flipped,
//! inserted, removed or cut in a few of its frames), fed in random chunkings, and on the HPACK
//! decoder alone: never a panic, memory and output bounded, and the same events whatever the
//! chunking.

use super::super::hpack::HeaderDecoder;
use super::*;
use crate::fuzzing::{Edit, edits, mutate};

/// `everything()` with edits applied to a few of its segments.
fn mutated_everything(seg_edits: &[(proptest::sample::Index, Vec<Edit>)]) -> Vec<(Side, Vec<u8>)> {
    let mut segs = everything().segs;
    let n = segs.len();
    for (i, e) in seg_edits {
        let seg = &mut segs[i.index(n)].1;
        *seg = mutate(seg, e);
    }
    segs
}

fn seg_edits() -> impl Strategy<Value = Vec<(proptest::sample::Index, Vec<Edit>)>> {
    proptest::collection::vec((any::<proptest::sample::Index>(), edits(3)), 1..4)
}

fn data_bytes(ev: &[H2Event], side: Side) -> usize {
    ev.iter()
        .map(|e| match e {
            H2Event::Data { side: s, bytes, .. } if *s == side => bytes.len(),
            _ => 0,
        })
        .sum()
}

proptest! {
    #[test]
    fn fuzz_mutated_connections_parse_the_same_in_any_chunking(
        e in seg_edits(),
        cuts in proptest::collection::vec(1usize..3000, 0..60),
    ) {
        let segs = mutated_everything(&e);
        let whole = feed_all(&mut Parser::new(Limits::default(), true), &segs);
        let split = feed_all(&mut Parser::new(Limits::default(), true), &regroup(&flatten(&segs), &cuts));
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn fuzz_mutated_connections_never_panic_and_stay_bounded(
        e in seg_edits(),
        cuts in proptest::collection::vec(1usize..3000, 0..60),
        gap_at in proptest::option::of((any::<proptest::sample::Index>(), 1u64..100)),
        preface in any::<bool>(),
    ) {
        let segs = regroup(&flatten(&mutated_everything(&e)), &cuts);
        let limits = Limits { max_frame: 9 + 256, max_header_list: 512, max_streams_tracked: 2, max_hpack_table: 4096 };
        let mut p = Parser::new(limits, preface);
        let gap_seg = gap_at.map(|(i, n)| (i.index(segs.len()), n));
        let mut ev = Vec::new();
        let (mut client_in, mut server_in) = (0, 0);
        for (i, (side, bytes)) in segs.iter().enumerate() {
            if let Some((at, n)) = gap_seg && at == i {
                p.gap(*side, n);
            }
            p.feed(*side, bytes);
            *if *side == C { &mut client_in } else { &mut server_in } += bytes.len();
            drain(&mut p, &mut ev);
            prop_assert!(p.buffered_bytes() <= 2 * (super::super::resync::WINDOW + limits.max_frame + limits.max_header_list));
            prop_assert!(p.streams_tracked() <= limits.max_streams_tracked);
        }
        p.close(C);
        p.close(S);
        drain(&mut p, &mut ev);
        prop_assert!(data_bytes(&ev, C) <= client_in && data_bytes(&ev, S) <= server_in);
        // Every event but the closing and gap errors is caused by at least one byte of a frame.
        prop_assert!(ev.len() <= client_in + server_in + 4, "{} events for {} bytes", ev.len(), client_in + server_in);
    }

    #[test]
    fn fuzz_hpack_random_blocks_never_panic(
        blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..8),
        allow in proptest::option::of(0u32..100_000),
    ) {
        let mut d = HeaderDecoder::new(8192);
        if let Some(a) = allow {
            d.allow(a);
        }
        for b in &blocks {
            if let Ok(hs) = d.decode(b, 1024) {
                prop_assert!(hs.iter().map(|h| h.name.len() + h.value.len() + 32).sum::<usize>() <= 1024);
            }
        }
    }

    #[test]
    fn fuzz_hpack_mutated_blocks_never_panic(
        lists in proptest::collection::vec(proptest::collection::vec(("[a-z:-]{1,12}", "[ -~]{0,40}"), 1..6), 1..6),
        which in any::<proptest::sample::Index>(),
        e in edits(4),
        table in proptest::option::of(0usize..=8192),
    ) {
        let mut enc = loona_hpack::Encoder::new();
        // A size update leads the first block (loona-hpack rejects a block holding only one).
        let mut first = Vec::new();
        if let Some(t) = table {
            enc.set_max_table_size(t);
            first = wire::size_update(t);
        }
        let mut blocks: Vec<Vec<u8>> = lists.iter().map(|l| enc.encode(l.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))).collect();
        blocks[0].splice(0..0, first);
        let i = which.index(blocks.len());
        blocks[i] = mutate(&blocks[i], &e);
        let mut d = HeaderDecoder::new(8192);
        d.allow(10_000);
        let mut decoded = 0;
        for b in &blocks {
            if d.decode(b, 64 * 1024).is_ok() {
                decoded += 1;
            }
        }
        // Unmutated, every block decodes (the mutated fixture would otherwise test nothing).
        if e.is_empty() {
            prop_assert_eq!(decoded, blocks.len());
        }
    }
}
