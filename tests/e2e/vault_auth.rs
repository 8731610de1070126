//! Vault authentication (`AIMC_VAULT_AUTH`) against the real OpenBao: short-lived tokens that
//! aimc must renew, and AppRole logins it must repeat when a token reaches its max TTL.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aimc_api::Role;
use aimc_server::configuration::{Settings, VaultAuthMethod};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::harness::*;

/// The suite's OpenBao, driven with its root token: what an operator does before aimc starts.
struct VaultAdmin {
    address: String,
    token: String,
    client: reqwest::Client,
}

impl VaultAdmin {
    fn from_env() -> Self {
        VaultAdmin {
            address: std::env::var("AIMC_VAULT_ADDR").expect("AIMC_VAULT_ADDR"),
            token: std::env::var("AIMC_VAULT_TOKEN").expect("AIMC_VAULT_TOKEN"),
            client: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method.clone(), format!("{}/v1/{path}", self.address))
            .header("X-Vault-Token", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("OpenBao answers");
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A policy allowing transit with the keys of one key prefix only, as an operator would
    /// give aimc.
    async fn transit_policy(&self, name: &str, key_prefix: &str) {
        let policy = ["keys", "encrypt", "decrypt", "rewrap"]
            .iter()
            .map(|path| {
                format!(
                    "path \"transit/{path}/{key_prefix}-*\" {{ capabilities = [\"create\", \"read\", \"update\"] }}\n"
                )
            })
            .collect::<String>();
        self.call(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": policy })),
        )
        .await;
    }

    /// The tokens Vault holds that were issued by logins at `mount`: accessor → last renewal
    /// time (0 when never renewed).
    async fn tokens_from(&self, mount: &str) -> BTreeMap<String, i64> {
        let listed = self.call("LIST", "auth/token/accessors", None).await;
        let mut tokens = BTreeMap::new();
        for accessor in listed["data"]["keys"].as_array().into_iter().flatten() {
            let accessor = accessor.as_str().unwrap();
            let looked_up = self
                .client
                .post(format!("{}/v1/auth/token/lookup-accessor", self.address))
                .header("X-Vault-Token", &self.token)
                .json(&json!({ "accessor": accessor }))
                .send()
                .await
                .unwrap();
            // A token may expire between the listing and its lookup.
            if !looked_up.status().is_success() {
                continue;
            }
            let data = looked_up.json::<Value>().await.unwrap()["data"].clone();
            if data["path"].as_str() == Some(&format!("auth/{mount}/login")) {
                tokens.insert(
                    accessor.to_owned(),
                    data["last_renewal_time"].as_i64().unwrap_or(0),
                );
            }
        }
        tokens
    }
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

/// The value of one sample in `/metrics`, 0 when absent.
fn metric(exposition: &str, sample: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Replaces the configuration's OpenAI key with `plain` (encrypted by the client, so aimc
/// decrypts it in Vault and encrypts it again there) and reads back its hint.
async fn write_and_read_a_key(app: &TestApp, token: &str, plain: &str) {
    let encrypted = app.encrypt_key(token, plain).await;
    let body = json!({
        "models": [{"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": encrypted, "isPaid": true}],
        "system_prompt": "renewals"
    });
    let written = app.put("/api/v1/update/ai-model-config", token, body).await;
    assert_eq!(written.status, StatusCode::OK, "{}", written.text);
    let read = app.get("/api/v1/get/ai-model-config", token).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    let hint = format!("sk-...{}", &plain[plain.len() - 4..]);
    assert_eq!(read.body["models"][0]["keyHint"], hint.as_str());
}

async fn create_config(app: &TestApp, token: &str) {
    let encrypted = app.encrypt_key(token, "sk-proj-first-key-00000000").await;
    let created = app
        .post(
            "/api/v1/create/ai-model-config",
            token,
            json!({"models": [{"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": encrypted, "isPaid": true}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
}

/// Writes and reads keys every half second for `duration`.
async fn keep_writing(app: &TestApp, token: &str, duration: Duration) {
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < duration {
        round += 1;
        let plain = format!("sk-proj-renewal-{round:04}-key-{:04}", round * 7);
        write_and_read_a_key(app, token, &plain).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn approle_tokens_are_renewed_and_replaced_by_a_new_login_past_their_max_ttl() {
    let admin = VaultAdmin::from_env();
    let mut settings = test_settings().await;
    let suffix = random_suffix();
    let mount = format!("approle-e2e-{suffix}");
    let policy = format!("aimc-e2e-{suffix}");
    admin
        .call(
            "POST",
            &format!("sys/auth/{mount}"),
            Some(json!({"type": "approle"})),
        )
        .await;
    admin
        .transit_policy(&policy, &settings.vault_key_prefix)
        .await;
    admin
        .call(
            "POST",
            &format!("auth/{mount}/role/aimc"),
            Some(json!({"token_ttl": "3s", "token_max_ttl": "8s", "token_policies": [policy]})),
        )
        .await;
    let role_id = admin
        .call("GET", &format!("auth/{mount}/role/aimc/role-id"), None)
        .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = admin
        .call("POST", &format!("auth/{mount}/role/aimc/secret-id"), None)
        .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_file = std::env::temp_dir().join(format!("aimc-secret-id-{suffix}"));
    std::fs::write(&secret_file, format!("{secret_id}\n")).unwrap();

    settings.vault_token = None;
    settings.vault_auth = VaultAuthMethod::Approle;
    settings.vault_auth_mount = Some(mount.clone());
    settings.vault_approle_role_id = Some(role_id);
    settings.vault_approle_secret_id_file = Some(secret_file.clone());
    let app = spawn_app_from(settings, &format!("ws-{suffix}")).await;
    let token = app.token("alice", Role::Member);
    create_config(&app, &token).await;

    // Three times the max TTL of 8 s: no token of the first login is valid by then. Vault's
    // own view is sampled meanwhile: the tokens its logins at our mount issued (an expired one
    // disappears), and when each was last renewed.
    let mut seen: BTreeMap<String, i64> = BTreeMap::new();
    let mut last_scan: Option<Instant> = None;
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(24) {
        round += 1;
        let plain = format!("sk-proj-renewal-{round:04}-key-{:04}", round * 7);
        write_and_read_a_key(&app, &token, &plain).await;
        if last_scan.is_none_or(|at| at.elapsed() > Duration::from_millis(1500)) {
            last_scan = Some(Instant::now());
            for (accessor, renewed) in admin.tokens_from(&mount).await {
                let entry = seen.entry(accessor).or_default();
                *entry = (*entry).max(renewed);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let exposition = app.request(Method::GET, "/metrics", None, None).await.text;
    let logins = metric(
        &exposition,
        "aimc_vault_logins_total{method=\"approle\",outcome=\"ok\"}",
    );
    let renewals = metric(
        &exposition,
        "aimc_vault_token_renewals_total{outcome=\"ok\"}",
    );
    assert!(
        logins >= 3.0,
        "a login at start and one per max TTL after: {logins}\n{exposition}"
    );
    assert!(renewals >= 3.0, "renewals within each max TTL: {renewals}");
    assert!(seen.len() >= 3, "Vault issued a token per login: {seen:?}");
    assert!(
        seen.values().filter(|renewed| **renewed > 0).count() >= 2,
        "Vault shows the tokens renewed: {seen:?}"
    );
    let logs = captured_log_text();
    assert!(!logs.contains(&secret_id), "the secret id was logged");

    app.stop().await;
    admin
        .call("DELETE", &format!("sys/auth/{mount}"), None)
        .await;
    admin
        .call("DELETE", &format!("sys/policies/acl/{policy}"), None)
        .await;
    let _ = std::fs::remove_file(secret_file);
}

#[tokio::test]
async fn a_renewable_token_given_with_the_token_method_is_kept_alive() {
    let admin = VaultAdmin::from_env();
    let mut settings = test_settings().await;
    let policy = format!("aimc-e2e-{}", random_suffix());
    admin
        .transit_policy(&policy, &settings.vault_key_prefix)
        .await;
    // Renewable, 3 s at a time, without a max TTL of its own.
    let created = admin
        .call(
            "POST",
            "auth/token/create",
            Some(json!({"policies": [policy], "ttl": "3s", "renewable": true, "no_parent": true})),
        )
        .await;
    let vault_token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    settings.vault_token = Some(SecretString::from(vault_token.clone()));
    let app = spawn_app_from(settings, &format!("ws-{}", random_suffix())).await;
    let token = app.token("alice", Role::Member);
    create_config(&app, &token).await;

    keep_writing(&app, &token, Duration::from_secs(9)).await;
    let looked_up = admin
        .call(
            "POST",
            "auth/token/lookup",
            Some(json!({ "token": vault_token })),
        )
        .await;
    assert!(
        looked_up["data"]["last_renewal_time"].as_i64().unwrap_or(0) > 0,
        "{looked_up}"
    );
    assert!(
        !captured_log_text().contains(&vault_token),
        "the token was logged"
    );

    app.stop().await;
    admin
        .call(
            "POST",
            "auth/token/revoke",
            Some(json!({ "token": vault_token })),
        )
        .await;
    admin
        .call("DELETE", &format!("sys/policies/acl/{policy}"), None)
        .await;
}

#[tokio::test]
async fn an_approle_login_vault_refuses_stops_the_start_naming_the_settings() {
    let admin = VaultAdmin::from_env();
    let suffix = random_suffix();
    let mount = format!("approle-e2e-{suffix}");
    admin
        .call(
            "POST",
            &format!("sys/auth/{mount}"),
            Some(json!({"type": "approle"})),
        )
        .await;
    admin
        .call(
            "POST",
            &format!("auth/{mount}/role/aimc"),
            Some(json!({"token_ttl": "60s"})),
        )
        .await;
    let role_id = admin
        .call("GET", &format!("auth/{mount}/role/aimc/role-id"), None)
        .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let with = |settings: &mut Settings| {
        settings.vault_token = None;
        settings.vault_auth = VaultAuthMethod::Approle;
        settings.vault_auth_mount = Some(mount.clone());
        settings.vault_approle_role_id = Some(role_id.clone());
        settings.vault_approle_secret_id = Some(SecretString::from("not-the-secret-id"));
    };
    let mut settings = test_settings().await;
    with(&mut settings);
    let error = match aimc_server::startup::Application::build(settings).await {
        Ok(_) => panic!("the service started with a wrong secret id"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("approle login failed"), "{error}");
    assert!(error.contains("AIMC_VAULT_APPROLE_ROLE_ID"), "{error}");
    assert!(!error.contains("not-the-secret-id"), "{error}");

    admin
        .call("DELETE", &format!("sys/auth/{mount}"), None)
        .await;
}
