//! A key rotation's batch rewrap against PostgreSQL (`AIMC_TEST_DATABASE_URL`), with a
//! keyring stand-in: every credential rewrapped exactly once, whatever writes race the batch.

mod support;

use std::sync::{Arc, Mutex};

use aimc_domain::{
    Ciphertext, ConfigId, CredentialAggregate, CredentialChange, CredentialCommand, CredentialName,
    KeyContext, KeyHint, KeySealer, NameChoice, NewCredential, Owner, Provider, RandomIds,
    SealError, SealRequest, SealedKey, WorkspaceId,
};
use aimc_store::{CommandBus, CredentialHome, CredentialQueries, SnapshotEventStore};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tokio::sync::oneshot;

use support::{operator, Database};

/// Where a sealer call stops until the test lets it go on.
struct Gate {
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// Lets the test hold one call of a kind at the gate.
fn gate() -> (Gate, oneshot::Receiver<()>, oneshot::Sender<()>) {
    let (reached, reached_rx) = oneshot::channel();
    let (release_tx, release) = oneshot::channel();
    (Gate { reached, release }, reached_rx, release_tx)
}

/// Seals a key as `vault:v<latest>:<context>:<plain>` and rewraps by raising the version, as
/// transit would; the first seal or rewrap may be held at a gate.
#[derive(Default)]
struct Sealer {
    latest: std::sync::atomic::AtomicU32,
    hold_seal: Mutex<Option<Gate>>,
    hold_rewrap: Mutex<Option<Gate>>,
    rewrap_calls: std::sync::atomic::AtomicUsize,
}

impl Sealer {
    fn new() -> Arc<Sealer> {
        let sealer = Sealer::default();
        sealer.latest.store(1, std::sync::atomic::Ordering::SeqCst);
        Arc::new(sealer)
    }

    fn latest(&self) -> u32 {
        self.latest.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn pass(gate: &Mutex<Option<Gate>>) {
        let held = gate.lock().unwrap().take();
        if let Some(Gate { reached, release }) = held {
            let _ = reached.send(());
            let _ = release.await;
        }
    }
}

#[async_trait]
impl KeySealer for Sealer {
    async fn seal(
        &self,
        _workspace: &WorkspaceId,
        requests: Vec<SealRequest>,
    ) -> Result<Vec<SealedKey>, SealError> {
        Sealer::pass(&self.hold_seal).await;
        Ok(requests
            .into_iter()
            .map(|request| {
                let SealRequest::Plain { plain, context } = request else {
                    panic!("the test seals plain keys only")
                };
                SealedKey {
                    ciphertext: Ciphertext(format!(
                        "vault:v{}:{}:{}",
                        self.latest(),
                        context.as_str(),
                        plain.expose_secret()
                    )),
                    hint: KeyHint::from_plain(&plain),
                }
            })
            .collect())
    }

    async fn rewrap(
        &self,
        _workspace: &WorkspaceId,
        items: Vec<(Ciphertext, KeyContext)>,
    ) -> Result<Vec<Ciphertext>, SealError> {
        self.rewrap_calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Sealer::pass(&self.hold_rewrap).await;
        Ok(items
            .into_iter()
            .map(|(ciphertext, context)| {
                let rest = ciphertext.as_str().splitn(3, ':').nth(2).unwrap();
                assert!(
                    rest.starts_with(context.as_str()),
                    "rewrapped in its context"
                );
                Ciphertext(format!("vault:v{}:{rest}", self.latest()))
            })
            .collect())
    }
}

const SNAPSHOT_EVERY: usize = 2;

/// A process's command bus: its own write queues, on the shared database.
fn bus(pool: &PgPool, sealer: Arc<Sealer>) -> CommandBus {
    support::bus(pool, sealer, Arc::new(RandomIds), SNAPSHOT_EVERY)
}

fn workspace() -> WorkspaceId {
    WorkspaceId::parse("bulk").unwrap()
}

/// `count` credentials with streams of their own, sealed under v1; their homes.
async fn credentials(bus: &CommandBus, pool: &PgPool, count: usize) -> Vec<CredentialHome> {
    let owner = ConfigId::new(workspace(), Owner::Workspace);
    for n in 0..count {
        let new = NewCredential {
            name: NameChoice::Given(CredentialName::parse(&format!("Key {n}")).unwrap()),
            provider: Provider::Openai,
            endpoint: Some("https://api.openai.com/v1".into()),
            access_key: (n % 2 == 0).then(|| SecretString::from(format!("AKIA{n:08}"))),
            secret: SecretString::from(format!("sk-proj-bulk-{n:04}-0123456789")),
        };
        bus.add_credential(&owner, new, &operator()).await.unwrap();
    }
    CredentialQueries::new(pool.clone())
        .of_workspace(&workspace())
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.home)
        .collect()
}

/// What the rotation does after a batch: each credential it left goes through its own command.
async fn rewrap_left(bus: &CommandBus, left: &[CredentialHome], target: u32) -> usize {
    let mut rewrapped = 0;
    for home in left {
        let command = CredentialCommand::Rewrap {
            credential_id: home.credential_id,
            key_version: target,
        };
        let executed = bus
            .execute_on_credential(home, command, &operator())
            .await
            .unwrap();
        rewrapped += usize::from(executed.recorded_at.is_some());
    }
    rewrapped
}

/// Per stream, its event types in order.
async fn streams(pool: &PgPool) -> Vec<(String, Vec<String>)> {
    let rows: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT aggregate_id, array_agg(event_type ORDER BY sequence) FROM events
          GROUP BY aggregate_id ORDER BY aggregate_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows
}

/// Every credential exactly once rewrapped, in its log, its history and its view, which shows
/// it under `target` and decrypting in its own context.
async fn assert_each_rewrapped_once(pool: &PgPool, homes: &[CredentialHome], target: u32) {
    for (stream, events) in streams(pool).await {
        let rewraps = events
            .iter()
            .filter(|event| *event == "CredentialRewrapped")
            .count();
        assert_eq!(rewraps, 1, "{stream}: {events:?}");
    }
    let history: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE event_type = 'CredentialRewrapped' AND actor = 'cli:operator'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(history, homes.len() as i64);
    let rows = CredentialQueries::new(pool.clone())
        .of_workspace(&workspace())
        .await
        .unwrap();
    assert_eq!(rows.len(), homes.len());
    for row in &rows {
        let secret = row.secret.as_ref().unwrap();
        assert_eq!(secret.key_version(), Some(target), "{}", row.id());
        assert!(secret
            .as_str()
            .contains(KeyContext::for_credential(&row.home.owner, row.id()).as_str()));
    }
    // Each aggregate as loaded (from its snapshot when one was taken) is its full replay.
    let store = SnapshotEventStore::<CredentialAggregate>::new(pool.clone(), SNAPSHOT_EVERY);
    for home in homes {
        let id = home.stream.to_string();
        let (loaded, sequence) = store.load(&id).await.unwrap();
        let (replayed, replayed_sequence) = store.replay_from_scratch(&id).await.unwrap();
        assert_eq!((&loaded, sequence), (&replayed, replayed_sequence), "{id}");
        let credential = loaded.credential.unwrap();
        assert_eq!(credential.secret.key_version(), Some(target));
        if let Some(access_key) = &credential.access_key {
            assert_eq!(access_key.key_version(), Some(target));
        }
    }
}

#[tokio::test]
async fn a_batch_rewraps_every_stale_key_in_one_keyring_call_and_takes_the_snapshots_due() {
    let database = Database::create().await;
    let sealer = Sealer::new();
    let bus = bus(&database.pool, sealer.clone());
    let homes = credentials(&bus, &database.pool, 7).await;
    sealer.latest.store(2, std::sync::atomic::Ordering::SeqCst);

    let rewraps = bus
        .rewrap_credentials(&workspace(), homes.clone(), 2, &operator())
        .await
        .unwrap();

    assert_eq!(rewraps.rewrapped.len(), homes.len());
    assert!(rewraps.left.is_empty() && rewraps.current.is_empty() && rewraps.gone.is_empty());
    assert_eq!(
        sealer
            .rewrap_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_each_rewrapped_once(&database.pool, &homes, 2).await;
    let snapshots: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM aggregate_snapshots WHERE aggregate_type = 'Credential' AND last_sequence = 2",
    )
    .fetch_one(&database.pool)
    .await
    .unwrap();
    assert_eq!(
        snapshots,
        homes.len() as i64,
        "each stream reached its snapshot"
    );

    // Run again (a resumed rotation): nothing left to do, nothing recorded twice.
    let again = bus
        .rewrap_credentials(&workspace(), homes.clone(), 2, &operator())
        .await
        .unwrap();
    assert_eq!(again.current.len(), homes.len());
    assert!(again.rewrapped.is_empty() && again.left.is_empty());
    assert_each_rewrapped_once(&database.pool, &homes, 2).await;
    database.drop().await;
}

#[tokio::test]
async fn a_batch_raced_by_another_process_leaves_its_credentials_to_their_commands_and_each_is_rewrapped_once(
) {
    let database = Database::create().await;
    let rotating_sealer = Sealer::new();
    let rotating = bus(&database.pool, rotating_sealer.clone());
    let other_sealer = Sealer::new();
    let other = bus(&database.pool, other_sealer.clone());
    let homes = credentials(&other, &database.pool, 6).await;
    rotating_sealer
        .latest
        .store(2, std::sync::atomic::Ordering::SeqCst);
    other_sealer
        .latest
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let (held, reached, release) = gate();
    *rotating_sealer.hold_rewrap.lock().unwrap() = Some(held);
    let raced = homes[3].clone();

    // The batch has loaded every stream and waits for the keyring; meanwhile another replica
    // changes one of its credentials.
    let (workspace, metadata) = (workspace(), operator());
    let batch = rotating.rewrap_credentials(&workspace, homes.clone(), 2, &metadata);
    let race = async {
        reached.await.unwrap();
        let change = CredentialCommand::Change {
            credential_id: raced.credential_id,
            change: CredentialChange {
                endpoint: Some(Some("https://racing.example/v1".into())),
                ..CredentialChange::default()
            },
        };
        other
            .execute_on_credential(&raced, change, &operator())
            .await
            .unwrap();
        release.send(()).unwrap();
    };
    let (rewraps, ()) = tokio::join!(batch, race);
    let rewraps = rewraps.unwrap();

    assert!(
        rewraps.rewrapped.is_empty(),
        "the statement failed whole: {rewraps:?}"
    );
    assert_eq!(rewraps.left.len(), homes.len());
    assert_eq!(rewrap_left(&rotating, &rewraps.left, 2).await, homes.len());
    assert_each_rewrapped_once(&database.pool, &homes, 2).await;
    let events = streams(&database.pool)
        .await
        .into_iter()
        .find(|(stream, _)| *stream == raced.stream.to_string())
        .unwrap()
        .1;
    assert_eq!(
        events,
        [
            "CredentialAdded",
            "CredentialEndpointChanged",
            "CredentialRewrapped"
        ],
        "the racing write is kept, and the rewrap decided after it"
    );
    let endpoint: String =
        sqlx::query_scalar("SELECT endpoint FROM credential_view WHERE credential_id = $1")
            .bind(raced.credential_id.0)
            .fetch_one(&database.pool)
            .await
            .unwrap();
    assert_eq!(endpoint, "https://racing.example/v1");
    database.drop().await;
}

#[tokio::test]
async fn a_batch_leaves_a_stream_this_process_is_writing_to_its_command_without_waiting() {
    let database = Database::create().await;
    let sealer = Sealer::new();
    let bus = bus(&database.pool, sealer.clone());
    let homes = credentials(&bus, &database.pool, 5).await;
    sealer.latest.store(2, std::sync::atomic::Ordering::SeqCst);
    let (held, reached, release) = gate();
    *sealer.hold_seal.lock().unwrap() = Some(held);
    let written = homes[1].clone();
    let new_secret = CredentialCommand::Change {
        credential_id: written.credential_id,
        change: CredentialChange {
            secret: Some(SecretString::from("sk-proj-replaced-during-rotation-0001")),
            ..CredentialChange::default()
        },
    };

    // A write of this process holds the stream's turn while its key is being sealed.
    let metadata = operator();
    let write = bus.execute_on_credential(&written, new_secret, &metadata);
    let batch = async {
        reached.await.unwrap();
        let rewraps = bus
            .rewrap_credentials(&workspace(), homes.clone(), 2, &operator())
            .await
            .unwrap();
        release.send(()).unwrap();
        rewraps
    };
    let (write, rewraps) = tokio::join!(write, batch);
    write.unwrap();

    assert_eq!(rewraps.rewrapped.len(), homes.len() - 1);
    assert_eq!(rewraps.left, std::slice::from_ref(&written));
    // Its command, after the write: the write sealed under v2 already, so its secret needs
    // nothing; its access key (none for this one) neither.
    assert_eq!(rewrap_left(&bus, &rewraps.left, 2).await, 0);
    let events = streams(&database.pool)
        .await
        .into_iter()
        .find(|(stream, _)| *stream == written.stream.to_string())
        .unwrap()
        .1;
    assert_eq!(events, ["CredentialAdded", "CredentialSecretReplaced"]);
    let rows = CredentialQueries::new(database.pool.clone())
        .of_workspace(&workspace())
        .await
        .unwrap();
    assert!(rows
        .iter()
        .all(|row| row.secret.as_ref().unwrap().key_version() == Some(2)));
    database.drop().await;
}
