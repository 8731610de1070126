//! `config_view`: one document per configuration, what family A's GET returns in one lookup.

use aimc_domain::{AiModelConfig, ConfigEvent};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;

use super::{EventMetadata, StreamPlace};

/// A `config_view` row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConfigRow {
    pub aggregate_id: String,
    pub workspace_id: String,
    pub owner: String,
    pub last_sequence: i64,
    pub view: AiModelConfig,
    /// Unknown for a row that is only updated: the stored one stays.
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl ConfigRow {
    /// The row as stored, when only its document and position are known.
    pub fn known(place: &StreamPlace, view: AiModelConfig, last_sequence: i64) -> Self {
        ConfigRow {
            aggregate_id: place.aggregate_id.clone(),
            workspace_id: place.workspace.clone(),
            owner: place.owner.clone(),
            last_sequence,
            view,
            created_at: None,
            updated_at: None,
        }
    }
}

/// The fold: the document is the configuration as its events leave it, created with its first
/// event and touched by every later one.
pub(crate) fn apply(
    row: &mut Option<ConfigRow>,
    place: &StreamPlace,
    sequence: i64,
    event: &ConfigEvent,
    metadata: &EventMetadata,
) {
    // Crypto-shredded: the configuration is gone from the view until it is created again.
    if let ConfigEvent::WorkspaceShredded { .. } = event {
        *row = None;
        return;
    }
    let row = row.get_or_insert_with(|| ConfigRow {
        created_at: Some(metadata.occurred_at),
        ..ConfigRow::known(place, AiModelConfig::default(), 0)
    });
    row.view.apply(event.clone());
    row.last_sequence = sequence;
    row.updated_at = Some(metadata.occurred_at);
}

#[cfg(test)]
mod tests {
    use aimc_domain::{ModelId, ModelName, ModelType, Owner, Provider, SystemPrompt, WorkspaceId};
    use uuid::Uuid;

    use super::*;

    fn place() -> StreamPlace {
        StreamPlace {
            aggregate_id: "acme/user:alice".into(),
            workspace: "acme".into(),
            owner: "user:alice".into(),
            is_config: true,
        }
    }

    fn at(seconds: i64) -> EventMetadata {
        EventMetadata {
            actor: Some("alice".into()),
            request_id: None,
            trace_id: None,
            occurred_at: DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap(),
        }
    }

    #[test]
    fn a_configuration_is_created_with_its_first_event_and_dated_by_its_last() {
        let mut row = None;
        let created = ConfigEvent::ConfigCreated {
            workspace: WorkspaceId::parse("acme").unwrap(),
            owner: Owner::User("alice".into()),
        };
        let model = ConfigEvent::ModelAdded {
            model_id: ModelId(Uuid::nil()),
            provider: Provider::Openai,
            model_type: ModelType::Chat,
            model: ModelName::parse("gpt-4").unwrap(),
            is_paid: true,
        };
        let prompt = ConfigEvent::SystemPromptChanged {
            system_prompt: Some(SystemPrompt::parse("be brief").unwrap()),
        };

        apply(&mut row, &place(), 1, &created, &at(0));
        apply(&mut row, &place(), 2, &model, &at(5));
        apply(&mut row, &place(), 3, &prompt, &at(9));

        let row = row.unwrap();
        assert_eq!(row.last_sequence, 3);
        assert_eq!(row.created_at, Some(at(0).occurred_at));
        assert_eq!(row.updated_at, Some(at(9).occurred_at));
        assert_eq!(row.view.models.len(), 1);
        assert_eq!(row.view.system_prompt.unwrap().as_str(), "be brief");
        assert_eq!(row.view.id.unwrap().to_string(), "acme/user:alice");
    }

    #[test]
    fn a_row_known_only_by_its_document_keeps_its_stored_creation_time() {
        let mut row = Some(ConfigRow::known(&place(), AiModelConfig::default(), 4));
        let prompt = ConfigEvent::SystemPromptChanged {
            system_prompt: None,
        };

        apply(&mut row, &place(), 5, &prompt, &at(1));

        let row = row.unwrap();
        assert_eq!(row.created_at, None, "the writer keeps the stored one");
        assert_eq!(row.last_sequence, 5);
    }

    #[test]
    fn a_shredded_configuration_leaves_the_view_until_it_is_created_again() {
        let mut row = Some(ConfigRow::known(&place(), AiModelConfig::default(), 4));
        let shredded = ConfigEvent::WorkspaceShredded {
            shredded_credentials: vec![],
        };
        let created = ConfigEvent::ConfigCreated {
            workspace: WorkspaceId::parse("acme").unwrap(),
            owner: Owner::User("alice".into()),
        };

        apply(&mut row, &place(), 5, &shredded, &at(1));
        assert_eq!(row, None);

        apply(&mut row, &place(), 6, &created, &at(2));
        let row = row.unwrap();
        assert_eq!(
            row.created_at,
            Some(at(2).occurred_at),
            "a new configuration"
        );
        assert_eq!(row.last_sequence, 6);
    }
}
