//! The read model: one pure fold per view, and one writer that stores what the folds decided.
//!
//! Every path that projects goes through [`Projection`]: a command projects its own events in
//! the transaction that appends them, catch-up projects a log written by an older build, and
//! `aimc projections rebuild` replays the whole log. They differ only in where the folds' state
//! starts (the aggregate as loaded, a stream replayed from its start, nothing) and in how many
//! events one write carries.

pub(crate) mod audit;
pub(crate) mod config;
pub(crate) mod credentials;
pub(crate) mod streams;
pub(crate) mod writer;

use std::collections::HashMap;

use aimc_domain::{AiModelConfig, ConfigEvent, CredentialEvent};
use chrono::{DateTime, Utc};

use self::audit::AuditRow;
use self::config::ConfigRow;
use self::credentials::{CredentialChanges, NameChanges, NameRegistry};

/// The views, sorted, as `projection_offsets` names them. A view's offset is the last sequence
/// of each aggregate it has applied.
pub(crate) const VIEWS: [&str; 3] = [AUDIT_LOG, CONFIG_VIEW, CREDENTIAL_VIEW];
pub(crate) const AUDIT_LOG: &str = "audit_log";
pub(crate) const CONFIG_VIEW: &str = "config_view";
pub(crate) const CREDENTIAL_VIEW: &str = "credential_view";

/// What the log records about an event besides its payload, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMetadata {
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// The metadata column as stored: cqrs-es' map of strings, of which these are read.
#[derive(Default, serde::Deserialize)]
struct StoredMetadata {
    actor: Option<String>,
    request_id: Option<String>,
    trace_id: Option<String>,
    occurred_at: Option<String>,
}

impl EventMetadata {
    /// Reads cqrs-es' string map. A time that does not parse (or is missing, in logs older than
    /// the `occurred_at` stamp) counts as now, as it always did.
    pub fn from_map(metadata: &HashMap<String, String>) -> Self {
        Self::from_stored(StoredMetadata {
            actor: metadata.get("actor").cloned(),
            request_id: metadata.get("request_id").cloned(),
            trace_id: metadata.get("trace_id").cloned(),
            occurred_at: metadata.get("occurred_at").cloned(),
        })
    }

    /// Reads the stored column straight into the fields the views use; metadata that does not
    /// read as a map of strings is ignored, as it always was.
    pub(crate) fn from_json(stored: &str) -> Self {
        Self::from_stored(serde_json::from_str(stored).unwrap_or_default())
    }

    fn from_stored(stored: StoredMetadata) -> Self {
        EventMetadata {
            actor: stored.actor,
            request_id: stored.request_id,
            trace_id: stored.trace_id,
            occurred_at: stored
                .occurred_at
                .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                .map(|at| at.with_timezone(&Utc))
                .unwrap_or_else(Utc::now),
        }
    }
}

/// The stream an event belongs to, as the views file it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlace {
    pub aggregate_id: String,
    pub workspace: String,
    pub owner: String,
    /// Only a configuration's stream has a `config_view` row.
    pub is_config: bool,
}

/// An event as the views see it: a configuration's, or a credential's wherever it lives.
#[derive(Debug, Clone, Copy)]
pub enum ViewedEvent<'a> {
    Config(&'a ConfigEvent),
    Credential(&'a CredentialEvent),
}

impl ViewedEvent<'_> {
    fn credential(&self) -> Option<&CredentialEvent> {
        match *self {
            ViewedEvent::Config(ConfigEvent::Credential(event)) => Some(event),
            ViewedEvent::Credential(event) => Some(event),
            ViewedEvent::Config(_) => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            ViewedEvent::Config(event) => event.name(),
            ViewedEvent::Credential(event) => event.name(),
        }
    }

    fn serialized(&self) -> serde_json::Value {
        match self {
            ViewedEvent::Config(event) => serde_json::to_value(event),
            ViewedEvent::Credential(event) => serde_json::to_value(event),
        }
        .unwrap_or_default()
    }
}

/// Per view, the last sequence of a stream it has applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offsets {
    pub audit: i64,
    pub config: i64,
    pub credentials: i64,
}

impl Offsets {
    pub fn all(sequence: i64) -> Self {
        Offsets {
            audit: sequence,
            config: sequence,
            credentials: sequence,
        }
    }

    /// Where the view that is furthest behind stands.
    pub fn lowest(&self) -> i64 {
        self.audit.min(self.config).min(self.credentials)
    }

    fn raise_to(&mut self, sequence: i64) {
        self.audit = self.audit.max(sequence);
        self.config = self.config.max(sequence);
        self.credentials = self.credentials.max(sequence);
    }
}

/// One stream's fold state.
struct StreamFold {
    place: StreamPlace,
    config: Option<ConfigRow>,
    config_changed: bool,
    offsets: Offsets,
    offsets_changed: bool,
}

/// A row one statement may write for one command only; see [`ReadModelChanges::own_rows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OwnRow<'a> {
    /// A stream's events and snapshot, by aggregate type and id.
    Stream(&'static str, &'a str),
    Config(&'a str),
    Offsets(&'a str),
    /// A shredded stream's history entries.
    History(&'a str),
    Credential(uuid::Uuid),
    /// A registry name, by workspace and name key.
    Name(&'a str, &'a str),
}

/// Row changes decided by the folds, not yet written; see [`writer`].
#[derive(Debug, Clone, Default)]
pub struct ReadModelChanges {
    pub(crate) configs: Vec<ConfigRow>,
    pub(crate) credentials: CredentialChanges,
    pub(crate) names: NameChanges,
    /// In the order the events happened; positions are handed out by the writer.
    pub(crate) audit: Vec<AuditRow>,
    pub(crate) offsets: Vec<(String, Offsets)>,
    /// Configurations shredded and not created again: their rows go.
    pub(crate) configs_deleted: Vec<String>,
    /// Streams shredded: the hints of their stored history entries go.
    pub(crate) shredded: Vec<String>,
}

impl ReadModelChanges {
    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
            && self.credentials.is_empty()
            && self.names.is_empty()
            && self.audit.is_empty()
            && self.offsets.is_empty()
            && self.configs_deleted.is_empty()
            && self.shredded.is_empty()
    }

    /// The rows these changes write that no other command's may write in the same statement:
    /// a statement must not touch a row twice, and composing two commands' changes of one row
    /// is the folds' business, not the writer's. Rows every command shares by design (a
    /// workspace's audit position) are not among them.
    pub(crate) fn own_rows(&self) -> impl Iterator<Item = OwnRow<'_>> {
        let names = self.names.taken.iter().chain(&self.names.released);
        self.configs
            .iter()
            .map(|row| OwnRow::Config(&row.aggregate_id))
            .chain(self.configs_deleted.iter().map(|id| OwnRow::Config(id)))
            .chain(self.offsets.iter().map(|(id, _)| OwnRow::Offsets(id)))
            .chain(self.shredded.iter().map(|id| OwnRow::History(id)))
            .chain(
                self.credentials
                    .credentials()
                    .map(|id| OwnRow::Credential(*id)),
            )
            .chain(names.map(|(workspace, key, _)| OwnRow::Name(workspace, key.as_str())))
            .chain(
                self.names
                    .moved
                    .iter()
                    .map(|(workspace, key, _, _)| OwnRow::Name(workspace, key.as_str())),
            )
    }

    /// Takes in the changes of another command whose [`own_rows`](Self::own_rows) are none of
    /// these', so that one statement writes both.
    pub(crate) fn absorb(&mut self, other: ReadModelChanges) {
        self.configs.extend(other.configs);
        self.credentials.absorb(other.credentials);
        self.names.taken.extend(other.names.taken);
        self.names.released.extend(other.names.released);
        self.names.moved.extend(other.names.moved);
        self.audit.extend(other.audit);
        self.offsets.extend(other.offsets);
        self.configs_deleted.extend(other.configs_deleted);
        self.shredded.extend(other.shredded);
        // The order take_changes gives, so concurrent writers lock rows in one order.
        self.configs
            .sort_by(|a, b| a.aggregate_id.cmp(&b.aggregate_id));
        self.offsets.sort_by(|a, b| a.0.cmp(&b.0));
        self.configs_deleted.sort();
        self.shredded.sort();
    }
}

/// The folds of every view over any number of streams, with their state.
/// Public only to name it in [`crate::Projected`]; nothing outside this crate can build one.
#[derive(Default)]
pub struct Projection {
    streams: HashMap<String, StreamFold>,
    registries: HashMap<String, NameRegistry>,
    credentials: CredentialChanges,
    audit: Vec<AuditRow>,
    /// Each credential's provider, name and hint as the events seen so far left them, for the
    /// history entries of later events.
    known: HashMap<uuid::Uuid, audit::Known>,
    shredded: Vec<String>,
}

impl Projection {
    /// Starts a stream's folds where its views stand: `config` is its configuration as projected
    /// up to `offsets.config` (none before it was created).
    pub fn start_stream(
        &mut self,
        place: StreamPlace,
        config: Option<AiModelConfig>,
        offsets: Offsets,
    ) {
        let config = config.map(|view| ConfigRow::known(&place, view, offsets.config));
        self.streams.insert(
            place.aggregate_id.clone(),
            StreamFold {
                place,
                config,
                config_changed: false,
                offsets,
                offsets_changed: false,
            },
        );
    }

    /// Names the registry holds already in a workspace, as (name key, holder).
    pub fn known_names(
        &mut self,
        workspace: &str,
        names: impl IntoIterator<Item = (aimc_domain::NameKey, uuid::Uuid)>,
    ) {
        let registry = self.registries.entry(workspace.to_owned()).or_default();
        for (key, holder) in names {
            registry.known(key, holder);
        }
    }

    /// Events applied since the changes were last taken.
    pub fn pending_events(&self) -> usize {
        self.audit.len()
    }

    pub fn has_stream(&self, aggregate_id: &str) -> bool {
        self.streams.contains_key(aggregate_id)
    }

    /// Applies one event of a stream started with [`Projection::start_stream`]: each view whose
    /// offset is behind it records its change, the others only advance their state.
    pub fn apply(
        &mut self,
        aggregate_id: &str,
        sequence: i64,
        event: ViewedEvent<'_>,
        metadata: &EventMetadata,
    ) {
        let Some(stream) = self.streams.get_mut(aggregate_id) else {
            debug_assert!(false, "apply before start_stream for {aggregate_id}");
            return;
        };
        let place = &stream.place;
        let offsets = stream.offsets;
        if let (true, ViewedEvent::Config(event)) = (place.is_config, event) {
            config::apply(&mut stream.config, place, sequence, event, metadata);
            if sequence > offsets.config {
                stream.config_changed = true;
            }
        }
        if let ViewedEvent::Config(ConfigEvent::WorkspaceShredded {
            shredded_credentials,
        }) = event
        {
            // The configuration's credentials go as if each were removed.
            let registry = self.registries.entry(place.workspace.clone()).or_default();
            for credential_id in shredded_credentials {
                let removed = CredentialEvent::Removed {
                    credential_id: *credential_id,
                };
                credentials::apply_names(registry, &removed, sequence > offsets.credentials);
                if sequence > offsets.credentials {
                    credentials::apply(&mut self.credentials, place, &removed, metadata);
                }
                self.known.remove(&credential_id.0);
            }
        }
        let shredding = matches!(
            event,
            ViewedEvent::Config(ConfigEvent::WorkspaceShredded { .. })
                | ViewedEvent::Credential(CredentialEvent::WorkspaceShredded { .. })
        );
        if shredding && sequence > offsets.audit {
            for entry in self
                .audit
                .iter_mut()
                .filter(|entry| entry.aggregate_id == place.aggregate_id)
            {
                entry.shred();
            }
            self.shredded.push(place.aggregate_id.clone());
        }
        if let Some(credential_event) = event.credential() {
            let registry = self.registries.entry(place.workspace.clone()).or_default();
            let emit = sequence > offsets.credentials;
            credentials::apply_names(registry, credential_event, emit);
            if emit {
                credentials::apply(&mut self.credentials, place, credential_event, metadata);
            }
        }
        let credential_id = event.credential().map(|event| event.credential_id().0);
        let known = credential_id.and_then(|id| self.known.remove(&id));
        if sequence > offsets.audit {
            self.audit
                .push(audit::row(place, sequence, event, metadata, known.as_ref()));
        }
        if let (Some(id), Some(event)) = (credential_id, event.credential()) {
            if let Some(after) = audit::known_after(event, known) {
                self.known.insert(id, after);
            }
        }
        if sequence > offsets.lowest() {
            stream.offsets.raise_to(sequence);
            stream.offsets_changed = true;
        }
    }

    /// The changes recorded since the last call; the folds keep their state.
    pub fn take_changes(&mut self) -> ReadModelChanges {
        let mut changes = ReadModelChanges {
            credentials: std::mem::take(&mut self.credentials),
            audit: std::mem::take(&mut self.audit),
            shredded: std::mem::take(&mut self.shredded),
            ..ReadModelChanges::default()
        };
        for stream in self.streams.values_mut() {
            if std::mem::take(&mut stream.config_changed) {
                match &stream.config {
                    Some(row) => changes.configs.push(row.clone()),
                    None => changes
                        .configs_deleted
                        .push(stream.place.aggregate_id.clone()),
                }
            }
            if std::mem::take(&mut stream.offsets_changed) {
                changes
                    .offsets
                    .push((stream.place.aggregate_id.clone(), stream.offsets));
            }
        }
        for (workspace, registry) in &mut self.registries {
            registry.take_changes(workspace, &mut changes.names);
        }
        // Stable order, so concurrent writers lock rows in the same order.
        changes
            .configs
            .sort_by(|a, b| a.aggregate_id.cmp(&b.aggregate_id));
        changes.offsets.sort_by(|a, b| a.0.cmp(&b.0));
        changes.configs_deleted.sort();
        changes.shredded.sort();
        changes.shredded.dedup();
        changes
    }

    /// Drops the state of a workspace's streams once their changes were taken, so a replay's
    /// memory holds one workspace at a time.
    pub fn forget_workspace(&mut self, workspace: &str) {
        self.streams
            .retain(|_, stream| stream.place.workspace != workspace);
        self.registries.remove(workspace);
    }
}
