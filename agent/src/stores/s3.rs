//! The S3 object store: objects gzip-batched (or one per key) by [`S3ObjectStore`], uploads
//! delivered by a [`Delivery`] (memory, disk spool, retries) through an [`S3Transport`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tapline_output::delivery::{Delivery, DeliveryConfig};
use tapline_output::metrics::Metrics;
use tapline_output::object::{Location, ObjectStore, StoreError, StoredObject};
use tapline_output::s3::{S3Config, S3ObjectStore, S3Transport};

use super::Drops;

/// The agent's S3 store: the batching store in front, the delivery behind it.
pub struct S3Store {
    name: String,
    store: S3ObjectStore,
    delivery: Arc<Delivery>,
}

fn store_error(context: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io { store: "s3".into(), context, source: std::io::Error::other(e.to_string()) }
}

impl S3Store {
    /// Starts the store; its member index lives in `index_dir`.
    pub fn start(
        cfg: &S3Config,
        index_dir: &Path,
        spool: DeliveryConfig,
        metrics: &Metrics,
        drops: &Drops,
    ) -> Result<Self, StoreError> {
        let transport = S3Transport::new(cfg).map_err(|e| store_error("configuring the client", e))?;
        let mut dcfg = spool;
        // Each item is a whole upload (a batch, or one object).
        dcfg.max_batch_items = 1;
        dcfg.max_batch_age = Duration::ZERO;
        let delivery =
            Arc::new(Delivery::start(transport, dcfg, metrics.component("uploader", "s3"), drops.callback())?);
        let d = delivery.clone();
        let store = S3ObjectStore::new(
            cfg.clone(),
            index_dir,
            metrics.component("object_store", "s3"),
            Box::new(move |upload| d.submit(upload)),
        )?;
        Ok(Self { name: format!("s3:{}/{}", cfg.endpoint, cfg.bucket), store, delivery })
    }

    /// The object behind an `artifact_record` line (its `url` names batch, offset and length).
    pub fn fetch_record(&self, record_json: &str) -> Result<Vec<u8>, StoreError> {
        self.store.fetch_record(record_json).map_err(|e| store_error("fetching the object", e))
    }
}

impl ObjectStore for S3Store {
    fn name(&self) -> &str {
        &self.name
    }

    fn put(&self, object: StoredObject) -> Result<Location, StoreError> {
        self.store.put(object)
    }

    fn get(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(digest)
    }

    fn get_by_record(&self, record: &serde_json::Value) -> Result<Option<Vec<u8>>, StoreError> {
        // The record's url names the batch, offset and length: no local index needed.
        self.fetch_record(&record.to_string()).map(Some)
    }

    fn flush(&self) {
        self.store.flush();
        self.delivery.flush();
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), StoreError> {
        // The open batch first, then its upload.
        self.store.shutdown(timeout)?;
        self.delivery.shutdown(timeout)
    }
}
