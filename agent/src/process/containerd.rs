//! Container metadata from containerd (`--containerd-socket`): the one gRPC call
//! `containerd.services.containers.v1.Containers/Get` in a namespace (`k8s.io` for Kubernetes,
//! whose kubelet labels name the pod), over h2 on the unix socket.
//!
//! The messages are the three fields tapline reads, declared with `prost` derives (field
//! numbers from containerd's `api/services/containers/v1/containers.proto`); code generation
//! would need `protoc` for three fields.

use super::containers::ContainerMeta;
use super::grpc_unix;
use std::collections::HashMap;
use std::path::Path;

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

/// Asks containerd on `socket` about container `id` in `namespace` (blocking, bounded).
pub fn inspect(socket: &Path, namespace: &str, id: &str) -> Result<Option<ContainerMeta>, String> {
    use prost::Message;
    let req = GetContainerRequest { id: id.to_string() }.encode_to_vec();
    let Some(answer) = grpc_unix::unary(socket, METHOD, &[("containerd-namespace", namespace)], req)
        .map_err(|e| format!("containerd: {e}"))?
    else {
        return Ok(None);
    };
    let r = GetContainerResponse::decode(answer.as_slice()).map_err(|e| format!("undecodable answer: {e}"))?;
    Ok(r.container.as_ref().map(meta_of))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Against grpcio (an independent gRPC and protobuf implementation) standing in for
    /// containerd.
    #[test]
    fn a_grpc_containerd_answers() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("containerd.sock");
        let args = ["c0ffee", "api", "shop/api:1.2", "api-7d9f", "shop"];
        let Some(mut child) = grpc_unix::fake_runtime("containerd", &sock, &args) else { return };
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
        let back = GetContainerResponse::decode(bytes.as_slice()).unwrap();
        let m = meta_of(back.container.as_ref().unwrap());
        assert_eq!(m.name.as_deref(), Some("api"));
        assert_eq!(m.image.as_deref(), Some("registry.example/shop/api:1.2"));
        assert_eq!((m.pod_name.as_deref(), m.pod_namespace.as_deref()), (Some("api-7d9f"), Some("shop")));
    }
}
