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
}

/// Loads the probes, runs `traffic` on another thread, collects records until `done` says so.
fn capture(
    cfg: ProbeConfig,
    traffic: impl FnOnce() + Send + 'static,
    done: impl Fn(&[Owned]) -> bool,
) -> (Vec<Owned>, Probes) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async move {
        let mut probes = Probes::load(&cfg).expect("load probes");
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
    assert!(gap && seen < payload.len(), "a gap is visible ({seen} of {} bytes)", payload.len());
    assert_eq!(closes(&recs, client.0), vec![(payload.len() as u64, 0)], "the close still has the full count");
}
