//! The Prometheus endpoint (`--metrics-listen ADDR`, off by default): the state, transitions and
//! live peers of each group, the XDP counters, alarms, health check results and probe times,
//! and the gaps between each peer's heartbeats as a histogram, in the OpenMetrics text format (prometheus-client), served over plain HTTP at any
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
    ids::{GroupId, NodeId},
};

/// Label sets: `(name, value)` pairs.
type Labels = Vec<(&'static str, String)>;

/// Every state, for the one-hot state gauge.
const STATES: [State; 6] =
    [State::Standby, State::Active, State::Releasing, State::Fault, State::Maintenance, State::Stopped];

/// The agent's metrics.
pub struct Metrics {
    state: Family<Labels, Gauge>,
    transitions: Family<Labels, Counter>,
    peers_live: Family<Labels, Gauge>,
    xdp: Family<Labels, Counter>,
    alarms: Family<Labels, Counter>,
    check_up: Family<Labels, Gauge>,
    check_results: Family<Labels, Counter>,
    check_durations: Histogram,
    heartbeat_gaps: Histogram,
    probe_round_trips: Histogram,
    heartbeat_lateness: Histogram,
    last_stats: XdpStats,
    /// Each peer's last heartbeat as read, and the program's count of its heartbeats then.
    last_seen: HashMap<(GroupId, NodeId), (Duration, u64)>,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics of an agent, all zero.
    #[must_use]
    pub fn new() -> Self {
        let (state, transitions, peers_live, xdp) =
            (Family::default(), Family::default(), Family::default(), Family::default());
        let (alarms, check_up, check_results) = (Family::default(), Family::default(), Family::default());
        // 1 ms to 10 s: a local probe, up to one that runs into its timeout.
        let check_durations = Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0]);
        // 10 ms to about 10 s: from a fast interval to a peer that stalls.
        let heartbeat_gaps = Histogram::new([0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0, 10.0]);
        // 50 µs to 50 ms: a probe answered by XDP on a LAN, up to one whose first tries were lost.
        let probe_round_trips =
            Histogram::new([0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05]);
        // 100 µs to 100 ms: a loop on time, up to one held up past a peer's suspicion.
        let heartbeat_lateness = Histogram::new([0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1]);
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
        registry.register("check_up", "1 while the health check counts as up", check_up.clone());
        registry.register("check_results", "Health check probes, by result", check_results.clone());
        registry.register(
            "check_duration_seconds",
            "How long health check probes took",
            check_durations.clone(),
        );
        registry.register(
            "heartbeat_gap_seconds",
            "Time between two heartbeats of a peer, as the XDP program recorded them, when the loop read both",
            heartbeat_gaps.clone(),
        );
        registry.register(
            "probe_round_trip_seconds",
            "From a suspicion's first probe to the ACTIVE's first answer, as the XDP program recorded it",
            probe_round_trips.clone(),
        );
        registry.register(
            "heartbeat_lateness_seconds",
            "How long after its point on the interval grid the loop sent its periodic heartbeats",
            heartbeat_lateness.clone(),
        );
        // Every outcome present from the first scrape, at 0 until it moves.
        for (name, _) in XdpStats::default().named() {
            drop(xdp.get_or_create(&vec![("outcome", name.to_string())]));
        }
        Self {
            state,
            transitions,
            peers_live,
            xdp,
            alarms,
            check_up,
            check_results,
            check_durations,
            heartbeat_gaps,
            probe_round_trips,
            heartbeat_lateness,
            last_stats: XdpStats::default(),
            last_seen: HashMap::new(),
            registry: Arc::new(registry),
        }
    }

    /// Group `group` is now in `current`; `entered` when it just changed to it.
    pub fn set_state(&self, group: GroupId, current: State, entered: bool) {
        for state in STATES {
            let labels = vec![("group", group.to_string()), ("state", state.to_string())];
            self.state.get_or_create(&labels).set(i64::from(state == current));
        }
        if entered {
            self.transitions
                .get_or_create(&vec![("group", group.to_string()), ("to", current.to_string())])
                .inc();
        }
    }

    /// A group's peer table as the loop read it: how many peers are live.
    pub fn observe_peers(&mut self, group: GroupId, now: Duration, peers: &[PeerView], dead_factor: f64) {
        let live = peers.iter().filter(|peer| peer.is_live(now, dead_factor)).count();
        self.peers_live
            .get_or_create(&vec![("group", group.to_string())])
            .set(i64::try_from(live).unwrap_or(i64::MAX));
    }

    /// One peer's record as the loop read it (`packets`: the program's count of its heartbeats):
    /// the gap since its previous heartbeat, if that is the one the loop read last time. Only
    /// then is the difference of the two times a gap between heartbeats; a STANDBY's loop wakes
    /// once or twice a second and reads many heartbeats later, and a gap is then not observed.
    pub fn observe_heartbeat(&mut self, group: GroupId, peer: &PeerView, packets: u64) {
        let before = self.last_seen.insert((group, peer.node_id), (peer.last_seen, packets));
        if let Some((seen, counted)) = before {
            if packets == counted + 1 && peer.last_seen > seen {
                self.heartbeat_gaps.observe(peer.last_seen.saturating_sub(seen).as_secs_f64());
            }
        }
    }

    /// The XDP counters, summed over CPUs: the metrics advance by what they grew.
    pub fn observe_xdp(&mut self, stats: &XdpStats) {
        let before = self.last_stats.named();
        for ((name, value), (_, old)) in stats.named().into_iter().zip(before) {
            // Most counters do not move between two wake-ups: a label set costs allocations.
            if value > old {
                self.xdp.get_or_create(&vec![("outcome", name.to_string())]).inc_by(value - old);
            }
        }
        self.last_stats = *stats;
    }

    /// An alarm was raised.
    pub fn alarm(&self, name: &str) {
        self.alarms.get_or_create(&vec![("alarm", name.to_string())]).inc();
    }

    /// A health check probe ended (`ok` or not) after `took`; the check now counts as `up`.
    pub fn check(&self, name: &str, ok: bool, took: Duration, up: bool) {
        let result = if ok { "pass" } else { "fail" };
        self.check_results
            .get_or_create(&vec![("check", name.to_string()), ("result", result.to_string())])
            .inc();
        self.check_up.get_or_create(&vec![("check", name.to_string())]).set(i64::from(up));
        self.check_durations.observe(took.as_secs_f64());
    }

    /// A suspicion's probes were answered `round_trip` after the first of them went out.
    pub fn probe_answered(&self, round_trip: Duration) {
        self.probe_round_trips.observe(round_trip.as_secs_f64());
    }

    /// The heartbeat lateness histogram, for the pacer to observe its rounds in from its thread.
    #[must_use]
    pub fn heartbeat_lateness(&self) -> Histogram {
        self.heartbeat_lateness.clone()
    }

    /// The loop sent its periodic heartbeats `late` after their point on the grid: a loop held
    /// up for more than a few tenths of an interval makes the successor probe.
    pub fn heartbeats_late(&self, late: Duration) {
        self.heartbeat_lateness.observe(late.as_secs_f64());
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
        let mut metrics = Metrics::new();
        metrics.set_state(GroupId(1), State::Standby, false);
        metrics.set_state(GroupId(1), State::Active, true);
        let peer = |at| PeerView {
            node_id: NodeId(7),
            priority: 100,
            state: NodeState::Standby,
            last_seen: Duration::from_millis(at),
            yielded: false,
            interval: Duration::from_millis(100),
            handover_to: None,
            chosen: false,
            restarting: false,
        };
        metrics.observe_peers(GroupId(1), Duration::from_millis(100), &[peer(100)], 3.5);
        metrics.observe_peers(GroupId(1), Duration::from_millis(200), &[peer(200)], 3.5);
        // Heartbeats 1 and 2 read one after the other: a gap; 2 and 5: none.
        metrics.observe_heartbeat(GroupId(1), &peer(100), 1);
        metrics.observe_heartbeat(GroupId(1), &peer(200), 2);
        metrics.observe_heartbeat(GroupId(1), &peer(500), 5);
        metrics.check("web", false, Duration::from_millis(3), false);
        metrics.observe_xdp(&XdpStats { accepted: 5, bad_tag: 2, ..Default::default() });
        metrics.observe_xdp(&XdpStats { accepted: 8, bad_tag: 2, ..Default::default() });
        metrics.alarm("KeyMismatch");
        metrics.probe_answered(Duration::from_micros(180));
        let text = metrics.render();
        for expected in [
            "ha_agent_state{group=\"1\",state=\"ACTIVE\"} 1",
            "ha_agent_state{group=\"1\",state=\"STANDBY\"} 0",
            "ha_agent_transitions_total{group=\"1\",to=\"ACTIVE\"} 1",
            "ha_agent_peers_live{group=\"1\"} 1",
            "ha_agent_check_up{check=\"web\"} 0",
            "ha_agent_check_results_total{check=\"web\",result=\"fail\"} 1",
            "ha_agent_check_duration_seconds_count 1",
            "ha_agent_xdp_frames_total{outcome=\"accepted\"} 8",
            "ha_agent_xdp_frames_total{outcome=\"bad_tag\"} 2",
            "ha_agent_alarms_total{alarm=\"KeyMismatch\"} 1",
            "ha_agent_heartbeat_gap_seconds_count 1",
            "ha_agent_probe_round_trip_seconds_count 1",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
    }
}
