//! `aimc projections rebuild` while the service keeps answering: the log is replayed into fresh
//! tables in a schema of their own, which then take the live tables' place in one transaction.
//!
//! Until the swap, reads and writes go on against the live tables, untouched. Events appended
//! meanwhile are caught up into the fresh tables twice: once after the replay, with the
//! service writing, and once more inside the swap's transaction, with the live tables locked,
//! so nothing committed is missed. Only the swap holds requests back, for the last catch-up
//! and the moves of six tables between schemas: a moment, whatever their size.
//!
//! The fresh tables are built from the live ones' definitions (columns, defaults, checks,
//! constraints and indexes under their own names), so the schema after a rebuild is the one
//! the migrations made, and later migrations find every object where they expect it.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::catch_up::Projector;
use crate::error::StoreError;
use crate::read_model::streams::STREAM_TYPES;
use crate::rebuild;

/// Where the fresh tables are built, and where the live ones go once replaced.
const FRESH: &str = "aimc_rebuild";
const RETIRED: &str = "aimc_retired";

/// Every table of the read model. The name registry is among them: the replay registers every
/// name again, over a copy of the live registry that keeps the claims older builds made before
/// their commands ran.
const TABLES: [&str; 6] = [
    "config_view",
    "credential_view",
    "credential_names",
    "audit_log",
    "audit_positions",
    "projection_offsets",
];

/// How a rebuild tells its progress.
pub trait RebuildProgress: Send + Sync {
    /// The replay starts, with about `events` to go through.
    fn replaying(&self, events: u64);
    /// `events` more applied.
    fn replayed(&self, events: u64);
    /// Replay done; catching up and swapping.
    fn swapping(&self);
}

/// Progress nobody watches.
pub struct Unwatched;

impl RebuildProgress for Unwatched {
    fn replaying(&self, _: u64) {}
    fn replayed(&self, _: u64) {}
    fn swapping(&self) {}
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct Rebuilt {
    /// Events replayed from the log's snapshot.
    pub replayed: usize,
    /// Events appended while it ran, caught up before and during the swap.
    pub caught_up: usize,
}

pub(crate) async fn rebuild(
    pool: &PgPool,
    chunk_events: usize,
    progress: &dyn RebuildProgress,
) -> Result<Rebuilt, StoreError> {
    let rebuilt = replay_and_swap(pool, chunk_events, progress).await;
    if rebuilt.is_err() {
        // The live tables are as they were; the fresh ones are of no use.
        let dropped = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {FRESH} CASCADE"))
            .execute(pool)
            .await;
        if let Err(error) = dropped {
            tracing::warn!(%error, "could not drop the failed rebuild's tables; the next rebuild will");
        }
    }
    rebuilt
}

async fn replay_and_swap(
    pool: &PgPool,
    chunk_events: usize,
    progress: &dyn RebuildProgress,
) -> Result<Rebuilt, StoreError> {
    let mut admin = pool.acquire().await?;
    prepare_fresh_tables(&mut admin).await?;
    drop(admin);

    // Unqualified names reach the fresh tables first, so the replay and catch-up write there
    // with the very statements commands use; the log and everything else stay in public.
    let fresh_pool = fresh_pool(pool);
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = ANY($1)")
            .bind(&STREAM_TYPES[..])
            .fetch_one(pool)
            .await?;
    progress.replaying(total.max(0) as u64);
    let replayed = rebuild::replay_log(&fresh_pool, chunk_events, progress).await?;
    let mut caught_up = Projector::new(fresh_pool.clone()).catch_up_all().await?;
    progress.swapping();

    let mut swap = fresh_pool.acquire().await?;
    caught_up += swap_in(&mut swap, pool).await?;
    // The rebuild is done once swapped: tables left behind are only untidy.
    if let Err(error) = drop_retired(&mut swap).await {
        tracing::warn!(%error, "could not drop the retired tables; the next rebuild will");
    }
    sqlx::raw_sql(&format!("DROP SCHEMA {FRESH} CASCADE"))
        .execute(&mut *swap)
        .await?;
    fresh_pool.close().await;
    Ok(Rebuilt {
        replayed,
        caught_up,
    })
}

/// The live tables in the order a command's statement locks them: taking them in that order,
/// the swap never holds one a command has while waiting for one the command holds.
const LOCK_ORDER: [&str; 6] = [
    "config_view",
    "credential_view",
    "credential_names",
    "audit_positions",
    "audit_log",
    "projection_offsets",
];

/// How long the swap waits for the live tables before letting go and trying again. Short of
/// PostgreSQL's deadlock check (1 s): should a reader or a catch-up hold one table and wait for
/// another the swap holds, the swap is the one that yields, not the service's request.
const LOCK_WAIT: &str = "200ms";
const LOCK_ATTEMPTS: u32 = 50;

/// Runs `work` in a transaction holding the read model's tables in `schema`, taken in
/// [`LOCK_ORDER`] a short wait at a time: when requests hold them, it lets go and tries again
/// rather than make them wait behind it. None once [`LOCK_ATTEMPTS`] attempts found them busy.
async fn with_tables_locked<T>(
    connection: &mut PgConnection,
    schema: &str,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let tables: Vec<String> = LOCK_ORDER.iter().map(|t| format!("{schema}.{t}")).collect();
    let lock = format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", tables.join(", "));
    for attempt in 1..=LOCK_ATTEMPTS {
        let mut tx = connection.begin().await?;
        sqlx::raw_sql(&format!("SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
            .execute(&mut *tx)
            .await?;
        match sqlx::raw_sql(&lock).execute(&mut *tx).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("55P03") => {
                tx.rollback().await?;
                tracing::info!(attempt, schema, "the tables are busy; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(
                    50 * u64::from(attempt.min(10)),
                ))
                .await;
                continue;
            }
            Err(error) => return Err(error.into()),
        }
        sqlx::raw_sql("SET LOCAL lock_timeout = 0")
            .execute(&mut *tx)
            .await?;
        let done = work(&mut tx).await?;
        tx.commit().await?;
        return Ok(Some(done));
    }
    Ok(None)
}

/// Catches the fresh tables up with the last events and puts them in the live ones' place, in
/// one transaction during which the live tables are locked: writers and readers wait for the
/// catch-up of what was committed since the last one, and for the moves. Returns the events
/// caught up.
async fn swap_in(connection: &mut PgConnection, pool: &PgPool) -> Result<usize, StoreError> {
    let swapped = with_tables_locked(connection, "public", async |tx: &mut PgConnection| {
        let caught_up = catch_up_within(&mut *tx, pool).await?;
        sqlx::raw_sql(&format!(
            "DROP SCHEMA IF EXISTS {RETIRED} CASCADE; CREATE SCHEMA {RETIRED}"
        ))
        .execute(&mut *tx)
        .await?;
        for table in TABLES {
            sqlx::raw_sql(&format!(
                "ALTER TABLE public.{table} SET SCHEMA {RETIRED}; \
                 ALTER TABLE {FRESH}.{table} SET SCHEMA public"
            ))
            .execute(&mut *tx)
            .await?;
        }
        Ok(caught_up)
    })
    .await?;
    swapped.ok_or_else(|| {
        StoreError::Unavailable(format!(
            "the read model's tables stayed busy through {LOCK_ATTEMPTS} attempts to swap; \
             run the rebuild again"
        ))
    })
}

/// Drops the tables the swap retired. Statements the service prepared before the swap still
/// name them: PostgreSQL locks a cached plan's tables before it finds the plan stale and plans
/// it again, in the order a command locks them. A drop taking them in another order (as
/// `DROP SCHEMA … CASCADE` does) can deadlock with such a statement, so they are locked in that
/// order first, yielding to requests as the swap does.
async fn drop_retired(connection: &mut PgConnection) -> Result<(), StoreError> {
    let dropped = with_tables_locked(connection, RETIRED, async |tx: &mut PgConnection| {
        sqlx::raw_sql(&format!("DROP SCHEMA {RETIRED} CASCADE"))
            .execute(&mut *tx)
            .await?;
        Ok(())
    })
    .await?;
    dropped.ok_or_else(|| {
        StoreError::Unavailable(format!(
            "the retired tables stayed busy through {LOCK_ATTEMPTS} attempts to drop them"
        ))
    })
}

/// Empty copies of the live tables in [`FRESH`]: columns, defaults and checks, then the
/// constraints and indexes under the names the migrations gave them (PostgreSQL's `LIKE …
/// INCLUDING INDEXES` would name them anew). The registry is copied over.
async fn prepare_fresh_tables(connection: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::raw_sql(&format!(
        "DROP SCHEMA IF EXISTS {FRESH} CASCADE; CREATE SCHEMA {FRESH}"
    ))
    .execute(&mut *connection)
    .await?;
    for table in TABLES {
        sqlx::query(&format!(
            "CREATE TABLE {FRESH}.{table} (LIKE public.{table} INCLUDING DEFAULTS \
             INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS)"
        ))
        .execute(&mut *connection)
        .await?;
    }
    // The definitions come from the catalog and are quoted by PostgreSQL itself (`%I`,
    // pg_get_*def); the table names are the constants above.
    let statements: Vec<String> = sqlx::query_scalar(
        "SELECT format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', $1::text, c.relname, con.conname,
                       pg_get_constraintdef(con.oid))
           FROM pg_constraint con
           JOIN pg_class c ON c.oid = con.conrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relname = ANY($2) AND con.contype IN ('p', 'u', 'x')
         UNION ALL
         SELECT regexp_replace(pg_get_indexdef(i.indexrelid), ' ON public\\.', ' ON ' || quote_ident($1) || '.')
           FROM pg_index i
           JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relname = ANY($2)
            AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid)",
    )
    .bind(FRESH)
    .bind(&TABLES[..])
    .fetch_all(&mut *connection)
    .await?;
    for statement in statements {
        sqlx::query(&statement).execute(&mut *connection).await?;
    }
    sqlx::query(&format!(
        "INSERT INTO {FRESH}.credential_names SELECT * FROM public.credential_names"
    ))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// A pool whose connections see the fresh tables in place of the live ones.
fn fresh_pool(pool: &PgPool) -> PgPool {
    let options: PgConnectOptions = (*pool.connect_options())
        .clone()
        .options([("search_path", format!("{FRESH},public"))]);
    PgPoolOptions::new()
        .max_connections(4)
        .connect_lazy_with(options)
}

/// Projects into the fresh tables what was committed since the last catch-up, inside the
/// swap's transaction, while writers wait.
async fn catch_up_within(
    connection: &mut PgConnection,
    pool: &PgPool,
) -> Result<usize, StoreError> {
    let lagging: std::collections::BTreeSet<(String, String)> =
        crate::catch_up::behind(&mut *connection)
            .await?
            .into_iter()
            .map(|(aggregate_type, aggregate_id, ..)| (aggregate_type, aggregate_id))
            .collect();
    let mut applied = 0;
    for (aggregate_type, aggregate_id) in &lagging {
        applied += crate::read_model::streams::catch_up_on(
            &mut *connection,
            pool,
            aggregate_type,
            aggregate_id,
        )
        .await?;
    }
    Ok(applied)
}
