//! What to redact: [`RedactionConfig`] and its defaults.

use std::fmt;

/// Which headers (and trailers) have their values masked. Names are compared ASCII
/// case-insensitively, after trimming; an empty entry is a configuration error.
///
/// The default rule masks a header when its name
/// - is one of [`DEFAULT_HEADER_NAMES`] (`authorization`, `proxy-authorization`, `cookie`,
///   `set-cookie`, `x-api-key`, `api-key`, `x-auth-token`, `x-amz-security-token`,
///   `x-csrf-token`, `x-xsrf-token`), or
/// - ends with one of [`DEFAULT_HEADER_SUFFIXES`] (`-token`, `-secret`), or
/// - contains one of [`DEFAULT_HEADER_SUBSTRINGS`] (`api-key`, `apikey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    /// Exact header names.
    pub names: Vec<String>,
    /// Name endings, e.g. `-token` (matches `x-goog-iam-token`).
    pub suffixes: Vec<String>,
    /// Name substrings, e.g. `apikey` (matches `x-apikey-v2`).
    pub substrings: Vec<String>,
}

/// Header names masked by default.
pub const DEFAULT_HEADER_NAMES: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-amz-security-token",
    "x-csrf-token",
    "x-xsrf-token",
];

/// Header name endings masked by default.
pub const DEFAULT_HEADER_SUFFIXES: &[&str] = &["-token", "-secret"];

/// Header name substrings masked by default.
pub const DEFAULT_HEADER_SUBSTRINGS: &[&str] = &["api-key", "apikey"];

/// Query (and form body) parameter names masked by default, compared case-insensitively after
/// percent-decoding. `code` (OAuth authorization codes) is not in the list: the name is too
/// often harmless (country, error or product codes) and such codes are single-use.
pub const DEFAULT_QUERY_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "signature",
    "sig",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
];

/// JSON fields masked by default, at any depth; object keys compare ASCII case-insensitively,
/// so `$..accesstoken` also covers `accessToken`.
pub const DEFAULT_JSON_PATHS: &[&str] = &[
    "$..password",
    "$..passwd",
    "$..secret",
    "$..client_secret",
    "$..clientsecret",
    "$..token",
    "$..access_token",
    "$..accesstoken",
    "$..refresh_token",
    "$..refreshtoken",
    "$..id_token",
    "$..idtoken",
    "$..api_key",
    "$..apikey",
    "$..authorization",
    "$..private_key",
    "$..privatekey",
];

/// Body patterns applied by default: bearer credentials, JSON web tokens, payment card numbers of
/// the major networks (Visa, Mastercard, Amex, Discover; a prefix-anchored pattern rather than
/// any 13–16 digits, so that millisecond timestamps and ids survive), AWS access key ids and PEM
/// private keys.
pub const DEFAULT_BODY_PATTERNS: &[&str] = &[
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]+=*",
    r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
    r"\b(?:4\d{3}|5[1-5]\d{2}|2[2-7]\d{2}|3[47]\d{2}|6(?:011|5\d{2}))(?:[ -]?\d{4}){2}[ -]?\d{1,4}\b",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
];

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for HeaderRule {
    fn default() -> Self {
        HeaderRule {
            names: strings(DEFAULT_HEADER_NAMES),
            suffixes: strings(DEFAULT_HEADER_SUFFIXES),
            substrings: strings(DEFAULT_HEADER_SUBSTRINGS),
        }
    }
}

impl HeaderRule {
    /// A rule masking exactly these names (no suffix or substring matching).
    pub fn names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        HeaderRule { names: names.into_iter().map(Into::into).collect(), suffixes: vec![], substrings: vec![] }
    }
}

/// What a [`super::Redactor`] masks. [`Default`] gives the lists documented on each field.
#[derive(Clone, PartialEq, Eq)]
pub struct RedactionConfig {
    /// Headers (and trailers) whose values are masked; see [`HeaderRule`] for the default rule.
    /// These headers are also kept out of events entirely
    /// ([`super::Redactor::header_allowed_in_events`]).
    pub headers: HeaderRule,
    /// Query parameter names whose values are masked in the request target, HTTP/2 `:path`,
    /// `Location`/`Content-Location`/`Referer` headers, URLs given to
    /// [`super::Redactor::url`], and `application/x-www-form-urlencoded` bodies. Compared
    /// case-insensitively after percent-decoding. Default: [`DEFAULT_QUERY_PARAMS`].
    pub query_params: Vec<String>,
    /// JSON fields masked in JSON bodies, by path: `user.password` (from the root),
    /// `items[*].card` (every array element), `items[0]`, `a.*` (every member), `$..password`
    /// (a key at any depth); a leading `$` / `$.` is optional, `['key']` quotes odd keys. Keys
    /// compare ASCII case-insensitively. Default: [`DEFAULT_JSON_PATHS`].
    pub json_paths: Vec<String>,
    /// Regular expressions (Rust `regex` syntax) over textual bodies; each whole match is
    /// replaced by the mask. In valid JSON they apply inside string and number values only.
    /// Default: [`DEFAULT_BODY_PATTERNS`].
    pub body_patterns: Vec<String>,
    /// Key for a keyed hash: masks become `[REDACTED:hmac-sha256:<first 16 hex digits>]` of the
    /// masked value, so equal secrets can be correlated without being revealed; without a key
    /// every mask is `[REDACTED]`. An empty key is a configuration error.
    pub hash_key: Option<Vec<u8>>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            headers: HeaderRule::default(),
            query_params: strings(DEFAULT_QUERY_PARAMS),
            json_paths: strings(DEFAULT_JSON_PATHS),
            body_patterns: strings(DEFAULT_BODY_PATTERNS),
            hash_key: None,
        }
    }
}

impl fmt::Debug for RedactionConfig {
    /// Never prints the hash key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactionConfig")
            .field("headers", &self.headers)
            .field("query_params", &self.query_params)
            .field("json_paths", &self.json_paths)
            .field("body_patterns", &self.body_patterns)
            .field("hash_key", &self.hash_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}
