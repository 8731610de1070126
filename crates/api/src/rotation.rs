//! Rotating a workspace's encryption key while the service keeps serving: a new key version,
//! every stored key rewrapped under it inside Vault (no plain key leaves Vault), then the older
//! versions retired so that nothing sealed under them decrypts any more.
//!
//! The rewrap of each credential is a command its aggregate decides, under its turn to write:
//! a change racing the rotation either comes first and is rewrapped too, or comes after and is
//! sealed under the new version anyway. Keys already under the target version are left alone,
//! so a rotation stopped halfway and run again finishes without doing any work twice: it sees
//! keys under an older version than the latest, takes the latest as its target instead of
//! rotating again, and goes on.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aimc_domain::{Ciphertext, CredentialCommand, DomainError, WorkspaceId};
use aimc_keyring::{Keyring, KeyringError};
use aimc_store::{
    CommandBus, CommandError, CommandMetadata, CredentialQueries, CredentialRow, StoreError,
};
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

/// Rotates workspaces' keys with the service's own parts.
pub struct Rotation<'a> {
    pub commands: &'a CommandBus,
    pub credentials: &'a CredentialQueries,
    pub keyring: &'a dyn Keyring,
    /// The longest a write may take to commit after sealing its keys (the request deadline):
    /// one that sealed under the old version just before the rotation is rewrapped once it
    /// has had that long to land, before the old version is retired.
    pub settle: Duration,
    /// Credentials rewrapped at once.
    pub concurrency: usize,
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
        let mut rewrapped = self.rewrap(&rows, target, metadata, progress).await?;
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
        rewrapped += self.rewrap(&again, target, metadata, &Unobserved).await?;
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

    /// Rewraps `rows` to `target`; returns how many needed it.
    async fn rewrap(
        &self,
        rows: &[CredentialRow],
        target: u32,
        metadata: &CommandMetadata,
        progress: &dyn Progress,
    ) -> Result<usize, RotationError> {
        let mut outcomes = futures::stream::iter(rows)
            .map(|row| async move {
                let command = CredentialCommand::Rewrap {
                    credential_id: row.id(),
                    key_version: target,
                };
                self.commands
                    .execute_on_credential(&row.home, command, metadata)
                    .await
            })
            .buffer_unordered(self.concurrency.max(1));
        let mut rewrapped = 0;
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Ok(executed) => rewrapped += usize::from(executed.recorded_at.is_some()),
                // Removed since it was listed: nothing left to rewrap.
                Err(CommandError::Domain(DomainError::CredentialNotFound(_))) => {}
                Err(error) => return Err(error.into()),
            }
            progress.advance();
        }
        Ok(rewrapped)
    }
}
