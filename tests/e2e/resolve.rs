//! Resolution of a task to a provider, model and key: the caller's key, then the workspace's,
//! then the system's fallback; paid models skipped on request.

use aimc_api::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::*;

const SYSTEM_KEY: &str = "sk-system-fallback-openai-00009999";
const USER_KEY: &str = "sk-ant-user-own-key-000000004444";
const WORKSPACE_KEY: &str = "sk-ant-workspace-key-00000005555";

async fn app_with_system_key() -> TestApp {
    let path = std::env::temp_dir().join(format!(
        "aimc-system-keys-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, format!("[openai]\napi_key = \"{SYSTEM_KEY}\"\n")).unwrap();
    let app = spawn_app_with(|settings| settings.system_keys_file = Some(path.clone())).await;
    app.remember_secret(SYSTEM_KEY);
    app.remember_secret(USER_KEY);
    app.remember_secret(WORKSPACE_KEY);
    app
}

#[tokio::test]
async fn the_callers_key_wins_over_the_workspaces_which_wins_over_the_systems() {
    let app = app_with_system_key().await;
    let alice = app.token_with_scope("alice", Role::Member, "keys:ciphertext");
    let admin = app.token("ada", Role::Admin);
    let bob = app.token("bob", Role::Member);

    // Nothing configured: the system fallback, whose key is never handed out.
    let system = app.get("/api/v1/resolve?task=chat", &alice).await;
    assert_eq!(system.status, StatusCode::OK, "{}", system.text);
    assert_eq!(system.body["source"], "system");
    assert_eq!(system.body["provider"], "openai");
    assert_eq!(system.body["model"], "gpt-4o");
    assert!(system.body.get("key").is_none() && system.body.get("keyHint").is_none());

    // The workspace's Anthropic key, assigned to the task.
    app.post(
        "/api/v1/settings/providers/anthropic",
        &admin,
        json!({"api_key": WORKSPACE_KEY}),
    )
    .await;
    app.post(
        "/api/v1/settings/task-assignments",
        &admin,
        json!({"assignments": [{"task": "chat", "provider": "anthropic", "model": "claude-sonnet-4-20250514"}]}),
    )
    .await;
    let workspace = app.get("/api/v1/resolve?task=chat", &bob).await;
    assert_eq!(workspace.body["source"], "workspace");
    assert_eq!(workspace.body["provider"], "anthropic");
    assert_eq!(workspace.body["keyHint"], "sk-...5555");
    assert!(
        workspace.body.get("key").is_none(),
        "no ciphertext without the scope"
    );

    // Alice's own Anthropic key takes precedence, and she may have its ciphertext.
    app.put(
        "/api/user/api-keys",
        &alice,
        json!({"anthropic": {"apiKey": USER_KEY}}),
    )
    .await;
    let own = app.get("/api/v1/resolve?task=chat", &alice).await;
    assert_eq!(own.body["source"], "user");
    assert_eq!(own.body["keyHint"], "sk-...4444");
    let key = &own.body["key"];
    assert!(key["ciphertext"].as_str().unwrap().starts_with("vault:v1:"));
    assert_eq!(key["mount"], "transit");
    assert!(key["keyName"]
        .as_str()
        .unwrap()
        .ends_with(&format!("-aes-{}", app.workspace)));
    assert!(key["context"].is_string());
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn free_only_skips_paid_models_and_nothing_free_is_a_404() {
    let app = app_with_system_key().await;
    let alice = app.token("alice", Role::Member);
    app.post(
        "/api/v1/create/ai-model-config",
        &alice,
        json!({"models": [
            {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "isPaid": true},
            {"provider": "Ollama", "type": "chat", "model": "llama3", "isPaid": false}
        ]}),
    )
    .await;

    let any = app.get("/api/v1/resolve?task=chat", &alice).await;
    let free = app
        .get("/api/v1/resolve?task=chat&freeOnly=true", &alice)
        .await;

    assert_eq!(any.body["provider"], "openai");
    assert_eq!(
        any.body["source"], "system",
        "alice's gpt-4 has no key of hers: the system's serves it"
    );
    assert_eq!(free.body["provider"], "ollama");
    assert_eq!(free.body["isPaid"], false);
    assert_eq!(free.body["source"], "none");

    let stranger = spawn_app().await;
    let nothing = stranger
        .get(
            "/api/v1/resolve?task=chat&freeOnly=true",
            &stranger.token("x", Role::Viewer),
        )
        .await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND);
    app.assert_no_plain_key_anywhere().await;
}
