//! The benchmark still runs: a quick pass of scenarios 1-4 with one trial, for ha-agent alone.
//! Its figures are never asserted (speed goals live in `cargo xtask bench`, not in tests).

use std::time::Duration;

use ha_bench::{Only, Options, Scenario, System};

#[test]
fn quick_benchmark_runs_and_reports() {
    ha_tests::require_root();
    let options = Options {
        trials: 1,
        interval: Duration::from_millis(100),
        soak: Duration::ZERO,
        cost_window: Duration::ZERO,
        quick: true,
        systems: vec![System::HaAgent],
        agent_flags: Vec::new(),
        hbtool: None,
        only: Only::All,
    };
    let report = ha_bench::run(&options, None, None, &mut |_| {}).expect("the quick benchmark runs");
    for &scenario in Scenario::QUICK {
        let row = report.row(scenario).expect("every scenario has a row");
        let summary = row.of(System::HaAgent).unwrap_or_else(|| panic!("{scenario:?} was not measured"));
        assert_eq!(summary.samples.len(), 1, "{scenario:?}");
    }
    assert!(report.table().contains("1 link cut: outage"));
    let json = report.to_json();
    assert_eq!(json["scenarios"].as_array().map(Vec::len), Some(report.rows.len()));
    let chart = std::env::temp_dir().join(format!("ha-bench-chart-{}.png", std::process::id()));
    ha_bench::chart::draw(&report, &chart).expect("the chart is drawn");
    let size = std::fs::metadata(&chart).map_or(0, |m| m.len());
    std::fs::remove_file(&chart).ok();
    assert!(size > 1000, "the chart is a real PNG ({size} bytes)");
}
