use super::*;

/// The qtap.yaml example of the reference study (section 2), as a qtap user would have it.
pub(super) const QTAP_EXAMPLE: &str = r#"
version: 2
services:
  event_stores:
    - id: console_stdout
      type: stdout
  object_stores:
    - id: my_s3
      type: s3
      endpoint: minio.example.com:9000
      bucket: qpoint-objects
      region: us-east-1
      access_url: https://storage.example.com/{{BUCKET}}/{{DIGEST}}
      insecure: false
      access_key: {type: env, value: S3_ACCESS_KEY}
      secret_key: {type: env, value: S3_SECRET_KEY}
stacks:
  basic_reporting:
    plugins:
      - type: http_capture
        config:
          level: summary
          format: json
          rules:
            - name: full log httpbin.org
              expr: http.req.host == "httpbin.org"
              level: full
      - type: access_logs
        config: {mode: summary, format: console}
      - type: http_metrics
      - type: report_usage
tap:
  direction: egress
  ignore_loopback: true
  audit_include_dns: false
  http:
    stack: basic_reporting
  endpoints:
    - domain: api.github.com
      http:
        stack: basic_reporting
  filters:
    groups: [kubernetes, qpoint]
    custom:
      - exe: /usr/bin/curl
        strategy: exact
rulekit:
  macros: [{name: is_4xx, expr: "http.res.status >= 400 && http.res.status < 500"}]
"#;

/// qtap's built-in default (pkg/config/default.yaml).
pub(super) const QTAP_DEFAULT: &str = r#"
version: 2
services:
  event_stores:
    - type: stdout
  object_stores:
    - type: stdout
stacks:
  basic_reporting:
    plugins:
      - type: http_metrics
      - type: access_logs
        config:
          mode: full
          format: console
      - type: report_usage
tap:
  direction: egress
  ignore_loopback: true
  audit_include_dns: false
  http:
    stack: basic_reporting
"#;

#[test]
fn qtap_example_loads_with_one_warning_per_unsupported_key() {
    let l = load_str(QTAP_EXAMPLE, "qtap.yaml").expect("loads");
    let paths: Vec<&str> = l.warnings.iter().map(|w| w.path.as_str()).collect();
    assert!(!paths.contains(&"services.object_stores[0].type"), "s3 is supported: {paths:?}");
    // Its keys come from the environment: unset, the agent says which one and where.
    let e = resolve_in(&l.config, "qtap.yaml", Path::new("/d")).unwrap_err().to_string();
    assert_eq!(e, "qtap.yaml: services.object_stores[0].access_key: environment variable `S3_ACCESS_KEY` is not set");
    let mut without_s3 = l.config.clone();
    without_s3.services.object_stores.clear();
    // http_capture rules, rulekit macros and custom filters are applied: no warning for them.
    for p in ["stacks.basic_reporting.plugins[0].config.rules", "rulekit", "tap.filters.custom"] {
        assert!(!paths.contains(&p), "{p} is supported: {paths:?}");
    }
    for p in ["stacks.basic_reporting.plugins[1].type", "stacks.basic_reporting.plugins[2].type"] {
        assert!(!paths.contains(&p), "access_logs and http_metrics run: {paths:?}");
    }
    // report_usage runs and both filter groups are known: nothing to warn about.
    for p in ["stacks.basic_reporting.plugins[3].type", "tap.filters.groups[0]", "tap.filters.groups[1]"] {
        assert!(!paths.contains(&p), "{p} is supported: {paths:?}");
    }
    let eff = resolve(&without_s3, Path::new("/d")).expect("resolve");
    assert_eq!(eff.capture_level(), CaptureLevel::Summary);
    assert_eq!(eff.direction(), TapDirection::Egress);
    assert!(eff.ignore_loopback());
    assert_eq!(eff.stacks().endpoints.get("api.github.com").map(|s| s.level), Some(CaptureLevel::Summary));
    assert_eq!(eff.object_store(), &ObjectStoreKind::Local { dir: "/d/objects".into(), layout: LocalLayout::Segments });
    assert!(eff.stacks().default.report_usage && eff.stacks().default.http_metrics);
    // Group `kubernetes` filters the kubelet; the custom filter curl.
    let f = eff.process_filter();
    assert!(f.skip(Some("/home/kubernetes/bin/kubelet")).all && f.skip(Some("/usr/bin/curl")).all);
    assert!(!f.skip(Some("/usr/bin/wget")).all && f.skips_self());
}

const PER_ENDPOINT: &str = r#"
stacks:
  quiet:
    plugins:
      - type: http_capture
        config: {level: summary}
  loud:
    plugins:
      - type: http_capture
        config:
          level: headers
          format: text
          rules: [{name: errors, expr: "http.res.status >= 500", level: full, format: json}]
      - type: detect_errors
        config: {rules: [{name: server_error, triggerStatusCodes: ["5xx"]}]}
      - type: report_usage
tap:
  http: {stack: quiet}
  endpoints:
    - domain: API.Example.com
      http: {stack: loud}
    - domain: silent.example.com
      http: {stack: none}
tags:
  - {key: Team, source: env, location: TEAM}
  - {key: app, source: k8s.label, location: app}
"#;

#[test]
fn per_endpoint_stacks_formats_and_tags() {
    let l = load_str(PER_ENDPOINT, "q.yaml").expect("loads");
    let paths: Vec<&str> = l.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(paths, vec!["tags[1].source"], "only the label tag is unsupported");
    let eff = resolve(&l.config, Path::new("/d")).expect("resolve");
    let st = eff.stacks();
    let d = st.for_host(Some("other.example.com"), "10.0.0.1");
    assert_eq!(
        (d.name.as_str(), d.level, d.error_rules.len(), d.report_usage),
        ("quiet", CaptureLevel::Summary, 0, false)
    );
    let loud = st.for_host(Some("api.example.com"), "10.0.0.1");
    assert_eq!((loud.name.as_str(), loud.level, loud.format), ("loud", CaptureLevel::Headers, CaptureFormat::Text));
    assert_eq!((loud.error_rules.len(), loud.report_usage), (1, true));
    assert_eq!((loud.rules[0].level, loud.rules[0].format), (CaptureLevel::Full, CaptureFormat::Json));
    // No HTTP host (TLS without plaintext): the SNI/DNS endpoint id picks the stack.
    assert_eq!(st.for_host(None, "api.example.com").name, "loud");
    assert_eq!(st.for_host(Some("silent.example.com"), "x").level, CaptureLevel::None);
    let ok = crate::rules::MapFields::new().with("http.res.status", 503i64);
    assert_eq!(
        loud.decide(Some(&ok), || {}),
        CaptureDecision { level: CaptureLevel::Full, format: CaptureFormat::Json }
    );
    assert_eq!(eff.tag_sources(), &[TagSource { key: "team".into(), env: "TEAM".into() }]);
    let e = err("tags: [{key: a, source: env}]\n");
    assert!(e.contains("tags") && e.contains("location"), "{e}");
}

#[test]
fn unknown_filter_group_is_named() {
    let l = load_str("tap:\n  filters:\n    groups: [kubernetes, kubernets]\n", "q.yaml").expect("loads");
    let w: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("tap.filters.groups[1]") && w[0].contains("unknown group `kubernets`"), "{w:?}");
}

#[test]
fn qtap_default_loads_and_has_level_none() {
    let l = load_str(QTAP_DEFAULT, "default.yaml").expect("loads");
    let eff = resolve(&l.config, Path::new("/d")).expect("resolve");
    assert_eq!(eff.capture_level(), CaptureLevel::None, "no http_capture plugin: nothing stored");
    assert_eq!(eff.object_store(), &ObjectStoreKind::Stdout);
}

#[test]
fn embedded_default_is_clean() {
    let l = embedded_default();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let eff = resolve(&l.config, Path::new("./tapline-data")).expect("resolve");
    assert_eq!(eff.capture_level(), CaptureLevel::Summary);
    assert_eq!(eff.direction(), TapDirection::All);
    assert!(!eff.ignore_loopback());
    assert_eq!(
        eff.object_store(),
        &ObjectStoreKind::Local { dir: "./tapline-data/objects".into(), layout: LocalLayout::Segments }
    );
}

fn err(yaml: &str) -> String {
    match load_str(yaml, "q.yaml") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected an error for {yaml}"),
    }
}

#[test]
fn errors_name_the_key_path_and_the_expectation() {
    let e = err("tap:\n  direction: egres\n");
    assert!(e.starts_with("q.yaml: tap.direction: unknown variant `egres`"), "{e}");
    assert!(e.contains("egress-external"), "{e}");
    let e = err("tap:\n  ignore_loopback: maybe\n");
    assert!(e.contains("tap.ignore_loopback") && e.contains("bool"), "{e}");
    let e = err("stacks:\n  s:\n    plugins:\n      - type: http_capture\n        config:\n          level: verbose\n");
    assert!(e.contains("stacks.s.plugins[0].config.level") && e.contains("full"), "{e}");
    let e = err("tap:\n  http:\n    stack: missing\n");
    assert!(e.contains("tap.http.stack") && e.contains("no stack named `missing`"), "{e}");
    let e = err("services:\n  object_stores:\n    - type: s3\n");
    assert!(e.contains("services.object_stores[0].bucket"), "{e}");
    let e = err("services:\n  event_stores:\n    - type: kafka\n");
    assert!(e.contains("services.event_stores[0].type") && e.contains("stdout"), "{e}");
    let e = err("tap: [1, 2]\n");
    assert!(e.contains("tap"), "{e}");
}

#[test]
fn unknown_keys_warn_with_did_you_mean() {
    let l = load_str("tap:\n  ignore_loopbak: true\n  direction: all\nextra_top: 1\n", "q.yaml").expect("loads");
    let w: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter().any(|s| s.contains("tap.ignore_loopbak") && s.contains("did you mean `ignore_loopback`")),
        "{w:?}"
    );
    assert!(w.iter().any(|s| s.contains("extra_top: unknown key")), "{w:?}");
    let l = load_str(
        "stacks:\n  s:\n    plugins:\n      - type: http_capture\n        config:\n          levl: full\n",
        "q.yaml",
    )
    .expect("loads");
    assert!(l.warnings.iter().any(|w| w.path == "stacks.s.plugins[0].config.levl"), "{:?}", l.warnings);
}

#[test]
fn details_is_headers_and_none_stack_means_no_capture() {
    let y = "stacks:\n  s:\n    plugins:\n      - type: http_capture\n        config:\n          level: details\ntap:\n  http:\n    stack: s\n";
    let eff = resolve(&load_str(y, "q").expect("l").config, Path::new("/d")).expect("r");
    assert_eq!(eff.capture_level(), CaptureLevel::Headers);
    let y = "tap:\n  http:\n    stack: none\n";
    let eff = resolve(&load_str(y, "q").expect("l").config, Path::new("/d")).expect("r");
    assert_eq!(eff.capture_level(), CaptureLevel::None);
}

#[test]
fn direction_filter_semantics() {
    use TapDirection::*;
    assert!(All.allows(true, false) && All.allows(false, true));
    assert!(Ingress.allows(true, false) && !Ingress.allows(false, true));
    assert!(Egress.allows(false, true) && Egress.allows(false, false) && !Egress.allows(true, false));
    assert!(EgressExternal.allows(false, true) && !EgressExternal.allows(false, false));
    assert!(EgressInternal.allows(false, false) && !EgressInternal.allows(false, true));
}

#[test]
fn redaction_is_on_by_default_configurable_and_checked() {
    let eff = resolve(&load_str("", "q").unwrap().config, Path::new("/d")).unwrap();
    assert!(eff.redaction().is_some_and(|r| r.headers.names.iter().any(|h| h == "authorization")));
    let l = load_str("redaction: {headers: [X-Internal-Key], body_patterns: ['secret-\\d+']}", "q").unwrap();
    let eff = resolve(&l.config, Path::new("/d")).unwrap();
    let r = eff.redaction().unwrap();
    assert!(r.headers.names.iter().any(|h| h == "x-internal-key"));
    assert_eq!(r.body_patterns, vec!["secret-\\d+".to_string()]);
    let off = load_str("redaction: {enabled: false}", "q").unwrap();
    assert!(resolve(&off.config, Path::new("/d")).unwrap().redaction().is_none());
    let bad = load_str("redaction: {body_patterns: ['(']}", "q.yaml").unwrap();
    let e = resolve_in(&bad.config, "q.yaml", Path::new("/d")).unwrap_err().to_string();
    assert!(e.starts_with("q.yaml: redaction: invalid body pattern `(`"), "{e}");
    let e = load_str("redaction: {hedaers: [a]}", "q.yaml").map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("redaction"), "a misspelt key under redaction is an error: {e}");
}

#[test]
fn capture_rules_compile_with_macros_and_errors_name_rule_and_column() {
    let y = r#"
rulekit:
  macros: [{name: is_admin, expr: 'http.req.path matches /^\/admin/'}]
stacks:
  s:
    plugins:
      - type: http_capture
        config:
          level: summary
          rules:
            - {name: admin bodies, expr: 'is_admin()', level: full}
            - {name: errors, expr: 'http.res.status >= 500', level: headers}
tap: {http: {stack: s}}
"#;
    let l = load_str(y, "q").unwrap();
    assert!(l.warnings.is_empty(), "rules and macros are supported: {:?}", l.warnings);
    let eff = resolve(&l.config, Path::new("/d")).unwrap();
    let names: Vec<(&str, CaptureLevel)> =
        eff.stacks().default.rules.iter().map(|r| (r.name.as_str(), r.level)).collect();
    assert_eq!(names, vec![("admin bodies", CaptureLevel::Full), ("errors", CaptureLevel::Headers)]);
    let bad = y.replace("'http.res.status >= 500'", "'http.res.status >= '");
    let e = resolve_in(&load_str(&bad, "q.yaml").unwrap().config, "q.yaml", Path::new("/d")).unwrap_err().to_string();
    assert!(e.starts_with("q.yaml: stacks.s.plugins[0].config.rules[1].expr: rule \"errors\": column"), "{e}");
}
