//! Rotating a workspace's encryption key while the service keeps serving: a new key version,
//! every stored key rewrapped under it inside Vault (no plain key leaves Vault), then the older
//! versions retired so that nothing sealed under them decrypts any more.
//!
//! The rewrap of each credential is decided by its aggregate and appended to its stream with
//! optimistic concurrency: a change racing the rotation either comes first and is rewrapped
//! too, or comes after and is sealed under the new version anyway. Credentials go in batches
//! (their aggregates loaded in one query, their keys rewrapped in one keyring call, their
//! events written in one statement); a batch that a write raced leaves its credentials to their
//! own `Rewrap` commands, which decide again on what the write left. Keys already under the
//! target version are left alone,
//! so a rotation stopped halfway and run again finishes without doing any work twice: it sees
//! keys under an older version than the latest, takes the latest as its target instead of
//! rotating again, and goes on.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use aimc_domain::{Ciphertext, CredentialCommand, DomainError, WorkspaceId};
use aimc_keyring::{Keyring, KeyringError};
use aimc_store::{
    CommandBus, CommandError, CommandMetadata, CredentialHome, CredentialQueries, CredentialRow,
    StoreError,
};
use futures::stream::FuturesUnordered;
use futures::StreamExt;

/// How a rotation tells its progress.
pub trait Progress: Send + Sync {
    /// `total` credentials to go through, from key version `from` to `to`.
    fn begin(&self, workspace: &WorkspaceId, total: usize, from: u32, to: u32);
    /// One more credential done.
    fn advance(&self);
}

/// Progress nobody watches.
pub struct Unobserved;

impl Progress for Unobserved {
    fn begin(&self, _: &WorkspaceId, _: usize, _: u32, _: u32) {}
    fn advance(&self) {}
}

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub workspace: WorkspaceId,
    /// The oldest key version stored keys were under.
    pub from_version: u32,
    pub to_version: u32,
    /// False when an earlier run had rotated the key already and this one finished its work.
    pub rotated_now: bool,
    pub credentials: usize,
    /// Credentials whose keys were rewrapped by this run.
    pub rewrapped: usize,
    /// The time spent rewrapping, without the wait for writes to settle.
    pub rewrapping: Duration,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rewrapping a credential failed: {0}")]
    Command(#[from] CommandError),
}

impl RotationError {
    /// What the operation's record tells its owner: the kind of failure, not the backends'
    /// own messages (addresses, statements), which go to the log with the operation id.
    pub fn reason(&self) -> &'static str {
        let unavailable = match self {
            RotationError::Keyring(error) => matches!(error, KeyringError::Unavailable(_)),
            RotationError::Store(error) => matches!(error, StoreError::Unavailable(_)),
            RotationError::Command(error) => matches!(
                error,
                CommandError::StoreUnavailable(_)
                    | CommandError::Busy(_)
                    | CommandError::Domain(DomainError::Unavailable(..))
            ),
        };
        if unavailable {
            "Vault or the database was unavailable; start the rotation again to finish it"
        } else {
            "a credential could not be rewrapped; the cause is in the service's log under this \
             operation id"
        }
    }
}

/// Rotates workspaces' keys with the service's own parts.
pub struct Rotation<'a> {
    pub commands: &'a CommandBus,
    pub credentials: &'a CredentialQueries,
    pub keyring: &'a dyn Keyring,
    /// The longest a write may take to commit after sealing its keys (the request deadline):
    /// one that sealed under the old version just before the rotation is rewrapped once it
    /// has had that long to land, before the old version is retired.
    pub settle: Duration,
    /// Credentials rewrapped at once by their own commands (those a batch leaves); batches go
    /// one per 8 of it at a time, 1 to 4.
    pub concurrency: usize,
}

/// Credentials one batch rewraps: one load per aggregate type, one keyring call, one
/// statement. A configuration's credentials share their stream, so they share a batch.
const BATCH: usize = 250;

/// Batches in flight: one loads or writes while another waits for the keyring.
fn batches_at_once(concurrency: usize) -> usize {
    (concurrency / 8).clamp(1, 4)
}

/// `rows` in batches of about [`BATCH`] credentials, a stream's credentials never split.
fn batches(rows: &[CredentialRow]) -> Vec<Vec<CredentialHome>> {
    let mut streams: Vec<Vec<CredentialHome>> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    for row in rows {
        let position = *index.entry(row.home.stream.to_string()).or_insert_with(|| {
            streams.push(Vec::new());
            streams.len() - 1
        });
        streams[position].push(row.home.clone());
    }
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    for stream in streams {
        batch.extend(stream);
        if batch.len() >= BATCH {
            batches.push(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

fn version(row: &CredentialRow) -> Option<u32> {
    row.secret.as_ref().and_then(Ciphertext::key_version)
}

impl Rotation<'_> {
    pub async fn run(
        &self,
        workspace: &WorkspaceId,
        metadata: &CommandMetadata,
        progress: &dyn Progress,
    ) -> Result<Rotated, RotationError> {
        let started = Instant::now();
        let started_at = chrono::Utc::now();
        let versions = self.keyring.key_versions(workspace).await?;
        let rows = self.credentials.of_workspace(workspace).await?;
        let oldest = rows.iter().filter_map(version).min();
        let (target, rotated_now) = match oldest {
            Some(oldest) if oldest < versions.latest => (versions.latest, false),
            _ => (self.keyring.rotate(workspace).await?.latest, true),
        };
        let rotated = Instant::now();
        progress.begin(
            workspace,
            rows.len(),
            oldest.unwrap_or(versions.latest),
            target,
        );
        let mut rewrapped = self
            .rewrap(workspace, &rows, target, metadata, progress)
            .await?;
        let mut rewrapping = rotated.elapsed();

        // A write that sealed its key under the old version just before the rotation may land
        // after the pass above read the credentials: look again once it has had time to.
        tokio::time::sleep((rotated + self.settle).saturating_duration_since(Instant::now())).await;
        let seen: HashSet<_> = rows.iter().map(CredentialRow::id).collect();
        let again: Vec<CredentialRow> = self
            .credentials
            .of_workspace(workspace)
            .await?
            .into_iter()
            .filter(|row| {
                !seen.contains(&row.id())
                    || row.updated_at >= started_at
                    || version(row).is_some_and(|v| v < target)
            })
            .collect();
        let sweep = Instant::now();
        rewrapped += self
            .rewrap(workspace, &again, target, metadata, &Unobserved)
            .await?;
        rewrapping += sweep.elapsed();

        self.keyring
            .retire_versions_below(workspace, target)
            .await?;
        Ok(Rotated {
            workspace: workspace.clone(),
            from_version: oldest.unwrap_or(versions.latest),
            to_version: target,
            rotated_now,
            credentials: rows.len(),
            rewrapped,
            rewrapping,
            elapsed: started.elapsed(),
        })
    }

    /// Rewraps `rows` to `target` in batches; returns how many needed it.
    async fn rewrap(
        &self,
        workspace: &WorkspaceId,
        rows: &[CredentialRow],
        target: u32,
        metadata: &CommandMetadata,
        progress: &dyn Progress,
    ) -> Result<usize, RotationError> {
        // Boxed as `dyn Future + Send`: the spawned API operation must be `Send`, which the
        // compiler cannot show through a stream combinator's closure over these borrows.
        type Batch<'r> = Pin<Box<dyn Future<Output = Result<usize, RotationError>> + Send + 'r>>;
        let mut pending: FuturesUnordered<Batch<'_>> = FuturesUnordered::new();
        let mut batches = batches(rows).into_iter();
        let mut rewrapped = 0;
        loop {
            while pending.len() < batches_at_once(self.concurrency) {
                let Some(batch) = batches.next() else { break };
                pending.push(Box::pin(
                    self.rewrap_batch(workspace, batch, target, metadata, progress),
                ));
            }
            let Some(outcome) = pending.next().await else {
                break;
            };
            rewrapped += outcome?;
        }
        Ok(rewrapped)
    }

    /// One batch, then the credentials it left to their own commands; how many needed it.
    async fn rewrap_batch(
        &self,
        workspace: &WorkspaceId,
        batch: Vec<CredentialHome>,
        target: u32,
        metadata: &CommandMetadata,
        progress: &dyn Progress,
    ) -> Result<usize, RotationError> {
        let count = batch.len();
        let rewraps = self
            .commands
            .rewrap_credentials(workspace, batch, target, metadata)
            .await?;
        for _ in rewraps.left.len()..count {
            progress.advance();
        }
        let one_by_one = self
            .rewrap_each(&rewraps.left, target, metadata, progress)
            .await?;
        Ok(rewraps.rewrapped.len() + one_by_one)
    }

    /// Rewraps `homes` to `target` with a command each, `concurrency` at a time; returns how
    /// many needed it.
    async fn rewrap_each(
        &self,
        homes: &[CredentialHome],
        target: u32,
        metadata: &CommandMetadata,
        progress: &dyn Progress,
    ) -> Result<usize, RotationError> {
        type Rewrapping<'r> = Pin<Box<dyn Future<Output = Result<bool, CommandError>> + Send + 'r>>;
        let mut pending: FuturesUnordered<Rewrapping<'_>> = FuturesUnordered::new();
        let mut homes = homes.iter();
        let mut rewrapped = 0;
        loop {
            while pending.len() < self.concurrency.max(1) {
                let Some(home) = homes.next() else { break };
                pending.push(Box::pin(self.rewrap_one(home, target, metadata)));
            }
            let Some(outcome) = pending.next().await else {
                break;
            };
            match outcome {
                Ok(changed) => rewrapped += usize::from(changed),
                // Removed since it was listed: nothing left to rewrap.
                Err(CommandError::Domain(DomainError::CredentialNotFound(_))) => {}
                Err(error) => return Err(error.into()),
            }
            progress.advance();
        }
        Ok(rewrapped)
    }

    /// Whether the credential's keys needed rewrapping.
    async fn rewrap_one(
        &self,
        home: &CredentialHome,
        target: u32,
        metadata: &CommandMetadata,
    ) -> Result<bool, CommandError> {
        let command = CredentialCommand::Rewrap {
            credential_id: home.credential_id,
            key_version: target,
        };
        let executed = self
            .commands
            .execute_on_credential(home, command, metadata)
            .await?;
        Ok(executed.recorded_at.is_some())
    }
}

/// Counts a rotation's progress for the operation's record.
#[derive(Default)]
struct Counted {
    total: std::sync::atomic::AtomicUsize,
    done: std::sync::atomic::AtomicUsize,
    versions: std::sync::Mutex<Option<(u32, u32)>>,
}

impl Progress for Counted {
    fn begin(&self, _: &WorkspaceId, total: usize, from: u32, to: u32) {
        self.total
            .store(total, std::sync::atomic::Ordering::Relaxed);
        *self.versions.lock().unwrap_or_else(|p| p.into_inner()) = Some((from, to));
    }

    fn advance(&self) {
        self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How often a running rotation records its progress (and shows it is alive).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Runs the rotation `operation` of `workspace` in the background, recording its progress
/// and its end in the operation's record. Its commands carry the caller's `metadata`, so the
/// history shows who rotated.
pub(crate) fn spawn(
    state: std::sync::Arc<crate::state::AppState>,
    workspace: WorkspaceId,
    operation: uuid::Uuid,
    metadata: CommandMetadata,
) {
    tokio::spawn(async move {
        let counted = Counted::default();
        let rotation = Rotation {
            commands: &state.commands,
            credentials: &state.credentials,
            keyring: state.keyring.as_ref(),
            settle: state.limits.deadline,
            concurrency: 8,
        };
        let run = rotation.run(&workspace, &metadata, &counted);
        tokio::pin!(run);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        let outcome = loop {
            tokio::select! {
                outcome = &mut run => break outcome,
                _ = heartbeat.tick() => {
                    let total = counted.total.load(std::sync::atomic::Ordering::Relaxed);
                    let done = counted.done.load(std::sync::atomic::Ordering::Relaxed);
                    let versions = *counted.versions.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(error) = state.rotations.progress(operation, total, done, versions).await {
                        tracing::warn!(%error, "a key rotation's progress was not recorded");
                    }
                }
            }
        };
        let recorded = match outcome {
            Ok(rotated) => {
                tracing::info!(
                    workspace = %rotated.workspace,
                    credentials = rotated.credentials as i64,
                    rewrapped = rotated.rewrapped as i64,
                    "key rotation finished"
                );
                Ok((
                    rotated.credentials,
                    rotated.rewrapped,
                    rotated.from_version,
                    rotated.to_version,
                ))
            }
            Err(error) => {
                tracing::error!(%error, %operation, "key rotation failed");
                Err(error.reason().to_owned())
            }
        };
        if let Err(error) = state.rotations.finish(operation, recorded).await {
            tracing::error!(%error, "the end of a key rotation was not recorded");
        }
    });
}
