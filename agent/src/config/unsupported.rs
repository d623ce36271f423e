//! The one place that lists what tapline recognises in a qtap.yaml but does not act on yet.
//! Each later feature removes its entry here. Every entry found produces one warning.

use super::{Config, ConfigWarning, EventStoreType, ObjectStoreType, PluginType};

/// Key names tapline knows, for did-you-mean suggestions.
const KNOWN_KEYS: &[&str] = &[
    "version",
    "services",
    "event_stores",
    "object_stores",
    "qscan",
    "id",
    "type",
    "dir",
    "endpoint",
    "bucket",
    "region",
    "access_url",
    "insecure",
    "access_key",
    "secret_key",
    "event_store",
    "value",
    "stacks",
    "plugins",
    "config",
    "level",
    "format",
    "rules",
    "object_store",
    "name",
    "expr",
    "tap",
    "direction",
    "ignore_loopback",
    "audit_include_dns",
    "http",
    "stack",
    "endpoints",
    "domain",
    "filters",
    "groups",
    "custom",
    "exe",
    "strategy",
    "only",
    "rulekit",
    "macros",
    "tags",
    "control",
    "redis",
    "mysql",
    "kafka",
];

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A known key within edit distance 2 of `key`.
pub fn suggest(key: &str) -> Option<&'static str> {
    closest(key, KNOWN_KEYS.iter().copied())
}

/// The candidate within edit distance 2 of `word` (the nearest; none for exact matches).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|k| (distance(word, k), k))
        .filter(|(d, k)| *d <= 2 && *d > 0 && k.len() > 2)
        .min()
        .map(|(_, k)| k)
}

fn w(path: impl Into<String>, message: impl Into<String>) -> ConfigWarning {
    ConfigWarning { path: path.into(), message: message.into() }
}

/// One warning per recognised-but-unsupported setting.
pub fn warnings(c: &Config) -> Vec<ConfigWarning> {
    let mut out = Vec::new();
    for (i, s) in c.services.event_stores.iter().enumerate() {
        if !matches!(s.kind, EventStoreType::Stdout | EventStoreType::Disabled | EventStoreType::Forward) {
            out.push(w(
                format!("services.event_stores[{i}].type"),
                format!("event store type `{:?}` is not supported yet; events go to stdout", s.kind).to_lowercase(),
            ));
        }
    }
    for (i, s) in c.services.object_stores.iter().enumerate() {
        if !matches!(
            s.kind,
            ObjectStoreType::Local | ObjectStoreType::Stdout | ObjectStoreType::S3 | ObjectStoreType::Forward
        ) {
            out.push(w(
                format!("services.object_stores[{i}].type"),
                format!("object store type `{:?}` is not supported yet; objects go to the local store", s.kind)
                    .to_lowercase(),
            ));
        }
    }
    if c.services.qscan.is_some() {
        out.push(w("services.qscan", "not supported; ignored"));
    }
    for (name, stack) in &c.stacks {
        for (i, p) in stack.plugins.iter().enumerate() {
            let path = format!("stacks.{name}.plugins[{i}]");
            match p.kind {
                PluginType::DetectErrors
                | PluginType::HttpMetrics
                | PluginType::AccessLogs
                | PluginType::HttpCapture
                | PluginType::ReportUsage => {}
                other => out.push(w(
                    format!("{path}.type"),
                    format!("plugin `{}` is not supported yet; ignored", format!("{other:?}").to_lowercase()),
                )),
            }
        }
    }
    for (i, g) in c.tap.filters.iter().flat_map(|f| f.groups.iter()).enumerate() {
        if !crate::process::filter::GROUPS.contains(&g.as_str()) {
            out.push(w(
                format!("tap.filters.groups[{i}]"),
                format!("unknown group `{g}`, ignored (known: {})", crate::process::filter::GROUPS.join(", ")),
            ));
        }
    }
    for key in ["redis", "mysql", "kafka"] {
        let set = match key {
            "redis" => c.tap.redis.is_some(),
            "mysql" => c.tap.mysql.is_some(),
            _ => c.tap.kafka.is_some(),
        };
        if set {
            out.push(w(format!("tap.{key}"), format!("{key} parsing is not supported; those connections are `other`")));
        }
    }
    if let Some(serde_yaml_ng::Value::Sequence(tags)) = &c.tags {
        for (i, t) in tags.iter().enumerate() {
            let source = t.get("source").and_then(|s| s.as_str()).unwrap_or("");
            if source != "env" {
                out.push(w(
                    format!("tags[{i}].source"),
                    format!("tag source `{source}` needs Kubernetes or container labels, which tapline does not read yet; only `env` tags are added"),
                ));
            }
        }
    }
    if c.control.is_some() {
        out.push(w("control", "access control is not supported; ignored"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("ignore_loopbak"), Some("ignore_loopback"));
        assert_eq!(suggest("directon"), Some("direction"));
        assert_eq!(suggest("completely_else"), None);
    }
}
