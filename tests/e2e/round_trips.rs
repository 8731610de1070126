//! What a write costs PostgreSQL: statements counted on the wire, between the service and the
//! database, by a proxy that reads the frontend's messages: each `Execute` (extended protocol)
//! or simple `Query` is one. sqlx waits for each statement's result before sending the next,
//! so on a warm connection (statements prepared) each statement is one round trip.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aimc_api::Role;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

/// Forwards connections to PostgreSQL, counting the statements the clients run, and among
/// them those that append events.
struct CountingProxy {
    port: u16,
    round_trips: Arc<AtomicUsize>,
    appends: Arc<AtomicUsize>,
    /// The text of each statement run, in order.
    texts: Arc<Mutex<Vec<String>>>,
}

/// `SSLRequest` and `GSSENCRequest` precede the startup message, which has no type byte either.
const ENCRYPTION_REQUESTS: [i32; 2] = [80_877_103, 80_877_104];

impl CountingProxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let round_trips = Arc::new(AtomicUsize::new(0));
        let appends = Arc::new(AtomicUsize::new(0));
        let texts = Arc::new(Mutex::new(Vec::new()));
        let counters = (round_trips.clone(), appends.clone(), texts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.unwrap();
                tokio::spawn(relay(client, server, counters.clone()));
            }
        });
        CountingProxy {
            port,
            round_trips,
            appends,
            texts,
        }
    }

    fn take(&self) -> usize {
        self.appends.store(0, Ordering::SeqCst);
        self.texts.lock().unwrap().clear();
        self.round_trips.swap(0, Ordering::SeqCst)
    }

    fn take_appends(&self) -> usize {
        self.appends.swap(0, Ordering::SeqCst)
    }

    /// The statements run since the last take whose text holds `needle`.
    fn count_running(&self, needle: &str) -> usize {
        let texts = self.texts.lock().unwrap();
        texts.iter().filter(|text| text.contains(needle)).count()
    }
}

/// The C string at the start of `bytes`.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    (round_trips, appends, ran): (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>),
) {
    // Prepared statements' texts by name, and the statement each portal was bound to: an
    // `Execute` names only its portal.
    let mut texts: std::collections::HashMap<String, String> = Default::default();
    let mut portals: std::collections::HashMap<String, String> = Default::default();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut untyped = true;
    loop {
        let message = if untyped {
            let mut length = [0u8; 4];
            if client_read.read_exact(&mut length).await.is_err() {
                return;
            }
            let mut rest = vec![0u8; i32::from_be_bytes(length) as usize - 4];
            if client_read.read_exact(&mut rest).await.is_err() {
                return;
            }
            let code = i32::from_be_bytes(rest[..4].try_into().unwrap());
            untyped = ENCRYPTION_REQUESTS.contains(&code);
            [length.to_vec(), rest].concat()
        } else {
            let mut header = [0u8; 5];
            if client_read.read_exact(&mut header).await.is_err() {
                return;
            }
            let length = i32::from_be_bytes(header[1..].try_into().unwrap()) as usize;
            let mut body = vec![0u8; length - 4];
            if client_read.read_exact(&mut body).await.is_err() {
                return;
            }
            let text = match header[0] {
                b'P' => {
                    let name = c_string(&body);
                    texts.insert(name.clone(), c_string(&body[name.len() + 1..]));
                    None
                }
                b'B' => {
                    let portal = c_string(&body);
                    portals.insert(portal.clone(), c_string(&body[portal.len() + 1..]));
                    None
                }
                b'E' => portals
                    .get(&c_string(&body))
                    .and_then(|statement| texts.get(statement))
                    .cloned(),
                b'Q' => Some(c_string(&body)),
                _ => None,
            };
            if let Some(text) = text {
                round_trips.fetch_add(1, Ordering::SeqCst);
                if text.contains("INSERT INTO events") {
                    appends.fetch_add(1, Ordering::SeqCst);
                }
                ran.lock().unwrap().push(text);
            }
            [header.to_vec(), body].concat()
        };
        if server_write.write_all(&message).await.is_err() {
            return;
        }
    }
}

/// An app whose one database connection goes through a counting proxy, so every statement
/// after the first use of its text is one round trip.
async fn counted_app() -> (TestApp, CountingProxy) {
    let mut settings = test_settings().await;
    let url = url::Url::parse(settings.database_url.as_ref().unwrap().expose_secret()).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = CountingProxy::start(upstream).await;
    let mut proxied = url.clone();
    proxied.set_host(Some("127.0.0.1")).unwrap();
    proxied.set_port(Some(proxy.port)).unwrap();
    proxied.query_pairs_mut().append_pair("sslmode", "disable");
    settings.database_url = Some(SecretString::from(proxied.to_string()));
    settings.database_max_connections = 1;
    let workspace = format!("ws-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    (spawn_app_from(settings, &workspace).await, proxy)
}

/// Seed 000's models with a new key for gpt-4 (replacing its secret) and a new model with a
/// key of its own (a new credential, named and numbered).
async fn models_with_new_keys(app: &TestApp, token: &str, round: usize) -> Value {
    let openai = app
        .encrypt_key(token, &format!("sk-openai-round-{round:04}-abcdef"))
        .await;
    let extra = app
        .encrypt_key(token, &format!("sk-extra-round-{round:04}-abcdef"))
        .await;
    json!({"models": [
        {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": openai, "isPaid": true},
        {"provider": "Anthropic", "type": "chat", "model": "claude-2", "isPaid": true},
        {"provider": "Ollama", "type": "chat", "model": "llama3", "isPaid": false},
        {"provider": "OpenAI", "type": "embedding", "model": format!("embed-{round}"), "apiKeyEncrypted": extra, "isPaid": true}
    ], "system_prompt": format!("round {round}")})
}

#[tokio::test]
async fn a_family_a_put_with_new_keys_takes_at_most_five_round_trips() {
    let (app, proxy) = counted_app().await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    for warm_up in 0..2 {
        let body = models_with_new_keys(&app, &token, warm_up).await;
        let response = app
            .put("/api/v1/update/ai-model-config", &token, body)
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    }
    let body = models_with_new_keys(&app, &token, 7).await;
    proxy.take();

    let response = app
        .put("/api/v1/update/ai-model-config", &token, body)
        .await;

    let round_trips = proxy.take();
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.body["models"][3]["keyHint"], "sk-...cdef");
    // Number and name the new credential; append and project. The configuration is the one
    // the warm-up's append parked in the process; a process without it loads it first (4).
    assert!(round_trips <= 5, "{round_trips} round trips");
    assert_eq!(
        round_trips, 3,
        "the count changed: update the comment above"
    );
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_family_c_put_takes_at_most_five_round_trips() {
    let (app, proxy) = counted_app().await;
    let token = app.token("carol", Role::Member);
    app.store_key_apart(&token, "OPENAI", "sk-openai-stored-elsewhere-4321")
        .await;
    let put = |round: usize| {
        app.remember_secret(&format!("sk-ant-round-{round:04}-abcdef"));
        app.remember_secret(&format!("sk-or-round-{round:04}-abcdef"));
        app.put(
            "/api/user/api-keys",
            &token,
            json!({
                "anthropic": {"apiKey": format!("sk-ant-round-{round:04}-abcdef")},
                "openrouter": {"apiKey": format!("sk-or-round-{round:04}-abcdef"), "modelId": format!("model-{round}")}
            }),
        )
    };
    for warm_up in 0..2 {
        assert_eq!(put(warm_up).await.status, StatusCode::OK);
    }
    proxy.take();

    let response = put(7).await;

    let round_trips = proxy.take();
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.body["openrouter"]["modelId"], "model-7");
    assert_eq!(response.body["openrouter"]["keyHint"], "sk-...cdef");
    // The answer shows the key stored through `/api/keys` too.
    assert_eq!(response.body["openai"]["keyHint"], "sk-...4321");
    // Append and project (both providers have keys to replace), starting from the
    // configuration the warm-up parked (a process without it loads it first: 2), in one
    // statement that also finds the caller's keys stored through `/api/keys`.
    assert!(round_trips <= 5, "{round_trips} round trips");
    assert_eq!(
        round_trips, 1,
        "the count changed: update the comment above"
    );
    app.assert_no_plain_key_anywhere().await;
}

/// Tokens of `users` members of one workspace, `user-0` onwards.
fn member_tokens(app: &TestApp, users: usize) -> Vec<String> {
    (0..users)
        .map(|user| app.token(&format!("user-{user}"), Role::Member))
        .collect()
}

#[tokio::test]
async fn concurrent_commands_on_different_configurations_share_their_statements() {
    const USERS: usize = 16;
    let (app, proxy) = counted_app().await;
    let tokens = member_tokens(&app, USERS);
    let put = |user: usize, round: usize| {
        let key = format!("sk-user-{user:02}-round-{round}-abcdef{user:02}");
        app.remember_secret(&key);
        app.put(
            "/api/user/api-keys",
            &tokens[user],
            json!({"openai": {"apiKey": key, "modelId": format!("model-{user}-{round}")}}),
        )
    };
    for user in 0..USERS {
        assert_eq!(put(user, 0).await.status, StatusCode::OK);
    }
    proxy.take();

    let responses = futures::future::join_all((0..USERS).map(|user| put(user, 1))).await;

    let appends = proxy.take_appends();
    for (user, response) in responses.iter().enumerate() {
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        assert_eq!(
            response.body["openai"]["modelId"],
            format!("model-{user}-1")
        );
    }
    // One connection, so the commands' writes queue for it: those that wait go together.
    assert!(
        appends < USERS,
        "{USERS} commands appended in {appends} statements"
    );
    // And operators see the same in the statements' histogram.
    let metrics = app.request(Method::GET, "/metrics", None, None).await;
    let sample = |name: &str| -> f64 {
        metrics
            .text
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {}", metrics.text))
            .parse()
            .unwrap()
    };
    assert_eq!(
        sample("aimc_write_statement_commands_sum"),
        (2 * USERS) as f64
    );
    assert_eq!(
        sample("aimc_write_statement_commands_count"),
        (USERS + appends) as f64
    );
    for (user, token) in tokens.iter().enumerate() {
        let keys = app.get("/api/user/api-keys", token).await;
        assert_eq!(keys.body["openai"]["modelId"], format!("model-{user}-1"));
        assert_eq!(keys.body["openai"]["keyHint"], format!("sk-...ef{user:02}"));
    }
    // The shared statement handed out the workspace's history positions to every command.
    let history = app
        .get(
            "/api/v1/history?limit=100",
            &app.token("owner", Role::Owner),
        )
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.text);
    let actors: std::collections::HashSet<&str> = history.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors.len(), USERS, "{actors:?}");
    app.assert_no_plain_key_anywhere().await;
}

/// Family C shows, beside the configuration, the caller's keys stored through `/api/keys`:
/// a read on every answer, reads and writes alike. Callers asking together share its query,
/// and each still gets only its own keys.
#[tokio::test]
async fn concurrent_callers_share_the_lookup_of_their_keys_stored_elsewhere() {
    const USERS: usize = 16;
    let (app, proxy) = counted_app().await;
    let tokens = member_tokens(&app, USERS);
    // Even users store an Anthropic key through `/api/keys`; odd users store none.
    for user in (0..USERS).step_by(2) {
        let key = format!("sk-ant-user-{user:02}-stored-elsewhere-00{user:02}");
        app.store_key_apart(&tokens[user], "ANTHROPIC", &key).await;
    }
    proxy.take();

    let answers = futures::future::join_all(
        tokens
            .iter()
            .map(|token| app.get("/api/user/api-keys", token)),
    )
    .await;

    for (user, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        let anthropic = &answer.body["anthropic"];
        if user % 2 == 0 {
            assert_eq!(
                anthropic["keyHint"],
                format!("sk-...00{user:02}"),
                "user {user}"
            );
        } else {
            assert_eq!(anthropic["configured"], false, "user {user}: {anthropic}");
        }
        assert_eq!(answer.body["openai"]["configured"], false, "user {user}");
    }
    // One connection, so the lookups queue for it: those that wait go together.
    let lookups = proxy.count_running("asked_provider");
    assert!(
        (1..USERS).contains(&lookups),
        "{USERS} callers' keys looked up in {lookups} statements"
    );
    app.assert_no_plain_key_anywhere().await;
}
