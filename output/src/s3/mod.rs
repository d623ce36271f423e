//! S3-compatible object store: captured objects go to a bucket, gzip-batched by default.
//!
//! # Batch mode (default)
//!
//! [`S3ObjectStore::put`] compresses the object as one gzip member (object bytes + `"\n"`)
//! and appends it to the open batch (see [`batch`]), returning at once the object's URL:
//! by default `{{SCHEME}}://{{ENDPOINT}}/{{BUCKET}}/{{KEY}}#bytes={{OFFSET}}-{{END}}`
//! (see [`config`]), so that
//!
//! ```text
//! curl -r OFFSET-END SCHEME://ENDPOINT/BUCKET/KEY | zcat     # exactly the object + "\n"
//! curl SCHEME://ENDPOINT/BUCKET/KEY | zcat | jq .             # the whole batch, NDJSON
//! ```
//!
//! (public bucket or presigned URL; private: see [`config`] for the curl SigV4 flags).
//!
//! A batch is sealed at `max_batch_bytes` (compressed) or `max_batch_age` after its first
//! object (a ticker thread checks every second even when no object arrives), and on
//! [`ObjectStore::flush`]. Sealed batches are written to the local [`index`] file
//! (`<index_dir>/s3-<bucket>.index.tsv`: `digest key offset length`) and handed to the sink as
//! one encoded upload ([`encode_upload`]); the delivery layer queues, spools and retries it,
//! and [`S3Transport::send`] uploads it (single PUT, or multipart above
//! `multipart_threshold`).
//!
//! # Per-object mode (`batch: false`, qtap's behaviour)
//!
//! Key = digest, body = the object's bytes (not compressed), URL from `access_url` or
//! `{{SCHEME}}://{{ENDPOINT}}/{{BUCKET}}/{{DIGEST}}`.
//!
//! # Reading back
//!
//! [`ObjectStore::get`] (`tapline fetch <digest>`) serves objects of unsent batches from
//! memory, else looks the digest up in the index and does a ranged GET of its member.
//! [`fetch_by_record`] does the same from an `artifact_record` line alone (its `url` carries
//! key, offset and length), checking the SHA-1.

pub mod batch;
pub mod client;
pub mod config;
pub mod index;
mod transport;
mod transport_impl;
pub mod upload;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flate2::Compression;
use tracing::{error, warn};

pub use batch::{Batch, BatchBuilder, MemberCompressor, MemberLocation};
pub use client::{S3Client, S3Error};
pub use config::{S3Config, UrlTarget};
pub use transport::S3Transport;
pub use upload::{UploadDecodeError, decode_upload, encode_upload};

use crate::ids::digest_hex;
use crate::metrics::ComponentMetrics;
use crate::object::{Location, ObjectStore, StoreError, StoredObject};
use index::MemberIndex;

const STORE: &str = "s3";

thread_local! {
    static COMPRESSOR: RefCell<Option<MemberCompressor>> = const { RefCell::new(None) };
}

/// Where sealed uploads go (the delivery layer's `submit`).
pub type UploadSink = Box<dyn Fn(Vec<u8>) + Send + Sync>;

struct Inner {
    cfg: S3Config,
    builder: Mutex<BatchBuilder>,
    index: Option<Mutex<MemberIndex>>,
    index_path: PathBuf,
    sink: UploadSink,
    metrics: ComponentMetrics,
    client: Mutex<Option<Arc<S3Client>>>,
    closed: AtomicBool,
    index_warned: AtomicBool,
}

/// The S3 [`ObjectStore`]: batches (or passes on) objects and hands uploads to a sink.
pub struct S3ObjectStore {
    inner: Arc<Inner>,
    ticker: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

fn valid_digest(d: &str) -> bool {
    d.len() == 40 && d.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn store_err(context: &'static str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Io { store: STORE.into(), context, source: std::io::Error::other(e) }
}

impl Inner {
    /// Indexes and hands over sealed batches.
    fn hand_over(&self, batches: Vec<Batch>) {
        for b in batches {
            if let Some(ix) = &self.index {
                let res =
                    ix.lock().map_err(|_| std::io::Error::other("index lock poisoned")).and_then(|mut i| i.record(&b));
                if let Err(e) = res {
                    self.metrics.error("index_write");
                    if !self.index_warned.swap(true, Ordering::Relaxed) {
                        warn!(store = STORE, index = %self.index_path.display(), error = %e,
                              "cannot write the S3 member index: `tapline fetch <digest>` will not find these objects");
                    }
                }
            }
            let n = b.members.len() as u64;
            (self.sink)(encode_upload(&b.key, &b.bytes));
            self.metrics.sent(n);
        }
    }

    fn take_ready(&self, now: Instant) -> Vec<Batch> {
        let mut out = Vec::new();
        if let Ok(mut b) = self.builder.lock() {
            while let Some(x) = b.take_ready(now) {
                out.push(x);
            }
        }
        out
    }

    fn flush(&self) {
        let all = self.builder.lock().map(|mut b| b.take_all()).unwrap_or_default();
        self.hand_over(all);
    }

    fn client(&self) -> Result<Arc<S3Client>, S3Error> {
        let mut c = self.client.lock().map_err(|_| S3Error::Corrupt("client lock poisoned".into()))?;
        if let Some(c) = &*c {
            return Ok(c.clone());
        }
        let new = Arc::new(S3Client::new(&self.cfg)?);
        *c = Some(new.clone());
        Ok(new)
    }
}

impl S3ObjectStore {
    /// A store for `cfg` (validated here), keeping its member index in `index_dir`, reporting
    /// through `metrics` and handing encoded uploads to `sink`.
    pub fn new(
        cfg: S3Config,
        index_dir: &Path,
        metrics: ComponentMetrics,
        sink: UploadSink,
    ) -> Result<Self, StoreError> {
        cfg.validate().map_err(|e| store_err("checking the configuration", e))?;
        let index = if cfg.batch {
            let ix = MemberIndex::open(index_dir, &cfg.bucket).map_err(|source| StoreError::Io {
                store: STORE.into(),
                context: "opening the member index",
                source,
            })?;
            Some(Mutex::new(ix))
        } else {
            None
        };
        let inner = Arc::new(Inner {
            builder: Mutex::new(BatchBuilder::new(cfg.key_prefix.clone(), cfg.max_batch_bytes, cfg.max_batch_age)),
            index,
            index_path: MemberIndex::path_for(index_dir, &cfg.bucket),
            cfg,
            sink,
            metrics,
            client: Mutex::new(None),
            closed: AtomicBool::new(false),
            index_warned: AtomicBool::new(false),
        });
        let ticker = if inner.cfg.batch { Some(spawn_ticker(inner.clone())?) } else { None };
        Ok(Self { inner, ticker: Mutex::new(ticker) })
    }

    /// The configuration.
    pub fn config(&self) -> &S3Config {
        &self.inner.cfg
    }

    /// The member index file (batch mode).
    pub fn index_path(&self) -> &Path {
        &self.inner.index_path
    }

    /// Objects not yet handed to the sink.
    pub fn pending_objects(&self) -> usize {
        self.inner.builder.lock().map(|b| b.pending_objects()).unwrap_or(0)
    }

    /// The exact bytes of the object an `artifact_record` line points at (see
    /// [`fetch_by_record`]), with this store's client.
    pub fn fetch_record(&self, record_json: &str) -> Result<Vec<u8>, S3Error> {
        fetch_with(&*self.inner.client()?, record_json)
    }

    fn stop_ticker(&self) {
        let t = self.ticker.lock().ok().and_then(|mut t| t.take());
        if let Some((tx, handle)) = t {
            drop(tx);
            let _ = handle.join();
        }
    }
}

fn spawn_ticker(inner: Arc<Inner>) -> Result<(mpsc::Sender<()>, JoinHandle<()>), StoreError> {
    let (tx, rx) = mpsc::channel::<()>();
    let tick = (inner.cfg.max_batch_age / 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let handle = std::thread::Builder::new()
        .name("tapline-s3-batch".into())
        .spawn(move || {
            // Until the store is dropped or shut down (the sender goes away).
            while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(tick) {
                let ready = inner.take_ready(Instant::now());
                inner.hand_over(ready);
            }
        })
        .map_err(|source| StoreError::Io { store: STORE.into(), context: "starting the batch thread", source })?;
    Ok((tx, handle))
}

impl Drop for S3ObjectStore {
    fn drop(&mut self) {
        self.stop_ticker();
    }
}

impl ObjectStore for S3ObjectStore {
    fn name(&self) -> &str {
        STORE
    }

    fn put(&self, object: StoredObject) -> Result<Location, StoreError> {
        let inner = &self.inner;
        inner.metrics.received(1);
        if !valid_digest(&object.digest) {
            inner.metrics.discarded("invalid_digest", 1);
            return Err(StoreError::Unavailable { store: STORE.into(), reason: "the digest is not 40 hex digits" });
        }
        if inner.closed.load(Ordering::Acquire) {
            inner.metrics.discarded("closed", 1);
            return Err(StoreError::Unavailable { store: STORE.into(), reason: "the store is shut down" });
        }
        if !inner.cfg.batch {
            let url = inner.cfg.access_url_for(&object.digest, None);
            (inner.sink)(encode_upload(&object.digest, &object.bytes));
            inner.metrics.sent(1);
            return Ok(Location { url });
        }
        let now = Instant::now();
        // Compress outside the lock (concurrent callers do not wait for each other), with a
        // compressor kept per thread.
        let member = COMPRESSOR.with_borrow_mut(|c| {
            let level = Compression::new(inner.cfg.gzip_level.min(9));
            if c.as_ref().is_none_or(|c| c.level() != level) {
                *c = Some(MemberCompressor::new(level));
            }
            c.as_mut().map(|c| c.compress(&object.bytes)).unwrap_or_default()
        });
        let (loc, ready) = {
            let mut b = inner
                .builder
                .lock()
                .map_err(|_| StoreError::Unavailable { store: STORE.into(), reason: "the batch lock is poisoned" })?;
            let loc = b.add_member(&object.digest, &member, now);
            let mut ready = Vec::new();
            while let Some(x) = b.take_ready(now) {
                ready.push(x);
            }
            (loc, ready)
        };
        inner.hand_over(ready);
        Ok(Location { url: inner.cfg.access_url_for(&object.digest, Some(&loc)) })
    }

    /// The object's bytes: from an unsent batch, else by a ranged GET of its member (batch
    /// mode), or a GET of the key `digest` (per-object mode). `None` when the bucket does not
    /// have it (yet: objects waiting in the delivery queue or spool are not found).
    fn get(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if !valid_digest(digest) {
            return Ok(None);
        }
        let inner = &self.inner;
        if !inner.cfg.batch {
            let client = inner.client().map_err(|e| store_err("connecting", e))?;
            return match client.get(digest) {
                Ok(b) => Ok(Some(b)),
                Err(S3Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(store_err("fetching an object", e)),
            };
        }
        if let Some(b) = inner.builder.lock().ok().and_then(|b| b.lookup(digest)) {
            return Ok(Some(b));
        }
        let places = MemberIndex::lookup(&inner.index_path, digest).map_err(|source| StoreError::Io {
            store: STORE.into(),
            context: "reading the member index",
            source,
        })?;
        if places.is_empty() {
            return Ok(None);
        }
        let client = inner.client().map_err(|e| store_err("connecting", e))?;
        for m in places {
            match client.fetch_member(&m) {
                Ok(b) if digest_hex(&b) == digest => return Ok(Some(b)),
                Ok(_) => warn!(store = STORE, key = %m.key, offset = m.offset, "member does not match its digest"),
                Err(S3Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err("fetching an object", e)),
            }
        }
        Ok(None)
    }

    fn flush(&self) {
        self.inner.flush();
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), StoreError> {
        self.inner.closed.store(true, Ordering::Release);
        self.stop_ticker();
        self.inner.flush();
        Ok(())
    }
}

/// The exact bytes of the object an `artifact_record` line (JSON) points at: its `url` is
/// parsed with `cfg` ([`S3Config::parse_access_url`]) into a batch member (ranged GET +
/// gunzip) or a whole object (per-object mode; a record with an unrecognised URL falls back
/// to the key `digest` there). The SHA-1 is checked against the record's `digest`.
pub fn fetch_by_record(record_json: &str, cfg: &S3Config) -> Result<Vec<u8>, S3Error> {
    let client = S3Client::new(cfg)?;
    fetch_with(&client, record_json)
}

fn fetch_with(client: &S3Client, record_json: &str) -> Result<Vec<u8>, S3Error> {
    let cfg = client.config();
    let v: serde_json::Value = serde_json::from_str(record_json.trim())
        .map_err(|e| S3Error::Config(format!("the artifact record is not JSON: {e}")))?;
    let url = v.get("url").and_then(|u| u.as_str()).unwrap_or_default();
    let digest = v.get("digest").and_then(|d| d.as_str()).filter(|d| valid_digest(d));
    let target = match (cfg.parse_access_url(url), digest) {
        (Some(t), _) => t,
        (None, Some(d)) if !cfg.batch => UrlTarget::Object(d.to_string()),
        (None, _) => {
            return Err(S3Error::Config(format!(
                "the record's url `{url}` was not written by this S3 store (bucket `{}`, access_url `{}`)",
                cfg.bucket,
                cfg.template()
            )));
        }
    };
    let bytes = match &target {
        UrlTarget::Member(m) => client.fetch_member(m)?,
        UrlTarget::Object(key) => client.get(key)?,
    };
    if let Some(d) = digest
        && digest_hex(&bytes) != d
    {
        error!(store = STORE, url, "fetched bytes do not match the record's digest");
        return Err(S3Error::Corrupt(format!("{url}: the bytes do not hash to the record's digest {d}")));
    }
    Ok(bytes)
}
