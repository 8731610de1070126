//! Family C (seed 002): a person's own provider keys with a model id per provider, falling
//! back to seed 002's default models. `GET`/`PUT /api/user/api-keys`,
//! `DELETE /api/user/api-keys/{provider}`.

use std::sync::Arc;

use aimc_domain::{
    AggregateId, AiModelConfig, AiModelConfigCommand, CredentialId, ModelName, ModelType, Provider,
    ProviderKeyChange,
};
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use secrecy::SecretString;
use serde::Deserialize;

use crate::auth::{BearerAuth, Principal, Role};
use crate::problem::ApiError;
use crate::request_body::Checked;
use crate::request_context::RequestContext;
use crate::state::AppState;
use crate::{command_metadata, ApiTags};

/// Seed 002's providers, in its spelling, with its default models.
pub const SEED_002_PROVIDERS: [(&str, Provider, &str); 4] = [
    ("anthropic", Provider::Anthropic, "claude-sonnet-4-20250514"),
    ("openai", Provider::Openai, "gpt-4o"),
    (
        "openrouter",
        Provider::Openrouter,
        "anthropic/claude-sonnet-4-20250514",
    ),
    (
        "bedrock",
        Provider::Aws,
        "anthropic.claude-3-sonnet-20240229-v1:0",
    ),
];

/// What the caller has configured for one provider.
#[derive(Debug, Object)]
pub struct ProviderKeyStatus {
    /// Whether the caller stored a key for this provider.
    pub configured: bool,
    /// The stored key's hint (`sk-...cdef`).
    #[oai(rename = "keyHint")]
    pub key_hint: Option<String>,
    /// The model used with this provider: the caller's choice or seed 002's default.
    #[oai(rename = "modelId")]
    pub model_id: String,
    #[oai(rename = "isDefaultModel")]
    pub is_default_model: bool,
}

#[derive(Debug, Object)]
pub struct UserApiKeys {
    pub anthropic: ProviderKeyStatus,
    pub openai: ProviderKeyStatus,
    pub openrouter: ProviderKeyStatus,
    pub bedrock: ProviderKeyStatus,
}

/// A key and/or model id for Anthropic, OpenAI or OpenRouter.
#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct ProviderKeyInput {
    #[oai(rename = "apiKey", validator(max_length = 4096))]
    #[serde(rename = "apiKey", default)]
    pub api_key: Option<String>,
    #[oai(rename = "modelId", validator(max_length = 200))]
    #[serde(rename = "modelId", default)]
    pub model_id: Option<String>,
}

/// AWS Bedrock credentials and/or model id.
#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct BedrockKeyInput {
    #[oai(rename = "accessKeyId", validator(max_length = 256))]
    #[serde(rename = "accessKeyId", default)]
    pub access_key_id: Option<String>,
    #[oai(rename = "secretAccessKey", validator(max_length = 4096))]
    #[serde(rename = "secretAccessKey", default)]
    pub secret_access_key: Option<String>,
    /// e.g. `us-east-1`.
    #[oai(validator(max_length = 32))]
    #[serde(default)]
    pub region: Option<String>,
    #[oai(rename = "modelId", validator(max_length = 200))]
    #[serde(rename = "modelId", default)]
    pub model_id: Option<String>,
}

/// Providers to add or update; providers left out stay as they are.
#[derive(Object, Deserialize)]
#[oai(rename = "UserApiKeysRequest", deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[serde(default)]
    pub anthropic: Option<ProviderKeyInput>,
    #[serde(default)]
    pub openai: Option<ProviderKeyInput>,
    #[serde(default)]
    pub openrouter: Option<ProviderKeyInput>,
    #[serde(default)]
    pub bedrock: Option<BedrockKeyInput>,
}

#[derive(ApiResponse)]
pub enum KeysResponse {
    /// The caller's providers.
    #[oai(status = 200)]
    Ok(Json<UserApiKeys>),
}

struct ProviderChange {
    provider: Provider,
    name: &'static str,
    default_model: &'static str,
    model: Option<ModelName>,
    secret: Option<SecretString>,
    access_key: Option<SecretString>,
    endpoint: Option<String>,
}

fn key(field: String, raw: Option<String>) -> Result<Option<SecretString>, ApiError> {
    raw.map(|raw| crate::credentials::parse_plain_key(&field, &raw))
        .transpose()
}

fn model(provider: &str, raw: Option<String>) -> Result<Option<ModelName>, ApiError> {
    raw.map(|raw| {
        ModelName::parse(&raw)
            .map_err(|error| ApiError::invalid_value(format!("{provider}.modelId"), error))
    })
    .transpose()
}

fn status(
    config: Option<&AiModelConfig>,
    provider: Provider,
    default_model: &str,
) -> ProviderKeyStatus {
    let model = config.and_then(|config| {
        config
            .models
            .iter()
            .find(|model| model.provider == provider && model.model_type == ModelType::Chat)
    });
    let credential = model.and_then(|model| config.and_then(|config| config.credential_of(model)));
    let model_id = model
        .map(|model| model.model.as_str().to_owned())
        .unwrap_or_else(|| default_model.to_owned());
    ProviderKeyStatus {
        configured: credential.is_some(),
        key_hint: credential.map(|credential| credential.hint.as_str().to_owned()),
        is_default_model: model_id == default_model,
        model_id,
    }
}

pub struct UserApiKeysApi;

impl UserApiKeysApi {
    async fn current(state: &AppState, owner: &AggregateId) -> Result<KeysResponse, ApiError> {
        let view = state.queries.config(&owner.to_string()).await?;
        let config = view.as_ref().map(|view| &view.config);
        let [anthropic, openai, openrouter, bedrock] = SEED_002_PROVIDERS
            .map(|(_, provider, default_model)| status(config, provider, default_model));
        Ok(KeysResponse::Ok(Json(UserApiKeys {
            anthropic,
            openai,
            openrouter,
            bedrock,
        })))
    }

    fn changes(body: UpdateRequest) -> Result<Vec<ProviderChange>, ApiError> {
        let mut changes = Vec::new();
        let simple = [
            ("anthropic", body.anthropic),
            ("openai", body.openai),
            ("openrouter", body.openrouter),
        ];
        for (name, input) in simple {
            let Some(input) = input else { continue };
            let (_, provider, default_model) = SEED_002_PROVIDERS
                .iter()
                .find(|(n, ..)| *n == name)
                .copied()
                .expect("listed");
            changes.push(ProviderChange {
                provider,
                name,
                default_model,
                model: model(name, input.model_id)?,
                secret: key(format!("{name}.apiKey"), input.api_key)?,
                access_key: None,
                endpoint: None,
            });
        }
        if let Some(bedrock) = body.bedrock {
            let region = bedrock
                .region
                .map(|region| {
                    let valid = !region.is_empty()
                        && region.len() <= 32
                        && region
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                    valid
                        .then(|| format!("https://bedrock-runtime.{region}.amazonaws.com"))
                        .ok_or_else(|| {
                            ApiError::invalid_field(
                                "bedrock.region",
                                "must be an AWS region such as us-east-1",
                            )
                        })
                })
                .transpose()?;
            changes.push(ProviderChange {
                provider: Provider::Aws,
                name: "bedrock",
                default_model: SEED_002_PROVIDERS[3].2,
                model: model("bedrock", bedrock.model_id)?,
                secret: key("bedrock.secretAccessKey".into(), bedrock.secret_access_key)?,
                access_key: key("bedrock.accessKeyId".into(), bedrock.access_key_id)?,
                endpoint: region,
            });
        }
        Ok(changes)
    }

    /// All providers in one command, so a request is stored whole or not at all.
    async fn apply(
        state: &AppState,
        principal: &Principal,
        context: &RequestContext,
        owner: &AggregateId,
        changes: Vec<ProviderChange>,
    ) -> Result<(), ApiError> {
        let mut commands = Vec::with_capacity(changes.len());
        // Names are claimed up front in case a credential gets created; given back below for
        // those that were not (the provider already had one, or the command surely failed).
        let mut claims = Vec::new();
        for change in changes {
            let new_credential = CredentialId(uuid::Uuid::now_v7());
            let base = format!("{} {} key", owner.owner, change.name);
            let new_name =
                crate::credentials::claim_generated_name(state, owner, &base, new_credential)
                    .await?;
            claims.push((new_credential, new_name.key()));
            commands.push(ProviderKeyChange {
                provider: change.provider,
                model: change.model,
                default_model: ModelName::parse(change.default_model)
                    .map_err(ApiError::internal)?,
                secret: change.secret,
                access_key: change.access_key,
                endpoint: change.endpoint,
                new_credential,
                new_name,
                new_number: Some(state.credentials.next_number().await?),
            });
        }
        let command = AiModelConfigCommand::SetProviderKeys {
            id: owner.clone(),
            changes: commands,
        };
        let outcome = state
            .commands
            .execute(owner, command, &command_metadata(principal, context))
            .await;
        if outcome
            .as_ref()
            .map_or_else(|error| error.appended_nothing(), |_| true)
        {
            for (credential, name_key) in claims {
                if !matches!(state.credentials.by_id(credential).await, Ok(Some(_))) {
                    state
                        .credentials
                        .release_name(&owner.workspace, &name_key, credential)
                        .await?;
                }
            }
        }
        outcome.map(drop).map_err(Into::into)
    }
}

#[OpenApi(prefix_path = "/api/user/api-keys", tag = "ApiTags::UserApiKeys")]
impl UserApiKeysApi {
    /// Check which providers are configured
    ///
    /// For anthropic, openai, openrouter and bedrock: whether the caller stored a key (with
    /// its hint) and the model id in use. Needs the viewer role.
    #[oai(path = "/", method = "get", operation_id = "getUserApiKeys")]
    #[tracing::instrument(skip_all)]
    async fn get(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
    ) -> Result<KeysResponse, ApiError> {
        let owner = auth.0.own_config(workspace.0.as_deref(), Role::Viewer)?;
        Self::current(&state, &owner).await
    }

    /// Add or update API keys
    ///
    /// Sets keys and model ids for the providers named; others stay as they are. Without a
    /// model id, seed 002's default model is used. Needs the member role.
    #[oai(path = "/", method = "put", operation_id = "updateUserApiKeys")]
    #[tracing::instrument(skip_all)]
    async fn put(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
        body: Json<Checked<UpdateRequest>>,
    ) -> Result<KeysResponse, ApiError> {
        let owner = auth.0.own_config(workspace.0.as_deref(), Role::Member)?;
        // Every provider's input is checked before any is stored.
        let changes = Self::changes(body.0 .0)?;
        if !changes.is_empty() {
            Self::apply(&state, &auth.0, &context, &owner, changes).await?;
        }
        Self::current(&state, &owner).await
    }

    /// Remove a provider's key
    ///
    /// The model id stays; the provider falls back to the workspace's or the system's key.
    /// Needs the member role.
    #[oai(
        path = "/:provider",
        method = "delete",
        operation_id = "deleteUserApiKey"
    )]
    #[tracing::instrument(skip_all)]
    async fn delete(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        context: Data<&RequestContext>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        workspace: Header<Option<String>>,
        /// anthropic, openai, openrouter or bedrock.
        provider: Path<String>,
    ) -> Result<KeysResponse, ApiError> {
        let owner = auth.0.own_config(workspace.0.as_deref(), Role::Member)?;
        let (name, provider, _) = SEED_002_PROVIDERS
            .iter()
            .find(|(name, ..)| *name == provider.0.to_ascii_lowercase())
            .copied()
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "provider",
                    "must be one of anthropic, openai, openrouter, bedrock",
                )
            })?;
        let view = state.queries.config(&owner.to_string()).await?;
        let credential = view
            .as_ref()
            .and_then(|view| {
                let config = &view.config;
                config
                    .models
                    .iter()
                    .find(|model| model.provider == provider && model.model_type == ModelType::Chat)
                    .and_then(|model| config.credential_of(model))
            })
            .map(|credential| (credential.id, credential.name.to_lowercase()))
            .ok_or_else(|| ApiError::not_found(format!("no key is stored for {name}")))?;
        let command = AiModelConfigCommand::RemoveCredential {
            credential_id: credential.0,
        };
        state
            .commands
            .execute(&owner, command, &command_metadata(&auth.0, &context))
            .await?;
        state
            .credentials
            .release_name(&owner.workspace, &credential.1, credential.0)
            .await?;
        Self::current(&state, &owner).await
    }
}
