//! Blocking Fluent Forward client: one TCP (optionally TLS) connection, the shared-key handshake, PackedForward
//! messages with acks. Retries and backoff belong to the caller (the delivery layer): every failure here is reported
//! at once as [`SendError::Retry`] or [`SendError::Fatal`] and the connection is dropped when it is no longer usable.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tracing::{debug, warn};

use super::codec::{self, Compression, EventTime, Response, Responses};
use crate::event::{Event, envelope_line};
use crate::metrics::ComponentMetrics;

/// Fluent Bit's `buffer_max_size` default is 6,144,000 bytes; messages are kept under this hard cap.
pub const MAX_MESSAGE_BYTES_CAP: usize = 6_000_000;
/// Default message size bound (4 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// TCP connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Room kept for the message framing (array, tag, bin header, options) besides the entries.
const FRAME_OVERHEAD: usize = 128;

/// TLS settings of a Forward connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) that sign the receiver's certificate; default: the webpki (Mozilla) roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (testing only: the connection is encrypted but not authenticated).
    pub insecure_skip_verify: bool,
    /// Client certificate chain and private key PEM files, for receivers that require mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Name checked against the server certificate (SNI too); default: `host`.
    pub server_name: Option<String>,
}

/// Where and how to send Forward messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Receiver host name or IP address.
    pub host: String,
    /// Receiver port (Fluent's default is 24224).
    pub port: u16,
    /// Prefix of every tag: an item tagged `connection` goes out as `<tag_prefix>.connection`. Empty: no prefix.
    pub tag_prefix: String,
    /// TLS, when set.
    pub tls: Option<TlsConfig>,
    /// Shared key of the HELO/PING/PONG handshake (fluentd, Fluent Bit ≥ 3.0 only; Vector has no handshake).
    pub shared_key: Option<String>,
    /// Our hostname in the handshake digest.
    pub self_hostname: String,
    /// User name, for receivers with user authentication (`security.users` / `<user>`).
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
    /// Ask for and wait for an ack of every message (`chunk` option). Without it, a written message counts as sent.
    pub require_ack: bool,
    /// Compression of the entries.
    pub compress: Compression,
    /// How long to wait for an ack (and for the handshake and for a blocked write).
    pub ack_timeout: Duration,
    /// Bound on the entries of one message, before compression (so the frame is bounded too); clamped to
    /// [`MAX_MESSAGE_BYTES_CAP`].
    pub max_message_bytes: usize,
}

impl ForwardConfig {
    /// Defaults for a receiver at `host:port`: tag prefix `tapline`, no TLS, no shared key, acks on, gzip, 30 s ack
    /// timeout, 4 MiB messages, `self_hostname` from the kernel.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ForwardConfig {
            host: host.into(),
            port,
            tag_prefix: "tapline".into(),
            tls: None,
            shared_key: None,
            self_hostname: local_hostname(),
            username: None,
            password: None,
            require_ack: true,
            compress: Compression::Gzip,
            ack_timeout: Duration::from_secs(30),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl Default for ForwardConfig {
    /// [`ForwardConfig::new`] for `127.0.0.1:24224`.
    fn default() -> Self {
        ForwardConfig::new("127.0.0.1", 24224)
    }
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "tapline".into())
}

/// Why a batch was not (completely) delivered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Transient: the receiver is down, closed the connection, did not ack in time or NACKed. Retry with backoff.
    #[error("{0}")]
    Retry(String),
    /// Configuration or credentials problem (wrong shared key, bad certificate, unreadable CA file…). Retrying will
    /// not help until the configuration changes (the delivery layer still retries, slowly).
    #[error("{0}")]
    Fatal(String),
}

/// Encodes one transport item: `tag`, a NUL byte, then the JSON envelope line. JSON text never contains a raw NUL,
/// so the first NUL always ends the tag. The tag is the part after `tag_prefix` (e.g. `connection`).
pub fn item(tag: &str, json_line: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(tag.len() + 1 + json_line.len());
    v.extend_from_slice(tag.as_bytes());
    v.push(0);
    v.extend_from_slice(json_line);
    v
}

/// The item for an event: tagged with its kind (`connection`, `artifact_record`, `issue`), holding the exact
/// stdout envelope line.
pub fn event_item(event: &Event, now: SystemTime) -> Vec<u8> {
    item(event.kind(), &envelope_line(event, now))
}

/// Splits an item into (tag, json); an item without NUL is all JSON and gets the transport's default tag.
fn split_item(it: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match it.iter().position(|&b| b == 0) {
        Some(i) => (Some(&it[..i]), &it[i + 1..]),
        None => (None, it),
    }
}

/// A plain or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// An open, handshaken connection.
struct Conn {
    stream: Stream,
    responses: Responses,
    /// The receiver said `keepalive: false` in its HELO: one message per connection.
    close_after_message: bool,
}

/// One message to send: its tag, its entries, and the index just past its last item in the batch.
struct Message {
    tag: String,
    entries: Vec<Vec<u8>>,
    items_end: usize,
}

/// How waiting for a response ended, short of getting one.
enum ReadFail {
    Eof,
    Timeout,
    Io(io::Error),
    Protocol(String),
}

/// Sends batches of items to one Forward receiver (blocking; one thread at a time).
///
/// Delivery is **at least once**: a batch succeeds only when every message of it was acked. When a batch fails
/// half-way, the transport remembers how many of its items were acked ([`ForwardTransport::acked_items`]) and, when
/// the *same* batch (same items, same order) is sent again, skips that acked prefix; a different batch, or a new
/// transport, sends everything again, so receivers may see duplicates after failures, never losses. A receiver that
/// acks on ingest (Fluent Bit, fluentd, Vector without end-to-end acknowledgements) may still lose what it acked if it
/// crashes before its own output.
///
/// Items that can never be delivered are dropped with a warning and counted as discarded (`invalid_record`: not a
/// JSON object; `too_large`: one record above `max_message_bytes`) instead of blocking the batch forever.
pub struct ForwardTransport {
    cfg: ForwardConfig,
    default_tag: &'static str,
    endpoint: String,
    conn: Option<Conn>,
    tls: Option<Arc<rustls::ClientConfig>>,
    metrics: Option<ComponentMetrics>,
    /// (fingerprint of the last failed batch, how many of its items were acked); its drops were counted.
    resume: Option<(u64, usize)>,
    acked: usize,
}

impl ForwardTransport {
    /// A transport for `cfg`; items without a tag (no NUL) are sent under `default_tag` (e.g. `"connection"`).
    /// Nothing is opened until the first send.
    pub fn new(mut cfg: ForwardConfig, default_tag: &'static str) -> Self {
        cfg.max_message_bytes = cfg.max_message_bytes.clamp(FRAME_OVERHEAD * 8, MAX_MESSAGE_BYTES_CAP);
        let endpoint = if cfg.host.contains(':') {
            format!("[{}]:{}", cfg.host, cfg.port)
        } else {
            format!("{}:{}", cfg.host, cfg.port)
        };
        ForwardTransport { cfg, default_tag, endpoint, conn: None, tls: None, metrics: None, resume: None, acked: 0 }
    }

    /// Reports errors (`errors{stage}`: connect, tls, handshake, write, ack) and drops (`discarded{reason}`) through
    /// `metrics`. Received/sent counts are the caller's.
    pub fn with_metrics(mut self, metrics: ComponentMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// `forward`.
    pub fn name(&self) -> &str {
        "forward"
    }

    /// `host:port` of the receiver.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The configuration in use (`max_message_bytes` clamped).
    pub fn config(&self) -> &ForwardConfig {
        &self.cfg
    }

    /// How many items of the last batch were acked (all of them after a success).
    pub fn acked_items(&self) -> usize {
        self.acked
    }

    /// Whether a connection is open.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Drops the connection if the receiver closed it (call when there is nothing to send).
    pub fn idle(&mut self) {
        if self.conn.as_ref().is_some_and(|c| !peer_alive(c.stream.tcp())) {
            debug!(endpoint = %self.endpoint, "forward receiver closed the idle connection");
            self.disconnect();
        }
    }

    /// Closes the connection (the next send reconnects).
    pub fn disconnect(&mut self) {
        if let Some(mut c) = self.conn.take() {
            if let Stream::Tls(s) = &mut c.stream {
                s.conn.send_close_notify();
                let _ = s.flush();
            }
            let _ = c.stream.tcp().shutdown(Shutdown::Both);
        }
    }

    fn error(&self, stage: &str) {
        if let Some(m) = &self.metrics {
            m.error(stage);
        }
    }

    fn discard(&self, reason: &str, n: u64) {
        if let Some(m) = &self.metrics {
            m.discarded(reason, n);
        }
    }

    /// Delivers `items` (see [`item`]): consecutive items with the same tag share PackedForward messages of at most
    /// `max_message_bytes`; each message gets a fresh chunk id and, with `require_ack`, must be acked before the next
    /// one goes. `Ok` means every item was acked (or written, without acks). See the type's doc for what a failure
    /// leaves behind.
    pub fn send_batch(&mut self, items: &[Vec<u8>]) -> Result<(), SendError> {
        let fp = fingerprint(items);
        // Retrying the batch that failed last: skip its acked prefix, and its drops were counted already.
        let (skip, counted) = match self.resume {
            Some((f, n)) if f == fp && n <= items.len() => (n, items.len()),
            _ => (0, 0),
        };
        self.acked = skip;
        let messages = self.plan(items, skip, counted);
        for msg in &messages {
            if let Err(e) = self.send_message(msg) {
                self.resume = Some((fp, self.acked));
                return Err(e);
            }
            self.acked = msg.items_end;
        }
        self.acked = items.len();
        self.resume = None;
        Ok(())
    }

    /// Encodes and groups the items from `skip` on into messages under the size bound; drops of items before
    /// `counted` are not logged or counted again.
    fn plan(&self, items: &[Vec<u8>], skip: usize, counted: usize) -> Vec<Message> {
        let budget = self.cfg.max_message_bytes - FRAME_OVERHEAD;
        let mut out: Vec<Message> = Vec::new();
        let mut cur: Option<(Vec<u8>, Message, usize)> = None; // (raw tag, message, entry bytes)
        let (mut invalid, mut too_large) = (0u64, 0u64);
        let fallback = EventTime::now();
        for (i, it) in items.iter().enumerate().skip(skip) {
            let (tag, json) = split_item(it);
            let tag = tag.unwrap_or(self.default_tag.as_bytes());
            let entry = match codec::encode_entry_at_record_time(json, fallback) {
                Ok(e) => e,
                Err(e) => {
                    if i >= counted {
                        invalid += 1;
                        warn!(endpoint = %self.endpoint, error = %e, "dropping a record that cannot be sent over Forward");
                    }
                    if let Some((_, m, _)) = cur.as_mut() {
                        m.items_end = i + 1;
                    }
                    continue;
                }
            };
            if entry.len() + tag.len() > budget {
                if i >= counted {
                    too_large += 1;
                    warn!(endpoint = %self.endpoint, bytes = entry.len(), max = self.cfg.max_message_bytes,
                        "dropping a record larger than forward max_message_bytes");
                }
                if let Some((_, m, _)) = cur.as_mut() {
                    m.items_end = i + 1;
                }
                continue;
            }
            let fits = cur.as_ref().is_some_and(|(t, _, n)| t == tag && n + entry.len() + tag.len() <= budget);
            if !fits {
                if let Some((_, m, _)) = cur.take() {
                    out.push(m);
                }
                let full_tag = full_tag(&self.cfg.tag_prefix, &String::from_utf8_lossy(tag));
                cur = Some((tag.to_vec(), Message { tag: full_tag, entries: Vec::new(), items_end: i }, 0));
            }
            if let Some((_, m, n)) = cur.as_mut() {
                *n += entry.len();
                m.entries.push(entry);
                m.items_end = i + 1;
            }
        }
        if let Some((_, m, _)) = cur {
            out.push(m);
        }
        if invalid > 0 {
            self.discard("invalid_record", invalid);
        }
        if too_large > 0 {
            self.discard("too_large", too_large);
        }
        out
    }

    fn send_message(&mut self, msg: &Message) -> Result<(), SendError> {
        let chunk = if self.cfg.require_ack { codec::new_chunk_id() } else { String::new() };
        let frame = codec::packed_forward(&msg.tag, &msg.entries, self.cfg.compress, &chunk);
        if frame.len() > self.cfg.max_message_bytes && msg.entries.len() > 1 {
            // Only possible when gzip expanded incompressible data past the bound: send two halves.
            let half = msg.entries.len() / 2;
            let first = Message { tag: msg.tag.clone(), entries: msg.entries[..half].to_vec(), items_end: 0 };
            let second = Message { tag: msg.tag.clone(), entries: msg.entries[half..].to_vec(), items_end: 0 };
            self.send_message(&first)?;
            return self.send_message(&second);
        }
        let reused = self.conn.is_some();
        if reused && self.conn.as_ref().is_some_and(|c| !peer_alive(c.stream.tcp())) {
            self.disconnect();
        }
        if self.conn.is_none() {
            self.connect()?;
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendError::Retry(format!("forward {}: not connected", self.endpoint)));
        };
        let written = conn.stream.write_all(&frame).and_then(|()| conn.stream.flush());
        if let Err(e) = written {
            self.disconnect();
            self.error("write");
            return Err(SendError::Retry(format!("forward {}: write failed: {e}", self.endpoint)));
        }
        if !self.cfg.require_ack {
            if self.conn.as_ref().is_some_and(|c| c.close_after_message) {
                self.disconnect();
            }
            return Ok(());
        }
        let deadline = Instant::now() + self.cfg.ack_timeout;
        let res = match self.read_response(deadline) {
            Ok(Response::Ack(c)) if c == chunk => Ok(()),
            Ok(Response::Ack(c)) => {
                self.disconnect();
                Err(SendError::Retry(format!(
                    "forward {}: nack: ack for chunk {c:?}, expected {chunk:?}",
                    self.endpoint
                )))
            }
            Ok(Response::Nack) => Err(SendError::Retry(format!(
                "forward {}: nack: the receiver did not accept the message (empty ack map)",
                self.endpoint
            ))),
            Ok(Response::Helo { .. }) => {
                self.disconnect();
                return Err(SendError::Fatal(format!(
                    "forward {}: the receiver requires the shared-key handshake (it sent HELO) but no shared_key is \
                     configured",
                    self.endpoint
                )));
            }
            Ok(Response::Pong { .. }) => {
                self.disconnect();
                Err(SendError::Retry(format!("forward {}: unexpected PONG while waiting for an ack", self.endpoint)))
            }
            Err(ReadFail::Timeout) => {
                self.disconnect();
                Err(SendError::Retry(format!(
                    "forward {}: no ack within {:?}; connection dropped",
                    self.endpoint, self.cfg.ack_timeout
                )))
            }
            Err(ReadFail::Eof) => {
                self.disconnect();
                Err(SendError::Retry(format!(
                    "forward {}: connection closed by the receiver before the ack",
                    self.endpoint
                )))
            }
            Err(ReadFail::Io(e)) => {
                self.disconnect();
                Err(SendError::Retry(format!("forward {}: reading the ack failed: {e}", self.endpoint)))
            }
            Err(ReadFail::Protocol(e)) => {
                self.disconnect();
                Err(SendError::Retry(format!("forward {}: {e}", self.endpoint)))
            }
        };
        if res.is_err() {
            self.error("ack");
        } else if self.conn.as_ref().is_some_and(|c| c.close_after_message) {
            self.disconnect();
        }
        res
    }

    /// Reads until one response is complete or `deadline` passes.
    fn read_response(&mut self, deadline: Instant) -> Result<Response, ReadFail> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(ReadFail::Eof);
        };
        read_response(conn, deadline)
    }

    /// Opens the TCP connection, TLS, and the handshake when a shared key is set.
    fn connect(&mut self) -> Result<(), SendError> {
        let tcp = self.tcp_connect().inspect_err(|_| self.error("connect"))?;
        let stream = match self.cfg.tls.clone() {
            None => Stream::Plain(tcp),
            Some(tls) => Stream::Tls(Box::new(self.tls_connect(&tls, tcp).inspect_err(|_| self.error("tls"))?)),
        };
        let mut conn = Conn { stream, responses: Responses::new(), close_after_message: false };
        if let Some(key) = self.cfg.shared_key.clone() {
            self.handshake(&mut conn, &key).inspect_err(|_| self.error("handshake"))?;
        }
        debug!(endpoint = %self.endpoint, tls = self.cfg.tls.is_some(), "connected to forward receiver");
        self.conn = Some(conn);
        Ok(())
    }

    fn tcp_connect(&self) -> Result<TcpStream, SendError> {
        let addrs = (self.cfg.host.as_str(), self.cfg.port)
            .to_socket_addrs()
            .map_err(|e| SendError::Retry(format!("forward {}: cannot resolve host: {e}", self.endpoint)))?;
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    s.set_write_timeout(Some(self.cfg.ack_timeout))
                        .and_then(|()| s.set_read_timeout(Some(self.cfg.ack_timeout)))
                        .map_err(|e| SendError::Retry(format!("forward {}: {e}", self.endpoint)))?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(SendError::Retry(match last {
            Some(e) => format!("forward {}: cannot connect: {e}", self.endpoint),
            None => format!("forward {}: host resolves to no address", self.endpoint),
        }))
    }

    fn tls_connect(
        &mut self,
        tls: &TlsConfig,
        mut tcp: TcpStream,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, SendError> {
        let config = match &self.tls {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(
                    build_tls_config(tls)
                        .map_err(|e| SendError::Fatal(format!("forward {}: TLS configuration: {e}", self.endpoint)))?,
                );
                self.tls = Some(c.clone());
                c
            }
        };
        let name = tls.server_name.clone().unwrap_or_else(|| self.cfg.host.clone());
        let server_name = ServerName::try_from(name.clone()).map_err(|e| {
            SendError::Fatal(format!("forward {}: invalid TLS server name {name:?}: {e}", self.endpoint))
        })?;
        let mut conn = rustls::ClientConnection::new(config, server_name)
            .map_err(|e| SendError::Fatal(format!("forward {}: TLS setup: {e}", self.endpoint)))?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                return Err(tls_error(&self.endpoint, e));
            }
        }
        Ok(rustls::StreamOwned::new(conn, tcp))
    }

    fn handshake(&self, conn: &mut Conn, key: &str) -> Result<(), SendError> {
        let ep = &self.endpoint;
        let timeout = self.cfg.ack_timeout.min(Duration::from_secs(10));
        let (nonce, auth, keepalive) = match read_response(conn, Instant::now() + timeout) {
            Ok(Response::Helo { nonce, auth, keepalive }) => (nonce, auth, keepalive),
            Ok(other) => {
                return Err(SendError::Fatal(format!("forward {ep}: expected HELO from the receiver, got {other:?}")));
            }
            Err(ReadFail::Timeout) => {
                return Err(SendError::Fatal(format!(
                    "forward {ep}: shared_key is set but the receiver sent no HELO within {timeout:?}: it has no \
                     shared key configured (Vector never has one); remove shared_key or configure it on the receiver"
                )));
            }
            Err(ReadFail::Eof) => {
                return Err(SendError::Retry(format!("forward {ep}: connection closed before HELO")));
            }
            Err(ReadFail::Io(e)) => return Err(SendError::Retry(format!("forward {ep}: waiting for HELO: {e}"))),
            Err(ReadFail::Protocol(e)) => return Err(SendError::Fatal(format!("forward {ep}: during handshake: {e}"))),
        };
        let (ping, salt) = codec::ping(
            &self.cfg.self_hostname,
            key,
            &nonce,
            &auth,
            self.cfg.username.as_deref(),
            self.cfg.password.as_deref(),
        );
        conn.stream
            .write_all(&ping)
            .and_then(|()| conn.stream.flush())
            .map_err(|e| SendError::Retry(format!("forward {ep}: sending PING: {e}")))?;
        match read_response(conn, Instant::now() + timeout) {
            Ok(Response::Pong { ok: true, server_hostname, digest, .. }) => {
                if !codec::verify_pong(&salt, &nonce, key, &server_hostname, &digest) {
                    return Err(SendError::Fatal(format!(
                        "forward {ep}: the receiver's PONG digest does not match our shared key: it does not know the \
                         same shared key"
                    )));
                }
            }
            Ok(Response::Pong { ok: false, reason, .. }) => {
                return Err(SendError::Fatal(format!(
                    "forward {ep}: handshake refused by the receiver: {reason} (check shared_key, username, password)"
                )));
            }
            Ok(other) => return Err(SendError::Fatal(format!("forward {ep}: expected PONG, got {other:?}"))),
            Err(ReadFail::Eof | ReadFail::Io(_)) => {
                return Err(SendError::Fatal(format!(
                    "forward {ep}: shared key rejected: the receiver closed the connection after our PING without a \
                     PONG (Fluent Bit does this for a wrong shared_key or credentials)"
                )));
            }
            Err(ReadFail::Timeout) => {
                return Err(SendError::Retry(format!("forward {ep}: no PONG within {timeout:?}")));
            }
            Err(ReadFail::Protocol(e)) => return Err(SendError::Fatal(format!("forward {ep}: during handshake: {e}"))),
        }
        conn.close_after_message = !keepalive;
        Ok(())
    }
}

impl Drop for ForwardTransport {
    fn drop(&mut self) {
        self.disconnect();
    }
}

fn full_tag(prefix: &str, tag: &str) -> String {
    match (prefix.is_empty(), tag.is_empty()) {
        (true, _) => tag.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{tag}"),
    }
}

fn fingerprint(items: &[Vec<u8>]) -> u64 {
    let mut h = DefaultHasher::new();
    items.len().hash(&mut h);
    for it in items {
        it.hash(&mut h);
    }
    h.finish()
}

/// False when the receiver has closed (EOF or a socket error) — checked without blocking or consuming data.
fn peer_alive(tcp: &TcpStream) -> bool {
    if tcp.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    let alive = match tcp.peek(&mut b) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    };
    tcp.set_nonblocking(false).is_ok() && alive
}

fn read_response(conn: &mut Conn, deadline: Instant) -> Result<Response, ReadFail> {
    let mut buf = [0u8; 4096];
    loop {
        match conn.responses.next_response() {
            Ok(Some(r)) => return Ok(r),
            Ok(None) => {}
            Err(e) => return Err(ReadFail::Protocol(e.to_string())),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadFail::Timeout);
        }
        conn.stream.tcp().set_read_timeout(Some(left)).map_err(ReadFail::Io)?;
        match conn.stream.read(&mut buf) {
            Ok(0) => return Err(ReadFail::Eof),
            Ok(n) => conn.responses.feed(&buf[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(ReadFail::Timeout);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset) => {
                return Err(ReadFail::Eof);
            }
            Err(e) => return Err(ReadFail::Io(e)),
        }
    }
}

/// A TLS handshake failure: certificate problems are Fatal (configuration), the rest Retry.
fn tls_error(endpoint: &str, e: io::Error) -> SendError {
    let tls = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(ce)) => {
            let hint = match ce {
                rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature => {
                    " (unknown CA: set tls.ca_file to the CA that signed the receiver's certificate)"
                }
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. } => {
                    " (the certificate does not name this host: set tls.server_name)"
                }
                _ => "",
            };
            SendError::Fatal(format!(
                "forward {endpoint}: TLS handshake failed: invalid server certificate: {ce:?}{hint}"
            ))
        }
        Some(other) => SendError::Fatal(format!("forward {endpoint}: TLS handshake failed: {other}")),
        None if e.kind() == io::ErrorKind::UnexpectedEof => SendError::Retry(format!(
            "forward {endpoint}: TLS handshake failed: connection closed by the receiver (is it serving TLS?)"
        )),
        None => SendError::Retry(format!("forward {endpoint}: TLS handshake failed: {e}")),
    }
}

/// Builds the rustls client configuration (ring provider, explicitly, so other crates' rustls features don't matter).
fn build_tls_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if tls.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("cannot parse ca_file {}: {e}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!("ca_file {} holds no PEM certificate", path.display()));
                }
                for c in certs {
                    roots.add(c).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    match &tls.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("cannot read client certificate {}: {e}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot parse client certificate {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read client key {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))
        }
    }
}

/// `insecure_skip_verify`: accepts any certificate, still checks the handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
