//! A stand-in for the remote AI providers: the only faked part of the suite. It answers the
//! model-list calls of OpenAI, Anthropic, Gemini, OpenRouter and Ollama, accepting one key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Request, Response, Route, Server};

pub struct FakeProvider {
    pub address: String,
    calls: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    pub async fn start(accepted_key: &str) -> FakeProvider {
        let calls = Arc::new(AtomicUsize::new(0));
        let (key, counter) = (accepted_key.to_owned(), calls.clone());
        let models = handler_for(key.clone(), counter.clone(), |request, key| {
            let bearer = format!("Bearer {key}");
            header(request, "authorization") == Some(bearer.as_str())
                || header(request, "x-api-key") == Some(key)
        });
        let gemini = handler_for(key.clone(), counter.clone(), |request, key| {
            header(request, "x-goog-api-key") == Some(key)
        });
        let openrouter = handler_for(key.clone(), counter.clone(), |request, key| {
            header(request, "authorization") == Some(format!("Bearer {key}").as_str())
        });
        let ollama = handler_for(key, counter, |_, _| true);
        let moved = {
            let counter = calls.clone();
            poem::endpoint::make_sync(move |_: Request| {
                counter.fetch_add(1, Ordering::SeqCst);
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header("location", "/v1/models")
                    .finish()
            })
        };
        let app = Route::new()
            .at("/moved/v1/models", moved)
            .at("/v1/models", models)
            .at("/v1beta/models", gemini)
            .at("/api/v1/key", openrouter)
            .at("/api/tags", ollama);
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
        FakeProvider {
            address: format!("http://127.0.0.1:{port}"),
            calls,
            _server: server,
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

fn handler_for(
    key: String,
    calls: Arc<AtomicUsize>,
    accepts: fn(&Request, &str) -> bool,
) -> impl poem::Endpoint<Output = Response> {
    poem::endpoint::make_sync(move |request: Request| {
        calls.fetch_add(1, Ordering::SeqCst);
        if accepts(&request, &key) {
            Response::builder()
                .content_type("application/json")
                .body(r#"{"data":[{"id":"model-1"}],"models":[]}"#)
        } else {
            Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .body(r#"{"error":"invalid api key"}"#)
        }
    })
}
