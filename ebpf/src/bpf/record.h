/* Ring-buffer record layouts shared by the kernel programs and userspace.
 * Mirrored by #[repr(C)] structs in ebpf/src/record.rs: keep both in sync. */
#pragma once
