//! [`Value`]: what a field holds when a rule is evaluated.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A field value handed to the evaluator by a [`Fields`](super::Fields) implementation.
///
/// Comparison rules (Rulekit's): numbers compare across `Int`/`Float`; strings compare
/// case-sensitively; `Ip` compares with IP and CIDR literals (IPv4-mapped IPv6 addresses equal
/// their IPv4 form); a `List` matches when any element matches (`!=` when none is equal);
/// any other pairing of types is simply "no match".
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `true` / `false`.
    Bool(bool),
    /// Any integer (ports, status codes, user ids).
    Int(i64),
    /// A floating-point number (e.g. `tls.version` 1.3).
    Float(f64),
    /// Text; borrowed from the field source where possible.
    Str(Cow<'a, str>),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A list such as `tags` (`["team:core", "env:prod"]`).
    List(Vec<Value<'a>>),
    /// A nested object; only its truthiness (always true) and its sub-fields matter to rules.
    Map(BTreeMap<String, Value<'a>>),
}

impl Value<'_> {
    /// Rulekit's "non-zero" test used for a bare field (`tls.enabled and ...`): `false`, `0`,
    /// `0.0`, `""` and `[]` are false; everything else, including any IP or map, is true.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Ip(_) | Value::Map(_) => true,
        }
    }

    /// A copy that owns all its text.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Ip(ip) => Value::Ip(ip),
            Value::List(l) => Value::List(l.into_iter().map(Value::into_owned).collect()),
            Value::Map(m) => Value::Map(m.into_iter().map(|(k, v)| (k, v.into_owned())).collect()),
        }
    }

    /// A copy whose text borrows from `self` (cheap for scalars and strings).
    pub fn reborrow(&self) -> Value<'_> {
        match self {
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::Float(f) => Value::Float(*f),
            Value::Str(s) => Value::Str(Cow::Borrowed(s)),
            Value::Ip(ip) => Value::Ip(*ip),
            Value::List(l) => Value::List(l.iter().map(Value::reborrow).collect()),
            Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), v.reborrow())).collect()),
        }
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

macro_rules! int_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Value<'_> {
            fn from(v: $t) -> Self {
                Value::Int(i64::from(v))
            }
        }
    )*};
}
int_from!(i8, i16, i32, i64, u8, u16, u32);

impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Str(Cow::Borrowed(v))
    }
}

impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Str(Cow::Owned(v))
    }
}

impl From<IpAddr> for Value<'_> {
    fn from(v: IpAddr) -> Self {
        Value::Ip(v)
    }
}

impl From<Ipv4Addr> for Value<'_> {
    fn from(v: Ipv4Addr) -> Self {
        Value::Ip(IpAddr::V4(v))
    }
}

impl From<Ipv6Addr> for Value<'_> {
    fn from(v: Ipv6Addr) -> Self {
        Value::Ip(IpAddr::V6(v))
    }
}

impl<'a, T: Into<Value<'a>>> From<Vec<T>> for Value<'a> {
    fn from(v: Vec<T>) -> Self {
        Value::List(v.into_iter().map(Into::into).collect())
    }
}
