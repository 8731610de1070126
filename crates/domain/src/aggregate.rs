use std::collections::{BTreeMap, HashMap, HashSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::commands::{AiModelConfigCommand, KeyInput, ModelSpec};
use crate::error::DomainError;
use crate::events::AiModelConfigEvent;
use secrecy::SecretString;

use crate::services::{ConfigServices, KeyContext, SealError, SealRequest, SealedKey};
use crate::values::{
    Ciphertext, CredentialId, KeyHint, ModelId, ModelName, ModelType, Provider, SystemPrompt,
    TaskName,
};

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

impl Model {
    fn identity(&self) -> (Provider, ModelType, &str) {
        (self.provider, self.model_type, self.model.as_str())
    }
}

/// A stored key. Only its ciphertext and hint are ever held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub id: CredentialId,
    pub name: String,
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
    pub checked_at: String,
}

/// The AI settings of one owner (a person or the workspace) in one workspace.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiModelConfig {
    /// `<workspace>/<owner>` once created.
    pub id: Option<String>,
    pub models: Vec<Model>,
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
}

/// What a replacement does to one requested model, decided before any key is sealed so that a
/// refused command has touched nothing.
enum ModelPlan {
    Add {
        model_id: ModelId,
        spec: ModelSpec,
        new_key: Option<(CredentialId, usize)>,
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

enum KeyPlan {
    Unchanged,
    Remove(CredentialId),
    Replace(CredentialId, usize),
    Add(CredentialId, usize),
}

impl Aggregate for AiModelConfig {
    const TYPE: &'static str = "AiModelConfig";
    type Command = AiModelConfigCommand;
    type Event = AiModelConfigEvent;
    type Error = DomainError;
    type Services = ConfigServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            AiModelConfigCommand::CreateConfig {
                id,
                models,
                system_prompt,
                numbers,
            } => {
                if self.is_created() {
                    return Err(DomainError::ConfigAlreadyExists);
                }
                let aggregate_id = id.to_string();
                let empty = AiModelConfig {
                    id: Some(aggregate_id),
                    ..AiModelConfig::default()
                };
                let mut events = vec![AiModelConfigEvent::ConfigCreated {
                    workspace: id.workspace.to_string(),
                    owner: id.owner.to_string(),
                }];
                events.extend(empty.replacement_events(models, numbers, services).await?);
                if let Some(prompt) = system_prompt {
                    events.push(AiModelConfigEvent::SystemPromptChanged {
                        system_prompt: Some(prompt),
                    });
                }
                for event in events {
                    sink.write(event, self).await;
                }
                Ok(())
            }
            AiModelConfigCommand::ReplaceConfig {
                models,
                system_prompt,
                numbers,
            } => {
                if !self.is_created() {
                    return Err(DomainError::ConfigNotFound);
                }
                let mut events = self.replacement_events(models, numbers, services).await?;
                if let Some(prompt) = system_prompt {
                    if prompt != self.system_prompt {
                        events.push(AiModelConfigEvent::SystemPromptChanged {
                            system_prompt: prompt,
                        });
                    }
                }
                for event in events {
                    sink.write(event, self).await;
                }
                Ok(())
            }
            credential_command => {
                let creates = matches!(
                    credential_command,
                    AiModelConfigCommand::AddCredential { .. }
                        | AiModelConfigCommand::SetProviderKeys { .. }
                );
                if !creates && !self.is_created() {
                    return Err(DomainError::CredentialNotFound);
                }
                for event in self.credential_events(credential_command, services).await? {
                    sink.write(event, self).await;
                }
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        self.apply_event(event)
    }
}

impl AiModelConfig {
    /// Seals a credential's keys in one keyring call: the secret first, then the access key.
    async fn seal_credential_keys(
        &self,
        aggregate_id: &str,
        credential_id: CredentialId,
        access_key: Option<SecretString>,
        secret: Option<SecretString>,
        services: &ConfigServices,
    ) -> Result<(Option<SealedKey>, Option<SealedKey>), DomainError> {
        let mut requests = Vec::new();
        let has_secret = secret.is_some();
        if let Some(plain) = secret {
            requests.push(SealRequest::Plain {
                plain,
                context: KeyContext::for_credential(aggregate_id, credential_id),
            });
        }
        if let Some(plain) = access_key {
            requests.push(SealRequest::Plain {
                plain,
                context: KeyContext::for_access_key(aggregate_id, credential_id),
            });
        }
        if requests.is_empty() {
            return Ok((None, None));
        }
        let workspace = aggregate_id
            .split_once('/')
            .map(|(workspace, _)| workspace)
            .unwrap_or_default();
        let mut sealed = services
            .sealer
            .seal(&workspace_id(workspace), requests)
            .await
            .map_err(|error| match error {
                // Plain keys: position 0 is the secret when there is one, else the access key.
                SealError::EmptyKey { .. } | SealError::Undecryptable { .. } => {
                    DomainError::EmptyCredentialKey
                }
                SealError::Unavailable(reason) => DomainError::KeyringUnavailable(reason),
                SealError::Failed(reason) => DomainError::KeyringFailed(reason),
            })?
            .into_iter();
        let secret = if has_secret { sealed.next() } else { None };
        Ok((secret, sealed.next()))
    }

    async fn credential_events(
        &self,
        command: AiModelConfigCommand,
        services: &ConfigServices,
    ) -> Result<Vec<AiModelConfigEvent>, DomainError> {
        let mut events = Vec::new();
        match command {
            AiModelConfigCommand::AddCredential {
                id,
                credential_id,
                name,
                provider,
                endpoint,
                access_key,
                secret,
                number,
            } => {
                if self.credentials.contains_key(&credential_id) {
                    return Err(DomainError::CredentialExists);
                }
                let aggregate_id = id.to_string();
                if !self.is_created() {
                    events.push(AiModelConfigEvent::ConfigCreated {
                        workspace: id.workspace.to_string(),
                        owner: id.owner.to_string(),
                    });
                }
                let (secret, access_key) = self
                    .seal_credential_keys(
                        &aggregate_id,
                        credential_id,
                        access_key,
                        Some(secret),
                        services,
                    )
                    .await?;
                let secret = secret.ok_or_else(|| {
                    DomainError::KeyringFailed("no ciphertext for the secret".into())
                })?;
                events.push(AiModelConfigEvent::CredentialAdded {
                    credential_id,
                    name: name.as_str().to_owned(),
                    provider,
                    endpoint,
                    access_key_hint: access_key.as_ref().map(|key| key.hint.clone()),
                    access_key: access_key.map(|key| key.ciphertext),
                    secret: secret.ciphertext,
                    hint: secret.hint,
                    number,
                });
            }
            AiModelConfigCommand::ChangeCredential {
                credential_id,
                name,
                provider,
                endpoint,
                access_key,
                secret,
            } => {
                let current = self
                    .credentials
                    .get(&credential_id)
                    .ok_or(DomainError::CredentialNotFound)?;
                let aggregate_id = self.id.clone().unwrap_or_default();
                if let Some(name) = name.filter(|name| name.as_str() != current.name) {
                    events.push(AiModelConfigEvent::CredentialRenamed {
                        credential_id,
                        name: name.as_str().to_owned(),
                    });
                }
                if let Some(provider) = provider.filter(|provider| *provider != current.provider) {
                    events.push(AiModelConfigEvent::CredentialProviderChanged {
                        credential_id,
                        provider,
                    });
                }
                if let Some(endpoint) = endpoint.filter(|endpoint| *endpoint != current.endpoint) {
                    events.push(AiModelConfigEvent::CredentialEndpointChanged {
                        credential_id,
                        endpoint,
                    });
                }
                let (secret, access_key) = self
                    .seal_credential_keys(
                        &aggregate_id,
                        credential_id,
                        access_key,
                        secret,
                        services,
                    )
                    .await?;
                if let Some(key) = access_key {
                    events.push(AiModelConfigEvent::CredentialAccessKeyReplaced {
                        credential_id,
                        access_key: key.ciphertext,
                        access_key_hint: key.hint,
                    });
                }
                if let Some(key) = secret {
                    events.push(AiModelConfigEvent::CredentialSecretReplaced {
                        credential_id,
                        secret: key.ciphertext,
                        hint: key.hint,
                    });
                }
            }
            AiModelConfigCommand::RemoveCredential { credential_id } => {
                if !self.credentials.contains_key(&credential_id) {
                    return Err(DomainError::CredentialNotFound);
                }
                for model in self
                    .models
                    .iter()
                    .filter(|model| model.credential == Some(credential_id))
                {
                    events.push(AiModelConfigEvent::ModelCredentialDetached { model_id: model.id });
                }
                events.push(AiModelConfigEvent::CredentialRemoved { credential_id });
            }
            AiModelConfigCommand::SetProviderKeys { id, changes } => {
                let aggregate_id = id.to_string();
                if !self.is_created() {
                    events.push(AiModelConfigEvent::ConfigCreated {
                        workspace: id.workspace.to_string(),
                        owner: id.owner.to_string(),
                    });
                }
                let mut providers = HashSet::new();
                for change in changes {
                    if !providers.insert(change.provider) {
                        continue;
                    }
                    let crate::commands::ProviderKeyChange {
                        provider,
                        model,
                        default_model,
                        secret,
                        access_key,
                        endpoint,
                        new_credential,
                        new_name,
                        new_number,
                    } = change;
                    let current = self.models.iter().find(|existing| {
                        existing.provider == provider && existing.model_type == ModelType::Chat
                    });
                    let model_id = match current {
                        Some(existing) => {
                            if let Some(model) = model.filter(|model| *model != existing.model) {
                                events.push(AiModelConfigEvent::ModelIdChanged {
                                    model_id: existing.id,
                                    model,
                                });
                            }
                            existing.id
                        }
                        None => {
                            let model_id = ModelId(services.ids.next_id());
                            events.push(AiModelConfigEvent::ModelAdded {
                                model_id,
                                provider,
                                model_type: ModelType::Chat,
                                model: model.unwrap_or(default_model),
                                is_paid: provider != Provider::Ollama,
                            });
                            model_id
                        }
                    };
                    let credential = current.and_then(|existing| self.credential_of(existing));
                    let keys_given = secret.is_some() || access_key.is_some();
                    match credential {
                        Some(credential) => {
                            if let Some(endpoint) = endpoint
                                .filter(|endpoint| Some(endpoint) != credential.endpoint.as_ref())
                            {
                                events.push(AiModelConfigEvent::CredentialEndpointChanged {
                                    credential_id: credential.id,
                                    endpoint: Some(endpoint),
                                });
                            }
                            let (secret, access_key) = self
                                .seal_credential_keys(
                                    &aggregate_id,
                                    credential.id,
                                    access_key,
                                    secret,
                                    services,
                                )
                                .await?;
                            if let Some(key) = access_key {
                                events.push(AiModelConfigEvent::CredentialAccessKeyReplaced {
                                    credential_id: credential.id,
                                    access_key: key.ciphertext,
                                    access_key_hint: key.hint,
                                });
                            }
                            if let Some(key) = secret {
                                events.push(AiModelConfigEvent::CredentialSecretReplaced {
                                    credential_id: credential.id,
                                    secret: key.ciphertext,
                                    hint: key.hint,
                                });
                            }
                        }
                        None if keys_given => {
                            let Some(secret) = secret else {
                                return Err(DomainError::KeyRequired {
                                    provider: provider.as_str().to_owned(),
                                });
                            };
                            let (secret, access_key) = self
                                .seal_credential_keys(
                                    &aggregate_id,
                                    new_credential,
                                    access_key,
                                    Some(secret),
                                    services,
                                )
                                .await?;
                            let secret = secret.ok_or_else(|| {
                                DomainError::KeyringFailed("no ciphertext for the secret".into())
                            })?;
                            events.push(AiModelConfigEvent::CredentialAdded {
                                credential_id: new_credential,
                                name: new_name.as_str().to_owned(),
                                provider,
                                endpoint,
                                access_key_hint: access_key.as_ref().map(|key| key.hint.clone()),
                                access_key: access_key.map(|key| key.ciphertext),
                                secret: secret.ciphertext,
                                hint: secret.hint,
                                number: new_number,
                            });
                            events.push(AiModelConfigEvent::ModelCredentialAttached {
                                model_id,
                                credential_id: new_credential,
                            });
                        }
                        // Only the model id: it is recorded, and the provider keeps falling back to
                        // the workspace's or the system's key.
                        None => {}
                    }
                }
            }
            AiModelConfigCommand::AssignTasks { assignments } => {
                let mut seen = HashSet::new();
                for (task, provider, _) in &assignments {
                    if !seen.insert(task.clone()) {
                        return Err(DomainError::DuplicateTask {
                            task: task.as_str().to_owned(),
                        });
                    }
                    if !self
                        .credentials
                        .values()
                        .any(|credential| credential.provider == *provider)
                    {
                        return Err(DomainError::ProviderNotConfigured {
                            task: task.as_str().to_owned(),
                            provider: provider.as_str().to_owned(),
                        });
                    }
                }
                for task in self
                    .task_assignments
                    .keys()
                    .filter(|task| !seen.contains(*task))
                {
                    events.push(AiModelConfigEvent::TaskUnassigned { task: task.clone() });
                }
                for (task, provider, model) in assignments {
                    if self.task_assignments.get(&task) != Some(&(provider, model.clone())) {
                        events.push(AiModelConfigEvent::TaskAssigned {
                            task,
                            provider,
                            model,
                        });
                    }
                }
            }
            AiModelConfigCommand::RecordValidation {
                credential_id,
                tested,
                ok,
                status,
                reason,
                checked_at,
            } => {
                let credential = self
                    .credentials
                    .get(&credential_id)
                    .ok_or(DomainError::CredentialNotFound)?;
                // The credential changed while it was being tested: the outcome is about a
                // key or endpoint that no longer applies.
                if credential.secret != tested.0 || credential.endpoint != tested.1 {
                    return Err(DomainError::CredentialChangedDuringTest);
                }
                events.push(AiModelConfigEvent::CredentialValidated {
                    credential_id,
                    ok,
                    status,
                    reason,
                    checked_at,
                });
            }
            AiModelConfigCommand::CreateConfig { .. }
            | AiModelConfigCommand::ReplaceConfig { .. } => {
                unreachable!("configuration commands are handled in `handle`")
            }
        }
        Ok(events)
    }

    fn apply_event(&mut self, event: AiModelConfigEvent) {
        match event {
            AiModelConfigEvent::ConfigCreated { workspace, owner } => {
                self.id = Some(format!("{workspace}/{owner}"));
            }
            AiModelConfigEvent::ModelAdded {
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
            AiModelConfigEvent::ModelPaidFlagChanged { model_id, is_paid } => {
                if let Some(model) = self.model_mut(model_id) {
                    model.is_paid = is_paid;
                }
            }
            AiModelConfigEvent::ModelIdChanged { model_id, model } => {
                if let Some(existing) = self.model_mut(model_id) {
                    existing.model = model;
                }
            }
            AiModelConfigEvent::ModelRemoved { model_id } => {
                self.models.retain(|model| model.id != model_id);
            }
            AiModelConfigEvent::ModelsReordered { model_ids } => {
                self.models.sort_by_key(|model| {
                    model_ids
                        .iter()
                        .position(|id| *id == model.id)
                        .unwrap_or(usize::MAX)
                });
            }
            AiModelConfigEvent::CredentialAdded {
                credential_id,
                name,
                provider,
                endpoint,
                access_key,
                access_key_hint,
                secret,
                hint,
                number,
            } => {
                self.credentials.insert(
                    credential_id,
                    Credential {
                        id: credential_id,
                        name,
                        provider,
                        endpoint,
                        access_key,
                        access_key_hint,
                        secret,
                        hint,
                        last_validation: None,
                        number,
                    },
                );
            }
            AiModelConfigEvent::CredentialValidated {
                credential_id,
                ok,
                status,
                reason,
                checked_at,
            } => {
                if let Some(credential) = self.credentials.get_mut(&credential_id) {
                    credential.last_validation = Some(Validation {
                        ok,
                        status,
                        reason,
                        checked_at,
                    });
                }
            }
            AiModelConfigEvent::CredentialRenamed {
                credential_id,
                name,
            } => {
                if let Some(credential) = self.credentials.get_mut(&credential_id) {
                    credential.name = name;
                }
            }
            AiModelConfigEvent::CredentialProviderChanged {
                credential_id,
                provider,
            } => {
                if let Some(credential) = self.credentials.get_mut(&credential_id) {
                    credential.provider = provider;
                    credential.last_validation = None;
                }
            }
            AiModelConfigEvent::CredentialEndpointChanged {
                credential_id,
                endpoint,
            } => {
                if let Some(credential) = self.credentials.get_mut(&credential_id) {
                    credential.endpoint = endpoint;
                    credential.last_validation = None;
                }
            }
            AiModelConfigEvent::CredentialAccessKeyReplaced {
                credential_id,
                access_key,
                access_key_hint,
            } => {
                if let Some(credential) = self.credentials.get_mut(&credential_id) {
                    credential.access_key = Some(access_key);
                    credential.access_key_hint = Some(access_key_hint);
                    credential.last_validation = None;
                }
            }
            AiModelConfigEvent::CredentialSecretReplaced {
                credential_id,
                secret,
                hint,
            } => {
                if let Some(credential) = self.credentials.get_mut(&credential_id) {
                    credential.secret = secret;
                    credential.hint = hint;
                    // A test of the old key says nothing about the new one.
                    credential.last_validation = None;
                }
            }
            AiModelConfigEvent::CredentialRemoved { credential_id } => {
                self.credentials.remove(&credential_id);
                for model in &mut self.models {
                    if model.credential == Some(credential_id) {
                        model.credential = None;
                    }
                }
            }
            AiModelConfigEvent::ModelCredentialAttached {
                model_id,
                credential_id,
            } => {
                if let Some(model) = self.model_mut(model_id) {
                    model.credential = Some(credential_id);
                }
            }
            AiModelConfigEvent::ModelCredentialDetached { model_id } => {
                if let Some(model) = self.model_mut(model_id) {
                    model.credential = None;
                }
            }
            AiModelConfigEvent::SystemPromptChanged { system_prompt } => {
                self.system_prompt = system_prompt;
            }
            AiModelConfigEvent::TaskAssigned {
                task,
                provider,
                model,
            } => {
                self.task_assignments.insert(task, (provider, model));
            }
            AiModelConfigEvent::TaskUnassigned { task } => {
                self.task_assignments.remove(&task);
            }
        }
    }
}

impl AiModelConfig {
    fn model_mut(&mut self, id: ModelId) -> Option<&mut Model> {
        self.models.iter_mut().find(|model| model.id == id)
    }

    /// The events that turn the current models into `desired`: only the differences, and none
    /// when nothing changes. All new keys are sealed in one call to the keyring.
    async fn replacement_events(
        &self,
        desired: Vec<ModelSpec>,
        numbers: Vec<i64>,
        services: &ConfigServices,
    ) -> Result<Vec<AiModelConfigEvent>, DomainError> {
        let numbers = std::cell::RefCell::new(numbers.into_iter());
        let aggregate_id = self.id.clone().unwrap_or_default();
        let workspace = aggregate_id
            .split_once('/')
            .map(|(workspace, _)| workspace.to_owned())
            .unwrap_or_default();

        let mut seen = HashSet::new();
        for (index, spec) in desired.iter().enumerate() {
            if !seen.insert((
                spec.provider,
                spec.model_type,
                spec.model.as_str().to_owned(),
            )) {
                return Err(DomainError::DuplicateModel {
                    index,
                    provider: spec.provider.to_string(),
                    model_type: spec.model_type.as_str().to_owned(),
                    model: spec.model.as_str().to_owned(),
                });
            }
        }

        let mut seal_requests = Vec::new();
        // Which model (by request position) each seal request serves, to name it in errors.
        let mut request_owner = Vec::new();
        let mut queue_seal = |key: KeyInput, credential: CredentialId, index: usize| {
            let context = KeyContext::for_credential(&aggregate_id, credential);
            let request = match key {
                KeyInput::Encrypted(ciphertext) => SealRequest::ClientEncrypted {
                    ciphertext,
                    context,
                },
                KeyInput::Plain(plain) => SealRequest::Plain { plain, context },
                KeyInput::Keep | KeyInput::Remove => unreachable!("only new keys are sealed"),
            };
            seal_requests.push(request);
            request_owner.push(index);
            seal_requests.len() - 1
        };

        let mut plans = Vec::with_capacity(desired.len());
        for (index, mut spec) in desired.into_iter().enumerate() {
            let key = std::mem::replace(&mut spec.key, KeyInput::Keep);
            let existing = self.models.iter().find(|model| {
                model.identity() == (spec.provider, spec.model_type, spec.model.as_str())
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
                                    model.model.as_str().to_owned(),
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
                            Some((credential, queue_seal(key, credential, index)))
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
                            KeyPlan::Replace(credential.id, queue_seal(key, credential.id, index))
                        }
                        (key, None) => {
                            let credential = CredentialId(services.ids.next_id());
                            KeyPlan::Add(credential, queue_seal(key, credential, index))
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

        let sealed: Vec<SealedKey> = if seal_requests.is_empty() {
            Vec::new()
        } else {
            services
                .sealer
                .seal(&workspace_id(&workspace), seal_requests)
                .await
                .map_err(|error| match error {
                    SealError::Undecryptable { index } => DomainError::UndecryptableKey {
                        index: request_owner.get(index).copied().unwrap_or(index),
                    },
                    SealError::EmptyKey { index } => DomainError::EmptyKey {
                        index: request_owner.get(index).copied().unwrap_or(index),
                    },
                    SealError::Unavailable(reason) => DomainError::KeyringUnavailable(reason),
                    SealError::Failed(reason) => DomainError::KeyringFailed(reason),
                })?
        };
        let sealed_at = |position: usize| {
            sealed.get(position).cloned().ok_or_else(|| {
                DomainError::KeyringFailed("the keyring returned fewer keys than asked".into())
            })
        };

        let owner = aggregate_id
            .split_once('/')
            .map(|(_, owner)| owner)
            .unwrap_or("");
        let credential_added = |credential_id: CredentialId, spec: &ModelSpec, key: SealedKey| {
            AiModelConfigEvent::CredentialAdded {
                credential_id,
                name: format!("{owner} {} {}", spec.provider, spec.model.as_str()),
                provider: spec.provider,
                endpoint: None,
                access_key: None,
                access_key_hint: None,
                secret: key.ciphertext,
                hint: key.hint,
                number: numbers.borrow_mut().next(),
            }
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
        let desired_ids: Vec<ModelId> = plans
            .iter()
            .map(|plan| match plan {
                ModelPlan::Add { model_id, .. } | ModelPlan::Keep { model_id, .. } => *model_id,
            })
            .collect();
        for model in &self.models {
            if !desired_ids.contains(&model.id) {
                events.push(AiModelConfigEvent::ModelRemoved { model_id: model.id });
                if let Some(credential_id) = model.credential {
                    if !inherited.values().any(|moved| *moved == credential_id) {
                        events.push(AiModelConfigEvent::CredentialRemoved { credential_id });
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
                    events.push(AiModelConfigEvent::ModelAdded {
                        model_id,
                        provider: spec.provider,
                        model_type: spec.model_type,
                        model: spec.model.clone(),
                        is_paid: spec.is_paid,
                    });
                    if let Some((credential_id, position)) = new_key {
                        events.push(credential_added(credential_id, &spec, sealed_at(position)?));
                        events.push(AiModelConfigEvent::ModelCredentialAttached {
                            model_id,
                            credential_id,
                        });
                    } else if let Some(credential_id) = inherited.get(&model_id) {
                        events.push(AiModelConfigEvent::ModelCredentialAttached {
                            model_id,
                            credential_id: *credential_id,
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
                        events.push(AiModelConfigEvent::ModelPaidFlagChanged {
                            model_id,
                            is_paid: spec.is_paid,
                        });
                    }
                    match key {
                        KeyPlan::Unchanged => {}
                        KeyPlan::Remove(credential_id) => {
                            events.push(AiModelConfigEvent::ModelCredentialDetached { model_id });
                            events.push(AiModelConfigEvent::CredentialRemoved { credential_id });
                        }
                        KeyPlan::Replace(credential_id, position) => {
                            let key = sealed_at(position)?;
                            events.push(AiModelConfigEvent::CredentialSecretReplaced {
                                credential_id,
                                secret: key.ciphertext,
                                hint: key.hint,
                            });
                        }
                        KeyPlan::Add(credential_id, position) => {
                            events.push(credential_added(
                                credential_id,
                                &spec,
                                sealed_at(position)?,
                            ));
                            events.push(AiModelConfigEvent::ModelCredentialAttached {
                                model_id,
                                credential_id,
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
            events.push(AiModelConfigEvent::ModelsReordered {
                model_ids: desired_ids,
            });
        }
        Ok(events)
    }
}

fn workspace_id(raw: &str) -> crate::values::WorkspaceId {
    // The aggregate id was built from a parsed WorkspaceId, so this cannot fail.
    crate::values::WorkspaceId::parse(raw).expect("aggregate ids hold valid workspace ids")
}

#[cfg(test)]
mod tests;
