use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::database::traced;
use crate::error::StoreError;

#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub workspace: String,
    /// `user:<sub>` or `workspace`.
    pub owner: Option<String>,
    pub event_types: Vec<String>,
    /// Only entries about this credential.
    pub credential: Option<uuid::Uuid>,
    /// Only entries about this provider (`openai`, …): its credentials, and the models and task
    /// assignments added for it.
    pub provider: Option<String>,
    /// Only changes made by this `sub`.
    pub actor: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryEntry {
    pub position: i64,
    pub aggregate_id: String,
    pub sequence: i64,
    pub owner: String,
    pub event_type: String,
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    pub next_cursor: Option<String>,
}

/// Where the next page starts: the audit position of the last entry shown.
#[derive(Serialize, Deserialize)]
struct Cursor {
    before: i64,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(raw: &str) -> Result<Self, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| StoreError::InvalidCursor)?;
        serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)
    }
}

/// Newest first. Keyset pagination on the audit position, which the `audit_log_newest_first`
/// index serves directly, so deep pages cost what the first does.
pub(crate) async fn page(pool: &PgPool, filter: &HistoryFilter) -> Result<HistoryPage, StoreError> {
    let cursor = filter.cursor.as_deref().map(Cursor::decode).transpose()?;
    let limit = filter.limit.clamp(1, 500) as i64;
    let types: Option<&[String]> =
        (!filter.event_types.is_empty()).then_some(&filter.event_types[..]);
    let mut entries: Vec<HistoryEntry> = traced(
        pool,
        "SELECT audit_log",
        sqlx::query_as(
        "SELECT position, aggregate_id, sequence, owner, event_type, actor, request_id, occurred_at, details
           FROM audit_log
          WHERE workspace_id = $1
            AND ($2::text IS NULL OR owner = $2)
            AND ($3::text[] IS NULL OR event_type = ANY($3))
            AND ($4::timestamptz IS NULL OR occurred_at >= $4)
            AND ($5::timestamptz IS NULL OR occurred_at < $5)
            AND ($6::bigint IS NULL OR position < $6)
            AND ($8::uuid IS NULL OR credential_id = $8)
            AND ($9::text IS NULL OR provider = $9)
            AND ($10::text IS NULL OR actor = $10)
          ORDER BY position DESC
          LIMIT $7",
    )
    .bind(&filter.workspace)
    .bind(filter.owner.as_deref())
    .bind(types)
    .bind(filter.since)
    .bind(filter.until)
    .bind(cursor.as_ref().map(|c| c.before))
    .bind(limit + 1)
    .bind(filter.credential)
    .bind(filter.provider.as_deref())
    .bind(filter.actor.as_deref())
    .fetch_all(pool),
    )
    .await?;
    let next_cursor = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(|last| {
            Cursor {
                before: last.position,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(HistoryPage {
        entries,
        next_cursor,
    })
}
