//! Credentials across families: the per-credential read model and the name registry.

use aimc_domain::{CredentialId, CredentialName, WorkspaceId};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CredentialRow {
    pub credential_id: Uuid,
    pub number: Option<i64>,
    pub aggregate_id: String,
    pub workspace_id: String,
    pub owner: String,
    pub name: String,
    pub provider: String,
    pub endpoint: Option<String>,
    pub hint: String,
    pub access_key_hint: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub validated_ok: Option<bool>,
    pub validated_at: Option<DateTime<Utc>>,
    pub validation_note: Option<String>,
}

const COLUMNS: &str = "credential_id, number, aggregate_id, workspace_id, owner, name, provider, endpoint, hint,
                       access_key_hint, created_by, created_at, updated_at, validated_ok, validated_at, validation_note";

#[derive(Clone)]
pub struct CredentialQueries {
    pool: PgPool,
}

impl CredentialQueries {
    pub fn new(pool: PgPool) -> Self {
        CredentialQueries { pool }
    }

    /// The credentials of one owner in a workspace, newest first; with `validated_only`, only
    /// those whose last test succeeded.
    pub async fn of_owner(
        &self,
        workspace: &WorkspaceId,
        owner: &str,
        validated_only: bool,
    ) -> Result<Vec<CredentialRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM credential_view
              WHERE workspace_id = $1 AND owner = $2 AND (NOT $3 OR validated_ok)
              ORDER BY created_at DESC, credential_id DESC"
        ))
        .bind(workspace.as_str())
        .bind(owner)
        .bind(validated_only)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn by_number(&self, number: i64) -> Result<Option<CredentialRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM credential_view WHERE number = $1"
        ))
        .bind(number)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// `count` fresh integer ids, for commands that may create that many credentials.
    pub async fn next_numbers(&self, count: usize) -> Result<Vec<i64>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        Ok(
            sqlx::query_scalar("SELECT nextval('credential_numbers') FROM generate_series(1, $1)")
                .bind(count as i64)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// A fresh integer id for a new credential.
    pub async fn next_number(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT nextval('credential_numbers')")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn by_id(
        &self,
        credential: CredentialId,
    ) -> Result<Option<CredentialRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM credential_view WHERE credential_id = $1"
        ))
        .bind(credential.0)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Claims `name` in the workspace for `credential`; false when another credential holds it.
    pub async fn claim_name(
        &self,
        workspace: &WorkspaceId,
        name: &CredentialName,
        credential: CredentialId,
    ) -> Result<bool, StoreError> {
        let holder: Option<Uuid> = sqlx::query_scalar(
            "WITH claimed AS (
                 INSERT INTO credential_names (workspace_id, name_key, credential_id) VALUES ($1, $2, $3)
                 ON CONFLICT (workspace_id, name_key) DO NOTHING
                 RETURNING credential_id)
             SELECT credential_id FROM claimed
             UNION ALL
             SELECT credential_id FROM credential_names WHERE workspace_id = $1 AND name_key = $2
             LIMIT 1",
        )
        .bind(workspace.as_str())
        .bind(name.key())
        .bind(credential.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(holder == Some(credential.0))
    }

    /// Gives up a name this credential holds (no effect on a name held by another).
    pub async fn release_name(
        &self,
        workspace: &WorkspaceId,
        name_key: &str,
        credential: CredentialId,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM credential_names WHERE workspace_id = $1 AND name_key = $2 AND credential_id = $3")
            .bind(workspace.as_str())
            .bind(name_key)
            .bind(credential.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn name_available(
        &self,
        workspace: &WorkspaceId,
        name: &CredentialName,
    ) -> Result<bool, StoreError> {
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM credential_names WHERE workspace_id = $1 AND name_key = $2)",
        )
        .bind(workspace.as_str())
        .bind(name.key())
        .fetch_one(&self.pool)
        .await?;
        Ok(!taken)
    }
}
