//! Crypto-shredding a workspace: its keys destroyed in Vault, so that every ciphertext it ever
//! stored, in the immutable log included, stops decrypting; then each of its streams records
//! `WorkspaceShredded`, which empties the read model of it and releases its names. The history
//! keeps who did what and when, without hints.
//!
//! The keys go first: once they are gone nothing of the workspace can be read, whatever
//! happens next, and a shred stopped halfway is finished by running it again (a destroyed key
//! and a shredded stream are left as they are). A workspace used afterwards starts over with
//! new keys. A write racing the shred is shredded too, or, if it sealed its key just before
//! the keys went and lands after its stream was shredded, kept with a key that no longer
//! decrypts; stop writers to a workspace being shredded.

use std::time::{Duration, Instant};

use aimc_domain::{StreamId, WorkspaceId};
use aimc_keyring::{Keyring, KeyringError};
use aimc_store::{CommandBus, CommandError, CommandMetadata, CredentialQueries, StoreError};
use futures::{StreamExt, TryStreamExt};

#[derive(Debug, thiserror::Error)]
pub enum ShredError {
    #[error("destroying the workspace's keys failed: {0}")]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("recording the shred of a stream failed: {0}")]
    Command(#[from] CommandError),
}

/// What a shred did.
#[derive(Debug, Clone)]
pub struct Shredded {
    pub workspace: WorkspaceId,
    /// Streams that held something and recorded `WorkspaceShredded`.
    pub configurations: usize,
    pub credentials: usize,
    /// Streams already empty (shredded by an earlier run, or removed before).
    pub already_empty: usize,
    pub elapsed: Duration,
}

/// Shreds workspaces with the service's own parts.
pub struct Shredding<'a> {
    pub commands: &'a CommandBus,
    pub credentials: &'a CredentialQueries,
    pub keyring: &'a dyn Keyring,
    /// Streams shredded at once.
    pub concurrency: usize,
}

impl Shredding<'_> {
    pub async fn run(
        &self,
        workspace: &WorkspaceId,
        metadata: &CommandMetadata,
    ) -> Result<Shredded, ShredError> {
        let started = Instant::now();
        self.keyring.destroy_keys(workspace).await?;
        let streams = self.credentials.streams_of_workspace(workspace).await?;
        let outcomes: Vec<(bool, bool)> = futures::stream::iter(&streams)
            .map(|stream| async move {
                let forgot = self.commands.shred(stream, metadata).await?;
                Ok::<_, ShredError>((matches!(stream, StreamId::Config(_)), forgot))
            })
            .buffer_unordered(self.concurrency.max(1))
            .try_collect()
            .await?;
        let count = |config: bool| {
            outcomes
                .iter()
                .filter(|(is_config, forgot)| *forgot && *is_config == config)
                .count()
        };
        Ok(Shredded {
            workspace: workspace.clone(),
            configurations: count(true),
            credentials: count(false),
            already_empty: outcomes.iter().filter(|(_, forgot)| !forgot).count(),
            elapsed: started.elapsed(),
        })
    }
}
