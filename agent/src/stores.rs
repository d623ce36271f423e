//! Opens the event and object stores the configuration names.

use std::sync::Arc;
use std::time::Duration;

use tapline_output::event::{EventStore, StdoutEventStore};
use tapline_output::metrics::Metrics;
use tapline_output::object::{LocalObjectStore, ObjectStore, StdoutObjectStore, StoreError};
use tracing::warn;

use crate::config::{Effective, ObjectStoreKind};

/// The stores the pipeline writes to.
pub struct Stores {
    /// Every configured event store (each event goes to all of them).
    pub events: Vec<Arc<dyn EventStore>>,
    /// The object store.
    pub objects: Arc<dyn ObjectStore>,
}

/// Opens the object store of `eff`.
pub fn open_object_store(eff: &Effective, metrics: &Metrics) -> Result<Arc<dyn ObjectStore>, StoreError> {
    Ok(match eff.object_store() {
        ObjectStoreKind::Local { dir } => {
            Arc::new(LocalObjectStore::open(dir.clone(), metrics.component("object_store", "local"))?)
        }
        ObjectStoreKind::Stdout => Arc::new(StdoutObjectStore::new(metrics.component("object_store", "stdout"))),
    })
}

/// Opens every store of `eff`.
pub fn open(eff: &Effective, metrics: &Metrics) -> Result<Stores, StoreError> {
    let events: Vec<Arc<dyn EventStore>> =
        vec![Arc::new(StdoutEventStore::new(metrics.component("event_store", "stdout")))];
    Ok(Stores { events, objects: open_object_store(eff, metrics)? })
}

/// Flushes and closes every store, waiting at most `timeout` for each.
pub fn shutdown(events: &[Arc<dyn EventStore>], objects: &Arc<dyn ObjectStore>, timeout: Duration) {
    for s in events {
        if let Err(e) = s.shutdown(timeout) {
            warn!(store = s.name(), error = %e, "event store did not flush cleanly");
        }
    }
    if let Err(e) = objects.shutdown(timeout) {
        warn!(store = objects.name(), error = %e, "object store did not flush cleanly");
    }
}
