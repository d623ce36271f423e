//! Process attribution: who owns a socket (exe, user, cgroup, container), cached per pid
//! and fed by the kernel's exec/fork/exit records so short-lived processes are still named.

mod cgroup;
pub mod containerd;
pub mod containers;
pub mod cri;
pub mod filter;
mod grpc_unix;
mod host;
pub mod sockets;
pub mod strategy;

pub use cgroup::container_id_from_cgroup;
pub use host::{host_name, primary_local_ip, user_name};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What tapline knows about a process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id (tgid).
    pub pid: u32,
    /// Full executable path.
    pub exe: Option<String>,
    /// Basename of the executable.
    pub binary: Option<String>,
    /// User id.
    pub uid: Option<u32>,
    /// User name.
    pub user_name: Option<String>,
    /// The cgroup path that places it (v2 when set, else a v1 controller's).
    pub cgroup: Option<String>,
    /// Container id parsed from the cgroup.
    pub container_id: Option<String>,
    /// Kernel command name.
    pub comm: Option<String>,
    /// The environment variables tapline reads (the table's mask), as `NAME=value` pairs.
    pub env: Vec<(String, String)>,
    /// `QPOINT_STRATEGY` of the process.
    pub strategy: strategy::QpointStrategy,
    /// Name, image and pod of its container, when the runtime told.
    pub container: Option<std::sync::Arc<containers::ContainerMeta>>,
}

impl ProcessInfo {
    /// The value of environment variable `name`, when it is in the table's mask.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Entries kept at most; the oldest exited ones go first.
const MAX_ENTRIES: usize = 32_768;
/// How long an exited process stays known (its records may still be queued).
const EXIT_GRACE: Duration = Duration::from_secs(30);

struct Entry {
    info: ProcessInfo,
    exited: Option<Instant>,
}

/// A cache of [`ProcessInfo`] keyed by pid.
pub struct ProcessTable {
    proc_root: PathBuf,
    entries: HashMap<u32, Entry>,
    /// Environment variables read from each process (never the whole environment: it holds secrets).
    env_mask: Vec<String>,
    /// Asks the container runtime for names and images (`--docker-socket`).
    containers: Option<containers::ContainerResolver>,
    /// cgroup ids of exec records to paths (for processes gone before /proc was read).
    cgroups: cgroup::CgroupPaths,
}

fn basename(path: &str) -> Option<String> {
    Path::new(path).file_name().map(|s| s.to_string_lossy().into_owned())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The pids of the processes alive now: the numeric entries of `proc_root` (`/proc`).
pub fn live_pids(proc_root: &Path) -> Vec<u32> {
    std::fs::read_dir(proc_root)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

impl ProcessTable {
    /// A table reading `/proc`-like data under `proc_root`.
    pub fn new(proc_root: PathBuf) -> Self {
        Self {
            proc_root,
            entries: HashMap::new(),
            env_mask: vec![strategy::STRATEGY_ENV.to_string(), strategy::TAGS_ENV.to_string()],
            containers: None,
            cgroups: cgroup::CgroupPaths::discover(),
        }
    }

    /// Names containers through `resolver`.
    pub fn with_containers(mut self, resolver: containers::ContainerResolver) -> Self {
        self.containers = Some(resolver);
        self
    }

    /// The runtime's metadata of container `id`, when a resolver is configured and it knows.
    pub fn container_meta(&self, id: Option<&str>) -> Option<std::sync::Arc<containers::ContainerMeta>> {
        self.containers.as_ref()?.lookup(id?)
    }

    /// Also reads these environment variables of each process (rule fields, configured tags).
    /// Processes already known keep what was read for them.
    pub fn add_env_vars(&mut self, names: impl IntoIterator<Item = String>) {
        let mut added = false;
        for n in names {
            if !self.env_mask.contains(&n) {
                self.env_mask.push(n);
                added = true;
            }
        }
        if !added {
            return;
        }
        // Processes already known read the new variables too (while they are alive).
        let pids: Vec<u32> = self.entries.keys().copied().collect();
        for pid in pids {
            let env = self.read_env(&self.proc_root.join(pid.to_string()));
            if let Some(e) = self.entries.get_mut(&pid)
                && !env.is_empty()
            {
                e.info.env = env;
            }
        }
    }

    /// The masked variables of `/proc/<pid>/environ`.
    fn read_env(&self, dir: &Path) -> Vec<(String, String)> {
        let Ok(raw) = std::fs::read(dir.join("environ")) else { return Vec::new() };
        raw.split(|&b| b == 0)
            .filter_map(|kv| {
                let eq = kv.iter().position(|&b| b == b'=')?;
                let name = std::str::from_utf8(&kv[..eq]).ok()?;
                self.env_mask.iter().any(|m| m == name).then(|| (name.to_string(), lossy(&kv[eq + 1..])))
            })
            .collect()
    }

    fn read_proc(&self, pid: u32) -> Option<ProcessInfo> {
        let dir = self.proc_root.join(pid.to_string());
        let exe = std::fs::read_link(dir.join("exe")).ok().map(|p| {
            let s = p.to_string_lossy().into_owned();
            s.strip_suffix(" (deleted)").map(str::to_string).unwrap_or(s)
        });
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok());
        let comm = status.lines().find_map(|l| l.strip_prefix("Name:")).map(|s| s.trim().to_string());
        let cgroup = std::fs::read_to_string(dir.join("cgroup")).ok().and_then(|c| cgroup::pick_cgroup(&c));
        let env = self.read_env(&dir);
        let container_id = cgroup.as_deref().and_then(container_id_from_cgroup);
        let container = self.container_meta(container_id.as_deref());
        let strategy = env
            .iter()
            .find(|(k, _)| k == strategy::STRATEGY_ENV)
            .map(|(_, v)| strategy::parse_strategy(v, exe.as_deref()))
            .unwrap_or_default();
        Some(ProcessInfo {
            pid,
            binary: exe.as_deref().and_then(basename).or_else(|| comm.clone()),
            exe,
            uid,
            user_name: uid.and_then(user_name),
            container_id,
            container,
            cgroup,
            comm,
            env,
            strategy,
        })
    }

    fn insert(&mut self, info: ProcessInfo) {
        if self.entries.len() >= MAX_ENTRIES {
            self.evict();
        }
        self.entries.insert(info.pid, Entry { info, exited: None });
    }

    fn evict(&mut self) {
        let now = Instant::now();
        self.entries.retain(|_, e| e.exited.is_none_or(|t| now.duration_since(t) < EXIT_GRACE));
        if self.entries.len() >= MAX_ENTRIES {
            // Still full of live processes: drop exited ones first, then anything.
            let victims: Vec<u32> = self.entries.keys().take(MAX_ENTRIES / 8).copied().collect();
            for v in victims {
                self.entries.remove(&v);
            }
        }
    }

    /// A process called exec: refresh from /proc while it is alive, else use what the kernel
    /// said (its file name, uid and cgroup v2 id).
    pub fn on_exec(&mut self, pid: u32, uid: u32, filename: &[u8], comm: &[u8], cgroup_id: u64) {
        let info = match self.read_proc(pid) {
            // A zombie (exited, not yet reaped) still has a status but no exe link: the
            // kernel's file name stands in.
            Some(mut info) if info.exe.is_none() => {
                let exe = lossy(filename);
                info.binary = basename(&exe);
                info.exe = Some(exe);
                info
            }
            Some(info) => info,
            None => {
                let exe = lossy(filename);
                let cgroup = self.cgroups.path_of(cgroup_id);
                let container_id = cgroup.as_deref().and_then(container_id_from_cgroup);
                ProcessInfo {
                    pid,
                    binary: basename(&exe),
                    exe: Some(exe),
                    uid: Some(uid),
                    user_name: user_name(uid),
                    comm: Some(lossy(comm)),
                    container: self.container_meta(container_id.as_deref()),
                    container_id,
                    cgroup,
                    ..Default::default()
                }
            }
        };
        self.insert(info);
    }

    /// Reads every process alive now, so those that started before the agent are named even
    /// when they exit before their first connection is handled. Returns how many were read.
    pub fn warm_up(&mut self) -> usize {
        let mut n = 0;
        for pid in live_pids(&self.proc_root) {
            if let Some(info) = self.read_proc(pid) {
                self.insert(info);
                n += 1;
            }
        }
        n
    }

    /// A new process: it starts as a copy of its parent.
    pub fn on_fork(&mut self, parent: u32, child: u32) {
        let info = match self.entries.get(&parent) {
            Some(e) => ProcessInfo { pid: child, ..e.info.clone() },
            None => match self.read_proc(child).or_else(|| self.read_proc(parent)) {
                Some(i) => ProcessInfo { pid: child, ..i },
                None => return,
            },
        };
        self.insert(info);
    }

    /// A process exited: its entry stays a while for records still queued.
    pub fn on_exit(&mut self, pid: u32) {
        if let Some(e) = self.entries.get_mut(&pid) {
            e.exited = Some(Instant::now());
        }
        if self.entries.len() > MAX_ENTRIES / 2 {
            let now = Instant::now();
            self.entries.retain(|_, e| e.exited.is_none_or(|t| now.duration_since(t) < EXIT_GRACE));
        }
    }

    /// What is known of `pid`: cached, else read from /proc, else built from the hints.
    pub fn get(&mut self, pid: u32, uid_hint: Option<u32>, comm_hint: &[u8]) -> ProcessInfo {
        if let Some(e) = self.entries.get(&pid) {
            let unnamed = (e.info.container.is_none()).then(|| e.info.container_id.clone()).flatten();
            let Some(id) = unnamed else { return e.info.clone() };
            // Read before the runtime answered: take its answer once it is there.
            let meta = self.container_meta(Some(&id));
            if let Some(e) = self.entries.get_mut(&pid) {
                e.info.container = meta;
                return e.info.clone();
            }
        }
        let info = self.read_proc(pid).unwrap_or_else(|| {
            let comm = (!comm_hint.is_empty()).then(|| lossy(comm_hint));
            ProcessInfo {
                pid,
                binary: comm.clone(),
                uid: uid_hint,
                user_name: uid_hint.and_then(user_name),
                comm,
                ..Default::default()
            }
        });
        self.insert(info.clone());
        info
    }

    /// Number of cached processes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_proc(root: &Path, pid: u32, exe: &str, uid: u32, cgroup: &str) {
        let d = root.join(pid.to_string());
        std::fs::create_dir_all(&d).expect("mkdir");
        std::os::unix::fs::symlink(exe, d.join("exe")).expect("symlink");
        std::fs::write(d.join("status"), format!("Name:\tfake\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")).expect("status");
        std::fs::write(d.join("cgroup"), cgroup).expect("cgroup");
    }

    #[test]
    fn reads_a_fake_proc_and_parses_the_container() {
        let tmp = tempfile::tempdir().expect("tmp");
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        fake_proc(tmp.path(), 4242, "/usr/bin/curl", 0, &format!("0::/system.slice/docker-{id}.scope\n"));
        let mut t = ProcessTable::new(tmp.path().to_path_buf());
        let p = t.get(4242, None, b"");
        assert_eq!(p.exe.as_deref(), Some("/usr/bin/curl"));
        assert_eq!(p.binary.as_deref(), Some("curl"));
        assert_eq!(p.uid, Some(0));
        assert_eq!(p.user_name.as_deref(), Some("root"));
        assert_eq!(p.container_id.as_deref(), Some(id));
    }

    #[test]
    fn real_proc_for_this_process() {
        let mut t = ProcessTable::new("/proc".into());
        let me = std::process::id();
        let p = t.get(me, None, b"");
        let exe = std::env::current_exe().expect("exe");
        assert_eq!(p.exe.as_deref(), exe.to_str());
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        assert_eq!(p.uid, Some(uid));
    }

    #[test]
    fn fork_inherits_and_exec_without_proc_uses_the_kernel_filename() {
        let tmp = tempfile::tempdir().expect("tmp");
        fake_proc(tmp.path(), 10, "/usr/sbin/nginx", 33, "0::/\n");
        let mut t = ProcessTable::new(tmp.path().to_path_buf());
        t.get(10, None, b"");
        t.on_fork(10, 11);
        let c = t.get(11, None, b"");
        assert_eq!((c.pid, c.exe.as_deref()), (11, Some("/usr/sbin/nginx")));
        // pid 12 is already gone from /proc: the exec record names it.
        t.on_exec(12, 1000, b"/usr/bin/python3.11", b"python3", 0);
        let p = t.get(12, None, b"");
        assert_eq!(p.exe.as_deref(), Some("/usr/bin/python3.11"));
        assert_eq!(p.binary.as_deref(), Some("python3.11"));
        assert_eq!(p.uid, Some(1000));
    }

    #[test]
    fn warm_up_reads_every_process_and_a_zombie_exec_gets_its_file_name() {
        let tmp = tempfile::tempdir().expect("tmp");
        fake_proc(tmp.path(), 20, "/usr/sbin/nginx", 0, "0::/\n");
        fake_proc(tmp.path(), 21, "/usr/bin/python3.11", 0, "0::/\n");
        let mut t = ProcessTable::new(tmp.path().to_path_buf());
        assert_eq!(t.warm_up(), 2);
        assert_eq!(t.len(), 2);
        // pid 22: a status but no exe link (a zombie).
        let d = tmp.path().join("22");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("status"), "Name:\tcurl\nUid:\t0\t0\t0\t0\n").unwrap();
        t.on_exec(22, 0, b"/usr/bin/curl", b"curl", 0);
        assert_eq!(t.get(22, None, b"").exe.as_deref(), Some("/usr/bin/curl"));
    }

    #[test]
    fn dead_pid_falls_back_to_hints_and_exit_keeps_then_evicts() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut t = ProcessTable::new(tmp.path().to_path_buf());
        let p = t.get(999_999, Some(0), b"curl");
        assert_eq!(p.binary.as_deref(), Some("curl"));
        assert_eq!(p.user_name.as_deref(), Some("root"));
        assert_eq!(p.exe, None);
        t.on_exit(999_999);
        assert_eq!(t.len(), 1, "kept during the grace period");
    }
}
