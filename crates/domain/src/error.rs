use crate::ids::CredentialId;
use crate::values::{CredentialName, ModelName, ModelType, Provider, TaskName};

/// A service the aggregate reaches through a port (see [`crate::ConfigServices`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Vault transit, or the local key: seals keys.
    Keyring,
    /// The name registry, credential numbers and directory, kept in the database.
    Registry,
}

/// Why the aggregate refused a command, in the domain's words. Each API family decides the
/// status and names its own fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("an AI model configuration already exists")]
    ConfigAlreadyExists,
    #[error("no AI model configuration exists yet")]
    ConfigNotFound,
    #[error("repeats provider \"{provider}\", type \"{}\" and model \"{}\" of an earlier entry", model_type.as_str(), model.as_str())]
    DuplicateModel {
        /// Position of the repeated model in the request.
        model_index: usize,
        provider: Provider,
        model_type: ModelType,
        model: ModelName,
    },
    /// A client-encrypted key that the workspace's key pair does not open.
    #[error(
        "the key of model {model_index} does not decrypt with this workspace's encryption key"
    )]
    UndecryptableKey { model_index: usize },
    #[error("the key of model {model_index} is empty once surrounding whitespace is removed")]
    EmptyModelKey { model_index: usize },
    #[error("a key is empty once surrounding whitespace is removed")]
    EmptyKey,
    #[error("task \"{}\" names provider \"{provider}\", for which this configuration has no key", task.as_str())]
    ProviderNotConfigured { task: TaskName, provider: Provider },
    #[error("task \"{}\" is assigned twice", task.as_str())]
    DuplicateTask { task: TaskName },
    #[error("no key is configured for {provider} yet: send one")]
    KeyRequired { provider: Provider },
    #[error("no key is stored for {provider}")]
    NoProviderKey { provider: Provider },
    #[error("the credential changed while it was being tested; test it again")]
    CredentialChangedDuringTest,
    #[error("no credential {0}")]
    CredentialNotFound(CredentialId),
    #[error("a credential with this id exists already")]
    CredentialExists,
    #[error("a credential named \"{name}\" exists already in this workspace")]
    NameTaken { name: CredentialName },
    #[error("no free name was found for the credential")]
    NoFreeName,
    #[error("the {0:?} is unavailable: {1}")]
    Unavailable(Service, String),
    #[error("the {0:?} failed: {1}")]
    ServiceFailed(Service, String),
}
