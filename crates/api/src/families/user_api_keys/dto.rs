//! Seed 002's bodies.

use aimc_domain::{AiModelConfig, Provider};
use aimc_store::CredentialRow;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde::Deserialize;

use crate::provider_catalogue::SEED_002_PROVIDERS;

/// What the caller has configured for one provider.
#[derive(Debug, Object)]
pub struct ProviderKeyStatus {
    /// Whether the caller stored a key for this provider.
    pub configured: bool,
    /// The stored key's hint (`sk-...cdef`); absent when not configured.
    #[oai(rename = "keyHint", skip_serializing_if_is_none)]
    pub key_hint: Option<String>,
    /// The model used with this provider: the caller's choice or the provider's default.
    #[oai(rename = "modelId")]
    pub model_id: String,
    #[oai(rename = "isDefaultModel")]
    pub is_default_model: bool,
}

#[derive(Debug, Object)]
#[oai(example)]
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
    #[oai(
        skip_serializing_if_is_none,
        rename = "apiKey",
        validator(max_length = 4096)
    )]
    #[serde(rename = "apiKey", default)]
    pub api_key: Option<String>,
    #[oai(
        skip_serializing_if_is_none,
        rename = "modelId",
        validator(max_length = 200)
    )]
    #[serde(rename = "modelId", default)]
    pub model_id: Option<String>,
}

/// AWS Bedrock credentials and/or model id.
#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct BedrockKeyInput {
    #[oai(
        skip_serializing_if_is_none,
        rename = "accessKeyId",
        validator(max_length = 256)
    )]
    #[serde(rename = "accessKeyId", default)]
    pub access_key_id: Option<String>,
    #[oai(
        skip_serializing_if_is_none,
        rename = "secretAccessKey",
        validator(max_length = 4096)
    )]
    #[serde(rename = "secretAccessKey", default)]
    pub secret_access_key: Option<String>,
    /// e.g. `us-east-1`.
    #[oai(skip_serializing_if_is_none, validator(max_length = 32))]
    #[serde(default)]
    pub region: Option<String>,
    #[oai(
        skip_serializing_if_is_none,
        rename = "modelId",
        validator(max_length = 200)
    )]
    #[serde(rename = "modelId", default)]
    pub model_id: Option<String>,
}

/// Providers to add or update; providers left out stay as they are.
#[derive(Object, Deserialize)]
#[oai(rename = "UserApiKeysRequest", deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[oai(skip_serializing_if_is_none)]
    #[serde(default)]
    pub anthropic: Option<ProviderKeyInput>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default)]
    pub openai: Option<ProviderKeyInput>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default)]
    pub openrouter: Option<ProviderKeyInput>,
    #[oai(skip_serializing_if_is_none)]
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
    /// For each of seed 002's providers, the key kept with its chat model, else the newest
    /// key stored for it through another API (`standalone`).
    pub fn new(config: Option<&AiModelConfig>, standalone: &[CredentialRow]) -> Self {
        let [anthropic, openai, openrouter, bedrock] =
            SEED_002_PROVIDERS.map(|(_, provider, default_model)| {
                let stored = standalone.iter().find(|row| row.provider == provider);
                ProviderKeyStatus::new(config, stored, provider, default_model)
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
    fn new(
        config: Option<&AiModelConfig>,
        stored: Option<&CredentialRow>,
        provider: Provider,
        default_model: &str,
    ) -> Self {
        let model = config.and_then(|config| config.chat_model_of(provider));
        let hint = model
            .and_then(|model| config.and_then(|config| config.credential_of(model)))
            .map(|credential| &credential.hint)
            .or(stored.map(|row| &row.hint));
        let model_id = model
            .map(|model| model.model.as_str().to_owned())
            .unwrap_or_else(|| default_model.to_owned());
        ProviderKeyStatus {
            configured: hint.is_some(),
            key_hint: hint.map(|hint| hint.as_str().to_owned()),
            is_default_model: model_id == default_model,
            model_id,
        }
    }
}

impl poem_openapi::types::Example for UpdateRequest {
    fn example() -> Self {
        UpdateRequest {
            anthropic: None,
            openai: Some(ProviderKeyInput {
                api_key: Some("sk-proj-xxxxxxxxxxxx".into()),
                model_id: Some("gpt-4o".into()),
            }),
            openrouter: None,
            bedrock: None,
        }
    }
}

impl poem_openapi::types::Example for UserApiKeys {
    fn example() -> Self {
        let status = |configured: bool, model: &str| ProviderKeyStatus {
            configured,
            key_hint: configured.then(|| "sk-...xxxx".to_owned()),
            model_id: model.to_owned(),
            is_default_model: true,
        };
        UserApiKeys {
            anthropic: status(false, "claude-sonnet-4-20250514"),
            openai: status(true, "gpt-4o"),
            openrouter: status(false, "anthropic/claude-sonnet-4-20250514"),
            bedrock: status(false, "anthropic.claude-3-sonnet-20240229-v1:0"),
        }
    }
}
