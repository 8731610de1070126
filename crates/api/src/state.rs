use std::sync::Arc;

use aimc_keyring::Keyring;
use aimc_store::{CommandBus, ConfigQueries, CredentialQueries};

use crate::auth::Authenticator;
use crate::provider_check::ProviderChecker;

/// What every handler may reach: the write side, the read side, the keyring and the verifier.
pub struct AppState {
    pub commands: CommandBus,
    pub queries: ConfigQueries,
    pub credentials: CredentialQueries,
    pub keyring: Arc<dyn Keyring>,
    pub auth: Authenticator,
    pub checker: ProviderChecker,
}
