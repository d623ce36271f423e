//! Evaluation of a parsed rule against [`Fields`].
//!
//! Like Rulekit, each node yields a value or stops with "missing field" / "error"; `and` and
//! `or` short-circuit around stopped operands when the other side decides the result
//! (`a or b` with `a` missing and `b` true is true).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use super::ast::{Cidr, CmpOp, Expr, LitKind, Operand};
use super::compare::{compare, in_list, matches};
use super::{Fields, Outcome, Value, functions};

/// A value during evaluation: a field [`Value`] or a literal.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Ip(IpAddr),
    Cidr(Cidr),
    Hex(&'a [u8]),
    Regex(&'a regex::Regex),
    List(Vec<Val<'a>>),
    Map(BTreeMap<String, Value<'a>>),
}

impl Val<'_> {
    /// Rulekit's non-zero test.
    pub fn is_truthy(&self) -> bool {
        match self {
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::UInt(u) => *u != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::Hex(b) => !b.is_empty(),
            Val::List(l) => !l.is_empty(),
            Val::Ip(_) | Val::Cidr(_) | Val::Regex(_) | Val::Map(_) => true,
        }
    }
}

impl<'a> From<Value<'a>> for Val<'a> {
    fn from(v: Value<'a>) -> Self {
        match v {
            Value::Bool(b) => Val::Bool(b),
            Value::Int(i) => Val::Int(i),
            Value::Float(f) => Val::Float(f),
            Value::Str(s) => Val::Str(s),
            Value::Ip(ip) => Val::Ip(ip),
            Value::List(l) => Val::List(l.into_iter().map(Val::from).collect()),
            Value::Map(m) => Val::Map(m),
        }
    }
}

/// Why evaluation of a node produced no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// A field is absent (canonical path).
    Missing(String),
    /// Anything else, e.g. a function given the wrong type.
    Error,
}

type Res<'a> = Result<Val<'a>, Stop>;

/// Evaluates a whole rule.
pub(crate) fn eval_rule(expr: &Expr, fields: &dyn Fields) -> Outcome {
    match eval_expr(expr, fields) {
        Ok(v) if v.is_truthy() => Outcome::Match,
        Ok(_) | Err(Stop::Error) => Outcome::NoMatch,
        Err(Stop::Missing(path)) => Outcome::MissingField(path),
    }
}

fn is_false(r: &Res<'_>) -> bool {
    r.as_ref().is_ok_and(|v| !v.is_truthy())
}

fn is_true(r: &Res<'_>) -> bool {
    r.as_ref().is_ok_and(Val::is_truthy)
}

/// Combines two operands of which neither decided the result: `both` if both have values,
/// otherwise the first stop (preferring a missing field, which callers can report).
fn undecided<'a>(l: Res<'a>, r: Res<'a>, both: bool) -> Res<'a> {
    match (l, r) {
        (Ok(_), Ok(_)) => Ok(Val::Bool(both)),
        (Err(Stop::Missing(p)), _) | (_, Err(Stop::Missing(p))) => Err(Stop::Missing(p)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

fn eval_expr<'a>(expr: &'a Expr, fields: &'a dyn Fields) -> Res<'a> {
    match expr {
        Expr::And(items) => {
            let mut acc = eval_expr(&items[0], fields);
            for item in &items[1..] {
                if is_false(&acc) {
                    return acc;
                }
                let next = eval_expr(item, fields);
                if is_false(&next) {
                    return next;
                }
                acc = undecided(acc, next, true);
            }
            acc
        }
        Expr::Or(items) => {
            let mut acc = eval_expr(&items[0], fields);
            for item in &items[1..] {
                if is_true(&acc) {
                    return acc;
                }
                let next = eval_expr(item, fields);
                if is_true(&next) {
                    return next;
                }
                acc = undecided(acc, next, false);
            }
            acc
        }
        Expr::Not(inner) => Ok(Val::Bool(!eval_expr(inner, fields)?.is_truthy())),
        Expr::Compare { lhs, op, rhs } => {
            let l = eval_operand(lhs, fields)?;
            let r = eval_operand(rhs, fields)?;
            Ok(Val::Bool(compare(&l, *op, &r)))
        }
        Expr::Matches { lhs, re } => {
            let l = eval_operand(lhs, fields)?;
            Ok(Val::Bool(match &re.kind {
                LitKind::Regex(re) => matches(&l, re),
                _ => false,
            }))
        }
        Expr::In { lhs, rhs } => {
            let l = eval_operand(lhs, fields)?;
            Ok(Val::Bool(match eval_operand(rhs, fields)? {
                Val::List(items) => in_list(&l, &items),
                net @ Val::Cidr(_) => compare(&l, CmpOp::Eq, &net),
                _ => false,
            }))
        }
        Expr::Value(op) => eval_operand(op, fields),
    }
}

fn eval_operand<'a>(op: &'a Operand, fields: &'a dyn Fields) -> Res<'a> {
    match op {
        Operand::Field(r) => fields.get(&r.path).map(Val::from).ok_or_else(|| Stop::Missing(r.path.clone())),
        Operand::Lit(l) => Ok(literal(&l.kind)),
        Operand::Array(items) => {
            items.iter().map(|i| eval_operand(i, fields)).collect::<Result<Vec<_>, _>>().map(Val::List)
        }
        Operand::Call { name, args } => {
            let args = args.iter().map(|a| eval_operand(a, fields)).collect::<Result<Vec<_>, _>>()?;
            functions::call(name, &args)
        }
        Operand::Macro { body, .. } => eval_expr(body, fields),
    }
}

fn literal(kind: &LitKind) -> Val<'_> {
    match kind {
        LitKind::Bool(b) => Val::Bool(*b),
        LitKind::Int(i) => Val::Int(*i),
        LitKind::UInt(u) => Val::UInt(*u),
        LitKind::Float(f) => Val::Float(*f),
        LitKind::Str(s) => Val::Str(Cow::Borrowed(s)),
        LitKind::Ip(ip) => Val::Ip(*ip),
        LitKind::Cidr(c) => Val::Cidr(*c),
        LitKind::Hex(h) => Val::Hex(h),
        LitKind::Regex(re) => Val::Regex(re),
    }
}

/// Appends the canonical paths `expr` reads to `out`, skipping duplicates.
pub(crate) fn collect_fields<'a>(expr: &'a Expr, out: &mut Vec<&'a str>) {
    match expr {
        Expr::And(items) | Expr::Or(items) => items.iter().for_each(|e| collect_fields(e, out)),
        Expr::Not(inner) => collect_fields(inner, out),
        Expr::Compare { lhs, rhs, .. } | Expr::In { lhs, rhs } => {
            operand_fields(lhs, out);
            operand_fields(rhs, out);
        }
        Expr::Matches { lhs, .. } | Expr::Value(lhs) => operand_fields(lhs, out),
    }
}

fn operand_fields<'a>(op: &'a Operand, out: &mut Vec<&'a str>) {
    match op {
        Operand::Field(r) => {
            if !out.contains(&r.path.as_str()) {
                out.push(&r.path);
            }
        }
        Operand::Lit(_) => {}
        Operand::Array(items) | Operand::Call { args: items, .. } => items.iter().for_each(|i| operand_fields(i, out)),
        Operand::Macro { body, .. } => collect_fields(body, out),
    }
}
