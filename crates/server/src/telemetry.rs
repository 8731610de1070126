//! Logs as JSON lines, spans exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or its
//! traces-only form) is set. The exporter and the resource read the standard `OTEL_*`
//! variables: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_BSP_*` and the rest.

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::configuration::LogFormat;

const SERVICE_NAME: &str = "service.name";
const SERVICE_VERSION: &str = "service.version";

/// Libraries that would otherwise be chatty at `info`, and HTTP client internals that have no
/// business in our logs at any level.
// rustify logs every expected Vault 400 (a client key that does not decrypt) as an ERROR; the
// keyring reports what matters itself.
const QUIET: &str =
    "sqlx=warn,rustify=off,vaultrs=warn,hyper=warn,hyper_util=warn,reqwest=warn,h2=warn";

/// Holds the exporter so spans are flushed on drop.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs [`subscriber`] for the whole process.
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<Telemetry> {
    let (subscriber, telemetry) = subscriber(filter, format)?;
    subscriber
        .try_init()
        .context("Failed to install the tracing subscriber")?;
    Ok(telemetry)
}

/// Logs filtered by `filter` (`AIMC_LOG`) in `format`, and spans exported over OTLP when the
/// environment asks for it. Apart from [`init`] for a caller that scopes it rather than
/// install it for the whole process: a test of the export, in a process other tests share.
pub fn subscriber(
    filter: &str,
    format: LogFormat,
) -> anyhow::Result<(impl Subscriber + Send + Sync + 'static, Telemetry)> {
    let filter =
        EnvFilter::try_new(format!("{filter},{QUIET}")).context("Failed to parse AIMC_LOG")?;
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().boxed(),
    };
    let exporting = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
    let provider = if exporting {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .context("Failed to build the OTLP exporter")?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource())
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Some(provider)
    } else {
        None
    };
    // The exported spans have a filter of their own: an operator who quietens the logs
    // (`AIMC_LOG=warn`) must not lose the traces, whose spans are all at info.
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("aimc"))
            .with_filter(EnvFilter::new(format!("info,{QUIET}")))
    });
    let subscriber = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel);
    Ok((subscriber, Telemetry { provider }))
}

/// What the SDK's detectors find (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), named `aimc`
/// where neither names the service, rather than the SDK's `unknown_service:<executable>`.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&Key::from_static_str(SERVICE_NAME))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    let mut resource = Resource::builder();
    if !named {
        resource = resource.with_service_name("aimc");
    }
    if detected
        .get(&Key::from_static_str(SERVICE_VERSION))
        .is_none()
    {
        resource =
            resource.with_attribute(KeyValue::new(SERVICE_VERSION, env!("CARGO_PKG_VERSION")));
    }
    resource.build()
}
