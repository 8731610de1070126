//! aimc as an operator runs it: the binary this build made, configured by `AIMC_*` variables,
//! on its own port, killable like any process.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aimc_api::{mint_hs256_token, Role};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::deps::{OpenBao, Postgres};

/// What every replica of one deployment shares.
#[derive(Clone)]
pub struct Deployment {
    pub database_url: String,
    pub vault_address: String,
    pub vault_token: String,
    pub jwt_secret: String,
    pub workspace: String,
    /// `AIMC_*` settings on top of the defaults.
    pub settings: Vec<(String, String)>,
}

impl Deployment {
    pub async fn new(postgres: &Postgres, vault: &OpenBao, settings: &[(&str, &str)]) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        Deployment {
            database_url: postgres.url.replace("/postgres", "/aimc_faults"),
            vault_address: vault.address.clone(),
            vault_token: vault.token.clone(),
            jwt_secret: format!("fault-suite-secret-{suffix}"),
            workspace: format!("ws{}", &suffix[..10]),
            settings: settings
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        }
        .with_database(&postgres.url)
        .await
    }

    async fn with_database(self, admin_url: &str) -> Self {
        let admin = sqlx::postgres::PgPool::connect(admin_url).await.unwrap();
        sqlx::query("CREATE DATABASE aimc_faults")
            .execute(&admin)
            .await
            .unwrap();
        self
    }

    pub fn token(&self, sub: &str, role: Role) -> String {
        mint_hs256_token(
            &SecretString::from(self.jwt_secret.clone()),
            "aimc",
            "aimc",
            sub,
            HashMap::from([(self.workspace.clone(), role)]),
            None,
            3600,
        )
        .unwrap()
    }
}

pub struct Replica {
    pub address: String,
    pub port: u16,
    child: Child,
}

impl Replica {
    /// Starts a replica and waits until it serves; `port` 0 picks a free one.
    pub async fn start(deployment: &Deployment, port: u16) -> Replica {
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            port
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_aimc"));
        for (name, _) in std::env::vars() {
            if name.starts_with("AIMC_") || name.starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .env("AIMC_LISTEN", format!("127.0.0.1:{port}"))
            .env("AIMC_DATABASE_URL", &deployment.database_url)
            .env("AIMC_KEYRING", "vault")
            .env("AIMC_VAULT_ADDR", &deployment.vault_address)
            .env("AIMC_VAULT_TOKEN", &deployment.vault_token)
            .env("AIMC_JWT_HS256_SECRET", &deployment.jwt_secret)
            .env("AIMC_LOG", "error")
            .envs(
                deployment
                    .settings
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str())),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut replica = Replica {
            address: format!("http://127.0.0.1:{port}"),
            port,
            child: command.spawn().expect("the aimc binary starts"),
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Some(status) = replica.child.try_wait().unwrap() {
                panic!("aimc exited before it served: {status}");
            }
            let up = client
                .get(format!("{}/healthz", replica.address))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if up {
                return replica;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "aimc did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the process at once, mid-request, as a crash or an OOM kill would.
    pub async fn kill(mut self) -> u16 {
        self.child.kill().await.unwrap();
        self.port
    }
}

/// One answer, as a client saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// None when the connection failed (reset, refused, timed out).
    pub status: Option<StatusCode>,
    pub retry_after: bool,
    pub elapsed: Duration,
    pub body: Value,
}

pub async fn call(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> Answer {
    call_keyed(client, method, url, token, body, None).await
}

/// A request sent with an `Idempotency-Key`, when `key` is given.
pub async fn call_keyed(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    token: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> Answer {
    let started = Instant::now();
    let mut request = client
        .request(method, url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(30));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let retry_after = response.headers().contains_key("retry-after");
            let body = response.json().await.unwrap_or(Value::Null);
            Answer {
                status: Some(status),
                retry_after,
                elapsed: started.elapsed(),
                body,
            }
        }
        Err(_) => Answer {
            status: None,
            retry_after: false,
            elapsed: started.elapsed(),
            body: Value::Null,
        },
    }
}
