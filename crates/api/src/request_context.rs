//! Per-request plumbing: request id, trace id, body limit, a span and one log line per request.

use std::sync::Arc;

use poem::http::HeaderValue;
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response};
use tracing::Instrument;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::problem::{framework_error_response, ApiError};

/// Bodies above this are refused with 413 before any handler runs.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Identifies a request in logs, events and responses.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// The W3C trace id: the caller's (`traceparent`) when given, else one minted here.
    pub trace_id: String,
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

pub struct RequestPlumbing(pub Arc<Metrics>);

impl<E: Endpoint> Middleware<E> for RequestPlumbing {
    type Output = RequestPlumbingEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequestPlumbingEndpoint {
            inner,
            metrics: self.0.clone(),
        }
    }
}

pub struct RequestPlumbingEndpoint<E> {
    inner: E,
    metrics: Arc<Metrics>,
}

impl<E: Endpoint> Endpoint for RequestPlumbingEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> poem::Result<Response> {
        let context = RequestContext {
            request_id: caller_request_id(&request).unwrap_or_else(|| Uuid::new_v4().to_string()),
            trace_id: caller_trace_id(&request)
                .unwrap_or_else(|| Uuid::new_v4().simple().to_string()),
        };
        // The path only: query strings are the caller's business, not the log's.
        let span = tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = %context.request_id,
            trace_id = %context.trace_id,
            sub = tracing::field::Empty,
            status = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let request_id = context.request_id.clone();
        let (path, method) = (
            request.uri().path().to_owned(),
            request.method().to_string(),
        );
        let response = async {
            if let Err(too_large) = limit_body(&mut request).await {
                return too_large.into_response();
            }
            request.extensions_mut().insert(context);
            match self.inner.call(request).await {
                Ok(response) => response.into_response(),
                Err(error) => framework_error_response(error),
            }
        }
        .instrument(span.clone())
        .await;
        let status = response.status().as_u16();
        self.metrics
            .observe(&path, &method, status, started.elapsed().as_secs_f64());
        span.record("status", status);
        span.in_scope(|| {
            tracing::info!(
                status,
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

/// Refuses bodies over [`MAX_BODY_BYTES`], by their declared length or, when they declare
/// none, by reading at most that much.
async fn limit_body(request: &mut Request) -> Result<(), ApiError> {
    let declared = header(request, "content-length").and_then(|length| length.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(ApiError::payload_too_large());
    }
    if declared.is_none() {
        let body = request.take_body();
        let bytes = body
            .into_bytes_limit(MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::payload_too_large())?;
        request.set_body(Body::from_bytes(bytes));
    }
    Ok(())
}
