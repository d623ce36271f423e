//! End to end, as root, without Docker or Kubernetes: a process placed in a docker-style or
//! CRI-O-style cgroup (and its own mount namespace) is attributed to that container, whose
//! name, image and pod come from a fake Docker Engine API or a gRPC CRI runtime on a unix socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tapline_e2e::*;

/// The cgroup v2 mount (pure v2, or the `unified` hierarchy of a hybrid layout).
fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
        .expect("a cgroup2 hierarchy is mounted")
}

/// A fake Engine API answering `GET /containers/<id>/json` for one container.
fn fake_engine(sock: PathBuf, id: String) {
    let listener = UnixListener::bind(&sock).expect("bind engine socket");
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { break };
            let mut req = Vec::new();
            let mut buf = [0u8; 2048];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&req).to_string();
            let answer = if req.starts_with(&format!("GET /containers/{id}/json ")) {
                let body = json!({"Id": id, "Name": "/checkout-api", "Config": {"Image": "shop/checkout:2.4",
                    "Labels": {"io.kubernetes.pod.name": "checkout-5c9f", "io.kubernetes.pod.namespace": "shop"}}});
                format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}")
            } else {
                "HTTP/1.0 404 Not Found\r\nContent-Type: application/json\r\n\r\n{\"message\":\"no such container\"}"
                    .to_string()
            };
            let _ = s.write_all(answer.as_bytes());
        }
    });
}

/// A 64-hex container id unique to this run.
fn container_id() -> String {
    sha1_hex(format!("tapline-{}-{:?}", std::process::id(), std::time::SystemTime::now()).as_bytes())
        .chars()
        .chain("0123456789abcdef0123456789abcdef".chars())
        .take(64)
        .collect()
}

/// What a runtime is expected to say about the test container.
struct Named<'a> {
    name: &'a str,
    image: &'a str,
    pod: &'a str,
    namespace: &'a str,
}

/// Runs curl in `cgroup` (created under the cgroup2 root, removed after) and its own mount
/// namespace, with an agent started with `agent_args`; checks the container `id` is named as
/// `want` on the connection, the record's summary and the object, and absent on the host side.
fn curl_in_container_is_named(cgroup: &str, id: &str, agent_args: &[&str], want: Named) {
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let cgroup = cgroup2_root().join(cgroup);
    std::fs::create_dir_all(&cgroup).expect("create the container's cgroup");
    let agent = Agent::start(Some(FULL_CAPTURE), agent_args).expect("agent");
    // Join the cgroup, then run curl in a mount namespace of its own (as a container would).
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec unshare -m --propagation private curl -sS -o /dev/null http://127.0.0.1:{port}/in-a-container",
        cgroup.display()
    );
    let out = run(Command::new("sh").args(["-c", &script]));
    let ev = agent.wait_for(Duration::from_secs(15), "the container's record", |ev| {
        !records_on(ev, port, "egress-internal").is_empty()
    });
    // Removed once the agent has seen it (an empty cgroup can go: curl has exited).
    let _ = std::fs::remove_dir(&cgroup);
    out.expect("curl in the container");
    let ev = ev.expect("events");
    let conn = one(connections_to(&ev, port, "egress-internal"), "connection");
    let expect = json!({"id": id, "name": want.name, "image": want.image,
        "pod": {"name": want.pod, "namespace": want.namespace}});
    assert_eq!(conn["source"]["container"], expect, "{conn}");
    assert_eq!(conn["tags"]["pod"], json!([want.pod]));
    let rec = one(records_on(&ev, port, "egress-internal"), "record");
    let s = &rec["summary"];
    assert_eq!((s["container_name"].as_str(), s["container_image"].as_str()), (Some(want.name), Some(want.image)));
    assert_eq!((s["pod_name"].as_str(), s["pod_namespace"].as_str()), (Some(want.pod), Some(want.namespace)));
    let o = fetch_object(&agent, rec);
    let m = &o["metadata"];
    for (k, v) in [
        ("container_name", want.name),
        ("container_image", want.image),
        ("pod_name", want.pod),
        ("pod_namespace", want.namespace),
    ] {
        assert_eq!(m[k], v, "{m}");
    }
    // The server answering it is on the host: no container at all (absent, not empty).
    let server = one(connections_to(&ev, port, "ingress"), "server side");
    assert!(server["destination"].get("container").is_none(), "{server}");
    let _: &Value = server;
    agent.stop().expect("stop").check_data_model().expect("data model");
}

#[test]
fn a_process_in_a_docker_cgroup_is_named_by_the_engine_api() {
    let _lock = probe_lock();
    let dir = tempfile::tempdir().unwrap();
    let id = container_id();
    let sock = dir.path().join("docker.sock");
    fake_engine(sock.clone(), id.clone());
    let none = dir.path().join("absent.sock");
    curl_in_container_is_named(
        &format!("system.slice/docker-{id}.scope"),
        &id,
        &["--docker-socket", sock.to_str().unwrap(), "--cri-socket", none.to_str().unwrap()],
        Named { name: "checkout-api", image: "shop/checkout:2.4", pod: "checkout-5c9f", namespace: "shop" },
    );
}

/// A Kubernetes pod's container under CRI-O (systemd cgroup driver layout), named through the
/// CRI `ContainerStatus` call answered by grpcio standing in for CRI-O.
#[test]
fn a_process_in_a_crio_cgroup_is_named_by_the_cri_runtime() {
    let _lock = probe_lock();
    let dir = tempfile::tempdir().unwrap();
    let id = container_id();
    let sock = dir.path().join("crio.sock");
    let (_cri, _) = start_fixture(
        "fake_runtime.py",
        &["cri", sock.to_str().unwrap(), &id, "payments", "quay.io/shop/payments:3.1", "payments-6b7c", "billing"],
    )
    .expect("the CRI stand-in (python3 grpcio; scripts/install-deps.sh --test installs it)");
    let none = dir.path().join("absent.sock");
    curl_in_container_is_named(
        &format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b.slice/crio-{id}.scope"),
        &id,
        &[
            "--cri-socket",
            sock.to_str().unwrap(),
            "--docker-socket",
            none.to_str().unwrap(),
            "--containerd-socket",
            none.to_str().unwrap(),
        ],
        Named { name: "payments", image: "quay.io/shop/payments:3.1", pod: "payments-6b7c", namespace: "billing" },
    );
}
