//! The aimc server under test: the release binary, started as `./dev run` starts it, as a child
//! process that is killed when the benchmark ends, however it ends.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use secrecy::{ExposeSecret, SecretString};
use tokio::process::{Child, Command};

/// Everything the server and `aimc projections rebuild` are configured with.
pub struct ServerEnv {
    pub database_url: String,
    pub vault_addr: String,
    pub vault_token: SecretString,
    pub key_prefix: String,
    pub jwt_secret: SecretString,
}

impl ServerEnv {
    fn apply(&self, command: &mut Command) {
        // Only what is set here counts: a developer's own AIMC_* (or TOKIO_WORKER_THREADS)
        // must not change the figures.
        for (name, _) in std::env::vars() {
            if ["AIMC_", "OTEL_", "TOKIO_"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
            {
                command.env_remove(name);
            }
        }
        command
            .env("AIMC_DATABASE_URL", &self.database_url)
            .env("AIMC_KEYRING", "vault")
            .env("AIMC_VAULT_ADDR", &self.vault_addr)
            .env("AIMC_VAULT_TOKEN", self.vault_token.expose_secret())
            .env("AIMC_VAULT_KEY_PREFIX", &self.key_prefix)
            .env("AIMC_JWT_HS256_SECRET", self.jwt_secret.expose_secret())
            .env("AIMC_JWT_ISSUER", "aimc")
            .env("AIMC_JWT_AUDIENCE", "aimc")
            .env("AIMC_LOG", "warn");
    }
}

pub struct Server {
    child: Child,
    pub base_url: String,
}

impl Server {
    pub async fn start(binary: &Path, env: &ServerEnv, log: &Path) -> anyhow::Result<Server> {
        let port = free_port()?;
        let log = std::fs::File::create(log)?;
        let mut command = Command::new(binary);
        env.apply(&mut command);
        command
            .arg("serve")
            .env("AIMC_LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("could not start {}", binary.display()))?;
        let mut server = Server {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        server.wait_until_ready().await?;
        Ok(server)
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("aimc exited before it was ready ({status}); see its log");
            }
            let ready = client
                .get(format!("{}/readyz", self.base_url))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("aimc was not ready after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Runs a maintenance command of `aimc` on the benchmark's database and Vault; its stdout.
async fn maintenance(binary: &Path, env: &ServerEnv, args: &[&str]) -> anyhow::Result<String> {
    let mut command = Command::new(binary);
    env.apply(&mut command);
    let output = command.args(args).stdin(Stdio::null()).output().await?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "aimc {} failed: {stdout}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// `aimc projections rebuild` on the benchmark's database; returns the events/s it reports.
pub async fn rebuild(binary: &Path, env: &ServerEnv) -> anyhow::Result<(u64, f64)> {
    let stdout = maintenance(binary, env, &["projections", "rebuild"]).await?;
    parse_rebuild(&stdout).with_context(|| format!("unexpected rebuild output: {stdout}"))
}

/// `aimc keys rotate --workspace W`: (credentials, seconds spent rewrapping them).
pub async fn rotate(binary: &Path, env: &ServerEnv, workspace: &str) -> anyhow::Result<(u64, f64)> {
    let stdout = maintenance(binary, env, &["keys", "rotate", "--workspace", workspace]).await?;
    parse_rotation(&stdout).with_context(|| format!("unexpected rotation output: {stdout}"))
}

/// Reads `…; N credentials, M rewrapped in S s (R credentials/s), …`.
fn parse_rotation(stdout: &str) -> Option<(u64, f64)> {
    let (_, rest) = stdout.split_once("; ")?;
    let mut words = rest.split_whitespace();
    let credentials = words.next()?.parse().ok()?;
    let seconds = rest
        .split_once(" rewrapped in ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((credentials, seconds))
}

/// Reads `replayed N events in S s (R events/s)`.
fn parse_rebuild(stdout: &str) -> Option<(u64, f64)> {
    let line = stdout.lines().find(|line| line.starts_with("replayed "))?;
    let mut words = line.split_whitespace();
    let events = words.nth(1)?.parse().ok()?;
    let seconds: f64 = words.nth(2)?.parse().ok()?;
    Some((events, seconds))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rotation_summary_is_read() {
        assert_eq!(
            super::parse_rotation(
                "ws: key v1 -> v2; 3000 credentials, 3000 rewrapped in 2.50 s (1200 credentials/s), 7.5 s in all\n"
            ),
            Some((3000, 2.50))
        );
    }

    #[test]
    fn the_rebuild_summary_is_read() {
        assert_eq!(
            super::parse_rebuild("replayed 1200 events in 0.40 s (3000 events/s)\n"),
            Some((1200, 0.40))
        );
    }
}
