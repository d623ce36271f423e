//! Masking of query parameters (and userinfo passwords) in URLs and request targets, and of
//! fields in `application/x-www-form-urlencoded` bodies.

use super::mask::{Masker, is_mask};

/// Compiled query parameter names.
#[derive(Debug, Clone)]
pub(crate) struct QueryRule {
    /// Lowercased names.
    names: Vec<String>,
}

impl QueryRule {
    /// Names are compared ASCII case-insensitively after percent-decoding.
    pub(crate) fn new(names: &[String]) -> Self {
        QueryRule { names: names.iter().map(|n| n.trim().to_ascii_lowercase()).collect() }
    }

    fn matches(&self, raw_name: &str) -> bool {
        if self.names.is_empty() {
            return false;
        }
        let decoded = String::from_utf8_lossy(&percent_decode(raw_name)).to_ascii_lowercase();
        self.names.contains(&decoded)
    }

    /// Masks the values of listed parameters in `query` (the part after `?`, without a
    /// fragment), keeping every separator, name and unlisted pair byte for byte. Returns the
    /// masked query (when anything changed) and the number of values masked.
    pub(crate) fn mask_pairs(&self, query: &str, masker: &Masker) -> (Option<String>, usize) {
        let mut out = String::with_capacity(query.len());
        let mut n = 0;
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, value)) if !value.is_empty() && !is_mask(value) && self.matches(name) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(&masker.mask(&percent_decode(value)));
                    n += 1;
                }
                _ => out.push_str(pair),
            }
        }
        ((n > 0).then_some(out), n)
    }

    /// Masks `url` (absolute URL, or any request target form): listed query parameters, and the
    /// password of a `user:password@` userinfo. The fragment is left alone. Returns the masked
    /// URL (when anything changed) and the number of values masked.
    pub(crate) fn mask_url(&self, url: &str, masker: &Masker) -> (Option<String>, usize) {
        let (before_fragment, fragment) = match url.find('#') {
            Some(i) => url.split_at(i),
            None => (url, ""),
        };
        let (base, query) = match before_fragment.find('?') {
            Some(i) => (&before_fragment[..i], Some(&before_fragment[i + 1..])),
            None => (before_fragment, None),
        };
        let (base_masked, mut n) = mask_userinfo(base, masker);
        let (query_masked, q) = query.map(|q| self.mask_pairs(q, masker)).unwrap_or((None, 0));
        n += q;
        if n == 0 {
            return (None, 0);
        }
        let mut out = String::with_capacity(url.len() + 32);
        out.push_str(base_masked.as_deref().unwrap_or(base));
        if let Some(q) = query {
            out.push('?');
            out.push_str(query_masked.as_deref().unwrap_or(q));
        }
        out.push_str(fragment);
        (Some(out), n)
    }
}

/// Masks the password in `scheme://user:password@host...`.
fn mask_userinfo(base: &str, masker: &Masker) -> (Option<String>, usize) {
    let Some(scheme_end) = base.find("://") else {
        return (None, 0);
    };
    let auth_start = scheme_end + 3;
    let rest = &base[auth_start..];
    let auth_len = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..auth_len];
    let Some(at) = authority.rfind('@') else {
        return (None, 0);
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return (None, 0);
    };
    let password = &userinfo[colon + 1..];
    if password.is_empty() || is_mask(password) {
        return (None, 0);
    }
    let pw_start = auth_start + colon + 1;
    let pw_end = auth_start + at;
    let masked = format!("{}{}{}", &base[..pw_start], masker.mask(&percent_decode(password)), &base[pw_end..]);
    (Some(masked), 1)
}

/// Decodes `%XX` escapes and `+` (space, as in forms); malformed escapes stay as they are.
pub(crate) fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => match b.get(i + 1..i + 3).map(|h| (hex_val(h[0]), hex_val(h[1]))) {
                Some((Some(h), Some(l))) => {
                    out.push((h << 4) | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
