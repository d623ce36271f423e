//! The remote stores' settings: Fluent Forward (event and object store) and S3 (object
//! store), read from the keys of their `services.*_stores[]` entry, with secrets resolved
//! from the environment and every problem named by its key path.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

use tapline_output::forward::client::{ForwardConfig, TlsConfig};
use tapline_output::forward::codec::Compression;
use tapline_output::s3::S3Config;

use super::{ConfigError, ObjectStoreConfig, ValueSource, ValueSourceType};

/// A secret: inline text, an environment variable (`{type: env, value: NAME}`), or a plain string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    /// `{type: env|text, value: ...}`.
    Source(ValueSource),
    /// A plain string.
    Plain(String),
}

/// Resolves a secret; `path` names it in errors.
pub fn resolve_secret(s: &Secret, origin: &str, path: &str) -> Result<String, ConfigError> {
    match s {
        Secret::Plain(v) => Ok(v.clone()),
        Secret::Source(ValueSource { kind: ValueSourceType::Text, value }) => Ok(value.clone()),
        Secret::Source(ValueSource { kind: ValueSourceType::Env, value }) => {
            std::env::var(value).map_err(|_| ConfigError::Invalid {
                origin: origin.to_string(),
                path: path.to_string(),
                message: format!("environment variable `{value}` is not set"),
            })
        }
    }
}

/// `tls:` of a Forward store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsOptions {
    /// Use TLS.
    pub enabled: bool,
    /// CA bundle to trust (default: the system's web roots).
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (tests only).
    pub insecure_skip_verify: bool,
    /// Client certificate (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Its key (PEM).
    pub key_file: Option<PathBuf>,
    /// Name to verify instead of `host`.
    pub server_name: Option<String>,
}

/// Keys of a `type: forward` store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardOptions {
    /// Receiver host.
    pub host: String,
    /// Receiver port (default 24224).
    #[serde(default = "default_forward_port")]
    pub port: u16,
    /// Tag prefix: tags are `<prefix>.connection`, `.artifact_record`, `.issue`, `.object`.
    #[serde(default = "default_tag_prefix")]
    pub tag_prefix: String,
    /// TLS.
    #[serde(default)]
    pub tls: TlsOptions,
    /// Shared key for the HELO/PING/PONG handshake (Fluent Bit >= 3.0, fluentd).
    #[serde(default)]
    pub shared_key: Option<Secret>,
    /// Our name in the handshake (default: the host name).
    #[serde(default)]
    pub self_hostname: Option<String>,
    /// User name (with `shared_key`, when the receiver has `security.users`).
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `username`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Wait for the receiver's ack of every message (default true).
    #[serde(default = "yes")]
    pub require_ack: bool,
    /// `gzip` (default) or `none`.
    #[serde(default = "default_compress")]
    pub compress: String,
    /// Records per message at most (default 1000).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Seconds a record may wait for a fuller message (default 0.5).
    #[serde(default)]
    pub batch_timeout: Option<f64>,
    /// Seconds to wait for an ack (default 30).
    #[serde(default)]
    pub ack_timeout: Option<f64>,
}

fn default_forward_port() -> u16 {
    24224
}
fn default_tag_prefix() -> String {
    "tapline".into()
}
fn default_compress() -> String {
    "gzip".into()
}
fn yes() -> bool {
    true
}

/// Keys of a `type: s3` object store beyond qtap's (which are typed in [`ObjectStoreConfig`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Extra {
    /// Upload objects in gzip batches (default true); false: one object per key = digest (qtap's way).
    pub batch: Option<bool>,
    /// Flush a batch at this many compressed bytes (default 8 MiB).
    pub batch_max_bytes: Option<u64>,
    /// Flush a batch this many seconds after its first object (default 10).
    pub batch_max_seconds: Option<f64>,
    /// Key prefix inside the bucket.
    pub prefix: Option<String>,
    /// gzip level of batch members, 0–9 (default 1: the fastest).
    pub gzip_level: Option<u32>,
}

/// A resolved Forward store: the transport's settings and how records are batched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardStore {
    /// Connection, TLS, handshake, acks, compression.
    pub transport: ForwardConfig,
    /// Records per message at most.
    pub batch_size: usize,
    /// How long a record may wait for a fuller message.
    pub batch_timeout: Duration,
}

fn invalid(origin: &str, path: String, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { origin: origin.to_string(), path, message: message.into() }
}

fn typed<T: for<'de> Deserialize<'de>>(
    options: &BTreeMap<String, Value>,
    origin: &str,
    base: &str,
) -> Result<T, ConfigError> {
    let map: serde_yaml_ng::Mapping = options.iter().map(|(k, v)| (Value::String(k.clone()), v.clone())).collect();
    serde_path_to_error::deserialize(Value::Mapping(map)).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." || inner.is_empty() { base.to_string() } else { format!("{base}.{inner}") };
        invalid(origin, path, e.into_inner().to_string())
    })
}

fn seconds(v: Option<f64>, default: Duration, origin: &str, path: String) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 && s < 86_400.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(invalid(origin, path, format!("`{s}` is not a number of seconds between 0 and 86400"))),
    }
}

/// Reads the keys of a `type: forward` store at `base` (e.g. `services.event_stores[1]`).
pub fn forward(options: &BTreeMap<String, Value>, origin: &str, base: &str) -> Result<ForwardStore, ConfigError> {
    let o: ForwardOptions = typed(options, origin, base)?;
    if o.host.trim().is_empty() {
        return Err(invalid(origin, format!("{base}.host"), "must name the receiver"));
    }
    let gzip = match o.compress.as_str() {
        "gzip" => true,
        "none" | "text" => false,
        other => return Err(invalid(origin, format!("{base}.compress"), format!("`{other}`: use gzip or none"))),
    };
    if o.tls.cert_file.is_some() != o.tls.key_file.is_some() {
        return Err(invalid(origin, format!("{base}.tls"), "cert_file and key_file go together"));
    }
    let batch_size = o.batch_size.unwrap_or(1000);
    if batch_size == 0 {
        return Err(invalid(origin, format!("{base}.batch_size"), "must be at least 1"));
    }
    let mut t = ForwardConfig::new(o.host, o.port);
    t.tag_prefix = o.tag_prefix;
    t.tls = o.tls.enabled.then(|| TlsConfig {
        ca_file: o.tls.ca_file.clone(),
        insecure_skip_verify: o.tls.insecure_skip_verify,
        client_cert: o.tls.cert_file.clone().zip(o.tls.key_file.clone()),
        server_name: o.tls.server_name.clone(),
    });
    t.shared_key =
        o.shared_key.as_ref().map(|s| resolve_secret(s, origin, &format!("{base}.shared_key"))).transpose()?;
    t.password = o.password.as_ref().map(|s| resolve_secret(s, origin, &format!("{base}.password"))).transpose()?;
    if let Some(h) = o.self_hostname {
        t.self_hostname = h;
    }
    t.username = o.username;
    t.require_ack = o.require_ack;
    t.compress = if gzip { Compression::Gzip } else { Compression::None };
    t.ack_timeout = seconds(o.ack_timeout, Duration::from_secs(30), origin, format!("{base}.ack_timeout"))?;
    Ok(ForwardStore {
        transport: t,
        batch_size,
        batch_timeout: seconds(o.batch_timeout, Duration::from_millis(500), origin, format!("{base}.batch_timeout"))?,
    })
}

/// Reads a `type: s3` object store at `base`.
pub fn s3(c: &ObjectStoreConfig, origin: &str, base: &str) -> Result<S3Config, ConfigError> {
    let extra: S3Extra = typed(&c.options, origin, base)?;
    let bucket = c.bucket.clone().filter(|b| !b.is_empty());
    let bucket =
        bucket.ok_or_else(|| invalid(origin, format!("{base}.bucket"), "an s3 object store needs a bucket"))?;
    let key = |s: &Option<ValueSource>, name: &str| {
        s.as_ref().map(|v| resolve_secret(&Secret::Source(v.clone()), origin, &format!("{base}.{name}"))).transpose()
    };
    let (access_key, secret_key) = (key(&c.access_key, "access_key")?, key(&c.secret_key, "secret_key")?);
    if access_key.is_some() != secret_key.is_some() {
        return Err(invalid(
            origin,
            base.to_string(),
            "access_key and secret_key go together (or neither: the AWS credential chain)",
        ));
    }
    let mut s3 = S3Config::new(bucket);
    if let Some(e) = &c.endpoint {
        s3.endpoint = e.clone();
    }
    if let Some(r) = &c.region {
        s3.region = r.clone();
    }
    s3.access_url = c.access_url.clone();
    s3.insecure = c.insecure.unwrap_or(false);
    s3.access_key = access_key;
    s3.secret_key = secret_key;
    s3.batch = extra.batch.unwrap_or(true);
    if let Some(b) = extra.batch_max_bytes {
        s3.max_batch_bytes = b;
    }
    s3.max_batch_age = seconds(extra.batch_max_seconds, s3.max_batch_age, origin, format!("{base}.batch_max_seconds"))?;
    s3.key_prefix = extra.prefix.unwrap_or_default();
    if let Some(level) = extra.gzip_level {
        if level > 9 {
            return Err(invalid(origin, format!("{base}.gzip_level"), "a gzip level is 0 to 9"));
        }
        s3.gzip_level = level;
    }
    Ok(s3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(yaml: &str) -> BTreeMap<String, Value> {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn forward_defaults_and_errors_name_the_key() {
        let f = forward(&opts("host: fluent-bit"), "q.yaml", "services.event_stores[0]").unwrap();
        let t = &f.transport;
        assert_eq!(
            (t.port, t.tag_prefix.as_str(), t.require_ack, t.compress, f.batch_size),
            (24224, "tapline", true, Compression::Gzip, 1000)
        );
        assert!(t.tls.is_none() && t.shared_key.is_none());
        let e = forward(&opts("host: x\nport: nope"), "q.yaml", "services.event_stores[0]").unwrap_err().to_string();
        assert!(e.starts_with("q.yaml: services.event_stores[0].port:"), "{e}");
        let e = forward(&opts("host: x\ncompress: lz4"), "q.yaml", "s[0]").unwrap_err().to_string();
        assert!(e.contains("s[0].compress") && e.contains("gzip or none"), "{e}");
        let e = forward(&opts("host: x\nshared_key: {type: env, value: TAPLINE_NO_SUCH_VAR}"), "q", "s").unwrap_err();
        assert!(e.to_string().contains("TAPLINE_NO_SUCH_VAR"), "{e}");
        let e = forward(&opts("host: x\ntsl: {enabled: true}"), "q", "s").unwrap_err().to_string();
        assert!(e.contains("tsl"), "a misspelt key is an error, not ignored: {e}");
        let f = forward(&opts("host: x\nshared_key: k\ntls: {enabled: true, insecure_skip_verify: true}"), "q", "s")
            .unwrap();
        assert_eq!(f.transport.shared_key.as_deref(), Some("k"));
        assert!(f.transport.tls.is_some_and(|t| t.insecure_skip_verify));
    }

    #[test]
    fn s3_keys_and_secrets() {
        let c: ObjectStoreConfig = serde_yaml_ng::from_str(
            "type: s3\nbucket: b\nendpoint: 127.0.0.1:9000\ninsecure: true\naccess_key: {type: text, value: AK}\nsecret_key: {type: text, value: SK}\nbatch: false",
        )
        .unwrap();
        let s = s3(&c, "q", "services.object_stores[0]").unwrap();
        assert_eq!((s.bucket.as_str(), s.endpoint.as_str(), s.insecure, s.batch), ("b", "127.0.0.1:9000", true, false));
        assert_eq!(s.max_batch_age, std::time::Duration::from_secs(10), "the store's default");
        assert_eq!((s.access_key.as_deref(), s.secret_key.as_deref()), (Some("AK"), Some("SK")));
        let c: ObjectStoreConfig =
            serde_yaml_ng::from_str("type: s3\nbucket: b\naccess_key: {type: text, value: AK}").unwrap();
        assert!(s3(&c, "q", "s").unwrap_err().to_string().contains("go together"));
        let c: ObjectStoreConfig = serde_yaml_ng::from_str("type: s3\nbucket: b").unwrap();
        let s = s3(&c, "q", "s").unwrap();
        assert!(s.access_key.is_none(), "no keys: the AWS credential chain");
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.gzip_level, 1, "the fastest gzip level by default");
        let c: ObjectStoreConfig = serde_yaml_ng::from_str("type: s3\nbucket: b\ngzip_level: 6").unwrap();
        assert_eq!(s3(&c, "q", "s").unwrap().gzip_level, 6);
        let c: ObjectStoreConfig = serde_yaml_ng::from_str("type: s3\nbucket: b\ngzip_level: 12").unwrap();
        let e = s3(&c, "q", "services.object_stores[0]").unwrap_err().to_string();
        assert!(e.contains("services.object_stores[0].gzip_level") && e.contains("0 to 9"), "{e}");
    }
}
