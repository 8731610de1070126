use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::ids::{ConfigId, CredentialId};
use crate::values::{Ciphertext, CredentialName, Provider};

/// What the caller wants done to a credential.
#[derive(Debug, Clone)]
pub enum CredentialCommand {
    /// Store a credential in a stream of its own (families B and D); its id names the stream.
    Add {
        owner: ConfigId,
        credential_id: CredentialId,
        credential: NewCredential,
    },
    Change {
        credential_id: CredentialId,
        change: CredentialChange,
    },
    Remove {
        credential_id: CredentialId,
    },
    /// Record the outcome of testing the credential against its provider.
    RecordTest {
        credential_id: CredentialId,
        outcome: TestOutcome,
    },
    /// Re-encrypt the credential's keys under `key_version` of the workspace key (or newer)
    /// where they are sealed under an older one; nothing to do where they are not.
    Rewrap {
        credential_id: CredentialId,
        key_version: u32,
    },
    /// Forget the credential: its workspace's keys were destroyed (crypto-shredding). Only a
    /// credential with a stream of its own takes this; a configuration is shredded whole.
    Shred {
        credential_id: CredentialId,
    },
}

impl CredentialCommand {
    pub fn credential_id(&self) -> CredentialId {
        match self {
            CredentialCommand::Add { credential_id, .. }
            | CredentialCommand::Change { credential_id, .. }
            | CredentialCommand::Remove { credential_id }
            | CredentialCommand::RecordTest { credential_id, .. }
            | CredentialCommand::Rewrap { credential_id, .. }
            | CredentialCommand::Shred { credential_id } => *credential_id,
        }
    }
}

/// A credential to create.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub name: NameChoice,
    pub provider: Provider,
    pub endpoint: Option<String>,
    pub access_key: Option<SecretString>,
    pub secret: SecretString,
}

/// Where a new credential's name comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameChoice {
    /// The caller's: refused when another credential of the workspace holds it.
    Given(CredentialName),
    /// The service's: on a clash it takes a distinguishing suffix instead.
    Generated {
        base: String,
        /// The credential's number follows the base (`… #14`).
        numbered: bool,
    },
}

/// What is given of a credential; `None` leaves that part as it is.
#[derive(Debug, Clone, Default)]
pub struct CredentialChange {
    pub name: Option<CredentialName>,
    pub provider: Option<Provider>,
    pub endpoint: Option<Option<String>>,
    pub access_key: Option<SecretString>,
    pub secret: Option<SecretString>,
}

/// What a test against the provider found, and what it tested.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    /// The secret and endpoint that were tested.
    pub tested_secret: Ciphertext,
    pub tested_endpoint: Option<String>,
    pub ok: bool,
    /// The provider's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why it failed or what succeeded, never containing the key.
    pub reason: String,
    pub checked_at: DateTime<Utc>,
}
