//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// tapline: see the HTTP traffic of every process on this host, in the Qpoint data model.
#[derive(Debug, Parser)]
#[command(
    name = "tapline",
    version = env!("TAPLINE_VERSION"),
    about,
    after_help = "Examples:\n  sudo tapline                               # embedded default: events on stdout, objects in ./tapline-data\n  sudo tapline --config qtap.yaml | jq .item  # a qtap.yaml works unchanged\n  tapline check-config --print qtap.yaml     # check a file, show what it means with defaults\n  tapline fetch --config qtap.yaml <digest>   # print a stored HttpTransaction object\n  sudo tapline --tags env:prod,team:core     # tag every connection"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every subcommand understands.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// qtap.yaml-compatible configuration file (default: the embedded default).
    #[arg(long, short = 'c', env = "QPOINT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Directory for the local object store and other state.
    #[arg(long, env = "DATA_DIR", default_value = "./tapline-data", global = true)]
    pub data_dir: PathBuf,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,
    /// Log format on stderr (stdout carries events only).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "auto", global = true)]
    pub log_format: LogFormat,
}

/// How the agent's own logs are written (always to stderr).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of the capture agent itself.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Address of the HTTP endpoint serving /readyz, /healthz and /metrics.
    #[arg(long, env = "HTTPD_LISTEN", default_value = "127.0.0.1:10001")]
    pub http_listen: SocketAddr,
    /// Largest body kept per request or response (b, kb, mb, gb; at most 2gb).
    #[arg(long, env = "HTTP_BUFFER_SIZE", default_value = "2mb", value_parser = parse_size)]
    pub http_buffer_size: u64,
    /// Kernel ring-buffer size (a power of two; b, kb, mb).
    #[arg(long, env = "RING_BUFFER_SIZE", default_value = "16mb", value_parser = parse_size)]
    pub ring_buffer_size: u64,
    /// Disk spool for remote stores (Forward, S3) while their receiver is down (b, kb, mb, gb).
    #[arg(long, env = "SPOOL_SIZE", default_value = "1gb", value_parser = parse_size)]
    pub spool_size: u64,
    /// Seconds between periodic `connection` reports of a long-lived connection.
    #[arg(long, default_value_t = 30)]
    pub report_interval_secs: u64,
    /// TLS library probes to attach (comma-separated: openssl, gotls; `none` disables them).
    #[arg(long, env = "TLS_PROBES", default_value = "openssl,gotls", value_parser = parse_tls_probes)]
    pub tls_probes: TlsProbes,
    /// Seconds between status lines on stderr (default: 10 on a terminal, 60 otherwise).
    #[arg(long, env = "STATUS_INTERVAL")]
    pub status_interval_secs: Option<u64>,
    /// Docker Engine API socket: container names, images and pods (absent socket: ids only).
    #[arg(long, alias = "docker-socket-endpoint", env = "DOCKER_SOCKET", default_value = "/var/run/docker.sock")]
    pub docker_socket: PathBuf,
    /// containerd socket: container image and Kubernetes pod for ids the Docker API does not know.
    #[arg(
        long,
        alias = "containerd-socket-endpoint",
        env = "CONTAINERD_SOCKET",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub containerd_socket: PathBuf,
    /// containerd namespace to look containers up in (`k8s.io` is the kubelet's).
    #[arg(long, env = "CONTAINERD_NAMESPACE", default_value = "k8s.io")]
    pub containerd_namespace: String,
    /// Kubernetes CRI runtime socket (CRI-O; or containerd's, whose CRI plugin answers too):
    /// container name, image and pod for ids the Docker API and containerd do not know.
    #[arg(long, alias = "cri-socket-endpoint", env = "CRI_SOCKET", default_value = "/var/run/crio/crio.sock")]
    pub cri_socket: PathBuf,
    /// Tags added to every connection, `key:value,key:value` (qtap's `--tags`).
    #[arg(long, env = "QPOINT_DEPLOYMENT_TAGS", default_value = "", value_parser = parse_tags)]
    pub tags: DeploymentTags,
}

/// `--tags`: `key:value` pairs added to every connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentTags(pub Vec<(String, String)>);

/// Parses `--tags` (`k:v,k:v`; keys lowercased); an entry without `:` is an error.
pub fn parse_tags(s: &str) -> Result<DeploymentTags, String> {
    let mut out = Vec::new();
    for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        match t.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            }
            _ => return Err(format!("`{t}` is not key:value")),
        }
    }
    Ok(DeploymentTags(out))
}

/// Which TLS probe families are enabled (`--tls-probes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsProbes {
    /// OpenSSL (libssl, or statically linked).
    pub openssl: bool,
    /// Go crypto/tls.
    pub gotls: bool,
    /// Families qtap knows that tapline does not implement (logged, then ignored).
    pub unsupported: Vec<String>,
}

/// Parses `--tls-probes`: `openssl,gotls`, `none`, qtap's `nodetls`/`javassl` (accepted, warned about).
pub fn parse_tls_probes(s: &str) -> Result<TlsProbes, String> {
    let mut p = TlsProbes::default();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name.to_ascii_lowercase().as_str() {
            "openssl" => p.openssl = true,
            "gotls" => p.gotls = true,
            "none" => {}
            "nodetls" | "javassl" | "rustls" => p.unsupported.push(name.to_string()),
            other => return Err(format!("unknown TLS probe `{other}` (use openssl, gotls or none)")),
        }
    }
    Ok(p)
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a configuration file as the agent would load it: exit 0, or 2 with each problem
    /// (errors and unknown keys) and its key path on stderr.
    CheckConfig {
        /// The qtap.yaml-compatible file.
        file: PathBuf,
        /// Also print the effective configuration (defaults filled in) as YAML on stdout.
        #[arg(long)]
        print: bool,
    },
    /// Write a stored object's exact bytes to stdout (its SHA-1 equals the digest).
    Fetch {
        /// The object's digest (the `digest` of its artifact_record), or `-` to read an
        /// artifact_record line (or a digest) from stdin.
        digest: String,
    },
}

/// Parses sizes like `2mb`, `512kb`, `1gb`, `100` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size (e.g. 2mb, 512kb, 1gb)"))?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!("unknown size unit `{other}` in `{s}` (use b, kb, mb or gb)"));
        }
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_probe_lists() {
        let p = parse_tls_probes("openssl,gotls").unwrap();
        assert!(p.openssl && p.gotls && p.unsupported.is_empty());
        assert_eq!(parse_tls_probes("none").unwrap(), TlsProbes::default());
        let q = parse_tls_probes("nodetls, OpenSSL,javassl").unwrap();
        assert!(q.openssl && !q.gotls);
        assert_eq!(q.unsupported, vec!["nodetls".to_string(), "javassl".to_string()]);
        assert!(parse_tls_probes("boringssl").unwrap_err().contains("unknown TLS probe `boringssl`"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2mb"), Ok(2 << 20));
        assert_eq!(parse_size("512KB"), Ok(512 << 10));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("2xb").is_err());
        assert!(parse_size("mb").is_err());
    }

    #[test]
    fn cli_parses() {
        let c = Cli::try_parse_from(["tapline", "--config", "q.yaml", "fetch", "abc"]).expect("parse");
        assert!(matches!(c.command, Some(Command::Fetch { ref digest }) if digest == "abc"));
        assert_eq!(c.common.config.as_deref(), Some(std::path::Path::new("q.yaml")));
        Cli::command_debug_assert();
    }

    impl Cli {
        fn command_debug_assert() {
            use clap::CommandFactory;
            Cli::command().debug_assert();
        }
    }
}
