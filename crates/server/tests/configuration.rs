//! `aimc config show` and what start-up makes of a configuration it cannot use.

use std::process::{Command, Output};

fn aimc(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aimc"));
    for (name, _) in std::env::vars() {
        if name.starts_with("AIMC_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("the aimc binary runs")
}

#[test]
fn the_effective_configuration_is_shown_with_its_secrets_redacted() {
    let shown = aimc(
        &["config", "show"],
        &[
            (
                "AIMC_DATABASE_URL",
                "postgres://aimc:database-password-1@db/aimc",
            ),
            (
                "AIMC_JWT_HS256_SECRET",
                "jwt-secret-that-must-not-show-0123456789",
            ),
            ("AIMC_REQUEST_DEADLINE_MS", "1234"),
            // The test suite's own variable is no setting, and no error either.
            ("AIMC_TEST_DATABASE_URL", "postgres://elsewhere/postgres"),
        ],
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(text.contains("request_deadline_ms = 1234\n"), "{text}");
    assert!(
        text.contains("http_max_connections = 512\n"),
        "defaults too: {text}"
    );
    assert!(text.contains("database_url = \"[redacted]\"\n"), "{text}");
    assert!(
        text.contains("jwt_hs256_secret = \"[redacted]\"\n"),
        "{text}"
    );
    assert!(text.contains("# encryption_key is not set\n"), "{text}");
    assert!(text.contains("jwt_jwks_refresh_seconds = 300\n"), "{text}");
    assert!(
        text.contains("jwt_jwks_min_refetch_seconds = 30\n"),
        "{text}"
    );
    assert!(!text.contains("database-password-1") && !text.contains("jwt-secret-that"));
}

#[test]
fn an_unknown_setting_or_a_bad_value_fails_naming_it() {
    for (name, value, named) in [
        ("AIMC_REQEST_DEADLINE_MS", "5", "REQEST_DEADLINE_MS"),
        ("AIMC_REQUEST_DEADLINE_MS", "soon", "REQUEST_DEADLINE_MS"),
        ("AIMC_KEYRING", "hsm", "KEYRING"),
        (
            "AIMC_JWT_JWKS_URL",
            "ftp://idp.example/jwks",
            "JWT_JWKS_URL",
        ),
        ("AIMC_JWT_JWKS_URL", "/jwks", "JWT_JWKS_URL"),
        (
            "AIMC_JWT_JWKS_REFRESH_SECONDS",
            "often",
            "JWT_JWKS_REFRESH_SECONDS",
        ),
    ] {
        let refused = aimc(&["config", "show"], &[(name, value)]);
        let error = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{name}={value} was accepted");
        assert!(error.contains(named), "{name}={value}: {error}");
    }
    let file = std::env::temp_dir().join(format!("aimc-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9\"\nlisten_adress = \"0.0.0.0:80\"\n",
    )
    .unwrap();
    let refused = aimc(
        &["config", "show"],
        &[("AIMC_CONFIG_FILE", file.to_str().unwrap())],
    );
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(error.contains("listen_adress"), "{error}");
    std::fs::remove_file(file).unwrap();
}

#[test]
fn a_file_given_with_config_is_read_and_the_environment_overrides_it() {
    let file = std::env::temp_dir().join(format!("aimc-flag-{}.toml", std::process::id()));
    std::fs::write(&file, "listen = \"127.0.0.1:9999\"\nsnapshot_every = 7\n").unwrap();
    let shown = aimc(
        &["--config", file.to_str().unwrap(), "config", "show"],
        &[("AIMC_SNAPSHOT_EVERY", "9")],
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(text.contains("listen = \"127.0.0.1:9999\"\n"), "{text}");
    assert!(text.contains("snapshot_every = 9\n"), "{text}");
    let missing = aimc(
        &["--config", "/nonexistent/aimc.toml", "config", "show"],
        &[],
    );
    assert!(!missing.status.success(), "a named file must exist");
    std::fs::remove_file(file).unwrap();
}
