//! The Qpoint data model: EventStore events (camelCase, metadata only) and the
//! ObjectStore `HttpTransaction` (snake_case, headers and base64 bodies).
//!
//! Field order is JSON order; optional fields are omitted, never empty strings.

mod connection;
mod records;
mod text;
mod transaction;

pub use connection::{Connection, ConnectionMeta, Container, Endpoint, NetAddr, Pod, System, Tags};
pub use records::{ArtifactRecord, ArtifactType, Issue, Request, Summary};
pub use transaction::{BodyInfo, Headers, HttpTransaction, TxnMetadata, TxnRequest, TxnResponse};

use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Direction of a connection relative to the captured process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Outbound to a public address.
    #[serde(rename = "egress-external")]
    EgressExternal,
    /// Outbound to a private, loopback or link-local address.
    #[serde(rename = "egress-internal")]
    EgressInternal,
    /// Inbound: the process is the server.
    #[serde(rename = "ingress")]
    Ingress,
}

/// Whether an address is internal: private, loopback, link-local, CGNAT, unspecified, ULA.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback() || v6.is_unspecified() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

impl Direction {
    /// Ingress for the server side; otherwise internal or external by the destination address.
    pub fn classify(remote_ip: IpAddr, is_server_side: bool) -> Direction {
        if is_server_side {
            Direction::Ingress
        } else if is_internal(remote_ip) {
            Direction::EgressInternal
        } else {
            Direction::EgressExternal
        }
    }

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::EgressExternal => "egress-external",
            Direction::EgressInternal => "egress-internal",
            Direction::Ingress => "ingress",
        }
    }
}

/// The layer-7 protocol of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L7Protocol {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2.
    Http2,
    /// gRPC over HTTP/2.
    Grpc,
    /// DNS.
    Dns,
    /// Anything tapline does not parse.
    Other,
}

impl L7Protocol {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            L7Protocol::Http1 => "http1",
            L7Protocol::Http2 => "http2",
            L7Protocol::Grpc => "grpc",
            L7Protocol::Dns => "dns",
            L7Protocol::Other => "other",
        }
    }
}

/// RFC 3339 in UTC with nanoseconds, e.g. `2025-10-24T18:54:54.510499628Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");
    dt.format(&fmt).unwrap_or_else(|_| "1970-01-01T00:00:00.000000000Z".to_string())
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

pub(crate) fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

pub(crate) fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn classify_table() {
        let cases = [
            ("10.1.2.3", Direction::EgressInternal),
            ("172.16.0.1", Direction::EgressInternal),
            ("172.31.255.1", Direction::EgressInternal),
            ("172.32.0.1", Direction::EgressExternal),
            ("192.168.1.1", Direction::EgressInternal),
            ("127.0.0.1", Direction::EgressInternal),
            ("169.254.1.1", Direction::EgressInternal),
            ("100.64.0.1", Direction::EgressInternal),
            ("::1", Direction::EgressInternal),
            ("fe80::1", Direction::EgressInternal),
            ("fd00::1", Direction::EgressInternal),
            ("::ffff:10.0.0.1", Direction::EgressInternal),
            ("198.51.100.2", Direction::EgressExternal),
            ("8.8.8.8", Direction::EgressExternal),
            ("2001:db8::1", Direction::EgressExternal),
        ];
        for (ip, want) in cases {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(Direction::classify(ip, false), want, "{ip}");
            assert_eq!(Direction::classify(ip, true), Direction::Ingress);
        }
    }

    #[test]
    fn rfc3339_has_nanoseconds_and_z() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_761_332_094, 510_499_628);
        assert_eq!(rfc3339(t), "2025-10-24T18:54:54.510499628Z");
    }

    #[test]
    fn enums_serialize_as_the_spec_strings() {
        assert_eq!(serde_json::to_string(&Direction::EgressExternal).ok().as_deref(), Some("\"egress-external\""));
        assert_eq!(serde_json::to_string(&L7Protocol::Http1).ok().as_deref(), Some("\"http1\""));
        assert_eq!(L7Protocol::Other.as_str(), "other");
    }
}
