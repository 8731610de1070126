//! `aimc-bench`: measures aimc against the limits of the PostgreSQL and Vault it runs on, in
//! one run on one machine, and writes the table (Markdown) and a latency chart (PNG).
//!
//! - L1 `pgbench -S` on the same PostgreSQL: what reads could be at best;
//! - L2 raw transit encrypt on the same OpenBao: what writes could be at best;
//! - L3 PostgreSQL copying the event log into a table like it: what a rebuild could be at best;
//! - R reads of family A, X the resolve before a model call, W writes of family A with a new
//!   key, H a command on an aggregate with a short and with a long history, S a family B create
//!   in a small and in a large workspace, P a full rebuild of the read model.
//!
//! Only the ratios between workloads mean anything: the machine is shared and noisy.

pub mod chart;
pub mod load;
pub mod report;
mod seed;
mod server;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};

use crate::load::{Load, Measurement, Order, Pgbench, Request, Wrk};
use crate::report::{Context, LogPass, Report, Workload};
use crate::seed::{Seeder, User, Workspace};
use crate::server::{Server, ServerEnv};

pub struct Options {
    /// The aimc binary to measure (the release build, but for the smoke test).
    pub aimc: PathBuf,
    /// Where latest.md and latest.png go.
    pub out_dir: PathBuf,
    /// A database URL whose user may create databases: the benchmark makes its own two.
    pub admin_database_url: String,
    pub vault_addr: String,
    pub vault_token: SecretString,
    pub smoke: bool,
    pub connections: u32,
    pub warmup: Duration,
    pub duration: Duration,
    pub workspaces: usize,
    pub users: usize,
    /// Events in the long history that H10000 runs its command against.
    pub deep_events: i64,
    /// Credentials in each workspace S10 creates in, and how many such workspaces it moves
    /// through, so that its own creates barely grow any of them.
    pub small_workspace_credentials: usize,
    pub small_workspaces: usize,
    /// Credentials in the one workspace S3000 creates in.
    pub large_workspace_credentials: usize,
    pub pgbench_scale: u32,
}

/// Connections of S's concurrent rows (S10x16, S3000x16): writers in one workspace at once.
const CONCURRENT_WRITERS: u32 = 16;

impl Options {
    /// The run issue 4 describes: 1,000 workspaces, 5,000 user configs, 15 s per workload, and
    /// the S rows' workspaces of 10 and of 3,000 credentials.
    pub fn full(
        aimc: PathBuf,
        out_dir: PathBuf,
        admin_database_url: String,
        vault_addr: String,
        vault_token: SecretString,
    ) -> Self {
        Options {
            aimc,
            out_dir,
            admin_database_url,
            vault_addr,
            vault_token,
            smoke: false,
            connections: 32,
            warmup: Duration::from_secs(5),
            duration: Duration::from_secs(15),
            workspaces: 1_000,
            users: 5_000,
            deep_events: 10_000,
            small_workspace_credentials: 10,
            small_workspaces: 200,
            large_workspace_credentials: 3_000,
            pgbench_scale: 10,
        }
    }

    /// Every step of the full run on little data, a second per workload: proves the benchmark
    /// still works, measures nothing.
    pub fn smoke(
        aimc: PathBuf,
        out_dir: PathBuf,
        admin_database_url: String,
        vault_addr: String,
        vault_token: SecretString,
    ) -> Self {
        Options {
            smoke: true,
            connections: 4,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            workspaces: 3,
            users: 12,
            deep_events: 300,
            small_workspace_credentials: 10,
            small_workspaces: 2,
            large_workspace_credentials: 40,
            pgbench_scale: 1,
            ..Options::full(aimc, out_dir, admin_database_url, vault_addr, vault_token)
        }
    }
}

/// Runs every workload, writes `latest.md` and `latest.png` into `out_dir`, returns the report.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let run_id = format!(
        "{:012x}",
        rand::thread_rng().gen::<u64>() & 0xffff_ffff_ffff
    );
    let work_dir = std::env::temp_dir().join(format!("aimc-bench-{run_id}"));
    // Owner only: the request files hold the Vault token and users' bearer tokens.
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&work_dir)?;
    }
    // Smoke databases follow the test suite's naming so `./dev test` clears any left behind.
    let prefix = if options.smoke {
        "aimc_test_"
    } else {
        "aimc_bench_"
    };
    let databases =
        Databases::create(&options.admin_database_url, &format!("{prefix}{run_id}")).await?;
    let outcome = measure(options, &databases, &work_dir, &run_id).await;
    databases.drop_all().await;
    if outcome.is_ok() {
        let _ = tokio::fs::remove_dir_all(&work_dir).await;
    } else {
        // The request files hold the generated plain keys and tokens; only the log is kept.
        remove_all_but(&work_dir, "aimc.log").await;
    }
    let report = outcome
        .with_context(|| format!("benchmark failed; aimc's log is in {}", work_dir.display()))?;

    tokio::fs::create_dir_all(&options.out_dir).await?;
    tokio::fs::write(options.out_dir.join("latest.md"), report.markdown()).await?;
    chart::draw(&report, &options.out_dir.join("latest.png"))?;
    Ok(report)
}

async fn measure(
    options: &Options,
    databases: &Databases,
    work_dir: &Path,
    run_id: &str,
) -> anyhow::Result<Report> {
    let started_at = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let env = ServerEnv {
        database_url: databases.aimc_url.clone(),
        vault_addr: options.vault_addr.clone(),
        vault_token: options.vault_token.clone(),
        // The full run keeps one prefix so Vault's RSA keys, slow to generate, serve every run.
        key_prefix: if options.smoke {
            format!("aimcsmoke{run_id}")
        } else {
            "aimcbench".into()
        },
        jwt_secret: SecretString::from(format!(
            "bench-{run_id}-{:x}",
            rand::thread_rng().gen::<u128>()
        )),
    };
    let server = Server::start(&options.aimc, &env, &work_dir.join("aimc.log")).await?;
    let seeder = Seeder {
        client: reqwest::Client::new(),
        base_url: server.base_url.clone(),
        jwt_secret: env.jwt_secret.clone(),
        concurrency: options.connections as usize,
    };
    eprintln!(
        "seeding {} workspaces and {} user configs…",
        options.workspaces, options.users
    );
    let started = Instant::now();
    let population = seeder.population(options.workspaces, options.users).await?;
    eprintln!("  seeded in {:.0} s", started.elapsed().as_secs_f64());
    eprintln!(
        "seeding {} workspaces of {} credentials (S10) and one of {} (S3000)…",
        options.small_workspaces,
        options.small_workspace_credentials,
        options.large_workspace_credentials
    );
    let started = Instant::now();
    let small = seeder
        .workspaces_with_credentials(
            "bench-small",
            options.small_workspaces,
            options.small_workspace_credentials,
        )
        .await?;
    let large = seeder
        .workspaces_with_credentials("bench-large", 1, options.large_workspace_credentials)
        .await?;
    eprintln!("  seeded in {:.0} s", started.elapsed().as_secs_f64());
    let pool = PgPool::connect(&databases.aimc_url).await?;
    let deep_events = seeder
        .grow_history(&pool, &population.deep, options.deep_events)
        .await?;
    let short_events = average_events(&pool, &population.users).await?;
    let seeded_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;

    let wrk = |base_url: &str| Wrk {
        base_url: base_url.to_owned(),
        connections: options.connections,
        threads: 2,
        work_dir: work_dir.to_owned(),
        warmup: options.warmup,
        duration: options.duration,
    };
    let (warmup, duration) = (options.warmup, options.duration);
    let mut workloads = Vec::new();

    eprintln!("L1: pgbench -S…");
    let pgbench = Pgbench {
        database_url: databases.pgbench_url.clone(),
        connections: options.connections,
        threads: 2,
    };
    pgbench.initialise(options.pgbench_scale).await?;
    workloads.push(Workload {
        key: "L1",
        what: format!(
            "`pgbench -S` (scale {}), same PostgreSQL",
            options.pgbench_scale
        ),
        unit: "tx/s",
        measurement: pgbench.measure(work_dir, warmup, duration).await?,
    });

    eprintln!("L2: transit encrypt…");
    let l2 = transit_encrypt_requests(options, &env.key_prefix).await?;
    workloads.push(Workload {
        key: "L2",
        what: format!(
            "OpenBao transit encrypt of a {}-character key",
            seed::KEY_LENGTH
        ),
        unit: "req/s",
        measurement: wrk(&options.vault_addr)
            .measure(&Load::new("l2", &l2, Order::Random))
            .await?,
    });

    eprintln!("L2 (RSA): transit decrypt of a client-encrypted key…");
    let rsa = transit_rsa_decrypt_requests(options, &env.key_prefix).await?;
    workloads.push(Workload {
        key: "L2rsa",
        what: "OpenBao transit decrypt of an RSA-OAEP ciphertext (W's own Vault step)".into(),
        unit: "req/s",
        measurement: wrk(&options.vault_addr)
            .measure(&Load::new("l2rsa", &rsa, Order::Random))
            .await?,
    });

    let aimc = wrk(&server.base_url);
    eprintln!("R: GET /api/v1/get/ai-model-config…");
    let reads: Vec<Request> = population
        .users
        .iter()
        .map(|user| get(user, "/api/v1/get/ai-model-config"))
        .collect();
    workloads.push(Workload {
        key: "R",
        what: format!(
            "`GET /api/v1/get/ai-model-config`, {} random users",
            population.users.len()
        ),
        unit: "req/s",
        measurement: aimc.measure(&Load::new("r", &reads, Order::Random)).await?,
    });

    eprintln!("X: GET /api/v1/resolve?task=chat…");
    let resolves: Vec<Request> = population
        .users
        .iter()
        .map(|user| get(user, "/api/v1/resolve?task=chat"))
        .collect();
    workloads.push(Workload {
        key: "X",
        what: format!(
            "`GET /api/v1/resolve?task=chat`, {} random users, each with a key",
            population.users.len()
        ),
        unit: "req/s",
        measurement: aimc
            .measure(&Load::new("x", &resolves, Order::Random))
            .await?,
    });

    eprintln!("H: one command at a time on short and long histories…");
    // Every request must change something, or it is no command at all: each user's prompt goes
    // to one text and then to another (and back), and the warm-up uses texts of its own.
    let changes = |users: &[&User], texts: [&str; 2]| -> Vec<Request> {
        texts
            .iter()
            .flat_map(|text| users.iter().map(move |user| prompt_change(user, text)))
            .collect()
    };
    // Each user in turn, so nearly every command meets a history of the seeded length.
    let users: Vec<&User> = population.users.iter().collect();
    let (short, short_warmup) = (
        changes(&users, ["Answer briefly.", "Answer in full."]),
        changes(&users, ["Warming up.", "Still warming up."]),
    );
    let one_connection = |name, requests, warmup_requests| Load {
        warmup_requests: Some(warmup_requests),
        connections: Some(1),
        ..Load::new(name, requests, Order::InTurn)
    };
    workloads.push(Workload {
        key: "H10",
        what: format!("`PUT` changing the prompt, aggregates with {short_events:.0} prior events, 1 connection"),
        unit: "cmd/s",
        measurement: aimc
            .measure(&one_connection("h10", &short, &short_warmup))
            .await?,
    });
    let (deep, deep_warmup) = (
        changes(&[&population.deep], ["Answer briefly.", "Answer in full."]),
        changes(&[&population.deep], ["Warming up.", "Still warming up."]),
    );
    workloads.push(Workload {
        key: "H10000",
        what: format!("the same on one aggregate with {deep_events} prior events, 1 connection"),
        unit: "cmd/s",
        measurement: aimc
            .measure(&one_connection("h10000", &deep, &deep_warmup))
            .await?,
    });

    eprintln!("W: PUT /api/v1/update/ai-model-config with a new key…");
    let writes: Vec<Request> = population.users.iter().map(write_request).collect();
    workloads.push(Workload {
        key: "W",
        what: "`PUT /api/v1/update/ai-model-config`: 3 models, one with a new RSA-encrypted key"
            .into(),
        unit: "req/s",
        measurement: aimc
            .measure(&Load::new("w", &writes, Order::Random))
            .await?,
    });
    eprintln!("Wplain: PUT /api/user/api-keys with a new plain key…");
    let plain_writes: Vec<Request> = population.users.iter().map(plain_key_request).collect();
    workloads.push(Workload {
        key: "Wplain",
        what: "`PUT /api/user/api-keys`: a new plain OpenAI key (W's path without the RSA step)"
            .into(),
        unit: "req/s",
        measurement: aimc
            .measure(&Load::new("wplain", &plain_writes, Order::Random))
            .await?,
    });

    eprintln!(
        "S: POST /ai/llm in workspaces of {} and of {} credentials…",
        options.small_workspace_credentials, options.large_workspace_credentials
    );
    let small = (small.as_slice(), options.small_workspace_credentials);
    let large = (large.as_slice(), options.large_workspace_credentials);
    for (key, (workspaces, held), connections) in [
        ("S10", small, 1),
        ("S3000", large, 1),
        ("S10x16", small, CONCURRENT_WRITERS),
        ("S3000x16", large, CONCURRENT_WRITERS),
    ] {
        let measurement = measure_creations(&aimc, key, workspaces, connections).await?;
        let most = seeder.most_credentials(workspaces).await?;
        workloads.push(Workload {
            key,
            what: creations_what(workspaces.len(), held, most, connections),
            unit: "req/s",
            measurement,
        });
    }
    server.stop().await?;

    let rotated = &large.0[0].id;
    eprintln!(
        "K: aimc keys rotate on the workspace of {} credentials…",
        options.large_workspace_credentials
    );
    let (credentials, seconds) = server::rotate(&options.aimc, &env, rotated).await?;
    let rotation = LogPass {
        events: credentials,
        seconds,
    };
    eprintln!("L4: OpenBao transit rewrap of the same ciphertexts…");
    let (raw_rewrap, raw_rewrap_batched) =
        transit_rewraps(options, &env.key_prefix, &pool, rotated).await?;

    eprintln!("P: aimc projections rebuild…");
    let (events, seconds) = server::rebuild(&options.aimc, &env).await?;
    eprintln!("L3: INSERT INTO a copy of events SELECT * FROM events…");
    let bulk_insert = copy_event_log(&pool).await?;
    pool.close().await;
    Ok(Report {
        context: Context {
            started_at,
            commit: commit(),
            machine: machine(),
            smoke: options.smoke,
            warmup_seconds: warmup.as_secs_f64(),
            duration_seconds: duration.as_secs_f64(),
            connections: options.connections,
            workspaces: options.workspaces,
            users: options.users,
            seeded_events,
            small_workspaces: options.small_workspaces,
            small_workspace_credentials: options.small_workspace_credentials,
            large_workspace_credentials: options.large_workspace_credentials,
        },
        workloads,
        rebuild: LogPass { events, seconds },
        bulk_insert,
        rotation,
        raw_rewrap,
        raw_rewrap_batched,
    })
}

/// S: creates of family B configurations, each under a name of its own, `connections` at a
/// time. The connections stay in one workspace for four rounds each before moving to the
/// next, so they contend there as they do in S3000's one workspace, while S10's workspaces,
/// visited in turn, barely grow. S3000 goes through the same motions on its one workspace, so
/// the two rows of a pair differ only in the size of the workspaces.
async fn measure_creations(
    aimc: &Wrk,
    key: &str,
    workspaces: &[Workspace],
    connections: u32,
) -> anyhow::Result<Measurement> {
    let requests = creations(workspaces, key);
    let warmup_requests = creations(workspaces, &format!("{key} warm-up"));
    let name = key.to_lowercase();
    aimc.measure(&Load {
        warmup_requests: Some(&warmup_requests),
        connections: Some(connections),
        ..Load::new(&name, &requests, Order::Batches(4 * connections))
    })
    .await
}

/// One request per workspace, seed 001's create, named `<label> <fresh number>`: names are
/// unique per workspace, so no two requests (warm-up included) may share one.
fn creations(workspaces: &[Workspace], label: &str) -> Vec<Request> {
    workspaces
        .iter()
        .map(|workspace| Request {
            method: "POST",
            path: "/ai/llm".into(),
            header: ("Authorization", format!("Bearer {}", workspace.admin_token)),
            body: Some(
                seed::llm_configuration(&workspace.id, &format!("{label} {}", load::FRESH))
                    .to_string(),
            ),
        })
        .collect()
}

fn creations_what(workspaces: usize, held: usize, most: usize, connections: u32) -> String {
    let place = match workspaces {
        1 => "one workspace".to_owned(),
        n => format!("{n} workspaces, in turn,"),
    };
    let connections = match connections {
        1 => "1 connection".to_owned(),
        n => format!("{n} connections"),
    };
    format!(
        "`POST /ai/llm` (seed 001) into {place} holding {held} credentials ({most} at most by the end), {connections}"
    )
}

/// L3: PostgreSQL copying the whole event log into an empty table of the same layout, primary
/// key included. P reads every event and writes about a row for each, and so does this, in
/// one statement with none of aimc's work: the most a rebuild could do on this database.
async fn copy_event_log(pool: &PgPool) -> anyhow::Result<LogPass> {
    // Created in a transaction of its own: a table created in the inserting transaction may
    // skip the WAL (wal_level = minimal), which the read model's tables never do.
    sqlx::query("CREATE TABLE bench_event_copy (LIKE events INCLUDING ALL)")
        .execute(pool)
        .await?;
    let started = Instant::now();
    let copied = sqlx::query("INSERT INTO bench_event_copy SELECT * FROM events")
        .execute(pool)
        .await?
        .rows_affected();
    let seconds = started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE bench_event_copy")
        .execute(pool)
        .await?;
    Ok(LogPass {
        events: copied,
        seconds,
    })
}

async fn remove_all_but(dir: &Path, kept: &str) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if entry.file_name() != kept {
            let path = entry.path();
            let _ = match tokio::fs::remove_dir_all(&path).await {
                Err(_) => tokio::fs::remove_file(&path).await,
                removed => removed,
            };
        }
    }
}

fn bearer(user: &User) -> (&'static str, String) {
    ("Authorization", format!("Bearer {}", user.token))
}

fn get(user: &User, path: &str) -> Request {
    Request {
        method: "GET",
        path: path.into(),
        header: bearer(user),
        body: None,
    }
}

/// Seed 000's models, keys kept (no `apiKeyEncrypted`), and another prompt: one event.
fn prompt_change(user: &User, prompt: &str) -> Request {
    update_config(user, seed::seed_models_keeping_keys(), prompt)
}

/// Replaces the three models, the OpenAI one with a new key: Vault decrypts it (RSA) and
/// seals it under the workspace key in the same command.
fn write_request(user: &User) -> Request {
    let mut models = seed::seed_models_keeping_keys();
    models[0]["model"] = json!("gpt-4o");
    models[0]["apiKeyEncrypted"] = json!(user.new_key_ciphertext);
    update_config(user, models, seed::SYSTEM_PROMPT)
}

fn update_config(user: &User, models: serde_json::Value, prompt: &str) -> Request {
    Request {
        method: "PUT",
        path: "/api/v1/update/ai-model-config".into(),
        header: bearer(user),
        body: Some(json!({"models": models, "system_prompt": prompt}).to_string()),
    }
}

/// Family C's write: the key arrives plain over TLS, so Vault's only work is the same AES
/// encrypt L2 measures.
fn plain_key_request(user: &User) -> Request {
    let body = json!({"openai": {"apiKey": seed::plain_key(), "modelId": "gpt-4o"}});
    Request {
        method: "PUT",
        path: "/api/user/api-keys".into(),
        header: bearer(user),
        body: Some(body.to_string()),
    }
}

/// Requests for `POST /v1/transit/encrypt/<key>` of fresh 51-character keys, on a key of the
/// same type aimc's workspace keys have.
async fn transit_encrypt_requests(options: &Options, prefix: &str) -> anyhow::Result<Vec<Request>> {
    use base64::Engine;
    let key = format!("{prefix}-l2");
    let token = options.vault_token.expose_secret().to_owned();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/transit/keys/{key}", options.vault_addr))
        .header("X-Vault-Token", &token)
        .json(&json!({"type": "aes256-gcm96"}))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "creating transit key {key}: {}",
        response.status()
    );
    Ok((0..1000)
        .map(|_| Request {
            method: "POST",
            path: format!("/v1/transit/encrypt/{key}"),
            header: ("X-Vault-Token", token.clone()),
            body: Some(json!({"plaintext": base64::engine::general_purpose::STANDARD.encode(seed::plain_key())}).to_string()),
        })
        .collect())
}

/// Credentials a rotation rewraps at once (`aimc keys rotate`'s default concurrency).
const ROTATION_CONCURRENCY: usize = 16;
/// The largest batch L4b sends.
const REWRAP_BATCH: usize = 100;

/// L4: transit rewrap of the workspace's stored secrets, straight to OpenBao: as single
/// requests, 16 at once (the work a rotation asks, without aimc), and in batches of 100, one
/// at a time (the most Vault does with them).
async fn transit_rewraps(
    options: &Options,
    prefix: &str,
    pool: &PgPool,
    workspace: &str,
) -> anyhow::Result<(LogPass, LogPass)> {
    use base64::Engine;
    use futures::StreamExt;
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT credential_id::text, owner, secret FROM credential_view
          WHERE workspace_id = $1 AND secret IS NOT NULL",
    )
    .bind(workspace)
    .fetch_all(pool)
    .await?;
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|(credential, owner, secret)| {
            let context = format!("aimc:{workspace}/{owner}:{credential}");
            json!({
                "ciphertext": secret,
                "context": base64::engine::general_purpose::STANDARD.encode(context),
            })
        })
        .collect();
    let url = format!(
        "{}/v1/transit/rewrap/{prefix}-aes-{workspace}",
        options.vault_addr
    );
    let token = options.vault_token.expose_secret().to_owned();
    let client = reqwest::Client::new();
    let send = |body: serde_json::Value| {
        let request = client
            .post(&url)
            .header("X-Vault-Token", &token)
            .json(&body);
        async move {
            let response = request.send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "transit rewrap: {}",
                response.status()
            );
            Ok::<_, anyhow::Error>(())
        }
    };

    let started = Instant::now();
    let mut singles = futures::stream::iter(items.iter().cloned())
        .map(&send)
        .buffer_unordered(ROTATION_CONCURRENCY);
    while let Some(outcome) = singles.next().await {
        outcome?;
    }
    let single = LogPass {
        events: items.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
    };
    let started = Instant::now();
    for batch in items.chunks(REWRAP_BATCH) {
        send(json!({"batch_input": batch})).await?;
    }
    let batched = LogPass {
        events: items.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((single, batched))
}

/// Requests for `POST /v1/transit/decrypt/<key>` of RSA-OAEP ciphertexts, as a client makes
/// them for family A: every new key W sends costs Vault one of these before it is sealed.
async fn transit_rsa_decrypt_requests(
    options: &Options,
    prefix: &str,
) -> anyhow::Result<Vec<Request>> {
    let key = format!("{prefix}-l2rsa");
    let token = options.vault_token.expose_secret().to_owned();
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/v1/transit/keys/{key}", options.vault_addr))
        .header("X-Vault-Token", &token)
        .json(&json!({"type": "rsa-2048"}))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "creating transit key {key}: {}",
        response.status()
    );
    let described: serde_json::Value = client
        .get(format!("{}/v1/transit/keys/{key}", options.vault_addr))
        .header("X-Vault-Token", &token)
        .send()
        .await?
        .json()
        .await?;
    let pem = described["data"]["keys"]["1"]["public_key"]
        .as_str()
        .context("transit returned no public key")?;
    let public = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_pem(pem)?;
    (0..200)
        .map(|_| {
            Ok(Request {
                method: "POST",
                path: format!("/v1/transit/decrypt/{key}"),
                header: ("X-Vault-Token", token.clone()),
                body: Some(json!({"ciphertext": format!("vault:v1:{}", seed::seal(&public, &seed::plain_key())?)}).to_string()),
            })
        })
        .collect()
}

async fn average_events(pool: &PgPool, users: &[User]) -> anyhow::Result<f64> {
    let ids: Vec<String> = users
        .iter()
        .map(|user| format!("{}/user:{}", user.workspace, user.sub))
        .collect();
    let average: Option<f64> = sqlx::query_scalar(
        "SELECT avg(n)::float8 FROM (SELECT count(*) AS n FROM events WHERE aggregate_id = ANY($1) GROUP BY aggregate_id) counts",
    )
    .bind(&ids)
    .fetch_one(pool)
    .await?;
    average.context("no seeded events")
}

/// The benchmark's own databases, made fresh for every run and dropped after it.
struct Databases {
    admin_url: String,
    names: [String; 2],
    aimc_url: String,
    pgbench_url: String,
}

impl Databases {
    async fn create(admin_url: &str, name: &str) -> anyhow::Result<Databases> {
        // Names are ours ([a-z0-9_]), never input, so quoting them as identifiers is safe.
        anyhow::ensure!(name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        let names = [name.to_owned(), format!("{name}_pgbench")];
        let mut admin = PgConnection::connect(admin_url)
            .await
            .context("connecting to the admin database")?;
        for name in &names {
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut admin)
                .await?;
        }
        admin.close().await?;
        let url_of = |name: &str| -> anyhow::Result<String> {
            let mut url = url::Url::parse(admin_url)?;
            url.set_path(&format!("/{name}"));
            Ok(url.to_string())
        };
        Ok(Databases {
            admin_url: admin_url.to_owned(),
            aimc_url: url_of(&names[0])?,
            pgbench_url: url_of(&names[1])?,
            names,
        })
    }

    async fn drop_all(&self) {
        let Ok(mut admin) = PgConnection::connect(&self.admin_url).await else {
            return;
        };
        for name in &self.names {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
    }
}

fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => match git(&[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            // The benchmark's own output is rewritten by every run.
            ":(exclude)bench/results",
        ]) {
            Some(changes) if !changes.is_empty() => format!("{head} with uncommitted changes"),
            _ => head,
        },
        None => "unknown".into(),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|line| {
                line.strip_prefix("model name")
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        });
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "{} ({cores} cores)",
        cpu.unwrap_or_else(|| "an unknown CPU".into())
    )
}

#[cfg(test)]
mod tests {
    use crate::load::FRESH;
    use crate::seed::Workspace;

    #[test]
    fn every_creation_leaves_wrk_a_place_for_a_name_of_its_own() {
        let workspaces = [Workspace {
            id: "bench-small-00000".into(),
            admin_token: "token".into(),
        }];

        let requests = super::creations(&workspaces, "S10 warm-up");

        let body = requests[0].body.as_deref().unwrap();
        assert_eq!(body.matches(FRESH).count(), 1, "{body}");
        let sent: serde_json::Value = serde_json::from_str(&body.replace(FRESH, "1-7")).unwrap();
        assert_eq!(sent["name"], "S10 warm-up 1-7");
        assert_eq!(sent["workspaceId"], "bench-small-00000");
        assert_eq!(requests[0].header.1, "Bearer token");
    }

    #[tokio::test]
    async fn a_failed_run_keeps_only_aimcs_log() {
        let dir = std::env::temp_dir().join(format!("aimc-bench-test-{}", std::process::id()));
        tokio::fs::create_dir_all(dir.join("pgbench-log"))
            .await
            .unwrap();
        for file in [
            "aimc.log",
            "w.requests",
            "w.warmup",
            "wrk.lua",
            "pgbench-log/tx.1",
        ] {
            tokio::fs::write(dir.join(file), "x").await.unwrap();
        }

        super::remove_all_but(&dir, "aimc.log").await;

        let mut left = Vec::new();
        let mut entries = tokio::fs::read_dir(&dir).await.unwrap();
        while let Some(entry) = entries.next_entry().await.unwrap() {
            left.push(entry.file_name().into_string().unwrap());
        }
        assert_eq!(left, ["aimc.log"]);
        tokio::fs::remove_dir_all(&dir).await.unwrap();
    }
}
