//! Ring-buffer records: `#[repr(C)]` mirrors of `src/bpf/record.h` and their decoding into
//! typed [`Record`]s. Decoding never panics: short or unknown records are errors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Direction of bytes relative to the traced process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Written by the process.
    Egress,
    /// Read by the process.
    Ingress,
}

/// Which end of the connection the process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It called connect().
    Client,
    /// It accepted the connection.
    Server,
    /// The socket was first seen in a data call (opened before tapline started, or inherited).
    Unknown,
}

/// Where the bytes of a data record come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSource {
    /// The socket syscalls (plaintext, or TLS ciphertext).
    Syscall,
    /// OpenSSL's plaintext (uprobes on SSL_read/SSL_write).
    OpenSsl,
    /// Go crypto/tls plaintext (uprobes on (*Conn).Read/Write).
    GoTls,
}

impl DataSource {
    /// Whether the bytes are TLS plaintext from a library probe.
    pub fn is_tls(self) -> bool {
        self != DataSource::Syscall
    }

    /// The probe family name reported in `meta.tlsProbeTypesDetected`.
    pub fn probe_name(self) -> Option<&'static str> {
        match self {
            DataSource::Syscall => None,
            DataSource::OpenSsl => Some("openssl"),
            DataSource::GoTls => Some("gotls"),
        }
    }
}

/// A decoded ring-buffer record. Byte slices borrow the ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// A process called exec.
    Exec {
        /// Kernel time (CLOCK_MONOTONIC ns).
        ts_ns: u64,
        /// Process id (tgid).
        pid: u32,
        /// Parent process id.
        ppid: u32,
        /// User id.
        uid: u32,
        /// Group id.
        gid: u32,
        /// cgroup v2 id.
        cgroup_id: u64,
        /// The path given to exec (not resolved).
        filename: &'a [u8],
        /// Command name (NUL-padded).
        comm: [u8; 16],
    },
    /// A new process (not a thread) was forked.
    Fork {
        /// Kernel time.
        ts_ns: u64,
        /// Parent tgid.
        parent_pid: u32,
        /// Child tgid.
        child_pid: u32,
    },
    /// A process (its last thread) exited.
    Exit {
        /// Kernel time.
        ts_ns: u64,
        /// tgid.
        pid: u32,
    },
    /// A TCP socket was connected, accepted, or first seen.
    Open {
        /// Kernel time.
        ts_ns: u64,
        /// tgid.
        pid: u32,
        /// Thread id.
        tid: u32,
        /// Descriptor.
        fd: i32,
        /// Socket id (the kernel `struct sock` address; unique while the socket lives).
        sock: u64,
        /// Client, server or unknown.
        role: Role,
        /// Local address.
        local: SocketAddr,
        /// Peer address.
        remote: SocketAddr,
        /// User id.
        uid: u32,
        /// Group id.
        gid: u32,
        /// cgroup v2 id.
        cgroup_id: u64,
        /// Command name.
        comm: [u8; 16],
    },
    /// Bytes read or written on a tracked socket.
    Data {
        /// Kernel time.
        ts_ns: u64,
        /// tgid.
        pid: u32,
        /// Thread id.
        tid: u32,
        /// Descriptor.
        fd: i32,
        /// Socket id.
        sock: u64,
        /// Egress or ingress.
        dir: Direction,
        /// Syscall or TLS plaintext.
        source: DataSource,
        /// Offset of `bytes[0]` in this direction of this socket.
        pos: u64,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// A tracked socket closed.
    Close {
        /// Kernel time.
        ts_ns: u64,
        /// tgid (0 or unrelated when the close came from the network stack).
        pid: u32,
        /// Descriptor (-1 when not from close()).
        fd: i32,
        /// Socket id.
        sock: u64,
        /// Final egress position.
        bytes_sent: u64,
        /// Final ingress position.
        bytes_received: u64,
    },
    /// A datagram from port 53 (a DNS answer) received on a UDP socket. UDP sockets are not
    /// connections: no Open or Close frames it. DNS over TCP arrives as [`Record::Data`] of
    /// a socket whose remote port is 53.
    Dns {
        /// Kernel time.
        ts_ns: u64,
        /// tgid.
        pid: u32,
        /// Thread id.
        tid: u32,
        /// Descriptor.
        fd: i32,
        /// cgroup v2 id of the receiving process.
        cgroup_id: u64,
        /// Command name.
        comm: [u8; 16],
        /// The server the datagram came from (port 53).
        server: SocketAddr,
        /// The receiving socket's own address (IP unspecified when it is not bound to one).
        local: SocketAddr,
        /// The DNS message as received (at most [`DNS_MAX`] bytes).
        bytes: &'a [u8],
        /// The datagram was longer than `bytes`.
        truncated: bool,
    },
}

/// Largest DNS message a [`Record::Dns`] carries (`TL_DNS_MAX`).
pub const DNS_MAX: usize = 4096;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its fixed part.
    #[error("record of kind {kind} is {len} bytes, shorter than {need}")]
    Short {
        /// The kind.
        kind: u32,
        /// Its length.
        len: usize,
        /// Needed.
        need: usize,
    },
    /// Unknown kind.
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    /// A field holds a value this version does not know.
    #[error("record field {field} has unknown value {value}")]
    Field {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u32,
    },
}

impl Record<'_> {
    /// The kernel timestamp of any record.
    pub fn ts_ns(&self) -> u64 {
        match self {
            Record::Exec { ts_ns, .. }
            | Record::Fork { ts_ns, .. }
            | Record::Exit { ts_ns, .. }
            | Record::Open { ts_ns, .. }
            | Record::Data { ts_ns, .. }
            | Record::Close { ts_ns, .. }
            | Record::Dns { ts_ns, .. } => *ts_ns,
        }
    }
}

// Layout constants (see record.h); checked against the C sizes in tests.
pub(crate) const HDR: usize = 24;
pub(crate) const EXEC_LEN: usize = HDR + 24 + 16 + 256;
pub(crate) const FORK_LEN: usize = HDR + 8;
pub(crate) const EXIT_LEN: usize = HDR;
pub(crate) const OPEN_LEN: usize = HDR + 8 + 4 + 2 + 2 + 2 + 2 + 4 + 4 + 4 + 8 + 16 + 16 + 16;
pub(crate) const DATA_HDR_LEN: usize = HDR + 8 + 8 + 4 + 4;
pub(crate) const CLOSE_LEN: usize = HDR + 24;
pub(crate) const DNS_HDR_LEN: usize = HDR + 8 + 4 + 2 + 2 + 16 + 16 + 8 + 16;

const KIND_EXEC: u32 = 1;
const KIND_FORK: u32 = 2;
const KIND_EXIT: u32 = 3;
const KIND_OPEN: u32 = 4;
const KIND_DATA: u32 = 5;
const KIND_CLOSE: u32 = 6;
const KIND_DNS: u32 = 7;

/// A little-endian reader over a record with checked offsets.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(s) = self.0.get(off..off + N) {
            out.copy_from_slice(s);
        }
        out
    }
    fn u16(&self, off: usize) -> u16 {
        u16::from_ne_bytes(self.bytes(off))
    }
    fn u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.bytes(off))
    }
    fn i32(&self, off: usize) -> i32 {
        i32::from_ne_bytes(self.bytes(off))
    }
    fn u64(&self, off: usize) -> u64 {
        u64::from_ne_bytes(self.bytes(off))
    }
    fn slice(&self, off: usize, len: usize) -> &'a [u8] {
        self.0.get(off..off.saturating_add(len)).unwrap_or(&[])
    }
}

fn addr(family: u16, raw: [u8; 16], port: u16) -> SocketAddr {
    let ip = if family == libc::AF_INET6 as u16 {
        IpAddr::V6(Ipv6Addr::from(raw))
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    };
    SocketAddr::new(ip, port)
}

impl<'a> Record<'a> {
    /// Decodes one raw ring-buffer record.
    pub fn decode(raw: &'a [u8]) -> Result<Record<'a>, DecodeError> {
        let f = Fields(raw);
        if raw.len() < HDR {
            return Err(DecodeError::Short { kind: 0, len: raw.len(), need: HDR });
        }
        let kind = f.u32(0);
        let need = match kind {
            KIND_EXEC => EXEC_LEN,
            KIND_FORK => FORK_LEN,
            KIND_EXIT => EXIT_LEN,
            KIND_OPEN => OPEN_LEN,
            KIND_DATA => DATA_HDR_LEN,
            KIND_CLOSE => CLOSE_LEN,
            KIND_DNS => DNS_HDR_LEN,
            k => return Err(DecodeError::UnknownKind(k)),
        };
        if raw.len() < need {
            return Err(DecodeError::Short { kind, len: raw.len(), need });
        }
        let (pid, tid, fd, ts_ns) = (f.u32(4), f.u32(8), f.i32(12), f.u64(16));
        Ok(match kind {
            KIND_EXEC => {
                let len = (f.u32(HDR + 12) as usize).min(256);
                Record::Exec {
                    ts_ns,
                    pid,
                    ppid: f.u32(HDR),
                    uid: f.u32(HDR + 4),
                    gid: f.u32(HDR + 8),
                    cgroup_id: f.u64(HDR + 16),
                    comm: f.bytes(HDR + 24),
                    filename: f.slice(HDR + 40, len),
                }
            }
            KIND_FORK => Record::Fork { ts_ns, parent_pid: f.u32(HDR), child_pid: f.u32(HDR + 4) },
            KIND_EXIT => Record::Exit { ts_ns, pid },
            KIND_OPEN => {
                let family = f.u16(HDR + 12);
                let role = match f.u32(HDR + 8) {
                    1 => Role::Client,
                    2 => Role::Server,
                    _ => Role::Unknown,
                };
                Record::Open {
                    ts_ns,
                    pid,
                    tid,
                    fd,
                    sock: f.u64(HDR),
                    role,
                    local: addr(family, f.bytes(HDR + 40), f.u16(HDR + 14)),
                    remote: addr(family, f.bytes(HDR + 56), f.u16(HDR + 16)),
                    uid: f.u32(HDR + 20),
                    gid: f.u32(HDR + 24),
                    cgroup_id: f.u64(HDR + 32),
                    comm: f.bytes(HDR + 72),
                }
            }
            KIND_DATA => {
                let len = f.u32(HDR + 16) as usize;
                let bytes = raw.get(DATA_HDR_LEN..DATA_HDR_LEN.saturating_add(len)).ok_or(DecodeError::Short {
                    kind,
                    len: raw.len(),
                    need: DATA_HDR_LEN.saturating_add(len),
                })?;
                Record::Data {
                    ts_ns,
                    pid,
                    tid,
                    fd,
                    sock: f.u64(HDR),
                    pos: f.u64(HDR + 8),
                    dir: if raw[HDR + 20] == 0 { Direction::Egress } else { Direction::Ingress },
                    source: match raw[HDR + 21] {
                        0 => DataSource::Syscall,
                        1 => DataSource::OpenSsl,
                        2 => DataSource::GoTls,
                        other => return Err(DecodeError::Field { field: "source", value: other.into() }),
                    },
                    bytes,
                }
            }
            KIND_DNS => {
                let len = (f.u32(HDR + 8) as usize).min(DNS_MAX);
                let bytes = raw.get(DNS_HDR_LEN..DNS_HDR_LEN + len).ok_or(DecodeError::Short {
                    kind,
                    len: raw.len(),
                    need: DNS_HDR_LEN + len,
                })?;
                Record::Dns {
                    ts_ns,
                    pid,
                    tid,
                    fd,
                    cgroup_id: f.u64(HDR),
                    server: addr(f.u16(HDR + 12), f.bytes(HDR + 16), f.u16(HDR + 14)),
                    comm: f.bytes(HDR + 32),
                    truncated: raw[HDR + 48] != 0,
                    local: addr(f.u16(HDR + 52), f.bytes(HDR + 56), f.u16(HDR + 54)),
                    bytes,
                }
            }
            _ => Record::Close {
                ts_ns,
                pid,
                fd,
                sock: f.u64(HDR),
                bytes_sent: f.u64(HDR + 8),
                bytes_received: f.u64(HDR + 16),
            },
        })
    }
}

/// Writes the kernel's layout of records (the inverse of [`Record::decode`]), for replaying
/// recorded or generated traffic through the pipeline without the kernel (tests, benchmarks).
mod encode {
    use super::*;

    fn put(v: &mut [u8], off: usize, b: &[u8]) {
        v[off..off + b.len()].copy_from_slice(b);
    }

    /// (family, address bytes) of an address as `record.h` stores it.
    fn raw_addr(a: &SocketAddr) -> (u16, [u8; 16]) {
        let mut raw = [0u8; 16];
        match a.ip() {
            IpAddr::V4(ip) => {
                raw[..4].copy_from_slice(&ip.octets());
                (libc::AF_INET as u16, raw)
            }
            IpAddr::V6(ip) => (libc::AF_INET6 as u16, ip.octets()),
        }
    }

    fn header(len: usize, kind: u32, pid: u32, tid: u32, fd: i32, ts_ns: u64) -> Vec<u8> {
        let mut v = vec![0u8; len];
        put(&mut v, 0, &kind.to_ne_bytes());
        put(&mut v, 4, &pid.to_ne_bytes());
        put(&mut v, 8, &tid.to_ne_bytes());
        put(&mut v, 12, &fd.to_ne_bytes());
        put(&mut v, 16, &ts_ns.to_ne_bytes());
        v
    }

    impl Record<'_> {
        /// The record's bytes as the kernel writes them to the ring buffer. Fields the record
        /// does not carry are zero; an Exec filename is cut at 256 bytes, a DNS message at
        /// [`DNS_MAX`], and an Open record stores one address family (the local address's).
        pub fn encode(&self) -> Vec<u8> {
            match self {
                Record::Exec { ts_ns, pid, ppid, uid, gid, cgroup_id, filename, comm } => {
                    let name = &filename[..filename.len().min(256)];
                    let mut v = header(EXEC_LEN, KIND_EXEC, *pid, 0, 0, *ts_ns);
                    put(&mut v, HDR, &ppid.to_ne_bytes());
                    put(&mut v, HDR + 4, &uid.to_ne_bytes());
                    put(&mut v, HDR + 8, &gid.to_ne_bytes());
                    put(&mut v, HDR + 12, &(name.len() as u32).to_ne_bytes());
                    put(&mut v, HDR + 16, &cgroup_id.to_ne_bytes());
                    put(&mut v, HDR + 24, comm);
                    put(&mut v, HDR + 40, name);
                    v
                }
                Record::Fork { ts_ns, parent_pid, child_pid } => {
                    let mut v = header(FORK_LEN, KIND_FORK, *parent_pid, 0, 0, *ts_ns);
                    put(&mut v, HDR, &parent_pid.to_ne_bytes());
                    put(&mut v, HDR + 4, &child_pid.to_ne_bytes());
                    v
                }
                Record::Exit { ts_ns, pid } => header(EXIT_LEN, KIND_EXIT, *pid, 0, 0, *ts_ns),
                Record::Open { ts_ns, pid, tid, fd, sock, role, local, remote, uid, gid, cgroup_id, comm } => {
                    let mut v = header(OPEN_LEN, KIND_OPEN, *pid, *tid, *fd, *ts_ns);
                    let (family, l) = raw_addr(local);
                    let (_, r) = raw_addr(remote);
                    let role: u32 = match role {
                        Role::Client => 1,
                        Role::Server => 2,
                        Role::Unknown => 0,
                    };
                    put(&mut v, HDR, &sock.to_ne_bytes());
                    put(&mut v, HDR + 8, &role.to_ne_bytes());
                    put(&mut v, HDR + 12, &family.to_ne_bytes());
                    put(&mut v, HDR + 14, &local.port().to_ne_bytes());
                    put(&mut v, HDR + 16, &remote.port().to_ne_bytes());
                    put(&mut v, HDR + 20, &uid.to_ne_bytes());
                    put(&mut v, HDR + 24, &gid.to_ne_bytes());
                    put(&mut v, HDR + 32, &cgroup_id.to_ne_bytes());
                    put(&mut v, HDR + 40, &l);
                    put(&mut v, HDR + 56, &r);
                    put(&mut v, HDR + 72, comm);
                    v
                }
                Record::Data { ts_ns, pid, tid, fd, sock, dir, source, pos, bytes } => {
                    let mut v = header(DATA_HDR_LEN, KIND_DATA, *pid, *tid, *fd, *ts_ns);
                    put(&mut v, HDR, &sock.to_ne_bytes());
                    put(&mut v, HDR + 8, &pos.to_ne_bytes());
                    put(&mut v, HDR + 16, &(bytes.len() as u32).to_ne_bytes());
                    v[HDR + 20] = u8::from(*dir == Direction::Ingress);
                    v[HDR + 21] = match source {
                        DataSource::Syscall => 0,
                        DataSource::OpenSsl => 1,
                        DataSource::GoTls => 2,
                    };
                    v.extend_from_slice(bytes);
                    v
                }
                Record::Close { ts_ns, pid, fd, sock, bytes_sent, bytes_received } => {
                    let mut v = header(CLOSE_LEN, KIND_CLOSE, *pid, 0, *fd, *ts_ns);
                    put(&mut v, HDR, &sock.to_ne_bytes());
                    put(&mut v, HDR + 8, &bytes_sent.to_ne_bytes());
                    put(&mut v, HDR + 16, &bytes_received.to_ne_bytes());
                    v
                }
                Record::Dns { ts_ns, pid, tid, fd, cgroup_id, comm, server, local, bytes, truncated } => {
                    let msg = &bytes[..bytes.len().min(DNS_MAX)];
                    let mut v = header(DNS_HDR_LEN, KIND_DNS, *pid, *tid, *fd, *ts_ns);
                    let (family, a) = raw_addr(server);
                    put(&mut v, HDR, &cgroup_id.to_ne_bytes());
                    put(&mut v, HDR + 8, &(msg.len() as u32).to_ne_bytes());
                    put(&mut v, HDR + 12, &family.to_ne_bytes());
                    put(&mut v, HDR + 14, &server.port().to_ne_bytes());
                    put(&mut v, HDR + 16, &a);
                    put(&mut v, HDR + 32, comm);
                    v[HDR + 48] = u8::from(*truncated);
                    let (lfamily, l) = raw_addr(local);
                    put(&mut v, HDR + 52, &lfamily.to_ne_bytes());
                    put(&mut v, HDR + 54, &local.port().to_ne_bytes());
                    put(&mut v, HDR + 56, &l);
                    v.extend_from_slice(msg);
                    v
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hdr(kind: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&42u32.to_ne_bytes());
        v.extend_from_slice(&43u32.to_ne_bytes());
        v.extend_from_slice(&7i32.to_ne_bytes());
        v.extend_from_slice(&1_000u64.to_ne_bytes());
        v
    }

    #[test]
    fn data_record_decodes_and_bounds_its_payload() {
        let mut v = hdr(KIND_DATA);
        v.extend_from_slice(&0xdeadu64.to_ne_bytes());
        v.extend_from_slice(&100u64.to_ne_bytes());
        v.extend_from_slice(&3u32.to_ne_bytes());
        v.extend_from_slice(&[1, 0, 0, 0]);
        v.extend_from_slice(b"abc");
        match Record::decode(&v) {
            Ok(Record::Data {
                pid: 42,
                tid: 43,
                fd: 7,
                sock: 0xdead,
                pos: 100,
                dir: Direction::Ingress,
                bytes,
                ..
            }) => {
                assert_eq!(bytes, b"abc")
            }
            other => panic!("{other:?}"),
        }
        v.pop();
        assert!(matches!(Record::decode(&v), Err(DecodeError::Short { .. })), "payload shorter than len");
    }

    #[test]
    fn open_record_addresses() {
        let mut v = hdr(KIND_OPEN);
        v.extend_from_slice(&1u64.to_ne_bytes()); // sock
        v.extend_from_slice(&1u32.to_ne_bytes()); // role
        v.extend_from_slice(&2u16.to_ne_bytes()); // AF_INET
        v.extend_from_slice(&5000u16.to_ne_bytes());
        v.extend_from_slice(&80u16.to_ne_bytes());
        v.extend_from_slice(&[0; 2]);
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(&9u64.to_ne_bytes());
        let mut l = [0u8; 16];
        l[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut r = [0u8; 16];
        r[..4].copy_from_slice(&[198, 51, 100, 2]);
        v.extend_from_slice(&l);
        v.extend_from_slice(&r);
        v.extend_from_slice(b"curl\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(v.len(), OPEN_LEN);
        match Record::decode(&v) {
            Ok(Record::Open { role: Role::Client, local, remote, cgroup_id: 9, comm, .. }) => {
                assert_eq!(local.to_string(), "127.0.0.1:5000");
                assert_eq!(remote.to_string(), "198.51.100.2:80");
                assert_eq!(&comm[..4], b"curl");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dns_record_decodes_v4_and_v6_servers() {
        let answer = b"\x12\x34\x81\x80answer";
        let mut v = hdr(KIND_DNS);
        v.extend_from_slice(&77u64.to_ne_bytes()); // cgroup
        v.extend_from_slice(&(answer.len() as u32).to_ne_bytes());
        v.extend_from_slice(&2u16.to_ne_bytes()); // AF_INET
        v.extend_from_slice(&53u16.to_ne_bytes());
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[127, 0, 0, 53]);
        v.extend_from_slice(&a);
        v.extend_from_slice(b"resolver\0\0\0\0\0\0\0\0");
        v.extend_from_slice(&[1, 0, 0, 0]); // truncated + pad
        v.extend_from_slice(&2u16.to_ne_bytes()); // local: AF_INET
        v.extend_from_slice(&40000u16.to_ne_bytes());
        let mut l = [0u8; 16];
        l[..4].copy_from_slice(&[127, 0, 0, 1]);
        v.extend_from_slice(&l);
        assert_eq!(v.len(), DNS_HDR_LEN);
        assert_eq!(DNS_HDR_LEN, 96, "sizeof(struct tl_dns)");
        v.extend_from_slice(answer);
        match Record::decode(&v) {
            Ok(Record::Dns {
                pid: 42,
                tid: 43,
                fd: 7,
                cgroup_id: 77,
                server,
                local,
                bytes,
                truncated: true,
                comm,
                ts_ns,
            }) => {
                assert_eq!(server.to_string(), "127.0.0.53:53");
                assert_eq!(local.to_string(), "127.0.0.1:40000");
                assert_eq!(bytes, answer);
                assert_eq!(&comm[..8], b"resolver");
                assert_eq!(ts_ns, 1_000);
            }
            other => panic!("{other:?}"),
        }
        // IPv6 server, not truncated
        let mut w = v.clone();
        w[HDR + 12..HDR + 14].copy_from_slice(&10u16.to_ne_bytes());
        w[HDR + 16..HDR + 32].copy_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        w[HDR + 48] = 0;
        match Record::decode(&w) {
            Ok(Record::Dns { server, truncated: false, .. }) => assert_eq!(server.to_string(), "[::1]:53"),
            other => panic!("{other:?}"),
        }
        v.pop();
        assert!(matches!(Record::decode(&v), Err(DecodeError::Short { .. })), "payload shorter than len");
        assert!(matches!(Record::decode(&v[..DNS_HDR_LEN - 1]), Err(DecodeError::Short { .. })));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Record::decode(&[]).is_err());
        assert!(matches!(Record::decode(&hdr(99)), Err(DecodeError::UnknownKind(99))));
        assert!(matches!(Record::decode(&hdr(KIND_OPEN)), Err(DecodeError::Short { .. })));
    }

    /// Any record [`Record::encode`] can represent, built over `bytes` (the payload or filename).
    fn record(kind: u32, n: [u64; 6], v6: bool, a: [u8; 16], b: [u8; 16], comm: [u8; 16], bytes: &[u8]) -> Record<'_> {
        let ip = |raw: [u8; 16]| {
            if v6 { IpAddr::V6(Ipv6Addr::from(raw)) } else { IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])) }
        };
        let (local, remote) = (SocketAddr::new(ip(a), n[0] as u16), SocketAddr::new(ip(b), n[1] as u16));
        let (ts_ns, pid, tid, fd, sock) = (n[2], n[3] as u32, (n[3] >> 32) as u32, n[4] as i32, n[5]);
        match kind {
            KIND_EXEC => Record::Exec {
                ts_ns,
                pid,
                ppid: tid,
                uid: n[0] as u32,
                gid: n[1] as u32,
                cgroup_id: sock,
                filename: &bytes[..bytes.len().min(256)],
                comm,
            },
            KIND_FORK => Record::Fork { ts_ns, parent_pid: pid, child_pid: tid },
            KIND_EXIT => Record::Exit { ts_ns, pid },
            KIND_OPEN => Record::Open {
                ts_ns,
                pid,
                tid,
                fd,
                sock,
                role: [Role::Unknown, Role::Client, Role::Server][(n[4] >> 40) as usize % 3],
                local,
                remote,
                uid: n[0] as u32,
                gid: n[1] as u32,
                cgroup_id: n[2] ^ n[5],
                comm,
            },
            KIND_DATA => Record::Data {
                ts_ns,
                pid,
                tid,
                fd,
                sock,
                dir: if n[0] & 1 == 0 { Direction::Egress } else { Direction::Ingress },
                source: [DataSource::Syscall, DataSource::OpenSsl, DataSource::GoTls][(n[1] % 3) as usize],
                pos: n[1],
                bytes,
            },
            KIND_CLOSE => Record::Close { ts_ns, pid, fd, sock, bytes_sent: n[0], bytes_received: n[1] },
            _ => Record::Dns {
                ts_ns,
                pid,
                tid,
                fd,
                cgroup_id: sock,
                comm,
                server: local,
                local: remote,
                bytes: &bytes[..bytes.len().min(DNS_MAX)],
                truncated: n[1] & 1 == 1,
            },
        }
    }

    proptest! {
        #[test]
        fn fuzz_every_record_round_trips_and_survives_mutation(
            kind in 1u32..=7,
            n in any::<[u64; 6]>(),
            v6 in any::<bool>(),
            a in any::<[u8; 16]>(),
            b in any::<[u8; 16]>(),
            comm in any::<[u8; 16]>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), 1u8..), 0..6),
            cut in any::<proptest::sample::Index>(),
        ) {
            let r = record(kind, n, v6, a, b, comm, &bytes);
            let raw = r.encode();
            prop_assert_eq!(Record::decode(&raw), Ok(r.clone()));
            // Every strict prefix shorter than the fixed part or the declared payload is an error.
            let short = &raw[..cut.index(raw.len())];
            prop_assert!(Record::decode(short).is_err(), "{} of {} bytes decoded", short.len(), raw.len());
            let mut bad = raw.clone();
            for (i, x) in &flips {
                let at = i.index(bad.len());
                bad[at] ^= x;
            }
            if let Ok(Record::Data { bytes, .. } | Record::Dns { bytes, .. }) = Record::decode(&bad) {
                prop_assert!(bytes.len() <= bad.len());
            }
        }

        #[test]
        fn decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..600), kind in 0u32..8) {
            let mut v = raw;
            if v.len() >= 4 { v[..4].copy_from_slice(&kind.to_ne_bytes()); }
            let _ = Record::decode(&v);
        }
    }
}
