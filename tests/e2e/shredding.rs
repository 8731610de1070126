//! Crypto-shredding a workspace against the real OpenBao: its keys destroyed, so that what the
//! immutable log still holds no longer decrypts; its read model emptied and its names freed;
//! its history kept without hints; and the workspace usable again with new keys.

use aimc_api::shredding::{Shredded, Shredding};
use aimc_api::Role;
use aimc_domain::{CredentialCommand, WorkspaceId};
use aimc_store::CredentialRow;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::*;
use crate::rotation::{keys_in_every_family, operator, Parts};

impl Parts {
    async fn shred(&self, workspace: &WorkspaceId) -> Shredded {
        Shredding {
            commands: &self.commands,
            credentials: &self.credentials,
            keyring: self.keyring.as_ref(),
            concurrency: 4,
        }
        .run(workspace, &operator())
        .await
        .expect("the shred succeeds")
    }
}

/// What the read model holds of the workspace, table by table.
async fn rows_of(app: &TestApp) -> [i64; 3] {
    let mut counts = [0; 3];
    for (count, table) in
        counts
            .iter_mut()
            .zip(["config_view", "credential_view", "credential_names"])
    {
        *count = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} WHERE workspace_id = $1"
        ))
        .bind(&app.workspace)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    }
    counts
}

/// The hint aimc shows of a key: its first three and last four characters.
fn hint(plain: &str) -> String {
    format!("{}...{}", &plain[..3], &plain[plain.len() - 4..])
}

#[tokio::test]
async fn a_shredded_workspace_decrypts_nothing_keeps_its_history_without_hints_and_starts_over() {
    let app = spawn_app().await;
    let workspace = WorkspaceId::parse(&app.workspace).unwrap();
    let member = app.token("alice", Role::Member);
    let admin = app.token("ada", Role::Admin);
    let plain = keys_in_every_family(&app).await;
    let parts = Parts::of(&app).await;
    let before: Vec<CredentialRow> = parts.rows(&workspace).await;
    assert!(before.len() >= 4, "{} credentials", before.len());
    for row in &before {
        parts
            .decrypt(row, row.secret.as_ref().unwrap())
            .await
            .expect("before the shred every stored key decrypts");
    }
    // A key a client sealed with the workspace's public key, sent only after the shred.
    let sealed_before = app.encrypt_key(&member, OPENAI_KEY).await;
    assert_ne!(rows_of(&app).await, [0, 0, 0]);

    let shredded = parts.shred(&workspace).await;

    assert_eq!(shredded.configurations, 1, "{shredded:?}");
    assert_eq!(
        shredded.credentials, 2,
        "family B's and D's streams: {shredded:?}"
    );
    assert_eq!(
        rows_of(&app).await,
        [0, 0, 0],
        "the read model holds nothing of it"
    );
    let key_names: Vec<String> = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(b"LIST").unwrap(),
            format!(
                "{}/v1/transit/keys",
                app.settings.vault_addr.as_ref().unwrap()
            ),
        )
        .header(
            "X-Vault-Token",
            secrecy::ExposeSecret::expose_secret(app.settings.vault_token.as_ref().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key.as_str().unwrap().to_owned())
        .collect();
    let prefix = &app.settings.vault_key_prefix;
    for kind in ["aes", "rsa"] {
        let name = format!("{prefix}-{kind}-{workspace}");
        assert!(!key_names.contains(&name), "transit key {name} survived");
    }

    // Decrypting makes the keyring create the workspace's key again: a new one, under which
    // nothing of the old ciphertexts opens.
    for row in &before {
        let secret = row.secret.as_ref().unwrap();
        let in_log: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE strpos(payload::text, $1) > 0")
                .bind(&secret.0)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert!(in_log > 0, "the log still holds the ciphertext");
        assert!(
            parts.decrypt(row, secret).await.is_err(),
            "a ciphertext of the shredded workspace still decrypts"
        );
    }
    // Every family shows nothing.
    let config = app.get("/api/v1/get/ai-model-config", &member).await;
    assert_eq!(config.status, StatusCode::NOT_FOUND, "{}", config.text);
    let keys = app.get("/api/keys", &admin).await;
    assert_eq!(keys.body, json!([]), "{}", keys.text);
    let llms = app
        .get(&format!("/ai/llm?workspaceId={}", app.workspace), &admin)
        .await;
    assert_eq!(llms.body["aiLlms"], json!([]), "{}", llms.text);
    let personal = app.get("/api/user/api-keys", &member).await;
    assert_eq!(
        personal.body["anthropic"]["configured"], false,
        "{}",
        personal.text
    );
    // A key sealed with the destroyed public key does not decrypt either.
    let stale = app
        .post(
            "/api/v1/create/ai-model-config",
            &member,
            seed_000_create_body(&sealed_before, &sealed_before),
        )
        .await;
    assert_eq!(stale.status, StatusCode::BAD_REQUEST, "{}", stale.text);

    // The history: who did what and when, the shred included, and no hint of any key.
    let history = app.get("/api/v1/history?limit=100", &admin).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.text);
    let entries = history.body["events"].as_array().unwrap();
    let shreds: Vec<_> = entries
        .iter()
        .filter(|entry| entry["type"] == "WorkspaceShredded")
        .collect();
    assert_eq!(shreds.len(), 3, "{}", history.text);
    assert!(shreds.iter().all(|entry| entry["actor"] == "cli:operator"));
    assert!(entries
        .iter()
        .any(|entry| entry["type"] == "CredentialAdded" && entry["actor"] == "ada"));
    for key in &plain {
        assert!(
            !history.text.contains(&hint(key)),
            "the history still shows the hint of {}",
            hint(key)
        );
    }
    for entry in entries {
        for field in ["hint", "previous_hint", "access_key_hint"] {
            let shown = &entry["details"][field];
            assert!(shown.is_null() || shown == "****", "{entry}");
        }
    }
    assert!(
        history.text.contains("\"hint\":\"****\""),
        "{}",
        history.text
    );

    // A second run finds nothing left to do.
    let again = parts.shred(&workspace).await;
    assert_eq!(
        (again.configurations, again.credentials),
        (0, 0),
        "{again:?}"
    );

    // The workspace starts over: the same names are free, and new keys decrypt.
    keys_in_every_family(&app).await;
    let after = parts.rows(&workspace).await;
    assert_eq!(after.len(), before.len());
    for row in &after {
        assert!(
            before.iter().all(|old| old.id() != row.id()),
            "ids are never reused"
        );
        parts
            .decrypt(row, row.secret.as_ref().unwrap())
            .await
            .expect("a key stored after the shred decrypts");
    }
    // A credential stream that was shredded stays retired.
    let b = before
        .iter()
        .find(|row| !matches!(row.home.stream, aimc_domain::StreamId::Config(_)))
        .unwrap();
    let refused = parts
        .commands
        .execute_on_credential(
            &b.home,
            CredentialCommand::Remove {
                credential_id: b.id(),
            },
            &operator(),
        )
        .await;
    assert!(refused.is_err(), "a shredded credential cannot be changed");
    app.assert_no_plain_key_anywhere().await;
}
