//! Retrying a write with an `Idempotency-Key`: answered once, applied once.

use aimc_api::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

const SECRET: &str = "sk-idempotency-secret-00112233445566";

fn family_b_body(app: &TestApp, name: &str) -> Value {
    app.remember_secret(SECRET);
    json!({
        "name": name,
        "aiType": "OPENAI",
        "endpoint": "https://api.openai.com/v1",
        "secret": SECRET,
        "workspaceId": app.workspace,
    })
}

async fn keyed(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    key: &str,
    body: Option<Value>,
) -> TestResponse {
    let key = key.to_owned();
    app.request_with(method, path, Some(token), move |request| {
        let request = request.header("Idempotency-Key", key);
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
    })
    .await
}

async fn credentials_named(app: &TestApp, name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events
          WHERE event_type = 'CredentialAdded' AND payload::text LIKE '%' || $1 || '%'",
    )
    .bind(format!("\"{name}\""))
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// Item 10 of the hardening issue: a client that saw its connection reset retries its POST.
#[tokio::test]
async fn a_retried_post_with_the_same_key_returns_the_first_answer_and_creates_one_credential() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    let body = family_b_body(&app, "Retried config");

    let first = keyed(
        &app,
        Method::POST,
        "/ai/llm",
        &admin,
        "retry-1",
        Some(body.clone()),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let events = app.event_count().await;
    let retried = keyed(&app, Method::POST, "/ai/llm", &admin, "retry-1", Some(body)).await;

    assert_eq!(retried.status, StatusCode::OK);
    assert_eq!(retried.text, first.text, "the first answer, byte for byte");
    assert_eq!(retried.headers["idempotent-replayed"], "true");
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(
        app.event_count().await,
        events,
        "the retry appended nothing"
    );
    assert_eq!(credentials_named(&app, "Retried config").await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_422_in_each_familys_shape() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);

    let first = keyed(
        &app,
        Method::POST,
        "/ai/llm",
        &admin,
        "k-b",
        Some(family_b_body(&app, "One")),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let events = app.event_count().await;
    let other = keyed(
        &app,
        Method::POST,
        "/ai/llm",
        &admin,
        "k-b",
        Some(family_b_body(&app, "Two")),
    )
    .await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.text
    );
    assert_eq!(other.body["success"], false);
    assert!(other.body["message"]
        .as_str()
        .unwrap()
        .contains("Idempotency-Key"));
    assert_eq!(app.event_count().await, events);
    assert_eq!(credentials_named(&app, "Two").await, 0);

    // Family C answers problem details naming the header.
    let c =
        |key: &str| json!({"openai": {"apiKey": format!("sk-proj-idempotency-{key}-0123456789")}});
    app.remember_secret("sk-proj-idempotency-x-0123456789");
    let saved = keyed(
        &app,
        Method::PUT,
        "/api/user/api-keys",
        &admin,
        "k-c",
        Some(c("x")),
    )
    .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    let reused = keyed(
        &app,
        Method::PUT,
        "/api/user/api-keys",
        &admin,
        "k-c",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        reused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reused.text
    );
    assert_eq!(
        reused.body["type"],
        "urn:aimc:problem:idempotency-key-reused"
    );
    assert_eq!(reused.body["errors"][0]["field"], "Idempotency-Key");

    // Family E answers FastAPI's validation shape.
    let assignments = json!({"assignments": [{"task": "summarise", "provider": "openai"}]});
    let e = keyed(
        &app,
        Method::POST,
        "/api/v1/settings/task-assignments",
        &admin,
        "k-c",
        Some(assignments),
    )
    .await;
    assert_eq!(
        e.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a key is the caller's, across paths: {}",
        e.text
    );
    assert_eq!(
        e.body["detail"][0]["loc"],
        json!(["header", "Idempotency-Key"])
    );
}

#[tokio::test]
async fn keys_belong_to_their_caller_and_a_malformed_key_is_refused() {
    let app = spawn_app().await;
    let ada = app.token("ada", Role::Admin);
    let bob = app.token("bob", Role::Admin);

    let by_ada = keyed(
        &app,
        Method::POST,
        "/ai/llm",
        &ada,
        "shared-key",
        Some(family_b_body(&app, "Ada's")),
    )
    .await;
    let by_bob = keyed(
        &app,
        Method::POST,
        "/ai/llm",
        &bob,
        "shared-key",
        Some(family_b_body(&app, "Bob's")),
    )
    .await;
    assert_eq!(by_ada.status, StatusCode::OK, "{}", by_ada.text);
    assert_eq!(
        by_bob.status,
        StatusCode::OK,
        "another caller's key is another key: {}",
        by_bob.text
    );
    assert_ne!(by_ada.body["aiLlmId"], by_bob.body["aiLlmId"]);

    let events = app.event_count().await;
    let too_long = "k".repeat(256);
    for key in [too_long.as_str(), "has space", "naïve"] {
        let refused = app
            .request_with(Method::POST, "/ai/llm", Some(&ada), |request| {
                request
                    .header("Idempotency-Key", key)
                    .json(&family_b_body(&app, "Refused"))
            })
            .await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{key}: {}",
            refused.text
        );
        assert!(refused.text.contains("Idempotency-Key"), "{}", refused.text);
    }
    assert_eq!(
        app.event_count().await,
        events,
        "a refused key appends nothing"
    );
}

#[tokio::test]
async fn a_retried_delete_answers_as_the_first_time_instead_of_404() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    let created = app
        .post("/ai/llm", &admin, family_b_body(&app, "Doomed"))
        .await;
    let id = created.body["aiLlmId"].as_str().unwrap().to_owned();
    let path = format!("/ai/llm/{id}?workspaceId={}", app.workspace);

    let first = keyed(&app, Method::DELETE, &path, &admin, "del-1", None).await;
    let retried = keyed(&app, Method::DELETE, &path, &admin, "del-1", None).await;
    let unkeyed = app.request(Method::DELETE, &path, Some(&admin), None).await;

    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!((retried.status, retried.text), (first.status, first.text));
    assert_eq!(
        unkeyed.status,
        StatusCode::NOT_FOUND,
        "without a key, a second delete finds nothing"
    );
}

/// The process answering the first request stopped after its events were committed and before
/// its answer was kept: the retry must not apply the request again.
#[tokio::test]
async fn a_retry_after_the_answer_was_lost_is_told_the_request_was_applied_not_applied_twice() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    let body = family_b_body(&app, "Applied once");
    let first = keyed(
        &app,
        Method::POST,
        "/ai/llm",
        &admin,
        "lost-1",
        Some(body.clone()),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    // As a process killed between the commit and keeping the answer leaves it: claimed, no
    // answer, long ago.
    sqlx::query(
        "UPDATE idempotency_keys SET status = NULL, headers = NULL, body = NULL,
                claimed_at = now() - interval '10 minutes'
          WHERE key = 'lost-1'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let events = app.event_count().await;

    let retried = keyed(
        &app,
        Method::POST,
        "/ai/llm",
        &admin,
        "lost-1",
        Some(body.clone()),
    )
    .await;

    assert_eq!(
        retried.status,
        StatusCode::BAD_REQUEST,
        "family B says 409 as 400: {}",
        retried.text
    );
    assert!(retried.body["message"]
        .as_str()
        .unwrap()
        .contains("was applied"));
    assert_eq!(app.event_count().await, events);
    assert_eq!(credentials_named(&app, "Applied once").await, 1);

    // A claim abandoned before anything was appended is answered anew.
    sqlx::query(
        "INSERT INTO idempotency_keys (caller, key, fingerprint, claimed_at)
         SELECT caller, 'never-applied', fingerprint, now() - interval '10 minutes'
           FROM idempotency_keys WHERE key = 'lost-1'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let answered = keyed(
        &app,
        Method::POST,
        "/ai/llm",
        &admin,
        "never-applied",
        Some(body),
    )
    .await;
    // Answered anew: as a second create with that name, refused since the first holds it.
    assert_eq!(
        answered.status,
        StatusCode::BAD_REQUEST,
        "{}",
        answered.text
    );
    assert!(!answered.body["message"]
        .as_str()
        .unwrap()
        .contains("was applied"));
    assert_eq!(credentials_named(&app, "Applied once").await, 1);
}
