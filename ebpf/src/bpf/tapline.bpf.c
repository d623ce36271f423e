// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* tapline kernel programs: TCP socket traffic of every process, with byte positions,
 * DNS answers received over UDP, plus process exec/fork/exit. Only syscall tracepoints, regular tracepoints and tp_btf
 * are used (kprobes and fentry are not available on every kernel we target). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "record.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_UDP_NUM 17
#define DNS_PORT 53
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define MSG_PEEK 2
#define TCP_CLOSE_STATE 7
#define IPPROTO_TCP_NUM 6
#define MAX_IOV 1024
/* Chunks one syscall may produce (2^16 x 16 KiB = 1 GiB); bytes past it are counted. */
#define MAX_CHUNKS 65536

/* Set by the loader (.rodata). */
const volatile __u32 self_tgid = 0;

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 16 * 1024 * 1024); /* resized by the loader */
} EVENTS SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, TL_LOSS_MAX);
    __type(key, __u32);
    __type(value, __u64);
} LOSS SEC(".maps");

/* (tgid << 32 | fd) -> what that descriptor is, validated against the current file pointer. */
struct fd_entry {
    __u64 file; /* struct file * seen when classified */
    __u64 sock; /* struct sock * (the socket id), 0 = not a TCP socket */
    __u64 udp;  /* struct sock * of an inet UDP socket (only its DNS answers are read), else 0 */
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 131072);
    __type(key, __u64);
    __type(value, struct fd_entry);
} FDS SEC(".maps");

/* socket id -> byte positions per direction */
struct sock_state {
    __u64 pos[4]; /* [source * 2 + dir]: syscall egress/ingress, TLS plaintext egress/ingress */
    __u32 role;
    __u32 filtered; /* 1: out of tap.direction / ignore_loopback, never reported */
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, struct sock_state);
} SOCKS SEC(".maps");

/* BUF_MMSG (a struct mmsghdr array of recvmmsg) is only read for DNS answers. */
enum buf_kind { BUF_PLAIN = 0, BUF_IOV = 1, BUF_MMSG = 2 };

/* A data syscall in flight (pid_tgid -> args saved at entry). */
struct pending {
    __u64 sock;
    __u64 buf;    /* plain buffer or struct iovec * */
    __u64 iovcnt; /* BUF_IOV only */
    __s32 fd;
    __u32 kind;
    __u32 dir;
    __u32 source; /* TL_SRC_SYSCALL or TL_SRC_TLS */
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct pending);
} PENDING SEC(".maps");

/* connect() in flight: pid_tgid -> fd */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, __s32);
} CONNECTS SEC(".maps");

/* Per-CPU scratch space to build a data record before copying it into the ring. */
struct scratch {
    struct tl_data rec;
    __u8 data[TL_CHUNK];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct scratch);
} SCRATCH SEC(".maps");

/* Older kernels (< 6.13) count file references in f_count. */
struct file___old {
    atomic_long_t f_count;
} __attribute__((preserve_access_index));

/* tgid -> enum tl_skip bits, pushed by userspace (filters it decides) and set at exec from
 * EXE_SKIP; a forked child inherits its parent's. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, __u32);
} PROC_SKIP SEC(".maps");

/* Executable path (as exec'd, NUL-padded) -> enum tl_skip bits: exact-path filters, applied
 * in the kernel at exec so a filtered program's first connection is already skipped. */
#define TL_EXE_KEY 256
struct exe_key {
    char path[TL_EXE_KEY];
};
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, struct exe_key);
    __type(value, __u32);
} EXE_SKIP SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct tl_filter_settings);
} FILTER_SETTINGS SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, TL_FILTERED_MAX);
    __type(key, __u32);
    __type(value, __u64);
} FILTERED SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct exe_key);
} EXE_SCRATCH SEC(".maps");

static __always_inline void filtered(__u32 idx, __u64 n)
{
    __u64 *v = bpf_map_lookup_elem(&FILTERED, &idx);
    if (v)
        *v += n;
}

static __always_inline __u32 skip_flags(__u32 tgid)
{
    __u32 *f = bpf_map_lookup_elem(&PROC_SKIP, &tgid);
    return f ? *f : 0;
}

/* Wakeup strategy: the consumer polls every few milliseconds, so records are submitted
 * without waking it, unless the ring is filling up (an eighth of it unread): a wakeup per
 * record costs the traced process more than the copy itself at high request rates. */
static __always_inline __u64 wakeup_flags(void)
{
    __u64 avail = bpf_ringbuf_query(&EVENTS, BPF_RB_AVAIL_DATA);
    __u64 size = bpf_ringbuf_query(&EVENTS, BPF_RB_RING_SIZE);
    return avail > size / 8 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void lose(__u32 idx, __u64 n)
{
    __u64 *v = bpf_map_lookup_elem(&LOSS, &idx);
    if (v)
        *v += n; /* per-CPU: no atomics needed */
}

/* The agent itself, or a process filtered entirely. */
static __always_inline int ignored(__u32 tgid)
{
    if (self_tgid && tgid == self_tgid)
        return 1;
    if (skip_flags(tgid) & TL_SKIP_ALL) {
        filtered(TL_FILTERED_CALLS, 1);
        return 1;
    }
    return 0;
}

static __always_inline int is_loopback(struct sock *sk)
{
    __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
    if (family == AF_INET) {
        __u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
        return (d & 0xff) == 127; /* network order: first octet in the low byte */
    }
    struct in6_addr a = BPF_CORE_READ(sk, __sk_common.skc_v6_daddr);
    __u32 *w = (__u32 *)&a;
    if (w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == __builtin_bswap32(1))
        return 1; /* ::1 */
    return w[0] == 0 && w[1] == 0 && w[2] == __builtin_bswap32(0xffff) && (w[3] & 0xff) == 127;
}

/* Whether a new connection of this role is out of tap.direction / tap.ignore_loopback. */
static __always_inline int socket_filtered(struct sock *sk, __u32 role)
{
    __u32 zero = 0;
    struct tl_filter_settings *fs = bpf_map_lookup_elem(&FILTER_SETTINGS, &zero);
    if (!fs)
        return 0;
    if (fs->ignore_loopback && is_loopback(sk))
        return 1;
    if (fs->direction == TL_DIR_INGRESS && role == TL_ROLE_CLIENT)
        return 1;
    if (fs->direction == TL_DIR_EGRESS && role == TL_ROLE_SERVER)
        return 1;
    return 0;
}

static __always_inline void fill_hdr(struct tl_hdr *h, __u32 kind, __u64 id, __s32 fd)
{
    h->kind = kind;
    h->pid = id >> 32;
    h->tid = (__u32)id;
    h->fd = fd;
    h->ts_ns = bpf_ktime_get_ns();
}

static __always_inline struct file *fd_file(int fd)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
    unsigned int max = BPF_CORE_READ(fdt, max_fds);
    struct file **fds = BPF_CORE_READ(fdt, fd);
    struct file *f = 0;
    if (fd < 0 || (unsigned int)fd >= max)
        return 0;
    bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
    return f;
}

enum sk_class { SK_OTHER = 0, SK_TCP = 1, SK_UDP = 2 };

/* The struct sock of an inet socket file and whether it is TCP (stream) or UDP, else 0. */
static __always_inline struct sock *inet_sock_of(struct file *f, __u32 *cls)
{
    *cls = SK_OTHER;
    if (!f)
        return 0;
    umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
    if ((mode & S_IFMT) != S_IFSOCK)
        return 0;
    struct socket *so = BPF_CORE_READ(f, private_data);
    struct sock *sk = BPF_CORE_READ(so, sk);
    if (!sk)
        return 0;
    __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
    __u16 type = BPF_CORE_READ(sk, sk_type);
    if (family != AF_INET && family != AF_INET6)
        return 0;
    if (type == SOCK_STREAM) {
        *cls = SK_TCP;
        return sk;
    }
    /* SOCK_DGRAM is also ICMP "ping" sockets and UDP-Lite: only plain UDP carries DNS. */
    if (type == SOCK_DGRAM && BPF_CORE_READ(sk, sk_protocol) == IPPROTO_UDP_NUM) {
        *cls = SK_UDP;
        return sk;
    }
    return 0;
}

/* The struct sock of a TCP (inet, stream) socket file, else 0. */
static __always_inline struct sock *tcp_sock_of(struct file *f)
{
    __u32 cls = SK_OTHER;
    struct sock *sk = inet_sock_of(f, &cls);
    return cls == SK_TCP ? sk : 0;
}

static __always_inline void emit_open(__u64 id, int fd, struct sock *sk, __u32 role)
{
    struct tl_open *o = bpf_ringbuf_reserve(&EVENTS, sizeof(*o), 0);
    if (!o) {
        lose(TL_LOSS_RING_FULL_RECORDS, 1);
        return;
    }
    fill_hdr(&o->h, TL_OPEN, id, fd);
    o->sock = (__u64)sk;
    o->role = role;
    o->pad = 0;
    o->pad2 = 0;
    o->family = BPF_CORE_READ(sk, __sk_common.skc_family);
    o->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
    o->rport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
    __u64 ug = bpf_get_current_uid_gid();
    o->uid = (__u32)ug;
    o->gid = ug >> 32;
    o->cgroup_id = bpf_get_current_cgroup_id();
    __builtin_memset(o->laddr, 0, 16);
    __builtin_memset(o->raddr, 0, 16);
    if (o->family == AF_INET) {
        bpf_core_read(o->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
        bpf_core_read(o->raddr, 4, &sk->__sk_common.skc_daddr);
    } else {
        bpf_core_read(o->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
        bpf_core_read(o->raddr, 16, &sk->__sk_common.skc_v6_daddr);
    }
    bpf_get_current_comm(o->comm, sizeof(o->comm));
    bpf_ringbuf_submit(o, wakeup_flags());
}

/* Starts tracking a socket (new connection or first sight), emitting its OPEN record. */
static __always_inline void track(__u64 id, int fd, struct file *f, struct sock *sk, __u32 role, int fresh)
{
    __u64 key = (id & 0xffffffff00000000ULL) | (__u32)fd;
    struct fd_entry fe = { .file = (__u64)f, .sock = (__u64)sk };
    bpf_map_update_elem(&FDS, &key, &fe, BPF_ANY);
    __u64 skey = (__u64)sk;
    if (!fresh && bpf_map_lookup_elem(&SOCKS, &skey))
        return; /* already tracked (e.g. inherited across fork): same connection */
    struct sock_state st = { .role = role };
    /* Out of tap.direction / ignore_loopback: remembered (so it is not met again as a new
     * socket) but never reported: no OPEN, no DATA, no CLOSE. */
    if (fresh && socket_filtered(sk, role)) {
        st.filtered = 1;
        filtered(TL_FILTERED_SOCKETS, 1);
    }
    if (bpf_map_update_elem(&SOCKS, &skey, &st, BPF_ANY)) {
        lose(TL_LOSS_TABLE_FULL, 1);
        return;
    }
    if (!st.filtered)
        emit_open(id, fd, sk, role);
}

/* The socket id of a descriptor if it is a TCP socket we track (classifying it on first sight).
 * Otherwise 0, and *udp is the struct sock of an inet UDP socket (else 0): the classification
 * is cached in the same FDS entry, so a UDP descriptor costs no extra walk per call. UDP
 * sockets never get a SOCKS entry, an OPEN or a CLOSE. */
static __always_inline __u64 classify_fd(__u64 id, int fd, __u64 *udp)
{
    *udp = 0;
    struct file *f = fd_file(fd);
    if (!f)
        return 0;
    __u64 key = (id & 0xffffffff00000000ULL) | (__u32)fd;
    struct fd_entry *fe = bpf_map_lookup_elem(&FDS, &key);
    if (fe && fe->file == (__u64)f) {
        if (!fe->sock) {
            *udp = fe->udp;
            return 0;
        }
        __u64 skey = fe->sock;
        if (bpf_map_lookup_elem(&SOCKS, &skey))
            return fe->sock;
        /* the socket closed while this descriptor stayed open elsewhere: start again */
    }
    __u32 cls = SK_OTHER;
    struct sock *sk = inet_sock_of(f, &cls);
    if (cls != SK_TCP) {
        struct fd_entry neg = { .file = (__u64)f, .sock = 0, .udp = cls == SK_UDP ? (__u64)sk : 0 };
        bpf_map_update_elem(&FDS, &key, &neg, BPF_ANY);
        *udp = neg.udp;
        return 0;
    }
    track(id, fd, f, sk, TL_ROLE_UNKNOWN, 0);
    return (__u64)sk;
}

static __always_inline __u64 sock_of_fd(__u64 id, int fd)
{
    __u64 udp = 0;
    return classify_fd(id, fd, &udp);
}

/* ---------------- data capture ---------------- */

struct copy_ctx {
    __u64 id;
    __u64 sock;
    __u64 pos;       /* position of the next byte */
    __u64 left;      /* bytes of the syscall result still to copy */
    __u64 iov;       /* struct iovec * (BUF_IOV) */
    __u64 iovcnt;
    __u64 iov_idx;
    __u64 cur_base;  /* current user buffer */
    __u64 cur_left;  /* bytes left in it */
    __s32 fd;
    __u32 dir;
    __u32 kind;
    __u32 source;
};

/* The loop state lives in a per-CPU map, not on the stack: the verifier then treats it as
 * unknown values and the callback's states converge (stack values would be tracked
 * precisely and every iteration would look new). Syscall programs do not nest on a CPU. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct copy_ctx);
} COPY_STATE SEC(".maps");

static long copy_chunk(__u64 index, void *arg)
{
    __u32 zero = 0;
    struct copy_ctx *c = bpf_map_lookup_elem(&COPY_STATE, &zero);
    if (!c)
        return 1;
    if (c->left == 0)
        return 1;
    if (c->cur_left == 0) {
        if (c->kind == BUF_PLAIN || c->iov_idx >= c->iovcnt || c->iov_idx >= MAX_IOV)
            return 1;
        struct iovec v = {};
        if (bpf_probe_read_user(&v, sizeof(v), (void *)(c->iov + c->iov_idx * sizeof(struct iovec))))
            return 1;
        c->iov_idx++;
        c->cur_base = (__u64)v.iov_base;
        c->cur_left = v.iov_len;
        if (c->cur_left > c->left)
            c->cur_left = c->left;
        return 0;
    }
    __u64 n = c->cur_left;
    if (n > TL_CHUNK)
        n = TL_CHUNK;
    struct scratch *s = bpf_map_lookup_elem(&SCRATCH, &zero);
    if (!s)
        return 1;
    fill_hdr(&s->rec.h, TL_DATA, c->id, c->fd);
    s->rec.sock = c->sock;
    s->rec.pos = c->pos;
    s->rec.dir = c->dir;
    s->rec.source = c->source;
    s->rec.pad = 0;
    __u32 len = n & (TL_CHUNK * 2 - 1);
    if (len > TL_CHUNK)
        len = TL_CHUNK;
    if (len == 0 || bpf_probe_read_user(s->data, len, (void *)c->cur_base)) {
        lose(TL_LOSS_READ_FAILED_BYTES, n);
    } else {
        s->rec.len = len;
        if (bpf_ringbuf_output(&EVENTS, s, sizeof(struct tl_data) + len, wakeup_flags())) {
            lose(TL_LOSS_RING_FULL_RECORDS, 1);
            lose(TL_LOSS_RING_FULL_BYTES, len);
        }
    }
    c->pos += n;
    c->left -= n;
    c->cur_base += n;
    c->cur_left -= n;
    return 0;
}

/* Copies `total` bytes of a finished data syscall into the ring as DATA records. */
static __always_inline void emit_data(__u64 id, struct pending *p, __u64 total)
{
    __u64 skey = p->sock;
    struct sock_state *st = bpf_map_lookup_elem(&SOCKS, &skey);
    if (!st)
        return;
    if (st->filtered)
        return;
    __u32 dir = p->dir & 1;
    __u32 source = p->source;
    __u32 slot = (source == TL_SRC_SYSCALL ? 0 : 2) + dir;
    /* Reserve the byte range: concurrent threads get disjoint, ordered positions. */
    __u64 base = __sync_fetch_and_add(&st->pos[slot & 3], total);
    /* A process whose payload is not wanted: the bytes are counted (close totals stay
     * right), not copied. */
    __u32 skip = skip_flags(id >> 32);
    if ((source == TL_SRC_SYSCALL && (skip & TL_SKIP_DATA)) || (source != TL_SRC_SYSCALL && (skip & TL_SKIP_TLS))) {
        filtered(TL_FILTERED_BYTES, total);
        return;
    }
    __u32 zero = 0;
    struct copy_ctx *c = bpf_map_lookup_elem(&COPY_STATE, &zero);
    if (!c)
        return;
    c->id = id;
    c->sock = p->sock;
    c->pos = base;
    c->left = total;
    c->iov = p->buf;
    c->iovcnt = p->iovcnt;
    c->iov_idx = 0;
    c->fd = p->fd;
    c->dir = dir;
    c->kind = p->kind;
    c->source = source;
    c->cur_base = p->kind == BUF_PLAIN ? p->buf : 0;
    c->cur_left = p->kind == BUF_PLAIN ? total : 0;
    bpf_loop(MAX_CHUNKS + MAX_IOV, copy_chunk, 0, 0);
    if (c->left)
        lose(TL_LOSS_TRUNCATED_BYTES, c->left);
}

/* ---------------- DNS answers over UDP ----------------
 * A hostname for an IP comes from the DNS answer the process received. Only datagrams from
 * port 53 are copied: a connected socket's peer port is checked at entry (glibc and Go connect
 * their resolver sockets); for an unconnected socket (musl's resolver) the source address
 * the call returns (recvfrom's src_addr, each msg_name) is checked at exit; a call that does
 * not ask for it (read/readv, or a NULL address) cannot be told apart and is skipped.
 * Answers over TCP need nothing here: a TCP socket to port 53 is tracked like any other (no
 * port is filtered anywhere), and its answers (2-byte length prefixed) are its ingress DATA.
 * Not covered: answers a process gets without a DNS datagram of its own (glibc's nss-resolve
 * asks systemd-resolved over a unix socket; the resolver's own upstream answers are seen),
 * DNS over TLS/HTTPS (port 853/443, encrypted), and recvmmsg datagrams past DNS_MMSG_MAX. */

#define DNS_IOV 4        /* iovecs read per datagram (resolvers receive into one buffer) */
#define DNS_MMSG_MAX 64  /* datagrams read per recvmmsg call */

struct dns_server {
    __u16 family; /* 0: not known at entry, read the source address at exit */
    __u16 port;
    __u8 addr[16];
};

/* A receive on a UDP socket in flight that may return a DNS answer (pid_tgid -> args). */
struct dns_pending {
    __u64 buf;   /* plain buffer, struct iovec * or struct mmsghdr * */
    __u64 count; /* buffer size, iovec count or mmsghdr count */
    __u64 name;  /* user struct sockaddr * the source address lands in, else 0 */
    __s32 fd;
    __u32 kind;
    __s32 nr;    /* syscall number: only its own exit consumes the entry */
    struct dns_server srv;
    struct dns_server local; /* the receiving socket's own address */
};

/* A separate map from PENDING: UDP sockets never enter the TCP tables. LRU: an entry whose
 * exit never comes (the thread was killed in the call) is evicted instead of piling up. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct dns_pending);
} DNS_PENDING SEC(".maps");

/* Per-CPU scratch for a DNS record. data[] is twice TL_DNS_MAX so the verifier can accept
 * `offset < TL_DNS_MAX` plus `length <= TL_DNS_MAX` without relating the two. */
struct dns_scratch {
    struct tl_dns rec;
    __u8 data[2 * TL_DNS_MAX];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct dns_scratch);
} DNS_SCRATCH SEC(".maps");

/* recvmmsg loop state (per-CPU map, not stack: see COPY_STATE). */
struct dns_mmsg_ctx {
    struct dns_pending p;
    __u64 id;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct dns_mmsg_ctx);
} DNS_MMSG SEC(".maps");

static __always_inline void sk_peer(struct sock *sk, struct dns_server *srv)
{
    srv->family = BPF_CORE_READ(sk, __sk_common.skc_family);
    srv->port = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
    if (srv->family == AF_INET)
        bpf_core_read(srv->addr, 4, &sk->__sk_common.skc_daddr);
    else
        bpf_core_read(srv->addr, 16, &sk->__sk_common.skc_v6_daddr);
}

/* Remembers a receive on UDP socket `sk` if its answer can come from port 53. */
static __always_inline void dns_enter(__u64 id, int nr, int fd, struct sock *sk, __u64 buf, __u64 count,
                                      __u32 kind, __u64 name)
{
    if (skip_flags(id >> 32) & TL_SKIP_DNS) {
        filtered(TL_FILTERED_CALLS, 1);
        return;
    }
    struct dns_pending p = { .buf = buf, .count = count, .name = name, .fd = fd, .kind = kind, .nr = nr };
    p.local.family = BPF_CORE_READ(sk, __sk_common.skc_family);
    p.local.port = BPF_CORE_READ(sk, __sk_common.skc_num);
    if (p.local.family == AF_INET)
        bpf_core_read(p.local.addr, 4, &sk->__sk_common.skc_rcv_saddr);
    else
        bpf_core_read(p.local.addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
    __u16 dport = BPF_CORE_READ(sk, __sk_common.skc_dport);
    if (dport) {
        /* connected: only its peer can send to it */
        if (dport != __builtin_bswap16(DNS_PORT))
            return;
        sk_peer(sk, &p.srv);
    } else if (!name && kind != BUF_MMSG) {
        return; /* unconnected and the sender is not asked for (recvmmsg: per message, at exit) */
    }
    if (bpf_map_update_elem(&DNS_PENDING, &id, &p, BPF_ANY))
        lose(TL_LOSS_PENDING_FULL, 1);
}

/* The source address a receive wrote to user memory, if it is port 53. */
static __always_inline int dns_source(__u64 name, struct dns_server *srv)
{
    /* sockaddr_in: family, port, addr at 4; sockaddr_in6: family, port, flowinfo, addr at 8 */
    __u16 fp[2] = {};
    if (!name || bpf_probe_read_user(fp, sizeof(fp), (void *)name))
        return 0;
    if (fp[1] != __builtin_bswap16(DNS_PORT))
        return 0;
    srv->family = fp[0];
    srv->port = DNS_PORT;
    if (fp[0] == AF_INET)
        return bpf_probe_read_user(srv->addr, 4, (void *)(name + 4)) == 0;
    if (fp[0] == AF_INET6)
        return bpf_probe_read_user(srv->addr, 16, (void *)(name + 8)) == 0;
    return 0;
}

/* Copies up to TL_DNS_MAX of the `total` received bytes into s->data: the count, or -1 if
 * user memory could not be read. */
static __always_inline long dns_copy(struct dns_scratch *s, __u32 kind, __u64 buf, __u64 count, __u64 total)
{
    if (kind == BUF_PLAIN) {
        /* recvfrom(MSG_TRUNC) returns the datagram's length even past the buffer */
        __u64 n = total < count ? total : count;
        if (n > TL_DNS_MAX)
            n = TL_DNS_MAX;
        /* 64-bit throughout: a 32-bit copy gets checked while the original is used */
        barrier_var(n);
        if (n > TL_DNS_MAX)
            return -1;
        if (n && bpf_probe_read_user(s->data, n, (void *)buf))
            return -1;
        return n;
    }
    __u64 off = 0;
    for (int i = 0; i < DNS_IOV; i++) {
        if (i >= count || off >= total || off >= TL_DNS_MAX)
            break;
        struct iovec v = {};
        if (bpf_probe_read_user(&v, sizeof(v), (void *)(buf + i * sizeof(struct iovec))))
            return -1;
        __u64 n = v.iov_len;
        if (n > total - off)
            n = total - off;
        if (n > TL_DNS_MAX - off)
            n = TL_DNS_MAX - off;
        __u64 o = off;
        barrier_var(o);
        barrier_var(n);
        if (o >= TL_DNS_MAX || n > TL_DNS_MAX)
            return -1;
        if (n && bpf_probe_read_user(s->data + o, n, v.iov_base))
            return -1;
        off = o + n;
    }
    return off;
}

/* Emits one received datagram of `total` bytes as a DNS record if it came from port 53. */
static __always_inline void dns_emit(__u64 id, struct dns_pending *p, __u64 total)
{
    struct dns_server srv = p->srv;
    if (!srv.family && !dns_source(p->name, &srv))
        return;
    __u32 zero = 0;
    struct dns_scratch *s = bpf_map_lookup_elem(&DNS_SCRATCH, &zero);
    if (!s)
        return;
    long n = dns_copy(s, p->kind, p->buf, p->count, total);
    if (n < 0) {
        lose(TL_LOSS_READ_FAILED_BYTES, total);
        return;
    }
    __u64 len = n;
    barrier_var(len);
    if (len > TL_DNS_MAX)
        return;
    fill_hdr(&s->rec.h, TL_DNS, id, p->fd);
    s->rec.cgroup_id = bpf_get_current_cgroup_id();
    s->rec.len = len;
    s->rec.family = srv.family;
    s->rec.port = srv.port;
    __builtin_memcpy(s->rec.addr, srv.addr, sizeof(srv.addr));
    bpf_get_current_comm(s->rec.comm, sizeof(s->rec.comm));
    s->rec.truncated = total > len;
    __builtin_memset(s->rec.pad, 0, sizeof(s->rec.pad));
    s->rec.lfamily = p->local.family;
    s->rec.lport = p->local.port;
    __builtin_memcpy(s->rec.laddr, p->local.addr, sizeof(p->local.addr));
    if (total > len)
        lose(TL_LOSS_TRUNCATED_BYTES, total - len);
    if (bpf_ringbuf_output(&EVENTS, s, sizeof(struct tl_dns) + len, wakeup_flags())) {
        lose(TL_LOSS_RING_FULL_RECORDS, 1);
        lose(TL_LOSS_RING_FULL_BYTES, len);
    }
}

/* One datagram of a recvmmsg: struct mmsghdr i (its own iovecs, source and length). */
static long dns_mmsg_one(__u64 i, void *arg)
{
    __u32 zero = 0;
    struct dns_mmsg_ctx *c = bpf_map_lookup_elem(&DNS_MMSG, &zero);
    if (!c)
        return 1;
    struct mmsghdr m = {};
    if (bpf_probe_read_user(&m, sizeof(m), (void *)(c->p.buf + i * sizeof(struct mmsghdr))))
        return 1;
    struct dns_pending one = c->p;
    one.kind = BUF_IOV;
    one.buf = (__u64)m.msg_hdr.msg_iov;
    one.count = m.msg_hdr.msg_iovlen;
    one.name = (__u64)m.msg_hdr.msg_name;
    if (m.msg_len)
        dns_emit(c->id, &one, m.msg_len);
    return 0;
}

/* Exit of a receive: the DNS answer (or answers, for recvmmsg) is in user memory now. */
static __always_inline void dns_exit(int nr, long ret)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct dns_pending *pp = bpf_map_lookup_elem(&DNS_PENDING, &id);
    if (!pp)
        return;
    struct dns_pending p = *pp;
    bpf_map_delete_elem(&DNS_PENDING, &id);
    if (p.nr != nr || ret <= 0)
        return;
    if (p.kind != BUF_MMSG) {
        dns_emit(id, &p, (__u64)ret);
        return;
    }
    __u32 zero = 0;
    struct dns_mmsg_ctx *c = bpf_map_lookup_elem(&DNS_MMSG, &zero);
    if (!c)
        return;
    c->p = p;
    c->id = id;
    /* ret = datagrams received; more than DNS_MMSG_MAX in one call are not read */
    bpf_loop(ret < DNS_MMSG_MAX ? (__u32)ret : DNS_MMSG_MAX, dns_mmsg_one, 0, 0);
}

/* ---------------- OpenSSL (uprobes) ---------------- */

/* An SSL_read/SSL_write call in flight on a thread. */
struct ssl_call {
    __u64 ssl;
    __u64 buf;
    __u64 count_ptr; /* size_t * of the _ex variants, else 0 */
    __u32 dir;
    __u32 ex;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct ssl_call);
} SSL_CALLS SEC(".maps");

struct ssl_key {
    __u64 ssl;
    __u32 tgid;
    __u32 pad;
};

struct ssl_sock {
    __u64 sock;
    __s32 fd;
    __u32 pad;
};

/* SSL object -> its socket, learned from the socket syscall an SSL call makes on its thread. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct ssl_key);
    __type(value, struct ssl_sock);
} SSL_SOCKS SEC(".maps");

/* SSL object -> the fd given to SSL_set_fd (BIO-less callers use the syscall learning above). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct ssl_key);
    __type(value, __s32);
} SSL_FDS SEC(".maps");

SEC("uprobe")
int tl_ssl_set_fd(struct pt_regs *ctx)
{
    __u64 id = bpf_get_current_pid_tgid();
    if (ignored(id >> 32))
        return 0;
    struct ssl_key k = { .ssl = PT_REGS_PARM1(ctx), .tgid = id >> 32 };
    __s32 fd = (__s32)PT_REGS_PARM2(ctx);
    bpf_map_update_elem(&SSL_FDS, &k, &fd, BPF_ANY);
    return 0;
}

static __always_inline void learn_ssl_socket(__u64 id, __u64 sock, int fd)
{
    struct ssl_call *c = bpf_map_lookup_elem(&SSL_CALLS, &id);
    if (!c)
        return;
    struct ssl_key k = { .ssl = c->ssl, .tgid = id >> 32 };
    struct ssl_sock v = { .sock = sock, .fd = fd };
    bpf_map_update_elem(&SSL_SOCKS, &k, &v, BPF_ANY);
}

static __always_inline int data_enter(int fd, __u64 buf, __u64 iovcnt, __u32 kind, __u32 dir)
{
    __u64 id = bpf_get_current_pid_tgid();
    if (ignored(id >> 32))
        return 0;
    __u64 sock = sock_of_fd(id, fd);
    if (!sock)
        return 0;
    learn_ssl_socket(id, sock, fd);
    struct pending p = { .sock = sock, .buf = buf, .iovcnt = iovcnt, .fd = fd, .kind = kind, .dir = dir };
    if (bpf_map_update_elem(&PENDING, &id, &p, BPF_ANY))
        lose(TL_LOSS_PENDING_FULL, 1);
    return 0;
}

/* Entry of a receive: a TCP socket's data, or a UDP socket's possible DNS answer. `size` is
 * the plain buffer's size, `name` where the source address will be written (0: not asked). */
static __always_inline int recv_enter(int nr, int fd, __u64 buf, __u64 iovcnt, __u32 kind, __u64 size, __u64 name)
{
    __u64 id = bpf_get_current_pid_tgid();
    if (ignored(id >> 32))
        return 0;
    __u64 udp = 0;
    __u64 sock = classify_fd(id, fd, &udp);
    if (udp) {
        dns_enter(id, nr, fd, (struct sock *)udp, buf, kind == BUF_PLAIN ? size : iovcnt, kind, name);
        return 0;
    }
    if (!sock || kind == BUF_MMSG) /* recvmmsg on TCP is not captured */
        return 0;
    learn_ssl_socket(id, sock, fd);
    struct pending p = { .sock = sock, .buf = buf, .iovcnt = iovcnt, .fd = fd, .kind = kind, .dir = TL_INGRESS };
    if (bpf_map_update_elem(&PENDING, &id, &p, BPF_ANY))
        lose(TL_LOSS_PENDING_FULL, 1);
    return 0;
}

/* Returns 1 if a data syscall of a tracked TCP socket was pending. */
static __always_inline int data_exit(long ret)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct pending *pp = bpf_map_lookup_elem(&PENDING, &id);
    if (!pp)
        return 0;
    struct pending p = *pp;
    bpf_map_delete_elem(&PENDING, &id);
    if (ret > 0)
        emit_data(id, &p, (__u64)ret);
    return 1;
}

static __always_inline int recv_exit(int nr, long ret)
{
    if (!data_exit(ret))
        dns_exit(nr, ret);
    return 0;
}

static __always_inline int ssl_enter(struct pt_regs *ctx, __u32 dir, int ex)
{
    __u64 id = bpf_get_current_pid_tgid();
    if (ignored(id >> 32))
        return 0;
    struct ssl_call c = {
        .ssl = PT_REGS_PARM1(ctx),
        .buf = PT_REGS_PARM2(ctx),
        .count_ptr = ex ? PT_REGS_PARM4(ctx) : 0,
        .dir = dir,
        .ex = ex,
    };
    /* OpenSSL does not nest these calls; ANY also replaces an entry whose return was never seen. */
    bpf_map_update_elem(&SSL_CALLS, &id, &c, BPF_ANY);
    return 0;
}

SEC("uprobe")
int tl_ssl_write(struct pt_regs *ctx) { return ssl_enter(ctx, TL_EGRESS, 0); }
SEC("uprobe")
int tl_ssl_write_ex(struct pt_regs *ctx) { return ssl_enter(ctx, TL_EGRESS, 1); }
SEC("uprobe")
int tl_ssl_read(struct pt_regs *ctx) { return ssl_enter(ctx, TL_INGRESS, 0); }
SEC("uprobe")
int tl_ssl_read_ex(struct pt_regs *ctx) { return ssl_enter(ctx, TL_INGRESS, 1); }

/* Return of any of the four: the plaintext is in the caller's buffer now. */
SEC("uretprobe")
int tl_ssl_ret(struct pt_regs *ctx)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct ssl_call *cp = bpf_map_lookup_elem(&SSL_CALLS, &id);
    if (!cp)
        return 0;
    struct ssl_call c = *cp;
    bpf_map_delete_elem(&SSL_CALLS, &id);
    /* SSL_read/SSL_write return int (the _ex variants 1 or 0): the upper half of rax is garbage. */
    int ret = (int)PT_REGS_RC(ctx);
    __u64 n = 0;
    if (c.ex) {
        if (ret != 1 || !c.count_ptr || bpf_probe_read_user(&n, sizeof(n), (void *)c.count_ptr))
            return 0;
    } else {
        if (ret <= 0)
            return 0;
        n = (__u64)ret;
    }
    if (n == 0)
        return 0;
    struct ssl_key k = { .ssl = c.ssl, .tgid = id >> 32 };
    /* The fd given to SSL_set_fd, checked against the live descriptor table, is exact even when
     * this call made no syscall (data already buffered) or the SSL* address was reused. */
    __u64 sock = 0;
    int fd = -1;
    __s32 *set_fd = bpf_map_lookup_elem(&SSL_FDS, &k);
    if (set_fd) {
        fd = *set_fd;
        sock = sock_of_fd(id, fd);
    }
    if (!sock) {
        struct ssl_sock *ss = bpf_map_lookup_elem(&SSL_SOCKS, &k);
        if (!ss) {
            lose(TL_LOSS_TLS_NO_SOCKET, n);
            return 0;
        }
        sock = ss->sock;
        fd = ss->fd;
    }
    struct pending p = {
        .sock = sock,
        .buf = c.buf,
        .fd = fd,
        .kind = BUF_PLAIN,
        .dir = c.dir,
        .source = TL_SRC_OPENSSL,
    };
    emit_data(id, &p, n);
    return 0;
}

/* ---------------- Go crypto/tls (uprobes; no uretprobes: they break Go's stack) ----------------
 * Entry probes on crypto/tls.(*Conn).Write / Read and plain uprobes on every RET of each.
 * Register ABI (Go >= 1.17, amd64): receiver in rax, the []byte in rbx (ptr) / rcx (len);
 * results: n in rax. The goroutine's g pointer is in r14: a goroutine keeps its g from entry
 * to return even if it moves to another thread, and no other goroutine can hold that g
 * meanwhile, so (tgid, g) pairs an entry with its return. The socket's fd is read from the
 * Conn: Conn.conn (a net.Conn interface: itab, data) -> *net.TCPConn -> conn.fd (*netFD) ->
 * pfd (poll.FD) -> Sysfd, at offsets stable for go1.17 and later (userspace checks versions). */

#define GO_CONN_IFACE_DATA 8 /* tls.Conn.conn is the first field; the interface's data word */
#define GO_NETFD_SYSFD 16    /* poll.FD{fdmu fdMutex (16 bytes), Sysfd int} */

struct go_key {
    __u64 g;
    __u32 tgid;
    __u32 pad;
};

struct go_call {
    __u64 buf;
    __s32 fd;
    __u32 dir;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct go_key);
    __type(value, struct go_call);
} GO_CALLS SEC(".maps");

static __always_inline int go_fd_of_conn(__u64 conn)
{
    __u64 data = 0, netfd = 0;
    __s64 fd = -1;
    if (bpf_probe_read_user(&data, sizeof(data), (void *)(conn + GO_CONN_IFACE_DATA)) || !data)
        return -1;
    if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)data) || !netfd)
        return -1;
    if (bpf_probe_read_user(&fd, sizeof(fd), (void *)(netfd + GO_NETFD_SYSFD)))
        return -1;
    return fd < 0 || fd > 0x7fffffff ? -1 : (int)fd;
}

static __always_inline int go_enter(struct pt_regs *ctx, __u32 dir)
{
    __u64 id = bpf_get_current_pid_tgid();
    if (ignored(id >> 32))
        return 0;
    int fd = go_fd_of_conn(ctx->ax);
    if (fd < 0)
        return 0;
    struct go_key k = { .g = ctx->r14, .tgid = id >> 32 };
    struct go_call c = { .buf = ctx->bx, .fd = fd, .dir = dir };
    bpf_map_update_elem(&GO_CALLS, &k, &c, BPF_ANY);
    return 0;
}

static __always_inline int go_return(struct pt_regs *ctx, __u32 dir)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct go_key k = { .g = ctx->r14, .tgid = id >> 32 };
    struct go_call *cp = bpf_map_lookup_elem(&GO_CALLS, &k);
    if (!cp || cp->dir != dir)
        return 0;
    struct go_call c = *cp;
    bpf_map_delete_elem(&GO_CALLS, &k);
    __s64 n = (__s64)ctx->ax;
    if (n <= 0)
        return 0;
    __u64 sock = sock_of_fd(id, c.fd);
    if (!sock) {
        lose(TL_LOSS_TLS_NO_SOCKET, (__u64)n);
        return 0;
    }
    struct pending p = {
        .sock = sock,
        .buf = c.buf,
        .fd = c.fd,
        .kind = BUF_PLAIN,
        .dir = dir,
        .source = TL_SRC_GOTLS,
    };
    emit_data(id, &p, (__u64)n);
    return 0;
}

SEC("uprobe")
int tl_go_write(struct pt_regs *ctx) { return go_enter(ctx, TL_EGRESS); }
SEC("uprobe")
int tl_go_write_ret(struct pt_regs *ctx) { return go_return(ctx, TL_EGRESS); }
SEC("uprobe")
int tl_go_read(struct pt_regs *ctx) { return go_enter(ctx, TL_INGRESS); }
SEC("uprobe")
int tl_go_read_ret(struct pt_regs *ctx) { return go_return(ctx, TL_INGRESS); }

#define ARG(n) (ctx->args[n])

SEC("tracepoint/syscalls/sys_enter_write")
int tl_enter_write(struct trace_event_raw_sys_enter *ctx)
{
    return data_enter((int)ARG(0), ARG(1), 0, BUF_PLAIN, TL_EGRESS);
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int tl_enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
    return data_enter((int)ARG(0), ARG(1), 0, BUF_PLAIN, TL_EGRESS);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int tl_enter_writev(struct trace_event_raw_sys_enter *ctx)
{
    return data_enter((int)ARG(0), ARG(1), ARG(2), BUF_IOV, TL_EGRESS);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int tl_enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
    struct user_msghdr m = {};
    if (bpf_probe_read_user(&m, sizeof(m), (void *)ARG(1)))
        return 0;
    return data_enter((int)ARG(0), (__u64)m.msg_iov, m.msg_iovlen, BUF_IOV, TL_EGRESS);
}

/* The syscall number (the tracepoint's __syscall_nr is an int; the rest of `id` is padding). */
#define NR ((int)ctx->id)

SEC("tracepoint/syscalls/sys_enter_read")
int tl_enter_read(struct trace_event_raw_sys_enter *ctx)
{
    return recv_enter(NR, (int)ARG(0), ARG(1), 0, BUF_PLAIN, ARG(2), 0);
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int tl_enter_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
    if (ARG(3) & MSG_PEEK)
        return 0; /* peeked bytes are read again later */
    return recv_enter(NR, (int)ARG(0), ARG(1), 0, BUF_PLAIN, ARG(2), ARG(4));
}

SEC("tracepoint/syscalls/sys_enter_readv")
int tl_enter_readv(struct trace_event_raw_sys_enter *ctx)
{
    return recv_enter(NR, (int)ARG(0), ARG(1), ARG(2), BUF_IOV, 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int tl_enter_recvmsg(struct trace_event_raw_sys_enter *ctx)
{
    if (ARG(2) & MSG_PEEK)
        return 0;
    struct user_msghdr m = {};
    if (bpf_probe_read_user(&m, sizeof(m), (void *)ARG(1)))
        return 0;
    return recv_enter(NR, (int)ARG(0), (__u64)m.msg_iov, m.msg_iovlen, BUF_IOV, 0, (__u64)m.msg_name);
}

/* recvmmsg(fd, struct mmsghdr *, vlen, flags, timeout): only for DNS answers. */
SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int tl_enter_recvmmsg(struct trace_event_raw_sys_enter *ctx)
{
    if (ARG(3) & MSG_PEEK)
        return 0;
    return recv_enter(NR, (int)ARG(0), ARG(1), ARG(2), BUF_MMSG, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_write")
int tl_exit_write(struct trace_event_raw_sys_exit *ctx) { data_exit(ctx->ret); return 0; }
SEC("tracepoint/syscalls/sys_exit_sendto")
int tl_exit_sendto(struct trace_event_raw_sys_exit *ctx) { data_exit(ctx->ret); return 0; }
SEC("tracepoint/syscalls/sys_exit_writev")
int tl_exit_writev(struct trace_event_raw_sys_exit *ctx) { data_exit(ctx->ret); return 0; }
SEC("tracepoint/syscalls/sys_exit_sendmsg")
int tl_exit_sendmsg(struct trace_event_raw_sys_exit *ctx) { data_exit(ctx->ret); return 0; }
SEC("tracepoint/syscalls/sys_exit_read")
int tl_exit_read(struct trace_event_raw_sys_exit *ctx) { return recv_exit(NR, ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_recvfrom")
int tl_exit_recvfrom(struct trace_event_raw_sys_exit *ctx) { return recv_exit(NR, ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_readv")
int tl_exit_readv(struct trace_event_raw_sys_exit *ctx) { return recv_exit(NR, ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_recvmsg")
int tl_exit_recvmsg(struct trace_event_raw_sys_exit *ctx) { return recv_exit(NR, ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int tl_exit_recvmmsg(struct trace_event_raw_sys_exit *ctx) { return recv_exit(NR, ctx->ret); }

/* ---------------- connection lifecycle ---------------- */

SEC("tracepoint/syscalls/sys_enter_connect")
int tl_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
    __u64 id = bpf_get_current_pid_tgid();
    if (ignored(id >> 32))
        return 0;
    __s32 fd = (int)ARG(0);
    bpf_map_update_elem(&CONNECTS, &id, &fd, BPF_ANY);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int tl_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
    __u64 id = bpf_get_current_pid_tgid();
    __s32 *fdp = bpf_map_lookup_elem(&CONNECTS, &id);
    if (!fdp)
        return 0;
    int fd = *fdp;
    bpf_map_delete_elem(&CONNECTS, &id);
    if (ctx->ret != 0 && ctx->ret != -EINPROGRESS)
        return 0;
    struct file *f = fd_file(fd);
    struct sock *sk = tcp_sock_of(f);
    if (sk)
        track(id, fd, f, sk, TL_ROLE_CLIENT, 1);
    return 0;
}

static __always_inline int accept_exit(long ret)
{
    __u64 id = bpf_get_current_pid_tgid();
    if (ignored(id >> 32) || ret < 0)
        return 0;
    int fd = (int)ret;
    struct file *f = fd_file(fd);
    struct sock *sk = tcp_sock_of(f);
    if (sk)
        track(id, fd, f, sk, TL_ROLE_SERVER, 1);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tl_exit_accept(struct trace_event_raw_sys_exit *ctx) { return accept_exit(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_accept4")
int tl_exit_accept4(struct trace_event_raw_sys_exit *ctx) { return accept_exit(ctx->ret); }

static __always_inline void emit_close(__u64 id, int fd, __u64 sock)
{
    struct sock_state *st = bpf_map_lookup_elem(&SOCKS, &sock);
    if (!st)
        return;
    if (st->filtered) {
        bpf_map_delete_elem(&SOCKS, &sock);
        return;
    }
    struct tl_close *c = bpf_ringbuf_reserve(&EVENTS, sizeof(*c), 0);
    if (c) {
        fill_hdr(&c->h, TL_CLOSE, id, fd);
        c->sock = sock;
        c->bytes_sent = st->pos[TL_EGRESS];
        c->bytes_received = st->pos[TL_INGRESS];
        bpf_ringbuf_submit(c, wakeup_flags());
    } else {
        lose(TL_LOSS_RING_FULL_RECORDS, 1);
    }
    bpf_map_delete_elem(&SOCKS, &sock);
}

/* Number of references to a file (the closing descriptor's included). */
static __always_inline __u64 file_refs(struct file *f)
{
    if (bpf_core_field_exists(f->f_ref)) {
        /* file_ref_t stores count - 1 */
        __s64 c = BPF_CORE_READ(f, f_ref.refcnt.counter);
        return c < 0 ? 0 : (__u64)c + 1;
    }
    struct file___old *o = (void *)f;
    return BPF_CORE_READ(o, f_count.counter);
}

SEC("tracepoint/syscalls/sys_enter_close")
int tl_enter_close(struct trace_event_raw_sys_enter *ctx)
{
    __u64 id = bpf_get_current_pid_tgid();
    int fd = (int)ARG(0);
    __u64 key = (id & 0xffffffff00000000ULL) | (__u32)fd;
    struct fd_entry *fe = bpf_map_lookup_elem(&FDS, &key);
    if (!fe)
        return 0;
    __u64 sock = fe->sock;
    __u64 file = fe->file;
    bpf_map_delete_elem(&FDS, &key);
    if (!sock || ignored(id >> 32))
        return 0;
    struct file *f = fd_file(fd);
    /* Another holder (a forked child, a dup) keeps the socket open: its close comes later. */
    if (!f || (__u64)f != file || file_refs(f) > 1)
        return 0;
    emit_close(id, fd, sock);
    return 0;
}

/* dup2/dup3 replace the target descriptor without a close(): forget what it was. */
static __always_inline int forget_fd(int fd)
{
    __u64 id = bpf_get_current_pid_tgid();
    __u64 key = (id & 0xffffffff00000000ULL) | (__u32)fd;
    bpf_map_delete_elem(&FDS, &key);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_dup2")
int tl_enter_dup2(struct trace_event_raw_sys_enter *ctx) { return forget_fd((int)ARG(1)); }
SEC("tracepoint/syscalls/sys_enter_dup3")
int tl_enter_dup3(struct trace_event_raw_sys_enter *ctx) { return forget_fd((int)ARG(1)); }

/* The socket reached TCP_CLOSE (after both FINs, a reset, or a close by the last holder,
 * including process exit): its connection is over. */
SEC("tracepoint/sock/inet_sock_set_state")
int tl_sock_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
    if (ctx->newstate != TCP_CLOSE_STATE || ctx->protocol != IPPROTO_TCP_NUM)
        return 0;
    __u64 sock = (__u64)ctx->skaddr;
    emit_close(bpf_get_current_pid_tgid(), -1, sock);
    return 0;
}

/* ---------------- processes ---------------- */

SEC("tp_btf/sched_process_exec")
int BPF_PROG(tl_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
    __u64 id = bpf_get_current_pid_tgid();
    __u32 tgid = id >> 32;
    if (self_tgid && tgid == self_tgid)
        return 0;
    /* A new image: the old one's filter no longer applies; an exact-path filter does. */
    bpf_map_delete_elem(&PROC_SKIP, &tgid);
    __u32 zero = 0;
    struct exe_key *k = bpf_map_lookup_elem(&EXE_SCRATCH, &zero);
    if (k) {
        __builtin_memset(k->path, 0, sizeof(k->path));
        bpf_probe_read_kernel_str(k->path, sizeof(k->path), bprm->filename);
        __u32 *flags = bpf_map_lookup_elem(&EXE_SKIP, k);
        if (flags) {
            __u32 v = *flags;
            bpf_map_update_elem(&PROC_SKIP, &tgid, &v, BPF_ANY);
        }
    }
    /* The record is sent even for a filtered program: userspace names the process by it. */
    struct tl_exec *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
    if (!e) {
        lose(TL_LOSS_RING_FULL_RECORDS, 1);
        return 0;
    }
    fill_hdr(&e->h, TL_EXEC, id, -1);
    e->ppid = p->real_parent->tgid;
    __u64 ug = bpf_get_current_uid_gid();
    e->uid = (__u32)ug;
    e->gid = ug >> 32;
    e->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), bprm->filename);
    e->filename_len = n > 0 ? n - 1 : 0;
    bpf_ringbuf_submit(e, wakeup_flags());
    return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tl_fork, struct task_struct *parent, struct task_struct *child)
{
    if (child->pid != child->tgid)
        return 0; /* a new thread, not a new process */
    __u32 ptgid = parent->tgid, ctgid = child->tgid;
    __u32 *flags = bpf_map_lookup_elem(&PROC_SKIP, &ptgid);
    if (flags) {
        __u32 v = *flags; /* the child runs the same program until it calls exec */
        bpf_map_update_elem(&PROC_SKIP, &ctgid, &v, BPF_ANY);
    }
    __u64 id = bpf_get_current_pid_tgid();
    struct tl_fork *f = bpf_ringbuf_reserve(&EVENTS, sizeof(*f), 0);
    if (!f) {
        lose(TL_LOSS_RING_FULL_RECORDS, 1);
        return 0;
    }
    fill_hdr(&f->h, TL_FORK, id, -1);
    f->parent_pid = parent->tgid;
    f->child_pid = child->tgid;
    bpf_ringbuf_submit(f, wakeup_flags());
    return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tl_exit, struct task_struct *p, bool group_dead)
{
    if (!group_dead)
        return 0; /* other threads of the process live on */
    __u64 id = bpf_get_current_pid_tgid();
    __u32 tgid = id >> 32;
    bpf_map_delete_elem(&PROC_SKIP, &tgid);
    struct tl_exit *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
    if (!e) {
        lose(TL_LOSS_RING_FULL_RECORDS, 1);
        return 0;
    }
    fill_hdr(&e->h, TL_EXIT, id, -1);
    bpf_ringbuf_submit(e, wakeup_flags());
    return 0;
}
