/* Ring-buffer record layouts shared by the kernel programs and userspace.
 * Mirrored by #[repr(C)] structs in ebpf/src/record.rs: keep both in sync
 * (a unit test there checks the sizes). */
#pragma once

/* Largest payload carried by one data record; larger calls become several records. */
#define TL_CHUNK 16384
#define TL_FILENAME 256
/* Largest DNS answer carried by one DNS record: UDP answers are at most 4096 bytes with EDNS
 * (512 without); a longer datagram is cut and flagged. */
#define TL_DNS_MAX 4096

enum tl_kind {
    TL_EXEC = 1,
    TL_FORK = 2,
    TL_EXIT = 3,
    TL_OPEN = 4,
    TL_DATA = 5,
    TL_CLOSE = 6,
    TL_DNS = 7,
};

enum tl_dir { TL_EGRESS = 0, TL_INGRESS = 1 };
enum tl_role { TL_ROLE_UNKNOWN = 0, TL_ROLE_CLIENT = 1, TL_ROLE_SERVER = 2 };
/* Who produced a DATA record. TLS plaintext has its own byte positions (pos[2..4]). */
enum tl_source { TL_SRC_SYSCALL = 0, TL_SRC_OPENSSL = 1, TL_SRC_GOTLS = 2 };

/* Per-CPU loss counters (index into the LOSS map). */
enum tl_loss {
    TL_LOSS_RING_FULL_RECORDS = 0, /* a record could not be written: ring buffer full */
    TL_LOSS_RING_FULL_BYTES = 1,   /* payload bytes in those records */
    TL_LOSS_READ_FAILED_BYTES = 2, /* payload bytes the kernel could not read from user memory */
    TL_LOSS_TRUNCATED_BYTES = 3,   /* payload bytes past the per-call chunk budget */
    TL_LOSS_PENDING_FULL = 4,      /* a syscall could not be tracked: pending map full */
    TL_LOSS_TABLE_FULL = 5,        /* a socket could not be tracked: socket table full */
    TL_LOSS_TLS_NO_SOCKET = 6,     /* TLS plaintext bytes whose socket was never seen */
    TL_LOSS_MAX = 8,
};

/* What a process's filters skip (PROC_SKIP / EXE_SKIP values; tap.filters, QPOINT_STRATEGY). */
enum tl_skip {
    TL_SKIP_ALL = 1,  /* nothing of the process: no records at all */
    TL_SKIP_DATA = 2, /* syscall payload is not copied (positions still advance: byte counts stay right) */
    TL_SKIP_DNS = 4,  /* its DNS answers are not copied */
    TL_SKIP_TLS = 8,  /* its TLS plaintext is not copied */
};

/* Per-CPU counters of what the kernel filters skipped (index into the FILTERED map). */
enum tl_filtered {
    TL_FILTERED_CALLS = 0,   /* data, TLS or DNS calls of filtered processes not followed */
    TL_FILTERED_BYTES = 1,   /* payload bytes not copied (skip data / TLS) */
    TL_FILTERED_SOCKETS = 2, /* connections not reported (direction, loopback) */
    TL_FILTERED_MAX = 4,
};

/* tap.direction and tap.ignore_loopback as the kernel applies them (FILTER_SETTINGS[0]). */
enum tl_dir_filter { TL_DIR_ALL = 0, TL_DIR_INGRESS = 1, TL_DIR_EGRESS = 2 };
struct tl_filter_settings {
    __u32 ignore_loopback;
    __u32 direction; /* enum tl_dir_filter */
};

struct tl_hdr {
    __u32 kind;
    __u32 pid; /* tgid */
    __u32 tid;
    __s32 fd;
    __u64 ts_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
};

struct tl_exec {
    struct tl_hdr h;
    __u32 ppid;
    __u32 uid;
    __u32 gid;
    __u32 filename_len;
    __u64 cgroup_id;
    char comm[16];
    char filename[TL_FILENAME];
};

struct tl_fork {
    struct tl_hdr h;
    __u32 parent_pid;
    __u32 child_pid;
};

struct tl_exit {
    struct tl_hdr h;
};

struct tl_open {
    struct tl_hdr h;
    __u64 sock;
    __u32 role;
    __u16 family; /* AF_INET or AF_INET6 */
    __u16 lport;
    __u16 rport;
    __u16 pad;
    __u32 uid;
    __u32 gid;
    __u32 pad2;
    __u64 cgroup_id;
    __u8 laddr[16];
    __u8 raddr[16];
    char comm[16];
};

struct tl_data {
    struct tl_hdr h;
    __u64 sock;
    __u64 pos; /* offset of data[0] in this direction of this socket */
    __u32 len; /* bytes in data[] */
    __u8 dir;
    __u8 source;
    __u16 pad;
    /* followed by `len` payload bytes */
};

struct tl_close {
    struct tl_hdr h;
    __u64 sock;
    __u64 bytes_sent;     /* final egress position */
    __u64 bytes_received; /* final ingress position */
};

/* A datagram a process received on a UDP socket from port 53: a DNS answer, read whole by
 * recvfrom/recvmsg/recvmmsg/read/readv. UDP sockets are never tracked as connections (no
 * OPEN/DATA/CLOSE); DNS over TCP needs nothing special: it is DATA of a socket to port 53. */
struct tl_dns {
    struct tl_hdr h;
    __u64 cgroup_id;
    __u32 len;     /* bytes in data[], at most TL_DNS_MAX */
    __u16 family;  /* server address: AF_INET or AF_INET6 */
    __u16 port;    /* server port (53), host order */
    __u8 addr[16]; /* server address (the first 4 bytes for AF_INET) */
    char comm[16];
    __u8 truncated; /* 1: the datagram was longer than data[] (cut at TL_DNS_MAX, or its iovecs) */
    __u8 pad[3];
    __u16 lfamily;  /* the receiving socket's own address (0.0.0.0 when it is not bound to one) */
    __u16 lport;    /* host order */
    __u8 laddr[16];
    /* followed by `len` payload bytes: the DNS message as received */
};

/* Userspace (ebpf/src/record.rs) decodes at these sizes. */
_Static_assert(sizeof(struct tl_hdr) == 24, "tl_hdr layout");
_Static_assert(sizeof(struct tl_exec) == 320, "tl_exec layout");
_Static_assert(sizeof(struct tl_fork) == 32, "tl_fork layout");
_Static_assert(sizeof(struct tl_open) == 112, "tl_open layout");
_Static_assert(sizeof(struct tl_data) == 48, "tl_data layout");
_Static_assert(sizeof(struct tl_close) == 48, "tl_close layout");
_Static_assert(sizeof(struct tl_dns) == 96, "tl_dns layout");
