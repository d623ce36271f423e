//! Comparison semantics, following Rulekit's `compare*.go`.
//!
//! The left value's type picks the comparison; unsupported pairings are `false` for every
//! operator (including `!=`). Lists: a list on the right is "any element" (`!=`: "no
//! element equal", `contains`: unsupported); a list on the left is the same, with `contains`
//! meaning "has an element equal to". Deliberate deviations from Rulekit, all of which only
//! turn a Go "false" into a sensible answer: a string holding an address compares with an IP /
//! CIDR as that address (in either order), `matches` tries every string of any list (Go: only
//! `[]string`), and `!=` on a list means "no element equal" for every list type (Go's
//! `[]string` uses "some element differs").

use std::cmp::Ordering;
use std::net::IpAddr;

use super::ast::{Cidr, CmpOp};
use super::eval::Val;

/// `l <op> r`.
pub(crate) fn compare(l: &Val<'_>, op: CmpOp, r: &Val<'_>) -> bool {
    if let Val::List(items) = r {
        if op == CmpOp::Contains {
            return false;
        }
        return any(items, op, |rv, op| compare(l, op, rv));
    }
    match l {
        Val::Str(s) => compare_str(s, op, r),
        Val::List(items) => any(items, op, |lv, op| compare(lv, op, r)),
        Val::Int(_) | Val::UInt(_) | Val::Float(_) => cmp_numbers(l, r).is_some_and(|o| apply(o, op)),
        Val::Bool(a) => match r {
            Val::Bool(b) => eq_ne(a == b, op),
            _ => false,
        },
        Val::Ip(ip) => compare_ip(*ip, op, r),
        Val::Cidr(net) => match r {
            Val::Ip(ip) => in_net(net, *ip, op),
            Val::Str(s) => s.parse::<IpAddr>().is_ok_and(|ip| in_net(net, ip, op)),
            _ => false,
        },
        Val::Hex(_) | Val::Regex(_) | Val::Map(_) => false,
    }
}

/// `lhs matches re`: a string matches, or any string in a list does.
pub(crate) fn matches(l: &Val<'_>, re: &regex::Regex) -> bool {
    match l {
        Val::Str(s) => re.is_match(s),
        Val::List(items) => items.iter().any(|v| matches(v, re)),
        _ => false,
    }
}

/// `lhs in [items]`: some element `e` satisfies `e == lhs` (a CIDR element contains an IP).
/// Like Rulekit, a list on the left never matches.
pub(crate) fn in_list(l: &Val<'_>, items: &[Val<'_>]) -> bool {
    !matches!(l, Val::List(_)) && items.iter().any(|e| compare(e, CmpOp::Eq, l))
}

/// Applies `op` elementwise: any element for most operators, none-equal for `!=`, and
/// element equality for `contains`.
fn any<'v, 'a: 'v>(items: &'v [Val<'a>], op: CmpOp, f: impl Fn(&'v Val<'a>, CmpOp) -> bool) -> bool {
    match op {
        CmpOp::Ne => !items.iter().any(|v| f(v, CmpOp::Eq)),
        CmpOp::Contains => items.iter().any(|v| f(v, CmpOp::Eq)),
        _ => items.iter().any(|v| f(v, op)),
    }
}

fn eq_ne(equal: bool, op: CmpOp) -> bool {
    match op {
        CmpOp::Eq => equal,
        CmpOp::Ne => !equal,
        _ => false,
    }
}

fn apply(o: Ordering, op: CmpOp) -> bool {
    match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Contains => false,
    }
}

/// Orders two numbers of any kind; `None` if either is not a number (or is NaN).
fn cmp_numbers(l: &Val<'_>, r: &Val<'_>) -> Option<Ordering> {
    let exact = |v: &Val<'_>| match v {
        Val::Int(i) => Some(i128::from(*i)),
        Val::UInt(u) => Some(i128::from(*u)),
        _ => None,
    };
    let float = |v: &Val<'_>| match v {
        Val::Int(i) => Some(*i as f64),
        Val::UInt(u) => Some(*u as f64),
        Val::Float(f) => Some(*f),
        _ => None,
    };
    match (exact(l), exact(r)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => float(l)?.partial_cmp(&float(r)?),
    }
}

fn compare_str(s: &str, op: CmpOp, r: &Val<'_>) -> bool {
    match r {
        Val::Str(t) => match op {
            CmpOp::Contains => s.contains(t.as_ref()),
            _ => eq_ne(s == t, op),
        },
        Val::Regex(re) => match op {
            CmpOp::Eq | CmpOp::Contains => re.is_match(s),
            CmpOp::Ne => !re.is_match(s),
            _ => false,
        },
        Val::Ip(ip) => match op {
            CmpOp::Contains => s.contains(&ip.to_canonical().to_string()),
            _ => eq_ne(s.parse::<IpAddr>().is_ok_and(|a| a.to_canonical() == ip.to_canonical()), op),
        },
        Val::Cidr(net) => match op {
            CmpOp::Contains => s.contains(&net.to_string()),
            _ => eq_ne(s.parse::<IpAddr>().map_or_else(|_| s == net.to_string(), |ip| net.contains(ip)), op),
        },
        Val::Hex(bytes) => match op {
            CmpOp::Contains => contains_bytes(s.as_bytes(), bytes),
            _ => eq_ne(s.as_bytes() == *bytes, op),
        },
        _ => false,
    }
}

fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn compare_ip(ip: IpAddr, op: CmpOp, r: &Val<'_>) -> bool {
    match r {
        Val::Ip(other) => eq_ne(ip.to_canonical() == other.to_canonical(), op),
        Val::Cidr(net) => in_net(net, ip, op),
        // Only a string holding an address is comparable (Rulekit: never).
        Val::Str(s) => s.parse::<IpAddr>().is_ok_and(|a| eq_ne(a.to_canonical() == ip.to_canonical(), op)),
        _ => false,
    }
}

/// IP-vs-network: `==` and `contains` test membership, `!=` its absence.
fn in_net(net: &Cidr, ip: IpAddr, op: CmpOp) -> bool {
    match op {
        CmpOp::Eq | CmpOp::Contains => net.contains(ip),
        CmpOp::Ne => !net.contains(ip),
        _ => false,
    }
}
