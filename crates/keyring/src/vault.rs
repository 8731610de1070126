use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aimc_domain::{Ciphertext, KeyContext, WorkspaceId};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rustify::endpoint::{Endpoint, EndpointResult};
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::Instrument;
use vaultrs::api::transit::requests::{
    CreateKeyRequest, UpdateKeyConfigurationRequest, UpdateKeyConfigurationRequestBuilder,
};
use vaultrs::api::transit::responses::ReadKeyData;
use vaultrs::api::transit::KeyType;
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use crate::metrics::VAULT_REQUESTS;
use crate::vault_auth::VaultSession;
use crate::{split_versioned, ClientKey, DecryptionRecipe, KeyVersions, Keyring, KeyringError};

/// How to reach Vault / OpenBao.
#[derive(Clone)]
pub struct VaultSettings {
    pub address: String,
    pub token: SecretString,
    /// Mount path of the transit engine.
    pub mount: String,
    /// Prefix of every key name aimc creates, so several deployments can share one Vault.
    pub key_prefix: String,
    pub timeout: Duration,
}

/// How long a workspace's public key is served from memory: long enough to spare Vault a read
/// per request, short enough that a rotated key is picked up quickly.
const CLIENT_KEY_TTL: Duration = Duration::from_secs(60);

/// Vault transit: one derived `aes256-gcm96` key per workspace for stored keys, and one
/// `rsa-2048` key per workspace whose public half clients encrypt with.
pub struct VaultKeyring {
    /// The client with the current token; see [`VaultSession`].
    session: Arc<VaultSession>,
    server: VaultServer,
    mount: String,
    key_prefix: String,
    created_keys: Mutex<HashSet<String>>,
    client_keys: Mutex<HashMap<String, (ClientKey, Instant)>>,
}

impl VaultKeyring {
    pub fn new(settings: VaultSettings) -> Result<Self, KeyringError> {
        let client_settings = VaultClientSettingsBuilder::default()
            .address(&settings.address)
            .token(settings.token.expose_secret())
            .timeout(Some(settings.timeout))
            .build()
            .map_err(|error| KeyringError::Failed(format!("invalid Vault settings: {error}")))?;
        let client = VaultClient::new(client_settings).map_err(|error| {
            KeyringError::Failed(format!("cannot build the Vault client: {error}"))
        })?;
        Ok(VaultKeyring {
            server: VaultServer::of(&client.settings.address),
            session: Arc::new(VaultSession::new(client)),
            mount: settings.mount,
            key_prefix: settings.key_prefix,
            created_keys: Mutex::new(HashSet::new()),
            client_keys: Mutex::new(HashMap::new()),
        })
    }

    /// The client whose token every request carries.
    pub(crate) fn session(&self) -> &Arc<VaultSession> {
        &self.session
    }

    /// The key type sits before the workspace name, at a fixed place: with it after the name,
    /// workspace `a-client`'s key would be workspace `a`'s client key.
    pub fn workspace_key_name(&self, workspace: &WorkspaceId) -> String {
        format!("{}-aes-{}", self.key_prefix, workspace)
    }

    fn client_key_name(&self, workspace: &WorkspaceId) -> String {
        format!("{}-rsa-{}", self.key_prefix, workspace)
    }

    /// Creates the key on first use. Creating an existing transit key is a no-op, so replicas
    /// racing here are harmless.
    async fn ensure_key(
        &self,
        name: &str,
        key_type: KeyType,
        derived: bool,
    ) -> Result<(), KeyringError> {
        if self.created_keys.lock().await.contains(name) {
            return Ok(());
        }
        let mut options = CreateKeyRequest::builder();
        options.key_type(key_type).derived(derived);
        self.server
            .call(
                VaultOperation::CreateKey,
                &format!("{}/keys/{name}", self.mount),
                vaultrs::transit::key::create(
                    &*self.session.client(),
                    &self.mount,
                    name,
                    Some(&mut options),
                ),
                vault_status,
            )
            .await
            .map_err(vault_error)?;
        self.created_keys.lock().await.insert(name.to_owned());
        Ok(())
    }

    /// Reads a key, creating it on first use. A key this process created may have been destroyed
    /// since by a shred run elsewhere: it is created again, as a workspace starting over.
    async fn read_key(
        &self,
        name: &str,
        key_type: KeyType,
        derived: bool,
    ) -> Result<vaultrs::api::transit::responses::ReadKeyResponse, KeyringError> {
        let mut created_again = false;
        loop {
            self.ensure_key(name, key_type, derived).await?;
            let read = self
                .server
                .call(
                    VaultOperation::ReadKey,
                    &format!("{}/keys/{name}", self.mount),
                    vaultrs::transit::key::read(&*self.session.client(), &self.mount, name),
                    vault_status,
                )
                .await;
            match read {
                Err(ClientError::APIError { code: 404, .. }) if !created_again => {
                    self.forget_key(name).await;
                    created_again = true;
                }
                read => return read.map_err(vault_error),
            }
        }
    }

    async fn configure_key(
        &self,
        name: &str,
        mut options: UpdateKeyConfigurationRequestBuilder,
    ) -> Result<(), KeyringError> {
        self.server
            .call(
                VaultOperation::ConfigureKey,
                &format!("{}/keys/{name}/config", self.mount),
                vaultrs::transit::key::update(
                    &*self.session.client(),
                    &self.mount,
                    name,
                    Some(&mut options),
                ),
                vault_status,
            )
            .await
            .map_err(vault_error)?;
        Ok(())
    }

    /// Forgets that a key exists.
    async fn forget_key(&self, name: &str) {
        self.created_keys.lock().await.remove(name);
    }

    async fn workspace_key(&self, workspace: &WorkspaceId) -> Result<String, KeyringError> {
        let name = self.workspace_key_name(workspace);
        self.ensure_key(&name, KeyType::Aes256Gcm96, true).await?;
        Ok(name)
    }

    /// One request carrying every item (transit's `batch_input`), sent with the vaultrs client's
    /// own settings. vaultrs has no batch API, and Vault answers a batch in which some items
    /// failed with an error status whose body still holds the per-item results, so the body is
    /// read here rather than through vaultrs' error mapping.
    async fn batch<T: Serialize>(
        &self,
        operation: VaultOperation,
        key: &str,
        items: &[T],
    ) -> Result<Vec<BatchItem>, KeyringError> {
        let count = items.len();
        // Sized up front so serialising never reallocates and leaves an unzeroized copy of
        // the plain text behind; rustify's own copy of the body is beyond our reach.
        let mut body = Zeroizing::new(Vec::with_capacity(64 + items.len() * 1024));
        serde_json::to_writer(&mut *body, &BatchInput { batch_input: items })
            .map_err(|_| KeyringError::Failed("cannot encode the batch".into()))?;
        let path = format!("{}/{}/{key}", self.mount, operation.path_part());
        let endpoint = TransitBatch {
            path: path.clone(),
            body,
        };
        let client = self.session.client();
        let response = self
            .server
            .call(
                operation,
                &path,
                endpoint
                    .with_middleware(client.middle())
                    .exec(client.http()),
                rest_status,
            )
            .await;
        let (status, content) = match response {
            Ok(result) => (200, Zeroizing::new(result.raw())),
            Err(rustify::errors::ClientError::ServerResponseError { code, content }) => (
                code,
                Zeroizing::new(content.unwrap_or_default().into_bytes()),
            ),
            Err(error) => return Err(rest_error(&error)),
        };
        let envelope: BatchEnvelope =
            serde_json::from_slice(&content).map_err(|_| status_error(status, &[]))?;
        match envelope.data {
            Some(data) if data.batch_results.len() == count => Ok(data.batch_results),
            _ => Err(status_error(status, &envelope.errors.unwrap_or_default())),
        }
    }

    async fn read_client_key(&self, workspace: &WorkspaceId) -> Result<ClientKey, KeyringError> {
        let name = self.client_key_name(workspace);
        let key = self.read_key(&name, KeyType::Rsa2048, false).await?;
        let ReadKeyData::Asymmetric(versions) = key.keys else {
            return Err(KeyringError::Failed(format!(
                "transit key {name} is not asymmetric"
            )));
        };
        let (version, entry) = versions
            .iter()
            .filter_map(|(version, entry)| Some((version.parse::<u64>().ok()?, entry)))
            .max_by_key(|(version, _)| *version)
            .ok_or_else(|| KeyringError::Failed(format!("transit key {name} has no versions")))?;
        ClientKey::from_pem(&name, version, &entry.public_key)
    }
}

#[async_trait]
impl Keyring for VaultKeyring {
    #[tracing::instrument(skip_all, fields(workspace = %workspace, keys = items.len() as i64))]
    async fn encrypt(
        &self,
        workspace: &WorkspaceId,
        items: Vec<(SecretString, KeyContext)>,
    ) -> Result<Vec<Ciphertext>, KeyringError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.workspace_key(workspace).await?;
        let encoded: Vec<(Zeroizing<String>, String)> = items
            .iter()
            .map(|(plain, context)| {
                (
                    Zeroizing::new(STANDARD.encode(plain.expose_secret())),
                    STANDARD.encode(context.as_str()),
                )
            })
            .collect();
        drop(items);
        let batch: Vec<EncryptItem> = encoded
            .iter()
            .map(|(plaintext, context)| EncryptItem { plaintext, context })
            .collect();
        let results = self.batch(VaultOperation::Encrypt, &key, &batch).await?;
        results
            .into_iter()
            .map(|item| match (item.ciphertext, item.error) {
                (Some(ciphertext), None) if !ciphertext.is_empty() => Ok(Ciphertext(ciphertext)),
                (_, error) => Err(KeyringError::Failed(format!(
                    "transit refused to encrypt: {}",
                    error.unwrap_or_default()
                ))),
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(workspace = %workspace, keys = items.len() as i64))]
    async fn decrypt(
        &self,
        workspace: &WorkspaceId,
        items: Vec<(Ciphertext, KeyContext)>,
    ) -> Result<Vec<SecretString>, KeyringError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.workspace_key(workspace).await?;
        let batch = ciphertext_batch(&items);
        let results = match self.batch(VaultOperation::Decrypt, &key, &batch).await {
            // Shredded since this process last used it: nothing of the old key decrypts.
            Err(error) if is_missing_key(&error) => {
                self.forget_key(&key).await;
                return Err(KeyringError::Undecryptable { index: 0 });
            }
            results => results?,
        };
        results
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                item.into_plain()
                    .ok_or(KeyringError::Undecryptable { index })
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(workspace = %workspace))]
    async fn client_key(&self, workspace: &WorkspaceId) -> Result<ClientKey, KeyringError> {
        if let Some((key, read_at)) = self.client_keys.lock().await.get(workspace.as_str()) {
            if read_at.elapsed() < CLIENT_KEY_TTL {
                return Ok(key.clone());
            }
        }
        let key = self.read_client_key(workspace).await?;
        self.client_keys
            .lock()
            .await
            .insert(workspace.as_str().to_owned(), (key.clone(), Instant::now()));
        Ok(key)
    }

    #[tracing::instrument(skip_all, fields(workspace = %workspace, keys = ciphertexts.len() as i64))]
    async fn decrypt_from_client(
        &self,
        workspace: &WorkspaceId,
        ciphertexts: Vec<String>,
    ) -> Result<Vec<Option<SecretString>>, KeyringError> {
        let latest = self.client_key(workspace).await?.key_version;
        let name = self.client_key_name(workspace);
        // Only well-formed ciphertexts go to Vault; the rest cannot decrypt anyway.
        let normalised: Vec<Option<String>> = ciphertexts
            .iter()
            .map(|raw| normalise_client_ciphertext(raw.trim(), latest))
            .collect();
        let batch: Vec<serde_json::Value> = normalised
            .iter()
            .flatten()
            .map(|ciphertext| serde_json::json!({ "ciphertext": ciphertext }))
            .collect();
        let mut results = if batch.is_empty() {
            Vec::new()
        } else {
            match self.batch(VaultOperation::Decrypt, &name, &batch).await {
                Err(error) if is_missing_key(&error) => {
                    // Shredded since this process read its public half: nothing decrypts.
                    self.forget_key(&name).await;
                    self.client_keys.lock().await.remove(workspace.as_str());
                    Vec::new()
                }
                results => results?,
            }
        }
        .into_iter();
        Ok(normalised
            .into_iter()
            .map(|ciphertext| {
                ciphertext
                    .and_then(|_| results.next())
                    .and_then(BatchItem::into_plain)
            })
            .collect())
    }

    async fn key_versions(&self, workspace: &WorkspaceId) -> Result<KeyVersions, KeyringError> {
        let name = self.workspace_key_name(workspace);
        let key = self.read_key(&name, KeyType::Aes256Gcm96, true).await?;
        let latest = match &key.keys {
            ReadKeyData::Symmetric(versions) => {
                versions.keys().filter_map(|v| v.parse().ok()).max()
            }
            ReadKeyData::Asymmetric(versions) => {
                versions.keys().filter_map(|v| v.parse().ok()).max()
            }
        }
        .ok_or_else(|| KeyringError::Failed(format!("transit key {name} has no versions")))?;
        Ok(KeyVersions {
            latest,
            min_decryption: u32::try_from(key.min_decryption_version).unwrap_or(u32::MAX),
        })
    }

    #[tracing::instrument(skip_all, fields(workspace = %workspace))]
    async fn rotate(&self, workspace: &WorkspaceId) -> Result<KeyVersions, KeyringError> {
        let name = self.workspace_key(workspace).await?;
        self.server
            .call(
                VaultOperation::RotateKey,
                &format!("{}/keys/{name}/rotate", self.mount),
                vaultrs::transit::key::rotate(&*self.session.client(), &self.mount, &name),
                vault_status,
            )
            .await
            .map_err(vault_error)?;
        self.key_versions(workspace).await
    }

    #[tracing::instrument(skip_all, fields(workspace = %workspace, keys = items.len() as i64))]
    async fn rewrap(
        &self,
        workspace: &WorkspaceId,
        items: Vec<(Ciphertext, KeyContext)>,
    ) -> Result<Vec<Ciphertext>, KeyringError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.workspace_key(workspace).await?;
        let batch = ciphertext_batch(&items);
        let results = match self.batch(VaultOperation::Rewrap, &key, &batch).await {
            // Shredded since this process last used it: nothing of the old key decrypts.
            Err(error) if is_missing_key(&error) => {
                self.forget_key(&key).await;
                return Err(KeyringError::Undecryptable { index: 0 });
            }
            results => results?,
        };
        results
            .into_iter()
            .enumerate()
            .map(|(index, item)| match (item.ciphertext, item.error) {
                (Some(ciphertext), None) if !ciphertext.is_empty() => Ok(Ciphertext(ciphertext)),
                (_, error) if error.as_deref().is_some_and(|e| e.contains("decrypt")) => {
                    Err(KeyringError::Undecryptable { index })
                }
                (_, error) => Err(KeyringError::Failed(format!(
                    "transit refused to rewrap: {}",
                    error.unwrap_or_default()
                ))),
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(workspace = %workspace, version = i64::from(version)))]
    async fn retire_versions_below(
        &self,
        workspace: &WorkspaceId,
        version: u32,
    ) -> Result<(), KeyringError> {
        let name = self.workspace_key(workspace).await?;
        let mut options = UpdateKeyConfigurationRequest::builder();
        options.min_decryption_version(u64::from(version));
        self.configure_key(&name, options).await
    }

    #[tracing::instrument(skip_all, fields(workspace = %workspace))]
    async fn destroy_keys(&self, workspace: &WorkspaceId) -> Result<(), KeyringError> {
        self.client_keys.lock().await.remove(workspace.as_str());
        for name in [
            self.workspace_key_name(workspace),
            self.client_key_name(workspace),
        ] {
            self.forget_key(&name).await;
            let path = format!("{}/keys/{name}", self.mount);
            let read = self
                .server
                .call(
                    VaultOperation::ReadKey,
                    &path,
                    vaultrs::transit::key::read(&*self.session.client(), &self.mount, &name),
                    vault_status,
                )
                .await;
            match read {
                Ok(_) => {}
                Err(ClientError::APIError { code: 404, .. }) => continue,
                Err(error) => return Err(vault_error(error)),
            }
            // Transit refuses to delete a key until its configuration allows it.
            let mut options = UpdateKeyConfigurationRequest::builder();
            options.deletion_allowed(true);
            self.configure_key(&name, options).await?;
            self.server
                .call(
                    VaultOperation::DeleteKey,
                    &path,
                    vaultrs::transit::key::delete(&*self.session.client(), &self.mount, &name),
                    vault_status,
                )
                .await
                .map_err(vault_error)?;
            // A call racing the shred may have created it again from a stale cache entry.
            self.forget_key(&name).await;
        }
        Ok(())
    }

    /// Looks up our own token: that needs Vault reachable, unsealed, and the token still
    /// valid, which a health probe alone (it needs no token) would not show.
    async fn check(&self) -> Result<(), KeyringError> {
        let endpoint = TokenLookup;
        let client = self.session.client();
        let lookup = self
            .server
            .call(
                VaultOperation::LookupSelf,
                &endpoint.path(),
                endpoint
                    .with_middleware(client.middle())
                    .exec(client.http()),
                rest_status,
            )
            .await;
        match lookup {
            Ok(_) => Ok(()),
            Err(rustify::errors::ClientError::ServerResponseError {
                code: 401 | 403, ..
            }) => Err(KeyringError::Unavailable(
                "Vault refuses the configured token".into(),
            )),
            Err(error) => Err(rest_error(&error)),
        }
    }

    fn decryption_recipe(
        &self,
        workspace: &WorkspaceId,
        context: &KeyContext,
    ) -> Option<DecryptionRecipe> {
        Some(DecryptionRecipe {
            mount: self.mount.clone(),
            key_name: self.workspace_key_name(workspace),
            context: STANDARD.encode(context.as_str()),
        })
    }
}

/// The Vault requests aimc makes, as spans and metrics name them.
#[derive(Clone, Copy)]
enum VaultOperation {
    Encrypt,
    Decrypt,
    Rewrap,
    CreateKey,
    ReadKey,
    RotateKey,
    ConfigureKey,
    DeleteKey,
    LookupSelf,
}

impl VaultOperation {
    fn span_name(self) -> &'static str {
        match self {
            VaultOperation::Encrypt => "vault transit encrypt",
            VaultOperation::Decrypt => "vault transit decrypt",
            VaultOperation::Rewrap => "vault transit rewrap",
            VaultOperation::CreateKey => "vault transit create key",
            VaultOperation::ReadKey => "vault transit read key",
            VaultOperation::RotateKey => "vault transit rotate key",
            VaultOperation::ConfigureKey => "vault transit configure key",
            VaultOperation::DeleteKey => "vault transit delete key",
            VaultOperation::LookupSelf => "vault token lookup-self",
        }
    }

    fn label(self) -> &'static str {
        match self {
            VaultOperation::Encrypt => "encrypt",
            VaultOperation::Decrypt => "decrypt",
            VaultOperation::Rewrap => "rewrap",
            VaultOperation::CreateKey => "create_key",
            VaultOperation::ReadKey => "read_key",
            VaultOperation::RotateKey => "rotate_key",
            VaultOperation::ConfigureKey => "configure_key",
            VaultOperation::DeleteKey => "delete_key",
            VaultOperation::LookupSelf => "lookup_self",
        }
    }

    /// The segment of a transit path that names the operation.
    fn path_part(self) -> &'static str {
        match self {
            VaultOperation::Encrypt => "encrypt",
            VaultOperation::Decrypt => "decrypt",
            VaultOperation::Rewrap => "rewrap",
            VaultOperation::CreateKey
            | VaultOperation::ReadKey
            | VaultOperation::RotateKey
            | VaultOperation::ConfigureKey
            | VaultOperation::DeleteKey => "keys",
            VaultOperation::LookupSelf => "lookup-self",
        }
    }

    fn method(self) -> &'static str {
        match self {
            VaultOperation::ReadKey | VaultOperation::LookupSelf => "GET",
            VaultOperation::DeleteKey => "DELETE",
            VaultOperation::Encrypt
            | VaultOperation::Decrypt
            | VaultOperation::Rewrap
            | VaultOperation::CreateKey
            | VaultOperation::RotateKey
            | VaultOperation::ConfigureKey => "POST",
        }
    }
}

/// Stored ciphertexts with their derivation contexts, as transit's `batch_input` takes them
/// for decrypt and rewrap.
fn ciphertext_batch(items: &[(Ciphertext, KeyContext)]) -> Vec<serde_json::Value> {
    items
        .iter()
        .map(|(ciphertext, context)| {
            serde_json::json!({
                "ciphertext": ciphertext.as_str(),
                "context": STANDARD.encode(context.as_str()),
            })
        })
        .collect()
}

/// Where Vault listens, as the CLIENT spans of its requests name it.
struct VaultServer {
    /// The configured address without a trailing slash; Vault's API is under `/v1/`.
    base: String,
    host: Option<String>,
    port: Option<u16>,
}

impl VaultServer {
    fn of(address: &url::Url) -> Self {
        VaultServer {
            base: address.as_str().trim_end_matches('/').to_owned(),
            host: address.host_str().map(str::to_owned),
            port: address.port_or_known_default(),
        }
    }

    /// Runs one request to Vault inside a CLIENT span that follows OpenTelemetry's HTTP
    /// conventions, and times it. Bodies are never recorded: they hold plain text or
    /// ciphertext. `status` reads the HTTP status from the outcome where it holds one.
    async fn call<T, E>(
        &self,
        operation: VaultOperation,
        path: &str,
        request: impl Future<Output = Result<T, E>>,
        status: impl Fn(&Result<T, E>) -> Option<u16>,
    ) -> Result<T, E> {
        let span = tracing::info_span!(
            "vault",
            otel.name = operation.span_name(),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = operation.method(),
            http.response.status_code = tracing::field::Empty,
            server.address = self.host.as_deref(),
            server.port = self.port.map(i64::from),
            url.full = format!("{}/v1/{path}", self.base),
            error.type = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = request.instrument(span.clone()).await;
        let elapsed = started.elapsed().as_secs_f64();
        let status = status(&result);
        if let Some(status) = status {
            span.record("http.response.status_code", i64::from(status));
        }
        let error = match (&result, status) {
            (_, Some(status)) if status >= 400 => Some(status.to_string()),
            (Err(_), _) => Some("_OTHER".to_owned()),
            _ => None,
        };
        if let Some(error) = &error {
            span.record("error.type", error.as_str());
            span.record("otel.status_code", "error");
        }
        let outcome = if error.is_some() { "error" } else { "ok" };
        VAULT_REQUESTS
            .with_label_values(&[operation.label(), outcome])
            .observe(elapsed);
        result
    }
}

/// The status of a request sent through rustify, when one came back.
fn rest_status<T: DeserializeOwned + Send + Sync>(
    result: &Result<EndpointResult<T>, rustify::errors::ClientError>,
) -> Option<u16> {
    match result {
        Ok(response) => Some(response.response.status().as_u16()),
        Err(rustify::errors::ClientError::ServerResponseError { code, .. }) => Some(*code),
        Err(_) => None,
    }
}

/// The status of a failed vaultrs call; vaultrs keeps that of a successful one to itself.
fn vault_status<T>(result: &Result<T, ClientError>) -> Option<u16> {
    match result {
        Ok(_) => None,
        Err(ClientError::APIError { code, .. }) => Some(*code),
        Err(ClientError::RestClientError {
            source: rustify::errors::ClientError::ServerResponseError { code, .. },
        }) => Some(*code),
        Err(_) => None,
    }
}

/// `vault:vN:BASE64` as given, or bare standard base64 completed with the latest key version.
fn normalise_client_ciphertext(raw: &str, latest_version: u64) -> Option<String> {
    let (version, payload) = match split_versioned(raw) {
        Some((version, payload)) if raw.starts_with("vault:") => (version, payload),
        Some(_) => return None,
        None => (latest_version, raw),
    };
    let decoded = STANDARD.decode(payload).ok()?;
    if decoded.is_empty() {
        return None;
    }
    Some(format!("vault:v{version}:{payload}"))
}

struct TransitBatch {
    path: String,
    body: Zeroizing<Vec<u8>>,
}

impl Endpoint for TransitBatch {
    type Response = serde_json::Value;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::POST
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(Some(self.body.to_vec()))
    }
}

#[derive(Serialize)]
struct BatchInput<'a, T> {
    batch_input: &'a [T],
}

#[derive(Serialize)]
struct EncryptItem<'a> {
    plaintext: &'a str,
    context: &'a str,
}

struct TokenLookup;

impl Endpoint for TokenLookup {
    type Response = serde_json::Value;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        "auth/token/lookup-self".to_owned()
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::GET
    }
}

#[derive(Deserialize)]
struct BatchEnvelope {
    data: Option<BatchData>,
    errors: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct BatchData {
    batch_results: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    ciphertext: Option<String>,
    plaintext: Option<SecretString>,
    error: Option<String>,
}

impl BatchItem {
    fn into_plain(self) -> Option<SecretString> {
        if self.error.as_deref().is_some_and(|error| !error.is_empty()) {
            return None;
        }
        let decoded = Zeroizing::new(STANDARD.decode(self.plaintext?.expose_secret()).ok()?);
        let text = std::str::from_utf8(&decoded).ok()?;
        if text.is_empty() {
            return None;
        }
        Some(SecretString::from(text))
    }
}

/// Vault's answer by status: 5xx, 429 and 503 (sealed) mean try again later, and so does a
/// refused token (401/403): an operator has to renew it, the request itself was fine.
/// Transit's answer to an operation on a key that does not exist (destroyed by a shred). The
/// workspace's next write creates the key again.
fn is_missing_key(error: &KeyringError) -> bool {
    matches!(error, KeyringError::Failed(message) if message.contains("encryption key not found"))
}

fn status_error(status: u16, errors: &[String]) -> KeyringError {
    let detail = if errors.is_empty() {
        format!("status {status}")
    } else {
        format!("status {status}: {}", errors.join("; "))
    };
    match status {
        401 | 403 | 429 | 500..=599 => {
            KeyringError::Unavailable(format!("Vault answered {detail}"))
        }
        _ => KeyringError::Failed(format!("Vault answered {detail}")),
    }
}

/// Only the kind of failure and Vault's own messages are kept: rustify's errors can hold the
/// response body, which for a decrypt is plain text.
fn rest_error(error: &rustify::errors::ClientError) -> KeyringError {
    use rustify::errors::ClientError as Rest;
    match error {
        Rest::ServerResponseError { code, .. } => status_error(*code, &[]),
        Rest::RequestError { url, .. } => {
            KeyringError::Unavailable(format!("cannot reach Vault at {url}"))
        }
        Rest::ResponseError { .. } => KeyringError::Unavailable("no response from Vault".into()),
        _ => KeyringError::Failed("unexpected answer from Vault".into()),
    }
}

fn vault_error(error: ClientError) -> KeyringError {
    match error {
        ClientError::APIError { code, errors } => status_error(code, &errors),
        ClientError::RestClientError { source } => rest_error(&source),
        _ => KeyringError::Failed("unexpected answer from Vault".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_base64_gets_the_latest_version_and_prefixed_ciphertext_keeps_its_own() {
        assert_eq!(
            normalise_client_ciphertext("AAAA", 3).as_deref(),
            Some("vault:v3:AAAA")
        );
        assert_eq!(
            normalise_client_ciphertext("vault:v1:AAAA", 3).as_deref(),
            Some("vault:v1:AAAA")
        );
        assert_eq!(normalise_client_ciphertext("not base64!", 3), None);
        assert_eq!(normalise_client_ciphertext("local:v1:AAAA", 3), None);
        assert_eq!(normalise_client_ciphertext("", 3), None);
    }
}
