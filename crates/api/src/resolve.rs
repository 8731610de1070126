//! `GET /api/v1/resolve`: which provider, model and key serve a task for the caller, by seed
//! 002's priority: the caller's own key, then the workspace's, then the system's fallback.

use std::sync::Arc;

use aimc_domain::{AggregateId, AiModelConfig, ModelName, ModelType, Owner, Provider, TaskName};
use poem::web::Data;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::auth::{BearerAuth, Role, SCOPE_KEYS_CIPHERTEXT};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::ApiTags;

/// Where to decrypt a key in Vault, for trusted services (scope `keys:ciphertext`).
#[derive(Debug, Object)]
pub struct KeyCiphertext {
    pub ciphertext: String,
    /// Transit mount.
    pub mount: String,
    #[oai(rename = "keyName")]
    pub key_name: String,
    /// Base64 derivation context to pass to transit's decrypt.
    pub context: String,
}

#[derive(Debug, Object)]
pub struct Resolution {
    pub task: String,
    pub provider: String,
    pub model: String,
    #[oai(rename = "isPaid")]
    pub is_paid: bool,
    /// `user`, `workspace`, `system`, or `none` for providers that need no key (Ollama).
    pub source: String,
    #[oai(rename = "credentialId", skip_serializing_if_is_none)]
    pub credential_id: Option<String>,
    #[oai(rename = "keyHint", skip_serializing_if_is_none)]
    pub key_hint: Option<String>,
    /// Only with the `keys:ciphertext` scope, and never for system keys.
    #[oai(skip_serializing_if_is_none)]
    pub key: Option<KeyCiphertext>,
}

#[derive(ApiResponse)]
pub enum ResolveResponse {
    /// The provider, model and key to use.
    #[oai(status = 200)]
    Ok(Json<Resolution>),
}

/// A provider and model that could serve the task, in order of preference.
struct Candidate {
    provider: Provider,
    model: ModelName,
    is_paid: bool,
}

fn candidates(
    task: &TaskName,
    configs: &[Option<&AiModelConfig>],
    state: &AppState,
) -> Vec<Candidate> {
    let paid_in = |config: &AiModelConfig, provider: Provider, model: &ModelName| {
        config
            .models
            .iter()
            .find(|m| m.provider == provider && m.model == *model)
            .map(|m| m.is_paid)
            .unwrap_or(provider != Provider::Ollama)
    };
    let mut found = Vec::new();
    for config in configs.iter().flatten() {
        if let Some((provider, model)) = config.task_assignments.get(task) {
            found.push(Candidate {
                provider: *provider,
                model: model.clone(),
                is_paid: paid_in(config, *provider, model),
            });
        }
    }
    for config in configs.iter().flatten() {
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

pub struct ResolveApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Resolve")]
impl ResolveApi {
    /// Resolve the provider, model and key for a task
    ///
    /// Candidates: the task's assignment (the caller's, then the workspace's), then the
    /// caller's and the workspace's models, then the system's. The first whose provider has a
    /// key wins, the key taken from the caller, else the workspace, else the system fallback.
    /// `freeOnly=true` skips paid models. Needs the viewer role; the ciphertext needs the
    /// `keys:ciphertext` scope.
    #[oai(path = "/resolve", method = "get", operation_id = "resolveTask")]
    #[tracing::instrument(skip_all)]
    async fn resolve(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
        /// The task, e.g. `chat` or `summarize`.
        task: Query<String>,
        /// Only free models.
        #[oai(name = "freeOnly")]
        free_only: Query<Option<bool>>,
    ) -> Result<ResolveResponse, ApiError> {
        let (workspace, _) = auth.0.workspace(workspace.0.as_deref(), Role::Viewer)?;
        let task =
            TaskName::parse(&task.0).map_err(|error| ApiError::invalid_value("task", error))?;
        let own = AggregateId::new(workspace.clone(), Owner::User(auth.0.sub.clone()));
        let shared = AggregateId::new(workspace.clone(), Owner::Workspace);
        let (own_id, shared_id) = (own.to_string(), shared.to_string());
        let (own_view, shared_view) = tokio::try_join!(
            state.queries.config(&own_id),
            state.queries.config(&shared_id)
        )?;
        let layers = [
            (own_view.as_ref().map(|v| &v.config), &own, "user"),
            (
                shared_view.as_ref().map(|v| &v.config),
                &shared,
                "workspace",
            ),
        ];
        let configs: Vec<Option<&AiModelConfig>> =
            layers.iter().map(|(config, ..)| *config).collect();
        let with_ciphertext = auth.0.has_scope(SCOPE_KEYS_CIPHERTEXT);

        for candidate in candidates(&task, &configs, &state) {
            if free_only.0.unwrap_or(false) && candidate.is_paid {
                continue;
            }
            let answer =
                |source: &str, credential: Option<(&aimc_domain::Credential, &AggregateId)>| {
                    Resolution {
                        task: task.as_str().to_owned(),
                        provider: candidate.provider.as_str().to_owned(),
                        model: candidate.model.as_str().to_owned(),
                        is_paid: candidate.is_paid,
                        source: source.to_owned(),
                        credential_id: credential.map(|(c, _)| c.id.to_string()),
                        key_hint: credential.map(|(c, _)| c.hint.as_str().to_owned()),
                        key: credential
                            .filter(|_| with_ciphertext)
                            .and_then(|(c, owner)| {
                                let context = aimc_domain::KeyContext::for_credential(
                                    &owner.to_string(),
                                    c.id,
                                );
                                let recipe = state
                                    .keyring
                                    .decryption_recipe(&owner.workspace, &context)?;
                                Some(KeyCiphertext {
                                    ciphertext: c.secret.as_str().to_owned(),
                                    mount: recipe.mount,
                                    key_name: recipe.key_name,
                                    context: recipe.context,
                                })
                            }),
                    }
                };
            for (config, owner, source) in &layers {
                let Some(config) = config else { continue };
                // The key attached to this very model first, then any key of the provider.
                let attached = config
                    .models
                    .iter()
                    .find(|m| m.provider == candidate.provider && m.model == candidate.model)
                    .and_then(|m| config.credential_of(m));
                // Ids are time-ordered: the newest key of the provider is the one in use (as in
                // family E); keys whose last test failed are passed over.
                let usable =
                    |c: &&aimc_domain::Credential| c.last_validation.as_ref().is_none_or(|v| v.ok);
                let newest = config
                    .credentials
                    .values()
                    .rev()
                    .find(|c| c.provider == candidate.provider && usable(c));
                if let Some(credential) = attached.filter(usable).or(newest) {
                    return Ok(ResolveResponse::Ok(Json(answer(
                        source,
                        Some((credential, owner)),
                    ))));
                }
            }
            if state
                .system_keys
                .iter()
                .any(|key| key.provider == candidate.provider)
            {
                return Ok(ResolveResponse::Ok(Json(answer("system", None))));
            }
            if candidate.provider == Provider::Ollama {
                return Ok(ResolveResponse::Ok(Json(answer("none", None))));
            }
        }
        Err(ApiError::not_found(format!(
            "no configured provider can serve task \"{}\"",
            task.as_str()
        )))
    }
}
