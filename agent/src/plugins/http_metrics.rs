//! The `http_metrics` plugin: Prometheus request counts and durations per endpoint, on
//! `/metrics` (`tapline_http_requests_total`, `tapline_http_request_duration_seconds`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tapline_output::metrics::Metrics;

use crate::txn::Transaction;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    direction: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
    direction: String,
}

/// Buckets of request durations, seconds: 5 ms to 30 s.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Per-endpoint request metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: Family<EndpointLabels, Histogram>,
}

impl HttpMetrics {
    /// Registers the metrics.
    pub fn new(metrics: &Metrics) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let durations =
            Family::<EndpointLabels, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS.iter().copied()));
        metrics.register(
            "tapline_http_requests",
            "HTTP requests by endpoint, direction, method and status",
            requests.clone(),
        );
        metrics.register(
            "tapline_http_request_duration_seconds",
            "HTTP request durations (request head to response head) by endpoint and direction",
            durations.clone(),
        );
        Self { requests, durations }
    }

    /// Counts one finished transaction of `endpoint` seen in `direction`.
    pub fn observe(&self, txn: &Transaction, endpoint: &str, direction: &str) {
        let status = txn.response.as_ref().map(|r| r.status.to_string()).unwrap_or_else(|| "none".into());
        let labels = RequestLabels {
            endpoint: endpoint.to_string(),
            direction: direction.to_string(),
            method: txn.request.method.clone(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        let e = EndpointLabels { endpoint: endpoint.to_string(), direction: direction.to_string() };
        self.durations.get_or_create(&e).observe(txn.duration_ms() as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http1::{RequestHead, ResponseHead};
    use crate::txn::HttpProtocol;
    use std::time::{Duration, SystemTime};

    #[test]
    fn counts_and_durations_per_endpoint() {
        let m = Metrics::new();
        let h = HttpMetrics::new(&m);
        let t0 = SystemTime::UNIX_EPOCH;
        let mut t = Transaction::new(
            HttpProtocol::Http1,
            RequestHead { method: "GET".into(), target: "/".into(), version: 1, headers: vec![] },
            t0,
        );
        t.response = Some(ResponseHead { status: 503, reason: String::new(), version: 1, headers: vec![] });
        t.response_time = Some(t0 + Duration::from_millis(40));
        h.observe(&t, "api.example.com", "egress-external");
        h.observe(&t, "api.example.com", "egress-external");
        let text = m.encode();
        assert!(
            text.contains(r#"tapline_http_requests_total{endpoint="api.example.com",direction="egress-external",method="GET",status="503"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"tapline_http_request_duration_seconds_bucket{le="0.05",endpoint="api.example.com",direction="egress-external"} 2"#), "{text}");
    }
}
