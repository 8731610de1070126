//! Family A (seed 000): create, get and update a person's AI model configuration.

use aimc_api::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::*;

const SEED_STANDARD_RESPONSE: &str = r#"{
"models": [
{ "provider": "OpenAI", "type": "chat", "model": "gpt-4", "isPaid": true },
{ "provider": "Anthropic", "type": "chat", "model": "claude-2", "isPaid": true },
{ "provider": "Ollama", "type": "chat", "model": "llama3", "isPaid": false }
],
"system_prompt": "You are a helpful AI assistant."
}"#;

#[tokio::test]
async fn seed_000_requests_get_the_seed_responses() {
    let app = spawn_app().await;
    let token = app.token_with_scope("alice", Role::Member, "keys:ciphertext");

    // 1. Create, with seed 000's body.
    let created = create_seed_config(&app, &token).await;
    let seed: serde_json::Value = serde_json::from_str(SEED_STANDARD_RESPONSE).unwrap();
    assert_eq!(without_hints(created.body.clone()), seed);

    // 2. Get: the seed's standard response, plus a hint per stored key, no ciphertext.
    let got = app.get("/api/v1/get/ai-model-config", &token).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(without_hints(got.body.clone()), seed);
    assert_eq!(got.body["models"][0]["keyHint"], "sk-...cdef");
    assert_eq!(got.body["models"][1]["keyHint"], "sk-...wxyz");
    assert!(got.body["models"][2].get("keyHint").is_none());
    assert!(!got.text.contains("apiKeyEncrypted"));

    // The optional response including encrypted keys.
    let with_keys = app
        .get(
            "/api/v1/get/ai-model-config?includeEncryptedKeys=true",
            &token,
        )
        .await;
    assert_eq!(with_keys.status, StatusCode::OK);
    let openai_ciphertext = with_keys.body["models"][0]["apiKeyEncrypted"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        openai_ciphertext.starts_with("vault:v1:"),
        "{openai_ciphertext}"
    );
    assert!(with_keys.body["models"][2].get("apiKeyEncrypted").is_none());

    // 3. Update, with seed 000's body: the existing ciphertext for OpenAI, Anthropic dropped.
    let updated = app
        .put(
            "/api/v1/update/ai-model-config",
            &token,
            json!({
                "models": [
                    {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": openai_ciphertext, "isPaid": true},
                    {"provider": "Ollama", "type": "chat", "model": "llama3", "apiKeyEncrypted": null, "isPaid": false}
                ],
                "system_prompt": "You are a helpful AI assistant."
            }),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    let after = app.get("/api/v1/get/ai-model-config", &token).await;
    assert_eq!(
        without_hints(after.body.clone()),
        json!({
            "models": [
                {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "isPaid": true},
                {"provider": "Ollama", "type": "chat", "model": "llama3", "isPaid": false}
            ],
            "system_prompt": "You are a helpful AI assistant."
        })
    );
    assert_eq!(
        after.body["models"][0]["keyHint"], "sk-...cdef",
        "the existing ciphertext keeps the key"
    );

    // Only the differences were recorded: Anthropic's model and key went, nothing else.
    let types = app.event_types(&app.aggregate_id("alice")).await;
    assert_eq!(
        types[types.len() - 2..],
        ["ModelRemoved".to_owned(), "CredentialRemoved".to_owned()],
        "{types:?}"
    );
    assert!(!types.contains(&"CredentialSecretReplaced".to_owned()));

    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn creating_a_second_configuration_is_a_conflict_and_appends_nothing() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    let before = app.event_count().await;

    let again = app
        .post(
            "/api/v1/create/ai-model-config",
            &token,
            json!({"models": [], "system_prompt": "x"}),
        )
        .await;

    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.headers["content-type"], "application/problem+json");
    assert_eq!(again.body["status"], 409);
    assert_eq!(app.event_count().await, before);
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn getting_or_updating_before_creating_is_not_found() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);

    let got = app.get("/api/v1/get/ai-model-config", &token).await;
    let updated = app
        .put(
            "/api/v1/update/ai-model-config",
            &token,
            json!({"models": []}),
        )
        .await;

    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert_eq!(updated.status, StatusCode::NOT_FOUND);
    assert_eq!(updated.body["title"], "Not found");
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn an_absent_key_keeps_it_null_removes_it_and_a_new_one_replaces_it() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    let rotated = app
        .encrypt_key(&token, "sk-rotated-OPENAI-key-000000009999")
        .await;

    let response = app
        .put(
            "/api/v1/update/ai-model-config",
            &token,
            json!({
                "models": [
                    {"provider": "openai", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": rotated, "isPaid": true},
                    {"provider": "ANTHROPIC", "type": "chat", "model": "claude-2", "isPaid": true},
                    {"provider": "Ollama", "type": "chat", "model": "llama3", "apiKeyEncrypted": null, "isPaid": false}
                ]
            }),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.body["models"][0]["keyHint"], "sk-...9999");
    assert_eq!(
        response.body["models"][1]["keyHint"], "sk-...wxyz",
        "absent apiKeyEncrypted keeps the key"
    );
    assert_eq!(
        response.body["system_prompt"], "You are a helpful AI assistant.",
        "absent system_prompt keeps it"
    );

    let removed = app
        .put(
            "/api/v1/update/ai-model-config",
            &token,
            json!({
                "models": [
                    {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "isPaid": true},
                    {"provider": "Anthropic", "type": "chat", "model": "claude-2", "apiKeyEncrypted": null, "isPaid": true},
                    {"provider": "Ollama", "type": "chat", "model": "llama3", "isPaid": false}
                ],
                "system_prompt": null
            }),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert!(
        removed.body["models"][1].get("keyHint").is_none(),
        "null removes the key"
    );
    assert_eq!(removed.body["system_prompt"], serde_json::Value::Null);

    let types = app.event_types(&app.aggregate_id("alice")).await;
    let tail: Vec<&str> = types.iter().map(String::as_str).rev().take(4).collect();
    assert_eq!(
        tail,
        [
            "SystemPromptChanged",
            "CredentialRemoved",
            "ModelCredentialDetached",
            "CredentialSecretReplaced"
        ]
    );
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn an_update_that_changes_nothing_records_nothing() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    let before = app.event_count().await;

    let response = app
        .put(
            "/api/v1/update/ai-model-config",
            &token,
            json!({"models": seed_000_models_keeping_keys(), "system_prompt": "You are a helpful AI assistant."}),
        )
        .await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(app.event_count().await, before);
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_write_is_visible_at_once_on_every_replica() {
    let app = spawn_app().await;
    let replica = spawn_replica(&app).await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;

    for round in 0..10 {
        let prompt = format!("prompt number {round}");
        let writer = if round % 2 == 0 { &app } else { &replica };
        let reader = if round % 2 == 0 { &replica } else { &app };
        let written = writer
            .put("/api/v1/update/ai-model-config", &token, json!({"models": [{"provider": "Ollama", "type": "chat", "model": format!("llama{round}"), "isPaid": false}], "system_prompt": prompt}))
            .await;
        assert_eq!(written.status, StatusCode::OK);

        let read = reader.get("/api/v1/get/ai-model-config", &token).await;

        assert_eq!(read.body["system_prompt"], prompt.as_str());
        assert_eq!(
            read.body["models"][0]["model"],
            format!("llama{round}").as_str()
        );
    }
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn encrypted_keys_are_only_returned_with_the_ciphertext_scope() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;

    let refused = app
        .get(
            "/api/v1/get/ai-model-config?includeEncryptedKeys=true",
            &token,
        )
        .await;

    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body["detail"]
        .as_str()
        .unwrap()
        .contains("keys:ciphertext"));
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn another_workspace_is_forbidden_and_another_user_sees_nothing_of_alice() {
    let app = spawn_app().await;
    let alice = app.token("alice", Role::Member);
    create_seed_config(&app, &alice).await;

    // A workspace the token does not grant.
    let foreign = app
        .request_with(
            reqwest::Method::GET,
            "/api/v1/get/ai-model-config",
            Some(&alice),
            |r| r.header("X-Workspace-Id", "someone-elses"),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);

    // Bob, in the same workspace, has no configuration and sees none of Alice's.
    let bob = app.token("bob", Role::Admin);
    let bobs = app.get("/api/v1/get/ai-model-config", &bob).await;
    assert_eq!(bobs.status, StatusCode::NOT_FOUND);
    assert!(!bobs.text.contains("gpt-4"));

    // Carol from another tenant cannot reach this workspace at all, whatever she names.
    let carol = app.token_for(
        "alice",
        &[("other-tenant", Role::Owner)],
        Some("keys:ciphertext"),
    );
    let carols = app
        .request_with(
            reqwest::Method::GET,
            "/api/v1/get/ai-model-config?includeEncryptedKeys=true",
            Some(&carol),
            |r| r.header("X-Workspace-Id", app.workspace.as_str()),
        )
        .await;
    assert_eq!(carols.status, StatusCode::FORBIDDEN);
    let own = app.get("/api/v1/get/ai-model-config", &carol).await;
    assert_eq!(
        own.status,
        StatusCode::NOT_FOUND,
        "same sub, other tenant: a different configuration"
    );
    assert!(!own.text.contains("gpt-4") && !carols.text.contains("gpt-4"));
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_viewer_reads_but_cannot_write() {
    let app = spawn_app().await;
    let viewer = app.token("vera", Role::Viewer);

    let created = app
        .post(
            "/api/v1/create/ai-model-config",
            &viewer,
            json!({"models": []}),
        )
        .await;

    assert_eq!(created.status, StatusCode::FORBIDDEN);
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn a_token_with_several_workspaces_must_name_one() {
    let app = spawn_app().await;
    let token = app.token_for(
        "alice",
        &[(&app.workspace, Role::Member), ("second", Role::Member)],
        None,
    );

    let unnamed = app
        .post(
            "/api/v1/create/ai-model-config",
            &token,
            json!({"models": []}),
        )
        .await;
    let named = app
        .request_with(
            reqwest::Method::POST,
            "/api/v1/create/ai-model-config",
            Some(&token),
            |r| {
                r.header("X-Workspace-Id", "second")
                    .json(&json!({"models": []}))
            },
        )
        .await;

    assert_eq!(unnamed.status, StatusCode::BAD_REQUEST);
    assert_eq!(unnamed.body["errors"][0]["field"], "X-Workspace-Id");
    assert_eq!(named.status, StatusCode::CREATED);
    let owners: Vec<String> = sqlx::query_scalar("SELECT DISTINCT aggregate_id FROM events")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(owners, ["second/user:alice"]);
}

#[tokio::test]
async fn switching_to_another_model_of_the_same_provider_keeps_its_key() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;

    let switched = app
        .put(
            "/api/v1/update/ai-model-config",
            &token,
            json!({"models": [{"provider": "OpenAI", "type": "chat", "model": "gpt-4o", "isPaid": true}]}),
        )
        .await;

    assert_eq!(switched.status, StatusCode::OK);
    assert_eq!(switched.body["models"][0]["model"], "gpt-4o");
    assert_eq!(switched.body["models"][0]["keyHint"], "sk-...cdef");
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn whitespace_around_a_client_encrypted_key_is_not_part_of_the_key() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    let padded = app
        .encrypt_key(&token, "sk-echoed-with-newline-1234\n")
        .await;
    app.remember_secret("sk-echoed-with-newline-1234");

    let created = app
        .post(
            "/api/v1/create/ai-model-config",
            &token,
            json!({"models": [{"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": padded, "isPaid": true}]}),
        )
        .await;
    let blank = app.encrypt_key(&token, " \n").await;
    let refused = app
        .put(
            "/api/v1/update/ai-model-config",
            &token,
            json!({"models": [{"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": blank, "isPaid": true}]}),
        )
        .await;

    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["models"][0]["keyHint"], "sk-...1234");
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.body["errors"][0]["field"],
        "models[0].apiKeyEncrypted"
    );
}
