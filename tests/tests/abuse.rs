//! Bad input never takes the agent down: clients that send 50,000 headers, a 1 GiB chunked
//! body, a header line that never ends, garbage after a valid request, and 10,000 connections
//! without data — while a normal client keeps being captured. The agent's memory stays
//! bounded (printed) and what it cut is on /metrics.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use tapline_e2e::*;

/// A server that answers the first bytes of each connection with a small response and reads
/// (and drops) everything else until the client closes.
fn sink_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                let mut answered = false;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if !answered {
                        answered = true;
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    }
                }
            });
        }
    });
    port
}

fn send(port: u16, parts: impl IntoIterator<Item = Vec<u8>>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    for p in parts {
        if s.write_all(&p).is_err() {
            break;
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
}

fn metric(m: &str, prefix: &str) -> u64 {
    m.lines().filter_map(|l| l.strip_prefix(prefix)).filter_map(|v| v.trim().parse::<u64>().ok()).sum()
}

fn vm_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn abusive_clients_are_cut_counted_and_the_rest_is_captured() {
    let _lock = probe_lock();
    let sink = sink_server();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    let rss_idle = vm_kib(agent.pid(), "VmRSS:");
    let t0 = Instant::now();
    // A normal client all along.
    let normal = std::thread::spawn(move || {
        for i in 0..40 {
            run(Command::new("curl")
                .args(["-sS", "-o", "/dev/null"])
                .arg(format!("http://127.0.0.1:{port}/normal-{i}")))
            .expect("curl");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let mut abusers = Vec::new();
    // 50,000 headers in one request head.
    abusers.push(std::thread::spawn(move || {
        let mut head = b"POST /abuse-headers HTTP/1.1\r\nHost: sink\r\n".to_vec();
        for i in 0..50_000 {
            head.extend_from_slice(format!("X-H-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        send(sink, [head]);
    }));
    // A 1 GiB chunked body.
    abusers.push(std::thread::spawn(move || {
        let chunk = {
            let mut c = b"100000\r\n".to_vec();
            c.extend(std::iter::repeat_n(b'z', 1 << 20));
            c.extend_from_slice(b"\r\n");
            c
        };
        let head = b"POST /abuse-chunked HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        send(sink, std::iter::once(head).chain(std::iter::repeat_n(chunk, 1024)).chain([b"0\r\n\r\n".to_vec()]));
    }));
    // A header line that never ends (16 MiB, then the client gives up).
    abusers.push(std::thread::spawn(move || {
        let head = b"GET /abuse-line HTTP/1.1\r\nX-Long: ".to_vec();
        send(sink, std::iter::once(head).chain(std::iter::repeat_n(vec![b'a'; 1 << 20], 16)));
    }));
    // Garbage after a valid request.
    abusers.push(std::thread::spawn(move || {
        let mut g = b"GET /abuse-valid HTTP/1.1\r\nHost: sink\r\n\r\n".to_vec();
        let mut x = 0x9e37_79b9u32;
        g.extend((0..65_536).map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        }));
        send(sink, [g]);
    }));
    // 10,000 connections opened and closed without a byte.
    abusers.push(std::thread::spawn(move || {
        for _ in 0..10_000 {
            drop(TcpStream::connect(("127.0.0.1", sink)).expect("connect"));
        }
    }));
    let mut rss_peak_seen = 0;
    while abusers.iter().any(|a| !a.is_finished()) {
        rss_peak_seen = rss_peak_seen.max(vm_kib(agent.pid(), "VmRSS:"));
        std::thread::sleep(Duration::from_millis(100));
    }
    for a in abusers {
        a.join().expect("abuser");
    }
    normal.join().expect("normal client");
    let abuse_secs = t0.elapsed().as_secs_f64();
    // The normal client was captured throughout.
    // The 1 GiB body is sent over loopback as fast as the kernel moves it: twice that (both
    // sides) cannot all fit through the ring buffer, so records are lost, and some of the
    // normal client's with them. Those losses must be counted; most normal requests must still
    // be captured.
    let _ = agent.wait_for(Duration::from_secs(20), "the normal client's 40 records", |ev| {
        records_on(ev, port, "egress-internal").len() >= 40
    });
    let ev = agent.events();
    let normal_records = records_on(&ev, port, "egress-internal").len();
    assert_eq!(agent.get("/readyz").expect("readyz").0, 200);
    let m = agent.get("/metrics").expect("metrics").1;
    let hwm = vm_kib(agent.pid(), "VmHWM:");
    eprintln!(
        "abuse: {abuse_secs:.1} s; agent RSS idle {rss_idle} KiB, peak {hwm} KiB (sampled {rss_peak_seen} KiB); \
         head_too_large {}; gaps {}; ring lost records {}",
        metric(&m, "tapline_component_errors_total{kind=\"parser\",component=\"http1\",stage=\"head_too_large\"} "),
        metric(&m, "tapline_stream_gaps_total "),
        metric(&m, "tapline_ringbuf_lost_total{reason=\"ring_full_records\"} ")
    );
    // Measured: 66-72 MiB, alone or beside the unit tests. (Inside the full suite it once read
    // 266 MiB: TLS discovery then read every running executable whole, here the 223 MiB unit
    // test binary running in parallel; it now reads headers and symbols only.) The bound is
    // the benchmark's "under load" target: per-connection caps, not what clients send.
    assert!(hwm < 150 * 1024, "peak RSS {hwm} KiB: memory is bounded by the caps, not by what clients send");
    let ring_lost = metric(&m, "tapline_ringbuf_lost_total{reason=\"ring_full_records\"} ");
    eprintln!("abuse: normal client: {normal_records} of 40 captured");
    assert!(normal_records <= 40, "no duplicates");
    assert!(normal_records == 40 || ring_lost > 0, "{normal_records} of 40 without a reported loss: {m}");
    assert!(normal_records >= 30, "the normal client must still be captured: {normal_records} of 40");
    // What was cut is counted: the oversized heads (each side sees them; one side's bytes may be among
    // what the flooded ring lost, counted there).
    let cut =
        metric(&m, "tapline_component_errors_total{kind=\"parser\",component=\"http1\",stage=\"head_too_large\"} ");
    assert!(cut >= 1, "{m}");
    // The 1 GiB body: its record, body cut at --http-buffer-size, its size on the wire named.
    let sink_records = records_on(&ev, sink, "egress-internal");
    let chunked = sink_records.iter().find(|r| {
        let o = fetch_object(&agent, r);
        o["request"]["path"] == "/abuse-chunked"
    });
    if let Some(r) = chunked {
        // Cut at --http-buffer-size; or, when the flooded ring lost part of it, ended at the
        // gap (the loss is counted by the kernel).
        let o = fetch_object(&agent, r);
        let body_len = o["request"]["body"].as_str().map_or(0, str::len);
        assert!(
            o["request"]["body_truncated"] == true || ring_lost > 0,
            "body_truncated {} with {body_len} base64 bytes and no kernel loss",
            o["request"]["body_truncated"]
        );
    } else {
        // Only acceptable when the kernel reported losing part of it.
        assert!(
            metric(&m, "tapline_ringbuf_lost_total{reason=\"ring_full_records\"} ") > 0,
            "chunked request missing: {m}"
        );
    }
    // Under this deliberate flood, a transaction whose process exited while its exec and open
    // records were among the lost ones cannot be named (`summary.process_exe` is then omitted);
    // any other deviation from the data model fails.
    if let Err(e) = agent.stop().expect("stop").check_data_model() {
        let report = e.to_string();
        let errors: Vec<&str> = report.lines().filter(|l| l.trim_start().starts_with("ERROR")).collect();
        assert!(
            ring_lost > 0 && !errors.is_empty() && errors.iter().all(|l| l.contains("summary.process_exe missing")),
            "{report}"
        );
    }
}
