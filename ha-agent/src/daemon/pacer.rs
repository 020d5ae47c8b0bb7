//! The heartbeat pacer: a small thread of its own that sends the heartbeats whose content only an
//! event can change (an ACTIVE's: see [`crate::election::Election::steady_advert`]) at every
//! interval, so that the loop does not wake for them.
//!
//! Why: an idle ACTIVE's CPU is its wake-ups, one per interval, and a wake-up of the loop (the
//! runtime's turn, the select!, the peer table, the elections) cost about twice what a thread
//! that sleeps on a condition variable and sends costs (`docs/BENCHMARKS.md`). The loop still
//! turns on every event, every deadline of the elections and at least every
//! [`super::POLL_PERIOD`]; each turn re-plans what the pacer sends.
//!
//! The loop's own turn: it wakes at least every poll period anyway, so while the pacer sends all
//! of the node's heartbeats it takes one grid point per poll period (see [`Plan::claim`]), wakes
//! there and sends that round first thing in the turn; the pacer sleeps through it. One wake-up
//! per poll period fewer: a tenth of the pacer's at a 100 ms interval. Only a turn that begins at
//! the point sends it: any turn that begins before it (an event's, which may take its time) gives
//! the point back to the pacer first ([`Plan::take_claimed`]), so a slow turn holds no heartbeat
//! up; a loop that never comes leaves the point to the pacer's next round.
//!
//! Honesty: a heartbeat says that the agent is alive. The pacer sends only while the loop has
//! turned within [`LOOP_GRACE`]: an agent whose loop hangs (its process alive) falls silent then,
//! and its lease, which the pacer renews with each round, runs out a dead time later. A crash or
//! a stopped process stops both at once, as before. And a slow turn (a reload, a netlink call that
//! takes its time) no longer holds the ACTIVE's heartbeats up.
//!
//! Ordering: the loop and the pacer send through one [`Outbox`] behind one lock, which also holds
//! the plan. Sequence numbers and the XDP program's note of the last one sent stay in step, and a
//! heartbeat the loop sends after changing the plan (a transition's) is the last word: no round
//! of the old plan can follow it.

use std::{
    io,
    path::PathBuf,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    thread::JoinHandle,
    time::Duration,
};

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tracing::{error, warn};

use super::{agent::AsDynError as _, wake::Beats, POLL_PERIOD};
use crate::{
    bpf::SharedFence, clock::monotonic_now, election::Advert, heartbeat::HeartbeatSender, ids::GroupId,
    sequence,
};

/// How long after the loop's last turn the pacer keeps sending: two of the loop's longest sleeps.
pub const LOOP_GRACE: Duration = POLL_PERIOD.saturating_mul(2);

/// Everything that sends heartbeats and probes, used by one thread at a time.
pub(super) struct Outbox {
    /// The socket and the numbering.
    pub(super) sender: HeartbeatSender,
    /// The XDP fence, told of every sequence number before it goes out.
    fence: SharedFence,
    /// The heartbeat epoch stored in the state directory (see `sequence`).
    epoch: u32,
    /// Where the epoch is stored.
    state_dir: PathBuf,
}

impl Outbox {
    /// An outbox sending through `sender`, whose numbering is in `epoch` (stored in `state_dir`).
    pub(super) fn new(sender: HeartbeatSender, fence: SharedFence, epoch: u32, state_dir: PathBuf) -> Self {
        Self { sender, fence, epoch, state_dir }
    }

    /// Before `count` heartbeats (or probes) go out at `now`: the XDP program learns the highest
    /// sequence number among them (one write for a whole round of groups) and the lease is
    /// renewed; a sequence entering a new epoch is stored first (see `sequence`).
    pub(super) fn note_sending(&mut self, count: u64, now: Duration) {
        let last = self.sender.next_sequence() + count.saturating_sub(1);
        let epoch = sequence::epoch_of(last);
        if epoch > self.epoch {
            // 2^32 heartbeats into the run: the next start must begin above this epoch too.
            match sequence::note_epoch(&self.state_dir, epoch) {
                Ok(()) => self.epoch = epoch,
                Err(err) => error!(error = err.as_dyn(), "storing the heartbeat epoch failed"),
            }
        }
        self.fence.lock().note_sending(now, last);
    }

    /// Sends a round at `now`: XDP told of its sequence numbers first (one write for them all),
    /// then each group's heartbeat saying its advert; `sent` hears how each went, by position.
    /// The pacer's rounds, the loop's own heartbeats and a re-execution's last word all go so.
    pub(super) fn send_round(
        &mut self,
        beats: &[(GroupId, Advert)],
        now: Duration,
        mut sent: impl FnMut(usize, io::Result<()>),
    ) {
        self.note_sending(beats.len() as u64, now);
        for (position, &(group, advert)) in beats.iter().enumerate() {
            sent(position, self.sender.send(group, advert));
        }
    }
}

/// A round of paced heartbeats went out (`ok`) or failed at `at`: reported to the loop, for the
/// elections' fault rules, when that differs from the last report and for the first round after
/// a change of plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RoundSent {
    /// When.
    pub(super) at: Duration,
    /// Whether every heartbeat of it went out.
    pub(super) ok: bool,
}

/// What the pacer sends, and until when (pure: time is passed in).
#[derive(Default)]
pub(super) struct Plan {
    /// Each paced group and what its heartbeats say, by group id.
    beats: Vec<(GroupId, Advert)>,
    /// The grid of the rounds: whole intervals from when the plan last started.
    grid: Option<Beats>,
    /// The loop's last turn plus [`LOOP_GRACE`]: no round after it.
    alive_until: Duration,
    /// Whether the last round reported went out; `None` after a change of plan, so that the
    /// groups now paced hear how the next round went.
    reported: Option<bool>,
    /// The grid point whose round the loop sends itself (see [`Plan::claim`]).
    claimed: Option<Duration>,
}

/// What a turn of the loop makes of the point it took ([`Plan::take_claimed`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Taken {
    /// The point has come: the loop sends its round (the point's time).
    Send(Duration),
    /// The turn began before the point: back to the pacer, which must be woken to plan its round.
    GivenBack,
    /// Nothing the loop need do (no point taken, or the pacer plans it anyway).
    Nothing,
}

/// What the pacer does next.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Nothing to send until the plan changes.
    Idle,
    /// Sleep until this grid point (or a change of the plan).
    Wait(Duration),
    /// Send the round of the grid point passed (if the loop is alive).
    Round,
}

impl Plan {
    /// Paces `group`'s heartbeats saying `advert`, or stops pacing them (`None`), with rounds every
    /// `interval`; the first round of a plan that was empty comes an interval after `now` (the
    /// loop has just sent one). Whether anything changed.
    pub(super) fn set(
        &mut self,
        group: GroupId,
        advert: Option<Advert>,
        interval: Duration,
        now: Duration,
    ) -> bool {
        let position = self.beats.binary_search_by_key(&group, |(id, _)| *id);
        let changed = match (position, advert) {
            (Ok(at), Some(advert)) if self.beats[at].1 == advert => false,
            (Ok(at), Some(advert)) => {
                self.beats[at].1 = advert;
                true
            }
            (Ok(at), None) => {
                self.beats.remove(at);
                true
            }
            (Err(at), Some(advert)) => {
                self.beats.insert(at, (group, advert));
                true
            }
            (Err(_), None) => false,
        };
        let regrid = match &self.grid {
            _ if self.beats.is_empty() => {
                self.grid = None;
                false
            }
            None => true,
            Some(grid) => grid.interval != interval,
        };
        if regrid {
            self.grid = Some(Beats::new(now + interval, interval));
            // A point of the old grid.
            self.claimed = None;
        }
        if changed || regrid {
            self.reported = None;
        }
        changed || regrid
    }

    /// The loop turned at `now`.
    pub(super) fn loop_turned(&mut self, now: Duration) {
        self.alive_until = now + LOOP_GRACE;
    }

    /// Stops pacing every group.
    pub(super) fn clear(&mut self) {
        self.beats.clear();
        self.grid = None;
        self.claimed = None;
    }

    /// The loop will wake by `latest` (its poll): the grid point it is to wake at and
    /// send the round of, which the pacer then leaves to it; `None` if there is none to take
    /// (nothing paced, or no point after the one the pacer may already be sleeping until and by
    /// `latest`). A point taken stays the loop's until it has passed: the pacer may have
    /// planned its sleep around it.
    pub(super) fn claim(&mut self, latest: Duration) -> Option<Duration> {
        let grid = self.grid.as_ref()?;
        let following = grid.following();
        if let Some(claimed) = self.claimed.filter(|&claimed| claimed >= following) {
            return Some(claimed);
        }
        let point = grid.at_or_before(latest);
        self.claimed = (point > following).then_some(point);
        self.claimed
    }

    /// A turn of the loop began at `now`: what becomes of the point it took. The loop sends its
    /// round if it has come and the pacer has not moved past it (a loop later than the pacer's
    /// next round leaves it to that round). A turn that began before the point gives it back: it
    /// may take longer than the time left (a netlink call, a reload), and a round that does not
    /// go out leaves probes unanswered too (the answer window follows the last heartbeat).
    fn take_claimed(&mut self, now: Duration) -> Taken {
        let Some(claimed) = self.claimed.take() else {
            return Taken::Nothing;
        };
        if !self.grid.as_ref().is_some_and(|grid| grid.is_following(claimed)) {
            return Taken::Nothing;
        }
        if claimed <= now {
            Taken::Send(claimed)
        } else {
            // The pacer, having served the point before, sleeps through this one: it must plan
            // again. Earlier, it plans again at its next round anyway.
            Taken::GivenBack
        }
    }

    /// Whether `group`'s heartbeats are paced.
    #[cfg(test)]
    fn paces(&self, group: GroupId) -> bool {
        self.beats.binary_search_by_key(&group, |(id, _)| *id).is_ok()
    }

    fn step(&self, now: Duration) -> Step {
        let Some(grid) = &self.grid else { return Step::Idle };
        let mut at = grid.following();
        if self.claimed == Some(at) {
            // The loop's round: the pacer sleeps through it (or, should the loop not have come,
            // sends the next one in its stead).
            at += grid.interval;
        }
        if at > now {
            Step::Wait(at)
        } else {
            Step::Round
        }
    }

    /// Whether a round may go out at `now`: the loop turned lately.
    fn alive(&self, now: Duration) -> bool {
        now < self.alive_until
    }

    /// The round of the grid point before `now` was served (sent, or withheld); what to report
    /// of `ok`, if anything.
    fn served(&mut self, now: Duration, ok: bool) -> Option<RoundSent> {
        if let Some(grid) = &mut self.grid {
            grid.passed(now);
        }
        (self.reported != Some(ok)).then(|| {
            self.reported = Some(ok);
            RoundSent { at: now, ok }
        })
    }

    /// Whether the last round reported failed.
    fn failing(&self) -> bool {
        self.reported == Some(false)
    }
}

/// What the loop and the pacer share.
pub(super) struct Paced {
    /// Where both send.
    pub(super) outbox: Outbox,
    /// What the pacer sends.
    pub(super) plan: Plan,
    /// The pacer is to end.
    stop: bool,
}

impl Paced {
    /// Sends the plan's round at `now` (if `alive`: a round the loop does not vouch for is
    /// withheld) and notes it served; what to report to the loop, if anything.
    fn send_round(&mut self, now: Duration, alive: bool) -> Option<RoundSent> {
        let ok = if alive {
            let Self { outbox, plan, .. } = self;
            let mut failure = None;
            outbox.send_round(&plan.beats, now, |_, result| {
                failure = failure.take().or(result.err());
            });
            // At debug in the loop; here once per change (the report's).
            if let Some(err) = failure.as_ref().filter(|_| !plan.failing()) {
                warn!(error = err.as_dyn(), "sending the paced heartbeats failed");
            }
            failure.is_none()
        } else {
            // Withheld, not failed: the groups' fault rules are about the network.
            true
        };
        self.plan.served(now, ok)
    }

    /// A turn of the loop began at `now`: sends the round of the point it took ([`Plan::claim`])
    /// if that has come, or gives the point back; what became of it, and what to report of the
    /// round, if anything.
    pub(super) fn serve_claimed(&mut self, now: Duration) -> (Taken, Option<RoundSent>) {
        let taken = self.plan.take_claimed(now);
        let report = if matches!(taken, Taken::Send(_)) { self.send_round(now, true) } else { None };
        (taken, report)
    }
}

struct Shared {
    paced: Mutex<Paced>,
    /// Signalled when the plan changes or the pacer is to stop.
    changed: Condvar,
}

/// The pacer's thread and its shared state; stops and joins the thread when dropped.
pub(super) struct Pacer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Pacer {
    /// Starts the pacer with an empty plan; the receiver gets each change in whether its rounds
    /// go out. `lateness` observes how late each round is (when metrics are served).
    pub(super) fn start(
        outbox: Outbox,
        lateness: Option<Histogram>,
    ) -> io::Result<(Self, UnboundedReceiver<RoundSent>)> {
        // Alive from the start: the loop is about to turn, and a restarted agent's resumed groups
        // are planned before its first turn (which may take a while, the XDP program just
        // loaded); their first round must not be withheld, or the successor, which has heard
        // nothing since the restart began, probes and finds no answer.
        let mut plan = Plan::default();
        plan.loop_turned(monotonic_now());
        let shared = Arc::new(Shared {
            paced: Mutex::new(Paced { outbox, plan, stop: false }),
            changed: Condvar::new(),
        });
        let (reports, received) = unbounded_channel();
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("ha-pacer".into())
                .spawn(move || pace(&shared, &reports, lateness.as_ref()))?
        };
        Ok((Self { shared, thread: Some(thread) }, received))
    }

    /// The shared state, for one send or change of plan. The pacer's rounds are whole (each
    /// write of the fence is a sequence of word stores, each send a whole datagram), so a lock
    /// that a panic poisoned is taken as it is.
    pub(super) fn lock(&self) -> MutexGuard<'_, Paced> {
        self.shared.paced.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the pacer: its plan changed.
    pub(super) fn plan_changed(&self) {
        self.shared.changed.notify_one();
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.lock().stop = true;
        self.shared.changed.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The pacer's thread: sleeps until the next grid point or a change of plan, sends the round due.
fn pace(shared: &Shared, reports: &UnboundedSender<RoundSent>, lateness: Option<&Histogram>) {
    let mut paced = shared.paced.lock().unwrap_or_else(PoisonError::into_inner);
    while !paced.stop {
        let now = monotonic_now();
        match paced.plan.step(now) {
            Step::Idle => paced = shared.changed.wait(paced).unwrap_or_else(PoisonError::into_inner),
            Step::Wait(at) => {
                let (guard, _) = shared
                    .changed
                    .wait_timeout(paced, at.saturating_sub(now))
                    .unwrap_or_else(PoisonError::into_inner);
                paced = guard;
            }
            Step::Round => {
                if let (Some(lateness), Some(grid)) = (lateness, &paced.plan.grid) {
                    lateness.observe(now.saturating_sub(grid.following()).as_secs_f64());
                }
                // Withheld once the loop has not turned for LOOP_GRACE: no heartbeat vouches
                // for a loop that hangs.
                let alive = paced.plan.alive(now);
                if let Some(report) = paced.send_round(now, alive) {
                    // The loop's end gone: it is stopping, and so will this thread.
                    let _ = reports.send(report);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::Advert;
    use ha_common::NodeState;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn advert(priority: u8) -> Advert {
        Advert {
            state: NodeState::Active,
            priority,
            yielded: false,
            handover_to: None,
            chosen: false,
            restarting: false,
            interval: ms(100),
        }
    }

    #[test]
    fn rounds_keep_to_a_grid_from_an_interval_after_the_plan_starts() {
        let mut plan = Plan::default();
        assert_eq!(plan.step(ms(1000)), Step::Idle, "nothing to send");
        assert!(plan.set(GroupId(7), Some(advert(200)), ms(100), ms(1000)));
        plan.loop_turned(ms(1000));
        assert_eq!(plan.step(ms(1000)), Step::Wait(ms(1100)), "the loop has just sent one");
        assert_eq!(plan.step(ms(1100)), Step::Round);
        plan.served(ms(1101), true);
        assert_eq!(plan.step(ms(1101)), Step::Wait(ms(1200)));
        // A late round: the next one keeps to the grid rather than following the late one.
        assert_eq!(plan.step(ms(1230)), Step::Round);
        plan.served(ms(1230), true);
        assert_eq!(plan.step(ms(1230)), Step::Wait(ms(1300)));
    }

    #[test]
    fn the_plan_changes_only_when_what_is_said_changes() {
        let mut plan = Plan::default();
        assert!(plan.set(GroupId(2), Some(advert(200)), ms(100), ms(0)));
        assert!(!plan.set(GroupId(2), Some(advert(200)), ms(100), ms(50)), "the same again");
        assert!(plan.set(GroupId(1), Some(advert(150)), ms(100), ms(50)));
        assert_eq!(plan.beats.iter().map(|(id, _)| id.0).collect::<Vec<_>>(), [1, 2], "by group id");
        assert_eq!(plan.step(ms(50)), Step::Wait(ms(100)), "a second group joins the grid");
        assert!(plan.set(GroupId(2), Some(advert(100)), ms(100), ms(60)), "a new priority");
        assert!(plan.set(GroupId(2), None, ms(100), ms(60)));
        assert!(!plan.set(GroupId(3), None, ms(100), ms(60)), "never paced");
        assert!(plan.paces(GroupId(1)) && !plan.paces(GroupId(2)));
        // A reload's new interval: a new grid.
        assert!(plan.set(GroupId(1), Some(advert(150)), ms(20), ms(60)));
        assert_eq!(plan.step(ms(60)), Step::Wait(ms(80)));
        plan.clear();
        assert_eq!(plan.step(ms(80)), Step::Idle);
    }

    #[test]
    fn the_pacer_sleeps_through_the_round_the_loop_takes() {
        let mut plan = Plan::default();
        plan.set(GroupId(1), Some(advert(200)), ms(100), ms(1000));
        plan.loop_turned(ms(1000));
        // The loop polls by 2050: it takes the last point before, 2000.
        assert_eq!(plan.claim(ms(2050)), Some(ms(2000)));
        assert_eq!(plan.claim(ms(2500)), Some(ms(2000)), "taken until it has come");
        plan.served(ms(1900), true);
        assert_eq!(plan.step(ms(1900)), Step::Wait(ms(2100)), "the pacer skips the loop's point");
        assert_eq!(plan.take_claimed(ms(2001)), Taken::Send(ms(2000)), "the loop sends it");
        plan.served(ms(2001), true);
        assert_eq!(plan.take_claimed(ms(2002)), Taken::Nothing, "once");
        assert_eq!(plan.step(ms(2002)), Step::Wait(ms(2100)));
        // The next poll: the point a second on.
        assert_eq!(plan.claim(ms(3001)), Some(ms(3000)));
    }

    #[test]
    fn a_turn_that_begins_before_the_point_gives_it_back() {
        let mut plan = Plan::default();
        plan.set(GroupId(1), Some(advert(200)), ms(100), ms(1000));
        assert_eq!(plan.claim(ms(2000)), Some(ms(2000)));
        // Early on the pacer plans its rounds again anyway: no need to wake it.
        assert_eq!(plan.take_claimed(ms(1500)), Taken::Nothing);
        assert_eq!(plan.claim(ms(2000)), Some(ms(2000)), "taken again at the turn's end");
        plan.served(ms(1900), true);
        // After the round before it, the pacer sleeps through the point: woken, it sends it.
        assert_eq!(plan.take_claimed(ms(1950)), Taken::GivenBack);
        assert_eq!(plan.step(ms(1950)), Step::Wait(ms(2000)));
        assert_eq!(plan.step(ms(2000)), Step::Round);
    }

    #[test]
    fn a_loop_that_misses_its_point_leaves_the_next_round_to_the_pacer() {
        let mut plan = Plan::default();
        plan.set(GroupId(1), Some(advert(200)), ms(100), ms(1000));
        assert_eq!(plan.claim(ms(2000)), Some(ms(2000)));
        plan.served(ms(1900), true);
        // The loop did not come at 2000: the pacer's round at 2100 goes out.
        assert_eq!(plan.step(ms(2100)), Step::Round);
        plan.served(ms(2100), true);
        assert_eq!(plan.take_claimed(ms(2150)), Taken::Nothing, "a late loop sends no round of it");
        assert_eq!(plan.step(ms(2150)), Step::Wait(ms(2200)));
    }

    #[test]
    fn no_point_is_taken_that_the_pacer_may_be_sleeping_until() {
        let mut plan = Plan::default();
        assert_eq!(plan.claim(ms(2000)), None, "nothing paced");
        plan.set(GroupId(1), Some(advert(200)), ms(100), ms(1000));
        // The pacer's next round is at 1100: a poll before 1200 takes nothing.
        assert_eq!(plan.claim(ms(1150)), None);
        assert_eq!(plan.claim(ms(1200)), Some(ms(1200)));
        // A new interval is a new grid: the point is of the old one.
        plan.set(GroupId(1), Some(advert(200)), ms(20), ms(1010));
        assert_eq!(plan.step(ms(1010)), Step::Wait(ms(1030)));
        assert_eq!(plan.take_claimed(ms(1200)), Taken::Nothing);
        assert_eq!(plan.claim(ms(1105)), Some(ms(1090)));
        plan.clear();
        assert_eq!(plan.claim(ms(2000)), None);
    }

    #[test]
    fn rounds_stop_once_the_loop_has_not_turned_for_the_grace() {
        let mut plan = Plan::default();
        plan.set(GroupId(1), Some(advert(200)), ms(100), ms(0));
        plan.loop_turned(ms(0));
        assert!(plan.alive(ms(100)));
        assert!(plan.alive(LOOP_GRACE.saturating_sub(ms(1))));
        assert!(!plan.alive(LOOP_GRACE), "a hung loop's node falls silent");
        plan.loop_turned(LOOP_GRACE + ms(5));
        assert!(plan.alive(LOOP_GRACE + ms(100)), "and speaks again once it turns");
    }

    #[test]
    fn a_change_between_going_out_and_failing_is_reported_and_so_is_a_new_plans_first_round() {
        let mut plan = Plan::default();
        plan.set(GroupId(1), Some(advert(200)), ms(100), ms(0));
        assert_eq!(plan.served(ms(100), true), Some(RoundSent { at: ms(100), ok: true }), "a new plan");
        assert_eq!(plan.served(ms(200), true), None, "going out is no news");
        assert_eq!(plan.served(ms(300), false), Some(RoundSent { at: ms(300), ok: false }));
        assert_eq!(plan.served(ms(400), false), None, "the fault rules count from the first");
        // A group joins while rounds fail: its election must hear of it too.
        plan.set(GroupId(2), Some(advert(100)), ms(100), ms(450));
        assert_eq!(plan.served(ms(500), false), Some(RoundSent { at: ms(500), ok: false }));
        assert_eq!(plan.served(ms(600), true), Some(RoundSent { at: ms(600), ok: true }));
    }
}
