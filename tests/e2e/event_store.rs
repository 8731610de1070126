//! The event log, snapshots and the read model's catch-up.

use std::collections::BTreeMap;

use aimc_api::Role;
use aimc_domain::{AiModelConfig, CredentialAggregate};
use aimc_store::{Projector, SnapshotEventStore};
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::fake_provider::FakeProvider;
use crate::harness::*;

async fn put_prompt_and_models(app: &TestApp, token: &str, round: usize) {
    let key = app
        .encrypt_key(token, &format!("sk-round-{round:04}-abcdefghijkl"))
        .await;
    let response = app
        .put(
            "/api/v1/update/ai-model-config",
            token,
            json!({"models": [
                {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": key, "isPaid": round.is_multiple_of(2)},
                {"provider": "Ollama", "type": "chat", "model": format!("llama{}", round % 3), "isPaid": false}
            ], "system_prompt": format!("round {round}")}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
}

#[tokio::test]
async fn an_aggregate_loaded_from_its_snapshot_equals_the_one_replayed_from_all_events() {
    let app = spawn_app_with(|settings| settings.snapshot_every = 7).await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    let id = app.aggregate_id("alice");
    let store = SnapshotEventStore::<AiModelConfig>::new(app.pool.clone(), 7);

    for round in 0..12 {
        put_prompt_and_models(&app, &token, round).await;
        let (replayed, sequence) = store.replay_from_scratch(&id).await.unwrap();
        let (loaded, loaded_sequence) = store.load(&id).await.unwrap();
        assert_eq!(loaded_sequence, sequence, "round {round}");
        assert_eq!(
            loaded, replayed,
            "round {round}: snapshot plus newer events must equal a full replay"
        );
    }
    let snapshot_at: i64 =
        sqlx::query_scalar("SELECT last_sequence FROM aggregate_snapshots WHERE aggregate_id = $1")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let last: i64 = sqlx::query_scalar("SELECT max(sequence) FROM events WHERE aggregate_id = $1")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        snapshot_at > 7 && last - snapshot_at < 7 + 6,
        "snapshot at {snapshot_at}, log at {last}"
    );
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn the_read_model_catches_up_on_start_with_events_it_missed() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    put_prompt_and_models(&app, &token, 1).await;
    let before = app.get("/api/v1/get/ai-model-config", &token).await.body;
    let history_before = app.get("/api/v1/history", &token).await.body["events"]
        .as_array()
        .unwrap()
        .len();

    // As if the process had died after appending and before projecting: the read model knows
    // nothing of the last events.
    sqlx::query("DELETE FROM audit_log WHERE sequence > 3")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM config_view")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE projection_offsets SET last_sequence = CASE WHEN projection = 'audit_log' THEN 3 ELSE 0 END")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        app.get("/api/v1/get/ai-model-config", &token).await.status,
        StatusCode::NOT_FOUND
    );

    // What `aimc projections status` shows an operator: each view's events behind.
    let projector = Projector::new(app.pool.clone());
    let lagging = projector.status().await.unwrap();
    let behind = |status: &aimc_store::LogStatus, view: &str| {
        let view = status.views.iter().find(|v| v.view == view).unwrap();
        (view.lag_events, view.lagging_streams)
    };
    let events = lagging.events;
    assert_eq!(behind(&lagging, "config_view"), (events, 1));
    assert_eq!(behind(&lagging, "audit_log"), (events - 3, 1));
    assert!(lagging
        .views
        .iter()
        .all(|v| v.lag_events == 0 || v.lag_seconds >= 0.0));

    let restarted = spawn_replica(&app).await;

    assert_eq!(
        restarted
            .get("/api/v1/get/ai-model-config", &token)
            .await
            .body,
        before
    );
    let caught_up = projector.status().await.unwrap();
    assert!(caught_up
        .views
        .iter()
        .all(|v| v.lag_events == 0 && v.applied_events == events));
    let history = restarted.get("/api/v1/history", &token).await.body;
    assert_eq!(history["events"].as_array().unwrap().len(), history_before);
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_write_whose_projection_fails_records_nothing_and_can_be_sent_again() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    let events_before = app.event_types(&app.aggregate_id("alice")).await;
    sqlx::query("ALTER TABLE config_view RENAME TO config_view_away")
        .execute(&app.pool)
        .await
        .unwrap();
    let update = json!({"models": seed_000_models_keeping_keys(), "system_prompt": "recorded"});

    let refused = app
        .put("/api/v1/update/ai-model-config", &token, update.clone())
        .await;

    // The events and the rows they produce commit together: with a view that cannot be
    // written, the command is not recorded at all.
    assert_eq!(
        refused.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        refused.text
    );
    assert_eq!(
        app.event_types(&app.aggregate_id("alice")).await,
        events_before
    );
    sqlx::query("ALTER TABLE config_view_away RENAME TO config_view")
        .execute(&app.pool)
        .await
        .unwrap();
    let resent = app
        .put("/api/v1/update/ai-model-config", &token, update)
        .await;
    assert_eq!(resent.status, StatusCode::OK, "{}", resent.text);
    assert_eq!(
        app.get("/api/v1/get/ai-model-config", &token).await.body["system_prompt"],
        "recorded"
    );
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn claims_that_no_credential_took_are_freed_after_a_while_and_real_names_are_kept() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    app.remember_secret("sk-kept-name-key-00000000001");
    let created = app
        .post(
            "/ai/llm",
            &admin,
            json!({"name": "Kept", "aiType": "OPENAI", "endpoint": "https://api.openai.com/v1",
                   "secret": "sk-kept-name-key-00000000001", "workspaceId": app.workspace}),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK);
    // As if a request had claimed "Abandoned" and died before appending anything.
    sqlx::query("INSERT INTO credential_names (workspace_id, name_key, credential_id, claimed_at) VALUES ($1, 'abandoned', gen_random_uuid(), now() - interval '1 hour')")
        .bind(&app.workspace)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE credential_names SET claimed_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();

    let released = aimc_store::Projector::new(app.pool.clone())
        .release_abandoned_names()
        .await
        .unwrap();

    assert_eq!(released, 1);
    let names: Vec<String> = sqlx::query_scalar("SELECT name_key FROM credential_names")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(names, ["kept"]);
    app.assert_no_plain_key_anywhere().await;
}

/// The key the fake provider accepts, so validating a credential succeeds.
const PROVIDER_KEY: &str = "sk-rebuild-provider-key-000000001";

/// A workspace's family B configuration pointing at `provider`; returns its id.
async fn add_llm(
    app: &TestApp,
    admin: &str,
    workspace: &str,
    name: &str,
    provider: &FakeProvider,
) -> String {
    app.remember_secret(PROVIDER_KEY);
    let created = app
        .post(
            "/ai/llm",
            admin,
            json!({"name": name, "aiType": "OPENAI", "endpoint": format!("{}/v1", provider.address),
                   "secret": PROVIDER_KEY, "workspaceId": workspace}),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    created.body["aiLlmId"].as_str().unwrap().to_owned()
}

/// History in which a workspace's aggregates take turns (alice's, bob's and the workspace's
/// own), with credentials added, renamed, validated, removed and a name reused.
async fn interleaved_history(app: &TestApp, workspace: &str, provider: &FakeProvider) {
    let alice = app.token_for("alice", &[(workspace, Role::Member)], None);
    let bob = app.token_for("bob", &[(workspace, Role::Member)], None);
    let admin = app.token_for("ada", &[(workspace, Role::Admin)], None);
    create_seed_config(app, &alice).await;
    let kept = add_llm(app, &admin, workspace, "Kept", provider).await;
    create_seed_config(app, &bob).await;
    let dropped = add_llm(app, &admin, workspace, "Dropped", provider).await;
    for round in 0..3 {
        put_prompt_and_models(app, &alice, round).await;
        let renamed = app
            .put(
                &format!("/ai/llm/{kept}"),
                &admin,
                json!({"name": format!("Kept {round}")}),
            )
            .await;
        assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
        put_prompt_and_models(app, &bob, round + 10).await;
    }
    let validated = app
        .request(
            Method::POST,
            &format!("/ai/llm/{kept}/validate"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(validated.body["success"], true, "{}", validated.text);
    let removed = app
        .request(
            Method::DELETE,
            &format!("/ai/llm/{dropped}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text);
    put_prompt_and_models(app, &alice, 7).await;
    add_llm(app, &admin, workspace, "Dropped", provider).await;
}

/// Every row of the read model, table by table in a stable order. Audit positions are left
/// out unless asked for: only a rebuild hands them out in time order. So are the times names
/// were claimed: replaying a rename frees and claims names again, as catch-up always did.
async fn read_model(pool: &PgPool, with_positions: bool) -> BTreeMap<&'static str, Value> {
    let audit_log = if with_positions {
        "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY aggregate_id, sequence), '[]') FROM audit_log t"
    } else {
        "SELECT coalesce(jsonb_agg(to_jsonb(t) - 'position' ORDER BY aggregate_id, sequence), '[]') FROM audit_log t"
    };
    let queries = [
        ("audit_log", audit_log),
        ("audit_positions", "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY workspace_id), '[]') FROM audit_positions t"),
        ("config_view", "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY aggregate_id), '[]') FROM config_view t"),
        ("credential_names", "SELECT coalesce(jsonb_agg(to_jsonb(t) - 'claimed_at' ORDER BY workspace_id, name_key), '[]') FROM credential_names t"),
        ("credential_view", "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY credential_id), '[]') FROM credential_view t"),
        ("projection_offsets", "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY projection, aggregate_id), '[]') FROM projection_offsets t"),
    ];
    let mut tables = BTreeMap::new();
    for (table, query) in queries {
        let rows: Value = sqlx::query_scalar(query).fetch_one(pool).await.unwrap();
        tables.insert(table, rows);
    }
    tables
}

/// Table by table, naming the first row that differs: the whole model is too long to read.
fn assert_same_read_model(
    actual: &BTreeMap<&'static str, Value>,
    expected: &BTreeMap<&'static str, Value>,
    context: &str,
) {
    for (table, rows) in expected {
        let (actual_rows, rows) = (actual[table].as_array().unwrap(), rows.as_array().unwrap());
        for (index, (actual_row, row)) in actual_rows.iter().zip(rows).enumerate() {
            assert_eq!(actual_row, row, "{context}: {table}, row {index}");
        }
        assert_eq!(actual_rows.len(), rows.len(), "{context}: rows in {table}");
    }
}

/// The workspace's history as a newest-first reader pages it: by position, which must run
/// 1, 2, ... with time, each aggregate's events in sequence order.
async fn assert_history_in_time_order(pool: &PgPool, workspace: &str) -> Vec<String> {
    let entries: Vec<(i64, DateTime<Utc>, String, i64)> = sqlx::query_as(
        "SELECT position, occurred_at, aggregate_id, sequence FROM audit_log
          WHERE workspace_id = $1 ORDER BY position",
    )
    .bind(workspace)
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(!entries.is_empty());
    let mut last_sequences = BTreeMap::new();
    for (index, (position, _, aggregate_id, sequence)) in entries.iter().enumerate() {
        assert_eq!(*position, index as i64 + 1, "positions have no gaps");
        let previous = last_sequences.insert(aggregate_id.clone(), *sequence);
        assert!(
            previous < Some(*sequence),
            "{aggregate_id} {sequence} after {previous:?}"
        );
    }
    for pair in entries.windows(2) {
        assert!(
            pair[0].1 <= pair[1].1,
            "position {} is older than position {}",
            pair[1].0,
            pair[0].0
        );
    }
    entries
        .into_iter()
        .map(|(.., aggregate_id, _)| aggregate_id)
        .collect()
}

#[tokio::test]
async fn rebuilding_the_read_model_from_the_log_gives_back_the_same_reads() {
    let provider = FakeProvider::start(PROVIDER_KEY).await;
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    let admin = app.token("ada", Role::Admin);
    interleaved_history(&app, &app.workspace, &provider).await;
    app.remember_secret("sk-ant-rebuild-key-000000000077");
    app.post(
        "/api/v1/settings/providers/anthropic",
        &admin,
        json!({"api_key": "sk-ant-rebuild-key-000000000077"}),
    )
    .await;
    let reads = [
        "/api/v1/get/ai-model-config",
        "/api/v1/history?limit=500",
        "/api/keys",
    ];
    let mut before = Vec::new();
    for path in reads {
        before.push(app.get(path, &token).await.body);
    }
    let workspace_before = app
        .get(&format!("/ai/llm?workspaceId={}", app.workspace), &admin)
        .await
        .body;
    let tables_before = read_model(&app.pool, false).await;

    let replayed = Projector::new(app.pool.clone()).rebuild().await.unwrap();

    let events = app.event_count().await as usize;
    assert_eq!(replayed, events);
    for (path, expected) in reads.iter().zip(before) {
        let mut after = app.get(path, &token).await.body;
        let mut expected = expected;
        if path.contains("history") {
            // Audit positions are renumbered by the replay; everything else must match.
            for entry in after["events"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .chain(expected["events"].as_array_mut().unwrap())
            {
                entry.as_object_mut().unwrap().remove("position");
            }
        }
        assert_eq!(after, expected, "{path}");
    }
    assert_eq!(
        app.get(&format!("/ai/llm?workspaceId={}", app.workspace), &admin)
            .await
            .body,
        workspace_before
    );
    assert_same_read_model(
        &read_model(&app.pool, false).await,
        &tables_before,
        "rebuilt",
    );
    let order = assert_history_in_time_order(&app.pool, &app.workspace).await;
    let switches = order.windows(2).filter(|pair| pair[0] != pair[1]).count();
    assert!(
        switches > 6,
        "the aggregates' entries interleave, not one aggregate after another: {order:?}"
    );

    // A command after the rebuild is projected from the stored offsets and positions.
    let last_position: i64 =
        sqlx::query_scalar("SELECT last_position FROM audit_positions WHERE workspace_id = $1")
            .bind(&app.workspace)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let last_sequence = app.event_types(&app.aggregate_id("alice")).await.len() as i64;
    put_prompt_and_models(&app, &token, 42).await;
    let appended: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT sequence, position FROM audit_log WHERE aggregate_id = $1 AND sequence > $2 ORDER BY sequence",
    )
    .bind(app.aggregate_id("alice"))
    .bind(last_sequence)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(!appended.is_empty());
    for (index, (sequence, position)) in appended.iter().enumerate() {
        assert_eq!(*sequence, last_sequence + 1 + index as i64);
        assert_eq!(*position, last_position + 1 + index as i64);
    }
    let offsets: Vec<i64> =
        sqlx::query_scalar("SELECT last_sequence FROM projection_offsets WHERE aggregate_id = $1")
            .bind(app.aggregate_id("alice"))
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(offsets, vec![last_sequence + appended.len() as i64; 3]);
    assert_eq!(
        app.get("/api/v1/get/ai-model-config", &token).await.body["system_prompt"],
        "round 42"
    );
    assert_eq!(
        Projector::new(app.pool.clone())
            .catch_up_all()
            .await
            .unwrap(),
        0
    );
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_rebuild_in_chunks_smaller_than_a_workspace_gives_the_same_read_model_as_one_chunk() {
    let provider = FakeProvider::start(PROVIDER_KEY).await;
    let app = spawn_app().await;
    let second = format!("{}-2", app.workspace);
    interleaved_history(&app, &app.workspace, &provider).await;
    interleaved_history(&app, &second, &provider).await;
    let events = app.event_count().await as usize;
    let projector = Projector::new(app.pool.clone());

    assert_eq!(
        projector.rebuild_in_chunks(usize::MAX).await.unwrap(),
        events
    );
    let one_chunk = read_model(&app.pool, true).await;
    assert_history_in_time_order(&app.pool, &app.workspace).await;
    assert_history_in_time_order(&app.pool, &second).await;

    for chunk_events in [1, 2, 7, events / 2] {
        assert_eq!(
            projector.rebuild_in_chunks(chunk_events).await.unwrap(),
            events
        );
        assert_same_read_model(
            &read_model(&app.pool, true).await,
            &one_chunk,
            &format!("chunks of {chunk_events} events"),
        );
    }
    assert_eq!(projector.rebuild().await.unwrap(), events);
    assert_same_read_model(
        &read_model(&app.pool, true).await,
        &one_chunk,
        "default chunks",
    );
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_rebuild_orders_by_time_whatever_shape_the_times_have_or_a_clock_that_stepped_back() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    put_prompt_and_models(&app, &token, 1).await;
    put_prompt_and_models(&app, &token, 2).await;
    let bob = app.token("bob", Role::Member);
    create_seed_config(&app, &bob).await;
    let config_before = app.get("/api/v1/get/ai-model-config", &token).await.body;
    // As if the replica that appended alice's last command had its clock an hour behind.
    let last_command: String = sqlx::query_scalar(
        "SELECT metadata->>'request_id' FROM events WHERE aggregate_id = $1 ORDER BY sequence DESC LIMIT 1",
    )
    .bind(app.aggregate_id("alice"))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE events SET metadata = jsonb_set(metadata::jsonb, '{occurred_at}',
                to_jsonb(to_char(((metadata->>'occurred_at')::timestamptz - interval '1 hour') AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')))::json
          WHERE aggregate_id = $1 AND metadata->>'request_id' = $2",
    )
    .bind(app.aggregate_id("alice"))
    .bind(&last_command)
    .execute(&app.pool)
    .await
    .unwrap();
    // And bob's times as another writer might stamp them: the same instants, west of UTC,
    // which as text would sort before alice's.
    let bob_times: Vec<(i64, String)> = sqlx::query_as(
        "SELECT sequence, metadata->>'occurred_at' FROM events WHERE aggregate_id = $1",
    )
    .bind(app.aggregate_id("bob"))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let west = chrono::FixedOffset::west_opt(5 * 3600).unwrap();
    for (sequence, at) in &bob_times {
        let restamped = DateTime::parse_from_rfc3339(at)
            .unwrap()
            .with_timezone(&west)
            .to_rfc3339();
        sqlx::query(
            "UPDATE events SET metadata = jsonb_set(metadata::jsonb, '{occurred_at}', to_jsonb($3::text))::json
              WHERE aggregate_id = $1 AND sequence = $2",
        )
        .bind(app.aggregate_id("bob"))
        .bind(sequence)
        .bind(restamped)
        .execute(&app.pool)
        .await
        .unwrap();
    }

    Projector::new(app.pool.clone()).rebuild().await.unwrap();

    let alice: Vec<i64> = sqlx::query_scalar(
        "SELECT sequence FROM audit_log WHERE aggregate_id = $1 ORDER BY position",
    )
    .bind(app.aggregate_id("alice"))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(alice.windows(2).all(|pair| pair[0] < pair[1]), "{alice:?}");
    let owners: Vec<String> =
        sqlx::query_scalar("SELECT owner FROM audit_log WHERE workspace_id = $1 ORDER BY position")
            .bind(&app.workspace)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(
        owners[..owners.len() - bob_times.len()]
            .iter()
            .all(|owner| owner == "user:alice"),
        "bob's configuration was created last: {owners:?}"
    );
    assert_eq!(
        app.get("/api/v1/get/ai-model-config", &token).await.body,
        config_before
    );
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_rebuild_that_meets_an_unreadable_event_reports_it_and_leaves_the_live_read_model_as_it_was(
) {
    let app = spawn_app().await;
    let alice = app.token("alice", Role::Member);
    let bob = app.token("bob", Role::Member);
    create_seed_config(&app, &alice).await;
    create_seed_config(&app, &bob).await;
    put_prompt_and_models(&app, &alice, 1).await;
    let bob_before = app.get("/api/v1/get/ai-model-config", &bob).await.body;
    let unreadable: i64 = sqlx::query_scalar(
        "UPDATE events SET payload = '{\"NoSuchEvent\": {}}'
          WHERE aggregate_id = $1 AND sequence = (SELECT max(sequence) - 1 FROM events WHERE aggregate_id = $1)
          RETURNING sequence",
    )
    .bind(app.aggregate_id("alice"))
    .fetch_one(&app.pool)
    .await
    .unwrap();

    let rebuilt = Projector::new(app.pool.clone()).rebuild().await;

    assert!(rebuilt.is_err(), "{rebuilt:?}");
    assert_eq!(
        app.get("/api/v1/get/ai-model-config", &bob).await.body,
        bob_before
    );
    // The fresh tables were thrown away: the live ones still hold every event.
    let offsets: Vec<i64> =
        sqlx::query_scalar("SELECT last_sequence FROM projection_offsets WHERE aggregate_id = $1")
            .bind(app.aggregate_id("alice"))
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(offsets, vec![unreadable + 1; 3]);
    let audited: i64 =
        sqlx::query_scalar("SELECT max(sequence) FROM audit_log WHERE aggregate_id = $1")
            .bind(app.aggregate_id("alice"))
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(audited, unreadable + 1);
    let schemas: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname IN ('aimc_rebuild', 'aimc_retired')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(schemas, 0, "a failed rebuild leaves nothing behind");
    app.assert_no_plain_key_anywhere().await;
}

/// Appends to `credential`'s stream an event as an older build left it: committed, never
/// projected, stamped `occurred_at`.
async fn append_as_an_older_build(
    app: &TestApp,
    credential: uuid::Uuid,
    (event_type, payload): (&str, &str),
    occurred_at: &str,
) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'Credential', aggregate_id, (SELECT max(sequence) + 1 FROM events e WHERE e.aggregate_id = c.aggregate_id),
                $2, '1.0', $3::json, json_build_object('actor', 'legacy-tester', 'occurred_at', $4::text)
           FROM credential_view c WHERE credential_id = $1",
    )
    .bind(credential)
    .bind(event_type)
    .bind(payload)
    .bind(occurred_at)
    .execute(&app.pool)
    .await
    .unwrap();
}

/// A `CredentialValidated` as builds before version 2.0 of the event stored it (`ok` where
/// today's has `verdict`).
const VALIDATED_1_0: &str = include_str!("../fixtures/events/credential-validated-1.0.json");

#[tokio::test]
async fn an_event_stored_in_an_older_shape_loads_and_projects_as_todays() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    app.remember_secret("sk-proj-upcast-0123456789abcdef");
    let added = app
        .post(
            "/api/keys",
            &admin,
            json!({"service": "OPENAI", "api_key": "sk-proj-upcast-0123456789abcdef"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let (stream, credential): (String, uuid::Uuid) = sqlx::query_as(
        "SELECT aggregate_id, credential_id FROM credential_view WHERE workspace_id = $1",
    )
    .bind(&app.workspace)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let validated = VALIDATED_1_0.replace("{credential_id}", &credential.to_string());
    append_as_an_older_build(
        &app,
        credential,
        ("CredentialValidated", &validated),
        "2026-11-20T09:30:00Z",
    )
    .await;
    let tested = || async {
        sqlx::query_as::<_, (Option<bool>, Option<String>)>(
            "SELECT validated_ok, validation_note FROM credential_view WHERE credential_id = $1",
        )
        .bind(credential)
        .fetch_one(&app.pool)
        .await
        .unwrap()
    };

    let projector = Projector::new(app.pool.clone());
    assert_eq!(projector.catch_up_all().await.unwrap(), 1);

    let refused = (
        Some(false),
        Some("the provider refused the key (401)".to_owned()),
    );
    assert_eq!(tested().await, refused, "projected with its verdict");
    let store = SnapshotEventStore::<CredentialAggregate>::new(app.pool.clone(), 20);
    let (aggregate, _) = store.load(&stream).await.unwrap();
    let validation = aggregate.credential.unwrap().last_validation.unwrap();
    assert_eq!((validation.ok, validation.status), (false, Some(401)));
    let history = app
        .get("/api/v1/history?type=CredentialValidated", &admin)
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.text);
    let details = &history.body["events"][0]["details"];
    assert_eq!(details["ok"], false, "{}", history.text);
    assert_eq!(details["verdict"], "refused", "{}", history.text);
    // A refused key is not handed out.
    let resolved = app.get("/api/v1/resolve?task=chat", &admin).await;
    assert_ne!(
        resolved.body["credentialId"],
        json!(credential),
        "{}",
        resolved.text
    );

    projector.rebuild().await.unwrap();
    assert_eq!(tested().await, refused, "the rebuild reads it the same way");
    let stored: String = sqlx::query_scalar(
        "SELECT event_version FROM events WHERE event_type = 'CredentialValidated'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, "1.0", "the log is never rewritten");
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn the_periodic_pass_reads_the_log_written_since_the_last_and_the_full_pass_the_rest() {
    // Given two stored keys, and for each an event an older build appended and never
    // projected: one stamped a minute ago, one, on a key stored as long ago, two hours ago
    // (its process died long since).
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    for secret in [
        "sk-proj-recent-0123456789abcdef",
        "sk-proj-stale-0123456789abcdef",
    ] {
        app.remember_secret(secret);
        let added = app
            .post(
                "/api/keys",
                &admin,
                json!({"service": "OPENAI", "api_key": secret}),
            )
            .await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    }
    let credentials: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT credential_id FROM credential_view WHERE workspace_id = $1 ORDER BY created_at",
    )
    .bind(&app.workspace)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    for (credential, stamped) in credentials.iter().zip([
        Utc::now() - chrono::Duration::minutes(1),
        Utc::now() - chrono::Duration::hours(2),
    ]) {
        let validated = VALIDATED_1_0.replace("{credential_id}", &credential.to_string());
        append_as_an_older_build(
            &app,
            *credential,
            ("CredentialValidated", &validated),
            &stamped.to_rfc3339(),
        )
        .await;
    }
    let two_hours_ago = (Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    sqlx::query(
        "UPDATE events SET metadata = (metadata::jsonb || jsonb_build_object('occurred_at', $2::text))::json
          WHERE aggregate_id = (SELECT aggregate_id FROM credential_view WHERE credential_id = $1)",
    )
    .bind(credentials[1])
    .bind(&two_hours_ago)
    .execute(&app.pool)
    .await
    .unwrap();
    let validated = || async {
        sqlx::query_scalar::<_, Option<bool>>(
            "SELECT validated_ok FROM credential_view WHERE credential_id = ANY($1) ORDER BY credential_id = $2 DESC",
        )
        .bind(&credentials)
        .bind(credentials[0])
        .fetch_all(&app.pool)
        .await
        .unwrap()
    };
    let projector = Projector::new(app.pool.clone());

    // When the periodic pass looks at what was stamped in the last five minutes.
    let recent = projector
        .catch_up_since(Utc::now() - chrono::Duration::minutes(5))
        .await
        .unwrap();

    // Then it projects the recent event only: it never read the older part of the log.
    assert_eq!(recent, 1);
    assert_eq!(validated().await, [Some(false), None]);

    // And the full pass, the periodic pass's hourly backstop, projects the other.
    assert_eq!(projector.catch_up_all().await.unwrap(), 1);
    assert_eq!(validated().await, [Some(false), Some(false)]);
    assert_eq!(projector.catch_up_all().await.unwrap(), 0);

    // And a stream no pass can project, its event two hours old, is tried by every periodic
    // pass after the full one met it, so it stays reported however old its events.
    append_as_an_older_build(
        &app,
        credentials[1],
        ("NoSuchEvent", "{\"NoSuchEvent\": {}}"),
        &two_hours_ago,
    )
    .await;
    assert!(projector.catch_up_all().await.is_err());
    let periodic = projector
        .catch_up_since(Utc::now() - chrono::Duration::minutes(5))
        .await;
    assert!(
        periodic.is_err(),
        "the failing stream was passed over: {periodic:?}"
    );
    app.assert_no_plain_key_anywhere().await;
}

/// The read model's index and constraint names, as the migrations made them.
async fn read_model_objects(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tablename || '.' || indexname FROM pg_indexes WHERE schemaname = 'public'
            AND tablename IN ('config_view', 'credential_view', 'credential_names', 'audit_log',
                              'audit_positions', 'projection_offsets')
         UNION ALL
         SELECT conrelid::regclass::text || ':' || conname FROM pg_constraint
          WHERE connamespace = 'public'::regnamespace
            AND conrelid::regclass::text IN ('config_view', 'credential_view', 'credential_names',
                                             'audit_log', 'audit_positions', 'projection_offsets')
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_rebuild_swaps_in_fresh_tables_while_the_service_keeps_reading_and_writing() {
    let app = std::sync::Arc::new(spawn_app().await);
    let alice = app.token("alice", Role::Member);
    let admin = app.token("ada", Role::Admin);
    create_seed_config(&app, &alice).await;
    // Enough of a log that the replay takes a while.
    for round in 1..=20 {
        put_prompt_and_models(&app, &alice, round).await;
    }
    let objects_before = read_model_objects(&app.pool).await;
    let config_before = app.get("/api/v1/get/ai-model-config", &alice).await.body;

    // Writers and readers keep going for the whole rebuild.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let traffic = {
        let (app, running, admin, alice) =
            (app.clone(), running.clone(), admin.clone(), alice.clone());
        tokio::spawn(async move {
            let (mut written, mut failures) = (Vec::new(), Vec::new());
            let mut round = 0;
            while running.load(std::sync::atomic::Ordering::Relaxed) || round < 5 {
                round += 1;
                let key = format!("sk-proj-online-rebuild-{round:06}-abcdef");
                app.remember_secret(&key);
                let added = app
                    .post(
                        "/api/keys",
                        &admin,
                        json!({"service": "OPENAI", "api_key": key}),
                    )
                    .await;
                match added.status {
                    StatusCode::CREATED => written.push(added.body["id"].clone()),
                    status => failures.push(format!("POST {status}: {}", added.text)),
                }
                let read = app.get("/api/v1/get/ai-model-config", &alice).await;
                if read.status != StatusCode::OK {
                    failures.push(format!("GET {}: {}", read.status, read.text));
                }
            }
            (written, failures)
        })
    };
    let rebuilt = Projector::new(app.pool.clone())
        .rebuild_watched(50, &aimc_store::Unwatched)
        .await
        .unwrap();
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    let (written, failures) = traffic.await.unwrap();

    assert!(failures.is_empty(), "{failures:#?}");
    assert!(rebuilt.replayed > 0, "{rebuilt:?}");
    let listed = app.get("/api/keys", &admin).await;
    let ids: Vec<Value> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].clone())
        .collect();
    assert_eq!(
        ids.len(),
        written.len(),
        "every accepted write, once: {}",
        listed.text
    );
    for id in &written {
        assert!(ids.contains(id), "key {id} is missing after the swap");
    }
    assert_eq!(
        app.get("/api/v1/get/ai-model-config", &alice).await.body,
        config_before
    );
    let (events, audited): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM audit_log)")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(audited, events, "one history entry per event");
    assert_eq!(read_model_objects(&app.pool).await, objects_before);
    let schemas: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname IN ('aimc_rebuild', 'aimc_retired')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(schemas, 0);
    // Writes after the swap land in the swapped-in tables.
    let after = app
        .post(
            "/api/keys",
            &admin,
            json!({"service": "ANTHROPIC", "api_key": "sk-ant-after-the-swap-0123456789"}),
        )
        .await;
    app.remember_secret("sk-ant-after-the-swap-0123456789");
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.text);
    assert_eq!(
        app.get("/api/keys", &admin)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        written.len() + 1
    );
    app.assert_no_plain_key_anywhere().await;
}

/// The leak check every test ends with finds a key wherever a row holds it, in either form.
#[tokio::test]
#[should_panic(expected = "a plain key was found in table audit_positions")]
async fn the_leak_check_finds_a_key_planted_in_a_row() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    app.remember_secret("sk-planted-key-0000-abcdef");
    app.remember_secret("sk-unplanted-key-0000-abcdef");
    let response = app
        .put(
            "/api/user/api-keys",
            &token,
            json!({"openai": {"apiKey": "sk-unplanted-key-0000-abcdef"}}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    sqlx::query("INSERT INTO audit_positions (workspace_id, last_position) VALUES ($1, 1)")
        .bind(format!(
            "prefix {} suffix",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                "sk-planted-key-0000-abcdef"
            )
        ))
        .execute(&app.pool)
        .await
        .unwrap();

    app.assert_no_plain_key_anywhere().await;
}
