//! Credentials across families, from the per-credential read model: where each lives, the
//! lists families B, D and E show, and the name registry.

use aimc_domain::{
    Ciphertext, ConfigId, CredentialId, CredentialName, KeyHint, Provider, StreamId, WorkspaceId,
};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::database::traced;
use crate::error::StoreError;
use crate::read_model::streams::STREAM_TYPES;
use crate::shared_lookups::{Answer, SharedLookups};

/// Where a credential lives (its configuration's stream, or one of its own) and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialHome {
    pub credential_id: CredentialId,
    pub stream: StreamId,
    pub owner: ConfigId,
}

/// A credential as the read model holds it.
#[derive(Debug, Clone)]
pub struct CredentialRow {
    pub home: CredentialHome,
    pub number: Option<i64>,
    pub name: CredentialName,
    pub provider: Provider,
    pub endpoint: Option<String>,
    pub hint: KeyHint,
    pub secret: Option<Ciphertext>,
    pub access_key_hint: Option<KeyHint>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The last test against the provider: none until tested.
    pub validated_ok: Option<bool>,
    pub validated_at: Option<DateTime<Utc>>,
    pub validation_note: Option<String>,
}

impl CredentialRow {
    pub fn id(&self) -> CredentialId {
        self.home.credential_id
    }
}

/// The columns as stored; typed by [`StoredRow::typed`].
#[derive(sqlx::FromRow)]
pub(crate) struct StoredRow {
    credential_id: Uuid,
    number: Option<i64>,
    aggregate_id: String,
    workspace_id: String,
    owner: String,
    name: String,
    provider: String,
    endpoint: Option<String>,
    hint: String,
    secret: Option<String>,
    access_key_hint: Option<String>,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    validated_ok: Option<bool>,
    validated_at: Option<DateTime<Utc>>,
    validation_note: Option<String>,
}

impl StoredRow {
    pub(crate) fn typed(self) -> Result<CredentialRow, StoreError> {
        let malformed = |what: &str| {
            StoreError::Internal(format!(
                "credential_view row {} has a malformed {what}",
                self.credential_id
            ))
        };
        let owner = aimc_domain::Owner::parse(&self.owner).ok_or_else(|| malformed("owner"))?;
        let workspace =
            WorkspaceId::parse(&self.workspace_id).map_err(|_| malformed("workspace"))?;
        Ok(CredentialRow {
            home: CredentialHome {
                credential_id: CredentialId(self.credential_id),
                stream: StreamId::parse(&self.aggregate_id).ok_or_else(|| malformed("stream"))?,
                owner: ConfigId::new(workspace, owner),
            },
            number: self.number,
            name: CredentialName::parse(&self.name).map_err(|_| malformed("name"))?,
            provider: Provider::parse(&self.provider).map_err(|_| malformed("provider"))?,
            endpoint: self.endpoint,
            hint: KeyHint::stored(self.hint),
            secret: self.secret.map(Ciphertext),
            access_key_hint: self.access_key_hint.map(KeyHint::stored),
            created_by: self.created_by,
            created_at: self.created_at,
            updated_at: self.updated_at,
            validated_ok: self.validated_ok,
            validated_at: self.validated_at,
            validation_note: self.validation_note,
        })
    }
}

pub(crate) fn typed(rows: Vec<StoredRow>) -> Result<Vec<CredentialRow>, StoreError> {
    rows.into_iter().map(StoredRow::typed).collect()
}

const COLUMNS: &str = "credential_id, number, aggregate_id, workspace_id, owner, name, provider, endpoint, hint,
                       secret, access_key_hint, created_by, created_at, updated_at, validated_ok, validated_at,
                       validation_note";

#[derive(Clone)]
pub struct CredentialQueries {
    pool: PgPool,
    standalone: SharedLookups<StandaloneAnswer>,
}

impl CredentialQueries {
    /// Starts the task that shares [`CredentialQueries::standalone_keys`]' queries; needs a
    /// Tokio runtime.
    pub fn new(pool: PgPool) -> Self {
        CredentialQueries {
            standalone: SharedLookups::new(StandaloneAnswer { pool: pool.clone() }),
            pool,
        }
    }

    /// The credentials of one owner, newest first; with `validated_only`, only those whose last
    /// test succeeded.
    pub async fn of_owner(
        &self,
        owner: &ConfigId,
        validated_only: bool,
    ) -> Result<Vec<CredentialRow>, StoreError> {
        let rows: Vec<StoredRow> = traced(
            &self.pool,
            "SELECT credential_view",
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM credential_view
              WHERE workspace_id = $1 AND owner = $2 AND (NOT $3 OR validated_ok)
              ORDER BY created_at DESC, credential_id DESC"
            ))
            .bind(owner.workspace.as_str())
            .bind(owner.owner.to_string())
            .bind(validated_only)
            .fetch_all(&self.pool),
        )
        .await?;
        typed(rows)
    }

    /// For each provider, the owner's key for it: the one its configuration keeps (seed 004's
    /// "save a provider key" replaces that one), else its newest.
    pub async fn provider_keys(
        &self,
        owner: &ConfigId,
        providers: &[Provider],
    ) -> Result<Vec<CredentialRow>, StoreError> {
        self.newest_per_provider(owner, providers).await
    }

    /// For each provider, the owner's newest key with a stream of its own (stored through
    /// `/ai/llm` or `/api/keys`), not kept by any model of its configuration. Family C shows
    /// these beside every answer, reads and writes alike, so lookups arriving together share
    /// one query (see `shared_lookups`).
    pub async fn standalone_keys(
        &self,
        owner: &ConfigId,
        providers: &[Provider],
    ) -> Result<Vec<CredentialRow>, StoreError> {
        self.standalone
            .get(StandaloneKeys {
                owner: owner.clone(),
                providers: providers.to_vec(),
            })
            .await
    }

    /// Per provider, the configuration's own key first, then the newest.
    async fn newest_per_provider(
        &self,
        owner: &ConfigId,
        providers: &[Provider],
    ) -> Result<Vec<CredentialRow>, StoreError> {
        let providers: Vec<&str> = providers.iter().map(|p| p.as_str()).collect();
        let rows: Vec<StoredRow> = traced(
            &self.pool,
            "SELECT credential_view",
            sqlx::query_as(&format!(
                "SELECT DISTINCT ON (provider) {COLUMNS} FROM credential_view
                  WHERE workspace_id = $1 AND owner = $2 AND provider = ANY($3)
                  ORDER BY provider, aggregate_id = $4 DESC, created_at DESC, credential_id DESC"
            ))
            .bind(owner.workspace.as_str())
            .bind(owner.owner.to_string())
            .bind(&providers)
            .bind(owner.to_string())
            .fetch_all(&self.pool),
        )
        .await?;
        typed(rows)
    }

    /// The providers for which any of `owners` holds a key the provider has not refused,
    /// the most recently keyed first.
    pub async fn usable_providers(&self, owners: &[ConfigId]) -> Result<Vec<Provider>, StoreError> {
        let Some(workspace) = owners.first().map(|owner| &owner.workspace) else {
            return Ok(Vec::new());
        };
        let owners: Vec<String> = owners.iter().map(|owner| owner.owner.to_string()).collect();
        let providers: Vec<String> = traced(
            &self.pool,
            "SELECT credential_view",
            sqlx::query_scalar(
                "SELECT provider FROM credential_view
                  WHERE workspace_id = $1 AND owner = ANY($2) AND validated_ok IS NOT FALSE
                  GROUP BY provider
                  ORDER BY max(created_at) DESC, provider",
            )
            .bind(workspace.as_str())
            .bind(&owners)
            .fetch_all(&self.pool),
        )
        .await?;
        Ok(providers
            .iter()
            .filter_map(|provider| Provider::parse(provider).ok())
            .collect())
    }

    /// Each owner's newest key of `provider` that the provider has not refused.
    pub async fn newest_usable(
        &self,
        owners: &[ConfigId],
        provider: Provider,
    ) -> Result<Vec<CredentialRow>, StoreError> {
        let Some(workspace) = owners.first().map(|owner| &owner.workspace) else {
            return Ok(Vec::new());
        };
        let owners: Vec<String> = owners.iter().map(|owner| owner.owner.to_string()).collect();
        let rows: Vec<StoredRow> = traced(
            &self.pool,
            "SELECT credential_view",
            sqlx::query_as(&format!(
                "SELECT DISTINCT ON (owner) {COLUMNS} FROM credential_view
              WHERE workspace_id = $1 AND owner = ANY($2) AND provider = $3
                AND validated_ok IS NOT FALSE
              ORDER BY owner, created_at DESC, credential_id DESC"
            ))
            .bind(workspace.as_str())
            .bind(&owners)
            .bind(provider.as_str())
            .fetch_all(&self.pool),
        )
        .await?;
        typed(rows)
    }

    /// Every credential of a workspace, whoever owns it, oldest first: what a key rotation
    /// rewraps.
    pub async fn of_workspace(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<Vec<CredentialRow>, StoreError> {
        let rows: Vec<StoredRow> = traced(
            &self.pool,
            "SELECT credential_view",
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM credential_view WHERE workspace_id = $1
                  ORDER BY created_at, credential_id"
            ))
            .bind(workspace.as_str())
            .fetch_all(&self.pool),
        )
        .await?;
        typed(rows)
    }

    /// Every event stream of a workspace, as the log has them (whatever the views hold): what a
    /// shred must reach. Scans the log, which is fine for an operation this rare; a workspace
    /// id may hold `_`, which `LIKE` would read as a wildcard, hence `starts_with`.
    pub async fn streams_of_workspace(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<Vec<StreamId>, StoreError> {
        let ids: Vec<String> = traced(
            &self.pool,
            "SELECT events",
            sqlx::query_scalar(
                "SELECT DISTINCT aggregate_id FROM events
                  WHERE aggregate_type = ANY($1) AND starts_with(aggregate_id, $2)
                  ORDER BY aggregate_id",
            )
            .bind(STREAM_TYPES.to_vec())
            .bind(format!("{workspace}/"))
            .fetch_all(&self.pool),
        )
        .await?;
        ids.iter()
            .map(|id| {
                StreamId::parse(id).ok_or_else(|| {
                    StoreError::Internal(format!("the log holds a malformed stream id {id}"))
                })
            })
            .collect()
    }

    /// The workspaces that hold credentials.
    pub async fn workspaces(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        let names: Vec<String> = traced(
            &self.pool,
            "SELECT credential_view",
            sqlx::query_scalar(
                "SELECT DISTINCT workspace_id FROM credential_view ORDER BY workspace_id",
            )
            .fetch_all(&self.pool),
        )
        .await?;
        names
            .into_iter()
            .map(|name| {
                WorkspaceId::parse(&name).map_err(|_| {
                    StoreError::Internal(format!(
                        "credential_view holds a malformed workspace {name}"
                    ))
                })
            })
            .collect()
    }

    pub async fn by_number(&self, number: i64) -> Result<Option<CredentialRow>, StoreError> {
        let row: Option<StoredRow> = traced(
            &self.pool,
            "SELECT credential_view",
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM credential_view WHERE number = $1"
            ))
            .bind(number)
            .fetch_optional(&self.pool),
        )
        .await?;
        row.map(StoredRow::typed).transpose()
    }

    pub async fn by_id(
        &self,
        credential: CredentialId,
    ) -> Result<Option<CredentialRow>, StoreError> {
        let row: Option<StoredRow> = traced(
            &self.pool,
            "SELECT credential_view",
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM credential_view WHERE credential_id = $1"
            ))
            .bind(credential.0)
            .fetch_optional(&self.pool),
        )
        .await?;
        row.map(StoredRow::typed).transpose()
    }

    pub async fn name_available(
        &self,
        workspace: &WorkspaceId,
        name: &CredentialName,
    ) -> Result<bool, StoreError> {
        let taken: bool = traced(&self.pool, "SELECT credential_names", sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM credential_names WHERE workspace_id = $1 AND name_key = $2)",
        )
        .bind(workspace.as_str())
        .bind(name.key().as_str())
        .fetch_one(&self.pool)
        ).await?;
        Ok(!taken)
    }
}

/// An owner's keys of some providers that streams of their own hold, not its configuration's:
/// what [`CredentialQueries::standalone_keys`] finds, and what a command may have looked up in
/// the statement that writes it (see [`crate::CommandBus::execute_looking_up`]).
#[derive(Debug, Clone)]
pub struct StandaloneKeys {
    pub owner: ConfigId,
    pub providers: Vec<Provider>,
}

/// A stored row and the number of the lookup it answers.
#[derive(sqlx::FromRow)]
pub(crate) struct NumberedRow {
    pub lookup: i32,
    #[sqlx(flatten)]
    pub row: StoredRow,
}

/// Pushes the query answering `lookups`, each under its number: one row per lookup and
/// provider that has a key, found through `credential_view_provider` on its own, ordered by
/// lookup. The owner's configuration stream is left out, whatever its keys.
pub(crate) fn push_standalone_keys<'a>(
    sql: &mut QueryBuilder<'_, Postgres>,
    lookups: impl Iterator<Item = (usize, &'a StandaloneKeys)> + Clone,
) {
    let asked = || {
        lookups.clone().flat_map(|(number, lookup)| {
            lookup
                .providers
                .iter()
                .map(move |provider| (number, &lookup.owner, provider))
        })
    };
    sql.push("SELECT a.lookup, k.* FROM unnest(")
        .push_bind(
            asked()
                .map(|(number, _, _)| number as i32)
                .collect::<Vec<_>>(),
        )
        .push("::int[], ")
        .push_bind(
            asked()
                .map(|(_, owner, _)| owner.workspace.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .push("::text[], ")
        .push_bind(
            asked()
                .map(|(_, owner, _)| owner.owner.to_string())
                .collect::<Vec<_>>(),
        )
        .push("::text[], ")
        .push_bind(
            asked()
                .map(|(_, _, provider)| provider.as_str())
                .collect::<Vec<_>>(),
        )
        .push("::text[], ")
        .push_bind(
            asked()
                .map(|(_, owner, _)| owner.to_string())
                .collect::<Vec<_>>(),
        )
        .push(format!(
            "::text[])
                 AS a(lookup, asked_workspace, asked_owner, asked_provider, own_stream)
             CROSS JOIN LATERAL (
                 SELECT {COLUMNS} FROM credential_view
                  WHERE workspace_id = a.asked_workspace AND owner = a.asked_owner
                    AND provider = a.asked_provider AND aggregate_id <> a.own_stream
                  ORDER BY created_at DESC, credential_id DESC
                  LIMIT 1) AS k
             ORDER BY a.lookup, k.provider"
        ));
}

/// [`CredentialQueries::standalone_keys`] for many owners, in one query.
struct StandaloneAnswer {
    pool: PgPool,
}

impl Answer for StandaloneAnswer {
    type Key = StandaloneKeys;
    type Value = Vec<CredentialRow>;
    const SPAN: &'static str = "shared standalone keys lookup";
    /// One: under Wplain these lookups are cheap and spread out, so with two out most went
    /// alone (78 statements per 100 requests, against 131 unshared); with one, 64.
    const QUERIES_IN_FLIGHT: usize = 1;

    async fn answer(
        &self,
        lookups: &[StandaloneKeys],
    ) -> Result<Vec<Result<Vec<CredentialRow>, StoreError>>, StoreError> {
        let mut sql = QueryBuilder::new("");
        push_standalone_keys(&mut sql, lookups.iter().enumerate());
        let rows: Vec<NumberedRow> = traced(
            &self.pool,
            "SELECT credential_view",
            sql.build_query_as().fetch_all(&self.pool),
        )
        .await?;
        let mut answers: Vec<Result<Vec<CredentialRow>, StoreError>> =
            lookups.iter().map(|_| Ok(Vec::new())).collect();
        for NumberedRow { lookup, row } in rows {
            // A malformed row fails only the lookup it answers.
            if let Some(Ok(found)) = answers.get_mut(lookup as usize) {
                match row.typed() {
                    Ok(row) => found.push(row),
                    Err(error) => answers[lookup as usize] = Err(error),
                }
            }
        }
        Ok(answers)
    }
}
