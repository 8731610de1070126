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

/// A validly signed token whose subject could never name a stream (a NUL, a page of text) is
/// refused as a token, not failed on as a 500 deep in the store.
#[tokio::test]
async fn a_token_with_an_unusable_subject_is_a_401() {
    let app = spawn_app().await;
    for sub in ["a\u{0}b".to_owned(), "x".repeat(20_000)] {
        let token = app.token(&sub, Role::Member);
        for path in [
            "/api/v1/get/ai-model-config",
            "/api/user/api-keys",
            "/api/keys",
        ] {
            let response = app.get(path, &token).await;
            assert_eq!(
                response.status,
                StatusCode::UNAUTHORIZED,
                "{path}: {}",
                response.text
            );
        }
    }
}

/// A key sent as a JSON number is refused without being repeated back, in every API.
#[tokio::test]
async fn a_key_sent_as_a_number_is_not_echoed() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    for number in [json!(4111111111111111_u64), json!(4111111111111111.5)] {
        let mut llm = json!({"name": "n", "aiType": "OPENAI", "endpoint": "https://api.openai.com/v1",
                             "workspaceId": app.workspace});
        llm["secret"] = number.clone();
        let requests = [
            (
                Method::PUT,
                "/api/user/api-keys",
                json!({"openai": {"apiKey": number}}),
            ),
            (
                Method::POST,
                "/api/keys",
                json!({"service": "OPENAI", "api_key": number}),
            ),
            (Method::POST, "/ai/llm", llm),
            (
                Method::POST,
                "/api/v1/settings/providers/openai",
                json!({"api_key": number}),
            ),
        ];
        for (method, path, body) in requests {
            let response = app.request(method, path, Some(&admin), Some(body)).await;
            assert!(
                response.status.is_client_error(),
                "{path}: {}",
                response.text
            );
            assert!(
                !response.text.contains("4111111111111111"),
                "{path}: {}",
                response.text
            );
        }
    }
}

/// An `X-Workspace-Id` that is not text is refused, not ignored in favour of the token's
/// workspace.
#[tokio::test]
async fn an_undecodable_workspace_header_is_refused() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    let response = app
        .request_with(Method::GET, "/api/user/api-keys", Some(&token), |request| {
            request.header(
                "X-Workspace-Id",
                reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
            )
        })
        .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.text
    );
    assert_eq!(response.body["errors"][0]["field"], "X-Workspace-Id");
}

/// serde would read a JSON array into a struct field by field; a body the schema says is an
/// object must be one, at every depth, and a refused body changes nothing.
#[tokio::test]
async fn arrays_are_not_taken_for_objects() {
    let app = spawn_app().await;
    let alice = app.token("alice", Role::Member);
    let admin = app.token("ada", Role::Admin);

    let keys = app
        .put("/api/user/api-keys", &alice, json!([null, null]))
        .await;
    assert_eq!(keys.status, StatusCode::BAD_REQUEST, "{}", keys.text);
    assert_eq!(keys.body["errors"][0]["field"], "body");
    let nested = app
        .put(
            "/api/user/api-keys",
            &alice,
            json!({"openai": ["sk-nested-array-key-0001", null]}),
        )
        .await;
    assert_eq!(nested.status, StatusCode::BAD_REQUEST, "{}", nested.text);
    assert_eq!(nested.body["errors"][0]["field"], "openai");

    app.remember_secret("sk-array-test-secret-000000001");
    let created = app
        .post(
            "/ai/llm",
            &admin,
            json!({"name": "Kept", "aiType": "OPENAI", "endpoint": "https://api.openai.com/v1",
                   "secret": "sk-array-test-secret-000000001", "workspaceId": app.workspace}),
        )
        .await;
    let id = created.body["aiLlmId"].as_str().unwrap().to_owned();
    let events = app.event_count().await;
    let renamed = app
        .put(
            &format!("/ai/llm/{id}"),
            &admin,
            json!(["renamed-by-array"]),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::BAD_REQUEST, "{}", renamed.text);
    assert_eq!(
        app.event_count().await,
        events,
        "a refused body appends nothing"
    );
    let listed = app
        .get(&format!("/ai/llm?workspaceId={}", app.workspace), &admin)
        .await;
    assert_eq!(listed.body["aiLlms"][0]["name"], "Kept");
}

/// Names that render alike are one name or refused: NFC and NFD "Café" clash, and a zero-width
/// space, a right-to-left override or a Cyrillic "а" are refused naming the field.
#[tokio::test]
async fn look_alike_names_are_one_name_or_refused() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    app.remember_secret("sk-look-alike-secret-000000001");
    let create = |name: &str| {
        app.post(
            "/ai/llm",
            &admin,
            json!({"name": name, "aiType": "OPENAI", "endpoint": "https://api.openai.com/v1",
                   "secret": "sk-look-alike-secret-000000001", "workspaceId": app.workspace}),
        )
    };
    let first = create("Caf\u{e9}").await;
    assert_eq!(first.body["success"], true, "{}", first.text);
    let events = app.event_count().await;

    let decomposed = create("Cafe\u{301}").await;
    assert_eq!(
        decomposed.status,
        StatusCode::BAD_REQUEST,
        "{}",
        decomposed.text
    );
    assert!(decomposed.body["message"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    for refused in ["Caf\u{200b}\u{e9}", "Caf\u{202e}\u{e9}", "C\u{430}f\u{e9}"] {
        let response = create(refused).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{refused:?}: {}",
            response.text
        );
        assert!(
            response.body["message"]
                .as_str()
                .unwrap()
                .starts_with("name"),
            "{refused:?}: {}",
            response.text
        );
    }
    assert_eq!(
        app.event_count().await,
        events,
        "refused names append nothing"
    );
}
