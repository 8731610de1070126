//! Group commit against PostgreSQL (`AIMC_TEST_DATABASE_URL`): the writes that waited for the
//! process's statement slot go in one shared statement, and when that statement fails each is
//! written again alone, so a command fails only for its own sake.
//!
//! The write metrics are process-wide, and `cargo test` runs a file's tests in one process at
//! once: only one scenario here shares a statement, so the counts it reads are its own.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aimc_domain::{
    deadline, AiModelConfig, Ciphertext, ConfigCommand, ConfigId, IdSource, KeyContext, KeyInput,
    KeySealer, ModelName, ModelSpec, ModelType, Owner, Provider, RandomIds, SealError, SealRequest,
    SealedKey, SystemPrompt, WorkspaceId,
};
use aimc_store::{CommandBus, CommandError, ConfigQueries, Executed};
use async_trait::async_trait;
use prometheus::proto::MetricFamily;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use support::{operator, Database};

const SNAPSHOT_EVERY: usize = 2;

/// Far beyond what any step takes on a loaded machine: only a broken scenario waits this long.
const PATIENCE: Duration = Duration::from_secs(30);

/// No configuration here has a key, so nothing is ever sealed.
struct NoKeys;

#[async_trait]
impl KeySealer for NoKeys {
    async fn seal(
        &self,
        _workspace: &WorkspaceId,
        _requests: Vec<SealRequest>,
    ) -> Result<Vec<SealedKey>, SealError> {
        unreachable!("no key is sealed in these scenarios")
    }

    async fn rewrap(
        &self,
        _workspace: &WorkspaceId,
        _items: Vec<(Ciphertext, KeyContext)>,
    ) -> Result<Vec<Ciphertext>, SealError> {
        unreachable!("no key is rewrapped in these scenarios")
    }
}

/// The service's ids, counted: a command adding one model without a key takes one id as it
/// decides, and from there goes to its write without waiting on anything, so the count tells
/// the test how many commands reached the write.
struct CountedIds(watch::Sender<usize>);

impl IdSource for CountedIds {
    fn next_id(&self) -> uuid::Uuid {
        self.0.send_modify(|taken| *taken += 1);
        RandomIds.next_id()
    }
}

/// A user's configuration in a workspace of its own: the writes of two of them share no row,
/// not even a workspace's audit position.
fn config(n: usize) -> ConfigId {
    ConfigId::new(
        WorkspaceId::parse(&format!("grouped{n}")).unwrap(),
        Owner::User(format!("user{n}")),
    )
}

fn model(name: &str) -> ModelSpec {
    ModelSpec {
        provider: Provider::Ollama,
        model_type: ModelType::Chat,
        model: ModelName::parse(name).unwrap(),
        is_paid: false,
        key: KeyInput::Keep,
    }
}

fn prompt(text: &str) -> SystemPrompt {
    SystemPrompt::parse(text).unwrap()
}

fn create(n: usize) -> ConfigCommand {
    ConfigCommand::Create {
        id: config(n),
        models: vec![model("llama3")],
        system_prompt: Some(prompt(&format!("Before {n}"))),
    }
}

/// Adds a model and changes the prompt: two events.
fn replace(
    bus: &Arc<CommandBus>,
    n: usize,
) -> impl Future<Output = Result<Executed<AiModelConfig>, CommandError>> + Send + 'static {
    let bus = Arc::clone(bus);
    async move {
        let command = ConfigCommand::Replace {
            models: vec![model("llama3"), model("mistral")],
            system_prompt: Some(Some(prompt(&format!("After {n}")))),
        };
        bus.execute(&config(n), command, &operator()).await
    }
}

/// Waits until `condition` holds, checking every few milliseconds.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(PATIENCE, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what}: not within {PATIENCE:?}");
}

/// Statements of this database waiting for a lock.
async fn waiting_for_a_lock(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn events_of(pool: &PgPool, n: usize) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
        .bind(config(n).to_string())
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The appending statements of this process, as the store's metrics count them.
#[derive(Debug, Clone, Copy)]
struct Statements {
    /// Shared statements that failed, whose commands were written again alone.
    splits: f64,
    /// Statements that carried more than one command.
    shared: u64,
    /// The commands those carried.
    commands_shared: f64,
}

impl Statements {
    fn now() -> Statements {
        let families: Vec<MetricFamily> = aimc_store::metrics::collectors()
            .iter()
            .flat_map(|collector| collector.collect())
            .collect();
        let family = |name: &str| {
            families
                .iter()
                .find(|family| family.name() == name)
                .unwrap_or_else(|| panic!("the store collects {name}"))
        };
        let splits = family("write_statement_splits_total").get_metric()[0]
            .get_counter()
            .get_value();
        let commands = family("write_statement_commands").get_metric()[0].get_histogram();
        // A statement carries one command or more: the first bucket holds those alone.
        let alone = commands
            .get_bucket()
            .iter()
            .find(|bucket| bucket.upper_bound() == 1.0)
            .expect("a bucket for statements of one command")
            .cumulative_count();
        Statements {
            splits,
            shared: commands.get_sample_count() - alone,
            commands_shared: commands.get_sample_sum() - alone as f64,
        }
    }

    fn since(self, before: Statements) -> Statements {
        Statements {
            splits: self.splits - before.splits,
            shared: self.shared - before.shared,
            commands_shared: self.commands_shared - before.commands_shared,
        }
    }
}

/// A configuration's prompt and models as the read model shows them.
async fn shown(pool: &PgPool, n: usize) -> (String, Vec<String>) {
    let view = ConfigQueries::new(pool.clone())
        .config(&config(n))
        .await
        .unwrap()
        .unwrap()
        .config;
    (
        view.system_prompt
            .as_ref()
            .map(|prompt| prompt.as_str().to_owned())
            .unwrap_or_default(),
        view.models
            .iter()
            .map(|m| m.model.as_str().to_owned())
            .collect(),
    )
}

/// Six configurations made through `bus`.
async fn six_configurations(bus: &CommandBus) {
    for n in 0..6 {
        bus.execute(&config(n), create(n), &operator())
            .await
            .unwrap();
    }
}

/// A transaction holding a lock that stops every write in PostgreSQL until it ends.
async fn lock_every_write(database: &Database) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut locker = database.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE events IN SHARE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    locker
}

/// A transaction holding the read-model rows of these configurations, which stops their
/// writes, and theirs only, until it ends.
async fn lock_the_writes_of(
    database: &Database,
    configs: &[usize],
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut locker = database.pool.begin().await.unwrap();
    let ids: Vec<String> = configs.iter().map(|n| config(*n).to_string()).collect();
    let locked = sqlx::query("SELECT 1 FROM config_view WHERE aggregate_id = ANY($1) FOR UPDATE")
        .bind(&ids)
        .execute(&mut *locker)
        .await
        .unwrap();
    assert_eq!(locked.rows_affected(), configs.len() as u64);
    locker
}

/// A process's command bus whose ids are counted, and the count.
fn counted_bus(database: &Database) -> (Arc<CommandBus>, Decisions) {
    let (taken, watched) = watch::channel(0);
    let bus = support::bus(
        &database.pool,
        Arc::new(NoKeys),
        Arc::new(CountedIds(taken)),
        SNAPSHOT_EVERY,
    );
    (Arc::new(bus), Decisions(watched))
}

/// How many of the counted bus's commands have decided.
struct Decisions(watch::Receiver<usize>);

impl Decisions {
    fn so_far(&self) -> usize {
        *self.0.borrow()
    }

    /// Waits until `more` commands decided after `before`. The test runs on one thread
    /// (`tokio::test`'s runtime): when it runs again after a command took its id, that command
    /// has gone on to put its write in the queue. The count is read and let go at once: a
    /// command taking an id later (a retry) must not find it held.
    async fn wait_for(&mut self, before: usize, more: usize) {
        let decided =
            tokio::time::timeout(PATIENCE, self.0.wait_for(|taken| *taken == before + more))
                .await
                .is_ok_and(|watched| watched.is_ok());
        assert!(decided, "{more} commands reached their writes");
    }
}

/// A command on configuration 0, whose write holds the process's statement slot, blocked by a
/// lock the test holds.
async fn hold_the_slot(
    bus: &Arc<CommandBus>,
    database: &Database,
) -> JoinHandle<Result<Executed<AiModelConfig>, CommandError>> {
    let holding = tokio::spawn(replace(bus, 0));
    eventually("the slot's write waits for the lock", || async {
        waiting_for_a_lock(&database.pool).await == 1
    })
    .await;
    holding
}

#[tokio::test]
async fn a_shared_statement_that_lost_a_race_is_split_and_every_command_in_it_carried_out() {
    // Given six configurations, two processes on them, and a lock on the rows of the first
    let database = Database::create().await;
    let (bus, mut decisions) = counted_bus(&database);
    let replica = support::bus(
        &database.pool,
        Arc::new(NoKeys),
        Arc::new(RandomIds),
        SNAPSHOT_EVERY,
    );
    six_configurations(&bus).await;
    let locker = lock_the_writes_of(&database, &[0]).await;
    let before = Statements::now();

    // And a command on it, whose write holds the statement slot, blocked by the lock
    let holding = hold_the_slot(&bus, &database).await;

    // And five more commands that decide meanwhile, so that their writes wait for the slot to
    // go in one statement
    let decided_before = decisions.so_far();
    let queued: Vec<_> = (1..6).map(|n| tokio::spawn(replace(&bus, n))).collect();
    decisions.wait_for(decided_before, 5).await;

    // When the other process changes configuration 3 first, then the slot is freed
    let command = ConfigCommand::Replace {
        models: vec![model("llama3")],
        system_prompt: Some(Some(prompt("Replica 3"))),
    };
    replica
        .execute(&config(3), command, &operator())
        .await
        .unwrap_or_else(|error| panic!("the replica's command: {error}"));
    locker.commit().await.unwrap();

    // Then every command is carried out, configuration 3's on top of the replica's change
    for (n, command) in [holding].into_iter().chain(queued).enumerate() {
        let executed = command
            .await
            .unwrap()
            .unwrap_or_else(|error| panic!("config {n}: {error}"));
        assert_eq!(executed.events.len(), 2, "config {n}");
        assert_eq!(
            shown(&database.pool, n).await,
            (
                format!("After {n}"),
                vec!["llama3".into(), "mistral".into()]
            ),
            "config {n}"
        );
    }
    for n in (0..6).filter(|n| *n != 3) {
        assert_eq!(events_of(&database.pool, n).await, 5, "config {n}");
    }
    let prompts: Vec<String> = sqlx::query_scalar(
        "SELECT payload -> 'SystemPromptChanged' ->> 'system_prompt' FROM events
          WHERE aggregate_id = $1 AND event_type = 'SystemPromptChanged' ORDER BY sequence",
    )
    .bind(config(3).to_string())
    .fetch_all(&database.pool)
    .await
    .unwrap();
    assert_eq!(prompts, ["Before 3", "Replica 3", "After 3"]);

    // And the five waiting writes went in one statement, which failed whole and was split
    let statements = Statements::now().since(before);
    assert_eq!(statements.splits, 1.0, "{statements:?}");
    assert_eq!(statements.shared, 1, "{statements:?}");
    assert_eq!(statements.commands_shared, 5.0, "{statements:?}");
    database.drop().await;
}

#[tokio::test]
async fn a_request_that_gives_up_while_its_write_waits_is_answered_at_its_deadline_and_lands_nothing(
) {
    // Given six configurations, and a table lock that holds every write in PostgreSQL
    let database = Database::create().await;
    let (bus, mut decisions) = counted_bus(&database);
    six_configurations(&bus).await;
    let locker = lock_every_write(&database).await;

    // And a command whose write holds the statement slot, blocked by the lock
    let holding = hold_the_slot(&bus, &database).await;

    // When two more commands decide meanwhile, one of them in a request that gives up a second
    // from now, while its write still waits for the slot
    let decided_before = decisions.so_far();
    let gives_up = 4;
    let gives_up_at = Instant::now() + Duration::from_secs(1);
    let waits = tokio::spawn(replace(&bus, 2));
    let gave_up = tokio::spawn(deadline::within(gives_up_at, replace(&bus, gives_up)));
    decisions.wait_for(decided_before, 2).await;

    // Then that request is answered, "unavailable", while the lock still holds every write
    let answered = tokio::time::timeout(PATIENCE, gave_up).await;
    match answered {
        Ok(Ok(Err(CommandError::StoreUnavailable(_)))) => {}
        outcome => panic!("the request that gave up, with the writes still held: {outcome:?}"),
    }
    assert!(Instant::now() >= gives_up_at);
    assert_eq!(waiting_for_a_lock(&database.pool).await, 1);

    // And once the lock is gone, the others are carried out and its write never lands
    locker.commit().await.unwrap();
    for (n, command) in [(0, holding), (2, waits)] {
        command
            .await
            .unwrap()
            .unwrap_or_else(|error| panic!("config {n}: {error}"));
        assert_eq!(events_of(&database.pool, n).await, 5, "config {n}");
    }
    assert_eq!(events_of(&database.pool, gives_up).await, 3);
    assert_eq!(
        shown(&database.pool, gives_up).await,
        (format!("Before {gives_up}"), vec!["llama3".into()])
    );
    database.drop().await;
}
