//! Family E (seed 004, FastAPI style): a workspace's provider keys and task assignments.
//! `GET /api/v1/settings/providers`, `POST /api/v1/settings/providers/{provider}`,
//! `POST /api/v1/settings/providers/{provider}/test`, `GET`/`POST /api/v1/settings/task-assignments`.
//! Errors are `{"detail": "..."}`, and 422 `{"detail": [{loc, msg, type}]}` for invalid bodies.

use std::sync::Arc;

use aimc_domain::{
    AggregateId, AiModelConfigCommand, CredentialId, CredentialName, ModelName, Owner, Provider,
    TaskName,
};
use aimc_store::CredentialRow;
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use secrecy::SecretString;
use serde::Deserialize;

use crate::auth::{BearerAuth, Principal, Role};
use crate::credentials::{add_credential, test_credential, NewCredential};
use crate::problem::{ApiError, Problem};
use crate::request_body::Checked;
use crate::request_context::RequestContext;
use crate::state::AppState;
use crate::{command_metadata, ApiTags};

/// FastAPI's error body.
#[derive(Debug, Object)]
pub struct Detail {
    pub detail: String,
}

/// One refused field, as FastAPI reports it.
#[derive(Debug, Object)]
pub struct ValidationIssue {
    pub loc: Vec<String>,
    pub msg: String,
    #[oai(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Object)]
pub struct ValidationDetail {
    pub detail: Vec<ValidationIssue>,
}

/// A provider's state in the workspace; the key itself is never returned.
#[derive(Debug, Object)]
pub struct ProviderStatus {
    /// openai, gemini, anthropic, openrouter or ollama.
    pub provider: String,
    pub is_configured: bool,
    /// Configured, and its last test (if any) succeeded.
    pub is_active: bool,
    /// `sk-...cdef`, when configured.
    pub key_hint: Option<String>,
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct SaveProviderRequest {
    /// The full API key.
    #[oai(validator(max_length = 4096))]
    pub api_key: String,
}

#[derive(Debug, Object)]
pub struct ProviderTestResult {
    pub provider: String,
    pub success: bool,
    pub message: String,
    /// The provider's HTTP status, when it answered.
    pub status_code: Option<u16>,
}

#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct TaskAssignment {
    #[oai(validator(max_length = 64))]
    pub task: String,
    pub provider: String,
    #[oai(validator(max_length = 200))]
    pub model: String,
}

#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct TaskAssignments {
    #[oai(validator(max_items = 100))]
    pub assignments: Vec<TaskAssignment>,
}

/// One response type per endpoint, each with FastAPI's error shapes; parse errors become 422.
macro_rules! settings_response {
    ($name:ident, $body:ty, $description:literal) => {
        #[derive(ApiResponse)]
        #[oai(bad_request_handler = "Self::unprocessable")]
        pub enum $name {
            #[doc = $description]
            #[oai(status = 200)]
            Ok(Json<$body>),
            /// Invalid provider, or a request the settings cannot take.
            #[oai(status = 400)]
            BadRequest(Json<Detail>),
            /// No valid bearer token (problem details, as on every family).
            #[oai(status = 401, content_type = "application/problem+json")]
            Unauthorized(Json<Problem>),
            /// The token does not allow this in the workspace.
            #[oai(status = 403)]
            Forbidden(Json<Detail>),
            /// Nothing to act on.
            #[oai(status = 404)]
            NotFound(Json<Detail>),
            /// The body is invalid: `detail` lists the fields.
            #[oai(status = 422)]
            Unprocessable(Json<ValidationDetail>),
            /// Unexpected failure.
            #[oai(status = 500)]
            Internal(Json<Detail>),
            /// Vault or the database is unavailable; retry after the given seconds.
            #[oai(status = 503)]
            Unavailable(Json<Detail>, #[oai(header = "Retry-After")] u32),
        }

        impl $name {
            fn unprocessable(error: poem::Error) -> Self {
                $name::Unprocessable(Json(validation_detail(error)))
            }
        }

        impl From<ApiError> for $name {
            fn from(error: ApiError) -> Self {
                let detail = Json(Detail {
                    detail: error.detail().to_owned(),
                });
                match error {
                    ApiError::BadRequest(_)
                    | ApiError::PayloadTooLarge(_)
                    | ApiError::Conflict(_) => $name::BadRequest(detail),
                    ApiError::Unauthorized(problem, _) => $name::Unauthorized(problem),
                    ApiError::Forbidden(_) => $name::Forbidden(detail),
                    ApiError::NotFound(_) => $name::NotFound(detail),
                    ApiError::Internal(_) => $name::Internal(detail),
                    ApiError::Unavailable(_, retry_after) => {
                        $name::Unavailable(detail, retry_after)
                    }
                }
            }
        }
    };
}

settings_response!(
    ProvidersResponse,
    Vec<ProviderStatus>,
    "Every provider's status."
);
settings_response!(
    ProviderResponse,
    ProviderStatus,
    "The provider's status after the change."
);
settings_response!(
    TestResponse,
    ProviderTestResult,
    "The outcome of the test; a failed test is still a 200."
);
settings_response!(
    AssignmentsResponse,
    TaskAssignments,
    "The workspace's task assignments."
);

fn validation_detail(error: poem::Error) -> ValidationDetail {
    let reason = match error.downcast_ref::<poem_openapi::error::ParseRequestPayloadError>() {
        Some(payload) => payload.reason.clone(),
        None => error.to_string(),
    };
    let (field, message) = crate::request_body::field_of(&reason)
        .map(|(field, message)| (field.to_owned(), message.to_owned()))
        .unwrap_or_else(|| ("body".to_owned(), reason.clone()));
    let mut loc = vec!["body".to_owned()];
    loc.extend(
        field
            .split('.')
            .filter(|part| *part != "body")
            .map(str::to_owned),
    );
    ValidationDetail {
        detail: vec![ValidationIssue {
            loc,
            msg: message,
            kind: "value_error".into(),
        }],
    }
}

fn unprocessable_field(field: &str, message: &str) -> ValidationDetail {
    ValidationDetail {
        detail: vec![ValidationIssue {
            loc: vec!["body".into(), field.into()],
            msg: message.into(),
            kind: "value_error".into(),
        }],
    }
}

/// The providers seed 004 knows, in its spelling.
const PROVIDERS: [(&str, Provider); 5] = [
    ("openai", Provider::Openai),
    ("gemini", Provider::Google),
    ("anthropic", Provider::Anthropic),
    ("openrouter", Provider::Openrouter),
    ("ollama", Provider::Ollama),
];

fn parse_provider(raw: &str) -> Result<(&'static str, Provider), ApiError> {
    let folded = raw.trim().to_ascii_lowercase();
    PROVIDERS
        .iter()
        .find(|(name, provider)| {
            *name == folded || Provider::parse(&folded).ok() == Some(*provider)
        })
        .copied()
        .ok_or_else(|| ApiError::bad_request(format!("Invalid provider: {raw}")))
}

fn spelling(provider: Provider) -> &'static str {
    PROVIDERS
        .iter()
        .find(|(_, p)| *p == provider)
        .map(|(name, _)| *name)
        .unwrap_or(provider.as_str())
}

fn status_of(name: &str, provider: Provider, rows: &[CredentialRow]) -> ProviderStatus {
    // Rows are newest first: the newest credential of a provider is the one in use.
    let current = rows.iter().find(|row| row.provider == provider.as_str());
    ProviderStatus {
        provider: name.to_owned(),
        is_configured: current.is_some(),
        is_active: current.is_some_and(|row| row.validated_ok != Some(false)),
        key_hint: current.map(|row| row.hint.clone()),
    }
}

pub struct SettingsApi;

impl SettingsApi {
    async fn rows(
        state: &AppState,
        aggregate: &AggregateId,
    ) -> Result<Vec<CredentialRow>, ApiError> {
        Ok(state
            .credentials
            .of_owner(&aggregate.workspace, &Owner::Workspace.to_string(), false)
            .await?)
    }

    async fn save(
        state: &AppState,
        principal: &Principal,
        context: &RequestContext,
        workspace: Option<&str>,
        provider: &str,
        api_key: String,
    ) -> Result<ProviderResponse, ApiError> {
        let aggregate = principal.workspace_config(workspace, Role::Admin)?;
        let (name, provider) = parse_provider(provider)?;
        if api_key.trim().is_empty() {
            return Ok(ProviderResponse::Unprocessable(Json(unprocessable_field(
                "api_key",
                "the API key must not be empty",
            ))));
        }
        if api_key.len() > 4096 {
            return Ok(ProviderResponse::Unprocessable(Json(unprocessable_field(
                "api_key",
                "the API key must be at most 4096 characters",
            ))));
        }
        let secret = SecretString::from(api_key);
        let rows = Self::rows(state, &aggregate).await?;
        match rows.iter().find(|row| row.provider == provider.as_str()) {
            Some(current) => {
                let command = AiModelConfigCommand::ChangeCredential {
                    credential_id: CredentialId(current.credential_id),
                    name: None,
                    provider: None,
                    endpoint: None,
                    access_key: None,
                    secret: Some(secret),
                };
                state
                    .commands
                    .execute(&aggregate, command, &command_metadata(principal, context))
                    .await?;
            }
            None => {
                let label = CredentialName::parse(&format!("{} key", provider.display_name()))
                    .map_err(|error| {
                        ApiError::internal(format!("generated name refused: {error}"))
                    })?;
                let number = Some(state.credentials.next_number().await?);
                let credential = NewCredential {
                    name: label,
                    name_is_generated: true,
                    provider,
                    endpoint: None,
                    access_key: None,
                    secret,
                    number,
                };
                add_credential(state, principal, context, &aggregate, credential).await?;
            }
        }
        let rows = Self::rows(state, &aggregate).await?;
        Ok(ProviderResponse::Ok(Json(status_of(name, provider, &rows))))
    }

    async fn test(
        state: &AppState,
        principal: &Principal,
        context: &RequestContext,
        workspace: Option<&str>,
        provider: &str,
    ) -> Result<TestResponse, ApiError> {
        let aggregate = principal.workspace_config(workspace, Role::Admin)?;
        let (name, provider) = parse_provider(provider)?;
        let rows = Self::rows(state, &aggregate).await?;
        let current = rows
            .iter()
            .find(|row| row.provider == provider.as_str())
            .ok_or_else(|| ApiError::not_found(format!("No API key configured for {name}")))?;
        let outcome = test_credential(
            state,
            principal,
            context,
            &aggregate,
            CredentialId(current.credential_id),
        )
        .await?;
        Ok(TestResponse::Ok(Json(ProviderTestResult {
            provider: name.to_owned(),
            success: outcome.ok,
            message: outcome.reason,
            status_code: outcome.status,
        })))
    }

    async fn assign(
        state: &AppState,
        principal: &Principal,
        context: &RequestContext,
        workspace: Option<&str>,
        body: TaskAssignments,
    ) -> Result<AssignmentsResponse, ApiError> {
        let aggregate = principal.workspace_config(workspace, Role::Admin)?;
        if body.assignments.len() > 100 {
            return Err(ApiError::invalid_field("assignments", "at most 100 tasks"));
        }
        let mut assignments = Vec::with_capacity(body.assignments.len());
        for (index, assignment) in body.assignments.iter().enumerate() {
            let field = |name: &str| format!("assignments[{index}].{name}");
            let task = TaskName::parse(&assignment.task)
                .map_err(|error| ApiError::invalid_value(field("task"), error))?;
            let (_, provider) = parse_provider(&assignment.provider)?;
            let model = ModelName::parse(&assignment.model)
                .map_err(|error| ApiError::invalid_value(field("model"), error))?;
            assignments.push((task, provider, model));
        }
        if state
            .queries
            .config(&aggregate.to_string())
            .await?
            .is_none()
        {
            return Err(ApiError::bad_request(
                "no provider is configured for this workspace yet",
            ));
        }
        let command = AiModelConfigCommand::AssignTasks { assignments };
        state
            .commands
            .execute(&aggregate, command, &command_metadata(principal, context))
            .await?;
        Self::current_assignments(state, &aggregate).await
    }

    async fn current_assignments(
        state: &AppState,
        aggregate: &AggregateId,
    ) -> Result<AssignmentsResponse, ApiError> {
        let view = state.queries.config(&aggregate.to_string()).await?;
        let assignments = view
            .map(|view| {
                view.config
                    .task_assignments
                    .iter()
                    .map(|(task, (provider, model))| TaskAssignment {
                        task: task.as_str().to_owned(),
                        provider: spelling(*provider).to_owned(),
                        model: model.as_str().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(AssignmentsResponse::Ok(Json(TaskAssignments {
            assignments,
        })))
    }
}

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
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
    ) -> ProvidersResponse {
        let listed = async {
            let aggregate = auth
                .0
                .workspace_config(workspace.0.as_deref(), Role::Viewer)?;
            let rows = Self::rows(&state, &aggregate).await?;
            Ok::<_, ApiError>(ProvidersResponse::Ok(Json(
                PROVIDERS
                    .iter()
                    .map(|(name, provider)| status_of(name, *provider, &rows))
                    .collect(),
            )))
        };
        listed.await.unwrap_or_else(Into::into)
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
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
        /// openai, gemini, anthropic, openrouter or ollama.
        provider: Path<String>,
        body: Json<Checked<SaveProviderRequest>>,
    ) -> ProviderResponse {
        Self::save(
            &state,
            &auth.0,
            &context,
            workspace.0.as_deref(),
            &provider.0,
            body.0 .0.api_key,
        )
        .await
        .unwrap_or_else(Into::into)
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
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
        /// openai, gemini, anthropic, openrouter or ollama.
        provider: Path<String>,
    ) -> TestResponse {
        Self::test(
            &state,
            &auth.0,
            &context,
            workspace.0.as_deref(),
            &provider.0,
        )
        .await
        .unwrap_or_else(Into::into)
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
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
        body: Json<Checked<TaskAssignments>>,
    ) -> AssignmentsResponse {
        Self::assign(&state, &auth.0, &context, workspace.0.as_deref(), body.0 .0)
            .await
            .unwrap_or_else(Into::into)
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
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
    ) -> AssignmentsResponse {
        let read = async {
            let aggregate = auth
                .0
                .workspace_config(workspace.0.as_deref(), Role::Viewer)?;
            Self::current_assignments(&state, &aggregate).await
        };
        read.await.unwrap_or_else(Into::into)
    }
}
