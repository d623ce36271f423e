//! The qtap.yaml schema as serde types. Unknown keys are collected (and warned about) by the
//! loader, never rejected, so a qtap user's file loads unchanged.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `version: 2` in every qtap example; not interpreted.
    pub version: Option<Value>,
    /// Event and object stores.
    pub services: Services,
    /// Named plugin stacks.
    pub stacks: BTreeMap<String, Stack>,
    /// What to capture.
    pub tap: Tap,
    /// Rule macros.
    pub rulekit: Option<Value>,
    /// Extra connection tags.
    pub tags: Option<Value>,
    /// Access control rules.
    pub control: Option<Value>,
    /// tapline: what is masked before anything is stored or emitted (on by default).
    pub redaction: Option<RedactionOptions>,
}

/// `redaction:` (tapline's; qtap has none). Each list replaces the default list; omitted keys
/// keep the defaults (see `agent/src/redact/config.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionOptions {
    /// `false` turns redaction off (objects then hold secrets as sent).
    #[serde(default = "redaction_on")]
    pub enabled: bool,
    /// Extra header names to mask, besides the defaults (Authorization, Cookie, …, `*-token`, `*api-key*`).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Query parameter names to mask.
    #[serde(default)]
    pub query_params: Option<Vec<String>>,
    /// JSON body fields to mask, by path (`user.password`, `items[*].card`, `$..secret`).
    #[serde(default)]
    pub json_paths: Option<Vec<String>>,
    /// Regular expressions masked in textual bodies.
    #[serde(default)]
    pub body_patterns: Option<Vec<String>>,
    /// Key of the keyed hash (`{type: env, value: NAME}`): equal secrets get equal masks.
    #[serde(default)]
    pub hash_key: Option<ValueSource>,
}

fn redaction_on() -> bool {
    true
}

/// `services`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Services {
    /// Where events go.
    pub event_stores: Vec<EventStoreConfig>,
    /// Where objects go.
    pub object_stores: Vec<ObjectStoreConfig>,
    /// qscan classification service.
    pub qscan: Option<Value>,
}

/// Event store types qtap and tapline know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventStoreType {
    /// NDJSON on stdout.
    Stdout,
    /// Nothing.
    Disabled,
    /// Fluent Forward.
    Forward,
    /// Axiom.
    Axiom,
    /// OpenTelemetry.
    Otel,
    /// Qpoint pulse.
    Pulse,
    /// Qpoint pulse (streaming).
    PulseStreaming,
    /// Qpoint pulse (legacy).
    PulseLegacy,
}

/// One `services.event_stores[]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct EventStoreConfig {
    /// Optional id.
    #[serde(default)]
    pub id: Option<String>,
    /// The type.
    #[serde(rename = "type")]
    pub kind: EventStoreType,
    /// Type-specific keys.
    #[serde(flatten)]
    pub options: BTreeMap<String, Value>,
}

/// Object store types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectStoreType {
    /// A local directory (tapline's default).
    Local,
    /// Log lines on stdout (development).
    Stdout,
    /// S3-compatible storage.
    S3,
    /// Fluent Forward.
    Forward,
    /// OpenTelemetry.
    Otel,
    /// Qpoint warehouse.
    Qpoint,
    /// Nothing.
    Disabled,
}

/// How the local object store lays objects out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LocalLayout {
    /// Appended to `seg-*.ndjson` files with an `index.tsv` (no file creation per object).
    #[default]
    Segments,
    /// `<2 hex>/<digest>.json`, one file per object.
    Files,
}

/// A secret given inline or by environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ValueSource {
    /// `env` or `text`.
    #[serde(rename = "type")]
    pub kind: ValueSourceType,
    /// The variable name or the text.
    pub value: String,
}

/// How a [`ValueSource`] is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueSourceType {
    /// From the environment.
    Env,
    /// Inline.
    Text,
}

/// One `services.object_stores[]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectStoreConfig {
    /// Optional id.
    #[serde(default)]
    pub id: Option<String>,
    /// The type.
    #[serde(rename = "type")]
    pub kind: ObjectStoreType,
    /// `local`: the directory (default `<data-dir>/objects`).
    #[serde(default)]
    pub dir: Option<String>,
    /// `local`: `segments` (default: objects appended to shared files with an index) or
    /// `files` (one file per object).
    #[serde(default)]
    pub layout: Option<LocalLayout>,
    /// s3: endpoint host[:port].
    #[serde(default)]
    pub endpoint: Option<String>,
    /// s3: bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    /// s3: region.
    #[serde(default)]
    pub region: Option<String>,
    /// s3: URL template with {{SCHEME}} {{ENDPOINT}} {{BUCKET}} {{DIGEST}}.
    #[serde(default)]
    pub access_url: Option<String>,
    /// s3: plain http.
    #[serde(default)]
    pub insecure: Option<bool>,
    /// s3: access key.
    #[serde(default)]
    pub access_key: Option<ValueSource>,
    /// s3: secret key.
    #[serde(default)]
    pub secret_key: Option<ValueSource>,
    /// Where artifact_records of this store go.
    #[serde(default)]
    pub event_store: Option<Value>,
    /// Other type-specific keys.
    #[serde(flatten)]
    pub options: BTreeMap<String, Value>,
}

/// A named stack of plugins.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Stack {
    /// The plugins, in order.
    pub plugins: Vec<PluginConfig>,
}

/// Plugin types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginType {
    /// Stores transactions at a capture level.
    HttpCapture,
    /// Access log lines.
    AccessLogs,
    /// Prometheus per-endpoint metrics.
    HttpMetrics,
    /// `request` events.
    ReportUsage,
    /// Issues for errors.
    DetectErrors,
    /// Console access logs.
    Debug,
}

/// One plugin in a stack.
#[derive(Debug, Clone, Deserialize)]
pub struct PluginConfig {
    /// The plugin.
    #[serde(rename = "type")]
    pub kind: PluginType,
    /// Its configuration (checked per plugin type).
    #[serde(default)]
    pub config: Option<Value>,
}

/// Capture level names as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LevelName {
    /// Nothing.
    None,
    /// Metadata only.
    Summary,
    /// Legacy alias of `headers`.
    Details,
    /// With headers.
    Headers,
    /// With bodies.
    Full,
}

/// Output format of http_capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureFormat {
    /// JSON objects.
    Json,
    /// The text rendering.
    Text,
}

/// `http_capture` plugin configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HttpCaptureConfig {
    /// The level (qtap's default: none).
    pub level: Option<LevelName>,
    /// json or text.
    pub format: Option<CaptureFormat>,
    /// Per-transaction rules: the first that matches sets the level.
    pub rules: Vec<CaptureRuleConfig>,
    /// Which object store.
    pub object_store: Option<Value>,
}

/// One `http_capture` rule.
#[derive(Debug, Clone, Deserialize)]
pub struct CaptureRuleConfig {
    /// Its name.
    pub name: String,
    /// A Rulekit expression over `http.req.*`, `http.res.*`, `src.*`, `dst.*`, `tls.*`, `direction`, ...
    pub expr: String,
    /// The level when it matches (default: the plugin's).
    #[serde(default)]
    pub level: Option<LevelName>,
    /// json or text.
    #[serde(default)]
    pub format: Option<CaptureFormat>,
}

/// Traffic directions to capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TapDirection {
    /// Everything.
    #[default]
    All,
    /// Inbound only.
    Ingress,
    /// Outbound only.
    Egress,
    /// Outbound to public addresses.
    EgressExternal,
    /// Outbound to private addresses.
    EgressInternal,
}

impl TapDirection {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            TapDirection::All => "all",
            TapDirection::Ingress => "ingress",
            TapDirection::Egress => "egress",
            TapDirection::EgressExternal => "egress-external",
            TapDirection::EgressInternal => "egress-internal",
        }
    }

    /// Whether a connection with this direction is captured.
    pub fn allows(self, is_ingress: bool, is_external: bool) -> bool {
        match self {
            TapDirection::All => true,
            TapDirection::Ingress => is_ingress,
            TapDirection::Egress => !is_ingress,
            TapDirection::EgressExternal => !is_ingress && is_external,
            TapDirection::EgressInternal => !is_ingress && !is_external,
        }
    }
}

/// `tap.http` (and per endpoint).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HttpTap {
    /// The stack name; empty or `none` = no transactions.
    pub stack: Option<String>,
}

/// `tap.endpoints[]`.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointConfig {
    /// The domain.
    pub domain: String,
    /// Its HTTP stack.
    #[serde(default)]
    pub http: HttpTap,
}

/// `tap`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Tap {
    /// Which directions.
    pub direction: TapDirection,
    /// Drop loopback traffic.
    pub ignore_loopback: bool,
    /// Report DNS connections.
    pub audit_include_dns: bool,
    /// The HTTP stack.
    pub http: HttpTap,
    /// Per-domain stacks.
    pub endpoints: Vec<EndpointConfig>,
    /// Process filters.
    pub filters: Option<crate::process::filter::FiltersConfig>,
    /// Redis stack.
    pub redis: Option<Value>,
    /// MySQL stack.
    pub mysql: Option<Value>,
    /// Kafka stack.
    pub kafka: Option<Value>,
}

/// One `tags:` entry: a connection tag whose value comes from the process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagConfig {
    /// The tag key.
    pub key: String,
    /// `env` (tapline reads it), `k8s.label`, `k8s.annotation`, `container.label`.
    pub source: String,
    /// The variable or label name.
    pub location: String,
}
