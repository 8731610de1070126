//! Testing a stored credential against its provider, whichever family asks: the key is
//! decrypted, the provider's cheapest authenticated endpoint called behind the SSRF guard
//! ([`crate::provider_probe`]), and the outcome recorded unless the credential changed meanwhile.

use aimc_domain::{CredentialCommand, KeyContext, TestOutcome};
use aimc_store::CredentialRow;
use chrono::{SubsecRound, Utc};

use crate::caller::Caller;
use crate::problem::ApiError;
use crate::provider_probe::CheckOutcome;
use crate::state::AppState;

/// Tests the credential and records the outcome; the outcome is the answer, passed or failed.
#[tracing::instrument(skip_all, fields(credential = %credential.id()))]
pub async fn test_credential(
    state: &AppState,
    caller: &Caller,
    credential: &CredentialRow,
) -> Result<CheckOutcome, ApiError> {
    let ciphertext = credential.secret.clone().ok_or_else(|| {
        ApiError::internal("the credential's ciphertext is not in the read model")
    })?;
    let home = &credential.home;
    let secret = state
        .keyring
        .decrypt(
            &home.owner.workspace,
            vec![(
                ciphertext.clone(),
                KeyContext::for_credential(&home.owner, home.credential_id),
            )],
        )
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("the keyring returned no key"))?;
    let outcome = state
        .checker
        .check(credential.provider, credential.endpoint.as_deref(), &secret)
        .await;
    drop(secret);
    let command = CredentialCommand::RecordTest {
        credential_id: home.credential_id,
        outcome: TestOutcome {
            tested_secret: ciphertext,
            tested_endpoint: credential.endpoint.clone(),
            ok: outcome.ok,
            status: outcome.status,
            reason: outcome.reason.clone(),
            // Whole seconds, as the history has always shown it.
            checked_at: Utc::now().trunc_subsecs(0),
        },
    };
    state
        .commands
        .execute_on_credential(home, command, &caller.metadata())
        .await?;
    Ok(outcome)
}
