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

#[test]
fn the_approle_secret_id_is_shown_redacted() {
    let shown = aimc(
        &["config", "show"],
        &[
            ("AIMC_VAULT_AUTH", "approle"),
            ("AIMC_VAULT_AUTH_MOUNT", "approle-aimc"),
            ("AIMC_VAULT_APPROLE_ROLE_ID", "role-id-of-aimc"),
            (
                "AIMC_VAULT_APPROLE_SECRET_ID",
                "approle-secret-id-that-must-not-show",
            ),
        ],
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(text.contains("vault_auth = \"approle\"\n"), "{text}");
    assert!(
        text.contains("vault_auth_mount = \"approle-aimc\"\n"),
        "{text}"
    );
    assert!(
        text.contains("vault_approle_role_id = \"role-id-of-aimc\"\n"),
        "{text}"
    );
    assert!(
        text.contains("vault_approle_secret_id = \"[redacted]\"\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "vault_kubernetes_token_file = \"/var/run/secrets/kubernetes.io/serviceaccount/token\"\n"
        ),
        "the default: {text}"
    );
    assert!(
        !text.contains("approle-secret-id-that-must-not-show"),
        "{text}"
    );
    let default = aimc(&["config", "show"], &[]);
    let text = String::from_utf8_lossy(&default.stdout);
    assert!(text.contains("vault_auth = \"token\"\n"), "{text}");
}

/// `aimc serve` with settings whose Vault login cannot work stops at once, naming what to fix,
/// before it touches the database (which is not there).
#[test]
fn a_vault_authentication_that_cannot_work_stops_the_start_naming_the_setting() {
    let missing = std::env::temp_dir().join("aimc-no-such-dir/secret");
    let missing = missing.to_str().unwrap();
    let approle = [
        ("AIMC_VAULT_AUTH", "approle"),
        ("AIMC_VAULT_APPROLE_ROLE_ID", "role-id"),
    ];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "AIMC_VAULT_TOKEN is required"),
        (
            vec![("AIMC_VAULT_AUTH", "approle")],
            "AIMC_VAULT_APPROLE_ROLE_ID is required",
        ),
        (
            approle.to_vec(),
            "AIMC_VAULT_APPROLE_SECRET_ID or AIMC_VAULT_APPROLE_SECRET_ID_FILE is required",
        ),
        (
            [
                &approle[..],
                &[
                    ("AIMC_VAULT_APPROLE_SECRET_ID", "s"),
                    ("AIMC_VAULT_APPROLE_SECRET_ID_FILE", missing),
                ],
            ]
            .concat(),
            "are both set",
        ),
        (
            [
                &approle[..],
                &[
                    ("AIMC_VAULT_APPROLE_SECRET_ID", "s"),
                    ("AIMC_VAULT_TOKEN", "t"),
                ],
            ]
            .concat(),
            "AIMC_VAULT_TOKEN is set, but AIMC_VAULT_AUTH=approle",
        ),
        (
            [
                &approle[..],
                &[("AIMC_VAULT_APPROLE_SECRET_ID_FILE", missing)],
            ]
            .concat(),
            "AIMC_VAULT_APPROLE_SECRET_ID_FILE: cannot read",
        ),
        (
            vec![("AIMC_VAULT_AUTH", "kubernetes")],
            "AIMC_VAULT_KUBERNETES_ROLE is required",
        ),
        (
            vec![
                ("AIMC_VAULT_AUTH", "kubernetes"),
                ("AIMC_VAULT_KUBERNETES_ROLE", "aimc"),
                ("AIMC_VAULT_KUBERNETES_TOKEN_FILE", missing),
            ],
            "AIMC_VAULT_KUBERNETES_TOKEN_FILE: cannot read",
        ),
        (
            vec![
                ("AIMC_VAULT_TOKEN", "t"),
                ("AIMC_VAULT_APPROLE_ROLE_ID", "role-id"),
            ],
            "AIMC_VAULT_APPROLE_ROLE_ID is set, but AIMC_VAULT_AUTH=token",
        ),
        (vec![("AIMC_VAULT_AUTH", "ldap")], "VAULT_AUTH"),
    ];
    for (settings, named) in cases {
        let mut env = vec![
            ("AIMC_DATABASE_URL", "postgres://aimc@127.0.0.1:9/aimc"),
            ("AIMC_VAULT_ADDR", "http://127.0.0.1:9"),
            (
                "AIMC_JWT_HS256_SECRET",
                "jwt-secret-for-this-test-only-0123456789",
            ),
            ("AIMC_LISTEN", "127.0.0.1:0"),
        ];
        env.extend(settings.iter().copied());
        let refused = aimc(&["serve"], &env);
        let error = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{settings:?} was accepted");
        assert!(error.contains(named), "{settings:?}: {error}");
        assert!(
            !error.contains("database"),
            "{settings:?} reached the database: {error}"
        );
    }
}
