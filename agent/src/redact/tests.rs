//! Tests of the redactor.

use std::time::SystemTime;

use proptest::prelude::*;

use super::*;
use crate::proto::http1::{RequestHead, ResponseHead};
use crate::txn::{Body, HttpProtocol};

const CARD: &str = r"\b(?:\d[ -]?){13,16}\b";
const BEARER: &str = r"Bearer [A-Za-z0-9._-]+";

fn h(n: &str, v: &str) -> Header {
    Header { name: n.into(), value: v.into() }
}

fn body(b: &[u8]) -> Body {
    Body { bytes: b.to_vec(), len: b.len() as u64, truncated: false }
}

fn txn(target: &str, req: Vec<Header>, req_body: &[u8], res: Vec<Header>, res_body: &[u8]) -> Transaction {
    Transaction {
        protocol: HttpProtocol::Http1,
        wire_bytes: None,
        request: RequestHead { method: "POST".into(), target: target.into(), version: 1, headers: req },
        request_body: body(req_body),
        request_trailers: vec![],
        request_time: SystemTime::UNIX_EPOCH,
        response: Some(ResponseHead { status: 200, reason: "OK".into(), version: 1, headers: res }),
        response_body: body(res_body),
        response_trailers: vec![],
        response_time: None,
        end_time: SystemTime::UNIX_EPOCH,
        incomplete: false,
    }
}

fn redactor(cfg: RedactionConfig) -> Redactor {
    Redactor::new(&cfg).expect("valid config")
}

fn cfg_with(json_paths: &[&str], body_patterns: &[&str]) -> RedactionConfig {
    RedactionConfig {
        json_paths: json_paths.iter().map(|s| s.to_string()).collect(),
        body_patterns: body_patterns.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn body_of(r: &Redactor, ct: Option<&str>, b: &str) -> (String, usize) {
    let mut v = b.as_bytes().to_vec();
    let n = r.apply_to_body(ct, &mut v);
    (String::from_utf8(v).expect("utf-8"), n)
}

fn values(hs: &[Header]) -> Vec<(&str, &str)> {
    hs.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect()
}

#[test]
fn default_headers_are_masked_everywhere_case_insensitively() {
    let r = redactor(RedactionConfig::default());
    let req = vec![
        h("Authorization", "Bearer abc"),
        h("Accept", "*/*"),
        h("COOKIE", "sid=1"),
        h("X-Api-Key", "k1"),
        h("X-Goog-Iam-Token", "t1"),
        h("My-Client-Secret", "s1"),
        h("X-ApiKey-V2", "k2"),
        h("authorization", "Basic second"),
    ];
    let mut t = txn("/", req, b"", vec![h("Set-Cookie", "a=b"), h("Content-Type", "text/plain")], b"");
    t.request_trailers = vec![h("X-Amz-Security-Token", "amz"), h("Grpc-Status", "0")];
    t.response_trailers = vec![h("x-csrf-TOKEN", "csrf")];
    let st = r.apply(&mut t);
    let m = PLAIN_MASK;
    let expect = vec![
        ("Authorization", m),
        ("Accept", "*/*"),
        ("COOKIE", m),
        ("X-Api-Key", m),
        ("X-Goog-Iam-Token", m),
        ("My-Client-Secret", m),
        ("X-ApiKey-V2", m),
        ("authorization", m),
    ];
    assert_eq!(values(&t.request.headers), expect, "order and count kept");
    let res = t.response.as_ref().expect("response");
    assert_eq!(values(&res.headers), vec![("Set-Cookie", m), ("Content-Type", "text/plain")]);
    assert_eq!(values(&t.request_trailers), vec![("X-Amz-Security-Token", m), ("Grpc-Status", "0")]);
    assert_eq!(values(&t.response_trailers), vec![("x-csrf-TOKEN", m)]);
    assert_eq!(st.headers, 10);
    assert_eq!(st.total(), 10);
}

#[test]
fn custom_header_list_replaces_the_default() {
    let cfg = RedactionConfig { headers: HeaderRule::names(["X-Internal"]), ..Default::default() };
    let r = redactor(cfg);
    let mut t = txn("/", vec![h("Authorization", "Basic x"), h("x-internal", "v")], b"", vec![], b"");
    assert_eq!(r.apply(&mut t).headers, 1);
    assert_eq!(values(&t.request.headers), vec![("Authorization", "Basic x"), ("x-internal", PLAIN_MASK)]);
    assert!(!r.header_allowed_in_events("X-INTERNAL"));
    assert!(r.header_allowed_in_events("authorization"));
}

#[test]
fn listed_headers_never_reach_events() {
    let r = redactor(RedactionConfig { hash_key: Some(b"k".to_vec()), ..Default::default() });
    for name in ["Authorization", "set-cookie", "X-Foo-Token", "x-app-secret", "x-my-apikey", "Api-Key"] {
        assert!(!r.header_allowed_in_events(name), "{name}");
    }
    for name in ["content-type", "user-agent", "x-request-id", "tokenizer"] {
        assert!(r.header_allowed_in_events(name), "{name}");
    }
}

#[test]
fn query_parameters_are_masked_in_targets_and_urls() {
    let r = redactor(RedactionConfig::default());
    let target = "/cb?token=abc&x=1&Token=def&token=ghi&acc%65ss_token=zz&empty=&key#frag?token=keep";
    let mut t = txn(target, vec![], b"", vec![h("Location", "/next?sig=s1&a=b")], b"");
    let st = r.apply(&mut t);
    let m = PLAIN_MASK;
    assert_eq!(
        t.request.target,
        format!("/cb?token={m}&x=1&Token={m}&token={m}&acc%65ss_token={m}&empty=&key#frag?token=keep")
    );
    let res = t.response.as_ref().expect("response");
    assert_eq!(res.headers[0].value, format!("/next?sig={m}&a=b"));
    assert_eq!(st.query_params, 5);

    assert_eq!(
        r.url("https://u:pw@api.example.com/v1?api_key=K&q=rust#token=f"),
        format!("https://u:{m}@api.example.com/v1?api_key={m}&q=rust#token=f")
    );
    assert_eq!(r.url("http://h/p?q=1"), "http://h/p?q=1", "nothing listed, nothing changed");
    assert_eq!(r.url("h.example:443"), "h.example:443");
}

#[test]
fn http2_path_pseudo_header_is_masked() {
    let r = redactor(RedactionConfig::default());
    let mut t = txn("/q?password=p", vec![h(":path", "/q?password=p"), h(":method", "GET")], b"", vec![], b"");
    let st = r.apply(&mut t);
    assert_eq!(t.request.headers[0].value, "/q?password=[REDACTED]");
    assert_eq!(t.request.target, "/q?password=[REDACTED]");
    assert_eq!(st.query_params, 2);
}

#[test]
fn json_paths_mask_nested_array_and_any_depth_fields() {
    let r = redactor(cfg_with(&["user.password", "items[*].card", "$..secret", "list[1]", "$.creds"], &[]));
    let src = r#"{"user":{"name":"ann","password":"p@ss"},"items":[{"card":"4111","n":1},{"card":2}],
        "deep":{"a":[{"Secret":"s1"}],"secret":{"x":1}},"list":[0,"one",2],"creds":null,"num":1.50}"#;
    let (out, n) = body_of(&r, Some("application/json; charset=utf-8"), src);
    let m = PLAIN_MASK;
    let expect = format!(
        r#"{{"user":{{"name":"ann","password":"{m}"}},"items":[{{"card":"{m}","n":1}},{{"card":"{m}"}}],
        "deep":{{"a":[{{"Secret":"{m}"}}],"secret":"{m}"}},"list":[0,"{m}",2],"creds":"{m}","num":1.50}}"#
    );
    assert_eq!(out, expect, "keys, order, whitespace and numbers kept");
    assert_eq!(n, 7);
    assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
}

#[test]
fn json_is_recognised_by_content_type_or_by_parsing() {
    let r = redactor(cfg_with(&["$..password"], &[]));
    let src = r#"[{"password":"x"}]"#;
    for ct in [Some("application/vnd.api+json"), Some("text/plain"), None] {
        assert_eq!(body_of(&r, ct, src), (r#"[{"password":"[REDACTED]"}]"#.to_string(), 1), "{ct:?}");
    }
    let untouched = "{ \"a\" : [1, 2.0e3, true, null],\n \"b\": \"c\" }";
    assert_eq!(body_of(&r, Some("application/json"), untouched), (untouched.to_string(), 0));
}

#[test]
fn invalid_json_falls_back_to_patterns_and_cut_json_keeps_field_masking() {
    let r = redactor(cfg_with(&["$..password"], &[BEARER]));
    let invalid = r#"{"password": "hunter2", oops, "auth": "Bearer abc.def"}"#;
    let (out, n) = body_of(&r, Some("application/json"), invalid);
    assert_eq!(out, r#"{"password": "hunter2", oops, "auth": "[REDACTED]"}"#, "patterns only");
    assert_eq!(n, 1);

    let cut = r#"{"password":"hunter2","note":"Bearer abc.def","password":"hunt"#;
    let (out, n) = body_of(&r, Some("application/json"), cut);
    assert_eq!(out, r#"{"password":"[REDACTED]","note":"[REDACTED]","password":"[REDACTED]""#);
    assert_eq!(n, 3);
}

#[test]
fn non_json_and_binary_bodies() {
    let r = redactor(cfg_with(&["$..password"], &[CARD, BEARER]));
    let text = "card 4111 1111 1111 1111, and 4111-1111-1111-1111; auth: Bearer eyJ.x-y_z";
    let (out, n) = body_of(&r, Some("text/plain"), text);
    assert_eq!(out, "card [REDACTED], and [REDACTED]; auth: [REDACTED]");
    assert_eq!(n, 3);
    let (out, n) = body_of(&r, None, "password=4111111111111111");
    assert_eq!((out.as_str(), n), ("password=[REDACTED]", 1));
    let mut png = b"\x89PNG 4111111111111111 Bearer x".to_vec();
    assert_eq!(r.apply_to_body(Some("image/png"), &mut png), 0, "binary types are not touched");
    let mut raw = b"\xff\xfe 4111111111111111".to_vec();
    assert_eq!(r.apply_to_body(None, &mut raw), 0, "untyped non-UTF-8 is binary");
}

#[test]
fn patterns_apply_inside_json_strings_and_numbers_only() {
    let r = redactor(cfg_with(&[], &[CARD, BEARER]));
    let src = r#"{"pan":4111111111111111,"note":"card 4111 1111 1111 1111","h":"Bearer abc","4111111111111111":1}"#;
    let (out, n) = body_of(&r, Some("application/json"), src);
    assert_eq!(out, r#"{"pan":"[REDACTED]","note":"card [REDACTED]","h":"[REDACTED]","4111111111111111":1}"#);
    assert_eq!(n, 3);
}

#[test]
fn deep_nesting_is_bounded_and_falls_back_to_patterns() {
    let r = redactor(cfg_with(&["$..password"], &[BEARER]));
    let deep = format!("{}\"Bearer abc\"{}", "[".repeat(100_000), "]".repeat(100_000));
    let (out, n) = body_of(&r, Some("application/json"), &deep);
    assert_eq!(n, 1, "too deep for JSON: patterns over the raw text");
    assert!(out.contains("\"[REDACTED]\""));
    let shallow = format!("{}{{\"password\":1}}{}", "[".repeat(100), "]".repeat(100));
    assert_eq!(body_of(&r, None, &shallow).1, 1);
}

#[test]
fn form_bodies_mask_listed_fields() {
    let r = redactor(RedactionConfig::default());
    let (out, n) = body_of(&r, Some("application/x-www-form-urlencoded"), "user=ann&password=p%40ss&x=1");
    assert_eq!((out.as_str(), n), ("user=ann&password=[REDACTED]&x=1", 1));
}

#[test]
fn default_patterns_spare_timestamps_and_catch_secrets() {
    let r = redactor(RedactionConfig::default());
    let src = r#"{"ts":1700000000000,"id":"1234567890123","pan":"4111 1111 1111 1111",
        "jwt":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig","aws":"AKIAIOSFODNN7EXAMPLE"}"#;
    let (out, n) = body_of(&r, Some("application/json"), src);
    assert!(out.contains("1700000000000") && out.contains("1234567890123"), "{out}");
    assert!(!out.contains("4111") && !out.contains("eyJ") && !out.contains("AKIA"), "{out}");
    assert_eq!(n, 3);
}

#[test]
fn encoded_bodies_are_skipped_and_decoded_ones_masked_separately() {
    let r = redactor(RedactionConfig::default());
    let req = vec![h("Content-Type", "application/json"), h("Content-Encoding", "gzip")];
    let res = vec![h("Content-Type", "application/json"), h("Content-Encoding", "identity")];
    let src = br#"{"password":"x"}"#;
    let mut t = txn("/", req, src, res, src);
    let st = r.apply(&mut t);
    assert_eq!(t.request_body.bytes, src.to_vec(), "still compressed: not touched");
    assert_eq!(t.response_body.bytes, br#"{"password":"[REDACTED]"}"#.to_vec());
    assert_eq!(t.response_body.len, src.len() as u64, "the wire length is kept");
    assert_eq!((st.skipped_encoded_bodies, st.json_fields), (1, 1));
    let mut decoded = src.to_vec();
    assert_eq!(r.apply_to_body(Some("application/json"), &mut decoded), 1);
}

#[test]
fn keyed_masks_correlate_without_revealing() {
    let keyed = |k: &[u8]| redactor(RedactionConfig { hash_key: Some(k.to_vec()), ..Default::default() });
    let (a, b) = (keyed(b"key-a"), keyed(b"key-b"));
    let url = "/?token=same&sig=same&key=other";
    let masks: Vec<String> = a
        .url(url)
        .trim_start_matches("/?")
        .split('&')
        .map(|p| p.split_once('=').expect("pair").1.to_string())
        .collect();
    assert_eq!(masks[0], masks[1], "equal inputs, equal masks");
    assert_ne!(masks[0], masks[2]);
    assert!(masks[0].starts_with("[REDACTED:hmac-sha256:") && masks[0].len() == 39, "{}", masks[0]);
    assert_ne!(a.url(url), b.url(url), "different keys, different masks");
    // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?") = 5bdcc146bf60754e...
    let jefe = keyed(b"Jefe");
    assert_eq!(
        jefe.url("/?key=what%20do%20ya%20want%20for%20nothing%3F"),
        "/?key=[REDACTED:hmac-sha256:5bdcc146bf60754e]"
    );
    assert_eq!(redactor(RedactionConfig::default()).url(url), "/?token=[REDACTED]&sig=[REDACTED]&key=[REDACTED]");
}

#[test]
fn redacting_twice_changes_nothing() {
    let r = redactor(RedactionConfig { hash_key: Some(b"k".to_vec()), ..Default::default() });
    let mut t = txn(
        "/?token=t",
        vec![h("Authorization", "Bearer x"), h("Content-Type", "application/json")],
        br#"{"password":"p","n":"Bearer abc"}"#,
        vec![],
        b"",
    );
    assert!(r.apply(&mut t).total() > 0);
    let once = format!("{t:?}");
    assert_eq!(r.apply(&mut t).total(), 0);
    assert_eq!(format!("{t:?}"), once);
}

#[test]
fn bad_configuration_is_an_error_naming_the_culprit() {
    let err = |cfg: RedactionConfig| Redactor::new(&cfg).expect_err("must fail").to_string();
    let e = err(cfg_with(&[], &["ok", "(unclosed"]));
    assert!(e.contains("`(unclosed`"), "{e}");
    let e = err(cfg_with(&[], &["a*"]));
    assert!(e.contains("`a*`") && e.contains("empty string"), "{e}");
    for bad in ["user.", "$", "a[", "a[x]", "$..*", "a]"] {
        let e = err(cfg_with(&[bad], &[]));
        assert!(e.contains(&format!("`{bad}`")), "{e}");
    }
    let e = err(RedactionConfig { headers: HeaderRule::names([""]), ..Default::default() });
    assert!(e.contains("header name"), "{e}");
    assert_eq!(
        Redactor::new(&RedactionConfig { hash_key: Some(vec![]), ..Default::default() }).err(),
        Some(RedactError::EmptyHashKey)
    );
    assert!(
        !format!("{:?}", RedactionConfig { hash_key: Some(b"s3cr3t".to_vec()), ..Default::default() })
            .contains("s3cr3t")
    );
}

const LISTED: &[&str] = &["Authorization", "COOKIE", "set-cookie", "X-Api-Key", "x-session-token", "X-App-Secret"];
const OTHER: &[&str] = &["Accept", "Content-Type", "Content-Encoding", ":path", "Location", "X-Trace"];
const TYPES: &[&str] = &["application/json", "text/plain", "application/x-www-form-urlencoded", "image/png", ""];

fn header_strategy() -> impl Strategy<Value = Header> {
    let name = prop_oneof![proptest::sample::select(OTHER).prop_map(str::to_string), "[A-Za-z-]{1,12}"];
    (name, any::<String>()).prop_map(|(name, value)| Header { name, value })
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<String>().prop_map(String::into_bytes),
        "[{}\\[\\]\":, a-z0-9]{0,80}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn listed_header_values_never_survive(
        secret in "[A-Za-z0-9._~+/-]{16,32}",
        listed in proptest::sample::select(LISTED),
        slot in 0usize..4,
        others in proptest::collection::vec(header_strategy(), 0..6),
        req_body in body_strategy(),
        res_body in body_strategy(),
        ct in proptest::sample::select(TYPES),
        keyed in any::<bool>(),
    ) {
        let secret = format!("SeCrEt{secret}");
        let cfg = RedactionConfig { hash_key: keyed.then(|| b"k".to_vec()), ..Default::default() };
        let r = redactor(cfg);
        let mut hs = others.clone();
        hs.insert(slot.min(hs.len()), h(listed, &secret));
        hs.push(h("Content-Type", ct));
        let mut t = txn("/p?q=1", hs.clone(), &req_body, hs.clone(), &res_body);
        t.request_trailers = vec![h(listed, &secret)];
        t.response_trailers = hs.clone();
        r.apply(&mut t);
        let res = t.response.as_ref().map(|r| r.headers.clone()).unwrap_or_default();
        let all = format!(
            "{:?}{:?}{:?}{:?}{}{}{}",
            t.request.headers, res, t.request_trailers, t.response_trailers, t.request.target,
            String::from_utf8_lossy(&t.request_body.bytes), String::from_utf8_lossy(&t.response_body.bytes),
        );
        prop_assert!(!all.contains(&secret));
        let names = |v: &[Header]| v.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
        prop_assert_eq!(names(&t.request.headers), names(&hs));
        prop_assert_eq!(names(&res), names(&hs));
    }

    #[test]
    fn json_stays_valid_and_loses_its_secrets(
        secret in "[a-z]{12,20}",
        doc in json_strategy(),
        cut in any::<proptest::sample::Index>(),
    ) {
        let r = redactor(cfg_with(&["$..password", "list[*]"], &[BEARER]));
        let v = serde_json::json!({"a": doc, "password": {"deep": secret}, "list": [secret]});
        let src = serde_json::to_vec_pretty(&v).expect("serialise");
        let mut out = src.clone();
        r.apply_to_body(Some("application/json"), &mut out);
        let parsed: serde_json::Value = serde_json::from_slice(&out).expect("still JSON");
        prop_assert!(!String::from_utf8_lossy(&out).contains(&secret));
        prop_assert_eq!(&parsed["a"], &v["a"]);
        let mut prefix = src[..cut.index(src.len())].to_vec();
        r.apply_to_body(Some("application/json"), &mut prefix);
    }
}

fn json_strategy() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[ -~\u{e9}\u{1F600}]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
