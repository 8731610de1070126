//! Family A (seed 000): one person's AI model configuration.
//! `POST /api/v1/create/ai-model-config`, `GET /api/v1/get/ai-model-config`,
//! `PUT /api/v1/update/ai-model-config`.

use std::sync::Arc;

use aimc_domain::{
    AggregateId, AiModelConfigCommand, KeyInput, ModelName, ModelSpec, ModelType, Provider,
    SystemPrompt,
};
use aimc_store::ConfigView;
use poem::web::Data;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use crate::auth::{BearerAuth, Principal, Role, SCOPE_KEYS_CIPHERTEXT};
use crate::problem::ApiError;
use crate::request_body::Checked;
use crate::request_context::RequestContext;
use crate::state::AppState;
use crate::{command_metadata, ApiTags};

/// A model the user wants to use.
#[derive(Debug, Object, Deserialize)]
#[oai(rename = "AiModelInput", deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct ModelInput {
    /// The provider: OpenAI, Anthropic, Google (Gemini), AWS (Bedrock), OpenRouter, Ollama,
    /// Azure OpenAI or Other, in any capitalisation.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub provider: String,
    /// chat, completion, embedding, image, audio or rerank.
    #[oai(rename = "type", validator(min_length = 1, max_length = 32))]
    #[serde(rename = "type")]
    pub model_type: String,
    /// The provider's model id, e.g. `gpt-4`.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub model: String,
    /// The API key, encrypted client-side with RSA-OAEP-SHA256 under the workspace key from
    /// `GET /api/v1/encryption-key`, as standard base64 (a `vault:vN:` prefix is accepted).
    /// On update: absent keeps the stored key (a new model takes over the key of a removed
    /// model of the same provider), `null` removes it, and the stored ciphertext (from
    /// `?includeEncryptedKeys=true`) keeps it too.
    #[oai(rename = "apiKeyEncrypted", nullable, validator(max_length = 8192))]
    #[serde(rename = "apiKeyEncrypted", default)]
    pub api_key_encrypted: MaybeUndefined<String>,
    /// Whether using the model costs money.
    #[oai(rename = "isPaid")]
    #[serde(rename = "isPaid")]
    pub is_paid: bool,
}

/// The whole configuration, as sent on create and update.
#[derive(Debug, Object, Deserialize)]
#[oai(rename = "AiModelConfigRequest", deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct ConfigRequest {
    #[oai(validator(max_items = 100))]
    pub models: Vec<ModelInput>,
    /// The assistant's system prompt. On update, absent keeps it and `null` clears it.
    #[oai(rename = "system_prompt", nullable, validator(max_length = 20000))]
    #[serde(default)]
    pub system_prompt: MaybeUndefined<String>,
}

/// A configured model. Keys are never returned in plain text.
#[derive(Debug, Object)]
#[oai(rename = "AiModel")]
pub struct ModelOutput {
    pub provider: String,
    #[oai(rename = "type")]
    pub model_type: String,
    pub model: String,
    #[oai(rename = "isPaid")]
    pub is_paid: bool,
    /// What may be shown of the stored key (`sk-...cdef`), when there is one.
    #[oai(rename = "keyHint", skip_serializing_if_is_none)]
    pub key_hint: Option<String>,
    /// The stored ciphertext, only with `includeEncryptedKeys=true` and the `keys:ciphertext`
    /// scope.
    #[oai(rename = "apiKeyEncrypted", skip_serializing_if_is_none)]
    pub api_key_encrypted: Option<String>,
}

#[derive(Debug, Object)]
#[oai(rename = "AiModelConfig")]
pub struct ConfigResponse {
    pub models: Vec<ModelOutput>,
    #[oai(rename = "system_prompt", nullable)]
    pub system_prompt: Option<String>,
}

impl ConfigResponse {
    fn from_view(view: &ConfigView, include_ciphertext: bool) -> Self {
        let config = &view.config;
        ConfigResponse {
            models: config
                .models
                .iter()
                .map(|model| {
                    let credential = config.credential_of(model);
                    ModelOutput {
                        provider: model.provider.display_name().to_owned(),
                        model_type: model.model_type.as_str().to_owned(),
                        model: model.model.as_str().to_owned(),
                        is_paid: model.is_paid,
                        key_hint: credential.map(|c| c.hint.as_str().to_owned()),
                        api_key_encrypted: credential
                            .filter(|_| include_ciphertext)
                            .map(|c| c.secret.as_str().to_owned()),
                    }
                })
                .collect(),
            system_prompt: config
                .system_prompt
                .as_ref()
                .map(|prompt| prompt.as_str().to_owned()),
        }
    }
}

#[derive(ApiResponse)]
pub enum CreateResponse {
    /// Created; the configuration as stored.
    #[oai(status = 201)]
    Created(Json<ConfigResponse>),
}

#[derive(ApiResponse)]
pub enum ConfigFound {
    /// The configuration.
    #[oai(status = 200)]
    Ok(Json<ConfigResponse>),
}

/// At most this many models per configuration.
const MAX_MODELS: usize = 100;
/// An RSA-4096 ciphertext in base64 is under 700 characters; anything much longer is not one.
const MAX_CIPHERTEXT_CHARS: usize = 8192;

/// Parses the request into domain values, naming the first field that is wrong.
fn parse_models(models: Vec<ModelInput>) -> Result<Vec<ModelSpec>, ApiError> {
    if models.len() > MAX_MODELS {
        return Err(ApiError::invalid_field(
            "models",
            format!("must hold at most {MAX_MODELS} models"),
        ));
    }
    models
        .into_iter()
        .enumerate()
        .map(|(index, input)| {
            let field = |name: &str| format!("models[{index}].{name}");
            Ok(ModelSpec {
                provider: Provider::parse(&input.provider)
                    .map_err(|e| ApiError::invalid_value(field("provider"), e))?,
                model_type: ModelType::parse(&input.model_type)
                    .map_err(|e| ApiError::invalid_value(field("type"), e))?,
                model: ModelName::parse(&input.model)
                    .map_err(|e| ApiError::invalid_value(field("model"), e))?,
                is_paid: input.is_paid,
                key: match input.api_key_encrypted {
                    MaybeUndefined::Undefined => KeyInput::Keep,
                    MaybeUndefined::Null => KeyInput::Remove,
                    MaybeUndefined::Value(ciphertext)
                        if ciphertext.len() > MAX_CIPHERTEXT_CHARS =>
                    {
                        return Err(ApiError::invalid_field(
                            field("apiKeyEncrypted"),
                            format!("must be at most {MAX_CIPHERTEXT_CHARS} characters"),
                        ))
                    }
                    MaybeUndefined::Value(ciphertext) if ciphertext.trim().is_empty() => {
                        return Err(ApiError::invalid_field(
                            field("apiKeyEncrypted"),
                            "must not be empty; send null to remove the key",
                        ))
                    }
                    MaybeUndefined::Value(ciphertext) => KeyInput::Encrypted(ciphertext),
                },
            })
        })
        .collect()
}

fn parse_prompt(raw: &str) -> Result<SystemPrompt, ApiError> {
    SystemPrompt::parse(raw).map_err(|e| ApiError::invalid_value("system_prompt", e))
}

pub struct AiModelConfigApi;

impl AiModelConfigApi {
    /// Runs the command, then answers with what the read model now holds.
    async fn execute(
        state: &AppState,
        id: &AggregateId,
        command: AiModelConfigCommand,
        principal: &Principal,
        context: &RequestContext,
    ) -> Result<ConfigResponse, ApiError> {
        state
            .commands
            .execute(id, command, &command_metadata(principal, context))
            .await?;
        Ok(ConfigResponse::from_view(
            &Self::read(state, id).await?,
            false,
        ))
    }

    /// Integer ids (family D's) for every credential the command might create: one per key sent.
    async fn numbers_for(state: &AppState, models: &[ModelSpec]) -> Result<Vec<i64>, ApiError> {
        let keys = models
            .iter()
            .filter(|model| matches!(model.key, KeyInput::Encrypted(_) | KeyInput::Plain(_)))
            .count();
        Ok(state.credentials.next_numbers(keys).await?)
    }

    async fn read(state: &AppState, id: &AggregateId) -> Result<ConfigView, ApiError> {
        state
            .queries
            .config(&id.to_string())
            .await?
            .ok_or_else(|| ApiError::not_found("no AI model configuration exists yet; create one with POST /api/v1/create/ai-model-config"))
    }
}

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
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
        body: Json<Checked<ConfigRequest>>,
    ) -> Result<CreateResponse, ApiError> {
        let id = auth.0.own_config(workspace.0.as_deref(), Role::Member)?;
        let Checked(body) = body.0;
        let models = parse_models(body.models)?;
        let system_prompt = body
            .system_prompt
            .value()
            .map(|raw| parse_prompt(raw))
            .transpose()?;
        let numbers = Self::numbers_for(&state, &models).await?;
        let command = AiModelConfigCommand::CreateConfig {
            id: id.clone(),
            models,
            system_prompt,
            numbers,
        };
        let created = Self::execute(&state, &id, command, &auth.0, &context).await?;
        Ok(CreateResponse::Created(Json(created)))
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
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
        /// Also return each key's ciphertext; needs the `keys:ciphertext` scope.
        #[oai(name = "includeEncryptedKeys")]
        include_encrypted_keys: Query<Option<bool>>,
    ) -> Result<ConfigFound, ApiError> {
        let id = auth.0.own_config(workspace.0.as_deref(), Role::Viewer)?;
        let include_ciphertext = include_encrypted_keys.0.unwrap_or(false);
        if include_ciphertext && !auth.0.has_scope(SCOPE_KEYS_CIPHERTEXT) {
            return Err(ApiError::forbidden(format!(
                "includeEncryptedKeys=true needs the {SCOPE_KEYS_CIPHERTEXT} scope"
            )));
        }
        let view = Self::read(&state, &id).await?;
        Ok(ConfigFound::Ok(Json(ConfigResponse::from_view(
            &view,
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
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
        body: Json<Checked<ConfigRequest>>,
    ) -> Result<ConfigFound, ApiError> {
        let id = auth.0.own_config(workspace.0.as_deref(), Role::Member)?;
        let Checked(body) = body.0;
        let models = parse_models(body.models)?;
        let system_prompt = match body.system_prompt {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(raw) => Some(Some(parse_prompt(&raw)?)),
        };
        let numbers = Self::numbers_for(&state, &models).await?;
        let command = AiModelConfigCommand::ReplaceConfig {
            models,
            system_prompt,
            numbers,
        };
        let replaced = Self::execute(&state, &id, command, &auth.0, &context).await?;
        Ok(ConfigFound::Ok(Json(replaced)))
    }
}
