//! Ports: what the aggregates need from the outside world, implemented outside the domain
//! (sealing by the keyring crate, names and numbers by the store).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use uuid::Uuid;

use crate::error::{DomainError, Service};
use crate::ids::{ConfigId, CredentialId, WorkspaceId};
use crate::values::{Ciphertext, KeyHint, NameKey, Provider};

/// Binds a ciphertext to the credential it belongs to (Vault transit's derivation context), so a
/// ciphertext copied to another credential or tenant does not decrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyContext(String);

impl KeyContext {
    /// A credential's secret, bound to the configuration it belongs to.
    pub fn for_credential(config: &ConfigId, credential: CredentialId) -> Self {
        KeyContext(format!("aimc:{config}:{credential}"))
    }

    /// A system fallback key of the given provider.
    pub fn for_system_key(provider: &str) -> Self {
        KeyContext(format!("aimc:system:{provider}"))
    }

    /// The optional access key (AWS-style key id) of a credential, bound separately from its
    /// secret so the two cannot be swapped.
    pub fn for_access_key(config: &ConfigId, credential: CredentialId) -> Self {
        KeyContext(format!("aimc:{config}:{credential}:access_key"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One key to seal under the workspace key.
pub enum SealRequest {
    /// Encrypted by the client with the workspace's public key (RSA-OAEP-SHA256, base64).
    ClientEncrypted {
        ciphertext: String,
        context: KeyContext,
    },
    /// Received in plain text over TLS.
    Plain {
        plain: SecretString,
        context: KeyContext,
    },
}

impl fmt::Debug for SealRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealRequest::ClientEncrypted { context, .. } => {
                write!(f, "ClientEncrypted({})", context.as_str())
            }
            SealRequest::Plain { context, .. } => write!(f, "Plain({})", context.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    pub ciphertext: Ciphertext,
    pub hint: KeyHint,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The request at this position did not decrypt with the workspace's public-key pair.
    #[error("key {index} could not be decrypted")]
    Undecryptable { index: usize },
    /// The key at this position is empty (or only whitespace).
    #[error("key {index} is empty")]
    EmptyKey { index: usize },
    #[error("the keyring is unavailable: {0}")]
    Unavailable(String),
    #[error("the keyring failed: {0}")]
    Failed(String),
}

/// Turns keys as received into ciphertext under the workspace key, with their hints.
/// All of a command's keys go in one call, so an implementation can batch them.
#[async_trait]
pub trait KeySealer: Send + Sync {
    async fn seal(
        &self,
        workspace: &WorkspaceId,
        requests: Vec<SealRequest>,
    ) -> Result<Vec<SealedKey>, SealError>;

    /// The same keys re-encrypted under the workspace key's latest version, in order; the
    /// plain keys never leave the keyring.
    async fn rewrap(
        &self,
        workspace: &WorkspaceId,
        items: Vec<(Ciphertext, KeyContext)>,
    ) -> Result<Vec<Ciphertext>, SealError>;
}

/// Why a registry port could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("the registry is unavailable: {0}")]
    Unavailable(String),
    #[error("the registry failed: {0}")]
    Failed(String),
}

impl From<RegistryError> for DomainError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Unavailable(reason) => {
                DomainError::Unavailable(Service::Registry, reason)
            }
            RegistryError::Failed(reason) => DomainError::ServiceFailed(Service::Registry, reason),
        }
    }
}

/// Credential names are unique per workspace, across owners and streams: the registry says
/// who holds a name. The claim itself is the registry row written with the credential's
/// events, so two writers racing for a name cannot both win; the loser's command is retried
/// and then finds the name taken.
#[async_trait]
pub trait CredentialNames: Send + Sync {
    /// The holder of each name, in order.
    async fn holders(
        &self,
        workspace: &WorkspaceId,
        names: &[NameKey],
    ) -> Result<Vec<Option<CredentialId>>, RegistryError>;
}

/// Small integer ids for credentials, for the API that numbers keys (seed 003); recorded in
/// the credential's first event so they survive rebuilds.
#[async_trait]
pub trait CredentialNumbers: Send + Sync {
    /// `count` fresh numbers, in one round trip.
    async fn next_numbers(&self, count: usize) -> Result<Vec<i64>, RegistryError>;
}

/// What the read side knows of an owner's credentials that live outside its configuration.
#[async_trait]
pub trait CredentialDirectory: Send + Sync {
    /// The providers any credential of the owner is for.
    async fn providers_with_keys(&self, owner: &ConfigId) -> Result<Vec<Provider>, RegistryError>;
}

/// Where new entity ids come from; tests substitute a predictable sequence.
pub trait IdSource: Send + Sync {
    fn next_id(&self) -> Uuid;
}

/// Time-ordered ids, so ids sort by creation.
pub struct RandomIds;

impl IdSource for RandomIds {
    fn next_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}

/// Everything the aggregates reach outside themselves.
#[derive(Clone)]
pub struct ConfigServices {
    pub sealer: Arc<dyn KeySealer>,
    pub ids: Arc<dyn IdSource>,
    pub names: Arc<dyn CredentialNames>,
    pub numbers: Arc<dyn CredentialNumbers>,
    pub directory: Arc<dyn CredentialDirectory>,
}

impl ConfigServices {
    /// Seals keys in one keyring call, mapping failures to the domain's words; `index` of an
    /// undecryptable or empty key is its position in `requests`.
    pub(crate) async fn seal(
        &self,
        workspace: &WorkspaceId,
        requests: Vec<SealRequest>,
    ) -> Result<Vec<SealedKey>, SealFailure> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let count = requests.len();
        let sealed = self
            .sealer
            .seal(workspace, requests)
            .await
            .map_err(|error| match error {
                SealError::Undecryptable { index } => SealFailure::Undecryptable(index),
                SealError::EmptyKey { index } => SealFailure::Empty(index),
                SealError::Unavailable(reason) => {
                    SealFailure::Domain(DomainError::Unavailable(Service::Keyring, reason))
                }
                SealError::Failed(reason) => {
                    SealFailure::Domain(DomainError::ServiceFailed(Service::Keyring, reason))
                }
            })?;
        if sealed.len() != count {
            return Err(SealFailure::Domain(DomainError::ServiceFailed(
                Service::Keyring,
                "the keyring returned fewer keys than asked".into(),
            )));
        }
        Ok(sealed)
    }
}

/// A failed seal, with the position of the key at fault where there is one.
#[derive(Debug)]
pub(crate) enum SealFailure {
    Undecryptable(usize),
    Empty(usize),
    Domain(DomainError),
}
