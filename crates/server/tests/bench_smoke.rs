//! The benchmark (`./dev bench`) in smoke mode: every workload for a second on a little data,
//! against this build's `aimc`, so the benchmark cannot rot between the runs that measure.

use std::path::PathBuf;

use secrecy::SecretString;

fn required_env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} must be set: run the suite with ./dev test"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_benchmark_runs_every_workload_and_writes_its_table_and_chart() {
    let out_dir = std::env::temp_dir().join(format!("aimc-bench-smoke-{}", std::process::id()));
    let options = aimc_bench::Options::smoke(
        PathBuf::from(env!("CARGO_BIN_EXE_aimc")),
        out_dir.clone(),
        required_env("AIMC_TEST_DATABASE_URL"),
        required_env("AIMC_VAULT_ADDR"),
        SecretString::from(required_env("AIMC_VAULT_TOKEN")),
    );

    let report = aimc_bench::run(&options)
        .await
        .expect("the smoke run failed");

    let keys: Vec<&str> = report.workloads.iter().map(|w| w.key).collect();
    assert_eq!(
        keys,
        [
            "L1", "L2", "L2rsa", "R", "X", "H10", "H10000", "W", "Wplain", "S10", "S3000",
            "S10x16", "S3000x16"
        ]
    );
    for workload in &report.workloads {
        let m = &workload.measurement;
        assert!(m.operations > 0, "{} did nothing", workload.key);
        assert_eq!(m.errors, 0, "{} had failures", workload.key);
        assert!(
            m.percentiles_us.iter().all(|p| *p > 0.0),
            "{}: {:?}",
            workload.key,
            m.percentiles_us
        );
    }
    // Everything written is replayed, including what the workloads appended, and L3 copies
    // that same log.
    assert!(report.rebuild.events as i64 > report.context.seeded_events);
    assert_eq!(report.bulk_insert.events, report.rebuild.events);
    // K rewraps every credential of the S3000 workspace, and L4 the same secrets.
    assert!(report.rotation.events > 0 && report.rotation.seconds > 0.0);
    assert_eq!(report.raw_rewrap.events, report.rotation.events);
    assert_eq!(report.raw_rewrap_batched.events, report.rotation.events);

    let table = std::fs::read_to_string(out_dir.join("latest.md")).unwrap();
    assert_eq!(table, report.markdown());
    for key in keys.iter().chain(&["P", "L3", "K", "L4", "L4b"]) {
        let row = format!("| {key} |");
        assert!(table.contains(&row), "{row} missing:\n{table}");
    }
    let ratios = report.ratios();
    assert_eq!(ratios.len(), 13);
    for ratio in &ratios {
        let row = format!(
            "| {} | {:.2} | {} |",
            ratio.name,
            ratio.value,
            ratio.goal_text()
        );
        assert!(table.contains(&row), "{row} missing:\n{table}");
    }
    let chart = std::fs::read(out_dir.join("latest.png")).unwrap();
    assert!(
        chart.starts_with(b"\x89PNG\r\n\x1a\n") && chart.len() > 10_000,
        "not a chart"
    );
    std::fs::remove_dir_all(out_dir).unwrap();
}
