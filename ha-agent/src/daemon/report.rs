//! The status report the agent serves on its control socket.

use super::{agent::Agent, group::Group};
use crate::{
    clock::{millis, monotonic_now},
    keys::Keys,
    status::{named_stats, GroupStatus, PeerStatus, StatusReport},
};

impl Agent {
    /// Everything `ha-agent status` shows, read now.
    pub(super) async fn report(&self) -> StatusReport {
        let now = monotonic_now();
        let entries = self.datapath.peers().unwrap_or_default();
        let mut groups = Vec::with_capacity(self.groups.len());
        for group in &self.groups {
            groups.push(group_status(group, &entries, now).await);
        }
        StatusReport {
            iface: self.config.iface.clone(),
            node_id: self.groups[0].election.settings().node_id,
            interval_ms: millis(self.config.interval),
            dead_time_ms: millis(self.config.dead_time),
            xdp_mode: self.datapath.attached_mode.unwrap_or("none").to_string(),
            auth: match &self.keys {
                None => "off".into(),
                Some(Keys { next: None, .. }) => "on (1 key)".into(),
                Some(Keys { next: Some(_), .. }) => "on (current and next key)".into(),
            },
            groups,
            checks: self.checks.report(),
            hook_runs: self.hooks.recent(),
            xdp_stats: self.counters.stats.map(|s| named_stats(&s)).unwrap_or_default(),
            alarms: self.alarms.recent(now),
        }
    }
}

async fn group_status(
    group: &Group,
    entries: &[(ha_common::PeerKey, ha_common::PeerRecord)],
    now: std::time::Duration,
) -> GroupStatus {
    let factor = group.election.settings().dead_factor();
    let peers = entries
        .iter()
        .filter(|(key, _)| key.group == group.config.id.0)
        .map(|(key, record)| PeerStatus::from_record(key, record, now, factor))
        .collect();
    let vips_present = match group.vips.present().await {
        Ok(present) => present.iter().map(ToString::to_string).collect(),
        Err(_) => Vec::new(),
    };
    GroupStatus {
        group: group.config.id,
        priority: group.election.settings().priority,
        configured_priority: group.config.priority,
        state: group.election.state().to_string(),
        state_for_ms: millis(now.saturating_sub(group.state_since)),
        vips: group.config.vips.iter().map(ToString::to_string).collect(),
        vips_present,
        preempt: group.config.preempt,
        track: group.config.track.clone(),
        hooks: group.config.hooks.describe(),
        peers,
        fault: group.election.fault(now).map(|fault| fault.to_string()),
    }
}
