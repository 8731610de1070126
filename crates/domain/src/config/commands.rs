use secrecy::SecretString;

use crate::credential::CredentialCommand;
use crate::ids::ConfigId;
use crate::values::{ModelName, ModelType, Provider, SystemPrompt, TaskName};

/// What the caller wants done with a model's key.
#[derive(Debug, Clone)]
pub enum KeyInput {
    /// Leave whatever key the model has.
    Keep,
    /// Remove the model's key.
    Remove,
    /// Either the ciphertext the service returned earlier (keeps the key) or a new key encrypted
    /// client-side with the workspace's public key (seed 000's `apiKeyEncrypted`).
    Encrypted(String),
    /// A plain key received over TLS.
    Plain(SecretString),
}

#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub provider: Provider,
    pub model_type: ModelType,
    pub model: ModelName,
    pub is_paid: bool,
    pub key: KeyInput,
}

/// What the caller wants done to a configuration.
#[derive(Debug, Clone)]
pub enum ConfigCommand {
    /// Create the configuration; refused when it exists.
    Create {
        id: ConfigId,
        models: Vec<ModelSpec>,
        system_prompt: Option<SystemPrompt>,
    },
    /// Replace the models wholesale; `system_prompt: None` leaves the prompt as it is,
    /// `Some(None)` clears it.
    Replace {
        models: Vec<ModelSpec>,
        system_prompt: Option<Option<SystemPrompt>>,
    },
    /// Seed 002's per-provider settings, several providers at once and all or nothing: each
    /// provider's model id and key. Creates the configuration, the provider's model and its
    /// credential as needed.
    SetProviderKeys {
        id: ConfigId,
        changes: Vec<ProviderKeyChange>,
    },
    /// Removes the key of a provider's chat model (seed 002); the model id stays.
    RemoveProviderKey { provider: Provider },
    /// Seed 004's "save a provider key": replaces the key the configuration keeps for the
    /// provider, or adds one. Decided here, so two saves racing for a provider with no key
    /// cannot both add one.
    SaveProviderKey {
        id: ConfigId,
        provider: Provider,
        secret: SecretString,
        /// The name a new credential is given (with a suffix if taken).
        name: String,
    },
    /// Replace the task → model assignments. Every provider named must have a key.
    AssignTasks {
        id: ConfigId,
        assignments: Vec<(TaskName, Provider, ModelName)>,
    },
    /// Forget everything the configuration holds, its workspace's keys having been destroyed
    /// (crypto-shredding); it can be created again afterwards. Nothing to do when it does not
    /// exist.
    Shred,
    /// Change, remove or record a test of a credential kept in this configuration.
    Credential(CredentialCommand),
}

/// One provider's part of [`ConfigCommand::SetProviderKeys`].
#[derive(Debug, Clone)]
pub struct ProviderKeyChange {
    pub provider: Provider,
    /// `None` keeps the current model id (or uses `default_model` for a new model).
    pub model: Option<ModelName>,
    pub default_model: ModelName,
    pub secret: Option<SecretString>,
    pub access_key: Option<SecretString>,
    pub endpoint: Option<String>,
    /// The name a new credential is given (with a suffix if taken).
    pub name: String,
}
