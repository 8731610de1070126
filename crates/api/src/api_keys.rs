//! Family D (seed 003): a person's API keys, numbered. `POST /api/keys`, `GET /api/keys`,
//! `PUT /api/keys/{key_id}`, `DELETE /api/keys/{key_id}`.

use std::sync::Arc;

use aimc_domain::{AggregateId, AiModelConfigCommand, CredentialId, CredentialName, Provider};
use aimc_store::CredentialRow;
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use crate::auth::{BearerAuth, Role};
use crate::credentials::{add_credential, parse_plain_key, NewCredential};
use crate::problem::ApiError;
use crate::request_body::Checked;
use crate::request_context::RequestContext;
use crate::state::AppState;
use crate::{command_metadata, ApiTags};

#[derive(Object, Deserialize)]
#[oai(rename = "CreateApiKeyRequest", deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The service, e.g. `OPENAI` or `ANTHROPIC` (any capitalisation).
    #[oai(validator(max_length = 64))]
    pub service: String,
    /// The key. Stored encrypted; only its hint is ever shown.
    #[oai(validator(max_length = 4096))]
    pub api_key: String,
}

#[derive(Object, Deserialize)]
#[oai(rename = "UpdateApiKeyRequest", deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// The new key.
    #[oai(validator(max_length = 4096))]
    pub api_key: String,
}

#[derive(Debug, Object)]
#[oai(rename = "ApiKeyCreated")]
pub struct Created {
    pub id: i64,
    pub service: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(rename = "ApiKey")]
pub struct Listed {
    pub id: i64,
    pub service: String,
    /// The key masked to its first three and last four characters (`sk-...1234`).
    pub last_4_chars: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(rename = "ApiKeyUpdated")]
pub struct Updated {
    pub id: i64,
    pub service: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum CreateResponse {
    /// Stored.
    #[oai(status = 201)]
    Created(Json<Created>),
}

#[derive(ApiResponse)]
pub enum ListResponse {
    /// The caller's keys, newest first.
    #[oai(status = 200)]
    Ok(Json<Vec<Listed>>),
}

#[derive(ApiResponse)]
pub enum UpdateResponse {
    /// Replaced.
    #[oai(status = 200)]
    Ok(Json<Updated>),
}

#[derive(ApiResponse)]
pub enum DeleteResponse {
    /// Deleted.
    #[oai(status = 204)]
    NoContent,
}

fn service_of(provider: &str) -> String {
    provider.to_ascii_uppercase()
}

pub struct ApiKeysApi;

impl ApiKeysApi {
    /// One of the caller's own keys; anyone else's number answers 404 like a missing one.
    async fn find(
        state: &AppState,
        owner: &AggregateId,
        key_id: i64,
    ) -> Result<CredentialRow, ApiError> {
        state
            .credentials
            .by_number(key_id)
            .await?
            .filter(|row| row.aggregate_id == owner.to_string())
            .ok_or_else(|| ApiError::not_found(format!("no API key {key_id}")))
    }
}

#[OpenApi(prefix_path = "/api/keys", tag = "ApiTags::ApiKeys")]
impl ApiKeysApi {
    /// Add an API key
    ///
    /// Stores a key for a service, encrypted; answers with its integer id. Needs the member role.
    #[oai(path = "/", method = "post", operation_id = "createApiKey")]
    #[tracing::instrument(skip_all)]
    async fn create(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
        body: Json<Checked<CreateRequest>>,
    ) -> Result<CreateResponse, ApiError> {
        let owner = auth.0.own_config(workspace.0.as_deref(), Role::Member)?;
        let Checked(body) = body.0;
        let provider = Provider::parse(&body.service)
            .map_err(|error| ApiError::invalid_value("service", error))?;
        let secret = parse_plain_key("api_key", &body.api_key)?;
        let number = state.credentials.next_number().await?;
        let name = CredentialName::parse(&format!(
            "{} {} key #{number}",
            owner.owner,
            service_of(provider.as_str())
        ))
        .map_err(|error| ApiError::internal(format!("generated name refused: {error}")))?;
        let credential = NewCredential {
            name,
            name_is_generated: true,
            provider,
            endpoint: None,
            access_key: None,
            secret,
            number: Some(number),
        };
        add_credential(&state, &auth.0, &context, &owner, credential).await?;
        let row = Self::find(&state, &owner, number).await?;
        Ok(CreateResponse::Created(Json(Created {
            id: number,
            service: service_of(&row.provider),
            created_at: row.created_at,
        })))
    }

    /// List the caller's API keys
    ///
    /// Every key the caller stored, through any API family, masked. Needs the viewer role.
    #[oai(path = "/", method = "get", operation_id = "listApiKeys")]
    #[tracing::instrument(skip_all)]
    async fn list(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
    ) -> Result<ListResponse, ApiError> {
        let owner = auth.0.own_config(workspace.0.as_deref(), Role::Viewer)?;
        let rows = state
            .credentials
            .of_owner(&owner.workspace, &owner.owner.to_string(), false)
            .await?;
        Ok(ListResponse::Ok(Json(
            rows.into_iter()
                .filter_map(|row| {
                    Some(Listed {
                        id: row.number?,
                        service: service_of(&row.provider),
                        last_4_chars: row.hint,
                        created_at: row.created_at,
                    })
                })
                .collect(),
        )))
    }

    /// Replace an API key
    ///
    /// Needs the member role.
    #[oai(path = "/:key_id", method = "put", operation_id = "updateApiKey")]
    #[tracing::instrument(skip_all)]
    async fn update(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
        /// The key's integer id.
        key_id: Path<i64>,
        body: Json<Checked<UpdateRequest>>,
    ) -> Result<UpdateResponse, ApiError> {
        let owner = auth.0.own_config(workspace.0.as_deref(), Role::Member)?;
        let row = Self::find(&state, &owner, key_id.0).await?;
        let command = AiModelConfigCommand::ChangeCredential {
            credential_id: CredentialId(row.credential_id),
            name: None,
            provider: None,
            endpoint: None,
            access_key: None,
            secret: Some(parse_plain_key("api_key", &body.0 .0.api_key)?),
        };
        state
            .commands
            .execute(&owner, command, &command_metadata(&auth.0, &context))
            .await?;
        let row = Self::find(&state, &owner, key_id.0).await?;
        Ok(UpdateResponse::Ok(Json(Updated {
            id: key_id.0,
            service: service_of(&row.provider),
            updated_at: row.updated_at,
        })))
    }

    /// Delete an API key
    ///
    /// Needs the member role.
    #[oai(path = "/:key_id", method = "delete", operation_id = "deleteApiKey")]
    #[tracing::instrument(skip_all)]
    async fn delete(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
        /// The key's integer id.
        key_id: Path<i64>,
    ) -> Result<DeleteResponse, ApiError> {
        let owner = auth.0.own_config(workspace.0.as_deref(), Role::Member)?;
        let row = Self::find(&state, &owner, key_id.0).await?;
        let credential_id = CredentialId(row.credential_id);
        let command = AiModelConfigCommand::RemoveCredential { credential_id };
        state
            .commands
            .execute(&owner, command, &command_metadata(&auth.0, &context))
            .await?;
        state
            .credentials
            .release_name(&owner.workspace, &row.name.to_lowercase(), credential_id)
            .await?;
        Ok(DeleteResponse::NoContent)
    }
}
