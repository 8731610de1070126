//! Stand-ins for the ports, for scenarios: given these events, when this command, then these
//! events (or this error).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::ids::{ConfigId, CredentialId, WorkspaceId};
use crate::services::{
    ConfigServices, CredentialDirectory, CredentialNames, CredentialNumbers, IdSource, KeyContext,
    KeySealer, RegistryError, SealError, SealRequest, SealedKey,
};
use crate::values::{Ciphertext, KeyHint, NameKey, Provider};

/// Stands in for the keyring: a "client ciphertext" is `rsa(<plain>)`, and sealing records the
/// context so the scenarios see that each key is bound to its credential.
pub struct ScriptedSealer;

#[async_trait]
impl KeySealer for ScriptedSealer {
    async fn seal(
        &self,
        workspace: &WorkspaceId,
        requests: Vec<SealRequest>,
    ) -> Result<Vec<SealedKey>, SealError> {
        requests
            .into_iter()
            .enumerate()
            .map(|(index, request)| {
                let (plain, context) = match request {
                    SealRequest::ClientEncrypted {
                        ciphertext,
                        context,
                    } => {
                        let plain = ciphertext
                            .strip_prefix("rsa(")
                            .and_then(|rest| rest.strip_suffix(')'))
                            .ok_or(SealError::Undecryptable { index })?;
                        (SecretString::from(plain), context)
                    }
                    SealRequest::Plain { plain, context } => (plain, context),
                };
                if plain.expose_secret().trim().is_empty() {
                    return Err(SealError::EmptyKey { index });
                }
                Ok(SealedKey {
                    ciphertext: Ciphertext(format!(
                        "sealed:{workspace}:{}:{}",
                        context.as_str(),
                        plain.expose_secret().len()
                    )),
                    hint: KeyHint::from_plain(&plain),
                })
            })
            .collect()
    }

    /// `vault:v1:x` becomes `vault:v2:x`, as a rotation's rewrap would.
    async fn rewrap(
        &self,
        _workspace: &WorkspaceId,
        items: Vec<(Ciphertext, KeyContext)>,
    ) -> Result<Vec<Ciphertext>, SealError> {
        Ok(items
            .into_iter()
            .map(|(ciphertext, _)| {
                let version = ciphertext.key_version().unwrap_or(0);
                let rest = ciphertext
                    .as_str()
                    .splitn(3, ':')
                    .nth(2)
                    .unwrap_or(ciphertext.as_str());
                Ciphertext(format!("vault:v{}:{rest}", version + 1))
            })
            .collect())
    }
}

/// Ids handed out in order from a start, so scenarios can name them.
pub struct CountingIds(AtomicU64);

impl IdSource for CountingIds {
    fn next_id(&self) -> Uuid {
        Uuid::from_u128(u128::from(self.0.fetch_add(1, Ordering::SeqCst)))
    }
}

/// The registry as a scenario sets it up: names held, numbers from 100, providers with keys
/// elsewhere.
#[derive(Default)]
pub struct ScriptedRegistry {
    pub held: Mutex<HashMap<String, CredentialId>>,
    pub next_number: AtomicU64,
    pub keyed_elsewhere: Vec<Provider>,
}

#[async_trait]
impl CredentialNames for ScriptedRegistry {
    async fn holders(
        &self,
        _workspace: &WorkspaceId,
        names: &[NameKey],
    ) -> Result<Vec<Option<CredentialId>>, RegistryError> {
        let held = self.held.lock().unwrap();
        Ok(names
            .iter()
            .map(|key| held.get(key.as_str()).copied())
            .collect())
    }
}

#[async_trait]
impl CredentialNumbers for ScriptedRegistry {
    async fn next_numbers(&self, count: usize) -> Result<Vec<i64>, RegistryError> {
        Ok((0..count)
            .map(|_| 100 + self.next_number.fetch_add(1, Ordering::SeqCst) as i64)
            .collect())
    }
}

#[async_trait]
impl CredentialDirectory for ScriptedRegistry {
    async fn providers_with_keys(&self, _owner: &ConfigId) -> Result<Vec<Provider>, RegistryError> {
        Ok(self.keyed_elsewhere.clone())
    }
}

/// Services whose ids start at `first_id`, with `registry`.
pub fn services(first_id: u64, registry: ScriptedRegistry) -> ConfigServices {
    let registry = Arc::new(registry);
    ConfigServices {
        sealer: Arc::new(ScriptedSealer),
        ids: Arc::new(CountingIds(AtomicU64::new(first_id))),
        names: registry.clone(),
        numbers: registry.clone(),
        directory: registry,
    }
}

pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}
