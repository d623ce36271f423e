//! End to end, as root: capture policy beyond single rules — per-endpoint plugin stacks,
//! `report_usage` request events, `format: text` objects, per-process `QPOINT_STRATEGY` /
//! `QPOINT_TAGS` and configured tags, and `tap.audit_include_dns`.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tapline_e2e::*;

const TOKEN: &str = "tok_live_4f9a8b7c6d5e4f3a2b1cWXYZ";

/// The default stack stores summaries; `api.example.com` has its own stack: text objects at
/// level headers, a 5xx issue rule and `request` events. Requests to other hosts on the same
/// server get none of those.
#[test]
fn per_endpoint_stacks_report_usage_and_text_objects() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let config = r#"
services:
  event_stores: [{type: stdout}]
  object_stores: [{type: local}]
stacks:
  quiet:
    plugins:
      - type: http_capture
        config: {level: summary}
  loud:
    plugins:
      - type: http_capture
        config: {level: headers, format: text}
      - type: detect_errors
        config: {rules: [{name: api error, triggerStatusCodes: ["5xx"]}]}
      - type: report_usage
tap:
  direction: egress
  ignore_loopback: false
  http: {stack: quiet}
  endpoints:
    - domain: api.example.com
      http: {stack: loud}
"#;
    let agent = Agent::start(Some(config), &[]).expect("agent");
    for (host, path) in
        [("api.example.com", "/status/500"), ("api.example.com", "/ok"), ("other.example.com", "/status/500")]
    {
        run(Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-H", &format!("Host: {host}")])
            .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
            .arg(format!("http://127.0.0.1:{port}{path}")))
        .expect("curl");
    }
    let records =
        |ev: &[Value]| -> Vec<Value> { records_on(ev, port, "egress-internal").into_iter().cloned().collect() };
    let ev = agent.wait_for(Duration::from_secs(15), "three records", |ev| records(ev).len() == 3).expect("events");
    let recs = records(&ev);
    let of_host = |h: &str| -> Vec<&Value> { recs.iter().filter(|r| r["summary"]["request_host"] == h).collect() };
    let (api, other) = (of_host("api.example.com"), of_host("other.example.com"));
    assert_eq!((api.len(), other.len()), (2, 1), "{recs:#?}");

    // detect_errors of the endpoint's stack only.
    let issues: Vec<&Value> = items(&ev, "issue")
        .into_iter()
        .filter(|i| recs.iter().any(|r| r["connectionId"] == i["connectionId"]))
        .collect();
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(
        (issues[0]["error"].as_str(), issues[0]["url"].as_str()),
        (Some("api error"), Some("http://api.example.com/status/500"))
    );
    assert!(issues[0]["tags"].as_array().unwrap().iter().any(|t| t == "bin:curl"), "{:?}", issues[0]["tags"]);

    // report_usage: one request event per api transaction, its credential described, not included.
    let requests: Vec<&Value> =
        items(&ev, "request").into_iter().filter(|r| recs.iter().any(|a| a["requestId"] == r["requestId"])).collect();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    for r in &requests {
        assert!(api.iter().any(|a| a["requestId"] == r["requestId"] && a["connectionId"] == r["connectionId"]));
        assert_eq!(r["endpointId"], "api.example.com");
        assert_eq!(r["method"], "GET");
        assert_eq!(r["direction"], "egress-internal");
        assert_eq!(r["agent"].as_str().map(|a| a.starts_with("curl/")), Some(true));
        assert_eq!(
            (r["authTokenSource"].as_str(), r["authTokenType"].as_str()),
            (Some("Authorization"), Some("bearer"))
        );
        assert_eq!(r["authTokenMask"], "Bearer …WXYZ");
        assert_eq!(r["authTokenHash"].as_str().map(str::len), Some(64));
        assert!(r["duration"].as_u64().unwrap() >= 1 && r["bytesReceived"].as_u64().unwrap() > 0);
        assert_eq!((r["contentType"].as_str(), r["category"].as_str()), (Some("text/plain"), Some("text")));
    }
    let statuses: Vec<u64> = requests.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert!(statuses.contains(&500) && statuses.contains(&200), "{statuses:?}");
    let env = agent.get("/metrics").expect("metrics").1;
    assert!(env.contains("tapline_events_total{type=\"request\"} 2"), "{env}");

    // format: text for the endpoint (headers, credential masked); JSON for the rest.
    for a in &api {
        let text = String::from_utf8(agent.fetch(a["digest"].as_str().unwrap()).expect("fetch")).expect("utf-8");
        assert!(text.starts_with("HTTP Transaction\n================\n\nMetadata:\n"), "{text}");
        assert!(text.contains("  URL: http://api.example.com/") && text.contains("  Headers:\n"), "{text}");
        assert!(text.contains("Authorization: [REDACTED]") && !text.contains(TOKEN), "{text}");
    }
    let o = fetch_object(&agent, other[0]);
    assert_eq!(o["request"]["authority"], "other.example.com");
    let stopped = agent.stop().expect("stop");
    let stdout = stopped.events().iter().map(|e| e.to_string()).collect::<String>();
    assert!(!stdout.contains(&TOKEN[..TOKEN.len() - 4]), "the credential never reaches the EventStore");
    stopped.check_events_only().expect("data model");
}

/// `QPOINT_STRATEGY=ignore` in a process's environment hides it; `QPOINT_TAGS`, a configured
/// `env` tag and `--tags` tag the others' connections; a rule reads `src.process.env.*`.
#[test]
fn process_strategy_tags_and_env_rules() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let config = r#"
services:
  event_stores: [{type: stdout}]
  object_stores: [{type: local}]
stacks:
  s:
    plugins:
      - type: http_capture
        config:
          level: summary
          rules: [{name: team core in full, expr: 'src.process.env.TEAM == "core"', level: full}]
tap: {direction: egress, ignore_loopback: false, http: {stack: s}}
tags:
  - {key: team, source: env, location: TEAM}
"#;
    let agent = Agent::start(Some(config), &["--tags", "deploy:ci,Region:lab"]).expect("agent");
    let py = |path: &str, env: &[(&str, &str)]| {
        let script = format!("import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}').read()");
        let mut c = Command::new("python3");
        c.args(["-c", &script]);
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c).expect("python");
    };
    py("/ignored", &[("QPOINT_STRATEGY", "ignore")]);
    py("/ignored-by-exe", &[("QPOINT_STRATEGY", "ignore,exe.contains:python")]);
    py("/not-ignored", &[("QPOINT_STRATEGY", "ignore,exe.suffix:/wget")]);
    py("/tagged", &[("QPOINT_TAGS", "app:shop,tier:web"), ("TEAM", "core")]);
    agent
        .wait_for(Duration::from_secs(15), "two records", |ev| records_on(ev, port, "egress-internal").len() >= 2)
        .expect("events");
    // Give a (wrongly) captured ignored process time to show up too.
    std::thread::sleep(Duration::from_millis(500));
    let ev = agent.events();
    let recs = records_on(&ev, port, "egress-internal");
    let paths: Vec<String> =
        recs.iter().map(|r| fetch_object(&agent, r)["request"]["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(recs.len(), 2, "the ignored processes are not captured: {paths:?}");
    let conns = connections_to(&ev, port, "egress-internal");
    let tagged = recs.iter().find(|r| fetch_object(&agent, r)["request"]["path"] == "/tagged").expect("tagged");
    let conn = conns.iter().find(|c| c["meta"]["connectionId"] == tagged["connectionId"]).expect("connection");
    let tags = &conn["tags"];
    for (k, v) in [
        ("app", "shop"),
        ("tier", "web"),
        ("team", "core"),
        ("deploy", "ci"),
        ("region", "lab"),
        ("strategy", "observe"),
    ] {
        assert_eq!(tags[k], serde_json::json!([v]), "tag {k}: {tags}");
    }
    // The env rule raised the level of the TEAM=core process only.
    assert!(fetch_object(&agent, tagged)["response"]["body"].is_string(), "full for team core");
    let plain = recs.iter().find(|r| r["requestId"] != tagged["requestId"]).expect("other");
    assert!(fetch_object(&agent, plain)["response"].get("body").is_none(), "summary for the rest");
    let other_conn = conns.iter().find(|c| c["meta"]["connectionId"] == plain["connectionId"]).expect("conn");
    assert!(other_conn["tags"].get("team").is_none() && other_conn["tags"]["deploy"] == serde_json::json!(["ci"]));
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// `tap.audit_include_dns: true`: each DNS answer a process receives is a `connection` event
/// (udp, dns) from that process to the server.
#[test]
fn dns_lookups_are_reported_when_audited() {
    let _lock = probe_lock();
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let ns = format!("127.54.{}.{}", pid / 250 % 250, pid % 250 + 1);
    let (_dns, _) = start_fixture("dns_server.py", &[ns.as_str(), "audit.tapline.test=127.0.0.1"]).expect("dns server");
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {ns}\n")).unwrap();
    let config = r#"
services:
  event_stores: [{type: stdout}]
  object_stores: [{type: local}]
tap: {direction: all, ignore_loopback: false, audit_include_dns: true}
"#;
    let agent = Agent::start(Some(config), &[]).expect("agent");
    let script = "import socket; socket.getaddrinfo('audit.tapline.test', 80, socket.AF_INET)";
    let cmd = format!("mount --bind {} /etc/resolv.conf && python3 -c \"{script}\"", resolv.display());
    run(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &cmd])).expect("lookup");
    let dns = |ev: &[Value]| -> Vec<Value> {
        items(ev, "connection")
            .into_iter()
            .filter(|c| c["destination"]["address"]["ip"] == ns.as_str() && c["l7Protocol"] == "dns")
            .cloned()
            .collect()
    };
    let ev = agent.wait_for(Duration::from_secs(15), "the DNS connection", |ev| !dns(ev).is_empty()).expect("events");
    let c = &dns(&ev)[0];
    assert_eq!((c["socketProtocol"].as_str(), c["finalized"].as_bool()), (Some("udp"), Some(true)));
    assert_eq!(c["destination"]["address"]["port"], 53);
    assert_eq!(c["direction"], "egress-internal");
    assert!(c["source"]["exe"].as_str().is_some_and(|e| e.contains("python")), "{c}");
    assert!(c["source"]["address"]["port"].as_u64().unwrap() > 0, "the socket's own port: {c}");
    assert!(c["bytesReceived"].as_u64().unwrap() > 12);
    assert_eq!(c["tags"]["protocol"], serde_json::json!(["dns"]));
    agent.stop().expect("stop").check_data_model().expect("data model");
}
