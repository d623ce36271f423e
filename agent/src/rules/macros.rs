//! Named rule fragments from the `rulekit.macros` config section.
//!
//! ```yaml
//! rulekit:
//!   macros:
//!     - name: is_4xx
//!       expr: http.res.status >= 400 && http.res.status < 500
//! ```
//!
//! A rule calls a macro as `is_4xx()`; the call is replaced by the macro's expression when the
//! rule is parsed, so evaluation never looks macros up.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::functions::is_builtin;
use super::lexer::{Kind, Token, tokenize};
use super::{RuleError, parser};

/// One `rulekit.macros` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MacroDef {
    /// The name used in calls (`name()`): `[A-Za-z_][A-Za-z0-9_]*`, not a keyword.
    pub name: String,
    /// The rule expression the call stands for.
    pub expr: String,
}

/// Why a macro definition was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacroError {
    /// The name cannot be written as a call (not an identifier, or a keyword such as `not`).
    #[error("macro name {0:?} is not an identifier ([A-Za-z_][A-Za-z0-9_]*, not a keyword)")]
    InvalidName(String),
    /// The name is taken by a built-in function.
    #[error("macro name {0:?} conflicts with a built-in function")]
    Reserved(String),
    /// The same name was defined twice.
    #[error("macro {0:?} is defined more than once")]
    Duplicate(String),
    /// The expression does not parse (including cycles between macros).
    #[error("macro {name:?}: {source}")]
    Invalid {
        /// The macro's name.
        name: String,
        /// The parse error, positioned in the macro's expression.
        #[source]
        source: RuleError,
    },
}

/// A set of macros, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Macros {
    defs: BTreeMap<String, String>,
}

impl Macros {
    /// No macros.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from config entries and checks every expression (see
    /// [`validate`](Self::validate)).
    pub fn from_defs<I: IntoIterator<Item = MacroDef>>(defs: I) -> Result<Self, MacroError> {
        let mut macros = Macros::new();
        for def in defs {
            macros.insert(&def.name, &def.expr)?;
        }
        macros.validate()?;
        Ok(macros)
    }

    /// Adds a macro. The expression is only checked by [`validate`](Self::validate) or when a
    /// rule calls it, so macros may be added in any order.
    pub fn insert(&mut self, name: &str, expr: &str) -> Result<(), MacroError> {
        // The name must lex as one plain identifier, so `name()` is a call: this rejects
        // keywords (`not`, `in`), booleans and two-digit hex words (`ab`).
        let valid = matches!(
            tokenize(name).as_deref(),
            Ok([Token { kind: Kind::Ident, start: 0, end }, Token { kind: Kind::Eof, .. }]) if *end == name.len()
        );
        if !valid {
            return Err(MacroError::InvalidName(name.to_owned()));
        }
        if is_builtin(name) {
            return Err(MacroError::Reserved(name.to_owned()));
        }
        if self.defs.contains_key(name) {
            return Err(MacroError::Duplicate(name.to_owned()));
        }
        self.defs.insert(name.to_owned(), expr.to_owned());
        Ok(())
    }

    /// The expression of macro `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.defs.get(name).map(String::as_str)
    }

    /// Number of macros.
    pub fn len(&self) -> usize {
        self.defs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// Parses every macro (expanding the macros it calls), reporting the first that fails,
    /// including cycles such as `a()` → `b()` → `a()`.
    pub fn validate(&self) -> Result<(), MacroError> {
        for (name, expr) in &self.defs {
            parser::parse(expr, self, std::slice::from_ref(name))
                .map_err(|source| MacroError::Invalid { name: name.clone(), source })?;
        }
        Ok(())
    }
}
