//! Blocking S3 access built on `object_store` (async), driven by a small current-thread tokio
//! runtime owned by the client: one `block_on` per call.
//!
//! TLS is rustls with the ring provider (installed as the process default when none is set),
//! certificates are verified against the platform's roots. Credentials: `access_key` /
//! `secret_key` when configured, else the AWS chain: `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, profile `AWS_PROFILE` or
//! `default`), web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`), ECS / EKS pod
//! identity, then EC2 instance metadata.
//!
//! Errors are classified for the delivery layer: [`S3Error::Rejected`] (credentials, missing
//! bucket, permissions: fixing needs a human) and [`S3Error::Unavailable`] (network, 5xx,
//! throttling: try again).

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, BackoffConfig, ClientOptions, ObjectStore as _, ObjectStoreExt as _,
    PutMultipartOptions, PutOptions, PutPayload, RetryConfig,
};
use tracing::debug;

use super::batch::{MemberError, MemberLocation, decode_member};
use super::config::S3Config;

/// What went wrong talking to S3, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The configuration cannot work.
    #[error("s3 object store: invalid configuration: {0}")]
    Config(String),
    /// The service refused for a reason that needs a human: credentials, bucket, permissions.
    #[error("{0}")]
    Rejected(String),
    /// The service is unreachable or failing; trying again may help.
    #[error("{0}")]
    Unavailable(String),
    /// No such key.
    #[error("s3 object store: key `{key}` not found in bucket `{bucket}`")]
    NotFound {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// Data came back but is not what was stored.
    #[error("s3 object store: {0}")]
    Corrupt(String),
    /// A local file operation failed.
    #[error("s3 object store: {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl S3Error {
    /// Whether retrying soon is pointless (configuration, credentials, bucket, bad data).
    pub fn is_fatal(&self) -> bool {
        matches!(self, S3Error::Config(_) | S3Error::Rejected(_) | S3Error::Corrupt(_))
    }
}

impl From<MemberError> for S3Error {
    fn from(e: MemberError) -> Self {
        S3Error::Corrupt(e.to_string())
    }
}

/// A blocking S3 client for one bucket.
pub struct S3Client {
    rt: tokio::runtime::Runtime,
    store: AmazonS3,
    cfg: S3Config,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("endpoint", &self.cfg.endpoint_url())
            .field("bucket", &self.cfg.bucket)
            .finish()
    }
}

/// Credentials from the shared credentials file, when the environment has none.
fn profile_credentials() -> Option<(String, String, Option<String>)> {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        return None;
    }
    let path = match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".aws/credentials"),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    parse_credentials_file(&text, &profile)
}

/// `(access key, secret key, session token)` of `profile` in an AWS credentials (INI) file.
fn parse_credentials_file(text: &str, profile: &str) -> Option<(String, String, Option<String>)> {
    let (mut in_profile, mut ak, mut sk, mut tok) = (false, None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') && line.ends_with(']') {
            in_profile = line[1..line.len() - 1].trim() == profile;
        } else if in_profile && let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => ak = Some(v),
                "aws_secret_access_key" => sk = Some(v),
                "aws_session_token" => tok = Some(v),
                _ => {}
            }
        }
    }
    Some((ak?, sk?, tok))
}

fn content_type_for(key: &str) -> &'static str {
    if key.ends_with(".gz") { "application/gzip" } else { "application/json" }
}

impl S3Client {
    /// A client for `cfg` (validated). Builds no connection yet.
    pub fn new(cfg: &S3Config) -> Result<Self, S3Error> {
        cfg.validate()?;
        // reqwest is built without a crypto provider of its own: use ring's (already in the
        // dependency tree), unless the process chose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = match (&cfg.access_key, &cfg.secret_key) {
            (Some(ak), Some(sk)) => AmazonS3Builder::new().with_access_key_id(ak).with_secret_access_key(sk),
            _ => {
                let b = AmazonS3Builder::from_env();
                match profile_credentials() {
                    Some((ak, sk, tok)) => {
                        let b = b.with_access_key_id(ak).with_secret_access_key(sk);
                        match tok {
                            Some(t) => b.with_token(t),
                            None => b,
                        }
                    }
                    None => b,
                }
            }
        };
        b = b
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_allow_http(cfg.insecure)
            .with_virtual_hosted_style_request(cfg.virtual_hosted_style);
        if !cfg.is_aws_default() {
            // Virtual-hosted: object_store takes the bucket's own endpoint.
            let endpoint = match cfg.virtual_hosted_style {
                true => format!("{}://{}.{}", cfg.scheme(), cfg.bucket, cfg.endpoint),
                false => cfg.endpoint_url(),
            };
            b = b.with_endpoint(endpoint);
        }
        // The delivery layer retries with its own backoff and spools meanwhile: keep the
        // client's retries short so that a failure is reported quickly.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        };
        let store = b
            .with_retry(retry)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(cfg.insecure)
                    .with_timeout(cfg.request_timeout)
                    .with_connect_timeout(Duration::from_secs(5)),
            )
            .build()
            .map_err(|e| S3Error::Config(format!("bucket `{}` at {}: {e}", cfg.bucket, cfg.endpoint_url())))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| S3Error::Io { context: "starting the S3 client runtime".into(), source })?;
        Ok(Self { rt, store, cfg: cfg.clone() })
    }

    /// The configuration.
    pub fn config(&self) -> &S3Config {
        &self.cfg
    }

    /// Runs `f` to completion; from inside another tokio runtime, on a helper thread.
    fn run<T: Send, F: Future<Output = T> + Send>(&self, f: F) -> T {
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| match s.spawn(|| self.rt.block_on(f)).join() {
                Ok(v) => v,
                Err(p) => std::panic::resume_unwind(p),
            })
        } else {
            self.rt.block_on(f)
        }
    }

    /// Uploads `body` under `key`: one PUT below the multipart threshold, else a multipart
    /// upload (aborted on failure). The content type follows the key (`.gz`: gzip, else JSON).
    pub fn put(&self, key: &str, body: Vec<u8>) -> Result<(), S3Error> {
        let path = Path::from(key);
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, AttributeValue::from(content_type_for(key)));
        let len = body.len() as u64;
        let res = if len < self.cfg.multipart_threshold {
            let opts = PutOptions { attributes, ..Default::default() };
            self.run(self.store.put_opts(&path, PutPayload::from(body), opts)).map(|_| ())
        } else {
            let part = self.cfg.part_size.max(1) as usize;
            self.run(async {
                let opts = PutMultipartOptions { attributes, ..Default::default() };
                let mut up = self.store.put_multipart_opts(&path, opts).await?;
                let body = bytes::Bytes::from(body);
                let mut start = 0;
                while start < body.len() {
                    let end = (start + part).min(body.len());
                    if let Err(e) = up.put_part(PutPayload::from(body.slice(start..end))).await {
                        let _ = up.abort().await;
                        return Err(e);
                    }
                    start = end;
                }
                match up.complete().await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let _ = up.abort().await;
                        Err(e)
                    }
                }
            })
        };
        debug!(key, bytes = len, ok = res.is_ok(), "s3 put");
        res.map_err(|e| self.classify(e, "uploading", key))
    }

    /// The whole object under `key`.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, S3Error> {
        let path = Path::from(key);
        self.run(async { self.store.get(&path).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|e| self.classify(e, "downloading", key))
    }

    /// Bytes `range` of the object under `key` (a `Range: bytes=start-(end-1)` GET).
    pub fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, S3Error> {
        let path = Path::from(key);
        let want = range.end.saturating_sub(range.start);
        let b = self
            .run(self.store.get_range(&path, range))
            .map_err(|e| self.classify(e, "downloading a range of", key))?;
        if b.len() as u64 != want {
            return Err(S3Error::Corrupt(format!("`{key}`: asked for {want} bytes, got {}", b.len())));
        }
        Ok(b.to_vec())
    }

    /// The exact bytes of a batch member: a ranged GET, gunzipped, newline stripped.
    pub fn fetch_member(&self, m: &MemberLocation) -> Result<Vec<u8>, S3Error> {
        let member = self.get_range(&m.key, m.offset..m.offset + m.length)?;
        Ok(decode_member(&member)?)
    }

    /// `(key, size)` of every object under `prefix` (empty: the whole bucket).
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, S3Error> {
        let p = (!prefix.is_empty()).then(|| Path::from(prefix));
        self.run(async { self.store.list(p.as_ref()).map_ok(|m| (m.location.to_string(), m.size)).try_collect().await })
            .map_err(|e| self.classify(e, "listing", prefix))
    }

    /// Checks that the bucket exists and the credentials are accepted, with a LIST of an
    /// empty prefix (one small request). Some servers (and s3s-fs) create a missing bucket on
    /// PUT instead of failing with `NoSuchBucket`; this catches them. `AccessDenied` (a
    /// put-only policy without s3:ListBucket) is not an error here.
    pub fn check_bucket(&self) -> Result<(), S3Error> {
        let probe = Path::from("tapline-bucket-check");
        match self.run(self.store.list_with_delimiter(Some(&probe))) {
            Ok(_) => Ok(()),
            Err(e) if s3_code(&error_chain(&e)).as_deref() == Some("AccessDenied") => Ok(()),
            Err(e) => match self.classify(e, "checking bucket", &self.cfg.bucket) {
                S3Error::NotFound { .. } => Err(self.no_such_bucket("NoSuchBucket")),
                other => Err(other),
            },
        }
    }

    fn no_such_bucket(&self, detail: &str) -> S3Error {
        let (bucket, endpoint) = (&self.cfg.bucket, self.cfg.endpoint_url());
        S3Error::Rejected(format!(
            "s3 object store (endpoint {endpoint}, bucket `{bucket}`): bucket `{bucket}` does not exist at \
             {endpoint}: create it, or fix `bucket` / `endpoint` / `region` ({detail})"
        ))
    }

    /// Turns an `object_store` error into an operator-facing [`S3Error`].
    fn classify(&self, e: object_store::Error, doing: &str, key: &str) -> S3Error {
        let (bucket, endpoint, region) = (&self.cfg.bucket, self.cfg.endpoint_url(), &self.cfg.region);
        let text = error_chain(&e);
        let code = s3_code(&text);
        let status = http_status(&text);
        let whom = format!("s3 object store (endpoint {endpoint}, bucket `{bucket}`)");
        let detail = code.as_deref().map_or_else(|| short(&text), |c| format!("{c}: {}", short(&text)));
        // AWS names the right region when a request was signed for another one.
        let expected_region = tag(&text, "Region").or_else(|| {
            let i = text.find("expecting '")? + 11;
            text[i..].find('\'').map(|l| text[i..i + l].to_string())
        });
        match code.as_deref() {
            Some("NoSuchBucket") => return self.no_such_bucket(&detail),
            Some("AuthorizationHeaderMalformed" | "PermanentRedirect" | "IllegalLocationConstraintException")
                if expected_region.as_deref().is_some_and(|r| r != region.as_str()) =>
            {
                let want = expected_region.unwrap_or_default();
                return S3Error::Rejected(format!(
                    "{whom}: wrong region: bucket `{bucket}` is in `{want}`, the configuration says `{region}`: \
                     set `region: {want}` ({detail})"
                ));
            }
            Some(
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "InvalidToken"
                | "ExpiredToken"
                | "TokenRefreshRequired"
                | "InvalidSecurity"
                | "MissingSecurityHeader"
                | "AuthorizationHeaderMalformed",
            ) => {
                return S3Error::Rejected(format!(
                    "{whom}: the credentials were rejected by {endpoint} for bucket `{bucket}`: check \
                     `access_key` / `secret_key` (or the AWS credential chain) and `region` ({region}) ({detail})"
                ));
            }
            Some("AccessDenied" | "AllAccessDisabled" | "AccountProblem") => {
                return S3Error::Rejected(format!(
                    "{whom}: access denied {doing} `{key}`: grant the credentials s3:PutObject / s3:GetObject \
                     / s3:ListBucket on bucket `{bucket}` ({detail})"
                ));
            }
            Some("PermanentRedirect" | "IllegalLocationConstraintException") => {
                return S3Error::Rejected(format!(
                    "{whom}: bucket `{bucket}` is not served by this endpoint/region: fix `endpoint` or \
                     `region` ({region}) ({detail})"
                ));
            }
            Some("NoSuchKey") => return S3Error::NotFound { bucket: bucket.clone(), key: key.to_string() },
            Some("SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout") => {
                return S3Error::Unavailable(format!("{whom}: {doing} `{key}` failed, will retry ({detail})"));
            }
            _ => {}
        }
        match (&e, status) {
            (object_store::Error::NotFound { .. }, _) => S3Error::NotFound { bucket: bucket.clone(), key: key.into() },
            (object_store::Error::Unauthenticated { .. }, _) | (_, Some(401)) => S3Error::Rejected(format!(
                "{whom}: the credentials were rejected by {endpoint} for bucket `{bucket}`: check `access_key` / \
                 `secret_key` (or the AWS credential chain) ({detail})"
            )),
            (object_store::Error::PermissionDenied { .. }, _) | (_, Some(403)) => S3Error::Rejected(format!(
                "{whom}: the credentials were rejected or lack permission on bucket `{bucket}` at {endpoint} \
                 ({doing} `{key}`): check `access_key` / `secret_key`, `region` ({region}) and the bucket policy \
                 ({detail})"
            )),
            (_, Some(s)) if s >= 500 || s == 408 || s == 429 => {
                S3Error::Unavailable(format!("{whom}: {doing} `{key}` failed with HTTP {s}, will retry ({detail})"))
            }
            (_, Some(s)) => S3Error::Rejected(format!("{whom}: {doing} `{key}` was refused with HTTP {s} ({detail})")),
            _ if text.contains("169.254.169.254") || text.to_ascii_lowercase().contains("credential") => {
                S3Error::Rejected(format!(
                    "{whom}: no usable credentials: set `access_key` / `secret_key`, or AWS_ACCESS_KEY_ID / \
                     AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a web identity or an instance role ({detail})"
                ))
            }
            _ => S3Error::Unavailable(format!("{whom}: {doing} `{key}` failed, will retry ({detail})")),
        }
    }
}

/// The error and its sources, joined.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// `<Code>X</Code>` of an S3 error body.
fn s3_code(text: &str) -> Option<String> {
    tag(text, "Code")
}

/// The text of the first `<name>…</name>` element of an S3 XML error body.
fn tag(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&format!("</{name}>"))?;
    Some(text[start..start + len].trim().to_string()).filter(|s| !s.is_empty())
}

/// The status of "… status code: 403 Forbidden …" in object_store's messages.
fn http_status(text: &str) -> Option<u16> {
    for pat in ["status code: ", "status: "] {
        if let Some(i) = text.find(pat) {
            let n: String = text[i + pat.len()..].chars().take_while(char::is_ascii_digit).collect();
            if let Ok(s) = n.parse() {
                return Some(s);
            }
        }
    }
    None
}

/// The message without XML noise, bounded.
fn short(text: &str) -> String {
    let msg = text.find("<Message>").and_then(|i| {
        let s = i + 9;
        text[s..].find("</Message>").map(|l| text[s..s + l].to_string())
    });
    let base = match (text.find("<?xml"), msg) {
        (Some(i), Some(m)) => format!("{}{m}", &text[..i]),
        (Some(i), None) => text[..i].to_string(),
        (None, _) => text.to_string(),
    };
    let base = base.trim_end_matches([':', ' ']);
    let mut out: String = base.chars().take(400).collect();
    if base.len() > out.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key=S\n\n[other]\naws_access_key_id=B\n\
                    aws_secret_access_key=T\naws_session_token=X\n";
        assert_eq!(parse_credentials_file(text, "default"), Some(("A".into(), "S".into(), None)));
        assert_eq!(parse_credentials_file(text, "other"), Some(("B".into(), "T".into(), Some("X".into()))));
        assert_eq!(parse_credentials_file(text, "none"), None);
    }

    #[test]
    fn error_text_parsing() {
        let t = "Generic S3 error: Error performing PUT http://h/b/k in 3ms - Server returned non-2xx status code: \
                 404 Not Found: <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified \
                 bucket does not exist.</Message></Error>";
        assert_eq!(s3_code(t).as_deref(), Some("NoSuchBucket"));
        assert_eq!(http_status(t), Some(404));
        let s = short(t);
        assert!(s.ends_with("The specified bucket does not exist."), "{s}");
    }

    /// Pieces of object_store's error messages, which embed the S3 XML error body.
    const PIECES: &[&str] = &[
        "<?xml version=\"1.0\"?>",
        "<Error>",
        "</Error>",
        "<Code>",
        "</Code>",
        "<Message>",
        "</Message>",
        "status code: ",
        "status: ",
        "404",
        "99999999",
        "Not Found: ",
        "é",
        "😀",
        "\u{0}",
        " ",
        "[default]\n",
        "aws_access_key_id = A\n",
        "aws_secret_access_key=S\n",
        "[",
        "]",
        "=",
    ];

    use proptest::prelude::*;

    proptest::proptest! {
        #[test]
        fn fuzz_error_texts_never_panic_and_stay_short(
            parts in proptest::collection::vec(
                proptest::prop_oneof![proptest::sample::select(PIECES).prop_map(str::to_string), ".{0,8}"],
                0..40,
            ),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let text: String = parts.concat();
            let chars: Vec<char> = text.chars().collect();
            let text: String = chars[..cut.index(chars.len() + 1)].iter().collect();
            let _ = http_status(&text);
            if let Some(code) = s3_code(&text) {
                proptest::prop_assert!(code.len() <= text.len());
            }
            proptest::prop_assert!(short(&text).chars().count() <= 401);
            let _ = parse_credentials_file(&text, "default");
        }
    }
}
