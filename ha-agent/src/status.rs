//! `ha-agent status`: the report the running agent serves on its control socket
//! (`RUN_DIR/control.sock`), and the client that fetches and prints it. A filesystem socket, so
//! that another `ip netns exec` of the same namespace (which shares /run) reaches it too.

use std::{
    io::Read as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use ha_common::{NodeState, PeerKey, PeerRecord, XdpStats};
use serde::{Deserialize, Serialize};

/// File name of the control socket inside the run directory.
pub const SOCKET_NAME: &str = "control.sock";

/// The control socket's path for a run directory.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SOCKET_NAME)
}

/// Everything `ha-agent status` shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    /// Interface.
    pub iface: String,
    /// This node's id.
    pub node_id: u32,
    /// VIP group.
    pub group: u32,
    /// This node's worthiness.
    pub priority: u8,
    /// STANDBY, ACTIVE, RELEASING or STOPPED.
    pub state: String,
    /// How long it has been in that state, in ms.
    pub state_for_ms: u64,
    /// Configured VIPs.
    pub vips: Vec<String>,
    /// Of those, the ones on the interface right now.
    pub vips_present: Vec<String>,
    /// Heartbeat interval in ms.
    pub interval_ms: u64,
    /// Dead time in ms.
    pub dead_time_ms: u64,
    /// XDP attach mode: native or skb.
    pub xdp_mode: String,
    /// Heartbeat authentication: "off", or how many keys are accepted.
    pub auth: String,
    /// The peer table.
    pub peers: Vec<PeerStatus>,
    /// XDP counters by name, summed over CPUs.
    pub xdp_stats: Vec<(String, u64)>,
}

/// One peer as the status shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// Node id.
    pub node_id: u32,
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
    /// Builds the view of one map entry at monotonic time `now`.
    pub fn from_record(key: &PeerKey, record: &PeerRecord, now: Duration, dead_time: Duration) -> Self {
        let ago = now.saturating_sub(Duration::from_nanos(record.last_seen_ns));
        let m = record.src_mac;
        Self {
            node_id: key.node_id,
            address: source_address(record).to_string(),
            mac: format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]),
            priority: record.priority,
            state: NodeState::from_u8(record.state).map_or("?", NodeState::as_str).to_string(),
            last_seen_ms_ago: ago.as_millis() as u64,
            live: record.priority > 0 && ago <= dead_time,
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
pub fn fetch(run_dir: &Path) -> anyhow::Result<StatusReport> {
    use anyhow::Context as _;
    let path = socket_path(run_dir);
    let mut stream = UnixStream::connect(&path).with_context(|| {
        format!("no agent answers on {} (is it running with this --run-dir?)", path.display())
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    stream.read_to_string(&mut text).context("reading the agent's answer")?;
    serde_json::from_str(&text).context("the agent's answer is not a status report")
}

/// Renders the report for a terminal.
pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "ha-agent on {}: node {:#010x}, group {}, priority {}: {} for {:.1} s\n",
        report.iface,
        report.node_id,
        report.group,
        report.priority,
        report.state,
        report.state_for_ms as f64 / 1000.0
    ));
    let present: Vec<String> = report
        .vips
        .iter()
        .map(|v| {
            if report.vips_present.contains(v) {
                format!("{v} (on {})", report.iface)
            } else {
                format!("{v} (not held)")
            }
        })
        .collect();
    out.push_str(&format!("VIPs: {}\n", present.join(", ")));
    out.push_str(&format!(
        "heartbeat every {} ms, dead after {} ms, XDP in {} mode, authentication {}\n",
        report.interval_ms, report.dead_time_ms, report.xdp_mode, report.auth
    ));
    let counters: Vec<String> =
        report.xdp_stats.iter().map(|(name, value)| format!("{name} {value}")).collect();
    out.push_str(&format!("XDP: {}\n", counters.join(", ")));
    if report.peers.is_empty() {
        out.push_str("no peers heard\n");
        return out;
    }
    out.push_str(&format!(
        "{:<12} {:<26} {:<17} {:>4} {:<8} {:>12} {:>9}\n",
        "NODE", "ADDRESS", "MAC", "PRIO", "STATE", "LAST SEEN", "PACKETS"
    ));
    for peer in &report.peers {
        out.push_str(&format!(
            "{:<12} {:<26} {:<17} {:>4} {:<8} {:>9} ms{} {:>9}\n",
            format!("{:#010x}", peer.node_id),
            peer.address,
            peer.mac,
            peer.priority,
            peer.state,
            peer.last_seen_ms_ago,
            if peer.live { " " } else { "!" },
            peer.packets
        ));
    }
    out
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
            ..Default::default()
        };
        let key = PeerKey { group: 1, node_id: 11 };
        let status =
            PeerStatus::from_record(&key, &record, Duration::from_millis(1042), Duration::from_millis(350));
        assert_eq!(status.address, "192.0.2.11");
        assert_eq!(status.mac, "02:00:00:00:00:0b");
        assert_eq!(status.state, "ACTIVE");
        assert_eq!(status.last_seen_ms_ago, 42);
        assert!(status.live);
    }
}
