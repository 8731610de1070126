//! Health, readiness, the OpenAPI document and Swagger UI.

use aimc_api::Role;
use reqwest::{Method, StatusCode};

use crate::harness::*;

#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let app = spawn_app().await;

    let health = app.request(Method::GET, "/healthz", None, None).await;
    let ready = app.request(Method::GET, "/readyz", None, None).await;

    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.body["checks"]["database"], "ok");
    assert_eq!(ready.body["checks"]["keyring"], "ok");
}

#[tokio::test]
async fn swagger_ui_and_the_spec_are_served() {
    let app = spawn_app().await;

    let docs = app.request(Method::GET, "/docs", None, None).await;
    let spec = app.request(Method::GET, "/openapi.json", None, None).await;
    let unknown = app.request(Method::GET, "/no/such/route", None, None).await;

    assert_eq!(docs.status, StatusCode::OK);
    assert!(
        docs.text.contains("swagger"),
        "{}",
        &docs.text[..200.min(docs.text.len())]
    );
    assert_eq!(spec.status, StatusCode::OK);
    assert_eq!(spec.body["info"]["title"], "aimc");
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["status"], 404);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_without_raw_paths() {
    let app = spawn_app().await;
    app.request(Method::GET, "/healthz", None, None).await;
    app.request(Method::GET, "/random/path/12345", None, None)
        .await;

    let metrics = app.request(Method::GET, "/metrics", None, None).await;

    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .text
            .contains(r#"aimc_http_requests_total{method="GET",route="/healthz",status="200"} 1"#),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains(r#"route="other",status="404""#));
    assert!(!metrics.text.contains("12345"));
}

#[test]
fn the_committed_spec_is_what_the_code_generates() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../openapi/openapi.json"
    ))
    .expect("openapi/openapi.json is missing: run `cargo run -p aimc-server -- openapi`");
    assert!(
        committed == format!("{}\n", aimc_api::openapi_json()),
        "openapi/openapi.json is out of date: run `cargo run -p aimc-server -- openapi` and commit it"
    );
}

#[test]
fn every_operation_has_an_id_a_summary_security_and_its_errors() {
    let spec: serde_json::Value = serde_json::from_str(&aimc_api::openapi_json()).unwrap();
    let public = ["/healthz", "/readyz"];
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let name = format!("{method} {path}");
            assert!(operation["operationId"].is_string(), "{name}: operationId");
            assert!(
                operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: summary"
            );
            let responses = operation["responses"].as_object().unwrap();
            if public.contains(&path.as_str()) {
                continue;
            }
            assert!(
                operation["security"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: security"
            );
            for status in ["400", "401", "403", "500", "503"] {
                assert!(responses.contains_key(status), "{name}: documents {status}");
            }
        }
    }
}

#[tokio::test]
async fn shutting_down_finishes_the_request_in_flight_then_stops_listening() {
    let app = spawn_app().await;
    let address = app.address.clone();
    let token = app.token("alice", aimc_api::Role::Member);
    // A body that arrives in two parts, the second after shutdown has begun.
    let (first, second) = (
        r#"{"models": [], "#.to_owned(),
        r#""system_prompt": "in flight"}"#.to_owned(),
    );
    let body = futures::stream::unfold(0, move |part| {
        let (first, second) = (first.clone(), second.clone());
        async move {
            match part {
                0 => Some((Ok::<_, std::io::Error>(first), 1)),
                1 => {
                    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
                    Some((Ok(second), 2))
                }
                _ => None,
            }
        }
    });
    let in_flight = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{address}/api/v1/create/ai-model-config"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    tokio::time::timeout(std::time::Duration::from_secs(10), app.stop())
        .await
        .expect("shutdown hung");

    let response = in_flight
        .await
        .unwrap()
        .expect("the request in flight was cut off");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(
        reqwest::get(format!("{address}/healthz")).await.is_err(),
        "still listening after shutdown"
    );
}

#[test]
fn the_spec_speaks_to_users_with_examples_servers_and_open_probes() {
    let text = aimc_api::openapi_json();
    let spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    for internal in [
        "seed 00",
        "Family A",
        "Family B",
        "Family C",
        "Family D",
        "Family E",
        "../shared",
    ] {
        assert!(!text.contains(internal), "the spec mentions {internal:?}");
    }
    assert!(!spec["servers"].as_array().unwrap().is_empty(), "servers");
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            spec["paths"][probe]["get"]["security"],
            serde_json::json!([]),
            "{probe}"
        );
    }
    let schemas = &spec["components"]["schemas"];
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let Some(body) = operation.get("requestBody") else {
                continue;
            };
            let schema = &body["content"]["application/json; charset=utf-8"]["schema"]["$ref"];
            let name = schema
                .as_str()
                .unwrap()
                .trim_start_matches("#/components/schemas/");
            assert!(
                schemas[name]["example"].is_object(),
                "{method} {path}: Swagger UI pre-fills {name} with its example"
            );
        }
    }
}

/// What Swagger UI pre-fills is accepted as it is, by the token `./dev run` prints (workspace
/// `dev`, owner), in an order a person trying the operations would follow.
#[tokio::test]
async fn every_request_example_succeeds_as_is() {
    let app = spawn_app_from(test_settings().await, "dev").await;
    let token = app.token("dev", Role::Owner);
    let spec: serde_json::Value = serde_json::from_str(&aimc_api::openapi_json()).unwrap();
    let example = |path: &str, method: &str| {
        let operation = &spec["paths"][path][method];
        let schema = operation["requestBody"]["content"]["application/json; charset=utf-8"]
            ["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has a body"))
            .trim_start_matches("#/components/schemas/")
            .to_owned();
        let example = spec["components"]["schemas"][&schema]["example"].clone();
        for key in ["secret", "api_key", "apiKey"] {
            find_strings(&example, key, &mut |plain| app.remember_secret(plain));
        }
        example
    };
    let created = app
        .post(
            "/api/v1/create/ai-model-config",
            &token,
            example("/api/v1/create/ai-model-config", "post"),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let updated = app
        .put(
            "/api/v1/update/ai-model-config",
            &token,
            example("/api/v1/update/ai-model-config", "put"),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    let llm = app
        .post("/ai/llm", &token, example("/ai/llm", "post"))
        .await;
    assert_eq!(llm.body["success"], true, "{}", llm.text);
    let id = llm.body["aiLlmId"].as_str().unwrap();
    let renamed = app
        .put(
            &format!("/ai/llm/{id}"),
            &token,
            example("/ai/llm/{id}", "put"),
        )
        .await;
    assert_eq!(renamed.body["success"], true, "{}", renamed.text);
    let personal = app
        .put(
            "/api/user/api-keys",
            &token,
            example("/api/user/api-keys", "put"),
        )
        .await;
    assert_eq!(personal.status, StatusCode::OK, "{}", personal.text);
    let key = app
        .post("/api/keys", &token, example("/api/keys", "post"))
        .await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.text);
    let number = key.body["id"].as_i64().unwrap();
    let replaced = app
        .put(
            &format!("/api/keys/{number}"),
            &token,
            example("/api/keys/{key_id}", "put"),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    let saved = app
        .post(
            "/api/v1/settings/providers/openai",
            &token,
            example("/api/v1/settings/providers/{provider}", "post"),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    let assigned = app
        .post(
            "/api/v1/settings/task-assignments",
            &token,
            example("/api/v1/settings/task-assignments", "post"),
        )
        .await;
    assert_eq!(assigned.status, StatusCode::OK, "{}", assigned.text);
    app.assert_no_plain_key_anywhere().await;
}

fn find_strings(value: &serde_json::Value, key: &str, found: &mut impl FnMut(&str)) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, value) in fields {
                match value.as_str() {
                    Some(text) if name == key => found(text),
                    _ => find_strings(value, key, found),
                }
            }
        }
        serde_json::Value::Array(items) => {
            items.iter().for_each(|item| find_strings(item, key, found))
        }
        _ => {}
    }
}
