//! Per-request plumbing: the SERVER span, request id, trace id, body limit, metrics and one log
//! line per request.

use std::sync::Arc;

use opentelemetry::trace::TraceContextExt;
use poem::http::uri::Authority;
use poem::http::{HeaderValue, Method, Version};
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::problem::{framework_error_response, ApiError};
use crate::routes::RouteTemplates;
use crate::state::RequestLimits;

/// Bodies above this are refused with 413 before any handler runs.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Marks a response that must not be sent: the server closes the connection instead. For a
/// client that stalled mid-body, which is no longer listening for an answer it could use.
#[derive(Debug, Clone, Copy)]
pub struct CloseConnection;

/// Identifies a request in logs, events and responses.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// The W3C trace id: the caller's (`traceparent`) when given, else one minted here.
    pub trace_id: String,
    /// The request's `Idempotency-Key`, recorded with the events it causes.
    pub idempotency_key: Option<String>,
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

fn caller_request_id(request: &Request) -> Option<String> {
    header(request, "x-request-id")
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
}

/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`
fn caller_trace_id(request: &Request) -> Option<String> {
    let traceparent = header(request, "traceparent")?;
    let mut parts = traceparent.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    (trace_id.len() == 32
        && trace_id.chars().all(|c| c.is_ascii_hexdigit())
        && trace_id != "00000000000000000000000000000000")
        .then(|| trace_id.to_ascii_lowercase())
}

/// Wraps every route: the request's SERVER span (continuing the caller's W3C trace when spans
/// are exported), its request id, the body limit, its metrics and one log line.
pub struct RequestPlumbing {
    pub metrics: Arc<Metrics>,
    pub routes: Arc<RouteTemplates>,
    pub limits: RequestLimits,
}

impl<E: Endpoint> Middleware<E> for RequestPlumbing {
    type Output = RequestPlumbingEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequestPlumbingEndpoint {
            inner,
            metrics: self.metrics.clone(),
            routes: self.routes.clone(),
            limits: self.limits,
        }
    }
}

pub struct RequestPlumbingEndpoint<E> {
    inner: E,
    metrics: Arc<Metrics>,
    routes: Arc<RouteTemplates>,
    limits: RequestLimits,
}

impl<E: Endpoint> Endpoint for RequestPlumbingEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> poem::Result<Response> {
        let started = std::time::Instant::now();
        let method = semconv_method(request.method());
        let span = server_span(&request, method);
        let caller = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&opentelemetry_http::HeaderExtractor(request.headers()))
        });
        let _ = span.set_parent(caller);
        let exported = span.context();
        let exported_trace = exported.span().span_context().clone();
        // The exported trace id is the one events record, so a trace and the history meet.
        let trace_id = if exported_trace.is_valid() {
            exported_trace.trace_id().to_string()
        } else {
            caller_trace_id(&request).unwrap_or_else(|| Uuid::new_v4().simple().to_string())
        };
        let context = RequestContext {
            request_id: caller_request_id(&request).unwrap_or_else(|| Uuid::new_v4().to_string()),
            trace_id,
            idempotency_key: crate::idempotency::key_of(&request),
        };
        span.record("request_id", context.request_id.as_str());
        span.record("trace_id", context.trace_id.as_str());
        let request_id = context.request_id.clone();
        let limits = self.limits;
        let response = async {
            match tokio::time::timeout(limits.body_read, read_body(&mut request)).await {
                Ok(Ok(())) => {}
                Ok(Err(too_large)) => return too_large.into_response(),
                Err(_) => {
                    tracing::info!("the body did not arrive in time; closing the connection");
                    let mut response = Response::default();
                    response.set_status(poem::http::StatusCode::REQUEST_TIMEOUT);
                    response.set_data(CloseConnection);
                    return response;
                }
            }
            request.extensions_mut().insert(context);
            // The deadline starts once the request is read: it bounds the service's own work.
            let deadline = tokio::time::Instant::now() + limits.deadline;
            match aimc_domain::deadline::within(deadline, self.inner.call(request)).await {
                Ok(response) => response.into_response(),
                Err(error) => error_response(error),
            }
        }
        .instrument(span.clone())
        .await;
        let status = response.status();
        let route = self.routes.matched(&response);
        self.metrics.observe(
            route,
            method,
            status.as_u16(),
            started.elapsed().as_secs_f64(),
        );
        // The route is known only once the router has answered, after the span started.
        let name = match (method, route) {
            ("_OTHER", Some(route)) => format!("HTTP {route}"),
            ("_OTHER", None) => "HTTP".to_owned(),
            (method, Some(route)) => format!("{method} {route}"),
            (method, None) => method.to_owned(),
        };
        exported.span().update_name(name);
        if let Some(route) = route {
            span.record("http.route", route);
        }
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("error.type", status.as_str());
            span.record("otel.status_code", "error");
        }
        span.in_scope(|| {
            tracing::info!(
                status = i64::from(status.as_u16()),
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "request finished"
            )
        });
        let mut response = response;
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", value);
        }
        Ok(response)
    }
}

/// The answer to an error raised by a route or an extractor: its problem document, with the
/// route's marks (operation, path pattern) carried over for the metrics.
pub(crate) fn error_response(error: poem::Error) -> Response {
    let operation = error.data::<poem_openapi::OperationId>().copied();
    let pattern = error.data::<poem::PathPattern>().cloned();
    let mut response = framework_error_response(error);
    if let Some(operation) = operation {
        response.set_data(operation);
    }
    if let Some(pattern) = pattern {
        response.set_data(pattern);
    }
    response
}

/// The method as OpenTelemetry's HTTP conventions name it: one of the known methods, or
/// `_OTHER`, so a client cannot mint span names or label values.
fn semconv_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// The request's SERVER span, with the attributes of OpenTelemetry's HTTP server conventions
/// that are known before routing; the rest are recorded once the route has answered. The path
/// only: query strings are the caller's business, not the trace's.
fn server_span(request: &Request, method: &'static str) -> tracing::Span {
    let authority = header(request, "host").and_then(|host| host.parse::<Authority>().ok());
    let protocol = match request.version() {
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    };
    tracing::info_span!(
        "request",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.request.method_original = (method == "_OTHER").then(|| request.method().as_str()),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        url.path = request.uri().path(),
        url.scheme = request.scheme().as_str(),
        server.address = authority.as_ref().map(Authority::host),
        server.port = authority.as_ref().and_then(Authority::port_u16).map(i64::from),
        network.protocol.version = protocol,
        error.type = tracing::field::Empty,
        request_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        sub = tracing::field::Empty,
    )
}

/// Reads the body, refusing one over [`MAX_BODY_BYTES`] by its declared length or by reading at
/// most that much. Read whole here, so that a slow body is bounded by one timeout rather than
/// holding a handler, its connections and its locks while it trickles in.
async fn read_body(request: &mut Request) -> Result<(), ApiError> {
    let declared = header(request, "content-length").and_then(|length| length.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(ApiError::payload_too_large());
    }
    let body = request.take_body();
    let bytes = body
        .into_bytes_limit(MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::payload_too_large())?;
    request.set_body(Body::from_bytes(bytes));
    Ok(())
}
