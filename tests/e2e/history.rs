//! The audit trail: newest first, paged, filtered, masked, and scoped by role.

use aimc_api::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn history_lists_changes_newest_first_with_actor_and_masked_details() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    let created = app
        .request_with(
            reqwest::Method::POST,
            "/api/v1/create/ai-model-config",
            Some(&token),
            |r| {
                r.header("x-request-id", "req-42")
                    .header(
                        "traceparent",
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    )
                    .json(&json!({"models": [], "system_prompt": "first"}))
            },
        )
        .await;
    assert_eq!(created.headers["x-request-id"], "req-42");
    let key = app
        .encrypt_key(&token, "sk-history-key-0000000000abcd")
        .await;
    app.put(
        "/api/v1/update/ai-model-config",
        &token,
        json!({"models": [{"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": key, "isPaid": true}]}),
    )
    .await;

    let history = app.get("/api/v1/history", &token).await;

    assert_eq!(history.status, StatusCode::OK);
    let events = history.body["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "ModelCredentialAttached",
            "CredentialAdded",
            "ModelAdded",
            "SystemPromptChanged",
            "ConfigCreated"
        ]
    );
    assert!(events
        .iter()
        .all(|e| e["actor"] == "alice" && e["owner"] == "user:alice"));
    let credential = &events[1]["details"];
    assert_eq!(credential["hint"], "sk-...abcd");
    assert!(
        credential.get("secret").is_none(),
        "ciphertext is not part of the audit details"
    );
    assert_eq!(events[4]["requestId"], "req-42");
    let trace_id: String =
        sqlx::query_scalar("SELECT (metadata::jsonb)->>'trace_id' FROM events WHERE sequence = 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        trace_id, "4bf92f3577b34da6a3ce929d0e0e4736",
        "the caller's W3C trace id is recorded"
    );
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn history_pages_by_cursor_and_filters_by_type() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    app.post(
        "/api/v1/create/ai-model-config",
        &token,
        json!({"models": []}),
    )
    .await;
    for n in 0..7 {
        app.put(
            "/api/v1/update/ai-model-config",
            &token,
            json!({"models": [], "system_prompt": format!("p{n}")}),
        )
        .await;
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/history?limit=3&cursor={cursor}"),
            None => "/api/v1/history?limit=3".to_owned(),
        };
        let page = app.get(&path, &token).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        seen.extend(
            page.body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["sequence"].as_i64().unwrap()),
        );
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, (1..=8).rev().collect::<Vec<i64>>());

    let prompts = app
        .get("/api/v1/history?type=SystemPromptChanged", &token)
        .await;
    assert_eq!(prompts.body["events"].as_array().unwrap().len(), 7);
    let unknown = app.get("/api/v1/history?type=Nonsense", &token).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.body["errors"][0]["field"], "type");
    let bad_cursor = app.get("/api/v1/history?cursor=garbage", &token).await;
    assert_eq!(bad_cursor.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn members_see_their_own_history_and_admins_see_everyones() {
    let app = spawn_app().await;
    let alice = app.token("alice", Role::Member);
    let bob = app.token("bob", Role::Member);
    let admin = app.token("ada", Role::Admin);
    app.post(
        "/api/v1/create/ai-model-config",
        &alice,
        json!({"models": []}),
    )
    .await;
    app.post(
        "/api/v1/create/ai-model-config",
        &bob,
        json!({"models": []}),
    )
    .await;

    let bobs_view = app.get("/api/v1/history", &bob).await;
    let bob_peeking = app.get("/api/v1/history?owner=user:alice", &bob).await;
    let admins_view = app.get("/api/v1/history", &admin).await;
    let admin_filtered = app.get("/api/v1/history?owner=user:alice", &admin).await;

    assert!(bobs_view.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["owner"] == "user:bob"));
    assert_eq!(bob_peeking.status, StatusCode::FORBIDDEN);
    assert_eq!(admins_view.body["events"].as_array().unwrap().len(), 2);
    assert!(admin_filtered.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["owner"] == "user:alice"));
}

/// "Who changed the OpenAI key last week": filters by provider, credential and actor, every
/// credential entry names its provider and name, a new secret shows the hint it replaced, and
/// a filter the operation does not know is refused rather than silently ignored.
#[tokio::test]
async fn history_answers_who_changed_the_openai_key() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    let alice = app.token("alice", Role::Member);
    for key in [
        "sk-openai-first-000000000aaaa",
        "sk-openai-second-00000000bbbb",
        "sk-ant-other-0000000000cccc",
    ] {
        app.remember_secret(key);
    }
    let created = app
        .post(
            "/api/keys",
            &alice,
            json!({"service": "OPENAI", "api_key": "sk-openai-first-000000000aaaa"}),
        )
        .await;
    let number = created.body["id"].as_i64().unwrap();
    app.post(
        "/api/keys",
        &alice,
        json!({"service": "ANTHROPIC", "api_key": "sk-ant-other-0000000000cccc"}),
    )
    .await;
    app.put(
        &format!("/api/keys/{number}"),
        &alice,
        json!({"api_key": "sk-openai-second-00000000bbbb"}),
    )
    .await;

    let openai = app.get("/api/v1/history?provider=openai", &admin).await;
    assert_eq!(openai.status, StatusCode::OK, "{}", openai.text);
    let events = openai.body["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["CredentialSecretReplaced", "CredentialAdded"],
        "{}",
        openai.text
    );
    assert!(events.iter().all(|e| e["details"]["provider"] == "openai"));
    let replaced = &events[0];
    assert_eq!(replaced["actor"], "alice");
    assert_eq!(replaced["details"]["hint"], "sk-...bbbb");
    assert_eq!(replaced["details"]["previous_hint"], "sk-...aaaa");
    assert_eq!(replaced["details"]["name"], events[1]["details"]["name"]);
    assert!(
        !replaced["details"]["name"]
            .as_str()
            .unwrap()
            .contains("user:"),
        "generated names do not show internal owner ids: {}",
        openai.text
    );

    let credential = replaced["details"]["credential_id"].as_str().unwrap();
    let by_credential = app
        .get(&format!("/api/v1/history?credential={credential}"), &admin)
        .await;
    assert_eq!(by_credential.body["events"].as_array().unwrap().len(), 2);
    let by_actor = app.get("/api/v1/history?actor=nobody", &admin).await;
    assert_eq!(by_actor.body["events"], json!([]));

    let unknown = app.get("/api/v1/history?credentail=x", &admin).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text);
    assert_eq!(unknown.body["errors"][0]["field"], "credentail");
    let pasted = app
        .get("/api/v1/history?sk-proj-pasted-key-000123=1", &admin)
        .await;
    assert_eq!(pasted.status, StatusCode::BAD_REQUEST, "{}", pasted.text);
    assert!(!pasted.text.contains("sk-proj-pasted"), "{}", pasted.text);
    let bad_provider = app.get("/api/v1/history?provider=openia", &admin).await;
    assert_eq!(
        bad_provider.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_provider.text
    );
}
