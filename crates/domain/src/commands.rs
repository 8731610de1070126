use secrecy::SecretString;

use crate::values::{
    AggregateId, CredentialId, CredentialName, ModelName, ModelType, Provider, SystemPrompt,
    TaskName,
};

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
    /// A plain key received over TLS (families B–E).
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

#[derive(Debug, Clone)]
pub enum AiModelConfigCommand {
    /// Create the configuration; refused when it exists.
    CreateConfig {
        id: AggregateId,
        models: Vec<ModelSpec>,
        system_prompt: Option<SystemPrompt>,
        /// Integer ids for the credentials this may create, in order (see `AddCredential`).
        numbers: Vec<i64>,
    },
    /// Replace the models wholesale; `system_prompt: None` leaves the prompt as it is,
    /// `Some(None)` clears it.
    ReplaceConfig {
        models: Vec<ModelSpec>,
        system_prompt: Option<Option<SystemPrompt>>,
        /// Integer ids for the credentials this may create, in order (see `AddCredential`).
        numbers: Vec<i64>,
    },
    /// Store a named credential (families B–E); creates the configuration when it is the first
    /// thing stored. The id is chosen by the caller so the name can be claimed under it first.
    AddCredential {
        id: AggregateId,
        credential_id: CredentialId,
        name: CredentialName,
        provider: Provider,
        endpoint: Option<String>,
        access_key: Option<SecretString>,
        secret: SecretString,
        /// A small integer id for APIs that number keys (seed 003), drawn from a database
        /// sequence by the caller and kept in the event so it survives read-model rebuilds.
        number: Option<i64>,
    },
    /// Change what is given of a credential; `None` leaves that part as it is.
    ChangeCredential {
        credential_id: CredentialId,
        name: Option<CredentialName>,
        provider: Option<Provider>,
        endpoint: Option<Option<String>>,
        access_key: Option<SecretString>,
        secret: Option<SecretString>,
    },
    RemoveCredential {
        credential_id: CredentialId,
    },
    /// Seed 002's per-provider settings, several providers at once and all or nothing:
    /// each provider's model id and key. Creates the configuration, the provider's model and
    /// its credential as needed.
    SetProviderKeys {
        id: AggregateId,
        changes: Vec<ProviderKeyChange>,
    },
    /// Replace the task → model assignments. Every provider named must have a credential in
    /// this configuration.
    AssignTasks {
        assignments: Vec<(TaskName, Provider, ModelName)>,
    },
    /// Record the outcome of testing a credential against its provider.
    RecordValidation {
        credential_id: CredentialId,
        /// The secret and endpoint that were tested.
        tested: (crate::values::Ciphertext, Option<String>),
        ok: bool,
        /// The provider's HTTP status, when it answered.
        status: Option<u16>,
        /// Why it failed or what succeeded, never containing the key.
        reason: String,
        /// RFC 3339.
        checked_at: String,
    },
}

/// One provider's part of [`AiModelConfigCommand::SetProviderKeys`].
#[derive(Debug, Clone)]
pub struct ProviderKeyChange {
    pub provider: Provider,
    /// `None` keeps the current model id (or uses `default_model` for a new model).
    pub model: Option<ModelName>,
    pub default_model: ModelName,
    pub secret: Option<SecretString>,
    pub access_key: Option<SecretString>,
    pub endpoint: Option<String>,
    /// Id, (already claimed) name and integer id for the credential, if one has to be created.
    pub new_credential: CredentialId,
    pub new_name: CredentialName,
    pub new_number: Option<i64>,
}
