//! Interop with the real Forward receivers in the shared peers folder (Fluent Bit 5.1.1 and fluentd 1.16.11):
//! plain PackedForward, gzip, acks and no acks, shared key (right and wrong), TLS, TLS with a shared key. Every
//! record that lands must equal the envelope we sent, under the right tag.
//!
//! The peers are found at `$TAPLINE_PEERS` or `<workspace>/../shared/peers`; their runtime packages are installed
//! with the folder's `install-deps.sh` (apt, as root). When the folder or its dependencies are missing, each test
//! prints `SKIPPED: …` and passes, unless `TAPLINE_REQUIRE_PEERS` is set (CI), in which case it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use tapline_output::event::{Event, envelope_line};
use tapline_output::forward::{Compression, ForwardConfig, ForwardTransport, SendError, TlsConfig, event_item, item};
use tapline_output::model::Issue;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Peer {
    FluentBit,
    Fluentd,
}

impl Peer {
    fn script(self) -> &'static str {
        match self {
            Peer::FluentBit => "fluent-bit-forward.sh",
            Peer::Fluentd => "fluentd-forward.sh",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    /// PackedForward, no compression, acks.
    Plain,
    /// CompressedPackedForward (gzip), acks.
    Gzip,
    /// gzip, no chunk / no acks.
    NoAck,
    SharedKey,
    WrongSharedKey,
    Tls,
    TlsSharedKey,
}

const KEY: &str = "interop-s3cr3t";

/// The peers folder, or why the tests skip.
fn peers() -> Result<PathBuf, String> {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let dir = std::env::var_os("TAPLINE_PEERS").map(PathBuf::from).unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("shared").join("peers")
            });
            for f in ["fluent-bit-forward.sh", "fluentd-forward.sh", "fluent-bit", "install-deps.sh"] {
                if !dir.join(f).exists() {
                    return Err(format!("Forward peer {f} not found at {}", dir.display()));
                }
            }
            let out = Command::new(dir.join("install-deps.sh"))
                .output()
                .map_err(|e| format!("cannot run {}/install-deps.sh: {e}", dir.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{}/install-deps.sh failed (needs root and apt): {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(dir)
        })
        .clone()
}

/// The peers folder, or `None` after printing why the test is skipped (panics instead under TAPLINE_REQUIRE_PEERS).
fn peers_or_skip(test: &str) -> Option<PathBuf> {
    match peers() {
        Ok(d) => Some(d),
        Err(why) if std::env::var_os("TAPLINE_REQUIRE_PEERS").is_some() => {
            panic!("{test}: {why} (TAPLINE_REQUIRE_PEERS is set)")
        }
        Err(why) => {
            println!("SKIPPED: {test}: {why}");
            None
        }
    }
}

/// A started peer, killed on drop.
struct Running {
    pid: String,
    out: PathBuf,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
        for _ in 0..50 {
            let alive = Command::new("kill").args(["-0", &self.pid]).output().is_ok_and(|o| o.status.success());
            if !alive {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A self-signed certificate for localhost / 127.0.0.1: (cert PEM path, key PEM path).
fn cert(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (c, k) = (dir.join("crt.pem"), dir.join("key.pem"));
    std::fs::write(&c, ck.cert.pem()).unwrap();
    std::fs::write(&k, ck.key_pair.serialize_pem()).unwrap();
    (c, k)
}

fn start(peers: &Path, peer: Peer, key: bool, tls: bool) -> (Running, Option<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("records.jsonl");
    let port = free_port();
    let mut cmd = Command::new(peers.join(peer.script()));
    cmd.arg(port.to_string()).arg(&out);
    if key {
        cmd.args(["--shared-key", KEY]);
    }
    let mut ca = None;
    if tls {
        let (c, k) = cert(dir.path());
        cmd.arg("--tls").arg(&c).arg(&k);
        ca = Some(c);
    }
    // stderr goes to a file: a background helper of the script (fluentd's output filter) keeps it open, so a
    // captured stderr pipe would never reach EOF.
    let err_path = dir.path().join("start.err");
    cmd.stderr(std::fs::File::create(&err_path).unwrap());
    let o = cmd.output().unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(o.status.success(), "{peer:?} did not start: {stderr}");
    let pid = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(!pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()), "no PID from {peer:?}: {pid:?}");
    (Running { pid, out, _dir: dir, port }, ca)
}

/// The envelopes sent: real `issue` events and synthetic `connection` envelopes with nested values.
fn batch() -> (Vec<Vec<u8>>, Vec<(String, serde_json::Value)>) {
    let now = SystemTime::now();
    let mut items = Vec::new();
    let mut want = Vec::new();
    for i in 0..3 {
        let ev = Event::Issue(Issue {
            connection_id: format!("conn-{i}"),
            endpoint_id: "api.example.com".into(),
            request_id: format!("req-{i}"),
            timestamp: "2025-01-01T00:00:00.000000000Z".into(),
            error: "Server Errors".into(),
            trigger_conditions: vec!["detect_errors:status".into()],
            trigger_reasons: vec!["500".into(), "é ✓ \"quoted\"".into()],
            ..Default::default()
        });
        items.push(event_item(&ev, now));
        want.push(("tapline.issue".to_string(), serde_json::from_slice(&envelope_line(&ev, now)).unwrap()));
        let line = format!(
            "{{\"level\":\"qpoint\",\"ts\":1761238061.5,\"message\":\"event store submission\",\
             \"type\":\"*eventstore.Connection\",\"event\":\"connection\",\"item\":{{\"i\":{i},\"neg\":-42,\
             \"ok\":true,\"none\":null,\"tags\":[\"a\",\"b\"],\"meta\":{{\"port\":443,\"x\":[1,2,{{\"y\":\"z\"}}]}}}}}}"
        );
        items.push(item("connection", line.as_bytes()));
        want.push(("tapline.connection".to_string(), serde_json::from_str(&line).unwrap()));
    }
    (items, want)
}

/// Equal up to float printing (Fluent Bit prints doubles with six decimals).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => match (x.as_f64(), y.as_f64()) {
            // Fluent Bit prints six decimals; an epoch f64 is exact to about 2.4e-7.
            (Some(x), Some(y)) => (x - y).abs() <= 2e-6,
            _ => false,
        },
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Object(x), Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w))),
        _ => a == b,
    }
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p).unwrap_or_default().lines().filter(|l| !l.trim().is_empty()).map(String::from).collect()
}

/// Waits until `path` has `n` lines (records arrive within about a flush interval).
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lines = read_lines(path);
        if lines.len() >= n || Instant::now() > deadline {
            // A little longer, to catch duplicates or extras.
            thread::sleep(Duration::from_millis(300));
            return read_lines(path);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The entry's EventTime is the envelope's `ts`.
fn assert_event_time(time: f64, rec: &serde_json::Value) {
    let ts = rec["ts"].as_f64().expect("ts");
    assert!((time - ts).abs() < 1e-5, "event time {time} is not the envelope ts {ts}");
}

/// Received (tag, record) pairs, in arrival order.
fn received(peer: Peer, r: &Running, n: usize) -> Vec<(String, serde_json::Value)> {
    if let Some(first) = wait_lines(&r.out, n).first() {
        println!("{peer:?} wrote: {first}");
    }
    match peer {
        Peer::Fluentd => wait_lines(&r.out, n)
            .iter()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                let obj = v.as_object_mut().unwrap();
                let tag = obj.remove("tag").and_then(|t| t.as_str().map(String::from)).expect("fluentd tag key");
                let time = obj.remove("time").and_then(|t| t.as_f64()).expect("fluentd time key");
                assert_event_time(time, &v);
                (tag, v)
            })
            .collect(),
        Peer::FluentBit => {
            let bare = wait_lines(&r.out, n);
            let mut tagged_path = r.out.clone().into_os_string();
            tagged_path.push(".tagged");
            let tagged = wait_lines(Path::new(&tagged_path), n);
            assert_eq!(bare.len(), tagged.len(), "stdout and file outputs disagree:\n{bare:#?}\n{tagged:#?}");
            bare.iter()
                .zip(&tagged)
                .map(|(b, t)| {
                    let rec: serde_json::Value = serde_json::from_str(b).unwrap_or_else(|e| panic!("{e}: {b}"));
                    let (tag, rest) = t.split_once(": ").unwrap_or_else(|| panic!("not TAG: [...]: {t}"));
                    let arr: serde_json::Value = serde_json::from_str(rest).unwrap_or_else(|e| panic!("{e}: {t}"));
                    assert!(same(&arr[1], &rec), "tagged and bare records differ:\n{t}\n{b}");
                    assert_event_time(arr[0].as_f64().expect("TAG: [TIME, RECORD]"), &rec);
                    (tag.to_string(), rec)
                })
                .collect()
        }
    }
}

fn run(peer: Peer, case: Case, test: &str) {
    let Some(peers) = peers_or_skip(test) else { return };
    let key = matches!(case, Case::SharedKey | Case::WrongSharedKey | Case::TlsSharedKey);
    let tls = matches!(case, Case::Tls | Case::TlsSharedKey);
    let (running, ca) = start(&peers, peer, key, tls);
    let mut cfg = ForwardConfig::new("127.0.0.1", running.port);
    cfg.self_hostname = "tapline-interop".into();
    cfg.ack_timeout = Duration::from_secs(10);
    cfg.compress = if case == Case::Plain { Compression::None } else { Compression::Gzip };
    cfg.require_ack = case != Case::NoAck;
    if key {
        cfg.shared_key = Some(if case == Case::WrongSharedKey { "not-the-key" } else { KEY }.into());
    }
    if tls {
        cfg.tls = Some(TlsConfig { ca_file: ca, ..Default::default() });
    }
    let mut tx = ForwardTransport::new(cfg, "connection");
    let (items, want) = batch();

    if case == Case::WrongSharedKey {
        let err = tx.send_batch(&items).unwrap_err();
        let SendError::Fatal(msg) = &err else { panic!("{peer:?}: wrong key must be Fatal: {err:?}") };
        assert!(msg.contains(&format!("127.0.0.1:{}", running.port)), "{msg}");
        match peer {
            Peer::Fluentd => assert!(msg.contains("shared_key mismatch"), "{msg}"),
            Peer::FluentBit => assert!(msg.contains("shared key rejected"), "{msg}"),
        }
        println!("{peer:?} wrong shared key: {msg}");
        thread::sleep(Duration::from_millis(1500));
        assert!(read_lines(&running.out).is_empty(), "nothing may land with a wrong key");
        return;
    }

    let (first, second) = items.split_at(2);
    tx.send_batch(first).unwrap_or_else(|e| panic!("{peer:?} {case:?}: {e}"));
    tx.send_batch(second).unwrap_or_else(|e| panic!("{peer:?} {case:?}: {e}"));
    if case == Case::NoAck {
        // Without acks, give the receiver the connection's end before reading.
        tx.disconnect();
    }
    let got = received(peer, &running, want.len());
    assert_eq!(got.len(), want.len(), "{peer:?} {case:?}: got {got:#?}");
    let mut unmatched: Vec<&(String, serde_json::Value)> = want.iter().collect();
    for (tag, rec) in &got {
        let pos = unmatched.iter().position(|(t, w)| t == tag && same(w, rec)).unwrap_or_else(|| {
            panic!("{peer:?} {case:?}: unexpected record under {tag}: {rec}\nwanted one of {unmatched:#?}")
        });
        unmatched.remove(pos);
    }
}

macro_rules! interop {
    ($($name:ident: $peer:expr, $case:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run($peer, $case, stringify!($name));
            }
        )*
    };
}

interop! {
    fluent_bit_plain: Peer::FluentBit, Case::Plain;
    fluent_bit_gzip: Peer::FluentBit, Case::Gzip;
    fluent_bit_no_ack: Peer::FluentBit, Case::NoAck;
    fluent_bit_shared_key: Peer::FluentBit, Case::SharedKey;
    fluent_bit_wrong_shared_key: Peer::FluentBit, Case::WrongSharedKey;
    fluent_bit_tls: Peer::FluentBit, Case::Tls;
    fluent_bit_tls_shared_key: Peer::FluentBit, Case::TlsSharedKey;
    fluentd_plain: Peer::Fluentd, Case::Plain;
    fluentd_gzip: Peer::Fluentd, Case::Gzip;
    fluentd_no_ack: Peer::Fluentd, Case::NoAck;
    fluentd_shared_key: Peer::Fluentd, Case::SharedKey;
    fluentd_wrong_shared_key: Peer::Fluentd, Case::WrongSharedKey;
    fluentd_tls: Peer::Fluentd, Case::Tls;
    fluentd_tls_shared_key: Peer::Fluentd, Case::TlsSharedKey;
}
