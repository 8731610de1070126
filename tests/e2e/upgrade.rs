//! Data written by an earlier build keeps working. `tests/fixtures/legacy-d6a1883` holds what
//! the build of commit d6a1883 wrote to its database (event log, snapshots, read model, name
//! registry, migration history) through every API family, and what that build answered to a
//! set of reads. A later build loaded onto that database must answer those reads exactly as
//! it did, accept writes to the old configurations, and rebuild its read model from the old log.
//!
//! The fixture is written once, by the build it is named after, with the `#[ignore]`d
//! `write_the_legacy_fixture`; see the README beside it before regenerating it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aimc_api::Role;
use aimc_domain::ConfigEvent;
use aimc_server::configuration::{KeyringKind, Settings};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::fake_provider::FakeProvider;
use crate::harness::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/legacy-d6a1883");

/// Test-only master key of the local keyring (base64 of "aimc-legacy-fixture-test-only-01").
/// The fixture's ciphertexts, and the workspaces' RSA key pairs derived from it, only open
/// with this key, so it must never change.
const LEGACY_ENCRYPTION_KEY: &str = "YWltYy1sZWdhY3ktZml4dHVyZS10ZXN0LW9ubHktMDE=";
/// Test-only HS256 secret: recorded reads store who asked, and tokens are minted from this.
const LEGACY_JWT_SECRET: &str = "aimc-legacy-fixture-jwt-secret-test-only-0001";
const WS: &str = "legacy-ws";
const WITH_KEYS: &str = "/api/v1/get/ai-model-config?includeEncryptedKeys=true";
/// A second tenant, so the fixture holds more than one workspace's keys and history.
const WS2: &str = "legacy-ws-2";

// Every plain key the scenario sends. None may appear in the fixture: only their ciphertexts
// and hints are stored. Each ends in a distinct group of four, so hints say whose key it is.
const ALICE_OPENAI: &str = "sk-proj-legacy-alice-openai-0001aaaa";
const ALICE_ANTHROPIC: &str = "sk-ant-legacy-alice-anthropic-0002bbbb";
const ALICE_OPENAI_NEW: &str = "sk-proj-legacy-alice-openai-0003cccc";
const ALICE_EMBEDDING: &str = "sk-proj-legacy-alice-embedding-0004dddd";
const BOB_GEMINI: &str = "AIzaLegacyBobGemini-0005eeee";
const BOB_OPENROUTER: &str = "sk-or-legacy-bob-openrouter-0006ffff";
const CAROL_OPENAI: &str = "sk-proj-legacy-carol-ws2-0007gggg";
const PROD_ACCESS_KEY: &str = "AKIALEGACYPROD0008hhhh";
const PROD_SECRET: &str = "sk-proj-legacy-b-prod-0009iiii";
const PROD_ACCESS_KEY_NEW: &str = "AKIALEGACYPROD0010jjjj";
/// The one key the fake provider behind "Fake Good" accepts.
const GOOD_KEY: &str = "sk-legacy-provider-good-0011kkkk";
const REVOKED_KEY: &str = "sk-legacy-provider-revoked-0012llll";
const STAGING_SECRET: &str = "sk-ant-legacy-b-staging-0013mmmm";
const STAGING_SECRET_NEW: &str = "wJalrLegacyStagingBedrock/0014nnnn";
const TEMPORARY_SECRET: &str = "sk-legacy-b-temporary-0015oooo";
const SQUATTER_SECRET: &str = "sk-legacy-b-squatter-0016pppp";
const CAFE_SECRET: &str = "sk-legacy-b-cafe-0017qqqq";
const WS2_B_SECRET: &str = "sk-proj-legacy-b-ws2-0018rrrr";
const DAN_ANTHROPIC: &str = "sk-ant-legacy-dan-0019ssss";
const DAN_OPENROUTER: &str = "sk-or-legacy-dan-0020tttt";
const DAN_BEDROCK_ACCESS: &str = "AKIALEGACYDAN0021uuuu";
const DAN_BEDROCK_SECRET: &str = "wJalrLegacyDanBedrockSecret/0022vvvv";
const DAN_BEDROCK_ACCESS_NEW: &str = "AKIALEGACYDAN0023wwww";
const ALICE_D_OPENAI: &str = "sk-legacy-alice-d-openai-0024xxxx";
const ALICE_D_OPENAI_NEW: &str = "sk-legacy-alice-d-openai-0025yyyy";
const ALICE_D_ANTHROPIC: &str = "sk-ant-legacy-alice-d-0026zzzz";
const BOB_D_GEMINI: &str = "AIzaLegacyBobD-0027abab";
const E_GEMINI: &str = "AIzaLegacyWorkspaceGemini-0028cdcd";
const E_GEMINI_NEW: &str = "AIzaLegacyWorkspaceGemini-0029efef";
/// The one key the fake provider behind the workspace's Anthropic key accepts.
const E_ANTHROPIC: &str = "sk-ant-legacy-workspace-0030ghgh";
const WS2_E_OPENAI: &str = "sk-proj-legacy-ws2-settings-0031ijij";
/// The service's own fallback key (configuration, not stored data).
const SYSTEM_OPENROUTER: &str = "sk-or-legacy-system-fallback-0032klkl";

const LEGACY_KEYS: [&str; 32] = [
    ALICE_OPENAI,
    ALICE_ANTHROPIC,
    ALICE_OPENAI_NEW,
    ALICE_EMBEDDING,
    BOB_GEMINI,
    BOB_OPENROUTER,
    CAROL_OPENAI,
    PROD_ACCESS_KEY,
    PROD_SECRET,
    PROD_ACCESS_KEY_NEW,
    GOOD_KEY,
    REVOKED_KEY,
    STAGING_SECRET,
    STAGING_SECRET_NEW,
    TEMPORARY_SECRET,
    SQUATTER_SECRET,
    CAFE_SECRET,
    WS2_B_SECRET,
    DAN_ANTHROPIC,
    DAN_OPENROUTER,
    DAN_BEDROCK_ACCESS,
    DAN_BEDROCK_SECRET,
    DAN_BEDROCK_ACCESS_NEW,
    ALICE_D_OPENAI,
    ALICE_D_OPENAI_NEW,
    ALICE_D_ANTHROPIC,
    BOB_D_GEMINI,
    E_GEMINI,
    E_GEMINI_NEW,
    E_ANTHROPIC,
    WS2_E_OPENAI,
    SYSTEM_OPENROUTER,
];

// Keys only the upgraded build receives.
const UPGRADE_ALICE_D: &str = "sk-upgrade-alice-d-openai-0101mnmn";
const UPGRADE_E_GEMINI: &str = "AIzaUpgradeWorkspaceGemini-0102opop";
const UPGRADE_DAN_OPENAI: &str = "sk-proj-upgrade-dan-openai-0103qrqr";

/// The settings both builds run with: a fresh database, the local keyring under the fixed
/// master key, the fixed JWT secret, the fixed system key, and loopback providers allowed.
async fn legacy_settings() -> Settings {
    let mut settings = test_settings().await;
    settings.keyring = KeyringKind::Local;
    settings.encryption_key = Some(SecretString::from(LEGACY_ENCRYPTION_KEY));
    settings.vault_addr = None;
    settings.vault_token = None;
    settings.jwt_hs256_secret = Some(SecretString::from(LEGACY_JWT_SECRET));
    settings.allow_private_endpoints = true;
    settings.system_keys_file = Some(system_keys_file());
    settings
}

fn system_keys_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "aimc-legacy-system-keys-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(
        &path,
        format!(
            "[openrouter]\napi_key = \"{SYSTEM_OPENROUTER}\"\nmodel = \"openai/gpt-4o-mini\"\n"
        ),
    )
    .expect("Failed to write the system keys file");
    path
}

fn database_url(app: &TestApp) -> String {
    app.settings
        .database_url
        .as_ref()
        .expect("the harness sets a database URL")
        .expose_secret()
        .to_owned()
}

/// Who makes a request: the claims of the token. Tokens expire, so the fixture records these
/// and a token is minted from [`LEGACY_JWT_SECRET`] whenever the read is replayed.
#[derive(Debug, Clone, PartialEq)]
struct Caller {
    sub: String,
    workspaces: BTreeMap<String, Role>,
    scope: Option<String>,
}

impl Caller {
    fn new(sub: &str, workspaces: &[(&str, Role)]) -> Caller {
        Caller {
            sub: sub.to_owned(),
            workspaces: workspaces
                .iter()
                .map(|(workspace, role)| (workspace.to_string(), *role))
                .collect(),
            scope: None,
        }
    }

    fn in_ws(sub: &str, role: Role) -> Caller {
        Caller::new(sub, &[(WS, role)])
    }

    fn with_scope(mut self, scope: &str) -> Caller {
        self.scope = Some(scope.to_owned());
        self
    }

    fn token(&self, app: &TestApp) -> String {
        let workspaces: Vec<(&str, Role)> = self
            .workspaces
            .iter()
            .map(|(workspace, role)| (workspace.as_str(), *role))
            .collect();
        app.token_for(&self.sub, &workspaces, self.scope.as_deref())
    }

    fn to_json(&self) -> Value {
        let workspaces: serde_json::Map<String, Value> = self
            .workspaces
            .iter()
            .map(|(workspace, role)| (workspace.clone(), json!(role.as_str())))
            .collect();
        json!({"sub": self.sub, "workspaces": workspaces, "scope": self.scope})
    }

    fn from_json(who: &Value) -> Caller {
        Caller {
            sub: who["sub"].as_str().expect("who.sub").to_owned(),
            workspaces: who["workspaces"]
                .as_object()
                .expect("who.workspaces")
                .iter()
                .map(|(workspace, role)| {
                    let role = role.as_str().and_then(Role::parse).expect("a role");
                    (workspace.clone(), role)
                })
                .collect(),
            scope: who["scope"].as_str().map(str::to_owned),
        }
    }
}

/// Sends one request as `who`, with a token minted for it.
async fn send(
    app: &TestApp,
    who: &Caller,
    method: Method,
    path: &str,
    headers: &[(String, String)],
    body: Option<Value>,
) -> TestResponse {
    let token = who.token(app);
    app.request_with(method, path, Some(&token), |mut request| {
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
    })
    .await
}

/// The requests of a scenario: each must succeed, and answers its JSON body.
struct Steps<'a> {
    app: &'a TestApp,
}

impl Steps<'_> {
    async fn send(
        &self,
        who: &Caller,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Value {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let response = send(self.app, who, method.clone(), path, &headers, body).await;
        assert!(
            response.status.is_success(),
            "{method} {path} as {}: {} {}",
            who.sub,
            response.status,
            response.text
        );
        response.body
    }

    async fn get(&self, who: &Caller, path: &str) -> Value {
        self.send(who, Method::GET, path, &[], None).await
    }

    async fn post(&self, who: &Caller, path: &str, body: Value) -> Value {
        self.send(who, Method::POST, path, &[], Some(body)).await
    }

    /// A POST that carries no body, such as a test of a stored key.
    async fn post_empty(&self, who: &Caller, path: &str) -> Value {
        self.send(who, Method::POST, path, &[], None).await
    }

    async fn put(&self, who: &Caller, path: &str, body: Value) -> Value {
        self.send(who, Method::PUT, path, &[], Some(body)).await
    }

    async fn delete(&self, who: &Caller, path: &str) -> Value {
        self.send(who, Method::DELETE, path, &[], None).await
    }

    /// `plain` encrypted with the public key of `who`'s workspace, as family A's clients send
    /// keys (`apiKeyEncrypted`).
    async fn sealed(&self, who: &Caller, plain: &str) -> Value {
        json!(self.app.encrypt_key(&who.token(self.app), plain).await)
    }

    /// A family B configuration in the first workspace; answers its id.
    async fn new_llm(
        &self,
        admin: &Caller,
        name: &str,
        ai_type: &str,
        endpoint: &str,
        secret: &str,
    ) -> String {
        let body = json!({"name": name, "aiType": ai_type, "endpoint": endpoint,
                          "secret": secret, "workspaceId": WS});
        let created = self.post(admin, "/ai/llm", body).await;
        created["aiLlmId"].as_str().unwrap().to_owned()
    }
}

/// A read the fixture records: what was asked, and by whom. Its answer is an [`Answer`].
#[derive(Debug, Clone)]
struct Read {
    /// Names the read in failure messages and lets tests find a recorded answer.
    about: String,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    who: Caller,
}

#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    /// The JSON body; null when the body is empty.
    body: Value,
}

impl Read {
    fn get(about: &str, path: &str, who: &Caller) -> Read {
        Read {
            about: about.to_owned(),
            method: Method::GET,
            path: path.to_owned(),
            headers: Vec::new(),
            who: who.clone(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Read {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    async fn ask(&self, app: &TestApp) -> Answer {
        let response = send(
            app,
            &self.who,
            self.method.clone(),
            &self.path,
            &self.headers,
            None,
        )
        .await;
        assert!(
            response.text.is_empty() || !response.body.is_null(),
            "{}: the answer is not JSON: {}",
            self.about,
            response.text
        );
        Answer {
            status: response.status.as_u16(),
            body: response.body,
        }
    }

    fn describe(&self) -> String {
        let headers: String = self
            .headers
            .iter()
            .map(|(name, value)| format!(" [{name}: {value}]"))
            .collect();
        let scope = self
            .who
            .scope
            .as_deref()
            .map(|scope| format!(", scope {scope}"))
            .unwrap_or_default();
        format!(
            "{} {}{headers} as {}{scope} ({})",
            self.method, self.path, self.who.sub, self.about
        )
    }

    fn to_json(&self, answer: &Answer) -> Value {
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        json!({
            "about": self.about,
            "method": self.method.as_str(),
            "path": self.path,
            "headers": headers,
            "who": self.who.to_json(),
            "status": answer.status,
            "body": answer.body,
        })
    }

    fn from_json(recorded: &Value) -> (Read, Answer) {
        let read = Read {
            about: recorded["about"].as_str().expect("about").to_owned(),
            method: recorded["method"]
                .as_str()
                .and_then(|method| method.parse().ok())
                .expect("method"),
            path: recorded["path"].as_str().expect("path").to_owned(),
            headers: recorded["headers"]
                .as_object()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|(name, value)| {
                            (name.clone(), value.as_str().expect("header").to_owned())
                        })
                        .collect()
                })
                .unwrap_or_default(),
            who: Caller::from_json(&recorded["who"]),
        };
        let answer = Answer {
            status: recorded["status"].as_u64().expect("status") as u16,
            body: recorded["body"].clone(),
        };
        (read, answer)
    }
}

/// Where two JSON values differ, as `$.path: expected …, got …` lines.
/// Fields a later build adds to answers the fixture's build gave without them, which a client
/// of the older contract ignores: (the field, a field every object that gains it has).
const ADDED_SINCE_THE_FIXTURE: [(&str, &str); 1] = [
    // Version 2.0 of `CredentialValidated` records the test's verdict; the history shows it
    // beside `ok` once a rebuild has read the old events through the upcaster.
    ("verdict", "ok"),
];

fn differences(path: &str, expected: &Value, actual: &Value, found: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                let at = format!("{path}.{key}");
                match actual.get(key) {
                    Some(other) => differences(&at, value, other, found),
                    None => found.push(format!(
                        "{at}: expected {}, got nothing",
                        shortened(Some(value))
                    )),
                }
            }
            for (key, value) in actual {
                let added = ADDED_SINCE_THE_FIXTURE
                    .iter()
                    .any(|(field, beside)| key == field && expected.contains_key(*beside));
                if !expected.contains_key(key) && !added {
                    found.push(format!(
                        "{path}.{key}: expected nothing, got {}",
                        shortened(Some(value))
                    ));
                }
            }
        }
        (Value::Array(expected), Value::Array(actual)) if expected.len() == actual.len() => {
            for (index, (value, other)) in expected.iter().zip(actual).enumerate() {
                differences(&format!("{path}[{index}]"), value, other, found);
            }
        }
        // Elements came or went: comparing the rest pairwise would flag every one after it.
        (Value::Array(expected), Value::Array(actual)) => {
            let first = expected
                .iter()
                .zip(actual)
                .position(|(value, other)| value != other)
                .unwrap_or(expected.len().min(actual.len()));
            found.push(format!(
                "{path}: expected {} elements, got {}; the first that differs is [{first}]: expected {}, got {}",
                expected.len(),
                actual.len(),
                shortened(expected.get(first)),
                shortened(actual.get(first)),
            ));
        }
        _ if expected != actual => found.push(format!(
            "{path}: expected {}, got {}",
            shortened(Some(expected)),
            shortened(Some(actual))
        )),
        _ => {}
    }
}

/// A value as JSON, cut short: a whole configuration in one line of a failure would drown it.
fn shortened(value: Option<&Value>) -> String {
    const MAX_CHARS: usize = 300;
    let Some(value) = value else {
        return "nothing".to_owned();
    };
    let text = value.to_string();
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Compares every answer with the expected one and fails once, naming each read that differs
/// and where its body does, so a later build sees all it broke at once.
fn assert_same_answers(context: &str, reads: &[Read], expected: &[Answer], actual: &[Answer]) {
    const LINES_PER_READ: usize = 25;
    assert_eq!(reads.len(), actual.len(), "{context}: reads and answers");
    let mut report = Vec::new();
    for ((read, expected), actual) in reads.iter().zip(expected).zip(actual) {
        if expected == actual {
            continue;
        }
        let mut found = Vec::new();
        if expected.status != actual.status {
            found.push(format!(
                "status: expected {}, got {}",
                expected.status, actual.status
            ));
        }
        differences("$", &expected.body, &actual.body, &mut found);
        if found.is_empty() {
            // Only fields added since the fixture's build differ.
            continue;
        }
        let shown = found.len().min(LINES_PER_READ);
        let mut lines: Vec<String> = found[..shown].iter().map(|l| format!("    {l}")).collect();
        if found.len() > shown {
            lines.push(format!("    … and {} more", found.len() - shown));
        }
        report.push(format!("--- {}\n{}", read.describe(), lines.join("\n")));
    }
    assert!(
        report.is_empty(),
        "{context}: {} of {} reads answer differently:\n{}",
        report.len(),
        reads.len(),
        report.join("\n")
    );
}

async fn ask_all(app: &TestApp, reads: &[Read]) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(reads.len());
    for read in reads {
        answers.push(read.ask(app).await);
    }
    answers
}

fn recorded_reads() -> (Vec<Read>, Vec<Answer>) {
    let text = std::fs::read_to_string(Path::new(FIXTURE).join("answers.json"))
        .expect("Failed to read answers.json of the legacy fixture");
    let recorded: Value = serde_json::from_str(&text).expect("answers.json is JSON");
    recorded
        .as_array()
        .expect("answers.json is a list of reads")
        .iter()
        .map(Read::from_json)
        .unzip()
}

fn recorded<'a>(reads: &[Read], answers: &'a [Answer], about: &str) -> &'a Value {
    let index = reads
        .iter()
        .position(|read| read.about == about)
        .unwrap_or_else(|| panic!("no recorded read is about \"{about}\""));
    &answers[index].body
}

/// pg_dump's output as a script sqlx runs. Since 15.14, pg_dump brackets the dump with psql's
/// `\restrict <key>` and `\unrestrict <key>` (they stop a hostile server's data from smuggling
/// psql commands into a restore); they are psql meta-commands, not SQL, and are left out. The
/// committed dump stays exactly as pg_dump wrote it.
fn restorable(dump: &str) -> String {
    dump.lines()
        .filter(|line| !line.starts_with("\\restrict ") && !line.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The fixture's database under the current build: a fresh database, the dump loaded into it,
/// then the application built on it (which migrates and catches up, as an upgrade does).
async fn spawn_legacy_app() -> TestApp {
    let settings = legacy_settings().await;
    let dump = std::fs::read_to_string(Path::new(FIXTURE).join("database.sql"))
        .expect("Failed to read database.sql of the legacy fixture");
    let url = settings
        .database_url
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_owned();
    let mut connection = PgConnection::connect(&url)
        .await
        .expect("Failed to connect to the test database");
    sqlx::raw_sql(&restorable(&dump))
        .execute(&mut connection)
        .await
        .expect("Failed to load the legacy dump");
    // The dump empties the session's search_path; this connection is done with.
    connection.close().await.unwrap();
    let app = spawn_app_from(settings, WS).await;
    for key in LEGACY_KEYS {
        app.remember_secret(key);
    }
    app
}

fn llm_id(list: &Value, name: &str) -> String {
    list["aiLlms"]
        .as_array()
        .expect("aiLlms")
        .iter()
        .find(|llm| llm["name"] == name)
        .unwrap_or_else(|| panic!("no configuration named {name} in {list}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn llm_names(list: &Value) -> Vec<String> {
    list["aiLlms"]
        .as_array()
        .expect("aiLlms")
        .iter()
        .map(|llm| llm["name"].as_str().unwrap().to_owned())
        .collect()
}

fn model(provider: &str, model_type: &str, model: &str, is_paid: bool) -> Value {
    json!({"provider": provider, "type": model_type, "model": model, "isPaid": is_paid})
}

fn with_key(mut model: Value, key: Value) -> Value {
    model["apiKeyEncrypted"] = key;
    model
}

/// The reads whose answers the fixture records: every family's view of every owner, the
/// history in several views, task resolution, name availability and the encryption keys.
/// `alice_cursor` is the `nextCursor` of alice's first page of history.
fn reads_to_record(alice_cursor: &str) -> Vec<Read> {
    let alice = Caller::in_ws("alice", Role::Member);
    let alice_scoped = alice.clone().with_scope("keys:ciphertext");
    let bob = Caller::in_ws("bob", Role::Member);
    let bob_scoped = bob.clone().with_scope("keys:ciphertext");
    let dan = Caller::in_ws("dan", Role::Member);
    let vic = Caller::in_ws("vic", Role::Viewer);
    let ada = Caller::in_ws("ada", Role::Admin);
    let ada_both = Caller::new("ada", &[(WS, Role::Admin), (WS2, Role::Admin)]);
    let carol = Caller::new("carol", &[(WS2, Role::Member)]);
    let carol_scoped = carol.clone().with_scope("keys:ciphertext");
    let config = "/api/v1/get/ai-model-config";
    let with_keys = WITH_KEYS;
    let llms = format!("/ai/llm?workspaceId={WS}");
    let available = format!("/ai/llm/available?workspaceId={WS}");
    let name = |name: &str| format!("/api/v1/names/available?workspaceId={WS}&name={name}");
    let resolve = |query: &str| format!("/api/v1/resolve?{query}");
    let next_page = format!("/api/v1/history?limit=20&cursor={alice_cursor}");
    vec![
        Read::get("A: alice's", config, &alice),
        Read::get("A: alice's, with ciphertexts", with_keys, &alice_scoped),
        Read::get("A: ciphertexts without the scope", with_keys, &alice),
        Read::get("A: bob's", config, &bob),
        Read::get("A: bob's, with ciphertexts", with_keys, &bob_scoped),
        Read::get("A: dan's, made through family C", config, &dan),
        Read::get("A: carol's, in the second workspace", config, &carol),
        Read::get("A: carol's, with ciphertexts", with_keys, &carol_scoped),
        Read::get("A: none yet", config, &vic),
        Read::get("B: the workspace's", &llms, &ada),
        Read::get("B: the workspace's, to a viewer", &llms, &vic),
        Read::get("B: the workspace's validated", &available, &ada),
        Read::get(
            "B: the second workspace's",
            &format!("/ai/llm?workspaceId={WS2}"),
            &ada_both,
        ),
        Read::get(
            "B: the second workspace's validated",
            &format!("/ai/llm/available?workspaceId={WS2}"),
            &ada_both,
        ),
        Read::get("C: alice's", "/api/user/api-keys", &alice),
        Read::get("C: bob's", "/api/user/api-keys", &bob),
        Read::get("C: dan's", "/api/user/api-keys", &dan),
        Read::get("C: none yet", "/api/user/api-keys", &vic),
        Read::get("D: alice's", "/api/keys", &alice),
        Read::get("D: bob's", "/api/keys", &bob),
        Read::get("D: dan's", "/api/keys", &dan),
        Read::get("D: carol's", "/api/keys", &carol),
        Read::get("E: providers", "/api/v1/settings/providers", &ada),
        Read::get(
            "E: second workspace's providers",
            "/api/v1/settings/providers",
            &ada_both,
        )
        .header("X-Workspace-Id", WS2),
        Read::get("E: tasks", "/api/v1/settings/task-assignments", &vic),
        Read::get(
            "E: second workspace's tasks",
            "/api/v1/settings/task-assignments",
            &ada_both,
        )
        .header("X-Workspace-Id", WS2),
        Read::get("history: the workspace", "/api/v1/history?limit=500", &ada),
        Read::get(
            "history: the second workspace",
            "/api/v1/history?limit=500",
            &ada_both,
        )
        .header("X-Workspace-Id", WS2),
        Read::get(
            "history: alice's, first page",
            "/api/v1/history?limit=20",
            &alice,
        ),
        Read::get("history: alice's, second page", &next_page, &alice),
        Read::get(
            "history: tests and removals",
            "/api/v1/history?limit=500&type=CredentialValidated,CredentialRemoved",
            &ada,
        ),
        Read::get(
            "history: dan's, to an admin",
            "/api/v1/history?owner=user:dan",
            &ada,
        ),
        Read::get(
            "history: a member's of the workspace",
            "/api/v1/history?owner=workspace",
            &alice,
        ),
        Read::get("resolve: alice's chat", &resolve("task=chat"), &alice),
        Read::get(
            "resolve: alice's chat, scoped",
            &resolve("task=chat"),
            &alice_scoped,
        ),
        Read::get(
            "resolve: alice's free chat",
            &resolve("task=chat&freeOnly=true"),
            &alice,
        ),
        Read::get(
            "resolve: alice's summaries",
            &resolve("task=summarize"),
            &alice,
        ),
        Read::get(
            "resolve: alice's embeddings",
            &resolve("task=embed"),
            &alice,
        ),
        Read::get(
            "resolve: bob's translations",
            &resolve("task=translate"),
            &bob,
        ),
        Read::get("resolve: dan's chat", &resolve("task=chat"), &dan),
        Read::get("resolve: a viewer's chat", &resolve("task=chat"), &vic),
        Read::get(
            "resolve: a viewer's free chat",
            &resolve("task=chat&freeOnly=true"),
            &vic,
        ),
        Read::get(
            "resolve: carol's chat, scoped",
            &resolve("task=chat"),
            &carol_scoped,
        ),
        Read::get(
            "resolve: an unassigned task",
            &resolve("task=classify"),
            &ada,
        ),
        Read::get("names: renamed to", &name("Staging%20Claude"), &ada),
        Read::get("names: renamed from", &name("staging%20anthropic"), &ada),
        Read::get("names: deleted", &name("Temporary"), &ada),
        Read::get(
            "names: taken, in another case",
            &name("PROD%20OPENAI"),
            &vic,
        ),
        Read::get("names: with an accent", &name("caf%C3%A9"), &vic),
        Read::get(
            "names: given to a family E key",
            &name("Google%20key"),
            &ada,
        ),
        Read::get(
            "names: given to a family A key",
            &name("user:alice%20OpenAI%20gpt-4"),
            &ada,
        ),
        Read::get(
            "names: given to a family C key",
            &name("user:dan%20bedrock%20key"),
            &ada,
        ),
        Read::get("names: free", &name("Nobody%27s"), &ada),
        Read::get(
            "names: taken in the second workspace",
            &format!("/api/v1/names/available?workspaceId={WS2}&name=prod%20openai"),
            &ada_both,
        ),
        Read::get("encryption key", "/api/v1/encryption-key", &alice),
        Read::get(
            "encryption key of the second workspace",
            "/api/v1/encryption-key",
            &carol,
        ),
    ]
}

/// Runs the scenario through every API family against today's build and writes the fixture:
/// the database as pg_dump sees it, and the answers to [`reads_to_record`].
///
/// Run explicitly: `cargo nextest run -p aimc-e2e write_the_legacy_fixture --run-ignored only`.
/// Only the build the fixture is named after should write it (see its README).
#[tokio::test]
#[ignore = "writes tests/fixtures/legacy-d6a1883; run only to regenerate it"]
async fn write_the_legacy_fixture() {
    let good_provider = FakeProvider::start(GOOD_KEY).await;
    let anthropic_provider = FakeProvider::start(E_ANTHROPIC).await;
    let app = spawn_app_from(legacy_settings().await, WS).await;
    for key in LEGACY_KEYS {
        app.remember_secret(key);
    }
    let s = Steps { app: &app };
    let alice = Caller::in_ws("alice", Role::Member);
    let bob = Caller::in_ws("bob", Role::Member);
    let dan = Caller::in_ws("dan", Role::Member);
    let ada = Caller::in_ws("ada", Role::Admin);
    let ada_both = Caller::new("ada", &[(WS, Role::Admin), (WS2, Role::Admin)]);
    let carol = Caller::new("carol", &[(WS2, Role::Member)]);
    let create = "/api/v1/create/ai-model-config";
    let update = "/api/v1/update/ai-model-config";
    let llm = |id: &str| format!("/ai/llm/{id}");

    // Family A: alice creates seed 000's configuration.
    let openai = s.sealed(&alice, ALICE_OPENAI).await;
    let anthropic = s.sealed(&alice, ALICE_ANTHROPIC).await;
    s.post(
        &alice,
        create,
        json!({"models": [
        with_key(model("OpenAI", "chat", "gpt-4", true), openai),
        with_key(model("Anthropic", "chat", "claude-2", true), anthropic),
        with_key(model("Ollama", "chat", "llama3", false), Value::Null),
    ], "system_prompt": "You are a helpful AI assistant."}),
    )
    .await;

    // Family B: the workspace's production configuration, with an access key.
    s.post(
        &ada,
        "/ai/llm",
        json!({
            "name": "Prod OpenAI", "aiType": "OPENAI", "endpoint": "https://api.openai.com/v1",
            "key": PROD_ACCESS_KEY, "secret": PROD_SECRET, "workspaceId": WS
        }),
    )
    .await;

    // Family A: bob's configuration, with Gemini and a local model.
    let gemini = s.sealed(&bob, BOB_GEMINI).await;
    s.post(
        &bob,
        create,
        json!({"models": [
        with_key(model("Gemini", "chat", "gemini-1.5-pro", true), gemini),
        model("Ollama", "chat", "llama3", false),
    ], "system_prompt": "Answer briefly."}),
    )
    .await;

    // Family D: alice numbers two keys of her own.
    let d_openai = s
        .post(
            &alice,
            "/api/keys",
            json!({"service": "OPENAI", "api_key": ALICE_D_OPENAI}),
        )
        .await["id"]
        .clone();
    let d_anthropic = s
        .post(
            &alice,
            "/api/keys",
            json!({"service": "anthropic", "api_key": ALICE_D_ANTHROPIC}),
        )
        .await["id"]
        .clone();

    // Family A: a new OpenAI key.
    let openai = s.sealed(&alice, ALICE_OPENAI_NEW).await;
    s.put(
        &alice,
        update,
        json!({"models": [
            with_key(model("OpenAI", "chat", "gpt-4", true), openai),
            model("Anthropic", "chat", "claude-2", true),
            model("Ollama", "chat", "llama3", false),
        ]}),
    )
    .await;

    // Family B: configurations to test, rename, move and delete, one whose name the service
    // will want for a family E key, and one whose name is not ASCII.
    let fake = good_provider.address.as_str();
    let good = s
        .new_llm(&ada, "Fake Good", "OPENAI", &format!("{fake}/v1"), GOOD_KEY)
        .await;
    let revoked = s
        .new_llm(&ada, "Fake Revoked", "OPENAI", fake, REVOKED_KEY)
        .await;
    let anthropic_api = "https://api.anthropic.com";
    let staging = s
        .new_llm(
            &ada,
            "Staging Anthropic",
            "ANTHROPIC",
            anthropic_api,
            STAGING_SECRET,
        )
        .await;
    let example = "https://llm.example.com";
    let temporary = s
        .new_llm(&ada, "Temporary", "OTHER", example, TEMPORARY_SECRET)
        .await;
    s.new_llm(&ada, "Anthropic key", "OTHER", example, SQUATTER_SECRET)
        .await;
    s.new_llm(
        &ada,
        "Café",
        "OTHER",
        "https://llm.example.com/café",
        CAFE_SECRET,
    )
    .await;

    // Family A: the Anthropic key removed with null.
    s.put(
        &alice,
        update,
        json!({"models": [
            model("OpenAI", "chat", "gpt-4", true),
            with_key(model("Anthropic", "chat", "claude-2", true), Value::Null),
            model("Ollama", "chat", "llama3", false),
        ]}),
    )
    .await;

    // Family B: one key the provider accepts, one it refuses.
    let accepted = s
        .post_empty(&ada, &format!("/ai/llm/{good}/validate"))
        .await;
    assert_eq!(accepted["success"], true, "{accepted}");
    let refused = s
        .post_empty(&ada, &format!("/ai/llm/{revoked}/validate"))
        .await;
    assert_eq!(refused["success"], false, "{refused}");

    // Family A: gpt-4 becomes gpt-4o, first in the list, keeping its key.
    s.put(
        &alice,
        update,
        json!({"models": [
            model("OpenAI", "chat", "gpt-4o", true),
            model("Anthropic", "chat", "claude-2", true),
            model("Ollama", "chat", "llama3", false),
        ]}),
    )
    .await;

    // Family B: renamed, then moved to Bedrock with a new secret; an access key replaced; a
    // configuration deleted.
    s.put(&ada, &llm(&staging), json!({"name": "Staging Claude"}))
        .await;
    s.put(
        &ada,
        &llm(&staging),
        json!({"aiType": "AWS", "secret": STAGING_SECRET_NEW,
        "endpoint": "https://bedrock-runtime.us-east-1.amazonaws.com"}),
    )
    .await;
    let prod = llm_id(
        &s.get(&ada, &format!("/ai/llm?workspaceId={WS}")).await,
        "Prod OpenAI",
    );
    s.put(&ada, &llm(&prod), json!({"key": PROD_ACCESS_KEY_NEW}))
        .await;
    s.delete(&ada, &llm(&temporary)).await;

    // Family C: dan's providers, Bedrock with an access key, a secret and a region.
    s.put(
        &dan,
        "/api/user/api-keys",
        json!({
            "anthropic": {"apiKey": DAN_ANTHROPIC},
            "openrouter": {"apiKey": DAN_OPENROUTER, "modelId": "meta-llama/llama-3-70b-instruct"},
            "bedrock": {"accessKeyId": DAN_BEDROCK_ACCESS, "secretAccessKey": DAN_BEDROCK_SECRET,
                        "region": "us-east-1"}
        }),
    )
    .await;

    // Family A: Anthropic becomes free, and an embedding model comes with its own key.
    let embedding = s.sealed(&alice, ALICE_EMBEDDING).await;
    s.put(
        &alice,
        update,
        json!({"models": [
            model("OpenAI", "chat", "gpt-4o", true),
            model("Anthropic", "chat", "claude-2", false),
            model("Ollama", "chat", "llama3", false),
            with_key(model("OpenAI", "embedding", "text-embedding-3-small", true), embedding),
        ]}),
    )
    .await;

    // Family C: alice picks another model id for the OpenAI model family A made.
    s.put(
        &alice,
        "/api/user/api-keys",
        json!({"openai": {"modelId": "gpt-4-turbo"}}),
    )
    .await;

    // Family E: keys for Gemini and Anthropic; "Anthropic key" is taken, so a suffix is added.
    let providers = "/api/v1/settings/providers";
    s.post(
        &ada,
        &format!("{providers}/gemini"),
        json!({"api_key": E_GEMINI}),
    )
    .await;
    s.post(
        &ada,
        &format!("{providers}/anthropic"),
        json!({"api_key": E_ANTHROPIC}),
    )
    .await;
    let llms = s.get(&ada, &format!("/ai/llm?workspaceId={WS}")).await;
    let suffixed = llm_names(&llms)
        .into_iter()
        .find(|name| name.starts_with("Anthropic key ("))
        .expect("the generated name took a suffix");
    let e_anthropic = llm_id(&llms, &suffixed);

    // Family E's Anthropic key, pointed at a fake Anthropic through family B and tested; the
    // Gemini key replaced.
    let endpoint = anthropic_provider.address.as_str();
    s.put(
        &ada,
        &llm(&e_anthropic),
        json!({"endpoint": endpoint, "secret": E_ANTHROPIC}),
    )
    .await;
    let tested = s
        .post_empty(&ada, &format!("{providers}/anthropic/test"))
        .await;
    assert_eq!(tested["success"], true, "{tested}");
    s.post(
        &ada,
        &format!("{providers}/gemini"),
        json!({"api_key": E_GEMINI_NEW}),
    )
    .await;

    // Family E: tasks assigned, then changed (one reassigned, one dropped, one added).
    let tasks = "/api/v1/settings/task-assignments";
    s.post(
        &ada,
        tasks,
        json!({"assignments": [
            {"task": "summarize", "provider": "anthropic", "model": "claude-sonnet-4-20250514"},
            {"task": "translate", "provider": "gemini", "model": "gemini-1.5-pro"}
        ]}),
    )
    .await;
    s.post(
        &ada,
        tasks,
        json!({"assignments": [
            {"task": "summarize", "provider": "anthropic", "model": "claude-opus-4-20250514"},
            {"task": "chat", "provider": "gemini", "model": "gemini-1.5-flash"}
        ]}),
    )
    .await;

    // Family A: reordered; the prompt changed, then cleared.
    let reordered = json!([
        model("Ollama", "chat", "llama3", false),
        model("OpenAI", "chat", "gpt-4-turbo", true),
        model("Anthropic", "chat", "claude-2", false),
        model("OpenAI", "embedding", "text-embedding-3-small", true),
    ]);
    let concise = "You are a concise AI assistant.";
    s.put(
        &alice,
        update,
        json!({"models": reordered, "system_prompt": concise}),
    )
    .await;
    s.put(
        &alice,
        update,
        json!({"models": reordered, "system_prompt": null}),
    )
    .await;
    // Sending back the stored ciphertexts keeps the keys and records nothing.
    let events_before = app.event_count().await;
    let alice_scoped = alice.clone().with_scope("keys:ciphertext");
    let stored = s.get(&alice_scoped, WITH_KEYS).await;
    let resent: Vec<Value> = stored["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| {
            let mut model = model.clone();
            // Hints are shown, not accepted: an update names only what it sets.
            model.as_object_mut().unwrap().remove("keyHint");
            model
        })
        .collect();
    s.put(&alice, update, json!({"models": resent})).await;
    assert_eq!(
        app.event_count().await,
        events_before,
        "nothing changed, nothing recorded"
    );

    // Family C: dan adds a model id alone, moves Bedrock with a new access key, drops OpenRouter.
    s.put(
        &dan,
        "/api/user/api-keys",
        json!({
            "openai": {"modelId": "gpt-4.1"},
            "bedrock": {"accessKeyId": DAN_BEDROCK_ACCESS_NEW, "region": "eu-west-1"}
        }),
    )
    .await;
    s.delete(&dan, "/api/user/api-keys/openrouter").await;

    // Family D: alice replaces one key and deletes the other; bob adds one.
    s.put(
        &alice,
        &format!("/api/keys/{d_openai}"),
        json!({"api_key": ALICE_D_OPENAI_NEW}),
    )
    .await;
    s.delete(&alice, &format!("/api/keys/{d_anthropic}")).await;
    s.post(
        &bob,
        "/api/keys",
        json!({"service": "GEMINI", "api_key": BOB_D_GEMINI}),
    )
    .await;

    // Family A: bob drops the local model, adds OpenRouter with a key and an image model.
    let openrouter = s.sealed(&bob, BOB_OPENROUTER).await;
    s.put(&bob, update, json!({"models": [
        model("Gemini", "chat", "gemini-1.5-pro", true),
        with_key(model("OpenRouter", "chat", "meta-llama/llama-3-70b-instruct", true), openrouter),
        model("OpenAI", "image", "dall-e-3", true),
    ]}))
    .await;

    // The second workspace: the first's configuration name again, a person's configuration,
    // and a family E key set by an admin of both workspaces.
    s.post(
        &ada_both,
        "/ai/llm",
        json!({
            "name": "Prod OpenAI", "aiType": "OPENAI", "endpoint": "https://api.openai.com/v1",
            "secret": WS2_B_SECRET, "workspaceId": WS2
        }),
    )
    .await;
    let openai = s.sealed(&carol, CAROL_OPENAI).await;
    s.post(
        &carol,
        create,
        json!({"models": [
            with_key(model("OpenAI", "chat", "gpt-4o-mini", true), openai),
        ]}),
    )
    .await;
    let in_ws2 = [("X-Workspace-Id", WS2)];
    let saved = json!({"api_key": WS2_E_OPENAI});
    s.send(
        &ada_both,
        Method::POST,
        &format!("{providers}/openai"),
        &in_ws2,
        Some(saved),
    )
    .await;

    // Every event type this build knows is in the log.
    let types: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT event_type FROM events ORDER BY 1")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let mut known: Vec<&str> = ConfigEvent::NAMES.to_vec();
    known.sort();
    assert_eq!(
        types, known,
        "the scenario must leave every event type in the log"
    );

    // The answers to record.
    let first_page = s.get(&alice, "/api/v1/history?limit=20").await;
    let cursor = first_page["nextCursor"]
        .as_str()
        .expect("alice's history has two pages");
    let reads = reads_to_record(cursor);
    let answers = ask_all(&app, &reads).await;
    for (read, answer) in reads.iter().zip(&answers) {
        assert!(answer.status < 500, "{}: {answer:?}", read.describe());
    }
    app.assert_no_plain_key_anywhere().await;

    // The database as this build left it.
    let dump = std::process::Command::new("pg_dump")
        .args(["--inserts", "--no-owner", "--no-privileges", "--dbname"])
        .arg(database_url(&app))
        .output()
        .expect("Failed to run pg_dump");
    assert!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8(dump.stdout).expect("the dump is UTF-8");
    let recorded: Vec<Value> = reads
        .iter()
        .zip(&answers)
        .map(|(read, answer)| read.to_json(answer))
        .collect();
    let recorded = serde_json::to_string_pretty(&recorded).unwrap() + "\n";
    for key in LEGACY_KEYS
        .into_iter()
        .chain([LEGACY_ENCRYPTION_KEY, LEGACY_JWT_SECRET])
    {
        for form in [key.to_owned(), STANDARD.encode(key)] {
            assert!(!dump.contains(&form), "a plain key is in the dump");
            assert!(!recorded.contains(&form), "a plain key is in the answers");
        }
    }
    std::fs::create_dir_all(FIXTURE).unwrap();
    std::fs::write(Path::new(FIXTURE).join("database.sql"), &dump).unwrap();
    std::fs::write(Path::new(FIXTURE).join("answers.json"), &recorded).unwrap();
    println!(
        "wrote {FIXTURE}: {} events, database.sql {} bytes, answers.json {} reads, {} bytes",
        app.event_count().await,
        dump.len(),
        reads.len(),
        recorded.len()
    );
}

#[tokio::test]
async fn a_log_and_read_model_written_by_the_previous_build_answer_the_same_after_upgrade() {
    let provider = FakeProvider::start(GOOD_KEY).await;
    let app = spawn_legacy_app().await;
    let (reads, legacy) = recorded_reads();
    let legacy_events = app.event_count().await;

    // Every recorded read, answered from the read model the previous build wrote.
    let upgraded = ask_all(&app, &reads).await;
    assert_same_answers("after the upgrade", &reads, &legacy, &upgraded);

    // Writes to the previous build's configurations, through every family.
    let s = Steps { app: &app };
    let alice = Caller::in_ws("alice", Role::Member);
    let dan = Caller::in_ws("dan", Role::Member);
    let ada = Caller::in_ws("ada", Role::Admin);
    let ada_both = Caller::new("ada", &[(WS, Role::Admin), (WS2, Role::Admin)]);
    for key in [UPGRADE_ALICE_D, UPGRADE_E_GEMINI, UPGRADE_DAN_OPENAI] {
        app.remember_secret(key);
    }
    let legacy_llms = recorded(&reads, &legacy, "B: the workspace's");
    let llm = |name: &str| format!("/ai/llm/{}", llm_id(legacy_llms, name));

    // Family B: one configuration renamed, another deleted.
    s.put(
        &ada,
        &llm("Staging Claude"),
        json!({"name": "Staging Router"}),
    )
    .await;
    s.delete(&ada, &llm("Prod OpenAI")).await;

    // Family B: a key tested at a provider on the same host, which needs no secret sent again:
    // the service decrypts the previous build's ciphertext and the provider accepts the key.
    let endpoint = format!("{}/v1", provider.address);
    let legacy_endpoint = legacy_llms["aiLlms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|llm| llm["name"] == "Fake Good")
        .unwrap()["endpoint"]
        .clone();
    s.put(&ada, &llm("Fake Good"), json!({"endpoint": endpoint}))
        .await;
    let validated = s
        .post_empty(&ada, &format!("{}/validate", llm("Fake Good")))
        .await;
    assert_eq!(validated["success"], true, "{validated}");
    assert_eq!(provider.calls(), 1);

    // Family D: alice's numbered key replaced (the list has family A's keys too).
    let legacy_keys = recorded(&reads, &legacy, "D: alice's");
    let d_key = legacy_keys
        .as_array()
        .unwrap()
        .iter()
        .position(|key| key["last_4_chars"] == "sk-...yyyy")
        .expect("alice's family D key");
    let number = legacy_keys[d_key]["id"].as_i64().unwrap();
    let replaced = s
        .put(
            &alice,
            &format!("/api/keys/{number}"),
            json!({"api_key": UPGRADE_ALICE_D}),
        )
        .await;
    assert_eq!(replaced["id"], number);

    // Family E: a new key for a provider that has one replaces it.
    let gemini = "/api/v1/settings/providers/gemini";
    let saved = s
        .post(&ada, gemini, json!({"api_key": UPGRADE_E_GEMINI}))
        .await;
    assert_eq!(saved["key_hint"], "AIz...opop");

    // Family A: alice's models sent again without keys, which keeps them, and a new prompt.
    let legacy_config = recorded(&reads, &legacy, "A: alice's");
    let models: Vec<Value> = legacy_config["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let field = |name: &str| m[name].as_str().unwrap();
            model(
                field("provider"),
                field("type"),
                field("model"),
                m["isPaid"] == true,
            )
        })
        .collect();
    let prompt = "Written after the upgrade.";
    let update = "/api/v1/update/ai-model-config";
    s.put(
        &alice,
        update,
        json!({"models": models, "system_prompt": prompt}),
    )
    .await;

    // Family C: a first key for a provider dan had only a model id for, and a new model id.
    s.put(
        &dan,
        "/api/user/api-keys",
        json!({
            "openai": {"apiKey": UPGRADE_DAN_OPENAI},
            "anthropic": {"modelId": "claude-opus-4-20250514"}
        }),
    )
    .await;

    // Each change shows, and only it.
    let llms = s.get(&ada, &format!("/ai/llm?workspaceId={WS}")).await;
    let expected_names: Vec<String> = llm_names(legacy_llms)
        .into_iter()
        .filter(|name| name != "Prod OpenAI")
        .map(|name| match name.as_str() {
            "Staging Claude" => "Staging Router".to_owned(),
            _ => name,
        })
        .collect();
    assert_eq!(llm_names(&llms), expected_names);
    let google = llms["aiLlms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|llm| llm["aiType"] == "GOOGLE");
    assert_eq!(
        google.count(),
        1,
        "family E's key was replaced, not joined: {llms}"
    );
    for (name, workspace, available) in [
        ("Prod%20OpenAI", WS, true),
        ("Prod%20OpenAI", WS2, false),
        ("Staging%20Claude", WS, true),
        ("Staging%20Router", WS, false),
    ] {
        let path = format!("/api/v1/names/available?workspaceId={workspace}&name={name}");
        assert_eq!(
            s.get(&ada_both, &path).await["available"],
            available,
            "{path}"
        );
    }
    let mut expected_keys = legacy_keys.clone();
    expected_keys[d_key]["last_4_chars"] = json!("sk-...mnmn");
    assert_eq!(
        s.get(&alice, "/api/keys").await,
        expected_keys,
        "same id and creation time"
    );
    let mut expected_providers = recorded(&reads, &legacy, "E: providers").clone();
    expected_providers[1]["key_hint"] = json!("AIz...opop");
    assert_eq!(
        s.get(&ada, "/api/v1/settings/providers").await,
        expected_providers
    );
    let alice_scoped = alice.clone().with_scope("keys:ciphertext");
    let mut expected_config = recorded(&reads, &legacy, "A: alice's, with ciphertexts").clone();
    expected_config["system_prompt"] = json!(prompt);
    assert_eq!(
        s.get(&alice_scoped, WITH_KEYS).await,
        expected_config,
        "the previous build's ciphertexts and hints are kept"
    );
    let dan_keys = s.get(&dan, "/api/user/api-keys").await;
    assert_eq!(
        dan_keys["openai"],
        json!({"configured": true, "keyHint": "sk-...qrqr", "modelId": "gpt-4.1", "isDefaultModel": false})
    );
    assert_eq!(dan_keys["anthropic"]["modelId"], "claude-opus-4-20250514");
    assert_eq!(
        dan_keys["bedrock"],
        recorded(&reads, &legacy, "C: dan's")["bedrock"]
    );

    // The history: the new entries, newest first, then the previous build's as they were.
    let history = s.get(&ada, "/api/v1/history?limit=500").await;
    let entries = history["events"].as_array().unwrap();
    let legacy_history = recorded(&reads, &legacy, "history: the workspace");
    let legacy_entries = legacy_history["events"].as_array().unwrap();
    let new = (app.event_count().await - legacy_events) as usize;
    // Rename, removal, endpoint (unless the new provider got the old port), validation, D's
    // and E's replaced secrets, the prompt, C's credential with its attachment and model id.
    assert_eq!(new, 9 + usize::from(legacy_endpoint != endpoint.as_str()));
    assert_eq!(entries.len(), legacy_entries.len() + new);
    assert_eq!(
        &entries[new..],
        &legacy_entries[..],
        "the previous build's entries"
    );

    // A rebuild of the read model from the whole log, old events and new, answers the same.
    // It numbers history entries by time: the entries written above stay ahead of the
    // previous build's only where this machine's clock is past the fixture's. On one whose
    // clock is behind, they legitimately move in among them, so history is compared as a set.
    let at =
        |entry: &Value| -> DateTime<Utc> { entry["occurredAt"].as_str().unwrap().parse().unwrap() };
    let clock_is_past_the_fixture = entries[..new]
        .iter()
        .all(|entry| at(entry) > at(&legacy_entries[0]));
    let before_rebuild = ask_all(&app, &reads).await;
    let replayed = aimc_store::Projector::new(app.pool.clone())
        .rebuild()
        .await
        .unwrap();
    assert_eq!(replayed as i64, app.event_count().await);
    let rebuilt = ask_all(&app, &reads).await;
    if clock_is_past_the_fixture {
        assert_same_answers("after a rebuild", &reads, &before_rebuild, &rebuilt);
    } else {
        let unordered: Vec<usize> = (0..reads.len())
            .filter(|index| !reads[*index].path.starts_with("/api/v1/history"))
            .collect();
        let pick = |all: &[Answer]| -> Vec<Answer> {
            unordered.iter().map(|index| all[*index].clone()).collect()
        };
        let unordered_reads: Vec<Read> = unordered.iter().map(|i| reads[*i].clone()).collect();
        let (before, after) = (pick(&before_rebuild), pick(&rebuilt));
        assert_same_answers("after a rebuild", &unordered_reads, &before, &after);
        let as_set = |history: &Value| {
            let mut entries = history["events"].as_array().unwrap().clone();
            entries.sort_by_key(|entry| {
                let aggregate = entry["aggregateId"].as_str().unwrap().to_owned();
                (aggregate, entry["sequence"].as_i64().unwrap())
            });
            entries
        };
        let after = s.get(&ada, "/api/v1/history?limit=500").await;
        assert_eq!(
            as_set(&after),
            as_set(&history),
            "the history after a rebuild"
        );
    }
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_rebuild_of_the_previous_builds_log_gives_the_answers_its_read_model_gave() {
    let app = spawn_legacy_app().await;
    let (reads, legacy) = recorded_reads();

    let replayed = aimc_store::Projector::new(app.pool.clone())
        .rebuild()
        .await
        .unwrap();

    assert_eq!(replayed as i64, app.event_count().await);
    // History positions (and so cursors) are renumbered by a rebuild; they come out the same
    // because the previous build recorded its entries in time order.
    let rebuilt = ask_all(&app, &reads).await;
    assert_same_answers("after rebuilding the legacy log", &reads, &legacy, &rebuilt);
    app.assert_no_plain_key_anywhere().await;
}
