use std::sync::Arc;

use aimc_keyring::Keyring;
use aimc_store::{CommandBus, ConfigQueries, CredentialQueries, IdempotencyKeys, KeyRotations};

use crate::auth::Authenticator;
use crate::provider_probe::ProviderChecker;

/// A fallback key from the service's configuration (`AIMC_SYSTEM_KEYS_FILE`), encrypted like
/// every other key and never returned, not even as ciphertext.
#[derive(Debug, Clone)]
pub struct SystemKey {
    pub provider: aimc_domain::Provider,
    pub model: aimc_domain::ModelName,
    pub ciphertext: aimc_domain::Ciphertext,
}

/// How long a request may take, in its parts.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// For all its waiting on PostgreSQL and Vault; see [`aimc_domain::deadline`].
    pub deadline: std::time::Duration,
    /// For its body to arrive.
    pub body_read: std::time::Duration,
    /// For `/readyz`'s checks.
    pub readiness: std::time::Duration,
}

/// What every handler may reach: the write side, the read side, the keyring and the verifier.
pub struct AppState {
    pub commands: CommandBus,
    pub queries: ConfigQueries,
    pub credentials: CredentialQueries,
    pub keyring: Arc<dyn Keyring>,
    pub auth: Arc<Authenticator>,
    pub checker: ProviderChecker,
    pub system_keys: Vec<SystemKey>,
    pub limits: RequestLimits,
    pub idempotency: IdempotencyKeys,
    pub rotations: KeyRotations,
    /// Mints development tokens for the settings pages; `Some` only in development mode.
    pub dev_tokens: Option<aimc_web::DevTokens>,
}
