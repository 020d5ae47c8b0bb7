//! The BPF edge: load the embedded XDP object, configure it, pin its maps and its link under the
//! per-instance pin directory, attach it (or replace the program behind the link a previous
//! agent pinned), renew the fence's lease, and read the peer and stats maps back.
//!
//! The link is pinned so that the program outlives a SIGKILLed or hung agent: it then fences the
//! VIPs once the lease runs out (see [`Fence`]). A clean stop removes the pin, which detaches the
//! program; by hand, `rm PIN_DIR/link` does the same.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpMode as AyaXdpMode},
        TestRun as _, TestRunOptions, Xdp,
    },
    Ebpf, EbpfLoader,
};
use clap::ValueEnum;
use ha_common::{
    watch_verdict, AuthKeys, Fence, GroupEntry, NodeState, PeerKey, PeerRecord, PeerSlot, ProbeState,
    WatchRequest, XdpConfig, XdpStats, CONFIG_MAP, EVENTS_MAP, FENCED_MAP, FENCE_MAP, GROUPS_MAP,
    GROUP_ENTRIES_MAP, KEYS_MAP, MAX_GROUPS, PEERS_MAP, PEER_COUNT_MAP, PEER_SLOTS_MAP, PROBES_MAP,
    STATS_MAP, WATCH_PROGRAM, WATCH_REQUEST_OFFSET, XDP_PROGRAM,
};
use serde::{Deserialize, Serialize};

mod bpffs;
mod error;
mod events;
mod fence;
mod groups;
mod mapping;
mod table;

use bpffs::ensure_bpffs;
pub use error::{BpfError, LinkPinError, PinDirError};
use events::readable_fd;
pub use events::Events;
pub use fence::{fence, fenced_key, FenceKeeper, KeepAlive, PredecessorFence, SharedFence};

/// The XDP object built by `build.rs`, embedded so the binary is self-contained.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ha-ebpf"));

/// The maps pinned under the pin directory, by the file name `bpftool map dump pinned` takes.
/// `KEYS` is not pinned: the keys stay in this process and the kernel. `fence` tells a
/// restarted agent how recently its predecessor renewed the lease ([`previous_fence`]).
const PINNED_MAPS: [(&str, &str); 5] = [
    (PEERS_MAP, "peers"),
    (STATS_MAP, "stats"),
    (CONFIG_MAP, "config"),
    (EVENTS_MAP, "events"),
    (FENCE_MAP, FENCE_PIN),
];

/// The file name of the pinned fence map.
const FENCE_PIN: &str = "fence";

/// The file name of the pinned XDP link in the pin directory.
pub const LINK_PIN: &str = "link";

/// How to attach the XDP program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
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

/// The loaded XDP program and its maps.
pub struct Datapath {
    ebpf: Ebpf,
    /// Whether the kernel took the silence watch program ([`Datapath::watch_silence`]).
    watch_loaded: bool,
    pin_dir: Option<PathBuf>,
    /// The pinned XDP link, once attached with a pin directory.
    link: Option<PinnedLink>,
    /// Which mode the program was attached in, if attached ("kept" when it replaced the program
    /// behind a previous agent's pinned link, in whatever mode that one chose).
    pub attached_mode: Option<&'static str>,
    /// Which `GROUP_ENTRIES` index each served group has.
    group_entries: groups::GroupEntries,
    /// The peer records, mapped into memory.
    peers: table::PeerTable,
    /// The fence, shared with the heartbeat pacer.
    fence: SharedFence,
}

impl Datapath {
    /// Loads the object and writes its config and keys; does not attach (tests run it through
    /// BPF_PROG_TEST_RUN this way).
    pub fn load(config: &XdpConfig, keys: &AuthKeys) -> Result<Self, BpfError> {
        let mut ebpf = EbpfLoader::new().load(EBPF_OBJECT).map_err(BpfError::Object)?;
        set_slot(&mut ebpf, CONFIG_MAP, config)?;
        set_slot(&mut ebpf, KEYS_MAP, keys)?;
        load_xdp(&mut ebpf, XDP_PROGRAM)?;
        // Optional: a kernel without BPF timers (before 5.15) refuses it, and the agent then
        // polls for the ACTIVE's silence as it would without it.
        let watch_loaded = match load_xdp(&mut ebpf, WATCH_PROGRAM) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(
                    error = &err as &dyn std::error::Error,
                    "no silence watch: the STANDBY next in line wakes every interval"
                );
                false
            }
        };
        let map = |name| ebpf.map(name).ok_or(BpfError::NoMap(name));
        let mmap_err = |name| {
            move |io_error| {
                BpfError::Map(
                    name,
                    aya::maps::MapError::SyscallError(aya::sys::SyscallError { call: "mmap", io_error }),
                )
            }
        };
        let peers =
            table::PeerTable::new(map(PEERS_MAP)?, map(PEER_COUNT_MAP)?).map_err(mmap_err(PEERS_MAP))?;
        let fence_memory = fence::FenceMemory::new(map(FENCE_MAP)?).map_err(mmap_err(FENCE_MAP))?;
        Ok(Self {
            ebpf,
            watch_loaded,
            pin_dir: None,
            link: None,
            attached_mode: None,
            group_entries: groups::GroupEntries::default(),
            fence: SharedFence::new(fence_memory),
            peers,
        })
    }

    /// Replaces the keys heartbeats are verified with (on SIGHUP).
    pub fn set_keys(&mut self, keys: &AuthKeys) -> Result<(), BpfError> {
        set_slot(&mut self.ebpf, KEYS_MAP, keys)
    }

    /// The XDP program, for BPF_PROG_TEST_RUN.
    pub fn program(&self) -> &Xdp {
        loaded_xdp(&self.ebpf, XDP_PROGRAM)
    }

    /// Attaches to `iface` in the requested mode; `auto` tries native first on a NIC (then
    /// generic), and takes generic on a virtual interface (no device behind it: a veth, a bridge, a bond). With a
    /// pin directory (see [`Datapath::pin`]) the link is pinned there, and a link a previous agent
    /// left pinned is reused: the new program replaces the old one behind it atomically, so not
    /// one frame goes unfenced or unparsed across a restart.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<&'static str, BpfError> {
        let link_path = self.pin_dir.as_ref().map(|dir| dir.join(LINK_PIN));
        if let Some(path) = link_path.as_ref().filter(|path| path.exists()) {
            match self.replace_pinned(path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "replaced the program behind the pinned XDP link");
                    self.attached_mode = Some("kept");
                    return Ok("kept");
                }
                Err(err) => {
                    // A link of a deleted interface, or of another program type: start afresh.
                    tracing::warn!(error = &err as &dyn std::error::Error, "not reusing the pinned XDP link");
                    let _ = fs::remove_file(path);
                }
            }
        }
        let program = xdp_program(&mut self.ebpf);
        let attempts: &[(AyaXdpMode, &'static str)] = match mode {
            XdpMode::Auto if is_virtual(iface) => &[(AyaXdpMode::Skb, "skb")],
            XdpMode::Auto => &[(AyaXdpMode::Driver, "native"), (AyaXdpMode::Skb, "skb")],
            XdpMode::Native => &[(AyaXdpMode::Driver, "native")],
            XdpMode::Skb => &[(AyaXdpMode::Skb, "skb")],
        };
        let mut failure = None;
        let mut attached = None;
        for &(aya_mode, name) in attempts {
            match program.attach(iface, aya_mode) {
                Ok(link_id) => {
                    attached = Some((link_id, name));
                    break;
                }
                Err(source) => failure = Some((name, source)),
            }
        }
        let Some((link_id, name)) = attached else {
            let (mode, source) = failure.expect("every mode lists at least one attempt");
            return Err(BpfError::Attach { iface: iface.to_string(), mode, source });
        };
        self.attached_mode = Some(name);
        if let Some(path) = link_path {
            let link_err = |source: LinkPinError| BpfError::Link { path: path.clone(), source };
            let link = program.take_link(link_id).map_err(|err| link_err(err.into()))?;
            let fd_link = FdLink::try_from(link).map_err(|err| link_err(err.into()))?;
            self.link = Some(fd_link.pin(&path).map_err(|err| link_err(err.into()))?);
        }
        Ok(name)
    }

    /// Attaches anew to `iface`, which was recreated under its name: the old link died with the
    /// old interface.
    pub fn reattach(&mut self, iface: &str, mode: XdpMode) -> Result<&'static str, BpfError> {
        if let Some(dir) = &self.pin_dir {
            let _ = fs::remove_file(dir.join(LINK_PIN));
        }
        self.link = None;
        self.attach(iface, mode)
    }

    /// Puts this program behind the link pinned at `path`, and pins that link anew as ours.
    fn replace_pinned(&mut self, path: &Path) -> Result<(), BpfError> {
        let link_err = |source: LinkPinError| BpfError::Link { path: path.to_path_buf(), source };
        let replace = |program: &mut Xdp| -> Result<FdLink, LinkPinError> {
            let old = XdpLink::try_from(FdLink::from(PinnedLink::from_pin(path)?))?;
            let link_id = program.attach_to_link(old)?;
            Ok(FdLink::try_from(program.take_link(link_id)?)?)
        };
        let link = replace(xdp_program(&mut self.ebpf)).map_err(link_err)?;
        // The old pin names the same link; we hold it open while the pin is renewed.
        fs::remove_file(path).map_err(|err| link_err(err.into()))?;
        self.link = Some(link.pin(path).map_err(|err| link_err(err.into()))?);
        Ok(())
    }

    /// Sets what the fence guards (`vips`, at most [`ha_common::MAX_FENCED_VIPS`]: the config
    /// refuses more) and for how long a renewal lasts (`fence`, see [`fence`]), and renews it now.
    /// The VIPs go in first: a fence counting VIPs the map does not hold yet would leave them
    /// unguarded for a moment, never the reverse.
    pub fn set_fence(
        &mut self,
        fence: Fence,
        vips: &[crate::vip::Vip],
        now: Duration,
    ) -> Result<(), BpfError> {
        let keys: Vec<[u8; 16]> = vips.iter().map(|vip| fenced_key(vip.addr)).collect();
        sync_keys(&mut self.ebpf, FENCED_MAP, &keys, 1u8)?;
        let count = u32::try_from(keys.len()).unwrap_or(u32::MAX);
        self.fence.lock().set(fence, count, now);
        Ok(())
    }

    /// Renews the lease at `now` and records that a heartbeat goes out now, carrying `sequence`
    /// (see [`Fence::last_sent_sequence`] and [`Fence::heartbeat_ns`]).
    pub fn note_sending(&mut self, now: Duration, sequence: u64) -> Result<(), BpfError> {
        self.fence.lock().note_sending(now, sequence);
        Ok(())
    }

    /// Renews the lease at `now` (CLOCK_MONOTONIC) with the fence armed, or disarms it
    /// (`armed` false). Armed, the fence stays down for another lease; a renewal within the last
    /// millisecond (a heartbeat just went out) is enough. The agent arms it while a group holds
    /// (or is about to put on) VIPs: fencing is for a node that holds VIPs and whose agent died.
    /// Disarmed, the lease may run out unrenewed (a settled STANDBY wakes about once a second,
    /// less often than a lease) without the XDP program dropping ARP about the VIPs that another
    /// node holds, which this node's own clients need.
    pub fn keep_fence(&mut self, armed: bool, now: Duration) -> Result<(), BpfError> {
        self.fence.lock().keep(armed, now);
        Ok(())
    }

    /// The fence, for the heartbeat pacer to renew from its own thread.
    #[must_use]
    pub fn shared_fence(&self) -> SharedFence {
        self.fence.clone()
    }

    /// Pins every map under `dir` (replacing a crashed instance's stale pins), so that
    /// `bpftool map dump pinned DIR/peers` works while the agent runs, and remembers `dir` for the
    /// link [`Datapath::attach`] pins. Mounts a bpf filesystem on /sys/fs/bpf first if there is
    /// none (as inside `ip netns exec`).
    pub fn pin(&mut self, dir: &Path) -> Result<(), BpfError> {
        let pin_err = |source: PinDirError| BpfError::Pin { path: dir.to_path_buf(), source };
        ensure_bpffs(dir).map_err(pin_err)?;
        fs::create_dir_all(dir).map_err(|err| pin_err(PinDirError::Io("creating it".into(), err)))?;
        for (map_name, file) in PINNED_MAPS {
            let path = dir.join(file);
            match fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed a stale pin"),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(pin_err(PinDirError::Io(format!("removing the stale {file}"), err))),
            }
            let map = self.ebpf.map(map_name).ok_or(BpfError::NoMap(map_name))?;
            map.pin(&path).map_err(|err| pin_err(PinDirError::PinMap(file, err)))?;
        }
        self.pin_dir = Some(dir.to_path_buf());
        Ok(())
    }

    /// Makes `groups` the groups whose heartbeats the program records (at start, and on reload):
    /// removes those no longer served first, so that a reload that replaces every group still
    /// fits in [`MAX_GROUPS`] entries, then adds the new ones (with no state yet: probes in them
    /// go unanswered until [`Datapath::set_state`]). Groups that stay keep their entries.
    pub fn set_groups(&mut self, groups: &[u32]) -> Result<(), BpfError> {
        let gone: Vec<u32> = self.group_entries.groups().filter(|group| !groups.contains(group)).collect();
        for group in gone {
            // Out of GROUPS first: a new peer's heartbeat no longer finds the entry, and a known
            // peer's, whose slot holds the index, finds it cleared.
            remove::<u32, u32>(&mut self.ebpf, GROUPS_MAP, group)?;
            if let Some(index) = self.group_entries.release(group) {
                set_at(&mut self.ebpf, GROUP_ENTRIES_MAP, index, &GroupEntry::default())?;
            }
        }
        for &group in groups {
            if self.group_entries.index(group).is_none() {
                self.add_group(GroupEntry::serving(group, None))?;
            }
        }
        Ok(())
    }

    /// This node's state in `group`: the program answers probes in it from now on (serving the
    /// group from now on if it did not yet).
    pub fn set_state(&mut self, group: u32, state: NodeState) -> Result<(), BpfError> {
        let entry = GroupEntry::serving(group, Some(state));
        match self.group_entries.index(group) {
            Some(index) => set_at(&mut self.ebpf, GROUP_ENTRIES_MAP, index, &entry),
            None => self.add_group(entry),
        }
    }

    /// Gives `entry`'s group, which has none, an index in `GROUP_ENTRIES` and writes `entry` there.
    fn add_group(&mut self, entry: GroupEntry) -> Result<(), BpfError> {
        let index = self.group_entries.assign(entry.group).ok_or(BpfError::TooManyGroups(MAX_GROUPS))?;
        // The entry before GROUPS: a heartbeat that finds the index finds the entry.
        set_at(&mut self.ebpf, GROUP_ENTRIES_MAP, index, &entry)?;
        insert(&mut self.ebpf, GROUPS_MAP, entry.group, index)
    }

    /// Records the probe burst under way in `group` (before each probe goes out).
    pub fn set_probe(&mut self, group: u32, probe: ProbeState) -> Result<(), BpfError> {
        insert(&mut self.ebpf, PROBES_MAP, group, probe)
    }

    /// Whether the kernel took the silence watch program: without it
    /// [`Datapath::watch_silence`] always fails.
    pub fn has_silence_watch(&self) -> bool {
        self.watch_loaded
    }

    /// Sets the silence watch of `group` on the peer `node_id` (0: stops it): the program wakes the
    /// agent (`change::SILENT`) once that peer's silence reaches `after_permille` thousandths of
    /// its interval. False if the program has no record of the peer yet. One test run of the
    /// watch program: a syscall.
    pub fn watch_silence(&self, group: u32, node_id: u32, after_permille: u32) -> Result<bool, BpfError> {
        if !self.watch_loaded {
            return Err(BpfError::Watch { group, source: None });
        }
        let mut frame = [0u8; WATCH_REQUEST_OFFSET + WatchRequest::LEN];
        frame[WATCH_REQUEST_OFFSET..]
            .copy_from_slice(&WatchRequest { group, node_id, after_permille, _pad0: 0 }.to_bytes());
        let program = loaded_xdp(&self.ebpf, WATCH_PROGRAM);
        let options = TestRunOptions { data_in: Some(&frame), ..Default::default() };
        let run = program.test_run(options).map_err(|err| BpfError::Watch { group, source: Some(err) })?;
        match run.return_value {
            watch_verdict::SET => Ok(true),
            watch_verdict::UNKNOWN_PEER => Ok(false),
            _ => Err(BpfError::Watch { group, source: None }),
        }
    }

    /// The probe burst of `group`, as the program last marked it.
    pub fn probe(&self, group: u32) -> Result<Option<ProbeState>, BpfError> {
        lookup(&self.ebpf, PROBES_MAP, group)
    }

    /// What the program last recorded of one peer.
    pub fn peer(&self, key: PeerKey) -> Result<Option<PeerRecord>, BpfError> {
        let known: Option<PeerSlot> = lookup(&self.ebpf, PEER_SLOTS_MAP, key)?;
        Ok(known.and_then(|known| self.peers.get(known.slot)))
    }

    /// Every peer the XDP program has recorded.
    pub fn peers(&self) -> Result<Vec<(PeerKey, PeerRecord)>, BpfError> {
        let mut all = Vec::new();
        self.each_peer(|key, record| all.push((key, record)));
        Ok(all)
    }

    /// Calls `f` with every peer the XDP program has recorded, in the table's order, without
    /// collecting them: what the loop does at every poll.
    pub fn each_peer(&self, f: impl FnMut(PeerKey, PeerRecord)) {
        self.peers.each(f);
    }

    /// The counters, summed over CPUs.
    pub fn stats(&self) -> Result<XdpStats, BpfError> {
        let map = self.ebpf.map(STATS_MAP).ok_or(BpfError::NoMap(STATS_MAP))?;
        let map_err = |err| BpfError::Map(STATS_MAP, err);
        let per_cpu: PerCpuArray<&MapData, XdpStats> = PerCpuArray::try_from(map).map_err(map_err)?;
        let values = per_cpu.get(&0, 0).map_err(map_err)?;
        let mut total = XdpStats::default();
        for value in values.iter() {
            total.add(value);
        }
        Ok(total)
    }

    /// Takes the event ring buffer (once), for tests that read it directly.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, BpfError> {
        let map = self.ebpf.take_map(EVENTS_MAP).ok_or(BpfError::NoMap(EVENTS_MAP))?;
        RingBuf::try_from(map).map_err(|err| BpfError::Map(EVENTS_MAP, err))
    }

    /// Takes the event ring buffer (once), registered with the tokio runtime for the agent's
    /// loop to wait on.
    pub fn events(&mut self) -> Result<Events, BpfError> {
        readable_fd(self.take_events()?).map(Events).map_err(BpfError::Runtime)
    }

    /// Forwards the program's aya-log messages to `tracing`, from a task on the tokio runtime.
    /// A program built without logs is no error: there is nothing to forward.
    pub fn forward_logs(&mut self) -> Result<(), BpfError> {
        let logger = match aya_log::EbpfLogger::init(&mut self.ebpf) {
            Ok(logger) => logger,
            Err(err) => {
                tracing::warn!(error = &err as &dyn std::error::Error, "XDP logs unavailable");
                return Ok(());
            }
        };
        let mut logger = readable_fd(logger).map_err(BpfError::Runtime)?;
        tokio::spawn(async move {
            while let Ok(mut guard) = logger.readable_mut().await {
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
        });
        Ok(())
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        // The pins must go by hand or they would keep the maps and the link alive; the program
        // detaches when the link's last reference, our `link`, is dropped after this.
        if let Some(dir) = self.pin_dir.take() {
            for file in PINNED_MAPS.iter().map(|(_, file)| *file).chain([LINK_PIN]) {
                let _ = fs::remove_file(dir.join(file));
            }
            let _ = fs::remove_dir(&dir);
        }
    }
}

/// Whether `iface` is a virtual interface (no device behind it: a veth, a bridge, a bond, a
/// VLAN). On a veth, a frame sent back by native XDP (XDP_TX: a probe's answer) goes to the
/// peer's own XDP ring and, behind a bridge, was seen to go no further; generic XDP sends it
/// through the stack like any other frame. Read from the interface's sysfs entry, which
/// `ip netns exec` remounts for the namespace.
fn is_virtual(iface: &str) -> bool {
    let entry = Path::new("/sys/class/net").join(iface);
    entry.exists() && !entry.join("device").exists()
}

/// Loads the XDP program `name` of `ebpf` into the kernel.
fn load_xdp(ebpf: &mut Ebpf, name: &'static str) -> Result<(), BpfError> {
    let program: &mut Xdp =
        ebpf.program_mut(name).ok_or(BpfError::NoProgram(name))?.try_into().map_err(BpfError::Program)?;
    program.load().map_err(BpfError::Program)
}

/// The XDP program `name` of `ebpf`, loaded by [`Datapath::load`].
fn loaded_xdp<'a>(ebpf: &'a Ebpf, name: &str) -> &'a Xdp {
    ebpf.program(name)
        .and_then(|p| <&Xdp>::try_from(p).ok())
        .expect("the program was loaded as XDP in Datapath::load")
}

/// The loaded XDP program of `ebpf` (a free function, so that it borrows only that field).
fn xdp_program(ebpf: &mut Ebpf) -> &mut Xdp {
    ebpf.program_mut(XDP_PROGRAM)
        .and_then(|p| <&mut Xdp>::try_from(p).ok())
        .expect("the program was loaded as XDP in Datapath::load")
}

/// Sets `key` to `value` in the hash map `name`.
fn insert<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    key: K,
    value: V,
) -> Result<(), BpfError> {
    let map = ebpf.map_mut(name).ok_or(BpfError::NoMap(name))?;
    let mut hash: HashMap<_, K, V> = HashMap::try_from(map).map_err(|err| BpfError::Map(name, err))?;
    hash.insert(key, value, 0).map_err(|err| BpfError::Map(name, err))
}

/// Removes `key` from the hash map `name` (of `V` values) if it is there.
fn remove<K: aya::Pod, V: aya::Pod>(ebpf: &mut Ebpf, name: &'static str, key: K) -> Result<(), BpfError> {
    let map = ebpf.map_mut(name).ok_or(BpfError::NoMap(name))?;
    let mut hash: HashMap<_, K, V> = HashMap::try_from(map).map_err(|err| BpfError::Map(name, err))?;
    match hash.remove(&key) {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(err) => Err(BpfError::Map(name, err)),
    }
}

/// Makes `keys` the keys of the hash map `name`: adds the missing ones first, with `value`
/// (entries already there keep theirs), then removes those not in `keys`.
fn sync_keys<K: aya::Pod + Eq + std::hash::Hash, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    keys: &[K],
    value: V,
) -> Result<(), BpfError> {
    let map = ebpf.map_mut(name).ok_or(BpfError::NoMap(name))?;
    let map_err = |err| BpfError::Map(name, err);
    let mut hash: HashMap<_, K, V> = HashMap::try_from(map).map_err(map_err)?;
    let known: std::collections::HashSet<K> = hash.keys().filter_map(Result::ok).collect();
    for key in keys.iter().filter(|key| !known.contains(key)) {
        hash.insert(key, value, 0).map_err(map_err)?;
    }
    let wanted: std::collections::HashSet<&K> = keys.iter().collect();
    let gone: Vec<K> = hash.keys().filter_map(Result::ok).filter(|key| !wanted.contains(key)).collect();
    for key in gone {
        hash.remove(&key).map_err(map_err)?;
    }
    Ok(())
}

/// The value of `key` in the hash map `name`, if it has one.
fn lookup<K: aya::Pod, V: aya::Pod>(ebpf: &Ebpf, name: &'static str, key: K) -> Result<Option<V>, BpfError> {
    let map = ebpf.map(name).ok_or(BpfError::NoMap(name))?;
    let hash: HashMap<_, K, V> = HashMap::try_from(map).map_err(|err| BpfError::Map(name, err))?;
    match hash.get(&key, 0) {
        Ok(value) => Ok(Some(value)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(err) => Err(BpfError::Map(name, err)),
    }
}

/// Writes `value` into slot 0 of the one-slot array `name`.
fn set_slot<T: aya::Pod>(ebpf: &mut Ebpf, name: &'static str, value: &T) -> Result<(), BpfError> {
    set_at(ebpf, name, 0, value)
}

/// Writes `value` at `index` of the array `name`.
fn set_at<T: aya::Pod>(ebpf: &mut Ebpf, name: &'static str, index: u32, value: &T) -> Result<(), BpfError> {
    let map = ebpf.map_mut(name).ok_or(BpfError::NoMap(name))?;
    let mut array: Array<_, T> = Array::try_from(map).map_err(|err| BpfError::Map(name, err))?;
    array.set(index, value, 0).map_err(|err| BpfError::Map(name, err))
}
