//! The `artifact_record` and `issue` events (flat: no nested `meta`).

use serde::{Deserialize, Serialize};

use super::{Direction, is_zero_u64};

/// What an artifact record points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArtifactType {
    /// A whole `HttpTransaction` object.
    #[serde(rename = "http_transaction")]
    HttpTransaction,
    /// Request headers only.
    #[serde(rename = "req-headers")]
    ReqHeaders,
    /// Response headers only.
    #[serde(rename = "res-headers")]
    ResHeaders,
    /// Request body only.
    #[serde(rename = "req-body")]
    ReqBody,
    /// Response body only.
    #[serde(rename = "res-body")]
    ResBody,
}

/// The summary of an `http_transaction` record (snake_case like the object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The connection's id.
    pub connection_id: String,
    /// The transaction's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Traffic direction.
    pub direction: Direction,
    /// Response head time minus request head time, at least 1.
    pub duration_ms: u64,
    /// Full path of the process; omitted when it could not be read (the process was gone).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub process_exe: String,
    /// Request host (authority without port).
    pub request_host: String,
    /// GET, POST, ...
    pub request_method: String,
    /// http1 or http2.
    pub request_protocol: String,
    /// http or https.
    pub request_scheme: String,
    /// Content-Type of the request body (only when there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_content_type: Option<String>,
    /// HTTP status.
    pub response_status: u16,
    /// Content-Type of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_content_type: Option<String>,
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
}

/// The `artifact_record` event: where an object lives, and a summary of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRecord {
    /// The connection's id.
    pub connection_id: String,
    /// The connection's endpoint id.
    pub endpoint_id: String,
    /// The transaction's id.
    pub request_id: String,
    /// When the record was made.
    pub timestamp: String,
    /// What the digest points at.
    #[serde(rename = "type")]
    pub artifact_type: ArtifactType,
    /// Lowercase hex SHA-1 of the stored object's bytes.
    pub digest: String,
    /// Where to fetch the object.
    pub url: String,
    /// Summary (only on http_transaction records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
}

/// The `issue` event (flat).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Issue {
    /// The connection's id.
    pub connection_id: String,
    /// The connection's endpoint id.
    pub endpoint_id: String,
    /// The transaction's id (empty for connection-level issues).
    pub request_id: String,
    /// Connection tags as `key:value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// When the issue was raised.
    pub timestamp: String,
    /// Traffic direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The rule name or issue type.
    pub error: String,
    /// The request URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The request path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The request method.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// The response status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why the rule fired (`plugin:condition`).
    pub trigger_conditions: Vec<String>,
    /// Human reasons.
    pub trigger_reasons: Vec<String>,
    /// How many times this issue was seen (for counted losses), omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub count: u64,
}

/// The `request` event of the `report_usage` plugin (flat, like qtap's `eventstore.Request`):
/// one per HTTP transaction, metadata only. The four `authToken*` fields are always present
/// (empty when the request carried no credential); they never hold the credential itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// The connection's id.
    pub connection_id: String,
    /// The connection's endpoint id.
    pub endpoint_id: String,
    /// The transaction's id.
    pub request_id: String,
    /// Connection tags as `key:value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// When the transaction ended (UTC).
    pub timestamp: String,
    /// Traffic direction.
    pub direction: Direction,
    /// The request URL.
    pub url: String,
    /// The request path.
    pub path: String,
    /// The request method.
    pub method: String,
    /// The response status (0 when no response arrived).
    pub status: u16,
    /// Response head time minus request head time, in ms, at least 1.
    pub duration: u64,
    /// Content-Type of the response.
    pub content_type: String,
    /// MIME category of the response (`app`, `text`, `image`, `audio`, `video`, `font`, `other`).
    pub category: String,
    /// User-Agent of the request.
    pub agent: String,
    /// Bytes the process sent for this transaction.
    pub bytes_sent: u64,
    /// Bytes the process received for this transaction.
    pub bytes_received: u64,
    /// The credential, masked: its scheme and its last four characters (`Bearer …wxyz`).
    pub auth_token_mask: String,
    /// Hex SHA-256 of the credential (an HMAC with the redaction hash key when one is set).
    pub auth_token_hash: String,
    /// Which header carried it: `Authorization`, `X-API-Key`, `Api-Key`, `APIKey`, `X-Auth-Token`.
    pub auth_token_source: String,
    /// `bearer`, `jwt`, `basic`, `api_key`, or another Authorization scheme, lowercased.
    pub auth_token_type: String,
}
