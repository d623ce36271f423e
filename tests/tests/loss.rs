//! Zero unexplained loss: N requests, each with a unique marker in its path and body, at the
//! fastest rate the clients manage; afterwards every marker is in the output (a `request`
//! event per side: the client's egress and nginx's ingress), or the agent reported a loss on
//! /metrics (ring-buffer reserve failures, stream gaps, parser gaps, discards). A loss
//! without a reason fails the test.
//!
//! CI runs N = 20,000 plain HTTP/1 and 2,000 over TLS; `TAPLINE_LOSS_N` / `TAPLINE_LOSS_TLS_N`
//! set the long run (100,000 and 20,000 in docs/benchmarks.md).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tapline_e2e::*;

const CONFIG: &str = r#"
services:
  event_stores: [{type: stdout}]
  object_stores: [{type: local}]
stacks:
  usage:
    plugins:
      - type: http_capture
        config: {level: none}
      - type: report_usage
tap: {direction: all, ignore_loopback: false, http: {stack: usage}}
"#;

fn n(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One keep-alive connection sending `markers` one request at a time.
fn client(port: u16, markers: Vec<String>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut buf = Vec::with_capacity(4096);
    let mut tmp = [0u8; 4096];
    for m in markers {
        let body = format!("body-{m}");
        let req = format!("POST /m/{m} HTTP/1.1\r\nHost: loss\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        s.write_all(req.as_bytes()).expect("send");
        // Read one response: head, then Content-Length bytes.
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    buf.drain(..end + 4 + len);
                    break;
                }
            }
            let k = s.read(&mut tmp).expect("read");
            assert!(k > 0, "server closed");
            buf.extend_from_slice(&tmp[..k]);
        }
    }
}

/// Markers seen in `request` events, per direction.
fn seen(events: &[Value], prefix: &str) -> (HashSet<String>, HashSet<String>) {
    let (mut egress, mut ingress) = (HashSet::new(), HashSet::new());
    for r in items(events, "request") {
        let Some(m) = r["path"].as_str().and_then(|p| p.strip_prefix("/m/")).filter(|m| m.starts_with(prefix)) else {
            continue;
        };
        match r["direction"].as_str() {
            Some("ingress") => ingress.insert(m.to_string()),
            _ => egress.insert(m.to_string()),
        };
    }
    (egress, ingress)
}

/// Discard reasons that lose a transaction (others, like `level_none`, are choices).
const LOSS_REASONS: [&str; 7] = [
    "table_full",
    "no_response",
    "response_without_request",
    "spool_full",
    "write_error",
    "queue_full",
    "close_not_seen",
];

/// The losses the agent reported, by counter.
fn reported(metrics: &str) -> Vec<(String, u64)> {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("tapline_ringbuf_lost_total")
                || l.starts_with("tapline_stream_gaps_total")
                || (l.starts_with("tapline_component_discarded_total")
                    && LOSS_REASONS.iter().any(|r| l.contains(&format!("reason=\"{r}\""))))
                || (l.starts_with("tapline_component_errors_total") && l.contains("stage=\"gap\""))
        })
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?)).filter(|(_, v)| *v > 0)
        })
        .collect()
}

fn check(label: &str, want: &[String], events: &[Value], metrics: &str, secs: f64) {
    let (egress, ingress) = seen(events, label);
    let missing_e = want.iter().filter(|m| !egress.contains(*m)).count();
    let missing_i = want.iter().filter(|m| !ingress.contains(*m)).count();
    let losses = reported(metrics);
    eprintln!(
        "{label}: {} requests in {secs:.1} s ({:.0}/s); missing client side {missing_e}, server side {missing_i}; \
         reported losses {losses:?}",
        want.len(),
        want.len() as f64 / secs
    );
    if missing_e + missing_i > 0 {
        assert!(!losses.is_empty(), "{label}: {missing_e} + {missing_i} markers missing and no loss reported");
    }
}

#[test]
fn every_http1_marker_is_captured_or_its_loss_reported() {
    let _lock = probe_lock();
    let cert = TestCert::new().expect("cert");
    let port = free_port();
    let _nginx = start_nginx(
        &cert,
        &[format!("listen 127.0.0.1:{port}; keepalive_requests 1000000; location / {{ return 200 \"ok\"; }}")],
    )
    .expect("nginx");
    let agent = Agent::start(Some(CONFIG), &[]).expect("agent");
    let total = n("TAPLINE_LOSS_N", 20_000);
    let threads = 4;
    let markers: Vec<String> = (0..total).map(|i| format!("p{:x}-{i}", std::process::id())).collect();
    let t0 = Instant::now();
    let handles: Vec<_> = markers
        .chunks(total.div_ceil(threads))
        .map(|c| {
            let c = c.to_vec();
            std::thread::spawn(move || client(port, c))
        })
        .collect();
    for h in handles {
        h.join().expect("client");
    }
    let secs = t0.elapsed().as_secs_f64();
    let want = 2 * total;
    let prefix = format!("p{:x}-", std::process::id());
    let ev = agent.wait_for(Duration::from_secs(60), "every marker on both sides", |ev| {
        let (e, i) = seen(ev, &prefix);
        e.len() + i.len() >= want
    });
    // Settled or timed out: compare what arrived with what the agent says it lost.
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = agent.get("/metrics").expect("metrics").1;
    let events = agent.events();
    check(&prefix, &markers, &events, &metrics, secs);
    if ev.is_err() {
        eprintln!("(not every marker arrived within 60 s)");
    }
    agent.stop().expect("stop");
}

#[test]
fn every_tls_marker_is_captured_or_its_loss_reported() {
    let _lock = probe_lock();
    let cert = TestCert::new().expect("cert");
    let port = free_port();
    let _nginx = start_nginx(
        &cert,
        &[format!("listen 127.0.0.1:{port} ssl; keepalive_requests 1000000; location / {{ return 200 \"ok\"; }}")],
    )
    .expect("nginx");
    let agent = Agent::start(Some(CONFIG), &[]).expect("agent");
    let total = n("TAPLINE_LOSS_TLS_N", 2_000);
    let prefix = format!("t{:x}-", std::process::id());
    // Python's ssl (OpenSSL, probed) over two keep-alive connections.
    let script = format!(
        "import http.client, ssl, sys, threading\n\
         ctx = ssl.create_default_context(cafile='{ca}')\n\
         def run(part):\n\
         \x20   c = http.client.HTTPSConnection('localhost', {port}, context=ctx)\n\
         \x20   for i in range(part, {total}, 2):\n\
         \x20       m = '{prefix}%d' % i\n\
         \x20       c.request('POST', '/m/' + m, body='body-' + m)\n\
         \x20       c.getresponse().read()\n\
         ts = [threading.Thread(target=run, args=(p,)) for p in (0, 1)]\n\
         [t.start() for t in ts]; [t.join() for t in ts]\n",
        ca = cert.cert.display()
    );
    let t0 = Instant::now();
    run(Command::new("python3").args(["-c", &script])).expect("python TLS client");
    let secs = t0.elapsed().as_secs_f64();
    let markers: Vec<String> = (0..total).map(|i| format!("{prefix}{i}")).collect();
    let ev = agent.wait_for(Duration::from_secs(60), "every TLS marker on both sides", |ev| {
        let (e, i) = seen(ev, &prefix);
        e.len() + i.len() >= 2 * total
    });
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = agent.get("/metrics").expect("metrics").1;
    check(&prefix, &markers, &agent.events(), &metrics, secs);
    if ev.is_err() {
        eprintln!("(not every marker arrived within 60 s)");
    }
    agent.stop().expect("stop");
}
