//! The settings pages (`/settings`) in a real browser: `tests/browser/settings.mjs` drives
//! Debian's chromium headless through playwright-core against an app of this test's own, in
//! development mode. This test prepares through the API what the pages need (keys with a long
//! history, workspace providers pointed at a [`FakeProvider`], a person with two workspaces),
//! hands the script the tokens and the plain keys it is to type, and afterwards checks through
//! the API what the browser did: a model key encrypted in the browser was decrypted by the
//! service (its hint is the plain key's), and no plain key is stored, logged or returned.
//!
//! The script prints a line per check and takes a full-page screenshot of each state into
//! `target/browser-screenshots`; with `AIMC_UPDATE_DOCS_SCREENSHOTS=1` it also copies one per
//! page into `docs/screenshots/`. A failing test prints everything the script said.
//!
//! The tools are installed by `./dev test` and `./dev client-tools` (`ensure_browser_tools` in
//! `deploy/local/browser.sh`): chromium at `/usr/bin/chromium` and the npm packages of
//! `tests/browser/package-lock.json` in `tests/browser/node_modules`. `AIMC_CHROMIUM` and
//! `AIMC_BROWSER_NODE_MODULES` point elsewhere, `AIMC_CLIENTS_NODE` names the node binary
//! (default: `node` on PATH). Without the tools this test fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aimc_api::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::process::Command;
use uuid::Uuid;

use crate::fake_provider::FakeProvider;
use crate::harness::*;

/// The whole script takes well under a minute; this bounds a hung browser.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Replacements of the key whose history the browser pages through: with the key's own
/// addition more than the page's 20 rows, so "Older changes" appears for the key too.
const HISTORY_REPLACEMENTS: usize = 24;

const INSTALL_HINT: &str =
    "`./dev test` installs the browser tests' tools, `./dev client-tools` installs only them";

fn require(path: &Path, what: &str) {
    require_tool(path, what, INSTALL_HINT);
}

/// Plain keys of this run's own making, each ending in its own four digits so that every
/// hint on the pages names one key.
struct Keys {
    run: String,
    made: Vec<String>,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            run: Uuid::new_v4().simple().to_string(),
            made: Vec::new(),
        }
    }

    fn make(&mut self, app: &TestApp, prefix: &str) -> String {
        let key = format!("{prefix}browser-{}-{}", self.run, 1001 + self.made.len());
        app.remember_secret(&key);
        self.made.push(key.clone());
        key
    }
}

/// `sk-...1234`, as the service masks a key (first three and last four characters).
fn hint(plain: &str) -> String {
    let chars: Vec<char> = plain.chars().collect();
    format!(
        "{}...{}",
        chars[..3].iter().collect::<String>(),
        chars[chars.len() - 4..].iter().collect::<String>()
    )
}

async fn request_in(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    workspace: &str,
    body: Value,
) -> TestResponse {
    let workspace = workspace.to_owned();
    app.request_with(method, path, Some(token), move |request| {
        request.header("X-Workspace-Id", workspace).json(&body)
    })
    .await
}

fn assert_status(response: &TestResponse, expected: StatusCode, what: &str) {
    assert_eq!(response.status, expected, "{what}: {}", response.text);
}

/// A family D key of `token`'s subject in `workspace`; its number.
async fn add_key(app: &TestApp, token: &str, workspace: &str, service: &str, plain: &str) -> i64 {
    let created = request_in(
        app,
        Method::POST,
        "/api/keys",
        token,
        workspace,
        json!({"service": service, "api_key": plain}),
    )
    .await;
    assert_status(&created, StatusCode::CREATED, "adding a family D key");
    created.body["id"].as_i64().unwrap()
}

/// Saves a workspace provider key (family E) and points its credential at the fake provider
/// through family B, as the family E tests do.
async fn workspace_provider_at(
    app: &TestApp,
    token: &str,
    provider: &str,
    ai_type: &str,
    plain: &str,
    fake: &FakeProvider,
) {
    let saved = app
        .post(
            &format!("/api/v1/settings/providers/{provider}"),
            token,
            json!({"api_key": plain}),
        )
        .await;
    assert_status(&saved, StatusCode::OK, "saving a workspace provider key");
    let listed = app
        .get(&format!("/ai/llm?workspaceId={}", app.workspace), token)
        .await;
    let id = listed.body["aiLlms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|llm| llm["aiType"] == ai_type)
        .unwrap_or_else(|| panic!("no {ai_type} configuration in {}", listed.text))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pointed = app
        .put(
            &format!("/ai/llm/{id}"),
            token,
            json!({"endpoint": fake.address, "secret": plain}),
        )
        .await;
    assert_status(&pointed, StatusCode::OK, "pointing a provider at the fake");
}

#[tokio::test]
async fn the_settings_pages_work_in_a_real_browser() {
    let node = std::env::var_os("AIMC_CLIENTS_NODE").unwrap_or_else(|| "node".into());
    let modules = configured_path("AIMC_BROWSER_NODE_MODULES", "tests/browser/node_modules");
    let chromium = std::env::var_os("AIMC_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    require(&chromium, "chromium");
    require(
        &modules.join("playwright-core/package.json"),
        "playwright-core",
    );
    require(&modules.join("axe-core/axe.min.js"), "axe-core");
    let screenshots = repository().join("target/browser-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).unwrap();

    let mut keys = Keys::new();
    let app = spawn_app_with(|settings| settings.dev_mode = true).await;
    let workspace_anthropic = keys.make(&app, "sk-ant-");
    let fake = FakeProvider::start(&workspace_anthropic).await;
    let owner = app.token("olive", Role::Owner);
    let viewer = app.token("vic", Role::Viewer);
    let second_workspace = format!("ws-second-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let two_workspaces = app.token_for(
        "tess",
        &[
            (&app.workspace, Role::Member),
            (&second_workspace, Role::Member),
        ],
        None,
    );

    // A key with a long history, for the history pages.
    let mut history_plain = keys.make(&app, "sk-ant-");
    let history_key = add_key(&app, &owner, &app.workspace, "ANTHROPIC", &history_plain).await;
    for _ in 0..HISTORY_REPLACEMENTS {
        history_plain = keys.make(&app, "sk-ant-");
        let replaced = app
            .put(
                &format!("/api/keys/{history_key}"),
                &owner,
                json!({"api_key": history_plain}),
            )
            .await;
        assert_status(&replaced, StatusCode::OK, "replacing the history key");
    }
    // Workspace providers: Anthropic's key is the one the fake accepts, OpenAI's is not.
    workspace_provider_at(
        &app,
        &owner,
        "anthropic",
        "ANTHROPIC",
        &workspace_anthropic,
        &fake,
    )
    .await;
    let workspace_openai = keys.make(&app, "sk-proj-");
    workspace_provider_at(&app, &owner, "openai", "OPENAI", &workspace_openai, &fake).await;
    // One key in each of tess's workspaces, so switching changes the list.
    let tess_first = keys.make(&app, "sk-proj-");
    let tess_second = keys.make(&app, "sk-or-");
    add_key(&app, &two_workspaces, &app.workspace, "OPENAI", &tess_first).await;
    add_key(
        &app,
        &two_workspaces,
        &second_workspace,
        "OPENROUTER",
        &tess_second,
    )
    .await;

    // What the browser types.
    let key_added = keys.make(&app, "sk-proj-");
    let key_edited = keys.make(&app, "sk-proj-");
    let personal_anthropic = keys.make(&app, "sk-ant-");
    let workspace_openrouter = keys.make(&app, "sk-or-");
    let model_key = keys.make(&app, "sk-proj-");
    let system_prompt = "You are a helpful AI assistant. Answer briefly.".to_owned();

    let config = json!({
        "baseUrl": app.address,
        "workspace": app.workspace,
        "secondWorkspace": second_workspace,
        "screenshotDir": screenshots,
        "docsDir": repository().join("docs/screenshots"),
        "tokens": {
            "owner": owner,
            "viewer": viewer,
            "twoWorkspaces": two_workspaces,
        },
        "prepared": {
            "historyKeyHint": hint(&history_plain),
            "historyKeyEvents": HISTORY_REPLACEMENTS + 1,
            "workspaceAnthropicHint": hint(&workspace_anthropic),
            "workspaceOpenaiHint": hint(&workspace_openai),
            "twoWorkspacesFirstHint": hint(&tess_first),
            "twoWorkspacesSecondHint": hint(&tess_second),
        },
        "type": {
            "keyAdded": key_added,
            "keyEdited": key_edited,
            "personalAnthropic": personal_anthropic,
            "workspaceOpenrouter": workspace_openrouter,
            "modelKey": model_key,
            "systemPrompt": system_prompt,
        },
        // Every plain key of the run, for the search of the DOM, storage, URLs and console.
        "plainKeys": keys.made,
    });

    let mut script = Command::new(&node);
    script
        .current_dir(repository())
        .arg(repository().join("tests/browser/settings.mjs"))
        .env("BROWSER_TEST_CONFIG", config.to_string())
        .env("AIMC_CHROMIUM", &chromium)
        .env("AIMC_BROWSER_NODE_MODULES", &modules)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, script.output())
        .await
        .unwrap_or_else(|_| panic!("node settings.mjs: still running after {SCRIPT_TIMEOUT:?}"))
        .unwrap_or_else(|error| panic!("could not start {}: {error}", Path::new(&node).display()));
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "node settings.mjs: {} in {:.1}s",
        output.status,
        started.elapsed().as_secs_f64()
    );
    if output.status.success() {
        // A line per check, for --no-capture; a failure prints them in its message.
        println!("{}", said.trim_end());
    }
    assert!(
        output.status.success(),
        "the browser scenarios failed ({}); screenshots in {}:\n{}",
        output.status,
        screenshots.display(),
        said.trim_end()
    );

    // What the browser did, seen through the API.
    let models = app.get("/api/v1/get/ai-model-config", &owner).await;
    assert_status(
        &models,
        StatusCode::OK,
        "reading the configuration saved in the browser",
    );
    let saved = models.body["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["model"] == "gpt-4o-mini")
        .unwrap_or_else(|| panic!("the model added in the browser is missing: {}", models.text));
    assert_eq!(
        saved["keyHint"],
        hint(&model_key),
        "the service decrypted the key the browser encrypted: {}",
        models.text
    );
    assert_eq!(saved["provider"], "OpenAI");
    assert_eq!(saved["isPaid"], true);
    assert_eq!(models.body["system_prompt"], system_prompt);

    let personal = app.get("/api/user/api-keys", &owner).await;
    assert_eq!(
        personal.body["anthropic"]["keyHint"],
        hint(&personal_anthropic),
        "{}",
        personal.text
    );
    let providers = app.get("/api/v1/settings/providers", &owner).await;
    let openrouter = providers
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|provider| provider["provider"] == "openrouter")
        .unwrap();
    assert_eq!(
        openrouter["key_hint"],
        hint(&workspace_openrouter),
        "{}",
        providers.text
    );

    let assignments = app.get("/api/v1/settings/task-assignments", &owner).await;
    assert_eq!(
        assignments.body["assignments"],
        json!([{"task": "summarize", "provider": "anthropic", "model": "claude-sonnet-4-20250514"}]),
        "{}",
        assignments.text
    );

    let listed = app.get("/api/keys", &owner).await;
    let masks: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["last_4_chars"].as_str().unwrap())
        .collect();
    assert!(
        masks.contains(&hint(&history_plain).as_str()),
        "the prepared key is still there: {masks:?}"
    );
    for gone in [&key_added, &key_edited] {
        assert!(
            !masks.contains(&hint(gone).as_str()),
            "the key deleted in the browser is gone: {masks:?}"
        );
    }
    // The edit replaced the added key, and the deletion removed that same credential.
    let history = app
        .get(
            "/api/v1/history?type=CredentialSecretReplaced,CredentialRemoved&limit=500",
            &owner,
        )
        .await;
    let events = history.body["events"].as_array().unwrap();
    let edited = events
        .iter()
        .find(|event| {
            event["type"] == "CredentialSecretReplaced"
                && event["details"]["hint"] == hint(&key_edited)
        })
        .unwrap_or_else(|| panic!("no replacement by the edit: {}", history.text));
    assert_eq!(edited["actor"], "olive");
    assert_eq!(edited["details"]["previous_hint"], hint(&key_added));
    let credential = &edited["details"]["credential_id"];
    assert!(
        events
            .iter()
            .any(|event| event["type"] == "CredentialRemoved"
                && event["details"]["credential_id"] == *credential
                && event["actor"] == "olive"),
        "the deletion is recorded: {}",
        history.text
    );
    app.assert_no_plain_key_anywhere().await;
}
