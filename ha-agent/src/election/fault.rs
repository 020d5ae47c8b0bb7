//! Why a node cannot serve: the causes of the FAULT state, each set and cleared by events, and
//! the one that is in force at a given time.

use std::{fmt, time::Duration};

use super::MAX_REFUSED_HOLD_OFF;

/// One reason a node cannot hold the VIPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The interface is down, has no carrier, or is gone.
    LinkDown,
    /// The kernel refused every VIP.
    VipsRefused,
    /// Heartbeats have failed to go out for a dead time: the peers cannot hear this node.
    SendFailing,
    /// Another node sends authentic heartbeats with this node's id: the election cannot tell
    /// the two apart.
    DuplicateNodeId,
    /// A tracked health check without a weight is down.
    CheckFailing,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LinkDown => "the interface is down or gone",
            Self::VipsRefused => "the kernel refused every VIP",
            Self::SendFailing => "heartbeats have failed to go out for a dead time",
            Self::DuplicateNodeId => "another node uses this node's id",
            Self::CheckFailing => "a tracked health check is down",
        })
    }
}

/// The causes, as the events left them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    link_down: bool,
    /// Until when the VIPs count as refused, and the hold-off after the next refusal.
    vips_refused: Option<(Duration, Duration)>,
    /// Since when every heartbeat has failed to go out.
    sending_failed_since: Option<Duration>,
    /// When a heartbeat with our id from another node was last seen.
    duplicate_seen: Option<Duration>,
    /// A tracked check without a weight is down.
    check_failing: bool,
}

impl Faults {
    /// The link went down (`up == false`) or came back.
    pub fn note_link(&mut self, up: bool) {
        self.link_down = !up;
    }

    /// A heartbeat went out (`ok`) or failed at `now`.
    pub fn note_send(&mut self, now: Duration, ok: bool) {
        if ok {
            self.sending_failed_since = None;
        } else {
            self.sending_failed_since.get_or_insert(now);
        }
    }

    /// The kernel refused every VIP at `now`: they count as refused for a hold-off (the dead
    /// time at first, doubling at each refusal in a row, up to [`MAX_REFUSED_HOLD_OFF`]); the node then
    /// tries again, if it wins.
    pub fn note_vips_refused(&mut self, now: Duration, dead_time: Duration) {
        let hold_off = self.vips_refused.map_or(dead_time, |(_, next)| next);
        self.vips_refused = Some((now + hold_off, (hold_off * 2).min(MAX_REFUSED_HOLD_OFF)));
    }

    /// An authentic heartbeat with our id from another node was seen at `now`: a fault until a
    /// dead time passes without one.
    pub fn note_duplicate(&mut self, now: Duration) {
        self.duplicate_seen = Some(now);
    }

    /// A tracked check without a weight went down (`failing`) or none is down any more.
    pub fn note_check(&mut self, failing: bool) {
        self.check_failing = failing;
    }

    /// The VIPs went on: the hold-off starts from the dead time again.
    pub fn note_vips_added(&mut self) {
        self.vips_refused = None;
    }

    /// The cause in force at `now`, if any (the first, in the order of [`Fault`]).
    #[must_use]
    pub fn current(&self, now: Duration, dead_time: Duration) -> Option<Fault> {
        if self.link_down {
            Some(Fault::LinkDown)
        } else if self.vips_refused.is_some_and(|(until, _)| now < until) {
            Some(Fault::VipsRefused)
        } else if self.sending_failed_since.is_some_and(|since| now.saturating_sub(since) >= dead_time) {
            Some(Fault::SendFailing)
        } else if self.duplicate_seen.is_some_and(|seen| now.saturating_sub(seen) < dead_time) {
            Some(Fault::DuplicateNodeId)
        } else if self.check_failing {
            Some(Fault::CheckFailing)
        } else {
            None
        }
    }

    /// When [`Faults::current`] changes by time alone: a VIP hold-off ends, or failing sends
    /// reach a dead time.
    #[must_use]
    pub fn next_change(&self, now: Duration, dead_time: Duration) -> Option<Duration> {
        let refused = self.vips_refused.map(|(until, _)| until).filter(|&until| until > now);
        let sending = self.sending_failed_since.map(|since| since + dead_time).filter(|&at| at > now);
        let duplicate = self.duplicate_seen.map(|seen| seen + dead_time).filter(|&at| at > now);
        refused.into_iter().chain(sending).chain(duplicate).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEAD: Duration = Duration::from_millis(350);

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn each_cause_sets_and_clears() {
        let mut faults = Faults::default();
        assert_eq!(faults.current(ms(0), DEAD), None);
        faults.note_link(false);
        assert_eq!(faults.current(ms(0), DEAD), Some(Fault::LinkDown));
        faults.note_link(true);
        assert_eq!(faults.current(ms(0), DEAD), None);

        faults.note_send(ms(100), false);
        faults.note_send(ms(200), false);
        assert_eq!(faults.current(ms(449), DEAD), None, "failing for less than a dead time");
        assert_eq!(faults.next_change(ms(449), DEAD), Some(ms(450)));
        assert_eq!(faults.current(ms(450), DEAD), Some(Fault::SendFailing));
        faults.note_send(ms(500), true);
        assert_eq!(faults.current(ms(500), DEAD), None);
    }

    #[test]
    fn refused_vips_hold_off_for_doubling_times() {
        let mut faults = Faults::default();
        faults.note_vips_refused(ms(0), DEAD);
        assert_eq!(faults.current(ms(349), DEAD), Some(Fault::VipsRefused));
        assert_eq!(faults.next_change(ms(0), DEAD), Some(ms(350)));
        assert_eq!(faults.current(ms(350), DEAD), None, "the node may try again");
        faults.note_vips_refused(ms(400), DEAD);
        assert_eq!(faults.next_change(ms(400), DEAD), Some(ms(400 + 700)));
        for _ in 0..20 {
            faults.note_vips_refused(ms(10_000), DEAD);
        }
        assert_eq!(faults.next_change(ms(10_000), DEAD), Some(ms(10_000) + MAX_REFUSED_HOLD_OFF));
        faults.note_vips_added();
        assert_eq!(faults.current(ms(10_001), DEAD), None);
        faults.note_vips_refused(ms(20_000), DEAD);
        assert_eq!(faults.next_change(ms(20_000), DEAD), Some(ms(20_350)), "back to a dead time");
    }

    #[test]
    fn a_duplicate_id_is_a_fault_while_it_is_heard() {
        let mut faults = Faults::default();
        faults.note_duplicate(ms(100));
        assert_eq!(faults.current(ms(449), DEAD), Some(Fault::DuplicateNodeId));
        assert_eq!(faults.next_change(ms(200), DEAD), Some(ms(450)));
        assert_eq!(faults.current(ms(450), DEAD), None, "a dead time without one clears it");
    }

    #[test]
    fn a_link_down_outranks_the_rest() {
        let mut faults = Faults::default();
        faults.note_vips_refused(ms(0), DEAD);
        faults.note_link(false);
        assert_eq!(faults.current(ms(0), DEAD), Some(Fault::LinkDown));
    }
}
