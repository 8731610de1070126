//! The HTTP API: one module per API family plus the shared endpoints, over one domain.

// `ApiError` carries its problem document inline so each variant maps to one documented
// response; it is only built on the error path, where its size costs nothing that matters.
#![allow(clippy::result_large_err)]

pub mod auth;
mod caller;
mod credential_test;
mod families;
mod metrics;
mod operations;
mod plain_key;
mod problem;
mod provider_catalogue;
mod provider_probe;
mod request_body;
mod request_context;
mod resolution;
mod routes;
mod state;
mod tags;

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;

pub use auth::{mint_hs256_token, AuthConfigError, AuthSettings, Authenticator, Role};
pub use metrics::Metrics;
pub use problem::{ApiError, Problem};
pub use provider_catalogue::SEED_002_PROVIDERS;
pub use provider_probe::{is_private, CheckOutcome, ProviderChecker};
pub use request_context::{RequestContext, MAX_BODY_BYTES};
use routes::RouteTemplates;
pub use state::{AppState, SystemKey};
pub use tags::ApiTags;

use families::{ai_llm, ai_model_config, api_keys, settings, shared, user_api_keys};

type Apis = (
    ai_model_config::AiModelConfigApi,
    ai_llm::AiLlmApi,
    user_api_keys::UserApiKeysApi,
    api_keys::ApiKeysApi,
    settings::SettingsApi,
    shared::ResolveApi,
    shared::SharedApi,
    operations::OperationsApi,
);

fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            ai_model_config::AiModelConfigApi,
            ai_llm::AiLlmApi,
            user_api_keys::UserApiKeysApi,
            api_keys::ApiKeysApi,
            settings::SettingsApi,
            shared::ResolveApi,
            shared::SharedApi,
            operations::OperationsApi,
        ),
        "aimc",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "AI provider settings for people and workspaces: providers, models, system prompt and \
         API keys, encrypted by Vault transit and never returned in plain text.",
    )
}

/// The OpenAPI document, as committed under `openapi/`.
pub fn openapi_json() -> String {
    service().spec()
}

/// Routes outside the OpenAPI document; none has a path parameter.
const MOUNTS: [&str; 3] = ["/openapi.json", "/docs", "/metrics"];

/// Every route of the service, counted in `metrics`.
pub fn app(state: Arc<AppState>, metrics: Arc<Metrics>) -> impl Endpoint {
    let api = service();
    let routes = Arc::new(RouteTemplates::new(&api.spec(), &MOUNTS));
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    let exposition = metrics.clone();
    Route::new()
        .nest("/", api)
        .nest(MOUNTS[1], docs)
        .at(MOUNTS[0], spec)
        .at(
            MOUNTS[2],
            poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("text/plain; version=0.0.4")
                    .body(exposition.render())
            }),
        )
        .data(state.auth.clone())
        .data(state)
        .with(request_context::RequestPlumbing { metrics, routes })
}
