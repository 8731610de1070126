//! Family C's refusals, naming seed 002's fields.

use aimc_domain::{DomainError, Provider};
use aimc_store::CommandError;

use crate::problem::ApiError;
use crate::provider_catalogue::seed_002;

pub(super) fn command(error: CommandError) -> ApiError {
    match error {
        CommandError::Domain(error) => domain(error),
        other => other.into(),
    }
}

fn domain(error: DomainError) -> ApiError {
    let detail = error.to_string();
    match error {
        DomainError::KeyRequired {
            provider: Provider::Aws,
        } => ApiError::invalid_field("bedrock.secretAccessKey", detail),
        DomainError::KeyRequired { provider } => {
            ApiError::invalid_field(format!("{}.apiKey", spelling(provider)), detail)
        }
        DomainError::NoProviderKey { provider } => {
            ApiError::not_found(format!("no key is stored for {}", spelling(provider)))
        }
        other => other.into(),
    }
}

fn spelling(provider: Provider) -> &'static str {
    seed_002(provider).map_or(provider.as_str(), |(name, _)| name)
}
