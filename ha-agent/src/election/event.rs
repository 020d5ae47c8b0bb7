//! What goes into the election ([`Event`]) and what comes out ([`Output`]: [`Action`]s and a
//! [`Transition`]).

use std::time::Duration;

use super::{PeerView, State};

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
    /// [`Action::AddVips`] put every VIP on the interface.
    VipsAdded {
        /// Now, on the monotonic clock.
        now: Duration,
    },
    /// [`Action::AddVips`] failed for at least one VIP.
    AddVipsFailed {
        /// Now, on the monotonic clock.
        now: Duration,
        /// For every VIP: the node cannot serve at all.
        all: bool,
    },
    /// One of the VIPs went off the interface without an [`Action::RemoveVips`] (an admin, or a
    /// link flap that flushed it).
    VipRemoved {
        /// Now, on the monotonic clock.
        now: Duration,
    },
    /// The interface went down, lost its carrier or disappeared (`up == false`), or is usable
    /// again.
    LinkChanged {
        /// Now, on the monotonic clock.
        now: Duration,
        /// Whether it is up and has a carrier.
        up: bool,
    },
    /// The operator drains this node (`ctl drain`): hand over, then stay out of elections.
    Drain {
        /// Now, on the monotonic clock.
        now: Duration,
    },
    /// The operator resumes a drained node (`ctl resume`).
    Undrain {
        /// Now, on the monotonic clock.
        now: Duration,
    },
    /// An authentic heartbeat with this node's id arrived from another node.
    DuplicateNodeId {
        /// Now, on the monotonic clock.
        now: Duration,
    },
    /// The tracked health checks changed this group's worthiness or its ability to serve.
    Health {
        /// Now, on the monotonic clock.
        now: Duration,
        /// The priority the checks' weights make (see `checks::worthiness`).
        priority: u8,
        /// A check without a weight is down: the group cannot serve.
        failing: bool,
    },
    /// The ACTIVE this node probes answered a probe of the burst under way.
    ProbeAnswered {
        /// Now, on the monotonic clock.
        now: Duration,
        /// The node that answered.
        from: crate::ids::NodeId,
    },
    /// A heartbeat was sent (`ok`) or failed to go out.
    HeartbeatSent {
        /// Now, on the monotonic clock.
        now: Duration,
        /// Whether it went out.
        ok: bool,
    },
    /// A probe was sent (`ok`) or failed to go out: a send for the fault rules, as a heartbeat
    /// is, but only the suspected ACTIVE hears it, so the slow rate's clock does not restart from
    /// it (every burst would put off the heartbeat the other peers time this node by).
    ProbeSent {
        /// Now, on the monotonic clock.
        now: Duration,
        /// Whether it went out.
        ok: bool,
    },
    /// At start: the previous agent on this node renewed its lease less than a dead time ago and
    /// the VIPs are still on the interface. It was ACTIVE, and its peers have not taken over
    /// yet: carry on as ACTIVE rather than give the VIPs up and win them back.
    Resume {
        /// Now, on the monotonic clock.
        now: Duration,
    },
}

impl Event<'_> {
    /// When it happened.
    #[must_use]
    pub const fn now(&self) -> Duration {
        match *self {
            Self::Tick { now, .. }
            | Self::Shutdown { now }
            | Self::VipsAdded { now }
            | Self::AddVipsFailed { now, .. }
            | Self::VipRemoved { now }
            | Self::LinkChanged { now, .. }
            | Self::Drain { now }
            | Self::Undrain { now }
            | Self::DuplicateNodeId { now }
            | Self::Health { now, .. }
            | Self::ProbeAnswered { now, .. }
            | Self::HeartbeatSent { now, .. }
            | Self::ProbeSent { now, .. }
            | Self::Resume { now } => now,
        }
    }
}

/// A side effect for the I/O layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Put the VIPs on the interface.
    AddVips,
    /// Take the VIPs off the interface.
    RemoveVips,
    /// Announce the VIPs' new MAC (gratuitous ARP / unsolicited neighbour advertisement): the
    /// configured burst.
    SendGratuitousArp,
    /// Announce the VIPs once more (the periodic refresh): one round.
    RefreshGratuitousArp,
    /// Send a heartbeat now, out of turn, so that peers learn the new state at once.
    SendHeartbeat,
    /// Send a probe (a heartbeat with `FLAG_PROBE`) to the ACTIVE `to`, which answers at once if
    /// its agent's loop turns; `first` starts a burst.
    SendProbe {
        /// The node probed.
        to: crate::ids::NodeId,
        /// The first probe of a burst.
        first: bool,
    },
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
