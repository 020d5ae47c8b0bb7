//! Records kept in the XDP program's BPF maps.
//!
//! All are `#[repr(C)]` with explicit padding fields, so that there are no implicit holes: the
//! kernel copies them as bytes, `bpftool` prints them by their BTF field names, and the agent
//! reads them back through `aya::Pod`.

/// Name of the table of peers: an array of [`PeerRecord`]s the agent maps into its memory
/// (`BPF_F_MMAPABLE`), so that reading every peer costs no syscall. Slots are handed out in
/// order (see [`PEER_SLOTS_MAP`], [`PEER_COUNT_MAP`]); a slot never used is all zero.
pub const PEERS_MAP: &str = "PEERS";
/// Name of the hash map from [`PeerKey`] to the peer's [`PeerSlot`]: its slot in `PEERS` and its
/// group's entry in `GROUP_ENTRIES`.
pub const PEER_SLOTS_MAP: &str = "PEER_SLOTS";
/// Name of the one-slot array (memory-mapped too) counting the `PEERS` slots handed out so far.
pub const PEER_COUNT_MAP: &str = "PEER_COUNT";
/// How many slots past `PEER_COUNT` the agent reads: the XDP program raises the count without
/// atomics, and CPUs racing to add new peers may leave it short by as many.
pub const PEER_COUNT_SLACK: u32 = 64;
/// `BPF_F_MMAPABLE` (include/uapi/linux/bpf.h): an array user space can `mmap`.
pub const BPF_F_MMAPABLE: usize = 1 << 10;
/// Name of the per-CPU array (one slot) of [`XdpStats`].
pub const STATS_MAP: &str = "STATS";
/// Name of the array (one slot) holding the [`XdpConfig`] the agent writes before attaching.
pub const CONFIG_MAP: &str = "CONFIG";
/// Name of the array (one slot) holding the [`AuthKeys`] the agent writes at start and on SIGHUP.
pub const KEYS_MAP: &str = "KEYS";
/// Name of the ring buffer of [`PeerEvent`]s that wakes the agent.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the XDP program in the eBPF object.
pub const XDP_PROGRAM: &str = "ha_xdp";
/// Name of the hash map of the groups this agent serves (group id → its index in
/// `GROUP_ENTRIES`); heartbeats of any other group are counted (`wrong_group`) and dropped.
pub const GROUPS_MAP: &str = "GROUPS";
/// Name of the array of [`GroupEntry`]s, one per group served (at the index `GROUPS` gives): a
/// known peer's heartbeat finds its group's through the index in its [`PeerSlot`], an array
/// lookup, instead of a second hash lookup.
pub const GROUP_ENTRIES_MAP: &str = "GROUP_ENTRIES";
/// Name of the hash map of this node's outstanding probes (group id → [`ProbeState`]).
pub const PROBES_MAP: &str = "PROBES";
/// How many groups one agent may serve.
pub const MAX_GROUPS: u32 = 256;
/// Name of the array (one slot) holding the [`Fence`]: the agent's lease.
pub const FENCE_MAP: &str = "FENCE";
/// Name of the hash map of the VIPs the fence guards, keyed by address (IPv4 mapped into IPv6:
/// [`fenced_key_v4`]).
pub const FENCED_MAP: &str = "FENCED";
/// How many VIPs the fence can guard (and so how many one agent may configure): a hash map, so
/// that [`MAX_GROUPS`] groups of a few VIPs each cost one lookup per frame like one VIP does.
pub const MAX_FENCED_VIPS: usize = 1024;
/// [`Fence::flags`]: while fenced, let IP traffic to the VIPs through (only ARP and neighbour
/// discovery for them are dropped), so that established flows of a stalled holder survive.
pub const FENCE_KEEP_FLOWS: u32 = 1;
/// How many (group, peer) entries the map holds: [`MAX_GROUPS`] groups of 16 nodes.
pub const MAX_PEERS: u32 = MAX_GROUPS * 16;
/// Name of the hash map of silence watches (group id → [`SilenceWatch`]): a kernel timer per
/// group that wakes the agent once the ACTIVE it would succeed goes quiet.
pub const SILENCE_WATCHES_MAP: &str = "SILENCE_WATCHES";
/// Name of the XDP program that sets a silence watch: never attached, the agent runs it on a
/// [`WatchRequest`] (`BPF_PROG_TEST_RUN`), as only a BPF program may start a kernel timer.
pub const WATCH_PROGRAM: &str = "ha_watch";
/// Where the [`WatchRequest`] starts in the frame the agent runs [`WATCH_PROGRAM`] on: after an
/// Ethernet header's room, the least frame an XDP test run takes.
pub const WATCH_REQUEST_OFFSET: usize = 14;

/// A group this node serves, in `GROUP_ENTRIES`, written by the agent; an entry no group uses is
/// all zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GroupEntry {
    /// The group id.
    pub group: u32,
    /// 1 while the group is served, 0 for an unused entry (group ids may be 0).
    pub served: u32,
    /// This node's state in the group, a `NodeState` value, once the agent has written it (0
    /// until then): the XDP program answers a probe in the group only then, since its answer
    /// vouches for this node there. The only thing of what this node says that the program needs.
    pub state: u8,
    /// Explicit padding; always 0.
    pub _pad0: [u8; 7],
}

impl GroupEntry {
    /// The entry of the served `group`, with this node's `state` in it (`None`: not said yet, and
    /// probes in the group go unanswered).
    #[must_use]
    pub const fn serving(group: u32, state: Option<crate::NodeState>) -> Self {
        let state = match state {
            Some(state) => state as u8,
            None => 0,
        };
        Self { group, served: 1, state, _pad0: [0; 7] }
    }

    /// Whether this entry is `group`'s: a peer's index may be one a reload has since freed or
    /// given to another group.
    #[allow(clippy::inline_always, reason = "the XDP program's hot path")]
    #[inline(always)]
    #[must_use]
    pub const fn serves(&self, group: u32) -> bool {
        self.served != 0 && self.group == group
    }

    /// Whether the agent has said what this node is in the group: probes in it are answered.
    #[allow(clippy::inline_always, reason = "the XDP program's probe path")]
    #[inline(always)]
    #[must_use]
    pub const fn answers_probes(&self) -> bool {
        crate::NodeState::from_u8(self.state).is_some()
    }
}

/// A burst of probes this node sent in one group, written by the agent before each probe goes
/// out; the XDP program marks it answered when an authentic answer echoes one of its sequences.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ProbeState {
    /// Sequence number of the burst's first probe.
    pub first_sequence: u64,
    /// Sequence number of its latest probe.
    pub last_sequence: u64,
    /// `bpf_ktime_get_ns()` when an answer arrived; 0 until one does.
    pub answered_ns: u64,
    /// The node probed.
    pub target: u32,
    /// Explicit padding; always 0.
    pub _pad0: u32,
}

/// Key of the peer map: one entry per (group, node id).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PeerKey {
    /// VIP group.
    pub group: u32,
    /// Sender's node id.
    pub node_id: u32,
}

/// The XDP program's `PEER_HINTS` (a direct-mapped cache of `PEER_SLOTS`, one word per entry)
/// has `2^PEER_HINT_BITS` entries: twice [`MAX_PEERS`], so that few peers share one.
pub const PEER_HINT_BITS: u32 = 13;
const _: () = assert!(1 << PEER_HINT_BITS >= 2 * MAX_PEERS, "PEER_HINTS holds twice MAX_PEERS");

impl PeerKey {
    /// Where this peer's hint sits in `PEER_HINTS`: Fibonacci hashing of the key as one word (the
    /// top bits of its product with 2^64 / φ), which spreads neighbouring node ids and groups
    /// apart. A multiply and a shift: the XDP program computes it for every heartbeat.
    #[allow(clippy::inline_always, reason = "on the XDP program's hot path")]
    #[inline(always)]
    #[must_use]
    pub const fn hint_index(self) -> u32 {
        let word = ((self.group as u64) << 32) | self.node_id as u64;
        (word.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - PEER_HINT_BITS)) as u32
    }
}

/// Where a peer's things are: its record's slot in `PEERS`, handed out once and never changed,
/// and its group's entry in `GROUP_ENTRIES` as last found (put right by the XDP program when a
/// reload moves it).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PeerSlot {
    /// The record's index in `PEERS`.
    pub slot: u32,
    /// The group's index in `GROUP_ENTRIES`.
    pub group_entry: u32,
}

impl PeerSlot {
    /// As one word, the slot in the low half: how `PEER_HINTS` holds it, so that a racing CPU
    /// reads a whole hint or none (a copy of the struct may be two loads).
    #[allow(clippy::inline_always, reason = "on the XDP program's hot path")]
    #[inline(always)]
    #[must_use]
    pub const fn to_word(self) -> u64 {
        self.slot as u64 | ((self.group_entry as u64) << 32)
    }

    /// The slot [`PeerSlot::to_word`] made `word` of.
    #[allow(clippy::inline_always, reason = "on the XDP program's hot path")]
    #[inline(always)]
    #[must_use]
    pub const fn from_word(word: u64) -> Self {
        Self { slot: word as u32, group_entry: (word >> 32) as u32 }
    }
}

/// What the XDP program last saw of a peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PeerRecord {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the last valid heartbeat arrived.
    pub last_seen_ns: u64,
    /// Sequence number of the last valid heartbeat.
    pub sequence: u64,
    /// Valid heartbeats received from this peer since the map was created.
    pub packets: u64,
    /// The peer's advertised heartbeat interval in milliseconds.
    pub interval_ms: u32,
    /// 802.1Q VLAN id the heartbeat came on, 0 when untagged.
    pub vlan_id: u16,
    /// 4 or 6: which IP family `src_addr` holds.
    pub family: u8,
    /// The flags of the peer's last heartbeat (`FLAG_*` in `wire`).
    pub flags: u8,
    /// Source address: IPv6, or IPv4 in the first four bytes.
    pub src_addr: [u8; 16],
    /// Source MAC address.
    pub src_mac: [u8; 6],
    /// The peer's advertised worthiness; 0 means it is releasing.
    pub priority: u8,
    /// The peer's advertised state, a `NodeState` value.
    pub state: u8,
    /// The node the peer hands its VIPs to (with `FLAG_HANDOVER`), else 0.
    pub handover_to: u32,
    /// The group of the heartbeat: with `node_id`, the record's [`PeerKey`].
    pub group: u32,
    /// The sender's node id.
    pub node_id: u32,
    /// Explicit padding; always 0.
    pub _pad0: u32,
}

impl PeerRecord {
    /// Whose record this is.
    #[must_use]
    pub const fn key(&self) -> PeerKey {
        PeerKey { group: self.group, node_id: self.node_id }
    }

    /// Whether the slot holds a record at all: a slot handed out but not written yet, or never
    /// handed out, is all zero.
    #[must_use]
    pub const fn is_written(&self) -> bool {
        self.last_seen_ns != 0
    }
}

/// Settings the agent writes into the `CONFIG` map before attaching the program.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct XdpConfig {
    /// Heartbeat UDP port, host byte order. 0 means "not configured": every frame passes.
    pub port: u16,
    /// Explicit padding; always 0.
    pub _pad0: u16,
    /// This agent's own node id; heartbeats carrying it are told apart as our own or another
    /// node's with our id (`replay`, `own_echo`).
    pub own_node_id: u32,
}

/// The keys heartbeats are verified with (SipHash-2-4 keys as two little-endian halves).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AuthKeys {
    /// The key this node signs with, and accepts.
    pub current: [u64; 2],
    /// A key that is accepted too while a new key rolls out.
    pub next: [u64; 2],
    /// How many keys are set: 0 (authentication off: `--insecure-no-auth`), 1 or 2.
    pub count: u32,
    /// Explicit padding; always 0.
    pub _pad0: u32,
}

/// Per-CPU counters of every verdict and every rejection reason.
///
/// A field per reason (rather than an array) so that `bpftool map dump` names each one.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct XdpStats {
    /// Frames that are not heartbeats (not IP, not UDP, another port, fragments): passed.
    pub passed: u64,
    /// Valid heartbeats recorded in the peer map: dropped.
    pub accepted: u64,
    /// Everything else sent to the heartbeat port is rejected for one of the reasons below, counted
    /// and dropped: no packet to the heartbeat port goes further than XDP.
    /// Frames to the heartbeat port that end before the headers or payload they announce.
    pub truncated: u64,
    /// UDP payload to the heartbeat port that is not exactly one heartbeat long.
    pub bad_length: u64,
    /// Payload without the heartbeat magic.
    pub bad_magic: u64,
    /// Heartbeat of a protocol version this program does not speak.
    pub bad_version: u64,
    /// Heartbeat with an undefined state, flag or reserved value.
    pub bad_field: u64,
    /// Heartbeat of another VIP group.
    pub wrong_group: u64,
    /// Authentic heartbeat carrying this node's own id and a sequence above any it sent: another
    /// node uses our id.
    pub own_echo: u64,
    /// Heartbeat whose tag no configured key produces (forged, or signed with another key).
    pub bad_tag: u64,
    /// Authentic heartbeat whose sequence is not above the last one recorded for its sender
    /// (a replay, or a duplicate).
    pub replay: u64,
    /// Peer events lost because the ring buffer was full (the 100 ms poll still sees the change).
    pub events_lost: u64,
    /// Frames about a VIP (ARP, neighbour discovery, and IP unless [`FENCE_KEEP_FLOWS`]) dropped
    /// because the agent's lease ran out: a dead or hung agent's node stops answering for them.
    pub fenced: u64,
    /// Probes to this node answered (XDP_TX) while its agent's loop turns.
    pub probes_answered: u64,
    /// Authentic answers to this node's probes, recorded in `PROBES`.
    pub probe_answers: u64,
}

impl XdpStats {
    /// Field-wise sum, for folding the per-CPU copies into one.
    pub fn add(&mut self, other: &Self) {
        self.passed += other.passed;
        self.accepted += other.accepted;
        self.truncated += other.truncated;
        self.bad_length += other.bad_length;
        self.bad_magic += other.bad_magic;
        self.bad_version += other.bad_version;
        self.bad_field += other.bad_field;
        self.wrong_group += other.wrong_group;
        self.own_echo += other.own_echo;
        self.bad_tag += other.bad_tag;
        self.replay += other.replay;
        self.events_lost += other.events_lost;
        self.fenced += other.fenced;
        self.probes_answered += other.probes_answered;
        self.probe_answers += other.probe_answers;
    }

    /// Every counter with its name, in declaration order (for status output).
    pub fn named(&self) -> [(&'static str, u64); 15] {
        [
            ("passed", self.passed),
            ("accepted", self.accepted),
            ("truncated", self.truncated),
            ("bad_length", self.bad_length),
            ("bad_magic", self.bad_magic),
            ("bad_version", self.bad_version),
            ("bad_field", self.bad_field),
            ("wrong_group", self.wrong_group),
            ("own_echo", self.own_echo),
            ("bad_tag", self.bad_tag),
            ("replay", self.replay),
            ("events_lost", self.events_lost),
            ("fenced", self.fenced),
            ("probes_answered", self.probes_answered),
            ("probe_answers", self.probe_answers),
        ]
    }
}

/// The agent's lease and the VIPs it guards, written by the agent (the whole record, every time
/// it wakes) and read by the XDP program for every frame that is not a heartbeat.
///
/// While the lease is fresh nothing happens. Once `renewed_ns + lease_ns` has passed (the agent
/// died, hangs, or was SIGKILLed with its XDP link pinned), the program drops ARP and neighbour
/// discovery for the VIPs, and IP traffic to them unless [`FENCE_KEEP_FLOWS`]: a node whose
/// agent cannot hand the VIPs over stops answering for them, so that exactly one MAC does.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Fence {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the agent last renewed the lease.
    pub renewed_ns: u64,
    /// How long a renewal lasts: the dead time, after which peers take over.
    pub lease_ns: u64,
    /// The sequence number of the agent's latest heartbeat, written before it goes out. An
    /// authentic heartbeat with our node id at or below it is our own, reflected or replayed
    /// (`replay`); only one above it proves another node with our id (`own_echo`).
    pub last_sent_sequence: u64,
    /// How recent `heartbeat_ns` must be for the XDP program to answer a probe: a little over
    /// the heartbeat interval. A probe is sent once the ACTIVE has been silent for longer: a dead
    /// agent's node must not answer it.
    pub answer_window_ns: u64,
    /// `bpf_ktime_get_ns()` when the agent last sent a heartbeat (or a restarting agent renewed
    /// its predecessor's lease). Probes are answered from this, not from `renewed_ns`: the loop
    /// also turns between heartbeats (events, deadlines), and a crashed agent's last such turn
    /// would have its node vouch for it a good part of an interval after its last heartbeat,
    /// when a successor already probes.
    pub heartbeat_ns: u64,
    /// How many VIPs `FENCED` holds; 0 turns fencing off.
    pub count: u32,
    /// `FENCE_*` flags.
    pub flags: u32,
}

impl Fence {
    /// Whether the agent sent a heartbeat within the answer window at `now_ns`: it is alive and
    /// its loop turns, and the XDP program may answer probes for it.
    #[must_use]
    pub fn answers_probes(&self, now_ns: u64) -> bool {
        now_ns.saturating_sub(self.heartbeat_ns) <= self.answer_window_ns
    }

    /// Whether the lease has run out at `now_ns` (and fencing is on).
    #[must_use]
    pub fn expired(&self, now_ns: u64) -> bool {
        self.count != 0 && now_ns.saturating_sub(self.renewed_ns) > self.lease_ns
    }
}

/// The `FENCED` key of an address: IPv6 as it is, IPv4 mapped into IPv6 (`::ffff:a.b.c.d`), so
/// that both families share one map and one lookup.
#[inline(always)]
#[allow(clippy::inline_always, reason = "the XDP program needs it inlined to keep the verifier's bounds")]
#[must_use]
pub const fn fenced_key_v4(addr: [u8; 4]) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, addr[0], addr[1], addr[2], addr[3]]
}

/// Room for the kernel's `struct bpf_timer` in a map value. It keeps the kernel's name because
/// the kernel finds a timer in a map value by its BTF type name; the bytes are the kernel's
/// (a map update from user space leaves them as they are).
#[allow(non_camel_case_types)]
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct bpf_timer {
    opaque: [u64; 2],
}

/// One group's watch on the silence of one peer (the ACTIVE this node would succeed), the value
/// of `SILENCE_WATCHES`. The timer fires when the peer's silence would reach `after_permille`
/// thousandths of its interval, counted from its last heartbeat; while it is heard, the timer
/// sets itself for the new moment, and once it is silent it raises a [`change::SILENT`] event
/// and stops until the agent sets it again.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SilenceWatch {
    /// The kernel's timer.
    pub timer: bpf_timer,
    /// The watched peer's slot in `PEERS`.
    pub slot: u32,
    /// The watched peer's node id; 0: none (the timer is cancelled).
    pub node_id: u32,
    /// The silence that counts, in thousandths of the peer's interval.
    pub after_permille: u32,
    /// Explicit padding.
    pub _pad0: u32,
}

/// What the agent asks of [`WATCH_PROGRAM`]: watch `node_id` in `group` (0: stop watching).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WatchRequest {
    /// VIP group.
    pub group: u32,
    /// The peer to watch; 0 stops the group's watch.
    pub node_id: u32,
    /// The silence that counts, in thousandths of the peer's interval.
    pub after_permille: u32,
    /// Explicit padding.
    pub _pad0: u32,
}

impl WatchRequest {
    /// How many bytes a request takes in the frame.
    pub const LEN: usize = 16;

    /// The request as the frame carries it: its fields in order, in the host's byte order, the
    /// padding zero.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut bytes = [0u8; Self::LEN];
        let fields = [self.group, self.node_id, self.after_permille, 0];
        for (chunk, field) in bytes.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&field.to_ne_bytes());
        }
        bytes
    }

    /// The request a frame carries (see [`WatchRequest::to_bytes`]).
    #[must_use]
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        let field = |at: usize| u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        Self { group: field(0), node_id: field(4), after_permille: field(8), _pad0: 0 }
    }
}

/// [`WATCH_PROGRAM`]'s verdicts (its return value in the test run).
pub mod watch_verdict {
    /// The watch is set (or stopped, for node id 0).
    pub const SET: u32 = 2;
    /// The peer has no record yet: nothing to watch.
    pub const UNKNOWN_PEER: u32 = 1;
    /// The request did not fit the frame, or a timer helper failed.
    pub const FAILED: u32 = 0;
}

/// Bits of [`PeerEvent::changes`].
pub mod change {
    /// First heartbeat from this peer since the map was created.
    pub const NEW_PEER: u32 = 1;
    /// The peer's advertised state changed.
    pub const STATE: u32 = 2;
    /// The peer's advertised worthiness changed (0 = it is releasing).
    pub const PRIORITY: u32 = 4;
    /// The peer was silent for longer than two of its intervals and is heard again.
    pub const REVIVED: u32 = 8;
    /// The peer answered one of this node's probes (`PROBES`).
    pub const PROBE_ANSWER: u32 = 32;
    /// The peer's flags changed (it yielded the VIP, hands it over, or stopped saying so); the
    /// probe flag alone is no change (nothing the agent acts on).
    pub const FLAGS: u32 = 16;
    /// An authentic heartbeat with this node's id and a sequence above any it sent: another
    /// node uses our id (counted as `own_echo`). The agent reads the counters at once.
    pub const OWN_ID: u32 = 64;
    /// The peer a silence watch follows went quiet (raised by the watch's timer, not by a
    /// heartbeat; see [`super::SilenceWatch`]).
    pub const SILENT: u32 = 128;
}

/// Sent on the `EVENTS` ring buffer when a peer needs the agent's attention at once.
///
/// Not sent for an ordinary heartbeat: the agent polls the peer map for those.
///
/// Aligned to 8 (its size stays 16): the XDP program is built to allow misaligned accesses (to
/// the packet, see ha-ebpf's build.rs), so LLVM may merge the stores that build an event on the
/// stack into 8-byte ones, and the verifier refuses a misaligned stack access.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PeerEvent {
    /// VIP group.
    pub group: u32,
    /// The peer's node id.
    pub node_id: u32,
    /// Bitmask of [`change`] constants.
    pub changes: u32,
    /// The peer's new worthiness.
    pub priority: u8,
    /// The peer's new state.
    pub state: u8,
    /// Explicit padding; always 0.
    pub _pad0: [u8; 2],
}

#[cfg(feature = "user")]
mod pod {
    // All of these are repr(C), made only of integers and byte arrays, with every padding byte
    // an explicit field: any bit pattern is a valid value, which is what Pod asks.

    // SAFETY: see above.
    unsafe impl aya::Pod for super::PeerKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::PeerRecord {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::XdpConfig {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::XdpStats {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::PeerEvent {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::AuthKeys {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::Fence {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::GroupEntry {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::PeerSlot {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::ProbeState {}
    // SAFETY: see above (the timer is two u64 the kernel owns).
    unsafe impl aya::Pod for super::SilenceWatch {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::WatchRequest {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<PeerKey>(), 8);
        assert_eq!(size_of::<PeerRecord>(), 8 * 3 + 4 + 2 + 1 + 1 + 16 + 6 + 1 + 1 + 4 + 4 + 4 + 4);
        assert_eq!(size_of::<PeerRecord>() % align_of::<PeerRecord>(), 0);
        assert_eq!(size_of::<XdpConfig>(), 8);
        assert_eq!(size_of::<XdpStats>(), 8 * 15);
        assert_eq!(size_of::<Fence>(), 8 + 8 + 8 + 8 + 8 + 4 + 4);
        assert_eq!(size_of::<GroupEntry>(), 16);
        assert_eq!(size_of::<PeerSlot>(), 8);
        assert_eq!(size_of::<ProbeState>(), 8 * 3 + 4 + 4);
        assert_eq!(size_of::<AuthKeys>(), 40);
        assert_eq!(size_of::<PeerEvent>(), 16);
        assert_eq!(size_of::<SilenceWatch>(), 16 + 4 * 4);
        assert_eq!(size_of::<WatchRequest>(), WatchRequest::LEN);
    }

    #[test]
    fn a_watch_request_reads_back_as_written() {
        let request = WatchRequest { group: 7, node_id: 0xdead_beef, after_permille: 1300, _pad0: 0 };
        assert_eq!(WatchRequest::from_bytes(request.to_bytes()), request);
    }

    #[test]
    fn stats_add_and_named_agree() {
        let mut total = XdpStats { passed: 1, events_lost: 2, ..Default::default() };
        total.add(&XdpStats { passed: 3, accepted: 4, ..Default::default() });
        let named = total.named();
        assert_eq!(named[0], ("passed", 4));
        assert_eq!(named[1], ("accepted", 4));
        assert_eq!(named[11], ("events_lost", 2));
    }
}

#[cfg(test)]
mod fence_tests {
    use super::*;

    fn fence(count: u32) -> Fence {
        Fence { renewed_ns: 1_000, lease_ns: 350, count, ..Default::default() }
    }

    #[test]
    fn the_lease_expires_after_its_length_unless_fencing_is_off() {
        assert!(!fence(2).expired(1_350));
        assert!(fence(2).expired(1_351));
        assert!(!fence(0).expired(u64::MAX));
    }

    #[test]
    fn ipv4_keys_are_ipv4_mapped_ipv6_addresses() {
        let mapped = core::net::Ipv4Addr::new(192, 0, 2, 100).to_ipv6_mapped().octets();
        assert_eq!(fenced_key_v4([192, 0, 2, 100]), mapped);
    }
}
