//! tapline kernel side: the C programs in `src/bpf/`, the loader that attaches them, and the
//! decoder that turns ring-buffer records into typed [`Record`]s.
