//! Notify hooks: a command for each transition (to ACTIVE, STANDBY or FAULT, or one for all),
//! as keepalived's `notify_*` scripts. The daemon only queues a call: one task runs the queue
//! strictly in order, one hook at a time, each killed at its timeout, so that a slow hook never
//! delays a failover, and hooks see transitions in the order they happened. Their output goes to
//! the log.
//!
//! A hook is a shell command line (`/bin/sh -c`); its environment says what happened:
//! `HA_OLD_STATE`, `HA_NEW_STATE`, `HA_REASON`, `HA_VIPS` (space-separated), `HA_IFACE`,
//! `HA_GROUP`, `HA_NODE_ID`.

use std::{
    collections::VecDeque,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::Command,
    sync::mpsc,
    task::JoinHandle,
};
use tracing::{info, warn};

use crate::election::{State, Transition};

/// The hooks of an agent, as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookCommands {
    /// Run on every transition.
    pub any: Option<String>,
    /// Run on becoming ACTIVE.
    pub active: Option<String>,
    /// Run on becoming STANDBY.
    pub standby: Option<String>,
    /// Run on entering FAULT.
    pub fault: Option<String>,
    /// How long a hook may run before it is killed.
    pub timeout: Duration,
}

impl HookCommands {
    /// Each configured hook as `state: command` (`any` for the one run on every transition).
    #[must_use]
    pub fn describe(&self) -> Vec<String> {
        [("active", &self.active), ("standby", &self.standby), ("fault", &self.fault), ("any", &self.any)]
            .into_iter()
            .filter_map(|(state, command)| command.as_ref().map(|command| format!("{state}: {command}")))
            .collect()
    }

    /// Whether no hook is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.any.is_none() && self.active.is_none() && self.standby.is_none() && self.fault.is_none()
    }

    /// The commands to run for `transition`, in order: the state's own, then the one for all.
    #[must_use]
    pub fn for_transition(&self, transition: &Transition) -> Vec<String> {
        let own = match transition.to {
            State::Active => &self.active,
            State::Standby => &self.standby,
            State::Fault => &self.fault,
            State::Releasing | State::Maintenance | State::Stopped => &None,
        };
        own.iter().chain(&self.any).cloned().collect()
    }
}

/// What every hook of a group is told besides the transition.
#[derive(Clone, Debug)]
pub struct HookContext {
    /// The interface.
    pub iface: String,
    /// The VIP group.
    pub group: String,
    /// This node's id.
    pub node_id: String,
    /// The VIPs, space-separated.
    pub vips: String,
}

/// One queued run.
struct Call {
    command: String,
    env: Vec<(&'static str, String)>,
    timeout: Duration,
}

/// The queue of hook runs (of every group: one queue, so that hooks run in the order of the
/// transitions, whichever group made them) and the task that works through it.
pub struct Hooks {
    /// The latest runs, for `status`.
    runs: Arc<Mutex<VecDeque<(String, String, Instant)>>>,
    /// `None` once [`Hooks::finish`] closed it.
    queue: Option<mpsc::UnboundedSender<Call>>,
    runner: JoinHandle<()>,
}

impl Hooks {
    /// Starts the runner task on the current tokio runtime.
    #[must_use]
    pub fn start() -> Self {
        let (queue, calls) = mpsc::unbounded_channel();
        let runs = Arc::default();
        let runner = tokio::spawn(run_queue(calls, Arc::clone(&runs)));
        Self { runs, queue: Some(queue), runner }
    }

    /// The latest runs (at most [`KEPT_RUNS`]), oldest first.
    #[must_use]
    pub fn recent(&self) -> Vec<HookRun> {
        let runs = self.runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        runs.iter()
            .map(|(command, outcome, ended)| HookRun {
                command: command.clone(),
                outcome: outcome.clone(),
                ended_ms_ago: u64::try_from(ended.elapsed().as_millis()).unwrap_or(u64::MAX),
            })
            .collect()
    }

    /// Queues the hooks `commands` has for `transition`; returns at once.
    pub fn transition(&self, commands: &HookCommands, context: &HookContext, transition: &Transition) {
        for command in commands.for_transition(transition) {
            let env = vec![
                ("HA_OLD_STATE", transition.from.to_string()),
                ("HA_NEW_STATE", transition.to.to_string()),
                ("HA_REASON", transition.reason.clone()),
                ("HA_VIPS", context.vips.clone()),
                ("HA_IFACE", context.iface.clone()),
                ("HA_GROUP", context.group.clone()),
                ("HA_NODE_ID", context.node_id.clone()),
            ];
            if let Some(queue) = &self.queue {
                // The runner lives as long as `self`: a send cannot fail.
                let _ = queue.send(Call { command, env, timeout: commands.timeout });
            }
        }
    }

    /// Lets the queued hooks run (each within its timeout) before the agent exits; later
    /// transitions run none.
    pub async fn finish(&mut self) {
        if self.queue.take().is_some() {
            let _ = (&mut self.runner).await;
        }
    }
}

/// How many hook runs `status` shows.
pub const KEPT_RUNS: usize = 5;

/// One finished hook run, as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HookRun {
    /// The command line.
    pub command: String,
    /// How it ended: "done", "failed: …", "killed at its timeout", …
    pub outcome: String,
    /// How long ago it ended, in ms.
    pub ended_ms_ago: u64,
}

async fn run_queue(
    mut calls: mpsc::UnboundedReceiver<Call>,
    runs: Arc<Mutex<VecDeque<(String, String, Instant)>>>,
) {
    while let Some(call) = calls.recv().await {
        let outcome = run_one(&call, call.timeout).await;
        let mut runs = runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if runs.len() == KEPT_RUNS {
            runs.pop_front();
        }
        runs.push_back((call.command, outcome, Instant::now()));
    }
}

/// Runs one hook to its end or its timeout, its output lines logged as they come; returns how
/// it ended.
async fn run_one(call: &Call, timeout: Duration) -> String {
    let spawned = Command::new("/bin/sh")
        .arg("-c")
        .arg(&call.command)
        .envs(call.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own: the timeout kills what the hook started too, not only the shell.
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            warn!(hook = %call.command, error = &err as &dyn std::error::Error, "hook did not start");
            return format!("did not start: {err}");
        }
    };
    let stdout = child.stdout.take().map(|out| tokio::spawn(log_lines(call.command.clone(), out)));
    let stderr = child.stderr.take().map(|err| tokio::spawn(log_lines(call.command.clone(), err)));
    let outcome = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            info!(hook = %call.command, "hook done");
            "done".to_string()
        }
        Ok(Ok(status)) => {
            warn!(hook = %call.command, %status, "hook failed");
            format!("failed: {status}")
        }
        Ok(Err(err)) => {
            warn!(hook = %call.command, error = &err as &dyn std::error::Error, "hook lost");
            format!("lost: {err}")
        }
        Err(_) => {
            if let Some(pid) = child.id() {
                kill_process_group(pid);
            }
            let _ = child.wait().await;
            warn!(hook = %call.command, timeout_ms = timeout.as_millis(), "hook killed at its timeout");
            format!("killed at its {} ms timeout", timeout.as_millis())
        }
    };
    // The output tasks end with the pipes; one that a hook's own children keep open is cut off.
    for mut task in stdout.into_iter().chain(stderr) {
        if tokio::time::timeout(Duration::from_millis(200), &mut task).await.is_err() {
            task.abort();
        }
    }
    outcome
}

/// SIGKILLs the process group led by `pid`: a hook or check started with `process_group(0)`,
/// and whatever it started.
pub(crate) fn kill_process_group(pid: u32) {
    // SAFETY: kill has no memory preconditions; a negative pid names a process group.
    unsafe { libc::kill(-pid.cast_signed(), libc::SIGKILL) };
}

async fn log_lines(hook: String, output: impl tokio::io::AsyncRead + Unpin) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        info!(hook = %hook, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_transition_runs_its_states_hook_then_the_one_for_all() {
        let commands = HookCommands {
            any: Some("all".into()),
            active: Some("up".into()),
            fault: Some("broken".into()),
            ..HookCommands::default()
        };
        let to = |to| Transition { from: State::Standby, to, reason: String::new() };
        assert_eq!(commands.for_transition(&to(State::Active)), ["up", "all"]);
        assert_eq!(commands.for_transition(&to(State::Standby)), ["all"]);
        assert_eq!(commands.for_transition(&to(State::Fault)), ["broken", "all"]);
        assert_eq!(commands.for_transition(&to(State::Stopped)), ["all"]);
        assert!(HookCommands::default().for_transition(&to(State::Active)).is_empty());
    }
}
