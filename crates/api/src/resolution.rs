//! Which provider, model and key serve a task for a caller, by seed 002's priority: the
//! caller's own key, then the workspace's, then the system's fallback.

use aimc_domain::{
    AiModelConfig, Ciphertext, ConfigId, CredentialId, KeyHint, ModelName, ModelType, Owner,
    Provider, TaskName, WorkspaceId,
};
use aimc_store::CredentialRow;

use crate::problem::ApiError;
use crate::provider_catalogue::seed_002;
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
/// workspace's models.
fn configured(task: &TaskName, configs: &[&AiModelConfig]) -> Vec<Candidate> {
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
    found
}

/// A key stored without a model (through `/api/keys` or `/ai/llm`) serves with its provider's
/// default chat model, when there is one.
fn stored_key(provider: Provider) -> Option<Candidate> {
    let (_, model) = seed_002(provider)?;
    Some(Candidate {
        provider,
        model: ModelName::parse(model).ok()?,
        is_paid: true,
    })
}

fn system(state: &AppState) -> impl Iterator<Item = Candidate> + '_ {
    state.system_keys.iter().map(|key| Candidate {
        provider: key.provider,
        model: key.model.clone(),
        is_paid: key.provider != Provider::Ollama,
    })
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
    let attempt = |candidate: Candidate| serve(state, &layers, &owners, candidate, free_only);

    for candidate in configured(task, &configs) {
        if let Some(resolution) = attempt(candidate).await? {
            return Ok(Some(resolution));
        }
    }
    // Asked only when no configured model could serve: the read path of a configured caller
    // stays one query.
    for provider in state.credentials.usable_providers(&owners).await? {
        if let Some(resolution) = match stored_key(provider) {
            Some(candidate) => attempt(candidate).await?,
            None => None,
        } {
            return Ok(Some(resolution));
        }
    }
    for candidate in system(state) {
        if let Some(resolution) = attempt(candidate).await? {
            return Ok(Some(resolution));
        }
    }
    Ok(None)
}

type Layer<'a> = (Option<&'a AiModelConfig>, &'a ConfigId, Source);

/// The candidate with the key that serves it: the key attached to its model, else the owner's
/// newest key of the provider, else the system's; `None` when it has none.
async fn serve(
    state: &AppState,
    layers: &[Layer<'_>],
    owners: &[ConfigId],
    candidate: Candidate,
    free_only: bool,
) -> Result<Option<Resolution>, ApiError> {
    if free_only && candidate.is_paid {
        return Ok(None);
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
    for (config, owner, source) in layers {
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
        // Then the owner's newest key of the provider that was not refused, wherever it
        // lives (ids and times are in creation order).
        if newest.is_none() {
            newest = Some(
                state
                    .credentials
                    .newest_usable(owners, candidate.provider)
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
    Ok(None)
}
