//! `Idempotency-Key` on every write: a retried request is answered with the first one's answer
//! and changes nothing more.
//!
//! A client that lost its connection cannot know whether its write was applied; retrying
//! without a key may apply it twice (a second credential). With a key, per caller:
//!
//! - the first request claims the key, is answered as usual, and its answer is kept;
//! - a retry with the same method, path, workspace and body gets that answer again (marked
//!   `Idempotent-Replayed: true`), while it is still being answered a 409;
//! - the same key with another request is a 422;
//! - a 5xx keeps nothing (the log is left untouched by one), so the retry is answered anew;
//! - when the process answering the first request stopped after its events were committed but
//!   before its answer was kept, the events carry the key: a retry is told it was applied (409)
//!   rather than applied again.
//!
//! Keys and answers are kept 24 hours ([`aimc_store::KEPT_FOR`]).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use aimc_store::{Claim, StoredAnswer};
use poem::http::{HeaderValue, Method};
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromParameter, ParseResult, Type};
use sha2::{Digest, Sha256};

use crate::families::refusal_at;
use crate::problem::ApiError;
use crate::request_context::error_response;
use crate::state::AppState;

pub const HEADER: &str = "Idempotency-Key";
const MAX_KEY_BYTES: usize = 255;
const KEY_RULE: &str = "must be 1 to 255 visible ASCII characters, such as a UUID";
/// Headers of an answer that belong to it, and so are replayed with it.
const KEPT_HEADERS: [&str; 4] = [
    "content-type",
    "location",
    "retry-after",
    "www-authenticate",
];

fn is_valid(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The request's key, when it sends a valid one on a write.
pub(crate) fn key_of(request: &Request) -> Option<String> {
    if !is_write(request.method()) {
        return None;
    }
    let key = request.headers().get(HEADER)?.to_str().ok()?;
    is_valid(key).then(|| key.to_owned())
}

fn is_write(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::DELETE)
}

/// The header as a parameter of every write, so the spec documents it and generated clients
/// can send it; [`Idempotency`] acts on it before the handler runs, and a malformed one is
/// refused by the parameter's parsing, in the family's own error shape.
pub struct IdempotencyKey;

impl Type for IdempotencyKey {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            min_length: Some(1),
            max_length: Some(MAX_KEY_BYTES),
            pattern: Some("^[!-~]+$".into()),
            ..MetaSchema::new("string")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ParseFromParameter for IdempotencyKey {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        if is_valid(value) {
            Ok(IdempotencyKey)
        } else {
            Err(ParseError::custom(KEY_RULE))
        }
    }
}

/// Answers keyed writes once; see the module's documentation.
pub struct Idempotency {
    pub state: Arc<AppState>,
    /// How long a claimed key may go unanswered before its request counts as abandoned by a
    /// process that stopped: longer than any request can take.
    pub abandoned_after: Duration,
}

impl<E: Endpoint> Middleware<E> for Idempotency {
    type Output = IdempotencyEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        IdempotencyEndpoint {
            inner,
            state: self.state.clone(),
            abandoned_after: self.abandoned_after,
        }
    }
}

pub struct IdempotencyEndpoint<E> {
    inner: E,
    state: Arc<AppState>,
    abandoned_after: Duration,
}

impl<E: Endpoint> IdempotencyEndpoint<E> {
    /// The verified caller and the key, for a keyed write; anything else (no key, a malformed
    /// one, no valid token) goes to the handler, which refuses what needs refusing.
    async fn keyed(&self, request: &Request) -> Option<(String, String)> {
        let key = key_of(request)?;
        let authorization = request.headers().get("authorization")?.to_str().ok()?;
        let (scheme, token) = authorization.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let principal = self.state.auth.verify(token.trim()).await.ok()?;
        Some((principal.sub, key))
    }

    async fn answer(&self, request: Request) -> Response {
        match self.inner.call(request).await {
            Ok(response) => response.into_response(),
            Err(error) => error_response(error),
        }
    }
}

/// What makes two requests the same request.
fn fingerprint(request: &Request, body: &[u8]) -> Vec<u8> {
    let mut digest = Sha256::new();
    for part in [
        request.method().as_str().as_bytes(),
        request
            .uri()
            .path_and_query()
            .map_or(b"".as_slice(), |path| path.as_str().as_bytes()),
        request
            .headers()
            .get("x-workspace-id")
            .map_or(b"".as_slice(), HeaderValue::as_bytes),
        body,
    ] {
        // Length-prefixed, so no two different requests run together into the same bytes.
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    digest.finalize().to_vec()
}

fn replay(answer: StoredAnswer) -> Response {
    let mut response = Response::builder()
        .status(poem::http::StatusCode::from_u16(answer.status).unwrap_or_default())
        .header("idempotent-replayed", "true");
    for (name, value) in &answer.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    response.body(answer.body)
}

impl<E: Endpoint> Endpoint for IdempotencyEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> poem::Result<Response> {
        // A key that is not text would be dropped by the parameter's parsing, and the write
        // applied without the protection its client asked for.
        let unreadable = is_write(request.method())
            && request
                .headers()
                .get(HEADER)
                .is_some_and(|key| key.to_str().is_err());
        if unreadable {
            let error = ApiError::invalid_field(HEADER, KEY_RULE);
            return Ok(refusal_at(request.uri().path(), error));
        }
        let Some((caller, key)) = self.keyed(&request).await else {
            return Ok(self.answer(request).await);
        };
        // Already read whole by the request plumbing, so this only takes it out and back.
        let body = request.take_body().into_bytes().await.unwrap_or_default();
        let fingerprint = fingerprint(&request, &body);
        request.set_body(Body::from_bytes(body));
        let path = request.uri().path().to_owned();
        let keys = &self.state.idempotency;
        let refused = |error: ApiError| Ok(refusal_at(&path, error));
        match keys
            .claim(&caller, &key, &fingerprint, self.abandoned_after)
            .await
        {
            Ok(Claim::Fresh) => {}
            Ok(Claim::Answered(answer)) => return Ok(replay(answer)),
            Ok(Claim::Mismatch) => return refused(ApiError::idempotency_key_reused()),
            Ok(Claim::InProgress) => {
                return refused(ApiError::conflict(
                    "a request with this Idempotency-Key is still being answered; retry once it is",
                ))
            }
            Ok(Claim::AppliedAnswerLost) => {
                return refused(ApiError::conflict(
                    "the request with this Idempotency-Key was applied, but its answer was lost \
                     when the service stopped; read the resource to see the outcome",
                ))
            }
            Err(error) => return refused(error.into()),
        }

        let response = self.answer(request).await;
        let (parts, body) = response.into_parts();
        let body = body.into_bytes().await.unwrap_or_default();
        let kept = if parts.status.is_server_error() {
            keys.release(&caller, &key).await
        } else {
            let answer = StoredAnswer {
                status: parts.status.as_u16(),
                headers: KEPT_HEADERS
                    .iter()
                    .filter_map(|name| {
                        let value = parts.headers.get(*name)?.to_str().ok()?;
                        Some(((*name).to_owned(), value.to_owned()))
                    })
                    .collect(),
                body: body.to_vec(),
            };
            keys.answered(&caller, &key, &answer).await
        };
        if let Err(error) = kept {
            // The answer still goes out; a retry finds the key claimed and, once it counts as
            // abandoned, learns from the log whether the request was applied.
            tracing::warn!(%error, "the answer to a keyed request was not kept");
        }
        Ok(Response::from_parts(parts, Body::from_bytes(body)))
    }
}
