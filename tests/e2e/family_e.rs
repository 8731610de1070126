//! Family E (seed 004): a workspace's provider keys, their tests, and task assignments.

use aimc_api::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::fake_provider::FakeProvider;
use crate::harness::*;

const KEY: &str = "sk-ant-api03-seed004-key-cdef";

#[tokio::test]
async fn saving_a_key_answers_the_provider_status_with_its_hint() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    app.remember_secret(KEY);

    let before = app.get("/api/v1/settings/providers", &admin).await;
    let saved = app
        .post(
            "/api/v1/settings/providers/anthropic",
            &admin,
            json!({"api_key": KEY}),
        )
        .await;
    let after = app.get("/api/v1/settings/providers", &admin).await;

    let providers: Vec<&str> = before
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider"].as_str().unwrap())
        .collect();
    assert_eq!(
        providers,
        ["openai", "gemini", "anthropic", "openrouter", "ollama"]
    );
    assert!(before
        .body
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["is_configured"] == false && p["key_hint"].is_null()));
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert_eq!(
        saved.body,
        json!({"provider": "anthropic", "is_configured": true, "is_active": true, "key_hint": "sk-...cdef"})
    );
    assert_eq!(after.body[2], saved.body);
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn an_invalid_provider_is_400_and_an_empty_key_is_422_in_fastapis_shapes() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);

    let invalid = app
        .post(
            "/api/v1/settings/providers/xyz",
            &admin,
            json!({"api_key": "sk-whatever-123456"}),
        )
        .await;
    let empty = app
        .post(
            "/api/v1/settings/providers/openai",
            &admin,
            json!({"api_key": ""}),
        )
        .await;
    let missing = app
        .post("/api/v1/settings/providers/openai", &admin, json!({}))
        .await;

    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.body, json!({"detail": "Invalid provider: xyz"}));
    for response in [&empty, &missing] {
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            response.text
        );
        assert_eq!(
            response.body["detail"][0]["loc"],
            json!(["body", "api_key"]),
            "{}",
            response.text
        );
        assert!(response.body["detail"][0]["msg"].is_string());
    }
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn testing_a_provider_uses_the_stored_key_and_a_key_saved_here_is_a_family_b_configuration() {
    let provider = FakeProvider::start(KEY).await;
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    app.remember_secret(KEY);
    app.post(
        "/api/v1/settings/providers/anthropic",
        &admin,
        json!({"api_key": KEY}),
    )
    .await;

    // The same credential, seen and edited through family B.
    let listed = app
        .get(&format!("/ai/llm?workspaceId={}", app.workspace), &admin)
        .await;
    let llm = &listed.body["aiLlms"][0];
    assert_eq!(llm["aiType"], "ANTHROPIC");
    assert_eq!(llm["name"], "Anthropic key");
    let id = llm["id"].as_str().unwrap();
    let moved_without_secret = app
        .put(
            &format!("/ai/llm/{id}"),
            &admin,
            json!({"endpoint": provider.address}),
        )
        .await;
    assert_eq!(
        moved_without_secret.status,
        StatusCode::BAD_REQUEST,
        "the stored key must not follow a new host unasked"
    );
    let pointed = app
        .put(
            &format!("/ai/llm/{id}"),
            &admin,
            json!({"endpoint": provider.address, "secret": KEY}),
        )
        .await;
    assert_eq!(pointed.status, StatusCode::OK, "{}", pointed.text);

    let tested = app
        .request(
            Method::POST,
            "/api/v1/settings/providers/anthropic/test",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text);
    assert_eq!(tested.body["success"], true);
    assert_eq!(tested.body["status_code"], 200);

    app.remember_secret("sk-ant-replaced-but-wrong-0000");
    app.post(
        "/api/v1/settings/providers/anthropic",
        &admin,
        json!({"api_key": "sk-ant-replaced-but-wrong-0000"}),
    )
    .await;
    let failed = app
        .request(
            Method::POST,
            "/api/v1/settings/providers/anthropic/test",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(failed.body["success"], false);
    assert_eq!(failed.body["status_code"], 401);
    let statuses = app.get("/api/v1/settings/providers", &admin).await;
    assert_eq!(
        statuses.body[2]["is_active"], false,
        "a key that failed its test is not active"
    );
    assert_eq!(provider.calls(), 2);
    app.post(
        "/api/v1/settings/providers/anthropic",
        &admin,
        json!({"api_key": KEY}),
    )
    .await;
    let replaced = app.get("/api/v1/settings/providers", &admin).await;
    assert_eq!(
        replaced.body[2]["is_active"], true,
        "the failed test was of the key just replaced"
    );

    let untested = app
        .request(
            Method::POST,
            "/api/v1/settings/providers/openai/test",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(untested.status, StatusCode::NOT_FOUND);
    assert_eq!(untested.body["detail"], "No API key configured for openai");
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn tasks_can_only_be_assigned_to_configured_providers() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    app.remember_secret(KEY);
    app.post(
        "/api/v1/settings/providers/anthropic",
        &admin,
        json!({"api_key": KEY}),
    )
    .await;

    let saved = app
        .post(
            "/api/v1/settings/task-assignments",
            &admin,
            json!({"assignments": [{"task": "summarize", "provider": "anthropic", "model": "claude-sonnet-4-20250514"}]}),
        )
        .await;
    let unconfigured = app
        .post(
            "/api/v1/settings/task-assignments",
            &admin,
            json!({"assignments": [{"task": "chat", "provider": "openai", "model": "gpt-4o"}]}),
        )
        .await;
    let unknown = app
        .post(
            "/api/v1/settings/task-assignments",
            &admin,
            json!({"assignments": [{"task": "chat", "provider": "xyz", "model": "m"}]}),
        )
        .await;
    let gemini = app
        .post(
            "/api/v1/settings/task-assignments",
            &admin,
            json!({"assignments": [{"task": "chat", "provider": "gemini", "model": "gemini-pro"}]}),
        )
        .await;
    let read = app
        .get(
            "/api/v1/settings/task-assignments",
            &app.token("vic", Role::Viewer),
        )
        .await;

    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert_eq!(
        saved.body,
        json!({"assignments": [{"task": "summarize", "provider": "anthropic", "model": "claude-sonnet-4-20250514"}]})
    );
    assert_eq!(unconfigured.status, StatusCode::BAD_REQUEST);
    assert!(
        unconfigured.body["detail"]
            .as_str()
            .unwrap()
            .contains("openai"),
        "{}",
        unconfigured.text
    );
    assert_eq!(unknown.body, json!({"detail": "Invalid provider: xyz"}));
    assert_eq!(
        gemini.body,
        json!({"detail": "task \"chat\" names provider \"gemini\", for which this workspace has no key"}),
        "the refusal names the provider as this API spells it"
    );
    assert_eq!(read.body, saved.body);
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn only_admins_change_workspace_settings() {
    let app = spawn_app().await;
    let member = app.token("mem", Role::Member);

    let refused = app
        .post(
            "/api/v1/settings/providers/openai",
            &member,
            json!({"api_key": "sk-member-key-00000001"}),
        )
        .await;

    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body["detail"].is_string());
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn a_name_the_service_would_give_that_a_caller_already_took_gets_a_suffix() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    app.remember_secret("sk-proj-squatting-the-name-0001");
    app.remember_secret(KEY);
    let squatter = app
        .post(
            "/ai/llm",
            &admin,
            json!({"name": "Anthropic key", "aiType": "OTHER", "endpoint": "https://llm.example.com",
                   "secret": "sk-proj-squatting-the-name-0001", "workspaceId": app.workspace}),
        )
        .await;
    assert_eq!(squatter.status, StatusCode::OK);

    let saved = app
        .post(
            "/api/v1/settings/providers/anthropic",
            &admin,
            json!({"api_key": KEY}),
        )
        .await;

    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert_eq!(saved.body["is_configured"], true);
    let names: Vec<String> = app
        .get(&format!("/ai/llm?workspaceId={}", app.workspace), &admin)
        .await
        .body["aiLlms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|llm| llm["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(
        names
            .iter()
            .any(|name| name.starts_with("Anthropic key (") && name.ends_with(')')),
        "{names:?}"
    );
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn saves_racing_for_a_provider_without_a_key_store_one_key() {
    let app = spawn_app().await;
    let replica = spawn_replica(&app).await;
    let admin = app.token("ada", Role::Admin);
    let key = |n: usize| format!("sk-proj-racing-save-{n:04}");
    for n in 0..8 {
        app.remember_secret(&key(n));
    }

    let saves = futures::future::join_all((0..8).map(|n| {
        let instance = if n % 2 == 0 { &app } else { &replica };
        instance.post(
            "/api/v1/settings/providers/openai",
            &admin,
            json!({"api_key": key(n)}),
        )
    }))
    .await;

    for save in &saves {
        assert_eq!(save.status, StatusCode::OK, "{}", save.text);
    }
    let listed = app
        .get(&format!("/ai/llm?workspaceId={}", app.workspace), &admin)
        .await;
    assert_eq!(
        listed.body["aiLlms"].as_array().unwrap().len(),
        1,
        "every save after the first replaced the key it added: {}",
        listed.text
    );
    let types = app
        .event_types(&format!("{}/workspace", app.workspace))
        .await;
    assert_eq!(
        types.iter().filter(|t| *t == "CredentialAdded").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "CredentialSecretReplaced")
            .count(),
        7
    );
    app.assert_no_plain_key_anywhere().await;
}
