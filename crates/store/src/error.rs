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
        match error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(error.to_string()),
            other => StoreError::Internal(other.to_string()),
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
    #[error("the event store is unavailable: {0}")]
    StoreUnavailable(String),
    /// The events were appended but the read model could not be updated in this request.
    #[error("the change was recorded but is not readable yet: {0}")]
    NotYetVisible(String),
    #[error("event store error: {0}")]
    Internal(String),
}

impl CommandError {
    /// Whether the command certainly left the log untouched. `NotYetVisible` means the events
    /// were appended; a lost connection may or may not have committed.
    pub fn appended_nothing(&self) -> bool {
        matches!(
            self,
            CommandError::Domain(_) | CommandError::Conflict { .. }
        )
    }
}
