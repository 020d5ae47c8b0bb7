//! The node's lifecycle beyond the election proper: a restart that resumes, a shutdown, and
//! maintenance. An operator drains a node (`ha-agent ctl drain`) and resumes it: a drained ACTIVE
//! hands the VIPs over as a planned stop does, gap-free, then stays out of elections (priority 0)
//! instead of exiting, until resumed.

use std::time::Duration;

use super::{Action, Election, Output, PeerView, State};
use crate::ids::NodeId;

/// Why a handover cannot happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandoverError {
    /// Only the ACTIVE hands over.
    #[error("this node is {0}, not ACTIVE: run the handover on the node that holds the VIPs")]
    NotActive(State),
    /// The target is not a live peer.
    #[error("node {0} is not a live peer of this group")]
    NotLive(NodeId),
    /// No live peer to hand over to.
    #[error("no live peer to hand over to")]
    NoPeer,
}

impl Election {
    /// Starts a release that ends in `to` (STOPPED or MAINTENANCE): priority 0 is announced, the
    /// VIPs kept until a peer is ACTIVE (or no peer is live, or a dead time passed).
    pub(super) fn release(&mut self, now: Duration, to: State, why: &str) -> Output {
        self.releasing_since = now;
        self.release_to = to;
        self.go(State::Releasing, format!("{why}: announcing the release"), vec![Action::SendHeartbeat])
    }

    /// `ctl drain`: out of elections, after a gap-free handover if ACTIVE.
    pub(super) fn drain(&mut self, now: Duration) -> Output {
        match self.state {
            State::Active => self.release(now, State::Maintenance, "drain requested"),
            State::Standby | State::Fault => {
                self.go(State::Maintenance, "drain requested".to_string(), vec![Action::SendHeartbeat])
            }
            State::Releasing | State::Maintenance | State::Stopped => Output::default(),
        }
    }

    /// `ctl handover [--to NODE]`: an ACTIVE hands its VIPs to `to`, or to its most worthy live
    /// peer, gap-free as in a drain, and stays in the election as a STANDBY. The new holder is
    /// *chosen*: no more worthy node preempts it, this one included, until it stops holding them.
    pub fn handover(
        &mut self,
        now: Duration,
        to: Option<NodeId>,
        peers: &[PeerView],
    ) -> Result<Output, HandoverError> {
        if self.state != State::Active {
            return Err(HandoverError::NotActive(self.state));
        }
        let candidate = |p: &&PeerView| p.node_id != self.settings.node_id && self.is_live(p, now);
        let target = match to {
            Some(id) => {
                peers.iter().filter(candidate).find(|p| p.node_id == id).ok_or(HandoverError::NotLive(id))?
            }
            None => peers
                .iter()
                .filter(candidate)
                .max_by_key(|p| (p.priority, p.node_id))
                .ok_or(HandoverError::NoPeer)?,
        };
        self.handover_to = Some(target.node_id);
        Ok(self.release(now, State::Standby, &format!("handover to {} requested", target.node_id)))
    }

    /// `ctl resume`: back in elections; it listens for a dead time first, as at start.
    pub(super) fn undrain(&mut self, now: Duration) -> Output {
        if self.state != State::Maintenance {
            return Output::default();
        }
        self.started_at = now;
        self.go(
            State::Standby,
            "resume requested: listening for a dead time".to_string(),
            vec![Action::SendHeartbeat],
        )
    }

    pub(super) fn resume(&mut self, _now: Duration) -> Output {
        if self.state != State::Standby {
            return Output::default();
        }
        // Nothing is announced (the LAN already points at us), so `last_announced` stays: a
        // claimant that appeared during the restart is answered at once. AddVips confirms they
        // are all on (one removed meanwhile comes back); the heartbeat tells the peers at once
        // that the ACTIVE they were about to miss is still here.
        self.go(
            State::Active,
            "restarted within the dead time while holding the VIPs: resuming".to_string(),
            vec![Action::AddVips, Action::SendHeartbeat],
        )
    }

    pub(super) fn shutdown(&mut self, now: Duration) -> Output {
        match self.state {
            State::Active => self.release(now, State::Stopped, "shutdown requested"),
            State::Standby | State::Fault | State::Maintenance => self.go(
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
