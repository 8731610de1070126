//! The groups operations are listed under in the spec and Swagger UI.

use poem_openapi::Tags;

#[derive(Tags)]
pub enum ApiTags {
    /// Family A (seed 000): a person's models, keys and system prompt.
    AiModelConfig,
    /// Family B (seed 001): a workspace's named LLM provider configurations.
    AiLlm,
    /// Family C (seed 002): a person's provider keys and model ids.
    UserApiKeys,
    /// Family D (seed 003): a person's numbered API keys.
    ApiKeys,
    /// Family E (seed 004): a workspace's provider keys and task assignments.
    Settings,
    /// Which provider, model and key serve a task.
    Resolve,
    /// The workspace key clients encrypt API keys with.
    Encryption,
    /// Who changed what, and when.
    Audit,
    /// Health and readiness.
    Operations,
}
