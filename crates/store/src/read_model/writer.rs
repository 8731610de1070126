//! The one writer of the read model: every change the folds decided, and a command's events,
//! in one SQL statement. A statement is atomic, so a command's events and the rows they
//! produce commit together or not at all, in one round trip whatever their number.
//!
//! Each table is written by set-based statements over arrays (`unnest`), one data-modifying CTE
//! per kind of change, and only the kinds a write has: PostgreSQL prepares each shape once per
//! connection, and starts and finishes only the parts it runs. The CTEs of a statement all see
//! the same snapshot and must not touch a row twice: the folds compose changes so that each row
//! appears once.

use std::collections::HashMap;

use sqlx::{Executor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::audit::{CredentialFacts, HINT_FIELDS, SHREDDED_HINT};
use super::credentials::CredentialChange;
use super::{ReadModelChanges, AUDIT_LOG, CONFIG_VIEW, CREDENTIAL_VIEW};
use crate::credentials::{push_standalone_keys, NumberedRow, StandaloneKeys};

/// A command's events, as postgres-es stores them, and the snapshot taken with them.
pub(crate) struct Appended<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    /// (sequence, event type, event version, payload JSON, metadata JSON)
    pub events: &'a [(i64, String, String, String, String)],
    /// (last sequence, schema version, payload JSON), when one is due.
    pub snapshot: Option<&'a (i64, i32, String)>,
    /// The latest time, by the database's clock, at which the write may begin; see
    /// `aimc_write_deadline` in the migrations.
    pub start_by: Option<chrono::DateTime<chrono::Utc>>,
}

/// Whether a name already in the registry refuses the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameClaims {
    /// A command's: the name was checked free when the command was decided, so finding it
    /// taken means another writer won the race (the command is retried, and then refused or
    /// given another name).
    Enforced,
    /// A replay's: the log may hold names that clashed under older builds; the first holder
    /// keeps the name, as it did then.
    FirstComes,
}

/// One statement of data-modifying CTEs, a CTE per kind of change present.
struct Statement<'args> {
    sql: QueryBuilder<'args, Postgres>,
    parts: usize,
}

impl<'args> Statement<'args> {
    fn new() -> Self {
        Statement {
            sql: QueryBuilder::new("WITH "),
            parts: 0,
        }
    }

    /// Starts the CTE `name`; the caller pushes its body.
    fn part(&mut self, name: &str) -> &mut QueryBuilder<'args, Postgres> {
        if self.parts > 0 {
            self.sql.push(",\n");
        }
        self.parts += 1;
        self.sql.push(name).push(" AS (");
        &mut self.sql
    }
}

/// Writes `changes`, and `appended` with them, in one statement.
pub(crate) async fn write<'e>(
    executor: impl Executor<'e, Database = Postgres>,
    appended: Option<&Appended<'_>>,
    changes: &ReadModelChanges,
    claims: NameClaims,
) -> Result<(), sqlx::Error> {
    match appended {
        Some(appended) => write_streams(executor, std::slice::from_ref(appended), changes, claims),
        None => write_streams(executor, &[], changes, claims),
    }
    .await
}

/// Writes `changes`, and the events of every stream in `appended` with them, in one
/// statement: another writer's event at a sequence one of them takes fails it whole.
pub(crate) async fn write_streams<'e>(
    executor: impl Executor<'e, Database = Postgres>,
    appended: &[Appended<'_>],
    changes: &ReadModelChanges,
    claims: NameClaims,
) -> Result<(), sqlx::Error> {
    let Some(mut statement) = statement(appended, changes, claims) else {
        return Ok(());
    };
    statement.sql.push("\nSELECT 1");
    executor.execute(statement.sql.build()).await?;
    Ok(())
}

/// [`write_streams`], answering `lookups` in the same statement: a command's answer needs
/// them, and a statement of their own costs a round trip and a transaction (under Wplain in the
/// rig, a fifth of aimc's CPU per request and a sixth of PostgreSQL's). They see the database
/// as it stood before the statement, as a lookup run beside the write might have.
pub(crate) async fn write_streams_looking_up<'e>(
    executor: impl Executor<'e, Database = Postgres>,
    appended: &[Appended<'_>],
    changes: &ReadModelChanges,
    claims: NameClaims,
    lookups: &[(usize, &StandaloneKeys)],
) -> Result<Vec<NumberedRow>, sqlx::Error> {
    if lookups.is_empty() {
        write_streams(executor, appended, changes, claims).await?;
        return Ok(Vec::new());
    }
    let mut sql = match statement(appended, changes, claims) {
        Some(mut statement) => {
            statement.sql.push("\n");
            statement.sql
        }
        None => QueryBuilder::new(""),
    };
    push_standalone_keys(&mut sql, lookups.iter().copied());
    sql.build_query_as().fetch_all(executor).await
}

/// The statement's data-modifying CTEs; none when there is nothing to write.
fn statement<'a>(
    appended: &'a [Appended<'a>],
    changes: &'a ReadModelChanges,
    claims: NameClaims,
) -> Option<Statement<'a>> {
    let mut statement = Statement::new();
    match appended {
        [] => {}
        [appended] => events(&mut statement, appended),
        several => streams_events(&mut statement, several),
    }
    configs(&mut statement, changes);
    configs_deleted(&mut statement, changes);
    credentials(&mut statement, changes);
    names(&mut statement, changes, claims);
    audit(&mut statement, changes);
    shredded(&mut statement, changes);
    offsets(&mut statement, changes);
    (statement.parts > 0).then_some(statement)
}

fn events<'a>(statement: &mut Statement<'a>, appended: &Appended<'a>) {
    let events = appended.events;
    if !events.is_empty() {
        let sql = statement.part("appended");
        sql.push("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) SELECT ")
            .push_bind(appended.aggregate_type)
            .push(", ")
            .push_bind(appended.aggregate_id)
            .push(", e.* FROM unnest(")
            .push_bind(events.iter().map(|e| e.0).collect::<Vec<_>>())
            .push("::bigint[], ")
            .push_bind(events.iter().map(|e| e.1.clone()).collect::<Vec<_>>())
            .push("::text[], ")
            .push_bind(events.iter().map(|e| e.2.clone()).collect::<Vec<_>>())
            .push("::text[], ")
            .push_bind(events.iter().map(|e| e.3.clone()).collect::<Vec<_>>())
            .push("::text[]::json[], ")
            .push_bind(events.iter().map(|e| e.4.clone()).collect::<Vec<_>>())
            .push("::text[]::json[]) AS e");
        if let Some(start_by) = appended.start_by {
            // Raises rather than filters: the whole statement, views included, must fail.
            sql.push(" WHERE aimc_write_deadline(")
                .push_bind(start_by)
                .push(")");
        }
        sql.push(")");
    }
    if let Some((last_sequence, schema_version, payload)) = appended.snapshot {
        let sql = statement.part("snapshot");
        sql.push("INSERT INTO aggregate_snapshots (aggregate_type, aggregate_id, last_sequence, schema_version, payload) VALUES (")
            .push_bind(appended.aggregate_type)
            .push(", ")
            .push_bind(appended.aggregate_id)
            .push(", ")
            .push_bind(*last_sequence)
            .push(", ")
            .push_bind(*schema_version)
            .push(", ")
            .push_bind(payload.clone())
            .push(
                "::json) ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                   SET last_sequence = excluded.last_sequence, schema_version = excluded.schema_version,
                       payload = excluded.payload, taken_at = now()
                 WHERE aggregate_snapshots.last_sequence < excluded.last_sequence
                    OR aggregate_snapshots.schema_version <> excluded.schema_version)",
            );
    }
}

/// The events and snapshots of several streams, as [`events`] writes one stream's.
fn streams_events<'a>(statement: &mut Statement<'a>, appended: &[Appended<'a>]) {
    let events = || {
        appended
            .iter()
            .flat_map(|stream| stream.events.iter().map(move |event| (stream, event)))
    };
    let sql = statement.part("appended");
    sql.push("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) SELECT e.* FROM unnest(")
        .push_bind(events().map(|(s, _)| s.aggregate_type.to_owned()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(events().map(|(s, _)| s.aggregate_id.to_owned()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(events().map(|(_, e)| e.0).collect::<Vec<_>>())
        .push("::bigint[], ")
        .push_bind(events().map(|(_, e)| e.1.clone()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(events().map(|(_, e)| e.2.clone()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(events().map(|(_, e)| e.3.clone()).collect::<Vec<_>>())
        .push("::text[]::json[], ")
        .push_bind(events().map(|(_, e)| e.4.clone()).collect::<Vec<_>>())
        .push("::text[]::json[]) AS e");
    // The earliest of the streams' deadlines holds for the one statement.
    if let Some(start_by) = appended.iter().filter_map(|stream| stream.start_by).min() {
        // Raises rather than filters: the whole statement, views included, must fail.
        sql.push(" WHERE aimc_write_deadline(")
            .push_bind(start_by)
            .push(")");
    }
    sql.push(")");
    let snapshots: Vec<(&Appended<'a>, &(i64, i32, String))> = appended
        .iter()
        .filter_map(|stream| stream.snapshot.map(|snapshot| (stream, snapshot)))
        .collect();
    if snapshots.is_empty() {
        return;
    }
    statement
        .part("snapshot")
        .push("INSERT INTO aggregate_snapshots (aggregate_type, aggregate_id, last_sequence, schema_version, payload) SELECT s.aggregate_type, s.aggregate_id, s.last_sequence, s.schema_version, s.payload FROM unnest(")
        .push_bind(snapshots.iter().map(|(s, _)| s.aggregate_type.to_owned()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(snapshots.iter().map(|(s, _)| s.aggregate_id.to_owned()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(snapshots.iter().map(|(_, s)| s.0).collect::<Vec<_>>())
        .push("::bigint[], ")
        .push_bind(snapshots.iter().map(|(_, s)| s.1).collect::<Vec<_>>())
        .push("::int[], ")
        .push_bind(snapshots.iter().map(|(_, s)| s.2.clone()).collect::<Vec<_>>())
        .push(
            "::text[]::json[]) AS s(aggregate_type, aggregate_id, last_sequence, schema_version, payload)
             ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
               SET last_sequence = excluded.last_sequence, schema_version = excluded.schema_version,
                   payload = excluded.payload, taken_at = now()
             WHERE aggregate_snapshots.last_sequence < excluded.last_sequence
                OR aggregate_snapshots.schema_version <> excluded.schema_version)",
        );
}

fn configs(statement: &mut Statement<'_>, changes: &ReadModelChanges) {
    let configs = &changes.configs;
    if configs.is_empty() {
        return;
    }
    let views: Vec<String> = configs
        .iter()
        .map(|row| serde_json::to_string(&row.view).unwrap_or_default())
        .collect();
    let sql = statement.part("configs");
    sql.push("INSERT INTO config_view (aggregate_id, workspace_id, owner, last_sequence, view, created_at, updated_at)
              SELECT c.aggregate_id, c.workspace_id, c.owner, c.last_sequence, c.view,
                     coalesce(c.created_at, c.updated_at, now()), coalesce(c.updated_at, now())
                FROM unnest(")
        .push_bind(configs.iter().map(|r| r.aggregate_id.clone()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(configs.iter().map(|r| r.workspace_id.clone()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(configs.iter().map(|r| r.owner.clone()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(configs.iter().map(|r| r.last_sequence).collect::<Vec<_>>())
        .push("::bigint[], ")
        .push_bind(views)
        .push("::text[]::json[], ")
        .push_bind(configs.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .push("::timestamptz[], ")
        .push_bind(configs.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .push(
            "::timestamptz[])
                  AS c(aggregate_id, workspace_id, owner, last_sequence, view, created_at, updated_at)
              ON CONFLICT (aggregate_id) DO UPDATE
                 SET last_sequence = excluded.last_sequence, view = excluded.view,
                     updated_at = excluded.updated_at
               WHERE config_view.last_sequence < excluded.last_sequence)",
        );
}

fn configs_deleted(statement: &mut Statement<'_>, changes: &ReadModelChanges) {
    if changes.configs_deleted.is_empty() {
        return;
    }
    statement
        .part("configs_deleted")
        .push("DELETE FROM config_view WHERE aggregate_id = ANY(")
        .push_bind(changes.configs_deleted.clone())
        .push("::text[]))");
}

/// The stored history entries of shredded streams have their hints masked; the fold masked
/// those this statement writes.
fn shredded(statement: &mut Statement<'_>, changes: &ReadModelChanges) {
    if changes.shredded.is_empty() {
        return;
    }
    let fields: Vec<&str> = HINT_FIELDS.to_vec();
    statement
        .part("audit_shredded")
        .push("UPDATE audit_log SET details = details || (SELECT jsonb_object_agg(f, to_jsonb(")
        .push_bind(SHREDDED_HINT)
        .push("::text)) FROM unnest(")
        .push_bind(fields.clone())
        .push("::text[]) AS f WHERE details ? f) WHERE aggregate_id = ANY(")
        .push_bind(changes.shredded.clone())
        .push("::text[]) AND details ?| ")
        .push_bind(fields)
        .push("::text[])");
}

fn credentials(statement: &mut Statement<'_>, changes: &ReadModelChanges) {
    let mut added = Vec::new();
    let (mut changed, mut columns) = (Vec::new(), Vec::new());
    let mut removed: Vec<Uuid> = Vec::new();
    for (credential, change) in changes.credentials.sorted() {
        match change {
            CredentialChange::Insert(row) => added.push(row.as_ref().clone()),
            CredentialChange::Patch(patch) => {
                changed.push(*credential);
                columns.push(patch.columns());
            }
            CredentialChange::Delete => removed.push(*credential),
        }
    }
    if !added.is_empty() {
        statement
            .part("credentials_added")
            .push("INSERT INTO credential_view SELECT * FROM jsonb_populate_recordset(NULL::credential_view, ")
            .push_bind(sqlx::types::Json(added))
            .push(") ON CONFLICT (credential_id) DO NOTHING)");
    }
    if !changed.is_empty() {
        statement
            .part("credentials_changed")
            .push(
                "UPDATE credential_view c
                    SET (name, name_key, provider, endpoint, hint, secret, access_key_hint, validated_ok,
                         validated_at, validation_note, updated_at)
                      = (SELECT r.name, r.name_key, r.provider, r.endpoint, r.hint, r.secret, r.access_key_hint,
                                r.validated_ok, r.validated_at, r.validation_note, r.updated_at
                           FROM jsonb_populate_record(c, p.columns) AS r)
                   FROM unnest(",
            )
            .push_bind(changed)
            .push("::uuid[], ")
            .push_bind(columns)
            .push("::jsonb[]) AS p(credential_id, columns) WHERE c.credential_id = p.credential_id)");
    }
    if !removed.is_empty() {
        statement
            .part("credentials_removed")
            .push("DELETE FROM credential_view WHERE credential_id = ANY(")
            .push_bind(removed)
            .push("::uuid[]))");
    }
}

fn names(statement: &mut Statement<'_>, changes: &ReadModelChanges, claims: NameClaims) {
    let names = &changes.names;
    if !names.released.is_empty() {
        statement
            .part("names_released")
            .push("DELETE FROM credential_names n USING unnest(")
            .push_bind(
                names
                    .released
                    .iter()
                    .map(|n| n.0.clone())
                    .collect::<Vec<_>>(),
            )
            .push("::text[], ")
            .push_bind(
                names
                    .released
                    .iter()
                    .map(|n| n.1.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
            .push("::text[], ")
            .push_bind(names.released.iter().map(|n| n.2).collect::<Vec<_>>())
            .push(
                "::uuid[]) AS r(workspace_id, name_key, credential_id)
                 WHERE n.workspace_id = r.workspace_id AND n.name_key = r.name_key
                   AND n.credential_id = r.credential_id)",
            );
    }
    if !names.moved.is_empty() {
        statement
            .part("names_moved")
            .push("UPDATE credential_names n SET credential_id = r.holder, claimed_at = now() FROM unnest(")
            .push_bind(names.moved.iter().map(|n| n.0.clone()).collect::<Vec<_>>())
            .push("::text[], ")
            .push_bind(names.moved.iter().map(|n| n.1.as_str().to_owned()).collect::<Vec<_>>())
            .push("::text[], ")
            .push_bind(names.moved.iter().map(|n| n.2).collect::<Vec<_>>())
            .push("::uuid[], ")
            .push_bind(names.moved.iter().map(|n| n.3).collect::<Vec<_>>())
            .push(
                "::uuid[]) AS r(workspace_id, name_key, former, holder)
                 WHERE n.workspace_id = r.workspace_id AND n.name_key = r.name_key
                   AND n.credential_id = r.former)",
            );
    }
    if !names.taken.is_empty() {
        let sql = statement
            .part("names_taken")
            .push("INSERT INTO credential_names (workspace_id, name_key, credential_id) SELECT * FROM unnest(")
            .push_bind(names.taken.iter().map(|n| n.0.clone()).collect::<Vec<_>>())
            .push("::text[], ")
            .push_bind(names.taken.iter().map(|n| n.1.as_str().to_owned()).collect::<Vec<_>>())
            .push("::text[], ")
            .push_bind(names.taken.iter().map(|n| n.2).collect::<Vec<_>>())
            .push("::uuid[])");
        if claims == NameClaims::FirstComes {
            sql.push(" ON CONFLICT (workspace_id, name_key) DO NOTHING");
        }
        sql.push(")");
    }
}

/// Positions follow the order of the entries within each workspace, from its counter in
/// `audit_positions`: taking them in the statement that commits the entries makes commit
/// order and position order the same. The counters are locked in one order, so statements
/// of several workspaces (a group commit) cannot deadlock on them.
fn audit(statement: &mut Statement<'_>, changes: &ReadModelChanges) {
    let audit = &changes.audit;
    if audit.is_empty() {
        return;
    }
    let mut ordinals = Vec::with_capacity(audit.len());
    let mut counted: HashMap<&str, i64> = HashMap::new();
    for row in audit {
        let ordinal = counted.entry(row.workspace_id.as_str()).or_default();
        *ordinal += 1;
        ordinals.push(*ordinal);
    }
    let workspaces: Vec<String> = audit.iter().map(|r| r.workspace_id.clone()).collect();
    let facts: Vec<Option<&CredentialFacts>> =
        audit.iter().map(|r| r.credential.as_ref()).collect();
    statement
        .part("audit_counts")
        .push("SELECT workspace_id, count(*) AS entries FROM unnest(")
        .push_bind(workspaces.clone())
        .push("::text[]) AS a(workspace_id) GROUP BY workspace_id)");
    statement.part("positions").push(
        "INSERT INTO audit_positions (workspace_id, last_position)
         SELECT workspace_id, entries FROM audit_counts ORDER BY workspace_id
         ON CONFLICT (workspace_id) DO UPDATE SET last_position = audit_positions.last_position + excluded.last_position
         RETURNING workspace_id, last_position)",
    );
    statement
        .part("audit")
        .push(
            "INSERT INTO audit_log (position, aggregate_id, sequence, workspace_id, owner, event_type, actor,
                                    request_id, trace_id, occurred_at, details, credential_id, provider)
             SELECT p.last_position - c.entries + a.ordinal, a.aggregate_id, a.sequence, a.workspace_id, a.owner,
                    a.event_type, a.actor, a.request_id, a.trace_id, a.occurred_at,
                    CASE WHEN a.credential_id IS NULL THEN a.details
                         ELSE a.details || jsonb_strip_nulls(jsonb_build_object(
                              'provider', COALESCE(a.provider, v.provider),
                              'name', COALESCE(a.name, v.name),
                              'previous_hint', CASE WHEN a.event_type = 'CredentialSecretReplaced'
                                                    THEN COALESCE(a.previous_hint, v.hint) END))
                    END,
                    a.credential_id, COALESCE(a.provider, v.provider)
               FROM unnest(",
        )
        .push_bind(workspaces)
        .push("::text[], ")
        .push_bind(ordinals)
        .push("::bigint[], ")
        .push_bind(audit.iter().map(|r| r.aggregate_id.clone()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(audit.iter().map(|r| r.sequence).collect::<Vec<_>>())
        .push("::bigint[], ")
        .push_bind(audit.iter().map(|r| r.owner.clone()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(audit.iter().map(|r| r.event_type).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(audit.iter().map(|r| r.actor.clone()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(audit.iter().map(|r| r.request_id.clone()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(audit.iter().map(|r| r.trace_id.clone()).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(audit.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
        .push("::timestamptz[], ")
        .push_bind(audit.iter().map(|r| r.details.clone()).collect::<Vec<_>>())
        .push("::jsonb[], ")
        .push_bind(facts.iter().map(|f| f.map(|f| f.credential_id)).collect::<Vec<_>>())
        .push("::uuid[], ")
        .push_bind(
            audit
                .iter()
                .map(|r| {
                    r.credential
                        .as_ref()
                        .and_then(|f| f.provider)
                        .or(r.model_provider)
                })
                .collect::<Vec<_>>(),
        )
        .push("::text[], ")
        .push_bind(facts.iter().map(|f| f.and_then(|f| f.name.clone())).collect::<Vec<_>>())
        .push("::text[], ")
        .push_bind(
            facts
                .iter()
                .map(|f| f.and_then(|f| f.previous_hint.clone()))
                .collect::<Vec<_>>(),
        )
        .push(
            "::text[])
                  AS a(workspace_id, ordinal, aggregate_id, sequence, owner, event_type, actor, request_id,
                       trace_id, occurred_at, details, credential_id, provider, name, previous_hint)
               JOIN audit_counts c USING (workspace_id)
               JOIN positions p USING (workspace_id)
               -- As it stood before this statement: the credential before the entry's event.
               LEFT JOIN credential_view v ON v.credential_id = a.credential_id
             ON CONFLICT (aggregate_id, sequence) DO NOTHING)",
        );
}

fn offsets(statement: &mut Statement<'_>, changes: &ReadModelChanges) {
    if changes.offsets.is_empty() {
        return;
    }
    let mut projections = Vec::new();
    let mut aggregates = Vec::new();
    let mut sequences = Vec::new();
    for (aggregate_id, offsets) in &changes.offsets {
        for (projection, sequence) in [
            (AUDIT_LOG, offsets.audit),
            (CONFIG_VIEW, offsets.config),
            (CREDENTIAL_VIEW, offsets.credentials),
        ] {
            projections.push(projection);
            aggregates.push(aggregate_id.clone());
            sequences.push(sequence);
        }
    }
    statement
        .part("offsets")
        .push("INSERT INTO projection_offsets (projection, aggregate_id, last_sequence) SELECT * FROM unnest(")
        .push_bind(projections)
        .push("::text[], ")
        .push_bind(aggregates)
        .push("::text[], ")
        .push_bind(sequences)
        .push(
            "::bigint[]) ON CONFLICT (projection, aggregate_id) DO UPDATE SET last_sequence = excluded.last_sequence
             WHERE projection_offsets.last_sequence < excluded.last_sequence)",
        );
}
