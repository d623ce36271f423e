//! Userspace pipeline throughput, without the kernel: ring-buffer records, encoded in the
//! kernel's layout ([`Record::encode`]), are replayed through what the agent runs for each record
//! it reads (`Record::decode` → [`Pipeline::handle`]: connection tracking, protocol detection,
//! HTTP/1 or HTTP/2 parsing, transactions, `http_capture`) into real stores: NDJSON events
//! (serialized, written to a counting sink) and S3 gzip batches of `HttpTransaction` objects
//! (compressed and sealed; the upload is a counting sink).
//!
//! ```sh
//! cargo bench -p tapline --bench pipeline                        # full run, prints tx/s
//! TAPLINE_BENCH_QUICK=1 cargo bench -p tapline --bench pipeline  # ~3 s; exits 1 below half the floor
//! ```
//!
//! Pin it to one core (`taskset -c 0`) for per-core figures.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tapline::clock::Clock;
use tapline::config::{CaptureLevel, TapDirection};
use tapline::pipeline::{Pipeline, Settings};
use tapline::process::ProcessTable;
use tapline_ebpf::{DataSource, Direction, Record, Role};
use tapline_output::event::{EventStore, StdoutEventStore};
use tapline_output::metrics::Metrics;
use tapline_output::object::{Location, ObjectStore, StoreError, StoredObject};
use tapline_output::s3::{S3Config, S3ObjectStore};

/// Floors in transactions/s, one core, release build: what this benchmark measured on the
/// project's CI kind of machine (2-core shared VM, kernel 6.18, `taskset -c 0`) on 2026-11-25,
/// rounded down (docs/benchmarks.md). Quick mode fails below half of a floor, so only a large
/// regression trips it, not the noise of a shared machine.
const FLOORS: [(&str, f64); 3] =
    [("http1-summary", 70_000.0), ("http1-full-1k", 32_000.0), ("http2-summary", 70_000.0)];

/// Transactions per connection (keep-alive; HTTP/2: streams on one connection).
const HTTP1_TX_PER_CONN: usize = 10;
const HTTP2_TX_PER_CONN: usize = 100;
const PID: u32 = 4242;

/// A writer that counts lines and bytes and keeps nothing.
#[derive(Clone, Default)]
struct Counter {
    lines: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.lines.fetch_add(b.iter().filter(|&&c| c == b'\n').count() as u64, Ordering::Relaxed);
        self.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Builds the kernel records of a workload.
struct Recorder {
    out: Vec<Vec<u8>>,
    ts: u64,
}

impl Recorder {
    fn new() -> Self {
        Recorder { out: Vec::new(), ts: 1_000_000 }
    }

    fn push(&mut self, r: Record<'_>) {
        self.out.push(r.encode());
        self.ts += 20_000;
    }

    fn open(&mut self, sock: u64, port: u16, remote: SocketAddr) {
        let local: SocketAddr = SocketAddr::new([10, 0, 0, 1].into(), port);
        let comm = *b"curl\0\0\0\0\0\0\0\0\0\0\0\0";
        let r = Record::Open {
            ts_ns: self.ts,
            pid: PID,
            tid: PID,
            fd: 5,
            sock,
            role: Role::Client,
            local,
            remote,
            uid: 1000,
            gid: 1000,
            cgroup_id: 1,
            comm,
        };
        self.push(r);
    }

    /// One write or read of `bytes`, split into records of at most 32 KiB as the kernel does.
    fn data(&mut self, sock: u64, dir: Direction, pos: &mut u64, bytes: &[u8]) {
        for chunk in bytes.chunks(32 * 1024) {
            let ts_ns = self.ts;
            let r = Record::Data {
                ts_ns,
                pid: PID,
                tid: PID,
                fd: 5,
                sock,
                dir,
                source: DataSource::Syscall,
                pos: *pos,
                bytes: chunk,
            };
            self.push(r);
            *pos += chunk.len() as u64;
        }
    }

    fn close(&mut self, sock: u64, sent: u64, received: u64) {
        let r = Record::Close { ts_ns: self.ts, pid: PID, fd: 5, sock, bytes_sent: sent, bytes_received: received };
        self.push(r);
    }
}

/// A JSON body of exactly `len` bytes, different for every `i`: an array of small records, as an
/// API answers (gzip compresses it about as well as real JSON).
fn json_body(i: usize, len: usize) -> Vec<u8> {
    let mut s = String::from("[");
    let mut k = 0;
    while s.len() < len {
        let id = i * 31 + k;
        s.push_str(&format!(
            "{{\"id\":{id},\"name\":\"item-{id}\",\"price\":{}.{:02},\"stock\":{},\"tags\":[\"t{}\",\"t{}\"]}},",
            id % 997,
            id % 100,
            (id * 7) % 1000,
            id % 13,
            id % 7
        ));
        k += 1;
    }
    s.truncate(len.saturating_sub(1));
    if len > 0 {
        s.push(']');
    }
    s.into_bytes()
}

/// `tx` HTTP/1.1 transactions on keep-alive connections; `body` > 0: a POST with a `body`-byte
/// JSON request and a `body`-byte JSON response, else a GET answered by a 60-byte JSON.
fn http1(tx: usize, body: usize) -> (Vec<Vec<u8>>, usize) {
    let mut r = Recorder::new();
    let remote: SocketAddr = "93.184.215.14:80".parse().expect("address");
    let conns = tx.div_ceil(HTTP1_TX_PER_CONN);
    for c in 0..conns {
        let sock = 0xffff_0000_0000 + c as u64;
        r.open(sock, 30_000 + (c % 30_000) as u16, remote);
        let (mut out, mut inp) = (0u64, 0u64);
        for t in 0..HTTP1_TX_PER_CONN.min(tx - c * HTTP1_TX_PER_CONN) {
            let i = c * HTTP1_TX_PER_CONN + t;
            let mut req = if body > 0 {
                format!(
                    "POST /api/v1/items/{i} HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: curl/8.5.0\r\n\
                     Accept: */*\r\nContent-Type: application/json\r\nContent-Length: {body}\r\n\r\n"
                )
                .into_bytes()
            } else {
                format!("GET /api/v1/items/{i} HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n")
                    .into_bytes()
            };
            req.extend_from_slice(&json_body(i, body));
            let res_body = json_body(i + 1, if body > 0 { body } else { 60 });
            let mut res = format!(
                "HTTP/1.1 200 OK\r\nDate: Wed, 25 Nov 2026 20:00:00 GMT\r\nServer: nginx/1.27.0\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
                res_body.len()
            )
            .into_bytes();
            res.extend_from_slice(&res_body);
            r.data(sock, Direction::Egress, &mut out, &req);
            r.data(sock, Direction::Ingress, &mut inp, &res);
        }
        r.close(sock, out, inp);
    }
    (r.out, conns)
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// `tx` HTTP/2 (prior knowledge, cleartext) GETs, `HTTP2_TX_PER_CONN` streams per connection,
/// one HPACK encoder per direction as a real client and server have.
fn http2(tx: usize) -> (Vec<Vec<u8>>, usize) {
    const HEADERS: u8 = 1;
    const DATA: u8 = 0;
    const SETTINGS: u8 = 4;
    const END_STREAM: u8 = 1;
    const END_HEADERS: u8 = 4;
    let mut r = Recorder::new();
    let remote: SocketAddr = "93.184.215.14:80".parse().expect("address");
    let conns = tx.div_ceil(HTTP2_TX_PER_CONN);
    for c in 0..conns {
        let sock = 0xeeee_0000_0000 + c as u64;
        r.open(sock, 30_000 + (c % 30_000) as u16, remote);
        let (mut out, mut inp) = (0u64, 0u64);
        let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        preface.extend(h2_frame(SETTINGS, 0, 0, &[]));
        r.data(sock, Direction::Egress, &mut out, &preface);
        r.data(sock, Direction::Ingress, &mut inp, &h2_frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        let (mut cenc, mut senc) = (loona_hpack::Encoder::new(), loona_hpack::Encoder::new());
        for t in 0..HTTP2_TX_PER_CONN.min(tx - c * HTTP2_TX_PER_CONN) {
            let i = c * HTTP2_TX_PER_CONN + t;
            let stream = 1 + 2 * t as u32;
            let path = format!("/api/v1/items/{i}");
            let req: [(&[u8], &[u8]); 6] = [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"api.example.com"),
                (b":path", path.as_bytes()),
                (b"user-agent", b"grpc-go/1.60.0"),
                (b"accept", b"application/json"),
            ];
            let block = cenc.encode(req.iter().copied());
            r.data(sock, Direction::Egress, &mut out, &h2_frame(HEADERS, END_STREAM | END_HEADERS, stream, &block));
            let body = json_body(i, 60);
            let len = body.len().to_string();
            let res: [(&[u8], &[u8]); 4] = [
                (b":status", b"200"),
                (b"content-type", b"application/json"),
                (b"content-length", len.as_bytes()),
                (b"server", b"nginx/1.27.0"),
            ];
            let block = senc.encode(res.iter().copied());
            let mut bytes = h2_frame(HEADERS, END_HEADERS, stream, &block);
            bytes.extend(h2_frame(DATA, END_STREAM, stream, &body));
            r.data(sock, Direction::Ingress, &mut inp, &bytes);
        }
        r.close(sock, out, inp);
    }
    (r.out, conns)
}

fn settings(level: CaptureLevel) -> Settings {
    let stack = tapline::config::StackPlan { name: "bench".into(), level, ..tapline::config::StackPlan::none() };
    Settings {
        stacks: tapline::config::Stacks { default: std::sync::Arc::new(stack), endpoints: Default::default() },
        body_cap: 2 << 20,
        direction: TapDirection::All,
        ignore_loopback: false,
        audit_include_dns: false,
        report_interval: Duration::from_secs(30),
        hostname: "bench-host".into(),
        local_ip: Some([10, 0, 0, 1].into()),
        agent_instance: "bench".into(),
        max_connections: 65_536,
        redactor: None,
        hash_key: None,
        filter: Default::default(),
        deployment_tags: Vec::new(),
        tag_sources: Vec::new(),
    }
}

/// An object store that takes objects (already serialized and digested by the pipeline) and
/// keeps nothing: the pipeline's cost without gzip batching, for comparison.
struct Discard;

impl ObjectStore for Discard {
    fn name(&self) -> &str {
        "discard"
    }
    fn put(&self, object: StoredObject) -> Result<Location, StoreError> {
        Ok(Location { url: format!("discard://{}", object.digest) })
    }
    fn get(&self, _digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    fn flush(&self) {}
    fn shutdown(&self, _timeout: Duration) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What one replay produced.
struct Run {
    tx_per_s: f64,
    event_lines: u64,
    event_bytes: u64,
    upload_bytes: u64,
}

/// Replays `records` once through a fresh pipeline and stores; times the replay only.
fn replay(records: &[Vec<u8>], tx: usize, level: CaptureLevel, s3: bool) -> Run {
    let metrics = Metrics::new();
    let proc_root = tempfile::tempdir().expect("tempdir");
    let index_dir = tempfile::tempdir().expect("tempdir");
    let events = Counter::default();
    let uploaded = Arc::new(AtomicU64::new(0));
    let event_store =
        Arc::new(StdoutEventStore::with_writer(events.clone(), metrics.component("event_store", "stdout")));
    let up = uploaded.clone();
    let object_store: Arc<dyn ObjectStore> = if s3 {
        Arc::new(
            S3ObjectStore::new(
                S3Config::new("bench"),
                index_dir.path(),
                metrics.component("object_store", "s3"),
                Box::new(move |b| {
                    up.fetch_add(b.len() as u64, Ordering::Relaxed);
                }),
            )
            .expect("S3 store"),
        )
    } else {
        Arc::new(Discard)
    };
    let mut p = Pipeline::new(
        settings(level),
        Clock::with_boot(SystemTime::now()),
        ProcessTable::new(proc_root.path().to_path_buf()),
        vec![event_store.clone() as Arc<dyn EventStore>],
        object_store.clone(),
        &metrics,
    );
    let t0 = Instant::now();
    for (i, raw) in records.iter().enumerate() {
        match Record::decode(raw) {
            Ok(r) => p.handle(r),
            Err(e) => panic!("record {i} does not decode: {e}"),
        }
        // The agent flushes its event stores after each ring-buffer wakeup.
        if i % 256 == 255 {
            event_store.flush();
        }
    }
    p.finish_all(SystemTime::now());
    event_store.flush();
    object_store.flush();
    let dt = t0.elapsed();
    Run {
        tx_per_s: tx as f64 / dt.as_secs_f64(),
        event_lines: events.lines.load(Ordering::Relaxed),
        event_bytes: events.bytes.load(Ordering::Relaxed),
        upload_bytes: uploaded.load(Ordering::Relaxed),
    }
}

struct Scenario {
    name: &'static str,
    level: CaptureLevel,
    build: fn(usize) -> (Vec<Vec<u8>>, usize),
}

fn main() {
    let quick = std::env::var_os("TAPLINE_BENCH_QUICK").is_some_and(|v| v != "0");
    let scenarios = [
        Scenario { name: "http1-summary", level: CaptureLevel::Summary, build: |n| http1(n, 0) },
        Scenario { name: "http1-full-1k", level: CaptureLevel::Full, build: |n| http1(n, 1024) },
        Scenario { name: "http2-summary", level: CaptureLevel::Summary, build: http2 },
    ];
    let (tx, rounds) = if quick { (20_000, 1) } else { (100_000, 3) };
    let mut failed = false;
    // `TAPLINE_BENCH_ONLY=http1-summary`: one scenario (for a profiler).
    let only = std::env::var("TAPLINE_BENCH_ONLY").ok();
    for s in scenarios.iter().filter(|s| only.as_deref().is_none_or(|o| o == s.name)) {
        let (records, conns) = (s.build)(tx);
        let bytes: usize = records.iter().map(Vec::len).sum();
        let mut best: Option<Run> = None;
        for _ in 0..rounds {
            let run = replay(&records, tx, s.level, true);
            // Every transaction gives one artifact_record, every connection one connection event.
            assert_eq!(run.event_lines, (tx + conns) as u64, "{}: events written", s.name);
            assert!(run.upload_bytes > 0, "{}: nothing was batched", s.name);
            if best.as_ref().is_none_or(|b| run.tx_per_s > b.tx_per_s) {
                best = Some(run);
            }
        }
        let Some(b) = best else { continue };
        let without_gzip = if quick {
            String::new()
        } else {
            let best = (0..rounds).map(|_| replay(&records, tx, s.level, false).tx_per_s).fold(0.0, f64::max);
            format!("; without the S3 gzip batching {best:.0} tx/s")
        };
        let floor = FLOORS.iter().find(|(n, _)| *n == s.name).map(|(_, f)| *f).unwrap_or(0.0);
        let verdict = if quick && b.tx_per_s < floor / 2.0 {
            failed = true;
            format!("  BELOW half the floor of {floor:.0}")
        } else {
            String::new()
        };
        println!(
            "{:<14} {:>9.0} tx/s  ({tx} tx, {} records, {:.1} MB in; events {:.1} MB, gzip batches {:.1} MB{without_gzip}){verdict}",
            s.name,
            b.tx_per_s,
            records.len(),
            bytes as f64 / 1e6,
            b.event_bytes as f64 / 1e6,
            b.upload_bytes as f64 / 1e6,
        );
    }
    if failed {
        std::process::exit(1);
    }
}
