//! Sans-I/O Fluent Forward codec: entries, PackedForward messages, chunk ids, the receiver's responses and the
//! shared-key handshake (HELO / PING / PONG). Nothing here touches a socket.
//!
//! Wire rules (both Fluent Bit and fluentd verified, Vector per its source):
//! - an entry is `[EventTime, record]`, EventTime being msgpack ext type 0 with 8 bytes (big-endian u32 seconds,
//!   u32 nanoseconds);
//! - a message is `[tag, bin(entries…), {"size": n, "chunk": "<base64 of 16 random bytes>", "compressed": "gzip"}]`,
//!   the chunk a msgpack *str*;
//! - records keep the JSON key order, keys are strings, integers above `i64::MAX` become decimal strings;
//! - HELO's `nonce` / `auth` may be a msgpack str holding non-UTF-8 bytes (Fluent Bit): they are kept as bytes;
//! - every PING field is a msgpack str (Fluent Bit rejects bin).

use std::fmt;
use std::io::Write;
use std::time::SystemTime;

use base64::Engine;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha512};

/// Errors of the Forward codec.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The record is not valid JSON.
    #[error("record is not valid JSON: {0}")]
    InvalidJson(#[from] serde_json::Error),
    /// The record is valid JSON but not an object (Forward records are maps).
    #[error("record is not a JSON object")]
    NotAnObject,
    /// The receiver sent something that is not a Forward response.
    #[error("malformed response from the Forward receiver: {0}")]
    Protocol(String),
}

/// Fluent's EventTime: seconds and nanoseconds since the Unix epoch (msgpack ext type 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime {
    /// Seconds since the Unix epoch.
    pub secs: u32,
    /// Nanoseconds within the second (`< 1_000_000_000`).
    pub nanos: u32,
}

impl EventTime {
    /// An EventTime from its parts (nanoseconds are clamped below one second).
    pub fn new(secs: u32, nanos: u32) -> Self {
        EventTime { secs, nanos: nanos.min(999_999_999) }
    }

    /// The current time.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// `t` as an EventTime (before the epoch: 0; after 2106: saturated).
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => EventTime::new(u32::try_from(d.as_secs()).unwrap_or(u32::MAX), d.subsec_nanos()),
            Err(_) => EventTime::default(),
        }
    }

    /// Seconds since the epoch as a float (the envelope's `ts`); `None` when negative, not finite or too large.
    pub fn from_secs_f64(ts: f64) -> Option<Self> {
        if !ts.is_finite() || ts < 0.0 || ts >= f64::from(u32::MAX) + 1.0 {
            return None;
        }
        let secs = ts.trunc();
        // Rounded to microseconds: the envelope carries at most that, and it hides f64 noise (…02 → …0199999).
        let micros = ((ts - secs) * 1e6).round() as u32;
        let (secs, micros) = if micros >= 1_000_000 { (secs + 1.0, 0) } else { (secs, micros) };
        if secs >= f64::from(u32::MAX) + 1.0 {
            return None;
        }
        Some(EventTime::new(secs as u32, micros * 1000))
    }

    /// The msgpack encoding: fixext 8, type 0, seconds and nanoseconds big-endian.
    pub fn to_msgpack(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[0] = 0xd7;
        b[1] = 0x00;
        b[2..6].copy_from_slice(&self.secs.to_be_bytes());
        b[6..10].copy_from_slice(&self.nanos.to_be_bytes());
        b
    }
}

/// How the entries of a PackedForward message are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// CompressedPackedForward, `"compressed": "gzip"` (Fluent Bit, fluentd and Vector accept it).
    #[default]
    Gzip,
    /// Plain PackedForward.
    None,
}

/// Encodes one JSON envelope line (an object; surrounding whitespace and the trailing `\n` are fine) as a
/// msgpack Forward entry `[tag_time, record]`.
pub fn encode_entry(tag_time: EventTime, record_json: &[u8]) -> Result<Vec<u8>, ForwardError> {
    let mut out = Vec::with_capacity(record_json.len() + 16);
    out.push(0x92);
    out.extend_from_slice(&tag_time.to_msgpack());
    transcode_record(record_json, &mut out)?;
    Ok(out)
}

/// Like [`encode_entry`], but the entry's time is the record's top-level `ts` (seconds since the epoch, as in the
/// envelope) when it has a usable one, else `fallback`.
pub fn encode_entry_at_record_time(record_json: &[u8], fallback: EventTime) -> Result<Vec<u8>, ForwardError> {
    let mut out = Vec::with_capacity(record_json.len() + 16);
    out.push(0x92);
    let time_at = out.len();
    out.extend_from_slice(&fallback.to_msgpack());
    if let Some(t) = transcode_record(record_json, &mut out)?.and_then(EventTime::from_secs_f64) {
        out[time_at..time_at + 10].copy_from_slice(&t.to_msgpack());
    }
    Ok(out)
}

/// Transcodes a JSON object to a msgpack map appended to `out`; returns the top-level numeric `ts`, if any.
fn transcode_record(json: &[u8], out: &mut Vec<u8>) -> Result<Option<f64>, ForwardError> {
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Let serde_json report invalid JSON as such; valid non-objects are refused separately.
        serde_json::from_slice::<serde::de::IgnoredAny>(json)?;
        return Err(ForwardError::NotAnObject);
    }
    let start = out.len();
    let mut ts = None;
    let mut de = serde_json::Deserializer::from_slice(json);
    let res = Transcode { out: &mut *out, top: true, ts: Some(&mut ts) }.deserialize(&mut de).and_then(|()| de.end());
    if let Err(e) = res {
        out.truncate(start);
        return Err(ForwardError::InvalidJson(e));
    }
    Ok(ts)
}

/// Writes every JSON value straight into msgpack, keeping object key order (serde_json's `Value` would sort it).
struct Transcode<'a> {
    out: &'a mut Vec<u8>,
    /// The value is the record itself (its `ts` key is captured).
    top: bool,
    /// Where a numeric value is reported (the top-level `ts`).
    ts: Option<&'a mut Option<f64>>,
}

impl<'de> DeserializeSeed<'de> for Transcode<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Inserts a container header at `start` once the element count is known.
fn insert_header(out: &mut Vec<u8>, start: usize, n: u32, map: bool) {
    let mut hdr = Vec::with_capacity(5);
    let _ = if map { rmp::encode::write_map_len(&mut hdr, n) } else { rmp::encode::write_array_len(&mut hdr, n) };
    out.splice(start..start, hdr);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = rmp::encode::write_str(out, s);
}

impl<'de> Visitor<'de> for Transcode<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        let _ = rmp::encode::write_nil(self.out);
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        let _ = rmp::encode::write_bool(self.out, v);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        if let Some(ts) = self.ts {
            *ts = Some(v as f64);
        }
        let _ = rmp::encode::write_sint(self.out, v);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        if let Some(ts) = self.ts {
            *ts = Some(v as f64);
        }
        if i64::try_from(v).is_ok() {
            let _ = rmp::encode::write_uint(self.out, v);
        } else {
            // Vector turns u64 above i64::MAX into strings anyway; do it here so every peer sees the same.
            write_str(self.out, &v.to_string());
        }
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        if let Some(ts) = self.ts {
            *ts = Some(v);
        }
        let _ = rmp::encode::write_f64(self.out, v);
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        write_str(self.out, v);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let start = self.out.len();
        let mut n: u32 = 0;
        while seq.next_element_seed(Transcode { out: &mut *self.out, top: false, ts: None })?.is_some() {
            n = n.saturating_add(1);
        }
        insert_header(self.out, start, n, false);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let start = self.out.len();
        let mut n: u32 = 0;
        let mut ts_slot = self.ts;
        loop {
            let mut is_ts = false;
            let key = KeySeed { out: &mut *self.out, is_ts: &mut is_ts };
            if map.next_key_seed(key)?.is_none() {
                break;
            }
            let ts = if self.top && is_ts { ts_slot.as_deref_mut() } else { None };
            map.next_value_seed(Transcode { out: &mut *self.out, top: false, ts })?;
            n = n.saturating_add(1);
        }
        insert_header(self.out, start, n, true);
        Ok(())
    }
}

/// Writes an object key as a msgpack str and tells whether it is `ts`.
struct KeySeed<'a> {
    out: &'a mut Vec<u8>,
    is_ts: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        *self.is_ts = v == "ts";
        write_str(self.out, v);
        Ok(())
    }
}

/// Builds one PackedForward (or, with [`Compression::Gzip`], CompressedPackedForward) message
/// `[tag, bin(entries…), {"size": n, "chunk": chunk, "compressed": "gzip"}]` from entries made by
/// [`encode_entry`]. An empty `chunk` leaves the chunk option out (no ack is then requested).
pub fn packed_forward(tag: &str, entries: &[Vec<u8>], compress: Compression, chunk: &str) -> Vec<u8> {
    let raw_len: usize = entries.iter().map(Vec::len).sum();
    let payload = match compress {
        Compression::Gzip => gzip(entries, raw_len),
        Compression::None => None,
    };
    let compressed = payload.is_some();
    let payload_len = payload.as_ref().map_or(raw_len, Vec::len);
    let mut out = Vec::with_capacity(payload_len + tag.len() + 80);
    out.push(0x93);
    write_str(&mut out, tag);
    let _ = rmp::encode::write_bin_len(&mut out, u32::try_from(payload_len).unwrap_or(u32::MAX));
    match payload {
        Some(p) => out.extend_from_slice(&p),
        None => entries.iter().for_each(|e| out.extend_from_slice(e)),
    }
    let n_opts = 1 + u32::from(!chunk.is_empty()) + u32::from(compressed);
    let _ = rmp::encode::write_map_len(&mut out, n_opts);
    write_str(&mut out, "size");
    let _ = rmp::encode::write_uint(&mut out, entries.len() as u64);
    if !chunk.is_empty() {
        write_str(&mut out, "chunk");
        write_str(&mut out, chunk);
    }
    if compressed {
        write_str(&mut out, "compressed");
        write_str(&mut out, "gzip");
    }
    out
}

/// Gzips the concatenated entries (one member); `None` only if compression failed, which a Vec sink never does.
fn gzip(entries: &[Vec<u8>], raw_len: usize) -> Option<Vec<u8>> {
    let mut enc =
        flate2::write::GzEncoder::new(Vec::with_capacity(raw_len / 4 + 64), flate2::Compression::new(GZIP_LEVEL));
    for e in entries {
        enc.write_all(e).ok()?;
    }
    enc.finish().ok()
}

/// zlib level of CompressedPackedForward. On 1 KiB envelopes (tests/forward_bench.rs) level 1 shrinks msgpack to 20%
/// at ~123k entries/s per core (level 3: 17.3% at ~89k/s; level 6: 16.7% at ~58k/s): level 1 keeps one core above
/// 100k events/s, at 3 points of extra wire size.
pub const GZIP_LEVEL: u32 = 1;

/// A fresh chunk id: base64 (standard, padded) of 16 random bytes, as the Forward spec asks.
pub fn new_chunk_id() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

/// What a Forward receiver sent back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `{"ack": chunk}`: the message with this chunk id was accepted.
    Ack(String),
    /// A map without `ack` (Vector sends `{}` when a sink rejected the events): not accepted, send again.
    Nack,
    /// `["HELO", {"nonce", "auth", "keepalive"}]`: the receiver requires the shared-key handshake.
    Helo {
        /// The nonce to digest in the PING (raw bytes: Fluent Bit sends non-UTF-8 bytes in a str).
        nonce: Vec<u8>,
        /// The user-auth salt; empty when the receiver has no user authentication.
        auth: Vec<u8>,
        /// Whether the receiver keeps the connection open after the handshake.
        keepalive: bool,
    },
    /// `["PONG", ok, reason, server_hostname, digest]`.
    Pong {
        /// Whether the receiver accepted the PING.
        ok: bool,
        /// Why not (empty when `ok`).
        reason: String,
        /// The receiver's `self_hostname`.
        server_hostname: Vec<u8>,
        /// `sha512_hex(salt + server_hostname + nonce + shared_key)`.
        digest: Vec<u8>,
    },
}

/// Largest response accepted; real ones are well under 1 KiB.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Incremental decoder of the receiver's responses: feed it bytes as they arrive, take complete responses out.
#[derive(Debug, Default)]
pub struct Responses {
    buf: Vec<u8>,
}

impl Responses {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes fed but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Discards everything buffered (after a reconnect).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The next complete response, `Ok(None)` when more bytes are needed. Msgpack nils (heartbeats) are skipped.
    /// An error means the stream is unusable (drop the connection).
    pub fn next_response(&mut self) -> Result<Option<Response>, ForwardError> {
        loop {
            let mut r = Reader { buf: &self.buf, pos: 0 };
            let v = match r.value(0) {
                Ok(v) => v,
                Err(Incomplete::More) if self.buf.len() <= MAX_RESPONSE_BYTES => return Ok(None),
                Err(Incomplete::More) => {
                    return Err(ForwardError::Protocol(format!("response larger than {MAX_RESPONSE_BYTES} bytes")));
                }
                Err(Incomplete::Bad(why)) => return Err(ForwardError::Protocol(why)),
            };
            let used = r.pos;
            self.buf.drain(..used);
            if v == Value::Nil {
                continue;
            }
            return interpret(v).map(Some);
        }
    }
}

fn interpret(v: Value) -> Result<Response, ForwardError> {
    match v {
        Value::Map(kv) => Ok(match lookup(&kv, "ack") {
            Some(Value::Str(c) | Value::Bin(c)) => Response::Ack(String::from_utf8_lossy(c).into_owned()),
            _ => Response::Nack,
        }),
        Value::Array(items) => match items.first() {
            Some(Value::Str(k)) if k == b"HELO" => {
                let Some(Value::Map(opts)) = items.get(1) else {
                    return Err(ForwardError::Protocol("HELO without an options map".into()));
                };
                Ok(Response::Helo {
                    nonce: lookup(opts, "nonce").and_then(Value::bytes).unwrap_or_default().to_vec(),
                    auth: lookup(opts, "auth").and_then(Value::bytes).unwrap_or_default().to_vec(),
                    keepalive: !matches!(lookup(opts, "keepalive"), Some(Value::Bool(false))),
                })
            }
            Some(Value::Str(k)) if k == b"PONG" => {
                let field = |i: usize| items.get(i).and_then(Value::bytes).unwrap_or_default().to_vec();
                Ok(Response::Pong {
                    ok: matches!(items.get(1), Some(Value::Bool(true))),
                    reason: String::from_utf8_lossy(&field(2)).into_owned(),
                    server_hostname: field(3),
                    digest: field(4),
                })
            }
            _ => Err(ForwardError::Protocol(format!("unexpected array response {}", describe(&items)))),
        },
        other => Err(ForwardError::Protocol(format!("unexpected response {}", describe(std::slice::from_ref(&other))))),
    }
}

fn describe(v: &[Value]) -> String {
    let s = format!("{v:?}");
    s.chars().take(120).collect()
}

fn lookup<'a>(kv: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    kv.iter().find(|(k, _)| k.bytes() == Some(key.as_bytes())).map(|(_, v)| v)
}

/// The subset of msgpack values a receiver sends.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Nil,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Vec<u8>),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Ext(i8, Vec<u8>),
}

impl Value {
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(b) | Value::Bin(b) => Some(b),
            _ => None,
        }
    }
}

enum Incomplete {
    More,
    Bad(String),
}

/// A bounds-checked msgpack reader over a buffer that may end mid-value.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

const MAX_DEPTH: usize = 16;

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Incomplete> {
        if n > MAX_RESPONSE_BYTES {
            return Err(Incomplete::Bad(format!("declared length {n} exceeds {MAX_RESPONSE_BYTES}")));
        }
        let end = self.pos.checked_add(n).ok_or(Incomplete::More)?;
        let s = self.buf.get(self.pos..end).ok_or(Incomplete::More)?;
        self.pos = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64, Incomplete> {
        Ok(self.take(n)?.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, Incomplete> {
        usize::try_from(self.be(n)?).map_err(|_| Incomplete::Bad("length overflow".into()))
    }

    fn value(&mut self, depth: usize) -> Result<Value, Incomplete> {
        if depth > MAX_DEPTH {
            return Err(Incomplete::Bad("response nested too deeply".into()));
        }
        let m = self.take(1)?[0];
        Ok(match m {
            0x00..=0x7f => Value::Int(i128::from(m)),
            0x80..=0x8f => self.map(usize::from(m & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(m & 0x0f), depth)?,
            0xa0..=0xbf => Value::Str(self.take(usize::from(m & 0x1f))?.to_vec()),
            0xc0 => Value::Nil,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let n = self.len(1 << (m - 0xc4))?;
                Value::Bin(self.take(n)?.to_vec())
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (m - 0xc7))?;
                let t = self.take(1)?[0] as i8;
                Value::Ext(t, self.take(n)?.to_vec())
            }
            0xca => Value::Float(f64::from(f32::from_bits(self.be(4)? as u32))),
            0xcb => Value::Float(f64::from_bits(self.be(8)?)),
            0xcc..=0xcf => Value::Int(i128::from(self.be(1 << (m - 0xcc))?)),
            0xd0..=0xd3 => {
                let n = 1usize << (m - 0xd0);
                let u = self.be(n)?;
                let shift = 64 - 8 * n as u32;
                Value::Int(i128::from(((u << shift) as i64) >> shift))
            }
            0xd4..=0xd8 => {
                let t = self.take(1)?[0] as i8;
                Value::Ext(t, self.take(1 << (m - 0xd4))?.to_vec())
            }
            0xd9..=0xdb => {
                let n = self.len(1 << (m - 0xd9))?;
                Value::Str(self.take(n)?.to_vec())
            }
            0xdc | 0xdd => {
                let n = self.len(2 << (m - 0xdc))?;
                self.array(n, depth)?
            }
            0xde | 0xdf => {
                let n = self.len(2 << (m - 0xde))?;
                self.map(n, depth)?
            }
            0xe0..=0xff => Value::Int(i128::from(m as i8)),
            0xc1 => return Err(Incomplete::Bad("invalid msgpack marker 0xc1".into())),
        })
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value, Incomplete> {
        if n > MAX_RESPONSE_BYTES {
            return Err(Incomplete::Bad(format!("array of {n} elements")));
        }
        let mut v = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            v.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(v))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, Incomplete> {
        if n > MAX_RESPONSE_BYTES {
            return Err(Incomplete::Bad(format!("map of {n} entries")));
        }
        let mut v = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let val = self.value(depth + 1)?;
            v.push((k, val));
        }
        Ok(Value::Map(v))
    }
}

/// `sha512_hex` of the concatenated parts.
fn sha512_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Builds the PING answering a HELO:
/// `["PING", self_hostname, salt, sha512_hex(salt + self_hostname + nonce + shared_key), username,
/// sha512_hex(auth + username + password)]`, every field a msgpack str. With an empty `auth` (no auth salt in the HELO)
/// both user fields are empty; otherwise a missing username / password counts as the empty string, as fluentd does. Returns the message and the fresh salt
/// (hex of 16 random bytes), needed by [`verify_pong`].
pub fn ping(
    self_hostname: &str,
    shared_key: &str,
    nonce: &[u8],
    auth: &[u8],
    username: Option<&str>,
    password: Option<&str>,
) -> (Vec<u8>, String) {
    let salt = hex::encode(rand::random::<[u8; 16]>());
    (ping_with_salt(self_hostname, shared_key, nonce, auth, username, password, &salt), salt)
}

/// [`ping`] with a given salt (deterministic, for tests and golden vectors).
pub fn ping_with_salt(
    self_hostname: &str,
    shared_key: &str,
    nonce: &[u8],
    auth: &[u8],
    username: Option<&str>,
    password: Option<&str>,
    salt: &str,
) -> Vec<u8> {
    let digest = sha512_hex(&[salt.as_bytes(), self_hostname.as_bytes(), nonce, shared_key.as_bytes()]);
    // As fluentd's out_forward: a receiver with a security section always sends an auth salt (user_auth or not)
    // and ignores the user fields unless it has user_auth; they default to empty strings.
    let (user, pass_digest) = if auth.is_empty() {
        ("", String::new())
    } else {
        let u = username.unwrap_or_default();
        (u, sha512_hex(&[auth, u.as_bytes(), password.unwrap_or_default().as_bytes()]))
    };
    let mut out = Vec::with_capacity(300);
    out.push(0x96);
    for f in ["PING", self_hostname, salt, &digest, user, &pass_digest] {
        write_str(&mut out, f);
    }
    out
}

/// Whether a PONG's digest proves the receiver knows the shared key:
/// `digest == sha512_hex(salt + server_hostname + nonce + shared_key)`.
pub fn verify_pong(salt: &str, nonce: &[u8], shared_key: &str, server_hostname: &[u8], digest: &[u8]) -> bool {
    let want = sha512_hex(&[salt.as_bytes(), server_hostname, nonce, shared_key.as_bytes()]);
    // Constant-time compare: the digest is a secret-derived value.
    want.len() == digest.len() && want.bytes().zip(digest).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// An envelope line with every JSON value kind (what `envelope_line` renders, plus extra item fields).
    const RECORD: &str = "{\"level\":\"qpoint\",\"ts\":1761238061.02,\"message\":\"event store submission\",\
        \"type\":\"*eventstore.Issue\",\"event\":\"issue\",\"item\":{\"connectionId\":\"c\",\"n\":-5,\"big\":300,\
        \"neg\":-70000,\"f\":1.5,\"ok\":true,\"none\":null,\"arr\":[1,\"x\",{\"k\":[]}],\"u\":9223372036854775807}}\n";

    /// Golden bytes from Python's msgpack (as /work/shared/peers/forward-send.py packs):
    /// `msgpack.packb([ExtType(0, pack(">II", 1761238061, 20000000)), json.loads(RECORD)], use_bin_type=True)`.
    const GOLDEN_ENTRY: &str = "92d70068fa5c2d01312d0086a56c6576656ca671706f696e74a27473cb41da3e970b4147aea76d6573736167\
        65b66576656e742073746f7265207375626d697373696f6ea474797065b12a6576656e7473746f72652e4973737565a56576656e74a5\
        6973737565a46974656d89ac636f6e6e656374696f6e4964a163a16efba3626967cd012ca36e6567d2fffeee90a166cb3ff800000000\
        0000a26f6bc3a46e6f6e65c0a36172729301a17881a16b90a175cf7fffffffffffffff";

    /// `msgpack.packb(["tapline.issue", entry + entry, {"size": 2, "chunk": CHUNK}], use_bin_type=True)`.
    const GOLDEN_MSG_TAIL: &str = "82a473697a6502a56368756e6bb841414543417751464267634943516f4c4441304f44773d3d";
    const GOLDEN_MSG_HEAD: &str = "93ad7461706c696e652e6973737565c50176";
    const CHUNK: &str = "AAECAwQFBgcICQoLDA0ODw==";

    /// `msgpack.packb(["PING", "tapline-host", SALT, sha512_hex(SALT + host + NONCE + "s3cr3t"), "", ""])`.
    const GOLDEN_PING: &str = "96a450494e47ac7461706c696e652d686f7374d920303031313232333334343535363637373838393961616262\
        6363646465656666d9803565363565633463383734376639623266303530326436323161313364326364613736666163333637613761\
        303464336362363163653234633164626164306130633465366339363935356662313334626430653363346132333134363233356636\
        336162663637653836323837333366363130383137356435363262353466a0a0";
    const NONCE: [u8; 5] = [0xff, 0xfe, 0x00, 0x80, 0x41];
    const SALT: &str = "00112233445566778899aabbccddeeff";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    fn t() -> EventTime {
        EventTime::new(1_761_238_061, 20_000_000)
    }

    #[test]
    fn entry_matches_python_msgpack_golden_bytes() {
        assert_eq!(hex::encode(encode_entry(t(), RECORD.as_bytes()).unwrap()), hex::encode(unhex(GOLDEN_ENTRY)));
    }

    #[test]
    fn entry_time_comes_from_the_record_ts() {
        let e = encode_entry_at_record_time(RECORD.as_bytes(), EventTime::new(1, 2)).unwrap();
        assert_eq!(e, unhex(GOLDEN_ENTRY));
        let e = encode_entry_at_record_time(b"{\"a\":1,\"item\":{\"ts\":5}}", EventTime::new(1, 2)).unwrap();
        assert_eq!(&e[1..11], &EventTime::new(1, 2).to_msgpack());
        let e = encode_entry_at_record_time(b"{\"ts\":\"x\"}", EventTime::new(1, 2)).unwrap();
        assert_eq!(&e[1..11], &EventTime::new(1, 2).to_msgpack());
        let e = encode_entry_at_record_time(b"{\"ts\":7}", EventTime::new(1, 2)).unwrap();
        assert_eq!(&e[1..11], &EventTime::new(7, 0).to_msgpack());
    }

    #[test]
    fn packed_forward_matches_python_msgpack_golden_bytes() {
        let e = encode_entry(t(), RECORD.as_bytes()).unwrap();
        let msg = packed_forward("tapline.issue", &[e.clone(), e.clone()], Compression::None, CHUNK);
        let mut want = unhex(GOLDEN_MSG_HEAD);
        want.extend_from_slice(&e);
        want.extend_from_slice(&e);
        want.extend_from_slice(&unhex(GOLDEN_MSG_TAIL));
        assert_eq!(hex::encode(msg), hex::encode(want));
    }

    #[test]
    fn gzip_message_holds_the_entries() {
        let e = encode_entry(t(), RECORD.as_bytes()).unwrap();
        let entries = vec![e.clone(); 50];
        let msg = packed_forward("t", &entries, Compression::Gzip, CHUNK);
        // [fixarray3, fixstr "t", bin32?]
        assert_eq!(&msg[..3], &[0x93, 0xa1, b't']);
        let (len, at) = match msg[3] {
            0xc4 => (usize::from(msg[4]), 5),
            0xc5 => (usize::from(u16::from_be_bytes([msg[4], msg[5]])), 6),
            0xc6 => (u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]) as usize, 8),
            m => panic!("not bin: {m:#x}"),
        };
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(&msg[at..at + len]).read_to_end(&mut raw).unwrap();
        assert_eq!(raw, entries.concat());
        assert!(len < raw.len() / 5, "gzip should shrink repeated envelopes: {len} vs {}", raw.len());
        let opts = &msg[at + len..];
        let mut want = vec![0x83];
        write_str(&mut want, "size");
        want.push(50);
        for s in ["chunk", CHUNK, "compressed", "gzip"] {
            write_str(&mut want, s);
        }
        assert_eq!(opts, &want[..]);
    }

    #[test]
    fn no_chunk_no_ack_request() {
        let msg = packed_forward("t", &[], Compression::None, "");
        assert_eq!(msg, [0x93, 0xa1, b't', 0xc4, 0x00, 0x81, 0xa4, b's', b'i', b'z', b'e', 0x00]);
    }

    #[test]
    fn key_order_and_escapes_are_kept() {
        let e = encode_entry(t(), b"  {\"z\":1,\"a\":\"\\u00e9\\n\",\"m\":{}}  \n").unwrap();
        let mut want = vec![0x92];
        want.extend_from_slice(&t().to_msgpack());
        want.push(0x83);
        write_str(&mut want, "z");
        want.push(1);
        write_str(&mut want, "a");
        write_str(&mut want, "é\n");
        write_str(&mut want, "m");
        want.push(0x80);
        assert_eq!(e, want);
    }

    #[test]
    fn u64_above_i64_max_becomes_a_string() {
        let e = encode_entry(t(), b"{\"u\":18446744073709551615,\"i\":-9223372036854775808}").unwrap();
        let mut want = vec![0x92];
        want.extend_from_slice(&t().to_msgpack());
        want.push(0x82);
        write_str(&mut want, "u");
        write_str(&mut want, "18446744073709551615");
        write_str(&mut want, "i");
        want.push(0xd3);
        want.extend_from_slice(&i64::MIN.to_be_bytes());
        assert_eq!(e, want);
    }

    #[test]
    fn large_containers_get_16_and_32_bit_headers() {
        let arr: Vec<u32> = (0..70_000).map(|i| i % 100).collect();
        let obj: serde_json::Map<String, serde_json::Value> =
            (0..20).map(|i| (format!("k{i:02}"), serde_json::Value::from(i))).collect();
        let json = serde_json::json!({ "a": arr, "o": obj }).to_string();
        let e = encode_entry(t(), json.as_bytes()).unwrap();
        let body = &e[11..];
        assert_eq!(body[0], 0x82);
        assert_eq!(&body[1..3], &[0xa1, b'a']);
        assert_eq!(&body[3..8], &[0xdd, 0x00, 0x01, 0x11, 0x70]);
        let o = body.len() - (20 * 5) - 3;
        assert_eq!(&body[o - 2..o], &[0xa1, b'o']);
        assert_eq!(&body[o..o + 3], &[0xde, 0x00, 20]);
    }

    #[test]
    fn bad_records_are_refused() {
        assert!(matches!(encode_entry(t(), b"[1,2]"), Err(ForwardError::NotAnObject)));
        assert!(matches!(encode_entry(t(), b"42"), Err(ForwardError::NotAnObject)));
        assert!(matches!(encode_entry(t(), b"{\"a\":"), Err(ForwardError::InvalidJson(_))));
        assert!(matches!(encode_entry(t(), b"{} {}"), Err(ForwardError::InvalidJson(_))));
        assert!(matches!(encode_entry(t(), b"nope"), Err(ForwardError::InvalidJson(_))));
        assert!(matches!(encode_entry(t(), b""), Err(ForwardError::InvalidJson(_))));
    }

    #[test]
    fn event_time_conversions() {
        assert_eq!(t().to_msgpack(), [0xd7, 0x00, 0x68, 0xfa, 0x5c, 0x2d, 0x01, 0x31, 0x2d, 0x00]);
        assert_eq!(EventTime::from_secs_f64(1761238061.02), Some(t()));
        assert_eq!(EventTime::from_secs_f64(1.9999999), Some(EventTime::new(2, 0)));
        assert_eq!(EventTime::from_secs_f64(-1.0), None);
        assert_eq!(EventTime::from_secs_f64(f64::NAN), None);
        assert_eq!(EventTime::from_secs_f64(5e9), None);
        let st = SystemTime::UNIX_EPOCH + std::time::Duration::new(10, 5);
        assert_eq!(EventTime::from_system_time(st), EventTime::new(10, 5));
    }

    #[test]
    fn chunk_ids_are_base64_of_16_random_bytes() {
        let a = new_chunk_id();
        let b = new_chunk_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&a).unwrap().len(), 16);
    }

    fn feed_bytewise(r: &mut Responses, bytes: &[u8]) -> Vec<Response> {
        let mut out = Vec::new();
        for b in bytes {
            r.feed(std::slice::from_ref(b));
            while let Some(x) = r.next_response().unwrap() {
                out.push(x);
            }
        }
        out
    }

    #[test]
    fn responses_decode_incrementally() {
        let mut bytes = Vec::new();
        // {"ack": CHUNK} as str, {} (Vector's NACK), nil heartbeat, {"ack": bin}, {"other": 1}
        bytes.push(0x81);
        write_str(&mut bytes, "ack");
        write_str(&mut bytes, CHUNK);
        bytes.push(0x80);
        bytes.push(0xc0);
        bytes.push(0x81);
        write_str(&mut bytes, "ack");
        bytes.extend_from_slice(&[0xc4, 2, b'h', b'i']);
        bytes.push(0x81);
        write_str(&mut bytes, "other");
        bytes.push(1);
        let mut r = Responses::new();
        assert_eq!(
            feed_bytewise(&mut r, &bytes),
            vec![Response::Ack(CHUNK.into()), Response::Nack, Response::Ack("hi".into()), Response::Nack]
        );
        assert_eq!(r.buffered(), 0);
        // All at once, too.
        r.feed(&bytes);
        let mut n = 0;
        while r.next_response().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn fluent_bit_helo_with_non_utf8_str_nonce() {
        // ["HELO", {"nonce": str(non-UTF-8), "auth": str "", "keepalive": true}] as Fluent Bit sends it.
        let mut b = vec![0x92];
        write_str(&mut b, "HELO");
        b.push(0x83);
        write_str(&mut b, "nonce");
        b.push(0xa0 | NONCE.len() as u8);
        b.extend_from_slice(&NONCE);
        write_str(&mut b, "auth");
        write_str(&mut b, "");
        write_str(&mut b, "keepalive");
        b.push(0xc3);
        let mut r = Responses::new();
        assert_eq!(
            feed_bytewise(&mut r, &b),
            vec![Response::Helo { nonce: NONCE.to_vec(), auth: vec![], keepalive: true }]
        );
        // fluentd sends bin.
        let mut b = vec![0x92];
        write_str(&mut b, "HELO");
        b.push(0x82);
        write_str(&mut b, "nonce");
        b.extend_from_slice(&[0xc4, 2, 1, 2]);
        write_str(&mut b, "auth");
        b.extend_from_slice(&[0xc4, 1, 9]);
        r.feed(&b);
        assert_eq!(
            r.next_response().unwrap(),
            Some(Response::Helo { nonce: vec![1, 2], auth: vec![9], keepalive: true })
        );
    }

    #[test]
    fn ping_matches_python_golden_and_pong_verifies() {
        let p = ping_with_salt("tapline-host", "s3cr3t", &NONCE, b"", None, None, SALT);
        assert_eq!(hex::encode(&p), hex::encode(unhex(GOLDEN_PING)));
        // No auth salt: user fields stay empty even with a username configured.
        assert_eq!(ping_with_salt("tapline-host", "s3cr3t", &NONCE, b"", Some("u"), Some("p"), SALT), p);
        let (p2, salt) = ping("h", "k", &NONCE, b"", None, None);
        assert_eq!(salt.len(), 32);
        assert_eq!(p2, ping_with_salt("h", "k", &NONCE, b"", None, None, &salt));

        let digest = sha512_hex(&[SALT.as_bytes(), b"srv", &NONCE, b"s3cr3t"]);
        let mut b = vec![0x95];
        write_str(&mut b, "PONG");
        b.push(0xc3);
        write_str(&mut b, "");
        write_str(&mut b, "srv");
        write_str(&mut b, &digest);
        let mut r = Responses::new();
        let Some(Response::Pong { ok, reason, server_hostname, digest: d }) = feed_bytewise(&mut r, &b).pop() else {
            panic!("no pong")
        };
        assert!(ok && reason.is_empty());
        assert!(verify_pong(SALT, &NONCE, "s3cr3t", &server_hostname, &d));
        assert!(!verify_pong(SALT, &NONCE, "wrong", &server_hostname, &d));
        assert!(!verify_pong(SALT, &NONCE, "s3cr3t", b"other", &d));
        assert!(!verify_pong(SALT, &NONCE, "s3cr3t", &server_hostname, b""));
    }

    #[test]
    fn ping_with_user_auth() {
        let p = ping_with_salt("me", "k", b"n", b"authsalt", Some("alice"), Some("pw"), SALT);
        let mut want = vec![0x96];
        let d = sha512_hex(&[SALT.as_bytes(), b"me", b"n", b"k"]);
        let pd = sha512_hex(&[b"authsalt", b"alice", b"pw"]);
        for s in ["PING", "me", SALT, &d, "alice", &pd] {
            write_str(&mut want, s);
        }
        assert_eq!(p, want);
        // An auth salt without configured credentials: empty user, digest of the salt alone (fluentd's defaults).
        let p = ping_with_salt("me", "k", b"n", b"authsalt", None, None, SALT);
        let mut want = vec![0x96];
        let pd = sha512_hex(&[b"authsalt"]);
        for s in ["PING", "me", SALT, &d, "", &pd] {
            write_str(&mut want, s);
        }
        assert_eq!(p, want);
    }

    #[test]
    fn refused_pong_and_garbage() {
        let mut b = vec![0x95];
        write_str(&mut b, "PONG");
        b.push(0xc2);
        write_str(&mut b, "shared_key mismatch");
        write_str(&mut b, "");
        write_str(&mut b, "");
        let mut r = Responses::new();
        r.feed(&b);
        assert_eq!(
            r.next_response().unwrap(),
            Some(Response::Pong {
                ok: false,
                reason: "shared_key mismatch".into(),
                server_hostname: vec![],
                digest: vec![]
            })
        );
        for bad in [&[0xc1][..], &[0x91, 0x01], &[0x05], &[0xdb, 0xff, 0xff, 0xff, 0xff]] {
            let mut r = Responses::new();
            r.feed(bad);
            assert!(r.next_response().is_err(), "{bad:?}");
        }
        // Truncated values just wait for more.
        let mut r = Responses::new();
        r.feed(&[0x81, 0xa3, b'a']);
        assert_eq!(r.next_response().unwrap(), None);
    }
}

#[cfg(test)]
mod fuzz;
