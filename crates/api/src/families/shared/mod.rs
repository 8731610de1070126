//! Endpoints every family shares: the client-side encryption key, credential names, the audit
//! history and task resolution.

mod resolve;

pub use resolve::ResolveApi;

use std::sync::Arc;

use aimc_domain::{ConfigEvent, CredentialName, Owner};
use aimc_store::HistoryFilter;
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::auth::Role;
use crate::caller::{Caller, CallerByBody};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::tags::ApiTags;

/// The public half of the workspace's RSA key: encrypt API keys with it (RSA-OAEP, SHA-256)
/// and send the standard base64 of the ciphertext as `apiKeyEncrypted`.
#[derive(Debug, Object)]
pub struct EncryptionKey {
    /// The key version; a ciphertext may name it as `vault:v<keyVersion>:<base64>`.
    #[oai(rename = "keyVersion")]
    pub key_version: u64,
    /// Always `RSA-OAEP-256`.
    pub algorithm: String,
    /// SubjectPublicKeyInfo PEM.
    pub pem: String,
    /// The same key as a JSON Web Key.
    pub jwk: serde_json::Value,
}

#[derive(ApiResponse)]
pub enum EncryptionKeyResponse {
    /// The workspace's current public key.
    #[oai(status = 200)]
    Ok(Json<EncryptionKey>),
}

/// One recorded change.
#[derive(Debug, Object)]
pub struct HistoryEvent {
    /// The stream the change was recorded in: a configuration's (`<workspace>/<owner>`), or a
    /// credential's with a stream of its own (`<workspace>/credentials/<id>`); `owner` says
    /// whose settings changed either way.
    #[oai(rename = "aggregateId")]
    pub aggregate_id: String,
    /// Position of the event in that stream.
    pub sequence: i64,
    /// `user:<sub>` or `workspace`.
    pub owner: String,
    /// The event type, e.g. `CredentialAdded`.
    #[oai(rename = "type")]
    pub event_type: String,
    /// The `sub` of whoever made the change.
    pub actor: Option<String>,
    #[oai(rename = "requestId")]
    pub request_id: Option<String>,
    #[oai(rename = "occurredAt")]
    pub occurred_at: DateTime<Utc>,
    /// The event's fields; keys appear only as their hint.
    pub details: serde_json::Value,
}

#[derive(Debug, Object)]
pub struct HistoryPageBody {
    /// Newest first.
    pub events: Vec<HistoryEvent>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(rename = "nextCursor", skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum HistoryResponse {
    /// A page of the workspace's history.
    #[oai(status = 200)]
    Ok(Json<HistoryPageBody>),
}

/// Whether a credential name is free in the workspace.
#[derive(Debug, Object)]
pub struct NameAvailability {
    pub name: String,
    /// False when a credential of any owner in the workspace has this name, in any case.
    pub available: bool,
}

#[derive(ApiResponse)]
pub enum NameAvailabilityResponse {
    /// The answer.
    #[oai(status = 200)]
    Ok(Json<NameAvailability>),
}

pub struct SharedApi;

#[OpenApi(prefix_path = "/api/v1")]
impl SharedApi {
    /// Get the workspace's public encryption key
    ///
    /// The RSA public key clients encrypt API keys with before sending them
    /// (`apiKeyEncrypted`). Needs the viewer role.
    #[oai(
        path = "/encryption-key",
        method = "get",
        operation_id = "getEncryptionKey",
        tag = "ApiTags::Encryption"
    )]
    #[tracing::instrument(skip_all)]
    async fn encryption_key(
        &self,
        state: Data<&Arc<AppState>>,
        /// The workspace; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        /// The workspace, as an alternative to the header.
        #[oai(name = "workspaceId")]
        workspace_id: Query<Option<String>>,
    ) -> Result<EncryptionKeyResponse, ApiError> {
        let (workspace, _) = caller.workspace_named(workspace_id.0.as_deref(), Role::Viewer)?;
        let key = state.keyring.client_key(&workspace).await?;
        Ok(EncryptionKeyResponse::Ok(Json(EncryptionKey {
            key_version: key.key_version,
            algorithm: aimc_keyring::ClientKey::ALGORITHM.to_owned(),
            pem: key.pem,
            jwk: key.jwk,
        })))
    }

    /// Check whether a credential name is available
    ///
    /// Credential names are unique per workspace, regardless of case and of who owns the
    /// credential. Answered from the name registry; a create can still lose a race for the name.
    /// Needs the viewer role.
    #[oai(
        path = "/names/available",
        method = "get",
        operation_id = "getNameAvailability",
        tag = "ApiTags::AiLlm"
    )]
    #[tracing::instrument(skip_all)]
    async fn name_available(
        &self,
        caller: CallerByBody,
        state: Data<&Arc<AppState>>,
        /// The workspace; defaults to the token's only workspace.
        #[oai(name = "workspaceId")]
        workspace_id: Query<Option<String>>,
        /// The name to check.
        name: Query<String>,
    ) -> Result<NameAvailabilityResponse, ApiError> {
        let (workspace, _) = caller
            .0
            .workspace_named(workspace_id.0.as_deref(), Role::Viewer)?;
        let name = CredentialName::parse(&name.0)
            .map_err(|error| ApiError::invalid_value("name", error))?;
        let available = state.credentials.name_available(&workspace, &name).await?;
        Ok(NameAvailabilityResponse::Ok(Json(NameAvailability {
            name: name.as_str().to_owned(),
            available,
        })))
    }

    /// List the workspace's history of changes
    ///
    /// Every recorded change, newest first, with who made it and when; keys appear only as
    /// hints. Admins and owners see the whole workspace; others see their own settings only.
    #[oai(
        path = "/history",
        method = "get",
        operation_id = "getHistory",
        tag = "ApiTags::Audit"
    )]
    #[tracing::instrument(skip_all)]
    #[allow(clippy::too_many_arguments)]
    async fn history(
        &self,
        state: Data<&Arc<AppState>>,
        /// The workspace; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        /// The workspace, as an alternative to the header.
        #[oai(name = "workspaceId")]
        workspace_id: Query<Option<String>>,
        /// Only changes to this owner's settings: `user:<sub>` or `workspace`.
        owner: Query<Option<String>>,
        /// Only these event types, comma-separated (e.g. `CredentialAdded,ModelRemoved`).
        #[oai(name = "type")]
        event_type: Query<Option<String>>,
        /// Only changes at or after this time (RFC 3339).
        since: Query<Option<DateTime<Utc>>>,
        /// Only changes before this time (RFC 3339).
        until: Query<Option<DateTime<Utc>>>,
        /// The `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Page size, 1 to 500; 50 when absent.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
    ) -> Result<HistoryResponse, ApiError> {
        let (workspace, role) = caller.workspace_named(workspace_id.0.as_deref(), Role::Viewer)?;
        let own = Owner::User(caller.sub().to_owned()).to_string();
        let owner = match owner.0 {
            Some(owner) if Owner::parse(&owner).is_none() => {
                return Err(ApiError::invalid_field(
                    "owner",
                    "must be user:<sub> or workspace",
                ))
            }
            Some(owner) if role < Role::Admin && owner != own => {
                return Err(ApiError::forbidden(
                    "only admins and owners may read other owners' history",
                ))
            }
            Some(owner) => Some(owner),
            None if role < Role::Admin => Some(own),
            None => None,
        };
        let event_types: Vec<String> = event_type
            .0
            .map(|raw| {
                raw.split(',')
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(unknown) = event_types
            .iter()
            .find(|t| !ConfigEvent::NAMES.contains(&t.as_str()))
        {
            return Err(ApiError::invalid_field(
                "type",
                format!(
                    "unknown event type \"{unknown}\"; known types: {}",
                    ConfigEvent::NAMES.join(", ")
                ),
            ));
        }
        let page = state
            .queries
            .history(&HistoryFilter {
                workspace: workspace.to_string(),
                owner,
                event_types,
                since: since.0,
                until: until.0,
                cursor: cursor.0,
                limit: limit.0.unwrap_or(50),
            })
            .await?;
        Ok(HistoryResponse::Ok(Json(HistoryPageBody {
            events: page
                .entries
                .into_iter()
                .map(|entry| HistoryEvent {
                    aggregate_id: entry.aggregate_id,
                    sequence: entry.sequence,
                    owner: entry.owner,
                    event_type: entry.event_type,
                    actor: entry.actor,
                    request_id: entry.request_id,
                    occurred_at: entry.occurred_at,
                    details: entry.details,
                })
                .collect(),
            next_cursor: page.next_cursor,
        })))
    }
}
