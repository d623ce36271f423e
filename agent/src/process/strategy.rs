//! Per-process settings a process carries in its own environment, as qtap reads them:
//! `QPOINT_STRATEGY=<observe|ignore|audit|forward|proxy>[,exe.<exact|prefix|suffix|contains|regex>:<value>…]`
//! (the strategy applies only when one of the exe filters matches, or when there are none)
//! and `QPOINT_TAGS=k:v,k:v` (extra connection tags).

use super::filter::{Strategy as Match, exe_matches};

/// The environment variable naming a process's strategy.
pub const STRATEGY_ENV: &str = "QPOINT_STRATEGY";
/// The environment variable adding connection tags.
pub const TAGS_ENV: &str = "QPOINT_TAGS";

/// What tapline does with a process's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QpointStrategy {
    /// Capture as configured (the default).
    #[default]
    Observe,
    /// Capture nothing of it.
    Ignore,
    /// Report its connections, without payload parsing (no transactions).
    Audit,
    /// qtap's egress-proxy mode; tapline has no proxy and observes.
    Forward,
    /// qtap's egress-proxy mode; tapline has no proxy and observes.
    Proxy,
}

impl QpointStrategy {
    /// The `strategy` tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            QpointStrategy::Observe => "observe",
            QpointStrategy::Ignore => "ignore",
            QpointStrategy::Audit => "audit",
            QpointStrategy::Forward => "forward",
            QpointStrategy::Proxy => "proxy",
        }
    }
}

fn parse_match(s: &str) -> Option<Match> {
    Some(match s {
        "exact" => Match::Exact,
        "prefix" => Match::Prefix,
        "suffix" => Match::Suffix,
        "contains" => Match::Contains,
        "regex" => Match::Regex,
        _ => return None,
    })
}

/// The strategy `value` (of `QPOINT_STRATEGY`) gives a process whose executable is `exe`.
/// Like qtap, anything malformed falls back to `observe`: a typo never hides traffic.
pub fn parse_strategy(value: &str, exe: Option<&str>) -> QpointStrategy {
    let mut parts = value.split(',');
    let name = parts.next().unwrap_or("").trim();
    let filters: Vec<&str> = parts.map(str::trim).filter(|f| !f.is_empty()).collect();
    if !filters.is_empty() {
        let Some(exe) = exe else { return QpointStrategy::Observe };
        let mut hit = false;
        for f in filters {
            let f = f.strip_prefix("exe.").unwrap_or(f);
            let Some((how, pattern)) = f.split_once(':') else { return QpointStrategy::Observe };
            let Some(how) = parse_match(how) else { return QpointStrategy::Observe };
            let regex = match how {
                Match::Regex => match regex::Regex::new(pattern) {
                    Ok(r) => Some(r),
                    Err(_) => return QpointStrategy::Observe,
                },
                _ => None,
            };
            if exe_matches(how, pattern, regex.as_ref(), exe) {
                hit = true;
                break;
            }
        }
        if !hit {
            return QpointStrategy::Observe;
        }
    }
    match name {
        "ignore" => QpointStrategy::Ignore,
        "audit" => QpointStrategy::Audit,
        "forward" => QpointStrategy::Forward,
        "proxy" => QpointStrategy::Proxy,
        _ => QpointStrategy::Observe,
    }
}

/// The `k:v` pairs of `QPOINT_TAGS` (keys lowercased; malformed entries skipped).
pub fn parse_tags(value: &str) -> Vec<(String, String)> {
    value
        .split(',')
        .filter_map(|t| t.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_with_and_without_exe_filters() {
        assert_eq!(parse_strategy("ignore", Some("/usr/bin/curl")), QpointStrategy::Ignore);
        assert_eq!(parse_strategy("audit", None), QpointStrategy::Audit);
        assert_eq!(parse_strategy("ignore,exe.suffix:/curl", Some("/usr/bin/curl")), QpointStrategy::Ignore);
        assert_eq!(parse_strategy("ignore,exe.suffix:/wget", Some("/usr/bin/curl")), QpointStrategy::Observe);
        assert_eq!(
            parse_strategy("ignore,exe.exact:/bin/sh,exe.regex:^/usr/bin/py.*$", Some("/usr/bin/python3")),
            QpointStrategy::Ignore
        );
        assert_eq!(parse_strategy("ignore,exe.glob:x", Some("x")), QpointStrategy::Observe, "bad match kind");
        assert_eq!(parse_strategy("ignore,exe.regex:(", Some("(")), QpointStrategy::Observe, "bad regex");
        assert_eq!(parse_strategy("sideways", Some("/x")), QpointStrategy::Observe);
        assert_eq!(parse_strategy("", Some("/x")), QpointStrategy::Observe);
    }

    #[test]
    fn tags() {
        assert_eq!(
            parse_tags("Team:payments, env:prod,bad,:x,y:"),
            vec![("team".into(), "payments".into()), ("env".into(), "prod".into())]
        );
    }
}
