//! tapline kernel side: the C programs in `src/bpf/`, the loader that attaches them, and
//! the decoder that turns ring-buffer records into typed [`Record`]s.
//!
//! The kernel keys connections by `(tgid, fd)`; records carry a socket id (the kernel
//! `struct sock` address, unique while the socket lives) that userspace keys by. Tracepoint
//! programs cannot call `bpf_get_socket_cookie`, which needs a BTF-typed socket; the
//! address serves the same purpose for a socket's lifetime, and every socket's life is
//! bracketed by an Open and exactly one Close record.
pub mod filters;
pub mod loader;
pub mod preflight;
pub mod reader;
pub mod record;

pub use filters::{KernelFilters, RoleFilter};
pub use loader::{AttachError, GoFunctionSites, LoadError, LossCounters, ProbeConfig, Probes};
pub use preflight::{PreflightError, preflight};
pub use reader::RecordReader;
pub use record::{DataSource, DecodeError, Direction, Record, Role};
