use std::collections::HashMap;
use std::path::PathBuf;

mod keys;
mod projections;

use aimc_api::Role;
use aimc_server::configuration::Settings;
use aimc_server::startup::{shutdown_signal, Application};
use aimc_server::telemetry;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

// glibc's allocator showed as a tenth of the service's CPU under load (malloc, free and their
// consolidation); mimalloc's per-thread heaps do the same work for less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// aimc: AI provider settings for people and workspaces, with keys encrypted by Vault.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML file of settings (keys as the AIMC_* variables without the prefix, in lower
    /// case); AIMC_* variables override it. Defaults to AIMC_CONFIG_FILE, else ./aimc.toml
    /// when it exists.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Write the OpenAPI document.
    Openapi {
        /// Where to write it.
        #[arg(long, default_value = "openapi/openapi.json")]
        output: PathBuf,
        /// Fail instead of writing when the file differs from what the code generates.
        #[arg(long)]
        check: bool,
    },
    /// The service's configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Manage workspaces' encryption keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Manage workspaces.
    Workspace {
        #[command(subcommand)]
        action: WorkspaceAction,
    },
    /// Maintain the read model.
    Projections {
        #[command(subcommand)]
        action: ProjectionsAction,
    },
    /// Print a development token signed with AIMC_JWT_HS256_SECRET.
    Token {
        /// The user (`sub` claim).
        #[arg(long)]
        sub: String,
        /// A workspace the token grants; repeat for several, optionally as `name=role`.
        #[arg(long = "workspace", required = true)]
        workspaces: Vec<String>,
        /// The role for workspaces given without one: owner, admin, member or viewer.
        #[arg(long, default_value = "member")]
        role: String,
        /// Space-separated scopes, e.g. `keys:ciphertext`.
        #[arg(long)]
        scope: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 8 * 3600)]
        ttl: u64,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective configuration (file and AIMC_* variables over the defaults) as
    /// TOML, secrets redacted.
    Show,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Rotate a workspace's key and rewrap every stored key under the new version, online;
    /// run again after an interruption, it finishes the work without redoing any.
    Rotate {
        /// The workspace whose key to rotate.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        workspace: Option<String>,
        /// Every workspace that holds keys.
        #[arg(long)]
        all: bool,
        /// Credentials rewrapped at once by their own commands, where a batch that a write
        /// raced leaves them; batches of 250 go one per 8 of it at a time (1 to 4).
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
}

#[derive(Subcommand)]
enum WorkspaceAction {
    /// Crypto-shred a workspace: destroy its keys in Vault, so nothing it ever stored decrypts
    /// again (the event log included), and empty the read model of it. Its history stays,
    /// without hints; the workspace can be used again afterwards, with new keys.
    Shred {
        /// The workspace to shred.
        #[arg(long)]
        workspace: String,
        /// The workspace's name again: there is no undoing a shred.
        #[arg(long)]
        confirm: String,
    },
}

#[derive(Subcommand)]
enum ProjectionsAction {
    /// Where each read-model view stands against the event log: events applied, and those it
    /// still lacks with the age of the oldest.
    Status,
    /// Replay every event into fresh tables and swap them in atomically, while the service
    /// keeps answering.
    Rebuild,
}

/// A pool for a maintenance command: no statement or lock timeouts, since its statements are
/// long by design.
fn maintenance_pool(settings: &Settings, connections: u32) -> anyhow::Result<sqlx::PgPool> {
    Ok(aimc_store::connect(&aimc_store::DatabaseSettings {
        url: settings.database_url()?.clone(),
        max_connections: connections,
        acquire_timeout: std::time::Duration::from_secs(10),
        statement_timeout: None,
        lock_timeout: None,
    })?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    match cli.command.take().unwrap_or(Command::Serve) {
        Command::Serve => {
            let settings = Settings::load_from(cli.config.as_deref())?;
            let _telemetry = telemetry::init(&settings.log, settings.log_format)?;
            let application = Application::build(settings).await?;
            application.run_until(shutdown_signal()).await?;
        }
        Command::Migrate => {
            let settings = Settings::load_from(cli.config.as_deref())?;
            let pool = maintenance_pool(&settings, 2)?;
            aimc_store::migrate(&pool)
                .await
                .context("Failed to run database migrations")?;
            println!("migrations applied");
        }
        Command::Projections {
            action: ProjectionsAction::Status,
        } => {
            let settings = Settings::load_from(cli.config.as_deref())?;
            let pool = maintenance_pool(&settings, 2)?;
            let status = aimc_store::Projector::new(pool)
                .status()
                .await
                .context("Failed to read the projections' status")?;
            println!("{} events in the log", status.events);
            println!(
                "{:<16} {:>14} {:>10} {:>16} {:>18}",
                "view", "events applied", "behind", "streams behind", "oldest unapplied"
            );
            for view in &status.views {
                let oldest = if view.lag_events == 0 {
                    "-".to_owned()
                } else {
                    format!("{:.1} s", view.lag_seconds)
                };
                println!(
                    "{:<16} {:>14} {:>10} {:>16} {:>18}",
                    view.view, view.applied_events, view.lag_events, view.lagging_streams, oldest
                );
            }
        }
        Command::Projections {
            action: ProjectionsAction::Rebuild,
        } => {
            let settings = Settings::load_from(cli.config.as_deref())?;
            projections::rebuild(maintenance_pool(&settings, 6)?).await?;
        }
        Command::Config {
            action: ConfigAction::Show,
        } => {
            print!("{}", Settings::load_from(cli.config.as_deref())?.to_toml());
        }
        Command::Keys {
            action:
                KeysAction::Rotate {
                    workspace,
                    all,
                    concurrency,
                },
        } => {
            let settings = Settings::load_from(cli.config.as_deref())?;
            // Warnings only: the progress and the summary are the command's output.
            let _telemetry = telemetry::init("warn", settings.log_format)?;
            keys::rotate(&settings, workspace.as_deref(), all, concurrency).await?;
        }
        Command::Workspace {
            action: WorkspaceAction::Shred { workspace, confirm },
        } => {
            if confirm != workspace {
                anyhow::bail!(
                    "--confirm {confirm:?} does not repeat --workspace {workspace:?}; a shred \
                     cannot be undone, so it must"
                );
            }
            let settings = Settings::load_from(cli.config.as_deref())?;
            let _telemetry = telemetry::init("warn", settings.log_format)?;
            keys::shred(&settings, &workspace).await?;
        }
        Command::Openapi { output, check } => {
            let spec = format!("{}\n", aimc_api::openapi_json());
            if check {
                let committed = std::fs::read_to_string(&output)
                    .with_context(|| format!("Failed to read {}", output.display()))?;
                if committed != spec {
                    bail!("{} is out of date: run `aimc openapi`", output.display());
                }
            } else {
                if let Some(parent) = output.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&output, spec)
                    .with_context(|| format!("Failed to write {}", output.display()))?;
                println!("wrote {}", output.display());
            }
        }
        Command::Token {
            sub,
            workspaces,
            role,
            scope,
            ttl,
        } => {
            let settings = Settings::load_from(cli.config.as_deref())?;
            let Some(secret) = &settings.jwt_hs256_secret else {
                bail!("AIMC_JWT_HS256_SECRET is not set");
            };
            let parse_role = |raw: &str| {
                Role::parse(raw).with_context(|| {
                    format!("unknown role {raw:?}: use owner, admin, member or viewer")
                })
            };
            let default_role = parse_role(&role)?;
            let mut granted = HashMap::new();
            for workspace in workspaces {
                match workspace.split_once('=') {
                    Some((name, role)) => granted.insert(name.to_owned(), parse_role(role)?),
                    None => granted.insert(workspace, default_role),
                };
            }
            let token = aimc_api::mint_hs256_token(
                secret,
                &settings.jwt_issuer,
                &settings.jwt_audience,
                &sub,
                granted,
                scope.as_deref(),
                ttl,
            )?;
            println!("{token}");
        }
    }
    Ok(())
}
