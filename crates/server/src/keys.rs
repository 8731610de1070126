//! `aimc keys rotate` (with a progress bar on a terminal and plain progress lines otherwise) and
//! `aimc workspace shred`: the key-lifecycle use cases run from a terminal.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aimc_api::rotation::{Progress, Rotation};
use aimc_api::shredding::Shredding;
use aimc_domain::WorkspaceId;
use aimc_keyring::{Keyring, SharedCalls};
use aimc_server::configuration::Settings;
use aimc_server::startup::{build_keyring, command_bus};
use aimc_store::{CommandMetadata, CredentialQueries, DatabaseSettings};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

/// The parts a key-lifecycle command runs with: the service's own, on a pool of its own.
struct Parts {
    keyring: Arc<dyn Keyring>,
    commands: aimc_store::CommandBus,
    credentials: CredentialQueries,
}

impl Parts {
    async fn connect(settings: &Settings, connections: u32) -> anyhow::Result<Parts> {
        let pool = aimc_store::connect(&DatabaseSettings {
            url: settings.database_url()?.clone(),
            max_connections: connections.max(4),
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: None,
            lock_timeout: None,
        })?;
        aimc_store::migrate(&pool)
            .await
            .context("Failed to run database migrations")?;
        let keyring: Arc<dyn Keyring> = Arc::new(SharedCalls::new(build_keyring(settings).await?));
        Ok(Parts {
            commands: command_bus(&pool, &keyring, settings),
            credentials: CredentialQueries::new(pool),
            keyring,
        })
    }
}

/// Whom the history names for a command run from a terminal.
fn operator() -> CommandMetadata {
    let operator = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    CommandMetadata {
        actor: format!("cli:{operator}"),
        request_id: uuid::Uuid::new_v4().to_string(),
        trace_id: None,
        idempotency_key: None,
    }
}

fn workspace_id(name: &str) -> anyhow::Result<WorkspaceId> {
    WorkspaceId::parse(name).map_err(|error| anyhow::anyhow!("--workspace {name:?}: {error}"))
}

pub async fn shred(settings: &Settings, workspace: &str) -> anyhow::Result<()> {
    let workspace = workspace_id(workspace)?;
    let concurrency = 8;
    let parts = Parts::connect(settings, concurrency as u32 + 2).await?;
    let shredded = Shredding {
        commands: &parts.commands,
        credentials: &parts.credentials,
        keyring: parts.keyring.as_ref(),
        concurrency,
    }
    .run(&workspace, &operator())
    .await
    .with_context(|| {
        format!("Shredding workspace {workspace} failed; run the command again to finish it")
    })?;
    println!(
        "{}: keys destroyed; {} configurations and {} credentials shredded ({} streams already \
         empty) in {:.2} s; its history remains, without hints",
        shredded.workspace,
        shredded.configurations,
        shredded.credentials,
        shredded.already_empty,
        shredded.elapsed.as_secs_f64(),
    );
    Ok(())
}

pub async fn rotate(
    settings: &Settings,
    workspace: Option<&str>,
    all: bool,
    concurrency: usize,
) -> anyhow::Result<()> {
    let parts = Parts::connect(settings, concurrency as u32 + 2).await?;
    let workspaces = match workspace {
        Some(name) => vec![workspace_id(name)?],
        None if all => parts
            .credentials
            .workspaces()
            .await
            .context("Failed to list the workspaces")?,
        None => anyhow::bail!("name a workspace with --workspace, or rotate them all with --all"),
    };
    let rotation = Rotation {
        commands: &parts.commands,
        credentials: &parts.credentials,
        keyring: parts.keyring.as_ref(),
        settle: settings.request_deadline(),
        concurrency,
    };
    let metadata = operator();
    for workspace in &workspaces {
        let progress = Shown::new();
        let rotated = rotation
            .run(workspace, &metadata, &progress)
            .await
            .with_context(|| format!("Rotating the key of workspace {workspace} failed; run the command again to finish it"))?;
        progress.finish();
        let rewrapping = rotated.rewrapping.as_secs_f64();
        println!(
            "{}: key v{} -> v{}{}; {} credentials, {} rewrapped in {:.2} s ({:.0} credentials/s), \
             {:.1} s in all with the wait for writes in flight; versions below v{} retired",
            rotated.workspace,
            rotated.from_version,
            rotated.to_version,
            if rotated.rotated_now {
                ""
            } else {
                " (an earlier run's rotation, finished)"
            },
            rotated.credentials,
            rotated.rewrapped,
            rewrapping,
            rotated.credentials as f64 / rewrapping.max(1e-9),
            rotated.elapsed.as_secs_f64(),
            rotated.to_version,
        );
    }
    Ok(())
}

/// A bar on a terminal; a line every 10% or 5 s elsewhere (a CI log, a file).
struct Shown {
    bar: Mutex<Option<ProgressBar>>,
    terminal: bool,
    total: AtomicUsize,
    done: AtomicUsize,
    last_line: Mutex<Instant>,
    label: Mutex<String>,
}

impl Shown {
    fn new() -> Self {
        Shown {
            bar: Mutex::new(None),
            terminal: std::io::stderr().is_terminal(),
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            last_line: Mutex::new(Instant::now()),
            label: Mutex::new(String::new()),
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Shown {
    fn begin(&self, workspace: &WorkspaceId, total: usize, from: u32, to: u32) {
        let label = format!("{workspace} v{from} -> v{to}");
        self.total.store(total, Ordering::Relaxed);
        if self.terminal {
            let bar = ProgressBar::new(total as u64).with_prefix(label.clone());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:40}] {pos}/{len} credentials ({per_sec}, {eta} left)",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
        } else {
            eprintln!("{label}: {total} credentials to go through");
        }
        *self.label.lock().unwrap_or_else(|p| p.into_inner()) = label;
    }

    fn advance(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            bar.inc(1);
            return;
        }
        let total = self.total.load(Ordering::Relaxed).max(1);
        let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
        let tenth = (total / 10).max(1);
        if done == total || done.is_multiple_of(tenth) || last.elapsed() >= Duration::from_secs(5) {
            *last = Instant::now();
            let label = self.label.lock().unwrap_or_else(|p| p.into_inner());
            eprintln!("{label}: {done}/{total} credentials");
        }
    }
}
