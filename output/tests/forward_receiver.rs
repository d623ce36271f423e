//! Protocol-level tests of the Forward client against an in-process Forward receiver that decodes every mode and can
//! ack, NACK, ack late, ack the wrong chunk, close mid-message, require a shared key and serve TLS.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rmpv::Value;
use sha2::{Digest, Sha512};
use tapline_output::event::{Event, envelope_line};
use tapline_output::forward::{Compression, ForwardConfig, ForwardTransport, SendError, TlsConfig, event_item, item};
use tapline_output::metrics::ComponentMetrics;
use tapline_output::model::Issue;

/// What the receiver does with each message that asks for an ack.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Behavior {
    Ack,
    /// `{}` (Vector's answer when a sink rejects).
    Nack,
    /// Ack after this long.
    SlowAck(Duration),
    /// `{"ack": "<another chunk>"}`.
    WrongChunk,
    /// Read a few bytes of the message, then close the connection.
    CloseMidMessage,
    /// Ack the next n messages, then NACK.
    AckThenNack(usize),
    /// Ack, then close the connection.
    AckThenClose,
}

/// How a shared-key receiver answers a wrong digest.
#[derive(Clone, Copy, Debug, PartialEq)]
enum KeyStyle {
    /// fluentd: `["PONG", false, "shared_key mismatch", "", ""]`.
    Fluentd,
    /// Fluent Bit: closes without a PONG (and sends its nonce as a non-UTF-8 str).
    FluentBit,
}

#[derive(Clone, Debug, PartialEq)]
struct Record {
    tag: String,
    time: (u32, u32),
    record: serde_json::Value,
}

#[derive(Clone, Debug)]
struct Frame {
    len: usize,
    mode: &'static str,
    entries: usize,
    options: Vec<(String, Value)>,
}

#[derive(Default)]
struct State {
    records: Mutex<Vec<Record>>,
    frames: Mutex<Vec<Frame>>,
    connections: AtomicUsize,
    acked: AtomicUsize,
}

struct Receiver {
    port: u16,
    state: Arc<State>,
    behavior: Arc<Mutex<Behavior>>,
}

#[derive(Clone)]
struct ReceiverOpts {
    behavior: Behavior,
    shared_key: Option<(String, KeyStyle)>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ReceiverOpts {
    fn default() -> Self {
        ReceiverOpts { behavior: Behavior::Ack, shared_key: None, tls: None }
    }
}

impl Receiver {
    fn start(opts: ReceiverOpts) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let behavior = Arc::new(Mutex::new(opts.behavior));
        let (st, bh) = (state.clone(), behavior.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(tcp) = conn else { continue };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let (st, bh, opts) = (st.clone(), bh.clone(), opts.clone());
                thread::spawn(move || match opts.tls.clone() {
                    Some(cfg) => {
                        let conn = rustls::ServerConnection::new(cfg).unwrap();
                        serve(rustls::StreamOwned::new(conn, tcp), &st, &bh, &opts)
                    }
                    None => serve(tcp, &st, &bh, &opts),
                });
            }
        });
        Receiver { port, state, behavior }
    }

    fn set(&self, b: Behavior) {
        *self.behavior.lock().unwrap() = b;
    }

    fn records(&self) -> Vec<Record> {
        self.state.records.lock().unwrap().clone()
    }

    fn frames(&self) -> Vec<Frame> {
        self.state.frames.lock().unwrap().clone()
    }

    fn config(&self) -> ForwardConfig {
        let mut c = ForwardConfig::new("127.0.0.1", self.port);
        c.ack_timeout = Duration::from_secs(5);
        c.self_hostname = "tapline-test".into();
        c
    }

    /// Waits until `n` records arrived (records are stored before the ack, so this is for no-ack tests).
    fn wait_records(&self, n: usize) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.records().len() < n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        self.records()
    }
}

fn sha512_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

fn write_value<W: Write>(w: &mut W, v: &Value) {
    rmpv::encode::write_value(w, v).unwrap();
    w.flush().unwrap();
}

fn s(v: &str) -> Value {
    Value::from(v)
}

fn bytes_of(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Binary(b) => b.clone(),
        other => panic!("not str/bin: {other:?}"),
    }
}

fn map_get<'a>(m: &'a [(Value, Value)], k: &str) -> Option<&'a Value> {
    m.iter().find(|(key, _)| key.as_str() == Some(k)).map(|(_, v)| v)
}

/// One connection: optional handshake, then messages until EOF.
fn serve<S: Read + Write>(stream: S, st: &State, bh: &Mutex<Behavior>, opts: &ReceiverOpts) {
    let mut r = BufReader::new(stream);
    if let Some((key, style)) = &opts.shared_key {
        let nonce: Vec<u8> = vec![0xff, 0x00, 0xc3, 0x28, 0x80, 0x41, 0x7f, 0xfe];
        // ["HELO", {"nonce": …, "auth": "", "keepalive": true}]; Fluent Bit puts its raw nonce bytes in a str.
        let mut helo = vec![0x92];
        rmp::encode::write_str(&mut helo, "HELO").unwrap();
        helo.push(0x83);
        rmp::encode::write_str(&mut helo, "nonce").unwrap();
        match style {
            KeyStyle::FluentBit => rmp::encode::write_str_len(&mut helo, nonce.len() as u32).unwrap(),
            KeyStyle::Fluentd => rmp::encode::write_bin_len(&mut helo, nonce.len() as u32).unwrap(),
        };
        helo.extend_from_slice(&nonce);
        rmp::encode::write_str(&mut helo, "auth").unwrap();
        rmp::encode::write_str(&mut helo, "").unwrap();
        rmp::encode::write_str(&mut helo, "keepalive").unwrap();
        rmp::encode::write_bool(&mut helo, true).unwrap();
        r.get_mut().write_all(&helo).unwrap();
        r.get_mut().flush().unwrap();
        let Ok(ping) = rmpv::decode::read_value(&mut r) else { return };
        let Value::Array(p) = ping else { panic!("PING not an array") };
        assert_eq!(p.len(), 6);
        for f in &p {
            assert!(matches!(f, Value::String(_)), "every PING field must be a str: {f:?}");
        }
        assert_eq!(p[0].as_str(), Some("PING"));
        let (host, salt, digest) = (bytes_of(&p[1]), bytes_of(&p[2]), bytes_of(&p[3]));
        let want = sha512_hex(&[&salt, &host, &nonce, key.as_bytes()]);
        if digest != want.as_bytes() {
            match style {
                KeyStyle::FluentBit => return,
                KeyStyle::Fluentd => {
                    let pong = Value::Array(vec![s("PONG"), false.into(), s("shared_key mismatch"), s(""), s("")]);
                    write_value(r.get_mut(), &pong);
                    return;
                }
            }
        }
        let server = "test-receiver";
        let d = sha512_hex(&[&salt, server.as_bytes(), &nonce, key.as_bytes()]);
        write_value(r.get_mut(), &Value::Array(vec![s("PONG"), true.into(), s(""), s(server), s(&d)]));
    }
    loop {
        let behavior = *bh.lock().unwrap();
        if behavior == Behavior::CloseMidMessage {
            let mut few = [0u8; 8];
            let _ = r.read_exact(&mut few);
            // Never accept a message over this connection; the next one behaves as told then.
            *bh.lock().unwrap() = Behavior::Ack;
            return;
        }
        let msg = match rmpv::decode::read_value(&mut r) {
            Ok(v) => v,
            Err(_) => return,
        };
        let behavior = *bh.lock().unwrap();
        let chunk = decode_message(&msg, st);
        let Some(chunk) = chunk else { continue };
        let reply = |v: Value, r: &mut BufReader<S>| write_value(r.get_mut(), &v);
        let ack = Value::Map(vec![(s("ack"), s(&chunk))]);
        match behavior {
            Behavior::Ack | Behavior::CloseMidMessage => reply(ack, &mut r),
            Behavior::Nack => reply(Value::Map(vec![]), &mut r),
            Behavior::SlowAck(d) => {
                thread::sleep(d);
                reply(ack, &mut r)
            }
            Behavior::WrongChunk => reply(Value::Map(vec![(s("ack"), s("AAAAAAAAAAAAAAAAAAAAAA=="))]), &mut r),
            Behavior::AckThenNack(n) => {
                if st.acked.load(Ordering::SeqCst) < n {
                    reply(ack, &mut r)
                } else {
                    reply(Value::Map(vec![]), &mut r)
                }
            }
            Behavior::AckThenClose => {
                reply(ack, &mut r);
                st.acked.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        if !matches!(behavior, Behavior::Nack | Behavior::WrongChunk) {
            st.acked.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Boolean(b) => (*b).into(),
        Value::Integer(i) => {
            if let Some(x) = i.as_i64() {
                x.into()
            } else {
                i.as_u64().unwrap().into()
            }
        }
        Value::F32(f) => serde_json::Value::from(f64::from(*f)),
        Value::F64(f) => serde_json::Value::from(*f),
        Value::String(s) => s.as_str().expect("utf-8 record string").into(),
        Value::Array(a) => a.iter().map(to_json).collect(),
        Value::Map(m) => serde_json::Value::Object(
            m.iter().map(|(k, v)| (k.as_str().expect("str key").to_string(), to_json(v))).collect(),
        ),
        other => panic!("unexpected value in a record: {other:?}"),
    }
}

fn time_of(v: &Value) -> (u32, u32) {
    match v {
        Value::Ext(0, b) if b.len() == 8 => {
            (u32::from_be_bytes([b[0], b[1], b[2], b[3]]), u32::from_be_bytes([b[4], b[5], b[6], b[7]]))
        }
        Value::Integer(i) => (i.as_u64().unwrap() as u32, 0),
        other => panic!("bad time {other:?}"),
    }
}

fn entry(tag: &str, e: &Value) -> Record {
    let Value::Array(a) = e else { panic!("entry not an array: {e:?}") };
    assert_eq!(a.len(), 2, "entry must be [time, record]");
    Record { tag: tag.into(), time: time_of(&a[0]), record: to_json(&a[1]) }
}

/// Decodes any Forward mode, stores its records and frame, returns the chunk to ack.
fn decode_message(msg: &Value, st: &State) -> Option<String> {
    let Value::Array(a) = msg else { panic!("message not an array: {msg:?}") };
    let tag = a[0].as_str().expect("tag str").to_string();
    let len = {
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, msg).unwrap();
        b.len()
    };
    let (mode, records, opts) = match &a[1] {
        Value::Array(entries) => ("forward", entries.iter().map(|e| entry(&tag, e)).collect::<Vec<_>>(), a.get(2)),
        Value::Binary(_) | Value::String(_) => {
            let payload = bytes_of(&a[1]);
            let opts = a.get(2);
            let gz = opts.and_then(|o| o.as_map()).and_then(|m| map_get(m, "compressed")).and_then(|c| c.as_str())
                == Some("gzip");
            let raw = if gz {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(&payload[..]).read_to_end(&mut out).unwrap();
                out
            } else {
                payload
            };
            let mut cur = &raw[..];
            let mut recs = Vec::new();
            while !cur.is_empty() {
                recs.push(entry(&tag, &rmpv::decode::read_value(&mut cur).unwrap()));
            }
            (if gz { "compressed" } else { "packed" }, recs, opts)
        }
        _ => {
            let r = Record { tag: tag.clone(), time: time_of(&a[1]), record: to_json(&a[2]) };
            ("message", vec![r], a.get(3))
        }
    };
    let options: Vec<(String, Value)> = opts
        .and_then(|o| o.as_map())
        .map(|m| m.iter().map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone())).collect())
        .unwrap_or_default();
    if let Some((_, size)) = options.iter().find(|(k, _)| k == "size") {
        assert_eq!(size.as_u64(), Some(records.len() as u64), "size option must count the entries");
    }
    let chunk = options.iter().find(|(k, _)| k == "chunk").map(|(_, v)| {
        assert!(matches!(v, Value::String(_)), "chunk must be a str");
        v.as_str().unwrap().to_string()
    });
    st.frames.lock().unwrap().push(Frame { len, mode, entries: records.len(), options });
    st.records.lock().unwrap().extend(records);
    chunk
}

fn issue(i: usize) -> Event {
    Event::Issue(Issue {
        connection_id: format!("conn-{i}"),
        endpoint_id: "api.example.com".into(),
        request_id: format!("req-{i}"),
        timestamp: "2025-01-01T00:00:00.000000000Z".into(),
        error: "Server Errors".into(),
        trigger_conditions: vec!["detect_errors:status".into()],
        trigger_reasons: vec!["500".into()],
        ..Default::default()
    })
}

/// A synthetic envelope line of about `size` bytes.
fn envelope(i: usize, size: usize) -> Vec<u8> {
    let pad = "x".repeat(size.saturating_sub(150));
    format!(
        "{{\"level\":\"qpoint\",\"ts\":1761238061.5,\"message\":\"event store submission\",\
         \"type\":\"*eventstore.Connection\",\"event\":\"connection\",\"item\":{{\"i\":{i},\"pad\":\"{pad}\"}}}}\n"
    )
    .into_bytes()
}

fn json(line: &[u8]) -> serde_json::Value {
    serde_json::from_slice(line).unwrap()
}

#[test]
fn records_are_the_envelopes_with_their_tags_gzip_and_ack() {
    let rx = Receiver::start(ReceiverOpts::default());
    let m = ComponentMetrics::detached("event_store", "forward");
    let mut tx = ForwardTransport::new(rx.config(), "connection").with_metrics(m.clone());
    let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_761_238_061_250);
    let events: Vec<Event> = (0..3).map(issue).collect();
    let items: Vec<Vec<u8>> = events.iter().map(|e| event_item(e, now)).collect();
    tx.send_batch(&items).unwrap();
    assert_eq!(tx.acked_items(), 3);
    let recs = rx.records();
    assert_eq!(recs.len(), 3);
    for (r, e) in recs.iter().zip(&events) {
        assert_eq!(r.tag, "tapline.issue");
        assert_eq!(r.record, json(&envelope_line(e, now)));
        assert_eq!(r.time, (1_761_238_061, 250_000_000), "entry time is the envelope ts");
    }
    let frames = rx.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].mode, "compressed");
    let keys: Vec<&str> = frames[0].options.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["size", "chunk", "compressed"]);
    assert_eq!(rx.state.connections.load(Ordering::SeqCst), 1);
    // The connection is reused.
    tx.send_batch(&items).unwrap();
    assert_eq!(rx.state.connections.load(Ordering::SeqCst), 1);
    assert_eq!(m.sent_count(), 0, "sent counts are the delivery layer's");
}

#[test]
fn plain_packed_forward_and_tag_grouping() {
    let rx = Receiver::start(ReceiverOpts::default());
    let mut cfg = rx.config();
    cfg.compress = Compression::None;
    cfg.tag_prefix = "k8s.tapline".into();
    let mut tx = ForwardTransport::new(cfg, "connection");
    let items = vec![
        item("connection", &envelope(0, 300)),
        item("connection", &envelope(1, 300)),
        item("issue", &envelope(2, 300)),
        envelope(3, 300), // no tag: the default
        item("connection", &envelope(4, 300)),
    ];
    tx.send_batch(&items).unwrap();
    let frames = rx.frames();
    assert_eq!(
        frames.iter().map(|f| (f.mode, f.entries)).collect::<Vec<_>>(),
        [("packed", 2), ("packed", 1), ("packed", 2)]
    );
    let recs = rx.records();
    let tags: Vec<&str> = recs.iter().map(|r| r.tag.as_str()).collect();
    assert_eq!(
        tags,
        [
            "k8s.tapline.connection",
            "k8s.tapline.connection",
            "k8s.tapline.issue",
            "k8s.tapline.connection",
            "k8s.tapline.connection"
        ]
    );
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.record, json(&envelope(i, 300)));
    }
}

#[test]
fn nack_then_retry_succeeds() {
    let rx = Receiver::start(ReceiverOpts { behavior: Behavior::Nack, ..Default::default() });
    let mut tx = ForwardTransport::new(rx.config(), "connection");
    let items = vec![item("connection", &envelope(0, 200))];
    let err = tx.send_batch(&items).unwrap_err();
    assert!(matches!(&err, SendError::Retry(m) if m.contains("nack")), "{err:?}");
    assert_eq!(tx.acked_items(), 0);
    rx.set(Behavior::Ack);
    tx.send_batch(&items).unwrap();
    assert_eq!(rx.records().len(), 2, "the NACKed message was received, then sent again");
    assert_eq!(rx.state.connections.load(Ordering::SeqCst), 1, "a NACK keeps the connection");
}

#[test]
fn wrong_chunk_is_a_nack_and_drops_the_connection() {
    let rx = Receiver::start(ReceiverOpts { behavior: Behavior::WrongChunk, ..Default::default() });
    let mut tx = ForwardTransport::new(rx.config(), "connection");
    let items = vec![item("connection", &envelope(0, 200))];
    let err = tx.send_batch(&items).unwrap_err();
    assert!(matches!(&err, SendError::Retry(m) if m.contains("nack") && m.contains("expected")), "{err:?}");
    assert!(!tx.is_connected());
    rx.set(Behavior::Ack);
    tx.send_batch(&items).unwrap();
    assert_eq!(rx.state.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn slow_ack_under_the_timeout_is_fine() {
    let rx =
        Receiver::start(ReceiverOpts { behavior: Behavior::SlowAck(Duration::from_millis(300)), ..Default::default() });
    let mut cfg = rx.config();
    cfg.ack_timeout = Duration::from_secs(2);
    let mut tx = ForwardTransport::new(cfg, "connection");
    tx.send_batch(&[item("connection", &envelope(0, 200))]).unwrap();
}

#[test]
fn slow_ack_over_the_timeout_retries_on_a_new_connection() {
    let rx = Receiver::start(ReceiverOpts {
        behavior: Behavior::SlowAck(Duration::from_millis(1500)),
        ..Default::default()
    });
    let mut cfg = rx.config();
    cfg.ack_timeout = Duration::from_millis(300);
    let mut tx = ForwardTransport::new(cfg, "connection");
    let items = vec![item("connection", &envelope(0, 200))];
    let t0 = Instant::now();
    let err = tx.send_batch(&items).unwrap_err();
    assert!(t0.elapsed() < Duration::from_millis(1200), "gave up after the ack timeout: {:?}", t0.elapsed());
    assert!(matches!(&err, SendError::Retry(m) if m.contains("no ack within")), "{err:?}");
    assert!(!tx.is_connected());
    rx.set(Behavior::Ack);
    tx.send_batch(&items).unwrap();
    assert_eq!(rx.state.connections.load(Ordering::SeqCst), 2);
    assert_eq!(rx.records().len(), 2, "at least once: the late-acked message was sent again");
}

#[test]
fn disconnect_mid_message_then_success_on_reconnect() {
    let rx = Receiver::start(ReceiverOpts { behavior: Behavior::CloseMidMessage, ..Default::default() });
    let mut tx = ForwardTransport::new(rx.config(), "connection");
    let items: Vec<Vec<u8>> = (0..20).map(|i| item("connection", &envelope(i, 1000))).collect();
    let err = tx.send_batch(&items).unwrap_err();
    assert!(matches!(err, SendError::Retry(_)), "{err:?}");
    tx.send_batch(&items).unwrap();
    assert_eq!(rx.records().len(), 20);
    assert_eq!(rx.state.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn receiver_down_is_retry_and_naming_the_endpoint() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut tx = ForwardTransport::new(ForwardConfig::new("127.0.0.1", port), "connection");
    let err = tx.send_batch(&[item("connection", &envelope(0, 200))]).unwrap_err();
    assert!(matches!(&err, SendError::Retry(m) if m.contains(&format!("127.0.0.1:{port}"))), "{err:?}");
}

#[test]
fn closed_idle_connection_is_noticed() {
    let rx = Receiver::start(ReceiverOpts { behavior: Behavior::AckThenClose, ..Default::default() });
    let mut tx = ForwardTransport::new(rx.config(), "connection");
    let items = vec![item("connection", &envelope(0, 200))];
    tx.send_batch(&items).unwrap();
    thread::sleep(Duration::from_millis(100));
    tx.idle();
    assert!(!tx.is_connected());
    // And a send on a connection closed behind our back reconnects first instead of failing.
    tx.send_batch(&items).unwrap();
    thread::sleep(Duration::from_millis(100));
    tx.send_batch(&items).unwrap();
    assert_eq!(rx.state.connections.load(Ordering::SeqCst), 3);
}

#[test]
fn messages_stay_under_max_message_bytes_and_a_half_failed_batch_resumes() {
    for compress in [Compression::None, Compression::Gzip] {
        let rx = Receiver::start(ReceiverOpts { behavior: Behavior::AckThenNack(3), ..Default::default() });
        let mut cfg = rx.config();
        cfg.max_message_bytes = 16 * 1024;
        cfg.compress = compress;
        let m = ComponentMetrics::detached("event_store", "forward");
        let mut tx = ForwardTransport::new(cfg, "connection").with_metrics(m.clone());
        let mut items: Vec<Vec<u8>> = (0..100).map(|i| item("connection", &envelope(i, 1024))).collect();
        items.insert(50, item("connection", b"not json"));
        items.insert(60, item("connection", &envelope(999, 40_000)));
        let err = tx.send_batch(&items).unwrap_err();
        assert!(matches!(&err, SendError::Retry(m) if m.contains("nack")), "{err:?}");
        let acked = tx.acked_items();
        assert!(acked > 3 && acked < 50, "3 messages acked, covering the first items: {acked}");
        assert_eq!(rx.records().len(), acked + rx.frames()[3].entries, "the 4th message was received, then NACKed");
        rx.set(Behavior::Ack);
        tx.send_batch(&items).unwrap();
        let frames = rx.frames();
        assert!(frames.len() > 6, "{} frames", frames.len());
        for f in &frames {
            assert!(f.len <= 16 * 1024, "frame of {} bytes", f.len);
        }
        let recs = rx.records();
        // The NACKed 4th message was sent twice; everything else exactly once, in order.
        let mut ids: Vec<i64> = recs.iter().map(|r| r.record["item"]["i"].as_i64().unwrap()).collect();
        ids.dedup();
        let want: Vec<i64> = (0..100).collect();
        let nacked = frames[3].entries;
        assert_eq!(recs.len(), 100 + nacked);
        let mut uniq = ids.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq, want);
        assert_eq!(m.discarded_count("invalid_record"), 1, "counted once, not once per attempt");
        assert_eq!(m.discarded_count("too_large"), 1);
    }
}

#[test]
fn no_ack_mode_sends_no_chunk() {
    let rx = Receiver::start(ReceiverOpts::default());
    let mut cfg = rx.config();
    cfg.require_ack = false;
    let mut tx = ForwardTransport::new(cfg, "connection");
    tx.send_batch(&[item("issue", &envelope(0, 200))]).unwrap();
    let recs = rx.wait_records(1);
    assert_eq!(recs.len(), 1);
    assert!(rx.frames()[0].options.iter().all(|(k, _)| k != "chunk"));
}

fn keyed(style: KeyStyle) -> Receiver {
    Receiver::start(ReceiverOpts { shared_key: Some(("s3cr3t".into(), style)), ..Default::default() })
}

#[test]
fn right_shared_key_ok_both_styles() {
    for style in [KeyStyle::Fluentd, KeyStyle::FluentBit] {
        let rx = keyed(style);
        let mut cfg = rx.config();
        cfg.shared_key = Some("s3cr3t".into());
        let mut tx = ForwardTransport::new(cfg, "connection");
        tx.send_batch(&[item("connection", &envelope(0, 200))]).unwrap();
        tx.send_batch(&[item("connection", &envelope(1, 200))]).unwrap();
        assert_eq!(rx.records().len(), 2);
        assert_eq!(rx.state.connections.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn wrong_shared_key_is_fatal_with_a_clear_message() {
    for style in [KeyStyle::Fluentd, KeyStyle::FluentBit] {
        let rx = keyed(style);
        let mut cfg = rx.config();
        cfg.shared_key = Some("wrong".into());
        let m = ComponentMetrics::detached("event_store", "forward");
        let mut tx = ForwardTransport::new(cfg, "connection").with_metrics(m.clone());
        let err = tx.send_batch(&[item("connection", &envelope(0, 200))]).unwrap_err();
        let SendError::Fatal(msg) = &err else { panic!("{style:?}: {err:?}") };
        assert!(msg.contains(&format!("127.0.0.1:{}", rx.port)), "{msg}");
        match style {
            KeyStyle::Fluentd => assert!(msg.contains("shared_key mismatch"), "{msg}"),
            KeyStyle::FluentBit => assert!(msg.contains("shared key rejected"), "{msg}"),
        }
        assert!(rx.records().is_empty());
        assert!(!tx.is_connected());
    }
}

#[test]
fn shared_key_mismatch_between_sides_is_fatal() {
    // A key on our side only: no HELO comes.
    let rx = Receiver::start(ReceiverOpts::default());
    let mut cfg = rx.config();
    cfg.shared_key = Some("k".into());
    cfg.ack_timeout = Duration::from_millis(300);
    let err = ForwardTransport::new(cfg, "c").send_batch(&[item("c", &envelope(0, 200))]).unwrap_err();
    assert!(matches!(&err, SendError::Fatal(m) if m.contains("no HELO")), "{err:?}");
    // A key on the receiver only: its HELO comes where we wait for an ack.
    let rx = keyed(KeyStyle::Fluentd);
    let err = ForwardTransport::new(rx.config(), "c").send_batch(&[item("c", &envelope(0, 200))]).unwrap_err();
    assert!(matches!(&err, SendError::Fatal(m) if m.contains("no shared_key is configured")), "{err:?}");
}

struct Pki {
    dir: tempfile::TempDir,
    server: Arc<rustls::ServerConfig>,
    ca_pem: PathBuf,
}

fn pki() -> Pki {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, ck.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    Pki { dir, server: Arc::new(server), ca_pem }
}

#[test]
fn tls_with_the_right_ca_and_shared_key() {
    let p = pki();
    let rx = Receiver::start(ReceiverOpts {
        tls: Some(p.server.clone()),
        shared_key: Some(("s3cr3t".into(), KeyStyle::FluentBit)),
        ..Default::default()
    });
    for server_name in [None, Some("localhost".to_string())] {
        let mut cfg = rx.config();
        cfg.shared_key = Some("s3cr3t".into());
        cfg.tls = Some(TlsConfig { ca_file: Some(p.ca_pem.clone()), server_name, ..Default::default() });
        let mut tx = ForwardTransport::new(cfg, "connection");
        tx.send_batch(&[item("connection", &envelope(0, 200))]).unwrap();
        tx.send_batch(&[item("connection", &envelope(1, 200))]).unwrap();
    }
    assert_eq!(rx.records().len(), 4);
}

#[test]
fn tls_insecure_skip_verify() {
    let p = pki();
    let rx = Receiver::start(ReceiverOpts { tls: Some(p.server.clone()), ..Default::default() });
    let mut cfg = rx.config();
    cfg.tls = Some(TlsConfig { insecure_skip_verify: true, ..Default::default() });
    ForwardTransport::new(cfg, "connection").send_batch(&[item("connection", &envelope(0, 200))]).unwrap();
    assert_eq!(rx.records().len(), 1);
}

#[test]
fn tls_with_an_unknown_ca_names_the_problem() {
    let p = pki();
    let other = pki();
    let rx = Receiver::start(ReceiverOpts { tls: Some(p.server.clone()), ..Default::default() });
    for ca_file in [Some(other.ca_pem.clone()), None] {
        let mut cfg = rx.config();
        cfg.tls = Some(TlsConfig { ca_file, ..Default::default() });
        let err = ForwardTransport::new(cfg, "connection").send_batch(&[item("c", &envelope(0, 200))]).unwrap_err();
        let SendError::Fatal(msg) = &err else { panic!("{err:?}") };
        assert!(msg.contains("unknown CA") && msg.contains("ca_file"), "{msg}");
        assert!(msg.contains(&format!("127.0.0.1:{}", rx.port)), "{msg}");
    }
    // A wrong name, a missing CA file, and a plain-text receiver.
    let mut cfg = rx.config();
    cfg.tls = Some(TlsConfig {
        ca_file: Some(p.ca_pem.clone()),
        server_name: Some("elsewhere.example".into()),
        ..Default::default()
    });
    let err = ForwardTransport::new(cfg, "c").send_batch(&[item("c", &envelope(0, 200))]).unwrap_err();
    assert!(matches!(&err, SendError::Fatal(m) if m.contains("server_name")), "{err:?}");
    let mut cfg = rx.config();
    cfg.tls = Some(TlsConfig { ca_file: Some(p.dir.path().join("missing.pem")), ..Default::default() });
    let err = ForwardTransport::new(cfg, "c").send_batch(&[item("c", &envelope(0, 200))]).unwrap_err();
    assert!(matches!(&err, SendError::Fatal(m) if m.contains("missing.pem")), "{err:?}");
    let plain = Receiver::start(ReceiverOpts::default());
    let mut cfg = plain.config();
    cfg.ack_timeout = Duration::from_millis(500);
    cfg.tls = Some(TlsConfig { insecure_skip_verify: true, ..Default::default() });
    let err = ForwardTransport::new(cfg, "c").send_batch(&[item("c", &envelope(0, 200))]).unwrap_err();
    assert!(matches!(&err, SendError::Retry(_) | SendError::Fatal(_)), "{err:?}");
    assert!(plain.records().is_empty());
}

/// A raw check that nothing but msgpack goes out before the handshake completes.
#[test]
fn ping_fields_are_str_and_client_waits_for_helo() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        let (mut c, _): (TcpStream, _) = l.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut b = [0u8; 1];
        // Nothing before HELO.
        assert!(c.read(&mut b).is_err());
        c
    });
    let mut cfg = ForwardConfig::new("127.0.0.1", port);
    cfg.shared_key = Some("k".into());
    cfg.ack_timeout = Duration::from_millis(500);
    let err = ForwardTransport::new(cfg, "c").send_batch(&[item("c", &envelope(0, 200))]).unwrap_err();
    assert!(matches!(&err, SendError::Fatal(m) if m.contains("no HELO")), "{err:?}");
    drop(h.join().unwrap());
}
