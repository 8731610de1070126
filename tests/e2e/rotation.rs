//! Rotating a workspace's key against the real OpenBao: every stored key rewrapped under the
//! new version, the old version retired, nothing else about the credentials changed.

use std::sync::Arc;
use std::time::Duration;

use aimc_api::rotation::{Rotated, Rotation, Unobserved};
use aimc_api::Role;
use aimc_domain::{Ciphertext, CredentialCommand, KeyContext, WorkspaceId};
use aimc_keyring::{Keyring, KeyringError, SharedCalls};
use aimc_server::startup::{build_keyring, command_bus};
use aimc_store::{CommandMetadata, CredentialQueries, CredentialRow};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::*;

const B_SECRET: &str = "sk-rotation-family-b-secret-0123456789";
const B_ACCESS: &str = "AKIAROTATIONACCESS0001";
const C_KEY: &str = "sk-ant-rotation-family-c-0123456789";
const D_KEY: &str = "sk-proj-rotation-family-d-0123456789";

/// The service's own parts, as `aimc keys rotate` builds them.
pub(crate) struct Parts {
    pub keyring: Arc<dyn Keyring>,
    pub commands: aimc_store::CommandBus,
    pub credentials: CredentialQueries,
}

impl Parts {
    pub async fn of(app: &TestApp) -> Parts {
        let keyring: Arc<dyn Keyring> = Arc::new(SharedCalls::new(
            build_keyring(&app.settings).await.unwrap(),
        ));
        Parts {
            commands: command_bus(&app.pool, &keyring, &app.settings),
            credentials: CredentialQueries::new(app.pool.clone()),
            keyring,
        }
    }

    async fn rotate(&self, workspace: &WorkspaceId) -> Rotated {
        Rotation {
            commands: &self.commands,
            credentials: &self.credentials,
            keyring: self.keyring.as_ref(),
            settle: Duration::from_millis(200),
            concurrency: 4,
        }
        .run(workspace, &operator(), &Unobserved)
        .await
        .expect("the rotation succeeds")
    }

    pub async fn rows(&self, workspace: &WorkspaceId) -> Vec<CredentialRow> {
        self.credentials.of_workspace(workspace).await.unwrap()
    }

    pub async fn decrypt(
        &self,
        row: &CredentialRow,
        secret: &Ciphertext,
    ) -> Result<String, KeyringError> {
        let context = KeyContext::for_credential(&row.home.owner, row.id());
        let plain = self
            .keyring
            .decrypt(&row.home.owner.workspace, vec![(secret.clone(), context)])
            .await?;
        Ok(secrecy::ExposeSecret::expose_secret(&plain[0]).to_owned())
    }
}

pub(crate) fn operator() -> CommandMetadata {
    CommandMetadata {
        actor: "cli:operator".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        trace_id: None,
        idempotency_key: None,
    }
}

/// A credential through each family: A's client-encrypted OpenAI key (its Anthropic key is
/// replaced by C's), B's key with an access key, C's and D's plain keys.
pub(crate) async fn keys_in_every_family(app: &TestApp) -> Vec<&'static str> {
    let member = app.token("alice", Role::Member);
    let admin = app.token("ada", Role::Admin);
    create_seed_config(app, &member).await;
    app.remember_secret(B_SECRET);
    app.remember_secret(B_ACCESS);
    let b = app
        .post(
            "/ai/llm",
            &admin,
            json!({"name": "Rotated", "aiType": "OPENAI", "endpoint": "https://api.openai.com/v1",
                   "key": B_ACCESS, "secret": B_SECRET, "workspaceId": app.workspace}),
        )
        .await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.text);
    app.remember_secret(C_KEY);
    let c = app
        .put(
            "/api/user/api-keys",
            &member,
            json!({"anthropic": {"apiKey": C_KEY}}),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    app.remember_secret(D_KEY);
    let d = app
        .post(
            "/api/keys",
            &admin,
            json!({"service": "OPENAI", "api_key": D_KEY}),
        )
        .await;
    assert_eq!(d.status, StatusCode::CREATED, "{}", d.text);
    vec![OPENAI_KEY, B_SECRET, C_KEY, D_KEY]
}

/// What the APIs show of the workspace's keys: ids, names, hints, test state.
pub(crate) async fn shown(app: &TestApp) -> Vec<Value> {
    let member = app.token("alice", Role::Member);
    let admin = app.token("ada", Role::Admin);
    let mut shown = Vec::new();
    for (token, path) in [
        (&member, "/api/v1/get/ai-model-config".to_owned()),
        (&member, "/api/user/api-keys".to_owned()),
        (&admin, "/api/keys".to_owned()),
        (&admin, format!("/ai/llm?workspaceId={}", app.workspace)),
        (&admin, "/api/v1/settings/providers".to_owned()),
    ] {
        let response = app.get(&path, token).await;
        assert_eq!(response.status, StatusCode::OK, "{path}: {}", response.text);
        shown.push(response.body);
    }
    shown
}

#[tokio::test]
async fn a_rotation_rewraps_every_key_under_the_new_version_and_retires_the_old_one() {
    let app = spawn_app().await;
    let workspace = WorkspaceId::parse(&app.workspace).unwrap();
    let plain = keys_in_every_family(&app).await;
    let parts = Parts::of(&app).await;
    let before_rows = parts.rows(&workspace).await;
    let before_shown = shown(&app).await;
    assert!(before_rows
        .iter()
        .all(|row| row.secret.as_ref().unwrap().key_version() == Some(1)));

    let rotated = parts.rotate(&workspace).await;

    assert_eq!((rotated.from_version, rotated.to_version), (1, 2));
    assert!(rotated.rotated_now);
    assert_eq!(rotated.credentials, before_rows.len());
    assert_eq!(rotated.rewrapped, before_rows.len());
    let after_rows = parts.rows(&workspace).await;
    let mut decrypted = Vec::new();
    for row in &after_rows {
        let secret = row.secret.as_ref().unwrap();
        assert_eq!(secret.key_version(), Some(2), "{}", row.id());
        decrypted.push(
            parts
                .decrypt(row, secret)
                .await
                .expect("a rewrapped key decrypts"),
        );
        let old = before_rows.iter().find(|old| old.id() == row.id()).unwrap();
        let retired = parts.decrypt(row, old.secret.as_ref().unwrap()).await;
        assert!(retired.is_err(), "the old ciphertext no longer decrypts");
    }
    decrypted.sort();
    let mut expected: Vec<String> = plain.iter().map(|key| (*key).to_owned()).collect();
    expected.sort();
    assert_eq!(decrypted, expected, "the same keys, under the new version");
    assert_eq!(
        shown(&app).await,
        before_shown,
        "ids, names, hints and tests unchanged"
    );

    // The history says who rewrapped what, with the version and no ciphertext.
    let history = app
        .get(
            "/api/v1/history?type=CredentialRewrapped",
            &app.token("ada", Role::Admin),
        )
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.text);
    let entries = history.body["events"].as_array().unwrap();
    assert_eq!(entries.len(), before_rows.len(), "{}", history.text);
    for entry in entries {
        assert_eq!(entry["actor"], "cli:operator");
        assert_eq!(entry["details"]["key_version"], 2);
        assert!(!entry.to_string().contains("vault:v"), "{entry}");
    }
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_rotation_stopped_halfway_is_finished_by_the_next_run_without_rewrapping_twice() {
    let app = spawn_app().await;
    let workspace = WorkspaceId::parse(&app.workspace).unwrap();
    keys_in_every_family(&app).await;
    let parts = Parts::of(&app).await;
    let rows = parts.rows(&workspace).await;
    // As a run killed after rotating the key and rewrapping one credential leaves it.
    assert_eq!(parts.keyring.rotate(&workspace).await.unwrap().latest, 2);
    let first = &rows[0];
    let command = CredentialCommand::Rewrap {
        credential_id: first.id(),
        key_version: 2,
    };
    parts
        .commands
        .execute_on_credential(&first.home, command, &operator())
        .await
        .unwrap();

    let resumed = parts.rotate(&workspace).await;

    assert!(
        !resumed.rotated_now,
        "the earlier run's rotation is finished, not repeated"
    );
    assert_eq!(resumed.to_version, 2);
    assert_eq!(resumed.rewrapped, rows.len() - 1);
    let rewraps: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'CredentialRewrapped'
            OR payload::text LIKE '%\"CredentialRewrapped\"%'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(rewraps, rows.len() as i64, "one rewrap per credential");
    let again = parts.rotate(&workspace).await;
    assert!(
        again.rotated_now,
        "a run after a finished one is a new rotation"
    );
    assert_eq!((again.to_version, again.rewrapped), (3, rows.len()));
}

#[tokio::test]
async fn writes_during_a_rotation_are_kept_and_end_up_under_the_new_version() {
    let app = spawn_app().await;
    let workspace = WorkspaceId::parse(&app.workspace).unwrap();
    keys_in_every_family(&app).await;
    let parts = Parts::of(&app).await;
    let member = app.token("alice", Role::Member);
    let keys: Vec<String> = (0..30)
        .map(|n| format!("sk-proj-written-during-rotation-{n:04}"))
        .collect();
    for key in &keys {
        app.remember_secret(key);
    }

    let writing = async {
        let mut accepted = Vec::new();
        for key in &keys {
            let response = app
                .put(
                    "/api/user/api-keys",
                    &member,
                    json!({"openai": {"apiKey": key}}),
                )
                .await;
            assert_eq!(response.status, StatusCode::OK, "{}", response.text);
            accepted.push(key.clone());
        }
        accepted
    };
    let (rotated, accepted) = tokio::join!(parts.rotate(&workspace), writing);

    assert_eq!(rotated.to_version, 2);
    let rows = parts.rows(&workspace).await;
    for row in &rows {
        let secret = row.secret.as_ref().unwrap();
        assert_eq!(secret.key_version(), Some(2), "{}", row.id());
        parts
            .decrypt(row, secret)
            .await
            .expect("every key decrypts after the rotation");
    }
    // The last write is the key the configuration holds now.
    let openai = app.get("/api/user/api-keys", &member).await;
    let last = accepted.last().unwrap();
    assert_eq!(
        openai.body["openai"]["keyHint"],
        format!("{}...{}", &last[..3], &last[last.len() - 4..])
    );
}

#[tokio::test]
async fn an_owner_rotates_through_the_api_and_follows_the_operation_to_its_end() {
    // A short deadline: the rotation waits that long for writes in flight before it ends.
    // Not shorter: the writes that set the scene run while the rest of the suite does.
    let app = spawn_app_with(|settings| settings.request_deadline_ms = 1_000).await;
    keys_in_every_family(&app).await;
    let credentials = CredentialQueries::new(app.pool.clone())
        .of_workspace(&WorkspaceId::parse(&app.workspace).unwrap())
        .await
        .unwrap()
        .len();
    let owner = app.token("olivia", Role::Owner);
    let member = app.token("alice", Role::Member);

    let refused = app
        .request(
            reqwest::Method::POST,
            "/api/v1/keys/rotate",
            Some(&member),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let started = app
        .request(
            reqwest::Method::POST,
            "/api/v1/keys/rotate",
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text);
    let location = started.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        format!(
            "/api/v1/keys/rotate/{}",
            started.body["operationId"].as_str().unwrap()
        )
    );
    assert_eq!(started.body["status"], "running");
    assert_eq!(started.body["requestedBy"], "olivia");
    let again = app
        .request(
            reqwest::Method::POST,
            "/api/v1/keys/rotate",
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "one rotation at a time: {}",
        again.text
    );

    let mut finished = None;
    for _ in 0..200 {
        let status = app.get(&location, &owner).await;
        assert_eq!(status.status, StatusCode::OK, "{}", status.text);
        if status.body["status"] != "running" {
            finished = Some(status.body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finished = finished.expect("the rotation ends within 20 s");
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["total"], credentials);
    assert_eq!(finished["done"], credentials);
    assert_eq!(finished["rewrapped"], credentials);
    assert_eq!(
        (
            finished["fromVersion"].clone(),
            finished["toVersion"].clone()
        ),
        (json!(1), json!(2))
    );
    assert!(finished["finishedAt"].is_string());

    let history = app
        .get("/api/v1/history?type=CredentialRewrapped", &owner)
        .await;
    let events = history.body["events"].as_array().unwrap();
    assert_eq!(events.len(), credentials);
    assert!(events.iter().all(|event| event["actor"] == "olivia"));
    let unknown = app
        .get(
            "/api/v1/keys/rotate/019ae2b4-5c1a-7f3e-9d2b-4a6c8e0f1b2d",
            &owner,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // The rotation wrote alice's configuration around her commands: her next write finds
    // nothing parked that the rotation left behind, so it starts from the stream as stored.
    let changed = app
        .put(
            "/api/v1/update/ai-model-config",
            &member,
            json!({"models": seed_000_models_keeping_keys(), "system_prompt": "after the rotation"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(
        app.counted("aimc_command_parked_starts_total", "outcome=\"stale\"")
            .await,
        0.0
    );
    app.assert_no_plain_key_anywhere().await;
}

/// A rotation whose process stopped shows no progress; the next request marks it failed and
/// starts one that finishes its work.
#[tokio::test]
async fn a_rotation_whose_replica_stopped_is_taken_over_by_the_next_request() {
    let app = spawn_app_with(|settings| settings.request_deadline_ms = 1_000).await;
    let owner = app.token("olivia", Role::Owner);
    let abandoned = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO key_rotations (operation_id, workspace_id, requested_by, status, updated_at)
         VALUES ($1, $2, 'olivia', 'running', now() - interval '5 minutes')",
    )
    .bind(abandoned)
    .bind(&app.workspace)
    .execute(&app.pool)
    .await
    .unwrap();

    let started = app
        .request(
            reqwest::Method::POST,
            "/api/v1/keys/rotate",
            Some(&owner),
            None,
        )
        .await;

    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text);
    assert_ne!(started.body["operationId"], abandoned.to_string());
    let old = app
        .get(&format!("/api/v1/keys/rotate/{abandoned}"), &owner)
        .await;
    assert_eq!(old.body["status"], "failed", "{}", old.text);
    assert_eq!(old.body["error"], "the process running it stopped");
}
