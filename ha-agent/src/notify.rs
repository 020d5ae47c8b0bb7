//! The systemd edge: readiness, reloads, stopping and the watchdog (`Type=notify`,
//! `WatchdogSec=`). Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.
//!
//! The watchdog is kicked from the main loop each time it turns (at least every half watchdog
//! period: the loop's longest sleep is cut to that), so it fires exactly when the loop stalls:
//! systemd then kills the agent and, with `Restart=`, starts it again, and the new agent takes
//! over its predecessor's pinned link and lease.

use std::time::Duration;

use sd_notify::NotifyState;

/// Talks to the service manager, if there is one.
#[derive(Clone, Copy, Debug)]
pub struct Notifier {
    /// The watchdog's period, when systemd set one for this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads what systemd passed in the environment.
    #[must_use]
    pub fn from_env() -> Self {
        Self { watchdog: sd_notify::watchdog_enabled() }
    }

    /// The watchdog period, if any.
    #[must_use]
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Start-up is done: the agent serves its loop.
    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// The loop turned: the agent is alive.
    pub fn alive(&self) {
        if self.watchdog.is_some() {
            send(&[NotifyState::Watchdog]);
        }
    }

    /// A reload (SIGHUP) begins; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(_) => send(&[NotifyState::Reloading]),
        }
    }

    /// The agent is stopping (a planned handover may take up to a dead time).
    pub fn stopping(&self) {
        send(&[NotifyState::Stopping]);
    }
}

/// Sends `states`; a failure is logged at debug only: the agent's job does not depend on it.
fn send(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::debug!(error = &err as &dyn std::error::Error, "notifying systemd failed");
    }
}
