//! A key per provider: a person's (seed 002, kept with the provider's chat model) and a
//! workspace's (seed 004, kept in the configuration for the provider).

use std::collections::HashSet;

use secrecy::SecretString;

use super::{AiModelConfig, ConfigEvent, ProviderKeyChange};
use crate::credential::{self, CredentialEvent, NameChoice};
use crate::error::DomainError;
use crate::ids::{ConfigId, CredentialId, ModelId};
use crate::services::{ConfigServices, KeyContext, SealFailure, SealRequest, SealedKey};
use crate::values::{ModelType, Provider};

/// What setting one provider does, decided before its keys are sealed.
struct ProviderPlan {
    model_events: Vec<ConfigEvent>,
    model_id: ModelId,
    credential: CredentialPlan,
}

enum CredentialPlan {
    None,
    Existing {
        credential_id: CredentialId,
        endpoint: Option<String>,
        secret_at: Option<usize>,
        access_key_at: Option<usize>,
    },
    New {
        credential_id: CredentialId,
        provider: Provider,
        endpoint: Option<String>,
        name: String,
        secret_at: usize,
        access_key_at: Option<usize>,
    },
}

impl AiModelConfig {
    /// Seed 002's PUT: per provider, the chat model's id and its key, all sealed in one call.
    pub(super) async fn set_provider_keys(
        &self,
        id: &ConfigId,
        changes: Vec<ProviderKeyChange>,
        services: &ConfigServices,
    ) -> Result<Vec<ConfigEvent>, DomainError> {
        let mut requests = Vec::new();
        let mut queue = |plain: SecretString, context: KeyContext| {
            requests.push(SealRequest::Plain { plain, context });
            requests.len() - 1
        };
        let mut providers = HashSet::new();
        let mut plans = Vec::new();
        for change in changes {
            if !providers.insert(change.provider) {
                continue;
            }
            let ProviderKeyChange {
                provider,
                model,
                default_model,
                secret,
                access_key,
                endpoint,
                name,
            } = change;
            let current = self.chat_model_of(provider);
            let mut model_events = Vec::new();
            let model_id = match current {
                Some(existing) => {
                    if let Some(model) = model.filter(|model| *model != existing.model) {
                        model_events.push(ConfigEvent::ModelIdChanged {
                            model_id: existing.id,
                            model,
                        });
                    }
                    existing.id
                }
                None => {
                    let model_id = ModelId(services.ids.next_id());
                    model_events.push(ConfigEvent::ModelAdded {
                        model_id,
                        provider,
                        model_type: ModelType::Chat,
                        model: model.unwrap_or(default_model),
                        is_paid: provider != Provider::Ollama,
                    });
                    model_id
                }
            };
            let credential = match current.and_then(|model| self.credential_of(model)) {
                Some(existing) => CredentialPlan::Existing {
                    credential_id: existing.id,
                    endpoint: endpoint.filter(|e| Some(e) != existing.endpoint.as_ref()),
                    secret_at: secret
                        .map(|plain| queue(plain, KeyContext::for_credential(id, existing.id))),
                    access_key_at: access_key
                        .map(|plain| queue(plain, KeyContext::for_access_key(id, existing.id))),
                },
                None if secret.is_some() || access_key.is_some() => {
                    let Some(secret) = secret else {
                        return Err(DomainError::KeyRequired { provider });
                    };
                    let credential_id = CredentialId(services.ids.next_id());
                    CredentialPlan::New {
                        credential_id,
                        provider,
                        endpoint,
                        name,
                        secret_at: queue(secret, KeyContext::for_credential(id, credential_id)),
                        access_key_at: access_key.map(|plain| {
                            queue(plain, KeyContext::for_access_key(id, credential_id))
                        }),
                    }
                }
                // Only the model id: it is recorded, and the provider keeps falling back to the
                // workspace's or the system's key.
                None => CredentialPlan::None,
            };
            plans.push(ProviderPlan {
                model_events,
                model_id,
                credential,
            });
        }
        let sealed = seal_plain(services, id, requests).await?;
        let new: Vec<(CredentialId, NameChoice)> = plans
            .iter()
            .filter_map(|plan| match &plan.credential {
                CredentialPlan::New {
                    credential_id,
                    name,
                    ..
                } => Some((
                    *credential_id,
                    NameChoice::Generated {
                        base: name.clone(),
                        numbered: false,
                    },
                )),
                _ => None,
            })
            .collect();
        let mut named = credential::numbers_and_names(services, &id.workspace, &new)
            .await?
            .into_iter();

        let mut events = Vec::new();
        for plan in plans {
            events.extend(plan.model_events);
            match plan.credential {
                CredentialPlan::None => {}
                CredentialPlan::Existing {
                    credential_id,
                    endpoint,
                    secret_at,
                    access_key_at,
                } => {
                    if let Some(endpoint) = endpoint {
                        events.push(ConfigEvent::Credential(CredentialEvent::EndpointChanged {
                            credential_id,
                            endpoint: Some(endpoint),
                        }));
                    }
                    if let Some(at) = access_key_at {
                        let key = sealed[at].clone();
                        events.push(ConfigEvent::Credential(
                            CredentialEvent::AccessKeyReplaced {
                                credential_id,
                                access_key: key.ciphertext,
                                access_key_hint: key.hint,
                            },
                        ));
                    }
                    if let Some(at) = secret_at {
                        let key = sealed[at].clone();
                        events.push(ConfigEvent::Credential(CredentialEvent::SecretReplaced {
                            credential_id,
                            secret: key.ciphertext,
                            hint: key.hint,
                        }));
                    }
                }
                CredentialPlan::New {
                    credential_id,
                    provider,
                    endpoint,
                    secret_at,
                    access_key_at,
                    ..
                } => {
                    let (number, name) = named.next().ok_or(DomainError::NoFreeName)?;
                    events.push(ConfigEvent::Credential(credential::added(
                        credential_id,
                        name,
                        provider,
                        endpoint,
                        sealed[secret_at].clone(),
                        access_key_at.map(|at| sealed[at].clone()),
                        number,
                        None,
                    )));
                    events.push(ConfigEvent::ModelCredentialAttached {
                        model_id: plan.model_id,
                        credential_id,
                    });
                }
            }
        }
        Ok(events)
    }

    /// Seed 002's DELETE: the key of the provider's chat model goes, the model id stays.
    pub(super) fn remove_provider_key(
        &self,
        provider: Provider,
    ) -> Result<Vec<ConfigEvent>, DomainError> {
        let credential = self
            .chat_model_of(provider)
            .and_then(|model| self.credential_of(model))
            .ok_or(DomainError::NoProviderKey { provider })?;
        Ok(self.removal(credential.id))
    }

    /// Seed 004's save: the key kept here for the provider is replaced, or one is added.
    pub(super) async fn save_provider_key(
        &self,
        id: &ConfigId,
        provider: Provider,
        secret: SecretString,
        name: String,
        services: &ConfigServices,
    ) -> Result<Vec<ConfigEvent>, DomainError> {
        if let Some(current) = self.provider_key(provider) {
            let change = credential::CredentialChange {
                secret: Some(secret),
                ..credential::CredentialChange::default()
            };
            let events = credential::change(id, current, change, services).await?;
            return Ok(events.into_iter().map(ConfigEvent::Credential).collect());
        }
        let credential_id = CredentialId(services.ids.next_id());
        let sealed = seal_plain(
            services,
            id,
            vec![SealRequest::Plain {
                plain: secret,
                context: KeyContext::for_credential(id, credential_id),
            }],
        )
        .await?;
        let choice = NameChoice::Generated {
            base: name,
            numbered: false,
        };
        let (number, name) =
            credential::numbers_and_names(services, &id.workspace, &[(credential_id, choice)])
                .await?
                .pop()
                .ok_or(DomainError::NoFreeName)?;
        Ok(vec![ConfigEvent::Credential(credential::added(
            credential_id,
            name,
            provider,
            None,
            sealed[0].clone(),
            None,
            number,
            None,
        ))])
    }
}

/// Plain keys sealed in one call; an empty one is refused.
async fn seal_plain(
    services: &ConfigServices,
    id: &ConfigId,
    requests: Vec<SealRequest>,
) -> Result<Vec<SealedKey>, DomainError> {
    services
        .seal(&id.workspace, requests)
        .await
        .map_err(|failure| match failure {
            SealFailure::Undecryptable(_) | SealFailure::Empty(_) => DomainError::EmptyKey,
            SealFailure::Domain(error) => error,
        })
}
