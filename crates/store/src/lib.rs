//! Persistence: the postgres-es event log with snapshots, the projections that keep the read
//! model current, and the queries that serve GET requests from it.

mod command_bus;
mod credentials;
mod database;
mod error;
mod event_store;
mod history;
mod projection;
mod views;

pub use command_bus::{CommandBus, CommandMetadata, MAX_COMMAND_ATTEMPTS};
pub use credentials::{CredentialQueries, CredentialRow};
pub use database::{connect, migrate, DatabaseSettings};
pub use error::{CommandError, StoreError};
pub use event_store::SnapshotEventStore;
pub use history::{HistoryEntry, HistoryFilter, HistoryPage};
pub use projection::{Projector, REBUILD_CHUNK_EVENTS};
pub use views::{ConfigQueries, ConfigView};
