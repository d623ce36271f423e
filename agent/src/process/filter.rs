//! `tap.filters.custom`: processes (by executable) whose traffic is not captured, wholly or
//! for some layers only (`only: [data, dns, tls, http]`).

use serde::Deserialize;

/// How `exe` is compared with a process's executable path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The whole path.
    #[default]
    Exact,
    /// A prefix of the path.
    Prefix,
    /// A suffix of the path.
    Suffix,
    /// Anywhere in the path.
    Contains,
    /// A regular expression over the path.
    Regex,
}

/// A layer a filter may skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Payload bytes: no protocol parsing (connection events still flow).
    Data,
    /// DNS answers (names for the process's connections).
    Dns,
    /// TLS plaintext from the library probes.
    Tls,
    /// HTTP transactions.
    Http,
}

/// One `tap.filters.custom[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomFilter {
    /// The executable to match.
    pub exe: String,
    /// How to match it.
    #[serde(default)]
    pub strategy: Strategy,
    /// Skip only these layers; omitted: skip the process entirely.
    #[serde(default)]
    pub only: Option<Vec<Layer>>,
}

/// `tap.filters`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiltersConfig {
    /// qtap's predefined groups (kubernetes, container-runtimes, gke, eks, qpoint).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Custom filters.
    #[serde(default)]
    pub custom: Vec<CustomFilter>,
}

/// What a process's filter says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Skip {
    /// Nothing of the process is captured.
    pub all: bool,
    /// No protocol parsing.
    pub data: bool,
    /// Its DNS answers are ignored.
    pub dns: bool,
    /// Its TLS plaintext is ignored.
    pub tls: bool,
    /// No HTTP transactions.
    pub http: bool,
}

impl Skip {
    /// The kernel's `enum tl_skip` bits for this decision (0: capture).
    pub fn kernel_flags(&self) -> u32 {
        use tapline_ebpf::filters::{SKIP_ALL, SKIP_DATA, SKIP_DNS, SKIP_TLS};
        if self.all {
            return SKIP_ALL;
        }
        // `http` needs the payload copied only to parse it: with data or http skipped, none is.
        (if self.data || self.http { SKIP_DATA | SKIP_TLS } else { 0 })
            | (if self.dns { SKIP_DNS } else { 0 })
            | (if self.tls { SKIP_TLS } else { 0 })
    }
}

struct Compiled {
    exe: String,
    strategy: Strategy,
    regex: Option<regex::Regex>,
    only: Option<Vec<Layer>>,
}

/// The compiled custom filters.
#[derive(Default)]
pub struct ProcessFilter {
    filters: Vec<Compiled>,
    skip_self: bool,
}

impl std::fmt::Debug for ProcessFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.filters.iter().map(|c| (&c.exe, c.strategy))).finish()
    }
}

impl Clone for ProcessFilter {
    fn clone(&self) -> Self {
        Self {
            filters: self
                .filters
                .iter()
                .map(|c| Compiled {
                    exe: c.exe.clone(),
                    strategy: c.strategy,
                    regex: c.regex.clone(),
                    only: c.only.clone(),
                })
                .collect(),
            skip_self: self.skip_self,
        }
    }
}

/// Whether `exe` matches `pattern` compared by `how` (`regex` holds the compiled pattern).
pub fn exe_matches(how: Strategy, pattern: &str, regex: Option<&regex::Regex>, exe: &str) -> bool {
    match how {
        Strategy::Exact => exe == pattern,
        Strategy::Prefix => exe.starts_with(pattern),
        Strategy::Suffix => exe.ends_with(pattern),
        Strategy::Contains => exe.contains(pattern),
        Strategy::Regex => regex.is_some_and(|r| r.is_match(exe)),
    }
}

/// The group names `tap.filters.groups` knows.
pub const GROUPS: [&str; 5] = ["container-runtimes", "eks", "gke", "kubernetes", "qpoint"];

/// The executables of a predefined group (qtap's lists: platform daemons whose traffic is
/// noise). `qpoint` is the agent itself.
pub fn group_members(group: &str) -> &'static [&'static str] {
    match group {
        "container-runtimes" => &["/usr/bin/containerd", "/usr/bin/dockerd", "/usr/bin/runc"],
        "eks" => &[
            "/app/aws-k8s-agent",
            "/usr/bin/amazon-ssm-agent",
            "/usr/bin/ssm-agent-worker",
            "/usr/bin/ssm-document-worker",
        ],
        "gke" => &[
            "/home/kubernetes/bin/gcfsd",
            "/event-exporter",
            "/fluent-bit-gke-exporter",
            "/home/kubernetes/bin/node-problem-detector",
        ],
        "kubernetes" => &[
            "/home/kubernetes/bin/kubelet",
            "/home/kubernetes/bin/kube-proxy",
            "/proxy-agent",
            "/cluster-proportional-autoscaler",
            "/csi-node-driver-registrar",
        ],
        _ => &[],
    }
}

impl ProcessFilter {
    /// Compiles `custom`; a bad regex is an error naming its index.
    pub fn new(custom: &[CustomFilter]) -> Result<Self, (usize, String)> {
        let mut filters = Vec::new();
        for (i, c) in custom.iter().enumerate() {
            let regex = match c.strategy {
                Strategy::Regex => Some(regex::Regex::new(&c.exe).map_err(|e| (i, e.to_string()))?),
                _ => None,
            };
            filters.push(Compiled { exe: c.exe.clone(), strategy: c.strategy, regex, only: c.only.clone() });
        }
        Ok(Self { filters, skip_self: false })
    }

    /// Compiles `tap.filters`: the predefined `groups` (as qtap defines them) then `custom`.
    /// Unknown group names are warned about at load and ignored here.
    pub fn from_config(c: &FiltersConfig) -> Result<Self, (usize, String)> {
        let mut f = Self::new(&c.custom)?;
        for g in &c.groups {
            for exe in group_members(g) {
                f.filters.push(Compiled { exe: exe.to_string(), strategy: Strategy::Exact, regex: None, only: None });
            }
            if g == "qpoint" {
                f.skip_self = true;
            }
        }
        Ok(f)
    }

    /// Whether the agent's own process is filtered (group `qpoint`; tapline never captures
    /// itself in the kernel either way, so this only names the intent).
    pub fn skips_self(&self) -> bool {
        self.skip_self
    }

    /// The exact-path filters with their kernel flags (applied by the kernel at exec).
    pub fn exact_exes(&self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = Vec::new();
        for c in self.filters.iter().filter(|c| c.strategy == Strategy::Exact) {
            let flags = self.skip(Some(&c.exe)).kernel_flags();
            if !out.iter().any(|(e, _)| *e == c.exe) {
                out.push((c.exe.clone(), flags));
            }
        }
        out
    }

    /// Whether any filter is configured.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// What to skip for process `p`: its filters, and its own `QPOINT_STRATEGY` (`ignore`
    /// skips it entirely, `audit` keeps its connections but parses no payload).
    pub fn skip_process(&self, p: &super::ProcessInfo) -> Skip {
        let mut s = self.skip(p.exe.as_deref());
        match p.strategy {
            super::strategy::QpointStrategy::Ignore => s.all = true,
            super::strategy::QpointStrategy::Audit => s.data = true,
            _ => {}
        }
        s
    }

    /// What to skip for a process whose executable is `exe` (every matching filter counts).
    pub fn skip(&self, exe: Option<&str>) -> Skip {
        let mut s = Skip::default();
        let Some(exe) = exe else { return s };
        for c in &self.filters {
            let hit = exe_matches(c.strategy, &c.exe, c.regex.as_ref(), exe);
            if !hit {
                continue;
            }
            match &c.only {
                None => s.all = true,
                Some(layers) => {
                    for l in layers {
                        match l {
                            Layer::Data => s.data = true,
                            Layer::Dns => s.dns = true,
                            Layer::Tls => s.tls = true,
                            Layer::Http => s.http = true,
                        }
                    }
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(yaml: &str) -> ProcessFilter {
        let c: FiltersConfig = serde_yaml_ng::from_str(yaml).unwrap();
        ProcessFilter::new(&c.custom).unwrap()
    }

    #[test]
    fn strategies_and_layers() {
        let f = filters(
            "custom: [{exe: /usr/bin/curl}, {exe: /opt/, strategy: prefix, only: [http]}, \
             {exe: 'python3\\.\\d+$', strategy: regex, only: [tls, dns]}]",
        );
        assert!(f.skip(Some("/usr/bin/curl")).all);
        assert!(!f.skip(Some("/usr/bin/curl2")).all, "exact");
        let s = f.skip(Some("/opt/app/bin"));
        assert!(s.http && !s.all && !s.tls);
        let s = f.skip(Some("/usr/bin/python3.11"));
        assert!(s.tls && s.dns && !s.http);
        assert_eq!(f.skip(None), Skip::default(), "unknown exe: captured");
        let bad: FiltersConfig = serde_yaml_ng::from_str("custom: [{exe: '(', strategy: regex}]").unwrap();
        assert_eq!(ProcessFilter::new(&bad.custom).err().map(|e| e.0), Some(0));
        assert!(serde_yaml_ng::from_str::<FiltersConfig>("custom: [{exe: a, strategy: glob}]").is_err());
    }
}
