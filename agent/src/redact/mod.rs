//! Redaction of sensitive data in captured HTTP transactions.
//!
//! Sans-I/O: a [`Redactor`] is compiled once from a [`RedactionConfig`] and masks a
//! [`Transaction`] in place (headers, trailers, the request target's query, JSON fields and
//! regex matches in bodies) before anything is stored or emitted.
//!
//! A masked value becomes `[REDACTED]`, or with a hash key `[REDACTED:hmac-sha256:<16 hex>]`
//! (the first 64 bits of HMAC-SHA256 over the secret), so equal secrets can be correlated. Values
//! that already are masks are left alone, so redacting twice changes nothing.
//!
//! Bodies in a [`Transaction`] are raw: [`Redactor::apply`] masks only bodies without a content
//! coding (counting the others in [`RedactionStats::skipped_encoded_bodies`]); the capture
//! plugin masks decoded bodies with [`Redactor::apply_to_body`]. Masking never corrupts a body:
//! valid JSON stays valid JSON (masks are spliced in as JSON strings, untouched bytes stay as
//! sent), and bodies that are not text are not touched. [`crate::txn::Body::len`] keeps counting
//! the bytes seen on the wire.

mod body;
mod config;
mod headers;
mod json;
mod json_path;
mod mask;
mod query;

#[cfg(test)]
mod tests;

pub use config::{
    DEFAULT_BODY_PATTERNS, DEFAULT_HEADER_NAMES, DEFAULT_HEADER_SUBSTRINGS, DEFAULT_HEADER_SUFFIXES,
    DEFAULT_JSON_PATHS, DEFAULT_QUERY_PARAMS, HeaderRule, RedactionConfig,
};
pub use mask::PLAIN_MASK;

use crate::proto::http1::Header;
use crate::txn::Transaction;

use body::{BodyRules, Patterns};
use headers::HeaderMatcher;
use json_path::JsonPath;
use mask::Masker;
use query::QueryRule;

/// A configuration that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedactError {
    /// A body pattern is not a valid regex, or matches the empty string.
    #[error("invalid body pattern `{pattern}`: {reason}")]
    BadPattern {
        /// The pattern as configured.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON path does not parse.
    #[error("invalid JSON path `{path}`: {reason}")]
    BadJsonPath {
        /// The path as configured.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An empty header name, suffix or substring, or query parameter name.
    #[error("empty {list} in the redaction config")]
    EmptyEntry {
        /// Which list.
        list: &'static str,
    },
    /// The hash key is empty.
    #[error("the redaction hash key is empty")]
    EmptyHashKey,
}

/// How many values [`Redactor::apply`] masked, per kind, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedactionStats {
    /// Header and trailer values.
    pub headers: usize,
    /// Query parameter values (and URL userinfo passwords) in the target and URL-valued headers.
    pub query_params: usize,
    /// JSON values selected by a path.
    pub json_fields: usize,
    /// Fields of `application/x-www-form-urlencoded` bodies.
    pub form_fields: usize,
    /// Body pattern matches.
    pub pattern_matches: usize,
    /// Non-empty bodies left unmasked because they carry a content (or transfer) coding; they
    /// are for [`Redactor::apply_to_body`] once decoded.
    pub skipped_encoded_bodies: usize,
}

impl RedactionStats {
    /// Values masked, of every kind.
    pub fn total(&self) -> usize {
        self.headers + self.query_params + self.json_fields + self.form_fields + self.pattern_matches
    }
}

/// A compiled [`RedactionConfig`].
#[derive(Debug, Clone)]
pub struct Redactor {
    headers: HeaderMatcher,
    query: QueryRule,
    json_paths: Vec<JsonPath>,
    patterns: Patterns,
    masker: Masker,
}

impl Redactor {
    /// Compiles `cfg`; a bad pattern, path or empty entry is an error naming it.
    pub fn new(cfg: &RedactionConfig) -> Result<Self, RedactError> {
        if cfg.query_params.iter().any(|p| p.trim().is_empty()) {
            return Err(RedactError::EmptyEntry { list: "query parameter name" });
        }
        if cfg.hash_key.as_ref().is_some_and(|k| k.is_empty()) {
            return Err(RedactError::EmptyHashKey);
        }
        let json_paths = cfg
            .json_paths
            .iter()
            .map(|p| JsonPath::parse(p).map_err(|reason| RedactError::BadJsonPath { path: p.clone(), reason }))
            .collect::<Result<_, _>>()?;
        Ok(Redactor {
            headers: HeaderMatcher::new(&cfg.headers)?,
            query: QueryRule::new(&cfg.query_params),
            json_paths,
            patterns: Patterns::compile(&cfg.body_patterns)?,
            masker: Masker::new(cfg.hash_key.clone()),
        })
    }

    /// Masks `txn` in place: request/response headers and trailers (order and count kept), the
    /// query of the request target and of URL-valued headers (`:path`, `Location`,
    /// `Content-Location`, `Referer`), and JSON fields, form fields and pattern matches in
    /// bodies without a content coding. Returns counts per kind.
    pub fn apply(&self, txn: &mut Transaction) -> RedactionStats {
        let mut st = RedactionStats::default();
        if let (Some(target), n) = self.query.mask_url(&txn.request.target, &self.masker) {
            txn.request.target = target;
            st.query_params += n;
        }
        let header_lists = [
            Some(&mut txn.request.headers),
            Some(&mut txn.request_trailers),
            txn.response.as_mut().map(|r| &mut r.headers),
            Some(&mut txn.response_trailers),
        ];
        for hs in header_lists.into_iter().flatten() {
            self.headers.apply(hs, &self.query, &self.masker, &mut st);
        }
        self.message_body(&txn.request.headers, &mut txn.request_body.bytes, &mut st);
        let res_headers = txn.response.as_ref().map(|r| r.headers.as_slice()).unwrap_or(&[]);
        self.message_body(res_headers, &mut txn.response_body.bytes, &mut st);
        st
    }

    /// Masks a decoded body of the given Content-Type (JSON fields, form fields, pattern
    /// matches); returns how many values were masked.
    pub fn apply_to_body(&self, content_type: Option<&str>, body: &mut Vec<u8>) -> usize {
        let mut st = RedactionStats::default();
        self.body_rules().apply(content_type, body, &mut st);
        st.total()
    }

    /// Whether the header `name` may appear in events at all: false for every header the
    /// configured [`HeaderRule`] masks, whatever else is configured (a keyed mask is still
    /// derived from the secret, so events carry neither the value nor its mask).
    pub fn header_allowed_in_events(&self, name: &str) -> bool {
        !self.headers.matches(name)
    }

    /// `url` with the values of listed query parameters (and a userinfo password) masked; the
    /// fragment is kept as is.
    pub fn url(&self, url: &str) -> String {
        self.query.mask_url(url, &self.masker).0.unwrap_or_else(|| url.to_string())
    }

    fn body_rules(&self) -> BodyRules<'_> {
        BodyRules { json_paths: &self.json_paths, patterns: &self.patterns, query: &self.query, masker: &self.masker }
    }

    fn message_body(&self, headers: &[Header], body: &mut Vec<u8>, st: &mut RedactionStats) {
        if body.is_empty() {
            return;
        }
        if is_encoded(headers) {
            st.skipped_encoded_bodies += 1;
            return;
        }
        let content_type = headers.iter().find(|h| h.name.trim().eq_ignore_ascii_case("content-type"));
        self.body_rules().apply(content_type.map(|h| h.value.as_str()), body, st);
    }
}

/// Whether the body still carries a content coding (or a transfer coding other than chunked).
fn is_encoded(headers: &[Header]) -> bool {
    headers.iter().any(|h| {
        let name = h.name.trim();
        let allowed: &[&str] = if name.eq_ignore_ascii_case("content-encoding") {
            &["identity"]
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            &["identity", "chunked"]
        } else {
            return false;
        };
        h.value.split(',').map(str::trim).any(|c| !c.is_empty() && !allowed.iter().any(|a| c.eq_ignore_ascii_case(a)))
    })
}
