//! Key rotation as an API operation for workspace owners: started here, run in the background
//! by the replica that was asked, followed from any replica.

use std::sync::Arc;

use aimc_store::{RotationRow, RotationStart};
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use crate::auth::Role;
use crate::caller::Caller;
use crate::idempotency::IdempotencyKey;
use crate::problem::{ApiError, Fails, Finding, Writing};
use crate::state::AppState;
use crate::tags::ApiTags;

/// A key rotation and how far it got.
#[derive(Debug, Object)]
#[oai(example)]
pub struct KeyRotation {
    #[oai(rename = "operationId")]
    pub operation_id: String,
    pub workspace: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Who asked for it.
    #[oai(rename = "requestedBy")]
    pub requested_by: String,
    /// The workspace's credentials, once counted.
    pub total: u32,
    /// Credentials gone through.
    pub done: u32,
    /// Credentials whose keys this rotation re-encrypted (the rest were under the new version
    /// already).
    pub rewrapped: u32,
    /// The oldest key version the stored keys were under.
    #[oai(rename = "fromVersion", skip_serializing_if_is_none)]
    pub from_version: Option<u32>,
    /// The key version every stored key is re-encrypted under; older versions are retired
    /// when the rotation succeeds.
    #[oai(rename = "toVersion", skip_serializing_if_is_none)]
    pub to_version: Option<u32>,
    /// Why it failed; starting a rotation again finishes the work.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    #[oai(rename = "startedAt")]
    pub started_at: DateTime<Utc>,
    /// The last progress the running process recorded.
    #[oai(rename = "updatedAt")]
    pub updated_at: DateTime<Utc>,
    #[oai(rename = "finishedAt", skip_serializing_if_is_none)]
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<RotationRow> for KeyRotation {
    fn from(row: RotationRow) -> Self {
        let count = |n: i32| u32::try_from(n).unwrap_or_default();
        KeyRotation {
            operation_id: row.operation_id.to_string(),
            workspace: row.workspace_id,
            status: row.status,
            requested_by: row.requested_by,
            total: count(row.total),
            done: count(row.done),
            rewrapped: count(row.rewrapped),
            from_version: row.from_version.map(count),
            to_version: row.to_version.map(count),
            error: row.error,
            started_at: row.started_at,
            updated_at: row.updated_at,
            finished_at: row.finished_at,
        }
    }
}

#[derive(ApiResponse)]
pub enum RotateResponse {
    /// Started; its progress is at `Location`.
    #[oai(status = 202)]
    Accepted(Json<KeyRotation>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum KeyRotationResponse {
    /// The rotation as it stands.
    #[oai(status = 200)]
    Ok(Json<KeyRotation>),
}

pub struct KeyRotationApi;

#[OpenApi(prefix_path = "/api/v1/keys/rotate", tag = "ApiTags::Encryption")]
impl KeyRotationApi {
    /// Rotate the workspace's encryption key
    ///
    /// Makes a new version of the workspace key and re-encrypts every stored key under it
    /// inside Vault (the keys never leave it), while the service keeps answering and writing;
    /// then retires the older versions, so nothing stored under them decrypts any more. Ids,
    /// names, hints and test results stay; the history records each re-encryption. Answers at
    /// once with the operation; 409 while another rotation of the workspace runs. Needs the
    /// owner role.
    #[oai(path = "/", method = "post", operation_id = "rotateKeys")]
    #[tracing::instrument(skip_all)]
    async fn rotate(
        &self,
        state: Data<&Arc<AppState>>,
        /// Makes a retry safe: a write sent again with the same key and the same request is
        /// answered as the first time and changes nothing more (kept 24 hours).
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKey>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
    ) -> Result<RotateResponse, Fails<Writing>> {
        let (workspace, _) = caller.workspace(Role::Owner)?;
        let operation = match state.rotations.start(&workspace, caller.sub()).await? {
            RotationStart::Started(operation) => operation,
            RotationStart::AlreadyRunning(operation) => {
                return Err(ApiError::conflict(format!(
                    "a rotation of this workspace is running: operation {operation}"
                ))
                .into())
            }
        };
        crate::rotation::spawn(
            state.0.clone(),
            workspace.clone(),
            operation,
            caller.metadata(),
        );
        let row = state
            .rotations
            .get(&workspace, operation)
            .await?
            .ok_or_else(|| ApiError::internal("a rotation just started is not recorded"))?;
        Ok(RotateResponse::Accepted(
            Json(row.into()),
            format!("/api/v1/keys/rotate/{operation}"),
        ))
    }

    /// Follow a key rotation
    ///
    /// Its progress, from any replica. A `running` rotation whose `updatedAt` stopped moving
    /// belongs to a process that stopped: starting a rotation again finishes its work. Needs
    /// the owner role.
    #[oai(
        path = "/:operation_id",
        method = "get",
        operation_id = "getKeyRotation"
    )]
    #[tracing::instrument(skip_all)]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        /// The `operationId` the rotation was started with.
        operation_id: Path<String>,
    ) -> Result<KeyRotationResponse, Fails<Finding>> {
        let (workspace, _) = caller.workspace(Role::Owner)?;
        let not_found = || ApiError::not_found("no such key rotation in this workspace");
        let operation = Uuid::parse_str(&operation_id.0).map_err(|_| not_found())?;
        let row = state
            .rotations
            .get(&workspace, operation)
            .await?
            .ok_or_else(not_found)?;
        Ok(KeyRotationResponse::Ok(Json(row.into())))
    }
}

impl poem_openapi::types::Example for KeyRotation {
    fn example() -> Self {
        KeyRotation {
            operation_id: "019ae2b4-5c1a-7f3e-9d2b-4a6c8e0f1b2d".into(),
            workspace: "acme".into(),
            status: "running".into(),
            requested_by: "olivia".into(),
            total: 3000,
            done: 1200,
            rewrapped: 1200,
            from_version: Some(1),
            to_version: Some(2),
            error: None,
            started_at: DateTime::from_timestamp(1_764_680_000, 0).unwrap_or_default(),
            updated_at: DateTime::from_timestamp(1_764_680_002, 0).unwrap_or_default(),
            finished_at: None,
        }
    }
}
