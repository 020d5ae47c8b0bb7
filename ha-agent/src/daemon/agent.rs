//! What the loop owns ([`Agent`]) and how it carries out each group's election's actions,
//! feeding their outcomes back as events.

use std::{collections::VecDeque, time::Duration};

use ha_common::{PeerKey, XdpStats};
use pnet::datalink::NetworkInterface;
use tracing::{debug, error, info, warn};

use super::{
    group::Group,
    pacer::{Pacer, RoundSent, Taken},
};
use crate::{
    alarms::{Alarm, Alarms},
    bpf::Datapath,
    checks::Checks,
    cli::RunArgs,
    clock::monotonic_now,
    config::Config,
    election::{Action, Event, Output, PeerView, State, SUSPECT_AFTER_PERMILLE},
    hooks::Hooks,
    ids::NodeId,
    keys::Keys,
    metrics::Metrics,
    netwatch::NetEvent,
    notify::Notifier,
};

/// What the election of group `.0` (an index into [`Agent::groups`]) made of an event.
pub(super) type Fed = Vec<(usize, Output)>;

/// Everything the loop owns.
pub(super) struct Agent {
    pub(super) config: Config,
    /// The flags the agent was started with: a reload lays them over the re-read file again.
    pub(super) flags: RunArgs,
    pub(super) interface: NetworkInterface,
    pub(super) datapath: Datapath,
    /// The heartbeat pacer, and through it the heartbeat socket that the loop sends on too.
    pub(super) pacer: Pacer,
    pub(super) groups: Vec<Group>,
    pub(super) checks: Checks,
    /// The notify hooks' queue.
    pub(super) hooks: Hooks,
    /// The Prometheus metrics.
    pub(super) metrics: Metrics,
    /// systemd's readiness and watchdog.
    pub(super) notifier: Notifier,
    /// Misconfigurations the XDP counters reveal.
    pub(super) alarms: Alarms,
    /// The loaded keys; `None` with `--insecure-no-auth`.
    pub(super) keys: Option<Keys>,
    /// Which of `groups` has which id, for sorting the peer table into them.
    pub(super) group_index: GroupIndex,
    /// When the XDP counters were last read, and whether an event asks for them before
    /// [`COUNTER_PERIOD`] has passed (see [`Agent::watch_counters`]).
    pub(super) counters: CounterReads,
}

/// How often the loop reads the XDP counters without being asked while a scraper can see them:
/// the metrics then lag the counters by half a second at most.
const SCRAPED_COUNTER_PERIOD: Duration = Duration::from_millis(500);

/// How often the loop reads the XDP counters without being asked otherwise. What they reveal
/// then (another key, another group on our port) is logged at most once a minute and is not a
/// matter of seconds, and a read is a syscall, which an ACTIVE's loop would otherwise make at
/// every turn (about once a second). Another node with our id is a matter of milliseconds: the
/// XDP program signals it through the ring buffer (`change::OWN_ID`), and the loop then reads
/// them at once; a control command (`status` lists the alarms) reads them first too.
const COUNTER_PERIOD: Duration = Duration::from_secs(10);

/// When the loop reads the XDP counters.
#[derive(Default)]
pub(super) struct CounterReads {
    /// When they were last read.
    last: Duration,
    /// A ring-buffer event arrived since: read them at the next wake-up.
    pub(super) asked: bool,
    /// What that read gave, summed over CPUs (`None` if it failed): what `status` shows, read
    /// just before it (a control command asks for them), without a second syscall.
    pub(super) stats: Option<XdpStats>,
}

impl CounterReads {
    /// Whether the counters are due at `now`: asked for, or `period` since the last read.
    fn due(&self, now: Duration, period: Duration) -> bool {
        self.asked || now >= self.last + period
    }
}

/// Group ids to their position in `Agent::groups`, rebuilt only when the ids change (a reload):
/// the loop sorts every peer record into its group at every wake-up.
#[derive(Default)]
pub(super) struct GroupIndex {
    ids: Vec<u32>,
    positions: std::collections::HashMap<u32, usize>,
}

impl GroupIndex {
    /// Brings the index up to date with `groups` (a comparison of ids when nothing changed).
    fn update(&mut self, groups: &[Group]) {
        if self.ids.len() == groups.len() && self.ids.iter().zip(groups).all(|(id, g)| *id == g.config.id.0) {
            return;
        }
        self.ids = groups.iter().map(|group| group.config.id.0).collect();
        self.positions = self.ids.iter().enumerate().map(|(position, id)| (*id, position)).collect();
    }

    /// The position of the group with id `group`, if served.
    fn position(&self, group: u32) -> Option<usize> {
        self.positions.get(&group).copied()
    }
}

impl Agent {
    /// Reads the peer table into each group's view, in place (each group's vector reused).
    pub(super) fn refresh_peers(&mut self) {
        self.group_index.update(&self.groups);
        let index = &self.group_index;
        for group in &mut self.groups {
            group.peers.clear();
        }
        let groups = &mut self.groups;
        // Only when a scraper can see them: with 256 groups this is most of a poll's work.
        let served = self.config.metrics_listen.is_some();
        let mut metrics = served.then_some(&mut self.metrics);
        self.datapath.each_peer(|key, record| {
            if let (Some(i), Some(view)) = (index.position(key.group), PeerView::from_record(&key, &record)) {
                if let Some(metrics) = metrics.as_deref_mut() {
                    metrics.observe_heartbeat(groups[i].config.id, &view, record.packets);
                }
                groups[i].peers.push(view);
            }
        });
        if served {
            let now = monotonic_now();
            for group in &self.groups {
                let factor = group.election.settings().dead_factor();
                self.metrics.observe_peers(group.config.id, now, &group.peers, factor);
            }
        }
    }

    /// Feeds every group's election the event `event(now)` makes.
    pub(super) fn feed_all(&mut self, event: impl Fn(Duration) -> Event<'static>) -> Fed {
        let now = monotonic_now();
        self.groups
            .iter_mut()
            .enumerate()
            .map(|(index, group)| (index, group.election.handle(event(now))))
            .collect()
    }

    /// Ticks every group's election with its peers.
    pub(super) fn tick(&mut self) -> Fed {
        let now = monotonic_now();
        self.groups
            .iter_mut()
            .enumerate()
            .map(|(index, group)| (index, group.election.handle(Event::Tick { now, peers: &group.peers })))
            .collect()
    }

    /// The earliest moment an election must be re-evaluated without a new event.
    pub(super) fn next_deadline(&self, now: Duration) -> Option<Duration> {
        self.groups
            .iter()
            .filter_map(|group| group.election.next_deadline_watched(now, &group.peers, group.watching))
            .min()
    }

    /// Keeps each group's silence watch on the ACTIVE its election would succeed, if any (see
    /// [`crate::election::Election::silence_to_watch`]): a STANDBY next in line then sleeps until
    /// that ACTIVE goes quiet instead of waking every interval to look. A syscall only when the
    /// watch starts, moves or stops.
    pub(super) fn keep_watches(&mut self) {
        if !self.datapath.has_silence_watch() {
            return;
        }
        let now = monotonic_now();
        for group in &mut self.groups {
            let wanted = group.election.silence_to_watch(now, &group.peers);
            if wanted == group.watching {
                continue;
            }
            let (node, permille) = wanted.map_or((0, 0), |node| (node.0, SUSPECT_AFTER_PERMILLE));
            group.watching = match self.datapath.watch_silence(group.config.id.0, node, permille) {
                Ok(set) => {
                    group.watch_failed = false;
                    wanted.filter(|_| set)
                }
                Err(err) => {
                    if !group.watch_failed {
                        // The election's own deadlines stay: the loop wakes as if unwatched.
                        warn!(group = %group.config.id, error = err.as_dyn(), "setting the silence watch failed");
                    }
                    group.watch_failed = true;
                    None
                }
            };
        }
    }

    /// The XDP program's silence watches that fired (`silent`: group and peer): those peers went
    /// quiet, and the watches stopped until set again.
    pub(super) fn watches_fired(&mut self, silent: &[PeerKey]) {
        for key in silent {
            let position = self.group_index.position(key.group);
            let Some(group) =
                position.and_then(|i| self.groups.get_mut(i)).filter(|g| g.config.id.0 == key.group)
            else {
                continue;
            };
            if group.watching == Some(NodeId(key.node_id)) {
                group.watching = None;
            }
        }
    }

    /// The earliest moment a periodic heartbeat the loop sends is due (see
    /// [`crate::election::Election::heartbeat_due_at`]); `None` if the pacer sends every group's.
    pub(super) fn heartbeat_due_at(&self, now: Duration) -> Option<Duration> {
        self.groups
            .iter()
            .filter(|group| group.paced.is_none())
            .map(|group| group.election.heartbeat_due_at(now))
            .min()
    }

    /// Whether every group has stopped: the agent may exit.
    pub(super) fn stopped(&self) -> bool {
        self.groups.iter().all(|group| group.election.state() == State::Stopped)
    }

    /// Sends every heartbeat that is due and not paced (the periodic send: a settled STANDBY's
    /// only every few intervals), telling XDP of them all at once.
    pub(super) fn send_heartbeats(&mut self) -> Fed {
        let now = monotonic_now();
        let due: Vec<usize> = (0..self.groups.len())
            .filter(|&index| {
                self.groups[index].paced.is_none() && self.groups[index].election.heartbeat_due(now)
            })
            .collect();
        self.transmit(&due)
    }

    /// Sends group `index`'s heartbeat and tells its election whether it went out.
    pub(super) fn send_heartbeat(&mut self, index: usize) -> Output {
        self.transmit(&[index]).pop().map(|(_, output)| output).unwrap_or_default()
    }

    /// Sends the heartbeats of groups `indices` as one round ([`super::pacer::Outbox::send_round`])
    /// and tells each election whether its heartbeat went out.
    fn transmit(&mut self, indices: &[usize]) -> Fed {
        if indices.is_empty() {
            return Vec::new();
        }
        let now = monotonic_now();
        let adverts: Vec<_> = indices
            .iter()
            .map(|&index| {
                let group = &mut self.groups[index];
                let advert = group.election.advertised(now);
                group.tell_xdp(&mut self.datapath, advert.state);
                (group.config.id, advert)
            })
            .collect();
        let mut sent = vec![true; adverts.len()];
        self.pacer.lock().outbox.send_round(&adverts, now, |position, result| {
            if let Err(err) = result {
                // Logged at debug: a link that is down fails every send; the election turns
                // failures that last a dead time into FAULT, which is logged once with its cause.
                debug!("sending a heartbeat failed: {err}");
                sent[position] = false;
            }
        });
        indices
            .iter()
            .zip(sent)
            .map(|(&index, ok)| (index, self.groups[index].election.handle(Event::HeartbeatSent { now, ok })))
            .collect()
    }

    /// Hands the pacer group `index`'s heartbeats while what they say is steady (an ACTIVE's:
    /// [`crate::election::Election::steady_advert`]), or takes them back; XDP is told the state a
    /// paced group says (probes in it are answered once it is).
    pub(super) fn pace(&mut self, index: usize) {
        let now = monotonic_now();
        let group = &mut self.groups[index];
        let advert = group.election.steady_advert(now);
        if advert == group.paced {
            return;
        }
        if let Some(advert) = &advert {
            group.tell_xdp(&mut self.datapath, advert.state);
        }
        group.paced = advert;
        if self.pacer.lock().plan.set(group.config.id, advert, self.config.interval, now) {
            self.pacer.plan_changed();
        }
    }

    /// [`Agent::pace`] for every group, at the end of every turn; and, while the heartbeats'
    /// source address is unknown (no address yet), looked up again (see
    /// [`crate::heartbeat::FrameSender`]).
    pub(super) fn pace_all(&mut self) {
        for index in 0..self.groups.len() {
            self.pace(index);
        }
        self.pacer.lock().outbox.sender.find_source();
    }

    /// The grid point the loop is to wake at, by `latest`, to send the paced round of itself
    /// ([`super::pacer::Plan::claim`]), if any.
    pub(super) fn claim_round(&self, latest: Duration) -> Option<Duration> {
        self.pacer.lock().plan.claim(latest)
    }

    /// At the start of a turn: sends the paced round of the point the loop took, if that point
    /// has come (the paced groups' elections hear of it as of a round the pacer sent), or gives
    /// the point back to the pacer.
    pub(super) fn serve_claimed_round(&mut self) -> Fed {
        let now = monotonic_now();
        let (taken, report) = self.pacer.lock().serve_claimed(now);
        match taken {
            Taken::Send(point) => self.heartbeats_late(now.saturating_sub(point)),
            Taken::GivenBack => self.pacer.plan_changed(),
            Taken::Nothing => {}
        }
        report.map(|round| self.paced_round(round)).unwrap_or_default()
    }

    /// Notes how late after its grid point a round of the loop's went out: as every metric read
    /// at a wake-up, only when a scraper can see it. (The pacer notes its own rounds.)
    pub(super) fn heartbeats_late(&self, late: Duration) {
        if self.config.metrics_listen.is_some() {
            self.metrics.heartbeats_late(late);
        }
    }

    /// A round of paced heartbeats went out or failed, after the opposite: the paced groups'
    /// elections hear of it (their fault rules).
    pub(super) fn paced_round(&mut self, round: RoundSent) -> Fed {
        self.groups
            .iter_mut()
            .enumerate()
            .filter(|(_, group)| group.paced.is_some())
            .map(|(index, group)| {
                (index, group.election.handle(Event::HeartbeatSent { now: round.at, ok: round.ok }))
            })
            .collect()
    }

    /// Carries out what the elections made of one event, group by group.
    pub(super) async fn execute_all(&mut self, fed: Fed) {
        for (index, output) in fed {
            self.execute(index, output).await;
        }
    }

    /// Carries out group `index`'s output, and what its election makes of the outcomes it is fed
    /// back (a VIP that would not go on, a heartbeat that did not go out) before the rest, so
    /// that a promotion whose VIPs were refused goes no further.
    pub(super) async fn execute(&mut self, index: usize, output: Output) {
        // First: a state change takes the heartbeats back from the pacer before anything else.
        self.pace(index);
        self.log_transition(index, &output);
        let mut pending = VecDeque::from(output.actions);
        while let Some(action) = pending.pop_front() {
            // AddVips and SendHeartbeat have outcomes the election must hear of.
            let fed_back = match action {
                Action::AddVips => self.add_vips(index).await,
                Action::SendHeartbeat => self.send_heartbeat(index),
                Action::SendProbe { to, first } => self.send_probe(index, to, first),
                Action::RemoveVips => {
                    self.remove_vips(index).await;
                    continue;
                }
                Action::SendGratuitousArp => {
                    self.announce(index, self.config.garp.count);
                    continue;
                }
                Action::RefreshGratuitousArp => {
                    self.announce(index, 1);
                    continue;
                }
                // The group has stopped; the loop ends once every group has.
                Action::Exit => continue,
            };
            self.log_transition(index, &fed_back);
            for action in fed_back.actions.into_iter().rev() {
                pending.push_front(action);
            }
        }
    }

    fn log_transition(&mut self, index: usize, output: &Output) {
        let group = &mut self.groups[index];
        if let Some(transition) = &output.transition {
            info!(group = %group.config.id, from = %transition.from, to = %transition.to, "{}", transition.reason);
            group.state_since = monotonic_now();
            self.hooks.transition(&group.config.hooks, &group.hook_context, transition);
            self.metrics.set_state(group.config.id, transition.to, true);
        }
    }

    /// Puts group `index`'s VIPs on, logs each one that failed, and tells its election how it
    /// went.
    pub(super) async fn add_vips(&mut self, index: usize) -> Output {
        // The fence armed and fresh before the VIPs go on: from now on they are this node's to
        // fence should its agent die (see `Agent::renew_lease`).
        self.keep_fence(true);
        let failures = self.groups[index].put_vips_on().await;
        let group = &mut self.groups[index];
        let now = monotonic_now();
        if failures == 0 {
            let vips: Vec<String> = group.vips.vips().iter().map(ToString::to_string).collect();
            info!(group = %group.config.id, ?vips, "VIPs added");
            group.election.handle(Event::VipsAdded { now })
        } else {
            let all = failures == group.vips.vips().len();
            group.election.handle(Event::AddVipsFailed { now, all })
        }
    }

    /// What a link or address change means for the elections.
    pub(super) fn net_event(&mut self, event: NetEvent) -> Fed {
        let ours = self.interface.index;
        // An address gone may have been the heartbeats' source: the next one goes out from the
        // one the kernel picks now.
        self.pacer.lock().outbox.sender.refresh_source();
        match event {
            NetEvent::Link { name, index, usable } if name == self.config.iface => {
                if index != ours {
                    self.follow(index);
                }
                self.feed_all(|now| Event::LinkChanged { now, up: usable })
            }
            NetEvent::LinkGone { index } if index == ours => {
                self.feed_all(|now| Event::LinkChanged { now, up: false })
            }
            NetEvent::AddressRemoved { index, addr } if index == ours => {
                let now = monotonic_now();
                self.groups
                    .iter_mut()
                    .enumerate()
                    .filter(|(_, group)| group.vips.vips().iter().any(|vip| vip.addr == addr))
                    .map(|(index, group)| (index, group.election.handle(Event::VipRemoved { now })))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// The interface was recreated under its name (a new index): attaches XDP to it, and points
    /// the VIPs, the heartbeats and the gratuitous ARP at it. The node id stays the one it
    /// started with, whatever the new interface's MAC.
    fn follow(&mut self, index: u32) {
        let Some(interface) = pnet::datalink::interfaces().into_iter().find(|i| i.index == index) else {
            return warn!(index, "{} changed index but is not to be found", self.config.iface);
        };
        info!(old = self.interface.index, new = index, "{} was recreated: following it", self.config.iface);
        if let Err(err) = self.datapath.reattach(&self.config.iface, self.config.xdp_mode) {
            error!(error = err.as_dyn(), "attaching XDP to the recreated interface failed");
        }
        for group in &mut self.groups {
            group.vips.set_ifindex(index);
        }
        if let Err(err) = self.pacer.lock().outbox.sender.rebind(&interface, &self.config.destination) {
            error!(error = err.as_dyn(), "opening the heartbeat socket on the recreated interface failed");
        }
        self.interface = interface;
    }

    /// Takes group `index`'s VIPs off, stopping any gratuitous ARP burst still under way.
    pub(super) async fn remove_vips(&mut self, index: usize) {
        let group = &self.groups[index];
        group.holding.released();
        match group.vips.remove_all().await {
            Ok(count) => info!(group = %group.config.id, count, "VIPs removed"),
            Err(err) => error!(group = %group.config.id, error = err.as_dyn(), "removing the VIPs failed"),
        }
    }

    /// Announces group `index`'s VIPs: `rounds` rounds at the configured spacing (see
    /// [`Group::announce`]).
    pub(super) fn announce(&self, index: usize, rounds: u32) {
        self.groups[index].announce(&self.interface, rounds, self.config.garp.spacing);
    }

    /// Looks at the XDP counters for misconfigurations: logs each at most once a minute, and
    /// tells the elections when another node uses our id.
    pub(super) fn watch_counters(&mut self) -> Fed {
        let now = monotonic_now();
        let period =
            if self.config.metrics_listen.is_some() { SCRAPED_COUNTER_PERIOD } else { COUNTER_PERIOD };
        if !self.counters.due(now, period) {
            return Vec::new();
        }
        let read = self.datapath.stats();
        self.counters = CounterReads { last: now, asked: false, stats: read.as_ref().ok().copied() };
        let stats = match read {
            Ok(stats) => stats,
            Err(err) => {
                warn!(error = err.as_dyn(), "reading the XDP counters failed");
                return Vec::new();
            }
        };
        self.metrics.observe_xdp(&stats);
        for (alarm, heartbeats) in self.alarms.observe(now, &stats) {
            self.metrics.alarm(alarm.name());
            warn!(heartbeats, "{alarm}");
        }
        if self.alarms.last_seen(Alarm::DuplicateNodeId) == Some(now) {
            self.feed_all(|now| Event::DuplicateNodeId { now })
        } else {
            Vec::new()
        }
    }

    /// Raises the one-way-link alarm while an election finds peers that cannot hear us.
    pub(super) fn watch_deaf_peers(&mut self, now: Duration) {
        let deaf: Vec<String> = self
            .groups
            .iter()
            .flat_map(|group| group.election.deaf_peers(now))
            .map(|node| node.to_string())
            .collect();
        if !deaf.is_empty() && self.alarms.raise(now, Alarm::OneWayLink) {
            self.metrics.alarm(Alarm::OneWayLink.name());
            warn!(peers = ?deaf, "{}", Alarm::OneWayLink);
        }
    }

    /// The loop turned: the XDP lease, the pacer's grace and the systemd watchdog, all kept
    /// alive by it.
    pub(super) fn loop_turned(&mut self) {
        self.renew_lease();
        self.pacer.lock().plan.loop_turned(monotonic_now());
        self.notifier.alive();
    }

    /// Tells systemd the agent serves, and in which states.
    pub(super) fn ready(&self) {
        let states: Vec<String> =
            self.groups.iter().map(|g| format!("group {} {}", g.config.id, g.election.state())).collect();
        self.notifier.ready(&format!("{} on {}", states.join(", "), self.config.iface));
    }

    /// Keeps the XDP fence down for another dead time while a group holds VIPs (ACTIVE, or
    /// RELEASING until its successor takes over): this agent is alive and its loop turns. With
    /// none held the fence is disarmed, so a STANDBY that sleeps longer than a lease does not
    /// fence the VIPs its peers hold.
    pub(super) fn renew_lease(&mut self) {
        let holding = self
            .groups
            .iter()
            .any(|group| matches!(group.election.state(), State::Active | State::Releasing));
        self.keep_fence(holding);
    }

    fn keep_fence(&mut self, armed: bool) {
        if let Err(err) = self.datapath.keep_fence(armed, monotonic_now()) {
            warn!(error = err.as_dyn(), "renewing the XDP lease failed");
        }
    }
}

/// An error as a tracing field: the subscriber prints it with its sources.
pub(super) trait AsDynError {
    fn as_dyn(&self) -> &(dyn std::error::Error + 'static);
}

impl<E: std::error::Error + 'static> AsDynError for E {
    fn as_dyn(&self) -> &(dyn std::error::Error + 'static) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn the_counters_are_due_a_period_after_the_last_read_or_when_asked() {
        let reads = CounterReads { last: ms(1_000), ..CounterReads::default() };
        assert!(!reads.due(ms(1_499), SCRAPED_COUNTER_PERIOD));
        assert!(reads.due(ms(1_500), SCRAPED_COUNTER_PERIOD));
        assert!(!reads.due(ms(10_999), COUNTER_PERIOD));
        assert!(reads.due(ms(11_000), COUNTER_PERIOD));
        let asked = CounterReads { asked: true, ..reads };
        assert!(asked.due(ms(1_001), COUNTER_PERIOD), "an event or a command asks at once");
    }
}
