//! The parsed form of a rule, and its canonical printing.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A boolean-valued node.
///
/// `And`/`Or` hold two or more operands (chains are flattened so long rules do not nest deeply).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare {
        lhs: Operand,
        op: CmpOp,
        rhs: Operand,
    },
    /// `lhs matches /re/`; `re` is always a regex literal.
    Matches {
        lhs: Operand,
        re: Literal,
    },
    /// `lhs in [..]` or `lhs in <cidr>`.
    In {
        lhs: Operand,
        rhs: Operand,
    },
    /// A bare value, tested for truthiness.
    Value(Operand),
}

/// Comparison operators (`in` and `matches` have their own [`Expr`] variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
}

impl CmpOp {
    /// Canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Contains => "contains",
        }
    }
}

/// A value-producing node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Field(FieldRef),
    Lit(Literal),
    Array(Vec<Operand>),
    /// A built-in function call.
    Call {
        name: String,
        args: Vec<Operand>,
    },
    /// A macro call, expanded at parse time; prints as `name()`.
    Macro {
        name: String,
        body: Box<Expr>,
    },
}

/// A field reference: how it was written, and the canonical path used for lookups.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldRef {
    pub display: String,
    pub path: String,
}

/// A literal: its source text (kept for printing) and its decoded value.
#[derive(Debug, Clone)]
pub(crate) struct Literal {
    pub raw: String,
    pub kind: LitKind,
}

impl PartialEq for Literal {
    /// The raw text fully determines the value.
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

/// Decoded literal values.
#[derive(Debug, Clone)]
pub(crate) enum LitKind {
    Bool(bool),
    Int(i64),
    /// Integers above `i64::MAX` (Rulekit parses those as uint64).
    UInt(u64),
    Float(f64),
    Str(String),
    Ip(IpAddr),
    Cidr(Cidr),
    Hex(Vec<u8>),
    Regex(regex::Regex),
}

/// An IP network: address with host bits cleared, and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/len`, clearing host bits like Go's `net.ParseCIDR`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, len) = s.split_once('/').ok_or_else(|| format!("invalid CIDR {s:?}"))?;
        let ip: IpAddr = addr.parse().map_err(|_| format!("invalid CIDR {s:?}: bad address"))?;
        let prefix: u8 = len.parse().map_err(|_| format!("invalid CIDR {s:?}: bad prefix length"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > max || len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid CIDR {s:?}: prefix length must be at most {max}"));
        }
        Ok(Self::new(ip, prefix))
    }

    fn new(ip: IpAddr, prefix: u8) -> Self {
        match ip {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                Self::new(IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED)), prefix - 96)
            }
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                Cidr { net: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask)), prefix }
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                Cidr { net: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)), prefix }
            }
        }
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        Cidr::new(ip.to_canonical(), self.prefix) == *self
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// Quotes `s` as a double-quoted rule string.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Field(r) => f.write_str(&r.display),
            Operand::Lit(l) => f.write_str(&l.raw),
            Operand::Array(items) => {
                f.write_str("[")?;
                write_list(f, items)?;
                f.write_str("]")
            }
            Operand::Call { name, args } => {
                write!(f, "{name}(")?;
                write_list(f, args)?;
                f.write_str(")")
            }
            Operand::Macro { name, .. } => write!(f, "{name}()"),
        }
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[Operand]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// Prints a rule that parses back to the same tree. Mixed `and`/`or` are always parenthesized,
/// so the text means the same under Rulekit v1 precedence (`or` binds tighter) and the usual
/// precedence (`and` binds tighter).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(items) | Expr::Or(items) => {
                let word = if matches!(self, Expr::And(_)) { " and " } else { " or " };
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(word)?;
                    }
                    match item {
                        Expr::And(_) | Expr::Or(_) => write!(f, "({item})")?,
                        _ => write!(f, "{item}")?,
                    }
                }
                Ok(())
            }
            Expr::Not(inner) => match **inner {
                Expr::And(_) | Expr::Or(_) => write!(f, "not ({inner})"),
                _ => write!(f, "not {inner}"),
            },
            Expr::Compare { lhs, op, rhs } => write!(f, "{lhs} {} {rhs}", op.as_str()),
            Expr::Matches { lhs, re } => write!(f, "{lhs} matches {}", re.raw),
            Expr::In { lhs, rhs } => write!(f, "{lhs} in {rhs}"),
            Expr::Value(v) => write!(f, "{v}"),
        }
    }
}
