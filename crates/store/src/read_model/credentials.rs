//! `credential_view` (one row per credential, whatever family stored it) and the name registry
//! `credential_names` (names unique per workspace), folded from the credential events.
//!
//! The view's fold needs no current row: each event becomes a change (insert, patch or
//! delete) and the changes of several events compose into one per credential, so a write
//! touches each row once and the rebuild needs none of the rows it has already written.

use std::collections::HashMap;

use aimc_domain::{CredentialEvent, CredentialName, NameKey};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{EventMetadata, StreamPlace};

/// A `credential_view` row; the field names are the column names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CredentialRow {
    pub credential_id: Uuid,
    pub number: Option<i64>,
    pub aggregate_id: String,
    pub workspace_id: String,
    pub owner: String,
    pub name: CredentialName,
    pub name_key: NameKey,
    pub provider: &'static str,
    pub endpoint: Option<String>,
    pub hint: String,
    /// The secret's ciphertext, for the operations that need it (tests against the provider,
    /// resolving with the `keys:ciphertext` scope).
    pub secret: String,
    pub access_key_hint: Option<String>,
    pub created_by: Option<String>,
    pub validated_ok: Option<bool>,
    pub validated_at: Option<DateTime<Utc>>,
    pub validation_note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The outcome of a test, as the view shows it; `None` in a patch clears it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TestedColumns {
    /// The verdict on the key: `None` when the test could not tell (the provider unreachable).
    pub ok: Option<bool>,
    pub note: String,
    pub at: DateTime<Utc>,
}

/// Columns an event changes; `None` leaves a column as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CredentialPatch {
    pub name: Option<CredentialName>,
    pub provider: Option<&'static str>,
    pub endpoint: Option<Option<String>>,
    pub hint: Option<String>,
    pub secret: Option<String>,
    pub access_key_hint: Option<String>,
    pub tested: Option<Option<TestedColumns>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl CredentialPatch {
    /// A change to how the credential reaches its provider voids its last test.
    fn untested(at: DateTime<Utc>) -> Self {
        CredentialPatch {
            tested: Some(None),
            updated_at: Some(at),
            ..CredentialPatch::default()
        }
    }

    /// `self`, then `later`.
    fn then(self, later: CredentialPatch) -> Self {
        CredentialPatch {
            name: later.name.or(self.name),
            provider: later.provider.or(self.provider),
            endpoint: later.endpoint.or(self.endpoint),
            hint: later.hint.or(self.hint),
            secret: later.secret.or(self.secret),
            access_key_hint: later.access_key_hint.or(self.access_key_hint),
            tested: later.tested.or(self.tested),
            updated_at: later.updated_at.or(self.updated_at),
        }
    }

    fn applied_to(self, mut row: CredentialRow) -> CredentialRow {
        if let Some(name) = self.name {
            row.name_key = name.key();
            row.name = name;
        }
        if let Some(provider) = self.provider {
            row.provider = provider;
        }
        if let Some(endpoint) = self.endpoint {
            row.endpoint = endpoint;
        }
        if let Some(hint) = self.hint {
            row.hint = hint;
        }
        if let Some(secret) = self.secret {
            row.secret = secret;
        }
        if let Some(hint) = self.access_key_hint {
            row.access_key_hint = Some(hint);
        }
        if let Some(tested) = self.tested {
            row.validated_ok = tested.as_ref().and_then(|t| t.ok);
            row.validation_note = tested.as_ref().map(|t| t.note.clone());
            row.validated_at = tested.map(|t| t.at);
        }
        if let Some(at) = self.updated_at {
            row.updated_at = at;
        }
        row
    }

    /// The changed columns by name, for `jsonb_populate_record` over the stored row.
    pub fn columns(&self) -> Value {
        let mut columns = Map::new();
        let mut set = |column: &str, value: Value| {
            columns.insert(column.to_owned(), value);
        };
        if let Some(name) = &self.name {
            set("name", name.as_str().into());
            set("name_key", name.key().as_str().into());
        }
        if let Some(provider) = self.provider {
            set("provider", provider.into());
        }
        if let Some(endpoint) = &self.endpoint {
            set("endpoint", endpoint.clone().into());
        }
        if let Some(hint) = &self.hint {
            set("hint", hint.as_str().into());
        }
        if let Some(secret) = &self.secret {
            set("secret", secret.as_str().into());
        }
        if let Some(hint) = &self.access_key_hint {
            set("access_key_hint", hint.as_str().into());
        }
        if let Some(tested) = &self.tested {
            set("validated_ok", tested.as_ref().and_then(|t| t.ok).into());
            set(
                "validation_note",
                tested.as_ref().map(|t| t.note.clone()).into(),
            );
            set(
                "validated_at",
                tested.as_ref().map(|t| t.at.to_rfc3339()).into(),
            );
        }
        if let Some(at) = self.updated_at {
            set("updated_at", at.to_rfc3339().into());
        }
        Value::Object(columns)
    }
}

/// What happens to one credential's row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CredentialChange {
    /// A new row; a row that exists already is kept (the first addition wins).
    Insert(Box<CredentialRow>),
    /// Some columns of the stored row; nothing when there is none.
    Patch(CredentialPatch),
    Delete,
}

impl CredentialChange {
    /// `self`, then `later`. Credential ids are never reused, so a row is not added after it
    /// was removed, nor added once patched.
    fn then(self, later: CredentialChange) -> Self {
        use CredentialChange::*;
        match (self, later) {
            (_, Delete) => Delete,
            (Insert(row), Patch(patch)) => Insert(Box::new(patch.applied_to(*row))),
            (Insert(row), Insert(_)) => Insert(row),
            (Patch(first), Patch(second)) => Patch(first.then(second)),
            (Patch(patch), Insert(_)) => Patch(patch),
            (Delete, Insert(row)) => Insert(row),
            (Delete, Patch(_)) => Delete,
        }
    }
}

/// The composed changes of any number of events, one per credential.
#[derive(Debug, Clone, Default)]
pub(crate) struct CredentialChanges {
    changes: HashMap<Uuid, CredentialChange>,
}

impl CredentialChanges {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    fn record(&mut self, credential: Uuid, change: CredentialChange) {
        let composed = match self.changes.remove(&credential) {
            Some(earlier) => earlier.then(change),
            None => change,
        };
        self.changes.insert(credential, composed);
    }

    pub fn credentials(&self) -> impl Iterator<Item = &Uuid> {
        self.changes.keys()
    }

    /// Takes in the changes of other credentials; see [`super::ReadModelChanges::absorb`].
    pub fn absorb(&mut self, other: CredentialChanges) {
        for (credential, change) in other.changes {
            self.record(credential, change);
        }
    }

    /// Sorted by credential, so concurrent writers lock rows in one order.
    pub fn sorted(&self) -> Vec<(&Uuid, &CredentialChange)> {
        let mut changes: Vec<_> = self.changes.iter().collect();
        changes.sort_by_key(|(id, _)| **id);
        changes
    }
}

/// The fold of `credential_view`.
pub(crate) fn apply(
    changes: &mut CredentialChanges,
    place: &StreamPlace,
    event: &CredentialEvent,
    metadata: &EventMetadata,
) {
    use CredentialEvent as E;
    let at = metadata.occurred_at;
    let (credential, change) = match event {
        E::Added {
            credential_id,
            name,
            provider,
            endpoint,
            access_key_hint,
            secret,
            hint,
            number,
            ..
        } => (
            credential_id.0,
            CredentialChange::Insert(Box::new(CredentialRow {
                credential_id: credential_id.0,
                number: *number,
                aggregate_id: place.aggregate_id.clone(),
                workspace_id: place.workspace.clone(),
                owner: place.owner.clone(),
                name: name.clone(),
                name_key: name.key(),
                provider: provider.as_str(),
                endpoint: endpoint.clone(),
                hint: hint.as_str().to_owned(),
                secret: secret.as_str().to_owned(),
                access_key_hint: access_key_hint.as_ref().map(|h| h.as_str().to_owned()),
                created_by: metadata.actor.clone(),
                validated_ok: None,
                validated_at: None,
                validation_note: None,
                created_at: at,
                updated_at: at,
            })),
        ),
        E::Renamed {
            credential_id,
            name,
        } => (
            credential_id.0,
            CredentialChange::Patch(CredentialPatch {
                name: Some(name.clone()),
                updated_at: Some(at),
                ..CredentialPatch::default()
            }),
        ),
        E::ProviderChanged {
            credential_id,
            provider,
        } => (
            credential_id.0,
            CredentialChange::Patch(CredentialPatch {
                provider: Some(provider.as_str()),
                ..CredentialPatch::untested(at)
            }),
        ),
        E::EndpointChanged {
            credential_id,
            endpoint,
        } => (
            credential_id.0,
            CredentialChange::Patch(CredentialPatch {
                endpoint: Some(endpoint.clone()),
                ..CredentialPatch::untested(at)
            }),
        ),
        E::SecretReplaced {
            credential_id,
            secret,
            hint,
        } => (
            credential_id.0,
            CredentialChange::Patch(CredentialPatch {
                hint: Some(hint.as_str().to_owned()),
                secret: Some(secret.as_str().to_owned()),
                ..CredentialPatch::untested(at)
            }),
        ),
        E::AccessKeyReplaced {
            credential_id,
            access_key_hint,
            ..
        } => (
            credential_id.0,
            CredentialChange::Patch(CredentialPatch {
                access_key_hint: Some(access_key_hint.as_str().to_owned()),
                ..CredentialPatch::untested(at)
            }),
        ),
        E::Validated {
            credential_id,
            verdict,
            reason,
            ..
        } => (
            credential_id.0,
            CredentialChange::Patch(CredentialPatch {
                tested: Some(Some(TestedColumns {
                    ok: verdict.works(),
                    note: reason.clone(),
                    at,
                })),
                ..CredentialPatch::default()
            }),
        ),
        // The same key under a newer key version: its hint, test and last change stand.
        E::Rewrapped {
            credential_id,
            secret,
            ..
        } => (
            credential_id.0,
            CredentialChange::Patch(CredentialPatch {
                secret: Some(secret.as_str().to_owned()),
                ..CredentialPatch::default()
            }),
        ),
        E::Removed { credential_id }
        | E::WorkspaceShredded {
            shredded_credential: credential_id,
        } => (credential_id.0, CredentialChange::Delete),
    };
    changes.record(credential, change);
}

/// Registry rows to write, each (workspace, name key) at most once.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NameChanges {
    /// (workspace, key, holder)
    pub taken: Vec<(String, NameKey, Uuid)>,
    /// (workspace, key, former holder)
    pub released: Vec<(String, NameKey, Uuid)>,
    /// (workspace, key, former holder, new holder)
    pub moved: Vec<(String, NameKey, Uuid, Uuid)>,
}

impl NameChanges {
    pub fn is_empty(&self) -> bool {
        self.taken.is_empty() && self.released.is_empty() && self.moved.is_empty()
    }
}

/// One workspace's names as the folds see them, and the holders last written of those changed
/// since. A name someone holds already stays theirs: their claim was made first.
#[derive(Debug, Default)]
pub(crate) struct NameRegistry {
    holders: HashMap<NameKey, Uuid>,
    /// Changed keys, with the holder the table has for them.
    written: HashMap<NameKey, Option<Uuid>>,
}

impl NameRegistry {
    /// A name the table holds already.
    pub fn known(&mut self, key: NameKey, holder: Uuid) {
        self.holders.entry(key).or_insert(holder);
    }

    fn register(&mut self, key: NameKey, holder: Uuid, emit: bool) {
        if self.holders.contains_key(&key) {
            return;
        }
        if emit {
            self.written.entry(key.clone()).or_insert(None);
        }
        self.holders.insert(key, holder);
    }

    /// Frees every name `holder` holds but `keep`.
    fn release(&mut self, holder: Uuid, keep: Option<&NameKey>, emit: bool) {
        let written = &mut self.written;
        self.holders.retain(|key, held_by| {
            let frees = *held_by == holder && Some(key) != keep;
            if frees && emit {
                written.entry(key.clone()).or_insert(Some(holder));
            }
            !frees
        });
    }

    pub fn take_changes(&mut self, workspace: &str, changes: &mut NameChanges) {
        let mut written: Vec<_> = self.written.drain().collect();
        written.sort();
        for (key, before) in written {
            match (before, self.holders.get(&key).copied()) {
                (None, Some(now)) => changes.taken.push((workspace.to_owned(), key, now)),
                (Some(before), None) => changes.released.push((workspace.to_owned(), key, before)),
                (Some(before), Some(now)) if before != now => {
                    changes.moved.push((workspace.to_owned(), key, before, now))
                }
                _ => {}
            }
        }
    }
}

/// The registry's fold; `emit` is false for events whose effects are stored already.
pub(crate) fn apply_names(registry: &mut NameRegistry, event: &CredentialEvent, emit: bool) {
    use CredentialEvent as E;
    match event {
        E::Added {
            credential_id,
            name,
            ..
        } => registry.register(name.key(), credential_id.0, emit),
        E::Renamed {
            credential_id,
            name,
        } => {
            let key = name.key();
            registry.release(credential_id.0, Some(&key), emit);
            registry.register(key, credential_id.0, emit);
        }
        E::Removed { credential_id }
        | E::WorkspaceShredded {
            shredded_credential: credential_id,
        } => registry.release(credential_id.0, None, emit),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use aimc_domain::{Ciphertext, CredentialId, KeyHint, Provider, TestVerdict};
    use secrecy::SecretString;

    use super::*;

    fn place() -> StreamPlace {
        StreamPlace {
            aggregate_id: "acme/workspace".into(),
            workspace: "acme".into(),
            owner: "workspace".into(),
            is_config: true,
        }
    }

    fn at(seconds: i64) -> EventMetadata {
        EventMetadata {
            actor: Some("ada".into()),
            request_id: None,
            trace_id: None,
            occurred_at: DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap(),
        }
    }

    fn id(n: u128) -> CredentialId {
        CredentialId(Uuid::from_u128(n))
    }

    fn name(raw: &str) -> CredentialName {
        CredentialName::parse(raw).unwrap()
    }

    fn key(raw: &str) -> NameKey {
        name(raw).key()
    }

    fn added(n: u128, name_given: &str) -> CredentialEvent {
        CredentialEvent::Added {
            credential_id: id(n),
            name: name(name_given),
            provider: Provider::Openai,
            endpoint: Some("https://api.openai.com/v1".into()),
            access_key: None,
            access_key_hint: None,
            secret: Ciphertext("vault:v1:abc".into()),
            hint: KeyHint::from_plain(&SecretString::from("sk-first-key-0001")),
            number: Some(7),
            owner: None,
        }
    }

    fn fold(events: &[(CredentialEvent, i64)]) -> CredentialChanges {
        let mut changes = CredentialChanges::default();
        for (event, seconds) in events {
            apply(&mut changes, &place(), event, &at(*seconds));
        }
        changes
    }

    #[test]
    fn an_added_credential_is_one_row_with_its_later_changes_folded_in() {
        let changes = fold(&[
            (added(1, "Prod"), 0),
            (
                CredentialEvent::Validated {
                    credential_id: id(1),
                    verdict: TestVerdict::Valid,
                    status: Some(200),
                    reason: "3 models".into(),
                    checked_at: at(5).occurred_at,
                },
                5,
            ),
            (
                CredentialEvent::Renamed {
                    credential_id: id(1),
                    name: name("Production"),
                },
                9,
            ),
        ]);

        let [(_, CredentialChange::Insert(row))] = changes.sorted()[..] else {
            panic!("one insert: {changes:?}");
        };
        assert_eq!(row.name, name("Production"));
        assert_eq!(row.name_key, key("production"));
        assert_eq!(row.validated_ok, Some(true));
        assert_eq!(row.validated_at, Some(at(5).occurred_at));
        assert_eq!(row.created_at, at(0).occurred_at);
        assert_eq!(row.updated_at, at(9).occurred_at);
        assert_eq!(row.created_by.as_deref(), Some("ada"));
        assert_eq!(row.hint, "sk-...0001");
    }

    #[test]
    fn a_test_that_could_not_reach_the_provider_says_nothing_about_the_key() {
        let changes = fold(&[(
            CredentialEvent::Validated {
                credential_id: id(3),
                verdict: TestVerdict::Inconclusive,
                status: None,
                reason: "dns error: no such host".into(),
                checked_at: at(2).occurred_at,
            },
            2,
        )]);

        let [(_, CredentialChange::Patch(patch))] = changes.sorted()[..] else {
            panic!("one patch: {changes:?}");
        };
        assert_eq!(patch.columns()["validated_ok"], serde_json::Value::Null);
        assert_eq!(
            patch.columns()["validation_note"],
            "dns error: no such host"
        );
    }

    #[test]
    fn a_new_secret_voids_the_last_test_and_later_changes_win() {
        let changes = fold(&[
            (
                CredentialEvent::Validated {
                    credential_id: id(2),
                    verdict: TestVerdict::Refused,
                    status: Some(401),
                    reason: "refused".into(),
                    checked_at: at(0).occurred_at,
                },
                0,
            ),
            (
                CredentialEvent::SecretReplaced {
                    credential_id: id(2),
                    secret: Ciphertext("vault:v1:def".into()),
                    hint: KeyHint::from_plain(&SecretString::from("sk-second-key-0002")),
                },
                3,
            ),
        ]);

        let [(_, CredentialChange::Patch(patch))] = changes.sorted()[..] else {
            panic!("one patch: {changes:?}");
        };
        assert_eq!(
            patch.columns(),
            serde_json::json!({
                "hint": "sk-...0002",
                "secret": "vault:v1:def",
                "validated_ok": null,
                "validation_note": null,
                "validated_at": null,
                "updated_at": at(3).occurred_at.to_rfc3339(),
            })
        );
    }

    #[test]
    fn a_removed_credential_is_deleted_whatever_happened_before() {
        let changes = fold(&[
            (added(3, "Short-lived"), 0),
            (
                CredentialEvent::Removed {
                    credential_id: id(3),
                },
                1,
            ),
            (
                CredentialEvent::Renamed {
                    credential_id: id(4),
                    name: name("x"),
                },
                2,
            ),
            (
                CredentialEvent::Removed {
                    credential_id: id(4),
                },
                3,
            ),
        ]);

        assert!(changes
            .sorted()
            .iter()
            .all(|(_, change)| **change == CredentialChange::Delete));
        assert_eq!(changes.sorted().len(), 2);
    }

    fn names(registry: &mut NameRegistry) -> NameChanges {
        let mut changes = NameChanges::default();
        registry.take_changes("acme", &mut changes);
        changes
    }

    #[test]
    fn names_are_taken_released_and_moved_once_per_key() {
        let mut registry = NameRegistry::default();
        registry.known(key("stored"), id(9).0);
        for event in [
            added(1, "Prod"),
            CredentialEvent::Renamed {
                credential_id: id(1),
                name: name("PROD"),
            },
            added(2, "Stored"),
            CredentialEvent::Removed {
                credential_id: id(9),
            },
        ] {
            apply_names(&mut registry, &event, true);
        }

        assert_eq!(
            names(&mut registry),
            NameChanges {
                taken: vec![("acme".into(), key("prod"), id(1).0)],
                released: vec![("acme".into(), key("stored"), id(9).0)],
                moved: vec![],
            },
            "a rename to the same key keeps it; a name held already stays its holder's"
        );

        apply_names(
            &mut registry,
            &CredentialEvent::Renamed {
                credential_id: id(1),
                name: name("Stored"),
            },
            true,
        );
        assert_eq!(
            names(&mut registry),
            NameChanges {
                taken: vec![("acme".into(), key("stored"), id(1).0)],
                released: vec![("acme".into(), key("prod"), id(1).0)],
                moved: vec![],
            }
        );
    }

    #[test]
    fn a_name_freed_and_taken_by_another_in_one_write_moves() {
        let mut registry = NameRegistry::default();
        registry.known(key("prod"), id(1).0);
        apply_names(
            &mut registry,
            &CredentialEvent::Removed {
                credential_id: id(1),
            },
            true,
        );
        apply_names(&mut registry, &added(2, "prod"), true);

        assert_eq!(
            names(&mut registry).moved,
            vec![("acme".into(), key("prod"), id(1).0, id(2).0)]
        );
    }

    #[test]
    fn events_already_stored_change_the_state_but_write_nothing() {
        let mut registry = NameRegistry::default();
        apply_names(&mut registry, &added(1, "Prod"), false);
        apply_names(
            &mut registry,
            &CredentialEvent::Removed {
                credential_id: id(1),
            },
            true,
        );

        assert_eq!(
            names(&mut registry).released,
            vec![("acme".into(), key("prod"), id(1).0)]
        );
    }
}
