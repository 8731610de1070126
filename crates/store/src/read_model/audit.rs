//! `audit_log`: who changed what and when, one entry per event, keys reduced to their hints.

use aimc_domain::{ConfigEvent, CredentialEvent};
use chrono::{DateTime, Utc};

use super::{EventMetadata, StreamPlace, ViewedEvent};

/// An `audit_log` row but its position, which the writer hands out per workspace.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AuditRow {
    pub workspace_id: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub owner: String,
    pub event_type: &'static str,
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub details: serde_json::Value,
    /// For a credential's entry: which credential, and its provider and name as they stood
    /// after the event, and the hint its secret had before. What the folds did not see (the
    /// credential's earlier events were projected by another command) the writer takes from
    /// the credential view as it stood before the statement.
    pub credential: Option<CredentialFacts>,
    /// The provider a model or a task assignment was added for.
    pub model_provider: Option<&'static str>,
}

/// The fields of an entry's details that tell something about a key.
pub(crate) const HINT_FIELDS: [&str; 3] = ["hint", "access_key_hint", "previous_hint"];
/// What a shredded stream's entries show in place of a hint: the mask of a key too short to
/// hint at, so readers of the history need no new shape.
pub(crate) const SHREDDED_HINT: &str = "****";

impl AuditRow {
    /// What crypto-shredding leaves of an entry: who did what and when, every hint masked.
    pub fn shred(&mut self) {
        if let Some(fields) = self.details.as_object_mut() {
            for field in HINT_FIELDS {
                if let Some(value) = fields.get_mut(field) {
                    *value = SHREDDED_HINT.into();
                }
            }
        }
        if let Some(facts) = &mut self.credential {
            facts.previous_hint = Some(SHREDDED_HINT.to_owned());
        }
    }
}

/// What a history reader needs to know about the credential an entry concerns.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CredentialFacts {
    pub credential_id: uuid::Uuid,
    pub provider: Option<&'static str>,
    pub name: Option<String>,
    pub previous_hint: Option<String>,
}

/// A credential as the audit fold has seen it so far in this projection.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub provider: &'static str,
    pub name: String,
    pub hint: String,
}

/// The facts of a credential entry, from the event and what was known before it.
pub(crate) fn facts(event: &CredentialEvent, before: Option<&Known>) -> CredentialFacts {
    use CredentialEvent as E;
    let mut facts = CredentialFacts {
        credential_id: event.credential_id().0,
        provider: before.map(|known| known.provider),
        name: before.map(|known| known.name.clone()),
        previous_hint: None,
    };
    match event {
        E::Added { name, provider, .. } => {
            facts.provider = Some(provider.as_str());
            facts.name = Some(name.as_str().to_owned());
        }
        E::Renamed { name, .. } => facts.name = Some(name.as_str().to_owned()),
        E::ProviderChanged { provider, .. } => facts.provider = Some(provider.as_str()),
        E::SecretReplaced { .. } => facts.previous_hint = before.map(|known| known.hint.clone()),
        _ => {}
    }
    facts
}

/// What the fold knows of the credential after the event; `None` once it is removed.
pub(crate) fn known_after(event: &CredentialEvent, before: Option<Known>) -> Option<Known> {
    use CredentialEvent as E;
    match event {
        E::Added {
            name,
            provider,
            hint,
            ..
        } => Some(Known {
            provider: provider.as_str(),
            name: name.as_str().to_owned(),
            hint: hint.as_str().to_owned(),
        }),
        E::Removed { .. } | E::WorkspaceShredded { .. } => None,
        E::Renamed { name, .. } => before.map(|known| Known {
            name: name.as_str().to_owned(),
            ..known
        }),
        E::ProviderChanged { provider, .. } => before.map(|known| Known {
            provider: provider.as_str(),
            ..known
        }),
        E::SecretReplaced { hint, .. } => before.map(|known| Known {
            hint: hint.as_str().to_owned(),
            ..known
        }),
        _ => before,
    }
}

/// The fold: every event is one entry.
pub(crate) fn row(
    place: &StreamPlace,
    sequence: i64,
    event: ViewedEvent<'_>,
    metadata: &EventMetadata,
    known: Option<&Known>,
) -> AuditRow {
    AuditRow {
        credential: event.credential().map(|event| facts(event, known)),
        model_provider: match event {
            ViewedEvent::Config(ConfigEvent::ModelAdded { provider, .. })
            | ViewedEvent::Config(ConfigEvent::TaskAssigned { provider, .. }) => {
                Some(provider.as_str())
            }
            _ => None,
        },
        workspace_id: place.workspace.clone(),
        aggregate_id: place.aggregate_id.clone(),
        sequence,
        owner: place.owner.clone(),
        event_type: event.name(),
        actor: metadata.actor.clone(),
        request_id: metadata.request_id.clone(),
        trace_id: metadata.trace_id.clone(),
        occurred_at: metadata.occurred_at,
        details: details(event),
    }
}

/// The event's fields as the audit trail shows them: ciphertexts dropped, hints kept.
fn details(event: ViewedEvent<'_>) -> serde_json::Value {
    let serialized = event.serialized();
    let mut details = match serialized {
        serde_json::Value::Object(mut tagged) => tagged
            .remove(event.name())
            .unwrap_or(serde_json::Value::Object(Default::default())),
        _ => serde_json::Value::Object(Default::default()),
    };
    if let Some(fields) = details.as_object_mut() {
        fields.remove("secret");
        fields.remove("access_key");
        // Entries have said `ok` since before tests recorded their verdict; they still do.
        if let Some(CredentialEvent::Validated { verdict, .. }) = event.credential() {
            fields.insert(
                "ok".into(),
                (*verdict == aimc_domain::TestVerdict::Valid).into(),
            );
        }
    }
    details
}

#[cfg(test)]
mod tests {
    use aimc_domain::{Ciphertext, CredentialEvent, CredentialId, KeyHint};
    use secrecy::SecretString;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn an_entry_keeps_who_when_and_the_hint_but_no_ciphertext() {
        let place = StreamPlace {
            aggregate_id: "acme/user:alice".into(),
            workspace: "acme".into(),
            owner: "user:alice".into(),
            is_config: true,
        };
        let metadata = EventMetadata {
            actor: Some("alice".into()),
            request_id: Some("req-1".into()),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            occurred_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        let event = CredentialEvent::AccessKeyReplaced {
            credential_id: CredentialId(Uuid::nil()),
            access_key: Ciphertext("vault:v1:secret-looking".into()),
            access_key_hint: KeyHint::from_plain(&SecretString::from("AKIAEXAMPLEKEY1234")),
        };

        let entry = row(&place, 4, ViewedEvent::Credential(&event), &metadata, None);

        assert_eq!(entry.event_type, "CredentialAccessKeyReplaced");
        assert_eq!(entry.sequence, 4);
        assert_eq!(entry.actor.as_deref(), Some("alice"));
        assert_eq!(
            entry.details,
            serde_json::json!({"credential_id": Uuid::nil(), "access_key_hint": "AKI...1234"})
        );
    }

    #[test]
    fn a_shredded_entry_keeps_who_and_when_with_every_hint_masked() {
        let place = StreamPlace {
            aggregate_id: "acme/credentials/00000000-0000-0000-0000-000000000000".into(),
            workspace: "acme".into(),
            owner: "user:alice".into(),
            is_config: false,
        };
        let metadata = EventMetadata {
            actor: Some("alice".into()),
            request_id: None,
            trace_id: None,
            occurred_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        let event = CredentialEvent::SecretReplaced {
            credential_id: CredentialId(Uuid::nil()),
            secret: Ciphertext("vault:v1:secret-looking".into()),
            hint: KeyHint::from_plain(&SecretString::from("sk-proj-0123456789abcd")),
        };
        let before = Known {
            provider: "openai",
            name: "alice key".into(),
            hint: "sk-...wxyz".into(),
        };
        let mut entry = row(
            &place,
            2,
            ViewedEvent::Credential(&event),
            &metadata,
            Some(&before),
        );
        assert_eq!(entry.details["hint"], "sk-...abcd");

        entry.shred();

        assert_eq!(entry.details["hint"], "****");
        assert_eq!(
            entry.credential.as_ref().unwrap().previous_hint.as_deref(),
            Some("****")
        );
        assert_eq!(entry.actor.as_deref(), Some("alice"));
        assert_eq!(entry.occurred_at, metadata.occurred_at);
        assert_eq!(entry.credential.unwrap().name.as_deref(), Some("alice key"));
    }
}
