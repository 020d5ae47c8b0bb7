//! The election's settings, its states, and what a node advertises.

use std::{fmt, time::Duration};

use ha_common::NodeState;

use crate::ids::NodeId;

/// A settled STANDBY (no change for a dead time) sends a heartbeat every this many intervals:
/// the ACTIVE's successor needs only to know it is there, and its peers judge it by the interval
/// it advertises. Any change of its own brings it back to every interval for a dead time.
pub const STANDBY_EVERY: u32 = 10;

/// This node's fixed election settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// This node's id.
    pub node_id: NodeId,
    /// This node's worthiness, 1 to 255.
    pub priority: u8,
    /// How long this node listens before it may win, and how long a peer with this node's
    /// interval may stay silent before it is dead.
    pub dead_time: Duration,
    /// This node's heartbeat interval: a peer may stay silent for its own interval times
    /// `dead_time / interval` ([`Settings::dead_factor`]).
    pub interval: Duration,
    /// How often an ACTIVE announces the VIPs again when nothing else made it; `None`: never.
    pub garp_refresh: Option<Duration>,
    /// Whether this node, more worthy, takes the VIPs from a live less worthy ACTIVE (keepalived's
    /// `nopreempt` is `false`).
    pub preempt: bool,
    /// How long after it starts listening (at start, or after a FAULT) this node waits before it
    /// preempts a live ACTIVE.
    pub preempt_delay: Duration,
    /// Whether this node, as the ACTIVE's successor, probes it once it is silent for a little
    /// over an interval instead of waiting out the dead time (see `election/suspicion.rs`).
    pub probes: bool,
}

impl Settings {
    /// The dead time in intervals (3.5 by default), applied to each peer's own interval.
    #[must_use]
    pub fn dead_factor(&self) -> f64 {
        self.dead_time.as_secs_f64() / self.interval.as_secs_f64().max(f64::MIN_POSITIVE)
    }
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
    /// Cannot serve (see [`Fault`](super::Fault)): not holding the VIPs, advertising priority 0.
    Fault,
    /// Drained by the operator (`ha-agent ctl drain`): out of elections until resumed, not holding
    /// the VIPs, advertising priority 0.
    Maintenance,
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
            Self::Fault => "FAULT",
            Self::Maintenance => "MAINTENANCE",
            Self::Stopped => "STOPPED",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Releasing, it hands the VIPs to this node (`ctl handover`).
    pub handover_to: Option<NodeId>,
    /// It holds the VIPs because a handover gave them to it: more worthy nodes leave it be.
    pub chosen: bool,
    /// The interval its next heartbeat may take: a settled STANDBY's is [`STANDBY_EVERY`]
    /// intervals.
    pub interval: Duration,
    /// It is about to re-execute itself: its successor waits out the dead time rather than probe.
    /// Set by the I/O layer on the last heartbeats before a `SIGUSR2` re-execution.
    pub restarting: bool,
}
