//! Keeping the read model level with the log outside of commands: catch-up of streams whose
//! events some view has not applied (appended by an older build, which projected after
//! committing, or left behind when such a process died), the full rebuild, and the clean-up of
//! name claims no credential took.

use std::sync::Arc;
use std::time::Duration;

use aimc_domain::{AiModelConfig, CredentialAggregate};
use cqrs_es::Aggregate;
use sqlx::PgPool;

use crate::error::StoreError;
use crate::read_model::streams::{self, STREAM_TYPES};
use crate::read_model::VIEWS;

use crate::rebuild;

/// Events per write of a rebuild: large enough that the statements' round trips do not count,
/// small enough that a chunk's rows stay a few megabytes.
pub const REBUILD_CHUNK_EVENTS: usize = 10_000;

/// Brings the read model up to date with the event log, outside of commands.
pub struct Projector {
    pool: PgPool,
}

impl Projector {
    pub fn new(pool: PgPool) -> Self {
        Projector { pool }
    }

    /// Applies every event of a stream the read model has not seen; returns how many.
    #[tracing::instrument(skip(self))]
    pub async fn catch_up(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<usize, StoreError> {
        match aggregate_type {
            CredentialAggregate::TYPE => {
                streams::catch_up::<CredentialAggregate>(&self.pool, aggregate_id).await
            }
            _ => streams::catch_up::<AiModelConfig>(&self.pool, aggregate_id).await,
        }
    }

    /// Catches up every aggregate whose events some projection has not applied yet.
    #[tracing::instrument(skip(self))]
    pub async fn catch_up_all(&self) -> Result<usize, StoreError> {
        let lagging: Vec<(String, String)> = sqlx::query_as(
            "SELECT e.aggregate_type, e.aggregate_id
               FROM (SELECT aggregate_type, aggregate_id, max(sequence) AS last FROM events
                      WHERE aggregate_type = ANY($1) GROUP BY aggregate_type, aggregate_id) e
              WHERE EXISTS (SELECT 1 FROM unnest($2::text[]) AS p(name)
                             WHERE coalesce((SELECT o.last_sequence FROM projection_offsets o
                                              WHERE o.projection = p.name AND o.aggregate_id = e.aggregate_id), 0) < e.last)",
        )
        .bind(&STREAM_TYPES[..])
        .bind(&VIEWS[..])
        .fetch_all(&self.pool)
        .await?;
        let (mut applied, mut failed) = (0, 0);
        for (aggregate_type, aggregate_id) in &lagging {
            // One aggregate that cannot be projected must not hold back all the others.
            match self.catch_up(aggregate_type, aggregate_id).await {
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
    /// name registry is kept, with the claims older builds made before their commands ran;
    /// replaying registers every name anyway. Audit positions come out in time order across
    /// each workspace's streams, and the offsets let commands continue where the replay stopped.
    #[tracing::instrument(skip(self))]
    pub async fn rebuild(&self) -> Result<usize, StoreError> {
        self.rebuild_in_chunks(REBUILD_CHUNK_EVENTS).await
    }

    /// [`Projector::rebuild`] writing about `chunk_events` events per statement (whole
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

    /// Older builds claimed a name before running the command that used it; a claim whose
    /// command never completed (the process died in between) would block the name for good:
    /// free those no credential holds. Claims are now written with the command's events, so
    /// only those older claims are left to free. Only meaningful once the read model has
    /// caught up with the log.
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
