//! Bearer tokens: what is accepted and what gets 401.

use std::collections::HashMap;

use aimc_api::auth::{Audience, Claims};
use aimc_api::Role;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;

fn claims(app: &TestApp, exp_offset: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: "mallory".into(),
        workspaces: HashMap::from([(app.workspace.clone(), Role::Owner)]),
        scope: Some("keys:ciphertext".into()),
        iss: "aimc".into(),
        aud: Audience::One("aimc".into()),
        exp: (now + exp_offset) as u64,
        iat: now as u64,
    }
}

async fn status_with(app: &TestApp, token: Option<&str>) -> TestResponse {
    app.request(Method::GET, "/api/v1/get/ai-model-config", token, None)
        .await
}

#[tokio::test]
async fn requests_without_a_valid_token_are_unauthorized() {
    let app = spawn_app().await;
    let secret = "jwt-secret-for-this-test-only-000000";
    let expired = encode(
        &Header::new(Algorithm::HS256),
        &claims(&app, -3600),
        &EncodingKey::from_secret(app_secret(&app).as_bytes()),
    )
    .unwrap();
    let wrongly_signed = encode(
        &Header::new(Algorithm::HS256),
        &claims(&app, 600),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&app, 600)).unwrap())
    );
    let mut foreign_audience = claims(&app, 600);
    foreign_audience.aud = Audience::Many(vec!["someone-else".into(), "another".into()]);
    let foreign_audience = encode(
        &Header::new(Algorithm::HS256),
        &foreign_audience,
        &EncodingKey::from_secret(app_secret(&app).as_bytes()),
    )
    .unwrap();
    let mut with_unknown_kid = Header::new(Algorithm::HS256);
    with_unknown_kid.kid = Some("zzz".into());
    let unknown_kid = encode(
        &with_unknown_kid,
        &claims(&app, 600),
        &EncodingKey::from_secret(app_secret(&app).as_bytes()),
    )
    .unwrap();
    let mut foreign_issuer = claims(&app, 600);
    foreign_issuer.iss = "evil".into();
    let foreign_issuer = encode(
        &Header::new(Algorithm::HS256),
        &foreign_issuer,
        &EncodingKey::from_secret(app_secret(&app).as_bytes()),
    )
    .unwrap();

    for (case, token) in [
        ("missing", None),
        ("garbage", Some("not-a-jwt")),
        ("expired", Some(expired.as_str())),
        ("wrongly signed", Some(wrongly_signed.as_str())),
        ("alg none", Some(unsigned.as_str())),
        ("foreign audience", Some(foreign_audience.as_str())),
        ("foreign issuer", Some(foreign_issuer.as_str())),
        ("unknown kid", Some(unknown_kid.as_str())),
    ] {
        let response = status_with(&app, token).await;
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{case}: {}",
            response.text
        );
        assert_eq!(response.body["status"], 401, "{case}");
        assert_eq!(response.headers["www-authenticate"], "Bearer", "{case}");
    }
    let valid = app.token("mallory", Role::Owner);
    assert_eq!(
        status_with(&app, Some(&valid)).await.status,
        StatusCode::NOT_FOUND
    );
    let mut listed_audience = claims(&app, 600);
    listed_audience.aud = Audience::Many(vec!["other-api".into(), "aimc".into()]);
    let listed_audience = encode(
        &Header::new(Algorithm::HS256),
        &listed_audience,
        &EncodingKey::from_secret(app_secret(&app).as_bytes()),
    )
    .unwrap();
    assert_eq!(
        status_with(&app, Some(&listed_audience)).await.status,
        StatusCode::NOT_FOUND,
        "aimc among several audiences"
    );
    let mut not_yet = serde_json::to_value(claims(&app, 600)).unwrap();
    not_yet["nbf"] = serde_json::json!(chrono::Utc::now().timestamp() + 3600);
    let not_yet = encode(
        &Header::new(Algorithm::HS256),
        &not_yet,
        &EncodingKey::from_secret(app_secret(&app).as_bytes()),
    )
    .unwrap();
    assert_eq!(
        status_with(&app, Some(&not_yet)).await.status,
        StatusCode::UNAUTHORIZED,
        "nbf in the future"
    );
}

fn app_secret(app: &TestApp) -> String {
    use secrecy::ExposeSecret;
    app.settings
        .jwt_hs256_secret
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_owned()
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_against_configured_public_keys() {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    let rsa_key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let rsa_public = rsa_key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let rsa_private = rsa_key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let ec_key = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let ec_public = ec_key
        .public_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    let ec_private = ec_key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();

    let dir = std::env::temp_dir().join(uuid::Uuid::new_v4().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    for (name, public) in [("rsa", &rsa_public), ("ec", &ec_public)] {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, public).unwrap();
        let app =
            spawn_app_with(|settings| settings.jwt_public_key_file = Some(path.clone())).await;
        let token = match name {
            "rsa" => encode(
                &Header::new(Algorithm::RS256),
                &claims(&app, 600),
                &EncodingKey::from_rsa_pem(rsa_private.as_bytes()).unwrap(),
            ),
            _ => encode(
                &Header::new(Algorithm::ES256),
                &claims(&app, 600),
                &EncodingKey::from_ec_pem(ec_private.as_bytes()).unwrap(),
            ),
        }
        .unwrap();
        // A token signed with the public key as an HMAC secret: the algorithm-confusion attack.
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims(&app, 600),
            &EncodingKey::from_secret(public.as_bytes()),
        )
        .unwrap();

        assert_eq!(
            status_with(&app, Some(&token)).await.status,
            StatusCode::NOT_FOUND,
            "{name} token accepted"
        );
        assert_eq!(
            status_with(&app, Some(&confused)).await.status,
            StatusCode::UNAUTHORIZED,
            "{name}: HS256 with the public key refused"
        );
    }
}

/// Every API answers a missing or unusable token with 401, each in its own error shape; the
/// Flashback-compatible and FastAPI-style ones once answered 400 and 422.
#[tokio::test]
async fn every_family_answers_a_bad_token_with_401() {
    let app = spawn_app().await;
    let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJtYWxsb3J5In0.";
    let operations = [
        (Method::GET, "/ai/llm".to_owned()),
        (Method::POST, "/ai/llm".to_owned()),
        (Method::GET, "/api/v1/settings/providers".to_owned()),
        (Method::POST, "/api/v1/settings/task-assignments".to_owned()),
        (Method::GET, "/api/user/api-keys".to_owned()),
        (Method::GET, "/api/keys".to_owned()),
        (Method::GET, "/api/v1/get/ai-model-config".to_owned()),
    ];
    for (method, path) in operations {
        for token in [None, Some("garbage"), Some(unsigned)] {
            let response = app
                .request(method.clone(), &path, token, Some(json!({})))
                .await;
            assert_eq!(
                response.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}: {}",
                response.text
            );
            assert_eq!(response.headers["www-authenticate"], "Bearer", "{path}");
            let explained = if path.starts_with("/ai/llm") {
                response.body["success"] == false && response.body["message"].is_string()
            } else if path.starts_with("/api/v1/settings") {
                response.body["detail"].is_string()
            } else {
                response.body["status"] == 401 && response.body["errors"].is_array()
            };
            assert!(explained, "{method} {path}: {}", response.text);
        }
    }
}

#[tokio::test]
async fn parameters_that_do_not_parse_are_named_in_words() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);

    let key_id = app
        .request(
            Method::PUT,
            "/api/keys/abc",
            Some(&token),
            Some(json!({"api_key": "x"})),
        )
        .await;
    assert_eq!(key_id.status, StatusCode::BAD_REQUEST, "{}", key_id.text);
    assert_eq!(
        key_id.body["errors"][0]["field"], "key_id",
        "{}",
        key_id.text
    );
    assert!(!key_id.text.contains("param0"), "{}", key_id.text);

    // An unencoded `+` arrives as a space.
    let since = app
        .get("/api/v1/history?since=2026-01-01T00:00:00+00:00", &token)
        .await;
    assert_eq!(since.status, StatusCode::BAD_REQUEST, "{}", since.text);
    assert_eq!(since.body["errors"][0]["field"], "since", "{}", since.text);
    assert!(!since.text.contains("string(date-time)"), "{}", since.text);
    assert!(since.text.contains("%2B"), "{}", since.text);
}
