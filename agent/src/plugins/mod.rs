//! Plugins: what a stack (`stacks.<name>.plugins`) does with each finished transaction —
//! capture levels and formats, error issues, access logs, metrics and `request` events.

pub mod access_logs;
pub mod detect_errors;
pub mod fields;
pub mod http_capture;
pub mod http_metrics;
pub mod report_usage;
