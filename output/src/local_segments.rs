//! The segment layout of the local object store: JSON objects appended, one per line, to
//! `seg-<ms>-<n>.ndjson` files, with an index file (kept outside the object directory, so
//! the directory holds objects only) saying where each digest is. Creating one
//! file per object costs the filesystem an inode each (the largest cost of the agent at high
//! request rates, measured in docs/benchmarks.md); appending costs a write per flush.
//!
//! Each object is one `write` to the segment and one to the index before `put` returns, so an
//! `artifact_record` (emitted after) always finds its object, from any process. Crash safety:
//! the segment line is written before its index line, so an index line never points past what
//! was written; a torn last line (a crash mid-write) is simply not in the index.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::object::StoredObject;

/// A segment is closed once it holds this much.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Digests remembered for de-duplication (an object stored twice is written once).
const RECENT: usize = 10_000;

/// The open segment and the index.
pub(crate) struct Segments {
    dir: PathBuf,
    index_path: PathBuf,
    /// The open segment (created at the first object, so a reader opening the store makes none).
    open: Option<(String, File)>,
    offset: u64,
    index: Option<File>,
    seq: u64,
    recent: HashMap<String, String>,
    order: VecDeque<String>,
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

fn open_segment(dir: &Path, seq: u64) -> std::io::Result<(String, File)> {
    let name = format!("seg-{}-{seq}.ndjson", now_ms());
    let f = OpenOptions::new().create(true).append(true).open(dir.join(&name))?;
    Ok((name, f))
}

impl Segments {
    /// Segments in `dir` indexed in `index_path` (files are created with the first object).
    pub(crate) fn new(dir: &Path, index_path: &Path) -> Self {
        Segments {
            dir: dir.to_path_buf(),
            index_path: index_path.to_path_buf(),
            open: None,
            offset: 0,
            index: None,
            seq: 0,
            recent: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Appends `o` (unless it was just stored) and returns its url.
    pub(crate) fn append(&mut self, o: &StoredObject) -> std::io::Result<String> {
        if let Some(url) = self.recent.get(&o.digest) {
            return Ok(url.clone());
        }
        if self.open.is_some() && self.offset >= SEGMENT_BYTES {
            self.open = None;
            self.seq += 1;
        }
        if self.index.is_none() {
            if let Some(parent) = self.index_path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            self.index = Some(OpenOptions::new().create(true).append(true).open(&self.index_path)?);
        }
        let (name, file) = match &mut self.open {
            Some((n, f)) => (n.clone(), f),
            None => {
                self.offset = 0;
                let (n, f) = self.open.insert(open_segment(&self.dir, self.seq)?);
                (n.clone(), f)
            }
        };
        let (off, len) = (self.offset, o.bytes.len() as u64);
        let mut line = Vec::with_capacity(o.bytes.len() + 1);
        line.extend_from_slice(&o.bytes);
        line.push(b'\n');
        file.write_all(&line)?;
        self.offset += len + 1;
        if let Some(index) = &mut self.index {
            index.write_all(format!("{}\t{name}\t{off}\t{len}\n", o.digest).as_bytes())?;
        }
        let url = format!("file://{}#bytes={off}-{}", self.dir.join(&name).display(), off + len.max(1) - 1);
        if self.order.len() >= RECENT
            && let Some(old) = self.order.pop_front()
        {
            self.recent.remove(&old);
        }
        self.order.push_back(o.digest.clone());
        self.recent.insert(o.digest.clone(), url.clone());
        Ok(url)
    }

    /// The bytes of `digest` in the segments of `dir` (indexed in `index_path`), checked
    /// against the digest.
    pub(crate) fn find(dir: &Path, index_path: &Path, digest: &str) -> std::io::Result<Option<Vec<u8>>> {
        let f = match File::open(index_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        for line in BufReader::with_capacity(256 << 10, f).lines() {
            let line = line?;
            if !line.starts_with(digest) {
                continue;
            }
            let mut it = line.split('\t');
            let (Some(_), Some(seg), Some(off), Some(len)) = (it.next(), it.next(), it.next(), it.next()) else {
                continue;
            };
            let (Ok(off), Ok(len)) = (off.parse::<u64>(), len.parse::<usize>()) else { continue };
            if seg.contains('/') {
                continue; // never outside the directory
            }
            let Ok(mut f) = File::open(dir.join(seg)) else { continue };
            f.seek(SeekFrom::Start(off))?;
            let mut buf = vec![0u8; len];
            if f.read_exact(&mut buf).is_ok() && crate::ids::digest_hex(&buf) == digest {
                return Ok(Some(buf));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ComponentMetrics;
    use crate::object::{LocalObjectStore, ObjectStore};

    fn obj(text: &str) -> StoredObject {
        let bytes = text.as_bytes().to_vec();
        StoredObject { digest: crate::ids::digest_hex(&bytes), content_type: "application/json", bytes }
    }

    #[test]
    fn objects_append_to_a_segment_and_are_found_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("state/local-index.tsv");
        let objects = dir.path().join("objects");
        let store = LocalObjectStore::open_segmented(
            objects.clone(),
            &index,
            ComponentMetrics::detached("object_store", "local"),
        )
        .unwrap();
        let (a, b) = (obj(r#"{"n":1}"#), obj(r#"{"n":2,"x":"yy"}"#));
        let ua = store.put(a.clone()).unwrap().url;
        let ub = store.put(b.clone()).unwrap().url;
        assert_eq!(store.put(a.clone()).unwrap().url, ua, "stored once");
        assert!(ua.starts_with("file://") && ua.ends_with("#bytes=0-6"), "{ua}");
        assert!(ub.ends_with("#bytes=8-23"), "{ub}");
        // Another process (a reader opening the store) finds both, and creates no segment.
        let reader =
            LocalObjectStore::open_segmented(objects.clone(), &index, ComponentMetrics::detached("o", "l")).unwrap();
        assert_eq!(reader.get(&a.digest).unwrap(), Some(a.bytes.clone()));
        assert_eq!(reader.get(&b.digest).unwrap(), Some(b.bytes.clone()));
        assert_eq!(reader.get(&"0".repeat(40)).unwrap(), None);
        let all: Vec<_> =
            std::fs::read_dir(&objects).unwrap().filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        assert!(all.iter().all(|n| n.starts_with("seg-")), "the directory holds objects only: {all:?}");
        let segs: Vec<_> = std::fs::read_dir(&objects)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("seg-"))
            .collect();
        assert_eq!(segs.len(), 1, "{segs:?}");
        // One object per line, as check-events reads .ndjson files.
        let text = std::fs::read_to_string(objects.join(&segs[0])).unwrap();
        assert_eq!(text, "{\"n\":1}\n{\"n\":2,\"x\":\"yy\"}\n");
        // A text object is a file of its own.
        let t = StoredObject { content_type: "text/plain", ..obj("HTTP Transaction\n====\n") };
        assert!(store.put(t.clone()).unwrap().url.ends_with(".json"));
        assert_eq!(reader.get(&t.digest).unwrap(), Some(t.bytes));
        // A corrupted index line or segment never returns wrong bytes.
        std::fs::write(objects.join(&segs[0]), "{\"n\":9}\n").unwrap();
        assert_eq!(reader.get(&a.digest).unwrap(), None);
    }
}
