//! End-to-end test harness: starts the real `tapline` binary (real eBPF, as root), real
//! servers and clients, collects the NDJSON it prints, fetches stored objects, and runs
//! the data-model checker from `../shared/spec/check-events.py` on what was captured.
//!
//! Capture is system-wide, so every test filters the events it asserts on by port, pid or
//! marker, and tests that load probes take [`probe_lock`] so they run one at a time.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A qtap configuration that captures everything: every direction, loopback included, level
/// `full`, events on stdout, objects in the local store.
pub const FULL_CAPTURE: &str = r#"
version: 2
services:
  event_stores: [{id: console, type: stdout}]
  object_stores: [{id: disk, type: local}]
stacks:
  all: {plugins: [{type: http_capture, config: {level: full}}]}
tap:
  direction: all
  ignore_loopback: false
  http: {stack: all}
"#;

/// The workspace root (parent of `tests/`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The `tapline` binary under test: `$TAPLINE_BIN`, else `target/debug/tapline`.
pub fn bin_path() -> PathBuf {
    if let Ok(p) = std::env::var("TAPLINE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| workspace().join("target"));
    target.join("debug").join("tapline")
}

/// The data-model checker shipped beside the repo.
pub fn checker_path() -> PathBuf {
    workspace().join("../shared/spec/check-events.py")
}

/// A test fixture file.
pub fn fixture(name: &str) -> PathBuf {
    workspace().join("tests/fixtures").join(name)
}

/// An exclusive lock held by every test that loads probes (they see each other's traffic
/// and share the kernel); released on drop.
pub struct ProbeLock(#[allow(dead_code)] File);

/// Takes the machine-wide probe lock (blocks until free).
pub fn probe_lock() -> ProbeLock {
    let f = File::create("/tmp/tapline-probe-tests.lock").expect("create lock file");
    // SAFETY: flock on a file descriptor we own; it is released when the File is closed.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock failed");
    ProbeLock(f)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A running agent.
pub struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    /// Its data directory (local object store under `objects/`).
    data_dir: Option<DataDir>,
    /// The address of its /metrics endpoint.
    pub http: String,
    stderr_path: PathBuf,
    config: Option<PathBuf>,
}

/// What a stopped agent left behind.
pub struct Stopped {
    /// Exit status.
    pub status: ExitStatus,
    /// Every stdout line.
    pub lines: Vec<String>,
    /// Its stderr.
    pub stderr: String,
    /// Its data directory.
    pub data_dir: DataDir,
}

/// An agent's data directory: a temporary one (removed with it) or one the test keeps across
/// agent runs.
pub enum DataDir {
    /// Removed on drop.
    Temp(tempfile::TempDir),
    /// Kept.
    Kept(PathBuf),
}

impl DataDir {
    /// The path.
    pub fn path(&self) -> &Path {
        match self {
            DataDir::Temp(t) => t.path(),
            DataDir::Kept(p) => p,
        }
    }
}

impl Agent {
    /// Starts the agent with an optional config (YAML text) and extra arguments, and waits for /readyz.
    pub fn start(config: Option<&str>, extra: &[&str]) -> Result<Agent> {
        Self::start_with(config, DataDir::Temp(tempfile::tempdir()?), extra)
    }

    /// Like [`Agent::start`], with a data directory the test keeps (spools survive restarts).
    pub fn start_in(config: Option<&str>, data_dir: &Path, extra: &[&str]) -> Result<Agent> {
        std::fs::create_dir_all(data_dir)?;
        Self::start_with(config, DataDir::Kept(data_dir.to_path_buf()), extra)
    }

    fn start_with(config: Option<&str>, data_dir: DataDir, extra: &[&str]) -> Result<Agent> {
        let port = free_port();
        let http = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(bin_path());
        cmd.arg("--data-dir").arg(data_dir.path()).arg("--http-listen").arg(&http).arg("--log-level").arg("info");
        let config_path = match config {
            Some(yaml) => {
                let p = data_dir.path().join("qtap.yaml");
                std::fs::write(&p, yaml)?;
                cmd.arg("--config").arg(&p);
                Some(p)
            }
            None => None,
        };
        cmd.args(extra);
        let stderr_path = data_dir.path().join("agent.stderr");
        cmd.stdout(Stdio::piped()).stderr(File::create(&stderr_path)?).stdin(Stdio::null());
        let mut child = cmd.spawn().with_context(|| format!("spawn {}", bin_path().display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => sink.lock().expect("lines").push(l),
                    Err(_) => break,
                }
            }
        });
        let mut agent = Agent {
            child,
            lines,
            reader: Some(reader),
            data_dir: Some(data_dir),
            http,
            stderr_path,
            config: config_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = agent.child.try_wait() {
                bail!("agent exited during start-up ({status}): {}", agent.stderr());
            }
            if http_get(&agent.http, "/readyz").map(|(code, _)| code == 200).unwrap_or(false) {
                return Ok(agent);
            }
            if Instant::now() > deadline {
                bail!("agent not ready after 30 s: {}", agent.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent's stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Every envelope printed so far, parsed.
    pub fn events(&self) -> Vec<Value> {
        let lines = self.lines.lock().expect("lines").clone();
        lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Waits until `pred` holds on the events printed so far.
    pub fn wait_for(&self, timeout: Duration, what: &str, pred: impl Fn(&[Value]) -> bool) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let ev = self.events();
            if pred(&ev) {
                return Ok(ev);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}; {} events so far; stderr:\n{}", ev.len(), self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GETs a path of the agent's HTTP endpoint.
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        http_get(&self.http, path)
    }

    /// The configuration file the agent was started with.
    pub fn config_path(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// The agent's data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.as_ref().map(|d| d.path()).unwrap_or(Path::new("/nonexistent"))
    }

    /// Runs `tapline fetch -` with `line` (an artifact_record envelope) on its stdin.
    pub fn fetch_line(&self, line: &str) -> Result<Vec<u8>> {
        let mut cmd = Command::new(bin_path());
        cmd.arg("--data-dir").arg(self.data_dir());
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        let mut child =
            cmd.args(["fetch", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        child.stdin.take().context("stdin")?.write_all(line.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("tapline fetch - failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(out.stdout)
    }

    /// Runs `tapline fetch` for `digest` against this agent's stores.
    pub fn fetch(&self, digest: &str) -> Result<Vec<u8>> {
        let mut cmd = Command::new(bin_path());
        cmd.arg("--data-dir").arg(self.data_dir());
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        let out = cmd.arg("fetch").arg(digest).stderr(Stdio::piped()).output()?;
        if !out.status.success() {
            bail!("fetch {digest} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(out.stdout)
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Sends SIGTERM and waits for the agent to exit.
    pub fn stop(self) -> Result<Stopped> {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(30))
    }

    /// Waits (without signalling) for the agent to exit.
    pub fn wait_exit(mut self, timeout: Duration) -> Result<Stopped> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("agent did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let lines = self.lines.lock().expect("lines").clone();
        let stderr = self.stderr();
        Ok(Stopped { status, lines, stderr, data_dir: self.data_dir.take().context("data dir")? })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Stopped {
    /// Parsed envelopes.
    pub fn events(&self) -> Vec<Value> {
        self.lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Writes the stdout lines to `events.ndjson` in the data dir and runs the data-model
    /// checker on them and on the local object store's objects. Fails on any error it reports.
    pub fn check_data_model(&self) -> Result<String> {
        self.check(true)
    }

    /// [`Stopped::check_data_model`] on the events only (objects stored as `format: text`
    /// are not JSON, which the checker expects).
    pub fn check_events_only(&self) -> Result<String> {
        self.check(false)
    }

    fn check(&self, with_objects: bool) -> Result<String> {
        let events = self.data_dir.path().join("events.ndjson");
        let objects = self.data_dir.path().join("objects");
        let objects = (with_objects && objects.exists()).then_some(objects);
        let mut f = File::create(&events)?;
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        let checker = checker_path();
        if !checker.exists() {
            bail!("the data-model checker {} is missing (../shared must sit beside the repo)", checker.display());
        }
        let mut cmd = Command::new("python3");
        cmd.arg(&checker).arg(&events);
        if let Some(o) = &objects {
            cmd.arg("--objects").arg(o);
        }
        let out = cmd.output()?;
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("check-events.py failed:\n{report}");
        }
        Ok(report)
    }
}

/// A minimal HTTP/1.0 GET (the agent's own endpoint; no client library needed).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let code = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("status")?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// A child process killed on drop.
pub struct Proc {
    /// The child.
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `python3 tests/fixtures/<script> <args>`, a server that prints its port on its first
/// stdout line; returns it and the port.
pub fn start_fixture<S: AsRef<std::ffi::OsStr>>(script: &str, args: &[S]) -> Result<(Proc, u16)> {
    let mut child = Command::new("python3")
        .arg(fixture(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    let port = line.trim().parse().with_context(|| format!("{script} printed {line:?}"))?;
    Ok((Proc { child }, port))
}

/// The test HTTP server (tests/fixtures/http_server.py) on `host`; returns it and its port.
pub fn start_http_server(host: &str) -> Result<(Proc, u16)> {
    start_fixture("http_server.py", &[host])
}

/// The test HTTPS server: the same server behind TLS with a fresh self-signed certificate for
/// `tapline.test`, `localhost` and 127.0.0.1. `tls_max` caps the version ("1.2").
pub fn start_https_server(host: &str, tls_max: Option<&str>) -> Result<(Proc, u16, TestCert)> {
    let cert = TestCert::new()?;
    let mut args: Vec<std::ffi::OsString> = vec![host.into(), cert.cert.clone().into(), cert.key.clone().into()];
    if let Some(v) = tls_max {
        args.push(v.into());
    }
    let (proc, port) = start_fixture("http_server.py", &args)?;
    Ok((proc, port, cert))
}

/// Waits until something listens on 127.0.0.1:`port`, without connecting to it (a probe
/// connection would be a client to servers that take one at a time).
pub fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let suffix = format!(":{port:04X}");
    let listening = || {
        ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
            std::fs::read_to_string(f).unwrap_or_default().lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && cols[1].ends_with(&suffix) && cols[3] == "0A"
            })
        })
    };
    while !listening() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts nginx (from apt) in the foreground with one `server { ... }` per entry of `servers`
/// (their bodies), the test certificate as the default TLS certificate, its files in the
/// certificate's temporary directory. Returns once every `listen` port accepts.
pub fn start_nginx(cert: &TestCert, servers: &[String]) -> Result<Proc> {
    let dir = cert.dir.path();
    let blocks: String = servers.iter().map(|b| format!("  server {{ {b} }}\n")).collect();
    let conf = format!(
        "daemon off; master_process off; user root; pid {d}/nginx.pid;\n\
         error_log {d}/error.log;\nevents {{ worker_connections 512; }}\n\
         http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};\n\
         uwsgi_temp_path {d}; scgi_temp_path {d};\n\
         ssl_certificate {c}; ssl_certificate_key {k};\n{blocks}}}\n",
        d = dir.display(),
        c = cert.cert.display(),
        k = cert.key.display(),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("nginx (apt install nginx)")?;
    let proc = Proc { child };
    for b in servers {
        for port in
            b.split("listen ").skip(1).filter_map(|r| r.split([' ', ';']).next()?.rsplit(':').next()?.parse().ok())
        {
            wait_listening(port);
        }
    }
    Ok(proc)
}

/// A self-signed certificate and key in a temporary directory.
pub struct TestCert {
    /// The directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM key.
    pub key: PathBuf,
    /// The certificate to trust: the issuing CA (or `cert` itself when self-signed).
    pub ca: PathBuf,
}

impl TestCert {
    /// Makes one with openssl (CN tapline.test; SANs tapline.test, localhost, 127.0.0.1, ::1).
    pub fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30"])
            .args([
                "-subj",
                "/CN=tapline.test",
                "-addext",
                "subjectAltName=DNS:tapline.test,DNS:localhost,IP:127.0.0.1,IP:::1",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert))?;
        Ok(Self { dir, ca: cert.clone(), cert, key })
    }

    /// A leaf certificate (CA:FALSE, SANs tapline.test, localhost, 127.0.0.1) signed by a fresh
    /// test CA (`ca`): what strict verifiers such as rustls require (they refuse a CA
    /// certificate as a server's own certificate).
    pub fn signed() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let p = |n: &str| dir.path().join(n);
        let (ca, ca_key, key, csr, cert, ext) =
            (p("ca.pem"), p("ca.key"), p("key.pem"), p("leaf.csr"), p("cert.pem"), p("leaf.ext"));
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=tapline test CA"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca))?;
        run(Command::new("openssl")
            .args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=tapline.test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr))?;
        std::fs::write(
            &ext,
            "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:tapline.test,DNS:localhost,IP:127.0.0.1\n",
        )?;
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "30", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .args(["-CAcreateserial", "-extfile"])
            .arg(&ext)
            .arg("-out")
            .arg(&cert))?;
        Ok(Self { dir, cert, key, ca })
    }
}

/// The one element of `v`, failing with the list when there are none or several.
pub fn one<'a>(v: Vec<&'a Value>, what: &str) -> &'a Value {
    assert_eq!(v.len(), 1, "expected exactly one {what}, got {}: {v:#?}", v.len());
    v[0]
}

/// The object an artifact_record points at, fetched with `tapline fetch` and checked against its digest.
pub fn fetch_object(agent: &Agent, record: &Value) -> Value {
    let digest = record["digest"].as_str().expect("digest");
    let bytes = agent.fetch(digest).expect("fetch");
    assert_eq!(sha1_hex(&bytes), digest, "fetch returns the exact bytes whose SHA-1 is the digest");
    serde_json::from_slice(&bytes).expect("object is JSON")
}

/// The `item` of every envelope of event kind `kind`.
pub fn items<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).map(|e| &e["item"]).collect()
}

/// Connection events whose destination port is `port` and whose direction is `direction`.
pub fn connections_to<'a>(events: &'a [Value], port: u16, direction: &str) -> Vec<&'a Value> {
    items(events, "connection")
        .into_iter()
        .filter(|c| c["destination"]["address"]["port"] == port && c["direction"] == direction)
        .collect()
}

/// artifact_records of every connection to `port` seen from `direction`.
pub fn records_on<'a>(events: &'a [Value], port: u16, direction: &str) -> Vec<&'a Value> {
    connections_to(events, port, direction)
        .into_iter()
        .flat_map(|c| artifacts_of(events, c["meta"]["connectionId"].as_str().unwrap_or("")))
        .collect()
}

/// artifact_records of a connection id.
pub fn artifacts_of<'a>(events: &'a [Value], connection_id: &str) -> Vec<&'a Value> {
    items(events, "artifact_record").into_iter().filter(|a| a["connectionId"] == connection_id).collect()
}

/// SHA-1 hex of bytes.
pub fn sha1_hex(b: &[u8]) -> String {
    use sha1::Digest;
    let d = sha1::Sha1::digest(b);
    d.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs a command to completion, failing with its stderr when it fails.
pub fn run(cmd: &mut Command) -> Result<std::process::Output> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(out)
}

/// Decodes a base64 body.
pub fn b64(s: &Value) -> Vec<u8> {
    use base64::Engine;
    s.as_str().and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok()).unwrap_or_default()
}
