//! Family D (seed 003): a person's API keys, numbered. `POST /api/keys`, `GET /api/keys`,
//! `PUT /api/keys/{key_id}`, `DELETE /api/keys/{key_id}`.
//!
//! A key stored here is a credential with a stream of its own; every credential has a number,
//! so keys stored through families A and C are listed and editable here too.

mod dto;

use std::sync::Arc;

use aimc_domain::{
    ConfigId, CredentialChange, CredentialCommand, NameChoice, NewCredential, Provider,
};
use aimc_store::{CommandError, CredentialRow};
use poem::web::Data;
use poem_openapi::param::Header;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;

use self::dto::{
    CreateRequest, CreateResponse, Created, DeleteResponse, KeyNumber, ListResponse, Listed,
    UpdateRequest, UpdateResponse, Updated,
};
use crate::auth::Role;
use crate::caller::Caller;
use crate::idempotency::IdempotencyKey;
use crate::plain_key;
use crate::problem::ApiError;
use crate::provider_catalogue::seed_003_spelling;
use crate::request_body::Checked;
use crate::spelling::Spelled;
use crate::state::AppState;
use crate::tags::ApiTags;

/// One of the caller's own keys; anyone else's number answers 404 like a missing one.
async fn find(state: &AppState, owner: &ConfigId, key_id: i64) -> Result<CredentialRow, ApiError> {
    state
        .credentials
        .by_number(key_id)
        .await?
        .filter(|row| row.home.owner == *owner)
        .ok_or_else(|| not_found(key_id))
}

fn not_found(key_id: i64) -> ApiError {
    ApiError::not_found(format!("no API key {key_id}"))
}

/// Family D's refusals: a key that went meanwhile is not found by its number.
fn command_error(key_id: i64) -> impl Fn(CommandError) -> ApiError {
    move |error| match error {
        CommandError::Domain(aimc_domain::DomainError::CredentialNotFound(_)) => not_found(key_id),
        other => other.into(),
    }
}

pub struct ApiKeysApi;

#[OpenApi(prefix_path = "/api/keys", tag = "ApiTags::ApiKeys")]
impl ApiKeysApi {
    /// Add an API key
    ///
    /// Stores a key for a service, encrypted; answers with its integer id. Needs the member role.
    #[oai(path = "/", method = "post", operation_id = "createApiKey")]
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
        body: Json<Checked<CreateRequest>>,
    ) -> Result<CreateResponse, ApiError> {
        let owner = caller.own_config(Role::Member)?;
        let Checked(body) = body.0;
        let provider = Provider::parse(body.service.as_str())
            .map_err(|error| ApiError::invalid_value("service", error))?;
        let credential = NewCredential {
            name: NameChoice::Generated {
                base: format!(
                    "{} {} key",
                    owner.owner.label(),
                    seed_003_spelling(provider)
                ),
                numbered: true,
            },
            provider,
            endpoint: None,
            access_key: None,
            secret: plain_key::parse("api_key", &body.api_key)?,
        };
        let (_, added) = state
            .commands
            .add_credential(&owner, credential, &caller.metadata())
            .await?;
        let (Some(credential), Some(created_at)) = (added.credential, added.recorded_at) else {
            return Err(ApiError::internal(
                "a stored key came back without its number",
            ));
        };
        Ok(CreateResponse::Created(Json(Created {
            id: credential
                .number
                .ok_or_else(|| ApiError::internal("a stored key came back without its number"))?,
            service: Spelled::new(seed_003_spelling(credential.provider)),
            created_at,
        })))
    }

    /// List the caller's API keys
    ///
    /// Every key the caller stored, through any of these APIs, masked. Needs the viewer role.
    #[oai(path = "/", method = "get", operation_id = "listApiKeys")]
    #[tracing::instrument(skip_all)]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        /// The workspace to act in; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
    ) -> Result<ListResponse, ApiError> {
        let owner = caller.own_config(Role::Viewer)?;
        let rows = state.credentials.of_owner(&owner, false).await?;
        Ok(ListResponse::Ok(Json(
            rows.into_iter()
                .filter_map(|row| {
                    Some(Listed {
                        id: row.number?,
                        service: Spelled::new(seed_003_spelling(row.provider)),
                        last_4_chars: row.hint.as_str().to_owned(),
                        created_at: row.created_at,
                    })
                })
                .collect(),
        )))
    }

    /// Replace an API key
    ///
    /// Needs the member role.
    #[oai(path = "/:key_id", method = "put", operation_id = "updateApiKey")]
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
        /// The key's integer id.
        key_id: Path<KeyNumber>,
        body: Json<Checked<UpdateRequest>>,
    ) -> Result<UpdateResponse, ApiError> {
        let owner = caller.own_config(Role::Member)?;
        let row = find(&state, &owner, key_id.0 .0).await?;
        let command = CredentialCommand::Change {
            credential_id: row.id(),
            change: CredentialChange {
                secret: Some(plain_key::parse("api_key", &body.0 .0.api_key)?),
                ..CredentialChange::default()
            },
        };
        let changed = state
            .commands
            .execute_on_credential(&row.home, command, &caller.metadata())
            .await
            .map_err(command_error(key_id.0 .0))?;
        Ok(UpdateResponse::Ok(Json(Updated {
            id: key_id.0 .0,
            service: Spelled::new(seed_003_spelling(row.provider)),
            updated_at: changed.recorded_at.unwrap_or(row.updated_at),
        })))
    }

    /// Delete an API key
    ///
    /// Needs the member role.
    #[oai(path = "/:key_id", method = "delete", operation_id = "deleteApiKey")]
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
        /// The key's integer id.
        key_id: Path<KeyNumber>,
    ) -> Result<DeleteResponse, ApiError> {
        let owner = caller.own_config(Role::Member)?;
        let row = find(&state, &owner, key_id.0 .0).await?;
        let command = CredentialCommand::Remove {
            credential_id: row.id(),
        };
        state
            .commands
            .execute_on_credential(&row.home, command, &caller.metadata())
            .await
            .map_err(command_error(key_id.0 .0))?;
        Ok(DeleteResponse::NoContent)
    }
}
