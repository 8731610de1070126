use std::collections::HashMap;
use std::sync::Arc;

use aimc_domain::{AiModelConfig, ConfigId};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument;

use crate::database::traced;
use crate::error::StoreError;
use crate::history::{self, HistoryFilter, HistoryPage};

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
    lookups: mpsc::UnboundedSender<Lookup>,
    in_flight: Arc<Semaphore>,
}

/// Batched lookups in flight at once: a new batch forms while these are out. Two, so one is
/// answered while the other travels; with four, queries carried three lookups on average under
/// R and each lookup cost PostgreSQL a quarter more (A/B under R and X: 12-15% more requests
/// served with two, p99 no worse; one was no better than two).
const BATCHES_IN_FLIGHT: usize = 2;
/// Lookups one query answers at most.
const BATCH_SIZE: usize = 64;

impl ConfigQueries {
    /// Starts the task that answers [`ConfigQueries::config`]; needs a Tokio runtime. The task
    /// ends once every clone of this value is dropped.
    pub fn new(pool: PgPool) -> Self {
        let (lookups, queue) = mpsc::unbounded_channel();
        let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
        tokio::spawn(answer_lookups(pool.clone(), queue, in_flight.clone()));
        ConfigQueries {
            pool,
            lookups,
            in_flight,
        }
    }

    /// The configuration as the read model holds it.
    ///
    /// Lookups that arrive while others are being answered share one query
    /// (`aggregate_id = ANY(…)`): under load a read costs a fraction of a round trip to
    /// PostgreSQL, which is most of its cost. A lookup alone goes out at once. Every query
    /// starts after the lookups it answers arrived, so a read still sees every write that was
    /// answered before it was made.
    #[tracing::instrument(skip_all, fields(config = %id))]
    pub async fn config(&self, id: &ConfigId) -> Result<Option<ConfigView>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let lookup = Lookup {
            aggregate_id: id.to_string(),
            reply,
            requester: tracing::Span::current(),
        };
        let stopped = || StoreError::Unavailable("the read model's lookups have stopped".into());
        // With nothing being answered there is nothing to share: asking here spares the
        // hand-over to the batching task, which a lone request would only wait for.
        let idle = self.in_flight.available_permits() == BATCHES_IN_FLIGHT;
        match idle
            .then(|| self.in_flight.clone().try_acquire_owned().ok())
            .flatten()
        {
            Some(_slot) => answer_batch(&self.pool, vec![lookup]).await,
            None => self.lookups.send(lookup).map_err(|_| stopped())?,
        }
        answer.await.map_err(|_| stopped())?
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

struct Lookup {
    aggregate_id: String,
    reply: oneshot::Sender<Result<Option<ConfigView>, StoreError>>,
    /// The span of the request that asked, which a shared query's span links to.
    requester: tracing::Span,
}

async fn answer_lookups(
    pool: PgPool,
    mut queue: mpsc::UnboundedReceiver<Lookup>,
    in_flight: Arc<Semaphore>,
) {
    while let Some(first) = queue.recv().await {
        // Waiting for a free slot is what lets a batch grow under load.
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < BATCH_SIZE {
            match queue.try_recv() {
                Ok(lookup) => batch.push(lookup),
                Err(_) => break,
            }
        }
        // The query answers several requests, so it is a trace of its own, linked from each of
        // theirs, rather than a child of whichever asked first.
        let span = tracing::info_span!(
            parent: None,
            "shared config lookup",
            lookups = batch.len() as i64
        );
        for lookup in &batch {
            span.follows_from(&lookup.requester);
        }
        let pool = pool.clone();
        tokio::spawn(
            async move {
                answer_batch(&pool, batch).await;
                drop(slot);
            }
            .instrument(span),
        );
    }
}

/// aggregate_id, last_sequence, view (as text), created_at, updated_at.
type ConfigRow = (String, i64, String, DateTime<Utc>, DateTime<Utc>);

async fn answer_batch(pool: &PgPool, batch: Vec<Lookup>) {
    let ids: Vec<&str> = batch
        .iter()
        .map(|lookup| lookup.aggregate_id.as_str())
        .collect();
    let rows: Result<Vec<ConfigRow>, StoreError> = traced(
        pool,
        "SELECT config_view",
        sqlx::query_as(
            "SELECT aggregate_id, last_sequence, view::text, created_at, updated_at
               FROM config_view WHERE aggregate_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(pool),
    )
    .await
    .map_err(StoreError::from);
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) => {
            for lookup in batch {
                let _ = lookup.reply.send(Err(error.clone()));
            }
            return;
        }
    };
    let rows: HashMap<&str, &ConfigRow> = rows.iter().map(|row| (row.0.as_str(), row)).collect();
    for lookup in batch {
        // Each view is decoded on its own, so one unreadable row fails only its own lookup.
        let found = rows.get(lookup.aggregate_id.as_str()).map(
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
        );
        // The requester may have gone (request cancelled); nothing to do then.
        let _ = lookup.reply.send(found.transpose());
    }
}
