use super::*;

use std::io::Write;
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Crc, FlushCompress};
use proptest::prelude::*;

const MIB: usize = 1 << 20;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut encoder = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
    encoder.write_all(data).unwrap();
    encoder.into_inner()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// Applies the codings of a Content-Encoding value, in order.
fn encode(header: &str, data: &[u8]) -> Vec<u8> {
    header.split(',').map(|c| c.trim().to_ascii_lowercase()).fold(data.to_vec(), |acc, coding| match &*coding {
        "gzip" | "x-gzip" => gzip(&acc),
        "deflate" => zlib(&acc),
        "br" => brotli(&acc),
        "zstd" => zstd(&acc),
        "identity" | "" => acc,
        other => panic!("no test encoder for {other}"),
    })
}

/// Some compressible text (repetitive JSON lines).
fn text(lines: usize) -> Vec<u8> {
    (0..lines).flat_map(|i| format!("{{\"id\":{i},\"name\":\"item-{i}\",\"ok\":true}}\n").into_bytes()).collect()
}

/// Poorly compressible bytes (xorshift), so compressed streams are long.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'a' + (state % 26) as u8
        })
        .collect()
}

fn decoded(names: &[&str]) -> BodyEncoding {
    BodyEncoding::Decoded(names.iter().map(|name| name.to_string()).collect())
}

fn assert_raw(out: &DecodedBody, raw: &[u8], header: &str, reason_contains: &str) {
    match &out.encoding {
        BodyEncoding::Raw { encoding, reason } => {
            assert_eq!(encoding, header);
            assert!(reason.contains(reason_contains), "reason {reason:?} lacks {reason_contains:?}");
        }
        other => panic!("expected Raw, got {other:?}"),
    }
    assert_eq!(out.bytes, raw);
}

/// A gzip stream of `mib` MiB of zeros, built from repeated sync-flushed deflate blocks so
/// that even 200 MiB costs milliseconds to build in a debug test.
fn gzip_of_zeros(mib: usize) -> Vec<u8> {
    fn chunk(compress: &mut Compress, input: &[u8], flush: FlushCompress) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 * 1024);
        compress.compress_vec(input, &mut out, flush).unwrap();
        assert_eq!(compress.total_in() % MIB as u64, 0, "output buffer too small");
        out
    }
    let zeros = vec![0u8; MIB];
    let mut compress = Compress::new(Compression::best(), false);
    let first = chunk(&mut compress, &zeros, FlushCompress::Sync);
    let repeated = chunk(&mut compress, &zeros, FlushCompress::Sync);
    assert_eq!(chunk(&mut compress, &zeros, FlushCompress::Sync), repeated, "blocks do not repeat");
    let end = chunk(&mut compress, &[], FlushCompress::Finish);

    let mut one = Crc::new();
    one.update(&zeros);
    let mut crc = Crc::new();
    (0..mib).for_each(|_| crc.combine(&one));

    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    gz.extend_from_slice(&first);
    (1..mib).for_each(|_| gz.extend_from_slice(&repeated));
    gz.extend_from_slice(&end);
    gz.extend_from_slice(&crc.sum().to_le_bytes());
    gz.extend_from_slice(&((mib * MIB) as u32).to_le_bytes());
    gz
}

#[test]
fn no_coding_is_identity() {
    let body = b"hello".to_vec();
    for header in [None, Some(""), Some("identity"), Some(" Identity , "), Some(",")] {
        let out = decode_body(&body, header, 100, true);
        assert_eq!(out.encoding, BodyEncoding::Identity, "{header:?}");
        assert_eq!(out.bytes, body);
        assert!(!out.truncated);
        assert_eq!(out.decoded_len, Some(5));
    }
}

#[test]
fn identity_is_cut_at_cap() {
    let out = decode_body(b"hello world", None, 5, true);
    assert_eq!(out.bytes, b"hello");
    assert!(out.truncated);
    assert_eq!(out.decoded_len, Some(11));

    let out = decode_body(b"hello", None, 100, false);
    assert_eq!((out.bytes.as_slice(), out.truncated, out.decoded_len), (&b"hello"[..], true, None));
}

#[test]
fn empty_body_is_identity_whatever_the_coding() {
    for header in ["gzip", "br", "zstd", "deflate", "compress"] {
        let out = decode_body(&[], Some(header), 100, true);
        assert_eq!(out.encoding, BodyEncoding::Identity, "{header}");
        assert!(out.bytes.is_empty());
        assert!(!out.truncated);
        assert_eq!(out.decoded_len, Some(0));
    }
}

#[test]
fn single_codings_round_trip() {
    let body = text(300);
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("gzip", gzip(&body), "gzip"),
        ("x-gzip", gzip(&body), "gzip"),
        ("deflate", zlib(&body), "deflate"),
        ("deflate", raw_deflate(&body), "deflate"),
        ("br", brotli(&body), "br"),
        ("zstd", zstd(&body), "zstd"),
    ];
    for (header, raw, name) in cases {
        let out = decode_body(&raw, Some(header), MIB, true);
        assert_eq!(out.encoding, decoded(&[name]), "{header}");
        assert!(out.bytes == body, "{header}: wrong bytes");
        assert!(!out.truncated, "{header}");
        assert_eq!(out.decoded_len, Some(body.len() as u64), "{header}");
    }
}

#[test]
fn stacked_codings_are_removed_in_reverse_order() {
    let body = text(200);
    for (header, removed) in [
        ("gzip, br", ["br", "gzip"]),
        ("br,gzip", ["gzip", "br"]),
        ("deflate, zstd", ["zstd", "deflate"]),
        ("zstd, x-gzip", ["gzip", "zstd"]),
    ] {
        let out = decode_body(&encode(header, &body), Some(header), MIB, true);
        assert_eq!(out.encoding, decoded(&removed), "{header}");
        assert!(out.bytes == body, "{header}: wrong bytes");
        assert!(!out.truncated);
    }
}

#[test]
fn names_are_case_insensitive_and_trimmed() {
    let body = text(50);
    for header in ["GZIP", " gzip ", "\tGzip,identity", "identity, gZiP", "gzip,", "X-GZIP"] {
        let out = decode_body(&gzip(&body), Some(header), MIB, true);
        assert_eq!(out.encoding, decoded(&["gzip"]), "{header:?}");
        assert!(out.bytes == body);
    }
    let out = decode_body(&encode("gzip, br", &body), Some(" GZip ,  BR "), MIB, true);
    assert_eq!(out.encoding, decoded(&["br", "gzip"]));
    assert!(out.bytes == body);
}

#[test]
fn unknown_codings_keep_the_raw_bytes() {
    let raw = gzip(&text(20));
    for (header, token) in [("compress", "compress"), ("foo", "foo"), ("gzip, foo", "foo"), (" FOO ", "foo")] {
        let out = decode_body(&raw, Some(header), MIB, true);
        assert_raw(&out, &raw, header.trim(), &format!("unsupported content-coding \"{token}\""));
        assert!(!out.truncated);
        assert_eq!(out.decoded_len, Some(raw.len() as u64));
    }
    let out = decode_body(&raw, Some("foo"), 10, true);
    assert_raw(&out, &raw[..10], "foo", "foo");
    assert!(out.truncated);
}

#[test]
fn too_many_layers_keep_the_raw_bytes() {
    let header = "gzip, gzip, gzip, gzip, gzip";
    let raw = encode(header, b"deep");
    let out = decode_body(&raw, Some(header), MIB, true);
    assert_raw(&out, &raw, header, "5 stacked content-codings");
    let header = "gzip, gzip, gzip, gzip";
    assert_eq!(decode_body(&encode(header, b"deep"), Some(header), MIB, true).bytes, b"deep");
}

#[test]
fn corrupt_data_keeps_the_raw_bytes() {
    let garbage = b"this is not compressed at all".to_vec();
    for header in ["gzip", "deflate", "br", "zstd"] {
        let out = decode_body(&garbage, Some(header), MIB, true);
        assert_raw(&out, &garbage, header, header);
        assert!(!out.truncated);
    }

    let mut bad_crc = gzip(&text(50));
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 0xff;
    assert_raw(&decode_body(&bad_crc, Some("gzip"), MIB, true), &bad_crc, "gzip", "gzip");

    let mut encoder = zstd::Encoder::new(Vec::new(), 3).unwrap();
    encoder.include_checksum(true).unwrap();
    encoder.write_all(&noise(5000)).unwrap();
    let mut bad_body = encoder.finish().unwrap();
    bad_body[100] ^= 0x55;
    assert_raw(&decode_body(&bad_body, Some("zstd"), MIB, true), &bad_body, "zstd", "zstd");
}

#[test]
fn errors_name_the_failing_layer() {
    // br decodes fine, the gzip inside is garbage.
    let raw = brotli(b"not gzip data");
    let out = decode_body(&raw, Some("gzip, br"), MIB, true);
    match out.encoding {
        BodyEncoding::Raw { reason, .. } => assert!(reason.starts_with("gzip: "), "{reason}"),
        other => panic!("expected Raw, got {other:?}"),
    }
    // The outer br layer is garbage.
    let out = decode_body(b"garbage!", Some("gzip, br"), MIB, true);
    match out.encoding {
        BodyEncoding::Raw { reason, .. } => assert!(reason.starts_with("br: "), "{reason}"),
        other => panic!("expected Raw, got {other:?}"),
    }
}

#[test]
fn truncated_capture_gives_a_decoded_prefix() {
    let body = noise(300_000);
    for header in ["gzip", "deflate", "br", "zstd", "gzip, br", "br, deflate"] {
        let raw = encode(header, &body);
        let cut = &raw[..raw.len() / 2];

        let out = decode_body(cut, Some(header), MIB, false);
        assert!(matches!(out.encoding, BodyEncoding::Decoded(_)), "{header}: {:?}", out.encoding);
        assert!(out.truncated, "{header}");
        assert_eq!(out.decoded_len, None, "{header}");
        assert!(body.starts_with(&out.bytes), "{header}: not a prefix");
        assert!(out.bytes.len() > body.len() / 4, "{header}: only {} bytes", out.bytes.len());

        let out = decode_body(cut, Some(header), MIB, true);
        assert_raw(&out, cut, header, "");
    }
}

#[test]
fn capture_cut_inside_the_header_gives_an_empty_prefix() {
    let raw = gzip(b"hello");
    let out = decode_body(&raw[..4], Some("gzip"), MIB, false);
    assert_eq!(out.encoding, decoded(&["gzip"]));
    assert!(out.bytes.is_empty());
    assert!(out.truncated);
}

#[test]
fn complete_stream_in_an_incomplete_capture_is_still_marked_truncated() {
    let body = text(10);
    let out = decode_body(&gzip(&body), Some("gzip"), MIB, false);
    assert_eq!(out.bytes, body);
    assert!(out.truncated);
    assert_eq!(out.decoded_len, None);
}

#[test]
fn output_is_cut_at_cap_and_the_rest_counted() {
    let body = text(1000);
    for header in ["gzip", "deflate", "br", "zstd"] {
        let out = decode_body(&encode(header, &body), Some(header), 1000, true);
        assert_eq!(out.bytes, &body[..1000], "{header}");
        assert!(out.truncated);
        assert_eq!(out.decoded_len, Some(body.len() as u64), "{header}");

        // Beyond COUNT_FACTOR × cap the length is not counted.
        let out = decode_body(&encode(header, &body), Some(header), 100, true);
        assert_eq!(out.bytes, &body[..100]);
        assert!(out.truncated);
        assert_eq!(out.decoded_len, None, "{header}");
    }
}

#[test]
fn output_of_exactly_cap_bytes_is_not_truncated() {
    let body = text(100);
    let out = decode_body(&gzip(&body), Some("gzip"), body.len(), true);
    assert_eq!(out.bytes, body);
    assert!(!out.truncated);
    assert_eq!(out.decoded_len, Some(body.len() as u64));
}

#[test]
fn zero_cap_keeps_nothing() {
    let out = decode_body(&gzip(b"hello"), Some("gzip"), 0, true);
    assert!(out.bytes.is_empty());
    assert!(out.truncated);
    assert_eq!(out.encoding, decoded(&["gzip"]));
}

#[test]
fn concatenated_gzip_members_are_all_decoded() {
    let mut raw = gzip(b"hello, ");
    raw.extend_from_slice(&gzip(b"world"));
    assert_eq!(decode_body(&raw, Some("gzip"), MIB, true).bytes, b"hello, world");
}

#[test]
fn zero_bomb_helper_is_valid_gzip() {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gzip_of_zeros(3)[..]).read_to_end(&mut out).unwrap();
    assert!(out.len() == 3 * MIB && out.iter().all(|&b| b == 0));
}

#[test]
fn decompression_bomb_is_bounded_and_fast() {
    let bomb = gzip_of_zeros(200);
    assert!(bomb.len() < 300 * 1024, "{}", bomb.len());
    let start = Instant::now();
    let out = decode_body(&bomb, Some("gzip"), MIB, true);
    let elapsed = start.elapsed();
    assert_eq!(out.bytes.len(), MIB);
    assert!(out.bytes.capacity() <= MIB);
    assert!(out.bytes.iter().all(|&b| b == 0));
    assert!(out.truncated);
    assert_eq!(out.decoded_len, None);
    assert_eq!(out.encoding, decoded(&["gzip"]));
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[test]
fn zstd_bomb_is_bounded() {
    let bomb = zstd::bulk::compress(&vec![0u8; 64 * MIB], 3).unwrap();
    let out = decode_body(&bomb, Some("zstd"), MIB, true);
    assert_eq!(out.bytes.len(), MIB);
    assert!(out.truncated);
    assert_eq!(out.decoded_len, Some(64 * MIB as u64));
}

const HEADERS: [&str; 9] = ["gzip", "x-gzip", "deflate", "br", "zstd", "gzip, br", "zstd, deflate", "br, br", "foo"];

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_nor_exceed_cap(
        raw in proptest::collection::vec(any::<u8>(), 0..2048),
        header in proptest::sample::select(&HEADERS[..]),
        cap in 0usize..3000,
        raw_complete in any::<bool>(),
    ) {
        let out = decode_body(&raw, Some(header), cap, raw_complete);
        prop_assert!(out.bytes.len() <= cap);
        if !matches!(out.encoding, BodyEncoding::Decoded(_)) {
            prop_assert_eq!(&out.bytes[..], &raw[..raw.len().min(cap)]);
        }
    }

    #[test]
    fn damaged_streams_never_panic_nor_exceed_cap(
        body in proptest::collection::vec(any::<u8>(), 0..4096),
        header in proptest::sample::select(&HEADERS[..8]),
        flip in any::<(usize, u8)>(),
        keep in any::<proptest::sample::Index>(),
        cap in 0usize..5000,
        raw_complete in any::<bool>(),
    ) {
        let mut raw = encode(header, &body);
        let at = flip.0 % raw.len();
        raw[at] ^= flip.1;
        raw.truncate(keep.index(raw.len() + 1));
        let out = decode_body(&raw, Some(header), cap, raw_complete);
        prop_assert!(out.bytes.len() <= cap);
    }

    #[test]
    fn round_trips_up_to_cap(
        body in proptest::collection::vec(any::<u8>(), 1..4096),
        header in proptest::sample::select(&HEADERS[..8]),
        cap in 0usize..5000,
    ) {
        let out = decode_body(&encode(header, &body), Some(header), cap, true);
        prop_assert!(matches!(out.encoding, BodyEncoding::Decoded(_)), "{:?}", out.encoding);
        prop_assert_eq!(&out.bytes[..], &body[..body.len().min(cap)]);
        prop_assert_eq!(out.truncated, body.len() > cap);
        prop_assert!(out.decoded_len.is_none_or(|len| len == body.len() as u64));
        if body.len() <= cap {
            prop_assert_eq!(out.decoded_len, Some(body.len() as u64));
        }
    }
}
