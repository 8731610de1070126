use std::sync::Arc;

use aimc_domain::{
    Ciphertext, KeyContext, KeyHint, KeySealer, SealError, SealRequest, SealedKey, WorkspaceId,
};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::{Keyring, KeyringError};

/// The aggregate's [`KeySealer`] port over a [`Keyring`]: client-encrypted keys are decrypted
/// in one batch, then every key is encrypted under the workspace key in one batch.
pub struct KeyringSealer(pub Arc<dyn Keyring>);

fn to_seal_error(error: KeyringError) -> SealError {
    match error {
        KeyringError::Unavailable(reason) => SealError::Unavailable(reason),
        KeyringError::Undecryptable { index } => SealError::Undecryptable { index },
        KeyringError::Failed(reason) => SealError::Failed(reason),
    }
}

#[async_trait]
impl KeySealer for KeyringSealer {
    #[tracing::instrument(skip_all, fields(workspace = %workspace, keys = requests.len() as i64))]
    async fn seal(
        &self,
        workspace: &WorkspaceId,
        requests: Vec<SealRequest>,
    ) -> Result<Vec<SealedKey>, SealError> {
        let mut client_positions = Vec::new();
        let mut client_ciphertexts = Vec::new();
        for (position, request) in requests.iter().enumerate() {
            if let SealRequest::ClientEncrypted { ciphertext, .. } = request {
                client_positions.push(position);
                client_ciphertexts.push(ciphertext.clone());
            }
        }
        let mut opened = if client_ciphertexts.is_empty() {
            Vec::new()
        } else {
            self.0
                .decrypt_from_client(workspace, client_ciphertexts)
                .await
                .map_err(to_seal_error)?
        }
        .into_iter();

        let mut items = Vec::with_capacity(requests.len());
        for (position, request) in requests.into_iter().enumerate() {
            let (plain, context) = match request {
                SealRequest::Plain { plain, context } => (plain, context),
                SealRequest::ClientEncrypted { context, .. } => match opened.next().flatten() {
                    Some(plain) => (plain, context),
                    None => {
                        debug_assert!(client_positions.contains(&position));
                        return Err(SealError::Undecryptable { index: position });
                    }
                },
            };
            // `echo $KEY | openssl ...` adds a newline no provider's key contains.
            let trimmed = plain.expose_secret().trim();
            if trimmed.is_empty() {
                return Err(SealError::EmptyKey { index: position });
            }
            let plain = if trimmed.len() == plain.expose_secret().len() {
                plain
            } else {
                SecretString::from(trimmed)
            };
            items.push((plain, context));
        }
        let hints: Vec<KeyHint> = items
            .iter()
            .map(|(plain, _)| KeyHint::from_plain(plain))
            .collect();
        let ciphertexts = self
            .0
            .encrypt(workspace, items)
            .await
            .map_err(to_seal_error)?;
        Ok(ciphertexts
            .into_iter()
            .zip(hints)
            .map(|(ciphertext, hint)| SealedKey { ciphertext, hint })
            .collect())
    }

    async fn rewrap(
        &self,
        workspace: &WorkspaceId,
        items: Vec<(Ciphertext, KeyContext)>,
    ) -> Result<Vec<Ciphertext>, SealError> {
        self.0.rewrap(workspace, items).await.map_err(to_seal_error)
    }
}
