//! [`crate::delivery::Transport`] for [`S3Transport`]: the delivery thread retries
//! [`TransportError::Retry`] with backoff and logs [`TransportError::Fatal`] loudly.
//!
//! Enable with `mod transport_impl;` in `s3/mod.rs` once `crate::delivery` exists.

use crate::delivery::{Transport, TransportError};

use super::S3Transport;

impl Transport for S3Transport {
    fn name(&self) -> &str {
        S3Transport::name(self)
    }

    fn send(&mut self, items: &[Vec<u8>]) -> Result<(), TransportError> {
        S3Transport::send(self, items).map_err(|e| {
            if e.is_fatal() { TransportError::Fatal(e.to_string()) } else { TransportError::Retry(e.to_string()) }
        })
    }
}
