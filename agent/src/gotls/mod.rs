//! Go crypto/tls support: finding the functions to probe in Go executables.

pub mod binary;
