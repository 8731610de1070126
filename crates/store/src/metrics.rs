//! What the store tells Prometheus: the pool's connections, commands that waited for their turn
//! or lost a race, and how far the read model is behind the log. The service's registry adds
//! the `aimc_` prefix.

use std::sync::LazyLock;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};
use sqlx::PgPool;

use crate::read_model::streams::STREAM_TYPES;

/// Optimistic-concurrency conflicts met by commands: another writer appended to the aggregate
/// between the command's load and its append.
pub(crate) static COMMAND_CONFLICTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "command_conflicts_total",
            "Commands that lost a race: another writer appended to the aggregate first",
        ),
        &["aggregate"],
    )
    .expect("valid metric")
});

/// Commands run again on the reloaded aggregate after a conflict; a conflict that is not
/// retried gave up, the request's deadline being too near, and answered 409.
pub(crate) static COMMAND_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "command_retries_total",
            "Commands run again on the reloaded aggregate after a conflict",
        ),
        &["aggregate"],
    )
    .expect("valid metric")
});

/// Commands that started from the aggregate as this process last left it rather than reading
/// the stream: `current` when their append proved it current, `stale` when another process had
/// written the stream since (the command then went on from the stream as stored). Stale starts
/// that keep coming mean the stream's writes are spread over replicas.
pub(crate) static PARKED_STARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "command_parked_starts_total",
            "Commands that started from the aggregate as this process last left it, by whether it was current",
        ),
        &["aggregate", "outcome"],
    )
    .expect("valid metric")
});

/// How long commands waited for the commands before them on the same aggregate in this
/// process: contention shows here as time rather than as conflicts.
pub(crate) static COMMAND_QUEUE_WAIT: LazyLock<HistogramVec> = LazyLock::new(|| {
    HistogramVec::new(
        HistogramOpts::new(
            "command_queue_wait_seconds",
            "Time a command waited for earlier commands on the same aggregate in this process",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]),
        &["aggregate"],
    )
    .expect("valid metric")
});

/// Commands per statement that appended events: 1 for a write that went alone, more for a
/// group commit. How much concurrent writes share shows here.
pub(crate) static WRITE_STATEMENT_COMMANDS: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    prometheus::Histogram::with_opts(
        HistogramOpts::new(
            "write_statement_commands",
            "Commands whose events one statement appended: 1 alone, more in a group commit",
        )
        .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
    )
    .expect("valid metric")
});

/// Group commits that failed whole, whose commands were then written alone.
pub(crate) static WRITE_STATEMENT_SPLITS: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "write_statement_splits_total",
        "Group commits that failed whole and whose commands were written again alone",
    )
    .expect("valid metric")
});

pub(crate) static PROJECTION_LAG_EVENTS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "projection_lag_events",
            "Events of the log a view had not applied after the last catch-up",
        ),
        &["projection"],
    )
    .expect("valid metric")
});

pub(crate) static PROJECTION_LAG_SECONDS: LazyLock<GaugeVec> = LazyLock::new(|| {
    GaugeVec::new(
        Opts::new(
            "projection_lag_seconds",
            "Age of the oldest event a view had not applied after the last catch-up",
        ),
        &["projection"],
    )
    .expect("valid metric")
});

pub(crate) static PROJECTION_CAUGHT_UP: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "projection_caught_up_events_total",
        "Events projected by catch-up rather than by the command that appended them",
    )
    .expect("valid metric")
});

/// The store's process-wide metrics, for the service's registry.
pub fn collectors() -> Vec<Box<dyn Collector>> {
    // A series that appears only once it counts reads as "no data" until then, not as zero.
    for aggregate in STREAM_TYPES {
        COMMAND_CONFLICTS.with_label_values(&[aggregate]);
        COMMAND_RETRIES.with_label_values(&[aggregate]);
        COMMAND_QUEUE_WAIT.with_label_values(&[aggregate]);
        for outcome in ["current", "stale"] {
            PARKED_STARTS.with_label_values(&[aggregate, outcome]);
        }
    }
    vec![
        Box::new(COMMAND_CONFLICTS.clone()),
        Box::new(COMMAND_RETRIES.clone()),
        Box::new(COMMAND_QUEUE_WAIT.clone()),
        Box::new(PARKED_STARTS.clone()),
        Box::new(WRITE_STATEMENT_COMMANDS.clone()),
        Box::new(WRITE_STATEMENT_SPLITS.clone()),
        Box::new(PROJECTION_LAG_EVENTS.clone()),
        Box::new(PROJECTION_LAG_SECONDS.clone()),
        Box::new(PROJECTION_CAUGHT_UP.clone()),
    ]
}

/// A pool's connections, read from the pool at each scrape rather than kept up to date on
/// every checkout.
pub struct PoolGauges {
    pool: PgPool,
    size: IntGauge,
    max_size: IntGauge,
    connections: IntGaugeVec,
}

impl PoolGauges {
    pub fn new(pool: PgPool) -> Self {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        PoolGauges {
            pool,
            size: gauge("db_pool_size", "Connections the database pool holds open"),
            max_size: gauge("db_pool_max_size", "Connections the database pool may open"),
            connections: IntGaugeVec::new(
                Opts::new(
                    "db_pool_connections",
                    "Open connections of the database pool by state: idle or in_use",
                ),
                &["state"],
            )
            .expect("valid metric"),
        }
    }
}

impl Collector for PoolGauges {
    fn desc(&self) -> Vec<&Desc> {
        [
            self.size.desc(),
            self.max_size.desc(),
            self.connections.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let size = i64::from(self.pool.size());
        // Read apart from the size: a connection checked out in between must not make the
        // in-use count negative.
        let idle = (self.pool.num_idle() as i64).min(size);
        self.size.set(size);
        self.max_size
            .set(i64::from(self.pool.options().get_max_connections()));
        self.connections.with_label_values(&["idle"]).set(idle);
        self.connections
            .with_label_values(&["in_use"])
            .set(size - idle);
        [
            self.size.collect(),
            self.max_size.collect(),
            self.connections.collect(),
        ]
        .concat()
    }
}
