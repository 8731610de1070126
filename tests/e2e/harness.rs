//! One harness for every scenario: the real service on a random port, with its own database in
//! the real Postgres and its own key names in the real OpenBao.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use aimc_api::Role;
use aimc_server::configuration::{KeyringKind, LogFormat, Settings, VaultAuthMethod};
use aimc_server::startup::Application;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, RsaPublicKey};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Every log line the process emitted, at every level, for the plain-text search.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let echo = std::env::var_os("TEST_LOG").is_some();
        let writer = move || LogWriter { sink: sink.clone(), echo };
        // Everything down to trace, so a library that logs a request body would be caught;
        // only the HTTP/2 and runtime internals, which never see payloads, are left out.
        let filter = tracing_subscriber::EnvFilter::new("trace,h2=info,hyper=info,hyper_util=info,tokio=info,runtime=info,mio=info,want=info,rustls=info");
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(writer)
            .try_init();
        logs
    })
}

struct LogWriter {
    sink: Arc<Mutex<Vec<u8>>>,
    echo: bool,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sink.lock().unwrap().extend_from_slice(buf);
        if self.echo {
            std::io::stdout().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with `./dev test`, which starts Postgres and OpenBao and exports it")
    })
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub settings: Settings,
    /// A workspace of this test's own.
    pub workspace: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Shared with replicas, so the leak search covers what every instance answered.
    secrets: Arc<Mutex<Vec<String>>>,
    responses: Arc<Mutex<Vec<String>>>,
}

/// Everything logged in this process so far.
pub fn captured_log_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

fn random_name(prefix: &str) -> String {
    format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// The repository's root, for tests that run its scripts and tools.
pub fn repository() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `$name` when it is set, `default` (relative to the repository) otherwise: where a tool the
/// suite installs (`./dev test`) is, unless the caller points elsewhere.
pub fn configured_path(name: &str, default: &str) -> std::path::PathBuf {
    std::env::var_os(name)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repository().join(default))
}

/// Fails naming `what` is missing and how to install it.
pub fn require_tool(path: &std::path::Path, what: &str, install_hint: &str) {
    assert!(
        path.exists(),
        "{what} is missing: {} does not exist. {install_hint}",
        path.display()
    );
}

/// Settings for a fresh app: own database, own Vault key names, own JWT secret.
pub async fn test_settings() -> Settings {
    captured_logs();
    let admin_url = required_env("AIMC_TEST_DATABASE_URL");
    let database = random_name("aimc_test_");
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("Failed to connect to the test Postgres");
    // The name is generated above from hex digits, so it needs no quoting beyond this.
    sqlx::query(&format!("CREATE DATABASE \"{database}\""))
        .execute(&mut admin)
        .await
        .expect("Failed to create the test database");
    let database_url = match admin_url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{database}"),
        None => panic!("AIMC_TEST_DATABASE_URL must end in /<database>"),
    };
    Settings {
        listen: "127.0.0.1:0".into(),
        database_url: Some(SecretString::from(database_url)),
        database_max_connections: 10,
        keyring: KeyringKind::Vault,
        vault_addr: Some(required_env("AIMC_VAULT_ADDR")),
        vault_token: Some(SecretString::from(required_env("AIMC_VAULT_TOKEN"))),
        vault_auth: VaultAuthMethod::Token,
        vault_auth_mount: None,
        vault_approle_role_id: None,
        vault_approle_secret_id: None,
        vault_approle_secret_id_file: None,
        vault_kubernetes_role: None,
        vault_kubernetes_token_file: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
        vault_transit_mount: "transit".into(),
        vault_key_prefix: random_name("t"),
        vault_timeout_seconds: 5,
        encryption_key: None,
        jwt_hs256_secret: Some(SecretString::from(random_name(
            "jwt-secret-for-this-test-only-",
        ))),
        jwt_public_key_file: None,
        jwt_public_key_id: None,
        jwt_jwks_file: None,
        jwt_jwks_url: None,
        jwt_jwks_refresh_seconds: 300,
        jwt_jwks_min_refetch_seconds: 30,
        jwt_issuer: "aimc".into(),
        jwt_audience: "aimc".into(),
        // The fake providers of the tests listen on loopback.
        allow_private_endpoints: true,
        dev_mode: false,
        system_keys_file: None,
        snapshot_every: 20,
        catch_up_interval_seconds: 3600,
        shutdown_grace_seconds: 5,
        request_deadline_ms: 5_000,
        readiness_deadline_ms: 1_000,
        database_statement_timeout_ms: None,
        database_lock_timeout_ms: 2_000,
        http_header_read_timeout_ms: 10_000,
        http_body_read_timeout_ms: 10_000,
        http_keep_alive_idle_seconds: 75,
        http_max_connections: 512,
        log: "trace".into(),
        log_format: LogFormat::Json,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings().await;
    configure(&mut settings);
    start(settings, random_name("ws-")).await
}

/// An app with exactly `settings`, serving `workspace`: for scenarios whose database, keys and
/// names are fixed in advance (the upgrade fixture) rather than drawn at random.
pub async fn spawn_app_from(settings: Settings, workspace: &str) -> TestApp {
    start(settings, workspace.to_owned()).await
}

/// Another instance (replica) on the same database and Vault keys as `app`.
pub async fn spawn_replica(app: &TestApp) -> TestApp {
    let mut replica = start(app.settings.clone(), app.workspace.clone()).await;
    replica.secrets = app.secrets.clone();
    replica.responses = app.responses.clone();
    replica
}

async fn start(settings: Settings, workspace: String) -> TestApp {
    let application = Application::build(settings.clone())
        .await
        .expect("Failed to build the application");
    let address = format!("http://127.0.0.1:{}", application.port());
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until(async {
        let _ = stop.await;
    }));
    let database_url = settings
        .database_url
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_owned();
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        pool: PgPool::connect(&database_url)
            .await
            .expect("Failed to connect to the test database"),
        settings,
        workspace,
        shutdown: Some(shutdown),
        server: Some(server),
        secrets: Arc::new(Mutex::new(Vec::new())),
        responses: Arc::new(Mutex::new(Vec::new())),
    }
}

impl TestApp {
    /// A token for `sub` in this test's workspace.
    pub fn token(&self, sub: &str, role: Role) -> String {
        self.token_for(sub, &[(&self.workspace, role)], None)
    }

    pub fn token_with_scope(&self, sub: &str, role: Role, scope: &str) -> String {
        self.token_for(sub, &[(&self.workspace, role)], Some(scope))
    }

    pub fn token_for(&self, sub: &str, workspaces: &[(&str, Role)], scope: Option<&str>) -> String {
        aimc_api::mint_hs256_token(
            self.settings.jwt_hs256_secret.as_ref().unwrap(),
            &self.settings.jwt_issuer,
            &self.settings.jwt_audience,
            sub,
            workspaces
                .iter()
                .map(|(ws, role)| (ws.to_string(), *role))
                .collect::<HashMap<_, _>>(),
            scope,
            600,
        )
        .unwrap()
    }

    /// The sum of a counter's series whose labels include `labels`, as operators see it on
    /// `/metrics`. Metrics are the process's: instances in one test share them.
    pub async fn counted(&self, name: &str, labels: &str) -> f64 {
        let metrics = self.request(Method::GET, "/metrics", None, None).await;
        metrics
            .text
            .lines()
            .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(labels))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        self.request_with(method, path, token, |request| match body {
            Some(body) => request.json(&body),
            None => request,
        })
        .await
    }

    pub async fn request_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> TestResponse {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = build(request).send().await.expect("request failed");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        self.responses.lock().unwrap().push(text.clone());
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        if let Err(breach) = crate::contract::check(&method, path, status, content_type, &text) {
            panic!("the response breaks the OpenAPI document: {breach}");
        }
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> TestResponse {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> TestResponse {
        self.request(Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> TestResponse {
        self.request(Method::PUT, path, Some(token), Some(body))
            .await
    }

    /// Encrypts `plain` as a client would: with the workspace's published RSA key, using an RSA
    /// implementation independent of the service's, and remembers it for the leak search.
    pub async fn encrypt_key(&self, token: &str, plain: &str) -> String {
        self.remember_secret(plain);
        let key = self.get("/api/v1/encryption-key", token).await;
        assert_eq!(key.status, StatusCode::OK, "{}", key.text);
        assert_eq!(key.body["algorithm"], "RSA-OAEP-256");
        let public = RsaPublicKey::from_public_key_pem(key.body["pem"].as_str().unwrap()).unwrap();
        let sealed = public
            .encrypt(
                &mut rand::thread_rng(),
                Oaep::new::<Sha256>(),
                plain.as_bytes(),
            )
            .unwrap();
        STANDARD.encode(sealed)
    }

    /// Stores `plain` for `service` through `/api/keys` (family D), a key with a stream of its
    /// own, and remembers it for the leak search.
    pub async fn store_key_apart(&self, token: &str, service: &str, plain: &str) -> TestResponse {
        self.remember_secret(plain);
        let stored = self
            .post(
                "/api/keys",
                token,
                json!({"service": service, "api_key": plain}),
            )
            .await;
        assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.text);
        stored
    }

    pub fn remember_secret(&self, plain: &str) {
        self.secrets.lock().unwrap().push(plain.to_owned());
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn event_types(&self, aggregate_id: &str) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence",
        )
        .bind(aggregate_id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    pub fn aggregate_id(&self, sub: &str) -> String {
        format!("{}/user:{sub}", self.workspace)
    }

    /// No plain key this test sent appears in any table, log line or response.
    pub async fn assert_no_plain_key_anywhere(&self) {
        let secrets = self.secrets.lock().unwrap().clone();
        assert!(!secrets.is_empty(), "the test sent no key to look for");
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        assert!(tables.iter().any(|t| t == "events"), "tables: {tables:?}");
        let logs = captured_log_text();
        assert!(!logs.is_empty(), "no logs were captured");
        let responses = self.responses.lock().unwrap().join("\n");
        // Transit receives plain text as base64: a leak could take that form too.
        let forms: Vec<String> = secrets
            .iter()
            .flat_map(|secret| [secret.clone(), STANDARD.encode(secret)])
            .collect();
        // One scan per table for every form at once: a test that sent many keys stays quick.
        for table in &tables {
            assert!(table
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()));
            let hits: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM \"{table}\" AS r
                  WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) AS s(form) WHERE strpos(r::text, s.form) > 0)"
            ))
            .bind(&forms)
            .fetch_one(&self.pool)
            .await
            .unwrap();
            assert_eq!(hits, 0, "a plain key was found in table {table}");
        }
        for secret in &forms {
            assert!(
                !logs.contains(secret.as_str()),
                "a plain key was found in the logs"
            );
            assert!(
                !responses.contains(secret.as_str()),
                "a plain key was found in a response"
            );
        }
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Seed 000's create request, with real client-side ciphertexts in place of its placeholders.
pub fn seed_000_create_body(openai: &str, anthropic: &str) -> Value {
    serde_json::json!({
        "models": [
            {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": openai, "isPaid": true},
            {"provider": "Anthropic", "type": "chat", "model": "claude-2", "apiKeyEncrypted": anthropic, "isPaid": true},
            {"provider": "Ollama", "type": "chat", "model": "llama3", "apiKeyEncrypted": null, "isPaid": false}
        ],
        "system_prompt": "You are a helpful AI assistant."
    })
}

/// Seed 000's three models with no `apiKeyEncrypted`, which keeps whatever keys they have.
pub fn seed_000_models_keeping_keys() -> Value {
    serde_json::json!([
        {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "isPaid": true},
        {"provider": "Anthropic", "type": "chat", "model": "claude-2", "isPaid": true},
        {"provider": "Ollama", "type": "chat", "model": "llama3", "isPaid": false}
    ])
}

pub const OPENAI_KEY: &str = "sk-proj-OPENAI-e2e-0123456789abcdefcdef";
pub const ANTHROPIC_KEY: &str = "sk-ant-api03-e2e-ANTHROPIC-9876543210wxyz";

/// A configuration created from seed 000's request, for scenarios that start from one.
pub async fn create_seed_config(app: &TestApp, token: &str) -> TestResponse {
    let openai = app.encrypt_key(token, OPENAI_KEY).await;
    let anthropic = app.encrypt_key(token, ANTHROPIC_KEY).await;
    let response = app
        .post(
            "/api/v1/create/ai-model-config",
            token,
            seed_000_create_body(&openai, &anthropic),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
    response
}

/// Removes the fields aimc adds to seed 000's response shape (key hints).
pub fn without_hints(mut body: Value) -> Value {
    if let Some(models) = body["models"].as_array_mut() {
        for model in models {
            model.as_object_mut().unwrap().remove("keyHint");
        }
    }
    body
}
