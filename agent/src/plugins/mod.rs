//! Plugins: what happens to each finished transaction (capture levels, and later rules,
//! error detection and access logs).

pub mod access_logs;
pub mod detect_errors;
pub mod fields;
pub mod http_capture;
pub mod http_metrics;
