//! One unary gRPC call over h2 on a unix socket: what the container-runtime lookups need
//! (containerd's containers service, the CRI runtime service). The messages are prost
//! derives in the callers; tonic would bring a second HTTP/2 stack configuration and code
//! generation (`protoc`) for two calls of a few fields each.

use std::path::Path;
use std::time::Duration;

/// gRPC `NOT_FOUND`.
const GRPC_NOT_FOUND: &str = "5";
/// Largest answer read.
const ANSWER_LIMIT: usize = 1 << 20;
/// A call that takes longer fails (the lookup thread then moves on).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// gRPC message framing: a 0 (uncompressed) byte and a big-endian length.
pub(crate) fn frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + msg.len());
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// The message of a framed gRPC answer.
pub(crate) fn unframe(body: &[u8]) -> Result<&[u8], String> {
    if body.len() < 5 {
        return Err("short gRPC answer".into());
    }
    if body[0] != 0 {
        return Err("compressed gRPC answer (not asked for)".into());
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    body.get(5..5 + len).ok_or_else(|| "truncated gRPC answer".to_string())
}

async fn call(
    socket: &Path,
    method: &str,
    metadata: &[(&str, &str)],
    request: Vec<u8>,
) -> Result<Option<Vec<u8>>, String> {
    let io = tokio::net::UnixStream::connect(socket).await.map_err(|e| format!("{}: {e}", socket.display()))?;
    let (client, conn) = h2::client::handshake(io).await.map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.map_err(|e| e.to_string())?;
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in metadata {
        req = req.header(*k, *v);
    }
    let req = req.body(()).map_err(|e| e.to_string())?;
    let (resp, mut send) = client.send_request(req, false).map_err(|e| e.to_string())?;
    send.send_data(frame(&request).into(), true).map_err(|e| e.to_string())?;
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
        if data.len() > ANSWER_LIMIT {
            return Err("gRPC answer too large".into());
        }
    }
    if let Ok(Some(t)) = body.trailers().await {
        status = status.or(status_in(&t));
    }
    match status.as_deref() {
        Some("0") => Ok(Some(unframe(&data)?.to_vec())),
        Some(GRPC_NOT_FOUND) => Ok(None),
        Some(s) => Err(format!("gRPC status {s}")),
        None => Err("an answer without a gRPC status".into()),
    }
}

/// Calls `method` (`/package.Service/Method`) on the gRPC server at `socket` with an encoded
/// request and `metadata` headers, blocking, for at most two seconds. `Ok(None)`: the server
/// answered `NOT_FOUND`; `Ok(Some(message))`: the encoded answer.
pub fn unary(
    socket: &Path,
    method: &str,
    metadata: &[(&str, &str)],
    request: Vec<u8>,
) -> Result<Option<Vec<u8>>, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        tokio::time::timeout(CALL_TIMEOUT, call(socket, method, metadata, request))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", CALL_TIMEOUT.as_secs())))
    })
}

/// Starts `tests/fixtures/fake_runtime.py MODE SOCKET ARGS...` (grpcio standing in for a
/// container runtime) and waits until it listens. `None`, with a message, when python's grpc
/// module is missing and peers are not required (`TAPLINE_REQUIRE_PEERS`, set in CI).
#[cfg(test)]
pub(crate) fn fake_runtime(mode: &str, socket: &Path, args: &[&str]) -> Option<std::process::Child> {
    if std::process::Command::new("python3").args(["-c", "import grpc"]).status().map_or(true, |s| !s.success()) {
        let msg = "python3 grpcio is missing (scripts/install-deps.sh --test installs it)";
        assert!(std::env::var("TAPLINE_REQUIRE_PEERS").unwrap_or_default().is_empty(), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/fake_runtime.py");
    let mut child = std::process::Command::new("python3")
        .arg(fixture)
        .arg(mode)
        .arg(socket)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("the fixture's first line");
    Some(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        assert_eq!(unframe(&frame(b"abc")).unwrap(), b"abc");
        assert_eq!(unframe(&frame(b"")).unwrap(), b"");
        assert!(unframe(&[0, 0, 0, 0, 9, 1]).is_err(), "truncated");
        assert!(unframe(&[1, 0, 0, 0, 0]).is_err(), "compressed");
        assert!(unframe(&[0, 0]).is_err(), "short");
    }
}
