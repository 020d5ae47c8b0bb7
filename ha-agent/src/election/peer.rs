//! What the election knows of a peer, read from the XDP program's peer map, and the one rule
//! that says whether a peer is live (the status report asks the same question here).

use std::time::Duration;

use ha_common::{NodeState, PeerKey, PeerRecord, FLAG_CHOSEN, FLAG_HANDOVER, FLAG_RESTARTING, FLAG_YIELDED};

use crate::ids::NodeId;

/// The shortest heartbeat interval a config may set.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The longest heartbeat interval a config may set.
pub const MAX_INTERVAL: Duration = Duration::from_mins(1);

/// What the election needs to know of one peer (from the XDP program's peer map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// The peer's node id.
    pub node_id: NodeId,
    /// The peer's advertised worthiness; 0 while it releases.
    pub priority: u8,
    /// The peer's advertised state.
    pub state: NodeState,
    /// When its last valid heartbeat arrived, on the monotonic clock.
    pub last_seen: Duration,
    /// Its last heartbeat said it recently gave the VIP up.
    pub yielded: bool,
    /// Its advertised heartbeat interval.
    pub interval: Duration,
    /// Releasing, it hands its VIPs to this node (`ctl handover`).
    pub handover_to: Option<NodeId>,
    /// It holds the VIPs because an operator handed them to it: it is not preempted.
    pub chosen: bool,
    /// It said it is about to re-execute itself: it is not probed.
    pub restarting: bool,
}

impl PeerView {
    /// The view of one peer-map entry; `None` for a record whose state is no [`NodeState`]
    /// (the XDP program only stores decoded heartbeats, so that would be a foreign writer).
    #[must_use]
    pub fn from_record(key: &PeerKey, record: &PeerRecord) -> Option<Self> {
        Some(Self {
            node_id: NodeId(key.node_id),
            priority: record.priority,
            state: NodeState::from_u8(record.state)?,
            last_seen: Duration::from_nanos(record.last_seen_ns),
            yielded: record.flags & FLAG_YIELDED != 0,
            interval: Duration::from_millis(u64::from(record.interval_ms)),
            handover_to: (record.flags & FLAG_HANDOVER != 0).then_some(NodeId(record.handover_to)),
            chosen: record.flags & FLAG_CHOSEN != 0,
            restarting: record.flags & FLAG_RESTARTING != 0,
        })
    }

    /// How long it may stay silent before it is dead: its own interval times `factor` (this
    /// node's dead time over its interval, 3.5 by default), so that peers running at another
    /// interval, during a rolling change for one, are judged by theirs. An interval outside what
    /// a config may set (10 ms to 60 s) counts as the nearest bound.
    #[must_use]
    pub fn dead_time(&self, factor: f64) -> Duration {
        self.interval.clamp(MIN_INTERVAL, MAX_INTERVAL).mul_f64(factor)
    }

    /// Heard within `dead_time` of `now`, whatever it said.
    #[must_use]
    pub fn heard_within(&self, now: Duration, dead_time: Duration) -> bool {
        now.saturating_sub(self.last_seen) <= dead_time
    }

    /// Live: heard within its dead time (see [`PeerView::dead_time`]), and not releasing
    /// (priority 0 announces a release).
    #[must_use]
    pub fn is_live(&self, now: Duration, factor: f64) -> bool {
        self.priority > 0 && self.heard_within(now, self.dead_time(factor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(group: u32, node_id: u32, state: u8, flags: u8) -> (PeerKey, PeerRecord) {
        let record = PeerRecord {
            last_seen_ns: 2_000_000_000,
            priority: 150,
            state,
            flags,
            interval_ms: 100,
            ..Default::default()
        };
        (PeerKey { group, node_id }, record)
    }

    #[test]
    fn a_record_becomes_a_view_and_one_with_no_valid_state_none() {
        let (key, record) = entry(1, 11, 2, FLAG_YIELDED);
        assert_eq!(
            PeerView::from_record(&key, &record),
            Some(PeerView {
                node_id: NodeId(11),
                priority: 150,
                state: NodeState::Active,
                last_seen: Duration::from_secs(2),
                yielded: true,
                interval: Duration::from_millis(100),
                handover_to: None,
                chosen: false,
                restarting: false,
            })
        );
        let (key, record) = entry(1, 13, 1, 0);
        let standby = PeerView::from_record(&key, &record).expect("a STANDBY's record");
        assert_eq!(
            (standby.node_id, standby.state, standby.yielded),
            (NodeId(13), NodeState::Standby, false)
        );
        let (key, record) = entry(1, 14, 9, 0);
        assert_eq!(PeerView::from_record(&key, &record), None);
    }

    #[test]
    fn liveness_is_its_own_dead_time_and_a_non_zero_priority() {
        let peer = PeerView::from_record(&entry(1, 11, 1, 0).0, &entry(1, 11, 1, 0).1).unwrap();
        let at = |ms| Duration::from_secs(2) + Duration::from_millis(ms);
        assert!(peer.is_live(at(350), 3.5));
        assert!(!peer.is_live(at(351), 3.5));
        let releasing = PeerView { priority: 0, ..peer };
        assert!(!releasing.is_live(at(0), 3.5));
        assert!(releasing.heard_within(at(0), Duration::from_millis(350)));
        // A peer at a 1 s interval is judged by its interval, not ours.
        let slow = PeerView { interval: Duration::from_secs(1), ..peer };
        assert!(slow.is_live(at(3500), 3.5));
        assert!(!slow.is_live(at(3501), 3.5));
        // Nonsense intervals count as the nearest bound.
        assert_eq!(PeerView { interval: Duration::ZERO, ..peer }.dead_time(3.5), Duration::from_millis(35));
        assert_eq!(
            PeerView { interval: Duration::from_hours(1), ..peer }.dead_time(2.0),
            Duration::from_mins(2)
        );
    }
}
