//! End to end, as root: events shipped over Fluent Forward to the real Fluent Bit and fluentd
//! in ../shared/peers, a receiver outage in the middle of 10,000 transactions, and an agent
//! killed with SIGKILL whose spool is sent by the next start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tapline_e2e::*;

/// The peers folder: `$TAPLINE_PEERS`, else `../shared/peers` beside the workspace. Absent:
/// `None` after saying so, unless `TAPLINE_REQUIRE_PEERS` is set (CI), which makes it a failure.
fn peers() -> Option<PathBuf> {
    let dir = std::env::var("TAPLINE_PEERS").map(PathBuf::from).unwrap_or_else(|_| workspace().join("../shared/peers"));
    if dir.join("fluent-bit-forward.sh").exists() {
        return Some(dir);
    }
    let required = std::env::var("TAPLINE_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty());
    assert!(!required, "the Forward peers are required (TAPLINE_REQUIRE_PEERS) but absent at {}", dir.display());
    eprintln!("SKIPPED: the Forward peers are not at {} (set TAPLINE_PEERS)", dir.display());
    None
}

/// A running peer (killed on drop) writing received records to `out`.
struct Peer {
    pid: u32,
    out: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}

fn start_peer(dir: &std::path::Path, script: &str, port: u16, out: &std::path::Path, extra: &[&str]) -> Peer {
    run(Command::new("bash").arg(dir.join("install-deps.sh"))).expect("peer dependencies");
    // stderr to a file: fluentd's start script leaves a process holding it open.
    let log = std::fs::File::create(format!("{}.start.log", out.display())).expect("log");
    let o = Command::new("bash")
        .arg(dir.join(script))
        .arg(port.to_string())
        .arg(out)
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stderr(log)
        .output()
        .expect(script);
    assert!(o.status.success(), "{script} failed: see {}.start.log", out.display());
    let pid = String::from_utf8_lossy(&o.stdout).trim().lines().last().unwrap_or("").trim().parse().expect("peer pid");
    Peer { pid, out: out.to_path_buf() }
}

/// Records the peer wrote so far (one JSON object per line).
fn received(p: &Peer) -> Vec<Value> {
    std::fs::read_to_string(&p.out).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn config(port: u16, extra: &str) -> String {
    format!(
        "version: 2\nservices:\n  event_stores:\n    - type: forward\n      host: 127.0.0.1\n      port: {port}\n{extra}\
         \n  object_stores: [{{type: local}}]\nstacks:\n  s: {{plugins: [{{type: http_capture, config: {{level: summary}}}}]}}\n\
         tap:\n  direction: all\n  ignore_loopback: false\n  http: {{stack: s}}\n"
    )
}

/// curl's artifact_records among received records, by requestId (with how often each came).
fn records_by_request(recs: &[Value]) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for r in recs.iter().filter(|r| r["event"] == "artifact_record") {
        // The records of curl's requests to the test server (the server's own side is ingress).
        if r["item"]["summary"]["direction"] == "egress-internal"
            && r["item"]["url"].as_str().is_some_and(|u| u.starts_with("file://"))
            && r["item"]["summary"]["request_host"] == "127.0.0.1"
            && r["item"]["summary"]["process_exe"] == "/usr/bin/curl"
        {
            *by.entry(r["item"]["requestId"].as_str().unwrap_or("").to_string()).or_insert(0) += 1;
        }
    }
    by
}

fn wait(what: &str, secs: u64, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The same envelope reaches Fluent Bit (plain, gzip off/on, shared key, TLS) and fluentd.
#[test]
fn forward_to_fluent_bit_and_fluentd() {
    let Some(dir) = peers() else { return };
    let _lock = probe_lock();
    let cert = TestCert::signed().expect("cert");
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let cases: Vec<(&str, Vec<String>, String)> = vec![
        ("fluent-bit-forward.sh", vec![], String::new()),
        ("fluent-bit-forward.sh", vec![], "      compress: none\n".into()),
        ("fluent-bit-forward.sh", vec!["--shared-key".into(), "s3cret".into()], "      shared_key: s3cret\n".into()),
        (
            "fluent-bit-forward.sh",
            vec!["--tls".into(), cert.cert.display().to_string(), cert.key.display().to_string()],
            format!("      tls: {{enabled: true, ca_file: {}, server_name: tapline.test}}\n", cert.ca.display()),
        ),
        ("fluentd-forward.sh", vec!["--shared-key".into(), "s3cret".into()], "      shared_key: s3cret\n".into()),
        (
            "fluentd-forward.sh",
            vec!["--tls".into(), cert.cert.display().to_string(), cert.key.display().to_string()],
            format!("      tls: {{enabled: true, ca_file: {}, server_name: tapline.test}}\n", cert.ca.display()),
        ),
    ];
    for (script, args, extra) in cases {
        let fport = free_port();
        let out = cert.dir.path().join(format!("{script}-{fport}.jsonl"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let peer = start_peer(&dir, script, fport, &out, &args);
        let agent = Agent::start(Some(&config(fport, &extra)), &[]).expect("agent");
        let marker = format!("/fwd-{fport}");
        run(Command::new("curl").args(["-sS", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{port}{marker}")))
            .expect("curl");
        wait(&format!("{script} {extra:?} receives the record"), 30, || {
            received(&peer)
                .iter()
                .any(|r| r["event"] == "artifact_record" && r["item"]["summary"]["request_host"] == "127.0.0.1")
        });
        let recs = received(&peer);
        let r = recs.iter().find(|r| r["event"] == "artifact_record").expect("record");
        assert_eq!(r["level"], "qpoint", "{script}: the stdout envelope, unchanged: {r}");
        assert_eq!(r["type"], "*eventstore.ArtifactRecord");
        assert!(r["item"]["digest"].as_str().is_some_and(|d| d.len() == 40));
        if script.starts_with("fluentd") {
            assert_eq!(r["tag"], "tapline.artifact_record", "fluentd shows the tag");
        } else {
            let tagged = std::fs::read_to_string(format!("{}.tagged", out.display())).unwrap_or_default();
            assert!(tagged.contains("tapline.artifact_record: ["), "Fluent Bit shows the tag");
        }
        let stopped = agent.stop().expect("stop");
        assert!(stopped.lines.is_empty(), "no stdout store configured: stdout stays empty");
        drop(peer);
    }
}

/// 10,000 transactions; the receiver is stopped for a while in the middle and started again:
/// every artifact_record arrives, exactly once, none is counted as dropped.
#[test]
fn forward_receiver_outage_loses_nothing() {
    let Some(dir) = peers() else { return };
    let _lock = probe_lock();
    let work = tempfile::tempdir().unwrap();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let fport = free_port();
    let out = work.path().join("fb.jsonl");
    let peer = start_peer(&dir, "fluent-bit-forward.sh", fport, &out, &[]);
    let agent = Agent::start(Some(&config(fport, "      ack_timeout: 5\n")), &["--report-interval-secs", "600"])
        .expect("agent");
    let load = |from: u32, to: u32| {
        run(Command::new("curl")
            .args(["-sS", "-o", "/dev/null"])
            .arg(format!("http://127.0.0.1:{port}/o/[{from}-{to}]")))
        .expect("curl");
    };
    load(1, 3000);
    wait("the first part arrives", 60, || records_by_request(&received(&peer)).len() >= 3000);
    drop(peer); // the receiver goes away
    load(3001, 7000);
    std::thread::sleep(Duration::from_secs(2));
    let (_, m) = agent.get("/metrics").expect("metrics");
    assert!(
        m.contains("tapline_component_errors_total{kind=\"event_store\",component=\"forward\",stage=\"send\"}"),
        "{m}"
    );
    // Back on the same port (a new process: a new output file).
    let out2 = work.path().join("fb2.jsonl");
    let peer2 = start_peer(&dir, "fluent-bit-forward.sh", fport, &out2, &[]);
    load(7001, 10000);
    let all = || {
        let mut v = std::fs::read_to_string(&out).unwrap_or_default();
        v.push_str(&std::fs::read_to_string(&peer2.out).unwrap_or_default());
        v.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect::<Vec<_>>()
    };
    wait("all 10,000 records arrive", 120, || records_by_request(&all()).len() >= 10_000);
    let by = records_by_request(&all());
    assert_eq!(by.len(), 10_000);
    let dups: Vec<_> = by.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "exactly once: {} duplicated", dups.len());
    let (_, m) = agent.get("/metrics").expect("metrics");
    assert!(!m.contains("reason=\"spool_full\""), "nothing dropped: {m}");
    agent.stop().expect("stop");
}

/// The agent is killed with SIGKILL while the receiver is down; the next start sends the spool.
#[test]
fn sigkilled_agent_sends_its_spool_on_restart() {
    let Some(dir) = peers() else { return };
    let _lock = probe_lock();
    let work = tempfile::tempdir().unwrap();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let fport = free_port();
    let data = work.path().join("data");
    let cfg = config(fport, "");
    // No receiver yet: everything is spooled under --data-dir.
    let agent = Agent::start_in(Some(&cfg), &data, &[]).expect("agent");
    run(Command::new("curl").args(["-sS", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{port}/k/[1-500]")))
        .expect("curl");
    wait("the spool fills", 30, || {
        std::fs::read_dir(data.join("spool")).map(|d| d.count() > 0).unwrap_or(false)
            && agent.get("/metrics").map(|(_, m)| m.contains("stage=\"send\"")).unwrap_or(false)
    });
    std::thread::sleep(Duration::from_secs(2));
    agent.signal(libc::SIGKILL);
    let _ = agent.wait_exit(Duration::from_secs(10));
    let out = work.path().join("fb.jsonl");
    let peer = start_peer(&dir, "fluent-bit-forward.sh", fport, &out, &[]);
    let again = Agent::start_in(Some(&cfg), &data, &[]).expect("restart");
    wait("the spooled records arrive", 60, || records_by_request(&received(&peer)).len() >= 500);
    assert_eq!(records_by_request(&received(&peer)).len(), 500);
    again.stop().expect("stop");
}

/// A local signature-checking S3 server (s3s-fs, installed by scripts/s3-server.sh) with a
/// bucket `tapline`; killed on drop.
struct S3Server {
    pid: u32,
    port: u16,
    dir: PathBuf,
}

impl S3Server {
    fn start(dir: &std::path::Path, port: u16) -> S3Server {
        std::fs::create_dir_all(dir.join("tapline")).unwrap();
        let o = run(Command::new("bash")
            .arg(workspace().join("scripts/s3-server.sh"))
            .arg(dir)
            .arg(port.to_string())
            .args(["AK", "SK"]))
        .expect("s3-server.sh");
        let pid = String::from_utf8_lossy(&o.stdout).trim().lines().last().unwrap_or("").trim().parse().expect("pid");
        S3Server { pid, port, dir: dir.to_path_buf() }
    }

    /// Every object in the bucket: (key, bytes).
    fn objects(&self) -> Vec<(String, Vec<u8>)> {
        fn walk(root: &std::path::Path, d: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else if !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                    let key = p.strip_prefix(root).unwrap().display().to_string();
                    out.push((key, std::fs::read(&p).unwrap_or_default()));
                }
            }
        }
        let mut out = Vec::new();
        let root = self.dir.join("tapline");
        walk(&root, &root, &mut out);
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn s3_config(port: u16, secret: &str, extra: &str) -> String {
    format!(
        "version: 2\nservices:\n  event_stores: [{{type: stdout}}]\n  object_stores:\n    - type: s3\n      endpoint: 127.0.0.1:{port}\n\
         \x20     bucket: tapline\n      insecure: true\n      access_key: {{type: text, value: AK}}\n\
         \x20     secret_key: {{type: text, value: {secret}}}\n      batch_max_seconds: 1\n{extra}\
         stacks:\n  s: {{plugins: [{{type: http_capture, config: {{level: full}}}}]}}\n\
         tap:\n  direction: egress\n  ignore_loopback: false\n  http: {{stack: s}}\n"
    )
}

/// The objects inside gzip batches: each line of each batch (one gzip member per object).
fn batch_objects(objs: &[(String, Vec<u8>)]) -> HashMap<String, Vec<u8>> {
    use std::io::Read;
    let mut out = HashMap::new();
    for (key, bytes) in objs.iter().filter(|(k, _)| k.ends_with(".ndjson.gz")) {
        let mut text = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut text).unwrap_or_else(|e| panic!("{key}: {e}"));
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.insert(sha1_hex(line), line.to_vec());
        }
    }
    out
}

/// 10,000 objects go to S3 in gzip batches readable with zcat; every record's url gives its
/// object back (`tapline fetch -`), and so does its digest; the server is stopped in the middle
/// of the run and started again: every object arrives exactly once.
#[test]
fn s3_batches_fetch_and_outage() {
    let _lock = probe_lock();
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let s3 = S3Server::start(&work.path().join("s3"), port);
    let (_server, hport) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(Some(&s3_config(port, "SK", "")), &[]).expect("agent");
    let curl = |from: u32, to: u32| {
        run(Command::new("curl")
            .args(["-sS", "-o", "/dev/null"])
            .arg(format!("http://127.0.0.1:{hport}/s3/[{from}-{to}]")))
        .expect("curl");
    };
    curl(1, 5000);
    let records = |ev: &[Value]| -> Vec<Value> {
        items(ev, "artifact_record")
            .into_iter()
            .filter(|a| a["summary"]["request_host"] == "127.0.0.1")
            .cloned()
            .collect()
    };
    agent.wait_for(Duration::from_secs(60), "5,000 records", |ev| records(ev).len() >= 5000).expect("records");
    wait("the batches are uploaded", 60, || {
        let got = batch_objects(&s3.objects());
        records(&agent.events()).iter().all(|r| got.contains_key(r["digest"].as_str().unwrap_or("")))
    });
    let got = batch_objects(&s3.objects());
    let recs = records(&agent.events());
    for r in recs.iter().take(20) {
        let digest = r["digest"].as_str().unwrap();
        assert!(r["url"].as_str().is_some_and(|u| u.starts_with(&format!("http://127.0.0.1:{port}/tapline/"))), "{r}");
        let line = serde_json::json!({"event": "artifact_record", "item": r}).to_string();
        let by_url = agent.fetch_line(&line).expect("fetch by record");
        assert_eq!(sha1_hex(&by_url), digest, "the member the url names is the object");
        assert_eq!(agent.fetch(digest).expect("fetch by digest"), by_url);
        assert_eq!(got[digest], by_url);
    }
    // The server goes away for a while; objects keep coming and wait in the spool.
    drop(s3);
    curl(5001, 10_000);
    agent.wait_for(Duration::from_secs(60), "10,000 records", |ev| records(ev).len() >= 10_000).expect("records");
    std::thread::sleep(Duration::from_secs(3));
    let s3 = S3Server::start(&work.path().join("s3"), port);
    wait("every object arrives after the outage", 90, || {
        let got = batch_objects(&s3.objects());
        records(&agent.events()).iter().all(|r| got.contains_key(r["digest"].as_str().unwrap_or("")))
    });
    // Exactly once: as many members in the batches as records.
    let members: usize = s3
        .objects()
        .iter()
        .filter(|(k, _)| k.ends_with(".ndjson.gz"))
        .map(|(_, b)| {
            use std::io::Read;
            let mut t = Vec::new();
            flate2::read::MultiGzDecoder::new(&b[..]).read_to_end(&mut t).unwrap();
            t.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count()
        })
        .sum();
    assert_eq!(members, items(&agent.events(), "artifact_record").len(), "each object stored once");
    let (_, m) = agent.get("/metrics").expect("metrics");
    assert!(!m.contains("reason=\"spool_full\""), "{m}");
    let stopped = agent.stop().expect("stop");
    stopped.check_data_model().expect("data model");
    assert_eq!(s3.port, port);
}

/// qtap's per-object mode (key = digest), and a wrong secret key named clearly.
#[test]
fn s3_per_object_mode_and_wrong_secret() {
    let _lock = probe_lock();
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let s3 = S3Server::start(&work.path().join("s3"), port);
    let (_server, hport) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(Some(&s3_config(port, "SK", "      batch: false\n")), &[]).expect("agent");
    run(Command::new("curl").args(["-sS", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{hport}/one")))
        .expect("curl");
    let ev = agent
        .wait_for(Duration::from_secs(30), "the record", |ev| {
            items(ev, "artifact_record").iter().any(|a| a["summary"]["request_host"] == "127.0.0.1")
        })
        .expect("record");
    let r = items(&ev, "artifact_record")
        .into_iter()
        .find(|a| a["summary"]["request_host"] == "127.0.0.1")
        .unwrap()
        .clone();
    let digest = r["digest"].as_str().unwrap().to_string();
    assert_eq!(r["url"], format!("http://127.0.0.1:{port}/tapline/{digest}"), "qtap's default url");
    wait("the object under its digest", 30, || s3.objects().iter().any(|(k, _)| *k == digest));
    let (_, bytes) = s3.objects().into_iter().find(|(k, _)| *k == digest).unwrap();
    assert_eq!(sha1_hex(&bytes), digest);
    agent.stop().expect("stop");

    let bad = Agent::start(Some(&s3_config(port, "WRONG", "      batch: false\n")), &[]).expect("agent");
    run(Command::new("curl").args(["-sS", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{hport}/two")))
        .expect("curl");
    wait("a clear error", 30, || {
        bad.stderr().contains("tapline")
            && bad.get("/metrics").map(|(_, m)| m.contains("stage=\"rejected\"")).unwrap_or(false)
    });
    let err = bad.stderr();
    let line = err.lines().find(|l| l.contains("delivery failed")).unwrap_or_default().to_string();
    assert!(
        line.contains("127.0.0.1")
            && line.contains("tapline")
            && (line.to_lowercase().contains("credential") || line.contains("Signature")),
        "{line}"
    );
    bad.stop().expect("stop");
}
