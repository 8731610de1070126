//! Wiring: database, keyring, projector, command bus, authenticator, HTTP server.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aimc_api::{AppState, AuthSettings, Authenticator, Metrics, RequestLimits, Role, SystemKey};
use aimc_domain::{ConfigServices, KeyContext, ModelName, Provider, RandomIds, WorkspaceId};
use aimc_keyring::{
    Keyring, KeyringSealer, LocalKeyring, SecretSource, SharedCalls, VaultAuth, VaultKeyring,
    VaultSettings,
};
use aimc_store::{
    CommandBus, ConfigQueries, CredentialQueries, CredentialRegistry, DatabaseSettings,
    IdempotencyKeys, KeyRotations, PoolGauges, Projector,
};
use anyhow::{bail, Context};
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::configuration::{KeyringKind, Settings, VaultAuthMethod};
use crate::http::ConnectionLimits;
use secrecy::SecretString;

pub struct Application {
    listener: TcpListener,
    port: u16,
    state: Arc<AppState>,
    metrics: Arc<Metrics>,
    projector: Arc<Projector>,
    settings: Settings,
}

/// How aimc authenticates to Vault, from `AIMC_VAULT_AUTH` and the settings of its method; a
/// setting that is missing, or that belongs to another method, fails naming it.
pub fn vault_auth(settings: &Settings) -> anyhow::Result<VaultAuth> {
    let method = settings.vault_auth;
    let name = match method {
        VaultAuthMethod::Token => "token",
        VaultAuthMethod::Approle => "approle",
        VaultAuthMethod::Kubernetes => "kubernetes",
    };
    let given = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.trim().is_empty());
    let approle = [
        (
            "AIMC_VAULT_APPROLE_ROLE_ID",
            given(&settings.vault_approle_role_id),
        ),
        (
            "AIMC_VAULT_APPROLE_SECRET_ID",
            settings.vault_approle_secret_id.is_some(),
        ),
        (
            "AIMC_VAULT_APPROLE_SECRET_ID_FILE",
            settings.vault_approle_secret_id_file.is_some(),
        ),
    ];
    let kubernetes = [(
        "AIMC_VAULT_KUBERNETES_ROLE",
        given(&settings.vault_kubernetes_role),
    )];
    let others: Vec<(&str, bool)> = match method {
        VaultAuthMethod::Token => [
            approle.as_slice(),
            kubernetes.as_slice(),
            &[("AIMC_VAULT_AUTH_MOUNT", given(&settings.vault_auth_mount))],
        ]
        .concat(),
        VaultAuthMethod::Approle => [
            kubernetes.as_slice(),
            &[("AIMC_VAULT_TOKEN", settings.vault_token.is_some())],
        ]
        .concat(),
        VaultAuthMethod::Kubernetes => [
            approle.as_slice(),
            &[("AIMC_VAULT_TOKEN", settings.vault_token.is_some())],
        ]
        .concat(),
    };
    if let Some((setting, _)) = others.iter().find(|(_, set)| *set) {
        bail!("{setting} is set, but AIMC_VAULT_AUTH={name} does not use it: unset it, or choose the method it belongs to");
    }
    let mount = |default: &str| {
        settings
            .vault_auth_mount
            .as_deref()
            .map(|mount| mount.trim().trim_matches('/'))
            .filter(|mount| !mount.is_empty())
            .unwrap_or(default)
            .to_owned()
    };
    Ok(match method {
        VaultAuthMethod::Token => {
            if settings.vault_token.is_none() {
                bail!("AIMC_VAULT_TOKEN is required with AIMC_VAULT_AUTH=token (the default); or set AIMC_VAULT_AUTH=approle or kubernetes");
            }
            VaultAuth::Token
        }
        VaultAuthMethod::Approle => {
            let Some(role_id) = settings
                .vault_approle_role_id
                .as_deref()
                .map(str::trim)
                .filter(|id| !id.is_empty())
            else {
                bail!("AIMC_VAULT_APPROLE_ROLE_ID is required with AIMC_VAULT_AUTH=approle");
            };
            let secret_id = match (
                &settings.vault_approle_secret_id,
                &settings.vault_approle_secret_id_file,
            ) {
                (Some(secret), None) => SecretSource::Value(secret.clone()),
                (None, Some(path)) => SecretSource::File {
                    path: path.clone(),
                    setting: "AIMC_VAULT_APPROLE_SECRET_ID_FILE",
                },
                (Some(_), Some(_)) => bail!(
                    "AIMC_VAULT_APPROLE_SECRET_ID and AIMC_VAULT_APPROLE_SECRET_ID_FILE are both set: set one"
                ),
                (None, None) => bail!(
                    "AIMC_VAULT_APPROLE_SECRET_ID or AIMC_VAULT_APPROLE_SECRET_ID_FILE is required with AIMC_VAULT_AUTH=approle"
                ),
            };
            VaultAuth::AppRole {
                mount: mount("approle"),
                role_id: role_id.to_owned(),
                secret_id,
            }
        }
        VaultAuthMethod::Kubernetes => {
            let Some(role) = settings
                .vault_kubernetes_role
                .as_deref()
                .map(str::trim)
                .filter(|role| !role.is_empty())
            else {
                bail!("AIMC_VAULT_KUBERNETES_ROLE is required with AIMC_VAULT_AUTH=kubernetes");
            };
            VaultAuth::Kubernetes {
                mount: mount("kubernetes"),
                role: role.to_owned(),
                service_account_token: SecretSource::File {
                    path: settings.vault_kubernetes_token_file.clone(),
                    setting: "AIMC_VAULT_KUBERNETES_TOKEN_FILE",
                },
            }
        }
    })
}

/// The keyring of the settings. With Vault, this logs in (AppRole, Kubernetes) and starts the
/// task that keeps the token alive.
pub async fn build_keyring(settings: &Settings) -> anyhow::Result<Arc<dyn Keyring>> {
    Ok(match settings.keyring {
        KeyringKind::Vault => {
            let Some(address) = &settings.vault_addr else {
                bail!("AIMC_VAULT_ADDR is required with AIMC_KEYRING=vault");
            };
            let auth = vault_auth(settings)?;
            Arc::new(
                VaultKeyring::connect(
                    VaultSettings {
                        address: address.clone(),
                        token: settings
                            .vault_token
                            .clone()
                            .unwrap_or_else(|| SecretString::from("")),
                        mount: settings.vault_transit_mount.clone(),
                        key_prefix: settings.vault_key_prefix.clone(),
                        timeout: Duration::from_secs(settings.vault_timeout_seconds),
                    },
                    auth,
                )
                .await
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

/// In development mode, the settings pages' "Use a development token": a token for `dev`
/// (owner) and `demo` (viewer), like the one `./dev run` prints.
fn dev_tokens(settings: &Settings) -> anyhow::Result<Option<aimc_web::DevTokens>> {
    if !settings.dev_mode {
        return Ok(None);
    }
    let Some(secret) = settings.jwt_hs256_secret.clone() else {
        bail!("AIMC_DEV_MODE needs AIMC_JWT_HS256_SECRET to sign development tokens");
    };
    let (issuer, audience) = (settings.jwt_issuer.clone(), settings.jwt_audience.clone());
    Ok(Some(Arc::new(move || {
        let workspaces = [("dev", Role::Owner), ("demo", Role::Viewer)]
            .into_iter()
            .map(|(name, role)| (name.to_owned(), role))
            .collect();
        aimc_api::mint_hs256_token(
            &secret,
            &issuer,
            &audience,
            "dev",
            workspaces,
            None,
            8 * 3600,
        )
        .map_err(|error| error.to_string())
    })))
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
        // Concurrent commands of a workspace share their keyring calls. Built first, so a
        // Vault login that cannot work stops the start before anything else is touched.
        let keyring: Arc<dyn Keyring> = Arc::new(SharedCalls::new(build_keyring(&settings).await?));
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
            dev_tokens: dev_tokens(&settings)?,
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

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use figment::providers::{Format, Toml};
    use figment::Figment;

    use super::*;

    fn settings(toml: &str) -> Settings {
        Figment::new().merge(Toml::string(toml)).extract().unwrap()
    }

    #[test]
    fn development_tokens_exist_only_in_development_mode_and_need_a_secret_to_sign_them() {
        assert!(dev_tokens(&settings("jwt_hs256_secret = \"s\""))
            .unwrap()
            .is_none());

        let refused = dev_tokens(&settings("dev_mode = true")).err().unwrap();
        assert!(
            refused
                .to_string()
                .contains("AIMC_DEV_MODE needs AIMC_JWT_HS256_SECRET"),
            "{refused}"
        );

        let mint = dev_tokens(&settings("dev_mode = true\njwt_hs256_secret = \"s\""))
            .unwrap()
            .unwrap();
        let token = mint().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["sub"], "dev");
        assert_eq!(
            claims["workspaces"],
            serde_json::json!({"dev": "owner", "demo": "viewer"})
        );
    }
}
