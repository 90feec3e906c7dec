//! Request metrics (OpenMetrics text, by `prometheus-client`): a counter and a latency
//! histogram per method, route template and status. Every label has a fixed set of values, so the number of series stays
//! bounded whatever clients send: route templates (`/api/tasks/{id}`), not paths, and
//! `unmatched` for any path no route has; the nine standard methods, and `other` for any method
//! a client invents (HTTP lets a client send `BREW` or a fresh random token per request).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::state::AppState;

/// Histogram bucket bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

/// Counters and latencies of every request served, kept and encoded by `prometheus-client`.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("taskfleet_api");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RequestLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(BUCKETS)) as fn() -> Histogram,
        );
        registry.register("requests", "HTTP requests served", requests.clone());
        registry.register(
            "request_duration_seconds",
            "HTTP request latency",
            duration.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
        }
    }
}

impl Metrics {
    pub fn observe(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            method,
            route: route.to_string(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(seconds);
    }

    /// The OpenMetrics text exposition of the request series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// The method as a label: a standard method by name, anything else `other`.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Middleware: times each request and records it under its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = method_label(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    state.metrics.observe(
        method,
        &route,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("GET", "/health", 200, 0.003);
        m.observe("GET", "/health", 200, 3.0);
        let text = m.render();
        assert!(text.contains(
            "taskfleet_api_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 2"
        ));
        assert!(
            text.contains("le=\"0.005\",method=\"GET\",route=\"/health\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("le=\"10.0\",method=\"GET\",route=\"/health\",status=\"200\"} 2"),
            "{text}"
        );
    }
}
