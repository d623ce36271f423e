//! Masking inside JSON bodies without re-serialising them.
//!
//! A small validating scanner walks the body once, tracking for every [`JsonPath`] which of its
//! steps are active, and records edits: a selected value (whatever its type) becomes the mask as
//! a JSON string; a string or number value in which a body pattern matches becomes the masked
//! text as a JSON string. The edits are then spliced into the original bytes, so keys, key
//! order, duplicates, formatting and untouched numbers stay exactly as sent, and a body without
//! edits is not touched at all. Every replacement is a complete JSON value, so valid JSON stays
//! valid.
//!
//! A body cut short (a prefix of valid JSON, as the capture cap produces) is reported as
//! [`End::Truncated`]: its selected values up to the cut can still be masked.

use super::body::Patterns;
use super::json_path::{Elem, JsonPath};
use super::mask::{Masker, is_mask};

/// Deepest nesting followed (as serde_json's default recursion limit); deeper is invalid.
const MAX_DEPTH: usize = 128;

/// Why an edit is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EditKind {
    /// A value selected by a JSON path.
    Field,
    /// A string or number value with this many pattern matches.
    Pattern(usize),
}

/// Replace `start..end` of the body with `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edit {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) text: String,
    pub(crate) kind: EditKind,
}

/// How the scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The body is one valid JSON value (plus whitespace).
    Complete,
    /// The body is a proper prefix of a JSON value.
    Truncated,
    /// The body is not JSON.
    Invalid,
}

/// Edits in body order (non-overlapping) and how the scan ended.
pub(crate) struct Scanned {
    pub(crate) edits: Vec<Edit>,
    pub(crate) end: End,
}

enum Stop {
    Eof,
    Invalid,
}

/// Scans `s`, selecting values with `paths` and rewriting strings and numbers with `patterns`.
pub(crate) fn scan(s: &[u8], paths: &[JsonPath], patterns: &Patterns, masker: &Masker) -> Scanned {
    let mut sc = Scanner { s, pos: 0, paths, patterns, masker, quiet: 0, edits: Vec::new() };
    let start: Vec<u64> = paths.iter().map(JsonPath::start).collect();
    let result = sc.value(&start, 0).and_then(|()| {
        sc.ws();
        if sc.pos == s.len() { Ok(()) } else { Err(Stop::Invalid) }
    });
    let end = match result {
        Ok(()) => End::Complete,
        Err(Stop::Eof) => End::Truncated,
        Err(Stop::Invalid) => End::Invalid,
    };
    Scanned { edits: sc.edits, end }
}

/// `s` with the given (ordered, non-overlapping) edits applied.
pub(crate) fn splice<'e>(s: &[u8], edits: impl IntoIterator<Item = &'e Edit>) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 64);
    let mut at = 0;
    for e in edits {
        if e.start < at || e.end > s.len() || e.start > e.end {
            continue; // cannot happen for scanner output; never panic on it
        }
        out.extend_from_slice(&s[at..e.start]);
        out.extend_from_slice(e.text.as_bytes());
        at = e.end;
    }
    out.extend_from_slice(&s[at..]);
    out
}

struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
    paths: &'a [JsonPath],
    patterns: &'a Patterns,
    masker: &'a Masker,
    /// Inside a selected value: validate only, record nothing.
    quiet: u32,
    edits: Vec<Edit>,
}

type Res = Result<(), Stop>;

impl Scanner<'_> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Result<u8, Stop> {
        self.s.get(self.pos).copied().ok_or(Stop::Eof)
    }

    fn value(&mut self, states: &[u64], depth: usize) -> Res {
        if depth > MAX_DEPTH {
            return Err(Stop::Invalid);
        }
        self.ws();
        let start = self.pos;
        let c = self.peek()?;
        if self.paths.iter().zip(states).any(|(p, st)| p.selected(*st)) {
            return self.mask_selected(start, depth);
        }
        match c {
            b'{' => self.object(states, depth),
            b'[' => self.array(states, depth),
            b'"' => {
                let end = self.string()?;
                let text = decode_string(&self.s[start..end])?;
                self.rewrite(start, end, text.as_bytes());
                Ok(())
            }
            _ => {
                let end = self.scalar(depth)?;
                if matches!(c, b'-' | b'0'..=b'9') {
                    let s = self.s;
                    self.rewrite(start, end, &s[start..end]);
                }
                Ok(())
            }
        }
    }

    /// Replaces the value at `start` (selected by a path) with its mask.
    fn mask_selected(&mut self, start: usize, depth: usize) -> Res {
        self.quiet += 1;
        let skipped = self.value(&[], depth);
        self.quiet -= 1;
        let end = match skipped {
            Ok(()) => self.pos,
            Err(Stop::Eof) => self.s.len(),
            Err(Stop::Invalid) => return Err(Stop::Invalid),
        };
        let raw = &self.s[start..end];
        let secret = match (skipped.is_ok() && raw.first() == Some(&b'"')).then(|| decode_string(raw)) {
            Some(Ok(text)) if is_mask(&text) => return Ok(()),
            Some(Ok(text)) => text.into_bytes(),
            _ => raw.to_vec(),
        };
        self.push(start, end, &self.masker.mask(&secret), EditKind::Field);
        skipped
    }

    /// Applies the body patterns to a string or number value.
    fn rewrite(&mut self, start: usize, end: usize, text: &[u8]) {
        if self.quiet > 0 {
            return;
        }
        if let Some((new, n)) = self.patterns.replace(text, self.masker) {
            self.push(start, end, &String::from_utf8_lossy(&new), EditKind::Pattern(n));
        }
    }

    fn push(&mut self, start: usize, end: usize, text: &str, kind: EditKind) {
        if self.quiet == 0 {
            let text = serde_json::Value::String(text.to_string()).to_string();
            self.edits.push(Edit { start, end, text, kind });
        }
    }

    fn object(&mut self, states: &[u64], depth: usize) -> Res {
        self.pos += 1;
        self.ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek()? != b'"' {
                return Err(Stop::Invalid);
            }
            let key_start = self.pos;
            let key_end = self.string()?;
            let key = decode_string(&self.s[key_start..key_end])?;
            self.ws();
            if self.peek()? != b':' {
                return Err(Stop::Invalid);
            }
            self.pos += 1;
            let child: Vec<u64> =
                self.paths.iter().zip(states).map(|(p, st)| p.advance(*st, Elem::Key(&key))).collect();
            self.value(&child, depth + 1)?;
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Stop::Invalid),
            }
        }
    }

    fn array(&mut self, states: &[u64], depth: usize) -> Res {
        self.pos += 1;
        self.ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            let child: Vec<u64> =
                self.paths.iter().zip(states).map(|(p, st)| p.advance(*st, Elem::Index(index))).collect();
            self.value(&child, depth + 1)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    index += 1;
                }
                b']' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Stop::Invalid),
            }
        }
    }

    /// Skips a string starting at the opening quote; returns the index after the closing one.
    fn string(&mut self) -> Result<usize, Stop> {
        let mut i = self.pos + 1;
        loop {
            match self.s.get(i) {
                None => return Err(Stop::Eof),
                Some(b'\\') => i += 2,
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(self.pos);
                }
                Some(_) => i += 1,
            }
        }
    }

    /// Skips and validates a number or literal; returns its end.
    fn scalar(&mut self, depth: usize) -> Result<usize, Stop> {
        let start = self.pos;
        while let Some(c) = self.s.get(self.pos) {
            if matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.pos += 1;
        }
        let token = &self.s[start..self.pos];
        if self.pos == self.s.len() && depth > 0 {
            // A token running into the end of a nested value may be cut (`tr`, `12` of `123`).
            return Err(if is_token_prefix(token) { Stop::Eof } else { Stop::Invalid });
        }
        let valid = matches!(token.first(), Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n'))
            && serde_json::from_slice::<serde::de::IgnoredAny>(token).is_ok();
        if valid { Ok(self.pos) } else { Err(Stop::Invalid) }
    }
}

/// Whether `t` can be the beginning of a number or literal.
fn is_token_prefix(t: &[u8]) -> bool {
    let number = matches!(t.first(), Some(b'-' | b'0'..=b'9'))
        && t.iter().all(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'));
    let literal = ["true", "false", "null"].iter().any(|l| l.as_bytes().starts_with(t));
    !t.is_empty() && (number || literal)
}

/// Decodes a JSON string literal (with its quotes).
fn decode_string(raw: &[u8]) -> Result<String, Stop> {
    serde_json::from_slice::<String>(raw).map_err(|_| Stop::Invalid)
}
