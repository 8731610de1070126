//! A key rotation's rewraps of many credentials at once: their streams loaded in one query per
//! aggregate type, each credential decided by its aggregate (the domain's [`RewrapPlan`]), every
//! stale key sent to the keyring in one call, and every stream's `CredentialRewrapped` events
//! appended and projected in one statement.
//!
//! The guarantees are a command's: the events take the sequences after those loaded, so a
//! writer that appended to one of the streams in the meantime makes the whole statement fail on
//! the log's key (nothing of the batch is recorded), and its credentials are left to their own
//! `Rewrap` commands, which reload and decide again. Within this process, streams another
//! command is writing are left to their own commands at once, without waiting.

use std::collections::{BTreeMap, HashMap};

use aimc_domain::{
    rewrap_error, AiModelConfig, Ciphertext, ConfigServices, CredentialAggregate, CredentialId,
    DomainError, KeyContext, RewrapPlan, RewrapsCredentials, StreamId, WorkspaceId,
};
use cqrs_es::persist::SerializedEvent;
use cqrs_es::EventEnvelope;
use sqlx::PgPool;

use crate::credentials::CredentialHome;
use crate::database::{is_conflict, is_unavailable, traced};
use crate::error::{CommandError, StoreError};
use crate::event_store::SNAPSHOT_SCHEMA_VERSION;
use crate::read_model::streams::{self, project, Projected};
use crate::read_model::writer::{self, Appended, NameClaims};
use crate::read_model::{EventMetadata, Offsets, Projection, VIEWS};
use crate::upcasting;

/// What a batch rewrap settled, and what it left to the credentials' own commands.
#[derive(Debug, Default)]
pub struct Rewraps {
    /// Credentials whose keys it rewrapped: one `CredentialRewrapped` each.
    pub rewrapped: Vec<CredentialId>,
    /// Credentials whose keys were under the target version already.
    pub current: Vec<CredentialId>,
    /// Credentials removed since they were listed.
    pub gone: Vec<CredentialId>,
    /// Credentials to rewrap with their own `Rewrap` command: a write raced the batch on their
    /// stream, another command of this process was writing it, or its snapshot was unreadable.
    pub left: Vec<CredentialHome>,
}

/// One stream as loaded for the batch, with the credentials of it the batch rewraps.
struct Loaded<A> {
    aggregate_id: String,
    aggregate: A,
    current_sequence: usize,
    snapshot_sequence: usize,
    /// The lowest offset of its views.
    projected: i64,
    homes: Vec<CredentialHome>,
    plans: Vec<RewrapPlan>,
}

/// The streams of one aggregate type, loaded and decided.
struct Decided<A> {
    streams: Vec<Loaded<A>>,
}

/// Keys one keyring call carries: transit refuses a body of more than 1,000 JSON strings
/// (OpenBao's `max_request_json_strings`), 249 keys with their contexts.
const KEYRING_CALL_ITEMS: usize = 100;

/// The snapshot of each stream and the events after it, and how far each stream's views are
/// projected: [`crate::event_store`]'s load, for many streams in one query.
const LOAD: &str = r#"
WITH snapshot AS (
    SELECT aggregate_id, last_sequence, payload FROM aggregate_snapshots
     WHERE aggregate_type = $1 AND aggregate_id = ANY($2) AND schema_version = $3
)
SELECT 0 AS part, aggregate_id, last_sequence AS sequence, NULL::text AS event_type,
       NULL::text AS event_version, payload::text AS payload
  FROM snapshot
UNION ALL
SELECT 1, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload::text
  FROM events e LEFT JOIN snapshot s ON s.aggregate_id = e.aggregate_id
 WHERE e.aggregate_type = $1 AND e.aggregate_id = ANY($2)
   AND e.sequence > coalesce(s.last_sequence, 0)
UNION ALL
SELECT 2, i.aggregate_id, coalesce(min(o.last_sequence), 0), NULL, NULL, NULL
  FROM unnest($2::text[]) AS i(aggregate_id)
 CROSS JOIN unnest($4::text[]) AS v(projection)
  LEFT JOIN projection_offsets o ON o.projection = v.projection AND o.aggregate_id = i.aggregate_id
 GROUP BY i.aggregate_id
ORDER BY 2, 1, 3"#;

/// (part, aggregate id, sequence, event type, event version, payload) of [`LOAD`]'s answer.
type LoadedRow = (
    i32,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn store_error(error: sqlx::Error) -> CommandError {
    if is_unavailable(&error) {
        CommandError::StoreUnavailable(error.to_string())
    } else {
        CommandError::Internal(error.to_string())
    }
}

/// Loads the streams `homes` live in and decides each credential's rewrap to `target` on its
/// aggregate. Credentials removed since they were listed go to `gone`, those under `target`
/// already to `current`; a stream whose snapshot does not read is left to its commands.
async fn decide<A>(
    pool: &PgPool,
    homes: Vec<CredentialHome>,
    target: u32,
    rewraps: &mut Rewraps,
) -> Result<Decided<A>, CommandError>
where
    A: Projected + RewrapsCredentials,
{
    let mut by_stream: BTreeMap<String, Vec<CredentialHome>> = BTreeMap::new();
    for home in homes {
        by_stream
            .entry(home.stream.to_string())
            .or_default()
            .push(home);
    }
    if by_stream.is_empty() {
        return Ok(Decided {
            streams: Vec::new(),
        });
    }
    let ids: Vec<String> = by_stream.keys().cloned().collect();
    let rows: Vec<LoadedRow> = traced(
        pool,
        "SELECT events",
        sqlx::query_as(LOAD)
            .bind(A::TYPE)
            .bind(&ids)
            .bind(SNAPSHOT_SCHEMA_VERSION)
            .bind(&VIEWS[..])
            .fetch_all(pool),
    )
    .await
    .map_err(store_error)?;

    struct Read<A> {
        aggregate: A,
        current_sequence: usize,
        snapshot_sequence: usize,
        projected: i64,
        unreadable: bool,
    }
    let mut read: HashMap<String, Read<A>> = HashMap::new();
    for (part, aggregate_id, sequence, event_type, event_version, payload) in rows {
        let stream = read.entry(aggregate_id).or_insert_with(|| Read {
            aggregate: A::default(),
            current_sequence: 0,
            snapshot_sequence: 0,
            projected: 0,
            unreadable: false,
        });
        match (part, payload) {
            (0, Some(payload)) => match serde_json::from_str(&payload) {
                Ok(aggregate) => {
                    stream.aggregate = aggregate;
                    stream.current_sequence = sequence as usize;
                    stream.snapshot_sequence = sequence as usize;
                }
                // Of an older shape: the stream's own command replays it from the start.
                Err(_) => stream.unreadable = true,
            },
            (1, Some(payload)) => {
                let event: A::Event = upcasting::decode(
                    event_type.as_deref().unwrap_or_default(),
                    event_version.as_deref().unwrap_or_default(),
                    &payload,
                )
                .map_err(|error| CommandError::Internal(format!("unreadable event: {error}")))?;
                stream.aggregate.apply(event);
                stream.current_sequence = sequence as usize;
            }
            (2, _) => stream.projected = sequence,
            _ => {}
        }
    }

    let mut streams = Vec::new();
    for (aggregate_id, homes) in by_stream {
        let Some(stream) = read.remove(&aggregate_id) else {
            // Every listed stream has its offsets row in the answer.
            return Err(CommandError::Internal(format!(
                "stream {aggregate_id} missing from its load"
            )));
        };
        if stream.unreadable {
            rewraps.left.extend(homes);
            continue;
        }
        let mut plans = Vec::new();
        let mut planned = Vec::new();
        for home in homes {
            match stream.aggregate.plan_rewrap(home.credential_id, target) {
                Ok(Some(plan)) => {
                    plans.push(plan);
                    planned.push(home);
                }
                Ok(None) => rewraps.current.push(home.credential_id),
                Err(DomainError::CredentialNotFound(id)) => rewraps.gone.push(id),
                Err(error) => return Err(error.into()),
            }
        }
        if !plans.is_empty() {
            streams.push(Loaded {
                aggregate_id,
                aggregate: stream.aggregate,
                current_sequence: stream.current_sequence,
                snapshot_sequence: stream.snapshot_sequence,
                projected: stream.projected,
                homes: planned,
                plans,
            });
        }
    }
    Ok(Decided { streams })
}

impl<A> Decided<A>
where
    A: Projected + RewrapsCredentials,
{
    fn items(&self) -> impl Iterator<Item = &(Ciphertext, KeyContext)> {
        self.streams
            .iter()
            .flat_map(|stream| &stream.plans)
            .flat_map(RewrapPlan::items)
    }

    fn homes(self) -> impl Iterator<Item = CredentialHome> {
        self.streams.into_iter().flat_map(|stream| stream.homes)
    }

    /// Each stream's events from the rewrapped keys (taken from `rewrapped` in the order of
    /// [`Decided::items`]), projected into `projection`, serialized into `appended`, with a
    /// snapshot where one is due.
    fn stage(
        &self,
        rewrapped: &mut impl Iterator<Item = Ciphertext>,
        metadata: &HashMap<String, String>,
        snapshot_every: usize,
        projection: &mut Projection,
        appended: &mut Vec<Staged>,
    ) -> Result<Vec<CredentialId>, CommandError> {
        let recorded = EventMetadata::from_map(metadata);
        let mut done = Vec::new();
        for stream in &self.streams {
            let mut aggregate = stream.aggregate.clone();
            let mut envelopes: Vec<EventEnvelope<A>> = Vec::new();
            for (plan, sequence) in stream.plans.iter().zip(stream.current_sequence + 1..) {
                let keys = rewrapped.by_ref().take(plan.items().len()).collect();
                let event = A::credential_event(plan.clone().rewrapped(keys)?);
                aggregate.apply(event.clone());
                done.push(plan.credential_id());
                envelopes.push(EventEnvelope {
                    aggregate_id: stream.aggregate_id.clone(),
                    sequence,
                    payload: event,
                    metadata: metadata.clone(),
                });
            }
            let start = stream.current_sequence as i64;
            stream
                .aggregate
                .clone()
                .start_projection(projection, &stream.aggregate_id, start);
            for envelope in &envelopes {
                project::<A>(
                    projection,
                    &stream.aggregate_id,
                    envelope.sequence as i64,
                    &envelope.payload,
                    &recorded,
                    Offsets::all(start),
                )
                .map_err(|error| CommandError::Internal(error.to_string()))?;
            }
            let last_sequence = stream.current_sequence + envelopes.len();
            let snapshot = if last_sequence - stream.snapshot_sequence >= snapshot_every {
                let payload = serde_json::to_string(&aggregate)
                    .map_err(|error| CommandError::Internal(error.to_string()))?;
                Some((last_sequence as i64, SNAPSHOT_SCHEMA_VERSION, payload))
            } else {
                None
            };
            let events = envelopes
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
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| CommandError::Internal(error.to_string()))?;
            appended.push(Staged {
                aggregate_type: A::TYPE,
                aggregate_id: stream.aggregate_id.clone(),
                events,
                snapshot,
            });
        }
        Ok(done)
    }

    /// Projects what older builds appended to these streams and never projected, so the
    /// batch's rows land on current views (as a command's load does).
    async fn catch_up(&self, pool: &PgPool) -> Result<(), CommandError> {
        for stream in &self.streams {
            if stream.projected < stream.current_sequence as i64 {
                streams::catch_up::<A>(pool, &stream.aggregate_id)
                    .await
                    .map_err(|error| match error {
                        StoreError::Unavailable(reason) => CommandError::StoreUnavailable(reason),
                        error => CommandError::Internal(error.to_string()),
                    })?;
            }
        }
        Ok(())
    }
}

/// How long before a deadline a write must have begun: the time it has to commit and be
/// answered (as a command's append allows).
const COMMIT_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// The latest time, by wall clock, at which the batch's write may begin when it runs under a
/// deadline; a rotation runs without one.
fn write_start_by() -> Option<chrono::DateTime<chrono::Utc>> {
    let deadline = aimc_domain::deadline::current()?;
    let left = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .saturating_sub(COMMIT_MARGIN);
    Some(chrono::Utc::now() + left)
}

/// A stream's events as the writer takes them, owned.
struct Staged {
    aggregate_type: &'static str,
    aggregate_id: String,
    events: Vec<(i64, String, String, String, String)>,
    snapshot: Option<(i64, i32, String)>,
}

/// Rewraps the keys of `homes` (credentials of `workspace`) sealed under a key version older
/// than `target`: one load per aggregate type, one keyring call, one statement. `metadata` is
/// recorded with every event, as a command's.
pub(crate) async fn rewrap(
    pool: &PgPool,
    services: &ConfigServices,
    snapshot_every: usize,
    workspace: &WorkspaceId,
    homes: Vec<CredentialHome>,
    target: u32,
    metadata: HashMap<String, String>,
) -> Result<Rewraps, CommandError> {
    let mut rewraps = Rewraps::default();
    let (mut configs, mut own) = (Vec::new(), Vec::new());
    for home in homes {
        match &home.stream {
            _ if home.owner.workspace != *workspace => rewraps.left.push(home),
            StreamId::Config(_) => configs.push(home),
            StreamId::Credential { .. } => own.push(home),
        }
    }
    let configs = decide::<AiModelConfig>(pool, configs, target, &mut rewraps).await?;
    let own = decide::<CredentialAggregate>(pool, own, target, &mut rewraps).await?;

    let items: Vec<(Ciphertext, KeyContext)> =
        configs.items().chain(own.items()).cloned().collect();
    if items.is_empty() {
        return Ok(rewraps);
    }
    let mut rewrapped = Vec::with_capacity(items.len());
    for call in items.chunks(KEYRING_CALL_ITEMS) {
        match services.sealer.rewrap(workspace, call.to_vec()).await {
            Ok(keys) if keys.len() == call.len() => rewrapped.extend(keys),
            Ok(_) => {
                return Err(DomainError::ServiceFailed(
                    aimc_domain::Service::Keyring,
                    "the keyring rewrapped fewer keys than asked".into(),
                )
                .into())
            }
            Err(error) => match rewrap_error(error) {
                error @ DomainError::Unavailable(..) => return Err(error.into()),
                // A key the keyring refuses: each credential's own command tells which.
                _ => {
                    rewraps.left.extend(configs.homes().chain(own.homes()));
                    return Ok(rewraps);
                }
            },
        }
    }

    // Stamped at append, as a command's events are.
    let mut metadata = metadata;
    metadata.insert(
        "occurred_at".to_owned(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    );
    let mut rewrapped = rewrapped.into_iter();
    let mut projection = Projection::default();
    let mut staged = Vec::new();
    let mut done = configs.stage(
        &mut rewrapped,
        &metadata,
        snapshot_every,
        &mut projection,
        &mut staged,
    )?;
    done.extend(own.stage(
        &mut rewrapped,
        &metadata,
        snapshot_every,
        &mut projection,
        &mut staged,
    )?);
    configs.catch_up(pool).await?;
    own.catch_up(pool).await?;

    let changes = projection.take_changes();
    let appended: Vec<Appended<'_>> = staged
        .iter()
        .map(|stream| Appended {
            aggregate_type: stream.aggregate_type,
            aggregate_id: &stream.aggregate_id,
            events: &stream.events,
            snapshot: stream.snapshot.as_ref(),
            start_by: write_start_by(),
        })
        .collect();
    let written = traced(
        pool,
        "INSERT events",
        writer::write_streams(pool, &appended, &changes, NameClaims::Enforced),
    )
    .await;
    match written {
        Ok(()) => rewraps.rewrapped = done,
        // Another writer appended to one of the streams since they were loaded.
        Err(error) if is_conflict(&error) => {
            rewraps.left.extend(configs.homes().chain(own.homes()));
        }
        Err(error) => return Err(store_error(error)),
    }
    Ok(rewraps)
}
