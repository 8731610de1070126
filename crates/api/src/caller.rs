//! Who is calling: the verified token's principal, the workspace the request names, and the
//! request's identity for the events it causes. One extractor, so handlers do not repeat the
//! token, the workspace header and the request context.

use aimc_domain::{ConfigId, Owner, WorkspaceId};
use aimc_store::CommandMetadata;
use poem::Request;
use poem_openapi::registry::{MetaParamIn, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::auth::{BearerAuth, Principal, Role};
use crate::problem::ApiError;
use crate::request_context::RequestContext;

/// The caller of an operation whose workspace is named by the `X-Workspace-Id` header (or is
/// the token's only one).
pub struct Caller {
    pub principal: Principal,
    /// The workspace the request names, if it names one.
    requested: Option<String>,
    context: RequestContext,
}

/// The caller of a family B operation, which names its workspace in its query or body.
pub struct CallerByBody(pub Caller);

impl Caller {
    pub fn sub(&self) -> &str {
        &self.principal.sub
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.principal.has_scope(scope)
    }

    /// The workspace the request acts on, if the caller's role there allows `at_least`.
    pub fn workspace(&self, at_least: Role) -> Result<(WorkspaceId, Role), ApiError> {
        self.principal
            .workspace(self.requested.as_deref(), at_least)
    }

    /// The workspace `named` (a query or body field), else the one the request names otherwise.
    pub fn workspace_named(
        &self,
        named: Option<&str>,
        at_least: Role,
    ) -> Result<(WorkspaceId, Role), ApiError> {
        self.principal
            .workspace(named.or(self.requested.as_deref()), at_least)
    }

    /// The caller's own configuration (`<workspace>/user:<sub>`).
    pub fn own_config(&self, at_least: Role) -> Result<ConfigId, ApiError> {
        let (workspace, _) = self.workspace(at_least)?;
        Ok(ConfigId::new(
            workspace,
            Owner::User(self.principal.sub.clone()),
        ))
    }

    /// The workspace-wide configuration (`<workspace>/workspace`).
    pub fn workspace_config(&self, at_least: Role) -> Result<ConfigId, ApiError> {
        let (workspace, _) = self.workspace(at_least)?;
        Ok(ConfigId::new(workspace, Owner::Workspace))
    }

    /// Recorded with every event the request causes.
    pub fn metadata(&self) -> CommandMetadata {
        CommandMetadata {
            actor: self.principal.sub.clone(),
            request_id: self.context.request_id.clone(),
            trace_id: Some(self.context.trace_id.clone()),
            idempotency_key: self.context.idempotency_key.clone(),
        }
    }

    async fn extract(
        request: &Request,
        body: &mut poem::RequestBody,
        header: Option<&str>,
    ) -> poem::Result<Self> {
        let options = ExtractParamOptions {
            name: "Authorization",
            ignore_case: false,
            default_value: None,
            example_value: None,
            explode: true,
            style: None,
        };
        let BearerAuth(principal) =
            <BearerAuth as ApiExtractor>::from_request(request, body, options).await?;
        // A header that is not text is refused, not ignored: serving the token's workspace
        // instead would act somewhere the caller did not name.
        let requested = match header.and_then(|name| Some((name, request.headers().get(name)?))) {
            None => None,
            Some((name, value)) => Some(
                value
                    .to_str()
                    .map_err(|_| {
                        ApiError::invalid_field(name, "must be visible ASCII text").refusal()
                    })?
                    .to_owned(),
            ),
        };
        let context = request
            .extensions()
            .get::<RequestContext>()
            .cloned()
            .ok_or_else(|| ApiError::internal("request context missing").refusal())?;
        Ok(Caller {
            principal,
            requested,
            context,
        })
    }
}

impl<'a> ApiExtractor<'a> for Caller {
    const TYPES: &'static [ApiExtractorType] = &[
        ApiExtractorType::SecurityScheme,
        ApiExtractorType::Parameter,
    ];
    const PARAM_IS_REQUIRED: bool = false;
    type ParamType = String;
    type ParamRawType = String;

    fn register(registry: &mut Registry) {
        <BearerAuth as ApiExtractor>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        <BearerAuth as ApiExtractor>::security_schemes()
    }

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Header)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(String::schema_ref())
    }

    async fn from_request(
        request: &'a Request,
        body: &mut poem::RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Caller::extract(request, body, Some(param_opts.name)).await
    }
}

impl<'a> ApiExtractor<'a> for CallerByBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <BearerAuth as ApiExtractor>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        <BearerAuth as ApiExtractor>::security_schemes()
    }

    async fn from_request(
        request: &'a Request,
        body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Caller::extract(request, body, None).await.map(CallerByBody)
    }
}
