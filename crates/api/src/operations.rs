//! Liveness and readiness, for load balancers and orchestrators; no authentication.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::state::AppState;
use crate::tags::ApiTags;

#[derive(Debug, Object)]
#[oai(example)]
pub struct Health {
    /// `ok`, `ready`, `degraded` or `unavailable`.
    pub status: String,
    /// Per dependency: `ok` or `unavailable`.
    #[oai(skip_serializing_if_is_none)]
    pub checks: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// The process is up.
    #[oai(status = 200)]
    Ok(Json<Health>),
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// Postgres answers; `status` is `ready`, or `degraded` when the keyring does not.
    #[oai(status = 200)]
    Ready(Json<Health>),
    /// Postgres does not answer.
    #[oai(status = 503)]
    Unavailable(Json<Health>, #[oai(header = "Retry-After")] u32),
}

pub struct OperationsApi;

#[OpenApi(tag = "ApiTags::Operations")]
impl OperationsApi {
    /// Liveness
    ///
    /// Answers while the process runs, whatever its dependencies do.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> HealthResponse {
        HealthResponse::Ok(Json(Health {
            status: "ok".into(),
            checks: None,
        }))
    }

    /// Readiness
    ///
    /// Checks Postgres and the keyring (Vault). Without Postgres nothing can be served: 503.
    /// Without Vault, reads and key-less writes still work, so the replica stays in rotation
    /// and reports `degraded`; taking every replica out because Vault is down would stop the
    /// reads too. The causes are in the log, not here: this endpoint needs no token.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&Arc<AppState>>) -> ReadyResponse {
        // Its own short deadline: an orchestrator's probe gives up after a second or so, and a
        // hung dependency must read as "unavailable", not as a probe that never answers.
        let deadline = tokio::time::Instant::now() + state.limits.readiness;
        let (database, keyring) = aimc_domain::deadline::within(deadline, async {
            tokio::join!(state.queries.ping(), state.keyring.check())
        })
        .await;
        let word = |ok: bool| {
            if ok {
                "ok".to_owned()
            } else {
                "unavailable".to_owned()
            }
        };
        if let Err(error) = &database {
            tracing::warn!(%error, "readiness: database unavailable");
        }
        if let Err(error) = &keyring {
            tracing::warn!(%error, "readiness: keyring unavailable");
        }
        let checks = std::collections::BTreeMap::from([
            ("database".to_owned(), word(database.is_ok())),
            ("keyring".to_owned(), word(keyring.is_ok())),
        ]);
        if database.is_ok() {
            let status = if keyring.is_ok() { "ready" } else { "degraded" };
            ReadyResponse::Ready(Json(Health {
                status: status.into(),
                checks: Some(checks),
            }))
        } else {
            ReadyResponse::Unavailable(
                Json(Health {
                    status: "unavailable".into(),
                    checks: Some(checks),
                }),
                crate::problem::RETRY_AFTER_SECONDS,
            )
        }
    }
}

impl poem_openapi::types::Example for Health {
    fn example() -> Self {
        Health {
            status: "ready".into(),
            checks: Some(
                [("database", "ok"), ("keyring", "ok")]
                    .map(|(name, state)| (name.to_owned(), state.to_owned()))
                    .into(),
            ),
        }
    }
}
