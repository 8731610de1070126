//! The event log (postgres-es' `events` table) with snapshots, behind cqrs-es' `EventStore`.
//!
//! Loading an aggregate is one query: its snapshot, the events after it, and how far its views
//! have been projected. Committing is one statement: the events, the snapshot when one is due,
//! and every read-model row they produce (see [`crate::read_model::writer`]), so a command that
//! answers 2xx is readable on every replica and a command that fails leaves nothing behind.
//!
//! A command leaves its aggregate *parked* here, as it left it: the next command on it in this
//! process starts from the parked aggregate instead of reading the stream again. Only an append
//! proves a parked aggregate current (another process's event at the sequence it takes fails
//! it, and the command goes on from the stream as stored), so [`crate::command_bus`] decides
//! again on the stored stream whenever a decision on a parked aggregate appended nothing.
//!
//! A stream that other processes write too (replicas behind a load balancer that spreads one
//! user's requests) would make most parked starts stale, each costing a decision and a
//! statement in vain. So a parked aggregate found stale is trusted again only once the stream
//! as stored has matched it [`TRUSTED`] times in a row, its commands reading the stream
//! meanwhile as they would without parking.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use sqlx::PgPool;

use crate::credentials::{self, CredentialRow, StandaloneKeys};
use crate::database::{is_conflict, is_unavailable, traced};
use crate::error::StoreError;
use crate::group_commit::{GroupCommit, Write};
use crate::read_model::streams::{self, project, Projected};
use crate::read_model::{EventMetadata, Offsets, Projection, VIEWS};
use crate::upcasting::decode;

/// The serialized shape of the aggregates snapshotted here. Bump it whenever a field is added,
/// removed or changes meaning: `#[serde(default)]` would otherwise load an old snapshot into a
/// state no replay would produce.
pub const SNAPSHOT_SCHEMA_VERSION: i32 = 1;

/// An aggregate loaded from its snapshot plus the events after it, and as it was before the
/// command, which the folds start from.
pub struct LoadedAggregate<A> {
    aggregate_id: String,
    aggregate: A,
    before: A,
    current_sequence: usize,
    snapshot_sequence: usize,
    /// Times in a row the stream as stored matched what this process parked of it, up to
    /// [`TRUSTED`].
    confirmations: u8,
}

impl<A> LoadedAggregate<A> {
    /// The stream's last sequence as the command found it.
    pub(crate) fn current_sequence(&self) -> usize {
        self.current_sequence
    }

    /// Sets how far what this process parked of the stream is to be trusted, from what it
    /// parked before (its sequence and confirmations), now that the stream was read as stored.
    pub(crate) fn confirm(&mut self, parked_before: Option<(usize, u8)>) {
        self.confirmations = match parked_before {
            None => TRUSTED,
            Some((sequence, confirmations)) if sequence == self.current_sequence => {
                confirmations.saturating_add(1).min(TRUSTED)
            }
            Some(_) => 0,
        };
    }
}

impl<A: Aggregate> AggregateContext<A> for LoadedAggregate<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

/// The postgres-es event log with a snapshot taken every `snapshot_every` events, so loading an
/// aggregate costs the same however long its history is.
///
/// Not postgres-es' own snapshot store: cqrs-es 0.5's `EventSink` already applies each new event
/// to the aggregate, and `PersistedEventStore` applies them again before snapshotting. Here the
/// aggregate as the command left it *is* the snapshot, written with the events.
pub struct SnapshotEventStore<A> {
    pool: PgPool,
    snapshot_every: usize,
    group: Arc<GroupCommit>,
    /// Aggregates as this process's last command on them left them; the one left longest ago
    /// goes first.
    parked: Mutex<hashlink::LruCache<String, Parked<A>>>,
    _aggregate: PhantomData<A>,
}

/// The most aggregates of one type a process keeps parked. A configuration or a credential
/// takes a few kilobytes, so this bounds the cache to tens of megabytes; an aggregate not
/// written for longer than its last 10,000 peers costs one read again.
const PARKED_AGGREGATES: usize = 10_000;

/// How many times in a row the stream as stored must match a parked aggregate found stale
/// before commands start from it again.
const TRUSTED: u8 = 3;

/// An aggregate as a command left it, with the sequences its next command needs.
pub(crate) struct Parked<A> {
    aggregate: A,
    current_sequence: usize,
    snapshot_sequence: usize,
    confirmations: u8,
}

impl<A: Clone> Parked<A> {
    /// Whether a command may start from it.
    pub(crate) fn trusted(&self) -> bool {
        self.confirmations >= TRUSTED
    }

    /// Its sequence and confirmations, for [`LoadedAggregate::confirm`].
    pub(crate) fn as_known(&self) -> (usize, u8) {
        (self.current_sequence, self.confirmations)
    }

    pub(crate) fn into_loaded(self, aggregate_id: &str) -> LoadedAggregate<A> {
        LoadedAggregate {
            aggregate_id: aggregate_id.to_owned(),
            before: self.aggregate.clone(),
            aggregate: self.aggregate,
            current_sequence: self.current_sequence,
            snapshot_sequence: self.snapshot_sequence,
            confirmations: self.confirmations,
        }
    }
}

/// A stream as one query reads it for a command.
struct Stream<A: Aggregate> {
    snapshot: Snapshot<A>,
    /// The events after the snapshot, decoded.
    events: Vec<(usize, A::Event)>,
    /// The lowest offset of its views.
    projected: i64,
}

enum Snapshot<A> {
    None,
    Taken(A, usize),
    /// Of an older shape of the aggregate: replaying is always right.
    Unreadable,
}

const LOAD: &str = r#"
WITH snapshot AS (
    SELECT last_sequence, payload FROM aggregate_snapshots
     WHERE aggregate_type = $1 AND aggregate_id = $2 AND schema_version = $3
)
SELECT 0 AS part, last_sequence AS sequence, payload::text AS payload,
       NULL AS event_type, NULL AS event_version FROM snapshot
UNION ALL
SELECT 1, sequence, payload::text, event_type, event_version FROM events
 WHERE aggregate_type = $1 AND aggregate_id = $2
   AND sequence > coalesce((SELECT last_sequence FROM snapshot), 0)
UNION ALL
SELECT 2, coalesce(min(o.last_sequence), 0), NULL, NULL, NULL
  FROM unnest($4::text[]) AS v(projection)
  LEFT JOIN projection_offsets o ON o.projection = v.projection AND o.aggregate_id = $2
ORDER BY part, sequence"#;

impl<A: Projected> SnapshotEventStore<A> {
    pub fn new(pool: PgPool, snapshot_every: usize) -> Self {
        let group = GroupCommit::new(pool.clone());
        Self::sharing(pool, snapshot_every, group)
    }

    /// A store whose commands' writes meet those of the other stores given the same `group`.
    pub(crate) fn sharing(pool: PgPool, snapshot_every: usize, group: Arc<GroupCommit>) -> Self {
        SnapshotEventStore {
            pool,
            snapshot_every: snapshot_every.max(1),
            group,
            parked: Mutex::new(hashlink::LruCache::new(PARKED_AGGREGATES)),
            _aggregate: PhantomData,
        }
    }

    /// The aggregate as this process's last command on it left it, if it is still parked;
    /// taken, so that a command whose outcome is unknown leaves nothing parked behind it.
    pub(crate) fn take_parked(&self, aggregate_id: &str) -> Option<Parked<A>> {
        self.parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(aggregate_id)
    }

    /// Parks an aggregate a command read and left unchanged (it refused, or found nothing to
    /// change): it is the stream as stored.
    pub(crate) fn park_unchanged(&self, context: LoadedAggregate<A>) {
        self.park(
            &context.aggregate_id,
            Parked {
                aggregate: context.before,
                current_sequence: context.current_sequence,
                snapshot_sequence: context.snapshot_sequence,
                confirmations: context.confirmations,
            },
        );
    }

    /// Forgets the parked aggregate of a stream written around the command path (a batch
    /// rewrap), which would otherwise cost its next command a lost race.
    pub(crate) fn forget_parked(&self, aggregate_id: &str) {
        self.take_parked(aggregate_id);
    }

    fn park(&self, aggregate_id: &str, parked: Parked<A>) {
        self.parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(aggregate_id.to_owned(), parked);
    }

    /// The aggregate as a command would see it: snapshot plus newer events.
    pub async fn load(&self, aggregate_id: &str) -> Result<(A, usize), AggregateError<A::Error>> {
        let loaded = self.load_aggregate(aggregate_id).await?;
        Ok((loaded.aggregate, loaded.current_sequence))
    }

    /// Replays every event from the start, ignoring the snapshot; the reference the snapshot
    /// must equal.
    pub async fn replay_from_scratch(
        &self,
        aggregate_id: &str,
    ) -> Result<(A, usize), AggregateError<A::Error>> {
        let mut aggregate = A::default();
        let mut sequence = 0;
        for envelope in self.load_events(aggregate_id).await? {
            sequence = envelope.sequence;
            aggregate.apply(envelope.payload);
        }
        Ok((aggregate, sequence))
    }

    async fn read_stream(&self, aggregate_id: &str) -> Result<Stream<A>, AggregateError<A::Error>> {
        type Row = (i32, i64, Option<String>, Option<String>, Option<String>);
        let rows: Vec<Row> = traced(
            &self.pool,
            "SELECT events",
            sqlx::query_as(LOAD)
                .bind(A::TYPE)
                .bind(aggregate_id)
                .bind(SNAPSHOT_SCHEMA_VERSION)
                .bind(&VIEWS[..])
                .fetch_all(&self.pool),
        )
        .await
        .map_err(database_error)?;
        let mut stream = Stream {
            snapshot: Snapshot::None,
            events: Vec::new(),
            projected: 0,
        };
        for (part, sequence, payload, event_type, event_version) in rows {
            match (part, payload) {
                (0, Some(payload)) => {
                    stream.snapshot = match serde_json::from_str(&payload) {
                        Ok(aggregate) => Snapshot::Taken(aggregate, sequence as usize),
                        Err(error) => {
                            tracing::warn!(aggregate_id, %error, "ignoring unreadable snapshot");
                            Snapshot::Unreadable
                        }
                    }
                }
                (1, Some(payload)) => stream.events.push((
                    sequence as usize,
                    decode::<A::Event>(
                        event_type.as_deref().unwrap_or_default(),
                        event_version.as_deref().unwrap_or_default(),
                        &payload,
                    )?,
                )),
                (2, _) => stream.projected = sequence,
                _ => {}
            }
        }
        Ok(stream)
    }

    /// Appends the command's events and projects them, in one statement (shared with other
    /// commands' under load, see [`GroupCommit`]); returns them with the aggregate as they left
    /// it, and what `lookup` found, looked up in that statement (none when nothing was written).
    pub async fn append(
        &self,
        events: Vec<A::Event>,
        context: LoadedAggregate<A>,
        metadata: HashMap<String, String>,
        lookup: Option<&StandaloneKeys>,
    ) -> Result<Appended<A>, AggregateError<A::Error>> {
        if events.is_empty() {
            let aggregate = context.aggregate.clone();
            self.park_unchanged(context);
            return Ok(Appended {
                events: Vec::new(),
                aggregate,
                found: None,
            });
        }
        let aggregate_id = context.aggregate_id.as_str();
        // Stamped at append, not when the command started: a retried command's events
        // happened when they were recorded.
        let mut metadata = metadata;
        metadata.insert(
            "occurred_at".to_owned(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        );
        let recorded = EventMetadata::from_map(&metadata);
        let envelopes: Vec<EventEnvelope<A>> = events
            .into_iter()
            .zip(context.current_sequence + 1..)
            .map(|(payload, sequence)| EventEnvelope {
                aggregate_id: context.aggregate_id.clone(),
                sequence,
                payload,
                metadata: metadata.clone(),
            })
            .collect();

        let mut projection = Projection::default();
        let start = context.current_sequence as i64;
        context
            .before
            .start_projection(&mut projection, aggregate_id, start);
        for envelope in &envelopes {
            project::<A>(
                &mut projection,
                aggregate_id,
                envelope.sequence as i64,
                &envelope.payload,
                &recorded,
                Offsets::all(start),
            )
            .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?;
        }
        let changes = projection.take_changes();

        let last_sequence = context.current_sequence + envelopes.len();
        let snapshot_due = last_sequence - context.snapshot_sequence >= self.snapshot_every;
        let snapshot = if snapshot_due {
            Some((
                last_sequence as i64,
                SNAPSHOT_SCHEMA_VERSION,
                serde_json::to_string(&context.aggregate)?,
            ))
        } else {
            None
        };
        let serialized = envelopes
            .iter()
            .map(|envelope| {
                SerializedEvent::try_from(envelope).map(|event| {
                    (
                        event.sequence as i64,
                        event.event_type,
                        event.event_version,
                        event.payload.to_string(),
                        event.metadata.to_string(),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let found = self
            .group
            .write(Write {
                aggregate_type: A::TYPE,
                aggregate_id: aggregate_id.to_owned(),
                events: serialized,
                snapshot,
                start_by: write_start_by(),
                changes,
                lookup: lookup.cloned(),
            })
            .await
            .map_err(database_error)?;
        self.park(
            aggregate_id,
            Parked {
                aggregate: context.aggregate.clone(),
                current_sequence: last_sequence,
                snapshot_sequence: if snapshot_due {
                    last_sequence
                } else {
                    context.snapshot_sequence
                },
                confirmations: context.confirmations,
            },
        );
        // Written, whatever the rows found: a malformed one fails only the answer.
        let found = match lookup {
            Some(_) => Some(
                credentials::typed(found)
                    .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?,
            ),
            None => None,
        };
        Ok(Appended {
            events: envelopes,
            aggregate: context.aggregate,
            found,
        })
    }
}

/// What [`SnapshotEventStore::append`] appended, the aggregate as its events left it, and what
/// the lookup asked with them found.
pub struct Appended<A: Aggregate> {
    pub events: Vec<EventEnvelope<A>>,
    pub aggregate: A,
    pub found: Option<Vec<CredentialRow>>,
}

/// How long before the request's deadline a write must have begun on the server: the time it
/// has to commit and be answered before the client is told 503.
const COMMIT_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// The latest time, by wall clock, at which this request's write may begin, if it has a
/// deadline. Compared with the database's clock: skew between the hosts moves it by as much.
fn write_start_by() -> Option<chrono::DateTime<chrono::Utc>> {
    let deadline = aimc_domain::deadline::current()?;
    let left = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .saturating_sub(COMMIT_MARGIN);
    Some(chrono::Utc::now() + left)
}

/// A lost race is a conflict to retry; an unreachable database is "try later"; the rest is a
/// fault.
fn database_error<E: std::error::Error>(error: sqlx::Error) -> AggregateError<E> {
    if is_conflict(&error) {
        AggregateError::AggregateConflict
    } else if is_unavailable(&error) {
        AggregateError::DatabaseConnectionError(Box::new(error))
    } else {
        AggregateError::UnexpectedError(Box::new(error))
    }
}

impl<A: Projected> EventStore<A> for SnapshotEventStore<A> {
    type AC = LoadedAggregate<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let rows: Vec<(i64, String, String, String, String)> = traced(
            &self.pool,
            "SELECT events",
            sqlx::query_as(
                "SELECT sequence, event_type, event_version, payload::text, metadata::text FROM events
                  WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
            )
            .bind(A::TYPE)
            .bind(aggregate_id)
            .fetch_all(&self.pool),
        )
        .await
        .map_err(database_error)?;
        rows.into_iter()
            .map(|(sequence, event_type, event_version, payload, metadata)| {
                Ok(EventEnvelope {
                    aggregate_id: aggregate_id.to_owned(),
                    sequence: sequence as usize,
                    payload: decode(&event_type, &event_version, &payload)?,
                    metadata: serde_json::from_str(&metadata)?,
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(AggregateError::from)
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<Self::AC, AggregateError<A::Error>> {
        let stream = self.read_stream(aggregate_id).await?;
        let (aggregate, current_sequence, snapshot_sequence) = match stream.snapshot {
            Snapshot::Unreadable => {
                let (aggregate, sequence) = self.replay_from_scratch(aggregate_id).await?;
                (aggregate, sequence, 0)
            }
            snapshot => {
                let (mut aggregate, snapshot_sequence) = match snapshot {
                    Snapshot::Taken(aggregate, sequence) => (aggregate, sequence),
                    _ => (A::default(), 0),
                };
                let mut current_sequence = snapshot_sequence;
                for (sequence, event) in stream.events {
                    aggregate.apply(event);
                    current_sequence = sequence;
                }
                (aggregate, current_sequence, snapshot_sequence)
            }
        };
        // Events a process of an older build appended and never projected: the views must be
        // current before this command's rows are written on top of them.
        if stream.projected < current_sequence as i64 {
            streams::catch_up::<A>(&self.pool, aggregate_id)
                .await
                .map_err(|error| match error {
                    StoreError::Unavailable(_) => {
                        AggregateError::DatabaseConnectionError(Box::new(error))
                    }
                    error => AggregateError::UnexpectedError(Box::new(error)),
                })?;
        }
        Ok(LoadedAggregate {
            aggregate_id: aggregate_id.to_owned(),
            before: aggregate.clone(),
            aggregate,
            current_sequence,
            snapshot_sequence,
            confirmations: TRUSTED,
        })
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: Self::AC,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        Ok(self.append(events, context, metadata, None).await?.events)
    }
}
