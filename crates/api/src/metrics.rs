//! Prometheus metrics at `/metrics`: request counts and latencies per route. Labels are the
//! documented route templates, never raw paths, so a scan of random URLs cannot blow up the
//! number of series; nothing request-specific (ids, tokens, bodies) is ever a label.

use std::collections::HashSet;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    routes: HashSet<String>,
}

impl Metrics {
    /// Counts requests by the route templates of `spec` (the OpenAPI document); any other path
    /// counts as `other`, so raw paths never become label values.
    pub fn new(spec: &str) -> Self {
        let registry = Registry::new_custom(Some("aimc".into()), None).expect("valid prefix");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route and method",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        let spec: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let routes = spec["paths"]
            .as_object()
            .map(|paths| paths.keys().cloned().collect())
            .unwrap_or_default();
        Metrics {
            registry,
            requests,
            latency,
            routes,
        }
    }

    pub fn observe(&self, path: &str, method: &str, status: u16, seconds: f64) {
        let route = if self.routes.contains(path) {
            path
        } else {
            "other"
        };
        let method = match method {
            "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS" => method,
            _ => "other",
        };
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
