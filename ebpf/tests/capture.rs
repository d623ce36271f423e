//! The real kernel programs, as root: traffic generated here must come back as records
//! with the right roles, addresses, positions and bytes. Capture is system-wide, so every
//! assertion filters by the sockets of the pids this test created. The tests load probes
//! and are serialized (a static lock here, a machine-wide flock across test binaries).

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tapline_ebpf::{Direction, ProbeConfig, Probes, Record, Role};

static LOCK: Mutex<()> = Mutex::new(());

struct FileLock(#[allow(dead_code)] std::fs::File);

fn probe_lock() -> (std::sync::MutexGuard<'static, ()>, FileLock) {
    let g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let f = std::fs::File::create("/tmp/tapline-probe-tests.lock").expect("lock file");
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    (g, FileLock(f))
}

#[derive(Debug, Clone)]
enum Owned {
    Open { sock: u64, role: Role, local: SocketAddr, remote: SocketAddr },
    Data { sock: u64, dir: Direction, pos: u64, bytes: Vec<u8> },
    Close { sock: u64, sent: u64, received: u64 },
    Exec { pid: u32, filename: Vec<u8> },
    Exit { pid: u32 },
    Fork { parent: u32, child: u32 },
    Dns { pid: u32, server: SocketAddr, bytes: Vec<u8>, truncated: bool },
}

/// Loads the probes, runs `traffic` on another thread, collects records until `done` says so.
fn capture(
    cfg: ProbeConfig,
    traffic: impl FnOnce() + Send + 'static,
    done: impl Fn(&[Owned]) -> bool,
) -> (Vec<Owned>, Probes) {
    capture_with(cfg, |_| {}, traffic, done)
}

/// [`capture`], with `setup` run on the loaded probes before the traffic starts.
fn capture_with(
    cfg: ProbeConfig,
    setup: impl FnOnce(&mut Probes),
    traffic: impl FnOnce() + Send + 'static,
    done: impl Fn(&[Owned]) -> bool,
) -> (Vec<Owned>, Probes) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async move {
        let mut probes = Probes::load(&cfg).expect("load probes");
        setup(&mut probes);
        let mut reader = probes.take_reader().expect("reader");
        let t = std::thread::spawn(traffic);
        let mut out = Vec::new();
        let mut deadline = Instant::now() + Duration::from_secs(20);
        let mut finished = false;
        while !done(&out) && Instant::now() < deadline {
            if !finished && t.is_finished() {
                // The traffic is over: give the ring half a second to deliver the rest.
                finished = true;
                deadline = deadline.min(Instant::now() + Duration::from_millis(500));
            }
            let _ = tokio::time::timeout(
                Duration::from_millis(100),
                reader.next_batch(|r| {
                    if let Ok(r) = r {
                        out.push(match r {
                            Record::Open { sock, role, local, remote, .. } => Owned::Open { sock, role, local, remote },
                            Record::Data { sock, dir, pos, bytes, .. } => {
                                Owned::Data { sock, dir, pos, bytes: bytes.to_vec() }
                            }
                            Record::Close { sock, bytes_sent, bytes_received, .. } => {
                                Owned::Close { sock, sent: bytes_sent, received: bytes_received }
                            }
                            Record::Exec { pid, filename, .. } => Owned::Exec { pid, filename: filename.to_vec() },
                            Record::Exit { pid, .. } => Owned::Exit { pid },
                            Record::Fork { parent_pid, child_pid, .. } => {
                                Owned::Fork { parent: parent_pid, child: child_pid }
                            }
                            Record::Dns { pid, server, bytes, truncated, .. } => {
                                Owned::Dns { pid, server, bytes: bytes.to_vec(), truncated }
                            }
                        });
                    }
                }),
            )
            .await;
        }
        let _ = t.join();
        (out, probes)
    })
}

fn opens_on_port(recs: &[Owned], port: u16) -> Vec<(u64, Role, SocketAddr, SocketAddr)> {
    recs.iter()
        .filter_map(|r| match r {
            Owned::Open { sock, role, local, remote, .. } if local.port() == port || remote.port() == port => {
                Some((*sock, *role, *local, *remote))
            }
            _ => None,
        })
        .collect()
}

/// Concatenated bytes of one socket and direction, checking positions are contiguous.
fn stream(recs: &[Owned], sock: u64, dir: Direction) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut n = 0;
    for r in recs {
        if let Owned::Data { sock: s, dir: d, pos, bytes, .. } = r
            && *s == sock
            && *d == dir
        {
            assert_eq!(*pos as usize, out.len(), "positions are contiguous");
            out.extend_from_slice(bytes);
            n += 1;
        }
    }
    (out, n)
}

fn closes(recs: &[Owned], sock: u64) -> Vec<(u64, u64)> {
    recs.iter()
        .filter_map(|r| match r {
            Owned::Close { sock: s, sent, received } if *s == sock => Some((*sent, *received)),
            _ => None,
        })
        .collect()
}

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn probe_roles_addresses_bytes_and_close_over_every_syscall_family() {
    let _l = probe_lock();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let big = pattern(5 << 20, 7);
    let big2 = big.clone();
    let traffic = move || {
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            // read(): request 1
            let mut buf = vec![0u8; 5];
            s.read_exact(&mut buf).expect("read");
            // recv (recvfrom) via a libc call
            let mut b2 = [0u8; 4];
            // SAFETY: recv into our buffer.
            let n = unsafe { libc::recv(s.as_raw_fd(), b2.as_mut_ptr().cast(), 4, libc::MSG_WAITALL) };
            assert_eq!(n, 4);
            // readv
            let (mut a, mut b) = ([0u8; 3], [0u8; 3]);
            let n = s.read_vectored(&mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)]).expect("readv");
            assert_eq!(n, 6, "readv got both halves");
            // the 5 MiB body
            let mut big = vec![0u8; 5 << 20];
            s.read_exact(&mut big).expect("big");
            // writev + write back
            let n = s.write_vectored(&[IoSlice::new(b"ok-"), IoSlice::new(b"vec")]).expect("writev");
            assert_eq!(n, 6);
            s.write_all(b"!").expect("write");
        });
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.write_all(b"hello").expect("write");
        // SAFETY: send from our buffer.
        assert_eq!(unsafe { libc::send(c.as_raw_fd(), b"send".as_ptr().cast(), 4, 0) }, 4);
        let n = c.write_vectored(&[IoSlice::new(b"abc"), IoSlice::new(b"def")]).expect("writev");
        assert_eq!(n, 6);
        c.write_all(&big2).expect("big write");
        let mut back = [0u8; 7];
        c.read_exact(&mut back).expect("read back");
        assert_eq!(&back, b"ok-vec!");
        server.join().expect("server");
        drop(c);
        // a non-socket write must not be captured
        std::fs::write("/tmp/tapline-probe-file-write", b"file bytes").expect("file");
    };
    let (recs, probes) = capture(ProbeConfig { self_pid: 0, ring_buffer_bytes: 32 << 20 }, traffic, |recs| {
        let o = opens_on_port(recs, port);
        o.len() >= 2 && o.iter().all(|(s, ..)| !closes(recs, *s).is_empty())
    });
    let opens = opens_on_port(&recs, port);
    let client = opens.iter().find(|o| o.1 == Role::Client).expect("client open");
    let server = opens.iter().find(|o| o.1 == Role::Server).expect("server open");
    assert_eq!(client.3.port(), port);
    assert_eq!(client.3.ip().to_string(), "127.0.0.1");
    assert_eq!(server.2.port(), port, "server's local port");
    assert_eq!(server.3.port(), client.2.port(), "server's peer is the client");

    let mut want = b"hellosendabcdef".to_vec();
    want.extend_from_slice(&big);
    let (sent, n) = stream(&recs, client.0, Direction::Egress);
    assert!(sent == want, "client egress bytes ({} vs {})", sent.len(), want.len());
    assert!(n > 100, "the 5 MiB write came as many records ({n})");
    let (got, _) = stream(&recs, server.0, Direction::Ingress);
    assert!(got == want, "server ingress bytes ({} vs {})", got.len(), want.len());
    assert_eq!(stream(&recs, server.0, Direction::Egress).0, b"ok-vec!");
    assert_eq!(stream(&recs, client.0, Direction::Ingress).0, b"ok-vec!");
    assert_eq!(closes(&recs, client.0), vec![(want.len() as u64, 7)], "exactly one close, with byte counts");
    assert_eq!(closes(&recs, server.0), vec![(7, want.len() as u64)]);
    assert!(
        !recs.iter().any(|r| matches!(r, Owned::Data { bytes, .. } if bytes == b"file bytes")),
        "file writes are not captured"
    );
    let loss = probes.loss_counters().expect("loss");
    assert_eq!(loss.by_reason.len(), 7);
}

#[test]
fn probe_ipv6_and_own_pid_ignored() {
    let _l = probe_lock();
    let me = std::process::id();
    let listener = TcpListener::bind("[::1]:0").expect("bind v6");
    let port = listener.local_addr().expect("addr").port();
    let traffic = move || {
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut b = [0u8; 2];
            s.read_exact(&mut b).expect("read");
        });
        let mut c = TcpStream::connect(("::1", port)).expect("connect");
        c.write_all(b"v6").expect("write");
        t.join().expect("join");
    };
    // This process is "the agent": nothing of it may be captured.
    let (recs, _p) = capture(ProbeConfig { self_pid: me, ring_buffer_bytes: 1 << 20 }, traffic, |_| false);
    assert!(opens_on_port(&recs, port).is_empty(), "own pid ignored: {:?}", opens_on_port(&recs, port));

    // A child process (not ignored) over IPv6.
    let listener = TcpListener::bind("[::1]:0").expect("bind v6");
    let port = listener.local_addr().expect("addr").port();
    let traffic = move || {
        let child = std::process::Command::new("python3")
            .args([
                "-c",
                &format!("import socket;s=socket.create_connection(('::1',{port}));s.sendall(b'v6child');s.close()"),
            ])
            .status();
        assert!(child.map(|s| s.success()).unwrap_or(false));
        let (mut s, _) = listener.accept().expect("accept");
        let mut v = Vec::new();
        let _ = s.read_to_end(&mut v);
    };
    let (recs, _p) = capture(ProbeConfig { self_pid: me, ring_buffer_bytes: 1 << 20 }, traffic, move |recs| {
        opens_on_port(recs, port).iter().any(|o| !closes(recs, o.0).is_empty())
    });
    let opens = opens_on_port(&recs, port);
    let c = opens.iter().find(|o| o.1 == Role::Client).expect("child client open");
    assert_eq!(c.3.ip().to_string(), "::1");
    assert_eq!(stream(&recs, c.0, Direction::Egress).0, b"v6child");
    assert!(opens.iter().all(|o| o.1 != Role::Server), "the test process (self) accepted: ignored");
}

#[test]
fn probe_exec_fork_exit() {
    let _l = probe_lock();
    let traffic = || {
        let _ = std::process::Command::new("/bin/true").status();
    };
    let (recs, _p) = capture(ProbeConfig { self_pid: 0, ring_buffer_bytes: 1 << 20 }, traffic, |recs| {
        recs.iter().any(|r| matches!(r, Owned::Exec { filename, .. } if filename == b"/bin/true"))
            && recs.iter().any(|r| matches!(r, Owned::Exit { .. }))
    });
    let pid = recs
        .iter()
        .find_map(|r| match r {
            Owned::Exec { pid, filename } if filename == b"/bin/true" => Some(*pid),
            _ => None,
        })
        .expect("exec of /bin/true");
    assert!(
        recs.iter()
            .any(|r| matches!(r, Owned::Fork { parent, child } if *child == pid && *parent == std::process::id())),
        "fork before exec"
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline && !recs.iter().any(|r| matches!(r, Owned::Exit { pid: p } if *p == pid)) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(recs.iter().any(|r| matches!(r, Owned::Exit { pid: p } if *p == pid)), "exit of /bin/true");
}

#[test]
fn probe_ring_overflow_is_counted_and_shows_as_a_gap() {
    let _l = probe_lock();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let payload = pattern(4 << 20, 3);
    let p2 = payload.clone();
    let traffic = move || {
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v);
        });
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.write_all(&p2).expect("write");
        drop(c);
        t.join().expect("join");
    };
    // A 64 KiB ring cannot hold a 4 MiB write made in one call.
    let (recs, probes) = capture(ProbeConfig { self_pid: 0, ring_buffer_bytes: 64 << 10 }, traffic, move |recs| {
        opens_on_port(recs, port).iter().any(|o| o.1 == Role::Client && !closes(recs, o.0).is_empty())
    });
    let loss = probes.loss_counters().expect("loss");
    assert!(loss.get("ring_full_records") > 0, "{loss:?}");
    assert!(loss.get("ring_full_bytes") > 0, "{loss:?}");
    let client = opens_on_port(&recs, port).into_iter().find(|o| o.1 == Role::Client).expect("client");
    // Whatever arrived sits exactly at its position in the payload: nothing glued.
    let mut seen = 0usize;
    let mut gap = false;
    let mut next = 0u64;
    for r in &recs {
        if let Owned::Data { sock, dir: Direction::Egress, pos, bytes, .. } = r
            && *sock == client.0
        {
            if *pos != next {
                gap = true;
            }
            let p = *pos as usize;
            assert_eq!(&payload[p..p + bytes.len()], &bytes[..], "bytes at pos {p} are the payload's");
            next = pos + bytes.len() as u64;
            seen += bytes.len();
        }
    }
    // Userspace sees the loss either inside the stream (a position jumps) or at its end (the
    // close reports more bytes than arrived): under load the tiny ring may deliver nothing.
    assert!(seen < payload.len(), "bytes were lost ({seen} of {} arrived)", payload.len());
    assert!(gap || next < payload.len() as u64, "the loss is visible as a gap");
    assert_eq!(closes(&recs, client.0), vec![(payload.len() as u64, 0)], "the close still has the full count");
}

/// The DNS client side of `probe_dns_answers_over_udp`: every way a resolver receives an
/// answer. Queries with ids 0x7aNN go to a server on another port (no Dns record may come of
/// them); ids 0x53NN go to port 53. Prints its pid.
const DNS_CLIENT: &str = r#"
import ctypes, os, signal, socket, struct, sys
signal.alarm(15)
ip, other, v6 = sys.argv[1], int(sys.argv[2]), sys.argv[3] == '1'
print(os.getpid(), flush=True)
def q(i, name):
    labels = b''.join(bytes([len(l)]) + l.encode() for l in name.split('.'))
    return struct.pack('>HHHHHH', i, 0x0100, 1, 0, 0, 0) + labels + b'\0' + struct.pack('>HH', 1, 1)
srv, far = (ip, 53), ('127.0.0.1', other)
D = socket.AF_INET, socket.SOCK_DGRAM
def udp(peer=None):
    s = socket.socket(*D)
    if peer:
        s.connect(peer)
    return s
# not from port 53: unconnected recvfrom, connected read
s = udp(); s.sendto(q(0x7a01, 'far.tapline.test'), far); s.recvfrom(4096)
s = udp(far); s.send(q(0x7a02, 'far2.tapline.test')); os.read(s.fileno(), 4096)
# port 53, unconnected sendto/recvfrom (as musl's resolver)
s = udp(); s.sendto(q(0x5301, 'one.tapline.test'), srv); s.recvfrom(4096)
# connected: send + read (the agent reads the peer from the socket)
s = udp(srv); s.send(q(0x5302, 'two.tapline.test')); os.read(s.fileno(), 4096)
# connected: send + recv (recvfrom without an address, as glibc's resolver)
s = udp(srv); s.send(q(0x5303, 'three.tapline.test')); s.recv(4096)
# unconnected recvmsg (systemd-style), the answer spread over two buffers
s = udp(); s.sendto(q(0x5304, 'four.tapline.test'), srv); a, b = bytearray(20), bytearray(4000)
s.recvmsg_into([a, b])
# connected readv
s = udp(srv); s.send(q(0x5305, 'five.tapline.test')); os.readv(s.fileno(), [bytearray(4096)])
# unconnected recvmmsg: two answers in one call, each with its own source address
class iovec(ctypes.Structure):
    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
class msghdr(ctypes.Structure):
    _fields_ = [('name', ctypes.c_void_p), ('namelen', ctypes.c_uint), ('iov', ctypes.POINTER(iovec)),
                ('iovlen', ctypes.c_size_t), ('control', ctypes.c_void_p), ('controllen', ctypes.c_size_t),
                ('flags', ctypes.c_int)]
class mmsghdr(ctypes.Structure):
    _fields_ = [('hdr', msghdr), ('len', ctypes.c_uint)]
libc = ctypes.CDLL(None, use_errno=True)
s = udp()
s.sendto(q(0x5306, 'six.tapline.test'), srv); s.sendto(q(0x5307, 'seven.tapline.test'), srv)
bufs = [ctypes.create_string_buffer(4096) for _ in range(2)]
names = [ctypes.create_string_buffer(16) for _ in range(2)]
iovs = [iovec(ctypes.cast(b, ctypes.c_void_p), 4096) for b in bufs]
msgs = (mmsghdr * 2)()
for i in range(2):
    msgs[i].hdr.name = ctypes.cast(names[i], ctypes.c_void_p); msgs[i].hdr.namelen = 16
    msgs[i].hdr.iov = ctypes.pointer(iovs[i]); msgs[i].hdr.iovlen = 1
n = libc.recvmmsg(s.fileno(), msgs, 2, 0, None)
assert n == 2, (n, ctypes.get_errno())
# a 5000-byte answer: cut at 4096 and flagged
s = udp(); s.sendto(q(0x5308, 'big.tapline.test'), srv); s.recvfrom(8192)
if v6:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.sendto(q(0x5309, 'six6.tapline.test'), ('::1', 53)); s.recvfrom(4096)
"#;

/// A DNS answer for a query built by DNS_CLIENT: its question and one A record. The query
/// id 0x5308 gets 5000 bytes (trailing padding past the message).
fn dns_answer(query: &[u8]) -> Vec<u8> {
    let mut r = query[..2].to_vec();
    r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    r.extend_from_slice(&query[12..]);
    r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 10, 53, query[0], query[1]]);
    if query[..2] == [0x53, 0x08] {
        r.resize(5000, 0xab);
    }
    r
}

/// Answers every query on `sock` until `stop`, remembering each answer by query id.
fn dns_responder(
    sock: std::net::UdpSocket,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sent: std::sync::Arc<Mutex<std::collections::HashMap<u16, Vec<u8>>>>,
) -> std::thread::JoinHandle<()> {
    sock.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
            if n < 12 {
                continue;
            }
            let answer = dns_answer(&buf[..n]);
            sent.lock().unwrap_or_else(|e| e.into_inner()).insert(u16::from_be_bytes([buf[0], buf[1]]), answer.clone());
            let _ = sock.send_to(&answer, from);
        }
    })
}

#[test]
fn probe_dns_answers_over_udp() {
    use std::net::UdpSocket;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let _l = probe_lock();
    let me = std::process::id();
    // 127.0.0.1:53 may be a local resolver's: any 127/8 address is local.
    let (ip, server) = ["127.0.0.1", "127.9.9.9", "127.53.0.53"]
        .iter()
        .find_map(|ip| UdpSocket::bind((*ip, 53)).ok().map(|s| (*ip, s)))
        .expect("a loopback address with port 53 free");
    let server6 = UdpSocket::bind("[::1]:53").ok();
    let far = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let far_port = far.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let child_pid = Arc::new(AtomicU32::new(0));
    let (stop2, sent2, pid2, v6) = (stop.clone(), sent.clone(), child_pid.clone(), server6.is_some());
    let traffic = move || {
        let mut servers = vec![dns_responder(server, stop2.clone(), sent2.clone())];
        servers.push(dns_responder(far, stop2.clone(), sent2.clone()));
        if let Some(s6) = server6 {
            servers.push(dns_responder(s6, stop2.clone(), sent2.clone()));
        }
        let out = std::process::Command::new("python3")
            .args(["-c", DNS_CLIENT, ip, &far_port.to_string(), if v6 { "1" } else { "0" }])
            .output()
            .expect("python3");
        assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
        let pid = String::from_utf8_lossy(&out.stdout).trim().parse().expect("client pid");
        pid2.store(pid, Ordering::Relaxed);
        stop2.store(true, Ordering::Relaxed);
        for s in servers {
            let _ = s.join();
        }
    };
    let ours =
        |r: &Owned| matches!(r, Owned::Dns { bytes, .. } if bytes.len() >= 2 && (bytes[0] == 0x53 || bytes[0] == 0x7a));
    let want = if v6 { 9 } else { 8 };
    let (recs, probes) = capture(ProbeConfig { self_pid: me, ring_buffer_bytes: 1 << 20 }, traffic, move |recs| {
        recs.iter().filter(|r| ours(r)).count() >= want
    });
    let pid = child_pid.load(Ordering::Relaxed);
    let sent = sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let dns: Vec<_> = recs
        .iter()
        .filter(|r| ours(r))
        .map(|r| match r {
            Owned::Dns { pid, server, bytes, truncated } => (*pid, *server, bytes.clone(), *truncated),
            _ => unreachable!(),
        })
        .collect();
    assert!(
        !dns.iter().any(|d| d.2[0] == 0x7a),
        "answers from a port other than 53 are not DNS: {:?}",
        dns.iter().map(|d| (d.1, d.2[1])).collect::<Vec<_>>()
    );
    for id in 0x5301u16..=if v6 { 0x5309 } else { 0x5308 } {
        let answer = sent.get(&id).unwrap_or_else(|| panic!("query {id:#x} was answered"));
        let got: Vec<_> = dns.iter().filter(|d| d.2[..2] == id.to_be_bytes()).collect();
        assert_eq!(got.len(), 1, "one Dns record for query {id:#x}");
        let (rpid, server, bytes, truncated) = got[0];
        assert_eq!(*rpid, pid, "query {id:#x}: the client's pid");
        let want_server = if id == 0x5309 { "[::1]:53".to_string() } else { format!("{ip}:53") };
        assert_eq!(server.to_string(), want_server, "query {id:#x}: server address");
        if id == 0x5308 {
            assert!(*truncated, "5000-byte answer is flagged");
            assert_eq!(&bytes[..], &answer[..4096], "the first 4096 bytes");
        } else {
            assert!(!*truncated, "query {id:#x}");
            assert_eq!(bytes, answer, "query {id:#x}: the exact answer bytes");
        }
    }
    let loss = probes.loss_counters().expect("loss");
    assert!(loss.get("truncated_bytes") >= 5000 - 4096, "{loss:?}");
    assert_eq!(loss.by_reason.len(), 7);
}

/// DNS over TCP is not special in the kernel: a socket to port 53 is tracked like any other
/// and its answers are its ingress DATA (2-byte length prefixed), never Dns records.
#[test]
fn probe_dns_over_tcp_is_data_of_a_port_53_socket() {
    let _l = probe_lock();
    let me = std::process::id();
    let (ip, listener) = ["127.0.0.1", "127.9.9.9", "127.53.0.53"]
        .iter()
        .find_map(|ip| TcpListener::bind((*ip, 53)).ok().map(|l| (*ip, l)))
        .expect("a loopback address with TCP port 53 free");
    let query = b"\x53\x40\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03tcp\x07tapline\x04test\x00\x00\x01\x00\x01";
    let answer = dns_answer(query);
    let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&answer);
    let reply = framed.clone();
    let traffic = move || {
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut q = vec![0u8; 2 + query.len()];
            s.read_exact(&mut q).expect("query");
            s.write_all(&reply).expect("answer");
        });
        let hex: String = query.iter().map(|b| format!("\\x{b:02x}")).collect();
        let script = format!(
            "import socket,struct\ns=socket.create_connection(('{ip}',53))\nq=b'{hex}'\n\
             s.sendall(struct.pack('>H',len(q))+q)\nb=b''\n\
             while len(b)<2 or len(b)<2+struct.unpack('>H',b[:2])[0]:\n b+=s.recv(4096)\ns.close()"
        );
        let ok = std::process::Command::new("python3").args(["-c", &script]).status().map(|s| s.success());
        assert!(ok.unwrap_or(false), "client");
        server.join().expect("server");
    };
    let (recs, _p) = capture(ProbeConfig { self_pid: me, ring_buffer_bytes: 1 << 20 }, traffic, |recs| {
        opens_on_port(recs, 53).iter().any(|o| !closes(recs, o.0).is_empty())
    });
    let opens = opens_on_port(&recs, 53);
    let client = opens.iter().find(|o| o.1 == Role::Client).expect("the client's socket to port 53 is tracked");
    assert_eq!(client.3.to_string(), format!("{ip}:53"));
    assert_eq!(stream(&recs, client.0, Direction::Ingress).0, framed, "the framed answer is ingress data");
    assert!(!recs.iter().any(|r| matches!(r, Owned::Dns { bytes, .. } if bytes.starts_with(b"\x53\x40"))));
}

/// The kernel's own filters: an exact executable path skips a program from its exec on, a
/// role filter drops accepted connections without a record, and a process whose payload is
/// skipped still gets its connection and byte counts, without DATA records.
#[test]
fn probe_kernel_filters_skip_processes_payload_and_directions() {
    use tapline_ebpf::RoleFilter;
    use tapline_ebpf::filters::{SKIP_ALL, SKIP_DATA};
    let _l = probe_lock();
    let curl = ["/usr/bin/curl", "/bin/curl"].into_iter().find(|p| std::path::Path::new(p).exists());
    let curl = curl.expect("curl is installed by scripts/install-deps.sh --test").to_string();
    let a = TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (pa, pb) = (a.local_addr().expect("a").port(), b.local_addr().expect("b").port());
    let payload = pattern(5000, 7);
    let sent = payload.clone();
    let curl2 = curl.clone();
    let traffic = move || {
        let server = std::thread::spawn(move || {
            let (mut s, _) = a.accept().expect("accept");
            let mut buf = vec![0u8; 5000];
            s.read_exact(&mut buf).expect("read");
            s.write_all(b"ok").expect("reply");
        });
        let mut c = TcpStream::connect(("127.0.0.1", pa)).expect("connect");
        c.write_all(&sent).expect("send");
        let mut r = [0u8; 2];
        c.read_exact(&mut r).expect("reply");
        drop(c);
        server.join().expect("server");
        let bs = std::thread::spawn(move || {
            if let Ok((mut s, _)) = b.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        let st = std::process::Command::new(&curl2)
            .args(["-s", "-o", "/dev/null", &format!("http://127.0.0.1:{pb}/filtered")])
            .status()
            .expect("curl");
        assert!(st.success());
        bs.join().expect("b server");
    };
    let me = std::process::id();
    let setup = move |p: &mut Probes| {
        let f = p.filters_mut();
        f.set_connections(RoleFilter::Egress, false).expect("settings");
        assert!(f.set_exes(&[(curl.clone(), SKIP_ALL)]).expect("exes").is_empty());
        f.set_process(me, SKIP_DATA).expect("process");
    };
    // Collect until the traffic (curl included) is over.
    let (recs, probes) =
        capture_with(ProbeConfig { self_pid: 0, ring_buffer_bytes: 8 << 20 }, setup, traffic, |_| false);
    // Port a: only the connecting side is reported; its payload was counted, not copied.
    let opens = opens_on_port(&recs, pa);
    assert_eq!(opens.iter().map(|o| o.1).collect::<Vec<_>>(), vec![Role::Client], "accepted side filtered: {opens:?}");
    let client = opens[0].0;
    assert_eq!(stream(&recs, client, Direction::Egress).1, 0, "no DATA record for a skipped payload");
    assert_eq!(closes(&recs, client), vec![(5000, 2)], "byte counts stay right");
    // Port b: curl is skipped from its exec on, and its server side is ingress.
    assert!(opens_on_port(&recs, pb).is_empty(), "{:?}", opens_on_port(&recs, pb));
    assert!(
        recs.iter().any(|r| matches!(r, Owned::Exec { filename, .. } if filename.ends_with(b"curl"))),
        "exec still named"
    );
    let c: std::collections::HashMap<&str, u64> = probes.filters().counters().expect("counters").into_iter().collect();
    assert!(c["filtered_connections"] >= 2, "{c:?}");
    assert!(c["skipped_payload_bytes"] >= 5000, "{c:?}");
    assert!(c["filtered_process_calls"] >= 1, "{c:?}");
}
