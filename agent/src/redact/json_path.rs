//! The JSON path language of [`super::RedactionConfig::json_paths`] and its matcher.
//!
//! Grammar: an optional `$`, then steps: `.key` or a bare leading `key`, `..key` (the key at any
//! depth below), `.*` / `[*]` (every member or element), `[N]` (one element) and `['key']` /
//! `["key"]` (a key with odd characters). Keys compare ASCII case-insensitively.
//!
//! Matching is an NFA over the steps: each path's set of active steps is a bitmask, advanced
//! once per object member or array element entered, so nested descendant steps stay linear.

/// Most steps in one path (the active set is a `u64` bitmask with one bit for "matched").
const MAX_STEPS: usize = 63;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// An object member (lowercased key).
    Key(String),
    /// An object member at any depth (lowercased key).
    Descendant(String),
    /// One array element.
    Index(usize),
    /// Every array element (`[*]`).
    AnyIndex,
    /// Every member or element (`.*`).
    Any,
}

/// Where the scanner is: inside an object member or an array element.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Elem<'a> {
    /// An object member with this (decoded) key.
    Key(&'a str),
    /// An array element.
    Index(usize),
}

/// A compiled path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `src`; the error says what is wrong with it.
    pub(crate) fn parse(src: &str) -> Result<Self, String> {
        let s = src.trim();
        let mut rest = s.strip_prefix('$').unwrap_or(s);
        let mut steps = Vec::new();
        if s.starts_with('$') {
            if rest.is_empty() {
                return Err("selects the whole document".into());
            }
        } else if !rest.starts_with('[') {
            // A bare leading key: `user.password`.
            let (key, tail) = take_key(rest)?;
            steps.push(key_step(key, false));
            rest = tail;
        }
        while !rest.is_empty() {
            if let Some(tail) = rest.strip_prefix("..") {
                let (key, tail) = take_key(tail)?;
                if key == "*" {
                    return Err("`..*` would mask everything".into());
                }
                steps.push(key_step(key, true));
                rest = tail;
            } else if let Some(tail) = rest.strip_prefix('.') {
                let (key, tail) = take_key(tail)?;
                steps.push(key_step(key, false));
                rest = tail;
            } else if let Some(tail) = rest.strip_prefix('[') {
                let (step, tail) = take_bracket(tail)?;
                steps.push(step);
                rest = tail;
            } else {
                return Err(format!("unexpected `{rest}`"));
            }
        }
        if steps.is_empty() {
            return Err("no steps".into());
        }
        if steps.len() > MAX_STEPS {
            return Err(format!("more than {MAX_STEPS} steps"));
        }
        Ok(JsonPath { steps })
    }

    /// The active set at the document root.
    pub(crate) fn start(&self) -> u64 {
        1
    }

    /// Whether the active set `state` means the current value is selected.
    pub(crate) fn selected(&self, state: u64) -> bool {
        state & (1 << self.steps.len()) != 0
    }

    /// The active set after entering `elem` from a value whose active set is `state`.
    pub(crate) fn advance(&self, state: u64, elem: Elem<'_>) -> u64 {
        let mut next = 0;
        for (i, step) in self.steps.iter().enumerate() {
            if state & (1 << i) == 0 {
                continue;
            }
            let hit = match (step, elem) {
                (Step::Key(k), Elem::Key(e)) => e.eq_ignore_ascii_case(k),
                (Step::Descendant(k), e) => {
                    next |= 1 << i; // keep looking deeper
                    matches!(e, Elem::Key(e) if e.eq_ignore_ascii_case(k))
                }
                (Step::Index(n), Elem::Index(j)) => *n == j,
                (Step::AnyIndex, Elem::Index(_)) | (Step::Any, _) => true,
                _ => false,
            };
            if hit {
                next |= 1 << (i + 1);
            }
        }
        next
    }
}

fn key_step(key: &str, descendant: bool) -> Step {
    match (key, descendant) {
        ("*", false) => Step::Any,
        (k, false) => Step::Key(k.to_ascii_lowercase()),
        (k, true) => Step::Descendant(k.to_ascii_lowercase()),
    }
}

/// A dotted key: everything up to the next `.` or `[`.
fn take_key(s: &str) -> Result<(&str, &str), String> {
    let end = s.find(['.', '[', ']']).unwrap_or(s.len());
    if end == 0 {
        return Err(format!("expected a key at `{s}`"));
    }
    if s[end..].starts_with(']') {
        return Err("unexpected `]`".into());
    }
    Ok((&s[..end], &s[end..]))
}

/// The inside of `[...]` (the `[` already consumed) and what follows the `]`.
fn take_bracket(s: &str) -> Result<(Step, &str), String> {
    if let Some(quote) = s.chars().next().filter(|c| *c == '\'' || *c == '"') {
        let inner = &s[1..];
        let end = inner.find(quote).ok_or("unterminated quoted key")?;
        let tail = inner[end + 1..].strip_prefix(']').ok_or("expected `]` after a quoted key")?;
        let key = &inner[..end];
        if key.is_empty() {
            return Err("empty quoted key".into());
        }
        return Ok((Step::Key(key.to_ascii_lowercase()), tail));
    }
    let end = s.find(']').ok_or("unterminated `[`")?;
    let inner = s[..end].trim();
    let step = if inner == "*" {
        Step::AnyIndex
    } else {
        Step::Index(inner.parse().map_err(|_| format!("bad array index `{inner}`"))?)
    };
    Ok((step, &s[end + 1..]))
}
