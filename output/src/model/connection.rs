//! The `connection` event.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{Direction, L7Protocol, is_false, is_zero_u32};

/// Connection tags: `map[string][]string`, keys sorted, values deduplicated in insertion order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tags(pub BTreeMap<String, Vec<String>>);

impl Tags {
    /// Adds `value` under `key` (lowercased) unless it is already there.
    pub fn add(&mut self, key: &str, value: &str) {
        let values = self.0.entry(key.to_ascii_lowercase()).or_default();
        if !values.iter().any(|v| v == value) {
            values.push(value.to_string());
        }
    }

    /// The values of `key`.
    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The `key:value` list form used by `issue` events.
    pub fn pairs(&self) -> Vec<String> {
        self.0.iter().flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}:{v}"))).collect()
    }
}

/// `meta` of a connection event (the only event where it is nested).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionMeta {
    /// Unique id of the connection.
    pub connection_id: String,
    /// Destination domain or IP.
    pub endpoint_id: String,
    /// TLS libraries hooked for this flow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_probe_types_detected: Vec<String>,
    /// True once TLS plaintext was seen.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tls_probe_introspected: bool,
}

/// An address: `{family, ip, port}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetAddr {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// The IP as text.
    pub ip: String,
    /// The port.
    pub port: u16,
}

impl Default for NetAddr {
    fn default() -> Self {
        NetAddr { family: "ipv4".into(), ip: "0.0.0.0".into(), port: 0 }
    }
}

impl From<SocketAddr> for NetAddr {
    fn from(a: SocketAddr) -> Self {
        // A v4-mapped IPv6 address is reported as the IPv4 address it is.
        let ip = match a.ip() {
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => std::net::IpAddr::V4(v4),
                None => std::net::IpAddr::V6(v6),
            },
            v4 => v4,
        };
        NetAddr { family: if ip.is_ipv4() { "ipv4" } else { "ipv6" }.into(), ip: ip.to_string(), port: a.port() }
    }
}

/// A Kubernetes pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
}

/// A container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Container id.
    pub id: String,
    /// Container name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Image, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pod, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
}

/// One end of a connection. The local end carries process details; the remote end only its address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// IP and port.
    pub address: NetAddr,
    /// Host name of the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Full executable path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// User id (root's 0 is shown, unlike upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u32>,
    /// Container, when the process runs in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
}

/// The reporting agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct System {
    /// Host name.
    pub hostname: String,
    /// Always `tapline`.
    pub agent: String,
    /// Id of this agent run.
    pub agent_instance: String,
}

/// The `connection` event: a TCP connection's lifecycle and attribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// Ids.
    pub meta: ConnectionMeta,
    /// Grouping tags (bin, host, ip, protocol, strategy, ...).
    pub tags: Tags,
    /// True on the last report of the connection.
    #[serde(default, skip_serializing_if = "is_false")]
    pub finalized: bool,
    /// egress-external, egress-internal or ingress.
    pub direction: Direction,
    /// Report counter of a long connection (omitted when 0).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub part: u32,
    /// `tcp`.
    pub socket_protocol: String,
    /// http1, http2, grpc, dns or other.
    pub l7_protocol: L7Protocol,
    /// Numeric TLS version (771 = 1.2, 772 = 1.3), when TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<u16>,
    /// The reporting agent.
    pub system: System,
    /// The source end (the process for egress).
    pub source: Endpoint,
    /// The destination end (the process for ingress).
    pub destination: Endpoint,
    /// Bytes read by the process (omitted when nothing moved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
    /// Bytes written by the process (omitted when nothing moved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Time of this report.
    pub timestamp: String,
    /// When the connection was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When it closed (final report only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
}
