//! EventStore: where `connection`, `artifact_record` and `issue` events go.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tracing::warn;

use crate::metrics::ComponentMetrics;
use crate::model::{ArtifactRecord, Connection, Issue, Request};
use crate::object::StoreError;

/// An event for the EventStore.
// Events are built, submitted by reference and dropped one at a time, never stored in bulk,
// so the size difference between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A connection report.
    Connection(Connection),
    /// A stored artifact.
    ArtifactRecord(ArtifactRecord),
    /// An issue.
    Issue(Issue),
    /// A transaction reported by `report_usage`.
    Request(Request),
}

impl Event {
    /// The event kind: `connection`, `artifact_record`, `issue` or `request`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Connection(_) => "connection",
            Event::ArtifactRecord(_) => "artifact_record",
            Event::Issue(_) => "issue",
            Event::Request(_) => "request",
        }
    }

    /// qtap's Go type name, kept in the envelope so existing filters work.
    pub fn go_type(&self) -> &'static str {
        match self {
            Event::Connection(_) => "*eventstore.Connection",
            Event::ArtifactRecord(_) => "*eventstore.ArtifactRecord",
            Event::Issue(_) => "*eventstore.Issue",
            Event::Request(_) => "*eventstore.Request",
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    level: &'static str,
    ts: f64,
    message: &'static str,
    #[serde(rename = "type")]
    go_type: &'static str,
    event: &'static str,
    item: &'a T,
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// One NDJSON line (with its `\n`): qtap's zap envelope plus the event kind.
pub fn envelope_line(event: &Event, now: SystemTime) -> Vec<u8> {
    fn line<T: Serialize>(event: &Event, item: &T, now: SystemTime) -> Vec<u8> {
        let env = Envelope {
            level: "qpoint",
            ts: epoch_secs(now),
            message: "event store submission",
            go_type: event.go_type(),
            event: event.kind(),
            item,
        };
        let mut v = serde_json::to_vec(&env).unwrap_or_default();
        v.push(b'\n');
        v
    }
    match event {
        Event::Connection(c) => line(event, c, now),
        Event::ArtifactRecord(a) => line(event, a, now),
        Event::Issue(i) => line(event, i, now),
        Event::Request(r) => line(event, r, now),
    }
}

/// A destination for events.
pub trait EventStore: Send + Sync + 'static {
    /// The store's name (for logs and metrics).
    fn name(&self) -> &str;
    /// Takes an event. Never blocks long; failures are counted, never returned.
    fn submit(&self, event: &Event);
    /// Pushes buffered output now.
    fn flush(&self);
    /// Flushes and closes, waiting at most `timeout`.
    fn shutdown(&self, timeout: Duration) -> Result<(), StoreError>;
}

/// Writes one envelope line per event to stdout (or any writer).
pub struct StdoutEventStore<W: Write + Send + 'static = std::io::Stdout> {
    out: Mutex<std::io::BufWriter<W>>,
    metrics: ComponentMetrics,
    /// Lines written to the buffer since the last flush.
    pending: Mutex<u64>,
    broken: AtomicBool,
}

impl StdoutEventStore<std::io::Stdout> {
    /// A store writing to the process's stdout.
    pub fn new(metrics: ComponentMetrics) -> Self {
        Self::with_writer(std::io::stdout(), metrics)
    }
}

impl<W: Write + Send + 'static> StdoutEventStore<W> {
    /// A store writing to `w`.
    pub fn with_writer(w: W, metrics: ComponentMetrics) -> Self {
        Self {
            out: Mutex::new(std::io::BufWriter::with_capacity(256 * 1024, w)),
            metrics,
            pending: Mutex::new(0),
            broken: AtomicBool::new(false),
        }
    }

    fn failed(&self, n: u64, e: &std::io::Error) {
        self.metrics.discarded("write_error", n);
        if !self.broken.swap(true, Ordering::Relaxed) {
            warn!(store = "stdout", error = %e, "cannot write events to stdout; further events are counted as discarded");
        }
    }

    /// Unwraps the writer (tests).
    pub fn into_inner(self) -> Option<W> {
        self.out.into_inner().ok().and_then(|b| b.into_inner().ok())
    }
}

impl<W: Write + Send + 'static> EventStore for StdoutEventStore<W> {
    fn name(&self) -> &str {
        "stdout"
    }

    fn submit(&self, event: &Event) {
        self.metrics.received(1);
        let line = envelope_line(event, SystemTime::now());
        let Ok(mut out) = self.out.lock() else { return };
        if self.broken.load(Ordering::Relaxed) {
            self.metrics.discarded("write_error", 1);
            return;
        }
        match out.write_all(&line) {
            Ok(()) => {
                if let Ok(mut p) = self.pending.lock() {
                    *p += 1;
                }
            }
            Err(e) => {
                drop(out);
                self.failed(1, &e);
            }
        }
    }

    fn flush(&self) {
        let Ok(mut out) = self.out.lock() else { return };
        let n = self.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or(0);
        match out.flush() {
            Ok(()) => self.metrics.sent(n),
            Err(e) => {
                drop(out);
                self.failed(n, &e);
            }
        }
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), StoreError> {
        self.flush();
        if self.broken.load(Ordering::Relaxed) {
            return Err(StoreError::Io {
                store: "stdout".into(),
                context: "writing events",
                source: std::io::Error::other("stdout was closed"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Direction, Issue};
    use std::time::Duration;

    fn issue() -> Event {
        Event::Issue(Issue {
            connection_id: "c".into(),
            endpoint_id: "e".into(),
            request_id: "r".into(),
            timestamp: "2025-01-01T00:00:00.000000000Z".into(),
            direction: Some(Direction::Ingress),
            error: "Server Errors".into(),
            trigger_conditions: vec!["detect_errors:status".into()],
            trigger_reasons: vec!["500".into()],
            ..Default::default()
        })
    }

    #[test]
    fn envelope_is_exactly_qtaps_plus_event_kind() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_761_238_061_020);
        let line = String::from_utf8(envelope_line(&issue(), t)).expect("utf8");
        assert_eq!(
            line,
            "{\"level\":\"qpoint\",\"ts\":1761238061.02,\"message\":\"event store submission\",\
             \"type\":\"*eventstore.Issue\",\"event\":\"issue\",\"item\":{\"connectionId\":\"c\",\"endpointId\":\"e\",\
             \"requestId\":\"r\",\"timestamp\":\"2025-01-01T00:00:00.000000000Z\",\"direction\":\"ingress\",\
             \"error\":\"Server Errors\",\"triggerConditions\":[\"detect_errors:status\"],\"triggerReasons\":[\"500\"]}}\n"
        );
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
    }

    #[test]
    fn broken_pipe_is_counted_not_fatal() {
        let m = ComponentMetrics::detached("event_store", "stdout");
        let s = StdoutEventStore::with_writer(Broken, m.clone());
        for _ in 0..3 {
            s.submit(&issue());
            s.flush();
        }
        assert_eq!(m.received_count(), 3);
        assert_eq!(m.discarded_count("write_error"), 3);
        assert_eq!(m.sent_count(), 0);
        assert!(s.shutdown(Duration::from_millis(10)).is_err());
    }

    #[test]
    fn lines_are_written_and_counted_on_flush() {
        let m = ComponentMetrics::detached("event_store", "stdout");
        let s = StdoutEventStore::with_writer(Vec::new(), m.clone());
        s.submit(&issue());
        s.submit(&issue());
        s.flush();
        assert_eq!(m.sent_count(), 2);
        let out = s.into_inner().expect("writer");
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2);
    }
}
