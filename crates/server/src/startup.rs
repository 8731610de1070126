//! Wiring: database, keyring, projector, command bus, authenticator, HTTP server.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aimc_api::{AppState, AuthSettings, Authenticator, Metrics, RequestLimits, SystemKey};
use aimc_domain::{ConfigServices, KeyContext, ModelName, Provider, RandomIds, WorkspaceId};
use aimc_keyring::{
    Keyring, KeyringSealer, LocalKeyring, SharedCalls, VaultKeyring, VaultSettings,
};
use aimc_store::{
    CommandBus, ConfigQueries, CredentialQueries, CredentialRegistry, DatabaseSettings,
    IdempotencyKeys, KeyRotations, PoolGauges, Projector,
};
use anyhow::{bail, Context};
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::configuration::{KeyringKind, Settings};
use crate::http::ConnectionLimits;

pub struct Application {
    listener: TcpListener,
    port: u16,
    state: Arc<AppState>,
    metrics: Arc<Metrics>,
    projector: Arc<Projector>,
    settings: Settings,
}

pub fn build_keyring(settings: &Settings) -> anyhow::Result<Arc<dyn Keyring>> {
    Ok(match settings.keyring {
        KeyringKind::Vault => {
            let (Some(address), Some(token)) = (&settings.vault_addr, &settings.vault_token) else {
                bail!("AIMC_VAULT_ADDR and AIMC_VAULT_TOKEN are required with AIMC_KEYRING=vault");
            };
            Arc::new(
                VaultKeyring::new(VaultSettings {
                    address: address.clone(),
                    token: token.clone(),
                    mount: settings.vault_transit_mount.clone(),
                    key_prefix: settings.vault_key_prefix.clone(),
                    timeout: Duration::from_secs(settings.vault_timeout_seconds),
                })
                .context("Failed to configure the Vault keyring")?,
            )
        }
        KeyringKind::Local => {
            let Some(key) = &settings.encryption_key else {
                bail!("AIMC_ENCRYPTION_KEY is required with AIMC_KEYRING=local");
            };
            Arc::new(LocalKeyring::new(key).context("Failed to configure the local keyring")?)
        }
    })
}

/// The write side: the aggregates' services answered by the database and the keyring.
pub fn command_bus(pool: &PgPool, keyring: &Arc<dyn Keyring>, settings: &Settings) -> CommandBus {
    let registry = Arc::new(CredentialRegistry::new(pool.clone()));
    let services = ConfigServices {
        sealer: Arc::new(KeyringSealer(keyring.clone())),
        ids: Arc::new(RandomIds),
        names: registry.clone(),
        numbers: registry.clone(),
        directory: registry,
    };
    CommandBus::new(pool.clone(), services, settings.snapshot_every)
}

pub async fn build_authenticator(settings: &Settings) -> anyhow::Result<Authenticator> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).with_context(|| format!("Failed to read {}", path.display()))
    };
    let auth = AuthSettings {
        hs256_secret: settings.jwt_hs256_secret.clone(),
        public_key_pems: settings
            .jwt_public_key_file
            .as_deref()
            .map(read)
            .transpose()?
            .into_iter()
            .collect(),
        public_key_id: settings.jwt_public_key_id.clone(),
        jwks_json: settings.jwt_jwks_file.as_deref().map(read).transpose()?,
        jwks_url: settings
            .jwt_jwks_url
            .as_deref()
            .map(url::Url::parse)
            .transpose()
            .context("AIMC_JWT_JWKS_URL is not a URL")?,
        jwks_refresh: Duration::from_secs(settings.jwt_jwks_refresh_seconds),
        jwks_min_refetch: Duration::from_secs(settings.jwt_jwks_min_refetch_seconds),
        issuer: settings.jwt_issuer.clone(),
        audience: settings.jwt_audience.clone(),
    };
    Authenticator::new(&auth)
        .await
        .context("Failed to configure token verification")
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemKeyEntry {
    api_key: secrecy::SecretString,
    model: Option<String>,
}

/// Reads the fallback keys and encrypts them at once (one keyring call); only ciphertext is
/// kept in memory.
pub async fn load_system_keys(
    settings: &Settings,
    keyring: &Arc<dyn Keyring>,
) -> anyhow::Result<Vec<SystemKey>> {
    use figment::providers::{Format, Toml};
    let Some(path) = &settings.system_keys_file else {
        return Ok(Vec::new());
    };
    // The parser's own message can quote the offending value, which here is a key.
    let entries: std::collections::BTreeMap<String, SystemKeyEntry> = figment::Figment::from(Toml::file_exact(path))
        .extract()
        .map_err(|_| anyhow::anyhow!("Failed to read the system keys in {}: expected tables like [openai] with api_key and an optional model", path.display()))?;
    let mut keys = Vec::new();
    let mut items = Vec::new();
    for (name, entry) in entries {
        let provider = Provider::parse(&name)
            .with_context(|| format!("system keys: unknown provider [{name}]"))?;
        let default = aimc_api::SEED_002_PROVIDERS
            .iter()
            .find(|(_, p, _)| *p == provider)
            .map(|(_, _, model)| *model);
        let model = entry
            .model
            .as_deref()
            .or(default)
            .with_context(|| format!("system keys: [{name}] needs a model"))?;
        let model =
            ModelName::parse(model).with_context(|| format!("system keys: [{name}] model"))?;
        items.push((entry.api_key, KeyContext::for_system_key(provider.as_str())));
        keys.push((provider, model));
    }
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let sealed = keyring
        .encrypt(&WorkspaceId::system(), items)
        .await
        .context("Failed to encrypt the system keys")?;
    Ok(keys
        .into_iter()
        .zip(sealed)
        .map(|((provider, model), ciphertext)| SystemKey {
            provider,
            model,
            ciphertext,
        })
        .collect())
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = aimc_store::connect(&DatabaseSettings {
            url: settings.database_url()?.clone(),
            max_connections: settings.database_max_connections,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Some(settings.database_statement_timeout()),
            lock_timeout: Some(Duration::from_millis(
                settings.database_lock_timeout_ms.max(1),
            )),
        })
        .context("Failed to configure the database pool")?;
        aimc_store::migrate(&pool)
            .await
            .context("Failed to run database migrations")?;
        // Concurrent commands of a workspace share their keyring calls.
        let keyring: Arc<dyn Keyring> = Arc::new(SharedCalls::new(build_keyring(&settings)?));
        let auth = build_authenticator(&settings).await?;
        let system_keys = load_system_keys(&settings, &keyring).await?;

        let projector = Arc::new(Projector::new(pool.clone()));
        // Events appended by a process that died before projecting them.
        if let Err(error) = projector.catch_up_all().await {
            tracing::error!(%error, "start-up catch-up of the read model failed");
        }
        let metrics = Arc::new(Metrics::new());
        metrics.register(PoolGauges::new(pool.clone()));
        let state = Arc::new(AppState {
            commands: command_bus(&pool, &keyring, &settings),
            queries: ConfigQueries::new(pool.clone()),
            credentials: CredentialQueries::new(pool.clone()),
            idempotency: IdempotencyKeys::new(pool.clone()),
            rotations: KeyRotations::new(pool),
            keyring,
            auth: Arc::new(auth),
            checker: aimc_api::ProviderChecker::new(
                settings.allow_private_endpoints,
                Duration::from_secs(10),
            ),
            system_keys,
            limits: RequestLimits {
                deadline: settings.request_deadline(),
                body_read: Duration::from_millis(settings.http_body_read_timeout_ms.max(1)),
                readiness: Duration::from_millis(settings.readiness_deadline_ms.max(1)),
            },
        });

        let listener = TcpListener::bind(settings.listen.as_str())
            .await
            .with_context(|| format!("Failed to listen on {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        Ok(Application {
            listener,
            port,
            state,
            metrics,
            projector,
            settings,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let catch_up = tokio::spawn(self.projector.clone().catch_up_periodically(
            Duration::from_secs(self.settings.catch_up_interval_seconds.max(1)),
        ));
        let idempotency = self.state.idempotency.clone();
        let purge = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every.tick().await;
                if let Err(error) = idempotency.purge_expired().await {
                    tracing::warn!(%error, "expired idempotency keys were not purged");
                }
            }
        });
        tracing::info!(port = i64::from(self.port), "aimc is listening");
        let app = aimc_api::app(self.state, self.metrics);
        let limits = ConnectionLimits {
            header_read: Duration::from_millis(self.settings.http_header_read_timeout_ms.max(1)),
            keep_alive_idle: Duration::from_secs(self.settings.http_keep_alive_idle_seconds.max(1)),
            max_connections: self.settings.http_max_connections.max(1),
            shutdown_grace: Duration::from_secs(self.settings.shutdown_grace_seconds),
        };
        let result = crate::http::serve(self.listener, app, limits, shutdown).await;
        catch_up.abort();
        purge.abort();
        tracing::info!("aimc stopped");
        result
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
