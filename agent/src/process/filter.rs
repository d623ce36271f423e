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
        }
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
        Ok(Self { filters })
    }

    /// Whether any filter is configured.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// What to skip for a process whose executable is `exe` (every matching filter counts).
    pub fn skip(&self, exe: Option<&str>) -> Skip {
        let mut s = Skip::default();
        let Some(exe) = exe else { return s };
        for c in &self.filters {
            let hit = match c.strategy {
                Strategy::Exact => exe == c.exe,
                Strategy::Prefix => exe.starts_with(&c.exe),
                Strategy::Suffix => exe.ends_with(&c.exe),
                Strategy::Contains => exe.contains(&c.exe),
                Strategy::Regex => c.regex.as_ref().is_some_and(|r| r.is_match(exe)),
            };
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
