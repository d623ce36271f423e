//! tapline agent library: kernel record → connection → protocol parser → transaction → plugins → stores.
pub mod config;
pub mod conn;
pub mod plugins;
pub mod process;
pub mod proto;
pub mod txn;
