//! Reads the ring buffer from tokio. The kernel submits records without a wakeup unless the
//! ring is filling up (see `wakeup_flags` in tapline.bpf.c), so the reader also drains on a
//! short poll interval: a wakeup per record would cost the traced processes more than the
//! capture itself at high request rates.

use aya::maps::{MapData, RingBuf};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::record::{DecodeError, Record};

/// How often the ring is drained when the kernel did not signal (at most this much latency).
pub const POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// The ring-buffer consumer.
pub struct RecordReader {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl RecordReader {
    pub(crate) fn new(ring: RingBuf<MapData>) -> std::io::Result<Self> {
        // SAFETY: the RingBuf owns its map fd and lives as long as the AsyncFd (it is moved into it).
        let ring =
            unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(std::io::Error::from)?;
        Ok(Self { ring })
    }

    /// Waits until the kernel signals data or [`POLL`] passes, then drains every available
    /// record, calling `f` for each. Returns how many records were drained.
    pub async fn next_batch<F: FnMut(Result<Record<'_>, DecodeError>)>(&mut self, mut f: F) -> std::io::Result<usize> {
        match tokio::time::timeout(POLL, self.ring.readable_mut()).await {
            Ok(guard) => {
                let mut guard = guard?;
                let n = drain(guard.get_inner_mut(), &mut f);
                guard.clear_ready();
                Ok(n)
            }
            Err(_) => Ok(self.drain_now(f)),
        }
    }

    /// Drains what is available now without waiting.
    pub fn drain_now<F: FnMut(Result<Record<'_>, DecodeError>)>(&mut self, mut f: F) -> usize {
        drain(self.ring.get_mut(), &mut f)
    }
}

/// Decodes every record available in `ring` into `f`; returns how many there were.
fn drain<F: FnMut(Result<Record<'_>, DecodeError>)>(ring: &mut RingBuf<MapData>, f: &mut F) -> usize {
    let mut n = 0;
    while let Some(item) = ring.next() {
        n += 1;
        f(Record::decode(&item));
    }
    n
}
