//! Family E (seed 004, FastAPI style): a workspace's provider keys and task assignments.
//! `GET /api/v1/settings/providers`, `POST /api/v1/settings/providers/{provider}`,
//! `POST /api/v1/settings/providers/{provider}/test`, `GET`/`POST /api/v1/settings/task-assignments`.
//! Errors are `{"detail": "..."}`, and 422 `{"detail": [{loc, msg, type}]}` for invalid bodies.
//!
//! The workspace's key for a provider is the one its configuration keeps (saving replaces
//! that one, decided by the configuration so two saves cannot both add one), else the newest
//! the workspace has for the provider.

pub(crate) mod dto;

use std::sync::Arc;

use aimc_domain::{
    AiModelConfig, ConfigCommand, Credential, DomainError, ModelName, Provider, TaskName,
};
use aimc_store::{CommandError, CredentialRow};
use poem::web::Data;
use poem_openapi::param::Header;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;
use secrecy::SecretString;

use self::dto::{
    unprocessable_field, AssignmentsResponse, ProviderResponse, ProviderStatus, ProviderTestResult,
    ProvidersResponse, SaveProviderRequest, TaskAssignment, TaskAssignments, TestResponse,
};
use crate::auth::Role;
use crate::caller::Caller;
use crate::credential_test::test_credential;
use crate::idempotency::IdempotencyKey;
use crate::problem::{Acting, ApiError, Listing, Only, Refused, Validating};
use crate::provider_catalogue::{seed_004_named, seed_004_spelling, SEED_004_PROVIDERS};
use crate::request_body::Checked;
use crate::spelling::{SettingsProvider, Spelled};
use crate::state::AppState;
use crate::tags::ApiTags;

fn parse_provider(raw: &str) -> Result<(&'static str, Provider), ApiError> {
    seed_004_named(raw).ok_or_else(|| ApiError::bad_request(format!("Invalid provider: {raw}")))
}

impl ProviderStatus {
    fn listed(name: &str, key: Option<&CredentialRow>) -> Self {
        ProviderStatus {
            provider: Spelled::new(name),
            is_configured: key.is_some(),
            is_active: key.is_some_and(|row| row.validated_ok != Some(false)),
            key_hint: key.map(|row| row.hint.as_str().to_owned()),
        }
    }

    fn saved(name: &str, key: Option<&Credential>) -> Self {
        ProviderStatus {
            provider: Spelled::new(name),
            is_configured: key.is_some(),
            is_active: key.is_some_and(Credential::is_usable),
            key_hint: key.map(|credential| credential.hint.as_str().to_owned()),
        }
    }
}

fn assignments_of(config: Option<&AiModelConfig>) -> TaskAssignments {
    TaskAssignments {
        assignments: config
            .map(|config| {
                config
                    .task_assignments
                    .iter()
                    .map(|(task, (provider, model))| TaskAssignment {
                        task: task.as_str().to_owned(),
                        provider: Spelled::new(seed_004_spelling(*provider)),
                        model: model.as_str().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

pub struct SettingsApi;

#[OpenApi(prefix_path = "/api/v1/settings", tag = "ApiTags::Settings")]
impl SettingsApi {
    /// List all provider statuses
    ///
    /// Hints only, never keys. Needs the viewer role.
    #[oai(
        path = "/providers",
        method = "get",
        operation_id = "listProviderStatuses"
    )]
    #[tracing::instrument(skip_all)]
    async fn providers(
        &self,
        state: Data<&Arc<AppState>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
    ) -> Result<Only<ProvidersResponse, Listing>, Refused<ProvidersResponse>> {
        let owner = caller.workspace_config(Role::Viewer)?;
        let providers = SEED_004_PROVIDERS.map(|(_, provider)| provider);
        let keys = state.credentials.provider_keys(&owner, &providers).await?;
        Ok(Only::new(ProvidersResponse::Ok(Json(
            SEED_004_PROVIDERS
                .iter()
                .map(|(name, provider)| {
                    ProviderStatus::listed(name, keys.iter().find(|row| row.provider == *provider))
                })
                .collect(),
        ))))
    }

    /// Save provider API key
    ///
    /// Stores (or replaces) the workspace's key for the provider, encrypted, and returns the
    /// provider's status with the key's hint. Needs the admin role.
    #[oai(
        path = "/providers/:provider",
        method = "post",
        operation_id = "saveProviderKey"
    )]
    #[tracing::instrument(skip_all)]
    async fn save_provider(
        &self,
        state: Data<&Arc<AppState>>,
        /// Makes a retry safe: a write sent again with the same key and the same request is
        /// answered as the first time and changes nothing more (kept 24 hours).
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKey>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        /// openai, gemini, anthropic, openrouter or ollama.
        provider: Path<Spelled<SettingsProvider>>,
        body: Json<Checked<SaveProviderRequest>>,
    ) -> Result<Only<ProviderResponse, Validating>, Refused<ProviderResponse>> {
        let owner = caller.workspace_config(Role::Admin)?;
        let (name, provider) = parse_provider(provider.0.as_str())?;
        let api_key = body.0 .0.api_key;
        if api_key.trim().is_empty() {
            return Ok(Only::new(ProviderResponse::Unprocessable(Json(
                unprocessable_field("api_key", "the API key must not be empty"),
            ))));
        }
        if api_key.len() > crate::plain_key::MAX_KEY_CHARS {
            return Ok(Only::new(ProviderResponse::Unprocessable(Json(
                unprocessable_field("api_key", "the API key must be at most 4096 characters"),
            ))));
        }
        let command = ConfigCommand::SaveProviderKey {
            id: owner.clone(),
            provider,
            secret: SecretString::from(api_key),
            name: format!("{} key", provider.display_name()),
        };
        let saved = state
            .commands
            .execute(&owner, command, &caller.metadata())
            .await?;
        Ok(Only::new(ProviderResponse::Ok(Json(
            ProviderStatus::saved(name, saved.aggregate.provider_key(provider)),
        ))))
    }

    /// Test provider connection
    ///
    /// Calls the provider's model list with the stored key and records the outcome. Needs the
    /// admin role.
    #[oai(
        path = "/providers/:provider/test",
        method = "post",
        operation_id = "testProvider"
    )]
    #[tracing::instrument(skip_all)]
    async fn test_provider(
        &self,
        state: Data<&Arc<AppState>>,
        /// Makes a retry safe: a write sent again with the same key and the same request is
        /// answered as the first time and changes nothing more (kept 24 hours).
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKey>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        /// openai, gemini, anthropic, openrouter or ollama.
        provider: Path<Spelled<SettingsProvider>>,
    ) -> Result<Only<TestResponse, Acting>, Refused<TestResponse>> {
        let owner = caller.workspace_config(Role::Admin)?;
        let (name, provider) = parse_provider(provider.0.as_str())?;
        let key = state
            .credentials
            .provider_keys(&owner, &[provider])
            .await?
            .pop()
            .ok_or_else(|| ApiError::not_found(format!("No API key configured for {name}")))?;
        let outcome = test_credential(&state, &caller, &key).await?;
        Ok(Only::new(TestResponse::Ok(Json(ProviderTestResult {
            provider: Spelled::new(name),
            success: outcome.ok,
            message: outcome.reason,
            status_code: outcome.status,
        }))))
    }

    /// Save task assignments
    ///
    /// Replaces the task → provider/model mapping. Each provider must have a key in the
    /// workspace. Needs the admin role.
    #[oai(
        path = "/task-assignments",
        method = "post",
        operation_id = "saveTaskAssignments"
    )]
    #[tracing::instrument(skip_all)]
    async fn save_assignments(
        &self,
        state: Data<&Arc<AppState>>,
        /// Makes a retry safe: a write sent again with the same key and the same request is
        /// answered as the first time and changes nothing more (kept 24 hours).
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKey>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        body: Json<Checked<TaskAssignments>>,
    ) -> Result<Only<AssignmentsResponse, Validating>, Refused<AssignmentsResponse>> {
        let owner = caller.workspace_config(Role::Admin)?;
        let body = body.0 .0;
        if body.assignments.len() > 100 {
            return Err(ApiError::invalid_field("assignments", "at most 100 tasks").into());
        }
        let mut assignments = Vec::with_capacity(body.assignments.len());
        for (index, assignment) in body.assignments.iter().enumerate() {
            let field = |name: &str| format!("assignments[{index}].{name}");
            let task = TaskName::parse(&assignment.task)
                .map_err(|error| ApiError::invalid_value(field("task"), error))?;
            let (_, provider) = parse_provider(assignment.provider.as_str())?;
            let model = ModelName::parse(&assignment.model)
                .map_err(|error| ApiError::invalid_value(field("model"), error))?;
            assignments.push((task, provider, model));
        }
        let command = ConfigCommand::AssignTasks {
            id: owner.clone(),
            assignments,
        };
        let assigned = state
            .commands
            .execute(&owner, command, &caller.metadata())
            .await
            .map_err(|error| match error {
                // The domain names providers its own way; this API says "gemini", not "google".
                CommandError::Domain(DomainError::ProviderNotConfigured { task, provider }) => {
                    ApiError::bad_request(format!(
                        "task \"{}\" names provider \"{}\", for which this workspace has no key",
                        task.as_str(),
                        seed_004_spelling(provider)
                    ))
                }
                other => other.into(),
            })?;
        let config = assigned.aggregate;
        Ok(Only::new(AssignmentsResponse::Ok(Json(assignments_of(
            config.is_created().then_some(&config),
        )))))
    }

    /// Get current task assignments
    ///
    /// Needs the viewer role.
    #[oai(
        path = "/task-assignments",
        method = "get",
        operation_id = "getTaskAssignments"
    )]
    #[tracing::instrument(skip_all)]
    async fn assignments(
        &self,
        state: Data<&Arc<AppState>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
    ) -> Result<Only<AssignmentsResponse, Listing>, Refused<AssignmentsResponse>> {
        let owner = caller.workspace_config(Role::Viewer)?;
        let view = state.queries.config(&owner).await?;
        Ok(Only::new(AssignmentsResponse::Ok(Json(assignments_of(
            view.as_ref().map(|view| &view.config),
        )))))
    }
}
