//! Bearer JWT authentication and the tenancy rules: which workspace a request acts on, and
//! what the caller's role there allows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aimc_domain::WorkspaceId;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::problem::ApiError;

/// The longest `sub` a token may carry.
const MAX_SUBJECT_CHARS: usize = 256;

/// A caller's role in one workspace, from least to most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "viewer" => Some(Role::Viewer),
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// Claims aimc reads; `exp`, `iss` and `aud` are checked by the validator.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub workspaces: HashMap<String, Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub iss: String,
    pub aud: Audience,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
}

/// `aud` is one string or, as many identity providers issue it, a list; the validator checks
/// that ours is among them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Scope that allows reading stored ciphertext.
pub const SCOPE_KEYS_CIPHERTEXT: &str = "keys:ciphertext";

/// Who is calling, once the token checked out.
#[derive(Debug, Clone)]
pub struct Principal {
    pub sub: String,
    pub workspaces: HashMap<String, Role>,
    pub scopes: HashSet<String>,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// The workspace a request acts on: the one it names, else the token's only one. A
    /// workspace the token does not list is refused with 403 whatever it is called.
    pub fn workspace(
        &self,
        requested: Option<&str>,
        at_least: Role,
    ) -> Result<(WorkspaceId, Role), ApiError> {
        let name = match requested.map(str::trim).filter(|name| !name.is_empty()) {
            Some(name) => name.to_owned(),
            None => {
                let mut names = self.workspaces.keys();
                match (names.next(), names.next()) {
                    (Some(only), None) => only.clone(),
                    (None, _) => return Err(ApiError::forbidden("the token grants no workspace")),
                    _ => {
                        return Err(ApiError::invalid_field(
                            "X-Workspace-Id",
                            "the token grants several workspaces: name one with the X-Workspace-Id header",
                        ))
                    }
                }
            }
        };
        let role = *self.workspaces.get(&name).ok_or_else(|| {
            ApiError::forbidden("the token does not grant access to this workspace")
        })?;
        let workspace = WorkspaceId::parse(&name)
            .map_err(|error| ApiError::invalid_value("X-Workspace-Id", error))?;
        if role < at_least {
            return Err(ApiError::forbidden(format!(
                "this needs the {} role or higher in the workspace; the token grants {}",
                at_least.as_str(),
                role.as_str()
            )));
        }
        Ok((workspace, role))
    }
}

/// A key a token may be signed with, and the one algorithm accepted with it (never the
/// token's own say-so: that is how algorithm-confusion attacks work).
struct VerificationKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

#[derive(Clone, Default)]
pub struct AuthSettings {
    pub hs256_secret: Option<SecretString>,
    /// PEM public keys (RSA, EC P-256/P-384 or Ed25519).
    pub public_key_pems: Vec<String>,
    /// The `kid` tokens signed with the PEM key carry, if they carry one.
    pub public_key_id: Option<String>,
    /// A JWKS document; keys are matched by `kid`.
    pub jwks_json: Option<String>,
    pub issuer: String,
    pub audience: String,
}

pub struct Authenticator {
    keys: Vec<VerificationKey>,
    issuer: String,
    audience: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("no way to verify tokens: set AIMC_JWT_HS256_SECRET, AIMC_JWT_PUBLIC_KEY_FILE or AIMC_JWT_JWKS_FILE")]
    NoKeys,
    #[error("the HS256 secret must be at least 32 bytes")]
    WeakSecret,
    #[error("unreadable public key: {0}")]
    BadPublicKey(String),
    #[error("unreadable JWKS: {0}")]
    BadJwks(String),
}

/// The algorithms a PEM key may verify: every one of its family, none of another family.
fn pem_keys(pem: &str) -> Result<Vec<VerificationKey>, AuthConfigError> {
    let with = |algorithms: &[Algorithm], key: DecodingKey| {
        algorithms
            .iter()
            .map(|algorithm| VerificationKey {
                kid: None,
                algorithm: *algorithm,
                key: key.clone(),
            })
            .collect()
    };
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        use Algorithm::*;
        return Ok(with(&[RS256, RS384, RS512, PS256, PS384, PS512], key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        // The curve decides which of the two verifies; the other simply fails.
        return Ok(with(&[Algorithm::ES256, Algorithm::ES384], key));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem.as_bytes()) {
        return Ok(with(&[Algorithm::EdDSA], key));
    }
    Err(AuthConfigError::BadPublicKey(
        "not an RSA, EC or Ed25519 public key in PEM".into(),
    ))
}

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthConfigError> {
        let mut keys = Vec::new();
        if let Some(secret) = &settings.hs256_secret {
            if secret.expose_secret().len() < 32 {
                return Err(AuthConfigError::WeakSecret);
            }
            keys.push(VerificationKey {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            });
        }
        for pem in &settings.public_key_pems {
            keys.extend(pem_keys(pem)?.into_iter().map(|key| VerificationKey {
                kid: settings.public_key_id.clone(),
                ..key
            }));
        }
        if let Some(jwks) = &settings.jwks_json {
            let set: JwkSet = serde_json::from_str(jwks)
                .map_err(|error| AuthConfigError::BadJwks(error.to_string()))?;
            for jwk in &set.keys {
                let algorithm = jwk
                    .common
                    .key_algorithm
                    .and_then(|alg| alg.to_string().parse::<Algorithm>().ok())
                    .ok_or_else(|| AuthConfigError::BadJwks("every key needs an \"alg\"".into()))?;
                keys.push(VerificationKey {
                    kid: jwk.common.key_id.clone(),
                    algorithm,
                    key: DecodingKey::from_jwk(jwk)
                        .map_err(|error| AuthConfigError::BadJwks(error.to_string()))?,
                });
            }
        }
        if keys.is_empty() {
            return Err(AuthConfigError::NoKeys);
        }
        Ok(Authenticator {
            keys,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        })
    }

    /// Verifies signature, `exp`, `iss` and `aud`. Errors say what is wrong without echoing
    /// the token.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        // `alg: none` and unknown algorithms fail here: jsonwebtoken has no such algorithm.
        let header = decode_header(token).map_err(|_| {
            ApiError::unauthorized("the bearer token is malformed or uses an unsupported algorithm")
        })?;
        // A `kid` must name a configured key; without one, only keys that have no id apply.
        let candidates: Vec<&VerificationKey> = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|key| key.kid.as_deref() == Some(kid))
                .collect(),
            None => self.keys.iter().filter(|key| key.kid.is_none()).collect(),
        };
        let key = candidates
            .into_iter()
            .find(|key| key.algorithm == header.alg)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "the bearer token is signed with an unknown key or algorithm",
                )
            })?;
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        validation.validate_nbf = true;
        let claims = decode::<Claims>(token, &key.key, &validation)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                let reason = match error.kind() {
                    ErrorKind::ExpiredSignature => "the bearer token has expired",
                    ErrorKind::ImmatureSignature => "the bearer token is not valid yet",
                    ErrorKind::InvalidIssuer => "the bearer token was issued by someone else",
                    ErrorKind::InvalidAudience => "the bearer token is meant for another audience",
                    ErrorKind::InvalidSignature => "the bearer token's signature does not verify",
                    ErrorKind::MissingRequiredClaim(_) => {
                        "the bearer token lacks a required claim (sub, exp, iss, aud)"
                    }
                    _ => "the bearer token is invalid",
                };
                ApiError::unauthorized(reason)
            })?
            .claims;
        if claims.sub.is_empty() {
            return Err(ApiError::unauthorized(
                "the bearer token has an empty subject",
            ));
        }
        // The subject names streams, rows and log lines: PostgreSQL text cannot hold NUL, and
        // nobody's id is a page long.
        if claims.sub.chars().count() > MAX_SUBJECT_CHARS
            || claims.sub.chars().any(char::is_control)
        {
            return Err(ApiError::unauthorized(format!(
                "the bearer token's subject must be at most {MAX_SUBJECT_CHARS} characters without control characters"
            )));
        }
        Ok(Principal {
            sub: claims.sub,
            workspaces: claims.workspaces,
            scopes: claims
                .scope
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// Signs a development token with the HS256 secret (`aimc token`, tests).
pub fn mint_hs256_token(
    secret: &SecretString,
    issuer: &str,
    audience: &str,
    sub: &str,
    workspaces: HashMap<String, Role>,
    scope: Option<&str>,
    ttl_seconds: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    let claims = Claims {
        sub: sub.to_owned(),
        workspaces,
        scope: scope.map(str::to_owned),
        iss: issuer.to_owned(),
        aud: Audience::One(audience.to_owned()),
        exp: now + ttl_seconds,
        iat: now,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
}

/// `Authorization: Bearer <JWT>`, signed by a key the service trusts.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Principal);

async fn check_bearer(request: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let authenticator = request
        .data::<Arc<Authenticator>>()
        .ok_or_else(|| ApiError::internal("token verification not set up").refusal())?;
    let principal = authenticator
        .verify(&bearer.token)
        .map_err(ApiError::refusal)?;
    tracing::Span::current().record("sub", principal.sub.as_str());
    Ok(principal)
}
