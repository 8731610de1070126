//! Family C (seed 002): a person's own provider keys with a model id per provider, falling
//! back to seed 002's default models. `GET`/`PUT /api/user/api-keys`,
//! `DELETE /api/user/api-keys/{provider}`.

mod dto;
mod error;

use std::sync::Arc;

use aimc_domain::{
    ConfigCommand, ConfigId, CredentialCommand, DomainError, ModelName, Provider, ProviderKeyChange,
};
use aimc_store::{CommandError, CredentialRow, StandaloneKeys, StoreError};
use poem::web::Data;
use poem_openapi::param::Header;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;
use secrecy::SecretString;

use self::dto::{BedrockKeyInput, KeysResponse, ProviderKeyInput, UpdateRequest, UserApiKeys};
use crate::auth::Role;
use crate::caller::Caller;
use crate::idempotency::IdempotencyKey;
use crate::plain_key;
use crate::problem::{ApiError, Fails, Listing, Removing, Writing};
use crate::provider_catalogue::{seed_002_named, SEED_002_PROVIDERS};
use crate::request_body::Checked;
use crate::spelling::{PersonalProvider, Spelled};
use crate::state::AppState;
use crate::tags::ApiTags;

fn key(field: String, raw: Option<String>) -> Result<Option<SecretString>, ApiError> {
    raw.map(|raw| plain_key::parse(&field, &raw)).transpose()
}

fn model(provider: &str, raw: Option<String>) -> Result<Option<ModelName>, ApiError> {
    raw.map(|raw| {
        ModelName::parse(&raw)
            .map_err(|error| ApiError::invalid_value(format!("{provider}.modelId"), error))
    })
    .transpose()
}

/// Every provider's input checked before any is stored, as the command's changes.
fn changes(owner: &ConfigId, body: UpdateRequest) -> Result<Vec<ProviderKeyChange>, ApiError> {
    let default_model = |provider: Provider| {
        let (_, _, model) = SEED_002_PROVIDERS
            .iter()
            .find(|(_, known, _)| *known == provider)
            .copied()
            .expect("a seed 002 provider");
        ModelName::parse(model).map_err(ApiError::internal)
    };
    let name = |spelling: &str| format!("{} {spelling} key", owner.owner.label());
    let mut changes = Vec::new();
    let simple: [(&str, Provider, Option<ProviderKeyInput>); 3] = [
        ("anthropic", Provider::Anthropic, body.anthropic),
        ("openai", Provider::Openai, body.openai),
        ("openrouter", Provider::Openrouter, body.openrouter),
    ];
    for (spelling, provider, input) in simple {
        let Some(input) = input else { continue };
        changes.push(ProviderKeyChange {
            provider,
            model: model(spelling, input.model_id)?,
            default_model: default_model(provider)?,
            secret: key(format!("{spelling}.apiKey"), input.api_key)?,
            access_key: None,
            endpoint: None,
            name: name(spelling),
        });
    }
    if let Some(BedrockKeyInput {
        access_key_id,
        secret_access_key,
        region,
        model_id,
    }) = body.bedrock
    {
        let endpoint = region
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
        changes.push(ProviderKeyChange {
            provider: Provider::Aws,
            model: model("bedrock", model_id)?,
            default_model: default_model(Provider::Aws)?,
            secret: key("bedrock.secretAccessKey".into(), secret_access_key)?,
            access_key: key("bedrock.accessKeyId".into(), access_key_id)?,
            endpoint,
            name: name("bedrock"),
        });
    }
    Ok(changes)
}

/// The caller's keys of seed 002's providers that no model keeps.
fn standalone(owner: &ConfigId) -> StandaloneKeys {
    StandaloneKeys {
        owner: owner.clone(),
        providers: SEED_002_PROVIDERS.map(|(_, provider, _)| provider).to_vec(),
    }
}

async fn standalone_keys(
    state: &AppState,
    owner: &ConfigId,
) -> Result<Vec<CredentialRow>, StoreError> {
    let StandaloneKeys { owner, providers } = standalone(owner);
    state.credentials.standalone_keys(&owner, &providers).await
}

pub struct UserApiKeysApi;

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
        state: Data<&Arc<AppState>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
    ) -> Result<KeysResponse, Fails<Listing>> {
        let owner = caller.own_config(Role::Viewer)?;
        let (view, standalone) = tokio::try_join!(
            state.queries.config(&owner),
            standalone_keys(&state, &owner)
        )?;
        Ok(KeysResponse::Ok(Json(UserApiKeys::new(
            view.as_ref().map(|view| &view.config),
            &standalone,
        ))))
    }

    /// Add or update API keys
    ///
    /// Sets keys and model ids for the providers named; others stay as they are. Without a
    /// model id, the provider's default model is used. All providers are stored in one change or
    /// not at all. Needs the member role.
    #[oai(path = "/", method = "put", operation_id = "updateUserApiKeys")]
    #[tracing::instrument(skip_all)]
    async fn put(
        &self,
        state: Data<&Arc<AppState>>,
        /// Makes a retry safe: a write sent again with the same key and the same request is
        /// answered as the first time and changes nothing more (kept 24 hours).
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKey>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        body: Json<Checked<UpdateRequest>>,
    ) -> Result<KeysResponse, Fails<Writing>> {
        let owner = caller.own_config(Role::Member)?;
        let changes = changes(&owner, body.0 .0)?;
        let command = ConfigCommand::SetProviderKeys {
            id: owner.clone(),
            changes,
        };
        // The command cannot change keys stored through `/api/keys`: its statement reads them.
        let executed = state
            .commands
            .execute_looking_up(
                &owner,
                command,
                &caller.metadata(),
                Some(&standalone(&owner)),
            )
            .await
            .map_err(error::command)?;
        let standalone = match executed.found {
            Some(found) => found,
            None => standalone_keys(&state, &owner).await?,
        };
        let config = executed.aggregate;
        Ok(KeysResponse::Ok(Json(UserApiKeys::new(
            config.is_created().then_some(&config),
            &standalone,
        ))))
    }

    /// Remove a provider's key
    ///
    /// Removes the key shown for the provider: the one kept with its chat model, else the
    /// newest stored for it through `/api/keys`. The model id stays; the provider falls back to
    /// the caller's next key, the workspace's or the system's. Needs the member role.
    #[oai(
        path = "/:provider",
        method = "delete",
        operation_id = "deleteUserApiKey"
    )]
    #[tracing::instrument(skip_all)]
    async fn delete(
        &self,
        state: Data<&Arc<AppState>>,
        /// Makes a retry safe: a write sent again with the same key and the same request is
        /// answered as the first time and changes nothing more (kept 24 hours).
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKey>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        /// anthropic, openai, openrouter or bedrock.
        provider: Path<Spelled<PersonalProvider>>,
    ) -> Result<KeysResponse, Fails<Removing>> {
        let owner = caller.own_config(Role::Member)?;
        let (_, provider, _) = seed_002_named(provider.0.as_str()).ok_or_else(|| {
            ApiError::invalid_field(
                "provider",
                "must be one of anthropic, openai, openrouter, bedrock",
            )
        })?;
        let removed = state
            .commands
            .execute(
                &owner,
                ConfigCommand::RemoveProviderKey { provider },
                &caller.metadata(),
            )
            .await;
        let config = match removed {
            Ok(executed) => Some(executed.aggregate),
            Err(CommandError::Domain(DomainError::NoProviderKey { .. })) => {
                // None kept with the model: the key shown is one stored through `/api/keys`.
                let stored = state
                    .credentials
                    .standalone_keys(&owner, &[provider])
                    .await?
                    .pop()
                    .ok_or_else(|| {
                        error::command(CommandError::Domain(DomainError::NoProviderKey {
                            provider,
                        }))
                    })?;
                let command = CredentialCommand::Remove {
                    credential_id: stored.id(),
                };
                state
                    .commands
                    .execute_on_credential(&stored.home, command, &caller.metadata())
                    .await
                    .map_err(error::command)?;
                state.queries.config(&owner).await?.map(|view| view.config)
            }
            Err(other) => return Err(error::command(other).into()),
        };
        let standalone = standalone_keys(&state, &owner).await?;
        Ok(KeysResponse::Ok(Json(UserApiKeys::new(
            config.as_ref(),
            &standalone,
        ))))
    }
}
