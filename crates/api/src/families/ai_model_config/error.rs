//! Family A's refusals, naming seed 000's fields.

use aimc_domain::DomainError;
use aimc_store::CommandError;

use crate::problem::ApiError;

pub(super) fn command(error: CommandError) -> ApiError {
    match error {
        CommandError::Domain(error) => domain(error),
        other => other.into(),
    }
}

fn domain(error: DomainError) -> ApiError {
    let detail = error.to_string();
    match error {
        DomainError::UndecryptableKey { model_index } => ApiError::invalid_field(
            format!("models[{model_index}].apiKeyEncrypted"),
            "does not decrypt with this workspace's encryption key (GET /api/v1/encryption-key): encrypt the key with RSA-OAEP-SHA256 and send the standard base64 of the result",
        ),
        DomainError::EmptyModelKey { model_index } => ApiError::invalid_field(
            format!("models[{model_index}].apiKeyEncrypted"),
            "decrypts to an empty key; send null to remove a key",
        ),
        DomainError::DuplicateModel { model_index, .. } => {
            ApiError::invalid_field(format!("models[{model_index}]"), detail)
        }
        DomainError::ConfigNotFound => not_created(),
        other => other.into(),
    }
}

pub(super) fn not_created() -> ApiError {
    ApiError::not_found(
        "no AI model configuration exists yet; create one with POST /api/v1/create/ai-model-config",
    )
}
