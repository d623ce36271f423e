//! Reliable delivery to a remote sink (Forward, S3): a bounded memory queue, a disk spool
//! behind it, batching, retries with backoff and jitter, and counted drops.
//!
//! ```text
//! submit ─► memory queue ─► delivery thread ─► Transport::send(batch) ── ack ─► done
//!    │ (full, or the sink is down)   ▲   │ fails: the batch and the queue go to the spool front
//!    └────────────► disk spool ──────┘   └─ retry with backoff; the spool drains in order
//! ```
//!
//! Order is kept: the thread sends a failed batch again before anything newer, and once
//! anything is spooled, new items follow it into the spool until it has drained. Items are
//! lost only when the spool is full; each is counted (`discarded{reason="spool_full"}`) and
//! reported through the `on_drop` callback (the agent turns it into an `issue` event).

pub mod spool;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::metrics::ComponentMetrics;
use crate::object::StoreError;
use spool::Spool;

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// Transient (network, 5xx, no ack): try again soon.
    Retry(String),
    /// The configuration is wrong (credentials, bucket, shared key): logged loudly, retried slowly.
    Fatal(String),
}

/// A remote sink that takes a batch of items and says when it has them.
pub trait Transport: Send + 'static {
    /// Short name for logs and metrics (`forward`, `s3`).
    fn name(&self) -> &str;
    /// Delivers `items` as one unit, blocking; `Ok` once acknowledged.
    fn send(&mut self, items: &[Vec<u8>]) -> Result<(), TransportError>;
    /// Called when nothing was sent for a while (close idle connections, flush batches).
    fn idle(&mut self) {}
}

/// Sizes and limits of one delivery.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Items per batch at most.
    pub max_batch_items: usize,
    /// Bytes per batch at most (a single larger item still goes alone).
    pub max_batch_bytes: usize,
    /// A batch is sent when it is this old even if small.
    pub max_batch_age: Duration,
    /// Items held in memory before spilling to the spool.
    pub memory_items: usize,
    /// The spool directory (one per sink).
    pub spool_dir: PathBuf,
    /// Spool size cap.
    pub spool_bytes: u64,
    /// First retry delay; doubles up to `max_backoff` (with jitter).
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl DeliveryConfig {
    /// Defaults for a sink spooling to `spool_dir` with at most `spool_bytes`.
    pub fn new(spool_dir: PathBuf, spool_bytes: u64) -> Self {
        Self {
            max_batch_items: 1000,
            max_batch_bytes: 4 << 20,
            max_batch_age: Duration::from_millis(500),
            memory_items: 20_000,
            spool_dir,
            spool_bytes,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Called with the number of items dropped because the spool was full.
pub type DropCallback = Box<dyn Fn(u64) + Send + Sync>;

struct State {
    memory: VecDeque<Vec<u8>>,
    spool: Spool,
    /// Items go to the spool (the sink failed or memory overflowed) until it drains.
    spooling: bool,
    /// A flush was asked for: send what is there without waiting for the batch age.
    flush: bool,
    closing: bool,
    /// Items handed to the transport and not acknowledged yet.
    in_flight: usize,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    idle: Condvar,
    metrics: ComponentMetrics,
    on_drop: DropCallback,
    name: String,
    failing: AtomicBool,
    memory_items: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spool_push(&self, st: &mut State, item: &[u8]) {
        if let Err(e) = st.spool.push(item) {
            self.dropped(1, &e.to_string());
        }
    }

    fn dropped(&self, n: u64, why: &str) {
        self.metrics.discarded("spool_full", n);
        warn!(sink = %self.name, items = n, reason = why, "items dropped: the spool is full");
        (self.on_drop)(n);
    }
}

/// Delivery of one sink: a thread that owns the transport.
pub struct Delivery {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Delivery {
    /// Opens the spool (a leftover from an earlier run is sent first) and starts the thread.
    pub fn start<T: Transport>(
        transport: T,
        cfg: DeliveryConfig,
        metrics: ComponentMetrics,
        on_drop: DropCallback,
    ) -> Result<Delivery, StoreError> {
        let name = transport.name().to_string();
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_bytes).map_err(|e| StoreError::Io {
            store: name.clone(),
            context: "opening the spool",
            source: std::io::Error::other(e.to_string()),
        })?;
        if !spool.is_empty() {
            info!(sink = %name, items = spool.len(), bytes = spool.bytes(), "sending the spool a previous run left");
        }
        let spooling = !spool.is_empty();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                memory: VecDeque::new(),
                spool,
                spooling,
                flush: false,
                closing: false,
                in_flight: 0,
            }),
            wake: Condvar::new(),
            idle: Condvar::new(),
            metrics,
            on_drop,
            name: name.clone(),
            failing: AtomicBool::new(false),
            memory_items: cfg.memory_items,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("deliver-{name}"))
            .spawn(move || run(s, transport, cfg))
            .map_err(|e| StoreError::Io { store: name, context: "starting the delivery thread", source: e })?;
        Ok(Delivery { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Queues one item; never blocks for the network.
    pub fn submit(&self, item: Vec<u8>) {
        self.shared.metrics.received(1);
        let mut st = self.shared.lock();
        if st.closing {
            drop(st);
            self.shared.metrics.discarded("after_shutdown", 1);
            return;
        }
        if st.spooling || st.memory.len() >= self.shared.memory_items {
            // Behind the memory queue (which the thread sends first), so order holds.
            st.spooling = true;
            self.shared.spool_push(&mut st, &item);
        } else {
            st.memory.push_back(item);
        }
        drop(st);
        self.shared.wake.notify_one();
    }

    /// Asks for what is queued to be sent now.
    pub fn flush(&self) {
        self.shared.lock().flush = true;
        self.shared.wake.notify_one();
    }

    /// Items waiting (memory, in flight and spool).
    pub fn pending(&self) -> u64 {
        let st = self.shared.lock();
        st.memory.len() as u64 + st.in_flight as u64 + st.spool.len()
    }

    /// Whether the last send failed.
    pub fn failing(&self) -> bool {
        self.shared.failing.load(Ordering::Relaxed)
    }

    /// Sends what it can within `timeout`, then keeps the rest in the spool for the next run.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), StoreError> {
        let deadline = Instant::now() + timeout;
        {
            let mut st = self.shared.lock();
            st.flush = true;
            self.shared.wake.notify_all();
            while (!st.memory.is_empty() || st.in_flight > 0 || !st.spool.is_empty()) && Instant::now() < deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                st = self
                    .shared
                    .idle
                    .wait_timeout(st, left.min(Duration::from_millis(100)))
                    .map(|r| r.0)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            st.closing = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        let st = self.shared.lock();
        if !st.spool.is_empty() {
            warn!(sink = %self.shared.name, items = st.spool.len(), "not delivered before shutdown: kept in the spool for the next start");
        }
        Ok(())
    }
}

fn backoff(cfg: &DeliveryConfig, failures: u32, fatal: bool) -> Duration {
    let base = if fatal { cfg.max_backoff } else { cfg.min_backoff * 2u32.saturating_pow(failures.min(16)) };
    let d = base.min(cfg.max_backoff);
    // Jitter: 50–100 % of the delay, so many agents do not retry in step.
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    d.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}

/// Takes the next batch: failed-and-returned items first (they sit at the spool front), then
/// memory, then the spool. Returns the items and whether they came from the spool.
fn take_batch(st: &mut State, cfg: &DeliveryConfig) -> (Vec<Vec<u8>>, bool) {
    if !st.memory.is_empty() {
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(front) = st.memory.front() {
            if out.len() >= cfg.max_batch_items || (!out.is_empty() && bytes + front.len() > cfg.max_batch_bytes) {
                break;
            }
            bytes += front.len();
            out.extend(st.memory.pop_front());
        }
        return (out, false);
    }
    match st.spool.peek(cfg.max_batch_items, cfg.max_batch_bytes) {
        Ok(items) => (items, true),
        Err(e) => {
            warn!(error = %e, "cannot read the spool");
            (Vec::new(), true)
        }
    }
}

fn run<T: Transport>(shared: Arc<Shared>, mut transport: T, cfg: DeliveryConfig) {
    let mut failures = 0u32;
    let mut oldest_wait: Option<Instant> = None;
    loop {
        let (batch, from_spool) = {
            let mut st = shared.lock();
            loop {
                if st.closing {
                    // Keep whatever never reached the sink for the next start.
                    let rest: Vec<Vec<u8>> = st.memory.drain(..).collect();
                    for item in rest {
                        shared.spool_push(&mut st, &item);
                    }
                    shared.idle.notify_all();
                    return;
                }
                let have = st.memory.len() as u64 + st.spool.len();
                if have == 0 {
                    st.spooling = false;
                    oldest_wait = None;
                    shared.idle.notify_all();
                    let (g, timeout) =
                        shared.wake.wait_timeout(st, Duration::from_secs(1)).unwrap_or_else(|p| p.into_inner());
                    st = g;
                    if timeout.timed_out() {
                        drop(st);
                        transport.idle();
                        st = shared.lock();
                    }
                    continue;
                }
                // Wait a little for a fuller batch unless one is full, old, spooled or flushed.
                let first = *oldest_wait.get_or_insert_with(Instant::now);
                let full = st.memory.len() >= cfg.max_batch_items || !st.spool.is_empty();
                let age = first.elapsed();
                if full || st.flush || age >= cfg.max_batch_age {
                    st.flush = false;
                    break;
                }
                let (g, _) = shared.wake.wait_timeout(st, cfg.max_batch_age - age).unwrap_or_else(|p| p.into_inner());
                st = g;
            }
            let (batch, from_spool) = take_batch(&mut st, &cfg);
            st.in_flight = batch.len();
            (batch, from_spool)
        };
        oldest_wait = None;
        if batch.is_empty() {
            shared.lock().in_flight = 0;
            continue;
        }
        let result = transport.send(&batch);
        let mut st = shared.lock();
        st.in_flight = 0;
        match result {
            Ok(()) => {
                if failures > 0 {
                    info!(sink = %shared.name, "the sink accepts data again");
                }
                failures = 0;
                shared.failing.store(false, Ordering::Relaxed);
                shared.metrics.sent(batch.len() as u64);
                if from_spool && let Err(e) = st.spool.ack(batch.len()) {
                    warn!(sink = %shared.name, error = %e, "cannot remove delivered items from the spool");
                }
            }
            Err(e) => {
                failures += 1;
                let fatal = matches!(e, TransportError::Fatal(_));
                let reason = match &e {
                    TransportError::Retry(r) | TransportError::Fatal(r) => r.clone(),
                };
                shared.metrics.error(if fatal { "rejected" } else { "send" });
                if failures == 1 || fatal {
                    warn!(sink = %shared.name, error = %reason, "delivery failed; data is kept and sent again");
                }
                shared.failing.store(true, Ordering::Relaxed);
                if !from_spool {
                    // Everything pending goes to disk, oldest first, so a crash loses nothing queued.
                    let mut front = batch;
                    front.extend(st.memory.drain(..));
                    if let Err(err) = st.spool.prepend(&front) {
                        // No room: keep what fits at the tail of memory order and count the rest.
                        let n = front.len() as u64;
                        shared.dropped(n, &err.to_string());
                    }
                    st.spooling = true;
                }
                drop(st);
                // Back off (new submits do not cut it short); a shutdown does.
                let until = Instant::now() + backoff(&cfg, failures, fatal);
                while Instant::now() < until && !shared.lock().closing {
                    std::thread::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
