//! The Prometheus endpoint (`--metrics-listen ADDR`, off by default): the state, transitions,
//! live peers, the XDP counters, alarms, and the gaps between each peer's heartbeats as a
//! histogram, in the OpenMetrics text format (prometheus-client), served over plain HTTP at any
//! path by a task of its own.
//!
//! The loop updates the metrics as it goes (they are atomics); a scrape only encodes them.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use ha_common::XdpStats;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use crate::{
    election::{PeerView, State},
    ids::NodeId,
};

/// Every state, for the one-hot state gauge.
const STATES: [State; 6] =
    [State::Standby, State::Active, State::Releasing, State::Fault, State::Maintenance, State::Stopped];

/// The agent's metrics.
pub struct Metrics {
    state: Family<Vec<(&'static str, String)>, Gauge>,
    transitions: Family<Vec<(&'static str, String)>, Counter>,
    peers_live: Gauge,
    xdp: Family<Vec<(&'static str, String)>, Counter>,
    alarms: Family<Vec<(&'static str, String)>, Counter>,
    heartbeat_gaps: Histogram,
    group: String,
    last_stats: XdpStats,
    last_seen: HashMap<NodeId, Duration>,
    registry: Arc<Registry>,
}

impl Metrics {
    /// The metrics of an agent serving `group`.
    #[must_use]
    pub fn new(group: String) -> Self {
        let state = Family::default();
        let transitions = Family::default();
        let peers_live = Gauge::default();
        let xdp = Family::default();
        let alarms = Family::default();
        // 10 ms to about 10 s: from a fast interval to a peer that stalls.
        let heartbeat_gaps = Histogram::new([0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0, 10.0]);
        let mut registry = Registry::with_prefix("ha_agent");
        registry.register("state", "1 for the state this node is in, per group", state.clone());
        registry.register("transitions", "State changes, by the state entered", transitions.clone());
        registry.register(
            "peers_live",
            "Peers of the group heard within their dead time",
            peers_live.clone(),
        );
        registry.register("xdp_frames", "Frames the XDP program saw, by outcome", xdp.clone());
        registry.register("alarms", "Misconfigurations raised (see `ha-agent status`)", alarms.clone());
        registry.register(
            "heartbeat_gap_seconds",
            "Time between two heartbeats of a peer, as the XDP program recorded them",
            heartbeat_gaps.clone(),
        );
        Self {
            state,
            transitions,
            peers_live,
            xdp,
            alarms,
            heartbeat_gaps,
            group,
            last_stats: XdpStats::default(),
            last_seen: HashMap::new(),
            registry: Arc::new(registry),
        }
    }

    fn labels(&self, key: &'static str, value: String) -> Vec<(&'static str, String)> {
        vec![("group", self.group.clone()), (key, value)]
    }

    /// The node is now in `current`; `entered` when it just changed to it.
    pub fn set_state(&self, current: State, entered: bool) {
        for state in STATES {
            self.state
                .get_or_create(&self.labels("state", state.to_string()))
                .set(i64::from(state == current));
        }
        if entered {
            self.transitions.get_or_create(&self.labels("to", current.to_string())).inc();
        }
    }

    /// The peer table as the loop read it: live peers, and the gap of each new heartbeat.
    pub fn observe_peers(&mut self, now: Duration, peers: &[PeerView], dead_factor: f64) {
        let live = peers.iter().filter(|peer| peer.is_live(now, dead_factor)).count();
        self.peers_live.set(i64::try_from(live).unwrap_or(i64::MAX));
        for peer in peers {
            match self.last_seen.insert(peer.node_id, peer.last_seen) {
                Some(before) if peer.last_seen > before => {
                    self.heartbeat_gaps.observe(peer.last_seen.saturating_sub(before).as_secs_f64());
                }
                _ => {}
            }
        }
    }

    /// The XDP counters, summed over CPUs: the metrics advance by what they grew.
    pub fn observe_xdp(&mut self, stats: &XdpStats) {
        let before = self.last_stats.named();
        for ((name, value), (_, old)) in stats.named().into_iter().zip(before) {
            self.xdp.get_or_create(&vec![("outcome", name.to_string())]).inc_by(value.saturating_sub(old));
        }
        self.last_stats = *stats;
    }

    /// An alarm was raised.
    pub fn alarm(&self, name: &str) {
        self.alarms.get_or_create(&self.labels("alarm", name.to_string())).inc();
    }

    /// Serves the metrics on `address` from a task of its own. Needs a tokio runtime.
    pub async fn serve(&self, address: SocketAddr) -> std::io::Result<()> {
        let listener = TcpListener::bind(address).await?;
        let registry = Arc::clone(&self.registry);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let registry = Arc::clone(&registry);
                tokio::spawn(async move {
                    // The request itself does not matter: every path is the metrics.
                    let mut request = [0u8; 1024];
                    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut request)).await;
                    let mut body = String::new();
                    if encode(&mut body, &registry).is_err() {
                        return;
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), stream.write_all(response.as_bytes()))
                            .await;
                });
            }
        });
        Ok(())
    }

    /// The metrics as text, as a scrape gets them.
    #[must_use]
    pub fn render(&self) -> String {
        let mut body = String::new();
        let _ = encode(&mut body, &self.registry);
        body
    }
}

#[cfg(test)]
mod tests {
    use ha_common::NodeState;

    use super::*;

    #[test]
    fn the_metrics_follow_what_the_loop_sees() {
        let mut metrics = Metrics::new("1".into());
        metrics.set_state(State::Standby, false);
        metrics.set_state(State::Active, true);
        let peer = |at| PeerView {
            node_id: NodeId(7),
            priority: 100,
            state: NodeState::Standby,
            last_seen: Duration::from_millis(at),
            yielded: false,
            interval: Duration::from_millis(100),
        };
        metrics.observe_peers(Duration::from_millis(100), &[peer(100)], 3.5);
        metrics.observe_peers(Duration::from_millis(200), &[peer(200)], 3.5);
        metrics.observe_xdp(&XdpStats { accepted: 5, bad_tag: 2, ..Default::default() });
        metrics.observe_xdp(&XdpStats { accepted: 8, bad_tag: 2, ..Default::default() });
        metrics.alarm("KeyMismatch");
        let text = metrics.render();
        for expected in [
            "ha_agent_state{group=\"1\",state=\"ACTIVE\"} 1",
            "ha_agent_state{group=\"1\",state=\"STANDBY\"} 0",
            "ha_agent_transitions_total{group=\"1\",to=\"ACTIVE\"} 1",
            "ha_agent_peers_live 1",
            "ha_agent_xdp_frames_total{outcome=\"accepted\"} 8",
            "ha_agent_xdp_frames_total{outcome=\"bad_tag\"} 2",
            "ha_agent_alarms_total{group=\"1\",alarm=\"KeyMismatch\"} 1",
            "ha_agent_heartbeat_gap_seconds_count 1",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
    }
}
