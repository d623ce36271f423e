//! The agent's HTTP endpoint: `/readyz`, `/healthz` and `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tapline_output::metrics::Metrics;

/// Shared state of the endpoint.
pub struct Status {
    /// Set once every probe is attached and the pipeline runs.
    pub ready: AtomicBool,
    /// The agent's metrics.
    pub metrics: Arc<Metrics>,
}

async fn readyz(State(s): State<Arc<Status>>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(s): State<Arc<Status>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
}

/// Binds `addr` (failing early with a clear error) and returns the server future.
pub async fn bind(
    addr: SocketAddr,
    status: Arc<Status>,
) -> std::io::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/readyz", get(readyz))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(status);
    Ok(async move { axum::serve(listener, app).await })
}
