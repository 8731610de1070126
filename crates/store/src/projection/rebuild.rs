//! The bulk replay behind [`Projector::rebuild`](super::Projector::rebuild).
//!
//! `catch_up` projects one aggregate per transaction with a few statements per event: right for
//! one command, far too slow for a whole log. Here the log is read once through a cursor, in the
//! order the rebuilt audit trail should have, applied in memory by the same rules as `catch_up`,
//! and written a chunk at a time with one set-based statement per table.
//!
//! A chunk holds whole workspaces, so each workspace's audit positions are handed out in one
//! place; only a workspace bigger than a chunk is written in pieces, its state carried over.
//! Memory is bounded by the chunk size plus the live state (not the history) of one workspace.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::mem;

use aimc_domain::{AggregateId, AiModelConfig, AiModelConfigEvent};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{audit_details, RecordedEvent, PROJECTIONS};
use crate::error::StoreError;

/// Every event, a workspace at a time; within a workspace by time, then aggregate, then sequence.
///
/// An aggregate's events are placed by the latest time seen so far in its own history, so a
/// clock that stepped back between two commands cannot reorder one aggregate's events.
///
/// Times are compared as text in the shape `SnapshotEventStore::commit` stamps (RFC 3339, UTC,
/// six decimals), where text order is time order and nothing needs parsing. Any other shape
/// is brought to it through jsonpath's `datetime()`, PG 15's only cast that yields null instead
/// of failing (it wants `+00:00` for `Z`); a time that does not parse counts as no later than
/// the aggregate's previous event.
/// Workspaces and aggregates sort in the "C" collation: under a linguistic one, `ws-a/...` and
/// `ws-ab/...` ids can interleave, and a workspace would no longer be contiguous.
const DECLARE_REPLAY: &str = r#"
DECLARE replay NO SCROLL CURSOR FOR
WITH stamped AS (
    SELECT aggregate_id, sequence, payload, metadata, metadata ->> 'occurred_at' AS occurred_at
      FROM events
     WHERE aggregate_type = $1),
timed AS (
    SELECT aggregate_id, sequence, payload, metadata,
           max(CASE WHEN occurred_at LIKE '____-__-__T__:__:__.______Z' THEN occurred_at
                    ELSE coalesce(to_char((jsonb_path_query_first(
                                               to_jsonb(regexp_replace(occurred_at, '[Zz]$', '+00:00')),
                                               '$.datetime()', '{}', true) #>> '{}')::timestamptz AT TIME ZONE 'UTC',
                                          'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), '')
               END COLLATE "C") OVER (PARTITION BY aggregate_id ORDER BY sequence) AS replay_at
      FROM stamped)
SELECT split_part(aggregate_id, '/', 1), aggregate_id, sequence, payload::text, metadata::text
  FROM timed
 ORDER BY split_part(aggregate_id, '/', 1) COLLATE "C", replay_at, aggregate_id COLLATE "C", sequence"#;

/// The sort behind the cursor holds the whole log; in memory it takes a fraction of the time
/// it takes spilled to disk with the default 4 MB.
const SORT_MEMORY: &str = "SET LOCAL work_mem = '64MB'";

/// FETCH takes no bind parameter, so rows per round trip are fixed here, apart from chunk size.
const FETCH_PAGE: &str = "FETCH FORWARD 2000 FROM replay";

/// Workspace (as the cursor grouped it), aggregate id, sequence, payload, metadata.
type LogRow = (String, String, i64, String, String);

/// Replays the whole log into projections the caller has emptied, writing a chunk of about
/// `chunk_events` events per transaction. Returns how many events were applied.
pub(super) async fn replay_log(pool: &PgPool, chunk_events: usize) -> Result<usize, StoreError> {
    let mut reader = LogReader::open(pool).await?;
    let mut replay = Replay::new(chunk_events);
    let mut writer = ChunkWriter::new(pool.clone());
    loop {
        let page = reader.next_page().await?;
        if page.is_empty() {
            break;
        }
        let unseen = replay.workspaces_not_started(&page);
        replay.preload_names(reader.registered_names(&unseen).await?);
        for row in page {
            if let Some(chunk) = replay.push(row)? {
                writer.write(chunk).await?;
            }
        }
    }
    writer.write(replay.finish()?).await?;
    writer.flush().await?;
    reader.close().await?;
    replay.outcome()
}

/// Writes one chunk at a time in the background, so the database stores a chunk while the
/// next one is read and applied. Chunks still commit in order: each waits for the previous.
struct ChunkWriter {
    pool: PgPool,
    in_flight: Option<JoinHandle<Result<(), StoreError>>>,
}

impl ChunkWriter {
    fn new(pool: PgPool) -> Self {
        ChunkWriter {
            pool,
            in_flight: None,
        }
    }

    async fn write(&mut self, chunk: ChunkWrites) -> Result<(), StoreError> {
        self.flush().await?;
        let pool = self.pool.clone();
        self.in_flight = Some(tokio::spawn(async move { chunk.write(&pool).await }));
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(());
        };
        in_flight
            .await
            .map_err(|error| StoreError::Internal(format!("writing a chunk stopped: {error}")))?
    }
}

impl Drop for ChunkWriter {
    /// A replay that failed does not leave a chunk being written behind it.
    fn drop(&mut self) {
        if let Some(in_flight) = &self.in_flight {
            in_flight.abort();
        }
    }
}

/// The log in replay order, through a cursor on a connection of its own, so that chunks can
/// commit while it stays open.
struct LogReader {
    tx: Transaction<'static, Postgres>,
}

impl LogReader {
    async fn open(pool: &PgPool) -> Result<Self, StoreError> {
        let mut tx = pool.begin().await?;
        sqlx::query(SORT_MEMORY).execute(&mut *tx).await?;
        sqlx::query(DECLARE_REPLAY)
            .bind(AiModelConfig::TYPE)
            .execute(&mut *tx)
            .await?;
        Ok(LogReader { tx })
    }

    async fn next_page(&mut self) -> Result<Vec<LogRow>, StoreError> {
        Ok(sqlx::query_as(FETCH_PAGE).fetch_all(&mut *self.tx).await?)
    }

    /// The registry is not emptied by a rebuild (it holds claims of requests in flight), so
    /// replaying a workspace starts from its names as they stand, as `catch_up` would.
    async fn registered_names(
        &mut self,
        workspaces: &[String],
    ) -> Result<Vec<(String, String, Uuid)>, StoreError> {
        if workspaces.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(
            "SELECT workspace_id, name_key, credential_id FROM credential_names
              WHERE workspace_id = ANY($1)",
        )
        .bind(workspaces)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn close(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// The replay's progress: the workspace being applied, the writes of the chunk being filled.
struct Replay {
    chunk_events: usize,
    current: Option<WorkspaceReplay>,
    /// Registries of workspaces fetched but not started yet.
    names: HashMap<String, NameRegistry>,
    writes: ChunkWrites,
    applied: usize,
    failed: usize,
}

impl Replay {
    fn new(chunk_events: usize) -> Self {
        Replay {
            chunk_events: chunk_events.max(1),
            current: None,
            names: HashMap::new(),
            writes: ChunkWrites::default(),
            applied: 0,
            failed: 0,
        }
    }

    fn workspaces_not_started(&self, page: &[LogRow]) -> Vec<String> {
        let current = self.current.as_ref().map(|workspace| &workspace.id);
        let mut unseen: Vec<String> = Vec::new();
        for (workspace, ..) in page {
            if Some(workspace) != current && unseen.last() != Some(workspace) {
                unseen.push(workspace.clone());
            }
        }
        unseen
    }

    fn preload_names(&mut self, names: Vec<(String, String, Uuid)>) {
        for (workspace, key, credential) in names {
            self.names
                .entry(workspace)
                .or_default()
                .load(key, credential);
        }
    }

    /// Applies one event; returns a full chunk's writes when one is ready.
    fn push(&mut self, row: LogRow) -> Result<Option<ChunkWrites>, StoreError> {
        let (workspace, aggregate_id, sequence, payload, metadata) = row;
        let continues = self
            .current
            .as_ref()
            .is_some_and(|current| current.id == workspace);
        let full = if continues {
            self.split_if_oversized()?
        } else {
            self.start_workspace(workspace)?
        };
        if let Some(current) = &mut self.current {
            match current.apply(
                &aggregate_id,
                sequence,
                &payload,
                &metadata,
                &mut self.writes,
            ) {
                Applied::Yes => self.applied += 1,
                Applied::FailedHere => self.failed += 1,
                Applied::AfterFailure => {}
            }
        }
        Ok(full)
    }

    /// Moves the finished workspace into the chunk; hands the chunk over once it is full.
    fn start_workspace(&mut self, workspace: String) -> Result<Option<ChunkWrites>, StoreError> {
        if let Some(mut finished) = self.current.take() {
            finished.drain_into(&mut self.writes)?;
        }
        let names = self.names.remove(&workspace).unwrap_or_default();
        self.current = Some(WorkspaceReplay::new(workspace, names));
        let full = self.writes.events() >= self.chunk_events;
        Ok(full.then(|| mem::take(&mut self.writes)))
    }

    /// A workspace alone filling a chunk is written in pieces, so memory stays bounded.
    fn split_if_oversized(&mut self) -> Result<Option<ChunkWrites>, StoreError> {
        let Some(current) = &mut self.current else {
            return Ok(None);
        };
        if current.unwritten_events < self.chunk_events {
            return Ok(None);
        }
        current.drain_into(&mut self.writes)?;
        Ok(Some(mem::take(&mut self.writes)))
    }

    /// The last chunk, with the workspace still open.
    fn finish(&mut self) -> Result<ChunkWrites, StoreError> {
        if let Some(mut last) = self.current.take() {
            last.drain_into(&mut self.writes)?;
        }
        Ok(mem::take(&mut self.writes))
    }

    fn outcome(&self) -> Result<usize, StoreError> {
        if self.failed > 0 {
            return Err(StoreError::Internal(format!(
                "{} aggregates could not be projected",
                self.failed
            )));
        }
        Ok(self.applied)
    }
}

enum Applied {
    Yes,
    /// This event could not be applied; its aggregate's later ones will not be either.
    FailedHere,
    AfterFailure,
}

/// One workspace's projections as `catch_up` would leave them, and what is not written yet.
struct WorkspaceReplay {
    id: String,
    last_position: i64,
    aggregates: HashMap<String, AggregateReplay>,
    /// Aggregates projected only up to an event that cannot be read, like `catch_up` would
    /// stop at it: their offsets stay before it, so catch-up keeps reporting them.
    failed: HashSet<String>,
    credentials: Credentials,
    names: NameRegistry,
    unwritten_events: usize,
}

struct AggregateReplay {
    owner: String,
    config: AiModelConfig,
    last_sequence: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    unwritten: bool,
}

impl WorkspaceReplay {
    fn new(id: String, names: NameRegistry) -> Self {
        WorkspaceReplay {
            id,
            last_position: 0,
            aggregates: HashMap::new(),
            failed: HashSet::new(),
            credentials: Credentials::default(),
            names,
            unwritten_events: 0,
        }
    }

    fn apply(
        &mut self,
        aggregate_id: &str,
        sequence: i64,
        payload: &str,
        metadata: &str,
        writes: &mut ChunkWrites,
    ) -> Applied {
        if self.failed.contains(aggregate_id) {
            return Applied::AfterFailure;
        }
        let recorded = match RecordedEvent::from_text(sequence, payload, metadata) {
            Ok(recorded) => recorded,
            Err(error) => {
                tracing::error!(aggregate_id, sequence, %error, "unreadable event; its aggregate is projected up to the one before");
                self.failed.insert(aggregate_id.to_owned());
                return Applied::FailedHere;
            }
        };
        let at = recorded.occurred_at();
        let Some(aggregate) = aggregate_state(&mut self.aggregates, aggregate_id, at) else {
            tracing::error!(aggregate_id, "malformed aggregate id; not projected");
            self.failed.insert(aggregate_id.to_owned());
            return Applied::FailedHere;
        };
        self.last_position += 1;
        writes.audit.push(
            self.last_position,
            aggregate_id,
            &self.id,
            &aggregate.owner,
            &recorded,
            at,
        );
        let context = CredentialContext {
            aggregate_id,
            workspace_id: &self.id,
            owner: &aggregate.owner,
            actor: recorded.metadata.get("actor"),
            at,
        };
        self.credentials
            .apply(&mut self.names, context, &recorded.event);
        aggregate.config.apply(recorded.event);
        aggregate.last_sequence = recorded.sequence;
        aggregate.updated_at = at;
        aggregate.unwritten = true;
        self.unwritten_events += 1;
        Applied::Yes
    }

    /// Adds everything not written yet to `writes`; the workspace can go on from there.
    fn drain_into(&mut self, writes: &mut ChunkWrites) -> Result<(), StoreError> {
        if self.unwritten_events > 0 {
            writes.positions.push(&self.id, self.last_position);
        }
        for (aggregate_id, aggregate) in &mut self.aggregates {
            if mem::take(&mut aggregate.unwritten) {
                writes.configs.push(aggregate_id, &self.id, aggregate)?;
            }
        }
        self.credentials.drain_into(writes);
        self.names.drain_into(&self.id, writes);
        self.unwritten_events = 0;
        Ok(())
    }
}

/// The aggregate's replay state, started at its first event (its creation); none for an id
/// that does not name an owner in a workspace.
fn aggregate_state<'a>(
    aggregates: &'a mut HashMap<String, AggregateReplay>,
    aggregate_id: &str,
    at: DateTime<Utc>,
) -> Option<&'a mut AggregateReplay> {
    if !aggregates.contains_key(aggregate_id) {
        let id = AggregateId::parse(aggregate_id)?;
        let state = AggregateReplay {
            owner: id.owner.to_string(),
            config: AiModelConfig::default(),
            last_sequence: 0,
            created_at: at,
            updated_at: at,
            unwritten: true,
        };
        aggregates.insert(aggregate_id.to_owned(), state);
    }
    aggregates.get_mut(aggregate_id)
}

/// What the credential view records of an event besides its own fields.
struct CredentialContext<'a> {
    aggregate_id: &'a str,
    workspace_id: &'a str,
    owner: &'a str,
    actor: Option<&'a String>,
    at: DateTime<Utc>,
}

/// A credential_view row; the field names are the column names.
#[derive(Clone, Serialize)]
struct CredentialRow {
    credential_id: Uuid,
    number: Option<i64>,
    aggregate_id: String,
    workspace_id: String,
    owner: String,
    name: String,
    name_key: String,
    provider: &'static str,
    endpoint: Option<String>,
    hint: String,
    access_key_hint: Option<String>,
    created_by: Option<String>,
    validated_ok: Option<bool>,
    validated_at: Option<DateTime<Utc>>,
    validation_note: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl CredentialRow {
    /// A change to how the credential reaches its provider voids the last test.
    fn invalidate(&mut self, at: DateTime<Utc>) {
        self.updated_at = at;
        self.validated_ok = None;
        self.validated_at = None;
        self.validation_note = None;
    }
}

/// One workspace's credential_view rows, with the same effects as `project_credential_view`.
#[derive(Default)]
struct Credentials {
    rows: HashMap<Uuid, CredentialRow>,
    /// Changed or removed since the last write: rewritten, or just deleted.
    unwritten: HashSet<Uuid>,
}

impl Credentials {
    fn apply(
        &mut self,
        names: &mut NameRegistry,
        context: CredentialContext<'_>,
        event: &AiModelConfigEvent,
    ) {
        let at = context.at;
        match event {
            AiModelConfigEvent::CredentialAdded {
                credential_id,
                name,
                ..
            } => {
                // Like ON CONFLICT DO NOTHING: a credential added twice keeps its first row.
                let row = added_row(&context, event);
                if let (Entry::Vacant(vacant), Some(row)) = (self.rows.entry(credential_id.0), row)
                {
                    vacant.insert(row);
                    self.unwritten.insert(credential_id.0);
                }
                names.register(name.to_lowercase(), credential_id.0);
            }
            AiModelConfigEvent::CredentialRenamed {
                credential_id,
                name,
            } => {
                let key = name.to_lowercase();
                names.release(credential_id.0, Some(&key));
                names.register(key.clone(), credential_id.0);
                self.update(credential_id.0, |row| {
                    row.name = name.clone();
                    row.name_key = key;
                    row.updated_at = at;
                });
            }
            AiModelConfigEvent::CredentialProviderChanged {
                credential_id,
                provider,
            } => self.update(credential_id.0, |row| {
                row.provider = provider.as_str();
                row.invalidate(at);
            }),
            AiModelConfigEvent::CredentialEndpointChanged {
                credential_id,
                endpoint,
            } => self.update(credential_id.0, |row| {
                row.endpoint = endpoint.clone();
                row.invalidate(at);
            }),
            AiModelConfigEvent::CredentialSecretReplaced {
                credential_id,
                hint,
                ..
            } => self.update(credential_id.0, |row| {
                row.hint = hint.as_str().to_owned();
                row.invalidate(at);
            }),
            AiModelConfigEvent::CredentialAccessKeyReplaced {
                credential_id,
                access_key_hint,
                ..
            } => self.update(credential_id.0, |row| {
                row.access_key_hint = Some(access_key_hint.as_str().to_owned());
                row.invalidate(at);
            }),
            AiModelConfigEvent::CredentialRemoved { credential_id } => {
                self.rows.remove(&credential_id.0);
                self.unwritten.insert(credential_id.0);
                names.release(credential_id.0, None);
            }
            AiModelConfigEvent::CredentialValidated {
                credential_id,
                ok,
                reason,
                ..
            } => self.update(credential_id.0, |row| {
                row.validated_ok = Some(*ok);
                row.validation_note = Some(reason.clone());
                row.validated_at = Some(at);
            }),
            _ => {}
        }
    }

    /// Like the UPDATEs of `catch_up`: a credential that is not there is left alone.
    fn update(&mut self, credential: Uuid, change: impl FnOnce(&mut CredentialRow)) {
        if let Some(row) = self.rows.get_mut(&credential) {
            change(row);
            self.unwritten.insert(credential);
        }
    }

    fn drain_into(&mut self, writes: &mut ChunkWrites) {
        for credential in self.unwritten.drain() {
            writes.credentials.replaced.push(credential);
            if let Some(row) = self.rows.get(&credential) {
                writes.credentials.rows.push(row.clone());
            }
        }
    }
}

fn added_row(context: &CredentialContext<'_>, event: &AiModelConfigEvent) -> Option<CredentialRow> {
    let AiModelConfigEvent::CredentialAdded {
        credential_id,
        name,
        provider,
        endpoint,
        access_key_hint,
        hint,
        number,
        ..
    } = event
    else {
        return None;
    };
    Some(CredentialRow {
        credential_id: credential_id.0,
        number: *number,
        aggregate_id: context.aggregate_id.to_owned(),
        workspace_id: context.workspace_id.to_owned(),
        owner: context.owner.to_owned(),
        name: name.clone(),
        name_key: name.to_lowercase(),
        provider: provider.as_str(),
        endpoint: endpoint.clone(),
        hint: hint.as_str().to_owned(),
        access_key_hint: access_key_hint
            .as_ref()
            .map(|hint| hint.as_str().to_owned()),
        created_by: context.actor.cloned(),
        validated_ok: None,
        validated_at: None,
        validation_note: None,
        created_at: context.at,
        updated_at: context.at,
    })
}

/// One workspace's credential_names, with the same effects as `catch_up`'s registrations.
#[derive(Default)]
struct NameRegistry {
    /// Name key to its holder, and whether that row is in the table already.
    held: HashMap<String, (Uuid, bool)>,
    /// Rows in the table whose holder gave them up since the last write.
    released: Vec<(String, Uuid)>,
}

impl NameRegistry {
    fn load(&mut self, key: String, credential: Uuid) {
        self.held.insert(key, (credential, true));
    }

    /// A name someone holds already stays theirs: their claim was made first.
    fn register(&mut self, key: String, credential: Uuid) {
        self.held.entry(key).or_insert((credential, false));
    }

    /// Frees every name `credential` holds, except `keep`.
    fn release(&mut self, credential: Uuid, keep: Option<&str>) {
        let released = &mut self.released;
        self.held.retain(|key, (holder, stored)| {
            let frees = *holder == credential && Some(key.as_str()) != keep;
            if frees && *stored {
                released.push((key.clone(), credential));
            }
            !frees
        });
    }

    fn drain_into(&mut self, workspace_id: &str, writes: &mut ChunkWrites) {
        for (key, credential) in self.released.drain(..) {
            writes.released_names.push(workspace_id, key, credential);
        }
        for (key, (credential, stored)) in &mut self.held {
            if !mem::replace(stored, true) {
                writes
                    .registered_names
                    .push(workspace_id, key.clone(), *credential);
            }
        }
    }
}

/// Everything one chunk writes, column by column, for one statement per table.
#[derive(Default)]
struct ChunkWrites {
    audit: AuditRows,
    configs: ConfigRows,
    positions: PositionRows,
    credentials: CredentialRows,
    released_names: NameRows,
    registered_names: NameRows,
}

impl ChunkWrites {
    fn events(&self) -> usize {
        self.audit.position.len()
    }

    fn is_empty(&self) -> bool {
        self.audit.position.is_empty()
            && self.configs.aggregate_id.is_empty()
            && self.credentials.replaced.is_empty()
            && self.released_names.name_key.is_empty()
            && self.registered_names.name_key.is_empty()
    }

    /// In one transaction, so a chunk is either all in or not at all.
    async fn write(self, pool: &PgPool) -> Result<(), StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        let mut tx = pool.begin().await?;
        self.audit.insert(&mut tx).await?;
        self.configs.upsert(&mut tx).await?;
        self.positions.upsert(&mut tx).await?;
        self.credentials.replace(&mut tx).await?;
        self.released_names.delete(&mut tx).await?;
        self.registered_names.insert(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Audit entries column by column, for one `unnest` insert; the per-command projection uses
/// it too.
#[derive(Default)]
pub(super) struct AuditRows {
    position: Vec<i64>,
    aggregate_id: Vec<String>,
    sequence: Vec<i64>,
    workspace_id: Vec<String>,
    owner: Vec<String>,
    event_type: Vec<&'static str>,
    actor: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
    trace_id: Vec<Option<String>>,
    occurred_at: Vec<DateTime<Utc>>,
    details: Vec<serde_json::Value>,
}

impl AuditRows {
    pub(super) fn push(
        &mut self,
        position: i64,
        aggregate_id: &str,
        workspace_id: &str,
        owner: &str,
        recorded: &RecordedEvent,
        at: DateTime<Utc>,
    ) {
        self.position.push(position);
        self.aggregate_id.push(aggregate_id.to_owned());
        self.sequence.push(recorded.sequence);
        self.workspace_id.push(workspace_id.to_owned());
        self.owner.push(owner.to_owned());
        self.event_type.push(recorded.event.name());
        self.actor.push(recorded.metadata.get("actor").cloned());
        self.request_id
            .push(recorded.metadata.get("request_id").cloned());
        self.trace_id
            .push(recorded.metadata.get("trace_id").cloned());
        self.occurred_at.push(at);
        self.details.push(audit_details(&recorded.event));
    }

    pub(super) async fn insert(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), StoreError> {
        if self.position.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO audit_log (position, aggregate_id, sequence, workspace_id, owner, event_type, actor, request_id, trace_id, occurred_at, details)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                                  $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::jsonb[])
             ON CONFLICT (aggregate_id, sequence) DO NOTHING",
        )
        .bind(self.position)
        .bind(self.aggregate_id)
        .bind(self.sequence)
        .bind(self.workspace_id)
        .bind(self.owner)
        .bind(self.event_type)
        .bind(self.actor)
        .bind(self.request_id)
        .bind(self.trace_id)
        .bind(self.occurred_at)
        .bind(self.details)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// config_view rows, and with them the offsets: every projection has seen the same events.
#[derive(Default)]
struct ConfigRows {
    aggregate_id: Vec<String>,
    workspace_id: Vec<String>,
    owner: Vec<String>,
    last_sequence: Vec<i64>,
    view: Vec<serde_json::Value>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
}

impl ConfigRows {
    fn push(
        &mut self,
        aggregate_id: &str,
        workspace_id: &str,
        aggregate: &AggregateReplay,
    ) -> Result<(), StoreError> {
        let view = serde_json::to_value(&aggregate.config)
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        self.aggregate_id.push(aggregate_id.to_owned());
        self.workspace_id.push(workspace_id.to_owned());
        self.owner.push(aggregate.owner.clone());
        self.last_sequence.push(aggregate.last_sequence);
        self.view.push(view);
        self.created_at.push(aggregate.created_at);
        self.updated_at.push(aggregate.updated_at);
        Ok(())
    }

    /// Upserts, since a workspace written in pieces rewrites its aggregates' rows.
    async fn upsert(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), StoreError> {
        if self.aggregate_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO projection_offsets (projection, aggregate_id, last_sequence)
             SELECT p.projection, a.aggregate_id, a.last_sequence
               FROM unnest($1::text[]) AS p(projection),
                    unnest($2::text[], $3::bigint[]) AS a(aggregate_id, last_sequence)
             ON CONFLICT (projection, aggregate_id) DO UPDATE SET last_sequence = excluded.last_sequence",
        )
        .bind(&PROJECTIONS[..])
        .bind(&self.aggregate_id)
        .bind(&self.last_sequence)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO config_view (aggregate_id, workspace_id, owner, last_sequence, view, created_at, updated_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[],
                                  $6::timestamptz[], $7::timestamptz[])
             ON CONFLICT (aggregate_id) DO UPDATE
                SET last_sequence = excluded.last_sequence, view = excluded.view, updated_at = excluded.updated_at",
        )
        .bind(self.aggregate_id)
        .bind(self.workspace_id)
        .bind(self.owner)
        .bind(self.last_sequence)
        .bind(self.view)
        .bind(self.created_at)
        .bind(self.updated_at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct PositionRows {
    workspace_id: Vec<String>,
    last_position: Vec<i64>,
}

impl PositionRows {
    fn push(&mut self, workspace_id: &str, last_position: i64) {
        self.workspace_id.push(workspace_id.to_owned());
        self.last_position.push(last_position);
    }

    /// Where `catch_up` numbers the workspace's next audit entry from.
    async fn upsert(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), StoreError> {
        if self.workspace_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO audit_positions (workspace_id, last_position)
             SELECT * FROM unnest($1::text[], $2::bigint[])
             ON CONFLICT (workspace_id) DO UPDATE SET last_position = excluded.last_position",
        )
        .bind(self.workspace_id)
        .bind(self.last_position)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct CredentialRows {
    /// Every credential changed or removed in the chunk.
    replaced: Vec<Uuid>,
    /// The current rows of those still there.
    rows: Vec<CredentialRow>,
}

impl CredentialRows {
    /// Delete and insert rather than update: few rows per chunk, and 17 columns are far
    /// easier to hand over as one JSON array than as 17 arrays.
    async fn replace(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), StoreError> {
        if self.replaced.is_empty() {
            return Ok(());
        }
        sqlx::query("DELETE FROM credential_view WHERE credential_id = ANY($1)")
            .bind(self.replaced)
            .execute(&mut **tx)
            .await?;
        if self.rows.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO credential_view
             SELECT * FROM jsonb_populate_recordset(NULL::credential_view, $1)",
        )
        .bind(sqlx::types::Json(self.rows))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct NameRows {
    workspace_id: Vec<String>,
    name_key: Vec<String>,
    credential_id: Vec<Uuid>,
}

impl NameRows {
    fn push(&mut self, workspace_id: &str, name_key: String, credential_id: Uuid) {
        self.workspace_id.push(workspace_id.to_owned());
        self.name_key.push(name_key);
        self.credential_id.push(credential_id);
    }

    async fn delete(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), StoreError> {
        if self.name_key.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "DELETE FROM credential_names n
              USING unnest($1::text[], $2::text[], $3::uuid[]) AS r(workspace_id, name_key, credential_id)
              WHERE n.workspace_id = r.workspace_id AND n.name_key = r.name_key AND n.credential_id = r.credential_id",
        )
        .bind(self.workspace_id)
        .bind(self.name_key)
        .bind(self.credential_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Like `register_name`: a claim made meanwhile by a request in flight stands.
    async fn insert(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), StoreError> {
        if self.name_key.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO credential_names (workspace_id, name_key, credential_id)
             SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])
             ON CONFLICT (workspace_id, name_key) DO NOTHING",
        )
        .bind(self.workspace_id)
        .bind(self.name_key)
        .bind(self.credential_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
