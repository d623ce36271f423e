//! Container names, images and pods from the Docker Engine API (`--docker-socket`), and the
//! resolver that asks every configured runtime (Docker, containerd, a CRI runtime).
//!
//! A container id (from the cgroup path) is looked up once with `GET /containers/<id>/json`
//! on the Engine's unix socket, on a thread of its own so a slow or dead daemon never stalls
//! capture: the first lookup of an id waits at most [`FIRST_WAIT`] (qtap waits 50 ms for a
//! process), later ones read the cache. Kubernetes pods come from the labels the kubelet puts
//! on their containers (`io.kubernetes.pod.name`, `io.kubernetes.pod.namespace`).
//!
//! The request is HTTP/1.0 written by hand: one GET whose answer the Engine (Go net/http)
//! sends unchunked and closes; `httparse` reads the head. A client crate would add a second
//! HTTP stack to the agent for this one call.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the runtime says about a container (absent fields are unknown, never empty strings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    /// Name, without Docker's leading `/`.
    pub name: Option<String>,
    /// Image reference as the container was created with.
    pub image: Option<String>,
    /// Kubernetes pod name.
    pub pod_name: Option<String>,
    /// Kubernetes pod namespace.
    pub pod_namespace: Option<String>,
}

/// Longest the first lookup of a container id holds up the pipeline.
pub const FIRST_WAIT: Duration = Duration::from_millis(50);
/// A failed lookup is retried after this long.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Connect/read timeout of one request.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

fn non_empty(v: Option<&serde_json::Value>) -> Option<String> {
    v.and_then(|v| v.as_str()).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// Parses the Engine's `GET /containers/<id>/json` answer.
pub fn parse_inspect(body: &[u8]) -> Option<ContainerMeta> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let labels = v.pointer("/Config/Labels");
    Some(ContainerMeta {
        name: non_empty(v.get("Name")).map(|n| n.trim_start_matches('/').to_string()).filter(|n| !n.is_empty()),
        image: non_empty(v.pointer("/Config/Image")),
        pod_name: non_empty(labels.and_then(|l| l.get("io.kubernetes.pod.name"))),
        pod_namespace: non_empty(labels.and_then(|l| l.get("io.kubernetes.pod.namespace"))),
    })
}

/// One `GET /containers/<id>/json` on `socket`.
fn inspect(socket: &Path, id: &str) -> Result<Option<ContainerMeta>, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    s.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    // One write: a server that answers as soon as it has a whole head must not see a part.
    let req = format!("GET /containers/{id}/json HTTP/1.0\r\nHost: docker\r\nUser-Agent: tapline\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.take(4 << 20).read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut headers);
    let head = match res.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err("malformed answer from the Docker Engine API".into()),
    };
    match res.code {
        Some(200) => Ok(parse_inspect(&raw[head..])),
        Some(404) => Ok(None),
        Some(c) => Err(format!("the Docker Engine API answered {c}")),
        None => Err("no status from the Docker Engine API".into()),
    }
}

enum Entry {
    Known(Arc<ContainerMeta>),
    Pending,
    Failed(Instant),
}

/// Where container metadata comes from, asked in order until one knows the id.
#[derive(Debug, Clone)]
pub enum Runtime {
    /// The Docker Engine API on this unix socket.
    Docker(PathBuf),
    /// containerd on this unix socket, in this namespace (`k8s.io` under Kubernetes).
    Containerd(PathBuf, String),
    /// A Kubernetes CRI runtime (CRI-O, containerd's CRI plugin) on this unix socket.
    Cri(PathBuf),
}

impl Runtime {
    fn inspect(&self, id: &str) -> Result<Option<ContainerMeta>, String> {
        match self {
            Runtime::Docker(sock) => inspect(sock, id),
            Runtime::Containerd(sock, ns) => super::containerd::inspect(sock, ns, id),
            Runtime::Cri(sock) => super::cri::inspect(sock, id),
        }
    }

    fn name(&self) -> String {
        match self {
            Runtime::Docker(s) => format!("the Docker Engine API ({})", s.display()),
            Runtime::Containerd(s, ns) => format!("containerd ({}, namespace {ns})", s.display()),
            Runtime::Cri(s) => format!("the CRI runtime ({})", s.display()),
        }
    }
}

/// Looks containers up in the background and caches what it learns.
pub struct ContainerResolver {
    cache: Arc<Mutex<HashMap<String, Entry>>>,
    requests: Sender<Request>,
}

/// A container id to look up, and who to tell when it is done.
type Request = (String, Sender<()>);

impl ContainerResolver {
    /// A resolver asking `runtimes` in order: the first that knows an id names it. Lookups
    /// fail quietly (logged once per runtime) when nothing listens on a socket: containers
    /// then carry their id only.
    pub fn new(runtimes: Vec<Runtime>) -> Self {
        let cache: Arc<Mutex<HashMap<String, Entry>>> = Arc::default();
        let (tx, rx): (Sender<Request>, Receiver<Request>) = channel();
        let c = cache.clone();
        let spawned = std::thread::Builder::new().name("tapline-containers".into()).spawn(move || {
            let mut warned = vec![false; runtimes.len()];
            for (id, done) in rx {
                let mut entry = Entry::Known(Arc::new(ContainerMeta::default()));
                let mut failed = false;
                for (i, rt) in runtimes.iter().enumerate() {
                    match rt.inspect(&id) {
                        Ok(Some(meta)) => {
                            entry = Entry::Known(Arc::new(meta));
                            failed = false;
                            break;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            failed = true;
                            if !std::mem::replace(&mut warned[i], true) {
                                tracing::warn!(error = %e, "cannot ask {} for container names; its containers carry their id only", rt.name());
                            }
                        }
                    }
                }
                if failed {
                    entry = Entry::Failed(Instant::now());
                }
                if let Ok(mut m) = c.lock() {
                    m.insert(id, entry);
                }
                let _ = done.send(());
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the container lookup thread");
        }
        ContainerResolver { cache, requests: tx }
    }

    /// What is known of container `id`: from the cache, or asked for now (waiting at most
    /// [`FIRST_WAIT`]; `None` until the answer arrives).
    pub fn lookup(&self, id: &str) -> Option<Arc<ContainerMeta>> {
        let wait = {
            let Ok(mut m) = self.cache.lock() else { return None };
            match m.get(id) {
                Some(Entry::Known(meta)) => return Some(meta.clone()),
                Some(Entry::Pending) => return None,
                Some(Entry::Failed(at)) if at.elapsed() < RETRY_AFTER => return None,
                _ => {}
            }
            m.insert(id.to_string(), Entry::Pending);
            let (done_tx, done_rx) = channel();
            if self.requests.send((id.to_string(), done_tx)).is_err() {
                m.insert(id.to_string(), Entry::Failed(Instant::now()));
                return None;
            }
            done_rx
        };
        let _ = wait.recv_timeout(FIRST_WAIT);
        match self.cache.lock().ok()?.get(id) {
            Some(Entry::Known(meta)) => Some(meta.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_answers() {
        let body = br#"{"Id":"abc","Name":"/shop-api","Config":{"Image":"shop/api:1.2","Labels":{
            "io.kubernetes.pod.name":"api-7d9f","io.kubernetes.pod.namespace":"shop"}}}"#;
        let m = parse_inspect(body).unwrap();
        assert_eq!(m.name.as_deref(), Some("shop-api"));
        assert_eq!(m.image.as_deref(), Some("shop/api:1.2"));
        assert_eq!((m.pod_name.as_deref(), m.pod_namespace.as_deref()), (Some("api-7d9f"), Some("shop")));
        let bare = parse_inspect(br#"{"Name":"","Config":{"Image":"","Labels":null}}"#).unwrap();
        assert_eq!(bare, ContainerMeta::default(), "empty means unknown");
        assert!(parse_inspect(b"not json").is_none());
    }

    #[test]
    fn a_fake_engine_on_a_unix_socket_and_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { break };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req).to_string();
                let answer = if req.starts_with("GET /containers/c1/json ") {
                    let body = r#"{"Name":"/web","Config":{"Image":"nginx:1.25"}}"#;
                    format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}")
                } else {
                    "HTTP/1.0 404 Not Found\r\n\r\n{}".to_string()
                };
                let _ = s.write_all(answer.as_bytes());
            }
        });
        let r = ContainerResolver::new(vec![Runtime::Docker(sock)]);
        // Usually within the first wait; on a loaded machine a later lookup has the answer.
        let eventually = |id: &str| {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(m) = r.lookup(id) {
                    return m;
                }
                assert!(Instant::now() < deadline, "no answer for {id}");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let m = eventually("c1");
        assert_eq!((m.name.as_deref(), m.image.as_deref()), (Some("web"), Some("nginx:1.25")));
        assert_eq!(*eventually("c2"), ContainerMeta::default(), "unknown to the engine");
        let dead = ContainerResolver::new(vec![Runtime::Docker(dir.path().join("nothing.sock"))]);
        assert!(dead.lookup("c1").is_none());
        assert!(dead.lookup("c1").is_none(), "cached failure, no second wait");
    }
}
