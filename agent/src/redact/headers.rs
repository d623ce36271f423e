//! Header (and trailer) masking.

use crate::proto::http1::Header;

use super::config::HeaderRule;
use super::mask::{Masker, is_mask};
use super::query::QueryRule;
use super::{RedactError, RedactionStats};

/// Headers whose values are URLs (or request targets) and get their query masked.
const URL_HEADERS: &[&str] = &[":path", "location", "content-location", "referer"];

/// A compiled [`HeaderRule`]: lowercased entries.
#[derive(Debug, Clone)]
pub(crate) struct HeaderMatcher {
    names: Vec<String>,
    suffixes: Vec<String>,
    substrings: Vec<String>,
}

impl HeaderMatcher {
    /// Compiles `rule`; an empty entry is an error (it would match every header).
    pub(crate) fn new(rule: &HeaderRule) -> Result<Self, RedactError> {
        let lower = |list: &[String], what: &'static str| -> Result<Vec<String>, RedactError> {
            list.iter()
                .map(|s| {
                    let s = s.trim();
                    if s.is_empty() { Err(RedactError::EmptyEntry { list: what }) } else { Ok(s.to_ascii_lowercase()) }
                })
                .collect()
        };
        Ok(HeaderMatcher {
            names: lower(&rule.names, "header name")?,
            suffixes: lower(&rule.suffixes, "header suffix")?,
            substrings: lower(&rule.substrings, "header substring")?,
        })
    }

    /// Whether values of the header `name` are masked.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let name = name.trim().to_ascii_lowercase();
        self.names.contains(&name)
            || self.suffixes.iter().any(|s| name.ends_with(s.as_str()))
            || self.substrings.iter().any(|s| name.contains(s.as_str()))
    }

    /// Masks listed headers in place (order and count kept) and the query of URL-valued ones.
    pub(crate) fn apply(&self, headers: &mut [Header], query: &QueryRule, masker: &Masker, st: &mut RedactionStats) {
        for h in headers {
            if self.matches(&h.name) {
                if !h.value.is_empty() && !is_mask(&h.value) {
                    h.value = masker.mask(h.value.as_bytes());
                    st.headers += 1;
                }
            } else if URL_HEADERS.iter().any(|u| h.name.trim().eq_ignore_ascii_case(u))
                && let (Some(masked), n) = query.mask_url(&h.value, masker)
            {
                h.value = masked;
                st.query_params += n;
            }
        }
    }
}
