//! HTTP/1.x sans-I/O parser for both directions of one captured connection.
//!
//! Bytes go in with the [`Side`] that sent them (in arrival order, split anywhere, with
//! gaps where the kernel lost bytes); [`Http1Event`]s come out of [`Parser::poll_event`].
//! Heads are parsed with `httparse`; body framing (Content-Length, chunked with
//! extensions and trailers, close-delimited, HEAD/1xx/204/304, upgrades) is done here.
//! Body bytes are copied once, into the event that carries them. Memory is bounded: a
//! head larger than [`Limits::max_head_bytes`] is an error, and after any error or gap
//! outside a body of known length the side resynchronises at the next line that looks
//! like the start of a message. Nothing is glued across a gap.

mod detect;
mod framing;

pub use detect::{Detection, detect};

use std::collections::VecDeque;

use framing::{Body, Chunk};

/// Who sent the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The HTTP client (request bytes).
    Client,
    /// The HTTP server (response bytes).
    Server,
}

/// One header, in wire order; the value is lossy UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Name as sent.
    pub name: String,
    /// Value.
    pub value: String,
}

/// A request line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Request target as sent (origin, absolute, authority or asterisk form).
    pub target: String,
    /// Minor version: 0 or 1.
    pub version: u8,
    /// Headers.
    pub headers: Vec<Header>,
}

/// A status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Minor version: 0 or 1.
    pub version: u8,
    /// Headers.
    pub headers: Vec<Header>,
}

/// What the parser saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Http1Event {
    /// A request head.
    RequestHead(RequestHead),
    /// Request body bytes (chunked framing removed).
    RequestBody(Vec<u8>),
    /// The request ended.
    RequestEnd {
        /// Chunked trailers.
        trailers: Vec<Header>,
    },
    /// A 1xx response other than 101 (e.g. 100 Continue).
    Informational(ResponseHead),
    /// A final response head.
    ResponseHead(ResponseHead),
    /// Response body bytes.
    ResponseBody(Vec<u8>),
    /// The response ended.
    ResponseEnd {
        /// Chunked trailers.
        trailers: Vec<Header>,
    },
    /// 101 Switching Protocols or a successful CONNECT: no more HTTP/1 on this connection.
    Upgraded,
    /// Something could not be parsed, or bytes were lost.
    Error(Http1Error),
}

/// Parse errors and losses, each with a stable reason for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Http1Error {
    /// A head did not parse.
    #[error("invalid {side:?} message head: {detail}")]
    InvalidHead {
        /// Which side.
        side: Side,
        /// httparse's complaint.
        detail: String,
    },
    /// A head grew past the limit.
    #[error("{side:?} message head larger than {limit} bytes")]
    HeadTooLarge {
        /// Which side.
        side: Side,
        /// The limit.
        limit: usize,
    },
    /// Bad chunked framing.
    #[error("invalid chunked framing from the {side:?}: {detail}")]
    InvalidChunk {
        /// Which side.
        side: Side,
        /// What was wrong.
        detail: &'static str,
    },
    /// Bad Content-Length.
    #[error("invalid Content-Length from the {side:?}")]
    InvalidLength {
        /// Which side.
        side: Side,
    },
    /// Bytes were lost.
    #[error("{bytes} bytes from the {side:?} were lost")]
    Gap {
        /// Which side.
        side: Side,
        /// How many.
        bytes: u64,
    },
}

impl Http1Error {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Http1Error::InvalidHead { .. } => "invalid_head",
            Http1Error::HeadTooLarge { .. } => "head_too_large",
            Http1Error::InvalidChunk { .. } => "invalid_chunk",
            Http1Error::InvalidLength { .. } => "invalid_length",
            Http1Error::Gap { .. } => "gap",
        }
    }
}

/// Bounds on what the parser buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest head (start line + headers, or a trailer block).
    pub max_head_bytes: usize,
    /// Most headers in one head.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_head_bytes: 64 * 1024, max_headers: 256 }
    }
}

/// Where one side is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Waiting for a message head.
    Head,
    /// Inside a body.
    Body(Body),
    /// Lost: skipping to the next plausible message start. `line_start`: the next byte starts a
    /// line (right after an error or a gap, or after a discarded `\n`), so it may start a message.
    Resync { line_start: bool },
    /// Upgraded: nothing more is parsed.
    Done,
}

struct Half {
    side: Side,
    state: State,
    /// Bytes of an incomplete head, chunk line or trailer block (never body bytes).
    buf: Vec<u8>,
    /// Bytes that followed the upgrade in the same input (the new protocol's first bytes),
    /// kept (bounded) for [`Parser::take_upgraded_bytes`].
    after_upgrade: Vec<u8>,
}

/// Bytes of the new protocol kept per side after an upgrade.
const AFTER_UPGRADE_LIMIT: usize = 64 * 1024;

/// A request whose response has not started yet.
struct Pending {
    head: bool,
    connect: bool,
}

/// The parser for one connection.
pub struct Parser {
    limits: Limits,
    client: Half,
    server: Half,
    pending: VecDeque<Pending>,
    events: VecDeque<Http1Event>,
}

impl Parser {
    /// A parser with the given limits.
    pub fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            client: Half { side: Side::Client, state: State::Head, buf: Vec::new(), after_upgrade: Vec::new() },
            server: Half { side: Side::Server, state: State::Head, buf: Vec::new(), after_upgrade: Vec::new() },
            pending: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Bytes held in head/line buffers.
    pub fn buffered_bytes(&self) -> usize {
        self.client.buf.len() + self.server.buf.len()
    }

    /// The next event, in the order things happened.
    pub fn poll_event(&mut self) -> Option<Http1Event> {
        self.events.pop_front()
    }

    /// Feeds bytes sent by `side`.
    pub fn feed(&mut self, side: Side, bytes: &[u8]) {
        let mut half = self.take_half(side);
        if half.buf.is_empty() {
            let used = self.process(&mut half, bytes);
            self.stash(&mut half, &bytes[used..]);
        } else {
            let mut joined = std::mem::take(&mut half.buf);
            joined.extend_from_slice(bytes);
            let used = self.process(&mut half, &joined);
            self.stash(&mut half, &joined[used..]);
        }
        self.put_half(half);
    }

    /// After [`Http1Event::Upgraded`]: the bytes `side` sent after the upgrade in the input
    /// already fed (the first bytes of the new protocol), at most 64 KiB.
    pub fn take_upgraded_bytes(&mut self, side: Side) -> Vec<u8> {
        std::mem::take(&mut self.half_mut(side).after_upgrade)
    }

    /// `missing` bytes sent by `side` were lost.
    pub fn gap(&mut self, side: Side, missing: u64) {
        if missing == 0 {
            return;
        }
        let mut half = self.take_half(side);
        if half.state != State::Done {
            self.events.push_back(Http1Event::Error(Http1Error::Gap { side, bytes: missing }));
            half.buf.clear();
            let next = match &half.state {
                State::Body(b) => b.skip(missing),
                _ => None,
            };
            match next {
                Some(Some(body)) => half.state = State::Body(body),
                Some(None) => {
                    // The gap ended exactly at the end of the body.
                    self.end_message(side, Vec::new());
                    half.state = State::Head;
                }
                None => half.state = State::Resync { line_start: true },
            }
        }
        self.put_half(half);
    }

    /// The sender of `side` closed its direction.
    pub fn close(&mut self, side: Side) {
        let mut half = self.take_half(side);
        if let State::Body(Body::UntilClose) = half.state {
            self.end_message(side, Vec::new());
            half.state = State::Head;
        }
        self.put_half(half);
    }

    fn take_half(&mut self, side: Side) -> Half {
        let fresh = Half { side, state: State::Head, buf: Vec::new(), after_upgrade: Vec::new() };
        match side {
            Side::Client => std::mem::replace(&mut self.client, fresh),
            Side::Server => std::mem::replace(&mut self.server, fresh),
        }
    }

    fn half_mut(&mut self, side: Side) -> &mut Half {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    fn put_half(&mut self, half: Half) {
        match half.side {
            Side::Client => self.client = half,
            Side::Server => self.server = half,
        }
    }

    /// Keeps unconsumed bytes for the next feed (they are never body bytes), within the limit.
    fn stash(&mut self, half: &mut Half, rest: &[u8]) {
        if rest.is_empty() {
            half.buf.clear();
            return;
        }
        if rest.len() > self.limits.max_head_bytes {
            self.events.push_back(Http1Event::Error(Http1Error::HeadTooLarge {
                side: half.side,
                limit: self.limits.max_head_bytes,
            }));
            half.buf.clear();
            half.state = State::Resync { line_start: true };
            return;
        }
        half.buf = rest.to_vec();
    }

    fn end_message(&mut self, side: Side, trailers: Vec<Header>) {
        self.events.push_back(match side {
            Side::Client => Http1Event::RequestEnd { trailers },
            Side::Server => Http1Event::ResponseEnd { trailers },
        });
    }

    fn body_event(side: Side, bytes: &[u8]) -> Http1Event {
        match side {
            Side::Client => Http1Event::RequestBody(bytes.to_vec()),
            Side::Server => Http1Event::ResponseBody(bytes.to_vec()),
        }
    }

    /// Consumes as much of `input` as possible; returns how many bytes were used.
    fn process(&mut self, half: &mut Half, input: &[u8]) -> usize {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            if rest.is_empty() {
                return at;
            }
            let step = match half.state.clone() {
                State::Done => {
                    let room = AFTER_UPGRADE_LIMIT.saturating_sub(half.after_upgrade.len());
                    half.after_upgrade.extend_from_slice(&rest[..room.min(rest.len())]);
                    return input.len();
                }
                State::Resync { line_start } => match framing::find_message_start(half.side, rest, line_start) {
                    framing::Resync::Found(skip) => {
                        half.state = State::Head;
                        skip
                    }
                    framing::Resync::Discard(n) => {
                        if n == 0 {
                            return at;
                        }
                        // Whether the bytes of the next feed start a line must not depend on where
                        // this feed ended.
                        half.state = State::Resync { line_start: rest[n - 1] == b'\n' };
                        n
                    }
                },
                State::Head => match self.head(half, rest) {
                    Some(n) => n,
                    None => return at,
                },
                State::Body(body) => match self.body(half, body, rest) {
                    Some(n) => n,
                    None => return at,
                },
            };
            at += step;
        }
    }

    /// Parses a head at the start of `input`. Returns bytes used, or None when more are needed.
    fn head(&mut self, half: &mut Half, input: &[u8]) -> Option<usize> {
        // Empty lines before a message are allowed (RFC 9112 §2.2).
        let lead = input.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        if lead > 0 {
            return Some(lead);
        }
        let side = half.side;
        let mut storage = vec![httparse::EMPTY_HEADER; self.limits.max_headers.max(1)];
        let parsed = match side {
            Side::Client => {
                let mut req = httparse::Request::new(&mut storage);
                match req.parse(input) {
                    Ok(httparse::Status::Complete(n)) => Ok(Some((n, Parsed::Request(to_request(&req))))),
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            Side::Server => {
                let mut res = httparse::Response::new(&mut storage);
                match res.parse(input) {
                    Ok(httparse::Status::Complete(n)) => Ok(Some((n, Parsed::Response(to_response(&res))))),
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        };
        match parsed {
            Ok(Some((n, head))) => {
                self.start_message(half, head);
                Some(n)
            }
            Ok(None) => self.incomplete_head(half, input.len()),
            Err(e) => {
                let err = if e == httparse::Error::TooManyHeaders {
                    Http1Error::HeadTooLarge { side, limit: self.limits.max_head_bytes }
                } else {
                    Http1Error::InvalidHead { side, detail: e.to_string() }
                };
                self.fail(half, err);
                // Skip at least one byte so resync looks past this message start.
                Some(1)
            }
        }
    }

    /// A head (or trailer block) is not complete yet: wait for more bytes, unless it is
    /// already over the limit (then fail and skip a byte so resync moves on).
    fn incomplete_head(&mut self, half: &mut Half, have: usize) -> Option<usize> {
        if have <= self.limits.max_head_bytes {
            return None;
        }
        self.fail(half, Http1Error::HeadTooLarge { side: half.side, limit: self.limits.max_head_bytes });
        Some(1)
    }

    fn fail(&mut self, half: &mut Half, err: Http1Error) {
        self.events.push_back(Http1Event::Error(err));
        half.state = State::Resync { line_start: true };
    }

    fn start_message(&mut self, half: &mut Half, head: Parsed) {
        let side = half.side;
        match head {
            Parsed::Request(req) => {
                let framing = framing::request_body(&req.headers);
                self.pending.push_back(Pending { head: req.method == "HEAD", connect: req.method == "CONNECT" });
                self.events.push_back(Http1Event::RequestHead(req));
                self.begin_body(half, framing);
            }
            Parsed::Response(res) => {
                if (100..200).contains(&res.status) && res.status != 101 {
                    self.events.push_back(Http1Event::Informational(res));
                    return;
                }
                let req = self.pending.pop_front();
                let status = res.status;
                let upgraded =
                    status == 101 || (req.as_ref().is_some_and(|r| r.connect) && (200..300).contains(&status));
                let no_body = req.as_ref().is_some_and(|r| r.head) || status == 204 || status == 304;
                let framing = if upgraded || no_body { Ok(None) } else { framing::response_body(&res.headers) };
                self.events.push_back(Http1Event::ResponseHead(res));
                if upgraded {
                    self.end_message(side, Vec::new());
                    self.events.push_back(Http1Event::Upgraded);
                    half.state = State::Done;
                    self.client.state = State::Done;
                    return;
                }
                self.begin_body(half, framing);
            }
        }
    }

    fn begin_body(&mut self, half: &mut Half, framing: Result<Option<Body>, ()>) {
        match framing {
            Ok(Some(b)) => half.state = State::Body(b),
            Ok(None) => {
                self.end_message(half.side, Vec::new());
                half.state = State::Head;
            }
            Err(()) => {
                let side = half.side;
                self.end_message(side, Vec::new());
                self.fail(half, Http1Error::InvalidLength { side });
            }
        }
    }

    /// Consumes body bytes. Returns bytes used, or None when more are needed.
    fn body(&mut self, half: &mut Half, body: Body, input: &[u8]) -> Option<usize> {
        let side = half.side;
        match body {
            Body::UntilClose => {
                self.events.push_back(Self::body_event(side, input));
                Some(input.len())
            }
            Body::Length(left) => {
                let n = (left.min(input.len() as u64)) as usize;
                self.events.push_back(Self::body_event(side, &input[..n]));
                if left == n as u64 {
                    self.end_message(side, Vec::new());
                    half.state = State::Head;
                } else {
                    half.state = State::Body(Body::Length(left - n as u64));
                }
                Some(n)
            }
            Body::Chunked(chunk) => match chunk {
                Chunk::Size => match framing::chunk_size(input) {
                    framing::Line::NeedMore => {
                        if input.len() > 4096 {
                            self.fail(half, Http1Error::InvalidChunk { side, detail: "chunk-size line too long" });
                            Some(1)
                        } else {
                            None
                        }
                    }
                    framing::Line::Invalid => {
                        self.fail(half, Http1Error::InvalidChunk { side, detail: "bad chunk size" });
                        Some(1)
                    }
                    framing::Line::Done(used, 0) => {
                        half.state = State::Body(Body::Chunked(Chunk::Trailers));
                        Some(used)
                    }
                    framing::Line::Done(used, size) => {
                        half.state = State::Body(Body::Chunked(Chunk::Data(size)));
                        Some(used)
                    }
                },
                Chunk::Data(left) => {
                    let n = (left.min(input.len() as u64)) as usize;
                    self.events.push_back(Self::body_event(side, &input[..n]));
                    half.state = State::Body(Body::Chunked(if left == n as u64 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n as u64)
                    }));
                    Some(n)
                }
                Chunk::DataEnd => {
                    if input.starts_with(b"\r\n") {
                        half.state = State::Body(Body::Chunked(Chunk::Size));
                        Some(2)
                    } else if input.starts_with(b"\n") {
                        half.state = State::Body(Body::Chunked(Chunk::Size));
                        Some(1)
                    } else if input == b"\r" {
                        None
                    } else {
                        self.fail(half, Http1Error::InvalidChunk { side, detail: "missing CRLF after chunk data" });
                        Some(0)
                    }
                }
                Chunk::Trailers => {
                    let mut storage = vec![httparse::EMPTY_HEADER; self.limits.max_headers.max(1)];
                    match httparse::parse_headers(input, &mut storage) {
                        Ok(httparse::Status::Complete((n, hs))) => {
                            let trailers = hs.iter().map(to_header).collect();
                            self.end_message(side, trailers);
                            half.state = State::Head;
                            Some(n)
                        }
                        Ok(httparse::Status::Partial) => self.incomplete_head(half, input.len()),
                        Err(e) => {
                            self.end_message(side, Vec::new());
                            self.fail(half, Http1Error::InvalidHead { side, detail: format!("trailers: {e}") });
                            Some(0)
                        }
                    }
                }
            },
        }
    }
}

enum Parsed {
    Request(RequestHead),
    Response(ResponseHead),
}

fn to_header(h: &httparse::Header<'_>) -> Header {
    Header { name: h.name.to_string(), value: String::from_utf8_lossy(h.value).into_owned() }
}

fn to_request(r: &httparse::Request<'_, '_>) -> RequestHead {
    RequestHead {
        method: r.method.unwrap_or_default().to_string(),
        target: r.path.unwrap_or_default().to_string(),
        version: r.version.unwrap_or(1),
        headers: r.headers.iter().map(to_header).collect(),
    }
}

fn to_response(r: &httparse::Response<'_, '_>) -> ResponseHead {
    ResponseHead {
        status: r.code.unwrap_or(0),
        reason: r.reason.unwrap_or_default().to_string(),
        version: r.version.unwrap_or(1),
        headers: r.headers.iter().map(to_header).collect(),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;
