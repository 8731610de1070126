use std::collections::HashMap;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aimc_domain::{Ciphertext, KeyContext, WorkspaceId};
use async_trait::async_trait;
use aws_lc_rs::rsa::{OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA256_MGF1SHA256};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hkdf::Hkdf;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::RsaPrivateKey;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::{split_versioned, ClientKey, DecryptionRecipe, Keyring, KeyringError};

const NONCE_LEN: usize = 12;

/// AES-256-GCM under keys derived (HKDF-SHA256) from one master key, for single-node setups
/// without Vault. Each credential gets its own derived key and its context is the associated
/// data, so a ciphertext moved to another credential or workspace does not decrypt.
///
/// The client-side key pair is derived from the master key too, so every replica sharing the
/// master key serves the same public key without storing a private key anywhere. The `rsa`
/// crate only derives it; decryption, which callers can drive with ciphertexts of their
/// choosing, is aws-lc's constant-time OAEP (the `rsa` crate's is not, RUSTSEC-2023-0071).
pub struct LocalKeyring {
    master: Zeroizing<[u8; 32]>,
    client_keys: Mutex<HashMap<String, Arc<ClientKeyPair>>>,
}

struct ClientKeyPair {
    public_pem: String,
    decrypting: OaepPrivateDecryptingKey,
}

impl LocalKeyring {
    /// `encoded_key` is the standard base64 of 32 random bytes (`openssl rand -base64 32`).
    pub fn new(encoded_key: &SecretString) -> Result<Self, KeyringError> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(encoded_key.expose_secret().trim())
                .map_err(|_| KeyringError::Failed("AIMC_ENCRYPTION_KEY is not base64".into()))?,
        );
        let master: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
            KeyringError::Failed("AIMC_ENCRYPTION_KEY must decode to exactly 32 bytes".into())
        })?;
        Ok(LocalKeyring {
            master: Zeroizing::new(master),
            client_keys: Mutex::new(HashMap::new()),
        })
    }

    fn derive(&self, info: &str) -> Zeroizing<[u8; 32]> {
        let mut key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(None, self.master.as_slice())
            .expand(info.as_bytes(), key.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        key
    }

    fn cipher(&self, workspace: &WorkspaceId, context: &KeyContext) -> Aes256Gcm {
        let key = self.derive(&format!(
            "aimc/v1/credential/{workspace}/{}",
            context.as_str()
        ));
        Aes256Gcm::new_from_slice(key.as_slice()).expect("32-byte key")
    }

    async fn key_pair(&self, workspace: &WorkspaceId) -> Result<Arc<ClientKeyPair>, KeyringError> {
        let mut keys = self.client_keys.lock().await;
        if let Some(key) = keys.get(workspace.as_str()) {
            return Ok(key.clone());
        }
        let seed = self.derive(&format!("aimc/v1/client-key/{workspace}"));
        let failed =
            |what: &str| KeyringError::Failed(format!("cannot {what} the workspace key pair"));
        let key = tokio::task::spawn_blocking(move || {
            let mut rng = ChaCha20Rng::from_seed(*seed);
            RsaPrivateKey::new(&mut rng, 2048)
        })
        .await
        .map_err(|_| failed("generate"))?
        .map_err(|_| failed("generate"))?;
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| failed("encode"))?;
        let pkcs8 = key.to_pkcs8_der().map_err(|_| failed("encode"))?;
        let decrypting = PrivateDecryptingKey::from_pkcs8(pkcs8.as_bytes())
            .ok()
            .and_then(|key| OaepPrivateDecryptingKey::new(key).ok())
            .ok_or_else(|| failed("load"))?;
        let pair = Arc::new(ClientKeyPair {
            public_pem,
            decrypting,
        });
        keys.insert(workspace.as_str().to_owned(), pair.clone());
        Ok(pair)
    }
}

#[async_trait]
impl Keyring for LocalKeyring {
    async fn encrypt(
        &self,
        workspace: &WorkspaceId,
        items: Vec<(SecretString, KeyContext)>,
    ) -> Result<Vec<Ciphertext>, KeyringError> {
        items
            .into_iter()
            .map(|(plain, context)| {
                let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
                let sealed = self
                    .cipher(workspace, &context)
                    .encrypt(
                        &nonce,
                        Payload {
                            msg: plain.expose_secret().as_bytes(),
                            aad: context.as_str().as_bytes(),
                        },
                    )
                    .map_err(|_| KeyringError::Failed("AES-GCM encryption failed".into()))?;
                let mut blob = nonce.to_vec();
                blob.extend_from_slice(&sealed);
                Ok(Ciphertext(format!("local:v1:{}", STANDARD.encode(blob))))
            })
            .collect()
    }

    async fn decrypt(
        &self,
        workspace: &WorkspaceId,
        items: Vec<(Ciphertext, KeyContext)>,
    ) -> Result<Vec<SecretString>, KeyringError> {
        items
            .into_iter()
            .enumerate()
            .map(|(index, (ciphertext, context))| {
                let undecryptable = KeyringError::Undecryptable { index };
                let (_, payload) = split_versioned(ciphertext.as_str())
                    .filter(|(version, _)| {
                        *version == 1 && ciphertext.as_str().starts_with("local:")
                    })
                    .ok_or(undecryptable.clone())?;
                let blob = STANDARD
                    .decode(payload)
                    .map_err(|_| undecryptable.clone())?;
                if blob.len() <= NONCE_LEN {
                    return Err(undecryptable);
                }
                let (nonce, sealed) = blob.split_at(NONCE_LEN);
                let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| undecryptable.clone())?;
                let plain = Zeroizing::new(
                    self.cipher(workspace, &context)
                        .decrypt(
                            &Nonce::from(nonce),
                            Payload {
                                msg: sealed,
                                aad: context.as_str().as_bytes(),
                            },
                        )
                        .map_err(|_| undecryptable.clone())?,
                );
                let text = std::str::from_utf8(&plain).map_err(|_| undecryptable)?;
                Ok(SecretString::from(text))
            })
            .collect()
    }

    async fn client_key(&self, workspace: &WorkspaceId) -> Result<ClientKey, KeyringError> {
        let pair = self.key_pair(workspace).await?;
        ClientKey::from_pem(&format!("aimc-local-rsa-{workspace}"), 1, &pair.public_pem)
    }

    async fn decrypt_from_client(
        &self,
        workspace: &WorkspaceId,
        ciphertexts: Vec<String>,
    ) -> Result<Vec<Option<SecretString>>, KeyringError> {
        let pair = self.key_pair(workspace).await?;
        Ok(ciphertexts
            .iter()
            .map(|raw| {
                let raw = raw.trim();
                let payload = match split_versioned(raw) {
                    Some((1, payload)) if raw.starts_with("vault:") => payload,
                    Some(_) => return None,
                    None => raw,
                };
                let sealed = STANDARD.decode(payload).ok()?;
                let mut buffer = Zeroizing::new(vec![0u8; pair.decrypting.min_output_size()]);
                let plain = pair
                    .decrypting
                    .decrypt(&OAEP_SHA256_MGF1SHA256, &sealed, &mut buffer, None)
                    .ok()?;
                let text = std::str::from_utf8(plain)
                    .ok()
                    .filter(|text| !text.is_empty())?;
                Some(SecretString::from(text))
            })
            .collect())
    }

    async fn check(&self) -> Result<(), KeyringError> {
        Ok(())
    }

    fn decryption_recipe(&self, _: &WorkspaceId, _: &KeyContext) -> Option<DecryptionRecipe> {
        None
    }
}

#[cfg(test)]
mod tests {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::{Oaep, RsaPublicKey};

    use super::*;
    use aimc_domain::CredentialId;

    fn keyring() -> LocalKeyring {
        LocalKeyring::new(&SecretString::from(STANDARD.encode([7u8; 32]))).unwrap()
    }

    fn context(n: u128) -> KeyContext {
        let config = aimc_domain::ConfigId::parse("w1/user:alice").unwrap();
        KeyContext::for_credential(&config, CredentialId(uuid::Uuid::from_u128(n)))
    }

    #[tokio::test]
    async fn a_sealed_key_opens_only_for_its_own_credential_and_workspace() {
        let keyring = keyring();
        let w1 = WorkspaceId::parse("w1").unwrap();
        let w2 = WorkspaceId::parse("w2").unwrap();
        let sealed = keyring
            .encrypt(
                &w1,
                vec![(SecretString::from("sk-secret-value-1234"), context(1))],
            )
            .await
            .unwrap();
        assert!(!sealed[0].as_str().contains("sk-secret"));
        let opened = keyring
            .decrypt(&w1, vec![(sealed[0].clone(), context(1))])
            .await
            .unwrap();
        assert_eq!(opened[0].expose_secret(), "sk-secret-value-1234");
        for (workspace, context) in [(&w1, context(2)), (&w2, context(1))] {
            let refused = keyring
                .decrypt(workspace, vec![(sealed[0].clone(), context)])
                .await;
            assert_eq!(
                refused.unwrap_err(),
                KeyringError::Undecryptable { index: 0 }
            );
        }
    }

    #[tokio::test]
    async fn a_key_encrypted_with_the_published_public_key_opens() {
        let keyring = keyring();
        let w1 = WorkspaceId::parse("w1").unwrap();
        let published = keyring.client_key(&w1).await.unwrap();
        let public = RsaPublicKey::from_public_key_pem(&published.pem).unwrap();
        let sealed = public
            .encrypt(
                &mut rand::thread_rng(),
                Oaep::new::<Sha256>(),
                b"sk-client-side-0001",
            )
            .unwrap();
        let encoded = STANDARD.encode(sealed);
        let opened = keyring
            .decrypt_from_client(
                &w1,
                vec![
                    encoded.clone(),
                    format!("vault:v1:{encoded}"),
                    "nope".into(),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            opened[0].as_ref().unwrap().expose_secret(),
            "sk-client-side-0001"
        );
        assert_eq!(
            opened[1].as_ref().unwrap().expose_secret(),
            "sk-client-side-0001"
        );
        assert!(opened[2].is_none());
    }
}
