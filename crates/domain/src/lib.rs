//! The domain of aimc: configurations of AI providers and models, and the credentials they
//! need, as event-sourced aggregates.
//!
//! Pure domain code: no I/O. What the aggregates need from outside (sealing keys, the name
//! registry, credential numbers) reaches them only through the ports in [`ConfigServices`].

mod config;
mod credential;
pub mod deadline;
mod error;
mod ids;
mod services;
#[cfg(test)]
mod testing;
mod values;

pub use config::{
    AiModelConfig, ConfigCommand, ConfigEvent, KeyInput, Model, ModelSpec, ProviderKeyChange,
};
pub use credential::{rewrap_error, RewrapPlan, RewrapsCredentials};
pub use credential::{
    Credential, CredentialAggregate, CredentialChange, CredentialCommand, CredentialEvent,
    NameChoice, NewCredential, TestOutcome, TestVerdict, Validation,
};
pub use error::{DomainError, Service};
pub use ids::{ConfigId, CredentialId, ModelId, Owner, StreamId, WorkspaceId};
pub use services::{
    ConfigServices, CredentialDirectory, CredentialNames, CredentialNumbers, IdSource, KeyContext,
    KeySealer, RandomIds, RegistryError, SealError, SealRequest, SealedKey,
};
pub use values::{
    Ciphertext, CredentialName, KeyHint, ModelName, ModelType, NameKey, Provider, SystemPrompt,
    TaskName, ValueError,
};
