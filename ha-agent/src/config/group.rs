//! VIP groups in the config: the `[[group]]` tables, or the one group the top-level keys make.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::{hooks::HookCommands, ids::GroupId, vip::Vip};

/// One VIP group as the agent serves it: an election of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// The group's id, carried in its heartbeats.
    pub id: GroupId,
    /// Its VIPs.
    pub vips: Vec<Vip>,
    /// This node's worthiness in it, 1-255, before the tracked checks' weights.
    pub priority: u8,
    /// Whether this node, more worthy, takes the VIPs from a live less worthy ACTIVE.
    pub preempt: bool,
    /// How long this node listens before it preempts a live ACTIVE.
    pub preempt_delay: Duration,
    /// The group's notify hooks.
    pub hooks: HookCommands,
    /// The names of the checks whose state changes its worthiness.
    pub track: Vec<String>,
}

/// What `group` holds: the id of the one group the top-level keys describe, or `[[group]]` tables.
#[derive(Debug, Clone)]
pub(super) enum GroupField {
    /// `group = N` (or `--group N`).
    Id(GroupId),
    /// `[[group]]` tables.
    Tables(Vec<RawGroup>),
}

impl Default for GroupField {
    fn default() -> Self {
        Self::Id(GroupId::default())
    }
}

impl<'de> Deserialize<'de> for GroupField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match toml::Value::deserialize(deserializer)? {
            toml::Value::Integer(id) => u32::try_from(id)
                .map(|id| Self::Id(GroupId(id)))
                .map_err(|_| D::Error::custom(format!("bad group {id}: use 0 to 4294967295"))),
            toml::Value::Array(tables) => {
                toml::Value::Array(tables).try_into().map(Self::Tables).map_err(|err: toml::de::Error| {
                    D::Error::custom(err.message().lines().next().unwrap_or_default())
                })
            }
            _ => Err(D::Error::custom("group is a number (one group) or [[group]] tables")),
        }
    }
}

/// A `[[group]]` table as written; what it leaves out comes from the top-level keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub(super) id: GroupId,
    #[serde(default)]
    pub(super) vips: Vec<Vip>,
    pub(super) priority: Option<u8>,
    pub(super) preempt: Option<bool>,
    #[serde(default, deserialize_with = "super::optional_duration")]
    pub(super) preempt_delay: Option<Duration>,
    pub(super) notify: Option<String>,
    pub(super) notify_active: Option<String>,
    pub(super) notify_standby: Option<String>,
    pub(super) notify_fault: Option<String>,
    pub(super) track: Option<Vec<String>>,
}

impl RawGroup {
    /// The group with the top-level settings (`defaults`) filling in what the table leaves out.
    pub(super) fn with_defaults(self, defaults: &GroupConfig) -> GroupConfig {
        let own = HookCommands {
            any: self.notify,
            active: self.notify_active,
            standby: self.notify_standby,
            fault: self.notify_fault,
            timeout: defaults.hooks.timeout,
        };
        let hooks = if own.is_empty() { defaults.hooks.clone() } else { own };
        GroupConfig {
            id: self.id,
            vips: self.vips,
            priority: self.priority.unwrap_or(defaults.priority),
            preempt: self.preempt.unwrap_or(defaults.preempt),
            preempt_delay: self.preempt_delay.unwrap_or(defaults.preempt_delay),
            hooks,
            track: self.track.unwrap_or_else(|| defaults.track.clone()),
        }
    }
}
