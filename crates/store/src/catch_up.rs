//! Keeping the read model level with the log outside of commands: catch-up of streams whose
//! events some view has not applied (appended by an older build, which projected after
//! committing, or left behind when such a process died), the full rebuild, and the clean-up of
//! name claims no credential took.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aimc_domain::{AiModelConfig, CredentialAggregate};
use cqrs_es::Aggregate;
use sqlx::PgPool;

use crate::database::traced;
use crate::error::StoreError;
use crate::metrics::{PROJECTION_CAUGHT_UP, PROJECTION_LAG_EVENTS, PROJECTION_LAG_SECONDS};
use crate::read_model::streams::{self, STREAM_TYPES};
use crate::read_model::VIEWS;

use crate::online_rebuild::{self, RebuildProgress, Rebuilt, Unwatched};

/// Events per write of a rebuild: large enough that the statements' round trips do not count,
/// small enough that a chunk's rows stay a few megabytes.
pub const REBUILD_CHUNK_EVENTS: usize = 10_000;

/// How long after its `occurred_at` stamp an event may still commit and be found by the
/// periodic pass that reads only the log written since the pass before: a slow transaction, or
/// a replica whose clock is behind. One later than that waits for the next full pass.
const LATE_COMMIT_ALLOWANCE: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// How often the periodic catch-up reads the whole log all the same: for events stamped
/// further back than [`LATE_COMMIT_ALLOWANCE`], or not stamped at all (the oldest builds).
const FULL_PASS_EVERY: Duration = Duration::from_secs(3600);

/// Brings the read model up to date with the event log, outside of commands.
pub struct Projector {
    pool: PgPool,
    /// Streams the last pass could not project: every pass tries them again, so they stay in
    /// the lag gauges until they project, however old their events.
    failing: Mutex<BTreeSet<(String, String)>>,
}

/// Which streams a catch-up pass looks at.
enum Scope {
    /// Every stream in the log.
    Whole,
    /// Those with an event stamped at or after this (`YYYY-MM-DDTHH:MM:SS`, UTC), and those
    /// still failing.
    Since(String),
}

impl Scope {
    /// Stamps are RFC 3339 in UTC, so their text sorts as their time, and every stamp of this
    /// second or later sorts at or after this prefix of it.
    fn since(at: chrono::DateTime<chrono::Utc>) -> Scope {
        Scope::Since(at.format("%Y-%m-%dT%H:%M:%S").to_string())
    }
}

impl Projector {
    pub fn new(pool: PgPool) -> Self {
        Projector {
            pool,
            failing: Mutex::default(),
        }
    }

    /// Applies every event of a stream the read model has not seen; returns how many.
    #[tracing::instrument(skip_all, fields(aggregate_type = %aggregate_type, aggregate_id = %aggregate_id))]
    pub async fn catch_up(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<usize, StoreError> {
        match aggregate_type {
            CredentialAggregate::TYPE => {
                streams::catch_up::<CredentialAggregate>(&self.pool, aggregate_id).await
            }
            _ => streams::catch_up::<AiModelConfig>(&self.pool, aggregate_id).await,
        }
    }

    /// Per view and stream it has not applied to its end: (aggregate type, aggregate id, view,
    /// events it lacks, when the first of them was appended). A log older than that stamp
    /// has none.
    async fn behind(&self) -> Result<Vec<Behind>, StoreError> {
        Ok(traced(&self.pool, "SELECT events", behind(&self.pool)).await?)
    }

    /// [`Projector::behind`] among the streams `scope` names.
    async fn behind_in(&self, scope: &Scope) -> Result<Vec<Behind>, StoreError> {
        match scope {
            Scope::Whole => self.behind().await,
            Scope::Since(since) => {
                let failing: (Vec<String>, Vec<String>) = self
                    .failing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .cloned()
                    .unzip();
                Ok(traced(
                    &self.pool,
                    "SELECT events",
                    sqlx::query_as(&format!(
                        // A stream's newest event is stamped no earlier than any other of
                        // its events, so the recent events alone give a touched stream's
                        // last sequence: the log is read once, through the index.
                        "WITH streams AS (
                             SELECT aggregate_type, aggregate_id, max(last) AS last FROM (
                                 SELECT aggregate_type, aggregate_id, max(sequence) AS last FROM events
                                  WHERE aggregate_type = ANY($1) AND metadata ->> 'occurred_at' >= $3
                                  GROUP BY aggregate_type, aggregate_id
                                 UNION ALL
                                 SELECT aggregate_type, aggregate_id, max(sequence) FROM events
                                  WHERE (aggregate_type, aggregate_id) IN (SELECT * FROM unnest($4::text[], $5::text[]))
                                  GROUP BY aggregate_type, aggregate_id
                             ) touched
                             GROUP BY aggregate_type, aggregate_id
                         )
                         {BEHIND}"
                    ))
                    .bind(&STREAM_TYPES[..])
                    .bind(&VIEWS[..])
                    .bind(since)
                    .bind(&failing.0)
                    .bind(&failing.1)
                    // Planned for this `since` each time: a generic plan cannot tell a few
                    // minutes of the log from all of it, and reads all of it.
                    .persistent(false)
                    .fetch_all(&self.pool),
                )
                .await?)
            }
        }
    }

    /// Where each view stands against the event log, for `aimc projections status`.
    pub async fn status(&self) -> Result<LogStatus, StoreError> {
        let events: i64 = traced(
            &self.pool,
            "SELECT events",
            sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = ANY($1)")
                .bind(&STREAM_TYPES[..])
                .fetch_one(&self.pool),
        )
        .await?;
        let applied: Vec<(String, i64)> = traced(
            &self.pool,
            "SELECT projection_offsets",
            sqlx::query_as(
                "SELECT projection, coalesce(sum(last_sequence), 0)::bigint FROM projection_offsets
                  WHERE projection = ANY($1) GROUP BY projection",
            )
            .bind(&VIEWS[..])
            .fetch_all(&self.pool),
        )
        .await?;
        let behind = self.behind().await?;
        let now = chrono::Utc::now();
        let views = VIEWS
            .iter()
            .map(|view| {
                let lagging: Vec<&Behind> = behind.iter().filter(|b| b.2 == *view).collect();
                ViewStatus {
                    view,
                    applied_events: applied
                        .iter()
                        .find(|(name, _)| name == view)
                        .map_or(0, |(_, applied)| *applied),
                    lagging_streams: lagging.len(),
                    lag_events: lagging.iter().map(|b| b.3).sum(),
                    lag_seconds: lagging
                        .iter()
                        .filter_map(|b| b.4.as_deref())
                        .filter_map(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                        .map(|at| (now - at.with_timezone(&chrono::Utc)).as_seconds_f64())
                        .fold(0.0, f64::max),
                }
            })
            .collect();
        Ok(LogStatus { events, views })
    }

    /// Catches up every aggregate whose events some projection has not applied yet, and
    /// reports what is still behind afterwards as the projection lag gauges. Reads the whole
    /// log: at start-up, and as the periodic pass's backstop.
    #[tracing::instrument(skip_all)]
    pub async fn catch_up_all(&self) -> Result<usize, StoreError> {
        self.pass(&Scope::Whole).await?.into_result()
    }

    /// [`Projector::catch_up_all`] among the streams with an event stamped at or after `since`,
    /// and those the last pass could not project: the periodic pass, whose cost follows what
    /// was written lately (since the pass before, plus [`LATE_COMMIT_ALLOWANCE`]) rather than
    /// the length of the log.
    #[tracing::instrument(skip_all)]
    pub async fn catch_up_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, StoreError> {
        self.pass(&Scope::since(since)).await?.into_result()
    }

    /// One catch-up pass over `scope`; fails only when the log could not be read.
    async fn pass(&self, scope: &Scope) -> Result<Pass, StoreError> {
        let behind = self.behind_in(scope).await?;
        let lagging: BTreeSet<(&str, &str)> = behind
            .iter()
            .map(|(aggregate_type, aggregate_id, ..)| {
                (aggregate_type.as_str(), aggregate_id.as_str())
            })
            .collect();
        let (mut applied, mut failed) = (0, BTreeSet::new());
        for &(aggregate_type, aggregate_id) in &lagging {
            // One aggregate that cannot be projected must not hold back all the others.
            match self.catch_up(aggregate_type, aggregate_id).await {
                Ok(count) => applied += count,
                Err(error) => {
                    failed.insert((aggregate_type.to_owned(), aggregate_id.to_owned()));
                    tracing::error!(aggregate_id, %error, "catch-up failed for this aggregate");
                }
            }
        }
        PROJECTION_CAUGHT_UP.inc_by(applied as u64);
        report_lag(behind.iter().filter(|(aggregate_type, aggregate_id, ..)| {
            failed.contains(&(aggregate_type.clone(), aggregate_id.clone()))
        }));
        if applied > 0 {
            tracing::info!(
                aggregates = lagging.len() as i64,
                events = applied as i64,
                "read model caught up"
            );
        }
        let failed_count = failed.len();
        *self.failing.lock().unwrap_or_else(PoisonError::into_inner) = failed;
        Ok(Pass {
            applied,
            failed: failed_count,
        })
    }

    /// Rebuilds the read model from the event log while the service keeps answering: replays
    /// every event into fresh tables, [`REBUILD_CHUNK_EVENTS`] at a time, and swaps them in
    /// atomically (see [`crate::online_rebuild`]). Returns how many events were applied.
    ///
    /// Audit positions come out in time order across each workspace's streams, and the offsets
    /// let commands continue where the replay stopped.
    #[tracing::instrument(skip_all)]
    pub async fn rebuild(&self) -> Result<usize, StoreError> {
        let rebuilt = self
            .rebuild_watched(REBUILD_CHUNK_EVENTS, &Unwatched)
            .await?;
        Ok(rebuilt.replayed + rebuilt.caught_up)
    }

    /// [`Projector::rebuild`] writing about `chunk_events` events per statement (whole
    /// workspaces, unless one alone is larger).
    pub async fn rebuild_in_chunks(&self, chunk_events: usize) -> Result<usize, StoreError> {
        let rebuilt = self.rebuild_watched(chunk_events, &Unwatched).await?;
        Ok(rebuilt.replayed + rebuilt.caught_up)
    }

    /// [`Projector::rebuild_in_chunks`], telling `progress` how far it got.
    #[tracing::instrument(skip_all, fields(chunk_events = chunk_events as i64))]
    pub async fn rebuild_watched(
        &self,
        chunk_events: usize,
        progress: &dyn RebuildProgress,
    ) -> Result<Rebuilt, StoreError> {
        let rebuilt = online_rebuild::rebuild(&self.pool, chunk_events, progress).await?;
        tracing::info!(
            events = (rebuilt.replayed + rebuilt.caught_up) as i64,
            "read model rebuilt"
        );
        Ok(rebuilt)
    }

    /// Older builds claimed a name before running the command that used it; a claim whose
    /// command never completed (the process died in between) would block the name for good:
    /// free those no credential holds. Claims are now written with the command's events, so
    /// only those older claims are left to free. Only meaningful once the read model has
    /// caught up with the log.
    pub async fn release_abandoned_names(&self) -> Result<u64, StoreError> {
        let released = traced(
            &self.pool,
            "DELETE credential_names",
            sqlx::query(
                "DELETE FROM credential_names n
                  WHERE claimed_at < now() - interval '5 minutes'
                    AND NOT EXISTS (SELECT 1 FROM credential_view c
                                     WHERE c.workspace_id = n.workspace_id AND c.name_key = n.name_key)",
            )
            .execute(&self.pool),
        )
        .await?
        .rows_affected();
        Ok(released)
    }

    /// Catches up every `interval` until the task is dropped: among the streams written since
    /// the pass before (less [`LATE_COMMIT_ALLOWANCE`]), and over the whole log every
    /// [`FULL_PASS_EVERY`]. Meant to start once the start-up pass has read the whole log.
    pub async fn catch_up_periodically(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        let mut covered_until = chrono::Utc::now();
        let mut whole_due = tokio::time::Instant::now() + FULL_PASS_EVERY;
        loop {
            ticker.tick().await;
            let began = chrono::Utc::now();
            let whole = tokio::time::Instant::now() >= whole_due;
            let scope = if whole {
                Scope::Whole
            } else {
                Scope::since(covered_until - LATE_COMMIT_ALLOWANCE)
            };
            match self.pass(&scope).await {
                Ok(pass) => {
                    covered_until = began;
                    if whole {
                        whole_due = tokio::time::Instant::now() + FULL_PASS_EVERY;
                    }
                    if pass.failed > 0 {
                        tracing::warn!(
                            aggregates = pass.failed as i64,
                            "periodic catch-up left aggregates behind"
                        );
                    } else if let Err(error) = self.release_abandoned_names().await {
                        tracing::warn!(%error, "releasing abandoned credential names failed");
                    }
                }
                Err(error) => tracing::warn!(%error, "periodic catch-up failed"),
            }
        }
    }
}

/// What a catch-up pass did.
struct Pass {
    applied: usize,
    /// Streams it could not project.
    failed: usize,
}

impl Pass {
    fn into_result(self) -> Result<usize, StoreError> {
        if self.failed > 0 {
            return Err(StoreError::Internal(format!(
                "{} aggregates could not be projected",
                self.failed
            )));
        }
        Ok(self.applied)
    }
}

type Behind = (String, String, String, i64, Option<String>);

/// The event log and where each view stands against it.
#[derive(Debug, Clone)]
pub struct LogStatus {
    /// Events in the log.
    pub events: i64,
    pub views: Vec<ViewStatus>,
}

#[derive(Debug, Clone)]
pub struct ViewStatus {
    pub view: &'static str,
    /// Events the view has applied.
    pub applied_events: i64,
    /// Streams it has not applied to their end, the events it lacks, and how old the oldest
    /// of them is.
    pub lagging_streams: usize,
    pub lag_events: i64,
    pub lag_seconds: f64,
}

/// Sets the lag gauges of every view from `behind`: (type, id, view, events, first unapplied
/// event's time) of each stream a view is still behind on. A view behind on nothing reads 0.
fn report_lag<'a>(behind: impl Iterator<Item = &'a Behind>) {
    let now = chrono::Utc::now();
    let mut lag: BTreeMap<&str, (i64, f64)> = VIEWS.iter().map(|view| (*view, (0, 0.0))).collect();
    for (_, _, view, events, first_at) in behind {
        let Some((total, oldest)) = lag.get_mut(view.as_str()) else {
            continue;
        };
        *total += events;
        let age = first_at
            .as_deref()
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .map_or(0.0, |at| {
                (now - at.with_timezone(&chrono::Utc)).as_seconds_f64()
            });
        *oldest = oldest.max(age);
    }
    for (view, (events, seconds)) in lag {
        PROJECTION_LAG_EVENTS.with_label_values(&[view]).set(events);
        PROJECTION_LAG_SECONDS
            .with_label_values(&[view])
            .set(seconds);
    }
}

/// The streams behind, from a CTE `streams` (aggregate type, aggregate id, last sequence):
/// per view, those it has not applied to their last event. `$2` is the views.
const BEHIND: &str =
    "SELECT e.aggregate_type, e.aggregate_id, p.name, e.last - coalesce(o.last_sequence, 0),
        (SELECT f.metadata->>'occurred_at' FROM events f
          WHERE f.aggregate_type = e.aggregate_type AND f.aggregate_id = e.aggregate_id
            AND f.sequence = coalesce(o.last_sequence, 0) + 1)
   FROM streams e
  CROSS JOIN unnest($2::text[]) AS p(name)
   LEFT JOIN projection_offsets o ON o.projection = p.name AND o.aggregate_id = e.aggregate_id
  WHERE coalesce(o.last_sequence, 0) < e.last";

/// [`Projector::behind`] on any connection, whatever tables its `search_path` reaches.
pub(crate) async fn behind<'e>(
    executor: impl sqlx::PgExecutor<'e>,
) -> Result<Vec<Behind>, sqlx::Error> {
    sqlx::query_as(&format!(
        "WITH streams AS (
             SELECT aggregate_type, aggregate_id, max(sequence) AS last FROM events
              WHERE aggregate_type = ANY($1) GROUP BY aggregate_type, aggregate_id
         )
         {BEHIND}"
    ))
    .bind(&STREAM_TYPES[..])
    .bind(&VIEWS[..])
    .fetch_all(executor)
    .await
}
