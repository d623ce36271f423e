//! Container ids from cgroup paths (docker, containerd, CRI-O, podman, systemd scopes; v1 and v2).

/// Picks the cgroup path that places a process from `/proc/<pid>/cgroup`: the v2 line when
/// it is not the root, else a v1 line of a well-known controller.
pub fn pick_cgroup(content: &str) -> Option<String> {
    let mut v1: Option<String> = None;
    for line in content.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrl.is_empty() {
            if path != "/" {
                return Some(path.to_string());
            }
            continue;
        }
        let known = ctrl.split(',').any(|c| matches!(c, "memory" | "pids" | "cpu" | "name=systemd"));
        if known && path != "/" && v1.is_none() {
            v1 = Some(path.to_string());
        }
    }
    v1
}

/// cgroup v2 ids (the kernel's `bpf_get_current_cgroup_id`, the directory's inode number) to
/// paths, for processes gone before `/proc/<pid>/cgroup` could be read. The hierarchy is
/// walked on a miss, at most once a second.
pub struct CgroupPaths {
    root: Option<std::path::PathBuf>,
    by_id: std::collections::HashMap<u64, String>,
    last_walk: Option<std::time::Instant>,
}

/// Directories walked below the cgroup2 root at most (container cgroups sit a few levels down).
const WALK_DEPTH: usize = 8;

impl CgroupPaths {
    /// Finds the cgroup2 mount in `/proc/mounts` (none: nothing is resolved).
    pub fn discover() -> Self {
        let root = std::fs::read_to_string("/proc/mounts").ok().and_then(|m| {
            m.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 2 && f[2] == "cgroup2").then(|| std::path::PathBuf::from(f[1]))
            })
        });
        Self::at(root)
    }

    /// Resolves below `root`.
    pub fn at(root: Option<std::path::PathBuf>) -> Self {
        CgroupPaths { root, by_id: std::collections::HashMap::new(), last_walk: None }
    }

    /// The path (as `/proc/<pid>/cgroup` writes it) of cgroup `id`.
    pub fn path_of(&mut self, id: u64) -> Option<String> {
        if id == 0 {
            return None;
        }
        if let Some(p) = self.by_id.get(&id) {
            return Some(p.clone());
        }
        if self.last_walk.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
            return None;
        }
        self.last_walk = Some(std::time::Instant::now());
        let root = self.root.clone()?;
        self.by_id.clear();
        self.walk(&root, &root, 0);
        self.by_id.get(&id).cloned()
    }

    fn walk(&mut self, root: &std::path::Path, dir: &std::path::Path, depth: usize) {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_dir() {
                continue;
            }
            let path = e.path();
            if let Ok(rel) = path.strip_prefix(root) {
                self.by_id.insert(meta.ino(), format!("/{}", rel.display()));
            }
            if depth < WALK_DEPTH {
                self.walk(root, &path, depth + 1);
            }
        }
    }
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container id in a cgroup path, if it names one.
pub fn container_id_from_cgroup(path: &str) -> Option<String> {
    for seg in path.rsplit('/') {
        let seg = seg.strip_suffix(".scope").unwrap_or(seg);
        // docker-<id>, cri-containerd-<id>, crio-<id>, libpod-<id>, containerd-<id>
        let id = seg.rsplit_once('-').map(|(_, id)| id).unwrap_or(seg);
        if is_id(id) {
            return Some(id.to_ascii_lowercase());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708";

    #[test]
    fn runtimes() {
        let cases = [
            format!("/docker/{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/kubepods/besteffort/pod1234/{ID}"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12_34.slice/cri-containerd-{ID}.scope"
            ),
            format!("/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"),
        ];
        for c in &cases {
            assert_eq!(container_id_from_cgroup(c).as_deref(), Some(ID), "{c}");
        }
        assert_eq!(container_id_from_cgroup("/user.slice/user-0.slice/session-1.scope"), None);
        assert_eq!(container_id_from_cgroup("/"), None);
    }

    #[test]
    fn cgroup_ids_resolve_to_paths() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("system.slice").join(format!("docker-{ID}.scope"));
        std::fs::create_dir_all(&dir).unwrap();
        let ino = std::fs::metadata(&dir).unwrap().ino();
        let mut c = CgroupPaths::at(Some(tmp.path().to_path_buf()));
        let p = c.path_of(ino).expect("found by walking");
        assert_eq!(p, format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(container_id_from_cgroup(&p).as_deref(), Some(ID));
        assert_eq!(c.path_of(1), None, "unknown id");
        assert_eq!(c.path_of(0), None);
    }

    #[test]
    fn picks_v2_then_v1() {
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(pick_cgroup(&v2).as_deref(), Some(&*format!("/system.slice/docker-{ID}.scope")));
        let v1 = format!("12:pids:/docker/{ID}\n4:memory:/docker/{ID}\n0::/\n");
        assert_eq!(pick_cgroup(&v1), Some(format!("/docker/{ID}")));
        assert_eq!(pick_cgroup("0::/\n1:cpu:/\n"), None);
    }
}
