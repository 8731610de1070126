//! What the store's integration tests share: a database of their own on the server named by
//! `AIMC_TEST_DATABASE_URL`, and a process's command bus on it.

use std::sync::Arc;
use std::time::Duration;

use aimc_domain::{ConfigServices, IdSource, KeySealer};
use aimc_store::{CommandBus, CommandMetadata, CredentialRegistry, DatabaseSettings};
use secrecy::SecretString;
use sqlx::{Connection, PgConnection, PgPool};

/// A fresh, migrated database, so tests run in parallel without seeing each other's rows.
pub struct Database {
    admin_url: String,
    name: String,
    pub pool: PgPool,
}

impl Database {
    pub async fn create() -> Database {
        let admin_url = std::env::var("AIMC_TEST_DATABASE_URL")
            .expect("AIMC_TEST_DATABASE_URL (source .local/env after ./dev services up)");
        // `aimc_test_` as the test suite names them, so `./dev test` clears any left behind.
        let name = format!(
            "aimc_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        let (server, _) = admin_url.rsplit_once('/').unwrap();
        let pool = aimc_store::connect(&DatabaseSettings {
            url: SecretString::from(format!("{server}/{name}")),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: None,
            lock_timeout: None,
        })
        .unwrap();
        aimc_store::migrate(&pool).await.unwrap();
        Database {
            admin_url,
            name,
            pool,
        }
    }

    pub async fn drop(self) {
        self.pool.close().await;
        if let Ok(mut admin) = PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{}\"", self.name))
                .execute(&mut admin)
                .await;
        }
    }
}

/// A process's command bus: its own write queues, on the shared database.
pub fn bus(
    pool: &PgPool,
    sealer: Arc<dyn KeySealer>,
    ids: Arc<dyn IdSource>,
    snapshot_every: usize,
) -> CommandBus {
    let registry = Arc::new(CredentialRegistry::new(pool.clone()));
    let services = ConfigServices {
        sealer,
        ids,
        names: registry.clone(),
        numbers: registry.clone(),
        directory: registry,
    };
    CommandBus::new(pool.clone(), services, snapshot_every)
}

pub fn operator() -> CommandMetadata {
    CommandMetadata {
        actor: "cli:operator".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        trace_id: None,
        idempotency_key: None,
    }
}
