//! What reaches the loop from beside the LAN: health check results, and commands from the
//! control socket.

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::agent::{Agent, Fed};
use crate::{
    checks::CheckResult,
    clock::monotonic_now,
    control::Request,
    election::{Event, Output, State},
    ids::{GroupId, NodeId},
};

impl Agent {
    /// A probe result: recorded; when its check went up or down, the worthiness of every group
    /// that tracks it is worked out again.
    pub(super) fn check_result(&mut self, result: &CheckResult) -> Fed {
        let changed = self.checks.record(result);
        let up = self.checks.states().any(|(check, state)| check.name == result.name && state.up);
        self.metrics.check(&result.name, result.outcome.is_ok(), result.took, up);
        if !changed {
            return Vec::new();
        }
        match &result.outcome {
            Ok(()) => info!(check = %result.name, "health check up"),
            Err(why) => warn!(check = %result.name, "health check down: {why}"),
        }
        let tracking: Vec<usize> = (0..self.groups.len())
            .filter(|&index| self.groups[index].config.track.contains(&result.name))
            .collect();
        tracking.into_iter().map(|index| (index, self.apply_health(index))).collect()
    }

    /// Tells group `index`'s election what its checks make of it now.
    pub(super) fn apply_health(&mut self, index: usize) -> Output {
        let group = &mut self.groups[index];
        let worthiness = group.worthiness(&self.checks);
        let now = monotonic_now();
        let failing = worthiness.failing.is_some();
        group.election.handle(Event::Health { now, priority: worthiness.priority, failing })
    }

    /// A command from the control socket (not `status`, which the loop answers itself); the
    /// answer is one line.
    pub(super) async fn command(&mut self, request: Request, reply: oneshot::Sender<Vec<u8>>) -> Fed {
        let (fed, answer) = match request {
            Request::Drain => (self.feed_all(|now| Event::Drain { now }), String::new()),
            Request::Resume => (self.feed_all(|now| Event::Undrain { now }), String::new()),
            Request::Reload => match self.reload().await {
                Ok(fed) => (fed, String::new()),
                // With its sources, on one line, as `main` prints an error.
                Err(err) => (Vec::new(), format!("error: {:#}", anyhow::Error::new(err))),
            },
            Request::Handover { group, to } => match self.handover(group, to) {
                Ok(fed) => (fed, String::new()),
                Err(err) => (Vec::new(), format!("error: {err}")),
            },
            Request::Status => (Vec::new(), String::new()),
        };
        let answer = if answer.is_empty() {
            let states: Vec<String> = self
                .groups
                .iter()
                .enumerate()
                .map(|(index, group)| {
                    let next = fed.iter().find(|(i, _)| *i == index).and_then(|(_, o)| o.transition.as_ref());
                    format!("group {} {}", group.config.id, next.map_or(group.election.state(), |t| t.to))
                })
                .collect();
            format!("{}: {}", request.as_str(), states.join(", "))
        } else {
            answer
        };
        info!("control: {answer}");
        let _ = reply.send(format!("{answer}\n").into_bytes());
        fed
    }

    /// `ctl handover`: every group this node holds (or `only` that one) hands its VIPs to `to`,
    /// or to its most worthy live peer. Refused whole if any of them cannot.
    fn handover(&mut self, only: Option<GroupId>, to: Option<NodeId>) -> Result<Fed, String> {
        let now = monotonic_now();
        let chosen: Vec<usize> = (0..self.groups.len())
            .filter(|&i| {
                only.map_or(self.groups[i].election.state() == State::Active, |id| {
                    self.groups[i].config.id == id
                })
            })
            .collect();
        if chosen.is_empty() {
            return Err(only.map_or("this node holds no group".to_string(), |id| format!("no group {id}")));
        }
        let mut handed = Vec::with_capacity(chosen.len());
        for index in chosen {
            let group = &self.groups[index];
            // On a copy: one group that cannot must not leave the others half done.
            let mut election = group.election.clone();
            let output = election
                .handover(now, to, &group.peers)
                .map_err(|err| format!("group {}: {err}", group.config.id))?;
            handed.push((index, election, output));
        }
        Ok(handed
            .into_iter()
            .map(|(index, election, output)| {
                self.groups[index].election = election;
                (index, output)
            })
            .collect())
    }
}
