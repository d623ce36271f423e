//! The `report_usage` plugin: one `request` event per HTTP transaction (metadata only), with
//! the credential the request carried described but never included: which header, what
//! kind, a mask revealing at most its last four characters, and a hash to correlate it.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::proto::http1::Header;

/// Headers that carry API credentials, checked after `Authorization`, in qtap's order.
const API_KEY_HEADERS: [&str; 4] = ["X-API-Key", "Api-Key", "APIKey", "X-Auth-Token"];

/// What the event says about the request's credential.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthToken {
    /// `Bearer …wxyz`-style mask.
    pub mask: String,
    /// Hex SHA-256 (or HMAC-SHA256 with the redaction hash key) of the credential.
    pub hash: String,
    /// The header it came from.
    pub source: String,
    /// `bearer`, `jwt`, `basic`, `api_key`, or the Authorization scheme.
    pub kind: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(secret: &str, key: Option<&[u8]>) -> String {
    match key.and_then(|k| Hmac::<Sha256>::new_from_slice(k).ok()) {
        Some(mut mac) => {
            mac.update(secret.as_bytes());
            hex(&mac.finalize().into_bytes())
        }
        None => hex(&Sha256::digest(secret.as_bytes())),
    }
}

/// `…` plus the last four characters of a long enough token, else `…` alone.
fn tail_mask(token: &str) -> String {
    let chars: Vec<char> = token.chars().collect();
    if chars.len() >= 16 { format!("…{}", chars[chars.len() - 4..].iter().collect::<String>()) } else { "…".into() }
}

fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// The credential of a request with headers `headers`, if it carries one.
/// `key` is the redaction hash key (`redaction.hash_key`), when configured.
pub fn auth_token(headers: &[Header], key: Option<&[u8]>) -> Option<AuthToken> {
    let find = |name: &str| headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.trim());
    if let Some(v) = find("authorization").filter(|v| !v.is_empty()) {
        let (scheme, token) = v.split_once(' ').map(|(s, t)| (s, t.trim())).unwrap_or(("", v));
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "bearer" if looks_like_jwt(token) => "jwt".to_string(),
            "" if looks_like_jwt(token) => "jwt".to_string(),
            "" => "api_key".to_string(),
            s => s.to_string(),
        };
        // A basic credential is base64 of user:password: its tail would reveal the password's.
        let mask = if kind == "basic" { "…".to_string() } else { tail_mask(token) };
        let mask = if scheme.is_empty() { mask } else { format!("{scheme} {mask}") };
        return Some(AuthToken { mask, hash: hash(token, key), source: "Authorization".into(), kind });
    }
    API_KEY_HEADERS.iter().find_map(|name| {
        let v = find(name).filter(|v| !v.is_empty())?;
        Some(AuthToken {
            mask: tail_mask(v),
            hash: hash(v, key),
            source: (*name).to_string(),
            kind: if looks_like_jwt(v) { "jwt" } else { "api_key" }.into(),
        })
    })
}

/// The MIME category of a Content-Type: `app`, `text`, `image`, `audio`, `video`, `font`,
/// `multipart`, `other`; empty when there is none.
pub fn mime_category(content_type: &str) -> &'static str {
    let t = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if t.is_empty() {
        return "";
    }
    match t.split('/').next().unwrap_or("") {
        "application" => "app",
        "text" => "text",
        "image" => "image",
        "audio" => "audio",
        "video" => "video",
        "font" => "font",
        "multipart" => "multipart",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Header {
        Header { name: name.into(), value: value.into() }
    }

    #[test]
    fn bearer_jwt_basic_and_api_keys() {
        let t = auth_token(&[h("Authorization", "Bearer abcdefghijklmnopqrstuvwxyz")], None).unwrap();
        assert_eq!((t.mask.as_str(), t.source.as_str(), t.kind.as_str()), ("Bearer …wxyz", "Authorization", "bearer"));
        assert_eq!(t.hash, hex(&Sha256::digest(b"abcdefghijklmnopqrstuvwxyz")));
        assert!(!t.mask.contains("abcdefghijkl"));
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX3NpZ25hdHVyZQ";
        assert_eq!(auth_token(&[h("authorization", &format!("Bearer {jwt}"))], None).unwrap().kind, "jwt");
        let b = auth_token(&[h("Authorization", "Basic dXNlcjpzZWNyZXRwYXNzd29yZA==")], None).unwrap();
        assert_eq!((b.mask.as_str(), b.kind.as_str()), ("Basic …", "basic"));
        let k = auth_token(&[h("x-api-key", "short")], None).unwrap();
        assert_eq!((k.mask.as_str(), k.source.as_str(), k.kind.as_str()), ("…", "X-API-Key", "api_key"));
        assert_eq!(auth_token(&[h("Accept", "*/*")], None), None);
        let keyed = auth_token(&[h("X-Auth-Token", "same-token-value-123")], Some(b"k")).unwrap();
        assert_ne!(keyed.hash, hex(&Sha256::digest(b"same-token-value-123")), "keyed");
        assert_eq!(keyed.hash.len(), 64);
    }

    #[test]
    fn categories() {
        assert_eq!(mime_category("application/json; charset=utf-8"), "app");
        assert_eq!(mime_category("text/html"), "text");
        assert_eq!(mime_category("IMAGE/png"), "image");
        assert_eq!(mime_category("weird"), "other");
        assert_eq!(mime_category(""), "");
    }
}
