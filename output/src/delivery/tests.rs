//! Delivery with a scripted transport: order, outages, restarts and a full spool.

use super::*;
use std::sync::atomic::AtomicU64;

/// A transport that records what it accepted and fails while `down` is set.
#[derive(Clone)]
struct Fake {
    got: Arc<Mutex<Vec<Vec<u8>>>>,
    down: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
}

impl Fake {
    fn new() -> Self {
        Self { got: Default::default(), down: Default::default(), calls: Default::default() }
    }
    fn got(&self) -> Vec<Vec<u8>> {
        self.got.lock().unwrap().clone()
    }
}

impl Transport for Fake {
    fn name(&self) -> &str {
        "fake"
    }
    fn send(&mut self, items: &[Vec<u8>]) -> Result<(), TransportError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::Relaxed) {
            return Err(TransportError::Retry("down".into()));
        }
        self.got.lock().unwrap().extend_from_slice(items);
        Ok(())
    }
}

fn cfg(dir: &std::path::Path) -> DeliveryConfig {
    let mut c = DeliveryConfig::new(dir.to_path_buf(), 1 << 20);
    c.max_batch_age = Duration::from_millis(20);
    c.min_backoff = Duration::from_millis(10);
    c.max_backoff = Duration::from_millis(50);
    c.max_batch_items = 50;
    c.memory_items = 100;
    c
}

fn metrics() -> ComponentMetrics {
    crate::metrics::Metrics::new().component("sink", "fake")
}

fn item(i: u32) -> Vec<u8> {
    format!("{i:06}").into_bytes()
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn healthy_sink_gets_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let t = Fake::new();
    let d = Delivery::start(t.clone(), cfg(dir.path()), metrics(), Box::new(|_| {})).unwrap();
    for i in 0..1000 {
        d.submit(item(i));
    }
    d.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(t.got(), (0..1000).map(item).collect::<Vec<_>>());
}

#[test]
fn an_outage_loses_nothing_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let t = Fake::new();
    let d = Delivery::start(t.clone(), cfg(dir.path()), metrics(), Box::new(|_| {})).unwrap();
    for i in 0..200 {
        d.submit(item(i));
    }
    wait_until("the first items", || t.got().len() == 200);
    t.down.store(true, Ordering::Relaxed);
    for i in 200..2000 {
        d.submit(item(i));
    }
    wait_until("a failed send", || d.failing());
    std::thread::sleep(Duration::from_millis(100));
    assert!(d.pending() > 1000, "held while the sink is down: {}", d.pending());
    t.down.store(false, Ordering::Relaxed);
    wait_until("everything", || t.got().len() == 2000);
    assert_eq!(t.got(), (0..2000).map(item).collect::<Vec<_>>(), "exactly once, in order");
    d.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_restart_sends_the_spool_first() {
    let dir = tempfile::tempdir().unwrap();
    let t = Fake::new();
    t.down.store(true, Ordering::Relaxed);
    let d = Delivery::start(t.clone(), cfg(dir.path()), metrics(), Box::new(|_| {})).unwrap();
    for i in 0..300 {
        d.submit(item(i));
    }
    d.shutdown(Duration::from_millis(200)).unwrap();
    assert!(t.got().is_empty());
    // A new run with the sink back: the leftovers go first, then new items.
    let t2 = Fake::new();
    let d2 = Delivery::start(t2.clone(), cfg(dir.path()), metrics(), Box::new(|_| {})).unwrap();
    for i in 300..400 {
        d2.submit(item(i));
    }
    wait_until("everything", || t2.got().len() == 400);
    assert_eq!(t2.got(), (0..400).map(item).collect::<Vec<_>>());
    d2.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_full_spool_drops_and_reports_every_item() {
    let dir = tempfile::tempdir().unwrap();
    let t = Fake::new();
    t.down.store(true, Ordering::Relaxed);
    let mut c = cfg(dir.path());
    c.spool_bytes = 100 * (6 + 8); // room for 100 items
    c.memory_items = 10;
    let dropped = Arc::new(AtomicU64::new(0));
    let dr = dropped.clone();
    let m = crate::metrics::Metrics::new();
    let d = Delivery::start(
        t.clone(),
        c,
        m.component("sink", "fake"),
        Box::new(move |n| {
            dr.fetch_add(n, Ordering::Relaxed);
        }),
    )
    .unwrap();
    for i in 0..500 {
        d.submit(item(i));
    }
    wait_until("drops", || dropped.load(Ordering::Relaxed) > 0);
    t.down.store(false, Ordering::Relaxed);
    wait_until("the rest", || d.pending() == 0);
    d.shutdown(Duration::from_secs(5)).unwrap();
    let got = t.got().len() as u64;
    assert_eq!(got + dropped.load(Ordering::Relaxed), 500, "every item delivered or counted as dropped");
    assert!(m.encode().contains("reason=\"spool_full\""), "{}", m.encode());
}
