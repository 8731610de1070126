use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aimc_domain::{AggregateId, AiModelConfig, AiModelConfigEvent, CredentialId, WorkspaceId};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::error::StoreError;

mod rebuild;

/// Events per transaction of a rebuild: large enough that the statements' round trips do not
/// count, small enough that a chunk's rows stay a few megabytes.
pub const REBUILD_CHUNK_EVENTS: usize = 10_000;

const CONFIG_VIEW: &str = "config_view";
const AUDIT_LOG: &str = "audit_log";
const CREDENTIAL_VIEW: &str = "credential_view";
/// Sorted, so offset rows are always locked in the same order.
const PROJECTIONS: [&str; 3] = [AUDIT_LOG, CONFIG_VIEW, CREDENTIAL_VIEW];

/// An event as read back from the log for projecting.
struct RecordedEvent {
    sequence: i64,
    event: AiModelConfigEvent,
    metadata: HashMap<String, String>,
}

impl RecordedEvent {
    /// Metadata that does not read as a map of strings is ignored, as `catch_up` does.
    fn from_text(sequence: i64, payload: &str, metadata: &str) -> Result<Self, serde_json::Error> {
        Ok(RecordedEvent {
            sequence,
            event: serde_json::from_str(payload)?,
            metadata: serde_json::from_str(metadata).unwrap_or_default(),
        })
    }

    fn occurred_at(&self) -> DateTime<Utc> {
        self.metadata
            .get("occurred_at")
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&Utc))
            .unwrap_or_else(Utc::now)
    }
}

/// Brings the read model (config_view, audit_log) up to date with the event log.
///
/// Projecting reads the log from each projection's recorded offset rather than trusting the
/// events handed over after a commit, so it is the same code whether it runs right after a
/// command, for catch-up at start-up, or for a full rebuild, and concurrent writers to one
/// aggregate cannot apply events out of order: the offset rows are locked for the duration.
pub struct Projector {
    pool: PgPool,
}

impl Projector {
    pub fn new(pool: PgPool) -> Self {
        Projector { pool }
    }

    /// Applies every event of `aggregate_id` the read model has not seen; returns how many.
    #[tracing::instrument(skip(self))]
    pub async fn catch_up(&self, aggregate_id: &str) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Creates the offset rows on first use and locks them either way (the no-op update
        // takes the row lock), in one round trip.
        let offsets: HashMap<String, i64> = sqlx::query_as(
            "INSERT INTO projection_offsets (projection, aggregate_id)
             SELECT unnest($1::text[]), $2
             ON CONFLICT (projection, aggregate_id) DO UPDATE SET last_sequence = projection_offsets.last_sequence
             RETURNING projection, last_sequence",
        )
        .bind(&PROJECTIONS[..])
        .bind(aggregate_id)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let offset = |projection: &str| offsets.get(projection).copied().unwrap_or(0);
        let from = PROJECTIONS.iter().map(|p| offset(p)).min().unwrap_or(0);

        let rows = sqlx::query(
            "SELECT sequence, payload, metadata FROM events
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
        )
        .bind(AiModelConfig::TYPE)
        .bind(aggregate_id)
        .bind(from)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let events = rows
            .into_iter()
            .map(|row| {
                let payload: serde_json::Value = row.get("payload");
                let metadata: serde_json::Value = row.get("metadata");
                Ok(RecordedEvent {
                    sequence: row.get("sequence"),
                    event: serde_json::from_value(payload).map_err(|error| {
                        StoreError::Internal(format!("unreadable event: {error}"))
                    })?,
                    metadata: serde_json::from_value(metadata).unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let last = events.last().map(|event| event.sequence).unwrap_or(from);

        let unseen = |projection: &str| {
            let offset = offset(projection);
            events.iter().filter(move |event| event.sequence > offset)
        };
        project_config_view(&mut tx, aggregate_id, unseen(CONFIG_VIEW)).await?;
        project_audit_log(&mut tx, aggregate_id, unseen(AUDIT_LOG)).await?;
        project_credential_view(&mut tx, aggregate_id, unseen(CREDENTIAL_VIEW)).await?;

        sqlx::query("UPDATE projection_offsets SET last_sequence = $3 WHERE projection = ANY($1) AND aggregate_id = $2")
            .bind(&PROJECTIONS[..])
            .bind(aggregate_id)
            .bind(last)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((last - from) as usize)
    }

    /// Catches up every aggregate whose events some projection has not applied yet, e.g. after
    /// a process died between appending events and projecting them.
    #[tracing::instrument(skip(self))]
    pub async fn catch_up_all(&self) -> Result<usize, StoreError> {
        let lagging: Vec<String> = sqlx::query_scalar(
            "SELECT e.aggregate_id
               FROM (SELECT aggregate_id, max(sequence) AS last FROM events
                      WHERE aggregate_type = $1 GROUP BY aggregate_id) e
              WHERE EXISTS (SELECT 1 FROM unnest($2::text[]) AS p(name)
                             WHERE coalesce((SELECT o.last_sequence FROM projection_offsets o
                                              WHERE o.projection = p.name AND o.aggregate_id = e.aggregate_id), 0) < e.last)",
        )
        .bind(AiModelConfig::TYPE)
        .bind(&PROJECTIONS[..])
        .fetch_all(&self.pool)
        .await?;
        let (mut applied, mut failed) = (0, 0);
        for aggregate_id in &lagging {
            // One aggregate that cannot be projected must not hold back all the others.
            match self.catch_up(aggregate_id).await {
                Ok(count) => applied += count,
                Err(error) => {
                    failed += 1;
                    tracing::error!(aggregate_id, %error, "catch-up failed for this aggregate");
                }
            }
        }
        if failed > 0 {
            return Err(StoreError::Internal(format!(
                "{failed} aggregates could not be projected"
            )));
        }
        if applied > 0 {
            tracing::info!(
                aggregates = lagging.len(),
                events = applied,
                "read model caught up"
            );
        }
        Ok(applied)
    }

    /// Rebuilds the read model from the event log: empties every projection and replays all
    /// events, [`REBUILD_CHUNK_EVENTS`] at a time. Returns how many events were applied.
    ///
    /// Meant for maintenance windows, with no other instance writing: each chunk commits on its
    /// own, so until it finishes reads see a partial read model, and a command projected
    /// meanwhile may collide with the replay and make it fail (run it again then). The
    /// name registry is kept (it holds claims of requests in flight); replaying re-registers
    /// every name anyway. Audit positions come out in time order across each workspace's
    /// aggregates, and the offsets let `catch_up` continue where the replay stopped.
    #[tracing::instrument(skip(self))]
    pub async fn rebuild(&self) -> Result<usize, StoreError> {
        self.rebuild_in_chunks(REBUILD_CHUNK_EVENTS).await
    }

    /// [`Projector::rebuild`] writing about `chunk_events` events per transaction (whole
    /// workspaces, unless one alone is larger).
    #[tracing::instrument(skip(self))]
    pub async fn rebuild_in_chunks(&self, chunk_events: usize) -> Result<usize, StoreError> {
        sqlx::query(
            "TRUNCATE config_view, credential_view, audit_log, audit_positions, projection_offsets",
        )
        .execute(&self.pool)
        .await?;
        let replayed = rebuild::replay_log(&self.pool, chunk_events).await?;
        // Events appended after the replay's snapshot was taken, projected the usual way.
        let appended = self.catch_up_all().await?;
        tracing::info!(events = replayed + appended, "read model rebuilt");
        Ok(replayed + appended)
    }

    /// Names claimed by commands that never completed (the process died in between, or the
    /// outcome was unknown) would block the name for good; free those no credential holds.
    /// Only meaningful once the read model has caught up with the log.
    pub async fn release_abandoned_names(&self) -> Result<u64, StoreError> {
        let released = sqlx::query(
            "DELETE FROM credential_names n
              WHERE claimed_at < now() - interval '5 minutes'
                AND NOT EXISTS (SELECT 1 FROM credential_view c
                                 WHERE c.workspace_id = n.workspace_id AND c.name_key = n.name_key)",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(released)
    }

    /// Runs [`Projector::catch_up_all`] every `interval` until the task is dropped.
    pub async fn catch_up_periodically(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match self.catch_up_all().await {
                Ok(_) => {
                    if let Err(error) = self.release_abandoned_names().await {
                        tracing::warn!(%error, "releasing abandoned credential names failed");
                    }
                }
                Err(error) => tracing::warn!(%error, "periodic catch-up failed"),
            }
        }
    }
}

async fn project_config_view<'a>(
    tx: &mut Transaction<'_, Postgres>,
    aggregate_id: &str,
    events: impl Iterator<Item = &'a RecordedEvent>,
) -> Result<(), StoreError> {
    let events: Vec<&RecordedEvent> = events.collect();
    let Some(last) = events.last() else {
        return Ok(());
    };
    let current: Option<(Json<AiModelConfig>, DateTime<Utc>)> =
        sqlx::query_as("SELECT view, created_at FROM config_view WHERE aggregate_id = $1")
            .bind(aggregate_id)
            .fetch_optional(&mut **tx)
            .await?;
    let (mut config, created_at) = match current {
        Some((Json(view), created_at)) => (view, created_at),
        None => (AiModelConfig::default(), events[0].occurred_at()),
    };
    for event in &events {
        config.apply(event.event.clone());
    }
    let Some(id) = AggregateId::parse(aggregate_id) else {
        return Err(StoreError::Internal(format!(
            "malformed aggregate id {aggregate_id}"
        )));
    };
    let view = Json(&config);
    sqlx::query(
        "INSERT INTO config_view (aggregate_id, workspace_id, owner, last_sequence, view, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (aggregate_id) DO UPDATE
            SET last_sequence = excluded.last_sequence, view = excluded.view, updated_at = excluded.updated_at",
    )
    .bind(aggregate_id)
    .bind(id.workspace.as_str())
    .bind(id.owner.to_string())
    .bind(last.sequence)
    .bind(view)
    .bind(created_at)
    .bind(last.occurred_at())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn project_audit_log<'a>(
    tx: &mut Transaction<'_, Postgres>,
    aggregate_id: &str,
    events: impl Iterator<Item = &'a RecordedEvent>,
) -> Result<(), StoreError> {
    let Some(id) = AggregateId::parse(aggregate_id) else {
        return Err(StoreError::Internal(format!(
            "malformed aggregate id {aggregate_id}"
        )));
    };
    let owner = id.owner.to_string();
    let events: Vec<&RecordedEvent> = events.collect();
    if events.is_empty() {
        return Ok(());
    }
    let last_position: i64 = sqlx::query_scalar(
        "INSERT INTO audit_positions (workspace_id, last_position) VALUES ($1, $2)
         ON CONFLICT (workspace_id) DO UPDATE SET last_position = audit_positions.last_position + excluded.last_position
         RETURNING last_position",
    )
    .bind(id.workspace.as_str())
    .bind(events.len() as i64)
    .fetch_one(&mut **tx)
    .await?;
    let first_position = last_position - events.len() as i64 + 1;
    // One statement for all of a command's entries, the rebuild's: a round trip per event
    // added up.
    let mut rows = rebuild::AuditRows::default();
    for (position, event) in (first_position..).zip(events) {
        let at = event.occurred_at();
        rows.push(
            position,
            aggregate_id,
            id.workspace.as_str(),
            &owner,
            event,
            at,
        );
    }
    rows.insert(tx).await
}

async fn project_credential_view<'a>(
    tx: &mut Transaction<'_, Postgres>,
    aggregate_id: &str,
    events: impl Iterator<Item = &'a RecordedEvent>,
) -> Result<(), StoreError> {
    let Some(id) = AggregateId::parse(aggregate_id) else {
        return Err(StoreError::Internal(format!(
            "malformed aggregate id {aggregate_id}"
        )));
    };
    for recorded in events {
        let at = recorded.occurred_at();
        let query = match &recorded.event {
            AiModelConfigEvent::CredentialAdded { credential_id, name, provider, endpoint, access_key_hint, hint, number, .. } => {
                sqlx::query(
                    "INSERT INTO credential_view (credential_id, aggregate_id, workspace_id, owner, name, provider, endpoint,
                                                  hint, access_key_hint, created_by, created_at, updated_at, number, name_key)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13)
                     ON CONFLICT (credential_id) DO NOTHING",
                )
                .bind(credential_id.0)
                .bind(aggregate_id)
                .bind(id.workspace.as_str())
                .bind(id.owner.to_string())
                .bind(name)
                .bind(provider.as_str())
                .bind(endpoint)
                .bind(hint.as_str())
                .bind(access_key_hint.as_ref().map(|hint| hint.as_str()))
                .bind(recorded.metadata.get("actor"))
                .bind(at)
                .bind(number)
                .bind(name.to_lowercase())
                .execute(&mut **tx)
                .await?;
                // Names given by the service itself (families A, C, D) are registered here;
                // names given by callers were claimed before the command and are already in.
                register_name(tx, &id.workspace, name, *credential_id).await?;
                continue;
            }
            AiModelConfigEvent::CredentialRenamed { credential_id, name } => {
                sqlx::query("UPDATE credential_view SET name = $2, name_key = $4, updated_at = $3 WHERE credential_id = $1")
                    .bind(credential_id.0)
                    .bind(name.as_str())
            }
            AiModelConfigEvent::CredentialProviderChanged { credential_id, provider } => {
                sqlx::query("UPDATE credential_view SET provider = $2, updated_at = $3, validated_ok = NULL, validated_at = NULL, validation_note = NULL WHERE credential_id = $1").bind(credential_id.0).bind(provider.as_str())
            }
            AiModelConfigEvent::CredentialEndpointChanged { credential_id, endpoint } => {
                sqlx::query("UPDATE credential_view SET endpoint = $2, updated_at = $3, validated_ok = NULL, validated_at = NULL, validation_note = NULL WHERE credential_id = $1").bind(credential_id.0).bind(endpoint.clone())
            }
            AiModelConfigEvent::CredentialSecretReplaced { credential_id, hint, .. } => {
                sqlx::query("UPDATE credential_view SET hint = $2, updated_at = $3, validated_ok = NULL, validated_at = NULL, validation_note = NULL WHERE credential_id = $1").bind(credential_id.0).bind(hint.as_str())
            }
            AiModelConfigEvent::CredentialAccessKeyReplaced { credential_id, access_key_hint, .. } => {
                sqlx::query("UPDATE credential_view SET access_key_hint = $2, updated_at = $3, validated_ok = NULL, validated_at = NULL, validation_note = NULL WHERE credential_id = $1").bind(credential_id.0).bind(access_key_hint.as_str())
            }
            AiModelConfigEvent::CredentialRemoved { credential_id } => {
                sqlx::query("DELETE FROM credential_view WHERE credential_id = $1").bind(credential_id.0)
            }
            AiModelConfigEvent::CredentialValidated { credential_id, ok, .. } => sqlx::query(
                "UPDATE credential_view SET validated_ok = $2, validation_note = $4, validated_at = $3 WHERE credential_id = $1",
            )
            .bind(credential_id.0)
            .bind(*ok),
            _ => continue,
        };
        // Keep the name registry in step with the credentials, whatever path changed them.
        match &recorded.event {
            AiModelConfigEvent::CredentialRemoved { credential_id } => {
                sqlx::query("DELETE FROM credential_names WHERE credential_id = $1")
                    .bind(credential_id.0)
                    .execute(&mut **tx)
                    .await?;
            }
            AiModelConfigEvent::CredentialRenamed {
                credential_id,
                name,
            } => {
                sqlx::query(
                    "DELETE FROM credential_names WHERE credential_id = $1 AND name_key <> $2",
                )
                .bind(credential_id.0)
                .bind(name.to_lowercase())
                .execute(&mut **tx)
                .await?;
                register_name(tx, &id.workspace, name, *credential_id).await?;
            }
            _ => {}
        }
        let query = match &recorded.event {
            AiModelConfigEvent::CredentialRemoved { .. } => query,
            AiModelConfigEvent::CredentialValidated { reason, .. } => {
                query.bind(at).bind(reason.clone())
            }
            AiModelConfigEvent::CredentialRenamed { name, .. } => {
                query.bind(at).bind(name.to_lowercase())
            }
            _ => query.bind(at),
        };
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Records a credential's name in the registry unless someone holds it already (then the
/// holder's claim stands: it was made first).
async fn register_name(
    tx: &mut Transaction<'_, Postgres>,
    workspace: &WorkspaceId,
    name: &str,
    credential: CredentialId,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO credential_names (workspace_id, name_key, credential_id) VALUES ($1, $2, $3)
         ON CONFLICT (workspace_id, name_key) DO NOTHING",
    )
    .bind(workspace.as_str())
    .bind(name.to_lowercase())
    .bind(credential.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The event's fields as the audit trail shows them: ciphertexts dropped, hints kept.
pub(crate) fn audit_details(event: &AiModelConfigEvent) -> serde_json::Value {
    let serialized = serde_json::to_value(event).unwrap_or_default();
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
