//! The agent's settings: the config file's table with the flags laid over it, parsed once into
//! a typed `RawConfig` with serde defaults, then checked once, as a whole, into a [`Config`].
//! Every problem is one line of [`ConfigError`].

use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Deserializer};

use crate::{
    bpf::XdpMode,
    checks::{CheckConfig, CheckConfigError},
    cli::RunArgs,
    election::{MAX_INTERVAL, MIN_INTERVAL},
    garp::GarpSettings,
    heartbeat::Destination,
    hooks::HookCommands,
    ids::{GroupId, NodeId},
    keys::DEFAULT_KEY_FILE,
    vip::Vip,
};

/// Where the agent looks for its config file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ha-agent/ha-agent.toml";
/// Parent of the default per-interface pin directory (`/sys/fs/bpf/ha-agent/<iface>`).
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/ha-agent";
/// Parent of the default per-interface run directory (`/run/ha-agent/<iface>`).
pub const DEFAULT_RUN_ROOT: &str = "/run/ha-agent";
/// Parent of the default per-interface state directory (`/var/lib/ha-agent/<iface>`).
pub const DEFAULT_STATE_ROOT: &str = "/var/lib/ha-agent";
/// Default heartbeat interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
/// The dead time, in heartbeat intervals, when it is not set: 3.5 as in the `ha` package.
pub const DEFAULT_DEAD_INTERVALS: f64 = 3.5;

/// The agent's checked settings. The node id is resolved later, from the interface.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Interface for heartbeats, XDP and VIPs.
    pub iface: String,
    /// The VIP groups this node serves, each an election of its own (at least one).
    pub groups: Vec<GroupConfig>,
    /// The health checks, which groups track by name.
    pub checks: Vec<CheckConfig>,
    /// Node id, if given.
    pub node_id: Option<NodeId>,
    /// Heartbeat interval.
    pub interval: Duration,
    /// Dead time.
    pub dead_time: Duration,
    /// Pin directory.
    pub pin_dir: PathBuf,
    /// Run directory (control socket).
    pub run_dir: PathBuf,
    /// The group the control socket is open to, besides root.
    pub control_group: Option<String>,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// State directory (the heartbeat epoch).
    pub state_dir: PathBuf,
    /// XDP attach mode.
    pub xdp_mode: XdpMode,
    /// UDP port.
    pub port: u16,
    /// Heartbeat destination.
    pub destination: Destination,
    /// Gratuitous ARP settings.
    pub garp: GarpSettings,
    /// The key file, or `None` with `--insecure-no-auth`.
    pub key_file: Option<PathBuf>,
    /// While fenced, let IP traffic to the VIPs through (`--fence-keep-flows`).
    pub fence_keep_flows: bool,
    /// Lock the agent's memory (`--mlockall`).
    pub mlockall: bool,
    /// Run at real-time priority (`--realtime`).
    pub realtime: bool,
    /// Probe a silent ACTIVE before the dead time (`probes`).
    pub probes: bool,
}

/// An IP address with an optional port (`192.0.2.11`, `[2001:db8::11]:9740`), as the
/// multicast group and the unicast peers are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub ip: IpAddr,
    /// The port, when given.
    pub port: Option<u16>,
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Self { ip: addr.ip(), port: Some(addr.port()) });
        }
        text.parse::<IpAddr>()
            .map(|ip| Self { ip, port: None })
            .map_err(|_| format!("bad address '{text}': expected an IP address, e.g. 192.0.2.11"))
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Endpoint {
    fn with_default_port(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(port))
    }
}

/// The settings as written (file keys, and flags of the same names), parsed and defaulted but
/// not yet checked against each other.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    iface: Option<String>,
    vips: Vec<Vip>,
    priority: u8,
    node_id: Option<NodeId>,
    group: GroupField,
    #[serde(rename = "check")]
    checks: Vec<CheckConfig>,
    track: Vec<String>,
    #[serde(deserialize_with = "duration")]
    interval: Duration,
    #[serde(deserialize_with = "optional_duration")]
    dead_time: Option<Duration>,
    pin_dir: Option<PathBuf>,
    run_dir: Option<PathBuf>,
    control_group: Option<String>,
    metrics_listen: Option<SocketAddr>,
    state_dir: Option<PathBuf>,
    xdp_mode: XdpMode,
    mcast_group: Option<Endpoint>,
    port: u16,
    peers: Vec<Endpoint>,
    preempt: bool,
    #[serde(deserialize_with = "duration")]
    preempt_delay: Duration,
    notify: Option<String>,
    notify_active: Option<String>,
    notify_standby: Option<String>,
    notify_fault: Option<String>,
    #[serde(deserialize_with = "duration")]
    hook_timeout: Duration,
    garp_count: u32,
    #[serde(deserialize_with = "duration")]
    garp_spacing: Duration,
    /// 0 turns the refresh off.
    #[serde(deserialize_with = "duration")]
    garp_refresh: Duration,
    key_file: PathBuf,
    insecure_no_auth: bool,
    fence_keep_flows: bool,
    mlockall: bool,
    realtime: bool,
    probes: bool,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            iface: None,
            vips: Vec::new(),
            priority: 100,
            node_id: None,
            group: GroupField::default(),
            checks: Vec::new(),
            track: Vec::new(),
            interval: DEFAULT_INTERVAL,
            dead_time: None,
            pin_dir: None,
            run_dir: None,
            control_group: None,
            metrics_listen: None,
            state_dir: None,
            xdp_mode: XdpMode::default(),
            mcast_group: None,
            port: ha_common::DEFAULT_PORT,
            peers: Vec::new(),
            preempt: true,
            preempt_delay: Duration::ZERO,
            notify: None,
            notify_active: None,
            notify_standby: None,
            notify_fault: None,
            hook_timeout: Duration::from_secs(10),
            garp_count: 3,
            garp_spacing: Duration::from_millis(100),
            garp_refresh: Duration::ZERO,
            key_file: PathBuf::from(DEFAULT_KEY_FILE),
            insecure_no_auth: false,
            fence_keep_flows: false,
            mlockall: false,
            realtime: false,
            probes: true,
        }
    }
}

/// Parses a duration (`100ms`, `1.5s`, `2m`, or bare milliseconds), with a one-line message.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    ha_common::parse_duration(text)
        .ok_or_else(|| format!("bad duration '{}': expected e.g. 100ms, 1.5s or 2m", text.trim()))
}

pub(crate) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

pub(crate) fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// Reads the config file (`--config`, or the default one if present), lays the flags over it and
/// checks the result.
pub fn load(flags: &RunArgs) -> Result<Config, ConfigError> {
    let path = flags.config.as_deref().unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if flags.config.is_none() && err.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(ConfigError::Read { path: path.to_path_buf(), source }),
    };
    from_text(path, &text, flags)
}

/// [`load`] with the file's text already read (`path` only names it in errors).
pub fn from_text(path: &Path, text: &str, flags: &RunArgs) -> Result<Config, ConfigError> {
    let file_error = |err: toml::de::Error| {
        let line = err.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        ConfigError::File { path: path.to_path_buf(), line, source: err.into() }
    };
    // The file alone is parsed first, from its text, only so that its errors name the file and
    // the line; the merged table below can then fail only on a flag.
    toml::from_str::<RawConfig>(text).map_err(file_error)?;
    let mut merged = text.parse::<toml::Table>().map_err(file_error)?;
    merged.extend(toml::Table::try_from(flags).expect("flags serialize into a table"));
    let settings = RawConfig::deserialize(merged).map_err(|err| ConfigError::Flag(err.into()))?;
    settings.check()
}

impl RawConfig {
    /// The checks that span several settings, and the defaults that depend on others.
    fn check(self) -> Result<Config, ConfigError> {
        let (groups, checks) = groups_and_checks(&self)?;
        let iface = self.iface.ok_or(ConfigError::NoInterface)?;
        if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ']) {
            return Err(ConfigError::InterfaceName(iface));
        }
        let interval = self.interval;
        if interval < MIN_INTERVAL || interval > MAX_INTERVAL {
            return Err(ConfigError::Interval(interval));
        }
        let dead_time = self.dead_time.unwrap_or_else(|| interval.mul_f64(DEFAULT_DEAD_INTERVALS));
        if dead_time < interval * 2 {
            return Err(ConfigError::DeadTime { dead_time, interval });
        }
        if self.port == 0 {
            return Err(ConfigError::ZeroPort);
        }
        let destination = destination(self.mcast_group, &self.peers, self.port)?;
        if self.garp_count == 0 || self.garp_count > 100 {
            return Err(ConfigError::GarpCount(self.garp_count));
        }
        Ok(Config {
            pin_dir: self.pin_dir.unwrap_or_else(|| Path::new(DEFAULT_PIN_ROOT).join(&iface)),
            run_dir: self.run_dir.unwrap_or_else(|| Path::new(DEFAULT_RUN_ROOT).join(&iface)),
            control_group: self.control_group,
            metrics_listen: self.metrics_listen,
            state_dir: self.state_dir.unwrap_or_else(|| Path::new(DEFAULT_STATE_ROOT).join(&iface)),
            iface,
            groups,
            checks,
            node_id: self.node_id,
            interval,
            dead_time,
            xdp_mode: self.xdp_mode,
            port: self.port,
            destination,
            garp: GarpSettings {
                count: self.garp_count,
                spacing: self.garp_spacing,
                refresh: Some(self.garp_refresh).filter(|d| !d.is_zero()),
            },
            key_file: (!self.insecure_no_auth).then_some(self.key_file),
            fence_keep_flows: self.fence_keep_flows,
            mlockall: self.mlockall,
            realtime: self.realtime,
            probes: self.probes,
        })
    }
}

impl Config {
    /// Every VIP of every group.
    pub fn all_vips(&self) -> impl Iterator<Item = &Vip> {
        self.groups.iter().flat_map(|group| &group.vips)
    }
}

/// The groups (the `[[group]]` tables, or the one the top-level keys make) and the checks, each
/// checked, and checked against each other.
fn groups_and_checks(raw: &RawConfig) -> Result<(Vec<GroupConfig>, Vec<CheckConfig>), ConfigError> {
    let top = GroupConfig {
        id: GroupId::default(),
        vips: raw.vips.clone(),
        priority: raw.priority,
        preempt: raw.preempt,
        preempt_delay: raw.preempt_delay,
        hooks: HookCommands {
            any: raw.notify.clone(),
            active: raw.notify_active.clone(),
            standby: raw.notify_standby.clone(),
            fault: raw.notify_fault.clone(),
            timeout: raw.hook_timeout,
        },
        track: raw.track.clone(),
    };
    let groups = match &raw.group {
        GroupField::Id(id) => vec![GroupConfig { id: *id, ..top }],
        GroupField::Tables(_) if !raw.vips.is_empty() => return Err(ConfigError::VipsBesideGroups),
        GroupField::Tables(tables) => tables.iter().map(|table| table.clone().with_defaults(&top)).collect(),
    };
    let mut vips: Vec<&Vip> = Vec::new();
    for (index, group) in groups.iter().enumerate() {
        if group.vips.is_empty() {
            return Err(ConfigError::NoVip);
        }
        if group.priority == 0 {
            return Err(ConfigError::ZeroPriority);
        }
        if groups[..index].iter().any(|other| other.id == group.id) {
            return Err(ConfigError::DuplicateGroup(group.id));
        }
        for vip in &group.vips {
            if vips.iter().any(|seen| seen.addr == vip.addr) {
                return Err(ConfigError::DuplicateVip(vip.to_string()));
            }
            vips.push(vip);
        }
        if let Some(name) = group.track.iter().find(|name| !raw.checks.iter().any(|c| &c.name == *name)) {
            return Err(CheckConfigError::Unknown(group.id.to_string(), name.clone()).into());
        }
    }
    if vips.len() > ha_common::MAX_FENCED_VIPS {
        return Err(ConfigError::TooManyVips(vips.len()));
    }
    for (index, check) in raw.checks.iter().enumerate() {
        if raw.checks[..index].iter().any(|other| other.name == check.name) {
            return Err(CheckConfigError::Duplicate(check.name.clone()).into());
        }
    }
    Ok((groups, raw.checks.clone()))
}

/// Unicast to `peers` if any are given, else multicast to `group` (default 239.255.97.1).
fn destination(group: Option<Endpoint>, peers: &[Endpoint], port: u16) -> Result<Destination, ConfigError> {
    if peers.is_empty() {
        let default = Endpoint { ip: IpAddr::V4(Ipv4Addr::from(ha_common::DEFAULT_MCAST_V4)), port: None };
        let group = group.unwrap_or(default).with_default_port(port);
        if !group.ip().is_multicast() {
            return Err(ConfigError::NotMulticast(group.ip()));
        }
        return Ok(Destination::Multicast(group));
    }
    let peers: Vec<SocketAddr> = peers.iter().map(|p| p.with_default_port(port)).collect();
    if peers.iter().any(|p| p.is_ipv6() != peers[0].is_ipv6()) {
        return Err(ConfigError::MixedPeerFamilies);
    }
    if let Some(bad) = peers.iter().find(|p| p.ip().is_multicast() || p.ip().is_unspecified()) {
        return Err(ConfigError::NotUnicastPeer(bad.ip()));
    }
    Ok(Destination::Unicast(peers))
}

mod error;
mod group;

pub use error::{ConfigError, TomlError};
pub use group::GroupConfig;
use group::GroupField;

#[cfg(test)]
mod tests;
