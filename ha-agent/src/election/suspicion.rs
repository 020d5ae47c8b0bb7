//! Suspicion: a STANDBY that would succeed the ACTIVE does not wait out the whole dead time
//! when the ACTIVE goes quiet. Once the ACTIVE has been silent for a little over one of its
//! intervals ([`SUSPECT_AFTER`]), it sends a short burst of signed probes ([`PROBES_PER_BURST`],
//! [`probe_spacing`] apart) to the ACTIVE's last known address, which the ACTIVE's XDP program
//! answers itself, only while its agent's loop turns. No answer by the end of the burst: the
//! ACTIVE is dead, and this node takes over at once. Any answer: the suspicion ends, and the
//! usual dead time applies (counted, as always, from the ACTIVE's last heartbeat). Why this is no
//! more likely to take over falsely than the dead time alone: `docs/DESIGN.md`, Suspicion.

use std::{borrow::Cow, time::Duration};

use ha_common::NodeState;

use super::{Action, Election, Output, PeerView, State};
use crate::ids::NodeId;

/// Probes in one burst.
pub const PROBES_PER_BURST: u32 = 5;
/// How long the ACTIVE must be silent, in thousandths of its own intervals, before a successor
/// suspects it: in thousandths because the XDP program's silence watch counts it so too.
pub const SUSPECT_AFTER_PERMILLE: u32 = 1300;
/// [`SUSPECT_AFTER_PERMILLE`] in intervals.
#[allow(clippy::cast_lossless, reason = "f64::from is not const")]
pub const SUSPECT_AFTER: f64 = SUSPECT_AFTER_PERMILLE as f64 / 1000.0;

/// When `active`'s silence starts a suspicion: [`SUSPECT_AFTER`] of its intervals after its last
/// heartbeat.
fn suspected_at(active: &PeerView) -> Duration {
    active.last_seen + active.interval.mul_f64(SUSPECT_AFTER)
}

/// The time between two probes of a burst, and from the last to the end of the burst: a
/// twentieth of the interval, within 1 to 5 ms (a burst ends 25 ms after it starts at 100 ms).
#[must_use]
pub fn probe_spacing(interval: Duration) -> Duration {
    (interval / 20).clamp(Duration::from_millis(1), Duration::from_millis(5))
}

/// How recently the agent's loop must have turned for its XDP program to answer a probe: a
/// little over the interval (at which the loop turns), and less than [`SUSPECT_AFTER`] intervals,
/// so that a dead agent's node has stopped answering by the time a successor probes.
#[must_use]
pub fn answer_window(interval: Duration) -> Duration {
    interval.mul_f64(1.15)
}

/// A suspicion of one ACTIVE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Suspicion {
    /// The ACTIVE suspected.
    target: NodeId,
    /// When the burst started.
    since: Duration,
    /// The ACTIVE's last heartbeat when it started: a newer one ends the suspicion.
    heard_at: Duration,
    /// Probes sent so far.
    sent: u32,
    /// It answered.
    answered: bool,
}

impl Election {
    /// The ACTIVE this STANDBY would succeed, were that one dead, if any: a live ACTIVE without
    /// which this node would win now.
    fn blocking_active<'a>(&self, now: Duration, peers: &'a [PeerView]) -> Option<&'a PeerView> {
        let active = peers
            .iter()
            .filter(|p| p.state == NodeState::Active && self.is_live(p, now))
            .max_by_key(|p| (p.priority, p.node_id))
            .filter(|p| !p.restarting)?;
        let others: Vec<PeerView> = peers.iter().filter(|p| p.node_id != active.node_id).copied().collect();
        (self.promotion_at(now, &others) <= now).then_some(active)
    }

    /// The STANDBY's suspicion at `now`: starts, goes on, or ends it; returns a probe to send, or
    /// the takeover once a burst went unanswered.
    pub(super) fn suspect(&mut self, now: Duration, peers: &[PeerView]) -> Option<Output> {
        if !self.settings.probes {
            return None;
        }
        let Some(active) = self.blocking_active(now, peers) else {
            self.suspicion = None;
            return None;
        };
        let spacing = probe_spacing(active.interval);
        let mut suspicion = match self.suspicion {
            // Still silent since the burst began: the burst goes on.
            Some(s) if s.target == active.node_id && s.heard_at == active.last_seen => s,
            _ if now >= suspected_at(active) => Suspicion {
                target: active.node_id,
                since: now,
                heard_at: active.last_seen,
                sent: 0,
                answered: false,
            },
            _ => {
                self.suspicion = None;
                return None;
            }
        };
        if suspicion.answered {
            self.suspicion = Some(suspicion);
            return None;
        }
        if suspicion.sent < PROBES_PER_BURST {
            if now < suspicion.since + spacing * suspicion.sent {
                self.suspicion = Some(suspicion);
                return None;
            }
            let first = suspicion.sent == 0;
            suspicion.sent += 1;
            self.suspicion = Some(suspicion);
            return Some(Output {
                actions: vec![Action::SendProbe { to: active.node_id, first }],
                transition: None,
            });
        }
        if now < suspicion.since + spacing * PROBES_PER_BURST {
            self.suspicion = Some(suspicion);
            return None;
        }
        self.suspicion = None;
        self.unanswered = Some((active.node_id, active.last_seen));
        self.last_announced = now;
        Some(self.go(
            State::Active,
            format!(
                "ACTIVE peer {} silent for {} ms did not answer {PROBES_PER_BURST} probes",
                active.node_id,
                now.saturating_sub(active.last_seen).as_millis()
            ),
            vec![Action::AddVips, Action::SendGratuitousArp, Action::SendHeartbeat],
        ))
    }

    /// The probed ACTIVE answered at `now`: the suspicion ends, and the dead time applies, counted
    /// from when the answer proves its agent's loop turned (see [`Election::with_answers`]).
    pub(super) fn note_answer(&mut self, now: Duration, from: NodeId) {
        if let Some(suspicion) = self.suspicion.as_mut().filter(|s| s.target == from) {
            suspicion.answered = true;
            self.answered_at = Some((from, now));
        }
    }

    /// `peers` as the answers to probes show them: a peer that answered at `t` was alive at
    /// `t - answer_window` at the latest (its XDP program answers only within the answer window of
    /// its last heartbeat), which counts as its last heartbeat if that is later. So a live ACTIVE
    /// whose heartbeats go missing is not declared dead for want of them, and one that died is
    /// suspected again a little over an interval after the moment it was last known alive.
    /// Borrowed, not copied, when no answer came: the loop asks at every wake-up, for every group.
    pub(super) fn with_answers<'a>(&self, peers: &'a [PeerView]) -> Cow<'a, [PeerView]> {
        let Some((from, at)) = self.answered_at else {
            return Cow::Borrowed(peers);
        };
        let mut seen = peers.to_vec();
        for peer in seen.iter_mut().filter(|p| p.node_id == from) {
            peer.last_seen = peer.last_seen.max(at.saturating_sub(answer_window(peer.interval)));
        }
        Cow::Owned(seen)
    }

    /// The node it is probing, while a burst is under way (for the agent to look for answers).
    #[must_use]
    pub fn probing(&self) -> Option<NodeId> {
        self.suspicion.filter(|s| !s.answered).map(|s| s.target)
    }

    /// The ACTIVE whose silence a watch outside the election may look out for (a kernel timer
    /// that wakes the loop once that silence reaches [`SUSPECT_AFTER`] intervals): the one this
    /// STANDBY would succeed, while it is heard and no suspicion of it is under way. While such a
    /// watch runs, neither the suspicion nor the ACTIVE's dead time needs the clock (see
    /// [`Election::next_deadline_watched`]).
    #[must_use]
    pub fn silence_to_watch(&self, now: Duration, peers: &[PeerView]) -> Option<NodeId> {
        if !self.settings.probes || self.state != State::Standby || self.suspicion.is_some() {
            return None;
        }
        let active = self.blocking_active(now, peers)?;
        (now < suspected_at(active)).then_some(active.node_id)
    }

    /// When the suspicion needs the clock: the next probe, the end of the burst, or, with none
    /// under way, when the blocking ACTIVE's silence would start one.
    pub(super) fn suspicion_deadline(&self, now: Duration, peers: &[PeerView]) -> Option<Duration> {
        if !self.settings.probes || self.state != State::Standby {
            return None;
        }
        let active = self.blocking_active(now, peers)?;
        match self.suspicion {
            Some(s) if s.target == active.node_id && s.heard_at == active.last_seen => {
                Some(s.since + probe_spacing(active.interval) * s.sent.min(PROBES_PER_BURST))
            }
            _ => Some(suspected_at(active)),
        }
    }
}
