//! ObjectStore: where `HttpTransaction` objects go, keyed by the SHA-1 of their bytes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine;
use serde::Serialize;
use tracing::warn;

use crate::ids::digest_hex;
use crate::metrics::ComponentMetrics;
use crate::model::HttpTransaction;

/// Errors of a store, always naming it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation failed.
    #[error("object store `{store}`: {context}: {source}")]
    Io {
        /// The store.
        store: String,
        /// What was being done.
        context: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The object could not be serialized.
    #[error("cannot serialize an object: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The store is closed or its queue stayed full.
    #[error("object store `{store}` is unavailable: {reason}")]
    Unavailable {
        /// The store.
        store: String,
        /// Why.
        reason: &'static str,
    },
}

/// An object ready to store: its exact bytes and their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Lowercase hex SHA-1 of `bytes`.
    pub digest: String,
    /// MIME type of the bytes.
    pub content_type: &'static str,
    /// The serialized object (no trailing newline).
    pub bytes: Vec<u8>,
}

impl StoredObject {
    /// Serializes a transaction compactly and computes its digest.
    pub fn json(txn: &HttpTransaction) -> Result<StoredObject, StoreError> {
        let bytes = serde_json::to_vec(txn)?;
        Ok(StoredObject { digest: digest_hex(&bytes), content_type: "application/json", bytes })
    }

    /// The text rendering of a transaction (`format: text`), stored as `text/plain`.
    pub fn text(txn: &HttpTransaction) -> StoredObject {
        let bytes = txn.to_text().into_bytes();
        StoredObject { digest: digest_hex(&bytes), content_type: "text/plain", bytes }
    }
}

/// Where a stored object can be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The `url` of its artifact_record.
    pub url: String,
}

/// A destination for objects.
pub trait ObjectStore: Send + Sync + 'static {
    /// The store's name.
    fn name(&self) -> &str;
    /// Takes an object; must not block the caller long.
    fn put(&self, object: StoredObject) -> Result<Location, StoreError>;
    /// The exact bytes stored under `digest`.
    fn get(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The exact bytes of the object an `artifact_record` (its JSON) points at. By default,
    /// looked up by its `digest`; stores whose `url` says more (an S3 batch member) use it.
    fn get_by_record(&self, record: &serde_json::Value) -> Result<Option<Vec<u8>>, StoreError> {
        match record.get("digest").and_then(|d| d.as_str()) {
            Some(d) => self.get(&d.to_ascii_lowercase()),
            None => Ok(None),
        }
    }
    /// Pushes queued objects out now.
    fn flush(&self);
    /// Flushes and closes, waiting at most `timeout`.
    fn shutdown(&self, timeout: Duration) -> Result<(), StoreError>;
}

fn valid_digest(d: &str) -> bool {
    d.len() == 40 && d.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A directory of objects: `<dir>/<digest[..2]>/<digest>.json`, exact bytes, written
/// atomically (temp file + rename) before `put` returns, so an `artifact_record` never
/// names an object that cannot be fetched yet.
pub struct LocalObjectStore {
    dir: PathBuf,
    metrics: ComponentMetrics,
    warned: AtomicBool,
    /// Segment layout: JSON objects appended to shared files (see [`LocalObjectStore::open_segmented`]).
    segments: Option<std::sync::Mutex<crate::local_segments::Segments>>,
    /// The segment index file.
    index: Option<PathBuf>,
}

fn object_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join(&digest[..2]).join(format!("{digest}.json"))
}

fn write_atomic(dir: &Path, o: &StoredObject) -> std::io::Result<()> {
    let path = object_path(dir, &o.digest);
    if path.exists() {
        return Ok(()); // same digest, same bytes
    }
    let parent = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".{}.{}.tmp", o.digest, std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&o.bytes)?;
    drop(f);
    std::fs::rename(&tmp, &path)
}

impl LocalObjectStore {
    /// Opens (creating) the directory.
    pub fn open(dir: PathBuf, metrics: ComponentMetrics) -> Result<Self, StoreError> {
        let io = |context| move |source| StoreError::Io { store: "local".into(), context, source };
        std::fs::create_dir_all(&dir).map_err(io("creating the object directory"))?;
        let dir = dir.canonicalize().map_err(io("resolving the object directory"))?;
        Ok(Self { dir, metrics, warned: AtomicBool::new(false), segments: None, index: None })
    }

    /// Opens (creating) the directory with the segment layout: JSON objects are appended to
    /// `seg-*.ndjson` files (one object per line, rotated at 64 MiB) with an index file
    /// `index` outside the directory (`digest, segment, offset, length`), so a high request rate costs appends,
    /// not one file creation per object. An object's url is `file://<segment>#bytes=<off>-<end>`.
    /// Text objects (`format: text`) are still one file each. Objects of either layout are found by
    /// [`ObjectStore::get`].
    pub fn open_segmented(dir: PathBuf, index: &Path, metrics: ComponentMetrics) -> Result<Self, StoreError> {
        let mut s = Self::open(dir, metrics)?;
        s.index = Some(index.to_path_buf());
        s.segments = Some(std::sync::Mutex::new(crate::local_segments::Segments::new(&s.dir, index)));
        Ok(s)
    }

    /// The directory objects are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl ObjectStore for LocalObjectStore {
    fn name(&self) -> &str {
        "local"
    }

    fn put(&self, object: StoredObject) -> Result<Location, StoreError> {
        self.metrics.received(1);
        if !valid_digest(&object.digest) {
            self.metrics.discarded("invalid_digest", 1);
            return Err(StoreError::Unavailable { store: "local".into(), reason: "the digest is not 40 hex digits" });
        }
        let written = match &self.segments {
            Some(segs) if object.content_type == "application/json" => match segs.lock() {
                Ok(mut segs) => segs.append(&object).map(|url| Location { url }),
                Err(_) => Err(std::io::Error::other("segment writer poisoned")),
            },
            _ => write_atomic(&self.dir, &object)
                .map(|()| Location { url: format!("file://{}", object_path(&self.dir, &object.digest).display()) }),
        };
        match written {
            Ok(loc) => {
                self.metrics.sent(1);
                Ok(loc)
            }
            Err(source) => {
                self.metrics.discarded("write_error", 1);
                if !self.warned.swap(true, Ordering::Relaxed) {
                    warn!(store = "local", dir = %self.dir.display(), error = %source, "cannot write objects");
                }
                Err(StoreError::Io { store: "local".into(), context: "writing an object", source })
            }
        }
    }

    fn get(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if !valid_digest(digest) {
            return Ok(None);
        }
        let io = |source| StoreError::Io { store: "local".into(), context: "reading an object", source };
        match std::fs::read(object_path(&self.dir, digest)) {
            Ok(b) => return Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io(source)),
        }
        match &self.index {
            Some(index) => crate::local_segments::Segments::find(&self.dir, index, digest).map_err(io),
            None => Ok(None),
        }
    }

    /// Nothing to push: both layouts write each object when it is stored.
    fn flush(&self) {}

    fn shutdown(&self, _timeout: Duration) -> Result<(), StoreError> {
        Ok(())
    }
}

#[derive(Serialize)]
struct StdoutObjectLine<'a> {
    level: &'static str,
    ts: f64,
    message: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "contentType")]
    content_type: &'static str,
    bytes: usize,
    digest: &'a str,
    data_base64: String,
}

/// qtap's development object store: one log line per object on stdout.
pub struct StdoutObjectStore {
    out: Mutex<std::io::Stdout>,
    metrics: ComponentMetrics,
}

impl StdoutObjectStore {
    /// A store printing to stdout.
    pub fn new(metrics: ComponentMetrics) -> Self {
        Self { out: Mutex::new(std::io::stdout()), metrics }
    }
}

impl ObjectStore for StdoutObjectStore {
    fn name(&self) -> &str {
        "stdout"
    }

    fn put(&self, object: StoredObject) -> Result<Location, StoreError> {
        self.metrics.received(1);
        let line = StdoutObjectLine {
            level: "qpoint",
            ts: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
            message: "object store submission",
            kind: "http_transaction",
            content_type: object.content_type,
            bytes: object.bytes.len(),
            digest: &object.digest,
            data_base64: base64::engine::general_purpose::STANDARD.encode(&object.bytes),
        };
        let mut v = serde_json::to_vec(&line)?;
        v.push(b'\n');
        let res = self.out.lock().map(|mut o| o.write_all(&v));
        match res {
            Ok(Ok(())) => self.metrics.sent(1),
            _ => self.metrics.discarded("write_error", 1),
        }
        Ok(Location { url: format!("stdout://{}", object.digest) })
    }

    fn get(&self, _digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    fn flush(&self) {
        if let Ok(mut o) = self.out.lock() {
            let _ = o.flush();
        }
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), StoreError> {
        self.flush();
        Ok(())
    }
}
