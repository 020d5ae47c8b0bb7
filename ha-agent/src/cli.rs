//! The command line: subcommands and the agent's flags. Flags carry text as typed; the
//! [`config`](crate::config) module overlays them on the config file and checks the result, so
//! a bad value is one line of [`ConfigError`](crate::config::ConfigError), not a clap usage page.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::{bpf::XdpMode, keys::DEFAULT_KEY_FILE};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "ha-agent",
    version,
    about = "eBPF-accelerated failover agent: moves a virtual IP between nodes in well under a second",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A subcommand; without one, run the agent.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The agent's flags.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once at start; boxing would only add noise")]
pub enum Command {
    /// Show a running agent's state, VIPs, peers and XDP counters.
    Status(StatusArgs),
    /// Write a new random heartbeat key (mode 0600); copy it to every node.
    Keygen(KeygenArgs),
    /// Drain, resume, hand over or reload a running agent over its control socket.
    Ctl(CtlArgs),
    /// Print the ha-agent config equivalent to a keepalived.conf, and what has no equivalent.
    ImportKeepalived(ImportArgs),
    /// Check a config (the file, and any flags given) and its key file without starting.
    CheckConfig(RunArgs),
    /// Print the man page or a shell's completions (for packaging).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// Flags of `ha-agent import-keepalived`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The keepalived config to translate.
    #[arg(default_value = "/etc/keepalived/keepalived.conf")]
    pub file: PathBuf,
}

/// Flags of `ha-agent generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to print.
    #[command(subcommand)]
    pub what: Generated,
}

/// What `ha-agent generate` prints.
#[derive(Debug, Subcommand)]
pub enum Generated {
    /// The man page, in roff.
    Man,
    /// Completions for `shell`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Flags of `ha-agent keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key.
    #[arg(long, default_value = DEFAULT_KEY_FILE)]
    pub key_file: PathBuf,
    /// Replace an existing key file.
    #[arg(long)]
    pub force: bool,
}

/// Which running agent a client talks to.
#[derive(Debug, Args)]
pub struct Target {
    /// The agent's run directory (default: /run/ha-agent/IFACE, or the only agent running).
    #[arg(long, global = true)]
    pub run_dir: Option<PathBuf>,
    /// The agent's interface, to find its default run directory.
    #[arg(long, global = true)]
    pub iface: Option<String>,
}

/// Flags of `ha-agent status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Which agent.
    #[command(flatten)]
    pub target: Target,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `ha-agent ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
    /// Which agent.
    #[command(flatten)]
    pub target: Target,
}

/// What `ha-agent ctl` asks a running agent.
#[derive(Clone, Copy, Debug, Subcommand)]
pub enum CtlCommand {
    /// Maintenance: hand the VIPs over gap-free and stay out of elections until resumed.
    Drain,
    /// Back into elections after a drain.
    Resume,
    /// Re-read the config file (as SIGHUP): changes apply without a transition they do not need.
    Reload,
    /// Hand the VIPs over gap-free to a node (or to the most worthy live peer); it keeps them:
    /// no more worthy node preempts it while it holds them.
    Handover {
        /// The node to hand over to, as `status` shows it (e.g. 0xc000020b).
        #[arg(long, value_name = "NODE")]
        to: Option<crate::ids::NodeId>,
        /// Only this group (default: every group this node holds).
        #[arg(long, value_name = "ID")]
        group: Option<u32>,
    },
}

/// The agent's flags. Each has the name of a config file key (with `_` for `-`), and a flag
/// that is given overrides that key: they are serialized, flags left out skipped, and laid over
/// the file's table (`config::load`).
#[derive(Clone, Debug, Default, Args, Serialize)]
pub struct RunArgs {
    /// Network interface for heartbeats, XDP and the VIPs.
    #[arg(long)]
    pub iface: Option<String>,
    /// Config file (default /etc/ha-agent/ha-agent.toml, skipped if absent).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Virtual IP with prefix length, e.g. 192.0.2.100/24 (repeatable).
    #[arg(long = "vip", value_name = "CIDR")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<String>,
    /// Worthiness, 1-255: the live node with the highest is ACTIVE.
    #[arg(long)]
    pub priority: Option<u8>,
    /// Node id, unique in the group (default: derived from the interface's MAC address).
    #[arg(long)]
    pub node_id: Option<u32>,
    /// VIP group id: independent groups can share a LAN.
    #[arg(long)]
    pub group: Option<u32>,
    /// Heartbeat interval, e.g. 100ms or 1s.
    #[arg(long)]
    pub interval: Option<String>,
    /// How long peers may be silent before they are dead (default 3.5 intervals).
    #[arg(long)]
    pub dead_time: Option<String>,
    /// Directory (on a bpf filesystem) for the pinned maps (default /sys/fs/bpf/ha-agent/IFACE).
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
    /// Directory for the control socket (default /run/ha-agent/IFACE).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9741 (default: off).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Open the control socket to this group too (default: root only).
    #[arg(long)]
    pub control_group: Option<String>,
    /// Directory for what must survive a restart: the heartbeat epoch (default
    /// /var/lib/ha-agent/IFACE).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// XDP attach mode.
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpMode>,
    /// Multicast group for heartbeats, IPv4 or IPv6 (default 239.255.97.1).
    #[arg(long)]
    pub mcast_group: Option<String>,
    /// Heartbeat UDP port (default 9740).
    #[arg(long)]
    pub port: Option<u16>,
    /// Unicast peer address instead of multicast (repeatable).
    #[arg(long = "peer", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Whether a more worthy node that joins takes the VIPs from the ACTIVE (true or false;
    /// default true).
    #[arg(long, value_name = "BOOL")]
    pub preempt: Option<bool>,
    /// How long a node listens before it preempts a live ACTIVE, e.g. 30s (default 0).
    #[arg(long)]
    pub preempt_delay: Option<String>,
    /// Whether the ACTIVE's successor probes it once it is silent for a little over an interval,
    /// and takes over at once when no answer comes (true or false; default true).
    #[arg(long, value_name = "BOOL")]
    pub probes: Option<bool>,
    /// Command run (by /bin/sh) on every transition; HA_OLD_STATE, HA_NEW_STATE, HA_REASON,
    /// HA_VIPS, HA_IFACE, HA_GROUP and HA_NODE_ID say what happened.
    #[arg(long, value_name = "COMMAND")]
    pub notify: Option<String>,
    /// Command run on becoming ACTIVE.
    #[arg(long, value_name = "COMMAND")]
    pub notify_active: Option<String>,
    /// Command run on becoming STANDBY.
    #[arg(long, value_name = "COMMAND")]
    pub notify_standby: Option<String>,
    /// Command run on entering FAULT.
    #[arg(long, value_name = "COMMAND")]
    pub notify_fault: Option<String>,
    /// How long a hook may run before it is killed, e.g. 10s (default).
    #[arg(long)]
    pub hook_timeout: Option<String>,
    /// Gratuitous ARPs sent on promotion.
    #[arg(long)]
    pub garp_count: Option<u32>,
    /// Time between those gratuitous ARPs, e.g. 100ms.
    #[arg(long)]
    pub garp_spacing: Option<String>,
    /// Resend gratuitous ARP this often while ACTIVE (0 = never).
    #[arg(long)]
    pub garp_refresh: Option<String>,
    /// Heartbeat key file: one or two keys of 32 hex digits (default /etc/ha-agent/key).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// While fenced (this agent dead or hung for a dead time), still let IP traffic to the VIPs
    /// through: only ARP and neighbour discovery for them are dropped.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fence_keep_flows: bool,
    /// Lock the agent's memory (mlockall): under memory pressure, no page fault stalls the loop.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mlockall: bool,
    /// Run the agent at real-time priority (SCHED_FIFO 10): busy CPUs do not delay heartbeats.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub realtime: bool,
    /// Run without heartbeat authentication: anyone on the LAN can then take the VIP.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_no_auth: bool,
}
