//! Token verification keys from a JWKS URL (`AIMC_JWT_JWKS_URL`): served by the test itself,
//! which counts how often aimc fetches them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aimc_api::auth::{Audience, Claims};
use aimc_api::Role;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use poem::http::StatusCode as PoemStatus;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Response, Route, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

/// An ES256 signing key and its public half as a JWK.
struct SigningKey {
    kid: String,
    private_pem: String,
    jwk: Value,
}

impl SigningKey {
    fn new(kid: &str) -> Self {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let point = secret.public_key().to_encoded_point(false);
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "use": "sig",
            "alg": "ES256",
            "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        });
        SigningKey {
            kid: kid.to_owned(),
            private_pem: secret
                .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
                .unwrap()
                .to_string(),
            jwk,
        }
    }

    /// A token for `app`'s workspace, signed with this key and carrying `kid`.
    fn token_with_kid(&self, app: &TestApp, kid: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: "idp-user".into(),
            workspaces: HashMap::from([(app.workspace.clone(), Role::Owner)]),
            scope: None,
            iss: "aimc".into(),
            aud: Audience::One("aimc".into()),
            exp: (now + 600) as u64,
            iat: now as u64,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        encode(
            &header,
            &claims,
            &EncodingKey::from_ec_pem(self.private_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn token(&self, app: &TestApp) -> String {
        self.token_with_kid(app, &self.kid)
    }
}

/// What the test's identity provider answers at `/jwks`: a key set, or an error status.
enum Published {
    Keys(Vec<Value>),
    Failing,
}

struct IdentityProvider {
    url: String,
    published: Arc<Mutex<Published>>,
    fetches: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

impl IdentityProvider {
    async fn start(keys: &[&SigningKey]) -> Self {
        let published = Arc::new(Mutex::new(Published::Keys(Vec::new())));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (answer, counter) = (published.clone(), fetches.clone());
        let jwks = poem::endpoint::make_sync(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            match &*answer.lock().unwrap() {
                Published::Keys(keys) => Response::builder()
                    .content_type("application/json")
                    .body(json!({ "keys": keys }).to_string()),
                Published::Failing => Response::builder()
                    .status(PoemStatus::SERVICE_UNAVAILABLE)
                    .body("down for maintenance"),
            }
        });
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor)
                .run(Route::new().at("/jwks", jwks))
                .await;
        });
        let provider = IdentityProvider {
            url: format!("http://127.0.0.1:{port}/jwks"),
            published,
            fetches,
            _server: server,
        };
        provider.publish(keys);
        provider
    }

    fn publish(&self, keys: &[&SigningKey]) {
        *self.published.lock().unwrap() =
            Published::Keys(keys.iter().map(|key| key.jwk.clone()).collect());
    }

    fn fail(&self) {
        *self.published.lock().unwrap() = Published::Failing;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn random_kid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn spawn_app_trusting(provider: &IdentityProvider, refresh_seconds: u64) -> TestApp {
    let url = provider.url.clone();
    spawn_app_with(move |settings| {
        settings.jwt_jwks_url = Some(url);
        settings.jwt_jwks_refresh_seconds = refresh_seconds;
    })
    .await
}

/// The status of a read with `token`: 404 (no configuration yet) means the token was accepted.
async fn status_with(app: &TestApp, token: &str) -> StatusCode {
    app.request(
        Method::GET,
        "/api/v1/get/ai-model-config",
        Some(token),
        None,
    )
    .await
    .status
}

const ACCEPTED: StatusCode = StatusCode::NOT_FOUND;

/// `count` requests at once, each with a token naming a `kid` nobody published; every one
/// must be refused.
async fn burst_of_unknown_kids(app: &TestApp, key: &SigningKey, count: usize) {
    let tokens: Vec<String> = (0..count)
        .map(|_| key.token_with_kid(app, &random_kid()))
        .collect();
    let statuses =
        futures::future::join_all(tokens.iter().map(|token| status_with(app, token))).await;
    assert!(
        statuses
            .iter()
            .all(|status| *status == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_key_published_at_the_jwks_url_is_accepted_without_restart() {
    let (first, second) = (
        SigningKey::new(&random_kid()),
        SigningKey::new(&random_kid()),
    );
    let provider = IdentityProvider::start(&[&first]).await;
    let app = spawn_app_trusting(&provider, 3600).await;
    assert_eq!(provider.fetches(), 1, "fetched once at start");
    assert_eq!(status_with(&app, &first.token(&app)).await, ACCEPTED);
    // The configured HS256 secret still verifies its tokens beside the published keys.
    let hs256 = app.token("alice", Role::Member);
    assert_eq!(status_with(&app, &hs256).await, ACCEPTED);
    assert_eq!(provider.fetches(), 1, "known keys need no fetch");

    provider.publish(&[&first, &second]);
    assert_eq!(
        status_with(&app, &second.token(&app)).await,
        ACCEPTED,
        "a token signed with a newly published key"
    );
    assert_eq!(
        provider.fetches(),
        2,
        "its unknown kid fetched the keys once"
    );
    assert_eq!(status_with(&app, &first.token(&app)).await, ACCEPTED);

    // Within the window of that fetch, unknown kids fetch nothing more.
    burst_of_unknown_kids(&app, &first, 40).await;
    assert_eq!(provider.fetches(), 2);
    // A token signed with a key whose kid is known, but by another key, does not verify.
    let impostor = SigningKey::new("impostor");
    assert_eq!(
        status_with(&app, &impostor.token_with_kid(&app, &first.kid)).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_burst_of_unknown_kids_fetches_the_jwks_at_most_once_per_window() {
    let key = SigningKey::new(&random_kid());
    let provider = IdentityProvider::start(&[&key]).await;
    let app = spawn_app_trusting(&provider, 3600).await;
    assert_eq!(provider.fetches(), 1);

    let started = Instant::now();
    burst_of_unknown_kids(&app, &key, 100).await;
    burst_of_unknown_kids(&app, &key, 100).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the bursts must fit in the 30 s window to prove anything"
    );
    assert_eq!(
        provider.fetches(),
        2,
        "200 tokens with random kids: one fetch for all of them"
    );
    assert_eq!(status_with(&app, &key.token(&app)).await, ACCEPTED);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_keys_and_a_withdrawn_key_goes_at_the_next_refresh() {
    let (kept, withdrawn) = (
        SigningKey::new(&random_kid()),
        SigningKey::new(&random_kid()),
    );
    let provider = IdentityProvider::start(&[&kept, &withdrawn]).await;
    let app = spawn_app_trusting(&provider, 1).await;
    assert_eq!(status_with(&app, &withdrawn.token(&app)).await, ACCEPTED);

    provider.fail();
    let failing_since = provider.fetches();
    let deadline = Instant::now() + Duration::from_secs(20);
    while provider.fetches() < failing_since + 2 {
        assert!(Instant::now() < deadline, "no periodic refresh was seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for key in [&kept, &withdrawn] {
        assert_eq!(
            status_with(&app, &key.token(&app)).await,
            ACCEPTED,
            "the last good keys stay while the JWKS URL fails"
        );
    }
    assert!(
        captured_log_text().contains("the JWKS URL could not be fetched; keeping the last keys"),
        "a failed refresh is logged"
    );

    provider.publish(&[&kept]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_with(&app, &withdrawn.token(&app)).await == ACCEPTED {
        assert!(
            Instant::now() < deadline,
            "the withdrawn key is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        status_with(&app, &withdrawn.token(&app)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status_with(&app, &kept.token(&app)).await, ACCEPTED);
}

#[tokio::test]
async fn start_fails_naming_the_setting_when_the_jwks_url_gives_no_keys() {
    let provider = IdentityProvider::start(&[]).await;
    let refused = IdentityProvider::start(&[]).await;
    refused.fail();
    for (case, url) in [
        ("nothing listens", "http://127.0.0.1:9/jwks".to_owned()),
        ("an error status", refused.url.clone()),
        ("an empty key set", provider.url.clone()),
        ("not a JWKS", provider.url.replace("/jwks", "/no-such-page")),
    ] {
        let mut settings = test_settings().await;
        settings.jwt_jwks_url = Some(url);
        let error = match aimc_server::startup::Application::build(settings).await {
            Ok(_) => panic!("{case}: the service started"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains("AIMC_JWT_JWKS_URL"), "{case}: {error}");
    }
}
