//! The one writer of the read model: every change the folds decided, and a command's events,
//! in one SQL statement. A statement is atomic, so a command's events and the rows they
//! produce commit together or not at all, in one round trip whatever their number.
//!
//! Each table is written by set-based statements over arrays (`unnest`), one data-modifying CTE
//! per kind of change. The CTEs of a statement all see the same snapshot and must not touch a
//! row twice: the folds compose changes so that each row appears once.

use sqlx::{Executor, Postgres};
use uuid::Uuid;

use super::credentials::CredentialChange;
use super::{ReadModelChanges, AUDIT_LOG, CONFIG_VIEW, CREDENTIAL_VIEW};

/// A command's events, as postgres-es stores them, and the snapshot taken with them.
pub(crate) struct Appended<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    /// (sequence, event type, event version, payload JSON, metadata JSON)
    pub events: Vec<(i64, String, String, String, String)>,
    /// (last sequence, schema version, payload JSON), when one is due.
    pub snapshot: Option<(i64, i32, String)>,
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

/// The statement, with the name claims of [`NameClaims::Enforced`] or [`NameClaims::FirstComes`].
static WRITE: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
    [
        WRITE_TEMPLATE.replace(ON_NAME_CLASH, ""),
        WRITE_TEMPLATE.replace(
            ON_NAME_CLASH,
            "ON CONFLICT (workspace_id, name_key) DO NOTHING",
        ),
    ]
});

const ON_NAME_CLASH: &str = "/* on name clash */";

const WRITE_TEMPLATE: &str = r#"
WITH
appended AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    SELECT $1, $2, e.* FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[]::json[], $7::text[]::json[]) AS e
),
snapshot AS (
    INSERT INTO aggregate_snapshots (aggregate_type, aggregate_id, last_sequence, schema_version, payload)
    SELECT $1, $2, s.* FROM unnest($8::bigint[], $9::int[], $10::text[]::jsonb[]) AS s
    ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
       SET last_sequence = excluded.last_sequence, schema_version = excluded.schema_version,
           payload = excluded.payload, taken_at = now()
     WHERE aggregate_snapshots.last_sequence < excluded.last_sequence
        OR aggregate_snapshots.schema_version <> excluded.schema_version
),
configs AS (
    INSERT INTO config_view (aggregate_id, workspace_id, owner, last_sequence, view, created_at, updated_at)
    SELECT c.aggregate_id, c.workspace_id, c.owner, c.last_sequence, c.view,
           coalesce(c.created_at, c.updated_at, now()), coalesce(c.updated_at, now())
      FROM unnest($11::text[], $12::text[], $13::text[], $14::bigint[], $15::text[]::json[],
                  $16::timestamptz[], $17::timestamptz[])
           AS c(aggregate_id, workspace_id, owner, last_sequence, view, created_at, updated_at)
    ON CONFLICT (aggregate_id) DO UPDATE
       SET last_sequence = excluded.last_sequence, view = excluded.view,
           updated_at = excluded.updated_at
     WHERE config_view.last_sequence < excluded.last_sequence
),
credentials_added AS (
    INSERT INTO credential_view
    SELECT * FROM jsonb_populate_recordset(NULL::credential_view, $18::jsonb)
    ON CONFLICT (credential_id) DO NOTHING
),
credentials_changed AS (
    UPDATE credential_view c
       SET (name, name_key, provider, endpoint, hint, secret, access_key_hint, validated_ok,
            validated_at, validation_note, updated_at)
         = (SELECT r.name, r.name_key, r.provider, r.endpoint, r.hint, r.secret, r.access_key_hint,
                   r.validated_ok, r.validated_at, r.validation_note, r.updated_at
              FROM jsonb_populate_record(c, p.columns) AS r)
      FROM unnest($19::uuid[], $20::jsonb[]) AS p(credential_id, columns)
     WHERE c.credential_id = p.credential_id
),
credentials_removed AS (
    DELETE FROM credential_view WHERE credential_id = ANY($21::uuid[])
),
names_released AS (
    DELETE FROM credential_names n
     USING unnest($22::text[], $23::text[], $24::uuid[]) AS r(workspace_id, name_key, credential_id)
     WHERE n.workspace_id = r.workspace_id AND n.name_key = r.name_key AND n.credential_id = r.credential_id
),
names_moved AS (
    UPDATE credential_names n SET credential_id = r.holder, claimed_at = now()
      FROM unnest($25::text[], $26::text[], $27::uuid[], $28::uuid[])
           AS r(workspace_id, name_key, former, holder)
     WHERE n.workspace_id = r.workspace_id AND n.name_key = r.name_key AND n.credential_id = r.former
),
names_taken AS (
    INSERT INTO credential_names (workspace_id, name_key, credential_id)
    SELECT * FROM unnest($29::text[], $30::text[], $31::uuid[])
    /* on name clash */
),
audit_counts AS (
    SELECT workspace_id, count(*) AS entries FROM unnest($32::text[]) AS a(workspace_id) GROUP BY workspace_id
),
positions AS (
    INSERT INTO audit_positions (workspace_id, last_position)
    SELECT workspace_id, entries FROM audit_counts
    ON CONFLICT (workspace_id) DO UPDATE SET last_position = audit_positions.last_position + excluded.last_position
    RETURNING workspace_id, last_position
),
audit AS (
    INSERT INTO audit_log (position, aggregate_id, sequence, workspace_id, owner, event_type, actor,
                           request_id, trace_id, occurred_at, details)
    SELECT p.last_position - c.entries + a.ordinal, a.aggregate_id, a.sequence, a.workspace_id, a.owner,
           a.event_type, a.actor, a.request_id, a.trace_id, a.occurred_at, a.details
      FROM unnest($32::text[], $33::bigint[], $34::text[], $35::bigint[], $36::text[], $37::text[],
                  $38::text[], $39::text[], $40::text[], $41::timestamptz[], $42::jsonb[])
           AS a(workspace_id, ordinal, aggregate_id, sequence, owner, event_type, actor, request_id,
                trace_id, occurred_at, details)
      JOIN audit_counts c USING (workspace_id)
      JOIN positions p USING (workspace_id)
    ON CONFLICT (aggregate_id, sequence) DO NOTHING
),
offsets AS (
    INSERT INTO projection_offsets (projection, aggregate_id, last_sequence)
    SELECT * FROM unnest($43::text[], $44::text[], $45::bigint[])
    ON CONFLICT (projection, aggregate_id) DO UPDATE SET last_sequence = excluded.last_sequence
     WHERE projection_offsets.last_sequence < excluded.last_sequence
)
SELECT 1"#;

/// Writes `changes`, and `appended` with them, in one statement.
pub(crate) async fn write<'e>(
    executor: impl Executor<'e, Database = Postgres>,
    appended: Option<&Appended<'_>>,
    changes: &ReadModelChanges,
    claims: NameClaims,
) -> Result<(), sqlx::Error> {
    let statement = match claims {
        NameClaims::Enforced => &WRITE[0],
        NameClaims::FirstComes => &WRITE[1],
    };
    let mut query = sqlx::query(statement);

    // Events and snapshot.
    let (aggregate_type, aggregate_id) = appended
        .map(|a| (a.aggregate_type, a.aggregate_id))
        .unwrap_or_default();
    let events = appended.map(|a| &a.events[..]).unwrap_or_default();
    query = query
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(events.iter().map(|e| e.0).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.1.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.2.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.3.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.4.as_str()).collect::<Vec<_>>());
    let snapshot = appended.and_then(|a| a.snapshot.as_ref());
    query = query
        .bind(snapshot.iter().map(|s| s.0).collect::<Vec<_>>())
        .bind(snapshot.iter().map(|s| s.1).collect::<Vec<_>>())
        .bind(snapshot.iter().map(|s| s.2.as_str()).collect::<Vec<_>>());

    // config_view
    let configs = &changes.configs;
    let views = configs
        .iter()
        .map(|row| serde_json::to_string(&row.view))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
    query = query
        .bind(
            configs
                .iter()
                .map(|r| r.aggregate_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            configs
                .iter()
                .map(|r| r.workspace_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(configs.iter().map(|r| r.owner.as_str()).collect::<Vec<_>>())
        .bind(configs.iter().map(|r| r.last_sequence).collect::<Vec<_>>())
        .bind(views)
        .bind(configs.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(configs.iter().map(|r| r.updated_at).collect::<Vec<_>>());

    // credential_view
    let mut added = Vec::new();
    let (mut changed, mut columns) = (Vec::new(), Vec::new());
    let mut removed: Vec<Uuid> = Vec::new();
    for (credential, change) in changes.credentials.sorted() {
        match change {
            CredentialChange::Insert(row) => added.push(row.as_ref()),
            CredentialChange::Patch(patch) => {
                changed.push(*credential);
                columns.push(patch.columns());
            }
            CredentialChange::Delete => removed.push(*credential),
        }
    }
    query = query
        .bind(sqlx::types::Json(added))
        .bind(changed)
        .bind(columns)
        .bind(removed);

    // credential_names
    let names = &changes.names;
    query = query
        .bind(
            names
                .released
                .iter()
                .map(|n| n.0.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            names
                .released
                .iter()
                .map(|n| n.1.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(names.released.iter().map(|n| n.2).collect::<Vec<_>>())
        .bind(names.moved.iter().map(|n| n.0.as_str()).collect::<Vec<_>>())
        .bind(names.moved.iter().map(|n| n.1.as_str()).collect::<Vec<_>>())
        .bind(names.moved.iter().map(|n| n.2).collect::<Vec<_>>())
        .bind(names.moved.iter().map(|n| n.3).collect::<Vec<_>>())
        .bind(names.taken.iter().map(|n| n.0.as_str()).collect::<Vec<_>>())
        .bind(names.taken.iter().map(|n| n.1.as_str()).collect::<Vec<_>>())
        .bind(names.taken.iter().map(|n| n.2).collect::<Vec<_>>());

    // audit_log: positions follow the order of the entries within each workspace.
    let audit = &changes.audit;
    let mut ordinals = Vec::with_capacity(audit.len());
    let mut counted: std::collections::HashMap<&str, i64> = Default::default();
    for row in audit {
        let ordinal = counted.entry(row.workspace_id.as_str()).or_default();
        *ordinal += 1;
        ordinals.push(*ordinal);
    }
    query = query
        .bind(
            audit
                .iter()
                .map(|r| r.workspace_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(ordinals)
        .bind(
            audit
                .iter()
                .map(|r| r.aggregate_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(audit.iter().map(|r| r.sequence).collect::<Vec<_>>())
        .bind(audit.iter().map(|r| r.owner.as_str()).collect::<Vec<_>>())
        .bind(audit.iter().map(|r| r.event_type).collect::<Vec<_>>())
        .bind(audit.iter().map(|r| r.actor.as_deref()).collect::<Vec<_>>())
        .bind(
            audit
                .iter()
                .map(|r| r.request_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            audit
                .iter()
                .map(|r| r.trace_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(audit.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
        .bind(audit.iter().map(|r| &r.details).collect::<Vec<_>>());

    // projection_offsets
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
            aggregates.push(aggregate_id.as_str());
            sequences.push(sequence);
        }
    }
    query = query.bind(projections).bind(aggregates).bind(sequences);

    executor.execute(query).await?;
    Ok(())
}
