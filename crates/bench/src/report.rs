//! The results table: every figure comes from the run that writes it.

use std::fmt::Write;

use crate::load::{Measurement, PERCENTILES};

pub struct Workload {
    /// L1, L2, R, W, H10, H10000, S10, …
    pub key: &'static str,
    pub what: String,
    pub unit: &'static str,
    pub measurement: Measurement,
}

/// One timed pass over the whole event log: P's rebuild, or L3's bulk insert.
pub struct LogPass {
    pub events: u64,
    pub seconds: f64,
}

impl LogPass {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
}

/// What the run was, so two tables can be told apart.
pub struct Context {
    pub started_at: String,
    pub commit: String,
    pub machine: String,
    pub smoke: bool,
    pub warmup_seconds: f64,
    pub duration_seconds: f64,
    pub connections: u32,
    pub workspaces: usize,
    pub users: usize,
    pub seeded_events: i64,
    /// S10's workspaces and the credentials each held, then S3000's one workspace.
    pub small_workspaces: usize,
    pub small_workspace_credentials: usize,
    pub large_workspace_credentials: usize,
}

pub struct Report {
    pub context: Context,
    pub workloads: Vec<Workload>,
    /// P: `aimc projections rebuild`.
    pub rebuild: LogPass,
    /// L3: PostgreSQL's own copy of the event log, P's limit.
    pub bulk_insert: LogPass,
    /// K: `aimc keys rotate` of the workspace of S3000, credentials for events.
    pub rotation: LogPass,
    /// L4: transit rewrap of the same secrets as single requests, 16 at once.
    pub raw_rewrap: LogPass,
    /// L4b: the same in batches of 100, one at a time.
    pub raw_rewrap_batched: LogPass,
}

pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

/// A figure of this run over another of the same run, and what it should be.
pub struct Ratio {
    pub name: &'static str,
    pub value: f64,
    pub goal: Goal,
    /// After the goal, e.g. what comes once it is met.
    pub note: &'static str,
}

impl Ratio {
    fn at_least(name: &'static str, value: f64, bound: f64) -> Ratio {
        Ratio {
            name,
            value,
            goal: Goal::AtLeast(bound),
            note: "",
        }
    }

    fn at_most(name: &'static str, value: f64, bound: f64) -> Ratio {
        Ratio {
            name,
            value,
            goal: Goal::AtMost(bound),
            note: "",
        }
    }

    fn noting(self, note: &'static str) -> Ratio {
        Ratio { note, ..self }
    }

    /// False for a ratio that is not a number (a workload that did nothing).
    pub fn met(&self) -> bool {
        match self.goal {
            Goal::AtLeast(bound) => self.value >= bound,
            Goal::AtMost(bound) => self.value <= bound,
        }
    }

    pub fn goal_text(&self) -> String {
        let (sign, bound) = match self.goal {
            Goal::AtLeast(bound) => ("≥", bound),
            Goal::AtMost(bound) => ("≤", bound),
        };
        format!("{sign} {bound}{}", self.note)
    }
}

impl Report {
    pub fn workload(&self, key: &str) -> &Measurement {
        &self
            .workloads
            .iter()
            .find(|workload| workload.key == key)
            .unwrap_or_else(|| panic!("no workload {key}"))
            .measurement
    }

    /// Throughput of `a` over that of `b`.
    fn throughput_ratio(&self, a: &str, b: &str) -> f64 {
        self.workload(a).throughput() / self.workload(b).throughput()
    }

    /// Latency of `a` over that of `b` at `percentile`.
    fn latency_ratio(&self, a: &str, b: &str, percentile: f64) -> f64 {
        self.workload(a).percentile_ms(percentile) / self.workload(b).percentile_ms(percentile)
    }

    /// The targets: each a ratio of two figures of this run, since only those mean anything
    /// on a shared machine.
    pub fn ratios(&self) -> Vec<Ratio> {
        let rebuild = self.rebuild.events_per_second() / self.bulk_insert.events_per_second();
        vec![
            Ratio::at_least("R/L1 (throughput)", self.throughput_ratio("R", "L1"), 0.7),
            Ratio::at_most(
                "R/L1 (p99 latency)",
                self.latency_ratio("R", "L1", 99.0),
                1.5,
            ),
            Ratio::at_least("X/L1 (throughput)", self.throughput_ratio("X", "L1"), 0.5),
            Ratio::at_least(
                "W/L2rsa (throughput)",
                self.throughput_ratio("W", "L2rsa"),
                0.6,
            ),
            Ratio::at_least(
                "Wplain/L2 (throughput)",
                self.throughput_ratio("Wplain", "L2"),
                0.25,
            )
            .noting(", then 0.5"),
            Ratio::at_most(
                "H10000/H10 (p50 latency)",
                self.latency_ratio("H10000", "H10", 50.0),
                1.3,
            ),
            Ratio::at_least("P/L3 (events/s)", rebuild, 0.25).noting(" (aim)"),
            Ratio::at_least(
                "K/L4 (credentials/s)",
                self.rotation.events_per_second() / self.raw_rewrap.events_per_second(),
                0.8,
            ),
            Ratio::at_least(
                "K/L4b (credentials/s)",
                self.rotation.events_per_second() / self.raw_rewrap_batched.events_per_second(),
                0.8,
            ),
            Ratio::at_most(
                "S3000/S10 (p50 latency, 1 connection)",
                self.latency_ratio("S3000", "S10", 50.0),
                1.5,
            ),
            Ratio::at_most(
                "S10/S3000 (throughput, 1 connection)",
                self.throughput_ratio("S10", "S3000"),
                1.5,
            ),
            Ratio::at_most(
                "S3000x16/S10x16 (p50 latency)",
                self.latency_ratio("S3000x16", "S10x16", 50.0),
                1.5,
            ),
            Ratio::at_most(
                "S10x16/S3000x16 (throughput)",
                self.throughput_ratio("S10x16", "S3000x16"),
                1.5,
            ),
        ]
    }

    pub fn errors(&self) -> u64 {
        self.workloads.iter().map(|w| w.measurement.errors).sum()
    }

    pub fn markdown(&self) -> String {
        let c = &self.context;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# aimc benchmark{}\n",
            if c.smoke {
                " (smoke run: figures mean nothing)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "Run {} on {}, commit {}. Each workload {} s after {} s of warm-up, {} connections (H: 1; S: \
             1, then 16), load generator and servers on the same machine. Data: {} workspaces, {} user \
             configs (3 models, 2 keys each), {} workspaces of {} credentials for S10 and one of {} for \
             S3000, {} events before the first workload. Written by `aimc-bench`; nothing here is typed \
             in.\n",
            c.started_at, c.machine, c.commit, c.duration_seconds, c.warmup_seconds, c.connections,
            c.workspaces, c.users, c.small_workspaces, c.small_workspace_credentials,
            c.large_workspace_credentials, c.seeded_events
        );
        let _ = write!(out, "| | workload | throughput |");
        for p in PERCENTILES {
            let _ = write!(out, " p{p} (ms) |");
        }
        let _ = writeln!(out, " errors |");
        let _ = writeln!(
            out,
            "|---|---|---:|{}---:|",
            "---:|".repeat(PERCENTILES.len())
        );
        for workload in &self.workloads {
            let m = &workload.measurement;
            let _ = write!(
                out,
                "| {} | {} | {} {} |",
                workload.key,
                workload.what,
                thousands(m.throughput()),
                workload.unit
            );
            for p in PERCENTILES {
                let _ = write!(out, " {:.2} |", m.percentile_ms(p));
            }
            let _ = writeln!(out, " {} |", m.errors);
        }
        log_pass_row(
            &mut out,
            "P",
            &format!(
                "`aimc projections rebuild`: {} events replayed in {:.2} s",
                self.rebuild.events, self.rebuild.seconds
            ),
            "events/s",
            &self.rebuild,
        );
        log_pass_row(
            &mut out,
            "L3",
            &format!(
                "`INSERT INTO` an empty copy of `events` (primary key too) `SELECT * FROM events`: {} rows in {:.2} s, same PostgreSQL",
                self.bulk_insert.events, self.bulk_insert.seconds
            ),
            "rows/s",
            &self.bulk_insert,
        );
        log_pass_row(
            &mut out,
            "K",
            &format!(
                "`aimc keys rotate` of the S3000 workspace: {} credentials rewrapped in {:.2} s, service stopped",
                self.rotation.events, self.rotation.seconds
            ),
            "credentials/s",
            &self.rotation,
        );
        log_pass_row(
            &mut out,
            "L4",
            &format!(
                "OpenBao transit rewrap of the same {} secrets, single requests, 16 at once: {:.2} s",
                self.raw_rewrap.events, self.raw_rewrap.seconds
            ),
            "keys/s",
            &self.raw_rewrap,
        );
        log_pass_row(
            &mut out,
            "L4b",
            &format!(
                "the same in batches of 100, one at a time: {:.2} s",
                self.raw_rewrap_batched.seconds
            ),
            "keys/s",
            &self.raw_rewrap_batched,
        );
        let _ = writeln!(
            out,
            "\n| target | this run | goal | met |\n|---|---:|---|---|"
        );
        for ratio in self.ratios() {
            let _ = writeln!(
                out,
                "| {} | {:.2} | {} | {} |",
                ratio.name,
                ratio.value,
                ratio.goal_text(),
                if ratio.met() { "yes" } else { "**no**" }
            );
        }
        out
    }
}

/// A row for a single timed pass: a rate, no latencies, no errors (a failed pass fails the run).
fn log_pass_row(out: &mut String, key: &str, what: &str, unit: &str, pass: &LogPass) {
    let _ = writeln!(
        out,
        "| {key} | {what} | {} {unit} |{} – |",
        thousands(pass.events_per_second()),
        " – |".repeat(PERCENTILES.len())
    );
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0
            && (digits.len() - i) % 3 == 0
            && digit.is_ascii_digit()
            && digits.as_bytes()[i - 1].is_ascii_digit()
        {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(operations: u64, p50_us: f64) -> Measurement {
        Measurement {
            operations,
            seconds: 1.0,
            percentiles_us: vec![p50_us, p50_us, 2.0 * p50_us, 3.0 * p50_us],
            errors: 0,
        }
    }

    fn report() -> Report {
        let workload = |key, operations, p50| Workload {
            key,
            what: key.to_owned(),
            unit: "/s",
            measurement: measurement(operations, p50),
        };
        Report {
            context: Context {
                started_at: "now".into(),
                commit: "abc".into(),
                machine: "here".into(),
                smoke: false,
                warmup_seconds: 1.0,
                duration_seconds: 1.0,
                connections: 32,
                workspaces: 1,
                users: 1,
                seeded_events: 1,
                small_workspaces: 2,
                small_workspace_credentials: 10,
                large_workspace_credentials: 3000,
            },
            workloads: vec![
                workload("L1", 10_000, 1000.0),
                workload("L2", 4_000, 1000.0),
                workload("L2rsa", 500, 4000.0),
                workload("R", 6_000, 1000.0),
                workload("X", 5_000, 1000.0),
                workload("H10", 100, 2000.0),
                workload("H10000", 100, 2400.0),
                workload("W", 1_000, 1000.0),
                workload("Wplain", 2_000, 1000.0),
                workload("S10", 100, 10_000.0),
                workload("S3000", 10, 145_000.0),
                workload("S10x16", 160, 100_000.0),
                workload("S3000x16", 120, 140_000.0),
            ],
            rebuild: LogPass {
                events: 50_000,
                seconds: 2.0,
            },
            bulk_insert: LogPass {
                events: 100_000,
                seconds: 1.0,
            },
            rotation: LogPass {
                events: 3_000,
                seconds: 2.0,
            },
            raw_rewrap: LogPass {
                events: 3_000,
                seconds: 1.5,
            },
            raw_rewrap_batched: LogPass {
                events: 3_000,
                seconds: 0.5,
            },
        }
    }

    #[test]
    fn ratios_are_taken_from_the_same_run() {
        let ratios = report().ratios();
        let check = |name: &str, expected: f64, met: bool| {
            let ratio = ratios
                .iter()
                .find(|r| r.name == name)
                .unwrap_or_else(|| panic!("no ratio {name}"));
            assert!(
                (ratio.value - expected).abs() < 1e-9,
                "{name}: {}",
                ratio.value
            );
            assert_eq!(ratio.met(), met, "{name}");
        };
        check("R/L1 (throughput)", 0.6, false);
        check("R/L1 (p99 latency)", 1.0, true);
        check("X/L1 (throughput)", 0.5, true);
        check("W/L2rsa (throughput)", 2.0, true);
        check("Wplain/L2 (throughput)", 0.5, true);
        check("H10000/H10 (p50 latency)", 1.2, true);
        check("P/L3 (events/s)", 0.25, true);
        check("S3000/S10 (p50 latency, 1 connection)", 14.5, false);
        check("S10/S3000 (throughput, 1 connection)", 10.0, false);
        check("S3000x16/S10x16 (p50 latency)", 1.4, true);
        check("S10x16/S3000x16 (throughput)", 160.0 / 120.0, true);
        check("K/L4 (credentials/s)", 0.75, false);
        check("K/L4b (credentials/s)", 0.25, false);
        assert_eq!(ratios.len(), 13);
    }

    #[test]
    fn a_goal_is_met_at_its_bound_and_never_by_a_missing_figure() {
        assert!(Ratio::at_least("a", 0.5, 0.5).met());
        assert!(!Ratio::at_least("a", 0.49, 0.5).met());
        assert!(Ratio::at_most("a", 1.5, 1.5).met());
        assert!(!Ratio::at_most("a", 1.51, 1.5).met());
        assert!(!Ratio::at_least("a", f64::NAN, 0.5).met());
        assert!(!Ratio::at_most("a", f64::NAN, 1.5).met());
    }

    #[test]
    fn the_table_shows_every_workload_and_target() {
        let table = report().markdown();
        for needle in [
            "| L1 |",
            "| X |",
            "| H10000 |",
            "| S3000x16 |",
            "| P | `aimc projections rebuild`: 50000 events replayed in 2.00 s | 25,000 events/s |",
            "| L3 |",
            "100,000 rows/s",
            "| R/L1 (throughput) | 0.60 | ≥ 0.7 | **no** |",
            "| Wplain/L2 (throughput) | 0.50 | ≥ 0.25, then 0.5 | yes |",
            "| P/L3 (events/s) | 0.25 | ≥ 0.25 (aim) | yes |",
            "| S3000/S10 (p50 latency, 1 connection) | 14.50 | ≤ 1.5 | **no** |",
        ] {
            assert!(table.contains(needle), "{needle} missing from\n{table}");
        }
        assert!(!table.contains("W/L2 "), "W/L2 is no target:\n{table}");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
