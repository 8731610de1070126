//! The one place where failures become HTTP responses: RFC 9457 problem details.

use std::marker::PhantomData;

use aimc_domain::{DomainError, Service, ValueError};
use aimc_keyring::KeyringError;
use aimc_store::{CommandError, StoreError};
use poem::http::StatusCode;
use poem::IntoResponse;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

/// Seconds a client should wait before retrying when a dependency is down.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// A field that was refused, and why.
#[derive(Debug, Clone, Object)]
pub struct FieldError {
    /// Path of the field in the request, e.g. `models[1].provider`.
    pub field: String,
    pub message: String,
}

/// RFC 9457 problem details.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Problem {
    /// A URI identifying the problem type, `urn:aimc:problem:<slug>`.
    #[oai(rename = "type")]
    pub problem_type: String,
    /// Short, human-readable summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Explanation specific to this occurrence.
    pub detail: String,
    /// The fields that were refused when the problem is bad input; empty otherwise, and always
    /// present so that clients can read it without checking.
    pub errors: Vec<FieldError>,
}

/// Every error an operation can answer with.
#[derive(Debug, Clone, ApiResponse)]
pub enum ApiError {
    /// The request is malformed or a value is invalid; `errors` names the fields.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No valid bearer token: missing, malformed, expired, wrongly signed or for another audience.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The token does not grant this: the workspace is not in it, or the role or scope is too low.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// Nothing here for this caller.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The request conflicts with the current state.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// The body exceeds 64 KiB.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The `Idempotency-Key` was used before for a different request.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Unexpected failure; the cause is in the service's log under the request id.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// Postgres or Vault is unreachable; nothing was changed. Retry after the given seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
}

fn problem(
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: impl Into<String>,
    errors: Vec<FieldError>,
) -> Json<Problem> {
    Json(Problem {
        problem_type: format!("urn:aimc:problem:{slug}"),
        title: title.to_owned(),
        status: status.as_u16(),
        detail: detail.into(),
        errors,
    })
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest(problem(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
            vec![],
        ))
    }

    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        ApiError::BadRequest(problem(
            StatusCode::BAD_REQUEST,
            "invalid-field",
            "Invalid field",
            format!("{field}: {message}"),
            vec![FieldError { field, message }],
        ))
    }

    pub fn invalid_value(field: impl Into<String>, error: ValueError) -> Self {
        ApiError::invalid_field(field, error.to_string())
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ApiError::Unauthorized(
            problem(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                detail,
                vec![],
            ),
            "Bearer".to_owned(),
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::Forbidden(problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            detail,
            vec![],
        ))
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::NotFound(problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            detail,
            vec![],
        ))
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        ApiError::Conflict(problem(
            StatusCode::CONFLICT,
            "conflict",
            "Conflict",
            detail,
            vec![],
        ))
    }

    pub fn payload_too_large() -> Self {
        ApiError::PayloadTooLarge(problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            "the request body exceeds 65536 bytes",
            vec![],
        ))
    }

    /// The same `Idempotency-Key` with another method, path, workspace or body.
    pub fn idempotency_key_reused() -> Self {
        let message = "was used before with a different request; use a new key for a new request";
        ApiError::Unprocessable(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency key reused",
            format!("Idempotency-Key: {message}"),
            vec![FieldError {
                field: "Idempotency-Key".into(),
                message: message.into(),
            }],
        ))
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError::Unavailable(
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                detail,
                vec![],
            ),
            RETRY_AFTER_SECONDS,
        )
    }

    /// The cause goes to the log, never to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        ApiError::Internal(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "an unexpected error occurred; it has been logged with the request id",
            vec![],
        ))
    }

    /// The explanation given to the client.
    pub fn detail(&self) -> &str {
        match self {
            ApiError::BadRequest(p)
            | ApiError::Unauthorized(p, _)
            | ApiError::Forbidden(p)
            | ApiError::NotFound(p)
            | ApiError::Conflict(p)
            | ApiError::PayloadTooLarge(p)
            | ApiError::Unprocessable(p)
            | ApiError::Internal(p)
            | ApiError::Unavailable(p, _) => &p.0.detail,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// What a domain refusal is when a family has nothing more specific to say: each family's
/// error layer names its own fields first and falls back on this.
impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let detail = error.to_string();
        match error {
            DomainError::ConfigAlreadyExists
            | DomainError::CredentialExists
            | DomainError::CredentialChangedDuringTest
            | DomainError::NoFreeName => ApiError::conflict(detail),
            DomainError::ConfigNotFound
            | DomainError::CredentialNotFound(_)
            | DomainError::NoProviderKey { .. } => ApiError::not_found(detail),
            DomainError::DuplicateModel { .. }
            | DomainError::UndecryptableKey { .. }
            | DomainError::EmptyModelKey { .. }
            | DomainError::EmptyKey
            | DomainError::ProviderNotConfigured { .. }
            | DomainError::DuplicateTask { .. }
            | DomainError::KeyRequired { .. } => ApiError::bad_request(detail),
            DomainError::NameTaken { .. } => ApiError::invalid_field("name", detail),
            DomainError::Unavailable(Service::Keyring, reason) => {
                tracing::warn!(%reason, "keyring unavailable");
                ApiError::unavailable(
                    "the keyring (Vault) is unavailable; nothing was changed, retry later",
                )
            }
            DomainError::Unavailable(Service::Registry, reason) => {
                tracing::warn!(%reason, "database unavailable");
                ApiError::unavailable(
                    "the database is unavailable; nothing was changed, retry later",
                )
            }
            DomainError::ServiceFailed(service, reason) => {
                ApiError::internal(format!("{service:?} failed: {reason}"))
            }
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Domain(error) => error.into(),
            CommandError::Conflict { .. } => ApiError::conflict(error.to_string()),
            CommandError::StoreUnavailable(reason) => {
                tracing::warn!(%reason, "event store unavailable");
                ApiError::unavailable("the database is unavailable; the change may not have been applied, retry later")
            }
            CommandError::Busy(reason) => {
                tracing::warn!(%reason, "no turn to write before the deadline");
                ApiError::unavailable(
                    "other writes to the same settings took all of this request's time; \
                     nothing was changed, retry later",
                )
            }
            CommandError::Internal(reason) => ApiError::internal(reason),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "database unavailable");
                ApiError::unavailable("the database is unavailable, retry later")
            }
            StoreError::InvalidCursor => {
                ApiError::invalid_field("cursor", "is not a cursor this service issued")
            }
            StoreError::Internal(reason) => ApiError::internal(reason),
        }
    }
}

impl From<KeyringError> for ApiError {
    fn from(error: KeyringError) -> Self {
        match error {
            KeyringError::Unavailable(reason) => {
                tracing::warn!(%reason, "keyring unavailable");
                ApiError::unavailable(
                    "the keyring (Vault) is unavailable; nothing was changed, retry later",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

/// A refusal raised before a handler runs (by the caller extractor), kept typed inside the
/// `poem::Error` so that every family answers it in its own shape with the right status: a
/// family with its own bad-request handler would otherwise see only "bad request".
#[derive(Debug)]
pub struct Refusal(pub ApiError);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.detail())
    }
}

impl std::error::Error for Refusal {}

impl ApiError {
    /// As an extractor's error, which families B and E can turn back into this refusal.
    pub fn refusal(self) -> poem::Error {
        let status = self.status();
        poem::Error::new(Refusal(self), status)
    }
}

/// The refusal in an error raised before a handler ran: the caller extractor's own, the
/// security scheme's when the `Authorization` header is missing or not a bearer token, or a
/// path or query parameter that does not parse.
pub fn refusal_in(error: &poem::Error) -> Option<ApiError> {
    if let Some(Refusal(refusal)) = error.downcast_ref::<Refusal>() {
        return Some(refusal.clone());
    }
    if let Some(path) = error.downcast_ref::<poem_openapi::error::ParsePathError>() {
        let (field, message) =
            crate::request_body::field_of(&path.reason).unwrap_or(("path", "is not valid"));
        return Some(ApiError::invalid_field(field, message));
    }
    if let Some(param) = error.downcast_ref::<poem_openapi::error::ParseParamError>() {
        return Some(ApiError::invalid_field(
            param.name,
            parameter_message(&param.reason),
        ));
    }
    (error.status() == StatusCode::UNAUTHORIZED)
        .then(|| ApiError::unauthorized("a bearer token is required"))
}

/// A query or header parameter's refusal in words, without the framework's names for its
/// parsers (`failed to parse "string(date-time)"`).
fn parameter_message(reason: &str) -> String {
    if reason.contains("date-time") {
        return "must be an RFC 3339 time such as 2026-12-01T09:30:00Z; send a `+` offset as %2B"
            .to_owned();
    }
    let reason = reason
        .strip_prefix("failed to parse \"")
        .and_then(|rest| rest.split_once("\": "))
        .map_or(reason, |(_, ours)| ours);
    if let Some(bound) = reason.strip_prefix("verification failed. ") {
        return format!("is out of range ({bound})");
    }
    if reason.contains("invalid digit") || reason.contains("Invalid") {
        return "is not a valid value of its type".to_owned();
    }
    format!("is not valid: {reason}")
}

/// Turns errors raised before a handler runs (unparsable JSON, a missing field, no token, an
/// unknown route) into the same problem details as the handlers' own errors.
pub fn framework_error_response(error: poem::Error) -> poem::Response {
    if let Some(refusal) = refusal_in(&error).filter(|_| !error.is_from_response()) {
        return refusal.into_response();
    }
    if error.is_from_response() {
        return error.into_response();
    }
    let status = error.status();
    if let Some(payload) = error.downcast_ref::<poem_openapi::error::ParseRequestPayloadError>() {
        if let Some((field, message)) = crate::request_body::field_of(&payload.reason) {
            return ApiError::invalid_field(field, message).into_response();
        }
        return ApiError::bad_request(format!(
            "the body is not valid JSON for this operation: {}",
            payload.reason
        ))
        .into_response();
    }
    let detail = error.to_string();
    let api_error = match status {
        StatusCode::BAD_REQUEST => ApiError::bad_request(detail),
        StatusCode::UNAUTHORIZED => ApiError::unauthorized("a bearer token is required"),
        StatusCode::FORBIDDEN => ApiError::forbidden(detail),
        StatusCode::NOT_FOUND => ApiError::not_found(detail),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
        status if status.is_server_error() => ApiError::internal(detail),
        status => {
            // 405, 406, 415 and the like: keep the status, speak problem details.
            let body = problem(
                status,
                "http",
                status.canonical_reason().unwrap_or("Error"),
                detail,
                vec![],
            );
            return poem::Response::builder()
                .status(status)
                .content_type("application/problem+json")
                .body(
                    serde_json::to_vec(&serde_json::json!({
                        "type": body.0.problem_type,
                        "title": body.0.title,
                        "status": body.0.status,
                        "detail": body.0.detail,
                        "errors": [],
                    }))
                    .unwrap_or_default(),
                );
        }
    };
    api_error.into_response()
}

/// The error side of an operation whose response type documents every status it answers with
/// itself (families B and E, which speak their seeds' shapes): a refusal in that type, adding
/// nothing to the spec, so handlers can still use `?`.
pub struct Refused<R>(pub R);

impl<R: ApiResponse> ApiResponse for Refused<R> {
    fn meta() -> poem_openapi::registry::MetaResponses {
        poem_openapi::registry::MetaResponses {
            responses: Vec::new(),
        }
    }

    fn register(_registry: &mut poem_openapi::registry::Registry) {}
}

impl<R: IntoResponse> From<Refused<R>> for poem::Error {
    fn from(refused: Refused<R>) -> Self {
        poem::Error::from_response(refused.0.into_response())
    }
}

impl<R: From<ApiError>> From<ApiError> for Refused<R> {
    fn from(error: ApiError) -> Self {
        Refused(R::from(error))
    }
}

impl<R: From<ApiError>> From<StoreError> for Refused<R> {
    fn from(error: StoreError) -> Self {
        Refused(R::from(ApiError::from(error)))
    }
}

impl<R: From<ApiError>> From<CommandError> for Refused<R> {
    fn from(error: CommandError) -> Self {
        Refused(R::from(ApiError::from(error)))
    }
}

/// The statuses one kind of operation can answer with, as a type, so that each operation's
/// entry in the spec lists those and no others.
pub trait Statuses: Send + Sync + 'static {
    const LIST: &'static [u16];
}

macro_rules! statuses {
    ($($(#[$doc:meta])* $name:ident = [$($code:literal),*];)*) => {
        $(
            $(#[$doc])*
            pub struct $name;
            impl Statuses for $name {
                const LIST: &'static [u16] = &[$($code),*];
            }
        )*
    };
}

statuses! {
    /// A read that answers an empty result rather than 404.
    Listing = [400, 401, 403, 500, 503];
    /// A read of one thing that may not be there.
    Finding = [400, 401, 403, 404, 500, 503];
    /// A write with a body that needs nothing to exist already. Every write answers 422 when
    /// its `Idempotency-Key` was used for another request.
    Writing = [400, 401, 403, 409, 413, 422, 500, 503];
    /// A write with a body to something that may not be there.
    Changing = [400, 401, 403, 404, 409, 413, 422, 500, 503];
    /// A write without a body to something that may not be there.
    Removing = [400, 401, 403, 404, 409, 422, 500, 503];
    /// A write in families B and E that needs nothing to exist (a FastAPI-style invalid body
    /// is a 422 too; these families answer no 409 or 413).
    Validating = [400, 401, 403, 422, 500, 503];
    /// A write in families B and E to something that may not be there.
    Acting = [400, 401, 403, 404, 422, 500, 503];
}

/// A response type `R` documented with its successes and only the failures `S` lists: the same
/// body shapes, the statuses an operation can answer with.
pub struct Only<R, S>(pub R, PhantomData<S>);

impl<R, S> Only<R, S> {
    pub fn new(response: R) -> Self {
        Only(response, PhantomData)
    }
}

impl<R: ApiResponse, S: Statuses> ApiResponse for Only<R, S> {
    const BAD_REQUEST_HANDLER: bool = R::BAD_REQUEST_HANDLER;

    fn meta() -> poem_openapi::registry::MetaResponses {
        let mut meta = R::meta();
        meta.responses.retain(|response| {
            response
                .status
                .is_none_or(|status| status < 400 || S::LIST.contains(&status))
        });
        meta
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        R::register(registry);
    }

    fn from_parse_request_error(error: poem::Error) -> Self {
        Only::new(R::from_parse_request_error(error))
    }
}

impl<R: IntoResponse, S: Statuses> IntoResponse for Only<R, S> {
    fn into_response(self) -> poem::Response {
        let response = self.0.into_response();
        let status = response.status().as_u16();
        if status >= 400 && !S::LIST.contains(&status) {
            // The suite's contract check fails on this too; in production it is a bug to fix,
            // not a reason to hide what happened from the client.
            tracing::error!(
                status,
                "answered with a status the operation does not declare"
            );
        }
        response
    }
}

impl<R: IntoResponse, S: Statuses> From<Only<R, S>> for poem::Error {
    fn from(only: Only<R, S>) -> Self {
        poem::Error::from_response(only.into_response())
    }
}

/// An operation's failure: problem details with the statuses `S` lists.
pub type Fails<S> = Only<ApiError, S>;

impl<S> From<ApiError> for Only<ApiError, S> {
    fn from(error: ApiError) -> Self {
        Only::new(error)
    }
}

impl<S> From<StoreError> for Only<ApiError, S> {
    fn from(error: StoreError) -> Self {
        Only::new(error.into())
    }
}

impl<S> From<CommandError> for Only<ApiError, S> {
    fn from(error: CommandError) -> Self {
        Only::new(error.into())
    }
}

impl<S> From<KeyringError> for Only<ApiError, S> {
    fn from(error: KeyringError) -> Self {
        Only::new(error.into())
    }
}

impl<S> From<DomainError> for Only<ApiError, S> {
    fn from(error: DomainError) -> Self {
        Only::new(error.into())
    }
}

impl poem_openapi::types::Example for Problem {
    fn example() -> Self {
        Problem {
            problem_type: "urn:aimc:problem:invalid-field".into(),
            title: "Invalid field".into(),
            status: 400,
            detail: "models[0].provider: unknown provider \"OpenAl\"".into(),
            errors: vec![FieldError {
                field: "models[0].provider".into(),
                message: "unknown provider \"OpenAl\"".into(),
            }],
        }
    }
}
