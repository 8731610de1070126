use serde::{Deserialize, Serialize};

use crate::credential::CredentialEvent;
use crate::ids::{CredentialId, ModelId, Owner, WorkspaceId};
use crate::values::{ModelName, ModelType, Provider, SystemPrompt, TaskName};

/// What happened to a configuration, fine-grained so the history reads as what people did.
/// Keys appear only as ciphertext and hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConfigEvent {
    ConfigCreated {
        workspace: WorkspaceId,
        owner: Owner,
    },
    ModelAdded {
        model_id: ModelId,
        provider: Provider,
        model_type: ModelType,
        model: ModelName,
        is_paid: bool,
    },
    ModelPaidFlagChanged {
        model_id: ModelId,
        is_paid: bool,
    },
    ModelRemoved {
        model_id: ModelId,
    },
    /// The provider's model identifier of a model changed (e.g. gpt-4 to gpt-4o).
    ModelIdChanged {
        model_id: ModelId,
        model: ModelName,
    },
    ModelsReordered {
        model_ids: Vec<ModelId>,
    },
    ModelCredentialAttached {
        model_id: ModelId,
        credential_id: CredentialId,
    },
    ModelCredentialDetached {
        model_id: ModelId,
    },
    SystemPromptChanged {
        system_prompt: Option<SystemPrompt>,
    },
    TaskAssigned {
        task: TaskName,
        provider: Provider,
        model: ModelName,
    },
    TaskUnassigned {
        task: TaskName,
    },
    /// The workspace was crypto-shredded: its keys are destroyed, so nothing this
    /// configuration held can be decrypted any more, and it starts over empty. Names the
    /// credentials it held, whose names the registry releases.
    WorkspaceShredded {
        shredded_credentials: Vec<CredentialId>,
    },
    /// A credential kept in this configuration; stored under the credential event's own name
    /// (`{"CredentialAdded": …}`), as the log always had it.
    #[serde(untagged)]
    Credential(CredentialEvent),
}

impl ConfigEvent {
    pub fn name(&self) -> &'static str {
        match self {
            ConfigEvent::ConfigCreated { .. } => "ConfigCreated",
            ConfigEvent::ModelAdded { .. } => "ModelAdded",
            ConfigEvent::ModelPaidFlagChanged { .. } => "ModelPaidFlagChanged",
            ConfigEvent::ModelRemoved { .. } => "ModelRemoved",
            ConfigEvent::ModelIdChanged { .. } => "ModelIdChanged",
            ConfigEvent::ModelsReordered { .. } => "ModelsReordered",
            ConfigEvent::ModelCredentialAttached { .. } => "ModelCredentialAttached",
            ConfigEvent::ModelCredentialDetached { .. } => "ModelCredentialDetached",
            ConfigEvent::SystemPromptChanged { .. } => "SystemPromptChanged",
            ConfigEvent::TaskAssigned { .. } => "TaskAssigned",
            ConfigEvent::TaskUnassigned { .. } => "TaskUnassigned",
            ConfigEvent::WorkspaceShredded { .. } => "WorkspaceShredded",
            ConfigEvent::Credential(event) => event.name(),
        }
    }

    /// Every event type of either stream, for filters and documentation.
    pub const NAMES: [&'static str; 21] = [
        "ConfigCreated",
        "ModelAdded",
        "ModelPaidFlagChanged",
        "ModelRemoved",
        "ModelIdChanged",
        "ModelsReordered",
        "CredentialAdded",
        "CredentialRenamed",
        "CredentialProviderChanged",
        "CredentialEndpointChanged",
        "CredentialAccessKeyReplaced",
        "CredentialSecretReplaced",
        "CredentialRewrapped",
        "CredentialRemoved",
        "CredentialValidated",
        "ModelCredentialAttached",
        "ModelCredentialDetached",
        "SystemPromptChanged",
        "TaskAssigned",
        "TaskUnassigned",
        "WorkspaceShredded",
    ];
}

impl cqrs_es::DomainEvent for ConfigEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            ConfigEvent::Credential(event) => event.version(),
            _ => "1.0",
        }
        .to_owned()
    }
}
