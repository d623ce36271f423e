//! S3 store configuration (qtap's keys plus tapline's batching) and the `access_url` template.
//!
//! `access_url` placeholders: `{{SCHEME}}` (`https`, or `http` when `insecure`),
//! `{{ENDPOINT}}`, `{{BUCKET}}`, `{{DIGEST}}` (qtap), and for batches `{{KEY}}` (the batch's S3
//! key), `{{OFFSET}}`, `{{LENGTH}}` and `{{END}}` (`OFFSET + LENGTH - 1`, the inclusive last
//! byte as in an HTTP `Range` header).
//!
//! Defaults:
//! - batch mode: `{{SCHEME}}://{{ENDPOINT}}/{{BUCKET}}/{{KEY}}#bytes={{OFFSET}}-{{END}}`, e.g.
//!   `https://s3.amazonaws.com/logs/batches/2026/05/01/12/1777…-d0…ndjson.gz#bytes=1234-1789`.
//!   The fragment is never sent to a server (the part before `#` is the batch's URL) and reads
//!   like an HTTP `Range`; fetch one object with
//!   `curl -r 1234-1789 https://s3.amazonaws.com/logs/batches/…ndjson.gz | zcat` (a public
//!   bucket or presigned URL; for a private bucket add
//!   `--aws-sigv4 aws:amz:REGION:s3 --user AK:SK -H x-amz-content-sha256:UNSIGNED-PAYLOAD`,
//!   or use `aws s3api get-object --range bytes=1234-1789`).
//!   A custom template without `{{OFFSET}}`, `{{LENGTH}}` or `{{END}}` gets
//!   `#bytes={{OFFSET}}-{{END}}` appended.
//! - per-object mode: `{{SCHEME}}://{{ENDPOINT}}/{{BUCKET}}/{{DIGEST}}` (qtap's layout: the
//!   key is the digest).

use std::fmt;
use std::time::Duration;

use super::batch::{DEFAULT_MAX_AGE, DEFAULT_MAX_COMPRESSED_BYTES, MemberLocation};
use super::client::S3Error;

/// The endpoint used when none is configured (AWS S3).
pub const DEFAULT_ENDPOINT: &str = "s3.amazonaws.com";
/// The region used when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Batches at least this large are sent with a multipart upload by default (16 MiB).
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 16 << 20;
/// The smallest part S3 accepts (all parts but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Default multipart part size (8 MiB; S3 requires at least 5 MiB except for the last part).
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;

/// gzip level of batch members: 1, the fastest. Each object is its own member (so it can be
/// fetched by range), and for objects of a few KiB level 6 spends most of the agent's CPU on
/// Huffman trees for batches about 20 % smaller (docs/benchmarks.md).
pub const DEFAULT_GZIP_LEVEL: u32 = 1;

const DEFAULT_BATCH_URL: &str = "{{SCHEME}}://{{ENDPOINT}}/{{BUCKET}}/{{KEY}}#bytes={{OFFSET}}-{{END}}";
const DEFAULT_OBJECT_URL: &str = "{{SCHEME}}://{{ENDPOINT}}/{{BUCKET}}/{{DIGEST}}";
const RANGE_FRAGMENT: &str = "#bytes={{OFFSET}}-{{END}}";

/// Configuration of an S3-compatible object store.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `host[:port]` of the service (default [`DEFAULT_ENDPOINT`]).
    pub endpoint: String,
    /// The bucket (required).
    pub bucket: String,
    /// The signing region (default [`DEFAULT_REGION`]).
    pub region: String,
    /// URL template written into artifact records (see the module docs).
    pub access_url: Option<String>,
    /// Plain `http` instead of `https`.
    pub insecure: bool,
    /// Access key id; with `secret_key`, overrides the AWS credential chain.
    pub access_key: Option<String>,
    /// Secret access key.
    pub secret_key: Option<String>,
    /// Address the bucket as `bucket.host` instead of `host/bucket` (path style, the default,
    /// which AWS still serves and S3-compatible servers expect).
    pub virtual_hosted_style: bool,
    /// Gzip batches (default) instead of one S3 object per captured object.
    pub batch: bool,
    /// Prefix of batch keys (`[A-Za-z0-9._/-]`, may be empty).
    pub key_prefix: String,
    /// Seal a batch at this compressed size (default 8 MiB).
    pub max_batch_bytes: u64,
    /// Seal a batch this long after its first object (default 10 s).
    pub max_batch_age: Duration,
    /// gzip level of batch members, 0–9 (default [`DEFAULT_GZIP_LEVEL`]).
    pub gzip_level: u32,
    /// Uploads at least this large use multipart upload (default 16 MiB).
    pub multipart_threshold: u64,
    /// Part size of multipart uploads (default 8 MiB).
    pub part_size: u64,
    /// Timeout of one HTTP request (default 60 s).
    pub request_timeout: Duration,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_url", &self.access_url)
            .field("insecure", &self.insecure)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<redacted>"))
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("batch", &self.batch)
            .field("key_prefix", &self.key_prefix)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("max_batch_age", &self.max_batch_age)
            .field("gzip_level", &self.gzip_level)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl S3Config {
    /// Defaults for `bucket`: AWS, us-east-1, https, credential chain, batches.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.into(),
            bucket: bucket.into(),
            region: DEFAULT_REGION.into(),
            access_url: None,
            insecure: false,
            access_key: None,
            secret_key: None,
            virtual_hosted_style: false,
            batch: true,
            key_prefix: String::new(),
            max_batch_bytes: DEFAULT_MAX_COMPRESSED_BYTES,
            max_batch_age: DEFAULT_MAX_AGE,
            gzip_level: DEFAULT_GZIP_LEVEL,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            request_timeout: Duration::from_secs(60),
        }
    }

    /// `http` when `insecure`, else `https`.
    pub fn scheme(&self) -> &'static str {
        if self.insecure { "http" } else { "https" }
    }

    /// Whether the endpoint is AWS's default one (the region then picks the real host).
    pub fn is_aws_default(&self) -> bool {
        self.endpoint.is_empty() || self.endpoint == DEFAULT_ENDPOINT
    }

    /// The endpoint with its scheme (messages, and the client unless it is AWS's default).
    pub fn endpoint_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.url_endpoint())
    }

    /// `{{ENDPOINT}}` of URLs: the configured endpoint, except that AWS's default one becomes
    /// the regional `s3.<region>.amazonaws.com` outside us-east-1 (where the global host only
    /// answers with a redirect).
    pub fn url_endpoint(&self) -> String {
        if self.is_aws_default() && self.region != DEFAULT_REGION && !self.region.is_empty() {
            format!("s3.{}.amazonaws.com", self.region)
        } else if self.endpoint.is_empty() {
            DEFAULT_ENDPOINT.to_string()
        } else {
            self.endpoint.clone()
        }
    }

    /// Checks the configuration and the `access_url` template.
    pub fn validate(&self) -> Result<(), S3Error> {
        let bad = |m: String| Err(S3Error::Config(m));
        if self.bucket.is_empty() {
            return bad("`bucket` is required".into());
        }
        if self.endpoint.contains("://") || self.endpoint.contains('/') {
            return bad(format!("`endpoint` must be host[:port] without scheme or path, got `{}`", self.endpoint));
        }
        if self.access_key.is_some() != self.secret_key.is_some() {
            return bad("`access_key` and `secret_key` must be given together".into());
        }
        if !self.key_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b)) {
            return bad(format!("`key_prefix` may only contain A-Z a-z 0-9 . _ / -, got `{}`", self.key_prefix));
        }
        if self.part_size < MIN_PART_SIZE {
            return bad(format!("`part_size` must be at least 5 MiB (S3's minimum), got {}", self.part_size));
        }
        if self.max_batch_bytes == 0 {
            return bad("`max_batch_bytes` must be positive".into());
        }
        let t = self.template();
        for p in placeholders(&t) {
            if !KNOWN.contains(&p) {
                return bad(format!("`access_url` has an unknown placeholder {{{{{p}}}}}"));
            }
        }
        if self.batch && !t.contains("{{KEY}}") {
            return bad(format!(
                "`access_url` `{t}` lacks {{{{KEY}}}}: in batch mode objects live in batch files, \
                 so the URL must name the batch key (or set `batch: false`)"
            ));
        }
        Ok(())
    }

    /// The effective template (configured or default, with the range fragment in batch mode).
    pub fn template(&self) -> String {
        match (&self.access_url, self.batch) {
            (None, true) => DEFAULT_BATCH_URL.into(),
            (None, false) => DEFAULT_OBJECT_URL.into(),
            (Some(t), true) if !has_range(t) => match t.contains('#') {
                true => format!("{t}&{}", &RANGE_FRAGMENT[1..]),
                false => format!("{t}{RANGE_FRAGMENT}"),
            },
            (Some(t), _) => t.clone(),
        }
    }

    /// The URL of an object: `member` is its place in a batch (None in per-object mode,
    /// where the key is the digest).
    pub fn access_url_for(&self, digest: &str, member: Option<&MemberLocation>) -> String {
        let (key, offset, length, end) = match member {
            Some(m) => (m.key.as_str(), m.offset.to_string(), m.length.to_string(), m.end().to_string()),
            None => (digest, String::new(), String::new(), String::new()),
        };
        render(
            &self.template(),
            &[
                ("SCHEME", self.scheme()),
                ("ENDPOINT", &self.url_endpoint()),
                ("BUCKET", &self.bucket),
                ("DIGEST", digest),
                ("KEY", key),
                ("OFFSET", &offset),
                ("LENGTH", &length),
                ("END", &end),
            ],
        )
    }

    /// Reads an object's place back from a URL this configuration produced (for
    /// `tapline fetch` fed an artifact record). `Some((key, None))` is a whole object;
    /// `Some((key, Some(member)))` a batch member.
    pub fn parse_access_url(&self, url: &str) -> Option<UrlTarget> {
        let t = self.template();
        let fixed =
            render(&t, &[("SCHEME", self.scheme()), ("ENDPOINT", &self.url_endpoint()), ("BUCKET", &self.bucket)]);
        let vars = match_template(&fixed, url).or_else(|| match_template(&fallback_template(self), url))?;
        let get = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let num = |n: &str| get(n).and_then(|v| v.parse::<u64>().ok());
        let key = get("KEY").or(get("DIGEST"))?.to_string();
        if key.is_empty() {
            return None;
        }
        let member = match (num("OFFSET"), num("LENGTH"), num("END")) {
            (Some(offset), Some(length), _) if length > 0 => Some((offset, length)),
            (Some(offset), None, Some(end)) if end >= offset => Some((offset, end - offset + 1)),
            _ => None,
        };
        Some(match member {
            Some((offset, length)) => UrlTarget::Member(MemberLocation { key, offset, length }),
            None => UrlTarget::Object(key),
        })
    }
}

/// What a URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlTarget {
    /// A whole S3 object (per-object mode): its key.
    Object(String),
    /// A gzip member of a batch.
    Member(MemberLocation),
}

const KNOWN: [&str; 8] = ["SCHEME", "ENDPOINT", "BUCKET", "DIGEST", "KEY", "OFFSET", "LENGTH", "END"];

fn has_range(t: &str) -> bool {
    t.contains("{{OFFSET}}") || t.contains("{{LENGTH}}") || t.contains("{{END}}")
}

/// A URL a record written with other scheme/endpoint settings may still carry.
fn fallback_template(cfg: &S3Config) -> String {
    let path = if cfg.batch { "{{KEY}}#bytes={{OFFSET}}-{{END}}" } else { "{{KEY}}" };
    format!("{{{{SCHEME}}}}://{{{{ENDPOINT}}}}/{}/{path}", cfg.bucket)
}

fn placeholders(t: &str) -> impl Iterator<Item = &str> {
    t.split("{{").skip(1).filter_map(|s| s.split_once("}}").map(|(p, _)| p))
}

/// Replaces every `{{NAME}}` of `vars` in `template`.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    out
}

enum Piece<'a> {
    Lit(&'a str),
    Var(&'a str),
}

fn pieces(t: &str) -> Vec<Piece<'_>> {
    let mut v = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.find("{{") {
        let Some(j) = rest[i..].find("}}") else { break };
        if i > 0 {
            v.push(Piece::Lit(&rest[..i]));
        }
        v.push(Piece::Var(&rest[i + 2..i + j]));
        rest = &rest[i + j + 2..];
    }
    if !rest.is_empty() {
        v.push(Piece::Lit(rest));
    }
    v
}

/// Matches `url` against a template, each placeholder taking text up to the next literal.
fn match_template(t: &str, url: &str) -> Option<Vec<(String, String)>> {
    let ps = pieces(t);
    let mut rest = url;
    let mut vars = Vec::new();
    for (i, p) in ps.iter().enumerate() {
        match p {
            Piece::Lit(l) => rest = rest.strip_prefix(l)?,
            Piece::Var(name) => {
                let end = match ps.get(i + 1) {
                    Some(Piece::Lit(next)) => rest.find(next)?,
                    Some(Piece::Var(_)) => return None, // adjacent placeholders are ambiguous
                    None => rest.len(),
                };
                let value = &rest[..end];
                if let Some((_, prev)) = vars.iter().find(|(k, _): &&(String, String)| k == name)
                    && prev != value
                {
                    return None;
                }
                vars.push((name.to_string(), value.to_string()));
                rest = &rest[end..];
            }
        }
    }
    rest.is_empty().then_some(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "0123456789abcdef0123456789abcdef01234567";

    fn member() -> MemberLocation {
        MemberLocation { key: "p/batches/2026/05/01/12/1-x.ndjson.gz".into(), offset: 100, length: 50 }
    }

    #[test]
    fn default_batch_url_and_back() {
        let mut c = S3Config::new("logs");
        c.endpoint = "127.0.0.1:9000".into();
        c.insecure = true;
        c.validate().unwrap();
        let url = c.access_url_for(D, Some(&member()));
        assert_eq!(url, "http://127.0.0.1:9000/logs/p/batches/2026/05/01/12/1-x.ndjson.gz#bytes=100-149");
        assert_eq!(c.parse_access_url(&url), Some(UrlTarget::Member(member())));
        // A record written while the store used https still parses.
        let https = url.replacen("http:", "https:", 1);
        assert_eq!(c.parse_access_url(&https), Some(UrlTarget::Member(member())));
    }

    #[test]
    fn default_object_url_is_qtaps() {
        let mut c = S3Config::new("logs");
        c.batch = false;
        let url = c.access_url_for(D, None);
        assert_eq!(url, format!("https://s3.amazonaws.com/logs/{D}"));
        assert_eq!(c.parse_access_url(&url), Some(UrlTarget::Object(D.into())));
    }

    #[test]
    fn custom_templates() {
        let mut c = S3Config::new("b");
        c.access_url = Some("https://cdn.example/{{KEY}}?o={{OFFSET}}&l={{LENGTH}}&d={{DIGEST}}".into());
        c.validate().unwrap();
        let url = c.access_url_for(D, Some(&member()));
        assert_eq!(url, format!("https://cdn.example/p/batches/2026/05/01/12/1-x.ndjson.gz?o=100&l=50&d={D}"));
        assert_eq!(c.parse_access_url(&url), Some(UrlTarget::Member(member())));

        // No range placeholder: the fragment is appended.
        c.access_url = Some("{{SCHEME}}://files.example/{{BUCKET}}/{{KEY}}".into());
        let url = c.access_url_for(D, Some(&member()));
        assert_eq!(url, "https://files.example/b/p/batches/2026/05/01/12/1-x.ndjson.gz#bytes=100-149");
        assert_eq!(c.parse_access_url(&url), Some(UrlTarget::Member(member())));

        // qtap's template in per-object mode.
        c.batch = false;
        c.access_url = Some("https://{{BUCKET}}.s3.example/{{DIGEST}}".into());
        c.validate().unwrap();
        assert_eq!(c.access_url_for(D, None), format!("https://b.s3.example/{D}"));
    }

    #[test]
    fn invalid_configs() {
        let mut c = S3Config::new("b");
        c.access_url = Some("https://x/{{DIGEST}}".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("{{KEY}}"), "{e}");
        c.access_url = Some("https://x/{{KEY}}/{{NOPE}}".into());
        assert!(c.validate().unwrap_err().to_string().contains("{{NOPE}}"));
        c.access_url = None;
        c.endpoint = "http://x".into();
        assert!(c.validate().is_err());
        let mut c = S3Config::new("");
        assert!(c.validate().unwrap_err().to_string().contains("bucket"));
        c.bucket = "b".into();
        c.access_key = Some("a".into());
        assert!(c.validate().is_err());
        c.secret_key = Some("s".into());
        c.validate().unwrap();
        assert!(!format!("{c:?}").contains("\"s\""), "the secret is redacted");
        c.key_prefix = "a b".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn aws_regional_endpoint_in_urls() {
        let mut c = S3Config::new("logs");
        c.batch = false;
        c.region = "eu-west-1".into();
        assert_eq!(c.access_url_for(D, None), format!("https://s3.eu-west-1.amazonaws.com/logs/{D}"));
        assert_eq!(c.parse_access_url(&c.access_url_for(D, None)), Some(UrlTarget::Object(D.into())));
        c.endpoint = "minio.local:9000".into();
        assert_eq!(c.access_url_for(D, None), format!("https://minio.local:9000/logs/{D}"));
    }

    #[test]
    fn unrelated_urls_do_not_parse() {
        let c = S3Config::new("b");
        assert_eq!(c.parse_access_url("file:///tmp/x.json"), None);
        assert_eq!(c.parse_access_url("stdout://abc"), None);
    }
}
