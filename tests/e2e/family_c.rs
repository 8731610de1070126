//! Family C (seed 002): a person's provider keys, model ids and default models.

use aimc_api::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;

const ANTHROPIC: &str = "sk-ant-seed002-user-key-00001111";

#[tokio::test]
async fn keys_and_model_ids_per_provider_with_seed_002_defaults() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    app.remember_secret(ANTHROPIC);

    let empty = app.get("/api/user/api-keys", &token).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(
        empty.body["anthropic"],
        json!({"configured": false, "modelId": "claude-sonnet-4-20250514", "isDefaultModel": true})
    );
    assert_eq!(empty.body["openai"]["modelId"], "gpt-4o");
    assert_eq!(
        empty.body["openrouter"]["modelId"],
        "anthropic/claude-sonnet-4-20250514"
    );
    assert_eq!(
        empty.body["bedrock"]["modelId"],
        "anthropic.claude-3-sonnet-20240229-v1:0"
    );

    let stored = app
        .put(
            "/api/user/api-keys",
            &token,
            json!({"anthropic": {"apiKey": ANTHROPIC}}),
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text);
    assert_eq!(
        stored.body["anthropic"],
        json!({"configured": true, "keyHint": "sk-...1111", "modelId": "claude-sonnet-4-20250514", "isDefaultModel": true})
    );

    let chosen = app
        .put(
            "/api/user/api-keys",
            &token,
            json!({"anthropic": {"modelId": "claude-opus-4-20250514"}}),
        )
        .await;
    assert_eq!(
        chosen.body["anthropic"]["modelId"],
        "claude-opus-4-20250514"
    );
    assert_eq!(
        chosen.body["anthropic"]["keyHint"], "sk-...1111",
        "the key stays"
    );
    assert_eq!(chosen.body["anthropic"]["isDefaultModel"], false);

    // One domain: family A shows the same model and key, masked.
    let family_a = app.get("/api/v1/get/ai-model-config", &token).await;
    assert_eq!(family_a.body["models"][0]["provider"], "Anthropic");
    assert_eq!(
        family_a.body["models"][0]["model"],
        "claude-opus-4-20250514"
    );
    assert_eq!(family_a.body["models"][0]["keyHint"], "sk-...1111");

    let removed = app
        .request(
            Method::DELETE,
            "/api/user/api-keys/anthropic",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(removed.body["anthropic"]["configured"], false);
    assert_eq!(
        removed.body["anthropic"]["modelId"],
        "claude-opus-4-20250514"
    );
    assert_eq!(
        app.request(
            Method::DELETE,
            "/api/user/api-keys/anthropic",
            Some(&token),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn bedrock_takes_an_access_key_a_secret_and_a_region() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    app.remember_secret("AKIASEED002EXAMPLE77");
    app.remember_secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");

    let stored = app
        .put(
            "/api/user/api-keys",
            &token,
            json!({"bedrock": {"accessKeyId": "AKIASEED002EXAMPLE77", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "region": "eu-west-1"}}),
        )
        .await;
    let bad_region = app
        .put(
            "/api/user/api-keys",
            &token,
            json!({"bedrock": {"region": "EU West!"}}),
        )
        .await;

    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text);
    assert_eq!(stored.body["bedrock"]["configured"], true);
    assert_eq!(stored.body["bedrock"]["keyHint"], "wJa...EKEY");
    assert_eq!(bad_region.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_region.body["errors"][0]["field"], "bedrock.region");
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_stored() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);

    let blank = app
        .put(
            "/api/user/api-keys",
            &token,
            json!({"openai": {"apiKey": "  "}, "anthropic": {"apiKey": ANTHROPIC}}),
        )
        .await;
    let unknown = app
        .put(
            "/api/user/api-keys",
            &token,
            json!({"mistral": {"apiKey": "x"}}),
        )
        .await;
    let unknown_delete = app
        .request(
            Method::DELETE,
            "/api/user/api-keys/mistral",
            Some(&token),
            None,
        )
        .await;

    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    assert_eq!(blank.body["errors"][0]["field"], "openai.apiKey");
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.body["errors"][0]["field"], "mistral");
    assert_eq!(unknown_delete.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn a_model_id_alone_is_recorded_for_use_with_a_fallback_key() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);

    let chosen = app
        .put(
            "/api/user/api-keys",
            &token,
            json!({"openai": {"modelId": "gpt-4-turbo"}}),
        )
        .await;

    assert_eq!(chosen.status, StatusCode::OK, "{}", chosen.text);
    assert_eq!(
        chosen.body["openai"],
        json!({"configured": false, "modelId": "gpt-4-turbo", "isDefaultModel": false})
    );
}

#[tokio::test]
async fn several_providers_are_stored_in_one_change_or_not_at_all() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    app.remember_secret(ANTHROPIC);
    app.remember_secret("AKIAONLYTHEACCESSKEY1");

    // Bedrock's access key alone cannot configure it: the whole request is refused.
    let refused = app
        .put("/api/user/api-keys", &token, json!({"anthropic": {"apiKey": ANTHROPIC}, "bedrock": {"accessKeyId": "AKIAONLYTHEACCESSKEY1"}}))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert_eq!(
        app.event_count().await,
        0,
        "nothing of the request was stored"
    );

    let both = app
        .put(
            "/api/user/api-keys",
            &token,
            json!({"anthropic": {"apiKey": ANTHROPIC}, "openai": {"modelId": "gpt-4-turbo"}}),
        )
        .await;
    assert_eq!(both.status, StatusCode::OK, "{}", both.text);
    assert_eq!(both.body["anthropic"]["configured"], true);
    assert_eq!(both.body["openai"]["modelId"], "gpt-4-turbo");
    let commands: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT (metadata::jsonb)->>'request_id') FROM events")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(commands, 1, "one request, one append");
    app.assert_no_plain_key_anywhere().await;
}

/// The answer shows keys stored through `/api/keys` beside the configuration's: a write finds
/// them in its own statement, and a PUT that changes nothing (no statement) looks them up.
#[tokio::test]
async fn every_answer_shows_the_keys_stored_elsewhere_whether_or_not_it_wrote() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    app.remember_secret(ANTHROPIC);
    app.store_key_apart(&token, "OPENROUTER", "sk-openrouter-stored-elsewhere-7777")
        .await;
    let put = |anthropic| {
        app.put(
            "/api/user/api-keys",
            &token,
            json!({"anthropic": anthropic}),
        )
    };

    let wrote = put(json!({"apiKey": ANTHROPIC, "modelId": "claude-3-opus"})).await;
    let events = app.event_count().await;
    // The model it already has, and no key: nothing to record.
    let unchanged = put(json!({"modelId": "claude-3-opus"})).await;

    assert_eq!(
        app.event_count().await,
        events,
        "the second PUT changed nothing"
    );
    for answer in [&wrote, &unchanged] {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.body["anthropic"]["keyHint"], "sk-...1111");
        assert_eq!(
            answer.body["openrouter"],
            json!({"configured": true, "keyHint": "sk-...7777", "modelId": "anthropic/claude-sonnet-4-20250514", "isDefaultModel": true})
        );
        assert_eq!(answer.body["openai"]["configured"], false);
    }
    app.assert_no_plain_key_anywhere().await;
}
