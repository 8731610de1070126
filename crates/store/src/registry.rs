//! The aggregates' registry ports, answered from the database: who holds a credential name,
//! fresh credential numbers, and which providers an owner has keys for.

use aimc_domain::{
    ConfigId, CredentialDirectory, CredentialId, CredentialNames, CredentialNumbers, NameKey,
    Provider, RegistryError, WorkspaceId,
};
use async_trait::async_trait;
use sqlx::PgPool;
use uuid::Uuid;

use crate::database::{is_unavailable, traced};

#[derive(Clone)]
pub struct CredentialRegistry {
    pool: PgPool,
}

impl CredentialRegistry {
    pub fn new(pool: PgPool) -> Self {
        CredentialRegistry { pool }
    }
}

fn registry_error(error: sqlx::Error) -> RegistryError {
    if is_unavailable(&error) {
        RegistryError::Unavailable(error.to_string())
    } else {
        RegistryError::Failed(error.to_string())
    }
}

#[async_trait]
impl CredentialNames for CredentialRegistry {
    async fn holders(
        &self,
        workspace: &WorkspaceId,
        names: &[NameKey],
    ) -> Result<Vec<Option<CredentialId>>, RegistryError> {
        let keys: Vec<&str> = names.iter().map(NameKey::as_str).collect();
        let held: Vec<(String, Uuid)> = traced(
            &self.pool,
            "SELECT credential_names",
            sqlx::query_as(
                "SELECT name_key, credential_id FROM credential_names
                  WHERE workspace_id = $1 AND name_key = ANY($2)",
            )
            .bind(workspace.as_str())
            .bind(&keys)
            .fetch_all(&self.pool),
        )
        .await
        .map_err(registry_error)?;
        Ok(keys
            .iter()
            .map(|key| {
                held.iter()
                    .find(|(held, _)| held == key)
                    .map(|(_, holder)| CredentialId(*holder))
            })
            .collect())
    }
}

#[async_trait]
impl CredentialNumbers for CredentialRegistry {
    async fn next_numbers(&self, count: usize) -> Result<Vec<i64>, RegistryError> {
        traced(
            &self.pool,
            "SELECT credential_numbers",
            sqlx::query_scalar("SELECT nextval('credential_numbers') FROM generate_series(1, $1)")
                .bind(count as i64)
                .fetch_all(&self.pool),
        )
        .await
        .map_err(registry_error)
    }
}

#[async_trait]
impl CredentialDirectory for CredentialRegistry {
    async fn providers_with_keys(&self, owner: &ConfigId) -> Result<Vec<Provider>, RegistryError> {
        let providers: Vec<String> = traced(
            &self.pool,
            "SELECT credential_view",
            sqlx::query_scalar(
                "SELECT DISTINCT provider FROM credential_view WHERE workspace_id = $1 AND owner = $2",
            )
            .bind(owner.workspace.as_str())
            .bind(owner.owner.to_string())
            .fetch_all(&self.pool),
        )
        .await
        .map_err(registry_error)?;
        Ok(providers
            .iter()
            .filter_map(|provider| Provider::parse(provider).ok())
            .collect())
    }
}
