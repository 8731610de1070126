//! Three aimc processes on one PostgreSQL and one OpenBao, written to through all three while a
//! key rotation runs: every accepted write is in every replica's answers and in the history
//! exactly once, and every key decrypts afterwards.

// Shared with the fault suite, which uses the parts this test does not (stopping processes).
#[allow(dead_code)]
#[path = "faults/deps.rs"]
mod deps;
#[allow(dead_code)]
#[path = "faults/service.rs"]
mod service;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aimc_api::Role;
use aimc_domain::{KeyContext, WorkspaceId};
use aimc_keyring::{Keyring, VaultKeyring, VaultSettings};
use aimc_store::CredentialQueries;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use deps::{OpenBao, Postgres};
use service::{call, Deployment, Replica};

const SECRET: &str = "sk-three-replicas-secret-0123456789abcd";

#[tokio::test]
async fn writes_through_three_replicas_during_a_rotation_are_all_kept_once_and_all_decrypt() {
    let (postgres, vault) = tokio::join!(Postgres::start(), OpenBao::start());
    // A short deadline: the rotation waits it out for writes in flight before it retires v1.
    let deployment =
        Deployment::new(&postgres, &vault, &[("AIMC_REQUEST_DEADLINE_MS", "1000")]).await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&deployment, 0).await);
    }
    let addresses: Vec<String> = replicas.iter().map(|r| r.address.clone()).collect();
    let client = reqwest::Client::new();
    let owner = deployment.token("olivia", Role::Owner);
    let admin = deployment.token("ada", Role::Admin);

    // Keys to rotate before the writes start.
    for n in 0..30 {
        let body = json!({"name": format!("before-{n}"), "aiType": "OPENAI",
                          "endpoint": "https://api.openai.com/v1", "secret": SECRET,
                          "workspaceId": deployment.workspace});
        let url = format!("{}/ai/llm", addresses[n % 3]);
        let answer = call(&client, Method::POST, &url, &admin, Some(body)).await;
        assert_eq!(answer.status, Some(StatusCode::OK), "{}", answer.body);
    }

    // Writers on every replica while the first replica rotates the key.
    let writers: Vec<_> = (0..6)
        .map(|writer| {
            let (client, admin, deployment) = (client.clone(), admin.clone(), deployment.clone());
            let url = format!("{}/ai/llm", addresses[writer % 3]);
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                for n in 0..25 {
                    let name = format!("during-{writer}-{n}");
                    let body = json!({"name": name, "aiType": "OPENAI",
                                      "endpoint": "https://api.openai.com/v1", "secret": SECRET,
                                      "workspaceId": deployment.workspace});
                    let answer = call(&client, Method::POST, &url, &admin, Some(body)).await;
                    assert_eq!(
                        answer.status,
                        Some(StatusCode::OK),
                        "{name}: {}",
                        answer.body
                    );
                    accepted.push(name);
                }
                accepted
            })
        })
        .collect();
    let started = call(
        &client,
        Method::POST,
        &format!("{}/api/v1/keys/rotate", addresses[0]),
        &owner,
        None,
    )
    .await;
    assert_eq!(
        started.status,
        Some(StatusCode::ACCEPTED),
        "{}",
        started.body
    );
    let operation = started.body["operationId"].as_str().unwrap().to_owned();
    let mut accepted: Vec<String> = (0..30).map(|n| format!("before-{n}")).collect();
    for writer in writers {
        accepted.extend(writer.await.unwrap());
    }

    // Followed on another replica to its end.
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = loop {
        let status = call(
            &client,
            Method::GET,
            &format!("{}/api/v1/keys/rotate/{operation}", addresses[1]),
            &owner,
            None,
        )
        .await;
        assert_eq!(status.status, Some(StatusCode::OK), "{}", status.body);
        if status.body["status"] != "running" {
            break status.body;
        }
        assert!(
            Instant::now() < deadline,
            "the rotation did not end: {}",
            status.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["toVersion"], 2);

    // Every accepted write, once, in every replica's list.
    let expected: HashSet<&str> = accepted.iter().map(String::as_str).collect();
    for address in &addresses {
        let listed = call(
            &client,
            Method::GET,
            &format!("{address}/ai/llm?workspaceId={}", deployment.workspace),
            &admin,
            None,
        )
        .await;
        let names: Vec<&str> = listed.body["aiLlms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names.len(),
            accepted.len(),
            "{address}: one entry per write"
        );
        assert_eq!(
            names.into_iter().collect::<HashSet<_>>(),
            expected,
            "{address}"
        );
    }
    // And once in the history, read page by page.
    let mut added = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => {
                format!("/api/v1/history?type=CredentialAdded&limit=100&cursor={cursor}")
            }
            None => "/api/v1/history?type=CredentialAdded&limit=100".to_owned(),
        };
        let page = call(
            &client,
            Method::GET,
            &format!("{}{path}", addresses[2]),
            &owner,
            None,
        )
        .await;
        assert_eq!(page.status, Some(StatusCode::OK), "{}", page.body);
        for event in page.body["events"].as_array().unwrap() {
            added.push(event["details"]["name"].as_str().unwrap().to_owned());
        }
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    added.sort();
    let mut sorted = accepted.clone();
    sorted.sort();
    assert_eq!(added, sorted, "each accepted write once in the history");

    // Every key under the new version, and decrypting.
    let pool = sqlx::postgres::PgPool::connect(&deployment.database_url)
        .await
        .unwrap();
    let workspace = WorkspaceId::parse(&deployment.workspace).unwrap();
    let rows = CredentialQueries::new(pool)
        .of_workspace(&workspace)
        .await
        .unwrap();
    let keyring: Arc<dyn Keyring> = Arc::new(
        VaultKeyring::new(VaultSettings {
            address: deployment.vault_address.clone(),
            token: SecretString::from(deployment.vault_token.clone()),
            mount: "transit".into(),
            key_prefix: "aimc".into(),
            timeout: Duration::from_secs(10),
        })
        .unwrap(),
    );
    let items: Vec<_> = rows
        .iter()
        .map(|row| {
            let secret = row.secret.clone().unwrap();
            assert_eq!(secret.key_version(), Some(2), "{}", row.name.as_str());
            (
                secret,
                KeyContext::for_credential(&row.home.owner, row.id()),
            )
        })
        .collect();
    let plain = keyring
        .decrypt(&workspace, items)
        .await
        .expect("every key decrypts");
    assert_eq!(plain.len(), accepted.len());
    assert!(plain.iter().all(|key| key.expose_secret() == SECRET));
    eprintln!(
        "3 replicas: {} writes accepted during a rotation of {} credentials; all listed once on each replica, once in the history, all under v2",
        accepted.len() - 30,
        finished["total"]
    );
}
