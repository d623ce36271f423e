//! Body framing (RFC 9112 §6), chunk-size lines, and resynchronisation after errors.

use super::{Header, Side};

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Content-Length: this many bytes left.
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked(Chunk),
    /// Until the sender closes (responses only).
    UntilClose,
}

impl Body {
    /// Skips `n` lost bytes. `Some(Some(b))`: still inside the body; `Some(None)`: the body
    /// ended exactly; `None`: the gap went past what we can account for (resync).
    pub fn skip(&self, n: u64) -> Option<Option<Body>> {
        match *self {
            Body::Length(left) if n < left => Some(Some(Body::Length(left - n))),
            Body::Length(left) if n == left => Some(None),
            Body::Chunked(Chunk::Data(left)) if n < left => Some(Some(Body::Chunked(Chunk::Data(left - n)))),
            Body::Chunked(Chunk::Data(left)) if n == left => Some(Some(Body::Chunked(Chunk::DataEnd))),
            Body::UntilClose => Some(Some(Body::UntilClose)),
            _ => None,
        }
    }
}

fn header<'a>(hs: &'a [Header], name: &'static str) -> impl Iterator<Item = &'a str> {
    hs.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

fn is_chunked(hs: &[Header]) -> bool {
    // The last transfer coding decides (RFC 9112 §6.3).
    header(hs, "transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .last()
        .is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
}

fn content_length(hs: &[Header]) -> Result<Option<u64>, ()> {
    let mut found: Option<u64> = None;
    for v in header(hs, "content-length") {
        for part in v.split(',') {
            let n: u64 = part.trim().parse().map_err(|_| ())?;
            if found.is_some_and(|f| f != n) {
                return Err(()); // conflicting lengths
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// Framing of a request body. Err: an invalid Content-Length.
pub fn request_body(hs: &[Header]) -> Result<Option<Body>, ()> {
    if is_chunked(hs) {
        return Ok(Some(Body::Chunked(Chunk::Size)));
    }
    Ok(match content_length(hs)? {
        Some(0) | None => None,
        Some(n) => Some(Body::Length(n)),
    })
}

/// Framing of a response body that may have one. Err: an invalid Content-Length.
pub fn response_body(hs: &[Header]) -> Result<Option<Body>, ()> {
    if is_chunked(hs) {
        return Ok(Some(Body::Chunked(Chunk::Size)));
    }
    Ok(match content_length(hs)? {
        Some(0) => None,
        Some(n) => Some(Body::Length(n)),
        None => Some(Body::UntilClose),
    })
}

/// A parsed chunk-size line.
pub enum Line {
    /// (bytes used including the line end, chunk size)
    Done(usize, u64),
    /// No line end yet.
    NeedMore,
    /// Not a chunk-size line.
    Invalid,
}

/// Parses `1a;ext=1\r\n`.
pub fn chunk_size(input: &[u8]) -> Line {
    let Some(nl) = input.iter().position(|&b| b == b'\n') else {
        return Line::NeedMore;
    };
    let line = &input[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let hex_end = line.iter().position(|b| !b.is_ascii_hexdigit()).unwrap_or(line.len());
    if hex_end == 0 || hex_end > 16 {
        return Line::Invalid;
    }
    let rest = &line[hex_end..];
    let rest_ok = rest.iter().all(|&b| b == b' ' || b == b'\t') || {
        let t = rest.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(0);
        rest[t..].starts_with(b";")
    };
    if !rest_ok {
        return Line::Invalid;
    }
    let Ok(s) = std::str::from_utf8(&line[..hex_end]) else {
        return Line::Invalid;
    };
    match u64::from_str_radix(s, 16) {
        Ok(n) => Line::Done(nl + 1, n),
        Err(_) => Line::Invalid,
    }
}

/// Result of scanning for a message start.
pub enum Resync {
    /// A plausible start `n` bytes in.
    Found(usize),
    /// Discard this many bytes (0: keep the tail, more bytes are needed to decide).
    Discard(usize),
}

fn plausible_start(side: Side, b: &[u8]) -> Option<bool> {
    match side {
        Side::Server => {
            const P: &[u8] = b"HTTP/1.";
            let n = b.len().min(P.len());
            if b[..n] != P[..n] {
                Some(false)
            } else if n < P.len() {
                None
            } else {
                Some(true)
            }
        }
        Side::Client => {
            let tok = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
            if tok == b.len() {
                return if tok <= 16 { None } else { Some(false) };
            }
            Some((3..=16).contains(&tok) && b[tok] == b' ')
        }
    }
}

/// Finds the next line start that looks like a message start of `side`. The start of
/// `input` counts as a line start when `at_line_start` (it follows a gap, an error or a `\n`).
pub fn find_message_start(side: Side, input: &[u8], at_line_start: bool) -> Resync {
    let line_starts = input.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1);
    for start in at_line_start.then_some(0).into_iter().chain(line_starts) {
        if start >= input.len() {
            break;
        }
        match plausible_start(side, &input[start..]) {
            Some(true) => return Resync::Found(start),
            Some(false) => {}
            // Too few bytes to tell: keep them for the next feed.
            None => return Resync::Discard(start),
        }
    }
    Resync::Discard(input.len())
}
