//! A stored key and what can happen to it, wherever it lives: in the stream of a configuration
//! whose models or provider slots use it ([`crate::AiModelConfig`]), or in a stream of its own
//! ([`CredentialAggregate`]) when it is one of a collection of named or numbered keys.
//!
//! The decisions here are shared by both homes, so a credential behaves the same whichever
//! family stored it.

mod aggregate;
mod commands;
mod events;
mod naming;
mod rewrap;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use aggregate::CredentialAggregate;
pub use commands::{CredentialChange, CredentialCommand, NameChoice, NewCredential, TestOutcome};
pub use events::CredentialEvent;
use naming::{choose_names, NameRequest};
pub use rewrap::{rewrap_error, RewrapPlan, RewrapsCredentials};

use crate::error::DomainError;
use crate::ids::{ConfigId, CredentialId};
use crate::services::{ConfigServices, KeyContext, SealFailure, SealRequest, SealedKey};
use crate::values::{Ciphertext, CredentialName, KeyHint, Provider};

/// A stored key. Only its ciphertext and hint are ever held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub id: CredentialId,
    pub name: CredentialName,
    pub provider: Provider,
    pub endpoint: Option<String>,
    /// An access key id where the provider has one (AWS), stored like the secret.
    #[serde(default)]
    pub access_key: Option<Ciphertext>,
    #[serde(default)]
    pub access_key_hint: Option<KeyHint>,
    pub secret: Ciphertext,
    pub hint: KeyHint,
    #[serde(default)]
    pub last_validation: Option<Validation>,
    #[serde(default)]
    pub number: Option<i64>,
}

/// The outcome of the last test of a credential against its provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub ok: bool,
    pub status: Option<u16>,
    pub reason: String,
    pub checked_at: DateTime<Utc>,
}

/// What a test says about the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestVerdict {
    /// The provider accepted it.
    Valid,
    /// The provider refused it (401 or 403).
    Refused,
    /// The provider could not be reached, or failed for a reason of its own.
    Inconclusive,
}

impl TestVerdict {
    pub fn of(ok: bool, status: Option<u16>) -> Self {
        match (ok, status) {
            (true, _) => TestVerdict::Valid,
            (false, Some(401 | 403)) => TestVerdict::Refused,
            (false, _) => TestVerdict::Inconclusive,
        }
    }

    /// Whether the key works, when the test could tell.
    pub fn works(self) -> Option<bool> {
        match self {
            TestVerdict::Valid => Some(true),
            TestVerdict::Refused => Some(false),
            TestVerdict::Inconclusive => None,
        }
    }
}

/// Applies a credential event to the credentials of a home.
pub(crate) fn apply(credentials: &mut BTreeMap<CredentialId, Credential>, event: CredentialEvent) {
    let id = event.credential_id();
    match event {
        CredentialEvent::Removed { .. } | CredentialEvent::WorkspaceShredded { .. } => {
            credentials.remove(&id);
        }
        event => match Credential::from_added(&event) {
            Some(credential) => {
                credentials.insert(id, credential);
            }
            None => {
                if let Some(credential) = credentials.get_mut(&id) {
                    credential.apply(event);
                }
            }
        },
    }
}

impl Credential {
    /// The credential an `Added` event creates.
    fn from_added(event: &CredentialEvent) -> Option<Self> {
        let CredentialEvent::Added {
            credential_id,
            name,
            provider,
            endpoint,
            access_key,
            access_key_hint,
            secret,
            hint,
            number,
            ..
        } = event
        else {
            return None;
        };
        Some(Credential {
            id: *credential_id,
            name: name.clone(),
            provider: *provider,
            endpoint: endpoint.clone(),
            access_key: access_key.clone(),
            access_key_hint: access_key_hint.clone(),
            secret: secret.clone(),
            hint: hint.clone(),
            last_validation: None,
            number: *number,
        })
    }

    fn apply(&mut self, event: CredentialEvent) {
        use CredentialEvent as E;
        match event {
            E::Renamed { name, .. } => self.name = name,
            E::ProviderChanged { provider, .. } => {
                self.provider = provider;
                self.last_validation = None;
            }
            E::EndpointChanged { endpoint, .. } => {
                self.endpoint = endpoint;
                self.last_validation = None;
            }
            E::AccessKeyReplaced {
                access_key,
                access_key_hint,
                ..
            } => {
                self.access_key = Some(access_key);
                self.access_key_hint = Some(access_key_hint);
                self.last_validation = None;
            }
            E::SecretReplaced { secret, hint, .. } => {
                self.secret = secret;
                self.hint = hint;
                // A test of the old key says nothing about the new one.
                self.last_validation = None;
            }
            E::Rewrapped {
                secret, access_key, ..
            } => {
                // The same keys under a newer key version: hints and test results still hold.
                self.secret = secret;
                if access_key.is_some() {
                    self.access_key = access_key;
                }
            }
            E::Validated {
                verdict,
                status,
                reason,
                checked_at,
                ..
            } => {
                self.last_validation = Some(Validation {
                    ok: verdict == TestVerdict::Valid,
                    status,
                    reason,
                    checked_at,
                })
            }
            E::Added { .. } | E::Removed { .. } | E::WorkspaceShredded { .. } => {}
        }
    }

    /// Whether resolving may hand this key out: unless the provider refused it at the last test.
    pub fn is_usable(&self) -> bool {
        self.last_validation
            .as_ref()
            .and_then(|test| TestVerdict::of(test.ok, test.status).works())
            != Some(false)
    }
}

/// The one way a credential comes to be: its keys sealed, its name and number decided.
#[allow(clippy::too_many_arguments)]
pub(crate) fn added(
    credential_id: CredentialId,
    name: CredentialName,
    provider: Provider,
    endpoint: Option<String>,
    secret: SealedKey,
    access_key: Option<SealedKey>,
    number: i64,
    owner: Option<ConfigId>,
) -> CredentialEvent {
    CredentialEvent::Added {
        credential_id,
        name,
        provider,
        endpoint,
        access_key_hint: access_key.as_ref().map(|key| key.hint.clone()),
        access_key: access_key.map(|key| key.ciphertext),
        secret: secret.ciphertext,
        hint: secret.hint,
        number: Some(number),
        owner,
    }
}

/// A credential's plain keys sealed in one keyring call: the secret, then the access key.
pub(crate) async fn seal_plain_keys(
    config: &ConfigId,
    credential: CredentialId,
    secret: Option<SecretString>,
    access_key: Option<SecretString>,
    services: &ConfigServices,
) -> Result<(Option<SealedKey>, Option<SealedKey>), DomainError> {
    let has_secret = secret.is_some();
    let requests: Vec<SealRequest> = secret
        .map(|plain| SealRequest::Plain {
            plain,
            context: KeyContext::for_credential(config, credential),
        })
        .into_iter()
        .chain(access_key.map(|plain| SealRequest::Plain {
            plain,
            context: KeyContext::for_access_key(config, credential),
        }))
        .collect();
    let mut sealed = services
        .seal(&config.workspace, requests)
        .await
        .map_err(|failure| match failure {
            SealFailure::Undecryptable(_) | SealFailure::Empty(_) => DomainError::EmptyKey,
            SealFailure::Domain(error) => error,
        })?
        .into_iter();
    let secret = if has_secret { sealed.next() } else { None };
    Ok((secret, sealed.next()))
}

/// Adds a credential: its name and number decided, its keys sealed.
pub(crate) async fn add(
    config: &ConfigId,
    id: CredentialId,
    new: NewCredential,
    owner: Option<ConfigId>,
    services: &ConfigServices,
) -> Result<CredentialEvent, DomainError> {
    let (number, name) = numbers_and_names(services, &config.workspace, &[(id, new.name)])
        .await?
        .pop()
        .ok_or(DomainError::NoFreeName)?;
    let (secret, access_key) =
        seal_plain_keys(config, id, Some(new.secret), new.access_key, services).await?;
    let secret = secret.ok_or_else(|| {
        DomainError::ServiceFailed(
            crate::error::Service::Keyring,
            "no ciphertext for the secret".into(),
        )
    })?;
    Ok(added(
        id,
        name,
        new.provider,
        new.endpoint,
        secret,
        access_key,
        number,
        owner,
    ))
}

/// What a change does to a credential: only the differences, and none when nothing changes.
pub(crate) async fn change(
    config: &ConfigId,
    current: &Credential,
    change: CredentialChange,
    services: &ConfigServices,
) -> Result<Vec<CredentialEvent>, DomainError> {
    let credential_id = current.id;
    let mut events = Vec::new();
    if let Some(name) = change.name.filter(|name| *name != current.name) {
        if name.key() != current.name.key() {
            naming::ensure_free(services, &config.workspace, &name, credential_id).await?;
        }
        events.push(CredentialEvent::Renamed {
            credential_id,
            name,
        });
    }
    if let Some(provider) = change.provider.filter(|p| *p != current.provider) {
        events.push(CredentialEvent::ProviderChanged {
            credential_id,
            provider,
        });
    }
    if let Some(endpoint) = change.endpoint.filter(|e| *e != current.endpoint) {
        events.push(CredentialEvent::EndpointChanged {
            credential_id,
            endpoint,
        });
    }
    let (secret, access_key) = seal_plain_keys(
        config,
        credential_id,
        change.secret,
        change.access_key,
        services,
    )
    .await?;
    if let Some(key) = access_key {
        events.push(CredentialEvent::AccessKeyReplaced {
            credential_id,
            access_key: key.ciphertext,
            access_key_hint: key.hint,
        });
    }
    if let Some(key) = secret {
        events.push(CredentialEvent::SecretReplaced {
            credential_id,
            secret: key.ciphertext,
            hint: key.hint,
        });
    }
    Ok(events)
}

/// What a command does to an existing credential, wherever it lives: a change, a recorded
/// test, or its removal (before which a configuration detaches the models that use it).
pub(crate) async fn decide(
    owner: &ConfigId,
    current: &Credential,
    command: CredentialCommand,
    services: &ConfigServices,
) -> Result<Vec<CredentialEvent>, DomainError> {
    match command {
        CredentialCommand::Add { .. } => Err(DomainError::CredentialExists),
        CredentialCommand::Change { change, .. } => {
            self::change(owner, current, change, services).await
        }
        CredentialCommand::Remove { credential_id } => {
            Ok(vec![CredentialEvent::Removed { credential_id }])
        }
        CredentialCommand::RecordTest { outcome, .. } => Ok(vec![record_test(current, outcome)?]),
        CredentialCommand::Rewrap { key_version, .. } => {
            rewrap(owner, current, key_version, services).await
        }
        // A configuration's credentials are shredded with it (`ConfigCommand::Shred`).
        CredentialCommand::Shred { credential_id } => {
            Err(DomainError::CredentialNotFound(credential_id))
        }
    }
}

/// Rewraps the credential's keys sealed under a key version older than `target` (Vault's
/// rewrap: the plain keys never leave Vault). Decided here, under the aggregate's turn, so a
/// change racing the rotation either comes first and is rewrapped too, or comes after and is
/// sealed under the new version anyway.
async fn rewrap(
    owner: &ConfigId,
    current: &Credential,
    target: u32,
    services: &ConfigServices,
) -> Result<Vec<CredentialEvent>, DomainError> {
    let Some(plan) = rewrap::plan(owner, current, target) else {
        return Ok(Vec::new());
    };
    let rewrapped = services
        .sealer
        .rewrap(&owner.workspace, plan.items().to_vec())
        .await
        .map_err(rewrap_error)?;
    Ok(vec![plan.rewrapped(rewrapped)?])
}

/// Records a test, unless the credential changed while it was tested: the outcome would be
/// about a key or endpoint that no longer applies.
fn record_test(current: &Credential, outcome: TestOutcome) -> Result<CredentialEvent, DomainError> {
    if current.secret != outcome.tested_secret || current.endpoint != outcome.tested_endpoint {
        return Err(DomainError::CredentialChangedDuringTest);
    }
    Ok(CredentialEvent::Validated {
        credential_id: current.id,
        verdict: TestVerdict::of(outcome.ok, outcome.status),
        status: outcome.status,
        reason: outcome.reason,
        checked_at: outcome.checked_at,
    })
}

/// Numbers and names for new credentials, in one registry lookup each.
pub(crate) async fn numbers_and_names(
    services: &ConfigServices,
    workspace: &crate::ids::WorkspaceId,
    new: &[(CredentialId, NameChoice)],
) -> Result<Vec<(i64, CredentialName)>, DomainError> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let numbers = services.numbers.next_numbers(new.len()).await?;
    if numbers.len() != new.len() {
        return Err(DomainError::ServiceFailed(
            crate::error::Service::Registry,
            "fewer numbers than asked".into(),
        ));
    }
    let requests: Vec<NameRequest<'_>> = new
        .iter()
        .zip(&numbers)
        .map(|((credential, choice), number)| NameRequest {
            choice,
            credential: *credential,
            number: *number,
        })
        .collect();
    let names = choose_names(services, workspace, &requests).await?;
    Ok(numbers.into_iter().zip(names).collect())
}

#[cfg(test)]
mod tests;
