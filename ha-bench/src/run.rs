use std::{
    fs,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::Value;

use ha_tests::{longest_gap_ms, wait_for, Agent, Lan, Ports, Prober, VipMonitor, VIP, VIP_CIDR};

use crate::{keepalived::Keepalived, Measured, Only, Options, Report, Scenario, System};

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

    /// CPU time used so far by all its processes.
    fn cpu_time(&self) -> Duration {
        self.pids().into_iter().map(cpu_time_of).sum()
    }
}

/// CPU time process `pid` used so far (user + system, all threads), from
/// /proc/PID/task/*/schedstat.
pub(crate) fn cpu_time_of(pid: u32) -> Duration {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let mut total = 0u64;
    for task in tasks.filter_map(Result::ok) {
        if let Ok(text) = fs::read_to_string(task.path().join("schedstat")) {
            total += text.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
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

    /// CPU time used so far by the ACTIVE (TOP), the least worthy STANDBY (LOW) and the STANDBY
    /// next in line (NEXT), in that order.
    fn role_cpu_times(&mut self) -> anyhow::Result<[Duration; 3]> {
        Ok([self.node(TOP)?.cpu_time(), self.node(LOW)?.cpu_time(), self.node(NEXT)?.cpu_time()])
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
    let fraction = f64::from(nanos.wrapping_mul(2_654_435_761) % 1_000_000) / 1_000_000.0;
    interval.mul_f64(fraction)
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
    let mut measured = Measured::default();
    fleet.restore()?;

    for trial in 0..options.trials {
        log(&format!(
            "{}: trial {}/{} (link cut, crash, restart, planned stop, preemption)",
            system.name(),
            trial + 1,
            options.trials
        ));
        let (outage, takeover) = measure(&mut fleet, |f| f.lan.cut(TOP), |lan| lan.holds_vip(NEXT))?;
        measured.push(Scenario::LinkCut, outage);
        measured.push(Scenario::LinkCutTakeover, takeover);
        fleet.restore()?;

        let (outage, takeover) = measure(
            &mut fleet,
            |f| {
                f.take(TOP)?.signal_all(libc::SIGKILL);
                Ok(())
            },
            |lan| lan.holds_vip(NEXT),
        )?;
        measured.push(Scenario::Crash, outage);
        measured.push(Scenario::CrashTakeover, takeover);
        // The dead node still has the VIP on its interface: does it still answer for it?
        thread::sleep(options.interval * 4);
        measured.push(Scenario::CrashMacs, lan.macs_answering_for_vip(CLIENT)?.len() as f64);
        fleet.restore()?;

        let monitor = VipMonitor::start(&lan, PRIORITIES.len())?;
        let (outage, _) = measure(
            &mut fleet,
            |f| {
                f.take(TOP)?.signal_all(libc::SIGKILL);
                f.start(TOP)
            },
            |lan| lan.holds_vip(TOP),
        )?;
        measured.push(Scenario::RestartOutage, outage);
        measured.push(Scenario::RestartMoves, monitor.stop()? as f64);
        fleet.restore()?;

        let (outage, _) =
            measure(&mut fleet, |f| f.take(TOP)?.terminate(), |lan| lan.vip_holders() == [NEXT])?;
        measured.push(Scenario::PlannedStop, outage);
        // The LAN now runs without TOP: its return is the preemption trial.
        let (outage, _) = measure(&mut fleet, |f| f.start(TOP), |lan| lan.vip_holders() == [TOP])?;
        measured.push(Scenario::Preemption, outage);
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
        measured.push(Scenario::Stall, monitor.stop()? as f64);
        fleet.restore()?;
    }

    for (scenario, per_mille) in [(Scenario::Loss, 10), (Scenario::Loss5, 50)] {
        log(&format!("{}: {} % loss for {:?}", system.name(), per_mille / 10, options.soak));
        measured.push(scenario, soak(&lan, options.soak, per_mille)? as f64);
        fleet.restore()?;
    }

    Ok(measured)
}

/// How many windows the CPU window is cut into: each role's figure is the median of its windows,
/// which one short spell of the machine moves less than a single long window.
const COST_WINDOWS: u32 = 6;

/// Scenario 7 for every system at once: each on a LAN of its own with its ports threaded (only
/// the daemons' own work: their sends end at their interfaces, as a NIC's would; see `Ports`),
/// and measured over the same windows. A slow spell of the machine (a VM's neighbours, its
/// timers) then falls on every system alike, where windows taken each after its own system's
/// scenarios, tens of minutes apart, caught one system in a spell and not the other.
fn cost_scenario(
    options: &Options,
    all: &mut [(System, Measured)],
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let names = all.iter().map(|(system, _)| system.name()).collect::<Vec<_>>().join(" and ");
    log(&format!("{names} at once: CPU over {:?} in {COST_WINDOWS} windows", options.cost_window));
    let lans = all
        .iter()
        .map(|_| Lan::with_ports("cost", PRIORITIES.len() + 2, Ports::Threaded))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut fleets: Vec<Fleet<'_>> =
        lans.iter().zip(all.iter()).map(|(lan, &(system, _))| Fleet::new(lan, system, options)).collect();
    for fleet in &mut fleets {
        fleet.restore()?;
    }
    thread::sleep(Duration::from_secs(1));
    let window = options.cost_window / COST_WINDOWS;
    let scenarios = [Scenario::CpuActive, Scenario::CpuStandby, Scenario::CpuNext];
    for _ in 0..COST_WINDOWS {
        let before = fleets.iter_mut().map(Fleet::role_cpu_times).collect::<anyhow::Result<Vec<_>>>()?;
        thread::sleep(window);
        let after = fleets.iter_mut().map(Fleet::role_cpu_times).collect::<anyhow::Result<Vec<_>>>()?;
        for (((_, measured), before), after) in all.iter_mut().zip(before).zip(after) {
            for ((scenario, before), after) in scenarios.into_iter().zip(before).zip(after) {
                measured.push(
                    scenario,
                    after.saturating_sub(before).as_secs_f64() / window.as_secs_f64() * 100.0,
                );
            }
        }
    }
    Ok(())
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
        measured.push(Scenario::FloodRate, rate(attacker)?);
        measured.push(Scenario::FloodTransitions, monitor.stop()? as f64);
        fleet.restore()?;
        let attacker = flood(2.5)?;
        let (outage, takeover) = measure(fleet, |f| f.lan.cut(TOP), |lan| lan.holds_vip(NEXT))?;
        rate(attacker)?;
        measured.push(Scenario::FloodLinkCut, outage);
        measured.push(Scenario::FloodLinkCutTakeover, takeover);
        fleet.restore()?;
    }
    Ok(())
}

/// `per_mille` of the frames the switch forwards dropped at random for `duration`; returns how
/// many times the VIP was added anywhere meanwhile (each a false transition).
fn soak(lan: &Lan, duration: Duration, per_mille: u32) -> anyhow::Result<usize> {
    lan.switch_nft(&["add", "table", "bridge", "ha_loss"])?;
    let chain = "{ type filter hook forward priority 0; policy accept; }";
    lan.switch_nft(&["add", "chain", "bridge", "ha_loss", "forward", chain])?;
    let limit = per_mille.to_string();
    lan.switch_nft(&[
        "add", "rule", "bridge", "ha_loss", "forward", "numgen", "random", "mod", "1000", "<", &limit, "drop",
    ])?;
    let monitor = VipMonitor::start(lan, PRIORITIES.len())?;
    thread::sleep(duration);
    let added = monitor.stop()?;
    lan.switch_nft(&["delete", "table", "bridge", "ha_loss"])?;
    Ok(added)
}

/// Runs every scenario for every system. `xdp_cost` is the `xdp_cost` example's binary, if
/// built; `fuzz_cases`, how many fuzz cases the caller ran without a panic, if it did.
pub fn run(
    options: &Options,
    xdp_cost: Option<&Path>,
    fuzz_cases: Option<u64>,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<Report> {
    match options.only {
        Only::Scale => {
            let mut measured = Measured::default();
            crate::scale::run(options, &mut measured, log)?;
            return Ok(Report::new(options, &[(System::HaAgent, measured)]));
        }
        Only::Cost => {
            let mut all: Vec<_> =
                options.systems.iter().map(|&system| (system, Measured::default())).collect();
            cost_scenario(options, &mut all, log)?;
            return Ok(Report::new(options, &all));
        }
        Only::All => {}
    }
    let mut all = Vec::new();
    for &system in &options.systems {
        let mut measured = run_system(system, options, log)?;
        if system == System::HaAgent && !options.quick {
            crate::scale::run(options, &mut measured, log)?;
            if let Some(cases) = fuzz_cases {
                measured.push(Scenario::FuzzCases, cases as f64);
            }
            if let Some(binary) = xdp_cost {
                log("ha-agent: XDP cost through BPF_PROG_TEST_RUN");
                xdp_cost_scenarios(binary, &mut measured)?;
            }
        }
        all.push((system, measured));
    }
    if !options.quick {
        cost_scenario(options, &mut all, log)?;
    }
    Ok(Report::new(options, &all))
}

/// How many times the `xdp_cost` example runs: each figure is the median of its runs, which a
/// slow spell of the machine during one of them (a run 50-100 % above the next) moves less.
const XDP_COST_RUNS: usize = 5;

/// Runs the `xdp_cost` example [`XDP_COST_RUNS`] times and records its figures.
fn xdp_cost_scenarios(binary: &Path, measured: &mut Measured) -> anyhow::Result<()> {
    for _ in 0..XDP_COST_RUNS {
        let output = Command::new(binary).output().context("running the xdp_cost example")?;
        let value: Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("xdp_cost printed {}", String::from_utf8_lossy(&output.stderr)))?;
        for (scenario, field) in [
            (Scenario::XdpValid, "valid_ns"),
            (Scenario::XdpReplayed, "replayed_ns"),
            (Scenario::XdpForged, "forged_ns"),
            (Scenario::XdpForgedTwoKeys, "forged_two_keys_ns"),
            (Scenario::XdpProbeAnswer, "probe_answer_ns"),
        ] {
            measured.push(scenario, value[field].as_f64().unwrap_or(f64::NAN));
        }
    }
    Ok(())
}
