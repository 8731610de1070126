//! What the keyring tells Prometheus: how long Vault takes, by operation, and how its token is
//! kept alive. The service's registry adds the `aimc_` prefix.

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

pub(crate) static VAULT_REQUESTS: LazyLock<HistogramVec> = LazyLock::new(|| {
    HistogramVec::new(
        HistogramOpts::new(
            "vault_request_duration_seconds",
            "Vault requests by operation and outcome (ok, or error for any failure or status of 400 and up)",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]),
        &["operation", "outcome"],
    )
    .expect("valid metric")
});

/// Logins to Vault (AppRole, Kubernetes), at start and whenever the token is replaced.
pub(crate) static VAULT_LOGINS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "vault_logins_total",
            "Logins to Vault by method (approle, kubernetes) and outcome (ok, error)",
        ),
        &["method", "outcome"],
    )
    .expect("valid metric")
});

/// Renewals of the Vault token.
pub(crate) static VAULT_TOKEN_RENEWALS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "vault_token_renewals_total",
            "Renewals of the Vault token by outcome (ok, error)",
        ),
        &["outcome"],
    )
    .expect("valid metric")
});

/// The keyring's process-wide metrics, for the service's registry.
pub fn collectors() -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(VAULT_REQUESTS.clone()),
        Box::new(VAULT_LOGINS.clone()),
        Box::new(VAULT_TOKEN_RENEWALS.clone()),
    ]
}
