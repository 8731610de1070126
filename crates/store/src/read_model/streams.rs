//! How each aggregate's stream is filed in the read model, and the catch-up of one stream.

use aimc_domain::{
    AiModelConfig, ConfigEvent, ConfigId, CredentialAggregate, CredentialEvent, StreamId,
};
use cqrs_es::Aggregate;
use sqlx::{Connection, PgConnection, PgPool};

use super::writer::{self, NameClaims};
use super::{EventMetadata, Offsets, Projection, StreamPlace, ViewedEvent, VIEWS};
use crate::database::traced;
use crate::error::StoreError;
use crate::upcasting::decode;

/// The aggregate types whose streams the read model folds.
pub(crate) const STREAM_TYPES: [&str; 2] = [AiModelConfig::TYPE, CredentialAggregate::TYPE];

/// How an aggregate's stream is filed in the read model, and the state its folds start from.
pub trait Projected: Aggregate + Clone {
    /// Where the stream's events go, from its id and its first event; none for an id this
    /// aggregate never has.
    fn place(aggregate_id: &str, first: &Self::Event) -> Option<StreamPlace>;

    /// Starts the stream's folds from this state (as loaded for a command), projected up to
    /// `sequence`; a stream not begun yet starts with its first event.
    fn start_projection(self, projection: &mut Projection, aggregate_id: &str, sequence: i64);

    fn viewed(event: &Self::Event) -> ViewedEvent<'_>;
}

/// Folds one event of a stream, starting the stream's folds at `offsets` if it has not begun.
pub(crate) fn project<A: Projected>(
    projection: &mut Projection,
    aggregate_id: &str,
    sequence: i64,
    event: &A::Event,
    metadata: &EventMetadata,
    offsets: Offsets,
) -> Result<(), StoreError> {
    if !projection.has_stream(aggregate_id) {
        let place = A::place(aggregate_id, event).ok_or_else(|| {
            StoreError::Internal(format!("malformed {} stream {aggregate_id}", A::TYPE))
        })?;
        projection.start_stream(place, None, offsets);
    }
    projection.apply(aggregate_id, sequence, A::viewed(event), metadata);
    Ok(())
}

impl Projected for AiModelConfig {
    fn place(aggregate_id: &str, _first: &ConfigEvent) -> Option<StreamPlace> {
        let id = ConfigId::parse(aggregate_id)?;
        Some(StreamPlace {
            aggregate_id: aggregate_id.to_owned(),
            workspace: id.workspace.to_string(),
            owner: id.owner.to_string(),
            is_config: true,
        })
    }

    fn start_projection(self, projection: &mut Projection, aggregate_id: &str, sequence: i64) {
        let Some(id) = &self.id else { return };
        let names = self
            .credentials
            .values()
            .map(|credential| (credential.name.key(), credential.id.0));
        projection.known_names(id.workspace.as_str(), names);
        let place = StreamPlace {
            aggregate_id: aggregate_id.to_owned(),
            workspace: id.workspace.to_string(),
            owner: id.owner.to_string(),
            is_config: true,
        };
        projection.start_stream(place, Some(self), Offsets::all(sequence));
    }

    fn viewed(event: &ConfigEvent) -> ViewedEvent<'_> {
        ViewedEvent::Config(event)
    }
}

impl Projected for CredentialAggregate {
    fn place(aggregate_id: &str, first: &CredentialEvent) -> Option<StreamPlace> {
        let StreamId::Credential { workspace, .. } = StreamId::parse(aggregate_id)? else {
            return None;
        };
        let CredentialEvent::Added {
            owner: Some(owner), ..
        } = first
        else {
            return None;
        };
        Some(StreamPlace {
            aggregate_id: aggregate_id.to_owned(),
            workspace: workspace.to_string(),
            owner: owner.owner.to_string(),
            is_config: false,
        })
    }

    fn start_projection(self, projection: &mut Projection, aggregate_id: &str, sequence: i64) {
        let Some(owner) = &self.owner else { return };
        if let Some(credential) = &self.credential {
            projection.known_names(
                owner.workspace.as_str(),
                [(credential.name.key(), credential.id.0)],
            );
        }
        projection.start_stream(
            StreamPlace {
                aggregate_id: aggregate_id.to_owned(),
                workspace: owner.workspace.to_string(),
                owner: owner.owner.to_string(),
                is_config: false,
            },
            None,
            Offsets::all(sequence),
        );
    }

    fn viewed(event: &CredentialEvent) -> ViewedEvent<'_> {
        ViewedEvent::Credential(event)
    }
}

/// Projects the events of one stream that some view has not applied; returns how many.
///
/// The stream's offset rows are locked for the duration, so two processes catching up, or a
/// catch-up and a command, never project the same events twice: a command's write waits for
/// the lock, and a catch-up that waited finds the offsets already moved.
pub(crate) async fn catch_up<A: Projected>(
    pool: &PgPool,
    aggregate_id: &str,
) -> Result<usize, StoreError> {
    let mut connection = pool.acquire().await?;
    catch_up_stream::<A>(&mut connection, pool, aggregate_id).await
}

/// [`catch_up`] on a connection of the caller's, within its transaction if it has one.
pub(crate) async fn catch_up_on(
    connection: &mut PgConnection,
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<usize, StoreError> {
    match aggregate_type {
        CredentialAggregate::TYPE => {
            catch_up_stream::<CredentialAggregate>(connection, pool, aggregate_id).await
        }
        _ => catch_up_stream::<AiModelConfig>(connection, pool, aggregate_id).await,
    }
}

async fn catch_up_stream<A: Projected>(
    connection: &mut PgConnection,
    pool: &PgPool,
    aggregate_id: &str,
) -> Result<usize, StoreError> {
    let mut tx = connection.begin().await?;
    // Creates the offset rows on first use and locks them either way (the no-op update takes
    // the row lock), in one round trip.
    let rows: Vec<(String, i64)> = traced(pool, "INSERT projection_offsets", sqlx::query_as(
        "INSERT INTO projection_offsets (projection, aggregate_id)
         SELECT unnest($1::text[]), $2
         ON CONFLICT (projection, aggregate_id) DO UPDATE SET last_sequence = projection_offsets.last_sequence
         RETURNING projection, last_sequence",
    )
    .bind(&VIEWS[..])
    .bind(aggregate_id)
    .fetch_all(&mut *tx)).await?;
    let offset = |view: &str| {
        rows.iter()
            .find(|(projection, _)| projection == view)
            .map_or(0, |(_, sequence)| *sequence)
    };
    let offsets = Offsets {
        audit: offset(super::AUDIT_LOG),
        config: offset(super::CONFIG_VIEW),
        credentials: offset(super::CREDENTIAL_VIEW),
    };
    // The whole stream: the folds need the state the views were left in, and catch-up is rare.
    let events: Vec<(i64, String, String, String, String)> = traced(
        pool,
        "SELECT events",
        sqlx::query_as(
            "SELECT sequence, event_type, event_version, payload::text, metadata::text FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_all(&mut *tx),
    )
    .await?;
    let last = events.last().map_or(0, |(sequence, ..)| *sequence);
    if last <= offsets.lowest() {
        tx.rollback().await?;
        return Ok(0);
    }
    let mut projection = Projection::default();
    for (sequence, event_type, version, payload, metadata) in &events {
        let event: A::Event = decode(event_type, version, payload)
            .map_err(|error| StoreError::Internal(format!("unreadable event: {error}")))?;
        let metadata = EventMetadata::from_json(metadata);
        project::<A>(
            &mut projection,
            aggregate_id,
            *sequence,
            &event,
            &metadata,
            offsets,
        )?;
    }
    traced(
        pool,
        "INSERT config_view credential_view audit_log projection_offsets",
        writer::write(
            &mut *tx,
            None,
            &projection.take_changes(),
            NameClaims::FirstComes,
        ),
    )
    .await?;
    tx.commit().await?;
    Ok((last - offsets.lowest()) as usize)
}
