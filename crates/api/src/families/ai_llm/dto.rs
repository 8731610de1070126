//! Seed 001's bodies and the Flashback envelope.

use aimc_domain::CredentialId;
use aimc_store::CredentialRow;
use chrono::{DateTime, Utc};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde::Deserialize;

use crate::problem::{refusal_in, ApiError};
use crate::provider_catalogue::seed_001_spelling;
use crate::spelling::{AiType, Spelled};

/// Create an AI LLM configuration.
#[derive(Object, Deserialize)]
#[oai(rename = "CreateAiLlmRequest", deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Human-readable name, unique within the workspace (case-insensitive), 1–100 characters.
    #[oai(validator(max_length = 100))]
    pub name: String,
    #[oai(rename = "aiType")]
    #[serde(rename = "aiType")]
    pub ai_type: Spelled<AiType>,
    /// The provider's API endpoint, an http(s) URL.
    #[oai(validator(max_length = 2048))]
    pub endpoint: String,
    /// Access key (optional, provider-dependent, e.g. an AWS access key id). Stored encrypted.
    #[oai(skip_serializing_if_is_none, validator(max_length = 4096))]
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
#[oai(rename = "UpdateAiLlmRequest", deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[oai(skip_serializing_if_is_none, validator(max_length = 100))]
    #[serde(default)]
    pub name: Option<String>,
    #[oai(skip_serializing_if_is_none, rename = "aiType")]
    #[serde(rename = "aiType", default)]
    pub ai_type: Option<Spelled<AiType>>,
    #[oai(skip_serializing_if_is_none, validator(max_length = 2048))]
    #[serde(default)]
    pub endpoint: Option<String>,
    #[oai(skip_serializing_if_is_none, validator(max_length = 4096))]
    #[serde(default)]
    pub key: Option<String>,
    #[oai(skip_serializing_if_is_none, validator(max_length = 4096))]
    #[serde(default)]
    pub secret: Option<String>,
}

/// An AI LLM configuration as listed: credentials only masked, the secret never.
#[derive(Debug, Object)]
#[oai(rename = "AiLlm")]
pub struct AiLlm {
    pub id: String,
    /// Organisations are not modelled; absent.
    #[oai(rename = "orgId", skip_serializing_if_is_none)]
    pub org_id: Option<String>,
    #[oai(rename = "workspaceId")]
    pub workspace_id: String,
    /// Who created it; absent for configurations from before this was recorded.
    #[oai(rename = "userId", skip_serializing_if_is_none)]
    pub user_id: Option<String>,
    pub name: String,
    #[oai(rename = "aiType")]
    pub ai_type: Spelled<AiType>,
    #[oai(skip_serializing_if_is_none)]
    pub endpoint: Option<String>,
    /// The access key, masked (`AKI...MPLE`); absent when none was given.
    #[oai(skip_serializing_if_is_none)]
    pub key: Option<String>,
    #[oai(rename = "createdAt")]
    pub created_at: DateTime<Utc>,
}

/// Flashback's response envelope.
#[derive(Debug, Object)]
#[oai(rename = "AiLlmResult", example)]
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
    pub(super) fn failure(message: impl Into<String>) -> Json<Envelope> {
        Json(Envelope {
            success: false,
            ai_llm_id: None,
            message: Some(message.into()),
            ai_llms: None,
        })
    }

    pub(super) fn done(id: CredentialId, message: &str) -> Json<Envelope> {
        Json(Envelope {
            success: true,
            ai_llm_id: Some(id.to_string()),
            message: Some(message.into()),
            ai_llms: None,
        })
    }
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "crate::families::ai_llm::dto::bad_request")]
pub enum AiLlmResponse {
    /// Done.
    #[oai(status = 200)]
    Ok(Json<Envelope>),
    /// Validation error or invalid parameters.
    #[oai(status = 400)]
    BadRequest(Json<Envelope>),
    /// No valid bearer token: missing, malformed, expired, wrongly signed or for another
    /// audience; `message` says which.
    #[oai(status = 401)]
    Unauthorized(Json<Envelope>, #[oai(header = "WWW-Authenticate")] String),
    /// Insufficient permissions.
    #[oai(status = 403)]
    Forbidden(Json<Envelope>),
    /// No such configuration in a workspace of the caller's.
    #[oai(status = 404)]
    NotFound(Json<Envelope>),
    /// The `Idempotency-Key` was used before for a different request.
    #[oai(status = 422)]
    Unprocessable(Json<Envelope>),
    /// Unexpected failure.
    #[oai(status = 500)]
    Internal(Json<Envelope>),
    /// Vault or the database is unavailable; retry after the given seconds.
    #[oai(status = 503)]
    Unavailable(Json<Envelope>, #[oai(header = "Retry-After")] u32),
}

pub(super) fn bad_request(error: poem::Error) -> AiLlmResponse {
    if let Some(refusal) = refusal_in(&error) {
        return refusal.into();
    }
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
            ApiError::Unauthorized(_, challenge) => AiLlmResponse::Unauthorized(message, challenge),
            ApiError::Forbidden(_) => AiLlmResponse::Forbidden(message),
            ApiError::NotFound(_) => AiLlmResponse::NotFound(message),
            ApiError::Unprocessable(_) => AiLlmResponse::Unprocessable(message),
            ApiError::Internal(_) => AiLlmResponse::Internal(message),
            ApiError::Unavailable(_, retry_after) => {
                AiLlmResponse::Unavailable(message, retry_after)
            }
        }
    }
}

impl From<CredentialRow> for AiLlm {
    fn from(row: CredentialRow) -> Self {
        AiLlm {
            id: row.id().to_string(),
            org_id: None,
            ai_type: Spelled::new(seed_001_spelling(row.provider)),
            workspace_id: row.home.owner.workspace.to_string(),
            user_id: row.created_by,
            name: row.name.as_str().to_owned(),
            endpoint: row.endpoint,
            key: row.access_key_hint.map(|hint| hint.as_str().to_owned()),
            created_at: row.created_at,
        }
    }
}

/// Seed 001's own example, in the workspace `./dev run`'s token grants.
impl poem_openapi::types::Example for CreateRequest {
    fn example() -> Self {
        CreateRequest {
            name: "My OpenAI Config".into(),
            ai_type: Spelled::new("OPENAI"),
            endpoint: "https://api.openai.com/v1".into(),
            key: None,
            secret: "sk-proj-xxxxxxxxxxxx".into(),
            workspace_id: "dev".into(),
        }
    }
}

impl poem_openapi::types::Example for UpdateRequest {
    fn example() -> Self {
        UpdateRequest {
            name: Some("Production OpenAI".into()),
            ai_type: None,
            endpoint: None,
            key: None,
            secret: None,
        }
    }
}

impl poem_openapi::types::Example for Envelope {
    fn example() -> Self {
        Envelope {
            success: true,
            ai_llm_id: Some("550e8400-e29b-41d4-a716-446655440000".into()),
            message: Some("AI LLM configuration created successfully".into()),
            ai_llms: None,
        }
    }
}
