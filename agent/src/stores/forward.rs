//! Fluent Forward stores: events (tags `<prefix>.connection|artifact_record|issue`) and
//! objects (`<prefix>.object`), each through a [`Delivery`] (memory queue, disk spool,
//! retries) to a [`ForwardTransport`].

use std::time::{Duration, SystemTime};

use tapline_output::delivery::{Delivery, DeliveryConfig};
use tapline_output::event::{Event, EventStore};
use tapline_output::forward::client::{ForwardTransport, event_item, item};
use tapline_output::metrics::{ComponentMetrics, Metrics};
use tapline_output::object::{Location, ObjectStore, StoreError, StoredObject};

use super::Drops;
use crate::config::sinks::ForwardStore;

/// `forward:<host>:<port>`, the name of a store in logs and issues.
fn store_name(s: &ForwardStore) -> String {
    format!("forward:{}:{}", s.transport.host, s.transport.port)
}

/// Whether `host:port` accepts a TCP connection within `timeout` (a name is resolved first).
fn reachable(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<std::net::SocketAddr> =
        (host, port).to_socket_addrs().map_err(|e| format!("cannot resolve `{host}`: {e}"))?.collect();
    let mut last = format!("`{host}` resolves to no address");
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(last)
}

/// Tells the operator at start-up, in one sentence, when the receiver does not answer (events
/// are not lost: they wait in the spool). Runs aside so start-up is not delayed.
fn check_receiver(s: &ForwardStore, spool: &DeliveryConfig) {
    let (host, port) = (s.transport.host.clone(), s.transport.port);
    let (dir, cap) = (spool.spool_dir.display().to_string(), spool.spool_bytes);
    let spawned = std::thread::Builder::new().name("tapline-forward-check".into()).spawn(move || {
        if let Err(e) = reachable(&host, port, Duration::from_secs(3)) {
            tracing::warn!(
                store = %format!("forward:{host}:{port}"),
                "the Fluent Forward receiver {host}:{port} is unreachable ({e}): is Fluent Bit / fluentd / Vector \
                 listening there? Until it answers, items wait in the spool {dir} (up to {cap} bytes) and are retried"
            );
        }
    });
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "cannot start the Forward receiver check");
    }
}

fn delivery(
    s: &ForwardStore,
    default_tag: &'static str,
    spool: DeliveryConfig,
    metrics: ComponentMetrics,
    drops: &Drops,
) -> Result<Delivery, StoreError> {
    check_receiver(s, &spool);
    let transport = ForwardTransport::new(s.transport.clone(), default_tag).with_metrics(metrics.clone());
    let mut cfg = spool;
    cfg.max_batch_items = s.batch_size;
    cfg.max_batch_age = s.batch_timeout;
    Delivery::start(transport, cfg, metrics, drops.callback())
}

/// Events over Forward.
pub struct ForwardEventStore {
    name: String,
    delivery: Delivery,
}

impl ForwardEventStore {
    /// Starts the store; `spool` names its spool directory and cap.
    pub fn start(
        s: &ForwardStore,
        spool: DeliveryConfig,
        metrics: &Metrics,
        drops: &Drops,
    ) -> Result<Self, StoreError> {
        let m = metrics.component("event_store", "forward");
        Ok(Self { name: store_name(s), delivery: delivery(s, "event", spool, m, drops)? })
    }
}

impl EventStore for ForwardEventStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn submit(&self, event: &Event) {
        self.delivery.submit(event_item(event, SystemTime::now()));
    }

    fn flush(&self) {
        self.delivery.flush();
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), StoreError> {
        self.delivery.shutdown(timeout)
    }
}

/// Objects over Forward: one record per object, `{"digest", "content_type", "object"}`, tagged
/// `<prefix>.object`. Nothing can be fetched back from a log pipeline.
pub struct ForwardObjectStore {
    name: String,
    url_base: String,
    delivery: Delivery,
}

impl ForwardObjectStore {
    /// Starts the store.
    pub fn start(
        s: &ForwardStore,
        spool: DeliveryConfig,
        metrics: &Metrics,
        drops: &Drops,
    ) -> Result<Self, StoreError> {
        let m = metrics.component("object_store", "forward");
        let t = &s.transport;
        let url_base = format!("forward://{}:{}/{}.object", t.host, t.port, t.tag_prefix);
        Ok(Self { name: store_name(s), url_base, delivery: delivery(s, "object", spool, m, drops)? })
    }
}

/// The Forward record of an object: the object itself (it is JSON) under `object`.
fn object_record(o: &StoredObject) -> Vec<u8> {
    let object: serde_json::Value = serde_json::from_slice(&o.bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&o.bytes).into()));
    let rec = serde_json::json!({"digest": o.digest, "content_type": o.content_type, "object": object});
    serde_json::to_vec(&rec).unwrap_or_default()
}

impl ObjectStore for ForwardObjectStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn put(&self, object: StoredObject) -> Result<Location, StoreError> {
        let url = format!("{}#{}", self.url_base, object.digest);
        self.delivery.submit(item("object", &object_record(&object)));
        Ok(Location { url })
    }

    fn get(&self, _digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    fn flush(&self) {
        self.delivery.flush();
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), StoreError> {
        self.delivery.shutdown(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_records_embed_the_object_json() {
        let o =
            StoredObject { digest: "ab".repeat(20), content_type: "application/json", bytes: br#"{"a":1}"#.to_vec() };
        let v: serde_json::Value = serde_json::from_slice(&object_record(&o)).unwrap();
        assert_eq!(v["object"]["a"], 1);
        assert_eq!(v["digest"], "ab".repeat(20));
    }
}
