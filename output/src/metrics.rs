//! One metrics pattern for every component (Vector style): each source, parser, plugin
//! and store reports what it received, sent, discarded (with a reason) and its errors
//! (with a stage), so a drop anywhere is visible on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Metric, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    kind: String,
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiscardLabels {
    kind: String,
    component: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
    component: String,
    stage: String,
}

/// The agent's metrics registry.
pub struct Metrics {
    registry: Mutex<Registry>,
    received: Family<ComponentLabels, Counter>,
    sent: Family<ComponentLabels, Counter>,
    discarded: Family<DiscardLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    discarded_total: Arc<AtomicU64>,
}

impl Metrics {
    /// Items discarded by every component together, for the status line.
    pub fn discarded_total(&self) -> u64 {
        self.discarded_total.load(Ordering::Relaxed)
    }

    /// A registry with the component families registered.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let received = Family::<ComponentLabels, Counter>::default();
        let sent = Family::<ComponentLabels, Counter>::default();
        let discarded = Family::<DiscardLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("tapline_component_received", "Items a component received", received.clone());
        registry.register("tapline_component_sent", "Items a component passed on or wrote", sent.clone());
        registry.register("tapline_component_discarded", "Items a component dropped, by reason", discarded.clone());
        registry.register("tapline_component_errors", "Errors of a component, by stage", errors.clone());
        Arc::new(Metrics {
            registry: Mutex::new(registry),
            received,
            sent,
            discarded,
            errors,
            discarded_total: Arc::default(),
        })
    }

    /// The handle a component reports through.
    pub fn component(&self, kind: &'static str, name: &str) -> ComponentMetrics {
        let labels = ComponentLabels { kind: kind.to_string(), component: name.to_string() };
        // Create the series now so they show (at 0) before anything happens.
        let received = self.received.get_or_create(&labels).clone();
        let sent = self.sent.get_or_create(&labels).clone();
        ComponentMetrics {
            labels,
            received,
            sent,
            discarded: self.discarded.clone(),
            errors: self.errors.clone(),
            discarded_total: self.discarded_total.clone(),
        }
    }

    /// Registers an extra metric (its name gets `_total` added for counters, as usual).
    pub fn register<M: Metric>(&self, name: &str, help: &str, metric: M) {
        if let Ok(mut r) = self.registry.lock() {
            r.register(name, help, metric);
        }
    }

    /// Prometheus / OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}

/// A component's handle on the shared metric families.
#[derive(Clone)]
pub struct ComponentMetrics {
    labels: ComponentLabels,
    /// This component's series, resolved once (a family lookup hashes the labels each time).
    received: Counter,
    sent: Counter,
    discarded: Family<DiscardLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    discarded_total: Arc<AtomicU64>,
}

impl ComponentMetrics {
    /// A handle not attached to any registry (tests, tools).
    pub fn detached(kind: &'static str, name: &str) -> ComponentMetrics {
        Metrics::new().component(kind, name)
    }

    /// `n` items came in.
    pub fn received(&self, n: u64) {
        self.received.inc_by(n);
    }

    /// `n` items went out.
    pub fn sent(&self, n: u64) {
        self.sent.inc_by(n);
    }

    /// `n` items were dropped for `reason`.
    pub fn discarded(&self, reason: &str, n: u64) {
        let l = DiscardLabels {
            kind: self.labels.kind.clone(),
            component: self.labels.component.clone(),
            reason: reason.to_string(),
        };
        self.discarded.get_or_create(&l).inc_by(n);
        self.discarded_total.fetch_add(n, Ordering::Relaxed);
    }

    /// An error happened at `stage`.
    pub fn error(&self, stage: &str) {
        let l = ErrorLabels {
            kind: self.labels.kind.clone(),
            component: self.labels.component.clone(),
            stage: stage.to_string(),
        };
        self.errors.get_or_create(&l).inc();
    }

    /// Current received count (tests).
    pub fn received_count(&self) -> u64 {
        self.received.get()
    }

    /// Current sent count (tests, the status line).
    pub fn sent_count(&self) -> u64 {
        self.sent.get()
    }

    /// Current discarded count for `reason` (tests).
    pub fn discarded_count(&self, reason: &str) -> u64 {
        let l = DiscardLabels {
            kind: self.labels.kind.clone(),
            component: self.labels.component.clone(),
            reason: reason.to_string(),
        };
        self.discarded.get_or_create(&l).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pattern_for_every_component() {
        let m = Metrics::new();
        let c = m.component("event_store", "stdout");
        c.received(3);
        c.sent(2);
        c.discarded("write_error", 1);
        c.error("flush");
        let text = m.encode();
        assert!(
            text.contains(r#"tapline_component_received_total{kind="event_store",component="stdout"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"tapline_component_sent_total{kind="event_store",component="stdout"} 2"#));
        assert!(text.contains(
            r#"tapline_component_discarded_total{kind="event_store",component="stdout",reason="write_error"} 1"#
        ));
        assert!(
            text.contains(r#"tapline_component_errors_total{kind="event_store",component="stdout",stage="flush"} 1"#)
        );
        assert_eq!(c.discarded_count("write_error"), 1);
    }
}
