//! The JSON is the contract: golden strings per type, omissions, round trips, and the
//! spec's checker (`../shared/spec/check-events.py`) run on events and objects written by
//! the real stores.

use std::time::Duration;

use tapline_output::event::{Event, EventStore, StdoutEventStore};
use tapline_output::metrics::ComponentMetrics;
use tapline_output::model::*;
use tapline_output::object::{LocalObjectStore, ObjectStore, StoredObject};

fn connection() -> Connection {
    let mut tags = Tags::default();
    tags.add("bin", "curl");
    tags.add("host", "qpoint");
    tags.add("ip", "192.168.3.218");
    tags.add("protocol", "http2");
    tags.add("strategy", "observe");
    tags.add("bin", "curl");
    Connection {
        meta: ConnectionMeta {
            connection_id: "d3tsmvg7p3qggmf8pdi0".into(),
            endpoint_id: "httpbin.org".into(),
            tls_probe_types_detected: vec!["openssl".into()],
            tls_probe_introspected: true,
        },
        tags,
        finalized: true,
        direction: Direction::EgressExternal,
        part: 2,
        socket_protocol: "tcp".into(),
        l7_protocol: L7Protocol::Http2,
        tls_version: Some(772),
        system: System { hostname: "qpoint".into(), agent: "tapline".into(), agent_instance: "i".into() },
        source: Endpoint {
            address: "192.168.3.218:51000".parse::<std::net::SocketAddr>().map(NetAddr::from).unwrap_or_default(),
            hostname: Some("qpoint".into()),
            exe: Some("/usr/bin/curl".into()),
            user: Some("root".into()),
            user_id: Some(0),
            container: Some(Container { id: "abc".into(), name: Some("web".into()), image: None, pod: None }),
        },
        destination: Endpoint {
            address: "[2001:db8::1]:443".parse::<std::net::SocketAddr>().map(NetAddr::from).unwrap_or_default(),
            ..Default::default()
        },
        bytes_received: Some(395),
        bytes_sent: Some(41),
        labels: vec![],
        timestamp: "2025-10-24T18:54:54.510499628Z".into(),
        created_at: Some("2025-10-24T18:54:54.000000000Z".into()),
        closed_at: Some("2025-10-24T18:54:54.510499628Z".into()),
    }
}

#[test]
fn connection_golden() {
    let json = serde_json::to_string(&connection()).expect("json");
    assert_eq!(
        json,
        r#"{"meta":{"connectionId":"d3tsmvg7p3qggmf8pdi0","endpointId":"httpbin.org","tlsProbeTypesDetected":["openssl"],"tlsProbeIntrospected":true},"tags":{"bin":["curl"],"host":["qpoint"],"ip":["192.168.3.218"],"protocol":["http2"],"strategy":["observe"]},"finalized":true,"direction":"egress-external","part":2,"socketProtocol":"tcp","l7Protocol":"http2","tlsVersion":772,"system":{"hostname":"qpoint","agent":"tapline","agentInstance":"i"},"source":{"address":{"family":"ipv4","ip":"192.168.3.218","port":51000},"hostname":"qpoint","exe":"/usr/bin/curl","user":"root","userId":0,"container":{"id":"abc","name":"web"}},"destination":{"address":{"family":"ipv6","ip":"2001:db8::1","port":443}},"bytesReceived":395,"bytesSent":41,"timestamp":"2025-10-24T18:54:54.510499628Z","createdAt":"2025-10-24T18:54:54.000000000Z","closedAt":"2025-10-24T18:54:54.510499628Z"}"#
    );
    let back: Connection = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, connection());
}

#[test]
fn connection_minimal_omits_what_is_unknown() {
    let mut c = connection();
    c.meta.tls_probe_types_detected.clear();
    c.meta.tls_probe_introspected = false;
    c.finalized = false;
    c.part = 0;
    c.tls_version = None;
    c.bytes_received = None;
    c.bytes_sent = None;
    c.closed_at = None;
    c.source.container = None;
    let v: serde_json::Value = serde_json::to_value(&c).expect("json");
    for gone in ["finalized", "part", "tlsVersion", "bytesReceived", "bytesSent", "closedAt", "labels"] {
        assert!(v.get(gone).is_none(), "{gone} must be omitted: {v}");
    }
    assert!(v["meta"].get("tlsProbeTypesDetected").is_none());
    assert!(v["meta"].get("tlsProbeIntrospected").is_none());
    assert!(v["source"].get("container").is_none());
    assert_eq!(v["source"]["userId"], 0, "root is shown");
}

fn record() -> ArtifactRecord {
    ArtifactRecord {
        connection_id: "c1".into(),
        endpoint_id: "httpbin.org".into(),
        request_id: "r1".into(),
        timestamp: "2025-10-23T16:07:41.000000000Z".into(),
        artifact_type: ArtifactType::HttpTransaction,
        digest: "a9993e364706816aba3e25717850c26c9cd0d89d".into(),
        url: "file:///x".into(),
        summary: Some(Summary {
            connection_id: "c1".into(),
            request_id: Some("r1".into()),
            direction: Direction::EgressExternal,
            duration_ms: 10731,
            process_exe: "/usr/bin/curl".into(),
            request_host: "httpbin.org".into(),
            request_method: "GET".into(),
            request_protocol: "http2".into(),
            request_scheme: "https".into(),
            request_content_type: None,
            response_status: 200,
            response_content_type: Some("application/json".into()),
            container_name: None,
            container_image: None,
            pod_name: None,
            pod_namespace: None,
        }),
    }
}

#[test]
fn unknown_process_exe_is_omitted_not_empty() {
    let mut r = record();
    if let Some(s) = r.summary.as_mut() {
        s.process_exe.clear();
    }
    let v = serde_json::to_value(&r).expect("json");
    assert!(v["summary"].get("process_exe").is_none(), "{v}");
}

#[test]
fn artifact_record_golden() {
    assert_eq!(
        serde_json::to_string(&record()).expect("json"),
        r#"{"connectionId":"c1","endpointId":"httpbin.org","requestId":"r1","timestamp":"2025-10-23T16:07:41.000000000Z","type":"http_transaction","digest":"a9993e364706816aba3e25717850c26c9cd0d89d","url":"file:///x","summary":{"connection_id":"c1","request_id":"r1","direction":"egress-external","duration_ms":10731,"process_exe":"/usr/bin/curl","request_host":"httpbin.org","request_method":"GET","request_protocol":"http2","request_scheme":"https","response_status":200,"response_content_type":"application/json"}}"#
    );
}

fn transaction(level_full: bool) -> HttpTransaction {
    let mut req_h = Headers::default();
    req_h.push(":authority".into(), "httpbin.org".into());
    req_h.push("Accept".into(), "*/*".into());
    req_h.push("accept".into(), "text/html".into());
    HttpTransaction {
        metadata: TxnMetadata {
            process_id: Some("160239".into()),
            process_exe: Some("/usr/bin/curl".into()),
            bytes_sent: Some(41),
            bytes_received: Some(395),
            connection_id: Some("c1".into()),
            endpoint_id: Some("httpbin.org".into()),
            ..Default::default()
        },
        request: TxnRequest {
            method: "GET".into(),
            url: "https://httpbin.org/get".into(),
            scheme: Some("https".into()),
            path: Some("/get".into()),
            authority: Some("httpbin.org".into()),
            protocol: Some("http2".into()),
            request_id: Some("r1".into()),
            user_agent: Some("curl/8.10.1".into()),
            content_type: None,
            headers: level_full.then_some(req_h),
            body: None,
            body_info: Default::default(),
        },
        response: Some(TxnResponse {
            status: 200,
            content_type: Some("application/json".into()),
            headers: None,
            body: level_full.then(|| b"{\n  \"args\": {}".to_vec()),
            body_info: Default::default(),
        }),
        transaction_time: "2025-10-23T16:07:41.023379679Z".into(),
        duration_ms: 10731,
        direction: Direction::EgressExternal,
    }
}

#[test]
fn body_markers_are_flat_snake_case_and_round_trip() {
    let mut t = transaction(true);
    if let Some(r) = t.response.as_mut() {
        r.body_info = tapline_output::model::BodyInfo {
            body_size: Some(5_000_000),
            body_truncated: true,
            body_decoded_from: Some("gzip".into()),
            body_decode_error: None,
        };
    }
    let v = serde_json::to_value(&t).expect("json");
    let res = &v["response"];
    assert_eq!(res["body_size"], 5_000_000);
    assert_eq!(res["body_truncated"], true);
    assert_eq!(res["body_decoded_from"], "gzip");
    assert!(res.get("body_decode_error").is_none() && res.get("body_info").is_none(), "{res}");
    let back: HttpTransaction = serde_json::from_value(v).expect("parse back");
    assert_eq!(back, t);
}

#[test]
fn http_transaction_golden() {
    assert_eq!(
        serde_json::to_string(&transaction(true)).expect("json"),
        r#"{"metadata":{"process_id":"160239","process_exe":"/usr/bin/curl","bytes_sent":41,"bytes_received":395,"connection_id":"c1","endpoint_id":"httpbin.org"},"request":{"method":"GET","url":"https://httpbin.org/get","scheme":"https","path":"/get","authority":"httpbin.org","protocol":"http2","request_id":"r1","user_agent":"curl/8.10.1","headers":{":authority":"httpbin.org","Accept":"*/*, text/html"}},"response":{"status":200,"content_type":"application/json","body":"ewogICJhcmdzIjoge30="},"transaction_time":"2025-10-23T16:07:41.023379679Z","duration_ms":10731,"direction":"egress-external"}"#
    );
    let summary = serde_json::to_value(transaction(false)).expect("json");
    assert!(summary["request"].get("headers").is_none() && summary["response"].get("body").is_none());
    let back: HttpTransaction =
        serde_json::from_str(&serde_json::to_string(&transaction(true)).expect("j")).expect("p");
    assert_eq!(back, transaction(true));
}

#[test]
fn stores_pass_the_spec_checker() {
    let dir = tempfile::tempdir().expect("tmp");
    let objects = dir.path().join("objects");
    let store =
        LocalObjectStore::open(objects.clone(), ComponentMetrics::detached("object_store", "local")).expect("open");
    let obj = StoredObject::json(&transaction(true)).expect("obj");
    let digest = obj.digest.clone();
    let loc = store.put(obj.clone()).expect("put");
    assert!(loc.url.starts_with("file:///") && loc.url.ends_with(&format!("{digest}.json")));
    // On disk before put returns: an artifact_record never names an object not yet fetchable.
    let file = objects.join(&digest[..2]).join(format!("{digest}.json"));
    let on_disk = std::fs::read(&file).expect("file");
    assert_eq!(tapline_output::ids::digest_hex(&on_disk), digest, "sha1 of the file is the digest");
    assert_eq!(store.get(&digest).expect("get"), Some(obj.bytes.clone()));
    store.put(obj.clone()).expect("idempotent put");
    store.shutdown(Duration::from_secs(5)).expect("shutdown");
    assert_eq!(store.get(&"0".repeat(40)).expect("get"), None);
    assert_eq!(store.get("../../etc/passwd").expect("get"), None, "only digests are looked up");

    let events = StdoutEventStore::with_writer(Vec::new(), ComponentMetrics::detached("event_store", "stdout"));
    let mut rec = record();
    rec.digest = digest;
    events.submit(&Event::Connection(connection()));
    events.submit(&Event::ArtifactRecord(rec));
    events.flush();
    let out = events.into_inner().expect("writer");
    let path = dir.path().join("events.ndjson");
    std::fs::write(&path, out).expect("write");

    let checker = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec/check-events.py");
    assert!(checker.exists(), "the spec checker must sit at {}", checker.display());
    let res = std::process::Command::new("python3")
        .arg(&checker)
        .arg(&path)
        .arg("--objects")
        .arg(&objects)
        .output()
        .expect("python3");
    let report = String::from_utf8_lossy(&res.stdout);
    assert!(res.status.success(), "{report}");
    assert!(report.contains("0 errors"), "{report}");
}

#[test]
fn unwritable_directory_is_counted_not_lost_silently() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = ComponentMetrics::detached("object_store", "local");
    let store = LocalObjectStore::open(dir.path().join("o"), m.clone()).expect("open");
    std::fs::remove_dir_all(dir.path().join("o")).expect("rm");
    std::fs::write(dir.path().join("o"), b"not a dir").expect("block");
    let err = store.put(StoredObject::json(&transaction(false)).expect("obj")).expect_err("cannot write");
    assert!(err.to_string().contains("object store `local`"), "the error names the store: {err}");
    assert_eq!(m.received_count(), 1);
    assert_eq!(m.discarded_count("write_error"), 1);
}
