use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aimc_domain::{AggregateId, AiModelConfig, AiModelConfigCommand, ConfigServices};
use cqrs_es::{AggregateError, CqrsFramework};
use rand::Rng;
use sqlx::PgPool;

use crate::error::CommandError;
use crate::event_store::SnapshotEventStore;
use crate::projection::Projector;

/// How often a command is tried when other writers keep appending to the same aggregate.
pub const MAX_COMMAND_ATTEMPTS: usize = 30;

/// Who asked for a change, recorded with every event it causes.
#[derive(Debug, Clone)]
pub struct CommandMetadata {
    pub actor: String,
    pub request_id: String,
    pub trace_id: Option<String>,
}

/// Projection attempts after a commit before the request gives up on read-your-writes.
const PROJECTION_ATTEMPTS: usize = 3;

/// Runs commands against the event-sourced aggregate and projects their events.
pub struct CommandBus {
    cqrs: CqrsFramework<AiModelConfig, SnapshotEventStore<AiModelConfig>>,
    projector: Arc<Projector>,
}

impl CommandBus {
    /// Projection is not a cqrs-es query: those run after the commit with nowhere to report a
    /// failure, and a 2xx must mean the change is readable.
    pub fn new(
        pool: PgPool,
        services: ConfigServices,
        snapshot_every: usize,
        projector: Arc<Projector>,
    ) -> Self {
        let store = SnapshotEventStore::new(pool, snapshot_every);
        CommandBus {
            cqrs: CqrsFramework::new(store, vec![], services),
            projector,
        }
    }

    /// Projects the aggregate so the response can promise read-your-writes.
    async fn project(&self, aggregate_id: &str) -> Result<(), CommandError> {
        let mut last_error = None;
        for attempt in 1..=PROJECTION_ATTEMPTS {
            match self.projector.catch_up(aggregate_id).await {
                Ok(_) => return Ok(()),
                Err(error) => {
                    tracing::warn!(attempt, %error, "projection after commit failed");
                    last_error = Some(error);
                    tokio::time::sleep(Duration::from_millis(20 * attempt as u64)).await;
                }
            }
        }
        tracing::error!(
            aggregate_id,
            "change recorded but not projected; catch-up will repair it"
        );
        Err(CommandError::NotYetVisible(
            last_error.map(|e| e.to_string()).unwrap_or_default(),
        ))
    }

    /// Executes `command`, reloading the aggregate and trying again when another writer
    /// appended first (optimistic concurrency), at most [`MAX_COMMAND_ATTEMPTS`] times.
    #[tracing::instrument(skip(self, command, metadata), fields(aggregate_id = %id, actor = %metadata.actor))]
    pub async fn execute(
        &self,
        id: &AggregateId,
        command: AiModelConfigCommand,
        metadata: &CommandMetadata,
    ) -> Result<(), CommandError> {
        let aggregate_id = id.to_string();
        for attempt in 1..=MAX_COMMAND_ATTEMPTS {
            let mut recorded = HashMap::from([
                ("actor".to_owned(), metadata.actor.clone()),
                ("request_id".to_owned(), metadata.request_id.clone()),
            ]);
            if let Some(trace_id) = &metadata.trace_id {
                recorded.insert("trace_id".to_owned(), trace_id.clone());
            }
            match self
                .cqrs
                .execute_with_metadata(&aggregate_id, command.clone(), recorded)
                .await
            {
                Ok(()) => return self.project(&aggregate_id).await,
                Err(AggregateError::AggregateConflict) => {
                    tracing::debug!(
                        attempt,
                        "concurrent write; retrying with the reloaded aggregate"
                    );
                    // Jittered, growing back-off so racing writers spread out instead of
                    // colliding again in lockstep.
                    let ceiling = 2u64.saturating_pow(attempt.min(6) as u32);
                    let wait = rand::thread_rng().gen_range(1..=ceiling);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                Err(AggregateError::UserError(error)) => return Err(CommandError::Domain(error)),
                Err(AggregateError::DatabaseConnectionError(error)) => {
                    return Err(CommandError::StoreUnavailable(error.to_string()))
                }
                Err(AggregateError::DeserializationError(error)) => {
                    return Err(CommandError::Internal(error.to_string()))
                }
                Err(AggregateError::UnexpectedError(error))
                    if is_connection_failure(error.as_ref()) =>
                {
                    return Err(CommandError::StoreUnavailable(error.to_string()))
                }
                Err(AggregateError::UnexpectedError(error)) => {
                    return Err(CommandError::Internal(error.to_string()))
                }
            }
        }
        Err(CommandError::Conflict {
            attempts: MAX_COMMAND_ATTEMPTS,
        })
    }
}

/// postgres-es reports a pool timeout or a dropped connection as an unexpected error; those
/// mean "try again later", not "bug".
fn is_connection_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(sqlx_error) = current.downcast_ref::<sqlx::Error>() {
            return matches!(
                sqlx_error,
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
            ) || matches!(sqlx_error, sqlx::Error::Database(db) if db.code().is_some_and(|code| code.starts_with("57P") || code.starts_with("08")));
        }
        cause = current.source();
    }
    false
}
