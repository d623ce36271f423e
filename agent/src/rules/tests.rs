//! Tests for the rule language.

use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

fn rule(src: &str) -> Rule {
    Rule::parse(src).unwrap_or_else(|e| panic!("{src:?} should parse: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[track_caller]
fn check(src: &str, fields: &MapFields, want: Outcome) {
    assert_eq!(rule(src).eval(fields), want, "rule {src:?}");
}

#[track_caller]
fn yes(src: &str, fields: &MapFields) {
    check(src, fields, Outcome::Match);
}

#[track_caller]
fn no(src: &str, fields: &MapFields) {
    check(src, fields, Outcome::NoMatch);
}

#[track_caller]
fn missing(src: &str, fields: &MapFields, path: &str) {
    check(src, fields, Outcome::MissingField(path.into()));
}

#[track_caller]
fn parse_err(src: &str) -> RuleError {
    match Rule::parse(src) {
        Ok(r) => panic!("{src:?} should not parse, got {r}"),
        Err(e) => e,
    }
}

fn sample() -> MapFields {
    MapFields::new()
        .with("n", 5)
        .with("f", 1.5)
        .with("s", "hello")
        .with("t", true)
        .with("fl", false)
        .with("zero", 0)
        .with("empty", "")
        .with("none", Vec::<i64>::new())
        .with("ip", ip("10.1.2.3"))
        .with("ip6", ip("2001:db8::1"))
        .with("ipstr", "192.168.1.7")
        .with("tags", vec!["env:prod", "team:core"])
        .with("nums", vec![1, 2, 3])
        .with("big", Value::Float(1e19))
        .with("method", "GET")
}

#[test]
fn comparison_operators_and_word_forms() {
    let f = sample();
    for src in [
        "n == 5",
        "n eq 5",
        "n != 4",
        "n ne 4",
        "n > 4",
        "n gt 4",
        "n >= 5",
        "n ge 5",
        "n < 6",
        "n lt 6",
        "n <= 5",
        "n le 5",
        "f > 1",
        "f < 2",
        "f == 1.5",
        "n == 5.0",
        "5 == n",
        "4 < n",
        "s == \"hello\"",
        "s != \"Hello\"",
        "s contains \"ell\"",
        "t == true",
        "fl != true",
        "ip == 10.1.2.3",
        "ip != 10.1.2.4",
        "1 == 1",
        "n == n",
    ] {
        yes(src, &f);
    }
    for src in [
        "n == 4",
        "n eq 4",
        "n != 5",
        "n ne 5",
        "n > 5",
        "n gt 5",
        "n >= 6",
        "n ge 6",
        "n < 5",
        "n lt 5",
        "n <= 4",
        "n le 4",
        "s == \"Hello\"",
        "s contains \"xyz\"",
        "t == false",
        "ip == 10.1.2.4",
    ] {
        no(src, &f);
    }
}

#[test]
fn keywords_are_case_insensitive() {
    let f = sample();
    yes("n EQ 5 AND s Contains \"ell\" Or NOT t", &f);
    yes("s MATCHES /^h/ and n IN [5] && t == TRUE", &f);
}

#[test]
fn type_mismatches_do_not_match() {
    let f = sample();
    for src in [
        "s > 1",
        "s == 5",
        "s != 5",
        "n == \"5\"",
        "n != \"5\"",
        "t == 1",
        "n contains 5",
        "n matches /5/",
        "ip > 1",
        "t != 1",
        "ip == \"not an ip\"",
    ] {
        no(src, &f);
    }
}

#[test]
fn precedence_follows_rulekit_v1() {
    // `not` binds tightest, then `or`, then `and`.
    let r = rule("a or b and not c");
    assert_eq!(r.to_string(), "(a or b) and not c");
    let f = MapFields::new().with("a", true).with("b", false).with("c", true);
    // (a or b) and not c = true and false; the usual precedence would give true.
    assert_eq!(r.eval(&f), Outcome::NoMatch);

    let r = rule("a and b or c");
    assert_eq!(r.to_string(), "a and (b or c)");
    let f = MapFields::new().with("a", false).with("b", false).with("c", true);
    assert_eq!(r.eval(&f), Outcome::NoMatch);

    assert_eq!(rule("not a and b").to_string(), "not a and b");
    assert_eq!(rule("not x == 1").to_string(), "not x == 1");
    let f = MapFields::new().with("x", 1);
    no("not x == 1", &f);
    yes("not x == 2", &f);
    yes("!(x == 2)", &f);
    yes("not not x", &f);
    assert_eq!(rule("a or b or c and d and e").to_string(), "(a or b or c) and d and e");
}

#[test]
fn parentheses_group() {
    let f = MapFields::new().with("a", true).with("b", false).with("c", true);
    yes("a or (b and not c)", &f);
    no("(a or b) and not c", &f);
    yes("((a))", &f);
    yes("not (b or (c and b))", &f);
    assert_eq!(rule("a or (b and not c)").to_string(), "a or (b and not c)");
    assert_eq!(rule("(x == 1)").to_string(), "x == 1");
}

#[test]
fn literals() {
    let f = sample();
    // bool
    yes("t == TRUE and fl == False", &f);
    yes("true", &f);
    no("false", &f);
    // integers, including sign, octal (Go's base-0 rule) and uint64
    yes("n == +5 and -3 < n and 010 == 8", &f);
    yes("18446744073709551615 > 9223372036854775807", &f);
    yes("big < 18446744073709551615 and -9223372036854775808 < 0", &f);
    // floats
    yes("f == 1.50 and .5 < f and -0.5 < f", &f);
    // strings with Go escapes, single quotes
    let g = MapFields::new().with("s", "a\"b\n\tc").with("q", "it's").with("u", "é A");
    yes(r#"s == "a\"b\n\tc""#, &g);
    yes(r#"q == 'it\'s' and q == "it's""#, &g);
    yes(r#"u == "\u00e9 \x41" and u == "\U000000e9 \101""#, &g);
    // IPv4 / IPv6 addresses and CIDRs
    yes("ip == 10.1.2.3 and ip6 == 2001:db8::1 and ip6 == 2001:0db8:0:0:0:0:0:1", &f);
    yes("ip in 10.0.0.0/8 and ip6 in 2001:db8::/32 and ip == \"10.1.2.3\"", &f);
    // hex strings compare with string bytes
    yes("method == 47:45:54 and method contains 45:54", &f);
    // regex literal used with ==, contains, !=
    yes("s == /^hel/ and s contains /lo$/ and s != /^x/", &f);
    // arrays of mixed literals and fields
    yes("n in [1, \"a\", 10.0.0.1, 5]", &f);
    yes("s in [n, \"hello\"]", &f);
}

#[test]
fn cidr_membership() {
    let f = sample();
    yes("ip in 10.0.0.0/8", &f);
    no("ip in 192.168.0.0/16", &f);
    yes("ip in [192.168.0.0/16, 10.0.0.0/8]", &f);
    no("ip in [192.168.0.0/16, 172.16.0.0/12]", &f);
    yes("ip in \"10.0.0.0/8\"", &f);
    yes("ip == 10.0.0.0/8 and ip != 11.0.0.0/8", &f);
    yes("ip in 10.1.2.99/8", &f); // host bits are ignored
    yes("ip6 in 2001:db8::/32 and ip6 in [::1/128, 2001:db8::/64]", &f);
    no("ip6 in 10.0.0.0/8", &f);
    // IPv4-mapped IPv6 addresses count as IPv4
    let g = MapFields::new().with("ip", ip("::ffff:10.9.8.7"));
    yes("ip in 10.0.0.0/8 and ip == 10.9.8.7", &g);
    // an IP held as a string still matches
    yes("ipstr in 192.168.0.0/16 and ipstr == 192.168.1.7", &f);
    // the widest prefixes
    yes("ip in 0.0.0.0/0 and ip6 in ::/0 and ip in 10.1.2.3/32", &f);
}

#[test]
fn array_membership() {
    let f = sample();
    yes("n in [1, 2, 5]", &f);
    no("n in [1, 2, 3]", &f);
    yes("n in [5.0]", &f);
    yes("s in [\"x\", \"hello\"]", &f);
    no("s in [\"x\", \"Hello\"]", &f);
    yes("ip in [10.1.2.3, 10.1.2.4]", &f);
    // like Rulekit, a list on the left of `in` never matches
    no("tags in [\"env:prod\"]", &f);
    // `==` against an array means "equals any"; `!=` means "equals none"
    yes("n == [4, 5]", &f);
    no("n != [4, 5]", &f);
    yes("n != [6, 7]", &f);
}

#[test]
fn contains_on_strings_and_arrays() {
    let f = sample();
    yes("s contains \"ell\"", &f);
    yes("s contains \"\"", &f);
    yes("tags contains \"env:prod\"", &f);
    // element equality, not substring
    no("tags contains \"env\"", &f);
    yes("nums contains 2", &f);
    no("nums contains 9", &f);
    yes("[1, 2, 5] contains n", &f);
    // `contains` with an array on the right is unsupported (Rulekit)
    no("tags contains [\"env:prod\"]", &f);
    // list comparisons: any element
    yes("tags == \"team:core\" and nums > 2 and tags != \"x\"", &f);
    no("tags != \"env:prod\"", &f);
}

#[test]
fn regex_matches() {
    let f = MapFields::new()
        .with("domain", "api.example.com")
        .with("path", "/a/b")
        .with("tags", vec!["x", "svc-42"])
        .with("n", 42);
    yes(r"domain matches /example\.com$/", &f);
    yes(r"domain =~ /^api\./", &f);
    no(r"domain =~ /^API\./", &f);
    no(r"domain matches /^example/", &f);
    yes(r"path matches /^\/a\/b$/", &f);
    yes("path matches |^/a/b$|", &f);
    yes(r"tags matches /^svc-\d+$/", &f);
    yes("domain matches /(?i)EXAMPLE/", &f);
    no("n matches /42/", &f);
    assert!(parse_err("domain matches \"x\"").message.contains("expected a /regex/ after \"matches\""));
}

#[test]
fn truthiness() {
    let f = sample();
    for src in ["n", "f", "s", "t", "ip", "tags", "not fl", "not zero", "not empty", "not none", "1", "\"a\""] {
        yes(src, &f);
    }
    for src in ["fl", "zero", "empty", "none", "not n", "0", "\"\"", "0.0"] {
        no(src, &f);
    }
    let g = MapFields::new().with("m", Value::Map(BTreeMap::new()));
    yes("m", &g);
    missing("absent", &f, "absent");
    missing("not absent", &f, "absent");
}

#[test]
fn missing_fields_report_the_first_needed_path() {
    let f = sample();
    missing("absent == 1", &f, "absent");
    missing("1 == absent", &f, "absent");
    missing("n == 5 and absent > 2", &f, "absent");
    missing("absent or other", &f, "absent");
    missing("n in [1, absent]", &f, "absent");
    missing("starts_with(absent, \"x\")", &f, "absent");
    missing("absent matches /x/", &f, "absent");
    missing("ip in [absent]", &f, "absent");
    missing("http.req.headers.X-Missing == \"a\"", &f, "http.req.headers.x-missing");
    // short-circuits: the other side decides
    yes("absent == 1 or n == 5", &f);
    no("absent == 1 and n == 4", &f);
    no("n == 4 and absent == 1", &f);
    yes("n == 5 or absent", &f);
    // Outcome helpers
    assert!(!Outcome::MissingField("x".into()).is_match());
    assert!(!rule("absent").matches(&f));
}

#[test]
fn functions() {
    let f = MapFields::new()
        .with("url", "https://example.com/x")
        .with("status", 404)
        .with("dst.domain", "api.example.co.uk")
        .with("host", "api.example.com");
    yes("starts_with(url, \"https://\")", &f);
    no("starts_with(url, \"http://\")", &f);
    yes("starts_with(status, 4)", &f);
    yes("starts_with(status, \"40\") == true", &f);
    yes("zone(host) == \"example.com\"", &f);
    yes("zone(dst.domain) == \"example.co.uk\"", &f);
    yes("in_zone(host, \"example.com\") and in_zone(\"example.com\", \"example.com\")", &f);
    no("in_zone(host, \"ample.com\")", &f);
    no("in_zone(host, \"internal.example.com\")", &f);
    // wrong argument types make the rule not match
    no("in_zone(status, \"example.com\")", &f);
    assert!(parse_err("starts_with(url)").message.contains("expects 2 arguments, got 1"));
    assert!(parse_err("nope(url)").message.contains("unknown function or macro \"nope\""));
    assert_eq!(functions::zone("localhost"), "localhost");
    assert_eq!(functions::zone("a.b.example.com."), "example.com");
    assert_eq!(functions::go_sprint(&eval::Val::Float(1e6)), "1e+06");
    assert_eq!(functions::go_sprint(&eval::Val::Float(1.5)), "1.5");
    assert_eq!(functions::go_sprint(&eval::Val::Float(1e-5)), "1e-05");
    assert_eq!(functions::go_sprint(&eval::Val::Float(100000.0)), "100000");
}

#[test]
fn macros_expand_at_parse_time() {
    let mut m = Macros::new();
    m.insert("is_4xx", "http.res.status >= 400 && http.res.status < 500").unwrap_or_else(|e| panic!("{e}"));
    m.insert("is_client_error", "is_4xx() and not is_teapot()").unwrap_or_else(|e| panic!("{e}"));
    m.insert("is_teapot", "http.res.status == 418").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.validate(), Ok(()));
    let r =
        Rule::parse_with_macros("is_client_error() or response.status == 999", &m).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.to_string(), "is_client_error() or response.status == 999");
    assert_eq!(r.fields(), vec!["http.res.status"]);
    for (status, want) in
        [(404, Outcome::Match), (418, Outcome::NoMatch), (500, Outcome::NoMatch), (999, Outcome::Match)]
    {
        assert_eq!(r.eval(&MapFields::new().with("http.res.status", status)), want, "status {status}");
    }
    // without the macro set, the call is unknown
    assert!(parse_err("is_4xx()").message.contains("unknown function or macro"));
    // macros take no arguments
    let e = Rule::parse_with_macros("is_4xx(1)", &m).expect_err("args");
    assert!(e.message.contains("takes no arguments"), "{e}");
    // errors inside a macro point at the call and quote the inner error
    let mut bad = Macros::new();
    bad.insert("broken", "x ==").unwrap_or_else(|e| panic!("{e}"));
    let e = Rule::parse_with_macros("a and broken()", &bad).expect_err("broken");
    assert_eq!(e.column, 7);
    assert_eq!(e.message, "in macro \"broken\": column 5: expected a value after \"==\"");
}

#[test]
fn macro_cycles_are_errors() {
    let mut m = Macros::new();
    m.insert("a", "b() or x").unwrap_or_else(|e| panic!("{e}"));
    m.insert("b", "y and a()").unwrap_or_else(|e| panic!("{e}"));
    m.insert("selfish", "selfish()").unwrap_or_else(|e| panic!("{e}"));
    let e = Rule::parse_with_macros("a()", &m).expect_err("cycle");
    assert!(e.message.contains("macro cycle: a() -> b() -> a()"), "{e}");
    let e = Rule::parse_with_macros("z or selfish()", &m).expect_err("cycle");
    assert!(e.message.contains("macro cycle: selfish() -> selfish()"), "{e}");
    assert!(matches!(m.validate(), Err(MacroError::Invalid { .. })));
}

#[test]
fn macro_definitions_are_checked() {
    let mut m = Macros::new();
    assert_eq!(m.insert("starts_with", "x"), Err(MacroError::Reserved("starts_with".into())));
    assert_eq!(m.insert("bad-name", "x"), Err(MacroError::InvalidName("bad-name".into())));
    assert_eq!(m.insert("", "x"), Err(MacroError::InvalidName(String::new())));
    for keyword in ["not", "IN", "true", "ab", "a.b", " x", "x "] {
        assert_eq!(m.insert(keyword, "x"), Err(MacroError::InvalidName(keyword.into())));
    }
    assert_eq!(m.insert("ok", "x"), Ok(()));
    assert_eq!(m.insert("ok", "y"), Err(MacroError::Duplicate("ok".into())));
    assert_eq!(m.get("ok"), Some("x"));
    assert_eq!(m.len(), 1);
    // exponential expansion is bounded
    let mut m = Macros::new();
    m.insert("m0", "x").unwrap_or_else(|e| panic!("{e}"));
    for i in 1..14 {
        m.insert(&format!("m{i}"), &format!("m{}() and m{}()", i - 1, i - 1)).unwrap_or_else(|e| panic!("{e}"));
    }
    let e = Rule::parse_with_macros("m13()", &m).expect_err("too many expansions");
    assert!(e.message.contains("too many macro expansions"), "{e}");
}

#[test]
fn macros_from_config_entries() {
    let defs: Vec<MacroDef> =
        serde_json::from_str(r#"[{"name": "is_4xx", "expr": "http.res.status >= 400 && http.res.status < 500"}]"#)
            .unwrap_or_else(|e| panic!("{e}"));
    let m = Macros::from_defs(defs).unwrap_or_else(|e| panic!("{e}"));
    let r = Rule::parse_with_macros("is_4xx()", &m).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.matches(&MapFields::new().with("http.res.status", 404)));
    let bad = vec![MacroDef { name: "x".into(), expr: "a ==".into() }];
    let e = Macros::from_defs(bad).expect_err("invalid");
    assert_eq!(e.to_string(), "macro \"x\": column 5: expected a value after \"==\"");
}

/// Every rule example in the qtap reference (config section and rule-language paragraph) and
/// the Rulekit README.
#[test]
fn reference_examples() {
    // http_capture rules
    let r = rule(r#"http.req.host == "httpbin.org""#);
    assert!(r.matches(&MapFields::new().with("http.req.host", "httpbin.org")));
    assert!(!r.matches(&MapFields::new().with("http.req.host", "example.org")));

    let r = rule("http.res.status >= 400 && http.res.status < 500");
    assert!(r.matches(&MapFields::new().with("http.res.status", 404)));
    assert!(!r.matches(&MapFields::new().with("http.res.status", 500)));
    assert!(!r.matches(&MapFields::new().with("http.res.status", 200)));

    // rulekit.macros: is_4xx, used as is_4xx()
    let mut m = Macros::new();
    m.insert("is_4xx", "http.res.status >= 400 && http.res.status < 500").unwrap_or_else(|e| panic!("{e}"));
    let r = Rule::parse_with_macros("is_4xx()", &m).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.matches(&MapFields::new().with("http.res.status", 451)));
    assert!(!r.matches(&MapFields::new().with("http.res.status", 302)));

    // control rules
    let r = rule(r#"dst.domain == "evil.com""#);
    assert!(r.matches(&MapFields::new().with("dst.domain", "evil.com")));
    assert!(!r.matches(&MapFields::new().with("dst.domain", "good.com")));

    // functions: starts_with(v,p), zone(domain), in_zone(domain, "example.com")
    let r = rule(r#"starts_with(http.req.url, "https://")"#);
    assert!(r.matches(&MapFields::new().with("http.req.url", "https://a.com/")));
    assert!(!r.matches(&MapFields::new().with("http.req.url", "http://a.com/")));
    let r = rule(r#"zone(dst.domain) == "example.com""#);
    assert!(r.matches(&MapFields::new().with("dst.domain", "api.example.com")));
    assert!(!r.matches(&MapFields::new().with("dst.domain", "api.example.org")));
    let r = rule(r#"in_zone(dst.domain, "example.com")"#);
    assert!(r.matches(&MapFields::new().with("dst.domain", "example.com")));
    assert!(r.matches(&MapFields::new().with("dst.domain", "sub.example.com")));
    assert!(!r.matches(&MapFields::new().with("dst.domain", "test.com")));

    // legacy field names
    let r = rule("response.status >= 500 or res.status == 0 or request.host == \"a\" or req.host == \"b\"");
    assert!(r.matches(&MapFields::new().with("http.res.status", 503).with("http.req.host", "z")));
    assert!(r.matches(&MapFields::new().with("http.res.status", 200).with("http.req.host", "b")));
    assert!(!r.matches(&MapFields::new().with("http.res.status", 200).with("http.req.host", "z")));

    // Rulekit README
    let r = rule(r"domain matches /example\.com$/");
    assert!(r.matches(&MapFields::new().with("domain", "example.com")));
    assert!(!r.matches(&MapFields::new().with("domain", "qpoint.io")));
    let r = rule(r"domain matches /example\.com$/ and port == 8080");
    assert!(r.matches(&MapFields::new().with("domain", "example.com").with("port", 8080)));
    assert!(!r.matches(&MapFields::new().with("domain", "example.com").with("port", 80)));
    let r = rule("hash && version > 1");
    assert!(r.matches(&MapFields::new().with("hash", "abc").with("version", 2)));
    assert!(!r.matches(&MapFields::new().with("hash", "").with("version", 2)));
    let both = MapFields::new().with("domain", "example.com").with("src.port", 1).with("dst.port", 1);
    yes(r#""example.com" == domain and 123 == 123 and src.port == dst.port"#, &both);
    let mut m = Macros::new();
    m.insert("isInternalAPI", r"domain matches /\.internal\.example\.com$/ or ip in 10.0.0.0/8")
        .unwrap_or_else(|e| panic!("{e}"));
    let r = Rule::parse_with_macros(r#"isInternalAPI() && user != "root""#, &m).unwrap_or_else(|e| panic!("{e}"));
    let f = |domain: &str, addr: &str, user: &str| {
        MapFields::new().with("domain", domain.to_owned()).with("ip", ip(addr)).with("user", user.to_owned())
    };
    assert!(r.matches(&f("a.internal.example.com", "1.1.1.1", "bob")));
    assert!(r.matches(&f("example.com", "10.0.0.1", "bob")));
    assert!(!r.matches(&f("example.com", "10.0.0.1", "root")));
    assert!(!r.matches(&f("example.com", "1.1.1.1", "bob")));

    // Rulekit's own test rule
    let r = rule(
        "tags eq 'db-svc' OR domain matches /example\\.com$/ OR (process.uid != 0 AND tags contains 'internal-svc')",
    );
    let g = |tags: Vec<&str>, domain: &str, uid: i64| {
        MapFields::new()
            .with("tags", tags.into_iter().map(str::to_owned).collect::<Vec<_>>())
            .with("domain", domain.to_owned())
            .with("process.uid", uid)
    };
    assert!(r.matches(&g(vec!["db-svc"], "x.org", 0)));
    assert!(r.matches(&g(vec![], "example.com", 0)));
    assert!(r.matches(&g(vec!["internal-svc"], "x.org", 1000)));
    assert!(!r.matches(&g(vec!["internal-svc"], "x.org", 0)));
}

#[test]
fn headers_and_index_syntax() {
    let mut f = MapFields::new();
    f.insert("http.req.headers.User-Agent", "curl/8.0").insert("http.req.headers.x-api-key", "k1");
    f.insert("items", Value::List(vec![Value::Map(BTreeMap::from([("name".to_owned(), Value::from("first"))]))]));
    f.insert("labels", Value::Map(BTreeMap::from([("app.kubernetes.io/name".to_owned(), Value::from("api"))])));
    yes("http.req.headers.user-agent contains \"curl\"", &f);
    yes("http.req.headers.User-Agent contains \"curl\"", &f);
    yes("request.headers.USER-AGENT == \"curl/8.0\"", &f);
    yes("http.req.headers[\"X-Api-Key\"] == \"k1\"", &f);
    yes("http.req.headers['x-api-key'] == \"k1\"", &f);
    yes("items[0].name == \"first\" and items[0][\"name\"] == \"first\"", &f);
    yes("labels[\"app.kubernetes.io/name\"] == \"api\"", &f);
    missing("items[1].name == \"x\"", &f, "items.1.name");
    let r = rule("http.req.headers[\"X-Api-Key\"] == \"k1\" and req.headers.Accept");
    assert_eq!(r.fields(), vec!["http.req.headers.x-api-key", "http.req.headers.accept"]);
    assert_eq!(r.to_string(), "http.req.headers[\"X-Api-Key\"] == \"k1\" and req.headers.Accept");
    assert_eq!(canonical_path("res.headers.Content-Type"), "http.res.headers.content-type");
    assert_eq!(canonical_path("resource.x"), "resource.x");
    assert_eq!(canonical_path("src.process.env.HOME"), "src.process.env.HOME");
    assert!(parse_err("x[y] == 1").message.contains("expected a quoted key or an index"));
}

#[test]
fn map_fields_lookup() {
    let f: MapFields = [("a.b", Value::from(1)), ("c", Value::from(vec![10, 20]))].into_iter().collect();
    assert_eq!(f.get("a.b"), Some(Value::Int(1)));
    assert_eq!(f.get("c.1"), Some(Value::Int(20)));
    assert_eq!(f.get("c.2"), None);
    assert_eq!(f.get("a"), None);
    let mut g = f.clone();
    assert_eq!(g.remove("a.b"), Some(Value::Int(1)));
    assert_eq!(g.len(), 1);
    assert!(!g.is_empty());
}

#[test]
fn comments_are_ignored() {
    let f = sample();
    yes("n == 5 -- trailing comment", &f);
    yes("n /* inline */ == 5", &f);
    yes("-- first line\nn == 5\nand s == \"hello\"", &f);
}

#[test]
fn error_messages_and_columns() {
    let cases: &[(&str, usize, &str)] = &[
        ("http.req.host ==", 17, "expected a value after \"==\""),
        ("http.res.status >=", 19, "expected a value after \">=\""),
        ("x == 1 and", 11, "expected a value after \"and\""),
        ("(x == 1", 8, "expected \")\" to close \"(\" at column 1, found end of rule"),
        ("x == \"abc", 6, "unterminated string"),
        ("x @ 1", 3, "unexpected character '@'"),
        ("x == 1 y == 2", 8, "expected \"and\", \"or\" or end of rule, found \"y\""),
        ("x > \"a\"", 5, "expected a number, field or function call after \">\", found \"a\""),
        ("\"a\" > 1", 1, "\">\" compares numbers: expected a number, field or function call before it, found \"a\""),
        ("x matches \"abc\"", 11, "expected a /regex/ after \"matches\", found \"abc\""),
        ("x in \"abc\"", 6, "expected an array [ … ] or a CIDR after \"in\""),
        ("x in 5", 6, "expected an array [ … ] or a CIDR after \"in\", found \"5\""),
        ("ip in 10.0.0.0/33", 7, "invalid CIDR \"10.0.0.0/33\": prefix length must be at most 32"),
        ("foo(x)", 1, "unknown function or macro \"foo\""),
        ("starts_with(x)", 1, "function \"starts_with\" expects 2 arguments, got 1"),
        ("", 1, "empty rule"),
        ("x = 1", 3, "unexpected \"=\"; compare with \"==\""),
        ("\"é\" == x @", 10, "unexpected character '@'"),
        ("x == 09", 6, "invalid integer 09 (a leading 0 means octal)"),
        ("x == 99999999999999999999", 6, "integer 99999999999999999999 is out of range"),
        ("x in []", 7, "expected a literal or field after \"[\", found \"]\""),
        ("x in [1,]", 9, "expected a literal or field after \",\", found \"]\""),
        ("== 1", 1, "expected a value, found \"==\""),
        ("x == 1)", 7, "expected \"and\", \"or\" or end of rule, found \")\""),
        ("x == \"a\\qb\"", 6, "invalid escape sequence \\q"),
        ("x == /a/ | b", 10, "unterminated |regex| literal"),
        ("a == b == c", 8, "expected \"and\", \"or\" or end of rule, found \"==\""),
    ];
    for &(src, column, message) in cases {
        let e = parse_err(src);
        assert_eq!((e.column, e.message.as_str()), (column, message), "rule {src:?}");
        assert_eq!(e.line, 1);
        assert_eq!(e.rule, src);
        assert_eq!(e.to_string(), format!("column {column}: {message}"));
    }
    let e = parse_err("x == /[/");
    assert_eq!(e.column, 6);
    assert!(e.message.starts_with("invalid regex /[/: "), "{}", e.message);
    let e = parse_err("x == 1\nand y ==");
    assert_eq!((e.line, e.column), (2, 9));
    assert_eq!(e.to_string(), "line 2, column 9: expected a value after \"==\"");
    assert_eq!(e.snippet(), "and y ==\n        ^");
    let deep = format!("{}x{}", "(".repeat(100), ")".repeat(100));
    assert!(parse_err(&deep).message.contains("nested too deeply"));
}

#[test]
fn lexer_longest_match_quirks() {
    // two hex digits are a hex string, like Rulekit; longer words are fields
    let f = MapFields::new().with("x", "\u{ab}").with("abc", 1).with("index", 2).with("in_x", 3);
    no("x == ab", &f);
    yes("abc == 1 and index == 2 and in_x == 3", &f);
    // numbers vs addresses vs hex
    let r = rule("a == 10.0.0.1 and b == 1.5 and c == 12:34 and d == fe80::1 and e == 12");
    assert_eq!(r.to_string(), "a == 10.0.0.1 and b == 1.5 and c == 12:34 and d == fe80::1 and e == 12");
    assert!(parse_err("x == 1.2.3").message.contains("found \".3\""));
}

#[test]
fn display_round_trips() {
    for src in [
        "a or b and not c",
        "not (a and b) or c == \"x\\\"y\"",
        "x in [1, \"a\", 10.0.0.1, 10.0.0.0/8, ab, /re/] and ip in 10.0.0.0/8",
        "starts_with(http.req.headers[\"X-Y\"], 'p') and tags contains \"a\" || n >= -1.5",
        "s =~ |a/b| AND NOT t",
    ] {
        let r = rule(src);
        let printed = r.to_string();
        let again = rule(&printed);
        assert_eq!(r, again, "{src:?} printed as {printed:?}");
        assert_eq!(again.to_string(), printed);
    }
    assert_eq!(rule("s =~ |a/b| AND NOT t").to_string(), "s matches |a/b| and not t");
    assert_eq!(parse("x").map(|r| r.source().to_owned()), Ok("x".to_owned()));
}

// --- property tests -------------------------------------------------------------------------

const FIELD_NAMES: &[&str] = &["a", "b", "n", "s", "ip", "tags", "gone", "http.req.headers.X-Key", "items[0]"];

fn field_name() -> impl Strategy<Value = String> {
    proptest::sample::select(FIELD_NAMES).prop_map(str::to_owned)
}

fn literal_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (-20i64..20).prop_map(|i| i.to_string()),
        (-20.0f64..20.0).prop_map(|f| format!("{f:.2}")),
        proptest::sample::select(vec![
            "true",
            "FALSE",
            "\"\"",
            "\"abc\"",
            "'a\\'b'",
            "\"x\\ty\"",
            "10.0.0.1",
            "::1",
            "10.0.0.0/8",
            "ab",
            "47:45",
            "/ab?c/",
        ])
        .prop_map(str::to_owned),
    ]
}

fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![(-20i64..20).prop_map(|i| i.to_string()), field_name(), (0.0f64..10.0).prop_map(|f| format!("{f:.1}"))]
}

fn operand_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => field_name(),
        3 => literal_text(),
        1 => proptest::collection::vec(prop_oneof![literal_text(), field_name()], 1..4)
            .prop_map(|v| format!("[{}]", v.join(", "))),
        1 => (field_name(), literal_text()).prop_map(|(f, l)| format!("starts_with({f}, {l})")),
    ]
}

fn predicate_text() -> impl Strategy<Value = String> {
    let eq_op = proptest::sample::select(vec!["==", "eq", "!=", "NE", "contains"]);
    let ord_op = proptest::sample::select(vec![">", "ge", "<", "<=", "Lt"]);
    let array = proptest::collection::vec(prop_oneof![literal_text(), field_name()], 1..4)
        .prop_map(|v| format!("[{}]", v.join(", ")));
    prop_oneof![
        (operand_text(), eq_op, operand_text()).prop_map(|(l, o, r)| format!("{l} {o} {r}")),
        (number_text(), ord_op, number_text()).prop_map(|(l, o, r)| format!("{l} {o} {r}")),
        (operand_text(), proptest::sample::select(vec!["/^a/", "|b|", "/(?i)ABC/"]))
            .prop_map(|(l, re)| format!("{l} matches {re}")),
        (operand_text(), prop_oneof![array, Just("10.0.0.0/8".to_owned())]).prop_map(|(l, r)| format!("{l} in {r}")),
        operand_text(),
    ]
}

fn rule_text() -> impl Strategy<Value = String> {
    predicate_text().prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (inner.clone(), proptest::sample::select(vec!["and", "&&", "AND"]), inner.clone())
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            (inner.clone(), proptest::sample::select(vec!["or", "||"]), inner.clone())
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            (proptest::sample::select(vec!["not ", "!", "NOT "]), inner.clone()).prop_map(|(n, a)| format!("{n}({a})")),
            inner.prop_map(|a| format!("({a})")),
        ]
    })
}

fn field_value() -> impl Strategy<Value = Option<Value<'static>>> {
    proptest::option::weighted(
        0.85,
        prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            (-20i64..20).prop_map(Value::Int),
            (-20.0f64..20.0).prop_map(Value::Float),
            proptest::sample::select(vec!["", "abc", "a'b", "x\ty", "10.0.0.1", "GE"]).prop_map(Value::from),
            proptest::sample::select(vec!["10.0.0.1", "::1", "192.168.0.1"]).prop_map(|s| Value::Ip(ip(s))),
            proptest::collection::vec((-3i64..3).prop_map(Value::Int), 0..3).prop_map(Value::List),
        ],
    )
}

fn field_map() -> impl Strategy<Value = MapFields> {
    proptest::collection::vec(field_value(), FIELD_NAMES.len()).prop_map(|values| {
        let mut m = MapFields::new();
        for (name, value) in FIELD_NAMES.iter().zip(values) {
            let path = name.replace("[0]", ".0");
            if let Some(v) = value {
                m.insert(&path, v);
            }
        }
        m
    })
}

proptest! {
    // 512 cases unless PROPTEST_CASES says otherwise (`with_cases` alone would ignore it).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_text_never_panics(src in any::<String>(), f in field_map()) {
        if let Ok(r) = Rule::parse(&src) {
            let _ = r.eval(&f);
        }
    }

    #[test]
    fn rule_like_text_never_panics_and_prints_stably(
        src in "[a-z0-9 .()\\[\\]\"'/|&!=<>~,:_*+-]{0,40}",
        f in field_map(),
    ) {
        if let Ok(r) = Rule::parse(&src) {
            let printed = r.to_string();
            let again = Rule::parse(&printed);
            prop_assert!(again.is_ok(), "{:?} printed as {:?}: {:?}", src, printed, again);
            let again = again.unwrap_or_else(|_| r.clone());
            prop_assert_eq!(&again, &r);
            prop_assert_eq!(again.eval(&f), r.eval(&f));
        }
    }

    #[test]
    fn generated_rules_reparse_and_evaluate_identically(src in rule_text(), fields in proptest::collection::vec(field_map(), 3)) {
        let r = Rule::parse(&src);
        prop_assert!(r.is_ok(), "{:?}: {:?}", src, r);
        let r = r.unwrap_or_else(|_| rule("true"));
        let printed = r.to_string();
        let again = Rule::parse(&printed);
        prop_assert!(again.is_ok(), "{:?} printed as {:?}: {:?}", src, printed, again);
        let again = again.unwrap_or_else(|_| rule("true"));
        prop_assert_eq!(&again, &r);
        prop_assert_eq!(again.to_string(), printed);
        for f in &fields {
            prop_assert_eq!(again.eval(f), r.eval(f));
        }
    }
}
