//! Failures of what the service depends on: a refusal that says "retry", never a 500.

use aimc_api::Role;
use reqwest::StatusCode;

use crate::harness::*;

/// PostgreSQL ending the service's sessions (an administrator, a restart, a failover) is a 503
/// with `Retry-After` on every read path, as it is on writes; never a 500.
#[tokio::test]
async fn dropped_database_sessions_answer_503_with_retry_after_never_500() {
    let app = spawn_app().await;
    let token = app.token("alice", Role::Member);
    create_seed_config(&app, &token).await;
    let paths = [
        "/api/v1/get/ai-model-config",
        "/api/user/api-keys",
        "/api/keys",
    ];
    for path in paths {
        assert_eq!(app.get(path, &token).await.status, StatusCode::OK, "{path}");
    }

    for _ in 0..3 {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&app.pool)
        .await
        .unwrap();
        for path in paths {
            let response = app.get(path, &token).await;
            match response.status {
                StatusCode::OK => {}
                StatusCode::SERVICE_UNAVAILABLE => assert!(
                    response.headers.contains_key("retry-after"),
                    "{path}: a 503 says when to retry"
                ),
                other => panic!(
                    "{path}: {other} after the database ended a session: {}",
                    response.text
                ),
            }
        }
    }
}
