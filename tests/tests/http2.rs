//! End to end, as root: HTTP/2 in cleartext (prior knowledge and `Upgrade: h2c`) and over TLS
//! (nginx, nghttp, curl, httpx), gRPC, decoded bodies, websocket upgrades, a connection
//! watched from its middle, and 10,000 multiplexed requests from h2load.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tapline_e2e::*;

/// The artifact_records of connections to `port` seen from `direction`, with their objects.
fn records_to(agent: &Agent, ev: &[Value], port: u16, direction: &str) -> Vec<(Value, Value)> {
    records_on(ev, port, direction).into_iter().map(|a| (a.clone(), fetch_object(agent, a))).collect()
}

fn header<'a>(o: &'a Value, side: &str, name: &str) -> Option<&'a str> {
    o[side]["headers"].as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))?.1.as_str()
}

#[test]
fn curl_h2c_prior_knowledge_both_sides() {
    let _lock = probe_lock();
    let (_server, port) = start_fixture("h2_server.py", &["127.0.0.1"]).expect("h2 server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    let out = run(Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-H", "X-Marker: h2-prior"])
        .arg(format!("http://127.0.0.1:{port}/one?x=1")))
    .expect("curl");
    assert_eq!(out.stdout, b"h2 says /one?x=1");
    let ev = agent
        .wait_for(Duration::from_secs(15), "h2c records", |ev| {
            records_on(ev, port, "egress-internal").len() == 1 && records_on(ev, port, "ingress").len() == 1
        })
        .expect("events");
    for direction in ["egress-internal", "ingress"] {
        let c = one(connections_to(&ev, port, direction), direction);
        assert_eq!(c["l7Protocol"], "http2", "{c}");
        assert_eq!(c["tags"]["protocol"], serde_json::json!(["http2"]));
        let (a, o) = records_to(&agent, &ev, port, direction).remove(0);
        assert_eq!(a["summary"]["request_protocol"], "http2");
        assert_eq!(a["summary"]["request_method"], "GET");
        assert_eq!(a["summary"]["response_status"], 200);
        assert_eq!(o["request"]["protocol"], "http2");
        assert_eq!(o["request"]["url"], format!("http://127.0.0.1:{port}/one?x=1"));
        assert_eq!(o["request"]["authority"], format!("127.0.0.1:{port}"));
        assert_eq!(header(&o, "request", ":method"), Some("GET"), "pseudo-headers kept: {o}");
        assert_eq!(header(&o, "request", ":path"), Some("/one?x=1"));
        assert_eq!(header(&o, "request", "x-marker"), Some("h2-prior"));
        assert_eq!(header(&o, "response", ":status"), Some("200"));
        assert_eq!(b64(&o["response"]["body"]), b"h2 says /one?x=1");
        let md = &o["metadata"];
        assert!(md["bytes_sent"].as_u64().unwrap_or(0) > 0 && md["bytes_received"].as_u64().unwrap_or(0) > 0);
    }
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// `curl --http2` on cleartext asks for `Upgrade: h2c`: the request goes as HTTP/1.1, the
/// answer comes on HTTP/2 stream 1; that is one transaction.
#[test]
fn curl_upgrade_h2c_is_one_transaction() {
    let _lock = probe_lock();
    let (_server, port) = start_fixture("h2_server.py", &["127.0.0.1"]).expect("h2 server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    let out = run(Command::new("curl").args(["-sS", "--http2"]).arg(format!("http://127.0.0.1:{port}/upgraded")))
        .expect("curl");
    assert_eq!(out.stdout, b"h2 says /upgraded");
    let ev = agent
        .wait_for(Duration::from_secs(15), "upgrade record", |ev| records_on(ev, port, "egress-internal").len() == 1)
        .expect("events");
    let c = one(connections_to(&ev, port, "egress-internal"), "curl");
    assert_eq!(c["l7Protocol"], "http2");
    let (a, o) = records_to(&agent, &ev, port, "egress-internal").remove(0);
    assert_eq!(a["summary"]["response_status"], 200, "the h2 answer, not the 101");
    assert_eq!(o["request"]["path"], "/upgraded");
    assert_eq!(b64(&o["response"]["body"]), b"h2 says /upgraded");
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// nginx serving h2 over TLS (ALPN h2), with nghttp and curl --http2 as clients: decrypted,
/// parsed, with several concurrent streams on one connection.
#[test]
fn nginx_h2_over_tls_with_nghttp_and_curl() {
    let _lock = probe_lock();
    let cert = TestCert::new().expect("cert");
    let port = free_port();
    let dir = cert.dir.path();
    for name in ["a", "b", "c"] {
        std::fs::write(dir.join(format!("{name}.txt")), format!("file {name}\n")).unwrap();
    }
    let _nginx = start_nginx(
        &cert,
        &[format!("listen 127.0.0.1:{port} ssl http2; ssl_protocols TLSv1.3; root {};", dir.display())],
    )
    .expect("nginx");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    // One connection, three streams at once.
    run(Command::new("nghttp").args(["-n", "-m", "1"]).args([
        format!("https://127.0.0.1:{port}/a.txt"),
        format!("https://127.0.0.1:{port}/b.txt"),
        format!("https://127.0.0.1:{port}/c.txt"),
    ]))
    .expect("nghttp");
    let out = run(Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(&cert.cert)
        .args(["--resolve", &format!("tapline.test:{port}:127.0.0.1")])
        .arg(format!("https://tapline.test:{port}/a.txt")))
    .expect("curl");
    assert_eq!(out.stdout, b"file a\n");
    let ev = agent
        .wait_for(Duration::from_secs(15), "nginx h2 records", |ev| records_on(ev, port, "ingress").len() == 4)
        .expect("events");
    let conns = connections_to(&ev, port, "ingress");
    assert_eq!(conns.len(), 2, "nghttp's and curl's connections");
    for c in &conns {
        assert_eq!(c["l7Protocol"], "http2", "{c}");
        assert_eq!(c["tlsVersion"], 772);
        assert_eq!(c["meta"]["tlsProbeIntrospected"], true);
    }
    let mut paths: Vec<String> = records_to(&agent, &ev, port, "ingress")
        .iter()
        .map(|(_, o)| {
            assert_eq!(o["request"]["scheme"], "https");
            let body = String::from_utf8(b64(&o["response"]["body"])).unwrap();
            let path = o["request"]["path"].as_str().unwrap().to_string();
            assert_eq!(body, format!("file {}\n", &path[1..2]), "each stream has its own body");
            path
        })
        .collect();
    paths.sort();
    assert_eq!(paths, ["/a.txt", "/a.txt", "/b.txt", "/c.txt"]);
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// python httpx with HTTP/2: cleartext prior knowledge, and over TLS to nginx (ALPN).
#[test]
fn python_httpx_http2() {
    let _lock = probe_lock();
    let (_h2, h2c_port) = start_fixture("h2_server.py", &["127.0.0.1"]).expect("h2 server");
    let cert = TestCert::new().expect("cert");
    let tls_port = free_port();
    std::fs::write(cert.dir.path().join("x.txt"), "over tls\n").unwrap();
    let _nginx =
        start_nginx(&cert, &[format!("listen 127.0.0.1:{tls_port} ssl http2; root {};", cert.dir.path().display())])
            .expect("nginx");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    let script = format!(
        "import httpx\n\
         with httpx.Client(http1=False, http2=True) as c:\n    print(c.post('http://127.0.0.1:{h2c_port}/p', content=b'z'*5000).text)\n\
         with httpx.Client(http2=True, verify='{}') as c:\n    r = c.get('https://localhost:{tls_port}/x.txt'); print(r.http_version, r.text)",
        cert.cert.display()
    );
    let out = run(Command::new("python3").args(["-c", &script])).expect("httpx");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got 5000 bytes\nHTTP/2 over tls\n\n");
    let ev = agent
        .wait_for(Duration::from_secs(15), "httpx records", |ev| {
            records_on(ev, h2c_port, "egress-internal").len() == 1
                && records_on(ev, tls_port, "egress-internal").len() == 1
        })
        .expect("events");
    let (_, o) = records_to(&agent, &ev, h2c_port, "egress-internal").remove(0);
    assert_eq!(o["request"]["method"], "POST");
    assert_eq!(b64(&o["request"]["body"]), vec![b'z'; 5000]);
    let (a, o) = records_to(&agent, &ev, tls_port, "egress-internal").remove(0);
    assert_eq!(a["summary"]["request_protocol"], "http2");
    assert_eq!(o["request"]["url"], format!("https://localhost:{tls_port}/x.txt"));
    assert_eq!(b64(&o["response"]["body"]), b"over tls\n");
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// gRPC (grpcio, h2c): unary, server streaming and a failing call; trailers kept with the
/// response headers, the connection tagged grpc.
#[test]
fn grpc_unary_streaming_and_failure() {
    let _lock = probe_lock();
    let (_server, port) = start_fixture("grpc_pair.py", &["server"]).expect("grpc server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    let out = run(Command::new("python3").arg(fixture("grpc_pair.py")).args(["client", &port.to_string(), "m-77"]))
        .expect("grpc client");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "echo:m-77\npart-0:m-77\npart-1:m-77\npart-2:m-77\nfailed: NOT_FOUND no such thing\n"
    );
    let ev = agent
        .wait_for(Duration::from_secs(15), "grpc records", |ev| records_on(ev, port, "egress-internal").len() == 3)
        .expect("events");
    let c = one(connections_to(&ev, port, "egress-internal"), "grpc channel");
    assert_eq!(c["l7Protocol"], "http2");
    assert_eq!(c["tags"]["protocol"], serde_json::json!(["grpc"]));
    let recs = records_to(&agent, &ev, port, "egress-internal");
    let by_path = |p: &str| recs.iter().find(|(_, o)| o["request"]["path"] == p).map(|(_, o)| o.clone()).unwrap();
    let unary = by_path("/tapline.Echo/Unary");
    assert!(header(&unary, "request", "content-type").is_some_and(|t| t.starts_with("application/grpc")));
    assert_eq!(header(&unary, "response", "grpc-status"), Some("0"), "trailers kept: {unary}");
    let body = b64(&unary["response"]["body"]);
    assert_eq!(&body[5..], b"echo:m-77", "one length-prefixed gRPC message");
    let stream = by_path("/tapline.Echo/Stream");
    assert_eq!(b64(&stream["response"]["body"]).len(), 3 * (5 + "part-0:m-77".len()));
    let fail = by_path("/tapline.Echo/Fail");
    assert_eq!(fail["response"]["status"], 200, "the HTTP status stays the summary status");
    assert_eq!(header(&fail, "response", "grpc-status"), Some("5"));
    assert_eq!(header(&fail, "response", "grpc-message"), Some("no such thing"));
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// gzip and br response bodies are stored decoded and say so; a corrupt one is stored raw.
#[test]
fn gzip_and_br_bodies_are_decoded() {
    let _lock = probe_lock();
    let dir = tempfile::tempdir().unwrap();
    let text = "the quick brown fox jumps over the lazy dog\n".repeat(100);
    let gz = dir.path().join("body.gz");
    let br = dir.path().join("body.br");
    let bad = dir.path().join("body.bad");
    {
        let mut e = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::best());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap();
        let mut w = brotli::CompressorWriter::new(std::fs::File::create(&br).unwrap(), 4096, 9, 22);
        w.write_all(text.as_bytes()).unwrap();
    }
    std::fs::write(&bad, b"this is not gzip").unwrap();
    let (_server, port) = start_fixture("h2_server.py", &["127.0.0.1"]).expect("h2 server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    for (coding, file) in [("gzip", &gz), ("br", &br), ("gzip", &bad)] {
        let mut got = Vec::new();
        let mut child = Command::new("curl")
            .args(["-sS", "--http2-prior-knowledge"])
            .arg(format!("http://127.0.0.1:{port}/encoded/{coding}{}", file.display()))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdout.take().unwrap().read_to_end(&mut got).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(got, std::fs::read(file).unwrap(), "curl got the encoded bytes");
    }
    let ev = agent
        .wait_for(Duration::from_secs(15), "encoded records", |ev| records_on(ev, port, "egress-internal").len() == 3)
        .expect("events");
    let recs = records_to(&agent, &ev, port, "egress-internal");
    for (_, o) in &recs {
        let path = o["request"]["path"].as_str().unwrap();
        let res = &o["response"];
        if path.ends_with("body.bad") {
            assert_eq!(b64(&res["body"]), b"this is not gzip", "kept raw");
            assert!(res["body_decode_error"].as_str().is_some_and(|e| e.contains("gzip")), "{res}");
        } else {
            assert_eq!(String::from_utf8(b64(&res["body"])).unwrap(), text, "{path} decoded");
            let coding = if path.ends_with(".gz") { "gzip" } else { "br" };
            assert_eq!(res["body_decoded_from"], coding);
            assert!(res["body_size"].as_u64().unwrap() < text.len() as u64, "the compressed size on the wire");
        }
    }
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// A connection the agent meets in its middle: the HPACK state is unknown, so one issue is
/// raised, bytes are counted, and no headers are guessed.
#[test]
fn h2_connection_seen_from_its_middle_raises_one_issue() {
    let _lock = probe_lock();
    let (_server, port) = start_fixture("h2_server.py", &["127.0.0.1"]).expect("h2 server");
    // A client that makes a request, waits for the agent (a line on stdin), makes three more.
    let script = format!(
        "import httpx, sys\n\
         with httpx.Client(http1=False, http2=True) as c:\n\
         \x20   print(c.get('http://127.0.0.1:{port}/before').text, flush=True)\n\
         \x20   sys.stdin.readline()\n\
         \x20   for i in range(3): print(c.get(f'http://127.0.0.1:{port}/after{{i}}', headers={{'x-same': 'v'}}).text, flush=True)\n"
    );
    let mut client = Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("client");
    let mut stdout = std::io::BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "h2 says /before");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    client.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(client.wait().unwrap().success());
    assert_eq!(rest, "h2 says /after0\nh2 says /after1\nh2 says /after2\n");
    let ev = agent
        .wait_for(Duration::from_secs(15), "the issue and the connection", |ev| {
            connections_to(ev, port, "egress-internal").iter().any(|c| c["finalized"] == true)
        })
        .expect("events");
    let c = one(connections_to(&ev, port, "egress-internal"), "mid-connection");
    let cid = c["meta"]["connectionId"].as_str().unwrap();
    assert_eq!(c["l7Protocol"], "http2", "recognised from its frames: {c}");
    assert!(c["bytesSent"].as_u64().unwrap_or(0) > 50, "bytes counted: {c}");
    assert!(artifacts_of(&ev, cid).is_empty(), "no transaction built from guessed headers");
    let issues: Vec<&Value> = items(&ev, "issue").into_iter().filter(|i| i["connectionId"] == cid).collect();
    assert_eq!(issues.len(), 1, "one issue for the connection: {issues:#?}");
    assert_eq!(issues[0]["error"], "http2_hpack_state_unknown");
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// A websocket upgrade: the handshake is one transaction; what follows is counted, not parsed.
#[test]
fn websocket_upgrade_is_one_transaction() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let handshake: &[u8] = b"GET /ws HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    s.write_all(handshake).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&buf[..n]));
    // Frames both ways (the test server echoes them), then close.
    for _ in 0..3 {
        s.write_all(b"\x81\x85\x00\x00\x00\x00hello").unwrap();
        let _ = s.read(&mut buf).unwrap();
    }
    drop(s);
    let ev = agent
        .wait_for(Duration::from_secs(15), "websocket", |ev| {
            connections_to(ev, port, "ingress").iter().any(|c| c["finalized"] == true)
        })
        .expect("events");
    let recs = records_to(&agent, &ev, port, "ingress");
    assert_eq!(recs.len(), 1, "the handshake only");
    assert_eq!(recs[0].0["summary"]["response_status"], 101);
    let c = one(connections_to(&ev, port, "ingress"), "ws");
    assert_eq!(c["bytesReceived"].as_u64().unwrap(), (handshake.len() + 3 * 11) as u64, "frames counted: {c}");
    let (_, metrics) = agent.get("/metrics").expect("metrics");
    assert!(!metrics.contains("stage=\"invalid_head\""), "frames never parsed as HTTP");
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// h2load: 10,000 requests over 10 connections with 10 concurrent streams each, to nginx over
/// TLS: exactly 10,000 artifact_records on each side, and no issue.
#[test]
fn h2load_ten_thousand_requests() {
    let _lock = probe_lock();
    let cert = TestCert::new().expect("cert");
    let port = free_port();
    std::fs::write(cert.dir.path().join("i.txt"), "ok\n").unwrap();
    let _nginx = start_nginx(
        &cert,
        &[format!(
            "listen 127.0.0.1:{port} ssl http2; http2_max_requests 100000; keepalive_requests 100000; root {};",
            cert.dir.path().display()
        )],
    )
    .expect("nginx");
    let agent = Agent::start(None, &["--report-interval-secs", "5"]).expect("agent");
    let out = run(Command::new("h2load")
        .args(["-n", "10000", "-c", "10", "-m", "10"])
        .arg(format!("https://127.0.0.1:{port}/i.txt")))
    .expect("h2load");
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(report.contains("10000 succeeded"), "{report}");
    let ev = agent
        .wait_for(Duration::from_secs(120), "10,000 records per side", |ev| {
            records_on(ev, port, "ingress").len() >= 10_000 && records_on(ev, port, "egress-internal").len() >= 10_000
        })
        .expect("events");
    assert_eq!(records_on(&ev, port, "ingress").len(), 10_000);
    assert_eq!(records_on(&ev, port, "egress-internal").len(), 10_000);
    assert!(items(&ev, "issue").is_empty(), "no issue: {:?}", items(&ev, "issue").first());
    agent.stop().expect("stop").check_data_model().expect("data model");
}
