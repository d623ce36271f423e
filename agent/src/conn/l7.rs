//! Layer-7 state of a connection: protocol detection on the first bytes, then the HTTP/1 or
//! HTTP/2 parser and its transaction assembler fed in arrival order (or, for TLS, the
//! handshake reader).

use std::time::SystemTime;

use tapline_ebpf::{Direction, Role};
use tapline_output::model::L7Protocol;

use crate::proto::http1::{self, Detection, Header, Parser, Side};
use crate::proto::http2;
use crate::proto::tls::{self, ClientHello, Hello, Parse, ServerHello};
use crate::txn::h2::StreamAssembler;
use crate::txn::{Assembler, BodyPolicy, Notice, Transaction};

/// Bytes kept per direction while the protocol is still undecided.
const DETECT_LIMIT: usize = 8 * 1024;

/// What one call into the layer-7 state produced.
#[derive(Default)]
pub struct L7Output {
    /// Finished HTTP exchanges.
    pub transactions: Vec<Transaction>,
    /// Parser errors and other things to count.
    pub notices: Vec<Notice>,
    /// Requests that never got a response (on close).
    pub unanswered: usize,
}

/// An HTTP/1 connection being parsed.
pub struct Http1Conn {
    parser: Parser,
    assembler: Assembler,
    /// The kernel direction that carries requests (egress for a client, ingress for a server).
    requests: Direction,
    upgraded: bool,
    /// Responses that arrived before their request (see [`ResponseHold`]).
    hold: ResponseHold,
}

/// Response bytes that arrived while no request was waiting for one, on a connection seen
/// from its start. Two threads of one process (a writer and a reader) report their calls
/// independently: the reader's record of the response can reach the agent before the
/// writer's record of the request (the writer was descheduled between its write and the
/// probe that reports it). On a connection followed from its first byte, a response with no
/// request outstanding can only be such a reordering, so it waits for its request. On a
/// connection met mid-life it is the answer to a request never seen: no holding there.
#[derive(Default)]
struct ResponseHold {
    /// Whether responses may be held (connection seen from its start, no request bytes lost).
    enabled: bool,
    /// Held chunks with the time each arrived.
    chunks: Vec<(Vec<u8>, SystemTime)>,
    /// Bytes in `chunks`.
    bytes: usize,
}

/// Response bytes held at most while their request is awaited; beyond that they are
/// parsed as they are (an orphan response, counted).
const HOLD_LIMIT: usize = 64 * 1024;

/// An HTTP/2 connection being parsed.
pub struct Http2Conn {
    parser: http2::Parser,
    streams: StreamAssembler,
    /// The kernel direction that carries the client's frames.
    requests: Direction,
    /// A gRPC exchange was seen (content-type application/grpc*).
    grpc: bool,
}

/// The HTTP/2 client connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Streams tracked at once per HTTP/2 connection.
const H2_MAX_STREAMS: usize = 10_000;

impl Http2Conn {
    fn new(parser: http2::Parser, requests: Direction, policy: BodyPolicy) -> Self {
        Self { parser, streams: StreamAssembler::new(policy, H2_MAX_STREAMS), requests, grpc: false }
    }

    fn side(&self, dir: Direction) -> Side {
        if dir == self.requests { Side::Client } else { Side::Server }
    }

    fn feed(&mut self, dir: Direction, bytes: &[u8], at: SystemTime, out: &mut L7Output) {
        self.parser.feed(self.side(dir), bytes);
        self.drain(at, out);
    }

    fn drain(&mut self, at: SystemTime, out: &mut L7Output) {
        let first = out.transactions.len();
        while let Some(ev) = self.parser.poll_event() {
            self.streams.on_event(ev, at, &mut out.transactions, &mut out.notices);
        }
        let is_grpc = |hs: &[Header]| {
            hs.iter().any(|h| h.name.eq_ignore_ascii_case("content-type") && h.value.starts_with("application/grpc"))
        };
        self.grpc |= out.transactions[first..].iter().any(|t| is_grpc(&t.request.headers));
    }
}

/// Protocol state of one connection.
pub enum L7State {
    /// Still looking at the first bytes of each direction.
    Detecting {
        /// First bytes written by the process.
        egress: Vec<u8>,
        /// First bytes read by the process.
        ingress: Vec<u8>,
    },
    /// HTTP/1.x.
    Http1(Box<Http1Conn>),
    /// HTTP/2 (prior knowledge, ALPN h2 in the plaintext of TLS, or upgraded from HTTP/1.1).
    Http2(Box<Http2Conn>),
    /// TLS records: the handshake is read for its metadata; the rest is ciphertext.
    Tls(Box<TlsHandshake>),
    /// Not a protocol tapline parses: only bytes are counted.
    Other,
}

impl Default for L7State {
    fn default() -> Self {
        L7State::Detecting { egress: Vec::new(), ingress: Vec::new() }
    }
}

fn opposite(d: Direction) -> Direction {
    match d {
        Direction::Egress => Direction::Ingress,
        Direction::Ingress => Direction::Egress,
    }
}

/// The TLS handshake of a connection, read from its raw (encrypted) bytes.
#[derive(Default)]
pub struct TlsHandshake {
    egress: HelloBuf,
    ingress: HelloBuf,
    /// The ClientHello, once parsed.
    pub client: Option<ClientHello>,
    /// The ServerHello, once parsed.
    pub server: Option<ServerHello>,
}

/// The first bytes of one direction, kept until its hello parses (or cannot).
enum HelloBuf {
    Collecting(Vec<u8>),
    Done,
}

impl Default for HelloBuf {
    fn default() -> Self {
        HelloBuf::Collecting(Vec::new())
    }
}

/// A hello larger than this is not followed (real ones are a few hundred bytes to ~2 KiB).
pub(crate) const HELLO_LIMIT: usize = 16 * 1024 + 5;

impl TlsHandshake {
    fn buf(&mut self, dir: Direction) -> &mut HelloBuf {
        match dir {
            Direction::Egress => &mut self.egress,
            Direction::Ingress => &mut self.ingress,
        }
    }

    /// Feeds raw bytes of one direction.
    pub fn feed(&mut self, dir: Direction, bytes: &[u8]) {
        let HelloBuf::Collecting(b) = self.buf(dir) else { return };
        let room = HELLO_LIMIT.saturating_sub(b.len());
        b.extend_from_slice(&bytes[..room.min(bytes.len())]);
        let verdict = tls::parse_hello(b);
        let full = b.len() >= HELLO_LIMIT;
        match verdict {
            Parse::NeedMore if !full => return,
            Parse::Done(Hello::Client(c)) => self.client = Some(c),
            Parse::Done(Hello::Server(s)) => self.server = Some(s),
            Parse::NeedMore | Parse::NotTls => {}
        }
        *self.buf(dir) = HelloBuf::Done;
    }

    /// Bytes of `dir` were lost: its hello can no longer be read.
    fn gap(&mut self, dir: Direction) {
        *self.buf(dir) = HelloBuf::Done;
    }

    /// The negotiated version (771 = TLS 1.2, 772 = TLS 1.3), once the ServerHello was seen.
    pub fn version(&self) -> Option<u16> {
        self.server.as_ref().map(|s| s.version)
    }

    /// The server name the client asked for.
    pub fn sni(&self) -> Option<&str> {
        self.client.as_ref().and_then(|c| c.sni.as_deref())
    }

    /// Bytes held while waiting for hellos.
    pub(crate) fn buffered_bytes(&self) -> usize {
        [&self.egress, &self.ingress]
            .iter()
            .map(|b| match b {
                HelloBuf::Collecting(v) => v.len(),
                HelloBuf::Done => 0,
            })
            .sum()
    }
}

enum Decision {
    Wait,
    Http1 {
        requests: Direction,
    },
    /// HTTP/2; `mid`: met in the middle of the connection (no preface, HPACK state unknown).
    Http2 {
        requests: Direction,
        mid: bool,
    },
    Tls,
    Other,
}

/// Whether `b` starts with the HTTP/2 preface: `None` while it is a shorter prefix of it.
fn h2_preface(b: &[u8]) -> Option<bool> {
    let n = b.len().min(H2_PREFACE.len());
    if b[..n] != H2_PREFACE[..n] {
        Some(false)
    } else if n < H2_PREFACE.len() {
        None
    } else {
        Some(true)
    }
}

/// Whether `b` plausibly starts at an HTTP/2 frame boundary (a connection met in its middle):
/// a known type, flags that type can carry, a stream id fitting the type, a length within the
/// default maximum frame size, and — when the bytes reach it — a plausible next frame too.
pub fn looks_like_h2_frames(b: &[u8]) -> bool {
    fn header_ok(h: &[u8]) -> Option<usize> {
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        let stream_frame = matches!(kind, 0 | 1 | 2 | 3 | 5 | 9);
        let allowed_flags: u8 = match kind {
            0 => 0x09,
            1 => 0x2d,
            4 | 6 => 0x01,
            5 => 0x0c,
            9 => 0x04,
            2 | 3 | 7 | 8 => 0x00,
            _ => return None,
        };
        let ok = len <= 16_384
            && flags & !allowed_flags == 0
            && stream & 0x8000_0000 == 0
            && (kind == 8 || (stream != 0) == stream_frame)
            && (kind != 8 || len == 4)
            && (kind != 6 || len == 8)
            && (kind != 4 || len % 6 == 0);
        ok.then_some(len)
    }
    if b.len() < 9 {
        return false;
    }
    let Some(len) = header_ok(&b[..9]) else { return false };
    match b.get(9 + len..9 + len + 9) {
        Some(next) => header_ok(next).is_some(),
        None => true,
    }
}

fn decide(role: Role, egress: &[u8], ingress: &[u8]) -> Decision {
    // The HTTP/2 preface first ("PRI * HTTP/2.0" would otherwise look like an HTTP/1 request).
    for (b, dir) in [(egress, Direction::Egress), (ingress, Direction::Ingress)] {
        match h2_preface(b) {
            Some(true) => return Decision::Http2 { requests: dir, mid: false },
            None if !b.is_empty() => return Decision::Wait,
            _ => {}
        }
    }
    // TLS next: its records cannot be mistaken for HTTP/1 text, and either side may speak first.
    let (te, ti) = (tls::looks_like_tls_record(egress), tls::looks_like_tls_record(ingress));
    if te == Some(true) || ti == Some(true) {
        return Decision::Tls;
    }
    // A lone `0x16` or `0x16 0x03`: wait for the next byte before calling it anything else.
    if (!egress.is_empty() && te.is_none()) || (!ingress.is_empty() && ti.is_none()) {
        return Decision::Wait;
    }
    let verdict = |b: &[u8]| {
        if b.is_empty() { None } else { Some(http1::detect(b)) }
    };
    let (e, i) = (verdict(egress), verdict(ingress));
    let expected = match role {
        Role::Client => Some(Direction::Egress),
        Role::Server => Some(Direction::Ingress),
        Role::Unknown => None,
    };
    if let Some(req_dir) = expected {
        let (req, res) = match req_dir {
            Direction::Egress => (e, i),
            Direction::Ingress => (i, e),
        };
        return match req {
            Some(Detection::Request) => Decision::Http1 { requests: req_dir },
            Some(Detection::NeedMore) => Decision::Wait,
            Some(_) => Decision::Other,
            // The peer spoke first: HTTP/1 clients always speak first, but an HTTP/2 server
            // may send its SETTINGS before the client's preface is seen: wait for the preface.
            // An HTTP/1 response first is a request whose record arrived late (another
            // thread's call): the parser holds the response until its request.
            None if res.is_some() => {
                let res_bytes = if req_dir == Direction::Egress { ingress } else { egress };
                if looks_like_h2_frames(res_bytes) {
                    Decision::Wait
                } else {
                    match res {
                        Some(Detection::Response) => Decision::Http1 { requests: req_dir },
                        Some(Detection::NeedMore) => Decision::Wait,
                        _ => Decision::Other,
                    }
                }
            }
            None => Decision::Wait,
        };
    }
    // Seen mid-life: HTTP/2 frames (no preface will come), or HTTP/1 requests or responses.
    for (b, dir) in [(egress, Direction::Egress), (ingress, Direction::Ingress)] {
        if looks_like_h2_frames(b) {
            // Without headers we cannot tell who is the client: the role decides (unknown here:
            // the caller resolves it from listening sockets before the first data).
            return Decision::Http2 { requests: if dir == Direction::Egress { dir } else { opposite(dir) }, mid: true };
        }
    }
    for (v, dir) in [(e, Direction::Egress), (i, Direction::Ingress)] {
        match v {
            Some(Detection::Request) => return Decision::Http1 { requests: dir },
            Some(Detection::Response) => {
                return Decision::Http1 { requests: opposite(dir) };
            }
            _ => {}
        }
    }
    let undecided = |v: Option<Detection>| matches!(v, None | Some(Detection::NeedMore));
    if undecided(e) || undecided(i) { Decision::Wait } else { Decision::Other }
}

/// Feeds the bytes kept during detection to a new parser, the requests' direction first (a
/// response can only follow its request).
fn replay(requests: Direction, egress: Vec<u8>, ingress: Vec<u8>, mut feed: impl FnMut(Direction, &[u8])) {
    let (first, second) = match requests {
        Direction::Egress => ((Direction::Egress, egress), (Direction::Ingress, ingress)),
        Direction::Ingress => ((Direction::Ingress, ingress), (Direction::Egress, egress)),
    };
    for (d, b) in [first, second] {
        if !b.is_empty() {
            feed(d, &b);
        }
    }
}

impl L7State {
    /// The protocol to report for the connection.
    pub fn protocol(&self) -> L7Protocol {
        match self {
            L7State::Http1(_) => L7Protocol::Http1,
            L7State::Http2(_) => L7Protocol::Http2,
            _ => L7Protocol::Other,
        }
    }

    /// The `protocol` tag: like [`L7State::protocol`], but `grpc` for HTTP/2 carrying gRPC.
    pub fn tag_protocol(&self) -> L7Protocol {
        match self {
            L7State::Http2(h) if h.grpc => L7Protocol::Grpc,
            other => other.protocol(),
        }
    }

    /// The TLS handshake, for a TLS connection.
    pub fn tls(&self) -> Option<&TlsHandshake> {
        match self {
            L7State::Tls(t) => Some(t),
            _ => None,
        }
    }

    /// Whether detection has not decided yet.
    pub fn is_detecting(&self) -> bool {
        matches!(self, L7State::Detecting { .. })
    }

    /// Turns this raw-stream state into a TLS handshake reader: a TLS library probe saw
    /// plaintext for this socket, so its raw bytes are ciphertext whatever they looked like.
    /// Bytes buffered for detection are replayed into the hello parsers.
    pub fn become_tls(&mut self) {
        if matches!(self, L7State::Tls(_)) {
            return;
        }
        let mut t = Box::<TlsHandshake>::default();
        if let L7State::Detecting { egress, ingress } = self {
            for (d, b) in [(Direction::Egress, &*egress), (Direction::Ingress, &*ingress)] {
                if b.is_empty() {
                    continue;
                }
                t.feed(d, b);
            }
        } else {
            t.gap(Direction::Egress);
            t.gap(Direction::Ingress);
        }
        *self = L7State::Tls(t);
    }

    /// The kernel direction that carries requests, once known.
    pub fn requests_flow(&self) -> Option<Direction> {
        match self {
            L7State::Http1(h) => Some(h.requests),
            L7State::Http2(h) => Some(h.requests),
            _ => None,
        }
    }

    /// Bytes held by the parser or the detector.
    pub fn buffered_bytes(&self) -> usize {
        match self {
            L7State::Detecting { egress, ingress } => egress.len() + ingress.len(),
            L7State::Http1(h) => h.parser.buffered_bytes() + h.hold.bytes,
            L7State::Http2(h) => h.parser.buffered_bytes(),
            L7State::Tls(t) => t.buffered_bytes(),
            L7State::Other => 0,
        }
    }

    /// Feeds bytes of one direction observed at `at`.
    pub fn on_data(
        &mut self,
        role: Role,
        dir: Direction,
        bytes: &[u8],
        at: SystemTime,
        policy: BodyPolicy,
        out: &mut L7Output,
    ) {
        match self {
            L7State::Other => {}
            L7State::Http1(h) => {
                h.feed(dir, bytes, at, out);
                if let Some(h2) = h.upgrade_to_h2(policy, out) {
                    *self = L7State::Http2(h2);
                    if let L7State::Http2(h2) = self {
                        h2.drain(at, out);
                    }
                }
            }
            L7State::Http2(h) => h.feed(dir, bytes, at, out),
            L7State::Tls(t) => t.feed(dir, bytes),
            L7State::Detecting { egress, ingress } => {
                let buf = match dir {
                    Direction::Egress => &mut *egress,
                    Direction::Ingress => &mut *ingress,
                };
                let room = DETECT_LIMIT.saturating_sub(buf.len());
                buf.extend_from_slice(&bytes[..room.min(bytes.len())]);
                let overflow = room < bytes.len();
                match decide(role, egress, ingress) {
                    Decision::Tls => self.become_tls(),
                    Decision::Http2 { requests, mid } => {
                        let limits = http2::Limits::default();
                        let mut h = Box::new(Http2Conn::new(http2::Parser::new(limits, !mid), requests, policy));
                        replay(requests, std::mem::take(egress), std::mem::take(ingress), |d, b| h.feed(d, b, at, out));
                        *self = L7State::Http2(h);
                    }
                    Decision::Wait if !overflow => {}
                    Decision::Wait | Decision::Other => *self = L7State::Other,
                    Decision::Http1 { requests } => {
                        if overflow {
                            // Detection never needs 8 KiB; a direction this long is not HTTP/1 we can follow.
                            *self = L7State::Other;
                            return;
                        }
                        let mut h = Box::new(Http1Conn {
                            parser: Parser::new(http1::Limits::default()),
                            assembler: Assembler::new(policy),
                            requests,
                            upgraded: false,
                            // Known roles come from connect/accept: seen from the start.
                            hold: ResponseHold { enabled: role != Role::Unknown, ..Default::default() },
                        });
                        replay(requests, std::mem::take(egress), std::mem::take(ingress), |d, b| h.feed(d, b, at, out));
                        *self = L7State::Http1(h);
                    }
                }
            }
        }
    }

    /// `missing` bytes of `dir` were lost before the next data.
    pub fn on_gap(&mut self, dir: Direction, missing: u64, at: SystemTime, out: &mut L7Output) {
        match self {
            L7State::Http1(h) => {
                if !h.upgraded {
                    // Held responses go first; once requests were lost a response without
                    // a request may be the answer to a lost one: hold nothing more.
                    h.release_held(out);
                    if dir == h.requests {
                        h.hold.enabled = false;
                    }
                    h.parser.gap(h.side(dir), missing);
                    h.drain(at, out);
                }
            }
            // The start was lost: detect again on what follows.
            L7State::Detecting { egress, ingress } => match dir {
                Direction::Egress => egress.clear(),
                Direction::Ingress => ingress.clear(),
            },
            L7State::Http2(h) => {
                let side = h.side(dir);
                h.parser.gap(side, missing);
                h.drain(at, out);
            }
            L7State::Tls(t) => t.gap(dir),
            L7State::Other => {}
        }
    }

    /// The connection closed: flush what the parser can still finish.
    pub fn on_close(&mut self, at: SystemTime, out: &mut L7Output) {
        if let L7State::Http2(h) = self {
            h.parser.close(Side::Client);
            h.parser.close(Side::Server);
            h.drain(at, out);
            let (done, unanswered) = h.streams.finish_all(at);
            out.transactions.extend(done);
            out.unanswered += unanswered;
        }
        if let L7State::Http1(h) = self {
            if !h.upgraded {
                h.release_held(out);
                h.parser.close(Side::Client);
                h.parser.close(Side::Server);
                h.drain(at, out);
            }
            let (done, unanswered) = h.assembler.finish(at);
            out.transactions.extend(done);
            out.unanswered += unanswered;
        }
    }
}

impl Http1Conn {
    /// After `Upgrade: h2c` was accepted (101 with `Upgrade: h2c`): the HTTP/2 state that
    /// continues the connection. The upgrade's HTTP/1 exchange is taken back from `out`: its
    /// request is stream 1 of HTTP/2, answered there (one transaction, not a 101).
    fn upgrade_to_h2(&mut self, policy: BodyPolicy, out: &mut L7Output) -> Option<Box<Http2Conn>> {
        if !self.upgraded {
            return None;
        }
        let is_h2c = |t: &Transaction| {
            t.response.as_ref().is_some_and(|r| {
                r.status == 101
                    && r.headers
                        .iter()
                        .any(|h| h.name.eq_ignore_ascii_case("upgrade") && h.value.trim().eq_ignore_ascii_case("h2c"))
            })
        };
        let pos = out.transactions.iter().rposition(is_h2c)?;
        let txn = out.transactions.remove(pos);
        if let Some(i) = out.notices.iter().rposition(|n| *n == Notice::Upgraded) {
            out.notices.remove(i);
        }
        let req = txn.request;
        let host = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("host")).map(|h| h.value.clone());
        let mut headers = vec![
            Header { name: ":method".into(), value: req.method.clone() },
            Header { name: ":scheme".into(), value: "http".into() },
            Header { name: ":path".into(), value: req.target.clone() },
        ];
        if let Some(host) = host {
            headers.push(Header { name: ":authority".into(), value: host });
        }
        headers.extend(req.headers.into_iter().filter(|h| {
            let n = h.name.to_ascii_lowercase();
            !matches!(n.as_str(), "host" | "connection" | "upgrade" | "http2-settings")
        }));
        let mut h2 = Box::new(Http2Conn::new(
            http2::Parser::after_upgrade(http2::Limits::default(), headers),
            self.requests,
            policy,
        ));
        // The new protocol's first bytes may have arrived with the 101.
        for side in [Side::Client, Side::Server] {
            let rest = self.parser.take_upgraded_bytes(side);
            if !rest.is_empty() {
                h2.parser.feed(side, &rest);
            }
        }
        Some(h2)
    }

    fn side(&self, dir: Direction) -> Side {
        if dir == self.requests { Side::Client } else { Side::Server }
    }

    fn feed(&mut self, dir: Direction, bytes: &[u8], at: SystemTime, out: &mut L7Output) {
        if self.upgraded {
            return;
        }
        if dir != self.requests && self.hold.enabled && (self.hold.bytes > 0 || self.assembler.in_flight() == 0) {
            if self.hold.bytes + bytes.len() <= HOLD_LIMIT {
                self.hold.bytes += bytes.len();
                self.hold.chunks.push((bytes.to_vec(), at));
                return;
            }
            self.release_held(out);
        }
        self.parser.feed(self.side(dir), bytes);
        self.drain(at, out);
        if dir == self.requests && self.hold.bytes > 0 && self.assembler.in_flight() > 0 {
            self.release_held(out);
        }
    }

    /// Parses the held response bytes, each at the time it arrived.
    fn release_held(&mut self, out: &mut L7Output) {
        self.hold.bytes = 0;
        for (b, at) in std::mem::take(&mut self.hold.chunks) {
            // After an upgrade the parser keeps what follows for the new protocol.
            self.parser.feed(Side::Server, &b);
            if !self.upgraded {
                self.drain(at, out);
            }
        }
    }

    fn drain(&mut self, at: SystemTime, out: &mut L7Output) {
        while let Some(ev) = self.parser.poll_event() {
            let upgraded = matches!(ev, http1::Http1Event::Upgraded);
            self.assembler.on_event(ev, at, &mut out.transactions, &mut out.notices);
            if upgraded {
                self.upgraded = true;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BodyPolicy {
        BodyPolicy { keep: true, cap: 1 << 20 }
    }

    #[test]
    fn client_connection_detects_http1_and_pairs_a_transaction() {
        let mut s = L7State::default();
        let mut out = L7Output::default();
        let now = SystemTime::now();
        s.on_data(Role::Client, Direction::Egress, b"GE", now, policy(), &mut out);
        assert!(matches!(s, L7State::Detecting { .. }));
        s.on_data(Role::Client, Direction::Egress, b"T /x HTTP/1.1\r\nHost: a\r\n\r\n", now, policy(), &mut out);
        assert_eq!(s.protocol(), L7Protocol::Http1);
        s.on_data(
            Role::Client,
            Direction::Ingress,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            now,
            policy(),
            &mut out,
        );
        assert_eq!(out.transactions.len(), 1);
        assert_eq!(out.transactions[0].request.target, "/x");
        assert_eq!(out.transactions[0].response_body.bytes, b"hi");
    }

    #[test]
    fn server_side_requests_arrive_on_ingress() {
        let mut s = L7State::default();
        let mut out = L7Output::default();
        let now = SystemTime::now();
        s.on_data(
            Role::Server,
            Direction::Ingress,
            b"POST /p HTTP/1.1\r\nContent-Length: 1\r\n\r\nz",
            now,
            policy(),
            &mut out,
        );
        s.on_data(Role::Server, Direction::Egress, b"HTTP/1.1 204 No Content\r\n\r\n", now, policy(), &mut out);
        assert_eq!(s.requests_flow(), Some(Direction::Ingress));
        assert_eq!(out.transactions.len(), 1);
        assert_eq!(out.transactions[0].request_body.bytes, b"z");
    }

    #[test]
    fn non_http_and_server_first_protocols_are_other() {
        let now = SystemTime::now();
        let mut out = L7Output::default();
        let mut s = L7State::default();
        s.on_data(
            Role::Client,
            Direction::Egress,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            now,
            policy(),
            &mut out,
        );
        assert!(matches!(s, L7State::Tls(_)), "TLS records are read for their handshake");
        assert_eq!(s.protocol(), L7Protocol::Other);
        let mut s = L7State::default();
        s.on_data(Role::Client, Direction::Ingress, b"220 smtp ready\r\n", now, policy(), &mut out);
        assert!(matches!(s, L7State::Other));
        assert!(out.transactions.is_empty());
    }

    #[test]
    fn unknown_role_mid_connection_response_first() {
        let now = SystemTime::now();
        let mut out = L7Output::default();
        let mut s = L7State::default();
        s.on_data(
            Role::Unknown,
            Direction::Ingress,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            now,
            policy(),
            &mut out,
        );
        assert_eq!(s.requests_flow(), Some(Direction::Egress));
        s.on_data(Role::Unknown, Direction::Egress, b"GET /n HTTP/1.1\r\n\r\n", now, policy(), &mut out);
        s.on_data(
            Role::Unknown,
            Direction::Ingress,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            now,
            policy(),
            &mut out,
        );
        assert_eq!(out.transactions.len(), 1);
        assert_eq!(out.notices, vec![Notice::OrphanResponse]);
    }

    /// A client's reader thread can report the response before its writer thread reports
    /// the request (seen with Go's crypto/tls: readLoop and writeLoop goroutines).
    #[test]
    fn response_reported_before_its_request_is_paired_with_it() {
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let t1 = t0 + std::time::Duration::from_millis(5);
        let mut out = L7Output::default();
        let mut s = L7State::default();
        s.on_data(Role::Client, Direction::Ingress, b"HTTP/1.1 200 OK\r\nContent-Len", t0, policy(), &mut out);
        s.on_data(Role::Client, Direction::Ingress, b"gth: 2\r\n\r\nhi", t0, policy(), &mut out);
        assert_eq!(s.protocol(), L7Protocol::Http1);
        assert!(out.transactions.is_empty() && out.notices.is_empty(), "held, not an orphan");
        assert!(s.buffered_bytes() > 0);
        s.on_data(Role::Client, Direction::Egress, b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n", t1, policy(), &mut out);
        assert_eq!(out.transactions.len(), 1);
        assert_eq!(out.transactions[0].request.target, "/first");
        assert_eq!(out.transactions[0].response_body.bytes, b"hi");
        assert_eq!(out.transactions[0].response_time, Some(t0), "the response keeps its own time");
        // Keep-alive: a HEAD response (no body despite Content-Length) then a GET response,
        // both before their requests; framing needs the HEAD request, which comes later.
        s.on_data(
            Role::Client,
            Direction::Ingress,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            t1,
            policy(),
            &mut out,
        );
        s.on_data(Role::Client, Direction::Egress, b"HEAD /h HTTP/1.1\r\n\r\n", t1, policy(), &mut out);
        s.on_data(
            Role::Client,
            Direction::Ingress,
            b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc",
            t1,
            policy(),
            &mut out,
        );
        s.on_data(Role::Client, Direction::Egress, b"GET /third HTTP/1.1\r\n\r\n", t1, policy(), &mut out);
        assert!(out.notices.is_empty(), "{:?}", out.notices);
        let got: Vec<(&str, u16)> = out
            .transactions
            .iter()
            .map(|t| (t.request.target.as_str(), t.response.as_ref().map_or(0, |r| r.status)))
            .collect();
        assert_eq!(got, vec![("/first", 200), ("/h", 200), ("/third", 201)]);
        assert_eq!(s.buffered_bytes(), 0);
    }

    #[test]
    fn held_responses_are_bounded_and_released_as_orphans() {
        let now = SystemTime::now();
        // A server that answers without any request: held up to the limit, then parsed.
        let mut out = L7Output::default();
        let mut s = L7State::default();
        s.on_data(
            Role::Client,
            Direction::Ingress,
            b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n",
            now,
            policy(),
            &mut out,
        );
        for _ in 0..200 {
            s.on_data(Role::Client, Direction::Ingress, &[b'x'; 1000], now, policy(), &mut out);
            assert!(s.buffered_bytes() <= HOLD_LIMIT, "{}", s.buffered_bytes());
        }
        assert_eq!(out.notices, vec![Notice::OrphanResponse]);
        // Released at close too.
        let mut out = L7Output::default();
        let mut s = L7State::default();
        s.on_data(Role::Client, Direction::Ingress, b"HTTP/1.1 204 No Content\r\n\r\n", now, policy(), &mut out);
        assert!(out.notices.is_empty());
        s.on_close(now, &mut out);
        assert_eq!(out.notices, vec![Notice::OrphanResponse]);
        // After request bytes were lost, a response alone may answer the lost request.
        let mut out = L7Output::default();
        let mut s = L7State::default();
        s.on_data(Role::Client, Direction::Egress, b"GET /a HTTP/1.1\r\n\r\n", now, policy(), &mut out);
        s.on_data(Role::Client, Direction::Ingress, b"HTTP/1.1 204 No Content\r\n\r\n", now, policy(), &mut out);
        assert_eq!(out.transactions.len(), 1);
        s.on_gap(Direction::Egress, 100, now, &mut out);
        s.on_data(Role::Client, Direction::Ingress, b"HTTP/1.1 204 No Content\r\n\r\n", now, policy(), &mut out);
        assert!(out.notices.contains(&Notice::OrphanResponse), "not held after a request gap: {:?}", out.notices);
        // Text from a server that is not an HTTP response is still not HTTP.
        let mut s = L7State::default();
        s.on_data(Role::Client, Direction::Ingress, b"SSH-2.0-OpenSSH_9.2\r\n", now, policy(), &mut out);
        assert!(matches!(s, L7State::Other));
    }

    #[test]
    fn endless_undecided_bytes_become_other_with_bounded_memory() {
        let now = SystemTime::now();
        let mut out = L7Output::default();
        let mut s = L7State::default();
        s.on_data(Role::Client, Direction::Egress, b"GET /", now, policy(), &mut out);
        for _ in 0..100 {
            s.on_data(Role::Client, Direction::Egress, &[b'a'; 1000], now, policy(), &mut out);
            assert!(s.buffered_bytes() <= DETECT_LIMIT + 64 * 1024);
        }
    }

    const CH13: &[u8] = include_bytes!("../proto/tls/fixtures/client_hello_tls13.bin");
    const SH13: &[u8] = include_bytes!("../proto/tls/fixtures/server_flight_tls13.bin");

    #[test]
    fn tls_handshake_read_from_raw_bytes_split_anywhere() {
        let now = SystemTime::now();
        for split in [1, 2, 3, 5, 6, 100, CH13.len() - 1] {
            let mut out = L7Output::default();
            let mut s = L7State::default();
            s.on_data(Role::Client, Direction::Egress, &CH13[..split], now, policy(), &mut out);
            s.on_data(Role::Client, Direction::Egress, &CH13[split..], now, policy(), &mut out);
            // A server reads the 5-byte record header first, then the body.
            s.on_data(Role::Client, Direction::Ingress, &SH13[..5], now, policy(), &mut out);
            s.on_data(Role::Client, Direction::Ingress, &SH13[5..], now, policy(), &mut out);
            s.on_data(
                Role::Client,
                Direction::Egress,
                b"\x17\x03\x03\x00\x10GET / HTTP/1.1\r\n",
                now,
                policy(),
                &mut out,
            );
            let t = s.tls().expect("TLS state");
            assert_eq!(t.sni(), Some("example.com"), "split at {split}");
            assert_eq!(t.version(), Some(772));
            assert_eq!(s.protocol(), L7Protocol::Other);
            assert!(out.transactions.is_empty(), "ciphertext is never parsed as HTTP");
            assert_eq!(s.buffered_bytes(), 0, "nothing kept once both hellos are read");
        }
    }

    #[test]
    fn tls_seen_after_its_handshake_is_tls_without_metadata() {
        let now = SystemTime::now();
        let mut out = L7Output::default();
        let mut s = L7State::default();
        s.on_data(Role::Unknown, Direction::Ingress, b"\x17\x03\x03\x00\x20abcdef", now, policy(), &mut out);
        let t = s.tls().expect("application-data records are TLS");
        assert_eq!((t.sni(), t.version()), (None, None));
    }

    #[test]
    fn plaintext_probe_turns_undecided_raw_stream_into_tls() {
        let now = SystemTime::now();
        let mut out = L7Output::default();
        let mut s = L7State::default();
        s.on_data(Role::Client, Direction::Egress, &CH13[..1], now, policy(), &mut out);
        assert!(s.is_detecting());
        s.become_tls();
        s.on_data(Role::Client, Direction::Egress, &CH13[1..], now, policy(), &mut out);
        assert_eq!(s.tls().and_then(|t| t.sni()), Some("example.com"), "buffered bytes were replayed");
        let mut s = L7State::default();
        s.on_data(Role::Client, Direction::Egress, b"GET / HTTP/1.1\r\n\r\n", now, policy(), &mut out);
        s.become_tls();
        assert!(s.tls().is_some_and(|t| t.sni().is_none()));
    }

    #[test]
    fn garbage_after_a_tls_prefix_never_hangs_in_detection() {
        let now = SystemTime::now();
        let mut out = L7Output::default();
        let mut s = L7State::default();
        s.on_data(Role::Client, Direction::Egress, b"\x16", now, policy(), &mut out);
        assert!(s.is_detecting(), "one byte is not enough to decide");
        s.on_data(Role::Client, Direction::Egress, b"\x99rest", now, policy(), &mut out);
        assert!(matches!(s, L7State::Other));
    }

    #[test]
    fn h2_server_settings_before_the_client_preface_still_detects_http2() {
        let now = SystemTime::now();
        let settings = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64";
        for role in [Role::Client, Role::Server] {
            let (req_dir, res_dir) = match role {
                Role::Client => (Direction::Egress, Direction::Ingress),
                _ => (Direction::Ingress, Direction::Egress),
            };
            let mut out = L7Output::default();
            let mut s = L7State::default();
            s.on_data(role, res_dir, settings, now, policy(), &mut out);
            assert!(s.is_detecting(), "{role:?}: a server's SETTINGS first is not the end of detection");
            s.on_data(role, req_dir, H2_PREFACE, now, policy(), &mut out);
            assert_eq!(s.protocol(), L7Protocol::Http2, "{role:?}");
            assert_eq!(s.requests_flow(), Some(req_dir));
        }
        // HTTP/1 servers do not speak first: text from the peer first is still `other`.
        let mut out = L7Output::default();
        let mut s = L7State::default();
        s.on_data(Role::Client, Direction::Ingress, b"220 smtp\r\n", now, policy(), &mut out);
        assert!(matches!(s, L7State::Other));
    }

    #[test]
    fn h2_frame_heuristic() {
        assert!(looks_like_h2_frames(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00"), "SETTINGS on stream 0");
        assert!(looks_like_h2_frames(b"\x00\x00\x04\x08\x00\x00\x00\x00\x01\x00\x00\x10\x00"), "WINDOW_UPDATE");
        assert!(!looks_like_h2_frames(b"\x00\x00\x06\x04\x00\x00\x00\x00\x01"), "SETTINGS on a stream");
        assert!(!looks_like_h2_frames(b"\x00\x00\x05\x08\x00\x00\x00\x00\x01"), "WINDOW_UPDATE must be 4 bytes");
        assert!(!looks_like_h2_frames(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_h2_frames(b"\x00\x00\x00\x08\x04\xd2\x16\x2f"), "postgres SSLRequest");
        assert!(!looks_like_h2_frames(b"\x00\x00"), "too short");
        // A valid first frame followed by garbage where the next header should be.
        assert!(!looks_like_h2_frames(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff"));
    }
}
