//! What can be wrong with a config: one line each (with its source, `{err:#}`).

use std::{io, net::IpAddr, path::PathBuf, time::Duration};

/// A configuration problem. Its message (with its source, `{err:#}`) is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The config file is not valid TOML, has an unknown key or a bad value.
    #[error("config file {}{}", path.display(), line.map(|line| format!(" line {line}")).unwrap_or_default())]
    File {
        /// The file.
        path: PathBuf,
        /// The line of the problem (1-based), when known.
        line: Option<usize>,
        /// What is wrong there.
        #[source]
        source: TomlError,
    },
    /// A flag has a bad value.
    #[error(transparent)]
    Flag(TomlError),
    /// Neither `--iface` nor `iface`.
    #[error("no interface: give --iface NAME or `iface` in the config file")]
    NoInterface,
    /// Not a Linux interface name.
    #[error("bad interface name '{0}'")]
    InterfaceName(String),
    /// More VIPs than the XDP fence guards.
    #[error("{0} VIPs: at most {max} per agent", max = ha_common::MAX_FENCED_VIPS)]
    TooManyVips(usize),
    /// No VIP at all.
    #[error("no VIP configured: give --vip CIDR (e.g. --vip 192.0.2.100/24), or `vips` in the config file or in each [[group]]")]
    NoVip,
    /// Priority 0, which heartbeats use to announce a release.
    #[error("bad priority 0: use 1-255 (0 is reserved for a release)")]
    ZeroPriority,
    /// An interval outside 10 ms to 60 s.
    #[error("bad interval {} ms: use 10 ms to 60 s", .0.as_millis())]
    Interval(Duration),
    /// A dead time shorter than two intervals.
    #[error("bad dead time {} ms: it must be at least two intervals ({} ms)", dead_time.as_millis(), (*interval * 2).as_millis())]
    DeadTime {
        /// The dead time given.
        dead_time: Duration,
        /// The interval.
        interval: Duration,
    },
    /// Port 0.
    #[error("bad port 0")]
    ZeroPort,
    /// A heartbeat group that is not multicast.
    #[error("bad multicast group {0}: not a multicast address")]
    NotMulticast(IpAddr),
    /// Unicast peers of both families.
    #[error("peers mix IPv4 and IPv6: use one family")]
    MixedPeerFamilies,
    /// A unicast peer that is multicast or unspecified.
    #[error("bad peer {0}: not a unicast address")]
    NotUnicastPeer(IpAddr),
    /// `vips` at the top level beside `[[group]]` tables.
    #[error("`vips` at the top level and [[group]] tables: put the VIPs in the groups")]
    VipsBesideGroups,
    /// Two groups with one id.
    #[error("two [[group]] tables have id {0}")]
    DuplicateGroup(crate::ids::GroupId),
    /// One VIP in two places.
    #[error("VIP {0} is configured twice")]
    DuplicateVip(String),
    /// A bad check, or a group that tracks a check that does not exist.
    #[error(transparent)]
    Check(#[from] crate::checks::CheckConfigError),
    /// A gratuitous ARP count outside 1-100.
    #[error("bad garp count {0}: use 1-100")]
    GarpCount(u32),
}

/// A TOML or value error, shown as its message's first line (the message of a bad value is
/// ours: see the `Deserialize` impls of [`Vip`](crate::vip::Vip) and [`Endpoint`](super::Endpoint)).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.message().lines().next().unwrap_or("invalid TOML"))]
pub struct TomlError(Box<toml::de::Error>);

impl From<toml::de::Error> for TomlError {
    fn from(err: toml::de::Error) -> Self {
        Self(Box::new(err))
    }
}
