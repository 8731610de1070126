/// Why the aggregate refused a command. The API layer decides the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("an AI model configuration already exists")]
    ConfigAlreadyExists,
    #[error("no AI model configuration exists yet")]
    ConfigNotFound,
    #[error("repeats provider \"{provider}\", type \"{model_type}\" and model \"{model}\" of an earlier entry")]
    DuplicateModel {
        index: usize,
        provider: String,
        model_type: String,
        model: String,
    },
    #[error("models[{index}].apiKeyEncrypted does not decrypt with this workspace's encryption key (see GET /api/v1/encryption-key)")]
    UndecryptableKey { index: usize },
    #[error("models[{index}]'s key is empty once surrounding whitespace is removed")]
    EmptyKey { index: usize },
    #[error("a key is empty once surrounding whitespace is removed")]
    EmptyCredentialKey,
    #[error(
        "task \"{task}\" names provider \"{provider}\", for which this configuration has no key"
    )]
    ProviderNotConfigured { task: String, provider: String },
    #[error("task \"{task}\" is assigned twice")]
    DuplicateTask { task: String },
    #[error("no key is configured for {provider} yet: send one")]
    KeyRequired { provider: String },
    #[error("the credential changed while it was being tested; test it again")]
    CredentialChangedDuringTest,
    #[error("no credential with this id")]
    CredentialNotFound,
    #[error("a credential with this id already exists")]
    CredentialExists,
    #[error("the keyring is unavailable")]
    KeyringUnavailable(String),
    #[error("the keyring failed")]
    KeyringFailed(String),
}
