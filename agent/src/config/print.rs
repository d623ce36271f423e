//! `tapline check-config --print`: the effective configuration, defaults filled in, as YAML
//! (secrets shown as `<set>`).

use serde_json::{Value, json};

use super::{CaptureFormat, EventStoreKind, ObjectStoreKind, StackPlan};
use crate::plugins::access_logs::{Format, Mode};

fn level(l: super::CaptureLevel) -> &'static str {
    match l {
        super::CaptureLevel::None => "none",
        super::CaptureLevel::Summary => "summary",
        super::CaptureLevel::Headers => "headers",
        super::CaptureLevel::Full => "full",
    }
}

fn format(f: CaptureFormat) -> &'static str {
    match f {
        CaptureFormat::Json => "json",
        CaptureFormat::Text => "text",
    }
}

fn mode(m: Mode) -> &'static str {
    match m {
        Mode::Summary => "summary",
        Mode::Details => "details",
        Mode::Full => "full",
    }
}

fn secret(s: &Option<String>) -> Value {
    if s.is_some() { json!("<set>") } else { Value::Null }
}

fn forward(f: &super::sinks::ForwardStore) -> Value {
    let t = &f.transport;
    json!({"type": "forward", "host": t.host, "port": t.port, "tag_prefix": t.tag_prefix, "tls": t.tls.is_some(),
        "shared_key": secret(&t.shared_key), "require_ack": t.require_ack, "compress": format!("{:?}", t.compress).to_lowercase(),
        "batch_size": f.batch_size, "batch_timeout_ms": f.batch_timeout.as_millis() as u64})
}

fn stack(s: &StackPlan) -> Value {
    json!({
        "http_capture": {"level": level(s.level), "format": format(s.format),
            "rules": s.rules.iter().map(|r| json!({"name": r.name, "expr": r.rule.to_string(), "level": level(r.level), "format": format(r.format)})).collect::<Vec<_>>()},
        "detect_errors": s.error_rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "access_logs": s.access_logs.as_ref().map(|a| json!({"mode": mode(a.mode),
            "format": if a.format == Format::Json { "json" } else { "console" },
            "rules": a.rules.iter().map(|(r, m)| json!({"expr": r.to_string(), "mode": mode(*m)})).collect::<Vec<_>>()})),
        "http_metrics": s.http_metrics,
        "report_usage": s.report_usage,
    })
}

/// The effective configuration as a YAML document.
pub fn effective_yaml(eff: &super::Effective) -> String {
    let events: Vec<Value> = eff
        .event_stores()
        .iter()
        .map(|e| match e {
            EventStoreKind::Stdout => json!({"type": "stdout"}),
            EventStoreKind::Forward(f) => forward(f),
        })
        .collect();
    let objects = match eff.object_store() {
        ObjectStoreKind::Local { dir, layout } => {
            json!({"type": "local", "dir": dir.display().to_string(), "layout": format!("{layout:?}").to_lowercase()})
        }
        ObjectStoreKind::Stdout => json!({"type": "stdout"}),
        ObjectStoreKind::S3(c) => json!({"type": "s3", "endpoint": c.endpoint, "bucket": c.bucket, "region": c.region,
            "insecure": c.insecure, "access_key": secret(&c.access_key), "secret_key": secret(&c.secret_key),
            "batch": c.batch, "batch_max_bytes": c.max_batch_bytes, "batch_max_seconds": c.max_batch_age.as_secs(),
            "gzip_level": c.gzip_level}),
        ObjectStoreKind::Forward(f) => forward(f),
    };
    let st = eff.stacks();
    let mut endpoints: Vec<(&String, &std::sync::Arc<StackPlan>)> = st.endpoints.iter().collect();
    endpoints.sort_by_key(|(d, _)| d.as_str());
    let mut stacks = serde_json::Map::new();
    for s in st.all() {
        stacks.insert(s.name.clone(), stack(s));
    }
    let redaction = eff.redaction().map(|r| {
        json!({"headers": r.headers.names, "header_suffixes": r.headers.suffixes, "header_substrings": r.headers.substrings,
            "query_params": r.query_params, "json_paths": r.json_paths, "body_patterns": r.body_patterns,
            "hash_key": if r.hash_key.is_some() { json!("<set>") } else { Value::Null }})
    });
    let doc = json!({
        "services": {"event_stores": events, "object_store": objects},
        "tap": {
            "direction": eff.direction().as_str(),
            "ignore_loopback": eff.ignore_loopback(),
            "audit_include_dns": eff.audit_include_dns(),
            "http": {"stack": st.default.name},
            "endpoints": endpoints.iter().map(|(d, s)| json!({"domain": d, "stack": s.name})).collect::<Vec<_>>(),
            "filters": format!("{:?}", eff.process_filter()),
        },
        "stacks": stacks,
        "redaction": redaction.unwrap_or(json!({"enabled": false})),
        "tags": eff.tag_sources().iter().map(|t| json!({"key": t.key, "source": "env", "location": t.env})).collect::<Vec<_>>(),
    });
    serde_yaml_ng::to_string(&doc).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}
