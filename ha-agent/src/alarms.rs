//! Loud mistakes: misconfigurations that would otherwise show only as a counter or not at all
//! (another key on the LAN, another group on our port, a second node with our id, a peer that
//! cannot hear us), raised from the XDP program's counters or the election, logged at most once
//! a minute each, and listed by `status` while they last.
//!
//! Pure: the counters and the time come in, what to log comes out.

use std::{fmt, time::Duration};

use ha_common::XdpStats;
use serde::{Deserialize, Serialize};

/// How often one alarm may be logged, and how long `status` lists it after it was last seen.
pub const ALARM_PERIOD: Duration = Duration::from_mins(1);

/// A misconfiguration the counters reveal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alarm {
    /// Heartbeats on our port fail the tag: a node with another key (a half-done rotation), or
    /// a forger. Nothing moves either way; a node with another key is in a split brain.
    KeyMismatch,
    /// Heartbeats of another group on our port: harmless, unless that node belongs in ours.
    OtherGroup,
    /// Authentic heartbeats with our node id and newer sequence numbers than ours: another node
    /// uses our id. The election cannot tell the two apart, so this node refuses to serve until
    /// they stop. (The other node, whose sequences are the higher, cannot tell ours from a
    /// replay of its own: one of the two steps aside, and says so.)
    DuplicateNodeId,
    /// A less worthy peer has claimed ACTIVE for more than two dead times while we are ACTIVE: it
    /// does not hear us (a one-way link, a filter), and the LAN has two holders.
    OneWayLink,
}

impl Alarm {
    const ALL: [Self; 4] = [Self::KeyMismatch, Self::OtherGroup, Self::DuplicateNodeId, Self::OneWayLink];

    /// Its name, as `status` (JSON) and the metrics give it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::KeyMismatch => "KeyMismatch",
            Self::OtherGroup => "OtherGroup",
            Self::DuplicateNodeId => "DuplicateNodeId",
            Self::OneWayLink => "OneWayLink",
        }
    }

    /// The XDP counter behind it; `None` for one the election raises ([`Alarms::raise`]).
    fn count(self, stats: &XdpStats) -> Option<u64> {
        match self {
            Self::KeyMismatch => Some(stats.bad_tag),
            Self::OtherGroup => Some(stats.wrong_group),
            Self::DuplicateNodeId => Some(stats.own_echo),
            Self::OneWayLink => None,
        }
    }
}

impl fmt::Display for Alarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::KeyMismatch => {
                "heartbeats on our port fail the tag: a node with another key (check the key files on every node) or a forger"
            }
            Self::OtherGroup => "heartbeats of another group on our port: check `group` on every node",
            Self::DuplicateNodeId => {
                "another node sends authentic heartbeats with our node id: give each node its own --node-id; refusing to serve meanwhile"
            }
            Self::OneWayLink => {
                "a less worthy peer stays ACTIVE beside us: it does not hear our heartbeats (a one-way link or a filter); two nodes hold the VIPs"
            }
        })
    }
}

/// One alarm as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmReport {
    /// Which.
    pub alarm: Alarm,
    /// What it means, in words.
    pub message: String,
    /// Offending heartbeats (or, for one the election raises, times raised) in the last
    /// [`ALARM_PERIOD`] or so.
    pub heartbeats: u64,
    /// Milliseconds since one was last seen.
    pub last_seen_ms_ago: u64,
}

/// What is known of one alarm.
#[derive(Clone, Copy, Debug, Default)]
struct Tracked {
    /// The counter at the last look.
    counter: u64,
    /// When the counter last grew.
    last_seen: Option<Duration>,
    /// When the alarm was last logged.
    last_logged: Option<Duration>,
    /// Growth since it was last logged.
    since_logged: u64,
}

impl Tracked {
    /// Counts `grown` more offences at `now`; returns how many to log now, if it is time.
    fn seen(&mut self, now: Duration, grown: u64) -> Option<u64> {
        if grown == 0 {
            return None;
        }
        self.last_seen = Some(now);
        self.since_logged += grown;
        if self.last_logged.is_some_and(|at| now.saturating_sub(at) < ALARM_PERIOD) {
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.since_logged))
    }
}

/// The alarms of one agent.
#[derive(Clone, Debug, Default)]
pub struct Alarms {
    tracked: [Tracked; 4],
}

impl Alarms {
    /// Looks at the counters at `now`; returns the alarms to log now, each with the offending
    /// heartbeats since it was last logged. The first look only sets the baseline.
    pub fn observe(&mut self, now: Duration, stats: &XdpStats) -> Vec<(Alarm, u64)> {
        let mut raised = Vec::new();
        for (alarm, tracked) in Alarm::ALL.into_iter().zip(&mut self.tracked) {
            let Some(counter) = alarm.count(stats) else {
                continue;
            };
            let grown = counter.saturating_sub(tracked.counter);
            tracked.counter = counter;
            if let Some(count) = tracked.seen(now, grown) {
                raised.push((alarm, count));
            }
        }
        raised
    }

    /// Raises `alarm` at `now` (for one the election finds, not a counter); returns whether to log
    /// it now (at most once a minute).
    pub fn raise(&mut self, now: Duration, alarm: Alarm) -> bool {
        let index = Alarm::ALL.iter().position(|a| *a == alarm).expect("ALL lists every alarm");
        self.tracked[index].seen(now, 1).is_some()
    }

    /// When `alarm` was last seen.
    #[must_use]
    pub fn last_seen(&self, alarm: Alarm) -> Option<Duration> {
        Alarm::ALL.iter().position(|a| *a == alarm).and_then(|i| self.tracked[i].last_seen)
    }

    /// The alarms seen within the last [`ALARM_PERIOD`], for `status`.
    #[must_use]
    pub fn recent(&self, now: Duration) -> Vec<AlarmReport> {
        Alarm::ALL
            .into_iter()
            .zip(&self.tracked)
            .filter_map(|(alarm, tracked)| {
                let ago = now.saturating_sub(tracked.last_seen?);
                (ago < ALARM_PERIOD).then(|| AlarmReport {
                    alarm,
                    message: alarm.to_string(),
                    heartbeats: tracked.since_logged.max(1),
                    last_seen_ms_ago: u64::try_from(ago.as_millis()).unwrap_or(u64::MAX),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(value: u64) -> Duration {
        Duration::from_secs(value)
    }

    fn stats(bad_tag: u64, wrong_group: u64, own_echo: u64) -> XdpStats {
        XdpStats { bad_tag, wrong_group, own_echo, ..Default::default() }
    }

    #[test]
    fn an_alarm_is_logged_at_most_once_a_minute() {
        let mut alarms = Alarms::default();
        assert_eq!(alarms.observe(secs(0), &stats(0, 0, 0)), []);
        assert_eq!(alarms.observe(secs(1), &stats(5, 0, 0)), [(Alarm::KeyMismatch, 5)]);
        assert_eq!(alarms.observe(secs(2), &stats(9, 0, 0)), [], "once a minute");
        assert_eq!(
            alarms.observe(secs(30), &stats(9, 2, 0)),
            [(Alarm::OtherGroup, 2)],
            "each alarm on its own"
        );
        assert_eq!(
            alarms.observe(secs(61), &stats(12, 2, 0)),
            [(Alarm::KeyMismatch, 7)],
            "what it counted meanwhile"
        );
        assert_eq!(alarms.observe(secs(200), &stats(12, 2, 0)), [], "nothing new, nothing logged");
    }

    #[test]
    fn the_election_raises_alarms_too() {
        let mut alarms = Alarms::default();
        assert!(alarms.raise(secs(1), Alarm::OneWayLink));
        assert!(!alarms.raise(secs(2), Alarm::OneWayLink), "once a minute");
        assert_eq!(alarms.recent(secs(3))[0].alarm, Alarm::OneWayLink);
        assert_eq!(alarms.observe(secs(4), &stats(0, 0, 0)), [], "no counter behind it");
        assert!(alarms.raise(secs(62), Alarm::OneWayLink));
    }

    #[test]
    fn status_lists_what_was_seen_within_the_minute() {
        let mut alarms = Alarms::default();
        alarms.observe(secs(0), &stats(0, 0, 0));
        alarms.observe(secs(10), &stats(0, 0, 3));
        let recent = alarms.recent(secs(15));
        assert_eq!(recent.len(), 1);
        assert_eq!((recent[0].alarm, recent[0].last_seen_ms_ago), (Alarm::DuplicateNodeId, 5000));
        assert!(recent[0].message.contains("--node-id"));
        assert_eq!(alarms.last_seen(Alarm::DuplicateNodeId), Some(secs(10)));
        assert!(alarms.recent(secs(70)).is_empty(), "gone a minute after it stopped");
    }
}
