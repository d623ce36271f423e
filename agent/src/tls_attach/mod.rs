//! Finds the TLS libraries processes use and attaches the OpenSSL probes to them, once per
//! file (uprobes are per inode, so one attach covers every process mapping that file).
//!
//! - At start: the host's library directories, then every running process's mapped
//!   `libssl` and its executable (statically linked OpenSSL).
//! - On exec: the new executable; the library paths already known, seen through
//!   `/proc/<pid>/root` (a container's own file, a bind mount, or a library upgraded in place
//!   has another inode); and, for a mount namespace not seen before (a new container), its
//!   library directories.
//! - Periodically: the maps of processes not scanned yet (libraries at unusual paths).
//!
//! Results are cached per (device, inode), so a shell loop of thousands of `curl`s costs
//! one `stat` and one `readlink` per exec.

pub mod symbols;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tapline_ebpf::{AttachError, Probes};
use tapline_output::metrics::{ComponentMetrics, Metrics};
use tracing::{debug, info, warn};

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct FamilyLabel {
    family: String,
}

/// `tapline_tls_probes_available{family}`: 1 while a TLS probe family can attach, 0 when it
/// is disabled (`--tls-probes`) or could not load (the reason is in the log, once).
#[derive(Clone)]
pub struct ProbeAvailability(Family<FamilyLabel, Gauge>);

impl ProbeAvailability {
    /// Registers the gauge, with every family at 0.
    pub fn new(metrics: &Metrics) -> Self {
        let family = Family::<FamilyLabel, Gauge>::default();
        metrics.register(
            "tapline_tls_probes_available",
            "Whether a TLS probe family is enabled and its kernel programs loaded (1) or not (0)",
            family.clone(),
        );
        let me = Self(family);
        for f in ["openssl", "gotls"] {
            me.set(f, false);
        }
        me
    }

    /// Records whether `family` is available.
    pub fn set(&self, family: &str, up: bool) {
        self.0.get_or_create(&FamilyLabel { family: family.to_string() }).set(i64::from(up));
    }
}

/// Library directories searched, relative to a root.
const LIB_DIRS: &[&str] = &[
    "usr/lib/x86_64-linux-gnu",
    "lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib64",
    "lib64",
    "usr/lib",
    "lib",
    "usr/local/lib",
    "usr/local/ssl/lib",
];

fn is_libssl(name: &str) -> bool {
    name.starts_with("libssl.so")
}

/// Attach bookkeeping for the OpenSSL family.
pub struct OpensslAttacher {
    /// (dev, ino) → whether the probes are attached to that file.
    files: HashMap<(u64, u64), bool>,
    /// Mount namespaces whose library directories were scanned.
    namespaces: HashSet<u64>,
    /// Pids whose maps were scanned.
    scanned: HashSet<u32>,
    /// libssl paths seen so far (relative to a root), checked again on every exec.
    lib_paths: std::collections::BTreeSet<String>,
    metrics: ComponentMetrics,
    available: ProbeAvailability,
    unavailable_logged: bool,
}

fn mnt_ns(pid: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/mnt")).ok().map(|m| m.ino())
}

impl OpensslAttacher {
    /// A new attacher reporting in `metrics` (component `tls_probe`/`openssl`: received = files
    /// with OpenSSL found, sent = files hooked, errors by stage) and in `available`.
    pub fn new(metrics: &Metrics, available: ProbeAvailability, loaded: bool) -> Self {
        available.set("openssl", loaded);
        Self {
            files: HashMap::new(),
            namespaces: HashSet::new(),
            scanned: HashSet::new(),
            lib_paths: Default::default(),
            metrics: metrics.component("tls_probe", "openssl"),
            available,
            unavailable_logged: false,
        }
    }

    /// Files with the probes attached.
    pub fn attached_files(&self) -> usize {
        self.files.values().filter(|a| **a).count()
    }

    /// Attaches to `path` unless its inode was already examined. Returns whether it is hooked now.
    /// A file that cannot be read (the process exited) is not remembered: the next process
    /// mapping it tries again. A file without OpenSSL is remembered as such.
    pub fn try_attach(&mut self, probes: &mut Probes, path: &Path, quiet_if_missing: bool) -> bool {
        let Ok(meta) = std::fs::metadata(path) else { return false };
        let key = (meta.dev(), meta.ino());
        if let Some(done) = self.files.get(&key) {
            return *done;
        }
        let Ok(data) = std::fs::read(path) else { return false };
        let names: Vec<&str> = Probes::OPENSSL_FUNCTIONS.iter().map(|(n, _)| *n).collect();
        let found = symbols::function_offsets(&data, &names);
        drop(data);
        let complete = Probes::OPENSSL_FUNCTIONS.iter().filter(|(_, required)| *required).all(|(n, _)| {
            found.iter().any(|(f, _)| f == n)
        });
        if !complete {
            if !quiet_if_missing {
                debug!(path = %path.display(), "no OpenSSL functions in this file");
            }
            self.files.insert(key, false);
            return false;
        }
        self.metrics.received(1);
        let ok = match probes.attach_openssl(path, &found) {
            Ok(n) => {
                info!(path = %path.display(), functions = n, "OpenSSL probes attached");
                self.metrics.sent(1);
                true
            }
            Err(AttachError::Unavailable { reason, .. }) => {
                if !std::mem::replace(&mut self.unavailable_logged, true) {
                    warn!(family = "openssl", %reason, "TLS probes unavailable: TLS traffic is seen as ciphertext only");
                    self.metrics.error("load");
                    self.available.set("openssl", false);
                }
                // Not cached: nothing can attach anyway, and nothing is gained by remembering.
                return false;
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot attach the OpenSSL probes");
                self.metrics.error("attach");
                // Not remembered: a vanished file (process gone) should be tried again later.
                return false;
            }
        };
        self.files.insert(key, ok);
        ok
    }

    /// Every `libssl.so*` in the library directories under `root`.
    fn scan_root(&mut self, probes: &mut Probes, root: &Path) {
        for dir in LIB_DIRS {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
            for e in entries.flatten() {
                if let Some(name) = e.file_name().to_str()
                    && is_libssl(name)
                {
                    self.lib_paths.insert(format!("{dir}/{name}"));
                    self.try_attach(probes, &e.path(), false);
                }
            }
        }
    }

    /// The libssl files a process has mapped, and its executable (static OpenSSL).
    fn scan_process(&mut self, probes: &mut Probes, pid: &str) {
        if let Ok(n) = pid.parse::<u32>() {
            self.scanned.insert(n);
        }
        let proc_dir = PathBuf::from("/proc").join(pid);
        self.try_attach(probes, &proc_dir.join("exe"), true);
        let Ok(maps) = std::fs::read_to_string(proc_dir.join("maps")) else { return };
        let mut seen = HashSet::new();
        for line in maps.lines() {
            let Some(path) = line.split_whitespace().nth(5) else { continue };
            let name = path.rsplit('/').next().unwrap_or(path);
            if is_libssl(name) && seen.insert(path.to_string()) {
                // The path is in the process's mount namespace: reach it through its root.
                let rel = path.trim_start_matches('/');
                self.lib_paths.insert(rel.to_string());
                self.try_attach(probes, &proc_dir.join("root").join(rel), false);
            }
        }
    }

    /// Start-up: the host's libraries, then every running process.
    pub fn startup(&mut self, probes: &mut Probes) {
        if let Some(ns) = mnt_ns("self") {
            self.namespaces.insert(ns);
        }
        self.scan_root(probes, Path::new("/"));
        self.rescan(probes);
        info!(files = self.attached_files(), "OpenSSL discovery done");
    }

    /// A process called exec.
    pub fn on_exec(&mut self, probes: &mut Probes, pid: u32) {
        let proc_dir = Path::new("/proc").join(pid.to_string());
        self.try_attach(probes, &proc_dir.join("exe"), true);
        let root = proc_dir.join("root");
        if let Some(ns) = mnt_ns(&pid.to_string())
            && self.namespaces.insert(ns)
        {
            // A mount namespace we have not seen: a container with its own libraries.
            self.scan_root(probes, &root);
            return;
        }
        // Known paths, as this process sees them: one stat each, attach only for a new inode.
        let paths: Vec<String> = self.lib_paths.iter().cloned().collect();
        for rel in paths {
            self.try_attach(probes, &root.join(rel), true);
        }
    }

    /// Scans the maps of processes not scanned yet (and forgets processes that are gone).
    pub fn rescan(&mut self, probes: &mut Probes) {
        let Ok(entries) = std::fs::read_dir("/proc") else { return };
        let mut alive = HashSet::with_capacity(self.scanned.len());
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str() else { continue };
            let Ok(n) = pid.parse::<u32>() else { continue };
            alive.insert(n);
            if n == std::process::id() || self.scanned.contains(&n) {
                continue;
            }
            self.scan_process(probes, pid);
        }
        self.scanned.retain(|p| alive.contains(p));
    }

    /// Memory held: cached files, namespaces and scanned pids (bounded by live processes).
    pub fn cache_sizes(&self) -> (usize, usize, usize, usize) {
        (self.files.len(), self.namespaces.len(), self.scanned.len(), self.lib_paths.len())
    }
}

#[cfg(test)]
mod tests {
    use super::is_libssl;

    #[test]
    fn library_names() {
        assert!(is_libssl("libssl.so.3"));
        assert!(is_libssl("libssl.so.1.1"));
        assert!(is_libssl("libssl.so"));
        assert!(!is_libssl("libcrypto.so.3"));
        assert!(!is_libssl("libssl3.so"));
    }
}
