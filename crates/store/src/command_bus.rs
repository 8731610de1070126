use std::collections::HashMap;
use std::time::Duration;

use aimc_domain::{AggregateId, AiModelConfig, AiModelConfigCommand, ConfigServices};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use rand::Rng;
use sqlx::PgPool;

use crate::database::is_unavailable;
use crate::error::CommandError;
use crate::event_store::SnapshotEventStore;

/// How often a command is tried when other writers keep appending to the same aggregate.
pub const MAX_COMMAND_ATTEMPTS: usize = 30;

/// Who asked for a change, recorded with every event it causes.
#[derive(Debug, Clone)]
pub struct CommandMetadata {
    pub actor: String,
    pub request_id: String,
    pub trace_id: Option<String>,
}

impl CommandMetadata {
    fn recorded(&self) -> HashMap<String, String> {
        let mut recorded = HashMap::from([
            ("actor".to_owned(), self.actor.clone()),
            ("request_id".to_owned(), self.request_id.clone()),
        ]);
        if let Some(trace_id) = &self.trace_id {
            recorded.insert("trace_id".to_owned(), trace_id.clone());
        }
        recorded
    }
}

/// What a command did: its events as recorded, and the aggregate as they left it, so the
/// caller can answer without reading back.
#[derive(Debug)]
pub struct Executed<A: Aggregate> {
    pub events: Vec<EventEnvelope<A>>,
    pub aggregate: A,
}

/// Runs commands against the event-sourced aggregates.
///
/// cqrs-es' `CqrsFramework` runs the same load → handle → commit cycle but keeps the committed
/// events and the resulting aggregate to itself, and leaves a lost race (`AggregateConflict`)
/// to the caller: this runs it with the same `EventStore` and `Aggregate` traits, returns both,
/// and retries a lost race on a reloaded aggregate.
pub struct CommandBus {
    store: SnapshotEventStore<AiModelConfig>,
    services: ConfigServices,
}

impl CommandBus {
    pub fn new(pool: PgPool, services: ConfigServices, snapshot_every: usize) -> Self {
        CommandBus {
            store: SnapshotEventStore::new(pool, snapshot_every),
            services,
        }
    }

    /// Executes `command`, reloading the aggregate and trying again when another writer
    /// appended first (optimistic concurrency), at most [`MAX_COMMAND_ATTEMPTS`] times.
    #[tracing::instrument(skip(self, command, metadata), fields(aggregate_id = %id, actor = %metadata.actor))]
    pub async fn execute(
        &self,
        id: &AggregateId,
        command: AiModelConfigCommand,
        metadata: &CommandMetadata,
    ) -> Result<Executed<AiModelConfig>, CommandError> {
        let aggregate_id = id.to_string();
        let recorded = metadata.recorded();
        for attempt in 1..=MAX_COMMAND_ATTEMPTS {
            match self
                .attempt(&aggregate_id, command.clone(), &recorded)
                .await
            {
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
                outcome => return outcome.map_err(command_error),
            }
        }
        Err(CommandError::Conflict {
            attempts: MAX_COMMAND_ATTEMPTS,
        })
    }

    async fn attempt(
        &self,
        aggregate_id: &str,
        command: AiModelConfigCommand,
        metadata: &HashMap<String, String>,
    ) -> Result<Executed<AiModelConfig>, AggregateError<aimc_domain::DomainError>> {
        let mut context = self.store.load_aggregate(aggregate_id).await?;
        let sink = EventSink::default();
        cqrs_es::AggregateContext::aggregate(&mut context)
            .handle(command, &self.services, &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let (events, aggregate) = self
            .store
            .append(sink.collect().await, context, metadata.clone())
            .await?;
        Ok(Executed { events, aggregate })
    }
}

fn command_error(error: AggregateError<aimc_domain::DomainError>) -> CommandError {
    match error {
        AggregateError::UserError(error) => CommandError::Domain(error),
        AggregateError::AggregateConflict => CommandError::Conflict { attempts: 1 },
        AggregateError::DatabaseConnectionError(error) => {
            CommandError::StoreUnavailable(error.to_string())
        }
        AggregateError::DeserializationError(error) => CommandError::Internal(error.to_string()),
        AggregateError::UnexpectedError(error) => {
            let unavailable = error
                .downcast_ref::<sqlx::Error>()
                .is_some_and(is_unavailable);
            if unavailable {
                CommandError::StoreUnavailable(error.to_string())
            } else {
                CommandError::Internal(error.to_string())
            }
        }
    }
}
