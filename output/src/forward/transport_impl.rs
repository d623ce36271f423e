//! [`ForwardTransport`] as a delivery-layer [`Transport`]. Enabled with `mod transport_impl;` in `forward/mod.rs`
//! once `crate::delivery` exists.

use crate::delivery::{Transport, TransportError};

use super::client::{ForwardTransport, SendError};

impl Transport for ForwardTransport {
    fn name(&self) -> &str {
        ForwardTransport::name(self)
    }

    /// Sends the items (`tag\0json`, see [`super::item`]) as one batch; `Ok` when every message was acked.
    fn send(&mut self, items: &[Vec<u8>]) -> Result<(), TransportError> {
        self.send_batch(items).map_err(|e| match e {
            SendError::Retry(m) => TransportError::Retry(m),
            SendError::Fatal(m) => TransportError::Fatal(m),
        })
    }

    /// Drops a connection the receiver closed while nothing was sent.
    fn idle(&mut self) {
        ForwardTransport::idle(self);
    }
}
