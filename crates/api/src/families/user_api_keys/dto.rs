//! Seed 002's bodies.

use aimc_domain::{AiModelConfig, Provider};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde::Deserialize;

use crate::provider_catalogue::SEED_002_PROVIDERS;

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

impl UserApiKeys {
    /// What the configuration holds for each of seed 002's providers.
    pub fn new(config: Option<&AiModelConfig>) -> Self {
        let [anthropic, openai, openrouter, bedrock] =
            SEED_002_PROVIDERS.map(|(_, provider, default_model)| {
                ProviderKeyStatus::new(config, provider, default_model)
            });
        UserApiKeys {
            anthropic,
            openai,
            openrouter,
            bedrock,
        }
    }
}

impl ProviderKeyStatus {
    fn new(config: Option<&AiModelConfig>, provider: Provider, default_model: &str) -> Self {
        let model = config.and_then(|config| config.chat_model_of(provider));
        let credential =
            model.and_then(|model| config.and_then(|config| config.credential_of(model)));
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
}
