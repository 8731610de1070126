//! How aimc gets and keeps its Vault token (`AIMC_VAULT_AUTH`): the token it is given, or one
//! from logging in with AppRole or a Kubernetes service account.
//!
//! A background task renews the token at two thirds of its TTL while it is renewable. When a
//! renewal fails, or gives less than a full TTL because the token is near its max TTL, the
//! AppRole and Kubernetes methods log in again and every request from then on carries the new
//! token. A token that does not expire (a root token) is left alone.

use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use rustify::clients::reqwest::Client as HttpClient;
use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use vaultrs::client::{Client, VaultClient};
use vaultrs::error::ClientError;

use crate::metrics::{VAULT_LOGINS, VAULT_TOKEN_RENEWALS};
use crate::{KeyringError, VaultKeyring, VaultSettings};

/// Where a secret comes from: given, or read from a file at every use (so a file an agent
/// rewrites is followed).
#[derive(Clone)]
pub enum SecretSource {
    Value(SecretString),
    /// The file and the setting that names it, for errors.
    File {
        path: PathBuf,
        setting: &'static str,
    },
}

impl SecretSource {
    fn read(&self) -> Result<SecretString, LoginError> {
        match self {
            SecretSource::Value(secret) => Ok(secret.clone()),
            SecretSource::File { path, setting } => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    LoginError::Refused(format!(
                        "{setting}: cannot read {}: {error}",
                        path.display()
                    ))
                })?;
                let secret = text.trim();
                if secret.is_empty() {
                    return Err(LoginError::Refused(format!(
                        "{setting}: {} is empty",
                        path.display()
                    )));
                }
                Ok(SecretString::from(secret))
            }
        }
    }
}

/// How aimc authenticates to Vault.
#[derive(Clone)]
pub enum VaultAuth {
    /// The token of [`VaultSettings::token`]; renewed while it is renewable and has a TTL.
    Token,
    /// `auth/<mount>/login` with a role id and a secret id.
    AppRole {
        mount: String,
        role_id: String,
        secret_id: SecretSource,
    },
    /// `auth/<mount>/login` with the pod's service account token.
    Kubernetes {
        mount: String,
        role: String,
        service_account_token: SecretSource,
    },
}

impl VaultAuth {
    /// The method's name, as logs and metrics give it.
    pub fn method(&self) -> &'static str {
        match self {
            VaultAuth::Token => "token",
            VaultAuth::AppRole { .. } => "approle",
            VaultAuth::Kubernetes { .. } => "kubernetes",
        }
    }

    fn logs_in(&self) -> bool {
        !matches!(self, VaultAuth::Token)
    }

    /// Logs in and makes the new token the one every request carries.
    async fn login(&self, session: &VaultSession) -> Result<Lease, LoginError> {
        // Login paths need no token; sending none keeps an expired one out of the request.
        let anonymous = session.client_with_token("");
        let result = match self {
            VaultAuth::Token => {
                return Err(LoginError::Refused(
                    "AIMC_VAULT_AUTH=token cannot log in".into(),
                ))
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let secret_id = secret_id.read()?;
                vaultrs::auth::approle::login(&anonymous, mount, role_id, secret_id.expose_secret())
                    .await
            }
            VaultAuth::Kubernetes {
                mount,
                role,
                service_account_token,
            } => {
                let jwt = service_account_token.read()?;
                vaultrs::auth::kubernetes::login(&anonymous, mount, role, jwt.expose_secret()).await
            }
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        VAULT_LOGINS
            .with_label_values(&[self.method(), outcome])
            .inc();
        let auth = result.map_err(|error| login_error(self, &error))?;
        if auth.client_token.is_empty() {
            return Err(LoginError::Unavailable(
                "Vault answered the login without a token".into(),
            ));
        }
        session.use_token(&auth.client_token);
        let lease = Lease::new(auth.lease_duration, auth.renewable);
        tracing::info!(
            method = self.method(),
            ttl_seconds = auth.lease_duration as i64,
            renewable = auth.renewable,
            "logged in to Vault"
        );
        Ok(lease)
    }
}

/// The Vault client carrying the token in use. Every request takes the current client, so a
/// new token reaches every request path at once; requests already under way finish with the
/// old one, which is still valid: it is replaced well before it expires.
pub(crate) struct VaultSession {
    current: RwLock<Arc<VaultClient>>,
}

impl VaultSession {
    pub(crate) fn new(client: VaultClient) -> Self {
        VaultSession {
            current: RwLock::new(Arc::new(client)),
        }
    }

    /// The client with the current token.
    pub(crate) fn client(&self) -> Arc<VaultClient> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The current client's settings and connection pool with another token.
    fn client_with_token(&self, token: &str) -> VaultClient {
        let current = self.client();
        let mut client = VaultClient {
            http: HttpClient::new(&current.http.base, current.http.http.clone()),
            middle: current.middle.clone(),
            settings: current.settings.clone(),
        };
        client.set_token(token);
        client
    }

    fn use_token(&self, token: &str) {
        let client = Arc::new(self.client_with_token(token));
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = client;
    }
}

impl VaultKeyring {
    /// A keyring that authenticates with `auth` and keeps its token alive in a background task,
    /// which ends when the keyring is dropped.
    ///
    /// AppRole and Kubernetes log in now. A login Vault refuses (a wrong role or secret id, an
    /// unreadable file) is an error; an unreachable or sealed Vault is not: the keyring starts
    /// without a token, its calls answer `Unavailable`, and the login is retried.
    pub async fn connect(settings: VaultSettings, auth: VaultAuth) -> Result<Self, KeyringError> {
        let keyring = VaultKeyring::new(settings)?;
        let session = keyring.session().clone();
        let lease = match &auth {
            VaultAuth::Token => match look_up(&session).await {
                Ok(lease) => Some(lease),
                Err(error) => {
                    tracing::warn!(%error, "the Vault token could not be looked up; trying again shortly");
                    None
                }
            },
            _ => match auth.login(&session).await {
                Ok(lease) => Some(lease),
                Err(LoginError::Refused(reason)) => {
                    return Err(KeyringError::Failed(format!(
                        "Vault {} login failed: {reason}",
                        auth.method()
                    )))
                }
                Err(LoginError::Unavailable(reason)) => {
                    tracing::warn!(error = %reason, method = auth.method(), "Vault login failed; trying again shortly");
                    None
                }
            },
        };
        tokio::spawn(keep_alive(Arc::downgrade(&session), auth, lease));
        Ok(keyring)
    }
}

/// A token's lease as Vault last stated it.
#[derive(Debug, Clone, Copy)]
struct Lease {
    from: Instant,
    /// Zero: the token does not expire.
    ttl: Duration,
    renewable: bool,
}

impl Lease {
    fn new(ttl_seconds: u64, renewable: bool) -> Self {
        Lease {
            from: Instant::now(),
            ttl: Duration::from_secs(ttl_seconds),
            renewable,
        }
    }

    /// Two thirds into the TTL: early enough that a slow or failed renewal still leaves time
    /// to log in again.
    fn renew_at(&self) -> Instant {
        self.from + self.ttl * 2 / 3
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Renew,
    Login,
    LookUp,
}

/// What to do next with the token, and when; `None` when nothing is left to do.
///
/// `full_ttl` is the longest TTL a login or renewal gave this token: a renewal that gives
/// less was capped by the token's max TTL, so renewing again would only shorten it further.
fn next_step(
    lease: Option<&Lease>,
    full_ttl: Duration,
    logs_in: bool,
    failures: u32,
    now: Instant,
) -> Option<(Instant, Step)> {
    let retry_at = now + retry_delay(failures);
    let Some(lease) = lease else {
        // No usable token: get one.
        let step = if logs_in { Step::Login } else { Step::LookUp };
        return Some((retry_at, step));
    };
    if lease.ttl.is_zero() {
        return None;
    }
    let capped = lease.ttl < full_ttl;
    let step = if logs_in && (capped || !lease.renewable) {
        Step::Login
    } else if lease.renewable {
        Step::Renew
    } else {
        return None;
    };
    let at = if failures == 0 {
        lease.renew_at()
    } else {
        retry_at
    };
    Some((at, step))
}

/// After `failures` failed attempts in a row: at once, then 1, 2, 4 … up to 30 seconds.
fn retry_delay(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => Duration::from_secs((1u64 << (n - 1).min(5)).min(30)),
    }
}

/// Renews the token ahead of its expiry, and logs in again when it cannot be renewed, until
/// the session is dropped.
async fn keep_alive(session: Weak<VaultSession>, auth: VaultAuth, mut lease: Option<Lease>) {
    let mut full_ttl = lease.map_or(Duration::ZERO, |lease| lease.ttl);
    let mut failures = 0u32;
    let mut warned_of_max_ttl = false;
    loop {
        let Some((at, step)) = next_step(
            lease.as_ref(),
            full_ttl,
            auth.logs_in(),
            failures,
            Instant::now(),
        ) else {
            match lease {
                Some(lease) if lease.ttl.is_zero() => {
                    tracing::info!("the Vault token does not expire: nothing to renew")
                }
                _ => tracing::warn!(
                    "the Vault token is not renewable and AIMC_VAULT_AUTH=token cannot get another: it will expire"
                ),
            }
            return;
        };
        tokio::time::sleep_until(at.into()).await;
        let Some(session) = session.upgrade() else {
            return;
        };
        let result = match step {
            Step::Renew => renew(&session).await,
            Step::Login => auth.login(&session).await.map_err(LoginError::into_reason),
            Step::LookUp => look_up(&session).await,
        };
        match result {
            Ok(renewed) if step == Step::Renew && renewed.ttl.is_zero() => {
                // Renewed to nothing: the token is at its max TTL.
                tracing::warn!("the Vault token reached its max TTL");
                lease = None;
            }
            Ok(renewed) => {
                failures = 0;
                full_ttl = match step {
                    Step::Renew => full_ttl.max(renewed.ttl),
                    Step::Login | Step::LookUp => renewed.ttl,
                };
                if step == Step::Renew {
                    tracing::debug!(
                        ttl_seconds = renewed.ttl.as_secs() as i64,
                        "Vault token renewed"
                    );
                }
                if renewed.ttl < full_ttl && !auth.logs_in() && !warned_of_max_ttl {
                    warned_of_max_ttl = true;
                    tracing::warn!(
                        ttl_seconds = renewed.ttl.as_secs() as i64,
                        "the Vault token nears its max TTL and AIMC_VAULT_AUTH=token cannot get another: give it a longer max TTL (or a period), or use approle or kubernetes"
                    );
                }
                lease = Some(renewed);
            }
            Err(error) => {
                tracing::warn!(%error, method = auth.method(), step = ?step, "keeping the Vault token alive failed");
                if step == Step::Renew && auth.logs_in() {
                    // Log in again at once.
                    lease = None;
                    failures = 0;
                } else {
                    failures += 1;
                }
            }
        }
    }
}

async fn renew(session: &VaultSession) -> Result<Lease, String> {
    let result = vaultrs::token::renew_self(&*session.client(), None).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    VAULT_TOKEN_RENEWALS.with_label_values(&[outcome]).inc();
    let auth = result.map_err(|error| describe(&error))?;
    Ok(Lease::new(auth.lease_duration, auth.renewable))
}

/// The current token's TTL and whether it is renewable.
async fn look_up(session: &VaultSession) -> Result<Lease, String> {
    let token = vaultrs::api::exec_with_result(&*session.client(), TokenLookup)
        .await
        .map_err(|error| describe(&error))?;
    Ok(Lease::new(token.ttl, token.renewable.unwrap_or(false)))
}

/// `auth/token/lookup-self`, reading only the lease: vaultrs' own response type requires
/// fields some tokens lack.
struct TokenLookup;

#[derive(Deserialize)]
struct TokenLease {
    #[serde(default)]
    ttl: u64,
    #[serde(default)]
    renewable: Option<bool>,
}

impl Endpoint for TokenLookup {
    type Response = TokenLease;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        "auth/token/lookup-self".to_owned()
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::GET
    }
}

#[derive(Debug)]
enum LoginError {
    /// Vault refused the credentials, or they could not be read: a configuration to fix.
    Refused(String),
    /// Vault could not be asked: worth trying again.
    Unavailable(String),
}

impl LoginError {
    fn into_reason(self) -> String {
        match self {
            LoginError::Refused(reason) | LoginError::Unavailable(reason) => reason,
        }
    }
}

fn login_error(auth: &VaultAuth, error: &ClientError) -> LoginError {
    let reason = describe(error);
    let status = match error {
        ClientError::APIError { code, .. } => Some(*code),
        ClientError::RestClientError {
            source: rustify::errors::ClientError::ServerResponseError { code, .. },
        } => Some(*code),
        _ => None,
    };
    match status {
        Some(400 | 401 | 403 | 404) => {
            let settings = match auth {
                VaultAuth::AppRole { .. } => "AIMC_VAULT_AUTH_MOUNT, AIMC_VAULT_APPROLE_ROLE_ID and the secret id",
                VaultAuth::Kubernetes { .. } => "AIMC_VAULT_AUTH_MOUNT, AIMC_VAULT_KUBERNETES_ROLE and the service account token",
                VaultAuth::Token => "AIMC_VAULT_TOKEN",
            };
            LoginError::Refused(format!("{reason} (check {settings})"))
        }
        _ => LoginError::Unavailable(reason),
    }
}

/// Vault's status and messages, or the kind of failure; never a request body (a login's holds
/// the secret id).
fn describe(error: &ClientError) -> String {
    use rustify::errors::ClientError as Rest;
    match error {
        ClientError::APIError { code, errors } if errors.is_empty() => {
            format!("Vault answered {code}")
        }
        ClientError::APIError { code, errors } => {
            format!("Vault answered {code}: {}", errors.join("; "))
        }
        ClientError::RestClientError { source } => match source {
            Rest::ServerResponseError { code, .. } => format!("Vault answered {code}"),
            Rest::RequestError { url, .. } => format!("cannot reach Vault at {url}"),
            Rest::ResponseError { .. } => "no response from Vault".into(),
            _ => "unexpected answer from Vault".into(),
        },
        ClientError::ResponseEmptyError => "Vault answered without the expected data".into(),
        _ => "unexpected answer from Vault".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(from: Instant, ttl: u64, renewable: bool) -> Lease {
        Lease {
            from,
            ttl: Duration::from_secs(ttl),
            renewable,
        }
    }

    #[test]
    fn a_renewable_token_is_renewed_two_thirds_into_its_ttl() {
        let now = Instant::now();
        let held = lease(now, 30, true);
        for logs_in in [true, false] {
            assert_eq!(
                next_step(Some(&held), Duration::from_secs(30), logs_in, 0, now),
                Some((now + Duration::from_secs(20), Step::Renew))
            );
        }
    }

    #[test]
    fn near_its_max_ttl_a_login_method_logs_in_again_and_the_token_method_renews_to_the_end() {
        let now = Instant::now();
        let capped = lease(now, 3, true);
        let full = Duration::from_secs(30);
        assert_eq!(
            next_step(Some(&capped), full, true, 0, now),
            Some((now + Duration::from_secs(2), Step::Login))
        );
        assert_eq!(
            next_step(Some(&capped), full, false, 0, now),
            Some((now + Duration::from_secs(2), Step::Renew))
        );
    }

    #[test]
    fn a_token_that_cannot_be_renewed_is_replaced_or_left_to_expire() {
        let now = Instant::now();
        let fixed = lease(now, 60, false);
        let full = Duration::from_secs(60);
        assert_eq!(
            next_step(Some(&fixed), full, true, 0, now),
            Some((now + Duration::from_secs(40), Step::Login))
        );
        assert_eq!(next_step(Some(&fixed), full, false, 0, now), None);
    }

    #[test]
    fn a_token_without_a_ttl_is_left_alone() {
        let now = Instant::now();
        let root = lease(now, 0, false);
        assert_eq!(next_step(Some(&root), Duration::ZERO, false, 0, now), None);
    }

    #[test]
    fn without_a_token_it_logs_in_or_looks_up_again_backing_off() {
        let now = Instant::now();
        assert_eq!(
            next_step(None, Duration::ZERO, true, 0, now),
            Some((now, Step::Login))
        );
        assert_eq!(
            next_step(None, Duration::ZERO, true, 3, now),
            Some((now + Duration::from_secs(4), Step::Login))
        );
        assert_eq!(
            next_step(None, Duration::ZERO, false, 1, now),
            Some((now + Duration::from_secs(1), Step::LookUp))
        );
        let held = lease(now, 600, true);
        assert_eq!(
            next_step(Some(&held), Duration::from_secs(600), false, 2, now),
            Some((now + Duration::from_secs(2), Step::Renew)),
            "a failed renewal is retried soon, not at the next two thirds"
        );
    }

    #[test]
    fn retries_back_off_to_thirty_seconds() {
        let delays: Vec<u64> = (0..9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
