//! Container metadata from containerd (`--containerd-socket`): the one gRPC call
//! `containerd.services.containers.v1.Containers/Get` in a namespace (`k8s.io` for Kubernetes,
//! whose kubelet labels name the pod), over h2 on the unix socket.
//!
//! The messages are the three fields tapline reads, declared with `prost` derives (field
//! numbers from containerd's `api/services/containers/v1/containers.proto`); code generation
//! would need `protoc` for three fields.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::containers::ContainerMeta;

/// `GetContainerRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct GetContainerRequest {
    #[prost(string, tag = "1")]
    id: String,
}

/// `GetContainerResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct GetContainerResponse {
    #[prost(message, optional, tag = "1")]
    container: Option<Container>,
}

/// `Container` (the fields tapline reads).
#[derive(Clone, PartialEq, prost::Message)]
struct Container {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(map = "string, string", tag = "2")]
    labels: HashMap<String, String>,
    #[prost(string, tag = "3")]
    image: String,
}

const METHOD: &str = "/containerd.services.containers.v1.Containers/Get";
/// gRPC `NOT_FOUND`.
const GRPC_NOT_FOUND: &str = "5";

fn some(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// What a containerd container says about itself: Kubernetes labels first (pod, container
/// name), then nerdctl's name label.
fn meta_of(c: &Container) -> ContainerMeta {
    let label = |k: &str| c.labels.get(k).and_then(|v| some(v));
    ContainerMeta {
        name: label("io.kubernetes.container.name").or_else(|| label("nerdctl/name")),
        image: some(&c.image),
        pod_name: label("io.kubernetes.pod.name"),
        pod_namespace: label("io.kubernetes.pod.namespace"),
    }
}

/// gRPC message framing: a 0 (uncompressed) byte and a big-endian length.
fn frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + msg.len());
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

fn unframe(body: &[u8]) -> Result<&[u8], String> {
    if body.len() < 5 {
        return Err("short gRPC answer".into());
    }
    if body[0] != 0 {
        return Err("compressed gRPC answer (not asked for)".into());
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    body.get(5..5 + len).ok_or_else(|| "truncated gRPC answer".to_string())
}

async fn get(socket: &Path, namespace: &str, id: &str) -> Result<Option<ContainerMeta>, String> {
    use prost::Message;
    let io = tokio::net::UnixStream::connect(socket).await.map_err(|e| format!("{}: {e}", socket.display()))?;
    let (client, conn) = h2::client::handshake(io).await.map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.map_err(|e| e.to_string())?;
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://containerd{METHOD}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("containerd-namespace", namespace)
        .body(())
        .map_err(|e| e.to_string())?;
    let (resp, mut send) = client.send_request(req, false).map_err(|e| e.to_string())?;
    send.send_data(frame(&GetContainerRequest { id: id.to_string() }.encode_to_vec()).into(), true)
        .map_err(|e| e.to_string())?;
    let resp = resp.await.map_err(|e| e.to_string())?;
    let status_in = |h: &http::HeaderMap| h.get("grpc-status").and_then(|v| v.to_str().ok()).map(str::to_string);
    // A trailers-only answer carries grpc-status in the headers.
    let mut status = status_in(resp.headers());
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
        if data.len() > 1 << 20 {
            return Err("gRPC answer too large".into());
        }
    }
    if let Ok(Some(t)) = body.trailers().await {
        status = status.or(status_in(&t));
    }
    match status.as_deref() {
        Some("0") => {}
        Some(GRPC_NOT_FOUND) => return Ok(None),
        Some(s) => return Err(format!("containerd answered gRPC status {s}")),
        None => return Err("containerd answered without a gRPC status".into()),
    }
    let r = GetContainerResponse::decode(unframe(&data)?).map_err(|e| format!("undecodable answer: {e}"))?;
    Ok(r.container.as_ref().map(meta_of))
}

/// Asks containerd on `socket` about container `id` in `namespace` (blocking, bounded).
pub fn inspect(socket: &Path, namespace: &str, id: &str) -> Result<Option<ContainerMeta>, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(2), get(socket, namespace, id))
            .await
            .unwrap_or_else(|_| Err("containerd did not answer within 2 s".into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Against grpcio (an independent gRPC and protobuf implementation) standing in for
    /// containerd; skipped with a message when python's grpc module is missing.
    #[test]
    fn a_grpc_containerd_answers() {
        if std::process::Command::new("python3").args(["-c", "import grpc"]).status().map_or(true, |s| !s.success()) {
            let msg = "python3 grpcio is missing (scripts/install-deps.sh --test installs it)";
            assert!(std::env::var("TAPLINE_REQUIRE_PEERS").unwrap_or_default().is_empty(), "{msg}");
            eprintln!("SKIPPED: {msg}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("containerd.sock");
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/fake_containerd.py");
        let mut child = std::process::Command::new("python3")
            .args([fixture, sock.to_str().unwrap(), "c0ffee", "api", "shop/api:1.2", "api-7d9f", "shop"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let m = inspect(&sock, "k8s.io", "c0ffee").expect("answered").expect("known");
        assert_eq!(m.name.as_deref(), Some("api"));
        assert_eq!(m.image.as_deref(), Some("shop/api:1.2"));
        assert_eq!((m.pod_name.as_deref(), m.pod_namespace.as_deref()), (Some("api-7d9f"), Some("shop")));
        assert_eq!(inspect(&sock, "k8s.io", "other").expect("answered"), None, "NOT_FOUND");
        assert_eq!(inspect(&sock, "default", "c0ffee").expect("answered"), None, "another namespace");
        let _ = child.kill();
        let _ = child.wait();
        assert!(inspect(&sock, "k8s.io", "c0ffee").is_err(), "nothing listening");
    }

    #[test]
    fn kubernetes_labels_name_the_pod() {
        let c = Container {
            id: "c1".into(),
            labels: HashMap::from([
                ("io.kubernetes.pod.name".to_string(), "api-7d9f".to_string()),
                ("io.kubernetes.pod.namespace".to_string(), "shop".to_string()),
                ("io.kubernetes.container.name".to_string(), "api".to_string()),
            ]),
            image: "registry.example/shop/api:1.2".into(),
        };
        let bytes = GetContainerResponse { container: Some(c) }.encode_to_vec();
        let back = GetContainerResponse::decode(unframe(&frame(&bytes)).unwrap()).unwrap();
        let m = meta_of(back.container.as_ref().unwrap());
        assert_eq!(m.name.as_deref(), Some("api"));
        assert_eq!(m.image.as_deref(), Some("registry.example/shop/api:1.2"));
        assert_eq!((m.pod_name.as_deref(), m.pod_namespace.as_deref()), (Some("api-7d9f"), Some("shop")));
        assert!(unframe(&[0, 0, 0, 0, 9, 1]).is_err(), "truncated");
        assert!(unframe(&[1, 0, 0, 0, 0]).is_err(), "compressed");
    }
}
