//! The API families, one folder each (routes, bodies, errors), each speaking its seed's
//! dialect over the same commands and read model.

pub mod ai_llm;
pub mod ai_model_config;
pub mod api_keys;
pub mod settings;
pub mod shared;
pub mod user_api_keys;

use poem::IntoResponse;

use crate::problem::ApiError;

/// A refusal raised outside any handler (by the idempotency layer), in the dialect of the
/// family that serves `path`, as that family's handlers would have answered it.
pub fn refusal_at(path: &str, error: ApiError) -> poem::Response {
    if path == "/ai/llm" || path.starts_with("/ai/llm/") {
        ai_llm::dto::AiLlmResponse::from(error).into_response()
    } else if path.starts_with("/api/v1/settings/") {
        settings::dto::ProviderResponse::from(error).into_response()
    } else {
        error.into_response()
    }
}
