//! The agent's start-up and main loop: a thin I/O layer around the [`Election`].
//!
//! Start-up ([`run`]) is ordered for restarts: signals first; then the predecessor's lease (if
//! fresh, renewed at once so that its still-attached program does not fence the VIPs); the
//! heartbeat epoch, durably raised; a first ACTIVE heartbeat when resuming, before the slow XDP
//! load; then the program, put behind the pinned link. The loop feeds the election the peer table
//! (read at every wake-up: at once on a ring-buffer event, at each heartbeat it sends and each
//! deadline, and at least every [`POLL_PERIOD`]), the clock, link and address changes, the XDP
//! counters and signals, and carries out the actions it returns (`daemon/agent.rs`). An ACTIVE's
//! heartbeats go out from a thread of their own (`daemon/pacer.rs`).

use std::{io, time::Duration};

use ha_common::XdpConfig;
use pnet::datalink::{self, NetworkInterface};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::{
    alarms::Alarms,
    bpf::{self, BpfError, Datapath, Events},
    checks::Checks,
    cli::RunArgs,
    clock::{millis, monotonic_now},
    config::Config,
    control::{ControlSocket, Request},
    election::{answer_window, Election, Event},
    heartbeat::{HeartbeatSender, Origin},
    hooks::Hooks,
    ids::NodeId,
    keys::{self, KeyError, Keys},
    metrics::Metrics,
    netwatch::NetWatch,
    notify::Notifier,
    sequence::{self, SequenceError},
    status::StatusError,
    vip::VipError,
};

mod agent;
mod commands;
mod group;
mod pacer;
mod probes;
mod reload;
mod report;
mod wake;

use agent::{Agent, AsDynError as _};
use group::Group;
use pacer::{Outbox, Pacer, RoundSent};
pub use reload::ReloadError;
use wake::{Beats, WakeTimer};

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
    /// The heartbeat epoch could not be raised.
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    /// The heartbeat socket.
    #[error("opening the heartbeat socket")]
    Heartbeat(#[source] io::Error),
    /// `--mlockall` or `--realtime` was refused.
    #[error("{0}")]
    Harden(&'static str, #[source] io::Error),
    /// The metrics address could not be bound.
    #[error("serving metrics on {0}")]
    Metrics(std::net::SocketAddr, #[source] io::Error),
    /// Signals, or waiting on the event ring buffer.
    #[error("the event loop")]
    EventLoop(#[source] io::Error),
    /// The heartbeat pacer's thread could not be started.
    #[error("starting the heartbeat pacer")]
    Pacer(#[source] io::Error),
}

/// How often a restarted agent renews its predecessor's lease while it gets ready: well within the
/// probe answer window of any interval.
const PREDECESSOR_RENEWAL: Duration = Duration::from_millis(5);

/// The longest the loop goes without reading the peer map. It reads the map at every wake-up: at
/// each heartbeat it sends, at each of the elections' deadlines (a suspicion, a dead time), on
/// every ring-buffer event (a new peer, a change of state, worthiness or flags, a probe answer),
/// on every command, check result and link change. The poll only catches what none of those
/// covers (an event lost to a full ring buffer): a settled STANDBY that is not next in line
/// wakes about once a second instead of ten times, and so does an ACTIVE, whose heartbeats the
/// pacer sends while the loop keeps turning (`pacer::LOOP_GRACE`).
pub const POLL_PERIOD: Duration = Duration::from_secs(1);

/// Tells the XDP program what `config` serves: its groups, and the fence over all their VIPs
/// (renewed at `now`). At start, and on every reload.
fn serve_config(datapath: &mut Datapath, config: &Config, now: Duration) -> Result<(), BpfError> {
    datapath.set_groups(&config.groups.iter().map(|g| g.id.0).collect::<Vec<_>>())?;
    let vips: Vec<_> = config.all_vips().copied().collect();
    let fence = bpf::fence(config.dead_time, answer_window(config.interval), config.fence_keep_flows);
    datapath.set_fence(fence, &vips, now)
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

/// The real-time priority of `--realtime`: above every ordinary task, below the kernel's own
/// real-time threads (which run at 50 and up), so that the agent cannot starve them.
const REALTIME_PRIORITY: i32 = 10;

/// `--mlockall` and `--realtime`: what a stall of the agent's own loop costs is a false
/// failover (or, for the ACTIVE, fencing); these keep page faults and busy CPUs from causing one.
fn harden(config: &Config) -> Result<(), DaemonError> {
    if config.mlockall {
        // SAFETY: mlockall takes flags only.
        if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
            return Err(DaemonError::Harden(
                "--mlockall: locking the agent's memory",
                io::Error::last_os_error(),
            ));
        }
    }
    if config.realtime {
        let param = libc::sched_param { sched_priority: REALTIME_PRIORITY };
        // SAFETY: pid 0 is this process; `param` is a valid sched_param for the call.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param) } != 0 {
            return Err(DaemonError::Harden("--realtime: SCHED_FIFO", io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Runs the agent until SIGTERM or SIGINT; `flags` are kept for reloads.
pub async fn run(config: Config, flags: RunArgs) -> Result<(), DaemonError> {
    let signals = Signals::register()?;
    let notifier = Notifier::from_env();
    // First of all: an agent that renewed its lease here less than a dead time ago was killed or
    // re-executed a moment ago, and its peers have not taken over. Its program is still attached:
    // renew its lease so that it does not fence the VIPs while we get ready to replace it.
    let mut predecessor = bpf::PredecessorFence::open(&config.pin_dir).filter(|fence| {
        let now = monotonic_now();
        let alive = fence.alive(now);
        // Said, because it decides whether a restart keeps the VIPs: one slower than a dead time
        // starts afresh, as does one after a predecessor that held none.
        let renewed_ms_ago = millis(fence.renewed_before(now));
        if alive {
            info!(renewed_ms_ago, "the predecessor's lease holds");
        } else {
            info!(renewed_ms_ago, "the predecessor held no VIPs or its lease has run out: starting afresh");
        }
        alive
    });
    let has_predecessor = predecessor.is_some();
    if let Some(fence) = predecessor.as_mut() {
        fence.renew(monotonic_now())?;
    }
    // And keep it renewed, often enough for it to answer probes, until our program replaces it.
    let keep_alive = predecessor.map(|fence| fence.keep_alive(PREDECESSOR_RENEWAL));
    // Subscribed before the interface is looked at, so that no change falls in between.
    let mut watch = NetWatch::open().map_err(DaemonError::EventLoop)?;
    let (interface, node_id) = preflight(&config)?;
    harden(&config)?;
    let keys = if let Some(path) = &config.key_file {
        Some(keys::load(path)?)
    } else {
        warn!("authentication is off (--insecure-no-auth): anyone on the LAN can take the VIP");
        None
    };
    let checks = Checks::start(&config.checks);
    let now = monotonic_now();
    let mut groups = Vec::with_capacity(config.groups.len());
    let mut resumed = Vec::new();
    for group_config in &config.groups {
        let group = Group::new(group_config.clone(), &config, node_id, interface.index, &checks, now)?;
        if has_predecessor && !group.vips.present().await?.is_empty() {
            resumed.push(groups.len());
        } else {
            // A crashed instance may have left the VIPs behind: a group starts STANDBY without them.
            let stale = group.vips.remove_all().await?;
            if stale > 0 {
                warn!(group = %group.config.id, count = stale, "removed stale VIPs left on {} by an earlier run", config.iface);
            }
        }
        groups.push(group);
    }
    // Durably raised before the first heartbeat: see `sequence`.
    let epoch = sequence::next_epoch(&config.state_dir)?;
    let origin = Origin { node_id, interval: config.interval };
    let mut sender =
        HeartbeatSender::open(&interface, &config.destination, origin, sequence::first_sequence(epoch))
            .map_err(DaemonError::Heartbeat)?;
    sender.set_key(keys.as_ref().map(Keys::signing_key));
    let mut resume_outputs = Vec::new();
    for &index in &resumed {
        let group = &mut groups[index];
        let now = monotonic_now();
        resume_outputs.push((index, group.election.handle(Event::Resume { now })));
        // Before the slow part (loading the XDP program takes a good part of a dead time): the
        // peers must hear that their ACTIVE is still here before they give up on it.
        if let Err(err) = sender.send(group.config.id, group.election.advertised(now)) {
            warn!(error = err.as_dyn(), "sending the first heartbeat failed");
        }
    }

    let xdp_config = XdpConfig { port: config.port, own_node_id: node_id.0, ..Default::default() };
    let auth_keys = keys.as_ref().map(Keys::to_auth_keys).unwrap_or_default();
    let mut datapath = Datapath::load(&xdp_config, &auth_keys)?;
    datapath.pin(&config.pin_dir)?;
    serve_config(&mut datapath, &config, monotonic_now())?;
    // From here the new program's fence is renewed beside the old one's until the first
    // heartbeat: once attached, it answers the successor's probes at once.
    if let Some(keep_alive) = &keep_alive {
        keep_alive.vouch_for(datapath.shared_fence());
    }
    // What a resumed ACTIVE says, before the program takes over from its predecessor's: the
    // successor's probes are answered from it at once, not from the loop's first heartbeat on.
    for &index in &resumed {
        let state = groups[index].election.advertised(monotonic_now()).state;
        groups[index].tell_xdp(&mut datapath, state);
    }
    let mode = datapath.attach(&config.iface, config.xdp_mode)?;
    datapath.forward_logs()?;
    let mut events = datapath.events()?;
    let mut control = ControlSocket::bind(&config.run_dir, config.control_group.as_deref())?;

    let ids: Vec<String> = config.groups.iter().map(|g| g.id.to_string()).collect();
    info!(
        iface = %config.iface, node = %node_id, groups = %ids.join(","), xdp = mode,
        interval_ms = millis(config.interval), dead_time_ms = millis(config.dead_time),
        "started STANDBY"
    );
    // A fresh group listens for a dead time from now, when the XDP program can hear for it.
    let now = monotonic_now();
    for (index, group) in groups.iter_mut().enumerate() {
        if !resumed.contains(&index) {
            group.election = Election::new(*group.election.settings(), now);
            group.state_since = now;
        }
    }
    let metrics = Metrics::new();
    if let Some(address) = config.metrics_listen {
        metrics.serve(address).await.map_err(|err| DaemonError::Metrics(address, err))?;
    }
    let outbox = Outbox::new(sender, datapath.shared_fence(), epoch, config.state_dir.clone());
    let lateness = config.metrics_listen.map(|_| metrics.heartbeat_lateness());
    let (pacer, rounds) = Pacer::start(outbox, lateness).map_err(DaemonError::Pacer)?;
    let mut agent = Agent {
        metrics,
        hooks: Hooks::start(),
        notifier,
        groups,
        checks,
        config,
        flags,
        interface,
        datapath,
        pacer,
        alarms: Alarms::default(),
        keys,
        group_index: agent::GroupIndex::default(),
        counters: agent::CounterReads::default(),
    };
    agent.execute_all(resume_outputs).await;
    // The resumed groups' heartbeats are out (and renew the fence from now on).
    drop(keep_alive);
    for group in &agent.groups {
        agent.metrics.set_state(group.config.id, group.election.state(), false);
    }
    if !(agent.interface.is_up() && agent.interface.is_running()) {
        let fed = agent.feed_all(|now| Event::LinkChanged { now, up: false });
        agent.execute_all(fed).await;
    }
    agent.ready();
    let result = main_loop(&mut agent, &mut events, &mut watch, &mut control, signals, rounds).await;
    // A loop that ended on an error may leave groups ACTIVE: their heartbeats must stop before
    // the VIPs come off, or the peers would wait for this node while nobody serves.
    agent.pacer.lock().plan.clear();

    // Whatever happened, leave no VIP behind.
    for group in &agent.groups {
        if let Err(err) = group.vips.remove_all().await {
            error!(error = err.as_dyn(), "removing the VIPs at exit failed");
        }
    }
    drop(control);
    agent.hooks.finish().await;
    info!("stopped");
    result
}

/// The signals the agent handles, registered before anything else: one that arrives during the
/// start-up is then handled by the loop, not by the default action (which would kill the agent
/// with its VIPs and pins in place).
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    user2: tokio::signal::unix::Signal,
}

/// What a signal asks of the loop.
enum Signalled {
    /// SIGTERM or SIGINT: stop.
    Terminate,
    /// SIGHUP: reload.
    Reload,
    /// SIGUSR2: re-execute.
    Reexec,
}

impl Signals {
    /// Forwards the signals from a task of their own into one channel: the loop then polls one
    /// branch for all four at each wake-up rather than four, each of which registers a waiter and
    /// drops it again every time. The task ends once the loop's end of the channel is gone.
    fn forward(self) -> tokio::sync::mpsc::UnboundedReceiver<Signalled> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let Self { mut terminate, mut interrupt, mut hangup, mut user2 } = self;
        tokio::spawn(async move {
            loop {
                let signalled = tokio::select! {
                    Some(()) = terminate.recv() => Signalled::Terminate,
                    Some(()) = interrupt.recv() => Signalled::Terminate,
                    Some(()) = hangup.recv() => Signalled::Reload,
                    Some(()) = user2.recv() => Signalled::Reexec,
                    else => return,
                };
                if sender.send(signalled).is_err() {
                    return;
                }
            }
        });
        receiver
    }

    fn register() -> Result<Self, DaemonError> {
        let register = |kind| signal(kind).map_err(DaemonError::EventLoop);
        Ok(Self {
            terminate: register(SignalKind::terminate())?,
            interrupt: register(SignalKind::interrupt())?,
            hangup: register(SignalKind::hangup())?,
            user2: register(SignalKind::user_defined2())?,
        })
    }
}

/// Why the loop woke: what the `select!` got, dealt with once it is over.
enum Woke {
    /// The timer fired (or failed).
    Timer(io::Result<()>),
    /// The pacer reported a round.
    Round(RoundSent),
    /// The XDP program's ring buffer: the watches that fired.
    Events(io::Result<Vec<ha_common::PeerKey>>),
    /// A link or address change (`None`: the watch ended).
    Net(Option<crate::netwatch::NetEvent>),
    /// A health check's result.
    Check(crate::checks::CheckResult),
    /// A control request (`None`: nothing to do).
    Control(Option<crate::control::Pending>),
    /// A signal (`None`: the signal task ended).
    Signal(Option<Signalled>),
}

async fn main_loop(
    agent: &mut Agent,
    events: &mut Events,
    watch: &mut NetWatch,
    control: &mut ControlSocket,
    signals: Signals,
    mut rounds: tokio::sync::mpsc::UnboundedReceiver<RoundSent>,
) -> Result<(), DaemonError> {
    let wake = WakeTimer::new().map_err(DaemonError::EventLoop)?;
    // Heartbeats keep to a grid of whole intervals from here; polls follow each turn.
    let mut beats = Beats::new(monotonic_now(), agent.config.interval);
    let mut next_poll = monotonic_now();
    // The loop's longest sleep; under a systemd watchdog, short enough to kick it twice a period.
    let poll_period =
        agent.notifier.watchdog().map_or(POLL_PERIOD, |watchdog| (watchdog / 2).min(POLL_PERIOD));
    let mut signals = signals.forward();

    loop {
        let now = monotonic_now();
        // None while the pacer sends every group's heartbeats (an ACTIVE): the loop then sleeps
        // until an event, a deadline or the poll.
        let heartbeat_at = agent.heartbeat_due_at(now).map(|due| beats.next(due, now));
        // While the pacer sends all of them, the poll's wake-up sends a round too (see `pacer`).
        // Not while the loop sends some itself (a node STANDBY in other groups): it wakes for
        // those on a grid of its own, and a point of the pacer's would be one wake-up more.
        let claimed = if heartbeat_at.is_none() { agent.claim_round(next_poll) } else { None };
        let wake_at = [agent.next_deadline(now), heartbeat_at, claimed]
            .into_iter()
            .flatten()
            .fold(next_poll, Duration::min);
        // While heartbeats go out every interval, the timer is periodic on the grid and is not set
        // again each turn.
        let every_interval = heartbeat_at.is_some_and(|at| wake_at == at && beats.is_following(at));
        let period = if every_interval { beats.interval } else { Duration::ZERO };
        wake.arm(wake_at, period).map_err(DaemonError::EventLoop)?;
        // Why the loop woke; the work comes after the paced round below.
        let woke = tokio::select! {
            // In this order, the timer first: most wake-ups are its, and a turn then polls no
            // other branch. None is starved: each is ready only now and then.
            biased;
            fired = wake.fired() => Woke::Timer(fired),
            Some(round) = rounds.recv() => Woke::Round(round),
            batch = events.next_batch() => Woke::Events(batch),
            event = watch.next() => Woke::Net(event),
            result = agent.checks.next() => Woke::Check(result),
            pending = control.next() => Woke::Control(pending),
            signalled = signals.recv() => Woke::Signal(signalled),
        };
        // First, before any work that may take its time: the paced round of the point the loop
        // took, if it has come; a turn that began before it gives it back to the pacer. What the
        // elections make of its report is carried out at once: a branch below may end the turn.
        let claimed_round = agent.serve_claimed_round();
        agent.execute_all(claimed_round).await;
        let mut fed = Vec::new();
        let mut shutdown = false;
        // What the elections made of the wake-up's cause, carried out before the tick.
        match woke {
            Woke::Timer(fired) => {
                fired.map_err(DaemonError::EventLoop)?;
                let now = monotonic_now();
                if let Some(heartbeat_at) = heartbeat_at.filter(|at| now >= *at) {
                    beats.passed(now);
                    fed = agent.send_heartbeats();
                    agent.heartbeats_late(now.saturating_sub(heartbeat_at));
                }
            }
            Woke::Round(round) => fed = agent.paced_round(round),
            Woke::Events(batch) => {
                let silent = batch.map_err(DaemonError::EventLoop)?;
                agent.watches_fired(&silent);
                // Among them may be another node with our id (`change::OWN_ID`).
                agent.counters.asked = true;
            }
            Woke::Net(event) => match event {
                Some(event) => fed = agent.net_event(event),
                None => return Err(DaemonError::EventLoop(io::Error::other("the netlink watch ended"))),
            },
            Woke::Check(result) => fed = agent.check_result(&result),
            Woke::Control(pending) => {
                let Some((request, reply)) = pending else { continue };
                // The peers as they are now: an ACTIVE's loop may not have read them for up to a
                // poll period (its heartbeats are the pacer's), and a handover picks among them.
                agent.refresh_peers();
                // And the counters: `status` shows them and lists the alarms they raise.
                agent.counters.asked = true;
                let counters = agent.watch_counters();
                agent.execute_all(counters).await;
                if request == Request::Status {
                    let _ = reply.send(serde_json::to_vec(&agent.report().await).unwrap_or_default());
                    continue;
                }
                fed = agent.command(request, reply).await;
            }
            Woke::Signal(signalled) => match signalled {
                Some(Signalled::Terminate) => shutdown = true,
                Some(Signalled::Reload) => fed = agent.reload().await.unwrap_or_default(),
                Some(Signalled::Reexec) => {
                    agent.reexec();
                    continue;
                }
                None => return Err(DaemonError::EventLoop(io::Error::other("the signal task ended"))),
            },
        }
        if beats.interval != agent.config.interval {
            // A reload changed the interval.
            beats = Beats::new(monotonic_now(), agent.config.interval);
        }
        next_poll = monotonic_now() + poll_period;
        if shutdown {
            agent.notifier.stopping();
            fed = agent.feed_all(|now| Event::Shutdown { now });
        }
        agent.execute_all(fed).await;
        agent.loop_turned();
        let counters = agent.watch_counters();
        agent.execute_all(counters).await;
        agent.refresh_peers();
        let answers = agent.probe_answers();
        agent.execute_all(answers).await;
        let ticked = agent.tick();
        agent.watch_deaf_peers(monotonic_now());
        agent.execute_all(ticked).await;
        agent.pace_all();
        agent.keep_watches();
        if agent.stopped() {
            return Ok(());
        }
    }
}
