//! Sans-I/O gzip batching: many objects in one S3 object, each one separately addressable.
//!
//! Every object is compressed as **one gzip member** whose content is the object's bytes
//! followed by `"\n"`, and members are concatenated. Hence:
//!
//! - `zcat batch.ndjson.gz` yields NDJSON, one object per line (`zcat … | jq` works);
//! - a ranged read `bytes=OFFSET-(OFFSET+LENGTH-1)` returns exactly one member, a complete
//!   gzip file that gunzips to the object's bytes plus `"\n"`;
//! - the digest stays the SHA-1 of the object's bytes *without* the newline.
//!
//! The key of a batch is chosen when its first member is added, so [`BatchBuilder::add`] can
//! tell at once where the object will live:
//! `<prefix>/batches/<yyyy>/<mm>/<dd>/<hh>/<unix_nanos>-<xid>.ndjson.gz` (UTC).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::time::{Duration, Instant, SystemTime};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use crate::object::StoredObject;

/// Default cap on the compressed size of a batch: 8 MiB.
pub const DEFAULT_MAX_COMPRESSED_BYTES: u64 = 8 << 20;
/// Default age after which an open batch is sealed: 10 s.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(10);

/// Where one object lives inside a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberLocation {
    /// The batch's S3 key.
    pub key: String,
    /// Byte offset of the object's gzip member in the batch.
    pub offset: u64,
    /// Length of the member in bytes.
    pub length: u64,
}

impl MemberLocation {
    /// The inclusive last byte of the member (`offset + length - 1`), as in a `Range` header.
    pub fn end(&self) -> u64 {
        (self.offset + self.length).saturating_sub(1)
    }

    /// The HTTP `Range` header value selecting the member: `bytes=OFFSET-END`.
    pub fn range_header(&self) -> String {
        format!("bytes={}-{}", self.offset, self.end())
    }
}

/// A sealed batch, ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Its S3 key.
    pub key: String,
    /// Concatenated gzip members.
    pub bytes: Vec<u8>,
    /// `(digest, offset, length)` of every member, in order.
    pub members: Vec<(String, u64, u64)>,
}

struct OpenBatch {
    key: String,
    bytes: Vec<u8>,
    members: Vec<(String, u64, u64)>,
    opened: Instant,
}

/// Accumulates compressed objects into batches sealed by size or age.
///
/// No I/O and no clock reads other than the wall clock used to name a new batch; time is
/// passed in, so callers (and tests) control when batches age.
pub struct BatchBuilder {
    prefix: String,
    max_bytes: u64,
    max_age: Duration,
    compressor: MemberCompressor,
    open: Option<OpenBatch>,
    ready: VecDeque<Batch>,
}

/// A reusable gzip member compressor: the deflate state (hundreds of KiB for the Rust
/// backend) is allocated once and reset between members, which for 1 KiB objects is most of
/// the cost of compressing.
pub struct MemberCompressor {
    deflate: Compress,
    level: Compression,
}

/// gzip header: magic, CM=deflate, no flags, mtime 0, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

impl MemberCompressor {
    /// A compressor at `level`.
    pub fn new(level: Compression) -> Self {
        Self { deflate: Compress::new(level, false), level }
    }

    /// Its level.
    pub fn level(&self) -> Compression {
        self.level
    }

    /// `bytes` + `"\n"` as one complete gzip member.
    pub fn compress(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() + 64);
        out.extend_from_slice(&GZIP_HEADER);
        self.deflate.reset();
        let mut crc = Crc::new();
        let mut rounds = 0u32;
        for (chunk, flush) in [(bytes, FlushCompress::None), (&b"\n"[..], FlushCompress::Finish)] {
            crc.update(chunk);
            let mut input = chunk;
            loop {
                rounds += 1;
                if rounds > 100_000 {
                    return compress_member(bytes, self.level); // never expected: no progress
                }
                if out.capacity() - out.len() < 64 {
                    out.reserve(out.capacity().max(256));
                }
                let before = self.deflate.total_in();
                let status = self.deflate.compress_vec(input, &mut out, flush);
                input = &input[(self.deflate.total_in() - before) as usize..];
                match status {
                    Ok(Status::StreamEnd) => break,
                    Ok(_) if input.is_empty() && flush == FlushCompress::None => break,
                    Ok(_) => {}
                    // Compressing into a Vec does not fail; fall back to the streaming encoder.
                    Err(_) => return compress_member(bytes, self.level),
                }
            }
        }
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&crc.amount().to_le_bytes());
        out
    }
}

/// Compresses `bytes` + `"\n"` as one complete gzip member (allocating a fresh deflate
/// state; see [`MemberCompressor`] for repeated use).
pub fn compress_member(bytes: &[u8], level: Compression) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(bytes.len() / 2 + 64), level);
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    let _ = enc.write_all(b"\n");
    enc.finish().unwrap_or_default()
}

/// Why a member could not be turned back into an object.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The bytes are not one valid gzip member.
    #[error("the byte range is not a valid gzip member: {0}")]
    Gzip(#[from] std::io::Error),
    /// The member does not end with the newline every member carries.
    #[error("the gzip member does not end with a newline")]
    NoNewline,
}

/// Gunzips one member (as returned by a ranged GET) and strips its trailing `"\n"`: the
/// object's exact bytes.
pub fn decode_member(member: &[u8]) -> Result<Vec<u8>, MemberError> {
    let mut out = Vec::with_capacity(member.len() * 4);
    GzDecoder::new(member).read_to_end(&mut out)?;
    if out.pop() != Some(b'\n') {
        return Err(MemberError::NoNewline);
    }
    Ok(out)
}

/// `<prefix>/batches/<yyyy>/<mm>/<dd>/<hh>/<unix_nanos>-<xid>.ndjson.gz` for `now`.
pub fn batch_key(prefix: &str, now: SystemTime) -> String {
    let nanos = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let prefix = prefix.trim_matches('/');
    let sep = if prefix.is_empty() { "" } else { "/" };
    format!(
        "{prefix}{sep}batches/{:04}/{:02}/{:02}/{:02}/{nanos}-{}.ndjson.gz",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        xid::new()
    )
}

impl BatchBuilder {
    /// A builder naming batches under `key_prefix` (may be empty), sealing a batch once it
    /// holds `max_compressed_bytes` or its first member is `max_age` old.
    pub fn new(key_prefix: impl Into<String>, max_compressed_bytes: u64, max_age: Duration) -> Self {
        Self {
            prefix: key_prefix.into(),
            max_bytes: max_compressed_bytes.max(1),
            max_age,
            compressor: MemberCompressor::new(Compression::default()),
            open: None,
            ready: VecDeque::new(),
        }
    }

    /// Sets the gzip level (0–9, default 6).
    pub fn with_level(mut self, level: u32) -> Self {
        self.compressor = MemberCompressor::new(Compression::new(level.min(9)));
        self
    }

    /// The gzip level members are compressed with.
    pub fn level(&self) -> Compression {
        self.compressor.level()
    }

    /// Compresses `obj` into the current batch (opening one, or sealing the current one first
    /// when the member would push it past the size limit) and says where it lives.
    ///
    /// A single object larger than the limit gets a batch of its own.
    pub fn add(&mut self, obj: &StoredObject, now: Instant) -> MemberLocation {
        let member = self.compressor.compress(&obj.bytes);
        self.add_member(&obj.digest, &member, now)
    }

    /// Like [`BatchBuilder::add`] with a member already made by a [`MemberCompressor`] or
    /// [`compress_member`] (so that callers can compress outside a lock).
    pub fn add_member(&mut self, digest: &str, member: &[u8], now: Instant) -> MemberLocation {
        let len = member.len() as u64;
        if let Some(open) = &self.open
            && !open.bytes.is_empty()
            && open.bytes.len() as u64 + len > self.max_bytes
        {
            self.seal();
        }
        let prefix = &self.prefix;
        let open = self.open.get_or_insert_with(|| OpenBatch {
            key: batch_key(prefix, SystemTime::now()),
            bytes: Vec::with_capacity(64 << 10),
            members: Vec::new(),
            opened: now,
        });
        let offset = open.bytes.len() as u64;
        open.bytes.extend_from_slice(member);
        open.members.push((digest.to_string(), offset, len));
        let loc = MemberLocation { key: open.key.clone(), offset, length: len };
        if open.bytes.len() as u64 >= self.max_bytes {
            self.seal();
        }
        loc
    }

    fn seal(&mut self) {
        if let Some(o) = self.open.take() {
            self.ready.push_back(Batch { key: o.key, bytes: o.bytes, members: o.members });
        }
    }

    /// The next batch that reached its size or age limit at `now`, if any.
    pub fn take_ready(&mut self, now: Instant) -> Option<Batch> {
        if self.ready.is_empty()
            && let Some(o) = &self.open
            && now.saturating_duration_since(o.opened) >= self.max_age
        {
            self.seal();
        }
        self.ready.pop_front()
    }

    /// Every batch, sealed or open (flush / shutdown). The builder is empty afterwards.
    pub fn take_all(&mut self) -> Vec<Batch> {
        self.seal();
        self.ready.drain(..).collect()
    }

    /// When the open batch will be old enough to seal, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.opened + self.max_age)
    }

    /// Objects held (open and sealed batches).
    pub fn pending_objects(&self) -> usize {
        self.ready.iter().map(|b| b.members.len()).sum::<usize>() + self.open.as_ref().map_or(0, |o| o.members.len())
    }

    /// The exact bytes of `digest` if it is still held here (not yet taken).
    pub fn lookup(&self, digest: &str) -> Option<Vec<u8>> {
        let open = self.open.as_ref().map(|o| (&o.bytes, &o.members));
        let ready = self.ready.iter().map(|b| (&b.bytes, &b.members));
        for (bytes, members) in open.into_iter().chain(ready) {
            if let Some((_, off, len)) = members.iter().find(|(d, _, _)| d == digest) {
                let (off, len) = (*off as usize, *len as usize);
                return bytes.get(off..off + len).and_then(|m| decode_member(m).ok());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;

    use flate2::read::MultiGzDecoder;

    use super::*;
    use crate::ids::digest_hex;

    fn obj(i: usize, size: usize) -> StoredObject {
        let mut s = format!("{{\"i\":{i},\"pad\":\"");
        let mut x = i as u64 * 2654435761 + 1;
        while s.len() < size - 2 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push(char::from(b'a' + (x % 26) as u8));
        }
        s.push_str("\"}");
        let bytes = s.into_bytes();
        StoredObject { digest: digest_hex(&bytes), content_type: "application/json", bytes }
    }

    #[test]
    fn offsets_ranges_and_ndjson() {
        let t0 = Instant::now();
        let mut b = BatchBuilder::new("pfx/", DEFAULT_MAX_COMPRESSED_BYTES, DEFAULT_MAX_AGE);
        let objs: Vec<_> = (0..100).map(|i| obj(i, 1024)).collect();
        let locs: Vec<_> = objs.iter().map(|o| b.add(o, t0)).collect();
        assert_eq!(b.pending_objects(), 100);
        assert!(b.take_ready(t0 + Duration::from_secs(1)).is_none(), "neither limit reached");
        let batches = b.take_all();
        assert_eq!(batches.len(), 1);
        let batch = &batches[0];
        assert!(batch.key.starts_with("pfx/batches/"), "{}", batch.key);
        assert!(batch.key.ends_with(".ndjson.gz"));
        assert_eq!(batch.members.len(), 100);
        // Members are contiguous and cover the batch.
        let mut next = 0;
        for ((o, loc), (d, off, len)) in objs.iter().zip(&locs).zip(&batch.members) {
            assert_eq!((&loc.key, loc.offset, loc.length), (&batch.key, *off, *len));
            assert_eq!(&o.digest, d);
            assert_eq!(*off, next);
            next = off + len;
            // The member alone is a gzip file of the object + "\n".
            let member = &batch.bytes[*off as usize..=loc.end() as usize];
            assert_eq!(decode_member(member).unwrap(), o.bytes);
            assert_eq!(loc.range_header(), format!("bytes={}-{}", off, off + len - 1));
        }
        assert_eq!(next, batch.bytes.len() as u64);
        // zcat | jq: one JSON object per line, each hashing to a digest we put.
        let lines: Vec<String> =
            std::io::BufReader::new(MultiGzDecoder::new(&batch.bytes[..])).lines().map(|l| l.unwrap()).collect();
        assert_eq!(lines.len(), 100);
        for (line, o) in lines.iter().zip(&objs) {
            let _: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(digest_hex(line.as_bytes()), o.digest);
        }
        assert!(b.take_all().is_empty());
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn age_trigger() {
        let t0 = Instant::now();
        let mut b = BatchBuilder::new("", DEFAULT_MAX_COMPRESSED_BYTES, Duration::from_secs(10));
        assert!(b.take_ready(t0).is_none());
        let l1 = b.add(&obj(1, 200), t0);
        assert!(l1.key.starts_with("batches/"), "{}", l1.key);
        let l2 = b.add(&obj(2, 200), t0 + Duration::from_secs(9));
        assert_eq!(l1.key, l2.key);
        assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(10)));
        assert!(b.take_ready(t0 + Duration::from_millis(9999)).is_none());
        let batch = b.take_ready(t0 + Duration::from_secs(10)).expect("aged");
        assert_eq!(batch.members.len(), 2);
        // The next object opens a new batch with a new key.
        let l3 = b.add(&obj(3, 200), t0 + Duration::from_secs(11));
        assert_ne!(l3.key, l1.key);
        assert_eq!(l3.offset, 0);
    }

    #[test]
    fn size_trigger_keeps_batches_under_the_limit() {
        let t0 = Instant::now();
        let limit = 10_000;
        let mut b = BatchBuilder::new("p", limit, DEFAULT_MAX_AGE);
        let objs: Vec<_> = (0..200).map(|i| obj(i, 1024)).collect();
        let mut keys = std::collections::BTreeSet::new();
        let mut got = Vec::new();
        for o in &objs {
            keys.insert(b.add(o, t0).key);
            while let Some(batch) = b.take_ready(t0) {
                got.push(batch);
            }
        }
        got.extend(b.take_all());
        assert!(got.len() > 5, "{} batches", got.len());
        assert_eq!(got.len(), keys.len());
        assert_eq!(got.iter().map(|g| g.members.len()).sum::<usize>(), 200);
        for g in &got {
            assert!(g.bytes.len() as u64 <= limit);
            assert!(keys.contains(&g.key));
        }
        // An object bigger than the limit goes alone.
        let big = obj(999, 50_000);
        let mut b = BatchBuilder::new("p", 100, DEFAULT_MAX_AGE).with_level(0);
        b.add(&obj(1, 100), t0);
        let loc = b.add(&big, t0);
        assert_eq!(loc.offset, 0);
        let first = b.take_ready(t0).unwrap();
        assert_eq!(first.members.len(), 1);
        let second = b.take_ready(t0).unwrap();
        assert_eq!(second.key, loc.key);
        assert_eq!(decode_member(&second.bytes).unwrap(), big.bytes);
    }

    #[test]
    fn lookup_serves_unsent_objects() {
        let mut b = BatchBuilder::new("p", 5_000, DEFAULT_MAX_AGE);
        let objs: Vec<_> = (0..20).map(|i| obj(i, 1024)).collect();
        for o in &objs {
            b.add(o, Instant::now());
        }
        for o in &objs {
            assert_eq!(b.lookup(&o.digest).as_deref(), Some(&o.bytes[..]));
        }
        assert_eq!(b.lookup("0000000000000000000000000000000000000000"), None);
    }

    #[test]
    fn reused_compressor_makes_valid_members() {
        let mut c = MemberCompressor::new(Compression::default());
        for (i, size) in [0usize, 1, 100, 1024, 70_000, 1 << 20].into_iter().enumerate() {
            let o = if size < 10 {
                StoredObject { digest: String::new(), content_type: "", bytes: vec![b'x'; size] }
            } else {
                obj(i, size)
            };
            let m = c.compress(&o.bytes);
            assert_eq!(decode_member(&m).unwrap(), o.bytes, "size {size}");
            assert_eq!(decode_member(&compress_member(&o.bytes, Compression::fast())).unwrap(), o.bytes);
        }
        let mut c = MemberCompressor::new(Compression::none());
        assert_eq!(decode_member(&c.compress(b"{}")).unwrap(), b"{}");
    }

    #[test]
    fn key_layout() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let k = batch_key("/a/b/", t);
        assert!(k.starts_with("a/b/batches/2023/11/14/22/1700000000000000000-"), "{k}");
    }

    #[test]
    fn decode_member_rejects_garbage() {
        assert!(decode_member(b"not gzip").is_err());
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(b"{}").unwrap();
        assert!(matches!(decode_member(&enc.finish().unwrap()), Err(MemberError::NoNewline)));
    }
}
