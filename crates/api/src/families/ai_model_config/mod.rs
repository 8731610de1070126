//! Family A (seed 000): one person's AI model configuration.
//! `POST /api/v1/create/ai-model-config`, `GET /api/v1/get/ai-model-config`,
//! `PUT /api/v1/update/ai-model-config`.

mod dto;
mod error;

use std::sync::Arc;

use aimc_domain::ConfigCommand;
use poem::web::Data;
use poem_openapi::param::Header;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::OpenApi;

use self::dto::{
    parse_models, parse_prompt, ConfigFound, ConfigRequest, ConfigResponse, CreateResponse,
};
use crate::auth::{Role, SCOPE_KEYS_CIPHERTEXT};
use crate::caller::Caller;
use crate::idempotency::IdempotencyKey;
use crate::problem::{ApiError, Changing, Fails, Finding, Writing};
use crate::request_body::Checked;
use crate::state::AppState;
use crate::tags::ApiTags;

pub struct AiModelConfigApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::AiModelConfig")]
impl AiModelConfigApi {
    /// Create the caller's AI model configuration
    ///
    /// Saves the caller's providers, models, paid/free flags, client-encrypted API keys and
    /// system prompt. Each key is decrypted inside Vault, re-encrypted under the workspace key
    /// and stored only as ciphertext with a hint. Needs the member role.
    #[oai(
        path = "/create/ai-model-config",
        method = "post",
        operation_id = "createAiModelConfig"
    )]
    #[tracing::instrument(skip_all)]
    async fn create(
        &self,
        state: Data<&Arc<AppState>>,
        /// Makes a retry safe: a write sent again with the same key and the same request is
        /// answered as the first time and changes nothing more (kept 24 hours).
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKey>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        body: Json<Checked<ConfigRequest>>,
    ) -> Result<CreateResponse, Fails<Writing>> {
        let id = caller.own_config(Role::Member)?;
        let Checked(body) = body.0;
        let command = ConfigCommand::Create {
            id: id.clone(),
            models: parse_models(body.models)?,
            system_prompt: body
                .system_prompt
                .value()
                .map(|raw| parse_prompt(raw))
                .transpose()?,
        };
        let created = state
            .commands
            .execute(&id, command, &caller.metadata())
            .await
            .map_err(error::command)?;
        Ok(CreateResponse::Created(Json(ConfigResponse::new(
            &created.aggregate,
            false,
        ))))
    }

    /// Get the caller's AI model configuration
    ///
    /// Keys are never returned in plain text: each model shows its key hint, and with
    /// `includeEncryptedKeys=true` (scope `keys:ciphertext`) the stored ciphertext. Needs the
    /// viewer role.
    #[oai(
        path = "/get/ai-model-config",
        method = "get",
        operation_id = "getAiModelConfig"
    )]
    #[tracing::instrument(skip_all)]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        /// Also return each key's ciphertext; needs the `keys:ciphertext` scope.
        #[oai(name = "includeEncryptedKeys")]
        include_encrypted_keys: Query<Option<bool>>,
    ) -> Result<ConfigFound, Fails<Finding>> {
        let id = caller.own_config(Role::Viewer)?;
        let include_ciphertext = include_encrypted_keys.0.unwrap_or(false);
        if include_ciphertext && !caller.has_scope(SCOPE_KEYS_CIPHERTEXT) {
            return Err(ApiError::forbidden(format!(
                "includeEncryptedKeys=true needs the {SCOPE_KEYS_CIPHERTEXT} scope"
            ))
            .into());
        }
        let view = state
            .queries
            .config(&id)
            .await?
            .ok_or_else(error::not_created)?;
        Ok(ConfigFound::Ok(Json(ConfigResponse::new(
            &view.config,
            include_ciphertext,
        ))))
    }

    /// Replace the caller's AI model configuration
    ///
    /// Full replacement of the models: models left out are removed. A model's
    /// `apiKeyEncrypted` absent keeps its key, `null` removes it, and a string is either the
    /// stored ciphertext (kept) or a new client-encrypted key. Only the differences are
    /// recorded. Needs the member role.
    #[oai(
        path = "/update/ai-model-config",
        method = "put",
        operation_id = "updateAiModelConfig"
    )]
    #[tracing::instrument(skip_all)]
    async fn update(
        &self,
        state: Data<&Arc<AppState>>,
        /// Makes a retry safe: a write sent again with the same key and the same request is
        /// answered as the first time and changes nothing more (kept 24 hours).
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKey>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        body: Json<Checked<ConfigRequest>>,
    ) -> Result<ConfigFound, Fails<Changing>> {
        let id = caller.own_config(Role::Member)?;
        let Checked(body) = body.0;
        let command = ConfigCommand::Replace {
            models: parse_models(body.models)?,
            system_prompt: match body.system_prompt {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(raw) => Some(Some(parse_prompt(&raw)?)),
            },
        };
        let replaced = state
            .commands
            .execute(&id, command, &caller.metadata())
            .await
            .map_err(error::command)?;
        Ok(ConfigFound::Ok(Json(ConfigResponse::new(
            &replaced.aggregate,
            false,
        ))))
    }
}
