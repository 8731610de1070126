//! The HTTP API: one module per API family plus the shared endpoints, over one domain.

// `ApiError` carries its problem document inline so each variant maps to one documented
// response; it is only built on the error path, where its size costs nothing that matters.
#![allow(clippy::result_large_err)]

pub mod auth;
mod caller;
mod credential_test;
mod families;
mod idempotency;
mod metrics;
mod operations;
mod plain_key;
mod problem;
mod provider_catalogue;
mod provider_probe;
mod published_keys;
mod request_body;
mod request_context;
mod resolution;
pub mod rotation;
mod routes;
pub mod shredding;
mod spelling;
mod state;
mod tags;

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;

pub use auth::{mint_hs256_token, AuthConfigError, AuthSettings, Authenticator, Role};
pub use idempotency::IdempotencyKey;
pub use metrics::Metrics;
pub use problem::{ApiError, Problem};
pub use provider_catalogue::SEED_002_PROVIDERS;
pub use provider_probe::{is_private, CheckOutcome, ProviderChecker};
pub use request_context::{CloseConnection, RequestContext, MAX_BODY_BYTES};
use routes::RouteTemplates;
pub use state::{AppState, RequestLimits, SystemKey};
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
    shared::KeyRotationApi,
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
            shared::KeyRotationApi,
            operations::OperationsApi,
        ),
        "aimc",
        env!("CARGO_PKG_VERSION"),
    )
    // Relative, so Swagger UI's "Try it out" calls whichever deployment served the document.
    .server(poem_openapi::ServerObject::new("/").description("the service serving this document"))
    .license(
        poem_openapi::LicenseObject::new("Apache-2.0")
            .url("https://www.apache.org/licenses/LICENSE-2.0"),
    )
    .description(
        "AI provider settings for people and workspaces: providers, models, system prompt and \
         API keys, encrypted by Vault transit and never returned in plain text.",
    )
}

/// The OpenAPI document, as committed under `openapi/`, served at `/openapi.json` and shown by
/// Swagger UI.
pub fn openapi_json() -> String {
    finish_spec(&service().spec())
}

/// What poem-openapi cannot say itself: the probes need no token, said with the explicit
/// empty `security` that linters ask for. Edited as text, so the document keeps its order.
fn finish_spec(generated: &str) -> String {
    let mut spec = generated.to_owned();
    for probe in ["healthz", "readyz"] {
        let marker = format!("\"operationId\": \"{probe}\"");
        if let Some(at) = spec.find(&marker) {
            let line_start = spec[..at].rfind('\n').map_or(0, |index| index + 1);
            let indent = spec[line_start..at].to_owned();
            spec.insert_str(at + marker.len(), &format!(",\n{indent}\"security\": []"));
        }
    }
    spec
}

/// Routes outside the OpenAPI document; none has a path parameter.
const MOUNTS: [&str; 4] = ["/openapi.json", "/docs", "/metrics", "/settings"];

/// What the settings pages offer in their selects, read from the API document so the pages
/// and the API cannot disagree about a service, provider or model type.
fn settings_catalogue(document: &str) -> serde_json::Value {
    let spec: serde_json::Value = serde_json::from_str(document).unwrap_or_default();
    let values = |schema: &str| spec["components"]["schemas"][schema]["enum"].clone();
    serde_json::json!({
        "catalogue": {
            "keyServices": values("KeyService"),
            "modelProviders": values("ModelProvider"),
            "modelKinds": values("ModelKind"),
            "settingsProviders": values("SettingsProvider"),
            "personalDefaultModels": SEED_002_PROVIDERS
                .iter()
                .map(|(name, _, model)| (name.to_string(), serde_json::Value::from(*model)))
                .collect::<serde_json::Map<_, _>>(),
        }
    })
}

/// Beyond its deadline, what a request may still spend (a credential test's call to the
/// provider) before a claimed `Idempotency-Key` left unanswered counts as abandoned.
const ABANDONED_BEYOND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Every route of the service, counted in `metrics`.
pub fn app(state: Arc<AppState>, metrics: Arc<Metrics>) -> impl Endpoint {
    let api = service();
    let generated = api.spec();
    let routes = Arc::new(RouteTemplates::new(&generated, &MOUNTS));
    let document = finish_spec(&generated);
    // Swagger UI embeds the document it shows: the finished one, not poem-openapi's own.
    let docs_page = api.swagger_ui_html().replace(&generated, &document);
    let pages =
        aimc_web::SettingsPages::new(settings_catalogue(&document), state.dev_tokens.clone());
    let docs = poem::endpoint::make_sync(move |_| poem::web::Html(docs_page.clone()));
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(document.clone())
    });
    let exposition = metrics.clone();
    let limits = state.limits;
    Route::new()
        .nest("/", api)
        .nest(MOUNTS[1], docs)
        .at(MOUNTS[0], spec)
        .nest(MOUNTS[3], pages)
        .at(
            MOUNTS[2],
            poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("text/plain; version=0.0.4")
                    .body(exposition.render())
            }),
        )
        .data(state.auth.clone())
        .data(state.clone())
        .with(idempotency::Idempotency {
            abandoned_after: ABANDONED_BEYOND_DEADLINE + state.limits.deadline,
            state,
        })
        .with(request_context::RequestPlumbing {
            metrics,
            routes,
            limits,
        })
}
