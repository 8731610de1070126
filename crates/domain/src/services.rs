//! Ports the aggregate needs from the outside world, implemented outside the domain.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use uuid::Uuid;

use crate::values::{Ciphertext, CredentialId, KeyHint, WorkspaceId};

/// Binds a ciphertext to the credential it belongs to (Vault transit's derivation context), so a
/// ciphertext copied to another credential or tenant does not decrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyContext(String);

impl KeyContext {
    /// `aggregate` is the aggregate id (`<workspace>/<owner>`).
    pub fn for_credential(aggregate: &str, credential: CredentialId) -> Self {
        KeyContext(format!("aimc:{aggregate}:{credential}"))
    }

    /// A system fallback key of the given provider.
    pub fn for_system_key(provider: &str) -> Self {
        KeyContext(format!("aimc:system:{provider}"))
    }

    /// The optional access key (AWS-style key id) of a credential, bound separately from its
    /// secret so the two cannot be swapped.
    pub fn for_access_key(aggregate: &str, credential: CredentialId) -> Self {
        KeyContext(format!("aimc:{aggregate}:{credential}:access_key"))
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

pub struct ConfigServices {
    pub sealer: Arc<dyn KeySealer>,
    pub ids: Arc<dyn IdSource>,
}
