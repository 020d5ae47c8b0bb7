//! Claimants: less worthy peers that say ACTIVE while this node is, and which of them cannot be
//! hearing it (a one-way link).

use std::time::Duration;

use ha_common::NodeState;

use super::{Election, PeerView};
use crate::ids::NodeId;

impl Election {
    /// Less worthy peers that have claimed ACTIVE for more than two dead times while this node
    /// was ACTIVE and sending. A peer that heard us would have stepped down at once: these do not
    /// hear us (a one-way link, a filter), and the LAN has two holders.
    #[must_use]
    pub fn deaf_peers(&self, now: Duration) -> Vec<NodeId> {
        self.claimants
            .iter()
            .filter(|(_, since)| now.saturating_sub(*since) > self.settings.dead_time * 2)
            .map(|(node_id, _)| *node_id)
            .collect()
    }

    /// Keeps [`Election::deaf_peers`]'s record: which less worthy live peers claim ACTIVE now.
    pub(super) fn track_claimants(&mut self, now: Duration, peers: &[PeerView]) {
        let claiming = |id: NodeId| {
            peers.iter().any(|p| {
                p.node_id == id && p.state == NodeState::Active && !self.is_better(p) && self.is_live(p, now)
            })
        };
        let still: Vec<(NodeId, Duration)> =
            self.claimants.iter().copied().filter(|(id, _)| claiming(*id)).collect();
        let new: Vec<(NodeId, Duration)> = peers
            .iter()
            .filter(|p| claiming(p.node_id) && !still.iter().any(|(id, _)| *id == p.node_id))
            .map(|p| (p.node_id, now))
            .collect();
        self.claimants = still.into_iter().chain(new).collect();
    }
}
