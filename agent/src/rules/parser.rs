//! Recursive-descent parser producing [`Expr`] trees.
//!
//! Grammar (Rulekit v1's `parser.y`, plus field indexing):
//!
//! ```text
//! rule      = and EOF
//! and       = or { ("and" | "&&") or }          -- loosest
//! or        = unary { ("or" | "||") unary }
//! unary     = ("not" | "!") unary | "(" and ")" | predicate
//! predicate = operand [ cmp operand | "matches" REGEX | "in" (array | CIDR) ]
//! operand   = literal | array | field | name "(" [operand {"," operand}] ")"
//! array     = "[" element {"," element} "]"   -- elements: literals and fields
//! field     = IDENT { "[" (STRING | INT) "]" | "." IDENT }
//! ```
//!
//! `>`, `>=`, `<`, `<=` accept only numbers, fields and calls on either side.

use std::cell::Cell;

use super::ast::{Cidr, CmpOp, Expr, FieldRef, LitKind, Literal, Operand, quote};
use super::fields::canonical_path;
use super::functions;
use super::lexer::{Kind, Token, tokenize};
use super::{Macros, RuleError};

/// Deepest nesting of parentheses, `not`s and calls in one rule text.
const MAX_DEPTH: usize = 64;
/// Deepest chain of macros calling macros.
const MAX_MACRO_NESTING: usize = 16;
/// Most macro expansions in one rule (guards against exponential expansion).
const MAX_EXPANSIONS: usize = 1024;

/// Parses `src`, expanding macros. `stack` names macros already being expanded (a call to
/// one of them is a cycle).
pub(crate) fn parse(src: &str, macros: &Macros, stack: &[String]) -> Result<Expr, RuleError> {
    let budget = Cell::new(MAX_EXPANSIONS);
    parse_inner(src, macros, &mut stack.to_vec(), &budget)
}

fn parse_inner(src: &str, macros: &Macros, stack: &mut Vec<String>, budget: &Cell<usize>) -> Result<Expr, RuleError> {
    let tokens = tokenize(src)?;
    let mut p = Parser { src, tokens, pos: 0, depth: 0, macros, stack, budget };
    let first = p.peek();
    if first.kind == Kind::Eof {
        return Err(p.err(first, "empty rule"));
    }
    let expr = p.and()?;
    let t = p.peek();
    if t.kind != Kind::Eof {
        let msg = format!("expected \"and\", \"or\" or end of rule, found {}", p.describe(t));
        return Err(p.err(t, msg));
    }
    Ok(expr)
}

struct Parser<'s, 'm> {
    src: &'s str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    macros: &'m Macros,
    stack: &'m mut Vec<String>,
    budget: &'m Cell<usize>,
}

impl Parser<'_, '_> {
    fn peek(&self) -> Token {
        self.peek_at(0)
    }

    fn peek_at(&self, n: usize) -> Token {
        let last = self.tokens.len().saturating_sub(1);
        self.tokens.get((self.pos + n).min(last)).copied().unwrap_or(Token { kind: Kind::Eof, start: 0, end: 0 })
    }

    fn bump(&mut self) -> Token {
        let t = self.peek();
        if t.kind != Kind::Eof {
            self.pos += 1;
        }
        t
    }

    fn text(&self, t: Token) -> &str {
        &self.src[t.start..t.end]
    }

    /// How a token is named in messages: `"=="`, `"a"` (strings keep their quotes), `end of rule`.
    fn describe(&self, t: Token) -> String {
        match t.kind {
            Kind::Eof => "end of rule".into(),
            Kind::Str => self.text(t).to_owned(),
            _ => format!("\"{}\"", self.text(t)),
        }
    }

    fn err(&self, t: Token, msg: impl Into<String>) -> RuleError {
        RuleError::at(self.src, t.start, msg)
    }

    /// `expected X after "<previous token>", found Y`.
    fn expected(&self, what: &str) -> RuleError {
        let t = self.peek();
        let mut msg = format!("expected {what}");
        if self.pos > 0 {
            let prev = self.tokens[self.pos - 1];
            msg.push_str(&format!(" after \"{}\"", self.text(prev)));
        }
        if t.kind != Kind::Eof {
            msg.push_str(&format!(", found {}", self.describe(t)));
        }
        self.err(t, msg)
    }

    fn enter(&mut self, t: Token) -> Result<(), RuleError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(t, format!("rule is nested too deeply (more than {MAX_DEPTH} levels)")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn and(&mut self) -> Result<Expr, RuleError> {
        let mut items = vec![self.or()?];
        while self.peek().kind == Kind::And {
            self.bump();
            items.push(self.or()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Expr::And(items) })
    }

    fn or(&mut self) -> Result<Expr, RuleError> {
        let mut items = vec![self.unary()?];
        while self.peek().kind == Kind::Or {
            self.bump();
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Expr::Or(items) })
    }

    fn unary(&mut self) -> Result<Expr, RuleError> {
        let t = self.peek();
        match t.kind {
            Kind::Not => {
                self.bump();
                self.enter(t)?;
                let inner = self.unary();
                self.leave();
                Ok(Expr::Not(Box::new(inner?)))
            }
            Kind::LParen => {
                self.bump();
                self.enter(t)?;
                let inner = self.and();
                self.leave();
                let inner = inner?;
                let close = self.peek();
                if close.kind != Kind::RParen {
                    let col = RuleError::at(self.src, t.start, "").column;
                    let msg = format!("expected \")\" to close \"(\" at column {col}, found {}", self.describe(close));
                    return Err(self.err(close, msg));
                }
                self.bump();
                Ok(inner)
            }
            _ => self.predicate(),
        }
    }

    fn predicate(&mut self) -> Result<Expr, RuleError> {
        let lhs_tok = self.peek();
        let lhs = self.operand()?;
        let op_tok = self.peek();
        let op = match op_tok.kind {
            Kind::Eq => CmpOp::Eq,
            Kind::Ne => CmpOp::Ne,
            Kind::Contains => CmpOp::Contains,
            Kind::Gt => CmpOp::Gt,
            Kind::Ge => CmpOp::Ge,
            Kind::Lt => CmpOp::Lt,
            Kind::Le => CmpOp::Le,
            Kind::Matches => {
                self.bump();
                let t = self.peek();
                if t.kind != Kind::Regex {
                    return Err(self.expected("a /regex/"));
                }
                self.bump();
                return Ok(Expr::Matches { lhs, re: self.literal(t)? });
            }
            Kind::In => {
                self.bump();
                let t = self.peek();
                let rhs = match t.kind {
                    Kind::LBracket => self.array()?,
                    Kind::Cidr | Kind::Str => {
                        self.bump();
                        let lit = self.literal(t)?;
                        if !matches!(lit.kind, LitKind::Cidr(_)) {
                            return Err(self.err(t, "expected an array [ … ] or a CIDR after \"in\""));
                        }
                        Operand::Lit(lit)
                    }
                    _ => return Err(self.expected("an array [ … ] or a CIDR")),
                };
                return Ok(Expr::In { lhs, rhs });
            }
            _ => return Ok(Expr::Value(lhs)),
        };
        self.bump();
        let ordering = matches!(op, CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le);
        let op_text = self.text(op_tok).to_owned();
        if ordering && !numeric(&lhs) {
            let msg = format!(
                "\"{op_text}\" compares numbers: expected a number, field or function call before it, found {}",
                self.describe(lhs_tok)
            );
            return Err(self.err(lhs_tok, msg));
        }
        let rhs_tok = self.peek();
        let rhs = self.operand()?;
        if ordering && !numeric(&rhs) {
            let msg = format!(
                "expected a number, field or function call after \"{op_text}\", found {}",
                self.describe(rhs_tok)
            );
            return Err(self.err(rhs_tok, msg));
        }
        Ok(Expr::Compare { lhs, op, rhs })
    }

    fn operand(&mut self) -> Result<Operand, RuleError> {
        let t = self.peek();
        match t.kind {
            Kind::Int | Kind::Float | Kind::Bool | Kind::Str | Kind::Ip | Kind::Cidr | Kind::Hex | Kind::Regex => {
                self.bump();
                Ok(Operand::Lit(self.literal(t)?))
            }
            Kind::LBracket => self.array(),
            Kind::Ident if self.peek_at(1).kind == Kind::LParen => self.call(),
            Kind::Ident | Kind::Field => self.field(),
            _ => Err(self.expected("a value")),
        }
    }

    fn array(&mut self) -> Result<Operand, RuleError> {
        self.bump(); // [
        let mut items = Vec::new();
        loop {
            let t = self.peek();
            let item = match t.kind {
                Kind::Int | Kind::Float | Kind::Bool | Kind::Str | Kind::Ip | Kind::Cidr | Kind::Hex | Kind::Regex => {
                    self.bump();
                    Operand::Lit(self.literal(t)?)
                }
                Kind::Ident if self.peek_at(1).kind == Kind::LParen => {
                    return Err(self.err(t, "function calls are not allowed in arrays"));
                }
                Kind::Ident | Kind::Field => self.field()?,
                _ => return Err(self.expected("a literal or field")),
            };
            items.push(item);
            match self.peek().kind {
                Kind::Comma => {
                    self.bump();
                }
                Kind::RBracket => {
                    self.bump();
                    return Ok(Operand::Array(items));
                }
                _ => return Err(self.expected("\",\" or \"]\"")),
            }
        }
    }

    fn call(&mut self) -> Result<Operand, RuleError> {
        let name_tok = self.bump();
        let open = self.bump(); // (
        self.enter(open)?;
        let args = self.call_args();
        self.leave();
        let args = args?;
        let name = self.text(name_tok).to_owned();
        if let Some(arity) = functions::arity(&name) {
            if args.len() != arity {
                let msg = format!("function \"{name}\" expects {arity} arguments, got {}", args.len());
                return Err(self.err(name_tok, msg));
            }
            return Ok(Operand::Call { name, args });
        }
        let Some(body) = self.macros.get(&name) else {
            return Err(self.err(name_tok, format!("unknown function or macro \"{name}\"")));
        };
        if !args.is_empty() {
            return Err(self.err(name_tok, format!("macro \"{name}\" takes no arguments, got {}", args.len())));
        }
        if self.stack.contains(&name) {
            let chain: Vec<String> = self.stack.iter().chain([&name]).map(|n| format!("{n}()")).collect();
            return Err(self.err(name_tok, format!("macro cycle: {}", chain.join(" -> "))));
        }
        if self.stack.len() >= MAX_MACRO_NESTING {
            return Err(self.err(name_tok, format!("macros nested too deeply (more than {MAX_MACRO_NESTING})")));
        }
        if self.budget.get() == 0 {
            return Err(self.err(name_tok, format!("too many macro expansions (more than {MAX_EXPANSIONS})")));
        }
        self.budget.set(self.budget.get() - 1);
        self.stack.push(name.clone());
        let expanded = parse_inner(body, self.macros, self.stack, self.budget);
        self.stack.pop();
        let body = expanded.map_err(|e| self.err(name_tok, format!("in macro \"{name}\": {e}")))?;
        Ok(Operand::Macro { name, body: Box::new(body) })
    }

    fn call_args(&mut self) -> Result<Vec<Operand>, RuleError> {
        let mut args = Vec::new();
        if self.peek().kind == Kind::RParen {
            self.bump();
            return Ok(args);
        }
        loop {
            args.push(self.operand()?);
            match self.peek().kind {
                Kind::Comma => {
                    self.bump();
                }
                Kind::RParen => {
                    self.bump();
                    return Ok(args);
                }
                _ => return Err(self.expected("\",\" or \")\"")),
            }
        }
    }

    /// A field path: `a.b-c`, then any `["key"]`, `[0]` or `.name` suffixes written without
    /// spaces.
    fn field(&mut self) -> Result<Operand, RuleError> {
        let first = self.bump();
        let mut display = self.text(first).to_owned();
        let mut path = display.clone();
        let mut end = first.end;
        loop {
            let t = self.peek();
            if t.start != end {
                break;
            }
            match t.kind {
                Kind::LBracket => {
                    self.bump();
                    let key_tok = self.peek();
                    let key_text = self.text(key_tok).to_owned();
                    match key_tok.kind {
                        Kind::Str => {
                            let key = unquote(&key_text).map_err(|m| self.err(key_tok, m))?;
                            display.push_str(&format!("[{}]", quote(&key)));
                            path.push('.');
                            path.push_str(&key);
                        }
                        Kind::Int if key_text.bytes().all(|b| b.is_ascii_digit()) => {
                            let index: u64 = key_text.parse().map_err(|_| self.err(key_tok, "index out of range"))?;
                            display.push_str(&format!("[{index}]"));
                            path.push_str(&format!(".{index}"));
                        }
                        _ => return Err(self.expected("a quoted key or an index")),
                    }
                    self.bump();
                    let close = self.peek();
                    if close.kind != Kind::RBracket {
                        return Err(self.expected("\"]\""));
                    }
                    self.bump();
                    end = close.end;
                }
                Kind::Dot => {
                    self.bump();
                    let name = self.peek();
                    let text = self.text(name).to_owned();
                    let ident = text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                    if name.start != t.end || !ident {
                        return Err(self.expected("a field name"));
                    }
                    self.bump();
                    display.push('.');
                    display.push_str(&text);
                    path.push('.');
                    path.push_str(&text);
                    end = name.end;
                }
                _ => break,
            }
        }
        Ok(Operand::Field(FieldRef { path: canonical_path(&path).into_owned(), display }))
    }

    /// Decodes a literal token.
    fn literal(&self, t: Token) -> Result<Literal, RuleError> {
        let raw = self.text(t);
        let kind = match t.kind {
            Kind::Int => parse_int(raw),
            Kind::Float => raw.parse().map(LitKind::Float).map_err(|_| format!("invalid number {raw}")),
            Kind::Bool => Ok(LitKind::Bool(raw.eq_ignore_ascii_case("true"))),
            Kind::Str => unquote(raw).map(|s| {
                // Like Rulekit, a quoted IP or CIDR is an IP or CIDR value.
                if let Ok(ip) = s.parse() {
                    LitKind::Ip(ip)
                } else if let Some(c) = s.contains('/').then(|| Cidr::parse(&s).ok()).flatten() {
                    LitKind::Cidr(c)
                } else {
                    LitKind::Str(s)
                }
            }),
            Kind::Ip => raw.parse().map(LitKind::Ip).map_err(|_| format!("invalid IP address {raw}")),
            Kind::Cidr => Cidr::parse(raw).map(LitKind::Cidr),
            Kind::Hex => Ok(LitKind::Hex(decode_hex(raw))),
            Kind::Regex => regex::RegexBuilder::new(&raw[1..raw.len() - 1])
                .size_limit(1 << 20)
                .build()
                .map(LitKind::Regex)
                .map_err(|e| format!("invalid regex {raw}: {}", regex_error(&e))),
            _ => Err(format!("expected a literal, found {}", self.describe(t))),
        };
        kind.map(|kind| Literal { raw: raw.to_owned(), kind }).map_err(|m| self.err(t, m))
    }
}

/// Whether an operand may appear beside `>`, `>=`, `<`, `<=`.
fn numeric(op: &Operand) -> bool {
    match op {
        Operand::Field(_) | Operand::Call { .. } | Operand::Macro { .. } => true,
        Operand::Lit(l) => matches!(l.kind, LitKind::Int(_) | LitKind::UInt(_) | LitKind::Float(_)),
        Operand::Array(_) => false,
    }
}

/// The last line of a regex error (the line saying what is wrong).
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(&text);
    line.trim().trim_start_matches("error: ").to_owned()
}

/// Decodes `[+-]?digits` like Go's `strconv.ParseInt(s, 0, 64)` falling back to `ParseUint`:
/// a leading `0` means octal; values above `i64::MAX` become unsigned.
fn parse_int(raw: &str) -> Result<LitKind, String> {
    let (neg, digits) = match raw.as_bytes().first() {
        Some(b'-') => (true, &raw[1..]),
        Some(b'+') => (false, &raw[1..]),
        _ => (false, raw),
    };
    let radix = if digits.len() > 1 && digits.starts_with('0') { 8 } else { 10 };
    let mag = u64::from_str_radix(digits, radix).map_err(|_| {
        if radix == 8 && digits.bytes().any(|b| b > b'7') {
            format!("invalid integer {raw} (a leading 0 means octal)")
        } else {
            format!("integer {raw} is out of range")
        }
    })?;
    if neg {
        i64::try_from(-i128::from(mag)).map(LitKind::Int).map_err(|_| format!("integer {raw} is out of range"))
    } else {
        Ok(i64::try_from(mag).map_or(LitKind::UInt(mag), LitKind::Int))
    }
}

/// Decodes `hh(:hh)*` (the lexer guarantees the shape).
fn decode_hex(raw: &str) -> Vec<u8> {
    let digits: Vec<u8> = raw.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| {
            let nib = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            nib(p[0]) << 4 | p.get(1).map_or(0, |&b| nib(b))
        })
        .collect()
}

/// Decodes a quoted string token with Go's escapes (`\n \t \r \a \b \f \v \\ \" \'`, `\xHH`,
/// `\ooo`, `\uHHHH`, `\UHHHHHHHH`). In single quotes `\'` is a quote and `"` needs no escape.
pub(crate) fn unquote(raw: &str) -> Result<String, String> {
    let quote = raw.chars().next().ok_or("empty string token")?;
    let body = raw.get(1..raw.len().saturating_sub(1)).ok_or("unterminated string")?;
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == '\n' {
            return Err("newline in string (use \\n)".into());
        }
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let esc = chars.next().ok_or("unterminated escape sequence")?;
        let simple = match esc {
            'n' => Some(b'\n'),
            't' => Some(b'\t'),
            'r' => Some(b'\r'),
            'a' => Some(7),
            'b' => Some(8),
            'f' => Some(12),
            'v' => Some(11),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            '\'' if quote == '\'' => Some(b'\''),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let mut take = |n: usize, radix: u32| -> Result<u32, String> {
            let s: String = chars.by_ref().take(n).collect();
            if s.len() != n {
                return Err(format!("invalid escape sequence \\{esc}{s}"));
            }
            u32::from_str_radix(&s, radix).map_err(|_| format!("invalid escape sequence \\{esc}{s}"))
        };
        match esc {
            'x' => out.push(take(2, 16)? as u8),
            '0'..='7' => {
                let rest = take(2, 8)?;
                let v = esc.to_digit(8).unwrap_or(0) * 64 + rest;
                out.push(u8::try_from(v).map_err(|_| "octal escape above \\377".to_owned())?);
            }
            'u' | 'U' => {
                let v = take(if esc == 'u' { 4 } else { 8 }, 16)?;
                let c = char::from_u32(v).ok_or_else(|| format!("invalid unicode escape \\{esc}{v:x}"))?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return Err(format!("invalid escape sequence \\{esc}")),
        }
    }
    String::from_utf8(out).map_err(|_| "string escapes do not form valid UTF-8".to_owned())
}
