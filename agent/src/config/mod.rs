//! Configuration: qtap.yaml, loaded unchanged. Type errors name the key path and what was
//! expected; unknown keys and keys tapline does not support yet are warned about, one
//! warning each, never silently ignored.

mod model;
pub mod print;
pub mod sinks;
pub mod stack;
mod unsupported;

pub use model::*;
pub use stack::{CaptureDecision, CaptureRule, StackPlan, Stacks};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How much of a transaction is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CaptureLevel {
    /// Nothing is stored.
    None,
    /// Metadata, method, URL, status, duration.
    Summary,
    /// Summary plus headers (`details` is an alias).
    Headers,
    /// Headers plus bodies.
    Full,
}

impl From<LevelName> for CaptureLevel {
    fn from(l: LevelName) -> Self {
        match l {
            LevelName::None => CaptureLevel::None,
            LevelName::Summary => CaptureLevel::Summary,
            LevelName::Details | LevelName::Headers => CaptureLevel::Headers,
            LevelName::Full => CaptureLevel::Full,
        }
    }
}

/// A configuration problem that stops the agent (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{origin}: cannot read the configuration: {source}")]
    Read {
        /// The file.
        origin: String,
        /// Why.
        source: std::io::Error,
    },
    /// A value has the wrong type or is not one of the allowed values.
    #[error("{origin}: {path}: {message}")]
    Invalid {
        /// The file.
        origin: String,
        /// Key path, e.g. `tap.direction`.
        path: String,
        /// What was expected.
        message: String,
    },
}

/// Something worth a warning that does not stop the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Key path.
    pub path: String,
    /// The message.
    pub message: String,
}

impl ConfigWarning {
    /// An unknown key (most often a typo): `check-config` treats it as a problem.
    pub fn is_unknown_key(&self) -> bool {
        self.message.starts_with("unknown key")
    }
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config: {}: {}", self.path, self.message)
    }
}

/// A parsed configuration and its warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Where it came from.
    pub origin: String,
    /// The configuration.
    pub config: Config,
    /// One warning per ignored or not-yet-supported key.
    pub warnings: Vec<ConfigWarning>,
}

/// Renders a serde_ignored path as `a.b[0].c`.
fn ignored_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => {
            let base = ignored_path(parent);
            if base.is_empty() { key.clone() } else { format!("{base}.{key}") }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn invalid(origin: &str, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { origin: origin.to_string(), path: path.into(), message: message.into() }
}

/// Deserializes `T` from YAML text, collecting unknown keys (with paths) into `unknown`.
fn parse<T: serde::de::DeserializeOwned>(
    yaml: &str,
    origin: &str,
    prefix: &str,
    unknown: &mut Vec<String>,
) -> Result<T, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(yaml);
    let mut cb = |p: serde_ignored::Path<'_>| unknown.push(join(prefix, &ignored_path(&p)));
    let ignoring = serde_ignored::Deserializer::new(de, &mut cb);
    serde_path_to_error::deserialize(ignoring).map_err(|e| {
        let inner_path = e.path().to_string();
        let path = join(prefix, &inner_path);
        let path = if path == "." || path.is_empty() { "(top level)".to_string() } else { path };
        let msg = e.into_inner().to_string();
        // serde_yaml_ng starts its message with the path too, and ends it with the line and
        // column (kept: it helps).
        let msg = msg.strip_prefix(&format!("{inner_path}: ")).map(str::to_string).unwrap_or(msg);
        invalid(origin, path, msg)
    })
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty() || path == ".") {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// Loads a configuration file.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { origin: origin.clone(), source })?;
    load_str(&text, &origin)
}

/// The embedded default configuration.
pub fn embedded_default() -> Loaded {
    // The embedded file is tested to load cleanly; a failure here is a build defect.
    load_str(include_str!("default.yaml"), "embedded default").unwrap_or_else(|e| {
        tracing::error!("embedded default configuration is invalid: {e}");
        Loaded { origin: "embedded default".into(), config: Config::default(), warnings: Vec::new() }
    })
}

/// Loads configuration text.
pub fn load_str(yaml: &str, origin: &str) -> Result<Loaded, ConfigError> {
    let mut unknown = Vec::new();
    let config: Config =
        if yaml.trim().is_empty() { Config::default() } else { parse(yaml, origin, "", &mut unknown)? };
    let mut warnings: Vec<ConfigWarning> = unknown
        .into_iter()
        .map(|path| {
            let last = path.rsplit(['.', '[']).next().unwrap_or(&path).to_string();
            let hint = unsupported::suggest(&last).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
            ConfigWarning { message: format!("unknown key, ignored{hint}"), path }
        })
        .collect();
    validate(&config, origin, &mut warnings)?;
    warnings.extend(unsupported::warnings(&config));
    Ok(Loaded { origin: origin.to_string(), config, warnings })
}

/// The `http_capture` configuration of plugin `i` of stack `name`, parsed with key paths.
fn http_capture_config(
    plugin: &PluginConfig,
    path: &str,
    origin: &str,
    unknown: &mut Vec<String>,
) -> Result<HttpCaptureConfig, ConfigError> {
    match &plugin.config {
        None => Ok(HttpCaptureConfig::default()),
        Some(v) => {
            let text = serde_yaml_ng::to_string(v).map_err(|e| invalid(origin, path, e.to_string()))?;
            parse(&text, origin, path, unknown)
        }
    }
}

fn no_duplicate_ids<'a>(
    ids: impl Iterator<Item = Option<&'a str>>,
    list: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, id) in ids.enumerate() {
        if let Some(id) = id
            && !seen.insert(id)
        {
            return Err(invalid(origin, format!("{list}[{i}].id"), format!("duplicate id `{id}`")));
        }
    }
    Ok(())
}

/// ` (did you mean `x`?)` when a known name is close to `word`.
fn did_you_mean(word: &str, known: &[&str]) -> String {
    unsupported::closest(word, known.iter().copied()).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default()
}

fn validate(config: &Config, origin: &str, warnings: &mut Vec<ConfigWarning>) -> Result<(), ConfigError> {
    let mut unknown = Vec::new();
    for (name, stack) in &config.stacks {
        for (i, p) in stack.plugins.iter().enumerate() {
            if p.kind == PluginType::HttpCapture {
                http_capture_config(p, &format!("stacks.{name}.plugins[{i}].config"), origin, &mut unknown)?;
            }
        }
    }
    for path in unknown {
        warnings.push(ConfigWarning { path, message: "unknown key, ignored".into() });
    }
    let stack_ok = |s: &Option<String>| match s.as_deref() {
        None | Some("") | Some("none") => true,
        Some(n) => config.stacks.contains_key(n),
    };
    let known: Vec<&str> = config.stacks.keys().map(String::as_str).collect();
    if !stack_ok(&config.tap.http.stack) {
        return Err(invalid(
            origin,
            "tap.http.stack",
            format!(
                "no stack named `{}` under `stacks` (defined: {}){}",
                config.tap.http.stack.as_deref().unwrap_or_default(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") },
                did_you_mean(config.tap.http.stack.as_deref().unwrap_or_default(), &known)
            ),
        ));
    }
    for (i, e) in config.tap.endpoints.iter().enumerate() {
        if e.domain.trim().is_empty() {
            return Err(invalid(origin, format!("tap.endpoints[{i}].domain"), "must be a domain name"));
        }
        if !stack_ok(&e.http.stack) {
            return Err(invalid(
                origin,
                format!("tap.endpoints[{i}].http.stack"),
                format!(
                    "no stack named `{}` under `stacks`{}",
                    e.http.stack.as_deref().unwrap_or_default(),
                    did_you_mean(e.http.stack.as_deref().unwrap_or_default(), &known)
                ),
            ));
        }
    }
    tag_sources(config, origin)?;
    no_duplicate_ids(config.services.object_stores.iter().map(|s| s.id.as_deref()), "services.object_stores", origin)?;
    no_duplicate_ids(config.services.event_stores.iter().map(|s| s.id.as_deref()), "services.event_stores", origin)?;
    for (i, s) in config.services.object_stores.iter().enumerate() {
        if s.kind == ObjectStoreType::S3 && s.bucket.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(
                origin,
                format!("services.object_stores[{i}].bucket"),
                "an s3 object store needs a bucket",
            ));
        }
    }
    Ok(())
}

/// Where objects go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectStoreKind {
    /// A local directory.
    Local {
        /// The directory.
        dir: PathBuf,
        /// Segments (default) or one file per object.
        layout: LocalLayout,
    },
    /// Log lines on stdout.
    Stdout,
    /// S3-compatible storage.
    S3(Box<tapline_output::s3::S3Config>),
    /// Fluent Forward (objects as records tagged `<prefix>.object`).
    Forward(Box<sinks::ForwardStore>),
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStoreKind {
    /// NDJSON envelope lines on stdout.
    Stdout,
    /// Fluent Forward.
    Forward(Box<sinks::ForwardStore>),
}

/// The settings the pipeline uses, resolved once from a [`Config`].
#[derive(Debug, Clone)]
pub struct Effective {
    stacks: Stacks,
    direction: TapDirection,
    ignore_loopback: bool,
    audit_include_dns: bool,
    object_store: ObjectStoreKind,
    event_stores: Vec<EventStoreKind>,
    redaction: Option<crate::redact::RedactionConfig>,
    filter: crate::process::filter::ProcessFilter,
    tags: Vec<TagSource>,
}

/// One configured connection tag (`tags:`), resolved per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSource {
    /// The tag key.
    pub key: String,
    /// The environment variable of the process that holds its value.
    pub env: String,
}

impl Effective {
    /// The plugin stacks: the default and per-endpoint ones.
    pub fn stacks(&self) -> &Stacks {
        &self.stacks
    }
    /// The `http_capture` level of the default HTTP stack.
    pub fn capture_level(&self) -> CaptureLevel {
        self.stacks.default.level
    }
    /// Which directions are captured.
    pub fn direction(&self) -> TapDirection {
        self.direction
    }
    /// Whether loopback connections are dropped.
    pub fn ignore_loopback(&self) -> bool {
        self.ignore_loopback
    }
    /// Whether DNS lookups are reported as `connection` events (`tap.audit_include_dns`).
    pub fn audit_include_dns(&self) -> bool {
        self.audit_include_dns
    }
    /// The object store.
    pub fn object_store(&self) -> &ObjectStoreKind {
        &self.object_store
    }

    /// `tap.filters` (groups and custom), compiled.
    pub fn process_filter(&self) -> &crate::process::filter::ProcessFilter {
        &self.filter
    }

    /// What is masked before anything is stored (`None`: redaction turned off).
    pub fn redaction(&self) -> Option<&crate::redact::RedactionConfig> {
        self.redaction.as_ref()
    }

    /// Where events go (each event goes to every one; none when the only store is `disabled`).
    pub fn event_stores(&self) -> &[EventStoreKind] {
        &self.event_stores
    }

    /// Configured connection tags read from each process's environment (`tags:` with `source: env`).
    pub fn tag_sources(&self) -> &[TagSource] {
        &self.tags
    }
}

/// `rulekit.macros`, compiled.
fn macros(config: &Config, origin: &str) -> Result<crate::rules::Macros, ConfigError> {
    let Some(defs) = config.rulekit.as_ref().and_then(|r| r.get("macros")) else {
        return Ok(crate::rules::Macros::new());
    };
    let defs: Vec<crate::rules::MacroDef> =
        serde_yaml_ng::from_value(defs.clone()).map_err(|e| invalid(origin, "rulekit.macros", e.to_string()))?;
    crate::rules::Macros::from_defs(defs).map_err(|e| invalid(origin, "rulekit.macros", e.to_string()))
}

/// The redaction settings: the defaults, changed by `redaction:`; checked by compiling them.
fn redaction_config(config: &Config, origin: &str) -> Result<Option<crate::redact::RedactionConfig>, ConfigError> {
    let mut r = crate::redact::RedactionConfig::default();
    if let Some(o) = &config.redaction {
        if !o.enabled {
            return Ok(None);
        }
        r.headers.names.extend(o.headers.iter().map(|h| h.to_ascii_lowercase()));
        if let Some(q) = &o.query_params {
            r.query_params = q.clone();
        }
        if let Some(j) = &o.json_paths {
            r.json_paths = j.clone();
        }
        if let Some(b) = &o.body_patterns {
            r.body_patterns = b.clone();
        }
        if let Some(k) = &o.hash_key {
            let key = sinks::resolve_secret(&sinks::Secret::Source(k.clone()), origin, "redaction.hash_key")?;
            r.hash_key = Some(key.into_bytes());
        }
    }
    crate::redact::Redactor::new(&r).map_err(|e| invalid(origin, "redaction", e.to_string()))?;
    Ok(Some(r))
}

/// Resolves the pipeline settings; `data_dir` is `--data-dir`.
pub fn resolve(config: &Config, data_dir: &Path) -> Result<Effective, ConfigError> {
    resolve_in(config, "configuration", data_dir)
}

/// [`resolve`], naming `origin` in errors (secrets are read from the environment here).
pub fn resolve_in(config: &Config, origin: &str, data_dir: &Path) -> Result<Effective, ConfigError> {
    let mut object_store = None;
    for (i, s) in config.services.object_stores.iter().enumerate() {
        let base = format!("services.object_stores[{i}]");
        let kind = match s.kind {
            ObjectStoreType::Local => ObjectStoreKind::Local {
                dir: s.dir.as_ref().map(PathBuf::from).unwrap_or_else(|| data_dir.join("objects")),
                layout: s.layout.unwrap_or_default(),
            },
            ObjectStoreType::Stdout => ObjectStoreKind::Stdout,
            ObjectStoreType::S3 => ObjectStoreKind::S3(Box::new(sinks::s3(s, origin, &base)?)),
            ObjectStoreType::Forward => ObjectStoreKind::Forward(Box::new(sinks::forward(&s.options, origin, &base)?)),
            _ => continue,
        };
        object_store.get_or_insert(kind);
    }
    let object_store = object_store
        .unwrap_or_else(|| ObjectStoreKind::Local { dir: data_dir.join("objects"), layout: LocalLayout::default() });
    let mut event_stores = Vec::new();
    for (i, s) in config.services.event_stores.iter().enumerate() {
        match s.kind {
            EventStoreType::Stdout => event_stores.push(EventStoreKind::Stdout),
            EventStoreType::Forward => event_stores.push(EventStoreKind::Forward(Box::new(sinks::forward(
                &s.options,
                origin,
                &format!("services.event_stores[{i}]"),
            )?))),
            EventStoreType::Disabled => {}
            // Warned about at load: the events go to stdout instead.
            _ => event_stores.push(EventStoreKind::Stdout),
        }
    }
    if config.services.event_stores.is_empty() {
        event_stores.push(EventStoreKind::Stdout);
    }
    event_stores.dedup();
    let redaction = redaction_config(config, origin)?;
    let macros = macros(config, origin)?;
    let filters = config.tap.filters.clone().unwrap_or_default();
    let filter = crate::process::filter::ProcessFilter::from_config(&filters)
        .map_err(|(i, e)| invalid(origin, format!("tap.filters.custom[{i}].exe"), format!("invalid regex: {e}")))?;
    let mut stacks = Stacks {
        default: std::sync::Arc::new(stack::compile(config, config.tap.http.stack.as_deref(), &macros, origin)?),
        endpoints: HashMap::new(),
    };
    for e in &config.tap.endpoints {
        let plan = stack::compile(config, e.http.stack.as_deref(), &macros, origin)?;
        stacks.endpoints.insert(e.domain.to_ascii_lowercase(), std::sync::Arc::new(plan));
    }
    Ok(Effective {
        stacks,
        direction: config.tap.direction,
        ignore_loopback: config.tap.ignore_loopback,
        audit_include_dns: config.tap.audit_include_dns,
        object_store,
        event_stores,
        redaction,
        filter,
        tags: tag_sources(config, origin)?,
    })
}

/// `tags:` entries: `{key, source: env, location: VAR}` (the other sources need container or
/// pod metadata and are warned about at load).
fn tag_sources(config: &Config, origin: &str) -> Result<Vec<TagSource>, ConfigError> {
    let Some(v) = &config.tags else { return Ok(Vec::new()) };
    let list: Vec<TagConfig> = serde_path_to_error::deserialize(v.clone()).map_err(|e| {
        let inner = e.path().to_string();
        invalid(
            origin,
            if inner == "." { "tags".to_string() } else { format!("tags{inner}") },
            e.into_inner().to_string(),
        )
    })?;
    Ok(list
        .into_iter()
        .filter(|t| t.source == "env")
        .map(|t| TagSource { key: t.key.to_ascii_lowercase(), env: t.location })
        .collect())
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
