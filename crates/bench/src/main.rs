use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use secrecy::SecretString;

/// Measures aimc against its own PostgreSQL and Vault. `./dev bench` builds and runs it.
#[derive(Parser)]
#[command(name = "aimc-bench")]
struct Cli {
    /// The aimc binary to measure.
    #[arg(long, default_value = "target/release/aimc")]
    aimc: PathBuf,
    /// Where latest.md and latest.png are written.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// A PostgreSQL URL whose user may create databases.
    #[arg(long, env = "AIMC_TEST_DATABASE_URL")]
    admin_database_url: String,
    #[arg(long, env = "AIMC_VAULT_ADDR")]
    vault_addr: String,
    #[arg(long, env = "AIMC_VAULT_TOKEN", hide_env_values = true)]
    vault_token: SecretString,
    /// A second per workload on little data: proves the benchmark runs, measures nothing.
    #[arg(long)]
    smoke: bool,
    /// Seconds each workload is measured for.
    #[arg(long)]
    duration: Option<u64>,
    /// Seconds of load before each measurement, not counted.
    #[arg(long)]
    warmup: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let make = if cli.smoke {
        aimc_bench::Options::smoke
    } else {
        aimc_bench::Options::full
    };
    let mut options = make(
        cli.aimc,
        cli.out,
        cli.admin_database_url,
        cli.vault_addr,
        cli.vault_token,
    );
    if let Some(seconds) = cli.duration {
        options.duration = Duration::from_secs(seconds);
    }
    if let Some(seconds) = cli.warmup {
        options.warmup = Duration::from_secs(seconds);
    }
    let report = aimc_bench::run(&options).await?;
    println!("{}", report.markdown());
    println!(
        "written to {}/latest.md and latest.png",
        options.out_dir.display()
    );
    anyhow::ensure!(
        report.errors() == 0,
        "{} requests failed: the figures are not valid",
        report.errors()
    );
    Ok(())
}
