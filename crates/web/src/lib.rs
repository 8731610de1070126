//! The settings pages (seed 003's API key page and the rest of a person's AI settings), served
//! by aimc itself so there is no second server to run. The files under `web/` are embedded at
//! build time; they are plain ES modules, so `cargo build` is the whole build and nothing built
//! can go stale. The pages talk to the same API a generated client uses.
//!
//! Every answer carries a Content Security Policy that allows scripts, styles and connections
//! to this origin only, and no inline script: a key typed into these pages can only travel to
//! aimc's own API.

use std::sync::Arc;

use poem::http::{header, HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use rust_embed::RustEmbed;

/// `web/` holds only what the pages serve.
#[derive(RustEmbed)]
#[folder = "../../web/"]
struct Files;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The pages' addresses below `/settings`; each is the same document, which shows the page its
/// address names.
const PAGES: [&str; 6] = ["", "sign-in", "api-keys", "providers", "models", "history"];

/// Where the document expects what the server tells it at load (`boot`), as JSON.
const BOOT_MARKER: &str = "__AIMC_BOOT__";

/// Mints a development token; present only when the service runs in development mode.
pub type DevTokens = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// The endpoint to nest at `/settings`.
pub struct SettingsPages {
    document: String,
    dev_tokens: Option<DevTokens>,
}

impl SettingsPages {
    /// `boot` is handed to the pages in the document itself (catalogues of the API's enums,
    /// whether development mode is on), so the first paint needs no request.
    pub fn new(mut boot: serde_json::Value, dev_tokens: Option<DevTokens>) -> Self {
        boot["devMode"] = dev_tokens.is_some().into();
        let template = Files::get("index.html").expect("web/index.html is embedded");
        let template = String::from_utf8_lossy(&template.data).into_owned();
        // A JSON data block ends at the first `</script`; `<` escaped, no string can end it.
        let boot = boot.to_string().replace('<', "\\u003c");
        SettingsPages {
            document: template.replace(BOOT_MARKER, &boot),
            dev_tokens,
        }
    }

    fn page(&self) -> Response {
        Response::builder()
            .content_type("text/html; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(self.document.clone())
    }

    fn asset(&self, request: &Request, path: &str) -> Response {
        let Some(file) = Files::get(&format!("assets/{path}")) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let Some(content_type) = content_type(path) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
        let fresh = request
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
        let builder = Response::builder()
            .header(header::ETAG, etag)
            .header(header::CACHE_CONTROL, "no-cache");
        if fresh {
            return builder.status(StatusCode::NOT_MODIFIED).finish();
        }
        builder
            .content_type(content_type)
            .body(file.data.into_owned())
    }

    async fn dev_token(&self) -> Response {
        let Some(mint) = self.dev_tokens.clone() else {
            return StatusCode::NOT_FOUND.into_response();
        };
        match mint() {
            Ok(token) => Response::builder()
                .content_type("application/json; charset=utf-8")
                .header(header::CACHE_CONTROL, "no-store")
                .body(serde_json::json!({ "token": token }).to_string()),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

fn content_type(path: &str) -> Option<&'static str> {
    Some(match path.rsplit_once('.')?.1 {
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => return None,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Endpoint for SettingsPages {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        // Nested at `/settings`: the path here is what follows it.
        let path = request.uri().path().trim_start_matches('/').to_owned();
        let method = request.method().clone();
        let mut response = match (method, path.as_str()) {
            (Method::POST, "dev-token") => self.dev_token().await,
            (Method::GET | Method::HEAD, page) if PAGES.contains(&page) => self.page(),
            (Method::GET | Method::HEAD, asset) => match asset.strip_prefix("assets/") {
                Some(asset) if !asset.contains("..") => self.asset(&request, asset),
                _ => StatusCode::NOT_FOUND.into_response(),
            },
            (_, page) if PAGES.contains(&page) || page == "dev-token" => {
                StatusCode::METHOD_NOT_ALLOWED.into_response()
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        };
        let headers = response.headers_mut();
        for (name, value) in [
            ("content-security-policy", CONTENT_SECURITY_POLICY),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "DENY"),
            ("cross-origin-opener-policy", "same-origin"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::test::TestClient;
    use poem::Route;

    fn app(dev: bool) -> Route {
        let mint: Option<DevTokens> = dev.then(|| Arc::new(|| Ok("t0ken".to_owned())) as DevTokens);
        Route::new().nest(
            "/settings",
            SettingsPages::new(serde_json::json!({"note": "</script><b>"}), mint),
        )
    }

    #[tokio::test]
    async fn every_page_is_the_one_document_under_the_policy() {
        let client = TestClient::new(app(false));
        for page in [
            "/settings",
            "/settings/",
            "/settings/api-keys",
            "/settings/history",
        ] {
            let response = client.get(page).send().await;
            response.assert_status_is_ok();
            response.assert_header("content-security-policy", CONTENT_SECURITY_POLICY);
            let body = response.0.into_body().into_string().await.unwrap();
            assert!(body.contains("\"devMode\":false"), "{page}: {body}");
            assert!(
                !body.contains("</script><b>"),
                "boot data must not be able to end its script element"
            );
        }
        client
            .get("/settings/nowhere")
            .send()
            .await
            .assert_status(StatusCode::NOT_FOUND);
        client
            .get("/settings/assets/../index.html")
            .send()
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn assets_are_typed_and_revalidated_by_their_hash() {
        let client = TestClient::new(app(false));
        let response = client.get("/settings/assets/js/main.js").send().await;
        response.assert_status_is_ok();
        response.assert_content_type("text/javascript; charset=utf-8");
        let etag = response.0.headers()["etag"].to_str().unwrap().to_owned();
        client
            .get("/settings/assets/js/main.js")
            .header("if-none-match", etag)
            .send()
            .await
            .assert_status(StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn a_development_token_exists_only_in_development_mode() {
        TestClient::new(app(false))
            .post("/settings/dev-token")
            .send()
            .await
            .assert_status(StatusCode::NOT_FOUND);
        let client = TestClient::new(app(true));
        let response = client.post("/settings/dev-token").send().await;
        response.assert_status_is_ok();
        response.assert_text("{\"token\":\"t0ken\"}").await;
        let page = client.get("/settings").send().await;
        let body = page.0.into_body().into_string().await.unwrap();
        assert!(body.contains("\"devMode\":true"));
    }
}
