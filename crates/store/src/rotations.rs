//! The state of key rotations started through the API, readable from every replica.

use std::time::Duration;

use aimc_domain::WorkspaceId;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::database::traced;
use crate::error::StoreError;

/// A running rotation that wrote no progress for this long belongs to a process that stopped.
pub const ROTATION_HEARTBEAT_LOST_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RotationRow {
    pub operation_id: Uuid,
    pub workspace_id: String,
    pub requested_by: String,
    pub status: String,
    pub total: i32,
    pub done: i32,
    pub rewrapped: i32,
    pub from_version: Option<i32>,
    pub to_version: Option<i32>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What asking for a rotation did.
#[derive(Debug)]
pub enum RotationStart {
    Started(Uuid),
    /// One is running for the workspace already.
    AlreadyRunning(Uuid),
}

#[derive(Clone)]
pub struct KeyRotations {
    pool: PgPool,
}

const COLUMNS: &str = "operation_id, workspace_id, requested_by, status, total, done, rewrapped,
                       from_version, to_version, error, started_at, updated_at, finished_at";

impl KeyRotations {
    pub fn new(pool: PgPool) -> Self {
        KeyRotations { pool }
    }

    /// Records a new rotation of `workspace`, unless one is running: the unique index on
    /// running rotations decides between replicas asked at once. A running one whose heartbeat
    /// stopped is marked failed first, so that its workspace can be rotated again (which
    /// finishes its work).
    pub async fn start(
        &self,
        workspace: &WorkspaceId,
        requested_by: &str,
    ) -> Result<RotationStart, StoreError> {
        traced(
            &self.pool,
            "UPDATE key_rotations",
            sqlx::query(
                "UPDATE key_rotations
                    SET status = 'failed', error = 'the process running it stopped', finished_at = now()
                  WHERE workspace_id = $1 AND status = 'running'
                    AND updated_at < now() - make_interval(secs => $2)",
            )
            .bind(workspace.as_str())
            .bind(ROTATION_HEARTBEAT_LOST_AFTER.as_secs_f64())
            .execute(&self.pool),
        )
        .await?;
        let id = Uuid::now_v7();
        let inserted: Option<Uuid> = traced(
            &self.pool,
            "INSERT key_rotations",
            sqlx::query_scalar(
                "INSERT INTO key_rotations (operation_id, workspace_id, requested_by, status)
                 VALUES ($1, $2, $3, 'running')
                 ON CONFLICT (workspace_id) WHERE status = 'running' DO NOTHING
                 RETURNING operation_id",
            )
            .bind(id)
            .bind(workspace.as_str())
            .bind(requested_by)
            .fetch_optional(&self.pool),
        )
        .await?;
        if let Some(id) = inserted {
            return Ok(RotationStart::Started(id));
        }
        let running: Option<Uuid> = traced(
            &self.pool,
            "SELECT key_rotations",
            sqlx::query_scalar(
                "SELECT operation_id FROM key_rotations WHERE workspace_id = $1 AND status = 'running'",
            )
            .bind(workspace.as_str())
            .fetch_optional(&self.pool),
        )
        .await?;
        match running {
            Some(id) => Ok(RotationStart::AlreadyRunning(id)),
            // Finished between the two statements: ask again.
            None => Box::pin(self.start(workspace, requested_by)).await,
        }
    }

    /// How far it got; also the heartbeat.
    pub async fn progress(
        &self,
        operation: Uuid,
        total: usize,
        done: usize,
        versions: Option<(u32, u32)>,
    ) -> Result<(), StoreError> {
        traced(
            &self.pool,
            "UPDATE key_rotations",
            sqlx::query(
                "UPDATE key_rotations
                    SET total = $2, done = $3, from_version = coalesce($4, from_version),
                        to_version = coalesce($5, to_version), updated_at = now()
                  WHERE operation_id = $1 AND status = 'running'",
            )
            .bind(operation)
            .bind(total as i32)
            .bind(done as i32)
            .bind(versions.map(|(from, _)| from as i32))
            .bind(versions.map(|(_, to)| to as i32))
            .execute(&self.pool),
        )
        .await?;
        Ok(())
    }

    /// Its end: `Ok(rewrapped)` or the error.
    pub async fn finish(
        &self,
        operation: Uuid,
        outcome: Result<(usize, usize, u32, u32), String>,
    ) -> Result<(), StoreError> {
        let (status, counts, error) = match outcome {
            Ok(counts) => ("succeeded", Some(counts), None),
            Err(error) => ("failed", None, Some(error)),
        };
        traced(
            &self.pool,
            "UPDATE key_rotations",
            sqlx::query(
                "UPDATE key_rotations
                    SET status = $2, done = coalesce($3, done), total = coalesce($3, total),
                        rewrapped = coalesce($4, rewrapped), from_version = coalesce($5, from_version),
                        to_version = coalesce($6, to_version), error = $7,
                        updated_at = now(), finished_at = now()
                  WHERE operation_id = $1",
            )
            .bind(operation)
            .bind(status)
            .bind(counts.map(|(total, _, _, _)| total as i32))
            .bind(counts.map(|(_, rewrapped, _, _)| rewrapped as i32))
            .bind(counts.map(|(_, _, from, _)| from as i32))
            .bind(counts.map(|(_, _, _, to)| to as i32))
            .bind(error)
            .execute(&self.pool),
        )
        .await?;
        Ok(())
    }

    /// The rotation `operation` of `workspace`, if there is one.
    pub async fn get(
        &self,
        workspace: &WorkspaceId,
        operation: Uuid,
    ) -> Result<Option<RotationRow>, StoreError> {
        Ok(traced(
            &self.pool,
            "SELECT key_rotations",
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM key_rotations WHERE operation_id = $1 AND workspace_id = $2"
            ))
            .bind(operation)
            .bind(workspace.as_str())
            .fetch_optional(&self.pool),
        )
        .await?)
    }
}
