//! The `http_capture` plugin: turns a finished transaction into an `HttpTransaction`
//! object (as much of it as the capture level allows) and its `artifact_record` event.
//!
//! | level   | object holds                                   |
//! |---------|------------------------------------------------|
//! | none    | nothing is stored, no artifact_record          |
//! | summary | metadata, method/url/status, duration          |
//! | headers | summary + request and response headers         |
//! | full    | headers + request and response bodies (base64) |

use std::time::SystemTime;

use tapline_output::model::{
    ArtifactRecord, ArtifactType, BodyInfo, Direction, Headers, HttpTransaction, Summary, TxnMetadata, TxnRequest,
    TxnResponse,
};

use crate::config::CaptureLevel;
use crate::process::ProcessInfo;
use crate::proto::http1::Header;
use crate::txn::decode::{BodyEncoding, decode_body};
use crate::txn::{Body, Transaction};

/// Connection facts a transaction is reported with.
pub struct TxnContext<'a> {
    /// `meta.connectionId` of the connection.
    pub connection_id: &'a str,
    /// `endpointId` of the connection.
    pub endpoint_id: &'a str,
    /// Traffic direction.
    pub direction: Direction,
    /// The process on our side of the connection.
    pub process: &'a ProcessInfo,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Largest body kept (`--http-buffer-size`), also the bound on decoded bodies.
    pub body_cap: usize,
    /// Masks secrets in decoded bodies (compressed bodies can only be masked once decoded).
    pub redactor: Option<&'a crate::redact::Redactor>,
    /// Whether our process is the server (so it sent the response).
    pub server_side: bool,
    /// The authority to use when the request has no Host header (the destination address).
    pub fallback_authority: String,
}

/// The object and its event, ready for the stores.
pub struct Captured {
    /// The object to store.
    pub object: HttpTransaction,
    /// The `artifact_record` without digest and url (filled once the object is stored).
    pub record: ArtifactRecord,
}

fn header<'h>(headers: &'h [Header], name: &str) -> Option<&'h str> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

fn to_headers(hs: &[Header], trailers: &[Header]) -> Headers {
    let mut out = Headers::default();
    for h in hs.iter().chain(trailers) {
        out.push(h.name.clone(), h.value.clone());
    }
    out
}

/// Splits a request target into (path, full URL) for the given scheme and authority.
pub fn url_parts(target: &str, scheme: &str, authority: &str) -> (String, String) {
    if let Some(rest) = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://")) {
        // Absolute form (proxies): the path starts at the first slash after the authority.
        let path_start = rest.find('/').unwrap_or(rest.len());
        let path = &rest[path_start..];
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = if path.is_empty() { "/" } else { path };
        return (path.to_string(), target.to_string());
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    let url = if target.starts_with('/') {
        format!("{scheme}://{authority}{target}")
    } else {
        // Authority form (CONNECT) or `*`.
        format!("{scheme}://{authority}")
    };
    (path.to_string(), url)
}

/// Approximate size on the wire of a message head (request/status line + headers + blank line).
fn head_len(first_line: usize, headers: &[Header]) -> u64 {
    let hs: usize = headers.iter().map(|h| h.name.len() + 2 + h.value.len() + 2).sum();
    (first_line + 2 + hs + 2) as u64
}

/// The body to store (level full) and what to say about it: bodies are decoded by their
/// Content-Encoding (bounded by `cap`), stored raw with the reason when that fails, and a body
/// cut at the cap says so with its full size. Nothing is said about a body stored whole as sent.
fn stored_body(b: &Body, headers: &[Header], with_bodies: bool, ctx: &TxnContext<'_>) -> (Option<Vec<u8>>, BodyInfo) {
    if !with_bodies || b.len == 0 {
        return (None, BodyInfo::default());
    }
    let mut decoded = decode_body(&b.bytes, header(headers, "content-encoding"), ctx.body_cap, !b.truncated);
    if let (Some(r), BodyEncoding::Decoded(_)) = (ctx.redactor, &decoded.encoding) {
        // Bodies sent compressed are masked here, once readable.
        r.apply_to_body(header(headers, "content-type"), &mut decoded.bytes);
    }
    let mut info = BodyInfo { body_truncated: b.truncated || decoded.truncated, ..Default::default() };
    match decoded.encoding {
        BodyEncoding::Identity => {}
        BodyEncoding::Decoded(codings) => info.body_decoded_from = Some(codings.join(", ")),
        BodyEncoding::Raw { encoding, reason } => {
            info.body_decode_error = Some(format!("cannot decode Content-Encoding `{encoding}`: {reason}"))
        }
    }
    if info.body_truncated || info.body_decoded_from.is_some() || info.body_decode_error.is_some() {
        info.body_size = Some(b.len);
    }
    (Some(decoded.bytes), info)
}

/// Builds the object and record for `txn` at `level`; `None` for level none.
pub fn capture(
    txn: &Transaction,
    level: CaptureLevel,
    ctx: &TxnContext<'_>,
    request_id: String,
    now: SystemTime,
) -> Option<Captured> {
    if level == CaptureLevel::None {
        return None;
    }
    let req = &txn.request;
    let res = txn.response.as_ref();
    // HTTP/2 names the authority in `:authority`; HTTP/1 in Host (an h2 request may carry both).
    let authority = header(&req.headers, ":authority")
        .or_else(|| header(&req.headers, "host"))
        .map(str::to_string)
        .unwrap_or_else(|| ctx.fallback_authority.clone());
    let protocol = txn.protocol.as_str();
    let (path, url) = url_parts(&req.target, ctx.scheme, &authority);
    let with_headers = matches!(level, CaptureLevel::Headers | CaptureLevel::Full);
    let meta = ctx.process.container.as_deref();
    let with_bodies = level == CaptureLevel::Full;
    let req_content_type = header(&req.headers, "content-type").map(str::to_string);
    let res_content_type = res.and_then(|r| header(&r.headers, "content-type")).map(str::to_string);

    let (req_wire, res_wire) = match txn.wire_bytes {
        Some(counted) => counted,
        None => (
            head_len(req.method.len() + 1 + req.target.len() + 9, &req.headers) + txn.request_body.len,
            res.map(|r| head_len(12 + r.reason.len() + 1, &r.headers) + txn.response_body.len).unwrap_or(0),
        ),
    };
    let (bytes_sent, bytes_received) = if ctx.server_side { (res_wire, req_wire) } else { (req_wire, res_wire) };

    let (req_body, req_body_info) = stored_body(&txn.request_body, &req.headers, with_bodies, ctx);
    let response = res.map(|r| {
        let (body, body_info) = stored_body(&txn.response_body, &r.headers, with_bodies, ctx);
        TxnResponse {
            status: r.status,
            content_type: res_content_type.clone(),
            headers: with_headers.then(|| to_headers(&r.headers, &txn.response_trailers)),
            body,
            body_info,
        }
    });
    let object = HttpTransaction {
        metadata: TxnMetadata {
            process_id: Some(ctx.process.pid.to_string()),
            process_exe: ctx.process.exe.clone(),
            container_name: meta.and_then(|m| m.name.clone()),
            container_image: meta.and_then(|m| m.image.clone()),
            pod_name: meta.and_then(|m| m.pod_name.clone()),
            pod_namespace: meta.and_then(|m| m.pod_namespace.clone()),
            bytes_sent: Some(bytes_sent),
            bytes_received: Some(bytes_received),
            request_id: Some(request_id.clone()),
            connection_id: Some(ctx.connection_id.to_string()),
            endpoint_id: Some(ctx.endpoint_id.to_string()),
        },
        request: TxnRequest {
            method: req.method.clone(),
            url: url.clone(),
            scheme: Some(ctx.scheme.to_string()),
            path: Some(path),
            authority: Some(authority.clone()),
            protocol: Some(protocol.to_string()),
            request_id: Some(request_id.clone()),
            user_agent: header(&req.headers, "user-agent").map(str::to_string),
            content_type: req_content_type.clone(),
            headers: with_headers.then(|| to_headers(&req.headers, &txn.request_trailers)),
            body: req_body,
            body_info: req_body_info,
        },
        response,
        transaction_time: tapline_output::model::rfc3339(txn.end_time),
        duration_ms: txn.duration_ms(),
        direction: ctx.direction,
    };
    let summary = Summary {
        connection_id: ctx.connection_id.to_string(),
        request_id: Some(request_id.clone()),
        direction: ctx.direction,
        duration_ms: txn.duration_ms(),
        process_exe: ctx.process.exe.clone().unwrap_or_default(),
        request_host: crate::conn::host_without_port(&authority).to_string(),
        request_method: req.method.clone(),
        request_protocol: protocol.to_string(),
        request_scheme: ctx.scheme.to_string(),
        request_content_type: req_content_type.filter(|_| txn.request_body.len > 0),
        response_status: res.map(|r| r.status).unwrap_or(0),
        response_content_type: res_content_type,
        container_name: meta.and_then(|m| m.name.clone()),
        container_image: meta.and_then(|m| m.image.clone()),
        pod_name: meta.and_then(|m| m.pod_name.clone()),
        pod_namespace: meta.and_then(|m| m.pod_namespace.clone()),
    };
    let record = ArtifactRecord {
        connection_id: ctx.connection_id.to_string(),
        endpoint_id: ctx.endpoint_id.to_string(),
        request_id,
        timestamp: tapline_output::model::rfc3339(now),
        artifact_type: ArtifactType::HttpTransaction,
        digest: String::new(),
        url: String::new(),
        summary: Some(summary),
    };
    Some(Captured { object, record })
}

#[cfg(test)]
mod tests {
    use super::url_parts;

    #[test]
    fn url_forms() {
        assert_eq!(url_parts("/a/b?q=1", "http", "h:8"), ("/a/b".into(), "http://h:8/a/b?q=1".into()));
        assert_eq!(url_parts("http://x.org/p?z", "http", "x.org"), ("/p".into(), "http://x.org/p?z".into()));
        assert_eq!(url_parts("http://x.org", "http", "x.org"), ("/".into(), "http://x.org".into()));
        assert_eq!(url_parts("x.org:443", "http", "x.org:443"), ("x.org:443".into(), "http://x.org:443".into()));
    }
}

#[cfg(test)]
mod level_tests {
    use super::*;
    use crate::proto::http1::{RequestHead, ResponseHead};
    use crate::txn::{Body, Transaction};
    use std::time::{Duration, SystemTime};

    fn h(n: &str, v: &str) -> Header {
        Header { name: n.into(), value: v.into() }
    }

    fn txn() -> Transaction {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Transaction {
            protocol: crate::txn::HttpProtocol::Http1,
            wire_bytes: None,
            request: RequestHead {
                method: "POST".into(),
                target: "/api/v1?x=1".into(),
                version: 1,
                headers: vec![
                    h("Host", "api.example.com:8443"),
                    h("Content-Type", "application/json"),
                    h("User-Agent", "t/1"),
                ],
            },
            request_body: Body { bytes: b"{}".to_vec(), len: 2, truncated: false },
            request_trailers: vec![],
            request_time: t0,
            response: Some(ResponseHead {
                status: 503,
                reason: "Service Unavailable".into(),
                version: 1,
                headers: vec![h("Content-Type", "text/plain"), h("Content-Length", "4")],
            }),
            response_body: Body { bytes: b"down".to_vec(), len: 4, truncated: false },
            response_trailers: vec![],
            response_time: Some(t0 + Duration::from_millis(42)),
            end_time: t0 + Duration::from_millis(43),
            incomplete: false,
        }
    }

    fn ctx(p: &ProcessInfo) -> TxnContext<'_> {
        TxnContext {
            connection_id: "c0000000000000000000",
            endpoint_id: "api.example.com",
            direction: Direction::EgressExternal,
            process: p,
            scheme: "http",
            body_cap: 1 << 20,
            redactor: None,
            server_side: false,
            fallback_authority: "198.51.100.2:8443".into(),
        }
    }

    #[test]
    fn levels_decide_what_the_object_holds() {
        let p = ProcessInfo { pid: 7, exe: Some("/usr/bin/app".into()), ..Default::default() };
        let now = SystemTime::now();
        assert!(capture(&txn(), CaptureLevel::None, &ctx(&p), "r".into(), now).is_none());

        let s = capture(&txn(), CaptureLevel::Summary, &ctx(&p), "r1".into(), now).expect("summary");
        assert!(s.object.request.headers.is_none() && s.object.request.body.is_none());
        let res = s.object.response.as_ref().expect("response");
        assert!(res.headers.is_none() && res.body.is_none());
        assert_eq!(res.status, 503);
        assert_eq!(s.object.request.url, "http://api.example.com:8443/api/v1?x=1");
        assert_eq!(s.object.request.path.as_deref(), Some("/api/v1"));
        assert_eq!(s.object.duration_ms, 42);
        let sum = s.record.summary.as_ref().expect("summary block");
        assert_eq!(sum.request_host, "api.example.com");
        assert_eq!(sum.request_content_type.as_deref(), Some("application/json"));
        assert_eq!(sum.response_status, 503);
        assert_eq!(sum.process_exe, "/usr/bin/app");

        let hd = capture(&txn(), CaptureLevel::Headers, &ctx(&p), "r2".into(), now).expect("headers");
        assert_eq!(hd.object.request.headers.as_ref().and_then(|h| h.get("user-agent")), Some("t/1"));
        assert!(hd.object.request.body.is_none());
        assert!(hd.object.response.as_ref().is_some_and(|r| r.headers.is_some() && r.body.is_none()));

        let full = capture(&txn(), CaptureLevel::Full, &ctx(&p), "r3".into(), now).expect("full");
        assert_eq!(full.object.request.body.as_deref(), Some(&b"{}"[..]));
        assert_eq!(full.object.response.as_ref().and_then(|r| r.body.as_deref()), Some(&b"down"[..]));
        assert_eq!(full.object.metadata.process_id.as_deref(), Some("7"));
        // "POST /api/v1?x=1 HTTP/1.1\r\n" + 3 headers + "\r\n" + 2 body bytes
        let req = 27 + (4 + 2 + 20 + 2) + (12 + 2 + 16 + 2) + (10 + 2 + 3 + 2) + 2 + 2;
        assert_eq!(full.object.metadata.bytes_sent, Some(req));
    }

    #[test]
    fn missing_host_uses_the_destination_and_server_side_swaps_byte_counts() {
        let p = ProcessInfo::default();
        let mut t = txn();
        t.request.headers.retain(|h| h.name != "Host");
        let mut c = ctx(&p);
        c.server_side = true;
        let cap = capture(&t, CaptureLevel::Summary, &c, "r".into(), SystemTime::now()).expect("cap");
        assert_eq!(cap.object.request.authority.as_deref(), Some("198.51.100.2:8443"));
        let client = capture(&t, CaptureLevel::Summary, &ctx(&p), "r".into(), SystemTime::now()).expect("cap");
        let (s, c) = (&cap.object.metadata, &client.object.metadata);
        assert_eq!((s.bytes_sent, s.bytes_received), (c.bytes_received, c.bytes_sent), "perspectives swap");
        assert_ne!(s.bytes_sent, s.bytes_received);
    }
}

/// A context for tests: an ingress connection of `p`, bodies up to `cap`.
#[cfg(test)]
fn test_ctx<'a>(p: &'a ProcessInfo, cap: usize, redactor: Option<&'a crate::redact::Redactor>) -> TxnContext<'a> {
    TxnContext {
        connection_id: "c",
        endpoint_id: "e",
        direction: Direction::Ingress,
        process: p,
        scheme: "http",
        server_side: true,
        fallback_authority: String::new(),
        body_cap: cap,
        redactor,
    }
}

#[cfg(test)]
mod body_tests {
    use super::*;
    use std::io::Write;

    /// `stored_body` with a context whose cap is `cap` and no redaction.
    fn stored_body(b: &Body, headers: &[Header], with_bodies: bool, cap: usize) -> (Option<Vec<u8>>, BodyInfo) {
        let p = ProcessInfo::default();
        super::stored_body(b, headers, with_bodies, &test_ctx(&p, cap, None))
    }

    fn h(n: &str, v: &str) -> Header {
        Header { name: n.into(), value: v.into() }
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn whole_identity_body_says_nothing_extra() {
        let b = Body { bytes: b"plain".to_vec(), len: 5, truncated: false };
        let (stored, info) = stored_body(&b, &[], true, 1024);
        assert_eq!(stored.as_deref(), Some(&b"plain"[..]));
        assert_eq!(info, BodyInfo::default());
        let json =
            serde_json::to_value(TxnResponse { status: 200, body: stored, body_info: info, ..Default::default() })
                .unwrap();
        assert!(json.get("body_size").is_none() && json.get("body_truncated").is_none(), "{json}");
    }

    #[test]
    fn gzip_body_is_decoded_and_marked() {
        let z = gzip(b"hello hello hello");
        let b = Body { bytes: z.clone(), len: z.len() as u64, truncated: false };
        let (stored, info) = stored_body(&b, &[h("Content-Encoding", "gzip")], true, 1024);
        assert_eq!(stored.as_deref(), Some(&b"hello hello hello"[..]));
        assert_eq!(info.body_decoded_from.as_deref(), Some("gzip"));
        assert_eq!(info.body_size, Some(z.len() as u64), "the wire size");
        assert!(!info.body_truncated);
    }

    #[test]
    fn cut_body_is_marked_with_its_full_size() {
        let b = Body { bytes: vec![b'x'; 10], len: 5_000_000, truncated: true };
        let (stored, info) = stored_body(&b, &[], true, 10);
        assert_eq!(stored.map(|s| s.len()), Some(10));
        assert!(info.body_truncated);
        assert_eq!(info.body_size, Some(5_000_000));
        let json = serde_json::to_value(TxnRequest { body_info: info, ..Default::default() }).unwrap();
        assert_eq!(json["body_truncated"], true);
        assert_eq!(json["body_size"], 5_000_000);
    }

    #[test]
    fn undecodable_body_is_kept_raw_with_the_reason() {
        let b = Body { bytes: b"not gzip at all".to_vec(), len: 15, truncated: false };
        let (stored, info) = stored_body(&b, &[h("content-encoding", "gzip")], true, 1024);
        assert_eq!(stored.as_deref(), Some(&b"not gzip at all"[..]), "never dropped");
        assert!(info.body_decode_error.as_deref().is_some_and(|e| e.contains("gzip")), "{info:?}");
        assert!(info.body_decoded_from.is_none());
    }

    #[test]
    fn no_bodies_below_level_full() {
        let b = Body { bytes: b"x".to_vec(), len: 1, truncated: false };
        assert_eq!(stored_body(&b, &[], false, 1024), (None, BodyInfo::default()));
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn compressed_json_bodies_are_masked_once_decoded() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(br#"{"user":"ann","password":"hunter2"}"#).unwrap();
        let z = e.finish().unwrap();
        let b = Body { bytes: z.clone(), len: z.len() as u64, truncated: false };
        let r = crate::redact::Redactor::new(&crate::redact::RedactionConfig::default()).unwrap();
        let p = ProcessInfo::default();
        let ctx = test_ctx(&p, 1 << 20, Some(&r));
        let hs = [
            Header { name: "Content-Encoding".into(), value: "gzip".into() },
            Header { name: "Content-Type".into(), value: "application/json".into() },
        ];
        let (stored, info) = stored_body(&b, &hs, true, &ctx);
        let text = String::from_utf8(stored.unwrap()).unwrap();
        assert!(!text.contains("hunter2") && text.contains("ann"), "{text}");
        assert_eq!(info.body_decoded_from.as_deref(), Some("gzip"));
    }
}
