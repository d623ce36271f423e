//! Every shipped example, exercised for real, without loading eBPF:
//!
//! - `examples/fluent-bit/*.yaml` run in the real Fluent Bit 5.1.1 of `../shared/peers`, fed a recorded agent output
//!   (the Forward ones through the agent's own Forward client): every recorded event must come out decoded, under
//!   the tag the example promises.
//! - `examples/qtap/*.yaml` and `docker/qtap.yaml` go through the agent's configuration loader: no warning, and the
//!   levels, rules and stores each file's comments promise.
//! - `examples/vector/*.toml`: TOML, and the keys Vector requires.
//! - `docs/recipes.md`: every jq recipe, extracted from the doc and run verbatim with the real `jq` (and the real
//!   `tapline fetch`) over the recording; each result is checked against the recording.
//! - `docker/`: the compose file's services, privileges and mounts, and the Dockerfile's stages and sources.
//!
//! The recording is built with the agent's own model types, envelope encoder and local object store (see
//! [`Recording`]), and checked with the data-model checker. Fluent Bit tests print `SKIPPED` and pass when the peers
//! are missing, unless `TAPLINE_REQUIRE_PEERS` is set.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tapline_e2e::{bin_path, free_port, workspace};
use tapline_output::event::{Event, envelope_line};
use tapline_output::forward::{Compression, ForwardConfig, ForwardTransport, item};
use tapline_output::metrics::ComponentMetrics;
use tapline_output::model::{ArtifactRecord, Connection, HttpTransaction, Issue};
use tapline_output::object::{LocalObjectStore, ObjectStore, StoredObject};

// ---------------------------------------------------------------------------------------------------------------
// The recording

/// One transaction of the recording, as the tests need to know it.
#[derive(Debug, Clone)]
struct Txn {
    connection_id: String,
    request_id: String,
    method: String,
    host: String,
    url: String,
    path: String,
    status: u16,
    duration_ms: u64,
    response_body: Option<String>,
}

/// A realistic agent output, written the way the agent writes it: `events.ndjson` (stdout envelopes, in the order
/// the pipeline emits them) and the objects in `tapline-data/objects` (the local object store's layout), all in one
/// temporary directory that the recipes use as their working directory.
struct Recording {
    dir: tempfile::TempDir,
    lines: Vec<String>,
    envelopes: Vec<Value>,
    txns: Vec<Txn>,
}

/// The connections of the recording: a curl call to a local python server, a TLS keep-alive client calling an
/// external API (two 5xx among its calls, one with a URL longer than 4 KiB), an nginx answering health checks, and a
/// Go gRPC client.
struct ConnSpec {
    c: ConnFields,
    /// (method, path, status, duration_ms, request body, response content type, response body)
    txns: Vec<SpecTxn>,
}

type SpecTxn = (&'static str, String, u16, u64, Option<&'static str>, &'static str, &'static str);

/// The process and addresses of a connection.
struct ConnFields {
    exe: &'static str,
    user: (&'static str, u32),
    direction: &'static str,
    local: (&'static str, u16),
    remote: (&'static str, u16),
    endpoint: &'static str,
    l7: &'static str,
    protocol_tag: &'static str,
    tls: bool,
}

fn specs() -> Vec<ConnSpec> {
    let long_filter = "tag:".repeat(1300); // a 5 KiB query: longer than in_exec's default 4 KiB line buffer
    vec![
        ConnSpec {
            c: ConnFields {
                exe: "/usr/bin/curl",
                user: ("root", 0),
                direction: "egress-internal",
                local: ("127.0.0.1", 39744),
                remote: ("127.0.0.1", 8000),
                endpoint: "127.0.0.1",
                l7: "http1",
                protocol_tag: "http1",
                tls: false,
            },
            txns: vec![(
                "GET",
                "/x".into(),
                404,
                1,
                None,
                "text/html;charset=utf-8",
                "<html><body>Not Found</body></html>",
            )],
        },
        ConnSpec {
            c: ConnFields {
                exe: "/usr/bin/python3.11",
                user: ("app", 1000),
                direction: "egress-external",
                local: ("192.0.2.10", 51514),
                remote: ("93.184.215.14", 443),
                endpoint: "api.example.com",
                l7: "http1",
                protocol_tag: "http1",
                tls: true,
            },
            txns: vec![
                ("GET", "/v1/items".into(), 200, 35, None, "application/json", r#"{"items":[1,2,3]}"#),
                (
                    "POST",
                    "/v1/orders".into(),
                    503,
                    1204,
                    Some(r#"{"item":7,"qty":2}"#),
                    "application/json",
                    r#"{"error":"upstream unavailable","retry_after":30}"#,
                ),
                (
                    "GET",
                    format!("/v1/items/7?filter={long_filter}"),
                    500,
                    80,
                    None,
                    "text/plain",
                    "internal error: é ✓",
                ),
                ("GET", "/v1/items?page=2".into(), 200, 41, None, "application/json", r#"{"items":[]}"#),
            ],
        },
        ConnSpec {
            c: ConnFields {
                exe: "/usr/sbin/nginx",
                user: ("www-data", 33),
                direction: "ingress",
                local: ("10.0.0.5", 8080),
                remote: ("10.0.0.9", 51234),
                endpoint: "10.0.0.5",
                l7: "http1",
                protocol_tag: "http1",
                tls: false,
            },
            txns: vec![
                ("GET", "/health".into(), 200, 2, None, "text/plain", "ok"),
                ("GET", "/health".into(), 200, 1, None, "text/plain", "ok"),
            ],
        },
        ConnSpec {
            c: ConnFields {
                exe: "/usr/local/bin/orders-svc",
                user: ("orders", 998),
                direction: "egress-internal",
                local: ("10.0.0.5", 40112),
                remote: ("10.0.0.7", 50051),
                endpoint: "orders.internal",
                l7: "http2",
                protocol_tag: "grpc",
                tls: false,
            },
            txns: vec![(
                "POST",
                "/orders.v1.Orders/Create".into(),
                200,
                15,
                Some("\0\0\0\0\x02\x08\x07"),
                "application/grpc",
                "",
            )],
        },
    ]
}

/// `2026-11-25T20:00:SS.nnnnnnnnnZ` for an offset under a minute, and the matching epoch time.
const BASE_EPOCH: u64 = 1_795_636_800; // 2026-11-25T20:00:00Z
fn at(offset_ms: u64) -> (String, SystemTime) {
    assert!(offset_ms < 60_000);
    let nanos = offset_ms * 1_000_000 + 123_456;
    let t = UNIX_EPOCH + Duration::from_secs(BASE_EPOCH) + Duration::from_nanos(nanos);
    (format!("2026-11-25T20:00:{:02}.{:09}Z", nanos / 1_000_000_000, nanos % 1_000_000_000), t)
}

impl Recording {
    fn new() -> Recording {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalObjectStore::open(
            dir.path().join("tapline-data/objects"),
            ComponentMetrics::detached("object_store", "local"),
        )
        .expect("local store");
        let mut out: Vec<(SystemTime, Event)> = Vec::new();
        let mut txns = Vec::new();
        let mut clock = 0u64;
        let instance = tapline_output::ids::new_id();
        for spec in specs() {
            let conn_id = tapline_output::ids::new_id();
            let (created, _) = at(clock);
            let mut sent = 0u64;
            let mut received = 0u64;
            let n = spec.txns.len();
            for (i, (method, path, status, duration, req_body, res_type, res_body)) in spec.txns.into_iter().enumerate()
            {
                clock += 100 + duration;
                let request_id = tapline_output::ids::new_id();
                let (when, now) = at(clock);
                let scheme = if spec.c.tls { "https" } else { "http" };
                let authority = if spec.c.remote.1 == 443 || spec.c.direction == "ingress" {
                    spec.c.endpoint.to_string()
                } else {
                    format!("{}:{}", spec.c.endpoint, spec.c.remote.1)
                };
                let url = format!("{scheme}://{authority}{path}");
                let full = status >= 400; // recorded with examples/qtap/errors-full.yaml
                let b64 = |s: &str| base64_encode(s.as_bytes());
                let (bytes_sent, bytes_received) = (90 + path.len() as u64, 150 + res_body.len() as u64);
                sent += bytes_sent;
                received += bytes_received;
                let mut request = json!({
                    "method": method, "url": url, "scheme": scheme, "path": path, "authority": authority,
                    "protocol": spec.c.l7, "request_id": request_id, "user_agent": "example/1.0",
                });
                let mut response = json!({"status": status, "content_type": res_type});
                if full {
                    request["headers"] = json!({"Host": authority, "User-Agent": "example/1.0", "Accept": "*/*"});
                    response["headers"] =
                        json!({"Content-Type": res_type, "Content-Length": res_body.len().to_string()});
                    if let Some(b) = req_body {
                        request["body"] = json!(b64(b));
                    }
                    if !res_body.is_empty() {
                        response["body"] = json!(b64(res_body));
                    }
                }
                if req_body.is_some() {
                    request["content_type"] =
                        json!(if spec.c.l7 == "http2" { "application/grpc" } else { "application/json" });
                }
                let object: HttpTransaction = serde_json::from_value(json!({
                    "metadata": {
                        "process_id": "24981", "process_exe": spec.c.exe, "bytes_sent": bytes_sent,
                        "bytes_received": bytes_received, "request_id": request_id, "connection_id": conn_id,
                        "endpoint_id": spec.c.endpoint,
                    },
                    "request": request,
                    "response": response,
                    "transaction_time": when,
                    "duration_ms": duration,
                    "direction": spec.c.direction,
                }))
                .expect("HttpTransaction");
                let stored = StoredObject::json(&object).expect("object");
                let digest = stored.digest.clone();
                let location = store.put(stored).expect("put");
                let mut summary = json!({
                    "connection_id": conn_id, "request_id": request_id, "direction": spec.c.direction,
                    "duration_ms": duration, "process_exe": spec.c.exe, "request_host": spec.c.endpoint,
                    "request_method": method, "request_protocol": spec.c.l7, "request_scheme": scheme,
                    "response_status": status, "response_content_type": res_type,
                });
                if req_body.is_some() {
                    summary["request_content_type"] = object.request.content_type.clone().into();
                }
                let record: ArtifactRecord = serde_json::from_value(json!({
                    "connectionId": conn_id, "endpointId": spec.c.endpoint, "requestId": request_id,
                    "timestamp": when, "type": "http_transaction", "digest": digest, "url": location.url,
                    "summary": summary,
                }))
                .expect("ArtifactRecord");
                out.push((now, Event::ArtifactRecord(record)));
                if status >= 500 {
                    let issue: Issue = serde_json::from_value(json!({
                        "connectionId": conn_id, "endpointId": spec.c.endpoint, "requestId": request_id,
                        "tags": [format!("exe:{}", spec.c.exe), "host:vm"], "timestamp": when,
                        "direction": spec.c.direction, "error": "server_error", "url": url, "path": path,
                        "method": method, "status": status,
                        "triggerConditions": ["detect_errors:status_code"],
                        "triggerReasons": [format!("status {status} matched 5xx")],
                    }))
                    .expect("Issue");
                    out.push((now, Event::Issue(issue)));
                }
                txns.push(Txn {
                    connection_id: conn_id.clone(),
                    request_id,
                    method: method.to_string(),
                    host: spec.c.endpoint.to_string(),
                    url,
                    path,
                    status,
                    duration_ms: duration,
                    response_body: full.then(|| res_body.to_string()).filter(|b| !b.is_empty()),
                });
                // A periodic (not final) report in the middle of the long keep-alive connection.
                if n > 2 && i == 1 {
                    let (ts, now) = at(clock + 1);
                    let c = connection(&conn_id, &instance, &spec.c, None, ts);
                    out.push((now, Event::Connection(c)));
                }
            }
            clock += 20;
            let (closed, now) = at(clock);
            let mut c = connection(&conn_id, &instance, &spec.c, Some(&closed), closed.clone());
            c.created_at = Some(created);
            c.bytes_sent = Some(sent);
            c.bytes_received = Some(received);
            out.push((now, Event::Connection(c)));
        }
        let mut lines = Vec::new();
        for (now, ev) in &out {
            let line = envelope_line(ev, *now);
            lines.push(String::from_utf8(line[..line.len() - 1].to_vec()).expect("utf-8"));
        }
        let mut file = lines.join("\n");
        file.push('\n');
        std::fs::write(dir.path().join("events.ndjson"), file).expect("write events");
        let envelopes = lines.iter().map(|l| serde_json::from_str(l).expect("envelope")).collect();
        Recording { dir, lines, envelopes, txns }
    }

    fn events_path(&self) -> PathBuf {
        self.dir.path().join("events.ndjson")
    }

    /// The Forward tag the agent gives this envelope: `tapline.<event>`.
    fn tag(envelope: &Value) -> String {
        format!("tapline.{}", envelope["event"].as_str().expect("event"))
    }
}

fn connection(id: &str, instance: &str, s: &ConnFields, closed: Option<&str>, timestamp: String) -> Connection {
    let process = json!({
        "address": {"family": "ipv4", "ip": s.local.0, "port": s.local.1},
        "hostname": "vm", "exe": s.exe, "user": s.user.0, "userId": s.user.1,
    });
    let peer = json!({"address": {"family": "ipv4", "ip": s.remote.0, "port": s.remote.1}});
    let (source, destination) = if s.direction == "ingress" { (peer, process) } else { (process, peer) };
    let bin = s.exe.rsplit('/').next().unwrap_or(s.exe);
    let mut v = json!({
        "meta": {"connectionId": id, "endpointId": s.endpoint},
        "tags": {"bin": [bin], "host": ["vm"], "ip": ["192.0.2.10"], "protocol": [s.protocol_tag], "strategy": ["observe"]},
        "direction": s.direction,
        "socketProtocol": "tcp",
        "l7Protocol": s.l7,
        "system": {"hostname": "vm", "agent": "tapline", "agentInstance": instance},
        "source": source,
        "destination": destination,
        "timestamp": timestamp,
    });
    if s.tls {
        v["meta"]["tlsProbeTypesDetected"] = json!(["openssl"]);
        v["meta"]["tlsProbeIntrospected"] = json!(true);
        v["tlsVersion"] = json!(772);
    }
    if let Some(c) = closed {
        v["finalized"] = json!(true);
        v["closedAt"] = json!(c);
    }
    serde_json::from_value(v).expect("Connection")
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn the_recording_is_valid_qpoint_data() {
    let rec = Recording::new();
    let checker = tapline_e2e::checker_path();
    if !checker.exists() {
        let required = std::env::var("TAPLINE_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty());
        assert!(!required, "the data-model checker is required but absent at {}", checker.display());
        println!("SKIPPED: the data-model checker is not at {}", checker.display());
        return;
    }
    let o = Command::new("python3")
        .arg(&checker)
        .arg(rec.events_path())
        .arg("--objects")
        .arg(rec.dir.path().join("tapline-data/objects"))
        .output()
        .expect("python3");
    let report = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "the recording breaks the data model:\n{report}");
    // What the examples rely on: every kind of event, 5xx among the transactions, a line over 4 KiB.
    let kinds: BTreeSet<&str> = rec.envelopes.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["artifact_record", "connection", "issue"]));
    assert!(rec.txns.iter().filter(|t| t.status >= 500).count() >= 2);
    assert!(rec.lines.iter().any(|l| l.len() > 4096));
    assert!(rec.envelopes.iter().any(|e| e["event"] == "connection" && e["item"].get("finalized").is_none()));
}

// ---------------------------------------------------------------------------------------------------------------
// Fluent Bit

/// The peers folder (`$TAPLINE_PEERS`, else `../shared/peers`), or `None` after saying why the test is skipped;
/// a failure instead when `TAPLINE_REQUIRE_PEERS` is set.
fn peers(test: &str) -> Option<PathBuf> {
    let dir = std::env::var("TAPLINE_PEERS").map(PathBuf::from).unwrap_or_else(|_| workspace().join("../shared/peers"));
    if dir.join("fluent-bit").exists() {
        let deps = Command::new("bash").arg(dir.join("install-deps.sh")).output();
        assert!(deps.is_ok_and(|o| o.status.success()), "{}/install-deps.sh failed", dir.display());
        return Some(dir);
    }
    let required = std::env::var("TAPLINE_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty());
    assert!(!required, "{test}: Fluent Bit is required (TAPLINE_REQUIRE_PEERS) but absent at {}", dir.display());
    println!("SKIPPED: {test}: Fluent Bit is not at {} (set TAPLINE_PEERS)", dir.display());
    None
}

fn examples() -> PathBuf {
    workspace().join("examples")
}

/// Replaces the one line of `text` that starts (after indentation) with `key` by `key value`, keeping its
/// indentation; the example must have exactly one such line.
fn set_line(text: &str, key: &str, value: &str) -> String {
    let hits: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with(key)).collect();
    assert_eq!(hits.len(), 1, "expected exactly one `{key}` line, found {hits:?}");
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with(key) {
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}{key} {value}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Fluent Bit running one example (a copy of `examples/fluent-bit`, with `edit` applied to the example) plus a
/// `file` output that writes `TAG: [TIME, RECORD]` lines for every `tapline.*` record; killed on drop.
struct FluentBit {
    child: Child,
    work: tempfile::TempDir,
}

impl FluentBit {
    fn start(peers: &Path, example: &str, edit: impl Fn(String) -> String, stdin: Stdio) -> FluentBit {
        let work = tempfile::tempdir().expect("tempdir");
        for entry in std::fs::read_dir(examples().join("fluent-bit")).expect("examples/fluent-bit") {
            let p = entry.expect("entry").path();
            std::fs::copy(&p, work.path().join(p.file_name().expect("name"))).expect("copy");
        }
        let path = work.path().join(example);
        let text = std::fs::read_to_string(&path).expect("example");
        std::fs::write(&path, edit(text)).expect("write example");
        let wrapper = work.path().join("under-test.yaml");
        std::fs::write(
            &wrapper,
            format!(
                "includes:\n  - {example}\npipeline:\n  outputs:\n    - name: file\n      match: 'tapline.*'\n      \
                 path: {}\n      file: received.tagged\n",
                work.path().display()
            ),
        )
        .expect("wrapper");
        let child = Command::new(peers.join("fluent-bit"))
            .arg("-c")
            .arg(&wrapper)
            .current_dir(work.path())
            .stdin(stdin)
            .stdout(std::fs::File::create(work.path().join("fluent-bit.stdout")).expect("stdout"))
            .stderr(std::fs::File::create(work.path().join("fluent-bit.stderr")).expect("stderr"))
            .spawn()
            .expect("start fluent-bit");
        FluentBit { child, work }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("fluent-bit.stderr")).unwrap_or_default()
    }

    /// The (tag, time, record) triples written so far.
    fn received(&self) -> Vec<(String, f64, Value)> {
        let text = std::fs::read_to_string(self.work.path().join("received.tagged")).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (tag, rest) = l.split_once(": ").unwrap_or_else(|| panic!("not `TAG: [TIME, RECORD]`: {l}"));
                let v: Value = serde_json::from_str(rest).unwrap_or_else(|e| panic!("{e}: {l}"));
                (tag.to_string(), v[0].as_f64().expect("time"), v[1].clone())
            })
            .collect()
    }

    /// Waits until `n` records arrived (or 20 s), then a little longer to catch extras.
    fn wait_for(&self, n: usize) -> Vec<(String, f64, Value)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.received().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(1500));
        self.received()
    }

    /// Waits for the process to exit on its own (stdin closed).
    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Waits until `port` accepts connections.
    fn wait_port(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "fluent-bit did not listen on {port}: {}", self.log());
            assert!(self.child.try_wait().ok().flatten().is_none(), "fluent-bit exited: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for FluentBit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Equal up to float printing (Fluent Bit prints doubles with six decimals).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 2e-6,
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Every recorded envelope arrived exactly once under `tag_of(envelope)`, as a map equal to the envelope (plus
/// `extra`, keys the path adds), and nothing else arrived.
fn assert_all_arrived(
    rec: &Recording,
    got: &[(String, f64, Value)],
    tag_of: impl Fn(&Value) -> String,
    extra: &BTreeMap<&str, Value>,
    log: &str,
) {
    assert_eq!(
        got.len(),
        rec.envelopes.len(),
        "wanted {} records, got {}:\n{got:#?}\nfluent-bit log:\n{log}",
        rec.envelopes.len(),
        got.len()
    );
    let mut left: Vec<&(String, f64, Value)> = got.iter().collect();
    for env in &rec.envelopes {
        let tag = tag_of(env);
        let mut want = env.clone();
        for (k, v) in extra {
            want[*k] = v.clone();
        }
        let pos = left.iter().position(|(t, _, r)| *t == tag && same(r, &want)).unwrap_or_else(|| {
            let close: Vec<_> = left.iter().filter(|(_, _, r)| r["item"] == env["item"]).collect();
            panic!("not received under {tag}: {env}\nsame item received as: {close:#?}")
        });
        let (_, _, record) = left.remove(pos);
        // Decoded, not a string: the fields are there to filter on.
        assert!(record["item"].is_object(), "item arrived as {}", record["item"]);
        match env["event"].as_str() {
            Some("connection") => {
                assert_eq!(record["item"]["meta"]["connectionId"], env["item"]["meta"]["connectionId"]);
            }
            Some("artifact_record") => {
                assert_eq!(record["item"]["digest"], env["item"]["digest"]);
                assert_eq!(record["item"]["summary"]["response_status"], env["item"]["summary"]["response_status"]);
            }
            _ => assert_eq!(record["item"]["requestId"], env["item"]["requestId"]),
        }
    }
}

/// The agent's Forward client, configured as `examples/qtap/forward.yaml` configures it, sending `items`.
fn forward_send(port: u16, items: &[Vec<u8>], prefix: &str) {
    let mut cfg = ForwardConfig::new("127.0.0.1", port);
    cfg.tag_prefix = prefix.into();
    cfg.compress = Compression::Gzip;
    cfg.require_ack = true;
    cfg.ack_timeout = Duration::from_secs(10);
    let mut tx = ForwardTransport::new(cfg, "event");
    // Two messages, as batches would be.
    let (a, b) = items.split_at(items.len() / 2);
    tx.send_batch(a).expect("first batch acknowledged");
    tx.send_batch(b).expect("second batch acknowledged");
    tx.disconnect();
}

/// The `port:` of an example, checked to be the documented default before the test changes it.
fn example_port(example: &str) -> u16 {
    let text = std::fs::read_to_string(examples().join("fluent-bit").join(example)).expect("example");
    let line = text.lines().find(|l| l.trim_start().starts_with("port:")).expect("port line");
    line.trim_start().trim_start_matches("port:").trim().parse().expect("port number")
}

#[test]
fn fluent_bit_forward_example_receives_the_agents_forward_output() {
    let Some(peers) = peers("fluent_bit_forward_example") else { return };
    let rec = Recording::new();
    // The agent side of this example is examples/qtap/forward.yaml: same port, same tag prefix.
    let qtap = tapline::config::load_file(&examples().join("qtap/forward.yaml")).expect("forward.yaml");
    let eff = tapline::config::resolve_in(&qtap.config, &qtap.origin, rec.dir.path()).expect("resolve");
    let tapline::config::EventStoreKind::Forward(store) = &eff.event_stores()[0] else { panic!("not a forward store") };
    assert_eq!(
        store.transport.port,
        example_port("forward.yaml"),
        "agent and Fluent Bit examples disagree on the port"
    );

    let port = free_port();
    let mut fb = FluentBit::start(&peers, "forward.yaml", |t| set_line(&t, "port:", &port.to_string()), Stdio::null());
    fb.wait_port(port);
    // Exactly what the agent's forward event store submits: event kind as tag, the stdout line as record.
    let items: Vec<Vec<u8>> =
        rec.envelopes.iter().zip(&rec.lines).map(|(e, l)| item(e["event"].as_str().unwrap(), l.as_bytes())).collect();
    forward_send(port, &items, &store.transport.tag_prefix);
    let got = fb.wait_for(rec.envelopes.len());
    assert_all_arrived(&rec, &got, Recording::tag, &BTreeMap::new(), &fb.log());
    // The record time is the event's own time (EventTime from the envelope's `ts`).
    for (_, time, record) in &got {
        let ts = record["ts"].as_f64().expect("ts");
        assert!((time - ts).abs() < 1e-5, "record time {time} is not the event's ts {ts}");
    }
}

#[test]
fn fluent_bit_exec_example_decodes_and_tags_the_agents_stdout() {
    let Some(peers) = peers("fluent_bit_exec_example") else { return };
    let rec = Recording::new();
    let events = rec.events_path();
    // The example runs the agent; the test runs `cat` of a recorded output instead (see the example's comments).
    let text = std::fs::read_to_string(examples().join("fluent-bit/exec.yaml")).expect("exec.yaml");
    let command = text.lines().find_map(|l| l.trim_start().strip_prefix("command:")).expect("command line").trim();
    let argv: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(argv[0], "tapline");
    tapline_cli_accepts(&argv);
    let mut fb = FluentBit::start(
        &peers,
        "exec.yaml",
        |t| set_line(&t, "command:", &format!("cat {}", events.display())),
        Stdio::null(),
    );
    let got = fb.wait_for(rec.envelopes.len());
    assert!(fb.child.try_wait().ok().flatten().is_none(), "fluent-bit exited: {}", fb.log());
    assert_all_arrived(&rec, &got, Recording::tag, &BTreeMap::new(), &fb.log());
}

#[test]
fn fluent_bit_stdin_example_reads_the_agents_stdout_from_a_pipe() {
    let Some(peers) = peers("fluent_bit_stdin_example") else { return };
    let rec = Recording::new();
    // A pipe, as from `tapline | fluent-bit` (in_stdin cannot poll a regular file).
    let mut fb = FluentBit::start(&peers, "stdin.yaml", |t| t, Stdio::piped());
    let mut pipe = fb.child.stdin.take().expect("stdin pipe");
    for line in &rec.lines {
        std::io::Write::write_all(&mut pipe, format!("{line}\n").as_bytes()).expect("write to fluent-bit");
    }
    drop(pipe);
    // The pipe ends with the recording, as it does when the agent stops: Fluent Bit must flush everything and exit.
    assert!(fb.wait_exit(Duration::from_secs(20)), "fluent-bit did not exit at the end of its input: {}", fb.log());
    let got = fb.received();
    assert_all_arrived(&rec, &got, |_| "tapline.stdout".to_string(), &BTreeMap::new(), &fb.log());
}

#[test]
fn fluent_bit_docker_example_turns_log_driver_records_back_into_events() {
    let Some(peers) = peers("fluent_bit_docker_example") else { return };
    let rec = Recording::new();
    let port = free_port();
    let mut fb = FluentBit::start(&peers, "docker.yaml", |t| set_line(&t, "port:", &port.to_string()), Stdio::null());
    fb.wait_port(port);
    // What Docker's fluentd log driver sends for the agent's container: one record per output line, stdout and
    // stderr interleaved (the agent's JSON log lines, as `--log-format json` writes them), under the tag of
    // `--log-opt tag=…`.
    let container_id = "4f1b2c3d".repeat(8);
    let docker = |source: &str, log: &str| {
        let r = json!({"container_id": container_id, "container_name": "/tapline", "source": source, "log": log});
        item("agent", r.to_string().as_bytes())
    };
    let mut items = vec![docker(
        "stderr",
        r#"{"timestamp":"2026-11-25T20:00:00.000001Z","level":"INFO","message":"all probes attached","target":"tapline::run"}"#,
    )];
    for (i, line) in rec.lines.iter().enumerate() {
        items.push(docker("stdout", line));
        if i == 3 {
            items.push(docker("stderr", r#"{"timestamp":"2026-11-25T20:00:01.5Z","level":"WARN","message":"the kernel dropped capture data","target":"tapline::run"}"#));
            // qtap's development object store prints on stdout too; not an event.
            items.push(docker(
                "stdout",
                r#"{"level":"qpoint","ts":1795636800.5,"message":"object store submission","type":"http_transaction","digest":"00"}"#,
            ));
        }
    }
    forward_send(port, &items, "docker");
    let got = fb.wait_for(rec.envelopes.len());
    let extra = BTreeMap::from([
        ("container_id", json!(container_id)),
        ("container_name", json!("/tapline")),
        ("source", json!("stdout")),
    ]);
    assert_all_arrived(&rec, &got, Recording::tag, &extra, &fb.log());
}

/// The agent's command line accepts `argv` (the flags an example passes exist).
fn tapline_cli_accepts(argv: &[&str]) {
    use clap::Parser;
    if let Err(e) = tapline::cli::Cli::try_parse_from(argv) {
        panic!("`{}` is not a valid tapline command line: {e}", argv.join(" "));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// qtap.yaml examples

fn level_for(eff: &tapline::config::Effective, status: u16, host: &str) -> tapline::config::CaptureLevel {
    use tapline::rules::MapFields;
    let fields = MapFields::new()
        .with("http.res.status", status as i64)
        .with("http.req.host", host.to_string())
        .with("http.req.method", "GET");
    eff.stacks().for_host(Some(host), host).decide(Some(&fields), || {}).level
}

#[test]
fn qtap_examples_load_cleanly_with_the_levels_they_promise() {
    use tapline::config::{CaptureLevel as L, EventStoreKind, ObjectStoreKind, TapDirection};
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples().join("qtap"))
        .expect("examples/qtap")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.push(workspace().join("docker/qtap.yaml"));
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let data = tempfile::tempdir().expect("tempdir");
    for f in &files {
        let name = f.strip_prefix(workspace()).expect("in the workspace").display().to_string();
        let loaded = tapline::config::load_file(f).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(loaded.warnings.is_empty(), "{name}: every key must be one tapline applies: {:?}", loaded.warnings);
        let eff = tapline::config::resolve_in(&loaded.config, &loaded.origin, data.path())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let local = matches!(eff.object_store(), ObjectStoreKind::Local { .. });
        let stdout_events = eff.event_stores() == [EventStoreKind::Stdout];
        match name.as_str() {
            "examples/qtap/summary-everything.yaml" => {
                assert_eq!(eff.capture_level(), L::Summary);
                assert!(eff.stacks().default.rules.is_empty() && eff.stacks().endpoints.is_empty());
                for status in [200, 404, 503] {
                    assert_eq!(level_for(&eff, status, "anything.example"), L::Summary);
                }
                assert_eq!((eff.direction(), eff.ignore_loopback()), (TapDirection::All, false));
                assert!(local && stdout_events);
            }
            "examples/qtap/errors-full.yaml" | "docker/qtap.yaml" => {
                assert_eq!(level_for(&eff, 200, "api.example.com"), L::Summary, "{name}");
                assert_eq!(level_for(&eff, 302, "api.example.com"), L::Summary, "{name}");
                assert_eq!(level_for(&eff, 400, "api.example.com"), L::Full, "{name}");
                assert_eq!(level_for(&eff, 503, "10.0.0.7"), L::Full, "{name}");
                assert_eq!((eff.direction(), eff.ignore_loopback()), (TapDirection::All, false));
                if name.starts_with("docker") {
                    let ObjectStoreKind::S3(s3) = eff.object_store() else { panic!("{name}: objects go to S3") };
                    assert_eq!(
                        (s3.bucket.as_str(), s3.endpoint.as_str(), s3.insecure),
                        ("tapline", "minio:9000", true)
                    );
                    assert!(s3.access_key.is_none(), "{name}: keys come from the environment, not the file");
                    let [EventStoreKind::Forward(fw)] = eff.event_stores() else {
                        panic!("{name}: events over Forward")
                    };
                    assert_eq!((fw.transport.host.as_str(), fw.transport.port), ("fluent-bit", 24224));
                } else {
                    assert!(local && stdout_events);
                }
            }
            "examples/qtap/domain-full.yaml" => {
                assert_eq!(eff.capture_level(), L::None);
                let levels: HashMap<String, L> =
                    eff.stacks().endpoints.iter().map(|(d, s)| (d.clone(), s.level)).collect();
                assert_eq!(levels, HashMap::from([("api.example.com".to_string(), L::Full)]));
                assert_eq!(level_for(&eff, 200, "api.example.com"), L::Full);
                assert_eq!(level_for(&eff, 500, "api.example.com"), L::Full);
                assert_eq!(level_for(&eff, 200, "other.example.com"), L::None);
                assert_eq!(level_for(&eff, 500, "other.example.com"), L::None);
                assert_eq!((eff.direction(), eff.ignore_loopback()), (TapDirection::Egress, true));
            }
            "examples/qtap/forward.yaml" => {
                let [EventStoreKind::Forward(fw)] = eff.event_stores() else { panic!("{name}: events over Forward") };
                assert_eq!((fw.transport.host.as_str(), fw.transport.tag_prefix.as_str()), ("127.0.0.1", "tapline"));
                assert!(fw.transport.require_ack);
                assert_eq!(level_for(&eff, 200, "x"), L::Summary);
                assert_eq!(level_for(&eff, 404, "x"), L::Summary);
                assert_eq!(level_for(&eff, 502, "x"), L::Full);
                assert_eq!(eff.stacks().default.error_rules.len(), 1);
                assert_eq!(eff.stacks().default.error_rules[0].trigger_status_codes, ["5xx"]);
                assert!(local);
            }
            other => panic!("{other}: a new example needs its expectations here"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Vector

/// Every `inputs` entry names a source or transform (a route's outputs are `<route>.<name>`).
fn vector_components(doc: &toml::Table) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for kind in ["sources", "transforms"] {
        for (name, c) in doc.get(kind).and_then(|t| t.as_table()).into_iter().flatten() {
            names.insert(name.clone());
            if let Some(routes) = c.get("route").and_then(|r| r.as_table()) {
                for r in routes.keys() {
                    names.insert(format!("{name}.{r}"));
                }
            }
        }
    }
    names
}

#[test]
fn vector_examples_have_what_vector_requires() {
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(examples().join("vector")).expect("examples/vector") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let doc: toml::Table = toml::from_str(&std::fs::read_to_string(&path).expect("read"))
            .unwrap_or_else(|e| panic!("{name}: not TOML: {e}"));
        let sources = doc.get("sources").and_then(|s| s.as_table()).unwrap_or_else(|| panic!("{name}: no [sources]"));
        assert!(!sources.is_empty(), "{name}: no source");
        for (id, s) in sources {
            let ty = s.get("type").and_then(|t| t.as_str()).unwrap_or_else(|| panic!("{name}: sources.{id}.type"));
            seen.insert(ty.to_string());
            match ty {
                "fluent" => {
                    let addr = s.get("address").and_then(|a| a.as_str()).expect("fluent source needs `address`");
                    let addr: std::net::SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{name}: {addr}: {e}"));
                    assert_eq!(addr.port(), 24224, "{name}: the agent's forward store default port");
                }
                "exec" | "stdin" => {
                    let codec = s.get("decoding").and_then(|d| d.get("codec")).and_then(|c| c.as_str());
                    assert_eq!(codec, Some("json"), "{name}: sources.{id}.decoding.codec");
                    if ty == "exec" {
                        let mode = s.get("mode").and_then(|m| m.as_str());
                        assert!(matches!(mode, Some("streaming" | "scheduled")), "{name}: sources.{id}.mode");
                        let argv: Vec<&str> = s
                            .get("command")
                            .and_then(|c| c.as_array())
                            .unwrap_or_else(|| panic!("{name}: sources.{id}.command is a list"))
                            .iter()
                            .map(|a| a.as_str().expect("command argument"))
                            .collect();
                        assert_eq!(argv.first(), Some(&"tapline"), "{name}");
                        tapline_cli_accepts(&argv);
                    }
                }
                other => panic!("{name}: unexpected source type {other}"),
            }
        }
        let known = vector_components(&doc);
        let check_inputs = |kind: &str, id: &str, c: &toml::Value| {
            let inputs = c.get("inputs").and_then(|i| i.as_array()).unwrap_or_else(|| panic!("{name}: {kind}.{id}"));
            assert!(!inputs.is_empty(), "{name}: {kind}.{id}.inputs is empty");
            for i in inputs {
                let i = i.as_str().expect("input name");
                assert!(known.contains(i), "{name}: {kind}.{id} reads `{i}`, which is not defined ({known:?})");
            }
        };
        for (id, t) in doc.get("transforms").and_then(|t| t.as_table()).into_iter().flatten() {
            let ty = t.get("type").and_then(|t| t.as_str()).unwrap_or_else(|| panic!("{name}: transforms.{id}.type"));
            check_inputs("transforms", id, t);
            match ty {
                "filter" => assert!(t.get("condition").is_some_and(|c| c.is_str()), "{name}: transforms.{id}"),
                "route" => assert!(t.get("route").is_some_and(|r| r.is_table()), "{name}: transforms.{id}.route"),
                other => panic!("{name}: unexpected transform {other}"),
            }
        }
        let sinks = doc.get("sinks").and_then(|s| s.as_table()).unwrap_or_else(|| panic!("{name}: no [sinks]"));
        assert!(!sinks.is_empty(), "{name}: no sink");
        for (id, s) in sinks {
            assert!(s.get("type").is_some_and(|t| t.is_str()), "{name}: sinks.{id}.type");
            check_inputs("sinks", id, s);
            if s.get("type").and_then(|t| t.as_str()) == Some("console") {
                assert!(s.get("encoding").and_then(|e| e.get("codec")).is_some(), "{name}: sinks.{id}.encoding.codec");
            }
        }
    }
    assert_eq!(seen, BTreeSet::from(["exec".into(), "fluent".into(), "stdin".into()]));
}

// ---------------------------------------------------------------------------------------------------------------
// jq recipes

/// The `sh` blocks of docs/recipes.md, by the name in the `<!-- recipe: NAME -->` line above each.
fn recipes() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(workspace().join("docs/recipes.md")).expect("docs/recipes.md");
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(l) = lines.next() {
        let Some(name) = l.trim().strip_prefix("<!-- recipe:").and_then(|r| r.strip_suffix("-->")) else { continue };
        assert_eq!(lines.next().map(str::trim), Some("```sh"), "recipe {name}: a ```sh block must follow");
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        out.push((name.trim().to_string(), body.join("\n")));
    }
    out
}

/// Runs a recipe in the recording's directory with `tapline` on the PATH; its stdout lines.
fn run_recipe(rec: &Recording, name: &str, script: &str) -> Vec<String> {
    let bin_dir = bin_path().parent().expect("bin dir").to_path_buf();
    assert!(bin_path().exists(), "{} is missing: build it first (cargo build --bin tapline)", bin_path().display());
    // `tapline` must be the binary under test, also when TAPLINE_BIN names another file name.
    let shim = rec.dir.path().join("bin");
    std::fs::create_dir_all(&shim).expect("shim dir");
    let link = shim.join("tapline");
    if !link.exists() {
        std::os::unix::fs::symlink(bin_path(), &link).expect("symlink");
    }
    let path = format!("{}:{}:{}", shim.display(), bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let o = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(rec.dir.path())
        .env("PATH", path)
        .env_remove("QPOINT_CONFIG")
        .env_remove("DATA_DIR")
        .output()
        .expect("bash");
    assert!(o.status.success(), "recipe {name} failed: {}\n{script}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8").lines().map(String::from).collect()
}

fn parse_lines(name: &str, lines: &[String]) -> Vec<Value> {
    lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("recipe {name}: {e}: {l}"))).collect()
}

#[test]
fn jq_recipes_in_the_docs_give_the_right_answers() {
    if Command::new("jq").arg("--version").output().is_err() {
        let required = std::env::var("TAPLINE_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty());
        assert!(!required, "jq is required (scripts/install-deps.sh --test installs it)");
        println!("SKIPPED: jq is not installed");
        return;
    }
    let rec = Recording::new();
    let recipes = recipes();
    let names: BTreeSet<&str> = recipes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "server-errors",
            "slowest-endpoints",
            "fetch-body",
            "fetch-stdin",
            "join-connection",
            "issues"
        ]),
        "every recipe needs its check here"
    );
    let errors: Vec<&Txn> = rec.txns.iter().filter(|t| t.status >= 500).collect();
    assert!(!errors.is_empty());
    for (name, script) in &recipes {
        let out = run_recipe(&rec, name, script);
        match name.as_str() {
            "server-errors" => {
                let got = parse_lines(name, &out);
                let want: Vec<Value> = errors
                    .iter()
                    .map(|t| {
                        json!({"request_id": t.request_id, "request_method": t.method, "request_host": t.host,
                               "response_status": t.status, "duration_ms": t.duration_ms})
                    })
                    .collect();
                assert_eq!(got, want, "recipe {name}");
            }
            "slowest-endpoints" => {
                let got = parse_lines(name, &out);
                let mut groups: BTreeMap<String, Vec<u64>> = BTreeMap::new();
                for t in &rec.txns {
                    groups.entry(format!("{} {}", t.method, t.host)).or_default().push(t.duration_ms);
                }
                assert_eq!(got.len(), groups.len(), "recipe {name}: {got:#?}");
                for g in &got {
                    let d = &groups[g["endpoint"].as_str().expect("endpoint")];
                    assert_eq!(g["count"], json!(d.len()));
                    assert_eq!(g["max_ms"], json!(d.iter().max()));
                    let avg = d.iter().sum::<u64>() as f64 / d.len() as f64;
                    assert!((g["avg_ms"].as_f64().expect("avg") - avg).abs() < 1e-9);
                }
                let maxes: Vec<u64> = got.iter().map(|g| g["max_ms"].as_u64().expect("max")).collect();
                assert!(maxes.windows(2).all(|w| w[0] >= w[1]), "recipe {name}: not slowest first: {maxes:?}");
                let slowest = rec.txns.iter().max_by_key(|t| t.duration_ms).expect("txn");
                assert_eq!(got[0]["endpoint"], json!(format!("{} {}", slowest.method, slowest.host)));
            }
            "fetch-body" => {
                let want: Vec<String> = errors
                    .iter()
                    .map(|t| {
                        let body = t.response_body.clone().unwrap_or_default();
                        format!("{} {} {}\t{body}", t.method, t.url, t.status)
                    })
                    .collect();
                assert_eq!(out, want, "recipe {name}");
                assert!(errors.iter().all(|t| t.response_body.is_some()), "errors are recorded in full");
            }
            "fetch-stdin" => {
                assert_eq!(out, [rec.txns[0].url.clone()], "recipe {name}");
            }
            "join-connection" => {
                let got = parse_lines(name, &out);
                assert_eq!(got.len(), rec.txns.len(), "recipe {name}");
                for (g, t) in got.iter().zip(&rec.txns) {
                    let conn = rec
                        .envelopes
                        .iter()
                        .find(|e| {
                            e["event"] == "connection"
                                && e["item"]["finalized"] == true
                                && e["item"]["meta"]["connectionId"] == json!(t.connection_id)
                        })
                        .expect("final connection report");
                    let exe = conn["item"]["source"]["exe"].as_str().or(conn["item"]["destination"]["exe"].as_str());
                    assert_eq!(g["request_id"], json!(t.request_id), "recipe {name}");
                    assert_eq!(g["status"], json!(t.status), "recipe {name}");
                    assert_eq!(g["exe"], json!(exe.expect("exe")), "recipe {name}");
                    assert_eq!(g["bytes_sent"], conn["item"]["bytesSent"], "recipe {name}");
                }
            }
            "issues" => {
                let got = parse_lines(name, &out);
                let want: Vec<Value> = errors
                    .iter()
                    .map(|t| {
                        json!({"error": "server_error", "status": t.status, "method": t.method, "path": t.path,
                               "requestId": t.request_id})
                    })
                    .collect();
                assert_eq!(got, want, "recipe {name}");
            }
            other => unreachable!("{other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// docker/

#[test]
fn docker_compose_runs_the_agent_with_what_it_needs() {
    let dir = workspace().join("docker");
    let text = std::fs::read_to_string(dir.join("docker-compose.yml")).expect("docker-compose.yml");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("docker-compose.yml is YAML");
    let services = doc["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for s in ["app", "tapline", "fluent-bit", "minio"] {
        assert!(names.contains(s), "service {s} missing: {names:?}");
    }
    let str_list = |v: &serde_yaml_ng::Value| -> Vec<String> {
        v.as_sequence().into_iter().flatten().filter_map(|x| x.as_str().map(String::from)).collect()
    };
    // Every relative host path (bind mounts, build context) exists, relative to docker/.
    for (name, svc) in services {
        for v in str_list(&svc["volumes"]) {
            let host = v.split(':').next().unwrap_or_default();
            if host.starts_with('.') {
                assert!(dir.join(host).exists(), "{name:?}: {host} does not exist");
            }
        }
    }
    let agent = &doc["services"]["tapline"];
    assert_eq!(agent["pid"].as_str(), Some("host"));
    let caps: BTreeSet<String> = str_list(&agent["cap_add"]).into_iter().collect();
    for c in ["BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE"] {
        assert!(caps.contains(c), "cap_add lacks {c}: {caps:?}");
    }
    assert_eq!(agent["ulimits"]["memlock"].as_i64(), Some(-1));
    let context = dir.join(agent["build"]["context"].as_str().expect("build.context"));
    let dockerfile = context.join(agent["build"]["dockerfile"].as_str().expect("build.dockerfile"));
    assert!(dockerfile.exists(), "{}", dockerfile.display());
    let mounts: BTreeMap<String, String> = str_list(&agent["volumes"])
        .iter()
        .filter_map(|v| {
            let mut p = v.split(':');
            Some((p.nth(1)?.to_string(), v.split(':').next()?.to_string()))
        })
        .collect();
    for target in ["/sys/kernel/btf", "/sys/kernel/tracing"] {
        assert_eq!(mounts.get(target).map(String::as_str), Some(target), "host {target} must be mounted");
    }
    // The config the image runs (Dockerfile CMD --config …) is the one compose mounts, and it loads.
    let cmd = dockerfile_instructions(&std::fs::read_to_string(&dockerfile).expect("Dockerfile"))
        .into_iter()
        .rfind(|(i, _)| i == "CMD")
        .expect("CMD")
        .1;
    let cmd: Vec<String> = serde_json::from_str(&cmd).expect("CMD in exec form");
    let config_path = &cmd[cmd.iter().position(|a| a == "--config").expect("--config") + 1];
    let host_config = mounts.get(config_path).unwrap_or_else(|| panic!("{config_path} is not mounted: {mounts:?}"));
    let qtap = tapline::config::load_file(&dir.join(host_config)).expect("mounted qtap.yaml loads");
    let eff = tapline::config::resolve_in(&qtap.config, &qtap.origin, Path::new("/var/lib/tapline")).expect("resolve");
    // Its Forward receiver and S3 endpoint are services of this file, on the ports they listen on.
    let [tapline::config::EventStoreKind::Forward(fw)] = eff.event_stores() else { panic!("events over Forward") };
    assert!(names.contains(fw.transport.host.as_str()), "forward host {} is not a service", fw.transport.host);
    let fb = &doc["services"][fw.transport.host.as_str()];
    let fb_cmd = str_list(&fb["command"]);
    let fb_config = &fb_cmd[fb_cmd.iter().position(|a| a == "-c").expect("fluent-bit -c") + 1];
    let fb_mounts: BTreeMap<String, String> = str_list(&fb["volumes"])
        .iter()
        .filter_map(|v| Some((v.split(':').nth(1)?.to_string(), v.split(':').next()?.to_string())))
        .collect();
    let fb_host = fb_mounts.get(fb_config).unwrap_or_else(|| panic!("{fb_config} not mounted in fluent-bit"));
    let fb_text = std::fs::read_to_string(dir.join(fb_host)).expect("fluent-bit config");
    assert!(fb_text.contains("name: forward"), "the mounted Fluent Bit config must have a forward input");
    assert!(
        fb_text.lines().any(|l| l.trim() == format!("port: {}", fw.transport.port)),
        "Fluent Bit must listen on the agent's forward port {}",
        fw.transport.port
    );
    let tapline::config::ObjectStoreKind::S3(s3) = eff.object_store() else { panic!("objects to S3") };
    let (s3_host, s3_port) = s3.endpoint.split_once(':').expect("endpoint host:port");
    assert!(names.contains(s3_host), "S3 endpoint {s3_host} is not a service");
    assert_eq!(s3_port, "9000", "minio's API port");
    let env = &agent["environment"];
    assert!(env["AWS_ACCESS_KEY_ID"].is_string() && env["AWS_SECRET_ACCESS_KEY"].is_string());
    assert_eq!(env["AWS_ACCESS_KEY_ID"], doc["services"][s3_host]["environment"]["MINIO_ROOT_USER"]);
}

/// A Dockerfile's instructions (continuations joined), as (INSTRUCTION, arguments).
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (i, rest) = cur.split_once(char::is_whitespace).unwrap_or((&cur, ""));
        out.push((i.to_ascii_uppercase(), rest.trim().to_string()));
        cur.clear();
    }
    out
}

#[test]
fn dockerfile_builds_from_files_that_exist() {
    let root = workspace();
    let text = std::fs::read_to_string(root.join("docker/Dockerfile")).expect("docker/Dockerfile");
    let instructions = dockerfile_instructions(&text);
    let mut stages: Vec<(String, String)> = Vec::new(); // (name, image)
    let mut copied = BTreeSet::new();
    let mut build_runs = String::new();
    for (i, args) in &instructions {
        match i.as_str() {
            "FROM" => {
                let parts: Vec<&str> = args.split_whitespace().collect();
                let name = match parts.as_slice() {
                    [_, as_, n] if as_.eq_ignore_ascii_case("as") => n.to_string(),
                    _ => String::new(),
                };
                stages.push((name, parts[0].to_string()));
            }
            "COPY" => {
                let parts: Vec<&str> = args.split_whitespace().collect();
                if let Some(from) = parts[0].strip_prefix("--from=") {
                    let earlier = &stages[..stages.len() - 1];
                    assert!(
                        earlier.iter().any(|(n, _)| n == from),
                        "COPY --from={from}: no earlier stage of that name"
                    );
                    continue;
                }
                let (sources, _dest) = parts.split_at(parts.len() - 1);
                for s in sources {
                    assert!(root.join(s).exists(), "COPY {s}: not in the repository (build context = repo root)");
                    copied.insert(s.trim_end_matches('/').to_string());
                }
            }
            "RUN" if stages.len() == 1 => build_runs.push_str(args),
            _ => {}
        }
    }
    assert_eq!(stages.len(), 2, "a build stage and a run stage: {stages:?}");
    assert_eq!(stages[1].1, "debian:12-slim");
    for pkg in ["clang", "libbpf-dev"] {
        assert!(build_runs.contains(pkg), "the build stage must install {pkg}");
    }
    assert!(build_runs.contains("cargo build --release"), "the build stage builds the release binary");
    // Every workspace member and the lock file are in the build context, so adding a member breaks this test
    // until the Dockerfile copies it.
    let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    let members = manifest["workspace"]["members"].as_array().expect("members");
    for m in members.iter().map(|m| m.as_str().expect("member")).chain(["Cargo.toml", "Cargo.lock"]) {
        assert!(copied.contains(m), "the Dockerfile does not COPY {m}: {copied:?}");
    }
    // What the entrypoint runs is what the run stage copied in.
    let entry = instructions.iter().rfind(|(i, _)| i == "ENTRYPOINT").expect("ENTRYPOINT");
    let entry: Vec<String> = serde_json::from_str(&entry.1).expect("ENTRYPOINT in exec form");
    let copied_in = instructions
        .iter()
        .filter(|(i, a)| i == "COPY" && a.starts_with("--from="))
        .filter_map(|(_, a)| a.split_whitespace().last().map(String::from))
        .collect::<Vec<_>>();
    assert!(copied_in.contains(&entry[0]), "ENTRYPOINT {} is not what the run stage copies: {copied_in:?}", entry[0]);
    assert!(root.join(".dockerignore").exists(), "without .dockerignore, target/ (GBs) is sent as build context");
}

// ---------------------------------------------------------------------------------------------------------------
// Grafana

/// Every query of the shipped dashboard names metrics and labels a running agent exposes.
#[test]
fn grafana_dashboard_queries_what_the_agent_exposes() {
    let _lock = tapline_e2e::probe_lock();
    let dash: serde_json::Value =
        serde_json::from_slice(&std::fs::read(examples().join("grafana/tapline.json")).expect("dashboard"))
            .expect("JSON");
    let (_server, port) = tapline_e2e::start_http_server("127.0.0.1").expect("server");
    let config = "stacks:\n  s:\n    plugins:\n      - type: http_capture\n        config: {level: summary}\n      - type: http_metrics\n\
                  tap:\n  http: {stack: s}\n";
    let agent = tapline_e2e::Agent::start(Some(config), &[]).expect("agent");
    tapline_e2e::run(
        Command::new("curl").args(["-sS", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{port}/status/503")),
    )
    .expect("curl");
    agent
        .wait_for(std::time::Duration::from_secs(15), "a record", |ev| {
            !tapline_e2e::records_on(ev, port, "egress-internal").is_empty()
        })
        .expect("events");
    let metrics = agent.get("/metrics").expect("metrics").1;
    agent.stop().expect("stop");
    // name -> the label names its series carry
    let mut exposed: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
    // Declared families (a counter without series yet still has its TYPE line).
    for line in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap_or((line, ""));
        let names: Vec<String> = match kind {
            "counter" => vec![format!("{name}_total")],
            "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{name}{s}")).collect(),
            _ => vec![name.to_string()],
        };
        for n in names {
            exposed.entry(n).or_default();
        }
    }
    for line in metrics.lines().filter(|l| l.starts_with("tapline_")) {
        let (name, rest) = line.split_once(['{', ' ']).unwrap_or((line, ""));
        let labels = exposed.entry(name.to_string()).or_default();
        if let Some(inner) = rest.split_once('}').map(|(l, _)| l) {
            labels.extend(inner.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, _)| k.to_string()));
        }
    }
    let word = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "a dashboard worth shipping");
    let mut checked = 0;
    for p in panels {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            for (i, _) in expr.match_indices("tapline_") {
                let name = word(&expr[i..]);
                let labels =
                    exposed.get(&name).unwrap_or_else(|| panic!("{}: `{name}` is not on /metrics", p["title"]));
                // Label matchers right after the name, and `by (...)` groupings, must exist on it.
                let after = &expr[i + name.len()..];
                let mut used: Vec<String> = Vec::new();
                if let Some(sel) = after.strip_prefix('{').and_then(|a| a.split_once('}')).map(|(s, _)| s) {
                    used.extend(sel.split(',').map(|m| word(m.trim())).filter(|l| l != "job"));
                }
                if let Some(by) =
                    expr.find("by (").map(|b| &expr[b + 4..]).and_then(|b| b.split_once(')')).map(|(b, _)| b)
                {
                    used.extend(by.split(',').map(|l| l.trim().to_string()).filter(|l| l != "le" && l != "job"));
                }
                // (Labels are known only once the family has series.)
                for l in used.iter().filter(|l| !l.is_empty() && !labels.is_empty()) {
                    assert!(labels.contains(l), "{}: `{name}` has no label `{l}` (has {labels:?})", p["title"]);
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "{checked}");
}
