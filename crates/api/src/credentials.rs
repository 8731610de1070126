//! Operations on credentials that several API families share: storing one under a claimed
//! name, and testing one against its provider.

use aimc_domain::{
    AggregateId, AiModelConfigCommand, CredentialId, CredentialName, KeyContext, Provider,
};
use chrono::{SecondsFormat, Utc};
use secrecy::SecretString;

use crate::auth::Principal;
use crate::command_metadata;
use crate::problem::ApiError;
use crate::provider_check::CheckOutcome;
use crate::request_context::RequestContext;
use crate::state::AppState;

/// The most a plain key may hold; real keys are far shorter.
const MAX_KEY_CHARS: usize = 4096;

/// A plain key as received over TLS: surrounding whitespace removed, not empty, bounded.
pub fn parse_plain_key(field: &str, raw: &str) -> Result<SecretString, ApiError> {
    let key = raw.trim();
    if key.is_empty() {
        return Err(ApiError::invalid_field(field, "must not be empty"));
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(ApiError::invalid_field(
            field,
            format!("must be at most {MAX_KEY_CHARS} characters"),
        ));
    }
    Ok(SecretString::from(key))
}

/// What a new credential is made of.
pub struct NewCredential {
    pub name: CredentialName,
    /// The service chose the name: on a clash it takes a distinguishing suffix instead of
    /// refusing the request.
    pub name_is_generated: bool,
    pub provider: Provider,
    pub endpoint: Option<String>,
    pub access_key: Option<SecretString>,
    pub secret: SecretString,
    pub number: Option<i64>,
}

/// Claims the name (unique per workspace across owners), stores the credential, and gives the
/// name back if the command fails, so a failed request leaves nothing behind.
#[tracing::instrument(skip_all, fields(aggregate_id = %aggregate))]
pub async fn add_credential(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    aggregate: &AggregateId,
    credential: NewCredential,
) -> Result<CredentialId, ApiError> {
    let credential_id = CredentialId(uuid::Uuid::now_v7());
    let workspace = &aggregate.workspace;
    let name = if credential.name_is_generated {
        claim_generated_name(state, aggregate, credential.name.as_str(), credential_id).await?
    } else if state
        .credentials
        .claim_name(workspace, &credential.name, credential_id)
        .await?
    {
        credential.name
    } else {
        return Err(ApiError::invalid_field(
            "name",
            format!(
                "a credential named \"{}\" already exists in this workspace",
                credential.name.as_str()
            ),
        ));
    };
    let name_key = name.key();
    let command = AiModelConfigCommand::AddCredential {
        id: aggregate.clone(),
        credential_id,
        name,
        provider: credential.provider,
        endpoint: credential.endpoint,
        access_key: credential.access_key,
        secret: credential.secret,
        number: credential.number,
    };
    if let Err(error) = state
        .commands
        .execute(aggregate, command, &command_metadata(principal, context))
        .await
    {
        // A claim whose command may have been recorded stays; the periodic clean-up frees it
        // if no credential ever took the name.
        if error.appended_nothing() {
            state
                .credentials
                .release_name(workspace, &name_key, credential_id)
                .await?;
        }
        return Err(error.into());
    }
    Ok(credential_id)
}

/// Claims `base`, or `base (<id prefix>)` when someone already holds `base` (a caller may have
/// picked it for a family B configuration).
pub async fn claim_generated_name(
    state: &AppState,
    aggregate: &AggregateId,
    base: &str,
    credential_id: CredentialId,
) -> Result<CredentialName, ApiError> {
    let short = credential_id.0.simple().to_string();
    for candidate in [
        base.to_owned(),
        format!("{base} ({})", &short[short.len() - 8..]),
    ] {
        let name = CredentialName::parse(&candidate)
            .map_err(|error| ApiError::internal(format!("generated name refused: {error}")))?;
        if state
            .credentials
            .claim_name(&aggregate.workspace, &name, credential_id)
            .await?
        {
            return Ok(name);
        }
    }
    Err(ApiError::conflict(
        "could not find a free name for the credential; retry",
    ))
}

#[tracing::instrument(skip(state, principal, context), fields(aggregate_id = %aggregate))]
pub async fn test_credential(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    aggregate: &AggregateId,
    credential_id: CredentialId,
) -> Result<CheckOutcome, ApiError> {
    let aggregate_id = aggregate.to_string();
    let view = state
        .queries
        .config(&aggregate_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such credential"))?;
    let credential = view
        .config
        .credentials
        .get(&credential_id)
        .ok_or_else(|| ApiError::not_found("no such credential"))?;
    let provider: Provider = credential.provider;
    let tested = (credential.secret.clone(), credential.endpoint.clone());
    let secret = state
        .keyring
        .decrypt(
            &aggregate.workspace,
            vec![(
                credential.secret.clone(),
                KeyContext::for_credential(&aggregate_id, credential_id),
            )],
        )
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("the keyring returned no key"))?;
    let outcome = state
        .checker
        .check(provider, credential.endpoint.as_deref(), &secret)
        .await;
    drop(secret);
    let command = AiModelConfigCommand::RecordValidation {
        credential_id,
        tested,
        ok: outcome.ok,
        status: outcome.status,
        reason: outcome.reason.clone(),
        checked_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    };
    state
        .commands
        .execute(aggregate, command, &command_metadata(principal, context))
        .await?;
    Ok(outcome)
}
