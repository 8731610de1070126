//! Running commands: one `execute` per write, whichever aggregate it concerns.

use std::collections::HashMap;
use std::time::Duration;

use aimc_domain::{
    AiModelConfig, ConfigCommand, ConfigId, ConfigServices, Credential, CredentialAggregate,
    CredentialCommand, CredentialId, DomainError, NewCredential, StreamId,
};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use rand::Rng;
use sqlx::PgPool;

use crate::credentials::CredentialHome;
use crate::database::is_unavailable;
use crate::error::CommandError;
use crate::event_store::SnapshotEventStore;
use crate::metrics::{COMMAND_CONFLICTS, COMMAND_RETRIES};
use crate::read_model::streams::Projected;
use crate::read_model::EventMetadata;

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

impl<A: Aggregate> Executed<A> {
    /// When the command's events were recorded; none when it changed nothing.
    pub fn recorded_at(&self) -> Option<DateTime<Utc>> {
        self.events
            .first()
            .map(|envelope| EventMetadata::from_map(&envelope.metadata).occurred_at)
    }
}

/// A credential as a command left it, wherever it lives.
#[derive(Debug)]
pub struct CredentialExecuted {
    /// None once removed.
    pub credential: Option<Credential>,
    pub recorded_at: Option<DateTime<Utc>>,
}

/// Runs commands against the event-sourced aggregates.
///
/// cqrs-es' `CqrsFramework` runs the same load → handle → commit cycle but keeps the committed
/// events and the resulting aggregate to itself, and leaves a lost race (`AggregateConflict`)
/// to the caller: this runs it with the same `EventStore` and `Aggregate` traits, returns both,
/// and retries a lost race on a reloaded aggregate.
pub struct CommandBus {
    configs: SnapshotEventStore<AiModelConfig>,
    credentials: SnapshotEventStore<CredentialAggregate>,
    services: ConfigServices,
}

impl CommandBus {
    pub fn new(pool: PgPool, services: ConfigServices, snapshot_every: usize) -> Self {
        CommandBus {
            configs: SnapshotEventStore::new(pool.clone(), snapshot_every),
            credentials: SnapshotEventStore::new(pool, snapshot_every),
            services,
        }
    }

    /// A command on a configuration.
    #[tracing::instrument(skip_all, fields(aggregate_id = %id, actor = %metadata.actor))]
    pub async fn execute(
        &self,
        id: &ConfigId,
        command: ConfigCommand,
        metadata: &CommandMetadata,
    ) -> Result<Executed<AiModelConfig>, CommandError> {
        run(
            &self.configs,
            &self.services,
            &id.to_string(),
            command,
            metadata,
        )
        .await
    }

    /// Stores a credential in a stream of its own, under a fresh id.
    #[tracing::instrument(skip_all, fields(owner = %owner, actor = %metadata.actor))]
    pub async fn add_credential(
        &self,
        owner: &ConfigId,
        credential: NewCredential,
        metadata: &CommandMetadata,
    ) -> Result<(CredentialId, CredentialExecuted), CommandError> {
        let credential_id = CredentialId(self.services.ids.next_id());
        let stream = StreamId::Credential {
            workspace: owner.workspace.clone(),
            credential: credential_id,
        };
        let command = CredentialCommand::Add {
            owner: owner.clone(),
            credential_id,
            credential,
        };
        let executed = run(
            &self.credentials,
            &self.services,
            &stream.to_string(),
            command,
            metadata,
        )
        .await?;
        Ok((
            credential_id,
            CredentialExecuted {
                recorded_at: executed.recorded_at(),
                credential: executed.aggregate.credential,
            },
        ))
    }

    /// A command on a credential, in the stream it lives in.
    #[tracing::instrument(skip_all, fields(credential = %home.credential_id, actor = %metadata.actor))]
    pub async fn execute_on_credential(
        &self,
        home: &CredentialHome,
        command: CredentialCommand,
        metadata: &CommandMetadata,
    ) -> Result<CredentialExecuted, CommandError> {
        let credential_id = command.credential_id();
        match &home.stream {
            StreamId::Config(config) => {
                let executed = self
                    .execute(config, ConfigCommand::Credential(command), metadata)
                    .await?;
                Ok(CredentialExecuted {
                    recorded_at: executed.recorded_at(),
                    credential: executed.aggregate.credentials.get(&credential_id).cloned(),
                })
            }
            stream => {
                let executed = run(
                    &self.credentials,
                    &self.services,
                    &stream.to_string(),
                    command,
                    metadata,
                )
                .await?;
                Ok(CredentialExecuted {
                    recorded_at: executed.recorded_at(),
                    credential: executed.aggregate.credential,
                })
            }
        }
    }
}

/// Executes `command`, reloading the aggregate and trying again when another writer
/// appended first (optimistic concurrency), at most [`MAX_COMMAND_ATTEMPTS`] times.
async fn run<A>(
    store: &SnapshotEventStore<A>,
    services: &A::Services,
    aggregate_id: &str,
    command: A::Command,
    metadata: &CommandMetadata,
) -> Result<Executed<A>, CommandError>
where
    A: Projected<Error = DomainError>,
    A::Command: Clone,
{
    let recorded = metadata.recorded();
    for attempt in 1..=MAX_COMMAND_ATTEMPTS {
        match attempt_once(store, services, aggregate_id, command.clone(), &recorded).await {
            Err(AggregateError::AggregateConflict) => {
                COMMAND_CONFLICTS.with_label_values(&[A::TYPE]).inc();
                if attempt == MAX_COMMAND_ATTEMPTS {
                    break;
                }
                COMMAND_RETRIES.with_label_values(&[A::TYPE]).inc();
                tracing::debug!(
                    attempt = attempt as i64,
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

async fn attempt_once<A: Projected>(
    store: &SnapshotEventStore<A>,
    services: &A::Services,
    aggregate_id: &str,
    command: A::Command,
    metadata: &HashMap<String, String>,
) -> Result<Executed<A>, AggregateError<A::Error>> {
    let mut context = store.load_aggregate(aggregate_id).await?;
    let sink = EventSink::default();
    context
        .aggregate()
        .handle(command, services, &sink)
        .await
        .map_err(AggregateError::UserError)?;
    let (events, aggregate) = store
        .append(sink.collect().await, context, metadata.clone())
        .await?;
    Ok(Executed { events, aggregate })
}

fn command_error(error: AggregateError<DomainError>) -> CommandError {
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
