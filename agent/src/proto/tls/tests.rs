//! Recorded handshakes (made with Python's ssl over memory BIOs, OpenSSL 3), truncated and
//! garbage input.

use super::*;
use proptest::prelude::*;

const CH13: &[u8] = include_bytes!("fixtures/client_hello_tls13.bin");
const SH13: &[u8] = include_bytes!("fixtures/server_flight_tls13.bin");
const CH12: &[u8] = include_bytes!("fixtures/client_hello_tls12.bin");
const SH12: &[u8] = include_bytes!("fixtures/server_flight_tls12.bin");

#[test]
fn client_hello_tls13_sni_alpn_versions() {
    let Parse::Done(Hello::Client(c)) = parse_hello(CH13) else { panic!("{:?}", parse_hello(CH13)) };
    assert_eq!(c.sni.as_deref(), Some("example.com"), "SNI, lowercased");
    assert_eq!(c.alpn, vec!["h2".to_string(), "http/1.1".to_string()]);
    assert!(c.versions.contains(&0x0304) && c.versions.contains(&0x0303), "{:x?}", c.versions);
}

#[test]
fn client_hello_tls12_only() {
    let Parse::Done(Hello::Client(c)) = parse_hello(CH12) else { panic!() };
    assert_eq!(c.sni.as_deref(), Some("example.com"));
    assert!(!c.versions.contains(&0x0304), "{:x?}", c.versions);
}

#[test]
fn server_hello_versions_and_cipher() {
    let Parse::Done(Hello::Server(s)) = parse_hello(SH13) else { panic!("{:?}", parse_hello(SH13)) };
    assert_eq!(s.version, 772, "TLS 1.3 from supported_versions");
    assert_eq!(s.cipher >> 8, 0x13, "a TLS 1.3 suite: {:x}", s.cipher);
    let Parse::Done(Hello::Server(s)) = parse_hello(SH12) else { panic!() };
    assert_eq!(s.version, 771);
    assert_eq!(s.alpn.as_deref(), Some("http/1.1"), "TLS 1.2 ALPN is in the clear");
}

#[test]
fn every_truncation_needs_more_and_never_lies() {
    for cut in 0..CH13.len() {
        assert_eq!(parse_hello(&CH13[..cut]), Parse::NeedMore, "cut at {cut}");
    }
    // The TLS 1.2 ServerHello is a record of its own: complete as soon as that record is.
    let first_record = 5 + usize::from(u16::from_be_bytes([SH12[3], SH12[4]]));
    for cut in 0..first_record {
        assert_eq!(parse_hello(&SH12[..cut]), Parse::NeedMore, "cut at {cut}");
    }
    assert_eq!(parse_hello(&SH12[..first_record]), parse_hello(SH12));
}

#[test]
fn non_tls_is_rejected() {
    assert_eq!(parse_hello(b"GET / HTTP/1.1\r\n"), Parse::NotTls);
    assert_eq!(parse_hello(b"\x16\x03\x09\x00\x10"), Parse::NotTls);
    assert_eq!(parse_hello(b"\x16\x03\x01\x00\x00"), Parse::NotTls);
    let mut app_data = CH13.to_vec();
    app_data[0] = 0x17;
    assert_eq!(parse_hello(&app_data), Parse::NotTls);
    assert_eq!(looks_like_tls(b"\x16\x03\x03"), Some(true));
    assert_eq!(looks_like_tls(b"\x16"), None);
}

#[test]
fn hello_fragmented_over_two_records() {
    // Split the ClientHello body into two handshake records.
    let body = &CH13[5..];
    let (a, b) = body.split_at(100);
    let mut v = vec![0x16, 0x03, 0x01];
    v.extend_from_slice(&(a.len() as u16).to_be_bytes());
    v.extend_from_slice(a);
    v.extend_from_slice(&[0x16, 0x03, 0x01]);
    v.extend_from_slice(&(b.len() as u16).to_be_bytes());
    v.extend_from_slice(b);
    let Parse::Done(Hello::Client(c)) = parse_hello(&v) else { panic!("{:?}", parse_hello(&v)) };
    assert_eq!(c.sni.as_deref(), Some("example.com"));
}

proptest! {
    #[test]
    fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = parse_hello(&b);
    }

    #[test]
    fn corrupted_hellos_never_panic(i in 0usize..517, x in any::<u8>()) {
        let mut v = CH13.to_vec();
        let n = v.len();
        v[i % n] = x;
        let _ = parse_hello(&v);
    }
}
