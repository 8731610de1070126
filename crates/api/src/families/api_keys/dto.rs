//! Seed 003's bodies.

use chrono::{DateTime, Utc};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde::Deserialize;

#[derive(Object, Deserialize)]
#[oai(rename = "CreateApiKeyRequest", deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The service, e.g. `OPENAI` or `ANTHROPIC` (any capitalisation).
    #[oai(validator(max_length = 64))]
    pub service: String,
    /// The key. Stored encrypted; only its hint is ever shown.
    #[oai(validator(max_length = 4096))]
    pub api_key: String,
}

#[derive(Object, Deserialize)]
#[oai(rename = "UpdateApiKeyRequest", deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// The new key.
    #[oai(validator(max_length = 4096))]
    pub api_key: String,
}

#[derive(Debug, Object)]
#[oai(rename = "ApiKeyCreated")]
pub struct Created {
    pub id: i64,
    pub service: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(rename = "ApiKey")]
pub struct Listed {
    pub id: i64,
    pub service: String,
    /// The key masked to its first three and last four characters (`sk-...1234`).
    pub last_4_chars: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(rename = "ApiKeyUpdated")]
pub struct Updated {
    pub id: i64,
    pub service: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum CreateResponse {
    /// Stored.
    #[oai(status = 201)]
    Created(Json<Created>),
}

#[derive(ApiResponse)]
pub enum ListResponse {
    /// The caller's keys, newest first.
    #[oai(status = 200)]
    Ok(Json<Vec<Listed>>),
}

#[derive(ApiResponse)]
pub enum UpdateResponse {
    /// Replaced.
    #[oai(status = 200)]
    Ok(Json<Updated>),
}

#[derive(ApiResponse)]
pub enum DeleteResponse {
    /// Deleted.
    #[oai(status = 204)]
    NoContent,
}
