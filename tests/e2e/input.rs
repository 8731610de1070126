//! Bad input: a 4xx naming the problem, and nothing appended.

use aimc_api::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

fn one_model(model: Value) -> Value {
    json!({"models": [model], "system_prompt": "p"})
}

/// Sends `body` to create, expects `status`, and checks the problem names `field` and that no
/// event was appended.
async fn refused(
    app: &TestApp,
    token: &str,
    body: Value,
    status: StatusCode,
    field: &str,
) -> TestResponse {
    let before = app.event_count().await;
    let response = app
        .post("/api/v1/create/ai-model-config", token, body)
        .await;
    assert_eq!(response.status, status, "{}", response.text);
    assert_eq!(response.body["status"], status.as_u16());
    assert!(
        response.text.contains(field),
        "the problem should name {field}: {}",
        response.text
    );
    assert_eq!(
        app.event_count().await,
        before,
        "a refused command must append nothing"
    );
    response
}

#[tokio::test]
async fn unknown_providers_and_model_types_name_the_field_and_the_accepted_values() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);

    let provider = refused(
        &app,
        &token,
        one_model(json!({"provider": "xyz", "type": "chat", "model": "m", "isPaid": false})),
        StatusCode::BAD_REQUEST,
        "models[0].provider",
    )
    .await;
    assert!(provider.body["detail"]
        .as_str()
        .unwrap()
        .contains("openai, anthropic"));
    let model_type = refused(
        &app,
        &token,
        one_model(
            json!({"provider": "openai", "type": "telepathy", "model": "m", "isPaid": false}),
        ),
        StatusCode::BAD_REQUEST,
        "models[0].type",
    )
    .await;
    assert_eq!(model_type.body["errors"][0]["field"], "models[0].type");
}

#[tokio::test]
async fn missing_fields_wrong_types_and_unknown_fields_are_named() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);

    let missing = refused(
        &app,
        &token,
        one_model(json!({"provider": "openai", "type": "chat", "model": "m"})),
        StatusCode::BAD_REQUEST,
        "isPaid",
    )
    .await;
    assert_eq!(missing.body["errors"][0]["field"], "models[0].isPaid");
    refused(
        &app,
        &token,
        one_model(json!({"provider": "openai", "type": "chat", "model": "m", "isPaid": "yes"})),
        StatusCode::BAD_REQUEST,
        "isPaid",
    )
    .await;
    refused(
        &app,
        &token,
        json!({"system_prompt": "p"}),
        StatusCode::BAD_REQUEST,
        "models",
    )
    .await;
    refused(
        &app,
        &token,
        json!({"models": [], "systemPrompt": "typo"}),
        StatusCode::BAD_REQUEST,
        "systemPrompt",
    )
    .await;
    refused(
        &app,
        &token,
        json!({"models": "none"}),
        StatusCode::BAD_REQUEST,
        "models",
    )
    .await;
}

#[tokio::test]
async fn over_long_strings_and_duplicate_models_are_refused() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);

    refused(
        &app,
        &token,
        one_model(
            json!({"provider": "openai", "type": "chat", "model": "m".repeat(201), "isPaid": true}),
        ),
        StatusCode::BAD_REQUEST,
        "model",
    )
    .await;
    refused(
        &app,
        &token,
        json!({"models": [], "system_prompt": "p".repeat(20_001)}),
        StatusCode::BAD_REQUEST,
        "system_prompt",
    )
    .await;
    refused(
        &app,
        &token,
        json!({"models": [
            {"provider": "openai", "type": "chat", "model": "gpt-4", "isPaid": true},
            {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "isPaid": false}
        ]}),
        StatusCode::BAD_REQUEST,
        "models[1]",
    )
    .await;
}

#[tokio::test]
async fn malformed_json_is_a_bad_request() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);

    let response = app
        .request_with(
            Method::POST,
            "/api/v1/create/ai-model-config",
            Some(&token),
            |r| {
                r.header("content-type", "application/json")
                    .body("{\"models\": [")
            },
        )
        .await;

    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.headers["content-type"], "application/problem+json");
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn bodies_over_64_kib_are_refused_with_413_whether_or_not_their_length_is_declared() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    let huge = json!({"models": [], "system_prompt": "p".repeat(70_000)}).to_string();

    let declared = app
        .request_with(
            Method::POST,
            "/api/v1/create/ai-model-config",
            Some(&token),
            |r| {
                r.header("content-type", "application/json")
                    .body(huge.clone())
            },
        )
        .await;
    let chunks: Vec<Result<String, std::io::Error>> = huge
        .as_bytes()
        .chunks(8192)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let streamed = app
        .request_with(
            Method::POST,
            "/api/v1/create/ai-model-config",
            Some(&token),
            |r| {
                r.header("content-type", "application/json")
                    .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            },
        )
        .await;

    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(streamed.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(declared.body["status"], 413);
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn a_key_that_does_not_decrypt_is_refused_naming_the_model() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    let other_workspace = app.token_for("alice", &[("elsewhere", Role::Member)], None);
    let sealed_for_elsewhere = app
        .encrypt_key(&other_workspace, "sk-meant-for-another-workspace-1")
        .await;
    let good = app.encrypt_key(&token, "sk-good-key-000000000001").await;

    for bad in [
        "not base64 at all!",
        "AAAAAAAA",
        sealed_for_elsewhere.as_str(),
        "vault:v9:AAAA",
    ] {
        let response = refused(
            &app,
            &token,
            json!({"models": [
                {"provider": "openai", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": good, "isPaid": true},
                {"provider": "anthropic", "type": "chat", "model": "claude-2", "apiKeyEncrypted": bad, "isPaid": true}
            ]}),
            StatusCode::BAD_REQUEST,
            "models[1].apiKeyEncrypted",
        )
        .await;
        assert!(
            response.body["detail"]
                .as_str()
                .unwrap()
                .contains("does not decrypt"),
            "{}",
            response.text
        );
    }
    refused(
        &app,
        &token,
        one_model(json!({"provider": "openai", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": "", "isPaid": true})),
        StatusCode::BAD_REQUEST,
        "models[0].apiKeyEncrypted",
    )
    .await;
    app.assert_no_plain_key_anywhere().await;
}

/// serde quotes the value it refused; a key sent where an object belongs must not come back.
#[tokio::test]
async fn a_key_sent_in_the_wrong_place_is_refused_without_being_repeated() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    let key = "sk-live-misplaced-key-0000009876";
    app.remember_secret(key);

    let refused = app
        .put("/api/user/api-keys", &token, json!({"openai": key}))
        .await;

    assert!(refused.status.is_client_error(), "{}", refused.text);
    assert!(refused.text.contains("openai"), "{}", refused.text);
    app.assert_no_plain_key_anywhere().await;
}
