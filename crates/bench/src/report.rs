//! The results table: every figure comes from the run that writes it.

use std::fmt::Write;

use crate::load::{Measurement, PERCENTILES};

pub struct Workload {
    /// L1, L2, R, W, H10, H10000.
    pub key: &'static str,
    pub what: String,
    pub unit: &'static str,
    pub measurement: Measurement,
}

pub struct Rebuild {
    pub events: u64,
    pub seconds: f64,
}

impl Rebuild {
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
}

pub struct Report {
    pub context: Context,
    pub workloads: Vec<Workload>,
    pub rebuild: Rebuild,
}

pub struct Ratio {
    pub name: &'static str,
    pub value: f64,
    pub target: &'static str,
    /// None for a ratio shown for context, without a target.
    pub met: Option<bool>,
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

    pub fn ratios(&self) -> Vec<Ratio> {
        let (l1, l2, r, w) = (
            self.workload("L1"),
            self.workload("L2"),
            self.workload("R"),
            self.workload("W"),
        );
        let (h10, h10000) = (self.workload("H10"), self.workload("H10000"));
        let read = r.throughput() / l1.throughput();
        let read_p99 = r.percentile_ms(99.0);
        let write = w.throughput() / l2.throughput();
        let history = h10000.percentile_ms(50.0) / h10.percentile_ms(50.0);
        let rebuild = self.rebuild.events_per_second();
        let mut ratios = vec![
            Ratio {
                name: "R/L1 (throughput)",
                value: read,
                target: "≥ 0.5",
                met: Some(read >= 0.5),
            },
            Ratio {
                name: "R p99 (ms)",
                value: read_p99,
                target: "< 5",
                met: Some(read_p99 < 5.0),
            },
            Ratio {
                name: "W/L2 (throughput)",
                value: write,
                target: "≥ 0.5",
                met: Some(write >= 0.5),
            },
            Ratio {
                name: "H10000/H10 (p50 latency)",
                value: history,
                target: "≤ 1.3",
                met: Some(history <= 1.3),
            },
            Ratio {
                name: "P (events/s)",
                value: rebuild,
                target: "≥ 20000",
                met: Some(rebuild >= 20_000.0),
            },
        ];
        if let Some(rsa) = self
            .workloads
            .iter()
            .find(|workload| workload.key == "L2rsa")
        {
            ratios.push(Ratio {
                name: "W/L2rsa (throughput)",
                value: w.throughput() / rsa.measurement.throughput(),
                target: "none: W against the Vault step each W request needs",
                met: None,
            });
        }
        if let Some(plain) = self
            .workloads
            .iter()
            .find(|workload| workload.key == "Wplain")
        {
            ratios.push(Ratio {
                name: "Wplain/L2 (throughput)",
                value: plain.measurement.throughput() / l2.throughput(),
                target: "none: a write whose Vault work is exactly L2's",
                met: None,
            });
        }
        ratios
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
            "Run {} on {}, commit {}. Each workload {} s after {} s of warm-up, {} connections (H: 1), \
             load generator and servers on the same machine. Data: {} workspaces, {} user configs \
             (3 models, 2 keys each), {} events before the first workload. Written by `aimc-bench`; \
             nothing here is typed in.\n",
            c.started_at, c.machine, c.commit, c.duration_seconds, c.warmup_seconds, c.connections,
            c.workspaces, c.users, c.seeded_events
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
        let _ = writeln!(
            out,
            "| P | `aimc projections rebuild`: {} events replayed in {:.2} s | {} events/s |{} – |\n",
            self.rebuild.events,
            self.rebuild.seconds,
            thousands(self.rebuild.events_per_second()),
            " – |".repeat(PERCENTILES.len())
        );
        let _ = writeln!(
            out,
            "| target | this run | goal | met |\n|---|---:|---|---|"
        );
        for ratio in self.ratios() {
            let value = if ratio.value >= 1000.0 {
                thousands(ratio.value)
            } else {
                format!("{:.2}", ratio.value)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                ratio.name,
                value,
                ratio.target,
                match ratio.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "–",
                }
            );
        }
        out
    }
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
            },
            workloads: vec![
                workload("L1", 10_000, 1000.0),
                workload("L2", 4_000, 1000.0),
                workload("R", 6_000, 1000.0),
                workload("L2rsa", 500, 4000.0),
                workload("W", 1_000, 1000.0),
                workload("Wplain", 2_000, 1000.0),
                workload("H10", 100, 2000.0),
                workload("H10000", 100, 2400.0),
            ],
            rebuild: Rebuild {
                events: 50_000,
                seconds: 2.0,
            },
        }
    }

    #[test]
    fn ratios_are_taken_from_the_same_run() {
        let ratios = report().ratios();
        let value = |name: &str| ratios.iter().find(|r| r.name.starts_with(name)).unwrap();
        let check = |name: &str, expected: f64, met: Option<bool>| {
            let ratio = value(name);
            assert!(
                (ratio.value - expected).abs() < 1e-9,
                "{name}: {}",
                ratio.value
            );
            assert_eq!(ratio.met, met, "{name}");
        };
        check("R/L1", 0.6, Some(true));
        check("R p99", 2.0, Some(true));
        check("W/L2 ", 0.25, Some(false));
        check("H10000/H10", 1.2, Some(true));
        check("P", 25_000.0, Some(true));
        check("W/L2rsa", 2.0, None);
        check("Wplain/L2", 0.5, None);
    }

    #[test]
    fn the_table_shows_every_workload_and_target() {
        let table = report().markdown();
        for needle in [
            "| L1 |",
            "| H10000 |",
            "| P |",
            "25,000 events/s",
            "| W/L2 (throughput) | 0.25 | ≥ 0.5 | **no** |",
        ] {
            assert!(table.contains(needle), "{needle} missing from\n{table}");
        }
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
