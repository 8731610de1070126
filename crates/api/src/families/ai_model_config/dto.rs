//! Seed 000's bodies, and their parsing into domain values.

use aimc_domain::{
    AiModelConfig, KeyInput, ModelName, ModelSpec, ModelType, Provider, SystemPrompt,
};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object};
use serde::Deserialize;

use crate::problem::ApiError;
use crate::spelling::{ModelKind, ModelProvider, Spelled};

/// A model the user wants to use.
#[derive(Debug, Object, Deserialize)]
#[oai(rename = "AiModelInput", deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct ModelInput {
    pub provider: Spelled<ModelProvider>,
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub model_type: Spelled<ModelKind>,
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
#[oai(rename = "AiModelConfigRequest", deny_unknown_fields, example)]
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
    pub provider: Spelled<ModelProvider>,
    #[oai(rename = "type")]
    pub model_type: Spelled<ModelKind>,
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
#[oai(rename = "AiModelConfig", example)]
pub struct ConfigResponse {
    pub models: Vec<ModelOutput>,
    #[oai(rename = "system_prompt", nullable)]
    pub system_prompt: Option<String>,
}

impl ConfigResponse {
    pub fn new(config: &AiModelConfig, include_ciphertext: bool) -> Self {
        ConfigResponse {
            models: config
                .models
                .iter()
                .map(|model| {
                    let credential = config.credential_of(model);
                    ModelOutput {
                        provider: Spelled::new(model.provider.display_name()),
                        model_type: Spelled::new(model.model_type.as_str()),
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
pub(super) fn parse_models(models: Vec<ModelInput>) -> Result<Vec<ModelSpec>, ApiError> {
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
                provider: Provider::parse(input.provider.as_str())
                    .map_err(|e| ApiError::invalid_value(field("provider"), e))?,
                model_type: ModelType::parse(input.model_type.as_str())
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

pub(super) fn parse_prompt(raw: &str) -> Result<SystemPrompt, ApiError> {
    SystemPrompt::parse(raw).map_err(|e| ApiError::invalid_value("system_prompt", e))
}

/// A key-less model: keys are encrypted in the client first (see `apiKeyEncrypted`), which
/// Swagger UI cannot do.
impl poem_openapi::types::Example for ConfigRequest {
    fn example() -> Self {
        ConfigRequest {
            models: vec![ModelInput {
                provider: Spelled::new("OpenAI"),
                model_type: Spelled::new("chat"),
                model: "gpt-4o".into(),
                api_key_encrypted: MaybeUndefined::Undefined,
                is_paid: true,
            }],
            system_prompt: MaybeUndefined::Value("You are a helpful assistant.".into()),
        }
    }
}

impl poem_openapi::types::Example for ConfigResponse {
    fn example() -> Self {
        ConfigResponse {
            models: vec![ModelOutput {
                provider: Spelled::new("OpenAI"),
                model_type: Spelled::new("chat"),
                model: "gpt-4o".into(),
                is_paid: true,
                key_hint: Some("sk-...cdef".into()),
                api_key_encrypted: None,
            }],
            system_prompt: Some("You are a helpful assistant.".into()),
        }
    }
}
