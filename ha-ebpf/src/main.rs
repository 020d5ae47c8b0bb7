//! ha-agent's XDP program.
//!
//! For every frame on the agent's interface: parse Ethernet (with one 802.1Q/802.1ad tag), IPv4 or
//! IPv6 and UDP; if the UDP destination is the heartbeat port, decode the heartbeat with the same
//! decoder user space uses, check group and node id, verify its SipHash tag with the keys in
//! `KEYS`, check that its sequence number is above the sender's last, and only then record the
//! peer in `PEERS` and wake the agent through `EVENTS` when something it must react to changed.
//! Every frame to the heartbeat port is dropped, accepted or not: nothing above XDP needs one,
//! and a forged or malformed one goes no further than the driver. Everything else passes
//! untouched. Every verdict and rejection is counted in the per-CPU `STATS` map.
//!
//! A second program, `ha_watch`, is never attached: the agent runs it to set the kernel timers
//! of its silence watches (`SILENCE_WATCHES`), which wake it once the ACTIVE it would succeed
//! goes quiet.
#![no_std]
#![no_main]
// The `#[xdp]` macro wraps the entry point in a generated function without a doc comment,
// and takes the context by value.
#![allow(missing_docs, clippy::needless_pass_by_value)]
// The hot path's helpers are inlined on purpose: BPF-to-BPF calls would cost a frame each, and
// the verifier tracks packet bounds best within one function. What a settled peer's heartbeat
// or a probe never runs (a new peer, an event, an answer to our own probes, a log line) is out
// of line, so that the code they do run is short and dense: it is mostly cold when a frame
// comes (probes are rare), and what a run costs follows the cache lines it touches.
#![allow(clippy::inline_always)]

use core::mem::size_of;

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST},
    btf_maps::{Array, HashMap, PerCpuArray, RingBuf},
    helpers::{bpf_ktime_get_ns, bpf_timer_init, bpf_timer_set_callback, bpf_timer_start},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use ha_common::{
    answer_flags, answer_with_tag, answered_probe, change, fenced_key_v4, verify, verify_answer,
    watch_verdict, AuthKeys, DecodeError, Fence, GroupEntry, Heartbeat, PeerEvent, PeerKey, PeerRecord,
    PeerSlot, ProbeState, SilenceWatch, WatchRequest, XdpConfig, XdpStats, BPF_F_MMAPABLE, FENCE_KEEP_FLOWS,
    FLAGS_OFFSET, FLAG_HANDOVER, FLAG_PROBE, FLAG_PROBE_ANSWER, HEARTBEAT_LEN, IPPROTO_UDP,
    IPV4_MIN_HEADER_LEN, IPV6_HEADER_LEN, MAX_FENCED_VIPS, MAX_GROUPS, MAX_PEERS, PEER_HINT_BITS, TAG_OFFSET,
    UDP_HEADER_LEN, WATCH_REQUEST_OFFSET,
};

/// The peers' records, one slot per (group, node id), written only here and read by the agent
/// through its own memory mapping (no syscall per poll). Slots are never freed: a peer that
/// leaves keeps its last record (the agent judges it by its age), and the table's size bounds
/// how many there can be.
#[btf_map]
static PEERS: Array<PeerRecord, { MAX_PEERS as usize }, BPF_F_MMAPABLE> = Array::new();

/// Each peer's slot in `PEERS`, and its group's index in `GROUP_ENTRIES`: looked up when
/// `PEER_HINTS` has no good hint for the sender.
#[btf_map]
static PEER_SLOTS: HashMap<PeerKey, PeerSlot, { MAX_PEERS as usize }> = HashMap::new();

/// A direct-mapped cache of `PEER_SLOTS`: at [`PeerKey::hint_index`] (a multiply and a shift)
/// of a peer's key, its slot in the low half and its group's index in the high half, one word,
/// so that a racing CPU reads a whole hint or none. A hint is only a guess, checked against the
/// record it names (whose key is written once, its slot handed out for good) and the group's
/// entry: a wrong, stale or empty one (two peers on one index, a reload) falls back to the hash
/// lookup, which writes it again. An array lookup: no hash, no bucket walk, no key compare out
/// of line, which were most of what a known peer's heartbeat paid for the hash lookup.
#[btf_map]
static PEER_HINTS: Array<u64, { 1 << PEER_HINT_BITS }> = Array::new();

/// Each handed-out `PEERS` slot's owner. Inserted without replacing (`BPF_NOEXIST`): of two CPUs
/// meeting two new peers at once, one gets the slot and the other the next (the BPF target has
/// no atomic add for a counter).
#[btf_map]
static SLOT_OWNERS: HashMap<u32, PeerKey, { MAX_PEERS as usize }> = HashMap::new();

/// One above the highest `PEERS` slot handed out, for the agent (memory-mapped too): how far to
/// read. Raised without atomics, so a race may leave it a few slots short until the next new
/// peer; the agent reads `PEER_COUNT_SLACK` slots further.
#[btf_map]
static PEER_COUNT: Array<u64, 1, BPF_F_MMAPABLE> = Array::new();

/// The groups the agent serves, each with its index in `GROUP_ENTRIES`; written before attaching
/// and on reload. Looked up for a new peer's heartbeat (a known peer's slot holds the index).
#[btf_map]
static GROUPS: HashMap<u32, u32, { MAX_GROUPS as usize }> = HashMap::new();

/// Each served group's entry (this node's state in it: probes are answered once it is written),
/// written before attaching, when the node's state in a group changes, and on reload. An array:
/// found by index, which costs no hash.
#[btf_map]
static GROUP_ENTRIES: Array<GroupEntry, { MAX_GROUPS as usize }> = Array::new();

/// This node's outstanding probe bursts by group, written by the agent before each probe; an
/// authentic answer echoing one of a burst's sequences marks it answered.
#[btf_map]
static PROBES: HashMap<u32, ProbeState, { MAX_GROUPS as usize }> = HashMap::new();

/// Verdict and rejection counters, one copy per CPU so the hot path needs no atomics.
#[btf_map]
static STATS: PerCpuArray<XdpStats, 1> = PerCpuArray::new();

/// Written once by the agent before it attaches the program.
#[btf_map]
static CONFIG: Array<XdpConfig, 1> = Array::new();

/// The keys heartbeats must be signed with; written by the agent before attaching and on SIGHUP.
/// All zero (`count` 0) means authentication is off (`--insecure-no-auth`).
#[btf_map]
static KEYS: Array<AuthKeys, 1> = Array::new();

/// The agent's lease; rewritten by the agent every time it wakes, through its own memory mapping
/// of the map (no syscall per heartbeat). Once the lease runs out, frames about the VIPs in
/// `FENCED` are dropped (see `fenced`).
#[btf_map]
static FENCE: Array<Fence, 1, BPF_F_MMAPABLE> = Array::new();

/// The VIPs the fence guards (IPv4 as IPv4-mapped IPv6, see `fenced_key_v4`), written by the agent
/// at start and on reload. A hash map: one lookup per address however many VIPs there are.
#[btf_map]
static FENCED: HashMap<[u8; 16], u8, MAX_FENCED_VIPS> = HashMap::new();

/// Wakes the agent at once for a new peer, a state or worthiness change, or a peer heard again
/// after a silence. 16 KiB holds several hundred events, far more than a LAN of nodes produces
/// between two of the agent's reads.
#[btf_map]
static EVENTS: RingBuf<PeerEvent, { 16 * 1024 }> = RingBuf::new();

/// Each group's silence watch (see `ha_watch`): a kernel timer that wakes the agent through
/// `EVENTS` once the ACTIVE it would succeed goes quiet, so that a STANDBY next in line need not
/// wake every interval to look. Not memory-mapped: a map holding timers cannot be.
#[btf_map]
static SILENCE_WATCHES: HashMap<u32, SilenceWatch, { MAX_GROUPS as usize }> = HashMap::new();

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_ARP: u16 = 0x0806;
const ARP_LEN: usize = 28;
const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOUR_SOLICITATION: u8 = 135;
const ND_NEIGHBOUR_ADVERTISEMENT: u8 = 136;

/// What became of one frame; each maps to one `XdpStats` counter.
enum Outcome {
    /// Not a heartbeat at all.
    NotHeartbeat,
    /// Recorded in `PEERS`.
    Accepted,
    Truncated,
    Rejected(DecodeError),
    WrongGroup,
    OwnEcho,
    BadTag,
    Replay,
    /// Not a heartbeat, but about a VIP while the agent's lease has run out.
    Fenced,
    /// A probe to this node, recorded as the sender's heartbeat and turned into the answer
    /// (XDP_TX).
    Answered,
    /// An authentic answer to one of this node's probes, recorded in `PROBES`.
    ProbeAnswer,
}

/// Where the frame's network and transport headers start, and the IP family.
#[derive(Clone, Copy)]
struct Layout {
    l3: usize,
    l4: usize,
    family: u8,
}

/// Where the heartbeat came from: where in the frame its IP source address sits, its family, and
/// its VLAN (0 when untagged).
struct Source {
    offset: usize,
    family: u8,
    vlan_id: u16,
}

/// The program's entry point: classifies the frame, counts the outcome, and drops every frame
/// to the heartbeat port.
#[xdp]
pub fn ha_xdp(ctx: XdpContext) -> u32 {
    let mut outcome = classify(&ctx);
    if matches!(outcome, Outcome::NotHeartbeat) && fenced(&ctx) {
        outcome = Outcome::Fenced;
    }
    count(&outcome);
    match outcome {
        Outcome::NotHeartbeat => xdp_action::XDP_PASS,
        Outcome::Answered => xdp_action::XDP_TX,
        _ => xdp_action::XDP_DROP,
    }
}

/// A copy of the `T` at `offset` bytes into the frame, or `None` if the frame is too short.
///
/// Every read of the packet goes through here, so the bounds check the verifier insists on is
/// written once. `T` is a byte array or an integer in every use (any bit pattern valid); the
/// program is built to allow misaligned accesses (ha-ebpf's build.rs), so an integer is one load.
#[inline(always)]
fn read_at<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    // SAFETY: the check above keeps `offset .. offset + size_of::<T>()` inside the packet, which
    // the kernel keeps mapped and unchanged for the program's run; read_unaligned needs no
    // alignment, and the callers only read byte arrays and integers, for which any bytes are valid.
    Some(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
}

/// [`read_at`] with the packet's bounds read afresh (see [`bounds`]): for the probe answer, whose
/// reads follow larger ones that LLVM would otherwise take as proof enough.
#[inline(always)]
fn reread_at<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    let (start, end) = bounds(ctx);
    if start + offset + size_of::<T>() > end {
        return None;
    }
    // SAFETY: as in `read_at`.
    Some(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
}

/// Writes `value` at `offset` bytes into the frame; false (nothing written) if the frame is too
/// short. Every write to the packet goes through here, as every read goes through [`read_at`].
#[inline(always)]
fn write_at<T: Copy>(ctx: &XdpContext, offset: usize, value: T) -> bool {
    let (start, end) = bounds(ctx);
    if start + offset + size_of::<T>() > end {
        return false;
    }
    // SAFETY: the check above keeps `offset .. offset + size_of::<T>()` inside the packet, which
    // an XDP program may write; write_unaligned needs no alignment, and the callers write byte
    // arrays only.
    unsafe { core::ptr::write_unaligned((start + offset) as *mut T, value) };
    true
}

/// Words of a heartbeat payload.
const PAYLOAD_WORDS: usize = HEARTBEAT_LEN / 8;

/// The heartbeat payload at `offset`, read eight bytes at a time: copied as a byte array, it
/// would be moved one byte at a time (the packet's alignment is unknown), 40 loads and 40 stores
/// instead of 5 and 5. The program is built to allow misaligned accesses (ha-ebpf's build.rs),
/// which the verifier permits for packet pointers on every architecture with efficient unaligned
/// access, x86-64 and arm64 among them. Not five [`read_at`]s: one bounds check covers the
/// whole payload, and five cost every heartbeat 17 instructions more.
#[inline(always)]
fn read_payload(ctx: &XdpContext, offset: usize) -> Option<[u8; HEARTBEAT_LEN]> {
    const { assert!(HEARTBEAT_LEN.is_multiple_of(8), "read in whole words") };
    let start = ctx.data();
    if start + offset + HEARTBEAT_LEN > ctx.data_end() {
        return None;
    }
    let mut payload = [0u8; HEARTBEAT_LEN];
    let mut i = 0;
    while i < PAYLOAD_WORDS {
        // SAFETY: the check above keeps the payload, and so each of its words, inside the
        // packet, which the kernel keeps mapped and unchanged for the program's run;
        // read_unaligned needs no alignment, and any bytes are a valid u64.
        let word = unsafe { core::ptr::read_unaligned((start + offset + 8 * i) as *const u64) };
        payload[8 * i..8 * i + 8].copy_from_slice(&word.to_ne_bytes());
        i += 1;
    }
    Some(payload)
}

/// The packet's start and end, read afresh. Volatile: otherwise LLVM drops a bounds check that an
/// earlier, larger one implies, but the verifier, which tracks each packet pointer on its own,
/// cannot see that, and rejects the access. Only the probe answer needs it: everywhere else the
/// verifier's pruning would suffer from the extra state.
#[inline(always)]
fn bounds(ctx: &XdpContext) -> (usize, usize) {
    let md = ctx.ctx;
    // SAFETY: `ctx.ctx` is the kernel's `xdp_md` for this run, valid and aligned while the
    // program runs: the field's address is inside it.
    let data = unsafe { &raw const (*md).data };
    // SAFETY: as above.
    let data_end = unsafe { &raw const (*md).data_end };
    // SAFETY: both point at live, aligned fields; reading them has no side effect.
    let start = unsafe { core::ptr::read_volatile(data) };
    // SAFETY: as above.
    let end = unsafe { core::ptr::read_volatile(data_end) };
    (start as usize, end as usize)
}

/// Reads a big-endian u16 at `offset`.
#[inline(always)]
fn be16_at(ctx: &XdpContext, offset: usize) -> Option<u16> {
    read_at::<[u8; 2]>(ctx, offset).map(u16::from_be_bytes)
}

/// The frame's link layer: the ethertype after at most one VLAN tag, where the network header
/// starts, and the VLAN id (0 when untagged).
struct LinkLayer {
    ethertype: u16,
    l3: usize,
    vlan_id: u16,
}

#[inline(always)]
fn link_layer(ctx: &XdpContext) -> Option<LinkLayer> {
    let ethertype = be16_at(ctx, 12)?;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let tci = be16_at(ctx, ETH_HLEN)?;
        let inner = be16_at(ctx, ETH_HLEN + 2)?;
        return Some(LinkLayer { ethertype: inner, l3: ETH_HLEN + VLAN_HLEN, vlan_id: tci & 0x0fff });
    }
    Some(LinkLayer { ethertype, l3: ETH_HLEN, vlan_id: 0 })
}

/// Whether the frame must be dropped because the agent's lease ran out and it is about a VIP:
/// an ARP packet naming one, an IPv6 neighbour solicitation or advertisement for one, or (unless
/// `FENCE_KEEP_FLOWS`) IP traffic to one. Then the kernel never answers for the VIPs of a node
/// whose agent died or hangs, and the LAN hears exactly one MAC: the successor's.
// A function of its own: its buffers stay out of the main frame, which holds `record` and calls
// `answer_probe`.
#[inline(never)]
fn fenced(ctx: &XdpContext) -> bool {
    let Some(fence) = FENCE.get(0) else {
        return false;
    };
    // SAFETY: a helper without arguments, callable from any program.
    let now = unsafe { bpf_ktime_get_ns() };
    if !fence.expired(now) {
        return false;
    }
    let keep_flows = fence.flags & FENCE_KEEP_FLOWS != 0;
    let Some(LinkLayer { ethertype, l3, .. }) = link_layer(ctx) else {
        return false;
    };
    let v4 = |offset: usize| read_at::<[u8; 4]>(ctx, offset).is_some_and(|addr| guarded(fenced_key_v4(addr)));
    let v6 = |offset: usize| read_at::<[u8; 16]>(ctx, offset).is_some_and(guarded);
    match ethertype {
        // Sender and target protocol addresses: requests for a VIP, and announcements of one.
        ETH_P_ARP => read_at::<[u8; ARP_LEN]>(ctx, l3).is_some() && (v4(l3 + 14) || v4(l3 + 24)),
        ETH_P_IP => !keep_flows && v4(l3 + 16),
        ETH_P_IPV6 => {
            let Some(header) = read_at::<[u8; 8]>(ctx, l3) else {
                return false;
            };
            let icmp = l3 + IPV6_HEADER_LEN;
            let neighbour_discovery = header[6] == IPPROTO_ICMPV6
                && read_at::<[u8; 1]>(ctx, icmp).is_some_and(|[kind]| {
                    kind == ND_NEIGHBOUR_SOLICITATION || kind == ND_NEIGHBOUR_ADVERTISEMENT
                });
            // The target address of both sits 8 bytes into the ICMPv6 message.
            (neighbour_discovery && v6(icmp + 8)) || (!keep_flows && v6(l3 + 24))
        }
        _ => false,
    }
}

/// Whether the fence guards the address with this `FENCED` key.
#[inline(always)]
fn guarded(key: [u8; 16]) -> bool {
    FENCED.get_ptr(key).is_some()
}

#[inline(always)]
fn classify(ctx: &XdpContext) -> Outcome {
    let config = match CONFIG.get(0) {
        Some(config) if config.port != 0 => *config,
        _ => return Outcome::NotHeartbeat,
    };
    let Some(LinkLayer { ethertype, l3, vlan_id }) = link_layer(ctx) else {
        return Outcome::NotHeartbeat;
    };

    let (l4, source) = match ethertype {
        ETH_P_IP => {
            let Some(header) = read_at::<[u8; IPV4_MIN_HEADER_LEN]>(ctx, l3) else {
                return Outcome::NotHeartbeat;
            };
            let ihl = ((header[0] & 0x0f) as usize) * 4;
            // Fragments (MF set or a non-zero offset) never hold a whole heartbeat.
            let fragment = u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0;
            if header[0] >> 4 != 4 || ihl < IPV4_MIN_HEADER_LEN || header[9] != IPPROTO_UDP || fragment {
                return Outcome::NotHeartbeat;
            }
            (l3 + ihl, Source { offset: l3 + 12, family: 4, vlan_id })
        }
        ETH_P_IPV6 => {
            let Some(header) = read_at::<[u8; 8]>(ctx, l3) else {
                return Outcome::NotHeartbeat;
            };
            // Heartbeats carry no extension headers: next header must be UDP itself.
            if header[6] != IPPROTO_UDP {
                return Outcome::NotHeartbeat;
            }
            (l3 + IPV6_HEADER_LEN, Source { offset: l3 + 8, family: 6, vlan_id })
        }
        _ => return Outcome::NotHeartbeat,
    };

    let Some(udp) = read_at::<[u8; UDP_HEADER_LEN]>(ctx, l4) else {
        return Outcome::NotHeartbeat;
    };
    if u16::from_be_bytes([udp[2], udp[3]]) != config.port {
        return Outcome::NotHeartbeat;
    }
    if u16::from_be_bytes([udp[4], udp[5]]) as usize != UDP_HEADER_LEN + HEARTBEAT_LEN {
        return Outcome::Rejected(DecodeError::BadLength);
    }
    // Copied into a fixed-size array: the decoder's every access is then in bounds by its type.
    let Some(payload) = read_payload(ctx, l4 + UDP_HEADER_LEN) else {
        return Outcome::Truncated;
    };
    let heartbeat = match Heartbeat::decode_array(&payload) {
        Ok(heartbeat) => heartbeat,
        Err(reason) => return Outcome::Rejected(reason),
    };
    // An answer names this node (the prober) as its sender and the node probed as its target:
    // it is checked against the probe, not looked up as a peer's heartbeat.
    if heartbeat.flags & FLAG_PROBE_ANSWER != 0 {
        return probe_answer(&payload, &heartbeat, config.own_node_id);
    }
    let key = PeerKey { group: heartbeat.group, node_id: heartbeat.node_id };
    let Some(ServedGroup { entry, peer }) = served_group(key) else {
        return Outcome::WrongGroup;
    };
    let Some(keys) = KEYS.get(0) else {
        return Outcome::BadTag;
    };
    let Some(verified) = verify(keys, &payload, heartbeat.tag) else {
        return Outcome::BadTag;
    };
    // A probe to this node: its answer's tag, signed now from the state the check left (six
    // rounds), so that only the tag, not the state, is kept across `record`: the state would
    // grow the main stack frame past what the verifier allows with `answer_probe` called from it.
    let probe_to_us = heartbeat.flags & FLAG_PROBE != 0 && heartbeat.target == config.own_node_id;
    let answer_tag = if probe_to_us { verified.answer_tag() } else { 0 };
    // Only after the tag: a forged heartbeat with our id must count as forged, not inflate the
    // counter that says another node claims our id. And one at or below the sequence we last
    // sent is our own, reflected or replayed: only a newer one proves another node.
    if heartbeat.node_id == config.own_node_id {
        let ours = FENCE.get(0).is_some_and(|fence| heartbeat.sequence <= fence.last_sent_sequence);
        if ours {
            return Outcome::Replay;
        }
        // The agent reads the counters when woken, not at every wake-up: tell it now.
        wake_agent(&heartbeat, change::OWN_ID);
        return Outcome::OwnEcho;
    }
    let layout = Layout { l3, l4, family: source.family };
    // One clock read for the record and the answer's lease check.
    // SAFETY: a helper without arguments, callable from any program.
    let now = unsafe { bpf_ktime_get_ns() };
    let outcome = record(ctx, &heartbeat, &source, peer, now);
    // Only a probe that passed everything a heartbeat must, replay check included, is answered:
    // a forged one costs what a forged heartbeat does, a replayed one what a replay does and the
    // answer tag's six rounds. A group whose entry holds no state yet is not answered: the agent
    // has not said what this node is in it.
    if matches!(outcome, Outcome::Accepted) && probe_to_us && entry.answers_probes() {
        return answer_probe(ctx, &payload, answer_tag, layout, now);
    }
    outcome
}

/// Turns the probe in the frame into this node's answer and sends it back the way it came
/// (XDP_TX), only within the fence's answer window of the agent's last heartbeat (a dead or hung
/// agent's node must not vouch for it), and only once the agent has told the program its state
/// in the group. The answer is the probe with its flags made an answer's and the answer tag in
/// place of its tag (`ha_common::answer_payload`): `answer_tag`, signed by the caller from the
/// state the probe's check left (six SipHash rounds rather than a SipHash of its own), and nine
/// of its bytes written rather than forty.
// A function of its own (a BPF-to-BPF call): its buffers then live in its own stack frame, and
// the program's main frame stays within the verifier's 512 bytes. The payload by reference: a
// copy would grow the caller's frame.
#[inline(never)]
fn answer_probe(
    ctx: &XdpContext,
    probe: &[u8; HEARTBEAT_LEN],
    answer_tag: u64,
    layout: Layout,
    now: u64,
) -> Outcome {
    let (Some(fence), Some(config)) = (FENCE.get(0), CONFIG.get(0)) else {
        return Outcome::Accepted;
    };
    if !fence.answers_probes(now) {
        return Outcome::Accepted;
    }
    let flags = answer_flags(probe[FLAGS_OFFSET]);
    let tag = answer_tag.to_be_bytes();
    let Layout { l3, l4, family } = layout;
    // Each header is read whole, changed and written back whole: one access (and one bounds
    // check) per header: the fewer accesses, the cheaper the answer.
    // Swapping the addresses leaves the IP header checksum (and the UDP pseudo-header sum) as
    // it was.
    let addresses_swapped =
        if family == 4 { swap_halves::<4>(ctx, l3 + 12) } else { swap_halves::<16>(ctx, l3 + 8) };
    let Some(old_header) = reread_at::<[u8; UDP_HEADER_LEN]>(ctx, l4) else {
        return Outcome::Truncated;
    };
    // From the heartbeat port to the heartbeat port: the prober's XDP program takes the answer.
    // The length stays: the answer is as long as the probe.
    let port = config.port.to_be_bytes();
    let mut header = [port[0], port[1], port[0], port[1], old_header[4], old_header[5], 0, 0];
    if family == 6 {
        // Mandatory over IPv6 (optional over IPv4, where 0 says none).
        let checksum = udp6_checksum(old_header, probe, header, answer_tag);
        header[6..].copy_from_slice(&checksum);
    }
    let payload = l4 + UDP_HEADER_LEN;
    if !(addresses_swapped
        && swap_halves::<6>(ctx, 0)
        && write_at(ctx, l4, header)
        && write_at(ctx, payload + FLAGS_OFFSET, [flags])
        && write_at(ctx, payload + TAG_OFFSET, tag))
    {
        return Outcome::Truncated;
    }
    Outcome::Answered
}

/// [`udp_checksum_update`] from the probe to its answer (signed with `answer_tag`), in a
/// function of its own: the answer's copy and the sums stay out of `answer_probe`'s frame, which
/// the IPv4 path does not need.
#[inline(never)]
fn udp6_checksum(
    old_header: [u8; UDP_HEADER_LEN],
    probe: &[u8; HEARTBEAT_LEN],
    new_header: [u8; UDP_HEADER_LEN],
    answer_tag: u64,
) -> [u8; 2] {
    udp_checksum_update(old_header, probe, new_header, &answer_with_tag(probe, answer_tag))
}

/// Swaps, in the frame, the `HALF` bytes at `offset` with the `HALF` bytes after them: the
/// destination and source MAC or IP addresses. False (nothing changed) if the frame is too
/// short. Two bytes at a time, in place (a MAC address is six): a whole copy of both halves would
/// be held in registers that the BPF target does not have and spilled to the stack.
#[inline(always)]
fn swap_halves<const HALF: usize>(ctx: &XdpContext, offset: usize) -> bool {
    const { assert!(HALF.is_multiple_of(2), "swapped two bytes at a time") };
    let (start, end) = bounds(ctx);
    if start + offset + 2 * HALF > end {
        return false;
    }
    let mut i = 0;
    while i < HALF {
        let first = (start + offset + i) as *mut [u8; 2];
        let second = (start + offset + HALF + i) as *mut [u8; 2];
        // SAFETY: the check above keeps `offset .. offset + 2 * HALF` inside the packet, which
        // the kernel keeps mapped for the program's run and an XDP program may write; unaligned
        // accesses need no alignment, and any bytes are a valid `[u8; 2]`. So for all four.
        let bytes = unsafe { first.read_unaligned() };
        // SAFETY: as above.
        let other = unsafe { second.read_unaligned() };
        // SAFETY: as above.
        unsafe { first.write_unaligned(other) };
        // SAFETY: as above.
        unsafe { second.write_unaligned(bytes) };
        i += 2;
    }
    true
}

/// The UDP checksum once the header `old_header` becomes `new_header` (ports changed, length
/// and pseudo-header as they were: the addresses are only swapped) and the payload `old_payload`
/// becomes `new_payload`: RFC 1624's incremental update, HC' = ~(~HC + ~m + m'), never 0 (IPv6
/// forbids it). The checksum field itself is left out of the header sums.
#[inline(always)]
fn udp_checksum_update(
    old_header: [u8; UDP_HEADER_LEN],
    old_payload: &[u8; HEARTBEAT_LEN],
    new_header: [u8; UDP_HEADER_LEN],
    new_payload: &[u8; HEARTBEAT_LEN],
) -> [u8; 2] {
    let ports = |header: [u8; UDP_HEADER_LEN]| {
        u64::from(u16::from_be_bytes([header[0], header[1]]))
            + u64::from(u16::from_be_bytes([header[2], header[3]]))
    };
    let old_checksum = u16::from_be_bytes([old_header[6], old_header[7]]);
    let old = fold(ports(old_header) + u64::from(ones_sum(old_payload)));
    let new = fold(ports(new_header) + u64::from(ones_sum(new_payload)));
    let checksum = !fold(u64::from(!old_checksum) + u64::from(!old) + u64::from(new));
    (if checksum == 0 { 0xffff } else { checksum }).to_be_bytes()
}

/// The 16-bit ones' complement sum of a payload, taken 64 bits at a time (the sum of big-endian
/// 64-bit words, folded, equals the sum of its 16-bit words: RFC 1071).
#[inline(always)]
fn ones_sum(bytes: &[u8; HEARTBEAT_LEN]) -> u16 {
    let mut sum = 0u64;
    let mut i = 0;
    while i + 8 <= HEARTBEAT_LEN {
        let word = u64::from_be_bytes([
            bytes[i],
            bytes[i + 1],
            bytes[i + 2],
            bytes[i + 3],
            bytes[i + 4],
            bytes[i + 5],
            bytes[i + 6],
            bytes[i + 7],
        ]);
        let (added, carry) = sum.overflowing_add(word);
        sum = added + u64::from(carry);
        i += 8;
    }
    fold(sum)
}

/// A 64-bit ones' complement sum folded to 16 bits (end-around carries included).
#[inline(always)]
fn fold(sum: u64) -> u16 {
    let mut sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// An answer to one of this node's probes: authentic if its tag is the answer tag of the probe
/// it echoes (`ha_common::answered_probe`) under a configured key, and then recorded in
/// `PROBES` if it echoes a sequence of the burst this node sent to the node it names as
/// answering (anything older, or from another node, counts as a replay), and the agent woken.
/// Out of line: rare (see the top of the file).
#[inline(never)]
fn probe_answer(payload: &[u8; HEARTBEAT_LEN], answer: &Heartbeat, own_node_id: u32) -> Outcome {
    let Some(keys) = KEYS.get(0) else {
        return Outcome::BadTag;
    };
    if !verify_answer(keys, &answered_probe(payload), answer.tag) {
        return Outcome::BadTag;
    }
    if answer.node_id != own_node_id {
        return Outcome::Replay;
    }
    let Some(probe) = PROBES.get_ptr_mut(answer.group) else {
        return Outcome::Replay;
    };
    // SAFETY: a pointer the map lookup returned points at a live, aligned value; the agent
    // rewrites it only to start a new burst, which at worst marks that one answered early by an
    // answer it then ignores (it compares the time with the burst's start).
    let probe: &mut ProbeState = unsafe { &mut *probe };
    if probe.target != answer.target
        || answer.sequence < probe.first_sequence
        || answer.sequence > probe.last_sequence
    {
        return Outcome::Replay;
    }
    // SAFETY: a helper without arguments, callable from any program.
    probe.answered_ns = unsafe { bpf_ktime_get_ns() };
    // The event names the node that answered.
    wake_agent(&Heartbeat { node_id: answer.target, ..*answer }, change::PROBE_ANSWER);
    Outcome::ProbeAnswer
}

/// Updates the peer's record (unless the heartbeat is a replay) and raises an event if the agent
/// must react now.
// Inlined: a BPF function's return costs a mispredicted return thunk on a kernel with the SRSO
// mitigation, more than what inlining adds to the main stack frame, which stays within the
// verifier's 512 bytes with `answer_probe` called from it (the verifier checks the chain).
// `known` is what `PEER_SLOTS` has of the sender (its `slot` [`NEW_PEER`] if nothing yet).
#[inline(always)]
fn record(ctx: &XdpContext, heartbeat: &Heartbeat, source: &Source, known: PeerSlot, now: u64) -> Outcome {
    let key = PeerKey { group: heartbeat.group, node_id: heartbeat.node_id };

    let mut changes = 0u32;
    let existing = (known.slot != NEW_PEER).then_some(known.slot);
    // The table is full (more peers than MAX_PEERS): leave the frame to the stack.
    let Some(slot) = existing.or_else(|| new_slot(key, known.group_entry)) else {
        return Outcome::NotHeartbeat;
    };
    let Some(peer) = PEERS.get_ptr_mut(slot) else {
        return Outcome::NotHeartbeat;
    };
    // SAFETY: a pointer the map lookup returned points at a live, aligned value. Another CPU may
    // update the same record meanwhile (the same sender's heartbeats on two queues), which at
    // worst lets one of two racing heartbeats through the replay check; and the agent may read a
    // record being written, mixing fields of two authentic heartbeats of the same peer until its
    // next poll.
    let peer: &mut PeerRecord = unsafe { &mut *peer };
    // A known peer's record is updated where it lies, field by field: no map update (a free
    // element taken, the record copied in, swapped in under the bucket's lock) on the hot path.
    if existing.is_some() && peer.is_written() {
        // Senders number their heartbeats in strictly increasing order, across restarts too:
        // anything else is a replay (or a duplicate) and must not keep a dead peer alive.
        if heartbeat.sequence <= peer.sequence {
            return Outcome::Replay;
        }
        if peer.state != heartbeat.state as u8 {
            changes |= change::STATE;
        }
        if peer.priority != heartbeat.priority {
            changes |= change::PRIORITY;
        }
        // Not the probe flag: a STANDBY's probe burst and the plain heartbeat after it would
        // otherwise wake the ACTIVE's agent twice, for nothing it acts on.
        if (peer.flags ^ heartbeat.flags) & !FLAG_PROBE != 0 {
            changes |= change::FLAGS;
        }
        // Silent for more than two of its intervals: it may come back from a partition as a
        // second ACTIVE, which must be resolved now rather than at the next poll.
        let silence_ns = now.saturating_sub(peer.last_seen_ns);
        if silence_ns > 2 * 1_000_000 * u64::from(peer.interval_ms) {
            changes |= change::REVIVED;
        }
        peer.packets += 1;
    } else {
        changes = change::NEW_PEER;
        peer.group = key.group;
        peer.node_id = key.node_id;
        peer.packets = 1;
        peer._pad0 = 0;
    }
    // Read after the replay check, which a replayed heartbeat stops at. Neither read can fail in
    // practice (the payload, further into the frame, was read whole), but the verifier wants
    // each bounds check.
    // Read as words, not as byte arrays, which would be copied a byte at a time (see
    // `read_payload`). An IPv4 address fills the first four bytes.
    let (first, second) = if source.family == 4 {
        let Some(addr) = read_at::<[u8; 4]>(ctx, source.offset) else {
            return Outcome::Truncated;
        };
        (u64::from_ne_bytes([addr[0], addr[1], addr[2], addr[3], 0, 0, 0, 0]), 0)
    } else {
        let (Some(first), Some(second)) =
            (read_at::<u64>(ctx, source.offset), read_at::<u64>(ctx, source.offset + 8))
        else {
            return Outcome::Truncated;
        };
        (first, second)
    };
    let mut src_addr = [0u8; 16];
    src_addr[..8].copy_from_slice(&first.to_ne_bytes());
    src_addr[8..].copy_from_slice(&second.to_ne_bytes());
    let (Some(mac_high), Some(mac_low)) = (read_at::<u32>(ctx, 6), read_at::<u16>(ctx, 10)) else {
        return Outcome::Truncated;
    };
    let (high, low) = (mac_high.to_ne_bytes(), mac_low.to_ne_bytes());
    let src_mac = [high[0], high[1], high[2], high[3], low[0], low[1]];
    peer.last_seen_ns = now;
    peer.sequence = heartbeat.sequence;
    peer.interval_ms = heartbeat.interval_ms;
    peer.vlan_id = source.vlan_id;
    peer.family = source.family;
    peer.flags = heartbeat.flags;
    peer.src_addr = src_addr;
    peer.src_mac = src_mac;
    peer.priority = heartbeat.priority;
    peer.state = heartbeat.state as u8;
    peer.handover_to = if heartbeat.flags & FLAG_HANDOVER != 0 { heartbeat.target } else { 0 };

    if changes != 0 {
        if changes & change::NEW_PEER != 0 {
            log_new_peer(ctx, heartbeat);
        }
        wake_agent(heartbeat, changes);
    }
    Outcome::Accepted
}

/// The group of a heartbeat, if this node serves it, and where its sender's things are.
struct ServedGroup {
    entry: &'static GroupEntry,
    /// The sender's `PEER_SLOTS` entry, its slot [`NEW_PEER`] if it has none yet (then with the
    /// group's index, to record).
    peer: PeerSlot,
}

/// [`PeerSlot::slot`] of a sender without a slot yet; never a slot (`MAX_PEERS` is far below).
const NEW_PEER: u32 = u32::MAX;

/// The group of the peer `key`'s heartbeat, if this node serves it. A known peer's hint in
/// `PEER_HINTS` gives both its slot and its group's index in `GROUP_ENTRIES`, no hash lookup;
/// without a good hint its `PEER_SLOTS` entry does (one hash lookup), and the hint is written.
/// `GROUPS` is looked up for a new peer, and when a reload has freed or moved the group's entry
/// (the peer's index is then put right in place).
#[inline(always)]
fn served_group(key: PeerKey) -> Option<ServedGroup> {
    let hint_index = key.hint_index();
    if let Some(served) = hinted_group(key, hint_index) {
        return Some(served);
    }
    // SAFETY: a pointer the map lookup returned points at a live, aligned value; only its
    // `group_entry` is ever written after the insertion, here, and a racing CPU writes the same.
    let known = PEER_SLOTS.get_ptr_mut(key).map(|known| unsafe { &mut *known });
    if let Some(known) = &known {
        if let Some(entry) = entry_of(key.group, known.group_entry) {
            set_hint(hint_index, **known);
            return Some(ServedGroup { entry, peer: **known });
        }
    }
    let index = group_entry_index(key.group)?;
    let entry = entry_of(key.group, index)?;
    let peer = match known {
        Some(known) => {
            known.group_entry = index;
            set_hint(hint_index, *known);
            *known
        }
        None => PeerSlot { slot: NEW_PEER, group_entry: index },
    };
    Some(ServedGroup { entry, peer })
}

/// The served group and slot of a known peer as its hint has them, if the hint is good: the
/// record it names is this peer's (written, with this key) and the group's entry is where it
/// says.
#[inline(always)]
fn hinted_group(key: PeerKey, hint_index: u32) -> Option<ServedGroup> {
    let peer = PeerSlot::from_word(*PEER_HINTS.get(hint_index)?);
    let record = PEERS.get(peer.slot)?;
    if !record.is_written() || record.key() != key {
        return None;
    }
    let entry = entry_of(key.group, peer.group_entry)?;
    Some(ServedGroup { entry, peer })
}

/// Writes the hint for a known peer: one aligned word, which no reader sees half written.
#[inline(always)]
fn set_hint(hint_index: u32, peer: PeerSlot) {
    if let Some(hint) = PEER_HINTS.get_ptr_mut(hint_index) {
        // SAFETY: a pointer the map lookup returned points at a live, aligned u64; another CPU
        // may write the same word meanwhile, and either whole word is a hint that is checked
        // before use.
        unsafe { *hint = peer.to_word() };
    }
}

/// The index in `GROUP_ENTRIES` of `group`, if this node serves it.
#[inline(always)]
fn group_entry_index(group: u32) -> Option<u32> {
    // SAFETY: a pointer the map lookup returned points at a live, aligned u32; an element the
    // agent deletes meanwhile (a reload) stays readable until this run is over (RCU).
    GROUPS.get_ptr(group).map(|index| unsafe { *index })
}

/// The entry at `index` in `GROUP_ENTRIES` if it is `group`'s.
#[inline(always)]
fn entry_of(group: u32, index: u32) -> Option<&'static GroupEntry> {
    GROUP_ENTRIES.get(index).filter(|entry| entry.serves(group))
}

/// Logs a new peer (aya-log: seen with `RUST_LOG=debug`). Out of line: aya-log's formatting is
/// longer than the rest of `record`.
#[inline(never)]
fn log_new_peer(ctx: &XdpContext, heartbeat: &Heartbeat) {
    debug!(ctx, "new peer {} in group {}", heartbeat.node_id, heartbeat.group);
}

/// The `PEERS` slot of the peer `key`, if it has one.
#[inline(always)]
fn known_slot(key: PeerKey) -> Option<u32> {
    // SAFETY: a pointer the map lookup returned points at a live, aligned value, whose slot is
    // never rewritten once inserted (`BPF_NOEXIST`).
    PEER_SLOTS.get_ptr(key).map(|known| unsafe { (*known).slot })
}

/// Hands out the next free `PEERS` slot to the peer `key` of the group at `group_entry` and
/// records both in `PEER_SLOTS`; `None` when the table is full (or eight racing CPUs took the
/// slots tried). If another CPU gave the same peer a slot meanwhile, that one is kept (the one
/// taken here stays unused: a zero record the agent skips). Out of line: once per peer.
#[inline(never)]
fn new_slot(key: PeerKey, group_entry: u32) -> Option<u32> {
    let count = PEER_COUNT.get_ptr_mut(0)?;
    // SAFETY: a pointer the map lookup returned points at a live, aligned u64; a racing CPU may
    // write it meanwhile, which at worst makes this read a few slots stale (tried below).
    let first = unsafe { *count };
    let mut slot = u32::try_from(first).ok()?;
    let mut tries = 0;
    while tries < 8 {
        if slot >= MAX_PEERS {
            return None;
        }
        if SLOT_OWNERS.insert(slot, key, u64::from(BPF_NOEXIST)).is_ok() {
            // SAFETY: as above.
            let now_counted = unsafe { *count };
            // SAFETY: as above; the larger value wins unless another CPU writes in between.
            unsafe { *count = now_counted.max(u64::from(slot) + 1) };
            let known = PeerSlot { slot, group_entry };
            if PEER_SLOTS.insert(key, known, u64::from(BPF_NOEXIST)).is_ok() {
                return Some(slot);
            }
            return known_slot(key);
        }
        slot += 1;
        tries += 1;
    }
    None
}

/// Tells the agent, through `EVENTS`, that `heartbeat`'s sender brought `changes` (a bitmask of
/// [`change`] constants); a full ring buffer is counted (`events_lost`), and the agent sees the
/// change at its next poll. Out of line: once per change, not per heartbeat.
#[inline(never)]
fn wake_agent(heartbeat: &Heartbeat, changes: u32) {
    let event = PeerEvent {
        group: heartbeat.group,
        node_id: heartbeat.node_id,
        changes,
        priority: heartbeat.priority,
        state: heartbeat.state as u8,
        _pad0: [0; 2],
    };
    if EVENTS.output(event, 0).is_err() {
        bump(|stats| stats.events_lost += 1);
    }
}

/// Applies `f` to this CPU's counters.
#[inline(always)]
fn bump(f: impl FnOnce(&mut XdpStats)) {
    if let Some(stats) = STATS.get_ptr_mut(0) {
        // SAFETY: slot 0 of a per-CPU array is this CPU's own value, and XDP does not preempt
        // itself on one CPU: nothing else holds a reference to it while `f` runs.
        f(unsafe { &mut *stats });
    }
}

#[inline(always)]
fn count(outcome: &Outcome) {
    bump(|stats| match outcome {
        Outcome::NotHeartbeat => stats.passed += 1,
        Outcome::Accepted => stats.accepted += 1,
        Outcome::Truncated => stats.truncated += 1,
        Outcome::Rejected(DecodeError::BadLength) => stats.bad_length += 1,
        Outcome::Rejected(DecodeError::BadMagic) => stats.bad_magic += 1,
        Outcome::Rejected(DecodeError::BadVersion) => stats.bad_version += 1,
        Outcome::Rejected(DecodeError::BadField) => stats.bad_field += 1,
        Outcome::WrongGroup => stats.wrong_group += 1,
        Outcome::OwnEcho => stats.own_echo += 1,
        Outcome::BadTag => stats.bad_tag += 1,
        Outcome::Replay => stats.replay += 1,
        Outcome::Fenced => stats.fenced += 1,
        Outcome::Answered => {
            stats.accepted += 1;
            stats.probes_answered += 1;
        }
        Outcome::ProbeAnswer => stats.probe_answers += 1,
    });
}

/// `CLOCK_MONOTONIC`: the clock of `bpf_ktime_get_ns`, and so of every `last_seen_ns`.
const CLOCK_MONOTONIC: u64 = 1;

/// Sets a group's silence watch as the agent asks (a [`WatchRequest`] at
/// [`WATCH_REQUEST_OFFSET`] of the frame): never attached, run by the agent through
/// `BPF_PROG_TEST_RUN`, since only a BPF program may start a kernel timer. Returns a
/// [`watch_verdict`].
#[xdp]
pub fn ha_watch(ctx: XdpContext) -> u32 {
    let Some(request) = read_at::<[u8; WatchRequest::LEN]>(&ctx, WATCH_REQUEST_OFFSET) else {
        return watch_verdict::FAILED;
    };
    try_watch(&WatchRequest::from_bytes(request)).unwrap_or(watch_verdict::FAILED)
}

/// [`ha_watch`]'s work: `None` when a timer helper failed.
#[inline(always)]
fn try_watch(request: &WatchRequest) -> Option<u32> {
    let group = request.group;
    if SILENCE_WATCHES.get_ptr_mut(group).is_none() {
        // Inserted once, zero, and from then on changed in place: an update would replace the
        // element, and its timer with it.
        let _ = SILENCE_WATCHES.insert(group, SilenceWatch::default(), u64::from(BPF_NOEXIST));
    }
    let watch = SILENCE_WATCHES.get_ptr_mut(group)?;
    // SAFETY: a pointer the map lookup returned points at a live, aligned value; the timer's
    // callback may write it meanwhile on another CPU, which at worst starts the timer twice.
    let watch: &mut SilenceWatch = unsafe { &mut *watch };
    let timer = (&raw mut watch.timer).cast();
    let map = core::ptr::from_ref(&SILENCE_WATCHES).cast_mut().cast();
    // SAFETY: `timer` is the bpf_timer inside a value of `map`, as the helper requires. It fails
    // with EBUSY once the timer is initialised, which is the case from the second request on.
    let _ = unsafe { bpf_timer_init(timer, map, CLOCK_MONOTONIC) };
    if request.node_id == 0 {
        watch.node_id = 0;
        // SAFETY: as above; cancelling a timer that is not running does nothing.
        let _ = unsafe { aya_ebpf::helpers::bpf_timer_cancel(timer) };
        return Some(watch_verdict::SET);
    }
    let Some(slot) = known_slot(PeerKey { group, node_id: request.node_id }) else {
        return Some(watch_verdict::UNKNOWN_PEER);
    };
    watch.slot = slot;
    watch.node_id = request.node_id;
    watch.after_permille = request.after_permille;
    // SAFETY: as above; `silence_expired` has the signature the kernel calls a timer callback
    // with (the map, the key, the value).
    if unsafe { bpf_timer_set_callback(timer, silence_expired as *mut core::ffi::c_void) } != 0 {
        return None;
    }
    let delay = silence_left(watch, monotonic_ns()).unwrap_or(1);
    // SAFETY: as above.
    if unsafe { bpf_timer_start(timer, delay, 0) } != 0 {
        return None;
    }
    Some(watch_verdict::SET)
}

/// How long until the watched peer's silence counts, from `now`; `None` if it counts already.
#[inline(always)]
fn silence_left(watch: &SilenceWatch, now: u64) -> Option<u64> {
    let peer = PEERS.get_ptr(watch.slot)?;
    // SAFETY: a pointer the map lookup returned points at a live, aligned value; XDP may update
    // it meanwhile, which at worst reads a heartbeat old or new.
    let peer: &PeerRecord = unsafe { &*peer };
    if peer.node_id != watch.node_id {
        return None;
    }
    let silence = u64::from(peer.interval_ms) * u64::from(watch.after_permille) * 1_000;
    let deadline = peer.last_seen_ns + silence;
    (deadline > now).then(|| deadline - now)
}

/// The current CLOCK_MONOTONIC time in nanoseconds.
#[inline(always)]
fn monotonic_ns() -> u64 {
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// A silence watch's timer fired: if its peer was heard since, the timer is set for the new
/// moment its silence would count; if not, the agent is woken (`change::SILENT`) and the watch
/// stops until the agent sets it again. The kernel requires a callback to return 0.
#[inline(never)]
extern "C" fn silence_expired(
    _map: *mut core::ffi::c_void,
    group: *mut u32,
    watch: *mut SilenceWatch,
) -> i32 {
    // SAFETY: the kernel calls a timer callback with its map element's key and value, both live
    // and aligned while it runs.
    let group = unsafe { *group };
    // SAFETY: as above.
    let watch = unsafe { &mut *watch };
    if watch.node_id == 0 {
        return 0;
    }
    let now = monotonic_ns();
    if let Some(delay) = silence_left(watch, now) {
        // SAFETY: the timer of this very element, initialised before it first started.
        let _ = unsafe { bpf_timer_start((&raw mut watch.timer).cast(), delay, 0) };
        return 0;
    }
    let event = PeerEvent {
        group,
        node_id: watch.node_id,
        changes: change::SILENT,
        priority: 0,
        state: 0,
        _pad0: [0; 2],
    };
    if EVENTS.output(event, 0).is_err() {
        bump(|stats| stats.events_lost += 1);
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
