use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use simple_dns::rdata::{A, AAAA, CNAME, TXT};
use simple_dns::{Name, QCLASS, QTYPE, Question, ResourceRecord, TYPE};

use super::*;

fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> ResourceRecord<'_> {
    ResourceRecord::new(Name::new_unchecked(owner), CLASS::IN, ttl, RData::A(A { address: Ipv4Addr::from(ip).into() }))
}

fn aaaa(owner: &str, ttl: u32, ip: Ipv6Addr) -> ResourceRecord<'_> {
    ResourceRecord::new(Name::new_unchecked(owner), CLASS::IN, ttl, RData::AAAA(AAAA { address: ip.into() }))
}

fn cname<'a>(owner: &'a str, ttl: u32, target: &'a str) -> ResourceRecord<'a> {
    ResourceRecord::new(Name::new_unchecked(owner), CLASS::IN, ttl, RData::CNAME(CNAME(Name::new_unchecked(target))))
}

/// A compressed response to `question` (type A) with the given answers.
fn response(question: &str, answers: Vec<ResourceRecord<'_>>) -> Vec<u8> {
    let mut p = Packet::new_reply(0x1234);
    p.questions.push(Question::new(
        Name::new_unchecked(question),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    p.answers = answers;
    p.build_bytes_vec_compressed().expect("build")
}

fn ip4(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// A response as a resolver sends it on the wire (hand-assembled, with compression pointers):
/// `www.example.org` CNAME `edge.example.net` (TTL 300), which has A 93.184.215.14 (TTL 60)
/// and A 93.184.215.15 (TTL 120), plus an EDNS OPT record.
const RECORDED: &[u8] = b"\x4b\x1d\x81\x80\x00\x01\x00\x03\x00\x00\x00\x01\
\x03www\x07example\x03org\x00\x00\x01\x00\x01\
\xc0\x0c\x00\x05\x00\x01\x00\x00\x01\x2c\x00\x12\x04edge\x07example\x03net\x00\
\xc0\x2d\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x5d\xb8\xd7\x0e\
\xc0\x2d\x00\x01\x00\x01\x00\x00\x00\x78\x00\x04\x5d\xb8\xd7\x0f\
\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";

#[test]
fn recorded_response_with_cname() {
    let got = parse_answers(RECORDED).expect("parse");
    assert_eq!(
        got,
        vec![
            Answer { name: "www.example.org".into(), ip: ip4("93.184.215.14"), ttl: 60 },
            Answer { name: "www.example.org".into(), ip: ip4("93.184.215.15"), ttl: 120 },
        ]
    );
}

#[test]
fn plain_a_and_aaaa() {
    let msg = response(
        "Example.COM",
        vec![
            a("example.com", 300, [192, 0, 2, 1]),
            aaaa("example.com", 200, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        ],
    );
    let got = parse_answers(&msg).expect("parse");
    assert_eq!(
        got,
        vec![
            Answer { name: "example.com".into(), ip: ip4("192.0.2.1"), ttl: 300 },
            Answer { name: "example.com".into(), ip: "2001:db8::1".parse().expect("ip"), ttl: 200 },
        ],
        "names are lowercased: resolvers randomize the case of questions"
    );
}

#[test]
fn cname_chain_names_the_ip_by_the_question() {
    let msg = response(
        "api.example.com",
        vec![
            cname("api.example.com", 3600, "x.cdn.net"),
            cname("x.cdn.net", 30, "y.edge.cdn.net"),
            a("y.edge.cdn.net", 120, [203, 0, 113, 7]),
            aaaa("y.edge.cdn.net", 20, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
        ],
    );
    let got = parse_answers(&msg).expect("parse");
    assert_eq!(
        got,
        vec![
            Answer { name: "api.example.com".into(), ip: ip4("203.0.113.7"), ttl: 30 },
            Answer { name: "api.example.com".into(), ip: "2001:db8::7".parse().expect("ip"), ttl: 20 },
        ],
        "the question's name, with the smallest TTL of the chain"
    );
}

#[test]
fn unrelated_records_and_other_types_are_ignored() {
    let txt = ResourceRecord::new(Name::new_unchecked("api.example.com"), CLASS::IN, 60, RData::TXT(TXT::new()));
    let msg = response("api.example.com", vec![txt, a("evil.example.net", 60, [198, 51, 100, 1])]);
    assert_eq!(parse_answers(&msg).expect("parse"), vec![], "an A record the question does not lead to");
    let chaos = ResourceRecord::new(
        Name::new_unchecked("api.example.com"),
        CLASS::CH,
        60,
        RData::A(A { address: Ipv4Addr::new(1, 2, 3, 4).into() }),
    );
    assert_eq!(parse_answers(&response("api.example.com", vec![chaos])).expect("parse"), vec![]);
}

#[test]
fn cname_loop_ends() {
    let msg = response(
        "a.example",
        vec![
            cname("a.example", 60, "b.example"),
            cname("b.example", 60, "a.example"),
            a("b.example", 60, [10, 0, 0, 1]),
        ],
    );
    let got = parse_answers(&msg).expect("parse");
    assert_eq!(got, vec![Answer { name: "a.example".into(), ip: ip4("10.0.0.1"), ttl: 60 }]);
}

#[test]
fn queries_and_short_input_are_errors() {
    let mut q = Packet::new_query(1);
    q.questions.push(Question::new(
        Name::new_unchecked("example.com"),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    assert_eq!(parse_answers(&q.build_bytes_vec().expect("build")), Err(DnsError::NotAResponse));
    assert_eq!(parse_answers(&[0x81; 11]), Err(DnsError::Short(11)));
    assert!(matches!(
        parse_answers(b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\x07exa"),
        Err(DnsError::Malformed(_))
    ));
}

#[test]
fn a_cut_message_still_yields_the_answers_before_the_cut() {
    // Cut inside the OPT record, then inside the last A record: the answers before the cut stay.
    let full = RECORDED.len();
    let got = parse_answers(&RECORDED[..full - 3]).expect("cut in the additional section");
    assert_eq!(got.len(), 2);
    let got = parse_answers(&RECORDED[..full - 11 - 2]).expect("cut in the last answer");
    assert_eq!(got, vec![Answer { name: "www.example.org".into(), ip: ip4("93.184.215.14"), ttl: 60 }]);
    // A header claiming 65535 records of every kind.
    let mut lying = RECORDED.to_vec();
    lying[4..12].copy_from_slice(&[0xff; 8]);
    let _ = parse_answers(&lying);
}

#[test]
fn tcp_framing() {
    let one = response("a.example", vec![a("a.example", 60, [10, 0, 0, 1])]);
    let two = response("b.example", vec![a("b.example", 60, [10, 0, 0, 2])]);
    let mut stream = Vec::new();
    for m in [&one, &two] {
        stream.extend_from_slice(&(m.len() as u16).to_be_bytes());
        stream.extend_from_slice(m);
    }
    stream.extend_from_slice(&[0, 0]); // an empty frame: consumed, no message
    let complete = stream.len();
    stream.extend_from_slice(&(one.len() as u16).to_be_bytes());
    stream.extend_from_slice(&one[..5]); // incomplete
    let (msgs, used) = split_tcp_messages(&stream);
    assert_eq!(msgs, vec![&one[..], &two[..]]);
    assert_eq!(used, complete);
    assert_eq!(split_tcp_messages(&[0]), (vec![], 0));
    assert_eq!(split_tcp_messages(&[]), (vec![], 0));
    let names: Vec<_> = msgs.iter().flat_map(|m| parse_answers(m).expect("parse")).map(|a| a.name).collect();
    assert_eq!(names, ["a.example", "b.example"]);
}

fn answer(name: &str, ip: &str, ttl: u32) -> Answer {
    Answer { name: name.into(), ip: ip4(ip), ttl }
}

#[test]
fn ttl_is_respected_with_floor_and_cap() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut names = DnsNames::new();
    names.insert_answers(
        0,
        &[
            answer("five-min.example", "10.0.0.1", 300),
            answer("zero.example", "10.0.0.2", 0),
            answer("day.example", "10.0.0.3", 86_400),
        ],
        t0,
    );
    assert_eq!(names.name_for(0, ip4("10.0.0.1"), t0 + s(299)), Some("five-min.example"));
    assert_eq!(names.name_for(0, ip4("10.0.0.1"), t0 + s(300)), None, "expired at its TTL");
    assert_eq!(names.name_for(0, ip4("10.0.0.2"), t0 + s(59)), Some("zero.example"), "TTL 0 kept for the floor");
    assert_eq!(names.name_for(0, ip4("10.0.0.2"), t0 + s(61)), None);
    assert_eq!(names.name_for(0, ip4("10.0.0.3"), t0 + s(3599)), Some("day.example"));
    assert_eq!(names.name_for(0, ip4("10.0.0.3"), t0 + s(3601)), None, "capped at an hour");
    assert!(names.is_empty(), "lookups drop what expired");

    let mut names = DnsNames::with_limits(10, s(5), s(10));
    names.insert_answers(0, &[answer("a.example", "10.0.0.1", 1), answer("b.example", "10.0.0.2", 100)], t0);
    assert_eq!(names.len(), 2);
    assert_eq!(names.purge_expired(t0 + s(6)), 1);
    assert_eq!(names.name_for(0, ip4("10.0.0.2"), t0 + s(6)), Some("b.example"));
    assert_eq!(names.purge_expired(t0 + s(11)), 1);
    assert!(names.is_empty());
}

#[test]
fn a_refreshed_answer_lives_on() {
    let t0 = Instant::now();
    let mut names = DnsNames::new();
    names.insert_answers(0, &[answer("a.example", "10.0.0.1", 60)], t0);
    names.insert_answers(0, &[answer("a.example", "10.0.0.1", 60)], t0 + Duration::from_secs(50));
    assert_eq!(names.name_for(0, ip4("10.0.0.1"), t0 + Duration::from_secs(100)), Some("a.example"));
    names.insert_answers(0, &[answer("b.example", "10.0.0.1", 60)], t0 + Duration::from_secs(100));
    assert_eq!(names.name_for(0, ip4("10.0.0.1"), t0 + Duration::from_secs(101)), Some("b.example"), "latest wins");
}

#[test]
fn capacity_evicts_the_least_recently_used() {
    let t0 = Instant::now();
    let mut names = DnsNames::with_limits(2, DEFAULT_TTL_FLOOR, DEFAULT_TTL_CAP);
    names.insert_answers(0, &[answer("a.example", "10.0.0.1", 300), answer("b.example", "10.0.0.2", 300)], t0);
    assert_eq!(names.name_for(0, ip4("10.0.0.1"), t0), Some("a.example"), "a is now the most recent");
    names.insert_answers(0, &[answer("c.example", "10.0.0.3", 300)], t0);
    assert_eq!(names.len(), 2);
    assert_eq!(names.name_for(0, ip4("10.0.0.2"), t0), None, "b was the least recently used");
    assert_eq!(names.name_for(0, ip4("10.0.0.1"), t0), Some("a.example"));
    assert_eq!(names.name_for(0, ip4("10.0.0.3"), t0), Some("c.example"));

    let mut big = DnsNames::new();
    for i in 0..(DEFAULT_CAPACITY as u32 + 100) {
        let ip = IpAddr::from(Ipv4Addr::from(0x0a00_0000 + i));
        big.insert_answers(0, &[Answer { name: format!("h{i}.example"), ip, ttl: 300 }], t0);
    }
    assert_eq!(big.len(), DEFAULT_CAPACITY);
    assert_eq!(big.name_for(0, ip4("10.0.0.0"), t0), None);
    assert_eq!(big.name_for(0, ip4("10.0.0.100"), t0), Some("h100.example"));
}

#[test]
fn scopes_with_fallback_to_any_scope() {
    let t0 = Instant::now();
    let mut names = DnsNames::new();
    let shared = ip4("192.0.2.10");
    names.insert_answers(1, &[answer("one.example", "192.0.2.10", 300)], t0);
    assert_eq!(names.name_for(2, shared, t0), Some("one.example"), "unknown in scope 2: any scope");
    names.insert_answers(2, &[answer("two.example", "192.0.2.10", 300)], t0);
    assert_eq!(names.name_for(1, shared, t0), Some("one.example"), "scope 1 keeps its own name");
    assert_eq!(names.name_for(2, shared, t0), Some("two.example"));
    assert_eq!(names.name_for(0, shared, t0), Some("two.example"), "the latest in any scope");
    assert_eq!(names.name_for(0, ip4("192.0.2.11"), t0), None);
}

#[test]
fn mapped_ipv6_finds_the_ipv4_answer() {
    let t0 = Instant::now();
    let mut names = DnsNames::new();
    assert_eq!(names.insert_message(0, RECORDED, t0), Ok(2));
    let mapped: IpAddr = "::ffff:93.184.215.14".parse().expect("ip");
    assert_eq!(names.name_for(0, mapped, t0), Some("www.example.org"));
    assert_eq!(names.insert_message(0, b"garbage", t0), Err(DnsError::Short(7)));
}

proptest! {
    #[test]
    fn garbage_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_answers(&raw);
        let _ = split_tcp_messages(&raw);
    }

    #[test]
    fn mangled_responses_never_panic(cut in 0usize..200, flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..8)) {
        let mut msg = RECORDED.to_vec();
        for (at, v) in flips {
            if let Some(b) = msg.get_mut(at) {
                *b = v;
            }
        }
        msg.truncate(cut);
        if let Ok(answers) = parse_answers(&msg) {
            let mut names = DnsNames::with_limits(4, DEFAULT_TTL_FLOOR, DEFAULT_TTL_CAP);
            names.insert_answers(0, &answers, Instant::now());
            prop_assert!(names.len() <= 4);
        }
    }
}

proptest! {
    /// DNS over TCP: length-prefixed messages (some mutated, some empty frames) arrive in any
    /// chunking; buffering the rest as the pipeline does gives the same messages as the whole
    /// stream, and what stays buffered is always one incomplete frame.
    #[test]
    fn fuzz_tcp_stream_splits_the_same_in_any_chunking(
        msgs in proptest::collection::vec((any::<bool>(), crate::fuzzing::edits(3)), 1..6),
        sizes in crate::fuzzing::chunk_sizes(),
    ) {
        let mut stream = Vec::new();
        let mut sent = Vec::new();
        for (empty, e) in &msgs {
            let m = if *empty { Vec::new() } else { crate::fuzzing::mutate(RECORDED, e) };
            stream.extend_from_slice(&(m.len() as u16).to_be_bytes());
            stream.extend_from_slice(&m);
            if !m.is_empty() {
                sent.push(m);
            }
        }
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for c in crate::fuzzing::chunks(&stream, &sizes) {
            buf.extend_from_slice(c);
            let (ms, used) = split_tcp_messages(&buf);
            got.extend(ms.into_iter().map(<[u8]>::to_vec));
            buf.drain(..used);
            prop_assert!(buf.len() < 2 + usize::from(u16::MAX));
        }
        prop_assert!(buf.is_empty());
        for m in &got {
            let _ = parse_answers(m);
        }
        prop_assert_eq!(got, sent);
    }
}
