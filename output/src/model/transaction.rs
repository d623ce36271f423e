//! The `HttpTransaction` object (ObjectStore; snake_case, base64 bodies).

use std::fmt;

use base64::Engine;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Direction, is_zero_u64};

/// Headers in wire order, serialized as a JSON object. A repeated name is collapsed into
/// one entry whose values are joined with ", " (the object maps names to single strings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// Appends a header (joining the value onto an earlier header of the same name, case-insensitively).
    pub fn push(&mut self, name: String, value: String) {
        if let Some((_, v)) = self.0.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            v.push_str(", ");
            v.push_str(&value);
        } else {
            self.0.push((name, value));
        }
    }

    /// The value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of header names to strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Headers, A::Error> {
                let mut h = Headers::default();
                while let Some((k, v)) = a.next_entry::<String, String>()? {
                    h.push(k, v);
                }
                Ok(h)
            }
        }
        d.deserialize_map(V)
    }
}

mod b64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)).transpose()
    }
}

/// Source attribution of a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    /// Process id, as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_id: Option<String>,
    /// Full executable path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_exe: Option<String>,
    /// Container name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// Container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_image: Option<String>,
    /// Pod name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Pod namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// Bytes the process sent for this transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    /// Bytes the process received for this transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
    /// The transaction's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The connection's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The connection's endpoint id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
}

/// The request side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    /// HTTP method.
    pub method: String,
    /// Complete URL.
    pub url: String,
    /// http or https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// URL path (no query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Host header / :authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// http1 or http2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The transaction's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// User-Agent header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Content-Type header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// All headers (level headers and full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    /// The body, base64 (level full, when there is one).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64")]
    pub body: Option<Vec<u8>>,
    /// What was done to the stored body (size, truncation, content decoding).
    #[serde(flatten)]
    pub body_info: BodyInfo,
}

/// How a stored body relates to what crossed the wire (tapline's additions; all omitted when
/// there is nothing to say, so qtap consumers see the same object).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyInfo {
    /// Length of the whole body on the wire (after transfer framing, before content decoding),
    /// present when the body was not stored whole or was decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_size: Option<u64>,
    /// The stored body was cut at `--http-buffer-size`.
    #[serde(default, skip_serializing_if = "super::is_false")]
    pub body_truncated: bool,
    /// The Content-Encoding removed before storing, e.g. `gzip` or `gzip, br`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_decoded_from: Option<String>,
    /// Why the body could not be decoded: it is stored as it crossed the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_decode_error: Option<String>,
}

/// The response side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// HTTP status.
    pub status: u16,
    /// Content-Type header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// All headers (level headers and full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    /// The body, base64 (level full, when there is one).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64")]
    pub body: Option<Vec<u8>>,
    /// What was done to the stored body (size, truncation, content decoding).
    #[serde(flatten)]
    pub body_info: BodyInfo,
}

/// A complete HTTP request and response as stored in the ObjectStore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpTransaction {
    /// Source attribution.
    pub metadata: TxnMetadata,
    /// The request.
    pub request: TxnRequest,
    /// The response, when one arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<TxnResponse>,
    /// When the transaction ended (RFC 3339, nanoseconds, UTC).
    pub transaction_time: String,
    /// Response head time minus request head time.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub duration_ms: u64,
    /// Traffic direction.
    pub direction: Direction,
}
