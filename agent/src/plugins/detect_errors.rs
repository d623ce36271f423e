//! The `detect_errors` plugin: rules over a finished transaction (status codes, empty body,
//! duration, body text, URL filters) that raise an `issue` event and can raise the capture
//! level of that transaction so its headers or bodies are stored.

use serde::Deserialize;

use crate::config::CaptureLevel;
use crate::txn::Transaction;
use tapline_output::model::Tags;

/// One rule as configured (qtap's camelCase keys).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorRuleConfig {
    /// The rule's name: the issue's `error`.
    pub name: String,
    /// Status codes: exact (`"500"`) or classes (`"4xx"`, `"5xx"`).
    #[serde(default)]
    pub trigger_status_codes: Vec<String>,
    /// A response without body is an error.
    #[serde(default)]
    pub trigger_empty_body: bool,
    /// Slower than this many milliseconds is an error.
    #[serde(default)]
    pub trigger_duration: Option<u64>,
    /// The response body contains this text.
    #[serde(default)]
    pub trigger_contains: Option<String>,
    /// Only URLs containing one of these.
    #[serde(default)]
    pub only_urls: Vec<String>,
    /// Never URLs containing one of these.
    #[serde(default)]
    pub exclude_urls: Vec<String>,
    /// Only connections carrying every one of these tags (`key:value`, or `key` for any value).
    #[serde(default)]
    pub with_tags: Vec<String>,
    /// Store the request headers of a matching transaction.
    #[serde(default)]
    pub record_req_headers: bool,
    /// Store the request body.
    #[serde(default)]
    pub record_req_body: bool,
    /// Store the response headers.
    #[serde(default)]
    pub record_res_headers: bool,
    /// Store the response body.
    #[serde(default)]
    pub record_res_body: bool,
    /// Emit an `issue` event (default true).
    #[serde(default = "yes")]
    pub report_as_issue: bool,
    /// Keep evaluating the next rules after a match.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

fn yes() -> bool {
    true
}

/// `config` of a `detect_errors` plugin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectErrorsConfig {
    /// The rules, in order.
    #[serde(default)]
    pub rules: Vec<ErrorRuleConfig>,
}

/// A rule that fired for a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The rule's name.
    pub name: String,
    /// `detect_errors:<condition>` for each condition that held.
    pub conditions: Vec<String>,
    /// One sentence per condition.
    pub reasons: Vec<String>,
    /// Whether to emit an issue.
    pub report: bool,
    /// The capture level the rule asks for (at least).
    pub level: CaptureLevel,
}

fn status_matches(pattern: &str, status: u16) -> bool {
    let p = pattern.trim().to_ascii_lowercase();
    match p.strip_suffix("xx") {
        Some(class) => class.parse::<u16>().is_ok_and(|c| status / 100 == c),
        None => p.parse::<u16>().is_ok_and(|s| s == status),
    }
}

impl ErrorRuleConfig {
    /// The level its record flags ask for.
    fn level(&self) -> CaptureLevel {
        if self.record_req_body || self.record_res_body {
            CaptureLevel::Full
        } else if self.record_req_headers || self.record_res_headers {
            CaptureLevel::Headers
        } else {
            CaptureLevel::None
        }
    }

    /// Whether the rule fires for `txn` (at `url`, on a connection tagged `tags`), and why.
    fn check(&self, txn: &Transaction, url: &str, tags: &Tags) -> Option<Hit> {
        let tagged = |want: &str| match want.split_once(':') {
            Some((k, v)) => tags.get(&k.to_ascii_lowercase()).iter().any(|x| x == v),
            None => !tags.get(&want.to_ascii_lowercase()).is_empty(),
        };
        if !self.with_tags.iter().all(|t| tagged(t)) {
            return None;
        }
        if !self.only_urls.is_empty() && !self.only_urls.iter().any(|u| url.contains(u.as_str())) {
            return None;
        }
        if self.exclude_urls.iter().any(|u| url.contains(u.as_str())) {
            return None;
        }
        let status = txn.response.as_ref().map(|r| r.status);
        let (mut conditions, mut reasons) = (Vec::new(), Vec::new());
        if let Some(s) = status
            && let Some(p) = self.trigger_status_codes.iter().find(|p| status_matches(p, s))
        {
            conditions.push(format!("detect_errors:status_code {p}"));
            reasons.push(format!("status {s} matches {p}"));
        }
        if self.trigger_empty_body && status.is_some() && txn.response_body.len == 0 {
            conditions.push("detect_errors:empty_body".to_string());
            reasons.push("the response has no body".to_string());
        }
        if let Some(ms) = self.trigger_duration
            && txn.duration_ms() > ms
        {
            conditions.push(format!("detect_errors:duration > {ms}ms"));
            reasons.push(format!("took {} ms, more than {ms} ms", txn.duration_ms()));
        }
        if let Some(text) = &self.trigger_contains
            && !text.is_empty()
            && txn.response_body.bytes.windows(text.len()).any(|w| w == text.as_bytes())
        {
            conditions.push(format!("detect_errors:contains {text:?}"));
            reasons.push(format!("the response body contains {text:?}"));
        }
        (!conditions.is_empty()).then(|| Hit {
            name: self.name.clone(),
            conditions,
            reasons,
            report: self.report_as_issue,
            level: self.level(),
        })
    }
}

/// Every rule of `rules` that fires for `txn`, stopping after the first hit of a rule without
/// `continue`.
pub fn check(rules: &[ErrorRuleConfig], txn: &Transaction, url: &str, tags: &Tags) -> Vec<Hit> {
    let mut out = Vec::new();
    for r in rules {
        if let Some(hit) = r.check(txn, url, tags) {
            out.push(hit);
            if !r.continue_ {
                break;
            }
        }
    }
    out
}

/// Whether any rule may ask for bodies (the transaction assembler must keep them).
pub fn wants_bodies(rules: &[ErrorRuleConfig]) -> bool {
    rules.iter().any(|r| r.record_req_body || r.record_res_body || r.trigger_contains.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http1::{RequestHead, ResponseHead};
    use crate::txn::{Body, HttpProtocol};
    use std::time::{Duration, SystemTime};

    fn txn(status: u16, body: &[u8], ms: u64) -> Transaction {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut t = Transaction::new(
            HttpProtocol::Http1,
            RequestHead { method: "GET".into(), target: "/x".into(), version: 1, headers: vec![] },
            t0,
        );
        t.response = Some(ResponseHead { status, reason: String::new(), version: 1, headers: vec![] });
        t.response_time = Some(t0 + Duration::from_millis(ms));
        t.response_body = Body { bytes: body.to_vec(), len: body.len() as u64, truncated: false };
        t
    }

    fn rules(yaml: &str) -> Vec<ErrorRuleConfig> {
        serde_yaml_ng::from_str::<DetectErrorsConfig>(yaml).unwrap().rules
    }

    #[test]
    fn status_classes_exact_codes_and_levels() {
        let r = rules("rules: [{name: server, triggerStatusCodes: ['5xx', '404'], recordResBody: true}]");
        let hits = check(&r, &txn(503, b"down", 5), "http://h/x", &Tags::default());
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].conditions, vec!["detect_errors:status_code 5xx".to_string()]);
        assert_eq!(hits[0].level, CaptureLevel::Full);
        assert_eq!(check(&r, &txn(404, b"", 5), "u", &Tags::default()).len(), 1);
        assert!(check(&r, &txn(200, b"ok", 5), "u", &Tags::default()).is_empty());
        assert!(check(&r, &txn(403, b"", 5), "u", &Tags::default()).is_empty());
    }

    #[test]
    fn body_duration_and_url_filters() {
        let r = rules(
            "rules: [{name: slow, triggerDuration: 100, onlyUrls: [/api/], continue: true}, \
             {name: empty, triggerEmptyBody: true, excludeUrls: [/health]}, {name: never, triggerContains: oops}]",
        );
        let hits = check(&r, &txn(200, b"", 250), "http://h/api/v1", &Tags::default());
        assert_eq!(hits.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), vec!["slow", "empty"]);
        assert!(
            check(&r, &txn(200, b"", 250), "http://h/health", &Tags::default()).is_empty(),
            "excluded; slow is only for /api/"
        );
        let hits = check(&r, &txn(200, b"an oops here", 1), "http://h/x", &Tags::default());
        assert_eq!(hits[0].name, "never");
        assert!(hits[0].reasons[0].contains("oops"));
    }

    #[test]
    fn with_tags_limits_a_rule_to_tagged_connections() {
        let r = rules("rules: [{name: team, triggerStatusCodes: ['5xx'], withTags: ['team:core', env]}]");
        let mut tags = Tags::default();
        tags.add("team", "core");
        assert!(check(&r, &txn(500, b"", 1), "u", &tags).is_empty(), "env missing");
        tags.add("env", "prod");
        assert_eq!(check(&r, &txn(500, b"", 1), "u", &tags).len(), 1);
        let mut other = Tags::default();
        other.add("team", "edge");
        other.add("env", "prod");
        assert!(check(&r, &txn(500, b"", 1), "u", &other).is_empty(), "other team");
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(
            serde_yaml_ng::from_str::<DetectErrorsConfig>("rules: [{name: a, triggerStatusCode: ['5xx']}]").is_err()
        );
    }
}
