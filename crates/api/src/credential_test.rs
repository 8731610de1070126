//! Testing a stored credential (family B's validate, family E's test): decrypt it in memory,
//! ask the provider, record the outcome as an event.

use aimc_domain::{AggregateId, AiModelConfigCommand, CredentialId, KeyContext, Provider};
use chrono::{SecondsFormat, Utc};

use crate::auth::Principal;
use crate::problem::ApiError;
use crate::provider_check::CheckOutcome;
use crate::request_context::RequestContext;
use crate::state::AppState;
use crate::command_metadata;

#[tracing::instrument(skip(state, principal, context), fields(aggregate_id = %aggregate))]
pub async fn test_credential(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    aggregate: &AggregateId,
    credential_id: CredentialId,
) -> Result<CheckOutcome, ApiError> {
    let aggregate_id = aggregate.to_string();
    let view = state.queries.config(&aggregate_id).await?.ok_or_else(|| ApiError::not_found("no such credential"))?;
    let credential = view.config.credentials.get(&credential_id).ok_or_else(|| ApiError::not_found("no such credential"))?;
    let provider: Provider = credential.provider;
    let secret = state
        .keyring
        .decrypt(
            &aggregate.workspace,
            vec![(credential.secret.clone(), KeyContext::for_credential(&aggregate_id, credential_id))],
        )
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("the keyring returned no key"))?;
    let outcome = state.checker.check(provider, credential.endpoint.as_deref(), &secret).await;
    drop(secret);
    let command = AiModelConfigCommand::RecordValidation {
        credential_id,
        ok: outcome.ok,
        status: outcome.status,
        reason: outcome.reason.clone(),
        checked_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    };
    state.commands.execute(aggregate, command, &command_metadata(principal, context)).await?;
    Ok(outcome)
}
