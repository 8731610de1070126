//! Bearer JWT authentication and the tenancy rules: which workspace a request acts on, and
//! what the caller's role there allows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aimc_domain::WorkspaceId;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::problem::ApiError;
use crate::published_keys::PublishedKeys;

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
pub(crate) struct VerificationKey {
    pub(crate) kid: Option<String>,
    pub(crate) algorithm: Algorithm,
    pub(crate) key: DecodingKey,
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
    /// Where an identity provider publishes its keys (http or https). They are fetched when
    /// the authenticator is made, again every `jwks_refresh`, and on a token whose `kid` names
    /// no known key, at most once per `jwks_min_refetch`.
    pub jwks_url: Option<url::Url>,
    pub jwks_refresh: Duration,
    pub jwks_min_refetch: Duration,
    pub issuer: String,
    pub audience: String,
}

pub struct Authenticator {
    /// Keys from the configuration: the HS256 secret, the PEM key, the JWKS file.
    keys: Vec<VerificationKey>,
    /// Keys fetched from `AIMC_JWT_JWKS_URL`, kept current in the background.
    published: Option<Arc<PublishedKeys>>,
    issuer: String,
    audience: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("no way to verify tokens: set AIMC_JWT_HS256_SECRET, AIMC_JWT_PUBLIC_KEY_FILE, AIMC_JWT_JWKS_FILE or AIMC_JWT_JWKS_URL")]
    NoKeys,
    #[error("the HS256 secret must be at least 32 bytes")]
    WeakSecret,
    #[error("unreadable public key: {0}")]
    BadPublicKey(String),
    #[error("unreadable JWKS: {0}")]
    BadJwks(String),
    /// The first fetch of `AIMC_JWT_JWKS_URL` failed: without it no token of that identity
    /// provider could be verified.
    #[error("AIMC_JWT_JWKS_URL: {0}")]
    JwksUrl(String),
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

/// The algorithms a published key may verify. Its `alg` when it names one that fits the key's
/// type; without `alg`, every signature algorithm of its type (as for a PEM key), so no key
/// ever verifies an algorithm of another family. `None` for keys that cannot verify a token
/// signature: encryption keys, symmetric keys (an identity provider never publishes those),
/// and key types or curves aimc does not support.
fn published_algorithms(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    use Algorithm::*;
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let fitting: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => &[ES256],
            EllipticCurve::P384 => &[ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => {
            &[EdDSA]
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(fitting.to_vec()),
        Some(alg) => {
            let named = alg.to_string().parse::<Algorithm>().ok()?;
            fitting.contains(&named).then(|| vec![named])
        }
    }
}

/// The signature keys of a JWKS an identity provider publishes, and how many of its entries
/// were left out (encryption keys, unsupported types). Each entry is read on its own, so one
/// key of a kind aimc does not know does not cost it the others.
pub(crate) fn published_keys(document: &[u8]) -> Result<(Vec<VerificationKey>, usize), String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(document)
        .map_err(|_| "the answer is not a JWKS document (a JSON object with \"keys\")")?;
    let mut keys = Vec::new();
    let mut skipped = 0;
    for entry in document.keys {
        let usable = serde_json::from_value::<Jwk>(entry).ok().and_then(|jwk| {
            let algorithms = published_algorithms(&jwk)?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some((jwk.common.key_id, algorithms, key))
        });
        match usable {
            Some((kid, algorithms, key)) => {
                keys.extend(algorithms.into_iter().map(|algorithm| VerificationKey {
                    kid: kid.clone(),
                    algorithm,
                    key: key.clone(),
                }))
            }
            None => skipped += 1,
        }
    }
    if keys.is_empty() && skipped == 0 {
        return Err("the JWKS holds no keys".into());
    }
    if keys.is_empty() {
        return Err(format!(
            "none of the JWKS's {skipped} keys verifies signatures with an algorithm aimc supports"
        ));
    }
    Ok((keys, skipped))
}

/// The key of the token's header among `keys`: the one with its `kid` (or, for a token
/// without one, a key without one) and its algorithm.
fn matching_key<'k>(
    keys: impl Iterator<Item = &'k VerificationKey>,
    kid: Option<&str>,
    algorithm: Algorithm,
) -> Option<&'k VerificationKey> {
    keys.filter(|key| key.kid.as_deref() == kid)
        .find(|key| key.algorithm == algorithm)
}

impl Authenticator {
    /// The keys of the configuration; with a JWKS URL, also the keys published there, fetched
    /// now (an error if that fails) and kept current by a background task that ends when the
    /// authenticator is dropped.
    pub async fn new(settings: &AuthSettings) -> Result<Self, AuthConfigError> {
        let keys = Self::configured_keys(settings)?;
        let published = match &settings.jwks_url {
            Some(url) => Some(
                PublishedKeys::load(url.clone(), settings.jwks_min_refetch)
                    .await
                    .map_err(AuthConfigError::JwksUrl)?,
            ),
            None => None,
        };
        if keys.is_empty() && published.is_none() {
            return Err(AuthConfigError::NoKeys);
        }
        if let Some(published) = &published {
            published.keep_fresh(settings.jwks_refresh);
        }
        Ok(Authenticator {
            keys,
            published,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        })
    }

    fn configured_keys(settings: &AuthSettings) -> Result<Vec<VerificationKey>, AuthConfigError> {
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
        Ok(keys)
    }

    /// Verifies signature, `exp`, `iss` and `aud`. Errors say what is wrong without echoing
    /// the token.
    ///
    /// A token whose `kid` names no key known yet makes the published keys be fetched again
    /// (one fetch at a time, at most one per `jwks_min_refetch`) and is then checked once more:
    /// an identity provider may sign with a new key before the next periodic refresh.
    pub async fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        // `alg: none` and unknown algorithms fail here: jsonwebtoken has no such algorithm.
        let header = decode_header(token).map_err(|_| {
            ApiError::unauthorized("the bearer token is malformed or uses an unsupported algorithm")
        })?;
        let unknown = || {
            ApiError::unauthorized("the bearer token is signed with an unknown key or algorithm")
        };
        // A `kid` must name a known key; without one, only keys that have no id apply.
        let kid = header.kid.as_deref();
        if let Some(key) = matching_key(self.keys.iter(), kid, header.alg) {
            return self.check(token, key);
        }
        let Some(published) = &self.published else {
            return Err(unknown());
        };
        let (generation, keys) = published.current();
        if let Some(key) = matching_key(keys.iter(), kid, header.alg) {
            return self.check(token, key);
        }
        // Only a `kid` no key carries is worth a fetch: a known `kid` with another algorithm,
        // or no `kid` at all, would not verify after one either.
        let Some(kid) = kid else {
            return Err(unknown());
        };
        let known = |key: &VerificationKey| key.kid.as_deref() == Some(kid);
        if self.keys.iter().any(known) || keys.iter().any(known) {
            return Err(unknown());
        }
        drop(keys);
        if !published.refetch_for_unknown_kid(generation).await {
            return Err(unknown());
        }
        let (_, keys) = published.current();
        let key = matching_key(keys.iter(), Some(kid), header.alg).ok_or_else(unknown)?;
        self.check(token, key)
    }

    /// Checks the token with the key its header chose.
    fn check(&self, token: &str, key: &VerificationKey) -> Result<Principal, ApiError> {
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
        .await
        .map_err(ApiError::refusal)?;
    tracing::Span::current().record("sub", principal.sub.as_str());
    Ok(principal)
}
