use aimc_domain::AiModelConfig;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgPool;

use crate::error::StoreError;
use crate::history::{self, HistoryFilter, HistoryPage};

/// last_sequence, view, created_at, updated_at.
type ConfigRow = (i64, Json<AiModelConfig>, DateTime<Utc>, DateTime<Utc>);

/// A configuration as the read model holds it.
#[derive(Debug, Clone)]
pub struct ConfigView {
    pub aggregate_id: String,
    pub last_sequence: i64,
    pub config: AiModelConfig,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The read side: every GET is one indexed query here, never a load of the aggregate.
#[derive(Clone)]
pub struct ConfigQueries {
    pool: PgPool,
}

impl ConfigQueries {
    pub fn new(pool: PgPool) -> Self {
        ConfigQueries { pool }
    }

    #[tracing::instrument(skip(self))]
    pub async fn config(&self, aggregate_id: &str) -> Result<Option<ConfigView>, StoreError> {
        // Decoded straight into the aggregate's shape: no intermediate JSON tree per read.
        let row: Option<ConfigRow> = sqlx::query_as(
            "SELECT last_sequence, view, created_at, updated_at FROM config_view WHERE aggregate_id = $1",
        )
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(last_sequence, Json(config), created_at, updated_at)| ConfigView {
                aggregate_id: aggregate_id.to_owned(),
                last_sequence,
                config,
                created_at,
                updated_at,
            },
        ))
    }

    #[tracing::instrument(skip(self))]
    pub async fn history(&self, filter: &HistoryFilter) -> Result<HistoryPage, StoreError> {
        history::page(&self.pool, filter).await
    }

    /// Whether the database answers, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
