//! The event log, snapshots and the read model's catch-up.

use aimc_api::Role;
use aimc_domain::AiModelConfig;
use aimc_store::SnapshotEventStore;
use reqwest::StatusCode;
use serde_json::json;

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

    let restarted = spawn_replica(&app).await;

    assert_eq!(
        restarted
            .get("/api/v1/get/ai-model-config", &token)
            .await
            .body,
        before
    );
    let history = restarted.get("/api/v1/history", &token).await.body;
    assert_eq!(history["events"].as_array().unwrap().len(), history_before);
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_write_whose_projection_fails_is_not_reported_as_visible_and_is_repaired_later() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    sqlx::query("ALTER TABLE config_view RENAME TO config_view_away")
        .execute(&app.pool)
        .await
        .unwrap();

    let update = app
        .put(
            "/api/v1/update/ai-model-config",
            &token,
            json!({"models": seed_000_models_keeping_keys(), "system_prompt": "recorded"}),
        )
        .await;

    assert_eq!(
        update.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        update.text
    );
    assert!(update.body["detail"].as_str().unwrap().contains("recorded"));
    assert!(app
        .event_types(&app.aggregate_id("alice"))
        .await
        .ends_with(&["SystemPromptChanged".to_owned()]));
    sqlx::query("ALTER TABLE config_view_away RENAME TO config_view")
        .execute(&app.pool)
        .await
        .unwrap();
    let restarted = spawn_replica(&app).await;
    assert_eq!(
        restarted
            .get("/api/v1/get/ai-model-config", &token)
            .await
            .body["system_prompt"],
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

#[tokio::test]
async fn rebuilding_the_read_model_from_the_log_gives_back_the_same_reads() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    let admin = app.token("ada", Role::Admin);
    create_seed_config(&app, &token).await;
    put_prompt_and_models(&app, &token, 3).await;
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

    let replayed = aimc_store::Projector::new(app.pool.clone())
        .rebuild()
        .await
        .unwrap();

    let events = app.event_count().await as usize;
    assert_eq!(replayed, events);
    for (path, expected) in reads.iter().zip(before) {
        let mut after = app.get(path, &token).await.body;
        if path.contains("history") {
            // Audit positions are renumbered by the replay; everything else must match.
            for entry in after["events"].as_array_mut().unwrap() {
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
    app.assert_no_plain_key_anywhere().await;
}
