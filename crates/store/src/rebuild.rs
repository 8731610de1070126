//! The bulk replay behind [`Projector::rebuild`](crate::Projector::rebuild).
//!
//! The log is read once through a cursor, in the order the rebuilt audit trail should have,
//! folded by the same [`Projection`] a command uses, and written a chunk at a time by the same
//! writer: one set-based statement per chunk instead of one per command.
//!
//! A chunk holds whole workspaces, so each workspace's audit positions are handed out in one
//! place; only a workspace bigger than a chunk is written in pieces, its state carried over.
//! Memory is bounded by the chunk size plus the live state (not the history) of one workspace.

use std::collections::HashSet;

use aimc_domain::{AiModelConfig, CredentialAggregate, NameKey};
use cqrs_es::Aggregate;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::StoreError;
use crate::online_rebuild::RebuildProgress;
use crate::read_model::streams::{project, Projected, STREAM_TYPES};
use crate::read_model::writer::{self, NameClaims};
use crate::read_model::{EventMetadata, Offsets, Projection, ReadModelChanges};
use crate::upcasting::decode;

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
    SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
           metadata ->> 'occurred_at' AS occurred_at
      FROM events
     WHERE aggregate_type = ANY($1)),
timed AS (
    SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
           max(CASE WHEN occurred_at LIKE '____-__-__T__:__:__.______Z' THEN occurred_at
                    ELSE coalesce(to_char((jsonb_path_query_first(
                                               to_jsonb(regexp_replace(occurred_at, '[Zz]$', '+00:00')),
                                               '$.datetime()', '{}', true) #>> '{}')::timestamptz AT TIME ZONE 'UTC',
                                          'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), '')
               END COLLATE "C") OVER (PARTITION BY aggregate_id ORDER BY sequence) AS replay_at
      FROM stamped)
SELECT split_part(aggregate_id, '/', 1), aggregate_type, aggregate_id, sequence, event_type,
       event_version, payload::text, metadata::text
  FROM timed
 ORDER BY split_part(aggregate_id, '/', 1) COLLATE "C", replay_at, aggregate_id COLLATE "C", sequence"#;

/// The sort behind the cursor holds the whole log; in memory it takes a fraction of the time
/// it takes spilled to disk with the default 4 MB.
const SORT_MEMORY: &str = "SET LOCAL work_mem = '64MB'";

/// FETCH takes no bind parameter, so rows per round trip are fixed here, apart from chunk size.
const FETCH_PAGE: &str = "FETCH FORWARD 2000 FROM replay";

/// Workspace (as the cursor grouped it), aggregate type and id, sequence, payload, metadata.
/// An event as the log holds it.
struct Stored<'a> {
    event_type: &'a str,
    version: &'a str,
    payload: &'a str,
    metadata: &'a str,
}

/// (workspace, aggregate type, aggregate id, sequence, event type, event version, payload,
/// metadata)
type LogRow = (String, String, String, i64, String, String, String, String);

/// Replays the whole log into projections the caller has emptied, writing about
/// `chunk_events` events per statement. Returns how many events were applied.
pub(crate) async fn replay_log(
    pool: &PgPool,
    chunk_events: usize,
    progress: &dyn RebuildProgress,
) -> Result<usize, StoreError> {
    let mut reader = LogReader::open(pool).await?;
    let mut replay = Replay::new(chunk_events);
    let mut writer = ChunkWriter::new(pool.clone());
    loop {
        let page = reader.next_page().await?;
        if page.is_empty() {
            break;
        }
        let unseen = replay.workspaces_not_started(&page);
        for (workspace, key, holder) in reader.registered_names(&unseen).await? {
            replay
                .projection
                .known_names(&workspace, [(NameKey::stored(key), holder)]);
        }
        let rows = page.len() as u64;
        for row in page {
            if let Some(chunk) = replay.push(row) {
                writer.write(chunk).await?;
            }
        }
        progress.replayed(rows);
    }
    writer.write(replay.projection.take_changes()).await?;
    writer.flush().await?;
    reader.close().await?;
    replay.outcome()
}

/// Writes one chunk at a time in the background, so the database stores a chunk while the
/// next one is read and folded. Chunks still commit in order: each waits for the previous.
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

    async fn write(&mut self, chunk: ReadModelChanges) -> Result<(), StoreError> {
        self.flush().await?;
        if chunk.is_empty() {
            return Ok(());
        }
        let pool = self.pool.clone();
        self.in_flight = Some(tokio::spawn(async move {
            writer::write(&pool, None, &chunk, NameClaims::FirstComes).await?;
            Ok(())
        }));
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
            .bind(&STREAM_TYPES[..])
            .execute(&mut *tx)
            .await?;
        Ok(LogReader { tx })
    }

    async fn next_page(&mut self) -> Result<Vec<LogRow>, StoreError> {
        Ok(sqlx::query_as(FETCH_PAGE).fetch_all(&mut *self.tx).await?)
    }

    /// The registry is not emptied by a rebuild (it holds claims of requests in flight), so
    /// replaying a workspace starts from its names as they stand, as catch-up would.
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

/// The replay's progress: the folds of the workspaces of the chunk being filled.
struct Replay {
    chunk_events: usize,
    projection: Projection,
    /// The workspace being folded, and those folded since the last chunk was taken.
    current: Option<String>,
    finished: Vec<String>,
    /// Aggregates whose folding stopped at an event that cannot be read, as catch-up would stop
    /// at it: their offsets stay before it, so catch-up keeps reporting them.
    failed: HashSet<String>,
    applied: usize,
}

impl Replay {
    fn new(chunk_events: usize) -> Self {
        Replay {
            chunk_events: chunk_events.max(1),
            projection: Projection::default(),
            current: None,
            finished: Vec::new(),
            failed: HashSet::new(),
            applied: 0,
        }
    }

    fn workspaces_not_started(&self, page: &[LogRow]) -> Vec<String> {
        let mut unseen: Vec<String> = Vec::new();
        for (workspace, ..) in page {
            if Some(workspace) != self.current.as_ref() && unseen.last() != Some(workspace) {
                unseen.push(workspace.clone());
            }
        }
        unseen
    }

    /// Folds one event; returns a chunk's changes when one is full.
    fn push(&mut self, row: LogRow) -> Option<ReadModelChanges> {
        let (
            workspace,
            aggregate_type,
            aggregate_id,
            sequence,
            event_type,
            version,
            payload,
            metadata,
        ) = row;
        let stored = Stored {
            event_type: &event_type,
            version: &version,
            payload: &payload,
            metadata: &metadata,
        };
        let mut full = None;
        if self.current.as_ref() != Some(&workspace) {
            self.finished.extend(self.current.replace(workspace));
            // Whole workspaces per chunk: the next one starts a new chunk if this one is full.
            if self.projection.pending_events() >= self.chunk_events {
                full = Some(self.take_chunk());
            }
        } else if self.projection.pending_events() >= self.chunk_events {
            // A workspace alone filling a chunk is written in pieces, so memory stays bounded.
            full = Some(self.take_chunk());
        }
        match aggregate_type.as_str() {
            CredentialAggregate::TYPE => {
                self.apply::<CredentialAggregate>(&aggregate_id, sequence, &stored)
            }
            _ => self.apply::<AiModelConfig>(&aggregate_id, sequence, &stored),
        }
        full
    }

    fn take_chunk(&mut self) -> ReadModelChanges {
        let chunk = self.projection.take_changes();
        for workspace in self.finished.drain(..) {
            self.projection.forget_workspace(&workspace);
        }
        chunk
    }

    fn apply<A: Projected>(&mut self, aggregate_id: &str, sequence: i64, stored: &Stored<'_>) {
        if self.failed.contains(aggregate_id) {
            return;
        }
        let event: A::Event = match decode(stored.event_type, stored.version, stored.payload) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(aggregate_id, sequence, %error, "unreadable event; its aggregate is projected up to the one before");
                self.failed.insert(aggregate_id.to_owned());
                return;
            }
        };
        // Metadata that does not read as a map of strings is ignored, as catch-up does.
        let metadata = EventMetadata::from_json(stored.metadata);
        let projected = project::<A>(
            &mut self.projection,
            aggregate_id,
            sequence,
            &event,
            &metadata,
            Offsets::default(),
        );
        match projected {
            Ok(()) => self.applied += 1,
            Err(error) => {
                tracing::error!(aggregate_id, %error, "not projected");
                self.failed.insert(aggregate_id.to_owned());
            }
        }
    }

    fn outcome(&self) -> Result<usize, StoreError> {
        if !self.failed.is_empty() {
            return Err(StoreError::Internal(format!(
                "{} aggregates could not be projected",
                self.failed.len()
            )));
        }
        Ok(self.applied)
    }
}
