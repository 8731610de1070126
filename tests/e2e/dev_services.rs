//! `./dev services`: the local OpenBao keeps its keys when it is stopped and started again.
//! Run against a checkout directory of its own and a port of its own, so the suite's own
//! services are left alone.

use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::harness::repository;

/// Runs `steps` with the scripts' OpenBao functions, for a checkout rooted at `root`; prints
/// `port token` after each `bao_up`. The script picks a free port itself, as `./dev` does, and
/// moves on when one is taken meanwhile.
fn services(root: &Path, steps: &str) -> String {
    let scripts = repository().join("deploy/local");
    let script = format!(
        "set -euo pipefail
         AIMC_ROOT={root}
         source {scripts}/common.sh
         source {scripts}/openbao.sh
         bao_ensure_binary
         {steps}",
        root = root.display(),
        scripts = scripts.display(),
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env_remove("AIMC_LOCAL_BAO_PORT")
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "{steps} failed:\n{}\n--- bao.log ---\n{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(root.join(".local/bao/bao.log")).unwrap_or_default()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn transit(address: &str, token: &str, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{address}/v1/transit/{path}"))
        .header("X-Vault-Token", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_local_openbao_keeps_its_keys_across_a_stop_and_a_start() {
    let root = std::env::temp_dir().join(format!("aimc-dev-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&root).unwrap();
    let up = "bao_up; printf '%s %s\\n' \"$BAO_PORT\" \"$BAO_LOCAL_TOKEN\"";

    let first = services(&root, up);
    let (port, token) = first.trim().split_once(' ').expect("port and token");
    let address = format!("http://127.0.0.1:{port}");
    transit(&address, token, "keys/kept", json!({})).await;
    let sealed = transit(
        &address,
        token,
        "encrypt/kept",
        json!({"plaintext": STANDARD.encode("still here after a restart")}),
    )
    .await;
    let ciphertext = sealed["data"]["ciphertext"].as_str().unwrap().to_owned();

    let again = services(&root, &format!("bao_down; {up}"));
    let (port_after, token_after) = again.trim().split_once(' ').expect("port and token");
    let opened = transit(
        &format!("http://127.0.0.1:{port_after}"),
        token_after,
        "decrypt/kept",
        json!({"ciphertext": ciphertext}),
    )
    .await;
    services(&root, "bao_down");

    assert_eq!(token_after, token, "the same root token");
    let plain = STANDARD
        .decode(opened["data"]["plaintext"].as_str().unwrap())
        .unwrap();
    assert_eq!(plain, b"still here after a restart");
    let init = root.join(".local/bao/init.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&init).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the unseal key is the owner's only");
    std::fs::remove_dir_all(&root).unwrap();
}
