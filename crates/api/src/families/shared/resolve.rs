//! `GET /api/v1/resolve`: which provider, model and key serve a task for the caller (see
//! [`crate::resolution`]).

use std::sync::Arc;

use aimc_domain::{KeyContext, TaskName};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::auth::{Role, SCOPE_KEYS_CIPHERTEXT};
use crate::caller::Caller;
use crate::problem::{ApiError, Fails, Finding};
use crate::resolution;
use crate::spelling::{KeySource, ProviderId, Spelled};
use crate::state::AppState;
use crate::tags::ApiTags;

/// Where to decrypt the key in Vault, for trusted services: present only with the
/// `keys:ciphertext` scope, and never for the system's keys.
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
#[oai(example)]
pub struct Resolution {
    pub task: String,
    pub provider: Spelled<ProviderId>,
    pub model: String,
    #[oai(rename = "isPaid")]
    pub is_paid: bool,
    pub source: Spelled<KeySource>,
    #[oai(rename = "credentialId", skip_serializing_if_is_none)]
    pub credential_id: Option<String>,
    #[oai(rename = "keyHint", skip_serializing_if_is_none)]
    pub key_hint: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub key: Option<KeyCiphertext>,
}

#[derive(ApiResponse)]
pub enum ResolveResponse {
    /// The provider, model and key to use.
    #[oai(status = 200)]
    Ok(Json<Resolution>),
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
        state: Data<&Arc<AppState>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        /// The task, e.g. `chat` or `summarize`.
        task: Query<String>,
        /// Only free models.
        #[oai(name = "freeOnly")]
        free_only: Query<Option<bool>>,
    ) -> Result<ResolveResponse, Fails<Finding>> {
        let (workspace, _) = caller.workspace(Role::Viewer)?;
        let task =
            TaskName::parse(&task.0).map_err(|error| ApiError::invalid_value("task", error))?;
        let resolution = resolution::resolve(
            &state,
            &workspace,
            caller.sub(),
            &task,
            free_only.0.unwrap_or(false),
        )
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no configured provider can serve task \"{}\"",
                task.as_str()
            ))
        })?;
        let with_ciphertext = caller.has_scope(SCOPE_KEYS_CIPHERTEXT);
        let key = resolution.key.as_ref();
        Ok(ResolveResponse::Ok(Json(Resolution {
            task: task.as_str().to_owned(),
            provider: Spelled::new(resolution.provider.as_str()),
            model: resolution.model.as_str().to_owned(),
            is_paid: resolution.is_paid,
            source: Spelled::new(resolution.source.as_str()),
            credential_id: key.map(|key| key.credential_id.to_string()),
            key_hint: key.map(|key| key.hint.as_str().to_owned()),
            key: key.filter(|_| with_ciphertext).and_then(|key| {
                let context = KeyContext::for_credential(&key.owner, key.credential_id);
                let recipe = state
                    .keyring
                    .decryption_recipe(&key.owner.workspace, &context)?;
                Some(KeyCiphertext {
                    ciphertext: key.ciphertext.as_ref()?.as_str().to_owned(),
                    mount: recipe.mount,
                    key_name: recipe.key_name,
                    context: recipe.context,
                })
            }),
        })))
    }
}

impl poem_openapi::types::Example for Resolution {
    fn example() -> Self {
        Resolution {
            task: "chat".into(),
            provider: Spelled::new("openai"),
            model: "gpt-4o".into(),
            is_paid: true,
            source: Spelled::new("user"),
            credential_id: Some("0193a8f2-7c1e-7d4a-9b2e-5f1c3d2a1b00".into()),
            key_hint: Some("sk-...cdef".into()),
            key: None,
        }
    }
}
