//! tapline data model (Qpoint EventStore events, ObjectStore objects) and the stores that ship them.
//!
//! - [`model`]: serde types whose JSON is the contract (field order, casing, omissions).
//! - [`event`]: the [`event::EventStore`] trait and the stdout NDJSON store.
//! - [`object`]: the [`object::ObjectStore`] trait, the local directory and stdout stores.
//! - [`metrics`]: the one metrics pattern every component reports through.
//! - [`ids`]: connection / request ids and SHA-1 digests.
pub mod delivery;
pub mod event;
pub mod forward;
pub mod ids;
mod local_segments;
pub mod metrics;
pub mod model;
pub mod object;
pub mod s3;
