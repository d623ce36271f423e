//! Opens the event and object stores the configuration names.

pub mod forward;
pub mod s3;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tapline_output::delivery::DeliveryConfig;

use tapline_output::event::{EventStore, StdoutEventStore};
use tapline_output::metrics::Metrics;
use tapline_output::object::{LocalObjectStore, ObjectStore, StdoutObjectStore, StoreError};
use tracing::warn;

use crate::config::{Effective, EventStoreKind, ObjectStoreKind};
use forward::{ForwardEventStore, ForwardObjectStore};

/// Items dropped by a sink since the last look (the run loop turns them into `issue` events).
#[derive(Clone, Default)]
pub struct Drops(Arc<AtomicU64>);

impl Drops {
    /// Takes the count.
    pub fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }

    /// The delivery's drop callback, counting into this.
    pub fn callback(&self) -> tapline_output::delivery::DropCallback {
        let c = self.0.clone();
        Box::new(move |n| {
            c.fetch_add(n, Ordering::Relaxed);
        })
    }
}

/// The stores the pipeline writes to.
pub struct Stores {
    /// Every configured event store (each event goes to all of them).
    pub events: Vec<Arc<dyn EventStore>>,
    /// The object store.
    pub objects: Arc<dyn ObjectStore>,
    /// Per remote sink: items it dropped because its spool was full (reported as issues).
    pub drops: Vec<(String, Drops)>,
}

/// Where remote sinks spool while their receiver is down.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    /// `<data-dir>/spool`: one directory per sink under it.
    pub dir: PathBuf,
    /// Total cap, split evenly between the remote sinks.
    pub bytes: u64,
    /// Where the S3 store keeps its digest → batch member index (`<data-dir>/s3-index`).
    pub s3_index: PathBuf,
    /// Where the local store's segment layout keeps its index (`<data-dir>/local-index.tsv`).
    pub local_index: PathBuf,
}

impl SpoolSettings {
    fn for_sink(&self, name: &str, sinks: usize) -> DeliveryConfig {
        let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        DeliveryConfig::new(self.dir.join(safe), self.bytes / sinks.max(1) as u64)
    }
}

fn remote_sinks(eff: &Effective) -> usize {
    let events = eff.event_stores().iter().filter(|e| matches!(e, EventStoreKind::Forward(_))).count();
    let objects = usize::from(matches!(eff.object_store(), ObjectStoreKind::S3(_) | ObjectStoreKind::Forward(_)));
    events + objects
}

/// Opens the object store of `eff` (for `fetch`: no delivery is started for a remote store).
pub fn open_object_store(
    eff: &Effective,
    metrics: &Metrics,
    data_dir: &Path,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    // A private spool: `fetch` must not touch a running agent's.
    let private = std::env::temp_dir().join(format!("tapline-fetch-{}", std::process::id()));
    let spool = SpoolSettings { dir: private.clone(), ..spool_settings(data_dir, 1 << 20) };
    let store = open_object_store_with(eff, metrics, &spool, &mut Vec::new());
    let _ = std::fs::remove_dir_all(&private);
    store
}

fn open_object_store_with(
    eff: &Effective,
    metrics: &Metrics,
    spool: &SpoolSettings,
    drops: &mut Vec<(String, Drops)>,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let sinks = remote_sinks(eff);
    Ok(match eff.object_store() {
        ObjectStoreKind::Local { dir, layout } => {
            let m = metrics.component("object_store", "local");
            Arc::new(match layout {
                crate::config::LocalLayout::Segments => {
                    LocalObjectStore::open_segmented(dir.clone(), &spool.local_index, m)?
                }
                crate::config::LocalLayout::Files => LocalObjectStore::open(dir.clone(), m)?,
            })
        }
        ObjectStoreKind::Stdout => Arc::new(StdoutObjectStore::new(metrics.component("object_store", "stdout"))),
        ObjectStoreKind::Forward(f) => {
            let d = Drops::default();
            let store = ForwardObjectStore::start(
                f,
                spool.for_sink(&format!("objects-forward-{}-{}", f.transport.host, f.transport.port), sinks),
                metrics,
                &d,
            )?;
            drops.push((store.name().to_string(), d));
            Arc::new(store)
        }
        ObjectStoreKind::S3(s3) => {
            let d = Drops::default();
            let sink = format!("objects-s3-{}-{}", s3.endpoint, s3.bucket);
            let store = s3::S3Store::start(s3, &spool.s3_index, spool.for_sink(&sink, sinks), metrics, &d)?;
            drops.push((store.name().to_string(), d));
            Arc::new(store)
        }
    })
}

/// Opens every store of `eff`; remote ones spool under `spool`.
pub fn open(eff: &Effective, metrics: &Metrics, spool: &SpoolSettings) -> Result<Stores, StoreError> {
    let sinks = remote_sinks(eff);
    let mut drops = Vec::new();
    let mut events: Vec<Arc<dyn EventStore>> = Vec::new();
    for e in eff.event_stores() {
        match e {
            EventStoreKind::Stdout => {
                events.push(Arc::new(StdoutEventStore::new(metrics.component("event_store", "stdout"))))
            }
            EventStoreKind::Forward(f) => {
                let d = Drops::default();
                let store = ForwardEventStore::start(
                    f,
                    spool.for_sink(&format!("events-forward-{}-{}", f.transport.host, f.transport.port), sinks),
                    metrics,
                    &d,
                )?;
                drops.push((store.name().to_string(), d));
                events.push(Arc::new(store));
            }
        }
    }
    let objects = open_object_store_with(eff, metrics, spool, &mut drops)?;
    Ok(Stores { events, objects, drops })
}

/// The spool settings for `--data-dir` and `--spool-size`.
pub fn spool_settings(data_dir: &Path, bytes: u64) -> SpoolSettings {
    SpoolSettings {
        dir: data_dir.join("spool"),
        bytes,
        s3_index: data_dir.join("s3-index"),
        local_index: data_dir.join("local-index.tsv"),
    }
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
