//! The failover benchmark behind `cargo xtask bench`: what a client on the LAN feels when the
//! ACTIVE fails, side by side with keepalived (VRRPv3) at the same advertisement interval.
//!
//! A LAN of three nodes (priorities 100, 150, 200: hosts h1-h3) and a client (h4) that pings the
//! VIP every 2 ms; the outage of a trial is the longest gap between the client's answers.
//! Scenarios: link cut, crash (SIGKILL), planned stop (SIGTERM), preemption, a stalled STANDBY,
//! 1 % loss, idle CPU; the XDP cost comes from the `xdp_cost` example (BPF_PROG_TEST_RUN).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::{
    keepalived::Keepalived, longest_gap_ms, wait_for, Agent, Lan, Prober, VipMonitor, VIP, VIP_CIDR,
};

const PRIORITIES: [u8; 3] = [100, 150, 200];
/// The most worthy node (priority 200), ACTIVE at every trial's start.
const TOP: usize = 2;
/// The node that takes over from TOP (priority 150).
const NEXT: usize = 1;
/// A STANDBY that is not the next in line (priority 100).
const LOW: usize = 0;
const CLIENT: usize = 3;
/// The attacker that floods forged heartbeats (a host of its own, so the client's link is free).
const ATTACKER: usize = 4;
/// The client's ping interval: 2 ms, the resolution of every outage figure.
const PING_INTERVAL: &str = "0.002";
/// Time the prober runs before and after each event, so that the gap is fully inside its window.
const MARGIN: Duration = Duration::from_millis(300);

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
    /// How long the 1 % loss soak runs.
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
}

/// One daemon on a node.
enum Daemon {
    Agent(Agent),
    Keepalived(Keepalived),
}

impl Daemon {
    fn pids(&self) -> Vec<u32> {
        match self {
            Self::Agent(agent) => agent.pid().into_iter().collect(),
            Self::Keepalived(keepalived) => keepalived.pids(),
        }
    }

    /// Asks the daemon to stop (SIGTERM to its main process).
    fn terminate(&mut self) -> anyhow::Result<()> {
        match self {
            Self::Agent(agent) => {
                agent.signal(libc::SIGTERM);
                agent.wait_exit(Duration::from_secs(5)).map(drop)
            }
            Self::Keepalived(keepalived) => {
                keepalived.signal(libc::SIGTERM);
                keepalived.wait_exit(Duration::from_secs(5))
            }
        }
    }

    /// Sends `signal` to every process of the daemon.
    fn signal_all(&self, signal: i32) {
        for pid in self.pids() {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// CPU time used so far (user + system, all threads), from /proc/PID/task/*/schedstat.
    fn cpu_time(&self) -> Duration {
        let mut total = 0u64;
        for pid in self.pids() {
            let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.filter_map(Result::ok) {
                if let Ok(text) = fs::read_to_string(task.path().join("schedstat")) {
                    total +=
                        text.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
                }
            }
        }
        Duration::from_nanos(total)
    }
}

/// The three nodes of one system on one LAN.
struct Fleet<'a> {
    lan: &'a Lan,
    system: System,
    options: &'a Options,
    nodes: Vec<Option<Daemon>>,
}

impl<'a> Fleet<'a> {
    fn new(lan: &'a Lan, system: System, options: &'a Options) -> Self {
        Self { lan, system, options, nodes: (0..PRIORITIES.len()).map(|_| None).collect() }
    }

    fn start(&mut self, host: usize) -> anyhow::Result<()> {
        let priority = PRIORITIES[host];
        let daemon = match self.system {
            System::HaAgent => {
                let interval = format!("{}ms", self.options.interval.as_millis());
                let mut flags = vec!["--interval", interval.as_str()];
                flags.extend(self.options.agent_flags.iter().map(String::as_str));
                Daemon::Agent(self.lan.start_agent(host, priority, &flags)?)
            }
            System::Keepalived => {
                Daemon::Keepalived(Keepalived::start(self.lan, host, priority, self.options.interval)?)
            }
        };
        self.nodes[host] = Some(daemon);
        Ok(())
    }

    /// Removes the daemon of `host` from the fleet, for a trial that stops or kills it.
    fn take(&mut self, host: usize) -> anyhow::Result<Daemon> {
        self.nodes[host].take().with_context(|| format!("no daemon runs on h{}", host + 1))
    }

    fn node(&mut self, host: usize) -> anyhow::Result<&mut Daemon> {
        self.nodes[host].as_mut().with_context(|| format!("no daemon runs on h{}", host + 1))
    }

    /// Brings the LAN back to the starting point: every daemon running, every link up, TOP the
    /// only holder, the client's ARP cache empty and its ping answered.
    fn restore(&mut self) -> anyhow::Result<()> {
        for host in 0..self.nodes.len() {
            self.lan.heal(host)?;
        }
        for host in 0..self.nodes.len() {
            if self.nodes[host].is_none() {
                self.start(host)?;
            }
        }
        if wait_for(Duration::from_secs(10), "settling", || self.lan.vip_holders() == [TOP]).is_err() {
            // A daemon that was killed may have left its copy (keepalived keeps it).
            for host in self.lan.vip_holders().into_iter().filter(|&h| h != TOP) {
                let _ = self.lan.hosts[host].ns.ip(&["addr", "del", VIP_CIDR, "dev", "eth0"]);
            }
            wait_for(Duration::from_secs(10), "the most worthy node as the only holder", || {
                self.lan.vip_holders() == [TOP]
            })?;
        }
        let client = &self.lan.hosts[CLIENT].ns;
        client.ip(&["neigh", "flush", "dev", "eth0"])?;
        wait_for(Duration::from_secs(5), "the client reaching the VIP", || {
            client.exec("ping", &["-c", "1", "-W", "0.2", &VIP.to_string()]).is_ok_and(|o| o.status.success())
        })?;
        thread::sleep(MARGIN);
        Ok(())
    }
}

/// A pseudo-random duration below `interval` (the clock's nanoseconds are random enough here).
fn random_phase(interval: Duration) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let fraction = (nanos.wrapping_mul(2_654_435_761) % 1_000_000) as f64 / 1_000_000.0;
    interval.mul_f64(fraction)
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
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
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
    /// Machine name (JSON key).
    pub key: &'static str,
    /// What is measured, for the table.
    pub title: &'static str,
    /// Unit of the figures.
    pub unit: &'static str,
    /// Whether this row is an outage in ms (drawn on the chart).
    pub outage: bool,
    /// Per system, in `Options::systems` order.
    pub results: Vec<(System, Option<Summary>)>,
}

impl Row {
    fn new(key: &'static str, title: &'static str, unit: &'static str, outage: bool) -> Self {
        Self { key, title, unit, outage, results: Vec::new() }
    }

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

/// Everything one system measured, keyed like the rows.
type Measured = Vec<(&'static str, Vec<f64>)>;

fn push(measured: &mut Measured, key: &'static str, value: f64) {
    match measured.iter_mut().find(|(k, _)| *k == key) {
        Some((_, values)) => values.push(value),
        None => measured.push((key, vec![value])),
    }
}

/// Runs the event `act` while the client pings; returns the outage and how long after the event
/// `settled` first held (the takeover time).
fn measure(
    fleet: &mut Fleet<'_>,
    act: impl FnOnce(&mut Fleet<'_>) -> anyhow::Result<()>,
    settled: impl Fn(&Lan) -> bool,
) -> anyhow::Result<(f64, f64)> {
    let prober = Prober::start_every(fleet.lan, CLIENT, PING_INTERVAL)?;
    // A random phase within one interval: the outage depends on where in the heartbeat cycle the
    // event falls, and the trials must sample every phase, not the same one twenty times.
    thread::sleep(MARGIN + random_phase(fleet.options.interval));
    let start = Instant::now();
    act(fleet)?;
    let lan = fleet.lan;
    wait_for(Duration::from_secs(10), "the expected state", || settled(lan))?;
    let takeover = start.elapsed().as_secs_f64() * 1000.0;
    thread::sleep(MARGIN);
    let outage = longest_gap_ms(&prober.stop()?);
    Ok((outage, takeover))
}

fn run_system(system: System, options: &Options, log: &mut dyn FnMut(&str)) -> anyhow::Result<Measured> {
    let lan = Lan::new("bench", PRIORITIES.len() + 2)?;
    let mut fleet = Fleet::new(&lan, system, options);
    let mut measured = Measured::new();
    fleet.restore()?;

    for trial in 0..options.trials {
        log(&format!(
            "{}: trial {}/{} (link cut, crash, planned stop, preemption)",
            system.name(),
            trial + 1,
            options.trials
        ));
        let (outage, takeover) =
            measure(&mut fleet, |f| f.lan.cut(TOP), |lan| lan.vip_holders().contains(&NEXT))?;
        push(&mut measured, "link_cut", outage);
        push(&mut measured, "link_cut_takeover", takeover);
        fleet.restore()?;

        let (outage, takeover) = measure(
            &mut fleet,
            |f| {
                f.take(TOP)?.signal_all(libc::SIGKILL);
                Ok(())
            },
            |lan| lan.vip_holders().contains(&NEXT),
        )?;
        push(&mut measured, "crash", outage);
        push(&mut measured, "crash_takeover", takeover);
        fleet.restore()?;

        let (outage, _) =
            measure(&mut fleet, |f| f.take(TOP)?.terminate(), |lan| lan.vip_holders() == [NEXT])?;
        push(&mut measured, "planned_stop", outage);
        // The LAN now runs without TOP: its return is the preemption trial.
        let (outage, _) = measure(&mut fleet, |f| f.start(TOP), |lan| lan.vip_holders() == [TOP])?;
        push(&mut measured, "preemption", outage);
        fleet.restore()?;
    }
    if options.quick {
        return Ok(measured);
    }
    if system == System::HaAgent {
        if let Some(hbtool) = &options.hbtool {
            flood_scenario(&mut fleet, options, hbtool, &mut measured, log)?;
        }
    }

    let stalls = options.trials.clamp(1, 5);
    for trial in 0..stalls {
        log(&format!("{}: stall {}/{stalls}: STANDBY stopped for 2 s", system.name(), trial + 1));
        let monitor = VipMonitor::start(&lan, PRIORITIES.len())?;
        fleet.node(NEXT)?.signal_all(libc::SIGSTOP);
        thread::sleep(Duration::from_secs(2));
        fleet.node(NEXT)?.signal_all(libc::SIGCONT);
        thread::sleep(Duration::from_millis(1500));
        push(&mut measured, "stall", monitor.stop()? as f64);
        fleet.restore()?;
    }

    log(&format!("{}: 1 % loss for {:?}", system.name(), options.soak));
    run_nft(&lan, &["add", "table", "bridge", "ha_loss"])?;
    run_nft(
        &lan,
        &[
            "add",
            "chain",
            "bridge",
            "ha_loss",
            "forward",
            "{ type filter hook forward priority 0; policy accept; }",
        ],
    )?;
    run_nft(
        &lan,
        &[
            "add", "rule", "bridge", "ha_loss", "forward", "numgen", "random", "mod", "1000", "<", "10",
            "drop",
        ],
    )?;
    let monitor = VipMonitor::start(&lan, PRIORITIES.len())?;
    thread::sleep(options.soak);
    push(&mut measured, "loss", monitor.stop()? as f64);
    run_nft(&lan, &["delete", "table", "bridge", "ha_loss"])?;
    fleet.restore()?;

    log(&format!("{}: CPU over {:?}", system.name(), options.cost_window));
    let before = [fleet.node(TOP)?.cpu_time(), fleet.node(LOW)?.cpu_time()];
    thread::sleep(options.cost_window);
    let after = [fleet.node(TOP)?.cpu_time(), fleet.node(LOW)?.cpu_time()];
    let percent = |i: usize| (after[i] - before[i]).as_secs_f64() / options.cost_window.as_secs_f64() * 100.0;
    push(&mut measured, "cpu_active", percent(0));
    push(&mut measured, "cpu_standby", percent(1));
    Ok(measured)
}

/// A flood of forged heartbeats (highest worthiness, wrong key) from the attacker host, as fast
/// as it can send: the false transitions it causes on a quiet LAN, and a link cut during it.
fn flood_scenario(
    fleet: &mut Fleet<'_>,
    options: &Options,
    hbtool: &Path,
    measured: &mut Measured,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let lan = fleet.lan;
    let port = ha_common::DEFAULT_PORT.to_string();
    let flood = |seconds: f64| -> anyhow::Result<std::process::Child> {
        Ok(lan.hosts[ATTACKER]
            .ns
            .command(hbtool)
            .args(["flood", "eth0", &port, &seconds.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()?)
    };
    let rate = |child: std::process::Child| -> anyhow::Result<f64> {
        let output = child.wait_with_output()?;
        let value: Value = serde_json::from_slice(&output.stdout).context("hbtool flood output")?;
        Ok(value["sent"].as_f64().unwrap_or(0.0) / value["seconds"].as_f64().unwrap_or(1.0))
    };
    let trials = options.trials.clamp(1, 5);
    for trial in 0..trials {
        log(&format!("ha-agent: forged flood {}/{trials}: quiet LAN, then a link cut", trial + 1));
        let monitor = VipMonitor::start(lan, PRIORITIES.len())?;
        let attacker = flood(2.0)?;
        push(measured, "flood_rate", rate(attacker)?);
        push(measured, "flood_transitions", monitor.stop()? as f64);
        fleet.restore()?;
        let attacker = flood(2.5)?;
        let (outage, takeover) = measure(fleet, |f| f.lan.cut(TOP), |lan| lan.vip_holders().contains(&NEXT))?;
        rate(attacker)?;
        push(measured, "flood_link_cut", outage);
        push(measured, "flood_link_cut_takeover", takeover);
        fleet.restore()?;
    }
    Ok(())
}

fn run_nft(lan: &Lan, args: &[&str]) -> anyhow::Result<()> {
    let status =
        lan.switch.command("nft").args(args).status().context("running nft (apt-get install nftables)")?;
    if !status.success() {
        bail!("nft {} failed", args.join(" "));
    }
    Ok(())
}

/// The rows of the report, in order.
fn rows() -> Vec<Row> {
    vec![
        Row::new("link_cut", "1 link cut: outage", "ms", true),
        Row::new("link_cut_takeover", "1 link cut: takeover", "ms", false),
        Row::new("crash", "2 crash: outage", "ms", true),
        Row::new("crash_takeover", "2 crash: takeover", "ms", false),
        Row::new("planned_stop", "3 planned stop: outage", "ms", true),
        Row::new("preemption", "4 preemption: outage", "ms", true),
        Row::new("stall", "5 STANDBY stalled 2 s: false transitions", "count", false),
        Row::new("loss", "6 1% loss: false transitions", "count", false),
        Row::new("cpu_active", "7 CPU of the ACTIVE", "% core", false),
        Row::new("cpu_standby", "7 CPU of a STANDBY", "% core", false),
        Row::new("xdp_valid", "8 XDP per valid signed heartbeat", "ns", false),
        Row::new("xdp_replayed", "8 XDP per replayed heartbeat", "ns", false),
        Row::new("xdp_forged", "8 XDP per forged heartbeat", "ns", false),
        Row::new("xdp_forged_two_keys", "8 XDP per forged, during a key rollout", "ns", false),
        Row::new("flood_rate", "9 forged flood: rate sent", "pkt/s", false),
        Row::new("flood_transitions", "9 forged flood: false transitions", "count", false),
        Row::new("flood_link_cut", "9 link cut under forged flood: outage", "ms", true),
        Row::new("flood_link_cut_takeover", "9 link cut under forged flood: takeover", "ms", false),
        Row::new("fuzz_cases", "10 fuzz decode+verify: cases without panic", "cases", false),
    ]
}

/// Runs every scenario for every system. `xdp_cost` is the `xdp_cost` example's binary, if
/// built; `fuzz_cases`, how many fuzz cases the caller ran without a panic, if it did.
pub fn run(
    options: &Options,
    xdp_cost: Option<&Path>,
    fuzz_cases: Option<u64>,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<Report> {
    let mut rows = rows();
    for &system in &options.systems {
        let mut measured = run_system(system, options, log)?;
        if system == System::HaAgent && !options.quick {
            if let Some(cases) = fuzz_cases {
                push(&mut measured, "fuzz_cases", cases as f64);
            }
            if let Some(binary) = xdp_cost {
                log("ha-agent: XDP cost through BPF_PROG_TEST_RUN");
                let output = Command::new(binary).output().context("running the xdp_cost example")?;
                let value: Value = serde_json::from_slice(&output.stdout).with_context(|| {
                    format!("xdp_cost printed {}", String::from_utf8_lossy(&output.stderr))
                })?;
                for (key, field) in [
                    ("xdp_valid", "valid_ns"),
                    ("xdp_replayed", "replayed_ns"),
                    ("xdp_forged", "forged_ns"),
                    ("xdp_forged_two_keys", "forged_two_keys_ns"),
                ] {
                    push(&mut measured, key, value[field].as_f64().unwrap_or(f64::NAN));
                }
            }
        }
        for row in &mut rows {
            let samples =
                measured.iter().find(|(k, _)| *k == row.key).map(|(_, v)| v.clone()).unwrap_or_default();
            row.results.push((system, Summary::of(samples)));
        }
    }
    Ok(Report { options: options.clone(), rows })
}

impl Report {
    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = format!(
            "interval {} ms, {} trials per outage scenario; outage = the client's longest gap between answers (pinging every 2 ms)\n",
            self.options.interval.as_millis(),
            self.options.trials
        );
        let mut header = format!("{:<42}", "scenario");
        for system in &self.options.systems {
            header.push_str(&format!(" {:>30}", format!("{} median / p95 / max", system.name())));
        }
        if self.options.systems.len() > 1 {
            header.push_str(&format!(" {:>8}", "ratio"));
        }
        out.push_str(&header);
        out.push('\n');
        for row in &self.rows {
            if row.results.iter().all(|(_, s)| s.is_none()) {
                continue;
            }
            let mut line = format!("{:<42}", format!("{} ({})", row.title, row.unit));
            for system in &self.options.systems {
                let cell = match row.of(*system) {
                    Some(s) => format!("{} / {} / {}", fmt(s.median), fmt(s.p95), fmt(s.max)),
                    None => "-".into(),
                };
                line.push_str(&format!(" {cell:>30}"));
            }
            if self.options.systems.len() > 1 {
                line.push_str(&format!(" {:>8}", row.ratio().map_or("-".into(), |r| format!("{r:.2}"))));
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
                let mut entry = json!({ "key": row.key, "title": row.title, "unit": row.unit });
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
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "systems": self.options.systems.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "scenarios": scenarios,
        })
    }
}

fn fmt(value: f64) -> String {
    if value.abs() >= 100.0 || value == value.trunc() {
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
}
