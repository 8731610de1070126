//! Persistence: the postgres-es event log with snapshots, the read model the commands project
//! into in the same transaction, and the queries that serve GET requests from it.

mod bulk;
mod catch_up;
mod command_bus;
mod credentials;
mod database;
mod error;
mod event_store;
mod group_commit;
mod history;
mod idempotency;
pub mod metrics;
mod online_rebuild;
mod read_model;
mod rebuild;
mod registry;
mod rotations;
mod shared_lookups;
mod upcasting;
mod views;

pub use bulk::Rewraps;
pub use catch_up::{LogStatus, Projector, ViewStatus, REBUILD_CHUNK_EVENTS};
pub use command_bus::{
    CommandBus, CommandMetadata, CredentialExecuted, Executed, MAX_COMMAND_ATTEMPTS,
};
pub use credentials::{CredentialHome, CredentialQueries, CredentialRow, StandaloneKeys};
pub use database::{connect, is_unavailable, migrate, DatabaseSettings};
pub use error::{CommandError, StoreError};
pub use event_store::{SnapshotEventStore, SNAPSHOT_SCHEMA_VERSION};
pub use history::{HistoryEntry, HistoryFilter, HistoryPage};
pub use idempotency::{Claim, IdempotencyKeys, StoredAnswer, KEPT_FOR};
pub use metrics::PoolGauges;
pub use online_rebuild::{RebuildProgress, Rebuilt, Unwatched};
pub use read_model::streams::Projected;
pub use read_model::EventMetadata;
pub use registry::CredentialRegistry;
pub use rotations::{KeyRotations, RotationRow, RotationStart, ROTATION_HEARTBEAT_LOST_AFTER};
pub use views::{ConfigQueries, ConfigView};
