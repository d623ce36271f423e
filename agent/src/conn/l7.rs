//! Layer-7 state of a connection: protocol detection on the first bytes, then the HTTP/1
//! parser and the transaction assembler fed in arrival order.

use std::time::SystemTime;

use tapline_ebpf::{Direction, Role};
use tapline_output::model::L7Protocol;

use crate::proto::http1::{self, Detection, Parser, Side};
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

enum Decision {
    Wait,
    Http1 { requests: Direction },
    Other,
}

fn decide(role: Role, egress: &[u8], ingress: &[u8]) -> Decision {
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
            // The peer spoke first: HTTP clients always speak first.
            None if res.is_some() => Decision::Other,
            None => Decision::Wait,
        };
    }
    // Seen mid-life: whichever side looks like requests (or responses) decides.
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

impl L7State {
    /// The protocol to report for the connection.
    pub fn protocol(&self) -> L7Protocol {
        match self {
            L7State::Http1(_) => L7Protocol::Http1,
            _ => L7Protocol::Other,
        }
    }

    /// The kernel direction that carries requests, once known.
    pub fn requests_flow(&self) -> Option<Direction> {
        match self {
            L7State::Http1(h) => Some(h.requests),
            _ => None,
        }
    }

    /// Bytes held by the parser or the detector.
    pub fn buffered_bytes(&self) -> usize {
        match self {
            L7State::Detecting { egress, ingress } => egress.len() + ingress.len(),
            L7State::Http1(h) => h.parser.buffered_bytes(),
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
            L7State::Http1(h) => h.feed(dir, bytes, at, out),
            L7State::Detecting { egress, ingress } => {
                let buf = match dir {
                    Direction::Egress => &mut *egress,
                    Direction::Ingress => &mut *ingress,
                };
                let room = DETECT_LIMIT.saturating_sub(buf.len());
                buf.extend_from_slice(&bytes[..room.min(bytes.len())]);
                let overflow = room < bytes.len();
                match decide(role, egress, ingress) {
                    Decision::Wait if !overflow => {}
                    Decision::Wait | Decision::Other => *self = L7State::Other,
                    Decision::Http1 { requests } => {
                        if overflow {
                            // Detection never needs 8 KiB; a direction this long is not HTTP/1 we can follow.
                            *self = L7State::Other;
                            return;
                        }
                        let (eg, ing) = (std::mem::take(egress), std::mem::take(ingress));
                        let mut h = Box::new(Http1Conn {
                            parser: Parser::new(http1::Limits::default()),
                            assembler: Assembler::new(policy),
                            requests,
                            upgraded: false,
                        });
                        // Requests first: a response can only follow its request.
                        let (first, second) = match requests {
                            Direction::Egress => ((Direction::Egress, eg), (Direction::Ingress, ing)),
                            Direction::Ingress => ((Direction::Ingress, ing), (Direction::Egress, eg)),
                        };
                        for (d, b) in [first, second] {
                            if !b.is_empty() {
                                h.feed(d, &b, at, out);
                            }
                        }
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
                    h.parser.gap(h.side(dir), missing);
                    h.drain(at, out);
                }
            }
            // The start was lost: detect again on what follows.
            L7State::Detecting { egress, ingress } => match dir {
                Direction::Egress => egress.clear(),
                Direction::Ingress => ingress.clear(),
            },
            L7State::Other => {}
        }
    }

    /// The connection closed: flush what the parser can still finish.
    pub fn on_close(&mut self, at: SystemTime, out: &mut L7Output) {
        if let L7State::Http1(h) = self {
            if !h.upgraded {
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
    fn side(&self, dir: Direction) -> Side {
        if dir == self.requests { Side::Client } else { Side::Server }
    }

    fn feed(&mut self, dir: Direction, bytes: &[u8], at: SystemTime, out: &mut L7Output) {
        if self.upgraded {
            return;
        }
        self.parser.feed(self.side(dir), bytes);
        self.drain(at, out);
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
        assert!(matches!(s, L7State::Other));
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
}
