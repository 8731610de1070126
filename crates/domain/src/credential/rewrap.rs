//! A rotation's decision about one credential, split around the keyring call: which of its keys
//! are sealed under a key version older than the target ([`plan`]), then the event recording
//! them rewrapped ([`RewrapPlan::rewrapped`]). Both halves are pure, so a rotation can decide
//! for many credentials at once and send all their keys to the keyring in one call; a single
//! `Rewrap` command runs the same two halves around its own call.

use cqrs_es::Aggregate;

use super::{Credential, CredentialAggregate, CredentialEvent};
use crate::config::{AiModelConfig, ConfigEvent};
use crate::error::{DomainError, Service};
use crate::ids::{ConfigId, CredentialId};
use crate::services::{KeyContext, SealError};
use crate::values::Ciphertext;

/// The keys of one credential a rotation to `target` must rewrap, with the contexts they were
/// sealed under.
#[derive(Debug, Clone, PartialEq)]
pub struct RewrapPlan {
    credential_id: CredentialId,
    /// The secret as it stands, kept when only the access key is stale.
    secret: Ciphertext,
    secret_stale: bool,
    access_key_stale: bool,
    target: u32,
    items: Vec<(Ciphertext, KeyContext)>,
}

/// What rewrapping `current`, kept by the configuration `owner`, to key version `target`
/// takes: none when every key of it is under `target` or newer already.
pub fn plan(owner: &ConfigId, current: &Credential, target: u32) -> Option<RewrapPlan> {
    let stale = |ciphertext: &Ciphertext| ciphertext.key_version().is_some_and(|v| v < target);
    let secret_stale = stale(&current.secret);
    let access_key = current.access_key.as_ref().filter(|key| stale(key));
    let mut items = Vec::new();
    if secret_stale {
        items.push((
            current.secret.clone(),
            KeyContext::for_credential(owner, current.id),
        ));
    }
    if let Some(access_key) = access_key {
        items.push((
            access_key.clone(),
            KeyContext::for_access_key(owner, current.id),
        ));
    }
    (!items.is_empty()).then(|| RewrapPlan {
        credential_id: current.id,
        secret: current.secret.clone(),
        secret_stale,
        access_key_stale: access_key.is_some(),
        target,
        items,
    })
}

impl RewrapPlan {
    pub fn credential_id(&self) -> CredentialId {
        self.credential_id
    }

    /// The stale ciphertexts with their contexts, in the order [`RewrapPlan::rewrapped`]
    /// expects their rewrapped forms back.
    pub fn items(&self) -> &[(Ciphertext, KeyContext)] {
        &self.items
    }

    /// The event recording the keys rewrapped, given the keyring's answer for
    /// [`RewrapPlan::items`], in order.
    pub fn rewrapped(self, ciphertexts: Vec<Ciphertext>) -> Result<CredentialEvent, DomainError> {
        if ciphertexts.len() != self.items.len() {
            return Err(DomainError::ServiceFailed(
                Service::Keyring,
                "the keyring rewrapped fewer keys than asked".into(),
            ));
        }
        let mut rewrapped = ciphertexts.into_iter();
        let secret = match self.secret_stale {
            true => rewrapped.next().unwrap_or(self.secret),
            false => self.secret,
        };
        let access_key = if self.access_key_stale {
            rewrapped.next()
        } else {
            None
        };
        let key_version = std::iter::once(&secret)
            .chain(access_key.as_ref())
            .filter_map(Ciphertext::key_version)
            .min()
            .unwrap_or(self.target);
        Ok(CredentialEvent::Rewrapped {
            credential_id: self.credential_id,
            secret,
            access_key,
            key_version,
        })
    }
}

/// A keyring's refusal to rewrap, in the domain's words.
pub fn rewrap_error(error: SealError) -> DomainError {
    match error {
        SealError::Unavailable(reason) => DomainError::Unavailable(Service::Keyring, reason),
        other => DomainError::ServiceFailed(Service::Keyring, other.to_string()),
    }
}

/// An aggregate that keeps credentials: what rewrapping one of them takes, decided on the
/// aggregate as loaded, and its event in the aggregate's stream.
pub trait RewrapsCredentials: Aggregate {
    /// None when the credential's keys are under `target` already;
    /// [`DomainError::CredentialNotFound`] when the aggregate does not keep it (any more).
    fn plan_rewrap(
        &self,
        credential_id: CredentialId,
        target: u32,
    ) -> Result<Option<RewrapPlan>, DomainError>;

    /// The credential event as this aggregate's stream records it.
    fn credential_event(event: CredentialEvent) -> Self::Event;
}

impl RewrapsCredentials for CredentialAggregate {
    fn plan_rewrap(
        &self,
        credential_id: CredentialId,
        target: u32,
    ) -> Result<Option<RewrapPlan>, DomainError> {
        match (&self.owner, &self.credential) {
            (Some(owner), Some(current)) if current.id == credential_id => {
                Ok(plan(owner, current, target))
            }
            _ => Err(DomainError::CredentialNotFound(credential_id)),
        }
    }

    fn credential_event(event: CredentialEvent) -> CredentialEvent {
        event
    }
}

impl RewrapsCredentials for AiModelConfig {
    fn plan_rewrap(
        &self,
        credential_id: CredentialId,
        target: u32,
    ) -> Result<Option<RewrapPlan>, DomainError> {
        match (&self.id, self.credentials.get(&credential_id)) {
            (Some(config), Some(current)) => Ok(plan(config, current, target)),
            _ => Err(DomainError::CredentialNotFound(credential_id)),
        }
    }

    fn credential_event(event: CredentialEvent) -> ConfigEvent {
        ConfigEvent::Credential(event)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::ids::{Owner, WorkspaceId};
    use crate::testing::id;
    use crate::values::{CredentialName, KeyHint, Provider};

    fn owner() -> ConfigId {
        ConfigId::new(WorkspaceId::parse("w1").unwrap(), Owner::Workspace)
    }

    fn credential(secret: &str, access_key: Option<&str>) -> Credential {
        Credential {
            id: CredentialId(id(5)),
            name: CredentialName::parse("Rotated").unwrap(),
            provider: Provider::Openai,
            endpoint: None,
            access_key: access_key.map(|key| Ciphertext(key.into())),
            access_key_hint: access_key
                .map(|_| KeyHint::from_plain(&SecretString::from("AKIA0001"))),
            secret: Ciphertext(secret.into()),
            hint: KeyHint::from_plain(&SecretString::from("sk-proj-xxxxxxxxxxxx")),
            last_validation: None,
            number: Some(100),
        }
    }

    fn own_stream(credential: Credential) -> CredentialAggregate {
        CredentialAggregate {
            owner: Some(owner()),
            credential: Some(credential),
            removed: false,
        }
    }

    #[test]
    fn a_plan_asks_for_the_stale_keys_with_their_contexts_and_records_them_rewrapped() {
        let current = credential("vault:v1:secret", Some("vault:v1:access"));

        let plan = plan(&owner(), &current, 2).expect("both keys are stale");

        assert_eq!(
            plan.items(),
            [
                (
                    Ciphertext("vault:v1:secret".into()),
                    KeyContext::for_credential(&owner(), current.id)
                ),
                (
                    Ciphertext("vault:v1:access".into()),
                    KeyContext::for_access_key(&owner(), current.id)
                ),
            ]
        );
        let event = plan
            .rewrapped(vec![
                Ciphertext("vault:v2:secret".into()),
                Ciphertext("vault:v2:access".into()),
            ])
            .unwrap();
        assert_eq!(
            event,
            CredentialEvent::Rewrapped {
                credential_id: current.id,
                secret: Ciphertext("vault:v2:secret".into()),
                access_key: Some(Ciphertext("vault:v2:access".into())),
                key_version: 2,
            }
        );
    }

    #[test]
    fn only_the_stale_key_is_asked_for_and_the_current_one_is_kept() {
        let current = credential("vault:v2:new-secret", Some("vault:v1:access"));

        let plan = plan(&owner(), &current, 2).unwrap();

        assert_eq!(plan.items().len(), 1);
        assert_eq!(plan.items()[0].0, Ciphertext("vault:v1:access".into()));
        assert_eq!(
            plan.rewrapped(vec![Ciphertext("vault:v2:access".into())])
                .unwrap(),
            CredentialEvent::Rewrapped {
                credential_id: current.id,
                secret: Ciphertext("vault:v2:new-secret".into()),
                access_key: Some(Ciphertext("vault:v2:access".into())),
                key_version: 2,
            }
        );
    }

    #[test]
    fn keys_under_the_target_need_no_plan_and_a_short_answer_is_refused() {
        assert_eq!(
            plan(&owner(), &credential("vault:v2:secret", None), 2),
            None
        );
        assert_eq!(
            plan(&owner(), &credential("vault:v3:secret", None), 2),
            None
        );
        let plan = plan(&owner(), &credential("vault:v1:secret", None), 2).unwrap();
        assert!(matches!(
            plan.rewrapped(Vec::new()),
            Err(DomainError::ServiceFailed(Service::Keyring, _))
        ));
    }

    #[test]
    fn each_aggregate_plans_for_the_credentials_it_keeps_and_records_in_its_own_stream() {
        let current = credential("vault:v1:secret", None);
        let stranger = CredentialId(id(6));
        let own = own_stream(current.clone());
        let mut config = AiModelConfig {
            id: Some(owner()),
            ..AiModelConfig::default()
        };
        config.credentials.insert(current.id, current.clone());

        assert!(own.plan_rewrap(current.id, 2).unwrap().is_some());
        assert!(config.plan_rewrap(current.id, 2).unwrap().is_some());
        assert_eq!(
            own.plan_rewrap(stranger, 2),
            Err(DomainError::CredentialNotFound(stranger))
        );
        assert_eq!(
            config.plan_rewrap(stranger, 2),
            Err(DomainError::CredentialNotFound(stranger))
        );
        let removed = CredentialAggregate {
            credential: None,
            removed: true,
            ..own
        };
        assert_eq!(
            removed.plan_rewrap(current.id, 2),
            Err(DomainError::CredentialNotFound(current.id))
        );
        let event = CredentialEvent::Removed {
            credential_id: current.id,
        };
        assert_eq!(
            AiModelConfig::credential_event(event.clone()),
            ConfigEvent::Credential(event)
        );
    }
}
