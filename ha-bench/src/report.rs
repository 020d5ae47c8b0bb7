//! The benchmark's results: a [`Summary`] per scenario and system, the printed table and the JSON.

use std::{collections::BTreeMap, fmt::Write as _, fs};

use serde_json::{json, Value};

use crate::{Only, Options, Scenario, System};

/// Everything one system measured: the samples of each scenario.
#[derive(Clone, Debug, Default)]
pub struct Measured(BTreeMap<Scenario, Vec<f64>>);

impl Measured {
    /// Adds one sample of `scenario`.
    pub fn push(&mut self, scenario: Scenario, value: f64) {
        self.0.entry(scenario).or_default().push(value);
    }

    /// The samples of `scenario`, empty if it was not measured.
    #[must_use]
    pub fn samples(&self, scenario: Scenario) -> &[f64] {
        self.0.get(&scenario).map_or(&[], Vec::as_slice)
    }
}

/// Median, 95th percentile and maximum of a sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The sample, as measured.
    pub samples: Vec<f64>,
    /// Median.
    pub median: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// Maximum.
    pub max: f64,
}

impl Summary {
    /// Summarises a non-empty sample.
    pub fn of(samples: Vec<f64>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]) };
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        Some(Self { median, p95: sorted[rank - 1], max: sorted[n - 1], samples })
    }

    fn to_json(&self) -> Value {
        json!({ "median": self.median, "p95": self.p95, "max": self.max, "samples": self.samples })
    }
}

/// One row of the report: a scenario's figure for each system.
#[derive(Clone, Debug)]
pub struct Row {
    /// What the row measures.
    pub scenario: Scenario,
    /// Per system, in `Options::systems` order.
    pub results: Vec<(System, Option<Summary>)>,
}

impl Row {
    /// The figure of `system`, if measured.
    pub fn of(&self, system: System) -> Option<&Summary> {
        self.results.iter().find(|(s, _)| *s == system).and_then(|(_, summary)| summary.as_ref())
    }

    /// ha-agent's median over keepalived's, when both are measured and keepalived's is not 0.
    pub fn ratio(&self) -> Option<f64> {
        let ours = self.of(System::HaAgent)?.median;
        let theirs = self.of(System::Keepalived)?.median;
        (theirs > 0.0).then(|| ours / theirs)
    }
}

/// The whole run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The options it ran with.
    pub options: Options,
    /// The rows, in scenario order.
    pub rows: Vec<Row>,
}

impl Report {
    /// Builds the report from what each system measured, in `options.systems` order.
    #[must_use]
    pub fn new(options: &Options, measured: &[(System, Measured)]) -> Self {
        let rows = Scenario::ALL
            .iter()
            .map(|&scenario| Row {
                scenario,
                results: measured
                    .iter()
                    .map(|(system, m)| (*system, Summary::of(m.samples(scenario).to_vec())))
                    .collect(),
            })
            .collect();
        Self { options: options.clone(), rows }
    }

    /// The row of `scenario`.
    #[must_use]
    pub fn row(&self, scenario: Scenario) -> Option<&Row> {
        self.rows.iter().find(|row| row.scenario == scenario)
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = format!(
            "interval {} ms, {} trials per outage scenario; outage = the client's longest gap between answers (pinging every 2 ms)\n",
            self.options.interval.as_millis(),
            self.options.trials
        );
        let mut header = format!("{:<42}", "scenario");
        for system in &self.options.systems {
            let _ = write!(header, " {:>30}", format!("{} median / p95 / max", system.name()));
        }
        if self.options.systems.len() > 1 {
            let _ = write!(header, " {:>8}", "ratio");
        }
        out.push_str(&header);
        out.push('\n');
        for row in &self.rows {
            if row.results.iter().all(|(_, s)| s.is_none()) {
                continue;
            }
            let mut line = format!("{:<42}", format!("{} ({})", row.scenario.title(), row.scenario.unit()));
            for system in &self.options.systems {
                let cell = match row.of(*system) {
                    Some(s) => format!("{} / {} / {}", fmt(s.median), fmt(s.p95), fmt(s.max)),
                    None => "-".into(),
                };
                let _ = write!(line, " {cell:>30}");
            }
            if self.options.systems.len() > 1 {
                let _ = write!(line, " {:>8}", row.ratio().map_or("-".into(), |r| format!("{r:.2}")));
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let scenarios: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let mut entry = json!({ "key": row.scenario.key(), "title": row.scenario.title(), "unit": row.scenario.unit() });
                for (system, summary) in &row.results {
                    entry[system.name()] = summary.as_ref().map_or(Value::Null, Summary::to_json);
                }
                entry["ratio"] = row.ratio().map_or(Value::Null, |r| json!(r));
                entry
            })
            .collect();
        json!({
            "interval_ms": self.options.interval.as_millis() as u64,
            "trials": self.options.trials,
            "quick": self.options.quick,
            "soak_s": self.options.soak.as_secs(),
            "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "systems": self.options.systems.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "scenarios": scenarios,
        })
    }
}

impl Report {
    /// Reads back a report written by [`Report::to_json`] (what the chart needs: the options
    /// it ran with and every sample), for drawing a chart from a stored run.
    pub fn from_json(value: &Value) -> anyhow::Result<Self> {
        let systems: Vec<System> = value["systems"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("no \"systems\" list"))?
            .iter()
            .filter_map(|name| {
                [System::HaAgent, System::Keepalived].into_iter().find(|s| Some(s.name()) == name.as_str())
            })
            .collect();
        let options = Options {
            trials: value["trials"].as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or_default(),
            interval: std::time::Duration::from_millis(value["interval_ms"].as_u64().unwrap_or_default()),
            soak: std::time::Duration::from_secs(value["soak_s"].as_u64().unwrap_or_default()),
            cost_window: std::time::Duration::ZERO,
            quick: value["quick"].as_bool().unwrap_or_default(),
            systems,
            agent_flags: Vec::new(),
            hbtool: None,
            only: Only::All,
        };
        let scenarios =
            value["scenarios"].as_array().ok_or_else(|| anyhow::anyhow!("no \"scenarios\" list"))?;
        let rows = Scenario::ALL
            .iter()
            .map(|&scenario| {
                let entry = scenarios.iter().find(|entry| entry["key"] == scenario.key());
                let results = options
                    .systems
                    .iter()
                    .map(|system| {
                        let samples = entry
                            .and_then(|entry| entry[system.name()]["samples"].as_array())
                            .map(|samples| samples.iter().filter_map(Value::as_f64).collect())
                            .unwrap_or_default();
                        (*system, Summary::of(samples))
                    })
                    .collect();
                Row { scenario, results }
            })
            .collect();
        Ok(Self { options, rows })
    }

    /// Whether any outage scenario has a sample (a `--scale-only` or `--cost-only` run has none: no chart).
    #[must_use]
    pub fn has_outages(&self) -> bool {
        self.rows.iter().any(|row| row.scenario.is_outage() && row.results.iter().any(|(_, s)| s.is_some()))
    }
}

fn fmt(value: f64) -> String {
    if value.abs() >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_sample() {
        let s = Summary::of(vec![5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.median, s.p95, s.max), (3.0, 5.0, 5.0));
        let s = Summary::of((1..=20).map(f64::from).collect()).unwrap();
        assert_eq!((s.median, s.p95, s.max), (10.5, 19.0, 20.0));
        assert!(Summary::of(Vec::new()).is_none());
    }

    #[test]
    fn a_report_reads_back_from_its_json() {
        let options = Options {
            trials: 2,
            interval: std::time::Duration::from_millis(100),
            soak: std::time::Duration::from_secs(1),
            cost_window: std::time::Duration::ZERO,
            quick: false,
            systems: vec![System::HaAgent, System::Keepalived],
            agent_flags: Vec::new(),
            hbtool: None,
            only: Only::All,
        };
        let mut ours = Measured::default();
        ours.push(Scenario::LinkCut, 100.0);
        ours.push(Scenario::LinkCut, 120.0);
        let mut theirs = Measured::default();
        theirs.push(Scenario::LinkCut, 300.0);
        let report = Report::new(&options, &[(System::HaAgent, ours), (System::Keepalived, theirs)]);
        let back = Report::from_json(&report.to_json()).unwrap();
        assert_eq!(back.table(), report.table());
        assert!(back.has_outages());
        assert!(!Report::new(&options, &[]).has_outages());
    }
}
