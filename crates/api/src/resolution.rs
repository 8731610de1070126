//! Which provider, model and key serve a task for a caller, by seed 002's priority: the
//! caller's own key, then the workspace's, then the system's fallback.

use aimc_domain::{
    AiModelConfig, Ciphertext, ConfigId, CredentialId, KeyHint, ModelName, ModelType, Owner,
    Provider, TaskName, WorkspaceId,
};
use aimc_store::CredentialRow;

use crate::problem::ApiError;
use crate::state::AppState;

/// Where the key of a resolution comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    User,
    Workspace,
    System,
    /// The provider needs no key (Ollama).
    None,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::User => "user",
            Source::Workspace => "workspace",
            Source::System => "system",
            Source::None => "none",
        }
    }
}

/// A stored key chosen for a task.
#[derive(Debug, Clone)]
pub struct ResolvedKey {
    pub credential_id: CredentialId,
    pub owner: ConfigId,
    pub hint: KeyHint,
    pub ciphertext: Option<Ciphertext>,
}

#[derive(Debug, Clone)]
pub struct Resolution {
    pub provider: Provider,
    pub model: ModelName,
    pub is_paid: bool,
    pub source: Source,
    pub key: Option<ResolvedKey>,
}

/// A provider and model that could serve the task, in order of preference.
struct Candidate {
    provider: Provider,
    model: ModelName,
    is_paid: bool,
}

/// The task's assignment (the caller's, then the workspace's), then the caller's and the
/// workspace's models, then the system's.
fn candidates(task: &TaskName, configs: &[&AiModelConfig], state: &AppState) -> Vec<Candidate> {
    let paid_in = |config: &AiModelConfig, provider: Provider, model: &ModelName| {
        config
            .models
            .iter()
            .find(|m| m.provider == provider && m.model == *model)
            .map(|m| m.is_paid)
            .unwrap_or(provider != Provider::Ollama)
    };
    let mut found = Vec::new();
    for config in configs {
        if let Some((provider, model)) = config.task_assignments.get(task) {
            found.push(Candidate {
                provider: *provider,
                model: model.clone(),
                is_paid: paid_in(config, *provider, model),
            });
        }
    }
    for config in configs {
        for model in config
            .models
            .iter()
            .filter(|m| m.model_type == ModelType::Chat || task.as_str() != "chat")
        {
            found.push(Candidate {
                provider: model.provider,
                model: model.model.clone(),
                is_paid: model.is_paid,
            });
        }
    }
    for key in &state.system_keys {
        found.push(Candidate {
            provider: key.provider,
            model: key.model.clone(),
            is_paid: key.provider != Provider::Ollama,
        });
    }
    found
}

/// The first candidate whose provider has a key; `None` when nothing can serve the task.
pub async fn resolve(
    state: &AppState,
    workspace: &WorkspaceId,
    sub: &str,
    task: &TaskName,
    free_only: bool,
) -> Result<Option<Resolution>, ApiError> {
    let own = ConfigId::new(workspace.clone(), Owner::User(sub.to_owned()));
    let shared = ConfigId::new(workspace.clone(), Owner::Workspace);
    let (own_view, shared_view) =
        tokio::try_join!(state.queries.config(&own), state.queries.config(&shared))?;
    let layers = [
        (own_view.as_ref().map(|v| &v.config), &own, Source::User),
        (
            shared_view.as_ref().map(|v| &v.config),
            &shared,
            Source::Workspace,
        ),
    ];
    let configs: Vec<&AiModelConfig> = layers.iter().filter_map(|(config, ..)| *config).collect();
    let owners = [own.clone(), shared.clone()];

    for candidate in candidates(task, &configs, state) {
        if free_only && candidate.is_paid {
            continue;
        }
        let answer = |source, key| Resolution {
            provider: candidate.provider,
            model: candidate.model.clone(),
            is_paid: candidate.is_paid,
            source,
            key,
        };
        // Asked at most once per candidate, and only when no model carries a usable key.
        let mut newest: Option<Vec<CredentialRow>> = None;
        for (config, owner, source) in &layers {
            // The key attached to this very model first.
            let attached = config.and_then(|config| {
                config
                    .models
                    .iter()
                    .find(|m| m.provider == candidate.provider && m.model == candidate.model)
                    .and_then(|m| config.credential_of(m))
                    .filter(|credential| credential.is_usable())
            });
            if let Some(credential) = attached {
                return Ok(Some(answer(
                    *source,
                    Some(ResolvedKey {
                        credential_id: credential.id,
                        owner: (*owner).clone(),
                        hint: credential.hint.clone(),
                        ciphertext: Some(credential.secret.clone()),
                    }),
                )));
            }
            // Then the owner's newest key of the provider that did not fail its last test,
            // wherever it lives (ids and times are in creation order).
            if newest.is_none() {
                newest = Some(
                    state
                        .credentials
                        .newest_usable(&owners, candidate.provider)
                        .await?,
                );
            }
            if let Some(row) = newest
                .iter()
                .flatten()
                .find(|row| row.home.owner == **owner)
            {
                return Ok(Some(answer(
                    *source,
                    Some(ResolvedKey {
                        credential_id: row.id(),
                        owner: row.home.owner.clone(),
                        hint: row.hint.clone(),
                        ciphertext: row.secret.clone(),
                    }),
                )));
            }
        }
        if state
            .system_keys
            .iter()
            .any(|key| key.provider == candidate.provider)
        {
            return Ok(Some(answer(Source::System, None)));
        }
        if candidate.provider == Provider::Ollama {
            return Ok(Some(answer(Source::None, None)));
        }
    }
    Ok(None)
}
