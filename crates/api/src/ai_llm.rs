//! Family B (seed 001, the Flashback API): a workspace's named LLM provider configurations.
//! `POST /ai/llm`, `GET /ai/llm`, `PUT /ai/llm/{id}`, `DELETE /ai/llm/{id}`. Bodies are
//! `{success, aiLlmId, message}` and failures `{success: false, message}`, as Flashback has them.

use std::sync::Arc;

use aimc_domain::{
    AggregateId, AiModelConfigCommand, CredentialId, CredentialName, Owner, Provider, WorkspaceId,
};
use aimc_store::CredentialRow;
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use crate::auth::{BearerAuth, Principal, Role};
use crate::credentials::{add_credential, parse_plain_key, NewCredential};
use crate::problem::ApiError;
use crate::request_body::Checked;
use crate::request_context::RequestContext;
use crate::state::AppState;
use crate::{command_metadata, ApiTags};

/// Create an AI LLM configuration.
#[derive(Object, Deserialize)]
#[oai(rename = "CreateAiLlmRequest", deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Human-readable name, unique within the workspace (case-insensitive), 1–100 characters.
    #[oai(validator(max_length = 100))]
    pub name: String,
    /// OPENAI, GOOGLE, ANTHROPIC, AWS or OTHER.
    #[oai(rename = "aiType")]
    #[serde(rename = "aiType")]
    pub ai_type: String,
    /// The provider's API endpoint, an http(s) URL.
    #[oai(validator(max_length = 2048))]
    pub endpoint: String,
    /// Access key (optional, provider-dependent, e.g. an AWS access key id). Stored encrypted.
    #[oai(validator(max_length = 4096))]
    #[serde(default)]
    pub key: Option<String>,
    /// Secret key or API secret. Stored encrypted, never returned.
    #[oai(validator(max_length = 4096))]
    pub secret: String,
    /// The workspace this configuration belongs to.
    #[oai(rename = "workspaceId")]
    #[serde(rename = "workspaceId")]
    pub workspace_id: String,
}

/// Change an AI LLM configuration; fields left out stay as they are.
#[derive(Object, Deserialize)]
#[oai(rename = "UpdateAiLlmRequest", deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[oai(validator(max_length = 100))]
    #[serde(default)]
    pub name: Option<String>,
    #[oai(rename = "aiType")]
    #[serde(rename = "aiType", default)]
    pub ai_type: Option<String>,
    #[oai(validator(max_length = 2048))]
    #[serde(default)]
    pub endpoint: Option<String>,
    #[oai(validator(max_length = 4096))]
    #[serde(default)]
    pub key: Option<String>,
    #[oai(validator(max_length = 4096))]
    #[serde(default)]
    pub secret: Option<String>,
}

/// An AI LLM configuration as listed: credentials only masked, the secret never.
#[derive(Debug, Object)]
#[oai(rename = "AiLlm")]
pub struct AiLlm {
    pub id: String,
    /// Organisations are not modelled; always null.
    #[oai(rename = "orgId")]
    pub org_id: Option<String>,
    #[oai(rename = "workspaceId")]
    pub workspace_id: String,
    /// Who created it.
    #[oai(rename = "userId")]
    pub user_id: Option<String>,
    pub name: String,
    #[oai(rename = "aiType")]
    pub ai_type: String,
    pub endpoint: Option<String>,
    /// The access key, masked (`AKI...MPLE`), or null.
    pub key: Option<String>,
    #[oai(rename = "createdAt")]
    pub created_at: DateTime<Utc>,
}

/// Flashback's response envelope.
#[derive(Debug, Object)]
#[oai(rename = "AiLlmResult")]
pub struct Envelope {
    pub success: bool,
    #[oai(rename = "aiLlmId", skip_serializing_if_is_none)]
    pub ai_llm_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub message: Option<String>,
    #[oai(rename = "aiLlms", skip_serializing_if_is_none)]
    pub ai_llms: Option<Vec<AiLlm>>,
}

impl Envelope {
    fn failure(message: impl Into<String>) -> Json<Envelope> {
        Json(Envelope {
            success: false,
            ai_llm_id: None,
            message: Some(message.into()),
            ai_llms: None,
        })
    }

    fn done(id: CredentialId, message: &str) -> Json<Envelope> {
        Json(Envelope {
            success: true,
            ai_llm_id: Some(id.to_string()),
            message: Some(message.into()),
            ai_llms: None,
        })
    }
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum AiLlmResponse {
    /// Done.
    #[oai(status = 200)]
    Ok(Json<Envelope>),
    /// Validation error or invalid parameters.
    #[oai(status = 400)]
    BadRequest(Json<Envelope>),
    /// No valid bearer token (problem details, as on every family).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<crate::problem::Problem>),
    /// Insufficient permissions.
    #[oai(status = 403)]
    Forbidden(Json<Envelope>),
    /// No such configuration in a workspace of the caller's.
    #[oai(status = 404)]
    NotFound(Json<Envelope>),
    /// Unexpected failure.
    #[oai(status = 500)]
    Internal(Json<Envelope>),
    /// Vault or the database is unavailable; retry after the given seconds.
    #[oai(status = 503)]
    Unavailable(Json<Envelope>, #[oai(header = "Retry-After")] u32),
}

fn bad_request(error: poem::Error) -> AiLlmResponse {
    let reason = match error.downcast_ref::<poem_openapi::error::ParseRequestPayloadError>() {
        Some(payload) => payload.reason.clone(),
        None => error.to_string(),
    };
    AiLlmResponse::BadRequest(Envelope::failure(reason))
}

impl From<ApiError> for AiLlmResponse {
    fn from(error: ApiError) -> Self {
        let message = Envelope::failure(error.detail());
        match error {
            ApiError::BadRequest(_) | ApiError::PayloadTooLarge(_) | ApiError::Conflict(_) => {
                AiLlmResponse::BadRequest(message)
            }
            ApiError::Unauthorized(problem, _) => AiLlmResponse::Unauthorized(problem),
            ApiError::Forbidden(_) => AiLlmResponse::Forbidden(message),
            ApiError::NotFound(_) => AiLlmResponse::NotFound(message),
            ApiError::Internal(_) => AiLlmResponse::Internal(message),
            ApiError::Unavailable(_, retry_after) => {
                AiLlmResponse::Unavailable(message, retry_after)
            }
        }
    }
}

const AI_TYPES: &str = "OPENAI, GOOGLE, ANTHROPIC, AWS, OTHER";

fn parse_ai_type(raw: &str) -> Result<Provider, ApiError> {
    match raw.trim().to_ascii_uppercase().as_str() {
        "OPENAI" => Ok(Provider::Openai),
        "GOOGLE" => Ok(Provider::Google),
        "ANTHROPIC" => Ok(Provider::Anthropic),
        "AWS" => Ok(Provider::Aws),
        "OTHER" => Ok(Provider::Other),
        _ => Err(ApiError::invalid_field(
            "aiType",
            format!("must be one of {AI_TYPES}"),
        )),
    }
}

fn ai_type_of(provider: &str) -> &'static str {
    match provider {
        "openai" => "OPENAI",
        "google" => "GOOGLE",
        "anthropic" => "ANTHROPIC",
        "aws" => "AWS",
        _ => "OTHER",
    }
}

fn parse_endpoint(raw: &str) -> Result<String, ApiError> {
    if raw.len() > 2048 {
        return Err(ApiError::invalid_field(
            "endpoint",
            "must be at most 2048 characters",
        ));
    }
    let url = url::Url::parse(raw.trim())
        .map_err(|_| ApiError::invalid_field("endpoint", "must be an http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid_field(
            "endpoint",
            "must be an http(s) URL",
        ));
    }
    // Endpoints are shown and audited in plain text: credentials belong in key and secret.
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(ApiError::invalid_field(
            "endpoint",
            "must not carry credentials, a query string or a fragment",
        ));
    }
    Ok(url.to_string())
}

fn host_of(endpoint: Option<&str>) -> Option<String> {
    endpoint
        .and_then(|endpoint| url::Url::parse(endpoint).ok())
        .and_then(|url| url.host_str().map(str::to_owned))
}

fn parse_name(raw: &str) -> Result<CredentialName, ApiError> {
    CredentialName::parse(raw).map_err(|error| ApiError::invalid_value("name", error))
}

fn name_taken(name: &CredentialName) -> ApiError {
    ApiError::invalid_field(
        "name",
        format!(
            "a configuration named \"{}\" already exists in this workspace",
            name.as_str()
        ),
    )
}

impl From<CredentialRow> for AiLlm {
    fn from(row: CredentialRow) -> Self {
        AiLlm {
            id: row.credential_id.to_string(),
            org_id: None,
            ai_type: ai_type_of(&row.provider).to_owned(),
            workspace_id: row.workspace_id,
            user_id: row.created_by,
            name: row.name,
            endpoint: row.endpoint,
            key: row.access_key_hint,
            created_at: row.created_at,
        }
    }
}

pub struct AiLlmApi;

impl AiLlmApi {
    /// A workspace-wide credential the caller may act on. Ids of other tenants' credentials
    /// answer 404, exactly like ids that do not exist.
    async fn find(
        state: &AppState,
        principal: &Principal,
        id: &str,
        at_least: Role,
    ) -> Result<(WorkspaceId, CredentialRow), ApiError> {
        let not_found = || ApiError::not_found("no AI LLM configuration with this id");
        let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
        let row = state
            .credentials
            .by_id(CredentialId(id))
            .await?
            .ok_or_else(not_found)?;
        if row.owner != Owner::Workspace.to_string()
            || !principal.workspaces.contains_key(&row.workspace_id)
        {
            return Err(not_found());
        }
        let (workspace, _) = principal.workspace(Some(&row.workspace_id), at_least)?;
        Ok((workspace, row))
    }

    async fn create_configuration(
        state: &AppState,
        principal: &Principal,
        context: &RequestContext,
        body: CreateRequest,
    ) -> Result<AiLlmResponse, ApiError> {
        let (workspace, _) = principal.workspace(Some(&body.workspace_id), Role::Admin)?;
        let name = parse_name(&body.name)?;
        let provider = parse_ai_type(&body.ai_type)?;
        let endpoint = parse_endpoint(&body.endpoint)?;
        let secret = parse_plain_key("secret", &body.secret)?;
        let access_key = body
            .key
            .filter(|key| !key.trim().is_empty())
            .map(|key| parse_plain_key("key", &key))
            .transpose()?;
        let aggregate = AggregateId::new(workspace, Owner::Workspace);
        let number = Some(state.credentials.next_number().await?);
        let credential = NewCredential {
            name,
            name_is_generated: false,
            provider,
            endpoint: Some(endpoint),
            access_key,
            secret,
            number,
        };
        let credential_id =
            add_credential(state, principal, context, &aggregate, credential).await?;
        Ok(AiLlmResponse::Ok(Envelope::done(
            credential_id,
            "AI LLM configuration created successfully",
        )))
    }

    async fn update_configuration(
        state: &AppState,
        principal: &Principal,
        context: &RequestContext,
        id: &str,
        body: UpdateRequest,
    ) -> Result<AiLlmResponse, ApiError> {
        let (workspace, row) = Self::find(state, principal, id, Role::Admin).await?;
        let credential_id = CredentialId(row.credential_id);
        let name = body.name.as_deref().map(parse_name).transpose()?;
        let provider = body.ai_type.as_deref().map(parse_ai_type).transpose()?;
        let endpoint = body.endpoint.as_deref().map(parse_endpoint).transpose()?;
        let secret = body
            .secret
            .map(|secret| parse_plain_key("secret", &secret))
            .transpose()?;
        let access_key = body
            .key
            .map(|key| parse_plain_key("key", &key))
            .transpose()?;
        // The stored secret must not be sent to a host its owner did not choose.
        if let Some(new_endpoint) = &endpoint {
            if secret.is_none() && host_of(Some(new_endpoint)) != host_of(row.endpoint.as_deref()) {
                return Err(ApiError::invalid_field(
                    "secret",
                    "send the secret again when moving the endpoint to another host",
                ));
            }
        }
        let old_key = row.name.to_lowercase();
        let renamed = name.as_ref().filter(|name| name.key() != old_key);
        if let Some(name) = renamed {
            if !state
                .credentials
                .claim_name(&workspace, name, credential_id)
                .await?
            {
                return Err(name_taken(name));
            }
        }
        let command = AiModelConfigCommand::ChangeCredential {
            credential_id,
            name: name.clone(),
            provider,
            endpoint: endpoint.map(Some),
            access_key,
            secret,
        };
        let aggregate = AggregateId::new(workspace.clone(), Owner::Workspace);
        let outcome = state
            .commands
            .execute(&aggregate, command, &command_metadata(principal, context))
            .await;
        match (outcome, renamed) {
            (Ok(_), Some(_)) => {
                state
                    .credentials
                    .release_name(&workspace, &old_key, credential_id)
                    .await?
            }
            (Err(error), Some(name)) => {
                if error.appended_nothing() {
                    state
                        .credentials
                        .release_name(&workspace, &name.key(), credential_id)
                        .await?;
                }
                return Err(error.into());
            }
            (Err(error), None) => return Err(error.into()),
            (Ok(_), None) => {}
        }
        Ok(AiLlmResponse::Ok(Envelope::done(
            credential_id,
            "AI LLM configuration updated successfully",
        )))
    }

    async fn validate_configuration(
        state: &AppState,
        principal: &Principal,
        context: &RequestContext,
        id: &str,
    ) -> Result<AiLlmResponse, ApiError> {
        let (workspace, row) = Self::find(state, principal, id, Role::Admin).await?;
        let aggregate = AggregateId::new(workspace, Owner::Workspace);
        let outcome = crate::credentials::test_credential(
            state,
            principal,
            context,
            &aggregate,
            CredentialId(row.credential_id),
        )
        .await?;
        let message = if outcome.ok {
            format!(
                "AI LLM configuration validated successfully: {}",
                outcome.reason
            )
        } else {
            format!("Validation failed: {}", outcome.reason)
        };
        Ok(AiLlmResponse::Ok(Json(Envelope {
            success: outcome.ok,
            ai_llm_id: None,
            message: Some(message),
            ai_llms: None,
        })))
    }

    /// The workspace's configurations, newest first; with `validated_only`, the available ones.
    async fn listing(
        state: &AppState,
        principal: &Principal,
        workspace: Option<&str>,
        validated_only: bool,
    ) -> Result<AiLlmResponse, ApiError> {
        let (workspace, _) = principal.workspace(workspace, Role::Viewer)?;
        let owner = Owner::Workspace.to_string();
        let rows = state
            .credentials
            .of_owner(&workspace, &owner, validated_only)
            .await?;
        Ok(AiLlmResponse::Ok(Json(Envelope {
            success: true,
            ai_llm_id: None,
            message: None,
            ai_llms: Some(rows.into_iter().map(AiLlm::from).collect()),
        })))
    }

    async fn delete_configuration(
        state: &AppState,
        principal: &Principal,
        context: &RequestContext,
        id: &str,
    ) -> Result<AiLlmResponse, ApiError> {
        let (workspace, row) = Self::find(state, principal, id, Role::Admin).await?;
        let credential_id = CredentialId(row.credential_id);
        let aggregate = AggregateId::new(workspace.clone(), Owner::Workspace);
        let command = AiModelConfigCommand::RemoveCredential { credential_id };
        state
            .commands
            .execute(&aggregate, command, &command_metadata(principal, context))
            .await?;
        state
            .credentials
            .release_name(&workspace, &row.name.to_lowercase(), credential_id)
            .await?;
        Ok(AiLlmResponse::Ok(Json(Envelope {
            success: true,
            ai_llm_id: None,
            message: Some("AI LLM configuration deleted successfully".into()),
            ai_llms: None,
        })))
    }
}

#[OpenApi(prefix_path = "/ai/llm", tag = "ApiTags::AiLlm")]
impl AiLlmApi {
    /// Create AI LLM configuration
    ///
    /// Stores a named provider configuration for the workspace. The key and secret are
    /// encrypted before storage and never returned. Needs the admin role.
    #[oai(path = "/", method = "post", operation_id = "createAiLlm")]
    #[tracing::instrument(skip_all)]
    async fn create(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        body: Json<Checked<CreateRequest>>,
    ) -> AiLlmResponse {
        Self::create_configuration(&state, &auth.0, &context, body.0 .0)
            .await
            .unwrap_or_else(Into::into)
    }

    /// List AI LLM configurations
    ///
    /// The workspace's configurations, newest first, credentials masked. Needs the viewer role.
    #[oai(path = "/", method = "get", operation_id = "listAiLlms")]
    #[tracing::instrument(skip_all)]
    async fn list(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// The workspace; defaults to the token's only workspace.
        #[oai(name = "workspaceId")]
        workspace_id: Query<Option<String>>,
    ) -> AiLlmResponse {
        Self::listing(&state, &auth.0, workspace_id.0.as_deref(), false)
            .await
            .unwrap_or_else(Into::into)
    }

    /// List validated AI LLM configurations
    ///
    /// Only configurations whose last validation succeeded, newest first. Needs the viewer role.
    #[oai(
        path = "/available",
        method = "get",
        operation_id = "listAvailableAiLlms"
    )]
    #[tracing::instrument(skip_all)]
    async fn available(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// The workspace; defaults to the token's only workspace.
        #[oai(name = "workspaceId")]
        workspace_id: Query<Option<String>>,
    ) -> AiLlmResponse {
        Self::listing(&state, &auth.0, workspace_id.0.as_deref(), true)
            .await
            .unwrap_or_else(Into::into)
    }

    /// Validate AI LLM configuration
    ///
    /// Calls the provider's model list with the stored credentials (10 s timeout, no
    /// redirects, private addresses refused unless allowed) and records the outcome. A failed
    /// check is still a 200, with `success: false` and the provider's status in `message`.
    /// Needs the admin role.
    #[oai(
        path = "/:id/validate",
        method = "post",
        operation_id = "validateAiLlm"
    )]
    #[tracing::instrument(skip_all)]
    async fn validate(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        /// The configuration's id (`aiLlmId`).
        id: Path<String>,
    ) -> AiLlmResponse {
        Self::validate_configuration(&state, &auth.0, &context, &id.0)
            .await
            .unwrap_or_else(Into::into)
    }

    /// Update AI LLM configuration
    ///
    /// Changes any of name, aiType, endpoint, key and secret. Needs the admin role.
    #[oai(path = "/:id", method = "put", operation_id = "updateAiLlm")]
    #[tracing::instrument(skip_all)]
    async fn update(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        /// The configuration's id (`aiLlmId`).
        id: Path<String>,
        body: Json<Checked<UpdateRequest>>,
    ) -> AiLlmResponse {
        Self::update_configuration(&state, &auth.0, &context, &id.0, body.0 .0)
            .await
            .unwrap_or_else(Into::into)
    }

    /// Delete AI LLM configuration
    ///
    /// Removes the configuration and its encrypted credentials from the current state (the
    /// history keeps that it existed). Needs the admin role.
    #[oai(path = "/:id", method = "delete", operation_id = "deleteAiLlm")]
    #[tracing::instrument(skip_all)]
    async fn delete(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        /// The configuration's id (`aiLlmId`).
        id: Path<String>,
    ) -> AiLlmResponse {
        Self::delete_configuration(&state, &auth.0, &context, &id.0)
            .await
            .unwrap_or_else(Into::into)
    }
}
