//! Whom a node counts as more worthy or live, and when a STANDBY may win: after its own
//! listening, once more worthy peers are silent, not while a peer hands the VIPs to another node,
//! and against a live ACTIVE only as the preemption policy (and an operator's handover) allow.

use std::time::Duration;

use ha_common::NodeState;

use super::{Election, PeerView};
use crate::ids::NodeId;

impl Election {
    pub(super) fn worth(&self) -> (u8, NodeId) {
        (self.settings.priority, self.settings.node_id)
    }

    pub(super) fn is_better(&self, peer: &PeerView) -> bool {
        peer.priority > 0 && (peer.priority, peer.node_id) > self.worth()
    }

    pub(super) fn is_live(&self, peer: &PeerView, now: Duration) -> bool {
        peer.is_live(now, self.settings.dead_factor())
            && self.unanswered != Some((peer.node_id, peer.last_seen))
    }

    /// When a STANDBY may win: a dead time after its own start, and each more worthy,
    /// non-releasing peer's own dead time after its last heartbeat, whichever is latest.
    pub(super) fn quiet_at(&self, peers: &[PeerView]) -> Duration {
        let factor = self.settings.dead_factor();
        peers
            .iter()
            .filter(|peer| self.is_better(peer))
            .map(|peer| peer.last_seen + peer.dead_time(factor))
            .fold(self.started_at + self.settings.dead_time, Duration::max)
    }

    /// When a STANDBY may win: [`Election::quiet_at`], and not while a peer hands its VIPs to
    /// another live node; and while a live peer serves, not before this node may preempt it
    /// (`preempt_delay` after it started listening), or, without preemption or when an operator
    /// chose that peer, not before it is dead.
    pub(super) fn promotion_at(&self, now: Duration, peers: &[PeerView]) -> Duration {
        let factor = self.settings.dead_factor();
        let me = self.settings.node_id;
        let handed_elsewhere = peers
            .iter()
            .filter(|p| {
                p.handover_to.is_some_and(|to| {
                    to != me && peers.iter().any(|q| q.node_id == to && self.is_live(q, now))
                })
            })
            .map(|p| p.last_seen + p.dead_time(factor))
            .max();
        let quiet = handed_elsewhere.into_iter().fold(self.quiet_at(peers), Duration::max);
        let serving = peers.iter().filter(|p| p.state == NodeState::Active && self.is_live(p, now));
        let chosen = serving.clone().any(|p| p.chosen);
        match serving.map(|p| p.last_seen + p.dead_time(factor)).max() {
            None => quiet,
            Some(dead_at) if !self.settings.preempt || chosen => quiet.max(dead_at),
            Some(_) => quiet.max(self.started_at + self.settings.preempt_delay),
        }
    }

    /// A live peer that hands its VIPs to this node, if any.
    pub(super) fn handing_to_me(&self, now: Duration, peers: &[PeerView]) -> Option<NodeId> {
        let factor = self.settings.dead_factor();
        peers
            .iter()
            .find(|p| {
                p.handover_to == Some(self.settings.node_id) && p.heard_within(now, p.dead_time(factor))
            })
            .map(|p| p.node_id)
    }
}
