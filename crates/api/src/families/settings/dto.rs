//! Seed 004's bodies and FastAPI's error shapes.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde::Deserialize;

use crate::problem::{refusal_in, ApiError};
use crate::spelling::{SettingsProvider, Spelled};

/// FastAPI's error body.
#[derive(Debug, Object)]
#[oai(example)]
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
#[oai(example)]
pub struct ValidationDetail {
    pub detail: Vec<ValidationIssue>,
}

/// A provider's state in the workspace; the key itself is never returned.
#[derive(Debug, Object)]
#[oai(example)]
pub struct ProviderStatus {
    pub provider: Spelled<SettingsProvider>,
    pub is_configured: bool,
    /// Configured, and the provider did not refuse the key at its last test (a test that could
    /// not reach the provider says nothing about the key).
    pub is_active: bool,
    /// `sk-...cdef`; absent when not configured.
    #[oai(skip_serializing_if_is_none)]
    pub key_hint: Option<String>,
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct SaveProviderRequest {
    /// The full API key.
    #[oai(validator(max_length = 4096))]
    pub api_key: String,
}

#[derive(Debug, Object)]
#[oai(example)]
pub struct ProviderTestResult {
    pub provider: Spelled<SettingsProvider>,
    pub success: bool,
    pub message: String,
    /// The provider's HTTP status; absent when it could not be reached.
    #[oai(skip_serializing_if_is_none)]
    pub status_code: Option<u16>,
}

#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct TaskAssignment {
    #[oai(validator(max_length = 64))]
    pub task: String,
    pub provider: Spelled<SettingsProvider>,
    #[oai(validator(max_length = 200))]
    pub model: String,
}

#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
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
            /// No valid bearer token: missing, malformed, expired, wrongly signed or for
            /// another audience; `detail` says which.
            #[oai(status = 401)]
            Unauthorized(Json<Detail>, #[oai(header = "WWW-Authenticate")] String),
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
                if let Some(refusal) = refusal_in(&error) {
                    return refusal.into();
                }
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
                    ApiError::Unauthorized(_, challenge) => $name::Unauthorized(detail, challenge),
                    ApiError::Forbidden(_) => $name::Forbidden(detail),
                    ApiError::NotFound(_) => $name::NotFound(detail),
                    ApiError::Unprocessable(problem) => {
                        let problem = problem.0;
                        $name::Unprocessable(Json(ValidationDetail {
                            detail: problem
                                .errors
                                .into_iter()
                                .map(|error| ValidationIssue {
                                    loc: vec!["header".to_owned(), error.field],
                                    msg: error.message,
                                    kind: "value_error".into(),
                                })
                                .collect(),
                        }))
                    }
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

pub(super) fn validation_detail(error: poem::Error) -> ValidationDetail {
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

pub(super) fn unprocessable_field(field: &str, message: &str) -> ValidationDetail {
    ValidationDetail {
        detail: vec![ValidationIssue {
            loc: vec!["body".into(), field.into()],
            msg: message.into(),
            kind: "value_error".into(),
        }],
    }
}

impl poem_openapi::types::Example for SaveProviderRequest {
    fn example() -> Self {
        SaveProviderRequest {
            api_key: "sk-proj-xxxxxxxxxxxx".into(),
        }
    }
}

/// Succeeds once the workspace has an OpenAI key (save one first).
impl poem_openapi::types::Example for TaskAssignments {
    fn example() -> Self {
        TaskAssignments {
            assignments: vec![TaskAssignment {
                task: "chat".into(),
                provider: Spelled::new("openai"),
                model: "gpt-4o".into(),
            }],
        }
    }
}

impl poem_openapi::types::Example for ProviderStatus {
    fn example() -> Self {
        ProviderStatus {
            provider: Spelled::new("openai"),
            is_configured: true,
            is_active: true,
            key_hint: Some("sk-...xxxx".into()),
        }
    }
}

impl poem_openapi::types::Example for ProviderTestResult {
    fn example() -> Self {
        ProviderTestResult {
            provider: Spelled::new("openai"),
            success: true,
            message: "OpenAI accepted the key".into(),
            status_code: Some(200),
        }
    }
}

impl poem_openapi::types::Example for Detail {
    fn example() -> Self {
        Detail {
            detail: "No API key configured for openai".into(),
        }
    }
}

impl poem_openapi::types::Example for ValidationDetail {
    fn example() -> Self {
        unprocessable_field("api_key", "must not be empty")
    }
}
