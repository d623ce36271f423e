//! Converts kernel timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) to wall-clock time.

use std::time::{Duration, SystemTime};

/// A fixed offset between CLOCK_MONOTONIC and CLOCK_REALTIME, measured once.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock time at monotonic zero.
    boot_wall: SystemTime,
}

fn clock_ns(id: libc::clockid_t) -> u128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; both clock ids always exist on Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

impl Clock {
    /// Measures the offset now.
    pub fn measure() -> Self {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let wall = clock_ns(libc::CLOCK_REALTIME);
        let boot = wall.saturating_sub(mono);
        Self { boot_wall: SystemTime::UNIX_EPOCH + Duration::from_nanos(boot as u64) }
    }

    /// A clock with a given wall time at monotonic zero (for tests).
    pub fn with_boot(boot_wall: SystemTime) -> Self {
        Self { boot_wall }
    }

    /// The wall-clock time of a kernel timestamp.
    pub fn wall(&self, ktime_ns: u64) -> SystemTime {
        self.boot_wall + Duration::from_nanos(ktime_ns)
    }

    /// The current kernel (monotonic) time.
    pub fn now_ktime() -> u64 {
        clock_ns(libc::CLOCK_MONOTONIC) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_now_maps_to_wall_now() {
        let c = Clock::measure();
        let w = c.wall(Clock::now_ktime());
        let diff = w.duration_since(SystemTime::now()).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_millis(50), "{diff:?}");
    }
}
