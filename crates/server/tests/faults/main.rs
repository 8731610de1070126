//! Fault injection: aimc's dependencies and aimc itself failing under load, with their own
//! PostgreSQL and OpenBao processes so that stopping them harms nothing else.
//!
//! Each scenario asserts what a client relies on: a failure answers 503 with `Retry-After`,
//! never 500; it answers within the request deadline; a refused write appended nothing; no
//! accepted (2xx) write is lost; and the read model equals what the event log says.

mod deps;
mod service;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aimc_api::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use deps::{OpenBao, Postgres};
use service::{call, call_keyed, Answer, Deployment, Replica};

/// Short limits, so each fault shows within seconds.
const DEADLINE_MS: u64 = 1_500;
const SETTINGS: [(&str, &str); 6] = [
    ("AIMC_REQUEST_DEADLINE_MS", "1500"),
    ("AIMC_READINESS_DEADLINE_MS", "500"),
    ("AIMC_HTTP_HEADER_READ_TIMEOUT_MS", "1000"),
    ("AIMC_HTTP_BODY_READ_TIMEOUT_MS", "1000"),
    ("AIMC_HTTP_KEEP_ALIVE_IDLE_SECONDS", "5"),
    ("AIMC_HTTP_MAX_CONNECTIONS", "64"),
];
/// What a client may wait beyond the deadline: the answer's own way back, and the sweep.
const SLACK: Duration = Duration::from_millis(1_000);

const SECRET: &str = "sk-fault-suite-secret-0123456789abcdef";
const ACCESS_KEY: &str = "AKIAFAULTSUITE000001";

fn credential(deployment: &Deployment, name: &str) -> Value {
    json!({
        "name": name,
        "aiType": "OPENAI",
        "endpoint": "https://api.openai.com/v1",
        "key": ACCESS_KEY,
        "secret": SECRET,
        "workspaceId": deployment.workspace,
    })
}

/// A keyed write's first request may still hold its key in a replica that was killed: the key
/// counts as abandoned after the deadline plus 30 s, so retries go on for longer than that.
const RETRIES_OF_AN_UNANSWERED_WRITE: usize = 160;

/// No answer yet: the connection failed, or the first request with the key is still (or was,
/// in a replica since killed) being answered; family B says so as a 400.
fn unanswered(answer: &Answer) -> bool {
    answer.status.is_none()
        || answer.body["message"]
            .as_str()
            .is_some_and(|message| message.contains("still being answered"))
}

/// Whether the write was applied although its answer was lost with the replica answering it.
fn applied_answer_lost(answer: &Answer) -> bool {
    answer.body["message"]
        .as_str()
        .is_some_and(|message| message.contains("was applied"))
}

/// Writers creating credentials with unique names and readers listing them, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<Vec<(String, Answer)>>>,
    readers: Vec<tokio::task::JoinHandle<Vec<Answer>>>,
}

impl Load {
    fn start(deployment: &Deployment, replicas: &[String], writers: usize, readers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let token = deployment.token("fault-admin", Role::Admin);
        let client = reqwest::Client::new();
        let writers = (0..writers)
            .map(|writer| {
                let (stop, token, client) = (stop.clone(), token.clone(), client.clone());
                let deployment = deployment.clone();
                let address = replicas[writer % replicas.len()].clone();
                let fallback = replicas[(writer + 1) % replicas.len()].clone();
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let name = format!("w{writer}-n{n}");
                        let body = credential(&deployment, &name);
                        let url = format!("{address}/ai/llm");
                        // The name is the key: a write whose answer never came is sent again,
                        // to the other replica, as a client that saw its connection reset would.
                        let key = Some(name.as_str());
                        let mut answer = call_keyed(
                            &client,
                            Method::POST,
                            &url,
                            &token,
                            Some(body.clone()),
                            key,
                        )
                        .await;
                        let retry_url = format!("{fallback}/ai/llm");
                        for _ in 0..RETRIES_OF_AN_UNANSWERED_WRITE {
                            if !unanswered(&answer) {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            answer = call_keyed(
                                &client,
                                Method::POST,
                                &retry_url,
                                &token,
                                Some(body.clone()),
                                key,
                            )
                            .await;
                        }
                        answers.push((name, answer));
                    }
                    answers
                })
            })
            .collect();
        let readers = (0..readers)
            .map(|reader| {
                let (stop, token, client) = (stop.clone(), token.clone(), client.clone());
                let url = format!(
                    "{}/ai/llm?workspaceId={}",
                    replicas[reader % replicas.len()],
                    deployment.workspace
                );
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let answer = call(&client, Method::GET, &url, &token, None).await;
                        if answer.status.is_none() {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        answers.push(answer);
                    }
                    answers
                })
            })
            .collect();
        Load {
            stop,
            writers,
            readers,
        }
    }

    async fn finish(self) -> (Vec<(String, Answer)>, Vec<Answer>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut writes = Vec::new();
        for writer in self.writers {
            writes.extend(writer.await.unwrap());
        }
        let mut reads = Vec::new();
        for reader in self.readers {
            reads.extend(reader.await.unwrap());
        }
        (writes, reads)
    }
}

/// Every server error is a 503 that says when to retry.
fn assert_503_never_500<'a>(answers: impl IntoIterator<Item = &'a Answer>, during: &str) {
    for answer in answers {
        if let Some(status) = answer.status {
            assert!(
                !status.is_server_error()
                    || (status == StatusCode::SERVICE_UNAVAILABLE && answer.retry_after),
                "{during}: {status} (Retry-After: {}) {}",
                answer.retry_after,
                answer.body
            );
        }
    }
}

/// How many events name `credential` (its creation and any later change).
async fn events_naming(pool: &sqlx::PgPool, credential: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events
          WHERE event_type = 'CredentialAdded' AND payload::text LIKE '%' || $1 || '%'",
    )
    .bind(format!("\"{credential}\""))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// No accepted write lost, none recorded twice; no refused write recorded. A write whose
/// connection failed may have been recorded or not: the client cannot know (the reason for
/// `Idempotency-Key`), so it is only counted.
async fn assert_writes_kept_exactly(pool: &sqlx::PgPool, writes: &[(String, Answer)]) -> usize {
    let mut unknown = 0;
    for (name, answer) in writes {
        let recorded = events_naming(pool, name).await;
        match answer.status {
            Some(status) if status.is_success() => {
                assert_eq!(
                    recorded, 1,
                    "accepted write {name} recorded {recorded} times"
                )
            }
            Some(_) if applied_answer_lost(answer) => assert_eq!(
                recorded, 1,
                "write {name}, told applied on its retry, recorded {recorded} times"
            ),
            Some(status) => assert_eq!(
                recorded, 0,
                "write {name} answered {status} yet was recorded: {}",
                answer.body
            ),
            None => unknown += 1,
        }
    }
    unknown
}

/// The read model as a rebuild from the event log makes it equals the one the commands wrote.
async fn assert_read_model_equals_log(deployment: &Deployment) {
    let pool = sqlx::postgres::PgPool::connect(&deployment.database_url)
        .await
        .unwrap();
    let snapshot = || async {
        let mut tables = Vec::new();
        for table in ["credential_view", "config_view", "credential_names"] {
            let rows: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT row_to_json(t)::text FROM {table} t ORDER BY 1"
            ))
            .fetch_all(&pool)
            .await
            .unwrap();
            tables.push((table, rows));
        }
        tables
    };
    let written = snapshot().await;
    let rebuilt = tokio::process::Command::new(env!("CARGO_BIN_EXE_aimc"))
        .args(["projections", "rebuild"])
        .env("AIMC_DATABASE_URL", &deployment.database_url)
        .env("AIMC_LOG", "error")
        .output()
        .await
        .unwrap();
    assert!(
        rebuilt.status.success(),
        "rebuild failed: {}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let replayed = snapshot().await;
    for ((table, written), (_, replayed)) in written.iter().zip(&replayed) {
        assert_eq!(
            written.len(),
            replayed.len(),
            "{table}: rows written by commands and rows replayed from the log differ in number"
        );
        assert_eq!(
            written, replayed,
            "{table} differs from a replay of the log"
        );
    }
}

async fn deployment() -> (Postgres, OpenBao, Deployment) {
    let (postgres, vault) = tokio::join!(Postgres::start(), OpenBao::start());
    let deployment = Deployment::new(&postgres, &vault, &SETTINGS).await;
    (postgres, vault, deployment)
}

#[tokio::test]
async fn postgresql_ending_sessions_under_load_is_503_never_500_and_loses_no_accepted_write() {
    let (postgres, _vault, deployment) = deployment().await;
    let replica = Replica::start(&deployment, 0).await;
    let admin = sqlx::postgres::PgPool::connect(&postgres.url)
        .await
        .unwrap();
    let load = Load::start(&deployment, std::slice::from_ref(&replica.address), 6, 4);
    let terminations = AtomicUsize::new(0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = 'aimc_faults' AND pid <> pg_backend_pid()",
        )
        .fetch_all(&admin)
        .await
        .unwrap();
        terminations.fetch_add(ended.len(), Ordering::Relaxed);
    }
    let (writes, reads) = load.finish().await;

    assert!(
        terminations.load(Ordering::Relaxed) > 10,
        "sessions were ended"
    );
    assert_503_never_500(
        reads.iter().chain(writes.iter().map(|(_, a)| a)),
        "sessions ended",
    );
    let accepted = writes
        .iter()
        .filter(|(_, a)| a.status.is_some_and(|s| s.is_success()));
    assert!(
        accepted.count() > 20,
        "writes went through between the terminations"
    );
    let events = sqlx::postgres::PgPool::connect(&deployment.database_url)
        .await
        .unwrap();
    let unknown = assert_writes_kept_exactly(&events, &writes).await;
    assert_eq!(
        unknown, 0,
        "aimc answered every request, even when its session ended"
    );
    assert_read_model_equals_log(&deployment).await;
    eprintln!(
        "terminated {} sessions; {} writes, {} reads; answers: {}",
        terminations.load(Ordering::Relaxed),
        writes.len(),
        reads.len(),
        tally(writes.iter().map(|(_, a)| a).chain(&reads))
    );
}

#[tokio::test]
async fn a_hung_postgresql_answers_503_within_the_deadline_and_appends_nothing() {
    let (postgres, _vault, deployment) = deployment().await;
    let replica = Replica::start(&deployment, 0).await;
    let client = reqwest::Client::new();
    let token = deployment.token("fault-admin", Role::Admin);
    let created = call(
        &client,
        Method::POST,
        &format!("{}/ai/llm", replica.address),
        &token,
        Some(credential(&deployment, "before-the-hang")),
    )
    .await;
    assert_eq!(created.status, Some(StatusCode::OK), "{}", created.body);

    let WhileFrozen {
        writes,
        reads,
        ready,
        healthy,
    } = under_load_while_frozen(
        &deployment,
        &replica,
        || postgres.stop(),
        |p| postgres.resume(p),
    )
    .await;

    let budget = Duration::from_millis(DEADLINE_MS) + SLACK;
    for answer in reads.iter().chain(writes.iter().map(|(_, a)| a)) {
        assert_eq!(
            answer.status,
            Some(StatusCode::SERVICE_UNAVAILABLE),
            "{}",
            answer.body
        );
        assert!(answer.retry_after);
        assert!(
            answer.elapsed < budget,
            "answered after {:?}",
            answer.elapsed
        );
    }
    assert_eq!(ready.status, Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(
        ready.elapsed < Duration::from_millis(500) + SLACK,
        "{:?}",
        ready.elapsed
    );
    assert_eq!(healthy.status, Some(StatusCode::OK));

    // Statements sent before the freeze run once PostgreSQL resumes: give them the time, then
    // check that none of the refused writes was recorded behind its client's back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let url = format!("{}/ai/llm", replica.address);
    let recovery = recover(&client, &url, &token, &deployment, "after-the-hang").await;
    let events = sqlx::postgres::PgPool::connect(&deployment.database_url)
        .await
        .unwrap();
    assert_writes_kept_exactly(&events, &writes).await;
    assert_read_model_equals_log(&deployment).await;
    eprintln!(
        "PostgreSQL frozen 4 s: {} writes and {} reads, slowest answer {:?}, /readyz in {:?}, \
         writing again {recovery:?} after the resume",
        writes.len(),
        reads.len(),
        reads
            .iter()
            .chain(writes.iter().map(|(_, a)| a))
            .map(|a| a.elapsed)
            .max()
            .unwrap(),
        ready.elapsed
    );
}

#[tokio::test]
async fn a_hung_openbao_answers_503_within_the_deadline_while_reads_go_on() {
    let (_postgres, vault, deployment) = deployment().await;
    let replica = Replica::start(&deployment, 0).await;
    let client = reqwest::Client::new();
    let token = deployment.token("fault-admin", Role::Admin);
    let url = format!("{}/ai/llm", replica.address);
    let created = call(
        &client,
        Method::POST,
        &url,
        &token,
        Some(credential(&deployment, "kept")),
    )
    .await;
    assert_eq!(created.status, Some(StatusCode::OK), "{}", created.body);

    let WhileFrozen {
        writes,
        reads,
        ready,
        ..
    } = under_load_while_frozen(&deployment, &replica, || vault.stop(), |p| vault.resume(p)).await;

    let budget = Duration::from_millis(DEADLINE_MS) + SLACK;
    for (name, answer) in &writes {
        assert_eq!(
            answer.status,
            Some(StatusCode::SERVICE_UNAVAILABLE),
            "{name}: {}",
            answer.body
        );
        assert!(answer.retry_after);
        assert!(
            answer.elapsed < budget,
            "{name} answered after {:?}",
            answer.elapsed
        );
    }
    // Listing needs no decryption: it goes on while Vault hangs.
    assert!(
        reads.iter().all(|a| a.status == Some(StatusCode::OK)),
        "{}",
        tally(&reads)
    );
    assert_eq!(ready.status, Some(StatusCode::OK), "{}", ready.body);
    assert_eq!(ready.body["status"], "degraded");
    assert!(
        ready.elapsed < Duration::from_millis(500) + SLACK,
        "{:?}",
        ready.elapsed
    );

    let recovery = recover(&client, &url, &token, &deployment, "later").await;
    let events = sqlx::postgres::PgPool::connect(&deployment.database_url)
        .await
        .unwrap();
    assert_writes_kept_exactly(&events, &writes).await;
    assert_read_model_equals_log(&deployment).await;
    eprintln!(
        "OpenBao frozen 4 s: {} writes refused, slowest in {:?}; {} reads served; /readyz in {:?}; \
         writing again {recovery:?} after the resume",
        writes.len(),
        writes.iter().map(|(_, a)| a.elapsed).max().unwrap(),
        reads.len(),
        ready.elapsed
    );
}

#[tokio::test]
async fn a_replica_killed_mid_load_and_restarted_loses_no_accepted_write() {
    let (_postgres, _vault, deployment) = deployment().await;
    let first = Replica::start(&deployment, 0).await;
    let second = Replica::start(&deployment, 0).await;
    let addresses = [first.address.clone(), second.address.clone()];
    let load = Load::start(&deployment, &addresses, 8, 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let port = first.kill().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _restarted = Replica::start(&deployment, port).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (writes, reads) = load.finish().await;

    assert_503_never_500(
        reads.iter().chain(writes.iter().map(|(_, a)| a)),
        "replica killed",
    );
    let events = sqlx::postgres::PgPool::connect(&deployment.database_url)
        .await
        .unwrap();
    let unknown = assert_writes_kept_exactly(&events, &writes).await;
    assert_eq!(
        unknown, 0,
        "every write cut by the kill was answered when retried with its key"
    );
    let lost_answers = writes
        .iter()
        .filter(|(_, a)| applied_answer_lost(a))
        .count();
    let after_restart = writes
        .iter()
        .filter(|(name, a)| a.status == Some(StatusCode::OK) && name.starts_with("w0-"))
        .count();
    assert!(
        after_restart > 0,
        "writes to the restarted replica's port succeed again"
    );
    assert_read_model_equals_log(&deployment).await;
    eprintln!(
        "replica killed: {} writes ({} applied with their answer lost, told so on retry), {} reads; answers: {}",
        writes.len(),
        lost_answers,
        reads.len(),
        tally(writes.iter().map(|(_, a)| a).chain(&reads))
    );
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed_and_cannot_lock_out_a_client() {
    let (_postgres, _vault, deployment) = deployment().await;
    let replica = Replica::start(&deployment, 0).await;
    let host = format!("127.0.0.1:{}", replica.port);

    // An unfinished header, trickled a byte at a time, is cut at the header timeout.
    let mut trickle = TcpStream::connect(&host).await.unwrap();
    let started = Instant::now();
    let closed_at = async {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " {
            if trickle.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut buffer = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(10), trickle.read(&mut buffer)).await;
        started.elapsed()
    }
    .await;
    assert!(
        closed_at < Duration::from_millis(1_000) + SLACK,
        "header trickle held {closed_at:?}"
    );

    // A body that stops halfway closes the connection without an answer.
    let mut slow_body = TcpStream::connect(&host).await.unwrap();
    let token = deployment.token("fault-admin", Role::Admin);
    slow_body
        .write_all(
            format!(
                "POST /ai/llm HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut buffer = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), slow_body.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "a stalled body was held for 10 s");
    assert!(started.elapsed() < Duration::from_millis(1_000) + SLACK);
    assert!(
        buffer.is_empty(),
        "no answer to a stalled body: {}",
        String::from_utf8_lossy(&buffer)
    );

    // Twice the connection cap of idle connections: a client with a request still gets in, at
    // once, and the idle ones are closed.
    let mut idle = Vec::new();
    for _ in 0..128 {
        if let Ok(stream) = TcpStream::connect(&host).await {
            idle.push(stream);
        }
    }
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let health = call(
            &client,
            Method::GET,
            &format!("{}/healthz", replica.address),
            "",
            None,
        )
        .await;
        assert_eq!(health.status, Some(StatusCode::OK));
        assert!(
            health.elapsed < Duration::from_millis(500),
            "{:?}",
            health.elapsed
        );
    }
    tokio::time::sleep(Duration::from_millis(1_000) + SLACK).await;
    let mut still_open = 0;
    for stream in &mut idle {
        let mut buffer = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(10), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            _ => still_open += 1,
        }
    }
    assert_eq!(
        still_open, 0,
        "idle connections without a request are closed"
    );
    eprintln!("header trickle cut after {closed_at:?}; 128 idle connections closed");
}

/// What clients saw while a dependency was frozen (SIGSTOP) for 4 s under load.
struct WhileFrozen {
    writes: Vec<(String, Answer)>,
    reads: Vec<Answer>,
    ready: Answer,
    healthy: Answer,
}

/// Freezes a dependency, loads the replica for 4 s, probes it, and resumes the dependency.
async fn under_load_while_frozen(
    deployment: &Deployment,
    replica: &Replica,
    freeze: impl FnOnce() -> Vec<u32>,
    resume: impl FnOnce(&[u32]),
) -> WhileFrozen {
    let client = reqwest::Client::new();
    let frozen = freeze();
    let load = Load::start(deployment, std::slice::from_ref(&replica.address), 4, 4);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let probe = |path: &str| {
        let url = format!("{}{path}", replica.address);
        let client = client.clone();
        async move { call(&client, Method::GET, &url, "", None).await }
    };
    let ready = probe("/readyz").await;
    let healthy = probe("/healthz").await;
    let (writes, reads) = load.finish().await;
    resume(&frozen);
    WhileFrozen {
        writes,
        reads,
        ready,
        healthy,
    }
}

/// How long after a dependency came back a write succeeds again; at most 10 s.
async fn recover(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    deployment: &Deployment,
    name: &str,
) -> Duration {
    let resumed = Instant::now();
    loop {
        let body = credential(deployment, name);
        let answer = call(client, Method::POST, url, token, Some(body)).await;
        match answer.status {
            Some(StatusCode::OK) => return resumed.elapsed(),
            Some(StatusCode::SERVICE_UNAVAILABLE)
                if resumed.elapsed() < Duration::from_secs(10) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => panic!(
                "{other:?} {} s after the dependency resumed: {}",
                resumed.elapsed().as_secs(),
                answer.body
            ),
        }
    }
}

fn tally<'a>(answers: impl IntoIterator<Item = &'a Answer>) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for answer in answers {
        let key = answer
            .status
            .map_or("no answer".to_owned(), |status| status.as_u16().to_string());
        *counts.entry(key).or_insert(0) += 1;
    }
    format!("{counts:?}")
}
