//! Prometheus metrics at `/metrics`: requests by route template, Vault calls, the database pool,
//! command conflicts and retries, and projection lag. Labels are route templates and fixed
//! words, never raw paths, so a scan of random URLs cannot blow up the number of series; nothing
//! request-specific (ids, tokens, bodies) is ever a label.

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Fetches of `AIMC_JWT_JWKS_URL`, by why (`start`, `refresh`, `unknown_kid`) and outcome.
pub(crate) static JWKS_FETCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "jwks_fetches_total",
            "Fetches of the JWKS URL by reason (start, refresh, unknown_kid) and outcome (ok, error)",
        ),
        &["reason", "outcome"],
    )
    .expect("valid metric")
});

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The HTTP metrics, and those the keyring and the store keep for the whole process.
    pub fn new() -> Self {
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
        let metrics = Metrics {
            registry,
            requests,
            latency,
        };
        metrics.register(metrics.requests.clone());
        metrics.register(metrics.latency.clone());
        metrics.register(JWKS_FETCHES.clone());
        for collector in aimc_keyring::metrics::collectors()
            .into_iter()
            .chain(aimc_store::metrics::collectors())
        {
            metrics.register_boxed(collector);
        }
        metrics
    }

    /// Adds metrics kept elsewhere (a database pool's gauges, read at each scrape).
    pub fn register<C: Collector + 'static>(&self, collector: C) {
        self.register_boxed(Box::new(collector));
    }

    fn register_boxed(&self, collector: Box<dyn Collector>) {
        // Every name is fixed in code, so a clash is a bug to see at once in any test.
        self.registry
            .register(collector)
            .expect("each metric is registered once");
    }

    /// Counts a request under its route template; a request no route answered counts as
    /// `other`.
    pub fn observe(&self, route: Option<&str>, method: &str, status: u16, seconds: f64) {
        let route = route.unwrap_or("other");
        let method = match method {
            "_OTHER" => "other",
            method => method,
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
