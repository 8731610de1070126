//! `audit_log`: who changed what and when, one entry per event, keys reduced to their hints.

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
}

/// The fold: every event is one entry.
pub(crate) fn row(
    place: &StreamPlace,
    sequence: i64,
    event: ViewedEvent<'_>,
    metadata: &EventMetadata,
) -> AuditRow {
    AuditRow {
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

        let entry = row(&place, 4, ViewedEvent::Credential(&event), &metadata);

        assert_eq!(entry.event_type, "CredentialAccessKeyReplaced");
        assert_eq!(entry.sequence, 4);
        assert_eq!(entry.actor.as_deref(), Some("alice"));
        assert_eq!(
            entry.details,
            serde_json::json!({"credential_id": Uuid::nil(), "access_key_hint": "AKI...1234"})
        );
    }
}
