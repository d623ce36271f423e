//! Body redaction: what kind of body it is, and masking JSON fields, form fields and pattern
//! matches without corrupting it.
//!
//! - JSON (declared `*/json` / `*+json`, or starting with `{` / `[`): paths and patterns are
//!   applied by [`super::json`]. A cut JSON body has its selected fields up to the cut masked,
//!   then the patterns run over the raw text; a body that is not JSON after all is treated as
//!   below.
//! - `application/x-www-form-urlencoded`: listed query parameter names are masked, then patterns.
//! - Other textual bodies (a `text/*`, xml, yaml, javascript, graphql, csv... type, or no type
//!   and valid UTF-8): patterns only.
//! - Anything else (images, protobuf, octet-stream, multipart) is left alone: replacing bytes in
//!   it could corrupt it.

use std::borrow::Cow;

use regex::bytes::{Captures, Regex};

use super::json::{self, EditKind, End};
use super::json_path::JsonPath;
use super::mask::Masker;
use super::query::QueryRule;
use super::{RedactError, RedactionStats};

/// Compiled body patterns.
#[derive(Debug, Clone)]
pub(crate) struct Patterns {
    list: Vec<Regex>,
}

impl Patterns {
    /// Compiles every pattern; an invalid one, or one matching the empty string, is an error
    /// naming it.
    pub(crate) fn compile(sources: &[String]) -> Result<Self, RedactError> {
        let mut list = Vec::with_capacity(sources.len());
        for src in sources {
            let re =
                Regex::new(src).map_err(|e| RedactError::BadPattern { pattern: src.clone(), reason: e.to_string() })?;
            if re.is_match(b"") {
                return Err(RedactError::BadPattern {
                    pattern: src.clone(),
                    reason: "matches the empty string".into(),
                });
            }
            list.push(re);
        }
        Ok(Patterns { list })
    }

    /// `hay` with every (non-empty) match of every pattern masked, and the number of matches;
    /// `None` when nothing matched.
    pub(crate) fn replace(&self, hay: &[u8], masker: &Masker) -> Option<(Vec<u8>, usize)> {
        let mut cur: Cow<'_, [u8]> = Cow::Borrowed(hay);
        let mut total = 0;
        for re in &self.list {
            let mut n = 0;
            let replaced = re.replace_all(&cur, |c: &Captures<'_>| {
                let m = c.get(0).map(|m| m.as_bytes()).unwrap_or_default();
                if m.is_empty() {
                    return Vec::new();
                }
                n += 1;
                masker.mask(m).into_bytes()
            });
            if let Cow::Owned(v) = replaced
                && n > 0
            {
                cur = Cow::Owned(v);
                total += n;
            }
        }
        (total > 0).then(|| (cur.into_owned(), total))
    }
}

/// The pieces of a [`super::Redactor`] bodies need.
pub(crate) struct BodyRules<'a> {
    pub(crate) json_paths: &'a [JsonPath],
    pub(crate) patterns: &'a Patterns,
    pub(crate) query: &'a QueryRule,
    pub(crate) masker: &'a Masker,
}

impl BodyRules<'_> {
    /// Masks `body` (already free of any content coding) in place, counting into `st`.
    pub(crate) fn apply(&self, content_type: Option<&str>, body: &mut Vec<u8>, st: &mut RedactionStats) {
        if body.is_empty() {
            return;
        }
        let essence = content_type.map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        let essence = essence.as_deref();
        let declared_json = essence.is_some_and(|t| t.ends_with("/json") || t.ends_with("+json"));
        if declared_json || looks_like_json(body) {
            let scanned = json::scan(body, self.json_paths, self.patterns, self.masker);
            match scanned.end {
                End::Complete => {
                    for e in &scanned.edits {
                        match e.kind {
                            EditKind::Field => st.json_fields += 1,
                            EditKind::Pattern(n) => st.pattern_matches += n,
                        }
                    }
                    if !scanned.edits.is_empty() {
                        *body = json::splice(body, &scanned.edits);
                    }
                    return;
                }
                End::Truncated => {
                    let fields: Vec<_> = scanned.edits.into_iter().filter(|e| e.kind == EditKind::Field).collect();
                    st.json_fields += fields.len();
                    if !fields.is_empty() {
                        *body = json::splice(body, &fields);
                    }
                    self.patterns_over(body, st);
                    return;
                }
                End::Invalid => {}
            }
        }
        let textual = match essence {
            Some(t) => declared_json || is_textual(t),
            None => is_utf8_prefix(body),
        };
        if !textual {
            return;
        }
        if essence == Some("application/x-www-form-urlencoded")
            && let Ok(text) = std::str::from_utf8(body)
            && let (Some(masked), n) = self.query.mask_pairs(text, self.masker)
        {
            *body = masked.into_bytes();
            st.form_fields += n;
        }
        self.patterns_over(body, st);
    }

    fn patterns_over(&self, body: &mut Vec<u8>, st: &mut RedactionStats) {
        if let Some((new, n)) = self.patterns.replace(body, self.masker) {
            *body = new;
            st.pattern_matches += n;
        }
    }
}

fn looks_like_json(body: &[u8]) -> bool {
    matches!(body.iter().find(|c| !c.is_ascii_whitespace()), Some(b'{' | b'['))
}

/// Whether a media type (lowercased, without parameters) is text.
fn is_textual(essence: &str) -> bool {
    const TEXT_SUBTYPES: &[&str] =
        &["json", "xml", "yaml", "javascript", "ecmascript", "graphql", "csv", "x-www-form-urlencoded", "html"];
    let (ty, sub) = essence.split_once('/').unwrap_or((essence, ""));
    ty == "text" || TEXT_SUBTYPES.iter().any(|k| sub.contains(k))
}

/// Valid UTF-8, except perhaps for a character cut at the end.
fn is_utf8_prefix(b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}
