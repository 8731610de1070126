//! Health, readiness, the OpenAPI document and Swagger UI.

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
