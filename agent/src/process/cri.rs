//! Container metadata from a Kubernetes CRI runtime (`--cri-socket`): CRI-O, or containerd's
//! CRI plugin, through `runtime.v1.RuntimeService/ContainerStatus` over gRPC on the unix socket.
//! Pod name and namespace come from the labels the kubelet puts on every container.
//!
//! The messages are the fields tapline reads, declared with `prost` derives; their numbers
//! are those of `k8s.io/cri-api/pkg/apis/runtime/v1/api.proto` (unknown fields are skipped).

use std::collections::HashMap;
use std::path::Path;

use super::containers::ContainerMeta;
use super::grpc_unix;

/// `ContainerStatusRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct ContainerStatusRequest {
    #[prost(string, tag = "1")]
    container_id: String,
    #[prost(bool, tag = "2")]
    verbose: bool,
}

/// `ContainerStatusResponse` (its `info` map is only filled when verbose).
#[derive(Clone, PartialEq, prost::Message)]
struct ContainerStatusResponse {
    #[prost(message, optional, tag = "1")]
    status: Option<ContainerStatus>,
}

/// `ContainerStatus` (the fields tapline reads).
#[derive(Clone, PartialEq, prost::Message)]
struct ContainerStatus {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(message, optional, tag = "2")]
    metadata: Option<ContainerMetadata>,
    #[prost(message, optional, tag = "8")]
    image: Option<ImageSpec>,
    #[prost(string, tag = "9")]
    image_ref: String,
    #[prost(map = "string, string", tag = "12")]
    labels: HashMap<String, String>,
}

/// `ContainerMetadata`: the container's name in its pod.
#[derive(Clone, PartialEq, prost::Message)]
struct ContainerMetadata {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(uint32, tag = "2")]
    attempt: u32,
}

/// `ImageSpec`: the image as the container was created from.
#[derive(Clone, PartialEq, prost::Message)]
struct ImageSpec {
    #[prost(string, tag = "1")]
    image: String,
}

const METHOD: &str = "/runtime.v1.RuntimeService/ContainerStatus";

fn some(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// What a CRI container status says: its name in the pod, its image (the spec, else the
/// resolved reference), and the pod from the kubelet's labels.
fn meta_of(c: &ContainerStatus) -> ContainerMeta {
    let label = |k: &str| c.labels.get(k).and_then(|v| some(v));
    ContainerMeta {
        name: c.metadata.as_ref().and_then(|m| some(&m.name)).or_else(|| label("io.kubernetes.container.name")),
        image: c.image.as_ref().and_then(|i| some(&i.image)).or_else(|| some(&c.image_ref)),
        pod_name: label("io.kubernetes.pod.name"),
        pod_namespace: label("io.kubernetes.pod.namespace"),
    }
}

/// Asks the CRI runtime on `socket` about container `id` (blocking, bounded). Pod sandboxes
/// and unknown ids are `NOT_FOUND`: `Ok(None)`.
pub fn inspect(socket: &Path, id: &str) -> Result<Option<ContainerMeta>, String> {
    use prost::Message;
    let req = ContainerStatusRequest { container_id: id.to_string(), verbose: false }.encode_to_vec();
    let Some(answer) = grpc_unix::unary(socket, METHOD, &[], req).map_err(|e| format!("CRI runtime: {e}"))? else {
        return Ok(None);
    };
    let r = ContainerStatusResponse::decode(answer.as_slice()).map_err(|e| format!("undecodable answer: {e}"))?;
    Ok(r.status.as_ref().map(meta_of))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Against grpcio (an independent gRPC and protobuf implementation) standing in for
    /// CRI-O.
    #[test]
    fn a_grpc_cri_runtime_answers() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("crio.sock");
        let args = ["c0ffee", "api", "quay.io/shop/api:1.2", "api-7d9f", "shop"];
        let Some(mut child) = grpc_unix::fake_runtime("cri", &sock, &args) else { return };
        let m = inspect(&sock, "c0ffee").expect("answered").expect("known");
        assert_eq!(m.name.as_deref(), Some("api"));
        assert_eq!(m.image.as_deref(), Some("quay.io/shop/api:1.2"));
        assert_eq!((m.pod_name.as_deref(), m.pod_namespace.as_deref()), (Some("api-7d9f"), Some("shop")));
        assert_eq!(inspect(&sock, "other").expect("answered"), None, "NOT_FOUND");
        let _ = child.kill();
        let _ = child.wait();
        assert!(inspect(&sock, "c0ffee").is_err(), "nothing listening");
    }

    #[test]
    fn status_fields_and_fallbacks() {
        let full = ContainerStatus {
            id: "c1".into(),
            metadata: Some(ContainerMetadata { name: "api".into(), attempt: 2 }),
            image: Some(ImageSpec { image: "registry.example/shop/api:1.2".into() }),
            image_ref: "registry.example/shop/api@sha256:abcd".into(),
            labels: HashMap::from([
                ("io.kubernetes.pod.name".to_string(), "api-7d9f".to_string()),
                ("io.kubernetes.pod.namespace".to_string(), "shop".to_string()),
            ]),
        };
        let bytes = ContainerStatusResponse { status: Some(full) }.encode_to_vec();
        let back = ContainerStatusResponse::decode(bytes.as_slice()).unwrap();
        let m = meta_of(back.status.as_ref().unwrap());
        assert_eq!(m.name.as_deref(), Some("api"));
        assert_eq!(m.image.as_deref(), Some("registry.example/shop/api:1.2"));
        assert_eq!((m.pod_name.as_deref(), m.pod_namespace.as_deref()), (Some("api-7d9f"), Some("shop")));
        // No metadata name or image spec: the kubelet's label and the resolved reference.
        let bare = ContainerStatus {
            id: "c2".into(),
            metadata: None,
            image: Some(ImageSpec { image: " ".into() }),
            image_ref: "sha256:abcd".into(),
            labels: HashMap::from([("io.kubernetes.container.name".to_string(), "sidecar".to_string())]),
        };
        let m = meta_of(&bare);
        assert_eq!((m.name.as_deref(), m.image.as_deref()), (Some("sidecar"), Some("sha256:abcd")));
        assert_eq!((m.pod_name, m.pod_namespace), (None, None), "absent, not empty");
    }
}
