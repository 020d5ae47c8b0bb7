//! The failover benchmark behind `cargo xtask bench`: what a client on the LAN feels when the
//! ACTIVE fails, side by side with keepalived (VRRPv3) at the same advertisement interval.
//!
//! A LAN of three nodes (priorities 100, 150, 200: hosts h1-h3) and a client (h4) that pings the
//! VIP every 2 ms; the outage of a trial is the longest gap between the client's answers.
//! Each figure is a [`Scenario`]: link cut, crash (SIGKILL, and the MACs that answer for the VIP
//! after it), restart (SIGKILL and start again at once), planned stop (SIGTERM), preemption,
//! a stalled STANDBY, 1 % loss, idle CPU, a forged flood; the XDP cost comes from the `xdp_cost`
//! example (BPF_PROG_TEST_RUN); and at scale, 256 groups on 8 nodes (the `scale` module).
//!
//! - [`run`]: the engine that drives the test LAN ([`ha_tests`]) through every scenario;
//! - [`report`]: summaries, the table and the JSON;
//! - [`chart`]: the PNG chart of the outages;
//! - [`keepalived`]: keepalived on a test LAN host, for the comparison.

use std::{path::PathBuf, time::Duration};

pub mod chart;
pub mod keepalived;
pub mod report;
mod run;
mod scale;
mod scenario;

pub use report::{Measured, Report, Row, Summary};
pub use run::run;
pub use scenario::Scenario;

/// Which failover system runs on the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// This project.
    HaAgent,
    /// keepalived, VRRPv3.
    Keepalived,
}

impl System {
    /// Name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::HaAgent => "ha-agent",
            Self::Keepalived => "keepalived",
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Trials per outage scenario.
    pub trials: usize,
    /// Heartbeat / advertisement interval for both systems.
    pub interval: Duration,
    /// How long each loss soak (1 % and 5 %) runs.
    pub soak: Duration,
    /// How long CPU use is measured.
    pub cost_window: Duration,
    /// Only the outage scenarios 1-4.
    pub quick: bool,
    /// The systems to compare, ha-agent first.
    pub systems: Vec<System>,
    /// Extra flags for every ha-agent.
    pub agent_flags: Vec<String>,
    /// The `hbtool` binary, for the forged-flood scenario (skipped without it).
    pub hbtool: Option<PathBuf>,
    /// Every scenario, or one of them alone.
    pub only: Only,
}

/// Which scenarios a run takes: all of them (the quick ones with [`Options::quick`]), or one
/// alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Only {
    /// Every scenario.
    All,
    /// The scale scenario (12): 256 groups on 8 nodes, ha-agent alone.
    Scale,
    /// The CPU scenario (7), every system at once.
    Cost,
}
