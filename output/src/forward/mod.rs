//! Fluent Forward output: ships envelope lines to Fluent Bit, fluentd or Vector.
//!
//! - [`codec`]: sans-I/O msgpack encoding of entries and PackedForward / CompressedPackedForward messages, chunk ids,
//!   the incremental decoder of the receiver's responses, and the shared-key handshake (HELO / PING / PONG).
//! - [`client`]: [`ForwardTransport`], a blocking TCP / TLS client that sends batches of items and waits for acks.
//!
//! Each item is one stdout envelope line with its tag (`tag\0json`, see [`item`]); the Forward record is exactly
//! the envelope object, and the Forward tag is `<tag_prefix>.<tag>` (e.g. `tapline.connection`). Delivery is at
//! least once; reconnect backoff is the caller's.

pub mod client;
pub mod codec;
mod transport_impl;

pub use client::{ForwardConfig, ForwardTransport, SendError, TlsConfig, event_item, item};
pub use codec::{Compression, EventTime, ForwardError, Response, Responses};
