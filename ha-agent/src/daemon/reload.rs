//! SIGHUP and `ctl reload`: the config file read again, with the flags the agent started with
//! laid over it, and applied without a transition that the change does not require: a group's
//! new VIPs go on (and are announced) while it is ACTIVE, dropped ones come off, new groups start
//! STANDBY, removed groups release theirs, a new priority or preemption policy applies from the
//! next tick, checks whose settings changed restart with their state kept, and new keys take
//! effect at once. Settings the running agent is built on (interface, port, destination,
//! directories) cannot change without a restart: such a reload is refused whole.

use tracing::{error, info, warn};

use super::{
    agent::{Agent, AsDynError as _, Fed},
    group::Group,
};
use crate::{
    bpf::BpfError,
    clock::monotonic_now,
    config::{self, Config, ConfigError},
    election::{Advert, Event, State},
    keys::{self, KeyError, Keys},
    vip::VipError,
};

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new key file is not valid.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// A setting the running agent is built on changed.
    #[error("{0} cannot change on a reload: restart the agent for it")]
    Fixed(&'static str),
    /// The new groups could not be set up.
    #[error(transparent)]
    Vip(#[from] VipError),
    /// The XDP program's maps.
    #[error(transparent)]
    Bpf(#[from] BpfError),
}

/// The first setting of `old` that `new` changes and a reload cannot apply, if any.
fn fixed_change(old: &Config, new: &Config) -> Option<&'static str> {
    let fixed: [(&'static str, bool); 10] = [
        ("iface", old.iface == new.iface),
        ("node_id", old.node_id == new.node_id),
        ("port", old.port == new.port),
        ("mcast_group/peers", old.destination == new.destination),
        ("pin_dir", old.pin_dir == new.pin_dir),
        ("run_dir", old.run_dir == new.run_dir),
        ("state_dir", old.state_dir == new.state_dir),
        ("xdp_mode", old.xdp_mode == new.xdp_mode),
        ("metrics_listen", old.metrics_listen == new.metrics_listen),
        ("control_group", old.control_group == new.control_group),
    ];
    fixed.into_iter().find(|(_, same)| !same).map(|(name, _)| name)
}

impl Agent {
    /// Reloads, with systemd told; logs the outcome. Returns what the elections made of it.
    pub(super) async fn reload(&mut self) -> Result<Fed, ReloadError> {
        self.notifier.reloading();
        let result = self.try_reload().await;
        match &result {
            Ok(_) => {
                info!(groups = self.groups.len(), checks = self.config.checks.len(), "reloaded the config");
            }
            Err(err) => error!(error = err.as_dyn(), "reload refused: the running config stays"),
        }
        self.ready();
        result
    }

    async fn try_reload(&mut self) -> Result<Fed, ReloadError> {
        let new = config::load(&self.flags)?;
        if let Some(name) = fixed_change(&self.config, &new) {
            return Err(ReloadError::Fixed(name));
        }
        // Everything that can fail is read before anything changes.
        let keys = new.key_file.as_deref().map(keys::load).transpose()?;
        // Taken before the removed groups go (a config whose groups are all new removes every
        // one): this node's id, and a netlink connection for the new groups' VIPs, so that
        // making them cannot fail once groups have started to change.
        let (node_id, netlink) = {
            let first = self.groups.first().expect("an agent serves at least one group");
            (first.election.settings().node_id, first.vips.with_vips(Vec::new()))
        };
        self.release_removed_groups(&new).await;
        let now = monotonic_now();
        let mut groups = Vec::with_capacity(new.groups.len());
        self.checks.reconfigure(&new.checks);
        for group_config in &new.groups {
            let existing = self.groups.iter().position(|g| g.config.id == group_config.id);
            let group = if let Some(index) = existing {
                let mut group = self.groups.swap_remove(index);
                self.move_vips(&mut group, &group_config.vips).await;
                group.reconfigure(group_config.clone(), &new, &self.checks);
                group
            } else {
                let vips = netlink.with_vips(group_config.vips.clone());
                let group = Group::beside(vips, group_config.clone(), &new, node_id, &self.checks, now);
                self.metrics.set_state(group.config.id, group.election.state(), false);
                info!(group = %group.config.id, "new group: STANDBY");
                group
            };
            groups.push(group);
        }
        self.groups = groups;
        super::serve_config(&mut self.datapath, &new, now)?;
        self.pacer.lock().outbox.sender.set_interval(new.interval);
        self.set_keys(keys);
        self.config = new;
        Ok((0..self.groups.len()).map(|index| (index, self.apply_health(index))).collect())
    }

    /// Groups the new config drops: an ACTIVE one announces its release (priority 0, so that
    /// the next node takes over at once) and takes its VIPs off; then each is dropped.
    async fn release_removed_groups(&mut self, new: &Config) {
        let mut index = 0;
        while index < self.groups.len() {
            if new.groups.iter().any(|g| g.id == self.groups[index].config.id) {
                index += 1;
                continue;
            }
            info!(group = %self.groups[index].config.id, "group removed from the config: releasing it");
            let now = monotonic_now();
            let first = self.groups[index].election.handle(Event::Shutdown { now });
            self.execute(index, first).await;
            if self.groups[index].election.state() == State::Releasing {
                let second = self.groups[index].election.handle(Event::Shutdown { now });
                self.execute(index, second).await;
            }
            let group = self.groups.remove(index);
            // Its silence watch stops with it: it would otherwise follow the group's ACTIVE in
            // the kernel until that went quiet, and then wake the loop for a group it no longer
            // serves.
            if group.watching.is_some() {
                if let Err(err) = self.datapath.watch_silence(group.config.id.0, 0, 0) {
                    warn!(group = %group.config.id, error = err.as_dyn(), "stopping the silence watch failed");
                }
            }
        }
    }

    /// A group's VIPs change: while it holds them, the new ones go on and are announced and the
    /// dropped ones come off; the others are not touched.
    async fn move_vips(&mut self, group: &mut Group, vips: &[crate::vip::Vip]) {
        if group.vips.vips() == vips {
            return;
        }
        let dropped: Vec<_> = group.vips.vips().iter().filter(|v| !vips.contains(v)).copied().collect();
        group.vips = group.vips.with_vips(vips.to_vec());
        if group.election.state() != State::Active {
            return;
        }
        group.put_vips_on().await;
        if let Err(err) = group.vips.with_vips(dropped).remove_all().await {
            error!(group = %group.config.id, error = err.as_dyn(), "removing a dropped VIP failed");
        }
        group.announce(&self.interface, self.config.garp.count, self.config.garp.spacing);
    }

    /// New keys for the XDP program and the sender; `None` with `--insecure-no-auth`.
    fn set_keys(&mut self, keys: Option<Keys>) {
        let auth = keys.as_ref().map(Keys::to_auth_keys).unwrap_or_default();
        if let Err(err) = self.datapath.set_keys(&auth) {
            return error!(error = err.as_dyn(), "handing the new keys to XDP failed: the old keys stay");
        }
        self.pacer.lock().outbox.sender.set_key(keys.as_ref().map(Keys::signing_key));
        self.keys = keys;
    }
}

impl Agent {
    /// SIGUSR2: replaces this process with the binary at the path it was started from (how a new
    /// version is put in service), keeping the VIPs, the pinned link and maps, and a fresh lease:
    /// the new process finds them and resumes (see [`Event::Resume`]). Returns only if the exec
    /// failed, and then the agent carries on as it was.
    pub(super) fn reexec(&mut self) {
        use std::os::unix::process::CommandExt as _;
        let mut args = std::env::args_os();
        let Some(program) = args.next() else {
            return error!("SIGUSR2: no program path to re-execute");
        };
        info!(program = %program.to_string_lossy(), "SIGUSR2: re-executing");
        // The new process has the whole dead time, from now, to tell the peers it is here; they
        // hear that it restarts, and wait for it rather than probe it.
        let now = monotonic_now();
        {
            // The pacer sends nothing more: these are the last word (if the exec fails, the
            // loop's next turn hands it the steady groups again).
            let mut paced = self.pacer.lock();
            paced.plan.clear();
            let adverts: Vec<_> = self
                .groups
                .iter_mut()
                .map(|group| {
                    group.paced = None;
                    (group.config.id, Advert { restarting: true, ..group.election.advertised(now) })
                })
                .collect();
            paced.outbox.send_round(&adverts, now, |_, result| {
                if let Err(err) = result {
                    warn!(error = err.as_dyn(), "telling the peers of the restart failed");
                }
            });
        }
        self.renew_lease();
        let err = std::process::Command::new(&program).args(args).exec();
        error!(error = err.as_dyn(), "SIGUSR2: re-executing failed; carrying on");
    }
}
