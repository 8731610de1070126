//! Logs as JSON lines, spans exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::configuration::LogFormat;

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

pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<Telemetry> {
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
    let provider = if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .context("Failed to build the OTLP exporter")?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("aimc")
                    .build(),
            )
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Some(provider)
    } else {
        None
    };
    let otel = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("aimc")));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .context("Failed to install the tracing subscriber")?;
    Ok(Telemetry { provider })
}
