//! Encryption of stored keys: HashiCorp Vault / OpenBao transit ([`VaultKeyring`]) or a local
//! AES-256-GCM key ([`LocalKeyring`]) for single-node setups without Vault.
//!
//! Plain text lives only in [`SecretString`]s and zeroizing buffers, and never appears in an
//! error: errors carry Vault's status and message, not request or response bodies.

mod client_key;
mod local;
pub mod metrics;
mod sealer;
mod shared_calls;
mod vault;
mod vault_auth;

use async_trait::async_trait;
use secrecy::SecretString;

pub use aimc_domain::{Ciphertext, KeyContext, WorkspaceId};
pub use client_key::ClientKey;
pub use local::LocalKeyring;
pub use sealer::KeyringSealer;
pub use shared_calls::SharedCalls;
pub use vault::{VaultKeyring, VaultSettings};
pub use vault_auth::{SecretSource, VaultAuth};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The backend cannot be reached or is sealed; worth retrying later.
    #[error("keyring unavailable: {0}")]
    Unavailable(String),
    /// A ciphertext did not decrypt (tampered, foreign, or bound to another credential).
    #[error("ciphertext {index} does not decrypt")]
    Undecryptable { index: usize },
    /// Anything else the backend refused.
    #[error("keyring error: {0}")]
    Failed(String),
}

/// Where a stored ciphertext can be decrypted, for trusted services that decrypt keys in Vault
/// themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecryptionRecipe {
    pub mount: String,
    pub key_name: String,
    /// Base64 of the derivation context, as transit's `context` parameter expects it.
    pub context: String,
}

/// The versions of a workspace key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyVersions {
    pub latest: u32,
    pub min_decryption: u32,
}

fn rotation_unsupported() -> KeyringError {
    KeyringError::Failed("key rotation needs the Vault keyring (AIMC_KEYRING=vault)".into())
}

#[async_trait]
pub trait Keyring: Send + Sync {
    /// Encrypts each key under the workspace key, bound to its context; one backend round trip.
    async fn encrypt(
        &self,
        workspace: &WorkspaceId,
        items: Vec<(SecretString, KeyContext)>,
    ) -> Result<Vec<Ciphertext>, KeyringError>;

    /// Decrypts stored keys; one backend round trip.
    async fn decrypt(
        &self,
        workspace: &WorkspaceId,
        items: Vec<(Ciphertext, KeyContext)>,
    ) -> Result<Vec<SecretString>, KeyringError>;

    /// The public half of the workspace's key pair for client-side encryption.
    async fn client_key(&self, workspace: &WorkspaceId) -> Result<ClientKey, KeyringError>;

    /// Decrypts keys a client encrypted with [`Keyring::client_key`] (standard base64 of an
    /// RSA-OAEP-SHA256 ciphertext, optionally prefixed `vault:vN:`). `None` marks each one that
    /// does not decrypt.
    async fn decrypt_from_client(
        &self,
        workspace: &WorkspaceId,
        ciphertexts: Vec<String>,
    ) -> Result<Vec<Option<SecretString>>, KeyringError>;

    /// Whether the backend is ready to serve.
    async fn check(&self) -> Result<(), KeyringError>;

    /// The workspace key's versions: the one new ciphertexts use, and the oldest that still
    /// decrypts.
    async fn key_versions(&self, workspace: &WorkspaceId) -> Result<KeyVersions, KeyringError> {
        let _ = workspace;
        Err(rotation_unsupported())
    }

    /// Makes a new version of the workspace key the one new ciphertexts use.
    async fn rotate(&self, workspace: &WorkspaceId) -> Result<KeyVersions, KeyringError> {
        let _ = workspace;
        Err(rotation_unsupported())
    }

    /// Re-encrypts stored keys under the workspace key's latest version without revealing
    /// them (transit's rewrap); one backend round trip.
    async fn rewrap(
        &self,
        workspace: &WorkspaceId,
        items: Vec<(Ciphertext, KeyContext)>,
    ) -> Result<Vec<Ciphertext>, KeyringError> {
        let _ = (workspace, items);
        Err(rotation_unsupported())
    }

    /// Stops versions older than `version` from decrypting anything, rewrapped or not.
    async fn retire_versions_below(
        &self,
        workspace: &WorkspaceId,
        version: u32,
    ) -> Result<(), KeyringError> {
        let _ = (workspace, version);
        Err(rotation_unsupported())
    }

    /// Destroys the workspace's keys (crypto-shredding): nothing sealed under them, nor
    /// encrypted by clients with its public key, decrypts any more. A key already gone is no
    /// error, so a shred stopped halfway can be run again. The workspace gets new keys on its
    /// next use.
    async fn destroy_keys(&self, workspace: &WorkspaceId) -> Result<(), KeyringError> {
        let _ = workspace;
        Err(KeyringError::Failed(
            "crypto-shredding needs the Vault keyring (AIMC_KEYRING=vault): the local keyring \
             derives every workspace's key from one key"
                .into(),
        ))
    }

    /// How a trusted service would decrypt this workspace's ciphertexts itself, if it can.
    fn decryption_recipe(
        &self,
        workspace: &WorkspaceId,
        context: &KeyContext,
    ) -> Option<DecryptionRecipe>;
}

/// Splits `vault:v3:BASE64` (or `local:v3:BASE64`) into version and payload.
pub(crate) fn split_versioned(ciphertext: &str) -> Option<(u64, &str)> {
    let mut parts = ciphertext.splitn(3, ':');
    let _scheme = parts.next().filter(|s| *s == "vault" || *s == "local")?;
    let version = parts.next()?.strip_prefix('v')?.parse().ok()?;
    Some((version, parts.next()?))
}
