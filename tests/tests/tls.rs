//! End to end, as root: HTTPS through OpenSSL (curl, python requests, openssl s_client /
//! s_server, nginx), decrypted by the uprobes, with the handshake metadata read from the raw
//! bytes; a TLS connection that cannot be decrypted; a process in its own mount namespace;
//! thousands of short-lived processes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tapline_e2e::*;

/// curl https://tapline.test:<port><path> against 127.0.0.1, trusting the test certificate.
fn curl_https(port: u16, cert: &TestCert, path: &str, extra: &[&str]) -> Vec<u8> {
    let out = run(Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert"])
        .arg(&cert.cert)
        .args(["--resolve", &format!("tapline.test:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://tapline.test:{port}{path}")))
    .expect("curl");
    out.stdout
}

/// Asserts the decrypted exchange and the TLS facts of one side of a connection.
fn assert_tls_side(agent: &Agent, ev: &[Value], port: u16, direction: &str, version: u64, path: &str, body: &str) {
    let c = one(connections_to(ev, port, direction), &format!("{direction} connection"));
    assert_eq!(c["l7Protocol"], "http1", "decrypted plaintext is parsed: {c}");
    assert_eq!(c["tlsVersion"], version, "{c}");
    assert_eq!(c["meta"]["endpointId"], "tapline.test", "SNI is the endpoint id");
    assert_eq!(c["meta"]["tlsProbeTypesDetected"], serde_json::json!(["openssl"]));
    assert_eq!(c["meta"]["tlsProbeIntrospected"], true);
    // Byte counts are the socket's (ciphertext): more than the plaintext request and response.
    assert!(c["bytesSent"].as_u64().unwrap_or(0) > 200, "{c}");
    assert!(c["bytesReceived"].as_u64().unwrap_or(0) > 200, "{c}");
    let cid = c["meta"]["connectionId"].as_str().expect("id");
    let a = one(artifacts_of(ev, cid), &format!("{direction} artifact_record"));
    assert_eq!(a["endpointId"], "tapline.test");
    assert_eq!(a["summary"]["request_scheme"], "https");
    assert_eq!(a["summary"]["request_method"], "GET");
    assert_eq!(a["summary"]["response_status"], 200);
    let o = fetch_object(agent, a);
    assert_eq!(o["request"]["url"], format!("https://tapline.test:{port}{path}"));
    assert_eq!(o["request"]["path"], path.split('?').next().unwrap_or(path));
    assert_eq!(o["response"]["status"], 200);
    assert_eq!(b64(&o["response"]["body"]), body.as_bytes(), "decrypted response body");
}

#[test]
fn curl_https_tls13_and_tls12_both_sides_decrypted() {
    let _lock = probe_lock();
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    for (tls_max, version) in [(None, 772u64), (Some("1.2"), 771u64)] {
        let (_server, port, cert) = start_https_server("127.0.0.1", tls_max).expect("server");
        let got = curl_https(port, &cert, "/secret/path?q=1", &["-H", "X-Marker: tls-curl"]);
        assert_eq!(got, b"hello /secret/path?q=1");
        let ev = agent
            .wait_for(Duration::from_secs(15), "curl https connection events", |ev| {
                connections_to(ev, port, "egress-internal").len() == 1 && connections_to(ev, port, "ingress").len() == 1
            })
            .expect("events");
        // curl (a short-lived process that exits right after reading the response) and the
        // python server (OpenSSL 3 through the ssl module) are both decrypted.
        assert_tls_side(&agent, &ev, port, "egress-internal", version, "/secret/path?q=1", "hello /secret/path?q=1");
        assert_tls_side(&agent, &ev, port, "ingress", version, "/secret/path?q=1", "hello /secret/path?q=1");
        let c = one(connections_to(&ev, port, "egress-internal"), "curl");
        assert_eq!(c["source"]["exe"], "/usr/bin/curl");
    }
    let stopped = agent.stop().expect("stop");
    stopped.check_data_model().expect("data model");
}

/// python httpx (HTTP/1.1 here; its HTTP/2 is decoded in a later release) through OpenSSL 3.
#[test]
fn python_httpx_over_https() {
    let _lock = probe_lock();
    let (_server, port, cert) = start_https_server("127.0.0.1", None).expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    let script = format!(
        "import httpx\nwith httpx.Client(verify='{}', http2=False) as c:\n    print(c.get('https://localhost:{port}/httpx').text)",
        cert.cert.display()
    );
    let out = run(Command::new("python3").args(["-c", &script])).expect("python httpx");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello /httpx");
    let ev = agent
        .wait_for(Duration::from_secs(15), "httpx connection", |ev| {
            connections_to(ev, port, "egress-internal").len() == 1
        })
        .expect("events");
    let c = one(connections_to(&ev, port, "egress-internal"), "httpx client");
    assert_eq!(c["meta"]["tlsProbeIntrospected"], true);
    assert_eq!(c["meta"]["endpointId"], "localhost");
    let a = one(artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap()), "record");
    let o = fetch_object(&agent, a);
    assert_eq!(o["request"]["url"], format!("https://localhost:{port}/httpx"));
    assert_eq!(b64(&o["response"]["body"]), b"hello /httpx");
    agent.stop().expect("stop").check_data_model().expect("data model");
}

#[test]
fn python_requests_post_over_https() {
    let _lock = probe_lock();
    let (_server, port, cert) = start_https_server("127.0.0.1", None).expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    let script = format!(
        "import requests\nr = requests.post('https://localhost:{port}/upload', data=b'x' * 3000, \
         verify='{}')\nprint(r.text)",
        cert.cert.display()
    );
    let out = run(Command::new("python3").args(["-c", &script])).expect("python");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"len\": 3000"));
    let ev = agent
        .wait_for(Duration::from_secs(15), "python https connection", |ev| {
            connections_to(ev, port, "egress-internal").len() == 1
        })
        .expect("events");
    let c = one(connections_to(&ev, port, "egress-internal"), "python client");
    assert_eq!(c["meta"]["endpointId"], "localhost", "SNI");
    assert_eq!(c["tlsVersion"], 772);
    assert_eq!(c["l7Protocol"], "http1");
    let a = one(artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap()), "record");
    let o = fetch_object(&agent, a);
    assert_eq!(o["request"]["method"], "POST");
    assert_eq!(o["request"]["url"], format!("https://localhost:{port}/upload"));
    assert_eq!(b64(&o["request"]["body"]), vec![b'x'; 3000], "request body decrypted whole");
    assert!(String::from_utf8_lossy(&b64(&o["response"]["body"])).contains("\"len\": 3000"));
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// `openssl s_client` talking to `openssl s_server` in its plain mode, which moves bytes with
/// SSL_read/SSL_write (its `-www` mode goes through OpenSSL's SSL BIO, whose internal read path
/// is not an exported function, so no user-space TLS tracer sees it).
/// OpenSSL linked statically into an executable: found by scanning the executable's ELF
/// symbols on exec, then decrypted like the shared library.
#[test]
fn statically_linked_openssl_client() {
    let _lock = probe_lock();
    let (_server, port, cert) = start_https_server("127.0.0.1", None).expect("server");
    let bin = cert.dir.path().join("static_tls_client");
    run(Command::new("gcc").args(["-O1", "-o"]).arg(&bin).arg(fixture("static_tls_client.c")).args([
        "-Wl,-Bstatic",
        "-lssl",
        "-lcrypto",
        "-Wl,-Bdynamic",
        "-lpthread",
        "-ldl",
    ]))
    .expect("gcc with libssl-dev's static libraries");
    let ldd = run(Command::new("ldd").arg(&bin)).expect("ldd");
    assert!(!String::from_utf8_lossy(&ldd.stdout).contains("libssl"), "no shared libssl");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    let out = run(Command::new(&bin).args([&port.to_string(), "tapline.test", "/static-openssl", "300"]))
        .expect("static client");
    assert_eq!(out.stdout, b"hello /static-openssl");
    let ev = agent
        .wait_for(Duration::from_secs(15), "static client", |ev| connections_to(ev, port, "egress-internal").len() == 1)
        .expect("events");
    let c = one(connections_to(&ev, port, "egress-internal"), "static client");
    assert_eq!(c["meta"]["tlsProbeTypesDetected"], serde_json::json!(["openssl"]));
    assert_eq!(c["meta"]["tlsProbeIntrospected"], true, "{c}");
    assert_eq!(c["source"]["exe"], bin.display().to_string());
    let a = one(artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap()), "record");
    let o = fetch_object(&agent, a);
    assert_eq!(o["request"]["url"], "https://tapline.test/static-openssl");
    assert_eq!(b64(&o["response"]["body"]), b"hello /static-openssl");
    let stopped = agent.stop().expect("stop");
    let lat = attach_latencies_ms(&stopped.stderr);
    assert!(!lat.is_empty() && lat.iter().all(|ms| *ms < 200), "attached within 200 ms of exec: {lat:?}");
}

#[test]
fn openssl_s_client_to_s_server() {
    use std::io::{BufRead, BufReader, Read, Write};
    let _lock = probe_lock();
    let cert = TestCert::new().expect("cert");
    let port = free_port();
    let mut server = Proc {
        child: Command::new("openssl")
            .args(["s_server", "-quiet", "-accept", &port.to_string(), "-cert"])
            .arg(&cert.cert)
            .arg("-key")
            .arg(&cert.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("s_server"),
    };
    wait_listening(port);
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    let mut client = Proc {
        child: Command::new("openssl")
            .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{port}"), "-servername", "tapline.test"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("s_client"),
    };
    let mut client_in = client.child.stdin.take().expect("stdin");
    client_in.write_all(b"GET /s-client HTTP/1.1\r\nHost: tapline.test\r\n\r\n").expect("request");
    // The server prints the decrypted request; answer once it is complete.
    let mut server_out = BufReader::new(server.child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while line != "\r\n" {
        line.clear();
        assert!(server_out.read_line(&mut line).expect("read") > 0, "s_server closed early");
    }
    let mut server_in = server.child.stdin.take().expect("stdin");
    server_in.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ns_server!\n").expect("response");
    let mut got = Vec::new();
    let mut client_out = client.child.stdout.take().expect("stdout");
    let mut buf = [0u8; 256];
    while !got.ends_with(b"s_server!\n") {
        let n = client_out.read(&mut buf).expect("read");
        assert!(n > 0, "s_client closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    drop(client); // closes the connection
    let ev = agent
        .wait_for(Duration::from_secs(15), "s_client and s_server", |ev| {
            let done = |d| {
                connections_to(ev, port, d)
                    .iter()
                    .any(|c| artifacts_of(ev, c["meta"]["connectionId"].as_str().unwrap_or("")).len() == 1)
            };
            done("egress-internal") && done("ingress")
        })
        .expect("events");
    for direction in ["egress-internal", "ingress"] {
        let c = one(connections_to(&ev, port, direction), direction);
        assert_eq!(c["meta"]["endpointId"], "tapline.test");
        assert_eq!(c["tlsVersion"], 772);
        assert_eq!(c["meta"]["tlsProbeTypesDetected"], serde_json::json!(["openssl"]));
        let a = one(artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap()), "record");
        assert_eq!(a["summary"]["request_method"], "GET");
        assert_eq!(a["summary"]["response_status"], 200);
        let o = fetch_object(&agent, a);
        assert_eq!(o["request"]["url"], "https://tapline.test/s-client", "authority from the Host header");
        assert_eq!(b64(&o["response"]["body"]), b"s_server!\n");
    }
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// nginx from apt, serving HTTPS with TLS 1.2 on one port and 1.3 on another (ingress).
#[test]
fn nginx_tls12_and_tls13_ingress() {
    let _lock = probe_lock();
    let cert = TestCert::new().expect("cert");
    let (p12, p13) = (free_port(), free_port());
    let dir = cert.dir.path();
    std::fs::write(dir.join("index.html"), "nginx over tls\n").unwrap();
    let servers = [
        format!("listen 127.0.0.1:{p12} ssl; ssl_protocols TLSv1.2; root {};", dir.display()),
        format!("listen 127.0.0.1:{p13} ssl; ssl_protocols TLSv1.3; root {};", dir.display()),
    ];
    let _nginx = start_nginx(&cert, &servers).expect("nginx");
    wait_listening(p12);
    wait_listening(p13);
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    for (port, version) in [(p12, 771u64), (p13, 772u64)] {
        assert_eq!(curl_https(port, &cert, "/index.html", &[]), b"nginx over tls\n");
        let ev = agent
            .wait_for(Duration::from_secs(15), "nginx ingress", |ev| {
                connections_to(ev, port, "ingress")
                    .iter()
                    .any(|c| artifacts_of(ev, c["meta"]["connectionId"].as_str().unwrap_or("")).len() == 1)
            })
            .expect("events");
        let c = one(connections_to(&ev, port, "ingress"), "nginx connection");
        assert_eq!(c["destination"]["exe"], "/usr/sbin/nginx", "{c}");
        assert_eq!(c["tlsVersion"], version, "{c}");
        assert_eq!(c["meta"]["endpointId"], "tapline.test");
        let a = one(artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap()), "record");
        let o = fetch_object(&agent, a);
        assert_eq!(o["request"]["url"], format!("https://tapline.test:{port}/index.html"));
        assert_eq!(b64(&o["response"]["body"]), b"nginx over tls\n");
    }
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// With the TLS probes off, a TLS connection still reports its handshake facts and byte
/// counts, is `other`, and no ciphertext is ever parsed as HTTP.
#[test]
fn undecrypted_tls_keeps_handshake_metadata() {
    let _lock = probe_lock();
    let (_server, port, cert) = start_https_server("127.0.0.1", Some("1.2")).expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &["--tls-probes", "none"]).expect("agent");
    curl_https(port, &cert, "/opaque", &[]);
    let ev = agent
        .wait_for(Duration::from_secs(15), "ciphertext-only connections", |ev| {
            connections_to(ev, port, "egress-internal").len() == 1 && connections_to(ev, port, "ingress").len() == 1
        })
        .expect("events");
    for d in ["egress-internal", "ingress"] {
        let c = one(connections_to(&ev, port, d), d);
        assert_eq!(c["l7Protocol"], "other");
        assert_eq!(c["tlsVersion"], 771);
        assert_eq!(c["meta"]["endpointId"], "tapline.test");
        assert!(c["meta"].get("tlsProbeIntrospected").is_none(), "nothing decrypted: {c}");
        assert!(c["bytesSent"].as_u64().unwrap_or(0) > 100 && c["bytesReceived"].as_u64().unwrap_or(0) > 100);
        assert!(artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap()).is_empty());
    }
    let (_, metrics) = agent.get("/metrics").expect("metrics");
    assert!(
        metrics.contains("tapline_tls_probes_available{family=\"openssl\"} 0"),
        "disabled family reported: {metrics}"
    );
    agent.stop().expect("stop").check_data_model().expect("data model");
}

/// A process in its own mount namespace with its own copy of libssl (another inode, which
/// the host's probes do not cover) is still decrypted.
#[test]
fn own_mount_namespace_with_private_libssl_copy() {
    let _lock = probe_lock();
    let (_server, port, cert) = start_https_server("127.0.0.1", None).expect("server");
    let lib = ["/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/aarch64-linux-gnu/libssl.so.3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("libssl.so.3");
    let copy = cert.dir.path().join("libssl.so.3");
    std::fs::copy(lib, &copy).expect("copy libssl");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    // In the namespace: bind the copy over the library, then (a new exec there) run curl.
    let script = format!(
        "mount --bind {copy} {lib} && grep -q {lib} /proc/self/mountinfo && sleep 0.3 && \
         curl -sS --http1.1 --cacert {cert} --resolve tapline.test:{port}:127.0.0.1 \
         https://tapline.test:{port}/in-namespace",
        copy = copy.display(),
        cert = cert.cert.display(),
    );
    let out =
        run(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script])).expect("unshare");
    assert_eq!(out.stdout, b"hello /in-namespace");
    let ev = agent
        .wait_for(Duration::from_secs(15), "namespaced curl", |ev| {
            connections_to(ev, port, "egress-internal").len() == 1
        })
        .expect("events");
    let c = one(connections_to(&ev, port, "egress-internal"), "namespaced curl");
    assert_eq!(c["meta"]["tlsProbeIntrospected"], true, "decrypted through the copy's own probes: {c}");
    let a = one(artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap()), "record");
    assert_eq!(fetch_object(&agent, a)["request"]["path"], "/in-namespace");
    let stopped = agent.stop().expect("stop");
    assert!(
        stopped.stderr.contains("OpenSSL probes attached") && stopped.stderr.contains("/root/"),
        "the copy was attached through /proc/<pid>/root: {}",
        stopped.stderr
    );
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` figure in KiB (`VmRSS:`, `VmHWM:`).
fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// 2,000 short-lived curl processes over HTTPS: every one is decrypted, the agent keeps up,
/// and its memory does not grow with the number of processes (attach work is per inode).
#[test]
fn two_thousand_short_lived_https_clients() {
    let _lock = probe_lock();
    let (_server, port, cert) = start_https_server("127.0.0.1", None).expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &["--report-interval-secs", "5"]).expect("agent");
    // Warm up (first allocations, caches), then measure.
    curl_https(port, &cert, "/warm", &[]);
    agent
        .wait_for(Duration::from_secs(15), "warm-up", |ev| !connections_to(ev, port, "egress-internal").is_empty())
        .expect("warm-up");
    let before = rss_kib(agent.pid());
    let started = Instant::now();
    let script = format!(
        "for i in $(seq 2000); do curl -s -o /dev/null --http1.1 --cacert {c} --resolve tapline.test:{port}:127.0.0.1 \
         https://tapline.test:{port}/loop/$i || exit 1; done",
        c = cert.cert.display()
    );
    run(Command::new("sh").args(["-c", &script])).expect("loop");
    let took = started.elapsed();
    let ev = agent
        .wait_for(Duration::from_secs(60), "2000 decrypted records", |ev| {
            items(ev, "artifact_record")
                .iter()
                .filter(|a| a["summary"]["direction"] == "egress-internal" && a["endpointId"] == "tapline.test")
                .count()
                >= 2001
        })
        .expect("every curl decrypted");
    let after = rss_kib(agent.pid());
    eprintln!("2000 curl execs in {took:?}; agent RSS {before} KiB before, {after} KiB after");
    let lost: Vec<&Value> = items(&ev, "connection")
        .into_iter()
        .filter(|c| c["destination"]["address"]["port"] == port && c["meta"]["tlsProbeIntrospected"] != true)
        .collect();
    assert!(lost.is_empty(), "every connection decrypted; not: {}", lost.len());
    // Connections are finalized and dropped; the attach caches hold one entry per inode.
    assert!(after < before + 16 * 1024, "RSS grew from {before} KiB to {after} KiB over 2000 processes");
    let stopped = agent.stop().expect("stop");
    assert!(stopped.stderr.matches("OpenSSL probes attached").count() <= 3, "attach work is per file");
}

/// Builds the Go test program (tests/fixtures/gotls) with the apt Go toolchain into `dir`.
/// TLS discovery looks at every executable that runs, but reads only the headers and symbol
/// tables of one that is not Go: a 256 MiB executable (running before the agent starts, and
/// started after) leaves the agent's peak memory far below its size.
#[test]
fn large_executables_are_not_read_whole() {
    let _lock = probe_lock();
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big-sleep");
    std::fs::copy("/usr/bin/sleep", &big).expect("copy sleep");
    // Sparse padding after the ELF image: the binary still runs, and is 256 MiB long.
    let f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
    f.set_len(256 << 20).unwrap();
    drop(f);
    let before = Proc { child: Command::new(&big).arg("30").spawn().expect("run the big executable") };
    let agent = Agent::start(None, &[]).expect("agent");
    let after = Proc { child: Command::new(&big).arg("30").spawn().expect("run it again") };
    // The exec record is examined within a scan period (2 s); a third exec to be sure.
    std::thread::sleep(Duration::from_secs(3));
    let third = Proc { child: Command::new(&big).arg("30").spawn().expect("and again") };
    std::thread::sleep(Duration::from_secs(1));
    let hwm = status_kib(agent.pid(), "VmHWM:");
    eprintln!("agent peak RSS with a 256 MiB executable running: {hwm} KiB");
    drop((before, after, third));
    let stopped = agent.stop().expect("stop");
    assert!(hwm > 0 && hwm < 150 * 1024, "peak {hwm} KiB (the executable is 262,144 KiB): {}", stopped.stderr);
}

fn build_go(dir: &std::path::Path, name: &str, stripped: bool) -> std::path::PathBuf {
    let out = dir.join(name);
    let mut cmd = Command::new("go");
    cmd.arg("build").arg("-o").arg(&out);
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    cmd.arg(fixture("gotls/main.go"))
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", std::env::temp_dir().join("tapline-gocache"))
        .env("GOPATH", std::env::temp_dir().join("tapline-gopath"))
        .env("GOFLAGS", "-mod=mod");
    run(&mut cmd).expect("go build (golang-go is installed by scripts/install-deps.sh)");
    out
}

/// Starts a Go HTTPS server binary; returns it and its port.
fn start_go_server(bin: &std::path::Path, cert: &TestCert) -> (Proc, u16) {
    use std::io::BufRead;
    let mut child = Command::new(bin)
        .arg("server")
        .arg(&cert.cert)
        .arg(&cert.key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("go server");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("port");
    (Proc { child }, line.trim().parse().expect("port number"))
}

/// The largest `ms_after_exec` the agent logged for attaching to a new process.
fn attach_latencies_ms(stderr: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter(|l| l.contains("TLS probes attached for a new process"))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["ms_after_exec"].as_u64())
        .collect()
}

/// A Go client and a Go server, each built stripped (`-s -w`: symbols from .gopclntab) and
/// not (.symtab), probed at entry and at every RET, never with uretprobes: both keep running
/// and both sides are decrypted.
#[test]
fn go_client_and_server_stripped_and_not() {
    let _lock = probe_lock();
    let cert = TestCert::new().expect("cert");
    let plain = build_go(cert.dir.path(), "gotls", false);
    let stripped = build_go(cert.dir.path(), "gotls-stripped", true);
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    for (server_bin, client_bin) in [(&plain, &stripped), (&stripped, &plain)] {
        // Started after the agent: found through the exec record.
        let (_server, port) = start_go_server(server_bin, &cert);
        std::thread::sleep(Duration::from_millis(300));
        for path in ["/hello-go", "/post-it"] {
            let out = run(Command::new(client_bin)
                .arg("client")
                .arg(format!("https://tapline.test:{port}{path}"))
                .arg(&cert.cert)
                .arg("300"))
            .expect("go client runs to completion under the probes");
            let want = if path == "/hello-go" { "go says /hello-go".to_string() } else { "got 2000 bytes".into() };
            assert_eq!(String::from_utf8_lossy(&out.stdout), want);
        }
        // Wait for at least two per side, then require exactly two: a timeout or a third
        // record then shows which went wrong (a flaky run once timed out here).
        let enough = agent.wait_for(Duration::from_secs(15), "go client and server", |ev| {
            let records = |d| records_on(ev, port, d).len();
            records("egress-internal") >= 2 && records("ingress") >= 2
        });
        let ev = enough.unwrap_or_else(|e| {
            let ev = agent.events();
            let conns: Vec<&serde_json::Value> =
                ["egress-internal", "ingress"].iter().flat_map(|d| connections_to(&ev, port, d)).collect();
            let m = agent.get("/metrics").map(|m| m.1).unwrap_or_default();
            let counters: Vec<&str> = m.lines().filter(|l| l.starts_with("tapline_") && !l.ends_with(" 0")).collect();
            panic!(
                "{e}\nconnections on {port}: {conns:#?}\nrecords: {:#?}\ncounters: {counters:#?}\nstderr: {}",
                records_on(&ev, port, "ingress"),
                agent.stderr()
            )
        });
        for d in ["egress-internal", "ingress"] {
            assert_eq!(records_on(&ev, port, d).len(), 2, "{d}: {:#?}", records_on(&ev, port, d));
        }
        for direction in ["egress-internal", "ingress"] {
            for c in connections_to(&ev, port, direction) {
                assert_eq!(c["meta"]["tlsProbeTypesDetected"], serde_json::json!(["gotls"]), "{c}");
                assert_eq!(c["meta"]["tlsProbeIntrospected"], true);
                assert_eq!(c["meta"]["endpointId"], "tapline.test");
                assert_eq!(c["tlsVersion"], 772);
                assert_eq!(c["l7Protocol"], "http1");
                let a = one(artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap()), "record");
                let o = fetch_object(&agent, a);
                let path = o["request"]["path"].as_str().unwrap_or("").to_string();
                assert_eq!(o["request"]["url"], format!("https://tapline.test:{port}{path}"));
                if path == "/post-it" {
                    assert_eq!(o["request"]["method"], "POST");
                    assert_eq!(b64(&o["request"]["body"]), vec![b'g'; 2000], "{direction}");
                    assert_eq!(b64(&o["response"]["body"]), b"got 2000 bytes");
                } else {
                    assert_eq!(path, "/hello-go");
                    assert_eq!(b64(&o["response"]["body"]), b"go says /hello-go", "{direction}");
                }
            }
        }
    }
    let stopped = agent.stop().expect("stop");
    assert!(stopped.stderr.contains("\"symbols\":\"Pclntab\""), "stripped binary read from .gopclntab");
    assert!(stopped.stderr.contains("\"symbols\":\"Symtab\""));
    let lat = attach_latencies_ms(&stopped.stderr);
    assert!(lat.len() >= 2 && lat.iter().all(|ms| *ms < 200), "attached within 200 ms of exec: {lat:?}");
    stopped.check_data_model().expect("data model");
}

/// A Go binary whose version has unknown offsets is reported once as an `issue` event and
/// left alone: it runs normally and its connection is reported from the ciphertext.
#[test]
fn go_binary_with_unknown_version_is_reported_and_skipped() {
    let _lock = probe_lock();
    let cert = TestCert::new().expect("cert");
    let bin = build_go(cert.dir.path(), "gotls", false);
    let version = String::from_utf8(run(Command::new("go").args(["env", "GOVERSION"])).expect("go env").stdout)
        .expect("utf8")
        .trim()
        .to_string();
    // Same length, a minor version far beyond what tapline knows: go1.19.8 -> go1.99.8.
    let mut fake = version.clone().into_bytes();
    fake[4] = b'9';
    let fake = String::from_utf8(fake).expect("ascii");
    let fake = fake.as_str();
    let mut data = std::fs::read(&bin).unwrap();
    let mut replaced = 0;
    let mut i = 0;
    while let Some(at) = data[i..].windows(version.len()).position(|w| w == version.as_bytes()) {
        data[i + at..i + at + version.len()].copy_from_slice(fake.as_bytes());
        i += at + version.len();
        replaced += 1;
    }
    assert!(replaced > 0, "{version} found in the binary");
    let future = cert.dir.path().join("gotls-future");
    std::fs::write(&future, &data).unwrap();
    std::fs::set_permissions(&future, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let (_server, port, server_cert) = start_https_server("127.0.0.1", None).expect("server");
    let agent = Agent::start(Some(FULL_CAPTURE), &[]).expect("agent");
    for _ in 0..2 {
        let out = run(Command::new(&future)
            .arg("client")
            .arg(format!("https://tapline.test:{port}/future"))
            .arg(&server_cert.cert)
            .arg("300"))
        .expect("the skipped binary runs normally");
        assert_eq!(out.stdout, b"hello /future");
    }
    let ev = agent
        .wait_for(Duration::from_secs(15), "the issue event and both connections", |ev| {
            items(ev, "issue").iter().any(|i| i["error"] == "gotls_unsupported_go_version")
                && connections_to(ev, port, "egress-internal").len() == 2
        })
        .expect("issue");
    for c in connections_to(&ev, port, "egress-internal") {
        assert_eq!(c["l7Protocol"], "other", "not decrypted: {c}");
        assert_eq!(c["tlsVersion"], 772);
        assert_eq!(c["meta"]["endpointId"], "tapline.test");
    }
    let issues: Vec<&Value> =
        items(&ev, "issue").into_iter().filter(|i| i["error"] == "gotls_unsupported_go_version").collect();
    assert_eq!(issues.len(), 1, "reported once for two runs: {issues:#?}");
    assert!(issues[0]["triggerReasons"][0].as_str().unwrap_or("").contains(fake), "{:#?}", issues[0]);
    agent.stop().expect("stop").check_data_model().expect("data model");
}
