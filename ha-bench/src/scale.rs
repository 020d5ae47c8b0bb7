//! Scenario 12, scale: 256 VIP groups on 8 nodes, each node in every group, one XDP program per
//! node. How long from the first agent's start until every group has exactly one holder (its
//! most worthy node), the agent CPU of each node once settled, and the XDP program's time per
//! frame as the kernel counts it under that load (`kernel.bpf_stats_enabled`).
//!
//! The ACTIVEs are spread: in group `g` node `n` has priority `100 + 10 × ((g + n) mod 8)`, so
//! each node is ACTIVE in 32 groups and STANDBY in 224. VIPs: 198.51.100.1-254 and
//! 192.0.2.201-202, one per group.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    net::Ipv4Addr,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::Value;

use ha_tests::{Agent, Lan, Ports};

use crate::{Measured, Options, Scenario};

/// Groups per node.
pub const GROUPS: u32 = 256;
/// Nodes, each in every group.
pub const NODES: usize = 8;

/// The VIP of group `group` (1-based).
fn vip(group: u32) -> Ipv4Addr {
    match group {
        1..=254 => Ipv4Addr::new(198, 51, 100, group as u8),
        _ => Ipv4Addr::new(192, 0, 2, 200 + (group - 254) as u8),
    }
}

/// Node `node`'s priority in `group`.
fn priority(group: u32, node: usize) -> u8 {
    100 + 10 * ((group as usize + node) % NODES) as u8
}

/// The node most worthy in `group`: the one that must hold its VIP.
fn top(group: u32) -> usize {
    (0..NODES).max_by_key(|&node| priority(group, node)).expect("at least one node")
}

/// Node `node`'s config file: every group, with its priority in each.
fn config(lan: &Lan, node: usize) -> anyhow::Result<String> {
    let mut text = String::new();
    for group in 1..=GROUPS {
        let (vip, priority) = (vip(group), priority(group, node));
        let _ = write!(text, "[[group]]\nid = {group}\nvips = ['{vip}/24']\npriority = {priority}\n\n");
    }
    let path = lan.dir.join(format!("scale-h{}.toml", node + 1));
    fs::write(&path, text)?;
    Ok(path.to_string_lossy().into_owned())
}

/// The hosts holding each group's VIP now.
fn holders(lan: &Lan) -> anyhow::Result<HashMap<Ipv4Addr, Vec<usize>>> {
    let mut holders: HashMap<Ipv4Addr, Vec<usize>> = HashMap::new();
    for (node, host) in lan.hosts.iter().enumerate().take(NODES) {
        let text = host.ns.ip(&["-o", "-4", "addr", "show", "dev", "eth0"])?;
        for addr in
            text.split_whitespace().filter_map(|word| word.split('/').next()?.parse::<Ipv4Addr>().ok())
        {
            holders.entry(addr).or_default().push(node);
        }
    }
    Ok(holders)
}

/// How many groups are not held by their most worthy node alone.
fn unsettled(holders: &HashMap<Ipv4Addr, Vec<usize>>) -> usize {
    (1..=GROUPS).filter(|&group| holders.get(&vip(group)).is_none_or(|nodes| nodes != &[top(group)])).count()
}

/// Run time and run count of every loaded `ha_xdp` program, summed (`bpftool prog show`).
fn xdp_run_totals() -> anyhow::Result<(u64, u64)> {
    let output = Command::new("bpftool").args(["prog", "show", "--json"]).output().context("bpftool")?;
    let programs: Value = serde_json::from_slice(&output.stdout).context("bpftool prog show --json")?;
    let mut totals = (0, 0);
    for program in programs.as_array().into_iter().flatten().filter(|p| p["name"] == "ha_xdp") {
        totals.0 += program["run_time_ns"].as_u64().unwrap_or(0);
        totals.1 += program["run_cnt"].as_u64().unwrap_or(0);
    }
    Ok(totals)
}

/// Turns the kernel's per-program run-time statistics on while it lives, and back to what they
/// were when dropped (a global sysctl, not a namespace's).
struct BpfStats {
    before: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> anyhow::Result<Self> {
        let before = fs::read_to_string(BPF_STATS).context("reading kernel.bpf_stats_enabled")?;
        fs::write(BPF_STATS, "1").context("enabling kernel.bpf_stats_enabled")?;
        Ok(Self { before })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, self.before.trim());
    }
}

/// Runs scenario 12 and adds its figures to `measured`: the time to settle, each node's CPU and
/// the XDP time per frame.
pub fn run(options: &Options, measured: &mut Measured, log: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    log(&format!("ha-agent: scale: {GROUPS} groups x {NODES} nodes, starting"));
    let lan = Lan::with_ports("scale", NODES, Ports::Threaded)?;
    let configs = (0..NODES).map(|node| config(&lan, node)).collect::<anyhow::Result<Vec<_>>>()?;
    let interval = format!("{}ms", options.interval.as_millis());
    let started = Instant::now();
    // All at once, as a LAN powered up together: each start waits for its agent's control socket.
    let agents: Vec<Agent> = thread::scope(|scope| {
        let handles: Vec<_> = (0..NODES)
            .map(|node| {
                let (lan, config, interval) = (&lan, &configs[node], &interval);
                scope.spawn(move || {
                    let mut flags = vec!["--config", config.as_str(), "--interval", interval.as_str()];
                    flags.extend(options.agent_flags.iter().map(String::as_str));
                    lan.start_agent(node, 100, &flags)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("an agent's start panicked"))
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let limit = Duration::from_mins(1);
    loop {
        let wrong = unsettled(&holders(&lan)?);
        if wrong == 0 {
            break;
        }
        if started.elapsed() > limit {
            anyhow::bail!("scale: {wrong} of {GROUPS} groups without their one holder after {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let settle_ms = started.elapsed().as_secs_f64() * 1000.0;
    measured.push(Scenario::ScaleSettle, settle_ms);
    log(&format!("ha-agent: scale: settled after {settle_ms:.0} ms; CPU over {:?}", options.cost_window));

    // Settled: the steady state from here on.
    thread::sleep(Duration::from_secs(2));
    let stats = BpfStats::enable()?;
    let cpu = |agent: &Agent| agent.pid().map_or(Duration::ZERO, crate::run::cpu_time_of);
    let before: Vec<Duration> = agents.iter().map(cpu).collect();
    let xdp_before = xdp_run_totals()?;
    thread::sleep(options.cost_window);
    let after: Vec<Duration> = agents.iter().map(cpu).collect();
    let xdp_after = xdp_run_totals()?;
    drop(stats);
    for (before, after) in before.iter().zip(&after) {
        let used = after.checked_sub(*before).unwrap_or_default();
        measured.push(Scenario::ScaleCpu, used.as_secs_f64() / options.cost_window.as_secs_f64() * 100.0);
    }
    let (time, runs) = (xdp_after.0.saturating_sub(xdp_before.0), xdp_after.1.saturating_sub(xdp_before.1));
    if runs > 0 {
        measured.push(Scenario::ScaleXdp, time as f64 / runs as f64);
        measured.push(Scenario::ScaleXdpRate, runs as f64 / options.cost_window.as_secs_f64() / NODES as f64);
    }
    if unsettled(&holders(&lan)?) != 0 {
        anyhow::bail!("scale: a group lost its one holder while CPU was measured");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_has_its_own_vip_and_one_top_node_and_the_tops_are_spread() {
        let vips: std::collections::HashSet<Ipv4Addr> = (1..=GROUPS).map(vip).collect();
        assert_eq!(vips.len(), GROUPS as usize);
        let mut active_in = [0; NODES];
        for group in 1..=GROUPS {
            let best = priority(group, top(group));
            assert_eq!((0..NODES).filter(|&n| priority(group, n) == best).count(), 1, "group {group}");
            active_in[top(group)] += 1;
        }
        assert_eq!(active_in, [GROUPS as usize / NODES; NODES]);
    }
}
