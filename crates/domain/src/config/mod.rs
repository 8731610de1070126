//! `AiModelConfig`: the AI settings of one owner (a person or the workspace) in one workspace.
//!
//! Its stream holds the models, the system prompt, the task assignments and the credentials
//! that belong to the configuration itself: the keys of its models (families A and C) and of
//! its provider slots (family E). Decisions that span a model and its key, or a provider and
//! its key, are made here, against one stream, so they cannot race.
//!
//! Commands are split by group: [`models`] (seed 000's whole-configuration replacement),
//! [`provider_keys`] (seeds 002 and 004's per-provider keys), [`tasks`], and the credential
//! commands shared with [`crate::CredentialAggregate`].

mod commands;
mod events;
mod models;
mod provider_keys;
mod tasks;

use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use commands::{ConfigCommand, KeyInput, ModelSpec, ProviderKeyChange};
pub use events::ConfigEvent;

use crate::credential::{self, Credential, CredentialCommand, CredentialEvent};
use crate::error::DomainError;
use crate::ids::{ConfigId, CredentialId, ModelId};
use crate::services::ConfigServices;
use crate::values::{ModelName, ModelType, Provider, SystemPrompt, TaskName};

/// One model the owner uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub id: ModelId,
    pub provider: Provider,
    pub model_type: ModelType,
    pub model: ModelName,
    pub is_paid: bool,
    pub credential: Option<CredentialId>,
}

/// The AI settings of one owner in one workspace. Serialized as the snapshot and the
/// `config_view` document, in the shape earlier builds stored.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiModelConfig {
    /// Set once created.
    pub id: Option<ConfigId>,
    pub models: Vec<Model>,
    /// The credentials kept in this configuration's stream.
    pub credentials: BTreeMap<CredentialId, Credential>,
    pub system_prompt: Option<SystemPrompt>,
    /// Which provider and model serve each task.
    #[serde(default)]
    pub task_assignments: BTreeMap<TaskName, (Provider, ModelName)>,
}

impl AiModelConfig {
    pub fn is_created(&self) -> bool {
        self.id.is_some()
    }

    pub fn credential_of(&self, model: &Model) -> Option<&Credential> {
        model.credential.and_then(|id| self.credentials.get(&id))
    }

    /// The chat model of a provider, where seed 002 keeps the provider's model id and key.
    pub fn chat_model_of(&self, provider: Provider) -> Option<&Model> {
        self.models
            .iter()
            .find(|model| model.provider == provider && model.model_type == ModelType::Chat)
    }

    /// The key kept here for a provider: the newest credential of the provider (ids are
    /// time-ordered).
    pub fn provider_key(&self, provider: Provider) -> Option<&Credential> {
        self.credentials
            .values()
            .rev()
            .find(|credential| credential.provider == provider)
    }

    fn model_mut(&mut self, id: ModelId) -> Option<&mut Model> {
        self.models.iter_mut().find(|model| model.id == id)
    }

    fn credential(&self, id: CredentialId) -> Result<(&ConfigId, &Credential), DomainError> {
        match (&self.id, self.credentials.get(&id)) {
            (Some(config), Some(credential)) => Ok((config, credential)),
            _ => Err(DomainError::CredentialNotFound(id)),
        }
    }

    /// A credential command against a credential kept here.
    async fn credential_command(
        &self,
        command: CredentialCommand,
        services: &ConfigServices,
    ) -> Result<Vec<ConfigEvent>, DomainError> {
        let (config, current) = self.credential(command.credential_id())?;
        if let CredentialCommand::Remove { credential_id } = command {
            return Ok(self.removal(credential_id));
        }
        let events = credential::decide(config, current, command, services).await?;
        Ok(events.into_iter().map(ConfigEvent::Credential).collect())
    }

    /// Removing a credential first detaches it from the models that use it.
    fn removal(&self, credential_id: CredentialId) -> Vec<ConfigEvent> {
        self.models
            .iter()
            .filter(|model| model.credential == Some(credential_id))
            .map(|model| ConfigEvent::ModelCredentialDetached { model_id: model.id })
            .chain([ConfigEvent::Credential(CredentialEvent::Removed {
                credential_id,
            })])
            .collect()
    }

    /// `events`, preceded by the creation of the configuration if it does not exist yet.
    fn creating_if_needed(&self, id: &ConfigId, mut events: Vec<ConfigEvent>) -> Vec<ConfigEvent> {
        if !self.is_created() && !events.is_empty() {
            events.insert(
                0,
                ConfigEvent::ConfigCreated {
                    workspace: id.workspace.clone(),
                    owner: id.owner.clone(),
                },
            );
        }
        events
    }
}

impl Aggregate for AiModelConfig {
    const TYPE: &'static str = "AiModelConfig";
    type Command = ConfigCommand;
    type Event = ConfigEvent;
    type Error = DomainError;
    type Services = ConfigServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = match command {
            ConfigCommand::Create {
                id,
                models,
                system_prompt,
            } => {
                if self.is_created() {
                    return Err(DomainError::ConfigAlreadyExists);
                }
                let created = AiModelConfig {
                    id: Some(id.clone()),
                    ..AiModelConfig::default()
                };
                let mut events = vec![ConfigEvent::ConfigCreated {
                    workspace: id.workspace.clone(),
                    owner: id.owner.clone(),
                }];
                events.extend(created.replacement(models, services).await?);
                if let Some(prompt) = system_prompt {
                    events.push(ConfigEvent::SystemPromptChanged {
                        system_prompt: Some(prompt),
                    });
                }
                events
            }
            ConfigCommand::Replace {
                models,
                system_prompt,
            } => {
                if !self.is_created() {
                    return Err(DomainError::ConfigNotFound);
                }
                let mut events = self.replacement(models, services).await?;
                if let Some(prompt) = system_prompt.filter(|p| *p != self.system_prompt) {
                    events.push(ConfigEvent::SystemPromptChanged {
                        system_prompt: prompt,
                    });
                }
                events
            }
            ConfigCommand::SetProviderKeys { id, changes } => {
                let events = self.set_provider_keys(&id, changes, services).await?;
                self.creating_if_needed(&id, events)
            }
            ConfigCommand::RemoveProviderKey { provider } => self.remove_provider_key(provider)?,
            ConfigCommand::SaveProviderKey {
                id,
                provider,
                secret,
                name,
            } => {
                let events = self
                    .save_provider_key(&id, provider, secret, name, services)
                    .await?;
                self.creating_if_needed(&id, events)
            }
            ConfigCommand::AssignTasks { id, assignments } => {
                let events = self.assign_tasks(&id, assignments, services).await?;
                self.creating_if_needed(&id, events)
            }
            ConfigCommand::Shred if self.is_created() => vec![ConfigEvent::WorkspaceShredded {
                shredded_credentials: self.credentials.keys().copied().collect(),
            }],
            ConfigCommand::Shred => Vec::new(),
            ConfigCommand::Credential(command) => {
                self.credential_command(command, services).await?
            }
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ConfigEvent::ConfigCreated { workspace, owner } => {
                self.id = Some(ConfigId::new(workspace, owner));
            }
            ConfigEvent::ModelAdded {
                model_id,
                provider,
                model_type,
                model,
                is_paid,
            } => self.models.push(Model {
                id: model_id,
                provider,
                model_type,
                model,
                is_paid,
                credential: None,
            }),
            ConfigEvent::ModelPaidFlagChanged { model_id, is_paid } => {
                if let Some(model) = self.model_mut(model_id) {
                    model.is_paid = is_paid;
                }
            }
            ConfigEvent::ModelIdChanged { model_id, model } => {
                if let Some(existing) = self.model_mut(model_id) {
                    existing.model = model;
                }
            }
            ConfigEvent::ModelRemoved { model_id } => {
                self.models.retain(|model| model.id != model_id);
            }
            ConfigEvent::ModelsReordered { model_ids } => {
                self.models.sort_by_key(|model| {
                    model_ids
                        .iter()
                        .position(|id| *id == model.id)
                        .unwrap_or(usize::MAX)
                });
            }
            ConfigEvent::ModelCredentialAttached {
                model_id,
                credential_id,
            } => {
                if let Some(model) = self.model_mut(model_id) {
                    model.credential = Some(credential_id);
                }
            }
            ConfigEvent::ModelCredentialDetached { model_id } => {
                if let Some(model) = self.model_mut(model_id) {
                    model.credential = None;
                }
            }
            ConfigEvent::SystemPromptChanged { system_prompt } => {
                self.system_prompt = system_prompt;
            }
            ConfigEvent::TaskAssigned {
                task,
                provider,
                model,
            } => {
                self.task_assignments.insert(task, (provider, model));
            }
            ConfigEvent::TaskUnassigned { task } => {
                self.task_assignments.remove(&task);
            }
            ConfigEvent::WorkspaceShredded { .. } => *self = AiModelConfig::default(),
            ConfigEvent::Credential(event) => {
                if let CredentialEvent::Removed { credential_id } = &event {
                    for model in &mut self.models {
                        if model.credential == Some(*credential_id) {
                            model.credential = None;
                        }
                    }
                }
                credential::apply(&mut self.credentials, event);
            }
        }
    }
}

#[cfg(test)]
mod tests;
