//! Settings: command-line flags over the TOML config file over defaults, checked once into a
//! [`Config`]. Every problem is one line of [`ConfigError`].

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

/// Where the agent looks for its config file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ha-agent/ha-agent.toml";
/// Parent of the default per-interface pin directory (`/sys/fs/bpf/ha-agent/<iface>`).
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/ha-agent";
/// Parent of the default per-interface run directory (`/run/ha-agent/<iface>`).
pub const DEFAULT_RUN_ROOT: &str = "/run/ha-agent";
/// Default heartbeat interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
/// The dead time, in heartbeat intervals, when it is not set: 3.5 as in the `ha` package.
pub const DEFAULT_DEAD_INTERVALS: f64 = 3.5;

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
pub enum Command {
    /// Show a running agent's state, VIPs, peers and XDP counters.
    Status(StatusArgs),
    /// Write a new random heartbeat key (mode 0600); copy it to every node.
    Keygen(KeygenArgs),
}

/// Flags of `ha-agent keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key.
    #[arg(long, default_value = crate::keys::DEFAULT_KEY_FILE)]
    pub key_file: PathBuf,
    /// Replace an existing key file.
    #[arg(long)]
    pub force: bool,
}

/// Flags of `ha-agent status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The agent's run directory (default: /run/ha-agent/<iface>, or the only agent running).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// The agent's interface, to find its default run directory.
    #[arg(long)]
    pub iface: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// How to attach the XDP program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode where the driver has it, generic (skb) otherwise.
    #[default]
    Auto,
    /// Native mode only; fail if the driver lacks it.
    Native,
    /// Generic mode, which works on every interface.
    Skb,
}

/// The agent's settings as given: the flags, and (the same keys, flags spelled with `_`) the
/// config file. Every field is optional; a flag overrides the file's key of the same name.
#[derive(Debug, Args, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// Directory (on a bpf filesystem) for the pinned maps (default /sys/fs/bpf/ha-agent/<iface>).
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
    /// Directory for the control socket (default /run/ha-agent/<iface>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
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
    pub peers: Vec<String>,
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
    /// Run without heartbeat authentication: anyone on the LAN can then take the VIP.
    #[arg(long)]
    pub insecure_no_auth: bool,
}

/// A virtual address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vip {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
}

impl FromStr for Vip {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            ConfigError::new(format!("bad VIP '{text}': {why}; expected ADDRESS/PREFIX, e.g. 192.0.2.100/24"))
        };
        let (addr, prefix) = text.split_once('/').ok_or_else(|| bad("no prefix length"))?;
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad("not an IP address"))?;
        let prefix: u8 = prefix.trim().parse().map_err(|_| bad("prefix length is not a number"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad(&format!("prefix length above {max}")));
        }
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return Err(bad("not a unicast address"));
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Where heartbeats go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// One multicast group.
    Multicast(SocketAddr),
    /// Each of these unicast peers.
    Unicast(Vec<SocketAddr>),
}

impl Destination {
    /// Whether heartbeats travel over IPv6.
    pub fn is_ipv6(&self) -> bool {
        match self {
            Self::Multicast(group) => group.is_ipv6(),
            Self::Unicast(peers) => peers.first().is_some_and(SocketAddr::is_ipv6),
        }
    }
}

/// Gratuitous ARP settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GarpSettings {
    /// How many announcements on promotion.
    pub count: u32,
    /// Time between them.
    pub spacing: Duration,
    /// Period of the refresh while ACTIVE; `None` for no refresh.
    pub refresh: Option<Duration>,
}

/// The agent's checked settings. The node id is resolved later, from the interface.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Interface for heartbeats, XDP and VIPs.
    pub iface: String,
    /// The VIPs.
    pub vips: Vec<Vip>,
    /// Worthiness, 1-255.
    pub priority: u8,
    /// Node id, if given.
    pub node_id: Option<u32>,
    /// VIP group id.
    pub group: u32,
    /// Heartbeat interval.
    pub interval: Duration,
    /// Dead time.
    pub dead_time: Duration,
    /// Pin directory.
    pub pin_dir: PathBuf,
    /// Run directory (control socket).
    pub run_dir: PathBuf,
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
}

/// A configuration problem, as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Parses a duration (`100ms`, `1.5s`, `2m`, or bare milliseconds) into a one-line error.
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    ha_common::parse_duration(text).ok_or_else(|| {
        ConfigError::new(format!("bad duration '{}': expected e.g. 100ms, 1.5s or 2m", text.trim()))
    })
}

fn parse_addr(text: &str, port: u16, what: &str) -> Result<SocketAddr, ConfigError> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, port))
        .map_err(|_| ConfigError::new(format!("bad {what} '{text}': expected an IP address")))
}

/// Reads the config file: an explicit `--config` must exist, the default one may be absent.
pub fn read_file(explicit: Option<&Path>) -> Result<RunArgs, ConfigError> {
    let path = explicit.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if explicit.is_none() && err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(RunArgs::default())
        }
        Err(err) => {
            return Err(ConfigError::new(format!("cannot read config file {}: {err}", path.display())))
        }
    };
    toml::from_str(&text).map_err(|err| {
        let first_line = err.message().lines().next().unwrap_or("invalid TOML").to_string();
        ConfigError::new(format!("config file {}: {first_line}", path.display()))
    })
}

impl Config {
    /// Merges flags over the file over defaults and checks the result.
    pub fn resolve(args: &RunArgs, file: RunArgs) -> Result<Self, ConfigError> {
        let iface = args.iface.clone().or(file.iface).ok_or_else(|| {
            ConfigError::new("no interface: give --iface NAME or `iface` in the config file")
        })?;
        if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ']) {
            return Err(ConfigError::new(format!("bad interface name '{iface}'")));
        }
        let vip_texts = if args.vips.is_empty() { file.vips } else { args.vips.clone() };
        if vip_texts.is_empty() {
            return Err(ConfigError::new(
                "no VIP configured: give --vip CIDR (e.g. --vip 192.0.2.100/24) or `vips` in the config file",
            ));
        }
        let vips = vip_texts.iter().map(|v| v.parse()).collect::<Result<Vec<Vip>, _>>()?;

        let priority = args.priority.or(file.priority).unwrap_or(100);
        if priority == 0 {
            return Err(ConfigError::new("bad priority 0: use 1-255 (0 is reserved for a release)"));
        }
        let interval = match args.interval.as_deref().or(file.interval.as_deref()) {
            Some(text) => parse_duration(text)?,
            None => DEFAULT_INTERVAL,
        };
        if interval < Duration::from_millis(10) || interval > Duration::from_secs(60) {
            return Err(ConfigError::new(format!(
                "bad interval {} ms: use 10 ms to 60 s",
                interval.as_millis()
            )));
        }
        let dead_time = match args.dead_time.as_deref().or(file.dead_time.as_deref()) {
            Some(text) => parse_duration(text)?,
            None => interval.mul_f64(DEFAULT_DEAD_INTERVALS),
        };
        if dead_time < interval * 2 {
            return Err(ConfigError::new(format!(
                "bad dead time {} ms: it must be at least two intervals ({} ms)",
                dead_time.as_millis(),
                (interval * 2).as_millis()
            )));
        }

        let port = args.port.or(file.port).unwrap_or(ha_common::DEFAULT_PORT);
        if port == 0 {
            return Err(ConfigError::new("bad port 0"));
        }
        let peer_texts = if args.peers.is_empty() { file.peers } else { args.peers.clone() };
        let destination = if peer_texts.is_empty() {
            let group = match args.mcast_group.as_deref().or(file.mcast_group.as_deref()) {
                Some(text) => parse_addr(text, port, "multicast group")?,
                None => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ha_common::DEFAULT_MCAST_V4)), port),
            };
            if !group.ip().is_multicast() {
                return Err(ConfigError::new(format!(
                    "bad multicast group {}: not a multicast address",
                    group.ip()
                )));
            }
            Destination::Multicast(group)
        } else {
            let peers =
                peer_texts.iter().map(|p| parse_addr(p, port, "peer")).collect::<Result<Vec<_>, _>>()?;
            if peers.iter().any(|p| p.is_ipv6() != peers[0].is_ipv6()) {
                return Err(ConfigError::new("peers mix IPv4 and IPv6: use one family"));
            }
            if let Some(bad) = peers.iter().find(|p| p.ip().is_multicast() || p.ip().is_unspecified()) {
                return Err(ConfigError::new(format!("bad peer {}: not a unicast address", bad.ip())));
            }
            Destination::Unicast(peers)
        };

        let garp_count = args.garp_count.or(file.garp_count).unwrap_or(3);
        let garp_spacing = match args.garp_spacing.as_deref().or(file.garp_spacing.as_deref()) {
            Some(text) => parse_duration(text)?,
            None => Duration::from_millis(100),
        };
        let garp_refresh = match args.garp_refresh.as_deref().or(file.garp_refresh.as_deref()) {
            Some(text) => Some(parse_duration(text)?).filter(|d| !d.is_zero()),
            None => None,
        };
        if garp_count == 0 || garp_count > 100 {
            return Err(ConfigError::new(format!("bad garp count {garp_count}: use 1-100")));
        }

        Ok(Self {
            pin_dir: args
                .pin_dir
                .clone()
                .or(file.pin_dir)
                .unwrap_or_else(|| Path::new(DEFAULT_PIN_ROOT).join(&iface)),
            run_dir: args
                .run_dir
                .clone()
                .or(file.run_dir)
                .unwrap_or_else(|| Path::new(DEFAULT_RUN_ROOT).join(&iface)),
            iface,
            vips,
            priority,
            node_id: args.node_id.or(file.node_id),
            group: args.group.or(file.group).unwrap_or(1),
            interval,
            dead_time,
            xdp_mode: args.xdp_mode.or(file.xdp_mode).unwrap_or_default(),
            port,
            destination,
            garp: GarpSettings { count: garp_count, spacing: garp_spacing, refresh: garp_refresh },
            key_file: if args.insecure_no_auth || file.insecure_no_auth {
                None
            } else {
                Some(
                    args.key_file
                        .clone()
                        .or(file.key_file)
                        .unwrap_or_else(|| PathBuf::from(crate::keys::DEFAULT_KEY_FILE)),
                )
            },
        })
    }
}

/// Derives a node id from the interface's MAC address (its last four bytes), which is unique on
/// the LAN by construction.
pub fn node_id_from_mac(mac: [u8; 6]) -> Option<u32> {
    let id = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
    (id != 0).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(iface: &str, vips: &[&str]) -> RunArgs {
        RunArgs {
            iface: Some(iface.into()),
            vips: vips.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_give_sub_second_failover() {
        let config = Config::resolve(&args("eth0", &["192.0.2.100/24"]), RunArgs::default()).unwrap();
        assert_eq!(config.interval, Duration::from_millis(100));
        assert_eq!(config.dead_time, Duration::from_millis(350));
        assert_eq!(config.pin_dir, Path::new("/sys/fs/bpf/ha-agent/eth0"));
        assert_eq!(config.run_dir, Path::new("/run/ha-agent/eth0"));
        assert!(
            matches!(config.destination, Destination::Multicast(a) if a.to_string() == "239.255.97.1:9740")
        );
    }

    #[test]
    fn flags_override_the_file() {
        let file: RunArgs = toml::from_str(
            "iface = \"eth1\"\nvips = [\"198.51.100.7/24\"]\npriority = 50\ninterval = \"1s\"\n",
        )
        .unwrap();
        let mut a = args("eth0", &[]);
        a.priority = Some(200);
        let config = Config::resolve(&a, file).unwrap();
        assert_eq!(config.iface, "eth0");
        assert_eq!(config.priority, 200);
        assert_eq!(config.vips[0].to_string(), "198.51.100.7/24");
        assert_eq!(config.dead_time, Duration::from_millis(3500));
    }

    #[test]
    fn bad_input_is_one_clear_line() {
        let cases: Vec<(RunArgs, &str)> = vec![
            (args("eth0", &[]), "no VIP configured"),
            (args("eth0", &["192.0.2.1"]), "bad VIP '192.0.2.1': no prefix length"),
            (args("eth0", &["192.0.2.1/33"]), "prefix length above 32"),
            (args("eth0", &["nonsense/24"]), "not an IP address"),
            (RunArgs { vips: vec!["192.0.2.1/24".into()], ..Default::default() }, "no interface"),
            (
                RunArgs { interval: Some("fast".into()), ..args("eth0", &["192.0.2.1/24"]) },
                "bad duration 'fast'",
            ),
            (
                RunArgs { dead_time: Some("150ms".into()), ..args("eth0", &["192.0.2.1/24"]) },
                "at least two intervals",
            ),
            (RunArgs { priority: Some(0), ..args("eth0", &["192.0.2.1/24"]) }, "bad priority 0"),
            (
                RunArgs { mcast_group: Some("192.0.2.9".into()), ..args("eth0", &["192.0.2.1/24"]) },
                "not a multicast",
            ),
            (
                RunArgs {
                    peers: vec!["192.0.2.9".into(), "2001:db8::9".into()],
                    ..args("eth0", &["192.0.2.1/24"])
                },
                "mix IPv4 and IPv6",
            ),
        ];
        for (a, expected) in cases {
            let err = Config::resolve(&a, RunArgs::default()).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
            assert!(!err.contains('\n'), "{err:?} is more than one line");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("ha-agent-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "iface = \"eth0\"\nvipz = []\n").unwrap();
        let err = read_file(Some(&path)).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("unknown field `vipz`"), "{err}");
        assert!(read_file(Some(Path::new("/nonexistent/ha.toml"))).is_err());
    }

    #[test]
    fn node_ids_from_mac() {
        assert_eq!(node_id_from_mac([0x02, 0, 0xc0, 0, 0x02, 0x0b]), Some(0xc000_020b));
        assert_eq!(node_id_from_mac([0; 6]), None);
    }
}
