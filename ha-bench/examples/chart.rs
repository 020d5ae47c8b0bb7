//! Draws the outage chart of a stored run: `cargo run --release -p ha-bench --example chart --
//! docs/bench-latest.json docs/bench-outage.png` (what `cargo xtask bench --chart` draws at the
//! end of a run, from its `--json` file instead).
use std::path::PathBuf;

use anyhow::Context as _;
use ha_bench::report::Report;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(json), Some(png)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: chart RUN.json CHART.png");
    };
    let text = std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?;
    let report = Report::from_json(&serde_json::from_str(&text)?)?;
    anyhow::ensure!(report.has_outages(), "{} holds no outage samples", json.display());
    ha_bench::chart::draw(&report, &png)
}
