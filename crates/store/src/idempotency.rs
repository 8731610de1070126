//! Requests sent with an `Idempotency-Key`: the first one's answer, kept for its retries.

use std::time::Duration;

use sqlx::PgPool;

use crate::database::traced;
use crate::error::StoreError;

/// How long a key and its answer are kept.
pub const KEPT_FOR: Duration = Duration::from_secs(24 * 3600);

/// An answer as it was sent.
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What to do with a keyed request.
#[derive(Debug)]
pub enum Claim {
    /// The key is new (or expired, or its first request died unapplied): answer it.
    Fresh,
    /// The same request was answered before: send that answer again.
    Answered(StoredAnswer),
    /// The key came with another request.
    Mismatch,
    /// The first request with the key is still being answered.
    InProgress,
    /// The first request was applied, but the process answering it stopped before its answer
    /// was kept.
    AppliedAnswerLost,
}

#[derive(Clone)]
pub struct IdempotencyKeys {
    pool: PgPool,
}

const CLAIM: &str = r#"
WITH claimed AS (
    INSERT INTO idempotency_keys (caller, key, fingerprint) VALUES ($1, $2, $3)
    ON CONFLICT (caller, key) DO UPDATE
       SET fingerprint = excluded.fingerprint, claimed_at = now(),
           status = NULL, headers = NULL, body = NULL
     WHERE idempotency_keys.claimed_at < now() - make_interval(secs => $4)
    RETURNING 1
)
SELECT true, NULL::bytea, NULL::smallint, NULL::text, NULL::bytea,
       NULL::timestamptz, false
  FROM claimed
UNION ALL
SELECT false, k.fingerprint, k.status, k.headers::text, k.body, k.claimed_at,
       k.claimed_at < now() - make_interval(secs => $5)
  FROM idempotency_keys k
 WHERE k.caller = $1 AND k.key = $2 AND NOT EXISTS (SELECT 1 FROM claimed)"#;

type ClaimRow = (
    bool,
    Option<Vec<u8>>,
    Option<i16>,
    Option<String>,
    Option<Vec<u8>>,
    Option<chrono::DateTime<chrono::Utc>>,
    bool,
);

impl IdempotencyKeys {
    pub fn new(pool: PgPool) -> Self {
        IdempotencyKeys { pool }
    }

    /// Claims `key` for `caller`'s request with `fingerprint`, or says what became of the
    /// request that claimed it first. A claim unanswered for `abandoned_after` belongs to a
    /// process that stopped: its request is looked up in the log and, if it appended nothing,
    /// answered anew.
    pub async fn claim(
        &self,
        caller: &str,
        key: &str,
        fingerprint: &[u8],
        abandoned_after: Duration,
    ) -> Result<Claim, StoreError> {
        let row: Option<ClaimRow> = traced(
            &self.pool,
            "INSERT idempotency_keys",
            sqlx::query_as(CLAIM)
                .bind(caller)
                .bind(key)
                .bind(fingerprint)
                .bind(KEPT_FOR.as_secs_f64())
                .bind(abandoned_after.as_secs_f64())
                .fetch_optional(&self.pool),
        )
        .await?;
        let Some((fresh, stored, status, headers, body, claimed_at, abandoned)) = row else {
            // Deleted between the insert's conflict and the read: as good as new, once more.
            return Box::pin(self.claim(caller, key, fingerprint, abandoned_after)).await;
        };
        if fresh {
            return Ok(Claim::Fresh);
        }
        if stored.as_deref() != Some(fingerprint) {
            return Ok(Claim::Mismatch);
        }
        if let Some(status) = status {
            let headers: Vec<(String, String)> = headers
                .and_then(|headers| serde_json::from_str(&headers).ok())
                .unwrap_or_default();
            return Ok(Claim::Answered(StoredAnswer {
                status: status as u16,
                headers,
                body: body.unwrap_or_default(),
            }));
        }
        if !abandoned {
            return Ok(Claim::InProgress);
        }
        if self.applied(caller, key).await? {
            return Ok(Claim::AppliedAnswerLost);
        }
        // Taken over only if no other retry took it over first.
        let taken: Option<i32> = traced(
            &self.pool,
            "UPDATE idempotency_keys",
            sqlx::query_scalar(
                "UPDATE idempotency_keys SET claimed_at = now()
                  WHERE caller = $1 AND key = $2 AND status IS NULL AND claimed_at = $3
                 RETURNING 1",
            )
            .bind(caller)
            .bind(key)
            .bind(claimed_at)
            .fetch_optional(&self.pool),
        )
        .await?;
        Ok(if taken.is_some() {
            Claim::Fresh
        } else {
            Claim::InProgress
        })
    }

    /// Whether an event carries the key: the request it came with was applied.
    async fn applied(&self, caller: &str, key: &str) -> Result<bool, StoreError> {
        Ok(traced(
            &self.pool,
            "SELECT events",
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM events
                  WHERE metadata ->> 'idempotency_key' = $2 AND metadata ->> 'actor' = $1)",
            )
            .bind(caller)
            .bind(key)
            .fetch_one(&self.pool),
        )
        .await?)
    }

    /// Keeps the answer for the key's retries.
    pub async fn answered(
        &self,
        caller: &str,
        key: &str,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        let headers = serde_json::to_string(&answer.headers).unwrap_or_else(|_| "[]".into());
        traced(
            &self.pool,
            "UPDATE idempotency_keys",
            sqlx::query(
                "UPDATE idempotency_keys SET status = $3, headers = $4::jsonb, body = $5
                  WHERE caller = $1 AND key = $2",
            )
            .bind(caller)
            .bind(key)
            .bind(answer.status as i16)
            .bind(headers)
            .bind(&answer.body)
            .execute(&self.pool),
        )
        .await?;
        Ok(())
    }

    /// Frees the key after a failure that left the log untouched, so a retry is answered
    /// anew; kept when the log shows the request applied after all.
    pub async fn release(&self, caller: &str, key: &str) -> Result<(), StoreError> {
        traced(
            &self.pool,
            "DELETE idempotency_keys",
            sqlx::query(
                "DELETE FROM idempotency_keys
                  WHERE caller = $1 AND key = $2 AND status IS NULL
                    AND NOT EXISTS (SELECT 1 FROM events
                         WHERE metadata ->> 'idempotency_key' = $2 AND metadata ->> 'actor' = $1)",
            )
            .bind(caller)
            .bind(key)
            .execute(&self.pool),
        )
        .await?;
        Ok(())
    }

    /// Forgets keys older than [`KEPT_FOR`]; returns how many.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let purged = traced(
            &self.pool,
            "DELETE idempotency_keys",
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE claimed_at < now() - make_interval(secs => $1)",
            )
            .bind(KEPT_FOR.as_secs_f64())
            .execute(&self.pool),
        )
        .await?;
        Ok(purged.rows_affected())
    }
}
