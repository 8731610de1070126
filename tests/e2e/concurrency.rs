//! Concurrent writers on one aggregate: they wait their turn within a replica, lost races
//! between replicas are retried, and nothing is refused or lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aimc_api::Role;
use aimc_domain::AiModelConfig;
use aimc_store::SnapshotEventStore;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_writers_over_three_replicas_wait_their_turn_and_none_is_refused_or_lost() {
    const WRITERS: usize = 64;
    const WRITES_EACH: usize = 20;
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    let first = spawn_replica(&app).await;
    let second = spawn_replica(&app).await;
    let instances = Arc::new([app, first, second]);
    let prompt = |writer: usize, write: usize| format!("writer-{writer}-{write}");

    // Each writer waits for its answer before sending its next change, as a client would.
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (instances, token) = (instances.clone(), token.clone());
            tokio::spawn(async move {
                let instance = &instances[writer % instances.len()];
                let mut answered = Vec::with_capacity(WRITES_EACH);
                for write in 0..WRITES_EACH {
                    let sent = Instant::now();
                    let response = instance
                        .put(
                            "/api/v1/update/ai-model-config",
                            &token,
                            json!({"models": seed_000_models_keeping_keys(),
                                   "system_prompt": prompt(writer, write)}),
                        )
                        .await;
                    answered.push((prompt(writer, write), sent.elapsed(), response));
                }
                answered
            })
        })
        .collect();
    let mut answered = Vec::with_capacity(WRITERS * WRITES_EACH);
    for writer in writers {
        answered.extend(writer.await.unwrap());
    }
    let total = started.elapsed();

    let mut latencies: Vec<Duration> = answered.iter().map(|(_, latency, _)| *latency).collect();
    latencies.sort();
    let percentile = |p: usize| latencies[(latencies.len() * p).div_ceil(100) - 1];
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for (_, _, response) in &answered {
        *statuses.entry(response.status.as_u16()).or_default() += 1;
    }
    eprintln!(
        "{} PUTs of one configuration by {WRITERS} writers over 3 replicas in {:.2} s: \
         p50 {:?}, p99 {:?}, max {:?}; statuses {statuses:?}; {} races lost between replicas \
         and retried",
        answered.len(),
        total.as_secs_f64(),
        percentile(50),
        percentile(99),
        latencies.last().unwrap(),
        captured_log_text()
            .matches("concurrent write; retrying")
            .count(),
    );
    assert_eq!(
        statuses,
        BTreeMap::from([(200, WRITERS * WRITES_EACH)]),
        "every write is accepted: none refused as a conflict, none cut short"
    );

    // Every accepted write is in the log exactly once, and each writer's in the order it made
    // them: a write answered before the next was sent comes first.
    let app = &instances[0];
    let logged: Vec<String> = sqlx::query_scalar(
        "SELECT (payload::jsonb)->'SystemPromptChanged'->>'system_prompt' FROM events
          WHERE aggregate_id = $1 AND event_type = 'SystemPromptChanged' ORDER BY sequence",
    )
    .bind(app.aggregate_id("alice"))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        logged.len(),
        1 + WRITERS * WRITES_EACH,
        "the create's and one per write"
    );
    let position: HashMap<&str, usize> = logged
        .iter()
        .enumerate()
        .map(|(at, prompt)| (prompt.as_str(), at))
        .collect();
    assert_eq!(position.len(), logged.len(), "a write was recorded twice");
    for writer in 0..WRITERS {
        let order: Vec<usize> = (0..WRITES_EACH)
            .map(|write| {
                *position
                    .get(prompt(writer, write).as_str())
                    .unwrap_or_else(|| panic!("{} was lost", prompt(writer, write)))
            })
            .collect();
        assert!(
            order.windows(2).all(|pair| pair[0] < pair[1]),
            "writer {writer}: {order:?}"
        );
    }
    let last: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence DESC LIMIT 1",
    )
    .bind(app.aggregate_id("alice"))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(last, ["SystemPromptChanged"]);

    // Every replica reads the state the last recorded event left, as its writer was answered.
    let (_, _, last_write) = answered
        .iter()
        .find(|(prompt, _, _)| prompt == logged.last().unwrap())
        .unwrap();
    for instance in instances.iter() {
        let read = instance.get("/api/v1/get/ai-model-config", &token).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text);
        assert_eq!(read.body, last_write.body);
        assert_eq!(
            read.body["system_prompt"],
            Value::from(logged.last().unwrap().as_str())
        );
    }
    app.assert_no_plain_key_anywhere().await;
}

/// Rounds of twenty updates at most: on a loaded machine one replica can take all its turns
/// before the other begins, so a round may see no collision; one that does is what counts.
const COLLIDING_ROUNDS: usize = 4;

#[tokio::test]
async fn twenty_concurrent_updates_of_one_configuration_all_land() {
    let app = spawn_app().await;
    let replica = spawn_replica(&app).await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;

    let mut rounds = 0;
    while rounds < COLLIDING_ROUNDS {
        rounds += 1;
        let updates = (0..20).map(|n| {
            let (instance, token) = (if n % 2 == 0 { &app } else { &replica }, token.clone());
            async move {
                instance
                    .put(
                        "/api/v1/update/ai-model-config",
                        &token,
                        json!({"models": seed_000_models_keeping_keys(), "system_prompt": format!("prompt from writer {n} in round {rounds}")}),
                    )
                    .await
            }
        });
        let responses = futures::future::join_all(updates).await;
        for response in &responses {
            assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        }
        if captured_log_text().contains("concurrent write; retrying") {
            break;
        }
    }
    assert!(
        captured_log_text().contains("concurrent write; retrying"),
        "the writers never collided in {rounds} rounds, so this proved nothing about conflicts"
    );
    // Every accepted update is in the log, exactly once.
    let prompts: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT (payload::jsonb)->'SystemPromptChanged'->'system_prompt' FROM events
          WHERE aggregate_id = $1 AND event_type = 'SystemPromptChanged' ORDER BY sequence",
    )
    .bind(app.aggregate_id("alice"))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let updates = 20 * rounds;
    assert_eq!(
        prompts.len(),
        1 + updates,
        "the create's prompt and one per update"
    );
    for round in 1..=rounds {
        for n in 0..20 {
            assert!(
                prompts.contains(&json!(format!("prompt from writer {n} in round {round}"))),
                "writer {n} of round {round} lost"
            );
        }
    }
    // The audit trail lists them newest first, in the order they were appended.
    let history = app
        .get("/api/v1/history?type=SystemPromptChanged&limit=100", &token)
        .await;
    let sequences: Vec<i64> = history.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences.len(), 1 + updates);
    assert!(
        sequences.windows(2).all(|pair| pair[0] > pair[1]),
        "{sequences:?}"
    );
    // The read model shows the last one applied, and agrees with the log.
    let read = app.get("/api/v1/get/ai-model-config", &token).await;
    assert_eq!(read.body["system_prompt"], prompts.last().unwrap().clone());
    let store = SnapshotEventStore::<AiModelConfig>::new(app.pool.clone(), 20);
    let (replayed, sequence) = store
        .replay_from_scratch(&app.aggregate_id("alice"))
        .await
        .unwrap();
    let (loaded, loaded_sequence) = store.load(&app.aggregate_id("alice")).await.unwrap();
    assert_eq!((loaded, loaded_sequence), (replayed, sequence));
    app.assert_no_plain_key_anywhere().await;
}

/// Reads arriving together share one query; each must still get its own configuration, and a
/// read made after a write was answered must see it, on either replica.
#[tokio::test]
async fn concurrent_reads_of_many_users_each_get_their_own_and_see_answered_writes() {
    let app = spawn_app().await;
    let replica = spawn_replica(&app).await;
    let users: Vec<(String, String)> = (0..12)
        .map(|n| {
            let sub = format!("reader-{n}");
            let token = app.token(&sub, Role::Member);
            (sub, token)
        })
        .collect();
    for (sub, token) in &users {
        let created = app
            .post(
                "/api/v1/create/ai-model-config",
                token,
                json!({"models": [], "system_prompt": format!("prompt of {sub}")}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    }
    let nobody = app.token("reader-without-config", Role::Member);

    let reads = (0..240).map(|n| {
        let instance = if n % 2 == 0 { &app } else { &replica };
        let (sub, token) = users
            .get(n % (users.len() + 1))
            .map_or((None, nobody.clone()), |(sub, token)| {
                (Some(sub.clone()), token.clone())
            });
        async move {
            let response = instance.get("/api/v1/get/ai-model-config", &token).await;
            (sub, response)
        }
    });
    for (sub, response) in futures::future::join_all(reads).await {
        match sub {
            Some(sub) => {
                assert_eq!(response.status, StatusCode::OK, "{}", response.text);
                assert_eq!(response.body["system_prompt"], format!("prompt of {sub}"));
            }
            None => assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.text),
        }
    }

    // Each write answered, then read at once on the other replica amid other reads.
    for (round, (sub, token)) in users.iter().enumerate() {
        let prompt = format!("round {round} for {sub}");
        let written = app
            .put(
                "/api/v1/update/ai-model-config",
                token,
                json!({"models": [], "system_prompt": prompt}),
            )
            .await;
        assert_eq!(written.status, StatusCode::OK, "{}", written.text);
        let noise = users
            .iter()
            .map(|(_, other)| replica.get("/api/v1/get/ai-model-config", other));
        let (read, _) = tokio::join!(
            replica.get("/api/v1/get/ai-model-config", token),
            futures::future::join_all(noise)
        );
        assert_eq!(read.body["system_prompt"], prompt);
    }
}

#[tokio::test]
async fn writers_of_different_credentials_in_one_workspace_neither_wait_for_nor_retry_each_other() {
    let app = spawn_app().await;
    let replica = spawn_replica(&app).await;
    let admin = app.token("ada", Role::Admin);
    let writers = 16;
    let secret = |n: usize| format!("sk-proj-parallel-writer-{n:04}");
    let request_id = |n: usize| format!("parallel-writer-{}-{n}", app.workspace);

    let responses = futures::future::join_all((0..writers).map(|n| {
        app.remember_secret(&secret(n));
        let instance = if n % 2 == 0 { &app } else { &replica };
        let body = json!({"name": format!("writer {n}"), "aiType": "OPENAI",
                          "endpoint": "https://api.openai.com/v1", "secret": secret(n),
                          "workspaceId": app.workspace});
        instance.request_with(reqwest::Method::POST, "/ai/llm", Some(&admin), move |r| {
            r.header("X-Request-Id", request_id(n)).json(&body)
        })
    }))
    .await;

    for response in &responses {
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    }
    // Each configuration is a stream of its own: no writer lost a race to another.
    let retried: Vec<String> = captured_log_text()
        .lines()
        .filter(|line| line.contains("concurrent write; retrying"))
        .filter(|line| line.contains(&format!("parallel-writer-{}-", app.workspace)))
        .map(str::to_owned)
        .collect();
    assert!(retried.is_empty(), "{retried:?}");
    let listed = app
        .get(&format!("/ai/llm?workspaceId={}", app.workspace), &admin)
        .await;
    assert_eq!(listed.body["aiLlms"].as_array().unwrap().len(), writers);
    app.assert_no_plain_key_anywhere().await;
}

/// A replica starts each command from the configuration as its own last write left it, without
/// reading it again; the scenarios below are the ways another replica's write makes that
/// stale, and in each the command acts on the configuration as stored.
async fn put_prompt(app: &TestApp, token: &str, prompt: &str) -> TestResponse {
    let response = app
        .put(
            "/api/v1/update/ai-model-config",
            token,
            json!({"models": seed_000_models_keeping_keys(), "system_prompt": prompt}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    response
}

/// The log of `user`'s configuration: (sequence, event type).
async fn log_of(app: &TestApp, user: &str) -> Vec<(i64, String)> {
    sqlx::query_as(
        "SELECT sequence, event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(app.aggregate_id(user))
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// Commands of both instances (they share the test's process and its metrics) that started
/// from a parked configuration, by outcome.
async fn parked_starts(app: &TestApp, outcome: &str) -> f64 {
    app.counted(
        "aimc_command_parked_starts_total",
        &format!("aggregate=\"AiModelConfig\",outcome=\"{outcome}\""),
    )
    .await
}

#[tokio::test]
async fn a_change_its_replica_last_wrote_is_made_again_after_another_replica_undid_it() {
    let app = spawn_app().await;
    let replica = spawn_replica(&app).await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    put_prompt(&app, &token, "one").await;
    put_prompt(&replica, &token, "two").await;

    // As `app` last wrote it, the prompt is "one" already: nothing to change, were that current.
    let answered = put_prompt(&app, &token, "one").await;

    assert_eq!(answered.body["system_prompt"], "one");
    for instance in [&app, &replica] {
        let read = instance.get("/api/v1/get/ai-model-config", &token).await;
        assert_eq!(read.body["system_prompt"], "one", "{}", read.text);
    }
    let prompts = log_of(&app, "alice")
        .await
        .into_iter()
        .filter(|(_, event)| event == "SystemPromptChanged")
        .count();
    assert_eq!(prompts, 4, "the create's, one, two, and one again");
}

#[tokio::test]
async fn a_command_from_a_configuration_another_replica_changed_since_keeps_that_change() {
    let app = spawn_app().await;
    let replica = spawn_replica(&app).await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    put_prompt(&app, &token, "one").await;
    let new_key = "sk-proj-replica-0123456789-wxyz";
    app.remember_secret(new_key);
    let replaced = replica
        .put(
            "/api/user/api-keys",
            &token,
            json!({"openai": {"apiKey": new_key, "modelId": "gpt-4"}}),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    let (conflicts, stale) = (
        app.counted("aimc_command_conflicts_total", "").await,
        parked_starts(&app, "stale").await,
    );

    // Starting from its own last write, `app` takes the sequence `replica` took: its append
    // fails, and it changes the configuration from the stream as stored.
    let answered = put_prompt(&app, &token, "three").await;

    assert_eq!(answered.body["system_prompt"], "three");
    assert_eq!(
        answered.body["models"][0]["keyHint"], "sk-...wxyz",
        "{}",
        answered.text
    );
    let read = replica.get("/api/v1/get/ai-model-config", &token).await;
    assert_eq!(read.body, answered.body);
    assert_eq!(parked_starts(&app, "stale").await, stale + 1.0);
    assert_eq!(
        app.counted("aimc_command_conflicts_total", "").await,
        conflicts,
        "a stale start is no race to retry: the other write was committed"
    );
    let log = log_of(&app, "alice").await;
    let sequences: Vec<i64> = log.iter().map(|(sequence, _)| *sequence).collect();
    assert_eq!(sequences, (1..=log.len() as i64).collect::<Vec<_>>());
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_configuration_written_by_turns_on_two_replicas_is_read_before_each_write_until_one_replica_keeps_it(
) {
    let app = spawn_app().await;
    let replica = spawn_replica(&app).await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;

    // As a load balancer spreading one user's requests would send them.
    for round in 0..10 {
        let instance = if round % 2 == 0 { &replica } else { &app };
        put_prompt(instance, &token, &format!("round {round}")).await;
    }

    // Each replica started from its parked configuration once, found it stale, and read the
    // stream before every later write instead of losing again.
    assert_eq!(parked_starts(&app, "stale").await, 2.0);
    let current = parked_starts(&app, "current").await;
    // `app` wrote last: its next three writes read the stream and find it as `app` parked it;
    // then it trusts what it parks again, and the three after start from there.
    for write in 0..6 {
        put_prompt(&app, &token, &format!("app alone {write}")).await;
    }
    assert_eq!(parked_starts(&app, "current").await, current + 3.0);
    assert_eq!(parked_starts(&app, "stale").await, 2.0);
    let read = replica.get("/api/v1/get/ai-model-config", &token).await;
    assert_eq!(read.body["system_prompt"], "app alone 5");
}

#[tokio::test]
async fn a_command_from_a_parked_configuration_that_loses_a_name_to_another_writer_is_retried() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    let save = async |provider: &str, key: &str| {
        app.remember_secret(key);
        app.post(
            &format!("/api/v1/settings/providers/{provider}"),
            &admin,
            json!({"api_key": key}),
        )
        .await
    };
    // The workspace's configuration, parked by its first save.
    assert_eq!(
        save("openai", "sk-proj-parked-first-0001").await.status,
        StatusCode::OK
    );
    let before = (
        app.counted("aimc_command_conflicts_total", "").await,
        parked_starts(&app, "current").await,
        parked_starts(&app, "stale").await,
    );
    // Another writer claims the name the next save will give its key, and has not committed:
    // the save's decision finds the name free, and its statement waits on the claim.
    let mut claim = app.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO credential_names (workspace_id, name_key, credential_id)
         VALUES ($1, 'anthropic key', $2)",
    )
    .bind(&app.workspace)
    .bind(uuid::Uuid::new_v4())
    .execute(&mut *claim)
    .await
    .unwrap();

    let (saved, ()) = tokio::join!(save("anthropic", "sk-ant-parked-second-0002"), async {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&app.pool)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        claim.commit().await.unwrap();
    });

    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    // The configuration was as parked: the race was on the name, retried as any lost race, and
    // the retry started from the parked configuration again.
    assert_eq!(
        (
            app.counted("aimc_command_conflicts_total", "").await,
            parked_starts(&app, "current").await,
            parked_starts(&app, "stale").await,
        ),
        (before.0 + 1.0, before.1 + 1.0, before.2)
    );
    let named: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM credential_view WHERE workspace_id = $1 AND provider = 'anthropic'",
    )
    .bind(&app.workspace)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(named.len(), 1, "{named:?}");
    assert!(named[0].starts_with("Anthropic key ("), "{named:?}");
    app.assert_no_plain_key_anywhere().await;
}
