//! Telemetry as an operator's collector receives it: the `aimc` binary, configured only by the
//! standard OpenTelemetry variables, exports its spans over OTLP/HTTP (protobuf) to a collector
//! inside this test, which checks the span tree of a model configuration PUT.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener as StdListener;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aimc_api::{mint_hs256_token, Role};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Route};
use prost::Message;
use reqwest::{Method, StatusCode};
use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, RsaPublicKey};
use secrecy::SecretString;
use serde_json::{json, Value as Json};
use sqlx::{Connection, PgConnection};
use tokio::process::{Child, Command};

/// A stand-in for an OpenTelemetry collector: keeps the OTLP/HTTP trace exports (protobuf) it
/// receives. It runs on a thread and runtime of its own, so a test can block on the exporter's
/// flush while the collector answers it.
struct OtlpCollector {
    endpoint: String,
    exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

type Exports = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

#[poem::handler]
fn receive_traces(body: Vec<u8>, exports: Data<&Exports>) -> poem::Result<poem::Response> {
    let export =
        ExportTraceServiceRequest::decode(body.as_slice()).map_err(poem::error::BadRequest)?;
    exports.lock().unwrap().push(export);
    Ok(poem::Response::builder()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec()))
}

impl OtlpCollector {
    fn start() -> Self {
        let exports = Exports::default();
        let kept = exports.clone();
        let (endpoint, listening) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let acceptor = TcpListener::bind("127.0.0.1:0")
                    .into_acceptor()
                    .await
                    .unwrap();
                let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
                endpoint.send(format!("http://127.0.0.1:{port}")).unwrap();
                let routes = Route::new()
                    .at("/v1/traces", poem::post(receive_traces))
                    .data(kept);
                poem::Server::new_with_acceptor(acceptor)
                    .run(routes)
                    .await
                    .unwrap();
            });
        });
        OtlpCollector {
            endpoint: listening.recv().unwrap(),
            exports,
        }
    }

    /// Every span received, with the attributes of the resource that sent it.
    fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let exports = self.exports.lock().unwrap();
        let mut spans = Vec::new();
        for resource_spans in exports.iter().flat_map(|export| &export.resource_spans) {
            let resource = resource_spans
                .resource
                .as_ref()
                .map(|resource| resource.attributes.clone())
                .unwrap_or_default();
            for span in resource_spans
                .scope_spans
                .iter()
                .flat_map(|scope| &scope.spans)
            {
                spans.push((resource.clone(), span.clone()));
            }
        }
        spans
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
}

fn text<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key)? {
        Value::StringValue(value) => Some(value),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        Value::IntValue(value) => Some(*value),
        _ => None,
    }
}

/// Every string an attribute holds, arrays included.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::StringValue(value) => vec![value],
        Value::ArrayValue(array) => array
            .values
            .iter()
            .filter_map(|value| value.value.as_ref())
            .flat_map(strings)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `span` descends from `root`, following parent ids within its trace.
fn descends_from(span: &Span, root: &Span, by_id: &HashMap<Vec<u8>, &Span>) -> bool {
    let mut current = span;
    while !current.parent_span_id.is_empty() {
        if current.parent_span_id == root.span_id {
            return current.trace_id == root.trace_id;
        }
        match by_id.get(&current.parent_span_id) {
            Some(parent) => current = parent,
            None => return false,
        }
    }
    false
}

const NEW_OPENAI_KEY: &str = "sk-proj-OPENAI-telemetry-rotated-00112233";
const FAMILY_B_SECRET: &str = "sk-proj-telemetry-family-b-0123456789";

const OPENAI_KEY: &str = "sk-proj-OPENAI-otlp-0123456789abcdefcdef";
const ANTHROPIC_KEY: &str = "sk-ant-api03-otlp-ANTHROPIC-9876543210wxyz";

fn required_env_var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the suite with ./dev test"))
}

/// The `aimc` binary this build made, serving on a port of its own with a database of its own,
/// configured as an operator would: `AIMC_*` for the service, `OTEL_*` for telemetry.
struct Service {
    child: Child,
    address: String,
    jwt_secret: SecretString,
    workspace: String,
    client: reqwest::Client,
}

impl Service {
    async fn start(otel: &[(&str, &str)]) -> Service {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        // Named like the suite's databases, so `./dev test` clears it out with theirs.
        let database = format!("aimc_test_{}", &suffix[..16]);
        let admin_url = required_env_var("AIMC_TEST_DATABASE_URL");
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE \"{database}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        let mut database_url = url::Url::parse(&admin_url).unwrap();
        database_url.set_path(&database);
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let jwt_secret = format!("otlp-test-secret-{suffix}");
        let mut command = Command::new(env!("CARGO_BIN_EXE_aimc"));
        for (name, _) in std::env::vars() {
            if name.starts_with("AIMC_") || name.starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .env("AIMC_LISTEN", format!("127.0.0.1:{port}"))
            .env("AIMC_DATABASE_URL", database_url.as_str())
            .env("AIMC_KEYRING", "vault")
            .env("AIMC_VAULT_ADDR", required_env_var("AIMC_VAULT_ADDR"))
            .env("AIMC_VAULT_TOKEN", required_env_var("AIMC_VAULT_TOKEN"))
            .env("AIMC_VAULT_KEY_PREFIX", format!("otlp{}", &suffix[..12]))
            .env("AIMC_JWT_HS256_SECRET", &jwt_secret)
            .env("AIMC_JWT_ISSUER", "aimc")
            .env("AIMC_JWT_AUDIENCE", "aimc")
            .env("AIMC_LOG", "warn")
            .envs(otel.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let mut service = Service {
            child: command.spawn().expect("the aimc binary starts"),
            address: format!("http://127.0.0.1:{port}"),
            jwt_secret: SecretString::from(jwt_secret),
            workspace: format!("ws{}", &suffix[..10]),
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = service.child.try_wait().unwrap() {
                panic!("aimc exited before it was ready: {status}");
            }
            let ready = service
                .client
                .get(format!("{}/readyz", service.address))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return service;
            }
            assert!(Instant::now() < deadline, "aimc was not ready after 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn token(&self, sub: &str, role: Role) -> String {
        let workspaces = HashMap::from([(self.workspace.clone(), role)]);
        mint_hs256_token(&self.jwt_secret, "aimc", "aimc", sub, workspaces, None, 600).unwrap()
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Json>,
    ) -> (StatusCode, Json) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Json::Null))
    }

    /// As a client encrypts a key: RSA-OAEP-256 under the workspace's published key.
    async fn encrypt_key(&self, token: &str, plain: &str) -> String {
        let (status, key) = self
            .request(Method::GET, "/api/v1/encryption-key", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{key}");
        let public = RsaPublicKey::from_public_key_pem(key["pem"].as_str().unwrap()).unwrap();
        let sealed = public
            .encrypt(
                &mut rand::thread_rng(),
                Oaep::new::<sha2::Sha256>(),
                plain.as_bytes(),
            )
            .unwrap();
        STANDARD.encode(sealed)
    }
}

fn model_config(openai: &str, anthropic: &str) -> Json {
    json!({
        "models": [
            {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": openai, "isPaid": true},
            {"provider": "Anthropic", "type": "chat", "model": "claude-2", "apiKeyEncrypted": anthropic, "isPaid": true},
            {"provider": "Ollama", "type": "chat", "model": "llama3", "apiKeyEncrypted": null, "isPaid": false}
        ],
        "system_prompt": "You are a helpful AI assistant."
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_exports_a_server_span_per_request_over_vault_and_postgres_client_spans() {
    // Given a collector, and the binary set up by the standard variables to export to it.
    let collector = OtlpCollector::start();
    let service_name = format!(
        "aimc-otlp-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let app = Service::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_SERVICE_NAME", service_name.as_str()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=e2e",
        ),
        // Exported within a tenth of a second, so the test need not stop the service to see them.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await;
    let token = app.token("alice", Role::Member);
    let openai = app.encrypt_key(&token, OPENAI_KEY).await;
    let anthropic = app.encrypt_key(&token, ANTHROPIC_KEY).await;
    let (created, body) = app
        .request(
            Method::POST,
            "/api/v1/create/ai-model-config",
            Some(&token),
            Some(model_config(&openai, &anthropic)),
        )
        .await;
    assert_eq!(created, StatusCode::CREATED, "{body}");
    let new_key = app.encrypt_key(&token, NEW_OPENAI_KEY).await;

    // When a model configuration PUT replaces the OpenAI key.
    let (put, body) = app
        .request(
            Method::PUT,
            "/api/v1/update/ai-model-config",
            Some(&token),
            Some(json!({
                "models": [
                    {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": new_key, "isPaid": true},
                    {"provider": "Ollama", "type": "chat", "model": "llama3", "apiKeyEncrypted": null, "isPaid": false}
                ],
                "system_prompt": "You are a helpful AI assistant."
            })),
        )
        .await;
    assert_eq!(put, StatusCode::OK, "{body}");
    // And a route with a path parameter, and a path no route serves.
    let admin = app.token("ada", Role::Admin);
    let (created, body) = app
        .request(
            Method::POST,
            "/ai/llm",
            Some(&admin),
            Some(json!({"name": "Traced", "aiType": "OPENAI", "endpoint": "https://api.openai.com/v1",
                        "secret": FAMILY_B_SECRET, "workspaceId": app.workspace})),
        )
        .await;
    assert_eq!(created, StatusCode::OK, "{body}");
    let id = body["aiLlmId"].as_str().unwrap().to_owned();
    let (renamed, body) = app
        .request(
            Method::PUT,
            &format!("/ai/llm/{id}"),
            Some(&admin),
            Some(json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(renamed, StatusCode::OK, "{body}");
    let (unknown, _) = app.request(Method::GET, "/no/such/route", None, None).await;
    assert_eq!(unknown, StatusCode::NOT_FOUND);
    let port: i64 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    // The exporter sends in batches: wait until the last request's span has arrived.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !collector
        .spans()
        .iter()
        .any(|(_, span)| text(&span.attributes, "url.path") == Some("/no/such/route"))
    {
        assert!(Instant::now() < deadline, "no span arrived within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Children end before their parents and are exported no later: all have arrived.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spans = collector.spans();

    // Then it arrives as one SERVER span named by its route template, under the service's name.
    assert!(!spans.is_empty(), "the collector received no span");
    let roots: Vec<&(Vec<KeyValue>, Span)> = spans
        .iter()
        .filter(|(_, span)| span.name == "PUT /api/v1/update/ai-model-config")
        .collect();
    assert_eq!(
        roots.len(),
        1,
        "{:?}",
        spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    let (resource, root) = roots[0];
    assert_eq!(text(resource, "service.name"), Some(service_name.as_str()));
    assert_eq!(text(resource, "deployment.environment.name"), Some("e2e"));
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert!(
        root.parent_span_id.is_empty(),
        "the request started the trace"
    );
    let attributes = &root.attributes;
    assert_eq!(text(attributes, "http.request.method"), Some("PUT"));
    assert_eq!(
        text(attributes, "http.route"),
        Some("/api/v1/update/ai-model-config")
    );
    assert_eq!(
        text(attributes, "url.path"),
        Some("/api/v1/update/ai-model-config")
    );
    assert_eq!(text(attributes, "url.scheme"), Some("http"));
    assert_eq!(int(attributes, "http.response.status_code"), Some(200));
    assert_eq!(text(attributes, "server.address"), Some("127.0.0.1"));
    assert_eq!(int(attributes, "server.port"), Some(port));
    assert_eq!(attribute(attributes, "error.type"), None);

    // And other requests are named by their template, or by their method alone when no route
    // served them.
    let server_span = |path: &str| {
        spans
            .iter()
            .map(|(_, span)| span)
            .find(|span| {
                span.kind == SpanKind::Server as i32
                    && text(&span.attributes, "url.path") == Some(path)
            })
            .unwrap_or_else(|| panic!("no SERVER span for {path}"))
    };
    let renamed = server_span(&format!("/ai/llm/{id}"));
    assert_eq!(renamed.name, "PUT /ai/llm/{id}");
    assert_eq!(
        text(&renamed.attributes, "http.route"),
        Some("/ai/llm/{id}")
    );
    let unknown = server_span("/no/such/route");
    assert_eq!(unknown.name, "GET");
    assert_eq!(attribute(&unknown.attributes, "http.route"), None);
    assert_eq!(
        int(&unknown.attributes, "http.response.status_code"),
        Some(404)
    );

    // And Vault and PostgreSQL appear as CLIENT spans beneath the PUT, in the same trace.
    let by_id: HashMap<Vec<u8>, &Span> = spans
        .iter()
        .map(|(_, span)| (span.span_id.clone(), span))
        .collect();
    let beneath: Vec<&Span> = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| descends_from(span, root, &by_id))
        .collect();
    let clients: Vec<&&Span> = beneath
        .iter()
        .filter(|span| span.kind == SpanKind::Client as i32)
        .collect();
    let vault_address = url::Url::parse(&required_env_var("AIMC_VAULT_ADDR")).unwrap();
    for operation in ["encrypt", "decrypt"] {
        let name = format!("vault transit {operation}");
        let vault = clients
            .iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "no {name} under the request: {:?}",
                    beneath.iter().map(|s| &s.name).collect::<Vec<_>>()
                )
            });
        assert_eq!(text(&vault.attributes, "http.request.method"), Some("POST"));
        assert_eq!(
            text(&vault.attributes, "server.address"),
            vault_address.host_str()
        );
        assert_eq!(
            int(&vault.attributes, "server.port"),
            vault_address.port_or_known_default().map(i64::from)
        );
        assert_eq!(
            int(&vault.attributes, "http.response.status_code"),
            Some(200)
        );
        assert!(text(&vault.attributes, "url.full")
            .is_some_and(|url| url.contains(&format!("/v1/transit/{operation}/"))));
    }
    let statements: Vec<&&&Span> = clients
        .iter()
        .filter(|span| text(&span.attributes, "db.system.name") == Some("postgresql"))
        .collect();
    let summaries: HashSet<&str> = statements.iter().map(|span| span.name.as_str()).collect();
    // The command starts from the configuration as the create left it (parked in the
    // process), so its one statement on the log is the append.
    assert!(
        summaries.contains("INSERT events") && !summaries.contains("SELECT events"),
        "the command's append, and no load: {summaries:?}"
    );
    let database = url::Url::parse(&required_env_var("AIMC_TEST_DATABASE_URL")).unwrap();
    for statement in &statements {
        let attributes = &statement.attributes;
        let operation = text(attributes, "db.operation.name").unwrap();
        assert!(statement.name.starts_with(operation), "{}", statement.name);
        assert_eq!(
            text(attributes, "db.query.summary"),
            Some(statement.name.as_str())
        );
        assert_eq!(text(attributes, "server.address"), database.host_str());
        assert_eq!(
            int(attributes, "server.port"),
            database.port_or_known_default().map(i64::from)
        );
        assert_eq!(attribute(attributes, "db.query.text"), None);
    }

    // And no attribute of any span holds Rust's Debug text, a plain key or a ciphertext.
    let sent_keys = [OPENAI_KEY, ANTHROPIC_KEY, NEW_OPENAI_KEY, FAMILY_B_SECRET];
    let forbidden: Vec<String> = sent_keys
        .iter()
        .flat_map(|key| [key.to_string(), STANDARD.encode(key)])
        .chain([new_key.clone(), "vault:v".to_owned()])
        .collect();
    for (resource, span) in &spans {
        let event_attributes = span.events.iter().flat_map(|event| &event.attributes);
        for attribute in resource
            .iter()
            .chain(&span.attributes)
            .chain(event_attributes)
        {
            let Some(value) = attribute.value.as_ref().and_then(|v| v.value.as_ref()) else {
                continue;
            };
            for value in strings(value) {
                let looks_like_debug = value.contains("Some(")
                    || value.contains("None")
                    || value.contains("{ ")
                    || (value.len() > 1 && value.starts_with('"') && value.ends_with('"'));
                assert!(
                    !looks_like_debug,
                    "span {:?}: {} = {value:?} is Debug text",
                    span.name, attribute.key
                );
                for secret in &forbidden {
                    assert!(
                        !value.contains(secret.as_str()),
                        "span {:?}: {} holds a key or ciphertext",
                        span.name,
                        attribute.key
                    );
                }
            }
        }
    }
}
