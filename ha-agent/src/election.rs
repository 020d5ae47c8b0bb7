//! The election: a pure state machine. No sockets, no clocks: time and the peer table are passed
//! in, side effects come out as [`Action`]s for the I/O layer (`daemon`) to carry out. Unit tests
//! and the simulator in this module drive it by the thousand without root.
//!
//! Rules (see `docs/DESIGN.md`):
//! - every node starts STANDBY;
//! - worthiness is (priority, node id): the higher priority wins, the higher node id breaks ties;
//! - a peer is *live* while its last heartbeat is at most the dead time old and its priority is
//!   not 0 (0 announces a release);
//! - a STANDBY becomes ACTIVE once it has heard no more worthy peer (releasing peers excluded)
//!   for the dead time, counted from its own start or from the last such heartbeat, whichever is
//!   later: so a release hands over at once, a dead peer after the dead time;
//! - an ACTIVE that hears a more worthy live ACTIVE steps down at once (preemption, and the end of
//!   a split brain after a partition heals);
//! - a node that steps down says so for two dead times (the `YIELDED` heartbeat flag); while an
//!   ACTIVE hears a less worthy peer that is ACTIVE or has yielded (a *claimant*: it may have
//!   pointed the LAN's ARP caches at itself, after a healed partition or a false takeover under
//!   loss), it announces the VIP again at once and then at most once per dead time. The flag
//!   outlives the claimant's last announcement by the dead time, so ours comes after it;
//! - on shutdown an ACTIVE announces priority 0 and keeps the VIP until a peer is ACTIVE (or the
//!   dead time has passed, or there is no live peer), so a planned stop has no gap;
//! - an ACTIVE whose VIPs did not all go on ([`Event::AddVipsFailed`]) tries again after the dead
//!   time, then at doubling delays up to [`MAX_ADD_RETRY`]; one removed behind its back
//!   ([`Event::VipRemoved`]) is put back at once;
//! - a node that cannot serve ([`Fault`]: its link down or gone, every VIP refused, heartbeats
//!   failing for a dead time, another node with its id) goes to FAULT: it gives the VIPs up and advertises priority 0, so
//!   that the next node takes over at once, as after a release. When no cause is left it is
//!   STANDBY again and listens for a dead time, as at start;
//! - an ACTIVE with a refresh period announces the VIPs again each period after its last
//!   announcement;
//! - the tracked health checks set the advertised priority ([`Event::Health`]); a check without a
//!   weight that is down is a FAULT cause;
//! - `ctl handover` releases to one named node, which takes over at once and, *chosen*, is not
//!   preempted while it holds the VIPs (`election/lifecycle.rs`, `election/promotion.rs`).

use std::time::Duration;

use ha_common::NodeState;

use crate::ids::NodeId;

mod claimants;
mod event;
mod fault;
mod lifecycle;
mod peer;
mod promotion;
mod state;
mod suspicion;

pub use event::{Action, Event, Output, Transition};
pub use fault::{Fault, Faults};
pub use lifecycle::HandoverError;
pub use peer::{PeerView, MAX_INTERVAL, MIN_INTERVAL};
pub use state::{Advert, Settings, State, STANDBY_EVERY};
pub use suspicion::{answer_window, probe_spacing, PROBES_PER_BURST, SUSPECT_AFTER, SUSPECT_AFTER_PERMILLE};

/// The longest wait between two tries to put the VIPs on after a failure.
pub const MAX_ADD_RETRY: Duration = Duration::from_secs(10);
/// The longest a node whose VIPs were all refused stays in FAULT before it tries again (if it
/// wins): each try that fails costs the group a handover of a few milliseconds.
pub const MAX_REFUSED_HOLD_OFF: Duration = Duration::from_mins(5);

/// The election state machine of one node.
#[derive(Clone, Debug)]
pub struct Election {
    settings: Settings,
    state: State,
    started_at: Duration,
    releasing_since: Duration,
    /// Until when this node's heartbeats say it yielded the VIP.
    yielded_until: Duration,
    /// When this node last announced the VIP (promotion, answer to a claimant, refresh).
    last_announced: Duration,
    /// While the VIPs are not all on: when to try again, and the wait after that.
    add_retry: Option<(Duration, Duration)>,
    /// Why this node might not be able to serve.
    faults: Faults,
    /// While ACTIVE: the less worthy live peers that claim ACTIVE too, and since when.
    claimants: Vec<(NodeId, Duration)>,
    /// Where a release ends: STOPPED for a shutdown, MAINTENANCE for a drain, STANDBY for a
    /// handover.
    release_to: State,
    /// While releasing for `ctl handover`: the node the VIPs go to.
    handover_to: Option<NodeId>,
    /// ACTIVE because a handover gave it the VIPs: advertised, so that more worthy nodes do
    /// not preempt it.
    chosen: bool,
    /// While a STANDBY suspects the ACTIVE it would succeed (see `election/suspicion.rs`).
    suspicion: Option<suspicion::Suspicion>,
    /// A peer that left a burst of probes unanswered, and its last heartbeat then: dead, whatever
    /// the dead time says, until it is heard again.
    unanswered: Option<(NodeId, Duration)>,
    /// The latest answer to a probe: from whom, and when it came.
    answered_at: Option<(NodeId, Duration)>,
    /// When this node last changed what it says (a transition, a new priority) or started, or
    /// heard a new peer: for two dead times after, it sends every interval whatever its state.
    changed_at: Duration,
    /// When its last heartbeat went out.
    last_sent: Duration,
    /// The time of the event being handled (or the last one).
    now: Duration,
    /// The peers heard so far: a new one is a change (it must hear this node at once).
    known: Vec<NodeId>,
}

impl Election {
    /// A node that starts now, STANDBY.
    pub fn new(settings: Settings, now: Duration) -> Self {
        Self {
            settings,
            state: State::Standby,
            started_at: now,
            releasing_since: Duration::ZERO,
            yielded_until: Duration::ZERO,
            last_announced: Duration::ZERO,
            add_retry: None,
            faults: Faults::default(),
            claimants: Vec::new(),
            release_to: State::Stopped,
            handover_to: None,
            chosen: false,
            suspicion: None,
            unanswered: None,
            answered_at: None,
            changed_at: now,
            last_sent: Duration::ZERO,
            now,
            known: Vec::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Its settings now.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A reload changed the settings: they apply from the next event on, the state stays. A new
    /// priority or preemption policy is acted on at the next tick (and heard by the peers at the
    /// next heartbeat), as if the node had been configured so all along.
    pub fn reconfigure(&mut self, settings: Settings) {
        let priority = settings.priority;
        self.settings = Settings { priority: self.settings.priority, ..settings };
        self.set_priority(priority);
    }

    /// Takes `priority` as this node's worthiness; a new one is a change (peers must hear it at
    /// once). Returns whether it was new.
    fn set_priority(&mut self, priority: u8) -> bool {
        let changed = priority != self.settings.priority;
        self.settings.priority = priority;
        if changed {
            self.changed_at = self.now;
        }
        changed
    }

    /// What this node's heartbeats say at `now`.
    pub fn advertised(&self, now: Duration) -> Advert {
        let (state, priority) = match self.state {
            State::Standby => (NodeState::Standby, self.settings.priority),
            State::Active => (NodeState::Active, self.settings.priority),
            State::Releasing => (NodeState::Active, 0),
            State::Stopped | State::Fault | State::Maintenance => (NodeState::Standby, 0),
        };
        Advert {
            state,
            priority,
            yielded: now < self.yielded_until,
            handover_to: self.handover_to.filter(|_| self.state == State::Releasing),
            chosen: self.chosen && self.state == State::Active,
            restarting: false,
            interval: if self.slow(now + self.settings.interval) {
                self.settings.interval * STANDBY_EVERY
            } else {
                self.settings.interval
            },
        }
    }

    /// What this node's heartbeats say at every interval from `now` until an event changes it,
    /// where nothing but an event can: an ACTIVE's, once it no longer says it yielded (which runs
    /// out with time). The loop hands these to the heartbeat pacer (`daemon/pacer.rs`) and stops
    /// waking for them; any other state's heartbeats it sends itself.
    #[must_use]
    pub fn steady_advert(&self, now: Duration) -> Option<Advert> {
        (self.state == State::Active && now >= self.yielded_until).then(|| self.advertised(now))
    }

    /// A peer heard for the first time is a change: this node beats every interval for two dead
    /// times, so that the newcomer hears it at once (a settled STANDBY would otherwise be silent
    /// to it for up to [`STANDBY_EVERY`] intervals).
    fn note_new_peers(&mut self, now: Duration, peers: &[PeerView]) {
        for peer in peers {
            if !self.known.contains(&peer.node_id) {
                self.known.push(peer.node_id);
                self.changed_at = now;
            }
        }
    }

    /// Whether a settled STANDBY sends at the slow rate at `now`: no change for two dead times,
    /// and no longer saying it yielded (the ACTIVE must hear that, even under loss).
    fn slow(&self, now: Duration) -> bool {
        self.state == State::Standby
            && now >= self.changed_at + self.settings.dead_time * 2
            && now >= self.yielded_until
    }

    /// Whether the periodic heartbeat is due at `now`: every interval, except for a settled
    /// STANDBY, every [`STANDBY_EVERY`] intervals (half an interval early, so that a tick's jitter
    /// never skips one). The heartbeat before the slow rate starts already advertises it.
    #[must_use]
    pub fn heartbeat_due(&self, now: Duration) -> bool {
        self.heartbeat_due_at(now) <= now
    }

    /// The earliest moment [`Election::heartbeat_due`] holds as things stand at `now`: `now` at
    /// the full rate; at the slow rate, half an interval before the next one. An event that
    /// brings back the full rate makes it earlier; the loop asks again after every event.
    #[must_use]
    pub fn heartbeat_due_at(&self, now: Duration) -> Duration {
        if self.slow(now) {
            let every = self.settings.interval * STANDBY_EVERY;
            (self.last_sent + every).saturating_sub(self.settings.interval / 2).max(now)
        } else {
            now
        }
    }

    /// A heartbeat or a probe went out (`ok`) or failed to at `now`: the fault rules hear of it.
    fn note_send(&mut self, now: Duration, ok: bool) -> Output {
        self.faults.note_send(now, ok);
        self.settle_faults(now).unwrap_or_default()
    }

    /// Feeds one event; returns the actions to carry out.
    pub fn handle(&mut self, event: Event<'_>) -> Output {
        self.now = event.now();
        match event {
            Event::Tick { now, peers } => {
                self.note_new_peers(now, peers);
                let peers = self.with_answers(peers);
                self.settle_faults(now).unwrap_or_else(|| self.tick(now, &peers))
            }
            Event::Shutdown { now } => self.shutdown(now),
            Event::Resume { now } => self.resume(now),
            Event::Drain { now } => self.drain(now),
            Event::Undrain { now } => self.undrain(now),
            Event::LinkChanged { now, up } => {
                self.faults.note_link(up);
                self.settle_faults(now).unwrap_or_default()
            }
            Event::DuplicateNodeId { now } => {
                self.faults.note_duplicate(now);
                self.settle_faults(now).unwrap_or_default()
            }
            Event::Health { now, priority, failing } => {
                self.faults.note_check(failing);
                let changed = self.set_priority(priority);
                // Peers must hear a new worthiness at once: a STANDBY may now win, or this
                // node preempt the ACTIVE.
                let heartbeat = if changed { vec![Action::SendHeartbeat] } else { Vec::new() };
                self.settle_faults(now).unwrap_or(Output { actions: heartbeat, transition: None })
            }
            Event::HeartbeatSent { now, ok } => {
                if ok {
                    self.last_sent = now;
                }
                self.note_send(now, ok)
            }
            Event::ProbeSent { now, ok } => self.note_send(now, ok),
            Event::ProbeAnswered { now, from } => {
                self.note_answer(now, from);
                Output::default()
            }
            Event::VipsAdded { .. } => {
                self.add_retry = None;
                self.faults.note_vips_added();
                Output::default()
            }
            Event::AddVipsFailed { now, all } if self.state == State::Active => {
                if all {
                    self.faults.note_vips_refused(now, self.settings.dead_time);
                    return self.settle_faults(now).unwrap_or_default();
                }
                let delay = self.add_retry.map_or(self.settings.dead_time, |(_, delay)| delay);
                self.add_retry = Some((now + delay, (delay * 2).min(MAX_ADD_RETRY)));
                Output::default()
            }
            Event::VipRemoved { .. } if self.state == State::Active => {
                Output { actions: vec![Action::AddVips], transition: None }
            }
            Event::AddVipsFailed { .. } | Event::VipRemoved { .. } => Output::default(),
        }
    }

    /// The causes of FAULT in force now, if any.
    pub fn fault(&self, now: Duration) -> Option<Fault> {
        self.faults.current(now, self.settings.dead_time)
    }

    /// Enters FAULT when a cause is in force, and leaves it when none is left; `None` when the
    /// state stays as it is.
    fn settle_faults(&mut self, now: Duration) -> Option<Output> {
        let cause = self.fault(now);
        match (self.state, cause) {
            (State::Active, Some(cause)) => Some(self.go(
                State::Fault,
                format!("cannot serve: {cause}"),
                vec![Action::RemoveVips, Action::SendHeartbeat],
            )),
            (State::Standby, Some(cause)) => {
                Some(self.go(State::Fault, format!("cannot serve: {cause}"), vec![Action::SendHeartbeat]))
            }
            (State::Fault, None) => {
                // What it heard while it could not serve may be stale: listen afresh, as at start.
                self.started_at = now;
                Some(self.go(
                    State::Standby,
                    "the fault cleared: listening for a dead time".to_string(),
                    vec![Action::SendHeartbeat],
                ))
            }
            _ => None,
        }
    }

    /// When the election must be re-evaluated even if no heartbeat changes anything: the moment a
    /// STANDBY's more worthy peers will all have been silent for the dead time, a release times
    /// out, an ACTIVE's refresh or VIP retry is due. `None` when only a heartbeat can change the
    /// outcome.
    pub fn next_deadline(&self, now: Duration, peers: &[PeerView]) -> Option<Duration> {
        self.next_deadline_watched(now, peers, None)
    }

    /// [`Election::next_deadline`] while a watch outside the election looks out for the silence
    /// of `watched` (see [`Election::silence_to_watch`]): if that is the ACTIVE this STANDBY would
    /// succeed, its silence wakes the loop, and neither the start of a suspicion nor the ACTIVE's
    /// dead time, which both follow that silence, needs the clock.
    #[must_use]
    pub fn next_deadline_watched(
        &self,
        now: Duration,
        peers: &[PeerView],
        watched: Option<NodeId>,
    ) -> Option<Duration> {
        let covered = watched.is_some() && watched == self.silence_to_watch(now, peers);
        let peers = &self.with_answers(peers)[..];
        let fault_change = self.faults.next_change(now, self.settings.dead_time);
        let own = match self.state {
            State::Standby if covered => self.promotion_beside(now, peers, watched),
            State::Standby => Some(self.promotion_at(now, peers))
                .into_iter()
                .chain(self.suspicion_deadline(now, peers))
                .min(),
            State::Releasing => Some(self.releasing_since + self.settings.dead_time),
            State::Active => {
                let refresh = self.settings.garp_refresh.map(|period| self.last_announced + period);
                let retry = self.add_retry.map(|(at, _)| at);
                refresh.into_iter().chain(retry).min()
            }
            State::Fault | State::Maintenance | State::Stopped => None,
        };
        own.into_iter().chain(fault_change).min()
    }

    /// When this STANDBY may win while the ACTIVE `watched` stays alive (its silence, watched
    /// elsewhere, wakes the loop): a preemption's delay, for one; `None` if only its death would
    /// let it win.
    fn promotion_beside(
        &self,
        now: Duration,
        peers: &[PeerView],
        watched: Option<NodeId>,
    ) -> Option<Duration> {
        // Heard a day from now, the ACTIVE's own dead time is out of the picture.
        let far = now + Duration::from_hours(24);
        let alive: Vec<PeerView> = peers
            .iter()
            .map(|peer| {
                let last_seen = if Some(peer.node_id) == watched { far } else { peer.last_seen };
                PeerView { last_seen, ..*peer }
            })
            .collect();
        Some(self.promotion_at(now, &alive)).filter(|at| *at < far)
    }

    fn go(&mut self, to: State, reason: String, actions: Vec<Action>) -> Output {
        let from = self.state;
        self.state = to;
        // The transition's own heartbeat, and a dead time of them at every interval.
        self.changed_at = self.now;
        if to != State::Standby {
            self.suspicion = None;
        }
        if to != State::Active {
            self.add_retry = None;
            self.claimants.clear();
            self.chosen = false;
        }
        if to != State::Releasing {
            self.handover_to = None;
        }
        Output { actions, transition: Some(Transition { from, to, reason }) }
    }

    fn tick(&mut self, now: Duration, peers: &[PeerView]) -> Output {
        match self.state {
            State::Standby => {
                if let Some(giver) = self.handing_to_me(now, peers) {
                    self.chosen = true;
                    self.last_announced = now;
                    return self.go(
                        State::Active,
                        format!("peer {giver} hands the VIPs over to this node"),
                        vec![Action::AddVips, Action::SendGratuitousArp, Action::SendHeartbeat],
                    );
                }
                if let Some(output) = self.suspect(now, peers) {
                    return output;
                }
                if now < self.promotion_at(now, peers) {
                    return Output::default();
                }
                let released: Vec<NodeId> = peers
                    .iter()
                    .filter(|p| {
                        p.priority == 0 && p.heard_within(now, p.dead_time(self.settings.dead_factor()))
                    })
                    .map(|p| p.node_id)
                    .collect();
                let reason = if released.is_empty() {
                    format!("no more worthy peer heard for {} ms", self.settings.dead_time.as_millis())
                } else {
                    format!("peer {} released the VIP and no more worthy peer is live", fmt_ids(&released))
                };
                self.last_announced = now;
                self.go(
                    State::Active,
                    reason,
                    vec![Action::AddVips, Action::SendGratuitousArp, Action::SendHeartbeat],
                )
            }
            State::Active => {
                let winner = peers
                    .iter()
                    .filter(|p| p.state == NodeState::Active && self.is_better(p) && self.is_live(p, now))
                    .max_by_key(|p| (p.priority, p.node_id));
                let claimant = peers.iter().any(|p| {
                    (p.state == NodeState::Active || p.yielded) && !self.is_better(p) && self.is_live(p, now)
                });
                self.track_claimants(now, peers);
                let announced_lately = now.saturating_sub(self.last_announced) < self.settings.dead_time;
                match winner {
                    None if claimant && !announced_lately => {
                        self.last_announced = now;
                        Output {
                            actions: vec![Action::SendGratuitousArp, Action::SendHeartbeat],
                            transition: None,
                        }
                    }
                    Some(peer) => {
                        self.yielded_until = now + self.settings.dead_time * 2;
                        self.go(
                            State::Standby,
                            format!(
                                "more worthy ACTIVE peer {} (priority {}) heard",
                                peer.node_id, peer.priority
                            ),
                            vec![Action::RemoveVips, Action::SendHeartbeat],
                        )
                    }
                    None => self.upkeep(now),
                }
            }
            State::Releasing => {
                let successor = peers.iter().find(|p| p.state == NodeState::Active && self.is_live(p, now));
                let any_live = peers.iter().any(|p| self.is_live(p, now));
                let reason = if let Some(peer) = successor {
                    format!("peer {} took over", peer.node_id)
                } else if !any_live {
                    "no live peer to hand over to".to_string()
                } else if now.saturating_sub(self.releasing_since) >= self.settings.dead_time {
                    format!("no peer took over within {} ms", self.settings.dead_time.as_millis())
                } else {
                    return Output::default();
                };
                let last =
                    if self.release_to == State::Stopped { Action::Exit } else { Action::SendHeartbeat };
                self.go(self.release_to, reason, vec![Action::RemoveVips, last])
            }
            // Settled by `settle_faults` before every tick, or by the operator: nothing to decide.
            State::Fault | State::Maintenance | State::Stopped => Output::default(),
        }
    }

    /// What an ACTIVE with nothing to decide still owes: a VIP retry, a refresh, when due.
    fn upkeep(&mut self, now: Duration) -> Output {
        let mut actions = Vec::new();
        if let Some((at, delay)) = self.add_retry {
            if now >= at {
                // Kept until the I/O layer reports the outcome; pushed back meanwhile so that
                // this tick's retry is the only one.
                self.add_retry = Some((now + delay, delay));
                actions.push(Action::AddVips);
            }
        }
        if self.settings.garp_refresh.is_some_and(|period| now >= self.last_announced + period) {
            self.last_announced = now;
            actions.push(Action::RefreshGratuitousArp);
        }
        Output { actions, transition: None }
    }
}

fn fmt_ids(ids: &[NodeId]) -> String {
    ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
