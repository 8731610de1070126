//! Family B (seed 001, the Flashback API): a workspace's named LLM provider configurations.
//! `POST /ai/llm`, `GET /ai/llm`, `PUT /ai/llm/{id}`, `DELETE /ai/llm/{id}`. Bodies are
//! `{success, aiLlmId, message}` and failures `{success: false, message}`, as Flashback has them.
//!
//! Each configuration is a credential with a stream of its own, so writers of different
//! configurations never wait for one another however many the workspace holds.

pub(crate) mod dto;
mod error;

use std::sync::Arc;

use aimc_domain::{
    ConfigId, CredentialChange, CredentialCommand, CredentialName, NameChoice, NewCredential,
    Owner, Provider,
};
use aimc_store::CredentialRow;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;

use self::dto::{AiLlm, AiLlmResponse, CreateRequest, Envelope, UpdateRequest};
use crate::auth::Role;
use crate::caller::{Caller, CallerByBody};
use crate::credential_test::test_credential;
use crate::idempotency::IdempotencyKey;
use crate::plain_key;
use crate::problem::{Acting, ApiError, Listing, Only, Refused, Validating};
use crate::provider_catalogue::{seed_001_named, SEED_001_AI_TYPES};
use crate::request_body::Checked;
use crate::state::AppState;
use crate::tags::ApiTags;

type Answer<S> = Result<Only<AiLlmResponse, S>, Refused<AiLlmResponse>>;

fn parse_ai_type(raw: &str) -> Result<Provider, ApiError> {
    seed_001_named(raw).ok_or_else(|| {
        ApiError::invalid_field("aiType", format!("must be one of {SEED_001_AI_TYPES}"))
    })
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

/// A workspace-wide configuration the caller may act on. Ids of other tenants'
/// configurations answer 404, exactly like ids that do not exist.
async fn find(
    state: &AppState,
    caller: &Caller,
    id: &str,
    at_least: Role,
) -> Result<CredentialRow, ApiError> {
    let credential = id.parse().map_err(|_| error::not_found())?;
    let row = state
        .credentials
        .by_id(credential)
        .await?
        .filter(|row| row.home.owner.owner == Owner::Workspace)
        .filter(|row| {
            caller
                .principal
                .workspaces
                .contains_key(row.home.owner.workspace.as_str())
        })
        .ok_or_else(error::not_found)?;
    caller.workspace_named(Some(row.home.owner.workspace.as_str()), at_least)?;
    Ok(row)
}

pub struct AiLlmApi;

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
        state: Data<&Arc<AppState>>,
        /// Makes a retry safe: a write sent again with the same key and the same request is
        /// answered as the first time and changes nothing more (kept 24 hours).
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKey>>,
        caller: CallerByBody,
        body: Json<Checked<CreateRequest>>,
    ) -> Answer<Validating> {
        let Checked(body) = body.0;
        let (workspace, _) = caller
            .0
            .workspace_named(Some(&body.workspace_id), Role::Admin)?;
        let credential = NewCredential {
            name: NameChoice::Given(parse_name(&body.name)?),
            provider: parse_ai_type(body.ai_type.as_str())?,
            endpoint: Some(parse_endpoint(&body.endpoint)?),
            secret: plain_key::parse("secret", &body.secret)?,
            access_key: body
                .key
                .filter(|key| !key.trim().is_empty())
                .map(|key| plain_key::parse("key", &key))
                .transpose()?,
        };
        let owner = ConfigId::new(workspace, Owner::Workspace);
        let (id, _) = state
            .commands
            .add_credential(&owner, credential, &caller.0.metadata())
            .await
            .map_err(error::command)?;
        Ok(Only::new(AiLlmResponse::Ok(Envelope::done(
            id,
            "AI LLM configuration created successfully",
        ))))
    }

    /// List AI LLM configurations
    ///
    /// The workspace's configurations, newest first, credentials masked. Needs the viewer role.
    #[oai(path = "/", method = "get", operation_id = "listAiLlms")]
    #[tracing::instrument(skip_all)]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        caller: CallerByBody,
        /// The workspace; defaults to the token's only workspace.
        #[oai(name = "workspaceId")]
        workspace_id: Query<Option<String>>,
    ) -> Answer<Listing> {
        listing(&state, &caller.0, workspace_id.0.as_deref(), false).await
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
        state: Data<&Arc<AppState>>,
        caller: CallerByBody,
        /// The workspace; defaults to the token's only workspace.
        #[oai(name = "workspaceId")]
        workspace_id: Query<Option<String>>,
    ) -> Answer<Listing> {
        listing(&state, &caller.0, workspace_id.0.as_deref(), true).await
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
        state: Data<&Arc<AppState>>,
        /// Makes a retry safe: a write sent again with the same key and the same request is
        /// answered as the first time and changes nothing more (kept 24 hours).
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKey>>,
        caller: CallerByBody,
        /// The configuration's id (`aiLlmId`).
        id: Path<String>,
    ) -> Answer<Acting> {
        let row = find(&state, &caller.0, &id.0, Role::Admin).await?;
        let outcome = test_credential(&state, &caller.0, &row).await?;
        let message = if outcome.ok {
            format!(
                "AI LLM configuration validated successfully: {}",
                outcome.reason
            )
        } else {
            format!("Validation failed: {}", outcome.reason)
        };
        Ok(Only::new(AiLlmResponse::Ok(Json(Envelope {
            success: outcome.ok,
            ai_llm_id: None,
            message: Some(message),
            ai_llms: None,
        }))))
    }

    /// Update AI LLM configuration
    ///
    /// Changes any of name, aiType, endpoint, key and secret. Needs the admin role.
    #[oai(path = "/:id", method = "put", operation_id = "updateAiLlm")]
    #[tracing::instrument(skip_all)]
    async fn update(
        &self,
        state: Data<&Arc<AppState>>,
        /// Makes a retry safe: a write sent again with the same key and the same request is
        /// answered as the first time and changes nothing more (kept 24 hours).
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKey>>,
        caller: CallerByBody,
        /// The configuration's id (`aiLlmId`).
        id: Path<String>,
        body: Json<Checked<UpdateRequest>>,
    ) -> Answer<Acting> {
        let row = find(&state, &caller.0, &id.0, Role::Admin).await?;
        let Checked(body) = body.0;
        let change = CredentialChange {
            name: body.name.as_deref().map(parse_name).transpose()?,
            provider: body
                .ai_type
                .as_ref()
                .map(|ai_type| parse_ai_type(ai_type.as_str()))
                .transpose()?,
            endpoint: body
                .endpoint
                .as_deref()
                .map(parse_endpoint)
                .transpose()?
                .map(Some),
            secret: body
                .secret
                .map(|secret| plain_key::parse("secret", &secret))
                .transpose()?,
            access_key: body
                .key
                .map(|key| plain_key::parse("key", &key))
                .transpose()?,
        };
        // The stored secret must not be sent to a host its owner did not choose.
        if let Some(Some(new_endpoint)) = &change.endpoint {
            if change.secret.is_none()
                && host_of(Some(new_endpoint)) != host_of(row.endpoint.as_deref())
            {
                return Err(ApiError::invalid_field(
                    "secret",
                    "send the secret again when moving the endpoint to another host",
                )
                .into());
            }
        }
        let command = CredentialCommand::Change {
            credential_id: row.id(),
            change,
        };
        state
            .commands
            .execute_on_credential(&row.home, command, &caller.0.metadata())
            .await
            .map_err(error::command)?;
        Ok(Only::new(AiLlmResponse::Ok(Envelope::done(
            row.id(),
            "AI LLM configuration updated successfully",
        ))))
    }

    /// Delete AI LLM configuration
    ///
    /// Removes the configuration and its encrypted credentials from the current state (the
    /// history keeps that it existed). Needs the admin role.
    #[oai(path = "/:id", method = "delete", operation_id = "deleteAiLlm")]
    #[tracing::instrument(skip_all)]
    async fn delete(
        &self,
        state: Data<&Arc<AppState>>,
        /// Makes a retry safe: a write sent again with the same key and the same request is
        /// answered as the first time and changes nothing more (kept 24 hours).
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKey>>,
        caller: CallerByBody,
        /// The configuration's id (`aiLlmId`).
        id: Path<String>,
    ) -> Answer<Acting> {
        let row = find(&state, &caller.0, &id.0, Role::Admin).await?;
        let command = CredentialCommand::Remove {
            credential_id: row.id(),
        };
        state
            .commands
            .execute_on_credential(&row.home, command, &caller.0.metadata())
            .await
            .map_err(error::command)?;
        Ok(Only::new(AiLlmResponse::Ok(Json(Envelope {
            success: true,
            ai_llm_id: None,
            message: Some("AI LLM configuration deleted successfully".into()),
            ai_llms: None,
        }))))
    }
}

/// The workspace's configurations, newest first; with `validated_only`, the available ones.
async fn listing(
    state: &AppState,
    caller: &Caller,
    workspace: Option<&str>,
    validated_only: bool,
) -> Answer<Listing> {
    let (workspace, _) = caller.workspace_named(workspace, Role::Viewer)?;
    let owner = ConfigId::new(workspace, Owner::Workspace);
    let rows = state.credentials.of_owner(&owner, validated_only).await?;
    Ok(Only::new(AiLlmResponse::Ok(Json(Envelope {
        success: true,
        ai_llm_id: None,
        message: None,
        ai_llms: Some(rows.into_iter().map(AiLlm::from).collect()),
    }))))
}
