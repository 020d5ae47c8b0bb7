//! `cargo xtask bench`: builds the release agent and the XDP cost probe, runs
//! `ha_bench::run`, prints the table, writes JSON and a PNG chart.

use std::{path::PathBuf, time::Duration};

use anyhow::{anyhow, Context as _};
use clap::Args;
use ha_bench::{Only, Options, System};

use crate::{require_root, run_in_workspace, use_release_agent, workspace};

/// Flags of `cargo xtask bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Trials per outage scenario (default 20, or 3 with --quick).
    #[arg(long)]
    trials: Option<usize>,
    /// Heartbeat interval of ha-agent and advertisement interval of keepalived.
    #[arg(long, default_value = "100ms")]
    interval: String,
    /// Duration of each loss soak (1 % and 5 %).
    #[arg(long, default_value = "5m")]
    soak: String,
    /// Duration of the CPU measurement.
    #[arg(long, default_value = "30s")]
    cost: String,
    /// A few trials of scenarios 1-4 only (what CI runs to check the benchmark still works).
    #[arg(long)]
    quick: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where to draw the PNG chart of the outages.
    #[arg(long, default_value = "target/bench/outage.png")]
    chart: PathBuf,
    /// Leave keepalived out even if it is installed.
    #[arg(long)]
    no_keepalived: bool,
    /// Only scenario 12: 256 groups on 8 nodes (ha-agent alone).
    #[arg(long, conflicts_with = "cost_only")]
    scale_only: bool,
    /// Only scenario 7: idle CPU of every role, every system at once (no chart).
    #[arg(long)]
    cost_only: bool,
    /// An extra flag for every ha-agent, e.g. --agent-flag=--dead-time=250ms (repeatable).
    #[arg(long = "agent-flag", allow_hyphen_values = true)]
    agent_flags: Vec<String>,
}

fn duration(text: &str, what: &str) -> anyhow::Result<Duration> {
    ha_common::parse_duration(text)
        .ok_or_else(|| anyhow!("bad {what} '{text}': expected e.g. 100ms, 30s or 5m"))
}

/// Cases of the decoder-and-verifier fuzz target in a full run.
const FUZZ_CASES: u64 = 1_000_000;

/// Runs the proptest fuzz target over the decoder and the verifier with `cases` cases; returns
/// them once it has passed (a panic fails the whole benchmark).
fn fuzz(cases: u64) -> anyhow::Result<u64> {
    eprintln!("bench: fuzzing the decoder and the verifier with {cases} cases");
    run_in_workspace(
        std::process::Command::new("cargo")
            .args([
                "test",
                "--release",
                "--quiet",
                "--package",
                "ha-common",
                "--lib",
                "fuzz_decode_and_verify",
            ])
            .env("PROPTEST_CASES", cases.to_string()),
    )?;
    Ok(cases)
}

/// Runs the benchmark.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    require_root("bench")?;
    use_release_agent()?;
    eprintln!("building the XDP cost probe and hbtool (release)…");
    run_in_workspace(
        std::process::Command::new("cargo")
            .args(["build", "--release", "--package", "ha-bench", "--example", "xdp_cost"])
            .args(["--package", "ha-tests", "--bin", "hbtool"]),
    )?;
    let xdp_cost = workspace().join("target/release/examples/xdp_cost");
    let hbtool = workspace().join("target/release/hbtool");
    // Fail now rather than after the first half hour of trials.
    for helper in [&xdp_cost, &hbtool] {
        if !helper.is_file() {
            return Err(anyhow!("{} was not built", helper.display()));
        }
    }

    let mut systems = vec![System::HaAgent];
    let keepalived = !args.no_keepalived && ha_bench::keepalived::available();
    if keepalived {
        systems.push(System::Keepalived);
    } else if !args.no_keepalived {
        eprintln!(
            "keepalived is not installed: measuring ha-agent alone (apt-get install keepalived to compare)"
        );
    }
    let options = Options {
        trials: args.trials.unwrap_or(if args.quick { 3 } else { 20 }).max(1),
        interval: duration(&args.interval, "interval")?,
        soak: duration(&args.soak, "soak")?,
        cost_window: duration(&args.cost, "cost")?,
        quick: args.quick,
        systems,
        agent_flags: args.agent_flags.clone(),
        hbtool: Some(hbtool),
        only: if args.scale_only {
            Only::Scale
        } else if args.cost_only {
            Only::Cost
        } else {
            Only::All
        },
    };
    let fuzz_cases = if args.quick || options.only != Only::All { None } else { Some(fuzz(FUZZ_CASES)?) };
    let report =
        ha_bench::run(&options, Some(&xdp_cost), fuzz_cases, &mut |line| eprintln!("bench: {line}"))?;
    println!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.to_json())?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("JSON: {}", path.display());
    }
    let chart = if args.chart.is_absolute() { args.chart.clone() } else { workspace().join(&args.chart) };
    if let Some(dir) = chart.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if !report.has_outages() {
        // A --scale-only or --cost-only run: an empty chart would only overwrite the last real one.
        return Ok(());
    }
    match ha_bench::chart::draw(&report, &chart) {
        Ok(()) => println!("chart: {}", chart.display()),
        Err(err) => eprintln!("bench: no chart: {err:#}"),
    }
    Ok(())
}
