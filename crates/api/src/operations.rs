//! Liveness and readiness, for load balancers and orchestrators; no authentication.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::state::AppState;
use crate::ApiTags;

#[derive(Debug, Object)]
pub struct Health {
    /// `ok`, `ready` or `unavailable`.
    pub status: String,
    /// Per dependency: `ok` or why it is not.
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
    /// Postgres and the keyring answer.
    #[oai(status = 200)]
    Ready(Json<Health>),
    /// A dependency does not answer; `checks` says which.
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
        HealthResponse::Ok(Json(Health { status: "ok".into(), checks: None }))
    }

    /// Readiness
    ///
    /// Ready when Postgres and the keyring (Vault) both answer.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&Arc<AppState>>) -> ReadyResponse {
        let (database, keyring) = tokio::join!(state.queries.ping(), state.keyring.check());
        let mut checks = std::collections::BTreeMap::new();
        let ready = database.is_ok() && keyring.is_ok();
        checks.insert("database".to_owned(), database.map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()));
        checks.insert("keyring".to_owned(), keyring.map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()));
        if ready {
            ReadyResponse::Ready(Json(Health { status: "ready".into(), checks: Some(checks) }))
        } else {
            ReadyResponse::Unavailable(
                Json(Health { status: "unavailable".into(), checks: Some(checks) }),
                crate::problem::RETRY_AFTER_SECONDS,
            )
        }
    }
}
