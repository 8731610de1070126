//! Seed 000's whole-configuration replacement: the models asked for, with their keys.
//!
//! Planned before anything is sealed, so a refused command has touched nothing; then every new
//! key is sealed in one keyring call, the new credentials get their numbers and names in one
//! registry lookup each, and the plan becomes events.

use std::collections::{HashMap, HashSet};

use super::{AiModelConfig, ConfigEvent, KeyInput, ModelSpec};
use crate::credential::{self, NameChoice};
use crate::error::DomainError;
use crate::ids::{CredentialId, ModelId};
use crate::services::{ConfigServices, KeyContext, SealFailure, SealRequest, SealedKey};
use crate::values::{CredentialName, Provider};

/// What a replacement does to one requested model.
enum ModelPlan {
    Add {
        model_id: ModelId,
        spec: ModelSpec,
        new_key: Option<NewKey>,
        /// No key was given, so it may take over the key of a removed model of its provider.
        may_inherit: bool,
        /// The stored ciphertext of a removed model's key was sent: that key moves here.
        reuse: Option<CredentialId>,
    },
    Keep {
        model_id: ModelId,
        spec: ModelSpec,
        key: KeyPlan,
    },
}

impl ModelPlan {
    fn model_id(&self) -> ModelId {
        match self {
            ModelPlan::Add { model_id, .. } | ModelPlan::Keep { model_id, .. } => *model_id,
        }
    }
}

enum KeyPlan {
    Unchanged,
    Remove(CredentialId),
    Replace(CredentialId, usize),
    Add(NewKey),
}

/// A credential to create for a model, and the position of its key among those sealed.
#[derive(Clone, Copy)]
struct NewKey {
    credential: CredentialId,
    sealed_at: usize,
}

/// The keys to seal, and which requested model each belongs to (to name it in errors).
#[derive(Default)]
struct SealQueue {
    requests: Vec<SealRequest>,
    owners: Vec<usize>,
}

impl SealQueue {
    fn push(&mut self, request: SealRequest, model_index: usize) -> usize {
        self.requests.push(request);
        self.owners.push(model_index);
        self.requests.len() - 1
    }
}

impl AiModelConfig {
    /// The events that turn the current models into `desired`: only the differences, and none
    /// when nothing changes.
    pub(super) async fn replacement(
        &self,
        desired: Vec<ModelSpec>,
        services: &ConfigServices,
    ) -> Result<Vec<ConfigEvent>, DomainError> {
        let config = self.id.clone().ok_or(DomainError::ConfigNotFound)?;
        let mut seen = HashSet::new();
        for (model_index, spec) in desired.iter().enumerate() {
            if !seen.insert((spec.provider, spec.model_type, spec.model.clone())) {
                return Err(DomainError::DuplicateModel {
                    model_index,
                    provider: spec.provider,
                    model_type: spec.model_type,
                    model: spec.model.clone(),
                });
            }
        }

        let mut queue = SealQueue::default();
        let mut plans = Vec::with_capacity(desired.len());
        for (model_index, mut spec) in desired.into_iter().enumerate() {
            let key = std::mem::replace(&mut spec.key, KeyInput::Keep);
            let seal = |key: KeyInput, credential: CredentialId, queue: &mut SealQueue| {
                let context = KeyContext::for_credential(&config, credential);
                let request = match key {
                    KeyInput::Encrypted(ciphertext) => SealRequest::ClientEncrypted {
                        ciphertext,
                        context,
                    },
                    KeyInput::Plain(plain) => SealRequest::Plain { plain, context },
                    KeyInput::Keep | KeyInput::Remove => unreachable!("only new keys are sealed"),
                };
                queue.push(request, model_index)
            };
            let existing = self.models.iter().find(|model| {
                (model.provider, model.model_type, &model.model)
                    == (spec.provider, spec.model_type, &spec.model)
            });
            let plan = match existing {
                None => {
                    let model_id = ModelId(services.ids.next_id());
                    let may_inherit = matches!(key, KeyInput::Keep);
                    let reuse = match &key {
                        KeyInput::Encrypted(ciphertext) => self
                            .models
                            .iter()
                            .filter(|model| model.provider == spec.provider)
                            .filter(|model| {
                                !seen.contains(&(
                                    model.provider,
                                    model.model_type,
                                    model.model.clone(),
                                ))
                            })
                            .filter_map(|model| self.credential_of(model))
                            .find(|credential| credential.secret.as_str() == ciphertext)
                            .map(|credential| credential.id),
                        _ => None,
                    };
                    let new_key = match key {
                        _ if reuse.is_some() => None,
                        KeyInput::Keep | KeyInput::Remove => None,
                        key => {
                            let credential = CredentialId(services.ids.next_id());
                            let sealed_at = seal(key, credential, &mut queue);
                            Some(NewKey {
                                credential,
                                sealed_at,
                            })
                        }
                    };
                    ModelPlan::Add {
                        model_id,
                        spec,
                        new_key,
                        may_inherit,
                        reuse,
                    }
                }
                Some(model) => {
                    let current = self.credential_of(model);
                    let key = match (key, current) {
                        (KeyInput::Keep, _) | (KeyInput::Remove, None) => KeyPlan::Unchanged,
                        (KeyInput::Remove, Some(credential)) => KeyPlan::Remove(credential.id),
                        (KeyInput::Encrypted(ciphertext), Some(credential))
                            if ciphertext == credential.secret.as_str() =>
                        {
                            KeyPlan::Unchanged
                        }
                        (key, Some(credential)) => {
                            KeyPlan::Replace(credential.id, seal(key, credential.id, &mut queue))
                        }
                        (key, None) => {
                            let credential = CredentialId(services.ids.next_id());
                            let sealed_at = seal(key, credential, &mut queue);
                            KeyPlan::Add(NewKey {
                                credential,
                                sealed_at,
                            })
                        }
                    };
                    ModelPlan::Keep {
                        model_id: model.id,
                        spec,
                        key,
                    }
                }
            };
            plans.push(plan);
        }

        let owners = queue.owners;
        let sealed = services
            .seal(&config.workspace, queue.requests)
            .await
            .map_err(|failure| match failure {
                SealFailure::Undecryptable(index) => DomainError::UndecryptableKey {
                    model_index: owners[index],
                },
                SealFailure::Empty(index) => DomainError::EmptyModelKey {
                    model_index: owners[index],
                },
                SealFailure::Domain(error) => error,
            })?;
        let new_credentials = self.name_new_credentials(&config, &plans, services).await?;
        Ok(self.events(plans, &sealed, new_credentials))
    }

    /// Numbers and names for the credentials the plans create, in one lookup each.
    async fn name_new_credentials(
        &self,
        config: &crate::ids::ConfigId,
        plans: &[ModelPlan],
        services: &ConfigServices,
    ) -> Result<HashMap<CredentialId, (i64, CredentialName)>, DomainError> {
        let new: Vec<(CredentialId, NameChoice)> = plans
            .iter()
            .filter_map(|plan| match plan {
                ModelPlan::Add {
                    spec,
                    new_key: Some(key),
                    ..
                }
                | ModelPlan::Keep {
                    spec,
                    key: KeyPlan::Add(key),
                    ..
                } => Some((
                    key.credential,
                    NameChoice::Generated {
                        base: format!(
                            "{} {} {}",
                            config.owner.label(),
                            spec.provider,
                            spec.model.as_str()
                        ),
                        numbered: false,
                    },
                )),
                _ => None,
            })
            .collect();
        let named = credential::numbers_and_names(services, &config.workspace, &new).await?;
        Ok(new
            .into_iter()
            .map(|(credential, _)| credential)
            .zip(named)
            .collect())
    }

    fn events(
        &self,
        plans: Vec<ModelPlan>,
        sealed: &[SealedKey],
        mut new_credentials: HashMap<CredentialId, (i64, CredentialName)>,
    ) -> Vec<ConfigEvent> {
        let mut credential_added = |key: NewKey, spec: &ModelSpec| {
            let (number, name) = new_credentials
                .remove(&key.credential)
                .expect("every new credential was named");
            ConfigEvent::Credential(credential::added(
                key.credential,
                name,
                spec.provider,
                None,
                sealed[key.sealed_at].clone(),
                None,
                number,
                None,
            ))
        };

        // Replacing gpt-4 by gpt-4o without sending a key keeps the provider's key: the key
        // moves to the new model instead of being removed with the old one.
        let kept: HashSet<ModelId> = plans
            .iter()
            .filter_map(|plan| match plan {
                ModelPlan::Keep { model_id, .. } => Some(*model_id),
                ModelPlan::Add { .. } => None,
            })
            .collect();
        let mut orphaned: Vec<(Provider, CredentialId)> = self
            .models
            .iter()
            .filter(|model| !kept.contains(&model.id))
            .filter_map(|model| Some((model.provider, model.credential?)))
            .collect();
        let mut inherited: HashMap<ModelId, CredentialId> = HashMap::new();
        for plan in &plans {
            if let ModelPlan::Add {
                model_id,
                reuse: Some(credential),
                ..
            } = plan
            {
                orphaned.retain(|(_, orphan)| orphan != credential);
                inherited.insert(*model_id, *credential);
            }
        }
        for plan in &plans {
            if let ModelPlan::Add {
                model_id,
                spec,
                new_key: None,
                may_inherit: true,
                ..
            } = plan
            {
                if let Some(position) = orphaned
                    .iter()
                    .position(|(provider, _)| *provider == spec.provider)
                {
                    inherited.insert(*model_id, orphaned.remove(position).1);
                }
            }
        }

        let mut events = Vec::new();
        let desired_ids: Vec<ModelId> = plans.iter().map(ModelPlan::model_id).collect();
        for model in &self.models {
            if !desired_ids.contains(&model.id) {
                events.push(ConfigEvent::ModelRemoved { model_id: model.id });
                if let Some(credential_id) = model.credential {
                    if !inherited.values().any(|moved| *moved == credential_id) {
                        events.push(ConfigEvent::Credential(
                            credential::CredentialEvent::Removed { credential_id },
                        ));
                    }
                }
            }
        }
        for plan in plans {
            match plan {
                ModelPlan::Add {
                    model_id,
                    spec,
                    new_key,
                    ..
                } => {
                    events.push(ConfigEvent::ModelAdded {
                        model_id,
                        provider: spec.provider,
                        model_type: spec.model_type,
                        model: spec.model.clone(),
                        is_paid: spec.is_paid,
                    });
                    let attached = match new_key {
                        Some(key) => {
                            events.push(credential_added(key, &spec));
                            Some(key.credential)
                        }
                        None => inherited.get(&model_id).copied(),
                    };
                    if let Some(credential_id) = attached {
                        events.push(ConfigEvent::ModelCredentialAttached {
                            model_id,
                            credential_id,
                        });
                    }
                }
                ModelPlan::Keep {
                    model_id,
                    spec,
                    key,
                } => {
                    let current = self.models.iter().find(|model| model.id == model_id);
                    if current.is_some_and(|model| model.is_paid != spec.is_paid) {
                        events.push(ConfigEvent::ModelPaidFlagChanged {
                            model_id,
                            is_paid: spec.is_paid,
                        });
                    }
                    match key {
                        KeyPlan::Unchanged => {}
                        KeyPlan::Remove(credential_id) => {
                            events.push(ConfigEvent::ModelCredentialDetached { model_id });
                            events.push(ConfigEvent::Credential(
                                credential::CredentialEvent::Removed { credential_id },
                            ));
                        }
                        KeyPlan::Replace(credential_id, position) => {
                            let key = sealed[position].clone();
                            events.push(ConfigEvent::Credential(
                                credential::CredentialEvent::SecretReplaced {
                                    credential_id,
                                    secret: key.ciphertext,
                                    hint: key.hint,
                                },
                            ));
                        }
                        KeyPlan::Add(key) => {
                            events.push(credential_added(key, &spec));
                            events.push(ConfigEvent::ModelCredentialAttached {
                                model_id,
                                credential_id: key.credential,
                            });
                        }
                    }
                }
            }
        }

        // Removals and additions leave survivors in their old order with newcomers last; say so
        // only when that is not the order asked for.
        let mut resulting: Vec<ModelId> = self
            .models
            .iter()
            .map(|model| model.id)
            .filter(|id| desired_ids.contains(id))
            .collect();
        resulting.extend(
            desired_ids
                .iter()
                .filter(|id| !self.models.iter().any(|model| model.id == **id)),
        );
        if resulting != desired_ids {
            events.push(ConfigEvent::ModelsReordered {
                model_ids: desired_ids,
            });
        }
        events
    }
}
