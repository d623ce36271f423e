//! Finds the TLS code processes run and attaches the TLS probes to it, once per file
//! (uprobes are per inode, so one attach covers every process mapping that file):
//! OpenSSL in `libssl` or linked statically into an executable, and Go's crypto/tls in Go
//! executables (stripped or not).
//!
//! - At start: the host's library directories, then every running process's mapped
//!   `libssl` and its executable.
//! - On exec: the new executable; the library paths already known, seen through
//!   `/proc/<pid>/root` (a container's own file, a bind mount, or a library upgraded in place
//!   has another inode); and, for a mount namespace not seen before (a new container), its
//!   library directories.
//! - Periodically: the maps of processes not scanned yet (libraries at unusual paths).
//!
//! Results are cached per (device, inode), so a shell loop of thousands of `curl`s costs
//! a few `stat`s per exec; a file is read and parsed once.

pub mod symbols;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tapline_ebpf::{AttachError, GoFunctionSites, Probes};
use tapline_output::metrics::{ComponentMetrics, Metrics};
use tracing::{debug, info, warn};

use crate::gotls::binary::{self, GoTlsTargets, GoVersion};

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

/// Go versions whose struct offsets the Go probes assume (register ABI since go1.17;
/// `tls.Conn.conn`, `net.conn.fd` and `poll.FD.Sysfd` unchanged through go1.25).
pub fn go_version_supported(v: GoVersion) -> bool {
    v.major == 1 && (17..=25).contains(&v.minor)
}

/// Something to report once as an `issue` event: a binary the probes cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachIssue {
    /// Short machine name, e.g. `gotls_unsupported_go_version`.
    pub error: &'static str,
    /// The file concerned.
    pub path: String,
    /// One sentence for humans.
    pub reason: String,
}

/// One probe family's on/off switch, load state and counters.
struct FamilyState {
    name: &'static str,
    enabled: bool,
    /// Component metrics: received = files holding this family's code, sent = files hooked.
    metrics: ComponentMetrics,
    unavailable_logged: bool,
}

impl FamilyState {
    fn new(name: &'static str, enabled: bool, loaded: bool, metrics: &Metrics, available: &ProbeAvailability) -> Self {
        available.set(name, enabled && loaded);
        Self { name, enabled, metrics: metrics.component("tls_probe", name), unavailable_logged: false }
    }

    /// Logs (once) and counts an attach failure. Returns whether the file should be remembered.
    fn failed(&mut self, available: &ProbeAvailability, path: &Path, e: &AttachError) {
        match e {
            AttachError::Unavailable { reason, .. } => {
                if !std::mem::replace(&mut self.unavailable_logged, true) {
                    warn!(family = self.name, %reason, "TLS probes unavailable: this TLS traffic is seen as ciphertext only");
                    self.metrics.error("load");
                    available.set(self.name, false);
                }
            }
            AttachError::Attach { .. } => {
                warn!(family = self.name, path = %path.display(), error = %e, "cannot attach the TLS probes");
                self.metrics.error("attach");
            }
        }
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

/// Attach bookkeeping for the TLS probe families.
pub struct TlsAttacher {
    /// (dev, ino) → whether probes are attached to that file.
    files: HashMap<(u64, u64), bool>,
    /// Mount namespaces whose library directories were scanned.
    namespaces: HashSet<u64>,
    /// Pids whose maps were scanned.
    scanned: HashSet<u32>,
    /// libssl paths seen so far (relative to a root), checked again on every exec.
    lib_paths: BTreeSet<String>,
    openssl: FamilyState,
    gotls: FamilyState,
    available: ProbeAvailability,
    issues: Vec<AttachIssue>,
}

fn mnt_ns(pid: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/mnt")).ok().map(|m| m.ino())
}

/// What a file is, for probing.
enum Kind {
    /// A shared library found as `libssl*`: OpenSSL only.
    Library,
    /// An executable: OpenSSL linked statically, or Go.
    Executable,
}

fn sites(t: &binary::ProbeSites) -> GoFunctionSites {
    GoFunctionSites { entry: t.entry, returns: t.returns.clone() }
}

impl TlsAttacher {
    /// A new attacher for the enabled families, given which families' programs loaded.
    /// Reports in `metrics` (component `tls_probe`/<family>: received = files holding that
    /// family's code, sent = files hooked, errors by stage) and in `available`.
    pub fn new(metrics: &Metrics, available: ProbeAvailability, openssl: (bool, bool), gotls: (bool, bool)) -> Self {
        Self {
            files: HashMap::new(),
            namespaces: HashSet::new(),
            scanned: HashSet::new(),
            lib_paths: BTreeSet::new(),
            openssl: FamilyState::new("openssl", openssl.0, openssl.1, metrics, &available),
            gotls: FamilyState::new("gotls", gotls.0, gotls.1, metrics, &available),
            available,
            issues: Vec::new(),
        }
    }

    /// Files with probes attached.
    pub fn attached_files(&self) -> usize {
        self.files.values().filter(|a| **a).count()
    }

    /// Issues found since the last call (each reported once).
    pub fn take_issues(&mut self) -> Vec<AttachIssue> {
        std::mem::take(&mut self.issues)
    }

    /// Examines `path` unless its inode was already examined, and attaches what fits.
    /// Returns whether probes are attached to it now. A file that cannot be read (its
    /// process exited) is not remembered, so the next process mapping it tries again.
    fn examine(&mut self, probes: &mut Probes, path: &Path, kind: Kind, exec_at: Option<SystemTime>) -> bool {
        let Ok(meta) = std::fs::metadata(path) else { return false };
        let key = (meta.dev(), meta.ino());
        if let Some(done) = self.files.get(&key) {
            return *done;
        }
        // Headers and symbol tables only, read on demand: executables can be hundreds of MiB.
        let Ok(file) = std::fs::File::open(path) else { return false };
        let elf = object::read::ReadCache::new(file);
        let mut hooked = false;
        let mut retry = false;
        if self.openssl.enabled {
            match self.attach_openssl(probes, path, &elf) {
                Some(Ok(())) => hooked = true,
                Some(Err(())) => retry = true,
                None => {}
            }
        }
        if self.gotls.enabled && matches!(kind, Kind::Executable) && !hooked && binary::may_be_go(&elf) {
            // A Go executable is read whole: its function table and code are parsed.
            let Ok(data) = std::fs::read(path) else { return false };
            match binary::inspect(&data) {
                Ok(Some(t)) => match self.attach_go(probes, path, &t) {
                    Ok(attached) => hooked = attached,
                    Err(()) => retry = true,
                },
                Ok(None) | Err(binary::GoBinaryError::NotElf) => {}
                Err(e) => {
                    debug!(path = %path.display(), error = %e, "not a Go binary tapline can read");
                    self.gotls.metrics.error("inspect");
                }
            }
        }
        if hooked && let Some(at) = exec_at {
            let ms = SystemTime::now().duration_since(at).map(|d| d.as_millis()).unwrap_or(0);
            let file = std::fs::read_link(path).unwrap_or_else(|_| path.to_path_buf());
            info!(path = %path.display(), file = %file.display(), ms_after_exec = ms as u64, "TLS probes attached for a new process");
        }
        if !retry {
            self.files.insert(key, hooked);
        }
        hooked
    }

    /// `None`: no OpenSSL in the file. `Some(Err)`: it has OpenSSL but attaching failed.
    fn attach_openssl<'data>(
        &mut self,
        probes: &mut Probes,
        path: &Path,
        data: impl object::ReadRef<'data>,
    ) -> Option<Result<(), ()>> {
        let names: Vec<&str> = Probes::OPENSSL_FUNCTIONS.iter().map(|(n, _)| *n).collect();
        let found = symbols::function_offsets(data, &names);
        let complete = Probes::OPENSSL_FUNCTIONS
            .iter()
            .filter(|(_, required)| *required)
            .all(|(n, _)| found.iter().any(|(f, _)| f == n));
        if !complete {
            return None;
        }
        self.openssl.metrics.received(1);
        match probes.attach_openssl(path, &found) {
            Ok(n) => {
                info!(family = "openssl", path = %path.display(), functions = n, "OpenSSL probes attached");
                self.openssl.metrics.sent(1);
                Some(Ok(()))
            }
            Err(e) => {
                self.openssl.failed(&self.available, path, &e);
                Some(Err(()))
            }
        }
    }

    /// `Ok(false)`: a Go version tapline cannot probe (reported as an issue, remembered).
    fn attach_go(&mut self, probes: &mut Probes, path: &Path, t: &GoTlsTargets) -> Result<bool, ()> {
        self.gotls.metrics.received(1);
        if !go_version_supported(t.version) {
            let file = std::fs::read_link(path).unwrap_or_else(|_| path.to_path_buf());
            warn!(family = "gotls", path = %file.display(), version = %t.version, "Go version with unknown struct offsets: not probed");
            self.gotls.metrics.discarded("unsupported_go_version", 1);
            let reason = format!(
                "{} is built with {}, whose crypto/tls struct offsets tapline does not know; \
                 its TLS traffic is seen as ciphertext only",
                file.display(),
                t.version
            );
            self.issues.push(AttachIssue {
                error: "gotls_unsupported_go_version",
                path: file.display().to_string(),
                reason,
            });
            return Ok(false);
        }
        match probes.attach_gotls(path, &sites(&t.write), &sites(&t.read)) {
            Ok(n) => {
                info!(family = "gotls", path = %path.display(), version = %t.version, symbols = ?t.symbols_from, probes = n, "Go crypto/tls probes attached");
                self.gotls.metrics.sent(1);
                Ok(true)
            }
            Err(e) => {
                self.gotls.failed(&self.available, path, &e);
                Err(())
            }
        }
    }

    /// Every `libssl.so*` in the library directories under `root`.
    fn scan_root(&mut self, probes: &mut Probes, root: &Path) {
        if !self.openssl.enabled {
            return;
        }
        for dir in LIB_DIRS {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
            for e in entries.flatten() {
                if let Some(name) = e.file_name().to_str()
                    && is_libssl(name)
                {
                    self.lib_paths.insert(format!("{dir}/{name}"));
                    self.examine(probes, &e.path(), Kind::Library, None);
                }
            }
        }
    }

    /// The libssl files a process has mapped, and its executable.
    fn scan_process(&mut self, probes: &mut Probes, pid: &str) {
        if let Ok(n) = pid.parse::<u32>() {
            self.scanned.insert(n);
        }
        let proc_dir = PathBuf::from("/proc").join(pid);
        self.examine(probes, &proc_dir.join("exe"), Kind::Executable, None);
        if !self.openssl.enabled {
            return;
        }
        let Ok(maps) = std::fs::read_to_string(proc_dir.join("maps")) else { return };
        let mut seen = HashSet::new();
        for line in maps.lines() {
            let Some(path) = line.split_whitespace().nth(5) else { continue };
            let name = path.rsplit('/').next().unwrap_or(path);
            if is_libssl(name) && seen.insert(path.to_string()) {
                // The path is in the process's mount namespace: reach it through its root.
                let rel = path.trim_start_matches('/');
                self.lib_paths.insert(rel.to_string());
                self.examine(probes, &proc_dir.join("root").join(rel), Kind::Library, None);
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
        info!(files = self.attached_files(), "TLS probe discovery done");
    }

    /// A process called exec at `at`.
    pub fn on_exec(&mut self, probes: &mut Probes, pid: u32, at: SystemTime) {
        let proc_dir = Path::new("/proc").join(pid.to_string());
        self.examine(probes, &proc_dir.join("exe"), Kind::Executable, Some(at));
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
            self.examine(probes, &root.join(rel), Kind::Library, Some(at));
        }
    }

    /// Scans the maps of processes not scanned yet (and forgets processes that are gone).
    pub fn rescan(&mut self, probes: &mut Probes) {
        let pids = crate::process::live_pids(Path::new("/proc"));
        if pids.is_empty() {
            return; // /proc unreadable: keep what was scanned
        }
        let mut alive = HashSet::with_capacity(self.scanned.len());
        for n in pids {
            alive.insert(n);
            if n == std::process::id() || self.scanned.contains(&n) {
                continue;
            }
            self.scan_process(probes, &n.to_string());
        }
        self.scanned.retain(|p| alive.contains(p));
    }

    /// Memory held: cached files, namespaces, scanned pids and known library paths (the
    /// pids are bounded by live processes, the rest by distinct files).
    pub fn cache_sizes(&self) -> (usize, usize, usize, usize) {
        (self.files.len(), self.namespaces.len(), self.scanned.len(), self.lib_paths.len())
    }
}

#[cfg(test)]
mod tests {
    use super::{GoVersion, go_version_supported, is_libssl};

    #[test]
    fn family_that_cannot_load_is_logged_once_and_reported_down() {
        use super::{FamilyState, ProbeAvailability};
        use tapline_ebpf::AttachError;
        let metrics = tapline_output::metrics::Metrics::new();
        let available = ProbeAvailability::new(&metrics);
        let mut f = FamilyState::new("openssl", true, true, &metrics, &available);
        assert!(metrics.encode().contains("tapline_tls_probes_available{family=\"openssl\"} 1"));
        let e = AttachError::Unavailable { family: "openssl", reason: "verifier said no".into() };
        f.failed(&available, std::path::Path::new("/x"), &e);
        f.failed(&available, std::path::Path::new("/y"), &e);
        let text = metrics.encode();
        assert!(text.contains("tapline_tls_probes_available{family=\"openssl\"} 0"), "{text}");
        assert!(text.contains("tapline_tls_probes_available{family=\"gotls\"} 0"), "{text}");
        let errors = text
            .lines()
            .find(|l| l.contains("errors_total") && l.contains("component=\"openssl\"") && l.contains("stage=\"load\""))
            .unwrap_or_default()
            .to_string();
        assert!(errors.ends_with(" 1"), "one load error however many files: {text}");
    }

    #[test]
    fn go_versions_with_known_offsets() {
        let v = |s| GoVersion::parse(s).unwrap();
        assert!(go_version_supported(v("go1.19.8")));
        assert!(go_version_supported(v("go1.17")));
        assert!(go_version_supported(v("go1.25.1")));
        assert!(!go_version_supported(v("go1.16.15")), "stack ABI: arguments are not in registers");
        assert!(!go_version_supported(v("go1.26")), "newer than what the offsets were checked against");
    }

    #[test]
    fn library_names() {
        assert!(is_libssl("libssl.so.3"));
        assert!(is_libssl("libssl.so.1.1"));
        assert!(is_libssl("libssl.so"));
        assert!(!is_libssl("libcrypto.so.3"));
        assert!(!is_libssl("libssl3.so"));
    }
}
