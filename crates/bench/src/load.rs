//! The load generators: wrk for HTTP (aimc and OpenBao alike) and pgbench for PostgreSQL.
//! Both run as separate processes so the load they make costs the same CPU for every workload.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::Command;

/// Percentiles every workload reports, in the order the table and chart show them.
pub const PERCENTILES: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

/// What one measured workload did.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub operations: u64,
    pub seconds: f64,
    /// Latency in microseconds at each of [`PERCENTILES`].
    pub percentiles_us: Vec<f64>,
    /// Failed operations: socket errors, timeouts and answers outside 2xx/3xx.
    pub errors: u64,
}

impl Measurement {
    pub fn throughput(&self) -> f64 {
        self.operations as f64 / self.seconds.max(1e-9)
    }

    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        PERCENTILES
            .iter()
            .position(|p| *p == percentile)
            .map(|i| self.percentiles_us[i] / 1000.0)
            .unwrap_or(f64::NAN)
    }
}

/// One request wrk can send: a line of the data file its script reads.
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub header: (&'static str, String),
    pub body: Option<String>,
}

/// How the script picks the next request: at random (many users at once), each in turn
/// (a command per aggregate, or alternating commands on one aggregate), or each `n` times in a
/// row from a random start (all connections writing to one workspace, then to the next).
#[derive(Clone, Copy)]
pub enum Order {
    Random,
    InTurn,
    Batches(u32),
}

/// In a request's body, replaced by a number no other request of the same wrk run gets: each
/// request then carries a name of its own where names must be unique. The script below looks
/// for this same text.
pub const FRESH: &str = "{fresh}";

/// What wrk sends for one workload.
pub struct Load<'a> {
    pub name: &'a str,
    pub requests: &'a [Request],
    /// Sent during the warm-up instead of `requests`, where sending them twice would make the
    /// measured ones no-ops (a prompt already set is no change, and no command).
    pub warmup_requests: Option<&'a [Request]>,
    pub order: Order,
    /// Instead of the generator's default.
    pub connections: Option<u32>,
}

impl<'a> Load<'a> {
    pub fn new(name: &'a str, requests: &'a [Request], order: Order) -> Self {
        Load {
            name,
            requests,
            warmup_requests: None,
            order,
            connections: None,
        }
    }
}

/// wrk against one server, with the run's settings.
pub struct Wrk {
    pub base_url: String,
    pub connections: u32,
    pub threads: u32,
    /// Where the script and the request files go.
    pub work_dir: PathBuf,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Parses the data file, picks requests and prints wrk's own figures as JSON. Requests are
/// formatted once in `init` so the script costs the generator as little as possible.
const WRK_SCRIPT: &str = r#"
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
end

local FRESH = "{fresh}"
local requests = {}
local order = "random"
local batch = 1
local index = 0
local sent = 0
local id = 1

function init(args)
  order = args[2] or "random"
  for line in io.lines(args[1]) do
    local method, path, name, value, body = line:match("^(%u+)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = { [name] = value }
    if body ~= "" then headers["Content-Type"] = "application/json" else body = nil end
    if body and body:find(FRESH, 1, true) then
      -- Formatted anew for each request, in request().
      requests[#requests + 1] = { method = method, path = path, headers = headers, body = body }
    else
      requests[#requests + 1] = wrk.format(method, path, headers, body)
    end
  end
  id = thread_id or 1
  math.randomseed(os.time() * 7919 + id)
  -- Threads walking the list in turn start apart so they do not send the same request.
  -- (Each thread has its own Lua state: the count comes in as an argument.)
  index = math.floor((id - 1) * #requests / (tonumber(args[3]) or 1))
  if order == "batches" then
    batch = tonumber(args[4])
    -- Successive runs start at different requests, so they spread over the whole list.
    index = math.random(#requests) - 1
  end
end

local function next_request()
  if order == "inturn" then
    index = index % #requests + 1
  elseif order == "batches" then
    if sent % batch == 0 then index = index % #requests + 1 end
  else
    index = math.random(#requests)
  end
  sent = sent + 1
  return requests[index]
end

function request()
  local r = next_request()
  if type(r) == "string" then return r end
  local body = r.body:gsub(FRESH, id .. "-" .. sent)
  return wrk.format(r.method, r.path, r.headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({ 50, 90, 99, 99.9 }) do
    p[#p + 1] = string.format("%d", latency:percentile(q))
  end
  io.write(string.format(
    'AIMC_BENCH_JSON {"requests":%d,"duration_us":%d,"errors":%d,"percentiles_us":[%s]}\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout + e.status,
    table.concat(p, ",")))
end
"#;

impl Wrk {
    /// Runs the warm-up requests for `warmup` (discarded), then `load.requests` for
    /// `duration`, and returns the second.
    pub async fn measure(&self, load: &Load<'_>) -> anyhow::Result<Measurement> {
        let (work_dir, warmup, duration) = (&self.work_dir, self.warmup, self.duration);
        let script = work_dir.join("wrk.lua");
        if !script.exists() {
            tokio::fs::write(&script, WRK_SCRIPT).await?;
        }
        let connections = load.connections.unwrap_or(self.connections);
        let threads = match load.order {
            // A batch is counted in one Lua state, so every connection must share it.
            Order::Batches(_) => 1,
            _ => self.threads.min(connections),
        };
        if !warmup.is_zero() {
            let data = work_dir.join(format!("{}.warmup", load.name));
            let requests = load.warmup_requests.unwrap_or(load.requests);
            tokio::fs::write(&data, request_lines(requests)?).await?;
            self.run(&script, &data, load.order, warmup, connections, threads)
                .await
                .with_context(|| format!("warming up {}", load.name))?;
        }
        let data = work_dir.join(format!("{}.requests", load.name));
        tokio::fs::write(&data, request_lines(load.requests)?).await?;
        self.run(&script, &data, load.order, duration, connections, threads)
            .await
            .with_context(|| format!("measuring {}", load.name))
    }

    async fn run(
        &self,
        script: &Path,
        data: &Path,
        order: Order,
        duration: Duration,
        connections: u32,
        threads: u32,
    ) -> anyhow::Result<Measurement> {
        let (order, batch) = match order {
            Order::Random => ("random", 1),
            Order::InTurn => ("inturn", 1),
            Order::Batches(n) => ("batches", n.max(1)),
        };
        let output = Command::new("wrk")
            .arg(format!("--threads={threads}"))
            .arg(format!("--connections={connections}"))
            .arg(format!("--duration={}s", duration.as_secs().max(1)))
            // A timeout is a failed request, which voids the run: S3000x16's slowest answers
            // took 8 s on the code the S rows were written against.
            .arg("--timeout=30s")
            .arg(format!("--script={}", script.display()))
            .arg(&self.base_url)
            .arg("--")
            .arg(data)
            .arg(order)
            .arg(threads.to_string())
            .arg(batch.to_string())
            .stdin(Stdio::null())
            .output()
            .await
            .context("could not start wrk (Debian package wrk; ./dev bench installs it)")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "wrk failed ({}): {}{}",
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let json = stdout
            .lines()
            .find_map(|line| line.strip_prefix("AIMC_BENCH_JSON "))
            .with_context(|| format!("wrk printed no summary: {stdout}"))?;
        #[derive(serde::Deserialize)]
        struct Summary {
            requests: u64,
            duration_us: u64,
            errors: u64,
            percentiles_us: Vec<f64>,
        }
        let summary: Summary = serde_json::from_str(json)?;
        Ok(Measurement {
            operations: summary.requests,
            seconds: summary.duration_us as f64 / 1e6,
            percentiles_us: summary.percentiles_us,
            errors: summary.errors,
        })
    }
}

fn request_lines(requests: &[Request]) -> anyhow::Result<String> {
    let mut lines = String::new();
    for request in requests {
        let fields = [
            request.path.as_str(),
            request.header.0,
            request.header.1.as_str(),
            request.body.as_deref().unwrap_or(""),
        ];
        if fields.iter().any(|field| field.contains(['\t', '\n'])) {
            bail!("a request field holds a tab or a newline: {}", request.path);
        }
        lines.push_str(request.method);
        for field in fields {
            lines.push('\t');
            lines.push_str(field);
        }
        lines.push('\n');
    }
    Ok(lines)
}

/// pgbench's built-in select-only script (`-S`) on its own database in the same cluster.
pub struct Pgbench {
    pub database_url: String,
    pub connections: u32,
    pub threads: u32,
}

impl Pgbench {
    pub async fn initialise(&self, scale: u32) -> anyhow::Result<()> {
        run_pgbench(&[
            "--initialize".into(),
            "--quiet".into(),
            format!("--scale={scale}"),
            self.database_url.clone(),
        ])
        .await
        .map(drop)
    }

    pub async fn measure(
        &self,
        work_dir: &Path,
        warmup: Duration,
        duration: Duration,
    ) -> anyhow::Result<Measurement> {
        let common = |duration: Duration| {
            vec![
                "--select-only".to_owned(),
                "--no-vacuum".to_owned(),
                format!("--client={}", self.connections),
                format!("--jobs={}", self.threads.min(self.connections)),
                format!("--time={}", duration.as_secs().max(1)),
            ]
        };
        if !warmup.is_zero() {
            let mut args = common(warmup);
            args.push(self.database_url.clone());
            run_pgbench(&args).await.context("warming up pgbench")?;
        }
        let log_dir = work_dir.join("pgbench-log");
        let _ = tokio::fs::remove_dir_all(&log_dir).await;
        tokio::fs::create_dir_all(&log_dir).await?;
        let mut args = common(duration);
        args.push("--log".into());
        args.push(format!("--log-prefix={}", log_dir.join("tx").display()));
        args.push(self.database_url.clone());
        let stdout = run_pgbench(&args).await?;
        let latencies = read_pgbench_logs(&log_dir).await?;
        let failed = pgbench_figure(&stdout, "number of failed transactions: ").unwrap_or(0.0);
        // pgbench's own rate leaves out the time spent opening connections, as wrk's does.
        let tps = pgbench_figure(&stdout, "tps = ").context("pgbench printed no tps")?;
        Ok(Measurement {
            operations: latencies.len() as u64,
            seconds: latencies.len() as f64 / tps.max(1e-9),
            percentiles_us: percentiles(latencies),
            errors: failed as u64,
        })
    }
}

async fn run_pgbench(args: &[String]) -> anyhow::Result<String> {
    let output = Command::new("pgbench")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("could not start pgbench (it comes with Debian's postgresql package)")?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "pgbench failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

fn pgbench_figure(stdout: &str, label: &str) -> Option<f64> {
    stdout.lines().find_map(|line| {
        line.trim()
            .strip_prefix(label)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Each line of a per-transaction log is `client transaction latency_us script epoch epoch_us`.
async fn read_pgbench_logs(dir: &PathBuf) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let text = tokio::fs::read_to_string(entry.path()).await?;
        for line in text.lines() {
            if let Some(latency) = line.split_whitespace().nth(2).and_then(|f| f.parse().ok()) {
                latencies.push(latency);
            }
        }
    }
    if latencies.is_empty() {
        bail!("pgbench logged no transactions in {}", dir.display());
    }
    Ok(latencies)
}

/// Nearest-rank percentiles of `samples` at each of [`PERCENTILES`].
pub fn percentiles(mut samples: Vec<f64>) -> Vec<f64> {
    samples.sort_by(f64::total_cmp);
    PERCENTILES
        .iter()
        .map(|p| {
            if samples.is_empty() {
                return f64::NAN;
            }
            // The epsilon keeps 99.9% of 1000 at rank 999 despite binary fractions.
            let rank = ((p / 100.0) * samples.len() as f64 - 1e-9).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentiles(samples), vec![500.0, 900.0, 990.0, 999.0]);
    }

    #[test]
    fn pgbench_figures_are_read_from_its_summary() {
        let stdout = "number of transactions actually processed: 10\nnumber of failed transactions: 3 (0.1%)\n";
        assert_eq!(
            pgbench_figure(stdout, "number of failed transactions: "),
            Some(3.0)
        );
    }

    #[test]
    fn a_request_field_may_not_break_the_data_file() {
        let request = Request {
            method: "GET",
            path: "/x".into(),
            header: ("Authorization", "Bearer a\tb".into()),
            body: None,
        };
        assert!(request_lines(&[request]).is_err());
    }
}
