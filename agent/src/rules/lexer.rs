//! Tokenizer for rule text.
//!
//! Mirrors Rulekit's Ragel scanner (`lexer.rl`): at every position the longest token wins, and
//! a tie goes to the earlier kind in this order: keyword, int, float, bool, IP, CIDR, hex
//! string, identifier, field. That is why `ab` and `12:34` are hex strings, `10.0.0.1` is an IP
//! rather than the float `10.0`, `index` is a field rather than `in` + `dex`, and
//! `http.req.headers.user-agent` is one field (fields may contain `.` and `-`).
//!
//! Whitespace, `-- line comments` and `/* block comments */` are skipped.

use std::net::IpAddr;

use super::RuleError;

/// What a token is. Literal values are decoded by the parser from the token text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    /// A lone `.`, only meaningful after `]` in a field path (`items[0].name`).
    Dot,
    Not,
    And,
    Or,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
    Matches,
    In,
    Int,
    Float,
    Bool,
    Str,
    Ip,
    Cidr,
    Hex,
    Regex,
    /// `[A-Za-z_][A-Za-z0-9_]*`: a field, or a function/macro name when followed by `(`.
    Ident,
    /// An identifier containing `.` or `-`: always a field.
    Field,
    Eof,
}

/// One token: its kind and its byte span in the rule text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// Splits `src` into tokens, ending with one [`Kind::Eof`] token.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, RuleError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        pos = skip_trivia(src, pos);
        if pos >= bytes.len() {
            out.push(Token { kind: Kind::Eof, start: bytes.len(), end: bytes.len() });
            return Ok(out);
        }
        let (kind, len) = next_token(src, pos)?;
        out.push(Token { kind, start: pos, end: pos + len });
        pos += len;
    }
}

/// Skips whitespace and comments starting at `pos`; returns the next significant position.
fn skip_trivia(src: &str, mut pos: usize) -> usize {
    let bytes = src.as_bytes();
    loop {
        match bytes.get(pos) {
            Some(b' ' | b'\t' | b'\n' | b'\r') => pos += 1,
            Some(b'-') if bytes.get(pos + 1) == Some(&b'-') => {
                pos = src[pos..].find('\n').map_or(bytes.len(), |i| pos + i + 1);
            }
            Some(b'/') if bytes.get(pos + 1) == Some(&b'*') => match src[pos + 2..].find("*/") {
                Some(i) => pos = pos + 2 + i + 2,
                // Unterminated: not a comment; the scanner then sees a regex literal.
                None => return pos,
            },
            _ => return pos,
        }
    }
}

fn err(src: &str, pos: usize, message: impl Into<String>) -> RuleError {
    RuleError::at(src, pos, message)
}

/// Scans the token at `pos` (not whitespace, not end of input).
fn next_token(src: &str, pos: usize) -> Result<(Kind, usize), RuleError> {
    let bytes = src.as_bytes();
    let rest = &src[pos..];
    let at = |i: usize| bytes.get(pos + i).copied();
    let single = |k| Ok((k, 1));
    match bytes[pos] {
        b'(' => single(Kind::LParen),
        b')' => single(Kind::RParen),
        b'[' => single(Kind::LBracket),
        b']' => single(Kind::RBracket),
        b',' => single(Kind::Comma),
        b'!' if at(1) == Some(b'=') => Ok((Kind::Ne, 2)),
        b'!' => single(Kind::Not),
        b'&' if at(1) == Some(b'&') => Ok((Kind::And, 2)),
        b'|' if at(1) == Some(b'|') => Ok((Kind::Or, 2)),
        b'|' => delimited(src, pos, b'|', Kind::Regex, "unterminated |regex| literal"),
        b'=' if at(1) == Some(b'=') => Ok((Kind::Eq, 2)),
        b'=' if at(1) == Some(b'~') => Ok((Kind::Matches, 2)),
        b'=' => Err(err(src, pos, "unexpected \"=\"; compare with \"==\"")),
        b'<' if at(1) == Some(b'=') => Ok((Kind::Le, 2)),
        b'<' => single(Kind::Lt),
        b'>' if at(1) == Some(b'=') => Ok((Kind::Ge, 2)),
        b'>' => single(Kind::Gt),
        q @ (b'"' | b'\'') => delimited(src, pos, q, Kind::Str, "unterminated string"),
        b'/' => delimited(src, pos, b'/', Kind::Regex, "unterminated /regex/ literal"),
        b'.' if !at(1).is_some_and(|b| b.is_ascii_digit()) => single(Kind::Dot),
        b'&' => Err(err(src, pos, "unexpected \"&\"; use \"&&\" or \"and\"")),
        _ => match longest_atom(rest) {
            Some(found) => Ok(found),
            None => {
                let ch = rest.chars().next().unwrap_or('?');
                Err(err(src, pos, format!("unexpected character {ch:?}")))
            }
        },
    }
}

/// A quoted string or regex literal: `delim` ... `delim`, where a backslash escapes any
/// following character.
fn delimited(src: &str, pos: usize, delim: u8, kind: Kind, unterminated: &str) -> Result<(Kind, usize), RuleError> {
    let bytes = src.as_bytes();
    let mut i = pos + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == delim => return Ok((kind, i + 1 - pos)),
            _ => i += 1,
        }
    }
    Err(err(src, pos, unterminated))
}

/// Words that are operators when they stand alone (case-insensitive).
const KEYWORDS: &[(&str, Kind)] = &[
    ("not", Kind::Not),
    ("and", Kind::And),
    ("or", Kind::Or),
    ("eq", Kind::Eq),
    ("ne", Kind::Ne),
    ("lt", Kind::Lt),
    ("le", Kind::Le),
    ("gt", Kind::Gt),
    ("ge", Kind::Ge),
    ("contains", Kind::Contains),
    ("matches", Kind::Matches),
    ("in", Kind::In),
];

/// Longest match among numbers, addresses, hex strings, booleans, keywords and identifiers.
/// Candidates are listed in tie-break order; the first of the longest wins.
fn longest_atom(s: &str) -> Option<(Kind, usize)> {
    let ident = ident_len(s, false);
    let field = ident_len(s, true);
    let word = &s[..ident];
    let whole_word = ident > 0 && ident == field;
    let keyword = KEYWORDS.iter().find(|(kw, _)| whole_word && word.eq_ignore_ascii_case(kw)).map(|&(_, k)| (k, ident));
    let boolean = (whole_word && (word.eq_ignore_ascii_case("true") || word.eq_ignore_ascii_case("false")))
        .then_some((Kind::Bool, ident));
    let ip = ip_len(s);
    let candidates = [
        keyword,
        Some((Kind::Int, int_len(s))),
        Some((Kind::Float, float_len(s))),
        boolean,
        Some((Kind::Ip, ip)),
        Some((Kind::Cidr, cidr_len(s, ip))),
        Some((Kind::Hex, hex_len(s))),
        Some((Kind::Ident, ident)),
        Some((Kind::Field, field)),
    ];
    let mut best: Option<(Kind, usize)> = None;
    for (kind, len) in candidates.into_iter().flatten() {
        if len > 0 && best.is_none_or(|(_, l)| len > l) {
            best = Some((kind, len));
        }
    }
    best
}

fn digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

fn sign_len(s: &[u8]) -> usize {
    usize::from(matches!(s.first(), Some(b'+' | b'-')))
}

/// `[+-]?[0-9]+`
fn int_len(s: &str) -> usize {
    let b = s.as_bytes();
    let sign = sign_len(b);
    match digits(&b[sign..]) {
        0 => 0,
        n => sign + n,
    }
}

/// `[+-]?[0-9]*\.[0-9]+`
fn float_len(s: &str) -> usize {
    let b = s.as_bytes();
    let sign = sign_len(b);
    let int = digits(&b[sign..]);
    let dot = sign + int;
    if b.get(dot) != Some(&b'.') {
        return 0;
    }
    match digits(&b[dot + 1..]) {
        0 => 0,
        n => dot + 1 + n,
    }
}

/// Longest prefix that is an IPv4 or IPv6 address (the longest IPv6 text is 45 characters).
fn ip_len(s: &str) -> usize {
    let run = s.bytes().take(45).take_while(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.').count();
    (2..=run).rev().find(|&n| s[..n].parse::<IpAddr>().is_ok()).unwrap_or(0)
}

/// An IP followed by `/` and a 1–3 digit prefix length.
fn cidr_len(s: &str, ip: usize) -> usize {
    let b = s.as_bytes();
    if ip == 0 || b.get(ip) != Some(&b'/') {
        return 0;
    }
    match digits(&b[ip + 1..]).min(3) {
        0 => 0,
        n => ip + 1 + n,
    }
}

/// `hh(:hh)*`
fn hex_len(s: &str) -> usize {
    let b = s.as_bytes();
    let pair =
        |i: usize| b.get(i).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit);
    if !pair(0) {
        return 0;
    }
    let mut len = 2;
    while b.get(len) == Some(&b':') && pair(len + 1) {
        len += 3;
    }
    len
}

/// `[A-Za-z_][A-Za-z0-9_]*`, or with `dotted` also allowing `.` and `-` after the first byte.
fn ident_len(s: &str, dotted: bool) -> usize {
    let b = s.as_bytes();
    if !b.first().is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') {
        return 0;
    }
    1 + b[1..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || (dotted && (**c == b'.' || **c == b'-')))
        .count()
}
