//! The text rendering of an `HttpTransaction` (`http_capture` with `format: text`), laid out
//! as qtap renders it so people reading the two see the same thing.

use std::fmt::Write;

use super::{Headers, HttpTransaction};

fn headers(out: &mut String, hs: Option<&Headers>) {
    let Some(hs) = hs.filter(|h| !h.is_empty()) else { return };
    out.push_str("  Headers:\n");
    for (k, v) in hs.iter() {
        let _ = writeln!(out, "    {k}: {v}");
    }
}

fn body(out: &mut String, b: Option<&[u8]>) {
    let Some(b) = b.filter(|b| !b.is_empty()) else { return };
    out.push_str("  Body:\n");
    out.push_str(&String::from_utf8_lossy(b));
    out.push('\n');
}

impl HttpTransaction {
    /// The text form: `HTTP Transaction`, then Metadata, Request and Response sections.
    /// Bodies are written as text (invalid UTF-8 replaced); headers in wire order.
    pub fn to_text(&self) -> String {
        let mut t = String::from("HTTP Transaction\n================\n\nMetadata:\n");
        let m = &self.metadata;
        let _ = writeln!(t, "  Transaction Time: {}", self.transaction_time);
        if self.duration_ms > 0 {
            let _ = writeln!(t, "  Duration: {}ms", self.duration_ms);
        }
        let _ = writeln!(t, "  Direction: {}", self.direction.as_str());
        if let Some(id) = &m.request_id {
            let _ = writeln!(t, "  Request ID: {id}");
        }
        if let Some(pid) = &m.process_id {
            let _ = writeln!(t, "  Process ID: {pid}");
        }
        if let Some(exe) = &m.process_exe {
            let _ = writeln!(t, "  Process: {exe}");
        }
        let _ = writeln!(t, "  Bytes Sent: {}", m.bytes_sent.unwrap_or(0));
        let _ = writeln!(t, "  Bytes Received: {}\n", m.bytes_received.unwrap_or(0));
        let r = &self.request;
        let _ = writeln!(t, "Request:\n  Method: {}\n  URL: {}", r.method, r.url);
        if let Some(p) = &r.protocol {
            let _ = writeln!(t, "  Protocol: {p}");
        }
        if let Some(ua) = &r.user_agent {
            let _ = writeln!(t, "  User-Agent: {ua}");
        }
        if let Some(ct) = &r.content_type {
            let _ = writeln!(t, "  Content-Type: {ct}");
        }
        headers(&mut t, r.headers.as_ref());
        body(&mut t, r.body.as_deref());
        t.push('\n');
        if let Some(res) = &self.response {
            let _ = writeln!(t, "Response:\n  Status: {}", res.status);
            if let Some(ct) = &res.content_type {
                let _ = writeln!(t, "  Content-Type: {ct}");
            }
            headers(&mut t, res.headers.as_ref());
            body(&mut t, res.body.as_deref());
        } else {
            t.push_str("Response:\n  (none)\n");
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Direction, TxnMetadata, TxnRequest, TxnResponse};
    use super::*;

    #[test]
    fn renders_sections_in_qtap_order() {
        let mut h = Headers::default();
        h.push("Host".into(), "example.com".into());
        let t = HttpTransaction {
            metadata: TxnMetadata {
                process_id: Some("42".into()),
                process_exe: Some("/usr/bin/curl".into()),
                bytes_sent: Some(10),
                bytes_received: Some(20),
                ..Default::default()
            },
            request: TxnRequest {
                method: "POST".into(),
                url: "http://example.com/x".into(),
                content_type: Some("text/plain".into()),
                headers: Some(h),
                body: Some(b"hello".to_vec()),
                ..Default::default()
            },
            response: Some(TxnResponse { status: 201, ..Default::default() }),
            transaction_time: "2025-01-01T00:00:00Z".into(),
            duration_ms: 98,
            direction: Direction::EgressExternal,
        };
        let s = t.to_text();
        assert!(s.starts_with("HTTP Transaction\n================\n\nMetadata:\n  Transaction Time: 2025-01-01T00:00:00Z\n  Duration: 98ms\n  Direction: egress-external\n"), "{s}");
        assert!(s.contains("  Process ID: 42\n  Process: /usr/bin/curl\n  Bytes Sent: 10\n  Bytes Received: 20\n\nRequest:\n  Method: POST\n  URL: http://example.com/x\n"), "{s}");
        assert!(s.contains("  Headers:\n    Host: example.com\n  Body:\nhello\n\nResponse:\n  Status: 201\n"), "{s}");
    }
}
