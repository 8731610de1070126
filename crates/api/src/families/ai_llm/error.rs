//! Family B's refusals, naming seed 001's fields.

use aimc_domain::DomainError;
use aimc_store::CommandError;

use crate::problem::ApiError;

pub(super) fn command(error: CommandError) -> ApiError {
    match error {
        CommandError::Domain(DomainError::NameTaken { name }) => ApiError::invalid_field(
            "name",
            format!(
                "a configuration named \"{}\" already exists in this workspace",
                name.as_str()
            ),
        ),
        CommandError::Domain(DomainError::CredentialNotFound(_)) => not_found(),
        CommandError::Domain(DomainError::EmptyKey) => {
            ApiError::invalid_field("secret", "must not be empty")
        }
        other => other.into(),
    }
}

pub(super) fn not_found() -> ApiError {
    ApiError::not_found("no AI LLM configuration with this id")
}
