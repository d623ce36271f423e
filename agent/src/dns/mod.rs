//! Hostnames for IPs, learned from the DNS answers processes receive.
//!
//! The kernel hands over DNS answers two ways: a UDP datagram from port 53 arrives as one
//! `Record::Dns` (one message), and the ingress bytes of a TCP socket whose remote port is 53
//! arrive as its `Record::Data` (messages framed by a 2-byte length: [`split_tcp_messages`]).
//! [`parse_answers`] turns a message into `(name, IP, TTL)` triples, following CNAME chains so
//! that an IP is named by what the client asked (the question name), and [`DnsNames`]
//! remembers them: bounded (LRU), TTL-respecting, keyed by a caller-chosen scope (a container,
//! or 0 for the host) with a fallback to the name learned in any scope.
//!
//! Sans-I/O: no sockets and no clocks; callers pass `now`.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use simple_dns::rdata::RData;
use simple_dns::{CLASS, Packet};

/// One address answer: `ip` is what `name` (the question name) resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The name the client asked for (lowercase, no trailing dot), not the CNAME target.
    pub name: String,
    /// An A or AAAA address of it.
    pub ip: IpAddr,
    /// Seconds the answer may be cached: the smallest TTL along its CNAME chain.
    pub ttl: u32,
}

/// Why a message yields no answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Shorter than the 12-byte DNS header.
    #[error("DNS message of {0} bytes is shorter than its 12-byte header")]
    Short(usize),
    /// The QR bit is clear: a query, not an answer.
    #[error("a DNS query, not a response")]
    NotAResponse,
    /// Not even the header and questions parse.
    #[error("malformed DNS message: {0}")]
    Malformed(String),
}

const HEADER_LEN: usize = 12;
/// The smallest question: a root name (1 byte), type and class.
const MIN_QUESTION_LEN: usize = 5;
/// The smallest resource record: root name, type, class, TTL, rdata length.
const MIN_RECORD_LEN: usize = 11;
/// CNAMEs followed from a question name (resolvers give up after about 8-16).
const MAX_CHAIN: usize = 16;

fn count(buf: &[u8], at: usize) -> usize {
    buf.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))).unwrap_or(0)
}

fn set_count(buf: &mut [u8], at: usize, n: usize) {
    if let Some(b) = buf.get_mut(at..at + 2) {
        b.copy_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
    }
}

/// Runs `f` on the message parsed as fully as possible. Record counts are first clamped to
/// what the message's size can hold (simple-dns preallocates by count, and garbage claims up
/// to 65535 records). When the whole message does not parse (a datagram cut at the capture
/// limit, a record type the parser rejects), the authority and additional sections are
/// dropped, and then the longest prefix of the answer section that parses is used.
fn with_packet<T>(msg: &[u8], f: impl Fn(&Packet<'_>) -> T) -> Result<T, DnsError> {
    if msg.len() < HEADER_LEN {
        return Err(DnsError::Short(msg.len()));
    }
    let mut buf = msg.to_vec();
    let room = buf.len() - HEADER_LEN;
    if count(&buf, 4) > room / MIN_QUESTION_LEN {
        return Err(DnsError::Malformed("more questions than the message can hold".into()));
    }
    for at in [6, 8, 10] {
        let n = count(&buf, at).min(room / MIN_RECORD_LEN);
        set_count(&mut buf, at, n);
    }
    let first_error = match Packet::parse(&buf) {
        Ok(p) => return Ok(f(&p)),
        Err(e) => DnsError::Malformed(e.to_string()),
    };
    set_count(&mut buf, 8, 0);
    set_count(&mut buf, 10, 0);
    if let Ok(p) = Packet::parse(&buf) {
        return Ok(f(&p));
    }
    // The answers parse in order: if k of them parse, so do the first k - 1.
    let (mut good, mut bad) = (0, count(&buf, 6));
    set_count(&mut buf, 6, 0);
    if Packet::parse(&buf).is_err() {
        return Err(first_error);
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        set_count(&mut buf, 6, mid);
        if Packet::parse(&buf).is_ok() {
            good = mid;
        } else {
            bad = mid;
        }
    }
    set_count(&mut buf, 6, good);
    Packet::parse(&buf).map(|p| f(&p)).map_err(|_| first_error)
}

/// A DNS name as a lookup key: lowercase (resolvers may randomize case), no trailing dot.
fn norm(name: &simple_dns::Name<'_>) -> String {
    name.to_string().trim_end_matches('.').to_ascii_lowercase()
}

/// The A and AAAA answers of a DNS response, each named by the question that led to it
/// through the answer section's CNAME chain. Records not reachable from a question are
/// ignored (when a message has no question, addresses are named by their owner).
pub fn parse_answers(msg: &[u8]) -> Result<Vec<Answer>, DnsError> {
    if msg.len() < HEADER_LEN {
        return Err(DnsError::Short(msg.len()));
    }
    if msg[2] & 0x80 == 0 {
        return Err(DnsError::NotAResponse);
    }
    with_packet(msg, |p| {
        let mut aliases: HashMap<String, (String, u32)> = HashMap::new();
        let mut addrs: Vec<(String, IpAddr, u32)> = Vec::new();
        for rr in p.answers.iter().filter(|rr| rr.class == CLASS::IN) {
            match &rr.rdata {
                RData::A(a) => addrs.push((norm(&rr.name), IpAddr::from(a.address.to_be_bytes()), rr.ttl)),
                RData::AAAA(a) => addrs.push((norm(&rr.name), IpAddr::from(a.address.to_be_bytes()), rr.ttl)),
                RData::CNAME(c) => {
                    aliases.entry(norm(&rr.name)).or_insert((norm(&c.0), rr.ttl));
                }
                _ => {}
            }
        }
        let mut questions: Vec<String> = p.questions.iter().map(|q| norm(&q.qname)).collect();
        if questions.is_empty() {
            questions = addrs.iter().map(|(owner, ..)| owner.clone()).collect();
        }
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for q in questions {
            // Names reachable from q, each with the smallest TTL on the way to it.
            let mut reach: HashMap<&str, u32> = HashMap::from([(q.as_str(), u32::MAX)]);
            let (mut cur, mut ttl) = (q.as_str(), u32::MAX);
            for _ in 0..MAX_CHAIN {
                let Some((next, t)) = aliases.get(cur) else { break };
                ttl = ttl.min(*t);
                if reach.insert(next.as_str(), ttl).is_some() {
                    break; // a CNAME loop
                }
                cur = next;
            }
            for (owner, ip, t) in &addrs {
                if let Some(chain_ttl) = reach.get(owner.as_str())
                    && seen.insert((q.clone(), *ip))
                {
                    out.push(Answer { name: q.clone(), ip: *ip, ttl: (*t).min(*chain_ttl) });
                }
            }
        }
        out
    })
}

/// Splits a DNS-over-TCP byte stream into messages (each preceded by its 2-byte big-endian
/// length). Returns the complete messages and how many bytes they (and empty frames) took;
/// the rest is an incomplete message to keep until more bytes arrive.
pub fn split_tcp_messages(buf: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = buf.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) {
        let Some(msg) = buf.get(at + 2..at + 2 + len) else { break };
        if !msg.is_empty() {
            out.push(msg);
        }
        at += 2 + len;
    }
    (out, at)
}

/// A least-recently-used map with expiring values.
#[derive(Debug)]
struct Lru<K> {
    map: HashMap<K, Slot>,
    /// recency tick -> key; the first entry is the least recently used.
    order: BTreeMap<u64, K>,
    tick: u64,
    capacity: usize,
}

#[derive(Debug)]
struct Slot {
    name: Arc<str>,
    expires: Instant,
    tick: u64,
}

impl<K: Hash + Eq + Clone> Lru<K> {
    fn new(capacity: usize) -> Self {
        Lru { map: HashMap::new(), order: BTreeMap::new(), tick: 0, capacity: capacity.max(1) }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn insert(&mut self, key: K, name: Arc<str>, expires: Instant) {
        let tick = self.next_tick();
        match self.map.entry(key.clone()) {
            Entry::Occupied(mut e) => {
                self.order.remove(&e.get().tick);
                *e.get_mut() = Slot { name, expires, tick };
            }
            Entry::Vacant(e) => {
                e.insert(Slot { name, expires, tick });
            }
        }
        self.order.insert(tick, key);
        while self.map.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            self.map.remove(&oldest);
        }
    }

    /// The live value of `key`, marking it used; an expired one is dropped.
    fn get(&mut self, key: &K, now: Instant) -> Option<&str> {
        let slot = self.map.get(key)?;
        let old = slot.tick;
        if slot.expires <= now {
            self.order.remove(&old);
            self.map.remove(key);
            return None;
        }
        let tick = self.next_tick();
        self.order.remove(&old);
        self.order.insert(tick, key.clone());
        let slot = self.map.get_mut(key)?;
        slot.tick = tick;
        Some(&*slot.name)
    }

    fn purge_expired(&mut self, now: Instant) -> usize {
        let before = self.map.len();
        let order = &mut self.order;
        self.map.retain(|_, s| {
            let live = s.expires > now;
            if !live {
                order.remove(&s.tick);
            }
            live
        });
        before - self.map.len()
    }
}

/// Default number of (scope, IP) entries [`DnsNames`] keeps.
pub const DEFAULT_CAPACITY: usize = 16_384;
/// Default shortest time an answer is kept, whatever its TTL (answers with TTL 0 or a few
/// seconds still name the connection made right after them).
pub const DEFAULT_TTL_FLOOR: Duration = Duration::from_secs(60);
/// Default longest time an answer is kept, whatever its TTL.
pub const DEFAULT_TTL_CAP: Duration = Duration::from_secs(3600);

/// Hostnames for IPs: a bounded LRU cache of DNS answers keyed by `(scope, IP)`, where the
/// scope is the caller's (e.g. a hash of the container id, 0 for the host). Lookups fall back
/// to the name most recently learned for the IP in any scope (kept in a second LRU of the
/// same capacity). An entry lives for its answer's TTL clamped to `[ttl_floor, ttl_cap]`.
/// IPv4-mapped IPv6 addresses are the same key as their IPv4 address. When an IP is the
/// answer for several names, the latest answer wins.
#[derive(Debug)]
pub struct DnsNames {
    scoped: Lru<(u64, IpAddr)>,
    any: Lru<IpAddr>,
    ttl_floor: Duration,
    ttl_cap: Duration,
}

impl Default for DnsNames {
    fn default() -> Self {
        DnsNames::new()
    }
}

impl DnsNames {
    /// [`DEFAULT_CAPACITY`] entries, TTLs clamped to [[`DEFAULT_TTL_FLOOR`], [`DEFAULT_TTL_CAP`]].
    pub fn new() -> Self {
        DnsNames::with_limits(DEFAULT_CAPACITY, DEFAULT_TTL_FLOOR, DEFAULT_TTL_CAP)
    }

    /// At most `capacity` (scope, IP) entries (and as many scope-less ones); TTLs clamped to
    /// `[ttl_floor, ttl_cap]` (a floor above the cap is lowered to it).
    pub fn with_limits(capacity: usize, ttl_floor: Duration, ttl_cap: Duration) -> Self {
        DnsNames { scoped: Lru::new(capacity), any: Lru::new(capacity), ttl_floor: ttl_floor.min(ttl_cap), ttl_cap }
    }

    /// Remembers answers received in `scope` at `now`.
    pub fn insert_answers(&mut self, scope: u64, answers: &[Answer], now: Instant) {
        for a in answers {
            let keep = Duration::from_secs(a.ttl.into()).clamp(self.ttl_floor, self.ttl_cap);
            let expires = now + keep;
            let ip = a.ip.to_canonical();
            let name: Arc<str> = Arc::from(a.name.as_str());
            self.scoped.insert((scope, ip), name.clone(), expires);
            self.any.insert(ip, name, expires);
        }
    }

    /// Parses a DNS response received in `scope` and remembers its answers: how many.
    pub fn insert_message(&mut self, scope: u64, msg: &[u8], now: Instant) -> Result<usize, DnsError> {
        let answers = parse_answers(msg)?;
        self.insert_answers(scope, &answers, now);
        Ok(answers.len())
    }

    /// The name `ip` was resolved from in `scope`, else in any scope; `None` when unknown or
    /// expired at `now`.
    pub fn name_for(&mut self, scope: u64, ip: IpAddr, now: Instant) -> Option<&str> {
        let ip = ip.to_canonical();
        // Both looked up: a use marks the IP used in both LRUs, which then evict alike.
        let fallback = self.any.get(&ip, now);
        self.scoped.get(&(scope, ip), now).or(fallback)
    }

    /// Drops expired entries (lookups drop the ones they meet); returns how many (scoped).
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        self.any.purge_expired(now);
        self.scoped.purge_expired(now)
    }

    /// (scope, IP) entries held, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.scoped.map.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.scoped.map.is_empty()
    }
}

#[cfg(test)]
mod tests;
