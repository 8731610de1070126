//! Settings from `AIMC_*` environment variables, optionally layered over a TOML file
//! (`AIMC_CONFIG_FILE`, or `aimc.toml` in the working directory when present).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyringKind {
    #[default]
    Vault,
    Local,
}

/// How aimc authenticates to Vault: `AIMC_VAULT_AUTH`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum VaultAuthMethod {
    /// `AIMC_VAULT_TOKEN`, renewed while it is renewable and has a TTL.
    #[default]
    Token,
    /// A login with `AIMC_VAULT_APPROLE_ROLE_ID` and a secret id.
    Approle,
    /// A login with the pod's service account token.
    Kubernetes,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
/// Twice the cores plus two, at least four. Connections beyond what the CPUs can run at once
/// only add context switches: on a 2-core machine reads served 7,500/s with 20 connections and
/// 12,000/s with 4 to 6. A replica cannot keep more busy than its own cores allow, so its cores
/// are the measure; set `AIMC_DATABASE_MAX_CONNECTIONS` when the database is the smaller side.
fn default_max_connections() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get()) as u32;
    (2 * cores + 2).max(4)
}
fn default_mount() -> String {
    "transit".into()
}
fn default_prefix() -> String {
    "aimc".into()
}
fn default_vault_timeout() -> u64 {
    5
}
fn default_kubernetes_token_file() -> PathBuf {
    "/var/run/secrets/kubernetes.io/serviceaccount/token".into()
}
fn default_issuer() -> String {
    "aimc".into()
}
fn default_jwks_refresh() -> u64 {
    300
}
fn default_jwks_min_refetch() -> u64 {
    30
}
fn default_snapshot_every() -> usize {
    20
}
fn default_catch_up_interval() -> u64 {
    30
}
fn default_grace() -> u64 {
    20
}
fn default_request_deadline() -> u64 {
    5_000
}
fn default_readiness_deadline() -> u64 {
    1_000
}
fn default_lock_timeout() -> u64 {
    2_000
}
fn default_header_read_timeout() -> u64 {
    10_000
}
fn default_body_read_timeout() -> u64 {
    10_000
}
fn default_keep_alive_idle() -> u64 {
    75
}
fn default_max_connections_open() -> usize {
    512
}
fn default_log() -> String {
    "info".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free one.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Held as a secret: it usually carries the database password.
    #[serde(serialize_with = "redacted")]
    pub database_url: Option<SecretString>,
    #[serde(default = "default_max_connections")]
    pub database_max_connections: u32,
    #[serde(default)]
    pub keyring: KeyringKind,
    pub vault_addr: Option<String>,
    #[serde(serialize_with = "redacted")]
    pub vault_token: Option<SecretString>,
    /// How aimc gets its Vault token: `token` (`AIMC_VAULT_TOKEN`), `approle` or `kubernetes`.
    #[serde(default)]
    pub vault_auth: VaultAuthMethod,
    /// Where the AppRole or Kubernetes auth method is mounted; the method's name when unset.
    pub vault_auth_mount: Option<String>,
    pub vault_approle_role_id: Option<String>,
    #[serde(serialize_with = "redacted")]
    pub vault_approle_secret_id: Option<SecretString>,
    /// A file holding the secret id, read at every login (an agent may rewrite it).
    pub vault_approle_secret_id_file: Option<PathBuf>,
    pub vault_kubernetes_role: Option<String>,
    /// The service account token presented to Vault's Kubernetes auth, read at every login.
    #[serde(default = "default_kubernetes_token_file")]
    pub vault_kubernetes_token_file: PathBuf,
    #[serde(default = "default_mount")]
    pub vault_transit_mount: String,
    #[serde(default = "default_prefix")]
    pub vault_key_prefix: String,
    #[serde(default = "default_vault_timeout")]
    pub vault_timeout_seconds: u64,
    /// Base64 of 32 bytes, for `keyring = "local"`.
    #[serde(serialize_with = "redacted")]
    pub encryption_key: Option<SecretString>,
    #[serde(serialize_with = "redacted")]
    pub jwt_hs256_secret: Option<SecretString>,
    pub jwt_public_key_file: Option<PathBuf>,
    /// The `kid` of the PEM key, when its tokens carry one.
    pub jwt_public_key_id: Option<String>,
    pub jwt_jwks_file: Option<PathBuf>,
    /// Where an identity provider publishes its keys (an http or https URL); fetched at start,
    /// which fails if it cannot be, then refreshed.
    #[serde(default, deserialize_with = "http_url")]
    pub jwt_jwks_url: Option<String>,
    /// How often the keys at the JWKS URL are fetched again.
    #[serde(default = "default_jwks_refresh")]
    pub jwt_jwks_refresh_seconds: u64,
    /// At most one fetch of the JWKS URL per this interval for tokens naming an unknown `kid`.
    #[serde(default = "default_jwks_min_refetch")]
    pub jwt_jwks_min_refetch_seconds: u64,
    #[serde(default = "default_issuer")]
    pub jwt_issuer: String,
    #[serde(default = "default_issuer")]
    pub jwt_audience: String,
    /// A TOML file of fallback keys, one table per provider: `[anthropic]` with `api_key` and
    /// an optional `model` (seed 002's default otherwise).
    pub system_keys_file: Option<PathBuf>,
    /// Let credential tests call private, loopback and link-local addresses (a local Ollama,
    /// tests); off by default so a stored endpoint cannot reach internal services.
    #[serde(default)]
    pub allow_private_endpoints: bool,
    /// Development mode: the settings pages offer a button that mints a token (`sub` dev,
    /// workspaces `dev` as owner and `demo` as viewer) with `AIMC_JWT_HS256_SECRET`. Anyone who
    /// can reach the page gets that token, so never in production.
    #[serde(default)]
    pub dev_mode: bool,
    /// Events between snapshots of an aggregate.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: usize,
    /// How often the read model is checked against the event log.
    #[serde(default = "default_catch_up_interval")]
    pub catch_up_interval_seconds: u64,
    /// How long a request may spend waiting on PostgreSQL and Vault in all before it ends in
    /// 503 with `Retry-After`. Calls to AI providers (credential tests) have their own limit.
    #[serde(default = "default_request_deadline")]
    pub request_deadline_ms: u64,
    /// How long `/readyz` waits for its checks before reporting a dependency unavailable.
    #[serde(default = "default_readiness_deadline")]
    pub readiness_deadline_ms: u64,
    /// PostgreSQL's `statement_timeout` on the service's connections; the request deadline when
    /// unset.
    pub database_statement_timeout_ms: Option<u64>,
    /// PostgreSQL's `lock_timeout` on the service's connections.
    #[serde(default = "default_lock_timeout")]
    pub database_lock_timeout_ms: u64,
    /// How long a client has to send a request's headers once it started sending them.
    #[serde(default = "default_header_read_timeout")]
    pub http_header_read_timeout_ms: u64,
    /// How long a client has to send a request's body; a stalled body closes the connection.
    #[serde(default = "default_body_read_timeout")]
    pub http_body_read_timeout_ms: u64,
    /// How long a keep-alive connection may sit idle between requests. Keep it above the idle
    /// timeout of a load balancer in front (60 s on most), or the balancer may reuse a
    /// connection just as it closes.
    #[serde(default = "default_keep_alive_idle")]
    pub http_keep_alive_idle_seconds: u64,
    /// Open connections at most; keep it well below the process's descriptor limit. At the cap
    /// a new connection closes the one that has been idle longest, or is refused when every
    /// connection has a request in flight.
    #[serde(default = "default_max_connections_open")]
    pub http_max_connections: usize,
    /// How long in-flight requests may take to finish on shutdown.
    #[serde(default = "default_grace")]
    pub shutdown_grace_seconds: u64,
    /// A tracing filter, e.g. `info` or `info,aimc_store=debug`.
    #[serde(default = "default_log")]
    pub log: String,
    #[serde(default)]
    pub log_format: LogFormat,
}

/// `AIMC_*` variables that belong to the tools around the service (the config file's path,
/// `./dev`, the test suite, the benchmark), not to its settings.
const NOT_SETTINGS: [&str; 12] = [
    "config_file",
    "test_database_url",
    "local_pg_port",
    "local_bao_port",
    "pg_bin",
    "clients_venv",
    "clients_node",
    "clients_node_modules",
    "bench_json",
    "browser_node_modules",
    "chromium",
    "update_docs_screenshots",
];

/// An absolute http or https URL.
fn http_url<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let Some(raw) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    match url::Url::parse(&raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(Some(raw)),
        _ => Err(serde::de::Error::invalid_value(
            serde::de::Unexpected::Str(&raw),
            &"an http or https URL",
        )),
    }
}

/// A secret shows that it is set, never what it is.
fn redacted<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str("[redacted]"),
        None => serializer.serialize_none(),
    }
}

impl Settings {
    /// The settings from the TOML file and `AIMC_*` variables; a key that is no setting, or a
    /// value that does not fit one, fails naming it.
    ///
    /// `file` is `aimc --config`; without it, `AIMC_CONFIG_FILE`, else `./aimc.toml` if present.
    pub fn load_from(file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        match file
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("AIMC_CONFIG_FILE").map(PathBuf::from))
        {
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => figment = figment.merge(Toml::file("aimc.toml")),
        }
        figment
            .merge(Env::prefixed("AIMC_").ignore(&NOT_SETTINGS))
            .extract()
            .map_err(|error| {
                // Every problem, each with the key and where it came from.
                let problems: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
                anyhow::anyhow!(
                    "Failed to read the configuration (AIMC_* variables, TOML file): {}",
                    problems.join("; ")
                )
            })
    }

    /// The effective settings as TOML, secrets redacted: `aimc config show`.
    pub fn to_toml(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        let mut out = String::new();
        if let serde_json::Value::Object(fields) = value {
            let mut fields: Vec<_> = fields.into_iter().collect();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, value) in fields {
                match value {
                    serde_json::Value::Null => out.push_str(&format!("# {name} is not set\n")),
                    value => out.push_str(&format!("{name} = {value}\n")),
                }
            }
        }
        out
    }

    pub fn request_deadline(&self) -> Duration {
        Duration::from_millis(self.request_deadline_ms.max(1))
    }

    pub fn database_statement_timeout(&self) -> Duration {
        self.database_statement_timeout_ms
            .map_or(self.request_deadline(), |ms| {
                Duration::from_millis(ms.max(1))
            })
    }

    pub fn database_url(&self) -> anyhow::Result<&SecretString> {
        match &self.database_url {
            Some(url) => Ok(url),
            None => bail!("AIMC_DATABASE_URL is not set"),
        }
    }
}
