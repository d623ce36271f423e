//! Sans-I/O protocol parsers: bytes and a direction in, typed events out.
pub mod http1;
pub mod http2;
pub mod tls;
