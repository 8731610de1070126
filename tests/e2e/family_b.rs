//! Family B (seed 001): a workspace's named AI LLM configurations.

use aimc_api::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::fake_provider::FakeProvider;
use crate::harness::*;

const SECRET: &str = "sk-proj-seed001-secret-0123456789";
const ACCESS_KEY: &str = "AKIAEXAMPLEACCESS9876";

fn seed_001_body(app: &TestApp, name: &str) -> Value {
    app.remember_secret(SECRET);
    app.remember_secret(ACCESS_KEY);
    json!({
        "name": name,
        "aiType": "OPENAI",
        "endpoint": "https://api.openai.com/v1",
        "key": ACCESS_KEY,
        "secret": SECRET,
        "workspaceId": app.workspace,
    })
}

fn list_path(app: &TestApp) -> String {
    format!("/ai/llm?workspaceId={}", app.workspace)
}

#[tokio::test]
async fn seed_001_create_and_list_with_credentials_masked() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);

    let created = app
        .post("/ai/llm", &admin, seed_001_body(&app, "My OpenAI Config"))
        .await;

    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    assert_eq!(created.body["success"], true);
    assert_eq!(
        created.body["message"],
        "AI LLM configuration created successfully"
    );
    let id = created.body["aiLlmId"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());

    let listed = app.get(&list_path(&app), &admin).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["success"], true);
    let llm = &listed.body["aiLlms"][0];
    assert_eq!(llm["id"], id.as_str());
    assert_eq!(llm["name"], "My OpenAI Config");
    assert_eq!(llm["aiType"], "OPENAI");
    assert_eq!(llm["endpoint"], "https://api.openai.com/v1");
    assert_eq!(llm["workspaceId"], app.workspace.as_str());
    assert_eq!(llm["userId"], "ada");
    assert_eq!(llm["orgId"], Value::Null);
    assert_eq!(llm["key"], "AKI...9876");
    assert!(llm["createdAt"].is_string());
    assert!(llm.get("secret").is_none());
    let viewer = app.token("vic", Role::Viewer);
    assert_eq!(
        app.get(&list_path(&app), &viewer).await.body["aiLlms"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn invalid_input_is_a_400_in_flashbacks_shape_and_appends_nothing() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    let cases = [
        ("name", json!("")),
        ("name", json!("n".repeat(101))),
        ("endpoint", json!("not a url")),
        ("endpoint", json!("ftp://files.example.com")),
        ("aiType", json!("MISTRAL")),
        ("secret", json!("   ")),
    ];
    for (field, value) in cases {
        let mut body = seed_001_body(&app, "Config");
        body[field] = value;
        let response = app.post("/ai/llm", &admin, body).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{field}: {}",
            response.text
        );
        assert_eq!(response.body["success"], false, "{field}");
        assert!(
            response.body["message"].as_str().unwrap().contains(field),
            "{field}: {}",
            response.text
        );
    }
    let mut missing = seed_001_body(&app, "Config");
    missing.as_object_mut().unwrap().remove("secret");
    let response = app.post("/ai/llm", &admin, missing).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.body["success"], false);
    assert!(
        response.body["message"]
            .as_str()
            .unwrap()
            .contains("secret"),
        "{}",
        response.text
    );
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn only_admins_of_the_workspace_may_write() {
    let app = spawn_app().await;
    let member = app.token("mem", Role::Member);
    let outsider = app.token_for("eve", &[("elsewhere", Role::Owner)], None);

    let by_member = app
        .post("/ai/llm", &member, seed_001_body(&app, "Config"))
        .await;
    let by_outsider = app
        .post("/ai/llm", &outsider, seed_001_body(&app, "Config"))
        .await;

    assert_eq!(by_member.status, StatusCode::FORBIDDEN);
    assert_eq!(by_member.body["success"], false);
    assert_eq!(by_outsider.status, StatusCode::FORBIDDEN);
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn names_are_unique_per_workspace_regardless_of_case_until_renamed_or_deleted() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    let available = |name: &str| {
        format!(
            "/api/v1/names/available?workspaceId={}&name={}",
            app.workspace,
            name.replace(' ', "%20")
        )
    };
    let first = app
        .post("/ai/llm", &admin, seed_001_body(&app, "Prod Key"))
        .await;
    let id = first.body["aiLlmId"].as_str().unwrap().to_owned();

    let duplicate = app
        .post("/ai/llm", &admin, seed_001_body(&app, "prod key"))
        .await;
    assert_eq!(duplicate.status, StatusCode::BAD_REQUEST);
    assert!(duplicate.body["message"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    assert_eq!(
        app.get(&available("PROD KEY"), &admin).await.body["available"],
        false
    );

    let renamed = app
        .put(
            &format!("/ai/llm/{id}"),
            &admin,
            json!({"name": "Staging Key"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    assert_eq!(
        renamed.body["message"],
        "AI LLM configuration updated successfully"
    );
    assert_eq!(
        app.get(&available("Prod Key"), &admin).await.body["available"],
        true
    );
    assert_eq!(
        app.get(&available("Staging Key"), &admin).await.body["available"],
        false
    );

    let deleted = app
        .request(Method::DELETE, &format!("/ai/llm/{id}"), Some(&admin), None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(
        deleted.body,
        json!({"success": true, "message": "AI LLM configuration deleted successfully"})
    );
    assert_eq!(
        app.get(&available("Staging Key"), &admin).await.body["available"],
        true
    );
    let again = app
        .request(Method::DELETE, &format!("/ai/llm/{id}"), Some(&admin), None)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.body["success"], false);
    assert!(app.get(&list_path(&app), &admin).await.body["aiLlms"]
        .as_array()
        .unwrap()
        .is_empty());
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn updating_rotates_the_secret_without_showing_it_and_other_tenants_get_404() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    let created = app
        .post("/ai/llm", &admin, seed_001_body(&app, "Config"))
        .await;
    let id = created.body["aiLlmId"].as_str().unwrap().to_owned();
    app.remember_secret("sk-rotated-secret-000000000042");

    let updated = app
        .put(&format!("/ai/llm/{id}"), &admin, json!({"secret": "sk-rotated-secret-000000000042", "aiType": "anthropic", "endpoint": "https://api.anthropic.com"}))
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    let listed = app.get(&list_path(&app), &admin).await;
    assert_eq!(listed.body["aiLlms"][0]["aiType"], "ANTHROPIC");
    assert_eq!(
        listed.body["aiLlms"][0]["endpoint"],
        "https://api.anthropic.com/"
    );
    // A family B configuration is a credential with a stream of its own.
    let types = app
        .event_types(&format!("{}/credentials/{id}", app.workspace))
        .await;
    assert_eq!(
        &types[types.len() - 3..],
        [
            "CredentialProviderChanged",
            "CredentialEndpointChanged",
            "CredentialSecretReplaced"
        ]
    );

    let stranger = app.token_for("eve", &[("other-tenant", Role::Owner)], None);
    for method in [Method::PUT, Method::DELETE] {
        let response = app
            .request(
                method.clone(),
                &format!("/ai/llm/{id}"),
                Some(&stranger),
                Some(json!({"name": "mine"})),
            )
            .await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{method}");
    }
    let unknown = app
        .put(
            "/ai/llm/00000000-0000-0000-0000-000000000000",
            &admin,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn fifty_concurrent_creates_of_one_name_on_two_replicas_give_exactly_one_success() {
    let app = spawn_app().await;
    let replica = spawn_replica(&app).await;
    let admin = app.token("ada", Role::Admin);

    let creates = (0..50).map(|n| {
        let instance = if n % 2 == 0 { &app } else { &replica };
        let body = seed_001_body(
            &app,
            if n % 3 == 0 {
                "Shared Name"
            } else {
                "shared name"
            },
        );
        let admin = admin.clone();
        async move { instance.post("/ai/llm", &admin, body).await.status }
    });
    let statuses = futures::future::join_all(creates).await;

    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == StatusCode::OK)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|status| *status == StatusCode::OK || *status == StatusCode::BAD_REQUEST),
        "{statuses:?}"
    );
    assert_eq!(
        app.get(&list_path(&app), &admin).await.body["aiLlms"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_workspace_configuration_shows_in_the_audit_history_with_hints_only() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    app.post("/ai/llm", &admin, seed_001_body(&app, "Audited"))
        .await;

    let history = app
        .get(
            "/api/v1/history?owner=workspace&type=CredentialAdded",
            &admin,
        )
        .await;

    let added = &history.body["events"][0];
    assert_eq!(added["owner"], "workspace");
    assert_eq!(added["details"]["name"], "Audited");
    assert_eq!(added["details"]["hint"], "sk-...6789");
    assert_eq!(added["details"]["access_key_hint"], "AKI...9876");
    assert!(
        added["details"].get("access_key").is_none() && added["details"].get("secret").is_none()
    );
    app.assert_no_plain_key_anywhere().await;
}

async fn create_at(app: &TestApp, token: &str, name: &str, endpoint: &str, secret: &str) -> String {
    app.remember_secret(secret);
    let mut body = seed_001_body(app, name);
    body["endpoint"] = json!(endpoint);
    body["secret"] = json!(secret);
    let created = app.post("/ai/llm", token, body).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    created.body["aiLlmId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn validating_calls_the_provider_with_the_stored_key_and_records_the_outcome() {
    let provider = FakeProvider::start("sk-the-one-good-key-000000001").await;
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    let good = create_at(
        &app,
        &admin,
        "Good",
        &format!("{}/v1", provider.address),
        "sk-the-one-good-key-000000001",
    )
    .await;
    let bad = create_at(
        &app,
        &admin,
        "Bad",
        &provider.address,
        "sk-a-revoked-key-0000000000002",
    )
    .await;

    let accepted = app
        .request(
            Method::POST,
            &format!("/ai/llm/{good}/validate"),
            Some(&admin),
            None,
        )
        .await;
    let refused = app
        .request(
            Method::POST,
            &format!("/ai/llm/{bad}/validate"),
            Some(&admin),
            None,
        )
        .await;

    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(accepted.body["success"], true);
    assert_eq!(refused.status, StatusCode::OK);
    assert_eq!(refused.body["success"], false);
    assert!(
        refused.body["message"].as_str().unwrap().contains("401"),
        "{}",
        refused.text
    );
    assert_eq!(provider.calls(), 2);
    let available = app
        .get(
            &format!("/ai/llm/available?workspaceId={}", app.workspace),
            &admin,
        )
        .await;
    let names: Vec<&str> = available.body["aiLlms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Good"]);
    let history = app
        .get("/api/v1/history?type=CredentialValidated", &admin)
        .await;
    let outcomes: Vec<bool> = history.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["ok"].as_bool().unwrap())
        .collect();
    assert_eq!(outcomes, [false, true]);
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn validation_refuses_private_loopback_and_link_local_targets_by_default() {
    let provider = FakeProvider::start("sk-never-sent-anywhere-0000001").await;
    let port = provider.address.rsplit(':').next().unwrap().to_owned();
    let app = spawn_app_with(|settings| settings.allow_private_endpoints = false).await;
    let admin = app.token("ada", Role::Admin);
    let targets = [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        "http://10.0.0.1".to_owned(),
        "http://169.254.169.254".to_owned(),
        format!("http://[::1]:{port}"),
    ];
    for (n, target) in targets.iter().enumerate() {
        let id = create_at(
            &app,
            &admin,
            &format!("Target {n}"),
            target,
            "sk-never-sent-anywhere-0000001",
        )
        .await;

        let validated = app
            .request(
                Method::POST,
                &format!("/ai/llm/{id}/validate"),
                Some(&admin),
                None,
            )
            .await;

        assert_eq!(
            validated.status,
            StatusCode::OK,
            "{target}: {}",
            validated.text
        );
        assert_eq!(validated.body["success"], false, "{target}");
        assert!(
            validated.body["message"]
                .as_str()
                .unwrap()
                .contains("refused to call"),
            "{target}: {}",
            validated.text
        );
    }
    assert_eq!(provider.calls(), 0, "nothing may reach a private address");
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn names_the_service_gave_other_families_keys_are_taken_too() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    app.remember_secret("sk-ant-settings-key-000000000042");
    app.post(
        "/api/v1/settings/providers/anthropic",
        &admin,
        json!({"api_key": "sk-ant-settings-key-000000000042"}),
    )
    .await;

    let clash = app
        .post("/ai/llm", &admin, seed_001_body(&app, "ANTHROPIC KEY"))
        .await;
    let available = app
        .get(
            &format!(
                "/api/v1/names/available?workspaceId={}&name=anthropic%20key",
                app.workspace
            ),
            &admin,
        )
        .await;

    assert_eq!(clash.status, StatusCode::BAD_REQUEST, "{}", clash.text);
    assert_eq!(available.body["available"], false);

    // Family A names its keys itself; those names are registered as its events are projected.
    let alice = app.token("alice", Role::Member);
    create_seed_config(&app, &alice).await;
    let family_a_name = app
        .get(
            &format!(
                "/api/v1/names/available?workspaceId={}&name=alice%20openai%20gpt-4",
                app.workspace
            ),
            &admin,
        )
        .await;
    assert_eq!(
        family_a_name.body["available"], false,
        "{}",
        family_a_name.text
    );
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn validation_does_not_follow_redirects() {
    let provider = FakeProvider::start("sk-redirect-target-key-0000001").await;
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    let id = create_at(
        &app,
        &admin,
        "Moved",
        &format!("{}/moved", provider.address),
        "sk-redirect-target-key-0000001",
    )
    .await;

    let validated = app
        .request(
            Method::POST,
            &format!("/ai/llm/{id}/validate"),
            Some(&admin),
            None,
        )
        .await;

    assert_eq!(validated.body["success"], false, "{}", validated.text);
    assert!(
        validated.body["message"].as_str().unwrap().contains("302"),
        "{}",
        validated.text
    );
    assert_eq!(provider.calls(), 1, "the redirect target was never called");
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn endpoints_may_not_carry_credentials_or_query_strings() {
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    for endpoint in [
        "https://user:pass@api.openai.com/v1",
        "https://generativelanguage.googleapis.com/v1beta?key=AIzaSECRET",
    ] {
        let mut body = seed_001_body(&app, "Config");
        body["endpoint"] = json!(endpoint);
        let refused = app.post("/ai/llm", &admin, body).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{endpoint}");
        assert!(refused.body["message"]
            .as_str()
            .unwrap()
            .contains("endpoint"));
    }
    assert_eq!(app.event_count().await, 0);
}

/// Only the provider refusing the key (401 or 403) makes it unusable: a provider that cannot be
/// reached says nothing about the key, and resolve keeps serving with it.
#[tokio::test]
async fn an_unreachable_provider_leaves_the_key_usable_and_a_refusal_does_not() {
    let provider = FakeProvider::start("sk-the-one-good-key-000000003").await;
    let app = spawn_app().await;
    let admin = app.token("ada", Role::Admin);
    let member = app.token("bob", Role::Member);
    // Nothing listens on the discard port of the loopback.
    let unreachable = create_at(
        &app,
        &admin,
        "Unreachable",
        "http://127.0.0.1:9/v1",
        "sk-unreachable-key-000000000007",
    )
    .await;

    let tested = app
        .request(
            Method::POST,
            &format!("/ai/llm/{unreachable}/validate"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text);
    assert_eq!(tested.body["success"], false, "{}", tested.text);
    let resolved = app.get("/api/v1/resolve?task=chat", &member).await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.text);
    assert_eq!(resolved.body["keyHint"], "sk-...0007", "{}", resolved.text);

    app.request(
        Method::DELETE,
        &format!("/ai/llm/{unreachable}"),
        Some(&admin),
        None,
    )
    .await;
    let refused = create_at(
        &app,
        &admin,
        "Refused",
        &format!("{}/v1", provider.address),
        "sk-a-revoked-key-0000000000008",
    )
    .await;
    app.request(
        Method::POST,
        &format!("/ai/llm/{refused}/validate"),
        Some(&admin),
        None,
    )
    .await;
    let nothing = app.get("/api/v1/resolve?task=chat", &member).await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND, "{}", nothing.text);
}
