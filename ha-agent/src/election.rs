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
//! - a node that steps down says so for the dead time (the `YIELDED` heartbeat flag); while an
//!   ACTIVE hears a less worthy peer that is ACTIVE or has yielded (a *claimant*: it may have
//!   pointed the LAN's ARP caches at itself, after a healed partition or a false takeover under
//!   loss), it announces the VIP again at once and then at most once per dead time. The flag
//!   outlives the claimant's last announcement by the dead time, so ours comes after it;
//! - on shutdown an ACTIVE announces priority 0 and keeps the VIP until a peer is ACTIVE (or the
//!   dead time has passed, or there is no live peer), so a planned stop has no gap.

use std::{fmt, time::Duration};

use ha_common::NodeState;

/// This node's fixed election settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// This node's id.
    pub node_id: u32,
    /// This node's worthiness, 1 to 255.
    pub priority: u8,
    /// How long a peer may stay silent before it is dead.
    pub dead_time: Duration,
}

/// The node's own state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not holding the VIP.
    Standby,
    /// Holding the VIP.
    Active,
    /// Shutting down while ACTIVE: the release is announced, the VIP kept until a peer takes over.
    Releasing,
    /// Done: the agent exits.
    Stopped,
}

impl State {
    /// Upper-case name for logs and status.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Standby => "STANDBY",
            Self::Active => "ACTIVE",
            Self::Releasing => "RELEASING",
            Self::Stopped => "STOPPED",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the election needs to know of one peer (from the XDP program's peer map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// The peer's node id.
    pub node_id: u32,
    /// The peer's advertised worthiness; 0 while it releases.
    pub priority: u8,
    /// The peer's advertised state.
    pub state: NodeState,
    /// When its last valid heartbeat arrived, on the monotonic clock.
    pub last_seen: Duration,
    /// Its last heartbeat said it recently gave the VIP up.
    pub yielded: bool,
}

/// What this node's heartbeats say right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advert {
    /// Its state.
    pub state: NodeState,
    /// Its worthiness; 0 once it releases.
    pub priority: u8,
    /// It gave up the VIP to a more worthy node within the last dead time.
    pub yielded: bool,
}

/// An input to the election.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// Time passed or the peer table changed: re-evaluate.
    Tick {
        /// Now, on the monotonic clock.
        now: Duration,
        /// Every peer of this group the XDP program has recorded.
        peers: &'a [PeerView],
    },
    /// SIGTERM or SIGINT: release the VIP and stop.
    Shutdown {
        /// Now, on the monotonic clock.
        now: Duration,
    },
}

/// A side effect for the I/O layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Put the VIPs on the interface.
    AddVips,
    /// Take the VIPs off the interface.
    RemoveVips,
    /// Announce the VIPs' new MAC (gratuitous ARP / unsolicited neighbour advertisement).
    SendGratuitousArp,
    /// Send a heartbeat now, out of turn, so that peers learn the new state at once.
    SendHeartbeat,
    /// Leave the main loop.
    Exit,
}

/// A change of state, with the reason logged once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// Why, in words.
    pub reason: String,
}

/// What one event produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Side effects, in the order they must be carried out.
    pub actions: Vec<Action>,
    /// The state change, if any.
    pub transition: Option<Transition>,
}

/// The election state machine of one node.
#[derive(Clone, Debug)]
pub struct Election {
    settings: Settings,
    state: State,
    started_at: Duration,
    releasing_since: Duration,
    /// Until when this node's heartbeats say it yielded the VIP.
    yielded_until: Duration,
    /// When this node last announced the VIP (promotion or answer to a claimant).
    last_announced: Duration,
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
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What this node's heartbeats say at `now`.
    pub fn advertised(&self, now: Duration) -> Advert {
        let (state, priority) = match self.state {
            State::Standby => (NodeState::Standby, self.settings.priority),
            State::Active => (NodeState::Active, self.settings.priority),
            State::Releasing => (NodeState::Active, 0),
            State::Stopped => (NodeState::Standby, 0),
        };
        Advert { state, priority, yielded: now < self.yielded_until }
    }

    /// Feeds one event; returns the actions to carry out.
    pub fn handle(&mut self, event: Event<'_>) -> Output {
        match event {
            Event::Tick { now, peers } => self.tick(now, peers),
            Event::Shutdown { now } => self.shutdown(now),
        }
    }

    /// When the election must be re-evaluated even if no heartbeat changes anything: the moment a
    /// STANDBY's more worthy peers will all have been silent for the dead time, or a release
    /// times out. `None` when only a heartbeat can change the outcome.
    pub fn next_deadline(&self, peers: &[PeerView]) -> Option<Duration> {
        match self.state {
            State::Standby => Some(self.last_heard_better(peers) + self.settings.dead_time),
            State::Releasing => Some(self.releasing_since + self.settings.dead_time),
            State::Active | State::Stopped => None,
        }
    }

    fn worth(&self) -> (u8, u32) {
        (self.settings.priority, self.settings.node_id)
    }

    fn is_better(&self, peer: &PeerView) -> bool {
        peer.priority > 0 && (peer.priority, peer.node_id) > self.worth()
    }

    fn heard_recently(&self, peer: &PeerView, now: Duration) -> bool {
        now.saturating_sub(peer.last_seen) <= self.settings.dead_time
    }

    fn is_live(&self, peer: &PeerView, now: Duration) -> bool {
        peer.priority > 0 && self.heard_recently(peer, now)
    }

    /// The later of this node's start and the last heartbeat of a more worthy, non-releasing peer.
    fn last_heard_better(&self, peers: &[PeerView]) -> Duration {
        peers
            .iter()
            .filter(|peer| self.is_better(peer))
            .map(|peer| peer.last_seen)
            .fold(self.started_at, Duration::max)
    }

    fn go(&mut self, to: State, reason: String, actions: Vec<Action>) -> Output {
        let from = self.state;
        self.state = to;
        Output { actions, transition: Some(Transition { from, to, reason }) }
    }

    fn tick(&mut self, now: Duration, peers: &[PeerView]) -> Output {
        match self.state {
            State::Standby => {
                let quiet_since = self.last_heard_better(peers);
                if now.saturating_sub(quiet_since) < self.settings.dead_time {
                    return Output::default();
                }
                let released: Vec<u32> = peers
                    .iter()
                    .filter(|p| p.priority == 0 && self.heard_recently(p, now))
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
                        self.yielded_until = now + self.settings.dead_time;
                        self.go(
                            State::Standby,
                            format!(
                                "more worthy ACTIVE peer {:#x} (priority {}) heard",
                                peer.node_id, peer.priority
                            ),
                            vec![Action::RemoveVips, Action::SendHeartbeat],
                        )
                    }
                    None => Output::default(),
                }
            }
            State::Releasing => {
                let successor = peers.iter().find(|p| p.state == NodeState::Active && self.is_live(p, now));
                let any_live = peers.iter().any(|p| self.is_live(p, now));
                let reason = if let Some(peer) = successor {
                    format!("peer {:#x} took over", peer.node_id)
                } else if !any_live {
                    "no live peer to hand over to".to_string()
                } else if now.saturating_sub(self.releasing_since) >= self.settings.dead_time {
                    format!("no peer took over within {} ms", self.settings.dead_time.as_millis())
                } else {
                    return Output::default();
                };
                self.go(State::Stopped, reason, vec![Action::RemoveVips, Action::Exit])
            }
            State::Stopped => Output::default(),
        }
    }

    fn shutdown(&mut self, now: Duration) -> Output {
        match self.state {
            State::Active => {
                self.releasing_since = now;
                self.go(
                    State::Releasing,
                    "shutdown requested: announcing the release".to_string(),
                    vec![Action::SendHeartbeat],
                )
            }
            State::Standby => self.go(
                State::Stopped,
                "shutdown requested".to_string(),
                vec![Action::SendHeartbeat, Action::Exit],
            ),
            // A second signal while releasing: stop waiting for a successor.
            State::Releasing => self.go(
                State::Stopped,
                "second shutdown request".to_string(),
                vec![Action::RemoveVips, Action::Exit],
            ),
            State::Stopped => Output::default(),
        }
    }
}

fn fmt_ids(ids: &[u32]) -> String {
    ids.iter().map(|id| format!("{id:#x}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
