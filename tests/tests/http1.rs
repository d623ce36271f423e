//! End to end, as root: the real agent and eBPF, plaintext HTTP/1 between real clients
//! (curl, python requests) and a real server, checked field by field.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tapline_e2e::*;

#[test]
fn curl_egress_and_server_ingress_every_field() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    let out = run(Command::new("curl").args([
        "-sS",
        "-H",
        "X-Marker: e2e-curl-1",
        &format!("http://127.0.0.1:{port}/hello/world?x=1"),
    ]))
    .expect("curl");
    assert_eq!(out.stdout, b"hello /hello/world?x=1");

    let ev = agent
        .wait_for(Duration::from_secs(15), "curl and server connection events", |ev| {
            connections_to(ev, port, "egress-internal").len() == 1 && connections_to(ev, port, "ingress").len() == 1
        })
        .expect("events");

    // The client side, seen from curl.
    let c = one(connections_to(&ev, port, "egress-internal"), "curl connection");
    assert_eq!(c["source"]["exe"], "/usr/bin/curl");
    assert_eq!(c["source"]["userId"], 0, "root's uid 0 is shown");
    assert_eq!(c["source"]["user"], "root");
    assert_eq!(c["source"]["address"]["family"], "ipv4");
    assert_eq!(c["source"]["address"]["ip"], "127.0.0.1");
    assert_eq!(c["destination"]["address"]["ip"], "127.0.0.1");
    assert_eq!(c["destination"]["address"]["port"], port);
    assert_eq!(c["l7Protocol"], "http1");
    assert_eq!(c["socketProtocol"], "tcp");
    assert_eq!(c["finalized"], true);
    assert!(c.get("part").is_none(), "a short connection has one report, without part");
    assert!(c.get("tlsVersion").is_none());
    assert_eq!(c["tags"]["bin"], serde_json::json!(["curl"]));
    assert_eq!(c["tags"]["protocol"], serde_json::json!(["http1"]));
    assert_eq!(c["tags"]["strategy"], serde_json::json!(["observe"]));
    assert!(c["tags"]["host"][0].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(c["meta"]["endpointId"], "127.0.0.1");
    let cid = c["meta"]["connectionId"].as_str().expect("connectionId");
    assert_eq!(cid.len(), 20);
    assert!(c["bytesSent"].as_u64().unwrap_or(0) > 80, "request bytes counted: {c}");
    assert!(c["bytesReceived"].as_u64().unwrap_or(0) > 100, "response bytes counted: {c}");
    assert_eq!(c["system"]["agent"], "tapline");

    let a = one(artifacts_of(&ev, cid), "curl artifact_record");
    assert_eq!(a["type"], "http_transaction");
    assert_eq!(a["endpointId"], "127.0.0.1");
    assert_eq!(a["requestId"].as_str().map(str::len), Some(20));
    let s = &a["summary"];
    assert_eq!(s["connection_id"], cid);
    assert_eq!(s["request_id"], a["requestId"]);
    assert_eq!(s["direction"], "egress-internal");
    assert_eq!(s["process_exe"], "/usr/bin/curl");
    assert_eq!(s["request_host"], "127.0.0.1");
    assert_eq!(s["request_method"], "GET");
    assert_eq!(s["request_protocol"], "http1");
    assert_eq!(s["request_scheme"], "http");
    assert_eq!(s["response_status"], 200);
    assert_eq!(s["response_content_type"], "text/plain");
    assert!(s.get("request_content_type").is_none(), "no request body, no request_content_type");
    assert!(s["duration_ms"].as_u64().unwrap_or(0) >= 1);

    let o = fetch_object(&agent, a);
    assert_eq!(o["request"]["method"], "GET");
    assert_eq!(o["request"]["url"], format!("http://127.0.0.1:{port}/hello/world?x=1"));
    assert_eq!(o["request"]["path"], "/hello/world");
    assert_eq!(o["request"]["scheme"], "http");
    assert_eq!(o["request"]["authority"], format!("127.0.0.1:{port}"));
    assert_eq!(o["request"]["protocol"], "http1");
    assert_eq!(o["request"]["request_id"], a["requestId"]);
    assert!(o["request"]["user_agent"].as_str().is_some_and(|u| u.starts_with("curl/")));
    assert_eq!(o["request"]["headers"]["X-Marker"], "e2e-curl-1");
    assert_eq!(o["request"]["headers"]["Host"], format!("127.0.0.1:{port}"));
    assert!(o["request"].get("body").is_none(), "GET without body");
    assert_eq!(o["response"]["status"], 200);
    assert_eq!(o["response"]["headers"]["X-Served-By"], "tapline-test");
    assert_eq!(b64(&o["response"]["body"]), b"hello /hello/world?x=1");
    assert_eq!(o["direction"], "egress-internal");
    assert_eq!(o["metadata"]["process_exe"], "/usr/bin/curl");
    assert_eq!(o["metadata"]["connection_id"], cid);
    assert!(o["metadata"]["process_id"].as_str().is_some_and(|p| p.parse::<u32>().is_ok()));
    assert!(o["duration_ms"].as_u64().unwrap_or(0) >= 1);
    assert!(o["transaction_time"].as_str().is_some_and(|t| t.ends_with('Z')));

    // The server side of the same exchange: ingress, seen from python.
    let sv = one(connections_to(&ev, port, "ingress"), "server connection");
    assert!(sv["destination"]["exe"].as_str().is_some_and(|e| e.contains("python")), "{sv}");
    assert_eq!(sv["l7Protocol"], "http1");
    let sid = sv["meta"]["connectionId"].as_str().expect("id");
    assert_ne!(sid, cid);
    let sa = one(artifacts_of(&ev, sid), "server artifact_record");
    assert_eq!(sa["summary"]["direction"], "ingress");
    assert_eq!(sa["summary"]["response_status"], 200);
    let so = fetch_object(&agent, sa);
    assert_eq!(so["request"]["headers"]["X-Marker"], "e2e-curl-1");
    assert_eq!(b64(&so["response"]["body"]), b"hello /hello/world?x=1");

    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "exit 0 on SIGTERM: {}", stopped.stderr);
    let report = stopped.check_data_model().expect("data model");
    assert!(report.contains("0 errors"), "{report}");
}

#[test]
fn python_requests_post_body_over_ipv6() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("::1").expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    let script = format!(
        "import requests; r = requests.post('http://[::1]:{port}/submit', data=b'marker-py-body-0123456789', \
         headers={{'Content-Type': 'application/octet-stream'}}); print(r.status_code)"
    );
    let out = run(Command::new("python3").args(["-c", &script])).expect("python requests");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200");
    let ev = agent
        .wait_for(Duration::from_secs(15), "python egress connection", |ev| {
            connections_to(ev, port, "egress-internal").iter().any(|c| c["finalized"] == true)
        })
        .expect("events");
    let c = one(connections_to(&ev, port, "egress-internal"), "python connection");
    assert!(c["source"]["exe"].as_str().is_some_and(|e| e.contains("python")), "{c}");
    assert_eq!(c["source"]["address"]["family"], "ipv6");
    assert_eq!(c["destination"]["address"]["ip"], "::1");
    assert_eq!(c["tags"]["bin"][0].as_str().map(|b| b.starts_with("python")), Some(true));
    let cid = c["meta"]["connectionId"].as_str().expect("id");
    let a = one(artifacts_of(&ev, cid), "python artifact_record");
    assert_eq!(a["summary"]["request_method"], "POST");
    assert_eq!(a["summary"]["request_content_type"], "application/octet-stream");
    assert_eq!(a["summary"]["response_content_type"], "application/json");
    let o = fetch_object(&agent, a);
    assert_eq!(b64(&o["request"]["body"]), b"marker-py-body-0123456789");
    assert_eq!(o["request"]["content_type"], "application/octet-stream");
    assert_eq!(o["request"]["url"], format!("http://[::1]:{port}/submit"));
    let resp: Value = serde_json::from_slice(&b64(&o["response"]["body"])).expect("json body");
    assert_eq!(resp["len"], 25);
    let stopped = agent.stop().expect("stop");
    stopped.check_data_model().expect("data model");
}

/// `len` non-repeating bytes, so a glued or shifted chunk cannot go unnoticed.
fn noise(len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(len + 4);
    let mut x: u32 = 0x1234_5678;
    while body.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        body.extend_from_slice(&x.to_le_bytes());
    }
    body.truncate(len);
    body
}

/// A body over the default 2 MiB `--http-buffer-size` is stored cut at 2 MiB, with a marker
/// and its full size, on both sides; the transaction is never dropped.
#[test]
fn body_over_the_buffer_size_is_cut_visibly() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    let body = noise(3 << 20);
    let file = agent.data_dir().join("big.bin");
    std::fs::write(&file, &body).expect("write body");
    run(Command::new("curl").args([
        "-sS",
        "-H",
        "Expect:",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("http://127.0.0.1:{port}/cut"),
    ]))
    .expect("curl upload");
    let ev = agent
        .wait_for(Duration::from_secs(30), "both sides' records", |ev| {
            ["egress-internal", "ingress"].iter().all(|d| !records_on(ev, port, d).is_empty())
        })
        .expect("events");
    for d in ["egress-internal", "ingress"] {
        let c = one(connections_to(&ev, port, d), d);
        let a = one(artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap_or("")), "record");
        let o = fetch_object(&agent, a);
        let req = &o["request"];
        assert_eq!(b64(&req["body"]), &body[..2 << 20], "{d}: the first 2 MiB, exactly");
        assert_eq!(req["body_truncated"], true, "{d}");
        assert_eq!(req["body_size"], 3 << 20, "{d}: the full size is told");
        assert!(o["response"].get("body_truncated").is_none(), "the small response is whole");
    }
    agent.stop().expect("stop").check_data_model().expect("data model");
}

#[test]
fn five_mib_post_arrives_intact_at_level_full() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &["--http-buffer-size", "8mb"]).expect("agent");
    let body = noise(5 << 20);
    let file = agent.data_dir().join("big.bin");
    std::fs::write(&file, &body).expect("write body");
    let out = run(Command::new("curl").args([
        "-sS",
        "-H",
        "Expect:",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("http://127.0.0.1:{port}/upload"),
    ]))
    .expect("curl upload");
    let reply: Value = serde_json::from_slice(&out.stdout).expect("server reply");
    assert_eq!(reply["sha1"], sha1_hex(&body));
    let ev = agent
        .wait_for(Duration::from_secs(30), "the upload's artifact_record", |ev| {
            !records_on(ev, port, "egress-internal").is_empty()
        })
        .expect("events");
    let c = one(connections_to(&ev, port, "egress-internal"), "upload connection");
    let a = one(artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap_or("")), "upload record");
    let o = fetch_object(&agent, a);
    let got = b64(&o["request"]["body"]);
    assert_eq!(got.len(), body.len(), "the whole 5 MiB body is stored");
    assert!(got == body, "stored body bytes equal the bytes sent");
    let (_, metrics) = agent.get("/metrics").expect("metrics");
    assert!(!metrics.contains("tapline_stream_gaps_total 1"), "no gaps expected:\n{metrics}");
    agent.stop().expect("stop");
}

#[test]
fn thousand_keepalive_requests_one_connection() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &["--report-interval-secs", "600"]).expect("agent");
    // curl's URL globbing reuses one connection for all 1,000 requests.
    run(Command::new("curl").args(["-sS", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/k/[1-1000]")]))
        .expect("curl");
    let ev = agent
        .wait_for(Duration::from_secs(30), "1,000 artifact_records", |ev| {
            connections_to(ev, port, "egress-internal")
                .first()
                .map(|c| artifacts_of(ev, c["meta"]["connectionId"].as_str().unwrap_or("")).len() >= 1000)
                .unwrap_or(false)
        })
        .expect("events");
    let c = one(connections_to(&ev, port, "egress-internal"), "keep-alive connection");
    let recs = artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap_or(""));
    assert_eq!(recs.len(), 1000);
    let mut paths: Vec<String> = Vec::new();
    for r in &recs {
        assert_eq!(r["summary"]["response_status"], 200);
        paths.push(r["requestId"].as_str().unwrap_or("").to_string());
    }
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 1000, "every transaction has its own requestId");
    // The last object is the 1000th request.
    let last = fetch_object(&agent, recs[999]);
    assert_eq!(last["request"]["path"], "/k/1000");
    agent.stop().expect("stop");
}

#[test]
fn embedded_default_is_summary_level() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(None, &[]).expect("agent");
    run(Command::new("curl").args(["-sS", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/summary")]))
        .expect("curl");
    let ev = agent
        .wait_for(Duration::from_secs(15), "artifact", |ev| {
            connections_to(ev, port, "egress-internal")
                .first()
                .map(|c| !artifacts_of(ev, c["meta"]["connectionId"].as_str().unwrap_or("")).is_empty())
                .unwrap_or(false)
        })
        .expect("events");
    let c = one(connections_to(&ev, port, "egress-internal"), "connection");
    let a = one(artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap_or("")), "record");
    let o = fetch_object(&agent, a);
    assert_eq!(o["request"]["method"], "GET");
    assert_eq!(o["response"]["status"], 200);
    assert!(o["request"].get("headers").is_none() && o["request"].get("body").is_none(), "summary: {o}");
    assert!(o["response"].get("headers").is_none() && o["response"].get("body").is_none(), "summary: {o}");
    assert!(a["url"].as_str().is_some_and(|u| u.starts_with("file://")), "the local store's url: {a}");
    let stopped = agent.stop().expect("stop");
    stopped.check_data_model().expect("data model");
}

#[test]
fn sigterm_finalizes_open_connections() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    // A client that makes one request and then keeps the connection open.
    let script = format!(
        "import socket,time,sys\ns=socket.create_connection(('127.0.0.1',{port}))\n\
         s.sendall(b'GET /held HTTP/1.1\\r\\nHost: held\\r\\n\\r\\n')\nprint(s.recv(4096)[:12].decode(),flush=True)\ntime.sleep(60)\n"
    );
    let mut client = Proc {
        child: Command::new("python3")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("client"),
    };
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(client.child.stdout.take().expect("stdout")), &mut first)
        .expect("read");
    assert!(first.starts_with("HTTP/1."), "{first}");
    let ev = agent
        .wait_for(Duration::from_secs(15), "the held request's artifact", |ev| {
            items(ev, "artifact_record").iter().any(|a| a["endpointId"] == "held")
        })
        .expect("events");
    assert!(connections_to(&ev, port, "egress-internal").is_empty(), "no report before close");
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let ev = stopped.events();
    let c = one(connections_to(&ev, port, "egress-internal"), "finalized held connection");
    assert_eq!(c["finalized"], true);
    assert_eq!(c["meta"]["endpointId"], "held");
    drop(client);
}

#[test]
fn non_http_bytes_are_other_and_the_agent_keeps_capturing() {
    let _lock = probe_lock();
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    // A raw TCP echo-less sink receiving garbage.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let gport = listener.local_addr().expect("addr").port();
    let sink = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 65536];
            while let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
                if n == 0 {
                    break;
                }
            }
        }
    });
    let script = format!(
        "import socket,os\ns=socket.create_connection(('127.0.0.1',{gport}))\n\
         s.sendall(b'\\x00\\xffGARBAGE'+os.urandom(200000))\ns.close()\n"
    );
    run(Command::new("python3").args(["-c", &script])).expect("garbage client");
    let _ = sink.join();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    run(Command::new("curl").args(["-sS", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/after-garbage")]))
        .expect("curl");
    let ev = agent
        .wait_for(Duration::from_secs(15), "garbage and http connections", |ev| {
            !connections_to(ev, gport, "egress-internal").is_empty()
                && !connections_to(ev, port, "egress-internal").is_empty()
        })
        .expect("events");
    let g = one(connections_to(&ev, gport, "egress-internal"), "garbage connection");
    assert_eq!(g["l7Protocol"], "other");
    assert_eq!(g["tags"]["protocol"], serde_json::json!(["other"]));
    assert_eq!(g["bytesSent"], 200_009);
    assert!(artifacts_of(&ev, g["meta"]["connectionId"].as_str().unwrap_or("")).is_empty());
    let h = one(connections_to(&ev, port, "egress-internal"), "http connection");
    assert_eq!(h["l7Protocol"], "http1");
    agent.stop().expect("stop");
}

#[test]
fn metrics_and_readyz() {
    let _lock = probe_lock();
    let agent = Agent::start(None, &[]).expect("agent");
    let (code, _) = agent.get("/readyz").expect("readyz");
    assert_eq!(code, 200);
    let (port_server, port) = start_http_server("127.0.0.1").expect("server");
    run(Command::new("curl").args(["-sS", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/m")])).expect("curl");
    agent
        .wait_for(Duration::from_secs(15), "an artifact", |ev| !items(ev, "artifact_record").is_empty())
        .expect("events");
    let (code, m) = agent.get("/metrics").expect("metrics");
    assert_eq!(code, 200);
    for needle in [
        "tapline_events_total{type=\"artifact_record\"}",
        "tapline_ringbuf_lost_total{reason=",
        "# TYPE tapline_component_errors counter",
        "tapline_component_received_total{kind=\"event_store\",component=\"stdout\"}",
        "tapline_records_total{kind=\"data\"}",
    ] {
        assert!(m.contains(needle), "/metrics lacks {needle}:\n{m}");
    }
    drop(port_server);
    agent.stop().expect("stop");
}

/// Secrets are masked before anything is stored or emitted: an Authorization header, a token in
/// the query and a password in a JSON body never reach stdout, and the stored object holds masks.
#[test]
fn secrets_are_masked_before_storing() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    run(Command::new("curl").args([
        "-sS",
        "-H",
        "Authorization: Bearer sekrit-bearer-value",
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"user":"ann","password":"sekrit-password"}"#,
        &format!("http://127.0.0.1:{port}/login?access_token=sekrit-query&page=2"),
    ]))
    .expect("curl");
    let ev = agent
        .wait_for(Duration::from_secs(15), "the login record", |ev| !records_on(ev, port, "egress-internal").is_empty())
        .expect("events");
    let c = one(connections_to(&ev, port, "egress-internal"), "curl");
    let a = one(artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap()), "record");
    let o = fetch_object(&agent, a);
    let text = o.to_string();
    assert!(!text.contains("sekrit"), "no secret in the stored object: {text}");
    let auth = o["request"]["headers"].as_object().and_then(|h| h.get("Authorization")).and_then(|v| v.as_str());
    assert_eq!(auth, Some("[REDACTED]"), "masked, not dropped");
    assert!(o["request"]["url"].as_str().is_some_and(|u| u.contains("page=2") && u.contains("access_token=")), "{o}");
    let body = String::from_utf8(b64(&o["request"]["body"])).unwrap();
    assert!(body.contains("\"user\":\"ann\"") && body.contains("[REDACTED]"), "{body}");
    let stopped = agent.stop().expect("stop");
    assert!(stopped.lines.iter().all(|l| !l.contains("sekrit")), "no secret on stdout");
    stopped.check_data_model().expect("data model");
}

/// An `http_capture` rule raises the level of matching transactions only: bodies for /admin,
/// summaries for the rest.
#[test]
fn capture_rule_full_for_admin_paths_only() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let config = r#"
rulekit:
  macros: [{name: is_admin, expr: 'http.req.path matches /^\/admin/'}]
services:
  event_stores: [{type: stdout}]
  object_stores: [{type: local}]
stacks:
  s:
    plugins:
      - type: http_capture
        config:
          level: summary
          rules: [{name: admin, expr: 'is_admin() and http.req.method == "GET"', level: full}]
tap: {direction: all, ignore_loopback: false, http: {stack: s}}
"#;
    let agent = Agent::start(Some(config), &[]).expect("agent");
    run(Command::new("curl").args(["-sS", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{port}/admin/users")))
        .expect("curl");
    run(Command::new("curl").args(["-sS", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{port}/public/page")))
        .expect("curl");
    let ev = agent
        .wait_for(Duration::from_secs(15), "both records", |ev| records_on(ev, port, "egress-internal").len() == 2)
        .expect("events");
    for c in connections_to(&ev, port, "egress-internal") {
        let a = one(artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap()), "record");
        let o = fetch_object(&agent, a);
        let path = o["request"]["path"].as_str().unwrap().to_string();
        if path == "/admin/users" {
            assert_eq!(b64(&o["response"]["body"]), b"hello /admin/users", "level full: body kept");
            assert!(o["request"]["headers"].is_object());
        } else {
            assert_eq!(path, "/public/page");
            assert!(o["response"].get("body").is_none() && o["request"].get("headers").is_none(), "summary: {o}");
        }
    }
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// `detect_errors` on 5xx: one flat `issue` per failing request, with qtap's fields, and the
/// failing transactions stored with their bodies (recordResBody) while the others stay summaries.
#[test]
fn detect_errors_raises_one_issue_per_failing_request() {
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
        config: {level: summary}
      - type: detect_errors
        config:
          rules: [{name: server error, triggerStatusCodes: ["5xx"], recordResBody: true}]
tap: {direction: egress, ignore_loopback: false, http: {stack: s}}
"#;
    let agent = Agent::start(Some(config), &[]).expect("agent");
    for path in ["/status/503", "/status/200", "/status/500"] {
        run(Command::new("curl").args(["-sS", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{port}{path}")))
            .expect("curl");
    }
    // The records of curl's requests to the test server (the harness talks to the agent too).
    let records =
        |ev: &[Value]| -> Vec<Value> { records_on(ev, port, "egress-internal").into_iter().cloned().collect() };
    let ev = agent.wait_for(Duration::from_secs(15), "three records", |ev| records(ev).len() == 3).expect("events");
    let recs = records(&ev);
    // Only the test server's (the harness's own /readyz polls answered 503 before the agent was ready).
    let issues: Vec<&Value> = items(&ev, "issue")
        .into_iter()
        .filter(|i| i["error"] == "server error" && recs.iter().any(|r| r["connectionId"] == i["connectionId"]))
        .collect();
    assert_eq!(issues.len(), 2, "one per failing request: {issues:#?}");
    for i in &issues {
        let status = i["status"].as_u64().unwrap();
        assert!(status == 503 || status == 500);
        assert_eq!(i["method"], "GET");
        assert_eq!(i["path"], format!("/status/{status}"));
        assert_eq!(i["url"], format!("http://127.0.0.1/status/{status}"));
        assert_eq!(i["direction"], "egress-internal");
        assert_eq!(i["triggerConditions"], serde_json::json!(["detect_errors:status_code 5xx"]));
        assert!(i["triggerReasons"][0].as_str().unwrap().contains(&status.to_string()));
        // The issue names the same request as its artifact_record, whose object has the body.
        let a = recs.iter().find(|a| a["requestId"] == i["requestId"]).expect("record");
        assert_eq!(a["connectionId"], i["connectionId"]);
        let o = fetch_object(&agent, a);
        assert_eq!(b64(&o["response"]["body"]), format!("status {status}").as_bytes(), "recordResBody");
    }
    let ok = recs.iter().find(|a| a["summary"]["response_status"] == 200).expect("200");
    assert!(fetch_object(&agent, ok)["response"].get("body").is_none(), "the plugin's level for the rest");
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// `tap.filters.custom` on curl's executable: curl's traffic is not captured at all, python's is.
#[test]
fn process_filter_drops_curl_keeps_python() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let config = r#"
services:
  event_stores: [{type: stdout}]
  object_stores: [{type: local}]
stacks:
  s: {plugins: [{type: http_capture, config: {level: summary}}]}
tap:
  direction: egress
  ignore_loopback: false
  http: {stack: s}
  filters:
    custom:
      - {exe: /usr/bin/curl, strategy: exact}
"#;
    let agent = Agent::start(Some(config), &[]).expect("agent");
    run(Command::new("curl").args(["-sS", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{port}/from-curl")))
        .expect("curl");
    let script = format!("import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/from-python').read()");
    run(Command::new("python3").args(["-c", &script])).expect("python");
    agent
        .wait_for(Duration::from_secs(15), "python's connection", |ev| {
            connections_to(ev, port, "egress-internal").iter().any(|c| c["finalized"] == true)
        })
        .expect("events");
    // Give a (wrongly) captured curl connection time to show up too.
    std::thread::sleep(Duration::from_millis(500));
    let ev = agent.events();
    let conns = connections_to(&ev, port, "egress-internal");
    assert_eq!(conns.len(), 1, "only python's: {conns:#?}");
    assert!(conns[0]["source"]["exe"].as_str().is_some_and(|e| e.contains("python")));
    // curl is an exact path: the kernel skips it from its exec on, so userspace never sees it.
    // (The counters are read from the kernel once a second.)
    let skipped = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix("tapline_kernel_filtered_total{reason=\"filtered_process_calls\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut m = agent.get("/metrics").expect("metrics").1;
    while skipped(&m) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        m = agent.get("/metrics").expect("metrics").1;
    }
    assert!(skipped(&m) > 0, "{m}");
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// SIGHUP reloads the configuration: a new level applies to new connections; an invalid file
/// is rejected with a message and the running configuration stays.
#[test]
fn sighup_reloads_the_configuration() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let conf = |level: &str| {
        format!(
            "services: {{event_stores: [{{type: stdout}}], object_stores: [{{type: local}}]}}\n\
             stacks: {{s: {{plugins: [{{type: http_capture, config: {{level: {level}}}}}]}}}}\n\
             tap: {{direction: egress, ignore_loopback: false, http: {{stack: s}}}}\n"
        )
    };
    let agent = Agent::start(Some(&conf("summary")), &[]).expect("agent");
    let get = |path: &str| {
        run(Command::new("curl").args(["-sS", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{port}{path}")))
            .expect("curl");
    };
    let record_of = |path: &str| {
        let want = format!("http://127.0.0.1:{port}{path}");
        let ev = agent
            .wait_for(Duration::from_secs(15), path, |ev| {
                connections_to(ev, port, "egress-internal").iter().any(|c| {
                    artifacts_of(ev, c["meta"]["connectionId"].as_str().unwrap_or(""))
                        .iter()
                        .any(|a| fetch_object(&agent, a)["request"]["url"] == want)
                })
            })
            .expect("record");
        let a = records_on(&ev, port, "egress-internal")
            .into_iter()
            .find(|a| fetch_object(&agent, a)["request"]["url"] == want)
            .cloned()
            .expect("record");
        fetch_object(&agent, &a)
    };
    get("/before");
    assert!(record_of("/before")["response"].get("body").is_none(), "summary");
    let path = agent.config_path().expect("config").to_path_buf();
    std::fs::write(&path, conf("full")).unwrap();
    agent.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    get("/after");
    assert_eq!(b64(&record_of("/after")["response"]["body"]), b"hello /after", "full after the reload");
    std::fs::write(&path, conf("fulll")).unwrap();
    agent.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    get("/still");
    // `tapline fetch` reads the same file: put a valid one back (without SIGHUP) to fetch.
    std::fs::write(&path, conf("full")).unwrap();
    assert_eq!(b64(&record_of("/still")["response"]["body"]), b"hello /still", "the running configuration stays");
    assert!(agent.stderr().contains("SIGHUP: the new configuration is invalid"), "{}", agent.stderr());
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// The `http_metrics` plugin: per-endpoint request counts by method and status, and durations.
#[test]
fn http_metrics_per_endpoint() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let config = r#"
services: {event_stores: [{type: stdout}], object_stores: [{type: local}]}
stacks: {s: {plugins: [{type: http_capture, config: {level: summary}}, {type: http_metrics}]}}
tap: {direction: egress, ignore_loopback: false, http: {stack: s}}
"#;
    let agent = Agent::start(Some(config), &[]).expect("agent");
    for _ in 0..2 {
        run(Command::new("curl").args(["-sS", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{port}/status/418")))
            .expect("curl");
    }
    let want =
        r#"tapline_http_requests_total{endpoint="127.0.0.1",direction="egress-internal",method="GET",status="418"} 2"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, m) = agent.get("/metrics").expect("metrics");
        if m.contains(want) {
            assert!(
                m.contains("tapline_http_request_duration_seconds_bucket{le=\"+Inf\",endpoint=\"127.0.0.1\""),
                "{m}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no {want} in:\n{m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    agent.stop().expect("stop");
}

/// `access_logs`: a human line per transaction on stderr (a rule asks for headers on /admin),
/// while stdout stays pure NDJSON.
#[test]
fn access_logs_on_stderr() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let config = r#"
services: {event_stores: [{type: stdout}], object_stores: [{type: local}]}
stacks:
  s:
    plugins:
      - {type: http_capture, config: {level: summary}}
      - type: access_logs
        config: {mode: summary, format: console, rules: [{name: admin, expr: 'http.req.path matches /^\/admin/', mode: details}]}
tap: {direction: egress, ignore_loopback: false, http: {stack: s}}
"#;
    let agent = Agent::start(Some(config), &[]).expect("agent");
    for path in ["/plain", "/admin/x"] {
        run(Command::new("curl").args(["-sS", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{port}{path}")))
            .expect("curl");
    }
    let plain = "GET http://127.0.0.1/plain 200 ";
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !(agent.stderr().contains(plain) && agent.stderr().contains("GET http://127.0.0.1/admin/x 200 ")) {
        assert!(std::time::Instant::now() < deadline, "no access lines in:\n{}", agent.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
    let err = agent.stderr();
    let admin = err.split("GET http://127.0.0.1/admin/x 200 ").nth(1).unwrap_or("");
    assert!(admin.contains("\n  > User-Agent: curl/"), "details for /admin: {admin}");
    let after_plain = err.split(plain).nth(1).unwrap_or("");
    assert!(!after_plain.lines().nth(1).unwrap_or("").starts_with("  >"), "summary for the rest");
    let stopped = agent.stop().expect("stop");
    assert!(stopped.lines.iter().all(|l| serde_json::from_str::<Value>(l).is_ok()), "stdout is NDJSON only");
}
