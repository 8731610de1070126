//! Clients generated from the committed OpenAPI document (`openapi/openapi.json`) drive the live
//! service: a Python one (openapi-python-client) and a TypeScript one (openapi-typescript's
//! types with openapi-fetch). Each test generates its client into a directory of its own under
//! the system's temporary directory (generated code is never committed), then runs the script
//! that uses it, `tests/clients/python/run.py` or `tests/clients/ts/run.ts`, against an app of
//! its own. The scripts print a line per check; a failing test prints everything the generator,
//! the compiler and the script said.
//!
//! The tools are installed by `./dev test` and `./dev client-tools` (`ensure_client_tools` in
//! `deploy/local/clients.sh`): a Python venv in `.local/clients-venv` and the npm packages of
//! `tests/clients/ts/package-lock.json` in `tests/clients/ts/node_modules`.
//! `AIMC_CLIENTS_VENV` and `AIMC_CLIENTS_NODE_MODULES` point elsewhere, `AIMC_CLIENTS_NODE`
//! names the node binary (default: `node` on PATH). Without the tools these tests fail.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use aimc_api::Role;
use serde_json::json;
use tokio::process::Command;
use uuid::Uuid;

use crate::harness::*;

/// Generous for one step (generation, compilation, a script's run), which takes seconds.
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

const INSTALL_HINT: &str =
    "`./dev test` installs the client tests' tools, `./dev client-tools` installs only them";

fn spec() -> PathBuf {
    repository().join("openapi/openapi.json")
}

fn require(path: &Path, what: &str) {
    require_tool(path, what, INSTALL_HINT);
}

/// A directory of the test's own, removed when the test passes, kept when it fails so the
/// generated code can be looked at.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!(
            "aimc-clients-{name}-{}",
            &Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept the generated client in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// What one command did, for the test's report.
struct Step {
    label: String,
    output: Output,
    elapsed: Duration,
}

impl Step {
    fn succeeded(&self) -> bool {
        self.output.status.success()
    }

    fn text(&self) -> String {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }

    fn report(&self) -> String {
        format!(
            "--- {} ({}, {:.1}s) ---\n{}",
            self.label,
            self.output.status,
            self.elapsed.as_secs_f64(),
            self.text().trim_end()
        )
    }
}

/// Runs a command to its end without blocking the runtime, which also serves the app.
async fn run(label: &str, mut command: Command) -> Step {
    let started = Instant::now();
    let child = command.stdin(Stdio::null()).kill_on_drop(true).output();
    let output = tokio::time::timeout(STEP_TIMEOUT, child)
        .await
        .unwrap_or_else(|_| panic!("{label}: still running after {STEP_TIMEOUT:?}"))
        .unwrap_or_else(|error| panic!("{label}: could not start {command:?}: {error}"));
    let step = Step {
        label: label.to_owned(),
        output,
        elapsed: started.elapsed(),
    };
    // A line per step with --no-capture; a failing test prints the whole reports.
    println!(
        "{}: {} in {:.1}s",
        step.label,
        step.output.status,
        step.elapsed.as_secs_f64()
    );
    step
}

fn assert_all_succeeded(steps: &[&Step]) {
    let failed: Vec<&str> = steps
        .iter()
        .filter(|step| !step.succeeded())
        .map(|step| step.label.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "failed: {}\n\n{}",
        failed.join(", "),
        steps
            .iter()
            .map(|step| step.report())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

/// The base URL, the test's workspace, a token per role the scripts act as, and plain keys
/// of this run's own making, which the service must never store, log or return.
fn write_config(app: &TestApp, dir: &Path, language: &str) -> PathBuf {
    let unique = || Uuid::new_v4().simple().to_string();
    let keys = json!({
        "openai": format!("sk-proj-{language}-openai-{}", unique()),
        "anthropic": format!("sk-ant-{language}-anthropic-{}", unique()),
        "familyBSecret": format!("sk-{language}-family-b-{}", unique()),
        "familyBAccessKey": format!("AKIA{}", &unique()[..16].to_uppercase()),
        "familyD": format!("sk-{language}-family-d-{}", unique()),
    });
    for key in keys.as_object().unwrap().values() {
        app.remember_secret(key.as_str().unwrap());
    }
    let elsewhere = format!("ws-elsewhere-{}", &unique()[..12]);
    let config = json!({
        "baseUrl": app.address,
        "workspace": app.workspace,
        "tokens": {
            "alice": app.token("alice", Role::Member),
            "bob": app.token("bob", Role::Member),
            "carol": app.token("carol", Role::Member),
            "dave": app.token("dave", Role::Member),
            "admin": app.token("ada", Role::Admin),
            "viewer": app.token("vic", Role::Viewer),
            "outsider": app.token_for("olga", &[(&elsewhere, Role::Owner)], None),
        },
        "keys": keys,
    });
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

/// Generators report some problems with a spec (a schema they skip, a `$ref` they cannot
/// follow) only as warnings and still exit 0; every one of `markers` is such a report.
fn assert_no_generator_warnings(step: &Step, markers: &[&str]) {
    let text = step.text();
    assert!(
        !markers.iter().any(|marker| text.contains(marker)),
        "{} reported problems with the spec:\n{}",
        step.label,
        step.report()
    );
}

#[tokio::test]
async fn a_python_client_generated_from_the_spec_drives_the_service() {
    let venv = configured_path("AIMC_CLIENTS_VENV", ".local/clients-venv");
    let python = venv.join("bin/python");
    let generator = venv.join("bin/openapi-python-client");
    require(&python, "the client tests' Python venv");
    require(&generator, "openapi-python-client");
    let scratch = Scratch::new("python");
    let packages = scratch.0.join("packages");
    let clients = repository().join("tests/clients/python");

    let mut generate = Command::new(&generator);
    generate
        .arg("generate")
        .arg("--path")
        .arg(spec())
        .arg("--output-path")
        .arg(packages.join("aimc_client"))
        .arg("--config")
        .arg(clients.join("openapi-python-client.yaml"))
        .args(["--meta", "none"]);
    let generating = run("openapi-python-client generate", generate);
    let (generated, app) = tokio::join!(generating, spawn_app());
    assert_all_succeeded(&[&generated]);
    // "Warning(s) encountered while generating…", "Error(s) encountered while generating…"
    assert_no_generator_warnings(&generated, &["Warning", "Error"]);
    let config = write_config(&app, &scratch.0, "py");

    let mut script = Command::new(&python);
    script
        .arg(clients.join("run.py"))
        .arg(&config)
        .arg(&packages)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let ran = run("python run.py", script).await;

    assert_all_succeeded(&[&generated, &ran]);
    app.assert_no_plain_key_anywhere().await;
}

#[tokio::test]
async fn a_typescript_client_generated_from_the_spec_drives_the_service() {
    let node = std::env::var_os("AIMC_CLIENTS_NODE").unwrap_or_else(|| "node".into());
    let modules = configured_path("AIMC_CLIENTS_NODE_MODULES", "tests/clients/ts/node_modules");
    let openapi_typescript = modules.join("openapi-typescript/bin/cli.js");
    let tsc = modules.join("typescript/bin/tsc");
    require(&openapi_typescript, "openapi-typescript");
    require(&tsc, "typescript");
    require(&modules.join("openapi-fetch"), "openapi-fetch");
    let node_version = Command::new(&node).arg("--version").output().await;
    assert!(
        node_version.is_ok_and(|out| out.status.success()),
        "node ({}) does not run: the TypeScript client test needs Node.js 20 or later",
        Path::new(&node).display()
    );

    // The script next to the types generated for it, in a package whose modules are the
    // installed ones.
    let scratch = Scratch::new("ts");
    let dir = &scratch.0;
    let clients = repository().join("tests/clients/ts");
    for file in ["run.ts", "tsconfig.json"] {
        std::fs::copy(clients.join(file), dir.join(file)).unwrap();
    }
    std::fs::write(dir.join("package.json"), r#"{"type": "module"}"#).unwrap();
    std::os::unix::fs::symlink(&modules, dir.join("node_modules")).unwrap();

    let mut generate = Command::new(&node);
    generate
        .arg(&openapi_typescript)
        .arg(spec())
        .arg("--output")
        .arg(dir.join("schema.d.ts"));
    let generating = run("openapi-typescript", generate);
    let (generated, app) = tokio::join!(generating, spawn_app());
    assert_all_succeeded(&[&generated]);
    // Redocly's lint findings: " ⚠  …" and " ✘  …".
    assert_no_generator_warnings(&generated, &["\u{26A0}", "\u{2718}"]);
    // tsc writes the JavaScript even when the types disagree, so the script runs either way
    // and the failure shows both what tsc and what the service said.
    let mut compile = Command::new(&node);
    compile.arg(&tsc).arg("--project").arg(dir);
    let compiled = run("tsc", compile).await;
    let config = write_config(&app, dir, "ts");

    let mut script = Command::new(&node);
    script.arg(dir.join("out/run.js")).arg(&config);
    let ran = run("node run.js", script).await;

    assert_all_succeeded(&[&generated, &compiled, &ran]);
    app.assert_no_plain_key_anywhere().await;
}

/// Redocly's recommended rules find no error in the committed document (warnings are left to
/// judgement: two operations without a 4xx are the probes, which have none).
#[tokio::test]
async fn the_spec_passes_redocly_lint() {
    let node = std::env::var_os("AIMC_CLIENTS_NODE").unwrap_or_else(|| "node".into());
    let modules = configured_path("AIMC_CLIENTS_NODE_MODULES", "tests/clients/ts/node_modules");
    let redocly = modules.join("@redocly/cli/bin/cli.js");
    require(&redocly, "@redocly/cli");
    let mut lint = Command::new(&node);
    lint.arg(&redocly)
        .arg("lint")
        .arg("--format=stylish")
        .arg(spec())
        .env("REDOCLY_TELEMETRY", "off")
        .env("REDOCLY_SUPPRESS_UPDATE_NOTICE", "true");
    let linted = run("redocly lint", lint).await;
    assert_all_succeeded(&[&linted]);
}

/// Schemathesis generates requests from the committed document (its examples, fuzzed values
/// and stateful sequences: create, then read, change and delete what was created) and checks
/// every answer: no 5xx, and status, content type, headers and body as the document declares.
#[tokio::test]
async fn a_fuzz_run_of_over_a_thousand_generated_requests_finds_no_5xx_and_no_body_off_the_spec() {
    let venv = configured_path("AIMC_CLIENTS_VENV", ".local/clients-venv");
    let schemathesis = venv.join("bin/schemathesis");
    require(&schemathesis, "schemathesis");
    let app = spawn_app().await;
    let token = app.token_with_scope("fuzz", Role::Owner, "keys:ciphertext");
    create_seed_config(&app, &token).await;
    let scratch = Scratch::new("fuzz");

    let mut fuzz = Command::new(&schemathesis);
    fuzz.current_dir(&scratch.0)
        .arg("run")
        .arg(spec())
        .args(["--url", &app.address])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--header", &format!("X-Workspace-Id: {}", app.workspace)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        // The coverage phase trips over a recursion limit inside hypothesis on Python 3.11
        // (SystemError: AST constructor recursion depth mismatch), a runtime error of the tool.
        .args(["--phases", "examples,fuzzing,stateful"])
        .args([
            "--max-examples",
            "60",
            "--seed",
            "20261202",
            "--workers",
            "2",
        ])
        .args(["--request-timeout", "30"])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1");
    let ran = run("schemathesis run", fuzz).await;
    let text = ran.text();
    // "Test cases:\n  2396 generated, 2396 passed"
    let generated = text
        .lines()
        .find_map(|line| {
            let (count, _) = line.trim().split_once(" generated,")?;
            count.parse::<usize>().ok()
        })
        .unwrap_or_else(|| panic!("no count of generated cases in:\n{}", ran.report()));
    println!("schemathesis: {generated} cases");
    assert_all_succeeded(&[&ran]);
    assert!(
        generated >= 1_000,
        "only {generated} cases:\n{}",
        ran.report()
    );
    app.assert_no_plain_key_anywhere().await;
}
