use aimc_domain::DomainError;

/// Failures of the read side and of projections.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("invalid history cursor")]
    InvalidCursor,
    #[error("database error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if crate::database::is_unavailable(&error) {
            StoreError::Unavailable(error.to_string())
        } else {
            StoreError::Internal(error.to_string())
        }
    }
}

/// Why a command was not carried out, or not fully: see [`CommandError::appended_nothing`].
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Other writers kept winning the race for this aggregate.
    #[error("the configuration was changed concurrently {attempts} times; try again")]
    Conflict { attempts: usize },
    /// The request's deadline passed while it waited its turn behind other writes to the same
    /// aggregate; nothing was tried, so nothing was recorded.
    #[error("{0}")]
    Busy(String),
    /// The database could not be reached; the command may or may not have been recorded if the
    /// connection was lost while it committed.
    #[error("the event store is unavailable: {0}")]
    StoreUnavailable(String),
    #[error("event store error: {0}")]
    Internal(String),
}

impl CommandError {
    /// Whether the command certainly left the log untouched: a lost connection may or may not
    /// have committed.
    pub fn appended_nothing(&self) -> bool {
        matches!(
            self,
            CommandError::Domain(_) | CommandError::Conflict { .. } | CommandError::Busy(_)
        )
    }
}
