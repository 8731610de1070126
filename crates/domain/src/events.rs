use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::values::{
    Ciphertext, CredentialId, KeyHint, ModelId, ModelName, ModelType, Provider, SystemPrompt,
    TaskName,
};

/// What happened to a configuration, fine-grained so the history reads as what people did.
/// Keys appear only as ciphertext and hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AiModelConfigEvent {
    ConfigCreated {
        workspace: String,
        owner: String,
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
    CredentialAdded {
        credential_id: CredentialId,
        name: String,
        provider: Provider,
        #[serde(default)]
        endpoint: Option<String>,
        #[serde(default)]
        access_key: Option<Ciphertext>,
        #[serde(default)]
        access_key_hint: Option<KeyHint>,
        secret: Ciphertext,
        hint: KeyHint,
        #[serde(default)]
        number: Option<i64>,
    },
    CredentialRenamed {
        credential_id: CredentialId,
        name: String,
    },
    CredentialProviderChanged {
        credential_id: CredentialId,
        provider: Provider,
    },
    CredentialEndpointChanged {
        credential_id: CredentialId,
        endpoint: Option<String>,
    },
    CredentialAccessKeyReplaced {
        credential_id: CredentialId,
        access_key: Ciphertext,
        access_key_hint: KeyHint,
    },
    CredentialSecretReplaced {
        credential_id: CredentialId,
        secret: Ciphertext,
        hint: KeyHint,
    },
    CredentialRemoved {
        credential_id: CredentialId,
    },
    CredentialValidated {
        credential_id: CredentialId,
        ok: bool,
        status: Option<u16>,
        reason: String,
        checked_at: String,
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
}

impl AiModelConfigEvent {
    pub fn name(&self) -> &'static str {
        match self {
            AiModelConfigEvent::ConfigCreated { .. } => "ConfigCreated",
            AiModelConfigEvent::ModelAdded { .. } => "ModelAdded",
            AiModelConfigEvent::ModelPaidFlagChanged { .. } => "ModelPaidFlagChanged",
            AiModelConfigEvent::ModelRemoved { .. } => "ModelRemoved",
            AiModelConfigEvent::ModelIdChanged { .. } => "ModelIdChanged",
            AiModelConfigEvent::ModelsReordered { .. } => "ModelsReordered",
            AiModelConfigEvent::CredentialAdded { .. } => "CredentialAdded",
            AiModelConfigEvent::CredentialRenamed { .. } => "CredentialRenamed",
            AiModelConfigEvent::CredentialProviderChanged { .. } => "CredentialProviderChanged",
            AiModelConfigEvent::CredentialEndpointChanged { .. } => "CredentialEndpointChanged",
            AiModelConfigEvent::CredentialAccessKeyReplaced { .. } => "CredentialAccessKeyReplaced",
            AiModelConfigEvent::CredentialSecretReplaced { .. } => "CredentialSecretReplaced",
            AiModelConfigEvent::CredentialRemoved { .. } => "CredentialRemoved",
            AiModelConfigEvent::CredentialValidated { .. } => "CredentialValidated",
            AiModelConfigEvent::ModelCredentialAttached { .. } => "ModelCredentialAttached",
            AiModelConfigEvent::ModelCredentialDetached { .. } => "ModelCredentialDetached",
            AiModelConfigEvent::SystemPromptChanged { .. } => "SystemPromptChanged",
            AiModelConfigEvent::TaskAssigned { .. } => "TaskAssigned",
            AiModelConfigEvent::TaskUnassigned { .. } => "TaskUnassigned",
        }
    }

    /// The credential an event concerns, if any.
    pub fn credential_id(&self) -> Option<CredentialId> {
        match self {
            AiModelConfigEvent::CredentialAdded { credential_id, .. }
            | AiModelConfigEvent::CredentialRenamed { credential_id, .. }
            | AiModelConfigEvent::CredentialProviderChanged { credential_id, .. }
            | AiModelConfigEvent::CredentialEndpointChanged { credential_id, .. }
            | AiModelConfigEvent::CredentialAccessKeyReplaced { credential_id, .. }
            | AiModelConfigEvent::CredentialSecretReplaced { credential_id, .. }
            | AiModelConfigEvent::CredentialRemoved { credential_id }
            | AiModelConfigEvent::CredentialValidated { credential_id, .. }
            | AiModelConfigEvent::ModelCredentialAttached { credential_id, .. } => {
                Some(*credential_id)
            }
            _ => None,
        }
    }

    /// Every event type, for filters and documentation.
    pub const NAMES: [&'static str; 19] = [
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
        "CredentialRemoved",
        "CredentialValidated",
        "ModelCredentialAttached",
        "ModelCredentialDetached",
        "SystemPromptChanged",
        "TaskAssigned",
        "TaskUnassigned",
    ];
}

impl DomainEvent for AiModelConfigEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
