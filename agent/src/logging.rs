//! The agent's own logs: always on stderr (stdout carries events only); text on a
//! terminal, JSON otherwise, unless `--log-format` says.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{CommonArgs, LogFormat};

/// Installs the global subscriber.
pub fn init(args: &CommonArgs) {
    let filter = EnvFilter::try_new(&args.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match args.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}
