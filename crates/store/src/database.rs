use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    /// How long a request waits for a connection before the database counts as unavailable.
    pub acquire_timeout: Duration,
    /// PostgreSQL's `statement_timeout` and `lock_timeout` on every connection: a statement that
    /// runs or waits for a lock longer is cancelled by the server itself, so a runaway query or
    /// a stuck lock holder cannot pin connections after the request gave up on them. None for
    /// the maintenance commands, whose statements are long by design.
    pub statement_timeout: Option<Duration>,
    pub lock_timeout: Option<Duration>,
}

/// A connection idle for longer than this is pinged before use; see [`connect`].
const PING_AFTER_IDLE: Duration = Duration::from_secs(10);

/// Connects lazily, so the service starts (and serves what needs no database) while Postgres
/// is still coming up.
///
/// sqlx pings every connection it hands out by default: a second round trip for every query,
/// which cost reads a third of their throughput. A connection that was just used is known to
/// work, so only one that sat idle (where a restarted server or a dropped socket would show)
/// is pinged, and replaced if the ping fails.
///
/// Prepared statements are planned once per connection (`plan_cache_mode`): PostgreSQL would
/// otherwise plan a command's write statement anew at every execution, since a plan knowing
/// the sizes of its arrays always looks cheaper, and planning took a fifth of the machine
/// during writes. Every statement here finds its rows through a key or an index prefix, which
/// a generic plan uses as well as a custom one.
pub fn connect(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    let mut options = PgConnectOptions::from_str(settings.url.expose_secret())?
        .options([("plan_cache_mode", "force_generic_plan")]);
    for (name, timeout) in [
        ("statement_timeout", settings.statement_timeout),
        ("lock_timeout", settings.lock_timeout),
    ] {
        if let Some(timeout) = timeout {
            // In milliseconds, the unit PostgreSQL assumes; at least 1, since 0 disables it.
            let milliseconds = timeout.as_millis().max(1).to_string();
            options = options.options([(name, milliseconds.as_str())]);
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|connection, metadata| {
            Box::pin(async move {
                if metadata.idle_for < PING_AFTER_IDLE {
                    return Ok(true);
                }
                Ok(connection.ping().await.is_ok())
            })
        })
        .connect_lazy_with(options);
    Ok(pool)
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("../../migrations").run(pool).await
}

/// Whether an error means the database cannot be reached right now (down, restarting, failing
/// over, out of connections), so the request is worth retrying later: the one place that decides
/// what answers 503.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            // 08: connection exception; 57P01-57P03: admin or crash shutdown, cannot connect
            // now; 57014: cancelled by statement_timeout or a passed write deadline; 55P03:
            // lock_timeout; 53300: too many connections; 25006: a read-only (standby) server
            // after a failover.
            code.starts_with("08")
                || code.starts_with("57P")
                || ["57014", "55P03", "53300", "25006"].contains(&code.as_ref())
        }),
        _ => false,
    }
}

/// Whether an error means another writer got there first (the same event sequence, the same
/// credential name, or a serialization failure or deadlock between two writes): the command is
/// retried, and decided again on what the winner left.
pub fn is_conflict(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => {
            matches!(
                error.constraint(),
                Some("events_pkey" | "credential_names_pkey")
            ) || error
                .code()
                .is_some_and(|code| code == "40001" || code == "40P01")
        }
        _ => false,
    }
}

/// Runs one statement inside a CLIENT span that follows OpenTelemetry's database conventions,
/// so a trace shows where a request waited on PostgreSQL, and within the request's deadline
/// ([`aimc_domain::deadline`]): a statement cut by it counts as "unavailable". `summary` is the operation and the
/// tables it is about (`SELECT events`), or the operation alone; the statement's text and bound
/// values are never recorded: the values can be ciphertext, names or ids.
pub(crate) async fn traced<T>(
    pool: &PgPool,
    summary: &'static str,
    statement: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let (operation, collection) = match summary.split_once(' ') {
        // The collection attribute names one table; a statement about several has none.
        Some((operation, tables)) => (operation, (!tables.contains(' ')).then_some(tables)),
        None => (summary, None),
    };
    let target = pool.connect_options();
    let span = tracing::info_span!(
        "db",
        otel.name = summary,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        db.system.name = "postgresql",
        db.operation.name = operation,
        db.collection.name = collection,
        db.query.summary = summary,
        db.namespace = target.get_database(),
        db.response.status_code = tracing::field::Empty,
        server.address = target.get_host(),
        server.port = i64::from(target.get_port()),
        error.type = tracing::field::Empty,
    );
    let result = match aimc_domain::deadline::bounded(
        "postgresql",
        statement.instrument(span.clone()),
    )
    .await
    {
        Ok(result) => result,
        // Dropping the statement mid-flight is safe: sqlx discards or drains the connection
        // before it is used again, and an uncommitted write rolls back with it.
        Err(passed) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            passed,
        ))),
    };
    if let Err(error) = &result {
        let code = match error {
            sqlx::Error::Database(error) => error.code(),
            _ => None,
        };
        if let Some(code) = &code {
            span.record("db.response.status_code", code.as_ref());
        }
        span.record("error.type", code.as_deref().unwrap_or(error_kind(error)));
        span.record("otel.status_code", "error");
    }
    result
}

/// A class of failure for `error.type` when PostgreSQL gave no SQLSTATE.
fn error_kind(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::PoolTimedOut => "pool_timeout",
        sqlx::Error::Io(error) if error.kind() == std::io::ErrorKind::TimedOut => "timeout",
        sqlx::Error::PoolClosed => "pool_closed",
        sqlx::Error::Io(_) => "io",
        sqlx::Error::Tls(_) => "tls",
        sqlx::Error::Protocol(_) => "protocol",
        sqlx::Error::RowNotFound => "row_not_found",
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => "decode",
        _ => "_OTHER",
    }
}
