//! Built-in functions: Rulekit's `starts_with` and qtap's `zone` / `in_zone`
//! (`pkg/rulekitext`).

use std::borrow::Cow;
use std::fmt::Write as _;

use super::eval::{Stop, Val};

/// Name and argument count of every built-in.
const BUILTINS: &[(&str, usize)] = &[("starts_with", 2), ("zone", 1), ("in_zone", 2)];

/// Whether `name` is a built-in function (macros may not use these names).
pub(crate) fn is_builtin(name: &str) -> bool {
    arity(name).is_some()
}

/// Number of arguments built-in `name` takes.
pub(crate) fn arity(name: &str) -> Option<usize> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|&(_, a)| a)
}

/// Calls built-in `name`; the parser has checked the name and argument count.
pub(crate) fn call<'a>(name: &str, args: &[Val<'a>]) -> Result<Val<'a>, Stop> {
    match (name, args) {
        // starts_with(value, prefix): both sides formatted like Go's fmt.Sprint.
        ("starts_with", [value, prefix]) => Ok(Val::Bool(go_sprint(value).starts_with(&go_sprint(prefix)))),
        // zone(domain): the registrable domain ("api.example.com" -> "example.com").
        ("zone", [Val::Str(domain)]) => Ok(Val::Str(Cow::Owned(zone(domain).to_owned()))),
        // in_zone(domain, zone): domain is zone or a subdomain of it.
        ("in_zone", [Val::Str(domain), Val::Str(zone)]) => {
            Ok(Val::Bool(domain == zone || domain.strip_suffix(zone.as_ref()).is_some_and(|h| h.ends_with('.'))))
        }
        // Wrong argument types: an error, which makes the rule not match.
        _ => Err(Stop::Error),
    }
}

/// Second-level labels under which registrations happen one level deeper. A small stand-in
/// for the public suffix list qtap uses (`golang.org/x/net/publicsuffix`).
const TWO_LABEL_SUFFIXES: &[&str] = &[
    "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "net.uk", "com.au", "net.au", "org.au", "edu.au", "gov.au", "co.nz",
    "org.nz", "co.jp", "ne.jp", "or.jp", "ac.jp", "co.kr", "co.in", "net.in", "org.in", "co.za", "com.br", "net.br",
    "com.cn", "net.cn", "org.cn", "com.mx", "com.tr", "com.tw", "com.hk", "com.sg", "com.ar", "co.il", "com.pl",
    "co.id", "com.my", "com.ph", "com.vn",
];

/// The registrable domain ("eTLD+1") of `domain`: the last two labels, or three under a
/// known two-label public suffix. A single label is returned unchanged. Unlike qtap, which
/// consults the full public suffix list, private suffixes (e.g. `s3-website…amazonaws.com`)
/// are not known.
pub(crate) fn zone(domain: &str) -> &str {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let dots: Vec<usize> = domain.match_indices('.').map(|(i, _)| i).collect();
    let labels = match dots.len() {
        0 => return domain,
        n if n >= 2 && TWO_LABEL_SUFFIXES.contains(&&domain[dots[n - 2] + 1..]) => 3,
        _ => 2,
    };
    match dots.len().checked_sub(labels) {
        Some(i) => &domain[dots[i] + 1..],
        None => domain,
    }
}

/// Formats a value the way Go's `fmt.Sprint` formats the corresponding Go value.
pub(crate) fn go_sprint(v: &Val<'_>) -> String {
    match v {
        Val::Bool(b) => b.to_string(),
        Val::Int(i) => i.to_string(),
        Val::UInt(u) => u.to_string(),
        Val::Float(f) => go_float(*f),
        Val::Str(s) => s.to_string(),
        Val::Ip(ip) => ip.to_canonical().to_string(),
        Val::Cidr(c) => c.to_string(),
        Val::Hex(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"),
        Val::Regex(re) => re.as_str().to_owned(),
        Val::List(items) => format!("[{}]", items.iter().map(go_sprint).collect::<Vec<_>>().join(" ")),
        Val::Map(m) => {
            let mut out = String::from("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                let sep = if i > 0 { " " } else { "" };
                let _ = write!(out, "{sep}{k}:{}", go_sprint(&Val::from(v.reborrow())));
            }
            out.push(']');
            out
        }
    }
}

/// Go's `%v` for a float64: shortest digits, exponent form when the exponent is < -4 or >= 6
/// (`1e+06`, `1.5`, `1e-05`).
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if f != 0.0 && !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        f.to_string()
    }
}
