//! `ha-agent status`: the control socket (`RUN_DIR/control.sock`), the report the running agent
//! serves on it, and the client that fetches and prints it. A filesystem socket, so that another
//! `ip netns exec` of the same namespace (which shares /run) reaches it too.

use std::{
    fmt::Write as _,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use ha_common::{NodeState, PeerKey, PeerRecord, XdpStats};
use serde::{Deserialize, Serialize};

use crate::{
    alarms::AlarmReport,
    checks::CheckReport,
    election::PeerView,
    hooks::HookRun,
    ids::{GroupId, NodeId},
};

/// File name of the control socket inside the run directory.
pub const SOCKET_NAME: &str = "control.sock";

/// The control socket's path for a run directory.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SOCKET_NAME)
}

/// Errors of the control socket, on either side.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Another agent answers on the socket.
    #[error("another agent is running with run dir {} (give each instance its own --run-dir)", .0.display())]
    InUse(PathBuf),
    /// The run directory or the socket could not be set up.
    #[error("cannot {action} {}", path.display())]
    Setup {
        /// create, bind, chown, chmod or rename.
        action: &'static str,
        /// The directory or socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No agent answers.
    #[error("no agent answers on {} (is it running with this --run-dir?)", .0.display())]
    NoAgent(PathBuf, #[source] io::Error),
    /// The socket refuses this user.
    #[error("{} is not open to this user: run as root, or as a member of the agent's control_group", .0.display())]
    Refused(PathBuf),
    /// The group the socket is to be opened to does not exist.
    #[error("no group {0} (control_group)")]
    NoGroup(String),
    /// The agent answered a command with an error.
    #[error("the agent refused: {0}")]
    Command(String),
    /// The answer could not be read.
    #[error("reading the agent's answer")]
    Read(#[source] io::Error),
    /// The answer is not a report.
    #[error("the agent's answer is not a status report")]
    Parse(#[source] serde_json::Error),
}

/// Everything `ha-agent status` shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    /// Interface.
    pub iface: String,
    /// This node's id.
    pub node_id: NodeId,
    /// Heartbeat interval in ms.
    pub interval_ms: u64,
    /// Dead time in ms.
    pub dead_time_ms: u64,
    /// XDP attach mode: native or skb.
    pub xdp_mode: String,
    /// Heartbeat authentication: "off", or how many keys are accepted.
    pub auth: String,
    /// Each VIP group.
    pub groups: Vec<GroupStatus>,
    /// The health checks.
    pub checks: Vec<CheckReport>,
    /// The notify hooks' latest runs, oldest first.
    pub hook_runs: Vec<HookRun>,
    /// XDP counters by name, summed over CPUs.
    pub xdp_stats: Vec<(String, u64)>,
    /// Misconfigurations seen within the last minute.
    pub alarms: Vec<AlarmReport>,
}

/// One VIP group as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupStatus {
    /// The group's id.
    pub group: GroupId,
    /// This node's worthiness now: the configured priority with the checks' weights.
    pub priority: u8,
    /// The configured priority.
    pub configured_priority: u8,
    /// STANDBY, ACTIVE, RELEASING, FAULT, MAINTENANCE or STOPPED.
    pub state: String,
    /// How long it has been in that state, in ms.
    pub state_for_ms: u64,
    /// Configured VIPs.
    pub vips: Vec<String>,
    /// Of those, the ones on the interface right now.
    pub vips_present: Vec<String>,
    /// Whether this node preempts a less worthy ACTIVE.
    pub preempt: bool,
    /// The checks it tracks.
    pub track: Vec<String>,
    /// Its notify hooks: `state: command` (`any` for the one run on every transition).
    pub hooks: Vec<String>,
    /// The peer table.
    pub peers: Vec<PeerStatus>,
    /// Why the group is in FAULT, when it is.
    pub fault: Option<String>,
}

/// One peer as the status shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// Node id.
    pub node_id: NodeId,
    /// Source IP address of its heartbeats.
    pub address: String,
    /// Source MAC address.
    pub mac: String,
    /// Advertised worthiness (0 = releasing).
    pub priority: u8,
    /// Advertised state.
    pub state: String,
    /// Milliseconds since its last heartbeat.
    pub last_seen_ms_ago: u64,
    /// Whether it counts as live (heard within the dead time, priority not 0).
    pub live: bool,
    /// Its advertised interval in ms.
    pub interval_ms: u32,
    /// Heartbeats received from it.
    pub packets: u64,
    /// Its last sequence number.
    pub sequence: u64,
}

impl PeerStatus {
    /// Builds the view of one map entry at monotonic time `now`; `dead_factor` is the dead time
    /// in intervals (see [`PeerView::dead_time`]).
    pub fn from_record(key: &PeerKey, record: &PeerRecord, now: Duration, dead_factor: f64) -> Self {
        let ago = now.saturating_sub(Duration::from_nanos(record.last_seen_ns));
        let m = record.src_mac;
        Self {
            node_id: NodeId(key.node_id),
            address: source_address(record).to_string(),
            mac: format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]),
            priority: record.priority,
            state: NodeState::from_u8(record.state).map_or("?", NodeState::as_str).to_string(),
            last_seen_ms_ago: ago.as_millis() as u64,
            live: PeerView::from_record(key, record).is_some_and(|peer| peer.is_live(now, dead_factor)),
            interval_ms: record.interval_ms,
            packets: record.packets,
            sequence: record.sequence,
        }
    }
}

/// The source address stored in a peer record.
pub fn source_address(record: &PeerRecord) -> IpAddr {
    if record.family == 4 {
        let a = record.src_addr;
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(record.src_addr))
    }
}

/// Named counters as (name, value) pairs.
pub fn named_stats(stats: &XdpStats) -> Vec<(String, u64)> {
    stats.named().iter().map(|(name, value)| (name.to_string(), *value)).collect()
}

/// Fetches the report from a running agent.
pub fn fetch(run_dir: &Path) -> Result<StatusReport, StatusError> {
    let text = crate::control::request(run_dir, crate::control::Request::Status)?;
    serde_json::from_str(&text).map_err(StatusError::Parse)
}

/// Renders the report for a terminal.
pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ha-agent on {}: node {:#010x}, heartbeat every {} ms, dead after {} ms, XDP in {} mode, authentication {}",
        report.iface, report.node_id.0, report.interval_ms, report.dead_time_ms, report.xdp_mode, report.auth
    );
    for alarm in &report.alarms {
        let _ = writeln!(out, "WARNING: {} ({} ms ago)", alarm.message, alarm.last_seen_ms_ago);
    }
    for group in &report.groups {
        render_group(&mut out, &report.iface, group);
    }
    for check in &report.checks {
        let why = check.last_failure.as_ref().map(|why| format!(": last probe {why}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "check {}: {} ({}, every {} ms, {}){why}",
            check.name, check.state, check.probes, check.interval_ms, check.effect
        );
    }
    for run in &report.hook_runs {
        let _ = writeln!(out, "hook ({} ms ago): {}: {}", run.ended_ms_ago, run.command, run.outcome);
    }
    let counters: Vec<String> =
        report.xdp_stats.iter().map(|(name, value)| format!("{name} {value}")).collect();
    let _ = writeln!(out, "XDP: {}", counters.join(", "));
    out
}

fn render_group(out: &mut String, iface: &str, group: &GroupStatus) {
    let weighted = if group.priority == group.configured_priority {
        String::new()
    } else {
        format!(" (configured {})", group.configured_priority)
    };
    let _ = writeln!(
        out,
        "\ngroup {}: {} for {:.1} s, priority {}{weighted}{}",
        group.group,
        group.state,
        group.state_for_ms as f64 / 1000.0,
        group.priority,
        if group.preempt { "" } else { ", no preemption" },
    );
    let present: Vec<String> = group
        .vips
        .iter()
        .map(|v| {
            if group.vips_present.contains(v) {
                format!("{v} (on {iface})")
            } else {
                format!("{v} (not held)")
            }
        })
        .collect();
    let _ = writeln!(out, "VIPs: {}", present.join(", "));
    if let Some(fault) = &group.fault {
        let _ = writeln!(out, "FAULT: {fault}");
    }
    if !group.track.is_empty() {
        let _ = writeln!(out, "tracks: {}", group.track.join(", "));
    }
    for hook in &group.hooks {
        let _ = writeln!(out, "hook {hook}");
    }
    if group.peers.is_empty() {
        out.push_str("no peers heard\n");
        return;
    }
    let _ = writeln!(
        out,
        "{:<12} {:<26} {:<17} {:>4} {:<8} {:>12} {:>9}",
        "NODE", "ADDRESS", "MAC", "PRIO", "STATE", "LAST SEEN", "PACKETS"
    );
    for peer in &group.peers {
        let _ = writeln!(
            out,
            "{:<12} {:<26} {:<17} {:>4} {:<8} {:>9} ms{} {:>9}",
            format!("{:#010x}", peer.node_id.0),
            peer.address,
            peer.mac,
            peer.priority,
            peer.state,
            peer.last_seen_ms_ago,
            if peer.live { " " } else { "!" },
            peer.packets
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_status_from_record() {
        let record = PeerRecord {
            last_seen_ns: 1_000_000_000,
            priority: 150,
            state: 2,
            family: 4,
            src_addr: [192, 0, 2, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            src_mac: [2, 0, 0, 0, 0, 0x0b],
            interval_ms: 100,
            ..Default::default()
        };
        let key = PeerKey { group: 1, node_id: 11 };
        let status = PeerStatus::from_record(&key, &record, Duration::from_millis(1042), 3.5);
        assert_eq!(status.address, "192.0.2.11");
        assert_eq!(status.mac, "02:00:00:00:00:0b");
        assert_eq!(status.state, "ACTIVE");
        assert_eq!(status.last_seen_ms_ago, 42);
        assert!(status.live);
    }
}
