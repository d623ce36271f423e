//! A Rulekit-compatible rule language (github.com/qpoint-io/rulekit, as used by qtap), sans-I/O.
//!
//! Parses rule expressions such as `http.res.status >= 400 and dst.domain == "api.example.com"`
//! into a [`Rule`] and evaluates them against any [`Fields`] source. Nothing here is wired
//! into the capture pipeline.
//!
//! # Syntax
//!
//! | construct       | forms                                                                  |
//! |-----------------|------------------------------------------------------------------------|
//! | logic           | `or` `\|\|`, `and` `&&`, `not` `!`, `( … )` (keywords case-insensitive)  |
//! | comparison      | `==` `eq`, `!=` `ne`, `>` `gt`, `>=` `ge`, `<` `lt`, `<=` `le`, `contains` |
//! | membership      | `x in [1, "a", 10.0.0.1]`, `ip in 10.0.0.0/8`, `ip in [10.0.0.0/8, ::1/128]` |
//! | regex           | `x matches /re/` (also `=~`, and `\|re\|` delimiters); Go RE2 syntax     |
//! | literals        | `true`/`false`, `42`, `-1.5`, `"str"`/`'str'` (Go escapes), `10.0.0.1`, `::1`, `10.0.0.0/8`, hex `47:45:54`, `/re/` |
//! | fields          | dot paths `http.req.headers.user-agent` (`-` allowed), `headers["x-api-key"]`, `items[0].name` |
//! | truthiness      | a bare value: true if present and not `false`/`0`/`""`/`[]`            |
//! | functions       | `starts_with(value, prefix)`, `in_zone(domain, zone)`, `zone(domain)`   |
//! | macros          | `name()`, expanded at parse time from [`Macros`] (`rulekit.macros`)     |
//! | comments        | `-- to end of line`, `/* block */`                                     |
//!
//! **Precedence follows Rulekit v1 (the version qtap pins): `not` binds tightest, then `or`,
//! then `and`** — so `a and b or c` means `a and (b or c)` and `a or b and c` means
//! `(a or b) and c`. Use parentheses when mixing them; [`Rule`]'s `Display` always does.
//!
//! Type rules follow Rulekit: `>`/`>=`/`<`/`<=` take only numbers, fields and function calls
//! (`x > "a"` is a parse error); comparing mismatched types at run time is simply no match;
//! `matches` needs a regex literal; `in` needs an array literal or a CIDR.
//!
//! # Evaluation
//!
//! [`Rule::eval`] returns [`Outcome::Match`], [`Outcome::NoMatch`], or
//! [`Outcome::MissingField`] when a field the result depends on is absent (which also means
//! the rule does not match). `and`/`or` short-circuit as in Rulekit: `a or b` matches when `b`
//! is true even if `a` is missing.

mod ast;
mod compare;
mod eval;
mod fields;
mod functions;
mod lexer;
mod macros;
mod parser;
mod value;

#[cfg(test)]
mod tests;

use std::fmt;

pub use fields::{ALIASES, Fields, MapFields, canonical_path};
pub use macros::{MacroDef, MacroError, Macros};
pub use value::Value;

/// A rule that failed to parse: what is wrong, and where.
///
/// Displays as `column 17: expected a value after "=="` (`line 2, column 3: …` for multi-line
/// rules); callers add the rule name: `rule "errors": column 17: …`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct RuleError {
    /// What is wrong, e.g. `expected a value after "=="`.
    pub message: String,
    /// 1-based line of the error in the rule text.
    pub line: usize,
    /// 1-based column (in characters) of the error within its line.
    pub column: usize,
    /// The rule text.
    pub rule: String,
}

impl RuleError {
    /// An error at byte offset `pos` of `src`.
    pub(crate) fn at(src: &str, pos: usize, message: impl Into<String>) -> Self {
        let mut pos = pos.min(src.len());
        while !src.is_char_boundary(pos) {
            pos -= 1;
        }
        let before = &src[..pos];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        RuleError {
            message: message.into(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            rule: src.to_owned(),
        }
    }

    fn render(&self) -> String {
        if self.rule.contains('\n') {
            format!("line {}, column {}: {}", self.line, self.column, self.message)
        } else {
            format!("column {}: {}", self.column, self.message)
        }
    }

    /// The offending line of the rule with a `^` under the error column.
    pub fn snippet(&self) -> String {
        let line = self.rule.lines().nth(self.line.saturating_sub(1)).unwrap_or("");
        format!("{line}\n{}^", " ".repeat(self.column.saturating_sub(1)))
    }
}

/// The result of evaluating a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The rule is true for these fields.
    Match,
    /// The rule is false (or compared values of mismatched types).
    NoMatch,
    /// The result depends on a field that is absent: the rule does not match. Holds the
    /// canonical path of the first such field.
    MissingField(String),
}

impl Outcome {
    /// Whether this is [`Outcome::Match`].
    pub fn is_match(&self) -> bool {
        matches!(self, Outcome::Match)
    }
}

/// A parsed rule, ready to evaluate any number of times.
///
/// `Display` prints a canonical form that parses back to an identical rule.
#[derive(Debug, Clone)]
pub struct Rule {
    expr: ast::Expr,
    source: String,
}

/// Parses a rule that uses no macros. Same as [`Rule::parse`].
pub fn parse(src: &str) -> Result<Rule, RuleError> {
    Rule::parse(src)
}

impl Rule {
    /// Parses a rule that uses no macros.
    pub fn parse(src: &str) -> Result<Rule, RuleError> {
        Self::parse_with_macros(src, &Macros::new())
    }

    /// Parses a rule, expanding `name()` calls from `macros` (nested macros are expanded too;
    /// a cycle is an error).
    pub fn parse_with_macros(src: &str, macros: &Macros) -> Result<Rule, RuleError> {
        let expr = parser::parse(src, macros, &[])?;
        Ok(Rule { expr, source: src.to_owned() })
    }

    /// Evaluates the rule against `fields`. Never panics.
    pub fn eval(&self, fields: &dyn Fields) -> Outcome {
        eval::eval_rule(&self.expr, fields)
    }

    /// Whether the rule matches `fields` (a missing field means no match).
    pub fn matches(&self, fields: &dyn Fields) -> bool {
        self.eval(fields).is_match()
    }

    /// The rule text as given to [`parse`](Self::parse).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The canonical paths of all fields the rule reads (including inside macros), in order
    /// of first use.
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        eval::collect_fields(&self.expr, &mut out);
        out
    }
}

impl PartialEq for Rule {
    /// Two rules are equal when they parsed to the same tree (the source text may differ in
    /// spacing, comments and keyword spelling).
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}
