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
        // Lowercased on the stack: this runs for every header of every stored message.
        let name = name.trim();
        let mut buf = [0u8; 64];
        let owned;
        let name: &str = match buf.get_mut(..name.len()) {
            Some(b) => {
                b.copy_from_slice(name.as_bytes());
                b.make_ascii_lowercase();
                // ASCII lowercasing keeps UTF-8 valid.
                std::str::from_utf8(b).unwrap_or(name)
            }
            None => {
                owned = name.to_ascii_lowercase();
                &owned
            }
        };
        self.names.iter().any(|n| n == name)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_in_any_case_and_length() {
        let m = HeaderMatcher::new(&HeaderRule {
            names: vec!["Authorization".into()],
            suffixes: vec!["-Token".into()],
            substrings: vec!["apikey".into()],
        })
        .unwrap();
        for name in ["authorization", "AUTHORIZATION", " Authorization ", "x-goog-iam-token", "X-APIKEY-v2"] {
            assert!(m.matches(name), "{name}");
        }
        // Longer than the stack buffer: lowercased on the heap, same answers.
        let long = format!("x-{}-TOKEN", "a".repeat(100));
        assert!(m.matches(&long));
        assert!(!m.matches(&format!("x-{}", "b".repeat(100))));
        for name in ["accept", "authorizations", "token-x", ""] {
            assert!(!m.matches(name), "{name}");
        }
        // Non-ASCII names stay valid UTF-8 when lowercased in place.
        assert!(!m.matches("x-ÄPIKEY"));
        assert!(m.matches("x-é-apikey"));
    }
}
