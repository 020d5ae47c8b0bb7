//! The loop's one timer: a timerfd on CLOCK_MONOTONIC (the clock of the elections and of the XDP
//! program), armed for the earliest of the next poll, the next heartbeat and the elections'
//! deadlines. One timer, one wake-up per turn: tokio's timer wheel wakes the thread once more
//! on the way to any timer over 64 ms away, and separate poll and heartbeat timers would wake it
//! twice per interval. An idle node's CPU is mostly its wake-ups.

use std::{
    cell::Cell,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use tokio::io::{unix::AsyncFd, Interest};

/// A timer the loop waits on from the tokio runtime.
pub(super) struct WakeTimer {
    fd: AsyncFd<OwnedFd>,
    /// The expiry it is set for next and its period (zero: it fires once), as far as the loop has
    /// seen it fire: setting it to the same again makes no syscall. An ACTIVE's timer, periodic on
    /// the heartbeat grid, is then never set again while it stays ACTIVE.
    armed: Cell<Option<(Duration, Duration)>>,
}

impl WakeTimer {
    /// A timer that is not armed. Needs a tokio runtime.
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: no pointers; the result is checked.
        let fd =
            unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the AsyncFd owns the descriptor, which stays open and unchanged for as long as
        // it lives.
        let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
        Ok(Self { fd: registered.map_err(io::Error::from)?, armed: Cell::new(None) })
    }

    /// Fires at `at` (CLOCK_MONOTONIC since boot; at once if that has passed) and then every
    /// `period` after it, or only once if `period` is zero, replacing any earlier setting; does
    /// nothing if it is set so already. Armed relative to now rather than absolute: tools that
    /// fake the clock for a process (libfaketime, which tests use) shift absolute timer settings
    /// too.
    pub(super) fn arm(&self, at: Duration, period: Duration) -> io::Result<()> {
        if self.armed.get() == Some((at, period)) {
            return Ok(());
        }
        // An all-zero it_value would disarm the timer: one nanosecond is "at once".
        let first = at.saturating_sub(crate::clock::monotonic_now()).max(Duration::from_nanos(1));
        let spec = libc::itimerspec { it_interval: timespec(period), it_value: timespec(first) };
        // SAFETY: a valid itimerspec; a null old value is allowed.
        let result =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &raw const spec, std::ptr::null_mut()) };
        if result < 0 {
            self.armed.set(None);
            return Err(io::Error::last_os_error());
        }
        self.armed.set(Some((at, period)));
        Ok(())
    }

    /// Waits until the timer fires (and consumes the expiry: a periodic timerfd is set for its
    /// next expiry only when the last is read).
    pub(super) async fn fired(&self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: an 8-byte buffer, as a timerfd read needs.
            let read = unsafe { libc::read(self.fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
            // Either way not readable again before the next expiry: the next wait goes straight
            // to epoll instead of trying a read that would block.
            guard.clear_ready();
            if read == 8 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(err);
            }
        }
        if let Some((at, period)) = self.armed.get() {
            let now = crate::clock::monotonic_now();
            self.armed.set(match period {
                Duration::ZERO => None,
                _ => Some((next_expiry(at, period, now), period)),
            });
        }
        Ok(())
    }
}

/// The first of `at`, `at + period`, … after `now` (`at` itself if it is still ahead).
fn next_expiry(at: Duration, period: Duration, now: Duration) -> Duration {
    if at > now || period.is_zero() {
        return at;
    }
    let periods = now.saturating_sub(at).as_nanos() / period.as_nanos() + 1;
    at + period * u32::try_from(periods).unwrap_or(u32::MAX)
}

/// `duration` as a timespec.
fn timespec(duration: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(duration.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(duration.subsec_nanos()),
    }
}

/// The heartbeat grid: whole intervals from the loop's start. The loop wakes at a grid point
/// when a group's heartbeat is due there; a late loop skips the points it missed rather than
/// sending a burst.
pub(super) struct Beats {
    origin: Duration,
    /// The grid's spacing: the heartbeat interval.
    pub(super) interval: Duration,
    /// The last grid point served.
    served: Duration,
}

impl Beats {
    /// A grid of `interval`s from `origin`, whose first point is due at once.
    pub(super) fn new(origin: Duration, interval: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(1));
        Self { origin, interval, served: origin.saturating_sub(interval) }
    }

    /// When to send the next heartbeat at `now`, the earliest group's being due from `due_from`:
    /// the grid point after the last one served; if that has passed (a late loop), at once; and
    /// if nothing is due until later (a settled STANDBY's slow rate), the grid point at or after
    /// that. Never a point beyond the next one while a heartbeat is due: a loop busy across a
    /// grid point must send late rather than skip an interval, or a live ACTIVE would fall
    /// silent for two intervals and its successor probe it.
    pub(super) fn next(&self, due_from: Duration, now: Duration) -> Duration {
        let following = self.following();
        if due_from <= now {
            following
        } else {
            following.max(self.at_or_after(due_from))
        }
    }

    /// The grid point right after the last one served.
    pub(super) fn following(&self) -> Duration {
        self.served + self.interval
    }

    /// Whether `at` is the grid point right after the last one served: heartbeats going out
    /// every interval.
    pub(super) fn is_following(&self, at: Duration) -> bool {
        at == self.following()
    }

    /// The loop served the grid at `now`: the next point lies after it.
    pub(super) fn passed(&mut self, now: Duration) {
        let at = self.at_or_after(now);
        self.served = if at > now { at.saturating_sub(self.interval) } else { at };
    }

    /// The last grid point at or before `at` (the origin if `at` comes before it).
    pub(super) fn at_or_before(&self, at: Duration) -> Duration {
        let after = self.at_or_after(at);
        if after > at && after > self.origin {
            after.saturating_sub(self.interval)
        } else {
            after
        }
    }

    fn at_or_after(&self, at: Duration) -> Duration {
        if at <= self.origin {
            return self.origin;
        }
        let steps = at.saturating_sub(self.origin).as_nanos().div_ceil(self.interval.as_nanos());
        self.origin + self.interval * u32::try_from(steps).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::monotonic_now;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn heartbeats_keep_to_the_grid_and_skip_what_a_late_loop_missed() {
        let mut beats = Beats::new(ms(1000), ms(100));
        assert_eq!(beats.next(ms(1000), ms(1000)), ms(1000), "the first at once");
        assert_eq!(beats.next(ms(1001), ms(1001)), ms(1000), "even when asked a moment later");
        beats.passed(ms(1001));
        assert_eq!(beats.next(ms(1003), ms(1003)), ms(1100), "every interval on the grid");
        beats.passed(ms(1101));
        assert_eq!(beats.next(ms(1101), ms(1101)), ms(1200));
        // Asked just after the point, by a loop busy with an event: at once, not a grid point on.
        assert_eq!(beats.next(ms(1200), ms(1200) + Duration::from_micros(300)), ms(1200));
        // A slow-rate STANDBY: nothing due before 2050, so the point at or after it.
        assert_eq!(beats.next(ms(2050), ms(1201)), ms(2100));
        // Late by 350 ms: one heartbeat at once, then back on the grid.
        beats.passed(ms(1550));
        assert_eq!(beats.next(ms(1550), ms(1550)), ms(1600));
    }

    #[test]
    fn the_last_grid_point_at_or_before_a_time() {
        let beats = Beats::new(ms(1000), ms(100));
        assert_eq!(beats.at_or_before(ms(1250)), ms(1200));
        assert_eq!(beats.at_or_before(ms(1300)), ms(1300), "a point itself");
        assert_eq!(beats.at_or_before(ms(500)), ms(1000), "before the grid: its origin");
    }

    #[tokio::test]
    async fn fires_at_the_time_armed_and_a_rearm_replaces_it() {
        let timer = WakeTimer::new().unwrap();
        let start = monotonic_now();
        timer.arm(start + Duration::from_mins(1), Duration::ZERO).unwrap();
        timer.arm(start + Duration::from_millis(20), Duration::ZERO).unwrap();
        timer.fired().await.unwrap();
        let took = monotonic_now().saturating_sub(start);
        assert!(took >= Duration::from_millis(20) && took < Duration::from_secs(5), "{took:?}");
        // A time already past fires at once.
        timer.arm(Duration::ZERO, Duration::ZERO).unwrap();
        tokio::time::timeout(Duration::from_secs(1), timer.fired()).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_periodic_timer_fires_again_without_being_set_again() {
        let timer = WakeTimer::new().unwrap();
        let start = monotonic_now();
        let period = Duration::from_millis(20);
        timer.arm(start + period, period).unwrap();
        for n in 1..=3u32 {
            // What the loop does each turn: set for the next point, which the timer already is.
            timer.arm(start + period * n, period).unwrap();
            timer.fired().await.unwrap();
            assert!(monotonic_now() >= start + period * n, "fired early at turn {n}");
            // The next point of the grid (a later one if this turn came that late).
            let (next, armed_period) = timer.armed.get().expect("still armed");
            assert_eq!(armed_period, period);
            assert!(
                next > start + period * n
                    && next.saturating_sub(start).as_nanos().is_multiple_of(period.as_nanos()),
                "turn {n}"
            );
        }
        let took = monotonic_now().saturating_sub(start);
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn the_next_expiry_of_a_periodic_timer() {
        assert_eq!(next_expiry(ms(100), ms(10), ms(50)), ms(100), "not yet fired");
        assert_eq!(next_expiry(ms(100), ms(10), ms(100)), ms(110));
        assert_eq!(next_expiry(ms(100), ms(10), ms(125)), ms(130), "fired more than once");
    }
}
