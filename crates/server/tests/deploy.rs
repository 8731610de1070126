//! The deployable artefacts in `deploy/` (the image, the compose stack, the Helm chart) pass
//! `deploy/checks/run`, and the binary the image ships links no OpenSSL.
//!
//! `deploy/checks/run` lints and renders them with tools that run without a Docker daemon or a
//! Kubernetes cluster; it prints what it checked with which tool. Those tools are installed by
//! `./dev test` and `./dev client-tools` (`ensure_deploy_tools` in
//! `deploy/local/deploy_tools.sh`) into `.local/deploy-venv`, or `DEPLOY_TOOLS_VENV`. Without
//! them the check fails when `CI` is set, and is skipped with a message otherwise (a plain
//! `cargo nextest run` on a machine that never ran `./dev test`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const INSTALL_HINT: &str =
    "run `./dev client-tools` (installs only the tools) or `./dev test` (the whole suite)";

/// `deploy/checks/run`'s exit status when a tool is missing.
const TOOLS_MISSING: i32 = 3;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Tools missing: a failure when `CI` is set, a skip with a message otherwise.
fn without_tools(what: &str) {
    let in_ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
    assert!(
        !in_ci,
        "the deploy checks' tools are missing ({what}): {INSTALL_HINT}"
    );
    eprintln!("SKIPPED: the deploy checks' tools are missing ({what}); {INSTALL_HINT}");
}

#[test]
fn the_deployable_artefacts_pass_their_checks() {
    let root = repository();
    let venv = std::env::var_os("DEPLOY_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".local/deploy-venv"));
    for tool in ["bin/python", "bin/helm", "bin/hadolint", "bin/shellcheck"] {
        if !venv.join(tool).exists() {
            without_tools(&venv.join(tool).display().to_string());
            return;
        }
    }

    let started = Instant::now();
    let output = Command::new("bash")
        .arg(root.join("deploy/checks/run"))
        .current_dir(&root)
        .env("DEPLOY_TOOLS_VENV", &venv)
        // The settings check asks this very build which AIMC_* variables are settings.
        .env("DEPLOY_AIMC_BIN", env!("CARGO_BIN_EXE_aimc"))
        .output()
        .expect("bash runs deploy/checks/run");
    let report = text(&output);
    println!(
        "{report}\ndeploy/checks/run: {} in {:.1}s",
        output.status,
        started.elapsed().as_secs_f64()
    );
    if output.status.code() == Some(TOOLS_MISSING) {
        without_tools(report.trim());
        return;
    }
    assert!(
        output.status.success(),
        "deploy/checks/run failed ({}):\n{report}",
        output.status
    );
    assert!(report.contains("deploy checks: all passed"), "{report}");
}

/// TLS is rustls on aws-lc-rs everywhere (sqlx, reqwest, jsonwebtoken), so the image needs no
/// libssl. `openssl-probe` (pure Rust: it only looks for the system's CA certificate files, for
/// rustls-native-certs) is no OpenSSL.
#[test]
fn the_server_binary_links_no_openssl() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "-p",
            "aimc-server",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(repository())
        .env("CARGO_TERM_COLOR", "never")
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed:\n{}",
        text(&output)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(
        tree.lines().any(|line| line.starts_with("aimc-server ")),
        "cargo tree listed no aimc-server:\n{tree}"
    );
    let linked: Vec<&str> = tree
        .lines()
        .filter(|line| {
            let name = line.split_whitespace().next().unwrap_or_default();
            name == "openssl" || name == "openssl-sys" || name == "native-tls"
        })
        .collect();
    assert!(
        linked.is_empty(),
        "aimc-server depends on OpenSSL through: {linked:?}"
    );
}
