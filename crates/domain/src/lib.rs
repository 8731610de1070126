//! The `AiModelConfig` aggregate: what a person or a workspace has configured for AI providers.
//!
//! Pure domain code: no I/O. Encryption reaches the aggregate only through the [`KeySealer`]
//! port in [`ConfigServices`], which the keyring crate implements.

mod aggregate;
mod commands;
mod error;
mod events;
mod services;
mod values;

pub use aggregate::{AiModelConfig, Credential, Model, Validation};
pub use commands::{AiModelConfigCommand, KeyInput, ModelSpec, ProviderKeyChange};
pub use error::DomainError;
pub use events::AiModelConfigEvent;
pub use services::{
    ConfigServices, IdSource, KeyContext, KeySealer, RandomIds, SealError, SealRequest, SealedKey,
};
pub use values::{
    AggregateId, Ciphertext, CredentialId, CredentialName, KeyHint, ModelId, ModelName, ModelType,
    Owner, Provider, SystemPrompt, TaskName, ValueError, WorkspaceId,
};
