//! Endpoints every family shares: the client-side encryption key, credential names, the audit
//! history and task resolution.

mod history;
mod resolve;
mod rotation;

use history::HistoryEvent;

pub use resolve::ResolveApi;
pub use rotation::KeyRotationApi;

use std::sync::Arc;

use aimc_domain::{ConfigEvent, CredentialName, Owner, Provider};
use aimc_store::HistoryFilter;
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::auth::Role;
use crate::caller::{Caller, CallerByBody};
use crate::problem::{ApiError, Fails, Listing};
use crate::spelling::{ProviderId, Spelled};
use crate::state::AppState;
use crate::tags::ApiTags;

/// The public half of the workspace's RSA key: encrypt API keys with it (RSA-OAEP, SHA-256)
/// and send the standard base64 of the ciphertext as `apiKeyEncrypted`.
#[derive(Debug, Object)]
#[oai(example)]
pub struct EncryptionKey {
    /// The key version; a ciphertext may name it as `vault:v<keyVersion>:<base64>`.
    #[oai(rename = "keyVersion")]
    pub key_version: u64,
    /// Always `RSA-OAEP-256`.
    pub algorithm: String,
    /// SubjectPublicKeyInfo PEM.
    pub pem: String,
    pub jwk: Jwk,
}

/// The same key as a JSON Web Key (RFC 7517), ready for WebCrypto's `importKey("jwk", …)`.
#[derive(Debug, Object, serde::Deserialize)]
pub struct Jwk {
    /// Always `RSA`.
    pub kty: String,
    /// Always `enc`.
    #[oai(rename = "use")]
    #[serde(rename = "use")]
    pub key_use: String,
    /// Always `RSA-OAEP-256`.
    pub alg: String,
    /// `<key name>:v<keyVersion>`.
    pub kid: String,
    /// The modulus, base64url without padding.
    pub n: String,
    /// The public exponent, base64url without padding.
    pub e: String,
}

#[derive(ApiResponse)]
pub enum EncryptionKeyResponse {
    /// The workspace's current public key.
    #[oai(status = 200)]
    Ok(Json<EncryptionKey>),
}

#[derive(Debug, Object)]
#[oai(example)]
pub struct HistoryPageBody {
    /// Newest first.
    pub events: Vec<HistoryEvent>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(rename = "nextCursor", skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum HistoryResponse {
    /// A page of the workspace's history.
    #[oai(status = 200)]
    Ok(Json<HistoryPageBody>),
}

/// Whether a credential name is free in the workspace.
#[derive(Debug, Object)]
#[oai(example)]
pub struct NameAvailability {
    pub name: String,
    /// False when a credential of any owner in the workspace has this name, in any case.
    pub available: bool,
}

#[derive(ApiResponse)]
pub enum NameAvailabilityResponse {
    /// The answer.
    #[oai(status = 200)]
    Ok(Json<NameAvailability>),
}

pub struct SharedApi;

#[OpenApi(prefix_path = "/api/v1")]
impl SharedApi {
    /// Get the workspace's public encryption key
    ///
    /// The RSA public key clients encrypt API keys with before sending them
    /// (`apiKeyEncrypted`). Needs the viewer role.
    #[oai(
        path = "/encryption-key",
        method = "get",
        operation_id = "getEncryptionKey",
        tag = "ApiTags::Encryption"
    )]
    #[tracing::instrument(skip_all)]
    async fn encryption_key(
        &self,
        state: Data<&Arc<AppState>>,
        /// The workspace; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        /// The workspace, as an alternative to the header.
        #[oai(name = "workspaceId")]
        workspace_id: Query<Option<String>>,
    ) -> Result<EncryptionKeyResponse, Fails<Listing>> {
        let (workspace, _) = caller.workspace_named(workspace_id.0.as_deref(), Role::Viewer)?;
        let key = state.keyring.client_key(&workspace).await?;
        Ok(EncryptionKeyResponse::Ok(Json(EncryptionKey {
            key_version: key.key_version,
            algorithm: aimc_keyring::ClientKey::ALGORITHM.to_owned(),
            pem: key.pem,
            jwk: serde_json::from_value(key.jwk).map_err(ApiError::internal)?,
        })))
    }

    /// Check whether a credential name is available
    ///
    /// Credential names are unique per workspace, regardless of case and of who owns the
    /// credential. Answered from the name registry; a create can still lose a race for the name.
    /// Needs the viewer role.
    #[oai(
        path = "/names/available",
        method = "get",
        operation_id = "getNameAvailability",
        tag = "ApiTags::AiLlm"
    )]
    #[tracing::instrument(skip_all)]
    async fn name_available(
        &self,
        caller: CallerByBody,
        state: Data<&Arc<AppState>>,
        /// The workspace; defaults to the token's only workspace.
        #[oai(name = "workspaceId")]
        workspace_id: Query<Option<String>>,
        /// The name to check.
        name: Query<String>,
    ) -> Result<NameAvailabilityResponse, Fails<Listing>> {
        let (workspace, _) = caller
            .0
            .workspace_named(workspace_id.0.as_deref(), Role::Viewer)?;
        let name = CredentialName::parse(&name.0)
            .map_err(|error| ApiError::invalid_value("name", error))?;
        let available = state.credentials.name_available(&workspace, &name).await?;
        Ok(NameAvailabilityResponse::Ok(Json(NameAvailability {
            name: name.as_str().to_owned(),
            available,
        })))
    }

    /// List the workspace's history of changes
    ///
    /// Every recorded change, newest first, with who made it and when; keys appear only as
    /// hints, and every credential entry names the credential's provider and name. Filters
    /// combine; a parameter this operation does not know is refused rather than ignored.
    /// Admins and owners see the whole workspace; others see their own settings only.
    #[oai(
        path = "/history",
        method = "get",
        operation_id = "getHistory",
        tag = "ApiTags::Audit"
    )]
    #[tracing::instrument(skip_all)]
    #[allow(clippy::too_many_arguments)]
    async fn history(
        &self,
        state: Data<&Arc<AppState>>,
        request: &poem::Request,
        /// The workspace; defaults to the token's only workspace.
        #[oai(name = "X-Workspace-Id")]
        caller: Caller,
        /// The workspace, as an alternative to the header.
        #[oai(name = "workspaceId")]
        workspace_id: Query<Option<String>>,
        /// Only changes to this owner's settings: `user:<sub>` or `workspace`.
        owner: Query<Option<String>>,
        /// Only these event types, comma-separated (e.g. `CredentialAdded,ModelRemoved`).
        #[oai(name = "type")]
        event_type: Query<Option<String>>,
        /// Only changes to this credential (its id, as `/ai/llm` and the history show it).
        credential: Query<Option<uuid::Uuid>>,
        /// Only changes concerning this provider, e.g. `openai`: its keys, and models and task
        /// assignments added for it.
        provider: Query<Option<Spelled<ProviderId>>>,
        /// Only changes made by this `sub`.
        actor: Query<Option<String>>,
        /// Only changes at or after this time (RFC 3339).
        since: Query<Option<DateTime<Utc>>>,
        /// Only changes before this time (RFC 3339).
        until: Query<Option<DateTime<Utc>>>,
        /// The `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Page size, 1 to 500; 50 when absent.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
    ) -> Result<HistoryResponse, Fails<Listing>> {
        refuse_unknown_parameters(request, HISTORY_PARAMETERS)?;
        let (workspace, role) = caller.workspace_named(workspace_id.0.as_deref(), Role::Viewer)?;
        let own = Owner::User(caller.sub().to_owned()).to_string();
        let owner = match owner.0 {
            Some(owner) if Owner::parse(&owner).is_none() => {
                return Err(
                    ApiError::invalid_field("owner", "must be user:<sub> or workspace").into(),
                )
            }
            Some(owner) if role < Role::Admin && owner != own => {
                return Err(ApiError::forbidden(
                    "only admins and owners may read other owners' history",
                )
                .into())
            }
            Some(owner) => Some(owner),
            None if role < Role::Admin => Some(own),
            None => None,
        };
        let event_types: Vec<String> = event_type
            .0
            .map(|raw| {
                raw.split(',')
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(unknown) = event_types
            .iter()
            .find(|t| !ConfigEvent::NAMES.contains(&t.as_str()))
        {
            return Err(ApiError::invalid_field(
                "type",
                format!(
                    "unknown event type \"{unknown}\"; known types: {}",
                    ConfigEvent::NAMES.join(", ")
                ),
            )
            .into());
        }
        let provider = provider
            .0
            .map(|raw| {
                Provider::parse(raw.as_str())
                    .map(|provider| provider.as_str().to_owned())
                    .map_err(|error| ApiError::invalid_value("provider", error))
            })
            .transpose()?;
        let page = state
            .queries
            .history(&HistoryFilter {
                workspace: workspace.to_string(),
                owner,
                event_types,
                credential: credential.0,
                provider,
                actor: actor.0,
                since: since.0,
                until: until.0,
                cursor: cursor.0,
                limit: limit.0.unwrap_or(50),
            })
            .await?;
        Ok(HistoryResponse::Ok(Json(HistoryPageBody {
            events: page
                .entries
                .into_iter()
                .map(HistoryEvent::try_from)
                .collect::<Result<_, _>>()?,
            next_cursor: page.next_cursor,
        })))
    }
}

const HISTORY_PARAMETERS: &[&str] = &[
    "workspaceId",
    "owner",
    "type",
    "credential",
    "provider",
    "actor",
    "since",
    "until",
    "cursor",
    "limit",
];

/// A filter the operation does not know would otherwise look applied while it was not.
fn refuse_unknown_parameters(request: &poem::Request, known: &[&str]) -> Result<(), ApiError> {
    let query = request.uri().query().unwrap_or_default();
    for (name, _) in url::form_urlencoded::parse(query.as_bytes()) {
        if !known.contains(&name.as_ref()) {
            // Named back only when it looks like a parameter name (letters and `_`, as every
            // one here is): a key pasted into the query (`sk-proj-…`) must not come back.
            let plain =
                name.len() <= 32 && name.chars().all(|c| c.is_ascii_alphabetic() || c == '_');
            let field = if plain { name.as_ref() } else { "query" };
            return Err(ApiError::invalid_field(
                field,
                format!(
                    "is not a parameter of this operation; known: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

impl poem_openapi::types::Example for NameAvailability {
    fn example() -> Self {
        NameAvailability {
            name: "Production OpenAI".into(),
            available: true,
        }
    }
}

impl poem_openapi::types::Example for EncryptionKey {
    fn example() -> Self {
        EncryptionKey {
            key_version: 1,
            algorithm: "RSA-OAEP-256".into(),
            pem: "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA…\n-----END PUBLIC KEY-----\n"
                .into(),
            jwk: Jwk {
                kty: "RSA".into(),
                key_use: "enc".into(),
                alg: "RSA-OAEP-256".into(),
                kid: "aimc-rsa-acme:v1".into(),
                n: "ueiKQAHSYHqrnP5vTGiFzwZkrfzRkz0epcfXUb4rFi8…".into(),
                e: "AQAB".into(),
            },
        }
    }
}

impl poem_openapi::types::Example for HistoryPageBody {
    fn example() -> Self {
        HistoryPageBody {
            events: vec![history::example()],
            next_cursor: Some("eyJiZWZvcmUiOjQxfQ".into()),
        }
    }
}
