//! The groups operations are listed under in the spec and Swagger UI.

use poem_openapi::Tags;

#[derive(Tags)]
pub enum ApiTags {
    /// Your model configuration: the providers and models you use (each paid or free), their
    /// keys encrypted in the client before they are sent, and your assistant's system prompt.
    AiModelConfig,
    /// A workspace's named LLM provider configurations (endpoint, access key and secret),
    /// compatible with Flashback's `/ai/llm` API and its `{success, message}` bodies.
    AiLlm,
    /// Your own key and model id for Anthropic, OpenAI, OpenRouter and AWS Bedrock, each with
    /// a default model: the "custom user API keys" settings of chat front-ends.
    UserApiKeys,
    /// Your API keys, one per row with an integer id, service and last four characters, as an
    /// "API Keys" settings page lists them.
    ApiKeys,
    /// A workspace's provider keys (OpenAI, Gemini, Anthropic, OpenRouter, Ollama), their
    /// connection tests and task-to-model assignments, with FastAPI-style bodies (`{detail}`,
    /// 422 for an invalid body).
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
