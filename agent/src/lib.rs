//! tapline agent library: kernel record → connection → protocol parser → transaction →
//! plugins → stores.
//!
//! | module      | job                                                           |
//! |-------------|---------------------------------------------------------------|
//! | [`process`] | who owns a socket: exe, user, cgroup, container               |
//! | [`conn`]    | one entry per socket: addresses, byte cursors, protocol state |
//! | [`proto`]   | sans-I/O protocol parsers                                     |
//! | [`txn`]     | request/response pairing, durations, bounded bodies           |
//! | [`plugins`] | what each stack does with a transaction                       |
//! | [`pipeline`]| ties the above together, record by record                     |
//! | [`run`]     | start-up, the event loop, shutdown                            |
pub mod cli;
pub mod clock;
pub mod config;
pub mod conn;
pub mod dns;
pub mod gotls;
pub mod logging;
pub mod pipeline;
pub mod plugins;
pub mod process;
pub mod proto;
pub mod redact;
pub mod rules;
pub mod run;
pub mod server;
pub mod status;
pub mod stores;
pub mod tls_attach;
pub mod txn;

#[cfg(test)]
mod fuzzing;
