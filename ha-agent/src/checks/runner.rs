//! Runs every check in a task of its own, each on its own interval and bounded by its timeout,
//! and hands the results to the agent's loop over a channel: a slow or hanging check never holds
//! the loop up, nor the other checks.

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;
use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{interval, timeout, Instant, MissedTickBehavior},
};

use super::{probe::Prober, CheckConfig, CheckState};

/// The result of one probe.
#[derive(Clone, Debug)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// `Err` with why it failed.
    pub outcome: Result<(), String>,
    /// How long the probe took.
    pub took: Duration,
}

/// One running check.
struct Running {
    config: CheckConfig,
    state: CheckState,
    /// Why its last probe failed; `None` after a success.
    last_failure: Option<String>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Dropping the probe's future kills an exec check's process group.
        self.task.abort();
    }
}

/// One check as `status` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CheckReport {
    /// Its name.
    pub name: String,
    /// What it probes, in words.
    pub probes: String,
    /// UP or DOWN.
    pub state: String,
    /// Why its last probe failed, if it did.
    pub last_failure: Option<String>,
    /// Its effect: a weight, or FAULT.
    pub effect: String,
    /// Probe interval in ms.
    pub interval_ms: u64,
}

/// The running checks and their states.
pub struct Checks {
    running: BTreeMap<String, Running>,
    results: mpsc::UnboundedReceiver<CheckResult>,
    sender: mpsc::UnboundedSender<CheckResult>,
}

impl Checks {
    /// Starts `configs` on the current tokio runtime; every check starts up.
    #[must_use]
    pub fn start(configs: &[CheckConfig]) -> Self {
        let (sender, results) = mpsc::unbounded_channel();
        let mut checks = Self { running: BTreeMap::new(), results, sender };
        checks.reconfigure(configs);
        checks
    }

    /// Makes `configs` the checks that run: an unchanged check runs on undisturbed, a changed one
    /// is restarted with its state kept (so that a new interval moves nothing), a removed one is
    /// stopped.
    pub fn reconfigure(&mut self, configs: &[CheckConfig]) {
        self.running.retain(|name, _| configs.iter().any(|c| &c.name == name));
        for config in configs {
            let state = match self.running.get(&config.name) {
                Some(running) if running.config == *config => continue,
                Some(running) => running.state,
                None => CheckState::default(),
            };
            let task = tokio::spawn(run(config.clone(), self.sender.clone()));
            self.running.insert(
                config.name.clone(),
                Running { config: config.clone(), state, last_failure: None, task },
            );
        }
    }

    /// The next probe result. Pending forever when no check is configured.
    pub async fn next(&mut self) -> CheckResult {
        // `self.sender` keeps the channel open: `recv` never returns `None`.
        match self.results.recv().await {
            Some(result) => result,
            None => std::future::pending().await,
        }
    }

    /// Records a result; returns true when its check went up or down. A result of a check that
    /// was removed or restarted meanwhile is ignored.
    pub fn record(&mut self, result: &CheckResult) -> bool {
        let Some(running) = self.running.get_mut(&result.name) else { return false };
        running.last_failure = result.outcome.clone().err();
        let (rise, fall) = (running.config.rise, running.config.fall);
        running.state.record(result.outcome.is_ok(), rise, fall)
    }

    /// The config and state of each check, by name.
    pub fn states(&self) -> impl Iterator<Item = (&CheckConfig, CheckState)> {
        self.running.values().map(|running| (&running.config, running.state))
    }

    /// Every check as `status` shows it.
    #[must_use]
    pub fn report(&self) -> Vec<CheckReport> {
        self.running
            .values()
            .map(|running| CheckReport {
                name: running.config.name.clone(),
                probes: running.config.kind.to_string(),
                state: if running.state.up { "UP" } else { "DOWN" }.to_string(),
                last_failure: running.last_failure.clone(),
                effect: match running.config.effect {
                    super::CheckEffect::Weight(weight) => format!("weight {weight:+}"),
                    super::CheckEffect::Fault => "FAULT while down".to_string(),
                },
                interval_ms: u64::try_from(running.config.interval.as_millis()).unwrap_or(u64::MAX),
            })
            .collect()
    }
}

/// One check's task: a probe every interval, each bounded by the timeout.
async fn run(config: CheckConfig, results: mpsc::UnboundedSender<CheckResult>) {
    let prober = Prober::new(&config.kind, config.timeout);
    let mut ticks = interval(config.interval);
    // A probe that takes its whole timeout must not be followed by a burst of catch-up probes.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = Instant::now();
        let outcome = match &prober {
            Ok(prober) => match timeout(config.timeout, prober.probe()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {} ms: killed", config.timeout.as_millis())),
            },
            Err(err) => Err(err.clone()),
        };
        let result = CheckResult { name: config.name.clone(), outcome, took: started.elapsed() };
        if results.send(result).is_err() {
            return;
        }
    }
}
