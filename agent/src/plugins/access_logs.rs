//! The `access_logs` plugin: one line per transaction on stderr (stdout stays pure NDJSON),
//! `console` (human) or `json`, at mode `summary` (request line, status, duration), `details`
//! (plus headers) or `full` (plus bodies, as text when they are UTF-8).

use serde::Deserialize;

use crate::proto::http1::Header;
use crate::txn::Transaction;

/// How much a line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Method, URL, status, duration, direction, process.
    #[default]
    Summary,
    /// Summary plus headers.
    Details,
    /// Details plus bodies.
    Full,
}

/// Line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// For people.
    #[default]
    Console,
    /// One JSON object per line.
    Json,
}

/// `config` of an `access_logs` plugin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogsConfig {
    /// What a line holds.
    #[serde(default)]
    pub mode: Mode,
    /// How it is written.
    #[serde(default)]
    pub format: Format,
    /// Per-transaction modes: `{name, expr, mode}` (first match wins), like http_capture rules.
    #[serde(default)]
    pub rules: Vec<AccessLogRule>,
}

/// One `access_logs` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogRule {
    /// Its name.
    pub name: String,
    /// A Rulekit expression.
    pub expr: String,
    /// The mode when it matches.
    pub mode: Mode,
}

/// The compiled plugin: its default mode and format, and its rules.
#[derive(Debug, Clone)]
pub struct AccessLogs {
    /// The mode when no rule matches.
    pub mode: Mode,
    /// The format.
    pub format: Format,
    /// First match wins.
    pub rules: Vec<(crate::rules::Rule, Mode)>,
}

impl AccessLogs {
    /// The mode for a transaction with these fields.
    pub fn mode_for(&self, fields: &dyn crate::rules::Fields) -> Mode {
        self.rules.iter().find(|(r, _)| r.matches(fields)).map(|(_, m)| *m).unwrap_or(self.mode)
    }
}

/// What a line says about the transaction's connection.
pub struct LineContext<'a> {
    /// The request URL.
    pub url: &'a str,
    /// egress-external, ingress, ...
    pub direction: &'a str,
    /// The process's executable.
    pub exe: &'a str,
}

fn headers_json(hs: &[Header]) -> serde_json::Value {
    serde_json::Value::Object(hs.iter().map(|h| (h.name.clone(), serde_json::Value::String(h.value.clone()))).collect())
}

/// The line for `txn` at `mode` in `format` (no trailing newline).
pub fn line(txn: &Transaction, ctx: &LineContext<'_>, mode: Mode, format: Format) -> String {
    let status = txn.response.as_ref().map(|r| r.status);
    let ms = txn.duration_ms();
    match format {
        Format::Json => {
            let mut v = serde_json::json!({
                "method": txn.request.method, "url": ctx.url, "status": status, "duration_ms": ms,
                "direction": ctx.direction, "exe": ctx.exe, "protocol": txn.protocol.as_str(),
            });
            if mode >= Mode::Details {
                v["request_headers"] = headers_json(&txn.request.headers);
                v["response_headers"] =
                    headers_json(txn.response.as_ref().map(|r| r.headers.as_slice()).unwrap_or(&[]));
            }
            if mode == Mode::Full {
                v["request_body"] = String::from_utf8_lossy(&txn.request_body.bytes).into();
                v["response_body"] = String::from_utf8_lossy(&txn.response_body.bytes).into();
            }
            v.to_string()
        }
        Format::Console => {
            let status = status.map(|s| s.to_string()).unwrap_or_else(|| "---".into());
            let mut out = format!(
                "{} {} {} {}ms {} {} {}",
                txn.request.method,
                ctx.url,
                status,
                ms,
                ctx.direction,
                txn.protocol.as_str(),
                ctx.exe
            );
            if mode >= Mode::Details {
                for (side, hs) in [
                    (">", txn.request.headers.as_slice()),
                    ("<", txn.response.as_ref().map(|r| r.headers.as_slice()).unwrap_or(&[])),
                ] {
                    for h in hs {
                        out.push_str(&format!("\n  {side} {}: {}", h.name, h.value));
                    }
                }
            }
            if mode == Mode::Full {
                for (side, b) in [(">", &txn.request_body.bytes), ("<", &txn.response_body.bytes)] {
                    if !b.is_empty() {
                        out.push_str(&format!("\n  {side} {}", String::from_utf8_lossy(b)));
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http1::{RequestHead, ResponseHead};
    use crate::txn::{Body, HttpProtocol};
    use std::time::{Duration, SystemTime};

    fn txn() -> Transaction {
        let t0 = SystemTime::UNIX_EPOCH;
        let h = |n: &str, v: &str| Header { name: n.into(), value: v.into() };
        let mut t = Transaction::new(
            HttpProtocol::Http1,
            RequestHead { method: "POST".into(), target: "/p".into(), version: 1, headers: vec![h("Host", "x")] },
            t0,
        );
        t.request_body = Body { bytes: b"in".to_vec(), len: 2, truncated: false };
        t.response = Some(ResponseHead { status: 201, reason: String::new(), version: 1, headers: vec![h("A", "b")] });
        t.response_time = Some(t0 + Duration::from_millis(7));
        t.response_body = Body { bytes: b"out".to_vec(), len: 3, truncated: false };
        t
    }

    #[test]
    fn modes_and_formats() {
        let ctx = LineContext { url: "http://x/p", direction: "egress-internal", exe: "/usr/bin/curl" };
        assert_eq!(
            line(&txn(), &ctx, Mode::Summary, Format::Console),
            "POST http://x/p 201 7ms egress-internal http1 /usr/bin/curl"
        );
        let d = line(&txn(), &ctx, Mode::Details, Format::Console);
        assert!(d.contains("\n  > Host: x") && d.contains("\n  < A: b") && !d.contains("out"), "{d}");
        assert!(line(&txn(), &ctx, Mode::Full, Format::Console).ends_with("\n  > in\n  < out"));
        let j: serde_json::Value = serde_json::from_str(&line(&txn(), &ctx, Mode::Full, Format::Json)).unwrap();
        assert_eq!((j["status"].as_u64(), j["response_body"].as_str()), (Some(201), Some("out")));
        let s: serde_json::Value = serde_json::from_str(&line(&txn(), &ctx, Mode::Summary, Format::Json)).unwrap();
        assert!(s.get("request_headers").is_none());
    }
}
