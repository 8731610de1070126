//! Seed 003's bodies.

use chrono::{DateTime, Utc};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde::Deserialize;

use crate::spelling::{KeyService, Spelled};

#[derive(Object, Deserialize)]
#[oai(rename = "CreateApiKeyRequest", deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub service: Spelled<KeyService>,
    /// The key. Stored encrypted; only its hint is ever shown.
    #[oai(validator(max_length = 4096))]
    pub api_key: String,
}

#[derive(Object, Deserialize)]
#[oai(rename = "UpdateApiKeyRequest", deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// The new key.
    #[oai(validator(max_length = 4096))]
    pub api_key: String,
}

#[derive(Debug, Object)]
#[oai(rename = "ApiKeyCreated", example)]
pub struct Created {
    pub id: i64,
    pub service: Spelled<KeyService>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(rename = "ApiKey", example)]
pub struct Listed {
    pub id: i64,
    pub service: Spelled<KeyService>,
    /// The key masked to its first three and last four characters (`sk-...1234`).
    pub last_4_chars: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(rename = "ApiKeyUpdated", example)]
pub struct Updated {
    pub id: i64,
    pub service: Spelled<KeyService>,
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

/// The `key_id` path parameter: an int64 in the spec, parsed here so that a refusal names
/// `key_id` rather than the framework's internal name for the path segment (`param0`).
#[derive(Debug, Clone, Copy)]
pub struct KeyNumber(pub i64);

impl poem_openapi::types::Type for KeyNumber {
    const IS_REQUIRED: bool = true;
    type RawValueType = i64;
    type RawElementValueType = i64;

    fn name() -> std::borrow::Cow<'static, str> {
        <i64 as poem_openapi::types::Type>::name()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        <i64 as poem_openapi::types::Type>::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&i64> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a i64> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl poem_openapi::types::ParseFromParameter for KeyNumber {
    fn parse_from_parameter(value: &str) -> poem_openapi::types::ParseResult<Self> {
        value
            .parse::<i64>()
            .ok()
            .filter(|number| *number > 0)
            .map(KeyNumber)
            .ok_or_else(|| {
                poem_openapi::types::ParseError::custom(crate::request_body::field_message(
                    "key_id",
                    "must be a positive integer",
                ))
            })
    }
}

fn example_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_764_669_600, 0).unwrap_or_default()
}

impl poem_openapi::types::Example for CreateRequest {
    fn example() -> Self {
        CreateRequest {
            service: Spelled::new("OPENAI"),
            api_key: "sk-proj-xxxxxxxxxxxx1234".into(),
        }
    }
}

impl poem_openapi::types::Example for UpdateRequest {
    fn example() -> Self {
        UpdateRequest {
            api_key: "sk-proj-yyyyyyyyyyyy5678".into(),
        }
    }
}

impl poem_openapi::types::Example for Created {
    fn example() -> Self {
        Created {
            id: 1,
            service: Spelled::new("OPENAI"),
            created_at: example_time(),
        }
    }
}

impl poem_openapi::types::Example for Listed {
    fn example() -> Self {
        Listed {
            id: 1,
            service: Spelled::new("OPENAI"),
            last_4_chars: "sk-...1234".into(),
            created_at: example_time(),
        }
    }
}

impl poem_openapi::types::Example for Updated {
    fn example() -> Self {
        Updated {
            id: 1,
            service: Spelled::new("OPENAI"),
            updated_at: example_time(),
        }
    }
}
