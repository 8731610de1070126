//! Family D (seed 003): a person's numbered API keys.

use aimc_api::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;

const KEY: &str = "sk-seed003-first-key-00001234";
const NEW_KEY: &str = "sk-seed003-second-key-0005678";

#[tokio::test]
async fn seed_003_create_list_update_delete() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    app.remember_secret(KEY);
    app.remember_secret(NEW_KEY);

    let created = app
        .post(
            "/api/keys",
            &token,
            json!({"service": "OPENAI", "api_key": KEY}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_i64().expect("an integer id");
    assert_eq!(created.body["service"], "OPENAI");
    assert!(created.body["created_at"].is_string());
    assert_eq!(created.body.as_object().unwrap().len(), 3);

    let listed = app.get("/api/keys", &token).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(
        listed.body,
        json!([{"id": id, "service": "OPENAI", "last_4_chars": "sk-...1234", "created_at": created.body["created_at"]}])
    );

    let updated = app
        .put(
            &format!("/api/keys/{id}"),
            &token,
            json!({"api_key": NEW_KEY}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.body["id"], id);
    assert_eq!(updated.body["service"], "OPENAI");
    assert!(updated.body["updated_at"].is_string());
    assert_eq!(
        app.get("/api/keys", &token).await.body[0]["last_4_chars"],
        "sk-...5678"
    );

    let deleted = app
        .request(
            Method::DELETE,
            &format!("/api/keys/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.text.is_empty());
    assert_eq!(app.get("/api/keys", &token).await.body, json!([]));
    let again = app
        .request(
            Method::DELETE,
            &format!("/api/keys/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn ids_are_integers_that_stay_with_their_key_and_belong_to_their_owner() {
    let app = spawn_app().await;
    let alice = app.token("alice", Role::Member);
    let bob = app.token("bob", Role::Member);
    app.remember_secret(KEY);
    let first = app
        .post(
            "/api/keys",
            &alice,
            json!({"service": "anthropic", "api_key": KEY}),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let second = app
        .post(
            "/api/keys",
            &alice,
            json!({"service": "OpenAI", "api_key": KEY}),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    assert!(second > first);

    app.put(
        &format!("/api/keys/{first}"),
        &alice,
        json!({"api_key": KEY}),
    )
    .await;
    let ids: Vec<i64> = app
        .get("/api/keys", &alice)
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [second, first],
        "newest first, ids unchanged by an update"
    );

    assert_eq!(
        app.put(&format!("/api/keys/{first}"), &bob, json!({"api_key": KEY}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.request(
            Method::DELETE,
            &format!("/api/keys/{first}"),
            Some(&bob),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/api/keys", &bob).await.body, json!([]));
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn bad_input_names_the_field_and_appends_nothing() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    for (body, field) in [
        (json!({"service": "OPENAI", "api_key": "  "}), "api_key"),
        (
            json!({"service": "telepathy", "api_key": "sk-123456789"}),
            "service",
        ),
        (json!({"service": "OPENAI"}), "api_key"),
    ] {
        let response = app.post("/api/keys", &token, body).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{}",
            response.text
        );
        assert_eq!(
            response.body["errors"][0]["field"], field,
            "{}",
            response.text
        );
    }
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn a_key_stored_through_family_d_is_audited_with_its_hint() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    app.remember_secret(KEY);
    app.post(
        "/api/keys",
        &token,
        json!({"service": "OPENAI", "api_key": KEY}),
    )
    .await;

    let history = app
        .get("/api/v1/history?type=CredentialAdded", &token)
        .await;

    assert_eq!(history.body["events"][0]["details"]["hint"], "sk-...1234");
    assert_eq!(history.body["events"][0]["owner"], "user:alice");
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn keys_stored_through_families_a_and_c_are_listed_and_editable_here() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    app.remember_secret("sk-ant-seed002-user-key-00002222");
    app.put(
        "/api/user/api-keys",
        &token,
        json!({"openrouter": {"apiKey": "sk-ant-seed002-user-key-00002222"}}),
    )
    .await;

    let listed = app.get("/api/keys", &token).await;

    let services: Vec<(&str, &str)> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["service"].as_str().unwrap(),
                k["last_4_chars"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(services.len(), 3, "{}", listed.text);
    for expected in [
        ("OPENAI", "sk-...cdef"),
        ("ANTHROPIC", "sk-...wxyz"),
        ("OPENROUTER", "sk-...2222"),
    ] {
        assert!(services.contains(&expected), "{expected:?} in {services:?}");
    }
    let openai = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["service"] == "OPENAI")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    app.remember_secret("sk-rotated-through-family-d-3333");
    app.put(
        &format!("/api/keys/{openai}"),
        &token,
        json!({"api_key": "sk-rotated-through-family-d-3333"}),
    )
    .await;
    let family_a = app.get("/api/v1/get/ai-model-config", &token).await;
    assert_eq!(family_a.body["models"][0]["keyHint"], "sk-...3333");
    app.assert_no_plain_key_anywhere().await;
}

/// A key stored here is the caller's key for the provider everywhere: the personal keys API
/// shows it, resolve serves with it, and removing it there removes it here.
#[tokio::test]
async fn a_key_stored_here_reaches_the_personal_keys_and_resolve() {
    let app = spawn_app().await;
    let token = app.token_with_scope("alice", Role::Member, "keys:ciphertext");
    let key = "sk-ant-seed003-reaches-c-00004321";
    app.remember_secret(key);

    let created = app
        .post(
            "/api/keys",
            &token,
            json!({"service": "ANTHROPIC", "api_key": key}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

    let personal = app.get("/api/user/api-keys", &token).await;
    assert_eq!(personal.status, StatusCode::OK, "{}", personal.text);
    assert_eq!(
        personal.body["anthropic"]["configured"], true,
        "{}",
        personal.text
    );
    assert_eq!(personal.body["anthropic"]["keyHint"], "sk-...4321");
    assert_eq!(personal.body["openai"]["configured"], false);

    let resolved = app.get("/api/v1/resolve?task=chat", &token).await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.text);
    assert_eq!(resolved.body["provider"], "anthropic");
    assert_eq!(resolved.body["source"], "user");
    assert_eq!(resolved.body["keyHint"], "sk-...4321");
    assert!(
        resolved.body["key"]["ciphertext"].is_string(),
        "{}",
        resolved.text
    );

    let removed = app
        .request(
            Method::DELETE,
            "/api/user/api-keys/anthropic",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text);
    assert_eq!(
        removed.body["anthropic"]["configured"], false,
        "{}",
        removed.text
    );
    assert_eq!(app.get("/api/keys", &token).await.body, json!([]));
    app.assert_no_plain_key_anywhere().await;
}
