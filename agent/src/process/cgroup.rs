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
    fn picks_v2_then_v1() {
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(pick_cgroup(&v2).as_deref(), Some(&*format!("/system.slice/docker-{ID}.scope")));
        let v1 = format!("12:pids:/docker/{ID}\n4:memory:/docker/{ID}\n0::/\n");
        assert_eq!(pick_cgroup(&v1), Some(format!("/docker/{ID}")));
        assert_eq!(pick_cgroup("0::/\n1:cpu:/\n"), None);
    }
}
