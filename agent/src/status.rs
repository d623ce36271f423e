//! The status line: what the agent is doing, on stderr every 10 s on a terminal (a plain
//! line), every minute otherwise (an `info` log record with the same fields).

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use tracing::info;

/// Counters the status line is computed from (totals since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Connections being tracked now.
    pub connections: usize,
    /// Events emitted so far.
    pub events: u64,
    /// Objects stored so far.
    pub objects: u64,
    /// Items dropped so far, every component and the kernel together.
    pub drops: u64,
    /// Bytes waiting in the disk spool of the remote stores.
    pub spool_bytes: u64,
}

/// When and how the status is written.
pub struct Status {
    every: Duration,
    tty: bool,
    last: Option<(Instant, Snapshot)>,
}

impl Status {
    /// Every `every` (default: 10 s on a terminal, 60 s otherwise).
    pub fn new(every: Option<Duration>) -> Self {
        let tty = std::io::stderr().is_terminal();
        let every = every.unwrap_or(if tty { Duration::from_secs(10) } else { Duration::from_secs(60) });
        Status { every, tty, last: None }
    }

    /// Starts the first period.
    pub fn start(&mut self, now: Instant, snap: Snapshot) {
        self.last = Some((now, snap));
    }

    /// Whether a status is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.last.is_none_or(|(t, _)| now.duration_since(t) >= self.every)
    }

    /// Writes the status of the period ending at `now`.
    pub fn report(&mut self, now: Instant, snap: Snapshot) {
        let (t0, s0) = self.last.unwrap_or((now, Snapshot::default()));
        let secs = now.duration_since(t0).as_secs_f64().max(0.001);
        let events_per_sec = snap.events.saturating_sub(s0.events) as f64 / secs;
        let objects_per_sec = snap.objects.saturating_sub(s0.objects) as f64 / secs;
        if self.tty {
            eprintln!("{}", line(&snap, events_per_sec, objects_per_sec));
        } else {
            info!(
                connections = snap.connections,
                events_per_sec = (events_per_sec * 10.0).round() / 10.0,
                objects_per_sec = (objects_per_sec * 10.0).round() / 10.0,
                drops = snap.drops,
                spool_bytes = snap.spool_bytes,
                "status"
            );
        }
        self.last = Some((now, snap));
    }
}

/// The terminal form of a status.
pub fn line(s: &Snapshot, events_per_sec: f64, objects_per_sec: f64) -> String {
    format!(
        "tapline: {} connections · {:.1} events/s · {:.1} objects/s · {} dropped · spool {}",
        s.connections,
        events_per_sec,
        objects_per_sec,
        s.drops,
        human_bytes(s.spool_bytes)
    )
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Total size of the files under `dir` (the spool), 0 when it does not exist.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_line_and_periods() {
        let s = Snapshot { connections: 3, events: 0, objects: 0, drops: 7, spool_bytes: 3 << 20 };
        assert_eq!(
            line(&s, 12.34, 0.0),
            "tapline: 3 connections · 12.3 events/s · 0.0 objects/s · 7 dropped · spool 3.0 MiB"
        );
        let mut st = Status::new(Some(Duration::from_secs(5)));
        let t0 = Instant::now();
        assert!(st.due(t0), "nothing written yet");
        st.start(t0, s);
        assert!(!st.due(t0 + Duration::from_secs(4)));
        assert!(st.due(t0 + Duration::from_secs(5)));
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b")).unwrap();
        std::fs::write(tmp.path().join("a/b/x"), [0u8; 100]).unwrap();
        std::fs::write(tmp.path().join("y"), [0u8; 20]).unwrap();
        assert_eq!(dir_bytes(tmp.path()), 120);
        assert_eq!(dir_bytes(&tmp.path().join("missing")), 0);
    }
}
