//! Where rules get their field values: the [`Fields`] trait, the canonical field names, and
//! [`MapFields`], a map-backed implementation.

use std::borrow::Cow;
use std::collections::HashMap;

use super::Value;

/// A source of field values for rule evaluation.
///
/// # Canonical field names
///
/// These are the names the agent provides (qtap's `pkg/plugins/tools/txs.go` names):
///
/// | field                                   | value                                          |
/// |-----------------------------------------|------------------------------------------------|
/// | `http.req.method`                       | `Str` (`GET`)                                  |
/// | `http.req.path`                         | `Str` (`/v1/items?x=1`)                        |
/// | `http.req.scheme`                       | `Str` (`http` / `https`)                       |
/// | `http.req.url`                          | `Str` (full URL)                               |
/// | `http.req.host`                         | `Str` (authority / `Host` header)              |
/// | `http.req.headers.<name>`               | `Str`, header name lowercased                  |
/// | `http.res.status`                       | `Int`                                          |
/// | `http.res.headers.<name>`               | `Str`, header name lowercased                  |
/// | `direction`                             | `Str` (`egress`, `ingress`, …)                 |
/// | `protocol`                              | `Str` (`http1`, `http2`, …)                    |
/// | `src.ip`, `src.port`                    | `Ip`, `Int`                                    |
/// | `src.process.path`, `src.process.binary`| `Str` (exe path, exe base name)                |
/// | `src.process.user.id`, `.user.name`     | `Int`, `Str`                                   |
/// | `src.process.env.<VAR>`                 | `Str` (case-sensitive variable name)           |
/// | `src.container.*`                       | container id, name, image, labels …            |
/// | `dst.ip`, `dst.port`, `dst.domain`      | `Ip`, `Int`, `Str`                             |
/// | `tls.enabled`, `tls.version`            | `Bool`, `Float` (1.2 / 1.3)                    |
/// | `tls.sni`, `tls.alpn`                   | `Str`                                          |
/// | `tags`                                  | `List` of `Str` (`key:value`)                  |
///
/// Older qtap configs use `request.*`, `response.*`, `req.*` and `res.*`; [`ALIASES`] maps them
/// onto `http.req.*` / `http.res.*`.
///
/// # Header names
///
/// Header names are case-insensitive: [`canonical_path`] lowercases the part after
/// `http.req.headers.` / `http.res.headers.`. The parser applies [`canonical_path`] to every
/// field reference, so [`Fields::get`] always receives canonical paths and an implementation
/// only has to store header names in lowercase.
pub trait Fields {
    /// The value at `path` (a canonical dot path, see [`Fields`]), or `None` if
    /// the field is absent. A rule that needs an absent field does not match and reports it
    /// as [`Outcome::MissingField`](super::Outcome::MissingField).
    fn get(&self, path: &str) -> Option<Value<'_>>;
}

impl<F: Fields + ?Sized> Fields for &F {
    fn get(&self, path: &str) -> Option<Value<'_>> {
        (**self).get(path)
    }
}

/// Legacy field prefixes and their canonical replacements (first match wins).
pub const ALIASES: &[(&str, &str)] =
    &[("request", "http.req"), ("response", "http.res"), ("req", "http.req"), ("res", "http.res")];

/// Prefixes after which the rest of the path is a case-insensitive header name.
const HEADER_PREFIXES: &[&str] = &["http.req.headers.", "http.res.headers."];

/// The canonical form of a field path: legacy aliases resolved (`response.status` →
/// `http.res.status`) and header names lowercased (`http.req.headers.User-Agent` →
/// `http.req.headers.user-agent`).
pub fn canonical_path(path: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(path);
    for (old, new) in ALIASES {
        if let Some(rest) = path.strip_prefix(old)
            && (rest.is_empty() || rest.starts_with('.'))
        {
            out = Cow::Owned(format!("{new}{rest}"));
            break;
        }
    }
    for prefix in HEADER_PREFIXES {
        if out.starts_with(prefix) && out[prefix.len()..].bytes().any(|b| b.is_ascii_uppercase()) {
            let (head, name) = out.split_at(prefix.len());
            out = Cow::Owned(format!("{head}{}", name.to_ascii_lowercase()));
            break;
        }
    }
    out
}

/// A [`Fields`] implementation backed by a map from path to value.
///
/// Keys are stored in canonical form ([`canonical_path`]). A lookup first tries the exact
/// key, then descends into [`Value::Map`] / [`Value::List`] values: with
/// `"src.process" => Map{"user" => Map{"id" => 0}}`, the path `src.process.user.id` resolves
/// to `0`, and `tags.1` is the second element of the `tags` list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MapFields(HashMap<String, Value<'static>>);

impl MapFields {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `path` (canonicalized) to `value`, replacing any previous value.
    pub fn insert(&mut self, path: &str, value: impl Into<Value<'static>>) -> &mut Self {
        self.0.insert(canonical_path(path).into_owned(), value.into());
        self
    }

    /// Builder form of [`insert`](Self::insert).
    pub fn with(mut self, path: &str, value: impl Into<Value<'static>>) -> Self {
        self.insert(path, value);
        self
    }

    /// Removes `path` (canonicalized); returns its value if it was present.
    pub fn remove(&mut self, path: &str) -> Option<Value<'static>> {
        self.0.remove(canonical_path(path).as_ref())
    }

    /// Number of top-level keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: AsRef<str>, V: Into<Value<'static>>> FromIterator<(K, V)> for MapFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = MapFields::new();
        for (k, v) in iter {
            m.insert(k.as_ref(), v);
        }
        m
    }
}

impl Fields for MapFields {
    fn get(&self, path: &str) -> Option<Value<'_>> {
        if let Some(v) = self.0.get(path) {
            return Some(v.reborrow());
        }
        split_points(path).find_map(|(head, rest)| self.0.get(head).and_then(|v| descend(v, rest)))
    }
}

/// Every way to split `path` at a `.` into a non-empty head and tail.
fn split_points(path: &str) -> impl Iterator<Item = (&str, &str)> {
    path.match_indices('.').map(|(i, _)| (&path[..i], &path[i + 1..]))
}

/// Looks `path` up inside a nested value.
fn descend<'v>(value: &'v Value<'static>, path: &str) -> Option<Value<'v>> {
    match value {
        Value::Map(m) => {
            if let Some(v) = m.get(path) {
                return Some(v.reborrow());
            }
            split_points(path).find_map(|(head, rest)| m.get(head).and_then(|v| descend(v, rest)))
        }
        Value::List(items) => {
            let (head, rest) = path.split_once('.').map_or((path, None), |(h, r)| (h, Some(r)));
            let item = items.get(head.parse::<usize>().ok()?)?;
            match rest {
                None => Some(item.reborrow()),
                Some(rest) => descend(item, rest),
            }
        }
        _ => None,
    }
}
