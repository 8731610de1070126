//! Running commands: one `execute` per write, whichever aggregate it concerns.
//!
//! Writes to one aggregate take turns. Within a process they queue for it, first come first
//! served, so they never race each other; between replicas the event store's optimistic
//! concurrency still decides, and a race lost to another replica is retried on the reloaded
//! aggregate for as long as the request's deadline allows. Contention therefore costs time,
//! not a refusal: a write answers "changed concurrently" only when its deadline passed while
//! it kept losing, and "busy, retry later" (503) when the deadline passed while it waited for
//! its turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use aimc_domain::{
    deadline, AiModelConfig, ConfigCommand, ConfigId, ConfigServices, Credential,
    CredentialAggregate, CredentialCommand, CredentialId, DomainError, NewCredential, StreamId,
    WorkspaceId,
};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use rand::Rng;
use sqlx::PgPool;

use crate::bulk::{self, Rewraps};
use crate::credentials::{CredentialHome, CredentialRow, StandaloneKeys};
use crate::database::is_unavailable;
use crate::error::CommandError;
use crate::event_store::{Appended, LoadedAggregate, SnapshotEventStore};
use crate::group_commit::GroupCommit;
use crate::metrics::{COMMAND_CONFLICTS, COMMAND_QUEUE_WAIT, COMMAND_RETRIES, PARKED_STARTS};
use crate::read_model::streams::Projected;
use crate::read_model::EventMetadata;

/// How often a command is tried when other writers keep appending to the same aggregate and
/// no deadline is in force (CLI commands); a request retries until its deadline instead.
pub const MAX_COMMAND_ATTEMPTS: usize = 30;

/// The fewest entries [`WriteQueues`] holds before it sweeps out those of idle aggregates.
const SWEEP_QUEUES_AT_LEAST: usize = 64;

/// Who asked for a change, recorded with every event it causes.
#[derive(Debug, Clone)]
pub struct CommandMetadata {
    pub actor: String,
    pub request_id: String,
    pub trace_id: Option<String>,
    /// The request's `Idempotency-Key`: in the log, it proves the request applied.
    pub idempotency_key: Option<String>,
}

impl CommandMetadata {
    pub(crate) fn recorded(&self) -> HashMap<String, String> {
        let mut recorded = HashMap::from([
            ("actor".to_owned(), self.actor.clone()),
            ("request_id".to_owned(), self.request_id.clone()),
        ]);
        if let Some(trace_id) = &self.trace_id {
            recorded.insert("trace_id".to_owned(), trace_id.clone());
        }
        if let Some(key) = &self.idempotency_key {
            recorded.insert("idempotency_key".to_owned(), key.clone());
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
    /// What [`CommandBus::execute_looking_up`]'s lookup found, in the statement that wrote the
    /// events; none when the command wrote nothing.
    pub found: Option<Vec<CredentialRow>>,
}

impl<A: Aggregate> From<Appended<A>> for Executed<A> {
    fn from(appended: Appended<A>) -> Self {
        Executed {
            events: appended.events,
            aggregate: appended.aggregate,
            found: appended.found,
        }
    }
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
/// queues the commands on one aggregate, and retries a race lost to another process on a
/// reloaded aggregate.
pub struct CommandBus {
    configs: SnapshotEventStore<AiModelConfig>,
    credentials: SnapshotEventStore<CredentialAggregate>,
    services: ConfigServices,
    queues: WriteQueues,
    /// For the writes of many streams at once ([`CommandBus::rewrap_credentials`]).
    pool: PgPool,
    snapshot_every: usize,
}

impl CommandBus {
    pub fn new(pool: PgPool, services: ConfigServices, snapshot_every: usize) -> Self {
        // Configurations' and credentials' commands share their statements under load.
        let group = GroupCommit::new(pool.clone());
        CommandBus {
            configs: SnapshotEventStore::sharing(pool.clone(), snapshot_every, group.clone()),
            credentials: SnapshotEventStore::sharing(pool.clone(), snapshot_every, group),
            services,
            queues: WriteQueues::default(),
            pool,
            snapshot_every: snapshot_every.max(1),
        }
    }

    /// A command on a configuration.
    pub async fn execute(
        &self,
        id: &ConfigId,
        command: ConfigCommand,
        metadata: &CommandMetadata,
    ) -> Result<Executed<AiModelConfig>, CommandError> {
        self.execute_looking_up(id, command, metadata, None).await
    }

    /// A command on a configuration, whose answer may also show `lookup`'s keys: looked up in
    /// the statement that writes the command, which saves a statement of their own (see
    /// [`Executed::found`]; when the command wrote nothing, the caller looks them up itself).
    #[tracing::instrument(name = "execute", skip_all, fields(aggregate_id = %id, actor = %metadata.actor))]
    pub async fn execute_looking_up(
        &self,
        id: &ConfigId,
        command: ConfigCommand,
        metadata: &CommandMetadata,
        lookup: Option<&StandaloneKeys>,
    ) -> Result<Executed<AiModelConfig>, CommandError> {
        run(
            &self.configs,
            &self.services,
            &self.queues,
            &id.to_string(),
            command,
            metadata,
            lookup,
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
            &self.queues,
            &stream.to_string(),
            command,
            metadata,
            None,
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

    /// Forgets everything a stream holds, its workspace's keys having been destroyed
    /// (crypto-shredding). Whether it held anything to forget.
    #[tracing::instrument(skip_all, fields(stream = %stream, actor = %metadata.actor))]
    pub async fn shred(
        &self,
        stream: &StreamId,
        metadata: &CommandMetadata,
    ) -> Result<bool, CommandError> {
        let recorded_at = match stream {
            StreamId::Config(config) => self
                .execute(config, ConfigCommand::Shred, metadata)
                .await?
                .recorded_at(),
            StreamId::Credential { credential, .. } => run(
                &self.credentials,
                &self.services,
                &self.queues,
                &stream.to_string(),
                CredentialCommand::Shred {
                    credential_id: *credential,
                },
                metadata,
                None,
            )
            .await?
            .recorded_at(),
        };
        Ok(recorded_at.is_some())
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
                    &self.queues,
                    &stream.to_string(),
                    command,
                    metadata,
                    None,
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

impl CommandBus {
    /// Rewraps the keys of many credentials of `workspace` sealed under a key version older
    /// than `target`, as their `Rewrap` commands would, with one keyring call and one statement
    /// for all of them (see [`crate::bulk`]). What it does not settle is in [`Rewraps::left`],
    /// for each credential's own command ([`CommandBus::execute_on_credential`]): those whose
    /// stream another writer appended to meanwhile, and those whose stream a command of this
    /// process is writing right now (the batch takes only free turns and never waits).
    #[tracing::instrument(skip_all, fields(workspace = %workspace, credentials = credentials.len() as i64, actor = %metadata.actor))]
    pub async fn rewrap_credentials(
        &self,
        workspace: &WorkspaceId,
        credentials: Vec<CredentialHome>,
        target: u32,
        metadata: &CommandMetadata,
    ) -> Result<Rewraps, CommandError> {
        // Held until the batch is written, as a command holds its turn.
        let mut turns: HashMap<String, Option<tokio::sync::OwnedMutexGuard<()>>> = HashMap::new();
        let (mut free, mut busy) = (Vec::new(), Vec::new());
        for home in credentials {
            let stream = home.stream.to_string();
            let turn = turns
                .entry(stream)
                .or_insert_with_key(|stream| self.queues.of(stream).try_lock_owned().ok());
            match turn {
                Some(_) => free.push(home),
                None => busy.push(home),
            }
        }
        let rewrapped = bulk::rewrap(
            &self.pool,
            &self.services,
            self.snapshot_every,
            workspace,
            free,
            target,
            metadata.recorded(),
        )
        .await;
        // The batch appends around the command path: what this process parked of those
        // streams may be behind it, even when its outcome is unknown.
        for stream in turns.keys() {
            self.configs.forget_parked(stream);
            self.credentials.forget_parked(stream);
        }
        let mut rewraps = rewrapped?;
        drop(turns);
        rewraps.left.extend(busy);
        Ok(rewraps)
    }
}

/// The write queues of the aggregates this process is writing, one per aggregate.
///
/// Left to optimistic concurrency alone, the writers of one aggregate in one process race each
/// other: under contention most of them lose, reload and lose again until they give up. Taking
/// turns leaves at most one writer per process in the race, and tokio's mutex hands the turn
/// over in the order the writers arrived, so none is overtaken indefinitely. Queues are held
/// weakly, so an aggregate nobody is writing costs no more than its entry until the next
/// sweep.
#[derive(Default)]
struct WriteQueues {
    queues: Mutex<Queues>,
}

#[derive(Default)]
struct Queues {
    by_aggregate: HashMap<String, Weak<tokio::sync::Mutex<()>>>,
    /// Sweeping once the map has doubled since the last sweep keeps it proportional to the
    /// aggregates being written, at a constant cost per new entry.
    sweep_at: usize,
}

impl WriteQueues {
    /// The queue of `aggregate_id`, shared by every command on it that is running or waiting.
    fn of(&self, aggregate_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        // Nothing can panic while the map is held, so a poisoned lock still guards a whole map.
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = queues
            .by_aggregate
            .get(aggregate_id)
            .and_then(Weak::upgrade)
        {
            return queue;
        }
        if queues.by_aggregate.len() >= queues.sweep_at {
            queues
                .by_aggregate
                .retain(|_, queue| queue.strong_count() > 0);
            queues.sweep_at = (queues.by_aggregate.len() * 2).max(SWEEP_QUEUES_AT_LEAST);
        }
        // Once no command holds a queue it cannot be upgraded again, so replacing it here never
        // lets two commands on one aggregate run at once.
        let queue = Arc::new(tokio::sync::Mutex::new(()));
        queues
            .by_aggregate
            .insert(aggregate_id.to_owned(), Arc::downgrade(&queue));
        queue
    }
}

/// Executes `command` once the commands queued before it on the aggregate are done, reloading
/// the aggregate and trying again when another process appended first (optimistic
/// concurrency): until the request's deadline, or [`MAX_COMMAND_ATTEMPTS`] times without one.
async fn run<A>(
    store: &SnapshotEventStore<A>,
    services: &A::Services,
    queues: &WriteQueues,
    aggregate_id: &str,
    command: A::Command,
    metadata: &CommandMetadata,
    lookup: Option<&StandaloneKeys>,
) -> Result<Executed<A>, CommandError>
where
    A: Projected<Error = DomainError>,
    A::Command: Clone,
{
    let queued = tokio::time::Instant::now();
    let turn = deadline::bounded(
        "the aggregate's write queue",
        queues.of(aggregate_id).lock_owned(),
    )
    .await;
    COMMAND_QUEUE_WAIT
        .with_label_values(&[A::TYPE])
        .observe(queued.elapsed().as_secs_f64());
    // Held until the command is answered, lost races included: the next in the queue would
    // only lose to this one's retry.
    let _turn = turn.map_err(|passed| CommandError::Busy(passed.to_string()))?;

    let recorded = metadata.recorded();
    let deadline = deadline::current();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let started = tokio::time::Instant::now();
        match attempt_once(
            store,
            services,
            aggregate_id,
            command.clone(),
            &recorded,
            lookup,
        )
        .await
        {
            Err(AggregateError::AggregateConflict) => {
                COMMAND_CONFLICTS.with_label_values(&[A::TYPE]).inc();
                // Jittered, growing back-off so the replicas' writers spread out instead of
                // colliding again in lockstep.
                let ceiling = 2u64.saturating_pow(attempt.min(6) as u32);
                let wait = Duration::from_millis(rand::thread_rng().gen_range(1..=ceiling));
                // A retry that the deadline would cut short ends as "unavailable", which
                // misnames a write that was only ever outrun: give up as a conflict instead.
                let worth_retrying = match deadline {
                    Some(deadline) => {
                        tokio::time::Instant::now() + wait + started.elapsed() < deadline
                    }
                    None => attempt < MAX_COMMAND_ATTEMPTS,
                };
                if !worth_retrying {
                    return Err(CommandError::Conflict { attempts: attempt });
                }
                COMMAND_RETRIES.with_label_values(&[A::TYPE]).inc();
                tracing::debug!(
                    attempt = attempt as i64,
                    "concurrent write; retrying with the reloaded aggregate"
                );
                tokio::time::sleep(wait).await;
            }
            outcome => return outcome.map_err(command_error),
        }
    }
}

async fn attempt_once<A: Projected>(
    store: &SnapshotEventStore<A>,
    services: &A::Services,
    aggregate_id: &str,
    command: A::Command,
    metadata: &HashMap<String, String>,
    lookup: Option<&StandaloneKeys>,
) -> Result<Executed<A>, AggregateError<A::Error>>
where
    A::Command: Clone,
{
    let mut parked_before = None;
    if let Some(parked) = store.take_parked(aggregate_id) {
        parked_before = Some(parked.as_known());
        if parked.trusted() {
            let mut context = parked.into_loaded(aggregate_id);
            let sequence = context.current_sequence();
            let sink = EventSink::default();
            let decided = context
                .aggregate()
                .handle(command.clone(), services, &sink)
                .await;
            let events = sink.collect().await;
            // Only the append's check on the sequence proves the parked aggregate current. A
            // refusal or a "nothing to change" decided on it proves nothing, so those are
            // decided again on the stream as stored.
            if decided.is_ok() && !events.is_empty() {
                match store
                    .append(events, context, metadata.clone(), lookup)
                    .await
                {
                    Ok(appended) => {
                        PARKED_STARTS.with_label_values(&[A::TYPE, "current"]).inc();
                        return Ok(appended.into());
                    }
                    Err(AggregateError::AggregateConflict) => {
                        let stored = store.load_aggregate(aggregate_id).await?;
                        if stored.current_sequence() == sequence {
                            // Not stale: the race was lost on a name the statement claims,
                            // to be retried as any other.
                            store.park_unchanged(stored);
                            return Err(AggregateError::AggregateConflict);
                        }
                        // Another process wrote since, and its write is committed: no race
                        // to back off from. Go on from the stream as stored, and distrust
                        // what this process parks of it until the stream matches it again.
                        PARKED_STARTS.with_label_values(&[A::TYPE, "stale"]).inc();
                        return decide_and_append(
                            store,
                            services,
                            stored,
                            Some((sequence, 0)),
                            command,
                            metadata,
                            lookup,
                        )
                        .await;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
    }
    let stored = store.load_aggregate(aggregate_id).await?;
    decide_and_append(
        store,
        services,
        stored,
        parked_before,
        command,
        metadata,
        lookup,
    )
    .await
}

/// The command decided on the stream as stored, and its events appended. `parked_before` is
/// what this process had parked of the stream (its sequence and confirmations), which the
/// aggregate parked after it is trusted by.
async fn decide_and_append<A: Projected>(
    store: &SnapshotEventStore<A>,
    services: &A::Services,
    mut context: LoadedAggregate<A>,
    parked_before: Option<(usize, u8)>,
    command: A::Command,
    metadata: &HashMap<String, String>,
    lookup: Option<&StandaloneKeys>,
) -> Result<Executed<A>, AggregateError<A::Error>> {
    context.confirm(parked_before);
    let sink = EventSink::default();
    if let Err(error) = context.aggregate().handle(command, services, &sink).await {
        store.park_unchanged(context);
        return Err(AggregateError::UserError(error));
    }
    Ok(store
        .append(sink.collect().await, context, metadata.clone(), lookup)
        .await?
        .into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_on_one_aggregate_share_a_queue_and_other_aggregates_have_their_own() {
        let queues = WriteQueues::default();
        let running = queues.of("ws/user:alice").try_lock_owned().unwrap();

        assert!(queues.of("ws/user:alice").try_lock_owned().is_err());
        assert!(queues.of("ws/user:bob").try_lock_owned().is_ok());
        drop(running);
        assert!(queues.of("ws/user:alice").try_lock_owned().is_ok());
    }

    #[test]
    fn queues_of_aggregates_no_longer_written_are_swept_out() {
        let queues = WriteQueues::default();
        let held = queues.of("ws/user:kept");
        for n in 0..10 * SWEEP_QUEUES_AT_LEAST {
            queues.of(&format!("ws/user:{n}"));
        }

        let remaining = queues.queues.lock().unwrap();
        assert!(
            remaining.by_aggregate.len() <= SWEEP_QUEUES_AT_LEAST,
            "{}",
            remaining.by_aggregate.len()
        );
        let kept = remaining.by_aggregate["ws/user:kept"].upgrade().unwrap();
        assert!(Arc::ptr_eq(&kept, &held));
    }
}
