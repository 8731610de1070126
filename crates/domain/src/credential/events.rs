use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::credential::TestVerdict;
use crate::ids::{ConfigId, CredentialId};
use crate::values::{Ciphertext, CredentialName, KeyHint, Provider};

/// What happened to a credential, wherever it lives. Keys appear only as ciphertext and hint.
/// The names are those the log has always used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CredentialEvent {
    #[serde(rename = "CredentialAdded")]
    Added {
        credential_id: CredentialId,
        name: CredentialName,
        provider: Provider,
        #[serde(default)]
        endpoint: Option<String>,
        #[serde(default)]
        access_key: Option<Ciphertext>,
        #[serde(default)]
        access_key_hint: Option<KeyHint>,
        secret: Ciphertext,
        hint: KeyHint,
        #[serde(default)]
        number: Option<i64>,
        /// The configuration a credential with a stream of its own belongs to; absent for a
        /// credential recorded in its configuration's stream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<ConfigId>,
    },
    #[serde(rename = "CredentialRenamed")]
    Renamed {
        credential_id: CredentialId,
        name: CredentialName,
    },
    #[serde(rename = "CredentialProviderChanged")]
    ProviderChanged {
        credential_id: CredentialId,
        provider: Provider,
    },
    #[serde(rename = "CredentialEndpointChanged")]
    EndpointChanged {
        credential_id: CredentialId,
        endpoint: Option<String>,
    },
    #[serde(rename = "CredentialAccessKeyReplaced")]
    AccessKeyReplaced {
        credential_id: CredentialId,
        access_key: Ciphertext,
        access_key_hint: KeyHint,
    },
    #[serde(rename = "CredentialSecretReplaced")]
    SecretReplaced {
        credential_id: CredentialId,
        secret: Ciphertext,
        hint: KeyHint,
    },
    /// The credential's ciphertexts re-encrypted under a newer version of the workspace key
    /// (Vault's rewrap: the key never left Vault); names, hints and test results stay.
    #[serde(rename = "CredentialRewrapped")]
    Rewrapped {
        credential_id: CredentialId,
        secret: Ciphertext,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access_key: Option<Ciphertext>,
        key_version: u32,
    },
    #[serde(rename = "CredentialRemoved")]
    Removed { credential_id: CredentialId },
    /// The workspace was crypto-shredded: the key that sealed this credential is destroyed.
    /// Like a removal, its name is released and its id is never used again. Only a credential
    /// with a stream of its own records this; a configuration records its own
    /// `WorkspaceShredded` for the credentials it keeps.
    WorkspaceShredded { shredded_credential: CredentialId },
    /// The outcome of testing the credential against its provider. Version 2.0: builds before
    /// it stored `ok` in place of `verdict` (see the store's upcasting).
    #[serde(rename = "CredentialValidated")]
    Validated {
        credential_id: CredentialId,
        verdict: TestVerdict,
        status: Option<u16>,
        reason: String,
        checked_at: DateTime<Utc>,
    },
}

impl CredentialEvent {
    pub fn name(&self) -> &'static str {
        match self {
            CredentialEvent::Added { .. } => "CredentialAdded",
            CredentialEvent::Renamed { .. } => "CredentialRenamed",
            CredentialEvent::ProviderChanged { .. } => "CredentialProviderChanged",
            CredentialEvent::EndpointChanged { .. } => "CredentialEndpointChanged",
            CredentialEvent::AccessKeyReplaced { .. } => "CredentialAccessKeyReplaced",
            CredentialEvent::SecretReplaced { .. } => "CredentialSecretReplaced",
            CredentialEvent::Rewrapped { .. } => "CredentialRewrapped",
            CredentialEvent::Removed { .. } => "CredentialRemoved",
            CredentialEvent::WorkspaceShredded { .. } => "WorkspaceShredded",
            CredentialEvent::Validated { .. } => "CredentialValidated",
        }
    }

    /// The version of the event's shape, stored with it: a change of shape raises it, and the
    /// store upcasts what older builds wrote.
    pub fn version(&self) -> &'static str {
        match self {
            CredentialEvent::Validated { .. } => "2.0",
            _ => "1.0",
        }
    }

    pub fn credential_id(&self) -> CredentialId {
        match self {
            CredentialEvent::Added { credential_id, .. }
            | CredentialEvent::Renamed { credential_id, .. }
            | CredentialEvent::ProviderChanged { credential_id, .. }
            | CredentialEvent::EndpointChanged { credential_id, .. }
            | CredentialEvent::AccessKeyReplaced { credential_id, .. }
            | CredentialEvent::SecretReplaced { credential_id, .. }
            | CredentialEvent::Rewrapped { credential_id, .. }
            | CredentialEvent::Removed { credential_id }
            | CredentialEvent::WorkspaceShredded {
                shredded_credential: credential_id,
            }
            | CredentialEvent::Validated { credential_id, .. } => *credential_id,
        }
    }
}

impl cqrs_es::DomainEvent for CredentialEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        self.version().to_owned()
    }
}
