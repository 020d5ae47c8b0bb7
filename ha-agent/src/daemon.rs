//! The agent's main loop: a thin I/O layer around the [`Election`]. It feeds the election the
//! peer table (polled every 100 ms, and at once on a ring-buffer event), the clock and signals,
//! and carries out the actions it returns.

use std::{collections::VecDeque, io, time::Duration};

use ha_common::XdpConfig;
use pnet::datalink::{self, NetworkInterface};
use tokio::{
    net::UnixListener,
    signal::unix::{signal, SignalKind},
    time::{interval, sleep_until, Instant, MissedTickBehavior},
};
use tracing::{debug, error, info, warn};

use crate::{
    bpf::{BpfError, Datapath, Events},
    config::Config,
    election::{group_peers, Action, Election, Event, Output, PeerView, Settings},
    garp::{self, Holding},
    heartbeat::{HeartbeatSender, Origin},
    ids::NodeId,
    keys::{self, KeyError, Keys},
    status::{self, named_stats, ControlSocket, PeerStatus, StatusError, StatusReport},
    vip::{VipError, VipManager},
};

/// Why the agent could not start, or stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Not root.
    #[error("ha-agent must run as root: it attaches XDP and changes addresses (try sudo)")]
    NotRoot,
    /// No such interface.
    #[error("unknown interface {0}")]
    UnknownInterface(String),
    /// No node id given and none to derive.
    #[error("{0} has no MAC address to derive a node id from: give --node-id")]
    NoNodeId(String),
    /// The key file.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The XDP program and its maps.
    #[error(transparent)]
    Bpf(#[from] BpfError),
    /// The VIPs.
    #[error(transparent)]
    Vip(#[from] VipError),
    /// The control socket.
    #[error(transparent)]
    Control(#[from] StatusError),
    /// The heartbeat socket.
    #[error("opening the heartbeat socket")]
    Heartbeat(#[source] io::Error),
    /// Signals, or waiting on the event ring buffer.
    #[error("the event loop")]
    EventLoop(#[source] io::Error),
}

/// How often the peer map is read when no event arrives.
pub const POLL_PERIOD: Duration = Duration::from_millis(100);

/// CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`, as a duration since boot.
pub fn monotonic_now() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Checks what must hold before anything is touched, with one-line errors.
fn preflight(config: &Config) -> Result<(NetworkInterface, NodeId), DaemonError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(DaemonError::NotRoot);
    }
    let interface = datalink::interfaces()
        .into_iter()
        .find(|i| i.name == config.iface)
        .ok_or_else(|| DaemonError::UnknownInterface(config.iface.clone()))?;
    let node_id = match config.node_id {
        Some(id) => id,
        None => interface
            .mac
            .and_then(|mac| NodeId::from_mac(mac.octets()))
            .ok_or_else(|| DaemonError::NoNodeId(config.iface.clone()))?,
    };
    Ok((interface, node_id))
}

/// Everything the loop owns.
struct Agent {
    config: Config,
    interface: NetworkInterface,
    node_id: NodeId,
    datapath: Datapath,
    vips: VipManager,
    sender: HeartbeatSender,
    election: Election,
    peers: Vec<PeerView>,
    state_since: Duration,
    /// Told whenever the VIPs are removed, so that gratuitous ARP bursts stop.
    holding: Holding,
    /// The loaded keys; `None` with `--insecure-no-auth`.
    keys: Option<Keys>,
}

impl Agent {
    /// Reads the peer map into the election's view; keeps the last view if the read fails.
    fn refresh_peers(&mut self) {
        match self.datapath.peers() {
            Ok(entries) => self.peers = group_peers(&entries, self.config.group),
            Err(err) => warn!(error = err.as_dyn(), "reading the peer map failed"),
        }
    }

    async fn send_heartbeat(&mut self) {
        let advert = self.election.advertised(monotonic_now());
        if let Err(err) = self.sender.send(advert).await {
            // Logged at debug: a link that is down fails every send, and the election, not the
            // log, is what reacts to that.
            debug!("sending a heartbeat failed: {err}");
        }
    }

    /// Carries out the election's output, and what the election makes of the outcomes it is fed
    /// back (a VIP that would not go on); returns true when the agent must exit.
    async fn execute(&mut self, output: Output) -> bool {
        let mut pending = VecDeque::from([output]);
        let mut exit = false;
        while let Some(output) = pending.pop_front() {
            if let Some(transition) = &output.transition {
                info!(from = %transition.from, to = %transition.to, "{}", transition.reason);
                self.state_since = monotonic_now();
            }
            for action in output.actions {
                match action {
                    Action::AddVips => pending.push_back(self.add_vips().await),
                    Action::RemoveVips => {
                        self.holding.released();
                        match self.vips.remove_all().await {
                            Ok(count) => info!(count, "VIPs removed"),
                            Err(err) => error!(error = err.as_dyn(), "removing the VIPs failed"),
                        }
                    }
                    Action::SendGratuitousArp => self.announce(self.config.garp.count),
                    Action::RefreshGratuitousArp => self.announce(1),
                    Action::SendHeartbeat => self.send_heartbeat().await,
                    Action::Exit => exit = true,
                }
            }
        }
        exit
    }

    /// Puts the VIPs on, logs each one that failed, and tells the election how it went.
    async fn add_vips(&mut self) -> Output {
        let failures = self.vips.add_all().await;
        for failure in &failures {
            error!(error = failure.as_dyn(), "a VIP did not go on");
        }
        let now = monotonic_now();
        if failures.is_empty() {
            info!(vips = ?self.vip_strings(), "VIPs added");
            self.election.handle(Event::VipsAdded { now })
        } else {
            self.election.handle(Event::AddVipsFailed { now })
        }
    }

    /// Announces the VIPs: `rounds` rounds, the first now (see [`garp::announce`]).
    fn announce(&self, rounds: u32) {
        let (vips, spacing) = (self.vips.vips(), self.config.garp.spacing);
        if let Err(err) = garp::announce(&self.interface, vips, rounds, spacing, &self.holding) {
            warn!(error = err.as_dyn(), "gratuitous ARP failed");
        }
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

    fn auth_summary(&self) -> String {
        match &self.keys {
            None => "off".into(),
            Some(Keys { next: None, .. }) => "on (1 key)".into(),
            Some(Keys { next: Some(_), .. }) => "on (current and next key)".into(),
        }
    }

    fn vip_strings(&self) -> Vec<String> {
        self.vips.vips().iter().map(ToString::to_string).collect()
    }

    async fn report(&self) -> StatusReport {
        let now = monotonic_now();
        let peers = match self.datapath.peers() {
            Ok(entries) => entries
                .iter()
                .filter(|(key, _)| key.group == self.config.group.0)
                .map(|(key, record)| PeerStatus::from_record(key, record, now, self.config.dead_time))
                .collect(),
            Err(_) => Vec::new(),
        };
        let vips_present = match self.vips.present().await {
            Ok(present) => present.iter().map(ToString::to_string).collect(),
            Err(_) => Vec::new(),
        };
        StatusReport {
            iface: self.config.iface.clone(),
            node_id: self.node_id,
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
        }
    }
}

/// A duration in whole milliseconds, for logs and the status report.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// An error as a tracing field: the subscriber prints it with its sources.
trait AsDynError {
    fn as_dyn(&self) -> &(dyn std::error::Error + 'static);
}

impl<E: std::error::Error + 'static> AsDynError for E {
    fn as_dyn(&self) -> &(dyn std::error::Error + 'static) {
        self
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let (interface, node_id) = preflight(&config)?;
    let keys = if let Some(path) = &config.key_file {
        Some(keys::load(path)?)
    } else {
        warn!("authentication is off (--insecure-no-auth): anyone on the LAN can take the VIP");
        None
    };
    let xdp_config =
        XdpConfig { port: config.port, group: config.group.0, own_node_id: node_id.0, ..Default::default() };
    let auth_keys = keys.as_ref().map(Keys::to_auth_keys).unwrap_or_default();
    let mut datapath = Datapath::load(&xdp_config, &auth_keys)?;
    let mode = datapath.attach(&config.iface, config.xdp_mode)?;
    datapath.pin(&config.pin_dir)?;
    datapath.forward_logs()?;
    let mut events = datapath.events()?;

    let vips = VipManager::new(interface.index, config.vips.clone())?;
    // A crashed instance may have left the VIP behind: every node starts STANDBY without it.
    let stale = vips.remove_all().await?;
    if stale > 0 {
        warn!(count = stale, "removed stale VIPs left on {} by an earlier run", config.iface);
    }
    let control = ControlSocket::bind(&config.run_dir)?;
    let origin = Origin { group: config.group, node_id, interval: config.interval };
    let mut sender =
        HeartbeatSender::open(&interface, &config.destination, origin).map_err(DaemonError::Heartbeat)?;
    sender.set_key(keys.as_ref().map(Keys::signing_key));

    let now = monotonic_now();
    let settings = Settings {
        node_id,
        priority: config.priority,
        dead_time: config.dead_time,
        garp_refresh: config.garp.refresh,
    };
    info!(
        iface = %config.iface, node = %node_id, priority = config.priority, group = %config.group,
        xdp = mode, interval_ms = millis(config.interval), dead_time_ms = millis(config.dead_time),
        "started STANDBY"
    );
    let mut agent = Agent {
        election: Election::new(settings, now),
        config,
        interface,
        node_id,
        datapath,
        vips,
        sender,
        peers: Vec::new(),
        state_since: now,
        holding: Holding::default(),
        keys,
    };
    let result = main_loop(&mut agent, &mut events, &control.listener).await;

    // Whatever happened, leave no VIP behind.
    if let Err(err) = agent.vips.remove_all().await {
        error!(error = err.as_dyn(), "removing the VIPs at exit failed");
    }
    drop(control);
    info!("stopped");
    result
}

async fn main_loop(
    agent: &mut Agent,
    events: &mut Events,
    listener: &UnixListener,
) -> Result<(), DaemonError> {
    let mut poll = interval(POLL_PERIOD);
    poll.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut heartbeat = interval(agent.config.interval);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::EventLoop)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::EventLoop)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::EventLoop)?;

    loop {
        let deadline = agent
            .election
            .next_deadline(&agent.peers)
            .map(|at| Instant::now() + at.saturating_sub(monotonic_now()));
        let mut shutdown = false;
        tokio::select! {
            _ = heartbeat.tick() => {
                // Evaluate now and restart the poll period: at the default 100 ms interval the
                // heartbeat and the poll share one wake-up instead of two.
                agent.send_heartbeat().await;
                poll.reset();
            }
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    status::serve(stream, &agent.report().await).await;
                }
                continue;
            }
            _ = sighup.recv() => {
                agent.reload_keys();
                continue;
            }
            _ = poll.tick() => {}
            batch = events.next_batch() => {
                batch.map_err(DaemonError::EventLoop)?;
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
            _ = sigterm.recv() => shutdown = true,
            _ = sigint.recv() => shutdown = true,
        }
        if shutdown {
            let output = agent.election.handle(Event::Shutdown { now: monotonic_now() });
            if agent.execute(output).await {
                return Ok(());
            }
        }
        agent.refresh_peers();
        let now = monotonic_now();
        let output = agent.election.handle(Event::Tick { now, peers: &agent.peers });
        if agent.execute(output).await {
            return Ok(());
        }
    }
}
