//! What the loop owns ([`Agent`]) and how it carries out the election's actions, feeding their
//! outcomes back as events.

use std::{collections::VecDeque, time::Duration};

use pnet::datalink::NetworkInterface;
use tracing::{debug, error, info, warn};

use tokio::sync::oneshot;

use crate::{
    alarms::{Alarm, Alarms},
    bpf::Datapath,
    clock::{millis, monotonic_now},
    config::Config,
    control::Request,
    election::{group_peers, Action, Election, Event, Output, PeerView, State},
    garp::{self, Holding},
    heartbeat::HeartbeatSender,
    hooks::Hooks,
    keys::{self, Keys},
    metrics::Metrics,
    netwatch::NetEvent,
    notify::Notifier,
    sequence,
    status::{named_stats, PeerStatus, StatusReport},
    vip::VipManager,
};

/// Everything the loop owns.
pub(super) struct Agent {
    pub(super) config: Config,
    pub(super) interface: NetworkInterface,
    pub(super) datapath: Datapath,
    pub(super) vips: VipManager,
    pub(super) sender: HeartbeatSender,
    pub(super) election: Election,
    pub(super) peers: Vec<PeerView>,
    pub(super) state_since: Duration,
    /// Told whenever the VIPs are removed, so that gratuitous ARP bursts stop.
    pub(super) holding: Holding,
    /// The heartbeat epoch stored in the state directory (see `sequence`).
    pub(super) epoch: u32,
    /// The notify hooks' queue.
    pub(super) hooks: Hooks,
    /// The Prometheus metrics.
    pub(super) metrics: Metrics,
    /// systemd's readiness and watchdog.
    pub(super) notifier: Notifier,
    /// Misconfigurations the XDP counters reveal.
    pub(super) alarms: Alarms,
    /// The loaded keys; `None` with `--insecure-no-auth`.
    pub(super) keys: Option<Keys>,
}

impl Agent {
    /// Reads the peer map into the election's view; keeps the last view if the read fails.
    pub(super) fn refresh_peers(&mut self) {
        match self.datapath.peers() {
            Ok(entries) => {
                self.peers = group_peers(&entries, self.config.group);
                let factor = self.election.settings().dead_factor();
                self.metrics.observe_peers(monotonic_now(), &self.peers, factor);
            }
            Err(err) => warn!(error = err.as_dyn(), "reading the peer map failed"),
        }
    }

    /// Sends a heartbeat and tells the election whether it went out.
    pub(super) async fn send_heartbeat(&mut self) -> Output {
        let now = monotonic_now();
        let epoch = sequence::epoch_of(self.sender.next_sequence());
        if epoch > self.epoch {
            // 2^32 heartbeats into the run: the next start must begin above this epoch too.
            match sequence::note_epoch(&self.config.state_dir, epoch) {
                Ok(()) => self.epoch = epoch,
                Err(err) => error!(error = err.as_dyn(), "storing the heartbeat epoch failed"),
            }
        }
        if let Err(err) = self.datapath.note_sending(now, self.sender.next_sequence()) {
            warn!(error = err.as_dyn(), "telling XDP the heartbeat's sequence failed");
        }
        let result = self.sender.send(self.election.advertised(now)).await;
        if let Err(err) = &result {
            // Logged at debug: a link that is down fails every send; the election turns failures
            // that last a dead time into FAULT, which is logged once with its cause.
            debug!("sending a heartbeat failed: {err}");
        }
        self.election.handle(Event::HeartbeatSent { now, ok: result.is_ok() })
    }

    /// Carries out the election's output, and what the election makes of the outcomes it is fed
    /// back (a VIP that would not go on, a heartbeat that did not go out) before the rest, so that
    /// a promotion whose VIPs were refused goes no further; returns true when the agent must exit.
    pub(super) async fn execute(&mut self, output: Output) -> bool {
        self.log_transition(&output);
        let mut pending = VecDeque::from(output.actions);
        let mut exit = false;
        while let Some(action) = pending.pop_front() {
            // AddVips and SendHeartbeat have outcomes the election must hear of.
            let fed_back = match action {
                Action::AddVips => self.add_vips().await,
                Action::SendHeartbeat => self.send_heartbeat().await,
                Action::RemoveVips => {
                    self.remove_vips().await;
                    continue;
                }
                Action::SendGratuitousArp => {
                    self.announce(self.config.garp.count);
                    continue;
                }
                Action::RefreshGratuitousArp => {
                    self.announce(1);
                    continue;
                }
                Action::Exit => {
                    exit = true;
                    continue;
                }
            };
            self.log_transition(&fed_back);
            for action in fed_back.actions.into_iter().rev() {
                pending.push_front(action);
            }
        }
        exit
    }

    fn log_transition(&mut self, output: &Output) {
        if let Some(transition) = &output.transition {
            info!(from = %transition.from, to = %transition.to, "{}", transition.reason);
            self.state_since = monotonic_now();
            self.hooks.transition(transition);
            self.metrics.set_state(transition.to, true);
        }
    }

    /// Puts the VIPs on, logs each one that failed, and tells the election how it went.
    pub(super) async fn add_vips(&mut self) -> Output {
        let failures = self.vips.add_all().await;
        for failure in &failures {
            error!(error = failure.as_dyn(), "a VIP did not go on");
        }
        let now = monotonic_now();
        if failures.is_empty() {
            info!(vips = ?self.vip_strings(), "VIPs added");
            self.election.handle(Event::VipsAdded { now })
        } else {
            let all = failures.len() == self.vips.vips().len();
            self.election.handle(Event::AddVipsFailed { now, all })
        }
    }

    /// What a link or address change means for the election.
    pub(super) fn net_event(&mut self, event: NetEvent) -> Output {
        let now = monotonic_now();
        let ours = self.interface.index;
        match event {
            NetEvent::Link { name, index, usable } if name == self.config.iface => {
                if index != ours {
                    self.follow(index);
                }
                self.election.handle(Event::LinkChanged { now, up: usable })
            }
            NetEvent::LinkGone { index } if index == ours => {
                self.election.handle(Event::LinkChanged { now, up: false })
            }
            NetEvent::AddressRemoved { index, addr }
                if index == ours && self.vips.vips().iter().any(|vip| vip.addr == addr) =>
            {
                self.election.handle(Event::VipRemoved { now })
            }
            _ => Output::default(),
        }
    }

    /// The interface was recreated under its name (a new index): attaches XDP to it, and points
    /// the VIPs, the heartbeats and the gratuitous ARP at it. The node id stays the one it
    /// started with, whatever the new interface's MAC.
    fn follow(&mut self, index: u32) {
        let Some(interface) = pnet::datalink::interfaces().into_iter().find(|i| i.index == index) else {
            return warn!(index, "{} changed index but is not to be found", self.config.iface);
        };
        info!(old = self.interface.index, new = index, "{} was recreated: following it", self.config.iface);
        if let Err(err) = self.datapath.reattach(&self.config.iface, self.config.xdp_mode) {
            error!(error = err.as_dyn(), "attaching XDP to the recreated interface failed");
        }
        self.vips.set_ifindex(index);
        if let Err(err) = self.sender.rebind(&interface, &self.config.destination) {
            error!(error = err.as_dyn(), "opening the heartbeat socket on the recreated interface failed");
        }
        self.interface = interface;
    }

    /// Takes the VIPs off, stopping any gratuitous ARP burst still under way.
    async fn remove_vips(&mut self) {
        self.holding.released();
        match self.vips.remove_all().await {
            Ok(count) => info!(count, "VIPs removed"),
            Err(err) => error!(error = err.as_dyn(), "removing the VIPs failed"),
        }
    }

    /// Announces the VIPs: `rounds` rounds, the first now (see [`garp::announce`]); only while
    /// they are ours, so that a promotion whose VIPs were refused never points the LAN at us.
    fn announce(&self, rounds: u32) {
        if self.election.state() != State::Active {
            return;
        }
        let (vips, spacing) = (self.vips.vips(), self.config.garp.spacing);
        if let Err(err) = garp::announce(&self.interface, vips, rounds, spacing, &self.holding) {
            warn!(error = err.as_dyn(), "gratuitous ARP failed");
        }
    }

    /// Looks at the XDP counters for misconfigurations: logs each at most once a minute, and
    /// tells the election when another node uses our id.
    pub(super) fn watch_counters(&mut self) -> Output {
        let stats = match self.datapath.stats() {
            Ok(stats) => stats,
            Err(err) => {
                warn!(error = err.as_dyn(), "reading the XDP counters failed");
                return Output::default();
            }
        };
        let now = monotonic_now();
        self.metrics.observe_xdp(&stats);
        for (alarm, heartbeats) in self.alarms.observe(now, &stats) {
            self.metrics.alarm(alarm.name());
            warn!(heartbeats, "{alarm}");
        }
        if self.alarms.last_seen(Alarm::DuplicateNodeId) == Some(now) {
            self.election.handle(Event::DuplicateNodeId { now })
        } else {
            Output::default()
        }
    }

    /// A command from the control socket (not `status`, which the loop answers itself); the
    /// answer is one line.
    pub(super) fn command(&mut self, request: Request, reply: oneshot::Sender<Vec<u8>>) -> Output {
        let now = monotonic_now();
        let (output, done) = match request {
            Request::Drain => (self.election.handle(Event::Drain { now }), "drain"),
            Request::Resume => (self.election.handle(Event::Undrain { now }), "resume"),
            Request::Reload => {
                self.reload();
                (Output::default(), "reload")
            }
            Request::Status => (Output::default(), "status"),
        };
        let state = output.transition.as_ref().map_or(self.election.state(), |t| t.to);
        info!(%state, "control: {done}");
        let _ = reply.send(format!("{done}: {state}\n").into_bytes());
        output
    }

    /// Raises the one-way-link alarm while the election finds peers that cannot hear us.
    pub(super) fn watch_deaf_peers(&mut self, now: Duration) {
        let deaf = self.election.deaf_peers(now);
        if !deaf.is_empty() && self.alarms.raise(now, Alarm::OneWayLink) {
            self.metrics.alarm(Alarm::OneWayLink.name());
            let peers: Vec<String> = deaf.iter().map(ToString::to_string).collect();
            warn!(peers = ?peers, "{}", Alarm::OneWayLink);
        }
    }

    /// The loop turned: the XDP lease and the systemd watchdog, both kept alive by it.
    pub(super) fn loop_turned(&mut self) {
        self.renew_lease();
        self.notifier.alive();
    }

    /// Tells systemd the agent serves, and in which state.
    pub(super) fn ready(&self) {
        self.notifier.ready(&format!("{} on {}", self.election.state(), self.config.iface));
    }

    /// SIGHUP or `ctl reload`: re-reads the key file, with systemd told of the reload.
    pub(super) fn reload(&mut self) {
        self.notifier.reloading();
        self.reload_keys();
        self.ready();
    }

    /// Keeps the XDP fence down for another dead time: this agent is alive and its loop turns.
    fn renew_lease(&mut self) {
        if let Err(err) = self.datapath.renew_lease(monotonic_now()) {
            warn!(error = err.as_dyn(), "renewing the XDP lease failed");
        }
    }

    /// SIGUSR2: replaces this process with the binary at the path it was started from (how a new
    /// version is put in service), keeping the VIPs, the pinned link and maps, and a fresh lease:
    /// the new process finds them and resumes (see [`Event::Resume`]). Returns only if the exec
    /// failed, and then the agent carries on as it was.
    pub(super) async fn reexec(&mut self) {
        use std::os::unix::process::CommandExt as _;
        let mut args = std::env::args_os();
        let Some(program) = args.next() else {
            return error!("SIGUSR2: no program path to re-execute");
        };
        info!(program = %program.to_string_lossy(), "SIGUSR2: re-executing");
        // The new process has the whole dead time, from now, to tell the peers it is here.
        // What the election makes of it does not matter: this process is about to be replaced.
        let _ = self.send_heartbeat().await;
        self.renew_lease();
        let err = std::process::Command::new(&program).args(args).exec();
        error!(error = err.as_dyn(), "SIGUSR2: re-executing failed; carrying on");
    }

    /// Re-reads the key file (SIGHUP) and hands the keys to the XDP program and the sender. On
    /// error the old keys stay in force: a typo in a rollout must not stop the cluster.
    fn reload_keys(&mut self) {
        let Some(path) = self.config.key_file.clone() else {
            return info!("SIGHUP: authentication is off (--insecure-no-auth); nothing to reload");
        };
        let keys = match keys::load(&path) {
            Ok(keys) => keys,
            Err(err) => return error!(error = err.as_dyn(), "SIGHUP: keeping the old keys"),
        };
        if let Err(err) = self.datapath.set_keys(&keys.to_auth_keys()) {
            return error!(error = err.as_dyn(), "SIGHUP: keeping the old keys");
        }
        self.sender.set_key(Some(keys.signing_key()));
        self.keys = Some(keys);
        info!(accepted = keys.to_auth_keys().count, "SIGHUP: reloaded the keys from {}", path.display());
    }

    pub(super) fn auth_summary(&self) -> String {
        match &self.keys {
            None => "off".into(),
            Some(Keys { next: None, .. }) => "on (1 key)".into(),
            Some(Keys { next: Some(_), .. }) => "on (current and next key)".into(),
        }
    }

    pub(super) fn vip_strings(&self) -> Vec<String> {
        self.vips.vips().iter().map(ToString::to_string).collect()
    }

    pub(super) async fn report(&self) -> StatusReport {
        let now = monotonic_now();
        let peers = match self.datapath.peers() {
            Ok(entries) => entries
                .iter()
                .filter(|(key, _)| key.group == self.config.group.0)
                .map(|(key, record)| {
                    PeerStatus::from_record(key, record, now, self.election.settings().dead_factor())
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let vips_present = match self.vips.present().await {
            Ok(present) => present.iter().map(ToString::to_string).collect(),
            Err(_) => Vec::new(),
        };
        StatusReport {
            iface: self.config.iface.clone(),
            node_id: self.election.settings().node_id,
            group: self.config.group,
            priority: self.config.priority,
            state: self.election.state().to_string(),
            state_for_ms: millis(now.saturating_sub(self.state_since)),
            vips: self.vip_strings(),
            vips_present,
            interval_ms: millis(self.config.interval),
            dead_time_ms: millis(self.config.dead_time),
            xdp_mode: self.datapath.attached_mode.unwrap_or("none").to_string(),
            auth: self.auth_summary(),
            peers,
            xdp_stats: self.datapath.stats().map(|s| named_stats(&s)).unwrap_or_default(),
            alarms: self.alarms.recent(now),
            fault: self.election.fault(now).map(|fault| fault.to_string()),
        }
    }
}

/// An error as a tracing field: the subscriber prints it with its sources.
pub(super) trait AsDynError {
    fn as_dyn(&self) -> &(dyn std::error::Error + 'static);
}

impl<E: std::error::Error + 'static> AsDynError for E {
    fn as_dyn(&self) -> &(dyn std::error::Error + 'static) {
        self
    }
}
