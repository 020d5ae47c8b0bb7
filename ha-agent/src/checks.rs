//! Health checks, as keepalived's `vrrp_script` and `track_interface`: each runs on its own
//! interval, and after `fall` failures in a row it is down, after `rise` successes up again. A
//! group that tracks a check gains or loses the check's weight with it, or, for a check without
//! a weight, cannot serve (FAULT) while it is down.
//!
//! This module is the pure part (what a check is, how results add up, what they make of a
//! group's worthiness); `checks/probe.rs` runs one probe, `checks/runner.rs` runs them all
//! concurrently, off the agent's loop.

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize};

mod probe;
mod runner;

pub use runner::{CheckReport, CheckResult, Checks};

/// What a check probes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A shell command line (`/bin/sh -c`): up when it exits 0.
    Exec(String),
    /// A TCP connect to this address: up when it is accepted.
    Tcp(SocketAddr),
    /// An HTTP or HTTPS GET of the URL: up when the answer has the expected status.
    Http {
        /// `http://` or `https://` URL.
        url: String,
        /// The status that counts as up.
        expect_status: u16,
        /// Accept any TLS certificate (a self-signed one on a local health endpoint).
        insecure: bool,
    },
    /// Another interface: up while it is up and has a carrier.
    Interface(String),
}

impl std::fmt::Display for CheckKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exec(command) => write!(f, "exec {command}"),
            Self::Tcp(address) => write!(f, "tcp {address}"),
            Self::Http { url, expect_status, .. } => write!(f, "GET {url} = {expect_status}"),
            Self::Interface(iface) => write!(f, "interface {iface}"),
        }
    }
}

/// What a check's state does to the groups that track it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckEffect {
    /// Added to the group's priority: a positive weight while the check is up, a negative one
    /// while it is down (keepalived's rule).
    Weight(i16),
    /// While the check is down the group cannot serve: FAULT (keepalived's weight 0).
    Fault,
}

/// One configured check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckConfig {
    /// Its name, which groups list in `track`.
    pub name: String,
    /// What it probes.
    pub kind: CheckKind,
    /// Time between the starts of two probes.
    pub interval: Duration,
    /// How long one probe may take: a probe still running then has failed (and an exec check's
    /// process group is killed).
    pub timeout: Duration,
    /// Successes in a row that bring a down check up.
    pub rise: u32,
    /// Failures in a row that bring an up check down.
    pub fall: u32,
    /// Weight or FAULT.
    pub effect: CheckEffect,
}

/// Why a `[[check]]` table is not a check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckConfigError {
    /// None or several of exec, tcp, http, interface.
    #[error("check {0}: give exactly one of exec, tcp, http, interface")]
    Kind(String),
    /// An HTTP URL that is not http:// or https://.
    #[error("check {0}: the http URL must begin with http:// or https://")]
    Url(String),
    /// rise or fall 0, or a timeout longer than the interval.
    #[error("check {0}: rise and fall must be at least 1, and the timeout at most the interval")]
    Counts(String),
    /// A weight outside -254..=254.
    #[error("check {0}: weight {1} is outside -254..=254 (0 or none: FAULT while down)")]
    Weight(String, i32),
    /// Two checks with one name.
    #[error("two checks are named {0}")]
    Duplicate(String),
    /// A group tracks a check that is not configured.
    #[error("group {0} tracks check {1}, which is not configured")]
    Unknown(String, String),
}

/// A `[[check]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    name: String,
    exec: Option<String>,
    tcp: Option<SocketAddr>,
    http: Option<String>,
    interface: Option<String>,
    #[serde(default = "default_status")]
    expect_status: u16,
    #[serde(default)]
    insecure: bool,
    #[serde(default = "default_interval", deserialize_with = "crate::config::duration")]
    interval: Duration,
    #[serde(default, deserialize_with = "crate::config::optional_duration")]
    timeout: Option<Duration>,
    #[serde(default = "one")]
    rise: u32,
    #[serde(default = "one")]
    fall: u32,
    #[serde(default)]
    weight: i32,
}

const fn default_status() -> u16 {
    200
}

const fn default_interval() -> Duration {
    Duration::from_secs(1)
}

const fn one() -> u32 {
    1
}

impl RawCheck {
    /// Checks one table.
    pub(crate) fn check(self) -> Result<CheckConfig, CheckConfigError> {
        let name = self.name;
        let kind = match (self.exec, self.tcp, self.http, self.interface) {
            (Some(command), None, None, None) => CheckKind::Exec(command),
            (None, Some(address), None, None) => CheckKind::Tcp(address),
            (None, None, Some(url), None) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(CheckConfigError::Url(name));
                }
                CheckKind::Http { url, expect_status: self.expect_status, insecure: self.insecure }
            }
            (None, None, None, Some(iface)) => CheckKind::Interface(iface),
            _ => return Err(CheckConfigError::Kind(name)),
        };
        let timeout = self.timeout.unwrap_or(self.interval);
        if self.rise == 0 || self.fall == 0 || timeout > self.interval || timeout.is_zero() {
            return Err(CheckConfigError::Counts(name));
        }
        let effect = match i16::try_from(self.weight) {
            Ok(0) => CheckEffect::Fault,
            Ok(weight) if weight.abs() <= 254 => CheckEffect::Weight(weight),
            _ => return Err(CheckConfigError::Weight(name, self.weight)),
        };
        Ok(CheckConfig {
            name,
            kind,
            interval: self.interval,
            timeout,
            rise: self.rise,
            fall: self.fall,
            effect,
        })
    }
}

impl<'de> Deserialize<'de> for CheckConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawCheck::deserialize(deserializer)?.check().map_err(serde::de::Error::custom)
    }
}

/// A check's state as its results left it. Every check starts up (as keepalived's scripts do):
/// an agent that starts must not give a group up before its checks have run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckState {
    /// Whether it counts as up.
    pub up: bool,
    /// Results in a row that disagree with `up`.
    streak: u32,
}

impl Default for CheckState {
    fn default() -> Self {
        Self { up: true, streak: 0 }
    }
}

impl CheckState {
    /// Records one probe's result; returns true when the check went up or down.
    pub fn record(&mut self, ok: bool, rise: u32, fall: u32) -> bool {
        if ok == self.up {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        if self.streak >= if ok { rise } else { fall } {
            self.up = ok;
            self.streak = 0;
            return true;
        }
        false
    }
}

/// What a group's tracked checks make of it: its priority, and the first FAULT check that is
/// down, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worthiness {
    /// The configured priority plus the weights in force, within 1..=255.
    pub priority: u8,
    /// A check without a weight that is down: the group cannot serve.
    pub failing: Option<String>,
}

/// A group's worthiness from its configured `priority` and its tracked checks and their states.
#[must_use]
pub fn worthiness<'a>(
    priority: u8,
    tracked: impl IntoIterator<Item = (&'a CheckConfig, CheckState)>,
) -> Worthiness {
    let mut total = i32::from(priority);
    let mut failing = None;
    for (check, state) in tracked {
        match check.effect {
            CheckEffect::Weight(weight) if (weight > 0) == state.up => total += i32::from(weight),
            CheckEffect::Fault if !state.up => {
                failing.get_or_insert_with(|| check.name.clone());
            }
            CheckEffect::Weight(_) | CheckEffect::Fault => {}
        }
    }
    Worthiness { priority: u8::try_from(total.clamp(1, 255)).unwrap_or(1), failing }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CheckConfig, String> {
        toml::from_str::<CheckConfig>(text).map_err(|err| err.message().to_string())
    }

    #[test]
    fn a_check_table_becomes_a_check_or_one_line() {
        let check = parse("name = 'web'\nhttp = 'http://127.0.0.1/health'\nfall = 2\nweight = -50").unwrap();
        assert_eq!(check.effect, CheckEffect::Weight(-50));
        assert_eq!(
            (check.interval, check.timeout, check.rise, check.fall),
            (default_interval(), default_interval(), 1, 2)
        );
        assert_eq!(parse("name = 'x'\nexec = 'true'").unwrap().effect, CheckEffect::Fault);
        let errors = [
            ("name = 'x'", "exactly one of"),
            ("name = 'x'\nexec = 'true'\ntcp = '127.0.0.1:80'", "exactly one of"),
            ("name = 'x'\nhttp = 'ftp://a'", "http://"),
            ("name = 'x'\nexec = 'true'\nfall = 0", "at least 1"),
            ("name = 'x'\nexec = 'true'\ninterval = '1s'\ntimeout = '2s'", "at most the interval"),
            ("name = 'x'\nexec = 'true'\nweight = 300", "outside"),
            ("name = 'x'\nexec = 'true'\nspeed = 3", "unknown field"),
        ];
        for (text, expected) in errors {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn fall_failures_bring_it_down_and_rise_successes_up() {
        let mut state = CheckState::default();
        let changes: Vec<bool> = [false, false, true, false, false, false, true, true, false, true, true]
            .iter()
            .map(|ok| state.record(*ok, 2, 3))
            .collect();
        // Down after 3 failures in a row (the first run of two does not count), up after 2 successes.
        assert_eq!(changes, [false, false, false, false, false, true, false, true, false, false, false]);
        assert!(state.up);
    }

    #[test]
    fn weights_and_faults_make_the_worthiness() {
        let check = |name: &str, effect| CheckConfig {
            name: name.into(),
            kind: CheckKind::Exec("true".into()),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 1,
            fall: 1,
            effect,
        };
        let (plus, minus, fault) = (
            check("plus", CheckEffect::Weight(20)),
            check("minus", CheckEffect::Weight(-60)),
            check("fault", CheckEffect::Fault),
        );
        let (up, down) = (CheckState::default(), CheckState { up: false, streak: 0 });
        let table = [
            ([up, up, up], 120, None),
            ([down, up, up], 100, None),
            ([up, down, up], 60, None),
            ([down, down, up], 40, None),
            ([up, up, down], 120, Some("fault".to_string())),
        ];
        for (states, priority, failing) in table {
            let tracked = [&plus, &minus, &fault].into_iter().zip(states);
            assert_eq!(worthiness(100, tracked), Worthiness { priority, failing }, "{states:?}");
        }
        assert_eq!(worthiness(250, [(&plus, up)]).priority, 255);
        assert_eq!(worthiness(30, [(&minus, down)]).priority, 1);
    }
}
