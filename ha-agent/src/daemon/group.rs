//! One VIP group's share of the agent: its election, its view of the peers, its VIPs and their
//! announcements. Every group of an agent shares the interface, the XDP program, the heartbeat
//! socket and the checks.

use std::time::Duration;

use pnet::datalink::NetworkInterface;
use tracing::{error, warn};

use ha_common::NodeState;

use super::agent::AsDynError as _;
use crate::{
    bpf::Datapath,
    checks::{self, Checks},
    config::{Config, GroupConfig},
    election::{Advert, Election, PeerView, Settings, State},
    garp::{self, Holding},
    hooks::HookContext,
    ids::NodeId,
    vip::{VipError, VipManager},
};

/// A group the agent serves.
pub(super) struct Group {
    pub(super) config: GroupConfig,
    pub(super) election: Election,
    /// The group's peers as the loop last read them.
    pub(super) peers: Vec<PeerView>,
    pub(super) vips: VipManager,
    /// When the election last changed state.
    pub(super) state_since: Duration,
    /// Told whenever the VIPs are removed, so that gratuitous ARP bursts stop.
    pub(super) holding: Holding,
    /// What its hooks are told besides the transition.
    pub(super) hook_context: HookContext,
    /// The state the XDP program last was told this node is in, in the group (it answers
    /// probes there once told).
    pub(super) state_written: Option<NodeState>,
    /// When the suspicion under way sent its first probe (for the round-trip histogram).
    pub(super) probe_started: Duration,
    /// The peer the XDP program's silence watch follows for this group (see
    /// [`crate::election::Election::silence_to_watch`]), while it runs.
    pub(super) watching: Option<NodeId>,
    /// Setting the watch failed last time (logged once; the election keeps its own deadlines).
    pub(super) watch_failed: bool,
    /// What the pacer sends for it every interval, while it does (see `daemon/pacer.rs`).
    pub(super) paced: Option<Advert>,
}

impl Group {
    /// A group that starts now, STANDBY, its worthiness as `checks` make it.
    pub(super) fn new(
        config: GroupConfig,
        agent: &Config,
        node_id: NodeId,
        ifindex: u32,
        checks: &Checks,
        now: Duration,
    ) -> Result<Self, VipError> {
        let vips = VipManager::new(ifindex, config.vips.clone())?;
        Ok(Self::beside(vips, config, agent, node_id, checks, now))
    }

    /// [`Group::new`] with `vips` (sharing another group's netlink connection, say), which
    /// cannot fail: a reload makes its new groups so, once it has started changing things.
    pub(super) fn beside(
        vips: VipManager,
        config: GroupConfig,
        agent: &Config,
        node_id: NodeId,
        checks: &Checks,
        now: Duration,
    ) -> Self {
        let settings = settings(&config, agent, node_id, checks);
        let hook_context = hook_context(&config, agent, node_id);
        Self {
            vips,
            election: Election::new(settings, now),
            config,
            peers: Vec::new(),
            state_since: now,
            holding: Holding::default(),
            hook_context,
            state_written: None,
            probe_started: Duration::ZERO,
            watching: None,
            watch_failed: false,
            paced: None,
        }
    }

    /// Takes a reloaded config: new VIPs and settings, the state kept.
    pub(super) fn reconfigure(&mut self, config: GroupConfig, agent: &Config, checks: &Checks) {
        let node_id = self.election.settings().node_id;
        self.election.reconfigure(settings(&config, agent, node_id, checks));
        self.hook_context = hook_context(&config, agent, node_id);
        self.config = config;
    }

    /// Tells the XDP program that this node is in `state` in the group, as its heartbeats say
    /// (it answers probes there once told), unless it was told that already: a map write only
    /// when the state changes, not with the worthiness or the flags, which the program does not
    /// read.
    pub(super) fn tell_xdp(&mut self, datapath: &mut Datapath, state: NodeState) {
        if self.state_written != Some(state) {
            match datapath.set_state(self.config.id.0, state) {
                Ok(()) => self.state_written = Some(state),
                Err(err) => warn!(error = err.as_dyn(), "telling XDP this node's state failed"),
            }
        }
    }

    /// Puts the VIPs on (those already there count as added), logging each that did not go on;
    /// returns how many did not.
    pub(super) async fn put_vips_on(&self) -> usize {
        let failures = self.vips.add_all().await;
        for failure in &failures {
            error!(group = %self.config.id, error = failure.as_dyn(), "a VIP did not go on");
        }
        failures.len()
    }

    /// Announces the VIPs on `interface`: `rounds` rounds `spacing` apart, the first now (see
    /// [`garp::announce`]); only while ACTIVE, so that a promotion whose VIPs were refused never
    /// points the LAN at this node.
    pub(super) fn announce(&self, interface: &NetworkInterface, rounds: u32, spacing: Duration) {
        if self.election.state() != State::Active {
            return;
        }
        if let Err(err) = garp::announce(interface, self.vips.vips(), rounds, spacing, &self.holding) {
            warn!(group = %self.config.id, error = err.as_dyn(), "gratuitous ARP failed");
        }
    }

    /// The group's worthiness as its tracked checks make it now.
    pub(super) fn worthiness(&self, checks: &Checks) -> checks::Worthiness {
        worthiness(&self.config, checks)
    }
}

fn worthiness(config: &GroupConfig, checks: &Checks) -> checks::Worthiness {
    let tracked = checks.states().filter(|(check, _)| config.track.contains(&check.name));
    checks::worthiness(config.priority, tracked)
}

/// The election settings of `config` in an agent configured as `agent`.
fn settings(config: &GroupConfig, agent: &Config, node_id: NodeId, checks: &Checks) -> Settings {
    Settings {
        node_id,
        priority: worthiness(config, checks).priority,
        dead_time: agent.dead_time,
        interval: agent.interval,
        garp_refresh: agent.garp.refresh,
        preempt: config.preempt,
        preempt_delay: config.preempt_delay,
        probes: agent.probes,
    }
}

fn hook_context(config: &GroupConfig, agent: &Config, node_id: NodeId) -> HookContext {
    HookContext {
        iface: agent.iface.clone(),
        group: config.id.to_string(),
        node_id: node_id.to_string(),
        vips: config.vips.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
    }
}
