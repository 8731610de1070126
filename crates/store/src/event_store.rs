use std::collections::HashMap;
use std::marker::PhantomData;

use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use postgres_es::PostgresEventRepository;
use sqlx::{PgPool, Row};

/// The serialized shape of the aggregates snapshotted here. Bump it whenever a field is added,
/// removed or changes meaning: `#[serde(default)]` would otherwise load an old snapshot into a
/// state no replay would produce.
pub const SNAPSHOT_SCHEMA_VERSION: i32 = 1;

/// An aggregate loaded from its snapshot plus the events after it.
pub struct LoadedAggregate<A> {
    aggregate_id: String,
    aggregate: A,
    current_sequence: usize,
    snapshot_sequence: usize,
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
/// aggregate as the command left it *is* the snapshot, and the snapshot is written after the
/// events commit, as a cache: if writing it fails, the events are still the truth.
pub struct SnapshotEventStore<A> {
    repo: PostgresEventRepository,
    pool: PgPool,
    snapshot_every: usize,
    _aggregate: PhantomData<A>,
}

impl<A: Aggregate> SnapshotEventStore<A> {
    pub fn new(pool: PgPool, snapshot_every: usize) -> Self {
        SnapshotEventStore {
            repo: PostgresEventRepository::new(pool.clone()),
            pool,
            snapshot_every: snapshot_every.max(1),
            _aggregate: PhantomData,
        }
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

    async fn read_snapshot(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<(A, usize)>, AggregateError<A::Error>> {
        let row = sqlx::query(
            "SELECT last_sequence, payload FROM aggregate_snapshots
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND schema_version = $3",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(SNAPSHOT_SCHEMA_VERSION)
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        let Some(row) = row else { return Ok(None) };
        let last_sequence: i64 = row.get("last_sequence");
        let payload: serde_json::Value = row.get("payload");
        match serde_json::from_value(payload) {
            Ok(aggregate) => Ok(Some((aggregate, last_sequence as usize))),
            Err(error) => {
                // A snapshot from an older shape of the aggregate: replaying is always correct.
                tracing::warn!(aggregate_id, %error, "ignoring unreadable snapshot");
                Ok(None)
            }
        }
    }

    async fn write_snapshot(&self, aggregate_id: &str, aggregate: &A, last_sequence: usize) {
        let payload = match serde_json::to_value(aggregate) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(aggregate_id, %error, "cannot serialise snapshot");
                return;
            }
        };
        let written = sqlx::query(
            "INSERT INTO aggregate_snapshots (aggregate_type, aggregate_id, last_sequence, schema_version, payload)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                SET last_sequence = excluded.last_sequence, schema_version = excluded.schema_version,
                    payload = excluded.payload, taken_at = now()
                WHERE aggregate_snapshots.last_sequence < excluded.last_sequence
                   OR aggregate_snapshots.schema_version <> excluded.schema_version",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(last_sequence as i64)
        .bind(SNAPSHOT_SCHEMA_VERSION)
        .bind(payload)
        .execute(&self.pool)
        .await;
        if let Err(error) = written {
            tracing::warn!(aggregate_id, %error, "snapshot not written; the next load replays more events");
        }
    }
}

impl<A: Aggregate> SnapshotEventStore<A> {
    /// Appends a command's events in one statement, so one round trip however many there are
    /// (postgres-es' `persist` sends one INSERT per event inside BEGIN/COMMIT). The rows are
    /// exactly those postgres-es writes and reads back.
    async fn append(&self, events: &[SerializedEvent]) -> Result<(), AggregateError<A::Error>> {
        let mut columns = EventColumns::default();
        for event in events {
            columns.aggregate_type.push(event.aggregate_type.as_str());
            columns.aggregate_id.push(event.aggregate_id.as_str());
            columns.sequence.push(event.sequence as i64);
            columns.event_type.push(event.event_type.as_str());
            columns.event_version.push(event.event_version.as_str());
            columns.payload.push(event.payload.to_string());
            columns.metadata.push(event.metadata.to_string());
        }
        let appended = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[]::json[], $7::text[]::json[])",
        )
        .bind(&columns.aggregate_type)
        .bind(&columns.aggregate_id)
        .bind(&columns.sequence)
        .bind(&columns.event_type)
        .bind(&columns.event_version)
        .bind(&columns.payload)
        .bind(&columns.metadata)
        .execute(&self.pool)
        .await;
        match appended {
            Ok(_) => Ok(()),
            // A duplicate (aggregate, sequence) means another writer got there first.
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                Err(AggregateError::AggregateConflict)
            }
            Err(error) => Err(database_error(error)),
        }
    }
}

#[derive(Default)]
struct EventColumns<'a> {
    aggregate_type: Vec<&'a str>,
    aggregate_id: Vec<&'a str>,
    sequence: Vec<i64>,
    event_type: Vec<&'a str>,
    event_version: Vec<&'a str>,
    payload: Vec<String>,
    metadata: Vec<String>,
}

fn database_error<E: std::error::Error>(error: sqlx::Error) -> AggregateError<E> {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => AggregateError::DatabaseConnectionError(Box::new(error)),
        other => AggregateError::UnexpectedError(Box::new(other)),
    }
}

fn deserialize<A: Aggregate>(
    events: Vec<SerializedEvent>,
) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
    events
        .into_iter()
        .map(|event| EventEnvelope::<A>::try_from(event).map_err(AggregateError::from))
        .collect()
}

impl<A: Aggregate> EventStore<A> for SnapshotEventStore<A> {
    type AC = LoadedAggregate<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        deserialize(self.repo.get_events::<A>(aggregate_id).await?)
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<Self::AC, AggregateError<A::Error>> {
        let (mut aggregate, snapshot_sequence) =
            self.read_snapshot(aggregate_id).await?.unwrap_or_default();
        let mut current_sequence = snapshot_sequence;
        for envelope in deserialize::<A>(
            self.repo
                .get_last_events::<A>(aggregate_id, snapshot_sequence)
                .await?,
        )? {
            current_sequence = envelope.sequence;
            aggregate.apply(envelope.payload);
        }
        Ok(LoadedAggregate {
            aggregate_id: aggregate_id.to_owned(),
            aggregate,
            current_sequence,
            snapshot_sequence,
        })
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: Self::AC,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // Stamped at append, not when the command started: a retried command's events
        // happened when they were recorded.
        let mut metadata = metadata;
        metadata.insert(
            "occurred_at".to_owned(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        );
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
        let serialized = envelopes
            .iter()
            .map(SerializedEvent::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        self.append(&serialized).await?;

        let last_sequence = context.current_sequence + envelopes.len();
        if last_sequence - context.snapshot_sequence >= self.snapshot_every {
            // The sink already applied the new events to this aggregate.
            self.write_snapshot(&context.aggregate_id, &context.aggregate, last_sequence)
                .await;
        }
        Ok(envelopes)
    }
}
