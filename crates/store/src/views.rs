use std::collections::HashMap;

use aimc_domain::{AiModelConfig, ConfigId};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::database::traced;
use crate::error::StoreError;
use crate::history::{self, HistoryFilter, HistoryPage};
use crate::shared_lookups::{Answer, SharedLookups};

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
    configs: SharedLookups<Configs>,
}

impl ConfigQueries {
    /// Starts the task that shares [`ConfigQueries::config`]'s queries; needs a Tokio runtime.
    pub fn new(pool: PgPool) -> Self {
        ConfigQueries {
            configs: SharedLookups::new(Configs { pool: pool.clone() }),
            pool,
        }
    }

    /// The configuration as the read model holds it. Lookups that arrive while others are
    /// being answered share one query (`aggregate_id = ANY(…)`): under load a read costs a
    /// fraction of a round trip to PostgreSQL, which is most of its cost.
    #[tracing::instrument(skip_all, fields(config = %id))]
    pub async fn config(&self, id: &ConfigId) -> Result<Option<ConfigView>, StoreError> {
        self.configs.get(id.to_string()).await
    }

    #[tracing::instrument(skip_all, fields(workspace = %filter.workspace))]
    pub async fn history(&self, filter: &HistoryFilter) -> Result<HistoryPage, StoreError> {
        history::page(&self.pool, filter).await
    }

    /// Whether the database answers, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        traced(
            &self.pool,
            "SELECT",
            sqlx::query("SELECT 1").execute(&self.pool),
        )
        .await?;
        Ok(())
    }
}

/// aggregate_id, last_sequence, view (as text), created_at, updated_at.
type ConfigRow = (String, i64, String, DateTime<Utc>, DateTime<Utc>);

struct Configs {
    pool: PgPool,
}

impl Answer for Configs {
    type Key = String;
    type Value = Option<ConfigView>;
    const SPAN: &'static str = "shared config lookup";

    async fn answer(
        &self,
        ids: &[String],
    ) -> Result<Vec<Result<Option<ConfigView>, StoreError>>, StoreError> {
        let rows: Vec<ConfigRow> = traced(
            &self.pool,
            "SELECT config_view",
            sqlx::query_as(
                "SELECT aggregate_id, last_sequence, view::text, created_at, updated_at
                   FROM config_view WHERE aggregate_id = ANY($1)",
            )
            .bind(ids)
            .fetch_all(&self.pool),
        )
        .await?;
        let rows: HashMap<&str, &ConfigRow> =
            rows.iter().map(|row| (row.0.as_str(), row)).collect();
        // Each view is decoded on its own, so one unreadable row fails only its own lookup.
        Ok(ids
            .iter()
            .map(|id| {
                rows.get(id.as_str())
                    .map(
                        |(aggregate_id, last_sequence, view, created_at, updated_at)| {
                            Ok(ConfigView {
                                aggregate_id: aggregate_id.clone(),
                                last_sequence: *last_sequence,
                                config: serde_json::from_str(view).map_err(|error| {
                                    StoreError::Internal(format!("unreadable config view: {error}"))
                                })?,
                                created_at: *created_at,
                                updated_at: *updated_at,
                            })
                        },
                    )
                    .transpose()
            })
            .collect())
    }
}
