//! Connections: one entry per live socket (keyed by the kernel's socket id), with its
//! process, addresses, byte cursors and the protocol state fed by its data records.

pub mod l7;
pub mod stream;

use std::net::SocketAddr;
use std::time::SystemTime;

use tapline_ebpf::{Direction as KernelDirection, Role};
use tapline_output::model::Direction;

use crate::process::ProcessInfo;
use l7::L7State;
use stream::StreamCursor;

/// Everything tapline knows about one TCP connection.
pub struct Connection {
    /// The connection id reported as `meta.connectionId` (xid-style, 20 chars).
    pub id: String,
    /// The kernel's socket id (the userspace key).
    pub sock: u64,
    /// The process that opened (or first used) the socket.
    pub pid: u32,
    /// Its file descriptor in that process.
    pub fd: i32,
    /// Client (connect), server (accept) or unknown (seen first in a data call).
    pub role: Role,
    /// Local address and port.
    pub local: SocketAddr,
    /// Peer address and port.
    pub remote: SocketAddr,
    /// When the connection was first seen.
    pub created_at: SystemTime,
    /// When the last record for it arrived.
    pub last_activity: SystemTime,
    /// The owning process.
    pub process: ProcessInfo,
    /// Bytes written by the process.
    pub egress: StreamCursor,
    /// Bytes read by the process.
    pub ingress: StreamCursor,
    /// Protocol state of the raw socket bytes (for TLS: the handshake reader).
    pub l7: L7State,
    /// The plaintext a TLS library probe saw on this socket, once it saw any.
    pub plain: Option<Box<Plaintext>>,
    /// `tap.filters` says: ignore the TLS plaintext of this process (ciphertext only).
    pub skip_tls: bool,
    /// The kernel skips this process's payload (`tap.filters` `only: [data]`/`[http]`,
    /// `QPOINT_STRATEGY=audit`): position jumps are expected, not losses.
    pub payload_skipped: bool,
    /// For a socket met mid-life (role unknown): whether its local port has a listener.
    pub server_hint: Option<bool>,
    /// An `issue` was raised for this connection's unknown HTTP/2 header state.
    pub hpack_issue_raised: bool,
    /// The name the process resolved the peer's address from (a DNS answer it received).
    pub dns_name: Option<String>,
    /// For a connection to port 53 (DNS over TCP): response bytes of an incomplete message.
    pub dns_tcp: Option<Vec<u8>>,
    /// The HTTP authority (Host header, without port) once seen.
    pub host: Option<String>,
    /// Number of `connection` reports already emitted.
    pub reports: u32,
    /// When the last report was emitted (or the connection created).
    pub last_report: SystemTime,
    /// Whether events for this connection are emitted at all (direction / loopback filters).
    pub reported: bool,
}

/// TLS plaintext of a connection, as a library probe saw it: its own byte positions and its
/// own protocol state (the raw bytes of the socket are ciphertext).
pub struct Plaintext {
    /// The probe family, e.g. `openssl` (reported in `meta.tlsProbeTypesDetected`).
    pub probe: &'static str,
    /// Plaintext written by the process.
    pub egress: StreamCursor,
    /// Plaintext read by the process.
    pub ingress: StreamCursor,
    /// Protocol detection and parsing of the plaintext.
    pub l7: L7State,
}

impl Plaintext {
    /// Plaintext seen by `probe`, nothing parsed yet.
    pub fn new(probe: &'static str) -> Self {
        Self { probe, egress: StreamCursor::default(), ingress: StreamCursor::default(), l7: L7State::default() }
    }

    /// The cursor of a kernel direction and the plaintext's protocol state.
    pub fn stream(&mut self, dir: KernelDirection) -> (&mut StreamCursor, &mut L7State) {
        match dir {
            KernelDirection::Egress => (&mut self.egress, &mut self.l7),
            KernelDirection::Ingress => (&mut self.ingress, &mut self.l7),
        }
    }
}

impl Connection {
    /// The raw-bytes cursor of a kernel direction and the raw protocol state.
    pub fn raw_stream(&mut self, dir: KernelDirection) -> (&mut StreamCursor, &mut L7State) {
        match dir {
            KernelDirection::Egress => (&mut self.egress, &mut self.l7),
            KernelDirection::Ingress => (&mut self.ingress, &mut self.l7),
        }
    }

    /// The application protocol state: the plaintext's for a decrypted TLS connection, else the raw bytes'.
    pub fn app(&self) -> &L7State {
        self.plain.as_ref().map_or(&self.l7, |p| &p.l7)
    }

    /// Whether the connection carries TLS (handshake or records seen, or a probe saw plaintext).
    pub fn is_tls(&self) -> bool {
        self.plain.is_some() || self.l7.tls().is_some()
    }

    /// The cursor of a kernel direction.
    pub fn cursor(&mut self, dir: KernelDirection) -> &mut StreamCursor {
        match dir {
            KernelDirection::Egress => &mut self.egress,
            KernelDirection::Ingress => &mut self.ingress,
        }
    }

    /// Whether the process acts as the server of this connection (ingress traffic).
    /// For sockets seen mid-life, the protocol parser's view of who sends requests decides.
    pub fn is_server_side(&self) -> bool {
        match self.role {
            Role::Server => true,
            Role::Client => false,
            Role::Unknown => match self.server_hint {
                Some(server) => server,
                None => self.app().requests_flow() == Some(KernelDirection::Ingress),
            },
        }
    }

    /// The direction value for events.
    pub fn direction(&self) -> Direction {
        Direction::classify(self.remote.ip(), self.is_server_side())
    }

    /// The endpoint id: the TLS server name (SNI) when sent, else the HTTP host when one was
    /// seen, else the name a DNS answer gave the destination, else the destination IP.
    pub fn endpoint_id(&self) -> String {
        if let Some(sni) = self.l7.tls().and_then(|t| t.sni()) {
            return sni.to_string();
        }
        if let Some(h) = &self.host {
            return h.clone();
        }
        if let Some(n) = self.dns_name.as_ref().filter(|_| !self.is_server_side()) {
            return n.clone();
        }
        let dst = if self.is_server_side() { self.local } else { self.remote };
        dst.ip().to_string()
    }
}

/// Strips the port (and IPv6 brackets) from an HTTP authority: `example.com:8080` → `example.com`.
pub fn host_without_port(authority: &str) -> &str {
    let a = authority.trim();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => a,
    }
}

#[cfg(test)]
mod tests {
    use super::host_without_port;

    #[test]
    fn authority_to_host() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:443"), "::1");
        assert_eq!(host_without_port("127.0.0.1:8000"), "127.0.0.1");
        assert_eq!(host_without_port("::1"), "::1");
    }
}
