//! The history's entries, typed per event type: a union discriminated by `type`, so that a
//! generated client reads `details` as the fields that event has.

use aimc_store::HistoryEntry;
use chrono::{DateTime, Utc};
use poem_openapi::{Object, Union};
use serde::Deserialize;

use crate::problem::ApiError;

/// Each event type's details and entry (the details with what every entry has), and the
/// union of the entries.
macro_rules! history_events {
    ($(
        $(#[doc = $doc:literal])*
        $event:ident = $mapping:literal => $entry:ident, $details:ident {
            $($(#[$field_meta:meta])* $field:ident : $ty:ty),* $(,)?
        }
    )*) => {
        $(
            #[derive(Debug, Object, Deserialize)]
            pub struct $details {
                $($(#[$field_meta])* pub $field: $ty,)*
            }

            $(#[doc = $doc])*
            #[derive(Debug, Object)]
            pub struct $entry {
                /// The stream the change was recorded in: a configuration's
                /// (`<workspace>/<owner>`), or a credential's with a stream of its own
                /// (`<workspace>/credentials/<id>`); `owner` says whose settings changed.
                #[oai(rename = "aggregateId")]
                pub aggregate_id: String,
                /// Position of the event in that stream.
                pub sequence: i64,
                /// `user:<sub>` or `workspace`.
                pub owner: String,
                /// The `sub` of whoever made the change; absent for changes recorded without one.
                #[oai(skip_serializing_if_is_none)]
                pub actor: Option<String>,
                #[oai(rename = "requestId", skip_serializing_if_is_none)]
                pub request_id: Option<String>,
                #[oai(rename = "occurredAt")]
                pub occurred_at: DateTime<Utc>,
                pub details: $details,
            }
        )*

        /// One recorded change; `type` says which, and so which fields `details` has. Keys
        /// appear only as their hints.
        #[derive(Debug, Union)]
        #[oai(discriminator_name = "type", one_of)]
        pub enum HistoryEvent {
            $(
                #[oai(mapping = $mapping)]
                $event($entry),
            )*
        }

        impl HistoryEvent {
            fn typed(entry: HistoryEntry) -> Result<Self, serde_json::Error> {
                match entry.event_type.as_str() {
                    $(
                        $mapping => Ok(HistoryEvent::$event($entry {
                            details: serde_json::from_value(entry.details)?,
                            aggregate_id: entry.aggregate_id,
                            sequence: entry.sequence,
                            owner: entry.owner,
                            actor: entry.actor,
                            request_id: entry.request_id,
                            occurred_at: entry.occurred_at,
                        })),
                    )*
                    other => Err(serde::de::Error::custom(format!("unknown event type {other}"))),
                }
            }
        }
    };
}

history_events! {
    /// A configuration came to be.
    ConfigCreated = "ConfigCreated" => ConfigCreatedEntry, ConfigCreatedDetails {
        workspace: String,
        owner: String,
    }
    /// A model was added to a configuration.
    ModelAdded = "ModelAdded" => ModelAddedEntry, ModelAddedDetails {
        model_id: String,
        /// The provider, as resolve names it (`openai`, …).
        provider: String,
        model_type: String,
        model: String,
        is_paid: bool,
    }
    ModelPaidFlagChanged = "ModelPaidFlagChanged" => ModelPaidFlagChangedEntry, ModelPaidFlagChangedDetails {
        model_id: String,
        is_paid: bool,
    }
    ModelRemoved = "ModelRemoved" => ModelRemovedEntry, ModelRemovedDetails {
        model_id: String,
    }
    /// The provider's model id of a model changed (e.g. gpt-4 to gpt-4o).
    ModelIdChanged = "ModelIdChanged" => ModelIdChangedEntry, ModelIdChangedDetails {
        model_id: String,
        model: String,
    }
    ModelsReordered = "ModelsReordered" => ModelsReorderedEntry, ModelsReorderedDetails {
        model_ids: Vec<String>,
    }
    /// A key was stored.
    CredentialAdded = "CredentialAdded" => CredentialAddedEntry, CredentialAddedDetails {
        credential_id: String,
        name: String,
        provider: String,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        endpoint: Option<String>,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        access_key_hint: Option<String>,
        hint: String,
        /// Its number in `/api/keys`.
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        number: Option<i64>,
        /// The configuration a key with a stream of its own belongs to.
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        owner: Option<String>,
    }
    CredentialRenamed = "CredentialRenamed" => CredentialRenamedEntry, CredentialRenamedDetails {
        credential_id: String,
        /// The new name.
        name: String,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        provider: Option<String>,
    }
    CredentialProviderChanged = "CredentialProviderChanged" => CredentialProviderChangedEntry, CredentialProviderChangedDetails {
        credential_id: String,
        /// The new provider.
        provider: String,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        name: Option<String>,
    }
    CredentialEndpointChanged = "CredentialEndpointChanged" => CredentialEndpointChangedEntry, CredentialEndpointChangedDetails {
        credential_id: String,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        endpoint: Option<String>,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        provider: Option<String>,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        name: Option<String>,
    }
    CredentialAccessKeyReplaced = "CredentialAccessKeyReplaced" => CredentialAccessKeyReplacedEntry, CredentialAccessKeyReplacedDetails {
        credential_id: String,
        access_key_hint: String,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        provider: Option<String>,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        name: Option<String>,
    }
    /// A key's secret was replaced: `hint` is the new one's, `previous_hint` the old one's.
    CredentialSecretReplaced = "CredentialSecretReplaced" => CredentialSecretReplacedEntry, CredentialSecretReplacedDetails {
        credential_id: String,
        hint: String,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        previous_hint: Option<String>,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        provider: Option<String>,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        name: Option<String>,
    }
    /// A key was re-encrypted under a newer version of the workspace key (a key rotation);
    /// the key itself, its hint and its test are unchanged.
    CredentialRewrapped = "CredentialRewrapped" => CredentialRewrappedEntry, CredentialRewrappedDetails {
        credential_id: String,
        /// The workspace key version the key is now encrypted under.
        key_version: u32,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        provider: Option<String>,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        name: Option<String>,
    }
    CredentialRemoved = "CredentialRemoved" => CredentialRemovedEntry, CredentialRemovedDetails {
        credential_id: String,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        provider: Option<String>,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        name: Option<String>,
    }
    /// A key was tested against its provider.
    CredentialValidated = "CredentialValidated" => CredentialValidatedEntry, CredentialValidatedDetails {
        credential_id: String,
        /// Whether the provider accepted the key.
        ok: bool,
        /// `valid`, `refused` (the provider answered 401 or 403) or `inconclusive` (it could
        /// not be reached, or failed for a reason of its own); absent from entries recorded
        /// before tests recorded it.
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        verdict: Option<String>,
        /// The provider's HTTP status; absent when it could not be reached.
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        status: Option<u16>,
        reason: String,
        checked_at: DateTime<Utc>,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        provider: Option<String>,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        name: Option<String>,
    }
    ModelCredentialAttached = "ModelCredentialAttached" => ModelCredentialAttachedEntry, ModelCredentialAttachedDetails {
        model_id: String,
        credential_id: String,
    }
    ModelCredentialDetached = "ModelCredentialDetached" => ModelCredentialDetachedEntry, ModelCredentialDetachedDetails {
        model_id: String,
    }
    SystemPromptChanged = "SystemPromptChanged" => SystemPromptChangedEntry, SystemPromptChangedDetails {
        /// Absent when the prompt was cleared.
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        system_prompt: Option<String>,
    }
    TaskAssigned = "TaskAssigned" => TaskAssignedEntry, TaskAssignedDetails {
        task: String,
        provider: String,
        model: String,
    }
    TaskUnassigned = "TaskUnassigned" => TaskUnassignedEntry, TaskUnassignedDetails {
        task: String,
    }
    /// The workspace was crypto-shredded (`aimc workspace shred`): its keys were destroyed, so
    /// nothing recorded before decrypts any more, and every hint in the stream's earlier
    /// entries reads `****`. Recorded once in each of its streams.
    WorkspaceShredded = "WorkspaceShredded" => WorkspaceShreddedEntry, WorkspaceShreddedDetails {
        /// In a configuration's stream: the credentials it held.
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        shredded_credentials: Option<Vec<String>>,
        /// In a credential's own stream: which credential.
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        shredded_credential: Option<String>,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        provider: Option<String>,
        #[oai(skip_serializing_if_is_none)]
        #[serde(default)]
        name: Option<String>,
    }
}

impl TryFrom<HistoryEntry> for HistoryEvent {
    type Error = ApiError;

    /// An entry the types do not describe is a bug of ours, not the caller's: a 500 naming
    /// the entry in the log.
    fn try_from(entry: HistoryEntry) -> Result<Self, ApiError> {
        let at = format!("{}#{}", entry.aggregate_id, entry.sequence);
        HistoryEvent::typed(entry)
            .map_err(|error| ApiError::internal(format!("history entry {at}: {error}")))
    }
}

/// "Who changed the OpenAI key": a secret replaced, as the history shows it.
pub(super) fn example() -> HistoryEvent {
    HistoryEvent::CredentialSecretReplaced(CredentialSecretReplacedEntry {
        aggregate_id: "acme/credentials/0193a8f2-7c1e-7d4a-9b2e-5f1c3d2a1b00".into(),
        sequence: 2,
        owner: "user:alice".into(),
        actor: Some("alice".into()),
        request_id: Some("0b6f3a52-9d0e-4c5e-8a51-2f4f0e1c7d10".into()),
        occurred_at: DateTime::from_timestamp(1_764_238_323, 0).unwrap_or_default(),
        details: CredentialSecretReplacedDetails {
            credential_id: "0193a8f2-7c1e-7d4a-9b2e-5f1c3d2a1b00".into(),
            hint: "sk-...bbbb".into(),
            previous_hint: Some("sk-...aaaa".into()),
            provider: Some("openai".into()),
            name: Some("alice OPENAI key #3".into()),
        },
    })
}
