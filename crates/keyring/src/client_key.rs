use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;
use serde_json::{json, Value};

use crate::KeyringError;

/// The public half of a workspace's RSA key pair, which clients encrypt keys with
/// (RSA-OAEP with SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    pub key_version: u64,
    /// SubjectPublicKeyInfo PEM.
    pub pem: String,
    pub jwk: Value,
}

impl ClientKey {
    pub const ALGORITHM: &'static str = "RSA-OAEP-256";

    pub fn from_pem(key_id: &str, key_version: u64, pem: &str) -> Result<Self, KeyringError> {
        let key = RsaPublicKey::from_public_key_pem(pem).map_err(|_| {
            KeyringError::Failed("the workspace public key is not an RSA SPKI PEM".into())
        })?;
        let jwk = json!({
            "kty": "RSA",
            "use": "enc",
            "alg": Self::ALGORITHM,
            "kid": format!("{key_id}:v{key_version}"),
            "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        });
        Ok(ClientKey {
            key_version,
            pem: pem.to_owned(),
            jwk,
        })
    }
}
