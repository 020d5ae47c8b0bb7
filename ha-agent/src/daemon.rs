//! The agent's main loop: a thin I/O layer around the [`Election`]. It feeds the election the
//! peer table (polled every 100 ms, and at once on a ring-buffer event), the clock and signals,
//! and carries out the actions it returns.

use std::{
    os::unix::net::UnixListener as StdUnixListener,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};
use aya::maps::{MapData, RingBuf};
use ha_common::{PeerEvent, XdpConfig};
use pnet::datalink::{self, NetworkInterface};
use tokio::{
    io::unix::AsyncFd,
    net::UnixListener,
    signal::unix::{signal, SignalKind},
    time::{interval, sleep_until, Instant, MissedTickBehavior},
};
use tracing::{debug, error, info, warn};

use crate::{
    bpf::Datapath,
    config::{node_id_from_mac, Config},
    election::{Action, Election, Event, Output, PeerView, Settings, State},
    garp,
    heartbeat::HeartbeatSender,
    keys::{self, Keys},
    status::{self, named_stats, PeerStatus, StatusReport},
    vip::VipManager,
};

/// How often the peer map is read when no event arrives.
pub const POLL_PERIOD: Duration = Duration::from_millis(100);

/// CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`, as a duration since boot.
pub fn monotonic_now() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Checks what must hold before anything is touched, with one-line errors.
fn preflight(config: &Config) -> anyhow::Result<(NetworkInterface, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("ha-agent must run as root: it attaches XDP and changes addresses (try sudo)");
    }
    let interface = datalink::interfaces()
        .into_iter()
        .find(|i| i.name == config.iface)
        .ok_or_else(|| anyhow::anyhow!("unknown interface {}", config.iface))?;
    let node_id = match config.node_id {
        Some(id) => id,
        None => interface.mac.and_then(|mac| node_id_from_mac(mac.octets())).ok_or_else(|| {
            anyhow::anyhow!("{} has no MAC address to derive a node id from: give --node-id", config.iface)
        })?,
    };
    Ok((interface, node_id))
}

/// Binds the control socket, refusing to steal one a live agent still answers on.
fn bind_control_socket(run_dir: &Path) -> anyhow::Result<(UnixListener, PathBuf)> {
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create run dir {}", run_dir.display()))?;
    let path = status::socket_path(run_dir);
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        bail!(
            "another agent is running with run dir {} (give each instance its own --run-dir)",
            run_dir.display()
        );
    }
    let _ = std::fs::remove_file(&path);
    let listener = StdUnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
    listener.set_nonblocking(true)?;
    Ok((UnixListener::from_std(listener)?, path))
}

/// Everything the loop owns.
struct Agent {
    config: Config,
    interface: NetworkInterface,
    node_id: u32,
    datapath: Datapath,
    vips: VipManager,
    sender: HeartbeatSender,
    election: Election,
    peers: Vec<PeerView>,
    state_since: Duration,
    /// Bumped whenever the VIPs are removed; a gratuitous ARP burst stops when it changes.
    holding_epoch: Arc<AtomicU64>,
    /// The loaded keys; `None` with `--insecure-no-auth`.
    keys: Option<Keys>,
}

impl Agent {
    /// Reads the peer map into the election's view; keeps the last view if the read fails.
    fn refresh_peers(&mut self) {
        match self.datapath.peers() {
            Ok(entries) => {
                self.peers = entries
                    .iter()
                    .filter(|(key, _)| key.group == self.config.group)
                    .filter_map(|(key, record)| {
                        Some(PeerView {
                            node_id: key.node_id,
                            priority: record.priority,
                            state: ha_common::NodeState::from_u8(record.state)?,
                            last_seen: Duration::from_nanos(record.last_seen_ns),
                            yielded: record.flags & ha_common::FLAG_YIELDED != 0,
                        })
                    })
                    .collect();
            }
            Err(err) => warn!("reading the peer map failed: {err}"),
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

    /// Carries out the election's output; returns true when the agent must exit.
    async fn execute(&mut self, output: Output) -> bool {
        if let Some(transition) = &output.transition {
            info!(from = %transition.from, to = %transition.to, "{}", transition.reason);
            self.state_since = monotonic_now();
        }
        let mut exit = false;
        for action in output.actions {
            match action {
                Action::AddVips => match self.vips.add_all().await {
                    Ok(()) => info!(vips = ?self.vip_strings(), "VIPs added"),
                    Err(err) => error!("adding the VIPs failed: {err}"),
                },
                Action::RemoveVips => {
                    self.holding_epoch.fetch_add(1, Ordering::SeqCst);
                    match self.vips.remove_all().await {
                        Ok(count) => info!(count, "VIPs removed"),
                        Err(err) => error!("removing the VIPs failed: {err}"),
                    }
                }
                Action::SendGratuitousArp => self.announce(self.config.garp.count),
                Action::SendHeartbeat => self.send_heartbeat().await,
                Action::Exit => exit = true,
            }
        }
        exit
    }

    /// Sends the first round of gratuitous ARP now and the other `count - 1` rounds off the
    /// runtime thread (they sleep in between).
    fn announce(&self, count: u32) {
        let mut announcer = match garp::Announcer::open(&self.interface, self.vips.vips()) {
            Ok(announcer) => announcer,
            Err(err) => return warn!("gratuitous ARP failed: {err}"),
        };
        if let Err(err) = announcer.send_round() {
            return warn!("gratuitous ARP failed: {err}");
        }
        if count <= 1 {
            return;
        }
        let spacing = self.config.garp.spacing;
        let epoch = Arc::clone(&self.holding_epoch);
        let started_in = epoch.load(Ordering::SeqCst);
        tokio::task::spawn_blocking(move || {
            let still_holder = || epoch.load(Ordering::SeqCst) == started_in;
            if let Err(err) = announcer.repeat(count - 1, spacing, still_holder) {
                warn!("gratuitous ARP failed: {err}");
            }
        });
    }

    /// Re-reads the key file (SIGHUP) and hands the keys to the XDP program and the sender. On
    /// error the old keys stay in force: a typo in a rollout must not stop the cluster.
    fn reload_keys(&mut self) {
        let Some(path) = self.config.key_file.clone() else {
            return info!("SIGHUP: authentication is off (--insecure-no-auth); nothing to reload");
        };
        let keys = match keys::load(&path) {
            Ok(keys) => keys,
            Err(err) => return error!("SIGHUP: keeping the old keys: {err}"),
        };
        if let Err(err) = self.datapath.set_keys(&keys.to_auth_keys()) {
            return error!("SIGHUP: keeping the old keys: {err}");
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
                .filter(|(key, _)| key.group == self.config.group)
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
            state_for_ms: now.saturating_sub(self.state_since).as_millis() as u64,
            vips: self.vip_strings(),
            vips_present,
            interval_ms: self.config.interval.as_millis() as u64,
            dead_time_ms: self.config.dead_time.as_millis() as u64,
            xdp_mode: self.datapath.attached_mode.unwrap_or("none").to_string(),
            auth: self.auth_summary(),
            peers,
            xdp_stats: self.datapath.stats().map(|s| named_stats(&s)).unwrap_or_default(),
        }
    }
}

/// Registers a BPF ring buffer (or aya-log's, which wraps one) with the runtime for readability.
fn readable_fd<T: std::os::fd::AsRawFd>(inner: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its map fd and keeps it open, unchanged, for as long as it lives, and
    // the AsyncFd owns `inner`.
    Ok(unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }?)
}

/// Drains the ring buffer; returns how many events it held.
fn drain_events(ring: &mut RingBuf<MapData>) -> usize {
    let mut count = 0;
    while let Some(item) = ring.next() {
        if item.len() >= std::mem::size_of::<PeerEvent>() {
            // SAFETY: the XDP program writes whole PeerEvents; read_unaligned copes with any offset.
            let event: PeerEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            debug!(node = format_args!("{:#x}", event.node_id), changes = event.changes, "peer event");
        }
        count += 1;
    }
    count
}

/// Answers a connection to the control socket with the status report, then closes it. Nothing
/// is read: a client that connects and stays silent must not hold up the loop (and with it the
/// heartbeats), and the write gives up after 100 ms for the same reason.
async fn serve_status(agent: &Agent, mut stream: tokio::net::UnixStream) {
    let report = agent.report().await;
    if let Ok(json) = serde_json::to_vec(&report) {
        let write = tokio::io::AsyncWriteExt::write_all(&mut stream, &json);
        let _ = tokio::time::timeout(Duration::from_millis(100), write).await;
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (interface, node_id) = preflight(&config)?;
    let keys = match &config.key_file {
        Some(path) => Some(keys::load(path)?),
        None => {
            warn!("authentication is off (--insecure-no-auth): anyone on the LAN can take the VIP");
            None
        }
    };
    let xdp_config =
        XdpConfig { port: config.port, group: config.group, own_node_id: node_id, ..Default::default() };
    let auth_keys = keys.as_ref().map(Keys::to_auth_keys).unwrap_or_default();
    let mut datapath = Datapath::load(&xdp_config, &auth_keys)?;
    let mode = datapath.attach(&config.iface, config.xdp_mode)?;
    datapath.pin(&config.pin_dir)?;
    match aya_log::EbpfLogger::init(datapath.ebpf_mut()) {
        Ok(logger) => {
            let mut logger = readable_fd(logger)?;
            tokio::spawn(async move {
                while let Ok(mut guard) = logger.readable_mut().await {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            });
        }
        Err(err) => warn!("XDP logs unavailable: {err}"),
    }
    let mut events = readable_fd(datapath.take_events()?)?;

    let vips = VipManager::new(interface.index, config.vips.clone())?;
    // A crashed instance may have left the VIP behind: every node starts STANDBY without it.
    let stale = vips.remove_all().await.context("removing stale VIPs")?;
    if stale > 0 {
        warn!(count = stale, "removed stale VIPs left on {} by an earlier run", config.iface);
    }
    let (listener, socket_path) = bind_control_socket(&config.run_dir)?;
    let mut sender = HeartbeatSender::new(
        &config.iface,
        interface.index,
        &config.destination,
        config.group,
        node_id,
        config.interval.as_millis() as u32,
    )
    .context("opening the heartbeat socket")?;
    sender.set_key(keys.as_ref().map(Keys::signing_key));

    let now = monotonic_now();
    let settings = Settings { node_id, priority: config.priority, dead_time: config.dead_time };
    info!(
        iface = %config.iface, node = format_args!("{node_id:#x}"), priority = config.priority,
        group = config.group, xdp = mode, interval_ms = config.interval.as_millis() as u64,
        dead_time_ms = config.dead_time.as_millis() as u64, "started STANDBY"
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
        holding_epoch: Arc::new(AtomicU64::new(0)),
        keys,
    };
    let result = main_loop(&mut agent, &mut events, &listener).await;

    // Whatever happened, leave no VIP behind.
    if let Err(err) = agent.vips.remove_all().await {
        error!("removing the VIPs at exit failed: {err}");
    }
    let _ = std::fs::remove_file(&socket_path);
    info!("stopped");
    result
}

async fn main_loop(
    agent: &mut Agent,
    events: &mut AsyncFd<RingBuf<MapData>>,
    listener: &UnixListener,
) -> anyhow::Result<()> {
    let mut poll = interval(POLL_PERIOD);
    poll.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut heartbeat = interval(agent.config.interval);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let refresh_period = agent.config.garp.refresh.unwrap_or(Duration::from_secs(3600));
    let mut garp_refresh = interval(refresh_period);
    garp_refresh.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;

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
                    serve_status(agent, stream).await;
                }
                continue;
            }
            _ = garp_refresh.tick(), if agent.config.garp.refresh.is_some() => {
                if agent.election.state() == State::Active {
                    agent.announce(1);
                }
                continue;
            }
            _ = sighup.recv() => {
                agent.reload_keys();
                continue;
            }
            _ = poll.tick() => {}
            guard = events.readable_mut() => {
                let mut guard = guard?;
                drain_events(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
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
