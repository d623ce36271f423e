//! A plugin stack (`stacks.<name>`), compiled once: what each of its plugins does with a
//! transaction. `tap.http.stack` and every `tap.endpoints[].http.stack` point at one.

use std::collections::HashMap;
use std::sync::Arc;

use super::{CaptureFormat, CaptureLevel, Config, ConfigError, PluginType, http_capture_config, invalid};
use crate::plugins::access_logs::{AccessLogs, AccessLogsConfig, Mode};
use crate::plugins::detect_errors::{DetectErrorsConfig, ErrorRuleConfig};
use crate::rules::{Macros, MapFields, Outcome, Rule};

/// One compiled `http_capture` rule: when it matches a transaction, its level (and format) apply.
#[derive(Debug, Clone)]
pub struct CaptureRule {
    /// Its name (for logs and errors).
    pub name: String,
    /// The expression.
    pub rule: Rule,
    /// The level it sets.
    pub level: CaptureLevel,
    /// The object format it sets (the plugin's when omitted).
    pub format: CaptureFormat,
}

/// What a stack does with each transaction.
#[derive(Debug, Clone)]
pub struct StackPlan {
    /// The stack's name (`none` for no stack).
    pub name: String,
    /// `http_capture` level when no rule matches.
    pub level: CaptureLevel,
    /// `http_capture` object format when no rule matches.
    pub format: CaptureFormat,
    /// `http_capture` rules, in order (first match wins).
    pub rules: Vec<CaptureRule>,
    /// `detect_errors` rules, in order.
    pub error_rules: Vec<ErrorRuleConfig>,
    /// The `access_logs` plugin.
    pub access_logs: Option<AccessLogs>,
    /// The `http_metrics` plugin is in the stack.
    pub http_metrics: bool,
    /// The `report_usage` plugin is in the stack (`request` events).
    pub report_usage: bool,
}

/// Why a transaction got its capture decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureDecision {
    /// Level.
    pub level: CaptureLevel,
    /// Object format.
    pub format: CaptureFormat,
}

impl StackPlan {
    /// The empty stack: nothing stored, no plugin runs (`stack: none`).
    pub fn none() -> Self {
        StackPlan {
            name: "none".into(),
            level: CaptureLevel::None,
            format: CaptureFormat::Json,
            rules: Vec::new(),
            error_rules: Vec::new(),
            access_logs: None,
            http_metrics: false,
            report_usage: false,
        }
    }

    /// Whether any plugin of the stack may need message bodies.
    pub fn keeps_bodies(&self) -> bool {
        self.level == CaptureLevel::Full
            || self.rules.iter().any(|r| r.level == CaptureLevel::Full)
            || crate::plugins::detect_errors::wants_bodies(&self.error_rules)
            || self
                .access_logs
                .as_ref()
                .is_some_and(|a| a.mode == Mode::Full || a.rules.iter().any(|(_, m)| *m == Mode::Full))
    }

    /// Whether a rule of any plugin reads the transaction's fields.
    pub fn needs_fields(&self) -> bool {
        !self.rules.is_empty() || self.access_logs.as_ref().is_some_and(|a| !a.rules.is_empty())
    }

    /// The `http_capture` decision for a transaction whose rule fields are `fields` (present
    /// when [`StackPlan::needs_fields`]): the first matching rule's, else the plugin's.
    /// `missing` is called for each rule skipped because a field it reads is absent.
    pub fn decide(&self, fields: Option<&MapFields>, mut missing: impl FnMut()) -> CaptureDecision {
        if let Some(fields) = fields {
            for r in &self.rules {
                match r.rule.eval(fields) {
                    Outcome::Match => return CaptureDecision { level: r.level, format: r.format },
                    Outcome::MissingField(_) => missing(),
                    Outcome::NoMatch => {}
                }
            }
        }
        CaptureDecision { level: self.level, format: self.format }
    }
}

/// The stacks a configuration uses: the default and one per `tap.endpoints` domain.
#[derive(Debug, Clone)]
pub struct Stacks {
    /// `tap.http.stack`.
    pub default: Arc<StackPlan>,
    /// `tap.endpoints[].http.stack`, by lowercase domain.
    pub endpoints: HashMap<String, Arc<StackPlan>>,
}

impl Default for Stacks {
    fn default() -> Self {
        Stacks { default: Arc::new(StackPlan::none()), endpoints: HashMap::new() }
    }
}

impl Stacks {
    /// The stack of a transaction to `host` (its HTTP host), else to `endpoint` (its SNI,
    /// DNS name or IP): the endpoint's own stack when one is configured, else the default.
    pub fn for_host(&self, host: Option<&str>, endpoint: &str) -> &StackPlan {
        if self.endpoints.is_empty() {
            return &self.default; // the common case: no lowercased copies per transaction
        }
        host.and_then(|h| self.endpoints.get(&h.to_ascii_lowercase()))
            .or_else(|| self.endpoints.get(&endpoint.to_ascii_lowercase()))
            .unwrap_or(&self.default)
    }

    /// Every stack in use.
    pub fn all(&self) -> impl Iterator<Item = &StackPlan> {
        std::iter::once(&*self.default).chain(self.endpoints.values().map(|s| &**s))
    }
}

fn plugin_config<T: serde::de::DeserializeOwned + Default>(
    v: Option<&serde_yaml_ng::Value>,
    path: &str,
    origin: &str,
) -> Result<T, ConfigError> {
    let Some(v) = v else { return Ok(T::default()) };
    serde_path_to_error::deserialize(v.clone()).map_err(|e| {
        let inner = e.path().to_string();
        invalid(
            origin,
            if inner == "." { path.to_string() } else { format!("{path}.{inner}") },
            e.into_inner().to_string(),
        )
    })
}

fn compile_rule(expr: &str, name: &str, path: &str, macros: &Macros, origin: &str) -> Result<Rule, ConfigError> {
    Rule::parse_with_macros(expr, macros).map_err(|e| invalid(origin, path, format!("rule \"{name}\": {e}")))
}

/// Compiles stack `name` (`None`, empty or `none`: the empty stack); errors name key paths.
pub fn compile(config: &Config, name: Option<&str>, macros: &Macros, origin: &str) -> Result<StackPlan, ConfigError> {
    let Some(name) = name.filter(|s| !s.is_empty() && *s != "none") else { return Ok(StackPlan::none()) };
    let Some(stack) = config.stacks.get(name) else { return Ok(StackPlan::none()) };
    let mut plan = StackPlan { name: name.to_string(), ..StackPlan::none() };
    for (i, p) in stack.plugins.iter().enumerate() {
        let path = format!("stacks.{name}.plugins[{i}].config");
        match p.kind {
            PluginType::HttpCapture => {
                let cfg = http_capture_config(p, &path, origin, &mut Vec::new())?;
                let level = cfg.level.map(CaptureLevel::from).unwrap_or(CaptureLevel::None);
                let format = cfg.format.unwrap_or(CaptureFormat::Json);
                // Several http_capture plugins: the most generous one sets the default.
                if level >= plan.level {
                    plan.level = level;
                    plan.format = format;
                }
                for (j, r) in cfg.rules.iter().enumerate() {
                    let rule = compile_rule(&r.expr, &r.name, &format!("{path}.rules[{j}].expr"), macros, origin)?;
                    plan.rules.push(CaptureRule {
                        name: r.name.clone(),
                        rule,
                        level: r.level.map(CaptureLevel::from).unwrap_or(level),
                        format: r.format.unwrap_or(format),
                    });
                }
            }
            PluginType::AccessLogs if plan.access_logs.is_none() => {
                let c: AccessLogsConfig = plugin_config(p.config.as_ref(), &path, origin)?;
                let mut rules = Vec::new();
                for (j, r) in c.rules.iter().enumerate() {
                    rules.push((
                        compile_rule(&r.expr, &r.name, &format!("{path}.rules[{j}].expr"), macros, origin)?,
                        r.mode,
                    ));
                }
                plan.access_logs = Some(AccessLogs { mode: c.mode, format: c.format, rules });
            }
            PluginType::DetectErrors => {
                let c: DetectErrorsConfig = plugin_config(p.config.as_ref(), &path, origin)?;
                plan.error_rules.extend(c.rules);
            }
            PluginType::HttpMetrics => plan.http_metrics = true,
            PluginType::ReportUsage => plan.report_usage = true,
            // `debug` and a second access_logs are warned about at load.
            _ => {}
        }
    }
    Ok(plan)
}
